//! What a signed-in user may do on a repository, as GitHub says: `push`
//! may restart and cancel builds, `admin` may edit secrets. The admin
//! (signed in with the admin token) may do everything. Answers are kept a
//! minute, so a page of buttons asks GitHub once.

use super::session::Session;
use crate::App;
use gantry_protocol::RepoId;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    None,
    Pull,
    Push,
    Admin,
}

/// Where a user's GitHub token is sealed (no repository: the AAD names it).
pub const TOKEN_SLOT: (RepoId, &str) = (RepoId(0), "github-oauth-token");

const KEEP: Duration = Duration::from_secs(60);

pub async fn of(app: &App, session: &Session, repo: &str) -> Permission {
    if session.admin {
        return Permission::Admin;
    }
    let (Some(sealed), Some(sealer)) = (&session.github_token, &app.secrets) else {
        return Permission::None;
    };
    let Ok(token) = sealer.open(TOKEN_SLOT.0, TOKEN_SLOT.1, sealed) else {
        return Permission::None;
    };
    let key = (session.user.clone(), repo.to_string());
    if let Some((permission, at)) = app
        .permissions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
    {
        if at.elapsed() < KEEP {
            return *permission;
        }
    }
    let permission = ask_github(app, &token, repo).await;
    let mut cache = app.permissions.lock().unwrap_or_else(|e| e.into_inner());
    // Answers are kept a minute: drop the stale ones before the map grows.
    if cache.len() > 4096 {
        cache.retain(|_, (_, at)| at.elapsed() < KEEP);
    }
    cache.insert(key, (permission, Instant::now()));
    permission
}

/// `GET /repos/{owner}/{name}` with the user's token: its `permissions`.
async fn ask_github(app: &App, token: &str, repo: &str) -> Permission {
    let url = format!("{}/repos/{repo}", app.config.github_api_url);
    let response = app
        .http
        .get(&url)
        .bearer_auth(token)
        .header("accept", "application/vnd.github+json")
        .header("user-agent", "gantry")
        .send()
        .await;
    let Ok(response) = response else {
        return Permission::None;
    };
    if !response.status().is_success() {
        return Permission::None;
    }
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let p = &body["permissions"];
    if p["admin"] == true {
        Permission::Admin
    } else if p["push"] == true || p["maintain"] == true {
        Permission::Push
    } else if p["pull"] == true {
        Permission::Pull
    } else {
        Permission::None
    }
}
