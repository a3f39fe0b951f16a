//! The runner API: claims, leases, logs, results and stages — on SQLite and PostgreSQL.

mod support;

use gantry_protocol::{
    heartbeat_path, log_path, HeartbeatResponse, JobOutcome, LogAck, LEASE_HEADER,
};
use gantry_server::config::AutoCancel;
use gantry_testkit::db::Engine;
use reqwest::StatusCode;
use std::time::Duration;
use support::*;

async fn queue_push(server: &TestServer, pipeline: &str, delivery: &str) -> serde_json::Value {
    let (repo, sha) = server.repo(PUSH_REPO, &[(".travis.yml", pipeline)], "x");
    let status = server
        .webhook(
            "push",
            delivery,
            &push_payload(&repo.path.display().to_string(), &sha, "x"),
        )
        .await
        .status();
    assert_eq!(status, StatusCode::ACCEPTED);
    server
        .wait_build(PUSH_REPO, |b| {
            b["state"] == "queued" && !b["jobs"].as_array().unwrap().is_empty()
        })
        .await
}

async fn a_waiting_claim_gets_a_job_queued_while_it_waits(engine: Engine) {
    let server = TestServer::start(engine).await;
    assert!(
        server.claim("idle", 0).await.is_none(),
        "nothing queued yet"
    );
    let (repo, sha) = server.repo(PUSH_REPO, &[(".travis.yml", "script: ./test\n")], "x");
    let waiting = {
        let url = server.url.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            client
                .post(format!("{url}{}", gantry_protocol::CLAIM_PATH))
                .bearer_auth(RUNNER)
                .json(&gantry_protocol::ClaimRequest {
                    runner: "r1".into(),
                    wait_seconds: 30,
                    labels: Default::default(),
                })
                .send()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    server
        .webhook(
            "push",
            "wake",
            &push_payload(&repo.path.display().to_string(), &sha, "x"),
        )
        .await;
    let response = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the claim returned")
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let a: gantry_protocol::Assignment = response.json().await.unwrap();
    assert_eq!(a.number, "1.1");
    assert_eq!(a.build.commit, sha);
    assert_eq!(a.repo.full_name, PUSH_REPO);
    assert_eq!(a.job.commands(gantry_pipeline::Phase::Script), ["./test"]);
    assert_eq!(a.log_offset, 0);
    assert_eq!(
        a.web_url.as_deref(),
        Some(format!("http://gantry.test/{PUSH_REPO}/builds/{}", a.build_id).as_str())
    );
    // A release deploy talks to the GitHub the server knows (Enterprise too).
    assert_eq!(
        a.github_api_url.as_deref(),
        Some(server.github.url.as_str())
    );
    let build = server.build(&serde_json::json!(a.build_id.0)).await;
    assert_eq!(build["state"], "running");
    assert_eq!(build["jobs"][0]["runner"], "r1");
}

async fn two_claimers_racing_for_one_job_one_wins(engine: Engine) {
    let server = TestServer::start(engine).await;
    queue_push(&server, "script: ./test\n", "race").await;
    for _ in 0..3 {
        let (a, b) = tokio::join!(server.claim("a", 0), server.claim("b", 0));
        let winners = [a.is_some(), b.is_some()].iter().filter(|w| **w).count();
        assert!(winners <= 1);
        if winners == 1 {
            assert!(
                server.claim("c", 0).await.is_none(),
                "the job was given out once"
            );
            return;
        }
    }
    panic!("no claimer got the job");
}

async fn many_claimers_never_get_the_same_job(engine: Engine) {
    let server = TestServer::start(engine).await;
    let envs: Vec<String> = (0..12).map(|i| format!("N={i}")).collect();
    queue_push(
        &server,
        &format!("script: ./test\nenv: [{}]\n", envs.join(", ")),
        "many",
    )
    .await;
    let claims = futures::future::join_all((0..16).map(|i| {
        let server = &server;
        async move { server.claim(&format!("r{i}"), 1).await }
    }))
    .await;
    let mut ids: Vec<i64> = claims.iter().flatten().map(|a| a.job_id.0).collect();
    assert_eq!(ids.len(), 12);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 12, "no job claimed twice");
}

async fn logs_are_ordered_idempotent_and_served_with_ranges(engine: Engine) {
    let server = TestServer::start(engine).await;
    queue_push(&server, "script: ./test\n", "logs").await;
    let a = server.claim("r", 0).await.unwrap();
    let send = |offset: u64, bytes: &'static [u8]| {
        let server = &server;
        let lease = a.lease.clone();
        async move {
            server
                .runner_post(&log_path(a.job_id, offset), &lease, bytes.to_vec().into())
                .await
        }
    };
    let r = send(0, b"line 1\nline 2\n").await;
    assert_eq!(r.json::<LogAck>().await.unwrap().size, 14);
    let r = send(0, b"line 1\nline 2\n").await;
    assert_eq!(
        r.json::<LogAck>().await.unwrap().size,
        14,
        "a resent chunk is not duplicated"
    );
    let r = send(99, b"lost?\n").await;
    assert_eq!(r.status(), StatusCode::CONFLICT, "a gap is refused");
    assert_eq!(
        r.json::<LogAck>().await.unwrap().size,
        14,
        "and says where to resume"
    );
    send(14, b"line 3\n").await;
    let get_log = || {
        server
            .http
            .get(format!("{}/api/jobs/{}/log", server.url, a.job_id))
    };
    let log = get_log().send().await.unwrap();
    assert_eq!(log.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(log.text().await.unwrap(), "line 1\nline 2\nline 3\n");
    let part = get_log()
        .header("range", "bytes=7-13")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.text().await.unwrap(), "line 2\n");
    let r = server
        .runner_post(
            &log_path(a.job_id, 21),
            "not-the-lease",
            b"x".to_vec().into(),
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::CONFLICT,
        "a stale lease cannot write"
    );

    // A chunk over the 16 MiB limit is refused as too large, whether it
    // says its length up front or comes in pieces without one; none of it is stored.
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: gantry\r\nauthorization: Bearer {RUNNER}\r\n{LEASE_HEADER}: {}\r\n",
        log_path(a.job_id, 21),
        a.lease
    );
    let piece = vec![b'x'; 1024 * 1024];
    let mut declared = format!("{head}content-length: {}\r\n\r\n", 17 * piece.len()).into_bytes();
    let mut chunked = format!("{head}transfer-encoding: chunked\r\n\r\n").into_bytes();
    for _ in 0..17 {
        declared.extend_from_slice(&piece);
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(&piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(
        raw_status(&server.url, &declared).await,
        413,
        "declared length"
    );
    assert_eq!(raw_status(&server.url, &chunked).await, 413, "chunked");
    let log = get_log().send().await.unwrap();
    assert_eq!(log.text().await.unwrap(), "line 1\nline 2\nline 3\n");
}

async fn heartbeats_extend_the_lease_and_carry_cancel(engine: Engine) {
    let server = TestServer::start(engine).await;
    let build = queue_push(&server, "script: ./test\n", "hb").await;
    let a = server.claim("r", 0).await.unwrap();
    let hb = server
        .runner_post(&heartbeat_path(a.job_id), &a.lease, reqwest::Body::from(""))
        .await;
    assert_eq!(
        hb.json::<HeartbeatResponse>().await.unwrap(),
        HeartbeatResponse {
            cancel: false,
            lease_seconds: 60
        }
    );
    let (status, _) = server
        .admin_post(
            &format!("/api/builds/{}/cancel", build["id"]),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let hb = server
        .runner_post(&heartbeat_path(a.job_id), &a.lease, reqwest::Body::from(""))
        .await;
    assert!(hb.json::<HeartbeatResponse>().await.unwrap().cancel);
    assert_eq!(
        server.finish(&a, JobOutcome::Canceled).await,
        StatusCode::OK
    );
    let build = server.build(&build["id"]).await;
    assert_eq!(build["state"], "canceled");
    assert_eq!(build["jobs"][0]["state"], "canceled");
    assert_eq!(
        server.finish(&a, JobOutcome::Passed).await,
        StatusCode::CONFLICT,
        "finished once"
    );
}

async fn an_expired_lease_requeues_once_then_errors_runner_lost(engine: Engine) {
    let server = TestServer::start_with(engine, Duration::from_secs(1)).await;
    let build = queue_push(&server, "script: ./test\n", "lease").await;
    let first = server.claim("doomed-1", 0).await.unwrap();
    server
        .runner_post(
            &log_path(first.job_id, 0),
            &first.lease,
            b"working...\n".to_vec().into(),
        )
        .await;
    // No heartbeats: the job comes back to the queue once.
    let second = server
        .claim("doomed-2", 10)
        .await
        .expect("requeued after the lease expired");
    assert_eq!(second.job_id, first.job_id);
    assert!(
        second.log_offset > 0,
        "the new attempt appends after the old log"
    );
    let hb = server
        .runner_post(
            &heartbeat_path(first.job_id),
            &first.lease,
            reqwest::Body::from(""),
        )
        .await;
    assert_eq!(
        hb.status(),
        StatusCode::CONFLICT,
        "the first runner's lease is gone"
    );
    // Silent again: now it errors.
    let job = gantry_testkit::eventually("runner lost", WAIT, || async {
        let (_, job) = server.get(&format!("/api/jobs/{}", first.job_id)).await;
        (job["state"] == "errored").then_some(job)
    })
    .await;
    assert_eq!(job["reason"], "runner lost");
    assert_eq!(server.build(&build["id"]).await["state"], "errored");
    let log = server
        .text(&format!("/api/jobs/{}/log", first.job_id))
        .await;
    assert!(log.starts_with("working...\n"), "{log}");
    assert!(
        log.contains("runner lost: no heartbeat from doomed-1 for 1 s; the job runs again"),
        "{log}"
    );
    assert!(
        log.contains("runner lost: no heartbeat from doomed-2 for 1 s; the job is errored"),
        "{log}"
    );
}

async fn stages_run_in_order_and_a_failure_cancels_the_rest(engine: Engine) {
    let server = TestServer::start(engine).await;
    let pipeline = "script: ./test\nstages: [test, deploy]\njobs:\n  include:\n    - name: unit\n    - name: lint\n      allow_failure: true\n    - stage: deploy\n      name: ship\n";
    let build = queue_push(&server, pipeline, "stages").await;
    let states = |b: &serde_json::Value| -> Vec<String> {
        b["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| {
                format!(
                    "{}:{}",
                    j["name"].as_str().unwrap(),
                    j["state"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(
        states(&build),
        ["unit:queued", "lint:queued", "ship:created"]
    );
    let unit = server.claim("r", 0).await.unwrap();
    let lint = server.claim("r", 0).await.unwrap();
    assert!(
        server.claim("r", 0).await.is_none(),
        "deploy waits for test"
    );
    server.finish(&lint, JobOutcome::Failed).await;
    server.finish(&unit, JobOutcome::Passed).await;
    let build_now = server.build(&build["id"]).await;
    assert_eq!(
        states(&build_now),
        ["unit:passed", "lint:failed", "ship:queued"],
        "an allowed failure does not stop the next stage"
    );
    let ship = server.claim("r", 0).await.unwrap();
    assert_eq!(ship.job.name, "ship");
    server.finish(&ship, JobOutcome::Passed).await;
    let done = server.build(&build["id"]).await;
    assert_eq!(done["state"], "passed");
    assert!(done["finished_at"].is_string());

    // A required failure: later stages are canceled and the build fails.
    let (repo, sha) = server.repo(PUSH_REPO, &[(".travis.yml", pipeline)], "again");
    server
        .webhook(
            "push",
            "stages-2",
            &push_payload(&repo.path.display().to_string(), &sha, "again"),
        )
        .await;
    let second = server
        .wait_build(PUSH_REPO, |b| b["number"] == 2 && b["state"] == "queued")
        .await;
    let a = server.claim("r", 0).await.unwrap();
    let b = server.claim("r", 0).await.unwrap();
    server
        .finish(
            &a,
            if a.job.name == "unit" {
                JobOutcome::Failed
            } else {
                JobOutcome::Passed
            },
        )
        .await;
    server
        .finish(
            &b,
            if b.job.name == "unit" {
                JobOutcome::Failed
            } else {
                JobOutcome::Passed
            },
        )
        .await;
    let second = server.build(&second["id"]).await;
    assert_eq!(second["state"], "failed");
    assert_eq!(states(&second)[2], "ship:canceled");
    assert_eq!(second["jobs"][2]["reason"], "an earlier stage failed");
}

async fn runners_need_the_runner_token(engine: Engine) {
    let server = TestServer::start(engine).await;
    let response = server
        .http
        .post(format!("{}{}", server.url, gantry_protocol::CLAIM_PATH))
        .bearer_auth("guess-0123456789")
        .json(&serde_json::json!({"runner": "x", "wait_seconds": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = server
        .http
        .post(format!("{}{}", server.url, gantry_protocol::CLAIM_PATH))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

async fn private_repositories_come_with_clone_credentials(engine: Engine) {
    let server = TestServer::start(engine).await;
    let (_repo, full_name) = push_private(&server, "script: ./test\n", "private-1").await;
    server
        .wait_build(&full_name, |b| b["state"] == "queued")
        .await;
    let a = server.claim("r", 5).await.unwrap();
    let creds = a
        .git_credentials
        .expect("credentials for a private repository");
    assert_eq!(creds.username, "x-access-token");
    assert_eq!(creds.password, "github-token-for-tests");
    assert!(
        !format!("{creds:?}").contains("github-token-for-tests"),
        "Debug hides the password"
    );

    queue_push(&server, "script: ./test\n", "public-1").await;
    let public = server.claim("r", 5).await.unwrap();
    assert!(
        public.git_credentials.is_none(),
        "public repositories get none"
    );
}

/// A queued job says why it has not started: no runner connected, or its
/// place in the queue with every runner busy. The admin lists the runners.
async fn a_queued_job_says_why_it_waits_and_the_admin_lists_the_runners(engine: Engine) {
    let server = TestServer::start_auto_cancel(engine, AutoCancel::Off).await;
    let queued = |message: &'static str| {
        let server = &server;
        async move {
            let (repo, sha) =
                server.repo(PUSH_REPO, &[(".travis.yml", "script: ./test\n")], message);
            let payload = push_payload(&repo.path.display().to_string(), &sha, message);
            server
                .webhook("push", &format!("push-{message}"), &payload)
                .await;
            let build = server
                .wait_build(PUSH_REPO, |b| {
                    b["message"] == message && b["jobs"][0]["state"] == "queued"
                })
                .await;
            build["jobs"][0].clone()
        }
    };
    let waiting = |job: serde_json::Value| {
        let server = &server;
        async move {
            let (_, job) = server.admin_get(&format!("/api/jobs/{}", job["id"])).await;
            job["waiting"].as_str().unwrap_or_default().to_string()
        }
    };

    let first = queued("one").await;
    assert_eq!(
        first["waiting"],
        "Next in the queue. No runner has asked this server for work in the last 90 s, and none is running a job: start one (`gantry runner`), or check that the runners can reach this server."
    );

    // r1 takes it: the jobs queued after wait for a busy runner, in order.
    let running = server.claim("r1", 5).await.expect("the first job");
    assert_eq!(running.job_id.0, first["id"]);
    let second = queued("two").await;
    let third = queued("three").await;
    assert_eq!(
        waiting(second.clone()).await,
        "Next in the queue; every runner is busy (1 running job on 1 runner)."
    );
    assert_eq!(
        waiting(third.clone()).await,
        "1 queued job ahead of it; every runner is busy (1 running job on 1 runner)."
    );
    let build_page = server
        .text(&format!("/{PUSH_REPO}/builds/{}", third["build_id"]))
        .await;
    assert!(
        build_page.contains("1 queued job ahead of it; every runner is busy"),
        "{build_page}"
    );
    // Each job of a build behind them has its own place, on the build's
    // answer and its page alike.
    let (repo, sha) = server.repo(
        PUSH_REPO,
        &[(".travis.yml", "script: ./test\nenv: [A=1, A=2, A=3]\n")],
        "matrix",
    );
    let payload = push_payload(&repo.path.display().to_string(), &sha, "matrix");
    server.webhook("push", "push-matrix", &payload).await;
    let matrix = server
        .wait_build(PUSH_REPO, |b| {
            b["message"] == "matrix" && b["jobs"].as_array().is_some_and(|j| j.len() == 3)
        })
        .await;
    let (_, matrix) = server
        .admin_get(&format!("/api/builds/{}", matrix["id"]))
        .await;
    let places: Vec<&str> = matrix["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["waiting"].as_str().unwrap_or_default())
        .collect();
    let busy = "; every runner is busy (1 running job on 1 runner).";
    assert_eq!(
        places,
        [2, 3, 4].map(|n| format!("{n} queued jobs ahead of it{busy}")),
        "{matrix}"
    );
    let matrix_page = server
        .text(&format!("/{PUSH_REPO}/builds/{}", matrix["id"]))
        .await;
    assert!(
        matrix_page.contains("4 queued jobs ahead of it; every runner is busy"),
        "{matrix_page}"
    );
    // A running job says nothing of the sort.
    let (_, job) = server
        .admin_get(&format!("/api/jobs/{}", running.job_id.0))
        .await;
    assert!(job.get("waiting").is_none(), "{job}");

    let (status, runners) = server.admin_get("/api/runners").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(runners.as_array().unwrap().len(), 1, "{runners}");
    assert_eq!(runners[0]["name"], "r1");
    assert_eq!(runners[0]["jobs"], serde_json::json!([running.job_id.0]));
    assert_eq!(runners[0]["asking"], false);
    assert!(runners[0]["last_seen_at"].is_string(), "{runners}");
    let (status, _) = server.get("/api/runners").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "runner names are for the admin"
    );
}

on_both_databases!(
    a_queued_job_says_why_it_waits_and_the_admin_lists_the_runners,
    private_repositories_come_with_clone_credentials,
    a_waiting_claim_gets_a_job_queued_while_it_waits,
    two_claimers_racing_for_one_job_one_wins,
    many_claimers_never_get_the_same_job,
    logs_are_ordered_idempotent_and_served_with_ranges,
    heartbeats_extend_the_lease_and_carry_cancel,
    an_expired_lease_requeues_once_then_errors_runner_lost,
    stages_run_in_order_and_a_failure_cancels_the_rest,
    runners_need_the_runner_token,
    one_running_job_at_a_time_deploys_to_a_target,
    a_repository_runs_no_more_jobs_at_once_than_its_limit,
);

async fn lock_call(
    server: &TestServer,
    a: &gantry_protocol::Assignment,
    target: &str,
) -> reqwest::Response {
    let request = gantry_protocol::DeployLockRequest {
        target: target.into(),
    };
    server
        .runner_json(
            &gantry_protocol::deploy_lock_path(a.job_id),
            &a.lease,
            &request,
        )
        .await
}

async fn lock(
    server: &TestServer,
    a: &gantry_protocol::Assignment,
    target: &str,
) -> gantry_protocol::DeployLockResponse {
    let response = lock_call(server, a, target).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn one_running_job_at_a_time_deploys_to_a_target(engine: Engine) {
    let server = TestServer::start(engine).await;
    // Two jobs of one build, both running: they deploy to the same environment.
    queue_push(&server, "script: ./test\nenv: [A=1, A=2]\n", "lock-1").await;
    let first = server.claim("r1", 0).await.unwrap();
    let second = server.claim("r2", 0).await.unwrap();
    let target = "elasticbeanstalk:widget/widget-prod";
    assert!(lock(&server, &first, target).await.granted);
    assert!(
        lock(&server, &first, target).await.granted,
        "asking again keeps it"
    );
    let refused = lock(&server, &second, target).await;
    assert!(!refused.granted);
    assert_eq!(refused.holder.as_deref(), Some("build 1 (job 1.1)"));
    assert!(
        lock(&server, &second, "ecs:production/web").await.granted,
        "another target is free"
    );

    // The holder ends: the target is free for the waiting job.
    assert_eq!(
        server.finish(&first, JobOutcome::Passed).await,
        StatusCode::OK
    );
    assert!(lock(&server, &second, target).await.granted);

    // Only a job's current lease may ask.
    let stale = lock_call(&server, &first, target).await;
    assert_eq!(stale.status(), StatusCode::CONFLICT);
}

/// Travis's "Limit concurrent jobs": with a limit of 2, runners asking all
/// at once start two of a four-job build, the other two say why they wait,
/// another repository's job still starts, and each finished job lets the
/// next one start at once.
async fn a_repository_runs_no_more_jobs_at_once_than_its_limit(engine: Engine) {
    let server = TestServer::start(engine).await;
    let build = queue_push(
        &server,
        "script: ./test\nenv: [N=1, N=2, N=3, N=4]\n",
        "limited",
    )
    .await;
    let settings = format!("/api/repos/{PUSH_REPO}/settings");
    let (status, shown) = server.admin_get(&settings).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["max_concurrent_jobs"], serde_json::Value::Null);
    let (status, refused) = server
        .admin_put(&settings, serde_json::json!({ "max_concurrent_jobs": 0 }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        refused["error"].as_str().unwrap().contains("at least 1"),
        "{refused}"
    );
    let (status, set) = server
        .admin_put(&settings, serde_json::json!({ "max_concurrent_jobs": 2 }))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(set["max_concurrent_jobs"], 2);
    assert_eq!(set["repo"], PUSH_REPO);
    // The repository's page says so.
    let page = server.text(&format!("/{PUSH_REPO}")).await;
    assert!(
        page.contains("Runs at most 2 jobs at once; the others wait in the queue."),
        "{page}"
    );
    // A misspelt or missing setting is refused and lifts nothing.
    let (status, _) = server
        .admin_put(&settings, serde_json::json!({ "max_concurent_jobs": 3 }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, refused) = server.admin_put(&settings, serde_json::json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("null for no limit"),
        "{refused}"
    );
    assert_eq!(
        server.admin_get(&settings).await.1["max_concurrent_jobs"],
        2
    );
    let anonymous = reqwest::Client::new()
        .put(format!("{}{settings}", server.url))
        .json(&serde_json::json!({ "max_concurrent_jobs": 9 }))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // Six runners ask at once (on PostgreSQL side by side): two start.
    let claims = futures::future::join_all((0..6).map(|i| {
        let server = &server;
        async move { server.claim(&format!("r{i}"), 0).await }
    }))
    .await;
    let running: Vec<_> = claims.into_iter().flatten().collect();
    assert_eq!(running.len(), 2, "the limit holds");
    let build = server.build(&build["id"]).await;
    let waiting: Vec<&str> = build["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|job| job["state"] == "queued")
        .map(|job| job["waiting"].as_str().unwrap())
        .collect();
    assert_eq!(
        waiting,
        [
            "Next in the queue; the repository runs at most 2 jobs at once and 2 are running, so it starts when one of them ends.",
            "1 queued job ahead of it; the repository runs at most 2 jobs at once and 2 are running, so it starts when one of them ends.",
        ]
    );

    // Another repository's job starts meanwhile.
    let other = "octo/other";
    let (repo, sha) = server.repo(other, &[(".travis.yml", "script: ./test\n")], "y");
    let mut payload = push_payload(&repo.path.display().to_string(), &sha, "y");
    payload["repository"]["full_name"] = other.into();
    server.webhook("push", "other-repo", &payload).await;
    server.wait_build(other, |b| b["state"] == "queued").await;
    let theirs = server
        .claim("r-other", 5)
        .await
        .expect("the other repository's job");
    assert_eq!(theirs.repo.full_name, other);
    assert!(server.claim("r7", 0).await.is_none(), "still two running");

    // A job ends: a runner waiting for work gets the next job at once.
    let (next, finished) = tokio::join!(server.claim("r8", 20), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.finish(&running[0], JobOutcome::Passed).await
    });
    assert_eq!(finished, StatusCode::OK);
    let next = next.expect("the next job, once one ended");
    assert_eq!(next.repo.full_name, PUSH_REPO);
    assert!(running.iter().all(|r| r.job_id != next.job_id));
    assert!(server.claim("r9", 0).await.is_none(), "two running again");

    // No limit: the last one starts.
    let (status, _) = server
        .admin_put(
            &settings,
            serde_json::json!({ "max_concurrent_jobs": null }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(server.claim("r10", 0).await.is_some());
}

/// On PostgreSQL, claims commit without waiting for their WAL flush (a lost
/// claim is recovered by its lease), and nothing else does: webhook
/// deliveries and every other write go through the main pool, which waits.
#[tokio::test]
async fn postgres_claims_alone_skip_the_wal_wait() {
    use gantry_server::config::Database;
    use gantry_server::store::Db;
    let url = gantry_testkit::db::fresh_postgres().await;
    let db = Db::connect(&Database::Postgres(url)).await.unwrap();
    let setting = |pool: &sqlx::AnyPool| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("SHOW synchronous_commit")
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(setting(db.claims_pool()).await, "off");
    assert_eq!(setting(&db.pool).await, "on");
}
