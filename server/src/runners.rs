//! The runners this server hears from, so that a queued job can say why it
//! has not started: no runner connected, or every runner busy (the question
//! Travis, Woodpecker and Drone users ask most about "pending" builds).
//!
//! A runner with a free slot asks for work with a long poll
//! (`queue::claim`); the server notes when, and whether a claim is open
//! now. That is kept in memory: it is about the last minute, and a
//! restarted server hears from its runners again within one poll. Which
//! runner holds which job is in the database (`jobs.runner`), so busy
//! runners are known to every server.

use crate::store::{jobs, now_ms};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A runner that asked for work this recently counts as connected: runners
/// ask again at least every 30 s while they have a free slot.
pub const RECENT: Duration = Duration::from_secs(90);

/// Runners not heard from for a day are forgotten.
const FORGET_MS: i64 = 24 * 3600 * 1000;

#[derive(Default)]
pub struct Runners {
    seen: Mutex<HashMap<String, Seen>>,
}

#[derive(Clone, Copy)]
struct Seen {
    /// When it last asked for work, or its last claim ended (Unix ms).
    last_ms: i64,
    /// Claims of its open now (a runner with free slots waiting for work).
    asking: usize,
}

impl Seen {
    /// Asking now, or asked since `since_ms`: counted as connected.
    fn connected(&self, since_ms: i64) -> bool {
        self.asking > 0 || self.last_ms >= since_ms
    }
}

/// An open claim; dropping it (answered, timed out or hung up) closes it.
pub struct Asking {
    runners: Arc<Runners>,
    name: String,
}

impl Drop for Asking {
    fn drop(&mut self) {
        let mut seen = self.runners.lock();
        if let Some(s) = seen.get_mut(&self.name) {
            s.asking = s.asking.saturating_sub(1);
            s.last_ms = now_ms();
        }
    }
}

/// A runner as the operator sees it (`GET /api/runners`).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct RunnerView {
    pub name: String,
    /// When it last asked this server for work; `None` for a runner only
    /// the database knows (it holds a job, and talks to another server).
    pub last_seen_at: Option<String>,
    /// Waiting for work now: it has a free slot.
    pub asking: bool,
    /// The jobs it runs.
    pub jobs: Vec<i64>,
}

impl Runners {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes that `name` asks for work, until the returned guard drops.
    pub fn asking(self: &Arc<Self>, name: &str) -> Asking {
        let now = now_ms();
        let mut seen = self.lock();
        if seen.len() > 256 {
            seen.retain(|_, s| s.asking > 0 || now - s.last_ms < FORGET_MS);
        }
        let s = seen.entry(name.to_string()).or_insert(Seen {
            last_ms: now,
            asking: 0,
        });
        s.last_ms = now;
        s.asking += 1;
        Asking {
            runners: self.clone(),
            name: name.to_string(),
        }
    }

    /// `(connected recently, asking now)`, by name.
    fn recent(&self) -> (Vec<String>, Vec<String>) {
        let since = now_ms() - RECENT.as_millis() as i64;
        let seen = self.lock();
        let mut recent = Vec::new();
        let mut asking = Vec::new();
        for (name, s) in seen.iter() {
            if s.asking > 0 {
                asking.push(name.clone());
            }
            if s.connected(since) {
                recent.push(name.clone());
            }
        }
        (recent, asking)
    }

    /// Every runner heard from recently or holding a job, by name.
    pub async fn list(
        &self,
        conn: &mut sqlx::AnyConnection,
    ) -> Result<Vec<RunnerView>, sqlx::Error> {
        let running = jobs::running_by_runner(conn).await?;
        let since = now_ms() - RECENT.as_millis() as i64;
        let mut views: Vec<RunnerView> = {
            let seen = self.lock();
            seen.iter()
                .filter(|(name, s)| s.connected(since) || running.iter().any(|(r, _)| r == *name))
                .map(|(name, s)| RunnerView {
                    name: name.clone(),
                    last_seen_at: crate::api::views::time(Some(s.last_ms)),
                    asking: s.asking > 0,
                    jobs: Vec::new(),
                })
                .collect()
        };
        for (runner, ids) in running {
            match views.iter_mut().find(|v| v.name == runner) {
                Some(view) => view.jobs = ids,
                None => views.push(RunnerView {
                    name: runner,
                    last_seen_at: None,
                    asking: false,
                    jobs: ids,
                }),
            }
        }
        views.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(views)
    }

    /// What the runners are doing now, to tell queued jobs why they wait.
    pub async fn queue(&self, conn: &mut sqlx::AnyConnection) -> Result<Queue, sqlx::Error> {
        let running = jobs::running_by_runner(conn).await?;
        let (recent, asking) = self.recent();
        Ok(Queue {
            busy_jobs: running.iter().map(|(_, ids)| ids.len()).sum(),
            connected: recent.len() + running.iter().filter(|(r, _)| !recent.contains(r)).count(),
            asking: asking.len(),
        })
    }
}

/// The runners at one moment, as queued jobs see them.
pub struct Queue {
    /// Runners that asked for work recently or hold a job.
    connected: usize,
    /// Runners waiting for work now.
    asking: usize,
    busy_jobs: usize,
}

impl Queue {
    /// Why a queued job with `ahead` queued jobs before it has not started
    /// yet, in a sentence for its page.
    pub fn why(&self, ahead: i64) -> String {
        let place = place(ahead);
        if self.connected == 0 {
            format!(
                "{place}. No runner has asked this server for work in the last {} s, and none is running a job: start one (`gantry runner`), or check that the runners can reach this server.",
                RECENT.as_secs()
            )
        } else if self.asking > 0 || self.busy_jobs == 0 {
            format!("{place}; a runner is free, so it starts in a moment.")
        } else {
            format!(
                "{place}; every runner is busy ({} running {} on {} {}).",
                self.busy_jobs,
                plural(self.busy_jobs, "job", "jobs"),
                self.connected,
                plural(self.connected, "runner", "runners"),
            )
        }
    }
}

/// Why a queued job of a repository that runs as many jobs as it may at
/// once (its limit) waits, whatever the runners do.
pub fn why_full(ahead: i64, limit: i64, running: i64) -> String {
    format!(
        "{}; the repository runs at most {limit} {} at once and {running} {} running, so it starts when one of them ends.",
        place(ahead),
        plural(limit as usize, "job", "jobs"),
        if running == 1 { "is" } else { "are" },
    )
}

fn place(ahead: i64) -> String {
    match ahead {
        0 => "Next in the queue".to_string(),
        1 => "1 queued job ahead of it".to_string(),
        n => format!("{n} queued jobs ahead of it"),
    }
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runner_asks_until_its_claim_ends_and_stays_recent_after() {
        let runners = Arc::new(Runners::default());
        assert_eq!(runners.recent(), (vec![], vec![]));
        let first = runners.asking("r1");
        let second = runners.asking("r1");
        assert_eq!(runners.recent(), (vec!["r1".into()], vec!["r1".into()]));
        drop(first);
        assert_eq!(
            runners.recent().1,
            vec!["r1".to_string()],
            "one of its two claims is still open"
        );
        drop(second);
        assert_eq!(runners.recent(), (vec!["r1".into()], vec![]));
    }
}
