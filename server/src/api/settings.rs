//! `GET/PUT /api/repos/{owner}/{name}/settings`: a repository's settings,
//! admin only: Travis's "Limit concurrent jobs", "Build pushed branches"
//! and "Build pushed pull requests".

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
    /// Whether pushes of branches and tags build.
    build_pushes: bool,
    /// Whether pull requests build.
    build_pull_requests: bool,
}

/// A `PUT`'s body: the settings to change, the others kept. A misspelt
/// setting is refused, not read as `null`: that would lift the limit the
/// user meant to set.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSettings {
    #[serde(default, deserialize_with = "given")]
    max_concurrent_jobs: Option<Option<i64>>,
    build_pushes: Option<bool>,
    build_pull_requests: Option<bool>,
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
                build_pushes: repo.build_pushes,
                build_pull_requests: repo.build_pull_requests,
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
    let NewSettings {
        max_concurrent_jobs,
        build_pushes,
        build_pull_requests,
    } = settings;
    if max_concurrent_jobs.is_none() && build_pushes.is_none() && build_pull_requests.is_none() {
        return Err(ApiError::BadRequest(
            "give a setting to change: max_concurrent_jobs (a number of jobs, or null for no limit), build_pushes or build_pull_requests (true or false)".into(),
        ));
    }
    if let Some(n) = max_concurrent_jobs.flatten().filter(|n| *n < 1) {
        return Err(ApiError::BadRequest(format!(
            "max_concurrent_jobs is {n}: give at least 1, or null for no limit"
        )));
    }
    let mut repo = super::repo_by_path(&app, &owner, &name).await?;
    let mut tx = app.db.begin().await?;
    if let Some(limit) = max_concurrent_jobs {
        repo = repos::limit_jobs(&mut tx, repo.id, limit).await?;
    }
    if build_pushes.is_some() || build_pull_requests.is_some() {
        repo = repos::switch_builds(&mut tx, repo.id, build_pushes, build_pull_requests).await?;
    }
    tx.commit().await?;
    // A raised limit lets queued jobs start: waiting runners look again.
    app.dispatch.notify_waiters();
    Ok(Json(SettingsView::of(repo)))
}
