//! IRC notifications (`notifications: irc:`) as a channel hears them:
//! ngIRCd, a real IRC server on 127.0.0.1, and a watcher in the channel
//! that keeps what the bot does there. On SQLite and PostgreSQL.

mod support;

use gantry_protocol::JobOutcome;
use gantry_testkit::db::Engine;
use gantry_testkit::irc::{IrcServer, Options};
use serde_json::{json, Value};
use support::*;

/// What `nick` did in the channel: each command and its text.
fn said(watcher: &gantry_testkit::irc::Watcher, nick: &str) -> Vec<(String, String)> {
    watcher
        .from(nick)
        .into_iter()
        .map(|h| (h.command.clone(), h.text().to_string()))
        .collect()
}

/// Travis's default lines, from a bot that joins, says them and leaves;
/// a channel whose server is down waits for it.
async fn a_channel_hears_travis_lines_from_a_bot_that_joins_and_leaves(engine: Engine) {
    let irc = IrcServer::start();
    let watcher = irc.watch("#gantry").await;
    let server = TestServer::start(engine).await;
    let down = gantry_testkit::process::free_port();
    let pipeline = format!(
        "script: ./test\nnotifications:\n  email: false\n  irc:\n    - \"127.0.0.1:{}#gantry\"\n    - \"127.0.0.1:{down}#nobody-home\"\n",
        irc.port()
    );
    let build = server.push_and_run(&pipeline, JobOutcome::Failed).await;
    watcher
        .wait("the bot to leave", |h| {
            h.from == "gantry-ci" && h.command == "PART"
        })
        .await;
    let sha = build["commit"].as_str().unwrap();
    let said = said(&watcher, "gantry-ci");
    assert_eq!(said.len(), 5, "{said:#?}");
    assert_eq!(said[0].0, "JOIN");
    assert_eq!(
        said[1],
        (
            "PRIVMSG".to_string(),
            format!(
                "{PUSH_REPO}#1 (master - {} : binkkatal): The build failed.",
                &sha[..7]
            )
        )
    );
    assert!(said[2].1.starts_with("Change view : ") && said[2].1.ends_with(sha));
    assert_eq!(
        said[3].1,
        format!(
            "Build details : http://gantry.test/{PUSH_REPO}/builds/{}",
            build["id"]
        )
    );
    assert_eq!(said[4].0, "PART");

    let path = format!("/api/builds/{}/notifications", build["id"]);
    let list = gantry_testkit::eventually(
        "the bot's line sent and the other waiting",
        WAIT,
        || async {
            let (_, list) = server.get(&path).await;
            let list = list.as_array()?.clone();
            let waiting = list[1]["last_error"].as_str().unwrap_or_default();
            (list[0]["state"] == "sent" && waiting.contains("cannot connect")).then_some(list)
        },
    )
    .await;
    assert_eq!(
        (&list[0]["kind"], &list[0]["url"]),
        (
            &json!("irc"),
            &json!(format!("irc:127.0.0.1:{}#gantry", irc.port()))
        )
    );
    assert_eq!(list[1]["state"], "pending", "tried again later: {list:?}");
    assert_eq!(list[1]["url"], format!("irc:127.0.0.1:{down}#nobody-home"));
}

/// A channel, and the server's password, kept in repository secrets: the
/// bot says a NOTICE without joining, and nothing shows either secret. A
/// channel closed to outsiders (+n) refuses it, and the build says why.
async fn secrets_stay_hidden_and_a_channel_closed_to_outsiders_refuses(engine: Engine) {
    let irc = IrcServer::start_with(Options {
        password: Some("srv-pass-4f1e".into()),
        ..Options::default()
    });
    let watcher = irc.watch("#ops").await;
    let server = TestServer::start(engine).await;
    // The repository is known once it has built.
    server
        .push_and_run(
            "script: ./test\nnotifications:\n  email: false\n",
            JobOutcome::Passed,
        )
        .await;
    let channel = format!("127.0.0.1:{}#ops", irc.port());
    server.set_secret("IRC_CHANNEL", &channel).await;
    server.set_secret("IRC_PASSWORD", "srv-pass-4f1e").await;
    let pipeline = "script: ./test\nnotifications:\n  email: false\n  irc:\n    channels:\n      - secure: bm90IHJlYWQ=\n    password:\n      secure: c2VjcmV0\n    nick: acme-ci\n    use_notice: true\n    skip_join: true\n    template: \"%{repository} %{result} (%{commit_subject})\"\n";
    let passed = server.push_and_run(pipeline, JobOutcome::Passed).await;
    let notice = watcher
        .wait("the notice", |h| {
            h.from == "acme-ci" && h.command == "NOTICE"
        })
        .await;
    assert_eq!(notice.params[0], "#ops");
    assert_eq!(
        notice.text(),
        format!(
            "{PUSH_REPO} passed ({})",
            passed["message"].as_str().unwrap()
        )
    );
    let list = server.settled_notifications(&passed).await;
    assert_eq!(
        (&list[0]["url"], &list[0]["state"]),
        (&json!("irc:$IRC_CHANNEL"), &json!("sent"))
    );

    // IRC servers answer no NOTICE, so a refusal shows for PRIVMSG only.
    watcher.mode("+n").await;
    let pipeline = pipeline.replace("    use_notice: true\n", "");
    let refused = server.push_and_run(&pipeline, JobOutcome::Failed).await;
    let list = server.settled_notifications(&refused).await;
    assert_eq!(list[0]["state"], "failed", "{list:?}");
    let error = list[0]["last_error"].as_str().unwrap();
    assert!(
        error.contains("#ops did not take the message") && error.contains("mode -n"),
        "{error}"
    );
    assert!(!said(&watcher, "acme-ci").iter().any(|(c, _)| c == "JOIN"));
    for path in [
        format!("/api/builds/{}/notifications", refused["id"]),
        format!("/{PUSH_REPO}/builds/{}", refused["id"]),
    ] {
        let shown = server.text(&path).await;
        assert!(!shown.contains("srv-pass-4f1e"), "{shown}");
        assert!(!shown.contains(&irc.port().to_string()), "{shown}");
    }
}

on_both_databases!(
    a_channel_hears_travis_lines_from_a_bot_that_joins_and_leaves,
    secrets_stay_hidden_and_a_channel_closed_to_outsiders_refuses,
);

/// `ircs://` with the channel's key in a secret: the bot trusts the
/// server's certificate through `SSL_CERT_FILE` and joins with the key;
/// a wrong key is a refusal that names the channel.
#[tokio::test]
async fn a_keyed_channel_over_tls_takes_the_key_from_a_secret() {
    let authority = gantry_testkit::tls::Authority::new();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, gantry_testkit::tls::pem(&authority.ca)).unwrap();
    // Read when the bot connects; nextest runs each test in a process of its own.
    std::env::set_var("SSL_CERT_FILE", &ca);
    let irc = IrcServer::start_with(Options {
        tls: Some((authority.cert_pem.clone(), authority.key_pem.clone())),
        ..Options::default()
    });
    let watcher = irc.watch("#vault").await;
    watcher.mode("+k k3y-9d2").await;
    let server = TestServer::start(Engine::Sqlite).await;
    server
        .push_and_run(
            "script: ./test\nnotifications:\n  email: false\n",
            JobOutcome::Passed,
        )
        .await;
    server.set_secret("IRC_CHANNEL_KEY", "k3y-9d2").await;
    let pipeline = format!(
        "script: ./test\nnotifications:\n  email: false\n  irc:\n    channels: [\"ircs://127.0.0.1:{}#vault\"]\n    channel_key:\n      secure: a2V5\n    template: \"%{{result}}\"\n",
        irc.tls_port().unwrap()
    );
    let build = server.push_and_run(&pipeline, JobOutcome::Passed).await;
    watcher
        .wait("the bot to leave", |h| {
            h.from == "gantry-ci" && h.command == "PART"
        })
        .await;
    assert_eq!(
        said(&watcher, "gantry-ci"),
        [
            ("JOIN".to_string(), "#vault".to_string()),
            ("PRIVMSG".to_string(), "passed".to_string()),
            ("PART".to_string(), String::new()),
        ]
    );
    let list = server.settled_notifications(&build).await;
    assert_eq!(list[0]["state"], "sent", "{list:?}");

    server.set_secret("IRC_CHANNEL_KEY", "wrong-key").await;
    let build = server.push_and_run(&pipeline, JobOutcome::Failed).await;
    let list = server.settled_notifications(&build).await;
    let error: Value = list[0]["last_error"].clone();
    assert_eq!(list[0]["state"], "failed", "{list:?}");
    assert!(
        error.as_str().unwrap().starts_with("cannot join #vault"),
        "{error}"
    );
    assert!(!error.as_str().unwrap().contains("wrong-key"));
}
