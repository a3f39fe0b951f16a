//! Two servers on one PostgreSQL database and one data folder, as two
//! replicas behind a load balancer: whichever one GitHub, a runner or a
//! viewer reaches, a push is built once, its log is whole on both, and
//! GitHub and a webhook hear of each state once.

mod support;

use axum::routing::post;
use gantry_protocol::{log_path, JobOutcome};
use gantry_testkit::db::Engine;
use serde_json::json;
use std::sync::{Arc, Mutex};
use support::*;

#[tokio::test]
async fn two_replicas_build_a_push_once_and_each_serves_its_whole_log() {
    let a = TestServer::start(Engine::Postgres).await;
    let b = a.twin().await;

    let posts = Arc::new(Mutex::new(0usize));
    let counted = posts.clone();
    let receiver = axum::Router::new().route(
        "/hook",
        post(move || {
            let counted = counted.clone();
            async move {
                *counted.lock().unwrap() += 1;
                "ok"
            }
        }),
    );
    let (listener, receiver_url) = gantry_testkit::bind().await;
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let pipeline = format!("script: ./test\nnotifications:\n  webhooks: {receiver_url}/hook\n");
    let (repo, sha) = a.repo(PUSH_REPO, &[(".travis.yml", &pipeline)], "replicas");
    let payload = push_payload(&repo.path.display().to_string(), &sha, "replicas");
    // GitHub delivers to one replica, and redelivers the same delivery to the other.
    assert!(a
        .webhook("push", "replica-push", &payload)
        .await
        .status()
        .is_success());
    assert!(b
        .webhook("push", "replica-push", &payload)
        .await
        .status()
        .is_success());
    let build = b
        .wait_build(PUSH_REPO, |b| b["commit"] == sha.as_str())
        .await;

    // A runner behind the balancer claims from one and reports to both.
    let job = b.claim("r", 5).await.expect("the job");
    let mut offset = 0u64;
    for (n, server) in [&a, &b, &a, &b].into_iter().enumerate() {
        let line = format!("line {n}\n");
        let sent = server
            .runner_post(
                &log_path(job.job_id, offset),
                &job.lease,
                line.clone().into_bytes().into(),
            )
            .await;
        assert!(sent.status().is_success(), "{}", sent.status());
        offset += line.len() as u64;
    }
    assert!(a.finish(&job, JobOutcome::Passed).await.is_success());

    for server in [&a, &b] {
        let log = server.text(&format!("/api/jobs/{}/log", job.job_id)).await;
        assert_eq!(log, "line 0\nline 1\nline 2\nline 3\n");
        let finished = gantry_testkit::eventually("the build to pass", WAIT, || async {
            let got = server.build(&build["id"]).await;
            (got["state"] == "passed").then_some(got)
        })
        .await;
        assert_eq!(finished["number"], 1);
    }
    let (_, builds) = a.get(&format!("/api/repos/{PUSH_REPO}/builds")).await;
    assert_eq!(
        builds.as_array().map(Vec::len),
        Some(1),
        "one build of two deliveries: {builds}"
    );

    // Both replicas send statuses and notifications; each goes out once.
    let states = gantry_testkit::eventually("the success status", WAIT, || async {
        let states: Vec<String> = a
            .statuses_sent(&sha)
            .iter()
            .map(|s| s["state"].as_str().unwrap_or_default().to_string())
            .collect();
        states.contains(&"success".to_string()).then_some(states)
    })
    .await;
    assert_eq!(
        states.iter().filter(|s| *s == "success").count(),
        1,
        "{states:?}"
    );
    gantry_testkit::eventually("the notification", WAIT, || async {
        (*posts.lock().unwrap() >= 1).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(*posts.lock().unwrap(), 1, "one webhook notification");
}

/// Both replicas' status loops find the same statuses waiting; each is
/// sent once, and in order, so GitHub never ends on an older one.
#[tokio::test]
async fn replicas_send_each_commit_status_once_and_in_order() {
    let a = TestServer::start(Engine::Postgres).await;
    let b = a.twin().await;
    a.github
        .slow_statuses(std::time::Duration::from_millis(300));
    let job = a.running_job("statuses").await;
    assert!(a.finish(&job, JobOutcome::Failed).await.is_success());
    // Both look at once, as their loops may.
    let (from_a, from_b) = tokio::join!(
        gantry_server::statuses::try_once(&a.app),
        gantry_server::statuses::try_once(&b.app)
    );
    from_a.expect("replica a's round");
    from_b.expect("replica b's round");
    let sha = a.build(&json!(1)).await["commit"]
        .as_str()
        .unwrap()
        .to_string();
    gantry_testkit::eventually("the failure status", WAIT, || async {
        let states = states(&a, &sha);
        states.contains(&"failure".to_string()).then_some(())
    })
    .await;
    // Time for a duplicate to arrive, if one was sent.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(states(&a, &sha), ["pending", "failure"]);
}

fn states(server: &TestServer, sha: &str) -> Vec<String> {
    server
        .statuses_sent(sha)
        .iter()
        .map(|s| s["state"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Pushes reaching both replicas at once become one build each, numbered
/// without a gap or a repeat.
#[tokio::test]
async fn pushes_to_both_replicas_at_once_are_numbered_in_one_sequence() {
    let a = TestServer::start(Engine::Postgres).await;
    let b = a.twin().await;
    let mut pushes = Vec::new();
    for n in 0..12 {
        let message = format!("push {n}");
        let (repo, sha) = a.repo(PUSH_REPO, &[(".travis.yml", "script: ./test\n")], &message);
        let payload = push_payload(&repo.path.display().to_string(), &sha, &message);
        pushes.push((repo, format!("burst-{n}"), payload));
    }
    let sent = pushes
        .iter()
        .enumerate()
        .map(|(n, (_, delivery, payload))| {
            let server = if n % 2 == 0 { &a } else { &b };
            server.webhook("push", delivery, payload)
        });
    for response in futures::future::join_all(sent).await {
        assert!(response.status().is_success(), "{}", response.status());
    }
    let builds = gantry_testkit::eventually("twelve builds", WAIT, || async {
        let (_, builds) = b
            .get(&format!("/api/repos/{PUSH_REPO}/builds?limit=100"))
            .await;
        let builds = builds.as_array()?.clone();
        (builds.len() >= 12).then_some(builds)
    })
    .await;
    let mut numbers: Vec<i64> = builds
        .iter()
        .map(|b| b["number"].as_i64().unwrap())
        .collect();
    numbers.sort();
    assert_eq!(numbers, (1..=12).collect::<Vec<i64>>());
}
