//! What every measurement stands on: the job image, a GitHub double serving
//! pipelines from real repositories, `gantry` processes, Docker's events.

use bollard::query_parameters::EventsOptions;
use futures::StreamExt;
use gantry_testkit::git::Repo;
use gantry_testkit::github::GitHubDouble;
use gantry_testkit::webhook::{fixture, point_push, sign};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

pub const SECRET: &str = "bench-webhook-secret";
pub const ADMIN: &str = "bench-admin-token-0123456789";
pub const RUNNER_TOKEN: &str = "bench-runner-token-0123456789";
const BASE_IMAGE: &str = "gantry-test/busybox:1";

/// Fails the run loudly: something is wrong, not merely slow. A panic, so
/// the processes the bench started are stopped on the way out.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => {{
        panic!("BENCHMARK FAILED: {}", format!($($arg)*))
    }};
}

/// Unix time in nanoseconds, the clock Docker's events and the job's stamps use.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `gantry-bench/tools:<hash>`: the busybox test image plus `benchtool`
/// (bench/tools/benchtool.c, built static). Cached by the source's hash.
pub fn tools_image(root: &Path) -> String {
    let source = root.join("bench/tools/benchtool.c");
    let text = std::fs::read(&source).unwrap_or_else(|e| fail!("{}: {e}", source.display()));
    let hash = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut h);
        format!("{:012x}", h.finish() & 0xffff_ffff_ffff)
    };
    let tag = format!("gantry-bench/tools:{hash}");
    if run_ok("docker", &["image", "inspect", &tag]) {
        return tag;
    }
    if !run_ok("docker", &["image", "inspect", BASE_IMAGE]) {
        fail!("{BASE_IMAGE} is missing: run scripts/test-images.sh (bench/run.sh does)");
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail!("temp dir: {e}"));
    let binary = dir.path().join("benchtool");
    let built = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&binary)
        .arg(&source)
        .status()
        .is_ok_and(|s| s.success());
    if !built {
        fail!(
            "gcc -static could not build {} (needs gcc and libc6-dev)",
            source.display()
        );
    }
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {BASE_IMAGE}\nCOPY benchtool /bin/benchtool\n"),
    )
    .unwrap_or_else(|e| fail!("Dockerfile: {e}"));
    let dir_arg = dir.path().display().to_string();
    if !run_ok("docker", &["build", "-q", "-t", &tag, &dir_arg]) {
        fail!("docker build of {tag} failed");
    }
    tag
}

pub fn run_ok(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A repository served by the GitHub double, one commit with `pipeline`.
pub struct Project {
    pub repo: Repo,
    pub full_name: String,
    pub payload: Value,
}

impl Project {
    pub fn new(github: &GitHubDouble, name: &str, id: i64, pipeline: &str) -> Project {
        let repo = Repo::new();
        let sha = repo.commit(&[(".gantry.yml", pipeline)], "bench");
        let full_name = format!("bench/{name}");
        github.add_repo(&full_name, repo.path.clone());
        let mut payload = fixture("push", "go-playground.push.json");
        point_push(
            &mut payload,
            &repo.path.display().to_string(),
            &sha,
            "bench",
        );
        payload["repository"]["id"] = id.into();
        payload["repository"]["name"] = name.into();
        payload["repository"]["full_name"] = full_name.clone().into();
        payload["repository"]["owner"]["login"] = "bench".into();
        payload["repository"]["owner"]["name"] = "bench".into();
        Project {
            repo,
            full_name,
            payload,
        }
    }
}

/// A `gantry` process (server or runner) started by the bench.
pub struct Process {
    pub child: Child,
    pub url: String,
}

/// Stopped as an operator would (SIGTERM), so a runner finishes and cleans
/// up its jobs; SIGKILL only if it has not gone within 20 s.
impl Drop for Process {
    fn drop(&mut self) {
        gantry_testkit::process::stop(&mut self.child, Duration::from_secs(20));
    }
}

/// A server of one metric's own: its process, a client for it, and its data
/// dir (declared last, so it is removed after the server has stopped).
pub struct Stage {
    pub server: Process,
    pub client: Client,
    pub data: tempfile::TempDir,
}

impl Stage {
    /// A server on SQLite with `embedded_runners` job slots in-process.
    pub fn start(github_url: &str, embedded_runners: &str) -> Stage {
        let data = tempfile::tempdir().unwrap_or_else(|e| fail!("temp dir: {e}"));
        let server = Process::server(
            data.path(),
            github_url,
            &[("GANTRY_EMBEDDED_RUNNERS", embedded_runners)],
        );
        let client = Client::new(&server.url);
        Stage {
            server,
            client,
            data,
        }
    }
}

/// The release `gantry` binary beside this one (bench/run.sh builds both).
pub fn gantry_bin() -> PathBuf {
    if let Ok(path) = std::env::var("GANTRY_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| fail!("current exe: {e}"));
    let bin = exe.with_file_name("gantry");
    if !bin.exists() {
        fail!(
            "{} is missing: run bench/run.sh, which builds it",
            bin.display()
        );
    }
    bin
}

impl Process {
    pub fn server(data: &Path, github: &str, env: &[(&str, &str)]) -> Process {
        let mut command = Command::new(gantry_bin());
        command
            .env("GANTRY_DATA_DIR", data)
            .env("GANTRY_GITHUB_WEBHOOK_SECRET", SECRET)
            .env("GANTRY_GITHUB_API_URL", github)
            .env("GANTRY_ADMIN_TOKEN", ADMIN)
            .env("GANTRY_RUNNER_TOKEN", RUNNER_TOKEN)
            .env("GANTRY_LOG", "warn")
            // Every push of a metric is a sample that must run: none may
            // cancel an older one still queued (metric 6 pushes 100 at once).
            .env("GANTRY_AUTO_CANCEL", "off")
            .env_remove("GANTRY_DATABASE_URL")
            .stderr(Stdio::inherit());
        for (k, v) in env {
            command.env(k, v);
        }
        let (child, url) = gantry_testkit::process::start_gantry_server(command);
        Process { child, url }
    }

    /// A remote runner: the `gantry-runner` binary built beside `gantry`,
    /// as a machine that only runs jobs would install it.
    pub fn runner(server: &str, data: &Path, capacity: usize) -> Process {
        let bin = gantry_bin().with_file_name("gantry-runner");
        let child = Command::new(&bin)
            .args(["--server", server, "--token", RUNNER_TOKEN])
            .args([
                "--capacity",
                &capacity.to_string(),
                "--name",
                "bench-runner",
            ])
            .arg("--data-dir")
            .arg(data)
            .env("GANTRY_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| fail!("cannot start {}: {e}", bin.display()));
        Process {
            child,
            url: String::new(),
        }
    }

    /// `kill -9`: no chance to finish anything.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Resident memory now (from /proc), with what the processes it
    /// started hold (a runner's job process).
    pub fn memory(&self) -> Memory {
        let mut total = Memory {
            rss: 0.0,
            anon: 0.0,
            processes: 0,
        };
        let mut pids = vec![self.child.id()];
        while let Some(pid) = pids.pop() {
            let m = Memory::of(pid);
            total.rss += m.rss;
            total.anon += m.anon;
            total.processes += 1;
            pids.extend(gantry_testkit::process::children(pid));
        }
        total
    }
}

/// Resident memory of a process, in MiB: all of it, and the part that is
/// anonymous (heap, stacks) rather than pages of the binary and libraries.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub rss: f64,
    pub anon: f64,
    /// How many processes the numbers add up.
    pub processes: usize,
}

impl Memory {
    pub fn of(pid: u32) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
                .map(|kb| kb / 1024.0)
                .unwrap_or(f64::NAN)
        };
        Memory {
            rss: field("VmRSS:"),
            anon: field("RssAnon:"),
            processes: 1,
        }
    }
}

pub fn rss_mib(pid: u32) -> f64 {
    Memory::of(pid).rss
}

/// Talks to a server as GitHub and as a user would.
#[derive(Clone)]
pub struct Client {
    pub url: String,
    pub http: reqwest::Client,
}

impl Client {
    pub fn new(url: &str) -> Client {
        Client {
            url: url.to_string(),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(128)
                .build()
                .unwrap_or_else(|e| fail!("http client: {e}")),
        }
    }

    /// A signed delivery; the status Gantry answered (0 when it did not answer).
    pub async fn deliver(&self, event: &str, delivery: &str, body: Vec<u8>) -> u16 {
        let signature = sign(SECRET, &body);
        self.http
            .post(format!("{}/hooks/github", self.url))
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", signature)
            .body(body)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    pub async fn push(&self, project: &Project) {
        let delivery = format!("bench-{}", rand::random::<u64>());
        let body = serde_json::to_vec(&project.payload).unwrap_or_default();
        let status = self.deliver("push", &delivery, body).await;
        if status != 202 {
            fail!("a push webhook got {status}, not 202");
        }
    }

    pub async fn get(&self, path: &str) -> Option<Value> {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()
    }

    /// The newest build of `repo` numbered above `after`, once it exists.
    pub async fn build_after(&self, repo: &str, after: i64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(list) = self.get(&format!("/api/repos/{repo}/builds")).await {
                if let Some(b) = list
                    .as_array()
                    .and_then(|l| l.first())
                    .filter(|b| b["number"].as_i64().unwrap_or(0) > after)
                {
                    return b.clone();
                }
            }
            if Instant::now() > deadline {
                fail!("no build of {repo} appeared within a minute");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn newest_number(&self, repo: &str) -> i64 {
        self.get(&format!("/api/repos/{repo}/builds"))
            .await
            .and_then(|l| l.as_array()?.first()?["number"].as_i64())
            .unwrap_or(0)
    }

    /// Polls build `id` every `every` until it has finished; returns it.
    pub async fn finished(&self, id: i64, every: Duration, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(build) = self.get(&format!("/api/builds/{id}")).await {
                if !matches!(build["state"].as_str(), Some("queued" | "running") | None) {
                    return build;
                }
            }
            if Instant::now() > deadline {
                fail!("build {id} did not finish within {limit:?}");
            }
            tokio::time::sleep(every).await;
        }
    }
}

/// Container `start` events from Docker: (unix nanos, container name, labels).
pub struct Starts {
    rx: mpsc::UnboundedReceiver<(i64, String, HashMap<String, String>)>,
    _task: tokio::task::JoinHandle<()>,
}

impl Starts {
    pub async fn watch(docker: &bollard::Docker) -> Starts {
        let (tx, rx) = mpsc::unbounded_channel();
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("event".to_string(), vec!["start".to_string()]),
        ]);
        let mut events = docker.events(Some(EventsOptions {
            filters: Some(filters),
            ..Default::default()
        }));
        let task = tokio::spawn(async move {
            while let Some(Ok(event)) = events.next().await {
                let attributes = event.actor.and_then(|a| a.attributes).unwrap_or_default();
                let name = attributes.get("name").cloned().unwrap_or_default();
                let _ = tx.send((event.time_nano.unwrap_or(0), name, attributes));
            }
        });
        // Docker sends events only from subscription on; give it a moment.
        tokio::time::sleep(Duration::from_millis(200)).await;
        Starts { rx, _task: task }
    }

    /// Forgets events seen so far.
    pub fn drain(&mut self) {
        while self.rx.try_recv().is_ok() {}
    }

    /// The next start of a container whose label `key` has a value that
    /// starts with `prefix`; its time in unix nanos.
    pub async fn next(&mut self, key: &str, prefix: &str) -> i64 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some((t, _, labels))) => {
                    if labels.get(key).is_some_and(|v| v.starts_with(prefix)) {
                        return t;
                    }
                }
                _ => fail!("no container with {key}={prefix}… started within a minute"),
            }
        }
    }
}

/// Writes every dirty page to disk (`sync`), so a sample does not pay for the
/// write-back of the one before it.
pub async fn flush_disk() {
    let synced = tokio::process::Command::new("sync").status().await;
    if !synced.is_ok_and(|s| s.success()) {
        fail!("sync failed");
    }
}

/// Waits (up to 30 s) until no job's Docker object is left (a running
/// runner keeps its spare network).
pub async fn settle() {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !leftovers(false).await.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Jobs' Docker objects still present (containers, networks, volumes), and
/// with `spares` the networks runners made ahead of jobs, which name no job
/// (only a stopped runner must have removed those).
pub async fn leftovers(spares: bool) -> Vec<String> {
    let mut found = Vec::new();
    let spare = spares.then_some((&["network", "ls", "-q"][..], "gantry.runner"));
    for (kind, label) in [
        (&["ps", "-aq"][..], "gantry.job"),
        (&["network", "ls", "-q"][..], "gantry.job"),
        (&["volume", "ls", "-q"][..], "gantry.job"),
    ]
    .into_iter()
    .chain(spare)
    {
        let out = tokio::process::Command::new("docker")
            .args(kind)
            .args(["--filter", &format!("label={label}")])
            .output()
            .await;
        if let Ok(out) = out {
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !text.is_empty() {
                found.push(format!(
                    "docker {}: {}",
                    kind.join(" "),
                    text.replace('\n', " ")
                ));
            }
        }
    }
    found
}
