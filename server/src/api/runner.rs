//! The runner API (see `gantry_protocol`): claim, heartbeat, log, deploy lock, finish.

use super::auth::Runner;
use crate::error::{ApiError, ApiResult};
use crate::logs::AppendError;
use crate::state::{self, JobEvent, JobState};
use crate::store::{deploy_locks, jobs};
use crate::{progress, queue, App};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use gantry_protocol::{
    ClaimRequest, DeployLockRequest, DeployLockResponse, FinishRequest, HeartbeatResponse, JobId,
    LogAck, LEASE_HEADER,
};
use serde::Deserialize;
use std::time::Duration;

/// Longest a claim is held open.
const MAX_WAIT: Duration = Duration::from_secs(60);

fn lease(headers: &HeaderMap) -> ApiResult<&str> {
    headers
        .get(LEASE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::BadRequest(format!("missing {LEASE_HEADER} header")))
}

fn lease_lost(job: JobId) -> ApiError {
    ApiError::Conflict(format!(
        "job {job} is no longer held by this lease (it expired, was canceled or finished)"
    ))
}

pub async fn claim(
    State(app): State<App>,
    _: Runner,
    Json(request): Json<ClaimRequest>,
) -> ApiResult<Response> {
    let wait = Duration::from_secs(request.wait_seconds).min(MAX_WAIT);
    match queue::claim(&app, &request.runner, wait).await? {
        Some(assignment) => Ok(Json(assignment).into_response()),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

pub async fn heartbeat(
    State(app): State<App>,
    _: Runner,
    Path(job): Path<i64>,
    headers: HeaderMap,
) -> ApiResult<Json<HeartbeatResponse>> {
    let job = JobId(job);
    let lease_ms = app.config.lease.as_millis() as i64;
    match jobs::heartbeat(&app.db, job, lease(&headers)?, lease_ms).await? {
        Some(cancel) => Ok(Json(HeartbeatResponse {
            cancel,
            lease_seconds: app.config.lease.as_secs(),
        })),
        None => Err(lease_lost(job)),
    }
}

#[derive(Deserialize)]
pub struct LogQuery {
    offset: u64,
}

pub async fn log(
    State(app): State<App>,
    _: Runner,
    Path(job): Path<i64>,
    Query(query): Query<LogQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let job = JobId(job);
    // The body's frames as they arrived: stored one after the other, not
    // first copied into one buffer (a twentieth of the server's work on a big log).
    let mut parts = Vec::new();
    let mut frames = body.into_data_stream();
    while let Some(frame) = frames.next().await {
        let frame = frame.map_err(unread_chunk)?;
        parts.push(frame);
    }
    match append_log(&app, job, lease(&headers)?, query.offset, parts).await? {
        LogAppend::Stored(ack) => Ok(Json(ack).into_response()),
        LogAppend::Gap(ack) => Ok((StatusCode::CONFLICT, Json(ack)).into_response()),
        LogAppend::LeaseLost => Err(lease_lost(job)),
    }
}

/// Why a log chunk's body could not be read: over the limit (a chunked
/// body, whose length the limit layer could not refuse up front) or cut off.
fn unread_chunk(e: axum::Error) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(cause) = source {
        if cause.is::<http_body_util::LengthLimitError>() {
            return ApiError::TooLarge(format!(
                "a log chunk holds at most {} MiB; send the log in smaller chunks",
                super::MAX_LOG_CHUNK / (1024 * 1024)
            ));
        }
        source = cause.source();
    }
    ApiError::BadRequest(format!("the log chunk could not be read whole: {e}"))
}

/// What came of a runner's log chunk.
#[derive(Debug)]
pub enum LogAppend {
    Stored(LogAck),
    /// It starts past the end of the log, which holds `size` bytes.
    Gap(LogAck),
    /// `lease` no longer holds the job.
    LeaseLost,
}

/// Stores a log chunk (in parts) at `offset` of `job`'s log, if `lease`
/// still holds the job, and wakes the job's live tails. The runner API's
/// log call; the embedded runner calls it in-process, without HTTP.
pub async fn append_log(
    app: &App,
    job: JobId,
    lease: &str,
    offset: u64,
    parts: Vec<Bytes>,
) -> ApiResult<LogAppend> {
    let mut conn = app.db.pool.acquire().await?;
    if !jobs::holds_lease(&mut conn, job, lease).await? {
        return Ok(LogAppend::LeaseLost);
    }
    drop(conn);
    let logs = app.logs.clone();
    let stored = tokio::task::spawn_blocking(move || logs.append_parts(job, offset, &parts))
        .await
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    match stored {
        Ok(ack) => {
            // Nobody watching is fine.
            let _ = app.log_events.send(job);
            Ok(LogAppend::Stored(ack))
        }
        Err(AppendError::Gap { size, .. }) => Ok(LogAppend::Gap(LogAck { size })),
        Err(AppendError::Io(e)) => Err(e.into()),
    }
}

pub async fn finish(
    State(app): State<App>,
    _: Runner,
    Path(job): Path<i64>,
    headers: HeaderMap,
    Json(report): Json<FinishRequest>,
) -> ApiResult<StatusCode> {
    let job = JobId(job);
    let to = state::next(JobState::Running, JobEvent::Finish(report.outcome))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let phases =
        serde_json::to_string(&report.phases).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let mut tx = app.db.begin().await?;
    let Some(current) = jobs::get(&mut tx, job).await? else {
        return Err(ApiError::NotFound(format!("no job {job}")));
    };
    let reason = report.reason.as_deref();
    if !jobs::finish(
        &mut tx,
        job,
        lease(&headers)?,
        to,
        report.exit_code.map(i64::from),
        reason,
        &phases,
    )
    .await?
    {
        return Err(lease_lost(job));
    }
    progress::advance(&app, &mut tx, current.build_id).await?;
    tx.commit().await?;
    // Jobs of the next stage may be queued, and a job of a repository that
    // limits its concurrent jobs may start now: waiting runners look again.
    app.dispatch.notify_waiters();
    Ok(StatusCode::OK)
}

/// Grants a running job a deploy target unless another running job of the
/// repository holds it; the runner waits and asks again.
pub async fn deploy_lock(
    State(app): State<App>,
    _: Runner,
    Path(job): Path<i64>,
    headers: HeaderMap,
    Json(request): Json<DeployLockRequest>,
) -> ApiResult<Json<DeployLockResponse>> {
    let job = JobId(job);
    if request.target.is_empty() || request.target.len() > 500 {
        return Err(ApiError::BadRequest(
            "the target must be 1 to 500 characters".into(),
        ));
    }
    let mut tx = app.db.begin().await?;
    if !jobs::holds_lease(&mut tx, job, lease(&headers)?).await? {
        return Err(lease_lost(job));
    }
    let lock = deploy_locks::acquire(&mut tx, job, &request.target).await?;
    tx.commit().await?;
    Ok(Json(match lock {
        deploy_locks::Lock::Granted => DeployLockResponse {
            granted: true,
            holder: None,
        },
        deploy_locks::Lock::Held { build, number, .. } => DeployLockResponse {
            granted: false,
            holder: Some(format!("build {build} (job {build}.{number})")),
        },
    }))
}

/// `GET /api/runners` (admin): the runners asking this server for work or
/// running jobs, for operators (see `crate::runners`).
pub async fn list(
    State(app): State<App>,
    _: super::auth::Admin,
) -> ApiResult<Json<Vec<crate::runners::RunnerView>>> {
    let mut conn = app.db.pool.acquire().await?;
    Ok(Json(app.runners.list(&mut conn).await?))
}
