//! Runs one job: workspace → image → network → job container and services →
//! the `main` step → `after_script` → destroy, streaming the log as it goes.
//! A failing build is an outcome, not an error: every ending is reported
//! with a reason a user understands, and everything is removed afterwards.

use crate::cache::{Caches, Kept};
use crate::deploy::StageEnd;
use crate::docker::{self, Docker, DockerError, JobContainer, Limits};
use crate::logs::{LogPipeline, Masker};
use crate::output::{self, OutputFifo};
use crate::script::{self, EXIT_ERRORED, EXIT_FAILED, EXIT_PASSED};
use crate::travis_env;
use crate::workspace::{Credentials, Workspaces};
use bollard::exec::{CreateExecOptions, StartExecResults};
use bytes::Bytes;
use futures::StreamExt;
use gantry_pipeline::{ImageSpec, Phase};
use gantry_protocol::{Assignment, JobOutcome, PhaseTiming};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What a runner brings to every job.
pub struct Runtime {
    pub docker: Docker,
    pub workspaces: Workspaces,
    pub data_dir: PathBuf,
    pub limits: Limits,
    /// A job printing nothing for this long is stopped (Travis: 10 minutes).
    pub no_output_timeout: Duration,
    /// The operator's cap on any job's time, below the pipeline's `timeout`.
    pub max_job_time: Option<Duration>,
    /// The server, for deploy locks; `None` for local runs (`gantry exec`).
    pub server: Option<crate::client::ServerClient>,
    /// The server's log store, when this runner runs inside the server.
    pub in_process_logs: Option<std::sync::Arc<dyn crate::upload::InProcessLogs>>,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub outcome: JobOutcome,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub phases: Vec<PhaseTiming>,
}

impl Outcome {
    fn errored(reason: impl Into<String>) -> Outcome {
        Outcome {
            outcome: JobOutcome::Errored,
            exit_code: None,
            reason: Some(reason.into()),
            phases: Vec::new(),
        }
    }

    fn canceled() -> Outcome {
        Outcome {
            outcome: JobOutcome::Canceled,
            exit_code: None,
            reason: Some("canceled".into()),
            phases: Vec::new(),
        }
    }
}

/// Why a step stopped before its script ended.
pub(crate) enum Interrupted {
    Canceled,
    TimedOut(String),
    Engine(String),
    /// `travis_terminate N` in the step: the job ends now, with N.
    Terminated(i64),
}

const GREEN: &str = "\x1b[32;1m";
const RED: &str = "\x1b[31;1m";
const YELLOW: &str = "\x1b[33;1m";
const RESET: &str = "\x1b[0m";

/// Where a job's files come from.
pub enum Source<'a> {
    /// The assignment's repository at its commit (with a login for private ones).
    Clone(Option<&'a Credentials>),
    /// A local directory, copied as it is (`gantry exec`: uncommitted changes included).
    Copy(&'a std::path::Path),
}

/// Runs `a`; chunks of its log go to `log`. `cancel` stops it (a user's
/// cancel, or the runner losing the job). Removes the job's containers,
/// network and folders before returning.
pub async fn run(
    rt: &Runtime,
    a: &Assignment,
    source: Source<'_>,
    log: mpsc::Sender<Bytes>,
    cancel: CancellationToken,
) -> Outcome {
    let outcome = execute(rt, a, source, log, cancel).await;
    clean_up(rt, a.job_id.0).await;
    outcome
}

/// Runs `a` up to its result and its log's last line, leaving the clean-up
/// to [`clean_up`]: a runner reports the result first, so the build ends as
/// soon as the job does, and removes the job's Docker objects right after.
pub async fn execute(
    rt: &Runtime,
    a: &Assignment,
    source: Source<'_>,
    log: mpsc::Sender<Bytes>,
    cancel: CancellationToken,
) -> Outcome {
    let credentials = match source {
        Source::Clone(c) => c,
        Source::Copy(_) => None,
    };
    let masker = Masker::new(
        a.secrets
            .iter()
            .map(|s| s.value.as_str())
            .chain(credentials.map(|c| c.password.as_str())),
    );
    let mut pipeline = LogPipeline::new(masker, log);
    let started = Instant::now();
    // The job's network (a spare made ahead, or one made now) is settled
    // while the code is fetched: making one takes Docker 100–200 ms that
    // need not wait for git.
    let mut network = Some({
        let (docker, id) = (rt.docker.clone(), a.job_id.0);
        tokio::spawn(async move { docker.job_network(id).await })
    });
    let mut outcome = run_inner(rt, a, source, &mut pipeline, &cancel, started, &mut network).await;
    if let Some(unused) = network.take() {
        // Ended before it was needed; it must exist before clean-up removes it.
        let _ = unused.await;
    }
    outcome.phases = std::mem::take(&mut pipeline.phases);
    // A reason can quote a provider's or registry's error: it is masked too.
    outcome.reason = outcome.reason.map(|r| pipeline.mask_text(&r));
    let summary = summary(&outcome, started.elapsed());
    pipeline.runner_line(&summary).await;
    pipeline.finish().await;
    outcome
}

/// Removes every container and network of job `job_id`, and its folders.
pub async fn clean_up(rt: &Runtime, job_id: i64) {
    rt.docker.destroy(job_id).await;
    let (workspace, gantry_dir) = docker::job_paths(&rt.data_dir, job_id);
    let scratch = docker::deploy_scratch(&rt.data_dir, job_id);
    rt.workspaces.release(&workspace).await;
    let _ = tokio::task::spawn_blocking(move || {
        let _ = std::fs::remove_dir_all(workspace);
        let _ = std::fs::remove_dir_all(gantry_dir);
        let _ = std::fs::remove_dir_all(scratch);
    })
    .await;
}

fn summary(o: &Outcome, took: Duration) -> String {
    let mut out = String::from("\n");
    for p in &o.phases {
        let mark = if p.exit_code == 0 {
            format!("{GREEN}ok{RESET}")
        } else {
            format!("{RED}exit {}{RESET}", p.exit_code)
        };
        out.push_str(&format!(
            "{:<16} {:>8.1}s  {mark}\n",
            p.phase,
            p.duration_ms as f64 / 1000.0
        ));
    }
    let (color, word) = match o.outcome {
        JobOutcome::Passed => (GREEN, "passed"),
        JobOutcome::Failed => (RED, "failed"),
        JobOutcome::Errored => (RED, "errored"),
        JobOutcome::Canceled => (YELLOW, "canceled"),
    };
    out.push_str(&format!(
        "{color}The job {word}{RESET} after {:.1}s",
        took.as_secs_f64()
    ));
    if let Some(reason) = &o.reason {
        out.push_str(&format!(": {reason}"));
    }
    out.push('\n');
    out
}

async fn run_inner(
    rt: &Runtime,
    a: &Assignment,
    source: Source<'_>,
    p: &mut LogPipeline,
    cancel: &CancellationToken,
    started: Instant,
    network_task: &mut Option<tokio::task::JoinHandle<Result<String, DockerError>>>,
) -> Outcome {
    let job = &a.job;
    let id = a.job_id.0;
    let mut limit = Duration::from_secs(u64::from(job.timeout_minutes) * 60);
    if let Some(cap) = rt.max_job_time {
        limit = limit.min(cap);
    }
    let deadline = started + limit;
    let (workspace, gantry_dir) = docker::job_paths(&rt.data_dir, id);
    p.runner_line(&format!(
        "{YELLOW}Gantry job {} on runner {}{RESET}: {} ({})",
        a.number,
        rt.docker.runner(),
        job.name,
        a.repo.full_name
    ))
    .await;

    for note in &a.notes {
        p.runner_line(&format!("{YELLOW}{note}{RESET}")).await;
    }

    // 1. The code.
    if let Err(e) = std::fs::create_dir_all(&gantry_dir) {
        return Outcome::errored(format!(
            "the runner cannot create {}: {e}",
            gantry_dir.display()
        ));
    }
    // A clone's workspace borrows the mirror's objects (see `workspace`).
    let git_objects =
        matches!(source, Source::Clone(_)).then(|| rt.workspaces.objects_of(&a.repo.clone_url));
    // A pull request's head is tested merged into its base, as on Travis.
    let merge_into = a
        .build
        .base_commit
        .as_deref()
        .filter(|_| a.build.event == gantry_pipeline::Event::PullRequest);
    let checkout = match source {
        Source::Clone(credentials) => rt
            .workspaces
            .checkout(
                &a.repo.clone_url,
                &a.build.commit,
                merge_into,
                &job.git,
                &workspace,
                credentials,
            )
            .await
            .map(|c| (c.log, Some(c.commit)))
            .map_err(|e| e.to_string()),
        Source::Copy(dir) => copy_dir(dir, &workspace).await.map(|log| (log, None)),
    };
    let checked_out = match checkout {
        Ok((lines, commit)) => {
            for line in lines {
                p.runner_line(&line).await;
            }
            commit
        }
        Err(e) => {
            p.runner_line(&format!(
                "{RED}Cloning {} failed: {e}{RESET}",
                a.repo.clone_url
            ))
            .await;
            return Outcome::errored(format!("cloning the repository failed: {e}"));
        }
    };

    // 2. The image.
    let image = match &job.image {
        ImageSpec::Name(name) => {
            let mut lines = Vec::new();
            let result = rt.docker.ensure_image(name, &mut lines).await;
            for line in lines {
                p.runner_line(&line).await;
            }
            if let Err(e) = result {
                return report_docker(p, e).await;
            }
            name.clone()
        }
        ImageSpec::Build { build } => {
            let tag = docker::build_tag(&a.repo.full_name, build);
            p.runner_line(&format!(
                "{YELLOW}$ docker build -f {} -t {tag} {}{RESET}",
                build.dockerfile, build.context
            ))
            .await;
            let mut lines = Vec::new();
            let mut progress = |line: String| lines.push(line);
            let result = rt
                .docker
                .build_image(
                    &workspace,
                    git_objects.as_deref(),
                    build,
                    &tag,
                    docker::labels(id, rt.docker.runner()),
                    &mut progress,
                )
                .await;
            for line in lines {
                p.runner_line(&line).await;
            }
            if let Err(e) = result {
                return report_docker(p, e).await;
            }
            tag
        }
    };

    // The build cache, copied in while `gantry_dir` is the runner's alone.
    if !job.cache.is_empty() {
        restore_cache(rt, a, &gantry_dir, p).await;
    }

    // 3. Network, job container, services.
    let container = rt.docker.job_name(id);
    let network = match network_task.take() {
        Some(task) => match task.await {
            Ok(created) => created,
            Err(_) => rt.docker.job_network(id).await,
        },
        None => rt.docker.job_network(id).await,
    };
    let network = match network {
        Ok(name) => name,
        Err(e) => return report_docker(p, e).await,
    };
    let mut env = travis_env::job_environment(a);
    if let Some(commit) = checked_out {
        // The commit the job tests: a pull request's merge commit.
        travis_env::set(&mut env, "TRAVIS_COMMIT", commit);
    }
    let socket = job.docker && rt.limits.allow_docker_socket && !a.build.fork;
    if job.docker && !socket {
        let why = if a.build.fork {
            "never for pull requests from forks"
        } else {
            "this runner does not allow it"
        };
        p.runner_line(&format!(
            "{YELLOW}services: docker asks for the host's Docker, which is not given: {why}{RESET}"
        ))
        .await;
    }
    let build_dir = travis_env::build_dir(&a.repo.full_name);
    let spec = docker::job_container_spec(&JobContainer {
        job_id: id,
        runner: rt.docker.runner(),
        image: &image,
        env: &env,
        workspace: &workspace,
        git_objects: git_objects.as_deref(),
        build_dir: &build_dir,
        gantry_dir: &gantry_dir,
        network: &network,
        services: &job.services,
        hosts: &job.hosts,
        limits: &rt.limits,
        docker_socket: socket,
    });
    if let Err(e) = rt
        .docker
        .create_and_start(&container, spec, "start the job container")
        .await
    {
        return report_docker(p, e).await;
    }
    for service in &job.services {
        let mut lines = Vec::new();
        if let Err(e) = rt.docker.ensure_image(&service.image, &mut lines).await {
            return report_docker(p, e).await;
        }
        let spec = docker::service_spec(id, rt.docker.runner(), &container, service, &rt.limits);
        let name = format!(
            "{container}-{}",
            service
                .name
                .replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        );
        if let Err(e) = rt
            .docker
            .create_and_start(&name, spec, "start a service")
            .await
        {
            return report_docker(p, e).await;
        }
        p.runner_line(&format!(
            "Started service {} ({}), reachable as {} and localhost",
            service.name,
            service.image,
            service.hostnames.join(", ")
        ))
        .await;
    }

    // 4. The main step.
    let exports: Vec<(String, String)> = job
        .env
        .iter()
        .map(|v| (v.name.clone(), v.raw.clone()))
        .collect();
    let main = script::main_step(job, &exports, &build_dir);
    let end = run_step(
        rt,
        &container,
        &gantry_dir,
        "main.sh",
        &main,
        p,
        cancel,
        deadline,
    )
    .await;
    let mut outcome = match end {
        Ok(code) => {
            let code = code.unwrap_or(-1);
            let oom = rt.docker.oom_killed(&container).await;
            let killed = code == 137 || p.phases.iter().any(|ph| ph.exit_code == 137);
            let out_of_memory = oom || (killed && rt.docker.oom_kills(&container).await > 0);
            let (outcome, reason) = match code {
                _ if out_of_memory => (
                    JobOutcome::Errored,
                    Some(format!(
                        "out of memory: a process used more than the job's {} MiB and was killed",
                        rt.limits.memory_bytes / (1024 * 1024)
                    )),
                ),
                EXIT_PASSED => (JobOutcome::Passed, None),
                EXIT_FAILED => (JobOutcome::Failed, None),
                EXIT_ERRORED => (
                    JobOutcome::Errored,
                    Some(format!(
                        "a command failed during {}",
                        p.phases.last().map(|p| p.phase.as_str()).unwrap_or("setup")
                    )),
                ),
                _ => {
                    // `exit N` inside a phase ends the shell: judge by the phase it happened in.
                    let phase = p.current_phase.clone().unwrap_or_default();
                    let errored = matches!(
                        phase.as_str(),
                        "before_install" | "install" | "before_script"
                    );
                    let outcome = if errored {
                        JobOutcome::Errored
                    } else {
                        JobOutcome::Failed
                    };
                    (
                        outcome,
                        Some(format!(
                            "the shell exited with {code} during {}",
                            if phase.is_empty() { "the job" } else { &phase }
                        )),
                    )
                }
            };
            if out_of_memory {
                if let Some(reason) = &reason {
                    p.runner_line(&format!("\n{RED}{reason}{RESET}")).await;
                }
            }
            if !job.cache.is_empty() {
                keep_cache(rt, a, &gantry_dir, p).await;
            }
            Outcome {
                outcome,
                exit_code: Some(code as i32),
                reason,
                phases: Vec::new(),
            }
        }
        Err(Interrupted::Canceled) => return Outcome::canceled(),
        Err(Interrupted::TimedOut(reason)) => {
            p.runner_line(&format!("\n{RED}{reason}{RESET}")).await;
            return Outcome::errored(reason);
        }
        Err(Interrupted::Engine(message)) => {
            p.runner_line(&format!("\n{RED}{message}{RESET}")).await;
            return Outcome::errored(message);
        }
        Err(Interrupted::Terminated(status)) => return terminated_outcome(status, p).await,
    };

    // The deploy stage's and the artifacts' view of the job.
    let scratch = docker::deploy_scratch(&rt.data_dir, a.job_id.0);
    let stage = crate::deploy::Stage {
        rt,
        a,
        container: &container,
        gantry_dir: &gantry_dir,
        scratch: &scratch,
        workspace: &workspace,
        git_objects: git_objects.as_deref(),
        build_dir: &build_dir,
        cancel,
        deadline,
    };

    // 5. Deploy: only after a pass.
    if outcome.outcome == JobOutcome::Passed {
        match crate::deploy::run(&stage, p).await {
            StageEnd::Done => {}
            StageEnd::Failed(reason) => {
                outcome.outcome = JobOutcome::Failed;
                outcome.reason = Some(reason);
            }
            StageEnd::Errored(reason) => {
                outcome.outcome = JobOutcome::Errored;
                outcome.reason = Some(reason);
            }
            StageEnd::TimedOut(reason) => {
                p.runner_line(&format!("\n{RED}{reason}{RESET}")).await;
                return Outcome::errored(reason);
            }
            StageEnd::Canceled => return Outcome::canceled(),
            StageEnd::Terminated(status) => return terminated_outcome(status, p).await,
        }
    }

    // 6. after_script: always, never changes the result.
    let after = job.commands(Phase::AfterScript);
    if !after.is_empty() {
        let step = script::phase_step(Phase::AfterScript, after, &build_dir, 99);
        match run_step(
            rt,
            &container,
            &gantry_dir,
            "after_script.sh",
            &step,
            p,
            cancel,
            deadline,
        )
        .await
        {
            Err(Interrupted::Canceled) => outcome = Outcome::canceled(),
            Err(Interrupted::Terminated(status)) => {
                outcome = terminated_outcome(status, p).await;
            }
            _ => {}
        }
    }

    // 7. Artifacts: after after_script, whatever the result (not when canceled).
    if let Some(artifacts) = job
        .artifacts
        .as_ref()
        .filter(|_| outcome.outcome != JobOutcome::Canceled)
    {
        match crate::artifacts::run(&stage, artifacts, p).await {
            Ok(()) => {}
            Err(StageEnd::Canceled) => outcome = Outcome::canceled(),
            Err(StageEnd::Terminated(status)) => outcome = terminated_outcome(status, p).await,
            Err(StageEnd::TimedOut(reason)) => {
                p.runner_line(&format!("\n{RED}{reason}{RESET}")).await;
                outcome = Outcome::errored(reason);
            }
            Err(StageEnd::Errored(reason) | StageEnd::Failed(reason)) => {
                p.runner_line(&format!("\n{RED}Artifacts: {reason}{RESET}"))
                    .await;
            }
            Err(StageEnd::Done) => {}
        }
    }
    outcome
}

/// Puts the build cache this job may read where its container finds it.
async fn restore_cache(rt: &Runtime, a: &Assignment, gantry_dir: &Path, p: &mut LogPipeline) {
    let caches = Caches::new(&rt.data_dir, rt.limits.cache_bytes).for_job(a);
    let dir = gantry_dir.to_path_buf();
    let line = match off_runtime(move || caches.restore(&dir)).await {
        Ok(r) if r.dirs.is_empty() && r.cleared => {
            "Build cache: none, the repository's caches were cleared".to_string()
        }
        Ok(r) if r.dirs.is_empty() => "Build cache: none yet".to_string(),
        Ok(r) => {
            let mut from: Vec<&str> = r.dirs.iter().map(|(_, scope)| scope.as_str()).collect();
            from.dedup();
            format!(
                "Build cache: {} from {} ({})",
                r.dirs.len(),
                from.join(", "),
                size(r.bytes)
            )
        }
        Err(e) => format!(
            "{YELLOW}Build cache: cannot restore it ({e}); the job goes on without it{RESET}"
        ),
    };
    p.runner_line(&line).await;
}

/// Keeps what the job stored in its build cache.
async fn keep_cache(rt: &Runtime, a: &Assignment, gantry_dir: &Path, p: &mut LogPipeline) {
    let caches = Caches::new(&rt.data_dir, rt.limits.cache_bytes).for_job(a);
    let dir = gantry_dir.to_path_buf();
    let line = match off_runtime(move || caches.keep(&dir)).await {
        Ok(Kept::Bytes(0)) => return,
        Ok(Kept::Bytes(bytes)) => format!("Build cache: kept ({})", size(bytes)),
        Ok(Kept::ClearedMeanwhile) => {
            "Build cache: not kept, the repository's caches were cleared while this job ran"
                .to_string()
        }
        Err(e) => format!("{YELLOW}Build cache: cannot keep it ({e}){RESET}"),
    };
    p.runner_line(&line).await;
}

/// Runs file work on a blocking thread; a panic there is an error here.
async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

fn size(bytes: u64) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

/// Copies a working tree as it is (symlinks and modes kept).
async fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> Result<Vec<String>, String> {
    std::fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let out = tokio::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .output()
        .await
        .map_err(|e| format!("cannot run cp: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(vec![format!(
        "$ cp -a {} (the working tree, uncommitted changes included)",
        from.display()
    )])
}

fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 && secs % 60 == 0 {
        format!("{} minutes", secs / 60)
    } else {
        format!("{secs} seconds")
    }
}

async fn report_docker(p: &mut LogPipeline, e: DockerError) -> Outcome {
    p.runner_line(&format!("{RED}{e}{RESET}")).await;
    Outcome::errored(e.to_string())
}

/// Execs `sh /gantry/<file>` in the job container, streaming its output.
/// Returns its exit code, or why it was stopped.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_step(
    rt: &Runtime,
    container: &str,
    gantry_dir: &std::path::Path,
    file: &str,
    text: &str,
    p: &mut LogPipeline,
    cancel: &CancellationToken,
    deadline: Instant,
) -> Result<Option<i64>, Interrupted> {
    crate::job_files::write_script(gantry_dir, file, text)
        .map_err(|e| Interrupted::Engine(format!("the runner cannot write the job script: {e}")))?;
    // The job's output FIFO, made by its first step and kept for the job.
    let mut fifo = match p.output.take() {
        Some(fifo) => fifo,
        None => OutputFifo::create(gantry_dir).map_err(|e| {
            Interrupted::Engine(format!(
                "the runner cannot make the job's output pipe in {}: {e}",
                gantry_dir.display()
            ))
        })?,
    };
    let end = stream_step(rt, container, file, &mut fifo, p, cancel, deadline).await;
    p.output = Some(fifo);
    match end {
        Ok(code) => match terminated(gantry_dir) {
            Some(status) => Err(Interrupted::Terminated(status)),
            None => Ok(code),
        },
        interrupted => interrupted,
    }
}

/// The status `travis_terminate` left, if the step called it. Anything but
/// a plain file holding a number there counts as an error (2).
fn terminated(gantry_dir: &Path) -> Option<i64> {
    match crate::job_files::read_left(gantry_dir, "terminated", 64) {
        Ok(None) => None,
        Ok(Some(bytes)) => Some(
            std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(EXIT_ERRORED),
        ),
        Err(_) => Some(EXIT_ERRORED),
    }
}

/// How a job that called `travis_terminate N` ends: 0 passed, 1 failed,
/// anything else errored (Travis's exit codes); nothing of it runs after.
async fn terminated_outcome(status: i64, p: &mut LogPipeline) -> Outcome {
    let during = p.current_phase.clone().unwrap_or_else(|| "the job".into());
    let reason = format!("travis_terminate {status} ended the job during {during}");
    p.runner_line(&format!("\n{YELLOW}{reason}{RESET}")).await;
    Outcome {
        outcome: match status {
            EXIT_PASSED => JobOutcome::Passed,
            EXIT_FAILED => JobOutcome::Failed,
            _ => JobOutcome::Errored,
        },
        exit_code: i32::try_from(status).ok(),
        reason: Some(reason),
        phases: Vec::new(),
    }
}

/// [`run_step`] once the script and the FIFO are there.
async fn stream_step(
    rt: &Runtime,
    container: &str,
    file: &str,
    fifo: &mut OutputFifo,
    p: &mut LogPipeline,
    cancel: &CancellationToken,
    deadline: Instant,
) -> Result<Option<i64>, Interrupted> {
    let client = rt.docker.client();
    let dir = script::GANTRY_DIR;
    let exec = client
        .create_exec(
            container,
            CreateExecOptions::<String> {
                cmd: Some(vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    format!("exec /bin/sh {dir}/{file} >{dir}/{} 2>&1", output::FILE),
                ]),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| {
            Interrupted::Engine(format!("Docker could not start the job's script: {e}"))
        })?;
    let started = client.start_exec(&exec.id, None).await.map_err(|e| {
        Interrupted::Engine(format!("Docker could not start the job's script: {e}"))
    })?;
    let StartExecResults::Attached { mut output, .. } = started else {
        return Err(Interrupted::Engine(
            "Docker did not attach to the job's script".into(),
        ));
    };
    p.last_output = Instant::now();
    let started_at = p.started;
    let lost_pipe = |e: std::io::Error| {
        Interrupted::Engine(format!("the runner lost the job's output pipe: {e}"))
    };
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            read = fifo.read() => match read {
                Ok(bytes) => p.push(bytes).await,
                Err(e) => {
                    p.finish().await;
                    return Err(lost_pipe(e));
                }
            },
            // Docker ends the attach stream when the step's shell has exited.
            item = output.next() => match item {
                Some(Ok(chunk)) => p.push(&chunk.into_bytes()).await,
                Some(Err(e)) => {
                    p.finish().await;
                    return Err(Interrupted::Engine(format!("lost the connection to Docker while the job ran: {e}")));
                }
                None => break,
            },
            _ = cancel.cancelled() => {
                p.finish().await;
                rt.docker.destroy_container(container).await;
                return Err(Interrupted::Canceled);
            }
            _ = tick.tick() => {
                p.flush().await;
                if Instant::now() > deadline {
                    rt.docker.destroy_container(container).await;
                    return Err(Interrupted::TimedOut(format!("The job exceeded its time limit ({}) and has been terminated.", human(deadline.duration_since(started_at)))));
                }
                if p.last_output.elapsed() > rt.no_output_timeout {
                    rt.docker.destroy_container(container).await;
                    let mins = rt.no_output_timeout.as_secs_f64() / 60.0;
                    return Err(Interrupted::TimedOut(format!("No output has been received in the last {mins:.1} minutes; the job has been terminated (a stalled build?).")));
                }
            }
        }
    }
    // What the shell wrote before it exited is in the pipe's buffer.
    let rest = fifo.drain().map_err(lost_pipe)?;
    if !rest.is_empty() {
        p.push(&rest).await;
    }
    p.finish().await;
    let inspect = client.inspect_exec(&exec.id).await.map_err(|e| {
        Interrupted::Engine(format!(
            "Docker could not report how the job's script ended: {e}"
        ))
    })?;
    Ok(inspect.exit_code)
}
