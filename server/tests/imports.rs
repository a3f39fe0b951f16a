//! Travis's `import:` through the GitHub contents API: files of the same
//! repository at the pushed commit, of another at the ref given, and the
//! rule that keeps a private repository's config out of public builds.

mod support;

use gantry_testkit::git::Repo;
use gantry_testkit::webhook::{fixture, point_push};
use serde_json::Value;
use support::*;

/// The job specs of a build, as the runner gets them.
async fn specs(server: &TestServer, build: &Value) -> Vec<String> {
    sqlx::query_scalar::<_, String>("SELECT spec FROM jobs WHERE build_id = $1 ORDER BY number")
        .bind(build["id"].as_i64().unwrap())
        .fetch_all(&server.app.db.pool)
        .await
        .unwrap()
}

fn contents_asked(server: &TestServer, repo: &str) -> Vec<String> {
    server
        .github
        .requests()
        .into_iter()
        .map(|r| r.path)
        .filter(|p| p.starts_with(&format!("/repos/{repo}/contents/")))
        .collect()
}

async fn a_build_merges_the_files_its_pipeline_imports(engine: gantry_testkit::db::Engine) {
    let server = TestServer::start(engine).await;
    // Another public repository of shared snippets: v1 at a commit, v2 on its default branch.
    let (shared, v1) = server.repo(
        "binkkatal/shared",
        &[("deploy.yml", "before_script: [echo v1]\n")],
        "v1",
    );
    shared.commit(&[("deploy.yml", "before_script: [echo v2]\n")], "v2");
    let pipeline = format!(
        "import:\n  - ci/matrix.yml\n  - binkkatal/shared:deploy.yml@{v1}\nscript: [pytest]\n"
    );
    let (repo, sha) = server.repo(
        PUSH_REPO,
        &[
            (".travis.yml", &pipeline),
            (
                "ci/matrix.yml",
                "language: python\npython: ['3.11', '3.12']\nscript: [flake8]\n",
            ),
        ],
        "Share the matrix",
    );
    server
        .webhook(
            "push",
            "d-1",
            &push_payload(&repo.path.display().to_string(), &sha, "Share the matrix"),
        )
        .await;
    let build = server
        .wait_build(PUSH_REPO, |b| {
            b["jobs"].as_array().is_some_and(|j| !j.is_empty())
        })
        .await;
    assert_eq!(build["state"], "queued", "{build}");
    let names: Vec<&str> = build["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["python: 3.11", "python: 3.12"],
        "the imported matrix"
    );
    let spec: Value = serde_json::from_str(&specs(&server, &build).await[0]).unwrap();
    assert_eq!(
        spec["phases"]["script"],
        serde_json::json!(["pytest", "flake8"])
    );
    assert_eq!(
        spec["phases"]["before_script"],
        serde_json::json!(["echo v1"]),
        "the file at the ref given"
    );
    // This repository's file was read at the pushed commit.
    assert!(contents_asked(&server, PUSH_REPO)
        .contains(&format!("/repos/{PUSH_REPO}/contents/ci/matrix.yml")));
    assert_eq!(
        contents_asked(&server, "binkkatal/shared"),
        ["/repos/binkkatal/shared/contents/deploy.yml"]
    );

    // A file of the import with a mistake: the build errors, naming the file and its line.
    let sha = repo.commit(
        &[(
            "ci/matrix.yml",
            "language: python\npython: ['3.11']\nscript: [flake8]\nif: branch = $X\n",
        )],
        "Break the shared file",
    );
    server
        .webhook(
            "push",
            "d-2",
            &push_payload(
                &repo.path.display().to_string(),
                &sha,
                "Break the shared file",
            ),
        )
        .await;
    let build = server
        .wait_build(PUSH_REPO, |b| b["number"] == 2 && b["state"] == "errored")
        .await;
    let d = &build["diagnostics"][0];
    assert_eq!(
        (d["file"].as_str(), d["line"].as_i64()),
        (Some("ci/matrix.yml"), Some(4)),
        "{d}"
    );
    assert_eq!(build["reason"], ".travis.yml has 1 error(s)");
    let page = server
        .text(&format!("/{PUSH_REPO}/builds/{}", build["id"]))
        .await;
    assert!(
        page.contains("ci/matrix.yml, line 4:14"),
        "the build page names the file"
    );
    drop(shared);
}

async fn a_public_repository_cannot_import_a_private_ones_config(
    engine: gantry_testkit::db::Engine,
) {
    let server = TestServer::start(engine).await;
    let (_secret, _) = server.repo(
        "binkkatal/secret",
        &[("env.yml", "env: [TOKEN=hunter2]\n")],
        "x",
    );
    server.github.set_private("binkkatal/secret", true);
    let (repo, sha) = server.repo(
        PUSH_REPO,
        &[(
            ".travis.yml",
            "import: binkkatal/secret:env.yml\nscript: [env]\n",
        )],
        "Import a secret",
    );
    server
        .webhook(
            "push",
            "d-1",
            &push_payload(&repo.path.display().to_string(), &sha, "Import a secret"),
        )
        .await;
    let build = server
        .wait_build(PUSH_REPO, |b| b["state"] == "errored")
        .await;
    let message = build["diagnostics"][0]["message"].as_str().unwrap();
    assert!(message.contains("binkkatal/secret is private, and a public repository's builds may import only from public ones"), "{message}");
    assert_eq!(
        (
            build["diagnostics"][0]["line"].as_i64(),
            build["diagnostics"][0]["column"].as_i64()
        ),
        (Some(1), Some(9))
    );
    assert!(
        contents_asked(&server, "binkkatal/secret").is_empty(),
        "the file was never read"
    );
    assert!(build["jobs"].as_array().unwrap().is_empty());
}

async fn a_private_repository_imports_only_its_owners_private_configs(
    engine: gantry_testkit::db::Engine,
) {
    let server = TestServer::start(engine).await;
    // The tag push fixture is of bradrydzewski/drone-test-go, a private repository.
    let (_ours, _) = server.repo(
        "bradrydzewski/ci-config",
        &[("go.yml", "language: go\ngo: ['1.22']\n")],
        "x",
    );
    let (_theirs, _) = server.repo(
        "someone-else/ci-config",
        &[("go.yml", "language: go\n")],
        "x",
    );
    server.github.set_private("bradrydzewski/ci-config", true);
    server.github.set_private("someone-else/ci-config", true);

    let (_repo, full_name) = push_private(
        &server,
        "import: bradrydzewski/ci-config:go.yml\nscript: [go test]\n",
        "d-1",
    )
    .await;
    let build = server
        .wait_build(&full_name, |b| b["state"] == "queued")
        .await;
    assert_eq!(build["jobs"][0]["image"], "golang:1.22", "{build}");

    let mut payload = fixture("push", "go-scm.push_tag.json");
    let repo = Repo::new();
    let sha = repo.commit(
        &[(
            ".travis.yml",
            "import: someone-else/ci-config:go.yml\nscript: [go test]\n",
        )],
        "y",
    );
    server.github.add_repo(&full_name, repo.path.clone());
    point_push(&mut payload, &repo.path.display().to_string(), &sha, "y");
    server.webhook("push", "d-2", &payload).await;
    let build = server
        .wait_build(&full_name, |b| b["number"] == 2 && b["state"] == "errored")
        .await;
    let message = build["diagnostics"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("someone-else/ci-config is private and another owner's"),
        "{message}"
    );
    assert!(contents_asked(&server, "someone-else/ci-config").is_empty());
}

/// Travis's API build request with a `config` of its own: it goes over
/// the pipeline file as `merge_mode` says.
async fn an_api_build_with_a_config_goes_over_the_pipeline_file(
    engine: gantry_testkit::db::Engine,
) {
    let server = TestServer::start(engine).await;
    let (repo, sha) = server.repo(
        PUSH_REPO,
        &[
            (
                ".travis.yml",
                "import: ci/base.yml
language: python
script: [pytest]
",
            ),
            (
                "ci/base.yml",
                "before_script: [echo base]
",
            ),
        ],
        "x",
    );
    // Known to the server through a first push.
    server
        .webhook(
            "push",
            "d-1",
            &push_payload(&repo.path.display().to_string(), &sha, "x"),
        )
        .await;
    server
        .wait_build(PUSH_REPO, |b| b["state"] == "queued")
        .await;
    let path = format!("/api/repos/{PUSH_REPO}/builds");

    let (status, build) = server
        .admin_post(
            &path,
            serde_json::json!({"config": {"script": ["make deploy"], "env": ["STAGE=prod"]}}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{build}");
    let spec: Value = serde_json::from_str(&specs(&server, &build).await[0]).unwrap();
    assert_eq!(
        spec["phases"]["script"],
        serde_json::json!(["make deploy", "pytest"]),
        "deep_merge_append"
    );
    assert_eq!(
        spec["phases"]["before_script"],
        serde_json::json!(["echo base"]),
        "the file's imports too"
    );
    assert_eq!(spec["language"], "python");
    // A secret pasted into a config never shows where the build is shown.
    server.set_secret("DEPLOY_TOKEN", "s3cr3t-value").await;
    let (_, pasted) = server
        .admin_post(
            &path,
            serde_json::json!({"config": {"env": ["TOKEN=s3cr3t-value"]}}),
        )
        .await;
    let (_, shown) = server.get(&format!("/api/builds/{}", pasted["id"])).await;
    let text = shown["request_config"]["text"].as_str().unwrap();
    assert!(
        text.contains("TOKEN=[secure]") && !text.contains("s3cr3t"),
        "{text}"
    );
    let page = server
        .text(&format!("/{PUSH_REPO}/builds/{}", pasted["id"]))
        .await;
    assert!(
        page.contains("TOKEN=[secure]") && !page.contains("s3cr3t"),
        "{page}"
    );

    // The build shows what it was asked with.
    assert_eq!(build["request_config"]["merge_mode"], "deep_merge_append");
    assert!(build["request_config"]["text"]
        .as_str()
        .unwrap()
        .contains("make deploy"));

    let (_, build) = server
        .admin_post(
            &path,
            serde_json::json!({"config": {"script": "make deploy"}, "merge_mode": "replace"}),
        )
        .await;
    let spec: Value = serde_json::from_str(&specs(&server, &build).await[0]).unwrap();
    assert_eq!(spec["phases"]["script"], serde_json::json!(["make deploy"]));
    assert!(
        spec["phases"]["before_script"].is_null(),
        "the pipeline file was not read"
    );

    // Mistakes are refused before anything is built, or error the build saying where.
    for (body, expected) in [
        (
            serde_json::json!({"config": ["script"]}),
            "`config` must be an object",
        ),
        (
            serde_json::json!({"config": {}, "merge_mode": "overwrite"}),
            "unknown merge_mode `overwrite`",
        ),
        (
            serde_json::json!({"merge_mode": "merge"}),
            "send a `config` too",
        ),
    ] {
        let (status, error) = server.admin_post(&path, body).await;
        assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{error}");
        assert!(error.to_string().contains(expected), "{error}");
    }
    let (status, build) = server
        .admin_post(
            &path,
            serde_json::json!({"config": {"script": {"run": 1}}, "merge_mode": "replace"}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED);
    assert_eq!(build["state"], "errored");
    assert_eq!(build["reason"], "the requested config has 1 error(s)");
    assert_eq!(build["diagnostics"][0]["file"], "the request's config");

    // GitHub down: the build errors without jobs; restarted once it is
    // back, it is planned with the same config.
    server.github.fail_next(100, 502);
    let (status, build) = server
        .admin_post(
            &path,
            serde_json::json!({"commit": sha, "config": {"script": ["make deploy"]}, "merge_mode": "merge"}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{build}");
    assert_eq!(build["state"], "errored", "{build}");
    server.github.recover();
    let (status, restarted) = server
        .admin_post(
            &format!("/api/builds/{}/restart", build["id"]),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{restarted}");
    let spec: Value = serde_json::from_str(&specs(&server, &build).await[0]).unwrap();
    assert_eq!(
        spec["phases"]["script"],
        serde_json::json!(["make deploy"]),
        "the request's config again"
    );
    assert_eq!(spec["language"], "python", "over the pipeline file");
}

on_both_databases!(
    an_api_build_with_a_config_goes_over_the_pipeline_file,
    a_build_merges_the_files_its_pipeline_imports,
    a_public_repository_cannot_import_a_private_ones_config,
    a_private_repository_imports_only_its_owners_private_configs,
);
