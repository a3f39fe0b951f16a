//! Delivery end to end, through the real `gantry server` binary: a push of
//! `pipeline-examples/node-elasticbeanstalk` runs its tests in the image
//! built from `Dockerfile.dev`, pushes the production image to a real
//! registry, uploads the bundle to S3 (moto) and deploys it to Elastic
//! Beanstalk (the testkit's emulator), waiting for Green; a broken bundle is
//! rolled back. An ECS service moves to a new revision and back on failure.
//! AWS endpoints reach the runner the standard way: `AWS_ENDPOINT_URL_<SERVICE>`.

mod support;

use gantry_testkit::aws::ecs::Ecs;
use gantry_testkit::aws::elasticbeanstalk::ElasticBeanstalk;
use gantry_testkit::aws::moto::Moto;
use gantry_testkit::git::Repo;
use gantry_testkit::github::GitHubDouble;
use gantry_testkit::registry::Registry;
use gantry_testkit::webhook::{fixture, point_push};
use serde_json::Value;
use std::path::Path;
use support::*;

const ADMIN: &str = "e2e-admin-token-0123456789";
const KEY_ID: &str = "AKIADELIVERYE2E0001";
const SECRET_KEY: &str = "delivery-e2e-secret-access-key-0123456789";
const REGISTRY_TOKEN: &str = "registry-token-e2e-0123456789";

fn example(registry: &str) -> Vec<(String, String)> {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipeline-examples/node-elasticbeanstalk");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let mut text = std::fs::read_to_string(entry.path()).unwrap();
        if name == ".travis.yml" {
            // The one change a user makes: their own registry.
            text = text.replace("ghcr.io/example", &format!("{registry}/example"));
        }
        files.push((name, text));
    }
    files
}

/// Commits `files` and returns the push payload for the new head.
fn commit(
    github: &GitHubDouble,
    repo: &Repo,
    files: &[(String, String)],
    message: &str,
) -> (Value, String) {
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let sha = repo.commit(&borrowed, message);
    let mut payload = fixture("push", "go-playground.push.json");
    let full_name = payload["repository"]["full_name"]
        .as_str()
        .unwrap()
        .to_string();
    github.add_repo(&full_name, repo.path.clone());
    point_push(
        &mut payload,
        &repo.path.display().to_string(),
        &sha,
        message,
    );
    (payload, full_name)
}

async fn set_secret(gantry: &Gantry, repo: &str, name: &str, value: &str) {
    let response = gantry
        .http
        .put(format!("{}/api/repos/{repo}/secrets/{name}", gantry.url))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"value": value}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

fn assert_no_secret(log: &str) {
    for secret in [KEY_ID, SECRET_KEY, REGISTRY_TOKEN] {
        assert!(!log.contains(secret), "a secret reached the log:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_node_example_is_tested_pushed_and_deployed_to_elastic_beanstalk_then_a_broken_bundle_rolls_back(
) {
    require_image();
    let github = GitHubDouble::start().await;
    let registry = Registry::start();
    let moto = Moto::start(0);
    let eb = ElasticBeanstalk::start(&moto.url()).await;
    eb.create_environment("docker-react", "DockerReact-env", "v0");
    let files = example(&registry.host());
    let repo = Repo::new();
    let (payload, full_name) = commit(&github, &repo, &files, "Greet Gantry");
    let data = tempfile::tempdir().unwrap();
    let gantry = start(
        data.path(),
        &github.url,
        &[
            ("GANTRY_SECRET_KEY", "e2e-secret-key-0123456789"),
            ("AWS_ENDPOINT_URL_S3", &moto.url()),
            ("AWS_ENDPOINT_URL_ELASTIC_BEANSTALK", &eb.url()),
        ],
    );
    // As on GitHub: adding the webhook pings, then the secrets are set, then the push.
    gantry.ping(&payload["repository"]).await;
    for (name, value) in [
        ("AWS_ACCESS_KEY_ID", KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ("REGISTRY_USER", "deployer-e2e"),
        ("REGISTRY_TOKEN", REGISTRY_TOKEN),
    ] {
        set_secret(&gantry, &full_name, name, value).await;
    }

    gantry.push(&payload, "delivery-1").await;
    let build = gantry.finished(&full_name, 1).await;
    let log = gantry.log(&build["jobs"][0]).await;
    assert_eq!(build["state"], "passed", "{log}");
    assert_no_secret(&log);
    let sha = payload["after"].as_str().unwrap().to_string();
    assert!(
        log.contains("ok - greeting"),
        "npm test ran in the Dockerfile.dev image: {log}"
    );

    let mut tags = registry.tags("example/docker-react").await;
    tags.sort();
    assert_eq!(tags, [sha.clone(), "latest".to_string()], "{log}");

    let env = eb.environment("DockerReact-env").unwrap();
    let label = env.version_label.clone();
    assert!(label.starts_with(&format!("gantry-{sha}-")), "{label}");
    assert_eq!(
        (env.status.as_str(), env.health.as_str()),
        ("Ready", "Green")
    );
    let version = eb
        .versions("docker-react")
        .into_iter()
        .find(|v| v.label == label)
        .unwrap();
    assert_eq!(version.bucket, "elasticbeanstalk-us-east-1-123456789012");
    assert_eq!(version.key, format!("docker-react/{label}.zip"));
    assert_eq!(version.description, "Greet Gantry");
    let bundle = moto
        .object(&version.bucket, &version.key)
        .await
        .expect("the bundle is in S3");
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bundle)).unwrap();
    assert!(zip.by_name("Dockerfile").is_ok() && zip.by_name("server.js").is_ok());
    assert!(
        log.contains("Environment update completed successfully."),
        "{log}"
    );
    assert!(
        log.contains(&format!("DockerReact-env is Ready and Green on {label}")),
        "{log}"
    );

    // A commit whose bundle leaves the Dockerfile out: EB cannot run it.
    let mut broken = files.clone();
    broken.push((".ebignore".into(), "Dockerfile\nDockerfile.dev\n".into()));
    let (payload, _) = commit(&github, &repo, &broken, "Ship without a Dockerfile");
    gantry.push(&payload, "delivery-2").await;
    let build = gantry.finished(&full_name, 2).await;
    let job = &build["jobs"][0];
    let log = gantry.log(job).await;
    assert_eq!(build["state"], "failed", "{log}");
    assert_no_secret(&log);
    assert!(
        log.contains("Both 'Dockerfile' and 'Dockerrun.aws.json' are missing"),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "Rolled back: DockerReact-env is Ready and Green on {label}"
        )),
        "{log}"
    );
    let reason = job["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("failed to deploy with elasticbeanstalk") && reason.contains("rolled back"),
        "{reason}"
    );
    let env = eb.environment("DockerReact-env").unwrap();
    assert_eq!(
        (env.version_label.as_str(), env.health.as_str()),
        (label.as_str(), "Green")
    );

    let _ = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "docker images -q '{}/example/docker-react' | xargs -r docker rmi -f",
            registry.host()
        ))
        .output();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ecs_service_moves_to_the_new_revision_and_back_when_the_rollout_fails() {
    require_image();
    let github = GitHubDouble::start().await;
    let ecs = Ecs::start("us-east-1").await;
    let definition: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/fixtures/aws/ecs-taskdef/aws-samples__aws-containers-task-definitions__tomcat-tomcat_ec2.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let container = definition["containerDefinitions"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    ecs.create_service("production", "orders", &definition, 2);
    let pipeline = format!(
        "image: {IMAGE}\nscript: true\ndeploy:\n  provider: ecs\n  region: us-east-1\n  cluster: production\n  service: orders\n  container: {container}\n  image: registry.example/orders:$TRAVIS_COMMIT\n  timeout: 60\n  rollback: true\n  on: {{branch: master}}\n"
    );
    let (repo, payload, full_name) = pushed(&github, &pipeline, &[]);
    let data = tempfile::tempdir().unwrap();
    let gantry = start(
        data.path(),
        &github.url,
        &[
            ("GANTRY_SECRET_KEY", "e2e-secret-key-0123456789"),
            ("AWS_ENDPOINT_URL_ECS", &ecs.url()),
            ("AWS_ACCESS_KEY_ID", "runner-chain-key"),
            ("AWS_SECRET_ACCESS_KEY", "runner-chain-secret"),
        ],
    );
    gantry.push(&payload, "ecs-1").await;
    let build = gantry.finished(&full_name, 1).await;
    let log = gantry.log(&build["jobs"][0]).await;
    assert_eq!(build["state"], "passed", "{log}");
    let revision = ecs.service_task_definition("orders").unwrap();
    assert!(revision.ends_with(":2"), "{revision}");
    let sha = payload["after"].as_str().unwrap();
    let registered = ecs.task_definition(&revision).unwrap();
    assert_eq!(
        registered["containerDefinitions"][0]["image"],
        format!("registry.example/orders:{sha}")
    );
    assert!(log.contains("orders is stable on"), "{log}");

    ecs.fail_next_deployment();
    let sha2 = repo.commit(&[("CHANGELOG", "2")], "Second");
    let mut payload = fixture("push", "go-playground.push.json");
    point_push(
        &mut payload,
        &repo.path.display().to_string(),
        &sha2,
        "Second",
    );
    gantry.push(&payload, "ecs-2").await;
    let build = gantry.finished(&full_name, 2).await;
    let log = gantry.log(&build["jobs"][0]).await;
    assert_eq!(build["state"], "failed", "{log}");
    assert!(
        log.contains("the ECS deployment failed")
            && log.contains("Rolled back: orders is stable on"),
        "{log}"
    );
    assert_eq!(ecs.service_task_definition("orders").unwrap(), revision);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_jobs_deploying_to_one_environment_take_turns() {
    require_image();
    let github = GitHubDouble::start().await;
    let moto = Moto::start(0);
    let eb = ElasticBeanstalk::start(&moto.url()).await;
    eb.create_environment("widget", "widget-prod", "v0");
    // Slow enough that the second job reaches its deploy while the first waits for Green.
    eb.set_deployment_step(std::time::Duration::from_secs(2));
    let pipeline = format!(
        "image: {IMAGE}\nenv: [SHARD=1, SHARD=2]\nscript: true\ndeploy:\n  provider: elasticbeanstalk\n  app: widget\n  env: widget-prod\n  bucket: bundles\n  label: build-$TRAVIS_JOB_NUMBER\n"
    );
    let (_repo, payload, full_name) =
        pushed(&github, &pipeline, &[("Dockerfile", "FROM scratch\n")]);
    let data = tempfile::tempdir().unwrap();
    let gantry = start(
        data.path(),
        &github.url,
        &[
            ("GANTRY_EMBEDDED_RUNNERS", "2"),
            ("AWS_ENDPOINT_URL_S3", &moto.url()),
            ("AWS_ENDPOINT_URL_ELASTIC_BEANSTALK", &eb.url()),
            ("AWS_ACCESS_KEY_ID", "runner-chain-key"),
            ("AWS_SECRET_ACCESS_KEY", "runner-chain-secret"),
        ],
    );
    gantry.push(&payload, "turns-1").await;
    let build = gantry.finished(&full_name, 1).await;
    let mut logs = Vec::new();
    for job in build["jobs"].as_array().unwrap() {
        logs.push(gantry.log(job).await);
    }
    assert_eq!(build["state"], "passed", "{logs:#?}");
    let waited = logs
        .iter()
        .filter(|l| l.contains("Waiting to deploy to elasticbeanstalk:us-east-1/widget/widget-prod: build 1 (job 1."))
        .count();
    assert_eq!(waited, 1, "exactly one job waited for the other: {logs:#?}");
    // EB refuses an update while the environment is Updating: both got through, one after the other.
    assert_eq!(
        eb.calls()
            .iter()
            .filter(|c| *c == "UpdateEnvironment")
            .count(),
        2
    );
    let labels: Vec<String> = eb.versions("widget").into_iter().map(|v| v.label).collect();
    assert!(
        labels.contains(&"build-1.1".to_string()) && labels.contains(&"build-1.2".to_string()),
        "{labels:?}"
    );
}
