//! `gantry exec`: one job of the current checkout's pipeline on the local
//! Docker, no server — to debug a pipeline before pushing it.

use crate::docker::{Docker, Limits};
use crate::job::{self, Outcome, Runtime, Source};
use crate::workspace::Workspaces;
use bytes::Bytes;
use gantry_pipeline::{BuildContext, Catalog, Event, Job, Severity};
use gantry_protocol::{Assignment, BuildId, BuildInfo, JobId, RepoInfo};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Docker(#[from] crate::docker::DockerError),
}

/// What `gantry exec` needs to know of the checkout at `dir`.
#[derive(Default)]
struct Checkout {
    commit: Option<String>,
    branch: Option<String>,
    origin: Option<String>,
    message: Option<String>,
}

fn read_checkout(dir: &Path) -> Checkout {
    let Ok(repo) = git2::Repository::discover(dir) else {
        return Checkout::default();
    };
    let head = repo.head().ok();
    let commit = head.as_ref().and_then(|h| h.peel_to_commit().ok());
    Checkout {
        commit: commit.as_ref().map(|c| c.id().to_string()),
        branch: head
            .as_ref()
            .filter(|h| h.is_branch())
            .and_then(|h| h.shorthand().map(str::to_string)),
        origin: repo
            .find_remote("origin")
            .ok()
            .and_then(|r| r.url().map(str::to_string)),
        message: commit.and_then(|c| c.summary().map(str::to_string)),
    }
}

/// `owner/name` from an origin URL like `git@github.com:owner/name.git` or `https://…/owner/name`.
pub fn slug_from_url(url: &str) -> Option<String> {
    let path = url.trim_end_matches('/').trim_end_matches(".git");
    let mut parts = path.rsplit(['/', ':']);
    let name = parts.next()?;
    let owner = parts.next()?;
    (!owner.is_empty() && !name.is_empty()).then(|| format!("{owner}/{name}"))
}

/// Reads the pipeline file at `path` with the files of this repository
/// it imports, from the directory it is in (the repository's root, as the
/// server reads them at the commit). Other repositories' files, and files
/// at another ref, are the server's to read: a warning names each.
pub fn read_with_imports(
    path: &Path,
    source: &str,
    build: &BuildContext,
) -> gantry_pipeline::Parsed {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let root = path.parent().unwrap_or(Path::new("."));
    let mut assembly = gantry_pipeline::Assembly::new(name, source, Some(build));
    while let Some(import) = assembly.next() {
        if import.repo.is_some() || import.git_ref.is_some() {
            assembly.skip("only this repository's files are read here, as they are on disk");
            continue;
        }
        let text = match std::fs::read_to_string(root.join(&import.path)) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        };
        assembly.supply(text);
    }
    assembly.finish()
}

/// The job to run and the build around it, from the checkout at `dir`.
pub fn plan(
    dir: &Path,
    wanted: Option<&str>,
) -> Result<(Job, BuildInfo, RepoInfo, Vec<String>), ExecError> {
    let file = gantry_pipeline::choose_file(|n| dir.join(n).is_file()).ok_or_else(|| {
        ExecError::Usage(format!(
            "no .gantry.yml or .travis.yml in {}",
            dir.display()
        ))
    })?;
    let source = std::fs::read_to_string(dir.join(file))
        .map_err(|e| ExecError::Usage(format!("cannot read {file}: {e}")))?;
    let checkout = read_checkout(dir);
    let commit = checkout.commit.unwrap_or_else(|| "0".repeat(40));
    let branch = checkout.branch.unwrap_or_else(|| "master".into());
    let origin = checkout.origin;
    let slug = origin
        .as_deref()
        .and_then(slug_from_url)
        .unwrap_or_else(|| {
            format!(
                "local/{}",
                dir.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "repo".into())
            )
        });
    let message = checkout.message.unwrap_or_default();
    let build = BuildContext {
        branch: branch.clone(),
        repo: slug.clone(),
        commit_message: message.clone(),
        ..BuildContext::push(&branch)
    };
    let parsed = read_with_imports(&dir.join(file), &source, &build);
    let mut notes: Vec<String> = parsed
        .diagnostics
        .iter()
        .map(|d| {
            format!(
                "{}:{}:{}: {}: {}",
                d.file.as_deref().unwrap_or(file),
                d.line,
                d.column,
                d.severity,
                d.message
            )
        })
        .collect();
    let Some(pipeline) = parsed.pipeline else {
        return Err(ExecError::Usage(format!(
            "{file} has errors:\n{}",
            notes.join("\n")
        )));
    };
    let plan = pipeline.plan(&build, &Catalog::default());
    notes.extend(
        plan.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .map(|d| {
                let file = d.file.as_deref().unwrap_or(file);
                format!("{file}:{}:{}: warning: {}", d.line, d.column, d.message)
            }),
    );
    if let Some(reason) = &plan.rejected {
        return Err(ExecError::Usage(format!(
            "no build for branch {branch}: {reason}"
        )));
    }
    let names: Vec<String> = plan
        .jobs
        .iter()
        .map(|j| format!("  {}. [{}] {}", j.number, j.stage, j.name))
        .collect();
    let job = match wanted {
        None => plan.jobs.first().cloned(),
        Some(w) => plan
            .jobs
            .iter()
            .find(|j| j.name == w || j.number.to_string() == w)
            .cloned(),
    }
    .ok_or_else(|| {
        ExecError::Usage(format!(
            "no job {} in {file}; its jobs are:\n{}",
            wanted.unwrap_or(""),
            names.join("\n")
        ))
    })?;
    let info = BuildInfo {
        number: 0,
        event: Event::Push,
        branch,
        tag: None,
        commit,
        message,
        pull_request: None,
        head_branch: None,
        head_repo: None,
        fork: false,
        sender: std::env::var("USER").unwrap_or_default(),
        base_commit: None,
    };
    let repo = RepoInfo {
        full_name: slug,
        clone_url: origin.unwrap_or_default(),
        private: false,
        default_branch: "master".into(),
        cache_generation: 0,
    };
    Ok((job, info, repo, notes))
}

/// Draws the log for a terminal: markers hidden, a line per finished phase.
pub struct TerminalLog<W: Write> {
    out: W,
    partial: Vec<u8>,
}

impl<W: Write> TerminalLog<W> {
    pub fn new(out: W) -> Self {
        TerminalLog {
            out,
            partial: Vec::new(),
        }
    }

    pub fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.partial.extend_from_slice(chunk);
        while let Some(pos) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line);
            if let Some(rest) = text.find("gantry_phase:end:").map(|i| &text[i + 17..]) {
                let (phase, rc) = rest.split_once(":rc=").unwrap_or((rest, "?"));
                let rc: String = rc
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '-')
                    .collect();
                let mark = if rc == "0" {
                    "\x1b[32mok\x1b[0m".to_string()
                } else {
                    format!("\x1b[31mexit {rc}\x1b[0m")
                };
                writeln!(self.out, "\x1b[2m── end of {phase} ({mark}\x1b[2m)\x1b[0m")?;
                continue;
            }
            let cleaned = strip_markers(&text);
            if !cleaned.trim().is_empty() || !text.contains("travis_") {
                self.out.write_all(cleaned.as_bytes())?;
            }
        }
        self.out.flush()
    }
}

/// Removes Travis fold and time markers (each ends with `\r\e[0K`).
pub fn strip_markers(line: &str) -> String {
    let mut out = line.to_string();
    for prefix in ["travis_fold:", "travis_time:"] {
        while let Some(start) = out.find(prefix) {
            let end = out[start..]
                .find("\r\x1b[0K")
                .map(|e| start + e + "\r\x1b[0K".len())
                .unwrap_or(out.len());
            out.replace_range(start..end, "");
        }
    }
    out
}

/// Runs the job; the log goes to stdout. Ctrl-C (`cancel`) stops it.
pub async fn exec(
    dir: &Path,
    wanted: Option<&str>,
    limits: Limits,
    cancel: CancellationToken,
) -> Result<Outcome, ExecError> {
    let (mut job, build, repo, notes) = plan(dir, wanted)?;
    for note in notes {
        eprintln!("{note}");
    }
    // A local run tries the build, never ships it.
    if !job.deploy.is_empty() || !job.images.is_empty() {
        eprintln!("gantry exec does not deploy or push images: `deploy` and `images` are skipped");
        job.deploy.clear();
        job.images.clear();
    }
    // Its data dir is gone after the run: a cache would be packed for nothing.
    if !job.cache.is_empty() {
        eprintln!("gantry exec keeps no build cache: `cache` is skipped");
        job.cache.clear();
    }
    let data: PathBuf = std::env::temp_dir().join(format!("gantry-exec-{}", std::process::id()));
    let name = format!("exec-{}", std::process::id());
    let docker = Docker::connect(&name).await?;
    let rt = Runtime {
        docker,
        workspaces: Workspaces::new(&data),
        data_dir: data.clone(),
        limits,
        no_output_timeout: Duration::from_secs(600),
        max_job_time: None,
        server: None,
        in_process_logs: None,
    };
    let id = i64::from(std::process::id());
    let assignment = Assignment {
        job_id: JobId(id),
        build_id: BuildId(id),
        number: format!("local.{}", job.number),
        lease: String::new(),
        lease_seconds: 60,
        log_offset: 0,
        repo,
        build,
        job,
        web_url: None,
        secrets: Vec::new(),
        git_credentials: None,
        notes: Vec::new(),
        // A GitHub Enterprise user sets GITHUB_API_URL, as for GitHub's own tools.
        github_api_url: std::env::var("GITHUB_API_URL").ok(),
    };
    let (tx, mut rx) = mpsc::channel::<Bytes>(8);
    let printer = tokio::task::spawn_blocking(move || {
        let mut terminal = TerminalLog::new(std::io::stdout());
        while let Some(chunk) = rx.blocking_recv() {
            if terminal.write(&chunk).is_err() {
                break;
            }
        }
    });
    let outcome = job::run(&rt, &assignment, Source::Copy(dir), tx, cancel).await;
    let _ = printer.await;
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&data)).await;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_from_origin_urls() {
        assert_eq!(
            slug_from_url("git@github.com:acme/widget.git").as_deref(),
            Some("acme/widget")
        );
        assert_eq!(
            slug_from_url("https://github.com/acme/widget").as_deref(),
            Some("acme/widget")
        );
        assert_eq!(
            slug_from_url("https://github.com/acme/widget.git/").as_deref(),
            Some("acme/widget")
        );
    }

    #[test]
    fn the_terminal_view_hides_markers_and_shows_phase_ends() {
        let mut out = Vec::new();
        let mut t = TerminalLog::new(&mut out);
        t.write(b"travis_fold:start:script\r\x1b[0Ktravis_time:start:00000001\r\x1b[0K$ make\nbuilding\n").unwrap();
        t.write(b"travis_time:end:00000001:start=1,finish=2,duration=1,event=script\r\x1b[0Ktravis_fold:end:script\r\x1b[0K\ngantry_phase:end:script:rc=0\r\x1b[0K\n").unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("travis_"), "{text:?}");
        assert!(text.starts_with("$ make\nbuilding\n"), "{text:?}");
        assert!(text.contains("── end of script"));
    }
}
