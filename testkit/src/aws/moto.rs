//! moto's server (PyPI `moto[server]`), the real AWS wire protocols for S3,
//! ECS and ECR on 127.0.0.1. `scripts/install-test-deps.sh` installs it in a
//! virtualenv; `GANTRY_TEST_MOTO_SERVER` points elsewhere.

use crate::process::{free_port, Spawned};
use std::process::Command;

pub struct Moto {
    process: Spawned,
}

/// Where the test dependencies script puts `moto_server`.
/// A program of the virtualenv `scripts/install-test-deps.sh` makes beside
/// moto (its `python`, aiosmtpd's, pypiserver's `pypi-server`).
pub fn venv_tool(name: &str) -> String {
    moto_server().replace("moto_server", name)
}

pub fn moto_server() -> String {
    std::env::var("GANTRY_TEST_MOTO_SERVER").unwrap_or_else(|_| {
        let tools = std::env::var("GANTRY_TEST_TOOLS").unwrap_or_else(|_| {
            let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
            format!("{home}/.cache/gantry-test")
        });
        format!("{tools}/moto/bin/moto_server")
    })
}

impl Moto {
    /// Starts moto; `ecs_running` becomes `MOTO_ECS_SERVICE_RUNNING`, the
    /// running count moto reports for every ECS service.
    pub fn start(ecs_running: u32) -> Moto {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut command = Command::new(moto_server());
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_ECS_SERVICE_RUNNING", ecs_running.to_string())
            .current_dir(dir.path());
        Moto {
            process: Spawned::start("moto_server", command, port, dir),
        }
    }

    pub fn url(&self) -> String {
        self.process.url()
    }

    /// An S3 object's bytes (moto serves path-style requests without signatures).
    pub async fn object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        super::s3_get(&self.url(), bucket, key).await
    }
}
