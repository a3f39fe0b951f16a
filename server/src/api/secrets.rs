//! `PUT/GET/DELETE /api/repos/{owner}/{name}/secrets`: write-only values, admin only.

use super::auth::Admin;
use crate::error::{ApiError, ApiResult};
use crate::secrets::{self, SecretInfo};
use crate::App;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

#[derive(Deserialize)]
pub struct PutSecret {
    value: String,
    #[serde(default)]
    branches: Vec<String>,
}

pub async fn put(
    State(app): State<App>,
    _: Admin,
    Path((owner, name, secret)): Path<(String, String, String)>,
    Json(body): Json<PutSecret>,
) -> ApiResult<StatusCode> {
    let sealer = app.secrets.as_ref().ok_or_else(|| {
        ApiError::Conflict("secrets are disabled: set GANTRY_SECRET_KEY on the server".into())
    })?;
    if !gantry_pipeline::is_env_name(&secret) {
        return Err(ApiError::BadRequest(format!("`{secret}` is not a valid variable name: letters, digits and _, not starting with a digit")));
    }
    if body.value.is_empty() {
        return Err(ApiError::BadRequest("the value is empty".into()));
    }
    let repo = super::repo_by_path(&app, &owner, &name).await?;
    let mut conn = app.db.pool.acquire().await?;
    let created = secrets::put(
        &mut conn,
        sealer,
        repo.id,
        &secret,
        &body.value,
        &body.branches,
    )
    .await?;
    Ok(if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    })
}

pub async fn list(
    State(app): State<App>,
    _: Admin,
    Path((owner, name)): Path<(String, String)>,
) -> ApiResult<Json<Vec<SecretInfo>>> {
    let repo = super::repo_by_path(&app, &owner, &name).await?;
    let mut conn = app.db.pool.acquire().await?;
    Ok(Json(secrets::list(&mut conn, repo.id).await?))
}

pub async fn delete(
    State(app): State<App>,
    _: Admin,
    Path((owner, name, secret)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let repo = super::repo_by_path(&app, &owner, &name).await?;
    let mut conn = app.db.pool.acquire().await?;
    if secrets::delete(&mut conn, repo.id, &secret).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "no secret {secret} in {owner}/{name}"
        )))
    }
}
