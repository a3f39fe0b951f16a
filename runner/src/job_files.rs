//! Files a job can change under the runner: its `/gantry` folder and its
//! workspace. A process the job started may swap a file there for a link to
//! one of the runner's own (`/etc/profile.d/…`, `/proc/self/environ`) or for a
//! FIFO at any moment, and a repository may commit links. So the runner
//! never follows a link there, opens nothing but plain files and folders,
//! and never blocks on what it finds:
//!
//! - [`write_script`] writes aside under a name the job cannot guess, then
//!   renames over whatever the job left (a link is replaced, not followed);
//! - [`read_left`] reads a small file the job left, or refuses it;
//! - [`open_file_below`] and [`open_dir_below`] open a path one folder at a
//!   time, each opened without following a link, then the next name is
//!   looked up inside the folder already open (`/proc/self/fd/N/name`), so
//!   no swap between check and use leads out of the workspace.

use rand::Rng;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// Opens `path` (a folder if `folder`), refusing it if it is a link. Never
/// blocks on a FIFO: what is not a plain file or folder is refused after.
pub fn open_no_link(path: &Path, folder: bool) -> io::Result<File> {
    let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK | if folder { libc::O_DIRECTORY } else { 0 };
    File::options().read(true).custom_flags(flags).open(path)
}

/// `name` inside the open folder `folder`, whatever its path now leads to.
pub fn through(folder: &File, name: impl AsRef<Path>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", folder.as_raw_fd())).join(name)
}

fn refused(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.to_string())
}

/// Writes `text` as `dir/name`, replacing whatever is there (a file, a
/// link, a folder) without writing through it.
pub fn write_script(dir: &Path, name: &str, text: &str) -> io::Result<()> {
    let part = dir.join(format!(".{name}.{:016x}", rand::thread_rng().gen::<u64>()));
    let mut file = File::options()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&part)?;
    io::Write::write_all(&mut file, text.as_bytes())?;
    drop(file);
    let to = dir.join(name);
    if let Err(e) = std::fs::rename(&part, &to) {
        // A folder in the way (rename replaces files and links only).
        let cleared = std::fs::symlink_metadata(&to).is_ok_and(|m| m.is_dir())
            && std::fs::remove_dir_all(&to).is_ok();
        if !cleared || std::fs::rename(&part, &to).is_err() {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
    }
    Ok(())
}

/// Reads `dir/name`, a file the job left: `None` when there is none, an
/// error when it is a link, not a plain file, or over `limit` bytes.
pub fn read_left(dir: &Path, name: &str, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let file = match open_no_link(&dir.join(name), false) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        other => other?,
    };
    read_plain(file, name, limit).map(Some)
}

/// The whole of an open file, if it is a plain one of at most `limit` bytes.
pub fn read_plain(file: File, name: impl std::fmt::Display, limit: u64) -> io::Result<Vec<u8>> {
    if !file.metadata()?.is_file() {
        return Err(refused(format_args!("{name} is not a plain file")));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(refused(format_args!("{name} is over {limit} bytes")));
    }
    Ok(bytes)
}

/// Opens `relative` below `root` as a plain file (see the module's doc).
pub fn open_file_below(root: &Path, relative: &Path) -> io::Result<File> {
    let file = open_below(root, relative, false)?;
    if !file.metadata()?.is_file() {
        return Err(refused(format_args!(
            "{} is not a plain file",
            relative.display()
        )));
    }
    Ok(file)
}

/// Opens `relative` below `root` as a folder; `""` or `.` is `root` itself.
pub fn open_dir_below(root: &Path, relative: &Path) -> io::Result<File> {
    open_below(root, relative, true)
}

fn open_below(root: &Path, relative: &Path, folder: bool) -> io::Result<File> {
    let mut names = Vec::new();
    for part in relative.components() {
        match part {
            Component::Normal(name) => names.push(name),
            Component::CurDir => {}
            _ => {
                return Err(refused(format_args!(
                    "{} leads out of the workspace",
                    relative.display()
                )))
            }
        }
    }
    let mut at = open_no_link(root, true)?;
    let Some((last, folders)) = names.split_last() else {
        return if folder {
            Ok(at)
        } else {
            Err(refused("a file was asked for and the workspace given"))
        };
    };
    for name in folders {
        at = open_no_link(&through(&at, name), true).map_err(|e| link_named(e, relative))?;
    }
    open_no_link(&through(&at, last), folder).map_err(|e| link_named(e, relative))
}

/// `ELOOP` from `O_NOFOLLOW` says "too many levels of symbolic links":
/// say what it means here.
fn link_named(e: io::Error, relative: &Path) -> io::Error {
    if e.raw_os_error() == Some(libc::ELOOP) || e.raw_os_error() == Some(libc::ENOTDIR) {
        refused(format_args!(
            "{} goes through a link (or a file where a folder should be); the runner does not follow links the job or the repository made",
            relative.display()
        ))
    } else {
        e
    }
}

/// Appends the tree under the open folder `dir` to `tar` at `prefix`:
/// plain files, folders and links (as links, never followed); FIFOs,
/// sockets and devices are left out. Blocking.
pub fn append_tree<W: io::Write>(
    tar: &mut tar::Builder<W>,
    dir: &File,
    prefix: &Path,
) -> io::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(through(dir, ""))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for name in names {
        let path = prefix.join(&name);
        let meta = std::fs::symlink_metadata(through(dir, &name))?;
        let kind = meta.file_type();
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        if kind.is_symlink() {
            let target = std::fs::read_link(through(dir, &name))?;
            header.set_size(0);
            tar.append_link(&mut header, &path, target)?;
        } else if kind.is_dir() {
            let sub = open_no_link(&through(dir, &name), true)?;
            header.set_size(0);
            tar.append_data(&mut header, &path, io::empty())?;
            append_tree(tar, &sub, &path)?;
        } else if kind.is_file() {
            let file = open_no_link(&through(dir, &name), false)?;
            let meta = file.metadata()?;
            if !meta.is_file() {
                continue;
            }
            header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
            tar.append_data(&mut header, &path, file.take(meta.len()))?;
        }
    }
    Ok(())
}

/// `path` without `.` and `..` (as the shell would resolve them, links aside).
pub fn normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The paths (as the shell printed them, relative to `dir`) inside the
/// build directory, relative to it; and those outside, as written.
pub fn in_workspace<'a>(
    dir: &str,
    paths: impl IntoIterator<Item = &'a str>,
    build_dir: &str,
) -> (Vec<PathBuf>, Vec<String>) {
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    let root = Path::new(build_dir);
    for path in paths {
        let full = normal(&Path::new(dir).join(path));
        match full.strip_prefix(root) {
            Ok(relative) => {
                if !inside.iter().any(|p: &PathBuf| p == relative) {
                    inside.push(relative.to_path_buf());
                }
            }
            Err(_) => outside.push(path.to_string()),
        }
    }
    (inside, outside)
}

/// Escapes glob characters, so a file name matches only itself.
pub fn literal(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if "*?[]{}\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_script_replaces_a_link_and_never_writes_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "the runner's own file").unwrap();
        let jobs = dir.path().join("gantry");
        std::fs::create_dir(&jobs).unwrap();
        symlink(&victim, jobs.join("after_script.sh")).unwrap();
        std::fs::create_dir(jobs.join("main.sh")).unwrap();

        write_script(&jobs, "after_script.sh", "echo after").unwrap();
        write_script(&jobs, "main.sh", "echo main").unwrap();

        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            "the runner's own file"
        );
        assert_eq!(
            std::fs::read_to_string(jobs.join("after_script.sh")).unwrap(),
            "echo after"
        );
        assert_eq!(
            std::fs::read_to_string(jobs.join("main.sh")).unwrap(),
            "echo main"
        );
        let left: Vec<_> = std::fs::read_dir(&jobs).unwrap().collect();
        assert_eq!(left.len(), 2, "no part file is left behind");
    }

    #[test]
    fn what_the_job_left_is_read_only_if_it_is_a_small_plain_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "RUNNER_TOKEN=x").unwrap();
        std::fs::write(dir.path().join("environ"), "A=1").unwrap();
        symlink(dir.path().join("secret"), dir.path().join("linked")).unwrap();
        let fifo = std::ffi::CString::new(dir.path().join("fifo").to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);

        assert_eq!(
            read_left(dir.path(), "environ", 10).unwrap().as_deref(),
            Some(&b"A=1"[..])
        );
        assert_eq!(read_left(dir.path(), "missing", 10).unwrap(), None);
        assert!(read_left(dir.path(), "linked", 100).is_err());
        // A FIFO nobody writes to is refused at once, not waited on.
        assert!(read_left(dir.path(), "fifo", 100).is_err());
        assert!(read_left(dir.path(), "secret", 3).is_err());
    }

    #[test]
    fn paths_below_the_workspace_never_pass_a_link_or_leave_it() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("shadow"), "root:x").unwrap();
        let ws = tempfile::tempdir().unwrap();
        let root = ws.path();
        std::fs::create_dir_all(root.join("site/css")).unwrap();
        std::fs::write(root.join("site/css/a.css"), "a{}").unwrap();
        symlink(outside.path(), root.join("dist")).unwrap();
        symlink(outside.path().join("shadow"), root.join("site/bundle.zip")).unwrap();

        let mut css = String::new();
        open_file_below(root, Path::new("site/css/a.css"))
            .unwrap()
            .read_to_string(&mut css)
            .unwrap();
        assert_eq!(css, "a{}");
        assert!(open_dir_below(root, Path::new("./site")).is_ok());
        assert!(open_dir_below(root, Path::new("")).is_ok());

        let refused = [
            open_file_below(root, Path::new("site/bundle.zip")),
            open_file_below(root, Path::new("dist/shadow")),
            open_dir_below(root, Path::new("dist")),
            open_file_below(root, &outside.path().join("shadow")),
            open_file_below(root, Path::new("site/../../shadow")),
            open_file_below(root, Path::new("site/css")),
        ];
        for (i, r) in refused.into_iter().enumerate() {
            assert!(r.is_err(), "case {i} was opened");
        }
        let message = open_file_below(root, Path::new("dist/shadow"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("goes through a link"), "{message}");
    }

    #[test]
    fn a_tree_goes_into_a_tar_with_its_links_as_links() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("shadow"), "root:x").unwrap();
        let ws = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(ws.path().join("src")).unwrap();
        std::fs::write(ws.path().join("src/main.c"), "int main;").unwrap();
        std::fs::write(ws.path().join("Dockerfile"), "FROM scratch").unwrap();
        symlink(outside.path(), ws.path().join("host")).unwrap();
        symlink(outside.path().join("shadow"), ws.path().join("src/shadow")).unwrap();

        let mut tar = tar::Builder::new(Vec::new());
        let dir = open_dir_below(ws.path(), Path::new("")).unwrap();
        append_tree(&mut tar, &dir, Path::new("")).unwrap();
        let bytes = tar.into_inner().unwrap();

        let mut archive = tar::Archive::new(&bytes[..]);
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            let mut body = String::new();
            entry.read_to_string(&mut body).unwrap();
            assert!(!body.contains("root:x"), "{path} carried the host's file");
            seen.push((path, entry.header().entry_type().is_symlink()));
        }
        assert_eq!(
            seen,
            [
                ("Dockerfile".to_string(), false),
                ("host".to_string(), true),
                ("src".to_string(), false),
                ("src/main.c".to_string(), false),
                ("src/shadow".to_string(), true),
            ]
        );
    }

    #[test]
    fn paths_resolve_inside_the_build_directory_or_are_named() {
        let (inside, outside) = in_workspace(
            "/home/travis/build/o/r/out",
            [
                "a.log",
                "../build",
                "/var/log/x.log",
                "/home/travis/build/o/r/out/a.log",
                "./sub/../c",
            ],
            "/home/travis/build/o/r",
        );
        assert_eq!(
            inside,
            vec![
                PathBuf::from("out/a.log"),
                PathBuf::from("build"),
                PathBuf::from("out/c")
            ]
        );
        assert_eq!(outside, vec!["/var/log/x.log".to_string()]);
    }

    #[test]
    fn file_names_are_globs_of_themselves() {
        assert_eq!(literal("a[1]*.log"), "a\\[1\\]\\*.log");
    }
}
