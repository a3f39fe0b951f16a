//! Notifications, as Travis sends them: when a build starts or finishes,
//! each webhook its pipeline file names (and whose `on_*` flag says so)
//! gets a POST of the build as JSON, signed with the server's key, and its
//! email recipients (the commit's author and committer by default) a mail,
//! and its Slack rooms and IRC channels a message.
//!
//! Like commit statuses, they go through an outbox written in the same
//! transaction as the build's state (`enqueue`), and a loop sends them with
//! retries (`send`); a receiver that is down never fails or delays a build.

pub mod email;
pub mod irc;
pub mod key;
pub mod send;
pub mod slack;
pub mod template;

use crate::config::Config;
use crate::state::{BuildState, JobState};
use crate::store::builds::Build;
use crate::store::{jobs, now_ms};
use gantry_pipeline::{Email, Event, Irc, Outcomes, Recipient, Slack, Webhook, When};
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

/// How a notification goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Notifier {
    /// A signed form POST of the build's JSON (`target`: a `WebhookUrl`).
    Webhook,
    /// A mail through `GANTRY_SMTP_URL` (`target`: a `Recipient`).
    Email,
    /// A message posted to a Slack room (`target`: a `Slack`).
    Slack,
    /// Lines said in an IRC channel (`target`: an `Irc`).
    Irc,
}

impl Notifier {
    pub fn as_str(self) -> &'static str {
        match self {
            Notifier::Webhook => "webhook",
            Notifier::Email => "email",
            Notifier::Slack => "slack",
            Notifier::Irc => "irc",
        }
    }

    pub fn parse(text: &str) -> Notifier {
        match text {
            "email" => Notifier::Email,
            "slack" => Notifier::Slack,
            "irc" => Notifier::Irc,
            _ => Notifier::Webhook,
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

/// Whether a notifier with these flags is told of a build reaching `state`.
fn wanted(flags: Outcomes, state: BuildState, previous: Option<BuildState>) -> bool {
    let when = match state {
        BuildState::Running => flags.on_start,
        BuildState::Passed => flags.on_success,
        BuildState::Failed => flags.on_failure,
        BuildState::Errored => flags.on_error,
        BuildState::Canceled => flags.on_cancel,
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

/// A text field of a Travis payload; empty when it has none.
fn text<'a>(build: &'a Value, key: &str) -> &'a str {
    build[key].as_str().unwrap_or("")
}

/// "1 min 5 sec", as Travis writes a build's duration in its messages.
fn duration(seconds: i64) -> String {
    match (seconds / 3600, seconds % 3600 / 60, seconds % 60) {
        (0, 0, s) => format!("{s} sec"),
        (0, m, s) => format!("{m} min {s} sec"),
        (h, m, s) => format!("{h} hrs {m} min {s} sec"),
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

/// The head commit's author and committer addresses, when the push gave them.
#[derive(Debug, Clone, Default)]
pub struct CommitEmails {
    pub author: Option<String>,
    pub committer: Option<String>,
}

impl CommitEmails {
    /// Whom Travis emails when no `recipients` are written: the author and
    /// the committer, once each. GitHub's no-reply addresses receive nothing.
    pub fn recipients(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for address in [&self.author, &self.committer].into_iter().flatten() {
            let address = address.trim();
            let lower = address.to_ascii_lowercase();
            // Commits made on github.com: `noreply@github.com` commits them,
            // and private authors are `ID+LOGIN@users.noreply.github.com`.
            let no_reply =
                lower == "noreply@github.com" || lower.ends_with("@users.noreply.github.com");
            if gantry_pipeline::config::notifications::is_address(address)
                && !no_reply
                && !out.iter().any(|a| a.eq_ignore_ascii_case(address))
            {
                out.push(address.to_string());
            }
        }
        out
    }
}

/// The payload Travis posts (its v1 webhook build), with Gantry's values.
pub fn payload(
    config: &Config,
    build: &Build,
    jobs: &[jobs::Job],
    previous: Option<BuildState>,
    emails: &CommitEmails,
) -> Value {
    let author_email = emails.author.as_deref().unwrap_or("");
    let committer_email = emails.committer.as_deref().unwrap_or("");
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
                "author_email": author_email,
                "committer_name": build.author,
                "committer_email": committer_email,
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
        "base_commit": build.base_commit,
        "head_commit": build.pull_request.map(|_| build.commit.clone()),
        "branch": build.branch,
        "message": build.message,
        "compare_url": compare_url,
        "committed_at": Value::Null,
        "author_name": build.author,
        "author_email": author_email,
        "committer_name": build.author,
        "committer_email": committer_email,
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
    let row = sqlx::query(
        "SELECT webhooks, email, author_email, committer_email, slack, irc FROM builds WHERE id = $1",
    )
    .bind(build.id.0)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(());
    };
    let hooks: Vec<Webhook> = stored(build, "webhooks", row.try_get(0)?).unwrap_or_default();
    let email: Option<Email> = stored(build, "email settings", row.try_get(1)?);
    let emails = CommitEmails {
        author: row.try_get(2)?,
        committer: row.try_get(3)?,
    };
    let rooms: Vec<Slack> = stored(build, "Slack rooms", row.try_get(4)?).unwrap_or_default();
    let channels: Vec<Irc> = stored(build, "IRC channels", row.try_get(5)?).unwrap_or_default();
    if hooks.is_empty() && email.is_none() && rooms.is_empty() && channels.is_empty() {
        return Ok(());
    }
    let previous = previous_result(conn, build).await?;
    let mut outbox: Vec<(Notifier, String)> = Vec::new();
    for hook in hooks
        .iter()
        .filter(|h| wanted(h.when, build.state, previous))
    {
        let target = serde_json::to_string(&hook.url).map_err(|e| sqlx::Error::Encode(e.into()))?;
        outbox.push((Notifier::Webhook, target));
    }
    for room in rooms
        .iter()
        .filter(|r| wanted(r.when, build.state, previous))
    {
        let target = serde_json::to_string(room).map_err(|e| sqlx::Error::Encode(e.into()))?;
        outbox.push((Notifier::Slack, target));
    }
    for channel in channels
        .iter()
        .filter(|c| wanted(c.when, build.state, previous))
    {
        let target = serde_json::to_string(channel).map_err(|e| sqlx::Error::Encode(e.into()))?;
        outbox.push((Notifier::Irc, target));
    }
    let mut unsendable = false;
    if let Some(email) = email.filter(|e| wanted(e.when, build.state, previous)) {
        let recipients = if email.recipients.is_empty() {
            emails
                .recipients()
                .into_iter()
                .map(Recipient::Address)
                .collect()
        } else {
            // Written in the file, so wanted: say why none comes when the
            // server cannot send. The committers' default is quietly off.
            unsendable = config.email.is_none();
            email.recipients
        };
        if config.email.is_some() || unsendable {
            for recipient in recipients {
                let target =
                    serde_json::to_string(&recipient).map_err(|e| sqlx::Error::Encode(e.into()))?;
                outbox.push((Notifier::Email, target));
            }
        }
    }
    if outbox.is_empty() {
        return Ok(());
    }
    let payload = payload(config, build, jobs, previous, &emails).to_string();
    let now = now_ms();
    for (notifier, target) in outbox {
        let (state, error) = match notifier {
            Notifier::Email if unsendable => (Delivery::Failed, Some(email::NOT_CONFIGURED)),
            _ => (Delivery::Pending, None),
        };
        sqlx::query(
            "INSERT INTO notifications (build_id, event, kind, target, payload, state, last_error, created_at, next_attempt_at, finished_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)",
        )
        .bind(build.id.0)
        .bind(announcement.as_str())
        .bind(notifier.as_str())
        .bind(target)
        .bind(&payload)
        .bind(state.as_str())
        .bind(error)
        .bind(now)
        .bind((state == Delivery::Failed).then_some(now))
        .execute(&mut *conn)
        .await?;
    }
    wake.notify_waiters();
    Ok(())
}

/// A build's stored notifier settings (`what`, for the log), if it has any
/// that can be read.
fn stored<T: serde::de::DeserializeOwned>(
    build: &Build,
    what: &str,
    json: Option<String>,
) -> Option<T> {
    match serde_json::from_str(json.as_deref()?) {
        Ok(value) => Some(value),
        Err(e) => {
            tracing::error!(build = %build.id, error = %e, "the build's {what} cannot be read");
            None
        }
    }
}

/// A notification as the API shows it: the URL as written (secrets by
/// name), never the payload's signature or a secret's value.
#[derive(Debug, Serialize)]
pub struct NotificationView {
    pub event: String,
    pub kind: Notifier,
    /// The webhook's URL, `mailto:` and the address, `slack:` and the room,
    /// or `irc:` and the channel (secrets by name).
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
        "SELECT event, target, state, attempts, response_status, last_error, created_at, finished_at, kind
         FROM notifications WHERE build_id = $1 ORDER BY id",
    )
    .bind(build.0)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            let target: String = r.try_get(1)?;
            let kind = Notifier::parse(&r.try_get::<String, _>(8)?);
            let url = match kind {
                Notifier::Webhook => serde_json::from_str::<gantry_pipeline::WebhookUrl>(&target)
                    .map(|u| u.shown())
                    .unwrap_or_default(),
                Notifier::Email => serde_json::from_str::<Recipient>(&target)
                    .map(|r| format!("mailto:{}", r.shown()))
                    .unwrap_or_default(),
                Notifier::Slack => serde_json::from_str::<Slack>(&target)
                    .map(|s| format!("slack:{}", s.room.shown()))
                    .unwrap_or_default(),
                Notifier::Irc => serde_json::from_str::<Irc>(&target)
                    .map(|i| format!("irc:{}", i.channel.shown()))
                    .unwrap_or_default(),
            };
            Ok(NotificationView {
                event: r.try_get(0)?,
                kind,
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
            when: Outcomes {
                on_success,
                on_failure,
                on_start: When::Never,
                on_cancel: When::Always,
                on_error: When::Always,
            },
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
        let h = hook(When::Change, When::Always).when;
        assert!(wanted(h, Passed, None), "a first build is a change");
        assert!(wanted(h, Passed, Some(Failed)));
        assert!(!wanted(h, Passed, Some(Passed)));
        assert!(wanted(h, Failed, Some(Failed)), "on_failure: always");
        assert!(!wanted(h, Running, None), "on_start: never");
        assert!(!wanted(hook(When::Never, When::Never).when, Failed, None));
        assert!(!wanted(h, Queued, None));
    }

    #[test]
    fn default_recipients_are_the_author_and_committer_once_each() {
        let emails = CommitEmails {
            author: Some("Dev@Example.com".into()),
            committer: Some("dev@example.com".into()),
        };
        assert_eq!(emails.recipients(), vec!["Dev@Example.com"]);
        let emails = CommitEmails {
            author: Some("1234+octocat@users.noreply.github.com".into()),
            committer: Some("noreply@github.com".into()),
        };
        assert!(emails.recipients().is_empty());
        let emails = CommitEmails {
            author: Some("not an address".into()),
            committer: None,
        };
        assert!(emails.recipients().is_empty());
    }
}
