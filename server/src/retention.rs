//! Log retention (`GANTRY_LOG_RETENTION_DAYS`): once a finished job is older
//! than the retention, its log is replaced by one line saying so, so the data
//! folder stops growing with every build ever run. The builds, their jobs,
//! states and timings stay. Logs are the bulk of what a CI server keeps
//! (Woodpecker's users asked for this as their database grew).

use crate::store::{jobs, now_ms};
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

/// Sweeps at start and then every hour, when a retention is set.
pub async fn run(app: App) {
    let Some(retention) = app.config.log_retention else {
        return;
    };
    loop {
        match try_once(&app, retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(logs = n, "replaced logs past the retention"),
            Err(e) => tracing::error!(error = %e, "cannot look for logs past the retention"),
        }
        tokio::time::sleep(EVERY).await;
    }
}
