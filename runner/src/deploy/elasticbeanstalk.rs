//! `provider: elasticbeanstalk` — dpl's flow: bundle → S3 →
//! CreateApplicationVersion → UpdateEnvironment → wait for Ready and Green,
//! copying Elastic Beanstalk's events into the log; on failure roll back to
//! the version that was serving, when asked.

use super::aws::{describe, Aws, Service};
use super::bundle;
use super::values::expand;
use super::Target;
use crate::job_files;
use crate::logs::LogPipeline;
use aws_sdk_elasticbeanstalk::primitives::DateTime;
use aws_sdk_elasticbeanstalk::types::{
    EnvironmentHealth, EnvironmentStatus, EventSeverity, S3Location,
};
use aws_sdk_elasticbeanstalk::Client;
use aws_sdk_s3::primitives::ByteStream;
use gantry_pipeline::ElasticBeanstalk;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// dpl cuts descriptions to 200 characters and drops what XML cannot carry.
pub fn description(text: &str) -> String {
    text.chars()
        .filter(|c| matches!(*c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..))
        .take(200)
        .collect()
}

/// The repository's `Dockerrun.aws.json`, if it has one (a plain file, not a link).
async fn read_dockerrun(workspace: &Path) -> Result<Option<String>, String> {
    let root = workspace.to_path_buf();
    let read = tokio::task::spawn_blocking(move || {
        let file = job_files::open_file_below(&root, Path::new("Dockerrun.aws.json"))?;
        job_files::read_plain(file, "Dockerrun.aws.json", 1 << 20)
    })
    .await
    .map_err(|e| e.to_string())?;
    match read {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| "Dockerrun.aws.json is not UTF-8".to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read Dockerrun.aws.json: {e}")),
    }
}

pub async fn deploy(
    eb: &ElasticBeanstalk,
    aws: &Aws,
    t: &Target<'_>,
    p: &mut LogPipeline,
) -> Result<(), String> {
    let app = eb
        .app
        .as_deref()
        .map(|a| expand(a, t.env))
        .unwrap_or_else(|| {
            t.repo
                .full_name
                .rsplit('/')
                .next()
                .unwrap_or(&t.repo.full_name)
                .to_string()
        });
    let env_name = eb
        .env
        .as_deref()
        .map(|e| expand(e, t.env))
        .or_else(|| t.env.get("ELASTIC_BEANSTALK_ENV").cloned())
        .filter(|e| !e.is_empty());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let label = eb
        .label
        .as_deref()
        .map(|l| expand(l, t.env))
        .or_else(|| t.env.get("ELASTIC_BEANSTALK_LABEL").cloned())
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| format!("gantry-{}-{now}", t.build.commit));
    let text = eb
        .description
        .as_deref()
        .map(|d| expand(d, t.env))
        .or_else(|| t.env.get("ELASTIC_BEANSTALK_DESCRIPTION").cloned())
        .unwrap_or_else(|| t.build.message.clone());
    let bucket = expand(&eb.bucket, t.env);
    let key = match eb.bucket_path.as_deref().map(|b| expand(b, t.env)) {
        Some(path) if !path.trim_matches('/').is_empty() => {
            format!("{}/{label}.zip", path.trim_matches('/'))
        }
        _ => format!("{label}.zip"),
    };

    // 1. The bundle.
    // A name of the runner's, not the label: a label is the user's text.
    let zip = t.scratch.join("bundle.zip");
    tokio::fs::create_dir_all(t.scratch)
        .await
        .map_err(|e| format!("cannot create {}: {e}", t.scratch.display()))?;
    let workspace = t.workspace.to_path_buf();
    let files = if let Some(file) = &eb.zip_file {
        // The user's own bundle is uploaded as it is, copied out of the
        // workspace through open folders (never through a link).
        let file = expand(file, t.env);
        let out = zip.clone();
        let relative = PathBuf::from(&file);
        tokio::task::spawn_blocking(move || {
            let mut from = job_files::open_file_below(&workspace, &relative)?;
            std::io::copy(&mut from, &mut std::fs::File::create(&out)?)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!(
                "zip_file `{file}` does not exist in the workspace: build it in `script` or `before_deploy`"
            ),
            _ => format!("zip_file `{file}` cannot be uploaded: {e}"),
        })?;
        p.say(&format!("Using {file} as the source bundle")).await;
        None
    } else if eb.dockerrun {
        let existing = read_dockerrun(&workspace).await?;
        let doc = bundle::dockerrun(existing.as_deref(), t.images, eb.container_port)?;
        p.say("Dockerrun.aws.json for this deploy:").await;
        for line in doc.lines() {
            p.say(&format!("  {line}")).await;
        }
        let out = zip.clone();
        Some(
            tokio::task::spawn_blocking(move || bundle::zip_dockerrun(&workspace, &doc, &out))
                .await
                .map_err(|e| e.to_string())??,
        )
    } else {
        let out = zip.clone();
        Some(
            tokio::task::spawn_blocking(move || bundle::zip_workspace(&workspace, &out))
                .await
                .map_err(|e| e.to_string())??,
        )
    };
    if let Some(files) = files {
        p.say(&format!("Zipped {files} file(s) into {label}.zip"))
            .await;
    }

    // 2. Up to S3.
    let s3 = aws.s3(Service::ElasticBeanstalk, false);
    if s3.head_bucket().bucket(&bucket).send().await.is_err() {
        p.say(&format!("Creating bucket {bucket}")).await;
        let mut create = s3.create_bucket().bucket(&bucket);
        let region = aws
            .config
            .region()
            .map(|r| r.to_string())
            .unwrap_or_default();
        if region != "us-east-1" && !region.is_empty() {
            create = create.create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                        region.as_str(),
                    ))
                    .build(),
            );
        }
        create
            .send()
            .await
            .map_err(|e| format!("creating bucket {bucket} failed: {}", describe(&e)))?;
    }
    let body = ByteStream::from_path(&zip)
        .await
        .map_err(|e| format!("cannot read the bundle: {e}"))?;
    s3.put_object()
        .bucket(&bucket)
        .key(&key)
        .body(body)
        .send()
        .await
        .map_err(|e| {
            format!(
                "uploading the bundle to s3://{bucket}/{key} failed: {}",
                describe(&e)
            )
        })?;
    p.say(&format!("Uploaded s3://{bucket}/{key}")).await;

    // 3. The application version.
    let client = aws.elasticbeanstalk();
    client
        .create_application_version()
        .application_name(&app)
        .version_label(&label)
        .description(description(&text))
        .source_bundle(
            S3Location::builder()
                .s3_bucket(&bucket)
                .s3_key(&key)
                .build(),
        )
        .auto_create_application(false)
        .send()
        .await
        .map_err(|e| format!("CreateApplicationVersion failed: {}", describe(&e)))?;
    p.say(&format!("Created application version {label} of {app}"))
        .await;
    let Some(env_name) = env_name.filter(|_| !eb.only_create_app_version) else {
        p.say("Only the application version was created (no environment to update)")
            .await;
        return Ok(());
    };

    // 4. The environment.
    let current = client
        .describe_environments()
        .application_name(&app)
        .environment_names(&env_name)
        .send()
        .await
        .map_err(|e| format!("DescribeEnvironments failed: {}", describe(&e)))?;
    let Some(before) = current.environments().first() else {
        return Err(format!(
            "Elastic Beanstalk has no environment {env_name} in {app}"
        ));
    };
    let previous = before.version_label().map(str::to_string);
    let started = DateTime::from(SystemTime::now() - Duration::from_secs(1));
    client
        .update_environment()
        .application_name(&app)
        .environment_name(&env_name)
        .version_label(&label)
        .send()
        .await
        .map_err(|e| format!("UpdateEnvironment failed: {}", describe(&e)))?;
    p.say(&format!(
        "Deploying {label} to {env_name}{}",
        previous
            .as_deref()
            .map(|v| format!(" (was {v})"))
            .unwrap_or_default()
    ))
    .await;
    if !eb.wait_until_deployed {
        return Ok(());
    }
    let timeout = Duration::from_secs(eb.wait_until_deployed_timeout);
    let mut seen = HashSet::new();
    let waiter = Waiter {
        client: &client,
        app: &app,
        env: &env_name,
        timeout,
        since: started,
    };
    let failure = match waiter.wait(&label, &mut seen, t, p).await {
        Ok(()) => {
            p.say(&format!(
                "\x1b[32;1m{env_name} is Ready and Green on {label}\x1b[0m"
            ))
            .await;
            return Ok(());
        }
        Err(e) => e,
    };
    p.say(&format!("\x1b[31;1m{failure}\x1b[0m")).await;
    match previous.filter(|prev| eb.rollback && *prev != label) {
        Some(prev) => {
            p.say(&format!("Rolling back {env_name} to {prev}")).await;
            client
                .update_environment()
                .application_name(&app)
                .environment_name(&env_name)
                .version_label(&prev)
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "{failure}; rolling back failed: UpdateEnvironment: {}",
                        describe(&e)
                    )
                })?;
            let waited = waiter.wait(&prev, &mut seen, t, p).await;
            let back = format!("{env_name} is Ready and Green on {prev}");
            super::after_rollback(waited, &failure, &prev, &back, p).await
        }
        None => Err(failure),
    }
}

struct Waiter<'a> {
    client: &'a Client,
    app: &'a str,
    env: &'a str,
    timeout: Duration,
    since: DateTime,
}

impl Waiter<'_> {
    /// Polls until the environment runs `label`, Ready and Green; fails on an
    /// ERROR event, Red health, or the environment settling on another version.
    async fn wait(
        &self,
        label: &str,
        seen: &mut HashSet<(i64, u32, String)>,
        t: &Target<'_>,
        p: &mut LogPipeline,
    ) -> Result<(), String> {
        let start = Instant::now();
        let mut last_state = String::new();
        let mut polls = 0u32;
        let mut saw_update = false;
        loop {
            super::pause(start, t.cancel).await?;
            polls += 1;
            let events = self
                .client
                .describe_events()
                .application_name(self.app)
                .environment_name(self.env)
                .start_time(self.since)
                .send()
                .await
                .map_err(|e| format!("DescribeEvents failed: {}", describe(&e)))?;
            // EB lists the newest first; oldest first reads as a story (ties keep EB's order).
            let mut events: Vec<_> = events.events().iter().rev().cloned().collect();
            events.sort_by_key(|e| e.event_date().map(|d| (d.secs(), d.subsec_nanos())));
            let mut error = None;
            for event in events {
                let date = event.event_date().map(|d| (d.secs(), d.subsec_nanos()));
                let message = event.message().unwrap_or_default().to_string();
                let (secs, nanos) = date.unwrap_or((0, 0));
                if !seen.insert((secs, nanos, message.clone())) {
                    continue;
                }
                let severity = event
                    .severity()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default();
                let when = event
                    .event_date()
                    .and_then(|d| {
                        d.fmt(aws_sdk_elasticbeanstalk::primitives::DateTimeFormat::DateTime)
                            .ok()
                    })
                    .unwrap_or_default();
                p.say(&format!(
                    "[Elastic Beanstalk] {when} {severity:<5} {message}"
                ))
                .await;
                if event.severity() == Some(&EventSeverity::Error) && error.is_none() {
                    error = Some(message);
                }
            }
            if let Some(message) = error {
                return Err(format!("Elastic Beanstalk reported an error: {message}"));
            }
            let out = self
                .client
                .describe_environments()
                .application_name(self.app)
                .environment_names(self.env)
                .send()
                .await
                .map_err(|e| format!("DescribeEnvironments failed: {}", describe(&e)))?;
            let Some(env) = out.environments().first() else {
                return Err(format!("environment {} disappeared", self.env));
            };
            let status = env.status().cloned();
            let health = env.health().cloned();
            let version = env.version_label().unwrap_or_default();
            let state = format!(
                "{}: {}, health {}, version {version}",
                self.env,
                status.as_ref().map(|s| s.as_str()).unwrap_or("?"),
                health.as_ref().map(|h| h.as_str()).unwrap_or("?"),
            );
            if state != last_state {
                p.say(&state).await;
                last_state = state;
            }
            if status != Some(EnvironmentStatus::Ready) {
                saw_update = true;
            } else if health == Some(EnvironmentHealth::Red) {
                return Err(format!("{} is Red after deploying {label}", self.env));
            } else if version == label && health == Some(EnvironmentHealth::Green) {
                return Ok(());
            } else if version != label && (saw_update || polls >= 3) {
                return Err(format!(
                    "{} settled on version {version}, not {label}",
                    self.env
                ));
            }
            if start.elapsed() >= self.timeout {
                return Err(format!(
                    "Deploy status unknown: {} did not become Ready and Green on {label} within {} seconds (wait_until_deployed_timeout)",
                    self.env,
                    self.timeout.as_secs()
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_cut_and_cleaned() {
        assert_eq!(description("fix\u{0}: the bug"), "fix: the bug");
        assert_eq!(description(&"x".repeat(300)).len(), 200);
    }
}
