//! Checkouts kept read-only and shared through overlayfs. The first job of
//! a commit writes its checkout into a *snapshot* that no container ever
//! mounts; every job of that commit (a matrix's rows, a restart, the
//! deploy job) then gets its workspace as an overlay: the snapshot below,
//! an empty folder of its own above. What a build writes, changes or
//! deletes lands in its own upper folder, so it can never plant a file for
//! the next build, and a second checkout of a commit costs one `mount`
//! instead of writing every file again.
//!
//! Needs a kernel with overlayfs and the right to mount (root on the
//! runner's host). Where the first mount fails, the runner says why once
//! and checks out every job in full, as without snapshots.

use std::collections::{HashMap, VecDeque};
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Snapshots kept when no job uses them; older ones are removed.
const KEEP: usize = 8;

pub struct Snapshots {
    /// `<data>/snapshots`: one folder per snapshot, named by its key.
    root: PathBuf,
    /// `<data>/layers`: each mounted workspace's upper and work folders.
    layers: PathBuf,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// `None` until the first mount says whether overlays work here.
    usable: Option<bool>,
    /// Running jobs per snapshot: one in use is never removed.
    users: HashMap<PathBuf, usize>,
    /// Each mounted workspace and the snapshot below it.
    mounted: HashMap<PathBuf, PathBuf>,
    /// Snapshots from least to most recently used.
    recent: VecDeque<PathBuf>,
    /// The newest snapshot of each family (one repository, one depth, one
    /// submodule setting): a new commit's snapshot starts from it.
    latest: HashMap<String, PathBuf>,
}

impl State {
    /// One job fewer uses `snapshot`.
    fn put_back(&mut self, snapshot: &Path) {
        if let Some(n) = self.users.get_mut(snapshot) {
            *n = n.saturating_sub(1);
        }
    }
}

/// A snapshot a job holds until its workspace is mounted or it gives up.
pub struct Claim {
    pub path: PathBuf,
    /// Whether an earlier job wrote it (else this job writes it now).
    pub exists: bool,
}

impl Snapshots {
    pub fn new(data_dir: &Path) -> Snapshots {
        Snapshots {
            root: data_dir.join("snapshots"),
            layers: data_dir.join("layers"),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the snapshot named `key` is kept.
    pub fn path_of(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// The snapshot for `key`, held for one job; `None` where overlays do not work.
    pub fn claim(&self, key: &str) -> Option<Claim> {
        let mut state = self.state();
        if state.usable == Some(false) {
            return None;
        }
        let path = self.path_of(key);
        *state.users.entry(path.clone()).or_default() += 1;
        state.recent.retain(|p| p != &path);
        state.recent.push_back(path.clone());
        Some(Claim {
            exists: path.join(".git").exists(),
            path,
        })
    }

    /// Gives back a claim whose workspace was not mounted.
    pub fn unclaim(&self, claim: &Claim) {
        self.state().put_back(&claim.path);
    }

    /// Where a new snapshot is written before it is renamed into place, so a
    /// killed checkout never leaves a half-written snapshot under its key.
    pub fn staging(&self, claim: &Claim) -> PathBuf {
        let name = claim.path.file_name().unwrap_or_default().to_string_lossy();
        self.root
            .join(format!(".{name}.{:016x}", rand::random::<u64>()))
    }

    /// The newest snapshot of `family`, held while a new one is made from it.
    pub fn base(&self, family: &str) -> Option<Claim> {
        let mut state = self.state();
        let path = state.latest.get(family)?.clone();
        *state.users.entry(path.clone()).or_default() += 1;
        Some(Claim { path, exists: true })
    }

    /// Renames a fully written `staging` folder to the claim's snapshot, the
    /// newest of its `family`, and removes the oldest snapshots no job uses.
    pub fn publish(&self, claim: &Claim, staging: &Path, family: &str) -> io::Result<()> {
        std::fs::rename(staging, &claim.path)?;
        let unused: Vec<PathBuf> = {
            let mut state = self.state();
            state.latest.insert(family.to_string(), claim.path.clone());
            let mut unused = Vec::new();
            while state.recent.len() > KEEP {
                let oldest = state.recent.iter().position(|p| {
                    state.users.get(p).copied().unwrap_or(0) == 0 && p != &claim.path
                });
                let Some(i) = oldest else { break };
                if let Some(p) = state.recent.remove(i) {
                    state.users.remove(&p);
                    state.latest.retain(|_, newest| newest != &p);
                    unused.push(p);
                }
            }
            unused
        };
        for path in unused {
            let _ = std::fs::remove_dir_all(path);
        }
        Ok(())
    }

    /// Mounts the claim's snapshot at `workspace` under a new, empty upper
    /// folder. On failure the claim is given back, and if overlays do not
    /// work here at all, later claims get `None`.
    pub fn mount(&self, claim: &Claim, workspace: &Path) -> io::Result<()> {
        let made = self.try_mount(&claim.path, workspace);
        let mut state = self.state();
        match &made {
            Ok(()) => {
                state.usable = Some(true);
                state
                    .mounted
                    .insert(workspace.to_path_buf(), claim.path.clone());
            }
            Err(e) => {
                if state.usable.is_none() {
                    tracing::warn!(error = %e, "cannot mount an overlay; every job gets a full checkout");
                    state.usable = Some(false);
                }
                state.put_back(&claim.path);
            }
        }
        made
    }

    fn layer_of(&self, workspace: &Path) -> PathBuf {
        let name = workspace.to_string_lossy().replace('/', "_");
        self.layers.join(name)
    }

    fn try_mount(&self, snapshot: &Path, workspace: &Path) -> io::Result<()> {
        let layer = self.layer_of(workspace);
        if layer.exists() {
            std::fs::remove_dir_all(&layer)?;
        }
        let (upper, work) = (layer.join("upper"), layer.join("work"));
        std::fs::create_dir_all(&upper)?;
        std::fs::create_dir_all(&work)?;
        std::fs::create_dir_all(workspace)?;
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            snapshot.display(),
            upper.display(),
            work.display()
        );
        let made = mount_overlay(workspace, &options);
        if made.is_err() {
            let _ = std::fs::remove_dir_all(&layer);
        }
        made
    }

    /// Unmounts a job's workspace (if it is one of ours) and removes its
    /// upper folder: what the build wrote is gone, the snapshot stays.
    pub fn release(&self, workspace: &Path) {
        let snapshot = {
            let mut state = self.state();
            let snapshot = state.mounted.remove(workspace);
            if let Some(s) = &snapshot {
                state.put_back(s);
            }
            snapshot
        };
        if snapshot.is_some() {
            unmount(workspace);
            let _ = std::fs::remove_dir_all(self.layer_of(workspace));
        }
    }

    /// Unmounts every workspace still mounted: a stopping runner leaves none.
    pub fn release_all(&self) {
        let mounted: Vec<PathBuf> = self.state().mounted.keys().cloned().collect();
        for workspace in mounted {
            self.release(&workspace);
        }
    }

    /// At start: unmounts the overlays a killed run of this runner left
    /// under `data_dir`, and removes its layers and snapshots.
    pub fn clear_leftovers(&self, data_dir: &Path) -> usize {
        let mut unmounted = 0;
        for point in overlays_under(data_dir) {
            unmount(&point);
            unmounted += 1;
        }
        let _ = std::fs::remove_dir_all(&self.layers);
        let _ = std::fs::remove_dir_all(&self.root);
        unmounted
    }
}

fn mount_overlay(target: &Path, options: &str) -> io::Result<()> {
    let target = CString::new(target.as_os_str().as_bytes())?;
    let options = CString::new(options)?;
    let overlay = c"overlay";
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            overlay.as_ptr(),
            target.as_ptr(),
            overlay.as_ptr(),
            0,
            options.as_ptr().cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Lazily, so a process still inside the folder (a slow deploy tool's
/// child) cannot keep it mounted forever.
fn unmount(target: &Path) {
    let Ok(target) = CString::new(target.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: a NUL-terminated path that outlives the call.
    unsafe {
        libc::umount2(target.as_ptr(), libc::MNT_DETACH);
    }
}

/// Overlay mount points under `dir`, deepest first, from `/proc/self/mountinfo`.
pub(crate) fn overlays_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| {
            // `id parent major:minor root mount-point options ... - fstype source ...`
            let point = line.split(' ').nth(4)?;
            let fstype = line.split(" - ").nth(1)?.split(' ').next()?;
            (fstype == "overlay").then(|| PathBuf::from(unescape(point)))
        })
        .filter(|p| p.starts_with(dir) && p != dir)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let text = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_read_back() {
        assert_eq!(unescape(r"/data/my\040runner/ws"), "/data/my runner/ws");
        assert_eq!(unescape(r"/a\134b"), r"/a\b");
        assert_eq!(unescape(r"/plain\x"), r"/plain\x");
    }
}
