//! Claiming jobs for runners, the way each engine does it fastest.
//!
//! **PostgreSQL** claims side by side: `FOR UPDATE SKIP LOCKED` lets
//! concurrent claims take different rows, and PostgreSQL shares WAL flushes
//! between concurrent commits by itself.
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

use crate::store::jobs::{self, ClaimRequest, Job};
use crate::store::{Backend, Db};
use sqlx::{AnyConnection, Connection, Executor};
use tokio::sync::{mpsc, oneshot};

/// Most claims one SQLite commit carries.
const MAX_BATCH: usize = 64;

type Reply = oneshot::Sender<Result<Option<Job>, String>>;

#[derive(Clone)]
pub enum Claimer {
    /// SQLite: requests go to the claim writer task.
    Writer(mpsc::Sender<(ClaimRequest, Reply)>),
    /// PostgreSQL: each request claims on a pooled connection.
    Direct(Db),
}

impl Claimer {
    /// On SQLite, starts the claim writer; it ends when every `Claimer` is dropped.
    pub fn start(db: Db) -> Claimer {
        match db.backend {
            Backend::Postgres => Claimer::Direct(db),
            Backend::Sqlite => {
                let (tx, rx) = mpsc::channel(1024);
                tokio::spawn(write_loop(db, rx));
                Claimer::Writer(tx)
            }
        }
    }

    /// The oldest queued job for `request.runner` under `request.lease`, or
    /// nothing when the queue is empty.
    pub async fn claim(&self, request: ClaimRequest) -> Result<Option<Job>, String> {
        match self {
            Claimer::Direct(db) => {
                let claim = async {
                    let mut conn = db.pool.acquire().await?;
                    jobs::claim_each(&mut conn, db.skip_locked(), &[request]).await
                };
                let claimed = claim
                    .await
                    .map_err(|e| format!("could not claim a job: {e}"))?;
                Ok(claimed.into_iter().next().flatten())
            }
            Claimer::Writer(tx) => {
                let stopped = || "the claim writer has stopped".to_string();
                let (reply, answer) = oneshot::channel();
                tx.send((request, reply)).await.map_err(|_| stopped())?;
                answer.await.map_err(|_| stopped())?
            }
        }
    }
}

async fn write_loop(db: Db, mut rx: mpsc::Receiver<(ClaimRequest, Reply)>) {
    let mut batch: Vec<(ClaimRequest, Reply)> = Vec::with_capacity(MAX_BATCH);
    let mut conn: Option<AnyConnection> = None;
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let requests: Vec<ClaimRequest> = batch.iter().map(|(r, _)| r.clone()).collect();
        match claim_batch(&db, &mut conn, &requests).await {
            Ok(claimed) => {
                for ((_, reply), job) in batch.drain(..).zip(claimed) {
                    // A claimer that went away (its runner hung up) leaves its
                    // job running under a lease nobody renews: it expires and
                    // the job is queued again.
                    let _ = reply.send(Ok(job));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, count = batch.len(), "could not claim jobs");
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(format!("could not claim a job: {e}")));
                }
            }
        }
    }
}

/// One transaction on the writer's connection, opened on first use and
/// opened again after an error.
async fn claim_batch(
    db: &Db,
    slot: &mut Option<AnyConnection>,
    requests: &[ClaimRequest],
) -> Result<Vec<Option<Job>>, sqlx::Error> {
    let mut conn = match slot.take() {
        Some(conn) => conn,
        None => {
            let mut conn = db.pool.acquire().await?.detach();
            conn.execute("PRAGMA synchronous = NORMAL").await?;
            conn
        }
    };
    let claimed = if requests.len() == 1 {
        // One statement is its own transaction: one round trip, not three.
        jobs::claim_each(&mut conn, db.skip_locked(), requests).await?
    } else {
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let claimed = jobs::claim_each(&mut tx, db.skip_locked(), requests).await?;
        tx.commit().await?;
        claimed
    };
    *slot = Some(conn);
    Ok(claimed)
}
