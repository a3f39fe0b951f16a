//! The `gantry server` process harness shared by the end-to-end tests: the
//! real binary on a random port with its embedded runner, driven through its
//! HTTP API with signed webhooks.
#![allow(dead_code)]

use gantry_testkit::git::Repo;
use gantry_testkit::github::GitHubDouble;
use gantry_testkit::webhook::{fixture, point_push, sign};
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const SECRET: &str = "e2e-webhook-secret";
pub const IMAGE: &str = "gantry-test/busybox:1";

pub struct Gantry {
    pub child: Child,
    pub url: String,
    pub http: reqwest::Client,
}

impl Drop for Gantry {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Stops a `gantry` process as an operator would (SIGTERM), so its runner
/// removes the containers of jobs that just ended.
pub fn stop(child: &mut Child) {
    gantry_testkit::process::stop(child, Duration::from_secs(20));
}

pub fn start(data: &Path, github: &str, extra: &[(&str, &str)]) -> Gantry {
    let mut command = command(github, extra);
    command.env("GANTRY_DATA_DIR", data);
    launch(command)
}

/// As the README runs it: from `dir`, with the default (relative) data dir.
pub fn start_with_default_data_dir(dir: &Path, github: &str) -> Gantry {
    let mut command = command(github, &[]);
    command.current_dir(dir).env_remove("GANTRY_DATA_DIR");
    launch(command)
}

fn command(github: &str, extra: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
    command
        .env("GANTRY_GITHUB_WEBHOOK_SECRET", SECRET)
        .env("GANTRY_GITHUB_API_URL", github)
        .env("GANTRY_ADMIN_TOKEN", "e2e-admin-token-0123456789")
        .env("GANTRY_LOG", "warn")
        .env_remove("GANTRY_DATABASE_URL")
        .stderr(Stdio::inherit());
    for (k, v) in extra {
        command.env(k, v);
    }
    command
}

fn launch(command: Command) -> Gantry {
    let (child, url) = gantry_testkit::process::start_gantry_server(command);
    Gantry {
        child,
        url,
        http: reqwest::Client::new(),
    }
}

impl Gantry {
    /// Sends a signed webhook delivery; returns the status Gantry answered.
    pub async fn deliver(&self, event: &str, delivery: &str, payload: &Value) -> u16 {
        let body = serde_json::to_vec(payload).unwrap();
        deliver(&self.http, &self.url, SECRET, event, delivery, body).await
    }

    pub async fn push(&self, payload: &Value, delivery: &str) {
        assert_eq!(self.deliver("push", delivery, payload).await, 202);
    }

    /// GitHub's ping, sent when the webhook is added, for `repository`.
    pub async fn ping(&self, repository: &Value) {
        let mut payload = fixture("ping", "payload.json");
        payload["repository"] = repository.clone();
        assert_eq!(self.deliver("ping", "ping", &payload).await, 200);
    }

    pub async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn log(&self, job: &Value) -> String {
        self.http
            .get(format!("{}/api/jobs/{}/log", self.url, job["id"]))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The first job of the newest build of `repo`, if there is one yet.
    pub async fn newest_job(&self, repo: &str) -> Option<Value> {
        let list = self.get(&format!("/api/repos/{repo}/builds")).await;
        let build = self
            .get(&format!("/api/builds/{}", list.as_array()?.first()?["id"]))
            .await;
        build["jobs"].as_array()?.first().cloned()
    }

    /// Waits for build `number` of `repo` to finish; returns it with jobs.
    pub async fn finished(&self, repo: &str, number: i64) -> Value {
        gantry_testkit::eventually(
            &format!("build {number} to finish"),
            Duration::from_secs(120),
            || async {
                let list = self.get(&format!("/api/repos/{repo}/builds")).await;
                let build = list
                    .as_array()?
                    .iter()
                    .find(|b| b["number"] == number)?
                    .clone();
                let full = self.get(&format!("/api/builds/{}", build["id"])).await;
                let state = full["state"].as_str()?;
                (!matches!(state, "queued" | "running")).then_some(full)
            },
        )
        .await
    }
}

/// Posts a webhook delivery to the server at `url`, signed with `secret`;
/// returns the status it answered.
pub async fn deliver(
    http: &reqwest::Client,
    url: &str,
    secret: &str,
    event: &str,
    delivery: &str,
    body: Vec<u8>,
) -> u16 {
    http.post(format!("{url}/hooks/github"))
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", sign(secret, &body))
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

pub fn require_image() {
    gantry_testkit::require_image(IMAGE);
}

/// A repository with `pipeline`, and a push payload for its head.
pub fn pushed(
    github: &GitHubDouble,
    pipeline: &str,
    files: &[(&str, &str)],
) -> (Repo, Value, String) {
    let mut payload = fixture("push", "go-playground.push.json");
    let full_name = payload["repository"]["full_name"]
        .as_str()
        .unwrap()
        .to_string();
    let repo = Repo::new();
    let mut all = vec![(".gantry.yml", pipeline)];
    all.extend_from_slice(files);
    let sha = repo.commit(&all, "Test it");
    github.add_repo(&full_name, repo.path.clone());
    point_push(
        &mut payload,
        &repo.path.display().to_string(),
        &sha,
        "Test it",
    );
    (repo, payload, full_name)
}

/// A pull request from a fork (`stranger/sample_app`) into `full_name`, for
/// the commit `payload` pushed.
pub fn fork_pull_request(repo: &Repo, payload: &Value, full_name: &str) -> Value {
    let mut fork = fixture("pull_request", "opened.payload.json");
    gantry_testkit::webhook::point_pull_request(
        &mut fork,
        &repo.path.display().to_string(),
        payload["after"].as_str().unwrap(),
    );
    fork["repository"]["full_name"] = Value::String(full_name.to_string());
    fork["pull_request"]["base"]["repo"]["full_name"] = Value::String(full_name.to_string());
    fork["pull_request"]["head"]["repo"]["full_name"] = Value::String("stranger/sample_app".into());
    fork
}
