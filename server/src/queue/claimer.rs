//! Claiming jobs for runners, the way each engine does it fastest.
//!
//! **PostgreSQL** claims side by side: `FOR UPDATE SKIP LOCKED` lets
//! concurrent claims take different rows. Their connections commit with
//! `synchronous_commit = off`: a claim is answered once its commit is in
//! PostgreSQL's WAL buffers, not once that WAL is on disk (the WAL writer
//! flushes it within a fraction of a second). A crash of the database can
//! lose the last claims, never corrupt them; the lease recovers such a job
//! as it does on SQLite (below). Everything else, webhook deliveries first,
//! commits synchronously.
//!
//! **SQLite** has one writer at a time, and a connection that finds the write
//! lock taken sleeps in its busy handler (a millisecond or more per retry).
//! So claims go to one task with its own connection, which claims for every
//! request waiting in one transaction. That connection commits with
//! `synchronous = NORMAL`: in WAL mode a commit then survives the server
//! being killed (the WAL is in the OS's hands), and reaches the disk with the
//! next `FULL` commit, such as the next acknowledged webhook. Only a power cut
//! can lose a claim, and leases already recover from that: the job is queued
//! again, and the runner that held it gets 409 at its next heartbeat and
//! stops. Webhook deliveries, which GitHub does not send twice, keep `FULL`.

use crate::group_commit::{Batch, GroupCommit};
use crate::store::jobs::{self, ClaimRequest, Job};
use crate::store::{Backend, Db, Turn};
use sqlx::AnyConnection;

/// Most claims one SQLite commit carries.
const MAX_BATCH: usize = 64;

#[derive(Clone)]
pub enum Claimer {
    /// SQLite: requests go to the claim writer task.
    Writer(GroupCommit<ClaimWriter>),
    /// PostgreSQL: each request claims on a pooled connection.
    Direct(Db),
}

impl Claimer {
    /// On SQLite, starts the claim writer; it ends when every `Claimer` is dropped.
    pub fn start(db: Db) -> Claimer {
        match db.backend {
            Backend::Postgres => Claimer::Direct(db),
            Backend::Sqlite => Claimer::Writer(GroupCommit::start(
                ClaimWriter { db, conn: None },
                MAX_BATCH,
            )),
        }
    }

    /// The oldest queued job for `request.runner` under `request.lease`, or
    /// nothing when the queue is empty. A claimer that goes away before the
    /// answer (its runner hung up) leaves the job under a lease nobody
    /// renews: it expires and the job is queued again.
    pub async fn claim(&self, request: ClaimRequest) -> Result<Option<Job>, String> {
        match self {
            Claimer::Direct(db) => claim_side_by_side(db, &request)
                .await
                .map_err(|e| format!("could not {}: {e}", ClaimWriter::WHAT)),
            Claimer::Writer(writer) => writer.submit(request).await,
        }
    }
}

/// PostgreSQL: one claim on a pooled connection. A claim that took its
/// repository past its limit together with another server's (see
/// [`jobs::keep_within_limit`]) gave its job back, and looks again: the
/// other's claim now counts, so the next look finds another repository's job.
async fn claim_side_by_side(db: &Db, request: &ClaimRequest) -> Result<Option<Job>, sqlx::Error> {
    const LOOKS: usize = 4;
    let mut conn = db.claims_pool().acquire().await?;
    for _ in 0..LOOKS {
        let claimed = jobs::claim_each(&mut conn, db.skip_locked(), std::slice::from_ref(request))
            .await?
            .pop()
            .flatten();
        let Some(claimed) = claimed else {
            return Ok(None);
        };
        if !claimed.recheck || jobs::keep_within_limit(&mut conn, &claimed.job).await? {
            return Ok(Some(claimed.job));
        }
    }
    Ok(None)
}

/// SQLite's claims: one connection of their own, opened on first use and
/// opened again after an error.
pub struct ClaimWriter {
    db: Db,
    conn: Option<AnyConnection>,
}

impl Batch for ClaimWriter {
    type Item = ClaimRequest;
    type Answer = Option<Job>;
    const WHAT: &'static str = "claim a job";

    async fn write(&mut self, requests: &[ClaimRequest]) -> Result<Vec<Option<Job>>, sqlx::Error> {
        let mut conn = self
            .db
            .own_connection(&mut self.conn, Some("PRAGMA synchronous = NORMAL"))
            .await?;
        // In line with this process's other writers, not in SQLite's busy handler.
        let _turn = self.db.turn(Turn::Normal).await;
        // One writer: each claim counts the ones before it, so a repository's
        // limit holds without checking again.
        let claimed = if requests.len() == 1 {
            // One statement is its own transaction: one round trip, not three.
            jobs::claim_each(&mut conn, self.db.skip_locked(), requests).await?
        } else {
            let mut tx = self.db.begin_on(&mut conn).await?;
            let claimed = jobs::claim_each(&mut tx, self.db.skip_locked(), requests).await?;
            tx.commit().await?;
            claimed
        };
        self.conn = Some(conn);
        Ok(claimed
            .into_iter()
            .map(|claimed| claimed.map(|c| c.job))
            .collect())
    }

    fn rest(&mut self) {
        self.conn = None;
    }
}
