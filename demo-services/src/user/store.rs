//! The user service's table.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::api::{Page, Paged};
use crate::db::{self, Db};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL,
    email      TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
INSERT OR IGNORE INTO users (id, name, email, created_at) VALUES
    (1, 'Ada Lovelace', 'ada@example.com', '2026-01-01T00:00:00.000Z'),
    (2, 'Grace Hopper', 'grace@example.com', '2026-01-01T00:00:00.000Z'),
    (3, 'Alan Turing', 'alan@example.com', '2026-01-01T00:00:00.000Z');
";

/// A user, as the API shows it (camelCase, like every field of the API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// Its id.
    pub id: i64,
    /// Full name.
    pub name: String,
    /// Email address.
    pub email: String,
    /// When it was created (RFC 3339, UTC).
    pub created_at: String,
}

type Row = (i64, String, String, String);

fn from_row((id, name, email, created_at): Row) -> User {
    User {
        id,
        name,
        email,
        created_at,
    }
}

/// What a write can run into besides the database failing.
#[derive(Debug)]
pub enum WriteError {
    /// Another user has this email.
    EmailTaken,
    /// The database failed.
    Db(sqlx::Error),
}

impl From<sqlx::Error> for WriteError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => WriteError::EmailTaken,
            _ => WriteError::Db(e),
        }
    }
}

/// The users, in `<data-dir>/users.db`.
#[derive(Debug, Clone)]
pub struct UserStore {
    db: Db,
}

impl UserStore {
    /// Opens the database, creating and seeding it when new.
    pub async fn open(data_dir: &Path, durability: db::Durability) -> Result<Self, sqlx::Error> {
        Ok(UserStore {
            db: db::open(data_dir, "users", SCHEMA, durability).await?,
        })
    }

    /// The user `id`.
    pub async fn get(&self, id: i64) -> Result<Option<User>, sqlx::Error> {
        let row: Option<Row> =
            sqlx::query_as("SELECT id, name, email, created_at FROM users WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.db.reads)
                .await?;
        Ok(row.map(from_row))
    }

    /// One page of users by id, after the page's cursor.
    pub async fn page(&self, page: Page) -> Result<Paged<User>, sqlx::Error> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, name, email, created_at FROM users WHERE id > ? ORDER BY id LIMIT ?",
        )
        .bind(page.after)
        .bind(page.fetch())
        .fetch_all(&self.db.reads)
        .await?;
        Ok(page.finish(rows.into_iter().map(from_row).collect(), |u| u.id))
    }

    /// `limit` users by id, after skipping `offset` of them: the offset
    /// paging of the gRPC `ListUsers` (the REST list pages by cursor).
    pub async fn page_at(&self, offset: i64, limit: u32) -> Result<Vec<User>, sqlx::Error> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, name, email, created_at FROM users ORDER BY id LIMIT ? OFFSET ?",
        )
        .bind(i64::from(limit))
        .bind(offset)
        .fetch_all(&self.db.reads)
        .await?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// Creates a user.
    pub async fn create(&self, name: &str, email: &str) -> Result<User, WriteError> {
        let row: Row = sqlx::query_as(
            "INSERT INTO users (name, email, created_at) VALUES (?, ?, ?)
             RETURNING id, name, email, created_at",
        )
        .bind(name)
        .bind(email)
        .bind(db::timestamp())
        .fetch_one(&self.db.writes)
        .await?;
        Ok(from_row(row))
    }

    /// Replaces a user's name and email; `None` if there is no such user.
    pub async fn update(
        &self,
        id: i64,
        name: &str,
        email: &str,
    ) -> Result<Option<User>, WriteError> {
        let row: Option<Row> = sqlx::query_as(
            "UPDATE users SET name = ?, email = ? WHERE id = ?
             RETURNING id, name, email, created_at",
        )
        .bind(name)
        .bind(email)
        .bind(id)
        .fetch_optional(&self.db.writes)
        .await?;
        Ok(row.map(from_row))
    }

    /// Sets the fields given and keeps the others; `None` if there is no
    /// such user. One statement, so a concurrent write cannot land between
    /// reading the old values and writing the new ones.
    pub async fn patch(
        &self,
        id: i64,
        name: Option<&str>,
        email: Option<&str>,
    ) -> Result<Option<User>, WriteError> {
        let row: Option<Row> = sqlx::query_as(
            "UPDATE users SET name = COALESCE(?, name), email = COALESCE(?, email) WHERE id = ?
             RETURNING id, name, email, created_at",
        )
        .bind(name)
        .bind(email)
        .bind(id)
        .fetch_optional(&self.db.writes)
        .await?;
        Ok(row.map(from_row))
    }
}
