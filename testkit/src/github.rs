//! A local double of the GitHub REST API endpoints Gantry calls, faithful to
//! GitHub's JSON: contents (`GET /repos/{o}/{r}/contents/{path}?ref=`),
//! commits (`GET /repos/{o}/{r}/commits/{ref}`) and statuses
//! (`POST /repos/{o}/{r}/statuses/{sha}`), and releases (see [`releases`]). Files come from real git
//! repositories on disk; every request is recorded. In App mode
//! ([`GitHubDouble::require_app`]) it is a GitHub App's view: the App's JWT
//! (RS256, checked against its public key) finds the repository's
//! installation and buys installation tokens, and every other call needs one.

pub mod releases;

use crate::git::Repo;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A request the double received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub body: Option<Value>,
    /// Answered with an injected failure (see [`GitHubDouble::fail_next`]).
    pub failed: bool,
}

/// A GitHub App the double knows.
struct App {
    id: u64,
    key: jsonwebtoken::DecodingKey,
    installation: u64,
    /// Installation tokens handed out, newest last.
    tokens: Vec<String>,
}

/// An OAuth app the double knows, and the GitHub users around it.
#[derive(Default)]
struct OAuth {
    client_id: String,
    client_secret: String,
    /// Who is signed in to "github.com" in the test's browser.
    browser_user: Option<String>,
    codes: HashMap<String, String>,
    tokens: HashMap<String, String>,
    /// (login, owner/name) → `pull`, `push` or `admin`.
    permissions: HashMap<(String, String), String>,
}

#[derive(Default)]
struct Inner {
    app: Option<App>,
    oauth: OAuth,
    repos: HashMap<String, PathBuf>,
    /// Repositories GitHub shows as private (`"private": true`).
    private: std::collections::HashSet<String>,
    /// Files read at a commit id, which never change: (repository dir,
    /// commit, path) → content. GitHub serves them from its own machines;
    /// here each read cost two `git` processes on the benchmarks' cores.
    files: HashMap<(PathBuf, String, String), String>,
    requests: Vec<Recorded>,
    /// Answer this many requests with this status before serving normally.
    failures: Option<(u32, u16)>,
    /// How long a commit status takes to arrive (network and GitHub's own time).
    status_latency: std::time::Duration,
    releases: releases::Releases,
}

#[derive(Clone)]
pub struct GitHubDouble {
    inner: Arc<Mutex<Inner>>,
    pub url: String,
    /// Over HTTPS: the authority that signed its certificate (DER).
    pub ca: Option<Vec<u8>>,
}

/// Runs `git` off the async runtime: the benchmarks share it with their load.
async fn off_runtime<T: Send + 'static>(
    git: impl FnOnce() -> Option<T> + Send + 'static,
) -> Option<T> {
    tokio::task::spawn_blocking(git).await.ok().flatten()
}

fn not_found() -> (StatusCode, Json<Value>) {
    (
        StatusCode::NOT_FOUND,
        Json(
            json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"}),
        ),
    )
}

impl GitHubDouble {
    /// Starts the double on a random port of 127.0.0.1.
    pub async fn start() -> GitHubDouble {
        let (listener, url) = crate::bind().await;
        GitHubDouble::serve(listener, url, None)
    }

    /// As [`GitHubDouble::start`], over HTTPS, as GitHub is.
    pub async fn start_tls() -> GitHubDouble {
        let (listener, url, ca) = crate::tls::bind_tls().await;
        GitHubDouble::serve(listener, url, Some(ca))
    }

    fn serve<L>(listener: L, url: String, ca: Option<Vec<u8>>) -> GitHubDouble
    where
        L: axum::serve::Listener,
        L::Addr: std::fmt::Debug,
    {
        let (app, inner) = GitHubDouble::app(&url);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        GitHubDouble { inner, url, ca }
    }

    fn app(url: &str) -> (Router, Arc<Mutex<Inner>>) {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let state = (inner.clone(), url.to_string());
        let app = Router::new()
            .route("/repos/{owner}/{repo}/contents/{*path}", get(contents))
            .route("/repos/{owner}/{repo}/commits/{reference}", get(commit))
            .route("/repos/{owner}/{repo}/statuses/{sha}", post(status))
            .route("/repos/{owner}/{repo}/installation", get(installation))
            .route("/repos/{owner}/{repo}", get(repository))
            .route("/login/oauth/authorize", get(authorize))
            .route("/login/oauth/access_token", post(oauth_token))
            .route("/user", get(user))
            .route("/app/installations/{id}/access_tokens", post(access_token))
            .merge(releases::routes())
            .with_state(state);
        (app, inner)
    }

    /// Serves `full_name` (`owner/name`) from the repository at `path`.
    pub fn add_repo(&self, full_name: &str, path: PathBuf) {
        self.lock().repos.insert(full_name.to_string(), path);
    }

    /// Shows `full_name` as private (or public again).
    pub fn set_private(&self, full_name: &str, private: bool) {
        let mut inner = self.lock();
        if private {
            inner.private.insert(full_name.to_string());
        } else {
            inner.private.remove(full_name);
        }
    }

    /// From now on, acts as GitHub does for App `id` whose public key is
    /// `public_pem`: installed on every repository as installation 4242.
    pub fn require_app(&self, id: u64, public_pem: &str) {
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(public_pem.as_bytes())
            .expect("an RSA public key");
        self.lock().app = Some(App {
            id,
            key,
            installation: 4242,
            tokens: Vec::new(),
        });
    }

    /// Acts as GitHub for the OAuth app `client_id`/`client_secret`.
    pub fn oauth_app(&self, client_id: &str, client_secret: &str) {
        let mut inner = self.lock();
        inner.oauth.client_id = client_id.into();
        inner.oauth.client_secret = client_secret.into();
    }

    /// The test's browser is signed in to GitHub as `login` (it approves at once).
    pub fn browser_signed_in_as(&self, login: &str) {
        self.lock().oauth.browser_user = Some(login.into());
    }

    /// `login`'s permission on `repo`: `none` (the repository is hidden), `pull`, `push` or `admin`.
    pub fn grant(&self, login: &str, repo: &str, permission: &str) {
        self.lock()
            .oauth
            .permissions
            .insert((login.into(), repo.into()), permission.into());
    }

    /// The installation tokens handed out so far.
    pub fn installation_tokens(&self) -> Vec<String> {
        self.lock()
            .app
            .as_ref()
            .map(|a| a.tokens.clone())
            .unwrap_or_default()
    }

    /// The next `count` requests get `status` (e.g. 502), as during an outage.
    pub fn fail_next(&self, count: u32, status: u16) {
        self.lock().failures = Some((count, status));
    }

    /// Each commit status arrives `latency` after it is sent, so senders
    /// that race one another show it.
    pub fn slow_statuses(&self, latency: std::time::Duration) {
        self.lock().status_latency = latency;
    }

    /// The outage is over: requests are answered again.
    pub fn recover(&self) {
        self.lock().failures = None;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type DoubleState = (Arc<Mutex<Inner>>, String);

fn bad_credentials() -> (StatusCode, Json<Value>) {
    (
        StatusCode::UNAUTHORIZED,
        Json(
            json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest", "status": "401"}),
        ),
    )
}

#[derive(serde::Deserialize)]
struct AppClaims {
    iss: Value,
}

/// Checks the App's JWT (`Authorization: Bearer <jwt>`) as GitHub does.
fn check_jwt(
    state: &DoubleState,
    method: &str,
    path: String,
    headers: &HeaderMap,
) -> Result<u64, (StatusCode, Json<Value>)> {
    let mut inner = state.0.lock().unwrap_or_else(|e| e.into_inner());
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    inner.requests.push(Recorded {
        method: method.into(),
        path,
        authorization: authorization.clone(),
        body: None,
        failed: false,
    });
    let Some(app) = &inner.app else {
        return Err(not_found());
    };
    let jwt = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .ok_or_else(bad_credentials)?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    // GitHub's `iss` is the App id as a number, which the crate's own
    // issuer check does not read: it is compared below.
    validation.set_required_spec_claims(&["exp"]);
    let claims = jsonwebtoken::decode::<AppClaims>(jwt, &app.key, &validation).map_err(|e| {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": format!("A JSON web token could not be decoded ({e})"), "documentation_url": "https://docs.github.com/rest", "status": "401"})),
        )
    })?;
    let iss = claims
        .claims
        .iss
        .as_u64()
        .or_else(|| claims.claims.iss.as_str().and_then(|s| s.parse().ok()));
    if iss != Some(app.id) {
        return Err(bad_credentials());
    }
    Ok(app.installation)
}

/// `GET /repos/{owner}/{repo}/installation` (App JWT).
async fn installation(
    State(state): State<DoubleState>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    let id = check_jwt(
        &state,
        "GET",
        format!("/repos/{owner}/{repo}/installation"),
        &headers,
    )?;
    let base = &state.1;
    let inner = state.0.lock().unwrap_or_else(|e| e.into_inner());
    if !inner.repos.contains_key(&format!("{owner}/{repo}")) {
        return Err(not_found());
    }
    let app_id = inner.app.as_ref().map(|a| a.id).unwrap_or_default();
    let user = |path: &str| format!("https://api.github.com/users/{owner}{path}");
    Ok(Json(json!({
        "id": id,
        "account": {
            "login": owner, "id": 1, "node_id": "MDQ6VXNlcjE=",
            "avatar_url": "https://github.com/images/error/octocat_happy.gif", "gravatar_id": "",
            "url": user(""), "html_url": format!("https://github.com/{owner}"),
            "followers_url": user("/followers"), "following_url": user("/following{/other_user}"),
            "gists_url": user("/gists{/gist_id}"), "starred_url": user("/starred{/owner}{/repo}"),
            "subscriptions_url": user("/subscriptions"), "organizations_url": user("/orgs"),
            "repos_url": user("/repos"), "events_url": user("/events{/privacy}"),
            "received_events_url": user("/received_events"), "type": "User", "site_admin": false
        },
        "repository_selection": "all",
        "access_tokens_url": format!("{base}/app/installations/{id}/access_tokens"),
        "repositories_url": format!("{base}/installation/repositories"),
        "html_url": format!("https://github.com/settings/installations/{id}"),
        "app_id": app_id,
        "target_id": 1,
        "target_type": "User",
        "permissions": {"contents": "read", "metadata": "read", "statuses": "write"},
        "events": ["push", "pull_request"],
        "created_at": "2026-11-01T00:00:00Z",
        "updated_at": "2026-11-01T00:00:00Z",
        "single_file_name": null
    })))
}

/// `POST /app/installations/{id}/access_tokens` (App JWT): a token for an hour.
async fn access_token(
    State(state): State<DoubleState>,
    Path(id): Path<u64>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<Value>), (StatusCode, Json<Value>)> {
    let installation = check_jwt(
        &state,
        "POST",
        format!("/app/installations/{id}/access_tokens"),
        &headers,
    )?;
    if id != installation {
        return Err(not_found());
    }
    let token = format!("ghs_{}", hex::encode(rand::random::<[u8; 18]>()));
    let expires = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    let expires_at = humantime::format_rfc3339_seconds(expires).to_string();
    let mut inner = state.0.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(app) = &mut inner.app {
        app.tokens.push(token.clone());
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "token": token,
            "expires_at": expires_at,
            "permissions": {"contents": "read", "metadata": "read", "statuses": "write"},
            "repository_selection": "all"
        })),
    ))
}

/// Records the request; returns an injected failure if one is due, and the repository.
fn enter(
    state: &DoubleState,
    method: &str,
    path: String,
    headers: &HeaderMap,
    body: Option<Value>,
    repo: &str,
) -> Result<PathBuf, (StatusCode, Json<Value>)> {
    let mut inner = state.0.lock().unwrap_or_else(|e| e.into_inner());
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let failed = inner.failures.is_some();
    inner.requests.push(Recorded {
        method: method.into(),
        path,
        authorization: authorization.clone(),
        body,
        failed,
    });
    if let Some(app) = &inner.app {
        let token = authorization.as_deref().and_then(|a| {
            a.strip_prefix("token ")
                .or_else(|| a.strip_prefix("Bearer "))
        });
        if !token.is_some_and(|t| app.tokens.iter().any(|issued| issued == t)) {
            return Err(bad_credentials());
        }
    }
    if let Some((count, status)) = inner.failures {
        inner.failures = (count > 1).then_some((count - 1, status));
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        return Err((
            code,
            Json(
                json!({"message": "Server Error", "documentation_url": "https://docs.github.com/rest"}),
            ),
        ));
    }
    inner.repos.get(repo).cloned().ok_or_else(not_found)
}

async fn contents(
    State(state): State<DoubleState>,
    Path((owner, repo, path)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    let full = format!("{owner}/{repo}");
    let dir = enter(
        &state,
        "GET",
        format!("/repos/{full}/contents/{path}"),
        &headers,
        None,
        &full,
    )?;
    let reference = query.get("ref").cloned().unwrap_or_else(|| "HEAD".into());
    // Only a full commit id names the same file forever; branches move.
    let key = (reference.len() == 40 && reference.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| (dir.clone(), reference.clone(), path.clone()));
    let cached = key.as_ref().and_then(|k| {
        state
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .files
            .get(k)
            .cloned()
    });
    let content = match cached {
        Some(content) => content,
        None => {
            let (file, asked) = (path.clone(), reference.clone());
            let content = off_runtime(move || {
                let commit = Repo::resolve(&dir, &asked)?;
                Repo::show(&dir, &commit, &file)
            })
            .await
            .ok_or_else(not_found)?;
            if let Some(key) = key {
                state
                    .0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .files
                    .insert(key, content.clone());
            }
            content
        }
    };
    let encoded = base64::engine::general_purpose::STANDARD.encode(content.as_bytes());
    // GitHub wraps base64 at 60 columns.
    let wrapped: Vec<String> = encoded
        .as_bytes()
        .chunks(60)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let base = &state.1;
    let name = path.rsplit('/').next().unwrap_or(&path).to_string();
    let blob_sha = format!("{:0>40}", content.len());
    Ok(Json(json!({
        "type": "file",
        "encoding": "base64",
        "size": content.len(),
        "name": name,
        "path": path,
        "content": wrapped.join("\n") + "\n",
        "sha": blob_sha,
        "url": format!("{base}/repos/{full}/contents/{path}?ref={reference}"),
        "git_url": format!("{base}/repos/{full}/git/blobs/{blob_sha}"),
        "html_url": format!("https://github.com/{full}/blob/{reference}/{path}"),
        "download_url": format!("https://raw.githubusercontent.com/{full}/{reference}/{path}"),
        "_links": {
            "git": format!("{base}/repos/{full}/git/blobs/{blob_sha}"),
            "self": format!("{base}/repos/{full}/contents/{path}?ref={reference}"),
            "html": format!("https://github.com/{full}/blob/{reference}/{path}")
        }
    })))
}

async fn commit(
    State(state): State<DoubleState>,
    Path((owner, repo, reference)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    let full = format!("{owner}/{repo}");
    let dir = enter(
        &state,
        "GET",
        format!("/repos/{full}/commits/{reference}"),
        &headers,
        None,
        &full,
    )?;
    let asked = reference.clone();
    let sha = off_runtime(move || Repo::resolve(&dir, &asked))
        .await
        .ok_or_else(|| {
        (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"message": format!("No commit found for SHA: {reference}"), "documentation_url": "https://docs.github.com/rest/commits/commits#get-a-commit"})))
    })?;
    let base = &state.1;
    let person = json!({"name": "Gantry Test", "email": "test@gantry.local", "date": "2026-01-01T00:00:00Z"});
    Ok(Json(json!({
        "url": format!("{base}/repos/{full}/commits/{sha}"),
        "sha": sha,
        "node_id": "C_kwDOAAAAAA",
        "html_url": format!("https://github.com/{full}/commit/{sha}"),
        "comments_url": format!("{base}/repos/{full}/commits/{sha}/comments"),
        "commit": {
            "url": format!("{base}/repos/{full}/git/commits/{sha}"),
            "author": person, "committer": person,
            "message": "commit", "comment_count": 0,
            "tree": {"sha": sha, "url": format!("{base}/repos/{full}/git/trees/{sha}")}
        },
        "author": null, "committer": null, "parents": []
    })))
}

async fn status(
    State(state): State<DoubleState>,
    Path((owner, repo, sha)): Path<(String, String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<(StatusCode, Json<Value>), (StatusCode, Json<Value>)> {
    let full = format!("{owner}/{repo}");
    let latency = state
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .status_latency;
    tokio::time::sleep(latency).await;
    enter(
        &state,
        "POST",
        format!("/repos/{full}/statuses/{sha}"),
        &headers,
        Some(body.clone()),
        &full,
    )?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": 1, "node_id": "SC_kwDOAAAAAA", "state": body["state"], "description": body["description"],
            "target_url": body["target_url"], "context": body.get("context").cloned().unwrap_or(json!("default")),
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "url": format!("{}/repos/{full}/statuses/{sha}", state.1)
        })),
    ))
}

fn user_of(inner: &Inner, headers: &HeaderMap) -> Option<String> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let token = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("token "))?;
    inner.oauth.tokens.get(token).cloned()
}

/// `GET /login/oauth/authorize`: the signed-in browser approves and is sent back with a code.
async fn authorize(
    State(state): State<DoubleState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<(StatusCode, [(axum::http::HeaderName, String); 1]), (StatusCode, Json<Value>)> {
    let mut inner = state.0.lock().unwrap_or_else(|e| e.into_inner());
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    if get("client_id") != inner.oauth.client_id || inner.oauth.client_id.is_empty() {
        return Err(not_found());
    }
    let Some(login) = inner.oauth.browser_user.clone() else {
        return Err((
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "not signed in to GitHub"})),
        ));
    };
    let code = hex::encode(rand::random::<[u8; 10]>());
    inner.oauth.codes.insert(code.clone(), login);
    let location = format!("{}?code={code}&state={}", get("redirect_uri"), get("state"));
    Ok((
        StatusCode::FOUND,
        [(axum::http::header::LOCATION, location)],
    ))
}

/// `POST /login/oauth/access_token`: a code for a token (GitHub answers 200 even for errors).
async fn oauth_token(State(state): State<DoubleState>, Json(body): Json<Value>) -> Json<Value> {
    let mut inner = state.0.lock().unwrap_or_else(|e| e.into_inner());
    let ok_client = body["client_id"] == inner.oauth.client_id.as_str()
        && body["client_secret"] == inner.oauth.client_secret.as_str();
    let code = body["code"].as_str().unwrap_or("").to_string();
    match inner.oauth.codes.remove(&code).filter(|_| ok_client) {
        Some(login) => {
            let token = format!("gho_{}", hex::encode(rand::random::<[u8; 18]>()));
            inner.oauth.tokens.insert(token.clone(), login);
            Json(json!({"access_token": token, "token_type": "bearer", "scope": "repo"}))
        }
        None => Json(json!({
            "error": "bad_verification_code",
            "error_description": "The code passed is incorrect or expired.",
            "error_uri": "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#bad-verification-code"
        })),
    }
}

/// `GET /user` with a user's token.
async fn user(
    State(state): State<DoubleState>,
    headers: HeaderMap,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    let inner = state.0.lock().unwrap_or_else(|e| e.into_inner());
    let login = user_of(&inner, &headers).ok_or_else(bad_credentials)?;
    Ok(Json(
        json!({"login": login, "id": 583231, "node_id": "MDQ6VXNlcjU4MzIzMQ==", "type": "User", "site_admin": false, "name": login}),
    ))
}

/// `GET /repos/{owner}/{repo}`: with a user's token, the repository with
/// the user's `permissions`; with the server's token or an App's
/// installation token, the repository alone.
async fn repository(
    State(state): State<DoubleState>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    let full = format!("{owner}/{repo}");
    let user = user_of(&state.0.lock().unwrap_or_else(|e| e.into_inner()), &headers);
    let Some(login) = user else {
        enter(
            &state,
            "GET",
            format!("/repos/{full}"),
            &headers,
            None,
            &full,
        )?;
        let inner = state.0.lock().unwrap_or_else(|e| e.into_inner());
        return Ok(Json(json!({
            "id": 1296269,
            "name": repo,
            "full_name": full,
            "owner": {"login": owner},
            "private": inner.private.contains(&full),
            "default_branch": "master",
        })));
    };
    let inner = state.0.lock().unwrap_or_else(|e| e.into_inner());
    if !inner.repos.contains_key(&full) {
        return Err(not_found());
    }
    let level = inner
        .oauth
        .permissions
        .get(&(login, full.clone()))
        .cloned()
        .unwrap_or_else(|| "pull".into());
    // GitHub hides a private repository from users without access.
    if level == "none" {
        return Err(not_found());
    }
    let rank = |l: &str| match l {
        "admin" => 3,
        "push" => 2,
        _ => 1,
    };
    let have = rank(&level);
    Ok(Json(json!({
        "id": 1296269,
        "name": repo,
        "full_name": full,
        "private": inner.private.contains(&full),
        "default_branch": "master",
        "permissions": {"admin": have >= 3, "maintain": have >= 3, "push": have >= 2, "triage": have >= 2, "pull": true}
    })))
}
