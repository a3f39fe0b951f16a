//! Cron schedules: one per repository branch (see `crate::cron`).

use super::{flag, now_ms};
use crate::cron::Interval;
use gantry_protocol::{BuildId, RepoId};
use sqlx::{AnyConnection, Row};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    pub id: i64,
    pub repo_id: RepoId,
    pub repo: String,
    pub branch: String,
    pub interval: Interval,
    /// Travis's "do not run if there has been a build in the last 24h".
    pub skip_if_recent: bool,
    /// What the schedule counts from (its creation).
    pub anchor_at: i64,
    pub next_run_at: i64,
    pub last_run_at: Option<i64>,
    /// What the last run did, in words: a build, a skip and why, an error.
    pub last_result: Option<String>,
    pub last_build_id: Option<BuildId>,
    pub created_at: i64,
}

const COLUMNS: &str = "c.id, c.repo_id, r.full_name, c.branch, c.frequency, c.skip_if_recent, c.anchor_at, c.next_run_at, c.last_run_at, c.last_result, c.last_build_id, c.created_at";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Cron, sqlx::Error> {
    Ok(Cron {
        id: row.try_get(0)?,
        repo_id: RepoId(row.try_get(1)?),
        repo: row.try_get(2)?,
        branch: row.try_get(3)?,
        interval: row
            .try_get::<String, _>(4)?
            .parse()
            .map_err(|e: String| sqlx::Error::Decode(e.into()))?,
        skip_if_recent: row.try_get::<i64, _>(5)? != 0,
        anchor_at: row.try_get(6)?,
        next_run_at: row.try_get(7)?,
        last_run_at: row.try_get(8)?,
        last_result: row.try_get(9)?,
        last_build_id: row.try_get::<Option<i64>, _>(10)?.map(BuildId),
        created_at: row.try_get(11)?,
    })
}

/// Sets `branch`'s schedule (a new one, or a new interval for the one it
/// has), counting from now, with its first run now. Returns it and whether
/// it is new.
pub async fn put(
    conn: &mut AnyConnection,
    repo: RepoId,
    branch: &str,
    interval: Interval,
    skip_if_recent: bool,
) -> Result<(Cron, bool), sqlx::Error> {
    let now = now_ms();
    let existed: Option<i64> =
        sqlx::query_scalar("SELECT id FROM crons WHERE repo_id = $1 AND branch = $2")
            .bind(repo.0)
            .bind(branch)
            .fetch_optional(&mut *conn)
            .await?;
    // One statement: two requests for one branch at once leave one schedule,
    // not a unique-key error.
    sqlx::query(
        "INSERT INTO crons (repo_id, branch, frequency, skip_if_recent, anchor_at, next_run_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $5, $5)
         ON CONFLICT (repo_id, branch) DO UPDATE SET frequency = excluded.frequency,
             skip_if_recent = excluded.skip_if_recent, anchor_at = excluded.anchor_at,
             next_run_at = excluded.next_run_at",
    )
    .bind(repo.0)
    .bind(branch)
    .bind(interval.as_str())
    .bind(flag(skip_if_recent))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM crons c JOIN repos r ON r.id = c.repo_id WHERE c.repo_id = $1 AND c.branch = $2"
    ))
    .bind(repo.0)
    .bind(branch)
    .fetch_one(&mut *conn)
    .await?;
    Ok((from_row(&row)?, existed.is_none()))
}

pub async fn for_repo(conn: &mut AnyConnection, repo: RepoId) -> Result<Vec<Cron>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM crons c JOIN repos r ON r.id = c.repo_id WHERE c.repo_id = $1 ORDER BY c.branch"
    ))
    .bind(repo.0)
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

pub async fn get(conn: &mut AnyConnection, id: i64) -> Result<Option<Cron>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM crons c JOIN repos r ON r.id = c.repo_id WHERE c.id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Removes a schedule; false when there was none.
pub async fn delete(conn: &mut AnyConnection, id: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM crons WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Schedules whose run is due at `now`.
pub async fn due(conn: &mut AnyConnection, now: i64) -> Result<Vec<Cron>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM crons c JOIN repos r ON r.id = c.repo_id WHERE c.next_run_at <= $1 ORDER BY c.next_run_at"
    ))
    .bind(now)
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Takes the run of `cron` that was due: moves its next run to `next`,
/// only if no one moved it since it was read. False when another server
/// took it first.
pub async fn take(
    conn: &mut AnyConnection,
    cron: &Cron,
    next: i64,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE crons SET next_run_at = $1, last_run_at = $2 WHERE id = $3 AND next_run_at = $4",
    )
    .bind(next)
    .bind(now)
    .bind(cron.id)
    .bind(cron.next_run_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records what a run did (and, to try again sooner, an earlier next run).
pub async fn record(
    conn: &mut AnyConnection,
    id: i64,
    result: &str,
    build: Option<BuildId>,
    retry_at: Option<i64>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE crons SET last_result = $1, last_build_id = COALESCE($2, last_build_id),
                          next_run_at = COALESCE($3, next_run_at)
         WHERE id = $4",
    )
    .bind(result)
    .bind(build.map(|b| b.0))
    .bind(retry_at)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}
