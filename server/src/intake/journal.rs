//! The webhook journal: handlers hand their delivery to the group commit
//! (see `group_commit`), which stores everything waiting in one transaction
//! (one fsync) before any of them is acknowledged.

use crate::group_commit::{Batch, GroupCommit};
use crate::store::deliveries::{self, NewDelivery};
use crate::store::Db;
use std::sync::Arc;
use tokio::sync::Notify;

/// Most deliveries one commit carries.
const MAX_BATCH: usize = 512;

#[derive(Clone)]
pub struct Journal(GroupCommit<Deliveries>);

impl Journal {
    /// Starts the writer; `stored` is notified after each commit.
    pub fn start(db: Db, stored: Arc<Notify>) -> Journal {
        Journal(GroupCommit::start(Deliveries { db, stored }, MAX_BATCH))
    }

    /// Stores a delivery durably; `Ok(false)` when it was stored before (a redelivery).
    pub async fn record(&self, delivery: NewDelivery) -> Result<bool, String> {
        self.0.submit(delivery).await
    }
}

struct Deliveries {
    db: Db,
    stored: Arc<Notify>,
}

impl Batch for Deliveries {
    type Item = NewDelivery;
    type Answer = bool;
    const WHAT: &'static str = "store webhook deliveries";

    async fn write(&mut self, batch: &[NewDelivery]) -> Result<Vec<bool>, sqlx::Error> {
        let new = deliveries::insert_batch(&self.db, batch).await?;
        self.stored.notify_one();
        Ok(new)
    }
}
