//! The deploy stage against real parts: Docker and Debian's registry for
//! `images:`, moto for S3 and ECS, and the testkit's emulators where moto
//! falls short (Elastic Beanstalk; an ECS deployment that fails). Each test
//! runs a whole job through the executor and checks what a user would: the
//! job's result, what its log says, and the state left in the service.

mod support;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use gantry_pipeline::Event;
use gantry_protocol::JobOutcome;
use gantry_testkit::aws::codedeploy::CodeDeploy;
use gantry_testkit::aws::ecs::Ecs;
use gantry_testkit::aws::elasticbeanstalk::ElasticBeanstalk;
use gantry_testkit::aws::moto::Moto;
use gantry_testkit::github::GitHubDouble;
use gantry_testkit::npm_registry::NpmRegistry;
use gantry_testkit::pypi::PackageIndex;
use gantry_testkit::registry::Registry;
use std::process::Command;
use support::*;
use tokio_util::sync::CancellationToken;

const KEY_ID: &str = "AKIAGANTRYTESTKEY01";
const SECRET_KEY: &str = "gantry-test-secret-access-key-0123456789";

fn aws_secrets() -> [(&'static str, &'static str); 2] {
    [
        ("AWS_ACCESS_KEY_ID", KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
    ]
}

async fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(KEY_ID, SECRET_KEY, None, None, "test"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

fn assert_no_secret(log: &str) {
    assert!(
        !log.contains(SECRET_KEY),
        "the secret key reached the log:\n{log}"
    );
    assert!(!log.contains(KEY_ID), "the key id reached the log:\n{log}");
}

fn remove_images(name: &str) {
    let out = Command::new("docker")
        .args(["images", "-q", "--filter", &format!("reference={name}")])
        .output()
        .unwrap();
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if !ids.is_empty() {
        // `--no-prune` keeps the untagged parent layers: tests running beside
        // this one build the same Dockerfile and use them as their cache
        // (pruning them mid-build failed such a build: "failed to get digest").
        let _ = Command::new("docker")
            .args(["rmi", "-f", "--no-prune"])
            .args(&ids)
            .output();
    }
}

const DOCKERFILE: &str = "FROM gantry-test/busybox:1\nCOPY greeting.txt /greeting.txt\nCMD [\"cat\", \"/greeting.txt\"]\n";

#[tokio::test]
async fn images_are_built_tagged_and_pushed_and_a_second_push_uploads_nothing() {
    let h = default_harness().await;
    let registry = Registry::start();
    let name = format!("{}/acme/widget", registry.host());
    let (repo, sha) = repo_with(&[("Dockerfile", DOCKERFILE), ("greeting.txt", "hello\n")]);
    let pipeline = format!(
        "image: {IMAGE}\nscript: true\nimages:\n  - name: {name}\n    tags: [$GANTRY_COMMIT, latest, $GANTRY_TAG]\n"
    );
    let a = assignment(&repo, &sha, &pipeline, &[]);
    let (outcome, log) = run(&h, &a, CancellationToken::new()).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    let mut tags = registry.tags("acme/widget").await;
    tags.sort();
    let mut want = vec![sha.clone(), "latest".to_string()];
    want.sort();
    assert_eq!(tags, want, "{log}");
    assert!(registry.manifest("acme/widget", &sha).await.is_some());
    assert!(
        log.contains(&format!("$ docker push {name}:{sha}")),
        "{log}"
    );
    assert!(
        log.contains("Tag `$GANTRY_TAG`"),
        "an empty tag is explained: {log}"
    );
    assert!(
        !log.contains("\"status\""),
        "push progress is readable lines, not JSON: {log}"
    );
    let first_uploads =
        log.contains("layer(s) uploaded") && !log.contains(" 0 layer(s) uploaded, 0 already");
    assert!(first_uploads, "{log}");

    // The same commit again: every layer is already in the registry.
    let again = assignment(&repo, &sha, &pipeline, &[]);
    let (outcome, log) = run(&h, &again, CancellationToken::new()).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    assert!(log.contains("0 layer(s) uploaded"), "{log}");
    assert!(
        !log.contains("1 layer(s) uploaded") && !log.contains("2 layer(s) uploaded"),
        "{log}"
    );

    // Pull requests never push.
    let mut pr = assignment(&repo, &sha, &pipeline, &[]);
    pr.build.event = Event::PullRequest;
    pr.build.pull_request = Some(3);
    let (outcome, log) = run(&h, &pr, CancellationToken::new()).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed);
    assert!(
        log.contains("Not pushing images: pull requests never push images"),
        "{log}"
    );
    remove_images(&name);
}

#[tokio::test]
async fn a_registry_that_refuses_the_push_fails_the_job_with_its_reason() {
    let h = default_harness().await;
    // Nothing listens here: the push cannot reach a registry.
    let port = gantry_testkit::process::free_port();
    let name = format!("127.0.0.1:{port}/acme/widget");
    let (repo, sha) = repo_with(&[("Dockerfile", DOCKERFILE), ("greeting.txt", "hello\n")]);
    let pipeline = format!("image: {IMAGE}\nscript: true\nimages:\n  - name: {name}\n");
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline, &[]).await;
    assert_eq!(outcome.outcome, JobOutcome::Failed, "{log}");
    let reason = outcome.reason.unwrap_or_default();
    assert!(
        reason.contains("pushing images failed") && reason.contains(&name),
        "{reason}"
    );
    remove_images(&name);
}

#[tokio::test]
async fn s3_uploads_a_site_with_dpl_options_and_multipart_for_large_files() {
    let h = default_harness().await;
    let moto = Moto::start(0);
    let s3 = s3_client(&moto.url()).await;
    s3.create_bucket().bucket("site").send().await.unwrap();
    let big = "0123456789abcdef".repeat(20 * 1024 * 1024 / 16 + 7);
    let (repo, sha) = repo_with(&[
        ("public/index.html", "<h1>hi</h1>"),
        ("public/css/site.css", "h1{}"),
        ("public/.hidden", "x"),
        ("public/big.bin", &big),
        ("README.md", "not uploaded"),
    ]);
    let pipeline = format!(
        "image: {IMAGE}\nscript: true\ndeploy:\n  provider: s3\n  bucket: site\n  local_dir: public\n  upload_dir: v1\n  acl: public_read\n  cache_control: [\"no-cache\", \"max-age=600: *.css\"]\n  default_text_charset: utf-8\n  endpoint: {}\n  access_key_id: $AWS_ACCESS_KEY_ID\n  secret_access_key: {{secure: \"encrypted-by-travis\"}}\n  max_threads: 2\n  on: {{branch: master}}\n",
        moto.url()
    );
    let a = assignment(&repo, &sha, &pipeline, &aws_secrets());
    let (outcome, log) = run(&h, &a, CancellationToken::new()).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    assert_no_secret(&log);
    let listed = s3.list_objects_v2().bucket("site").send().await.unwrap();
    let mut keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    keys.sort();
    assert_eq!(keys, ["v1/big.bin", "v1/css/site.css", "v1/index.html"]);
    let css = s3
        .head_object()
        .bucket("site")
        .key("v1/css/site.css")
        .send()
        .await
        .unwrap();
    assert_eq!(css.cache_control(), Some("max-age=600"));
    assert_eq!(css.content_type(), Some("text/css; charset=utf-8"));
    let html = s3
        .head_object()
        .bucket("site")
        .key("v1/index.html")
        .send()
        .await
        .unwrap();
    assert_eq!(html.cache_control(), Some("no-cache"));
    let big_head = s3
        .head_object()
        .bucket("site")
        .key("v1/big.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(big_head.content_length(), Some(big.len() as i64));
    assert!(
        big_head.e_tag().unwrap_or_default().contains('-'),
        "a multipart upload's ETag: {:?}",
        big_head.e_tag()
    );
    let acl = s3
        .get_object_acl()
        .bucket("site")
        .key("v1/index.html")
        .send()
        .await
        .unwrap();
    assert!(
        acl.grants().iter().any(|g| g
            .grantee()
            .and_then(|g| g.uri())
            .is_some_and(|u| u.ends_with("AllUsers"))),
        "public_read grants AllUsers read"
    );
    let body = moto.object("site", "v1/big.bin").await.unwrap();
    assert_eq!(body.len(), big.len());
    assert!(log.contains("Uploaded 3 file(s)"), "{log}");
}

/// The runner reads and writes in the job's folders after the job's own
/// processes ran there. A job that leaves links behind (to a folder of the
/// runner's, to its environment, in place of the next step's script) must
/// not get the runner to upload, read or overwrite its own files.
#[tokio::test]
async fn links_a_job_leaves_never_lead_the_runner_to_its_own_files() {
    let h = default_harness().await;
    let moto = Moto::start(0);
    let s3 = s3_client(&moto.url()).await;
    s3.create_bucket().bucket("site").send().await.unwrap();
    // The runner's own files, at paths the job knows but cannot reach.
    let host = tempfile::tempdir().unwrap();
    let host_dir = host.path().display().to_string();
    std::fs::write(host.path().join("secret.txt"), "runner-only").unwrap();
    std::fs::write(host.path().join("victim.sh"), "# the runner's file\n").unwrap();
    std::fs::write(host.path().join("environ"), "BUCKET_FROM_HOST=leaked\0").unwrap();
    let (repo, sha) = repo_with(&[("site/index.html", "<h1>hi</h1>")]);
    let pipeline = format!(
        "image: {IMAGE}\n\
         script:\n\
         \x20 - ln -s {host_dir}/secret.txt site/secret.txt\n\
         \x20 - ln -s {host_dir} public\n\
         \x20 - ln -s {host_dir}/victim.sh /gantry/after_script.sh\n\
         before_deploy: ln -sf {host_dir}/environ /gantry/environ\n\
         after_script: echo after-script-ran\n\
         deploy:\n\
         \x20 - provider: s3\n\
         \x20   bucket: site$BUCKET_FROM_HOST\n\
         \x20   local_dir: site\n\
         \x20   endpoint: {url}\n\
         \x20   access_key_id: $AWS_ACCESS_KEY_ID\n\
         \x20   secret_access_key: $AWS_SECRET_ACCESS_KEY\n\
         \x20   on: {{branch: master}}\n\
         \x20 - provider: s3\n\
         \x20   bucket: site\n\
         \x20   local_dir: public\n\
         \x20   endpoint: {url}\n\
         \x20   access_key_id: $AWS_ACCESS_KEY_ID\n\
         \x20   secret_access_key: $AWS_SECRET_ACCESS_KEY\n\
         \x20   on: {{branch: master}}\n",
        url = moto.url()
    );
    let a = assignment(&repo, &sha, &pipeline, &aws_secrets());
    let (outcome, log) = run(&h, &a, CancellationToken::new()).await;

    // The linked local_dir fails its deploy, and says why.
    assert_eq!(outcome.outcome, JobOutcome::Failed, "{log}");
    assert!(
        log.contains("local_dir `public` is not a directory in the workspace")
            && log.contains("goes through a link"),
        "{log}"
    );
    // The first deploy uploaded the site and left the linked file out; its
    // bucket name came from the job's environment, not the runner's file.
    let listed = s3.list_objects_v2().bucket("site").send().await.unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["index.html"], "{log}");
    assert!(
        !log.contains("leaked") && !log.contains("runner-only"),
        "{log}"
    );
    // after_script's script replaced the link instead of writing through it.
    assert!(log.contains("\nafter-script-ran"), "{log}");
    assert_eq!(
        std::fs::read_to_string(host.path().join("victim.sh")).unwrap(),
        "# the runner's file\n"
    );
    assert_no_secret(&log);
}

#[tokio::test]
async fn deploy_rules_skip_with_reasons_and_wrap_providers_in_before_and_after_deploy() {
    let h = default_harness().await;
    let (repo, sha) = repo_with(&[("a.txt", "a")]);
    let pipeline = format!(
        "image: {IMAGE}\nscript: true\nbefore_deploy: export STAMP=from-before-deploy\nafter_deploy: echo after deploy saw $STAMP\ndeploy:\n  - provider: script\n    script: echo deploying $STAMP\n    on: {{branch: master}}\n  - provider: script\n    script: echo never\n    on: {{branch: production}}\n  - provider: script\n    script: echo never\n    on:\n      condition: $STAMP = other\n  - provider: surge\n    api_key: x\n  - provider: script\n    script: exit 3\n    allow_failure: true\n"
    );
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline, &[]).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    assert!(log.contains("deploying from-before-deploy"), "{log}");
    assert!(log.contains("after deploy saw from-before-deploy"), "{log}");
    assert!(log.contains("Skipping a deployment with the script provider because branch master is not production"), "{log}");
    assert!(
        log.contains("because the condition `$STAMP = other` is not met"),
        "{log}"
    );
    assert!(
        log.contains("Skipping a deployment with the surge provider"),
        "{log}"
    );
    assert!(
        log.contains("failed, which is allowed (allow_failure)"),
        "{log}"
    );
    assert!(!log.contains("\nnever"), "{log}");
    assert!(
        outcome.phases.iter().any(|p| p.phase == "deploy"),
        "{:?}",
        outcome.phases
    );

    // A failing provider fails the job; a failing before_deploy errors it.
    let failing =
        format!("image: {IMAGE}\nscript: true\ndeploy:\n  provider: script\n  script: exit 4\n");
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &failing, &[]).await;
    assert_eq!(outcome.outcome, JobOutcome::Failed, "{log}");
    assert!(
        log.contains("Failed to deploy with the script provider: the script exited with 4"),
        "{log}"
    );
    let erroring = format!("image: {IMAGE}\nscript: true\nbefore_deploy: exit 5\ndeploy:\n  provider: script\n  script: echo never\n");
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &erroring, &[]).await;
    assert_eq!(outcome.outcome, JobOutcome::Errored, "{log}");

    // Failed jobs, pull requests and other branches never deploy.
    let fails = format!(
        "image: {IMAGE}\nscript: false\ndeploy:\n  provider: script\n  script: echo never\n"
    );
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &fails, &[]).await;
    assert_eq!(outcome.outcome, JobOutcome::Failed);
    assert!(!log.contains("Deploying with"), "{log}");
    let deploys = format!(
        "image: {IMAGE}\nscript: true\ndeploy:\n  provider: script\n  script: echo never\n"
    );
    let mut pr = assignment(&repo, &sha, &deploys, &[]);
    pr.build.event = Event::PullRequest;
    pr.build.pull_request = Some(9);
    let (_, log) = run(&h, &pr, CancellationToken::new()).await;
    assert!(log.contains("because pull requests never deploy"), "{log}");
    let mut dev = assignment(&repo, &sha, &deploys, &[]);
    dev.build.branch = "dev".into();
    let (_, log) = run(&h, &dev, CancellationToken::new()).await;
    assert!(log.contains("because branch dev is not master"), "{log}");
}

fn eb_pipeline(moto: &Moto, eb: &ElasticBeanstalk, rollback: bool) -> String {
    format!(
        "image: {IMAGE}\nenv:\n  global:\n    - AWS_ENDPOINT_URL_S3={}\nscript: true\ndeploy:\n  provider: elasticbeanstalk\n  region: us-east-1\n  app: widget\n  env: widget-prod\n  bucket: eb-bundles\n  bucket_path: widget\n  endpoint: {}\n  access_key_id: $AWS_ACCESS_KEY_ID\n  secret_access_key: $AWS_SECRET_ACCESS_KEY\n  wait_until_deployed: true\n  wait_until_deployed_timeout: 60\n  rollback: {rollback}\n",
        moto.url(),
        eb.url()
    )
}

#[tokio::test]
async fn elastic_beanstalk_deploys_the_bundle_and_waits_for_green() {
    let h = default_harness().await;
    let moto = Moto::start(0);
    let eb = ElasticBeanstalk::start(&moto.url()).await;
    eb.create_environment("widget", "widget-prod", "v0");
    let (repo, sha) = repo_with(&[
        ("Dockerfile", DOCKERFILE),
        ("greeting.txt", "hello\n"),
        ("notes/private.txt", "not shipped"),
        (".ebignore", "notes/\n"),
    ]);
    let a = assignment(&repo, &sha, &eb_pipeline(&moto, &eb, true), &aws_secrets());
    let (outcome, log) = run(&h, &a, CancellationToken::new()).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    assert_no_secret(&log);
    let env = eb.environment("widget-prod").unwrap();
    let label = env.version_label.clone();
    assert!(label.starts_with(&format!("gantry-{sha}-")), "{label}");
    assert_eq!(
        (env.status.as_str(), env.health.as_str()),
        ("Ready", "Green")
    );
    let version = eb
        .versions("widget")
        .into_iter()
        .find(|v| v.label == label)
        .unwrap();
    assert_eq!(version.key, format!("widget/{label}.zip"));
    assert_eq!(version.description, "test");
    let bundle = moto
        .object("eb-bundles", &version.key)
        .await
        .expect("the bundle is in S3");
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bundle)).unwrap();
    let names: Vec<String> = (0..zip.len())
        .map(|i| zip.by_index(i).unwrap().name().unwrap().to_string())
        .collect();
    assert!(names.contains(&"Dockerfile".to_string()), "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("notes/")),
        ".ebignore honoured: {names:?}"
    );
    assert!(zip.by_name("greeting.txt").is_ok());
    assert!(
        log.contains("Environment update completed successfully."),
        "EB's events are in the log: {log}"
    );
    assert!(
        log.contains(&format!("widget-prod is Ready and Green on {label}")),
        "{log}"
    );
    assert_eq!(
        eb.calls()
            .iter()
            .filter(|c| *c == "UpdateEnvironment")
            .count(),
        1
    );
}

/// `zip_file:` ships the job's own bundle byte for byte, and refuses one
/// the job left as a link to a file of the runner's host.
#[tokio::test]
async fn elastic_beanstalk_uploads_the_zip_file_the_job_built_as_it_is() {
    use base64::Engine as _;
    let h = default_harness().await;
    let moto = Moto::start(0);
    let eb = ElasticBeanstalk::start(&moto.url()).await;
    eb.create_environment("widget", "widget-prod", "v0");
    let bundle = {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        zip.start_file("Dockerfile", stored).unwrap();
        std::io::Write::write_all(&mut zip, DOCKERFILE.as_bytes()).unwrap();
        zip.start_file("built-by-the-job.txt", stored).unwrap();
        std::io::Write::write_all(&mut zip, b"yes").unwrap();
        zip.finish().unwrap().into_inner()
    };
    let encoded = base64::engine::general_purpose::STANDARD.encode(&bundle);
    // The repository has no Dockerfile: a bundle zipped from the workspace
    // would fail on EB, so Green means the job's own zip was shipped.
    let (repo, sha) = repo_with(&[("README", "a widget\n")]);
    let with_script = |script: &str| {
        eb_pipeline(&moto, &eb, false).replace("script: true\n", &format!("script: {script}\n"))
            + "  zip_file: dist/app.zip\n  skip_cleanup: true\n"
    };
    let pipeline = with_script(&format!(
        "mkdir -p dist && echo {encoded} | base64 -d > dist/app.zip"
    ));
    let a = assignment(&repo, &sha, &pipeline, &aws_secrets());
    let (outcome, log) = run(&h, &a, CancellationToken::new()).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    assert!(
        log.contains("Using dist/app.zip as the source bundle"),
        "{log}"
    );
    assert!(!log.contains("Zipped"), "nothing else was zipped: {log}");
    let env = eb.environment("widget-prod").unwrap();
    assert_eq!(
        (env.status.as_str(), env.health.as_str()),
        ("Ready", "Green")
    );
    let version = eb
        .versions("widget")
        .into_iter()
        .find(|v| v.label == env.version_label)
        .unwrap();
    let uploaded = moto.object("eb-bundles", &version.key).await.unwrap();
    assert_eq!(uploaded, bundle, "uploaded byte for byte");

    // A link in its place leads nowhere: the deploy fails and says why.
    let pipeline = with_script("mkdir -p dist && ln -s /etc/passwd dist/app.zip");
    let a = assignment(&repo, &sha, &pipeline, &aws_secrets());
    let (outcome, log) = run(&h, &a, CancellationToken::new()).await;
    assert_ne!(outcome.outcome, JobOutcome::Passed, "{log}");
    assert!(
        log.contains("zip_file `dist/app.zip` cannot be uploaded")
            && log.contains("goes through a link"),
        "{log}"
    );
    assert_eq!(
        eb.versions("widget").len(),
        2,
        "no new version: the v0 and the first deploy's"
    );

    // One that was never built says what to do.
    let pipeline = with_script("true");
    let a = assignment(&repo, &sha, &pipeline, &aws_secrets());
    let (outcome, log) = run(&h, &a, CancellationToken::new()).await;
    assert_ne!(outcome.outcome, JobOutcome::Passed, "{log}");
    assert!(
        log.contains(
            "zip_file `dist/app.zip` does not exist in the workspace: build it in `script`"
        ),
        "{log}"
    );
}

#[tokio::test]
async fn a_broken_bundle_fails_the_deploy_and_rolls_back_to_the_serving_version() {
    let h = default_harness().await;
    let moto = Moto::start(0);
    let eb = ElasticBeanstalk::start(&moto.url()).await;
    eb.create_environment("widget", "widget-prod", "v0");
    // No Dockerfile, no Dockerrun.aws.json: EB's Docker platform cannot run it.
    let (repo, sha) = repo_with(&[("index.js", "console.log(1)")]);
    let a = assignment(&repo, &sha, &eb_pipeline(&moto, &eb, true), &aws_secrets());
    let (outcome, log) = run(&h, &a, CancellationToken::new()).await;
    assert_eq!(outcome.outcome, JobOutcome::Failed, "{log}");
    assert_no_secret(&log);
    let reason = outcome.reason.unwrap_or_default();
    assert!(
        reason.contains("Both 'Dockerfile' and 'Dockerrun.aws.json' are missing"),
        "{reason}"
    );
    assert!(reason.contains("rolled back to v0"), "{reason}");
    assert!(log.contains("Rolling back widget-prod to v0"), "{log}");
    assert!(
        log.contains("Rolled back: widget-prod is Ready and Green on v0"),
        "{log}"
    );
    let env = eb.environment("widget-prod").unwrap();
    assert_eq!(
        (
            env.version_label.as_str(),
            env.status.as_str(),
            env.health.as_str()
        ),
        ("v0", "Ready", "Green")
    );

    // Without rollback the failure stays, and the log says why.
    eb.fail_next_deployment();
    let a = assignment(&repo, &sha, &eb_pipeline(&moto, &eb, false), &aws_secrets());
    let (outcome, log) = run(&h, &a, CancellationToken::new()).await;
    assert_eq!(outcome.outcome, JobOutcome::Failed, "{log}");
    assert!(log.contains("Command failed on instance"), "{log}");
    assert!(!log.contains("Rolling back"), "{log}");
    assert_eq!(eb.environment("widget-prod").unwrap().health, "Red");
}

#[tokio::test]
async fn elastic_beanstalk_times_out_with_a_clear_message() {
    let h = default_harness().await;
    let moto = Moto::start(0);
    let eb = ElasticBeanstalk::start(&moto.url()).await;
    eb.create_environment("widget", "widget-prod", "v0");
    eb.set_deployment_step(std::time::Duration::from_secs(3));
    let (repo, sha) = repo_with(&[("Dockerfile", DOCKERFILE), ("greeting.txt", "hi")]);
    let pipeline = eb_pipeline(&moto, &eb, false).replace(
        "wait_until_deployed_timeout: 60",
        "wait_until_deployed_timeout: 1",
    );
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline, &aws_secrets()).await;
    assert_eq!(outcome.outcome, JobOutcome::Failed, "{log}");
    assert!(
        log.contains("Deploy status unknown") && log.contains("within 1 seconds"),
        "{log}"
    );
}

fn nginx_task_definition() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/aws/ecs-taskdef/aws-samples__aws-containers-task-definitions__nginx-nginx_fargate.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("the ECS fixture")).unwrap()
}

fn ecs_pipeline(endpoint: &str, image: &str, rollback: bool) -> String {
    format!(
        "image: {IMAGE}\nscript: true\ndeploy:\n  provider: ecs\n  region: us-east-1\n  cluster: production\n  service: web\n  container: nginx\n  image: {image}\n  endpoint: {endpoint}\n  timeout: 60\n  rollback: {rollback}\n"
    )
}

#[tokio::test]
async fn ecs_moves_the_service_to_a_new_revision_and_rolls_back_a_failed_one() {
    let h = default_harness().await;
    let ecs = Ecs::start("us-east-1").await;
    let original = nginx_task_definition();
    let first = ecs.create_service("production", "web", &original, 2);
    let (repo, sha) = repo_with(&[("a", "a")]);
    let image = format!("127.0.0.1:5000/web:{sha}");
    let a = assignment(
        &repo,
        &sha,
        &ecs_pipeline(&ecs.url(), "127.0.0.1:5000/web:$GANTRY_COMMIT", true),
        &aws_secrets(),
    );
    let (outcome, log) = run(&h, &a, CancellationToken::new()).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    assert_no_secret(&log);
    let second = ecs.service_task_definition("web").unwrap();
    assert!(second.ends_with("task-definition/nginx:2"), "{second}");
    let registered = ecs.task_definition(&second).unwrap();
    assert_eq!(
        registered["containerDefinitions"][0]["image"],
        image.as_str()
    );
    // Every registrable field is kept.
    for field in [
        "family",
        "networkMode",
        "requiresCompatibilities",
        "cpu",
        "memory",
    ] {
        assert_eq!(registered[field], original[field], "{field}");
    }
    let mut container = registered["containerDefinitions"][0].clone();
    container["image"] = original["containerDefinitions"][0]["image"].clone();
    assert_eq!(
        container["portMappings"],
        original["containerDefinitions"][0]["portMappings"]
    );
    assert_eq!(
        container["logConfiguration"],
        original["containerDefinitions"][0]["logConfiguration"]
    );
    assert!(
        log.contains("has reached a steady state"),
        "ECS's events are in the log: {log}"
    );
    assert!(log.contains("web is stable on"), "{log}");
    assert!(log.contains("running 2/2"), "{log}");

    // The next revision's tasks fail to start: the job fails, the service goes back.
    ecs.fail_next_deployment();
    let again = assignment(
        &repo,
        &sha,
        &ecs_pipeline(&ecs.url(), "127.0.0.1:5000/web:broken", true),
        &aws_secrets(),
    );
    let (outcome, log) = run(&h, &again, CancellationToken::new()).await;
    assert_eq!(outcome.outcome, JobOutcome::Failed, "{log}");
    let reason = outcome.reason.unwrap_or_default();
    assert!(
        reason.contains("circuit breaker") && reason.contains("rolled back to"),
        "{reason}"
    );
    assert!(log.contains("Rolled back: web is stable on"), "{log}");
    assert_eq!(ecs.service_task_definition("web").unwrap(), second);
    assert!(first.ends_with("nginx:1"));
}

/// moto's ECS registers revisions and records UpdateService, but never moves
/// a deployment through its life cycle: with `MOTO_ECS_SERVICE_RUNNING` equal
/// to the desired count the one deployment always reads COMPLETED. So it
/// covers the happy path (what is registered and where the service points);
/// waiting on a rollout and failing one are covered by the emulator above.
#[tokio::test]
async fn ecs_against_moto_registers_the_revision_and_updates_the_service() {
    let h = default_harness().await;
    let moto = Moto::start(1);
    let config = aws_sdk_ecs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(KEY_ID, SECRET_KEY, None, None, "test"))
        .endpoint_url(moto.url())
        .build();
    let client = aws_sdk_ecs::Client::from_conf(config);
    client
        .create_cluster()
        .cluster_name("production")
        .send()
        .await
        .unwrap();
    let registered = client
        .register_task_definition()
        .family("nginx")
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder()
                .name("nginx")
                .image("nginx:latest")
                .memory(256)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let first = registered
        .task_definition()
        .unwrap()
        .task_definition_arn()
        .unwrap()
        .to_string();
    client
        .create_service()
        .cluster("production")
        .service_name("web")
        .task_definition(&first)
        .desired_count(1)
        .send()
        .await
        .unwrap();
    let (repo, sha) = repo_with(&[("a", "a")]);
    let a = assignment(
        &repo,
        &sha,
        &ecs_pipeline(&moto.url(), "registry.example/web:$GANTRY_COMMIT", true),
        &aws_secrets(),
    );
    let (outcome, log) = run(&h, &a, CancellationToken::new()).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    let service = client
        .describe_services()
        .cluster("production")
        .services("web")
        .send()
        .await
        .unwrap();
    let now = service.services()[0].task_definition().unwrap().to_string();
    assert!(now.ends_with("nginx:2"), "{now}");
    let described = client
        .describe_task_definition()
        .task_definition(&now)
        .send()
        .await
        .unwrap();
    let image = described.task_definition().unwrap().container_definitions()[0]
        .image()
        .unwrap()
        .to_string();
    assert_eq!(image, format!("registry.example/web:{sha}"));
}

#[tokio::test]
async fn elastic_beanstalk_ships_a_dockerrun_pointing_at_the_pushed_images() {
    let h = default_harness().await;
    let registry = Registry::start();
    let moto = Moto::start(0);
    let eb = ElasticBeanstalk::start(&moto.url()).await;
    eb.create_environment("widget", "widget-prod", "v0");
    let api = format!("{}/acme/api", registry.host());
    let dockerrun = format!(
        r#"{{"AWSEBDockerrunVersion": 2, "containerDefinitions": [
            {{"name": "api", "image": "{api}", "essential": true, "memory": 128}},
            {{"name": "nginx", "image": "nginx:1.25", "essential": true, "memory": 64, "links": ["api"]}}]}}"#
    );
    let (repo, sha) = repo_with(&[
        ("Dockerfile", DOCKERFILE),
        ("greeting.txt", "hello\n"),
        ("Dockerrun.aws.json", &dockerrun),
        (".ebextensions/options.config", "option_settings: []\n"),
    ]);
    let pipeline = format!(
        "{}images:\n  - name: {api}\n    tags: [$GANTRY_COMMIT]\n",
        eb_pipeline(&moto, &eb, true).replace(
            "  rollback: true\n",
            "  rollback: true\n  dockerrun: true\n"
        )
    );
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline, &aws_secrets()).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    let env = eb.environment("widget-prod").unwrap();
    assert_eq!(env.health, "Green");
    let version = eb
        .versions("widget")
        .into_iter()
        .find(|v| v.label == env.version_label)
        .unwrap();
    let bundle = moto.object("eb-bundles", &version.key).await.unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bundle)).unwrap();
    let names: Vec<String> = (0..zip.len())
        .map(|i| zip.by_index(i).unwrap().name().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        ["Dockerrun.aws.json", ".ebextensions/options.config"]
    );
    let mut text = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("Dockerrun.aws.json").unwrap(), &mut text)
        .unwrap();
    let shipped: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        shipped["containerDefinitions"][0]["image"],
        format!("{api}:{sha}")
    );
    assert_eq!(shipped["containerDefinitions"][1]["image"], "nginx:1.25");
    assert_eq!(registry.tags("acme/api").await, vec![sha.clone()]);
    remove_images(&api);
}

/// moto's ECR answers GetAuthorizationToken with a real-looking token; the
/// push that follows cannot reach an `amazonaws.com` host from here, so the
/// test checks that the login went through and the push failed with a reason.
#[tokio::test]
async fn ecr_registries_are_logged_in_with_a_token_from_get_authorization_token() {
    let h = default_harness().await;
    let moto = Moto::start(0);
    let name = "123456789012.dkr.ecr.us-east-1.amazonaws.com/orders";
    let (repo, sha) = repo_with(&[("Dockerfile", DOCKERFILE), ("greeting.txt", "hello\n")]);
    let pipeline = format!(
        "image: {IMAGE}\nenv:\n  global: [AWS_ENDPOINT_URL_ECR={}]\nscript: true\nimages:\n  - name: {name}\n    tags: [$GANTRY_COMMIT]\n",
        moto.url()
    );
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline, &aws_secrets()).await;
    assert!(
        log.contains("Logging in to Amazon ECR (123456789012.dkr.ecr.us-east-1.amazonaws.com)"),
        "{log}"
    );
    assert!(!log.contains("GetAuthorizationToken failed"), "{log}");
    assert_eq!(outcome.outcome, JobOutcome::Failed, "{log}");
    assert!(outcome
        .reason
        .unwrap_or_default()
        .contains(&format!("pushing {name}:{sha}")));
    assert_no_secret(&log);
    remove_images(name);
}

/// A deploy's failure reason reaches the API and the pages, not only the
/// log: a secret used in an option is masked there too.
#[tokio::test]
async fn a_failed_deploys_reason_never_carries_a_secret() {
    let h = default_harness().await;
    let ecs = Ecs::start("us-east-1").await;
    let (repo, sha) = repo_with(&[("a", "a")]);
    let pipeline = ecs_pipeline(&ecs.url(), "registry.example/web:1", false)
        .replace("service: web", "service: $SERVICE_NAME");
    let mut secrets = aws_secrets().to_vec();
    secrets.push(("SERVICE_NAME", "orders-hidden-service"));
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline, &secrets).await;
    assert_eq!(outcome.outcome, JobOutcome::Failed, "{log}");
    let reason = outcome.reason.unwrap_or_default();
    assert!(
        reason.contains("ECS service [secure] in cluster production"),
        "{reason}"
    );
    assert!(!reason.contains("orders-hidden-service") && !log.contains("orders-hidden-service"));
}

/// Travis's artifacts addon: after `after_script`, whatever the job's
/// result, the files its paths name go to S3 under each target path, with
/// the keys from the repository's `ARTIFACTS_*` secrets; paths outside the
/// build directory and missing files are said, not uploaded; a pull
/// request uploads nothing.
#[tokio::test]
async fn artifacts_go_up_after_the_job_whatever_its_result() {
    let h = default_harness().await;
    let moto = Moto::start(0);
    let s3 = s3_client(&moto.url()).await;
    s3.create_bucket()
        .bucket("ci-artifacts")
        .send()
        .await
        .unwrap();
    let (repo, sha) = repo_with(&[("tracked.txt", "in git\n")]);
    let pipeline = format!(
        "image: {IMAGE}\n\
         script:\n\
         \x20 - mkdir -p out/logs && echo one > out/logs/a.log && echo two > out/logs/b.log\n\
         \x20 - echo report > out/report.xml && echo elsewhere > /tmp/outside.txt\n\
         \x20 - false\n\
         after_script: echo after-script-ran\n\
         addons:\n\
         \x20 artifacts:\n\
         \x20   bucket: ci-artifacts\n\
         \x20   endpoint: {}\n\
         \x20   paths:\n\
         \x20     - logs\n\
         \x20     - $(echo report.xml):/tmp/outside.txt\n\
         \x20     - missing.txt\n\
         \x20   working_dir: out\n\
         \x20   target_paths: /builds/$TRAVIS_BUILD_NUMBER\n\
         \x20   debug: true\n",
        moto.url()
    );
    let secrets = [("ARTIFACTS_KEY", KEY_ID), ("ARTIFACTS_SECRET", SECRET_KEY)];
    let a = assignment(&repo, &sha, &pipeline, &secrets);
    let (outcome, log) = run(&h, &a, CancellationToken::new()).await;
    assert_eq!(
        outcome.outcome,
        JobOutcome::Failed,
        "the result stands:\n{log}"
    );
    assert_no_secret(&log);
    let after = log.find("after-script-ran").expect("after_script ran");
    let uploaded = log.find("Artifacts: uploaded 3 file(s)").expect(&log);
    assert!(
        after < uploaded,
        "artifacts go up after after_script:\n{log}"
    );
    assert!(
        log.contains("Artifacts: /tmp/outside.txt is not in the build directory"),
        "{log}"
    );
    assert!(
        log.contains("Artifacts: out/missing.txt does not exist"),
        "{log}"
    );
    let listed = s3
        .list_objects_v2()
        .bucket("ci-artifacts")
        .send()
        .await
        .unwrap();
    let mut keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "builds/7/out/logs/a.log",
            "builds/7/out/logs/b.log",
            "builds/7/out/report.xml"
        ]
    );
    let body = moto
        .object("ci-artifacts", "builds/7/out/report.xml")
        .await
        .unwrap();
    assert_eq!(body, b"report\n");

    // The same job for a pull request uploads nothing, and says so.
    let mut pr = assignment(&repo, &sha, &pipeline, &secrets);
    pr.build.event = Event::PullRequest;
    pr.build.pull_request = Some(3);
    pr.build.number = 8;
    let (_, log) = run(&h, &pr, CancellationToken::new()).await;
    assert!(
        log.contains("Artifacts: not uploaded for pull requests"),
        "{log}"
    );
    let listed = s3
        .list_objects_v2()
        .bucket("ci-artifacts")
        .prefix("builds/8")
        .send()
        .await
        .unwrap();
    assert!(listed.contents().is_empty());
}

/// A release's assets as (name, content type, bytes), in upload order.
fn assets_of(release: &gantry_testkit::github::releases::Release) -> Vec<(&str, &str, &[u8])> {
    release
        .assets
        .iter()
        .map(|a| (a.name.as_str(), a.content_type.as_str(), a.data.as_slice()))
        .collect()
}

/// A tag build of `pipeline` that deploys to the double's GitHub.
fn tag_build(
    repo: &gantry_testkit::git::Repo,
    sha: &str,
    pipeline: &str,
    github: &GitHubDouble,
    token: &str,
) -> gantry_protocol::Assignment {
    let mut a = assignment(repo, sha, pipeline, &[("API_KEY", token)]);
    a.build.event = Event::Tag;
    a.build.tag = Some("v1.2.0".into());
    a.build.branch = "v1.2.0".into();
    a.github_api_url = Some(github.url.clone());
    a
}

#[tokio::test]
async fn releases_upload_the_jobs_files_to_the_tags_release_and_publish_it() {
    const TOKEN: &str = "ghp_gantryTestToken0123456789abcdef";
    let h = default_harness().await;
    let github = GitHubDouble::start().await;
    let (repo, sha) = repo_with(&[("NOTES.md", "What is new in $TRAVIS_TAG")]);
    github.add_repo("acme/widget", repo.path.clone());
    github.allow_release_token(TOKEN);
    let pipeline = |build: &str, overwrite: bool| {
        format!(
            "image: {IMAGE}\nscript: true\nbefore_deploy: mkdir -p dist/old && {build}\ndeploy:\n  provider: releases\n  api_key:\n    secure: \"c2VjcmV0\"\n  file_glob: true\n  file: dist/widget-*.tar.gz\n  name: Widget $TRAVIS_TAG\n  release_notes_file: NOTES.md\n  overwrite: {overwrite}\n  on:\n    tags: true\n"
        )
    };

    // The first job: the release is made, the two files go up, it is published.
    let first = pipeline(
        "echo linux-1 > dist/widget-linux.tar.gz && echo mac-1 > dist/widget-mac.tar.gz && echo old > dist/old/widget-0.1.tar.gz",
        false,
    );
    let (outcome, log) = run(
        &h,
        &tag_build(&repo, &sha, &first, &github, TOKEN),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    assert!(
        log.contains("Created release v1.2.0 of acme/widget, a draft until its files are up"),
        "{log}"
    );
    assert!(
        log.contains("Uploaded dist/widget-linux.tar.gz (8 bytes) as widget-linux.tar.gz"),
        "{log}"
    );
    assert!(
        log.contains(
            "Published release v1.2.0: https://github.com/acme/widget/releases/tag/v1.2.0"
        ),
        "{log}"
    );
    assert!(!log.contains(TOKEN), "the token reached the log:\n{log}");
    let releases = github.releases("acme/widget");
    assert_eq!(releases.len(), 1);
    let release = &releases[0];
    assert_eq!(
        (release.tag_name.as_str(), release.name.as_str()),
        ("v1.2.0", "Widget v1.2.0")
    );
    assert!(!release.draft, "published once its files were up");
    assert_eq!(release.target_commitish, sha);
    // The notes file is read as it is: `$TRAVIS_TAG` in it is text.
    assert_eq!(release.body.as_deref(), Some("What is new in $TRAVIS_TAG"));
    assert_eq!(
        assets_of(release),
        [
            ("widget-linux.tar.gz", "application/gzip", &b"linux-1\n"[..]),
            ("widget-mac.tar.gz", "application/gzip", &b"mac-1\n"[..]),
        ],
        "`*` stays within dist/: dist/old is not uploaded"
    );
    let created = github
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path == "/repos/acme/widget/releases")
        .expect("the release was created");
    assert_eq!(
        created.authorization.as_deref(),
        Some(&*format!("Bearer {TOKEN}"))
    );
    assert_eq!(created.body.as_ref().unwrap()["draft"], true);

    // Another job of the build uploads again: what is there is kept...
    let again = pipeline("echo linux-2 > dist/widget-linux.tar.gz", false);
    let (outcome, log) = run(
        &h,
        &tag_build(&repo, &sha, &again, &github, TOKEN),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    assert!(
        log.contains("Release v1.2.0 of acme/widget exists"),
        "{log}"
    );
    assert!(log.contains("widget-linux.tar.gz is already on release v1.2.0; kept (`overwrite: true` replaces it)"), "{log}");
    assert_eq!(
        github.releases("acme/widget")[0].assets[0].data,
        b"linux-1\n"
    );
    // ... unless overwrite is set, even while GitHub has a bad moment.
    github.fail_next(1, 502);
    let replace = pipeline("echo linux-3 > dist/widget-linux.tar.gz", true);
    let (outcome, log) = run(
        &h,
        &tag_build(&repo, &sha, &replace, &github, TOKEN),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    let releases = github.releases("acme/widget");
    assert_eq!(releases.len(), 1, "one release per tag");
    let linux = releases[0]
        .assets
        .iter()
        .find(|a| a.name == "widget-linux.tar.gz")
        .unwrap();
    assert_eq!(linux.data, b"linux-3\n");
    assert_eq!(releases[0].assets.len(), 2);

    // A token GitHub refuses fails the job with GitHub's word for it, and the
    // token is in no line of the log.
    let wrong = "ghp_revokedToken9876543210fedcba";
    let (outcome, log) = run(
        &h,
        &tag_build(&repo, &sha, &again, &github, wrong),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(outcome.outcome, JobOutcome::Failed, "{log}");
    assert!(log.contains("Failed to deploy with the releases provider: listing the releases failed: GitHub answered 401 Unauthorized Bad credentials: GitHub refused the token"), "{log}");
    assert!(!log.contains(wrong), "the token reached the log:\n{log}");

    // Files that are not there fail the deploy rather than publish an empty release.
    let missing = pipeline("true", false).replace("dist/widget-*.tar.gz", "dist/nothing-*.zip");
    let (outcome, log) = run(
        &h,
        &tag_build(&repo, &sha, &missing, &github, TOKEN),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(outcome.outcome, JobOutcome::Failed, "{log}");
    assert!(
        log.contains("dist/nothing-*.zip was not found; nothing uploaded for it"),
        "{log}"
    );
    assert!(
        log.contains("none of the files to upload was found (dist/nothing-*.zip)"),
        "{log}"
    );

    // A branch build is not a release (on: tags: true).
    let mut branch = tag_build(&repo, &sha, &first, &github, TOKEN);
    branch.build.event = Event::Push;
    branch.build.tag = None;
    branch.build.branch = "master".into();
    let (outcome, log) = run(&h, &branch, CancellationToken::new()).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    assert!(
        log.contains(
            "Skipping a deployment with the releases provider because this is not a tag build"
        ),
        "{log}"
    );
    assert_eq!(github.releases("acme/widget").len(), 1);
}

#[tokio::test]
async fn releases_with_draft_stay_a_draft_and_prerelease_is_marked() {
    const TOKEN: &str = "ghp_gantryDraftToken0123456789abcdef";
    let h = default_harness().await;
    let github = GitHubDouble::start().await;
    let (repo, sha) = repo_with(&[("README.md", "widget")]);
    github.add_repo("acme/widget", repo.path.clone());
    github.allow_release_token(TOKEN);
    // Files as a list (no globbing), the notes as text with the tag in them.
    let pipeline = format!(
        "image: {IMAGE}\nscript: true\nbefore_deploy: printf 'sum' > SHA256SUMS.txt && printf 'bin' > widget.bin\ndeploy:\n  provider: releases\n  api_key:\n    secure: \"c2VjcmV0\"\n  file:\n    - SHA256SUMS.txt\n    - widget.bin\n  draft: true\n  prerelease: true\n  body: Candidate $TRAVIS_TAG\n  on:\n    tags: true\n"
    );
    let (outcome, log) = run(
        &h,
        &tag_build(&repo, &sha, &pipeline, &github, TOKEN),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    assert!(
        log.contains("Release v1.2.0 stays a draft (draft: true)"),
        "{log}"
    );
    let releases = github.releases("acme/widget");
    assert_eq!(releases.len(), 1);
    let release = &releases[0];
    assert!(release.draft, "draft: true keeps it from the public");
    assert!(release.prerelease, "prerelease: true is passed on");
    assert_eq!(release.body.as_deref(), Some("Candidate v1.2.0"));
    assert_eq!(
        assets_of(release),
        [
            ("SHA256SUMS.txt", "text/plain", &b"sum"[..]),
            ("widget.bin", "application/octet-stream", &b"bin"[..]),
        ]
    );

    // A later job finds the draft (GitHub's by-tag lookup would not) and
    // adds to it rather than making a second release.
    let more = pipeline
        .replace("widget.bin", "widget-2.bin")
        .replace("printf 'bin' > widget-2.bin", "printf 'two' > widget-2.bin");
    let (outcome, log) = run(
        &h,
        &tag_build(&repo, &sha, &more, &github, TOKEN),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    let releases = github.releases("acme/widget");
    assert_eq!(releases.len(), 1, "the draft was found, not made again");
    assert!(releases[0].draft);
    assert_eq!(releases[0].assets.len(), 3);
}

/// `git` in `dir`, for reading back what a push left.
fn git_in(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// GitHub's side of a pages deploy: an empty bare repository `repo` behind
/// `git http-backend`, which takes `token` as the password of
/// `x-access-token`, as GitHub does. The folder goes when the first is dropped.
async fn pages_host(
    repo: &str,
    token: &str,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    gantry_testkit::git_http::GitHttp,
) {
    let served = tempfile::tempdir().unwrap();
    let bare = served.path().join(format!("{repo}.git"));
    std::fs::create_dir_all(&bare).unwrap();
    git_in(&bare, &["init", "-q", "--bare"]);
    let http =
        gantry_testkit::git_http::GitHttp::start(served.path(), "x-access-token", token).await;
    (served, bare, http)
}

#[tokio::test]
async fn pages_pushes_the_folder_as_the_branch_and_keeps_history_when_asked() {
    const TOKEN: &str = "ghp_gantryPagesToken0123456789abcdef";
    let h = default_harness().await;
    let (_served, bare, http) = pages_host("acme/widget", TOKEN).await;
    let (repo, sha) = repo_with(&[("src.txt", "source")]);
    let pipeline = |page: &str, keep_history: bool| {
        format!(
            "image: {IMAGE}\nscript: true\nbefore_deploy: mkdir -p site/css && echo '<h1>{page}</h1>' > site/index.html && echo 'h1 {{}}' > site/css/a.css && touch site/.nojekyll\ndeploy:\n  provider: pages\n  github_token:\n    secure: \"c2VjcmV0\"\n  local_dir: site\n  fqdn: docs.example.com\n  keep_history: {keep_history}\n  github_url: {}\n",
            http.url
        )
    };
    let secrets = [("GITHUB_TOKEN", TOKEN)];
    let commits = || git_in(&bare, &["rev-list", "--count", "gh-pages"]);

    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline("one", false), &secrets).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    assert!(
        log.contains("Pushing site to acme/widget:gh-pages"),
        "{log}"
    );
    assert!(
        log.contains("Pushed 4 file(s) to acme/widget:gh-pages as "),
        "{log}"
    );
    assert!(!log.contains(TOKEN), "the token reached the log:\n{log}");
    assert_eq!(
        git_in(&bare, &["ls-tree", "-r", "--name-only", "gh-pages"]),
        ".nojekyll\nCNAME\ncss/a.css\nindex.html",
        "the folder's files, dot files too, and CNAME; not the repository's"
    );
    assert_eq!(
        git_in(&bare, &["show", "gh-pages:index.html"]),
        "<h1>one</h1>"
    );
    assert_eq!(
        git_in(&bare, &["show", "gh-pages:CNAME"]),
        "docs.example.com"
    );
    assert_eq!(
        git_in(&bare, &["log", "-1", "--format=%an <%ae>|%s", "gh-pages"]),
        format!(
            "Deployment Bot (from Gantry) <deploy@gantry.invalid>|Deploy docs.example.com to {}/acme/widget.git:gh-pages",
            http.url
        )
    );
    assert_eq!(commits(), "1");

    // keep_history: the next commit goes on top; no change, no commit.
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline("two", true), &secrets).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    assert_eq!(commits(), "2");
    assert_eq!(
        git_in(&bare, &["show", "gh-pages:index.html"]),
        "<h1>two</h1>"
    );
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline("two", true), &secrets).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    assert!(
        log.contains("Nothing changed in site: acme/widget:gh-pages is left as it was"),
        "{log}"
    );
    assert_eq!(commits(), "2");

    // Without it the branch is replaced by one commit, as dpl does.
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline("three", false), &secrets).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    assert_eq!(commits(), "1");
    assert_eq!(
        git_in(&bare, &["show", "gh-pages:index.html"]),
        "<h1>three</h1>"
    );

    // A token the host refuses fails the deploy, and is in no log line.
    let wrong = "ghp_revokedPagesToken9876543210";
    let (outcome, log) = run_pipeline(
        &h,
        &repo,
        &sha,
        &pipeline("four", false),
        &[("GITHUB_TOKEN", wrong)],
    )
    .await;
    assert_eq!(outcome.outcome, JobOutcome::Failed, "{log}");
    assert!(
        log.contains("Failed to deploy with the pages provider: pushing"),
        "{log}"
    );
    assert!(log.contains("check `github_token`"), "{log}");
    assert!(!log.contains(wrong), "the token reached the log:\n{log}");
    assert_eq!(
        git_in(&bare, &["show", "gh-pages:index.html"]),
        "<h1>three</h1>"
    );

    // keep_history on a branch that does not exist yet starts it.
    let docs =
        pipeline("five", true).replace("local_dir: site", "local_dir: site\n  target_branch: docs");
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &docs, &secrets).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    assert_eq!(git_in(&bare, &["rev-list", "--count", "docs"]), "1");
    assert_eq!(git_in(&bare, &["show", "docs:index.html"]), "<h1>five</h1>");

    // No token at all: the deploy says what to set.
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline("six", false), &[]).await;
    assert_eq!(outcome.outcome, JobOutcome::Failed, "{log}");
    assert!(
        log.contains("no GitHub token: set `github_token` (a `secure:` value is read from the repository secret GITHUB_TOKEN) or the secret GITHUB_TOKEN"),
        "{log}"
    );
}

#[tokio::test]
async fn pages_names_the_commit_as_asked_and_gives_no_token_to_a_redirect() {
    const TOKEN: &str = "ghp_gantryPagesNamesToken0123456789";
    let h = default_harness().await;
    let (_served, bare, http) = pages_host("acme/site", TOKEN).await;
    let (repo, sha) = repo_with(&[("src.txt", "source")]);
    // Another repository than the build's, and the commit's author and
    // subject as asked, with the build's variables expanded.
    let pipeline = |github_url: &str| {
        format!(
            "image: {IMAGE}\nscript: true\nbefore_deploy: mkdir -p public && echo docs > public/index.html\ndeploy:\n  provider: pages\n  github_token:\n    secure: \"c2VjcmV0\"\n  local_dir: public\n  repo: acme/site\n  project_name: Widget docs from $TRAVIS_BRANCH\n  name: Docs Bot\n  email: docs@example.com\n  github_url: {github_url}\n"
        )
    };
    let secrets = [("GITHUB_TOKEN", TOKEN)];

    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline(&http.url), &secrets).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    assert!(
        log.contains("Pushing public to acme/site:gh-pages"),
        "{log}"
    );
    assert_eq!(
        git_in(&bare, &["log", "-1", "--format=%an <%ae>|%cn <%ce>|%s", "gh-pages"]),
        format!(
            "Docs Bot <docs@example.com>|Docs Bot <docs@example.com>|Deploy Widget docs from master to {}/acme/site.git:gh-pages",
            http.url
        )
    );
    let pushed = git_in(&bare, &["rev-parse", "gh-pages"]);

    // github_url on a host that sends the push elsewhere: git follows the
    // first redirect, but the token stays with the host the pipeline named.
    let moved = gantry_testkit::git_http::Redirect::start(&http.url).await;
    let asked_before = http.requests.lock().unwrap().len();
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline(&moved.url), &secrets).await;
    assert_eq!(outcome.outcome, JobOutcome::Failed, "{log}");
    assert!(
        log.contains("the token is only for the host of github_url"),
        "{log}"
    );
    assert!(!log.contains(TOKEN), "the token reached the log:\n{log}");
    let redirected: Vec<_> = http.requests.lock().unwrap()[asked_before..].to_vec();
    assert!(
        !redirected.is_empty(),
        "the push never reached the redirect's target: {redirected:?}"
    );
    assert!(
        redirected.iter().all(|(_, authorized)| !authorized),
        "the token went where the redirect led: {redirected:?}"
    );
    assert!(
        moved.requests.lock().unwrap().iter().all(|(_, auth)| !auth),
        "the redirecting host was never asked for a login, so it gets none"
    );
    assert_eq!(git_in(&bare, &["rev-parse", "gh-pages"]), pushed);
}

const SETUP_PY: &str = "from setuptools import setup\n\nsetup(\n    name='gantry-widget',\n    version='1.2.0',\n    description='A widget',\n    py_modules=['widget'],\n    classifiers=['License :: OSI Approved :: MIT License'],\n)\n";

fn pypi_pipeline(index: &PackageIndex, skip_existing: bool) -> String {
    format!(
        "image: {DEBIAN_IMAGE}\nscript: true\ndeploy:\n  provider: pypi\n  user: uploader\n  password:\n    secure: \"c2VjcmV0\"\n  server: {}\n  distributions: sdist bdist_wheel\n  skip_upload_docs: true\n  skip_existing: {skip_existing}\n",
        index.url()
    )
}

/// pytest's deploy, against pypiserver: the job's setup.py builds an sdist
/// and a wheel, the runner uploads both with the password from a secret,
/// and a version uploaded twice fails unless `skip_existing` says otherwise.
#[tokio::test]
async fn pypi_uploads_what_setup_py_builds_and_a_version_only_once() {
    const PASSWORD: &str = "pypi-s3cret-upload-pass";
    gantry_testkit::require_image(DEBIAN_IMAGE);
    let h = default_harness().await;
    let index = PackageIndex::start("uploader", PASSWORD);
    let (repo, sha) = repo_with(&[
        ("setup.py", SETUP_PY),
        ("widget.py", "def greet():\n    return 'hello'\n"),
    ]);
    let secrets = [("PASSWORD", PASSWORD)];
    let (outcome, log) =
        run_pipeline(&h, &repo, &sha, &pypi_pipeline(&index, false), &secrets).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    let files = index.files();
    assert_eq!(files.len(), 2, "{files:?}\n{log}");
    let wheel = files
        .iter()
        .find(|f| f.ends_with("-py3-none-any.whl"))
        .unwrap();
    let sdist = files.iter().find(|f| f.ends_with("-1.2.0.tar.gz")).unwrap();
    assert!(log.contains(&format!("Uploaded {wheel} (")), "{log}");
    assert!(log.contains(&format!("Uploaded {sdist} (")), "{log}");
    assert!(log.contains("setup.py sdist bdist_wheel"), "{log}");
    assert!(!log.contains(PASSWORD), "{log}");
    // The index serves the wheel whole, as pip would fetch it.
    let listing = reqwest::get(format!("{}simple/gantry-widget/", index.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(listing.contains(wheel.as_str()), "{listing}");
    let served = reqwest::get(format!("{}packages/{wheel}", index.url()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(served.to_vec())).unwrap();
    assert!(archive.by_name("widget.py").is_ok());

    // The same version again: refused, and the job says what to do.
    let (outcome, log) =
        run_pipeline(&h, &repo, &sha, &pypi_pipeline(&index, false), &secrets).await;
    assert_eq!(outcome.outcome, JobOutcome::Failed, "{log}");
    let reason = outcome.reason.unwrap_or_default();
    assert!(reason.contains("(409:"), "{reason}");
    assert!(reason.contains("set `skip_existing: true`"), "{reason}");
    let (outcome, log) =
        run_pipeline(&h, &repo, &sha, &pypi_pipeline(&index, true), &secrets).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    assert!(log.contains(&format!("{wheel} is already on")), "{log}");

    // A wrong password is named as such, and not shown.
    let (outcome, log) = run_pipeline(
        &h,
        &repo,
        &sha,
        &pypi_pipeline(&index, true),
        &[("PASSWORD", "not-the-password")],
    )
    .await;
    assert_eq!(outcome.outcome, JobOutcome::Failed, "{log}");
    let reason = outcome.reason.unwrap_or_default();
    assert!(reason.contains("check `user` and `password`"), "{reason}");
    assert!(!log.contains("not-the-password") && !reason.contains("not-the-password"));
    assert_eq!(index.files().len(), 2);
}

async fn codedeploy_client(endpoint: &str) -> aws_sdk_codedeploy::Client {
    let config = aws_sdk_codedeploy::Config::builder()
        .behavior_version(aws_sdk_codedeploy::config::BehaviorVersion::latest())
        .region(aws_sdk_codedeploy::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_codedeploy::config::Credentials::new(
            KEY_ID, SECRET_KEY, None, None, "test",
        ))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_codedeploy::Client::from_conf(config)
}

/// 540co's deploy, against moto: an `s3` provider uploads the bundle the
/// job made, and `codedeploy` deploys it (with the ETag S3 gave it) to the
/// branch's group; a GitHub revision deploys the build's commit; a bundle
/// missing from S3 fails before any deployment is made.
#[tokio::test]
async fn codedeploy_deploys_the_bundle_an_s3_deploy_uploaded_or_the_commit() {
    let h = default_harness().await;
    let moto = Moto::start(0);
    let cd = codedeploy_client(&moto.url()).await;
    cd.create_application()
        .application_name("jukebox-api")
        .send()
        .await
        .unwrap();
    cd.create_deployment_group()
        .application_name("jukebox-api")
        .deployment_group_name("jukebox-api-master")
        .service_role_arn("arn:aws:iam::123456789012:role/CodeDeploy")
        .send()
        .await
        .unwrap();
    let s3 = s3_client(&moto.url()).await;
    s3.create_bucket()
        .bucket("540-jukebox-api")
        .send()
        .await
        .unwrap();
    let (repo, sha) = repo_with(&[("appspec.yml", "version: 0.0\nos: linux\n")]);
    let keys =
        "    access_key_id: $AWS_ACCESS_KEY_ID\n    secret_access_key: $AWS_SECRET_ACCESS_KEY\n";
    let pipeline = format!(
        "image: {IMAGE}\nenv:\n  global:\n    - AWS_ENDPOINT_URL={}\nscript: true\nbefore_deploy: mkdir -p .codedeploy && tar czf .codedeploy/jukebox.tgz appspec.yml\ndeploy:\n  - provider: s3\n{keys}    bucket: 540-jukebox-api\n    local_dir: .codedeploy\n    upload_dir: $TRAVIS_BRANCH\n  - provider: codedeploy\n{keys}    bucket: 540-jukebox-api\n    key: $TRAVIS_BRANCH/jukebox.tgz\n    application: jukebox-api\n    deployment_group: \"jukebox-api-$TRAVIS_BRANCH\"\n  - provider: codedeploy\n{keys}    revision_type: github\n    application: jukebox-api\n    deployment_group: jukebox-api-master\n    description: the commit itself\n",
        moto.url()
    );
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline, &aws_secrets()).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    assert_no_secret(&log);
    assert!(
        log.contains("to jukebox-api-master: s3://540-jukebox-api/master/jukebox.tgz (tgz)"),
        "{log}"
    );
    let etag = s3
        .head_object()
        .bucket("540-jukebox-api")
        .key("master/jukebox.tgz")
        .send()
        .await
        .expect("the s3 provider uploaded the bundle")
        .e_tag()
        .unwrap()
        .trim_matches('"')
        .to_string();
    let listed = cd
        .list_deployments()
        .application_name("jukebox-api")
        .deployment_group_name("jukebox-api-master")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.deployments().len(), 2, "{listed:?}");
    let mut revisions = Vec::new();
    for id in listed.deployments() {
        let got = cd.get_deployment().deployment_id(id).send().await.unwrap();
        revisions.push(got.deployment_info().unwrap().clone());
    }
    let from_s3 = revisions
        .iter()
        .find_map(|d| d.revision()?.s3_location())
        .expect("an S3 revision");
    assert_eq!(
        (
            from_s3.bucket(),
            from_s3.key(),
            from_s3.bundle_type().map(|b| b.as_str()),
            from_s3.e_tag()
        ),
        (
            Some("540-jukebox-api"),
            Some("master/jukebox.tgz"),
            Some("tgz"),
            Some(etag.as_str())
        )
    );
    let from_github = revisions
        .iter()
        .find_map(|d| d.revision()?.git_hub_location())
        .expect("a GitHub revision");
    assert_eq!(
        (from_github.repository(), from_github.commit_id()),
        (Some("acme/widget"), Some(sha.as_str()))
    );

    // A key the bucket does not have: no deployment is made.
    let missing = format!(
        "image: {IMAGE}\nenv:\n  global:\n    - AWS_ENDPOINT_URL={}\nscript: true\ndeploy:\n  - provider: codedeploy\n{keys}    bucket: 540-jukebox-api\n    key: master/nothing-here.zip\n    application: jukebox-api\n    deployment_group: jukebox-api-master\n",
        moto.url()
    );
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &missing, &aws_secrets()).await;
    assert_eq!(outcome.outcome, JobOutcome::Failed, "{log}");
    let reason = outcome.reason.unwrap_or_default();
    assert!(
        reason.contains("the revision s3://540-jukebox-api/master/nothing-here.zip cannot be read"),
        "{reason}"
    );
    let listed = cd
        .list_deployments()
        .application_name("jukebox-api")
        .deployment_group_name("jukebox-api-master")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.deployments().len(), 2);
}

/// `wait_until_deployed` follows the deployment to its end: a group whose
/// deployment succeeds passes the job, one whose instances fail it fails
/// the job with CodeDeploy's error.
#[tokio::test]
async fn codedeploy_waits_until_the_deployment_succeeds_or_fails() {
    let h = default_harness().await;
    let emulator = CodeDeploy::start().await;
    emulator.add_group("widget", "prod");
    emulator.add_group("widget", "canary");
    emulator.fail_group("canary");
    let (repo, sha) = repo_with(&[("appspec.yml", "version: 0.0\n")]);
    let pipeline = |group: &str| {
        format!(
            "image: {IMAGE}\nscript: true\ndeploy:\n  provider: codedeploy\n  access_key_id: $AWS_ACCESS_KEY_ID\n  secret_access_key: $AWS_SECRET_ACCESS_KEY\n  endpoint: {}\n  application: widget\n  deployment_group: {group}\n  wait_until_deployed: true\n",
            emulator.url()
        )
    };
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline("prod"), &aws_secrets()).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    let id = &emulator.deployments()[0].id;
    for status in ["Created", "InProgress", "Succeeded"] {
        assert!(
            log.contains(&format!("Deployment {id} is {status}")),
            "{status}: {log}"
        );
    }
    assert_eq!(
        emulator.deployments()[0].description.as_deref(),
        Some("Deploy build 7 via Gantry"),
        "dpl's description, with the build's number"
    );

    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline("canary"), &aws_secrets()).await;
    assert_eq!(outcome.outcome, JobOutcome::Failed, "{log}");
    let reason = outcome.reason.unwrap_or_default();
    let id = &emulator.deployments()[1].id;
    assert!(
        reason.contains(&format!("deployment {id} Failed: HEALTH_CONSTRAINTS")),
        "{reason}"
    );
    assert_no_secret(&log);
}

/// Node 18 and npm from Debian (`scripts/test-images.sh`), npm's `pack` kept.
const NODE_IMAGE: &str = "gantry-test/node:18-3";

const PACKAGE_JSON: &str = r#"{
  "name": "@acme/widget-lib",
  "version": "1.2.0",
  "description": "A widget library",
  "main": "index.js",
  "scripts": { "build": "echo built by the run_script > built.txt" },
  "files": ["index.js", "built.txt"]
}
"#;

/// parse-server's deploy: the job's npm runs `run_script` and packs the
/// package, the runner publishes it under its tag with the token from a
/// secret, and the real npm client installs it from the registry; without
/// the token, and for the same version again, the job fails saying what to do.
#[tokio::test]
async fn npm_publishes_what_the_job_packs_and_npm_installs_it() {
    const TOKEN: &str = "npm_gantryTestToken0123456789";
    gantry_testkit::require_image(NODE_IMAGE);
    let h = default_harness().await;
    let registry = NpmRegistry::start(TOKEN).await;
    let (repo, sha) = repo_with(&[
        ("package.json", PACKAGE_JSON),
        (
            "index.js",
            "exports.greet = () => 'hello from widget-lib';\n",
        ),
    ]);
    let pipeline = format!(
        "image: {NODE_IMAGE}\nscript: true\ndeploy:\n  provider: npm\n  email: ci@acme.test\n  api_token:\n    secure: \"c2VjcmV0\"\n  registry: {}\n  tag: next\n  run_script: build\n",
        registry.url()
    );
    // Without the secret the `secure:` token stands for, nothing is published.
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline, &[]).await;
    assert_eq!(outcome.outcome, JobOutcome::Failed, "{log}");
    let reason = outcome.reason.unwrap_or_default();
    assert!(reason.contains("no npm token: set `api_token`"), "{reason}");
    assert!(registry.package("@acme/widget-lib").is_none());

    let secrets = [("API_TOKEN", TOKEN)];
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline, &secrets).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    assert!(
        log.contains(&format!(
            "Published @acme/widget-lib@1.2.0 to {} as next",
            registry.url()
        )),
        "{log}"
    );
    assert!(!log.contains(TOKEN), "{log}");
    let package = registry.package("@acme/widget-lib").expect("published");
    assert_eq!(package["dist-tags"]["next"], "1.2.0");

    // The real npm client (the machine's) installs it, checking its integrity.
    let prefix = tempfile::tempdir().unwrap();
    let (url, into) = (registry.url(), prefix.path().to_path_buf());
    // Off the runtime: the registry answers on this test's runtime.
    let installed = tokio::task::spawn_blocking(move || {
        Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--fetch-retries=0",
                "--registry",
            ])
            .arg(url)
            .arg("--prefix")
            .arg(&into)
            .arg("--cache")
            .arg(into.join("cache"))
            .arg("@acme/widget-lib@next")
            .output()
            .expect("npm (scripts/install-test-deps.sh installs it)")
    })
    .await
    .unwrap();
    assert!(
        installed.status.success(),
        "{}{}",
        String::from_utf8_lossy(&installed.stdout),
        String::from_utf8_lossy(&installed.stderr)
    );
    let module = prefix.path().join("node_modules/@acme/widget-lib");
    let greeting = Command::new("node")
        .arg("-e")
        .arg(format!(
            "process.stdout.write(require({:?}).greet())",
            module.display().to_string()
        ))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&greeting.stdout),
        "hello from widget-lib"
    );
    assert_eq!(
        std::fs::read_to_string(module.join("built.txt")).unwrap(),
        "built by the run_script\n",
        "the run_script ran before the pack"
    );

    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline, &secrets).await;
    assert_eq!(outcome.outcome, JobOutcome::Failed, "{log}");
    let reason = outcome.reason.unwrap_or_default();
    assert!(
        reason.contains("You cannot publish over the previously published versions: 1.2.0")
            && reason.contains("raise the version in package.json"),
        "{reason}"
    );
}

/// Yardsourcing's deploy (`run: rails db:migrate`), against the Heroku
/// stand-in: the build directory goes up as a tarball without `.git`,
/// Heroku's build output streams into the log, the commit is released,
/// then `run`'s command runs in a one-off dyno over rendezvous (TLS) and
/// `restart` restarts the dynos; the key never shows. A failing command,
/// an app no buildpack knows, a wrong key and a wrong app fail the job,
/// each with Heroku's words and what to check.
#[tokio::test]
async fn heroku_builds_and_releases_the_commit_then_runs_its_commands() {
    use gantry_testkit::heroku::HerokuDouble;
    const KEY: &str = "hrku-0123456789abcdef-test-key";
    let heroku =
        std::sync::Arc::new(HerokuDouble::start(KEY, "deployer@acme.test", &["widget-api"]).await);
    // The runner trusts the dyno's certificate as it would Heroku's.
    let roots = tempfile::tempdir().unwrap();
    let ca = roots.path().join("ca.pem");
    std::fs::write(&ca, gantry_testkit::tls::pem(&heroku.ca)).unwrap();
    std::env::set_var("SSL_CERT_FILE", &ca);
    let h = default_harness().await;
    let (repo, sha) = repo_with(&[
        ("Gemfile", "source 'https://rubygems.org'\n"),
        ("app.rb", "puts 'hello'\n"),
        (
            "migrate.sh",
            "echo \"migrating $(ls app.rb)\"\nif [ -n \"$FAIL\" ]; then echo broken >&2; exit 3; fi\n",
        ),
    ]);
    let pipeline = |app: &str, run: &str| {
        format!(
            "image: {IMAGE}\nscript: true\ndeploy:\n  provider: heroku\n  api_key:\n    secure: \"c2VjcmV0\"\n  app: {app}\n  api_url: {}\n  run: {run}\n",
            heroku.url()
        )
    };
    let secrets = [("API_KEY", KEY)];
    let (outcome, log) = run_pipeline(
        &h,
        &repo,
        &sha,
        &pipeline("widget-api", "[sh migrate.sh, restart]"),
        &secrets,
    )
    .await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    for said in [
        "Authenticated with Heroku as deployer@acme.test",
        "-----> Ruby app detected",
        "Released v1",
        "https://widget-api.herokuapp.com/ deployed to Heroku",
        "Running `sh migrate.sh` in a one-off dyno of widget-api",
        "migrating app.rb",
        "Restarted the dynos of widget-api",
    ] {
        assert!(log.contains(said), "{said:?} missing:\n{log}");
    }
    assert!(!log.contains(KEY), "{log}");
    assert!(!log.contains("heroku-command-exit-status"), "{log}");
    let releases = heroku.releases("widget-api");
    assert_eq!(releases.len(), 1);
    assert_eq!(releases[0].commit, sha);
    assert!(
        releases[0].files.contains(&"./Gemfile".to_string())
            && releases[0].files.contains(&"./app.rb".to_string()),
        "{:?}",
        releases[0].files
    );
    assert!(
        !releases[0].files.iter().any(|f| f.starts_with("./.git/")),
        "{:?}",
        releases[0].files
    );
    assert_eq!(heroku.restarts("widget-api"), 1);
    assert!(heroku.runs("widget-api")[0].starts_with("sh migrate.sh;"));

    // The command's exit status is the deploy's.
    let (outcome, log) = run_pipeline(
        &h,
        &repo,
        &sha,
        &pipeline("widget-api", "FAIL=1 sh migrate.sh"),
        &secrets,
    )
    .await;
    assert_eq!(outcome.outcome, JobOutcome::Failed, "{log}");
    assert!(log.contains("broken"), "{log}");
    let reason = outcome.reason.unwrap_or_default();
    assert!(
        reason.contains("`FAIL=1 sh migrate.sh` exited with 3 on Heroku"),
        "{reason}"
    );
    assert_eq!(heroku.releases("widget-api").len(), 2);

    // Canceled while a one-off dyno runs: the job ends at once, and the
    // dyno with it (Heroku stops an attached dyno when its client goes).
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let watched = heroku.clone();
    // The moment of the cancel, for how long the job took to stop after it.
    let watcher = tokio::spawn(async move {
        while watched.running("widget-api") == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        trigger.cancel();
        std::time::Instant::now()
    });
    let a = assignment(
        &repo,
        &sha,
        &pipeline("widget-api", "\"echo waiting; sleep 30\""),
        &secrets,
    );
    let (outcome, log) = run(&h, &a, cancel).await;
    assert_eq!(outcome.outcome, JobOutcome::Canceled, "{log}");
    assert!(
        log.contains("Running `echo waiting; sleep 30` in a one-off dyno of widget-api"),
        "{log}"
    );
    let canceled = watcher.await.unwrap();
    assert!(
        canceled.elapsed() < std::time::Duration::from_secs(25),
        "stopped {:?} after the cancel",
        canceled.elapsed()
    );
    let stopped = std::time::Instant::now();
    while heroku.running("widget-api") > 0 && stopped.elapsed().as_secs() < 10 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(heroku.running("widget-api"), 0, "the dyno still runs");
    assert_eq!(heroku.stopped("widget-api").len(), 1);
    assert!(heroku.stopped("widget-api")[0].starts_with("echo waiting; sleep 30"));
    assert_eq!(heroku.releases("widget-api").len(), 3);

    // No buildpack knows the app: Heroku's build fails, and so does the job.
    let (bare, bare_sha) = repo_with(&[("README", "nothing to run\n")]);
    let (outcome, log) = run_pipeline(
        &h,
        &bare,
        &bare_sha,
        &pipeline("widget-api", "[]"),
        &secrets,
    )
    .await;
    assert_eq!(outcome.outcome, JobOutcome::Failed, "{log}");
    assert!(
        log.contains("No default language could be detected for this app."),
        "{log}"
    );
    let reason = outcome.reason.unwrap_or_default();
    assert!(reason.contains("failed: its output is above"), "{reason}");
    assert_eq!(heroku.releases("widget-api").len(), 3);

    // A wrong key, then a wrong app: Heroku's words and what to check.
    let (outcome, log) = run_pipeline(
        &h,
        &repo,
        &sha,
        &pipeline("widget-api", "[]"),
        &[("API_KEY", "not-the-key")],
    )
    .await;
    assert_eq!(outcome.outcome, JobOutcome::Failed, "{log}");
    let reason = outcome.reason.unwrap_or_default();
    assert!(
        reason.contains("(401: Invalid credentials provided.)")
            && reason.contains("check the API key"),
        "{reason}"
    );
    assert!(!log.contains("not-the-key") && !reason.contains("not-the-key"));
    let (outcome, log) =
        run_pipeline(&h, &repo, &sha, &pipeline("widget-ap", "[]"), &secrets).await;
    assert_eq!(outcome.outcome, JobOutcome::Failed, "{log}");
    let reason = outcome.reason.unwrap_or_default();
    assert!(
        reason.contains("Couldn't find that app.")
            && reason.contains("is the app named widget-ap?"),
        "{reason}"
    );
    assert_eq!(heroku.releases("widget-api").len(), 3);
}
