//! Metrics 1 and 2: how quickly a push becomes a running container, and a
//! passed build, against doing the same work by hand.
//!
//! 1. Signed push webhook → the job container's Docker `start` event. Floor:
//!    the runner's own job-container spec (network, limits, mounts) created
//!    and started straight through the Docker API, timed to the same event.
//! 2. Webhook → build `passed` read back from the API (polled every 5 ms) for
//!    a one-commit repository whose script is `true`. Floor: `git clone` +
//!    `docker run --rm <image> true`, back to back.

use crate::fail;
use crate::setup::{ms, now_ns, Client, Project, Stage, Starts};
use crate::stats::{num, signed, Row, Samples};
use crate::Cx;
use gantry_runner::docker::{job_container_spec, Docker, JobContainer, Limits};
use std::time::{Duration, Instant};

pub async fn run(cx: &Cx) -> Vec<Row> {
    let stage = Stage::start(&cx.github_url, "1");
    let client = stage.client.clone();
    let project = Project::new(
        &cx.github,
        "pickup",
        9_001,
        &format!("image: {}\nscript: \"true\"\n", cx.image),
    );
    let floor_docker = Docker::connect("bench-floor")
        .await
        .unwrap_or_else(|e| fail!("docker: {e}"));
    let mut starts = Starts::watch(floor_docker.client()).await;
    let scratch = tempfile::tempdir().unwrap_or_else(|e| fail!("temp dir: {e}"));

    let (mut floor_start, mut gantry_start) = (Samples::default(), Samples::default());
    let (mut floor_pass, mut gantry_pass) = (Samples::default(), Samples::default());
    let rounds = cx.warmup + cx.samples;
    for round in 0..rounds {
        let keep = round >= cx.warmup;
        // ABAB: Gantry first on even rounds, the floor first on odd ones.
        for gantry_turn in [round % 2 == 0, round % 2 == 1] {
            // Each sample starts on an idle engine: the last job's clean-up,
            // which follows its result, has finished.
            crate::setup::settle().await;
            if gantry_turn {
                let (start, pass) = gantry_sample(&client, &project, &mut starts).await;
                if keep {
                    gantry_start.push(start);
                    gantry_pass.push(pass);
                }
            } else {
                let job_id = -(1_000 + round as i64);
                let start =
                    floor_start_sample(cx, &floor_docker, &mut starts, job_id, scratch.path())
                        .await;
                let pass = floor_pass_sample(cx, &project, scratch.path(), round).await;
                if keep {
                    floor_start.push(start);
                    floor_pass.push(pass);
                }
            }
        }
        eprint!("\r  pickup: round {}/{rounds}   ", round + 1);
    }
    eprintln!();

    let overhead_p50 = gantry_start.p50() - floor_start.p50();
    let overhead_p99 = gantry_start.pct(99.0) - floor_start.pct(99.0);
    let pass_ratio = gantry_pass.p50() / floor_pass.p50();
    vec![
        Row {
            metric: "1. push webhook → job container started".into(),
            floor: format!("{} ms (network + create + start)", num(floor_start.p50())),
            gantry: format!("{} ms", num(gantry_start.p50())),
            ratio: format!(
                "{} ms p50, {} ms p99 over floor",
                signed(overhead_p50),
                signed(overhead_p99)
            ),
            spread: gantry_start.spread("ms"),
            target: "overhead ≤ 50 ms p50, ≤ 150 ms p99".into(),
            holds: Some(overhead_p50 <= 50.0 && overhead_p99 <= 150.0),
        },
        Row {
            metric: "2. push webhook → build passed (script `true`)".into(),
            floor: format!("{} ms (git clone + docker run --rm)", num(floor_pass.p50())),
            gantry: format!("{} ms", num(gantry_pass.p50())),
            ratio: format!("{}× p50", num(pass_ratio)),
            spread: gantry_pass.spread("ms"),
            target: "≤ 1.25× floor p50".into(),
            holds: Some(pass_ratio <= 1.25),
        },
    ]
}

/// One push: (ms to the container's start event, ms to `passed` seen).
async fn gantry_sample(client: &Client, project: &Project, starts: &mut Starts) -> (f64, f64) {
    let before = client.newest_number(&project.full_name).await;
    starts.drain();
    let (t0, clock) = (now_ns(), Instant::now());
    client.push(project).await;
    let started = starts.next("gantry.runner", "embedded").await;
    let build = client.build_after(&project.full_name, before).await;
    let id = build["id"].as_i64().unwrap_or(0);
    let done = client
        .finished(id, Duration::from_millis(5), Duration::from_secs(120))
        .await;
    let passed = ms(clock.elapsed());
    if done["state"] != "passed" {
        fail!("build {id} ended {}, not passed: {}", done["state"], done);
    }
    ((started - t0) as f64 / 1e6, passed)
}

async fn floor_start_sample(
    cx: &Cx,
    docker: &Docker,
    starts: &mut Starts,
    job_id: i64,
    scratch: &std::path::Path,
) -> f64 {
    let name = docker.job_name(job_id);
    let limits = Limits::default();
    starts.drain();
    let t0 = now_ns();
    if let Err(e) = docker.create_network(&name, job_id).await {
        fail!("floor network: {e}");
    }
    let spec = job_container_spec(&JobContainer {
        job_id,
        runner: docker.runner(),
        image: &cx.image,
        env: &[],
        workspace: scratch,
        git_objects: Some(scratch),
        build_dir: "/home/travis/build/bench/pickup",
        gantry_dir: scratch,
        network: &name,
        services: &[],
        hosts: &[],
        limits: &limits,
        docker_socket: false,
    });
    if let Err(e) = docker
        .create_and_start(&name, spec, "start the floor container")
        .await
    {
        fail!("floor container: {e}");
    }
    let started = starts.next("gantry.job", &job_id.to_string()).await;
    docker.destroy(job_id).await;
    (started - t0) as f64 / 1e6
}

async fn floor_pass_sample(
    cx: &Cx,
    project: &Project,
    scratch: &std::path::Path,
    round: usize,
) -> f64 {
    let dir = scratch.join(format!("clone-{round}"));
    let source = project.repo.path.display().to_string();
    let target = dir.display().to_string();
    let clock = Instant::now();
    let cloned = tokio::process::Command::new("git")
        .args(["clone", "-q", &source, &target])
        .status()
        .await
        .is_ok_and(|s| s.success());
    let ran = tokio::process::Command::new("docker")
        .args(["run", "--rm", &cx.image, "true"])
        .status()
        .await
        .is_ok_and(|s| s.success());
    let took = ms(clock.elapsed());
    if !(cloned && ran) {
        fail!("the floor's git clone or docker run failed");
    }
    let _ = std::fs::remove_dir_all(&dir);
    took
}
