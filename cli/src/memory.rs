//! How the process asks glibc's malloc to behave.
//!
//! glibc gives each thread that allocates its own arena, up to eight per
//! core. A server's threads come and go (tokio's blocking pool, one worker
//! thread per SQLite connection), and what they free stays resident in their
//! arenas. Gantry uses one arena: `malloc_trim` gives back the free top of
//! the main heap but never the top of another arena, where a busy spell's
//! freed memory stayed (1.2 MiB in the server after 100 jobs). Per-thread
//! caches keep most allocations off the arena's lock, and metric 4 (1 GiB of
//! log through the server) measured the same throughput ratio with one.
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
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
    }
}

/// How often a long-running process hands free memory back.
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// For the server and the runner: once a minute, gives the system back the
/// memory malloc holds free. The thresholds above keep up to 8 MiB free at
/// the heap's top for the next big buffer, and pages freed inside the heap
/// stay resident too; after a busy spell (a build's logs, a burst of
/// webhooks) an idle process would go on holding them. Go's runtime does the
/// same for Go's CI agents. Once a minute costs at most one refill of a log
/// buffer's pages.
pub fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let trimmer = std::thread::Builder::new()
            .name("malloc-trim".into())
            .stack_size(64 * 1024)
            .spawn(|| loop {
                std::thread::sleep(TRIM_EVERY);
                // SAFETY: malloc_trim takes each arena's lock; it is safe
                // to call while other threads allocate.
                unsafe { libc::malloc_trim(0) };
            });
        if let Err(e) = trimmer {
            tracing::warn!(error = %e, "cannot start the thread that returns free memory");
        }
    }
}
