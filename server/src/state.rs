//! Job and build states, and the one pure function that moves a job between them.
//!
//! ```text
//! created ──release──▶ queued ──claim──▶ running ──finish──▶ passed | failed | errored | canceled
//!    │                   │                  └─lease expired─▶ queued (once) | errored ("runner lost")
//!    └──── cancel / skip ┴──── cancel ─────▶ canceled | skipped
//! ```
//! `created` jobs wait for an earlier stage, as on Travis.

use gantry_protocol::JobOutcome;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Created,
    Queued,
    Running,
    Passed,
    Failed,
    Errored,
    Canceled,
    Skipped,
}

/// A build's state: derived from its jobs, or set directly when it has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildState {
    Queued,
    Running,
    Passed,
    Failed,
    Errored,
    Canceled,
    Skipped,
}

macro_rules! state_names {
    ($ty:ident { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),*];
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),* }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s { $($name => Ok($ty::$variant),)* other => Err(format!("unknown state `{other}`")) }
            }
        }
    };
}

state_names!(JobState { Created => "created", Queued => "queued", Running => "running", Passed => "passed", Failed => "failed", Errored => "errored", Canceled => "canceled", Skipped => "skipped" });
state_names!(BuildState { Queued => "queued", Running => "running", Passed => "passed", Failed => "failed", Errored => "errored", Canceled => "canceled", Skipped => "skipped" });

impl JobState {
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Passed
                | JobState::Failed
                | JobState::Errored
                | JobState::Canceled
                | JobState::Skipped
        )
    }
}

impl BuildState {
    pub fn is_finished(self) -> bool {
        !matches!(self, BuildState::Queued | BuildState::Running)
    }
}

/// Something that happens to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEvent {
    /// Its stage is reached: it may be claimed.
    Release,
    /// A runner took it.
    Claim,
    /// The runner reported how it ended.
    Finish(JobOutcome),
    /// A user canceled it (a running job is canceled when its runner reports back).
    Cancel,
    /// An earlier stage failed: it will not run.
    Skip,
    /// Its runner stopped sending heartbeats; `requeue` on the first time.
    LeaseExpired { requeue: bool },
    /// A user asked to run it again.
    Restart,
}

/// A transition that makes no sense, e.g. finishing a job nobody claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidTransition {
    pub from: JobState,
    pub event: JobEvent,
}

impl fmt::Display for InvalidTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} job cannot take {:?}", self.from, self.event)
    }
}

/// The job state machine.
pub fn next(from: JobState, event: JobEvent) -> Result<JobState, InvalidTransition> {
    use JobState::*;
    let to = match (from, event) {
        (Created, JobEvent::Release) => Queued,
        (Queued, JobEvent::Claim) => Running,
        (Running, JobEvent::Finish(outcome)) => match outcome {
            JobOutcome::Passed => Passed,
            JobOutcome::Failed => Failed,
            JobOutcome::Errored => Errored,
            JobOutcome::Canceled => Canceled,
        },
        (Created | Queued, JobEvent::Cancel) => Canceled,
        (Created, JobEvent::Skip) => Canceled,
        (Running, JobEvent::LeaseExpired { requeue: true }) => Queued,
        (Running, JobEvent::LeaseExpired { requeue: false }) => Errored,
        (s, JobEvent::Restart) if s.is_finished() => Queued,
        _ => return Err(InvalidTransition { from, event }),
    };
    Ok(to)
}

/// What the build's state is given its jobs (Travis's rules): a required job
/// that errored makes the build errored, one that failed makes it failed,
/// one that was canceled (with no failure) makes it canceled;
/// jobs allowed to fail never decide it. With `fast_finish` the result is
/// known as soon as the required jobs are done, or one of them failed.
pub fn build_state(jobs: &[(JobState, bool)], fast_finish: bool) -> BuildState {
    if jobs.is_empty() {
        return BuildState::Skipped;
    }
    let required: Vec<JobState> = jobs
        .iter()
        .filter(|(_, allowed)| !allowed)
        .map(|(s, _)| *s)
        .collect();
    let all_finished = jobs.iter().all(|(s, _)| s.is_finished());
    let required_finished = required.iter().all(|s| s.is_finished());
    // A failure says more than a cancel: jobs canceled because an earlier
    // stage failed leave the build failed, as on Travis.
    let verdict = |states: &[JobState]| -> BuildState {
        if states.contains(&JobState::Errored) {
            BuildState::Errored
        } else if states.contains(&JobState::Failed) {
            BuildState::Failed
        } else if states.contains(&JobState::Canceled) {
            BuildState::Canceled
        } else {
            BuildState::Passed
        }
    };
    let required_broke = required
        .iter()
        .any(|s| matches!(s, JobState::Failed | JobState::Errored));
    if all_finished || (fast_finish && (required_finished || required_broke)) {
        // Only required jobs decide; a build of nothing but allowed failures passes.
        return verdict(&required);
    }
    if jobs
        .iter()
        .any(|(s, _)| !matches!(s, JobState::Created | JobState::Queued))
    {
        BuildState::Running
    } else {
        BuildState::Queued
    }
}

/// What to do with later stages once a stage's jobs are all finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageStep {
    /// Jobs of the stage are still running.
    Wait,
    /// Release the jobs of this stage.
    Release(i64),
    /// A required job failed: later stages do not run.
    Stop,
    /// Nothing more to run.
    Done,
}

/// Given `(stage_index, state, allow_failure)` of every job, what comes next.
pub fn stage_step(jobs: &[(i64, JobState, bool)]) -> StageStep {
    let Some(current) = jobs
        .iter()
        .filter(|(_, s, _)| *s != JobState::Created)
        .map(|(i, _, _)| *i)
        .max()
    else {
        return match jobs.iter().map(|(i, _, _)| *i).min() {
            Some(first) => StageStep::Release(first),
            None => StageStep::Done,
        };
    };
    let stage: Vec<&(i64, JobState, bool)> =
        jobs.iter().filter(|(i, _, _)| *i == current).collect();
    if !stage.iter().all(|(_, s, _)| s.is_finished()) {
        return StageStep::Wait;
    }
    if stage
        .iter()
        .any(|(_, s, allowed)| !allowed && !matches!(s, JobState::Passed | JobState::Skipped))
    {
        return if jobs.iter().any(|(_, s, _)| *s == JobState::Created) {
            StageStep::Stop
        } else {
            StageStep::Done
        };
    }
    match jobs
        .iter()
        .filter(|(i, s, _)| *i > current && *s == JobState::Created)
        .map(|(i, _, _)| *i)
        .min()
    {
        Some(next) => StageStep::Release(next),
        None => StageStep::Done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobState::*;

    type BuildCase<'a> = (&'a [(JobState, bool)], bool, BuildState);
    type StageCase<'a> = (&'a [(i64, JobState, bool)], StageStep);

    #[test]
    fn job_transitions_table() {
        let ok: &[(JobState, JobEvent, JobState)] = &[
            (Created, JobEvent::Release, Queued),
            (Queued, JobEvent::Claim, Running),
            (Running, JobEvent::Finish(JobOutcome::Passed), Passed),
            (Running, JobEvent::Finish(JobOutcome::Failed), Failed),
            (Running, JobEvent::Finish(JobOutcome::Errored), Errored),
            (Running, JobEvent::Finish(JobOutcome::Canceled), Canceled),
            (Created, JobEvent::Cancel, Canceled),
            (Queued, JobEvent::Cancel, Canceled),
            (Created, JobEvent::Skip, Canceled),
            (Running, JobEvent::LeaseExpired { requeue: true }, Queued),
            (Running, JobEvent::LeaseExpired { requeue: false }, Errored),
            (Passed, JobEvent::Restart, Queued),
            (Errored, JobEvent::Restart, Queued),
            (Canceled, JobEvent::Restart, Queued),
        ];
        for (from, event, to) in ok {
            assert_eq!(next(*from, *event), Ok(*to), "{from} + {event:?}");
        }
        let bad: &[(JobState, JobEvent)] = &[
            (Queued, JobEvent::Finish(JobOutcome::Passed)),
            (Created, JobEvent::Claim),
            (Running, JobEvent::Claim),
            (Passed, JobEvent::Cancel),
            (Running, JobEvent::Cancel),
            (Running, JobEvent::Restart),
            (Queued, JobEvent::LeaseExpired { requeue: true }),
            (Passed, JobEvent::Finish(JobOutcome::Failed)),
        ];
        for (from, event) in bad {
            assert!(
                next(*from, *event).is_err(),
                "{from} + {event:?} should be refused"
            );
        }
    }

    #[test]
    fn build_state_table() {
        let table: &[BuildCase] = &[
            (
                &[(Queued, false), (Created, false)],
                false,
                BuildState::Queued,
            ),
            (
                &[(Running, false), (Queued, false)],
                false,
                BuildState::Running,
            ),
            (
                &[(Passed, false), (Passed, false)],
                false,
                BuildState::Passed,
            ),
            (
                &[(Passed, false), (Failed, false)],
                false,
                BuildState::Failed,
            ),
            (
                &[(Errored, false), (Failed, false)],
                false,
                BuildState::Errored,
            ),
            (
                &[(Passed, false), (Failed, true)],
                false,
                BuildState::Passed,
            ),
            (
                &[(Passed, false), (Errored, true)],
                false,
                BuildState::Passed,
            ),
            (
                &[(Canceled, false), (Failed, false)],
                false,
                BuildState::Failed,
            ),
            (
                &[(Canceled, false), (Passed, false)],
                false,
                BuildState::Canceled,
            ),
            (
                &[(Failed, false), (Running, false)],
                false,
                BuildState::Running,
            ),
            (
                &[(Failed, false), (Running, false)],
                true,
                BuildState::Failed,
            ),
            (
                &[(Passed, false), (Running, true)],
                false,
                BuildState::Running,
            ),
            (
                &[(Passed, false), (Running, true)],
                true,
                BuildState::Passed,
            ),
            (&[(Failed, true)], false, BuildState::Passed),
            (&[], false, BuildState::Skipped),
        ];
        for (jobs, fast_finish, want) in table {
            assert_eq!(
                build_state(jobs, *fast_finish),
                *want,
                "{jobs:?} fast_finish={fast_finish}"
            );
        }
    }

    #[test]
    fn stages_release_in_order_and_stop_on_failure() {
        let table: &[StageCase] = &[
            (
                &[(0, Created, false), (1, Created, false)],
                StageStep::Release(0),
            ),
            (&[(0, Running, false), (1, Created, false)], StageStep::Wait),
            (
                &[(0, Passed, false), (0, Failed, true), (1, Created, false)],
                StageStep::Release(1),
            ),
            (
                &[(0, Passed, false), (0, Failed, false), (1, Created, false)],
                StageStep::Stop,
            ),
            (
                &[(0, Passed, false), (2, Created, false)],
                StageStep::Release(2),
            ),
            (&[(0, Passed, false), (1, Passed, false)], StageStep::Done),
            (&[(0, Failed, false)], StageStep::Done),
            (&[], StageStep::Done),
        ];
        for (jobs, want) in table {
            assert_eq!(stage_step(jobs), *want, "{jobs:?}");
        }
    }
}
