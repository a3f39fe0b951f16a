//! Webhook notifications, as Travis sends them: when a build starts or
//! finishes, each webhook its pipeline file names (and whose `on_*` flag
//! says so) gets a POST of the build as JSON, signed with the server's key.
//!
//! Like commit statuses, they go through an outbox written in the same
//! transaction as the build's state (`enqueue`), and a loop sends them with
//! retries (`send`); a receiver that is down never fails or delays a build.

pub mod key;
pub mod send;

use crate::config::Config;
use crate::state::{BuildState, JobState};
use crate::store::builds::Build;
use crate::store::{jobs, now_ms};
use gantry_pipeline::{Event, Webhook, When};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::{AnyConnection, Row};
use std::time::{Duration, UNIX_EPOCH};
use tokio::sync::Notify;

/// What a notification announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announcement {
    Started,
    Finished,
}

impl Announcement {
    pub fn as_str(self) -> &'static str {
        match self {
            Announcement::Started => "started",
            Announcement::Finished => "finished",
        }
    }
}

/// Where a notification is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Not sent yet, or to be tried again.
    Pending,
    /// The receiver answered 2xx.
    Sent,
    /// Given up: the receiver refused it, or kept failing.
    Failed,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Pending => "pending",
            Delivery::Sent => "sent",
            Delivery::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Delivery {
        match text {
            "sent" => Delivery::Sent,
            "failed" => Delivery::Failed,
            _ => Delivery::Pending,
        }
    }
}

/// How a finished build compares with the previous one of its branch (or
/// pull request): Travis's `status_message`.
pub fn result_message(state: BuildState, previous: Option<BuildState>) -> &'static str {
    let previous_passed = previous.map(|p| p == BuildState::Passed);
    match state {
        BuildState::Queued | BuildState::Running | BuildState::Skipped => "Pending",
        BuildState::Passed if previous_passed == Some(false) => "Fixed",
        BuildState::Passed => "Passed",
        BuildState::Failed => match previous_passed {
            None => "Failed",
            Some(true) => "Broken",
            Some(false) => "Still Failing",
        },
        BuildState::Canceled => "Canceled",
        BuildState::Errored => "Errored",
    }
}

/// Whether `hook` is told of `build` reaching its state.
fn wanted(hook: &Webhook, state: BuildState, previous: Option<BuildState>) -> bool {
    let when = match state {
        BuildState::Running => hook.on_start,
        BuildState::Passed => hook.on_success,
        BuildState::Failed => hook.on_failure,
        BuildState::Errored => hook.on_error,
        BuildState::Canceled => hook.on_cancel,
        BuildState::Queued | BuildState::Skipped => return false,
    };
    match when {
        When::Always => true,
        When::Never => false,
        // A start has no result to compare; a first build is a change.
        When::Change => state == BuildState::Running || previous != Some(state),
    }
}

/// The result of the build before `build` on its branch (for a pull
/// request: of the same pull request), passed, failed or errored.
async fn previous_result(
    conn: &mut AnyConnection,
    build: &Build,
) -> Result<Option<BuildState>, sqlx::Error> {
    let same = if build.pull_request.is_some() {
        "pull_request = $3"
    } else {
        "pull_request IS NULL AND branch = $3"
    };
    let sql = format!(
        "SELECT state FROM builds WHERE repo_id = $1 AND id < $2 AND {same}
           AND state IN ('passed', 'failed', 'errored') ORDER BY id DESC LIMIT 1"
    );
    let query = sqlx::query_scalar::<_, String>(&sql)
        .bind(build.repo_id.0)
        .bind(build.id.0);
    let query = match build.pull_request {
        Some(n) => query.bind(n),
        None => query.bind(&build.branch),
    };
    let state = query.fetch_optional(conn).await?;
    Ok(state.and_then(|s| s.parse().ok()))
}

/// Travis's time format: UTC to the second.
fn travis_time(ms: Option<i64>) -> Value {
    match ms.and_then(|ms| u64::try_from(ms).ok()) {
        Some(ms) => humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms))
            .to_string()
            .into(),
        None => Value::Null,
    }
}

/// Travis's `result`: 0 passed, 1 anything else (failed or not finished).
fn result_code(passed: bool) -> i64 {
    if passed {
        0
    } else {
        1
    }
}

/// The payload Travis posts (its v1 webhook build), with Gantry's values.
pub fn payload(
    config: &Config,
    build: &Build,
    jobs: &[jobs::Job],
    previous: Option<BuildState>,
) -> Value {
    let (owner, name) = build.repo.split_once('/').unwrap_or(("", &build.repo));
    let github = config.github_url.trim_end_matches('/');
    let repo_url = format!("{github}/{}", build.repo);
    let compare_url = match build.pull_request {
        Some(n) => format!("{repo_url}/pull/{n}"),
        None => format!("{repo_url}/commit/{}", build.commit),
    };
    let build_url = config
        .public_url
        .as_ref()
        .map(|u| format!("{u}/{}/builds/{}", build.repo, build.id));
    let message = result_message(build.state, previous);
    let passed = build.state == BuildState::Passed;
    let started = build.started_at;
    let duration = match (started, build.finished_at) {
        (Some(s), Some(f)) => Value::from((f - s).max(0) / 1000),
        _ => Value::Null,
    };
    let kind = match build.event {
        Event::Push | Event::Tag => "push",
        Event::PullRequest => "pull_request",
        Event::Api => "api",
        Event::Cron => "cron",
    };
    let matrix: Vec<Value> = jobs
        .iter()
        .map(|job| {
            let finished = job.state.is_finished();
            json!({
                "id": job.id.0,
                "repository_id": build.repo_id.0,
                "parent_id": build.id.0,
                "number": format!("{}.{}", build.number, job.number),
                "name": job.name,
                "state": if finished { "finished" } else { job.state.as_str() },
                "config": {},
                "status": finished.then(|| result_code(job.state == JobState::Passed)),
                "result": finished.then(|| result_code(job.state == JobState::Passed)),
                "commit": build.commit,
                "branch": build.branch,
                "message": build.message,
                "compare_url": compare_url,
                "started_at": travis_time(job.started_at),
                "finished_at": travis_time(job.finished_at),
                "committed_at": Value::Null,
                "author_name": build.author,
                "author_email": "",
                "committer_name": build.author,
                "committer_email": "",
                "allow_failure": job.allow_failure,
            })
        })
        .collect();
    json!({
        "id": build.id.0,
        "number": build.number.to_string(),
        "config": {},
        "type": kind,
        // Travis's name for a build that runs.
        "state": if build.state == BuildState::Running { "started" } else { build.state.as_str() },
        "status": result_code(passed),
        "result": result_code(passed),
        "status_message": message,
        "result_message": message,
        "started_at": travis_time(started),
        "finished_at": travis_time(build.finished_at),
        "duration": duration,
        "build_url": build_url,
        "commit_id": Value::Null,
        "commit": build.commit,
        "base_commit": Value::Null,
        "head_commit": build.pull_request.map(|_| build.commit.clone()),
        "branch": build.branch,
        "message": build.message,
        "compare_url": compare_url,
        "committed_at": Value::Null,
        "author_name": build.author,
        "author_email": "",
        "committer_name": build.author,
        "committer_email": "",
        "pull_request": build.pull_request.is_some(),
        "pull_request_number": build.pull_request,
        "pull_request_title": build.pull_request.map(|_| build.message.clone()),
        "tag": build.tag,
        "repository": {
            "id": build.repo_id.0,
            "name": name,
            "owner_name": owner,
            "url": repo_url,
        },
        "matrix": matrix,
    })
}

/// Queues the notifications `build`'s new state calls for: a start when it
/// runs, a result when it finishes. Runs in the transaction that moved it,
/// with the jobs it read to decide that state.
pub async fn enqueue(
    conn: &mut AnyConnection,
    config: &Config,
    wake: &Notify,
    build: &Build,
    jobs: &[jobs::Job],
) -> Result<(), sqlx::Error> {
    let announcement = match build.state {
        BuildState::Running => Announcement::Started,
        BuildState::Passed | BuildState::Failed | BuildState::Errored | BuildState::Canceled => {
            Announcement::Finished
        }
        BuildState::Queued | BuildState::Skipped => return Ok(()),
    };
    let stored: Option<String> = sqlx::query_scalar("SELECT webhooks FROM builds WHERE id = $1")
        .bind(build.id.0)
        .fetch_optional(&mut *conn)
        .await?
        .flatten();
    let Some(stored) = stored else {
        return Ok(());
    };
    let hooks: Vec<Webhook> = match serde_json::from_str(&stored) {
        Ok(hooks) => hooks,
        Err(e) => {
            tracing::error!(build = %build.id, error = %e, "the build's webhooks cannot be read");
            return Ok(());
        }
    };
    let previous = previous_result(conn, build).await?;
    let wanted: Vec<&Webhook> = hooks
        .iter()
        .filter(|h| wanted(h, build.state, previous))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let payload = payload(config, build, jobs, previous).to_string();
    let now = now_ms();
    for hook in wanted {
        let target = serde_json::to_string(&hook.url).map_err(|e| sqlx::Error::Encode(e.into()))?;
        sqlx::query(
            "INSERT INTO notifications (build_id, event, target, payload, state, created_at, next_attempt_at)
             VALUES ($1, $2, $3, $4, 'pending', $5, $5)",
        )
        .bind(build.id.0)
        .bind(announcement.as_str())
        .bind(target)
        .bind(&payload)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    wake.notify_waiters();
    Ok(())
}

/// A notification as the API shows it: the URL as written (secrets by
/// name), never the payload's signature or a secret's value.
#[derive(Debug, Serialize)]
pub struct NotificationView {
    pub event: String,
    pub url: String,
    pub state: Delivery,
    pub attempts: i64,
    pub response_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: Option<String>,
    pub finished_at: Option<String>,
}

/// The notifications of a build, oldest first.
pub async fn for_build(
    conn: &mut AnyConnection,
    build: gantry_protocol::BuildId,
) -> Result<Vec<NotificationView>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT event, target, state, attempts, response_status, last_error, created_at, finished_at
         FROM notifications WHERE build_id = $1 ORDER BY id",
    )
    .bind(build.0)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            let target: String = r.try_get(1)?;
            let url = serde_json::from_str::<gantry_pipeline::WebhookUrl>(&target)
                .map(|u| u.shown())
                .unwrap_or_default();
            Ok(NotificationView {
                event: r.try_get(0)?,
                url,
                state: Delivery::parse(&r.try_get::<String, _>(2)?),
                attempts: r.try_get(3)?,
                response_status: r.try_get(4)?,
                last_error: r.try_get(5)?,
                created_at: crate::api::views::time(r.try_get(6)?),
                finished_at: crate::api::views::time(r.try_get(7)?),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_pipeline::WebhookUrl;

    fn hook(on_success: When, on_failure: When) -> Webhook {
        Webhook {
            url: WebhookUrl::Plain("http://127.0.0.1/".into()),
            on_success,
            on_failure,
            on_start: When::Never,
            on_cancel: When::Always,
            on_error: When::Always,
        }
    }

    #[test]
    fn result_messages_compare_with_the_previous_build_as_travis() {
        use BuildState::*;
        assert_eq!(result_message(Passed, None), "Passed");
        assert_eq!(result_message(Passed, Some(Passed)), "Passed");
        assert_eq!(result_message(Passed, Some(Failed)), "Fixed");
        assert_eq!(result_message(Passed, Some(Errored)), "Fixed");
        assert_eq!(result_message(Failed, None), "Failed");
        assert_eq!(result_message(Failed, Some(Passed)), "Broken");
        assert_eq!(result_message(Failed, Some(Failed)), "Still Failing");
        assert_eq!(result_message(Canceled, Some(Passed)), "Canceled");
        assert_eq!(result_message(Errored, None), "Errored");
        assert_eq!(result_message(Running, None), "Pending");
    }

    #[test]
    fn change_sends_only_when_the_result_differs() {
        use BuildState::*;
        let h = hook(When::Change, When::Always);
        assert!(wanted(&h, Passed, None), "a first build is a change");
        assert!(wanted(&h, Passed, Some(Failed)));
        assert!(!wanted(&h, Passed, Some(Passed)));
        assert!(wanted(&h, Failed, Some(Failed)), "on_failure: always");
        assert!(!wanted(&h, Running, None), "on_start: never");
        assert!(!wanted(&hook(When::Never, When::Never), Failed, None));
        assert!(!wanted(&h, Queued, None));
    }
}
