//! The user service's handlers.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::store::WriteError;
use super::validate;
use super::{State as AppState, User};
use crate::api::{ApiError, Json, Page, Path, Query};

/// The body of `POST /users` and `PUT /users/{id}`.
#[derive(Debug, Deserialize)]
pub(super) struct UserInput {
    name: String,
    email: String,
}

impl UserInput {
    fn validate(&self) -> Result<(&str, &str), ApiError> {
        let name = validate::name(&self.name).map_err(ApiError::bad_request)?;
        let email = validate::email(&self.email).map_err(ApiError::bad_request)?;
        Ok((name, email))
    }
}

fn write_error(e: WriteError) -> ApiError {
    match e {
        WriteError::EmailTaken => ApiError::new(
            StatusCode::CONFLICT,
            "email_taken",
            "another user has this email",
        ),
        WriteError::Db(e) => e.into(),
    }
}

fn no_user(id: i64) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "user_not_found",
        format!("no user {id}"),
    )
}

pub(super) async fn get(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<User>, ApiError> {
    state
        .store
        .get(id)
        .await?
        .map(Json)
        .ok_or_else(|| no_user(id))
}

/// `?limit=&cursor=`, the paging of every list. `page` and `pageSize`
/// (or `page_size`), the offset paging this list had before, are refused
/// by name rather than ignored, so an old caller learns why its page 2
/// does not come.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
    page: Option<String>,
    #[serde(alias = "page_size")]
    page_size: Option<String>,
}

pub(super) async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if q.page.is_some() || q.page_size.is_some() {
        return Err(ApiError::bad_request(
            "page and pageSize are not supported: page with limit and the nextCursor of the \
             previous page as cursor",
        ));
    }
    let page = Page::parse(q.limit.as_deref(), q.cursor.as_deref())?;
    let users = state.store.page(page).await?;
    Ok(Json(serde_json::json!({
        "users": users.items,
        "nextCursor": users.next_cursor,
    })))
}

pub(super) async fn create(
    State(state): State<AppState>,
    Json(input): Json<UserInput>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let (name, email) = input.validate()?;
    let user = state.store.create(name, email).await.map_err(write_error)?;
    tracing::info!(user = user.id, "user created");
    Ok((StatusCode::CREATED, Json(user)))
}

pub(super) async fn update(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Json(input): Json<UserInput>,
) -> Result<Json<User>, ApiError> {
    let (name, email) = input.validate()?;
    state
        .store
        .update(id, name, email)
        .await
        .map_err(write_error)?
        .map(Json)
        .ok_or_else(|| no_user(id))
}
