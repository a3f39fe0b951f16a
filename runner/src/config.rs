//! `gantry runner` settings: every one a flag and an env var.

use crate::agent::AgentConfig;
use crate::docker::Limits;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// No `Debug`: it holds the runner token.
#[derive(Clone, Args)]
pub struct RunnerArgs {
    /// The Gantry server to take jobs from.
    #[arg(long, env = "GANTRY_SERVER_URL")]
    pub server: String,
    /// The server's GANTRY_RUNNER_TOKEN.
    #[arg(long, env = "GANTRY_RUNNER_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Jobs run at once.
    #[arg(long, env = "GANTRY_RUNNER_CAPACITY", default_value_t = 1)]
    pub capacity: usize,
    /// The runner's name, shown on its jobs (default: runner@<hostname>).
    #[arg(long, env = "GANTRY_RUNNER_NAME")]
    pub name: Option<String>,
    /// Labels describing the runner (k=v), shown on its jobs.
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Mirrors and workspaces live here.
    #[arg(long, env = "GANTRY_DATA_DIR", default_value = "./gantry-runner-data")]
    pub data_dir: PathBuf,
}

/// Limits every job gets; shared by `gantry runner`, `gantry server` and `gantry exec`.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Memory per job, in MiB (swap included).
    #[arg(long, env = "GANTRY_JOB_MEMORY_MB", default_value_t = 4096)]
    pub job_memory_mb: i64,
    /// CPUs per job.
    #[arg(long, env = "GANTRY_JOB_CPUS", default_value_t = 2.0)]
    pub job_cpus: f64,
    /// Processes per job.
    #[arg(long, env = "GANTRY_JOB_PIDS", default_value_t = 4096)]
    pub job_pids: i64,
    /// Minutes a job may print nothing before it is stopped.
    #[arg(long, env = "GANTRY_NO_OUTPUT_TIMEOUT_MINUTES", default_value_t = 10)]
    pub no_output_timeout_minutes: u64,
    /// Cap on any job's minutes, below the pipeline's `timeout`.
    #[arg(long, env = "GANTRY_MAX_JOB_MINUTES")]
    pub max_job_minutes: Option<u64>,
    /// Give jobs that ask with `services: docker` the host's Docker socket (never to forks).
    #[arg(long, env = "GANTRY_ALLOW_DOCKER_SOCKET", default_value_t = false)]
    pub allow_docker_socket: bool,
    /// Check out each commit once and give its jobs overlays of it (false: a
    /// full checkout per job, e.g. where Docker cannot see the runner's mounts).
    #[arg(long, env = "GANTRY_CHECKOUT_SNAPSHOTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub checkout_snapshots: bool,
    /// MiB of build caches (`cache:`) this runner keeps; the least recently
    /// used are removed past it.
    #[arg(long, env = "GANTRY_CACHE_MB", default_value_t = 10240)]
    pub cache_mb: u64,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not key=value"))
}

impl LimitArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            memory_bytes: self.job_memory_mb.max(16) * 1024 * 1024,
            nano_cpus: (self.job_cpus.max(0.1) * 1e9) as i64,
            pids: self.job_pids.max(16),
            allow_docker_socket: self.allow_docker_socket,
            cache_bytes: self.cache_mb * 1024 * 1024,
        }
    }

    pub fn max_job_time(&self) -> Option<Duration> {
        self.max_job_minutes
            .map(|m| Duration::from_secs(m.max(1) * 60))
    }

    pub fn no_output_timeout(&self) -> Duration {
        Duration::from_secs(self.no_output_timeout_minutes.max(1) * 60)
    }
}

/// `runner@<hostname>`.
pub fn default_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let host = if host.is_empty() {
        std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into())
    } else {
        host
    };
    format!("runner@{host}")
}

impl RunnerArgs {
    pub fn into_config(self) -> AgentConfig {
        AgentConfig {
            server: self.server,
            token: self.token,
            name: self.name.unwrap_or_else(default_name),
            capacity: self.capacity.max(1),
            data_dir: self.data_dir,
            limits: self.limits.limits(),
            no_output_timeout: self.limits.no_output_timeout(),
            max_job_time: self.limits.max_job_time(),
            labels: self.labels.into_iter().collect(),
            snapshots: self.limits.checkout_snapshots,
            job_process: None,
            in_process_logs: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        runner: RunnerArgs,
    }

    fn config(extra: &[&str]) -> AgentConfig {
        let args = [
            "gantry-runner",
            "--server",
            "http://127.0.0.1:1",
            "--token",
            "t",
        ];
        Cli::try_parse_from(args.iter().chain(extra))
            .expect("valid flags")
            .runner
            .into_config()
    }

    #[test]
    fn checkout_snapshots_are_on_unless_turned_off() {
        assert!(config(&[]).snapshots);
        assert!(!config(&["--checkout-snapshots", "false"]).snapshots);
        assert!(config(&["--checkout-snapshots", "true"]).snapshots);
        assert!(
            Cli::try_parse_from([
                "r",
                "--server",
                "s",
                "--token",
                "t",
                "--checkout-snapshots",
                "no"
            ])
            .is_err(),
            "a value that is not true or false is refused"
        );
    }
}
