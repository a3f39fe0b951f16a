//! A remote runner (`gantry runner`, `gantry-runner`), until SIGTERM:
//! running jobs finish first. Its jobs run in a child of the same binary,
//! the job process (`gantry_runner::job_process`).

use gantry_runner::config::RunnerArgs;
use gantry_runner::job_process::{self as jobs, ENV};
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

pub fn run(args: RunnerArgs) -> ExitCode {
    crate::memory::restart_without_thread_caches();
    let mut config = args.into_config();
    match std::env::current_exe() {
        Ok(program) => config.job_process = Some(program),
        Err(e) => {
            eprintln!("gantry runner: cannot find its own program to run jobs in: {e}");
            return ExitCode::FAILURE;
        }
    }
    crate::memory::return_free_memory();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gantry runner: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            crate::signal::shutdown_signal().await;
            eprintln!("gantry runner: stopping; running jobs finish first");
            signal.cancel();
        });
        println!(
            "gantry runner {} taking jobs from {} ({} at once)",
            config.name, config.server, config.capacity
        );
        match gantry_runner::agent::run(config, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gantry runner: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Both binaries start here: when the runner started this process as its
/// job process, runs that and returns how it ended; otherwise `None`.
pub fn job_process() -> Option<ExitCode> {
    std::env::var_os(ENV)?;
    // Not for the programs the jobs start.
    std::env::remove_var(ENV);
    crate::logging::init_job_process();
    crate::memory::return_free_memory();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gantry job process: cannot start the async runtime: {e}");
            return Some(ExitCode::FAILURE);
        }
    };
    let ended = runtime.block_on(async {
        // A service manager signals every process of the runner; the runner
        // stops this one once its jobs have finished.
        tokio::spawn(async {
            loop {
                crate::signal::shutdown_signal().await;
                tracing::info!("the job process stops when the runner tells it to");
            }
        });
        jobs::serve().await
    });
    Some(match ended {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gantry job process: {e}");
            ExitCode::FAILURE
        }
    })
}
