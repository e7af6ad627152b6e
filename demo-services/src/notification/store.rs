//! The notification service's table.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::api::{Page, Paged};
use crate::db::{self, Db};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS notifications (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL,
    order_id   INTEGER NOT NULL UNIQUE,
    channel    TEXT NOT NULL,
    message    TEXT NOT NULL,
    status     TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_user ON notifications (user_id);
";

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

type Row = (i64, i64, i64, String, String, String, String);

fn from_row((id, user_id, order_id, channel, message, status, created_at): Row) -> Notification {
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

const COLUMNS: &str = "id, user_id, order_id, channel, message, status, created_at";

/// The notifications, in `<data-dir>/notifications.db`.
#[derive(Debug, Clone)]
pub struct NotificationStore {
    db: Db,
}

impl NotificationStore {
    /// Opens the database, creating it when new.
    pub async fn open(data_dir: &Path, durability: db::Durability) -> Result<Self, sqlx::Error> {
        Ok(NotificationStore {
            db: db::open(data_dir, "notifications", SCHEMA, durability).await?,
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
        let inserted = sqlx::query(
            "INSERT INTO notifications (user_id, order_id, channel, message, status, created_at)
             VALUES (?, ?, ?, ?, 'sent', ?) ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(user_id)
        .bind(order_id)
        .bind(channel)
        .bind(message)
        .bind(db::timestamp())
        .execute(&self.db.writes)
        .await?
        .rows_affected()
            == 1;
        let row: Row = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM notifications WHERE order_id = ?"
        ))
        .bind(order_id)
        .fetch_one(&self.db.reads)
        .await?;
        let stored = from_row(row);
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
        self.select("user_id", user_id, page).await
    }

    /// The notifications of an order (at most one), paged like the rest.
    pub async fn by_order(
        &self,
        order_id: i64,
        page: Page,
    ) -> Result<Paged<Notification>, sqlx::Error> {
        self.select("order_id", order_id, page).await
    }

    /// How many notifications there are in all.
    pub async fn count(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT COUNT(*) FROM notifications")
            .fetch_one(&self.db.reads)
            .await
    }

    async fn select(
        &self,
        column: &str,
        value: i64,
        page: Page,
    ) -> Result<Paged<Notification>, sqlx::Error> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM notifications WHERE {column} = ? AND id > ? ORDER BY id LIMIT ?"
        ))
        .bind(value)
        .bind(page.after)
        .bind(page.fetch())
        .fetch_all(&self.db.reads)
        .await?;
        Ok(page.finish(rows.into_iter().map(from_row).collect(), |n| n.id))
    }
}
