//! What the JSON API shows of builds, jobs and repositories.

use crate::store::builds::Build;
use crate::store::jobs::Job;
use crate::store::repos::Repo;
use serde::Serialize;
use serde_json::Value;
use std::time::{Duration, UNIX_EPOCH};

/// RFC 3339 time from Unix milliseconds.
pub fn time(ms: Option<i64>) -> Option<String> {
    let ms = u64::try_from(ms?).ok()?;
    Some(humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string())
}

#[derive(Serialize)]
pub struct BuildView {
    pub id: i64,
    pub repo: String,
    pub number: i64,
    pub state: String,
    pub event: String,
    pub branch: String,
    pub tag: Option<String>,
    pub commit: String,
    pub message: String,
    pub author: String,
    pub pull_request: Option<i64>,
    pub head_branch: Option<String>,
    pub head_repo: Option<String>,
    pub fork: bool,
    pub reason: Option<String>,
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<Value>,
    /// The config the build was asked for with (`{text, merge_mode}`), if
    /// any, its secrets hidden (`builds::shown_request_config`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_config: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jobs: Option<Vec<JobView>>,
}

impl BuildView {
    pub fn new(b: &Build) -> Self {
        BuildView {
            id: b.id.0,
            repo: b.repo.clone(),
            number: b.number,
            state: b.state.to_string(),
            event: b.event.to_string(),
            branch: b.branch.clone(),
            tag: b.tag.clone(),
            commit: b.commit.clone(),
            message: b.message.clone(),
            author: b.author.clone(),
            pull_request: b.pull_request,
            head_branch: b.head_branch.clone(),
            head_repo: b.head_repo.clone(),
            fork: b.fork,
            reason: b.reason.clone(),
            created_at: time(Some(b.created_at)),
            started_at: time(b.started_at),
            finished_at: time(b.finished_at),
            diagnostics: None,
            request_config: None,
            jobs: None,
        }
    }

    /// With its jobs and the pipeline file's diagnostics.
    pub fn full(b: &Build, build_jobs: &[Job]) -> Self {
        let mut view = Self::new(b);
        view.diagnostics =
            Some(serde_json::from_str(&b.diagnostics).unwrap_or(Value::Array(Vec::new())));
        view.jobs = Some(
            build_jobs
                .iter()
                .map(|j| JobView::new(j, b.number))
                .collect(),
        );
        view
    }
}

#[derive(Serialize)]
pub struct JobView {
    pub id: i64,
    pub build_id: i64,
    pub number: String,
    pub name: String,
    pub stage: String,
    pub state: String,
    pub allow_failure: bool,
    pub image: String,
    pub runner: Option<String>,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    /// Why a queued job has not started (see `runners::Queue::why`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    pub phases: Value,
    pub created_at: Option<String>,
    pub queued_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

impl JobView {
    pub fn new(j: &Job, build_number: i64) -> Self {
        JobView {
            id: j.id.0,
            build_id: j.build_id.0,
            number: format!("{build_number}.{}", j.number),
            name: j.name.clone(),
            stage: j.stage.clone(),
            state: j.state.to_string(),
            allow_failure: j.allow_failure,
            image: j.image.clone(),
            runner: j.runner.clone(),
            exit_code: j.exit_code,
            reason: j.reason.clone(),
            waiting: None,
            phases: serde_json::from_str(&j.phases).unwrap_or(Value::Array(Vec::new())),
            created_at: time(Some(j.created_at)),
            queued_at: time(j.queued_at),
            started_at: time(j.started_at),
            finished_at: time(j.finished_at),
        }
    }
}

#[derive(Serialize)]
pub struct RepoView {
    pub id: i64,
    pub full_name: String,
    pub clone_url: String,
    pub private: bool,
    pub default_branch: String,
    /// The newest build of the default branch.
    pub last_build: Option<BuildView>,
}

impl RepoView {
    pub fn new(r: &Repo, last: Option<&Build>) -> Self {
        RepoView {
            id: r.id.0,
            full_name: r.full_name.clone(),
            clone_url: r.clone_url.clone(),
            private: r.private,
            default_branch: r.default_branch.clone(),
            last_build: last.map(BuildView::new),
        }
    }
}
