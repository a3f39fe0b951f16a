//! Real git repositories on disk, driven by the `git` command.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Repo {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Gantry Test")
        .env("GIT_AUTHOR_EMAIL", "test@gantry.local")
        .env("GIT_COMMITTER_NAME", "Gantry Test")
        .env("GIT_COMMITTER_EMAIL", "test@gantry.local")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Repo {
    /// An empty repository whose first branch is `master`.
    pub fn new() -> Repo {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_path_buf();
        git(&path, &["init", "-q", "-b", "master"]);
        Repo { _dir: dir, path }
    }

    /// Writes files and commits them; returns the commit's sha.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (name, content) in files {
            let file = self.path.join(name);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).expect("mkdir");
            }
            std::fs::write(file, content).expect("write file");
            git(&self.path, &["add", name]);
        }
        git(
            &self.path,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        self.head()
    }

    /// Marks a committed file executable (`git update-index --chmod=+x`)
    /// and commits that; returns the commit's sha.
    pub fn make_executable(&self, name: &str) -> String {
        git(&self.path, &["update-index", "--chmod=+x", name]);
        git(
            &self.path,
            &["commit", "-q", "-m", &format!("{name} is executable")],
        );
        self.head()
    }

    pub fn head(&self) -> String {
        git(&self.path, &["rev-parse", "HEAD"])
    }

    pub fn checkout_new_branch(&self, branch: &str) {
        git(&self.path, &["checkout", "-q", "-b", branch]);
    }

    /// Goes back to an existing branch.
    pub fn switch_to(&self, branch: &str) {
        git(&self.path, &["checkout", "-q", branch]);
    }

    /// A file's content at a commit, `None` when it does not exist there.
    pub fn show(path: &Path, commit: &str, file: &str) -> Option<String> {
        let out = Command::new("git")
            .args(["show", &format!("{commit}:{file}")])
            .current_dir(path)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The commit a ref points at, `None` when it does not exist.
    pub fn resolve(path: &Path, reference: &str) -> Option<String> {
        let out = Command::new("git")
            .args([
                "rev-parse",
                "--verify",
                "-q",
                &format!("{reference}^{{commit}}"),
            ])
            .current_dir(path)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Default for Repo {
    fn default() -> Self {
        Self::new()
    }
}
