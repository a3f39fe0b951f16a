//! After a job changes: release the next stage or stop, and recompute the build's state.

use crate::config::Config;
use crate::state::{self, BuildState, JobEvent, JobState, StageStep};
use crate::store::{builds, jobs};
use crate::{notifications, statuses, App};
use gantry_protocol::{BuildId, JobId};
use sqlx::AnyConnection;
use tokio::sync::Notify;

/// Moves `job` as the state machine says `event` does; false when the event
/// does not apply to its state, or the job moved on in the meantime.
pub async fn apply(
    conn: &mut AnyConnection,
    job: &jobs::Job,
    event: JobEvent,
    reason: Option<&str>,
) -> Result<bool, sqlx::Error> {
    match state::next(job.state, event) {
        Ok(to) => jobs::transition(conn, job.id, job.state, to, reason).await,
        Err(_) => Ok(false),
    }
}

/// Applies the stage rules and the build state; returns whether jobs were queued.
pub async fn advance(
    app: &App,
    conn: &mut AnyConnection,
    build: BuildId,
) -> Result<bool, sqlx::Error> {
    advance_with(conn, &app.config, &app.outbox_wake, build).await
}

/// [`advance`] for a writer that holds the parts of `App` it needs.
pub async fn advance_with(
    conn: &mut AnyConnection,
    config: &Config,
    outbox_wake: &Notify,
    build: BuildId,
) -> Result<bool, sqlx::Error> {
    let mut released = false;
    let all = jobs::for_build(conn, build).await?;
    let stage_view: Vec<(i64, JobState, bool)> = all
        .iter()
        .map(|j| (j.stage_index, j.state, j.allow_failure))
        .collect();
    match state::stage_step(&stage_view) {
        StageStep::Release(index) => {
            for job in all
                .iter()
                .filter(|j| j.stage_index == index && j.state == JobState::Created)
            {
                released |= apply(conn, job, JobEvent::Release, None).await?;
            }
        }
        StageStep::Stop => {
            for job in all.iter().filter(|j| j.state == JobState::Created) {
                apply(conn, job, JobEvent::Skip, Some("an earlier stage failed")).await?;
            }
        }
        StageStep::Wait | StageStep::Done => {}
    }
    refresh_build_state_with(conn, config, outbox_wake, build).await?;
    Ok(released)
}

/// Cancels `build`'s jobs (or only `only`) for `reason`: those not started
/// at once; running ones, if `running`, at their runner's next heartbeat.
pub async fn cancel_with(
    conn: &mut AnyConnection,
    config: &Config,
    outbox_wake: &Notify,
    build: BuildId,
    only: Option<JobId>,
    reason: &str,
    running: bool,
) -> Result<(), sqlx::Error> {
    let all = jobs::for_build(conn, build).await?;
    for job in all.iter().filter(|j| only.is_none_or(|id| j.id == id)) {
        match job.state {
            JobState::Created | JobState::Queued => {
                apply(conn, job, JobEvent::Cancel, Some(reason)).await?;
            }
            JobState::Running if running => jobs::request_cancel(conn, job.id).await?,
            _ => {}
        }
    }
    advance_with(conn, config, outbox_wake, build).await?;
    Ok(())
}

/// Sets the build's state from its jobs, if it changed.
pub async fn refresh_build_state(
    app: &App,
    conn: &mut AnyConnection,
    build: BuildId,
) -> Result<BuildState, sqlx::Error> {
    refresh_build_state_with(conn, &app.config, &app.outbox_wake, build).await
}

/// [`refresh_build_state`] for a writer that holds the parts of `App` it needs.
pub async fn refresh_build_state_with(
    conn: &mut AnyConnection,
    config: &Config,
    outbox_wake: &Notify,
    build: BuildId,
) -> Result<BuildState, sqlx::Error> {
    let Some(current) = builds::get(conn, build).await? else {
        return Ok(BuildState::Errored);
    };
    let all = jobs::for_build(conn, build).await?;
    if all.is_empty() {
        return Ok(current.state);
    }
    let view: Vec<(JobState, bool)> = all.iter().map(|j| (j.state, j.allow_failure)).collect();
    let new = state::build_state(&view, current.fast_finish);
    if new != current.state {
        builds::set_state(conn, build, new).await?;
        if let Some(updated) = builds::get(conn, build).await? {
            statuses::enqueue_with(conn, config, outbox_wake, &updated).await?;
            notifications::enqueue(conn, config, outbox_wake, &updated, &all).await?;
        }
    }
    Ok(new)
}
