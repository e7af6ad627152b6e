//! The order service's tables: orders, idempotency keys, the last copy of
//! each user seen, and the outbox of notifications to deliver; in SQLite
//! (`sqlite/`, one process) or PostgreSQL (`postgres.rs`, shared by
//! replicas), behind one interface ([`OrderStore`]).
//!
//! An order and its notification record are written in one transaction, so
//! an acknowledged order always has its notification on the way, even if
//! the process dies right after answering.
//!
//! Outbox records are *claimed* before they are sent: a claim leases a
//! record to one process for a while ([`OrderStore::claim`]), so replicas
//! sharing the table never send the same record at once, and a record
//! whose process died is claimed again once its lease runs out.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::money::Cents;
use crate::api::{Page, Paged};
use crate::db::Database;

mod postgres;
mod sqlite;

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
pub(super) struct StoredItem {
    pub(super) product_id: String,
    pub(super) quantity: i64,
    pub(super) unit_price_cents: i64,
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

pub(super) type OrderRow = (
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

pub(super) fn order_from_row(row: OrderRow) -> Result<Order, sqlx::Error> {
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

/// The order service's database.
#[derive(Debug, Clone)]
pub enum OrderStore {
    /// `<data-dir>/orders.db`: one process.
    Sqlite(sqlite::Store),
    /// Tables in a PostgreSQL database, shared by every replica.
    Postgres(postgres::Store),
}

/// Calls the same method on whichever store this is.
macro_rules! either {
    ($self:ident.$method:ident($($arg:expr),*)) => {
        match $self {
            OrderStore::Sqlite(s) => s.$method($($arg),*).await,
            OrderStore::Postgres(s) => s.$method($($arg),*).await,
        }
    };
}

impl OrderStore {
    /// Opens the database, creating or updating the tables.
    pub async fn open(db: &Database) -> Result<Self, sqlx::Error> {
        Ok(match db {
            Database::Sqlite { dir, durability } => {
                OrderStore::Sqlite(sqlite::Store::open(dir, *durability).await?)
            }
            Database::Postgres { url } => OrderStore::Postgres(postgres::Store::open(url).await?),
        })
    }

    /// This deployment's identity: random, made when the database was
    /// created, and the same for every process on the database. Order ids
    /// start at 1 in every deployment; with this in front, an id names one
    /// order across deployments that share a message broker.
    pub fn deployment_id(&self) -> &str {
        match self {
            OrderStore::Sqlite(s) => &s.deployment,
            OrderStore::Postgres(s) => &s.deployment,
        }
    }

    /// Stores an order, its notification record and its idempotency key
    /// in one transaction. When another request holds the same key, this
    /// waits for its transaction to end, and answers
    /// [`InsertError::KeyTaken`] if it committed.
    pub async fn insert(&self, order: NewOrder<'_>, message: &str) -> Result<Order, InsertError> {
        either!(self.insert(order, message))
    }

    /// The order an idempotency key applied to, with the request digest.
    pub async fn by_key(
        &self,
        caller: &str,
        key: &str,
    ) -> Result<Option<(String, Order)>, sqlx::Error> {
        either!(self.by_key(caller, key))
    }

    /// The order `id`.
    pub async fn get(&self, id: i64) -> Result<Option<Order>, sqlx::Error> {
        either!(self.get(id))
    }

    /// One page of the orders of a user, oldest first.
    pub async fn by_user(&self, user_id: i64, page: Page) -> Result<Paged<Order>, sqlx::Error> {
        either!(self.by_user(user_id, page))
    }

    /// Remembers the latest copy of a user (shared by every replica).
    pub async fn cache_user(&self, user: &CachedUser) -> Result<(), sqlx::Error> {
        either!(self.cache_user(user))
    }

    /// The last copy seen of user `id`.
    pub async fn cached_user(&self, id: i64) -> Result<Option<CachedUser>, sqlx::Error> {
        either!(self.cached_user(id))
    }

    /// Leases up to `limit` due notifications, oldest first, to `owner`
    /// for `lease`: none of them is claimed again, by any process, until
    /// it is [`delivered`](Self::delivered), [`failed`](Self::failed),
    /// [`release`](Self::release)d or the lease runs out. Records other
    /// processes are claiming at the same moment are skipped, not waited
    /// for.
    pub async fn claim(
        &self,
        owner: &str,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<PendingNotification>, sqlx::Error> {
        let mut claimed = either!(self.claim(owner, limit, lease))?;
        claimed.sort_by_key(|n| n.id);
        Ok(claimed)
    }

    /// How long until the next undelivered notification can be claimed
    /// (zero if one can now), if any is undelivered.
    pub async fn next_due(&self) -> Result<Option<Duration>, sqlx::Error> {
        either!(self.next_due())
    }

    /// How many notifications are not delivered yet, by every process.
    pub async fn pending(&self) -> Result<u64, sqlx::Error> {
        either!(self.pending())
    }

    /// Marks a notification delivered (whoever holds its lease now: it
    /// was delivered either way).
    pub async fn delivered(&self, id: i64) -> Result<(), sqlx::Error> {
        either!(self.delivered(id))
    }

    /// Records a failed attempt of `owner`'s and when to try again, and
    /// ends the lease; nothing if `owner` no longer holds it.
    pub async fn failed(
        &self,
        id: i64,
        owner: &str,
        error: &str,
        retry_in: Duration,
    ) -> Result<(), sqlx::Error> {
        either!(self.failed(id, owner, error, retry_in))
    }

    /// Ends `owner`'s leases on `ids` without counting an attempt: they
    /// were claimed but not sent.
    pub async fn release(&self, owner: &str, ids: &[i64]) -> Result<(), sqlx::Error> {
        either!(self.release(owner, ids))
    }
}

/// A duration in whole milliseconds, for the database.
pub(super) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The columns of a claimed outbox record.
pub(super) type OutboxRow = (i64, i64, i64, String, String, i64);

pub(super) fn pending_from_row(
    (id, order_id, user_id, channel, message, attempts): OutboxRow,
) -> PendingNotification {
    PendingNotification {
        id,
        order_id,
        user_id,
        channel,
        message,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
    }
}

/// A fresh deployment identity: 16 random bytes in hex.
pub(super) fn new_deployment_id() -> String {
    use rand::RngExt;
    let bits: u128 = rand::rng().random();
    format!("{bits:032x}")
}

/// The `items` column: the items as JSON, prices in cents.
pub(super) fn items_json(items: &[Item]) -> Result<String, InsertError> {
    let stored: Vec<StoredItem> = items.iter().map(StoredItem::from).collect();
    serde_json::to_string(&stored).map_err(|e| InsertError::Db(sqlx::Error::Encode(Box::new(e))))
}

/// The order just stored, as the API shows it.
pub(super) fn stored_order(order: &NewOrder<'_>, id: i64, created_at: String) -> Order {
    Order {
        id,
        user_id: order.user_id,
        items: order.items.to_vec(),
        total: order.total,
        status: "created".to_owned(),
        created_at,
        user: order.user.clone(),
        notification: "queued".to_owned(),
    }
}
