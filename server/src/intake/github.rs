//! What a GitHub webhook asks for: a build of some commit, or nothing.

use crate::store::repos::RepoFacts;
use gantry_pipeline::Event;
use serde_json::Value;

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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    Build(Box<BuildRequest>),
    /// Acknowledged, nothing to do, and why.
    Ignore(String),
}

/// The payload is not what GitHub sends for this event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PayloadError(pub String);

fn text<'a>(v: &'a Value, path: &str) -> Result<&'a str, PayloadError> {
    let mut node = v;
    for key in path.split('.') {
        node = node
            .get(key)
            .ok_or_else(|| PayloadError(format!("the payload has no `{path}`")))?;
    }
    node.as_str()
        .ok_or_else(|| PayloadError(format!("`{path}` is not a string")))
}

fn opt_text(v: &Value, path: &str) -> Option<String> {
    text(v, path).ok().map(str::to_string)
}

fn repo_facts(repo: &Value) -> Result<RepoFacts, PayloadError> {
    Ok(RepoFacts {
        full_name: text(repo, "full_name")?.to_string(),
        clone_url: text(repo, "clone_url")?.to_string(),
        private: repo
            .get("private")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        default_branch: opt_text(repo, "default_branch")
            .or_else(|| opt_text(repo, "master_branch"))
            .unwrap_or_else(|| "master".into()),
    })
}

fn is_zero_sha(sha: &str) -> bool {
    !sha.is_empty() && sha.chars().all(|c| c == '0')
}

/// The repository a `ping` names: GitHub sends one when the webhook is
/// added, so Gantry knows the repository (and takes its secrets) before
/// the first push.
pub fn ping_repo(payload: &Value) -> Option<RepoFacts> {
    payload.get("repository").and_then(|r| repo_facts(r).ok())
}

/// Reads a delivery. `event` is the `X-GitHub-Event` header.
pub fn trigger(event: &str, payload: &Value) -> Result<Trigger, PayloadError> {
    match event {
        "push" => push(payload),
        "pull_request" => pull_request(payload),
        "ping" => Ok(Trigger::Ignore("pong".into())),
        other => Ok(Trigger::Ignore(format!(
            "`{other}` events do not start builds"
        ))),
    }
}

fn push(p: &Value) -> Result<Trigger, PayloadError> {
    let git_ref = text(p, "ref")?;
    let after = text(p, "after")?;
    let deleted = p.get("deleted").and_then(Value::as_bool).unwrap_or(false);
    if deleted || is_zero_sha(after) {
        return Ok(Trigger::Ignore(format!("{git_ref} was deleted")));
    }
    let repo = repo_facts(
        p.get("repository")
            .ok_or_else(|| PayloadError("the payload has no `repository`".into()))?,
    )?;
    let (event, branch, tag) = if let Some(tag) = git_ref.strip_prefix("refs/tags/") {
        (Event::Tag, tag.to_string(), Some(tag.to_string()))
    } else if let Some(branch) = git_ref.strip_prefix("refs/heads/") {
        (Event::Push, branch.to_string(), None)
    } else {
        return Ok(Trigger::Ignore(format!(
            "{git_ref} is neither a branch nor a tag"
        )));
    };
    let head = p.get("head_commit").filter(|h| !h.is_null());
    let message = head
        .and_then(|h| opt_text(h, "message"))
        .unwrap_or_default();
    let author = head
        .and_then(|h| opt_text(h, "author.username").or_else(|| opt_text(h, "author.name")))
        .or_else(|| opt_text(p, "pusher.name"))
        .unwrap_or_default();
    Ok(Trigger::Build(Box::new(BuildRequest {
        repo,
        event,
        branch,
        tag,
        commit: after.to_string(),
        message,
        author,
        sender: opt_text(p, "sender.login").unwrap_or_default(),
        pull_request: None,
        head_branch: None,
        head_repo: None,
        fork: false,
    })))
}

fn pull_request(p: &Value) -> Result<Trigger, PayloadError> {
    let action = text(p, "action")?;
    if !matches!(action, "opened" | "synchronize" | "reopened") {
        return Ok(Trigger::Ignore(format!(
            "pull request `{action}` does not start a build"
        )));
    }
    let pr = p
        .get("pull_request")
        .ok_or_else(|| PayloadError("the payload has no `pull_request`".into()))?;
    let base_repo = pr
        .get("base")
        .and_then(|b| b.get("repo"))
        .or_else(|| p.get("repository"));
    let repo = repo_facts(
        base_repo
            .ok_or_else(|| PayloadError("the payload has no `pull_request.base.repo`".into()))?,
    )?;
    // A fork whose repository was deleted has `head.repo: null`: still a fork.
    let head_repo = opt_text(pr, "head.repo.full_name");
    let fork = head_repo.as_deref() != Some(repo.full_name.as_str());
    let number = pr
        .get("number")
        .or_else(|| p.get("number"))
        .and_then(Value::as_i64);
    Ok(Trigger::Build(Box::new(BuildRequest {
        event: Event::PullRequest,
        branch: text(pr, "base.ref")?.to_string(),
        tag: None,
        commit: text(pr, "head.sha")?.to_string(),
        message: opt_text(pr, "title").unwrap_or_default(),
        author: opt_text(pr, "user.login").unwrap_or_default(),
        sender: opt_text(p, "sender.login").unwrap_or_default(),
        pull_request: number,
        head_branch: opt_text(pr, "head.ref"),
        head_repo,
        fork,
        repo,
    })))
}
