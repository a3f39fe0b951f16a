//! `gantry lint`: every problem of every file at once, and the jobs each expands to.

use clap::Args;
use gantry_pipeline::{
    Artifacts, BuildContext, Catalog, Email, Event, ImageSpec, Irc, Job, Outcomes, Provider,
    Severity, Slack, Webhook, When,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct LintArgs {
    /// Print one JSON array with, per file, its diagnostics and jobs.
    #[arg(long)]
    json: bool,
    /// The branch the build is for (for pull requests: the base branch).
    #[arg(long, default_value = "master")]
    branch: String,
    /// The event the build is for: push, pull_request, tag, api or cron.
    #[arg(long, default_value = "push", value_parser = parse_event)]
    event: Event,
    /// The tag the build is for (implies --event tag).
    #[arg(long)]
    tag: Option<String>,
    /// The repository slug (`owner/name`) conditions see.
    #[arg(long, default_value = "owner/repo")]
    repo: String,
    /// Pipeline files, or directories holding `.gantry.yml` or `.travis.yml` (default: the current directory).
    files: Vec<PathBuf>,
}

fn parse_event(s: &str) -> Result<Event, String> {
    s.parse()
}

#[derive(Serialize)]
struct FileReport {
    file: String,
    diagnostics: Vec<DiagnosticReport>,
    jobs: Vec<JobReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rejected: Option<String>,
    skipped: Vec<SkippedReport>,
    /// Webhooks told of this build (`notifications.webhooks` whose `if:` holds).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    webhooks: Vec<Webhook>,
    /// Email notifications of this build (none for pull requests, or after
    /// `email: false`); no `recipients` means the commit's author and committer.
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<Email>,
    /// Slack rooms told of this build (their `if:` holds).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    slack: Vec<Slack>,
    /// IRC channels told of this build (their `if:` holds).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    irc: Vec<Irc>,
}

#[derive(Serialize)]
struct DiagnosticReport {
    severity: Severity,
    /// The imported file it is in, from the repository's root.
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    line: usize,
    column: usize,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<String>,
}

#[derive(Serialize)]
struct JobReport {
    number: u32,
    name: String,
    stage: String,
    image: ImageSpec,
    env: BTreeMap<String, String>,
    allow_failure: bool,
    /// Directories kept between builds (`cache:`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cache: Vec<String>,
    /// Service containers started beside the job (`services:`, database addons).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    services: Vec<ServiceReport>,
    /// `addons.artifacts`: what goes to S3 at the end of the job.
    #[serde(skip_serializing_if = "Option::is_none")]
    artifacts: Option<Artifacts>,
    /// `deploy:` entries, and whether this build would run each once the job passes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    deploy: Vec<DeployReport>,
}

#[derive(Serialize)]
struct DeployReport {
    provider: String,
    line: usize,
    /// The imported file it is written in.
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    /// Why this build skips it (`deploy.on`); none: it runs if the job passes.
    skipped: Option<String>,
    /// Shell tests the runner checks first (`on.condition`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    conditions: Vec<String>,
}

#[derive(Serialize)]
struct ServiceReport {
    name: String,
    image: String,
}

#[derive(Serialize)]
struct SkippedReport {
    name: String,
    reason: String,
}

impl JobReport {
    fn new(job: &Job, build: &BuildContext) -> Self {
        JobReport {
            number: job.number,
            name: job.name.clone(),
            stage: job.stage.clone(),
            image: job.image.clone(),
            env: job.env_map(),
            allow_failure: job.allow_failure,
            cache: job.cache.clone(),
            services: job
                .services
                .iter()
                .map(|s| ServiceReport {
                    name: s.name.clone(),
                    image: s.image.clone(),
                })
                .collect(),
            artifacts: job.artifacts.clone(),
            deploy: job
                .deploy
                .iter()
                .map(|d| DeployReport {
                    provider: d.provider.name().to_string(),
                    line: d.line,
                    file: d.file.clone(),
                    skipped: match &d.provider {
                        Provider::Unsupported { .. } => Some("Gantry does not run it".into()),
                        _ => d.on.check(build, &job.versions).err(),
                    },
                    conditions: d.on.condition.clone(),
                })
                .collect(),
        }
    }
}

/// A directory stands for the pipeline file inside it.
fn resolve(path: &Path) -> PathBuf {
    if path.is_dir() {
        let name = gantry_pipeline::choose_file(|n| path.join(n).is_file())
            .unwrap_or(gantry_pipeline::PIPELINE_FILES[1]);
        return path.join(name);
    }
    path.to_path_buf()
}

fn build_context(args: &LintArgs) -> BuildContext {
    let mut build = BuildContext {
        event: args.event,
        branch: args.branch.clone(),
        repo: args.repo.clone(),
        ..Default::default()
    };
    if let Some(tag) = &args.tag {
        build.event = Event::Tag;
        build.tag = Some(tag.clone());
        build.branch = tag.clone();
    }
    build
}

fn report(file: &str, source: &str, build: &BuildContext) -> FileReport {
    let parsed = gantry_runner::local::read_with_imports(Path::new(file), source, build);
    let mut diagnostics = parsed.diagnostics.clone();
    let mut jobs = Vec::new();
    let mut rejected = None;
    let mut skipped = Vec::new();
    let mut webhooks = Vec::new();
    let mut email = None;
    let mut slack = Vec::new();
    let mut irc = Vec::new();
    if let Some(pipeline) = &parsed.pipeline {
        let plan = pipeline.plan(build, &Catalog::default());
        diagnostics.extend(plan.diagnostics.iter().cloned());
        diagnostics.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        jobs = plan.jobs.iter().map(|j| JobReport::new(j, build)).collect();
        rejected = plan.rejected.clone();
        webhooks = plan.webhooks.clone();
        email = plan.email.clone();
        slack = plan.slack.clone();
        irc = plan.irc.clone();
        skipped = plan
            .skipped
            .iter()
            .map(|s| SkippedReport {
                name: s.name.clone(),
                reason: s.reason.clone(),
            })
            .collect();
    }
    FileReport {
        file: file.to_string(),
        diagnostics: diagnostics
            .into_iter()
            .map(|d| DiagnosticReport {
                severity: d.severity,
                file: d.file,
                line: d.line,
                column: d.column,
                message: d.message,
                hint: d.hint,
            })
            .collect(),
        jobs,
        rejected,
        skipped,
        webhooks,
        email,
        slack,
        irc,
    }
}

fn when(w: When) -> &'static str {
    match w {
        When::Always => "always",
        When::Never => "never",
        When::Change => "change",
    }
}

fn print_text(out: &mut impl Write, r: &FileReport) -> std::io::Result<()> {
    for d in &r.diagnostics {
        let file = match &d.file {
            Some(imported) => Path::new(&r.file)
                .parent()
                .map(|dir| dir.join(imported).display().to_string())
                .unwrap_or_else(|| imported.clone()),
            None => r.file.clone(),
        };
        writeln!(
            out,
            "{}:{}:{}: {}: {}",
            file, d.line, d.column, d.severity, d.message
        )?;
        if let Some(hint) = &d.hint {
            writeln!(out, "  hint: {hint}")?;
        }
    }
    let errors = r
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    if errors > 0 {
        let warnings = r.diagnostics.len() - errors;
        writeln!(out, "{}: {errors} error(s), {warnings} warning(s)", r.file)?;
        return Ok(());
    }
    if let Some(reason) = &r.rejected {
        writeln!(out, "{}: no build for this event: {reason}", r.file)?;
        return Ok(());
    }
    writeln!(out, "{}: ok, {} job(s)", r.file, r.jobs.len())?;
    for job in &r.jobs {
        let image = match &job.image {
            ImageSpec::Name(name) => name.clone(),
            ImageSpec::Build { build } => format!("built from {}", build.dockerfile),
        };
        let failure = if job.allow_failure {
            " (allowed to fail)"
        } else {
            ""
        };
        writeln!(
            out,
            "  {}. [{}] {} — {image}{failure}",
            job.number, job.stage, job.name
        )?;
        if !job.cache.is_empty() {
            writeln!(out, "     cache: {}", job.cache.join(", "))?;
        }
        if !job.services.is_empty() {
            let services: Vec<String> = job
                .services
                .iter()
                .map(|s| format!("{} ({})", s.name, s.image))
                .collect();
            writeln!(out, "     services: {}", services.join(", "))?;
        }
        if let Some(a) = &job.artifacts {
            let paths = if a.paths.is_empty() {
                "untracked files".to_string()
            } else {
                a.paths.join(", ")
            };
            writeln!(out, "     artifacts: {paths}, to S3 after after_script")?;
        }
        for d in &job.deploy {
            let when = match (&d.skipped, d.conditions.is_empty()) {
                (Some(why), _) => format!("skipped: {why}"),
                (None, true) => "runs if the job passes".to_string(),
                (None, false) => format!(
                    "runs if the job passes and `{}` holds",
                    d.conditions.join("` and `")
                ),
            };
            let line = match &d.file {
                Some(file) => format!("{file} line {}", d.line),
                None => format!("line {}", d.line),
            };
            writeln!(out, "     deploy: {} ({line}) — {when}", d.provider)?;
        }
    }
    let flags = |o: Outcomes| {
        format!(
            "success: {}, failure: {}, start: {}, cancel: {}, error: {}",
            when(o.on_success),
            when(o.on_failure),
            when(o.on_start),
            when(o.on_cancel),
            when(o.on_error)
        )
    };
    for w in &r.webhooks {
        writeln!(out, "  webhook: {} — {}", w.url.shown(), flags(w.when))?;
    }
    if let Some(e) = &r.email {
        let to = if e.recipients.is_empty() {
            "the commit's author and committer".to_string()
        } else {
            e.recipients
                .iter()
                .map(|r| r.shown())
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(out, "  email: {to} — {}", flags(e.when))?;
    }
    for s in &r.slack {
        writeln!(out, "  slack: {} — {}", s.room.shown(), flags(s.when))?;
    }
    for i in &r.irc {
        writeln!(out, "  irc: {} — {}", i.channel.shown(), flags(i.when))?;
    }
    for s in &r.skipped {
        writeln!(out, "  skipped: {} — {}", s.name, s.reason)?;
    }
    Ok(())
}

pub fn run(args: &LintArgs) -> ExitCode {
    let build = build_context(args);
    let inputs = if args.files.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.files.clone()
    };
    let mut reports = Vec::new();
    let mut unreadable = false;
    for input in &inputs {
        let path = resolve(input);
        match std::fs::read_to_string(&path) {
            Ok(source) => reports.push(report(&path.display().to_string(), &source, &build)),
            Err(e) => {
                eprintln!("gantry lint: cannot read {}: {e}", path.display());
                unreadable = true;
            }
        }
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let written = if args.json {
        serde_json::to_writer_pretty(&mut out, &reports)
            .map_err(std::io::Error::from)
            .and_then(|_| writeln!(out))
    } else {
        reports.iter().try_for_each(|r| print_text(&mut out, r))
    };
    if let Err(e) = written {
        eprintln!("gantry lint: cannot write output: {e}");
        return ExitCode::from(2);
    }
    if unreadable {
        return ExitCode::from(2);
    }
    let errors = reports
        .iter()
        .any(|r| r.diagnostics.iter().any(|d| d.severity == Severity::Error));
    ExitCode::from(u8::from(errors))
}
