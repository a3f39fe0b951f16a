//! Job logs: one append-only file per job under `DATA_DIR/logs`, never held
//! whole in memory. Chunks carry the byte offset they start at, so a chunk
//! sent twice (a retry after a lost response) is stored once.

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

    fn lock(&self, job: JobId) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(job).or_default().clone()
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
        let lock = self.lock(job);
        let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let size = self.size(job)?;
        if offset > size {
            return Err(AppendError::Gap { offset, size });
        }
        let already = (size - offset) as usize;
        if already < bytes.len() {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path(job))?;
            file.write_all(&bytes[already..])?;
            file.flush()?;
            return Ok(LogAck {
                size: offset + bytes.len() as u64,
            });
        }
        Ok(LogAck { size })
    }

    /// Adds a line from Gantry itself (e.g. why a job was taken back). Blocking.
    pub fn note(&self, job: JobId, line: &str) -> io::Result<()> {
        let lock = self.lock(job);
        let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(job))?;
        let size = file.seek(SeekFrom::End(0))?;
        let sep = if size > 0 { "\n" } else { "" };
        writeln!(file, "{sep}\x1b[33;1m[gantry] {line}\x1b[0m")?;
        Ok(())
    }

    /// Empties a job's log, for a job that runs again. Blocking.
    pub fn clear(&self, job: JobId) -> io::Result<()> {
        let lock = self.lock(job);
        let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        match std::fs::remove_file(self.path(job)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
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
            std::fs::read_to_string(logs.path(job)).unwrap(),
            "hello\nworld\n"
        );
        logs.note(job, "runner lost").unwrap();
        assert!(std::fs::read_to_string(logs.path(job))
            .unwrap()
            .contains("[gantry] runner lost"));
        logs.clear(job).unwrap();
        assert_eq!(logs.size(job).unwrap(), 0);
    }
}
