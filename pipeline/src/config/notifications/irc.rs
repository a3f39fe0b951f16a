//! `notifications.irc` — Travis's IRC notifications: each channel
//! (`host[:port]#channel`, `ircs://` for TLS) gets the lines of a template
//! from a bot that connects, joins (unless `skip_join`), says them and leaves.

use super::{secure_secret, targets, Node, NodeKind, Outcomes, Target, FLAGS};
use crate::decode::{Cond, Decoder};
use serde::{Deserialize, Serialize};

/// Travis's lines for a build's IRC message.
pub const DEFAULT_TEMPLATE: &[&str] = &[
    "%{repository_slug}#%{build_number} (%{branch} - %{commit} : %{author}): %{message}",
    "Change view : %{compare_url}",
    "Build details : %{build_url}",
];

/// The nick the bot takes when the file names none.
pub const DEFAULT_NICK: &str = "gantry-ci";

/// Where an IRC message goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IrcChannel {
    /// `host[:port]#channel[,key]`, as written.
    Plain(String),
    /// A Travis `secure:` channel: the repository secret `secret` holds it.
    Secure { secret: String },
}

impl IrcChannel {
    /// The channel as a user may see it: never its key, a secret by name.
    pub fn shown(&self) -> String {
        match self {
            IrcChannel::Secure { secret } => format!("${secret}"),
            IrcChannel::Plain(text) => match address(text) {
                Ok(a) => a.to_string(),
                Err(_) => text.split(',').next().unwrap_or_default().to_string(),
            },
        }
    }
}

/// A password or key: written in the file, or the name of a repository
/// secret that holds it (Travis's `secure:`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Credential {
    Plain(String),
    Secure { secret: String },
}

/// A channel's server and name, read from `host[:port]#channel[,key]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IrcAddress {
    pub host: String,
    pub port: u16,
    /// `ircs://`: TLS from the first byte.
    pub tls: bool,
    /// With its `#`.
    pub channel: String,
    /// The key after a comma, if the channel names one.
    pub key: Option<String>,
}

impl std::fmt::Display for IrcAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "ircs://" } else { "" };
        write!(f, "{scheme}{}:{}{}", self.host, self.port, self.channel)
    }
}

/// Whether `text` can go in an IRC command as one word: no space, comma
/// or control character that would end it or start another command.
pub fn is_word(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && c != ',')
}

/// Reads a channel as Travis does: `[irc://|ircs://]host[:port]#channel[,key]`,
/// port 6667 by default.
pub fn address(text: &str) -> Result<IrcAddress, String> {
    let text = text.trim();
    let (tls, rest) = match text.split_once("://") {
        Some(("irc", rest)) => (false, rest),
        Some(("ircs", rest)) => (true, rest),
        Some((scheme, _)) => return Err(format!("`{scheme}://` is not irc:// or ircs://")),
        None => (false, text),
    };
    let (server, channel) = rest
        .split_once('#')
        .ok_or("an IRC channel is written host[:port]#channel")?;
    let (host, port) = match server.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse::<u16>()
                .map_err(|_| format!("`{port}` is not a port"))?,
        ),
        None => (server, if tls { 6697 } else { 6667 }),
    };
    let valid_host = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c));
    if !valid_host {
        return Err(format!("`{host}` is not a host name"));
    }
    let (name, key) = match channel.split_once(',') {
        Some((name, key)) => (name, Some(key.to_string())),
        None => (channel, None),
    };
    let name = format!("#{}", name.trim_start_matches('#'));
    if !is_word(&name[1..]) {
        return Err(format!("`{name}` is not a channel name"));
    }
    if key.as_deref().is_some_and(|k| !is_word(k)) {
        return Err("a channel's key has no spaces or commas".into());
    }
    Ok(IrcAddress {
        host: host.to_string(),
        port,
        tls,
        channel: name,
        key,
    })
}

/// One channel, its message, and how the bot signs in (defaults as Travis's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Irc {
    pub channel: IrcChannel,
    /// Lines of the message; empty: [`DEFAULT_TEMPLATE`].
    pub template: Vec<String>,
    #[serde(flatten)]
    pub when: Outcomes,
    /// NOTICE instead of PRIVMSG.
    pub use_notice: bool,
    /// Say the lines without joining (the channel must allow it: mode -n).
    pub skip_join: bool,
    /// Empty: [`DEFAULT_NICK`].
    pub nick: Option<String>,
    /// The server's password (PASS).
    pub password: Option<Credential>,
    /// Sent to NickServ with IDENTIFY once connected.
    pub nickserv_password: Option<Credential>,
    /// The key of every channel that names none itself.
    pub channel_key: Option<Credential>,
}

/// A channel with the `if:` that decides, per build, whether it is told.
#[derive(Debug, Clone)]
pub struct IrcConfig {
    pub irc: Irc,
    pub condition: Option<Cond>,
}

/// `irc:` — a channel, a list of them, or a map with `channels`, `template`,
/// `use_notice`, `skip_join`, `nick`, the passwords, the `on_*` flags,
/// `enabled` and `if`.
pub(super) fn decode(d: &mut Decoder, node: &Node, defaults: Outcomes, out: &mut Vec<IrcConfig>) {
    let mut secure = 0;
    let mut settings = Irc {
        channel: IrcChannel::Plain(String::new()),
        template: Vec::new(),
        when: defaults,
        use_notice: false,
        skip_join: false,
        nick: None,
        password: None,
        nickserv_password: None,
        channel_key: None,
    };
    let mut condition = None;
    let mut channels = Vec::new();
    match &node.kind {
        NodeKind::Scalar(s) if s.is_null() || s.as_bool().is_some() => return,
        NodeKind::Map(_) if node.get("secure").is_none() => {
            let mut has_channels = false;
            for (key, value, span) in d.entries(node, "irc") {
                if settings.when.read(d, key, value) {
                    continue;
                }
                match key {
                    "channels" => {
                        has_channels = true;
                        channel_list(d, value, &mut secure, &mut channels);
                    }
                    "template" => {
                        if let Some(lines) = super::template::decode(d, value) {
                            settings.template = lines;
                        }
                    }
                    "use_notice" => settings.use_notice = d.bool(value, key).unwrap_or(false),
                    "skip_join" => settings.skip_join = d.bool(value, key).unwrap_or(false),
                    "nick" => {
                        if let Some(nick) = d.string(value, key) {
                            if is_word(&nick.value) && !nick.value.starts_with('#') {
                                settings.nick = Some(nick.value);
                            } else {
                                d.diags.error(
                                    nick.span,
                                    format!("`{}` is not an IRC nick", nick.value),
                                );
                            }
                        }
                    }
                    "password" => settings.password = credential(d, value, key, "IRC_PASSWORD"),
                    "nickserv_password" => {
                        settings.nickserv_password =
                            credential(d, value, key, "IRC_NICKSERV_PASSWORD")
                    }
                    "channel_key" => {
                        settings.channel_key = credential(d, value, key, "IRC_CHANNEL_KEY")
                    }
                    "enabled" => {
                        if d.bool(value, key) == Some(false) {
                            return;
                        }
                    }
                    "if" => condition = d.condition(value, "if"),
                    _ => {
                        let mut known = KEYS.to_vec();
                        known.extend(FLAGS);
                        d.unknown_key(key, span, &known, "irc");
                    }
                }
            }
            if !has_channels {
                d.diags
                    .error(node.span, "`irc` has no `channels`")
                    .hint("channels: [\"irc.libera.chat#my-project\"]");
            }
        }
        _ => channel_list(d, node, &mut secure, &mut channels),
    }
    out.extend(channels.into_iter().map(|channel| IrcConfig {
        irc: Irc {
            channel,
            ..settings.clone()
        },
        condition: condition.clone(),
    }));
}

const KEYS: &[&str] = &[
    "channels",
    "template",
    "use_notice",
    "skip_join",
    "nick",
    "password",
    "nickserv_password",
    "channel_key",
    "enabled",
    "if",
];

fn channel_list(d: &mut Decoder, node: &Node, secure: &mut usize, out: &mut Vec<IrcChannel>) {
    for target in targets(d, node, "channels", secure) {
        let text = match target {
            Target::Secure(n) => {
                out.push(IrcChannel::Secure {
                    secret: secure_secret("IRC_CHANNEL", n),
                });
                continue;
            }
            Target::Text(text) => text,
        };
        match address(&text.value) {
            Ok(_) => out.push(IrcChannel::Plain(text.value.trim().to_string())),
            Err(e) => {
                d.diags
                    .error(text.span, format!("`{}` is not an IRC channel: {e}", text.value.trim()))
                    .hint("write it as Travis does: irc.libera.chat#my-project, or ircs://irc.libera.chat:6697#my-project");
            }
        }
    }
}

/// A password written in the file, or `secure:` (the repository secret `base`).
fn credential(d: &mut Decoder, node: &Node, key: &str, base: &str) -> Option<Credential> {
    if let Some(value) = node.get("secure") {
        d.string(value, "secure")?;
        return Some(Credential::Secure {
            secret: base.to_string(),
        });
    }
    let text = d.string(node, key)?;
    if text.value.chars().any(|c| c.is_control()) || text.value.is_empty() {
        d.diags
            .error(text.span, format!("`{key}` must be one line of text"));
        return None;
    }
    Some(Credential::Plain(text.value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::notifications::When;
    use crate::diagnostic::{Diagnostics, Severity};

    fn read(source: &str) -> (Vec<Irc>, Vec<crate::diagnostic::Diagnostic>) {
        let node = crate::yaml::load(source).unwrap().unwrap();
        let mut diags = Diagnostics::new();
        let mut d = Decoder::new(&mut diags);
        let n = super::super::decode(&mut d, node.get("notifications").unwrap());
        (
            n.irc.into_iter().map(|i| i.irc).collect(),
            diags.into_sorted(),
        )
    }

    #[test]
    fn channels_are_read_as_travis_writes_them() {
        assert_eq!(
            address("chat.freenode.net#celery").unwrap(),
            IrcAddress {
                host: "chat.freenode.net".into(),
                port: 6667,
                tls: false,
                channel: "#celery".into(),
                key: None
            }
        );
        let tls = address("ircs://irc.libera.chat:7000#ci,s3cret").unwrap();
        assert_eq!((tls.port, tls.tls), (7000, true));
        assert_eq!(tls.key.as_deref(), Some("s3cret"));
        assert_eq!(address("ircs://irc.libera.chat#ci").unwrap().port, 6697);
        assert_eq!(
            IrcChannel::Plain("irc.example.org:6668#ci,s3cret".into()).shown(),
            "irc.example.org:6668#ci",
            "never the key"
        );
        for wrong in [
            "no-channel.example",
            "http://x#y",
            "host:99999#c",
            "host#a b",
            "ho st#c",
        ] {
            assert!(address(wrong).is_err(), "{wrong}");
        }
    }

    #[test]
    fn celery_and_pytest_files_read_with_travis_defaults() {
        // As in celery/celery's and pytest-dev/pytest's files.
        let (irc, diags) = read(
            "notifications:\n  irc:\n    channels:\n      - \"chat.freenode.net#pytest\"\n    on_success: change\n    on_failure: change\n    skip_join: true\n",
        );
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(irc.len(), 1);
        assert_eq!(
            irc[0].channel,
            IrcChannel::Plain("chat.freenode.net#pytest".into())
        );
        assert_eq!(
            (irc[0].when.on_success, irc[0].when.on_failure),
            (When::Change, When::Change)
        );
        assert!(irc[0].skip_join && !irc[0].use_notice);
        assert!(irc[0].template.is_empty() && irc[0].nick.is_none());

        let (irc, diags) = read("notifications:\n  irc: \"irc.example.org#a\"\n");
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(
            (irc[0].when.on_success, irc[0].when.on_failure),
            (When::Always, When::Always)
        );
    }

    #[test]
    fn secure_channels_and_passwords_name_repository_secrets() {
        let (irc, diags) = read(
            "notifications:\n  irc:\n    channels:\n      - secure: abc\n      - irc.example.org#open\n    password:\n      secure: def\n    nickserv_password: plain-pass\n    channel_key:\n      secure: ghi\n    nick: acme-ci\n    use_notice: true\n    template: \"%{repository} %{result}\"\n",
        );
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(irc.len(), 2);
        assert_eq!(irc[0].channel.shown(), "$IRC_CHANNEL");
        assert_eq!(
            irc[0].password,
            Some(Credential::Secure {
                secret: "IRC_PASSWORD".into()
            })
        );
        assert_eq!(
            irc[1].nickserv_password,
            Some(Credential::Plain("plain-pass".into()))
        );
        assert_eq!(
            irc[1].channel_key,
            Some(Credential::Secure {
                secret: "IRC_CHANNEL_KEY".into()
            })
        );
        assert_eq!(irc[1].nick.as_deref(), Some("acme-ci"));
        assert!(irc[1].use_notice);
        assert_eq!(irc[1].template, ["%{repository} %{result}"]);
    }

    #[test]
    fn a_wrong_channel_nick_or_variable_points_at_its_line() {
        let (irc, diags) = read(
            "notifications:\n  irc:\n    channels:\n      - not a channel\n    nick: \"two words\"\n    template:\n      - \"%{reslut}\"\n",
        );
        assert!(irc.is_empty());
        let lines: Vec<(usize, Severity)> = diags.iter().map(|d| (d.line, d.severity)).collect();
        assert_eq!(
            lines,
            [
                (4, Severity::Error),
                (5, Severity::Error),
                (7, Severity::Warning)
            ],
            "{diags:?}"
        );
        let (irc, _) =
            read("notifications:\n  irc:\n    channels: [\"a.example#b\"]\n    enabled: false\n");
        assert!(irc.is_empty());
        let (_, diags) = read("notifications:\n  irc:\n    on_success: never\n");
        assert!(diags[0].message.contains("no `channels`"), "{diags:?}");
    }
}
