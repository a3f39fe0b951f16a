//! `gantry`: one binary for the server, the runner, local runs and linting.
//! Wiring only: each subcommand lives in its own module or crate.

mod exec;
mod lint;
mod server;

use gantry_cli::{logging, memory, runner};

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "gantry",
    version,
    about = "A self-hosted CI/CD server in the spirit of Travis CI"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (webhooks, API, web viewer) with an embedded runner.
    Server(Box<server::ServerCommand>),
    /// Run a remote runner that claims jobs from a server.
    Runner(gantry_runner::config::RunnerArgs),
    /// Run the pipeline of the current checkout on the local Docker, without a server.
    Exec(exec::ExecArgs),
    /// Check pipeline files and show the jobs they expand to.
    Lint(lint::LintArgs),
}

fn main() -> ExitCode {
    memory::tune_malloc();
    if let Some(ended) = runner::job_process() {
        return ended;
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Server(args) => {
            logging::init();
            server::run(*args)
        }
        Command::Runner(args) => {
            logging::init();
            runner::run(args)
        }
        Command::Exec(args) => exec::run(args),
        Command::Lint(args) => lint::run(&args),
    }
}
