//! Log lines on stderr, filtered by `GANTRY_LOG` (default `info`), in
//! colour only on a terminal.

use std::fmt;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Installs the subscriber; call once, before the runtime starts.
pub fn init() {
    install(None);
}

/// As [`init`], for the runner's job process: it shares the runner's
/// stderr, so each of its lines starts with `job process[PID]:` to tell the
/// two apart.
pub fn init_job_process() {
    install(Some(format!("job process[{}]:", std::process::id())));
}

fn install(prefix: Option<String>) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GANTRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours for a terminal; plain text for journald, `docker logs`, files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .event_format(Prefixed {
            prefix,
            format: Format::default(),
        })
        .init();
}

/// The default line format, after an optional prefix.
struct Prefixed {
    prefix: Option<String>,
    format: Format,
}

impl<S, N> FormatEvent<S, N> for Prefixed
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if let Some(prefix) = &self.prefix {
            write!(writer, "{prefix} ")?;
        }
        self.format.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// The lines a subscriber with `prefix` writes for one warning.
    fn lines_with(prefix: Option<&str>) -> String {
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || Sink(sink.clone()))
            .with_ansi(false)
            .event_format(Prefixed {
                prefix: prefix.map(str::to_string),
                format: Format::default(),
            })
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(job = 7, "cannot report to the runner");
        });
        let bytes = out.lock().expect("the log").clone();
        String::from_utf8(bytes).expect("UTF-8 lines")
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("the log").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_job_process_lines_can_be_told_from_the_runners() {
        let runner = lines_with(None);
        let job_process = lines_with(Some("job process[42]:"));
        assert!(
            runner.contains("WARN") && runner.contains("cannot report to the runner job=7"),
            "{runner}"
        );
        assert!(!runner.starts_with("job process"), "{runner}");
        assert!(
            job_process.starts_with("job process[42]: "),
            "{job_process}"
        );
        assert!(
            job_process.ends_with(runner.split_once(" WARN").expect("a level").1),
            "the rest of the line is the usual format: {job_process}"
        );
    }
}
