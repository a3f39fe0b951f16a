//! `GET /api/deliveries` (admin): the webhook journal, newest first — what
//! came of each delivery, or why it still waits. A push that made no build
//! (ignored, no pipeline file, GitHub unreachable) says why here, not only
//! in the server's log.

use super::auth::Admin;
use super::views::time;
use crate::error::{ApiError, ApiResult};
use crate::store::deliveries::{self, DeliveryState, JournalEntry};
use crate::App;
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    limit: Option<i64>,
}

#[derive(Serialize)]
pub struct DeliveryView {
    /// GitHub's `X-GitHub-Delivery`.
    pub id: String,
    pub event: String,
    pub repo: Option<String>,
    pub state: DeliveryState,
    /// Attempts to plan it so far.
    pub attempts: i64,
    /// Done: what came of it; waiting: why the last attempt failed.
    pub outcome: Option<String>,
    pub received_at: Option<String>,
    pub processed_at: Option<String>,
    pub next_attempt_at: Option<String>,
}

impl From<JournalEntry> for DeliveryView {
    fn from(e: JournalEntry) -> Self {
        DeliveryView {
            id: e.id,
            event: e.event,
            repo: e.repo,
            state: e.state,
            attempts: e.attempts,
            outcome: e.outcome,
            received_at: time(Some(e.received_at_ms)),
            processed_at: time(e.processed_at_ms),
            next_attempt_at: time(e.next_attempt_ms),
        }
    }
}

pub async fn list(
    State(app): State<App>,
    _: Admin,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<DeliveryView>>> {
    let state = match q.state.as_deref() {
        None => None,
        Some(text) => Some(
            DeliveryState::ALL
                .into_iter()
                .find(|s| s.as_str() == text)
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "no delivery state `{text}`; states are pending, waiting, done"
                    ))
                })?,
        ),
    };
    let limit = q.limit.unwrap_or(25).clamp(1, 100);
    let entries = deliveries::recent(&app.db, state, limit).await?;
    Ok(Json(entries.into_iter().map(DeliveryView::from).collect()))
}
