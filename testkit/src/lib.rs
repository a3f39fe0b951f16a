//! Test-only helpers shared by the server and CLI tests.
//!
//! - [`github::GitHubDouble`]: a local HTTP double of the GitHub REST endpoints
//!   Gantry calls, serving files from real git repositories on disk and
//!   recording what it is sent.
//! - [`git::Repo`]: a git repository in a temp dir, with commits made by the real `git`.
//! - [`webhook`]: the real fixture payloads from `shared/fixtures`, pointed at local repos and signed.
//! - [`db`]: a SQLite or PostgreSQL database per test.
//! - [`browser::Browser`]: headless Chromium driven through chromedriver (WebDriver).
//! - [`registry::Registry`]: Debian's `docker-registry` on 127.0.0.1.
//! - [`aws`]: moto (S3, ECS, ECR) and emulators of Elastic Beanstalk and of an
//!   ECS service's deployment life cycle, on the services' real wire protocols.

pub mod aws;
pub mod browser;
pub mod db;
pub mod git;
pub mod github;
pub mod process;
pub mod registry;
pub mod webhook;

use std::future::Future;
use std::time::Duration;

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
