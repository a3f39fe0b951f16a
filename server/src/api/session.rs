//! Signed-in browsers: a session is a signed cookie (HMAC-SHA256 under a
//! key derived from the server's secrets), and every form that changes
//! something carries the session's CSRF token. Today the admin signs in
//! with `GANTRY_ADMIN_TOKEN`; GitHub sign-in will issue the same sessions.

use crate::error::ApiError;
use crate::App;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;

pub const COOKIE: &str = "gantry_session";
/// Carries the OAuth `state` from the redirect to GitHub to the callback.
pub const STATE_COOKIE: &str = "gantry_oauth_state";
/// Sessions last a week.
const LIFETIME_SECS: u64 = 7 * 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Who: `admin` for the admin token.
    pub user: String,
    pub admin: bool,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// The token forms must echo.
    pub csrf: String,
    /// A GitHub user's OAuth token, sealed with the secret key: it asks
    /// GitHub what the user may do on a repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github_token: Option<String>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The signing key: from the admin token and the secret key when set, else
/// random for this process (sessions then end with a restart).
pub fn key(admin_token: Option<&str>, secret_key: Option<&str>) -> [u8; 32] {
    if admin_token.is_none() && secret_key.is_none() {
        return rand::random();
    }
    let mut hasher = Sha256::new();
    hasher.update(b"gantry-session-v1\0");
    hasher.update(admin_token.unwrap_or("").as_bytes());
    hasher.update(b"\0");
    hasher.update(secret_key.unwrap_or("").as_bytes());
    hasher.finalize().into()
}

fn sign(key: &[u8; 32], payload: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(payload.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

impl Session {
    pub fn new(user: &str, admin: bool) -> Session {
        Session {
            user: user.to_string(),
            admin,
            exp: now() + LIFETIME_SECS,
            csrf: hex::encode(rand::random::<[u8; 16]>()),
            github_token: None,
        }
    }

    /// The cookie's value: `payload.signature`.
    pub fn seal(&self, key: &[u8; 32]) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default());
        let signature = sign(key, &payload);
        format!("{payload}.{signature}")
    }

    /// Reads a cookie value; `None` when forged, altered or expired.
    pub fn open(key: &[u8; 32], value: &str) -> Option<Session> {
        let (payload, signature) = value.split_once('.')?;
        let expected = sign(key, payload);
        if !bool::from(expected.as_bytes().ct_eq(signature.as_bytes())) {
            return None;
        }
        let session: Session =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        (session.exp > now()).then_some(session)
    }

    /// Whether a form's token is this session's.
    pub fn check_csrf(&self, token: &str) -> Result<(), ApiError> {
        if !token.is_empty() && bool::from(self.csrf.as_bytes().ct_eq(token.as_bytes())) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "the form's CSRF token is missing or wrong: reload the page and try again".into(),
            ))
        }
    }

    /// `Set-Cookie` for this session.
    pub fn cookie(&self, key: &[u8; 32], secure: bool) -> String {
        format!(
            "{COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={LIFETIME_SECS}{}",
            self.seal(key),
            if secure { "; Secure" } else { "" }
        )
    }
}

/// A short-lived signed cookie carrying the OAuth `state` between the
/// redirect to GitHub and the callback.
pub fn state_cookie(key: &[u8; 32], state: &str, secure: bool) -> String {
    format!(
        "{STATE_COOKIE}={state}.{}; Path=/login/github; HttpOnly; SameSite=Lax; Max-Age=600{}",
        sign(key, state),
        if secure { "; Secure" } else { "" }
    )
}

/// Whether the callback's `state` is the one this browser was sent off with.
pub fn check_state(key: &[u8; 32], parts_cookie: Option<&str>, state: &str) -> bool {
    let Some((sent, signature)) = parts_cookie.and_then(|c| c.split_once('.')) else {
        return false;
    };
    let expected = sign(key, sent);
    !state.is_empty()
        && bool::from(expected.as_bytes().ct_eq(signature.as_bytes()))
        && bool::from(sent.as_bytes().ct_eq(state.as_bytes()))
}

/// A cookie's value from request headers.
pub fn cookie_from(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// `Set-Cookie` that ends the session.
pub fn logout_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0")
}

/// The signed-in browser, if any (never a rejection: pages work signed out).
pub struct MaybeSession(pub Option<Session>);

impl FromRequestParts<App> for MaybeSession {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        Ok(MaybeSession(
            cookie_from(&parts.headers, COOKIE).and_then(|v| Session::open(&app.session_key, &v)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_survives_only_unaltered_and_unexpired() {
        let key = key(Some("admin-token"), None);
        let session = Session::new("admin", true);
        let sealed = session.seal(&key);
        assert_eq!(Session::open(&key, &sealed), Some(session.clone()));
        let other = self::key(Some("other-token"), None);
        assert_eq!(Session::open(&other, &sealed), None, "another server's key");
        let (payload, signature) = sealed.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&Session {
                user: "mallory".into(),
                ..session.clone()
            })
            .unwrap(),
        );
        assert_eq!(Session::open(&key, &format!("{forged}.{signature}")), None);
        assert_eq!(Session::open(&key, payload), None);
        let expired = Session {
            exp: 1,
            ..session.clone()
        };
        assert_eq!(Session::open(&key, &expired.seal(&key)), None);
        assert!(session.check_csrf(&session.csrf).is_ok());
        assert!(session.check_csrf("").is_err());
        assert!(session.check_csrf("nope").is_err());
    }
}
