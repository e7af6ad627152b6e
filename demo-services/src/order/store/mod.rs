//! The order service's tables: orders, idempotency keys, the last copy of
//! each user seen, and the outbox of notifications to deliver.
//!
//! An order and its notification record are written in one transaction, so
//! an acknowledged order always has its notification on the way, even if
//! the process dies right after answering.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::money::Cents;
use crate::api::{Page, Paged};
use crate::db::{self, Db};

mod migrate;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS orders (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     INTEGER NOT NULL,
    items       TEXT NOT NULL,
    total_cents INTEGER NOT NULL,
    status      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    user_name   TEXT NOT NULL,
    user_email  TEXT NOT NULL,
    user_source TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_user ON orders (user_id);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    caller       TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    order_id     INTEGER NOT NULL REFERENCES orders (id),
    PRIMARY KEY (caller, key)
);
CREATE TABLE IF NOT EXISTS user_cache (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    email      TEXT NOT NULL,
    fetched_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id        INTEGER NOT NULL UNIQUE REFERENCES orders (id),
    user_id         INTEGER NOT NULL,
    channel         TEXT NOT NULL,
    message         TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    delivered_at    TEXT
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (next_attempt_at) WHERE delivered_at IS NULL;
CREATE TABLE IF NOT EXISTS deployment (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    id  TEXT NOT NULL
);
";

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    /// What was ordered.
    pub product_id: String,
    /// How many, at least 1.
    pub quantity: i64,
    /// Price of one (a JSON number with at most two decimals).
    pub unit_price: Cents,
}

/// An item as the `items` column holds it: the price in cents.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredItem {
    product_id: String,
    quantity: i64,
    unit_price_cents: i64,
}

impl From<&Item> for StoredItem {
    fn from(item: &Item) -> Self {
        StoredItem {
            product_id: item.product_id.clone(),
            quantity: item.quantity,
            unit_price_cents: item.unit_price.get(),
        }
    }
}

impl From<StoredItem> for Item {
    fn from(item: StoredItem) -> Self {
        Item {
            product_id: item.product_id,
            quantity: item.quantity,
            unit_price: Cents::new(item.unit_price_cents),
        }
    }
}

/// The user an order was placed for, as known when it was placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderUser {
    /// Name.
    pub name: String,
    /// Email.
    pub email: String,
    /// `live` (fetched for this order) or `cache` (the last copy seen,
    /// because the user service was unavailable).
    pub source: String,
}

/// An order, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// Its id.
    pub id: i64,
    /// Who ordered.
    pub user_id: i64,
    /// What.
    pub items: Vec<Item>,
    /// Sum of quantity × unit price, exact (computed in cents).
    pub total: Cents,
    /// `created`.
    pub status: String,
    /// When (RFC 3339, UTC).
    pub created_at: String,
    /// The user's details when the order was placed.
    pub user: OrderUser,
    /// The notification: `queued` until delivered, then `delivered`.
    pub notification: String,
}

/// A copy of a user kept for when the user service is unavailable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedUser {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Email.
    pub email: String,
}

/// A notification waiting to be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingNotification {
    /// The outbox record.
    pub id: i64,
    /// The order it announces.
    pub order_id: i64,
    /// The user to notify.
    pub user_id: i64,
    /// `email`.
    pub channel: String,
    /// The text.
    pub message: String,
    /// Failed attempts so far.
    pub attempts: u32,
}

/// A new order, validated.
#[derive(Debug, Clone)]
pub struct NewOrder<'a> {
    /// Who ordered.
    pub user_id: i64,
    /// What.
    pub items: &'a [Item],
    /// The total.
    pub total: Cents,
    /// The user's details.
    pub user: &'a OrderUser,
    /// The caller's idempotency key and the digest of its request.
    pub idempotency: Option<(&'a str, &'a str, &'a str)>,
}

/// Storing an order failed.
#[derive(Debug)]
pub enum InsertError {
    /// The idempotency key was taken meanwhile by a concurrent request.
    KeyTaken,
    /// The database failed.
    Db(sqlx::Error),
}

impl From<sqlx::Error> for InsertError {
    fn from(e: sqlx::Error) -> Self {
        InsertError::Db(e)
    }
}

type OrderRow = (
    i64,
    i64,
    String,
    i64,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
);

// The CAST: a database from before cents keeps the column's REAL type
// (see `migrate::to_cents`), which stores whole numbers as floats.
const ORDER_SELECT: &str = "SELECT o.id, o.user_id, o.items, CAST(o.total_cents AS INTEGER),
    o.status, o.created_at,
    o.user_name, o.user_email, o.user_source, x.delivered_at
    FROM orders o LEFT JOIN outbox x ON x.order_id = o.id";

fn order_from_row(row: OrderRow) -> Result<Order, sqlx::Error> {
    let (id, user_id, items, total, status, created_at, name, email, source, delivered) = row;
    let items: Vec<StoredItem> =
        serde_json::from_str(&items).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(Order {
        id,
        user_id,
        items: items.into_iter().map(Item::from).collect(),
        total: Cents::new(total),
        status,
        created_at,
        user: OrderUser {
            name,
            email,
            source,
        },
        notification: if delivered.is_some() {
            "delivered"
        } else {
            "queued"
        }
        .to_owned(),
    })
}

/// The deployment's identity, made on first use: 16 random bytes in hex.
async fn deployment_id(db: &Db) -> Result<std::sync::Arc<str>, sqlx::Error> {
    use rand::RngExt;
    let bits: u128 = rand::rng().random();
    let fresh = format!("{bits:032x}");
    sqlx::query("INSERT INTO deployment (one, id) VALUES (1, ?) ON CONFLICT DO NOTHING")
        .bind(fresh)
        .execute(&db.writes)
        .await?;
    let id: String = sqlx::query_scalar("SELECT id FROM deployment")
        .fetch_one(&db.writes)
        .await?;
    Ok(id.into())
}

/// The order service's database, `<data-dir>/orders.db`.
#[derive(Debug, Clone)]
pub struct OrderStore {
    db: Db,
    deployment: std::sync::Arc<str>,
}

impl OrderStore {
    /// Opens the database, creating it when new.
    pub async fn open(data_dir: &Path, durability: db::Durability) -> Result<Self, sqlx::Error> {
        let db = db::open(data_dir, "orders", SCHEMA, durability).await?;
        migrate::to_cents(&db).await?;
        let deployment = deployment_id(&db).await?;
        Ok(OrderStore { db, deployment })
    }

    /// This deployment's identity: random, made when the database was
    /// created, and the same for every process on the database. Order ids
    /// start at 1 in every deployment; with this in front, an id names one
    /// order across deployments that share a message broker.
    pub fn deployment_id(&self) -> &str {
        &self.deployment
    }

    /// Stores an order, its notification record and its idempotency key
    /// in one transaction.
    pub async fn insert(&self, order: NewOrder<'_>, message: &str) -> Result<Order, InsertError> {
        let stored: Vec<StoredItem> = order.items.iter().map(StoredItem::from).collect();
        let items = serde_json::to_string(&stored)
            .map_err(|e| InsertError::Db(sqlx::Error::Encode(Box::new(e))))?;
        let mut tx = self.db.writes.begin().await?;
        let (id, created_at): (i64, String) = sqlx::query_as(
            "INSERT INTO orders (user_id, items, total_cents, status, created_at, user_name, user_email, user_source)
             VALUES (?, ?, ?, 'created', ?, ?, ?, ?) RETURNING id, created_at",
        )
        .bind(order.user_id)
        .bind(&items)
        .bind(order.total.get())
        .bind(db::timestamp())
        .bind(&order.user.name)
        .bind(&order.user.email)
        .bind(&order.user.source)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO outbox (order_id, user_id, channel, message, next_attempt_at)
             VALUES (?, ?, 'email', ?, ?)",
        )
        .bind(id)
        .bind(order.user_id)
        .bind(message.replace("{id}", &id.to_string()))
        .bind(db::unix_millis())
        .execute(&mut *tx)
        .await?;
        if let Some((caller, key, hash)) = order.idempotency {
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (caller, key, request_hash, order_id)
                 VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(caller)
            .bind(key)
            .bind(hash)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                tx.rollback().await?;
                return Err(InsertError::KeyTaken);
            }
        }
        tx.commit().await?;
        Ok(Order {
            id,
            user_id: order.user_id,
            items: order.items.to_vec(),
            total: order.total,
            status: "created".to_owned(),
            created_at,
            user: order.user.clone(),
            notification: "queued".to_owned(),
        })
    }

    /// The order an idempotency key applied to, with the request digest.
    pub async fn by_key(
        &self,
        caller: &str,
        key: &str,
    ) -> Result<Option<(String, Order)>, sqlx::Error> {
        let found: Option<(String, i64)> = sqlx::query_as(
            "SELECT request_hash, order_id FROM idempotency_keys WHERE caller = ? AND key = ?",
        )
        .bind(caller)
        .bind(key)
        .fetch_optional(&self.db.reads)
        .await?;
        let Some((hash, id)) = found else {
            return Ok(None);
        };
        Ok(self.get(id).await?.map(|order| (hash, order)))
    }

    /// The order `id`.
    pub async fn get(&self, id: i64) -> Result<Option<Order>, sqlx::Error> {
        let row: Option<OrderRow> = sqlx::query_as(&format!("{ORDER_SELECT} WHERE o.id = ?"))
            .bind(id)
            .fetch_optional(&self.db.reads)
            .await?;
        row.map(order_from_row).transpose()
    }

    /// One page of the orders of a user, oldest first.
    pub async fn by_user(&self, user_id: i64, page: Page) -> Result<Paged<Order>, sqlx::Error> {
        let rows: Vec<OrderRow> = sqlx::query_as(&format!(
            "{ORDER_SELECT} WHERE o.user_id = ? AND o.id > ? ORDER BY o.id LIMIT ?"
        ))
        .bind(user_id)
        .bind(page.after)
        .bind(page.fetch())
        .fetch_all(&self.db.reads)
        .await?;
        let orders = rows
            .into_iter()
            .map(order_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page.finish(orders, |o| o.id))
    }

    /// Remembers the latest copy of a user.
    pub async fn cache_user(&self, user: &CachedUser) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO user_cache (id, name, email, fetched_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, email = excluded.email,
             fetched_at = excluded.fetched_at",
        )
        .bind(user.id)
        .bind(&user.name)
        .bind(&user.email)
        .bind(db::timestamp())
        .execute(&self.db.writes)
        .await?;
        Ok(())
    }

    /// The last copy seen of user `id`.
    pub async fn cached_user(&self, id: i64) -> Result<Option<CachedUser>, sqlx::Error> {
        let row: Option<(i64, String, String)> =
            sqlx::query_as("SELECT id, name, email FROM user_cache WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.db.reads)
                .await?;
        Ok(row.map(|(id, name, email)| CachedUser { id, name, email }))
    }

    /// Notifications due for an attempt at `now_ms`, oldest first.
    pub async fn due(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<PendingNotification>, sqlx::Error> {
        let rows: Vec<(i64, i64, i64, String, String, i64)> = sqlx::query_as(
            "SELECT id, order_id, user_id, channel, message, attempts FROM outbox
             WHERE delivered_at IS NULL AND next_attempt_at <= ? ORDER BY id LIMIT ?",
        )
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.db.reads)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, order_id, user_id, channel, message, attempts)| PendingNotification {
                    id,
                    order_id,
                    user_id,
                    channel,
                    message,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                },
            )
            .collect())
    }

    /// When the next undelivered notification is due (Unix ms), if any.
    pub async fn next_due(&self) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM outbox WHERE delivered_at IS NULL")
            .fetch_one(&self.db.reads)
            .await
    }

    /// How many notifications are not delivered yet.
    pub async fn pending(&self) -> Result<u64, sqlx::Error> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL")
            .fetch_one(&self.db.reads)
            .await?;
        Ok(u64::try_from(n).unwrap_or_default())
    }

    /// Marks a notification delivered.
    pub async fn delivered(&self, id: i64) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE outbox SET delivered_at = ?, last_error = NULL WHERE id = ?")
            .bind(db::timestamp())
            .bind(id)
            .execute(&self.db.writes)
            .await?;
        Ok(())
    }

    /// Records a failed attempt and when to try again.
    pub async fn failed(
        &self,
        id: i64,
        error: &str,
        next_attempt_ms: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?
             WHERE id = ?",
        )
        .bind(error)
        .bind(next_attempt_ms)
        .bind(id)
        .execute(&self.db.writes)
        .await?;
        Ok(())
    }
}
