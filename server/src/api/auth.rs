//! Who may call: the admin token for write calls, a runner token for the runner API.

use crate::error::ApiError;
use crate::App;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The token of `Authorization: Bearer …`, or of `token …` as GitHub and
/// Travis's API clients send it.
fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get("authorization")?.to_str().ok()?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("token "))
        .map(str::trim)
}

/// Tokens are kept as SHA-256 hashes and compared in constant time.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn matches(hash: &[u8; 32], token: &str) -> bool {
    hash.ct_eq(&hash_token(token)).into()
}

/// A caller holding `GANTRY_ADMIN_TOKEN`.
pub struct Admin;

impl FromRequestParts<App> for Admin {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        let Some(hash) = &app.admin_token_hash else {
            return Err(ApiError::Forbidden(
                "write calls are disabled: set GANTRY_ADMIN_TOKEN on the server".into(),
            ));
        };
        match bearer(parts) {
            Some(token) if matches(hash, token) => Ok(Admin),
            Some(_) => Err(ApiError::Unauthorized("wrong admin token".into())),
            None => Err(ApiError::Unauthorized(
                "this call needs `Authorization: Bearer <GANTRY_ADMIN_TOKEN>`".into(),
            )),
        }
    }
}

/// A runner: holds `GANTRY_RUNNER_TOKEN` or the embedded runner's own token.
pub struct Runner;

impl FromRequestParts<App> for Runner {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or_else(|| {
            ApiError::Unauthorized(
                "runners authenticate with `Authorization: Bearer <GANTRY_RUNNER_TOKEN>`".into(),
            )
        })?;
        if app.runner_token_hashes.iter().any(|h| matches(h, token)) {
            Ok(Runner)
        } else {
            Err(ApiError::Unauthorized("wrong runner token".into()))
        }
    }
}

/// Whoever reads: anyone, or the admin. Private repositories (and every
/// repository with `GANTRY_PRIVATE_BY_DEFAULT`) are shown to the admin only,
/// until users sign in with GitHub.
pub struct Viewer {
    pub admin: bool,
    /// A browser signed in with GitHub: may see private repositories it can read.
    pub session: Option<super::session::Session>,
}

impl Viewer {
    /// `NotFound` (not 403: a private repository's existence is not revealed)
    /// unless the repository is public, the viewer is the admin, or a signed-in
    /// GitHub user GitHub lets read `repo`.
    pub async fn check(
        &self,
        app: &App,
        private: bool,
        repo: &str,
        what: &str,
    ) -> Result<(), ApiError> {
        if self.admin || (!private && !app.config.private_by_default) {
            return Ok(());
        }
        if let Some(session) = &self.session {
            if super::permission::of(app, session, repo).await
                >= super::permission::Permission::Pull
            {
                return Ok(());
            }
        }
        Err(ApiError::NotFound(format!("no {what}")))
    }
}

impl FromRequestParts<App> for Viewer {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        match (bearer(parts), &app.admin_token_hash) {
            (Some(token), Some(hash)) if matches(hash, token) => Ok(Viewer {
                admin: true,
                session: None,
            }),
            (Some(_), _) => Err(ApiError::Unauthorized("wrong admin token".into())),
            (None, _) => {
                let session = super::session::MaybeSession::from_request_parts(parts, app)
                    .await
                    .map(|s| s.0)
                    .unwrap_or(None);
                Ok(Viewer {
                    admin: session.as_ref().is_some_and(|s| s.admin),
                    session,
                })
            }
        }
    }
}
