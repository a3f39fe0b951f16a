//! `gantry server`: settings in, a running server out, until Ctrl-C or SIGTERM.

use gantry_server::config::{Database, ServerArgs};
use gantry_server::Server;
use std::process::ExitCode;

pub fn run(args: ServerArgs) -> ExitCode {
    let config = match args.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("gantry server: {e}");
            return ExitCode::from(2);
        }
    };
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
        let embedded = config.embedded_runners;
        let server = match Server::build(config, None).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("gantry server: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("gantry server listening on http://{address}");
        println!("  webhooks: POST http://{address}/hooks/github");
        println!("  data: {data_dir} ({database})");
        if embedded > 0 {
            println!("  embedded runner: not available in this version yet; start no jobs until a runner connects");
        }
        match server.serve(listener, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gantry server: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
