//! Commit statuses as GitHub receives them (through the local double of its
//! API) — on SQLite and PostgreSQL.

mod support;

use gantry_protocol::JobOutcome;
use gantry_testkit::db::Engine;
use gantry_testkit::webhook::{fixture, point_pull_request};
use serde_json::Value;
use support::*;

/// The statuses GitHub got for `sha`, in order: (state, context, description, target_url).
fn sent(server: &TestServer, sha: &str) -> Vec<(String, String, String, String)> {
    server
        .statuses_sent(sha)
        .into_iter()
        .map(|b| {
            let text = |k: &str| b[k].as_str().unwrap_or_default().to_string();
            (
                text("state"),
                text("context"),
                text("description"),
                text("target_url"),
            )
        })
        .collect()
}

async fn wait_sent(
    server: &TestServer,
    sha: &str,
    count: usize,
) -> Vec<(String, String, String, String)> {
    gantry_testkit::eventually(&format!("{count} statuses"), WAIT, || async {
        let s = sent(server, sha);
        (s.len() >= count).then_some(s)
    })
    .await
}

async fn push(server: &TestServer, pipeline: &str, delivery: &str) -> (Value, String) {
    let (repo, sha) = server.repo(PUSH_REPO, &[(".travis.yml", pipeline)], "x");
    server
        .webhook(
            "push",
            delivery,
            &push_payload(&repo.path.display().to_string(), &sha, "x"),
        )
        .await;
    let build = server
        .wait_build(PUSH_REPO, |b| b["state"] != "running")
        .await;
    (build, sha)
}

async fn a_passing_build_goes_pending_then_success(engine: Engine) {
    let server = TestServer::start(engine).await;
    let (build, sha) = push(&server, "script: ./test\n", "pass").await;
    let a = server.claim("r", 5).await.unwrap();
    server.finish(&a, JobOutcome::Passed).await;
    let statuses = wait_sent(&server, &sha, 2).await;
    let target = format!("http://gantry.test/{PUSH_REPO}/builds/{}", build["id"]);
    assert_eq!(
        statuses[0],
        (
            "pending".into(),
            "gantry/push".into(),
            "Build #1 is queued".into(),
            target.clone()
        )
    );
    assert_eq!(
        (
            statuses[1].0.as_str(),
            statuses[1].1.as_str(),
            statuses[1].3.as_str()
        ),
        ("success", "gantry/push", target.as_str())
    );
    assert!(
        statuses[1].2.starts_with("Build #1 passed in "),
        "{:?}",
        statuses[1]
    );
    assert_eq!(statuses.len(), 2);
    let auth: Vec<Option<String>> = server
        .github
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.authorization)
        .collect();
    assert!(auth
        .iter()
        .all(|a| a.as_deref() == Some("Bearer github-token-for-tests")));
}

async fn a_failing_build_names_the_failing_job(engine: Engine) {
    let server = TestServer::start(engine).await;
    let (_, sha) = push(
        &server,
        "script: ./test\nenv: [SUITE=unit, SUITE=e2e]\n",
        "fail",
    )
    .await;
    let a = server.claim("r", 5).await.unwrap();
    let b = server.claim("r", 5).await.unwrap();
    server.finish(&a, JobOutcome::Passed).await;
    server.finish(&b, JobOutcome::Failed).await;
    let statuses = wait_sent(&server, &sha, 2).await;
    let states: Vec<&str> = statuses.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(states, ["pending", "failure"]);
    assert_eq!(
        statuses[1].2,
        format!(
            "Build #1 failed: job 1.{} ({}) failed",
            b.job.number, b.job.name
        )
    );
}

async fn a_pipeline_with_errors_is_an_error_status(engine: Engine) {
    let server = TestServer::start(engine).await;
    let (_, sha) = push(&server, "script:\n  run: x\n", "broken").await;
    let statuses = wait_sent(&server, &sha, 1).await;
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0].0, "error");
    assert_eq!(
        statuses[0].2,
        "Build #1 errored: .travis.yml has 1 error(s)"
    );
}

async fn pull_requests_report_under_their_own_context(engine: Engine) {
    let server = TestServer::start(engine).await;
    let (repo, sha) = server.repo(
        "Codertocat/Hello-World",
        &[(".travis.yml", "script: ./test\n")],
        "x",
    );
    let mut payload = fixture("pull_request", "opened.payload.json");
    point_pull_request(&mut payload, &repo.path.display().to_string(), &sha);
    server.webhook("pull_request", "pr", &payload).await;
    let statuses = wait_sent(&server, &sha, 1).await;
    assert_eq!(
        (statuses[0].0.as_str(), statuses[0].1.as_str()),
        ("pending", "gantry/pr")
    );
}

async fn a_github_outage_delays_statuses_but_not_builds(engine: Engine) {
    let server = TestServer::start(engine).await;
    let (build, sha) = push(&server, "script: ./test\n", "outage").await;
    wait_sent(&server, &sha, 1).await;
    server.github.fail_next(2, 502);
    let a = server.claim("r", 5).await.unwrap();
    server.finish(&a, JobOutcome::Passed).await;
    assert_eq!(
        server.build(&build["id"]).await["state"],
        "passed",
        "the build does not wait for GitHub"
    );
    let statuses = wait_sent(&server, &sha, 2).await;
    assert_eq!(statuses[1].0, "success", "sent once GitHub answers again");
    let attempts = server
        .github
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(attempts, 4, "one pending, two failed attempts, one success");
}

on_both_databases!(
    a_passing_build_goes_pending_then_success,
    a_failing_build_names_the_failing_job,
    a_pipeline_with_errors_is_an_error_status,
    pull_requests_report_under_their_own_context,
    a_github_outage_delays_statuses_but_not_builds,
);
