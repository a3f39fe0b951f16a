//! Counters for `GET /metrics` (Prometheus text format).

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub webhooks_accepted: AtomicU64,
    pub webhooks_duplicate: AtomicU64,
    pub webhooks_ignored: AtomicU64,
    pub webhooks_rejected: AtomicU64,
    pub claims: AtomicU64,
    /// Time from a job being queued to a runner claiming it.
    pub claim_wait_ms_total: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
