//! Jobs: what runners claim, with their lease, result and timings.

use super::{flag, now_ms, Db};
use crate::state::JobState;
use gantry_protocol::{BuildId, JobId};
use sqlx::{AnyConnection, Connection, Row};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: JobId,
    pub build_id: BuildId,
    pub number: i64,
    pub name: String,
    pub stage: String,
    pub stage_index: i64,
    pub state: JobState,
    pub allow_failure: bool,
    pub image: String,
    /// The pipeline's `Job`, as JSON: what the runner runs.
    pub spec: String,
    pub runner: Option<String>,
    pub lease: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub attempts: i64,
    pub cancel_requested: bool,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    /// Per-phase timings reported by the runner, as JSON.
    pub phases: String,
    pub created_at: i64,
    pub queued_at: Option<i64>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewJob {
    pub build_id: BuildId,
    pub number: i64,
    pub name: String,
    pub stage: String,
    pub stage_index: i64,
    pub state: JobState,
    pub allow_failure: bool,
    pub image: String,
    pub spec: String,
    pub reason: Option<String>,
}

const COLUMNS: &str = "id, build_id, number, name, stage, stage_index, state, allow_failure, image, spec, runner, lease, lease_expires_at, attempts, cancel_requested, exit_code, reason, phases, created_at, queued_at, started_at, finished_at";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Job, sqlx::Error> {
    Ok(Job {
        id: JobId(row.try_get(0)?),
        build_id: BuildId(row.try_get(1)?),
        number: row.try_get(2)?,
        name: row.try_get(3)?,
        stage: row.try_get(4)?,
        stage_index: row.try_get(5)?,
        state: row
            .try_get::<String, _>(6)?
            .parse()
            .map_err(|e: String| sqlx::Error::Decode(e.into()))?,
        allow_failure: row.try_get::<i64, _>(7)? != 0,
        image: row.try_get(8)?,
        spec: row.try_get(9)?,
        runner: row.try_get(10)?,
        lease: row.try_get(11)?,
        lease_expires_at: row.try_get(12)?,
        attempts: row.try_get(13)?,
        cancel_requested: row.try_get::<i64, _>(14)? != 0,
        exit_code: row.try_get(15)?,
        reason: row.try_get(16)?,
        phases: row.try_get(17)?,
        created_at: row.try_get(18)?,
        queued_at: row.try_get(19)?,
        started_at: row.try_get(20)?,
        finished_at: row.try_get(21)?,
    })
}

pub async fn insert(conn: &mut AnyConnection, j: &NewJob) -> Result<JobId, sqlx::Error> {
    let now = now_ms();
    let queued_at = (j.state == JobState::Queued).then_some(now);
    let finished_at = j.state.is_finished().then_some(now);
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO jobs (build_id, number, name, stage, stage_index, state, allow_failure, image, spec, reason, created_at, queued_at, finished_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
    )
    .bind(j.build_id.0)
    .bind(j.number)
    .bind(&j.name)
    .bind(&j.stage)
    .bind(j.stage_index)
    .bind(j.state.as_str())
    .bind(flag(j.allow_failure))
    .bind(&j.image)
    .bind(&j.spec)
    .bind(&j.reason)
    .bind(now)
    .bind(queued_at)
    .bind(finished_at)
    .fetch_one(conn)
    .await?;
    Ok(JobId(id))
}

pub async fn get(conn: &mut AnyConnection, id: JobId) -> Result<Option<Job>, sqlx::Error> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"))
        .bind(id.0)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn for_build(conn: &mut AnyConnection, build: BuildId) -> Result<Vec<Job>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM jobs WHERE build_id = $1 ORDER BY number"
    ))
    .bind(build.0)
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Who asks for a job, and for how long the job is theirs.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub runner: String,
    pub lease: String,
    pub lease_ms: i64,
}

/// SQL: how many jobs of the repository `repo` (an SQL expression) run.
/// It reads only the running jobs.
pub(crate) fn running_in(repo: &str) -> String {
    format!(
        "(SELECT COUNT(*) FROM jobs running JOIN builds rb ON rb.id = running.build_id
          WHERE running.state = 'running' AND rb.repo_id = {repo})"
    )
}

/// SQL: the queued job `q` may start unless its repository limits its
/// concurrent jobs and that many run. For a repository without a limit that
/// is two primary-key lookups. (Written as joins with the limit beside the
/// job, PostgreSQL's claims took 3× longer.)
fn may_start() -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM builds b JOIN repos r ON r.id = b.repo_id
          WHERE b.id = q.build_id AND r.max_concurrent_jobs IS NOT NULL
            AND r.max_concurrent_jobs <= {})",
        running_in("r.id")
    )
}

/// A claimed job, and whether to check its repository's limit again
/// (PostgreSQL, a repository with a limit: see [`keep_within_limit`]).
pub struct Claimed {
    pub job: Job,
    pub recheck: bool,
}

/// Gives each request the oldest queued job not yet given that may start
/// (see [`may_start`]), under its new lease; a request finds nothing once no
/// queued job may start. Run it inside a write transaction for several
/// requests (see `queue::claimer`), or alone for one. The state check in the
/// `UPDATE` makes a double claim impossible, also across servers
/// (`skip_locked` from [`Db::skip_locked`]). On SQLite one writer claims,
/// each claim counting the ones before it; claims side by side on
/// PostgreSQL can pass a repository's limit together, which
/// [`keep_within_limit`] undoes.
pub async fn claim_each(
    conn: &mut AnyConnection,
    skip_locked: &str,
    requests: &[ClaimRequest],
) -> Result<Vec<Option<Claimed>>, sqlx::Error> {
    let now = now_ms();
    // PostgreSQL's claims also say whether the repository has a limit.
    let recheck = if skip_locked.is_empty() {
        "NULL"
    } else {
        "(SELECT r.max_concurrent_jobs FROM builds b JOIN repos r ON r.id = b.repo_id WHERE b.id = jobs.build_id)"
    };
    let sql = format!(
        "UPDATE jobs SET state = 'running', runner = $1, lease = $2, lease_expires_at = $3, attempts = attempts + 1,
                         started_at = $4, cancel_requested = 0
         WHERE id = (SELECT q.id FROM jobs q WHERE q.state = 'queued' AND {} ORDER BY q.id LIMIT 1 {skip_locked})
           AND state = 'queued'
         RETURNING {COLUMNS}, {recheck}",
        may_start()
    );
    let mut claimed = Vec::with_capacity(requests.len());
    for request in requests {
        let row = sqlx::query(&sql)
            .bind(&request.runner)
            .bind(&request.lease)
            .bind(now + request.lease_ms)
            .bind(now)
            .fetch_optional(&mut *conn)
            .await?;
        let Some(row) = row else {
            // Nothing may start: the requests after this one find nothing either.
            claimed.resize_with(requests.len(), || None);
            break;
        };
        claimed.push(Some(Claimed {
            job: from_row(&row)?,
            recheck: row.try_get::<Option<i64>, _>(COLUMN_COUNT)?.is_some(),
        }));
    }
    Ok(claimed)
}

const COLUMN_COUNT: usize = 22;

/// PostgreSQL: claims side by side each counted the running jobs without
/// seeing the others', so together they can pass the repository's limit.
/// Each one claimed in a limited repository checks again, one at a time per
/// repository (a transaction lock), counting every claim committed before
/// it; a claim past the limit puts its job back in the queue, as it was.
/// Returns whether the claim stands.
pub async fn keep_within_limit(conn: &mut AnyConnection, job: &Job) -> Result<bool, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let repo: i64 = sqlx::query_scalar("SELECT repo_id FROM builds WHERE id = $1")
        .bind(job.build_id.0)
        .fetch_one(&mut *tx)
        .await?;
    // Two 32-bit keys: this lock's kind, then the repository. Ids past 2^31
    // wrap, and two repositories sharing a key only check one after the other.
    sqlx::query("SELECT pg_advisory_xact_lock(1129, CAST($1 % 2147483648 AS INTEGER))::TEXT")
        .bind(repo)
        .execute(&mut *tx)
        .await?;
    // The limit as it is now: an admin may have changed it meanwhile.
    let stands = match super::repos::job_slots(&mut tx, job.build_id).await? {
        Some((limit, running)) => running <= limit,
        None => true,
    };
    if !stands {
        sqlx::query(
            "UPDATE jobs SET state = 'queued', runner = NULL, lease = NULL, lease_expires_at = NULL,
                             attempts = attempts - 1, started_at = NULL
             WHERE id = $1 AND lease = $2 AND state = 'running'",
        )
        .bind(job.id.0)
        .bind(&job.lease)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(stands)
}

/// Extends a lease; `None` when the lease is no longer this runner's.
/// Returns whether a cancel was requested.
pub async fn heartbeat(
    db: &Db,
    id: JobId,
    lease: &str,
    lease_ms: i64,
) -> Result<Option<bool>, sqlx::Error> {
    let cancel: Option<i64> = sqlx::query_scalar(
        "UPDATE jobs SET lease_expires_at = $1 WHERE id = $2 AND lease = $3 AND state = 'running' RETURNING cancel_requested",
    )
    .bind(now_ms() + lease_ms)
    .bind(id.0)
    .bind(lease)
    .fetch_optional(&db.pool)
    .await?;
    Ok(cancel.map(|c| c != 0))
}

/// Whether `lease` is the current lease of a running job.
pub async fn holds_lease(
    conn: &mut AnyConnection,
    id: JobId,
    lease: &str,
) -> Result<bool, sqlx::Error> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM jobs WHERE id = $1 AND lease = $2 AND state = 'running'",
    )
    .bind(id.0)
    .bind(lease)
    .fetch_optional(conn)
    .await?;
    Ok(found.is_some())
}

/// Moves a job from `from` to `to`; false when it was no longer in `from`.
pub async fn transition(
    conn: &mut AnyConnection,
    id: JobId,
    from: JobState,
    to: JobState,
    reason: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let now = now_ms();
    let result = sqlx::query(
        "UPDATE jobs SET state = $1,
            reason = COALESCE($2, reason),
            queued_at = CASE WHEN $1 = 'queued' THEN $3 ELSE queued_at END,
            finished_at = CASE WHEN $4 = 1 THEN $3 ELSE finished_at END,
            lease = CASE WHEN $1 = 'running' THEN lease ELSE NULL END,
            lease_expires_at = CASE WHEN $1 = 'running' THEN lease_expires_at ELSE NULL END
         WHERE id = $5 AND state = $6",
    )
    .bind(to.as_str())
    .bind(reason)
    .bind(now)
    .bind(flag(to.is_finished()))
    .bind(id.0)
    .bind(from.as_str())
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Records the runner's report on a running job held under `lease`.
pub async fn finish(
    conn: &mut AnyConnection,
    id: JobId,
    lease: &str,
    to: JobState,
    exit_code: Option<i64>,
    reason: Option<&str>,
    phases: &str,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "UPDATE jobs SET state = $1, exit_code = $2, reason = $3, phases = $4, finished_at = $5, lease = NULL, lease_expires_at = NULL
         WHERE id = $6 AND lease = $7 AND state = 'running'",
    )
    .bind(to.as_str())
    .bind(exit_code)
    .bind(reason)
    .bind(phases)
    .bind(now_ms())
    .bind(id.0)
    .bind(lease)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Marks the logs of up to `limit` jobs that finished before `before` as
/// expired, oldest first, and returns those jobs: their logs are replaced
/// next (log retention). A restart clears the mark.
pub async fn expire_logs(db: &Db, before: i64, limit: i64) -> Result<Vec<JobId>, sqlx::Error> {
    let sql = format!(
        "UPDATE jobs SET log_expired_at = $1
         WHERE id IN (SELECT id FROM jobs WHERE log_expired_at IS NULL AND finished_at < $2
                      ORDER BY finished_at, id LIMIT $3 {})
         RETURNING id",
        db.skip_locked()
    );
    let mut tx = db.begin().await?;
    let ids: Vec<i64> = sqlx::query_scalar(&sql)
        .bind(now_ms())
        .bind(before)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(ids.into_iter().map(JobId).collect())
}

/// Undoes [`expire_logs`] for a log that could not be replaced, so a later
/// sweep tries again.
pub async fn keep_log(db: &Db, id: JobId) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query("UPDATE jobs SET log_expired_at = NULL WHERE id = $1")
        .bind(id.0)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// A restarted job starts over.
pub async fn reset(conn: &mut AnyConnection, id: JobId, to: JobState) -> Result<(), sqlx::Error> {
    let now = now_ms();
    sqlx::query(
        "UPDATE jobs SET state = $1, runner = NULL, lease = NULL, lease_expires_at = NULL, attempts = 0, cancel_requested = 0,
                         exit_code = NULL, reason = NULL, phases = '[]', queued_at = CASE WHEN $1 = 'queued' THEN $2 ELSE NULL END,
                         started_at = NULL, finished_at = NULL, log_expired_at = NULL
         WHERE id = $3",
    )
    .bind(to.as_str())
    .bind(now)
    .bind(id.0)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn request_cancel(conn: &mut AnyConnection, id: JobId) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE jobs SET cancel_requested = 1 WHERE id = $1 AND state = 'running'")
        .bind(id.0)
        .execute(conn)
        .await?;
    Ok(())
}

/// Running jobs whose runner stopped sending heartbeats.
pub async fn expired(db: &Db) -> Result<Vec<Job>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM jobs WHERE state = 'running' AND lease_expires_at < $1 ORDER BY id"
    ))
    .bind(now_ms())
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(from_row).collect()
}

/// How many queued jobs a runner gets before each of `ids`, in order (claims
/// take the oldest first). Two queries however many jobs: a count before the
/// first, then the queued ids from the first to the last (a build's jobs are
/// queued together, so few).
pub async fn queued_ahead(
    conn: &mut AnyConnection,
    ids: &[JobId],
) -> Result<Vec<i64>, sqlx::Error> {
    let (Some(first), Some(last)) = (
        ids.iter().map(|id| id.0).min(),
        ids.iter().map(|id| id.0).max(),
    ) else {
        return Ok(Vec::new());
    };
    let before: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state = 'queued' AND id < $1")
            .bind(first)
            .fetch_one(&mut *conn)
            .await?;
    let between: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM jobs WHERE state = 'queued' AND id >= $1 AND id < $2 ORDER BY id",
    )
    .bind(first)
    .bind(last)
    .fetch_all(&mut *conn)
    .await?;
    Ok(ids
        .iter()
        .map(|id| before + between.partition_point(|queued| *queued < id.0) as i64)
        .collect())
}

/// The running jobs, by runner: `(runner, job ids)`, sorted by name.
pub async fn running_by_runner(
    conn: &mut AnyConnection,
) -> Result<Vec<(String, Vec<i64>)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT runner, id FROM jobs WHERE state = 'running' AND runner IS NOT NULL ORDER BY runner, id",
    )
    .fetch_all(conn)
    .await?;
    let mut out: Vec<(String, Vec<i64>)> = Vec::new();
    for row in &rows {
        let (runner, id): (String, i64) = (row.try_get(0)?, row.try_get(1)?);
        match out.last_mut() {
            Some((last, ids)) if *last == runner => ids.push(id),
            _ => out.push((runner, vec![id])),
        }
    }
    Ok(out)
}

pub async fn count_by_state(conn: &mut AnyConnection) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows = sqlx::query("SELECT state, COUNT(*) FROM jobs GROUP BY state")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}
