//! Jobs whose runner went silent: taken back once, then errored as "runner lost".

use crate::progress;
use crate::state::JobEvent;
use crate::store::jobs;
use crate::App;
use gantry_protocol::JobOutcome;
use std::time::Duration;

/// Handles every expired lease; returns how many jobs it touched.
pub async fn try_once(app: &App) -> Result<usize, sqlx::Error> {
    let expired = jobs::expired(&app.db).await?;
    let lease_secs = app.config.lease.as_secs();
    let mut touched = 0;
    for job in expired {
        let runner = job.runner.clone().unwrap_or_else(|| "the runner".into());
        let (event, reason, note) = if job.cancel_requested {
            (
                JobEvent::Finish(JobOutcome::Canceled),
                "canceled; the runner stopped responding".to_string(),
                format!("{runner} stopped responding; the job is canceled"),
            )
        } else {
            let requeue = job.attempts <= 1;
            let (reason, what) = if requeue {
                (String::new(), "runs again")
            } else {
                ("runner lost".to_string(), "is errored")
            };
            (
                JobEvent::LeaseExpired { requeue },
                reason,
                format!(
                    "runner lost: no heartbeat from {runner} for {lease_secs} s; the job {what}"
                ),
            )
        };
        let mut tx = app.db.begin().await?;
        let reason = (!reason.is_empty()).then_some(reason.as_str());
        if !progress::apply(&mut tx, &job, event, reason).await? {
            continue; // finished or heartbeat in the meantime
        }
        progress::advance(app, &mut tx, job.build_id).await?;
        tx.commit().await?;
        let logs = app.logs.clone();
        let id = job.id;
        let _ = tokio::task::spawn_blocking(move || logs.note(id, &note)).await;
        tracing::warn!(job = %job.id, runner = %runner, event = ?event, "lease expired");
        touched += 1;
    }
    if touched > 0 {
        app.dispatch.notify_waiters();
    }
    Ok(touched)
}

pub async fn run(app: App) {
    let period = (app.config.lease / 4).clamp(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        if let Err(e) = try_once(&app).await {
            tracing::error!(error = %e, "cannot check leases");
        }
        tokio::time::sleep(period).await;
    }
}
