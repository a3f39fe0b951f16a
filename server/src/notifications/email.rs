//! Email notifications: a plain-text mail per recipient, made from the
//! build's Travis payload, sent through the mail server `GANTRY_SMTP_URL`
//! names. A mail server that is down or answers 4xx gets the mail again
//! later; a 5xx refusal gives it up (see `send`).

use super::send::Outcome;
use super::text;
use crate::config::EmailSettings;
use crate::error::chain;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::{AsyncTransport, Message, Tokio1Executor};
use serde_json::Value;
use std::time::Duration;

/// Why an email a pipeline file asks for was not sent.
pub const NOT_CONFIGURED: &str =
    "this server sends no email: set GANTRY_SMTP_URL to the mail server it should send through";

/// How long the mail server has for each step of a conversation.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Checks the settings at start-up, so a mistyped URL stops the server
/// with what to fix instead of failing every mail later.
pub fn check(settings: &EmailSettings) -> Result<(), String> {
    Mailer::new(settings).map(|_| ())
}

/// The mail server and the From of every mail.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub fn new(settings: &EmailSettings) -> Result<Mailer, String> {
        let url = &settings.smtp_url;
        if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
            return Err(
                "GANTRY_SMTP_URL must start with smtp:// or smtps://, e.g. smtps://USER:PASSWORD@mail.example.com:465"
                    .into(),
            );
        }
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| {
                format!(
                    "GANTRY_SMTP_URL cannot be used: {}",
                    without_secrets(&e.to_string(), url)
                )
            })?
            .timeout(Some(TIMEOUT))
            .build();
        let from = settings.from.parse::<Mailbox>().map_err(|e| {
            format!(
                "GANTRY_EMAIL_FROM `{}` is not an address: {e} (write `Name <ci@example.com>` or `ci@example.com`)",
                settings.from
            )
        })?;
        Ok(Mailer { transport, from })
    }

    /// Sends the mail for `payload` (the build as Travis shapes it) to `to`.
    pub async fn send(&self, payload: &str, to: &str) -> Outcome {
        let to = match to.parse::<Mailbox>() {
            Ok(to) => to,
            Err(e) => return Outcome::Refused(None, format!("`{to}` is not an address: {e}")),
        };
        let build: Value = match serde_json::from_str(payload) {
            Ok(build) => build,
            Err(e) => {
                return Outcome::Refused(None, format!("the stored build cannot be read: {e}"))
            }
        };
        let mail = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject(&build))
            .header(ContentType::TEXT_PLAIN)
            .body(body(&build));
        let mail = match mail {
            Ok(mail) => mail,
            Err(e) => return Outcome::Refused(None, format!("the mail cannot be made: {e}")),
        };
        match self.transport.send(mail).await {
            Ok(response) => Outcome::Sent(Some(code(&response.code()))),
            Err(e) => {
                let status = e.status().map(|c| code(&c));
                let text = chain(&e);
                if e.is_permanent() {
                    Outcome::Refused(status, format!("the mail server refused it: {text}"))
                } else {
                    Outcome::Retry(status, format!("the mail server did not take it: {text}"))
                }
            }
        }
    }
}

/// An SMTP reply code as a number (`250`).
fn code(code: &lettre::transport::smtp::response::Code) -> u16 {
    code.to_string().parse().unwrap_or(0)
}

/// `text` with the URL's password (if any) replaced.
fn without_secrets(text: &str, url: &str) -> String {
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(user_info, _)| user_info.split_once(':'))
        .map(|(_, password)| password)
        .filter(|p| !p.is_empty());
    match password {
        Some(password) => text.replace(password, "[password]"),
        None => text.to_string(),
    }
}

fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// Travis's subject: `Broken: owner/name#12 (main - 1a2b3c4)`.
pub fn subject(build: &Value) -> String {
    let repo = &build["repository"];
    let status = match text(build, "state") {
        "started" => "Started",
        _ => text(build, "status_message"),
    };
    format!(
        "{status}: {}/{}#{} ({} - {})",
        text(repo, "owner_name"),
        text(repo, "name"),
        text(build, "number"),
        text(build, "branch"),
        short(text(build, "commit")),
    )
}

/// The mail's text: what happened, to which commit, where to look, and
/// each job's result.
pub fn body(build: &Value) -> String {
    let repo = &build["repository"];
    let slug = format!("{}/{}", text(repo, "owner_name"), text(repo, "name"));
    let number = text(build, "number");
    let state = text(build, "state");
    let took = build["duration"]
        .as_i64()
        .map(|s| format!(" in {}", super::duration(s)))
        .unwrap_or_default();
    let what = match state {
        "started" => "has started".to_string(),
        "passed" => format!("passed{took}"),
        "failed" => format!("failed{took}"),
        "errored" => format!("errored{took}"),
        "canceled" => "was canceled".to_string(),
        other => format!("is {other}"),
    };
    let mut out = format!("Build #{number} of {slug} {what}.\n");
    let status = text(build, "status_message");
    if state != "started" && !status.is_empty() {
        out.push_str(&format!("Status:  {status}\n"));
    }
    out.push('\n');
    match build["tag"].as_str() {
        Some(tag) => out.push_str(&format!("Tag:     {tag}\n")),
        None => out.push_str(&format!("Branch:  {}\n", text(build, "branch"))),
    }
    let author = text(build, "author_name");
    out.push_str(&format!("Commit:  {}", short(text(build, "commit"))));
    if !author.is_empty() {
        out.push_str(&format!(" by {author}"));
    }
    out.push('\n');
    if let Some(first) = text(build, "message")
        .lines()
        .next()
        .filter(|l| !l.is_empty())
    {
        out.push_str(&format!("         {first}\n"));
    }
    out.push_str(&format!("Changes: {}\n", text(build, "compare_url")));
    if let Some(url) = build["build_url"].as_str() {
        out.push_str(&format!("Build:   {url}\n"));
    }
    if let Some(jobs) = build["matrix"].as_array().filter(|j| !j.is_empty()) {
        out.push_str("\nJobs:\n");
        for job in jobs {
            let result = match (job["state"].as_str(), job["result"].as_i64()) {
                (Some("finished"), Some(0)) => "passed",
                (Some("finished"), _) => "failed",
                (Some(other), _) => other,
                (None, _) => "",
            };
            let allowed = if job["allow_failure"].as_bool() == Some(true) {
                " (allowed to fail)"
            } else {
                ""
            };
            out.push_str(&format!(
                "  #{:<8} {:<8} {}{allowed}\n",
                text(job, "number"),
                result,
                text(job, "name"),
            ));
        }
    }
    out.push_str(&format!(
        "\n-- \nSent by Gantry for {slug}'s `notifications: email` (by default, to the commit's author and committer).\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn build() -> Value {
        json!({
            "number": "12", "state": "failed", "status_message": "Broken", "duration": 65,
            "branch": "main", "tag": null, "commit": "1a2b3c4d5e6f", "message": "Fix the parser\n\nLonger text",
            "author_name": "octocat", "compare_url": "https://github.com/acme/app/commit/1a2b3c4d5e6f",
            "build_url": "https://ci.example/acme/app/builds/7",
            "repository": {"owner_name": "acme", "name": "app"},
            "matrix": [
                {"number": "12.1", "state": "finished", "result": 0, "name": "rust: stable", "allow_failure": false},
                {"number": "12.2", "state": "finished", "result": 1, "name": "rust: nightly", "allow_failure": true},
            ],
        })
    }

    #[test]
    fn the_subject_is_travis_s() {
        assert_eq!(subject(&build()), "Broken: acme/app#12 (main - 1a2b3c4)");
        let mut started = build();
        started["state"] = "started".into();
        started["status_message"] = "Pending".into();
        assert_eq!(subject(&started), "Started: acme/app#12 (main - 1a2b3c4)");
    }

    #[test]
    fn the_body_says_what_happened_where_to_look_and_each_job() {
        let text = body(&build());
        assert!(
            text.starts_with("Build #12 of acme/app failed in 1 min 5 sec.\nStatus:  Broken\n"),
            "{text}"
        );
        assert!(
            text.contains("Commit:  1a2b3c4 by octocat\n         Fix the parser\n"),
            "{text}"
        );
        assert!(!text.contains("Longer text"), "{text}");
        assert!(
            text.contains("Build:   https://ci.example/acme/app/builds/7\n"),
            "{text}"
        );
        assert!(text.contains("#12.1     passed   rust: stable\n"), "{text}");
        assert!(
            text.contains("#12.2     failed   rust: nightly (allowed to fail)\n"),
            "{text}"
        );
    }

    #[test]
    fn a_bad_setting_says_what_to_write_and_hides_the_password() {
        let settings = |url: &str, from: &str| EmailSettings {
            smtp_url: url.into(),
            from: from.into(),
        };
        let e = check(&settings("http://mail.example", "ci@example.com")).unwrap_err();
        assert!(e.contains("smtp:// or smtps://"), "{e}");
        let e = check(&settings(
            "smtp://user:hunter2@mail.example?tls=maybe",
            "ci@example.com",
        ))
        .unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        let e = check(&settings("smtp://mail.example", "not an address")).unwrap_err();
        assert!(e.contains("GANTRY_EMAIL_FROM"), "{e}");
        check(&settings(
            "smtps://user:pw@mail.example:465",
            "Gantry <ci@example.com>",
        ))
        .expect("a good setting");
    }
}
