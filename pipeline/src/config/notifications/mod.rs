//! `notifications:` — who hears of a build's result. Gantry sends Travis's
//! webhook notifications (a signed POST of the build as JSON) and its email
//! (to the commit's author and committer unless `recipients` says otherwise);
//! and its Slack and IRC messages (see `slack`, `irc`); the other notifiers
//! (Campfire, HipChat, …) are named in a warning and not sent.

pub mod irc;
pub mod slack;
pub mod template;

use crate::decode::{Cond, Decoder};
use crate::diagnostic::Span;
use crate::yaml::{Node, NodeKind};
use serde::{Deserialize, Serialize};

/// When an outcome is announced (Travis's `on_success: always|never|change`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    Always,
    Never,
    /// Only when the result differs from the branch's previous build.
    Change,
}

/// When each outcome of a build is announced: Travis's `on_*` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcomes {
    pub on_success: When,
    pub on_failure: When,
    pub on_start: When,
    pub on_cancel: When,
    pub on_error: When,
}

impl Outcomes {
    /// Travis's defaults for webhooks and Slack.
    const TRAVIS: Outcomes = Outcomes {
        on_success: When::Always,
        on_failure: When::Always,
        on_start: When::Never,
        on_cancel: When::Always,
        on_error: When::Always,
    };
    /// Travis's email defaults: a success only when it changes the result.
    const EMAIL: Outcomes = Outcomes {
        on_success: When::Change,
        ..Outcomes::TRAVIS
    };

    /// The flag a key names.
    fn slot(&mut self, key: &str) -> Option<&mut When> {
        match key {
            "on_success" => Some(&mut self.on_success),
            "on_failure" => Some(&mut self.on_failure),
            "on_start" => Some(&mut self.on_start),
            "on_cancel" => Some(&mut self.on_cancel),
            "on_error" => Some(&mut self.on_error),
            _ => None,
        }
    }

    /// Reads `key` if it is a flag; false for any other key.
    fn read(&mut self, d: &mut Decoder, key: &str, value: &Node) -> bool {
        if self.slot(key).is_none() {
            return false;
        }
        if let (Some(when), Some(slot)) = (when(d, key, value), self.slot(key)) {
            *slot = when;
        }
        true
    }
}

/// Where a webhook goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookUrl {
    /// The URL as written; `$NAME` and `${NAME}` expand from the repository's
    /// secrets when it is sent, so a token in it stays out of the file.
    Plain(String),
    /// A Travis `secure:` URL: the repository secret `secret` holds it.
    Secure { secret: String },
}

impl WebhookUrl {
    /// The URL as a user may see it: secrets by name, never by value.
    pub fn shown(&self) -> String {
        match self {
            WebhookUrl::Plain(url) => url.clone(),
            WebhookUrl::Secure { secret } => format!("${secret}"),
        }
    }
}

/// One webhook target and when it is told (defaults as Travis's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub url: WebhookUrl,
    #[serde(flatten)]
    pub when: Outcomes,
}

/// A webhook with the `if:` that decides, per build, whether it is sent.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub hook: Webhook,
    pub condition: Option<Cond>,
}

/// Who an email goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recipient {
    Address(String),
    /// A Travis `secure:` address: the repository secret `secret` holds it.
    Secure {
        secret: String,
    },
}

impl Recipient {
    /// The address as a user may see it: secrets by name, never by value.
    pub fn shown(&self) -> String {
        match self {
            Recipient::Address(address) => address.clone(),
            Recipient::Secure { secret } => format!("${secret}"),
        }
    }
}

/// Email notifications and when they are sent (defaults as Travis's:
/// a success only when it changes the branch's result).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email {
    /// Empty: the commit's author and committer, as on Travis.
    pub recipients: Vec<Recipient>,
    #[serde(flatten)]
    pub when: Outcomes,
}

/// The email notifications with the `if:` that decides, per build, whether
/// they are sent.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub email: Email,
    pub condition: Option<Cond>,
}

#[derive(Debug, Clone)]
pub struct Notifications {
    pub webhooks: Vec<WebhookConfig>,
    /// `None` after `email: false`; Travis emails by default.
    pub email: Option<EmailConfig>,
    pub slack: Vec<slack::SlackConfig>,
    pub irc: Vec<irc::IrcConfig>,
    /// Where `notifications:` is written, to point at it.
    pub span: Option<Span>,
}

impl Default for Notifications {
    fn default() -> Self {
        Notifications {
            webhooks: Vec::new(),
            email: Some(EmailConfig {
                email: Email {
                    recipients: Vec::new(),
                    when: Outcomes::EMAIL,
                },
                condition: None,
            }),
            slack: Vec::new(),
            irc: Vec::new(),
            span: None,
        }
    }
}

/// The repository secret that holds the `n`th (from 1) `secure:` value of
/// a notifier: `BASE`, then `BASE_2`, … (Travis's own key cannot be read,
/// so its encrypted values name secrets set in Gantry).
pub fn secure_secret(base: &str, n: usize) -> String {
    if n <= 1 {
        base.to_string()
    } else {
        format!("{base}_{n}")
    }
}

/// An entry of a notifier's list of targets.
enum Target {
    /// `secure: …`: the `n`th of the notifier's.
    Secure(usize),
    Text(crate::decode::Spanned<String>),
}

/// `node`'s targets (one or a list), each plain text or a `secure:` value;
/// `secure` counts the latter across the notifier's lists.
fn targets(d: &mut Decoder, node: &Node, key: &str, secure: &mut usize) -> Vec<Target> {
    let items: Vec<&Node> = match node.as_seq() {
        Some(items) => items.iter().collect(),
        None => vec![node],
    };
    let mut out = Vec::new();
    for item in items {
        if let Some(value) = item.get("secure") {
            if d.string(value, "secure").is_some() {
                *secure += 1;
                out.push(Target::Secure(*secure));
            }
        } else if let Some(text) = d.string(item, key) {
            out.push(Target::Text(text));
        }
    }
    out
}

/// Notifiers Travis knows and Gantry does not send.
const OTHER_NOTIFIERS: &[&str] = &[
    "campfire", "flowdock", "hipchat", "pushover", "opsgenie", "zulip",
];
const FLAGS: &[&str] = &[
    "on_success",
    "on_failure",
    "on_start",
    "on_cancel",
    "on_error",
];

/// The flags written at the top of `notifications:`, over each notifier's
/// own defaults.
#[derive(Clone, Copy, Default)]
struct Written([Option<When>; 5]);

impl Written {
    fn read(&mut self, d: &mut Decoder, key: &str, value: &Node) {
        if let Some(i) = FLAGS.iter().position(|f| *f == key) {
            self.0[i] = when(d, key, value);
        }
    }

    /// A notifier's defaults with the top-level flags over them.
    fn over(self, mut base: Outcomes) -> Outcomes {
        for (key, written) in FLAGS.iter().zip(self.0) {
            if let (Some(when), Some(slot)) = (written, base.slot(key)) {
                *slot = when;
            }
        }
        base
    }
}

fn when(d: &mut Decoder, key: &str, node: &Node) -> Option<When> {
    let scalar = node.as_scalar();
    if let Some(b) = scalar.and_then(|s| s.as_bool()) {
        return Some(if b { When::Always } else { When::Never });
    }
    match scalar.map(|s| s.text.as_str()) {
        Some("always") => Some(When::Always),
        Some("never") => Some(When::Never),
        Some("change") => Some(When::Change),
        _ => {
            d.diags
                .error(
                    node.span,
                    format!(
                        "`{key}` must be always, never or change, found {}",
                        match scalar {
                            Some(s) => format!("`{}`", s.text),
                            None => node.describe().to_string(),
                        }
                    ),
                )
                .hint("change: only when the result differs from the previous build");
            None
        }
    }
}

/// Reads `notifications:`.
pub fn decode(d: &mut Decoder, node: &Node) -> Notifications {
    let entries = d.entries(node, "notifications");
    // The top-level flags are every notifier's defaults, wherever they are written.
    let mut written = Written::default();
    for (key, value, _) in &entries {
        written.read(d, key, value);
    }
    let mut out = Notifications {
        webhooks: Vec::new(),
        email: Some(EmailConfig {
            email: Email {
                recipients: Vec::new(),
                when: written.over(Outcomes::EMAIL),
            },
            condition: None,
        }),
        slack: Vec::new(),
        irc: Vec::new(),
        span: Some(node.span),
    };
    let defaults = written.over(Outcomes::TRAVIS);
    let mut secure = 0;
    for (key, value, span) in entries {
        match key {
            "webhooks" => webhooks(d, value, defaults, &mut secure, &mut out.webhooks),
            "email" => out.email = email(d, value, written.over(Outcomes::EMAIL)),
            "slack" => slack::decode(d, value, defaults, &mut out.slack),
            "irc" => irc::decode(d, value, defaults, &mut out.irc),
            _ if FLAGS.contains(&key) => {}
            _ if OTHER_NOTIFIERS.contains(&key) => {
                d.diags
                    .warning(
                        span,
                        format!(
                            "`notifications.{key}` is not sent: Gantry sends webhook, email, Slack and IRC notifications only"
                        ),
                    )
                    .hint("most chat services take a webhook: list its URL under `notifications.webhooks`");
            }
            _ => {
                let mut known: Vec<&str> = vec!["webhooks", "email", "slack", "irc"];
                known.extend(FLAGS);
                known.extend(OTHER_NOTIFIERS);
                d.unknown_key(key, span, &known, "notifications");
            }
        }
    }
    out
}

/// `webhooks:` — a URL, a list of URLs or of maps, or a map with `urls`.
fn webhooks(
    d: &mut Decoder,
    node: &Node,
    defaults: Outcomes,
    secure: &mut usize,
    out: &mut Vec<WebhookConfig>,
) {
    match &node.kind {
        NodeKind::Scalar(s) if s.as_bool() == Some(false) || s.is_null() => {}
        NodeKind::Seq(items) => {
            for item in items {
                if item.get("secure").is_some() || item.as_scalar().is_some() {
                    webhooks(d, item, defaults, secure, out);
                } else if item.as_map().is_some() {
                    webhook_map(d, item, defaults, secure, out);
                } else {
                    d.type_error(item, "webhooks", "a URL or a map with `urls`");
                }
            }
        }
        NodeKind::Map(_) if node.get("secure").is_none() => {
            webhook_map(d, node, defaults, secure, out)
        }
        // One URL, or `secure:` with one.
        _ => {
            if let Some(url) = url(d, node, secure) {
                out.push(WebhookConfig {
                    hook: Webhook {
                        url,
                        when: defaults,
                    },
                    condition: None,
                });
            }
        }
    }
}

/// `{urls: …, on_success: …, if: …}`: the flags and condition apply to each URL.
fn webhook_map(
    d: &mut Decoder,
    node: &Node,
    defaults: Outcomes,
    secure: &mut usize,
    out: &mut Vec<WebhookConfig>,
) {
    let entries = d.entries(node, "webhooks");
    let mut flags = defaults;
    let mut condition = None;
    let mut urls = Vec::new();
    let mut has_urls = false;
    for (key, value, span) in entries {
        if flags.read(d, key, value) {
            continue;
        }
        match key {
            "urls" | "url" => {
                has_urls = true;
                let items: Vec<&Node> = match value.as_seq() {
                    Some(items) => items.iter().collect(),
                    None => vec![value],
                };
                for item in items {
                    if let Some(u) = url(d, item, secure) {
                        urls.push(u);
                    }
                }
            }
            "if" => condition = d.condition(value, "if"),
            _ => {
                let mut known = vec!["urls", "if"];
                known.extend(FLAGS);
                d.unknown_key(key, span, &known, "webhooks");
            }
        }
    }
    if !has_urls {
        d.diags
            .error(node.span, "`webhooks` has no `urls`")
            .hint("urls: [https://example.com/hook]");
    }
    out.extend(urls.into_iter().map(|url| WebhookConfig {
        hook: Webhook { url, when: flags },
        condition: condition.clone(),
    }));
}

/// `email:` — `false`, `true`, an address, a list of them, or a map with
/// `recipients`, the `on_*` flags, `enabled` and `if`.
fn email(d: &mut Decoder, node: &Node, defaults: Outcomes) -> Option<EmailConfig> {
    let mut flags = defaults;
    let mut condition = None;
    let mut recipients = Vec::new();
    let mut secure = 0;
    match &node.kind {
        NodeKind::Scalar(s) if s.is_null() || s.as_bool() == Some(true) => {}
        NodeKind::Scalar(s) if s.as_bool() == Some(false) => return None,
        NodeKind::Map(_) if node.get("secure").is_none() => {
            for (key, value, span) in d.entries(node, "email") {
                if flags.read(d, key, value) {
                    continue;
                }
                match key {
                    "recipients" => addresses(d, value, &mut secure, &mut recipients),
                    "enabled" => {
                        if d.bool(value, "enabled") == Some(false) {
                            return None;
                        }
                    }
                    "if" => condition = d.condition(value, "if"),
                    _ => {
                        let mut known = vec!["recipients", "enabled", "if"];
                        known.extend(FLAGS);
                        d.unknown_key(key, span, &known, "email");
                    }
                }
            }
        }
        _ => addresses(d, node, &mut secure, &mut recipients),
    }
    Some(EmailConfig {
        email: Email {
            recipients,
            when: flags,
        },
        condition,
    })
}

/// An address, a `secure:` one, or a list of them.
fn addresses(d: &mut Decoder, node: &Node, secure: &mut usize, out: &mut Vec<Recipient>) {
    for target in targets(d, node, "recipients", secure) {
        let text = match target {
            Target::Secure(n) => {
                out.push(Recipient::Secure {
                    secret: secure_secret("EMAIL_RECIPIENT", n),
                });
                continue;
            }
            Target::Text(text) => text,
        };
        let address = text.value.trim();
        if is_address(address) {
            out.push(Recipient::Address(address.to_string()));
        } else {
            d.diags
                .error(text.span, format!("`{address}` is not an email address"))
                .hint("write one address per entry: recipients: [dev@example.com]");
        }
    }
}

/// `local@domain`, with nothing in it that would end a mail header or list
/// several addresses: what a mail server can be handed as one recipient.
pub fn is_address(text: &str) -> bool {
    let Some((local, domain)) = text.rsplit_once('@') else {
        return false;
    };
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_graphic() && !"<>(),;:\\\"[]@".contains(c))
    };
    plain(local) && plain(domain) && !domain.starts_with('.') && !domain.ends_with('.')
}

fn url(d: &mut Decoder, node: &Node, secure: &mut usize) -> Option<WebhookUrl> {
    if let Some(value) = node.get("secure") {
        d.string(value, "secure")?;
        *secure += 1;
        return Some(WebhookUrl::Secure {
            secret: secure_secret("WEBHOOK_URL", *secure),
        });
    }
    let text = d.string(node, "urls")?;
    let url = text.value.trim();
    if url.starts_with("http://") || url.starts_with("https://") || url.starts_with('$') {
        Some(WebhookUrl::Plain(url.to_string()))
    } else {
        d.diags
            .error(
                text.span,
                format!("a webhook URL must start with http:// or https://, found `{url}`"),
            )
            .hint("or `$NAME`, a repository secret that holds the URL");
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::{Diagnostics, Severity};

    fn read(source: &str) -> (Notifications, Vec<crate::diagnostic::Diagnostic>) {
        let node = crate::yaml::load(source).unwrap().unwrap();
        let mut diags = Diagnostics::new();
        let mut d = Decoder::new(&mut diags);
        let n = decode(&mut d, node.get("notifications").unwrap());
        (n, diags.into_sorted())
    }

    fn hooks(source: &str) -> Vec<Webhook> {
        let (n, diags) = read(source);
        assert!(diags.is_empty(), "{diags:?}");
        n.webhooks.into_iter().map(|w| w.hook).collect()
    }

    fn plain(url: &str) -> WebhookUrl {
        WebhookUrl::Plain(url.into())
    }

    #[test]
    fn a_url_a_list_and_a_map_all_name_webhooks_with_travis_defaults() {
        let one = hooks("notifications:\n  webhooks: https://a.example/hook\n");
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].url, plain("https://a.example/hook"));
        assert_eq!(
            (
                one[0].when.on_success,
                one[0].when.on_failure,
                one[0].when.on_start,
                one[0].when.on_cancel,
                one[0].when.on_error
            ),
            (
                When::Always,
                When::Always,
                When::Never,
                When::Always,
                When::Always
            )
        );
        let list =
            hooks("notifications:\n  webhooks:\n    - https://a.example\n    - http://b.example\n");
        assert_eq!(
            list.iter().map(|h| h.url.clone()).collect::<Vec<_>>(),
            vec![plain("https://a.example"), plain("http://b.example")]
        );
        let map = hooks(
            "notifications:\n  webhooks:\n    urls: https://a.example\n    on_success: change\n    on_start: true\n    on_cancel: never\n",
        );
        assert_eq!(map[0].when.on_success, When::Change);
        assert_eq!(map[0].when.on_start, When::Always);
        assert_eq!(map[0].when.on_cancel, When::Never);
        assert_eq!(map[0].when.on_failure, When::Always);
    }

    #[test]
    fn top_level_flags_are_every_webhooks_defaults_and_a_webhooks_own_win() {
        let h = hooks(
            "notifications:\n  webhooks:\n    - urls: [https://a.example]\n      on_failure: always\n    - https://b.example\n  on_success: never\n  on_failure: never\n",
        );
        assert_eq!(
            (h[0].when.on_success, h[0].when.on_failure),
            (When::Never, When::Always)
        );
        assert_eq!(
            (h[1].when.on_success, h[1].when.on_failure),
            (When::Never, When::Never)
        );
    }

    #[test]
    fn secure_urls_come_from_numbered_repository_secrets() {
        let h = hooks(
            "notifications:\n  webhooks:\n    urls:\n      - secure: abc\n      - $TEAM_HOOK\n      - secure: def\n",
        );
        assert_eq!(
            h.iter().map(|h| h.url.clone()).collect::<Vec<_>>(),
            vec![
                WebhookUrl::Secure {
                    secret: "WEBHOOK_URL".into()
                },
                plain("$TEAM_HOOK"),
                WebhookUrl::Secure {
                    secret: "WEBHOOK_URL_2".into()
                },
            ]
        );
        assert_eq!(h[0].url.shown(), "$WEBHOOK_URL");
    }

    #[test]
    fn a_wrong_value_points_at_its_line_and_other_notifiers_warn() {
        let (n, diags) = read(
            "notifications:\n  email: false\n  hipchat:\n    rooms: [x]\n  webhooks:\n    urls: ftp://a.example\n    on_success: sometimes\n  emial: true\n",
        );
        assert!(n.webhooks.is_empty());
        let lines: Vec<(usize, Severity)> = diags.iter().map(|d| (d.line, d.severity)).collect();
        assert_eq!(
            lines,
            vec![
                (3, Severity::Warning),
                (6, Severity::Error),
                (7, Severity::Error),
                (8, Severity::Warning)
            ],
            "{diags:?}"
        );
        assert!(
            diags[0].message.contains("notifications.hipchat"),
            "{diags:?}"
        );
        assert!(diags[2].message.contains("`sometimes`"), "{diags:?}");
        assert_eq!(diags[3].hint.as_deref(), Some("did you mean `email`?"));
    }

    #[test]
    fn a_webhooks_map_without_urls_is_an_error() {
        let (_, diags) = read("notifications:\n  webhooks:\n    on_success: always\n");
        assert_eq!(diags.len(), 1);
        assert!(diags[0].message.contains("no `urls`"));
    }

    fn email_of(source: &str) -> Option<Email> {
        let (n, diags) = read(source);
        assert!(diags.is_empty(), "{diags:?}");
        n.email.map(|e| e.email)
    }

    fn address(a: &str) -> Recipient {
        Recipient::Address(a.into())
    }

    #[test]
    fn email_goes_to_the_committers_by_default_with_travis_flags() {
        let default = Notifications::default().email.map(|e| e.email);
        let written = email_of("notifications:\n  webhooks: https://a.example\n");
        assert_eq!(default, written);
        let email = written.expect("email is on unless turned off");
        assert!(email.recipients.is_empty(), "empty means the committers");
        assert_eq!(
            email.when,
            Outcomes {
                on_success: When::Change,
                on_failure: When::Always,
                on_start: When::Never,
                on_cancel: When::Always,
                on_error: When::Always,
            }
        );
        assert_eq!(email_of("notifications:\n  email: false\n"), None);
        assert_eq!(
            email_of("notifications:\n  email:\n    enabled: false\n    recipients: a@b.c\n"),
            None
        );
        assert!(email_of("notifications:\n  email: true\n").is_some());
    }

    #[test]
    fn recipients_come_as_an_address_a_list_or_a_map() {
        let one = email_of("notifications:\n  email: dev@example.com\n").unwrap();
        assert_eq!(one.recipients, vec![address("dev@example.com")]);
        let list = email_of("notifications:\n  email:\n    - a@example.com\n    - b@example.org\n")
            .unwrap();
        assert_eq!(
            list.recipients,
            vec![address("a@example.com"), address("b@example.org")]
        );
        // As in opengovsg/FormSG's and BurntSushi/ripgrep's files.
        let map = email_of(
            "notifications:\n  email:\n    recipients:\n      - formsg@data.gov.sg\n      - secure: abc\n    on_success: always\n    on_failure: never\n",
        )
        .unwrap();
        assert_eq!(
            map.recipients,
            vec![
                address("formsg@data.gov.sg"),
                Recipient::Secure {
                    secret: "EMAIL_RECIPIENT".into()
                }
            ]
        );
        assert_eq!(
            (map.when.on_success, map.when.on_failure),
            (When::Always, When::Never)
        );
        let flags_only = email_of("notifications:\n  email:\n    on_success: never\n").unwrap();
        assert!(flags_only.recipients.is_empty());
        assert_eq!(flags_only.when.on_success, When::Never);
    }

    #[test]
    fn top_level_flags_reach_email_over_its_own_defaults() {
        // etcd's file: no notifier named, both flags never.
        let email = email_of("notifications:\n  on_success: never\n  on_failure: never\n").unwrap();
        assert_eq!(
            (email.when.on_success, email.when.on_failure),
            (When::Never, When::Never)
        );
        // A flag not written keeps email's own default (change), not the webhooks' (always).
        let email = email_of("notifications:\n  on_failure: change\n").unwrap();
        assert_eq!(
            (email.when.on_success, email.when.on_failure),
            (When::Change, When::Change)
        );
    }

    #[test]
    fn a_bad_address_points_at_its_line() {
        let (n, diags) = read(
            "notifications:\n  email:\n    recipients:\n      - ok@example.com\n      - \"a@b.c, evil@x.y\"\n      - nobody\n    on_sucess: never\n",
        );
        let lines: Vec<(usize, Severity)> = diags.iter().map(|d| (d.line, d.severity)).collect();
        assert_eq!(
            lines,
            vec![
                (5, Severity::Error),
                (6, Severity::Error),
                (7, Severity::Warning)
            ],
            "{diags:?}"
        );
        assert!(diags[1]
            .message
            .contains("`nobody` is not an email address"));
        assert_eq!(diags[2].hint.as_deref(), Some("did you mean `on_success`?"));
        assert_eq!(
            n.email.unwrap().email.recipients,
            vec![address("ok@example.com")]
        );
        assert!(is_address("first.last+ci@sub.example.co.uk"));
        assert!(!is_address("a@b\r\nBcc: x@y.z"));
        assert!(!is_address("@example.com"));
    }
}
