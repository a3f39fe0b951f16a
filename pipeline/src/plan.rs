//! From a `Config` and a build to the jobs that run: build conditions, matrix
//! expansion, `include`/`exclude`/`allow_failures`, stages, `if:` and defaults,
//! following Travis's documented rules.

use crate::catalog::{self, Catalog};
use crate::condition::Facts;
use crate::config::env::{EnvEntry, EnvVar};
use crate::config::image::ImageSpec;
use crate::config::job::JobConfig;
use crate::config::notifications::irc::Irc;
use crate::config::notifications::slack::Slack;
use crate::config::notifications::{Email, Webhook};
use crate::config::phase::Phase;
use crate::config::service::{self, ServiceRequest};
use crate::config::{Config, JobRule};
use crate::context::BuildContext;
use crate::decode::Cond;
use crate::diagnostic::{Diagnostic, Diagnostics, Span};
use crate::job::{Job, SkippedJob};
use std::collections::BTreeMap;

/// Travis's limit; a larger matrix is almost always a mistake.
pub const MAX_JOBS: usize = 200;
pub const DEFAULT_STAGE: &str = "test";
pub const DEFAULT_TIMEOUT_MINUTES: u32 = 60;

/// What a build of this pipeline consists of.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Set when the build does not run at all (`branches`, root `if:`), with the reason.
    pub rejected: Option<String>,
    /// Stage names in run order; each has at least one job.
    pub stages: Vec<String>,
    /// Jobs in stage order, numbered from 1.
    pub jobs: Vec<Job>,
    pub skipped: Vec<SkippedJob>,
    pub fast_finish: bool,
    /// The webhooks told of this build: those whose `if:` holds. None for
    /// a pull request from a fork: its pipeline file is the fork author's,
    /// and would have the server post wherever they like, with the
    /// repository's secrets in the URL.
    pub webhooks: Vec<Webhook>,
    /// The email notifications of this build, when its `if:` holds. None
    /// for every pull request, as on Travis: a pull request's author hears
    /// of it on GitHub, and a fork's file would pick the recipients.
    pub email: Option<Email>,
    /// The Slack rooms told of this build: those whose `if:` holds, none
    /// for a pull request from a fork (its file would pick the room and
    /// read the repository's secrets), and for other pull requests those
    /// with `on_pull_requests` (Travis's default).
    pub slack: Vec<Slack>,
    /// The IRC channels told of this build: those whose `if:` holds, none
    /// for a pull request from a fork (as for Slack).
    pub irc: Vec<Irc>,
    /// Problems found while expanding (too many jobs, a job without script).
    pub diagnostics: Vec<Diagnostic>,
}

impl Plan {
    pub fn jobs_in_stage<'a>(&'a self, stage: &'a str) -> impl Iterator<Item = &'a Job> + 'a {
        self.jobs
            .iter()
            .filter(move |j| j.stage.eq_ignore_ascii_case(stage))
    }
}

/// One matrix row: a value per matrix key, and the `env` entry of the row.
type Row<'a> = (Vec<(String, String)>, Option<&'a EnvEntry>);

/// A job on its way: its merged keys and the matrix env entry it came from.
struct Candidate {
    cfg: JobConfig,
    env_entries: Vec<EnvEntry>,
    stage: String,
    /// Which axes the root matrix gave it, for the generated name.
    expanded: Vec<String>,
}

fn env_pairs(vars: &[EnvVar]) -> Vec<(String, String)> {
    vars.iter()
        .map(|v| (v.name.clone(), v.value.clone()))
        .collect()
}

fn holds(cond: &Option<Cond>, facts: &Facts<'_>) -> bool {
    cond.as_ref().is_none_or(|c| c.condition.eval(facts))
}

fn axis_value<'a>(cfg: &'a JobConfig, key: &str) -> Option<&'a str> {
    cfg.axis(key)
        .and_then(|v| v.value.first())
        .map(String::as_str)
}

fn job_facts<'a>(
    build: &'a BuildContext,
    cfg: &'a JobConfig,
    env: &'a [(String, String)],
) -> Facts<'a> {
    Facts {
        build,
        env,
        os: axis_value(cfg, "os"),
        language: cfg.language.as_ref().map(|l| l.value.as_str()),
        dist: cfg.dist.as_deref(),
        sudo: cfg.sudo.as_deref(),
        group: cfg.group.as_deref(),
    }
}

fn env_source(entries: &[EnvEntry]) -> String {
    entries
        .iter()
        .map(|e| e.source.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether a job matches every attribute a rule names (Travis's exact match).
fn rule_matches(
    rule: &JobRule,
    job: &Candidate,
    build: &BuildContext,
    global: &[(String, String)],
) -> bool {
    let want = &rule.attributes;
    let mut named_any = false;
    if let Some(name) = &want.name {
        named_any = true;
        if job.cfg.name.as_deref() != Some(name.as_str()) {
            return false;
        }
    }
    if let Some(stage) = &want.stage {
        named_any = true;
        if !stage.value.eq_ignore_ascii_case(&job.stage) {
            return false;
        }
    }
    if let Some(env) = &want.env {
        named_any = true;
        if env_source(env) != env_source(&job.env_entries) {
            return false;
        }
    }
    if let Some(lang) = &want.language {
        named_any = true;
        if job.cfg.language.as_ref().map(|l| &l.value) != Some(&lang.value) {
            return false;
        }
    }
    if let Some(dist) = &want.dist {
        named_any = true;
        if job.cfg.dist.as_ref() != Some(dist) {
            return false;
        }
    }
    for (key, values) in &want.axes {
        named_any = true;
        if axis_value(&job.cfg, key) != values.value.first().map(String::as_str) {
            return false;
        }
    }
    if let Some(cond) = &want.condition {
        let mut env = global.to_vec();
        env.extend(job.env_entries.iter().flat_map(|e| env_pairs(&e.vars)));
        if !cond.condition.eval(&job_facts(build, &job.cfg, &env)) {
            return false;
        }
        named_any = true;
    }
    named_any
}

/// Expands the pipeline for one build.
pub fn plan(config: &Config, build: &BuildContext, catalog: &Catalog) -> Plan {
    let mut diags = Diagnostics::new();
    let global_vars: Vec<EnvVar> = config
        .env
        .global
        .iter()
        .flat_map(|e| e.vars.clone())
        .collect();
    let global = env_pairs(&global_vars);
    let global_secure = config.env.global.iter().any(|e| e.secure);
    let mut plan = Plan {
        fast_finish: config.fast_finish,
        ..Default::default()
    };

    // 1. Does the build run at all?
    if let Some(branches) = &config.branches {
        if let Err(reason) = branches.allows(build) {
            plan.rejected = Some(reason);
            return plan;
        }
    }
    if let Some(cond) = &config.condition {
        if !cond.condition.eval(&Facts::build(build, &global)) {
            plan.rejected = Some(format!(
                "the build's condition `if: {}` is false",
                cond.source
            ));
            return plan;
        }
    }

    // 2. Expand the root matrix: language version keys, os, arch, then env.
    let root_language = config
        .root
        .language
        .as_ref()
        .map(|l| l.value.as_str())
        .unwrap_or("ruby");
    let lang_keys: &[&str] = catalog::language(root_language)
        .map(|l| l.version_keys)
        .unwrap_or(&[]);
    let mut axes: Vec<(String, Vec<String>)> = Vec::new();
    for (key, values) in &config.root.axes {
        let platform = key == "os" || key == "arch";
        if platform || lang_keys.contains(&key.as_str()) {
            axes.push((key.clone(), values.value.clone()));
        } else {
            diags.warning(
                values.span,
                format!("`{key}` is not used by language `{root_language}`; it is ignored"),
            );
        }
    }
    let mut rows: Vec<Row> = vec![(Vec::new(), None)];
    for (key, values) in &axes {
        rows = rows
            .into_iter()
            .flat_map(|(row, env)| {
                values.iter().map(move |v| {
                    let mut row = row.clone();
                    row.push((key.clone(), v.clone()));
                    (row, env)
                })
            })
            .collect();
    }
    if !config.env.matrix.is_empty() {
        rows = rows
            .into_iter()
            .flat_map(|(row, _)| {
                config
                    .env
                    .matrix
                    .iter()
                    .map(move |e| (row.clone(), Some(e)))
            })
            .collect();
    }
    if rows.len() == 1 && !config.include.is_empty() {
        // A root that expands to one job (no matrix key, or each with one
        // value) beside `jobs.include` describes no job of its own: its
        // values reach the included jobs. travis-yml drops it as "probably
        // an unnecessary duplicate" (`single_matrix_job_expanded?`).
        rows.clear();
    }

    let mut candidates: Vec<Candidate> = Vec::new();
    for (row, env) in rows {
        let mut cfg = config.root.clone();
        cfg.axes = row
            .iter()
            .map(|(k, v)| (k.clone(), spanned(vec![v.clone()], config.root.span)))
            .collect();
        let expanded: Vec<String> = row.iter().map(|(k, _)| k.clone()).collect();
        candidates.push(Candidate {
            cfg,
            env_entries: env.cloned().into_iter().collect(),
            stage: DEFAULT_STAGE.to_string(),
            expanded,
        });
    }

    // 3. Exclude matrix rows (includes are never excluded).
    candidates.retain(|c| {
        !config
            .exclude
            .iter()
            .any(|rule| rule_matches(rule, c, build, &global))
    });

    // 4. Included jobs inherit the root's keys and the first value of each matrix key.
    let mut previous_stage = candidates
        .last()
        .map(|c| c.stage.clone())
        .unwrap_or_else(|| DEFAULT_STAGE.to_string());
    if !config.include.is_empty() {
        previous_stage = DEFAULT_STAGE.to_string();
    }
    let mut first_values = config.root.clone();
    first_values.axes = axes
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                spanned(v.iter().take(1).cloned().collect(), config.root.span),
            )
        })
        .collect();
    for include in &config.include {
        let cfg = include.over(&first_values);
        let env_entries = match &include.env {
            Some(own) => own.clone(),
            None => config.env.matrix.first().cloned().into_iter().collect(),
        };
        let stage = include
            .stage
            .as_ref()
            .map(|s| s.value.clone())
            .unwrap_or_else(|| previous_stage.clone());
        previous_stage = stage.clone();
        candidates.push(Candidate {
            cfg,
            env_entries,
            stage,
            expanded: Vec::new(),
        });
    }

    // 5. Stage order: `stages:` first, then stages in order of appearance.
    let mut stage_order: Vec<String> = config.stages.iter().map(|s| s.name.clone()).collect();
    for c in &candidates {
        if !stage_order.iter().any(|s| s.eq_ignore_ascii_case(&c.stage)) {
            stage_order.push(c.stage.clone());
        }
    }
    let stage_index = |name: &str| {
        stage_order
            .iter()
            .position(|s| s.eq_ignore_ascii_case(name))
            .unwrap_or(usize::MAX)
    };
    candidates.sort_by_key(|c| stage_index(&c.stage));

    // 6. Conditions, platforms, defaults.
    for c in candidates {
        let env_vars: Vec<EnvVar> = global_vars
            .iter()
            .cloned()
            .chain(c.env_entries.iter().flat_map(|e| e.vars.clone()))
            .collect();
        let env = env_pairs(&env_vars);
        let name = job_name(&c);
        let skip = |reason: String| SkippedJob {
            name: name.clone(),
            stage: c.stage.clone(),
            reason,
        };
        let facts = job_facts(build, &c.cfg, &env);
        let stage_cfg = config
            .stages
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(&c.stage));
        if let Some(cond) = stage_cfg.and_then(|s| s.condition.as_ref()) {
            if !cond.condition.eval(&facts) {
                plan.skipped.push(skip(format!(
                    "stage {} has `if: {}`, which is false",
                    c.stage, cond.source
                )));
                continue;
            }
        }
        if !holds(&c.cfg.condition, &facts) {
            let source = c
                .cfg
                .condition
                .as_ref()
                .map(|k| k.source.as_str())
                .unwrap_or("");
            plan.skipped.push(skip(format!("`if: {source}` is false")));
            continue;
        }
        let os = axis_value(&c.cfg, "os").unwrap_or("linux");
        if os != "linux" {
            plan.skipped.push(skip(format!(
                "os: {os} is not supported; Gantry runs Linux containers"
            )));
            continue;
        }
        let arch = axis_value(&c.cfg, "arch").unwrap_or("amd64");
        if !matches!(arch, "amd64" | "x86_64") {
            plan.skipped.push(skip(format!(
                "arch: {arch} is not supported; Gantry runs amd64 containers"
            )));
            continue;
        }
        let allow_failure = c.cfg.allow_failure.unwrap_or(false)
            || config
                .allow_failures
                .iter()
                .any(|rule| rule_matches(rule, &c, build, &global));
        let secure_env = global_secure || c.env_entries.iter().any(|e| e.secure);
        let mut job = finish(c, name, env_vars, allow_failure, catalog, &mut diags);
        job.secure_env = secure_env;
        // The same job twice (an include that repeats a matrix row) runs
        // once, as travis-yml's `jobs.uniq` has it; where each was written
        // does not make them two.
        let line = job.line;
        let seen = plan.jobs.iter().any(|j| {
            job.line = j.line;
            *j == job
        });
        job.line = line;
        if !seen {
            plan.jobs.push(job);
        }
    }

    if plan.jobs.len() > MAX_JOBS {
        diags
            .error(
                config.root.span,
                format!(
                    "the build has {} jobs; at most {MAX_JOBS} are allowed",
                    plan.jobs.len()
                ),
            )
            .hint("use `jobs.exclude` or fewer values in the matrix keys");
    }
    for (i, job) in plan.jobs.iter_mut().enumerate() {
        job.number = u32::try_from(i + 1).unwrap_or(u32::MAX);
    }
    plan.stages = stage_order
        .into_iter()
        .filter(|s| plan.jobs.iter().any(|j| j.stage.eq_ignore_ascii_case(s)))
        .collect();
    plan.webhooks = webhooks(config, build, &global, &mut diags);
    plan.email = config
        .notifications
        .email
        .as_ref()
        .filter(|_| !build.is_pull_request() && !build.fork)
        .filter(|e| holds(&e.condition, &Facts::build(build, &global)))
        .map(|e| e.email.clone());
    // A fork's file would pick the room or channel and read the
    // repository's secrets: its pull requests tell no chat.
    let chats = !config.notifications.slack.is_empty() || !config.notifications.irc.is_empty();
    if let (true, true, Some(span)) = (build.fork, chats, config.notifications.span) {
        diags.warning(
            span,
            "Slack and IRC notifications are not sent for a pull request from a fork",
        );
    }
    let facts = Facts::build(build, &global);
    plan.slack = config
        .notifications
        .slack
        .iter()
        .filter(|_| !build.fork)
        .filter(|s| s.slack.on_pull_requests || !build.is_pull_request())
        .filter(|s| holds(&s.condition, &facts))
        .map(|s| s.slack.clone())
        .collect();
    plan.irc = config
        .notifications
        .irc
        .iter()
        .filter(|_| !build.fork)
        .filter(|i| holds(&i.condition, &facts))
        .map(|i| i.irc.clone())
        .collect();
    plan.diagnostics = diags.into_sorted();
    plan
}

fn webhooks(
    config: &Config,
    build: &BuildContext,
    global: &[(String, String)],
    diags: &mut Diagnostics,
) -> Vec<Webhook> {
    let facts = Facts::build(build, global);
    let hooks: Vec<Webhook> = config
        .notifications
        .webhooks
        .iter()
        .filter(|w| holds(&w.condition, &facts))
        .map(|w| w.hook.clone())
        .collect();
    match config.notifications.span {
        Some(span) if build.fork && !hooks.is_empty() => {
            diags.warning(
                span,
                "webhook notifications are not sent for a pull request from a fork",
            );
            Vec::new()
        }
        _ => hooks,
    }
}

fn spanned(value: Vec<String>, span: Span) -> crate::decode::Spanned<Vec<String>> {
    crate::decode::Spanned { value, span }
}

/// Travis shows unnamed jobs by their matrix values: `node_js: 14, FOO=1`.
fn job_name(c: &Candidate) -> String {
    if let Some(name) = &c.cfg.name {
        return name.clone();
    }
    let mut parts: Vec<String> = Vec::new();
    for key in &c.expanded {
        if key == "os" || key == "arch" {
            continue;
        }
        if let Some(v) = axis_value(&c.cfg, key) {
            parts.push(format!("{key}: {v}"));
        }
    }
    if parts.is_empty() {
        if let Some((key, v)) = c.cfg.axes.iter().find(|(k, _)| k != "os" && k != "arch") {
            if let Some(first) = v.value.first() {
                parts.push(format!("{key}: {first}"));
            }
        }
    }
    let env = env_source(&c.env_entries);
    if !env.is_empty() {
        parts.push(env);
    }
    if parts.is_empty() {
        return c
            .cfg
            .language
            .as_ref()
            .map(|l| l.value.clone())
            .unwrap_or_else(|| "default".into());
    }
    parts.join(", ")
}

fn finish(
    c: Candidate,
    name: String,
    env: Vec<EnvVar>,
    allow_failure: bool,
    catalog: &Catalog,
    diags: &mut Diagnostics,
) -> Job {
    let cfg = c.cfg;
    let explicit_language = cfg.language.as_ref().map(|l| l.value.clone());
    let language_name = match (&explicit_language, &cfg.image) {
        (Some(l), _) => l.clone(),
        (None, Some(_)) => "shell".to_string(),
        (None, None) => "ruby".to_string(),
    };
    let language = catalog::language(&language_name).or_else(|| catalog::language("shell"));
    let mut phases = cfg.phases.clone();
    let mut versions: BTreeMap<String, String> = BTreeMap::new();
    for (key, values) in &cfg.axes {
        if let Some(v) = values.value.first() {
            versions.insert(key.clone(), v.clone());
        }
    }
    let image = match (&cfg.image, language) {
        (Some(image), _) => image.clone(),
        (None, Some(lang)) => {
            let key = match lang.name {
                "java" | "groovy" | "scala" | "clojure" => Some("jdk"),
                _ => lang.version_keys.first().copied(),
            };
            let version = key.and_then(|k| versions.get(k)).map(String::as_str);
            ImageSpec::Name(catalog.language_image(lang, version, cfg.dist.as_deref()))
        }
        (None, None) => ImageSpec::Name("ubuntu:jammy".into()),
    };
    if let Some(lang) = language {
        for (phase, defaults) in [
            (Phase::Install, lang.default_install),
            (Phase::Script, lang.default_script),
        ] {
            if !phases.contains_key(&phase) && !defaults.is_empty() {
                if defaults == [catalog::PYTHON_SCRIPT] {
                    diags
                        .warning(
                            cfg.span,
                            format!("job `{name}` has no `script`; it fails, as Travis's Python jobs do"),
                        )
                        .hint("add `script:` with the commands that test your project (`script: pytest`), or `script: skip`");
                }
                phases.insert(phase, defaults.iter().map(|s| s.to_string()).collect());
            }
        }
    }
    // What addons and `services: xvfb` set up goes first in before_install:
    // one apt install (it may include ssh-keyscan), then the host keys,
    // Chrome, and the X display.
    let addons = cfg.addons.as_ref();
    let mut requests: Vec<ServiceRequest> = cfg.services.clone().unwrap_or_default();
    let xvfb = requests
        .iter()
        .any(|r| matches!(r, ServiceRequest::Xvfb { .. }));
    let chrome = addons.is_some_and(|a| a.chrome.is_some());
    let mut packages: Vec<String> = addons.map(|a| a.apt_packages.clone()).unwrap_or_default();
    for (wanted, package) in [
        (chrome, crate::config::addons::CHROME_PACKAGE),
        (xvfb, crate::config::addons::XVFB_PACKAGE),
    ] {
        if wanted && !packages.iter().any(|p| p == package) {
            packages.push(package.to_string());
        }
    }
    let mut setup = Vec::new();
    if !packages.is_empty() {
        setup.push(crate::config::addons::apt_install_command(&packages));
    }
    if let Some(hosts) = addons.map(|a| &a.ssh_known_hosts).filter(|h| !h.is_empty()) {
        setup.push(crate::config::addons::ssh_known_hosts_command(hosts));
    }
    if chrome {
        setup.push(crate::config::addons::CHROME_COMMAND.to_string());
    }
    if xvfb {
        setup.push(crate::config::addons::XVFB_COMMAND.to_string());
    }
    if !setup.is_empty() {
        let before_install = phases.entry(Phase::BeforeInstall).or_default();
        before_install.splice(0..0, setup);
    }
    phases.retain(|_, commands| !commands.is_empty());
    // No script at all, and none asked for: `script: skip` (a deploy-only
    // job, as Travis's docs write them) is said on purpose.
    if !phases.contains_key(&Phase::Script) && !cfg.phases.contains_key(&Phase::Script) {
        diags
            .warning(
                cfg.span,
                format!("job `{name}` has no `script`; it runs no tests"),
            )
            .hint("add `script:` with the commands that test your project");
    }
    for (name, version, span) in addons.iter().flat_map(|a| &a.services) {
        service::at_version(&mut requests, name, version, *span, catalog);
    }
    let docker = requests
        .iter()
        .any(|r| matches!(r, ServiceRequest::Docker { .. }));
    Job {
        number: 0,
        name,
        stage: c.stage,
        language: language
            .map(|l| l.name.to_string())
            .unwrap_or(language_name),
        image,
        env,
        secure_env: false,
        allow_failure,
        phases,
        services: service::resolve(&requests, catalog),
        hosts: addons.map(|a| a.hosts.clone()).unwrap_or_default(),
        artifacts: addons.and_then(|a| a.artifacts.clone()),
        docker,
        deploy: cfg.deploy.clone().unwrap_or_default(),
        images: cfg.images.clone().unwrap_or_default(),
        timeout_minutes: cfg.timeout_minutes.unwrap_or(DEFAULT_TIMEOUT_MINUTES),
        git: cfg.git.clone().unwrap_or_default(),
        cache: cfg.cache.clone().unwrap_or_default(),
        versions,
        dist: cfg.dist.clone(),
        line: cfg.span.line,
    }
}
