//! A helper program (moto, a registry) started for one test and killed with it.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process listening on 127.0.0.1:`port`.
pub struct Spawned {
    child: Child,
    pub port: u16,
    /// Where its output goes, shown when it fails to start.
    pub log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// A port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

impl Spawned {
    /// Starts `command` (which must listen on `port`) and waits until it accepts connections.
    pub fn start(what: &str, mut command: Command, port: u16, dir: tempfile::TempDir) -> Spawned {
        let log = dir.path().join("output.log");
        let file = std::fs::File::create(&log).expect("log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {what} ({command:?}): {e}; run scripts/install-test-deps.sh")
            });
        let mut spawned = Spawned {
            child,
            port,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = spawned.child.try_wait() {
                panic!(
                    "{what} exited with {status}: {}",
                    std::fs::read_to_string(&spawned.log).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                panic!("{what} did not listen on port {port} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        spawned
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `gantry server` from `command` (the `gantry` binary with its
/// environment set), on a random 127.0.0.1 port unless `GANTRY_LISTEN` is
/// set; returns the process and the URL it printed on its first line. Its
/// later output is drained.
pub fn start_gantry_server(mut command: Command) -> (Child, String) {
    use std::io::{BufRead, BufReader};
    // A random port unless the caller chose one.
    if !command.get_envs().any(|(k, _)| k == "GANTRY_LISTEN") {
        command.env("GANTRY_LISTEN", "127.0.0.1:0");
    }
    command.arg("server").stdout(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start gantry server ({command:?}): {e}"));
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let url = first
        .strip_prefix("gantry server listening on ")
        .unwrap_or_else(|| panic!("gantry server did not say where it listens: {first:?}"))
        .to_string();
    std::thread::spawn(move || for _ in lines {});
    (child, url)
}

/// Stops a process as an operator would: SIGTERM, so a runner finishes and
/// removes its jobs' containers; SIGKILL if it has not gone after `patience`.
pub fn stop(child: &mut Child, patience: Duration) {
    // Gone already (a test's kill -9 and wait): its PID may be another
    // process's by now, so no signal goes to it.
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The processes `pid` started, such as a runner's job process (Linux lists
/// them per thread).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    threads
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}
