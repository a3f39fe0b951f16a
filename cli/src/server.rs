//! `gantry server`: settings in, a running server out, until Ctrl-C or SIGTERM.
//! The embedded runner talks to the server over HTTP like any remote runner,
//! with a token made at start-up, except for job logs: those it hands to the
//! server's log store in-process ([`EmbeddedLogs`]).

use clap::Args;
use futures::future::BoxFuture;
use gantry_protocol::{JobId, LogAck};
use gantry_runner::client::ClientError;
use gantry_runner::config::LimitArgs;
use gantry_server::api::runner::{append_log, LogAppend};
use gantry_server::config::{Database, ServerArgs};
use gantry_server::App;
use gantry_server::Server;
use rand::RngCore;
use std::process::ExitCode;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Args)]
pub struct ServerCommand {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    limits: LimitArgs,
}

pub fn run(command: ServerCommand) -> ExitCode {
    let ServerCommand {
        server: args,
        limits,
    } = command;
    let config = match args.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("gantry server: {e}");
            return ExitCode::from(2);
        }
    };
    gantry_cli::memory::restart_without_thread_caches();
    gantry_cli::memory::return_free_memory();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gantry server: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(config.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("gantry server: cannot listen on {} (GANTRY_LISTEN): {e}", config.listen);
                return ExitCode::FAILURE;
            }
        };
        let address = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let database = match &config.database {
            Database::Sqlite(path) => format!("SQLite at {}", path.display()),
            Database::Postgres(_) => "PostgreSQL (GANTRY_DATABASE_URL)".to_string(),
        };
        let data_dir = config.data_dir.display().to_string();
        let runner_dir = config.data_dir.join("runner");
        let embedded = config.embedded_runners;
        let mut token_bytes = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut token_bytes);
        let embedded_token = hex::encode(token_bytes);
        let server = match Server::build(config, (embedded > 0).then_some(embedded_token.as_str())).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("gantry server: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("gantry server listening on http://{address}");
        println!("  webhooks: POST http://{address}/hooks/github");
        println!("  data: {data_dir} ({database})");
        let stop_runner = CancellationToken::new();
        let runner = (embedded > 0).then(|| {
            let host = if address.starts_with("0.0.0.0:") { address.replacen("0.0.0.0", "127.0.0.1", 1) } else { address.clone() };
            let config = gantry_runner::agent::AgentConfig {
                server: format!("http://{host}"),
                token: embedded_token.clone(),
                // Unique per server on a host: a runner's janitor removes
                // everything labelled with its name.
                name: format!(
                    "embedded@{}:{}",
                    gantry_runner::config::default_name().trim_start_matches("runner@"),
                    host.rsplit(':').next().unwrap_or("0")
                ),
                capacity: embedded as usize,
                data_dir: runner_dir,
                limits: limits.limits(),
                no_output_timeout: limits.no_output_timeout(),
                max_job_time: limits.max_job_time(),
                labels: [("embedded".to_string(), "true".to_string())].into(),
                snapshots: limits.checkout_snapshots,
                // In the server's own process: it maps all that code anyway.
                job_process: None,
                // In the same process as the log store: no HTTP for logs.
                in_process_logs: Some(Arc::new(EmbeddedLogs(server.app().clone()))),
            };
            println!("  embedded runner: {} job(s) at once", embedded);
            let stop = stop_runner.clone();
            tokio::spawn(async move {
                if let Err(e) = gantry_runner::agent::run(config, stop).await {
                    eprintln!("gantry server: the embedded runner stopped: {e}; jobs wait for a remote runner");
                }
            })
        });
        // The runner stops claiming at the signal, not after the server has
        // stopped: the server's graceful stop waits for open requests, and
        // the runner's claim is a 30-second long poll.
        let signal = {
            let stop_runner = stop_runner.clone();
            async move {
                gantry_cli::signal::shutdown_signal().await;
                stop_runner.cancel();
            }
        };
        let result = server.serve(listener, signal).await;
        stop_runner.cancel();
        if let Some(runner) = runner {
            let _ = runner.await;
        }
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gantry server: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// The embedded runner's way to store job logs: the runner API's log call
/// (lease checked, appended in turn, live tails woken), without HTTP.
struct EmbeddedLogs(App);

impl gantry_runner::upload::InProcessLogs for EmbeddedLogs {
    fn append(
        &self,
        job: JobId,
        lease: String,
        offset: u64,
        bytes: bytes::Bytes,
    ) -> BoxFuture<'static, Result<LogAck, ClientError>> {
        let app = self.0.clone();
        Box::pin(async move {
            match append_log(&app, job, &lease, offset, vec![bytes]).await {
                Ok(LogAppend::Stored(ack)) => Ok(ack),
                Ok(LogAppend::Gap(ack)) => Err(ClientError::Gap { size: ack.size }),
                Ok(LogAppend::LeaseLost) => Err(ClientError::LeaseLost),
                // As a 5xx over HTTP: the runner tries again.
                Err(e) => Err(ClientError::Unreachable(format!(
                    "the log store failed: {e}"
                ))),
            }
        })
    }
}
