//! Test-only helpers shared by the server and CLI tests.
//!
//! - [`github::GitHubDouble`]: a local HTTP double of the GitHub REST endpoints
//!   Gantry calls, serving files from real git repositories on disk and
//!   recording what it is sent.
//! - [`git::Repo`]: a git repository in a temp dir, with commits made by the real `git`.
//! - [`git_http::GitHttp`]: `git http-backend` behind HTTP Basic auth, like a private repository.
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
pub mod git_http;
pub mod github;
pub mod heroku;
pub mod irc;
pub mod npm_registry;
pub mod process;
pub mod proxy;
pub mod pypi;
pub mod registry;
pub mod smtp;
pub mod tls;
pub mod webhook;

use std::future::Future;
use std::time::Duration;

/// The test image `image` (scripts/test-images.sh builds it) is in the local
/// Docker engine; else the test stops saying how to build it.
pub fn require_image(image: &str) {
    let ok = std::process::Command::new("docker")
        .args(["image", "inspect", image])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "test image {image} is missing: run scripts/test-images.sh"
    );
}

/// A listener on a random 127.0.0.1 port, and its `http://` URL: where a double serves.
pub async fn bind() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    (listener, url)
}

/// Serves `app` on 127.0.0.1 until the returned task is dropped with its test.
pub async fn serve(app: axum::Router) -> (String, tokio::task::JoinHandle<()>) {
    let (listener, url) = bind().await;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, server)
}

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
