//! What a GitHub webhook asks for: a build of some commit, or nothing.

use crate::store::repos::RepoFacts;
use gantry_pipeline::Event;
use serde::de::IgnoredAny;
use serde::Deserialize;

/// A build a webhook asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRequest {
    pub repo: RepoFacts,
    pub event: Event,
    /// For tags: the tag; for pull requests: the base branch (as Travis).
    pub branch: String,
    pub tag: Option<String>,
    pub commit: String,
    pub message: String,
    pub author: String,
    pub sender: String,
    pub pull_request: Option<i64>,
    pub head_branch: Option<String>,
    pub head_repo: Option<String>,
    pub fork: bool,
    /// A config sent with an API request, over the pipeline file.
    pub config: Option<RequestConfig>,
    /// The head commit's author and committer addresses (pushes only):
    /// whom email notifications go to when no `recipients` are written.
    pub emails: CommitEmails,
    /// Pull requests: the base branch's head when GitHub sent the event,
    /// which the jobs merge the pull request into.
    pub base_commit: Option<String>,
}

/// A commit's author and committer addresses, as the push webhook gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitEmails {
    pub author: Option<String>,
    pub committer: Option<String>,
}

/// Travis's `request.config`: YAML (or JSON) text that goes over the
/// pipeline file as `mode` says (`None`: it replaces the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestConfig {
    pub text: String,
    pub mode: Option<gantry_pipeline::import::Mode>,
}

impl RequestConfig {
    /// As kept with the build: `{"text": …, "merge_mode": …}`.
    pub fn to_json(&self) -> String {
        self.to_value().to_string()
    }

    /// `{"text": …, "merge_mode": …}`, as kept and as the API shows it.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::json!({"text": self.text, "merge_mode": self.mode_name()})
    }

    /// Travis's name of the merge mode (`replace` for none).
    pub fn mode_name(&self) -> &'static str {
        self.mode.map_or("replace", |m| m.name())
    }

    /// The mode Travis calls `name`: `replace` (`None`) or one of the
    /// pipeline crate's merge modes; otherwise what to write instead.
    pub fn mode_named(name: &str) -> Result<Option<gantry_pipeline::import::Mode>, String> {
        match name {
            "replace" => Ok(None),
            name => gantry_pipeline::import::Mode::parse(name).map(Some).ok_or_else(|| {
                format!(
                    "unknown merge_mode `{name}`: use deep_merge_append (the default), deep_merge_prepend, deep_merge, merge or replace"
                )
            }),
        }
    }

    /// Reads what [`RequestConfig::to_json`] wrote; `None` if it is not that.
    pub fn from_json(json: &str) -> Option<RequestConfig> {
        let value: serde_json::Value = serde_json::from_str(json).ok()?;
        Some(RequestConfig {
            text: value["text"].as_str()?.to_string(),
            mode: Self::mode_named(value["merge_mode"].as_str()?).ok()?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    Build(Box<BuildRequest>),
    /// Acknowledged, nothing to do, and why.
    Ignore(String),
}

/// Why a delivery's body builds nothing and is refused.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("the body is not valid JSON: {0}")]
    NotJson(serde_json::Error),
    /// JSON, but not what GitHub sends for this event.
    #[error("{0}")]
    Invalid(String),
}

/// Reads `body` as `T`: only the fields Gantry uses are kept, and the rest of
/// a payload (most of its 5–25 KB) is skipped without building it in memory.
fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, PayloadError> {
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            PayloadError::Invalid(e.to_string())
        } else {
            PayloadError::NotJson(e)
        }
    })
}

#[derive(Deserialize)]
struct Repo {
    full_name: String,
    clone_url: String,
    #[serde(default)]
    private: bool,
    default_branch: Option<String>,
    /// Push payloads' older name for the default branch.
    master_branch: Option<String>,
}

impl From<Repo> for RepoFacts {
    fn from(repo: Repo) -> RepoFacts {
        RepoFacts {
            full_name: repo.full_name,
            clone_url: repo.clone_url,
            private: repo.private,
            default_branch: repo
                .default_branch
                .or(repo.master_branch)
                .unwrap_or_else(|| "master".into()),
        }
    }
}

#[derive(Deserialize)]
struct Login {
    login: String,
}

fn login(user: Option<Login>) -> String {
    user.map(|u| u.login).unwrap_or_default()
}

fn is_zero_sha(sha: &str) -> bool {
    !sha.is_empty() && sha.chars().all(|c| c == '0')
}

/// The repository a `ping` names: GitHub sends one when the webhook is
/// added, so Gantry knows the repository (and takes its secrets) before
/// the first push. `Ok(None)`: a ping of an organisation or app hook.
pub fn ping_repo(body: &[u8]) -> Result<Option<RepoFacts>, PayloadError> {
    #[derive(Deserialize)]
    struct Ping {
        repository: Option<serde_json::Value>,
    }
    let ping: Ping = parse(body)?;
    Ok(ping
        .repository
        .and_then(|r| Repo::deserialize(r).ok())
        .map(RepoFacts::from))
}

/// Reads a delivery. `event` is the `X-GitHub-Event` header.
pub fn trigger(event: &str, body: &[u8]) -> Result<Trigger, PayloadError> {
    match event {
        "push" => push(parse(body)?),
        "pull_request" => pull_request(parse(body)?),
        other => {
            // Nothing is read from other events, but GitHub sends JSON only.
            parse::<IgnoredAny>(body)?;
            Ok(Trigger::Ignore(if other == "ping" {
                "pong".into()
            } else {
                format!("`{other}` events do not start builds")
            }))
        }
    }
}

#[derive(Deserialize)]
struct Push {
    #[serde(rename = "ref")]
    git_ref: String,
    after: String,
    #[serde(default)]
    deleted: bool,
    repository: Option<Repo>,
    head_commit: Option<HeadCommit>,
    pusher: Option<Pusher>,
    sender: Option<Login>,
}

#[derive(Deserialize)]
struct HeadCommit {
    #[serde(default)]
    message: String,
    author: Option<Author>,
    committer: Option<Author>,
}

#[derive(Deserialize)]
struct Author {
    username: Option<String>,
    name: Option<String>,
    email: Option<String>,
}

#[derive(Deserialize)]
struct Pusher {
    name: Option<String>,
}

fn push(p: Push) -> Result<Trigger, PayloadError> {
    let git_ref = p.git_ref;
    if p.deleted || is_zero_sha(&p.after) {
        return Ok(Trigger::Ignore(format!("{git_ref} was deleted")));
    }
    let repo = p
        .repository
        .ok_or_else(|| PayloadError::Invalid("the payload has no `repository`".into()))?;
    let (event, branch, tag) = if let Some(tag) = git_ref.strip_prefix("refs/tags/") {
        (Event::Tag, tag.to_string(), Some(tag.to_string()))
    } else if let Some(branch) = git_ref.strip_prefix("refs/heads/") {
        (Event::Push, branch.to_string(), None)
    } else {
        return Ok(Trigger::Ignore(format!(
            "{git_ref} is neither a branch nor a tag"
        )));
    };
    let (message, author, emails) = match p.head_commit {
        Some(head) => {
            let emails = CommitEmails {
                author: head.author.as_ref().and_then(|a| a.email.clone()),
                committer: head.committer.and_then(|c| c.email),
            };
            (
                head.message,
                head.author.and_then(|a| a.username.or(a.name)),
                emails,
            )
        }
        None => (String::new(), None, CommitEmails::default()),
    };
    Ok(Trigger::Build(Box::new(BuildRequest {
        repo: repo.into(),
        event,
        branch,
        tag,
        commit: p.after,
        message,
        author: author
            .or_else(|| p.pusher.and_then(|p| p.name))
            .unwrap_or_default(),
        sender: login(p.sender),
        pull_request: None,
        head_branch: None,
        head_repo: None,
        fork: false,
        config: None,
        emails,
        base_commit: None,
    })))
}

#[derive(Deserialize)]
struct PullRequestEvent {
    action: String,
    number: Option<i64>,
    pull_request: Option<PullRequest>,
    repository: Option<Repo>,
    sender: Option<Login>,
}

#[derive(Deserialize)]
struct PullRequest {
    number: Option<i64>,
    title: Option<String>,
    user: Option<Login>,
    base: Base,
    head: Head,
}

#[derive(Deserialize)]
struct Base {
    #[serde(rename = "ref")]
    branch: String,
    sha: Option<String>,
    repo: Option<Repo>,
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "ref")]
    branch: Option<String>,
    sha: String,
    /// `null` when the fork was deleted.
    repo: Option<HeadRepo>,
}

#[derive(Deserialize)]
struct HeadRepo {
    full_name: String,
}

fn pull_request(p: PullRequestEvent) -> Result<Trigger, PayloadError> {
    let action = p.action;
    if !matches!(action.as_str(), "opened" | "synchronize" | "reopened") {
        return Ok(Trigger::Ignore(format!(
            "pull request `{action}` does not start a build"
        )));
    }
    let pr = p
        .pull_request
        .ok_or_else(|| PayloadError::Invalid("the payload has no `pull_request`".into()))?;
    let repo: RepoFacts = pr
        .base
        .repo
        .or(p.repository)
        .ok_or_else(|| PayloadError::Invalid("the payload has no `pull_request.base.repo`".into()))?
        .into();
    // A fork whose repository was deleted has `head.repo: null`: still a fork.
    let head_repo = pr.head.repo.map(|r| r.full_name);
    let fork = head_repo.as_deref() != Some(repo.full_name.as_str());
    let base_commit = pr.base.sha.filter(|sha| sha.len() == 40);
    Ok(Trigger::Build(Box::new(BuildRequest {
        event: Event::PullRequest,
        branch: pr.base.branch,
        tag: None,
        commit: pr.head.sha,
        message: pr.title.unwrap_or_default(),
        author: login(pr.user),
        sender: login(p.sender),
        pull_request: pr.number.or(p.number),
        head_branch: pr.head.branch,
        head_repo,
        fork,
        config: None,
        emails: CommitEmails::default(),
        base_commit,
        repo,
    })))
}
