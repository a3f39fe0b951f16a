//! Webhook notifications (`notifications: webhooks:`) as a receiver gets
//! them: a local HTTP server records each POST, and checks its signature
//! with the `openssl` command against the key `/api/config` publishes —
//! as receivers written for Travis do. On SQLite and PostgreSQL.

mod support;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use gantry_protocol::JobOutcome;
use gantry_testkit::db::Engine;
use gantry_testkit::webhook::{fixture, point_pull_request};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use support::*;

/// One POST the receiver took.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: String,
}

impl Received {
    /// The `payload` form field, decoded.
    fn payload_text(&self) -> String {
        let field = self
            .body
            .strip_prefix("payload=")
            .unwrap_or_else(|| panic!("a form with `payload`: {}", self.body));
        form_decode(field)
    }

    fn payload(&self) -> Value {
        serde_json::from_str(&self.payload_text()).expect("the payload is JSON")
    }
}

fn form_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    /// Statuses to answer per path, in turn; 200 once they run out.
    answers: Arc<Mutex<HashMap<String, VecDeque<u16>>>>,
    url: String,
}

async fn take(State(r): State<Receiver>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    let path = uri.path().to_string();
    r.got.lock().unwrap().push(Received {
        path: path.clone(),
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    });
    let answer = r
        .answers
        .lock()
        .unwrap()
        .get_mut(&path)
        .and_then(|a| a.pop_front())
        .unwrap_or(200);
    StatusCode::from_u16(answer).unwrap()
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Receiver {
            url: format!("http://{}", listener.local_addr().unwrap()),
            ..Default::default()
        };
        let app = axum::Router::new()
            .fallback(axum::routing::post(take))
            .with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        r
    }

    fn answer(&self, path: &str, statuses: &[u16]) {
        self.answers
            .lock()
            .unwrap()
            .insert(path.into(), statuses.iter().copied().collect());
    }

    fn got(&self, path: &str) -> Vec<Received> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    async fn wait(&self, path: &str, count: usize) -> Vec<Received> {
        gantry_testkit::eventually(
            &format!("{count} notifications at {path}"),
            WAIT,
            || async {
                let got = self.got(path);
                (got.len() >= count).then_some(got)
            },
        )
        .await
    }
}

/// Pushes `pipeline` and runs its one job to `outcome`; returns the build.
async fn build(server: &TestServer, pipeline: &str, outcome: JobOutcome) -> Value {
    server.push_and_run(pipeline, outcome).await
}

/// Whether `signature` (the header, base64) signs `payload` under the key
/// `/api/config` publishes, as `openssl dgst -sha1 -verify` sees it.
async fn verifies(server: &TestServer, payload: &str, signature: &str) -> bool {
    use base64::Engine;
    let (status, config) = server.get("/api/config").await;
    assert_eq!(status, StatusCode::OK);
    let key = config["config"]["notifications"]["webhook"]["public_key"]
        .as_str()
        .expect("a public key");
    assert!(key.starts_with("-----BEGIN PUBLIC KEY-----"), "{key}");
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    };
    let key = write("key.pem", key.as_bytes());
    let payload = write("payload", payload.as_bytes());
    let signature = write(
        "signature",
        &base64::engine::general_purpose::STANDARD
            .decode(signature)
            .expect("base64"),
    );
    let out = std::process::Command::new("openssl")
        .args([
            "dgst",
            "-sha1",
            "-verify",
            &key,
            "-signature",
            &signature,
            &payload,
        ])
        .output()
        .expect("openssl runs");
    out.status.success()
}

async fn a_build_tells_its_webhooks_when_it_starts_and_how_it_ends(engine: Engine) {
    let server = TestServer::start(engine).await;
    let receiver = Receiver::start().await;
    let pipeline = format!(
        "script: ./test\nnotifications:\n  email: false\n  webhooks:\n    urls:\n      - {}/hook\n    on_start: always\n",
        receiver.url
    );
    let build = build(&server, &pipeline, JobOutcome::Passed).await;
    let got = receiver.wait("/hook", 2).await;

    let started = got[0].payload();
    assert_eq!(
        (
            started["state"].as_str(),
            started["status_message"].as_str(),
            started["status"].as_i64()
        ),
        (Some("started"), Some("Pending"), Some(1))
    );
    let finished = got[1].payload();
    assert_eq!(finished["id"], build["id"]);
    assert_eq!(finished["number"], "1");
    assert_eq!(finished["type"], "push");
    assert_eq!(finished["state"], "passed");
    assert_eq!(
        (finished["status"].as_i64(), finished["result"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(finished["status_message"], "Passed");
    assert_eq!(finished["branch"], "master");
    assert_eq!(finished["commit"], build["commit"]);
    assert_eq!(finished["pull_request"], false);
    // The push's commit addresses, as Travis's payload has them.
    assert_eq!(finished["author_email"], "binkkatal.r@gmail.com");
    assert_eq!(finished["committer_email"], "binkkatal.r@gmail.com");
    let (owner, name) = PUSH_REPO.split_once('/').unwrap();
    assert_eq!(finished["repository"]["owner_name"], owner);
    assert_eq!(finished["repository"]["name"], name);
    assert_eq!(
        finished["build_url"],
        format!("http://gantry.test/{PUSH_REPO}/builds/{}", build["id"])
    );
    assert_eq!(finished["matrix"][0]["number"], "1.1");
    assert_eq!(finished["matrix"][0]["state"], "finished");
    assert_eq!(finished["matrix"][0]["result"], 0);
    assert!(finished["started_at"].as_str().unwrap().ends_with('Z'));

    // Travis's headers, and a signature the published key checks.
    let last = &got[1];
    assert_eq!(
        last.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(last.headers["travis-repo-slug"], PUSH_REPO);
    let signature = last.headers["signature"].to_str().unwrap();
    assert!(verifies(&server, &last.payload_text(), signature).await);
    let tampered = last.payload_text().replace("\"passed\"", "\"failed\"");
    assert!(!verifies(&server, &tampered, signature).await);

    // The API says what was sent, and how it went.
    let list = server.settled_notifications(&build).await;
    assert_eq!(list.len(), 2, "{list:?}");
    for (n, event) in list.iter().zip(["started", "finished"]) {
        assert_eq!(n["event"], event);
        assert_eq!(n["url"], format!("{}/hook", receiver.url));
        assert_eq!(n["state"], "sent");
        assert_eq!(n["response_status"], 200);
        assert_eq!(n["attempts"], 1);
    }
    // So does the build's page.
    let page = server
        .text(&format!("/{PUSH_REPO}/builds/{}", build["id"]))
        .await;
    assert!(page.contains("<h2>Notifications</h2>"), "{page}");
    assert!(page.contains(&format!("<code>{}/hook</code>", receiver.url)));
    assert!(page.contains("answered 200"));
}

async fn change_tells_only_of_a_result_that_differs(engine: Engine) {
    let server = TestServer::start(engine).await;
    let receiver = Receiver::start().await;
    let pipeline = format!(
        "script: ./test\nnotifications:\n  webhooks:\n    urls: {}/team\n    on_success: change\n    on_failure: always\n",
        receiver.url
    );
    for outcome in [
        JobOutcome::Passed,
        JobOutcome::Passed,
        JobOutcome::Failed,
        JobOutcome::Failed,
        JobOutcome::Passed,
    ] {
        build(&server, &pipeline, outcome).await;
    }
    let got = receiver.wait("/team", 4).await;
    let told: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            let p = r.payload();
            (
                p["number"].as_str().unwrap().to_string(),
                p["status_message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // Build 2 passed like build 1: not a change, so not sent.
    assert_eq!(
        told,
        [
            ("1", "Passed"),
            ("3", "Broken"),
            ("4", "Still Failing"),
            ("5", "Fixed")
        ]
        .map(|(n, m)| (n.to_string(), m.to_string()))
    );
}

async fn a_receiver_that_is_down_gets_it_later_and_one_that_refuses_is_given_up(engine: Engine) {
    let server = TestServer::start(engine).await;
    let receiver = Receiver::start().await;
    receiver.answer("/flaky", &[503]);
    receiver.answer("/gone", &[404]);
    let pipeline = format!(
        "script: ./test\nnotifications:\n  webhooks:\n    - {0}/flaky\n    - {0}/gone\n",
        receiver.url
    );
    let build = build(&server, &pipeline, JobOutcome::Failed).await;
    let flaky = receiver.wait("/flaky", 2).await;
    assert_eq!(flaky[0].body, flaky[1].body, "the same notification again");
    let list = server.settled_notifications(&build).await;
    let by_url = |suffix: &str| {
        list.iter()
            .find(|n| n["url"].as_str().unwrap().ends_with(suffix))
            .unwrap()
            .clone()
    };
    let flaky = by_url("/flaky");
    assert_eq!(
        (
            &flaky["state"],
            &flaky["attempts"],
            &flaky["response_status"]
        ),
        (&json!("sent"), &json!(2), &json!(200))
    );
    let gone = by_url("/gone");
    assert_eq!(
        (&gone["state"], &gone["attempts"], &gone["response_status"]),
        (&json!("failed"), &json!(1), &json!(404))
    );
    assert_eq!(gone["last_error"], "the receiver answered 404");
    assert_eq!(receiver.got("/gone").len(), 1, "a refusal is not retried");
}

async fn secret_urls_are_expanded_when_sent_and_never_shown(engine: Engine) {
    let server = TestServer::start(engine).await;
    let receiver = Receiver::start().await;
    let hidden = format!("{}/hook-t0ps3cret", receiver.url);
    let encrypted = format!("{}/from-secure-value", receiver.url);
    // The repository is known once it has built.
    build(&server, "script: ./test\n", JobOutcome::Passed).await;
    server.set_secret("TEAM_HOOK", &hidden).await;
    server.set_secret("WEBHOOK_URL", &encrypted).await;
    // A push names both: `$TEAM_HOOK`, and a Travis `secure:` URL.
    let pipeline = "script: ./test\nnotifications:\n  webhooks:\n    urls:\n      - $TEAM_HOOK\n      - secure: bm90IHJlYWQ=\n      - ${MISSING}\n";
    let build = build(&server, pipeline, JobOutcome::Passed).await;
    receiver.wait("/hook-t0ps3cret", 1).await;
    receiver.wait("/from-secure-value", 1).await;
    let list = gantry_testkit::eventually("all settled", WAIT, || async {
        let text = server
            .text(&format!("/api/builds/{}/notifications", build["id"]))
            .await;
        let list: Value = serde_json::from_str(&text).ok()?;
        list.as_array()?
            .iter()
            .all(|n| n["state"] != "pending")
            .then_some((text, list))
    })
    .await;
    let (text, list) = list;
    assert!(!text.contains("t0ps3cret"), "{text}");
    assert!(!text.contains("from-secure-value"), "{text}");
    let page = server
        .text(&format!("/{PUSH_REPO}/builds/{}", build["id"]))
        .await;
    assert!(page.contains("<code>$TEAM_HOOK</code>"), "{page}");
    assert!(page.contains("the repository has no secret MISSING for this branch"));
    assert!(!page.contains("t0ps3cret") && !page.contains("from-secure-value"));
    let urls: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["url"].as_str().unwrap())
        .collect();
    assert_eq!(urls, ["$TEAM_HOOK", "$WEBHOOK_URL", "${MISSING}"]);
    let missing = &list[2];
    assert_eq!(missing["state"], "failed");
    assert_eq!(
        missing["last_error"],
        "the repository has no secret MISSING for this branch"
    );

    // A fork's pull request names the same webhooks: nothing is sent, and
    // the build says why.
    let pipeline_of_fork = format!(
        "script: ./test\nnotifications:\n  webhooks: {}/fork\n",
        receiver.url
    );
    let (repo, sha) = server.repo(PUSH_REPO, &[(".travis.yml", &pipeline_of_fork)], "x");
    let mut fork = fixture("pull_request", "opened.payload.json");
    point_pull_request(&mut fork, &repo.path.display().to_string(), &sha);
    fork["repository"]["full_name"] = json!(PUSH_REPO);
    fork["pull_request"]["base"]["repo"]["full_name"] = json!(PUSH_REPO);
    fork["pull_request"]["head"]["repo"]["full_name"] = json!("stranger/sample_app");
    server.webhook("pull_request", "fork", &fork).await;
    let pr = server
        .wait_build(PUSH_REPO, |b| b["commit"] == sha.as_str())
        .await;
    assert_eq!(pr["fork"], true);
    assert!(
        pr["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["message"]
                .as_str()
                .unwrap()
                .contains("not sent for a pull request from a fork")),
        "{pr}"
    );
    let a = server.claim("r", 5).await.expect("the fork's job");
    server.finish(&a, JobOutcome::Passed).await;
    gantry_testkit::eventually("the fork's build to finish", WAIT, || async {
        server.build(&pr["id"]).await["finished_at"]
            .is_string()
            .then_some(())
    })
    .await;
    let (_, list) = server
        .get(&format!("/api/builds/{}/notifications", pr["id"]))
        .await;
    assert_eq!(list, json!([]));
    assert!(receiver.got("/fork").is_empty());
}

async fn a_notification_waiting_for_its_receiver_outlives_a_restart(engine: Engine) {
    let server = TestServer::start(engine).await;
    let receiver = Receiver::start().await;
    // Down for the first attempts: they fail, and the notification waits.
    receiver.answer("/later", &[503; 20]);
    let pipeline = format!(
        "script: ./test\nnotifications:\n  webhooks: {}/later\n",
        receiver.url
    );
    let build = build(&server, &pipeline, JobOutcome::Passed).await;
    receiver.wait("/later", 1).await;
    // Restart once the failed attempt is written down (a send cut off
    // midway is tried again only after its claim of a minute runs out).
    gantry_testkit::eventually("the first attempt written down", WAIT, || async {
        let (_, list) = server
            .get(&format!("/api/builds/{}/notifications", build["id"]))
            .await;
        (list[0]["attempts"].as_i64()? >= 1).then_some(())
    })
    .await;

    let server = server.restart().await;
    // The receiver is back; the new server's loop sends what the old one could not.
    receiver.answer("/later", &[]);
    let tried = receiver.got("/later").len();
    let got = receiver.wait("/later", tried + 1).await;
    assert_eq!(got.last().unwrap().payload()["status_message"], "Passed");
    let list = gantry_testkit::eventually("sent", WAIT, || async {
        let (_, list) = server
            .get(&format!("/api/builds/{}/notifications", build["id"]))
            .await;
        (list[0]["state"] == "sent").then_some(list)
    })
    .await;
    assert_eq!(list.as_array().unwrap().len(), 1, "sent once: {list}");
    assert_eq!(list[0]["attempts"], json!(got.len()));
}

/// Travis's Slack notifications, to a Slack incoming webhook kept in a
/// repository secret: the message made from the room's template, the hook
/// never shown.
async fn a_slack_room_gets_its_template_filled_and_its_hook_stays_hidden(engine: Engine) {
    let server = TestServer::start(engine).await;
    let receiver = Receiver::start().await;
    let hook = format!("{}/services/T0/B0/s3cr3tpart", receiver.url);
    // The repository is known once it has built.
    build(
        &server,
        "script: ./test\nnotifications:\n  email: false\n",
        JobOutcome::Passed,
    )
    .await;
    server.set_secret("SLACK_ROOM", &hook).await;
    let pipeline = "script: ./test\nnotifications:\n  email: false\n  slack:\n    rooms:\n      - secure: bm90IHJlYWQ=\n    on_failure: always\n    template:\n      - \"%{repository_slug}#%{build_number} %{result}: %{message}\"\n      - \"%{author} <%{build_url}|details>\"\n";
    let failed = build(&server, pipeline, JobOutcome::Failed).await;
    let got = receiver.wait("/services/T0/B0/s3cr3tpart", 1).await;
    let message: Value = serde_json::from_str(&got[0].body).expect("Slack's JSON");
    assert_eq!(got[0].headers["content-type"], "application/json");
    let attachment = &message["attachments"][0];
    assert_eq!(
        attachment["text"],
        format!(
            "{PUSH_REPO}#2 failed: The build was broken.\nbinkkatal <http://gantry.test/{PUSH_REPO}/builds/{}|details>",
            failed["id"]
        )
    );
    assert_eq!(attachment["color"], "danger");
    let list = server.settled_notifications(&failed).await;
    assert_eq!(
        (&list[0]["kind"], &list[0]["url"], &list[0]["state"]),
        (&json!("slack"), &json!("slack:$SLACK_ROOM"), &json!("sent"))
    );
    let text = server
        .text(&format!("/api/builds/{}/notifications", failed["id"]))
        .await;
    let page = server
        .text(&format!("/{PUSH_REPO}/builds/{}", failed["id"]))
        .await;
    for shown in [text, page] {
        assert!(!shown.contains("s3cr3tpart"), "{shown}");
    }
}

on_both_databases!(
    a_notification_waiting_for_its_receiver_outlives_a_restart,
    a_build_tells_its_webhooks_when_it_starts_and_how_it_ends,
    change_tells_only_of_a_result_that_differs,
    a_receiver_that_is_down_gets_it_later_and_one_that_refuses_is_given_up,
    secret_urls_are_expanded_when_sent_and_never_shown,
    a_slack_room_gets_its_template_filled_and_its_hook_stays_hidden,
);
