//! The web viewer's routes: HTML pages rendered by `gantry-web` from the
//! store, the badge, the embedded assets, and a job's live events (SSE).

use super::auth::Viewer;
use super::permission::Permission;
use super::session::{MaybeSession, Session};
use crate::error::{ApiError, ApiResult};
use crate::notifications::Delivery;
use crate::state::{BuildState, JobState};
use crate::store::builds::{self, Build, BuildFilter};
use crate::store::jobs::{self, Job};
use crate::store::repos;
use crate::App;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use futures::Stream;
use gantry_protocol::{BuildId, JobId};
use gantry_web::pages::{self, BuildRow, JobRow, Nav};
use serde::Deserialize;
use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

/// Logs up to this size are drawn whole; bigger ones from their tail.
const WHOLE_LOG: u64 = 4 * 1024 * 1024;
/// How many lines of a bigger log's tail are drawn.
const TAIL_LINES: usize = 5000;
/// The most one live event carries.
const EVENT_BYTES: u64 = 256 * 1024;

pub(super) fn html(page: String) -> Response {
    Html(page).into_response()
}

fn missing(nav: &Nav, what: &str) -> Response {
    (StatusCode::NOT_FOUND, Html(pages::not_found(nav, what))).into_response()
}

pub(super) fn nav(session: &MaybeSession) -> Nav {
    match &session.0 {
        Some(s) => Nav {
            user: Some(s.user.clone()),
            csrf: Some(s.csrf.clone()),
        },
        None => Nav::default(),
    }
}

/// `1m 05s` from two Unix-millisecond times.
fn duration(start: Option<i64>, end: Option<i64>) -> Option<String> {
    let ms = end? - start?;
    let secs = (ms.max(0) + 500) / 1000;
    Some(if secs >= 60 {
        format!("{}m {:02}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    })
}

fn build_row(b: &Build) -> BuildRow {
    BuildRow {
        id: b.id.0,
        number: b.number,
        state: b.state.to_string(),
        event: b.event.to_string(),
        branch: b.branch.clone(),
        tag: b.tag.clone(),
        pull_request: b.pull_request,
        commit: b.commit.clone(),
        message: b.message.clone(),
        author: b.author.clone(),
        duration: duration(b.started_at, b.finished_at),
        time: super::views::time(Some(b.created_at)),
        reason: b.reason.clone(),
    }
}

fn job_row(j: &Job, build_number: i64) -> JobRow {
    JobRow {
        id: j.id.0,
        number: format!("{build_number}.{}", j.number),
        name: j.name.clone(),
        stage: j.stage.clone(),
        state: j.state.to_string(),
        image: j.image.clone(),
        allow_failure: j.allow_failure,
        duration: duration(j.started_at, j.finished_at),
        reason: j.reason.clone(),
        deploy: deploy_result(&j.phases),
    }
}

/// What the runner reported of a job's deploy phases.
fn deploy_result(phases: &str) -> Option<String> {
    let phases: Vec<gantry_protocol::PhaseTiming> = serde_json::from_str(phases).ok()?;
    let deploys: Vec<_> = phases.iter().filter(|p| p.phase == "deploy").collect();
    if deploys.is_empty() {
        return None;
    }
    let failed = deploys.iter().filter(|p| p.exit_code != 0).count();
    Some(match failed {
        0 => format!("deployed ({})", deploys.len()),
        n => format!("deploy failed ({n} of {})", deploys.len()),
    })
}

pub async fn repos_page(
    State(app): State<App>,
    viewer: Viewer,
    session: MaybeSession,
) -> ApiResult<Response> {
    let rows: Vec<pages::RepoRow> = super::builds::visible_repos(&app, &viewer)
        .await?
        .into_iter()
        .map(|(repo, last)| pages::RepoRow {
            full_name: repo.full_name,
            default_branch: repo.default_branch,
            last: last.as_ref().map(build_row),
        })
        .collect();
    Ok(html(pages::repos_page(&nav(&session), &rows)))
}

/// The repository, when this viewer may see it; else the 404 page to answer with.
async fn visible_repo(
    app: &App,
    viewer: &Viewer,
    session: &MaybeSession,
    owner: &str,
    name: &str,
) -> ApiResult<Result<repos::Repo, Response>> {
    let mut conn = app.db.pool.acquire().await?;
    let repo = repos::by_name(&mut conn, &format!("{owner}/{name}")).await?;
    drop(conn);
    if let Some(r) = repo {
        if viewer
            .check(app, r.private, &r.full_name, "repository")
            .await
            .is_ok()
        {
            return Ok(Ok(r));
        }
    }
    Ok(Err(missing(
        &nav(session),
        &format!("no repository {owner}/{name}"),
    )))
}

#[derive(Deserialize)]
pub struct BuildsQuery {
    branch: Option<String>,
    state: Option<String>,
    before: Option<i64>,
}

const PAGE: i64 = 25;

pub async fn builds_page(
    State(app): State<App>,
    viewer: Viewer,
    session: MaybeSession,
    Path((owner, name)): Path<(String, String)>,
    Query(q): Query<BuildsQuery>,
) -> ApiResult<Response> {
    let repo = match visible_repo(&app, &viewer, &session, &owner, &name).await? {
        Ok(repo) => repo,
        Err(page) => return Ok(page),
    };
    let branch = q.branch.filter(|b| !b.is_empty());
    let state = q.state.filter(|s| !s.is_empty());
    let parsed = state.as_deref().and_then(|s| s.parse::<BuildState>().ok());
    let filter = BuildFilter {
        branch: branch.clone(),
        state: parsed,
        before: q.before,
        limit: PAGE + 1,
    };
    let mut conn = app.db.pool.acquire().await?;
    let mut list = builds::list(&mut conn, repo.id, &filter).await?;
    let next_before = (list.len() as i64 > PAGE).then(|| {
        list.truncate(PAGE as usize);
        list.last().map(|b| b.id.0)
    });
    let rows: Vec<BuildRow> = list.iter().map(build_row).collect();
    let states: Vec<&str> = BuildState::ALL.iter().map(|s| s.as_str()).collect();
    let query = pages::BuildsQuery {
        branch,
        state: parsed.map(|s| s.to_string()),
        next_before: next_before.flatten(),
    };
    Ok(html(pages::builds_page(
        &nav(&session),
        &repo.full_name,
        &rows,
        &query,
        &states,
        pages::RepoSettings {
            job_limit: repo.max_concurrent_jobs,
            build_pushes: repo.build_pushes,
            build_pull_requests: repo.build_pull_requests,
        },
    )))
}

pub async fn build_page(
    State(app): State<App>,
    viewer: Viewer,
    session: MaybeSession,
    Path((owner, name, id)): Path<(String, String, i64)>,
) -> ApiResult<Response> {
    let repo = match visible_repo(&app, &viewer, &session, &owner, &name).await? {
        Ok(repo) => repo,
        Err(page) => return Ok(page),
    };
    let mut conn = app.db.pool.acquire().await?;
    let Some(build) = builds::get(&mut conn, BuildId(id))
        .await?
        .filter(|b| b.repo_id == repo.id)
    else {
        return Ok(missing(
            &nav(&session),
            &format!("no build {id} in {owner}/{name}"),
        ));
    };
    let build_jobs = jobs::for_build(&mut conn, build.id).await?;
    let waiting = super::builds::why_waiting(&app, &mut conn, &build_jobs).await?;
    let mut job_rows = Vec::with_capacity(build_jobs.len());
    for (job, why) in build_jobs.iter().zip(waiting) {
        let mut row = job_row(job, build.number);
        if why.is_some() {
            row.reason = why;
        }
        job_rows.push(row);
    }
    let diagnostics: Vec<String> =
        serde_json::from_str::<Vec<serde_json::Value>>(&build.diagnostics)
            .unwrap_or_default()
            .iter()
            .map(|d| {
                // Problems of an imported file name it.
                let file = d["file"]
                    .as_str()
                    .map(|f| format!("{f}, "))
                    .unwrap_or_default();
                format!(
                    "{file}line {}:{}: {}: {}",
                    d["line"],
                    d["column"],
                    d["severity"].as_str().unwrap_or("error"),
                    d["message"].as_str().unwrap_or("")
                )
            })
            .collect();
    let can_act = match &session.0 {
        Some(s) => super::permission::of(&app, s, &repo.full_name).await >= Permission::Push,
        None => false,
    };
    let notifications = crate::notifications::for_build(&mut conn, build.id)
        .await?
        .into_iter()
        .map(|n| pages::NotificationRow {
            detail: match (&n.last_error, n.response_status) {
                (_, Some(status)) if n.state == Delivery::Sent => format!("answered {status}"),
                (Some(error), _) => error.clone(),
                (None, _) => String::new(),
            },
            event: n.event,
            url: n.url,
            state: n.state.as_str().to_string(),
        })
        .collect();
    let nav = nav(&session);
    let page = pages::BuildPage {
        nav: &nav,
        repo: &repo.full_name,
        build: build_row(&build),
        jobs: job_rows,
        diagnostics,
        request_config: super::builds::shown_request_config(&app, &mut conn, &build)
            .await?
            .map(|c| {
                let mode = c.mode_name().to_string();
                (c.text, mode)
            }),
        notifications,
        can_act,
    };
    Ok(html(pages::build_page(&page)))
}

/// Reads `[from, to)` of a job's log.
fn read_range(path: &std::path::Path, from: u64, to: u64) -> std::io::Result<Vec<u8>> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(from))?;
    let mut out = Vec::with_capacity((to - from) as usize);
    file.take(to - from).read_to_end(&mut out)?;
    Ok(out)
}

pub async fn job_page(
    State(app): State<App>,
    viewer: Viewer,
    session: MaybeSession,
    Path((owner, name, id)): Path<(String, String, i64)>,
) -> ApiResult<Response> {
    let repo = match visible_repo(&app, &viewer, &session, &owner, &name).await? {
        Ok(repo) => repo,
        Err(page) => return Ok(page),
    };
    let mut conn = app.db.pool.acquire().await?;
    let Some(job) = jobs::get(&mut conn, JobId(id)).await? else {
        return Ok(missing(&nav(&session), &format!("no job {id}")));
    };
    let Some(build) = builds::get(&mut conn, job.build_id)
        .await?
        .filter(|b| b.repo_id == repo.id)
    else {
        return Ok(missing(
            &nav(&session),
            &format!("no job {id} in {owner}/{name}"),
        ));
    };
    let waiting = super::builds::why_it_waits(&app, &mut conn, &job).await?;
    drop(conn);
    // Whole lines only (a running job's last line may still be arriving): all
    // of a small log, the tail of a big one, read through the line index.
    let index = line_index(&app, job.id).await?;
    let total_lines = index.lines;
    let (first_line, count) = if index.scanned <= WHOLE_LOG {
        (1, total_lines)
    } else {
        let count = total_lines.min(TAIL_LINES);
        (total_lines - count + 1, count)
    };
    let path = app.logs.path(job.id);
    let log_bytes = index.scanned;
    let bytes = tokio::task::spawn_blocking(move || index.read(&path, first_line, count))
        .await
        .map_err(|e| ApiError::Internal(Box::new(e)))??;
    let log = gantry_web::log::render(&String::from_utf8_lossy(&bytes));
    let running = matches!(
        job.state,
        JobState::Created | JobState::Queued | JobState::Running
    );
    let can_remove_log = job.state.is_finished()
        && match &session.0 {
            Some(s) => super::permission::of(&app, s, &repo.full_name).await >= Permission::Push,
            None => false,
        };
    let nav = nav(&session);
    let page = pages::JobPage {
        nav: &nav,
        repo: &repo.full_name,
        build: build_row(&build),
        job: JobRow {
            reason: waiting.or_else(|| job.reason.clone()),
            ..job_row(&job, build.number)
        },
        log,
        first_line,
        total_lines,
        log_bytes,
        running,
        can_remove_log,
    };
    Ok(html(pages::job_page(&page)))
}

#[derive(Deserialize)]
pub struct BadgeQuery {
    branch: Option<String>,
}

pub async fn badge(
    State(app): State<App>,
    viewer: Viewer,
    session: MaybeSession,
    Path((owner, name)): Path<(String, String)>,
    Query(q): Query<BadgeQuery>,
) -> ApiResult<Response> {
    let name = name.trim_end_matches(".svg");
    let state = match visible_repo(&app, &viewer, &session, &owner, name).await? {
        Ok(repo) => {
            let branch = q.branch.unwrap_or_else(|| repo.default_branch.clone());
            let mut conn = app.db.pool.acquire().await?;
            builds::latest_on_branch(&mut conn, repo.id, &branch)
                .await?
                .map(|b| b.state.to_string())
                .unwrap_or_else(|| "unknown".into())
        }
        Err(_) => "unknown".into(),
    };
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-cache, max-age=0"),
        ],
        gantry_web::badge::svg("build", &state),
    )
        .into_response())
}

pub async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        pages::STYLE,
    )
        .into_response()
}

pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        pages::SCRIPT,
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct EventsQuery {
    /// The byte offset the viewer has drawn up to.
    #[serde(default)]
    offset: u64,
}

struct Tail {
    app: App,
    job: JobId,
    offset: u64,
    rx: tokio::sync::broadcast::Receiver<JobId>,
    done: bool,
    last_state: Option<JobState>,
    /// Look up the job's state: at the start and after each quiet second,
    /// not after every log chunk (a busy log would query per chunk per viewer).
    state_due: bool,
}

/// `GET /api/jobs/{id}/events`: the log's new whole lines as they arrive
/// (`event: log`, `{"lines": [html or null, …]}`) and the job's state when
/// it changes (`event: state`); the stream ends after the final state.
pub async fn job_events(
    State(app): State<App>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>>> {
    let job = super::builds::visible_job(&app, &viewer, id).await?.0.id;
    let tail = Tail {
        rx: app.log_events.subscribe(),
        app,
        job,
        offset: q.offset,
        done: false,
        last_state: None,
        state_due: true,
    };
    let stream = futures::stream::unfold(tail, |mut t| async move {
        if t.done {
            return None;
        }
        loop {
            let size = t.app.logs.size(t.job).unwrap_or(0);
            if size > t.offset {
                let (path, from) = (t.app.logs.path(t.job), t.offset);
                let to = size.min(from + EVENT_BYTES);
                let bytes = tokio::task::spawn_blocking(move || read_range(&path, from, to))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default();
                if let Some(end) = bytes.iter().rposition(|b| *b == b'\n') {
                    let text = String::from_utf8_lossy(&bytes[..=end]);
                    let lines = gantry_web::log::render(&text).lines;
                    t.offset += end as u64 + 1;
                    let data = serde_json::json!({ "lines": lines }).to_string();
                    return Some((Ok(Event::default().event("log").data(data)), t));
                }
            }
            let state = if !std::mem::take(&mut t.state_due) {
                None
            } else {
                let Ok(mut conn) = t.app.db.pool.acquire().await else {
                    return None;
                };
                jobs::get(&mut conn, t.job)
                    .await
                    .ok()
                    .flatten()
                    .map(|j| j.state)
            };
            if let Some(state) = state {
                let finished = !matches!(
                    state,
                    JobState::Created | JobState::Queued | JobState::Running
                );
                let all_read = t.app.logs.size(t.job).unwrap_or(0) <= t.offset;
                if t.last_state != Some(state) && (!finished || all_read) {
                    t.last_state = Some(state);
                    t.done = finished;
                    let data = serde_json::json!({ "state": state.to_string() }).to_string();
                    return Some((Ok(Event::default().event("state").data(data)), t));
                }
            }
            // Wait for this job's log to grow, or look again in a second.
            let deadline = tokio::time::sleep(Duration::from_secs(1));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = &mut deadline => {
                        t.state_due = true;
                        break;
                    }
                    got = t.rx.recv() => match got {
                        Ok(job) if job == t.job => break,
                        Ok(_) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            t.state_due = true;
                            break;
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    },
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// `GET /api/builds/{id}/events`: the build's state and its jobs' (`event:
/// state`, `{"state", "jobs": [{"id", "state"}]}`) at once and whenever one
/// changes; the stream ends after the build's final state. The build page
/// follows it instead of asking for the whole build every second.
pub async fn build_events(
    State(app): State<App>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>>> {
    let build = {
        let mut conn = app.db.pool.acquire().await?;
        super::builds::visible_build(&app, &mut conn, &viewer, id)
            .await?
            .id
    };
    let follow = (app, build, None::<String>, false);
    let stream = futures::stream::unfold(follow, |(app, build, last, done)| async move {
        if done {
            return None;
        }
        loop {
            // Job changes wake the dispatcher; claims and other servers'
            // changes are seen within a second.
            let dispatch = app.dispatch.clone();
            let changed = dispatch.notified();
            let Ok((state, data)) = build_states(&app, build).await else {
                return None;
            };
            if last.as_deref() != Some(data.as_str()) {
                let event = Event::default().event("state").data(data.clone());
                return Some((Ok(event), (app, build, Some(data), state.is_finished())));
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), changed).await;
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The build's state and its jobs', as `build_events` sends them.
async fn build_states(app: &App, build: BuildId) -> Result<(BuildState, String), sqlx::Error> {
    let mut conn = app.db.pool.acquire().await?;
    let state: String = sqlx::query_scalar("SELECT state FROM builds WHERE id = $1")
        .bind(build.0)
        .fetch_one(&mut *conn)
        .await?;
    let jobs: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, state FROM jobs WHERE build_id = $1 ORDER BY id")
            .bind(build.0)
            .fetch_all(&mut *conn)
            .await?;
    let parsed: BuildState = state
        .parse()
        .map_err(|e: String| sqlx::Error::Decode(e.into()))?;
    let jobs: Vec<serde_json::Value> = jobs
        .into_iter()
        .map(|(id, state)| serde_json::json!({ "id": id, "state": state }))
        .collect();
    let data = serde_json::json!({ "state": state, "jobs": jobs }).to_string();
    Ok((parsed, data))
}

/// The job's line index, brought up to date with its log (off the runtime).
async fn line_index(app: &App, job: JobId) -> ApiResult<crate::log_index::LineIndex> {
    let indexes = app.log_indexes.clone();
    let path = app.logs.path(job);
    tokio::task::spawn_blocking(move || -> std::io::Result<crate::log_index::LineIndex> {
        let mut index = {
            let mut map = indexes.lock().unwrap_or_else(|e| e.into_inner());
            if map.len() > 256 {
                map.clear();
            }
            map.remove(&job).unwrap_or_default()
        };
        index.extend(&path)?;
        indexes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job, index.clone());
        Ok(index)
    })
    .await
    .map_err(|e| ApiError::Internal(Box::new(e)))?
    .map_err(ApiError::from)
}

#[derive(Deserialize)]
pub struct LinesQuery {
    from: usize,
    #[serde(default = "default_count")]
    count: usize,
}

fn default_count() -> usize {
    200
}

/// `GET /api/jobs/{id}/lines?from=N&count=M`: whole lines `N..N+M` as HTML
/// (`null` for marker-only lines), and how many whole lines the log has.
pub async fn job_lines(
    State(app): State<App>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Query(q): Query<LinesQuery>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let job = super::builds::visible_job(&app, &viewer, id).await?.0.id;
    let index = line_index(&app, job).await?;
    let path = app.logs.path(job);
    let count = q.count.min(2000);
    let from = q.from.max(1);
    let bytes = tokio::task::spawn_blocking(move || {
        index.read(&path, from, count).map(|b| (b, index.lines))
    })
    .await
    .map_err(|e| ApiError::Internal(Box::new(e)))??;
    let (bytes, total) = bytes;
    let lines = gantry_web::log::render(&String::from_utf8_lossy(&bytes)).lines;
    Ok(axum::Json(
        serde_json::json!({ "total": total, "from": from, "lines": lines }),
    ))
}

#[derive(Deserialize)]
pub struct SearchQuery {
    q: String,
    #[serde(default)]
    from: usize,
}

/// `GET /api/jobs/{id}/search?q=text&from=N`: the first line at or after N
/// (wrapping) whose text contains `q`, ignoring case and colours.
pub async fn job_search(
    State(app): State<App>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Query(q): Query<SearchQuery>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let job = super::builds::visible_job(&app, &viewer, id).await?.0.id;
    let index = line_index(&app, job).await?;
    let path = app.logs.path(job);
    let found = tokio::task::spawn_blocking(move || index.find(&path, &q.q, q.from))
        .await
        .map_err(|e| ApiError::Internal(Box::new(e)))??;
    Ok(axum::Json(serde_json::json!({ "line": found })))
}

pub async fn login_form(State(app): State<App>, session: MaybeSession) -> Response {
    html(pages::login_page(
        &nav(&session),
        None,
        app.config.github_oauth.is_some(),
    ))
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
}

/// `POST /login`: the admin token signs the browser in.
pub async fn login(State(app): State<App>, axum::Form(form): axum::Form<LoginForm>) -> Response {
    let valid = app
        .admin_token_hash
        .as_ref()
        .is_some_and(|hash| super::auth::hash_token(&form.token) == *hash);
    if !valid {
        let why = if app.admin_token_hash.is_none() {
            "signing in is disabled: set GANTRY_ADMIN_TOKEN on the server"
        } else {
            "that is not the admin token"
        };
        return (
            StatusCode::UNAUTHORIZED,
            Html(pages::login_page(
                &Nav::default(),
                Some(why),
                app.config.github_oauth.is_some(),
            )),
        )
            .into_response();
    }
    let secure = app
        .config
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"));
    let cookie = Session::new("admin", true).cookie(&app.session_key, secure);
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie),
            (header::LOCATION, "/".to_string()),
        ],
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    pub(super) csrf: String,
}

/// Why a form that changes something is refused, as the page to answer
/// with: not signed in, or without the session's CSRF token.
pub(super) fn refusal(session: &MaybeSession, form: &ActionForm) -> Option<Response> {
    let refuse = |status: StatusCode, why: &str| {
        (status, Html(pages::refused(&nav(session), why))).into_response()
    };
    let Some(s) = &session.0 else {
        return Some(refuse(StatusCode::UNAUTHORIZED, "sign in first"));
    };
    if let Err(e) = s.check_csrf(&form.csrf) {
        return Some(refuse(StatusCode::FORBIDDEN, &e.to_string()));
    }
    None
}

pub async fn logout(session: MaybeSession, axum::Form(form): axum::Form<ActionForm>) -> Response {
    if let Some(s) = &session.0 {
        if s.check_csrf(&form.csrf).is_err() {
            return (
                StatusCode::FORBIDDEN,
                Html(pages::refused(
                    &nav(&session),
                    "the form's CSRF token is missing or wrong",
                )),
            )
                .into_response();
        }
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, super::session::logout_cookie()),
            (header::LOCATION, "/".to_string()),
        ],
    )
        .into_response()
}

/// The page refusing a signed-in user who lacks `level` on `owner/name`.
async fn needs(
    app: &App,
    session: &MaybeSession,
    owner: &str,
    name: &str,
    level: Permission,
    what: &str,
) -> Option<Response> {
    let s = session.0.as_ref()?;
    if super::permission::of(app, s, &format!("{owner}/{name}")).await >= level {
        return None;
    }
    Some(
        (
            StatusCode::FORBIDDEN,
            Html(pages::refused(
                &nav(session),
                &format!("{} needs {what} on {owner}/{name}", s.user),
            )),
        )
            .into_response(),
    )
}

/// The build `id` of `owner/name`, for an action on it.
async fn action_build(app: &App, owner: &str, name: &str, id: i64) -> ApiResult<Option<Build>> {
    let mut conn = app.db.pool.acquire().await?;
    let Some(repo) = repos::by_name(&mut conn, &format!("{owner}/{name}")).await? else {
        return Ok(None);
    };
    Ok(builds::get(&mut conn, BuildId(id))
        .await?
        .filter(|b| b.repo_id == repo.id))
}

/// What a build form asks for.
#[derive(Clone, Copy)]
enum BuildAction {
    Restart,
    Cancel,
}

pub async fn restart_build(
    State(app): State<App>,
    session: MaybeSession,
    Path(path): Path<(String, String, i64)>,
    axum::Form(form): axum::Form<ActionForm>,
) -> ApiResult<Response> {
    build_action(&app, &session, path, &form, BuildAction::Restart).await
}

pub async fn cancel_build(
    State(app): State<App>,
    session: MaybeSession,
    Path(path): Path<(String, String, i64)>,
    axum::Form(form): axum::Form<ActionForm>,
) -> ApiResult<Response> {
    build_action(&app, &session, path, &form, BuildAction::Cancel).await
}

/// Restart or cancel from a build page: signed in, the form's CSRF token,
/// push access; then back to the build page.
async fn build_action(
    app: &App,
    session: &MaybeSession,
    (owner, name, id): (String, String, i64),
    form: &ActionForm,
    action: BuildAction,
) -> ApiResult<Response> {
    if let Some(page) = refusal(session, form) {
        return Ok(page);
    }
    let Some(build) = action_build(app, &owner, &name, id).await? else {
        return Ok(missing(
            &nav(session),
            &format!("no build {id} in {owner}/{name}"),
        ));
    };
    if let Some(page) = needs(
        app,
        session,
        &owner,
        &name,
        Permission::Push,
        "push access to restart or cancel its builds",
    )
    .await
    {
        return Ok(page);
    }
    match action {
        // Planned again without a job to run: the build page says why.
        BuildAction::Restart => {
            super::builds::restart_jobs(app, build.id, None).await?;
        }
        BuildAction::Cancel => super::builds::cancel_jobs(app, build.id, None).await?,
    }
    Ok((
        StatusCode::SEE_OTHER,
        [(header::LOCATION, format!("/{owner}/{name}/builds/{id}"))],
    )
        .into_response())
}

/// `POST /{owner}/{name}/jobs/{id}/log/remove`: from a job's page, by a
/// user with push access (see `builds::remove_log`); then back to the job.
pub async fn remove_log(
    State(app): State<App>,
    session: MaybeSession,
    Path((owner, name, id)): Path<(String, String, i64)>,
    axum::Form(form): axum::Form<ActionForm>,
) -> ApiResult<Response> {
    if let Some(page) = refusal(&session, &form) {
        return Ok(page);
    }
    let job = match super::builds::find_job(&app, JobId(id)).await {
        Ok(job)
            if action_build(&app, &owner, &name, job.build_id.0)
                .await?
                .is_some() =>
        {
            job
        }
        Ok(_) | Err(ApiError::NotFound(_)) => {
            return Ok(missing(
                &nav(&session),
                &format!("no job {id} in {owner}/{name}"),
            ))
        }
        Err(e) => return Err(e),
    };
    if let Some(page) = needs(
        &app,
        &session,
        &owner,
        &name,
        Permission::Push,
        "push access to remove its logs",
    )
    .await
    {
        return Ok(page);
    }
    let by = session
        .0
        .as_ref()
        .map(|s| s.user.clone())
        .unwrap_or_default();
    match super::builds::remove_log(&app, &job, &by).await {
        Ok(_) => Ok((
            StatusCode::SEE_OTHER,
            [(header::LOCATION, format!("/{owner}/{name}/jobs/{id}"))],
        )
            .into_response()),
        Err(e @ ApiError::Conflict(_)) => Ok((
            e.status(),
            Html(pages::refused(&nav(&session), &e.to_string())),
        )
            .into_response()),
        Err(e) => Err(e),
    }
}

/// The repository, for a settings page (secrets, crons) of a signed-in
/// user with `need` on it, who wants `to` (`"manage its secrets"`); `Err`
/// is the page to answer with.
pub(super) async fn settings_repo(
    app: &App,
    session: &MaybeSession,
    owner: &str,
    name: &str,
    need: Permission,
    to: &str,
) -> ApiResult<Result<repos::Repo, Response>> {
    let Some(signed_in) = &session.0 else {
        return Ok(Err((
            StatusCode::UNAUTHORIZED,
            Html(pages::refused(&nav(session), &format!("sign in to {to}"))),
        )
            .into_response()));
    };
    if super::permission::of(app, signed_in, &format!("{owner}/{name}")).await < need {
        let access = if need == Permission::Admin {
            "admin"
        } else {
            "push"
        };
        return Ok(Err((
            StatusCode::FORBIDDEN,
            Html(pages::refused(
                &nav(session),
                &format!(
                    "{} needs {access} access to {owner}/{name} to {to}",
                    signed_in.user
                ),
            )),
        )
            .into_response()));
    }
    let mut conn = app.db.pool.acquire().await?;
    match repos::by_name(&mut conn, &format!("{owner}/{name}")).await? {
        Some(repo) => Ok(Ok(repo)),
        None => Ok(Err(missing(
            &nav(session),
            &format!("no repository {owner}/{name}"),
        ))),
    }
}

async fn secrets_repo(
    app: &App,
    session: &MaybeSession,
    owner: &str,
    name: &str,
) -> ApiResult<Result<repos::Repo, Response>> {
    settings_repo(
        app,
        session,
        owner,
        name,
        Permission::Admin,
        "manage its secrets",
    )
    .await
}

async fn render_secrets(
    app: &App,
    session: &MaybeSession,
    repo: &repos::Repo,
    notice: Option<&str>,
    status: StatusCode,
) -> ApiResult<Response> {
    let mut conn = app.db.pool.acquire().await?;
    let rows: Vec<pages::SecretRow> = crate::secrets::list(&mut conn, repo.id)
        .await?
        .into_iter()
        .map(|s| pages::SecretRow {
            name: s.name,
            branches: s.branches,
            updated: s.updated_at,
        })
        .collect();
    Ok((
        status,
        Html(pages::secrets_page(
            &nav(session),
            &repo.full_name,
            &rows,
            notice,
        )),
    )
        .into_response())
}

pub async fn secrets_page(
    State(app): State<App>,
    session: MaybeSession,
    Path((owner, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let repo = match secrets_repo(&app, &session, &owner, &name).await? {
        Ok(repo) => repo,
        Err(page) => return Ok(page),
    };
    render_secrets(&app, &session, &repo, None, StatusCode::OK).await
}

#[derive(Deserialize)]
pub struct SecretForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    branches: String,
}

/// `POST /{owner}/{name}/secrets`: sets a secret from the form.
pub async fn set_secret(
    State(app): State<App>,
    session: MaybeSession,
    Path((owner, name)): Path<(String, String)>,
    axum::Form(form): axum::Form<SecretForm>,
) -> ApiResult<Response> {
    if let Some(page) = refusal(
        &session,
        &ActionForm {
            csrf: form.csrf.clone(),
        },
    ) {
        return Ok(page);
    }
    let repo = match secrets_repo(&app, &session, &owner, &name).await? {
        Ok(repo) => repo,
        Err(page) => return Ok(page),
    };
    let Some(sealer) = app.secrets.as_ref() else {
        return render_secrets(
            &app,
            &session,
            &repo,
            Some("secrets are disabled: set GANTRY_SECRET_KEY on the server"),
            StatusCode::CONFLICT,
        )
        .await;
    };
    let secret = form.name.trim();
    if !gantry_pipeline::is_env_name(secret) || form.value.is_empty() {
        return render_secrets(&app, &session, &repo, Some("a secret needs a name (letters, digits and _, not starting with a digit) and a value"), StatusCode::BAD_REQUEST).await;
    }
    let branches: Vec<String> = form
        .branches
        .split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(str::to_string)
        .collect();
    let mut conn = app.db.pool.acquire().await?;
    crate::secrets::put(&mut conn, sealer, repo.id, secret, &form.value, &branches).await?;
    drop(conn);
    render_secrets(
        &app,
        &session,
        &repo,
        Some(&format!("{secret} saved")),
        StatusCode::OK,
    )
    .await
}

/// `POST /{owner}/{name}/secrets/{secret}/delete`.
pub async fn delete_secret(
    State(app): State<App>,
    session: MaybeSession,
    Path((owner, name, secret)): Path<(String, String, String)>,
    axum::Form(form): axum::Form<ActionForm>,
) -> ApiResult<Response> {
    if let Some(page) = refusal(&session, &form) {
        return Ok(page);
    }
    let repo = match secrets_repo(&app, &session, &owner, &name).await? {
        Ok(repo) => repo,
        Err(page) => return Ok(page),
    };
    let mut conn = app.db.pool.acquire().await?;
    let deleted = crate::secrets::delete(&mut conn, repo.id, &secret).await?;
    drop(conn);
    let notice = if deleted {
        format!("{secret} deleted")
    } else {
        format!("there is no secret {secret}")
    };
    render_secrets(&app, &session, &repo, Some(&notice), StatusCode::OK).await
}

/// Crons are set by those who may restart builds (push access).
async fn crons_repo(
    app: &App,
    session: &MaybeSession,
    owner: &str,
    name: &str,
) -> ApiResult<Result<repos::Repo, Response>> {
    settings_repo(
        app,
        session,
        owner,
        name,
        Permission::Push,
        "schedule its builds",
    )
    .await
}

async fn render_crons(
    app: &App,
    session: &MaybeSession,
    repo: &repos::Repo,
    notice: Option<&str>,
    status: StatusCode,
) -> ApiResult<Response> {
    let mut conn = app.db.pool.acquire().await?;
    let rows: Vec<pages::CronRow> = crate::store::crons::for_repo(&mut conn, repo.id)
        .await?
        .into_iter()
        .map(|c| pages::CronRow {
            id: c.id,
            branch: c.branch,
            interval: c.interval.as_str().to_string(),
            skip_if_recent: c.skip_if_recent,
            next_run: super::views::time(Some(c.next_run_at)),
            last_run: super::views::time(c.last_run_at),
            last_result: c.last_result,
        })
        .collect();
    Ok((
        status,
        Html(pages::crons_page(
            &nav(session),
            &repo.full_name,
            &rows,
            notice,
        )),
    )
        .into_response())
}

pub async fn crons_page(
    State(app): State<App>,
    session: MaybeSession,
    Path((owner, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let repo = match crons_repo(&app, &session, &owner, &name).await? {
        Ok(repo) => repo,
        Err(page) => return Ok(page),
    };
    render_crons(&app, &session, &repo, None, StatusCode::OK).await
}

#[derive(Deserialize)]
pub struct CronForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    branch: String,
    #[serde(default)]
    interval: String,
    #[serde(default)]
    skip_if_recent: Option<String>,
}

/// `POST /{owner}/{name}/crons`: sets a branch's schedule from the form.
pub async fn set_cron(
    State(app): State<App>,
    session: MaybeSession,
    Path((owner, name)): Path<(String, String)>,
    axum::Form(form): axum::Form<CronForm>,
) -> ApiResult<Response> {
    if let Some(page) = refusal(
        &session,
        &ActionForm {
            csrf: form.csrf.clone(),
        },
    ) {
        return Ok(page);
    }
    let repo = match crons_repo(&app, &session, &owner, &name).await? {
        Ok(repo) => repo,
        Err(page) => return Ok(page),
    };
    let skip = form.skip_if_recent.is_some();
    let set = crate::cron::schedule(&app, &repo, &form.branch, &form.interval, skip).await;
    let (notice, status) = match set.map_err(ApiError::from) {
        Ok((cron, _)) => (
            format!(
                "{} is built {}; the first build runs now",
                cron.branch,
                cron.interval.as_str()
            ),
            StatusCode::OK,
        ),
        Err(e @ ApiError::Internal(_)) => return Err(e),
        Err(e) => (e.to_string(), e.status()),
    };
    render_crons(&app, &session, &repo, Some(&notice), status).await
}

/// `POST /{owner}/{name}/crons/{id}/delete`.
pub async fn delete_cron(
    State(app): State<App>,
    session: MaybeSession,
    Path((owner, name, id)): Path<(String, String, i64)>,
    axum::Form(form): axum::Form<ActionForm>,
) -> ApiResult<Response> {
    if let Some(page) = refusal(&session, &form) {
        return Ok(page);
    }
    let repo = match crons_repo(&app, &session, &owner, &name).await? {
        Ok(repo) => repo,
        Err(page) => return Ok(page),
    };
    let mut conn = app.db.pool.acquire().await?;
    // Only this repository's schedule: an id from another one is not found.
    let found = crate::store::crons::get(&mut conn, id)
        .await?
        .filter(|c| c.repo_id == repo.id);
    let notice = match found {
        Some(cron) => {
            crate::store::crons::delete(&mut conn, id).await?;
            format!("the schedule of {} is deleted", cron.branch)
        }
        None => format!("there is no cron {id} in {}", repo.full_name),
    };
    drop(conn);
    render_crons(&app, &session, &repo, Some(&notice), StatusCode::OK).await
}

/// Caches are cleared by those who may restart builds (push access).
const CLEAR_CACHES: (Permission, &str) = (Permission::Push, "clear its caches");

fn render_caches(session: &MaybeSession, repo: &repos::Repo, notice: Option<&str>) -> Response {
    let cleared_at = super::views::time(repo.caches_cleared_at);
    html(pages::caches_page(
        &nav(session),
        &repo.full_name,
        cleared_at.as_deref(),
        notice,
    ))
}

pub async fn caches_page(
    State(app): State<App>,
    session: MaybeSession,
    Path((owner, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    Ok(
        match settings_repo(
            &app,
            &session,
            &owner,
            &name,
            CLEAR_CACHES.0,
            CLEAR_CACHES.1,
        )
        .await?
        {
            Ok(repo) => render_caches(&session, &repo, None),
            Err(page) => page,
        },
    )
}

/// `POST /{owner}/{name}/caches/clear`.
pub async fn clear_caches(
    State(app): State<App>,
    session: MaybeSession,
    Path((owner, name)): Path<(String, String)>,
    axum::Form(form): axum::Form<ActionForm>,
) -> ApiResult<Response> {
    if let Some(page) = refusal(&session, &form) {
        return Ok(page);
    }
    let repo = match settings_repo(
        &app,
        &session,
        &owner,
        &name,
        CLEAR_CACHES.0,
        CLEAR_CACHES.1,
    )
    .await?
    {
        Ok(repo) => repo,
        Err(page) => return Ok(page),
    };
    let repo = super::caches::clear_caches(&app, &repo).await?;
    Ok(render_caches(
        &session,
        &repo,
        Some("caches cleared: each runner drops them before its next job of this repository"),
    ))
}

/// `GET /login/github`: off to GitHub's authorize page, with a `state`
/// this browser must bring back.
pub async fn github_login(State(app): State<App>, session: MaybeSession) -> Response {
    let Some((client_id, _)) = &app.config.github_oauth else {
        return (
            StatusCode::NOT_FOUND,
            Html(pages::not_found(
                &nav(&session),
                "GitHub sign-in is not configured (GANTRY_GITHUB_CLIENT_ID)",
            )),
        )
            .into_response();
    };
    let state = hex::encode(rand::random::<[u8; 16]>());
    let public = app.config.public_url.clone().unwrap_or_default();
    let location = format!(
        "{}/login/oauth/authorize?client_id={}&redirect_uri={}&scope=repo&state={state}",
        app.config.github_url,
        pages::url_part(client_id),
        pages::url_part(&format!("{public}/login/github/callback")),
    );
    let cookie =
        super::session::state_cookie(&app.session_key, &state, public.starts_with("https://"));
    (
        StatusCode::SEE_OTHER,
        [(header::SET_COOKIE, cookie), (header::LOCATION, location)],
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct Callback {
    #[serde(default)]
    code: String,
    #[serde(default)]
    state: String,
}

/// `GET /login/github/callback`: trades the code for the user's token,
/// learns who they are, and signs them in (their token sealed in the cookie).
pub async fn github_callback(
    State(app): State<App>,
    Query(q): Query<Callback>,
    headers: axum::http::HeaderMap,
) -> Response {
    let refuse = |status: StatusCode, why: &str| {
        (status, Html(pages::refused(&Nav::default(), why))).into_response()
    };
    let (Some((client_id, client_secret)), Some(sealer)) = (&app.config.github_oauth, &app.secrets)
    else {
        return refuse(StatusCode::NOT_FOUND, "GitHub sign-in is not configured");
    };
    let sent = super::session::cookie_from(&headers, super::session::STATE_COOKIE);
    if !super::session::check_state(&app.session_key, sent.as_deref(), &q.state) {
        return refuse(
            StatusCode::FORBIDDEN,
            "the sign-in did not start here (its state does not match): try signing in again",
        );
    }
    let public = app.config.public_url.clone().unwrap_or_default();
    let exchanged = app
        .http
        .post(format!(
            "{}/login/oauth/access_token",
            app.config.github_url
        ))
        .header("accept", "application/json")
        .header("user-agent", "gantry")
        .json(&serde_json::json!({
            "client_id": client_id,
            "client_secret": client_secret,
            "code": q.code,
            "redirect_uri": format!("{public}/login/github/callback"),
        }))
        .send()
        .await;
    let body: serde_json::Value = match exchanged {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(e) => {
            return refuse(
                StatusCode::BAD_GATEWAY,
                &format!("GitHub could not be reached: {e}"),
            )
        }
    };
    let Some(token) = body["access_token"].as_str() else {
        let why = body["error_description"]
            .as_str()
            .unwrap_or("GitHub did not grant a token");
        return refuse(
            StatusCode::FORBIDDEN,
            &format!("GitHub sign-in failed: {why}"),
        );
    };
    let user = app
        .http
        .get(format!("{}/user", app.config.github_api_url))
        .bearer_auth(token)
        .header("accept", "application/vnd.github+json")
        .header("user-agent", "gantry")
        .send()
        .await;
    let login = match user {
        Ok(r) if r.status().is_success() => r
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|u| u["login"].as_str().map(str::to_string)),
        _ => None,
    };
    let Some(login) = login else {
        return refuse(StatusCode::BAD_GATEWAY, "GitHub did not say who signed in");
    };
    let mut session = Session::new(&login, false);
    let (slot_repo, slot_name) = super::permission::TOKEN_SLOT;
    session.github_token = Some(sealer.seal(slot_repo, slot_name, token));
    let cookie = session.cookie(&app.session_key, public.starts_with("https://"));
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie),
            (header::LOCATION, "/".to_string()),
        ],
    )
        .into_response()
}
