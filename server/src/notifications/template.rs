//! Travis's message templates (Slack, IRC): `%{name}` filled in from the
//! build's Travis payload (see `payload`).

use super::text;
use serde_json::Value;

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
        "repository" | "repository_slug" => slug,
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
pub fn fill(line: &str, build: &Value) -> String {
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
