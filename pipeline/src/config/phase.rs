//! The Travis lifecycle phases and their commands.

use crate::decode::Decoder;
use crate::yaml::{Node, NodeKind};
use serde::{Deserialize, Serialize};

/// Lifecycle phases in the order Travis runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    BeforeInstall,
    Install,
    BeforeScript,
    Script,
    BeforeCache,
    AfterSuccess,
    AfterFailure,
    BeforeDeploy,
    AfterDeploy,
    AfterScript,
}

impl Phase {
    pub const ALL: [Phase; 10] = [
        Phase::BeforeInstall,
        Phase::Install,
        Phase::BeforeScript,
        Phase::Script,
        Phase::BeforeCache,
        Phase::AfterSuccess,
        Phase::AfterFailure,
        Phase::BeforeDeploy,
        Phase::AfterDeploy,
        Phase::AfterScript,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Phase::BeforeInstall => "before_install",
            Phase::Install => "install",
            Phase::BeforeScript => "before_script",
            Phase::Script => "script",
            Phase::BeforeCache => "before_cache",
            Phase::AfterSuccess => "after_success",
            Phase::AfterFailure => "after_failure",
            Phase::BeforeDeploy => "before_deploy",
            Phase::AfterDeploy => "after_deploy",
            Phase::AfterScript => "after_script",
        }
    }

    pub fn from_key(key: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.key() == key)
    }

    /// What a failing command in this phase does to the job (Travis semantics).
    pub fn on_failure(self) -> FailureEffect {
        match self {
            Phase::BeforeInstall | Phase::Install | Phase::BeforeScript | Phase::BeforeDeploy => {
                FailureEffect::Errored
            }
            Phase::Script => FailureEffect::Failed,
            _ => FailureEffect::Ignored,
        }
    }
}

/// How a failing command changes the job's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureEffect {
    /// The job is errored and stops at once.
    Errored,
    /// The job is failed; the phase's remaining commands still run.
    Failed,
    /// The result is unchanged.
    Ignored,
}

/// A phase's commands: a string, a list, or `skip` to switch a default off.
/// `None` for null (the default applies).
pub fn commands(d: &mut Decoder, node: &Node, key: &str) -> Option<Vec<String>> {
    let list = match &node.kind {
        NodeKind::Scalar(s) if s.is_null() => return None,
        _ => d.strings(node, key)?,
    };
    let commands: Vec<String> = list.into_iter().map(|s| s.value).collect();
    if commands.len() == 1 && matches!(commands[0].trim(), "skip" | "ignore") {
        return Some(Vec::new());
    }
    Some(commands)
}
