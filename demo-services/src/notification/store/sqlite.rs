//! The notifications in SQLite: `<data-dir>/notifications.db`.

use std::path::Path;

use super::{Column, Notification, Row, from_row};
use crate::api::{Page, Paged};
use crate::db::sqlite::{self, Db};
use crate::db::{self, Durability};

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

const COLUMNS: &str = "id, user_id, order_id, channel, message, status, created_at";

/// The notifications in `<data-dir>/notifications.db`.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    pub(super) async fn open(data_dir: &Path, durability: Durability) -> Result<Self, sqlx::Error> {
        Ok(Store {
            db: sqlite::open(data_dir, "notifications", SCHEMA, durability).await?,
        })
    }

    /// Inserts unless the order has one; whether it did, and the order's
    /// notification.
    pub(super) async fn accept(
        &self,
        user_id: i64,
        order_id: i64,
        channel: &str,
        message: &str,
    ) -> Result<(bool, Notification), sqlx::Error> {
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
        Ok((inserted, from_row(row)))
    }

    pub(super) async fn count(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT COUNT(*) FROM notifications")
            .fetch_one(&self.db.reads)
            .await
    }

    pub(super) async fn select(
        &self,
        column: Column,
        value: i64,
        page: Page,
    ) -> Result<Paged<Notification>, sqlx::Error> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM notifications WHERE {} = ? AND id > ? ORDER BY id LIMIT ?",
            column.name()
        ))
        .bind(value)
        .bind(page.after)
        .bind(page.fetch())
        .fetch_all(&self.db.reads)
        .await?;
        Ok(page.finish(rows.into_iter().map(from_row).collect(), |n| n.id))
    }
}
