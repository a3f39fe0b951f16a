//! Starts the real server on a random port against a real database, with a
//! local GitHub double, and talks to it over HTTP like GitHub and runners do.
#![allow(dead_code)]

use gantry_protocol::{Assignment, ClaimRequest, FinishRequest, JobOutcome, LEASE_HEADER};
use gantry_server::config::{AutoCancel, Config, Database};
use gantry_server::{App, Server};
use gantry_testkit::db::{fresh_postgres, Engine};
use gantry_testkit::git::Repo;
use gantry_testkit::github::GitHubDouble;
use gantry_testkit::webhook;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

pub const SECRET: &str = "webhook-secret-for-tests";
pub const ADMIN: &str = "admin-token-0123456789";
pub const RUNNER: &str = "runner-token-0123456789";
pub const SECRET_KEY: &str = "secret-key-for-tests-0123456789";
pub const WAIT: Duration = Duration::from_secs(20);

pub struct TestServer {
    pub url: String,
    pub app: App,
    pub github: GitHubDouble,
    pub http: reqwest::Client,
    /// Shared with its twins (`twin`), removed when the last one goes.
    pub data: std::sync::Arc<tempfile::TempDir>,
    config: Config,
    shutdown: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Runs a scenario once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(gantry_testkit::db::Engine::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(gantry_testkit::db::Engine::Postgres).await } )*
        }
    };
}

pub const APP_ID: u64 = 123456;

/// A 2048-bit RSA key pair (PKCS#8 private, SPKI public) from the `openssl` command.
fn rsa_key_pair() -> (String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("app.pem");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        key.to_str().unwrap(),
    ]);
    let public = run(&["pkey", "-in", key.to_str().unwrap(), "-pubout"]);
    (
        std::fs::read_to_string(&key).expect("the key"),
        String::from_utf8(public).expect("PEM"),
    )
}

impl TestServer {
    pub async fn start(engine: Engine) -> TestServer {
        Self::start_with(engine, Duration::from_secs(60)).await
    }

    pub async fn start_with(engine: Engine, lease: Duration) -> TestServer {
        Self::start_configured(engine, lease, false, false, AutoCancel::Queued, None).await
    }

    /// With `GANTRY_AUTO_CANCEL` set to `mode` (the default is `queued`).
    pub async fn start_auto_cancel(engine: Engine, mode: AutoCancel) -> TestServer {
        Self::start_configured(engine, Duration::from_secs(60), false, false, mode, None).await
    }

    /// Users sign in with GitHub (OAuth app `oauth-client-id` at the double).
    pub async fn start_oauth(engine: Engine) -> TestServer {
        Self::start_configured(
            engine,
            Duration::from_secs(60),
            false,
            true,
            AutoCancel::Queued,
            None,
        )
        .await
    }

    /// Signs in to GitHub as a GitHub App (a fresh RSA key; the double knows its public half).
    pub async fn start_app(engine: Engine) -> TestServer {
        Self::start_configured(
            engine,
            Duration::from_secs(60),
            true,
            false,
            AutoCancel::Queued,
            None,
        )
        .await
    }

    async fn start_configured(
        engine: Engine,
        lease: Duration,
        as_app: bool,
        oauth: bool,
        auto_cancel: AutoCancel,
        email: Option<gantry_server::config::EmailSettings>,
    ) -> TestServer {
        let github = GitHubDouble::start().await;
        let data = tempfile::tempdir().expect("temp dir");
        let database = match engine {
            Engine::Sqlite => Database::Sqlite(data.path().join("gantry.db")),
            Engine::Postgres => Database::Postgres(fresh_postgres().await),
        };
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data.path().to_path_buf(),
            database,
            public_url: Some("http://gantry.test".into()),
            webhook_secret: SECRET.into(),
            github_token: (!as_app).then(|| "github-token-for-tests".into()),
            github_app: as_app.then(|| {
                let (private, public) = rsa_key_pair();
                github.require_app(APP_ID, &public);
                (APP_ID, private)
            }),
            github_oauth: oauth.then(|| {
                github.oauth_app("oauth-client-id", "oauth-client-secret");
                (
                    "oauth-client-id".to_string(),
                    "oauth-client-secret".to_string(),
                )
            }),
            github_url: github.url.clone(),
            github_api_url: github.url.clone(),
            admin_token: Some(ADMIN.into()),
            runner_token: Some(RUNNER.into()),
            embedded_runners: 0,
            lease,
            status_context: "gantry".into(),
            secret_key: Some(SECRET_KEY.into()),
            private_by_default: false,
            auto_cancel,
            log_retention: None,
            delivery_retention: std::time::Duration::from_secs(30 * 24 * 60 * 60),
            email,
        };
        Self::serve(config, github, std::sync::Arc::new(data)).await
    }

    /// Another server on the same database, data folder and GitHub double:
    /// a second replica behind a load balancer.
    pub async fn twin(&self) -> TestServer {
        Self::serve(self.config.clone(), self.github.clone(), self.data.clone()).await
    }

    /// Sends email notifications through the mail server at `smtp_url`.
    pub async fn start_emailing(engine: Engine, smtp_url: &str) -> TestServer {
        let email = gantry_server::config::EmailSettings {
            smtp_url: smtp_url.into(),
            from: "Gantry CI <ci@gantry.test>".into(),
        };
        Self::start_configured(
            engine,
            Duration::from_secs(60),
            false,
            false,
            AutoCancel::Queued,
            Some(email),
        )
        .await
    }

    async fn serve(
        config: Config,
        github: GitHubDouble,
        data: std::sync::Arc<tempfile::TempDir>,
    ) -> TestServer {
        let server = Server::build(config.clone(), None)
            .await
            .expect("server builds");
        let app = server.app().clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve(listener, async move {
            let _ = rx.await;
        }));
        TestServer {
            url,
            app,
            github,
            http: reqwest::Client::new(),
            data,
            config,
            shutdown: tx,
            serving,
        }
    }

    /// Stops this server (its background loops with it) and starts another
    /// on the same database, data folder and GitHub double, as a restart does.
    pub async fn restart(self) -> TestServer {
        let _ = self.shutdown.send(());
        tokio::time::timeout(WAIT, self.serving)
            .await
            .expect("the server stops")
            .expect("the server task")
            .expect("the server served");
        Self::serve(self.config, self.github, self.data).await
    }

    /// A local repository with `files` committed, known to the GitHub double as `full_name`.
    pub fn repo(&self, full_name: &str, files: &[(&str, &str)], message: &str) -> (Repo, String) {
        let repo = Repo::new();
        let sha = repo.commit(files, message);
        self.github.add_repo(full_name, repo.path.clone());
        (repo, sha)
    }

    /// Sends a webhook signed with the right secret.
    pub async fn webhook(&self, event: &str, delivery: &str, payload: &Value) -> reqwest::Response {
        let body = serde_json::to_vec(payload).unwrap();
        self.webhook_raw(
            event,
            delivery,
            body.clone(),
            Some(webhook::sign(SECRET, &body)),
        )
        .await
    }

    pub async fn webhook_raw(
        &self,
        event: &str,
        delivery: &str,
        body: Vec<u8>,
        signature: Option<String>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/hooks/github", self.url))
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .body(body);
        if let Some(sig) = signature {
            request = request.header("x-hub-signature-256", sig);
        }
        request.send().await.expect("send webhook")
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("GET");
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// A page or other text anyone may read (HTML, a log, the metrics).
    pub async fn text(&self, path: &str) -> String {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("GET")
            .text()
            .await
            .expect("a text body")
    }

    /// A read as the admin, who sees private repositories too.
    pub async fn admin_get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("GET");
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// `DELETE path`, with `token` as the bearer token when given.
    pub async fn delete(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let request = self.http.delete(format!("{}{path}", self.url));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
        .send()
        .await
        .expect("DELETE")
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.admin_send(reqwest::Method::POST, path, body).await
    }

    pub async fn admin_put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.admin_send(reqwest::Method::PUT, path, body).await
    }

    async fn admin_send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let response = self
            .http
            .request(method.clone(), format!("{}{path}", self.url))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Waits until a build of `repo` satisfies `check` and returns it (with jobs).
    pub async fn wait_build(&self, repo: &str, check: impl Fn(&Value) -> bool) -> Value {
        gantry_testkit::eventually(&format!("a matching build of {repo}"), WAIT, || async {
            let (status, list) = self.admin_get(&format!("/api/repos/{repo}/builds")).await;
            if status != StatusCode::OK {
                return None;
            }
            for b in list.as_array()? {
                let (_, full) = self.admin_get(&format!("/api/builds/{}", b["id"])).await;
                if check(&full) {
                    return Some(full);
                }
            }
            None
        })
        .await
    }

    pub async fn build(&self, id: &Value) -> Value {
        self.admin_get(&format!("/api/builds/{id}")).await.1
    }

    pub async fn claim(&self, runner: &str, wait_seconds: u64) -> Option<Assignment> {
        let response = self
            .http
            .post(format!("{}{}", self.url, gantry_protocol::CLAIM_PATH))
            .bearer_auth(RUNNER)
            .json(&ClaimRequest {
                runner: runner.into(),
                wait_seconds,
                labels: Default::default(),
            })
            .send()
            .await
            .expect("claim");
        match response.status() {
            StatusCode::OK => Some(response.json().await.expect("assignment")),
            StatusCode::NO_CONTENT => None,
            other => panic!(
                "claim answered {other}: {}",
                response.text().await.unwrap_or_default()
            ),
        }
    }

    pub async fn runner_post(
        &self,
        path: &str,
        lease: &str,
        body: reqwest::Body,
    ) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.url))
            .bearer_auth(RUNNER)
            .header(LEASE_HEADER, lease)
            .body(body)
            .send()
            .await
            .expect("runner call")
    }

    /// Pushes a one-job pipeline to `PUSH_REPO` with commit `message`;
    /// returns the build once its job is queued.
    pub async fn queued_build(&self, message: &str) -> Value {
        let (repo, sha) = self.repo(PUSH_REPO, &[(".travis.yml", "script: ./test\n")], message);
        let payload = push_payload(&repo.path.display().to_string(), &sha, message);
        self.webhook("push", &format!("push-{sha}"), &payload).await;
        self.wait_build(PUSH_REPO, |b| {
            b["state"] == "queued" && !b["jobs"].as_array().unwrap().is_empty()
        })
        .await
    }

    /// A queued build's job, claimed by runner `r1`: a job that is running.
    pub async fn running_job(&self, message: &str) -> Assignment {
        self.queued_build(message).await;
        self.claim("r1", 5).await.expect("a job")
    }

    /// A runner API call about a held job, with a JSON body.
    pub async fn runner_json(
        &self,
        path: &str,
        lease: &str,
        body: &impl serde::Serialize,
    ) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.url))
            .bearer_auth(RUNNER)
            .header(LEASE_HEADER, lease)
            .json(body)
            .send()
            .await
            .expect("runner call")
    }

    /// The bodies of the commit statuses GitHub took for `sha`, in order.
    pub fn statuses_sent(&self, sha: &str) -> Vec<Value> {
        self.github
            .requests()
            .into_iter()
            .filter(|r| {
                r.method == "POST" && !r.failed && r.path.ends_with(&format!("/statuses/{sha}"))
            })
            .filter_map(|r| r.body)
            .collect()
    }

    /// Pushes `pipeline` to `PUSH_REPO` (a new commit each time) and runs
    /// its one job to `outcome`; returns the finished build.
    pub async fn push_and_run(&self, pipeline: &str, outcome: JobOutcome) -> Value {
        use std::sync::atomic::{AtomicU64, Ordering};
        static PUSHES: AtomicU64 = AtomicU64::new(0);
        let message = format!("build {}", PUSHES.fetch_add(1, Ordering::Relaxed));
        let (repo, sha) = self.repo(PUSH_REPO, &[(".travis.yml", pipeline)], &message);
        self.webhook(
            "push",
            &format!("push-{sha}"),
            &push_payload(&repo.path.display().to_string(), &sha, &message),
        )
        .await;
        let queued = self
            .wait_build(PUSH_REPO, |b| b["commit"] == sha.as_str())
            .await;
        let a = self.claim("r", 5).await.expect("a job");
        self.finish(&a, outcome).await;
        let id = queued["id"].clone();
        gantry_testkit::eventually("the build to finish", WAIT, || async {
            let b = self.build(&id).await;
            (b["finished_at"].is_string()).then_some(b)
        })
        .await
    }

    /// Sets the push repository's secret `name` (for every branch).
    pub async fn set_secret(&self, name: &str, value: &str) {
        let (status, _) = self
            .admin_put(
                &format!("/api/repos/{PUSH_REPO}/secrets/{name}"),
                serde_json::json!({ "value": value }),
            )
            .await;
        assert!(status.is_success(), "setting secret {name}: {status}");
    }

    /// A build's notifications once none is pending: a receiver answers
    /// before the outbox writes its answer down.
    pub async fn settled_notifications(&self, build: &Value) -> Vec<Value> {
        let path = format!("/api/builds/{}/notifications", build["id"]);
        gantry_testkit::eventually("the notifications to settle", WAIT, || async {
            let (_, list) = self.get(&path).await;
            let list = list.as_array()?.clone();
            list.iter().all(|n| n["state"] != "pending").then_some(list)
        })
        .await
    }

    pub async fn finish(&self, a: &Assignment, outcome: JobOutcome) -> StatusCode {
        let report = FinishRequest {
            outcome,
            exit_code: Some(if outcome == JobOutcome::Passed { 0 } else { 1 }),
            reason: None,
            phases: vec![],
        };
        self.finish_with(a, &report).await
    }

    /// Finishes `a` with a whole report (phases, reason).
    pub async fn finish_with(&self, a: &Assignment, report: &FinishRequest) -> StatusCode {
        self.runner_json(&gantry_protocol::finish_path(a.job_id), &a.lease, report)
            .await
            .status()
    }

    /// The outcome the planner wrote on delivery `id`, once `condition`
    /// (SQL on `deliveries`) holds for it.
    pub async fn delivery_outcome(&self, id: &str, condition: &str) -> String {
        let sql = format!("SELECT outcome FROM deliveries WHERE id = $1 AND {condition}");
        gantry_testkit::eventually(&format!("delivery {id} with {condition}"), WAIT, || async {
            sqlx::query_scalar::<_, Option<String>>(&sql)
                .bind(id)
                .fetch_optional(&self.app.db.pool)
                .await
                .ok()
                .flatten()
                .flatten()
        })
        .await
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&self.app.db.pool)
            .await
            .expect("count")
    }
}

/// The repository of the `go-playground.push.json` fixture: a consistent push to master.
pub const PUSH_REPO: &str = "binkkatal/sample_app";

/// That push, pointed at `sha` of a local repository.
pub fn push_payload(clone_url: &str, sha: &str, message: &str) -> Value {
    let mut payload = webhook::fixture("push", "go-playground.push.json");
    webhook::point_push(&mut payload, clone_url, sha, message);
    payload
}

/// A push of go-scm's tag fixture, which is of a *private* repository, pointed
/// at a local repository with `pipeline`. Returns the local repository (keep
/// it alive: dropping it deletes it) and the repository's name.
pub async fn push_private(server: &TestServer, pipeline: &str, delivery: &str) -> (Repo, String) {
    let mut payload = webhook::fixture("push", "go-scm.push_tag.json");
    let full_name = payload["repository"]["full_name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(payload["repository"]["private"], true);
    let (repo, sha) = server.repo(&full_name, &[(".travis.yml", pipeline)], "x");
    webhook::point_push(&mut payload, &repo.path.display().to_string(), &sha, "x");
    server.webhook("push", delivery, &payload).await;
    (repo, full_name)
}

/// Writes `request` on a connection of its own, then reads the status the
/// server answers with. reqwest cannot test a refused upload reliably: it
/// keeps writing the body after the answer, and when the server closes the
/// connection, the reset can reach it before the answer does.
pub async fn raw_status(url: &str, request: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    // The server may stop reading at its limit, a few bytes before the end.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), read)
        .await
        .expect("the server did not answer within 30 s");
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in the answer: {text:?}"))
}
