//! The notification service's handlers.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use tower_jwt_service_auth::jwt::verify::ServiceIdentity;

use super::State as AppState;
use super::store::Accepted;
use crate::api::{ApiError, Json, Page, Query};
use crate::auth::ORDER_SERVICE;

/// The body of `POST /notifications`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct NotificationInput {
    user_id: i64,
    order_id: i64,
    channel: String,
    message: String,
}

/// What a notification must be, over HTTP and NATS alike: a known
/// channel, and a message of 1 to 4096 bytes that is not all blanks.
pub(super) fn check(channel: &str, message: &str) -> Result<(), &'static str> {
    if !matches!(channel, "email" | "sms" | "push") {
        return Err("channel must be email, sms or push");
    }
    if message.trim().is_empty() || message.len() > 4096 {
        return Err("message must have 1 to 4096 bytes");
    }
    Ok(())
}

pub(super) async fn create(
    State(state): State<AppState>,
    caller: ServiceIdentity,
    Json(input): Json<NotificationInput>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    // Order ids are the order service's: only it may say what an order's
    // notification is, so no other holder of `write:notifications` can
    // store one first for an order to come (and have the real one dropped
    // as a duplicate).
    if caller.service != ORDER_SERVICE {
        tracing::warn!(
            caller = ?caller.service,
            order = input.order_id,
            "order notification refused: not from the order service"
        );
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_order_service",
            "order notifications are accepted from the order service only",
        ));
    }
    check(&input.channel, &input.message).map_err(ApiError::bad_request)?;
    let accepted = state
        .store
        .accept(
            input.user_id,
            input.order_id,
            &input.channel,
            &input.message,
        )
        .await?;
    let result = match &accepted {
        Accepted::New(_) => "new",
        Accepted::Duplicate(_) => "duplicate",
        Accepted::Conflict(_) => "conflict",
    };
    state.server.metrics.record(|| {
        metrics::counter!("notifications_accepted_total", "result" => result).increment(1);
    });
    let notification = match accepted {
        Accepted::New(notification) => {
            tracing::info!(
                notification = notification.id,
                order = input.order_id,
                user = input.user_id,
                "notification sent"
            );
            notification
        }
        Accepted::Duplicate(notification) => {
            tracing::info!(order = input.order_id, "duplicate notification ignored");
            notification
        }
        Accepted::Conflict(stored) => {
            // The texts are the caller's: `?` escapes them for the log.
            tracing::warn!(
                order = input.order_id,
                user = input.user_id,
                stored_user = stored.user_id,
                channel = ?input.channel,
                message = ?input.message,
                "notification refused: the order has a different one"
            );
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "notification_conflict",
                format!(
                    "order {} already has a different notification",
                    input.order_id
                ),
            ));
        }
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "id": notification.id, "status": notification.status })),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Filter {
    user_id: Option<i64>,
    order_id: Option<i64>,
    limit: Option<String>,
    cursor: Option<String>,
}

pub(super) async fn list(
    State(state): State<AppState>,
    Query(filter): Query<Filter>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let page = Page::parse(filter.limit.as_deref(), filter.cursor.as_deref())?;
    let notifications = match (filter.user_id, filter.order_id) {
        (Some(user), None) => state.store.by_user(user, page).await?,
        (None, Some(order)) => state.store.by_order(order, page).await?,
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of userId or orderId",
            ));
        }
    };
    Ok(Json(serde_json::json!({
        "notifications": notifications.items,
        "nextCursor": notifications.next_cursor,
    })))
}
