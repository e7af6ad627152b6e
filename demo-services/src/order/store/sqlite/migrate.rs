//! Changes to `orders.db` made when an older database is opened.

use serde::Deserialize;

use super::super::StoredItem;
use crate::db::sqlite::Db;

/// Converts a database written before amounts were kept in cents
/// (`orders.total` a float, item prices floats) in place, once: the column
/// is renamed `total_cents` and every amount becomes whole cents, in one
/// transaction.
pub(super) async fn to_cents(db: &Db) -> Result<(), sqlx::Error> {
    let old: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM pragma_table_info('orders') WHERE name = 'total'")
            .fetch_optional(&db.writes)
            .await?;
    if old.is_none() {
        return Ok(());
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct OldItem {
        product_id: String,
        quantity: i64,
        unit_price: f64,
    }
    let cents = |amount: f64| (amount * 100.0).round() as i64;
    let mut tx = db.writes.begin().await?;
    sqlx::query("ALTER TABLE orders RENAME COLUMN total TO total_cents")
        .execute(&mut *tx)
        .await?;
    // In batches, so a large table is not read into memory at once.
    let mut after = 0_i64;
    loop {
        let rows: Vec<(i64, String, f64)> = sqlx::query_as(
            "SELECT id, items, total_cents FROM orders WHERE id > ? ORDER BY id LIMIT 500",
        )
        .bind(after)
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = rows.last() else { break };
        after = last.0;
        for (id, items, total) in rows {
            let old: Vec<OldItem> =
                serde_json::from_str(&items).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            let new: Vec<StoredItem> = old
                .into_iter()
                .map(|i| StoredItem {
                    product_id: i.product_id,
                    quantity: i.quantity,
                    unit_price_cents: cents(i.unit_price),
                })
                .collect();
            let items =
                serde_json::to_string(&new).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
            sqlx::query("UPDATE orders SET items = ?, total_cents = ? WHERE id = ?")
                .bind(items)
                .bind(cents(total))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    tracing::info!("orders.db: amounts converted to cents");
    Ok(())
}

/// Adds the outbox's lease columns to a database from before replicas
/// claimed records ([`SCHEMA`](super::SCHEMA) has them for new ones).
pub(super) async fn leases(db: &Db) -> Result<(), sqlx::Error> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM pragma_table_info('outbox') WHERE name = 'lease_until'")
            .fetch_optional(&db.writes)
            .await?;
    if found.is_none() {
        sqlx::raw_sql(
            "ALTER TABLE outbox ADD COLUMN lease_until INTEGER;
             ALTER TABLE outbox ADD COLUMN leased_by TEXT;",
        )
        .execute(&db.writes)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::SCHEMA;
    use crate::db::{self, Database};
    use crate::order::money::Cents;
    use crate::order::store::OrderStore;

    /// A database written before amounts were kept in cents opens with its
    /// orders intact and their amounts in cents.
    #[tokio::test]
    async fn an_older_database_is_converted_to_cents() {
        let dir = std::env::temp_dir().join(format!("orders-cents-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let old_schema = SCHEMA.replace("total_cents INTEGER NOT NULL", "total REAL NOT NULL");
        let old = db::sqlite::open(&dir, "orders", &old_schema, db::Durability::Full)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO orders (user_id, items, total, status, created_at, user_name, user_email, user_source)
             VALUES (1, '[{\"productId\":\"p-1\",\"quantity\":3,\"unitPrice\":0.1}]', 0.3, 'created',
                     '2026-01-01T00:00:00.000Z', 'Ada', 'ada@example.com', 'live')",
        )
        .execute(&old.writes)
        .await
        .unwrap();
        old.writes.close().await;
        old.reads.close().await;

        let store = OrderStore::open(&Database::sqlite(&dir, db::Durability::Full))
            .await
            .unwrap();
        let order = store.get(1).await.unwrap().unwrap();
        assert_eq!(order.total, Cents::new(30));
        assert_eq!(order.items[0].unit_price, Cents::new(10));
        let json = serde_json::to_string(&order).unwrap();
        assert!(json.contains(r#""total":0.3,"#), "{json}");
        // Opening again changes nothing more.
        drop(store);
        let store = OrderStore::open(&Database::sqlite(&dir, db::Durability::Full))
            .await
            .unwrap();
        assert_eq!(store.get(1).await.unwrap().unwrap().total, Cents::new(30));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
