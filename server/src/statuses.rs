//! Commit statuses on GitHub: `pending` when a build is queued, then
//! `success`, `failure` or `error`. Written to an outbox in the same
//! transaction as the build's state, sent by a loop that retries with
//! backoff; GitHub being down never fails or delays a build.

use crate::config::Config;
use crate::forge::{CommitStatus, ForgeError};
use crate::state::BuildState;
use crate::store::builds::Build;
use crate::store::{jobs, now_ms};
use crate::App;
use gantry_pipeline::Event;
use sqlx::{AnyConnection, Row};
use std::time::Duration;
use tokio::sync::Notify;

/// GitHub's limit on a status description.
const MAX_DESCRIPTION: usize = 140;
/// Attempts before a status is given up (about a day of backoff).
const MAX_ATTEMPTS: i64 = 30;
/// How long a server holds the statuses it took to send; one that dies
/// meanwhile leaves them to be sent again after this.
const CLAIM_MS: i64 = 60_000;

/// What GitHub should show for a build in this state; `None` for states it does not show.
pub fn github_state(state: BuildState) -> Option<&'static str> {
    match state {
        BuildState::Queued => Some("pending"),
        BuildState::Passed => Some("success"),
        BuildState::Failed => Some("failure"),
        BuildState::Errored | BuildState::Canceled => Some("error"),
        BuildState::Running | BuildState::Skipped => None,
    }
}

fn duration(b: &Build) -> String {
    let ms = b.finished_at.unwrap_or_else(now_ms) - b.started_at.unwrap_or(b.created_at);
    let secs = (ms.max(0) + 500) / 1000;
    if secs >= 60 {
        format!("{}m {}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

fn cut(mut text: String) -> String {
    if text.chars().count() > MAX_DESCRIPTION {
        text = text.chars().take(MAX_DESCRIPTION - 1).collect::<String>() + "…";
    }
    text
}

/// Queues the status for `build`'s current state (if GitHub shows it).
pub async fn enqueue(
    conn: &mut AnyConnection,
    app: &App,
    build: &Build,
) -> Result<(), sqlx::Error> {
    enqueue_with(conn, &app.config, &app.outbox_wake, build).await
}

/// `enqueue` for a writer that holds the parts of `App` it needs.
pub async fn enqueue_with(
    conn: &mut AnyConnection,
    config: &Config,
    wake: &Notify,
    build: &Build,
) -> Result<(), sqlx::Error> {
    let Some(state) = github_state(build.state) else {
        return Ok(());
    };
    let description = match build.state {
        BuildState::Queued => format!("Build #{} is queued", build.number),
        BuildState::Passed => format!("Build #{} passed in {}", build.number, duration(build)),
        BuildState::Canceled => match &build.reason {
            Some(reason) => format!("Build #{} was canceled ({reason})", build.number),
            None => format!("Build #{} was canceled", build.number),
        },
        BuildState::Failed | BuildState::Errored => {
            let word = if build.state == BuildState::Failed {
                "failed"
            } else {
                "errored"
            };
            let culprit = jobs::for_build(conn, build.id)
                .await?
                .into_iter()
                .find(|j| !j.allow_failure && j.state.as_str() == word)
                .map(|j| format!(": job {}.{} ({}) {word}", build.number, j.number, j.name));
            match (culprit, &build.reason) {
                (Some(job), _) => format!("Build #{} {word}{job}", build.number),
                (None, Some(reason)) => format!("Build #{} {word}: {reason}", build.number),
                (None, None) => format!("Build #{} {word}", build.number),
            }
        }
        BuildState::Running | BuildState::Skipped => return Ok(()),
    };
    let kind = if build.event == Event::PullRequest {
        "pr"
    } else {
        "push"
    };
    let context = format!("{}/{kind}", config.status_context);
    let target = config
        .public_url
        .as_ref()
        .map(|u| format!("{u}/{}/builds/{}", build.repo, build.id));
    let now = now_ms();
    sqlx::query(
        "INSERT INTO commit_statuses (build_id, repo, sha, context, state, description, target_url, created_at, next_attempt_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
    )
    .bind(build.id.0)
    .bind(&build.repo)
    .bind(&build.commit)
    .bind(&context)
    .bind(state)
    .bind(cut(description))
    .bind(target)
    .bind(now)
    .execute(conn)
    .await?;
    wake.notify_waiters();
    Ok(())
}

struct Pending {
    id: i64,
    status: CommitStatus,
    repo: String,
    attempts: i64,
}

/// Sends what is due, in order per commit and context; returns how many were sent.
pub async fn try_once(app: &App) -> Result<usize, sqlx::Error> {
    // Only the oldest unsent status of a commit and context is a candidate,
    // and a server takes its candidates before it sends them: with several
    // servers on one database, each status goes out once, and never after a
    // newer one (GitHub shows the last it got).
    let now = now_ms();
    // A read first: an idle server (and one taking a burst of webhooks)
    // takes no write lock for a round with nothing to send.
    let due: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM commit_statuses WHERE sent_at IS NULL AND next_attempt_at <= $1 LIMIT 1",
    )
    .bind(now)
    .fetch_optional(&app.db.pool)
    .await?;
    if due.is_none() {
        return Ok(0);
    }
    let mut tx = app.db.begin().await?;
    let rows = sqlx::query(
        "UPDATE commit_statuses SET next_attempt_at = $1
         WHERE id IN (SELECT MIN(id) FROM commit_statuses WHERE sent_at IS NULL GROUP BY sha, context)
           AND id IN (SELECT id FROM commit_statuses WHERE sent_at IS NULL AND next_attempt_at <= $2 ORDER BY id LIMIT 100)
           AND sent_at IS NULL AND next_attempt_at <= $2
         RETURNING id, repo, sha, context, state, description, target_url, attempts",
    )
    .bind(now + CLAIM_MS)
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let pending: Vec<Pending> = rows
        .iter()
        .map(|r| {
            Ok(Pending {
                id: r.try_get(0)?,
                repo: r.try_get(1)?,
                status: CommitStatus {
                    sha: r.try_get(2)?,
                    context: r.try_get(3)?,
                    state: r.try_get(4)?,
                    description: r.try_get(5)?,
                    target_url: r.try_get(6)?,
                },
                attempts: r.try_get(7)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    let mut pending = pending;
    pending.sort_by_key(|p| p.id);
    let mut sent = Vec::new();
    for p in pending {
        match app.forge.create_status(&p.repo, &p.status).await {
            Ok(()) => sent.push(p.id),
            Err(e) => {
                let give_up =
                    matches!(e, ForgeError::Permanent(_)) || p.attempts + 1 >= MAX_ATTEMPTS;
                let backoff = 1_000i64 << (p.attempts.clamp(0, 10) as u32);
                tracing::warn!(repo = %p.repo, sha = %p.status.sha, state = %p.status.state, error = %e, give_up, "could not send a commit status");
                let sent_at = give_up.then(now_ms);
                let noted = sqlx::query("UPDATE commit_statuses SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2, sent_at = $3 WHERE id = $4")
                    .bind(now_ms() + backoff.min(600_000))
                    .bind(e.to_string())
                    .bind(sent_at)
                    .bind(p.id)
                    .execute(&app.db.pool)
                    .await;
                if let Err(e) = noted {
                    // What was sent before this stays sent.
                    mark_sent(app, &sent).await?;
                    return Err(e);
                }
            }
        }
    }
    mark_sent(app, &sent).await?;
    Ok(sent.len())
}

/// Marks a round's sent statuses in one write: one commit (one fsync) per
/// round, not per status, so a burst of builds does not queue its status
/// writes in front of the webhook journal. Should the server die before
/// this, the round is sent again: GitHub keeps the latest status per
/// context, so a repeat changes nothing a user sees.
async fn mark_sent(app: &App, ids: &[i64]) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    let placeholders: Vec<String> = (2..ids.len() + 2).map(|i| format!("${i}")).collect();
    let sql = format!(
        "UPDATE commit_statuses SET sent_at = $1, attempts = attempts + 1 WHERE id IN ({})",
        placeholders.join(", ")
    );
    let mut query = sqlx::query(&sql).bind(now_ms());
    for id in ids {
        query = query.bind(*id);
    }
    let mut tx = app.db.begin().await?;
    query.execute(&mut *tx).await?;
    tx.commit().await
}

pub async fn run(app: App) {
    loop {
        let wake = app.outbox_wake.notified();
        match try_once(&app).await {
            // The next status of a commit may be due at once.
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot read commit statuses to send"),
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), wake).await;
    }
}
