//! Sends queued notifications: for a webhook a form POST of
//! `payload=<JSON>` with Travis's headers, for an email a mail (see
//! `email`); retried with backoff while the receiver is down or answers
//! 5xx (a mail server 4xx), given up at once when it refuses.

use super::email::{Mailer, NOT_CONFIGURED};
use super::{Delivery, Notifier};
use crate::store::now_ms;
use crate::App;
use gantry_pipeline::{Credential, Irc, IrcChannel, Recipient, Slack, SlackRoom, WebhookUrl};
use gantry_protocol::RepoId;
use sqlx::Row;
use std::time::Duration;

/// How long a receiver has to answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts before a notification is given up (about half an hour of backoff).
const MAX_ATTEMPTS: i64 = 12;
/// How long a claimed notification is held by the server sending it; a
/// server that dies meanwhile leaves it to be sent again after this.
const CLAIM: i64 = 60_000;
/// Most notifications sent side by side in one round.
const ROUND: i64 = 50;

struct Due {
    id: i64,
    kind: Notifier,
    build_id: i64,
    target: String,
    payload: String,
    attempts: i64,
    next_attempt_at: i64,
    repo_id: RepoId,
    repo: String,
    branch: String,
    fork: bool,
}

/// What became of one attempt.
pub enum Outcome {
    /// Taken; with the receiver's status code, where its protocol has one.
    Sent(Option<u16>),
    /// Worth trying again later (no answer, 408, 429, 5xx).
    Retry(Option<u16>, String),
    /// Never worth trying again (a refusal, a URL that cannot be made).
    Refused(Option<u16>, String),
}

/// What notifications go out through, made when the first of their kind
/// is due: most servers send none, and an idle server keeps its memory
/// small (bench metric 6).
#[derive(Default)]
pub struct Senders {
    http: Option<reqwest::Client>,
    mail: Option<Mailer>,
}

/// Sends what is due, in order per webhook and per recipient; returns how
/// many were sent.
pub async fn try_once(app: &App, senders: &mut Senders) -> Result<usize, sqlx::Error> {
    // Each webhook hears of builds in the order they happened (a start
    // before its result, "Still Failing" before "Fixed"): only its oldest
    // waiting notification is a candidate, sent when due.
    let now = now_ms();
    let rows = sqlx::query(
        "SELECT n.id, n.build_id, n.target, n.payload, n.attempts, n.next_attempt_at,
                b.repo_id, r.full_name, b.branch, b.fork, n.kind
         FROM notifications n JOIN builds b ON b.id = n.build_id JOIN repos r ON r.id = b.repo_id
         WHERE n.id IN (SELECT MIN(id) FROM notifications WHERE state = 'pending' GROUP BY kind, target)
           AND n.next_attempt_at <= $1
         ORDER BY n.id LIMIT $2",
    )
    .bind(now)
    .bind(ROUND)
    .fetch_all(&app.db.pool)
    .await?;
    let round = rows
        .iter()
        .map(|r| {
            Ok(Due {
                id: r.try_get(0)?,
                build_id: r.try_get(1)?,
                target: r.try_get(2)?,
                payload: r.try_get(3)?,
                attempts: r.try_get(4)?,
                next_attempt_at: r.try_get(5)?,
                repo_id: RepoId(r.try_get(6)?),
                repo: r.try_get(7)?,
                branch: r.try_get(8)?,
                fork: r.try_get::<i64, _>(9)? != 0,
                kind: Notifier::parse(&r.try_get::<String, _>(10)?),
            })
        })
        .collect::<Result<Vec<Due>, sqlx::Error>>()?;
    if round.is_empty() {
        return Ok(0);
    }
    if senders.http.is_none() && round.iter().any(|d| d.kind != Notifier::Email) {
        match client() {
            Ok(made) => senders.http = Some(made),
            Err(e) => {
                tracing::error!(error = %e, "cannot make the HTTP client for webhook notifications");
                return Ok(0);
            }
        }
    }
    if senders.mail.is_none() && round.iter().any(|d| d.kind == Notifier::Email) {
        // Checked at start-up, so this fails only without settings.
        senders.mail = app
            .config
            .email
            .as_ref()
            .and_then(|settings| Mailer::new(settings).ok());
    }
    let senders = &*senders;
    let mut claimed = Vec::new();
    for due in round {
        // Several servers may share the database: one of them sends it.
        let taken = sqlx::query(
            "UPDATE notifications SET next_attempt_at = $1
             WHERE id = $2 AND state = 'pending' AND next_attempt_at = $3",
        )
        .bind(now + CLAIM)
        .bind(due.id)
        .bind(due.next_attempt_at)
        .execute(&app.db.pool)
        .await?;
        if taken.rows_affected() == 1 {
            claimed.push(due);
        }
    }
    let outcomes =
        futures::future::join_all(claimed.iter().map(|due| attempt(app, senders, due))).await;
    let mut sent = 0;
    for (due, outcome) in claimed.iter().zip(outcomes) {
        sent += usize::from(matches!(outcome, Outcome::Sent(_)));
        record(app, due, outcome).await?;
    }
    Ok(sent)
}

impl Outcome {
    /// The same, with `values` (secrets) hidden in its error.
    fn masked(self, values: &[String]) -> Outcome {
        let mask = |e: String| crate::secrets::mask(&e, values);
        match self {
            Outcome::Sent(status) => Outcome::Sent(status),
            Outcome::Retry(status, e) => Outcome::Retry(status, mask(e)),
            Outcome::Refused(status, e) => Outcome::Refused(status, mask(e)),
        }
    }
}

async fn record(app: &App, due: &Due, outcome: Outcome) -> Result<(), sqlx::Error> {
    let now = now_ms();
    let attempts = due.attempts + 1;
    let (state, status, error, next) = match outcome {
        Outcome::Sent(status) => (Delivery::Sent, status, None, now),
        Outcome::Retry(status, error) if attempts < MAX_ATTEMPTS => {
            let backoff = (1_000i64 << attempts.clamp(0, 10)).min(600_000);
            (Delivery::Pending, status, Some(error), now + backoff)
        }
        Outcome::Retry(status, error) | Outcome::Refused(status, error) => {
            (Delivery::Failed, status, Some(error), now)
        }
    };
    if let Some(error) = &error {
        tracing::warn!(repo = %due.repo, build = due.build_id, kind = due.kind.as_str(), attempts, state = state.as_str(), %error, "a notification was not taken");
    }
    sqlx::query(
        "UPDATE notifications SET state = $1, attempts = $2, response_status = $3, last_error = $4,
                next_attempt_at = $5, finished_at = $6 WHERE id = $7",
    )
    .bind(state.as_str())
    .bind(attempts)
    .bind(status.map(i64::from))
    .bind(error)
    .bind(next)
    .bind((state != Delivery::Pending).then_some(now))
    .bind(due.id)
    .execute(&app.db.pool)
    .await?;
    Ok(())
}

/// The URL to post to, and the secret values in it (to keep them out of errors).
async fn resolve(app: &App, due: &Due) -> Result<(String, Vec<String>), String> {
    let target: WebhookUrl = serde_json::from_str(&due.target)
        .map_err(|e| format!("the stored webhook cannot be read: {e}"))?;
    let template = match &target {
        WebhookUrl::Plain(url) if !url.contains('$') => return Ok((url.clone(), Vec::new())),
        WebhookUrl::Plain(url) => url.clone(),
        WebhookUrl::Secure { secret } => format!("${{{secret}}}"),
    };
    let secrets = secrets(app, due, &target.shown()).await?;
    expand(&template, &secrets)
}

/// The address to mail to, and whether it is a secret (to keep it out of errors).
async fn recipient(app: &App, due: &Due) -> Result<(String, bool), String> {
    let target: Recipient = serde_json::from_str(&due.target)
        .map_err(|e| format!("the stored recipient cannot be read: {e}"))?;
    match &target {
        Recipient::Address(address) => Ok((address.clone(), false)),
        Recipient::Secure { secret } => {
            let secrets = secrets(app, due, &target.shown()).await?;
            let (address, _) = expand(&format!("${{{secret}}}"), &secrets)?;
            Ok((address.trim().to_string(), true))
        }
    }
}

/// The repository's secrets for the build's branch, which `shown` needs.
async fn secrets(app: &App, due: &Due, shown: &str) -> Result<Vec<(String, String)>, String> {
    // Forks' builds name no notifiers (see `Plan::webhooks`); this holds
    // should one be stored anyway.
    if due.fork {
        return Err("a pull request from a fork gets no secrets".into());
    }
    let Some(sealer) = &app.secrets else {
        return Err(format!(
            "{shown} needs the repository's secrets, and GANTRY_SECRET_KEY is not set"
        ));
    };
    let mut conn = app.db.pool.acquire().await.map_err(|e| e.to_string())?;
    crate::secrets::for_build(&mut conn, sealer, due.repo_id, &due.branch)
        .await
        .map_err(|e| e.to_string())
}

/// `template` with `$NAME` and `${NAME}` replaced by the secrets' values.
fn expand(template: &str, secrets: &[(String, String)]) -> Result<(String, Vec<String>), String> {
    let mut out = String::new();
    let mut used = Vec::new();
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, tail) = match after.strip_prefix('{') {
            Some(braced) => match braced.find('}') {
                Some(end) => (&braced[..end], &braced[end + 1..]),
                None => return Err(format!("`{template}` has an unclosed `${{`")),
            },
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        if name.is_empty() {
            out.push('$');
        } else {
            let value = secrets
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| format!("the repository has no secret {name} for this branch"))?;
            out.push_str(&value);
            used.push(value);
        }
        rest = tail;
    }
    out.push_str(rest);
    Ok((out, used))
}

async fn attempt(app: &App, senders: &Senders, due: &Due) -> Outcome {
    match due.kind {
        Notifier::Webhook => match &senders.http {
            Some(http) => post(app, http, due).await,
            None => Outcome::Retry(None, "no HTTP client".into()),
        },
        Notifier::Slack => match &senders.http {
            Some(http) => post_to_slack(app, http, due).await,
            None => Outcome::Retry(None, "no HTTP client".into()),
        },
        Notifier::Irc => say_on_irc(app, due).await,
        Notifier::Email => match &senders.mail {
            Some(mail) => {
                let (to, secret) = match recipient(app, due).await {
                    Ok(resolved) => resolved,
                    Err(e) => return Outcome::Refused(None, e),
                };
                let outcome = mail.send(&due.payload, &to).await;
                if secret {
                    outcome.masked(&[to])
                } else {
                    outcome
                }
            }
            None => Outcome::Refused(None, NOT_CONFIGURED.into()),
        },
    }
}

async fn post(app: &App, http: &reqwest::Client, due: &Due) -> Outcome {
    let (url, secret_values) = match resolve(app, due).await {
        Ok(resolved) => resolved,
        Err(e) => return Outcome::Refused(None, e),
    };
    let hide =
        |text: String| crate::secrets::mask(&text.replace(&url, "[webhook URL]"), &secret_values);
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Outcome::Refused(None, hide(format!("`{url}` is not an http(s) URL")));
    }
    let signature = match app
        .notification_key
        .sign(&app.db, due.payload.as_bytes())
        .await
    {
        Ok(signature) => signature,
        Err(e) => return Outcome::Retry(None, e.to_string()),
    };
    let sent = http
        .post(&url)
        .header("Travis-Repo-Slug", &due.repo)
        .header("Signature", signature)
        .form(&[("payload", &due.payload)])
        .send()
        .await;
    answered(sent, hide)
}

/// Posts the Slack message to the room's hook.
async fn post_to_slack(app: &App, http: &reqwest::Client, due: &Due) -> Outcome {
    let slack: Slack = match serde_json::from_str(&due.target) {
        Ok(slack) => slack,
        Err(e) => return Outcome::Refused(None, format!("the stored room cannot be read: {e}")),
    };
    let (room, secret_values) = match &slack.room {
        SlackRoom::Plain(room) => (room.clone(), Vec::new()),
        SlackRoom::Secure { secret } => {
            let secrets = match secrets(app, due, &slack.room.shown()).await {
                Ok(secrets) => secrets,
                Err(e) => return Outcome::Refused(None, e),
            };
            match expand(&format!("${{{secret}}}"), &secrets) {
                Ok(expanded) => expanded,
                Err(e) => return Outcome::Refused(None, e),
            }
        }
    };
    // The room holds the hook's token: no error shows it.
    let shown = slack.room.shown();
    let hide = |text: String| {
        let text = text.replace(&room, &shown);
        crate::secrets::mask(&text, &secret_values)
    };
    let (url, channel) = match gantry_pipeline::config::notifications::slack::room_url(&room) {
        Ok(resolved) => resolved,
        Err(e) => return Outcome::Refused(None, hide(e)),
    };
    let build: serde_json::Value = match serde_json::from_str(&due.payload) {
        Ok(build) => build,
        Err(e) => return Outcome::Refused(None, format!("the stored build cannot be read: {e}")),
    };
    let message = super::slack::message(&build, &slack.template, channel);
    let sent = http.post(&url).json(&message).send().await;
    answered(sent, |text| hide(text.replace(&url, "[Slack hook]")))
}

/// Says the build's lines in the IRC channel.
async fn say_on_irc(app: &App, due: &Due) -> Outcome {
    let irc: Irc = match serde_json::from_str(&due.target) {
        Ok(irc) => irc,
        Err(e) => return Outcome::Refused(None, format!("the stored channel cannot be read: {e}")),
    };
    let secure = |c: &Option<Credential>| matches!(c, Some(Credential::Secure { .. }));
    let needs_secrets = matches!(irc.channel, IrcChannel::Secure { .. })
        || secure(&irc.password)
        || secure(&irc.nickserv_password)
        || secure(&irc.channel_key);
    let secrets = if needs_secrets {
        match secrets(app, due, &irc.channel.shown()).await {
            Ok(secrets) => secrets,
            Err(e) => return Outcome::Refused(None, e),
        }
    } else {
        Vec::new()
    };
    let resolved = (|| {
        let channel = match &irc.channel {
            IrcChannel::Plain(text) => text.clone(),
            IrcChannel::Secure { secret } => expand(&format!("${{{secret}}}"), &secrets)?.0,
        };
        Ok::<_, String>((
            channel,
            credential(&irc.password, &secrets)?,
            credential(&irc.nickserv_password, &secrets)?,
            credential(&irc.channel_key, &secrets)?,
        ))
    })();
    let (channel, password, nickserv, key) = match resolved {
        Ok(resolved) => resolved,
        Err(e) => return Outcome::Refused(None, e),
    };
    // No error shows a password, a key, or a secret channel.
    let mut hidden: Vec<String> = [&password, &nickserv, &key]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    if matches!(irc.channel, IrcChannel::Secure { .. }) {
        hidden.push(channel.clone());
    }
    let shown = irc.channel.shown();
    let address = match gantry_pipeline::config::notifications::irc::address(&channel) {
        Ok(address) => address,
        Err(e) => {
            let e = format!("{shown} is not an IRC channel: {e}");
            return Outcome::Refused(None, crate::secrets::mask(&e, &hidden));
        }
    };
    let build: serde_json::Value = match serde_json::from_str(&due.payload) {
        Ok(build) => build,
        Err(e) => return Outcome::Refused(None, format!("the stored build cannot be read: {e}")),
    };
    let message = super::irc::Message {
        address: &address,
        nick: irc
            .nick
            .as_deref()
            .unwrap_or(gantry_pipeline::config::notifications::irc::DEFAULT_NICK),
        password: password.as_deref(),
        nickserv_password: nickserv.as_deref(),
        key: address.key.as_deref().or(key.as_deref()),
        lines: super::irc::lines(&build, &irc.template),
        notice: irc.use_notice,
        join: !irc.skip_join,
    };
    if let Some(key) = &address.key {
        hidden.push(key.clone());
    }
    super::irc::send(&message).await.masked(&hidden)
}

/// A password or key: as written, or the value of its repository secret.
fn credential(
    credential: &Option<Credential>,
    secrets: &[(String, String)],
) -> Result<Option<String>, String> {
    match credential {
        None => Ok(None),
        Some(Credential::Plain(value)) => Ok(Some(value.clone())),
        Some(Credential::Secure { secret }) => {
            Ok(Some(expand(&format!("${{{secret}}}"), secrets)?.0))
        }
    }
}

/// What a receiver's answer (or its silence) means for the notification;
/// `hide` keeps secrets out of the error.
fn answered(sent: reqwest::Result<reqwest::Response>, hide: impl Fn(String) -> String) -> Outcome {
    match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            match status {
                200..=299 => Outcome::Sent(Some(status)),
                408 | 429 | 500..=599 => {
                    Outcome::Retry(Some(status), format!("the receiver answered {status}"))
                }
                _ => Outcome::Refused(Some(status), format!("the receiver answered {status}")),
            }
        }
        Err(e) => {
            let what = if e.is_timeout() {
                format!("no answer within {} s", TIMEOUT.as_secs())
            } else {
                crate::error::chain(&e.without_url())
            };
            Outcome::Retry(None, hide(what))
        }
    }
}

/// The client notifications are posted with: no redirects, a deadline.
fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("Gantry/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Sends notifications as they are queued, and retries on their schedule.
pub async fn run(app: App) {
    let mut senders = Senders::default();
    loop {
        let wake = app.outbox_wake.notified();
        match try_once(&app, &mut senders).await {
            // The next of a webhook's notifications may be due at once.
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot read notifications to send"),
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), wake).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_expand_by_name_and_a_missing_one_is_named() {
        let secrets = vec![
            ("HOOK".to_string(), "https://h.example/abc".to_string()),
            ("TOKEN".to_string(), "t0k3n".to_string()),
        ];
        assert_eq!(
            expand("${HOOK}", &secrets).unwrap().0,
            "https://h.example/abc"
        );
        let (url, used) = expand("https://x.example/$TOKEN/go?a=${TOKEN}&b=$", &secrets).unwrap();
        assert_eq!(url, "https://x.example/t0k3n/go?a=t0k3n&b=$");
        assert_eq!(used, vec!["t0k3n", "t0k3n"]);
        let missing = expand("https://x.example/$NOPE", &secrets).unwrap_err();
        assert!(missing.contains("no secret NOPE"), "{missing}");
        assert!(!missing.contains("t0k3n"));
    }
}
