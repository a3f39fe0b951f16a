//! Travis's artifacts addon: at the end of the job, after `after_script`,
//! the files it names go to S3 under each target path. The job's shell
//! evaluates the paths (so `$(git ls-files -o)` works); the runner reads
//! the files from the workspace, never through a link, and uploads them
//! with the S3 provider's code. Nothing here changes the job's result.

use crate::deploy::aws::Aws;
use crate::deploy::s3::{self, Upload};
use crate::deploy::values::{expand, secret_or_env};
use crate::deploy::{Stage, StageEnd};
use crate::job_files::{in_workspace, literal};
use crate::logs::LogPipeline;
use crate::script;
use gantry_pipeline::config::artifacts::{DEFAULT_PATHS, DEFAULT_TARGET};
use gantry_pipeline::{Artifacts, AwsAccess, Value, S3};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const YELLOW: &str = "\x1b[33;1m";
const RESET: &str = "\x1b[0m";
/// The most of the evaluated path lists read back.
const LIST_LIMIT: u64 = 4 << 20;

/// Uploads the job's artifacts; `Err` only when the job was stopped meanwhile.
pub(crate) async fn run(
    stage: &Stage<'_>,
    artifacts: &Artifacts,
    p: &mut LogPipeline,
) -> Result<(), StageEnd> {
    let build = &stage.a.build;
    p.runner_line("").await;
    if build.pull_request.is_some() {
        p.say("Artifacts: not uploaded for pull requests").await;
        return Ok(());
    }
    if let Some(branch) = artifacts.branch.as_deref().filter(|b| *b != build.branch) {
        p.say(&format!(
            "Artifacts: not uploaded, they are for branch {branch} and this is {}",
            build.branch
        ))
        .await;
        return Ok(());
    }
    let env = stage.environment().await;
    let from_env = |name: &str| secret_or_env(name, &env, &stage.a.secrets);
    let paths = if artifacts.paths.is_empty() {
        from_env("ARTIFACTS_PATHS").unwrap_or_else(|| DEFAULT_PATHS.into())
    } else {
        artifacts.paths.join(":")
    };
    let targets = if artifacts.target_paths.is_empty() {
        from_env("ARTIFACTS_TARGET_PATHS").unwrap_or_else(|| DEFAULT_TARGET.into())
    } else {
        artifacts.target_paths.join(":")
    };
    let working_dir = artifacts
        .working_dir
        .clone()
        .or_else(|| from_env("ARTIFACTS_WORKING_DIR"));
    let step = script::artifacts_step(working_dir.as_deref(), &paths, &targets, stage.build_dir);
    if stage.step("artifacts.sh", &step, p).await? != 0 {
        p.say(&format!(
            "{YELLOW}Artifacts: not uploaded, their paths could not be read{RESET}"
        ))
        .await;
        return Ok(());
    }
    let read = |name: &str| {
        crate::job_files::read_left(stage.gantry_dir, name, LIST_LIMIT)
            .ok()
            .flatten()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    };
    let (dir, paths, targets) = (
        read("artifacts.dir"),
        read("artifacts.paths"),
        read("artifacts.targets"),
    );

    let Some(bucket) = resolved(&artifacts.bucket, "ARTIFACTS_BUCKET", &env, stage) else {
        p.say(&format!("{YELLOW}Artifacts: not uploaded, no bucket: set addons.artifacts.bucket or ARTIFACTS_BUCKET{RESET}")).await;
        return Ok(());
    };
    let access = AwsAccess {
        access_key_id: Some(option(&artifacts.key, "ARTIFACTS_KEY", stage)),
        secret_access_key: Some(option(&artifacts.secret, "ARTIFACTS_SECRET", stage)),
        region: artifacts
            .region
            .as_deref()
            .map(|r| expand(r, &env))
            .or_else(|| from_env("ARTIFACTS_REGION"))
            .unwrap_or_else(|| "us-east-1".into()),
        endpoint: artifacts.endpoint.as_deref().map(|e| expand(e, &env)),
    };
    let aws = Aws::load(&access, &env, &stage.a.secrets).await;
    let options = S3 {
        aws: access,
        bucket: bucket.clone(),
        dot_match: true,
        acl: artifacts.permissions.clone(),
        cache_control: artifacts.cache_control.iter().cloned().collect(),
        max_threads: artifacts.concurrency,
        verbose: artifacts.debug,
        ..S3::default()
    };

    let (wanted, outside) = in_workspace(dir.trim_end(), split(&paths), stage.build_dir);
    for path in &outside {
        p.say(&format!(
            "{YELLOW}Artifacts: {path} is not in the build directory; only files in it are uploaded{RESET}"
        ))
        .await;
    }
    let targets: Vec<String> = split(&targets)
        .map(|t| t.trim_matches('/').to_string())
        .collect();
    let planned = {
        let (workspace, options, max_size) = (
            stage.workspace.to_path_buf(),
            options.clone(),
            artifacts.max_size,
        );
        let targets = targets.clone();
        tokio::task::spawn_blocking(move || plan(&workspace, &wanted, &targets, &options, max_size))
            .await
            .unwrap_or_else(|e| (Vec::new(), vec![e.to_string()]))
    };
    let (uploads, notes) = planned;
    for note in notes {
        p.say(&format!("{YELLOW}Artifacts: {note}{RESET}")).await;
    }
    if uploads.is_empty() {
        p.say("Artifacts: no files to upload").await;
        return Ok(());
    }
    let total: u64 = uploads.iter().map(|u| u.size).sum();
    let to: Vec<String> = targets
        .iter()
        .map(|t| format!("s3://{bucket}/{t}"))
        .collect();
    p.say(&format!(
        "Artifacts: uploading {} file(s), {total} bytes, to {}",
        uploads.len(),
        to.join(", ")
    ))
    .await;
    let client = aws.s3(crate::deploy::aws::Service::S3, false);
    let (done, _, failed) = s3::upload_all(&client, &options, stage.workspace, uploads, p).await;
    if failed.is_empty() {
        p.say(&format!("Artifacts: uploaded {done} file(s)")).await;
    } else {
        p.say(&format!(
            "{YELLOW}Artifacts: uploaded {done} file(s); {} could not be uploaded (the job's result stands){RESET}",
            failed.len()
        ))
        .await;
    }
    Ok(())
}

/// An option given in the file, else Travis's variable: a repository secret
/// of that name, or the job's environment.
fn option(given: &Option<Value>, variable: &str, stage: &Stage<'_>) -> Value {
    match given {
        Some(value) => value.clone(),
        None if stage.a.secrets.iter().any(|s| s.name == variable) => Value::Secure {
            secret: variable.into(),
        },
        None => Value::Plain(format!("${{{variable}}}")),
    }
}

fn resolved(
    given: &Option<Value>,
    variable: &str,
    env: &BTreeMap<String, String>,
    stage: &Stage<'_>,
) -> Option<String> {
    crate::deploy::values::resolve(&option(given, variable, stage), env, &stage.a.secrets)
}

/// The non-empty entries of a `:`- or line-separated list.
fn split(list: &str) -> impl Iterator<Item = &str> {
    list.split([':', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The uploads: each wanted file, and each file under each wanted folder,
/// under every target (`<target>/<path in the build directory>`). Blocking.
fn plan(
    workspace: &Path,
    wanted: &[PathBuf],
    targets: &[String],
    options: &S3,
    max_size: u64,
) -> (Vec<Upload>, Vec<String>) {
    let (mut uploads, mut notes) = (Vec::new(), Vec::new());
    for path in wanted {
        let shown = path.display().to_string();
        let Ok(meta) = std::fs::symlink_metadata(workspace.join(path)) else {
            notes.push(format!("{shown} does not exist"));
            continue;
        };
        let (local_dir, glob, under) = if meta.is_dir() {
            (path.clone(), "**/*".to_string(), path.clone())
        } else if meta.is_file() {
            let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (parent.clone(), literal(&name), parent)
        } else {
            notes.push(format!(
                "{shown} is a link or a special file; it is left out"
            ));
            continue;
        };
        let local_dir = if local_dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            local_dir
        };
        for target in targets {
            let prefix = [target.as_str(), &under.to_string_lossy()]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("/");
            let one = S3 {
                upload_dir: Some(prefix),
                glob: glob.clone(),
                ..options.clone()
            };
            match s3::plan(workspace, &local_dir, &one) {
                Ok(found) => {
                    for u in found {
                        if u.size > max_size {
                            notes.push(format!(
                                "{} is {} bytes, over max_size; it is left out",
                                u.path.display(),
                                u.size
                            ));
                        } else if !uploads.iter().any(|o: &Upload| o.key == u.key) {
                            uploads.push(u);
                        }
                    }
                }
                Err(e) => notes.push(e),
            }
        }
    }
    (uploads, notes)
}
