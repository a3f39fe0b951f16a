//! The HTTP routes: webhooks, the JSON API, the runner API, health and metrics.

pub mod auth;
pub mod builds;
pub mod caches;
pub mod crons;
pub mod deliveries;
pub mod notifications;
pub mod pages;
pub mod permission;
pub mod runner;
pub mod secrets;
pub mod session;
pub mod settings;
pub mod trigger;
pub mod views;

use crate::metrics::Metrics;
use crate::store::{builds as build_store, deliveries as delivery_store, jobs};
use crate::{intake, App};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use std::convert::Infallible;
use std::fmt::Write;
use tower_http::limit::RequestBodyLimitLayer;

/// Log chunks larger than this are refused; runners send far smaller ones.
const MAX_LOG_CHUNK: usize = 16 * 1024 * 1024;

pub fn router(app: App) -> Router {
    Router::new()
        .route(
            "/hooks/github",
            // A body declared too big is refused on its header, before a
            // byte of it is read; one sent in chunks is cut off at the limit.
            post(intake::receive)
                .layer::<_, Infallible>(DefaultBodyLimit::max(intake::MAX_BODY))
                .layer(RequestBodyLimitLayer::new(intake::MAX_BODY)),
        )
        .route("/", get(pages::repos_page))
        .route("/assets/style.css", get(pages::style))
        .route("/assets/viewer.js", get(pages::script))
        .route("/{owner}/{name}", get(pages::builds_page))
        .route("/{owner}/{name}/badge.svg", get(pages::badge))
        .route("/{owner}/{name}/builds/{id}", get(pages::build_page))
        .route("/{owner}/{name}/jobs/{id}", get(pages::job_page))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/login/github", get(pages::github_login))
        .route("/login/github/callback", get(pages::github_callback))
        .route(
            "/{owner}/{name}/secrets",
            get(pages::secrets_page).post(pages::set_secret),
        )
        .route(
            "/{owner}/{name}/crons",
            get(pages::crons_page).post(pages::set_cron),
        )
        .route("/{owner}/{name}/caches", get(pages::caches_page))
        .route(
            "/{owner}/{name}/trigger",
            get(trigger::page).post(trigger::trigger),
        )
        .route("/{owner}/{name}/caches/clear", post(pages::clear_caches))
        .route(
            "/{owner}/{name}/crons/{id}/delete",
            post(pages::delete_cron),
        )
        .route(
            "/{owner}/{name}/secrets/{secret}/delete",
            post(pages::delete_secret),
        )
        .route("/logout", post(pages::logout))
        .route(
            "/{owner}/{name}/builds/{id}/restart",
            post(pages::restart_build),
        )
        .route(
            "/{owner}/{name}/builds/{id}/cancel",
            post(pages::cancel_build),
        )
        .route(
            "/{owner}/{name}/jobs/{id}/log/remove",
            post(pages::remove_log),
        )
        .route("/api/jobs/{id}/events", get(pages::job_events))
        .route("/api/builds/{id}/events", get(pages::build_events))
        .route("/api/jobs/{id}/lines", get(pages::job_lines))
        .route("/api/jobs/{id}/search", get(pages::job_search))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/repos", get(builds::list_repos))
        .route("/repo/{slug}/requests", post(builds::travis_request))
        .route(
            "/api/repos/{owner}/{name}/builds",
            get(builds::list_builds).post(builds::create_build),
        )
        .route(
            "/api/repos/{owner}/{name}/crons",
            get(crons::list).post(crons::put),
        )
        .route(
            "/api/repos/{owner}/{name}/caches",
            get(caches::get).delete(caches::clear),
        )
        .route(
            "/api/repos/{owner}/{name}/settings",
            get(settings::get).put(settings::put),
        )
        .route("/api/crons/{id}", get(crons::get).delete(crons::delete))
        .route("/api/repos/{owner}/{name}/secrets", get(secrets::list))
        .route(
            "/api/repos/{owner}/{name}/secrets/{secret}",
            axum::routing::put(secrets::put).delete(secrets::delete),
        )
        .route("/api/runners", get(runner::list))
        .route("/api/deliveries", get(deliveries::list))
        .route("/api/builds/{id}", get(builds::get_build))
        .route(
            "/api/builds/{id}/notifications",
            get(notifications::for_build),
        )
        .route("/api/config", get(notifications::config))
        .route("/api/builds/{id}/restart", post(builds::restart_build))
        .route("/api/builds/{id}/cancel", post(builds::cancel_build))
        .route("/api/jobs/{id}", get(builds::get_job))
        .route(
            "/api/jobs/{id}/log",
            get(builds::job_log).delete(builds::remove_job_log),
        )
        .route("/api/jobs/{id}/restart", post(builds::restart_job))
        .route("/api/jobs/{id}/cancel", post(builds::cancel_job))
        .route(gantry_protocol::CLAIM_PATH, post(runner::claim))
        .route("/api/runner/jobs/{id}/heartbeat", post(runner::heartbeat))
        .route(
            "/api/runner/jobs/{id}/log",
            post(runner::log).layer(RequestBodyLimitLayer::new(MAX_LOG_CHUNK)),
        )
        .route("/api/runner/jobs/{id}/finish", post(runner::finish))
        .route(
            "/api/runner/jobs/{id}/deploy-lock",
            post(runner::deploy_lock),
        )
        .with_state(app)
}

async fn healthz(State(app): State<App>) -> (StatusCode, &'static str) {
    match sqlx::query("SELECT 1").execute(&app.db.pool).await {
        Ok(_) => (StatusCode::OK, "ok\n"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n"),
    }
}

/// Prometheus text format.
async fn metrics(
    State(app): State<App>,
) -> Result<([(&'static str, &'static str); 1], String), crate::error::ApiError> {
    let m = &app.metrics;
    let mut out = String::new();
    let mut conn = app.db.pool.acquire().await?;
    let build_states = build_store::count_by_state(&mut conn).await?;
    let job_states = jobs::count_by_state(&mut conn).await?;
    drop(conn);
    let _ = writeln!(
        out,
        "# HELP gantry_builds Builds by state.\n# TYPE gantry_builds gauge"
    );
    for (state, n) in &build_states {
        let _ = writeln!(out, "gantry_builds{{state=\"{state}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP gantry_jobs Jobs by state.\n# TYPE gantry_jobs gauge"
    );
    for (state, n) in &job_states {
        let _ = writeln!(out, "gantry_jobs{{state=\"{state}\"}} {n}");
    }
    let queued = job_states
        .iter()
        .find(|(s, _)| s == "queued")
        .map_or(0, |(_, n)| *n);
    let _ = writeln!(out, "# HELP gantry_queue_length Jobs waiting for a runner.\n# TYPE gantry_queue_length gauge\ngantry_queue_length {queued}");
    let pending = delivery_store::pending_count(&app.db).await?;
    let _ = writeln!(out, "# HELP gantry_deliveries_pending Webhook deliveries stored but not yet planned.\n# TYPE gantry_deliveries_pending gauge\ngantry_deliveries_pending {pending}");
    let _ = writeln!(out, "# HELP gantry_webhooks_total Webhook deliveries by result.\n# TYPE gantry_webhooks_total counter");
    for (result, counter) in [
        ("accepted", &m.webhooks_accepted),
        ("duplicate", &m.webhooks_duplicate),
        ("ignored", &m.webhooks_ignored),
        ("rejected", &m.webhooks_rejected),
    ] {
        let _ = writeln!(
            out,
            "gantry_webhooks_total{{result=\"{result}\"}} {}",
            Metrics::get(counter)
        );
    }
    let _ = writeln!(
        out,
        "# HELP gantry_claim_wait_seconds Time jobs waited in the queue before a runner claimed them.\n# TYPE gantry_claim_wait_seconds summary\ngantry_claim_wait_seconds_sum {}\ngantry_claim_wait_seconds_count {}",
        Metrics::get(&m.claim_wait_ms_total) as f64 / 1000.0,
        Metrics::get(&m.claims)
    );
    Ok(([("content-type", "text/plain; version=0.0.4")], out))
}

/// The repository `owner/name`, or 404 saying how Gantry learns of one.
pub(crate) async fn repo_by_path(
    app: &App,
    owner: &str,
    name: &str,
) -> crate::error::ApiResult<crate::store::repos::Repo> {
    let mut conn = app.db.pool.acquire().await?;
    crate::store::repos::by_name(&mut conn, &format!("{owner}/{name}"))
        .await?
        .ok_or_else(|| {
            crate::error::ApiError::NotFound(format!(
                "no repository {owner}/{name}: Gantry learns repositories from their webhooks"
            ))
        })
}
