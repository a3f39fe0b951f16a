//! Checking out a job's commit with libgit2 (git2): a bare mirror per
//! repository under the runner's data dir (fetched into, so later jobs
//! download only what is new), and a fresh workspace per job that borrows
//! the mirror's objects through git's `objects/info/alternates` instead of
//! copying them. The job container gets the mirror's objects read-only (see
//! [`Workspaces::objects_of`]), so a build can add objects to its own `.git`
//! but never change the ones later builds check out. Mirrors are only ever
//! fetched into, never pruned of objects, so a workspace's alternate stays
//! whole. The README has the measurement against the `git` CLI that chose
//! libgit2. Credentials reach libgit2 through its credentials callback, never
//! through a URL, a log or an error message. All of it runs off the async
//! runtime. A pull request's job gets its head merged into its base commit,
//! as Travis tests GitHub's merge ref (see [`merge`](Request::merge)).

use gantry_pipeline::GitOptions;
pub use gantry_protocol::GitCredentials as Credentials;
use git2::{
    build::CheckoutBuilder, AutotagOption, Cred, CredentialType, FetchOptions, FetchPrune, Oid,
    ProxyOptions, RemoteCallbacks, Repository, Signature, SubmoduleUpdateOptions, Time,
};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::snapshot::Snapshots;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CloneError(pub String);

pub struct Workspaces {
    root: PathBuf,
    /// One job at a time per mirror while it fetches, and per snapshot while it is written.
    locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
    /// Checkouts shared read-only between jobs of one commit (see `snapshot`).
    snapshots: Option<Arc<Snapshots>>,
}

impl Workspaces {
    pub fn new(data_dir: &Path) -> Workspaces {
        crate::git_tls::install();
        // Absolute: the path is written into workspaces and mounted.
        let root = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
        Workspaces {
            snapshots: Some(Arc::new(Snapshots::new(&root))),
            root,
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// Every job gets a full checkout of its own, as where overlays cannot be mounted.
    pub fn without_snapshots(mut self) -> Workspaces {
        self.snapshots = None;
        self
    }

    fn mirror_path(&self, clone_url: &str) -> PathBuf {
        let digest = hex::encode(Sha256::digest(clone_url.as_bytes()));
        self.root
            .join("mirrors")
            .join(format!("{}.git", &digest[..24]))
    }

    /// The objects a workspace of `clone_url` borrows: the job container
    /// needs them at this same path, read-only.
    pub fn objects_of(&self, clone_url: &str) -> PathBuf {
        self.mirror_path(clone_url).join("objects")
    }

    fn lock(&self, path: &Path) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        // A lock only the map holds guards nothing: one per commit would
        // otherwise pile up for the runner's whole life.
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        locks.entry(path.to_path_buf()).or_default().clone()
    }

    /// At start: unmounts the workspaces a killed run left under the data
    /// dir and removes its snapshots; how many were still mounted.
    pub async fn clear_leftovers(&self) -> usize {
        let (Some(snapshots), root) = (self.snapshots.clone(), self.root.clone()) else {
            return 0;
        };
        tokio::task::spawn_blocking(move || snapshots.clear_leftovers(&root))
            .await
            .unwrap_or(0)
    }

    /// Ends a job's workspace: unmounts it if it is an overlay, so the
    /// folder can be removed; the build's changes go with it.
    pub async fn release(&self, dir: &Path) {
        if let Some(snapshots) = self.snapshots.clone() {
            let dir = dir.to_path_buf();
            let _ = tokio::task::spawn_blocking(move || snapshots.release(&dir)).await;
        }
    }

    /// A fresh workspace at `commit`, at `dir` (with `merge_into`, a pull
    /// request's base commit: `commit` merged into it). Returns lines for the
    /// job's log and the commit checked out.
    ///
    /// Dropping the future (a canceled job) stops a fetch in flight at its
    /// next progress report; the mirror stays locked until the blocking work
    /// has really ended.
    pub async fn checkout(
        &self,
        clone_url: &str,
        commit: &str,
        merge_into: Option<&str>,
        git: &GitOptions,
        dir: &Path,
        creds: Option<&Credentials>,
    ) -> Result<Checkout, CloneError> {
        let started = std::time::Instant::now();
        let oid = |commit: &str| {
            Oid::from_str(commit)
                .ok()
                .filter(|_| commit.len() == 40)
                .ok_or_else(|| CloneError(format!("{commit:?} is not a commit id")))
        };
        let commit = oid(commit)?;
        let merge_into = merge_into.map(oid).transpose()?;
        let canceled = Arc::new(AtomicBool::new(false));
        let _cancel_on_drop = CancelOnDrop(canceled.clone());
        let mut request = Request {
            mirror: self.mirror_path(clone_url),
            clone_url: clone_url.to_string(),
            head: commit,
            commit,
            merge_into,
            merged: false,
            notes: Vec::new(),
            depth: git.depth,
            submodules: git.submodules,
            dir: dir.to_path_buf(),
            creds: creds.cloned(),
            canceled,
        };
        // The snapshot's lock first, then the mirror's: a second job of the
        // commit waits for the first one's snapshot without holding the mirror.
        let snapshots = self.snapshots.clone();
        let snapshot_guard = match &snapshots {
            Some(s) => Some(self.lock(&s.path_of(&request.key())).lock_owned().await),
            None => None,
        };
        let mirror_guard = self.lock(&request.mirror).lock_owned().await;
        let (mut log, request) = tokio::task::spawn_blocking(move || {
            let refs = request.update_mirror_and_list_refs();
            drop(mirror_guard);
            let made = refs.and_then(|refs| request.make(&refs, snapshots.as_deref()));
            drop(snapshot_guard);
            made.map(|log| (log, request))
        })
        .await
        .map_err(|e| CloneError(format!("the checkout stopped: {e}")))??;
        let depth_note = git
            .depth
            .map(|d| format!(", depth {d}"))
            .unwrap_or_default();
        let what = match request.merge_into {
            Some(base) if request.merged => {
                format!("{commit} merged into {base}; {clone_url}{depth_note}")
            }
            _ => format!("{clone_url}{depth_note}"),
        };
        log.insert(
            0,
            format!(
                "$ git checkout -qf {}   # {what}, {:.1}s",
                request.commit,
                started.elapsed().as_secs_f64()
            ),
        );
        log.extend(request.notes);
        Ok(Checkout {
            log,
            commit: request.commit.to_string(),
        })
    }
}

impl Drop for Workspaces {
    /// A runner that stops leaves no workspace mounted.
    fn drop(&mut self) {
        if let Some(snapshots) = &self.snapshots {
            snapshots.release_all();
        }
    }
}

struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A workspace made: lines for the job's log, and the commit checked out
/// (for a pull request, the merge commit).
#[derive(Debug)]
pub struct Checkout {
    pub log: Vec<String>,
    pub commit: String,
}

/// One job's checkout, owned so it can run on a blocking thread.
struct Request {
    mirror: PathBuf,
    clone_url: String,
    /// The commit asked for (a pull request's head).
    head: Oid,
    /// What is checked out: `head`, or once merged, the merge commit.
    commit: Oid,
    /// A pull request's base commit, to merge `head` into.
    merge_into: Option<Oid>,
    merged: bool,
    /// Lines for the job's log after the checkout's own.
    notes: Vec<String>,
    depth: Option<u32>,
    submodules: bool,
    dir: PathBuf,
    creds: Option<Credentials>,
    canceled: Arc<AtomicBool>,
}

impl Request {
    /// What names this checkout's snapshot: everything that shapes the files.
    fn key(&self) -> String {
        let inputs = match self.merge_into {
            Some(base) => format!("{}\n{}\n{base}", self.family(), self.head),
            None => format!("{}\n{}", self.family(), self.head),
        };
        hex::encode(&Sha256::digest(inputs.as_bytes())[..12])
    }

    /// Snapshots of one family differ only in their commit.
    fn family(&self) -> String {
        format!("{}\n{:?}\n{}", self.clone_url, self.depth, self.submodules)
    }

    /// Under the mirror's lock: fetch what is missing, and the branches (as
    /// `origin/*`) and tags for the workspace's `packed-refs` file.
    fn update_mirror_and_list_refs(&mut self) -> Result<String, CloneError> {
        let mirror = self.update_mirror()?;
        if let Some(base) = self.merge_into {
            self.merge(&mirror, base)?;
        }
        let mut refs = Vec::new();
        for reference in mirror
            .references()
            .map_err(|e| self.error("cannot list refs", e))?
            .flatten()
        {
            let (Some(name), Some(target)) = (reference.name(), reference.target()) else {
                continue;
            };
            let local = match name.strip_prefix("refs/heads/") {
                Some(branch) => format!("refs/remotes/origin/{branch}"),
                None if name.starts_with("refs/tags/") => name.to_string(),
                None => continue,
            };
            refs.push(format!("{target} {local}\n"));
        }
        refs.sort();
        Ok(refs.concat())
    }

    /// The workspace at `dir`: an overlay on this commit's snapshot (written
    /// first if no job has), or where overlays do not work, a checkout of its own.
    fn make(&self, refs: &str, snapshots: Option<&Snapshots>) -> Result<Vec<String>, CloneError> {
        if let Some(snapshots) = snapshots {
            snapshots.release(&self.dir);
        }
        clear(&self.dir)?;
        let Some((snapshots, claim)) = snapshots.and_then(|s| Some((s, s.claim(&self.key())?)))
        else {
            return self.write_repository(&self.dir, refs);
        };
        let mut log = Vec::new();
        if claim.exists {
            log.push(
                "  (the files of an earlier job of this commit, under a layer of this job's own)"
                    .into(),
            );
        } else {
            let staging = snapshots.staging(&claim);
            let written = self
                .write_snapshot(&staging, refs, snapshots)
                .and_then(|lines| {
                    snapshots
                        .publish(&claim, &staging, &self.family())
                        .map_err(|e| {
                            CloneError(format!(
                                "cannot keep the checkout at {}: {e}",
                                claim.path.display()
                            ))
                        })?;
                    Ok(lines)
                });
            match written {
                Ok(lines) => log = lines,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&staging);
                    snapshots.unclaim(&claim);
                    return Err(e);
                }
            }
        }
        if snapshots.mount(&claim, &self.dir).is_err() {
            clear(&self.dir)?;
            return self.write_repository(&self.dir, refs);
        }
        if claim.exists {
            // Today's branches and tags, not those of the snapshot's day.
            write_file(&self.dir.join(".git/packed-refs"), refs)?;
        }
        Ok(log)
    }

    /// A new snapshot at `staging`: made from the family's newest snapshot
    /// where there is one, else checked out in full.
    fn write_snapshot(
        &self,
        staging: &Path,
        refs: &str,
        snapshots: &Snapshots,
    ) -> Result<Vec<String>, CloneError> {
        if let Some(base) = snapshots.base(&self.family()) {
            let derived = self.derive_repository(staging, refs, &base.path);
            snapshots.unclaim(&base);
            match derived {
                Ok(Some(log)) => return Ok(log),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot make a snapshot from the previous one; checking out in full")
                }
            }
            clear(staging)?;
        }
        self.write_repository(staging, refs)
    }

    /// The checkout of this commit at `dir`, made from `base`, a snapshot of
    /// another commit of the repository: files that did not change are hard
    /// links to the base's (both stay read-only below overlays, so sharing an
    /// inode is safe) and each changed path is removed and written anew, never
    /// written through a link. `None` when the change touches submodules or
    /// `.gitattributes` (which change how unchanged files are written).
    fn derive_repository(
        &self,
        dir: &Path,
        refs: &str,
        base: &Path,
    ) -> Result<Option<Vec<String>>, CloneError> {
        let old_repo = Repository::open(base).map_err(|e| self.error("cannot open", e))?;
        let old_commit = old_repo
            .head()
            .and_then(|h| h.peel_to_commit())
            .map_err(|e| self.error("cannot read the snapshot's commit", e))?;
        let old = old_commit
            .tree()
            .map_err(|e| self.error("cannot read the snapshot's commit", e))?;
        let new = old_repo
            .find_commit(self.commit)
            .and_then(|c| c.tree())
            .map_err(|e| self.error("cannot read the commit", e))?;
        let diff = old_repo
            .diff_tree_to_tree(Some(&old), Some(&new), None)
            .map_err(|e| self.error("cannot compare commits", e))?;
        let mut changed: Vec<PathBuf> = diff
            .deltas()
            .flat_map(|d| [d.old_file().path(), d.new_file().path()])
            .flatten()
            .map(Path::to_path_buf)
            .collect();
        changed.sort();
        changed.dedup();
        let shapes_files = |p: &PathBuf| {
            p.file_name()
                .is_some_and(|n| n == ".gitattributes" || n == ".gitmodules")
        };
        if base.join(".gitmodules").exists() || changed.iter().any(shapes_files) {
            return Ok(None);
        }
        copy_tree(base, dir, Files::Link)
            .map_err(|e| CloneError(format!("cannot link {}: {e}", dir.display())))?;
        for path in &changed {
            let path = dir.join(path);
            let removed = match path.symlink_metadata() {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
                Ok(_) => std::fs::remove_file(&path),
                Err(_) => Ok(()),
            };
            removed.map_err(|e| CloneError(format!("cannot remove {}: {e}", path.display())))?;
            // A folder whose last file went goes too, as in a checkout.
            let mut parent = path.parent();
            while let Some(folder) = parent.filter(|p| *p != dir) {
                if std::fs::remove_dir(folder).is_err() {
                    break;
                }
                parent = folder.parent();
            }
        }
        let repo = Repository::open(dir).map_err(|e| self.error("cannot open", e))?;
        write_file(&dir.join(".git/packed-refs"), refs)?;
        let _ = std::fs::remove_file(dir.join(".git/shallow"));
        if let Some(depth) = self.depth {
            self.cut_history(dir, &repo, depth)?;
        }
        // The index lists the new commit's tree; the changed paths are
        // written from it (through git's filters, as a checkout writes them).
        let tree = repo
            .find_commit(self.commit)
            .and_then(|c| c.tree())
            .map_err(|e| self.error("cannot read the commit", e))?;
        let mut index = repo
            .index()
            .map_err(|e| self.error("cannot read the index", e))?;
        index
            .read_tree(&tree)
            .map_err(|e| self.error("cannot read the commit", e))?;
        repo.set_head_detached(self.commit)
            .map_err(|e| self.error("cannot check out", e))?;
        if !changed.is_empty() {
            let mut checkout = CheckoutBuilder::new();
            checkout.force().disable_pathspec_match(true);
            for path in &changed {
                checkout.path(path.as_path());
            }
            repo.checkout_index(Some(&mut index), Some(&mut checkout))
                .map_err(|e| self.error("cannot check out", e))?;
        }
        index
            .write()
            .map_err(|e| self.error("cannot write the index", e))?;
        Ok(Some(vec![format!(
            "  ({} changed path(s) written, the rest shared with the checkout of {:.7})",
            changed.len(),
            old_commit.id().to_string()
        )]))
    }

    /// A new repository at `dir` that reads the mirror's objects and has its
    /// branches and tags, checked out at the commit with its submodules.
    fn write_repository(&self, dir: &Path, refs: &str) -> Result<Vec<String>, CloneError> {
        let repo = Repository::init(dir).map_err(|e| self.error("cannot create", e))?;
        // Borrowed, not copied: a checkout costs the files it writes, not
        // the repository's whole history. New objects a build makes go into
        // its own `.git/objects`; the mirror is read-only in its container.
        let objects = self.mirror.join("objects");
        std::fs::create_dir_all(dir.join(".git/objects/info"))
            .map_err(|e| CloneError(format!("cannot create {}: {e}", dir.display())))?;
        write_file(
            &dir.join(".git/objects/info/alternates"),
            &format!("{}\n", objects.display()),
        )?;
        // Branches and tags in one `packed-refs` file: a repository with
        // thousands of tags costs one write, not thousands.
        write_file(&dir.join(".git/packed-refs"), refs)?;
        repo.remote("origin", &self.clone_url)
            .map_err(|e| self.error("cannot add origin", e))?;
        if let Some(depth) = self.depth {
            self.cut_history(dir, &repo, depth)?;
        }
        repo.set_head_detached(self.commit)
            .map_err(|e| self.error("cannot check out", e))?;
        repo.checkout_head(Some(CheckoutBuilder::new().force()))
            .map_err(|e| self.error("cannot check out", e))?;
        let mut log = Vec::new();
        if self.submodules && dir.join(".gitmodules").exists() {
            self.update_submodules(&repo)?;
            log.push("$ git submodule update --init --recursive".into());
        }
        Ok(log)
    }

    fn update_mirror(&self) -> Result<Repository, CloneError> {
        let mirror = if self.mirror.join("HEAD").exists() {
            Repository::open_bare(&self.mirror)
        } else {
            std::fs::create_dir_all(&self.mirror)
                .map_err(|e| CloneError(format!("cannot create {}: {e}", self.mirror.display())))?;
            Repository::init_bare(&self.mirror)
        }
        .map_err(|e| self.error("cannot open the mirror", e))?;
        // The commit, and a pull request's base to merge it into.
        let wanted: Vec<Oid> = [Some(self.commit), self.merge_into]
            .into_iter()
            .flatten()
            .collect();
        let missing = |repo: &Repository| -> Vec<Oid> {
            wanted
                .iter()
                .copied()
                .filter(|id| repo.find_commit(*id).is_err())
                .collect()
        };
        if missing(&mirror).is_empty() {
            return Ok(mirror);
        }
        let mut remote = mirror
            .remote_anonymous(&self.clone_url)
            .map_err(|e| self.error("cannot fetch", e))?;
        let branches = remote.fetch(
            &["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"],
            Some(&mut self.fetch_options(&self.clone_url, true)),
            None,
        );
        // A pull request's head, or a commit no branch points at (a base
        // the branch has moved past).
        // The commit's own error is the one to report: a base fetched after
        // it must not replace it.
        let mut direct = Ok(());
        for id in missing(&mirror) {
            let fetched = remote.fetch(
                &[id.to_string()],
                Some(&mut self.fetch_options(&self.clone_url, false)),
                None,
            );
            if id == self.commit {
                direct = fetched;
            }
        }
        // A base that is gone is noted by `merge`; the commit must be there.
        if mirror.find_commit(self.commit).is_err() {
            let why = direct
                .err()
                .or(branches.err())
                .map(|e| self.masked(e.message()))
                .unwrap_or_else(|| "the commit is not on the remote".into());
            return Err(CloneError(format!("cannot fetch {}: {why}", self.commit)));
        }
        drop(remote);
        Ok(mirror)
    }

    /// Merges the head into `base` in the mirror, as GitHub makes a pull
    /// request's merge ref: a commit with the two as parents, named
    /// "Merge HEAD into BASE". Its author and time are fixed (Gantry, the
    /// head's commit time), so every job of the build gets the same commit
    /// and shares one snapshot. Conflicts fail the job, naming the files.
    fn merge(&mut self, mirror: &Repository, base: Oid) -> Result<(), CloneError> {
        let Ok(base_commit) = mirror.find_commit(base) else {
            self.notes.push(format!(
                "The pull request's base commit {base} is not on the remote (was its branch pushed over?): testing the pull request's head as it is."
            ));
            return Ok(());
        };
        let head = mirror
            .find_commit(self.head)
            .map_err(|e| self.error("cannot read the commit", e))?;
        let mut index = mirror
            .merge_commits(&base_commit, &head, None)
            .map_err(|e| self.error("cannot merge the pull request", e))?;
        if index.has_conflicts() {
            let mut paths: Vec<String> = index
                .conflicts()
                .map_err(|e| self.error("cannot list the conflicts", e))?
                .flatten()
                .filter_map(|c| c.our.or(c.their).or(c.ancestor))
                .map(|entry| String::from_utf8_lossy(&entry.path).into_owned())
                .collect();
            paths.dedup();
            let more = paths.len().saturating_sub(10);
            paths.truncate(10);
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            return Err(CloneError(format!(
                "the pull request does not merge into its base {base}: conflicts in {}{more}; merge the base branch into it (or rebase it) and push again",
                paths.join(", ")
            )));
        }
        let tree = index
            .write_tree_to(mirror)
            .and_then(|id| mirror.find_tree(id))
            .map_err(|e| self.error("cannot write the merge", e))?;
        let when = Time::new(head.committer().when().seconds(), 0);
        let merged = Signature::new("Gantry", "gantry@localhost", &when)
            .and_then(|gantry| {
                mirror.commit(
                    None,
                    &gantry,
                    &gantry,
                    &format!("Merge {} into {base}\n", self.head),
                    &tree,
                    &[&base_commit, &head],
                )
            })
            .map_err(|e| self.error("cannot write the merge", e))?;
        self.commit = merged;
        self.merged = true;
        Ok(())
    }

    fn fetch_options(&self, url: &str, prune: bool) -> FetchOptions<'_> {
        let mut callbacks = RemoteCallbacks::new();
        // Credentials go only to the host the server gave them for: not to
        // a submodule elsewhere, nor to where a redirect leads.
        let creds = self
            .creds
            .as_ref()
            .filter(|_| same_host(url, &self.clone_url));
        let mut login = creds.map(|c| HostLogin::new(&self.clone_url, &c.username, &c.password));
        callbacks.credentials(move |asking, _user, allowed| {
            let Some(login) = login.as_mut() else {
                return Err(git2::Error::from_str(
                    "the repository asks for a login and the server gave this job none \
                     (a private repository needs GANTRY_GITHUB_TOKEN or a GitHub App on the server)",
                ));
            };
            login.offer(asking, allowed).map_err(|refusal| {
                git2::Error::from_str(match refusal {
                    Refusal::OtherHost => {
                        "the remote sent the fetch to another host, which asks for a login; \
                         Gantry gives this job's credentials only to the host of its clone URL"
                    }
                    Refusal::Refused => {
                        "the remote refused the credentials Gantry has for this repository"
                    }
                })
            })
        });
        let canceled = self.canceled.clone();
        callbacks.transfer_progress(move |_| !canceled.load(Ordering::Relaxed));
        let mut options = FetchOptions::new();
        options.remote_callbacks(callbacks);
        options.proxy_options(proxy());
        options.download_tags(AutotagOption::None);
        if prune {
            options.prune(FetchPrune::On);
        }
        options
    }

    /// Travis clones with `--depth`; the mirror has the whole history, so the
    /// depth is kept the way git keeps it: the commits at the cut are listed
    /// in `.git/shallow`, and `git log` in the job stops there.
    fn cut_history(&self, dir: &Path, repo: &Repository, depth: u32) -> Result<(), CloneError> {
        let mut seen = HashSet::from([self.commit]);
        let mut queue = VecDeque::from([(self.commit, 1u32)]);
        let mut shallow = Vec::new();
        while let Some((id, level)) = queue.pop_front() {
            let commit = repo
                .find_commit(id)
                .map_err(|e| self.error("cannot read history", e))?;
            if commit.parent_count() == 0 {
                continue;
            }
            if level >= depth {
                shallow.push(id.to_string());
                continue;
            }
            for parent in commit.parent_ids() {
                if seen.insert(parent) {
                    queue.push_back((parent, level + 1));
                }
            }
        }
        if shallow.is_empty() {
            return Ok(());
        }
        shallow.sort();
        shallow.push(String::new());
        write_file(&dir.join(".git/shallow"), &shallow.join("\n"))
    }

    fn update_submodules(&self, repo: &Repository) -> Result<(), CloneError> {
        for mut submodule in repo
            .submodules()
            .map_err(|e| self.error("cannot read .gitmodules", e))?
        {
            let url = submodule.url().unwrap_or_default().to_string();
            let name = submodule.name().unwrap_or_default().to_string();
            let mut options = SubmoduleUpdateOptions::new();
            options.fetch(self.fetch_options(&url, false));
            submodule.update(true, Some(&mut options)).map_err(|e| {
                CloneError(format!(
                    "cannot update submodule {name}: {}",
                    self.masked(e.message())
                ))
            })?;
            let inner = submodule
                .open()
                .map_err(|e| self.error("cannot open a submodule", e))?;
            self.update_submodules(&inner)?;
        }
        Ok(())
    }

    fn masked(&self, message: &str) -> String {
        let message = explained(message);
        match &self.creds {
            Some(c) if c.password.len() >= 4 => message.replace(&c.password, "[secure]"),
            _ => message,
        }
    }

    fn error(&self, what: &str, e: git2::Error) -> CloneError {
        CloneError(format!("{what}: {}", self.masked(e.message())))
    }
}

/// libgit2's message, with what to do where libgit2's own says little.
fn explained(message: &str) -> String {
    if message.contains("proxy authentication required") {
        return "the proxy asks for a login and refused the one in its URL, or got none: \
                give it as https_proxy=http://USER:PASSWORD@HOST:PORT in the runner's environment \
                (or git's http.proxy)"
            .to_string();
    }
    message.to_string()
}

/// Removes what an earlier attempt left at `dir`, mounted or not.
fn clear(dir: &Path) -> Result<(), CloneError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .map_err(|e| CloneError(format!("cannot clear {}: {e}", dir.display())))?;
    }
    Ok(())
}

/// How [`copy_tree`] makes each file.
#[derive(Clone, Copy, PartialEq)]
enum Files {
    Link,
    Copy,
}

/// `to` as a copy of the tree at `from`, its files hard links or copies.
/// A `.git` folder is always copied: the new checkout rewrites its index and refs.
fn copy_tree(from: &Path, to: &Path, files: Files) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            let inner = match entry.file_name() == ".git" {
                true => Files::Copy,
                false => files,
            };
            copy_tree(&source, &target, inner)?;
        } else if files == Files::Link {
            std::fs::hard_link(&source, &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&source)?, &target)?;
        } else {
            std::fs::copy(&source, &target)?;
        }
    }
    Ok(())
}

fn write_file(path: &Path, text: &str) -> Result<(), CloneError> {
    std::fs::write(path, text)
        .map_err(|e| CloneError(format!("cannot write {}: {e}", path.display())))
}

/// The proxy git itself would use: git's `http.proxy`, else `https_proxy` /
/// `http_proxy`, minus the hosts `no_proxy` lists. For clones and pushes.
pub(crate) fn proxy() -> ProxyOptions<'static> {
    let mut proxy = ProxyOptions::new();
    proxy.auto();
    proxy
}

/// A login for one host, for libgit2's credentials callback: offered once
/// (asked again, the host refused it), and only to `home`'s host, not to a
/// host a redirect leads to (libgit2 asks with the URL it was sent to).
pub(crate) struct HostLogin<'a> {
    home: &'a str,
    username: &'a str,
    password: &'a str,
    offered: bool,
}

/// Why a [`HostLogin`] was not offered; each caller says it in its terms.
pub(crate) enum Refusal {
    OtherHost,
    Refused,
}

impl<'a> HostLogin<'a> {
    pub(crate) fn new(home: &'a str, username: &'a str, password: &'a str) -> Self {
        HostLogin {
            home,
            username,
            password,
            offered: false,
        }
    }

    pub(crate) fn offer(&mut self, asking: &str, allowed: CredentialType) -> Result<Cred, Refusal> {
        if !same_host(asking, self.home) {
            return Err(Refusal::OtherHost);
        }
        if self.offered || !allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            return Err(Refusal::Refused);
        }
        self.offered = true;
        Cred::userpass_plaintext(self.username, self.password).map_err(|_| Refusal::Refused)
    }
}

/// Whether two URLs name the same host. A relative URL (a submodule's
/// `../lib.git`) lives on the host of the repository that names it.
pub(crate) fn same_host(url: &str, clone_url: &str) -> bool {
    if url.starts_with("./") || url.starts_with("../") {
        return true;
    }
    fn host(url: &str) -> &str {
        match url.split_once("://") {
            Some((_, rest)) => rest.split('/').next().unwrap_or(rest),
            None => "",
        }
    }
    host(url) == host(clone_url)
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
        ws.checkout(&url, &sha, None, &options, &dir, None)
            .await
            .unwrap();
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
            None,
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
                None,
                &options,
                &data.path().join("w3"),
                None,
            )
            .await
            .unwrap_err();
        assert!(err.0.contains("cannot fetch"), "{err}");
    }

    fn mounted(dir: &Path) -> bool {
        crate::snapshot::overlays_under(dir.parent().unwrap()).contains(&dir.to_path_buf())
    }

    #[tokio::test]
    async fn jobs_of_one_commit_share_a_snapshot_and_never_see_each_others_changes() {
        let origin = tempfile::tempdir().unwrap();
        git(origin.path(), &["init", "-q", "-b", "master"]);
        std::fs::create_dir(origin.path().join("src")).unwrap();
        std::fs::write(origin.path().join("a.txt"), "original").unwrap();
        std::fs::write(origin.path().join("src/b.txt"), "kept").unwrap();
        git(origin.path(), &["add", "."]);
        git(origin.path(), &["commit", "-q", "-m", "first"]);
        let sha = git(origin.path(), &["rev-parse", "HEAD"]);
        let url = origin.path().display().to_string();
        let data = tempfile::tempdir().unwrap();
        let ws = Workspaces::new(data.path());
        let options = GitOptions::default();
        let (first, second) = (data.path().join("ws/1"), data.path().join("ws/2"));

        let log = ws
            .checkout(&url, &sha, None, &options, &first, None)
            .await
            .unwrap();
        assert!(!log.log.join("\n").contains("earlier job"), "{log:?}");
        // A build changes, deletes and adds files, and plants a hook.
        std::fs::write(first.join("a.txt"), "changed by job 1").unwrap();
        std::fs::remove_file(first.join("src/b.txt")).unwrap();
        std::fs::write(first.join("new.txt"), "made by job 1").unwrap();
        std::fs::write(
            first.join(".git/hooks/post-checkout"),
            "#!/bin/sh\nexit 1\n",
        )
        .unwrap();

        let log = ws
            .checkout(&url, &sha, None, &options, &second, None)
            .await
            .unwrap();
        assert!(log.log.join("\n").contains("earlier job"), "{log:?}");
        assert!(mounted(&first) && mounted(&second), "both are overlays");
        assert_eq!(
            std::fs::read_to_string(second.join("a.txt")).unwrap(),
            "original"
        );
        assert_eq!(
            std::fs::read_to_string(second.join("src/b.txt")).unwrap(),
            "kept"
        );
        assert!(!second.join("new.txt").exists());
        assert!(!second.join(".git/hooks/post-checkout").exists());
        assert_eq!(git(&second, &["rev-parse", "HEAD"]), sha);
        assert_eq!(git(&second, &["status", "--porcelain"]), "", "a clean tree");
        assert_eq!(
            git(&first, &["status", "--porcelain"]),
            "M a.txt\n D src/b.txt\n?? new.txt", // the first line's space is trimmed
            "job 1 sees its own changes"
        );

        // A released workspace is unmounted and its changes are gone.
        ws.release(&first).await;
        assert!(!mounted(&first));
        std::fs::remove_dir_all(&first).unwrap();
        ws.checkout(&url, &sha, None, &options, &first, None)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(first.join("a.txt")).unwrap(),
            "original"
        );
        assert!(!first.join("new.txt").exists());

        // A killed runner leaves its overlays mounted; the next start unmounts them.
        std::mem::forget(ws);
        let restarted = Workspaces::new(data.path());
        assert_eq!(restarted.clear_leftovers().await, 2);
        assert!(!mounted(&first) && !mounted(&second));
        assert!(!data.path().join("snapshots").exists());
        std::fs::remove_dir_all(data.path().join("ws")).unwrap();

        // Without snapshots every job writes a checkout of its own.
        let plain = restarted.without_snapshots();
        plain
            .checkout(&url, &sha, None, &options, &first, None)
            .await
            .unwrap();
        assert!(!mounted(&first));
        assert_eq!(
            std::fs::read_to_string(first.join("a.txt")).unwrap(),
            "original"
        );
    }

    /// Every file under `dir` but `.git`, with its content and whether it is executable.
    fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>, bool)> {
        use std::os::unix::fs::PermissionsExt;
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                if e.file_name() == ".git" {
                    continue;
                }
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    let mode = e.metadata().unwrap().permissions().mode();
                    let rel = e.path().strip_prefix(dir).unwrap().to_path_buf();
                    out.push((rel, std::fs::read(e.path()).unwrap(), mode & 0o111 != 0));
                }
            }
        }
        out.sort();
        out
    }

    #[tokio::test]
    async fn a_new_commits_snapshot_shares_unchanged_files_and_writes_changed_ones_anew() {
        use std::os::unix::fs::MetadataExt;
        let origin = tempfile::tempdir().unwrap();
        let o = origin.path();
        git(o, &["init", "-q", "-b", "master"]);
        std::fs::create_dir_all(o.join("src/deep")).unwrap();
        std::fs::create_dir_all(o.join("old/only")).unwrap();
        for (name, text) in [
            ("keep.txt", "same in both"),
            ("change.txt", "before"),
            ("gone.txt", "deleted later"),
            ("src/deep/x.txt", "deep"),
            ("run.sh", "#!/bin/sh\n"),
            ("becomes-dir", "a file first"),
            ("old/only/file.txt", "its folders go with it"),
        ] {
            std::fs::write(o.join(name), text).unwrap();
        }
        git(o, &["add", "."]);
        git(o, &["commit", "-q", "-m", "A"]);
        let a = git(o, &["rev-parse", "HEAD"]);
        std::fs::write(o.join("change.txt"), "after").unwrap();
        git(
            o,
            &["rm", "-q", "gone.txt", "becomes-dir", "old/only/file.txt"],
        );
        std::fs::create_dir_all(o.join("becomes-dir")).unwrap();
        std::fs::write(o.join("becomes-dir/inner.txt"), "now a folder").unwrap();
        std::fs::create_dir_all(o.join("new")).unwrap();
        std::fs::write(o.join("new/added.txt"), "added").unwrap();
        git(o, &["add", "."]);
        git(o, &["update-index", "--chmod=+x", "run.sh"]);
        git(o, &["commit", "-q", "-m", "B"]);
        let b = git(o, &["rev-parse", "HEAD"]);

        let data = tempfile::tempdir().unwrap();
        let ws = Workspaces::new(data.path());
        let url = o.display().to_string();
        let options = GitOptions::default();
        let (wa, wb) = (data.path().join("ws/a"), data.path().join("ws/b"));
        ws.checkout(&url, &a, None, &options, &wa, None)
            .await
            .unwrap();
        let log = ws
            .checkout(&url, &b, None, &options, &wb, None)
            .await
            .unwrap();
        assert!(
            log.log.join("\n").contains("changed path(s) written"),
            "{log:?}"
        );

        // B's workspace is exactly a full checkout of B, and git sees it clean.
        let full = data.path().join("full");
        let plain = Workspaces::new(&data.path().join("plain")).without_snapshots();
        plain
            .checkout(&url, &b, None, &options, &full, None)
            .await
            .unwrap();
        assert_eq!(files(&wb), files(&full));
        assert!(files(&wb)
            .iter()
            .any(|(p, _, x)| p == Path::new("run.sh") && *x));
        assert!(!wb.join("old").exists(), "emptied folders are gone");
        assert_eq!(git(&wb, &["rev-parse", "HEAD"]), b);
        assert_eq!(git(&wb, &["status", "--porcelain"]), "", "a clean tree");
        assert_eq!(git(&wb, &["ls-files"]), git(o, &["ls-files"]));
        // A's workspace, mounted all along, still shows A.
        assert_eq!(
            std::fs::read_to_string(wa.join("change.txt")).unwrap(),
            "before"
        );
        assert_eq!(
            std::fs::read_to_string(wa.join("becomes-dir")).unwrap(),
            "a file first"
        );
        assert!(wa.join("gone.txt").exists());
        assert_eq!(git(&wa, &["status", "--porcelain"]), "", "a clean tree");

        // Unchanged files share an inode; changed ones were written anew.
        let snapshot_of = |sha: &str| {
            std::fs::read_dir(data.path().join("snapshots"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| git(p, &["rev-parse", "HEAD"]) == sha)
                .unwrap()
        };
        let (sa, sb) = (snapshot_of(&a), snapshot_of(&b));
        let ino = |dir: &Path, f: &str| std::fs::metadata(dir.join(f)).unwrap().ino();
        assert_eq!(ino(&sa, "keep.txt"), ino(&sb, "keep.txt"));
        assert_eq!(ino(&sa, "src/deep/x.txt"), ino(&sb, "src/deep/x.txt"));
        assert_ne!(ino(&sa, "change.txt"), ino(&sb, "change.txt"));
        assert_ne!(ino(&sa, "run.sh"), ino(&sb, "run.sh"));
    }

    /// A repository of one commit with one file, `f`, holding `content`.
    fn one_file_origin(content: &str) -> (tempfile::TempDir, String) {
        let origin = tempfile::tempdir().unwrap();
        git(origin.path(), &["init", "-q", "-b", "master"]);
        std::fs::write(origin.path().join("f"), content).unwrap();
        git(origin.path(), &["add", "f"]);
        git(origin.path(), &["commit", "-q", "-m", "first"]);
        let sha = git(origin.path(), &["rev-parse", "HEAD"]);
        (origin, sha)
    }

    #[tokio::test]
    async fn where_no_overlay_can_be_mounted_every_job_gets_a_checkout_of_its_own() {
        let (origin, sha) = one_file_origin("content");
        let url = origin.path().display().to_string();
        // A comma in the data dir's path makes the kernel refuse the overlay's options.
        let data = tempfile::tempdir().unwrap();
        let root = data.path().join("runner,data");
        let ws = Workspaces::new(&root);
        for job in ["1", "2"] {
            let dir = root.join("ws").join(job);
            ws.checkout(&url, &sha, None, &GitOptions::default(), &dir, None)
                .await
                .unwrap();
            assert_eq!(std::fs::read_to_string(dir.join("f")).unwrap(), "content");
            assert_eq!(git(&dir, &["status", "--porcelain"]), "");
            assert!(!mounted(&dir), "job {job}");
        }
    }

    #[tokio::test]
    async fn a_stopping_runner_leaves_no_workspace_mounted() {
        let (origin, sha) = one_file_origin("x");
        let data = tempfile::tempdir().unwrap();
        let ws = Workspaces::new(data.path());
        let dir = data.path().join("w");
        let url = origin.path().display().to_string();
        ws.checkout(&url, &sha, None, &GitOptions::default(), &dir, None)
            .await
            .unwrap();
        // Checked out again in the same folder (a job run again): one mount, not two.
        ws.checkout(&url, &sha, None, &GitOptions::default(), &dir, None)
            .await
            .unwrap();
        assert_eq!(
            crate::snapshot::overlays_under(data.path()),
            vec![dir.clone()]
        );
        drop(ws);
        assert!(crate::snapshot::overlays_under(data.path()).is_empty());
    }

    #[test]
    fn credentials_go_only_to_the_clone_urls_host() {
        let origin = "https://github.com/acme/app.git";
        assert!(same_host("https://github.com/acme/lib.git", origin));
        assert!(same_host("../lib.git", origin), "a relative submodule");
        assert!(!same_host("https://evil.example/acme/lib.git", origin));
        assert!(!same_host("https://github.com.evil.example/x.git", origin));
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
                None,
                &GitOptions::default(),
                &data.path().join("w"),
                Some(&creds),
            )
            .await
            .unwrap_err();
        assert!(!err.0.contains("ghs_supersecret123"), "{err}");
        assert!(!format!("{creds:?}").contains("ghs_"));
    }

    /// A bare repository `acme/app.git` under a folder to serve, and its commit.
    fn served_repository() -> (tempfile::TempDir, String) {
        let origin = tempfile::tempdir().unwrap();
        git(origin.path(), &["init", "-q", "-b", "master"]);
        std::fs::write(origin.path().join("README"), "private").unwrap();
        git(origin.path(), &["add", "README"]);
        git(origin.path(), &["commit", "-q", "-m", "first"]);
        let sha = git(origin.path(), &["rev-parse", "HEAD"]);
        let served = tempfile::tempdir().unwrap();
        std::fs::create_dir(served.path().join("acme")).unwrap();
        git(
            served.path(),
            &[
                "clone",
                "-q",
                "--bare",
                &origin.path().display().to_string(),
                "acme/app.git",
            ],
        );
        (served, sha)
    }

    #[tokio::test]
    async fn private_repositories_are_fetched_over_http_with_the_jobs_credentials() {
        let (served, sha) = served_repository();
        let password = "ghs_installationtoken42";
        let http =
            gantry_testkit::git_http::GitHttp::start(served.path(), "x-access-token", password)
                .await;
        fetches_with_the_jobs_credentials_only(&http, &sha, password).await;
    }

    /// HTTPS goes through rustls (`git_tls`), with libgit2's own HTTP,
    /// credentials and all, on top.
    #[tokio::test]
    async fn private_repositories_are_fetched_over_https_with_the_jobs_credentials() {
        let (served, sha) = served_repository();
        let password = "ghs_installationtoken43";
        let https =
            gantry_testkit::git_http::GitHttp::start_tls(served.path(), "x-access-token", password)
                .await;
        assert!(https.url.starts_with("https://127.0.0.1:"));
        crate::git_tls::also_trust(https.ca.clone().unwrap());
        fetches_with_the_jobs_credentials_only(&https, &sha, password).await;
    }

    /// The clone URL's host redirects to another: git follows the first
    /// redirect, as git does, but the job's credentials stay with the host
    /// the server gave them for.
    #[tokio::test]
    async fn credentials_do_not_follow_a_redirect_to_another_host() {
        let (served, sha) = served_repository();
        let password = "ghs_installationtoken46";
        let http =
            gantry_testkit::git_http::GitHttp::start(served.path(), "x-access-token", password)
                .await;
        let moved = gantry_testkit::git_http::Redirect::start(&http.url).await;
        let data = tempfile::tempdir().unwrap();
        let ws = Workspaces::new(data.path());
        let creds = Credentials {
            username: "x-access-token".into(),
            password: password.into(),
        };
        let dir = data.path().join("w");
        let err = ws
            .checkout(
                &format!("{}/acme/app.git", moved.url),
                &sha,
                None,
                &GitOptions::default(),
                &dir,
                Some(&creds),
            )
            .await
            .unwrap_err();
        assert!(err.0.contains("cannot fetch"), "{err}");
        assert!(err.0.contains("another host"), "{err}");
        assert!(!err.0.contains(password), "{err}");
        let asked = http.requests.lock().unwrap().clone();
        assert!(!asked.is_empty(), "the redirect was not followed");
        assert!(
            asked.iter().all(|(_, authorized)| !authorized),
            "the credentials went where the redirect led: {asked:?}"
        );
        assert!(!dir.join("README").exists());
    }

    #[tokio::test]
    async fn an_https_server_with_an_untrusted_certificate_is_refused() {
        let (served, sha) = served_repository();
        let password = "ghs_installationtoken44";
        // Its authority is never trusted.
        let https =
            gantry_testkit::git_http::GitHttp::start_tls(served.path(), "x-access-token", password)
                .await;
        let data = tempfile::tempdir().unwrap();
        let ws = Workspaces::new(data.path());
        let creds = Credentials {
            username: "x-access-token".into(),
            password: password.into(),
        };
        let url = format!("{}/acme/app.git", https.url);
        let dir = data.path().join("w");
        let err = ws
            .checkout(&url, &sha, None, &GitOptions::default(), &dir, Some(&creds))
            .await
            .unwrap_err();
        assert!(err.0.contains("certificate"), "{err}");
        assert!(err.0.contains("not trusted"), "{err}");
        assert!(!err.0.contains(password), "{err}");
        assert!(
            https.requests.lock().unwrap().is_empty(),
            "nothing, credentials least of all, reached the server"
        );
        assert!(!dir.join("README").exists());
    }

    /// The proxy comes from the runner's environment, as git's does
    /// (`https_proxy`, `no_proxy`), and HTTPS runs end to end through its
    /// `CONNECT` tunnel. Each clone runs in a process of its own, so no
    /// other test's clone sees the variables.
    #[tokio::test]
    async fn https_clones_go_through_the_proxy_the_environment_names() {
        let (served, sha) = served_repository();
        let token = "ghs_installationtoken45";
        let https =
            gantry_testkit::git_http::GitHttp::start_tls(served.path(), "x-access-token", token)
                .await;
        let proxy = gantry_testkit::proxy::ConnectProxy::start().await;
        let clone = CloneElsewhere::new(&https, &sha, token);

        let outcome = clone.run(&[("HTTPS_PROXY", &proxy.url)]).await;
        assert_eq!(outcome, "cloned: private");
        let server = https.url.trim_start_matches("https://").to_string();
        let connects = proxy.connects();
        assert!(!connects.is_empty(), "the clone went around the proxy");
        assert!(connects.iter().all(|c| *c == server), "{connects:?}");
        // Only ciphertext crossed the proxy: no request, no login.
        assert!(!proxy.saw("upload-pack"));
        assert!(!proxy.saw("Authorization"));
        assert!(https.requests.lock().unwrap().iter().any(|(_, ok)| *ok));

        // `no_proxy` names the hosts reached directly.
        let outcome = clone
            .run(&[
                ("https_proxy", &proxy.url),
                ("no_proxy", "example.com,127.0.0.1"),
            ])
            .await;
        assert_eq!(outcome, "cloned: private");
        assert_eq!(proxy.connects().len(), connects.len());
    }

    #[tokio::test]
    async fn a_proxy_that_asks_for_a_login_gets_the_one_in_its_url_and_never_shows_it() {
        let (served, sha) = served_repository();
        let token = "ghs_installationtoken46";
        let https =
            gantry_testkit::git_http::GitHttp::start_tls(served.path(), "x-access-token", token)
                .await;
        let proxy =
            gantry_testkit::proxy::ConnectProxy::start_with_login("runner", "proxy-secret-81")
                .await;
        let clone = CloneElsewhere::new(&https, &sha, token);
        let with_login = |password: &str| {
            proxy
                .url
                .replace("http://", &format!("http://runner:{password}@"))
        };

        let outcome = clone
            .run(&[("HTTPS_PROXY", &with_login("proxy-secret-81"))])
            .await;
        assert_eq!(outcome, "cloned: private");

        for (proxy_url, password) in [
            (with_login("proxy-secret-82"), "proxy-secret-82"),
            (proxy.url.clone(), "proxy-secret-81"),
        ] {
            let outcome = clone.run(&[("HTTPS_PROXY", &proxy_url)]).await;
            assert!(outcome.starts_with("failed: cannot fetch"), "{outcome}");
            assert!(outcome.contains("the proxy asks for a login"), "{outcome}");
            assert!(!outcome.contains(password), "{outcome}");
        }
        assert!(!https.requests.lock().unwrap().is_empty());
    }

    /// One checkout in another run of this test binary, with its own environment.
    struct CloneElsewhere {
        env: Vec<(&'static str, String)>,
    }

    impl CloneElsewhere {
        fn new(https: &gantry_testkit::git_http::GitHttp, sha: &str, token: &str) -> Self {
            let ca = https.ca.as_ref().expect("an HTTPS server");
            CloneElsewhere {
                env: vec![
                    (
                        "GANTRY_TEST_CLONE_URL",
                        format!("{}/acme/app.git", https.url),
                    ),
                    ("GANTRY_TEST_CLONE_SHA", sha.to_string()),
                    ("GANTRY_TEST_CLONE_TOKEN", token.to_string()),
                    ("GANTRY_TEST_CLONE_CA", hex::encode(ca)),
                ],
            }
        }

        /// What [`clone_in_a_process_of_its_own`] printed: `cloned: README`
        /// or `failed: why`.
        async fn run(&self, env: &[(&str, &str)]) -> String {
            let mut all: Vec<(&str, &str)> =
                self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            all.extend_from_slice(env);
            crate::elsewhere::run("workspace::tests::clone_in_a_process_of_its_own", &all).await
        }
    }

    #[tokio::test]
    #[ignore = "a helper: CloneElsewhere runs it in a process of its own"]
    async fn clone_in_a_process_of_its_own() {
        let var = |name: &str| std::env::var(name).unwrap();
        crate::git_tls::also_trust(hex::decode(var("GANTRY_TEST_CLONE_CA")).unwrap());
        let data = tempfile::tempdir().unwrap();
        let creds = Credentials {
            username: "x-access-token".into(),
            password: var("GANTRY_TEST_CLONE_TOKEN"),
        };
        let dir = data.path().join("w");
        let ws = Workspaces::new(data.path());
        let outcome = ws
            .checkout(
                &var("GANTRY_TEST_CLONE_URL"),
                &var("GANTRY_TEST_CLONE_SHA"),
                None,
                &GitOptions::default(),
                &dir,
                Some(&creds),
            )
            .await;
        match &outcome {
            Ok(_) => println!(
                "OUTCOME cloned: {}",
                std::fs::read_to_string(dir.join("README")).unwrap()
            ),
            Err(e) => println!("OUTCOME failed: {}", e.0.replace('\n', " ")),
        }
    }

    async fn fetches_with_the_jobs_credentials_only(
        http: &gantry_testkit::git_http::GitHttp,
        sha: &str,
        password: &str,
    ) {
        let sha = sha.to_string();
        let url = format!("{}/acme/app.git", http.url);
        let data = tempfile::tempdir().unwrap();
        let ws = Workspaces::new(data.path());

        let wrong = Credentials {
            username: "x-access-token".into(),
            password: "ghs_expiredtoken99".into(),
        };
        for (creds, why) in [(None, "gave this job none"), (Some(&wrong), "refused")] {
            let err = ws
                .checkout(
                    &url,
                    &sha,
                    None,
                    &GitOptions::default(),
                    &data.path().join("w"),
                    creds,
                )
                .await
                .unwrap_err();
            assert!(err.0.contains("cannot fetch"), "{err}");
            assert!(!err.0.contains("ghs_"), "{err}");
            assert!(err.0.contains(why), "{err}");
        }

        let creds = Credentials {
            username: "x-access-token".into(),
            password: password.into(),
        };
        let dir = data.path().join("w");
        let log = ws
            .checkout(&url, &sha, None, &GitOptions::default(), &dir, Some(&creds))
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("README")).unwrap(),
            "private"
        );
        assert!(!log.log.join("\n").contains(password));
        assert!(http.requests.lock().unwrap().iter().any(|(_, ok)| *ok));
        // The token is nowhere on disk: not in the mirror's or the workspace's config.
        for config in [dir.join(".git/config"), ws.mirror_path(&url).join("config")] {
            let text = std::fs::read_to_string(&config).unwrap();
            assert!(!text.contains(password), "{}", config.display());
        }
        assert_eq!(git(&dir, &["remote", "get-url", "origin"]), url);
    }

    #[tokio::test]
    async fn pull_request_heads_tags_and_submodules_are_checked_out() {
        let library = tempfile::tempdir().unwrap();
        git(library.path(), &["init", "-q", "-b", "main"]);
        std::fs::write(library.path().join("lib.txt"), "from the submodule").unwrap();
        git(library.path(), &["add", "lib.txt"]);
        git(library.path(), &["commit", "-q", "-m", "lib"]);

        let origin = tempfile::tempdir().unwrap();
        git(origin.path(), &["init", "-q", "-b", "master"]);
        git(
            origin.path(),
            &[
                "-c",
                "protocol.file.allow=always",
                "submodule",
                "add",
                "-q",
                &library.path().display().to_string(),
                "vendor/lib",
            ],
        );
        git(origin.path(), &["commit", "-q", "-m", "with a submodule"]);
        git(origin.path(), &["tag", "v1.0"]);
        // A pull request's head: reachable only from refs/pull/1/head, as on GitHub.
        git(origin.path(), &["checkout", "-q", "-b", "feature"]);
        std::fs::write(origin.path().join("pr.txt"), "proposed").unwrap();
        git(origin.path(), &["add", "pr.txt"]);
        git(origin.path(), &["commit", "-q", "-m", "proposal"]);
        let pr = git(origin.path(), &["rev-parse", "HEAD"]);
        git(origin.path(), &["update-ref", "refs/pull/1/head", &pr]);
        git(origin.path(), &["checkout", "-q", "master"]);
        git(origin.path(), &["branch", "-q", "-D", "feature"]);

        let data = tempfile::tempdir().unwrap();
        let ws = Workspaces::new(data.path());
        let dir = data.path().join("w");
        let url = origin.path().display().to_string();
        let log = ws
            .checkout(&url, &pr, None, &GitOptions::default(), &dir, None)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("pr.txt")).unwrap(),
            "proposed"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("vendor/lib/lib.txt")).unwrap(),
            "from the submodule"
        );
        assert!(
            log.log.iter().any(|l| l.contains("submodule update")),
            "{log:?}"
        );
        assert_eq!(git(&dir, &["describe", "--tags", "HEAD~1"]), "v1.0");
        assert_eq!(
            git(&dir, &["rev-parse", "origin/master"]),
            git(origin.path(), &["rev-parse", "master"]),
            "branches are there as origin/*"
        );
        assert_eq!(git(&dir, &["status", "--porcelain"]), "", "a clean tree");

        // submodules: false leaves the submodule's folder empty.
        let bare = data.path().join("w2");
        let options = GitOptions {
            submodules: false,
            ..Default::default()
        };
        ws.checkout(&url, &pr, None, &options, &bare, None)
            .await
            .unwrap();
        assert!(!bare.join("vendor/lib/lib.txt").exists());
    }

    #[tokio::test]
    async fn a_pull_request_is_tested_merged_into_its_base_and_a_conflict_names_its_files() {
        let origin = tempfile::tempdir().unwrap();
        let o = origin.path();
        git(o, &["init", "-q", "-b", "master"]);
        std::fs::write(o.join("shared.txt"), "one\n").unwrap();
        git(o, &["add", "shared.txt"]);
        git(o, &["commit", "-q", "-m", "first"]);
        // The pull request adds a file; meanwhile master adds another.
        git(o, &["checkout", "-q", "-b", "feature"]);
        std::fs::write(o.join("feature.txt"), "proposed").unwrap();
        git(o, &["add", "feature.txt"]);
        git(o, &["commit", "-q", "-m", "proposal"]);
        let head = git(o, &["rev-parse", "HEAD"]);
        git(o, &["update-ref", "refs/pull/1/head", &head]);
        git(o, &["checkout", "-q", "master"]);
        git(o, &["branch", "-q", "-D", "feature"]);
        std::fs::write(o.join("master.txt"), "landed").unwrap();
        git(o, &["add", "master.txt"]);
        git(o, &["commit", "-q", "-m", "landed on master"]);
        let base = git(o, &["rev-parse", "HEAD"]);

        let data = tempfile::tempdir().unwrap();
        let ws = Workspaces::new(data.path());
        let url = o.display().to_string();
        let options = GitOptions::default();
        let dir = data.path().join("w");
        let merged = ws
            .checkout(&url, &head, Some(&base), &options, &dir, None)
            .await
            .unwrap();
        for (file, content) in [("feature.txt", "proposed"), ("master.txt", "landed")] {
            assert_eq!(std::fs::read_to_string(dir.join(file)).unwrap(), content);
        }
        assert_eq!(git(&dir, &["rev-parse", "HEAD"]), merged.commit);
        assert_eq!(
            git(&dir, &["log", "-1", "--format=%P%n%s"]),
            format!("{base} {head}\nMerge {head} into {base}"),
            "a merge commit as GitHub's merge ref: base, then head"
        );
        assert!(
            merged.log[0].contains(&format!("{head} merged into {base}")),
            "{:?}",
            merged.log
        );
        // Another job of the build gets the same commit.
        let again = ws
            .checkout(
                &url,
                &head,
                Some(&base),
                &options,
                &data.path().join("w2"),
                None,
            )
            .await
            .unwrap();
        assert_eq!(again.commit, merged.commit);

        // A base that is no longer on the remote: the head as it is, saying so.
        let gone = "0123456789abcdef0123456789abcdef01234567";
        let unmerged = ws
            .checkout(
                &url,
                &head,
                Some(gone),
                &options,
                &data.path().join("w3"),
                None,
            )
            .await
            .unwrap();
        assert_eq!(unmerged.commit, head);
        assert!(
            unmerged.log.iter().any(|l| l.contains("not on the remote")),
            "{:?}",
            unmerged.log
        );

        // Both sides change the same line: the job fails, naming the file.
        git(o, &["checkout", "-q", "-b", "clash", &head]);
        std::fs::write(o.join("shared.txt"), "two\n").unwrap();
        git(o, &["commit", "-q", "-am", "clash"]);
        let clash = git(o, &["rev-parse", "HEAD"]);
        git(o, &["checkout", "-q", "master"]);
        std::fs::write(o.join("shared.txt"), "three\n").unwrap();
        git(o, &["commit", "-q", "-am", "meanwhile"]);
        let moved = git(o, &["rev-parse", "HEAD"]);
        let error = ws
            .checkout(
                &url,
                &clash,
                Some(&moved),
                &options,
                &data.path().join("w4"),
                None,
            )
            .await
            .unwrap_err()
            .0;
        assert!(error.contains("does not merge into its base"), "{error}");
        assert!(error.contains("conflicts in shared.txt"), "{error}");
    }
}
