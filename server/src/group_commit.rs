//! Group commit: callers hand their item to one writer task, which writes
//! everything waiting in one go (one transaction, one fsync) and then answers
//! each caller. Under load many items share a commit; alone, an item is
//! written at once. The webhook journal and SQLite claims are built on it.

use std::future::Future;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long a writer waits with nothing to write before it [`Batch::rest`]s.
const REST_AFTER: Duration = Duration::from_secs(60);

/// What the writer task does with each batch.
pub trait Batch: Send + 'static {
    type Item: Send + 'static;
    type Answer: Send + 'static;
    /// What a failure says it could not do ("store webhook deliveries").
    const WHAT: &'static str;
    /// Writes `items` together; one answer per item, in order.
    fn write(
        &mut self,
        items: &[Self::Item],
    ) -> impl Future<Output = Result<Vec<Self::Answer>, sqlx::Error>> + Send;
    /// Called when nothing came to write for a minute: a writer lets go of
    /// what only speeds up the next batch (its connection, its page cache),
    /// so an idle server gives that memory back.
    fn rest(&mut self) {}
}

type Reply<A> = oneshot::Sender<Result<A, String>>;

/// The callers' side of a writer task; it ends when every copy is dropped.
pub struct GroupCommit<B: Batch> {
    tx: mpsc::Sender<(B::Item, Reply<B::Answer>)>,
}

impl<B: Batch> Clone for GroupCommit<B> {
    fn clone(&self) -> Self {
        GroupCommit {
            tx: self.tx.clone(),
        }
    }
}

impl<B: Batch> GroupCommit<B> {
    /// Starts the writer task; a batch holds at most `max_batch` items.
    pub fn start(writer: B, max_batch: usize) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(write_loop(writer, rx, max_batch));
        GroupCommit { tx }
    }

    /// Writes `item` with whatever else is waiting, and returns its answer.
    pub async fn submit(&self, item: B::Item) -> Result<B::Answer, String> {
        let stopped = || format!("cannot {}: its writer has stopped", B::WHAT);
        let (reply, answer) = oneshot::channel();
        self.tx.send((item, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn write_loop<B: Batch>(
    mut writer: B,
    mut rx: mpsc::Receiver<(B::Item, Reply<B::Answer>)>,
    max_batch: usize,
) {
    let mut batch = Vec::with_capacity(max_batch);
    loop {
        let received =
            match tokio::time::timeout(REST_AFTER, rx.recv_many(&mut batch, max_batch)).await {
                Ok(received) => received,
                Err(_) => {
                    writer.rest();
                    rx.recv_many(&mut batch, max_batch).await
                }
            };
        if received == 0 {
            break;
        }
        let (items, replies): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        match writer.write(&items).await {
            Ok(answers) => {
                // A caller that went away misses its answer; what was written stays.
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(Ok(answer));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, count = replies.len(), "could not {}", B::WHAT);
                for reply in replies {
                    let _ = reply.send(Err(format!("could not {}: {e}", B::WHAT)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Doubles each number; counts its rests.
    struct Doubler {
        rests: Arc<AtomicUsize>,
    }

    impl Batch for Doubler {
        type Item = u32;
        type Answer = u32;
        const WHAT: &'static str = "double numbers";

        async fn write(&mut self, items: &[u32]) -> Result<Vec<u32>, sqlx::Error> {
            Ok(items.iter().map(|n| n * 2).collect())
        }

        fn rest(&mut self) {
            self.rests.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_writer_rests_once_and_still_writes_after() {
        let rests = Arc::new(AtomicUsize::new(0));
        let writer = GroupCommit::start(
            Doubler {
                rests: rests.clone(),
            },
            8,
        );
        assert_eq!(writer.submit(2).await, Ok(4));

        tokio::time::sleep(REST_AFTER / 2).await;
        assert_eq!(rests.load(Ordering::SeqCst), 0, "rested while busy");
        tokio::time::sleep(REST_AFTER * 3).await;
        assert_eq!(rests.load(Ordering::SeqCst), 1, "rests once per idle spell");

        assert_eq!(writer.submit(5).await, Ok(10));
        tokio::time::sleep(REST_AFTER + Duration::from_secs(1)).await;
        assert_eq!(rests.load(Ordering::SeqCst), 2);
    }
}
