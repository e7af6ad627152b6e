//! The user service's table, in SQLite (`sqlite.rs`) or PostgreSQL
//! (`postgres.rs`), behind one interface ([`UserStore`]).

use serde::{Deserialize, Serialize};

use crate::api::{Page, Paged};
use crate::db::Database;

mod postgres;
mod sqlite;

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

pub(super) type Row = (i64, String, String, String);

pub(super) fn from_row((id, name, email, created_at): Row) -> User {
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

/// The users, in whichever database the service was given.
#[derive(Debug, Clone)]
pub enum UserStore {
    /// `<data-dir>/users.db`.
    Sqlite(sqlite::Store),
    /// The `users` table of a PostgreSQL database.
    Postgres(postgres::Store),
}

/// Calls the same method on whichever store this is.
macro_rules! either {
    ($self:ident.$method:ident($($arg:expr),*)) => {
        match $self {
            UserStore::Sqlite(s) => s.$method($($arg),*).await,
            UserStore::Postgres(s) => s.$method($($arg),*).await,
        }
    };
}

impl UserStore {
    /// Opens the database, creating and seeding the table when new.
    pub async fn open(db: &Database) -> Result<Self, sqlx::Error> {
        Ok(match db {
            Database::Sqlite { dir, durability } => {
                UserStore::Sqlite(sqlite::Store::open(dir, *durability).await?)
            }
            Database::Postgres { url } => UserStore::Postgres(postgres::Store::open(url).await?),
        })
    }

    /// The user `id`.
    pub async fn get(&self, id: i64) -> Result<Option<User>, sqlx::Error> {
        either!(self.get(id))
    }

    /// One page of users by id, after the page's cursor.
    pub async fn page(&self, page: Page) -> Result<Paged<User>, sqlx::Error> {
        either!(self.page(page))
    }

    /// `limit` users by id, after skipping `offset` of them: the offset
    /// paging of the gRPC `ListUsers` (the REST list pages by cursor).
    pub async fn page_at(&self, offset: i64, limit: u32) -> Result<Vec<User>, sqlx::Error> {
        either!(self.page_at(offset, limit))
    }

    /// Creates a user.
    pub async fn create(&self, name: &str, email: &str) -> Result<User, WriteError> {
        either!(self.create(name, email))
    }

    /// Replaces a user's name and email; `None` if there is no such user.
    pub async fn update(
        &self,
        id: i64,
        name: &str,
        email: &str,
    ) -> Result<Option<User>, WriteError> {
        either!(self.update(id, name, email))
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
        either!(self.patch(id, name, email))
    }
}
