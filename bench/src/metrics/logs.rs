//! Metrics 4 and 5: big logs and live tails.
//!
//! 4. A job printing numbered lines at full speed (1 GiB by default):
//!    throughput from the container's start to the build stored as passed,
//!    every line read back in order, and the server's memory growth (polled
//!    every 50 ms). Floor: the same container writing to /dev/null inside
//!    it (`docker run … sh -c 'benchtool lines N > /dev/null'`), start to end.
//! 5. A line stamped every 10 ms, received by an SSE client on
//!    `/api/jobs/{id}/events`. Floor: `docker logs -f` on the same container.

use crate::fail;
use crate::setup::{now_ns, Client, Process, Project, Stage, Starts};
use crate::stats::{num, signed, Row, Samples};
use crate::Cx;
use futures::StreamExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

/// `benchtool lines`' fixed line: "line %012llu <pad>\n".
const LINE_BYTES: u64 = 18 + 79 + 1;
const TICKS: usize = 400;
const TICK_WARMUP: u64 = 20;

pub async fn run(cx: &Cx) -> Vec<Row> {
    let stage = Stage::start(&cx.github_url, "1");
    let client = stage.client.clone();
    let server = &stage.server;
    let docker =
        bollard::Docker::connect_with_local_defaults().unwrap_or_else(|e| fail!("docker: {e}"));
    let mut starts = Starts::watch(&docker).await;
    let mut rows = Vec::new();
    if cx.log_bytes > 0 {
        rows.push(ingest(cx, &client, server, &mut starts).await);
    }
    rows.push(live_tail(cx, &client).await);
    rows
}

async fn ingest(cx: &Cx, client: &Client, server: &Process, starts: &mut Starts) -> Row {
    let bytes = cx.log_bytes;
    let command = format!("benchtool lines {bytes}");
    let project = Project::new(
        &cx.github,
        "big-log",
        9_004,
        &format!("image: {}\nscript: {command}\n", cx.image),
    );
    let (mut floor, mut gantry, mut growth) =
        (Samples::default(), Samples::default(), Samples::default());
    for round in 0..cx.log_rounds {
        for gantry_turn in [round % 2 == 0, round % 2 == 1] {
            if gantry_turn {
                let (rate, grew) = ingest_sample(client, server, starts, &project, bytes).await;
                gantry.push(rate);
                growth.push(grew);
            } else {
                let clock = Instant::now();
                let inside = format!("benchtool lines {bytes} > /dev/null");
                let ok = tokio::process::Command::new("docker")
                    .args(["run", "--rm", &cx.image, "sh", "-c", &inside])
                    .status()
                    .await
                    .is_ok_and(|s| s.success());
                if !ok {
                    fail!("the floor's docker run of benchtool failed");
                }
                floor.push(bytes as f64 / 1_048_576.0 / clock.elapsed().as_secs_f64());
            }
        }
        eprint!("\r  big log: round {}/{}   ", round + 1, cx.log_rounds);
    }
    eprintln!();
    let ratio = gantry.p50() / floor.p50();
    let worst_growth = growth.pct(100.0);
    Row {
        metric: format!(
            "4. log ingest: {} MiB of numbered lines, all read back in order",
            bytes / 1_048_576
        ),
        floor: format!(
            "{} MiB/s (same container, output to /dev/null)",
            num(floor.p50())
        ),
        gantry: format!(
            "{} MiB/s; server RSS +{} MiB at most",
            num(gantry.p50()),
            num(worst_growth)
        ),
        ratio: format!("{}× p50", num(ratio)),
        spread: format!(
            "{} / {} / {} MiB/s ({} runs)",
            num(gantry.pct(50.0)),
            num(gantry.pct(95.0)),
            num(gantry.pct(99.0)),
            gantry.len()
        ),
        target: "≥ 0.5× floor; no line lost or reordered; RSS growth ≤ 64 MiB".into(),
        holds: Some(ratio >= 0.5 && worst_growth <= 64.0),
    }
}

/// One big-log build: (MiB/s from container start to passed, RSS growth MiB).
async fn ingest_sample(
    client: &Client,
    server: &Process,
    starts: &mut Starts,
    project: &Project,
    bytes: u64,
) -> (f64, f64) {
    let before = client.newest_number(&project.full_name).await;
    let pid = server.child.id();
    let rss_before = crate::setup::rss_mib(pid);
    let watching = Arc::new(AtomicBool::new(true));
    let peak = {
        let watching = watching.clone();
        tokio::spawn(async move {
            let mut peak = 0f64;
            while watching.load(Ordering::Relaxed) {
                peak = peak.max(crate::setup::rss_mib(pid));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            peak
        })
    };
    starts.drain();
    client.push(project).await;
    let started = starts.next("gantry.runner", "embedded").await;
    let build = client.build_after(&project.full_name, before).await;
    let id = build["id"].as_i64().unwrap_or(0);
    let done = client
        .finished(id, Duration::from_millis(20), Duration::from_secs(1800))
        .await;
    let finished = now_ns();
    watching.store(false, Ordering::Relaxed);
    let peak = peak.await.unwrap_or(f64::NAN);
    if done["state"] != "passed" {
        fail!(
            "the big-log build {id} ended {}: {}",
            done["state"],
            done["reason"]
        );
    }
    let seconds = (finished - started) as f64 / 1e9;
    let job = done["jobs"][0]["id"].as_i64().unwrap_or(0);
    verify_numbered_lines(client, job, bytes).await;
    (bytes as f64 / 1_048_576.0 / seconds, peak - rss_before)
}

/// Reads the stored log back and checks every numbered line is there, once,
/// in order.
async fn verify_numbered_lines(client: &Client, job: i64, bytes: u64) {
    let expected = bytes.div_ceil(LINE_BYTES);
    let response = client
        .http
        .get(format!("{}/api/jobs/{job}/log", client.url))
        .send()
        .await
        .unwrap_or_else(|e| fail!("log of job {job}: {e}"));
    let mut stream = response.bytes_stream();
    let (mut next, mut rest) = (1u64, Vec::<u8>::new());
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap_or_else(|e| fail!("log of job {job}: {e}"));
        rest.extend_from_slice(&chunk);
        let Some(end) = rest.iter().rposition(|b| *b == b'\n') else {
            continue;
        };
        for line in rest[..end].split(|b| *b == b'\n') {
            if let Some(number) = line
                .strip_prefix(b"line ")
                .and_then(|l| std::str::from_utf8(l.get(..12)?).ok()?.parse::<u64>().ok())
            {
                if number != next {
                    fail!("job {job}'s log has line {number} where line {next} belongs");
                }
                next += 1;
            }
        }
        rest.drain(..=end);
    }
    if next - 1 != expected {
        fail!(
            "job {job}'s log has {} numbered lines, not {expected}",
            next - 1
        );
    }
}

async fn live_tail(cx: &Cx, client: &Client) -> Row {
    let command = format!("benchtool ticks {TICKS} 10");
    let project = Project::new(
        &cx.github,
        "live-tail",
        9_005,
        &format!("image: {}\nscript: {command}\n", cx.image),
    );
    let (mut floor, mut gantry) = (Samples::default(), Samples::default());
    let rounds = 4;
    for round in 0..rounds {
        for gantry_turn in [round % 2 == 0, round % 2 == 1] {
            if gantry_turn {
                tail_gantry(client, &project, &mut gantry).await;
            } else {
                tail_docker(cx, round, &mut floor).await;
            }
        }
        eprint!("\r  live tail: round {}/{rounds}   ", round + 1);
    }
    eprintln!();
    let over_p50 = gantry.p50() - floor.p50();
    let over_p99 = gantry.pct(99.0) - floor.pct(99.0);
    Row {
        metric: format!(
            "5. live tail: a line every 10 ms to an SSE client ({} lines)",
            gantry.len()
        ),
        floor: format!(
            "{} ms p50, {} ms p99 (docker logs -f)",
            num(floor.p50()),
            num(floor.pct(99.0))
        ),
        gantry: format!("{} ms p50", num(gantry.p50())),
        ratio: format!(
            "{} ms p50, {} ms p99 over floor",
            signed(over_p50),
            signed(over_p99)
        ),
        spread: gantry.spread("ms"),
        target: "≤ 100 ms p50, ≤ 300 ms p99 over floor".into(),
        holds: Some(over_p50 <= 100.0 && over_p99 <= 300.0),
    }
}

/// `tick I NANOS` stamps in `text`: (I, NANOS).
fn ticks_in(text: &str) -> Vec<(u64, i64)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("tick ") {
        rest = &rest[at + 5..];
        let mut words = rest.split(|c: char| !c.is_ascii_digit());
        let index = words.next().and_then(|w| w.parse().ok());
        let stamp = words.next().and_then(|w| w.parse().ok());
        if let (Some(i), Some(t)) = (index, stamp) {
            found.push((i, t));
        }
    }
    found
}

async fn tail_gantry(client: &Client, project: &Project, samples: &mut Samples) {
    let before = client.newest_number(&project.full_name).await;
    client.push(project).await;
    let build = client.build_after(&project.full_name, before).await;
    let id = build["id"].as_i64().unwrap_or(0);
    let job = loop {
        let full = client.get(&format!("/api/builds/{id}")).await;
        if let Some(job) = full.as_ref().and_then(|b| b["jobs"][0]["id"].as_i64()) {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let response = client
        .http
        .get(format!("{}/api/jobs/{job}/events", client.url))
        .send()
        .await
        .unwrap_or_else(|e| fail!("events of job {job}: {e}"));
    let mut stream = response.bytes_stream();
    let mut seen = 0usize;
    let mut buffer = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, stream.next()).await {
        let received = now_ns();
        let Ok(chunk) = chunk else { break };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            for (index, stamp) in ticks_in(&event) {
                seen += 1;
                if index >= TICK_WARMUP {
                    samples.push((received - stamp) as f64 / 1e6);
                }
            }
        }
    }
    if seen != TICKS {
        fail!("the SSE client got {seen} of {TICKS} stamped lines of job {job}");
    }
}

async fn tail_docker(cx: &Cx, round: usize, samples: &mut Samples) {
    let name = format!("gantry-bench-tail-{round}-{}", rand::random::<u32>());
    let started = tokio::process::Command::new("docker")
        .args([
            "run",
            "-d",
            "--name",
            &name,
            "--label",
            "gantry.bench=1",
            &cx.image,
        ])
        .args(["benchtool", "ticks", &TICKS.to_string(), "10"])
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success());
    if !started {
        fail!("docker run of the tick container failed");
    }
    let mut follow = tokio::process::Command::new("docker")
        .args(["logs", "-f", &name])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| fail!("docker logs -f: {e}"));
    let stdout = follow
        .stdout
        .take()
        .unwrap_or_else(|| fail!("docker logs -f: no stdout"));
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut seen = 0usize;
    while let Ok(Some(line)) = lines.next_line().await {
        let received = now_ns();
        for (index, stamp) in ticks_in(&line) {
            seen += 1;
            if index >= TICK_WARMUP {
                samples.push((received - stamp) as f64 / 1e6);
            }
        }
    }
    let _ = follow.wait().await;
    crate::setup::run_ok("docker", &["rm", "-f", &name]);
    if seen != TICKS {
        fail!("docker logs -f gave {seen} of {TICKS} stamped lines");
    }
}
