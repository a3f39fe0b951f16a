//! `provider: codedeploy` — dpl's CodeDeploy: one CreateDeployment of an
//! application revision to a deployment group. The revision is a bundle in
//! S3 (`bucket`, `key`; its ETag and version read first, as dpl does, so a
//! missing bundle fails here and not on the instances) or the build's commit
//! on GitHub. With `wait_until_deployed`, GetDeployment is polled until the
//! deployment succeeds, fails (with CodeDeploy's error) or runs out of time.

use super::aws::{describe, Aws, Service};
use super::values::expand;
use super::Target;
use crate::logs::LogPipeline;
use aws_sdk_codedeploy::types::{
    BundleType, DeploymentStatus, FileExistsBehavior, GitHubLocation, RevisionLocation,
    RevisionLocationType, S3Location,
};
use gantry_pipeline::Codedeploy;
use std::time::{Duration, Instant};

pub async fn deploy(
    cd: &Codedeploy,
    aws: &Aws,
    t: &Target<'_>,
    p: &mut LogPipeline,
) -> Result<(), String> {
    let x = |text: &str| expand(text, t.env);
    let application = x(&cd.application);
    let group = cd.deployment_group.as_deref().map(x);
    let (revision, shown) = revision(cd, aws, t).await?;
    let description = cd
        .description
        .as_deref()
        .map(x)
        .unwrap_or_else(|| format!("Deploy build {} via Gantry", t.build.number));
    let client = aws.codedeploy();
    let mut request = client
        .create_deployment()
        .application_name(&application)
        .revision(revision)
        .description(description);
    if let Some(group) = &group {
        request = request.deployment_group_name(group);
    }
    if let Some(behavior) = &cd.file_exists_behavior {
        request = request.file_exists_behavior(FileExistsBehavior::from(
            behavior.to_ascii_uppercase().as_str(),
        ));
    }
    let created = request
        .send()
        .await
        .map_err(|e| format!("CreateDeployment failed: {}", describe(&e)))?;
    let id = created.deployment_id().unwrap_or_default().to_string();
    let to = group
        .as_deref()
        .map(|g| format!(" to {g}"))
        .unwrap_or_default();
    p.say(&format!(
        "Triggered deployment {id} of {application}{to}: {shown}"
    ))
    .await;
    if !cd.wait_until_deployed {
        return Ok(());
    }
    wait(&client, &id, cd.wait_until_deployed_timeout, t, p).await
}

/// Where the revision is, and how the log names it.
async fn revision(
    cd: &Codedeploy,
    aws: &Aws,
    t: &Target<'_>,
) -> Result<(RevisionLocation, String), String> {
    let x = |text: &str| expand(text, t.env);
    let kind = cd.revision_type.clone().unwrap_or_else(|| {
        if cd.bucket.is_some() {
            "s3".into()
        } else {
            "github".into()
        }
    });
    if kind == "github" {
        let repository = cd
            .repository
            .as_deref()
            .map(x)
            .unwrap_or_else(|| t.repo.full_name.clone());
        let commit = cd
            .commit_id
            .as_deref()
            .map(x)
            .unwrap_or_else(|| t.build.commit.clone());
        let location = GitHubLocation::builder()
            .repository(&repository)
            .commit_id(&commit)
            .build();
        let revision = RevisionLocation::builder()
            .revision_type(RevisionLocationType::GitHub)
            .git_hub_location(location)
            .build();
        return Ok((revision, format!("{repository}@{commit}")));
    }
    let bucket = cd
        .bucket
        .as_deref()
        .map(x)
        .filter(|b| !b.is_empty())
        .ok_or("an S3 revision needs `bucket` (and `key`); or set revision_type: github")?;
    let key = cd
        .key
        .as_deref()
        .map(x)
        .filter(|k| !k.is_empty())
        .ok_or("an S3 revision needs `key`, the bundle's name in the bucket")?;
    let bundle = match &cd.bundle_type {
        Some(bundle) => bundle.clone(),
        None => bundle_type(&key).ok_or_else(|| {
            format!("cannot tell the bundle type of `{key}` from its name: set bundle_type (tar, tgz or zip)")
        })?,
    };
    let head = aws
        .s3(Service::CodeDeploy, false)
        .head_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .map_err(|e| {
            format!(
                "the revision s3://{bucket}/{key} cannot be read: {}",
                describe(&e)
            )
        })?;
    let mut location = S3Location::builder()
        .bucket(&bucket)
        .key(&key)
        .bundle_type(BundleType::from(bundle.as_str()));
    if let Some(etag) = head.e_tag() {
        location = location.e_tag(etag.trim_matches('"'));
    }
    if let Some(version) = head.version_id() {
        location = location.version(version);
    }
    let revision = RevisionLocation::builder()
        .revision_type(RevisionLocationType::S3)
        .s3_location(location.build())
        .build();
    Ok((revision, format!("s3://{bucket}/{key} ({bundle})")))
}

/// dpl's reading of a key's extension.
fn bundle_type(key: &str) -> Option<String> {
    let lower = key.to_ascii_lowercase();
    let kind = if lower.ends_with(".zip") {
        "zip"
    } else if lower.ends_with(".tgz") || lower.ends_with(".tar.gz") {
        "tgz"
    } else if lower.ends_with(".tar") {
        "tar"
    } else if lower.ends_with(".yaml") || lower.ends_with(".yml") {
        "YAML"
    } else if lower.ends_with(".json") {
        "JSON"
    } else {
        return None;
    };
    Some(kind.to_string())
}

async fn wait(
    client: &aws_sdk_codedeploy::Client,
    id: &str,
    timeout: u64,
    t: &Target<'_>,
    p: &mut LogPipeline,
) -> Result<(), String> {
    let started = Instant::now();
    let mut last: Option<DeploymentStatus> = None;
    loop {
        let got = client
            .get_deployment()
            .deployment_id(id)
            .send()
            .await
            .map_err(|e| format!("GetDeployment {id} failed: {}", describe(&e)))?;
        let info = got.deployment_info();
        let status = info.and_then(|i| i.status()).cloned();
        if status != last {
            if let Some(status) = &status {
                p.say(&format!("Deployment {id} is {}", status.as_str()))
                    .await;
            }
            last = status.clone();
        }
        match status {
            Some(DeploymentStatus::Succeeded) => return Ok(()),
            Some(status @ (DeploymentStatus::Failed | DeploymentStatus::Stopped)) => {
                let why = info
                    .and_then(|i| i.error_information())
                    .map(|e| {
                        format!(
                            ": {}: {}",
                            e.code().map(|c| c.as_str()).unwrap_or("error"),
                            e.message().unwrap_or("")
                        )
                    })
                    .unwrap_or_default();
                return Err(format!("deployment {id} {}{why}", status.as_str()));
            }
            _ => {}
        }
        if started.elapsed() >= Duration::from_secs(timeout) {
            let status = last.as_ref().map(|s| s.as_str()).unwrap_or("unknown");
            return Err(format!(
                "deployment {id} is still {status} after {timeout} s (wait_until_deployed_timeout)"
            ));
        }
        super::pause(started, t.cancel).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_type_is_read_from_the_key_as_dpl_reads_it() {
        assert_eq!(bundle_type("app/build-12.zip").as_deref(), Some("zip"));
        assert_eq!(bundle_type("app.tar.gz").as_deref(), Some("tgz"));
        assert_eq!(bundle_type("app.TGZ").as_deref(), Some("tgz"));
        assert_eq!(bundle_type("app.tar").as_deref(), Some("tar"));
        assert_eq!(bundle_type("appspec.yml").as_deref(), Some("YAML"));
        assert_eq!(bundle_type("master"), None);
    }
}
