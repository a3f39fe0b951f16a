//! Deploy locks: one running job at a time deploys to a repository's target
//! (an Elastic Beanstalk environment, an ECS service, an S3 prefix).

use super::now_ms;
use gantry_protocol::JobId;
use sqlx::{AnyConnection, Row};

/// The answer to a job asking for a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lock {
    Granted,
    /// Another running job holds it: its id, build number and job number.
    Held {
        job: JobId,
        build: i64,
        number: i64,
    },
}

/// Takes `target` for `job` unless another running job holds it. Call in a
/// write transaction (`Db::begin`), so two jobs cannot both take it.
pub async fn acquire(
    conn: &mut AnyConnection,
    job: JobId,
    target: &str,
) -> Result<Lock, sqlx::Error> {
    let repo: i64 = sqlx::query_scalar(
        "SELECT builds.repo_id FROM jobs JOIN builds ON builds.id = jobs.build_id WHERE jobs.id = $1",
    )
    .bind(job.0)
    .fetch_one(&mut *conn)
    .await?;
    let holder = sqlx::query(
        "SELECT jobs.id, jobs.number, builds.number AS build FROM deploy_locks
         JOIN jobs ON jobs.id = deploy_locks.job_id
         JOIN builds ON builds.id = jobs.build_id
         WHERE deploy_locks.repo_id = $1 AND deploy_locks.target = $2 AND jobs.state = 'running'",
    )
    .bind(repo)
    .bind(target)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = holder {
        let holder = JobId(row.try_get("id")?);
        if holder != job {
            return Ok(Lock::Held {
                job: holder,
                build: row.try_get("build")?,
                number: row.try_get("number")?,
            });
        }
    }
    sqlx::query(
        "INSERT INTO deploy_locks (repo_id, target, job_id, acquired_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (repo_id, target) DO UPDATE SET job_id = excluded.job_id, acquired_at = excluded.acquired_at",
    )
    .bind(repo)
    .bind(target)
    .bind(job.0)
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    Ok(Lock::Granted)
}
