//! `gantry exec`: run a job of the current checkout on the local Docker.

use clap::Args;
use gantry_protocol::JobOutcome;
use gantry_runner::config::LimitArgs;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The job to run, by name or number (default: the first).
    #[arg(long)]
    job: Option<String>,
    /// The checkout (default: the current directory).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    #[command(flatten)]
    limits: LimitArgs,
}

pub fn run(args: ExecArgs) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gantry exec: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let dir = std::fs::canonicalize(&args.dir).unwrap_or(args.dir.clone());
    runtime.block_on(async move {
        let cancel = CancellationToken::new();
        let on_signal = cancel.clone();
        tokio::spawn(async move {
            gantry_cli::signal::shutdown_signal().await;
            on_signal.cancel();
        });
        match gantry_runner::local::exec(&dir, args.job.as_deref(), args.limits.limits(), cancel)
            .await
        {
            Ok(outcome) => ExitCode::from(match outcome.outcome {
                JobOutcome::Passed => 0,
                JobOutcome::Failed => 1,
                JobOutcome::Errored => 2,
                JobOutcome::Canceled => 130,
            }),
            Err(e) => {
                eprintln!("gantry exec: {e}");
                ExitCode::from(2)
            }
        }
    })
}
