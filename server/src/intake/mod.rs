//! `POST /hooks/github`: verify, record durably, acknowledge. Planning happens after.

pub mod github;
pub mod journal;
pub mod signature;

use crate::error::{ApiError, ApiResult};
use crate::metrics::Metrics;
use crate::store::deliveries::NewDelivery;
use crate::App;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

/// GitHub caps payloads at 25 MB.
pub const MAX_BODY: usize = 25 * 1024 * 1024;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[tracing::instrument(skip_all, fields(delivery, event))]
pub async fn receive(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    // 1. Authenticity first: nothing unsigned is parsed or stored.
    if !signature::verify(
        app.config.webhook_secret.as_bytes(),
        &body,
        header(&headers, "x-hub-signature-256"),
    ) {
        Metrics::add(&app.metrics.webhooks_rejected, 1);
        return Err(ApiError::Unauthorized(
            "missing or wrong X-Hub-Signature-256: the webhook's secret must equal GANTRY_GITHUB_WEBHOOK_SECRET".into(),
        ));
    }
    let event = header(&headers, "x-github-event")
        .ok_or_else(|| ApiError::BadRequest("missing X-GitHub-Event header".into()))?;
    let delivery = header(&headers, "x-github-delivery")
        .filter(|d| !d.is_empty() && d.len() <= 100)
        .ok_or_else(|| {
            ApiError::BadRequest("missing or invalid X-GitHub-Delivery header".into())
        })?;
    tracing::Span::current()
        .record("delivery", delivery)
        .record("event", event);

    // 2. Is it something we build? Decided from the payload alone, no network.
    // The fields read are checked as they are parsed; the ones skipped are
    // not, and the planner reads the stored payload back as text.
    if std::str::from_utf8(&body).is_err() {
        return Err(ApiError::BadRequest("the body is not UTF-8".into()));
    }
    let refused = |e: github::PayloadError| match e {
        github::PayloadError::NotJson(_) => ApiError::BadRequest(e.to_string()),
        github::PayloadError::Invalid(e) => {
            ApiError::BadRequest(format!("invalid {event} payload: {e}"))
        }
    };
    if event == "ping" {
        // A ping builds nothing: counted with the ignored deliveries.
        Metrics::add(&app.metrics.webhooks_ignored, 1);
        let registered = match github::ping_repo(&body).map_err(refused)? {
            Some(facts) => {
                let mut conn = app.db.pool.acquire().await?;
                crate::store::repos::upsert(&mut conn, &facts).await?;
                Some(facts.full_name)
            }
            None => None,
        };
        return Ok((
            StatusCode::OK,
            Json(json!({ "status": "pong", "repository": registered })),
        ));
    }
    let trigger = github::trigger(event, &body).map_err(refused)?;
    if let github::Trigger::Ignore(reason) = trigger {
        Metrics::add(&app.metrics.webhooks_ignored, 1);
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "status": "ignored", "reason": reason })),
        ));
    }

    // 3. Durable before acknowledged; a redelivery is recognised by its id.
    let stored = NewDelivery::received(delivery.to_string(), event.to_string(), body).await?;
    let new = app
        .journal
        .record(stored)
        .await
        .map_err(ApiError::Unavailable)?;
    if new {
        Metrics::add(&app.metrics.webhooks_accepted, 1);
        Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "status": "accepted", "delivery": delivery })),
        ))
    } else {
        Metrics::add(&app.metrics.webhooks_duplicate, 1);
        Ok((
            StatusCode::OK,
            Json(json!({ "status": "duplicate", "delivery": delivery })),
        ))
    }
}
