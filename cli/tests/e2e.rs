//! Push to build to log, through the real `gantry server` binary with its
//! embedded runner (SQLite), real Docker and images built locally.

use gantry_testkit::github::GitHubDouble;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod support;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_ends_in_a_passed_build_with_its_full_log() {
    require_image();
    let github = GitHubDouble::start().await;
    let pipeline = format!(
        "image: {IMAGE}\nenv:\n  global: [GREETING=hello]\nbefore_install: echo \"before install on $TRAVIS_BRANCH\"\ninstall: cat README.md\nscript:\n  - echo \"$GREETING from $TRAVIS_REPO_SLUG at $TRAVIS_COMMIT\"\n  - test \"$CI\" = true\nafter_success: echo all good\nafter_script: echo after script saw $GREETING\n"
    );
    let (_repo, payload, full_name) = pushed(&github, &pipeline, &[("README.md", "the readme\n")]);
    let data = tempfile::tempdir().unwrap();
    let gantry = start(data.path(), &github.url, &[]);
    gantry.push(&payload, "e2e-1").await;
    let build = gantry.finished(&full_name, 1).await;
    let job = &build["jobs"][0];
    let log = gantry.log(job).await;
    assert_eq!(build["state"], "passed", "{log}");
    assert_eq!(job["state"], "passed");
    assert_eq!(job["exit_code"], 0);
    assert!(job["runner"].as_str().unwrap().starts_with("embedded@"));
    let sha = payload["after"].as_str().unwrap();
    for expected in [
        "before install on master",
        "the readme",
        &format!("hello from {full_name} at {sha}"),
        "The command \"test \"$CI\" = true\" exited with 0.",
        "all good",
        "after script saw hello",
        "travis_fold:start:script",
        "The job passed",
    ] {
        assert!(log.contains(expected), "log lacks `{expected}`:\n{log}");
    }
    let phases: Vec<&str> = job["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        [
            "before_install",
            "install",
            "script",
            "after_success",
            "after_script"
        ]
    );
    assert!(!log.contains("duration=0,"), "phase times are filled in");
}

/// The README's run command keeps its data in `./gantry-data`, a relative
/// path: the runner's mirrors, workspaces and Docker mounts still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_default_relative_data_dir_runs_jobs() {
    require_image();
    let github = GitHubDouble::start().await;
    let pipeline = format!("image: {IMAGE}\nscript: cat README.md\n");
    let (_repo, payload, full_name) = pushed(&github, &pipeline, &[("README.md", "relative\n")]);
    let cwd = tempfile::tempdir().unwrap();
    let gantry = start_with_default_data_dir(cwd.path(), &github.url);
    gantry.push(&payload, "e2e-relative").await;
    let build = gantry.finished(&full_name, 1).await;
    let log = gantry.log(&build["jobs"][0]).await;
    assert_eq!(build["state"], "passed", "{log}");
    assert!(log.lines().any(|l| l == "relative"), "{log}");
    assert!(cwd.path().join("gantry-data/gantry.db").is_file());
    assert!(cwd.path().join("gantry-data/runner/mirrors").is_dir());
}

/// A proxy set for the way out (as in `/etc/environment`) does not stand
/// between the embedded runner, or its job process, and their own server.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_proxy_for_the_way_out_does_not_stand_between_the_runner_and_its_server() {
    require_image();
    let github = GitHubDouble::start().await;
    let pipeline = format!("image: {IMAGE}\nscript: echo past the proxy\n");
    let (_repo, payload, full_name) = pushed(&github, &pipeline, &[]);
    // Nothing listens there: a call sent to this proxy fails.
    let nowhere = "http://127.0.0.1:9";
    let data = tempfile::tempdir().unwrap();
    let proxies = [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
    ];
    let env: Vec<(&str, &str)> = proxies.iter().map(|name| (*name, nowhere)).collect();
    let gantry = start(data.path(), &github.url, &env);
    gantry.push(&payload, "e2e-proxy").await;
    let build = gantry.finished(&full_name, 1).await;
    let log = gantry.log(&build["jobs"][0]).await;
    assert_eq!(build["state"], "passed", "{log}");
    assert!(log.lines().any(|l| l == "past the proxy"), "{log}");
}

fn parse_time(t: &Value) -> std::time::SystemTime {
    humantime::parse_rfc3339(t.as_str().expect("a time")).expect("RFC 3339")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_two_job_matrix_runs_in_parallel_with_capacity_two() {
    require_image();
    let github = GitHubDouble::start().await;
    let pipeline = format!("image: {IMAGE}\nenv: [SIDE=left, SIDE=right]\nscript: echo \"$SIDE starts\"; sleep 4; echo \"$SIDE done\"\n");
    let (_repo, payload, full_name) = pushed(&github, &pipeline, &[]);
    let data = tempfile::tempdir().unwrap();
    let gantry = start(
        data.path(),
        &github.url,
        &[("GANTRY_EMBEDDED_RUNNERS", "2")],
    );
    gantry.push(&payload, "matrix-1").await;
    let build = gantry.finished(&full_name, 1).await;
    assert_eq!(build["state"], "passed");
    let jobs = build["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    let (a, b) = (&jobs[0], &jobs[1]);
    // Both ran at once: each started before the other finished.
    assert!(parse_time(&a["started_at"]) < parse_time(&b["finished_at"]));
    assert!(parse_time(&b["started_at"]) < parse_time(&a["finished_at"]));
    assert!(gantry.log(a).await.contains("left done"));
    assert!(gantry.log(b).await.contains("right done"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn canceling_a_running_build_stops_its_job_within_seconds() {
    require_image();
    let github = GitHubDouble::start().await;
    let pipeline = format!("image: {IMAGE}\nscript: echo working; sleep 300\n");
    let (_repo, payload, full_name) = pushed(&github, &pipeline, &[]);
    let data = tempfile::tempdir().unwrap();
    let gantry = start(data.path(), &github.url, &[]);
    gantry.push(&payload, "cancel-1").await;
    let job = gantry_testkit::eventually("the job to print", Duration::from_secs(60), || async {
        let job = gantry.newest_job(&full_name).await?;
        gantry.log(&job).await.contains("working").then_some(job)
    })
    .await;
    let asked = std::time::Instant::now();
    let response = gantry
        .http
        .post(format!(
            "{}/api/builds/{}/cancel",
            gantry.url, job["build_id"]
        ))
        .bearer_auth("e2e-admin-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let build = gantry.finished(&full_name, 1).await;
    assert_eq!(build["state"], "canceled");
    assert_eq!(build["jobs"][0]["reason"], "canceled by a user");
    assert!(
        asked.elapsed() < Duration::from_secs(15),
        "stopped in {:?}",
        asked.elapsed()
    );
    let leftovers = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=gantry.job={}", job["id"]),
            "--filter",
            &format!(
                "label=gantry.runner={}",
                build["jobs"][0]["runner"].as_str().unwrap()
            ),
        ])
        .output()
        .unwrap();
    assert!(leftovers.stdout.is_empty());
}

/// A `gantry runner` process, stopped when dropped (also when a test fails).
struct RunnerProcess(Child);

impl RunnerProcess {
    fn kill_9(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for RunnerProcess {
    fn drop(&mut self) {
        support::stop(&mut self.0);
    }
}

/// The two ways to start a remote runner: the `gantry runner` subcommand,
/// and the `gantry-runner` binary for machines that only run jobs.
#[derive(Clone, Copy)]
enum RunnerBinary {
    Subcommand,
    Lean,
}

/// The token the servers below take from remote runners.
const RUNNER_TOKEN: &str = "e2e-runner-token-0123456789";

/// A `gantry server` with no embedded runner: its jobs wait for remote
/// runners holding [`RUNNER_TOKEN`].
fn start_for_remote_runners(data: &Path, github: &str, extra: &[(&str, &str)]) -> Gantry {
    let mut env = vec![
        ("GANTRY_EMBEDDED_RUNNERS", "0"),
        ("GANTRY_RUNNER_TOKEN", RUNNER_TOKEN),
    ];
    env.extend_from_slice(extra);
    start(data, github, &env)
}

/// Kills (`-9`) the runner's one job process; returns its pid.
fn kill_the_job_process(runner: &RunnerProcess) -> u32 {
    let job_process = gantry_testkit::process::children(runner.0.id());
    assert_eq!(job_process.len(), 1, "one job process: {job_process:?}");
    Command::new("kill")
        .args(["-9", &job_process[0].to_string()])
        .status()
        .unwrap();
    job_process[0]
}

/// Starts a runner against `server`.
fn start_runner(server: &str, data: &Path, name: &str, binary: RunnerBinary) -> RunnerProcess {
    let mut command = match binary {
        RunnerBinary::Subcommand => {
            let mut c = Command::new(env!("CARGO_BIN_EXE_gantry"));
            c.arg("runner");
            c
        }
        RunnerBinary::Lean => Command::new(env!("CARGO_BIN_EXE_gantry-runner")),
    };
    let child = command
        .env("GANTRY_SERVER_URL", server)
        .env("GANTRY_RUNNER_TOKEN", RUNNER_TOKEN)
        .env("GANTRY_RUNNER_NAME", name)
        .env("GANTRY_DATA_DIR", data)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start gantry runner");
    RunnerProcess(child)
}

fn labelled(kind: &[&str], name: &str) -> String {
    let mut args: Vec<&str> = kind.to_vec();
    let filter = format!("label=gantry.runner={name}");
    args.extend(["--filter", &filter]);
    let out = Command::new("docker").args(&args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_runner_killed_mid_job_is_noticed_and_its_leftovers_removed() {
    require_image();
    let github = GitHubDouble::start().await;
    let pipeline = format!("image: {IMAGE}\nscript: echo running; sleep 300\n");
    let (_repo, payload, full_name) = pushed(&github, &pipeline, &[]);
    let data = tempfile::tempdir().unwrap();
    let runner_data = tempfile::tempdir().unwrap();
    let name = format!("killable-{:x}", rand::random::<u32>());
    let gantry =
        start_for_remote_runners(data.path(), &github.url, &[("GANTRY_LEASE_SECONDS", "5")]);
    gantry.push(&payload, "kill-1").await;
    let job_running = || async {
        let job = gantry.newest_job(&full_name).await?;
        let log = gantry.log(&job).await;
        (job["state"] == "running"
            && log.matches("\nrunning").count() + usize::from(log.starts_with("running")) >= 1)
            .then_some((job, log))
    };
    // Twice: the first loss puts the job back in the queue, the second errors
    // it. Once each way of running a runner.
    for (attempt, binary) in [(1, RunnerBinary::Subcommand), (2, RunnerBinary::Lean)] {
        let mut runner = start_runner(&gantry.url, runner_data.path(), &name, binary);
        gantry_testkit::eventually("the job to run", Duration::from_secs(60), || async {
            let (_, log) = job_running().await?;
            (log.matches("echo running").count() >= attempt).then_some(())
        })
        .await;
        runner.kill_9();
        assert!(
            !labelled(&["ps", "-aq"], &name).is_empty(),
            "the killed runner left its container"
        );
    }
    let job = gantry_testkit::eventually("runner lost", Duration::from_secs(60), || async {
        let job = gantry.newest_job(&full_name).await?;
        (job["state"] == "errored").then_some(job)
    })
    .await;
    assert_eq!(job["reason"], "runner lost");
    let log = gantry.log(&job).await;
    assert!(log.contains("runner lost: no heartbeat from"), "{log}");
    // The next start of the runner clears what the killed ones left: the
    // job's network and the spare each kept for its next job.
    let left = labelled(&["network", "ls", "-q"], &name);
    assert!(!left.is_empty(), "the killed runners left networks");
    let runner = start_runner(&gantry.url, runner_data.path(), &name, RunnerBinary::Lean);
    gantry_testkit::eventually("leftovers removed", Duration::from_secs(30), || async {
        let now = labelled(&["network", "ls", "-q"], &name);
        (labelled(&["ps", "-aq"], &name).is_empty() && left.lines().all(|id| !now.contains(id)))
            .then_some(())
    })
    .await;
    // A graceful stop removes the runner's own spare network.
    drop(runner);
    assert_eq!(labelled(&["network", "ls", "-q"], &name), "");
}

/// A remote runner runs its jobs in a child process. When that process
/// dies, its job errors at once with the reason (not a minute later as
/// "runner lost"), the runner goes on with a new one for the next job, and
/// an idle runner ends its job process.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_process_that_dies_errors_its_job_and_the_runner_goes_on() {
    require_image();
    let github = GitHubDouble::start().await;
    let pipeline = format!(
        "image: {IMAGE}\nenv: [STEP=first, STEP=second]\nscript: echo \"$STEP running\"; if [ $STEP = first ]; then sleep 300; fi\n"
    );
    let (_repo, payload, full_name) = pushed(&github, &pipeline, &[]);
    let data = tempfile::tempdir().unwrap();
    let runner_data = tempfile::tempdir().unwrap();
    let name = format!("crashing-{:x}", rand::random::<u32>());
    let gantry = start_for_remote_runners(data.path(), &github.url, &[]);
    let runner = start_runner(&gantry.url, runner_data.path(), &name, RunnerBinary::Lean);
    let runner_pid = runner.0.id();
    gantry.push(&payload, "crash-1").await;
    gantry_testkit::eventually("the first job to run", Duration::from_secs(60), || async {
        let job = gantry.newest_job(&full_name).await?;
        let log = gantry.log(&job).await;
        (job["state"] == "running" && log.contains("\nfirst running")).then_some(())
    })
    .await;
    kill_the_job_process(&runner);

    let build = gantry.finished(&full_name, 1).await;
    let jobs = build["jobs"].as_array().unwrap();
    assert_eq!(jobs[0]["state"], "errored");
    assert_eq!(
        jobs[0]["reason"],
        "the runner's job process was killed by signal 9"
    );
    let second = gantry.log(&jobs[1]).await;
    assert_eq!(jobs[1]["state"], "passed", "{second}");
    assert!(second.contains("\nsecond running"), "{second}");
    // The new job process removed the container the dead one left.
    gantry_testkit::eventually("leftovers removed", Duration::from_secs(30), || async {
        labelled(&["ps", "-aq"], &name).is_empty().then_some(())
    })
    .await;
    gantry_testkit::eventually(
        "the idle job process to end",
        Duration::from_secs(150),
        || async {
            gantry_testkit::process::children(runner_pid)
                .is_empty()
                .then_some(())
        },
    )
    .await;
    assert!(
        std::fs::metadata(format!("/proc/{runner_pid}")).is_ok(),
        "the runner itself goes on"
    );
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_megabytes_are_stored_whole_and_in_order_with_flat_memory() {
    require_image();
    const LINES: u64 = 20_000_000;
    let github = GitHubDouble::start().await;
    let pipeline = format!("image: {IMAGE}\nscript: seq 1 {LINES}\n");
    let (_repo, payload, full_name) = pushed(&github, &pipeline, &[]);
    let data = tempfile::tempdir().unwrap();
    let gantry = start(data.path(), &github.url, &[]);
    let pid = gantry.child.id();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = rss_kib(pid);
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(baseline));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    gantry.push(&payload, "big-1").await;
    let build = gantry.finished(&full_name, 1).await;
    sampler.abort();
    assert_eq!(build["state"], "passed");
    let growth_mib = peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(baseline)
        / 1024;
    assert!(
        growth_mib < 64,
        "server + runner memory grew by {growth_mib} MiB"
    );

    // Read the stored log back as a stream, checking every number in order.
    use futures::StreamExt;
    let response = gantry
        .http
        .get(format!(
            "{}/api/jobs/{}/log",
            gantry.url, build["jobs"][0]["id"]
        ))
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let (mut next, mut partial, mut in_order) = (1u64, Vec::new(), true);
    while let Some(chunk) = body.next().await {
        partial.extend_from_slice(&chunk.unwrap());
        let mut start = 0;
        for i in 0..partial.len() {
            if partial[i] == b'\n' {
                let line = &partial[start..i];
                if next <= LINES && line.first().is_some_and(u8::is_ascii_digit) {
                    in_order &= line == next.to_string().as_bytes();
                    next += 1;
                }
                start = i + 1;
            }
        }
        partial.drain(..start);
    }
    assert!(in_order, "lines out of order");
    assert_eq!(next - 1, LINES, "every line stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secrets_reach_pushes_masked_and_never_reach_forks() {
    require_image();
    const SECRET_VALUE: &str = "hunter2-deploy-token";
    let github = GitHubDouble::start().await;
    let pipeline =
        format!("image: {IMAGE}\nscript:\n  - env | sort\n  - echo \"token is $DEPLOY_TOKEN\"\n");
    let (repo, payload, full_name) = pushed(&github, &pipeline, &[]);
    let data = tempfile::tempdir().unwrap();
    let gantry = start(
        data.path(),
        &github.url,
        &[("GANTRY_SECRET_KEY", "e2e-secret-key-0123456789")],
    );
    gantry.push(&payload, "s-1").await;
    gantry.finished(&full_name, 1).await;
    let response = gantry
        .http
        .put(format!(
            "{}/api/repos/{full_name}/secrets/DEPLOY_TOKEN",
            gantry.url
        ))
        .bearer_auth("e2e-admin-token-0123456789")
        .json(&serde_json::json!({"value": SECRET_VALUE}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    gantry.push(&payload, "s-2").await;
    let build = gantry.finished(&full_name, 2).await;
    let log = gantry.log(&build["jobs"][0]).await;
    assert!(log.contains("token is [secure]"), "{log}");
    assert!(log.contains("DEPLOY_TOKEN=[secure]"));
    assert!(!log.contains(SECRET_VALUE));

    let fork = fork_pull_request(&repo, &payload, &full_name);
    assert_eq!(gantry.deliver("pull_request", "s-3", &fork).await, 202);
    let build = gantry.finished(&full_name, 3).await;
    let log = gantry.log(&build["jobs"][0]).await;
    assert_eq!(build["fork"], true);
    assert!(
        log.contains("Secrets and deploys are not given to pull requests from forks."),
        "{log}"
    );
    assert!(
        !log.contains("DEPLOY_TOKEN="),
        "the fork's env has no secret: {log}"
    );
    assert!(
        log.lines().any(|l| l.trim_end() == "token is"),
        "the variable is empty: {log}"
    );
    assert!(!log.contains(SECRET_VALUE));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_runner_waits_for_its_server_and_finishes_its_job_on_sigterm() {
    require_image();
    let github = GitHubDouble::start().await;
    let pipeline = format!("image: {IMAGE}\nscript: echo begun; sleep 3; echo completed\n");
    let (_repo, payload, full_name) = pushed(&github, &pipeline, &[]);
    let data = tempfile::tempdir().unwrap();
    let runner_data = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let name = format!("patient-{:x}", rand::random::<u32>());
    // The runner starts first, with no server there: it keeps retrying.
    let mut runner = start_runner(&url, runner_data.path(), &name, RunnerBinary::Lean);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let listen = format!("127.0.0.1:{port}");
    let gantry = start_for_remote_runners(data.path(), &github.url, &[("GANTRY_LISTEN", &listen)]);
    gantry.push(&payload, "patient-1").await;
    gantry_testkit::eventually("the job to start", Duration::from_secs(60), || async {
        let job = gantry.newest_job(&full_name).await?;
        gantry.log(&job).await.contains("\nbegun").then_some(())
    })
    .await;
    // SIGTERM: the runner stops claiming but lets the running job finish.
    let pid = runner.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let build = gantry.finished(&full_name, 1).await;
    assert_eq!(build["state"], "passed");
    assert!(gantry.log(&build["jobs"][0]).await.contains("completed"));
    let status = tokio::task::spawn_blocking(move || runner.0.wait().unwrap())
        .await
        .unwrap();
    assert!(
        status.success(),
        "the runner exits cleanly after its job: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_with_the_wrong_token_stops_and_says_why() {
    let github = GitHubDouble::start().await;
    let data = tempfile::tempdir().unwrap();
    let gantry = start_for_remote_runners(data.path(), &github.url, &[]);
    let runner_data = tempfile::tempdir().unwrap();
    let url = gantry.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_gantry"))
            .args([
                "runner",
                "--server",
                &url,
                "--token",
                "not-the-token-0123456789",
            ])
            .env("GANTRY_DATA_DIR", runner_data.path())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the server refused the runner token: check --token / GANTRY_RUNNER_TOKEN"),
        "{stderr}"
    );
}

/// When a job process dies and no other job comes, the runner still
/// replaces it at once, and the new one's janitor removes what the dead
/// one's job left running.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_job_process_leaves_no_container_even_with_no_next_job() {
    require_image();
    let github = GitHubDouble::start().await;
    let pipeline = format!("image: {IMAGE}\nscript: echo running; sleep 300\n");
    let (_repo, payload, full_name) = pushed(&github, &pipeline, &[]);
    let data = tempfile::tempdir().unwrap();
    let runner_data = tempfile::tempdir().unwrap();
    let name = format!("orphaned-{:x}", rand::random::<u32>());
    let gantry = start_for_remote_runners(data.path(), &github.url, &[]);
    let runner = start_runner(&gantry.url, runner_data.path(), &name, RunnerBinary::Lean);
    gantry.push(&payload, "orphan-1").await;
    gantry_testkit::eventually("the job to run", Duration::from_secs(60), || async {
        let job = gantry.newest_job(&full_name).await?;
        let log = gantry.log(&job).await;
        (job["state"] == "running" && log.contains("\nrunning")).then_some(())
    })
    .await;
    assert!(
        !labelled(&["ps", "-q"], &name).is_empty(),
        "the job's container runs"
    );
    let dead = kill_the_job_process(&runner);
    let build = gantry.finished(&full_name, 1).await;
    assert_eq!(build["jobs"][0]["state"], "errored");
    gantry_testkit::eventually("the container removed", Duration::from_secs(60), || async {
        labelled(&["ps", "-aq"], &name).is_empty().then_some(())
    })
    .await;
    let now = gantry_testkit::process::children(runner.0.id());
    assert!(
        !now.contains(&dead),
        "a new job process replaced the dead one: {now:?}"
    );
}

/// A runner checks Docker at start, through its first job process, and
/// stops with the reason rather than claiming jobs it cannot run.
#[test]
fn a_runner_that_cannot_reach_docker_says_so_at_start() {
    let runner_data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gantry-runner"))
        // Nothing listens here, and nothing is ever claimed: the server is
        // not asked before Docker answers.
        .args(["--server", "http://127.0.0.1:9", "--token", "t0123456789"])
        .env("GANTRY_DATA_DIR", runner_data.path())
        .env(
            "DOCKER_HOST",
            format!("unix://{}/no-docker.sock", runner_data.path().display()),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the job process did not start: cannot reach Docker"),
        "{stderr}"
    );
    assert!(!stderr.contains("t0123456789"), "{stderr}");
}

/// SIGTERM stops `gantry server` at once even while its embedded runner
/// waits in a long poll for work (it used to wait out the 30-second poll),
/// and the network its runner made ahead of the next job goes with it.
#[tokio::test]
async fn a_server_stops_at_sigterm_and_leaves_no_network() {
    require_image();
    let github = GitHubDouble::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut gantry = start(
        data.path(),
        &github.url,
        &[("GANTRY_EMBEDDED_RUNNERS", "1")],
    );
    let port = gantry.url.rsplit(':').next().unwrap().to_string();
    // The embedded runner is `embedded@<host>:<port>`; its spare network is
    // `gantry-embedded-<host>-<port>-net-…`.
    let spares = move || {
        let out = Command::new("docker")
            .args([
                "network",
                "ls",
                "--format",
                "{{.Name}}",
                "--filter",
                "label=gantry.runner",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|name| name.contains(&format!("-{port}-net-")))
            .count()
    };
    gantry_testkit::eventually("the spare network", Duration::from_secs(30), || async {
        (spares() == 1).then_some(())
    })
    .await;
    let clock = std::time::Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &gantry.child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = gantry.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        clock.elapsed() < Duration::from_secs(15),
        "stopping took {:?}: it waited for the runner's long poll",
        clock.elapsed()
    );
    assert_eq!(spares(), 0, "the spare network was left");
}

/// `cache:` keeps directories from one build of a branch to the next, in
/// the build directory and under `$HOME`; a pull request from a fork reads
/// its target branch's cache but never changes it; a user can clear them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn caches_carry_directories_to_the_next_build_and_forks_never_write_a_branchs() {
    require_image();
    let github = GitHubDouble::start().await;
    let pipeline = format!(
        "image: {IMAGE}\ncache:\n  directories: [deps, $HOME/.store]\nscript:\n  - n=$(cat deps/count 2>/dev/null || echo 0); echo \"cached count $n\"; mkdir -p deps; echo $((n+1)) > deps/count\n  - mkdir -p $HOME/.store; echo \"seen $(cat $HOME/.store/seen 2>/dev/null | tr '\\n' ' ')\"; echo $TRAVIS_BUILD_NUMBER >> $HOME/.store/seen\nbefore_cache: echo before cache ran\n"
    );
    let (repo, payload, full_name) = pushed(&github, &pipeline, &[]);
    let data = tempfile::tempdir().unwrap();
    let gantry = start(data.path(), &github.url, &[]);
    let log_of = |number: i64| {
        let gantry = &gantry;
        let full_name = &full_name;
        async move {
            let build = gantry.finished(full_name, number).await;
            let log = gantry.log(&build["jobs"][0]).await;
            assert_eq!(build["state"], "passed", "{log}");
            log
        }
    };

    gantry.push(&payload, "cache-1").await;
    let log = log_of(1).await;
    assert!(log.contains("Build cache: none yet"), "{log}");
    assert!(log.contains("cached count 0"), "{log}");
    assert!(log.contains("before cache ran"), "{log}");
    assert!(log.contains("stored deps"), "{log}");
    assert!(log.contains("Build cache: kept"), "{log}");

    gantry.push(&payload, "cache-2").await;
    let log = log_of(2).await;
    assert!(log.contains("Build cache: 2 from branch master"), "{log}");
    assert!(log.contains("cached count 1"), "{log}");
    assert!(log.lines().any(|l| l.trim_end() == "seen 1"), "{log}");

    let fork = fork_pull_request(&repo, &payload, &full_name);
    assert_eq!(gantry.deliver("pull_request", "cache-3", &fork).await, 202);
    let log = log_of(3).await;
    assert!(log.contains("from branch master"), "{log}");
    assert!(log.contains("cached count 2"), "{log}");

    // The fork's build kept its cache apart: master's next build sees master's.
    gantry.push(&payload, "cache-4").await;
    let log = log_of(4).await;
    assert!(log.contains("cached count 2"), "{log}");
    assert!(log.lines().any(|l| l.trim_end() == "seen 1 2"), "{log}");

    // A user clears the repository's caches: the next build starts afresh,
    // and the one after it finds what that one kept.
    let cleared = gantry
        .http
        .delete(format!("{}/api/repos/{full_name}/caches", gantry.url))
        .bearer_auth("e2e-admin-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 200);
    gantry.push(&payload, "cache-5").await;
    let log = log_of(5).await;
    assert!(
        log.contains("Build cache: none, the repository's caches were cleared"),
        "{log}"
    );
    assert!(log.contains("cached count 0"), "{log}");
    assert!(log.lines().any(|l| l.trim_end() == "seen"), "{log}");
    gantry.push(&payload, "cache-6").await;
    let log = log_of(6).await;
    assert!(log.contains("cached count 1"), "{log}");
    assert!(log.lines().any(|l| l.trim_end() == "seen 5"), "{log}");
}
