//! Stores planned builds through a group commit (see `group_commit`): the
//! builds planned while the last commit ran are written in one transaction.
//!
//! A burst of pushes used to cost two write transactions per build (the
//! repository, then the build), each waiting its turn for SQLite's one write
//! lock and its own fsync, and the webhook journal waited behind them.

use crate::config::Config;
use crate::group_commit::{Batch, GroupCommit};
use crate::state::JobState;
use crate::store::builds::{self, NewBuild};
use crate::store::jobs::{self, NewJob};
use crate::store::repos::{self, RepoFacts};
use crate::store::{deliveries, Db};
use gantry_protocol::BuildId;
use std::sync::Arc;
use tokio::sync::Notify;

/// Most builds one commit carries.
const MAX_BATCH: usize = 64;

/// A build as the planner decided it, before the database numbers it.
pub struct PlannedBuild {
    pub repo: RepoFacts,
    /// `repo_id` and `number` are filled in when it is stored.
    pub build: NewBuild,
    /// `build_id` is filled in when it is stored.
    pub jobs: Vec<NewJob>,
}

/// The planner's side of the build writer; cheap to clone.
#[derive(Clone)]
pub struct BuildStore(GroupCommit<Builds>);

impl BuildStore {
    /// Starts the writer. After each commit it wakes `outbox_wake` (GitHub
    /// statuses were queued) and, when jobs were queued, `dispatch`.
    pub fn start(
        db: Db,
        config: Arc<Config>,
        outbox_wake: Arc<Notify>,
        dispatch: Arc<Notify>,
    ) -> BuildStore {
        let writer = Builds {
            db,
            config,
            outbox_wake,
            dispatch,
        };
        BuildStore(GroupCommit::start(writer, MAX_BATCH))
    }

    /// Stores `planned` (and marks its delivery processed) with whatever
    /// else is waiting; a delivery that already has its build gets that one.
    pub async fn store(&self, planned: PlannedBuild) -> Result<BuildId, String> {
        self.0.submit(planned).await?
    }
}

struct Builds {
    db: Db,
    config: Arc<Config>,
    outbox_wake: Arc<Notify>,
    dispatch: Arc<Notify>,
}

impl Batch for Builds {
    type Item = PlannedBuild;
    type Answer = Result<BuildId, String>;
    const WHAT: &'static str = "store planned builds";

    async fn write(
        &mut self,
        batch: &[PlannedBuild],
    ) -> Result<Vec<Result<BuildId, String>>, sqlx::Error> {
        let answers = match self.write_together(batch).await {
            Ok(ids) => ids.into_iter().map(Ok).collect(),
            // One build the database refuses must not take the others down
            // with it: each is tried again on its own.
            Err(e) if batch.len() > 1 => {
                tracing::warn!(error = %e, count = batch.len(), "storing builds together failed; storing them one by one");
                let mut answers = Vec::with_capacity(batch.len());
                for planned in batch {
                    let alone = self.write_together(std::slice::from_ref(planned)).await;
                    answers.push(
                        alone
                            .map(|ids| ids[0])
                            .map_err(|e| format!("could not store the build: {e}")),
                    );
                }
                answers
            }
            Err(e) => return Err(e),
        };
        Ok(answers)
    }
}

/// Stores a build's planned jobs under `build`; whether any is queued
/// (a runner may take it now).
pub(super) async fn insert_jobs(
    conn: &mut sqlx::AnyConnection,
    build: BuildId,
    planned: &[NewJob],
) -> Result<bool, sqlx::Error> {
    let mut queued = false;
    for job in planned {
        let job = NewJob {
            build_id: build,
            ..job.clone()
        };
        queued |= job.state == JobState::Queued;
        jobs::insert(conn, &job).await?;
    }
    Ok(queued)
}

impl Builds {
    /// All of `batch` in one transaction; one build id per item, in order.
    async fn write_together(&self, batch: &[PlannedBuild]) -> Result<Vec<BuildId>, sqlx::Error> {
        let mut tx = self.db.begin().await?;
        let mut ids = Vec::with_capacity(batch.len());
        let mut queued_jobs = false;
        let mut created = Vec::new();
        for planned in batch {
            let delivery = planned.build.delivery_id.as_deref();
            // A delivery planned twice (its lease ran out mid-plan) keeps its first build.
            if let Some(id) = delivery {
                if let Some(existing) = builds::by_delivery(&mut tx, id).await? {
                    deliveries::mark_processed(&mut tx, id, "build created").await?;
                    ids.push(existing.id);
                    continue;
                }
            }
            let repo = repos::upsert(&mut tx, &planned.repo).await?;
            let mut build = planned.build.clone();
            build.repo_id = repo.id;
            build.number = repos::next_build_number(&mut tx, repo.id).await?;
            let build_id = builds::insert(&mut tx, &build).await?;
            queued_jobs |= insert_jobs(&mut tx, build_id, &planned.jobs).await?;
            if let Some(id) = delivery {
                deliveries::mark_processed(&mut tx, id, "build created").await?;
            }
            super::auto_cancel::supersede(&mut tx, &self.config, &self.outbox_wake, &build).await?;
            if let Some(stored) = builds::get(&mut tx, build_id).await? {
                crate::statuses::enqueue_with(&mut tx, &self.config, &self.outbox_wake, &stored)
                    .await?;
            }
            created.push((planned, build.number, build.state));
            ids.push(build_id);
        }
        tx.commit().await?;
        for (planned, number, state) in created {
            tracing::info!(repo = %planned.repo.full_name, build = number, %state, jobs = planned.jobs.len(), "build created");
        }
        if queued_jobs {
            self.dispatch.notify_waiters();
        }
        Ok(ids)
    }
}
