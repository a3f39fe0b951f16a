//! Jobs in a child process. A remote runner (`gantry runner`,
//! `gantry-runner`) claims jobs itself but runs them in a child of its own
//! binary, the *job process*, as Buildkite's agent does. What jobs touch
//! (clones, Docker streams, deploy SDKs, log buffers) lives and dies with
//! that child: it exits a minute after its last job, so an idle runner
//! holds only what claiming needs (bench metric 6), and a job that crashes
//! the process cannot take the runner down with it.
//!
//! The runner writes JSON lines to the child's stdin: its settings first,
//! then one [`Order`] per line. The child answers on its stdout with one
//! [`Report`] per line; its log goes to the shared stderr.
//!
//! - **Ends:** an `Order::Stop` lets running jobs finish first. A bare end
//!   of stdin means the runner died: the child exits at once and, as when a
//!   single-process runner is killed, the server takes the jobs back when
//!   their leases lapse, and the next start's janitor removes their
//!   containers.
//! - **A child that dies** (a crash, the OOM killer) is noticed by the
//!   runner, which reports each job it had not finished as errored, with
//!   the reason, and starts a new child by its next claim (within half a
//!   minute): its janitor removes the containers the dead one left.

use crate::agent::{self, AgentConfig, AgentError};
use crate::client::ServerClient;
use gantry_protocol::{Assignment, JobId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, ChildStdout, Command};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Set in the child's environment: run as the job process, not as a CLI.
pub const ENV: &str = "GANTRY_JOB_PROCESS";

/// A job process with no job for this long exits; the next job starts a
/// new one (a few tens of milliseconds, plus making its first network).
const IDLE_EXIT: Duration = Duration::from_secs(60);

/// How long a new job process may take to connect to Docker and clear
/// leftovers before the runner gives up on it.
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// From the runner to the job process, one per line after the settings.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    Run(Box<Assignment>),
    /// Take no more jobs; exit once the running ones have ended.
    Stop,
}

/// From the job process to the runner, one per line.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Report {
    /// Docker answered and leftovers are gone: ready for jobs.
    Ready,
    /// Could not get ready; the text says why.
    Failed(String),
    /// The job's result is with the server: its slot is free.
    Reported(JobId),
    /// The job's containers and folders are gone.
    CleanedUp(JobId),
}

// ---------------------------------------------------------------- the child

/// The job process's life: settings from stdin, then orders until `Stop`
/// (or the end of stdin). Returns once every job has ended.
pub async fn serve() -> Result<(), String> {
    let mut orders = BufReader::new(tokio::io::stdin()).lines();
    let settings = orders
        .next_line()
        .await
        .map_err(|e| format!("cannot read the runner's settings: {e}"))?
        .ok_or("the runner sent no settings")?;
    let config: AgentConfig = serde_json::from_str(&settings)
        .map_err(|e| format!("the runner's settings are not valid: {e}"))?;
    let reports = Reports::default();
    let runtime = match agent::prepare(&config).await {
        Ok(rt) => rt,
        Err(e) => {
            reports.send(&Report::Failed(e.to_string())).await;
            return Err(e.to_string());
        }
    };
    reports.send(&Report::Ready).await;
    let client = ServerClient::new(&config.server, &config.token);
    let mut jobs = JoinSet::new();
    loop {
        let line = match orders.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) | Err(_) => {
                // The runner is gone without a word: nobody would hear these
                // jobs' results. Leave them as a killed runner leaves its own.
                tracing::error!(
                    running = jobs.len(),
                    "the runner is gone; the job process stops at once"
                );
                std::process::exit(1);
            }
        };
        match serde_json::from_str::<Order>(&line) {
            Ok(Order::Run(a)) => {
                let (client, runtime, reports) = (client.clone(), runtime.clone(), reports.clone());
                jobs.spawn(async move {
                    let id = a.job_id;
                    let done = Report::Reported(id);
                    let reported = reports.send(&done);
                    agent::run_to_the_end(&client, &runtime, *a, reported).await;
                    reports.send(&Report::CleanedUp(id)).await;
                });
            }
            Ok(Order::Stop) => break,
            Err(e) => tracing::error!(error = %e, "ignoring an order the job process cannot read"),
        }
        while jobs.try_join_next().is_some() {}
    }
    while jobs.join_next().await.is_some() {}
    runtime.docker.drop_spares().await;
    Ok(())
}

/// The child's stdout, one report per line, whole lines only.
#[derive(Clone, Default)]
struct Reports(Arc<tokio::sync::Mutex<()>>);

impl Reports {
    async fn send(&self, report: &Report) {
        let _turn = self.0.lock().await;
        let Ok(mut line) = serde_json::to_vec(report) else {
            return;
        };
        line.push(b'\n');
        let mut out = tokio::io::stdout();
        if out.write_all(&line).await.is_err() || out.flush().await.is_err() {
            // The runner is gone; the end of stdin says so to the loop.
            tracing::warn!(?report, "cannot report to the runner");
        }
    }
}

// --------------------------------------------------------------- the runner

/// The runner's side: one job process at a time, started when jobs come and
/// stopped when they have not for [`IDLE_EXIT`].
pub struct JobProcess {
    program: PathBuf,
    config: AgentConfig,
    client: ServerClient,
    child: Option<Child>,
}

/// A running job process.
struct Child {
    orders: ChildStdin,
    books: Arc<Mutex<Books>>,
    /// Reads reports; on the child's exit, waits for it and settles its jobs.
    watcher: tokio::task::JoinHandle<()>,
}

/// What a job process holds, as the runner sees it.
#[derive(Default)]
struct Books {
    /// Jobs whose result the child has not reported, with their slots.
    unreported: HashMap<JobId, (Assignment, OwnedSemaphorePermit)>,
    /// Jobs sent and not yet cleaned up.
    running: usize,
    /// Since when it has had no job.
    idle_since: Option<Instant>,
    /// Set once the child has exited (then nothing more is sent to it).
    exited: bool,
}

impl JobProcess {
    /// Starts the first job process, so a runner that cannot reach Docker
    /// says so at once.
    pub async fn start(
        program: &Path,
        config: &AgentConfig,
        client: &ServerClient,
    ) -> Result<JobProcess, AgentError> {
        let mut jobs = JobProcess {
            program: program.to_path_buf(),
            config: config.clone(),
            client: client.clone(),
            child: None,
        };
        jobs.child = Some(jobs.spawn().await?);
        Ok(jobs)
    }

    async fn spawn(&self) -> Result<Child, AgentError> {
        let failed = |why: String| AgentError::JobProcess(why);
        let mut process = Command::new(&self.program)
            .env(ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Its own process group: a Ctrl-C at the terminal reaches the
            // runner, which stops the child gracefully.
            .process_group(0)
            .spawn()
            .map_err(|e| failed(format!("cannot start {}: {e}", self.program.display())))?;
        let (Some(mut orders), Some(stdout)) = (process.stdin.take(), process.stdout.take()) else {
            return Err(failed("no pipes to the job process".into()));
        };
        let mut settings = serde_json::to_vec(&self.config)
            .map_err(|e| failed(format!("cannot write the settings: {e}")))?;
        settings.push(b'\n');
        let mut reports = BufReader::new(stdout).lines();
        let ready = async {
            orders
                .write_all(&settings)
                .await
                .map_err(|e| format!("cannot send it its settings: {e}"))?;
            match reports.next_line().await {
                Ok(Some(line)) => match serde_json::from_str(&line) {
                    Ok(Report::Ready) => Ok(()),
                    Ok(Report::Failed(why)) => Err(why),
                    _ => Err(format!(
                        "it answered {} bytes that are not a report",
                        line.len()
                    )),
                },
                Ok(None) | Err(_) => Err("it exited before it was ready".into()),
            }
        };
        let ready = match tokio::time::timeout(START_TIMEOUT, ready).await {
            Ok(ready) => ready,
            Err(_) => Err(format!(
                "it was not ready within {} s",
                START_TIMEOUT.as_secs()
            )),
        };
        if let Err(why) = ready {
            let _ = process.start_kill();
            let _ = process.wait().await;
            return Err(failed(why));
        }
        let books = Arc::new(Mutex::new(Books {
            idle_since: Some(Instant::now()),
            ..Books::default()
        }));
        let watcher = tokio::spawn(watch(process, reports, books.clone(), self.client.clone()));
        Ok(Child {
            orders,
            books,
            watcher,
        })
    }

    /// Hands `a` to the job process (starting one if none runs); `slot` is
    /// freed once its result is reported.
    pub async fn run(&mut self, a: Assignment, slot: OwnedSemaphorePermit) {
        if self.child.is_none() || self.bury_a_dead_child().await {
            if let Err(e) = self.start_child(Some(&a)).await {
                let reason = format!("the runner could not start a job: {e}");
                agent::report_errored(&self.client, &a, reason).await;
                return;
            }
        }
        let Some(child) = self.child.as_mut() else {
            return;
        };
        let mut line = match serde_json::to_vec(&Order::Run(Box::new(a.clone()))) {
            Ok(line) => line,
            Err(e) => {
                agent::report_errored(
                    &self.client,
                    &a,
                    format!("the runner could not hand over the job: {e}"),
                )
                .await;
                return;
            }
        };
        line.push(b'\n');
        let taken = {
            let mut books = lock(&child.books);
            if books.exited {
                Err(a)
            } else {
                books.running += 1;
                books.idle_since = None;
                books.unreported.insert(a.job_id, (a, slot));
                Ok(())
            }
        };
        if let Err(a) = taken {
            let why = "the runner's job process ended before the job started";
            agent::report_errored(&self.client, &a, why.into()).await;
            return;
        }
        // A failed write means the child died: its watcher settles the job.
        if let Err(e) = child.orders.write_all(&line).await {
            tracing::warn!(error = %e, "cannot hand a job to the job process");
        }
    }

    /// Called between claims. Replaces a job process that died, so the new
    /// one's janitor removes the containers, networks and mounts it left
    /// (without waiting for the next job); stops one that has had no job
    /// for [`IDLE_EXIT`].
    pub async fn tidy(&mut self) {
        if self.bury_a_dead_child().await {
            // A failure is logged; the next job tries again.
            let _ = self.start_child(None).await;
            return;
        }
        let idle = self.child.as_ref().is_some_and(|c| {
            let books = lock(&c.books);
            books.idle_since.is_some_and(|t| t.elapsed() >= IDLE_EXIT)
        });
        if idle {
            tracing::debug!("stopping the idle job process");
            self.stop().await;
        }
    }

    /// Starts a job process in place of none (or a buried one), for the
    /// job `waiting`, if one is: the log names it.
    async fn start_child(&mut self, waiting: Option<&Assignment>) -> Result<(), AgentError> {
        match self.spawn().await {
            Ok(child) => {
                self.child = Some(child);
                Ok(())
            }
            Err(e) => {
                match waiting {
                    Some(a) => tracing::error!(
                        error = %e,
                        job = a.job_id.0,
                        number = %a.number,
                        "cannot start the job process; the job is errored"
                    ),
                    None => tracing::error!(error = %e, "cannot start the job process"),
                }
                Err(e)
            }
        }
    }

    /// Whether the job process had died (not stopped by the runner); if so,
    /// it is forgotten once its watcher has settled its jobs.
    async fn bury_a_dead_child(&mut self) -> bool {
        if !self.child.as_ref().is_some_and(|c| lock(&c.books).exited) {
            return false;
        }
        if let Some(dead) = self.child.take() {
            let _ = dead.watcher.await;
        }
        true
    }

    /// Lets the running jobs finish, then ends the job process.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let running = lock(&child.books).running;
        if running > 0 {
            tracing::info!(running, "stopping: waiting for running jobs to finish");
        }
        let mut stop = serde_json::to_vec(&Order::Stop).unwrap_or_default();
        stop.push(b'\n');
        let _ = child.orders.write_all(&stop).await;
        let _ = child.orders.shutdown().await;
        drop(child.orders);
        let _ = child.watcher.await;
    }
}

fn lock(books: &Mutex<Books>) -> std::sync::MutexGuard<'_, Books> {
    books.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads the child's reports until it exits, then settles the jobs it had
/// not reported.
async fn watch(
    mut process: tokio::process::Child,
    mut reports: tokio::io::Lines<BufReader<ChildStdout>>,
    books: Arc<Mutex<Books>>,
    client: ServerClient,
) {
    while let Ok(Some(line)) = reports.next_line().await {
        let mut b = lock(&books);
        match serde_json::from_str(&line) {
            Ok(Report::Reported(job)) => {
                // Dropping the permit frees the slot.
                b.unreported.remove(&job);
            }
            Ok(Report::CleanedUp(_)) => {
                b.running = b.running.saturating_sub(1);
                if b.running == 0 {
                    b.idle_since = Some(Instant::now());
                }
            }
            // Not echoed: whatever wrote it, it is not the job process's report.
            _ => tracing::warn!(
                bytes = line.len(),
                "ignoring a line the runner cannot read as a report"
            ),
        }
    }
    let status = process.wait().await;
    let orphans: Vec<_> = {
        let mut b = lock(&books);
        b.exited = true;
        b.unreported.drain().map(|(_, (a, _slot))| a).collect()
    };
    if orphans.is_empty() {
        return;
    }
    let how = match status {
        Ok(s) => ended(s),
        Err(e) => format!("could not be waited for ({e})"),
    };
    tracing::error!(
        jobs = orphans.len(),
        "the job process {how}; its jobs errored"
    );
    for a in orphans {
        agent::report_errored(&client, &a, format!("the runner's job process {how}")).await;
    }
}

/// How a process ended, in words.
fn ended(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (_, Some(signal)) => format!("was killed by signal {signal}"),
        (Some(code), _) => format!("exited with status {code}"),
        _ => "ended".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_and_reports_are_one_json_line_each() {
        let stop = serde_json::to_string(&Order::Stop).unwrap();
        assert_eq!(stop, "\"stop\"");
        for report in [
            Report::Ready,
            Report::Failed("cannot reach Docker:\nno socket".into()),
            Report::Reported(JobId(7)),
            Report::CleanedUp(JobId(7)),
        ] {
            let line = serde_json::to_string(&report).unwrap();
            assert!(!line.contains('\n'), "{line}");
            assert_eq!(serde_json::from_str::<Report>(&line).unwrap(), report);
        }
    }

    #[test]
    fn an_ending_says_how() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(ended(ExitStatus::from_raw(9)), "was killed by signal 9");
        assert_eq!(ended(ExitStatus::from_raw(3 << 8)), "exited with status 3");
    }
}
