//! Log lines on stderr, filtered by `GANTRY_LOG` (default `info`).

/// Installs the subscriber; call once, before the runtime starts.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GANTRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
