//! Checking out a job's commit: a bare mirror per repository under the
//! runner's data dir (fetched into, so later jobs download only what is new),
//! and a fresh workspace per job fetched from the mirror at the pipeline's
//! `git.depth`. Uses the `git` command (see the README for the measurement
//! against libgit2). Credentials reach git through `GIT_ASKPASS` and the
//! environment, never through a URL, an argument, a log or an error message.

use gantry_pipeline::GitOptions;
pub use gantry_protocol::GitCredentials as Credentials;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CloneError(pub String);

pub struct Workspaces {
    root: PathBuf,
    /// One fetch at a time per mirror.
    locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

const ASKPASS: &str = "#!/bin/sh\ncase \"$1\" in\n  Username*) printf '%s\\n' \"$GANTRY_GIT_USERNAME\" ;;\n  *) printf '%s\\n' \"$GANTRY_GIT_PASSWORD\" ;;\nesac\n";

impl Workspaces {
    pub fn new(data_dir: &Path) -> Workspaces {
        Workspaces {
            root: data_dir.to_path_buf(),
            locks: Mutex::new(HashMap::new()),
        }
    }

    fn mirror_path(&self, clone_url: &str) -> PathBuf {
        let digest = hex::encode(Sha256::digest(clone_url.as_bytes()));
        self.root
            .join("mirrors")
            .join(format!("{}.git", &digest[..24]))
    }

    fn lock(&self, path: &Path) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(path.to_path_buf()).or_default().clone()
    }

    async fn git(
        &self,
        dir: &Path,
        args: &[&str],
        creds: Option<&Credentials>,
        secrets: &[&str],
    ) -> Result<String, CloneError> {
        let mut command = Command::new("git");
        command
            .args(args)
            .current_dir(dir)
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(c) = creds {
            let askpass = self.root.join("git-askpass.sh");
            if !askpass.exists() {
                std::fs::write(&askpass, ASKPASS)
                    .map_err(|e| CloneError(format!("cannot write {}: {e}", askpass.display())))?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let _ =
                        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700));
                }
            }
            command
                .env("GIT_ASKPASS", &askpass)
                .env("GANTRY_GIT_USERNAME", &c.username)
                .env("GANTRY_GIT_PASSWORD", &c.password);
        }
        let out = command.output().await.map_err(|e| {
            CloneError(format!(
                "cannot run git: {e}; is git installed on the runner?"
            ))
        })?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
        let mut message = String::from_utf8_lossy(&out.stderr).trim().to_string();
        for secret in secrets.iter().filter(|s| s.len() >= 4) {
            message = message.replace(secret, "[secure]");
        }
        Err(CloneError(message))
    }

    /// Fetches `commit` into the repository's mirror; returns the mirror's path.
    async fn update_mirror(
        &self,
        clone_url: &str,
        commit: &str,
        creds: Option<&Credentials>,
    ) -> Result<PathBuf, CloneError> {
        let mirror = self.mirror_path(clone_url);
        let lock = self.lock(&mirror);
        let _guard = lock.lock().await;
        let secrets: Vec<&str> = creds.map(|c| vec![c.password.as_str()]).unwrap_or_default();
        if !mirror.join("HEAD").exists() {
            std::fs::create_dir_all(&mirror)
                .map_err(|e| CloneError(format!("cannot create {}: {e}", mirror.display())))?;
            self.git(&mirror, &["init", "--bare", "-q"], None, &[])
                .await?;
            self.git(
                &mirror,
                &["config", "uploadpack.allowAnySHA1InWant", "true"],
                None,
                &[],
            )
            .await?;
            self.git(&mirror, &["remote", "add", "origin", clone_url], None, &[])
                .await?;
        }
        let has = |mirror: PathBuf| async move {
            Command::new("git")
                .args(["cat-file", "-e", &format!("{commit}^{{commit}}")])
                .current_dir(mirror)
                .output()
                .await
                .is_ok_and(|o| o.status.success())
        };
        if has(mirror.clone()).await {
            return Ok(mirror);
        }
        let fetched = self
            .git(
                &mirror,
                &[
                    "fetch",
                    "-q",
                    "--prune",
                    "origin",
                    "+refs/heads/*:refs/heads/*",
                    "+refs/tags/*:refs/tags/*",
                ],
                creds,
                &secrets,
            )
            .await;
        if !has(mirror.clone()).await {
            // A pull request's head, or a commit no branch points at.
            let direct = self
                .git(&mirror, &["fetch", "-q", "origin", commit], creds, &secrets)
                .await;
            if !has(mirror.clone()).await {
                let why = direct
                    .err()
                    .or(fetched.err())
                    .map(|e| e.0)
                    .unwrap_or_else(|| "the commit is not on the remote".into());
                return Err(CloneError(format!("cannot fetch {commit}: {why}")));
            }
        }
        Ok(mirror)
    }

    /// A fresh workspace at `commit`, at `dir`. Returns lines for the job's log.
    pub async fn checkout(
        &self,
        clone_url: &str,
        commit: &str,
        git: &GitOptions,
        dir: &Path,
        creds: Option<&Credentials>,
    ) -> Result<Vec<String>, CloneError> {
        let mut log = Vec::new();
        let started = std::time::Instant::now();
        let mirror = self.update_mirror(clone_url, commit, creds).await?;
        // An old tree can be large: remove it off the async runtime.
        let old = dir.to_path_buf();
        tokio::task::spawn_blocking(move || {
            if old.exists() {
                std::fs::remove_dir_all(&old)
            } else {
                Ok(())
            }
        })
        .await
        .map_err(|e| CloneError(e.to_string()))?
        .map_err(|e| CloneError(format!("cannot clear {}: {e}", dir.display())))?;
        std::fs::create_dir_all(dir)
            .map_err(|e| CloneError(format!("cannot create {}: {e}", dir.display())))?;
        let source = format!("file://{}", mirror.display());
        self.git(dir, &["init", "-q"], None, &[]).await?;
        let depth = git.depth.map(|d| format!("--depth={d}"));
        let mut fetch = vec!["fetch", "-q"];
        if let Some(d) = &depth {
            fetch.push(d);
        }
        fetch.extend([source.as_str(), commit]);
        self.git(dir, &fetch, None, &[]).await?;
        self.git(
            dir,
            &["checkout", "-q", "--detach", "FETCH_HEAD"],
            None,
            &[],
        )
        .await?;
        self.git(dir, &["remote", "add", "origin", clone_url], None, &[])
            .await?;
        let depth_note = git
            .depth
            .map(|d| format!(", depth {d}"))
            .unwrap_or_default();
        log.push(format!(
            "$ git checkout -qf {commit}   # {clone_url}{depth_note}, {:.1}s",
            started.elapsed().as_secs_f64()
        ));
        if git.submodules && dir.join(".gitmodules").exists() {
            let secrets: Vec<&str> = creds.map(|c| vec![c.password.as_str()]).unwrap_or_default();
            self.git(
                dir,
                &["submodule", "update", "--init", "--recursive", "-q"],
                creds,
                &secrets,
            )
            .await?;
            log.push("$ git submodule update --init --recursive".into());
        }
        Ok(log)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{:?}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    #[tokio::test]
    async fn checks_out_the_commit_at_the_requested_depth_and_reuses_the_mirror() {
        let origin = tempfile::tempdir().unwrap();
        git(origin.path(), &["init", "-q", "-b", "master"]);
        for i in 0..5 {
            std::fs::write(origin.path().join("f"), i.to_string()).unwrap();
            git(origin.path(), &["add", "f"]);
            git(origin.path(), &["commit", "-q", "-m", &format!("c{i}")]);
        }
        let sha = git(origin.path(), &["rev-parse", "HEAD~1"]);
        let data = tempfile::tempdir().unwrap();
        let ws = Workspaces::new(data.path());
        let url = origin.path().display().to_string();
        let dir = data.path().join("w1");
        let options = GitOptions {
            depth: Some(2),
            ..Default::default()
        };
        ws.checkout(&url, &sha, &options, &dir, None).await.unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("f")).unwrap(), "3");
        assert_eq!(git(&dir, &["rev-parse", "HEAD"]), sha);
        assert_eq!(
            git(&dir, &["rev-list", "--count", "HEAD"]),
            "2",
            "depth honoured"
        );
        // A newer commit: the mirror fetches only what is new.
        std::fs::write(origin.path().join("f"), "new").unwrap();
        git(origin.path(), &["commit", "-qam", "newer"]);
        let newest = git(origin.path(), &["rev-parse", "HEAD"]);
        let dir2 = data.path().join("w2");
        ws.checkout(
            &url,
            &newest,
            &GitOptions {
                depth: None,
                ..Default::default()
            },
            &dir2,
            None,
        )
        .await
        .unwrap();
        assert_eq!(
            git(&dir2, &["rev-list", "--count", "HEAD"]),
            "6",
            "depth: false is the whole history"
        );
        let err = ws
            .checkout(
                &url,
                &"0".repeat(40),
                &options,
                &data.path().join("w3"),
                None,
            )
            .await
            .unwrap_err();
        assert!(err.0.contains("cannot fetch"), "{err}");
    }

    #[tokio::test]
    async fn credentials_never_appear_in_errors() {
        let data = tempfile::tempdir().unwrap();
        let ws = Workspaces::new(data.path());
        let creds = Credentials {
            username: "x-access-token".into(),
            password: "ghs_supersecret123".into(),
        };
        let err = ws
            .checkout(
                "http://127.0.0.1:9/o/r.git",
                &"a".repeat(40),
                &GitOptions::default(),
                &data.path().join("w"),
                Some(&creds),
            )
            .await
            .unwrap_err();
        assert!(!err.0.contains("ghs_supersecret123"), "{err}");
        assert!(!format!("{creds:?}").contains("ghs_"));
    }
}
