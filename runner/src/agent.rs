//! The runner loop: claim jobs up to capacity, run each with heartbeats and
//! a log uploader, report the result. Survives the server going away
//! (reconnects with backoff); on shutdown it stops claiming and lets running
//! jobs finish. Jobs run as tasks of this process (the server's embedded
//! runner) or in a job process (a remote runner, see `job_process`).

use crate::client::{ClientError, ServerClient};
use crate::docker::{Docker, Limits};
use crate::job::{self, Runtime};
use crate::job_process::JobProcess;
use crate::upload::{InProcessLogs, LogDestination, LogUpload};
use crate::workspace::Workspaces;
use bytes::Bytes;
use futures::FutureExt;
use gantry_protocol::{Assignment, FinishRequest, JobOutcome};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Serialized only to hand it to the job process, over a pipe.
#[derive(Clone, Serialize, Deserialize)]
pub struct AgentConfig {
    pub server: String,
    pub token: String,
    pub name: String,
    pub capacity: usize,
    pub data_dir: PathBuf,
    pub limits: Limits,
    pub no_output_timeout: Duration,
    pub max_job_time: Option<Duration>,
    /// Sent with every claim; the server does not route jobs by label yet.
    pub labels: BTreeMap<String, String>,
    /// Jobs of a commit share one read-only checkout through overlays (see `snapshot`).
    pub snapshots: bool,
    /// The program to run jobs in (this binary, started as a job process);
    /// `None` runs them as tasks of this process.
    #[serde(skip)]
    pub job_process: Option<PathBuf>,
    /// The server's log store, when this runner runs inside the server
    /// (jobs run as tasks): logs are stored without HTTP.
    #[serde(skip)]
    pub in_process_logs: Option<Arc<dyn InProcessLogs>>,
}

impl std::fmt::Debug for AgentConfig {
    // The token stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("server", &self.server)
            .field("name", &self.name)
            .field("capacity", &self.capacity)
            .field("data_dir", &self.data_dir)
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Docker(#[from] crate::docker::DockerError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("cannot use the data directory {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    #[error("the job process did not start: {0}")]
    JobProcess(String),
}

/// Runs until `shutdown` is cancelled and every running job has ended.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    let client = ServerClient::new(&config.server, &config.token);
    let mut jobs = match &config.job_process {
        None => Jobs::Here {
            runtime: prepare(&config).await?,
            tasks: JoinSet::new(),
        },
        Some(program) => Jobs::Child(Box::new(
            JobProcess::start(program, &config, &client).await?,
        )),
    };
    let ended = serve(&config, &client, &mut jobs, shutdown).await;
    jobs.close().await;
    ended
}

/// What jobs run on, made ready: the data directory, Docker, and nothing
/// left by an earlier run of this runner.
pub(crate) async fn prepare(config: &AgentConfig) -> Result<Arc<Runtime>, AgentError> {
    // Absolute from here on: its paths become Docker mount sources, which
    // must be absolute, and the default (`./gantry-runner-data`) is not.
    let data_dir = std::fs::create_dir_all(&config.data_dir)
        .and_then(|()| std::path::absolute(&config.data_dir))
        .map_err(|e| AgentError::DataDir(config.data_dir.clone(), e))?;
    let docker = Docker::connect(&config.name).await?;
    let left = docker.janitor().await;
    if left > 0 {
        tracing::warn!(
            removed = left,
            "removed containers and networks left by an earlier run of this runner"
        );
    }
    let workspaces = match config.snapshots {
        true => Workspaces::new(&data_dir),
        false => Workspaces::new(&data_dir).without_snapshots(),
    };
    let unmounted = workspaces.clear_leftovers().await;
    if unmounted > 0 {
        tracing::warn!(
            unmounted,
            "unmounted workspaces left by an earlier run of this runner"
        );
    }
    let runtime = Arc::new(Runtime {
        docker,
        workspaces,
        data_dir,
        limits: config.limits.clone(),
        no_output_timeout: config.no_output_timeout,
        max_job_time: config.max_job_time,
        server: Some(ServerClient::new(&config.server, &config.token)),
        in_process_logs: config.in_process_logs.clone(),
    });
    runtime.docker.keep_a_spare_network();
    Ok(runtime)
}

/// Where claimed jobs run.
enum Jobs {
    /// As tasks of this process.
    Here {
        runtime: Arc<Runtime>,
        tasks: JoinSet<()>,
    },
    /// In a job process.
    Child(Box<JobProcess>),
}

impl Jobs {
    async fn start(&mut self, client: &ServerClient, a: Assignment, slot: OwnedSemaphorePermit) {
        match self {
            Jobs::Here { runtime, tasks } => {
                while tasks.try_join_next().is_some() {}
                let (client, runtime) = (client.clone(), runtime.clone());
                tasks.spawn(async move {
                    run_to_the_end(&client, &runtime, a, async move { drop(slot) }).await;
                });
            }
            Jobs::Child(child) => child.run(a, slot).await,
        }
    }

    /// After a claim that brought no job: forget ended tasks, stop an idle
    /// job process.
    async fn tidy(&mut self) {
        match self {
            Jobs::Here { tasks, .. } => while tasks.try_join_next().is_some() {},
            Jobs::Child(child) => child.tidy().await,
        }
    }

    /// Waits for the running jobs, then lets go of what they ran on.
    async fn close(self) {
        match self {
            Jobs::Here { runtime, mut tasks } => {
                if !tasks.is_empty() {
                    tracing::info!(
                        running = tasks.len(),
                        "stopping: waiting for running jobs to finish"
                    );
                }
                while tasks.join_next().await.is_some() {}
                runtime.docker.drop_spares().await;
            }
            Jobs::Child(mut child) => child.stop().await,
        }
    }
}

/// Claims jobs until `shutdown`; [`Jobs::close`] then waits for the running ones.
async fn serve(
    config: &AgentConfig,
    client: &ServerClient,
    jobs: &mut Jobs,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    let slots = Arc::new(Semaphore::new(config.capacity.max(1)));
    let mut backoff = Duration::from_millis(500);
    tracing::info!(server = %config.server, runner = %config.name, capacity = config.capacity, "runner started");
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => break },
            _ = shutdown.cancelled() => break,
        };
        let claimed = tokio::select! {
            claimed = client.claim(&config.name, &config.labels, Duration::from_secs(30)) => claimed,
            _ = shutdown.cancelled() => break,
        };
        if !matches!(claimed, Ok(Some(_))) {
            jobs.tidy().await;
        }
        match claimed {
            Ok(Some(assignment)) => {
                backoff = Duration::from_millis(500);
                tracing::info!(job = %assignment.job_id, number = %assignment.number, "claimed");
                jobs.start(client, assignment, permit).await;
            }
            Ok(None) => {}
            Err(ClientError::Unauthorized) => return Err(ClientError::Unauthorized.into()),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot claim jobs; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    Ok(())
}

/// Retries a call while the server is unreachable, up to `patience`.
pub(crate) async fn retry<T, F, Fut>(patience: Duration, mut call: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    let mut wait = Duration::from_millis(200);
    loop {
        match call().await {
            Err(ClientError::Unreachable(e)) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "server unreachable; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// Runs a claimed job to its end: its result reported (an errored one if
/// running it panicked), then `reported` (the job's slot is free from then
/// on, while its containers go), then its containers and folders removed.
pub(crate) async fn run_to_the_end(
    client: &ServerClient,
    runtime: &Runtime,
    a: Assignment,
    reported: impl std::future::Future<Output = ()>,
) {
    let id = a.job_id;
    let run = run_assignment(client, runtime, a.clone());
    if AssertUnwindSafe(run).catch_unwind().await.is_err() {
        let why = "the runner hit a bug while running the job (see its log)";
        report_errored(client, &a, why.into()).await;
    }
    reported.await;
    job::clean_up(runtime, id.0).await;
}

/// Reports `a` errored for `reason`, so its build does not wait for a lease
/// to lapse.
pub(crate) async fn report_errored(client: &ServerClient, a: &Assignment, reason: String) {
    let report = FinishRequest {
        outcome: JobOutcome::Errored,
        exit_code: None,
        reason: Some(reason),
        phases: Vec::new(),
    };
    let patience = Duration::from_secs(a.lease_seconds);
    match retry(patience, || client.finish(a.job_id, &a.lease, &report)).await {
        Ok(()) => tracing::info!(job = %a.job_id, "reported errored"),
        Err(e) => tracing::error!(job = %a.job_id, error = %e, "could not report the result"),
    }
}

/// Runs one claimed job against the server and reports its result; the
/// caller then removes its containers ([`job::clean_up`]), so the build ends
/// as soon as the job does.
pub async fn run_assignment(client: &ServerClient, runtime: &Runtime, a: Assignment) {
    let cancel = CancellationToken::new();
    let lost = Arc::new(AtomicBool::new(false));
    let patience = Duration::from_secs(a.lease_seconds);
    let (tx, rx) = mpsc::channel::<Bytes>(8);

    let uploader = LogUpload {
        to: match runtime.in_process_logs.clone() {
            Some(logs) => LogDestination::InProcess(logs),
            None => LogDestination::Server(client.clone()),
        },
        job: a.job_id,
        lease: a.lease.clone(),
        patience,
        lost: lost.clone(),
        cancel: cancel.clone(),
    }
    .spawn(a.log_offset, rx);

    // Heartbeats: keep the lease, learn about cancels.
    let heartbeat = {
        let (client, lease, cancel, lost) = (
            client.clone(),
            a.lease.clone(),
            cancel.clone(),
            lost.clone(),
        );
        let job = a.job_id;
        // Often enough that a cancel stops the job within seconds.
        let every = Duration::from_secs(a.lease_seconds / 4)
            .clamp(Duration::from_millis(500), Duration::from_secs(2));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match client.heartbeat(job, &lease).await {
                    Ok(beat) if beat.cancel => cancel.cancel(),
                    Ok(_) => {}
                    Err(ClientError::LeaseLost) => {
                        lost.store(true, Ordering::Relaxed);
                        cancel.cancel();
                        return;
                    }
                    Err(e) => tracing::warn!(job = %job, error = %e, "heartbeat failed"),
                }
            }
        })
    };

    let outcome = job::execute(
        runtime,
        &a,
        job::Source::Clone(a.git_credentials.as_ref()),
        tx,
        cancel,
    )
    .await;
    let _ = uploader.await;
    heartbeat.abort();
    if lost.load(Ordering::Relaxed) {
        tracing::warn!(job = %a.job_id, "the job was taken back by the server; not reporting");
        return;
    }
    let reason = match outcome.outcome {
        JobOutcome::Canceled => Some("canceled by a user".to_string()),
        _ => outcome.reason.clone(),
    };
    let report = FinishRequest {
        outcome: outcome.outcome,
        exit_code: outcome.exit_code,
        reason,
        phases: outcome.phases,
    };
    match retry(patience, || client.finish(a.job_id, &a.lease, &report)).await {
        Ok(()) => tracing::info!(job = %a.job_id, outcome = ?report.outcome, "finished"),
        Err(e) => tracing::error!(job = %a.job_id, error = %e, "could not report the result"),
    }
}
