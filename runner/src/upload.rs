//! Sends a job's log to the server as it is made: the chunks waiting are
//! joined into one upload, sent at its offset in the log, one at a time and
//! in order, retried while the server is unreachable. A runner inside the
//! server (the embedded one) hands them over in-process ([`InProcessLogs`]).

use crate::agent::retry;
use crate::client::{ClientError, ServerClient};
use bytes::Bytes;
use futures::future::BoxFuture;
use gantry_protocol::{JobId, LogAck};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The most one log upload carries.
const MAX_UPLOAD: usize = 1024 * 1024;

/// The log store of the server this runner runs inside (the embedded
/// runner). Over loopback HTTP each byte of a log was copied into the kernel
/// and out again, with TCP's work between, all in the one process.
pub trait InProcessLogs: Send + Sync {
    /// Stores `bytes` at `offset` of `job`'s log if `lease` still holds the
    /// job, answering as the runner API's log call does (a failure of the
    /// server's own is `Unreachable`, as a 5xx is: tried again).
    fn append(
        &self,
        job: JobId,
        lease: String,
        offset: u64,
        bytes: Bytes,
    ) -> BoxFuture<'static, Result<LogAck, ClientError>>;
}

/// Where a job's log goes.
pub(crate) enum LogDestination {
    /// The server, over the runner API.
    Server(ServerClient),
    /// The server this runner runs inside.
    InProcess(Arc<dyn InProcessLogs>),
}

/// A job's log on its way, and what to do when the job is no longer ours.
pub(crate) struct LogUpload {
    pub to: LogDestination,
    pub job: JobId,
    pub lease: String,
    /// How long to keep trying while the server is unreachable (or, in
    /// process, failing: a database that is busy or restarting).
    pub patience: Duration,
    /// Set (and `cancel` cancelled) when the server says the lease is lost.
    pub lost: Arc<AtomicBool>,
    pub cancel: CancellationToken,
}

impl LogUpload {
    /// Sends the log from a task of its own; see [`run`](Self::run).
    pub fn spawn(self, offset: u64, rx: mpsc::Receiver<Bytes>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move { self.run(offset, rx).await })
    }

    /// Sends everything `rx` gives, in order, from `offset` (where the log
    /// stands when the job starts), until `rx` closes.
    pub async fn run(&self, offset: u64, mut rx: mpsc::Receiver<Bytes>) {
        let mut offset = offset;
        while let Some(first) = rx.recv().await {
            let bytes = with_waiting(first, &mut rx);
            if self.lost.load(Ordering::Relaxed) {
                continue;
            }
            match retry(self.patience, || self.send(offset, bytes.clone())).await {
                Ok(ack) => offset = ack.size,
                Err(e) => self.failed(e),
            }
        }
    }

    async fn send(&self, at: u64, bytes: Bytes) -> Result<LogAck, ClientError> {
        match &self.to {
            LogDestination::Server(client) => client.log(self.job, &self.lease, at, bytes).await,
            LogDestination::InProcess(logs) => {
                logs.append(self.job, self.lease.clone(), at, bytes).await
            }
        }
    }

    fn failed(&self, error: ClientError) {
        match error {
            ClientError::LeaseLost => {
                self.lost.store(true, Ordering::Relaxed);
                self.cancel.cancel();
            }
            e => tracing::error!(job = %self.job, error = %e, "could not store a log chunk"),
        }
    }
}

/// `first` and the chunks already waiting behind it, up to [`MAX_UPLOAD`], as
/// one upload: one request per backlog instead of one per chunk. A lone chunk
/// is sent as it is; several are copied once.
fn with_waiting(first: Bytes, rx: &mut mpsc::Receiver<Bytes>) -> Bytes {
    let mut len = first.len();
    let mut parts = vec![first];
    while len < MAX_UPLOAD {
        match rx.try_recv() {
            Ok(more) => {
                len += more.len();
                parts.push(more);
            }
            Err(_) => break,
        }
    }
    if parts.len() == 1 {
        return parts.swap_remove(0);
    }
    let mut joined = bytes::BytesMut::with_capacity(len);
    for part in parts {
        joined.extend_from_slice(&part);
    }
    joined.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_upload_takes_the_waiting_chunks_in_order_up_to_its_limit() {
        let (tx, mut rx) = mpsc::channel::<Bytes>(8);
        let chunk = |n: u8| Bytes::from(vec![n; 300 * 1024]);
        for n in 1..=5 {
            tx.send(chunk(n)).await.unwrap();
        }
        let first = rx.recv().await.unwrap();
        let upload = with_waiting(first, &mut rx);
        // Four chunks reach the limit; the fifth waits for the next upload.
        assert_eq!(upload.len(), 4 * 300 * 1024);
        for (i, part) in upload.chunks(300 * 1024).enumerate() {
            assert!(
                part.iter().all(|b| *b == i as u8 + 1),
                "chunk {} out of place",
                i + 1
            );
        }
        let next = rx.recv().await.unwrap();
        let lone = with_waiting(next.clone(), &mut rx);
        assert_eq!(lone, chunk(5));
        assert_eq!(
            lone.as_ptr(),
            next.as_ptr(),
            "a lone chunk is sent without a copy"
        );
    }
}
