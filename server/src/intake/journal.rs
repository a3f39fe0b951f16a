//! The webhook journal: handlers hand their delivery to the group commit
//! (see `group_commit`), which stores everything waiting in one statement
//! (one transaction, one fsync) before any of them is acknowledged.
//!
//! GitHub waits for each of those answers, so the journal writes on a
//! connection of its own (it never queues for the pool) and takes the
//! urgent turn at SQLite's write lock, ahead of the planner and other
//! background writers (see `Db::turn`).

use crate::group_commit::{Batch, GroupCommit};
use crate::store::deliveries::{self, NewDelivery};
use crate::store::{Db, Turn};
use sqlx::AnyConnection;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Most deliveries one commit carries.
const MAX_BATCH: usize = 512;

/// SQLite's WAL is copied back into the database (a checkpoint, with an
/// fsync of its own) by the connection whose commit pushes it past 1,000
/// pages. A burst of webhook payloads does that nearly every commit, and
/// the acknowledgements waited for it. The journal's commits leave it to
/// the server's other writers (the planner, right after the burst).
const NO_CHECKPOINTS: &str = "PRAGMA wal_autocheckpoint = 0";

#[derive(Clone)]
pub struct Journal {
    writer: GroupCommit<Deliveries>,
    /// When the last two deliveries were recorded (ms since `epoch`; 0: never).
    last_record: Arc<AtomicU64>,
    before_last: Arc<AtomicU64>,
    epoch: Instant,
}

impl Journal {
    /// Starts the writer; `stored` is notified after each commit.
    pub fn start(db: Db, stored: Arc<Notify>) -> Journal {
        let writer = Deliveries {
            db,
            conn: None,
            stored,
        };
        Journal {
            writer: GroupCommit::start(writer, MAX_BATCH),
            last_record: Arc::default(),
            before_last: Arc::default(),
            epoch: Instant::now(),
        }
    }

    /// Whether webhooks are pouring in: the last two were both recorded
    /// within `window`. A lone webhook does not count, so its build is
    /// planned at once.
    pub fn busy(&self, window: Duration) -> bool {
        let before_last = self.before_last.load(Ordering::Relaxed);
        let now = self.epoch.elapsed().as_millis() as u64;
        before_last != 0 && now.saturating_sub(before_last) < window.as_millis() as u64
    }

    /// Stores a delivery durably; `Ok(false)` when it was stored before (a redelivery).
    pub async fn record(&self, delivery: NewDelivery) -> Result<bool, String> {
        let now = (self.epoch.elapsed().as_millis() as u64).max(1);
        let previous = self.last_record.swap(now, Ordering::Relaxed);
        self.before_last.store(previous, Ordering::Relaxed);
        self.writer.submit(delivery).await
    }
}

struct Deliveries {
    db: Db,
    /// Opened on first use, and again after an error.
    conn: Option<AnyConnection>,
    stored: Arc<Notify>,
}

impl Batch for Deliveries {
    type Item = NewDelivery;
    type Answer = bool;
    const WHAT: &'static str = "store webhook deliveries";

    async fn write(&mut self, batch: &[NewDelivery]) -> Result<Vec<bool>, sqlx::Error> {
        let mut conn = self
            .db
            .own_connection(&mut self.conn, Some(NO_CHECKPOINTS))
            .await?;
        let _turn = self.db.turn(Turn::Urgent).await;
        // One statement is a transaction of its own: all of the batch or
        // none, and durable (one fsync) when it returns. An explicit BEGIN
        // and COMMIT would add two round trips to SQLite's worker thread,
        // each waiting for a core, while every handler in the batch waits.
        let started = Instant::now();
        let new = deliveries::insert_batch(&mut conn, batch).await?;
        tracing::trace!(
            deliveries = batch.len(),
            micros = started.elapsed().as_micros() as u64,
            "journal commit"
        );
        self.conn = Some(conn);
        self.stored.notify_one();
        Ok(new)
    }

    fn rest(&mut self) {
        // Webhooks come in bursts; the next opens a connection in well under
        // a millisecond, and sets up a compressor in tens of microseconds.
        self.conn = None;
        deliveries::release_compressors();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(id: &str) -> NewDelivery {
        NewDelivery::new(id.into(), "push".into(), b"{}").unwrap()
    }

    /// The planner holds back only for a stream of webhooks, never for one.
    #[tokio::test]
    async fn one_webhook_is_not_a_burst_two_in_a_row_are() {
        let (_dir, db) = Db::scratch().await;
        let journal = Journal::start(db, Arc::default());
        let window = Duration::from_secs(60);
        assert!(!journal.busy(window));
        assert!(journal.record(delivery("a")).await.unwrap());
        assert!(!journal.busy(window), "a lone webhook");
        assert!(journal.record(delivery("b")).await.unwrap());
        assert!(journal.busy(window), "two in a row");
        assert!(!journal.busy(Duration::ZERO), "none within no time");
        assert!(
            !journal.record(delivery("b")).await.unwrap(),
            "a redelivery"
        );
    }
}
