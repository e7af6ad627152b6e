//! The notification service's table, in SQLite (`sqlite.rs`) or
//! PostgreSQL (`postgres.rs`), behind one interface
//! ([`NotificationStore`]).

use serde::{Deserialize, Serialize};

use crate::api::{Page, Paged};
use crate::db::Database;

mod postgres;
mod sqlite;

/// A notification, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// Its id.
    pub id: i64,
    /// The user notified.
    pub user_id: i64,
    /// The order it is about; one notification per order.
    pub order_id: i64,
    /// How: `email`, `sms`, ...
    pub channel: String,
    /// What it says.
    pub message: String,
    /// `sent`.
    pub status: String,
    /// When it was accepted (RFC 3339, UTC).
    pub created_at: String,
}

/// What [`NotificationStore::accept`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Stored: the first notification for its order.
    New(Notification),
    /// The order's notification was already stored with the same user,
    /// channel and message: a redelivery, nothing changed.
    Duplicate(Notification),
    /// The order's stored notification differs (another user, channel or
    /// message): nothing changed; this is the stored one.
    Conflict(Notification),
}

pub(super) type Row = (i64, i64, i64, String, String, String, String);

pub(super) fn from_row(
    (id, user_id, order_id, channel, message, status, created_at): Row,
) -> Notification {
    Notification {
        id,
        user_id,
        order_id,
        channel,
        message,
        status,
        created_at,
    }
}

/// The notifications, in whichever database the service was given.
#[derive(Debug, Clone)]
pub enum NotificationStore {
    /// `<data-dir>/notifications.db`.
    Sqlite(sqlite::Store),
    /// The `notifications` table of a PostgreSQL database.
    Postgres(postgres::Store),
}

/// Calls the same method on whichever store this is.
macro_rules! either {
    ($self:ident.$method:ident($($arg:expr),*)) => {
        match $self {
            NotificationStore::Sqlite(s) => s.$method($($arg),*).await,
            NotificationStore::Postgres(s) => s.$method($($arg),*).await,
        }
    };
}

impl NotificationStore {
    /// Opens the database, creating the table when new.
    pub async fn open(db: &Database) -> Result<Self, sqlx::Error> {
        Ok(match db {
            Database::Sqlite { dir, durability } => {
                NotificationStore::Sqlite(sqlite::Store::open(dir, *durability).await?)
            }
            Database::Postgres { url } => {
                NotificationStore::Postgres(postgres::Store::open(url).await?)
            }
        })
    }

    /// Stores a notification unless one for `order_id` exists, and tells
    /// which of the three it was: new, the same one again (a redelivery),
    /// or a different one for the same order (a conflict, not stored).
    pub async fn accept(
        &self,
        user_id: i64,
        order_id: i64,
        channel: &str,
        message: &str,
    ) -> Result<Accepted, sqlx::Error> {
        let (inserted, stored) = either!(self.accept(user_id, order_id, channel, message))?;
        Ok(if inserted {
            Accepted::New(stored)
        } else if stored.user_id == user_id
            && stored.channel == channel
            && stored.message == message
        {
            Accepted::Duplicate(stored)
        } else {
            Accepted::Conflict(stored)
        })
    }

    /// One page of the notifications of a user, oldest first.
    pub async fn by_user(
        &self,
        user_id: i64,
        page: Page,
    ) -> Result<Paged<Notification>, sqlx::Error> {
        either!(self.select(Column::UserId, user_id, page))
    }

    /// The notifications of an order (at most one), paged like the rest.
    pub async fn by_order(
        &self,
        order_id: i64,
        page: Page,
    ) -> Result<Paged<Notification>, sqlx::Error> {
        either!(self.select(Column::OrderId, order_id, page))
    }

    /// How many notifications there are in all.
    pub async fn count(&self) -> Result<i64, sqlx::Error> {
        either!(self.count())
    }
}

/// The columns notifications are looked up by.
#[derive(Debug, Clone, Copy)]
pub(super) enum Column {
    UserId,
    OrderId,
}

impl Column {
    pub(super) fn name(self) -> &'static str {
        match self {
            Column::UserId => "user_id",
            Column::OrderId => "order_id",
        }
    }
}
