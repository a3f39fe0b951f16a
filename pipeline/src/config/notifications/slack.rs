//! `notifications.slack` — Travis's Slack notifications: a room is
//! `ACCOUNT:TOKEN#channel` (Travis's Slack app, posted to
//! `https://ACCOUNT.slack.com/services/hooks/travis?token=TOKEN`) or, for
//! Slack's incoming webhooks, the webhook's URL; each gets a message made
//! from a template of `%{…}` variables.

use super::{secure_secret, targets, Node, NodeKind, Outcomes, Target, FLAGS};
use crate::decode::{Cond, Decoder};
use serde::{Deserialize, Serialize};

/// Travis's template for a build's Slack message.
pub const DEFAULT_TEMPLATE: &str = "Build <%{build_url}|#%{build_number}> (<%{compare_url}|%{commit}>) of %{repository_slug}@%{branch} by %{author} %{result} in %{duration}";

/// Where a Slack message goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlackRoom {
    /// `ACCOUNT:TOKEN#channel`, or an incoming webhook's URL, as written.
    Plain(String),
    /// A Travis `secure:` room: the repository secret `secret` holds it.
    Secure { secret: String },
}

impl SlackRoom {
    /// The room as a user may see it: never its token or secret.
    pub fn shown(&self) -> String {
        match self {
            SlackRoom::Secure { secret } => format!("${secret}"),
            SlackRoom::Plain(room) => match room.split_once("://") {
                // An incoming webhook's URL is its secret: its host only.
                Some((scheme, rest)) => {
                    let host = rest.split('/').next().unwrap_or_default();
                    format!("{scheme}://{host}/…")
                }
                None => match room.split_once(':') {
                    Some((account, rest)) => {
                        let channel = rest.split_once('#').map(|(_, c)| c);
                        match channel {
                            Some(channel) => format!("{account}#{channel}"),
                            None => account.to_string(),
                        }
                    }
                    None => room.clone(),
                },
            },
        }
    }
}

/// Where to post a room's message: Travis's Slack app's hook, or an
/// incoming webhook's URL; and the channel, when the room names one.
pub fn room_url(room: &str) -> Result<(String, Option<String>), String> {
    let room = room.trim();
    if room.starts_with("https://") || room.starts_with("http://") {
        return Ok((room.to_string(), None));
    }
    let (account, rest) = room.split_once(':').ok_or_else(|| {
        "a Slack room is ACCOUNT:TOKEN#channel or an incoming webhook's https:// URL".to_string()
    })?;
    let (token, channel) = match rest.split_once('#') {
        Some((token, channel)) => (token, Some(format!("#{channel}"))),
        None => (rest, None),
    };
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if !valid(account) || !valid(token) {
        return Err(
            "a Slack room is ACCOUNT:TOKEN#channel, with the account and token of Travis's Slack app"
                .into(),
        );
    }
    Ok((
        format!("https://{account}.slack.com/services/hooks/travis?token={token}"),
        channel,
    ))
}

/// One Slack room, its message and when it is sent (defaults as Travis's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slack {
    pub room: SlackRoom,
    /// Lines of the message; empty: [`DEFAULT_TEMPLATE`].
    pub template: Vec<String>,
    #[serde(flatten)]
    pub when: Outcomes,
    /// Whether pull request builds are announced (Travis: yes).
    pub on_pull_requests: bool,
}

/// A room with the `if:` that decides, per build, whether it is told.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    pub slack: Slack,
    pub condition: Option<Cond>,
}

/// `slack:` — a room, a `secure:` room, a list of them, or a map with
/// `rooms`, `template`, `on_pull_requests`, the `on_*` flags and `if`.
pub(super) fn decode(d: &mut Decoder, node: &Node, defaults: Outcomes, out: &mut Vec<SlackConfig>) {
    let mut secure = 0;
    let mut flags = defaults;
    let mut template = Vec::new();
    let mut on_pull_requests = true;
    let mut condition = None;
    let mut rooms = Vec::new();
    match &node.kind {
        NodeKind::Scalar(s) if s.is_null() || s.as_bool() == Some(false) => return,
        // `{secure: …, on_success: …}` is a room and its settings in one.
        NodeKind::Map(_) => {
            let mut has_rooms = false;
            for (key, value, span) in d.entries(node, "slack") {
                if flags.read(d, key, value) {
                    continue;
                }
                match key {
                    "rooms" => {
                        has_rooms = true;
                        room_list(d, value, &mut secure, &mut rooms);
                    }
                    "secure" => {
                        has_rooms = true;
                        room_list(d, node, &mut secure, &mut rooms);
                    }
                    "template" => {
                        if let Some(lines) = super::template::decode(d, value) {
                            template = lines;
                        }
                    }
                    "on_pull_requests" => {
                        on_pull_requests = d.bool(value, "on_pull_requests").unwrap_or(true)
                    }
                    "if" => condition = d.condition(value, "if"),
                    _ => {
                        let mut known =
                            vec!["rooms", "secure", "template", "on_pull_requests", "if"];
                        known.extend(FLAGS);
                        d.unknown_key(key, span, &known, "slack");
                    }
                }
            }
            if !has_rooms {
                d.diags.error(node.span, "`slack` has no `rooms`").hint(
                    "rooms: [\"ACCOUNT:TOKEN#channel\"], or `secure:` with the room encrypted",
                );
            }
        }
        _ => room_list(d, node, &mut secure, &mut rooms),
    }
    out.extend(rooms.into_iter().map(|room| SlackConfig {
        slack: Slack {
            room,
            template: template.clone(),
            when: flags,
            on_pull_requests,
        },
        condition: condition.clone(),
    }));
}

fn room_list(d: &mut Decoder, node: &Node, secure: &mut usize, out: &mut Vec<SlackRoom>) {
    for target in targets(d, node, "rooms", secure) {
        let text = match target {
            Target::Secure(n) => {
                out.push(SlackRoom::Secure {
                    secret: secure_secret("SLACK_ROOM", n),
                });
                continue;
            }
            Target::Text(text) => text,
        };
        let room = text.value.trim();
        match room_url(room) {
            Ok(_) => out.push(SlackRoom::Plain(room.to_string())),
            Err(e) => {
                d.diags
                    .error(text.span, format!("`{}` is not a Slack room: {e}", shown(room)))
                    .hint("or `secure:` with the room encrypted, read from the repository secret SLACK_ROOM");
            }
        }
    }
}

/// A room for an error message: no more than its account.
fn shown(room: &str) -> String {
    SlackRoom::Plain(room.to_string()).shown()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::notifications::When;
    use crate::diagnostic::{Diagnostics, Severity};

    fn read(source: &str) -> (Vec<Slack>, Vec<crate::diagnostic::Diagnostic>) {
        let node = crate::yaml::load(source).unwrap().unwrap();
        let mut diags = Diagnostics::new();
        let mut d = Decoder::new(&mut diags);
        let n = super::super::decode(&mut d, node.get("notifications").unwrap());
        (
            n.slack.into_iter().map(|s| s.slack).collect(),
            diags.into_sorted(),
        )
    }

    #[test]
    fn a_room_a_secure_room_and_a_map_of_rooms_as_travis_writes_them() {
        let (one, diags) = read("notifications:\n  slack: acme:xoxp1234#builds\n");
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(one[0].room, SlackRoom::Plain("acme:xoxp1234#builds".into()));
        assert_eq!(
            (one[0].when.on_success, one[0].when.on_failure),
            (When::Always, When::Always)
        );
        assert!(one[0].on_pull_requests);
        assert_eq!(one[0].room.shown(), "acme#builds", "never the token");
        // As in heartcombo/devise's file.
        let (devise, diags) = read(
            "notifications:\n  email: false\n  slack:\n    on_pull_requests: false\n    on_success: change\n    on_failure: always\n    secure: Q3M+kmude3Fj\n",
        );
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(
            devise[0].room,
            SlackRoom::Secure {
                secret: "SLACK_ROOM".into()
            }
        );
        assert!(!devise[0].on_pull_requests);
        assert_eq!(devise[0].when.on_success, When::Change);
        let (map, diags) = read(
            "notifications:\n  slack:\n    rooms:\n      - https://hooks.slack.com/services/T0/B0/secretpart\n      - secure: abc\n    template:\n      - \"%{repository_slug} %{result}\"\n    if: branch = main\n",
        );
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(map.len(), 2);
        assert_eq!(map[0].template, ["%{repository_slug} %{result}"]);
        assert_eq!(map[0].room.shown(), "https://hooks.slack.com/…");
    }

    #[test]
    fn travis_rooms_post_to_the_accounts_travis_hook() {
        assert_eq!(
            room_url("acme:xoxp1234#builds").unwrap(),
            (
                "https://acme.slack.com/services/hooks/travis?token=xoxp1234".into(),
                Some("#builds".into())
            )
        );
        assert_eq!(
            room_url("acme:xoxp1234").unwrap().1,
            None,
            "the app's own channel"
        );
        assert!(room_url("acme.evil.com/x:y#z").is_err());
        assert!(room_url("no-token").is_err());
    }

    #[test]
    fn a_wrong_room_or_template_variable_points_at_its_line() {
        let (rooms, diags) = read(
            "notifications:\n  slack:\n    rooms:\n      - not a room\n    template:\n      - \"%{repository_slug} %{reslut}\"\n",
        );
        assert!(rooms.is_empty());
        let lines: Vec<(usize, Severity)> = diags.iter().map(|d| (d.line, d.severity)).collect();
        assert_eq!(
            lines,
            [(4, Severity::Error), (6, Severity::Warning)],
            "{diags:?}"
        );
        assert_eq!(diags[1].hint.as_deref(), Some("did you mean `%{result}`?"));
        let (_, diags) = read("notifications:\n  slack:\n    on_success: never\n");
        assert!(diags[0].message.contains("no `rooms`"), "{diags:?}");
    }
}
