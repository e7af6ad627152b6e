//! The notification service's handlers.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::State as AppState;
use crate::api::{ApiError, Json, Query};

/// The body of `POST /notifications`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct NotificationInput {
    user_id: i64,
    order_id: i64,
    channel: String,
    message: String,
}

pub(super) async fn create(
    State(state): State<AppState>,
    Json(input): Json<NotificationInput>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    if !matches!(input.channel.as_str(), "email" | "sms" | "push") {
        return Err(ApiError::bad_request("channel must be email, sms or push"));
    }
    if input.message.trim().is_empty() || input.message.len() > 4096 {
        return Err(ApiError::bad_request("message must have 1 to 4096 bytes"));
    }
    let (notification, new) = state
        .store
        .accept(
            input.user_id,
            input.order_id,
            &input.channel,
            &input.message,
        )
        .await?;
    if new {
        tracing::info!(
            notification = notification.id,
            order = input.order_id,
            user = input.user_id,
            "notification sent"
        );
    } else {
        tracing::info!(order = input.order_id, "duplicate notification ignored");
    }
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
}

pub(super) async fn list(
    State(state): State<AppState>,
    Query(filter): Query<Filter>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let notifications = match (filter.user_id, filter.order_id) {
        (Some(user), None) => state.store.by_user(user).await?,
        (None, Some(order)) => state.store.by_order(order).await?,
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of userId or orderId",
            ));
        }
    };
    Ok(Json(serde_json::json!({ "notifications": notifications })))
}
