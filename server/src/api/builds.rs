//! Repositories, builds and jobs: reads for everyone, writes for the admin.

use super::auth::{Admin, Viewer};
use super::repo_by_path;
use super::views::{BuildView, JobView, RepoView};
use crate::error::{ApiError, ApiResult};
use crate::intake::github::RequestConfig;
use crate::planner::{self, Planned, Replanned};
use crate::state::{self, BuildState, JobEvent, JobState};
use crate::store::builds::{self, BuildFilter};
use crate::store::{jobs, repos};
use crate::{progress, App};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use gantry_pipeline::Event;
use gantry_protocol::{BuildId, JobId, RepoId};
use serde::Deserialize;
use tower::ServiceExt;

pub async fn list_repos(State(app): State<App>, viewer: Viewer) -> ApiResult<Json<Vec<RepoView>>> {
    let repos = visible_repos(&app, &viewer).await?;
    Ok(Json(
        repos
            .iter()
            .map(|(repo, last)| RepoView::new(repo, last.as_ref()))
            .collect(),
    ))
}

/// The repositories this viewer may see, each with its default branch's last build.
pub(crate) async fn visible_repos(
    app: &App,
    viewer: &Viewer,
) -> ApiResult<Vec<(repos::Repo, Option<builds::Build>)>> {
    let mut conn = app.db.pool.acquire().await?;
    let mut out = Vec::new();
    for repo in repos::all(&mut conn).await? {
        if viewer
            .check(app, repo.private, &repo.full_name, "repository")
            .await
            .is_err()
        {
            continue;
        }
        let last = builds::latest_on_branch(&mut conn, repo.id, &repo.default_branch).await?;
        out.push((repo, last));
    }
    Ok(out)
}

/// Job `id` and its build, when this viewer may see them (404 otherwise).
pub(crate) async fn visible_job(
    app: &App,
    viewer: &Viewer,
    id: i64,
) -> ApiResult<(jobs::Job, builds::Build)> {
    let mut conn = app.db.pool.acquire().await?;
    let job = jobs::get(&mut conn, JobId(id))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no job {id}")))?;
    let build = builds::get(&mut conn, job.build_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no job {id}")))?;
    let private = private(&mut conn, &build).await?;
    drop(conn);
    viewer
        .check(app, private, &build.repo, &format!("job {id}"))
        .await?;
    Ok((job, build))
}

#[derive(Deserialize)]
pub struct ListQuery {
    branch: Option<String>,
    state: Option<String>,
    limit: Option<i64>,
    before: Option<i64>,
}

pub async fn list_builds(
    State(app): State<App>,
    viewer: Viewer,
    Path((owner, name)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<BuildView>>> {
    let repo = repo_by_path(&app, &owner, &name).await?;
    viewer
        .check(
            &app,
            repo.private,
            &repo.full_name,
            &format!("repository {owner}/{name}"),
        )
        .await?;
    let state = q
        .state
        .as_deref()
        .map(|s| s.parse::<BuildState>())
        .transpose()
        .map_err(|e| {
            ApiError::BadRequest(format!(
                "{e}; states are {}",
                BuildState::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    let filter = BuildFilter {
        branch: q.branch,
        state,
        before: q.before,
        limit: q.limit.unwrap_or(25).clamp(1, 100),
    };
    let mut conn = app.db.pool.acquire().await?;
    let list = builds::list(&mut conn, repo.id, &filter).await?;
    Ok(Json(list.iter().map(BuildView::new).collect()))
}

/// Whether the repository of `build` is private (a missing repository counts as private).
pub(crate) async fn private(
    conn: &mut sqlx::AnyConnection,
    build: &builds::Build,
) -> ApiResult<bool> {
    Ok(repos::by_id(conn, build.repo_id)
        .await?
        .is_none_or(|r| r.private))
}

/// Build `id`, if `viewer` may see it (a private repository's builds do
/// not exist for anyone else).
pub(crate) async fn visible_build(
    app: &App,
    conn: &mut sqlx::AnyConnection,
    viewer: &Viewer,
    id: i64,
) -> ApiResult<builds::Build> {
    let build = builds::get(conn, BuildId(id))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no build {id}")))?;
    viewer
        .check(
            app,
            private(conn, &build).await?,
            &build.repo,
            &format!("build {id}"),
        )
        .await?;
    Ok(build)
}

pub async fn get_build(
    State(app): State<App>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> ApiResult<Json<BuildView>> {
    let mut conn = app.db.pool.acquire().await?;
    let build = visible_build(&app, &mut conn, &viewer, id).await?;
    let build_jobs = jobs::for_build(&mut conn, build.id).await?;
    let mut view = BuildView::full(&build, &build_jobs);
    view.request_config = shown_request_config(&app, &mut conn, &build)
        .await?
        .map(|c| c.to_value());
    let waiting = why_waiting(&app, &mut conn, &build_jobs).await?;
    for (why, shown) in waiting.into_iter().zip(view.jobs.iter_mut().flatten()) {
        shown.waiting = why;
    }
    Ok(Json(view))
}

/// The config `build` was triggered with, if any, with the value of every
/// secret of its repository hidden: a build is shown to all who may read
/// the repository, and a secret pasted into a config must not be.
pub(crate) async fn shown_request_config(
    app: &App,
    conn: &mut sqlx::AnyConnection,
    build: &builds::Build,
) -> ApiResult<Option<RequestConfig>> {
    let Some(config) = build
        .request_config
        .as_deref()
        .and_then(RequestConfig::from_json)
    else {
        return Ok(None);
    };
    let values = crate::secrets::values(conn, app.secrets.as_ref(), build.repo_id)
        .await
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    let text = crate::secrets::mask(&config.text, &values);
    Ok(Some(RequestConfig { text, ..config }))
}

/// Why each of `jobs` waits (`None` for those not queued): the runners are
/// looked at once and the queue counted once, however many jobs.
pub(crate) async fn why_waiting(
    app: &App,
    conn: &mut sqlx::AnyConnection,
    jobs: &[jobs::Job],
) -> ApiResult<Vec<Option<String>>> {
    let queued: Vec<JobId> = jobs
        .iter()
        .filter(|job| job.state == JobState::Queued)
        .map(|job| job.id)
        .collect();
    if queued.is_empty() {
        return Ok(vec![None; jobs.len()]);
    }
    let queue = app.runners.queue(conn).await?;
    let mut ahead = jobs::queued_ahead(conn, &queued).await?.into_iter();
    // The jobs are one build's, so of one repository.
    let full = repos::job_slots(conn, jobs[0].build_id)
        .await?
        .filter(|(limit, running)| running >= limit);
    Ok(jobs
        .iter()
        .map(|job| match job.state {
            JobState::Queued => ahead.next().map(|n| match full {
                Some((limit, running)) => crate::runners::why_full(n, limit, running),
                None => queue.why(n),
            }),
            _ => None,
        })
        .collect())
}

/// [`why_waiting`] for one job.
pub(crate) async fn why_it_waits(
    app: &App,
    conn: &mut sqlx::AnyConnection,
    job: &jobs::Job,
) -> ApiResult<Option<String>> {
    Ok(why_waiting(app, conn, std::slice::from_ref(job))
        .await?
        .pop()
        .flatten())
}

pub async fn get_job(
    State(app): State<App>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> ApiResult<Json<JobView>> {
    let (job, build) = visible_job(&app, &viewer, id).await?;
    let mut view = JobView::new(&job, build.number);
    let mut conn = app.db.pool.acquire().await?;
    view.waiting = why_it_waits(&app, &mut conn, &job).await?;
    Ok(Json(view))
}

/// The raw log, with HTTP Range support for viewers that fetch parts of big logs.
pub async fn job_log(
    State(app): State<App>,
    viewer: Viewer,
    Path(id): Path<i64>,
    request: Request<Body>,
) -> ApiResult<Response> {
    let (job, _) = visible_job(&app, &viewer, id).await?;
    let path = app.logs.path(job.id);
    if !tokio::fs::try_exists(&path).await.unwrap_or(false) {
        return Ok(([("content-type", "text/plain; charset=utf-8")], "").into_response());
    }
    let response = tower_http::services::ServeFile::new_with_mime(
        path,
        &"text/plain; charset=utf-8"
            .parse()
            .map_err(|e| ApiError::Internal(Box::new(e)))?,
    )
    .oneshot(request)
    .await
    .map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok(response.map(Body::new))
}

/// Restarts a build's jobs (or one job); a build without jobs is planned
/// again instead (see [`planner::replan`]), and what came of that is returned.
pub(crate) async fn restart_jobs(
    app: &App,
    build: BuildId,
    only: Option<JobId>,
) -> ApiResult<Option<Replanned>> {
    let mut tx = app.db.begin().await?;
    let current = builds::get(&mut tx, build)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no build {build}")))?;
    let all = jobs::for_build(&mut tx, build).await?;
    if all.is_empty() {
        drop(tx);
        // Nothing ran: its pipeline file is read again.
        return Ok(Some(planner::replan(app, &current).await?));
    }
    let targets: Vec<&jobs::Job> = all
        .iter()
        .filter(|j| only.is_none_or(|id| j.id == id))
        .collect();
    for job in &targets {
        state::next(job.state, JobEvent::Restart).map_err(|_| {
            ApiError::Conflict(format!(
                "job {} is {}; cancel it before restarting",
                job.id, job.state
            ))
        })?;
    }
    let first_stage = all.iter().map(|j| j.stage_index).min().unwrap_or(0);
    for job in &targets {
        let to = if only.is_some() || job.stage_index == first_stage {
            JobState::Queued
        } else {
            JobState::Created
        };
        jobs::reset(&mut tx, job.id, to).await?;
    }
    if only.is_none() {
        builds::reset(&mut tx, build).await?;
    }
    // GitHub shows the commit as pending again.
    let queued = builds::Build {
        state: BuildState::Queued,
        ..current.clone()
    };
    crate::statuses::enqueue(&mut tx, app, &queued).await?;
    progress::refresh_build_state(app, &mut tx, build).await?;
    tx.commit().await?;
    for job in targets {
        let logs = app.logs.clone();
        let id = job.id;
        tokio::task::spawn_blocking(move || logs.clear(id))
            .await
            .map_err(|e| ApiError::Internal(Box::new(e)))??;
        app.log_written_anew(id);
    }
    app.dispatch.notify_waiters();
    Ok(None)
}

pub(crate) async fn cancel_jobs(app: &App, build: BuildId, only: Option<JobId>) -> ApiResult<()> {
    let mut tx = app.db.begin().await?;
    progress::cancel_with(
        &mut tx,
        &app.config,
        &app.outbox_wake,
        build,
        only,
        "canceled by a user",
        true,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn restart_build(
    State(app): State<App>,
    _: Admin,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    match restart_jobs(&app, BuildId(id), None).await? {
        None | Some(Replanned::Queued) => Ok(StatusCode::ACCEPTED),
        Some(Replanned::NoJobs(why)) => Err(ApiError::Conflict(format!(
            "build {id} has no jobs to run: {why}"
        ))),
        Some(Replanned::Meanwhile) => Err(ApiError::Conflict(format!(
            "build {id} was restarted meanwhile"
        ))),
    }
}

pub async fn cancel_build(
    State(app): State<App>,
    _: Admin,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let mut conn = app.db.pool.acquire().await?;
    builds::get(&mut conn, BuildId(id))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no build {id}")))?;
    drop(conn);
    cancel_jobs(&app, BuildId(id), None).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Job `id`, or 404.
pub(crate) async fn find_job(app: &App, id: JobId) -> ApiResult<jobs::Job> {
    let mut conn = app.db.pool.acquire().await?;
    jobs::get(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no job {id}")))
}

async fn job_build(app: &App, id: i64) -> ApiResult<BuildId> {
    Ok(find_job(app, JobId(id)).await?.build_id)
}

pub async fn restart_job(
    State(app): State<App>,
    _: Admin,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let build = job_build(&app, id).await?;
    restart_jobs(&app, build, Some(JobId(id))).await?;
    Ok(StatusCode::ACCEPTED)
}

pub async fn cancel_job(
    State(app): State<App>,
    _: Admin,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let build = job_build(&app, id).await?;
    cancel_jobs(&app, build, Some(JobId(id))).await?;
    Ok(StatusCode::ACCEPTED)
}

/// `DELETE /api/jobs/{id}/log` (admin): see [`remove_log`].
pub async fn remove_job_log(
    State(app): State<App>,
    _: Admin,
    Path(id): Path<i64>,
) -> ApiResult<Json<serde_json::Value>> {
    let job = find_job(&app, JobId(id)).await?;
    let line = remove_log(&app, &job, "the admin").await?;
    Ok(Json(serde_json::json!({ "job": id, "log": line })))
}

/// Replaces a finished job's log with a line saying who removed it and
/// when, as Travis does: for a log that shows what it should not (a secret
/// printed in a form the masking cannot know). Returns that line.
pub(crate) async fn remove_log(app: &App, job: &jobs::Job, by: &str) -> ApiResult<String> {
    let id = job.id;
    if !job.state.is_finished() {
        return Err(ApiError::Conflict(format!(
            "job {id} is {}: cancel it, or wait for it to finish, before removing its log",
            job.state
        )));
    }
    let at = super::views::time(Some(crate::store::now_ms())).unwrap_or_default();
    let line = format!("Log removed by {by} at {at}");
    let logs = app.logs.clone();
    let text = line.clone();
    tokio::task::spawn_blocking(move || logs.replace(id, &text))
        .await
        .map_err(|e| ApiError::Internal(Box::new(e)))??;
    app.log_written_anew(id);
    tracing::info!(job = %id, by, "log removed");
    Ok(line)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManualBuild {
    branch: Option<String>,
    commit: Option<String>,
    message: Option<String>,
    /// Travis's `request.config`: keys over the pipeline file's.
    config: Option<serde_json::Value>,
    /// How `config` joins the pipeline file (Travis's `merge_mode`).
    merge_mode: Option<String>,
}

/// The request's own config, checked: a map, and a merge mode Travis knows.
fn request_config(body: &ManualBuild) -> ApiResult<Option<RequestConfig>> {
    let Some(config) = &body.config else {
        if body.merge_mode.is_some() {
            return Err(ApiError::BadRequest(
                "`merge_mode` says how `config` joins the pipeline file; send a `config` too"
                    .into(),
            ));
        }
        return Ok(None);
    };
    if !config.is_object() {
        return Err(ApiError::BadRequest(
            "`config` must be an object of pipeline keys, as in .travis.yml".into(),
        ));
    }
    let mode = RequestConfig::mode_named(body.merge_mode.as_deref().unwrap_or("deep_merge_append"))
        .map_err(ApiError::BadRequest)?;
    // JSON is YAML: the pipeline crate reads it, with lines to point at.
    let text = serde_json::to_string_pretty(config)
        .map_err(|e| ApiError::BadRequest(format!("`config` cannot be read: {e}")))?;
    Ok(Some(RequestConfig { text, mode }))
}

/// A build of a branch's head or of a given commit, requested through the API.
pub async fn create_build(
    State(app): State<App>,
    _: Admin,
    Path((owner, name)): Path<(String, String)>,
    Json(body): Json<ManualBuild>,
) -> ApiResult<(StatusCode, Json<BuildView>)> {
    let view = manual_build(&app, &owner, &name, body).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn manual_build(
    app: &App,
    owner: &str,
    name: &str,
    body: ManualBuild,
) -> ApiResult<BuildView> {
    let config = request_config(&body)?;
    let repo = repo_by_path(app, owner, name).await?;
    let branch = body.branch.unwrap_or_else(|| repo.default_branch.clone());
    let message = body.message.unwrap_or_else(|| "manual build".into());
    let asked = planner::BranchBuild {
        branch,
        commit: body.commit,
        event: Event::Api,
        message,
        config,
        by: "admin".into(),
    };
    let planned = planner::build_of_branch(app, &repo, asked).await;
    let id = match planned? {
        Planned::Build(id) => id,
        Planned::Retry(reason) => return Err(ApiError::Unavailable(reason)),
    };
    let mut conn = app.db.pool.acquire().await?;
    let build = builds::get(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no build {id}")))?;
    let build_jobs = jobs::for_build(&mut conn, id).await?;
    let mut view = BuildView::full(&build, &build_jobs);
    view.request_config = shown_request_config(app, &mut conn, &build)
        .await?
        .map(|c| c.to_value());
    Ok(view)
}

/// Travis's API v3 body for `POST /repo/{slug}/requests`.
#[derive(Deserialize)]
pub struct TravisRequest {
    request: TravisBuildRequest,
}

#[derive(Deserialize)]
struct TravisBuildRequest {
    branch: Option<String>,
    sha: Option<String>,
    message: Option<String>,
    config: Option<serde_json::Value>,
    merge_mode: Option<String>,
}

/// `POST /repo/{owner%2Fname}/requests`, as Travis's API v3 takes it
/// (`Travis-API-Version: 3`, `Authorization: token …` with the admin
/// token), so scripts written for Travis trigger builds here with only the
/// host and token changed. Answers 202 in Travis's shape, with the build.
pub async fn travis_request(
    State(app): State<App>,
    _: Admin,
    Path(slug): Path<String>,
    Json(body): Json<TravisRequest>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    // Travis names a repository by its slug or by its id.
    let slug = match slug.parse::<i64>() {
        Ok(id) => {
            let mut conn = app.db.pool.acquire().await?;
            repos::by_id(&mut conn, RepoId(id))
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("no repository {id}")))?
                .full_name
        }
        Err(_) => slug,
    };
    let Some((owner, name)) = slug.split_once('/') else {
        return Err(ApiError::NotFound(format!(
            "no repository `{slug}`: write owner%2Fname (or the id from GET /api/repos), as Travis's API does"
        )));
    };
    let request = body.request;
    let echo = serde_json::json!({
        "branch": request.branch,
        "message": request.message,
        "config": request.config,
        "merge_mode": request.merge_mode,
    });
    let manual = ManualBuild {
        branch: request.branch,
        commit: request.sha,
        message: request.message,
        config: request.config,
        merge_mode: request.merge_mode,
    };
    let build = manual_build(&app, owner, name, manual).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({
            "@type": "pending",
            "resource_type": "request",
            "repository": {"@type": "repository", "name": name, "slug": slug},
            "request": echo,
            "build": build,
        })),
    ))
}
