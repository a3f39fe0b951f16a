//! Webhook notifications in the API: what a build's were and how they
//! went, and the public key receivers check their `Signature` with.

use super::auth::Viewer;
use super::builds::visible_build;
use crate::error::{ApiError, ApiResult};
use crate::notifications::{self, NotificationView};
use crate::App;
use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

/// `GET /api/config`: shaped as Travis's `/config`, so a receiver written
/// for Travis checks Gantry's signatures when pointed here.
pub async fn config(State(app): State<App>) -> ApiResult<Json<Value>> {
    let public_key = app
        .notification_key
        .public_pem(&app.db)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(json!({
        "config": {
            "host": app.config.public_url,
            "notifications": { "webhook": { "public_key": public_key } },
        }
    })))
}

/// `GET /api/builds/{id}/notifications`: each webhook told of the build,
/// by the URL as written (secrets by name), with how it went.
pub async fn for_build(
    State(app): State<App>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> ApiResult<Json<Vec<NotificationView>>> {
    let mut conn = app.db.pool.acquire().await?;
    let build = visible_build(&app, &mut conn, &viewer, id).await?;
    Ok(Json(notifications::for_build(&mut conn, build.id).await?))
}
