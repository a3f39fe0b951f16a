//! Real GitHub webhook payloads from `shared/fixtures/github-webhooks`,
//! pointed at local repositories and signed like GitHub signs them.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::path::PathBuf;

/// `shared/fixtures/github-webhooks`, beside the repository.
pub fn fixtures_dir() -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/github-webhooks");
    assert!(
        dir.is_dir(),
        "webhook fixtures missing at {}: check out shared/ beside the repository",
        dir.display()
    );
    dir
}

/// A fixture payload, e.g. `fixture("push", "go-playground.push.json")`.
pub fn fixture(event: &str, file: &str) -> Value {
    let path = fixtures_dir().join(event).join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `sha256=<hex>` of `body` under `secret`, as in `X-Hub-Signature-256`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Points a push payload at `commit` of a local clone URL.
pub fn point_push(payload: &mut Value, clone_url: &str, commit: &str, message: &str) {
    payload["after"] = Value::String(commit.into());
    payload["repository"]["clone_url"] = Value::String(clone_url.into());
    if payload["head_commit"].is_object() {
        payload["head_commit"]["id"] = Value::String(commit.into());
        payload["head_commit"]["message"] = Value::String(message.into());
    }
}

/// Points a pull request payload's head at `commit`.
pub fn point_pull_request(payload: &mut Value, clone_url: &str, commit: &str) {
    payload["pull_request"]["head"]["sha"] = Value::String(commit.into());
    payload["pull_request"]["base"]["repo"]["clone_url"] = Value::String(clone_url.into());
    payload["repository"]["clone_url"] = Value::String(clone_url.into());
}
