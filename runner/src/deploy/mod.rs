//! The deploy stage of a job that passed: Travis's rules for when a provider
//! runs (`deploy.on`, never for pull requests), `before_deploy` and
//! `after_deploy` around each provider, then the provider itself — `script`
//! in the job's container, S3, Elastic Beanstalk, ECS and CodeDeploy from
//! the runner through the AWS SDK, GitHub Releases through GitHub's REST
//! API, GitHub Pages as a push of a branch, PyPI and npm as a build in the
//! container (`setup.py`, `npm pack`) and an upload from the runner, Heroku
//! through its build API. `images:` are built and pushed
//! before the first provider that runs. Every skip is said in the log, with its reason.

pub mod aws;
pub mod bundle;
pub mod codedeploy;
pub mod ecs;
pub mod elasticbeanstalk;
pub mod heroku;
pub mod images;
pub mod npm;
pub mod pages;
pub mod pypi;
pub mod releases;
pub mod s3;
pub mod tarball;
pub mod values;

use crate::job::{run_step, Interrupted, Runtime};
use crate::logs::LogPipeline;
use crate::script;
use gantry_pipeline::{Deploy, Phase, Provider};
use gantry_protocol::{Assignment, BuildInfo, RepoInfo, SecretVar};
use images::{ImageContext, PushedImage};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// What a provider deploys from.
pub struct Target<'a> {
    pub workspace: &'a Path,
    /// A runner-side directory for bundles, removed with the job.
    pub scratch: &'a Path,
    /// The job's environment as its shell left it (after `before_deploy`).
    pub env: &'a BTreeMap<String, String>,
    pub secrets: &'a [SecretVar],
    pub repo: &'a RepoInfo,
    pub build: &'a BuildInfo,
    pub images: &'a [PushedImage],
    pub cancel: &'a CancellationToken,
    /// The job's build directory inside its container (paths in options start there).
    pub build_dir: &'a str,
    /// The GitHub API the repository lives on.
    pub github_api: &'a str,
}

/// How the stage ended, when it changes the job's result.
#[derive(Debug, PartialEq, Eq)]
pub enum StageEnd {
    Done,
    /// A provider failed (Travis: `failed to deploy`, the job fails).
    Failed(String),
    /// `before_deploy` failed: the job errors.
    Errored(String),
    Canceled,
    TimedOut(String),
    /// `travis_terminate N` in `before_deploy`, `after_deploy` or a `script` provider.
    Terminated(i64),
}

/// The job's container and files the stage works with.
pub(crate) struct Stage<'a> {
    pub rt: &'a Runtime,
    pub a: &'a Assignment,
    pub container: &'a str,
    pub gantry_dir: &'a Path,
    /// A folder of the runner's for bundles (see [`crate::docker::deploy_scratch`]).
    pub scratch: &'a Path,
    pub workspace: &'a Path,
    /// The mirror objects the workspace borrows, for image build contexts.
    pub git_objects: Option<&'a Path>,
    pub build_dir: &'a str,
    pub cancel: &'a CancellationToken,
    pub deadline: Instant,
}

/// The most of a saved environment read back (Linux allows 2 MiB of it).
const ENVIRON_LIMIT: u64 = 4 << 20;

const YELLOW: &str = "\x1b[33;1m";
const RED: &str = "\x1b[31;1m";
const RESET: &str = "\x1b[0m";

impl Stage<'_> {
    /// Runs a generated script in the job's container; `Err` ends the stage.
    pub(crate) async fn step(
        &self,
        file: &str,
        text: &str,
        p: &mut LogPipeline,
    ) -> Result<i64, StageEnd> {
        match run_step(
            self.rt,
            self.container,
            self.gantry_dir,
            file,
            text,
            p,
            self.cancel,
            self.deadline,
        )
        .await
        {
            Ok(code) => Ok(code.unwrap_or(-1)),
            Err(Interrupted::Canceled) => Err(StageEnd::Canceled),
            Err(Interrupted::TimedOut(reason)) => Err(StageEnd::TimedOut(reason)),
            Err(Interrupted::Engine(message)) => Err(StageEnd::Errored(message)),
            Err(Interrupted::Terminated(status)) => Err(StageEnd::Terminated(status)),
        }
    }

    /// The job's environment as the last step saved it.
    pub(crate) async fn environment(&self) -> BTreeMap<String, String> {
        let dir = self.gantry_dir.to_path_buf();
        let left = tokio::task::spawn_blocking(move || {
            crate::job_files::read_left(&dir, "environ", ENVIRON_LIMIT)
        })
        .await;
        match left {
            Ok(Ok(Some(bytes))) if !bytes.is_empty() => values::parse_environ(&bytes),
            // None saved (an image without /proc), or something other than
            // the file the shell writes: the container's own start.
            _ => crate::travis_env::job_environment(self.a)
                .into_iter()
                .collect(),
        }
    }

    async fn push_images(
        &self,
        p: &mut LogPipeline,
        aws: Option<&gantry_pipeline::AwsAccess>,
    ) -> Result<Vec<PushedImage>, StageEnd> {
        let env = self.environment().await;
        let cx = ImageContext {
            docker: &self.rt.docker,
            assignment: self.a,
            workspace: self.workspace,
            git_objects: self.git_objects,
            env: &env,
            secrets: &self.a.secrets,
            aws,
        };
        fold_start(p, "images", 0x1ff).await;
        let result = images::push_all(&cx, &self.a.job.images, p).await;
        fold_end(p, "images", 0x1ff, result.is_ok()).await;
        result.map_err(|e| StageEnd::Failed(format!("building and pushing images failed: {e}")))
    }
}

async fn fold_start(p: &mut LogPipeline, name: &str, id: usize) {
    p.push(
        format!("travis_fold:start:{name}\r\x1b[0Ktravis_time:start:{id:08x}\r\x1b[0K").as_bytes(),
    )
    .await;
}

async fn fold_end(p: &mut LogPipeline, name: &str, id: usize, ok: bool) {
    p.push(
        format!(
            "\ntravis_time:end:{id:08x}:start=0,finish=0,duration=0,event={name}\r\x1b[0Ktravis_fold:end:{name}\r\x1b[0K\ngantry_phase:end:{name}:rc={}\r\x1b[0K\n",
            if ok { 0 } else { 1 }
        )
        .as_bytes(),
    )
    .await;
}

/// The client a package upload (PyPI, npm) goes out with: no redirects
/// (the credentials go to the index named, nowhere else), a deadline.
pub(crate) fn upload_client(timeout: std::time::Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("Gantry/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

/// Sends `request`, unless the deploy is canceled first; `Err` names `to`.
pub(crate) async fn send_unless_canceled(
    request: reqwest::RequestBuilder,
    to: &str,
    cancel: &CancellationToken,
) -> Result<reqwest::Response, String> {
    tokio::select! {
        sent = request.send() => sent.map_err(|e| format!("cannot reach {to}: {}", e.without_url())),
        _ = cancel.cancelled() => Err("the deploy was canceled".into()),
    }
}

/// The wait between polls of a deploy waiter: every second at first (most
/// deploys of a small change settle fast), then every 5 s to spare the API.
pub(crate) async fn pause(started: Instant, cancel: &CancellationToken) -> Result<(), String> {
    let pause = if started.elapsed() < std::time::Duration::from_secs(10) {
        std::time::Duration::from_secs(1)
    } else {
        std::time::Duration::from_secs(5)
    };
    tokio::select! {
        _ = tokio::time::sleep(pause) => Ok(()),
        _ = cancel.cancelled() => Err("the deploy was canceled while waiting".into()),
    }
}

/// How a rollback ended, for the log and the job's reason: the deploy has
/// failed either way; `back` names what serves again (`web is stable on …`).
pub(crate) async fn after_rollback(
    waited: Result<(), String>,
    failure: &str,
    previous: &str,
    back: &str,
    p: &mut LogPipeline,
) -> Result<(), String> {
    match waited {
        Ok(()) => {
            p.say(&format!("{YELLOW}Rolled back: {back}{RESET}")).await;
            Err(format!("{failure}; rolled back to {previous}"))
        }
        Err(e) => Err(format!(
            "{failure}; rolling back to {previous} failed too: {e}"
        )),
    }
}

/// What a provider deploys to, for the deploy lock: one running job of a
/// repository at a time deploys to it. `script` deploys anywhere: no lock.
pub fn target(provider: &Provider, env: &BTreeMap<String, String>) -> Option<String> {
    let x = |text: &str| values::expand(text, env);
    match provider {
        Provider::Elasticbeanstalk(eb) if !eb.only_create_app_version => eb.env.as_ref().map(|e| {
            format!(
                "elasticbeanstalk:{}/{}/{}",
                eb.aws.region,
                eb.app.as_deref().map(x).unwrap_or_default(),
                x(e)
            )
        }),
        Provider::Ecs(ecs) => Some(format!(
            "ecs:{}/{}/{}",
            ecs.aws.region,
            x(&ecs.cluster),
            x(&ecs.service)
        )),
        Provider::S3(s3) => Some(format!(
            "s3:{}/{}",
            x(&s3.bucket),
            s3.upload_dir.as_deref().map(x).unwrap_or_default()
        )),
        // CodeDeploy takes one deployment of a group at a time.
        Provider::Codedeploy(cd) => cd.deployment_group.as_ref().map(|group| {
            format!(
                "codedeploy:{}/{}/{}",
                cd.aws.region,
                x(&cd.application),
                x(group)
            )
        }),
        // Jobs of a matrix upload to one release: one at a time, so only one creates it.
        Provider::Releases(r) => Some(format!(
            "releases:{}@{}",
            r.repo
                .as_deref()
                .map(x)
                .unwrap_or_else(|| x("$TRAVIS_REPO_SLUG")),
            r.tag_name
                .as_deref()
                .map(x)
                .unwrap_or_else(|| x("$TRAVIS_TAG"))
        )),
        // One build at a time: Heroku would release whichever ended last.
        // (A name that is no app's fails the deploy itself: no lock.)
        Provider::Heroku(h) => heroku::app_name(h, env, &x("$TRAVIS_REPO_SLUG"))
            .ok()
            .map(|app| format!("heroku:{app}")),
        // One push at a time to a branch: a second would race the first.
        Provider::Pages(pages) => Some(format!(
            "pages:{}:{}",
            pages
                .repo
                .as_deref()
                .map(x)
                .unwrap_or_else(|| x("$TRAVIS_REPO_SLUG")),
            x(&pages.target_branch)
        )),
        _ => None,
    }
}

impl Stage<'_> {
    /// Waits until this job may deploy to `target`, saying who it waits for.
    async fn lock(&self, target: &str, p: &mut LogPipeline) -> Result<(), StageEnd> {
        let Some(server) = &self.rt.server else {
            return Ok(());
        };
        let started = Instant::now();
        let mut last_said: Option<(Instant, String)> = None;
        loop {
            let holder = match server
                .deploy_lock(self.a.job_id, &self.a.lease, target)
                .await
            {
                Ok(answer) if answer.granted => {
                    if last_said.is_some() {
                        p.runner_line(&format!(
                            "{YELLOW}{target} is free after {}s; deploying{RESET}",
                            started.elapsed().as_secs()
                        ))
                        .await;
                    }
                    return Ok(());
                }
                Ok(answer) => answer.holder.unwrap_or_else(|| "another job".into()),
                Err(crate::client::ClientError::LeaseLost) => return Err(StageEnd::Canceled),
                Err(e) => format!("(the server did not answer: {e})"),
            };
            let repeat = last_said.as_ref().is_none_or(|(at, said)| {
                *said != holder || at.elapsed() >= std::time::Duration::from_secs(60)
            });
            if repeat {
                p.runner_line(&format!(
                    "{YELLOW}Waiting to deploy to {target}: {holder} is deploying there; this deploy starts when it ends{RESET}"
                ))
                .await;
                last_said = Some((Instant::now(), holder));
            }
            if Instant::now() >= self.deadline {
                return Err(StageEnd::TimedOut(format!(
                    "The job reached its time limit while waiting to deploy to {target}."
                )));
            }
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
                _ = self.cancel.cancelled() => return Err(StageEnd::Canceled),
            }
        }
    }
}

/// The AWS options of the first AWS provider, for ECR logins.
fn first_aws(deploys: &[Deploy]) -> Option<&gantry_pipeline::AwsAccess> {
    deploys.iter().find_map(|d| match &d.provider {
        Provider::Elasticbeanstalk(eb) => Some(&eb.aws),
        Provider::S3(s3) => Some(&s3.aws),
        Provider::Ecs(ecs) => Some(&ecs.aws),
        Provider::Codedeploy(cd) => Some(&cd.aws),
        _ => None,
    })
}

/// Runs the stage after a passed job's `after_success`.
pub(crate) async fn run(stage: &Stage<'_>, p: &mut LogPipeline) -> StageEnd {
    let a = stage.a;
    let job = &a.job;
    if job.deploy.is_empty() && job.images.is_empty() {
        return StageEnd::Done;
    }
    let build = a.build_context();
    p.runner_line("").await;
    if job.deploy.is_empty() {
        // Images alone: pushed from the default branch and tags, never for pull requests.
        let why = if build.is_pull_request() {
            Some("pull requests never push images".to_string())
        } else if build.tag.is_none() && build.branch != build.default_branch {
            Some(format!(
                "branch {} is not the default branch {} (with no deploy, images are pushed from the default branch and tags)",
                build.branch, build.default_branch
            ))
        } else {
            None
        };
        if let Some(why) = why {
            p.runner_line(&format!("{YELLOW}Not pushing images: {why}{RESET}"))
                .await;
            return StageEnd::Done;
        }
        return match stage.push_images(p, None).await {
            Ok(_) => StageEnd::Done,
            Err(end) => end,
        };
    }
    if a.build.fork {
        p.runner_line(&format!(
            "{YELLOW}Skipping deploy: builds of pull requests from forks never deploy and get no secrets{RESET}"
        ))
        .await;
        return StageEnd::Done;
    }

    let mut pushed: Option<Vec<PushedImage>> = None;
    'providers: for (i, deploy) in job.deploy.iter().enumerate() {
        let name = deploy.provider.name();
        if let Err(reason) = deploy.on.check(&build, &job.versions) {
            p.runner_line(&format!(
                "{YELLOW}Skipping a deployment with the {name} provider because {reason}{RESET}"
            ))
            .await;
            continue;
        }
        if let Provider::Unsupported { .. } = deploy.provider {
            p.runner_line(&format!(
                "{YELLOW}Skipping a deployment with the {name} provider: Gantry does not run it (use `provider: script`){RESET}"
            ))
            .await;
            continue;
        }
        for condition in &deploy.on.condition {
            let text = script::condition_step(condition, stage.build_dir);
            match stage.step("condition.sh", &text, p).await {
                Ok(0) => {}
                Ok(_) => {
                    p.runner_line(&format!(
                        "{YELLOW}Skipping a deployment with the {name} provider because the condition `{condition}` is not met{RESET}"
                    ))
                    .await;
                    continue 'providers;
                }
                Err(end) => return end,
            }
        }
        if pushed.is_none() {
            pushed = Some(if job.images.is_empty() {
                Vec::new()
            } else {
                match stage.push_images(p, first_aws(&job.deploy)).await {
                    Ok(images) => images,
                    Err(end) => return end,
                }
            });
        }

        let before = job.commands(Phase::BeforeDeploy);
        if !before.is_empty() {
            let text = script::phase_step(Phase::BeforeDeploy, before, stage.build_dir, 100 + i);
            match stage.step("before_deploy.sh", &text, p).await {
                Ok(0) => {}
                Ok(code) => {
                    return StageEnd::Errored(format!("before_deploy failed with exit code {code}"))
                }
                Err(end) => return end,
            }
        }

        let id = 200 + i;
        fold_start(p, "deploy", id).await;
        p.runner_line(&format!(
            "{YELLOW}Deploying with the {name} provider (line {} of {}){RESET}",
            deploy.line,
            deploy.file.as_deref().unwrap_or("the pipeline file")
        ))
        .await;
        // What runs in the job's container: the `script` provider, and the
        // build of PyPI's distributions or npm's package (by the job's own
        // tools) before the runner uploads them.
        let in_container = match &deploy.provider {
            Provider::Script { script } => Some((script.clone(), "the script".to_string())),
            Provider::Pypi(pypi) => Some((
                pypi::build_command(pypi),
                format!(
                    "building the distributions (`setup.py {}`)",
                    pypi.distributions
                ),
            )),
            Provider::Npm(npm) => Some((
                npm::pack_command(npm, stage.build_dir),
                "packing the package (`npm pack`)".to_string(),
            )),
            _ => None,
        };
        let built = match in_container {
            Some((command, what)) => {
                let text = script::command_step(&command, stage.build_dir);
                match stage.step("deploy.sh", &text, p).await {
                    Ok(0) => Ok(()),
                    Ok(code) => Err(format!("{what} exited with {code}")),
                    Err(end) => return end,
                }
            }
            None => Ok(()),
        };
        let result = match &deploy.provider {
            _ if built.is_err() => built,
            Provider::Script { .. } => built,
            provider => {
                let env = stage.environment().await;
                if let Some(target) = target(provider, &env) {
                    if let Err(end) = stage.lock(&target, p).await {
                        return end;
                    }
                }
                let target = Target {
                    workspace: stage.workspace,
                    scratch: stage.scratch,
                    env: &env,
                    secrets: &a.secrets,
                    repo: &a.repo,
                    build: &a.build,
                    images: pushed.as_deref().unwrap_or_default(),
                    cancel: stage.cancel,
                    build_dir: stage.build_dir,
                    github_api: a.github_api_url.as_deref().unwrap_or(releases::GITHUB_API),
                };
                deploy_with(provider, &target, p).await
            }
        };
        fold_end(p, "deploy", id, result.is_ok()).await;
        if stage.cancel.is_cancelled() {
            return StageEnd::Canceled;
        }
        match result {
            Ok(()) => {
                p.runner_line(&format!("{YELLOW}Deployed with the {name} provider{RESET}"))
                    .await;
            }
            Err(e) if deploy.allow_failure => {
                p.say(&format!(
                    "{YELLOW}The {name} deploy failed, which is allowed (allow_failure): {e}{RESET}"
                ))
                .await;
            }
            Err(e) => {
                p.say(&format!(
                    "{RED}Failed to deploy with the {name} provider: {e}{RESET}"
                ))
                .await;
                return StageEnd::Failed(format!("failed to deploy with {name}: {e}"));
            }
        }

        let after = job.commands(Phase::AfterDeploy);
        if !after.is_empty() {
            let text = script::phase_step(Phase::AfterDeploy, after, stage.build_dir, 300 + i);
            if let Err(end) = stage.step("after_deploy.sh", &text, p).await {
                return end;
            }
        }
    }
    StageEnd::Done
}

async fn deploy_with(
    provider: &Provider,
    t: &Target<'_>,
    p: &mut LogPipeline,
) -> Result<(), String> {
    match provider {
        Provider::S3(s3) => {
            let aws = aws::Aws::load(&s3.aws, t.env, t.secrets).await;
            s3::deploy(s3, &aws, t, p).await
        }
        Provider::Elasticbeanstalk(eb) => {
            let aws = aws::Aws::load(&eb.aws, t.env, t.secrets).await;
            elasticbeanstalk::deploy(eb, &aws, t, p).await
        }
        Provider::Ecs(ecs) => {
            let aws = aws::Aws::load(&ecs.aws, t.env, t.secrets).await;
            ecs::deploy(ecs, &aws, t, p).await
        }
        Provider::Codedeploy(cd) => {
            let aws = aws::Aws::load(&cd.aws, t.env, t.secrets).await;
            codedeploy::deploy(cd, &aws, t, p).await
        }
        Provider::Releases(r) => releases::deploy(r, t, p).await,
        Provider::Pages(pages) => pages::deploy(pages, t, p).await,
        Provider::Pypi(pypi) => pypi::deploy(pypi, t, p).await,
        Provider::Npm(npm) => npm::deploy(npm, t, p).await,
        Provider::Heroku(heroku) => heroku::deploy(heroku, t, p).await,
        Provider::Script { .. } | Provider::Unsupported { .. } => Ok(()),
    }
}
