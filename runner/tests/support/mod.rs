//! The executor harness shared by the runner's tests: a Runtime on the real
//! Docker engine, assignments from pipeline text, and a check that a job
//! left nothing behind.
#![allow(dead_code)]

use bytes::Bytes;
use gantry_pipeline::{BuildContext, Catalog, Event};
use gantry_protocol::{Assignment, BuildId, BuildInfo, JobId, RepoInfo, SecretVar};
use gantry_runner::docker::{Docker, Limits};
use gantry_runner::job::{self, Outcome, Runtime};
use gantry_runner::workspace::Workspaces;
use gantry_testkit::git::Repo;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub const IMAGE: &str = "gantry-test/busybox:1";
/// With git, sh and python3 (scripts/test-images.sh).
pub const DEBIAN_IMAGE: &str = "gantry-test/debian:bookworm-2";

pub struct Harness {
    pub rt: Arc<Runtime>,
    _data: tempfile::TempDir,
}

pub async fn harness(limits: Limits, no_output: Duration, max_job: Option<Duration>) -> Harness {
    gantry_testkit::require_image(IMAGE);
    let data = tempfile::tempdir().unwrap();
    let name = format!("test-{:x}", rand::random::<u32>());
    let docker = Docker::connect(&name).await.expect("Docker is reachable");
    let rt = Runtime {
        docker,
        workspaces: Workspaces::new(data.path()),
        data_dir: data.path().to_path_buf(),
        limits,
        no_output_timeout: no_output,
        max_job_time: max_job,
        server: None,
        in_process_logs: None,
    };
    Harness {
        rt: Arc::new(rt),
        _data: data,
    }
}

pub async fn default_harness() -> Harness {
    harness(Limits::default(), Duration::from_secs(600), None).await
}

pub fn assignment(repo: &Repo, sha: &str, pipeline: &str, secrets: &[(&str, &str)]) -> Assignment {
    let parsed = gantry_pipeline::parse(pipeline);
    assert!(!parsed.has_errors(), "{:?}", parsed.diagnostics);
    let plan = parsed
        .pipeline
        .unwrap()
        .plan(&BuildContext::push("master"), &Catalog::default());
    let job = plan.jobs.into_iter().next().expect("a job");
    let id = 1_000_000 + i64::from(rand::random::<u32>() % 1_000_000_000);
    Assignment {
        job_id: JobId(id),
        build_id: BuildId(id),
        number: "7.1".into(),
        lease: "lease".into(),
        lease_seconds: 60,
        log_offset: 0,
        repo: RepoInfo {
            full_name: "acme/widget".into(),
            clone_url: repo.path.display().to_string(),
            private: false,
            default_branch: "master".into(),
            cache_generation: 0,
        },
        build: BuildInfo {
            number: 7,
            event: Event::Push,
            branch: "master".into(),
            tag: None,
            commit: sha.into(),
            message: "test".into(),
            pull_request: None,
            head_branch: None,
            head_repo: None,
            fork: false,
            sender: "dev".into(),
            base_commit: None,
        },
        job,
        web_url: None,
        secrets: secrets
            .iter()
            .map(|(n, v)| SecretVar {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        git_credentials: None,
        notes: Vec::new(),
        github_api_url: None,
    }
}

/// Runs the first job of `pipeline` at `sha`, with `secrets`, to its end.
pub async fn run_pipeline(
    h: &Harness,
    repo: &Repo,
    sha: &str,
    pipeline: &str,
    secrets: &[(&str, &str)],
) -> (Outcome, String) {
    run(
        h,
        &assignment(repo, sha, pipeline, secrets),
        CancellationToken::new(),
    )
    .await
}

/// Runs a job, collecting its whole log.
pub async fn run(h: &Harness, a: &Assignment, cancel: CancellationToken) -> (Outcome, String) {
    let (tx, mut rx) = mpsc::channel::<Bytes>(8);
    let collector = tokio::spawn(async move {
        let mut log = Vec::new();
        while let Some(chunk) = rx.recv().await {
            log.extend_from_slice(&chunk);
        }
        String::from_utf8_lossy(&log).into_owned()
    });
    let outcome = job::run(&h.rt, a, job::Source::Clone(None), tx, cancel).await;
    let log = collector.await.unwrap();
    assert_no_leftovers(a.job_id.0);
    (outcome, log)
}

pub fn assert_no_leftovers(job: i64) {
    for what in [
        &["ps", "-aq"][..],
        &["network", "ls", "-q"][..],
        &["volume", "ls", "-q"][..],
    ] {
        let mut args: Vec<String> = what.iter().map(|s| s.to_string()).collect();
        args.push("--filter".into());
        args.push(format!("label=gantry.job={job}"));
        let out = Command::new("docker").args(&args).output().unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout).trim().is_empty(),
            "docker {what:?} still lists job {job}'s objects"
        );
    }
}

pub fn repo_with(files: &[(&str, &str)]) -> (Repo, String) {
    let repo = Repo::new();
    let sha = repo.commit(files, "x");
    (repo, sha)
}
