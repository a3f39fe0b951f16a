//! A remote runner (`gantry runner`, `gantry-runner`), until SIGTERM:
//! running jobs finish first.

use gantry_runner::config::RunnerArgs;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

pub fn run(args: RunnerArgs) -> ExitCode {
    let config = args.into_config();
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
