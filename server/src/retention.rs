//! Retention: what the server keeps of old work, so the data folder and the
//! database stop growing with every build ever run.
//!
//! - Logs (`GANTRY_LOG_RETENTION_DAYS`, unset by default): once a finished
//!   job is older than the retention, its log is replaced by one line saying
//!   so. The builds, their jobs, states and timings stay. Logs are the bulk of
//!   what a CI server keeps (Woodpecker's users asked for this as their
//!   database grew).
//! - Webhook deliveries (`GANTRY_DELIVERY_RETENTION_DAYS`, 30 by default):
//!   a planned delivery's stored payload is deleted. It served to plan the
//!   delivery and to recognise a redelivery; the build it made keeps the
//!   delivery's id, which is enough for that. GitHub redelivers for 3 days.

use crate::store::{deliveries, jobs, now_ms};
use crate::App;
use gantry_protocol::JobId;
use std::time::Duration;

/// How often the server looks for logs past the retention.
const EVERY: Duration = Duration::from_secs(60 * 60);

/// Jobs handled per transaction.
const CHUNK: i64 = 500;

/// What an expired log says instead.
pub fn expired_line(retention: Duration) -> String {
    let days = retention.as_secs() / (24 * 60 * 60);
    format!(
        "This log was deleted: the server keeps the logs of finished jobs for {days} days (GANTRY_LOG_RETENTION_DAYS)"
    )
}

/// Replaces every log of a job that finished more than `retention` ago;
/// returns how many logs it replaced. A log that cannot be replaced is
/// left marked as kept, and the sweep stops there: the next one tries again.
pub async fn try_once(app: &App, retention: Duration) -> Result<usize, sqlx::Error> {
    let before = now_ms().saturating_sub(retention.as_millis() as i64);
    let line = expired_line(retention);
    let mut replaced = 0;
    loop {
        let due = jobs::expire_logs(&app.db, before, CHUNK).await?;
        if due.is_empty() {
            return Ok(replaced);
        }
        let logs = app.logs.clone();
        let text = line.clone();
        let chunk = due.clone();
        let (done, failed) =
            tokio::task::spawn_blocking(move || replace_each(&logs, &chunk, &text))
                .await
                .unwrap_or_else(|e| (Vec::new(), Some((due[0], e.to_string()))));
        for job in &done {
            app.log_written_anew(*job);
        }
        replaced += done.len();
        if let Some((job, error)) = failed {
            tracing::error!(job = %job, error = %error, "cannot replace an expired log; trying again in an hour");
            // The failed job and those after it in the chunk keep their logs for now.
            let pos = due.iter().position(|j| *j == job).unwrap_or(0);
            for rest in &due[pos..] {
                jobs::keep_log(&app.db, *rest).await?;
            }
            return Ok(replaced);
        }
    }
}

/// Replaces the logs of `due` in order; stops at the first that fails.
/// Returns the jobs whose log was replaced (not those that had none) and
/// the failure.
fn replace_each(
    logs: &crate::logs::LogStore,
    due: &[JobId],
    line: &str,
) -> (Vec<JobId>, Option<(JobId, String)>) {
    let mut done = Vec::new();
    for job in due {
        match logs.replace_existing(*job, line) {
            Ok(true) => done.push(*job),
            Ok(false) => {}
            Err(e) => return (done, Some((*job, e.to_string()))),
        }
    }
    (done, None)
}

/// Deletes every delivery planned more than `retention` ago; returns how many.
pub async fn forget_deliveries(app: &App, retention: Duration) -> Result<u64, sqlx::Error> {
    let before = now_ms().saturating_sub(retention.as_millis() as i64);
    let mut forgotten = 0;
    loop {
        // Chunks, so a first sweep of a large journal does not hold the
        // database (SQLite has one writer) for long.
        let n = deliveries::forget_processed(&app.db, before, CHUNK).await?;
        forgotten += n;
        if n < CHUNK as u64 {
            return Ok(forgotten);
        }
    }
}

/// Sweeps at start and then every hour.
pub async fn run(app: App) {
    loop {
        if let Some(retention) = app.config.log_retention {
            match try_once(&app, retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(logs = n, "replaced logs past the retention"),
                Err(e) => tracing::error!(error = %e, "cannot look for logs past the retention"),
            }
        }
        match forget_deliveries(&app, app.config.delivery_retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deliveries = n, "deleted deliveries past the retention"),
            Err(e) => {
                tracing::error!(error = %e, "cannot look for deliveries past the retention")
            }
        }
        tokio::time::sleep(EVERY).await;
    }
}
