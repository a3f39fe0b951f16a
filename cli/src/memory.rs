//! How the process asks glibc's malloc to behave.
//!
//! glibc gives each thread that allocates its own arena, up to eight per
//! core. A server's threads come and go (tokio's blocking pool, one worker
//! thread per SQLite connection), and what they free stays resident in their
//! arenas. Two arenas serve Gantry's two busy threads (the tokio workers)
//! without contention and let memory freed after a busy spell be reused.

/// Call first in `main`, before any other thread starts.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's tuning; no thread allocates yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
