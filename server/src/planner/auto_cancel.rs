//! Auto-cancellation, as Travis does it: a new build of a branch (a push) or
//! of a pull request cancels the older builds of that branch or pull request
//! that have not started (`GANTRY_AUTO_CANCEL=queued`, the default), or that
//! have not finished (`running`), so a queue is not spent on commits that
//! were pushed over. Tags, manual and cron builds never cancel or get
//! canceled. Runs in the transaction that stores the new build.

use crate::config::{AutoCancel, Config};
use crate::progress;
use crate::state::BuildState;
use crate::store::builds::{self, NewBuild};
use gantry_pipeline::Event;
use sqlx::AnyConnection;
use tokio::sync::Notify;

/// Cancels what `newer` (stored, numbered, with its jobs) supersedes.
pub async fn supersede(
    conn: &mut AnyConnection,
    config: &Config,
    outbox_wake: &Notify,
    newer: &NewBuild,
) -> Result<(), sqlx::Error> {
    let running = match config.auto_cancel {
        AutoCancel::Off => return Ok(()),
        AutoCancel::Queued => false,
        AutoCancel::Running => true,
    };
    let builds_something = newer.state == BuildState::Queued;
    if !builds_something || !matches!(newer.event, Event::Push | Event::PullRequest) {
        return Ok(());
    }
    let by = match newer.pull_request {
        Some(pr) if newer.event == Event::PullRequest => format!("pull request #{pr}"),
        _ => format!("branch {}", newer.branch),
    };
    for older in builds::superseded(conn, newer, running).await? {
        let reason = format!("auto-canceled: build #{} of {by} is newer", newer.number);
        builds::set_reason(conn, older.id, &reason).await?;
        progress::cancel_with(conn, config, outbox_wake, older.id, None, &reason, running).await?;
    }
    Ok(())
}
