//! Slack messages, as Travis's Slack notifier makes them: the room's
//! template (Travis's by default) with `%{…}` filled in from the build's
//! Travis payload, as an attachment coloured by the result. Posted as JSON
//! to the room's hook (see `gantry_pipeline::slack::room_url`).

use super::text;
use gantry_pipeline::config::notifications::slack::DEFAULT_TEMPLATE;
use serde_json::{json, Value};

/// The value of a template variable for `build` (a Travis payload).
fn variable(build: &Value, name: &str) -> Option<String> {
    let repo = &build["repository"];
    let slug = format!("{}/{}", text(repo, "owner_name"), text(repo, "name"));
    let state = text(build, "state");
    let took = build["duration"]
        .as_i64()
        .map(super::duration)
        .unwrap_or_default();
    let pr = build["pull_request_number"].as_i64();
    Some(match name {
        "repository_slug" => slug,
        "repository_name" => text(repo, "name").to_string(),
        "build_number" => text(build, "number").to_string(),
        "build_id" => build["id"].to_string(),
        "build_url" => text(build, "build_url").to_string(),
        "branch" => text(build, "branch").to_string(),
        "commit" => text(build, "commit").chars().take(7).collect(),
        "commit_subject" => text(build, "message")
            .lines()
            .next()
            .unwrap_or("")
            .to_string(),
        "commit_message" => text(build, "message").to_string(),
        "author" => text(build, "author_name").to_string(),
        "result" => state.to_string(),
        "message" => match (state, text(build, "status_message")) {
            ("started", _) => "The build has started.",
            (_, "Passed") => "The build passed.",
            (_, "Fixed") => "The build was fixed.",
            (_, "Broken") => "The build was broken.",
            (_, "Still Failing") => "The build is still failing.",
            (_, "Canceled") => "The build was canceled.",
            (_, "Errored") => "The build has errored.",
            _ => "The build failed.",
        }
        .to_string(),
        "duration" | "elapsed_time" => took,
        "compare_url" => text(build, "compare_url").to_string(),
        "pull_request" => (pr.is_some()).to_string(),
        "pull_request_number" => pr.map(|n| n.to_string()).unwrap_or_default(),
        "pull_request_url" => match pr {
            Some(n) => format!("{}/pull/{n}", text(repo, "url")),
            None => String::new(),
        },
        _ => return None,
    })
}

/// `line` with each `%{name}` replaced; unknown names stay as written.
fn fill(line: &str, build: &Value) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find("%{") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                match variable(build, name) {
                    Some(value) => out.push_str(&value),
                    None => out.push_str(&rest[at..at + 3 + end]),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[at..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The JSON Slack takes: the filled template as an attachment, green for
/// a pass, red for a failure or error, yellow otherwise.
pub fn message(build: &Value, template: &[String], channel: Option<String>) -> Value {
    let lines: Vec<String> = if template.is_empty() {
        vec![fill(DEFAULT_TEMPLATE, build)]
    } else {
        template.iter().map(|line| fill(line, build)).collect()
    };
    let color = match text(build, "state") {
        "passed" => "good",
        "failed" | "errored" => "danger",
        _ => "warning",
    };
    let text = lines.join("\n");
    let mut message = json!({
        "attachments": [{
            "fallback": text,
            "text": text,
            "color": color,
            "mrkdwn_in": ["text"],
        }],
    });
    if let Some(channel) = channel {
        message["channel"] = channel.into();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build() -> Value {
        json!({
            "id": 7, "number": "12", "state": "failed", "status_message": "Broken", "duration": 65,
            "branch": "main", "commit": "1a2b3c4d5e6f", "message": "Fix the parser\n\nMore",
            "author_name": "octocat", "compare_url": "https://github.com/acme/app/commit/1a2b3c4d5e6f",
            "build_url": "https://ci.example/acme/app/builds/7", "pull_request_number": null,
            "repository": {"owner_name": "acme", "name": "app", "url": "https://github.com/acme/app"},
        })
    }

    #[test]
    fn the_default_message_is_travis_s() {
        let message = message(&build(), &[], Some("#builds".into()));
        assert_eq!(message["channel"], "#builds");
        let attachment = &message["attachments"][0];
        assert_eq!(
            attachment["text"],
            "Build <https://ci.example/acme/app/builds/7|#12> (<https://github.com/acme/app/commit/1a2b3c4d5e6f|1a2b3c4>) of acme/app@main by octocat failed in 1 min 5 sec"
        );
        assert_eq!(attachment["color"], "danger");
        assert_eq!(attachment["mrkdwn_in"], json!(["text"]));
    }

    #[test]
    fn a_template_fills_each_line_and_keeps_unknown_names() {
        let template = vec![
            "%{repository_slug}#%{build_number} %{result}: %{message}".to_string(),
            "%{commit_subject} %{nope} %{".to_string(),
        ];
        let message = message(&build(), &template, None);
        assert_eq!(
            message["attachments"][0]["text"],
            "acme/app#12 failed: The build was broken.\nFix the parser %{nope} %{"
        );
        assert!(message.get("channel").is_none());
    }
}
