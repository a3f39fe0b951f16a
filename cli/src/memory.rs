//! How the process asks glibc's malloc to behave.
//!
//! glibc gives each thread that allocates its own arena, up to eight per
//! core. A server's threads come and go (tokio's blocking pool, one worker
//! thread per SQLite connection), and what they free stays resident in their
//! arenas. Gantry uses one arena: `malloc_trim` gives back the free top of
//! the main heap but never the top of another arena, where a busy spell's
//! freed memory stayed (1.2 MiB in the server after 100 jobs). Metric 4
//! (1 GiB of log through the server) measured the same throughput ratio with
//! one. The server and the runner also run without glibc's per-thread
//! caches ([`restart_without_thread_caches`]).
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

/// glibc's tunable for no per-thread caches. glibc reads tunables only
/// when a program starts, from `GLIBC_TUNABLES`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const NO_THREAD_CACHES: &str = "glibc.malloc.tcache_count=0";

/// Set for the restarted program: `GLIBC_TUNABLES` as it was before,
/// after `set:`, or `unset`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TUNABLES_BEFORE: &str = "GANTRY_GLIBC_TUNABLES_BEFORE";

/// For the server and the runner, which are idle most of their lives:
/// called first in their `run`, before any thread starts. Runs
/// the program again in this process (`exec`, same PID) with glibc's
/// per-thread malloc caches off, and then puts the environment back, so
/// the programs it starts (job processes, `git`, `docker`) get it as it was.
///
/// Each thread keeps up to seven freed chunks of each small size for
/// itself. They lie scattered over the heap, and each pins its page:
/// `malloc_trim` cannot give back a page that holds one. After 100 jobs
/// the server's heap and stacks were 1.07 MiB above idle with the caches
/// and 0.28 MiB without (bench metric 6). Log ingest (metric 4) and
/// webhook bursts (metric 3) ran as fast without them: 6,231 and 6,638
/// acknowledgements a second in two runs, against 6,589 with them.
///
/// A `tcache_count` the user set in `GLIBC_TUNABLES` is kept. Where the
/// program cannot be run again (its file gone), it goes on with the caches.
pub fn restart_without_thread_caches() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        if let Some(before) = std::env::var_os(TUNABLES_BEFORE) {
            std::env::remove_var(TUNABLES_BEFORE);
            match before.to_str().and_then(|b| b.strip_prefix("set:")) {
                Some(value) => std::env::set_var("GLIBC_TUNABLES", value),
                None => std::env::remove_var("GLIBC_TUNABLES"),
            }
            return;
        }
        let current = match std::env::var("GLIBC_TUNABLES") {
            Ok(value) => Some(value),
            Err(std::env::VarError::NotPresent) => None,
            // Not text: not a setting Gantry can add to, so left alone.
            Err(std::env::VarError::NotUnicode(_)) => return,
        };
        let Some(tunables) = without_thread_caches(current.as_deref()) else {
            return;
        };
        let before = match &current {
            Some(value) => format!("set:{value}"),
            None => "unset".into(),
        };
        let mut args = std::env::args_os();
        let program = args.next().unwrap_or_default();
        // By its path, not `/proc/self/exe`: the kernel names the process
        // after the file run, and `pgrep gantry` and `top` should find it.
        let this = std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into());
        let error = std::process::Command::new(this)
            .arg0(program)
            .args(args)
            .env("GLIBC_TUNABLES", tunables)
            .env(TUNABLES_BEFORE, before)
            .exec();
        eprintln!("gantry: running with glibc's per-thread malloc caches (cannot restart without them: {error})");
    }
}

/// `GLIBC_TUNABLES` with the thread caches off, or `None` when `current`
/// already sets their size.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn without_thread_caches(current: Option<&str>) -> Option<String> {
    match current {
        Some(value) if value.contains("glibc.malloc.tcache_count=") => None,
        Some(value) if !value.is_empty() => Some(format!("{value}:{NO_THREAD_CACHES}")),
        _ => Some(NO_THREAD_CACHES.into()),
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

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    #[test]
    fn the_thread_caches_go_off_beside_the_users_tunables_but_never_over_their_own_size() {
        assert_eq!(
            without_thread_caches(None).as_deref(),
            Some("glibc.malloc.tcache_count=0")
        );
        assert_eq!(
            without_thread_caches(Some("")).as_deref(),
            Some("glibc.malloc.tcache_count=0")
        );
        assert_eq!(
            without_thread_caches(Some("glibc.malloc.check=3")).as_deref(),
            Some("glibc.malloc.check=3:glibc.malloc.tcache_count=0")
        );
        assert_eq!(
            without_thread_caches(Some("glibc.malloc.tcache_count=4")),
            None
        );
    }
}
