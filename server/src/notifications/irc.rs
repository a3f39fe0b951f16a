//! IRC messages, as Travis's IRC notifier sends them: connect (TLS for
//! `ircs://`), sign in (PASS, NICK, USER; NickServ's IDENTIFY), join the
//! channel unless `skip_join`, say each line (PRIVMSG, or NOTICE), part and
//! quit. Unlike Travis, the server's answers are read to the end, so a
//! channel that refuses a PRIVMSG shows as a failed notification (a NOTICE
//! gets no answer, by IRC's rules, so its refusal cannot be seen).

use super::send::Outcome;
use super::template::fill;
use gantry_pipeline::config::notifications::irc::DEFAULT_TEMPLATE;
use gantry_pipeline::IrcAddress;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long a whole conversation may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server has to close after the QUIT, its refusals first.
const CLOSE_WAIT: Duration = Duration::from_secs(10);
/// Most bytes of text in one line: IRC's 512 less the command, the
/// channel and what the server adds when it relays it.
const MOST_TEXT: usize = 400;

/// What the bot says, where, and as whom.
pub struct Message<'a> {
    pub address: &'a IrcAddress,
    pub nick: &'a str,
    pub password: Option<&'a str>,
    pub nickserv_password: Option<&'a str>,
    /// The key to join with: the channel's own, else `channel_key`.
    pub key: Option<&'a str>,
    pub lines: Vec<String>,
    pub notice: bool,
    pub join: bool,
}

/// The lines of a build's message: the template (Travis's by default)
/// filled in, each made safe to send as one IRC line.
pub fn lines(build: &Value, template: &[String]) -> Vec<String> {
    let template: Vec<&str> = if template.is_empty() {
        DEFAULT_TEMPLATE.to_vec()
    } else {
        template.iter().map(String::as_str).collect()
    };
    template
        .into_iter()
        .map(|line| one_line(&fill(line, build)))
        .collect()
}

/// `text` as one line of at most [`MOST_TEXT`] bytes: a line break in a
/// commit message must not end the command and start another.
fn one_line(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > MOST_TEXT {
        let mut end = MOST_TEXT;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

/// Sends `message`; what became of it.
pub async fn send(message: &Message<'_>) -> Outcome {
    let address = message.address;
    let connected = tokio::time::timeout(
        TIMEOUT,
        TcpStream::connect((address.host.as_str(), address.port)),
    )
    .await;
    let tcp = match connected {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            return Outcome::Retry(None, format!("cannot connect to {}: {e}", server(address)))
        }
        Err(_) => {
            return Outcome::Retry(
                None,
                format!(
                    "no answer from {} within {} s",
                    server(address),
                    TIMEOUT.as_secs()
                ),
            )
        }
    };
    let talk = async {
        if address.tls {
            let tls = match tls(address, tcp).await {
                Ok(tls) => tls,
                Err(e) => return Outcome::Retry(None, e),
            };
            converse(tls, message).await
        } else {
            converse(tcp, message).await
        }
    };
    match tokio::time::timeout(TIMEOUT, talk).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Retry(
            None,
            format!(
                "{} did not finish the conversation within {} s",
                server(address),
                TIMEOUT.as_secs()
            ),
        ),
    }
}

fn server(address: &IrcAddress) -> String {
    format!("the IRC server {}:{}", address.host, address.port)
}

async fn tls(
    address: &IrcAddress,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let roots = roots().await;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(address.host.clone())
        .map_err(|e| format!("`{}` cannot be checked by TLS: {e}", address.host))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {} failed: {e}", server(address)))
}

/// The system's roots (or `SSL_CERT_FILE`'s), read from disk once and off
/// the runtime.
async fn roots() -> &'static rustls::RootCertStore {
    static ROOTS: tokio::sync::OnceCell<rustls::RootCertStore> = tokio::sync::OnceCell::const_new();
    ROOTS
        .get_or_init(|| async {
            let found = tokio::task::spawn_blocking(rustls_native_certs::load_native_certs)
                .await
                .map(|found| found.certs)
                .unwrap_or_default();
            let mut roots = rustls::RootCertStore::empty();
            roots.add_parsable_certificates(found);
            roots
        })
        .await
}

/// One line the server sent: its command (or numeric) and parameters.
struct Line {
    /// Who sent it: a nick (before `!`) or a server; empty when not said.
    from: String,
    command: String,
    params: Vec<String>,
}

impl Line {
    fn parse(raw: &str) -> Line {
        let mut rest = raw.trim_end_matches(['\r', '\n']);
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
        let command = words.next().unwrap_or_default().to_ascii_uppercase();
        let mut params: Vec<String> = words.map(str::to_string).collect();
        params.extend(trailing.map(str::to_string));
        Line {
            from: from.to_string(),
            command,
            params,
        }
    }

    /// The server's words for a numeric: its last parameter.
    fn text(&self) -> &str {
        self.params.last().map_or("", String::as_str)
    }
}

async fn converse<S: AsyncRead + AsyncWrite + Unpin>(stream: S, message: &Message<'_>) -> Outcome {
    let mut irc = BufReader::new(stream);
    match talk(&mut irc, message).await {
        Ok(outcome) => outcome,
        Err(e) => Outcome::Retry(None, format!("the IRC connection failed: {e}")),
    }
}

async fn talk<S: AsyncRead + AsyncWrite + Unpin>(
    irc: &mut BufReader<S>,
    message: &Message<'_>,
) -> std::io::Result<Outcome> {
    let channel = &message.address.channel;
    let mut nick = message.nick.to_string();
    let mut out = String::new();
    if let Some(password) = message.password {
        out.push_str(&format!("PASS {password}\r\n"));
    }
    out.push_str(&format!("NICK {nick}\r\nUSER {nick} 0 * :Gantry CI\r\n"));
    irc.write_all(out.as_bytes()).await?;

    // Signed in once the server welcomes us (001).
    loop {
        let Some(line) = read(irc).await? else {
            return Ok(Outcome::Retry(
                None,
                "the IRC server closed the connection before welcoming the bot".into(),
            ));
        };
        match line.command.as_str() {
            "PING" => pong(irc, &line).await?,
            "001" => break,
            // The nick is taken: try it with a `_` more, as clients do.
            "433" if nick.len() < message.nick.len() + 3 => {
                nick.push('_');
                irc.write_all(format!("NICK {nick}\r\n").as_bytes()).await?;
            }
            "432" | "433" | "464" | "465" => {
                return Ok(Outcome::Refused(
                    None,
                    format!("the IRC server refused the bot: {}", line.text()),
                ))
            }
            "ERROR" => {
                return Ok(Outcome::Retry(
                    None,
                    format!("the IRC server closed the connection: {}", line.text()),
                ))
            }
            _ => {}
        }
    }
    if let Some(password) = message.nickserv_password {
        irc.write_all(format!("PRIVMSG NickServ :IDENTIFY {password}\r\n").as_bytes())
            .await?;
    }
    if message.join {
        let join = match message.key {
            Some(key) => format!("JOIN {channel} {key}\r\n"),
            None => format!("JOIN {channel}\r\n"),
        };
        irc.write_all(join.as_bytes()).await?;
        loop {
            let Some(line) = read(irc).await? else {
                return Ok(Outcome::Retry(
                    None,
                    format!("the IRC server closed the connection before the bot joined {channel}"),
                ));
            };
            match line.command.as_str() {
                "PING" => pong(irc, &line).await?,
                "JOIN" if line.from.eq_ignore_ascii_case(&nick) => break,
                // No such channel, too many, full, invite only, banned, wrong key, needs a registered nick.
                "403" | "405" | "471" | "473" | "474" | "475" | "477" => {
                    return Ok(Outcome::Refused(
                        None,
                        format!("cannot join {channel}: {}", line.text()),
                    ))
                }
                _ => {}
            }
        }
    }
    let command = if message.notice { "NOTICE" } else { "PRIVMSG" };
    let mut out = String::new();
    for line in &message.lines {
        out.push_str(&format!("{command} {channel} :{line}\r\n"));
    }
    if message.join {
        out.push_str(&format!("PART {channel}\r\n"));
    }
    out.push_str("QUIT :Gantry\r\n");
    irc.write_all(out.as_bytes()).await?;
    // The lines are out: from here on nothing is worth sending again (the
    // channel would hear them twice). The server answers in order, so a
    // refusal of a line comes before it closes the connection for the QUIT;
    // a server slow to close, or a broken connection, counts as sent.
    let refusal = tokio::time::timeout(CLOSE_WAIT, refusal(irc, message)).await;
    Ok(match refusal {
        Ok(Ok(Some(refused))) => refused,
        Ok(Ok(None)) | Ok(Err(_)) | Err(_) => Outcome::Sent(None),
    })
}

/// A refusal of the lines, read up to the server's close.
async fn refusal<S: AsyncRead + AsyncWrite + Unpin>(
    irc: &mut BufReader<S>,
    message: &Message<'_>,
) -> std::io::Result<Option<Outcome>> {
    let channel = &message.address.channel;
    while let Some(line) = read(irc).await? {
        match line.command.as_str() {
            "PING" => pong(irc, &line).await?,
            // Cannot send to the channel, no such nick or channel.
            "404" | "401" | "403" => {
                let hint = if message.join {
                    ""
                } else {
                    " (with skip_join, the channel must take messages from outside it: mode -n)"
                };
                return Ok(Some(Outcome::Refused(
                    None,
                    format!("{channel} did not take the message: {}{hint}", line.text()),
                )));
            }
            _ => {}
        }
    }
    Ok(None)
}

/// The next line from the server; `None` once it has closed the connection.
async fn read<S: AsyncRead + AsyncWrite + Unpin>(
    irc: &mut BufReader<S>,
) -> std::io::Result<Option<Line>> {
    let mut raw = Vec::new();
    let n = irc.read_until(b'\n', &mut raw).await?;
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(Line::parse(&String::from_utf8_lossy(&raw))))
}

async fn pong<S: AsyncRead + AsyncWrite + Unpin>(
    irc: &mut BufReader<S>,
    ping: &Line,
) -> std::io::Result<()> {
    irc.write_all(format!("PONG :{}\r\n", ping.text()).as_bytes())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_default_lines_are_travis_s_and_a_commit_message_stays_one_line() {
        let build = json!({
            "id": 7, "number": "12", "state": "passed", "status_message": "Fixed",
            "branch": "main", "commit": "1a2b3c4d5e6f", "message": "Fix\r\nQUIT :injected",
            "author_name": "octocat", "compare_url": "https://github.com/acme/app/commit/1a2b3c4d5e6f",
            "build_url": "https://ci.example/acme/app/builds/7",
            "repository": {"owner_name": "acme", "name": "app", "url": "https://github.com/acme/app"},
        });
        assert_eq!(
            lines(&build, &[]),
            [
                "acme/app#12 (main - 1a2b3c4 : octocat): The build was fixed.",
                "Change view : https://github.com/acme/app/commit/1a2b3c4d5e6f",
                "Build details : https://ci.example/acme/app/builds/7",
            ]
        );
        assert_eq!(
            lines(&build, &["%{commit_message}".into()]),
            ["Fix  QUIT :injected"]
        );
        let long = lines(
            &json!({"message": "é".repeat(300)}),
            &["%{commit_message}".into()],
        );
        assert!(long[0].len() <= MOST_TEXT && long[0].starts_with('é'));
    }

    #[test]
    fn server_lines_are_read_with_or_without_a_prefix() {
        let line = Line::parse(":irc.example 433 * gantry-ci :Nickname already in use\r\n");
        assert_eq!(line.command, "433");
        assert_eq!(line.text(), "Nickname already in use");
        let ping = Line::parse("PING :irc.example\r\n");
        assert_eq!(
            (ping.command.as_str(), ping.text()),
            ("PING", "irc.example")
        );
        let join = Line::parse(":gantry-ci!~g@127.0.0.1 JOIN :#ci\r\n");
        assert_eq!(
            (join.from.as_str(), &join.params[..]),
            ("gantry-ci", &["#ci".to_string()][..])
        );
    }
}
