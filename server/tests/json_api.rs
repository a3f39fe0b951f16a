//! The JSON API a user or script calls — on SQLite and PostgreSQL.

mod support;

use gantry_protocol::JobOutcome;
use gantry_server::config::AutoCancel;
use gantry_testkit::db::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::*;

/// Pushes `count` commits of `pipeline`, one build each; returns the repo for more.
async fn builds(server: &TestServer, pipeline: &str, count: usize) -> gantry_testkit::git::Repo {
    let (repo, _) = server.repo(PUSH_REPO, &[(".travis.yml", pipeline)], "first");
    let url = repo.path.display().to_string();
    for i in 0..count {
        let sha = repo.commit(&[], &format!("commit {i}"));
        server
            .webhook(
                "push",
                &format!("api-{i}"),
                &push_payload(&url, &sha, &format!("commit {i}")),
            )
            .await;
        server
            .wait_build(PUSH_REPO, |b| {
                b["number"] == i + 1 && b["state"] == "queued"
            })
            .await;
    }
    repo
}

async fn builds_list_newest_first_with_filters_and_pages(engine: Engine) {
    // Five builds of one branch, all kept: auto-cancel would cancel four.
    let server = TestServer::start_auto_cancel(engine, AutoCancel::Off).await;
    builds(&server, "script: ./test\n", 5).await;
    let a = server.claim("r", 0).await.unwrap();
    server.finish(&a, JobOutcome::Passed).await;
    let (status, list) = server.get(&format!("/api/repos/{PUSH_REPO}/builds")).await;
    assert_eq!(status, StatusCode::OK);
    let numbers: Vec<i64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["number"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [5, 4, 3, 2, 1]);
    for key in [
        "id",
        "number",
        "state",
        "event",
        "branch",
        "tag",
        "commit",
        "message",
        "author",
        "pull_request",
        "created_at",
        "started_at",
        "finished_at",
    ] {
        assert!(list[0].get(key).is_some(), "builds carry `{key}`");
    }
    assert!(
        list[0]["created_at"].as_str().unwrap().ends_with('Z'),
        "RFC 3339 times"
    );
    let (_, page) = server
        .get(&format!("/api/repos/{PUSH_REPO}/builds?limit=2&before=4"))
        .await;
    let numbers: Vec<i64> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["number"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [3, 2]);
    let (_, passed) = server
        .get(&format!("/api/repos/{PUSH_REPO}/builds?state=passed"))
        .await;
    assert_eq!(passed.as_array().unwrap().len(), 1);
    assert_eq!(passed[0]["number"], 1);
    let (_, other) = server
        .get(&format!("/api/repos/{PUSH_REPO}/builds?branch=dev"))
        .await;
    assert!(other.as_array().unwrap().is_empty());
    let (status, error) = server
        .get(&format!("/api/repos/{PUSH_REPO}/builds?state=green"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error["error"]
        .as_str()
        .unwrap()
        .contains("states are queued, running"));
    let (status, _) = server.get("/api/repos/nobody/nothing/builds").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn jobs_show_their_fields(engine: Engine) {
    let server = TestServer::start(engine).await;
    builds(
        &server,
        "language: node_js\nnode_js: '20'\nscript: npm test\n",
        1,
    )
    .await;
    let a = server.claim("runner-7", 0).await.unwrap();
    let report = gantry_protocol::FinishRequest {
        outcome: JobOutcome::Failed,
        exit_code: Some(3),
        reason: None,
        phases: vec![gantry_protocol::PhaseTiming {
            phase: "script".into(),
            started_at_ms: 1,
            duration_ms: 1500,
            exit_code: 3,
        }],
    };
    assert_eq!(server.finish_with(&a, &report).await, StatusCode::OK);
    let (status, job) = server.get(&format!("/api/jobs/{}", a.job_id)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(job["number"], "1.1");
    assert_eq!(job["name"], "node_js: 20");
    assert_eq!(job["stage"], "test");
    assert_eq!(job["state"], "failed");
    assert_eq!(job["allow_failure"], false);
    assert_eq!(job["image"], "node:20");
    assert_eq!(job["exit_code"], 3);
    assert_eq!(job["runner"], "runner-7");
    assert_eq!(job["phases"][0]["duration_ms"], 1500);
    assert!(job["started_at"].is_string() && job["finished_at"].is_string());
    let (status, _) = server.get("/api/jobs/999999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn write_calls_need_the_admin_token(engine: Engine) {
    let server = TestServer::start(engine).await;
    builds(&server, "script: ./test\n", 1).await;
    let (_, list) = server.get(&format!("/api/repos/{PUSH_REPO}/builds")).await;
    let id = &list[0]["id"];
    for path in [
        format!("/api/builds/{id}/cancel"),
        format!("/api/builds/{id}/restart"),
        format!("/api/repos/{PUSH_REPO}/builds"),
    ] {
        let response = server
            .http
            .post(format!("{}{path}", server.url))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        let response = server
            .http
            .post(format!("{}{path}", server.url))
            .bearer_auth("wrong-token-0123456789")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    assert_eq!(server.build(id).await["state"], "queued", "nothing changed");
}

async fn cancel_and_restart_builds_and_jobs(engine: Engine) {
    let server = TestServer::start(engine).await;
    builds(&server, "script: ./test\nenv: [A=1, A=2]\n", 1).await;
    let (_, list) = server.get(&format!("/api/repos/{PUSH_REPO}/builds")).await;
    let id = list[0]["id"].clone();
    let (status, _) = server
        .admin_post(&format!("/api/builds/{id}/restart"), json!({}))
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a build still queued cannot restart"
    );
    let (status, _) = server
        .admin_post(&format!("/api/builds/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let build = server.build(&id).await;
    assert_eq!(build["state"], "canceled");
    assert!(build["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|j| j["state"] == "canceled"));
    assert!(
        server.claim("r", 0).await.is_none(),
        "canceled jobs are not handed out"
    );

    let (status, _) = server
        .admin_post(&format!("/api/builds/{id}/restart"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let build = server.build(&id).await;
    assert_eq!(build["state"], "queued");
    assert!(build["finished_at"].is_null());
    let a = server.claim("r", 0).await.unwrap();
    let b = server.claim("r", 0).await.unwrap();
    server.finish(&a, JobOutcome::Passed).await;
    server.finish(&b, JobOutcome::Errored).await;
    assert_eq!(server.build(&id).await["state"], "errored");

    let (status, _) = server
        .admin_post(&format!("/api/jobs/{}/restart", b.job_id), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        server.build(&id).await["state"],
        "running",
        "one job passed, one queued again"
    );
    let again = server.claim("r", 0).await.unwrap();
    assert_eq!(again.job_id, b.job_id);
    let (status, _) = server
        .admin_post(&format!("/api/jobs/{}/cancel", again.job_id), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    server.finish(&again, JobOutcome::Canceled).await;
    assert_eq!(server.build(&id).await["state"], "canceled");
}

async fn manual_builds_of_a_branch_head_or_a_commit(engine: Engine) {
    let server = TestServer::start(engine).await;
    let repo = builds(&server, "script: ./test\n", 1).await;
    let head = repo.commit(&[("x", "y")], "newer");
    let (status, build) = server
        .admin_post(
            &format!("/api/repos/{PUSH_REPO}/builds"),
            json!({"branch": "master"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{build}");
    assert_eq!(build["event"], "api");
    assert_eq!(build["commit"], head.as_str());
    assert_eq!(build["number"], 2);
    assert_eq!(build["jobs"][0]["state"], "queued");
    let (status, build) = server
        .admin_post(
            &format!("/api/repos/{PUSH_REPO}/builds"),
            json!({"commit": head, "message": "rebuild"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(build["message"], "rebuild");
    let (status, error) = server
        .admin_post(
            &format!("/api/repos/{PUSH_REPO}/builds"),
            json!({"branch": "nope"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");
}

async fn health_and_metrics(engine: Engine) {
    let server = TestServer::start(engine).await;
    builds(&server, "script: ./test\nenv: [A=1, A=2]\n", 1).await;
    server
        .webhook(
            "ping",
            "ping-1",
            &gantry_testkit::webhook::fixture("ping", "payload.json"),
        )
        .await;
    server
        .webhook_raw("push", "forged", b"{}".to_vec(), None)
        .await;
    let a = server.claim("r", 0).await.unwrap();
    server.finish(&a, JobOutcome::Passed).await;
    let health = server
        .http
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let metrics = server.text("/metrics").await;
    for line in [
        "gantry_builds{state=\"running\"} 1",
        "gantry_jobs{state=\"queued\"} 1",
        "gantry_jobs{state=\"passed\"} 1",
        "gantry_queue_length 1",
        "gantry_webhooks_total{result=\"accepted\"} 1",
        "gantry_webhooks_total{result=\"ignored\"} 1",
        "gantry_webhooks_total{result=\"rejected\"} 1",
        "gantry_claim_wait_seconds_count 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing `{line}` in:\n{metrics}"
        );
    }
    let _: Value = json!(null);
}

async fn private_repositories_are_shown_to_the_admin_only(engine: Engine) {
    let server = TestServer::start(engine).await;
    let (_repo, private) = push_private(&server, "script: ./test\n", "private").await;
    let build = server
        .wait_build(&private, |b| b["state"] == "queued")
        .await;
    builds(&server, "script: ./test\n", 1).await;
    let job = &build["jobs"][0]["id"];
    for path in [
        format!("/api/repos/{private}/builds"),
        format!("/api/builds/{}", build["id"]),
        format!("/api/jobs/{job}"),
        format!("/api/jobs/{job}/log"),
    ] {
        let (status, _) = server.get(&path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "anyone: {path}");
        let (status, _) = server.admin_get(&path).await;
        assert_eq!(status, StatusCode::OK, "the admin: {path}");
    }
    let (_, repos) = server.get("/api/repos").await;
    let names: Vec<&str> = repos
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["full_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [PUSH_REPO], "the private repository is not listed");
    let (_, repos) = server.admin_get("/api/repos").await;
    assert_eq!(repos.as_array().unwrap().len(), 2);
    let wrong = server
        .http
        .get(format!("{}/api/repos", server.url))
        .bearer_auth("wrong-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
}

/// Sends `output` as the start of a running job's log.
async fn first_output(server: &TestServer, job: &gantry_protocol::Assignment, output: &str) {
    let sent = server
        .runner_post(
            &gantry_protocol::log_path(job.job_id, 0),
            &job.lease,
            output.to_string().into(),
        )
        .await;
    assert_eq!(sent.status(), StatusCode::OK);
}

/// A job of `server` that ran, printed `output` and passed.
async fn finished_job(server: &TestServer, message: &str, output: &str) -> i64 {
    let job = server.running_job(message).await;
    first_output(server, &job, output).await;
    server.finish(&job, JobOutcome::Passed).await;
    job.job_id.0
}

/// Moves a job's end `days` into the past, as if it had finished then.
async fn finished_days_ago(server: &TestServer, job: i64, days: i64) {
    let then = gantry_server::store::now_ms() - days * 24 * 60 * 60 * 1000;
    sqlx::query("UPDATE jobs SET finished_at = $1 WHERE id = $2")
        .bind(then)
        .bind(job)
        .execute(&server.app.db.pool)
        .await
        .unwrap();
}

/// GANTRY_LOG_RETENTION_DAYS: the log of a job that finished longer ago is
/// replaced by one line; newer logs and running jobs' logs stay; a job that
/// never ran gets no file; a restarted job's new log is kept.
async fn logs_past_the_retention_are_replaced_by_one_line(engine: Engine) {
    let server = TestServer::start(engine).await;
    let retention = std::time::Duration::from_secs(30 * 24 * 60 * 60);
    let log = |job: i64| {
        let path = format!("/api/jobs/{job}/log");
        let server = &server;
        async move { server.text(&path).await }
    };

    let old = finished_job(&server, "old", "old output\n").await;
    let recent = finished_job(&server, "recent", "recent output\n").await;
    let never_ran = server.queued_build("never ran").await;
    let never_ran_job = never_ran["jobs"][0]["id"].as_i64().unwrap();
    let (status, _) = server
        .admin_post(
            &format!("/api/builds/{}/cancel", never_ran["id"]),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let running = server.running_job("running").await;
    first_output(&server, &running, "still running\n").await;
    finished_days_ago(&server, old, 31).await;
    finished_days_ago(&server, recent, 29).await;
    finished_days_ago(&server, never_ran_job, 40).await;

    let swept = gantry_server::retention::try_once(&server.app, retention).await;
    assert_eq!(swept.unwrap(), 1, "one log replaced");
    let expired = log(old).await;
    assert_eq!(
        expired,
        "\u{1b}[33;1m[gantry] This log was deleted: the server keeps the logs of finished jobs for 30 days (GANTRY_LOG_RETENTION_DAYS)\u{1b}[0m\n"
    );
    assert_eq!(log(recent).await, "recent output\n");
    assert_eq!(log(running.job_id.0).await, "still running\n");
    assert!(
        !server
            .app
            .logs
            .path(gantry_protocol::JobId(never_ran_job))
            .exists(),
        "no file for a job that never ran"
    );
    let (_, job) = server.admin_get(&format!("/api/jobs/{old}")).await;
    assert_eq!(job["state"], "passed", "the job itself stays");
    let again = gantry_server::retention::try_once(&server.app, retention).await;
    assert_eq!(again.unwrap(), 0, "each log is replaced once");

    // Run again, the old job writes a new log, which is kept.
    server.finish(&running, JobOutcome::Passed).await;
    let (status, _) = server
        .admin_post(&format!("/api/jobs/{old}/restart"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let rerun = server.claim("r1", 5).await.expect("the restarted job");
    assert_eq!(rerun.job_id.0, old);
    first_output(&server, &rerun, "second run\n").await;
    server.finish(&rerun, JobOutcome::Passed).await;
    let swept = gantry_server::retention::try_once(&server.app, retention).await;
    assert_eq!(swept.unwrap(), 0);
    assert_eq!(log(old).await, "second run\n");
    finished_days_ago(&server, old, 31).await;
    let swept = gantry_server::retention::try_once(&server.app, retention).await;
    assert_eq!(swept.unwrap(), 1, "a restart clears the mark");
    assert!(log(old).await.contains("This log was deleted"));
}

/// A script written for Travis's API v3 (as its docs give it: `curl` with
/// `Travis-API-Version: 3`, `Authorization: token …` and the slug's `/`
/// as `%2F`) triggers a build with only the host and token changed.
async fn a_travis_api_request_triggers_a_build(engine: Engine) {
    let server = TestServer::start(engine).await;
    let _repo = builds(&server, "script: ./test\n", 1).await;
    let url = format!("{}/repo/binkkatal%2Fsample_app/requests", server.url);
    let body = json!({"request": {
        "branch": "master",
        "message": "Override the commit message: this is an api request",
        "config": {"script": "make deploy"},
        "merge_mode": "replace"
    }});
    let send = |token: &str| {
        reqwest::Client::new()
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .header("Travis-API-Version", "3")
            .header("Authorization", format!("token {token}"))
            .json(&body)
            .send()
    };
    let wrong = send("not-the-token").await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.count("builds").await, 1, "nothing built");

    let answer = send(ADMIN).await.unwrap();
    assert_eq!(answer.status(), StatusCode::ACCEPTED);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["@type"], "pending");
    assert_eq!(answer["repository"]["slug"], PUSH_REPO);
    assert_eq!(answer["request"]["branch"], "master");
    let build = &answer["build"];
    assert_eq!(
        (build["event"].as_str(), build["number"].as_i64()),
        (Some("api"), Some(2))
    );
    assert_eq!(
        build["message"],
        "Override the commit message: this is an api request"
    );
    let (_, job) = server
        .get(&format!("/api/jobs/{}", build["jobs"][0]["id"]))
        .await;
    assert_eq!(job["state"], "queued", "{job}");
    let spec: String = sqlx::query_scalar("SELECT spec FROM jobs WHERE build_id = $1")
        .bind(build["id"].as_i64().unwrap())
        .fetch_one(&server.app.db.pool)
        .await
        .unwrap();
    assert!(
        spec.contains("make deploy") && !spec.contains("./test"),
        "{spec}"
    );

    // Travis also names a repository by its id.
    let (_, repos) = server.get("/api/repos").await;
    let by_id = reqwest::Client::new()
        .post(format!("{}/repo/{}/requests", server.url, repos[0]["id"]))
        .header("Travis-API-Version", "3")
        .header("Authorization", format!("token {ADMIN}"))
        .json(&json!({"request": {"branch": "master"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(by_id.status(), StatusCode::ACCEPTED);
    let answer: Value = by_id.json().await.unwrap();
    assert_eq!(answer["build"]["number"], 3);
}

on_both_databases!(
    a_travis_api_request_triggers_a_build,
    private_repositories_are_shown_to_the_admin_only,
    builds_list_newest_first_with_filters_and_pages,
    jobs_show_their_fields,
    write_calls_need_the_admin_token,
    cancel_and_restart_builds_and_jobs,
    manual_builds_of_a_branch_head_or_a_commit,
    health_and_metrics,
    logs_past_the_retention_are_replaced_by_one_line,
);
