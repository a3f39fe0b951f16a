//! A local double of the GitHub REST API endpoints Gantry calls, faithful to
//! GitHub's JSON: contents (`GET /repos/{o}/{r}/contents/{path}?ref=`),
//! commits (`GET /repos/{o}/{r}/commits/{ref}`) and statuses
//! (`POST /repos/{o}/{r}/statuses/{sha}`). Files come from real git
//! repositories on disk; every request is recorded.

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

#[derive(Default)]
struct Inner {
    repos: HashMap<String, PathBuf>,
    requests: Vec<Recorded>,
    /// Answer this many requests with this status before serving normally.
    failures: Option<(u32, u16)>,
}

#[derive(Clone)]
pub struct GitHubDouble {
    inner: Arc<Mutex<Inner>>,
    pub url: String,
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
        let inner = Arc::new(Mutex::new(Inner::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = (inner.clone(), url.clone());
        let app = Router::new()
            .route("/repos/{owner}/{repo}/contents/{*path}", get(contents))
            .route("/repos/{owner}/{repo}/commits/{reference}", get(commit))
            .route("/repos/{owner}/{repo}/statuses/{sha}", post(status))
            .with_state(state);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        GitHubDouble { inner, url }
    }

    /// Serves `full_name` (`owner/name`) from the repository at `path`.
    pub fn add_repo(&self, full_name: &str, path: PathBuf) {
        self.lock().repos.insert(full_name.to_string(), path);
    }

    /// The next `count` requests get `status` (e.g. 502), as during an outage.
    pub fn fail_next(&self, count: u32, status: u16) {
        self.lock().failures = Some((count, status));
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type DoubleState = (Arc<Mutex<Inner>>, String);

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
        authorization,
        body,
        failed,
    });
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
    let commit = Repo::resolve(&dir, &reference).ok_or_else(not_found)?;
    let content = Repo::show(&dir, &commit, &path).ok_or_else(not_found)?;
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
    let sha = Repo::resolve(&dir, &reference).ok_or_else(|| {
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
