//! Keys that describe a job: allowed at the root (shared by every job) and in
//! `jobs.include`, `jobs.exclude` and `jobs.allow_failures` entries.

use super::deploy::{self, Deploy};
use super::env::{self, EnvEntry};
use super::image::{self, ImagePush, ImageSpec};
use super::phase::{self, Phase};
use super::service::{self, ServiceRequest};
use crate::catalog;
use crate::decode::{Cond, Decoder, Spanned};
use crate::diagnostic::Span;
use crate::yaml::{Node, NodeKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `git:` clone options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitOptions {
    /// Clone depth; `None` clones the whole history (`depth: false`).
    pub depth: Option<u32>,
    pub submodules: bool,
    pub quiet: bool,
    pub lfs_skip_smudge: bool,
}

impl Default for GitOptions {
    fn default() -> Self {
        GitOptions {
            depth: Some(50),
            submodules: true,
            quiet: false,
            lfs_skip_smudge: false,
        }
    }
}

/// Where a job's keys are written; some keys mean different things at the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Root,
    Include,
    /// `jobs.exclude` / `jobs.allow_failures`: attributes to match.
    Rule,
}

/// A job's keys as written; every field is optional so an include can inherit from the root.
#[derive(Debug, Clone, Default)]
pub struct JobConfig {
    pub span: Span,
    pub language: Option<Spanned<String>>,
    /// Matrix keys in file order: version keys (`node_js`, `rvm`, `jdk`, …), `os`, `arch`.
    pub axes: Vec<(String, Spanned<Vec<String>>)>,
    pub dist: Option<String>,
    pub sudo: Option<String>,
    pub group: Option<String>,
    pub phases: BTreeMap<Phase, Vec<String>>,
    pub env: Option<Vec<EnvEntry>>,
    pub services: Option<Vec<ServiceRequest>>,
    pub deploy: Option<Vec<Deploy>>,
    pub images: Option<Vec<ImagePush>>,
    pub image: Option<ImageSpec>,
    pub timeout_minutes: Option<u32>,
    pub git: Option<GitOptions>,
    /// `cache:` directories; `Some(empty)` is `cache: false`.
    pub cache: Option<Vec<String>>,
    /// `addons:` (apt packages, service versions).
    pub addons: Option<super::addons::Addons>,
    pub name: Option<String>,
    pub stage: Option<Spanned<String>>,
    pub condition: Option<Cond>,
    pub allow_failure: Option<bool>,
}

impl JobConfig {
    pub fn axis(&self, key: &str) -> Option<&Spanned<Vec<String>>> {
        self.axes.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// This job's keys over `base`'s: what an include inherits from the root.
    pub fn over(&self, base: &JobConfig) -> JobConfig {
        let mut phases = base.phases.clone();
        phases.extend(self.phases.clone());
        let mut axes = base.axes.clone();
        for (key, values) in &self.axes {
            match axes.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1 = values.clone(),
                None => axes.push((key.clone(), values.clone())),
            }
        }
        JobConfig {
            span: self.span,
            language: self.language.clone().or_else(|| base.language.clone()),
            axes,
            dist: self.dist.clone().or_else(|| base.dist.clone()),
            sudo: self.sudo.clone().or_else(|| base.sudo.clone()),
            group: self.group.clone().or_else(|| base.group.clone()),
            phases,
            env: self.env.clone().or_else(|| base.env.clone()),
            services: self.services.clone().or_else(|| base.services.clone()),
            deploy: self.deploy.clone().or_else(|| base.deploy.clone()),
            images: self.images.clone().or_else(|| base.images.clone()),
            image: self.image.clone().or_else(|| base.image.clone()),
            timeout_minutes: self.timeout_minutes.or(base.timeout_minutes),
            git: self.git.clone().or_else(|| base.git.clone()),
            cache: self.cache.clone().or_else(|| base.cache.clone()),
            addons: self.addons.clone().or_else(|| base.addons.clone()),
            name: self.name.clone(),
            stage: self.stage.clone(),
            condition: self.condition.clone(),
            allow_failure: self.allow_failure,
        }
    }
}

/// Keys Travis documents that Gantry reads but has no use for; accepted silently.
const SILENT_KEYS: &[&str] = &[
    "sudo",
    "dist",
    "group",
    "stack",
    "go_import_path",
    "gobuild_args",
    "bundler_args",
    "virtualenv",
    "filter_secrets",
    "source_key",
    "solution",
];

/// Keys Travis documents that Gantry does not support: a warning with advice.
fn unsupported(key: &str) -> Option<(&'static str, &'static str)> {
    Some(match key {
        "workspaces" => (
            "`workspaces` are not supported; jobs share nothing",
            "pass files between stages through S3 or an image",
        ),
        "osx_image" | "xcode_project" | "xcode_workspace" | "xcode_scheme" | "xcode_sdk"
        | "xcode_destination" | "podfile" => (
            "macOS keys are not supported; Gantry runs Linux containers",
            "remove it, or keep it for Travis only",
        ),
        "android" => (
            "`android` is not supported",
            "use an Android SDK image with `image:`",
        ),
        "arch" => return None,
        _ => return None,
    })
}

/// Every key a job may have, for "did you mean" hints.
pub fn known_job_keys() -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = vec![
        "language",
        "os",
        "arch",
        "env",
        "services",
        "deploy",
        "images",
        "image",
        "timeout",
        "git",
        "cache",
        "name",
        "stage",
        "if",
        "allow_failure",
        "addons",
        "workspaces",
    ];
    keys.extend(Phase::ALL.iter().map(|p| p.key()));
    keys.extend(SILENT_KEYS);
    keys.extend(catalog::all_version_keys());
    keys
}

/// Axes besides language versions that expand the matrix.
const PLATFORM_AXES: &[&str] = &["os", "arch"];

/// The other names Travis takes for a version key (travis-yml's schema;
/// travis-build's `deploy.on` runtimes `ruby` and `node`): `rbenv: 2.5.3`
/// is `rvm: 2.5.3`, and so on.
pub(crate) fn version_key_alias(key: &str) -> &str {
    match key {
        "ruby" | "rbenv" => "rvm",
        "gemfiles" => "gemfile",
        "node" => "node_js",
        other => other,
    }
}

/// Reads one key into `job`; returns false when `key` is not a job key.
pub fn decode_key(
    d: &mut Decoder,
    job: &mut JobConfig,
    key: &str,
    value: &Node,
    span: Span,
    level: Level,
) -> bool {
    if let Some(phase) = Phase::from_key(key) {
        if let Some(commands) = phase::commands(d, value, key) {
            job.phases.insert(phase, commands);
        }
        return true;
    }
    let axis_key = version_key_alias(key);
    if PLATFORM_AXES.contains(&axis_key) || catalog::all_version_keys().any(|k| k == axis_key) {
        if let Some(values) = d.strings(value, key) {
            if values.is_empty() {
                return true;
            }
            if level != Level::Root && values.len() > 1 {
                d.diags.warning(
                    value.span,
                    format!("a job takes one `{key}`; the first value is used"),
                );
            }
            let keep = if level == Level::Root {
                values.len()
            } else {
                1
            };
            let list: Vec<String> = values.into_iter().take(keep).map(|s| s.value).collect();
            job.axes.retain(|(k, _)| k != axis_key);
            job.axes.push((
                axis_key.to_string(),
                Spanned {
                    value: list,
                    span: value.span,
                },
            ));
        }
        return true;
    }
    match key {
        "language" => {
            if let Some(lang) = d.string(value, key) {
                if catalog::unsupported_language(&lang.value) {
                    d.diags
                        .warning(lang.span, format!("language `{}` needs macOS or a VM; its jobs run as `shell` in a Linux container", lang.value))
                        .hint("set `image:` to an image with the tools you need");
                } else if catalog::language(&lang.value).is_none() {
                    d.diags
                        .warning(
                            lang.span,
                            format!("unknown language `{}`; its jobs run as `shell`", lang.value),
                        )
                        .hint("set `image:` to the image your build needs");
                }
                job.language = Some(lang);
            }
        }
        "dist" => job.dist = d.string(value, key).map(|s| s.value),
        "sudo" => job.sudo = value.as_scalar().map(|s| s.text.clone()),
        "group" => job.group = d.string(value, key).map(|s| s.value),
        "env" => {
            if level != Level::Root {
                job.env = Some(env::job(d, value));
            }
        }
        "services" => job.services = Some(service::requests(d, value)),
        "deploy" => {
            let keys: Vec<&str> = catalog::all_version_keys().collect();
            job.deploy = Some(deploy::deploys(d, value, &keys));
        }
        "images" => job.images = Some(image::pushes(d, value)),
        "image" => job.image = image::image(d, value),
        "timeout" => job.timeout_minutes = timeout(d, value),
        "git" => job.git = Some(git(d, value)),
        "cache" => job.cache = Some(super::cache::cache(d, value)),
        "addons" => job.addons = Some(super::addons::addons(d, value)),
        "name" if level != Level::Root => job.name = d.string(value, key).map(|s| s.value),
        "stage" if level != Level::Root => job.stage = d.string(value, key),
        "if" if level != Level::Root => job.condition = d.condition(value, key),
        "allow_failure" if level != Level::Root => job.allow_failure = d.bool(value, key),
        k if SILENT_KEYS.contains(&k) => {}
        k => match unsupported(k) {
            Some((message, hint)) => {
                d.diags.warning(span, message).hint(hint);
            }
            None => return false,
        },
    }
    true
}

/// `timeout:` in minutes (`90`) or with a unit (`90m`, `2h`, `1h30m`).
fn timeout(d: &mut Decoder, node: &Node) -> Option<u32> {
    let text = d.string(node, "timeout")?;
    let minutes = parse_minutes(&text.value);
    match minutes {
        Some(m) if (1..=24 * 60).contains(&m) => Some(m),
        Some(_) => {
            d.diags
                .error(node.span, "`timeout` must be between 1 minute and 24 hours");
            None
        }
        None => {
            d.diags
                .error(
                    node.span,
                    format!(
                        "`timeout` must be minutes or a duration like 90m or 1h30m, found `{}`",
                        text.value
                    ),
                )
                .hint("timeout: 90m");
            None
        }
    }
}

fn parse_minutes(text: &str) -> Option<u32> {
    let text = text.trim();
    if let Ok(m) = text.parse::<u32>() {
        return Some(m);
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut any = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number.parse().ok()?;
        number.clear();
        total += match c {
            'h' => n * 60,
            'm' => n,
            _ => return None,
        };
        any = true;
    }
    if !number.is_empty() || !any {
        return None;
    }
    u32::try_from(total).ok()
}

fn git(d: &mut Decoder, node: &Node) -> GitOptions {
    let mut git = GitOptions::default();
    for (key, value, span) in d.entries(node, "git") {
        match key {
            "depth" => {
                let is_false = value.as_scalar().and_then(|s| s.as_bool()) == Some(false);
                git.depth = if is_false {
                    None
                } else {
                    d.number(value, "git.depth", 1, 1_000_000)
                        .map(|n| n as u32)
                        .or(git.depth)
                };
            }
            "submodules" => git.submodules = d.bool(value, "git.submodules").unwrap_or(true),
            "quiet" => git.quiet = d.bool(value, "git.quiet").unwrap_or(false),
            "lfs_skip_smudge" => {
                git.lfs_skip_smudge = d.bool(value, "git.lfs_skip_smudge").unwrap_or(false)
            }
            "submodules_depth" | "clone" | "sparse_checkout" | "autocrlf" | "symlinks" => {
                d.diags
                    .warning(span, format!("`git.{key}` is not supported; it is ignored"));
            }
            other => d.unknown_key(
                other,
                span,
                &["depth", "submodules", "quiet", "lfs_skip_smudge"],
                "`git`",
            ),
        }
    }
    git
}

/// Reads a job map (`jobs.include` entry, or rule) with every key.
pub fn decode_job(d: &mut Decoder, node: &Node, level: Level, context: &str) -> JobConfig {
    let mut job = JobConfig {
        span: node.span,
        ..Default::default()
    };
    if let NodeKind::Map(_) = node.kind {
        let known = known_job_keys();
        for (key, value, span) in d.entries(node, context) {
            if !decode_key(d, &mut job, key, value, span, level) {
                d.unknown_key(key, span, &known, context);
            }
        }
    } else {
        d.type_error(node, context, "a map of job keys");
    }
    job
}

#[cfg(test)]
mod tests {
    use super::parse_minutes;

    #[test]
    fn timeouts_read_minutes_and_units() {
        assert_eq!(parse_minutes("90"), Some(90));
        assert_eq!(parse_minutes("90m"), Some(90));
        assert_eq!(parse_minutes("2h"), Some(120));
        assert_eq!(parse_minutes("1h30m"), Some(90));
        assert_eq!(parse_minutes("soon"), None);
        assert_eq!(parse_minutes("30s"), None);
    }
}
