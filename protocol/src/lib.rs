//! The runner API: what a runner and the server say to each other over HTTP.
//! The only types the two share. Every call carries `Authorization: Bearer <runner token>`.
//!
//! ```text
//! POST {CLAIM}                       ClaimRequest        → 200 Assignment | 204 (nothing within wait_seconds)
//! POST /api/runner/jobs/{id}/heartbeat                     → 200 HeartbeatResponse | 409 (lease lost)
//! POST /api/runner/jobs/{id}/log?offset=N  raw bytes       → 200 LogAck | 409 LogAck (gap: resend from size)
//! POST /api/runner/jobs/{id}/finish  FinishRequest         → 200 | 409 (lease lost)
//! ```

use gantry_pipeline::{BuildContext, Event, Job};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

pub const CLAIM_PATH: &str = "/api/runner/claim";
/// The header carrying an assignment's lease.
pub const LEASE_HEADER: &str = "x-gantry-lease";

pub fn heartbeat_path(job: JobId) -> String {
    format!("/api/runner/jobs/{job}/heartbeat")
}

pub fn log_path(job: JobId, offset: u64) -> String {
    format!("/api/runner/jobs/{job}/log?offset={offset}")
}

pub fn finish_path(job: JobId) -> String {
    format!("/api/runner/jobs/{job}/finish")
}

pub fn deploy_lock_path(job: JobId) -> String {
    format!("/api/runner/jobs/{job}/deploy-lock")
}

/// A job asks to deploy to `target` (`elasticbeanstalk:app/env`, …): one
/// running job of a repository at a time deploys to a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployLockRequest {
    pub target: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployLockResponse {
    pub granted: bool,
    /// Who holds it when not granted: `build 12 (job 12.1)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A repository's id in Gantry's database.
    RepoId
);
id_type!(
    /// A build's id (not its per-repository number).
    BuildId
);
id_type!(
    /// A job's id (not its `3.1`-style number).
    JobId
);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRequest {
    /// The runner's name, shown on jobs it runs.
    pub runner: String,
    /// How long the server may hold the request open waiting for a job.
    pub wait_seconds: u64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A job handed to a runner, with everything it needs to run it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub job_id: JobId,
    pub build_id: BuildId,
    /// `12.3`: build number and job number.
    pub number: String,
    /// Proof of holding the job: sent as `X-Gantry-Lease` on every call about it.
    pub lease: String,
    /// Send a heartbeat well within this many seconds, or the job is taken back.
    pub lease_seconds: u64,
    /// Where this attempt's log starts (an earlier attempt's log, if any, comes before).
    pub log_offset: u64,
    pub repo: RepoInfo,
    pub build: BuildInfo,
    pub job: Job,
    /// The build's page, when the server knows its public URL.
    pub web_url: Option<String>,
    /// Secrets for this job (none for pull requests from forks): set as env
    /// vars and masked in the log.
    #[serde(default)]
    pub secrets: Vec<SecretVar>,
    /// A login for cloning a private repository; given to git only through
    /// its credential prompt, never in a URL or a log.
    #[serde(default)]
    pub git_credentials: Option<GitCredentials>,
    /// Lines from the server for the top of the job's log (e.g. why secrets were withheld).
    #[serde(default)]
    pub notes: Vec<String>,
    /// The GitHub API the repository lives on (`deploy: provider: releases`);
    /// none: `https://api.github.com`.
    #[serde(default)]
    pub github_api_url: Option<String>,
}

/// A git login. Its `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitCredentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for GitCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GitCredentials {{ username: {:?}, password: [secure] }}",
            self.username
        )
    }
}

/// A secret env var. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretVar {
    pub name: String,
    pub value: String,
}

impl fmt::Debug for SecretVar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretVar {{ name: {:?}, value: [secure] }}", self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoInfo {
    pub full_name: String,
    pub clone_url: String,
    pub private: bool,
    pub default_branch: String,
    /// Bumped each time a user clears the repository's build caches: the
    /// runner drops the caches it kept under an older generation.
    #[serde(default)]
    pub cache_generation: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildInfo {
    pub number: i64,
    pub event: Event,
    pub branch: String,
    pub tag: Option<String>,
    pub commit: String,
    pub message: String,
    pub pull_request: Option<i64>,
    pub head_branch: Option<String>,
    pub head_repo: Option<String>,
    pub fork: bool,
    pub sender: String,
    /// Pull requests: the base branch's commit the head is merged into
    /// before the job runs, as Travis tests GitHub's merge ref. None: the
    /// head as it is (a server that does not say).
    #[serde(default)]
    pub base_commit: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// Someone canceled the job: stop it and finish with `canceled`.
    pub cancel: bool,
    pub lease_seconds: u64,
}

/// How much of the log the server holds; the next chunk starts here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogAck {
    pub size: u64,
}

impl Assignment {
    /// The build as the pipeline's rules see it (`deploy.on`, `if:`).
    pub fn build_context(&self) -> BuildContext {
        let b = &self.build;
        BuildContext {
            event: b.event,
            branch: b.branch.clone(),
            tag: b.tag.clone(),
            repo: self.repo.full_name.clone(),
            default_branch: self.repo.default_branch.clone(),
            fork: b.fork,
            sender: b.sender.clone(),
            commit_message: b.message.clone(),
            head_repo: b.head_repo.clone(),
            head_branch: b.head_branch.clone(),
            pull_request: b.pull_request.and_then(|n| u64::try_from(n).ok()),
        }
    }
}

/// How a job ended, as the runner saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobOutcome {
    Passed,
    Failed,
    Errored,
    Canceled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishRequest {
    pub outcome: JobOutcome,
    pub exit_code: Option<i32>,
    /// Why the job errored or was canceled, in words a user understands.
    pub reason: Option<String>,
    #[serde(default)]
    pub phases: Vec<PhaseTiming>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseTiming {
    pub phase: String,
    pub started_at_ms: i64,
    pub duration_ms: u64,
    pub exit_code: i32,
}
