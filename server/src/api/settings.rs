//! `GET/PUT /api/repos/{owner}/{name}/settings`: a repository's settings,
//! admin only. Today one: Travis's "Limit concurrent jobs".

use super::auth::Admin;
use crate::error::{ApiError, ApiResult};
use crate::store::repos::{self, Repo};
use crate::App;
use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
pub struct Settings {
    /// At most this many of the repository's jobs run at once, the rest
    /// waiting queued in order; `null`: no limit.
    max_concurrent_jobs: Option<i64>,
}

/// A `PUT`'s body. A misspelt or missing setting is refused, not read as
/// `null`: that would lift the limit the user meant to set.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSettings {
    #[serde(default, deserialize_with = "given")]
    max_concurrent_jobs: Option<Option<i64>>,
}

/// Tells `"max_concurrent_jobs": null` (given) from no such key (`None`).
fn given<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

#[derive(Serialize)]
pub struct SettingsView {
    repo: String,
    #[serde(flatten)]
    settings: Settings,
}

impl SettingsView {
    fn of(repo: Repo) -> SettingsView {
        SettingsView {
            repo: repo.full_name,
            settings: Settings {
                max_concurrent_jobs: repo.max_concurrent_jobs,
            },
        }
    }
}

pub async fn get(
    State(app): State<App>,
    _: Admin,
    Path((owner, name)): Path<(String, String)>,
) -> ApiResult<Json<SettingsView>> {
    let repo = super::repo_by_path(&app, &owner, &name).await?;
    Ok(Json(SettingsView::of(repo)))
}

pub async fn put(
    State(app): State<App>,
    _: Admin,
    Path((owner, name)): Path<(String, String)>,
    Json(settings): Json<NewSettings>,
) -> ApiResult<Json<SettingsView>> {
    let Some(max_concurrent_jobs) = settings.max_concurrent_jobs else {
        return Err(ApiError::BadRequest(
            "give max_concurrent_jobs: a number of jobs, or null for no limit".into(),
        ));
    };
    if let Some(n) = max_concurrent_jobs.filter(|n| *n < 1) {
        return Err(ApiError::BadRequest(format!(
            "max_concurrent_jobs is {n}: give at least 1, or null for no limit"
        )));
    }
    let repo = super::repo_by_path(&app, &owner, &name).await?;
    let mut conn = app.db.pool.acquire().await?;
    let repo = repos::limit_jobs(&mut conn, repo.id, max_concurrent_jobs).await?;
    // A raised limit lets queued jobs start: waiting runners look again.
    app.dispatch.notify_waiters();
    Ok(Json(SettingsView::of(repo)))
}
