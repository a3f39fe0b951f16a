//! Cron builds through the JSON API and the server's own schedule loop, on
//! SQLite and PostgreSQL: a schedule builds its branch's head at once with
//! `type = cron` (so `if: type = cron` jobs run), then waits its interval;
//! a recent build skips a run that asks for it; bad input gets clear errors.

mod support;

use gantry_testkit::db::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime};
use support::*;

/// The root's job (kept beside the includes by `- {}`, as on Travis) and a
/// nightly job for cron builds only.
const PIPELINE: &str = "script: ./test\nenv: [SUITE=unit]\njobs:\n  include:\n    - {}\n    - name: nightly\n      if: type = cron\n      script: ./nightly\n";

fn at(text: &Value) -> SystemTime {
    humantime::parse_rfc3339(text.as_str().expect("a time")).expect("RFC 3339")
}

/// The schedule once its first run has been recorded.
async fn after_first_run(server: &TestServer, id: &Value) -> Value {
    gantry_testkit::eventually("the cron's first run", WAIT, || async {
        let (status, cron) = server.admin_get(&format!("/api/crons/{id}")).await;
        (status == StatusCode::OK && cron["last_result"].is_string()).then_some(cron)
    })
    .await
}

/// Pushes `PIPELINE` to master of `PUSH_REPO`; returns the repository (keep
/// it: the GitHub double serves the branch from it) and the queued build.
async fn pushed(server: &TestServer) -> (gantry_testkit::git::Repo, Value) {
    let (repo, sha) = server.repo(PUSH_REPO, &[(".travis.yml", PIPELINE)], "pushed");
    let payload = push_payload(&repo.path.display().to_string(), &sha, "pushed");
    server.webhook("push", "push-1", &payload).await;
    let build = server
        .wait_build(PUSH_REPO, |b| {
            b["state"] == "queued" && b["commit"] == sha.as_str()
        })
        .await;
    (repo, build)
}

async fn a_cron_builds_its_branch_now_and_then_once_an_interval(engine: Engine) {
    let server = TestServer::start(engine).await;
    let (_repo, push) = pushed(&server).await;
    assert_eq!(
        push["jobs"].as_array().unwrap().len(),
        1,
        "no nightly on a push"
    );

    let (status, cron) = server
        .admin_post(
            &format!("/api/repos/{PUSH_REPO}/crons"),
            json!({"branch": "master", "interval": "daily"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{cron}");
    assert_eq!(cron["interval"], "daily");
    assert_eq!(cron["dont_run_if_recent_build_exists"], false);

    let build = server.wait_build(PUSH_REPO, |b| b["event"] == "cron").await;
    assert_eq!(build["branch"], "master");
    assert_eq!(build["message"], "cron build of master (daily)");
    let names: Vec<&str> = build["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap_or_default())
        .collect();
    assert!(
        names.contains(&"nightly"),
        "`if: type = cron` holds: {names:?}"
    );
    assert_eq!(build["commit"], push["commit"], "the branch's head");

    let ran = after_first_run(&server, &cron["id"]).await;
    assert_eq!(
        ran["last_result"],
        format!("build #{}", build["number"]),
        "{ran}"
    );
    assert_eq!(ran["last_build_id"], build["id"]);
    let next = at(&ran["next_run_at"])
        .duration_since(at(&ran["created_at"]))
        .unwrap();
    assert_eq!(next, Duration::from_secs(86_400), "{ran}");

    // One schedule per branch: setting it again changes it.
    let (status, weekly) = server
        .admin_post(
            &format!("/api/repos/{PUSH_REPO}/crons"),
            json!({"branch": "master", "interval": "weekly", "dont_run_if_recent_build_exists": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{weekly}");
    assert_eq!(weekly["id"], cron["id"]);
    let (_, list) = server
        .admin_get(&format!("/api/repos/{PUSH_REPO}/crons"))
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["interval"], "weekly");

    let gone = server
        .delete(&format!("/api/crons/{}", cron["id"]), Some(ADMIN))
        .await;
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);
    let (status, _) = server
        .admin_get(&format!("/api/crons/{}", cron["id"]))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn a_run_is_skipped_when_the_branch_built_in_the_last_day(engine: Engine) {
    let server = TestServer::start(engine).await;
    let (_repo, _) = pushed(&server).await;
    let (status, cron) = server
        .admin_post(
            &format!("/api/repos/{PUSH_REPO}/crons"),
            json!({"branch": "master", "interval": "daily", "dont_run_if_recent_build_exists": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{cron}");
    let ran = after_first_run(&server, &cron["id"]).await;
    assert_eq!(
        ran["last_result"],
        "skipped: build #1 of master ran in the last 24 hours"
    );
    assert_eq!(ran["last_build_id"], Value::Null);
    assert_eq!(server.count("builds").await, 1);
}

async fn bad_schedules_get_clear_errors(engine: Engine) {
    let server = TestServer::start(engine).await;
    let (_repo, _) = pushed(&server).await;
    let path = format!("/api/repos/{PUSH_REPO}/crons");
    let (status, body) = server
        .admin_post(&path, json!({"branch": "master", "interval": "hourly"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"],
        "`hourly` is not an interval: daily, weekly or monthly"
    );
    let (status, body) = server
        .admin_post(&path, json!({"branch": "nope", "interval": "daily"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], format!("no branch nope in {PUSH_REPO}"));
    let (status, _) = server
        .admin_post(
            "/api/repos/acme/none/crons",
            json!({"branch": "master", "interval": "daily"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let anonymous = server
        .http
        .post(format!("{}{path}", server.url))
        .json(&json!({"branch": "master", "interval": "daily"}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.count("crons").await, 0);
}

/// Every server runs the schedule loop: a due run is built once, however
/// many look at once (here two loops of one server, on two connections).
async fn a_due_run_is_taken_once_by_loops_looking_together(engine: Engine) {
    let server = TestServer::start(engine).await;
    let (_repo, _) = pushed(&server).await;
    let repo = {
        let mut conn = server.app.db.pool.acquire().await.unwrap();
        let repo = gantry_server::store::repos::by_name(&mut conn, PUSH_REPO)
            .await
            .unwrap()
            .unwrap();
        // Set straight in the store: the server's own loop is not woken.
        gantry_server::store::crons::put(
            &mut conn,
            repo.id,
            "master",
            gantry_server::cron::Interval::Weekly,
            false,
        )
        .await
        .unwrap();
        repo
    };
    let (a, b) = tokio::join!(
        gantry_server::cron::run_due(&server.app),
        gantry_server::cron::run_due(&server.app)
    );
    let taken = a.unwrap() + b.unwrap();
    // The server's own loop may have looked too (every 30 s): at most one took it.
    assert!(taken <= 1, "taken {taken} times");
    let cron_builds = gantry_testkit::eventually("the cron build", WAIT, || async {
        let (_, list) = server
            .admin_get(&format!("/api/repos/{}/builds", repo.full_name))
            .await;
        let n = list
            .as_array()?
            .iter()
            .filter(|b| b["event"] == "cron")
            .count();
        (n > 0).then_some(n)
    })
    .await;
    assert_eq!(cron_builds, 1);
}

/// Two requests for one branch at once (a double click): both answered,
/// one schedule left.
async fn two_requests_for_one_branch_leave_one_schedule(engine: Engine) {
    let server = TestServer::start(engine).await;
    let (_repo, _) = pushed(&server).await;
    let path = format!("/api/repos/{PUSH_REPO}/crons");
    let body = json!({"branch": "master", "interval": "daily"});
    let answers =
        futures::future::join_all((0..4).map(|_| server.admin_post(&path, body.clone()))).await;
    for (status, answer) in &answers {
        assert!(status.is_success(), "{status}: {answer}");
    }
    assert_eq!(server.count("crons").await, 1);
}

on_both_databases!(
    two_requests_for_one_branch_leave_one_schedule,
    a_due_run_is_taken_once_by_loops_looking_together,
    a_cron_builds_its_branch_now_and_then_once_an_interval,
    a_run_is_skipped_when_the_branch_built_in_the_last_day,
    bad_schedules_get_clear_errors,
);
