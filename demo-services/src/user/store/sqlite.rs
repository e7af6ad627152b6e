//! The users in SQLite: `<data-dir>/users.db`.

use std::path::Path;

use super::{Row, User, WriteError, from_row};
use crate::api::{Page, Paged};
use crate::db::sqlite::{self, Db};
use crate::db::{self, Durability};

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

/// The users in `<data-dir>/users.db`.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    pub(super) async fn open(data_dir: &Path, durability: Durability) -> Result<Self, sqlx::Error> {
        Ok(Store {
            db: sqlite::open(data_dir, "users", SCHEMA, durability).await?,
        })
    }

    pub(super) async fn get(&self, id: i64) -> Result<Option<User>, sqlx::Error> {
        let row: Option<Row> =
            sqlx::query_as("SELECT id, name, email, created_at FROM users WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.db.reads)
                .await?;
        Ok(row.map(from_row))
    }

    pub(super) async fn page(&self, page: Page) -> Result<Paged<User>, sqlx::Error> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, name, email, created_at FROM users WHERE id > ? ORDER BY id LIMIT ?",
        )
        .bind(page.after)
        .bind(page.fetch())
        .fetch_all(&self.db.reads)
        .await?;
        Ok(page.finish(rows.into_iter().map(from_row).collect(), |u| u.id))
    }

    pub(super) async fn page_at(&self, offset: i64, limit: u32) -> Result<Vec<User>, sqlx::Error> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, name, email, created_at FROM users ORDER BY id LIMIT ? OFFSET ?",
        )
        .bind(i64::from(limit))
        .bind(offset)
        .fetch_all(&self.db.reads)
        .await?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    pub(super) async fn create(&self, name: &str, email: &str) -> Result<User, WriteError> {
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

    pub(super) async fn update(
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

    pub(super) async fn patch(
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
