//! Headless Chromium, driven through Debian's `chromedriver` with the
//! WebDriver protocol (fantoccini): the web viewer's tests load real pages,
//! run their script, click, and take screenshots.

use crate::process::{free_port, Spawned};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub struct Browser {
    pub client: fantoccini::Client,
    _driver: Spawned,
}

impl Browser {
    pub async fn start() -> Browser {
        // rustls has two crypto providers in this build (ring, and aws-lc-rs
        // from the AWS SDK): name one, as Gantry's own clients do.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut command = Command::new("chromedriver");
        command.arg(format!("--port={port}"));
        let driver = Spawned::start("chromedriver", command, port, dir);
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"],
                "binary": "/usr/bin/chromium",
            }),
        );
        let client = fantoccini::ClientBuilder::rustls()
            .expect("TLS")
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect(
                "chromedriver session (is chromium installed? run scripts/install-test-deps.sh)",
            );
        Browser {
            client,
            _driver: driver,
        }
    }

    /// Runs `script` in the page and returns its result.
    pub async fn eval(&self, script: &str) -> serde_json::Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script `{script}` failed: {e}"))
    }

    /// Polls `script` until it returns `true`.
    pub async fn wait_for(&self, what: &str, script: &str, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.eval(script).await == serde_json::Value::Bool(true) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let html = self.client.source().await.unwrap_or_default();
                panic!(
                    "timed out after {timeout:?} waiting for {what}; page:\n{}",
                    &html[..html.len().min(4000)]
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves a screenshot as `target/browser-artifacts/<name>.png`; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/browser-artifacts");
        std::fs::create_dir_all(&dir).expect("artifact dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}
