//! The order service's handlers.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tower_jwt_service_auth::jwt::verify::ServiceIdentity;

use super::State as AppState;
use super::money::Cents;
use super::store::{InsertError, Item, NewOrder, Order};
use crate::api::{ApiError, Json, Page, Path, Query};

/// The body of `POST /orders`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct OrderInput {
    user_id: i64,
    items: Vec<ItemInput>,
}

/// An item of `POST /orders` as sent: the price a JSON number, checked
/// and turned into cents by [`OrderInput::validate`].
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ItemInput {
    product_id: String,
    quantity: i64,
    unit_price: f64,
}

/// The most lines an order may have.
const MAX_ITEMS: usize = 100;

impl OrderInput {
    /// Checks the input; the items with their prices in cents, and the
    /// exact total.
    fn validate(&self) -> Result<(Vec<Item>, Cents), ApiError> {
        if self.user_id < 1 {
            return Err(ApiError::bad_request("userId must be a positive integer"));
        }
        if self.items.is_empty() {
            return Err(ApiError::bad_request("items must not be empty"));
        }
        if self.items.len() > MAX_ITEMS {
            return Err(ApiError::bad_request(format!(
                "an order has at most {MAX_ITEMS} items"
            )));
        }
        let mut items = Vec::with_capacity(self.items.len());
        let mut total = Cents::default();
        for (i, item) in self.items.iter().enumerate() {
            if item.product_id.trim().is_empty() || item.product_id.len() > 100 {
                return Err(ApiError::bad_request(format!(
                    "items[{i}].productId must have 1 to 100 characters"
                )));
            }
            if !(1..=10_000).contains(&item.quantity) {
                return Err(ApiError::bad_request(format!(
                    "items[{i}].quantity must be between 1 and 10000"
                )));
            }
            let unit_price = Cents::from_decimal(item.unit_price)
                .map_err(|e| ApiError::bad_request(format!("items[{i}].unitPrice {e}")))?;
            // At most 100 items × 10,000 × 10^11 cents: far below i64::MAX,
            // checked all the same.
            total = unit_price
                .times(item.quantity)
                .and_then(|line| total.plus(line))
                .ok_or_else(|| ApiError::bad_request("the order's total is too large"))?;
            items.push(Item {
                product_id: item.product_id.clone(),
                quantity: item.quantity,
                unit_price,
            });
        }
        Ok((items, total))
    }

    /// A digest of the request, to tell a replay from a different request
    /// under the same idempotency key. Taken over the parsed input, so
    /// whitespace and key order do not matter.
    fn digest(&self) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The `Idempotency-Key` header, if any, checked.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::bad_request("Idempotency-Key must be 1 to 255 visible ASCII characters")
        })?;
    Ok(Some(key.to_owned()))
}

fn replay(order: Order) -> Response {
    let mut res = (StatusCode::CREATED, Json(order)).into_response();
    res.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    res
}

fn key_reused() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        "this Idempotency-Key was used with a different request",
    )
}

pub(super) async fn create(
    State(state): State<AppState>,
    caller: ServiceIdentity,
    headers: HeaderMap,
    Json(input): Json<OrderInput>,
) -> Result<Response, ApiError> {
    let (items, total) = input.validate()?;
    let key = idempotency_key(&headers)?;
    let digest = input.digest();
    if let Some(key) = &key
        && let Some((hash, order)) = state.store.by_key(&caller.service, key).await?
    {
        return if hash == digest {
            Ok(replay(order))
        } else {
            Err(key_reused())
        };
    }
    let user = state.upstream.user(&state.store, input.user_id).await?;
    let new = NewOrder {
        user_id: input.user_id,
        items: &items,
        total,
        user: &user,
        idempotency: key
            .as_deref()
            .map(|k| (caller.service.as_str(), k, digest.as_str())),
    };
    let message = format!("Your order #{{id}} of {total} was created.");
    match state.store.insert(new, &message).await {
        Ok(order) => {
            state.outbox.stored();
            tracing::info!(
                order = order.id,
                user = order.user_id,
                total = %order.total,
                user_source = %order.user.source,
                "order created"
            );
            Ok((StatusCode::CREATED, Json(order)).into_response())
        }
        // A concurrent request with the same key won the race.
        Err(InsertError::KeyTaken) => match key.as_deref() {
            Some(key) => match state.store.by_key(&caller.service, key).await? {
                Some((hash, order)) if hash == digest => Ok(replay(order)),
                _ => Err(key_reused()),
            },
            None => Err(ApiError::internal(
                "order insert",
                "key conflict without a key",
            )),
        },
        Err(InsertError::Db(e)) => Err(e.into()),
    }
}

pub(super) async fn get(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Order>, ApiError> {
    state.store.get(id).await?.map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "order_not_found",
            format!("no order {id}"),
        )
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Filter {
    user_id: Option<i64>,
    limit: Option<String>,
    cursor: Option<String>,
}

pub(super) async fn list(
    State(state): State<AppState>,
    Query(filter): Query<Filter>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user_id = filter
        .user_id
        .ok_or_else(|| ApiError::bad_request("give userId"))?;
    let page = Page::parse(filter.limit.as_deref(), filter.cursor.as_deref())?;
    let orders = state.store.by_user(user_id, page).await?;
    Ok(Json(serde_json::json!({
        "orders": orders.items,
        "nextCursor": orders.next_cursor,
    })))
}
