//! An IRC server for one test: ngIRCd (Debian's `ngircd`), the real
//! protocol on 127.0.0.1, and a [`Watcher`] that sits in a channel as its
//! operator and keeps what it hears. `scripts/install-test-deps.sh`
//! installs ngIRCd.

use crate::process::{free_port, Spawned};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;

/// How the server is set up.
#[derive(Default, Clone)]
pub struct Options {
    /// The password every client must give (PASS).
    pub password: Option<String>,
    /// Also listen with TLS, with this certificate and key (PEM; for
    /// 127.0.0.1, from `crate::tls::Authority`).
    pub tls: Option<(String, String)>,
}

pub struct IrcServer {
    process: Spawned,
    tls_port: Option<u16>,
    password: Option<String>,
}

impl IrcServer {
    pub fn start() -> IrcServer {
        Self::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> IrcServer {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        // Started as root, ngIRCd runs as `nobody`: it reads from here.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let port = free_port();
        let mut config = format!(
            "[Global]\nName = irc.gantry.test\nInfo = Gantry tests\nAdminInfo1 = Gantry\nAdminInfo2 = tests\nAdminEMail = tests@gantry.test\nListen = 127.0.0.1\nPorts = {port}\nMotdPhrase = \"Gantry tests\"\n"
        );
        if let Some(password) = &options.password {
            config.push_str(&format!("Password = {password}\n"));
        }
        config.push_str("[Limits]\nPingTimeout = 120\nMaxNickLength = 30\n[Options]\nPAM = no\nIdent = no\nDNS = no\n");
        let mut tls_port = None;
        if let Some((cert, key)) = &options.tls {
            let tls = free_port();
            let cert_file = dir.path().join("cert.pem");
            let key_file = dir.path().join("key.pem");
            std::fs::write(&cert_file, cert).expect("cert");
            std::fs::write(&key_file, key).expect("key");
            config.push_str(&format!(
                "[SSL]\nCertFile = {}\nKeyFile = {}\nPorts = {tls}\n",
                cert_file.display(),
                key_file.display()
            ));
            tls_port = Some(tls);
        }
        let conf = dir.path().join("ngircd.conf");
        std::fs::write(&conf, config).expect("config");
        let mut command = Command::new(ngircd());
        command.arg("--nodaemon").arg("--config").arg(&conf);
        IrcServer {
            process: Spawned::start("ngIRCd", command, port, dir),
            tls_port,
            password: options.password,
        }
    }

    pub fn port(&self) -> u16 {
        self.process.port
    }

    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// Joins `channel` as `watcher` (its first member, so its operator)
    /// and keeps every line the others send there.
    pub async fn watch(&self, channel: &str) -> Watcher {
        let tcp = TcpStream::connect(("127.0.0.1", self.port()))
            .await
            .expect("connect to ngIRCd");
        let (read, mut write) = tcp.into_split();
        let mut hello = String::new();
        if let Some(password) = &self.password {
            hello.push_str(&format!("PASS {password}\r\n"));
        }
        hello.push_str(&format!(
            "NICK watcher\r\nUSER watcher 0 * :watcher\r\nJOIN {channel}\r\n"
        ));
        write.write_all(hello.as_bytes()).await.expect("sign in");
        let heard = Arc::new(Mutex::new(Vec::new()));
        let kept = heard.clone();
        let (pong_tx, mut pong_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(token) = line.strip_prefix("PING ") {
                    let _ = pong_tx.send(format!("PONG {token}\r\n"));
                    continue;
                }
                kept.lock().unwrap().push(Heard::parse(&line));
            }
        });
        let watcher = Watcher {
            channel: channel.to_string(),
            write: Arc::new(tokio::sync::Mutex::new(write)),
            heard,
        };
        let writer = watcher.write.clone();
        tokio::spawn(async move {
            while let Some(pong) = pong_rx.recv().await {
                let _ = writer.lock().await.write_all(pong.as_bytes()).await;
            }
        });
        watcher
            .wait("the watcher to join", |h| {
                h.from == "watcher" && h.command == "JOIN"
            })
            .await;
        watcher
    }
}

fn ngircd() -> String {
    std::env::var("GANTRY_TEST_NGIRCD").unwrap_or_else(|_| "/usr/sbin/ngircd".into())
}

/// One line the watcher heard: who sent it (a nick, or the server), the
/// command, and its parameters (the text last).
#[derive(Debug, Clone)]
pub struct Heard {
    pub from: String,
    pub command: String,
    pub params: Vec<String>,
}

impl Heard {
    fn parse(line: &str) -> Heard {
        let mut rest = line.trim_end();
        let mut from = "";
        if let Some(prefixed) = rest.strip_prefix(':') {
            (from, rest) = prefixed.split_once(' ').unwrap_or((prefixed, ""));
            from = from.split('!').next().unwrap_or_default();
        }
        let (head, trailing) = match rest.split_once(" :") {
            Some((head, trailing)) => (head, Some(trailing)),
            None => (rest, None),
        };
        let mut words = head.split(' ').filter(|w| !w.is_empty());
        let command = words.next().unwrap_or_default().to_string();
        let mut params: Vec<String> = words.map(str::to_string).collect();
        params.extend(trailing.map(str::to_string));
        Heard {
            from: from.to_string(),
            command,
            params,
        }
    }

    /// The text of a PRIVMSG or NOTICE.
    pub fn text(&self) -> &str {
        self.params.last().map_or("", String::as_str)
    }
}

/// A client in a channel, its operator.
pub struct Watcher {
    channel: String,
    write: Arc<tokio::sync::Mutex<OwnedWriteHalf>>,
    heard: Arc<Mutex<Vec<Heard>>>,
}

impl Watcher {
    /// Everything heard so far.
    pub fn heard(&self) -> Vec<Heard> {
        self.heard.lock().unwrap().clone()
    }

    /// What `nick` did in the channel: its JOIN, PART, PRIVMSG and NOTICE lines.
    pub fn from(&self, nick: &str) -> Vec<Heard> {
        self.heard()
            .into_iter()
            .filter(|h| h.from == nick)
            .collect()
    }

    /// Waits (up to 30 s) for a line that `matches`.
    pub async fn wait(&self, what: &str, matches: impl Fn(&Heard) -> bool) -> Heard {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(found) = self.heard().into_iter().find(|h| matches(h)) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not heard within 30 s; heard {:#?}",
                self.heard()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sets the channel's `mode` (`+n`, `+k KEY`) and waits until it holds.
    pub async fn mode(&self, mode: &str) {
        let line = format!("MODE {} {mode}\r\n", self.channel);
        self.write
            .lock()
            .await
            .write_all(line.as_bytes())
            .await
            .expect("MODE");
        let flag = mode.split(' ').next().unwrap_or_default().to_string();
        self.wait(&format!("mode {mode}"), |h| {
            h.command == "MODE" && h.params.get(1).is_some_and(|m| *m == flag)
        })
        .await;
    }
}
