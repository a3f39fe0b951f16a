//! `provider: heroku` — dpl's heroku, with its default `api` strategy, from
//! the runner: the key's account and the app are checked, the build
//! directory is packed as `tar --exclude .git .` would, uploaded to the
//! source URL Heroku hands out, and built by Heroku's build API; the build's
//! output streams into the log and its end decides the deploy. Then `run`:
//! `restart` restarts the app's dynos, any other command runs in a one-off
//! dyno whose output comes back over Heroku's rendezvous (TLS) socket, and
//! whose exit status, read as `heroku run --exit-code` reads it, fails the
//! deploy when it is not 0. The key never enters the container.

use super::values::{expand, resolve, secret_or_env};
use super::Target;
use crate::logs::LogPipeline;
use gantry_pipeline::Heroku;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Heroku's API version, asked for in every request.
const ACCEPT: &str = "application/vnd.heroku+json; version=3";
/// How long one API request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the source upload may take.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// Heroku stops a build after 15 minutes; waiting longer is pointless.
const BUILD_LIMIT: Duration = Duration::from_secs(20 * 60);
/// How long a one-off dyno may run before the deploy gives up on it.
const RUN_LIMIT: Duration = Duration::from_secs(60 * 60);
/// How long reaching a dyno (TCP, TLS, the secret) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The line `heroku run --exit-code` appends, and reads back, for the status.
const EXIT_MARKER: &str = "\u{FFFF} heroku-command-exit-status:";

pub async fn deploy(heroku: &Heroku, t: &Target<'_>, p: &mut LogPipeline) -> Result<(), String> {
    let key = api_key(heroku, t.env, t.secrets)?;
    let app = app_name(heroku, t.env, &t.repo.full_name)?;
    let api = Api {
        client: super::upload_client(REQUEST_TIMEOUT)?,
        base: expand(&heroku.api_url, t.env)
            .trim_end_matches('/')
            .to_string(),
        key,
        app: app.clone(),
        cancel: t.cancel,
    };

    let account = api.call(reqwest::Method::GET, "/account", None).await?;
    p.say(&format!(
        "Authenticated with Heroku as {}",
        account["email"].as_str().unwrap_or("(no email)")
    ))
    .await;
    api.call(reqwest::Method::GET, &format!("/apps/{app}"), None)
        .await?;

    let archive = t.scratch.join("heroku-source.tgz");
    let (workspace, into) = (t.workspace.to_path_buf(), archive.clone());
    let (files, size) =
        tokio::task::spawn_blocking(move || super::tarball::pack(&workspace, &into))
            .await
            .map_err(|e| e.to_string())??;
    p.say(&format!(
        "Packed the build directory: {files} files, {size} bytes compressed"
    ))
    .await;

    let source = api.call(reqwest::Method::POST, "/sources", None).await?;
    let (Some(get_url), Some(put_url)) = (
        source["source_blob"]["get_url"].as_str(),
        source["source_blob"]["put_url"].as_str(),
    ) else {
        return Err("Heroku's /sources answer has no source_blob URLs".into());
    };
    upload(put_url, &archive, size, t.cancel).await?;

    let build = api
        .call(
            reqwest::Method::POST,
            &format!("/apps/{app}/builds"),
            Some(json!({ "source_blob": { "url": get_url, "version": t.build.commit } })),
        )
        .await?;
    let id = build["id"]
        .as_str()
        .ok_or("Heroku's build answer has no id")?
        .to_string();
    p.say(&format!("Heroku build {id} started")).await;
    let started = Instant::now();
    if let Some(url) = build["output_stream_url"].as_str() {
        follow_output(url, p, t.cancel).await;
    }
    loop {
        let status = api
            .call(
                reqwest::Method::GET,
                &format!("/apps/{app}/builds/{id}"),
                None,
            )
            .await?;
        match status["status"].as_str() {
            Some("succeeded") => break,
            Some("pending") if started.elapsed() < BUILD_LIMIT => {
                super::pause(started, t.cancel).await?
            }
            Some("pending") => {
                return Err(format!(
                    "Heroku build {id} was still pending after {} minutes",
                    BUILD_LIMIT.as_secs() / 60
                ))
            }
            other => {
                return Err(format!(
                    "Heroku build {id} {}: its output is above",
                    other.unwrap_or("ended without a status")
                ))
            }
        }
    }
    p.say(&format!(
        "Deployed {} to {app} on Heroku",
        t.build.commit.get(..7).unwrap_or(&t.build.commit)
    ))
    .await;

    for command in &heroku.run {
        let command = expand(command, t.env);
        if command.eq_ignore_ascii_case("restart") {
            api.call(reqwest::Method::DELETE, &format!("/apps/{app}/dynos"), None)
                .await?;
            p.say(&format!("Restarted the dynos of {app}")).await;
            continue;
        }
        p.say(&format!("Running `{command}` in a one-off dyno of {app}"))
            .await;
        let dyno = api
            .call(
                reqwest::Method::POST,
                &format!("/apps/{app}/dynos"),
                Some(json!({
                    "command": format!("{command}; echo \"{EXIT_MARKER} $?\""),
                    "attach": true,
                    "type": "run",
                })),
            )
            .await?;
        let url = dyno["attach_url"]
            .as_str()
            .ok_or("Heroku's dyno answer has no attach_url")?;
        match attach(url, p, t.cancel).await? {
            Some(0) => {}
            Some(code) => return Err(format!("`{command}` exited with {code} on Heroku")),
            None => {
                return Err(format!(
                    "`{command}` ended on Heroku without an exit status (the dyno was stopped, or the command ends in a `#` comment?)"
                ))
            }
        }
    }
    Ok(())
}

/// The key: `api_key`, else the `HEROKU_API_KEY` secret or variable.
fn api_key(
    heroku: &Heroku,
    env: &std::collections::BTreeMap<String, String>,
    secrets: &[gantry_protocol::SecretVar],
) -> Result<String, String> {
    heroku
        .api_key
        .as_ref()
        .and_then(|v| resolve(v, env, secrets))
        .or_else(|| secret_or_env("HEROKU_API_KEY", env, secrets))
        .ok_or_else(|| "no Heroku API key: set `api_key` (a `secure:` value is read from the repository secret API_KEY) or the secret HEROKU_API_KEY".to_string())
}

/// The app deployed to: `app` as the job's environment expands it, else
/// (dpl's default) the repository's name. The deploy and its lock
/// (`deploy::target`) both name it this way.
pub fn app_name(
    heroku: &Heroku,
    env: &std::collections::BTreeMap<String, String>,
    repo: &str,
) -> Result<String, String> {
    let app = heroku
        .app
        .as_deref()
        .map(|a| expand(a, env))
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| repo.rsplit('/').next().unwrap_or(repo).to_string());
    // It goes into the API's paths.
    let name_like = app.starts_with(|c: char| c.is_ascii_alphanumeric())
        && app
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if name_like {
        Ok(app)
    } else {
        Err(format!("`app` must be a Heroku app's name, found `{app}`"))
    }
}

/// Heroku's Platform API with the key, for one app.
struct Api<'a> {
    client: reqwest::Client,
    base: String,
    key: String,
    app: String,
    cancel: &'a tokio_util::sync::CancellationToken,
}

impl Api<'_> {
    /// One request; `Err` carries Heroku's message and what to check.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header(reqwest::header::ACCEPT, ACCEPT);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = super::send_unless_canceled(request, &self.base, self.cancel).await?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        if (200..300).contains(&status) {
            return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
        }
        // Heroku's errors: `{"id": "not_found", "message": "…", "url": "…"}`.
        let error: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let message = error["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| text.lines().next().unwrap_or("").to_string())
            .replace(&self.key, "[key]");
        let message: String = message.chars().take(300).collect();
        let hint = match status {
            401 => "; check the API key (`api_key`, or the secret HEROKU_API_KEY)".to_string(),
            404 if path == format!("/apps/{}", self.app) => format!(
                "; is the app named {}? set `app:` (default: the repository's name)",
                self.app
            ),
            403 => format!("; the key's account may not deploy to {}", self.app),
            _ => String::new(),
        };
        let see = error["url"]
            .as_str()
            .map(|u| format!(" (see {u})"))
            .unwrap_or_default();
        Err(format!(
            "Heroku refused {method} {path} ({status}: {message}){see}{hint}"
        ))
    }
}

/// PUTs the archive to the signed URL Heroku gave, streamed from the file,
/// with its length and no content type (the URL is signed without one).
async fn upload(
    put_url: &str,
    archive: &Path,
    size: u64,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<(), String> {
    let file = tokio::fs::File::open(archive)
        .await
        .map_err(|e| format!("cannot read the archive: {e}"))?;
    let client = super::upload_client(UPLOAD_TIMEOUT)?;
    let request = client
        .put(put_url)
        .header(reqwest::header::CONTENT_LENGTH, size)
        .body(reqwest::Body::from(file));
    let response = super::send_unless_canceled(request, "Heroku's source store", cancel).await?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    let said: String = text.chars().take(300).collect();
    Err(format!(
        "Heroku's source store refused the upload ({}: {said})",
        status.as_u16()
    ))
}

/// Copies the build's output into the log as it comes; the stream ends
/// with the build. An interrupted stream is said, not a failure: the
/// build's status decides.
async fn follow_output(
    url: &str,
    p: &mut LogPipeline,
    cancel: &tokio_util::sync::CancellationToken,
) {
    // The client's deadline covers the whole stream: the build's limit.
    let Ok(client) = super::upload_client(BUILD_LIMIT) else {
        return;
    };
    let request = client.get(url).header(reqwest::header::ACCEPT, ACCEPT);
    let Ok(mut response) =
        super::send_unless_canceled(request, "Heroku's build output", cancel).await
    else {
        p.say("(the build's output could not be read; waiting for its end)")
            .await;
        return;
    };
    let mut lines = Lines::default();
    loop {
        let chunk = tokio::select! {
            chunk = response.chunk() => chunk,
            _ = cancel.cancelled() => return,
        };
        match chunk {
            Ok(Some(bytes)) => p.say_lines(lines.feed(&bytes)).await,
            Ok(None) => break,
            Err(_) => {
                p.say("(the build's output stream ended early; waiting for its end)")
                    .await;
                break;
            }
        }
    }
    if let Some(line) = lines.rest() {
        p.say(&line).await;
    }
}

/// Output split into whole lines (carriage returns dropped).
#[derive(Default)]
struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        self.partial.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..end]);
            lines.push(text.trim_end_matches('\r').to_string());
        }
        lines
    }

    fn rest(&mut self) -> Option<String> {
        (!self.partial.is_empty()).then(|| {
            let text = String::from_utf8_lossy(&self.partial).into_owned();
            self.partial.clear();
            text
        })
    }
}

/// Attaches to a one-off dyno over Heroku's rendezvous protocol (TLS to
/// `rendezvous://HOST:PORT/SECRET`, the secret as the first line, then the
/// dyno's output until it ends); its lines go to the log, and the exit
/// status the command appended is returned.
async fn attach(
    url: &str,
    p: &mut LogPipeline,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<Option<i64>, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("a bad attach_url ({e})"))?;
    let host = parsed
        .host_str()
        .ok_or("the attach_url names no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = parsed.port().unwrap_or(5000);
    let secret = parsed.path().trim_start_matches('/').to_string();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    // rustls over a blocking socket, as the HTTPS clones do: off the runtime.
    let reader = tokio::task::spawn_blocking(move || {
        rendezvous(&host, port, &secret, &stopped, |bytes| {
            tx.blocking_send(bytes.to_vec()).is_ok()
        })
    });
    let mut lines = Lines::default();
    let mut status = None;
    // The server's greeting, before the dyno's output.
    let mut greeting = true;
    let deadline = tokio::time::sleep(RUN_LIMIT);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            bytes = rx.recv() => match bytes {
                Some(bytes) => {
                    let mut shown = Vec::new();
                    for line in lines.feed(&bytes) {
                        if std::mem::take(&mut greeting) && line.trim() == "rendezvous" {
                            continue;
                        }
                        shown.extend(show(line, &mut status));
                    }
                    p.say_lines(shown).await;
                }
                None => break,
            },
            _ = cancel.cancelled() => {
                stop.store(true, Ordering::Relaxed);
                return Err("the deploy was canceled while a one-off dyno ran".into());
            }
            _ = &mut deadline => {
                stop.store(true, Ordering::Relaxed);
                return Err(format!("the one-off dyno ran longer than {} minutes", RUN_LIMIT.as_secs() / 60));
            }
        }
    }
    if let Some(line) = lines.rest().and_then(|l| show(l, &mut status)) {
        p.say(&line).await;
    }
    reader.await.map_err(|e| e.to_string())??;
    Ok(status)
}

/// `line` as the log shows it: without the exit status the command
/// appended (read into `status`), which follows the output's last line
/// on that line when the output did not end with a line break.
fn show(line: String, status: &mut Option<i64>) -> Option<String> {
    let Some(at) = line.find(EXIT_MARKER) else {
        return Some(line);
    };
    *status = line[at + EXIT_MARKER.len()..].trim().parse().ok();
    let before = line[..at].trim_end_matches('\r');
    (!before.is_empty()).then(|| before.to_string())
}

/// The blocking side of [`attach`]: connects, sends the secret and hands
/// every read to `out` (which says whether to go on) until the dyno
/// closes the connection or `stop`.
fn rendezvous(
    host: &str,
    port: u16,
    secret: &str,
    stop: &AtomicBool,
    mut out: impl FnMut(&[u8]) -> bool,
) -> Result<(), String> {
    let mut config = (*crate::git_tls::client_config()?).clone();
    config.alpn_protocols.clear();
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("a bad rendezvous host {host}: {e}"))?;
    let connection = rustls::ClientConnection::new(Arc::new(config), name)
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    let unreachable =
        |e: &dyn std::fmt::Display| format!("cannot reach the dyno at {host}:{port}: {e}");
    let address = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .map_err(|e| unreachable(&e))?
        .next()
        .ok_or_else(|| unreachable(&"no address"))?;
    let tcp = std::net::TcpStream::connect_timeout(&address, CONNECT_TIMEOUT)
        .map_err(|e| unreachable(&e))?;
    // The handshake and the secret get the connect's patience; then reads
    // are short, so `stop` is seen within a second.
    tcp.set_read_timeout(Some(CONNECT_TIMEOUT))
        .and_then(|_| tcp.set_write_timeout(Some(CONNECT_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    tls.write_all(format!("{secret}\r\n").as_bytes())
        .and_then(|_| tls.flush())
        .map_err(|e| format!("cannot attach to the dyno: {e}"))?;
    tls.sock
        .set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    let mut buffer = vec![0u8; 16 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let n = match tls.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            // The dyno's end closes the socket without TLS's goodbye at times.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(format!("the dyno's connection failed: {e}")),
        };
        if !out(&buffer[..n]) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_is_the_option_or_the_repositorys_name_and_a_name_only() {
        let env: std::collections::BTreeMap<String, String> =
            [("STAGE".to_string(), "staging".to_string())].into();
        let mut heroku = Heroku {
            api_key: None,
            app: None,
            run: Vec::new(),
            api_url: gantry_pipeline::HEROKU_API_URL.into(),
        };
        assert_eq!(
            app_name(&heroku, &env, "acme/widget-api").unwrap(),
            "widget-api"
        );
        heroku.app = Some("widget-$STAGE".into());
        assert_eq!(
            app_name(&heroku, &env, "acme/widget-api").unwrap(),
            "widget-staging"
        );
        heroku.app = Some("../account".into());
        let error = app_name(&heroku, &env, "acme/widget-api").unwrap_err();
        assert_eq!(
            error,
            "`app` must be a Heroku app's name, found `../account`"
        );
    }

    #[test]
    fn the_key_is_the_option_else_heroku_api_key_else_a_clear_error() {
        let heroku = Heroku {
            api_key: Some(gantry_pipeline::Value::Secure {
                secret: "api_key".into(),
            }),
            app: None,
            run: Vec::new(),
            api_url: gantry_pipeline::HEROKU_API_URL.into(),
        };
        let secret = |name: &str, value: &str| gantry_protocol::SecretVar {
            name: name.into(),
            value: value.into(),
        };
        let env = std::collections::BTreeMap::new();
        let both = [
            secret("API_KEY", "from-option"),
            secret("HEROKU_API_KEY", "fallback"),
        ];
        assert_eq!(api_key(&heroku, &env, &both).unwrap(), "from-option");
        assert_eq!(api_key(&heroku, &env, &both[1..]).unwrap(), "fallback");
        let error = api_key(&heroku, &env, &[]).unwrap_err();
        assert!(
            error.starts_with("no Heroku API key: set `api_key`"),
            "{error}"
        );
    }

    #[test]
    fn the_exit_status_is_read_and_kept_out_of_the_log() {
        let mut status = None;
        assert_eq!(
            show("migrated".into(), &mut status).as_deref(),
            Some("migrated")
        );
        assert_eq!(status, None);
        let marker = format!("{EXIT_MARKER} 0");
        assert_eq!(show(marker, &mut status), None);
        assert_eq!(status, Some(0));
        // Output without a final line break shares the marker's line.
        let unfinished = format!("no newline{EXIT_MARKER} 3");
        assert_eq!(show(unfinished, &mut status).as_deref(), Some("no newline"));
        assert_eq!(status, Some(3));
    }

    #[test]
    fn lines_come_whole_across_chunks() {
        let mut lines = Lines::default();
        assert!(lines.feed(b"-----> Node").is_empty());
        assert_eq!(
            lines.feed(b".js app detected\r\nnext\n"),
            ["-----> Node.js app detected", "next"]
        );
        assert_eq!(lines.feed(b"tail"), Vec::<String>::new());
        assert_eq!(lines.rest().as_deref(), Some("tail"));
    }
}
