//! Job logs: one append-only file per job under `DATA_DIR/logs`, never held
//! whole in memory. Chunks carry the byte offset they start at, so a chunk
//! sent twice (a retry after a lost response) is stored once.
//!
//! A log is written once and mostly never read again, so it does not stay in
//! the page cache: each appended page is sent to disk at once, and pages more
//! than [`CACHED_TAIL`] behind the end are dropped from the cache once they are
//! on disk. Live tails and viewers read near the end, which stays cached. A
//! big log then recycles the same few megabytes of memory instead of growing
//! the cache by its whole size (which evicts what other work needs, and on a
//! VM, where fresh memory is slow to hand out, made a 1 GiB log store at a
//! seventh of the speed: bench metric 4).

use gantry_protocol::{JobId, LogAck};
use std::collections::HashMap;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub struct LogStore {
    dir: PathBuf,
    /// One writer per job at a time; different jobs append in parallel.
    locks: Mutex<HashMap<JobId, Arc<Mutex<()>>>>,
}

/// How much of a log's end is left in the page cache for live tails and viewers.
const CACHED_TAIL: u64 = 16 * 1024 * 1024;

/// Why a chunk was not stored.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The chunk starts past the end: an earlier chunk is missing.
    #[error("chunk starts at {offset} but the log has {size} bytes")]
    Gap { offset: u64, size: u64 },
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl LogStore {
    pub fn new(dir: PathBuf) -> io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(LogStore {
            dir,
            locks: Mutex::new(HashMap::new()),
        })
    }

    pub fn path(&self, job: JobId) -> PathBuf {
        self.dir.join(format!("{job}.log"))
    }

    /// Runs `write` holding the job's writer lock. The lock's entry goes
    /// when no one else holds or waits for it, so the map holds only the
    /// jobs being written now, not every job the server has seen.
    fn locked<T>(&self, job: JobId, write: impl FnOnce() -> T) -> T {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(job).or_default().clone()
        };
        let written = {
            let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
            write()
        };
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        // The map's and this call's: others take theirs under the map's lock.
        if Arc::strong_count(&lock) == 2 {
            locks.remove(&job);
        }
        written
    }

    /// Current size of a job's log (0 when it has none).
    pub fn size(&self, job: JobId) -> io::Result<u64> {
        match std::fs::metadata(self.path(job)) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Appends the part of `bytes` (starting at `offset`) the log does not have yet.
    /// Blocking: call from `spawn_blocking`.
    pub fn append(&self, job: JobId, offset: u64, bytes: &[u8]) -> Result<LogAck, AppendError> {
        self.append_parts(job, offset, &[bytes])
    }

    /// [`append`](Self::append) for a chunk in parts (a request body's
    /// frames, as they arrived): written one after the other, not first
    /// copied into one buffer. Blocking.
    pub fn append_parts<B: AsRef<[u8]>>(
        &self,
        job: JobId,
        offset: u64,
        parts: &[B],
    ) -> Result<LogAck, AppendError> {
        let len: u64 = parts.iter().map(|p| p.as_ref().len() as u64).sum();
        self.locked(job, || {
            let size = self.size(job)?;
            if offset > size {
                return Err(AppendError::Gap { offset, size });
            }
            if offset + len <= size {
                return Ok(LogAck { size });
            }
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path(job))?;
            // What the log has already (a chunk sent again) is skipped.
            let mut skip = size - offset;
            for part in parts {
                let part = part.as_ref();
                let from = skip.min(part.len() as u64);
                skip -= from;
                file.write_all(&part[from as usize..])?;
            }
            file.flush()?;
            write_behind(&file, size, offset + len);
            Ok(LogAck { size: offset + len })
        })
    }

    /// Adds a line from Gantry itself (e.g. why a job was taken back). Blocking.
    pub fn note(&self, job: JobId, line: &str) -> io::Result<()> {
        self.locked(job, || {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path(job))?;
            let size = file.seek(SeekFrom::End(0))?;
            let sep = if size > 0 { "\n" } else { "" };
            write!(file, "{sep}{}", gantry_line(line))
        })
    }

    /// Replaces a finished job's whole log with one line from Gantry (a
    /// user removed it: it showed something it should not have). The new
    /// log is written aside and renamed over the old one, so a reader has
    /// one or the other, never half. Blocking.
    pub fn replace(&self, job: JobId, line: &str) -> io::Result<()> {
        self.locked(job, || self.write_anew(job, line))
    }

    /// Replaces a log with one line from Gantry, as [`replace`](Self::replace),
    /// if the job has a log: `false` when it has none (it never ran), so
    /// retention leaves no file behind where there was none. Blocking.
    pub fn replace_existing(&self, job: JobId, line: &str) -> io::Result<bool> {
        self.locked(job, || match std::fs::metadata(self.path(job)) {
            Ok(_) => self.write_anew(job, line).map(|()| true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        })
    }

    /// Writes the new log aside and renames it over the old one.
    fn write_anew(&self, job: JobId, line: &str) -> io::Result<()> {
        let aside = self.dir.join(format!("{job}.log.new"));
        std::fs::write(&aside, gantry_line(line))?;
        std::fs::rename(&aside, self.path(job))
    }

    /// Empties a job's log, for a job that runs again. Blocking.
    pub fn clear(&self, job: JobId) -> io::Result<()> {
        self.locked(job, || match std::fs::remove_file(self.path(job)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
    }
}

/// A line Gantry itself adds to a log, in yellow, with its newline.
fn gantry_line(line: &str) -> String {
    format!("\x1b[33;1m[gantry] {line}\x1b[0m\n")
}

/// After bytes `start..end` of a log were appended: sends their whole pages to
/// disk, and drops the pages [`CACHED_TAIL`] further back (written to disk by
/// an earlier call) from the cache. Consecutive appends cover consecutive
/// ranges, so every page is handled once. Only a hint: errors change nothing
/// about what is stored, so they are ignored.
fn write_behind(file: &std::fs::File, start: u64, end: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        const PAGE: u64 = 4096;
        const LARGEST_FOLIO: u64 = 2 * 1024 * 1024;
        let fd = file.as_raw_fd();
        let (from, to) = (start / PAGE * PAGE, end / PAGE * PAGE);
        // SAFETY: plain syscalls on a descriptor `file` keeps open; they only
        // schedule writeback or drop clean cached pages.
        unsafe {
            if to > from {
                libc::sync_file_range(
                    fd,
                    from as libc::off64_t,
                    (to - from) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            let (old_from, old_to) = (
                from.saturating_sub(CACHED_TAIL),
                to.saturating_sub(CACHED_TAIL),
            );
            if old_to > old_from {
                // Waits only if the disk is slower than the job's output:
                // then the job waits too, instead of memory filling up.
                libc::sync_file_range(
                    fd,
                    old_from as libc::off64_t,
                    (old_to - old_from) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WAIT_BEFORE
                        | libc::SYNC_FILE_RANGE_WRITE
                        | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                );
                // The cache holds a file in folios of up to 2 MiB, and a
                // folio that reaches past the range is kept whole: so the
                // drop starts 2 MiB back, taking the folio the last call
                // had to leave (without it, 40% of the pages stayed).
                let back = old_from.saturating_sub(LARGEST_FOLIO);
                libc::posix_fadvise(
                    fd,
                    back as libc::off64_t,
                    (old_to - back) as libc::off64_t,
                    libc::POSIX_FADV_DONTNEED,
                );
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, start, end);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resent_and_overlapping_chunks_are_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let logs = LogStore::new(dir.path().to_path_buf()).unwrap();
        let job = JobId(7);
        assert_eq!(logs.append(job, 0, b"hello\n").unwrap().size, 6);
        assert_eq!(
            logs.append(job, 0, b"hello\n").unwrap().size,
            6,
            "a resent chunk"
        );
        assert_eq!(
            logs.append(job, 3, b"lo\nworld\n").unwrap().size,
            12,
            "an overlapping chunk"
        );
        assert!(matches!(
            logs.append(job, 20, b"x"),
            Err(AppendError::Gap {
                offset: 20,
                size: 12
            })
        ));
        assert_eq!(
            logs.append_parts(job, 10, &[&b"d"[..], b"\nand ", b"more\n"])
                .unwrap()
                .size,
            21,
            "a chunk in parts, overlapping the end in its first part"
        );
        assert_eq!(
            logs.append_parts(job, 6, &[&b"wor"[..], b"ld\nand more\n"])
                .unwrap()
                .size,
            21,
            "a chunk in parts, all of it stored before"
        );
        assert_eq!(
            std::fs::read_to_string(logs.path(job)).unwrap(),
            "hello\nworld\nand more\n"
        );
        logs.note(job, "runner lost").unwrap();
        assert!(std::fs::read_to_string(logs.path(job))
            .unwrap()
            .contains("[gantry] runner lost"));
        logs.clear(job).unwrap();
        assert_eq!(logs.size(job).unwrap(), 0);
    }

    /// Writers of one job take turns (no line is torn), and once they are
    /// done the store keeps no lock for any job: a server that ran a million
    /// jobs holds no more than one that ran ten.
    #[test]
    fn writers_take_turns_and_leave_no_lock_behind() {
        let dir = tempfile::tempdir().unwrap();
        let logs = Arc::new(LogStore::new(dir.path().to_path_buf()).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let logs = logs.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        logs.note(JobId(t % 2), &format!("writer {t} line {i}"))
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for job in [JobId(0), JobId(1)] {
            let text = std::fs::read_to_string(logs.path(job)).unwrap();
            let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
            assert_eq!(lines.len(), 4 * 50);
            for line in lines {
                let words = line
                    .strip_prefix("\x1b[33;1m[gantry] writer ")
                    .and_then(|l| l.strip_suffix("\x1b[0m"))
                    .unwrap_or_else(|| panic!("a torn line: {line:?}"));
                assert!(words.contains(" line "), "a torn line: {line:?}");
            }
        }
        assert!(
            logs.locks.lock().unwrap().is_empty(),
            "locks left for jobs no one writes"
        );
    }

    /// A log far bigger than the cached tail: stored byte for byte, and its
    /// old part no longer held in memory once it is on disk.
    #[test]
    fn a_big_log_is_stored_whole_and_its_old_part_leaves_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let logs = LogStore::new(dir.path().to_path_buf()).unwrap();
        let job = JobId(9);
        let total = 3 * CACHED_TAIL as usize;
        let mut text = Vec::with_capacity(total + 32);
        for n in 0u64.. {
            if text.len() >= total {
                break;
            }
            text.extend_from_slice(format!("line {n:012}\n").as_bytes());
        }
        // Uneven chunks, so no append starts or ends on a page boundary.
        let mut at = 0;
        for chunk in text.chunks(1_000_003) {
            let ack = logs.append(job, at as u64, chunk).unwrap();
            at += chunk.len();
            assert_eq!(ack.size, at as u64);
        }
        #[cfg(target_os = "linux")]
        if let Some(resident) = resident_pages(&logs.path(job), CACHED_TAIL as usize) {
            let pages = CACHED_TAIL as usize / 4096;
            assert!(
                resident < pages / 10,
                "{resident} of the first {pages} pages are still cached"
            );
        }
        assert!(
            std::fs::read(logs.path(job)).unwrap() == text,
            "the log differs from what was sent"
        );
    }

    /// How many of the first `len` bytes' pages are in the page cache; `None`
    /// where that cannot tell (tmpfs keeps every page: it has no disk).
    #[cfg(target_os = "linux")]
    fn resident_pages(path: &std::path::Path, len: usize) -> Option<usize> {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(path).unwrap();
        // SAFETY: statfs fills the struct; mmap/mincore/munmap cover a
        // read-only mapping of `len` bytes of a file at least that long,
        // unmapped before returning.
        unsafe {
            let mut fs: libc::statfs = std::mem::zeroed();
            if libc::fstatfs(file.as_raw_fd(), &mut fs) != 0 || fs.f_type == libc::TMPFS_MAGIC {
                return None;
            }
            let map = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            );
            assert_ne!(map, libc::MAP_FAILED);
            let mut vec = vec![0u8; len.div_ceil(4096)];
            let ok = libc::mincore(map, len, vec.as_mut_ptr());
            libc::munmap(map, len);
            assert_eq!(ok, 0, "mincore");
            Some(vec.iter().filter(|b| **b & 1 == 1).count())
        }
    }
}
