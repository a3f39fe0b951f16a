//! Group commit for webhook deliveries: handlers hand their delivery to one
//! writer task, which stores everything waiting in one transaction (one fsync)
//! and then answers each handler. Under load many deliveries share a commit;
//! alone, a delivery is committed at once.

use crate::store::deliveries::{self, NewDelivery};
use crate::store::Db;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Notify};

/// Most deliveries one commit carries.
const MAX_BATCH: usize = 512;

type Reply = oneshot::Sender<Result<bool, String>>;

#[derive(Clone)]
pub struct Journal {
    tx: mpsc::Sender<(NewDelivery, Reply)>,
}

impl Journal {
    /// Starts the writer; `stored` is notified after each commit.
    pub fn start(db: Db, stored: Arc<Notify>) -> Journal {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(write_loop(db, rx, stored));
        Journal { tx }
    }

    /// Stores a delivery durably; `Ok(false)` when it was stored before (a redelivery).
    pub async fn record(&self, delivery: NewDelivery) -> Result<bool, String> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((delivery, reply))
            .await
            .map_err(|_| "the delivery journal has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the delivery journal has stopped".to_string())?
    }
}

async fn write_loop(db: Db, mut rx: mpsc::Receiver<(NewDelivery, Reply)>, stored: Arc<Notify>) {
    let mut batch: Vec<(NewDelivery, Reply)> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let deliveries: Vec<NewDelivery> = batch.iter().map(|(d, _)| d.clone()).collect();
        match deliveries::insert_batch(&db, &deliveries).await {
            Ok(new) => {
                for ((_, reply), is_new) in batch.drain(..).zip(new) {
                    let _ = reply.send(Ok(is_new));
                }
                stored.notify_one();
            }
            Err(e) => {
                tracing::error!(error = %e, count = batch.len(), "could not store webhook deliveries");
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(format!("could not store the delivery: {e}")));
                }
            }
        }
    }
}
