//! `POST /hooks/github` with GitHub's real payloads: what builds, what is
//! refused, what is ignored — on SQLite and PostgreSQL.

mod support;

use gantry_testkit::db::Engine;
use gantry_testkit::webhook::{fixture, point_pull_request, point_push, sign};
use reqwest::StatusCode;
use serde_json::Value;
use support::*;

const PIPELINE: &str = "language: python\npython: ['3.11', '3.12']\nscript: pytest\n";

async fn push_to_a_branch_queues_a_build_of_its_commit(engine: Engine) {
    let server = TestServer::start(engine).await;
    let (repo, sha) = server.repo(PUSH_REPO, &[(".travis.yml", PIPELINE)], "Add tests");
    let response = server
        .webhook(
            "push",
            "d-1",
            &push_payload(&repo.path.display().to_string(), &sha, "Add tests"),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let build = server
        .wait_build(PUSH_REPO, |b| {
            b["jobs"].as_array().is_some_and(|j| !j.is_empty())
        })
        .await;
    assert_eq!(build["state"], "queued");
    assert_eq!(build["event"], "push");
    assert_eq!(build["branch"], "master");
    assert_eq!(build["commit"], sha.as_str());
    assert_eq!(build["message"], "Add tests");
    assert_eq!(build["number"], 1);
    let jobs = build["jobs"].as_array().unwrap();
    let summary: Vec<(&str, &str, &str, &str)> = jobs
        .iter()
        .map(|j| {
            (
                j["number"].as_str().unwrap(),
                j["name"].as_str().unwrap(),
                j["state"].as_str().unwrap(),
                j["image"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("1.1", "python: 3.11", "queued", "python:3.11"),
            ("1.2", "python: 3.12", "queued", "python:3.12")
        ]
    );
    // The repository was created from the payload.
    let (_, repos) = server.get("/api/repos").await;
    assert_eq!(repos[0]["full_name"], PUSH_REPO);
    assert_eq!(repos[0]["default_branch"], "master");
    assert_eq!(repos[0]["last_build"]["number"], 1);
    // The contents API was asked for the file at the pushed commit, with the token.
    let asked = server.github.requests();
    assert!(asked
        .iter()
        .any(|r| r.path == format!("/repos/{PUSH_REPO}/contents/.gantry.yml")));
    assert!(asked.iter().any(
        |r| r.path == format!("/repos/{PUSH_REPO}/contents/.travis.yml")
            && r.authorization.as_deref() == Some("Bearer github-token-for-tests")
    ));
}

async fn a_tag_push_is_a_tag_build(engine: Engine) {
    let server = TestServer::start(engine).await;
    let mut payload = fixture("push", "go-scm.push_tag.json");
    let full_name = payload["repository"]["full_name"]
        .as_str()
        .unwrap()
        .to_string();
    let (repo, sha) = server.repo(
        &full_name,
        &[(".travis.yml", "language: shell\nscript: ./release\n")],
        "Release",
    );
    point_push(
        &mut payload,
        &repo.path.display().to_string(),
        &sha,
        "Release",
    );
    assert_eq!(
        server.webhook("push", "tag-1", &payload).await.status(),
        StatusCode::ACCEPTED
    );
    let build = server
        .wait_build(&full_name, |b| b["state"] == "queued")
        .await;
    assert_eq!(build["event"], "tag");
    assert_eq!(build["tag"], "v0.0.1");
    assert_eq!(
        build["branch"], "v0.0.1",
        "Travis reports the tag as the branch"
    );
}

async fn deletions_closed_prs_and_other_events_build_nothing(engine: Engine) {
    let server = TestServer::start(engine).await;
    let cases = [
        (
            "push",
            "go-scm.push_branch_delete.json",
            StatusCode::ACCEPTED,
        ),
        ("push", "payload.json", StatusCode::ACCEPTED),
        ("push", "go-scm.push_tag_delete.json", StatusCode::ACCEPTED),
        ("pull_request", "closed.payload.json", StatusCode::ACCEPTED),
        ("create", "go-scm.branch_create.json", StatusCode::ACCEPTED),
        ("delete", "go-scm.tag_delete.json", StatusCode::ACCEPTED),
    ];
    for (i, (event, file, status)) in cases.iter().enumerate() {
        let response = server
            .webhook(event, &format!("ignored-{i}"), &fixture(event, file))
            .await;
        assert_eq!(response.status(), *status, "{event}/{file}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "ignored", "{event}/{file}: {body}");
    }
    let response = server
        .webhook(
            "issues",
            "ignored-x",
            &serde_json::json!({"action": "opened"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(server.count("deliveries").await, 0);
    assert_eq!(server.count("builds").await, 0);

    // A ping (sent when the webhook is added) makes the repository known,
    // so its secrets can be set before the first push; it builds nothing.
    let response = server
        .webhook("ping", "ping-1", &fixture("ping", "payload.json"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "pong");
    assert_eq!(body["repository"], "Octocoders/Hello-World");
    assert_eq!(server.count("repos").await, 1);
    assert_eq!(server.count("deliveries").await, 0);
    assert_eq!(server.count("builds").await, 0);
}

async fn pull_requests_build_the_head_commit_and_flag_forks(engine: Engine) {
    let server = TestServer::start(engine).await;
    let (repo, sha) = server.repo(
        "Codertocat/Hello-World",
        &[(".travis.yml", "script: ./test\n")],
        "Change",
    );
    let url = repo.path.display().to_string();
    for (i, file) in [
        "opened.payload.json",
        "synchronize.payload.json",
        "reopened.payload.json",
    ]
    .iter()
    .enumerate()
    {
        let mut payload = fixture("pull_request", file);
        point_pull_request(&mut payload, &url, &sha);
        assert_eq!(
            server
                .webhook("pull_request", &format!("pr-{i}"), &payload)
                .await
                .status(),
            StatusCode::ACCEPTED,
            "{file}"
        );
    }
    // A pull request from someone else's fork.
    let mut forked = fixture("pull_request", "opened.payload.json");
    point_pull_request(&mut forked, &url, &sha);
    forked["pull_request"]["head"]["repo"]["full_name"] =
        Value::String("stranger/Hello-World".into());
    assert_eq!(
        server
            .webhook("pull_request", "pr-fork", &forked)
            .await
            .status(),
        StatusCode::ACCEPTED
    );

    let (_, list) = gantry_testkit::eventually("four PR builds", WAIT, || async {
        let (status, list) = server.get("/api/repos/Codertocat/Hello-World/builds").await;
        (list.as_array().map_or(0, |l| l.len()) == 4).then_some((status, list))
    })
    .await;
    for b in list.as_array().unwrap() {
        assert_eq!(b["event"], "pull_request");
        assert_eq!(b["commit"], sha.as_str());
        assert_eq!(b["branch"], "master", "the base branch");
        assert_eq!(b["pull_request"], 2);
        assert_eq!(b["head_branch"], "changes");
    }
    let forks: Vec<bool> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["fork"].as_bool().unwrap())
        .collect();
    assert_eq!(forks.iter().filter(|f| **f).count(), 1, "{forks:?}");
    // The runner is told the base to merge the head into: the base
    // branch's commit when GitHub sent the event.
    let job = server.claim("r", 5).await.expect("a pull request's job");
    assert_eq!(
        job.build.base_commit.as_deref(),
        Some("f95f852bd8fca8fcc58a9a2d6c842781e32a215e")
    );
}

async fn bad_signatures_are_refused_and_store_nothing(engine: Engine) {
    let server = TestServer::start(engine).await;
    let (repo, sha) = server.repo(PUSH_REPO, &[(".travis.yml", PIPELINE)], "x");
    let body =
        serde_json::to_vec(&push_payload(&repo.path.display().to_string(), &sha, "x")).unwrap();
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    let cases = [
        ("missing", body.clone(), None),
        (
            "wrong secret",
            body.clone(),
            Some(sign("not-the-secret", &body)),
        ),
        ("tampered body", tampered, Some(sign(SECRET, &body))),
        ("sha1 only", body.clone(), Some("sha1=0123".to_string())),
    ];
    for (what, body, signature) in cases {
        let response = server
            .webhook_raw("push", &format!("sig-{what}"), body, signature)
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
        let error: Value = response.json().await.unwrap();
        assert!(
            error["error"]
                .as_str()
                .unwrap()
                .contains("X-Hub-Signature-256"),
            "{what}: {error}"
        );
    }
    assert_eq!(server.count("deliveries").await, 0);
    assert_eq!(server.count("repos").await, 0);
    assert_eq!(server.count("builds").await, 0);
}

async fn a_redelivery_creates_no_second_build(engine: Engine) {
    let server = TestServer::start(engine).await;
    let (repo, sha) = server.repo(PUSH_REPO, &[(".travis.yml", PIPELINE)], "x");
    let payload = push_payload(&repo.path.display().to_string(), &sha, "x");
    assert_eq!(
        server.webhook("push", "same-id", &payload).await.status(),
        StatusCode::ACCEPTED
    );
    server
        .wait_build(PUSH_REPO, |b| b["state"] == "queued")
        .await;
    let again = server.webhook("push", "same-id", &payload).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<Value>().await.unwrap()["status"], "duplicate");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(server.count("builds").await, 1);
}

/// `GANTRY_DELIVERY_RETENTION_DAYS`: planned deliveries older than the
/// retention leave the journal; newer and unplanned ones stay, builds stay,
/// and a redelivery of a forgotten one still makes no second build.
async fn planned_deliveries_leave_the_journal_after_the_retention(engine: Engine) {
    let server = TestServer::start(engine).await;
    let (repo, sha) = server.repo(PUSH_REPO, &[(".travis.yml", PIPELINE)], "x");
    let clone_url = repo.path.display().to_string();
    let old = push_payload(&clone_url, &sha, "planned long ago");
    for (id, payload) in [
        ("long-ago", &old),
        (
            "yesterday",
            &push_payload(&clone_url, &sha, "planned yesterday"),
        ),
    ] {
        let response = server.webhook("push", id, payload).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    for message in ["planned long ago", "planned yesterday"] {
        server
            .wait_build(PUSH_REPO, |b| b["message"] == message)
            .await;
    }
    let day = 24 * 60 * 60 * 1000i64;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for (id, processed_at) in [("long-ago", now - 31 * day), ("yesterday", now - day)] {
        sqlx::query("UPDATE deliveries SET processed_at = $1 WHERE id = $2")
            .bind(processed_at)
            .bind(id)
            .execute(&server.app.db.pool)
            .await
            .unwrap();
    }
    // Received long ago and not planned yet (a server that was down): kept.
    sqlx::query(
        "INSERT INTO deliveries (id, event, body, received_at, lease_until) VALUES ('unplanned', 'push', $1, 0, $2)",
    )
    .bind(b"not planned yet".to_vec())
    .bind(now + day)
    .execute(&server.app.db.pool)
    .await
    .unwrap();

    let retention = std::time::Duration::from_secs(30 * 24 * 60 * 60);
    let forgotten = gantry_server::retention::forget_deliveries(&server.app, retention).await;
    assert_eq!(forgotten.unwrap(), 1);
    let mut kept: Vec<String> = sqlx::query_scalar("SELECT id FROM deliveries")
        .fetch_all(&server.app.db.pool)
        .await
        .unwrap();
    kept.sort();
    assert_eq!(kept, ["unplanned", "yesterday"]);
    assert_eq!(server.count("builds").await, 2, "the builds stay");

    // GitHub redelivers the forgotten one: it is planned again, to its first build.
    let again = server.webhook("push", "long-ago", &old).await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    let outcome = server
        .delivery_outcome("long-ago", "processed_at IS NOT NULL")
        .await;
    assert_eq!(outcome, "build created", "planned again");
    assert_eq!(server.count("builds").await, 2, "no second build");
}

async fn oversize_malformed_and_incomplete_deliveries_get_clear_errors(engine: Engine) {
    let server = TestServer::start(engine).await;
    // A body declared bigger than GitHub ever sends (25 MiB) is refused on
    // its header, before any of it is read.
    let head = "POST /hooks/github HTTP/1.1\r\nhost: gantry\r\nx-github-event: push\r\n\
                x-github-delivery: big\r\nx-hub-signature-256: sha256=00\r\n";
    let declared = format!("{head}content-length: {}\r\n\r\n", 26 * 1024 * 1024);
    assert_eq!(raw_status(&server.url, declared.as_bytes()).await, 413);
    // One sent in chunks, with no length up front, is cut off at the limit.
    let mut chunked = format!("{head}transfer-encoding: chunked\r\n\r\n").into_bytes();
    let chunk = vec![b' '; 1024 * 1024];
    for _ in 0..25 {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(&chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"1\r\n \r\n0\r\n\r\n");
    assert_eq!(raw_status(&server.url, &chunked).await, 413);

    // Signed, but not a push GitHub would send: 400, saying what is wrong.
    let refused = |delivery: &'static str, body: Vec<u8>, words: &'static str| {
        let server = &server;
        async move {
            let signature = sign(SECRET, &body);
            let response = server
                .webhook_raw("push", delivery, body, Some(signature))
                .await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{delivery}");
            let error = response.json::<Value>().await.unwrap()["error"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(error.contains(words), "{delivery}: {error}");
        }
    };
    refused("bad-json", b"{not json".to_vec(), "not valid JSON").await;
    // Not UTF-8, in a field Gantry does not read: refused, not stored.
    let mut latin1 = serde_json::to_vec(&push_payload("/nowhere", "abc", "x")).unwrap();
    latin1.splice(1..1, b"\"compare_note\": \"caf\xe9\", ".iter().copied());
    refused("latin1", latin1, "not UTF-8").await;
    let no_repo =
        serde_json::to_vec(&serde_json::json!({"ref": "refs/heads/master", "after": "abc"}))
            .unwrap();
    refused("no-repo", no_repo, "repository").await;

    let ok = serde_json::to_vec(&fixture("ping", "payload.json")).unwrap();
    let response = server
        .http
        .post(format!("{}/hooks/github", server.url))
        .header("x-hub-signature-256", sign(SECRET, &ok))
        .header("x-github-event", "ping")
        .body(ok)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::BAD_REQUEST,
        "no X-GitHub-Delivery"
    );
    assert_eq!(server.count("deliveries").await, 0);

    // A payload of a megabyte is checked off the async runtime, in the same
    // order: a wrong signature is refused, bad JSON said so, a push stored.
    let mut big = push_payload("/nowhere", "abc", "x");
    big["padding"] = Value::String("x".repeat(1024 * 1024));
    let big = serde_json::to_vec(&big).unwrap();
    let unsigned = server
        .webhook_raw(
            "push",
            "big-unsigned",
            big.clone(),
            Some("sha256=00".into()),
        )
        .await;
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    let mut broken = big.clone();
    broken.truncate(big.len() - 1);
    refused("big-broken", broken, "not valid JSON").await;
    let signature = sign(SECRET, &big);
    let response = server
        .webhook_raw("push", "big", big, Some(signature))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(server.count("deliveries").await, 1);
}

async fn a_pipeline_with_errors_errors_the_build_with_its_diagnostics(engine: Engine) {
    let server = TestServer::start(engine).await;
    let broken = "language: shell\nscript:\n  run: ./test\nif: branch = $X\n";
    let (repo, sha) = server.repo(PUSH_REPO, &[(".travis.yml", broken)], "Break it");
    server
        .webhook(
            "push",
            "broken",
            &push_payload(&repo.path.display().to_string(), &sha, "Break it"),
        )
        .await;
    let build = server
        .wait_build(PUSH_REPO, |b| b["state"] == "errored")
        .await;
    assert_eq!(build["reason"], ".travis.yml has 2 error(s)");
    let diagnostics = build["diagnostics"].as_array().unwrap();
    assert_eq!(diagnostics[0]["line"], 3);
    assert_eq!(diagnostics[0]["column"], 3);
    assert_eq!(diagnostics[0]["severity"], "error");
    assert!(diagnostics[0]["message"]
        .as_str()
        .unwrap()
        .contains("`script` must be"));
    assert_eq!(diagnostics[1]["line"], 4);
    assert_eq!(diagnostics[1]["column"], 14);
    assert!(build["jobs"].as_array().unwrap().is_empty());
}

async fn no_pipeline_file_skip_markers_and_branch_filters(engine: Engine) {
    let server = TestServer::start(engine).await;
    let (repo, sha) = server.repo(PUSH_REPO, &[("README.md", "hi")], "No CI yet");
    let url = repo.path.display().to_string();
    server
        .webhook("push", "none", &push_payload(&url, &sha, "No CI yet"))
        .await;
    let build = server
        .wait_build(PUSH_REPO, |b| b["state"] == "errored")
        .await;
    assert_eq!(
        build["reason"],
        "no pipeline file: add .gantry.yml or .travis.yml to the repository"
    );

    let sha2 = repo.commit(
        &[(
            ".travis.yml",
            "script: ./test\nbranches:\n  only: [release]\n",
        )],
        "Filter",
    );
    server
        .webhook("push", "filtered", &push_payload(&url, &sha2, "Filter"))
        .await;
    let build = server
        .wait_build(PUSH_REPO, |b| b["number"] == 2 && b["state"] == "skipped")
        .await;
    assert_eq!(build["reason"], "branch master is not in branches.only");

    server
        .webhook(
            "push",
            "skip",
            &push_payload(&url, &sha2, "Docs only [skip ci]"),
        )
        .await;
    let build = server.wait_build(PUSH_REPO, |b| b["number"] == 3).await;
    assert_eq!(build["state"], "skipped");
    assert_eq!(build["reason"], "the commit message says [skip ci]");
}

/// Pushes `PIPELINE` as delivery `id` while GitHub answers its next
/// `times` requests with `status`; returns the repository (keep it: the
/// GitHub double serves the commit from it).
async fn push_while_github_fails(
    server: &TestServer,
    id: &str,
    times: u32,
    status: u16,
) -> gantry_testkit::git::Repo {
    let (repo, sha) = server.repo(PUSH_REPO, &[(".travis.yml", PIPELINE)], "x");
    server.github.fail_next(times, status);
    server
        .webhook(
            "push",
            id,
            &push_payload(&repo.path.display().to_string(), &sha, "x"),
        )
        .await;
    repo
}

async fn github_outages_are_retried_not_fatal(engine: Engine) {
    let server = TestServer::start(engine).await;
    let _repo = push_while_github_fails(&server, "outage", 1, 502).await;
    let build = server
        .wait_build(PUSH_REPO, |b| b["state"] == "queued")
        .await;
    assert_eq!(build["jobs"].as_array().unwrap().len(), 2);
    assert!(
        server.github.requests().len() >= 3,
        "the failed read was tried again"
    );
}

/// The journal through the API: a push waiting on GitHub says why and when
/// it is tried next; once planned, what came of it. Admin only.
async fn the_journal_says_why_a_delivery_waits_and_what_came_of_it(engine: Engine) {
    let server = TestServer::start(engine).await;
    let _repo = push_while_github_fails(&server, "waits", 1_000, 503).await;
    server
        .delivery_outcome("waits", "processed_at IS NULL")
        .await;

    let (status, listed) = server.admin_get("/api/deliveries?state=waiting").await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let waiting = &listed[0];
    assert_eq!(waiting["id"], "waits");
    assert_eq!(waiting["event"], "push");
    assert_eq!(waiting["repo"], PUSH_REPO);
    assert_eq!(waiting["state"], "waiting");
    assert_eq!(waiting["attempts"], 1);
    assert!(
        waiting["outcome"]
            .as_str()
            .unwrap_or_default()
            .contains("503"),
        "{waiting}"
    );
    let next = humantime::parse_rfc3339(waiting["next_attempt_at"].as_str().expect("when"))
        .expect("RFC 3339");
    let received =
        humantime::parse_rfc3339(waiting["received_at"].as_str().expect("when")).expect("RFC 3339");
    assert!(next > received, "{waiting}");
    assert_eq!(waiting["processed_at"], Value::Null);
    let (_, done) = server.admin_get("/api/deliveries?state=done").await;
    assert_eq!(done, serde_json::json!([]));

    // GitHub is back and the next attempt is due: the build is created.
    server.github.recover();
    sqlx::query("UPDATE deliveries SET lease_until = 0 WHERE id = 'waits'")
        .execute(&server.app.db.pool)
        .await
        .unwrap();
    server.app.planner_wake.notify_one();
    server
        .wait_build(PUSH_REPO, |b| b["state"] == "queued")
        .await;
    let (_, listed) = server.admin_get("/api/deliveries").await;
    let done = &listed[0];
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["outcome"], "build created");
    assert_eq!(done["attempts"], 2);
    assert!(done["processed_at"].is_string(), "{done}");
    assert_eq!(done["next_attempt_at"], Value::Null);

    let (status, body) = server.get("/api/deliveries").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = server.admin_get("/api/deliveries?state=lost").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("states are pending, waiting, done"),
        "{body}"
    );
}

/// A GitHub that stays down errors the build after the last attempt (about
/// 50 minutes of them; here the attempts before are counted in the
/// database), saying how long it tried and what to do: nothing says it
/// will try again when it will not.
async fn a_github_down_for_good_errors_the_build_saying_what_to_do(engine: Engine) {
    let server = TestServer::start(engine).await;
    let _repo = push_while_github_fails(&server, "down", 1_000, 503).await;
    // The first attempt failed, and the delivery waits for the next.
    let waiting = server
        .delivery_outcome("down", "lease_until IS NOT NULL AND processed_at IS NULL")
        .await;
    assert!(!waiting.is_empty(), "the reason it waits");
    assert_eq!(server.count("builds").await, 0, "no build while it waits");

    // The last attempt is due.
    let max = gantry_server::planner::MAX_ATTEMPTS;
    sqlx::query("UPDATE deliveries SET attempts = $1, lease_until = 0 WHERE id = 'down'")
        .bind(max - 1)
        .execute(&server.app.db.pool)
        .await
        .unwrap();
    server.app.planner_wake.notify_one();
    let build = server
        .wait_build(PUSH_REPO, |b| b["state"] == "errored")
        .await;
    let reason = build["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("could not read the pipeline file: GitHub was unavailable"),
        "{reason}"
    );
    assert!(
        reason.contains(&format!("for {max} attempts over 53 minutes")),
        "{reason}"
    );
    assert!(
        reason.contains(&format!("POST /api/repos/{PUSH_REPO}/builds")),
        "{reason}"
    );
    assert!(!reason.contains("retry"), "{reason}");
    assert_eq!(build["jobs"].as_array().unwrap().len(), 0);

    // A restart while GitHub is still down asks once more, and says so.
    let restart = format!("/api/builds/{}/restart", build["id"]);
    let (status, body) = server.admin_post(&restart, serde_json::json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let said = body.to_string();
    assert!(
        said.contains(
            "has no jobs to run: could not read the pipeline file: GitHub was unavailable"
        ),
        "{said}"
    );
    assert!(!said.contains("attempts"), "{said}");

    // GitHub is back: a restart reads the pipeline file again, and the
    // same build (same number, event and commit) is queued with its jobs.
    server.github.recover();
    let (status, body) = server.admin_post(&restart, serde_json::json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let again = server.build(&build["id"]).await;
    assert_eq!(again["state"], "queued", "{again}");
    assert_eq!(again["reason"], Value::Null);
    assert_eq!(again["finished_at"], Value::Null);
    for same in ["number", "event", "commit", "branch"] {
        assert_eq!(again[same], build[same], "{same}");
    }
    assert_eq!(again["jobs"].as_array().unwrap().len(), 2);
    assert_eq!(server.count("builds").await, 1, "no second build");
    let assignment = server.claim("r1", 5).await;
    assert!(assignment.is_some(), "a job of the restarted build runs");

    // Restarting it again while its jobs wait adds none.
    let (status, _) = server.admin_post(&restart, serde_json::json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        server.build(&build["id"]).await["jobs"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

/// Concurrent pushes are planned and stored many builds to a commit: every
/// delivery still gets exactly one build, numbered without gaps or repeats,
/// with its jobs, and GitHub gets exactly one pending status for each.
async fn a_burst_of_pushes_becomes_one_build_each(engine: Engine) {
    const PUSHES: usize = 40;
    let server = TestServer::start(engine).await;
    let (repo, sha) = server.repo(PUSH_REPO, &[(".travis.yml", PIPELINE)], "burst");
    let payload = push_payload(&repo.path.display().to_string(), &sha, "burst");
    let ids: Vec<String> = (0..PUSHES).map(|i| format!("burst-{i}")).collect();
    let answers =
        futures::future::join_all(ids.iter().map(|id| server.webhook("push", id, &payload))).await;
    assert!(answers.iter().all(|a| a.status() == StatusCode::ACCEPTED));
    gantry_testkit::eventually("every push planned", WAIT, || async {
        (server.count("builds").await == PUSHES as i64).then_some(())
    })
    .await;
    let pool = &server.app.db.pool;
    let numbers: Vec<i64> = sqlx::query_scalar("SELECT number FROM builds ORDER BY number")
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(numbers, (1..=PUSHES as i64).collect::<Vec<_>>());
    let deliveries: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT delivery_id) FROM builds")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(deliveries, PUSHES as i64);
    assert_eq!(server.count("jobs").await, 2 * PUSHES as i64);
    let unplanned: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM deliveries WHERE processed_at IS NULL OR outcome <> 'build created'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(unplanned, 0);
    gantry_testkit::eventually("every status sent", WAIT, || async {
        let unsent: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM commit_statuses WHERE sent_at IS NULL")
                .fetch_one(pool)
                .await
                .unwrap();
        (unsent == 0).then_some(())
    })
    .await;
    // Each push of the branch auto-cancels the ones before it (none started):
    // one build is left queued, and GitHub last hears that one is pending.
    let states: Vec<String> = sqlx::query_scalar("SELECT state FROM builds ORDER BY number")
        .fetch_all(pool)
        .await
        .unwrap();
    assert!(
        states[..PUSHES - 1].iter().all(|s| s == "canceled"),
        "{states:?}"
    );
    assert_eq!(states[PUSHES - 1], "queued");
    let sent = server.statuses_sent(&sha);
    let count = |state: &str| sent.iter().filter(|b| b["state"] == state).count();
    assert_eq!(count("pending"), PUSHES);
    assert_eq!(count("error"), PUSHES - 1);
    assert_eq!(
        sent.last().unwrap()["description"],
        format!("Build #{PUSHES} is queued")
    );
}

/// The journal stores a whole group commit in one statement: each delivery
/// keeps its own id, event and payload, and one sent twice in the same
/// commit (or again later) is new only the first time.
async fn a_delivery_sent_twice_in_one_commit_is_stored_once(engine: Engine) {
    use gantry_server::store::deliveries::{insert_batch, NewDelivery};
    let server = TestServer::start(engine).await;
    let payload = |id: &str, event: &str| format!("{{\"zen\": \"{id} {event}\"}}");
    let delivery = |id: &str, event: &str| {
        NewDelivery::new(id.into(), event.into(), payload(id, event).as_bytes()).unwrap()
    };
    let store = |batch: Vec<NewDelivery>| {
        let db = server.app.db.clone();
        async move {
            let mut tx = db.begin().await.unwrap();
            let new = insert_batch(&mut tx, &batch).await.unwrap();
            tx.commit().await.unwrap();
            new
        }
    };
    let first = store(vec![
        delivery("a", "ping"),
        delivery("b", "watch"),
        delivery("a", "ping"),
    ])
    .await;
    assert_eq!(first, [true, true, false]);
    let second = store(vec![delivery("b", "watch"), delivery("c", "fork")]).await;
    assert_eq!(second, [false, true]);
    assert!(store(vec![]).await.is_empty());
    // Each payload is stored as received, zstd-compressed.
    let rows: Vec<(String, String, Vec<u8>)> =
        sqlx::query_as("SELECT id, event, body FROM deliveries ORDER BY id")
            .fetch_all(&server.app.db.pool)
            .await
            .unwrap();
    let stored: Vec<(String, String, String)> = rows
        .into_iter()
        .map(|(id, event, body)| {
            let text = String::from_utf8(zstd::stream::decode_all(body.as_slice()).unwrap());
            (id, event, text.unwrap())
        })
        .collect();
    let expected: Vec<(String, String, String)> = [("a", "ping"), ("b", "watch"), ("c", "fork")]
        .iter()
        .map(|(id, event)| (id.to_string(), event.to_string(), payload(id, event)))
        .collect();
    assert_eq!(stored, expected);
}

/// Payloads are stored compressed: a real push payload takes well under
/// half its size, and deliveries stored as text before compression (the
/// `payload` column) are still read and planned.
async fn payloads_are_stored_compressed_and_old_text_ones_still_plan(engine: Engine) {
    let server = TestServer::start(engine).await;
    let (repo, sha) = server.repo(PUSH_REPO, &[(".travis.yml", PIPELINE)], "x");
    let clone_url = repo.path.display().to_string();
    let payload = push_payload(&clone_url, &sha, "sent today");
    let sent = serde_json::to_vec(&payload).unwrap();
    let response = server.webhook("push", "today", &payload).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let (text, body): (Option<String>, Vec<u8>) =
        sqlx::query_as("SELECT payload, body FROM deliveries WHERE id = 'today'")
            .fetch_one(&server.app.db.pool)
            .await
            .unwrap();
    assert_eq!(text, None, "no uncompressed copy");
    assert!(
        body.len() * 3 < sent.len(),
        "{} bytes stored for a {}-byte payload",
        body.len(),
        sent.len()
    );
    server
        .wait_build(PUSH_REPO, |b| b["message"] == "sent today")
        .await;

    // A delivery stored before migration 0008: its text, and no body.
    let before = push_payload(&clone_url, &sha, "stored before compression");
    sqlx::query(
        "INSERT INTO deliveries (id, event, payload, received_at) VALUES ('before', 'push', $1, $2)",
    )
    .bind(serde_json::to_string(&before).unwrap())
    .bind(0i64)
    .execute(&server.app.db.pool)
    .await
    .unwrap();
    server.app.planner_wake.notify_one();
    server
        .wait_build(PUSH_REPO, |b| b["message"] == "stored before compression")
        .await;
}

/// Travis's "Build pushed branches" and "Build pushed pull requests":
/// turned off, a push (or pull request) builds nothing and its delivery
/// says why; the other kind still builds.
async fn builds_of_pushes_or_pull_requests_can_be_turned_off(engine: Engine) {
    let server = TestServer::start(engine).await;
    let (repo, sha) = server.repo(PUSH_REPO, &[(".travis.yml", PIPELINE)], "first");
    let url = repo.path.display().to_string();
    server
        .webhook("push", "on-1", &push_payload(&url, &sha, "first"))
        .await;
    server
        .wait_build(PUSH_REPO, |b| b["commit"] == sha.as_str())
        .await;
    let settings = format!("/api/repos/{PUSH_REPO}/settings");
    let (status, shown) = server
        .admin_put(&settings, serde_json::json!({ "build_pushes": false }))
        .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["build_pushes"], false);
    assert_eq!(shown["build_pull_requests"], true, "left as it was");
    assert_eq!(shown["max_concurrent_jobs"], Value::Null, "left as it was");
    let page = server.text(&format!("/{PUSH_REPO}")).await;
    assert!(
        page.contains("Does not build pushes: its setting <code>build_pushes</code> is off."),
        "{page}"
    );

    let second = repo.commit(&[("two.txt", "2")], "second");
    server
        .webhook("push", "off-1", &push_payload(&url, &second, "second"))
        .await;
    let outcome = server
        .delivery_outcome("off-1", "processed_at IS NOT NULL")
        .await;
    assert!(outcome.contains("build_pushes"), "{outcome}");
    // A pull request still builds.
    let mut pr = fixture("pull_request", "opened.payload.json");
    point_pull_request(&mut pr, &url, &second);
    pr["repository"]["full_name"] = Value::String(PUSH_REPO.into());
    pr["pull_request"]["base"]["repo"]["full_name"] = Value::String(PUSH_REPO.into());
    pr["pull_request"]["head"]["repo"]["full_name"] = Value::String(PUSH_REPO.into());
    server.webhook("pull_request", "pr-on", &pr).await;
    let built = server
        .wait_build(PUSH_REPO, |b| b["event"] == "pull_request")
        .await;
    assert_eq!(built["commit"], second.as_str());

    // The other way round.
    let (status, _) = server
        .admin_put(
            &settings,
            serde_json::json!({ "build_pushes": true, "build_pull_requests": false }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    server.webhook("pull_request", "pr-off", &pr).await;
    let outcome = server
        .delivery_outcome("pr-off", "processed_at IS NOT NULL")
        .await;
    assert!(outcome.contains("build_pull_requests"), "{outcome}");
    let third = repo.commit(&[("three.txt", "3")], "third");
    server
        .webhook("push", "on-2", &push_payload(&url, &third, "third"))
        .await;
    server
        .wait_build(PUSH_REPO, |b| b["commit"] == third.as_str())
        .await;
    let (_, builds) = server.get(&format!("/api/repos/{PUSH_REPO}/builds")).await;
    assert_eq!(builds.as_array().map(Vec::len), Some(3), "{builds}");
}

on_both_databases!(
    builds_of_pushes_or_pull_requests_can_be_turned_off,
    push_to_a_branch_queues_a_build_of_its_commit,
    a_tag_push_is_a_tag_build,
    deletions_closed_prs_and_other_events_build_nothing,
    pull_requests_build_the_head_commit_and_flag_forks,
    bad_signatures_are_refused_and_store_nothing,
    a_redelivery_creates_no_second_build,
    a_delivery_sent_twice_in_one_commit_is_stored_once,
    payloads_are_stored_compressed_and_old_text_ones_still_plan,
    planned_deliveries_leave_the_journal_after_the_retention,
    oversize_malformed_and_incomplete_deliveries_get_clear_errors,
    a_pipeline_with_errors_errors_the_build_with_its_diagnostics,
    no_pipeline_file_skip_markers_and_branch_filters,
    github_outages_are_retried_not_fatal,
    the_journal_says_why_a_delivery_waits_and_what_came_of_it,
    a_github_down_for_good_errors_the_build_saying_what_to_do,
    a_burst_of_pushes_becomes_one_build_each,
);
