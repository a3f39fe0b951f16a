//! Turns stored deliveries (and manual requests) into builds and jobs: reads
//! the pipeline file at the commit, checks it, expands it, queues the first stage.
//! Runs after GitHub got its answer, so a slow GitHub never delays the ack.

use crate::forge::ForgeError;
use crate::intake::github::{self, BuildRequest, RequestConfig, Trigger};
use crate::state::{BuildState, JobState};
use crate::store::builds::{self, NewBuild};
use crate::store::deliveries::{self, PendingDelivery};
use crate::store::{jobs, now_ms, repos};
use crate::App;
use gantry_pipeline::{BuildContext, Catalog, ImageSpec, Severity};
use gantry_protocol::{BuildId, RepoId};
use std::time::Duration;

pub mod auto_cancel;
mod imports;
pub mod store;

/// How long a delivery is held while it is planned (then another server may take it).
const LEASE_MS: i64 = 30_000;
/// Attempts at reading a delivery's pipeline file while GitHub is
/// unavailable before its build errors: with [`retry_wait`] between them,
/// about 50 minutes in all, so an outage of GitHub's API of minutes errors
/// none of the builds pushed meanwhile.
pub const MAX_ATTEMPTS: i64 = 18;
/// The longest wait between two attempts.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(300);

/// The wait after failed attempt number `attempt` (1 for the first):
/// doubling from 2 s, at most [`MAX_RETRY_WAIT`].
fn retry_wait(attempt: i64) -> Duration {
    let doubled = Duration::from_secs(1u64 << attempt.clamp(1, 20));
    doubled.min(MAX_RETRY_WAIT)
}

/// How long a delivery's `attempts` attempts took, at least: the waits between them.
fn tried_for(attempts: i64) -> Duration {
    (1..attempts.min(MAX_ATTEMPTS)).map(retry_wait).sum()
}
/// Deliveries planned at once (each may wait on GitHub).
const CONCURRENCY: usize = 8;

/// Plans pending deliveries until none is left; returns how many were taken.
pub async fn try_once(app: &App) -> Result<usize, sqlx::Error> {
    let pending = deliveries::lease_pending(&app.db, 64, LEASE_MS).await?;
    let count = pending.len();
    use futures::StreamExt;
    futures::stream::iter(pending)
        .for_each_concurrent(CONCURRENCY, |delivery| async move {
            let id = delivery.id.clone();
            if let Err(e) = plan_delivery(app, delivery).await {
                tracing::error!(delivery = %id, error = %e, "planning a delivery failed; it will be retried");
            }
        })
        .await;
    Ok(count)
}

/// While webhooks arrive this often, planning waits for a gap…
const INTAKE_GAP: Duration = Duration::from_millis(20);
/// …but never longer than this.
const MAX_HOLD: Duration = Duration::from_secs(1);

/// Plans forever, woken by new deliveries (and every few seconds for retries).
pub async fn run(app: App) {
    loop {
        // GitHub waits for each acknowledgement (and gives up after 10 s);
        // nobody waits for a build to be planned a moment later. During a
        // burst of webhooks the planner leaves the two cores to intake.
        let held = std::time::Instant::now();
        while app.journal.busy(INTAKE_GAP) && held.elapsed() < MAX_HOLD {
            tokio::time::sleep(INTAKE_GAP / 2).await;
        }
        let wake = app.planner_wake.notified();
        match try_once(&app).await {
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot read pending deliveries"),
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), wake).await;
    }
}

/// Marks a delivery that builds nothing as done, saying why.
async fn nothing_to_build(app: &App, id: &str, outcome: &str) -> Result<(), sqlx::Error> {
    let mut conn = app.db.pool.acquire().await?;
    deliveries::mark_processed(&mut conn, id, outcome).await
}

async fn plan_delivery(app: &App, delivery: PendingDelivery) -> Result<(), sqlx::Error> {
    let text = match &delivery.payload {
        Ok(text) => text,
        Err(e) => return nothing_to_build(app, &delivery.id, e).await,
    };
    let request = match github::trigger(&delivery.event, text.as_bytes()) {
        Ok(Trigger::Build(request)) => request,
        Ok(Trigger::Ignore(reason)) => {
            return nothing_to_build(app, &delivery.id, &format!("ignored: {reason}")).await
        }
        Err(e @ github::PayloadError::NotJson(_)) => {
            return nothing_to_build(app, &delivery.id, &e.to_string()).await
        }
        Err(github::PayloadError::Invalid(e)) => {
            return nothing_to_build(app, &delivery.id, &format!("invalid payload: {e}")).await
        }
    };
    if let Some(off) = switched_off(app, &request).await? {
        return nothing_to_build(app, &delivery.id, &format!("ignored: {off}")).await;
    }
    match create_build(app, &request, Some(&delivery.id), delivery.attempts).await? {
        Planned::Build(_) => Ok(()),
        Planned::Retry(reason) => {
            let wait = retry_wait(delivery.attempts);
            tracing::warn!(
                delivery = %delivery.id,
                repo = %request.repo.full_name,
                commit = %request.commit,
                attempt = delivery.attempts,
                of = MAX_ATTEMPTS,
                %reason,
                "cannot read the pipeline file from GitHub; trying again in {}s",
                wait.as_secs()
            );
            let at = now_ms() + wait.as_millis() as i64;
            deliveries::retry_later(&app.db, &delivery.id, at, &reason).await
        }
    }
}

/// Why the repository's settings (Travis's "Build pushed branches" and
/// "Build pushed pull requests") say not to build what a webhook asks for.
async fn switched_off(app: &App, request: &BuildRequest) -> Result<Option<String>, sqlx::Error> {
    let mut conn = app.db.pool.acquire().await?;
    let Some(repo) = repos::by_name(&mut conn, &request.repo.full_name).await? else {
        return Ok(None);
    };
    use gantry_pipeline::Event;
    Ok(match request.event {
        Event::Push | Event::Tag if !repo.build_pushes => {
            Some("the repository's settings turn builds of pushes off (build_pushes)".into())
        }
        Event::PullRequest if !repo.build_pull_requests => Some(
            "the repository's settings turn builds of pull requests off (build_pull_requests)"
                .into(),
        ),
        _ => None,
    })
}

/// Why a build errored when GitHub could not give its pipeline file, and
/// what to do about it: a delivery's after [`MAX_ATTEMPTS`], a manual or
/// cron build's at once (whoever asked can ask again).
fn gave_up(repo: &str, delivery: Option<&str>, attempts: i64, reason: &str) -> String {
    let tried = match delivery {
        Some(_) => format!(
            " for {attempts} attempts over {} minutes",
            tried_for(attempts).as_secs() / 60
        ),
        None => String::new(),
    };
    format!(
        "could not read the pipeline file: GitHub was unavailable{tried} ({reason}); \
         restart the build, push again, or start one with POST /api/repos/{repo}/builds"
    )
}

/// Why something asked of a branch (a build, a schedule) could not be done.
pub enum BranchError {
    /// The request itself is wrong: the words say how.
    Invalid(String),
    /// The branch is not there: the words say which.
    NoBranch(String),
    /// GitHub could not be asked.
    Forge(String),
    Store(sqlx::Error),
}

impl From<sqlx::Error> for BranchError {
    fn from(e: sqlx::Error) -> Self {
        BranchError::Store(e)
    }
}

impl From<BranchError> for crate::error::ApiError {
    fn from(e: BranchError) -> Self {
        use crate::error::ApiError;
        match e {
            BranchError::Invalid(why) => ApiError::BadRequest(why),
            BranchError::NoBranch(why) => ApiError::NotFound(why),
            BranchError::Forge(why) => ApiError::Unavailable(why),
            BranchError::Store(e) => e.into(),
        }
    }
}

/// The commit `branch` of `repo` points at, as GitHub says.
pub async fn branch_head(
    app: &App,
    repo: &repos::Repo,
    branch: &str,
) -> Result<String, BranchError> {
    app.forge
        .branch_head(&repo.full_name, branch)
        .await
        .map_err(|e| BranchError::Forge(format!("cannot read branch {branch} on GitHub: {e}")))?
        .ok_or_else(|| BranchError::NoBranch(format!("no branch {branch} in {}", repo.full_name)))
}

/// A build that no webhook asked for: a manual (`api`) or a `cron` one.
pub struct BranchBuild {
    pub branch: String,
    /// The commit to build; the branch's head when `None`.
    pub commit: Option<String>,
    pub event: gantry_pipeline::Event,
    pub message: String,
    pub config: Option<RequestConfig>,
    /// Who asked (the build's author and `sender`): a user, `admin` for
    /// the admin token, `cron`.
    pub by: String,
}

/// Plans `asked` on `repo`.
pub async fn build_of_branch(
    app: &App,
    repo: &repos::Repo,
    asked: BranchBuild,
) -> Result<Planned, BranchError> {
    let commit = match asked.commit {
        Some(sha) => sha,
        None => branch_head(app, repo, &asked.branch).await?,
    };
    let request = BuildRequest {
        repo: repo.facts(),
        event: asked.event,
        branch: asked.branch,
        tag: None,
        commit,
        message: asked.message,
        author: asked.by.clone(),
        sender: asked.by,
        pull_request: None,
        head_branch: None,
        head_repo: None,
        fork: false,
        config: asked.config,
        emails: Default::default(),
        base_commit: None,
    };
    Ok(create_build(app, &request, None, i64::MAX).await?)
}

pub enum Planned {
    Build(BuildId),
    /// GitHub could not be reached; try again later.
    Retry(String),
}

fn build_context(request: &BuildRequest) -> BuildContext {
    BuildContext {
        event: request.event,
        branch: request.branch.clone(),
        tag: request.tag.clone(),
        repo: request.repo.full_name.clone(),
        default_branch: request.repo.default_branch.clone(),
        fork: request.fork,
        sender: request.sender.clone(),
        commit_message: request.message.clone(),
        head_repo: request.head_repo.clone(),
        head_branch: request.head_branch.clone(),
        pull_request: request.pull_request.and_then(|n| u64::try_from(n).ok()),
    }
}

/// The image column: a name, or where it is built from.
pub fn image_label(image: &ImageSpec) -> String {
    match image {
        ImageSpec::Name(name) => name.clone(),
        ImageSpec::Build { build } => format!("build: {}", build.dockerfile),
    }
}

/// Creates the build a request asks for (and its jobs), recording the
/// delivery as processed in the same transaction.
pub async fn create_build(
    app: &App,
    request: &BuildRequest,
    delivery: Option<&str>,
    attempts: i64,
) -> Result<Planned, sqlx::Error> {
    if let Some(id) = delivery {
        let mut conn = app.db.pool.acquire().await?;
        if let Some(existing) = builds::by_delivery(&mut conn, id).await? {
            deliveries::mark_processed(&mut conn, id, "build created").await?;
            return Ok(Planned::Build(existing.id));
        }
    }
    let (build, jobs) = match decide(app, request, delivery, attempts).await? {
        Decided::Build(build, jobs) => (*build, jobs),
        Decided::Retry(reason) => return Ok(Planned::Retry(reason)),
    };
    let planned = store::PlannedBuild {
        repo: request.repo.clone(),
        build,
        jobs,
    };
    let id = app
        .builds
        .store(planned)
        .await
        .map_err(sqlx::Error::Protocol)?;
    Ok(Planned::Build(id))
}

/// What a restart of a build without jobs came to.
pub enum Replanned {
    /// The pipeline file was read this time: the build is queued with its jobs.
    Queued,
    /// Still no job to run (GitHub still down, no pipeline file, errors in
    /// it, or every job filtered out), and why; the build says so too.
    NoJobs(String),
    /// Another restart planned it meanwhile.
    Meanwhile,
}

/// Plans a finished build that has no jobs again, in place, at the same
/// commit: its pipeline file could not be read (GitHub was down) or was
/// wrong, and whoever restarts it asks for another look. Its number, event
/// and branch stay, so its deploys and conditions are as a push's.
pub async fn replan(app: &App, build: &builds::Build) -> Result<Replanned, sqlx::Error> {
    let Some(finished_at) = build.finished_at else {
        return Ok(Replanned::Meanwhile);
    };
    let repo = {
        let mut conn = app.db.pool.acquire().await?;
        repos::by_id(&mut conn, build.repo_id)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?
    };
    let config = build
        .request_config
        .as_deref()
        .and_then(RequestConfig::from_json);
    let request = BuildRequest {
        repo: repo.facts(),
        event: build.event,
        branch: build.branch.clone(),
        tag: build.tag.clone(),
        commit: build.commit.clone(),
        message: build.message.clone(),
        author: build.author.clone(),
        sender: build.sender.clone(),
        pull_request: build.pull_request,
        head_branch: build.head_branch.clone(),
        head_repo: build.head_repo.clone(),
        fork: build.fork,
        config,
        // Kept with the build: a replan does not write them again.
        emails: Default::default(),
        base_commit: build.base_commit.clone(),
    };
    // Whoever restarts is waiting: GitHub's answer now, not retries.
    let (planned, jobs) = match decide(app, &request, None, i64::MAX).await? {
        Decided::Build(planned, jobs) => (*planned, jobs),
        Decided::Retry(reason) => return Ok(Replanned::NoJobs(reason)),
    };
    let mut tx = app.db.begin().await?;
    if !builds::replanned(&mut tx, build.id, finished_at, &planned).await? {
        return Ok(Replanned::Meanwhile);
    }
    let queued = store::insert_jobs(&mut tx, build.id, &jobs).await?;
    if let Some(stored) = builds::get(&mut tx, build.id).await? {
        crate::statuses::enqueue(&mut tx, app, &stored).await?;
    }
    tx.commit().await?;
    tracing::info!(repo = %request.repo.full_name, build = build.number, state = %planned.state, jobs = jobs.len(), "build planned again");
    if jobs.is_empty() {
        return Ok(Replanned::NoJobs(planned.reason.unwrap_or_default()));
    }
    if queued {
        app.dispatch.notify_waiters();
    }
    Ok(Replanned::Queued)
}

/// What the pipeline file at a request's commit makes of it.
enum Decided {
    /// The build (state, reason, diagnostics) and its jobs.
    Build(Box<NewBuild>, Vec<jobs::NewJob>),
    /// GitHub could not be reached; try again later.
    Retry(String),
}

/// Reads the pipeline file at the request's commit and plans the build:
/// errored, skipped, or queued with its jobs.
async fn decide(
    app: &App,
    request: &BuildRequest,
    delivery: Option<&str>,
    attempts: i64,
) -> Result<Decided, sqlx::Error> {
    let mut build = NewBuild {
        // Both filled in when the build is stored.
        repo_id: RepoId(0),
        number: 0,
        state: BuildState::Queued,
        event: request.event,
        branch: request.branch.clone(),
        tag: request.tag.clone(),
        commit: request.commit.clone(),
        message: request.message.clone(),
        author: request.author.clone(),
        sender: request.sender.clone(),
        pull_request: request.pull_request,
        head_branch: request.head_branch.clone(),
        head_repo: request.head_repo.clone(),
        fork: request.fork,
        delivery_id: delivery.map(str::to_string),
        reason: None,
        diagnostics: "[]".into(),
        fast_finish: false,
        webhooks: None,
        email: None,
        slack: None,
        irc: None,
        author_email: request.emails.author.clone(),
        committer_email: request.emails.committer.clone(),
        base_commit: request.base_commit.clone(),
        request_config: request.config.as_ref().map(RequestConfig::to_json),
    };
    let mut planned_jobs = Vec::new();
    let mut stages: Vec<String> = Vec::new();

    if let Some(marker) = gantry_pipeline::skip_marker(&request.message)
        .filter(|_| request.event != gantry_pipeline::Event::Api)
    {
        build.state = BuildState::Skipped;
        build.reason = Some(format!("the commit message says {marker}"));
    } else {
        match imports::pipeline(app.forge.as_ref(), request).await {
            Err(ForgeError::Transient(reason)) if attempts < MAX_ATTEMPTS => {
                return Ok(Decided::Retry(reason))
            }
            Err(ForgeError::Transient(reason)) => {
                build.state = BuildState::Errored;
                build.reason = Some(gave_up(
                    &request.repo.full_name,
                    delivery,
                    attempts,
                    &reason,
                ));
            }
            Err(e) => {
                build.state = BuildState::Errored;
                build.reason = Some(format!("could not read the pipeline file: {e}"));
            }
            Ok(None) => {
                build.state = BuildState::Errored;
                build.reason = Some(
                    "no pipeline file: add .gantry.yml or .travis.yml to the repository".into(),
                );
            }
            Ok(Some((name, parsed))) => {
                let mut diagnostics = parsed.diagnostics.clone();
                match &parsed.pipeline {
                    None => {
                        let errors = diagnostics
                            .iter()
                            .filter(|d| d.severity == Severity::Error)
                            .count();
                        build.state = BuildState::Errored;
                        build.reason = Some(format!("{name} has {errors} error(s)"));
                    }
                    Some(pipeline) => {
                        let plan = pipeline.plan(&build_context(request), &Catalog::default());
                        diagnostics.extend(plan.diagnostics.iter().cloned());
                        build.fast_finish = plan.fast_finish;
                        if let Some(reason) = plan.rejected {
                            build.state = BuildState::Skipped;
                            build.reason = Some(reason);
                        } else if plan
                            .diagnostics
                            .iter()
                            .any(|d| d.severity == Severity::Error)
                        {
                            build.state = BuildState::Errored;
                            build.reason = Some(format!("{name} expands to an invalid build"));
                        } else if plan.jobs.is_empty() {
                            build.state = BuildState::Skipped;
                            build.reason = Some(match plan.skipped.first() {
                                Some(s) => format!("no job runs: {}", s.reason),
                                None => "the pipeline has no jobs".into(),
                            });
                        } else {
                            stages = plan.stages.clone();
                            if !plan.webhooks.is_empty() {
                                build.webhooks = serde_json::to_string(&plan.webhooks).ok();
                            }
                            build.email = plan
                                .email
                                .as_ref()
                                .and_then(|e| serde_json::to_string(e).ok());
                            if !plan.slack.is_empty() {
                                build.slack = serde_json::to_string(&plan.slack).ok();
                            }
                            if !plan.irc.is_empty() {
                                build.irc = serde_json::to_string(&plan.irc).ok();
                            }
                            planned_jobs = plan.jobs;
                        }
                    }
                }
                build.diagnostics =
                    serde_json::to_string(&diagnostics).unwrap_or_else(|_| "[]".into());
            }
        }
    }

    let first_stage = planned_jobs.first().map(|j| j.stage.clone());
    let mut jobs = Vec::with_capacity(planned_jobs.len());
    for job in &planned_jobs {
        let stage_index = stages
            .iter()
            .position(|s| s.eq_ignore_ascii_case(&job.stage))
            .unwrap_or(0) as i64;
        let state = if Some(&job.stage) == first_stage.as_ref() {
            JobState::Queued
        } else {
            JobState::Created
        };
        let spec = serde_json::to_string(job).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        jobs.push(jobs::NewJob {
            // Filled in when the build is stored.
            build_id: BuildId(0),
            number: i64::from(job.number),
            name: job.name.clone(),
            stage: job.stage.clone(),
            stage_index,
            state,
            allow_failure: job.allow_failure,
            image: image_label(&job.image),
            spec,
            reason: None,
        });
    }
    if request.config.is_some() {
        hide_secrets_in_names(app, request, &mut jobs).await?;
    }
    Ok(Decided::Build(Box::new(build), jobs))
}

/// A job's name comes from its env entries (`TOKEN=…`), which a request's
/// config can set to a secret's value; pages show names to all who may
/// read the repository, so such a value becomes `[secure]` there.
async fn hide_secrets_in_names(
    app: &App,
    request: &BuildRequest,
    jobs: &mut [jobs::NewJob],
) -> Result<(), sqlx::Error> {
    let mut conn = app.db.pool.acquire().await?;
    let Some(repo) = repos::by_name(&mut conn, &request.repo.full_name).await? else {
        return Ok(());
    };
    let values = crate::secrets::values(&mut conn, app.secrets.as_ref(), repo.id)
        .await
        .map_err(|e| match e {
            crate::secrets::SecretError::Db(e) => e,
            other => sqlx::Error::Decode(Box::new(other)),
        })?;
    for job in jobs {
        job.name = crate::secrets::mask(&job.name, &values);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Retries back off to a few minutes apart and give up after about
    /// 50 minutes: an outage of GitHub's API of minutes errors no build,
    /// and a repository gone for good is not asked for all day.
    #[test]
    fn a_github_outage_is_waited_out_for_about_50_minutes() {
        assert_eq!(retry_wait(1), Duration::from_secs(2));
        assert_eq!(retry_wait(2), Duration::from_secs(4));
        for attempt in 1..MAX_ATTEMPTS {
            assert!(retry_wait(attempt) <= retry_wait(attempt + 1));
            assert!(retry_wait(attempt) <= MAX_RETRY_WAIT);
        }
        assert_eq!(retry_wait(MAX_ATTEMPTS), MAX_RETRY_WAIT);
        let minutes = tried_for(MAX_ATTEMPTS).as_secs() / 60;
        assert!((45..=60).contains(&minutes), "{minutes} minutes");
        // An attempt count from the database is never too big to shift.
        assert_eq!(retry_wait(i64::MAX), MAX_RETRY_WAIT);
    }

    #[test]
    fn giving_up_says_how_long_it_tried_and_what_to_do() {
        let why = gave_up("acme/app", Some("d-1"), MAX_ATTEMPTS, "connect refused");
        assert!(why.contains("for 18 attempts over 53 minutes"), "{why}");
        assert!(why.contains("(connect refused)"), "{why}");
        assert!(why.contains("POST /api/repos/acme/app/builds"), "{why}");
        assert!(!why.contains("will retry"), "{why}");
        let manual = gave_up("acme/app", None, i64::MAX, "connect refused");
        assert!(!manual.contains("attempts"), "{manual}");
    }
}
