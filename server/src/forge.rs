//! The forge (GitHub): where pipeline files come from.
//!
//! Read through GitHub's contents API with octocrab, at `GANTRY_GITHUB_API_URL`
//! so GitHub Enterprise and the tests' local double both work.

use gantry_pipeline::PIPELINE_FILES;
use std::future::Future;
use std::pin::Pin;

/// A pipeline file found at a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineFile {
    pub name: &'static str,
    pub content: String,
}

/// Why a file could not be read. `Transient` problems are retried.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error("GitHub is unavailable or refused the request ({0}); will retry")]
    Transient(String),
    #[error("{0}")]
    Permanent(String),
}

/// A status for GitHub to show on a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitStatus {
    pub sha: String,
    /// `pending`, `success`, `failure` or `error`.
    pub state: String,
    pub context: String,
    pub description: String,
    pub target_url: Option<String>,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Reads files of a repository at a commit.
pub trait Forge: Send + Sync {
    /// `Ok(None)` when neither `.gantry.yml` nor `.travis.yml` exists at `commit`.
    fn pipeline_file<'a>(
        &'a self,
        repo: &'a str,
        commit: &'a str,
    ) -> BoxFuture<'a, Result<Option<PipelineFile>, ForgeError>>;
    /// Sets a commit status (`POST /repos/{repo}/statuses/{sha}`).
    fn create_status<'a>(
        &'a self,
        repo: &'a str,
        status: &'a CommitStatus,
    ) -> BoxFuture<'a, Result<(), ForgeError>>;
    /// The commit a branch points at; `Ok(None)` when there is no such branch.
    fn branch_head<'a>(
        &'a self,
        repo: &'a str,
        branch: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ForgeError>>;
}

fn split(repo: &str) -> Result<(&str, &str), ForgeError> {
    repo.split_once('/')
        .ok_or_else(|| ForgeError::Permanent(format!("`{repo}` is not an owner/name repository")))
}

fn classify(e: octocrab::Error) -> Result<(), ForgeError> {
    match e {
        octocrab::Error::GitHub { source, .. } => {
            let status = source.status_code.as_u16();
            match status {
                404 | 422 => Ok(()),
                401 => Err(ForgeError::Permanent(format!(
                    "GitHub refused the token (401: {}): check GANTRY_GITHUB_TOKEN",
                    source.message
                ))),
                403 | 429 | 500..=599 => Err(ForgeError::Transient(format!(
                    "{status}: {}",
                    source.message
                ))),
                _ => Err(ForgeError::Permanent(format!(
                    "GitHub answered {status}: {}",
                    source.message
                ))),
            }
        }
        other => Err(ForgeError::Transient(other.to_string())),
    }
}

pub struct GitHub {
    client: octocrab::Octocrab,
}

impl GitHub {
    pub fn new(api_url: &str, token: Option<&str>) -> Result<GitHub, String> {
        let mut builder = octocrab::Octocrab::builder()
            .base_uri(api_url)
            .map_err(|e| format!("GANTRY_GITHUB_API_URL `{api_url}` is not a URL: {e}"))?;
        if let Some(token) = token {
            builder = builder.personal_token(token.to_string());
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot build the GitHub client: {e}"))?;
        Ok(GitHub { client })
    }

    async fn file(
        &self,
        owner: &str,
        name: &str,
        path: &str,
        commit: &str,
    ) -> Result<Option<String>, ForgeError> {
        let result = self
            .client
            .repos(owner, name)
            .get_content()
            .path(path)
            .r#ref(commit)
            .send()
            .await;
        match result {
            Ok(items) => {
                let Some(item) = items.items.into_iter().next() else {
                    return Ok(None);
                };
                if item.r#type != "file" {
                    return Ok(None);
                }
                item.decoded_content().map(Some).ok_or_else(|| {
                    ForgeError::Permanent(format!(
                        "{path} could not be decoded (is it UTF-8 text?)"
                    ))
                })
            }
            Err(e) => classify(e).map(|()| None),
        }
    }
}

impl Forge for GitHub {
    fn pipeline_file<'a>(
        &'a self,
        repo: &'a str,
        commit: &'a str,
    ) -> BoxFuture<'a, Result<Option<PipelineFile>, ForgeError>> {
        Box::pin(async move {
            let (owner, name) = split(repo)?;
            for file in PIPELINE_FILES {
                if let Some(content) = self.file(owner, name, file, commit).await? {
                    return Ok(Some(PipelineFile {
                        name: file,
                        content,
                    }));
                }
            }
            Ok(None)
        })
    }

    fn create_status<'a>(
        &'a self,
        repo: &'a str,
        status: &'a CommitStatus,
    ) -> BoxFuture<'a, Result<(), ForgeError>> {
        Box::pin(async move {
            let (owner, name) = split(repo)?;
            let state = match status.state.as_str() {
                "pending" => octocrab::models::StatusState::Pending,
                "success" => octocrab::models::StatusState::Success,
                "failure" => octocrab::models::StatusState::Failure,
                _ => octocrab::models::StatusState::Error,
            };
            let repos = self.client.repos(owner, name);
            let mut builder = repos
                .create_status(status.sha.clone(), state)
                .context(status.context.clone())
                .description(status.description.clone());
            if let Some(url) = &status.target_url {
                builder = builder.target(url.clone());
            }
            match builder.send().await {
                Ok(_) => Ok(()),
                // Not found here means the token cannot reach the repository: permanent.
                Err(e) => Err(classify(e).err().unwrap_or_else(|| {
                    ForgeError::Permanent(
                        "GitHub answered 404/422: the token cannot set statuses on this repository"
                            .into(),
                    )
                })),
            }
        })
    }

    fn branch_head<'a>(
        &'a self,
        repo: &'a str,
        branch: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ForgeError>> {
        Box::pin(async move {
            let (owner, name) = split(repo)?;
            match self.client.commits(owner, name).get(branch).await {
                Ok(commit) => Ok(Some(commit.sha)),
                Err(e) => classify(e).map(|()| None),
            }
        })
    }
}
