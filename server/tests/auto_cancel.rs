//! Auto-cancellation (`GANTRY_AUTO_CANCEL`): a newer push to a branch, or a
//! newer commit on a pull request, cancels the older builds that have not
//! started, as Travis does by default; `running` stops started ones too,
//! `off` none. Through webhooks and the runner API, on SQLite and PostgreSQL.

mod support;

use gantry_protocol::{heartbeat_path, HeartbeatResponse};
use gantry_server::config::AutoCancel;
use gantry_testkit::db::Engine;
use gantry_testkit::git::Repo;
use gantry_testkit::webhook::{fixture, point_pull_request};
use serde_json::Value;
use support::*;

/// Pushes a one-job pipeline to master of `PUSH_REPO` with `message`;
/// returns the local repository (keep it), the commit and the stored build.
async fn push(server: &TestServer, message: &str) -> (Repo, String, Value) {
    let (repo, sha) = server.repo(PUSH_REPO, &[(".travis.yml", "script: ./test\n")], message);
    let payload = push_payload(&repo.path.display().to_string(), &sha, message);
    server
        .webhook("push", &format!("push-{message}"), &payload)
        .await;
    let build = server
        .wait_build(PUSH_REPO, |b| b["message"] == message && b["state"] != "")
        .await;
    (repo, sha, build)
}

async fn state_of(server: &TestServer, build: &Value) -> (String, String, Vec<String>) {
    let b = server.build(&build["id"]).await;
    let jobs = b["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["state"].as_str().unwrap_or_default().to_string())
        .collect();
    (
        b["state"].as_str().unwrap_or_default().to_string(),
        b["reason"].as_str().unwrap_or_default().to_string(),
        jobs,
    )
}

/// (state, description) of the statuses GitHub got for `sha`.
fn statuses(server: &TestServer, sha: &str) -> Vec<(String, String)> {
    server
        .statuses_sent(sha)
        .into_iter()
        .map(|b| {
            let text = |k: &str| b[k].as_str().unwrap_or_default().to_string();
            (text("state"), text("description"))
        })
        .collect()
}

async fn a_newer_push_cancels_the_branchs_queued_builds_but_not_a_running_one(engine: Engine) {
    let server = TestServer::start(engine).await;
    let (_one, sha_one, one) = push(&server, "one").await;
    assert_eq!(one["state"], "queued");
    let (_two, _, two) = push(&server, "two").await;

    let reason = "auto-canceled: build #2 of branch master is newer";
    assert_eq!(
        state_of(&server, &one).await,
        ("canceled".into(), reason.into(), vec!["canceled".into()])
    );
    assert_eq!(state_of(&server, &two).await.0, "queued");
    let sent = gantry_testkit::eventually("the canceled status", WAIT, || async {
        let s = statuses(&server, &sha_one);
        (s.len() >= 2).then_some(s)
    })
    .await;
    assert_eq!(
        sent.last().unwrap(),
        &(
            "error".to_string(),
            format!("Build #1 was canceled ({reason})")
        )
    );

    // Build two starts; a third push leaves it running (the default is `queued`).
    let a = server.claim("r1", 5).await.expect("build two's job");
    assert_eq!(a.number, "2.1");
    let (_three, _, three) = push(&server, "three").await;
    assert_eq!(state_of(&server, &two).await.0, "running");
    assert_eq!(state_of(&server, &three).await.0, "queued");
    let hb = server
        .runner_post(&heartbeat_path(a.job_id), &a.lease, reqwest::Body::from(""))
        .await;
    assert!(!hb.json::<HeartbeatResponse>().await.unwrap().cancel);
}

async fn a_newer_commit_on_a_pull_request_cancels_its_older_build(engine: Engine) {
    let server = TestServer::start(engine).await;
    let mut repos = Vec::new();
    let mut builds = Vec::new();
    for (i, message) in ["first", "second"].into_iter().enumerate() {
        let (repo, sha) = server.repo(
            "Codertocat/Hello-World",
            &[(".travis.yml", "script: ./test\n")],
            message,
        );
        let mut payload = fixture("pull_request", "opened.payload.json");
        point_pull_request(&mut payload, &repo.path.display().to_string(), &sha);
        server
            .webhook("pull_request", &format!("pr-{i}"), &payload)
            .await;
        builds.push(
            server
                .wait_build("Codertocat/Hello-World", |b| b["commit"] == sha.as_str())
                .await,
        );
        repos.push(repo);
    }
    let (state, reason, _) = state_of(&server, &builds[0]).await;
    assert_eq!(state, "canceled");
    assert_eq!(
        reason,
        "auto-canceled: build #2 of pull request #2 is newer"
    );
    assert_eq!(state_of(&server, &builds[1]).await.0, "queued");
}

async fn running_mode_stops_a_started_build_and_off_cancels_nothing(engine: Engine) {
    let server = TestServer::start_auto_cancel(engine, AutoCancel::Running).await;
    let (_one, _, one) = push(&server, "one").await;
    let a = server.claim("r1", 5).await.expect("build one's job");
    let (_two, _, _) = push(&server, "two").await;
    let hb = server
        .runner_post(&heartbeat_path(a.job_id), &a.lease, reqwest::Body::from(""))
        .await;
    assert!(
        hb.json::<HeartbeatResponse>().await.unwrap().cancel,
        "the runner is told to stop build one"
    );
    assert_eq!(
        state_of(&server, &one).await.1,
        "auto-canceled: build #2 of branch master is newer"
    );

    let server = TestServer::start_auto_cancel(engine, AutoCancel::Off).await;
    let (_one, _, one) = push(&server, "one").await;
    let (_two, _, _) = push(&server, "two").await;
    assert_eq!(state_of(&server, &one).await.0, "queued");
}

on_both_databases!(
    a_newer_push_cancels_the_branchs_queued_builds_but_not_a_running_one,
    a_newer_commit_on_a_pull_request_cancels_its_older_build,
    running_mode_stops_a_started_build_and_off_cancels_nothing,
);
