//! `gantry server` as a process: start-up checks, kill -9 right after a
//! burst of acknowledged webhooks loses none of them, GitHub behind a
//! proxy, and what its log says while GitHub is down.

use gantry_testkit::github::GitHubDouble;
use gantry_testkit::proxy::ConnectProxy;
use gantry_testkit::webhook::sign;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod support;

const SECRET: &str = "crash-test-secret";

/// `gantry server` with a data folder and a GitHub, without embedded runners.
fn server_command(data: &Path, github: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
    command
        .env("GANTRY_DATA_DIR", data)
        .env("GANTRY_GITHUB_WEBHOOK_SECRET", SECRET)
        .env("GANTRY_GITHUB_API_URL", github)
        .env("GANTRY_EMBEDDED_RUNNERS", "0")
        .env_remove("GANTRY_DATABASE_URL")
        .stderr(Stdio::null());
    command
}

/// Posts a push signed with the server's secret; returns its status.
async fn push(url: &str, delivery: &str, body: Vec<u8>) -> u16 {
    let http = reqwest::Client::new();
    support::deliver(&http, url, SECRET, "push", delivery, body).await
}

/// Starts the server on a random port; returns it and its base URL.
/// `database`: a PostgreSQL URL, or `None` for SQLite in `data`.
fn start(data: &Path, github: &str, database: Option<&str>) -> (Child, String) {
    let mut command = server_command(data, github);
    if let Some(url) = database {
        command.env("GANTRY_DATABASE_URL", url);
    }
    gantry_testkit::process::start_gantry_server(command)
}

#[test]
fn settings_that_make_no_sense_stop_start_up_with_their_name() {
    // `gantry server` with `settings` (an empty value unsets one): the
    // error it stops with, after checking that it stopped with exit code 2.
    let refused = |settings: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
        command
            .args(["server"])
            .env("GANTRY_GITHUB_WEBHOOK_SECRET", "s");
        for (name, value) in settings {
            match *value {
                "" => command.env_remove(name),
                value => command.env(name, value),
            };
        }
        let out = command.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{settings:?}");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    assert!(
        refused(&[("GANTRY_DATABASE_URL", "mysql://localhost/gantry")])
            .contains("GANTRY_DATABASE_URL must start with postgres:// or sqlite://")
    );
    assert!(refused(&[("GANTRY_GITHUB_WEBHOOK_SECRET", "")])
        .contains("GANTRY_GITHUB_WEBHOOK_SECRET is not set"));
    assert!(refused(&[
        ("GANTRY_LOG_RETENTION_DAYS", "0"),
        ("GANTRY_DATABASE_URL", "")
    ])
    .contains("GANTRY_LOG_RETENTION_DAYS must be at least 1: leave it unset"));
    assert!(refused(&[
        ("GANTRY_DELIVERY_RETENTION_DAYS", "0"),
        ("GANTRY_DATABASE_URL", "")
    ])
    .contains("GANTRY_DELIVERY_RETENTION_DAYS must be at least 1"));
}

/// The environment the server's running program started with.
fn started_with(server: &Child) -> Vec<String> {
    let environ = std::fs::read(format!("/proc/{}/environ", server.id())).unwrap();
    environ
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// An idle server keeps no pages pinned by glibc's per-thread malloc
/// caches (bench metric 6): it runs itself again, in the same process,
/// with them off, but leaves a size the operator chose alone.
#[test]
fn the_server_runs_without_per_thread_malloc_caches_unless_told_otherwise() {
    for (operators, expected) in [
        (None, "GLIBC_TUNABLES=glibc.malloc.tcache_count=0"),
        (
            Some("glibc.malloc.tcache_count=3"),
            "GLIBC_TUNABLES=glibc.malloc.tcache_count=3",
        ),
    ] {
        let data = tempfile::tempdir().unwrap();
        let mut command = server_command(data.path(), "http://127.0.0.1:9");
        match operators {
            Some(tunables) => command.env("GLIBC_TUNABLES", tunables),
            None => command.env_remove("GLIBC_TUNABLES"),
        };
        let (mut server, _url) = gantry_testkit::process::start_gantry_server(command);
        let environment = started_with(&server);
        // Still known by its name, for `pgrep gantry` and `top`.
        let name = std::fs::read_to_string(format!("/proc/{}/comm", server.id())).unwrap();
        server.kill().unwrap();
        server.wait().unwrap();
        let tunables: Vec<_> = environment
            .iter()
            .filter(|v| v.starts_with("GLIBC_TUNABLES="))
            .collect();
        assert_eq!(tunables, [expected], "operator's setting: {operators:?}");
        assert_eq!(name.trim(), "gantry");
    }
}

/// Logs that go to a file (journald, `docker logs`) carry no colour codes.
#[test]
fn the_log_is_plain_text_when_it_is_not_a_terminal() {
    let data = tempfile::tempdir().unwrap();
    let log_path = data.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut command = server_command(data.path(), "http://127.0.0.1:9");
    command.env("GANTRY_LOG", "debug").stderr(log);
    let (mut server, _url) = gantry_testkit::process::start_gantry_server(command);
    server.kill().unwrap();
    server.wait().unwrap();
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(text.contains("DEBUG"), "the server logged at start: {text}");
    assert!(!text.contains('\u{1b}'), "no escape codes: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_after_a_burst_loses_no_acknowledged_delivery_sqlite() {
    kill_9_after_a_burst(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_after_a_burst_loses_no_acknowledged_delivery_postgres() {
    let url = gantry_testkit::db::fresh_postgres().await;
    kill_9_after_a_burst(Some(&url)).await;
}

async fn kill_9_after_a_burst(database: Option<&str>) {
    let github = GitHubDouble::start().await;
    let (_repo, payload, full_name) = support::pushed(&github, "script: ./test\n", &[]);
    let body = serde_json::to_vec(&payload).unwrap();
    let signature = sign(SECRET, &body);

    let data = tempfile::tempdir().unwrap();
    let (mut server, url) = start(data.path(), &github.url, database);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();

    // A bounded burst over many connections; remember what was acknowledged.
    const BURST: usize = 400;
    let acked = futures::future::join_all((0..BURST).map(|i| {
        let (client, url, body, signature) =
            (client.clone(), url.clone(), body.clone(), signature.clone());
        async move {
            let response = client
                .post(format!("{url}/hooks/github"))
                .header("x-github-event", "push")
                .header("x-github-delivery", format!("burst-{i}"))
                .header("x-hub-signature-256", signature)
                .body(body)
                .send()
                .await
                .ok()?;
            (response.status() == 202).then_some(i)
        }
    }))
    .await;
    server.kill().expect("kill -9");
    server.wait().unwrap();
    let acked: Vec<usize> = acked.into_iter().flatten().collect();
    assert_eq!(
        acked.len(),
        BURST,
        "every delivery of the burst was acknowledged before the kill"
    );

    // On disk right after the kill: every acknowledged delivery.
    sqlx::any::install_default_drivers();
    let db_url = database
        .map(str::to_string)
        .unwrap_or_else(|| format!("sqlite://{}", data.path().join("gantry.db").display()));
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&db_url)
        .await
        .unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let pending: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE processed_at IS NULL")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    drop(conn);
    assert_eq!(stored, BURST as i64);
    eprintln!("at the kill: {pending} of {BURST} deliveries not yet planned");

    // Restart on the same data: every acknowledged delivery becomes a build.
    let (mut server, url) = start(data.path(), &github.url, database);
    let count_builds = || async {
        let mut total = 0usize;
        let mut before = String::new();
        loop {
            let page: Value = client
                .get(format!(
                    "{url}/api/repos/{full_name}/builds?limit=100{before}"
                ))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let page = page.as_array()?.clone();
            if page.is_empty() {
                return Some(total);
            }
            total += page.len();
            before = format!("&before={}", page.last()?["number"]);
        }
    };
    let builds = gantry_testkit::eventually(
        "a build per acknowledged delivery",
        Duration::from_secs(60),
        || async {
            let n = count_builds().await?;
            (n >= acked.len()).then_some(n)
        },
    )
    .await;
    assert_eq!(builds, acked.len(), "no delivery lost, none built twice");
    server.kill().unwrap();
    server.wait().unwrap();
}

/// The server reaches GitHub's API through the proxy its environment names
/// (`HTTPS_PROXY`, with a login), over a `CONNECT` tunnel: the proxy learns
/// GitHub's address and nothing else, the token least of all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_is_reached_through_the_proxy_the_environment_names() {
    let github = GitHubDouble::start_tls().await;
    let proxy = ConnectProxy::start_with_login("gantry", "proxy-secret-91").await;
    let (_repo, payload, _) = support::pushed(&github, "script: ./test\n", &[]);
    let body = serde_json::to_vec(&payload).unwrap();

    let data = tempfile::tempdir().unwrap();
    // GitHub's certificate is signed by the test's own authority.
    let roots = data.path().join("roots.pem");
    std::fs::write(
        &roots,
        gantry_testkit::tls::pem(github.ca.as_ref().unwrap()),
    )
    .unwrap();
    let log_path = data.path().join("server.log");
    let mut command = server_command(data.path(), &github.url);
    for name in [
        "https_proxy",
        "http_proxy",
        "all_proxy",
        "no_proxy",
        "NO_PROXY",
    ] {
        command.env_remove(name);
    }
    command
        .env("SSL_CERT_FILE", &roots)
        .env(
            "HTTPS_PROXY",
            proxy
                .url
                .replace("http://", "http://gantry:proxy-secret-91@"),
        )
        .env("GANTRY_GITHUB_TOKEN", "ghp_behindtheproxy42")
        .stderr(std::fs::File::create(&log_path).unwrap());
    let (mut server, url) = gantry_testkit::process::start_gantry_server(command);

    assert_eq!(push(&url, "behind-the-proxy", body).await, 202);
    gantry_testkit::eventually(
        "the pipeline file read from GitHub",
        Duration::from_secs(30),
        || async {
            github
                .requests()
                .iter()
                .any(|r| r.path.contains("/contents/") && !r.failed)
                .then_some(())
        },
    )
    .await;
    server.kill().unwrap();
    server.wait().unwrap();

    let github_address = github.url.trim_start_matches("https://").to_string();
    let connects = proxy.connects();
    assert!(!connects.is_empty(), "GitHub was reached around the proxy");
    assert!(
        connects.iter().all(|c| *c == github_address),
        "{connects:?}"
    );
    assert!(!proxy.saw("ghp_behindtheproxy42"));
    assert!(!proxy.saw("/contents/"));
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("through the proxy"), "{log}");
    assert!(log.contains(&proxy.url), "{log}");
    assert!(!log.contains("proxy-secret-91"), "{log}");
}

/// While GitHub does not answer, the server's log says which build waits
/// and when it tries again (never the token); the build is planned once
/// GitHub answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_outage_is_logged_while_the_build_waits_for_it() {
    let github = GitHubDouble::start().await;
    let (_repo, payload, repo) = support::pushed(&github, "script: ./test\n", &[]);
    let body = serde_json::to_vec(&payload).unwrap();
    let sha = payload["after"].as_str().unwrap();
    let data = tempfile::tempdir().unwrap();
    let log_path = data.path().join("server.log");
    let mut command = server_command(data.path(), &github.url);
    command
        .env("GANTRY_GITHUB_TOKEN", "ghp_duringtheoutage42")
        .stderr(std::fs::File::create(&log_path).unwrap());
    github.fail_next(1, 503);
    let (mut server, url) = gantry_testkit::process::start_gantry_server(command);

    assert_eq!(push(&url, "during-the-outage", body).await, 202);
    let build: Value = gantry_testkit::eventually(
        "the build planned after the outage",
        Duration::from_secs(30),
        || async {
            let builds: Value = reqwest::get(format!("{url}/api/repos/{repo}/builds"))
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let first = builds.as_array()?.first()?.clone();
            (first["state"] == "queued").then_some(first)
        },
    )
    .await;
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(build["commit"], sha);

    let log = std::fs::read_to_string(&log_path).unwrap();
    let warning = log
        .lines()
        .find(|l| l.contains("cannot read the pipeline file from GitHub; trying again in 2s"))
        .unwrap_or_else(|| panic!("no warning in the log: {log}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains(sha), "{warning}");
    assert!(warning.contains("attempt=1"), "{warning}");
    assert!(!log.contains("ghp_duringtheoutage42"), "{log}");
}
