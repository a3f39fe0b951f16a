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

/// Bodies past this size are checked (HMAC, UTF-8, JSON) on a blocking
/// thread: a 25 MB payload takes tens of milliseconds of one core, which
/// would hold up every other request on that runtime worker. A push is
/// 5–25 KB, checked where it is.
const CHECK_OFF_RUNTIME: usize = 256 * 1024;

/// What a delivery is, once checked.
enum Checked {
    /// A ping, with the repository it names (if a repository hook).
    Ping(Option<crate::store::repos::RepoFacts>),
    Trigger(github::Trigger),
}

/// Checks a delivery in order — signature first: nothing unsigned is
/// parsed — and reads it. Blocking work for a large body.
fn check(
    secret: &[u8],
    signature: Option<&str>,
    event: Option<&str>,
    delivery: Option<&str>,
    body: &[u8],
) -> Result<Checked, ApiError> {
    // 1. Authenticity first.
    if !signature::verify(secret, body, signature) {
        return Err(ApiError::Unauthorized(
            "missing or wrong X-Hub-Signature-256: the webhook's secret must equal GANTRY_GITHUB_WEBHOOK_SECRET".into(),
        ));
    }
    let event =
        event.ok_or_else(|| ApiError::BadRequest("missing X-GitHub-Event header".into()))?;
    delivery
        .filter(|d| !d.is_empty() && d.len() <= 100)
        .ok_or_else(|| {
            ApiError::BadRequest("missing or invalid X-GitHub-Delivery header".into())
        })?;

    // 2. Is it something we build? Decided from the payload alone, no network.
    // The fields read are checked as they are parsed; the ones skipped are
    // not, and the planner reads the stored payload back as text.
    if std::str::from_utf8(body).is_err() {
        return Err(ApiError::BadRequest("the body is not UTF-8".into()));
    }
    let refused = |e: github::PayloadError| match e {
        github::PayloadError::NotJson(_) => ApiError::BadRequest(e.to_string()),
        github::PayloadError::Invalid(e) => {
            ApiError::BadRequest(format!("invalid {event} payload: {e}"))
        }
    };
    if event == "ping" {
        return github::ping_repo(body).map(Checked::Ping).map_err(refused);
    }
    github::trigger(event, body)
        .map(Checked::Trigger)
        .map_err(refused)
}

#[tracing::instrument(skip_all, fields(delivery, event))]
pub async fn receive(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let event = header(&headers, "x-github-event");
    let delivery = header(&headers, "x-github-delivery");
    let signature = header(&headers, "x-hub-signature-256");
    let checked = if body.len() <= CHECK_OFF_RUNTIME {
        check(
            app.config.webhook_secret.as_bytes(),
            signature,
            event,
            delivery,
            &body,
        )
    } else {
        let secret = app.config.webhook_secret.clone();
        let [event, delivery, signature] =
            [event, delivery, signature].map(|h| h.map(str::to_string));
        let body = body.clone();
        tokio::task::spawn_blocking(move || {
            check(
                secret.as_bytes(),
                signature.as_deref(),
                event.as_deref(),
                delivery.as_deref(),
                &body,
            )
        })
        .await
        .map_err(|e| ApiError::Internal(Box::new(e)))?
    };
    let checked = match checked {
        Ok(checked) => checked,
        Err(e) => {
            if matches!(e, ApiError::Unauthorized(_)) {
                Metrics::add(&app.metrics.webhooks_rejected, 1);
            }
            return Err(e);
        }
    };
    // Both were checked to be there.
    let (Some(event), Some(delivery)) = (event, delivery) else {
        return Err(ApiError::BadRequest("missing GitHub headers".into()));
    };
    tracing::Span::current()
        .record("delivery", delivery)
        .record("event", event);

    let trigger = match checked {
        Checked::Ping(facts) => {
            // A ping builds nothing: counted with the ignored deliveries.
            Metrics::add(&app.metrics.webhooks_ignored, 1);
            let registered = match facts {
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
        Checked::Trigger(trigger) => trigger,
    };
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
