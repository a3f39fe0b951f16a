//! A stand-in for npm's registry (no registry can be installed here: they
//! come from npm itself), speaking its wire format: `PUT /NAME` takes a
//! publish document (a bearer token, no version published twice, the
//! attachment's SHA-1 checked against `dist.shasum`, as the registry does),
//! `GET /NAME` serves the packument and `GET /NAME/-/FILE.tgz` the tarball —
//! enough for the real npm client to install what was published.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Inner {
    token: String,
    url: String,
    /// name → packument.
    packages: HashMap<String, Value>,
    /// file name → tarball.
    tarballs: HashMap<String, Vec<u8>>,
}

type Shared = Arc<Mutex<Inner>>;

pub struct NpmRegistry {
    shared: Shared,
    url: String,
    _server: tokio::task::JoinHandle<()>,
}

impl NpmRegistry {
    /// A registry that takes publishes with `token` only.
    pub async fn start(token: &str) -> NpmRegistry {
        let shared: Shared = Arc::new(Mutex::new(Inner {
            token: token.to_string(),
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/{name}", axum::routing::put(publish).get(packument))
            .route("/{scope}/{name}", axum::routing::get(scoped_packument))
            .route("/{name}/-/{file}", axum::routing::get(tarball))
            .route(
                "/{scope}/{name}/-/{file}",
                axum::routing::get(scoped_tarball),
            )
            .with_state(shared.clone());
        let (url, server) = crate::serve(app).await;
        shared.lock().expect("lock").url = url.clone();
        NpmRegistry {
            shared,
            url,
            _server: server,
        }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The packument of `name`, as `npm view` reads it.
    pub fn package(&self, name: &str) -> Option<Value> {
        self.shared
            .lock()
            .expect("lock")
            .packages
            .get(name)
            .cloned()
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

async fn publish(
    State(shared): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inner = shared.lock().expect("lock");
    let bearer = format!("Bearer {}", inner.token);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(bearer.as_str()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "You must be logged in to publish packages.",
        );
    }
    let Ok(doc) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "the body is not JSON");
    };
    if doc["name"] != json!(name) {
        return error(
            StatusCode::BAD_REQUEST,
            "the document names another package",
        );
    }
    let (Some(versions), Some(attachments)) =
        (doc["versions"].as_object(), doc["_attachments"].as_object())
    else {
        return error(StatusCode::BAD_REQUEST, "no versions or _attachments");
    };
    let existing = inner.packages.get(&name).cloned();
    for version in versions.keys() {
        if existing
            .as_ref()
            .is_some_and(|p| p["versions"].get(version).is_some())
        {
            return error(
                StatusCode::FORBIDDEN,
                &format!("You cannot publish over the previously published versions: {version}."),
            );
        }
    }
    let mut files = Vec::new();
    for (version, manifest) in versions {
        let Some((_, attachment)) = attachments.iter().next() else {
            return error(StatusCode::BAD_REQUEST, "no attachment");
        };
        let Some(data) = attachment["data"]
            .as_str()
            .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        else {
            return error(StatusCode::BAD_REQUEST, "the attachment is not base64");
        };
        if attachment["length"].as_u64() != Some(data.len() as u64) {
            return error(StatusCode::BAD_REQUEST, "the attachment's length is wrong");
        }
        if manifest["dist"]["shasum"].as_str() != Some(hex::encode(Sha1::digest(&data)).as_str()) {
            return error(StatusCode::BAD_REQUEST, "shasum mismatch");
        }
        let basename = name.rsplit('/').next().unwrap_or(&name);
        files.push((version.clone(), format!("{basename}-{version}.tgz"), data));
    }
    let url = inner.url.clone();
    let mut packument = existing
        .unwrap_or_else(|| json!({ "_id": name, "name": name, "dist-tags": {}, "versions": {} }));
    for (version, file, data) in files {
        let mut manifest = versions[&version].clone();
        manifest["dist"]["tarball"] = json!(format!("{url}/{name}/-/{file}"));
        packument["versions"][&version] = manifest;
        inner.tarballs.insert(format!("{name}/{file}"), data);
    }
    if let Some(tags) = doc["dist-tags"].as_object() {
        for (tag, version) in tags {
            packument["dist-tags"][tag] = version.clone();
        }
    }
    inner.packages.insert(name, packument);
    (StatusCode::OK, axum::Json(json!({ "ok": true }))).into_response()
}

async fn packument(State(shared): State<Shared>, Path(name): Path<String>) -> Response {
    match shared.lock().expect("lock").packages.get(&name) {
        Some(p) => axum::Json(p.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, "Not found"),
    }
}

async fn scoped_packument(
    state: State<Shared>,
    Path((scope, name)): Path<(String, String)>,
) -> Response {
    packument(state, Path(format!("{scope}/{name}"))).await
}

async fn tarball(
    State(shared): State<Shared>,
    Path((name, file)): Path<(String, String)>,
) -> Response {
    match shared
        .lock()
        .expect("lock")
        .tarballs
        .get(&format!("{name}/{file}"))
    {
        Some(bytes) => (
            [("content-type", "application/octet-stream")],
            bytes.clone(),
        )
            .into_response(),
        None => error(StatusCode::NOT_FOUND, "Not found"),
    }
}

async fn scoped_tarball(
    state: State<Shared>,
    Path((scope, name, file)): Path<(String, String, String)>,
) -> Response {
    tarball(state, Path((format!("{scope}/{name}"), file))).await
}
