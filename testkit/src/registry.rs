//! Debian's `docker-registry` (the CNCF Distribution registry) on 127.0.0.1,
//! with its storage in a temp dir. Docker pushes to 127.0.0.0/8 over plain
//! HTTP without configuration.

use crate::process::{free_port, Spawned};
use std::process::Command;

pub struct Registry {
    process: Spawned,
}

impl Registry {
    pub fn start() -> Registry {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("registry config");
        let mut command = Command::new("docker-registry");
        command.arg("serve").arg(&config);
        Registry {
            process: Spawned::start("docker-registry", command, port, dir),
        }
    }

    /// `127.0.0.1:PORT`, the prefix of image names pushed here.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.process.port)
    }

    /// The v2 API's `GET /v2/<name>/tags/list`.
    pub async fn tags(&self, name: &str) -> Vec<String> {
        let url = format!("{}/v2/{name}/tags/list", self.process.url());
        let Ok(response) = reqwest::get(&url).await else {
            return Vec::new();
        };
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        body["tags"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The manifest of `name:tag`, as the registry serves it to `docker pull`.
    pub async fn manifest(&self, name: &str, tag: &str) -> Option<serde_json::Value> {
        let url = format!("{}/v2/{name}/manifests/{tag}", self.process.url());
        let response = reqwest::Client::new()
            .get(&url)
            .header(
                "accept",
                "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
            )
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }
}
