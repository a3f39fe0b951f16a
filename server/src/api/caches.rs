//! `GET/DELETE /api/repos/{owner}/{name}/caches`: a repository's build
//! caches, admin only. The caches themselves live on the runners (see the
//! runner's `cache` module); a clear is counted here and carried by every
//! job, and each runner drops the repository's caches before its next job.

use super::auth::Admin;
use super::views::time;
use crate::error::ApiResult;
use crate::store::repos;
use crate::App;
use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;

#[derive(Serialize)]
pub struct CachesView {
    repo: String,
    /// How many times they were cleared.
    generation: i64,
    cleared_at: Option<String>,
}

impl CachesView {
    fn of(repo: &repos::Repo) -> CachesView {
        CachesView {
            repo: repo.full_name.clone(),
            generation: repo.cache_generation,
            cleared_at: time(repo.caches_cleared_at),
        }
    }
}

pub async fn get(
    State(app): State<App>,
    _: Admin,
    Path((owner, name)): Path<(String, String)>,
) -> ApiResult<Json<CachesView>> {
    let repo = super::repo_by_path(&app, &owner, &name).await?;
    Ok(Json(CachesView::of(&repo)))
}

/// Clears every branch's caches of the repository (Travis's "Delete all
/// repository caches"); jobs already running keep nothing they built.
pub async fn clear(
    State(app): State<App>,
    _: Admin,
    Path((owner, name)): Path<(String, String)>,
) -> ApiResult<Json<CachesView>> {
    let repo = super::repo_by_path(&app, &owner, &name).await?;
    let cleared = clear_caches(&app, &repo).await?;
    Ok(Json(CachesView::of(&cleared)))
}

/// Clears `repo`'s caches; the repository as it is after.
pub async fn clear_caches(app: &App, repo: &repos::Repo) -> ApiResult<repos::Repo> {
    let mut conn = app.db.pool.acquire().await?;
    Ok(repos::clear_caches(&mut conn, repo.id).await?)
}
