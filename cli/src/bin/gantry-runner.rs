//! `gantry-runner`: the runner alone, for machines that only run jobs.
//!
//! It takes the same settings as `gantry runner` but leaves out the server,
//! the web viewer and the database drivers, so it maps a third less code
//! and an idle runner keeps less of it resident (bench metric 6).

use clap::Parser;
use gantry_runner::config::RunnerArgs;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "gantry-runner",
    version,
    about = "A Gantry runner: claims jobs from a server and runs them in throwaway Docker containers"
)]
struct Cli {
    #[command(flatten)]
    runner: RunnerArgs,
}

fn main() -> ExitCode {
    gantry_cli::memory::tune_malloc();
    if let Some(ended) = gantry_cli::runner::job_process() {
        return ended;
    }
    let cli = Cli::parse();
    gantry_cli::logging::init();
    gantry_cli::runner::run(cli.runner)
}
