//! Slack messages, as Travis's Slack notifier makes them: the room's
//! template (Travis's by default) with `%{…}` filled in from the build's
//! Travis payload, as an attachment coloured by the result. Posted as JSON
//! to the room's hook (see `gantry_pipeline::slack::room_url`).

use super::template::fill;
use super::text;
use gantry_pipeline::config::notifications::slack::DEFAULT_TEMPLATE;
use serde_json::{json, Value};

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
