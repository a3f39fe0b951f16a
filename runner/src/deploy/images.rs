//! `images:` — build each image from the workspace, tag it and push it to its
//! registry (Docker Hub, any v2 registry, or ECR with a token from
//! GetAuthorizationToken). The engine's push stream becomes a few readable
//! lines; layers the registry already has are not uploaded again.

use super::aws::{describe, Aws};
use super::values::{expand, secret_or_env};
use crate::docker::Docker;
use crate::logs::LogPipeline;
use base64::Engine;
use bollard::auth::DockerCredentials;
use gantry_pipeline::{AwsAccess, ImagePush};
use gantry_protocol::{Assignment, SecretVar};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// An image now in its registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedImage {
    /// `registry/repo` without a tag.
    pub name: String,
    pub tags: Vec<String>,
}

impl PushedImage {
    /// `name:first-tag`, what a deploy points at.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.name, self.tags[0])
    }
}

/// The registry an image name lives in (`docker.io` when it names none).
pub fn registry_of(name: &str) -> &str {
    match name.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

/// `123456789012.dkr.ecr.us-east-1.amazonaws.com` → its region.
pub fn ecr_region(registry: &str) -> Option<&str> {
    let parts: Vec<&str> = registry.split('.').collect();
    let is_ecr = parts.len() >= 6
        && parts[0].len() == 12
        && parts[0].bytes().all(|b| b.is_ascii_digit())
        && parts[1] == "dkr"
        && parts[2].starts_with("ecr")
        && parts[4] == "amazonaws";
    is_ecr.then(|| parts[3])
}

/// A Docker tag from a template: expanded, with characters Docker refuses replaced.
fn tag_from(template: &str, env: &BTreeMap<String, String>) -> String {
    let tag: String = expand(template, env)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let tag = tag.trim_start_matches(['.', '-']);
    tag.chars().take(128).collect()
}

/// What the push stream said, folded into counts.
#[derive(Default)]
struct PushSummary {
    pushed: usize,
    existed: usize,
    mounted: usize,
    digest: Option<String>,
    other: Vec<String>,
}

impl PushSummary {
    fn record(&mut self, status: &str) {
        match status {
            "Pushed" => self.pushed += 1,
            "Layer already exists" => self.existed += 1,
            s if s.starts_with("Mounted from") => self.mounted += 1,
            "Preparing" | "Waiting" | "Pushing" => {}
            s if s.contains("digest: ") => self.digest = Some(s.to_string()),
            s if s.starts_with("The push refers to") => {}
            s => self.other.push(s.to_string()),
        }
    }
}

pub struct ImageContext<'a> {
    pub docker: &'a Docker,
    pub assignment: &'a Assignment,
    pub workspace: &'a Path,
    pub git_objects: Option<&'a Path>,
    pub env: &'a BTreeMap<String, String>,
    pub secrets: &'a [SecretVar],
    /// AWS access of the job's first AWS deploy, for ECR logins.
    pub aws: Option<&'a AwsAccess>,
}

/// Builds and pushes every image, stopping at the first failure.
pub async fn push_all(
    cx: &ImageContext<'_>,
    images: &[ImagePush],
    p: &mut LogPipeline,
) -> Result<Vec<PushedImage>, String> {
    let mut pushed = Vec::new();
    for image in images {
        pushed.push(push_one(cx, image, p).await?);
    }
    Ok(pushed)
}

async fn push_one(
    cx: &ImageContext<'_>,
    image: &ImagePush,
    p: &mut LogPipeline,
) -> Result<PushedImage, String> {
    let mut tags: Vec<String> = Vec::new();
    for template in &image.tags {
        let tag = tag_from(template, cx.env);
        if tag.is_empty() {
            p.say(&format!(
                "Tag `{template}` of {} is empty in this build; not pushed",
                image.name
            ))
            .await;
        } else if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    if tags.is_empty() {
        return Err(format!("{} has no tag to push in this build", image.name));
    }
    let first = format!("{}:{}", image.name, tags[0]);
    p.say(&format!(
        "\x1b[33;1m$ docker build -f {} -t {first} {}\x1b[0m",
        image.build.dockerfile, image.build.context
    ))
    .await;
    let a = cx.assignment;
    let mut labels: HashMap<String, String> = HashMap::from([
        (
            "org.opencontainers.image.revision".to_string(),
            a.build.commit.clone(),
        ),
        (
            "org.opencontainers.image.source".to_string(),
            format!("https://github.com/{}", a.repo.full_name),
        ),
        ("gantry.repo".to_string(), a.repo.full_name.clone()),
        ("gantry.build".to_string(), a.build.number.to_string()),
    ]);
    if let Some(url) = &a.web_url {
        labels.insert("gantry.build-url".to_string(), url.clone());
        labels.insert("org.opencontainers.image.url".to_string(), url.clone());
    }
    let mut lines = Vec::new();
    let mut progress = |line: String| lines.push(line);
    let built = cx
        .docker
        .build_image(
            cx.workspace,
            cx.git_objects,
            &image.build,
            &first,
            labels,
            &mut progress,
        )
        .await;
    for line in lines {
        p.say(&line).await;
    }
    built.map_err(|e| e.to_string())?;
    for tag in &tags[1..] {
        cx.docker
            .tag_image(&first, &image.name, tag)
            .await
            .map_err(|e| e.to_string())?;
    }

    let registry = registry_of(&image.name);
    let credentials = login(cx, image, registry, p).await?;
    for tag in &tags {
        p.say(&format!(
            "\x1b[33;1m$ docker push {}:{tag}\x1b[0m",
            image.name
        ))
        .await;
        let mut summary = PushSummary::default();
        let mut record = |status: &str| summary.record(status);
        cx.docker
            .push_image(&image.name, tag, credentials.clone(), &mut record)
            .await
            .map_err(|e| format!("pushing {}:{tag} to {registry} failed: {e}", image.name))?;
        for line in &summary.other {
            p.say(line).await;
        }
        p.say(&format!(
            "{} layer(s) uploaded, {} already in {registry}{}",
            summary.pushed,
            summary.existed + summary.mounted,
            if summary.mounted > 0 {
                format!(" ({} mounted from another repository)", summary.mounted)
            } else {
                String::new()
            }
        ))
        .await;
        if let Some(digest) = summary.digest {
            p.say(&digest).await;
        }
    }
    Ok(PushedImage {
        name: image.name.clone(),
        tags,
    })
}

/// Registry credentials: the named secrets, or an ECR token.
async fn login(
    cx: &ImageContext<'_>,
    image: &ImagePush,
    registry: &str,
    p: &mut LogPipeline,
) -> Result<Option<DockerCredentials>, String> {
    let server = if registry == "docker.io" {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    };
    if let Some(names) = &image.credentials {
        let user = secret_or_env(&names.username, cx.env, cx.secrets);
        let password = secret_or_env(&names.password, cx.env, cx.secrets);
        let (Some(user), Some(password)) = (user, password) else {
            return Err(format!(
                "the registry login for {} needs the secrets {} and {}; set them with `PUT /api/repos/{}/secrets/NAME`",
                image.name, names.username, names.password, cx.assignment.repo.full_name
            ));
        };
        return Ok(Some(DockerCredentials {
            username: Some(user),
            password: Some(password),
            serveraddress: Some(server),
            ..Default::default()
        }));
    }
    let Some(region) = ecr_region(registry) else {
        return Ok(None);
    };
    let mut access = cx.aws.cloned().unwrap_or_default();
    access.region = region.to_string();
    let aws = Aws::load(&access, cx.env, cx.secrets).await;
    p.say(&format!("Logging in to Amazon ECR ({registry})"))
        .await;
    let out = aws
        .ecr()
        .get_authorization_token()
        .send()
        .await
        .map_err(|e| format!("ECR GetAuthorizationToken failed: {}", describe(&e)))?;
    let token = out
        .authorization_data()
        .first()
        .and_then(|d| d.authorization_token())
        .ok_or("ECR returned no authorization token")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or("ECR returned an authorization token that is not base64 `user:password`")?;
    let (user, password) = decoded
        .split_once(':')
        .ok_or("ECR returned an authorization token without `user:password`")?;
    Ok(Some(DockerCredentials {
        username: Some(user.to_string()),
        password: Some(password.to_string()),
        serveraddress: Some(format!("https://{registry}")),
        ..Default::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_read_from_names() {
        assert_eq!(registry_of("example/web"), "docker.io");
        assert_eq!(registry_of("nginx"), "docker.io");
        assert_eq!(registry_of("127.0.0.1:5000/team/web"), "127.0.0.1:5000");
        assert_eq!(registry_of("localhost/web"), "localhost");
        assert_eq!(
            ecr_region(registry_of(
                "123456789012.dkr.ecr.eu-central-1.amazonaws.com/orders"
            )),
            Some("eu-central-1")
        );
        assert_eq!(ecr_region("ghcr.io"), None);
    }

    #[test]
    fn tags_are_expanded_and_made_valid() {
        let env: BTreeMap<String, String> =
            [("GANTRY_BRANCH", "feature/login"), ("GANTRY_COMMIT", "abc")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        assert_eq!(tag_from("$GANTRY_BRANCH", &env), "feature-login");
        assert_eq!(tag_from("v-$GANTRY_COMMIT", &env), "v-abc");
        assert_eq!(tag_from("$GANTRY_TAG", &env), "");
    }
}
