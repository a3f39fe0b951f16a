//! `GET/POST /api/repos/{owner}/{name}/crons`, `GET/DELETE /api/crons/{id}`:
//! cron schedules (see `crate::cron`), admin only.

use super::auth::Admin;
use super::views::time;
use crate::cron::{self, Interval};
use crate::error::{ApiError, ApiResult};
use crate::store::crons;
use crate::App;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutCron {
    branch: String,
    interval: String,
    /// Travis's name for "skip a run when the branch built in the last 24 hours".
    #[serde(default)]
    dont_run_if_recent_build_exists: bool,
}

#[derive(Serialize)]
pub struct CronView {
    id: i64,
    repo: String,
    branch: String,
    interval: Interval,
    dont_run_if_recent_build_exists: bool,
    next_run_at: Option<String>,
    last_run_at: Option<String>,
    last_result: Option<String>,
    last_build_id: Option<i64>,
    created_at: Option<String>,
}

impl CronView {
    fn of(c: &crons::Cron) -> CronView {
        CronView {
            id: c.id,
            repo: c.repo.clone(),
            branch: c.branch.clone(),
            interval: c.interval,
            dont_run_if_recent_build_exists: c.skip_if_recent,
            next_run_at: time(Some(c.next_run_at)),
            last_run_at: time(c.last_run_at),
            last_result: c.last_result.clone(),
            last_build_id: c.last_build_id.map(|b| b.0),
            created_at: time(Some(c.created_at)),
        }
    }
}

/// Sets a branch's schedule (one per branch, as on Travis); its first run is now.
pub async fn put(
    State(app): State<App>,
    _: Admin,
    Path((owner, name)): Path<(String, String)>,
    Json(body): Json<PutCron>,
) -> ApiResult<(StatusCode, Json<CronView>)> {
    let repo = super::repo_by_path(&app, &owner, &name).await?;
    let set = cron::schedule(
        &app,
        &repo,
        &body.branch,
        &body.interval,
        body.dont_run_if_recent_build_exists,
    )
    .await;
    let (cron, created) = set?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(CronView::of(&cron))))
}

pub async fn list(
    State(app): State<App>,
    _: Admin,
    Path((owner, name)): Path<(String, String)>,
) -> ApiResult<Json<Vec<CronView>>> {
    let repo = super::repo_by_path(&app, &owner, &name).await?;
    let mut conn = app.db.pool.acquire().await?;
    let all = crons::for_repo(&mut conn, repo.id).await?;
    Ok(Json(all.iter().map(CronView::of).collect()))
}

pub async fn get(
    State(app): State<App>,
    _: Admin,
    Path(id): Path<i64>,
) -> ApiResult<Json<CronView>> {
    let mut conn = app.db.pool.acquire().await?;
    crons::get(&mut conn, id)
        .await?
        .map(|c| Json(CronView::of(&c)))
        .ok_or_else(|| ApiError::NotFound(format!("no cron {id}")))
}

pub async fn delete(
    State(app): State<App>,
    _: Admin,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let mut conn = app.db.pool.acquire().await?;
    if crons::delete(&mut conn, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no cron {id}")))
    }
}
