//! Handing queued jobs to runners. A claim waits on a `Notify` that every
//! queueing wakes, so a waiting runner gets a new job at once — no polling.

pub mod claimer;

use crate::progress;
use crate::store::jobs::ClaimRequest;
use crate::store::{builds, now_ms, repos};
use crate::App;
use gantry_pipeline::Job as JobSpec;
use gantry_protocol::{Assignment, BuildInfo, RepoInfo};
use rand::RngCore;
use std::time::Duration;

fn new_lease() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Waits up to `wait` for a queued job and gives it to `runner`.
pub async fn claim(
    app: &App,
    runner: &str,
    wait: Duration,
) -> Result<Option<Assignment>, sqlx::Error> {
    let deadline = tokio::time::Instant::now() + wait;
    // Until it returns (or the runner hangs up), queued jobs say a runner is free.
    let _asking = app.runners.asking(runner);
    loop {
        // Register interest before looking, so a job queued in between still wakes us.
        let notified = app.dispatch.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(assignment) = try_claim(app, runner).await? {
            return Ok(Some(assignment));
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return Ok(None);
        }
    }
}

/// One attempt: the oldest queued job, or nothing.
pub async fn try_claim(app: &App, runner: &str) -> Result<Option<Assignment>, sqlx::Error> {
    let lease = new_lease();
    let lease_ms = app.config.lease.as_millis() as i64;
    let request = ClaimRequest {
        runner: runner.to_string(),
        lease: lease.clone(),
        lease_ms,
    };
    let claimed = app.claimer.claim(request).await;
    let Some(job) = claimed.map_err(|e| sqlx::Error::Io(std::io::Error::other(e)))? else {
        return Ok(None);
    };
    let mut conn = app.db.pool.acquire().await?;
    if let Some(queued_at) = job.queued_at {
        crate::metrics::Metrics::add(
            &app.metrics.claim_wait_ms_total,
            (now_ms() - queued_at).max(0) as u64,
        );
    }
    crate::metrics::Metrics::add(&app.metrics.claims, 1);
    progress::refresh_build_state(app, &mut conn, job.build_id).await?;
    let build = builds::get(&mut conn, job.build_id)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    let repo = repos::by_id(&mut conn, build.repo_id)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    let (secrets, mut notes) = job_secrets(app, &mut conn, &build).await;
    // GitHub accepts a token (or an App's installation token) as the password of `x-access-token`.
    let git_credentials = if repo.private {
        match app.forge.clone_token(&repo.full_name).await {
            Ok(token) => token.map(|password| gantry_protocol::GitCredentials {
                username: "x-access-token".into(),
                password,
            }),
            Err(e) => {
                notes.push(format!(
                    "No clone credentials from GitHub for this private repository: {e}"
                ));
                None
            }
        }
    } else {
        None
    };
    let spec: JobSpec =
        serde_json::from_str(&job.spec).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let logs = app.logs.clone();
    let job_id = job.id;
    let log_offset = tokio::task::spawn_blocking(move || logs.size(job_id))
        .await
        .map_err(|e| sqlx::Error::Io(std::io::Error::other(e)))??;
    Ok(Some(Assignment {
        job_id: job.id,
        build_id: build.id,
        number: format!("{}.{}", build.number, job.number),
        lease,
        lease_seconds: app.config.lease.as_secs(),
        log_offset,
        repo: RepoInfo {
            full_name: repo.full_name.clone(),
            clone_url: repo.clone_url,
            private: repo.private,
            default_branch: repo.default_branch,
            cache_generation: u64::try_from(repo.cache_generation).unwrap_or(0),
        },
        build: BuildInfo {
            number: build.number,
            event: build.event,
            branch: build.branch,
            tag: build.tag,
            commit: build.commit,
            message: build.message,
            pull_request: build.pull_request,
            head_branch: build.head_branch,
            head_repo: build.head_repo,
            fork: build.fork,
            sender: build.sender,
            base_commit: build.base_commit,
        },
        job: spec,
        web_url: app
            .config
            .public_url
            .as_ref()
            .map(|u| format!("{u}/{}/builds/{}", repo.full_name, build.id)),
        secrets,
        notes,
        git_credentials,
        github_api_url: Some(app.config.github_api_url.clone()),
    }))
}

/// The secrets a job gets: none for pull requests from forks (said in the log).
async fn job_secrets(
    app: &App,
    conn: &mut sqlx::AnyConnection,
    build: &crate::store::builds::Build,
) -> (Vec<gantry_protocol::SecretVar>, Vec<String>) {
    let Some(sealer) = &app.secrets else {
        return (Vec::new(), Vec::new());
    };
    if build.fork {
        return (
            Vec::new(),
            vec!["Secrets and deploys are not given to pull requests from forks.".to_string()],
        );
    }
    match crate::secrets::for_build(conn, sealer, build.repo_id, &build.branch).await {
        Ok(list) => (
            list.into_iter()
                .map(|(name, value)| gantry_protocol::SecretVar { name, value })
                .collect(),
            Vec::new(),
        ),
        Err(e) => {
            tracing::error!(build = %build.id, error = %e, "cannot open the repository's secrets");
            (
                Vec::new(),
                vec![format!(
                    "The repository's secrets could not be read ({e}); the job runs without them."
                )],
            )
        }
    }
}
