//! A stand-in for Heroku (its Platform API cannot be reached from here),
//! speaking the wire format dpl and the Heroku CLI use: version 3 JSON with
//! a bearer key and Heroku's error objects (`{"id", "message"}`), `/sources`
//! handing out a signed PUT and GET URL for the source tarball (refusing an
//! upload with a content type or without a length, as S3 does for such a
//! URL), builds that fetch that tarball, detect a buildpack from its files
//! as Heroku's do, stream their output at `output_stream_url` and end
//! `succeeded` (a release of the app) or `failed`, and one-off dynos
//! reached over the rendezvous protocol: TLS, the secret as the first
//! line, `rendezvous` back, then the command's output. A dyno runs its
//! command with `sh` in the app's released source, and ends when its
//! client disconnects, as Heroku's attached one-off dynos do.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// A release of an app: what a build made live.
#[derive(Debug, Clone)]
pub struct Release {
    pub version: u32,
    /// The build's `source_blob.version` (the commit).
    pub commit: String,
    /// The source's files, `./`-relative, sorted.
    pub files: Vec<String>,
}

#[derive(Default)]
struct App {
    releases: Vec<Release>,
    /// The released source, where one-off dynos run.
    slug: Option<tempfile::TempDir>,
    restarts: u32,
    runs: Vec<String>,
    /// How many one-off dynos are running now (attached, command not ended).
    running: u32,
    /// Commands whose dyno was stopped because its client went away.
    stopped: Vec<String>,
}

struct Build {
    app: String,
    status: &'static str,
    output: Vec<String>,
}

#[derive(Default)]
struct Inner {
    key: String,
    email: String,
    url: String,
    rendezvous: String,
    apps: HashMap<String, App>,
    /// Blob id → the uploaded tarball, once PUT.
    blobs: HashMap<String, Option<Vec<u8>>>,
    builds: HashMap<String, Build>,
    /// Rendezvous secret → (app, command).
    dynos: HashMap<String, (String, String)>,
    next: u64,
}

impl Inner {
    fn id(&mut self) -> String {
        self.next += 1;
        format!("01234567-89ab-cdef-0123-{:012x}", self.next)
    }
}

type Shared = Arc<Mutex<Inner>>;

pub struct HerokuDouble {
    shared: Shared,
    url: String,
    /// The authority the rendezvous certificate is signed by (DER).
    pub ca: Vec<u8>,
    _server: tokio::task::JoinHandle<()>,
    _rendezvous: tokio::task::JoinHandle<()>,
}

impl HerokuDouble {
    /// Heroku with the account of `email`, who owns `apps`, and its `key`.
    pub async fn start(key: &str, email: &str, apps: &[&str]) -> HerokuDouble {
        let shared: Shared = Arc::new(Mutex::new(Inner {
            key: key.to_string(),
            email: email.to_string(),
            apps: apps
                .iter()
                .map(|a| (a.to_string(), App::default()))
                .collect(),
            ..Inner::default()
        }));
        // The API wants the key; the signed blob URLs and the output
        // stream are reached without it, as Heroku's are.
        let api = Router::new()
            .route("/account", axum::routing::get(account))
            .route("/apps/{app}", axum::routing::get(app_info))
            .route("/sources", axum::routing::post(sources))
            .route("/apps/{app}/builds", axum::routing::post(create_build))
            .route("/apps/{app}/builds/{id}", axum::routing::get(build_info))
            .route(
                "/apps/{app}/dynos",
                axum::routing::post(create_dyno).delete(restart),
            )
            .route_layer(axum::middleware::from_fn_with_state(
                shared.clone(),
                authorized,
            ));
        let app = Router::new()
            .route("/blobs/{id}", axum::routing::put(put_blob).get(get_blob))
            .route("/streams/{id}", axum::routing::get(stream))
            .merge(api)
            .with_state(shared.clone());
        let (url, server) = crate::serve(app).await;
        let (listener, tls_url, ca) = crate::tls::bind_tls().await;
        let rendezvous = tls_url.replacen("https://", "rendezvous://", 1);
        {
            let mut inner = shared.lock().expect("lock");
            inner.url = url.clone();
            inner.rendezvous = rendezvous;
        }
        let dynos = tokio::spawn(serve_rendezvous(listener, shared.clone()));
        HerokuDouble {
            shared,
            url,
            ca,
            _server: server,
            _rendezvous: dynos,
        }
    }

    /// The API's URL, for `api_url:`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// What `read` makes of an app's state; the default for an unknown app.
    fn app<T: Default>(&self, app: &str, read: impl FnOnce(&App) -> T) -> T {
        let inner = self.shared.lock().expect("lock");
        inner.apps.get(app).map(read).unwrap_or_default()
    }

    pub fn releases(&self, app: &str) -> Vec<Release> {
        self.app(app, |a| a.releases.clone())
    }

    pub fn restarts(&self, app: &str) -> u32 {
        self.app(app, |a| a.restarts)
    }

    /// The commands one-off dynos of `app` were asked to run, as sent.
    pub fn runs(&self, app: &str) -> Vec<String> {
        self.app(app, |a| a.runs.clone())
    }

    /// How many one-off dynos of `app` run a command now.
    pub fn running(&self, app: &str) -> u32 {
        self.app(app, |a| a.running)
    }

    /// The commands of `app`'s dynos that were stopped because their
    /// client disconnected before the command ended.
    pub fn stopped(&self, app: &str) -> Vec<String> {
        self.app(app, |a| a.stopped.clone())
    }
}

fn error(status: StatusCode, id: &str, message: &str) -> Response {
    (status, axum::Json(json!({ "id": id, "message": message }))).into_response()
}

/// The API version and the bearer key, checked as Heroku checks them.
async fn authorized(
    State(shared): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match refusal(&shared, request.headers()) {
        Some(refused) => refused,
        None => next.run(request).await,
    }
}

/// Heroku's answer to a request without the API version or the key.
fn refusal(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let accept = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !accept.contains("application/vnd.heroku+json; version=3") {
        return Some(error(
            StatusCode::NOT_FOUND,
            "not_found",
            "The requested API endpoint was not found. Are you using the right HTTP verb (i.e. `GET` vs. `POST`), and did you specify your intended version with the `Accept` header?",
        ));
    }
    let key = shared.lock().expect("lock").key.clone();
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given != Some(key.as_str()) {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Invalid credentials provided.",
        ));
    }
    None
}

fn no_app() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "Couldn't find that app.",
    )
}

async fn account(State(shared): State<Shared>) -> Response {
    let email = shared.lock().expect("lock").email.clone();
    axum::Json(json!({ "email": email, "id": "acc-1" })).into_response()
}

async fn app_info(State(shared): State<Shared>, Path(app): Path<String>) -> Response {
    if !shared.lock().expect("lock").apps.contains_key(&app) {
        return no_app();
    }
    axum::Json(json!({ "name": app, "web_url": format!("https://{app}.herokuapp.com/") }))
        .into_response()
}

async fn sources(State(shared): State<Shared>) -> Response {
    let mut inner = shared.lock().expect("lock");
    let id = inner.id();
    inner.blobs.insert(id.clone(), None);
    let blob = format!("{}/blobs/{id}?Signature=signed", inner.url);
    axum::Json(json!({ "source_blob": { "get_url": blob, "put_url": blob } })).into_response()
}

/// S3's answer to a signed URL used otherwise than signed.
fn s3_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [("content-type", "application/xml")],
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"),
    )
        .into_response()
}

async fn put_blob(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if headers.contains_key("content-type") {
        return s3_error(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        );
    }
    if !headers.contains_key("content-length") {
        return s3_error(
            StatusCode::LENGTH_REQUIRED,
            "MissingContentLength",
            "You must provide the Content-Length HTTP header.",
        );
    }
    let mut inner = shared.lock().expect("lock");
    match inner.blobs.get_mut(&id) {
        Some(blob) => {
            *blob = Some(body.to_vec());
            StatusCode::OK.into_response()
        }
        None => s3_error(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        ),
    }
}

async fn get_blob(State(shared): State<Shared>, Path(id): Path<String>) -> Response {
    let inner = shared.lock().expect("lock");
    match inner.blobs.get(&id) {
        Some(Some(bytes)) => bytes.clone().into_response(),
        _ => s3_error(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        ),
    }
}

async fn create_build(
    State(shared): State<Shared>,
    Path(app): Path<String>,
    body: Bytes,
) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let url = request["source_blob"]["url"].as_str().unwrap_or("");
    let commit = request["source_blob"]["version"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let mut inner = shared.lock().expect("lock");
    if !inner.apps.contains_key(&app) {
        return no_app();
    }
    // Heroku fetches the URL; here it is one of this stand-in's blobs.
    let prefix = format!("{}/blobs/", inner.url);
    let source = url
        .strip_prefix(&prefix)
        .and_then(|rest| rest.split('?').next())
        .and_then(|id| inner.blobs.get(id).cloned().flatten());
    let id = inner.id();
    inner.builds.insert(
        id.clone(),
        Build {
            app: app.clone(),
            status: "pending",
            output: Vec::new(),
        },
    );
    let answer = json!({
        "id": id,
        "status": "pending",
        "app": { "name": app },
        "source_blob": { "url": url, "version": commit },
        "output_stream_url": format!("{}/streams/{id}", inner.url),
    });
    drop(inner);
    tokio::spawn(run_build(shared.clone(), id, app, commit, source));
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}

/// A build: the source unpacked, a buildpack detected from its files as
/// Heroku's own detect them, its output written line by line (a pause
/// between, so a client reads it as it comes), then the release.
async fn run_build(
    shared: Shared,
    id: String,
    app: String,
    commit: String,
    source: Option<Vec<u8>>,
) {
    let say = |line: &str| {
        if let Some(build) = shared.lock().expect("lock").builds.get_mut(&id) {
            build.output.push(line.to_string());
        }
    };
    let finish = |status: &'static str| {
        if let Some(build) = shared.lock().expect("lock").builds.get_mut(&id) {
            build.status = status;
        }
    };
    let unpacked = source.and_then(|bytes| {
        let dir = tempfile::tempdir().ok()?;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        archive.set_preserve_permissions(true);
        archive.unpack(dir.path()).ok()?;
        Some(dir)
    });
    let Some(dir) = unpacked else {
        say(" !     Unable to fetch source: the source blob is not a tar.gz archive");
        finish("failed");
        return;
    };
    let has = |name: &str| dir.path().join(name).exists();
    let language = if has("Gemfile") {
        Some("Ruby")
    } else if has("package.json") {
        Some("Node.js")
    } else if has("requirements.txt") || has("setup.py") || has("Pipfile") {
        Some("Python")
    } else {
        None
    };
    let step = || tokio::time::sleep(Duration::from_millis(40));
    say("-----> Building on the Heroku-22 stack");
    step().await;
    let Some(language) = language else {
        say(" !     No default language could be detected for this app.");
        say("\t\t\tHINT: This occurs when Heroku cannot detect the buildpack to use for this application automatically.");
        say(" !     Push failed");
        finish("failed");
        return;
    };
    say(&format!("-----> {language} app detected"));
    step().await;
    say("-----> Compressing...");
    step().await;
    say("-----> Launching...");
    let files = source_files(dir.path());
    let version = {
        let mut inner = shared.lock().expect("lock");
        let Some(state) = inner.apps.get_mut(&app) else {
            return;
        };
        let version = state.releases.len() as u32 + 1;
        state.releases.push(Release {
            version,
            commit,
            files,
        });
        state.slug = Some(dir);
        version
    };
    say(&format!("       Released v{version}"));
    say(&format!(
        "       https://{app}.herokuapp.com/ deployed to Heroku"
    ));
    finish("succeeded");
}

fn source_files(dir: &std::path::Path) -> Vec<String> {
    fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let relative = path.strip_prefix(root).unwrap_or(&path).display();
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => walk(root, &path, out),
                Ok(_) => out.push(format!("./{relative}")),
                Err(_) => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

async fn build_info(
    State(shared): State<Shared>,
    Path((app, id)): Path<(String, String)>,
) -> Response {
    let inner = shared.lock().expect("lock");
    match inner.builds.get(&id).filter(|b| b.app == app) {
        Some(build) => axum::Json(json!({ "id": id, "status": build.status })).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "Couldn't find that build.",
        ),
    }
}

/// The build's output as it is written, ending with the build.
async fn stream(State(shared): State<Shared>, Path(id): Path<String>) -> Response {
    if !shared.lock().expect("lock").builds.contains_key(&id) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let lines = futures::stream::unfold(
        (shared, id, 0usize, false),
        |(shared, id, sent, over)| async move {
            if over {
                return None;
            }
            loop {
                let (new, done) = {
                    let inner = shared.lock().expect("lock");
                    let build = inner.builds.get(&id)?;
                    (build.output[sent..].to_vec(), build.status != "pending")
                };
                if !new.is_empty() || done {
                    let count = sent + new.len();
                    let text: String = new.iter().map(|l| format!("{l}\n")).collect();
                    return Some((
                        Ok::<_, std::io::Error>(Bytes::from(text)),
                        (shared, id, count, done),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        },
    );
    Body::from_stream(lines).into_response()
}

async fn restart(State(shared): State<Shared>, Path(app): Path<String>) -> Response {
    let mut inner = shared.lock().expect("lock");
    match inner.apps.get_mut(&app) {
        Some(state) => {
            state.restarts += 1;
            (StatusCode::ACCEPTED, axum::Json(json!([]))).into_response()
        }
        None => no_app(),
    }
}

async fn create_dyno(
    State(shared): State<Shared>,
    Path(app): Path<String>,
    body: Bytes,
) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(command) = request["command"].as_str().map(str::to_string) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_params",
            "Missing required params: command.",
        );
    };
    let mut inner = shared.lock().expect("lock");
    let Some(state) = inner.apps.get_mut(&app) else {
        return no_app();
    };
    state.runs.push(command.clone());
    let secret = format!("secret-{}", inner.id());
    let attach_url = format!("{}/{secret}", inner.rendezvous);
    inner.dynos.insert(secret, (app, command.clone()));
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "attach_url": attach_url,
            "command": command,
            "name": "run.1234",
            "state": "starting",
            "type": "run",
        })),
    )
        .into_response()
}

/// The rendezvous side of one-off dynos: the secret's line, `rendezvous`
/// back, then the command's output, run in the app's released source.
async fn serve_rendezvous(mut listener: crate::tls::TlsListener, shared: Shared) {
    use axum::serve::Listener;
    loop {
        let (tls, _) = listener.accept().await;
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut tls = tokio::io::BufReader::new(tls);
            let mut secret = String::new();
            if tls.read_line(&mut secret).await.is_err() {
                return;
            }
            let found = shared.lock().expect("lock").dynos.remove(secret.trim());
            let Some((app, command)) = found else {
                return;
            };
            let slug = shared
                .lock()
                .expect("lock")
                .apps
                .get(&app)
                .and_then(|a| a.slug.as_ref().map(|d| d.path().to_path_buf()));
            let mut tls = tls.into_inner();
            let _ = tls.write_all(b"rendezvous\r\n").await;
            let Some(slug) = slug else {
                let _ = tls
                    .write_all(b"bash: no release of the app to run in\r\n")
                    .await;
                let _ = tls.shutdown().await;
                return;
            };
            let child = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(format!("exec 2>&1; {command}"))
                .current_dir(&slug)
                .stdout(std::process::Stdio::piped())
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn();
            let Ok(mut child) = child else {
                let _ = tls.shutdown().await;
                return;
            };
            let count = |change: i32| {
                if let Some(state) = shared.lock().expect("lock").apps.get_mut(&app) {
                    state.running = state.running.saturating_add_signed(change);
                }
            };
            count(1);
            let (mut client, mut to_client) = tokio::io::split(tls);
            let mut gone = false;
            if let Some(mut out) = child.stdout.take() {
                let mut buffer = vec![0u8; 8192];
                let mut input = [0u8; 512];
                loop {
                    tokio::select! {
                        read = out.read(&mut buffer) => {
                            let Ok(n @ 1..) = read else { break };
                            // A dyno's output goes out with CRLF, as a terminal's.
                            let text = String::from_utf8_lossy(&buffer[..n]).replace('\n', "\r\n");
                            if to_client.write_all(text.as_bytes()).await.is_err() {
                                gone = true;
                                break;
                            }
                        }
                        // The client's input (ignored), or its going away.
                        read = client.read(&mut input) => {
                            if !matches!(read, Ok(1..)) {
                                gone = true;
                                break;
                            }
                        }
                    }
                }
            }
            if gone {
                let _ = child.kill().await;
                if let Some(state) = shared.lock().expect("lock").apps.get_mut(&app) {
                    state.stopped.push(command);
                }
            } else {
                let _ = child.wait().await;
                let _ = to_client.shutdown().await;
            }
            count(-1);
        });
    }
}
