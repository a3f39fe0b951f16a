//! Builds: one per push, pull request update or manual request.

use super::{flag, now_ms};
use crate::state::BuildState;
use gantry_pipeline::Event;
use gantry_protocol::{BuildId, RepoId};
use sqlx::{AnyConnection, Row};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    pub id: BuildId,
    pub repo_id: RepoId,
    pub repo: String,
    pub number: i64,
    pub state: BuildState,
    pub event: Event,
    pub branch: String,
    pub tag: Option<String>,
    pub commit: String,
    pub message: String,
    pub author: String,
    pub sender: String,
    pub pull_request: Option<i64>,
    pub head_branch: Option<String>,
    pub head_repo: Option<String>,
    pub fork: bool,
    /// Why it errored, was skipped or canceled.
    pub reason: Option<String>,
    /// The pipeline file's diagnostics, as JSON.
    pub diagnostics: String,
    pub fast_finish: bool,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The config an API request sent with it (`RequestConfig::to_json`).
    pub request_config: Option<String>,
    /// Pull requests: the commit their jobs merge the head into.
    pub base_commit: Option<String>,
}

/// What a build is of, before it has an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBuild {
    pub repo_id: RepoId,
    pub number: i64,
    pub state: BuildState,
    pub event: Event,
    pub branch: String,
    pub tag: Option<String>,
    pub commit: String,
    pub message: String,
    pub author: String,
    pub sender: String,
    pub pull_request: Option<i64>,
    pub head_branch: Option<String>,
    pub head_repo: Option<String>,
    pub fork: bool,
    pub delivery_id: Option<String>,
    pub reason: Option<String>,
    pub diagnostics: String,
    pub fast_finish: bool,
    /// The webhooks told of the build (JSON `[Webhook]`), when it has any.
    pub webhooks: Option<String>,
    /// Its email notifications (JSON `Email`), unless turned off.
    pub email: Option<String>,
    /// The Slack rooms told of it (JSON `[Slack]`), when it has any.
    pub slack: Option<String>,
    /// The IRC channels told of it (JSON `[Irc]`), when it has any.
    pub irc: Option<String>,
    /// The head commit's author and committer addresses (pushes only).
    pub author_email: Option<String>,
    pub committer_email: Option<String>,
    /// Pull requests: the commit their jobs merge the head into.
    pub base_commit: Option<String>,
    /// The config an API request sent with it (`RequestConfig::to_json`).
    pub request_config: Option<String>,
}

const COLUMNS: &str = "b.id, b.repo_id, r.full_name, b.number, b.state, b.event, b.branch, b.tag, b.commit_sha, b.message, b.author, b.sender, b.pull_request, b.head_branch, b.head_repo, b.fork, b.reason, b.diagnostics, b.fast_finish, b.created_at, b.started_at, b.finished_at, b.request_config, b.base_commit";

fn decode_err(e: String) -> sqlx::Error {
    sqlx::Error::Decode(e.into())
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<Build, sqlx::Error> {
    Ok(Build {
        id: BuildId(row.try_get(0)?),
        repo_id: RepoId(row.try_get(1)?),
        repo: row.try_get(2)?,
        number: row.try_get(3)?,
        state: row.try_get::<String, _>(4)?.parse().map_err(decode_err)?,
        event: row.try_get::<String, _>(5)?.parse().map_err(decode_err)?,
        branch: row.try_get(6)?,
        tag: row.try_get(7)?,
        commit: row.try_get(8)?,
        message: row.try_get(9)?,
        author: row.try_get(10)?,
        sender: row.try_get(11)?,
        pull_request: row.try_get(12)?,
        head_branch: row.try_get(13)?,
        head_repo: row.try_get(14)?,
        fork: row.try_get::<i64, _>(15)? != 0,
        reason: row.try_get(16)?,
        diagnostics: row.try_get(17)?,
        fast_finish: row.try_get::<i64, _>(18)? != 0,
        created_at: row.try_get(19)?,
        started_at: row.try_get(20)?,
        finished_at: row.try_get(21)?,
        request_config: row.try_get(22)?,
        base_commit: row.try_get(23)?,
    })
}

pub async fn insert(conn: &mut AnyConnection, b: &NewBuild) -> Result<BuildId, sqlx::Error> {
    let now = now_ms();
    let finished = b.state.is_finished().then_some(now);
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO builds (repo_id, number, state, event, branch, tag, commit_sha, message, author, sender, pull_request,
                             head_branch, head_repo, fork, delivery_id, reason, diagnostics, fast_finish, created_at, finished_at, webhooks, request_config,
                             email, author_email, committer_email, base_commit, slack, irc)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28) RETURNING id",
    )
    .bind(b.repo_id.0)
    .bind(b.number)
    .bind(b.state.as_str())
    .bind(b.event.as_str())
    .bind(&b.branch)
    .bind(&b.tag)
    .bind(&b.commit)
    .bind(&b.message)
    .bind(&b.author)
    .bind(&b.sender)
    .bind(b.pull_request)
    .bind(&b.head_branch)
    .bind(&b.head_repo)
    .bind(flag(b.fork))
    .bind(&b.delivery_id)
    .bind(&b.reason)
    .bind(&b.diagnostics)
    .bind(flag(b.fast_finish))
    .bind(now)
    .bind(finished)
    .bind(&b.webhooks)
    .bind(&b.request_config)
    .bind(&b.email)
    .bind(&b.author_email)
    .bind(&b.committer_email)
    .bind(&b.base_commit)
    .bind(&b.slack)
    .bind(&b.irc)
    .fetch_one(conn)
    .await?;
    Ok(BuildId(id))
}

pub async fn get(conn: &mut AnyConnection, id: BuildId) -> Result<Option<Build>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM builds b JOIN repos r ON r.id = b.repo_id WHERE b.id = $1"
    ))
    .bind(id.0)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn by_delivery(
    conn: &mut AnyConnection,
    delivery: &str,
) -> Result<Option<Build>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM builds b JOIN repos r ON r.id = b.repo_id WHERE b.delivery_id = $1"
    ))
    .bind(delivery)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Filters for listing a repository's builds, newest first.
#[derive(Debug, Clone, Default)]
pub struct BuildFilter {
    pub branch: Option<String>,
    pub state: Option<BuildState>,
    /// Only builds numbered below this (pagination).
    pub before: Option<i64>,
    pub limit: i64,
}

pub async fn list(
    conn: &mut AnyConnection,
    repo: RepoId,
    filter: &BuildFilter,
) -> Result<Vec<Build>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM builds b JOIN repos r ON r.id = b.repo_id
         WHERE b.repo_id = $1 AND ($2 IS NULL OR b.branch = $2) AND ($3 IS NULL OR b.state = $3) AND ($4 IS NULL OR b.number < $4)
         ORDER BY b.number DESC LIMIT $5"
    ))
    .bind(repo.0)
    .bind(&filter.branch)
    .bind(filter.state.map(|s| s.as_str()))
    .bind(filter.before)
    .bind(filter.limit)
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Older builds that `newer` supersedes: of the same branch (pushes, tags
/// aside) or the same pull request, numbered below it, and still `queued`
/// (or `running` too, if `running`).
pub async fn superseded(
    conn: &mut AnyConnection,
    newer: &NewBuild,
    running: bool,
) -> Result<Vec<Build>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM builds b JOIN repos r ON r.id = b.repo_id
         WHERE b.repo_id = $1 AND b.number < $2 AND b.event = $3 AND b.tag IS NULL
           AND (b.state = 'queued' OR ($4 = 1 AND b.state = 'running'))
           AND (($3 = 'push' AND b.branch = $5) OR ($3 = 'pull_request' AND b.pull_request = $6))
         ORDER BY b.number"
    ))
    .bind(newer.repo_id.0)
    .bind(newer.number)
    .bind(newer.event.as_str())
    .bind(flag(running))
    .bind(&newer.branch)
    .bind(newer.pull_request)
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Says why a build ended as it did (shown with it, and in its GitHub status).
pub async fn set_reason(
    conn: &mut AnyConnection,
    id: BuildId,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE builds SET reason = $1 WHERE id = $2")
        .bind(reason)
        .bind(id.0)
        .execute(conn)
        .await?;
    Ok(())
}

/// The newest build of a branch, for the repository list.
pub async fn latest_on_branch(
    conn: &mut AnyConnection,
    repo: RepoId,
    branch: &str,
) -> Result<Option<Build>, sqlx::Error> {
    let filter = BuildFilter {
        branch: Some(branch.to_string()),
        limit: 1,
        ..Default::default()
    };
    Ok(list(conn, repo, &filter).await?.into_iter().next())
}

/// Records a new state; sets `started_at` on the first start and `finished_at` when finished.
pub async fn set_state(
    conn: &mut AnyConnection,
    id: BuildId,
    state: BuildState,
) -> Result<(), sqlx::Error> {
    let now = now_ms();
    sqlx::query(
        "UPDATE builds SET state = $1,
            started_at = CASE WHEN $2 = 1 AND started_at IS NULL THEN $3 ELSE started_at END,
            finished_at = CASE WHEN $4 = 1 THEN $3 ELSE NULL END
         WHERE id = $5",
    )
    .bind(state.as_str())
    .bind(flag(state != BuildState::Queued))
    .bind(now)
    .bind(flag(state.is_finished()))
    .bind(id.0)
    .execute(conn)
    .await?;
    Ok(())
}

/// A restarted build starts over: no start or finish time.
pub async fn reset(conn: &mut AnyConnection, id: BuildId) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE builds SET state = 'queued', started_at = NULL, finished_at = NULL, reason = NULL WHERE id = $1")
        .bind(id.0)
        .execute(conn)
        .await?;
    Ok(())
}

/// Gives build `id`, finished at `finished_at` without jobs, what planning
/// it again decided; false when it changed meanwhile (another restart).
pub async fn replanned(
    conn: &mut AnyConnection,
    id: BuildId,
    finished_at: i64,
    b: &NewBuild,
) -> Result<bool, sqlx::Error> {
    let finished = b.state.is_finished().then_some(now_ms());
    let result = sqlx::query(
        "UPDATE builds SET state = $1, reason = $2, diagnostics = $3, fast_finish = $4, webhooks = $5,
                           started_at = NULL, finished_at = $6, email = $9, slack = $10, irc = $11
         WHERE id = $7 AND finished_at = $8",
    )
    .bind(b.state.as_str())
    .bind(&b.reason)
    .bind(&b.diagnostics)
    .bind(flag(b.fast_finish))
    .bind(&b.webhooks)
    .bind(finished)
    .bind(id.0)
    .bind(finished_at)
    .bind(&b.email)
    .bind(&b.slack)
    .bind(&b.irc)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn count_by_state(conn: &mut AnyConnection) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows = sqlx::query("SELECT state, COUNT(*) FROM builds GROUP BY state")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}
