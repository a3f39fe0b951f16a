//! A mail server for one test: aiosmtpd (PyPI), the real SMTP protocol on
//! 127.0.0.1, keeping what it accepts so a test can read each mail.
//! `scripts/install-test-deps.sh` installs it beside moto.

use crate::process::{free_port, Spawned};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// A mail the server accepted: its envelope, its text (headers and body),
/// who logged in to send it, and whether it came over TLS.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
    pub login: Option<String>,
    pub tls: bool,
}

impl Mail {
    /// A header's value (the first of that name), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        let head = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    }

    /// The body, after the headers.
    pub fn body(&self) -> String {
        self.data
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.replace("\r\n", "\n"))
            .unwrap_or_default()
    }
}

/// How the server behaves.
#[derive(Default, Clone)]
pub struct Options {
    /// Require this `USER:PASSWORD` login.
    pub login: Option<String>,
    /// Require STARTTLS, with a certificate for 127.0.0.1 (`crate::tls::Authority`).
    pub starttls: Option<(String, String)>,
    /// Answer 550 to this recipient.
    pub refuse: Option<String>,
    /// Answer 451 to the first this many mails.
    pub busy: u32,
    /// Listen on this port (one a test held free for a server down at first).
    pub port: Option<u16>,
}

pub struct MailServer {
    process: Spawned,
    mails: PathBuf,
}

/// Where the test dependencies script installs aiosmtpd's Python.
fn python() -> String {
    std::env::var("GANTRY_TEST_PYTHON").unwrap_or_else(|_| crate::aws::moto::venv_tool("python"))
}

impl MailServer {
    pub fn start() -> MailServer {
        Self::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> MailServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = options.port.unwrap_or_else(free_port);
        let mails = dir.path().join("mails.jsonl");
        let script = dir.path().join("smtp_server.py");
        std::fs::write(&script, include_str!("smtp_server.py")).expect("script");
        let mut command = Command::new(python());
        command.arg(&script).arg(port.to_string()).arg(&mails);
        if let Some(login) = &options.login {
            command.args(["--login", login]);
        }
        if let Some((cert, key)) = &options.starttls {
            let cert_file = dir.path().join("cert.pem");
            let key_file = dir.path().join("key.pem");
            std::fs::write(&cert_file, cert).expect("cert");
            std::fs::write(&key_file, key).expect("key");
            command.arg("--starttls").arg(&cert_file).arg(&key_file);
        }
        if let Some(address) = &options.refuse {
            command.args(["--refuse", address]);
        }
        if options.busy > 0 {
            command.args(["--busy", &options.busy.to_string()]);
        }
        MailServer {
            process: Spawned::start("the aiosmtpd mail server", command, port, dir),
            mails,
        }
    }

    pub fn port(&self) -> u16 {
        self.process.port
    }

    /// `smtp://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port())
    }

    /// The mails accepted so far, oldest first.
    pub fn mails(&self) -> Vec<Mail> {
        std::fs::read_to_string(&self.mails)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("a kept mail"))
            .collect()
    }

    /// Waits (up to 30 s) until `n` mails were accepted; returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Mail> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mails = self.mails();
            if mails.len() >= n {
                return mails;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} mails arrived within 30 s: {mails:#?}",
                mails.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
