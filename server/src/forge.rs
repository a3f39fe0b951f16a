//! The forge (GitHub): where pipeline files come from, where statuses go,
//! and who lends clones of private repositories their credentials.
//!
//! Through GitHub's REST API with octocrab, at `GANTRY_GITHUB_API_URL` so
//! GitHub Enterprise and the tests' local double both work; authenticated
//! with a token, or as a GitHub App (a JWT for the app, then an installation
//! token per repository owner, refreshed by octocrab before it expires).

use gantry_pipeline::PIPELINE_FILES;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Time limits on talking to GitHub.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// How long a connection stays open unused.
    idle: Duration,
    /// How long GitHub has for a whole exchange (a file read, a status, an
    /// App's token), the last byte of its answer included; past it the
    /// exchange fails as `Transient` and is tried again later, so a GitHub
    /// that hangs, before answering or mid-answer, holds up no build's
    /// planning or statuses for good.
    answer_within: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            idle: Duration::from_secs(60),
            answer_within: Duration::from_secs(30),
        }
    }
}

type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<crate::proxy::ProxiedConnector>,
    octocrab::OctoBody,
>;

/// The HTTP client under octocrab: HTTPS with the system's roots, as
/// octocrab's own builder makes it, but with idle connections closed after
/// `idle`. octocrab's client never closes them itself, so a burst of
/// statuses left a connection per concurrent request open (and its buffers
/// in memory) until GitHub hung up. Through the proxy the environment
/// names, if any (`proxy`).
fn http_client(idle: Duration, api: &http::Uri) -> Result<HttpClient, String> {
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let proxied = crate::proxy::ProxiedConnector::from_env();
    if let Some(proxy) = proxied.proxy_for(api) {
        tracing::info!(%proxy, "GitHub's API is reached through the proxy");
    }
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider)
        .map_err(|e| format!("cannot read the system's certificate roots for GitHub: {e}"))?
        .https_or_http()
        .enable_http1()
        .wrap_connector(proxied);
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(idle)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(connector),
    )
}

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
    /// The text of `path` in `repo` at `git_ref` (the default branch when
    /// `None`); `Ok(None)` when there is no such file (or repository).
    fn file_at<'a>(
        &'a self,
        repo: &'a str,
        path: &'a str,
        git_ref: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<String>, ForgeError>>;
    /// Whether `repo` is private; `Ok(None)` when the credentials cannot see it.
    fn is_private<'a>(&'a self, repo: &'a str) -> BoxFuture<'a, Result<Option<bool>, ForgeError>>;
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
    /// The password for `x-access-token` to clone `repo` over HTTPS: the
    /// token, or the App's installation token; `None` without credentials.
    fn clone_token<'a>(
        &'a self,
        repo: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ForgeError>>;
}

fn split(repo: &str) -> Result<(&str, &str), ForgeError> {
    repo.split_once('/')
        .ok_or_else(|| ForgeError::Permanent(format!("`{repo}` is not an owner/name repository")))
}

/// What an error from GitHub means for the caller: `Ok` for "not found"
/// (the caller knows what that means), else a permanent or a transient
/// error in words an admin can act on.
fn classify(e: octocrab::Error, api_url: &str) -> Result<(), ForgeError> {
    match e {
        octocrab::Error::GitHub { source, .. } => {
            let status = source.status_code.as_u16();
            match status {
                404 | 422 => Ok(()),
                401 => Err(ForgeError::Permanent(format!(
                    "GitHub refused Gantry's credentials (401: {}): check GANTRY_GITHUB_TOKEN, or the GitHub App's id and private key",
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
        // No answer at all: where Gantry looked, and the innermost cause
        // ("Connection refused", a DNS failure, a certificate).
        other => Err(ForgeError::Transient(format!(
            "no answer from GitHub's API at {api_url} ({}); check the network, a proxy (HTTPS_PROXY), or GANTRY_GITHUB_API_URL",
            crate::error::chain(&other)
        ))),
    }
}

/// How Gantry signs in to GitHub.
pub enum Credentials<'a> {
    None,
    Token(&'a str),
    /// A GitHub App: its id and private key (PEM).
    App {
        id: u64,
        key_pem: &'a str,
    },
}

pub struct GitHub {
    /// With a token (or none); for an App, the client that signs as the App.
    client: Arc<octocrab::Octocrab>,
    /// Where the API is, as configured: said when it does not answer.
    api_url: String,
    token: Option<String>,
    app: bool,
    answer_within: Duration,
    /// An App's installation clients, by repository owner. Shared, not
    /// cloned: each keeps its installation token until it nearly expires.
    installations: tokio::sync::Mutex<std::collections::HashMap<String, Arc<octocrab::Octocrab>>>,
}

impl GitHub {
    pub fn new(api_url: &str, credentials: Credentials<'_>) -> Result<GitHub, String> {
        GitHub::with_limits(api_url, credentials, Limits::default())
    }

    fn with_limits(
        api_url: &str,
        credentials: Credentials<'_>,
        limits: Limits,
    ) -> Result<GitHub, String> {
        use http::header::{HeaderValue, USER_AGENT};
        use octocrab::service::middleware::{
            auth_header::AuthHeaderLayer, base_uri::BaseUriLayer, extra_headers::ExtraHeadersLayer,
        };
        let base_uri: http::Uri = api_url
            .parse()
            .map_err(|e| format!("GANTRY_GITHUB_API_URL `{api_url}` is not a URL: {e}"))?;
        let (mut token, mut app) = (None, false);
        let (auth_header, auth) = match credentials {
            Credentials::None => (None, octocrab::AuthState::None),
            Credentials::Token(t) => {
                token = Some(t.to_string());
                let mut header = HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
                    "the GitHub token holds characters a header cannot: copy it again from GitHub"
                        .to_string()
                })?;
                header.set_sensitive(true);
                (Some(header), octocrab::AuthState::None)
            }
            Credentials::App { id, key_pem } => {
                let key = jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.as_bytes()).map_err(|e| {
                    format!("the GitHub App's private key is not an RSA key in PEM ({e}): use the .pem file GitHub generated for the App")
                })?;
                app = true;
                let app = octocrab::auth::AppAuth {
                    app_id: id.into(),
                    key,
                };
                (None, octocrab::AuthState::App(app))
            }
        };
        // The layers octocrab's own builder puts around its client.
        let client = octocrab::OctocrabBuilder::new_empty()
            .with_service(http_client(limits.idle, &base_uri)?)
            .with_layer(&ExtraHeadersLayer::new(Arc::new(vec![(
                USER_AGENT,
                HeaderValue::from_static("gantry"),
            )])))
            .with_layer(&BaseUriLayer::new(base_uri.clone()))
            .with_layer(&AuthHeaderLayer::new(
                auth_header,
                base_uri.clone(),
                base_uri,
            ))
            .with_auth(auth)
            .build()
            .map_err(|e| format!("cannot build the GitHub client: {e}"))?;
        Ok(GitHub {
            client: Arc::new(client),
            api_url: api_url.to_string(),
            token,
            app,
            answer_within: limits.answer_within,
            installations: Default::default(),
        })
    }

    /// Bounds a whole exchange with GitHub by `answer_within`. A limit on
    /// the HTTP request alone would end when the answer's headers arrive,
    /// and octocrab reads the body after that.
    fn within<'a, T: 'a>(
        &'a self,
        exchange: impl Future<Output = Result<T, ForgeError>> + Send + 'a,
    ) -> BoxFuture<'a, Result<T, ForgeError>> {
        let limit = self.answer_within;
        Box::pin(async move {
            tokio::time::timeout(limit, exchange)
                .await
                .unwrap_or_else(|_| {
                    Err(ForgeError::Transient(format!(
                        "GitHub did not answer within {limit:?}"
                    )))
                })
        })
    }

    /// The client for `owner/name`: the token's, or the App installation's.
    async fn client_for(
        &self,
        owner: &str,
        name: &str,
    ) -> Result<Arc<octocrab::Octocrab>, ForgeError> {
        if !self.app {
            return Ok(self.client.clone());
        }
        let mut installations = self.installations.lock().await;
        if let Some(client) = installations.get(owner) {
            return Ok(client.clone());
        }
        let installation = self
            .client
            .apps()
            .get_repository_installation(owner, name)
            .await
            .map_err(|e| {
                classify(e, &self.api_url).err().unwrap_or_else(|| {
                    ForgeError::Permanent(format!(
                        "the GitHub App is not installed on {owner}/{name}: install it on the repository or its owner"
                    ))
                })
            })?;
        let client = Arc::new(self.client.installation(installation.id).map_err(|e| {
            ForgeError::Permanent(format!("cannot use installation {}: {e}", installation.id))
        })?);
        installations.insert(owner.to_string(), client.clone());
        Ok(client)
    }

    async fn file(
        &self,
        owner: &str,
        name: &str,
        path: &str,
        git_ref: Option<&str>,
    ) -> Result<Option<String>, ForgeError> {
        let client = self.client_for(owner, name).await?;
        let repos = client.repos(owner, name);
        let mut request = repos.get_content().path(path);
        if let Some(git_ref) = git_ref {
            request = request.r#ref(git_ref);
        }
        let result = request.send().await;
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
            Err(e) => classify(e, &self.api_url).map(|()| None),
        }
    }
}

impl Forge for GitHub {
    fn file_at<'a>(
        &'a self,
        repo: &'a str,
        path: &'a str,
        git_ref: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<String>, ForgeError>> {
        self.within(async move {
            let (owner, name) = split(repo)?;
            self.file(owner, name, path, git_ref).await
        })
    }

    fn is_private<'a>(&'a self, repo: &'a str) -> BoxFuture<'a, Result<Option<bool>, ForgeError>> {
        self.within(async move {
            let (owner, name) = split(repo)?;
            let answer: Result<serde_json::Value, _> = self
                .client_for(owner, name)
                .await?
                .get(format!("/repos/{owner}/{name}"), None::<&()>)
                .await;
            match answer {
                // A repository GitHub does not call public is taken as private.
                Ok(repository) => Ok(Some(repository["private"].as_bool() != Some(false))),
                Err(e) => classify(e, &self.api_url).map(|()| None),
            }
        })
    }

    fn pipeline_file<'a>(
        &'a self,
        repo: &'a str,
        commit: &'a str,
    ) -> BoxFuture<'a, Result<Option<PipelineFile>, ForgeError>> {
        self.within(async move {
            let (owner, name) = split(repo)?;
            for file in PIPELINE_FILES {
                if let Some(content) = self.file(owner, name, file, Some(commit)).await? {
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
        self.within(async move {
            let (owner, name) = split(repo)?;
            let state = match status.state.as_str() {
                "pending" => octocrab::models::StatusState::Pending,
                "success" => octocrab::models::StatusState::Success,
                "failure" => octocrab::models::StatusState::Failure,
                _ => octocrab::models::StatusState::Error,
            };
            let client = self.client_for(owner, name).await?;
            let repos = client.repos(owner, name);
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
                Err(e) => Err(classify(e, &self.api_url).err().unwrap_or_else(|| {
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
        self.within(async move {
            let (owner, name) = split(repo)?;
            match self
                .client_for(owner, name)
                .await?
                .commits(owner, name)
                .get(branch)
                .await
            {
                Ok(commit) => Ok(Some(commit.sha)),
                Err(e) => classify(e, &self.api_url).map(|()| None),
            }
        })
    }

    fn clone_token<'a>(
        &'a self,
        repo: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ForgeError>> {
        self.within(async move {
            if !self.app {
                return Ok(self.token.clone());
            }
            let (owner, name) = split(repo)?;
            let client = self.client_for(owner, name).await?;
            let token = client.installation_token().await.map_err(|e| {
                ForgeError::Transient(format!("cannot get an installation token: {e}"))
            })?;
            Ok(Some(
                secrecy::ExposeSecret::expose_secret(&token).to_string(),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// A client with `limits` for a GitHub double that is a bare socket,
    /// so a test decides what (and whether) it answers.
    async fn github_on_a_socket(idle_ms: u64, answer_within_ms: u64) -> (GitHub, TcpListener) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        let limits = Limits {
            idle: Duration::from_millis(idle_ms),
            answer_within: Duration::from_millis(answer_within_ms),
        };
        let github = GitHub::with_limits(&url, Credentials::None, limits).expect("a client");
        (github, listener)
    }

    /// The first connection, once its request's head is in (these requests
    /// have no body).
    async fn first_request(listener: TcpListener) -> TcpStream {
        let (mut conn, _) = listener.accept().await.expect("a connection");
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).await.expect("the request");
            assert!(n > 0, "the client hung up before its request ended");
            head.extend_from_slice(&buf[..n]);
        }
        conn
    }

    #[tokio::test]
    async fn a_connection_left_idle_is_closed() {
        let (github, listener) = github_on_a_socket(300, 5_000).await;
        let server = tokio::spawn(async move {
            let mut conn = first_request(listener).await;
            let body = r#"{"message":"Not Found","documentation_url":"https://docs.github.com"}"#;
            let answer = format!(
                "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(answer.as_bytes()).await.expect("the answer");
            // Kept alive by both sides: only the client's idle limit ends it.
            let mut rest = [0u8; 64];
            tokio::time::timeout(Duration::from_secs(10), conn.read(&mut rest)).await
        });
        let head = github.branch_head("octo/hello", "main").await;
        assert!(matches!(head, Ok(None)), "a 404 is no branch: {head:?}");
        let closed = server.await.expect("the fake GitHub");
        assert!(
            matches!(closed, Ok(Ok(0))),
            "the idle connection should have been closed by Gantry: {closed:?}"
        );
    }

    /// Whether Gantry gives up by itself on a GitHub that sends `start` of
    /// an answer and then goes quiet without hanging up.
    async fn gives_up_on_a_github_that_stalls_after(start: &'static [u8]) {
        let (github, listener) = github_on_a_socket(60_000, 500).await;
        let _server = tokio::spawn(async move {
            let mut conn = first_request(listener).await;
            conn.write_all(start).await.expect("the start of an answer");
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(conn);
        });
        let found = tokio::time::timeout(
            Duration::from_secs(10),
            github.pipeline_file("octo/hello", "abc123"),
        )
        .await
        .expect("Gantry should give up on GitHub by itself");
        assert!(
            matches!(found, Err(ForgeError::Transient(_))),
            "a silent GitHub is retried later: {found:?}"
        );
    }

    /// Nothing listens where GANTRY_GITHUB_API_URL points: the error names
    /// the URL, the innermost cause and what to check.
    #[tokio::test]
    async fn a_github_that_cannot_be_reached_is_named_with_the_cause() {
        let (github, listener) = github_on_a_socket(1_000, 5_000).await;
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        drop(listener);
        let found = github.pipeline_file("octo/hello", "abc123").await;
        let Err(ForgeError::Transient(why)) = found else {
            panic!("an unreachable GitHub is retried later: {found:?}");
        };
        assert!(
            why.starts_with(&format!("no answer from GitHub's API at {url} (")),
            "{why}"
        );
        assert!(why.contains("Connection refused"), "{why}");
        assert!(why.ends_with("or GANTRY_GITHUB_API_URL"), "{why}");
    }

    #[tokio::test]
    async fn a_github_that_does_not_answer_is_unavailable_not_waited_for() {
        gives_up_on_a_github_that_stalls_after(b"").await;
    }

    #[tokio::test]
    async fn a_github_that_stops_mid_answer_is_unavailable_not_waited_for() {
        gives_up_on_a_github_that_stalls_after(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 400\r\n\r\n[{\"type\": \"file\", ",
        )
        .await;
    }
}
