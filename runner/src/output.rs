//! A job's output, read by the runner from a FIFO in the job's `/gantry` dir.
//!
//! Docker's exec attach carries output through containerd's shim and
//! dockerd's HTTP stream: about 140 MiB/s on a 2-core machine, a fifth of
//! what a job printing a big log writes (bench metric 4). So each step's
//! shell sends its stdout and stderr into this FIFO instead, which moves at
//! pipe speed (above 1.5 GiB/s there); the attach stream stays, for what the
//! shell says before the redirect and to learn when the step has ended.
//!
//! The runner opens the FIFO once per job and keeps it open (read and write,
//! so it never reads end-of-file): a background process that outlives its
//! step still writes into the log, instead of dying of SIGPIPE.

use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

/// The FIFO's name in the job's gantry dir.
pub const FILE: &str = "output";
/// The pipe buffer asked for: fewer, larger reads (Linux's default is 64 KiB).
const CAPACITY: libc::c_int = 1 << 20;
/// One read's most.
const READ: usize = 256 * 1024;

/// The read end of a job's output FIFO.
pub struct OutputFifo {
    rx: pipe::Receiver,
    /// The pipe buffer's size: the most a finished step can leave in it.
    capacity: usize,
    buf: Vec<u8>,
}

impl OutputFifo {
    /// Makes `<gantry_dir>/output` (replacing a stale one) and opens it.
    pub fn create(gantry_dir: &Path) -> io::Result<OutputFifo> {
        let path = gantry_dir.join(FILE);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let c_path = CString::new(path.as_os_str().as_bytes())?;
        // SAFETY: a valid NUL-terminated path; mkfifo only reads it.
        if unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // Writable by the job's user whoever it is (an image's `USER`), but
        // readable only by the runner.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o622))?;
        let rx = pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(&path)?;
        let fd = rx.as_raw_fd();
        // SAFETY: fcntl on a pipe descriptor this struct owns; failure
        // (above the system's pipe-max-size) only keeps the default size.
        let capacity = unsafe {
            match libc::fcntl(fd, libc::F_SETPIPE_SZ, CAPACITY) {
                n if n > 0 => n,
                _ => libc::fcntl(fd, libc::F_GETPIPE_SZ),
            }
        };
        Ok(OutputFifo {
            rx,
            capacity: usize::try_from(capacity).unwrap_or(64 * 1024).max(4096),
            buf: vec![0; READ],
        })
    }

    /// Waits for output; never returns an empty slice (the runner holds a
    /// write end, so there is no end of file).
    pub async fn read(&mut self) -> io::Result<&[u8]> {
        let n = self.rx.read(&mut self.buf).await?;
        Ok(&self.buf[..n])
    }

    /// What is already waiting, without waiting: at most one pipe's worth,
    /// all a finished step can have left, so that a background process
    /// printing without pause cannot hold the step open.
    pub fn drain(&mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        while out.len() < self.capacity {
            match self.rx.try_read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&self.buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn what_a_writer_sends_is_read_in_order_and_drained() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut fifo = OutputFifo::create(dir.path()).expect("fifo");
        let path = dir.path().join(FILE);
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o622,
            "writable by any job user, readable by the runner only"
        );

        // A writer that opens, writes and closes (a step), then another.
        let mut expected = Vec::new();
        for step in 0..2 {
            let mut w = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open for writing");
            let text = format!("step {step}: {}\n", "x".repeat(100)).repeat(50);
            w.write_all(text.as_bytes()).expect("write");
            expected.extend_from_slice(text.as_bytes());
        }
        let mut got = fifo.read().await.expect("read").to_vec();
        got.extend(fifo.drain().expect("drain"));
        assert_eq!(got, expected);
        // Both writers have gone, yet nothing reads as the end: the next step writes here too.
        assert!(fifo.drain().expect("drain").is_empty());
    }

    #[tokio::test]
    async fn a_stale_fifo_is_replaced() {
        let dir = tempfile::tempdir().expect("temp dir");
        drop(OutputFifo::create(dir.path()).expect("first"));
        OutputFifo::create(dir.path()).expect("second, over the first");
    }
}
