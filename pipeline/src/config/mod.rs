//! The pipeline file as written: every key read into a typed value, every
//! problem reported with its position. `Config` is the only way in; jobs are
//! made from it by [`crate::plan`].

pub mod addons;
pub mod artifacts;
pub mod branches;
pub mod cache;
pub mod deploy;
pub mod env;
pub mod image;
pub mod job;
pub mod notifications;
pub mod phase;
pub mod service;

use crate::decode::{Cond, Decoder};
use crate::diagnostic::Diagnostics;
use crate::yaml::{Node, NodeKind};
use branches::Branches;
use env::RootEnv;
use job::{JobConfig, Level};

/// A stage from `stages:`, with its optional condition.
#[derive(Debug, Clone)]
pub struct StageConfig {
    pub name: String,
    pub condition: Option<Cond>,
}

/// A `jobs.exclude` or `jobs.allow_failures` entry: the attributes a job must match.
#[derive(Debug, Clone)]
pub struct JobRule {
    pub attributes: JobConfig,
}

#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Root-level job keys: shared by every job.
    pub root: JobConfig,
    pub env: RootEnv,
    pub stages: Vec<StageConfig>,
    pub include: Vec<JobConfig>,
    pub exclude: Vec<JobRule>,
    pub allow_failures: Vec<JobRule>,
    pub fast_finish: bool,
    pub branches: Option<Branches>,
    /// Root `if:`: whether the build runs at all.
    pub condition: Option<Cond>,
    pub notifications: notifications::Notifications,
}

const ROOT_ONLY_KEYS: &[&str] = &[
    "stages",
    "jobs",
    "matrix",
    "branches",
    "if",
    "conditions",
    "version",
    "import",
    "notifications",
    "env",
];
const JOBS_KEYS: &[&str] = &["include", "exclude", "allow_failures", "fast_finish"];

/// Reads the root mapping of a pipeline file.
pub fn decode(d: &mut Decoder, root: &Node) -> Config {
    let mut config = Config {
        root: JobConfig {
            span: root.span,
            ..Default::default()
        },
        ..Default::default()
    };
    if root.as_map().is_none() {
        d.diags
            .error(
                root.span,
                format!(
                    "a pipeline file must be a map of keys, found {}",
                    root.describe()
                ),
            )
            .hint("start with `language: …` or `image: …` and a `script:`");
        return config;
    }
    let mut known: Vec<&str> = job::known_job_keys();
    known.extend(ROOT_ONLY_KEYS);
    for (key, value, span) in d.entries(root, "the pipeline") {
        match key {
            "env" => config.env = env::root(d, value),
            "stages" => config.stages = stages(d, value),
            "jobs" | "matrix" => jobs(d, value, &mut config),
            "branches" | "branch" => config.branches = Some(branches::decode(d, value)),
            "if" => config.condition = d.condition(value, "if"),
            "conditions" => {
                if value.key_text() == Some("v0") {
                    d.diags.warning(
                        value.span,
                        "`conditions: v0` is not supported; conditions are read as v1",
                    );
                }
            }
            "version" => {}
            // Read and merged before (`crate::import`).
            "import" => {}
            "notifications" => config.notifications = notifications::decode(d, value),
            "name" => {
                d.diags.warning(
                    span,
                    "a root `name` names nothing; name jobs in `jobs.include`",
                );
            }
            _ => {
                if !job::decode_key(d, &mut config.root, key, value, span, Level::Root) {
                    d.unknown_key(key, span, &known, "the pipeline");
                }
            }
        }
    }
    config
}

fn stages(d: &mut Decoder, node: &Node) -> Vec<StageConfig> {
    let Some(items) = node.as_seq() else {
        d.type_error(node, "stages", "a list of stage names");
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        match &item.kind {
            NodeKind::Map(_) => {
                let mut name = None;
                let mut condition = None;
                for (key, value, span) in d.entries(item, "stages") {
                    match key {
                        "name" => name = d.string(value, "name").map(|s| s.value),
                        "if" => condition = d.condition(value, "if"),
                        other => d.unknown_key(other, span, &["name", "if"], "a stage"),
                    }
                }
                match name {
                    Some(name) => out.push(StageConfig { name, condition }),
                    None => {
                        d.diags.error(item.span, "a stage needs a `name`");
                    }
                }
            }
            _ => {
                if let Some(name) = d.string(item, "stages") {
                    out.push(StageConfig {
                        name: name.value,
                        condition: None,
                    });
                }
            }
        }
    }
    out
}

fn rules(d: &mut Decoder, node: &Node, key: &str) -> Vec<JobRule> {
    let Some(items) = node.as_seq() else {
        d.type_error(node, key, "a list of job attributes");
        return Vec::new();
    };
    items
        .iter()
        .map(|item| JobRule {
            attributes: job::decode_job(d, item, Level::Rule, &format!("a `{key}` entry")),
        })
        .collect()
}

/// `jobs.include`'s entries. An empty one (`-` alone) is no job: Travis
/// reads only maps there, and its docs once showed `-` where `- {}` (a job
/// of the root's keys alone) was meant (docs-travis-ci-com#2655).
fn included<'n>(d: &mut Decoder, items: impl Iterator<Item = &'n Node>) -> Vec<JobConfig> {
    let mut jobs = Vec::new();
    for item in items {
        if item.is_null() {
            d.diags.warning(
                item.span,
                "an empty `jobs.include` entry adds no job; write `- {}` for a job with the root's keys alone",
            );
        } else {
            jobs.push(job::decode_job(d, item, Level::Include, "a job"));
        }
    }
    jobs
}

fn jobs(d: &mut Decoder, node: &Node, config: &mut Config) {
    // `jobs: [...]` is a list of included jobs.
    if let NodeKind::Seq(items) = &node.kind {
        config.include = included(d, items.iter());
        return;
    }
    for (key, value, span) in d.entries(node, "jobs") {
        match key {
            "include" => {
                let items: Vec<&Node> = match &value.kind {
                    NodeKind::Seq(items) => items.iter().collect(),
                    NodeKind::Map(_) => vec![value],
                    _ => {
                        d.type_error(value, "jobs.include", "a list of jobs");
                        continue;
                    }
                };
                config.include = included(d, items.into_iter());
            }
            "exclude" => config.exclude = rules(d, value, "exclude"),
            "allow_failures" | "allowed_failures" => {
                config.allow_failures = rules(d, value, "allow_failures")
            }
            "fast_finish" | "fast_failure" => {
                config.fast_finish = d.bool(value, key).unwrap_or(false)
            }
            other => d.unknown_key(other, span, JOBS_KEYS, "`jobs`"),
        }
    }
}

/// Parses a whole file into a `Config`, collecting every problem.
/// Reads the YAML of a pipeline file (`file` 0) or of an imported one
/// (its number), its nodes' spans marked with `file`.
pub fn load(source: &str, diags: &mut Diagnostics, file: u16) -> Option<Node> {
    let in_file = |span: crate::diagnostic::Span| crate::diagnostic::Span { file, ..span };
    match crate::yaml::load(source) {
        Ok(Some(mut root)) => {
            root.in_file(file);
            Some(root)
        }
        Ok(None) if file == 0 => {
            diags
                .error(
                    crate::diagnostic::Span::new(1, 1),
                    "the pipeline file is empty",
                )
                .hint("add at least `script:` with the commands that test your project");
            None
        }
        Ok(None) => {
            diags
                .error(
                    in_file(crate::diagnostic::Span::new(1, 1)),
                    "the imported file is empty",
                )
                .hint("remove the import, or put the shared keys in it");
            None
        }
        Err(e) => {
            diags.error(in_file(e.span), format!("YAML syntax error: {}", e.message));
            None
        }
    }
}
