//! The build a pipeline is evaluated for: which event, branch, tag, repository.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What started a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Push,
    PullRequest,
    Tag,
    Api,
    Cron,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Push => "push",
            Event::PullRequest => "pull_request",
            Event::Tag => "tag",
            Event::Api => "api",
            Event::Cron => "cron",
        }
    }

    /// The value of Travis's `type` attribute: a tag build is a `push` with a tag.
    pub fn travis_type(self) -> &'static str {
        match self {
            Event::Tag => "push",
            other => other.as_str(),
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Event {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "push" => Ok(Event::Push),
            "pull_request" | "pr" => Ok(Event::PullRequest),
            "tag" => Ok(Event::Tag),
            "api" => Ok(Event::Api),
            "cron" => Ok(Event::Cron),
            other => Err(format!(
                "unknown event `{other}`: expected push, pull_request, tag, api or cron"
            )),
        }
    }
}

/// Facts about the build that conditions (`if:`, `branches`, `deploy.on`) test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildContext {
    pub event: Event,
    /// The branch built; for pull requests the base branch, for tags the tag name (as Travis).
    pub branch: String,
    pub tag: Option<String>,
    /// `owner/name`.
    pub repo: String,
    /// The repository's default branch: where `deploy` runs unless `on.branch` says otherwise.
    pub default_branch: String,
    /// A pull request from another repository.
    pub fork: bool,
    pub sender: String,
    pub commit_message: String,
    /// Pull requests: the repository and branch the changes come from.
    pub head_repo: Option<String>,
    pub head_branch: Option<String>,
    pub pull_request: Option<u64>,
}

impl Default for BuildContext {
    fn default() -> Self {
        BuildContext {
            event: Event::Push,
            branch: "master".into(),
            tag: None,
            repo: "owner/repo".into(),
            default_branch: "master".into(),
            fork: false,
            sender: String::new(),
            commit_message: String::new(),
            head_repo: None,
            head_branch: None,
            pull_request: None,
        }
    }
}

impl BuildContext {
    /// A push of `branch`.
    pub fn push(branch: &str) -> Self {
        BuildContext {
            branch: branch.into(),
            ..Default::default()
        }
    }

    /// A push of tag `tag`; Travis reports the tag as the branch too.
    pub fn tag(tag: &str) -> Self {
        BuildContext {
            event: Event::Tag,
            branch: tag.into(),
            tag: Some(tag.into()),
            ..Default::default()
        }
    }

    pub fn is_pull_request(&self) -> bool {
        self.event == Event::PullRequest
    }
}
