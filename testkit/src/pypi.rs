//! A package index for one test: pypiserver (PyPI), taking uploads over the
//! same legacy upload API as PyPI's (`POST /` with `:action=file_upload`),
//! behind a login kept in an htpasswd file. `scripts/install-test-deps.sh`
//! installs it beside moto.

use crate::process::{free_port, Spawned};
use std::path::PathBuf;
use std::process::Command;

pub struct PackageIndex {
    process: Spawned,
    packages: PathBuf,
}

use crate::aws::moto::venv_tool;

impl PackageIndex {
    /// An index that takes uploads from `user` with `password` only.
    pub fn start(user: &str, password: &str) -> PackageIndex {
        let dir = tempfile::tempdir().expect("temp dir");
        let packages = dir.path().join("packages");
        std::fs::create_dir(&packages).expect("packages dir");
        let htpasswd = dir.path().join("htpasswd");
        let made = Command::new(venv_tool("python"))
            .args([
                "-c",
                "import sys; from passlib.apache import HtpasswdFile as H; h = H(sys.argv[1], new=True); h.set_password(sys.argv[2], sys.argv[3]); h.save()",
            ])
            .arg(&htpasswd)
            .args([user, password])
            .status()
            .expect("run passlib; run scripts/install-test-deps.sh");
        assert!(made.success(), "cannot write the htpasswd file");
        let port = free_port();
        let mut command = Command::new(venv_tool("pypi-server"));
        command
            .args(["run", "-i", "127.0.0.1", "-p", &port.to_string()])
            .arg("-P")
            .arg(&htpasswd)
            .args(["-a", "update"])
            .arg(&packages);
        PackageIndex {
            process: Spawned::start("pypiserver", command, port, dir),
            packages,
        }
    }

    /// Where twine (and dpl's `server:`) uploads to.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.process.port)
    }

    /// The files the index holds, by name.
    pub fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.packages)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}
