//! The web viewer's pages, badge and live events, served by a real server
//! on both databases, with logs written through the runner API.

mod support;

use futures::StreamExt;
use gantry_protocol::{log_path, Assignment, JobOutcome};
use gantry_testkit::db::Engine;
use reqwest::StatusCode;
use std::time::Duration;
use support::*;

const LOG: &str = "Gantry job 1.1\n\
travis_fold:start:install\r\x1b[0Ktravis_time:start:00000001\r\x1b[0K\x1b[33;1m$ npm ci\x1b[0m\n\
added 12 packages\n\
travis_time:end:00000001:start=1,finish=2,duration=1500000000,event=install\r\x1b[0Ktravis_fold:end:install\r\x1b[0K\n\
gantry_phase:end:install:rc=0\r\x1b[0K\n\
<script>alert('xss')</script> <img src=x onerror=alert(1)>\n\
\x1b[32;1mThe job passed\x1b[0m\n";

async fn page(server: &TestServer, path: &str) -> (StatusCode, String) {
    let response = server
        .http
        .get(format!("{}{path}", server.url))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

/// A push whose one job is claimed; returns it.
async fn append(server: &TestServer, a: &Assignment, offset: u64, text: &str) {
    let response = server
        .runner_post(
            &log_path(a.job_id, offset),
            &a.lease,
            text.as_bytes().to_vec().into(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

async fn pages_show_builds_jobs_and_escaped_logs(engine: Engine) {
    let server = TestServer::start(engine).await;
    let a = server.running_job("Fix <the> thing").await;
    append(&server, &a, 0, LOG).await;
    let report = gantry_protocol::FinishRequest {
        outcome: JobOutcome::Passed,
        exit_code: Some(0),
        reason: None,
        phases: vec![gantry_protocol::PhaseTiming {
            phase: "deploy".into(),
            started_at_ms: 1,
            duration_ms: 2000,
            exit_code: 0,
        }],
    };
    assert_eq!(server.finish_with(&a, &report).await, StatusCode::OK);
    let build = a.build_id.0;
    let job = a.job_id.0;

    let (status, home) = page(&server, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        home.contains(&format!("<a href=\"/{PUSH_REPO}\">{PUSH_REPO}</a>")),
        "{home}"
    );
    assert!(home.contains("state-passed"));

    let (_, list) = page(&server, &format!("/{PUSH_REPO}")).await;
    assert!(
        list.contains(&format!("/{PUSH_REPO}/builds/{build}\">#1</a>")),
        "{list}"
    );
    assert!(list.contains("Fix &lt;the&gt; thing"));
    let (_, filtered) = page(&server, &format!("/{PUSH_REPO}?state=failed")).await;
    assert!(filtered.contains("No builds match."), "{filtered}");

    let (_, build_page) = page(&server, &format!("/{PUSH_REPO}/builds/{build}")).await;
    assert!(
        build_page.contains(&format!("/{PUSH_REPO}/jobs/{job}\">1.1</a>")),
        "{build_page}"
    );

    let (_, job_page) = page(&server, &format!("/{PUSH_REPO}/jobs/{job}")).await;
    assert!(
        job_page.contains(
            "&lt;script&gt;alert(&#39;xss&#39;)&lt;/script&gt; &lt;img src=x onerror=alert(1)&gt;"
        ),
        "{job_page}"
    );
    assert!(!job_page.contains("<script>alert"));
    assert!(!job_page.contains("<img src=x"));
    assert!(
        job_page.contains("<details class=\"fold\" data-fold=\"install\">"),
        "{job_page}"
    );
    assert!(job_page.contains("<span class=\"fold-time\">1.5s</span>"));
    assert!(job_page.contains("<span class=\"f2 bold\">The job passed</span>"));
    assert!(job_page.contains("id=\"L6\"><a class=\"ln\" href=\"#L6\">6</a>"));
    assert!(job_page.contains("data-running=\"false\""));

    let response = server
        .http
        .get(format!("{}/{PUSH_REPO}/badge.svg", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "image/svg+xml");
    let svg = response.text().await.unwrap();
    assert!(svg.contains("build: passed"), "{svg}");
    let other = server
        .http
        .get(format!("{}/{PUSH_REPO}/badge.svg?branch=nope", server.url))
        .send()
        .await
        .unwrap();
    assert!(other.text().await.unwrap().contains("build: unknown"));

    let (status, _) = page(&server, "/nobody/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, css) = page(&server, "/assets/style.css").await;
    assert_eq!(status, StatusCode::OK);
    assert!(css.contains(".log"));
}

async fn private_repositories_pages_are_hidden(engine: Engine) {
    let server = TestServer::start(engine).await;
    let (_repo, full_name) = push_private(&server, "script: ./test\n", "priv-1").await;
    server
        .wait_build(&full_name, |b| b["state"] == "queued")
        .await;
    let (status, _) = page(&server, &format!("/{full_name}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, home) = page(&server, "/").await;
    assert!(!home.contains(&full_name), "{home}");
    let badge = server
        .http
        .get(format!("{}/{full_name}/badge.svg", server.url))
        .send()
        .await
        .unwrap();
    assert!(badge.text().await.unwrap().contains("unknown"));
}

async fn live_events_carry_new_lines_then_the_final_state(engine: Engine) {
    let server = TestServer::start(engine).await;
    let a = server.running_job("Fix <the> thing").await;
    let first = "line one\n";
    append(&server, &a, 0, first).await;
    let mut events = Events::open(
        &server,
        &format!("/api/jobs/{}/events?offset={}", a.job_id, first.len()),
    )
    .await;
    events
        .until("event: state\ndata: {\"state\":\"running\"}")
        .await;
    append(&server, &a, first.len() as u64, "two <b>\nthree partial").await;
    events.until("two &lt;b&gt;").await;
    assert!(
        !events.seen.contains("line one"),
        "the viewer already had it: {}",
        events.seen
    );
    assert!(
        !events.seen.contains("three partial"),
        "only whole lines: {}",
        events.seen
    );
    append(
        &server,
        &a,
        (first.len() + "two <b>\nthree partial".len()) as u64,
        "\n",
    )
    .await;
    events.until("three partial").await;
    assert_eq!(server.finish(&a, JobOutcome::Failed).await, StatusCode::OK);
    events.until("{\"state\":\"failed\"}").await;
    assert!(
        events.body.next().await.is_none(),
        "the stream ends after the final state"
    );
}

async fn a_builds_events_carry_each_change_of_state_then_end(engine: Engine) {
    let server = TestServer::start(engine).await;
    let build = server.queued_build("watched").await;
    let job = build["jobs"][0]["id"].clone();
    let mut events = Events::open(&server, &format!("/api/builds/{}/events", build["id"])).await;
    events
        .until(&format!(
            "event: state\ndata: {{\"jobs\":[{{\"id\":{job},\"state\":\"queued\"}}],\"state\":\"queued\"}}"
        ))
        .await;
    let a = server.claim("r1", 5).await.expect("the job");
    events
        .until(&format!(
            "{{\"jobs\":[{{\"id\":{job},\"state\":\"running\"}}],\"state\":\"running\"}}"
        ))
        .await;
    assert_eq!(server.finish(&a, JobOutcome::Passed).await, StatusCode::OK);
    events
        .until(&format!(
            "{{\"jobs\":[{{\"id\":{job},\"state\":\"passed\"}}],\"state\":\"passed\"}}"
        ))
        .await;
    // A change the claim makes in two steps (the job, then the build) may
    // show between them; an unchanged state is never sent again.
    let sent: Vec<&str> = events
        .seen
        .lines()
        .filter(|l| l.starts_with("data: "))
        .collect();
    assert!(
        sent.windows(2).all(|pair| pair[0] != pair[1]),
        "one event per change: {}",
        events.seen
    );
    assert!(
        events.body.next().await.is_none(),
        "the stream ends after the final state"
    );
    let (status, _) = page(&server, "/api/builds/999999/events").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

type Body =
    std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>>;

/// An SSE response read as text, as a browser's EventSource gets it.
struct Events {
    body: Body,
    seen: String,
}

impl Events {
    /// Opens the stream at `path`, checking that it is one.
    async fn open(server: &TestServer, path: &str) -> Events {
        let response = server
            .http
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Events {
            body: Box::pin(response.bytes_stream()),
            seen: String::new(),
        }
    }

    async fn until(&mut self, needle: &str) {
        let found = tokio::time::timeout(Duration::from_secs(20), async {
            while !self.seen.contains(needle) {
                match self.body.next().await {
                    Some(chunk) => self
                        .seen
                        .push_str(&String::from_utf8_lossy(&chunk.unwrap())),
                    None => return false,
                }
            }
            true
        })
        .await;
        assert!(matches!(found, Ok(true)), "no `{needle}` in: {}", self.seen);
    }
}

on_both_databases!(
    pages_show_builds_jobs_and_escaped_logs,
    private_repositories_pages_are_hidden,
    live_events_carry_new_lines_then_the_final_state,
    a_builds_events_carry_each_change_of_state_then_end,
);
