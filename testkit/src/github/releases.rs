//! GitHub Releases in the double, as the REST API answers them: list
//! (drafts included for a token with push access), create, update, delete
//! an asset, and the upload of an asset to the release's `upload_url`
//! (uploads.github.com on GitHub; a path of the double here). A name or tag
//! taken twice is GitHub's 422 `already_exists`; a wrong token is 401.

use super::{enter, DoubleState, GitHubDouble};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;

/// A release as the test reads it back.
#[derive(Debug, Clone)]
pub struct Release {
    pub id: u64,
    pub repo: String,
    pub tag_name: String,
    pub name: String,
    pub body: Option<String>,
    pub draft: bool,
    pub prerelease: bool,
    pub target_commitish: String,
    pub assets: Vec<Asset>,
}

#[derive(Debug, Clone)]
pub struct Asset {
    pub id: u64,
    pub name: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

#[derive(Default)]
pub(super) struct Releases {
    /// The token allowed to write releases (none: every call is refused).
    token: Option<String>,
    list: Vec<Release>,
    next_id: u64,
}

type Answer<T> = Result<T, (StatusCode, Json<Value>)>;

/// Up to 64 MiB per asset (GitHub takes 2 GiB).
const ASSET_LIMIT: usize = 64 << 20;

pub(super) fn routes() -> Router<DoubleState> {
    Router::new()
        .route("/repos/{owner}/{repo}/releases", get(list).post(create))
        .route("/repos/{owner}/{repo}/releases/{id}", patch(update))
        .route(
            "/repos/{owner}/{repo}/releases/assets/{id}",
            axum::routing::delete(delete_asset),
        )
        .route(
            "/uploads/repos/{owner}/{repo}/releases/{id}/assets",
            post(upload).layer(axum::extract::DefaultBodyLimit::max(ASSET_LIMIT)),
        )
}

impl GitHubDouble {
    /// Release calls need `token` (as `Bearer` or `token`), as a token with
    /// `contents: write` on every repository the double serves.
    pub fn allow_release_token(&self, token: &str) {
        self.lock().releases.token = Some(token.into());
    }

    /// The releases of `full_name`, oldest first.
    pub fn releases(&self, full_name: &str) -> Vec<Release> {
        self.lock()
            .releases
            .list
            .iter()
            .filter(|r| r.repo == full_name)
            .cloned()
            .collect()
    }
}

fn validation_failed(resource: &str, field: &str) -> (StatusCode, Json<Value>) {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({
            "message": "Validation Failed",
            "errors": [{"resource": resource, "code": "already_exists", "field": field}],
            "documentation_url": "https://docs.github.com/rest/releases/releases#create-a-release",
            "status": "422"
        })),
    )
}

/// Records the call (see [`enter`]) and checks the token.
fn authorized(
    state: &DoubleState,
    method: &str,
    path: String,
    headers: &HeaderMap,
    body: Option<Value>,
    full: &str,
) -> Answer<()> {
    enter(state, method, path, headers, body, full)?;
    let inner = state.0.lock().unwrap_or_else(|e| e.into_inner());
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| {
            a.strip_prefix("Bearer ")
                .or_else(|| a.strip_prefix("token "))
        });
    match (&inner.releases.token, given) {
        (Some(allowed), Some(given)) if allowed == given => Ok(()),
        _ => Err(super::bad_credentials()),
    }
}

fn release_json(base: &str, r: &Release) -> Value {
    let api = format!("{base}/repos/{}/releases/{}", r.repo, r.id);
    json!({
        "url": api,
        "html_url": format!("https://github.com/{}/releases/tag/{}", r.repo, r.tag_name),
        "assets_url": format!("{api}/assets"),
        "upload_url": format!("{base}/uploads/repos/{}/releases/{}/assets{{?name,label}}", r.repo, r.id),
        "tarball_url": format!("{base}/repos/{}/tarball/{}", r.repo, r.tag_name),
        "zipball_url": format!("{base}/repos/{}/zipball/{}", r.repo, r.tag_name),
        "id": r.id,
        "node_id": format!("RE_{}", r.id),
        "tag_name": r.tag_name,
        "target_commitish": r.target_commitish,
        "name": r.name,
        "body": r.body,
        "draft": r.draft,
        "prerelease": r.prerelease,
        "created_at": "2026-12-01T00:00:00Z",
        "published_at": if r.draft { Value::Null } else { json!("2026-12-01T00:00:00Z") },
        "author": {"login": "octocat", "id": 1, "type": "User", "site_admin": false},
        "assets": r.assets.iter().map(|a| asset_json(base, r, a)).collect::<Vec<_>>(),
    })
}

fn asset_json(base: &str, r: &Release, a: &Asset) -> Value {
    json!({
        "url": format!("{base}/repos/{}/releases/assets/{}", r.repo, a.id),
        "browser_download_url": format!("https://github.com/{}/releases/download/{}/{}", r.repo, r.tag_name, a.name),
        "id": a.id,
        "node_id": format!("RA_{}", a.id),
        "name": a.name,
        "label": "",
        "state": "uploaded",
        "content_type": a.content_type,
        "size": a.data.len(),
        "download_count": 0,
        "created_at": "2026-12-01T00:00:00Z",
        "updated_at": "2026-12-01T00:00:00Z",
        "uploader": {"login": "octocat", "id": 1, "type": "User", "site_admin": false},
    })
}

/// `GET /repos/{o}/{r}/releases?per_page=&page=`: newest first.
async fn list(
    State(state): State<DoubleState>,
    Path((owner, repo)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Answer<Json<Value>> {
    let full = format!("{owner}/{repo}");
    authorized(
        &state,
        "GET",
        format!("/repos/{full}/releases"),
        &headers,
        None,
        &full,
    )?;
    let per_page: usize = q
        .get("per_page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page: usize = q
        .get("page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let inner = state.0.lock().unwrap_or_else(|e| e.into_inner());
    let listed: Vec<Value> = inner
        .releases
        .list
        .iter()
        .rev()
        .filter(|r| r.repo == full)
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|r| release_json(&state.1, r))
        .collect();
    Ok(Json(Value::Array(listed)))
}

/// `POST /repos/{o}/{r}/releases`.
async fn create(
    State(state): State<DoubleState>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer<(StatusCode, Json<Value>)> {
    let full = format!("{owner}/{repo}");
    authorized(
        &state,
        "POST",
        format!("/repos/{full}/releases"),
        &headers,
        Some(body.clone()),
        &full,
    )?;
    let Some(tag) = body["tag_name"].as_str().filter(|t| !t.is_empty()) else {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(
                json!({"message": "Validation Failed", "errors": [{"resource": "Release", "code": "missing_field", "field": "tag_name"}]}),
            ),
        ));
    };
    let mut inner = state.0.lock().unwrap_or_else(|e| e.into_inner());
    if inner
        .releases
        .list
        .iter()
        .any(|r| r.repo == full && r.tag_name == tag)
    {
        return Err(validation_failed("Release", "tag_name"));
    }
    inner.releases.next_id += 1;
    let release = Release {
        id: inner.releases.next_id,
        repo: full,
        tag_name: tag.to_string(),
        name: body["name"].as_str().unwrap_or(tag).to_string(),
        body: body["body"].as_str().map(str::to_string),
        draft: body["draft"].as_bool().unwrap_or(false),
        prerelease: body["prerelease"].as_bool().unwrap_or(false),
        target_commitish: body["target_commitish"]
            .as_str()
            .unwrap_or("main")
            .to_string(),
        assets: Vec::new(),
    };
    let answer = release_json(&state.1, &release);
    inner.releases.list.push(release);
    Ok((StatusCode::CREATED, Json(answer)))
}

/// `PATCH /repos/{o}/{r}/releases/{id}`.
async fn update(
    State(state): State<DoubleState>,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer<Json<Value>> {
    let full = format!("{owner}/{repo}");
    authorized(
        &state,
        "PATCH",
        format!("/repos/{full}/releases/{id}"),
        &headers,
        Some(body.clone()),
        &full,
    )?;
    let mut inner = state.0.lock().unwrap_or_else(|e| e.into_inner());
    let release = inner
        .releases
        .list
        .iter_mut()
        .find(|r| r.repo == full && r.id == id)
        .ok_or_else(super::not_found)?;
    if let Some(v) = body["name"].as_str() {
        release.name = v.to_string();
    }
    if let Some(v) = body["body"].as_str() {
        release.body = Some(v.to_string());
    }
    if let Some(v) = body["draft"].as_bool() {
        release.draft = v;
    }
    if let Some(v) = body["prerelease"].as_bool() {
        release.prerelease = v;
    }
    let answer = release_json(&state.1, release);
    Ok(Json(answer))
}

/// `DELETE /repos/{o}/{r}/releases/assets/{id}`.
async fn delete_asset(
    State(state): State<DoubleState>,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Answer<StatusCode> {
    let full = format!("{owner}/{repo}");
    authorized(
        &state,
        "DELETE",
        format!("/repos/{full}/releases/assets/{id}"),
        &headers,
        None,
        &full,
    )?;
    let mut inner = state.0.lock().unwrap_or_else(|e| e.into_inner());
    for release in inner.releases.list.iter_mut().filter(|r| r.repo == full) {
        if let Some(at) = release.assets.iter().position(|a| a.id == id) {
            release.assets.remove(at);
            return Ok(StatusCode::NO_CONTENT);
        }
    }
    Err(super::not_found())
}

/// `POST {upload_url}?name=`: the body is the file, as it is.
async fn upload(
    State(state): State<DoubleState>,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    data: Bytes,
) -> Answer<(StatusCode, Json<Value>)> {
    let full = format!("{owner}/{repo}");
    let name = q.get("name").cloned().unwrap_or_default();
    authorized(
        &state,
        "POST",
        format!("/uploads/repos/{full}/releases/{id}/assets?name={name}"),
        &headers,
        None,
        &full,
    )?;
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if name.is_empty() || content_type.is_empty() {
        return Err((
            StatusCode::BAD_REQUEST,
            Json(json!({"message": "Bad Content-Type or name", "status": "400"})),
        ));
    }
    let mut inner = state.0.lock().unwrap_or_else(|e| e.into_inner());
    inner.releases.next_id += 1;
    let asset_id = inner.releases.next_id;
    let release = inner
        .releases
        .list
        .iter_mut()
        .find(|r| r.repo == full && r.id == id)
        .ok_or_else(super::not_found)?;
    if release.assets.iter().any(|a| a.name == name) {
        return Err(validation_failed("ReleaseAsset", "name"));
    }
    let asset = Asset {
        id: asset_id,
        name,
        content_type,
        data: data.to_vec(),
    };
    let answer = asset_json(&state.1, release, &asset);
    release.assets.push(asset);
    Ok((StatusCode::CREATED, Json(answer)))
}
