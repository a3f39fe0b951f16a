//! How the process asks glibc's malloc to behave.
//!
//! glibc gives each thread that allocates its own arena, up to eight per
//! core. A server's threads come and go (tokio's blocking pool, one worker
//! thread per SQLite connection), and what they free stays resident in their
//! arenas. Two arenas serve Gantry's two busy threads (the tokio workers)
//! without contention and let memory freed after a busy spell be reused.
//!
//! A big log moves through buffers of up to a few MiB (a read of the job's
//! output, an upload, a request body). Left to itself, malloc serves those
//! with fresh `mmap`s or trims them off the heap when freed, so every byte of
//! the log landed in freshly faulted pages: 260,000 page faults for a 1 GiB
//! log (bench metric 4), a second or more on a VM. Below 4 MiB they come from
//! the heap, and up to 8 MiB freed at its top stays for the next one.

/// Call first in `main`, before any other thread starts.
pub fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's tuning; no thread allocates yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
    }
}
