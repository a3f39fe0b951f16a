//! Repositories, created the first time a webhook names them.

use super::now_ms;
use gantry_protocol::{BuildId, RepoId};
use serde::Serialize;
use sqlx::{AnyConnection, Row};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Repo {
    pub id: RepoId,
    pub full_name: String,
    pub clone_url: String,
    pub private: bool,
    pub default_branch: String,
    /// How many times its build caches were cleared: jobs carry it, and a
    /// runner drops caches it kept under a smaller count.
    pub cache_generation: i64,
    /// When they were last cleared (Unix ms).
    pub caches_cleared_at: Option<i64>,
    /// At most this many of its jobs run at once; `None`: no limit.
    pub max_concurrent_jobs: Option<i64>,
    /// Travis's "Build pushed branches": pushes (and tags) build.
    pub build_pushes: bool,
    /// Travis's "Build pushed pull requests": pull requests build.
    pub build_pull_requests: bool,
}

/// What a webhook says about a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoFacts {
    pub full_name: String,
    pub clone_url: String,
    pub private: bool,
    pub default_branch: String,
}

impl Repo {
    /// What GitHub says of it, as a webhook's payload would.
    pub fn facts(&self) -> RepoFacts {
        RepoFacts {
            full_name: self.full_name.clone(),
            clone_url: self.clone_url.clone(),
            private: self.private,
            default_branch: self.default_branch.clone(),
        }
    }
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<Repo, sqlx::Error> {
    Ok(Repo {
        id: RepoId(row.try_get("id")?),
        full_name: row.try_get("full_name")?,
        clone_url: row.try_get("clone_url")?,
        private: row.try_get::<i64, _>("private")? != 0,
        default_branch: row.try_get("default_branch")?,
        cache_generation: row.try_get("cache_generation")?,
        caches_cleared_at: row.try_get("caches_cleared_at")?,
        max_concurrent_jobs: row.try_get("max_concurrent_jobs")?,
        build_pushes: row.try_get::<i64, _>("build_pushes")? != 0,
        build_pull_requests: row.try_get::<i64, _>("build_pull_requests")? != 0,
    })
}

const COLUMNS: &str = "id, full_name, clone_url, private, default_branch, cache_generation, caches_cleared_at, max_concurrent_jobs, build_pushes, build_pull_requests";

/// Creates the repository or refreshes what GitHub says about it.
pub async fn upsert(conn: &mut AnyConnection, facts: &RepoFacts) -> Result<Repo, sqlx::Error> {
    let row = sqlx::query(&format!(
        "INSERT INTO repos (full_name, clone_url, private, default_branch, created_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (full_name) DO UPDATE SET clone_url = excluded.clone_url, private = excluded.private, default_branch = excluded.default_branch
         RETURNING {COLUMNS}"
    ))
    .bind(&facts.full_name)
    .bind(&facts.clone_url)
    .bind(super::flag(facts.private))
    .bind(&facts.default_branch)
    .bind(now_ms())
    .fetch_one(conn)
    .await?;
    from_row(&row)
}

/// The next build number of a repository (1, 2, …), reserved atomically.
pub async fn next_build_number(conn: &mut AnyConnection, repo: RepoId) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("UPDATE repos SET last_build_number = last_build_number + 1 WHERE id = $1 RETURNING last_build_number")
        .bind(repo.0)
        .fetch_one(conn)
        .await
}

/// Clears the repository's build caches: each runner drops them before its
/// next job of the repository. Returns the repository as it is after.
pub async fn clear_caches(conn: &mut AnyConnection, repo: RepoId) -> Result<Repo, sqlx::Error> {
    let row = sqlx::query(&format!(
        "UPDATE repos SET cache_generation = cache_generation + 1, caches_cleared_at = $1 WHERE id = $2 RETURNING {COLUMNS}"
    ))
    .bind(now_ms())
    .bind(repo.0)
    .fetch_one(conn)
    .await?;
    from_row(&row)
}

/// Sets how many of the repository's jobs may run at once (`None`: no
/// limit). Jobs already running go on; the queued wait for a free slot.
pub async fn limit_jobs(
    conn: &mut AnyConnection,
    repo: RepoId,
    max_concurrent_jobs: Option<i64>,
) -> Result<Repo, sqlx::Error> {
    let row = sqlx::query(&format!(
        "UPDATE repos SET max_concurrent_jobs = $1 WHERE id = $2 RETURNING {COLUMNS}"
    ))
    .bind(max_concurrent_jobs)
    .bind(repo.0)
    .fetch_one(conn)
    .await?;
    from_row(&row)
}

/// Turns Travis's "Build pushed branches" and "Build pushed pull
/// requests" on or off (`None`: as it is).
pub async fn switch_builds(
    conn: &mut AnyConnection,
    repo: RepoId,
    pushes: Option<bool>,
    pull_requests: Option<bool>,
) -> Result<Repo, sqlx::Error> {
    let row = sqlx::query(&format!(
        "UPDATE repos SET build_pushes = COALESCE($1, build_pushes),
                          build_pull_requests = COALESCE($2, build_pull_requests)
         WHERE id = $3 RETURNING {COLUMNS}"
    ))
    .bind(pushes.map(super::flag))
    .bind(pull_requests.map(super::flag))
    .bind(repo.0)
    .fetch_one(conn)
    .await?;
    from_row(&row)
}

/// The limit on concurrent jobs of the build's repository, if it has one,
/// and how many of its jobs run now.
pub async fn job_slots(
    conn: &mut AnyConnection,
    build: BuildId,
) -> Result<Option<(i64, i64)>, sqlx::Error> {
    let row: Option<(Option<i64>, i64)> = sqlx::query_as(&format!(
        "SELECT r.max_concurrent_jobs, CASE WHEN r.max_concurrent_jobs IS NULL THEN 0 ELSE {} END
         FROM builds this JOIN repos r ON r.id = this.repo_id WHERE this.id = $1",
        super::jobs::running_in("r.id")
    ))
    .bind(build.0)
    .fetch_optional(conn)
    .await?;
    Ok(row.and_then(|(limit, running)| limit.map(|limit| (limit, running))))
}

pub async fn by_name(
    conn: &mut AnyConnection,
    full_name: &str,
) -> Result<Option<Repo>, sqlx::Error> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM repos WHERE full_name = $1"))
        .bind(full_name)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn by_id(conn: &mut AnyConnection, id: RepoId) -> Result<Option<Repo>, sqlx::Error> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM repos WHERE id = $1"))
        .bind(id.0)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn all(conn: &mut AnyConnection) -> Result<Vec<Repo>, sqlx::Error> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM repos ORDER BY full_name"))
        .fetch_all(conn)
        .await?;
    rows.iter().map(from_row).collect()
}
