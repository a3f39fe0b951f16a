//! `gantry-bench`: measures Gantry against the floor — the same work done
//! straight through Docker, git or SQL — in one run, interleaving the two
//! (ABAB), and prints a table of medians, percentiles and ratios. It never
//! judges speed by failing; it exits non-zero only when something is wrong
//! (a lost line or delivery, a double claim, Docker objects left behind).
//!
//! Run it through `bench/run.sh`, which builds in release mode and prepares
//! the images and PostgreSQL.

mod metrics;
mod setup;
mod stats;

use clap::Parser;
use gantry_testkit::github::GitHubDouble;
// `fail!` is exported at the crate root by setup.rs.
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Measures Gantry against the floor (raw Docker, git, SQL) in one run")]
struct Args {
    /// Which metrics to run (1-8), comma-separated; all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<u8>,
    /// Samples kept per latency metric (1, 2, 7), after the warm-up.
    #[arg(long, default_value_t = 30)]
    samples: usize,
    /// Samples run first and thrown away.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Webhooks in the acknowledgement burst (metric 3).
    #[arg(long, default_value_t = 20_000)]
    burst: usize,
    /// Size of the big log in MiB (metric 4); 0 skips it.
    #[arg(long, default_value_t = 1024)]
    log_mib: u64,
    /// Big-log builds (and as many floor runs).
    #[arg(long, default_value_t = 3)]
    log_rounds: usize,
    /// Seconds of idling before each memory reading (metric 6).
    #[arg(long, default_value_t = 300)]
    idle_secs: u64,
    /// Rounds of 1,000 claims per database (metric 8).
    #[arg(long, default_value_t = 10)]
    claim_rounds: usize,
    /// Where the results table is also written.
    #[arg(long, default_value = "target/bench/latest.md")]
    out: PathBuf,
}

/// What the measurements share.
pub struct Cx {
    pub github: GitHubDouble,
    pub github_url: String,
    pub image: String,
    pub samples: usize,
    pub warmup: usize,
    pub burst: usize,
    pub log_bytes: u64,
    pub log_rounds: usize,
    pub idle: Duration,
    pub claim_rounds: usize,
    pub postgres: Option<String>,
}

/// `GANTRY_BENCH_DATABASE_URL`, checked before anything is measured: a
/// wrong one would otherwise fail the run at metric 8, minutes in.
fn postgres_url() -> Option<String> {
    let url = std::env::var("GANTRY_BENCH_DATABASE_URL").ok()?;
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        crate::fail!(
            "GANTRY_BENCH_DATABASE_URL is {}, not a postgres:// URL (not shown: it may hold a password): scripts/start-postgres.sh prints one; unset it to measure SQLite alone",
            if url.is_empty() { "empty" } else { "set" }
        );
    }
    Some(url)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let image = setup::tools_image(&root);
    let github = GitHubDouble::start().await;
    let cx = Cx {
        github_url: github.url.clone(),
        github,
        image,
        samples: args.samples,
        warmup: args.warmup,
        burst: args.burst,
        log_bytes: args.log_mib * 1_048_576,
        log_rounds: args.log_rounds,
        idle: Duration::from_secs(args.idle_secs),
        claim_rounds: args.claim_rounds,
        postgres: postgres_url(),
    };
    let wanted = |n: u8| args.only.is_empty() || args.only.contains(&n);
    let started = std::time::Instant::now();
    let mut rows = Vec::new();
    if wanted(1) || wanted(2) {
        rows.extend(metrics::pickup::run(&cx).await);
    }
    if wanted(3) {
        rows.extend(metrics::ingest::run(&cx).await);
    }
    if wanted(4) || wanted(5) {
        let cx4 = Cx {
            log_bytes: if wanted(4) { cx.log_bytes } else { 0 },
            ..cx.clone_settings()
        };
        rows.extend(metrics::logs::run(&cx4).await);
    }
    if wanted(6) {
        rows.extend(metrics::idle::run(&cx).await);
    }
    if wanted(7) {
        rows.extend(metrics::clone::run(&cx).await);
    }
    if wanted(8) {
        rows.extend(metrics::claim::run(&cx).await);
    }

    // Whatever was measured, nothing of Gantry's may stay behind.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let left = setup::leftovers(true).await;
    if !left.is_empty() {
        fail!("Docker objects left behind: {}", left.join("; "));
    }

    let table = stats::table(&rows);
    let header = format!(
        "Gantry benchmarks, {} — {} cores, {} GiB; {} samples after {} warm-up; took {} s\n\n",
        machine_date(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        memory_gib(),
        args.samples,
        args.warmup,
        started.elapsed().as_secs()
    );
    println!("\n{header}{table}");
    if let Some(dir) = args.out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(&args.out, format!("{header}{table}")) {
        eprintln!("cannot write {}: {e}", args.out.display());
    }
}

impl Cx {
    /// The same settings over the same GitHub double.
    fn clone_settings(&self) -> Cx {
        Cx {
            github: self.github.clone(),
            github_url: self.github_url.clone(),
            image: self.image.clone(),
            postgres: self.postgres.clone(),
            ..*self
        }
    }
}

fn machine_date() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn memory_gib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .map(|kb| (kb + 524_288) / 1_048_576)
        .unwrap_or(0)
}
