//! Build caches (`cache:`), kept on the runner as Travis keeps them in S3:
//! each directory a job names is a tar archive under
//! `DATA_DIR/cache/<repository>/<scope>/<kind of job>/`, restored into the
//! next job of the same kind and stored again after its `script`.
//!
//! - Scope: a push reads and writes its branch's cache and falls back to
//!   the default branch's; a pull request writes only its own cache, and
//!   reads its own, then its target branch's, then the default branch's. So
//!   a pull request (from a fork above all) never changes what a branch
//!   build restores.
//! - Kind of job: the image, the matrix values, the env and the directories,
//!   so two jobs of one build keep apart what they built.
//! - Clearing: a user clears a repository's caches on the server, which
//!   counts the clears; each job carries the count (`cache_generation`),
//!   and the runner drops the repository's folder when it kept it under a
//!   smaller count, and keeps nothing from a job that started before a clear.
//! - The container only ever sees copies: archives are copied in before it
//!   starts, and copied out after only if they are plain files reached
//!   without a link.

use crate::job_files::{open_no_link, through};
use gantry_pipeline::Job;
use gantry_protocol::Assignment;
use sha2::{Digest, Sha256};
use std::io;
use std::path::{Path, PathBuf};

/// Where, under the job's `/gantry`, the container finds the archives to
/// restore (`in`) and leaves the ones to keep (`out`).
pub const IN: &str = "cache/in";
pub const OUT: &str = "cache/out";

/// The archive a directory is kept in, named by the directory as written.
pub fn archive_name(dir: &str) -> String {
    format!("{}.tar", &hex::encode(Sha256::digest(dir.as_bytes()))[..16])
}

#[derive(Clone)]
pub struct Caches {
    root: PathBuf,
    /// Bytes of archives kept at most; past it, the least recently used go.
    limit: u64,
}

/// One job's caches, worked out once from its assignment: owned, so the
/// blocking work that copies archives can take it off the async runtime.
pub struct JobCaches {
    caches: Caches,
    /// The repository's folder, and the generation of the caches the job may use.
    repo_folder: PathBuf,
    generation: u64,
    /// Folders the job reads, most specific first, and how the log names each.
    reads: Vec<(PathBuf, String)>,
    /// The folder it writes.
    writes: PathBuf,
    /// Each cached directory, as written, and its archive's name.
    archives: Vec<(String, String)>,
}

/// What a restore found.
#[derive(Debug, PartialEq, Eq)]
pub struct Restored {
    /// The directories restored, with the scope each came from.
    pub dirs: Vec<(String, String)>,
    pub bytes: u64,
    /// The repository's caches were cleared since this runner's last job of
    /// it, or after this job was assigned: none were restored for that.
    pub cleared: bool,
}

/// What a keep did.
#[derive(Debug, PartialEq, Eq)]
pub enum Kept {
    /// Archives of these many bytes were kept.
    Bytes(u64),
    /// Nothing: the caches were cleared after this job started, and what it
    /// built came from the caches cleared.
    ClearedMeanwhile,
}

/// Where a repository's folder records the generation its caches belong to.
const GENERATION_FILE: &str = "generation";

impl Caches {
    pub fn new(data_dir: &Path, limit: u64) -> Caches {
        Caches {
            root: data_dir.join("cache"),
            limit,
        }
    }

    /// Where `a` reads and writes its caches.
    pub fn for_job(&self, a: &Assignment) -> JobCaches {
        let repo = hex::encode(Sha256::digest(a.repo.full_name.as_bytes()));
        let kind = kind_of_job(&a.job);
        let repo_folder = self.root.join(&repo[..16]);
        let folder = |scope: &str| repo_folder.join(scope).join(&kind);
        JobCaches {
            caches: self.clone(),
            generation: a.repo.cache_generation,
            reads: reads(a)
                .into_iter()
                .map(|(scope, label)| (folder(&scope), label))
                .collect(),
            writes: folder(&writes(a).0),
            archives: a
                .job
                .cache
                .iter()
                .map(|dir| (dir.clone(), archive_name(dir)))
                .collect(),
            repo_folder,
        }
    }

    /// Removes the least recently used archives until those left fit the
    /// limit; returns how many bytes went.
    pub fn make_room(&self) -> io::Result<u64> {
        let mut archives = Vec::new();
        let mut total = 0;
        let mut folders = vec![self.root.clone()];
        while let Some(folder) = folders.pop() {
            let Ok(entries) = std::fs::read_dir(&folder) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    folders.push(entry.path());
                } else if meta.is_file() && entry.file_name() != GENERATION_FILE {
                    total += meta.len();
                    let used = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                    archives.push((used, meta.len(), entry.path()));
                }
            }
        }
        archives.sort();
        let mut freed = 0;
        for (_, size, path) in archives {
            if total <= self.limit {
                break;
            }
            std::fs::remove_file(&path)?;
            total -= size;
            freed += size;
        }
        Ok(freed)
    }
}

impl JobCaches {
    /// Copies the archives this job may read into `gantry_dir/cache/in`.
    /// Call before the job's container starts: nothing in `gantry_dir` is
    /// the container's yet.
    pub fn restore(&self, gantry_dir: &Path) -> io::Result<Restored> {
        let into = gantry_dir.join(IN);
        std::fs::create_dir_all(&into)?;
        let kept_under = self.kept_generation();
        // Either way the log says the caches were cleared: since the last
        // job, or after this one was assigned.
        let cleared = kept_under != self.generation;
        if kept_under < self.generation {
            self.drop_older()?;
        }
        let mut restored = Restored {
            dirs: Vec::new(),
            bytes: 0,
            cleared,
        };
        if kept_under > self.generation {
            // A clear came after this job was assigned: what is kept is newer.
            return Ok(restored);
        }
        for (dir, name) in &self.archives {
            for (folder, label) in &self.reads {
                let from = folder.join(name);
                // Only plain files: never what a link points at.
                let Ok(meta) = std::fs::symlink_metadata(&from) else {
                    continue;
                };
                if !meta.is_file() {
                    continue;
                }
                restored.bytes += std::fs::copy(&from, into.join(name))?;
                restored.dirs.push((dir.clone(), label.clone()));
                // Used now: the last to go when room is made.
                if let Ok(file) = std::fs::File::options().write(true).open(&from) {
                    let _ = file.set_modified(std::time::SystemTime::now());
                }
                break;
            }
        }
        Ok(restored)
    }

    /// Keeps the archives the job left in `gantry_dir/cache/out` as its own
    /// scope's cache; returns how many bytes were kept. Anything else there
    /// (a link, a folder, a name no directory of the job has) is left. Then
    /// makes room: see [`Caches::make_room`].
    pub fn keep(&self, gantry_dir: &Path) -> io::Result<Kept> {
        let kept_under = self.kept_generation();
        if kept_under > self.generation {
            return Ok(Kept::ClearedMeanwhile);
        }
        if kept_under < self.generation {
            self.drop_older()?;
        }
        let kept = self.take_out(gantry_dir)?;
        if kept > 0 {
            self.caches.make_room()?;
        }
        Ok(Kept::Bytes(kept))
    }

    /// The generation the repository's kept caches belong to (0: never cleared).
    fn kept_generation(&self) -> u64 {
        std::fs::read_to_string(self.repo_folder.join(GENERATION_FILE))
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Removes the repository's caches of an older generation and records
    /// this job's: the runner's part of a user clearing them.
    fn drop_older(&self) -> io::Result<()> {
        match std::fs::remove_dir_all(&self.repo_folder) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::create_dir_all(&self.repo_folder)?;
        // Written aside and renamed: a job beside this one reads a whole number.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let part = self.repo_folder.join(format!("{GENERATION_FILE}.{n}.part"));
        std::fs::write(&part, self.generation.to_string())?;
        std::fs::rename(&part, self.repo_folder.join(GENERATION_FILE))
    }

    /// Copies the job's archives out of `gantry_dir/cache/out`. The job's
    /// processes may still run and may swap a folder there for a link at
    /// any moment, so each step opens what it found without following
    /// links, and the next step goes through that open folder.
    fn take_out(&self, gantry_dir: &Path) -> io::Result<u64> {
        let Ok(cache) = open_no_link(&gantry_dir.join("cache"), true) else {
            return Ok(0);
        };
        let Ok(out) = open_no_link(&through(&cache, "out"), true) else {
            return Ok(0);
        };
        let to = &self.writes;
        std::fs::create_dir_all(to)?;
        let mut kept = 0;
        for (_, name) in &self.archives {
            let Ok(mut archive) = open_no_link(&through(&out, name), false) else {
                continue;
            };
            if !archive.metadata()?.is_file() {
                continue;
            }
            // Written aside, then renamed over the old archive: a restore
            // reads the old one or the new one, never half of one.
            let part = to.join(format!("{name}.part"));
            let mut copy = std::fs::File::create(&part)?;
            kept += io::copy(&mut archive, &mut copy)?;
            drop(copy);
            std::fs::rename(&part, to.join(name))?;
        }
        Ok(kept)
    }
}

/// The scope a job writes: its pull request's, else its branch's; and how
/// the log names it.
fn writes(a: &Assignment) -> (String, String) {
    match a.build.pull_request {
        Some(n) => (format!("pr-{n}"), format!("pull request #{n}")),
        None => branch(&a.build.branch),
    }
}

/// The scopes a job reads, most specific first.
fn reads(a: &Assignment) -> Vec<(String, String)> {
    let mut scopes = vec![writes(a)];
    for name in [&a.build.branch, &a.repo.default_branch] {
        let scope = branch(name);
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    scopes
}

/// A branch's scope: readable, and unique whatever characters it holds.
fn branch(name: &str) -> (String, String) {
    let readable: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    let digest = hex::encode(Sha256::digest(name.as_bytes()));
    (
        format!("branch-{readable}-{}", &digest[..8]),
        format!("branch {name}"),
    )
}

/// What makes two jobs' caches different: image, matrix values, env, and
/// the directories themselves.
fn kind_of_job(job: &Job) -> String {
    let mut hash = Sha256::new();
    hash.update(serde_json::to_vec(&job.image).unwrap_or_default());
    for (key, value) in &job.versions {
        hash.update(format!("\0{key}={value}"));
    }
    for var in &job.env {
        hash.update(format!("\0{}={}", var.name, var.raw));
    }
    for dir in &job.cache {
        hash.update(format!("\0{dir}"));
    }
    hex::encode(hash.finalize())[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_pipeline::{BuildContext, Catalog, Event};
    use gantry_protocol::{BuildId, BuildInfo, JobId, RepoInfo};

    fn assignment(branch: &str, pull_request: Option<i64>, yaml: &str) -> Assignment {
        let job = gantry_pipeline::parse(yaml)
            .pipeline
            .unwrap()
            .plan(&BuildContext::push(branch), &Catalog::default())
            .jobs
            .remove(0);
        Assignment {
            job_id: JobId(1),
            build_id: BuildId(1),
            number: "1.1".into(),
            lease: String::new(),
            lease_seconds: 60,
            log_offset: 0,
            repo: RepoInfo {
                full_name: "acme/app".into(),
                clone_url: "https://github.com/acme/app.git".into(),
                private: false,
                default_branch: "main".into(),
                cache_generation: 0,
            },
            build: BuildInfo {
                number: 1,
                event: if pull_request.is_some() {
                    Event::PullRequest
                } else {
                    Event::Push
                },
                branch: branch.into(),
                tag: None,
                commit: "0".repeat(40),
                message: String::new(),
                pull_request,
                head_branch: None,
                head_repo: None,
                fork: pull_request.is_some(),
                sender: "someone".into(),
                base_commit: None,
            },
            job,
            web_url: None,
            secrets: Vec::new(),
            git_credentials: None,
            notes: Vec::new(),
            github_api_url: None,
        }
    }

    const PIPELINE: &str = "image: x\ncache:\n  directories: [deps]\nscript: true\n";

    /// A job that ran: what it left in `cache/out`, then kept.
    fn run_and_keep(caches: &Caches, a: &Assignment, content: &str) -> Kept {
        let gantry_dir = tempfile::tempdir().unwrap();
        let out = gantry_dir.path().join(OUT);
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join(archive_name("deps")), content).unwrap();
        caches.for_job(a).keep(gantry_dir.path()).unwrap()
    }

    /// What a job would find in `cache/in`.
    fn restored(caches: &Caches, a: &Assignment) -> (Option<String>, Restored) {
        let gantry_dir = tempfile::tempdir().unwrap();
        let found = caches.for_job(a).restore(gantry_dir.path()).unwrap();
        let content =
            std::fs::read_to_string(gantry_dir.path().join(IN).join(archive_name("deps"))).ok();
        (content, found)
    }

    #[test]
    fn a_branch_reads_its_own_cache_then_the_default_branchs() {
        let data = tempfile::tempdir().unwrap();
        let caches = Caches::new(data.path(), u64::MAX);
        let feature = assignment("feature/x", None, PIPELINE);
        assert_eq!(restored(&caches, &feature).0, None);

        assert_eq!(
            run_and_keep(&caches, &assignment("main", None, PIPELINE), "main's"),
            Kept::Bytes(6)
        );
        let (content, found) = restored(&caches, &feature);
        assert_eq!(content.as_deref(), Some("main's"));
        assert_eq!(
            found.dirs,
            [("deps".to_string(), "branch main".to_string())]
        );

        run_and_keep(&caches, &feature, "feature's");
        assert_eq!(restored(&caches, &feature).0.as_deref(), Some("feature's"));
        assert_eq!(
            restored(&caches, &assignment("main", None, PIPELINE))
                .0
                .as_deref(),
            Some("main's")
        );
        // Another kind of job (another image) keeps its own.
        let other = assignment("main", None, &PIPELINE.replace("image: x", "image: y"));
        assert_eq!(restored(&caches, &other).0, None);
    }

    #[test]
    fn a_pull_request_reads_its_target_branch_and_writes_only_its_own() {
        let data = tempfile::tempdir().unwrap();
        let caches = Caches::new(data.path(), u64::MAX);
        let release = assignment("release", None, PIPELINE);
        run_and_keep(&caches, &release, "release's");
        let pr = assignment("release", Some(7), PIPELINE);
        let (content, found) = restored(&caches, &pr);
        assert_eq!(content.as_deref(), Some("release's"));
        assert_eq!(found.dirs[0].1, "branch release");

        run_and_keep(&caches, &pr, "the pull request's");
        assert_eq!(
            restored(&caches, &pr).0.as_deref(),
            Some("the pull request's")
        );
        assert_eq!(restored(&caches, &release).0.as_deref(), Some("release's"));
        assert_eq!(
            restored(&caches, &assignment("release", Some(8), PIPELINE))
                .0
                .as_deref(),
            Some("release's")
        );
    }

    #[test]
    fn only_plain_files_the_job_left_are_kept_and_restores_are_copies() {
        let data = tempfile::tempdir().unwrap();
        let caches = Caches::new(data.path(), u64::MAX);
        let a = assignment("main", None, PIPELINE);
        // A job that left a link to a file of the runner's keeps nothing.
        let secret = data.path().join("runner-secret");
        std::fs::write(&secret, "the runner's").unwrap();
        let gantry_dir = tempfile::tempdir().unwrap();
        let out = gantry_dir.path().join(OUT);
        std::fs::create_dir_all(&out).unwrap();
        std::os::unix::fs::symlink(&secret, out.join(archive_name("deps"))).unwrap();
        assert_eq!(
            caches.for_job(&a).keep(gantry_dir.path()).unwrap(),
            Kept::Bytes(0)
        );
        assert_eq!(restored(&caches, &a).0, None);

        // Nor one whose `cache/out` is a link.
        let gantry_dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(gantry_dir.path().join("cache")).unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join(archive_name("deps")), "x").unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), gantry_dir.path().join(OUT)).unwrap();
        assert_eq!(
            caches.for_job(&a).keep(gantry_dir.path()).unwrap(),
            Kept::Bytes(0)
        );

        // Nor one whose `cache` is a link to a folder with an `out` in it.
        let gantry_dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(elsewhere.path().join("out")).unwrap();
        std::fs::write(elsewhere.path().join("out").join(archive_name("deps")), "x").unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), gantry_dir.path().join("cache")).unwrap();
        assert_eq!(
            caches.for_job(&a).keep(gantry_dir.path()).unwrap(),
            Kept::Bytes(0)
        );
        assert_eq!(restored(&caches, &a).0, None);

        // A job that changes its restored archive changes its copy only.
        run_and_keep(&caches, &a, "kept");
        let gantry_dir = tempfile::tempdir().unwrap();
        caches.for_job(&a).restore(gantry_dir.path()).unwrap();
        std::fs::write(
            gantry_dir.path().join(IN).join(archive_name("deps")),
            "changed",
        )
        .unwrap();
        assert_eq!(restored(&caches, &a).0.as_deref(), Some("kept"));
    }

    #[test]
    fn past_the_limit_the_least_recently_used_caches_go() {
        let data = tempfile::tempdir().unwrap();
        // Room for two archives of 100 bytes.
        let caches = Caches::new(data.path(), 250);
        let (a, b, c) = (
            assignment("a", None, PIPELINE),
            assignment("b", None, PIPELINE),
            assignment("c", None, PIPELINE),
        );
        let hundred = "x".repeat(100);
        run_and_keep(&caches, &a, &hundred);
        std::thread::sleep(std::time::Duration::from_millis(20));
        run_and_keep(&caches, &b, &hundred);
        std::thread::sleep(std::time::Duration::from_millis(20));
        // Reading `a` makes it recent: `b` is now the oldest.
        assert!(restored(&caches, &a).0.is_some());
        std::thread::sleep(std::time::Duration::from_millis(20));
        run_and_keep(&caches, &c, &hundred);
        assert!(restored(&caches, &a).0.is_some());
        assert!(restored(&caches, &c).0.is_some());
        // `b` falls back to the default branch (`main`), which has none.
        assert!(restored(&caches, &b).0.is_none());
    }

    /// Generation `n` of the repository's caches.
    fn cleared(mut a: Assignment, n: u64) -> Assignment {
        a.repo.cache_generation = n;
        a
    }

    #[test]
    fn a_clear_drops_every_branchs_caches_and_a_job_from_before_it_keeps_nothing() {
        let data = tempfile::tempdir().unwrap();
        let caches = Caches::new(data.path(), u64::MAX);
        let (main, feature) = (
            assignment("main", None, PIPELINE),
            assignment("feature", None, PIPELINE),
        );
        run_and_keep(&caches, &main, "main's");
        run_and_keep(&caches, &feature, "feature's");

        // The first job after a clear finds none, and says why.
        let (content, found) = restored(&caches, &cleared(feature.clone(), 1));
        assert_eq!(content, None);
        assert!(found.cleared);
        // Nor does any other branch's job: the whole repository's went.
        let (content, found) = restored(&caches, &cleared(main.clone(), 1));
        assert_eq!(content, None);
        assert!(!found.cleared, "cleared once, said once");

        // A job assigned before the clear neither reads nor keeps.
        assert_eq!(
            run_and_keep(&caches, &main, "from before the clear"),
            Kept::ClearedMeanwhile
        );
        assert_eq!(restored(&caches, &main).0, None);
        assert_eq!(restored(&caches, &cleared(main.clone(), 1)).0, None);

        // After it, caches build up again. Room for the archive alone (3
        // bytes) never costs the record of the clear, which would drop it.
        let tight = Caches::new(data.path(), 3);
        run_and_keep(&tight, &cleared(main.clone(), 1), "new");
        let (content, found) = restored(&caches, &cleared(main.clone(), 1));
        assert_eq!(content.as_deref(), Some("new"));
        assert!(!found.cleared);
        // Another repository's caches were never touched.
        let mut other = assignment("main", None, PIPELINE);
        other.repo.full_name = "acme/other".into();
        run_and_keep(&caches, &other, "other's");
        restored(&caches, &cleared(main, 2));
        assert_eq!(restored(&caches, &other).0.as_deref(), Some("other's"));
    }
}
