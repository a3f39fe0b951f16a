//! The web viewer in a real browser: headless Chromium through chromedriver,
//! against a real server whose job logs are written through the runner API.
//! Screenshots land in `target/browser-artifacts/`.

mod support;

use fantoccini::Locator;
use gantry_protocol::{log_path, Assignment, JobOutcome};
use gantry_testkit::browser::Browser;
use gantry_testkit::db::Engine;
use reqwest::StatusCode;
use std::time::Duration;
use support::*;

const WAIT: Duration = Duration::from_secs(20);

struct Log<'a> {
    server: &'a TestServer,
    a: &'a Assignment,
    offset: u64,
}

impl Log<'_> {
    async fn write(&mut self, text: &str) {
        let response = self
            .server
            .runner_post(
                &log_path(self.a.job_id, self.offset),
                &self.a.lease,
                text.as_bytes().to_vec().into(),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        self.offset += text.len() as u64;
    }
}

const SETUP: &str = "Gantry job 1.1 on runner r1\n\
travis_fold:start:install\r\x1b[0Ktravis_time:start:00000001\r\x1b[0K\x1b[33;1m$ npm ci\x1b[0m\n\
added 12 packages in 1s\n\
travis_time:end:00000001:start=1,finish=2,duration=1500000000,event=install\r\x1b[0Ktravis_fold:end:install\r\x1b[0K\n\
gantry_phase:end:install:rc=0\r\x1b[0K\n\
travis_fold:start:script\r\x1b[0Ktravis_time:start:00000002\r\x1b[0K\x1b[33;1m$ npm test\x1b[0m\n\
<script>window.pwned = 1</script><img src=x onerror=\"window.pwned = 2; document.title = 'pwned'\">\n";

async fn a_running_log_grows_live_and_the_pages_follow_the_job(engine: Engine) {
    let server = TestServer::start(engine).await;
    let a = server.running_job("Teach the viewer").await;
    let mut log = Log {
        server: &server,
        a: &a,
        offset: 0,
    };
    log.write(SETUP).await;
    let browser = Browser::start().await;
    let job_url = format!("{}/{PUSH_REPO}/jobs/{}", server.url, a.job_id);
    browser.client.goto(&job_url).await.unwrap();
    browser
        .wait_for(
            "the log",
            "return document.getElementById('L7') !== null",
            WAIT,
        )
        .await;

    // Markup in the log is text: nothing ran.
    let text = browser
        .client
        .find(Locator::Css("#L7 .text"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("<script>window.pwned = 1</script><img src=x onerror="),
        "{text}"
    );
    assert_eq!(
        browser
            .eval("return window.pwned === undefined && document.title !== 'pwned'")
            .await,
        true
    );
    assert_eq!(
        browser
            .eval("return document.querySelectorAll('#log img, #log script').length")
            .await,
        0
    );

    // New lines appear without a reload.
    browser.eval("window.notReloaded = true; return true").await;
    for i in 1..=20 {
        log.write(&format!("\x1b[32mok {i} - live line\x1b[0m\n"))
            .await;
    }
    browser
        .wait_for("live lines", "return !!document.getElementById('L27') && document.getElementById('L27').textContent.includes('ok 20 - live line')", WAIT)
        .await;
    assert_eq!(
        browser.eval("return window.notReloaded === true").await,
        true
    );
    assert_eq!(
        browser
            .eval("return document.querySelector('#L27 .text span').className")
            .await,
        "f2",
        "colours are drawn"
    );
    browser.screenshot("log-running").await;

    // The job ends: the header says so, and the finished log folds its phases.
    log.write("travis_time:end:00000002:start=1,finish=2,duration=250000000,event=script\r\x1b[0Ktravis_fold:end:script\r\x1b[0K\ngantry_phase:end:script:rc=1\r\x1b[0K\n\x1b[31;1mThe job failed\x1b[0m after 2.0s\n").await;
    assert_eq!(server.finish(&a, JobOutcome::Failed).await, StatusCode::OK);
    // The header turns at once; then the page draws the finished log again.
    browser
        .wait_for(
            "the failed state",
            "return document.querySelector('.head .state').textContent === 'failed'",
            WAIT,
        )
        .await;
    browser
        .wait_for("the finished log", "return window.notReloaded === undefined && document.readyState === 'complete' && !!document.querySelector('details[data-fold=script] .fold-time')", WAIT)
        .await;
    browser.screenshot("log-finished").await;

    // Folds: the passed phase is closed and opens on a click; the failed one is open.
    assert_eq!(
        browser
            .eval("return document.querySelector('details[data-fold=install]').open")
            .await,
        false
    );
    assert_eq!(
        browser
            .eval("return document.querySelector('details[data-fold=script]').open")
            .await,
        true
    );
    assert_eq!(browser.eval("return document.querySelector('details[data-fold=install] summary .fold-time').textContent").await, "1.5s");
    assert_eq!(browser.eval("return document.querySelector('details[data-fold=script] summary .fold-time').textContent").await, "0.2s");
    browser
        .client
        .find(Locator::Css("details[data-fold=install] summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(
        browser
            .eval("return document.querySelector('details[data-fold=install]').open")
            .await,
        true
    );

    // A line anchor selects and scrolls to its line, opening its phase.
    browser
        .client
        .find(Locator::Css("details[data-fold=install] summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.client.goto(&format!("{job_url}#L3")).await.unwrap();
    browser.client.refresh().await.unwrap();
    browser
        .wait_for("line 3 selected", "const l = document.getElementById('L3'); return !!l && l.classList.contains('selected') && l.closest('details').open", WAIT)
        .await;
    let visible = browser.eval("const r = document.getElementById('L3').getBoundingClientRect(); return r.top >= 0 && r.bottom <= window.innerHeight").await;
    assert_eq!(visible, true);

    // Search jumps between matches.
    let search = browser.client.find(Locator::Id("search")).await.unwrap();
    search.send_keys("live line\u{E007}").await.unwrap();
    browser
        .wait_for(
            "the first match",
            "const c = document.querySelector('.line.match.current'); return !!c && c.id === 'L8'",
            WAIT,
        )
        .await;
    search.send_keys("\u{E007}").await.unwrap();
    browser
        .wait_for(
            "the second match",
            "const c = document.querySelector('.line.match.current'); return !!c && c.id === 'L9'",
            WAIT,
        )
        .await;
    browser.close().await;
}

async fn a_build_page_updates_when_its_job_ends(engine: Engine) {
    let server = TestServer::start(engine).await;
    let a = server.running_job("Teach the viewer").await;
    let browser = Browser::start().await;
    browser
        .client
        .goto(&format!("{}/{PUSH_REPO}/builds/{}", server.url, a.build_id))
        .await
        .unwrap();
    browser
        .wait_for(
            "the running job",
            "return document.querySelector('tr[data-job] .state').textContent === 'running'",
            WAIT,
        )
        .await;
    browser.screenshot("build-running").await;
    assert_eq!(server.finish(&a, JobOutcome::Passed).await, StatusCode::OK);
    browser
        .wait_for(
            "the passed build",
            "return document.querySelector('.head .state').textContent === 'passed' && document.querySelector('tr[data-job] .state').textContent === 'passed'",
            WAIT,
        )
        .await;
    browser.screenshot("build-passed").await;
    // A phone-width screen shows the page without sideways scrolling.
    browser.client.set_window_size(390, 844).await.unwrap();
    assert_eq!(
        browser
            .eval("return document.documentElement.scrollWidth <= window.innerWidth + 1")
            .await,
        true
    );
    browser.close().await;
}

async fn a_hundred_megabyte_log_opens_at_its_tail_and_jumps_to_line_a_million(engine: Engine) {
    let server = TestServer::start(engine).await;
    let a = server.running_job("Teach the viewer").await;
    // 1,300,000 numbered lines, 100 MB, written as the runner API would store them.
    const LINES: usize = 1_300_000;
    let logs = server.app.logs.clone();
    let job = a.job_id;
    let size = tokio::task::spawn_blocking(move || {
        let mut offset = 0u64;
        let mut chunk = String::with_capacity(8 << 20);
        for n in 1..=LINES {
            chunk.push_str(&format!("\x1b[36mline {n:07}\x1b[0m of the big log: lorem ipsum dolor sit amet, consectetur adipiscing\n"));
            if chunk.len() > (4 << 20) || n == LINES {
                offset = logs.append(job, offset, chunk.as_bytes()).unwrap().size;
                chunk.clear();
            }
        }
        offset
    })
    .await
    .unwrap();
    assert!(size > 100_000_000, "{size} bytes");
    assert_eq!(server.finish(&a, JobOutcome::Passed).await, StatusCode::OK);

    let browser = Browser::start().await;
    let url = format!("{}/{PUSH_REPO}/jobs/{}", server.url, a.job_id);
    let started = std::time::Instant::now();
    browser.client.goto(&url).await.unwrap();
    let last = format!("L{LINES}");
    browser
        .wait_for("the tail", &format!("const l = document.getElementById('{last}'); if (!l) return false; const r = l.getBoundingClientRect(); return r.top >= 0 && r.bottom <= window.innerHeight + 1"), WAIT)
        .await;
    eprintln!(
        "a {size}-byte log showed its tail {:?} after the request",
        started.elapsed()
    );
    let in_dom = browser
        .eval("return document.querySelectorAll('#log .line').length")
        .await;
    assert!(
        in_dom.as_u64().unwrap() < 3000,
        "only what is near the screen is drawn: {in_dom}"
    );
    browser.screenshot("log-100mb-tail").await;

    browser
        .client
        .goto(&format!("{url}#L1000000"))
        .await
        .unwrap();
    browser
        .wait_for("line 1,000,000", "const l = document.getElementById('L1000000'); if (!l || !l.classList.contains('selected')) return false; const r = l.getBoundingClientRect(); return r.top >= 0 && r.bottom <= window.innerHeight", WAIT)
        .await;
    let text = browser
        .eval("return document.querySelector('#L1000000 .text').textContent")
        .await;
    assert!(
        text.as_str()
            .unwrap()
            .starts_with("line 1000000 of the big log"),
        "{text}"
    );
    browser.screenshot("log-100mb-line-1000000").await;

    // Search runs on the server and jumps to the match.
    let search = browser.client.find(Locator::Id("search")).await.unwrap();
    search.send_keys("LINE 0123456\u{E007}").await.unwrap();
    browser
        .wait_for(
            "the match",
            "const c = document.querySelector('.line.current'); return !!c && c.id === 'L123456'",
            WAIT,
        )
        .await;
    browser.close().await;
}

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_running_log_grows_live_and_the_pages_follow_the_job() {
        super::a_running_log_grows_live_and_the_pages_follow_the_job(
            gantry_testkit::db::Engine::Sqlite,
        )
        .await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hundred_megabyte_log_opens_at_its_tail_and_jumps_to_line_a_million() {
        super::a_hundred_megabyte_log_opens_at_its_tail_and_jumps_to_line_a_million(
            gantry_testkit::db::Engine::Sqlite,
        )
        .await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_build_page_updates_when_its_job_ends() {
        super::a_build_page_updates_when_its_job_ends(gantry_testkit::db::Engine::Sqlite).await
    }
}
