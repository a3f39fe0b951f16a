//! Email notifications (`notifications: email:`) as a mail server gets
//! them: aiosmtpd, a real SMTP server on 127.0.0.1, keeps every mail the
//! server sends, and the tests read them as a recipient would. On SQLite
//! and PostgreSQL.

mod support;

use gantry_protocol::JobOutcome;
use gantry_testkit::db::Engine;
use gantry_testkit::smtp::{Mail, MailServer, Options};
use serde_json::Value;
use support::*;

/// The push fixture's commit author and committer.
const AUTHOR: &str = "binkkatal.r@gmail.com";

fn subjects(mails: &[Mail]) -> Vec<String> {
    mails
        .iter()
        .map(|m| m.header("Subject").unwrap_or_default())
        .collect()
}

async fn a_broken_build_mails_its_recipients_and_its_fix_mails_again(engine: Engine) {
    let mail = MailServer::start();
    let server = TestServer::start_emailing(engine, &mail.url()).await;
    let pipeline = "script: ./test\nnotifications:\n  email:\n    recipients:\n      - team@example.com\n      - lead@example.org\n";

    let failed = server.push_and_run(pipeline, JobOutcome::Failed).await;
    let mails = mail.wait_for(2).await;
    let sha = failed["commit"].as_str().unwrap();
    let subject = format!("Failed: {PUSH_REPO}#1 (master - {})", &sha[..7]);
    assert_eq!(subjects(&mails), [subject.clone(), subject]);
    // One mail each, sent side by side.
    let mut to: Vec<&str> = mails.iter().map(|m| m.to[0].as_str()).collect();
    to.sort();
    assert_eq!(to, ["lead@example.org", "team@example.com"]);
    let first = mails.iter().find(|m| m.to == ["team@example.com"]).unwrap();
    assert_eq!(first.from, "ci@gantry.test");
    let from = first.header("From").unwrap();
    assert!(
        from.contains("Gantry CI") && from.ends_with("<ci@gantry.test>"),
        "{from}"
    );
    assert_eq!(first.header("To").as_deref(), Some("team@example.com"));
    let body = first.body();
    assert!(
        body.starts_with(&format!("Build #1 of {PUSH_REPO} failed")),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "Build:   http://gantry.test/{PUSH_REPO}/builds/{}\n",
            failed["id"]
        )),
        "{body}"
    );
    assert!(body.contains("#1.1      failed"), "{body}");

    // The API and the page say where each went and how.
    let list = server.settled_notifications(&failed).await;
    let shown: Vec<(&str, &str, &str, i64)> = list
        .iter()
        .map(|n| {
            (
                n["kind"].as_str().unwrap(),
                n["url"].as_str().unwrap(),
                n["state"].as_str().unwrap(),
                n["response_status"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            ("email", "mailto:team@example.com", "sent", 250),
            ("email", "mailto:lead@example.org", "sent", 250)
        ]
    );
    let page = server
        .text(&format!("/{PUSH_REPO}/builds/{}", failed["id"]))
        .await;
    assert!(page.contains("mailto:team@example.com"), "{page}");

    // Fixed: a success that changes the result is mailed (Travis's
    // `on_success: change`); the next success is not.
    server.push_and_run(pipeline, JobOutcome::Passed).await;
    let mails = mail.wait_for(4).await;
    assert!(mails[2]
        .header("Subject")
        .unwrap()
        .starts_with(&format!("Fixed: {PUSH_REPO}#2 ")));
    let quiet = server.push_and_run(pipeline, JobOutcome::Passed).await;
    assert_eq!(
        server.settled_notifications(&quiet).await,
        Vec::<Value>::new()
    );
    assert_eq!(
        mail.mails().len(),
        4,
        "a third build passing as before is not mailed"
    );
}

async fn the_commit_author_is_mailed_unless_email_is_off(engine: Engine) {
    let mail = MailServer::start();
    let server = TestServer::start_emailing(engine, &mail.url()).await;
    // No `notifications:` at all: Travis mails the commit's author and
    // committer (one address in the fixture) when a build fails.
    let failed = server
        .push_and_run("script: ./test\n", JobOutcome::Failed)
        .await;
    let mails = mail.wait_for(1).await;
    assert_eq!(mails[0].to, [AUTHOR]);
    let list = server.settled_notifications(&failed).await;
    assert_eq!(
        list.len(),
        1,
        "author and committer are one address: {list:?}"
    );
    assert_eq!(list[0]["url"], format!("mailto:{AUTHOR}"));

    let off = server
        .push_and_run(
            "script: ./test\nnotifications:\n  email: false\n",
            JobOutcome::Failed,
        )
        .await;
    assert_eq!(
        server.settled_notifications(&off).await,
        Vec::<Value>::new()
    );
    let flags_off = server
        .push_and_run(
            "script: ./test\nnotifications:\n  on_failure: never\n",
            JobOutcome::Failed,
        )
        .await;
    assert_eq!(
        server.settled_notifications(&flags_off).await,
        Vec::<Value>::new()
    );
    assert_eq!(mail.mails().len(), 1);
}

async fn a_busy_mail_server_gets_it_again_and_a_refused_address_is_given_up(engine: Engine) {
    let mail = MailServer::start_with(Options {
        busy: 1,
        refuse: Some("gone@example.com".into()),
        ..Options::default()
    });
    let server = TestServer::start_emailing(engine, &mail.url()).await;
    let pipeline = "script: ./test\nnotifications:\n  email: [dev@example.com, gone@example.com]\n";
    let build = server.push_and_run(pipeline, JobOutcome::Failed).await;
    let list = server.settled_notifications(&build).await;
    let dev = &list[0];
    assert_eq!(dev["state"], "sent", "{list:?}");
    assert_eq!(dev["attempts"], 2, "451 first, then taken: {list:?}");
    let gone = &list[1];
    assert_eq!(gone["state"], "failed", "{list:?}");
    assert_eq!(gone["attempts"], 1, "a 550 is not tried again: {list:?}");
    assert_eq!(gone["response_status"], 550);
    let error = gone["last_error"].as_str().unwrap();
    assert!(error.starts_with("the mail server refused it"), "{error}");
    let mails = mail.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, ["dev@example.com"]);
}

async fn a_secret_recipient_is_mailed_and_never_shown(engine: Engine) {
    let mail = MailServer::start();
    let server = TestServer::start_emailing(engine, &mail.url()).await;
    // The repository is known once it has built.
    server
        .push_and_run(
            "script: ./test\nnotifications:\n  email: false\n",
            JobOutcome::Passed,
        )
        .await;
    server
        .set_secret("EMAIL_RECIPIENT", "hidden-oncall@example.net")
        .await;
    let pipeline =
        "script: ./test\nnotifications:\n  email:\n    recipients:\n      - secure: bm90IHJlYWQ=\n";
    let build = server.push_and_run(pipeline, JobOutcome::Errored).await;
    let mails = mail.wait_for(1).await;
    assert_eq!(mails[0].to, ["hidden-oncall@example.net"]);
    assert!(mails[0].header("Subject").unwrap().starts_with("Errored: "));
    let list = server.settled_notifications(&build).await;
    assert_eq!(list[0]["url"], "mailto:$EMAIL_RECIPIENT");
    let api = server
        .text(&format!("/api/builds/{}/notifications", build["id"]))
        .await;
    let page = server
        .text(&format!("/{PUSH_REPO}/builds/{}", build["id"]))
        .await;
    for shown in [api, page] {
        assert!(!shown.contains("hidden-oncall"), "{shown}");
    }
}

async fn a_server_without_a_mail_server_says_why_a_written_recipient_got_nothing(engine: Engine) {
    let server = TestServer::start(engine).await;
    let written = server
        .push_and_run(
            "script: ./test\nnotifications:\n  email: team@example.com\n",
            JobOutcome::Failed,
        )
        .await;
    let list = server.settled_notifications(&written).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["state"], "failed");
    assert_eq!(list[0]["attempts"], 0);
    assert!(
        list[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("set GANTRY_SMTP_URL"),
        "{list:?}"
    );
    // The committers' default stays quiet: nobody asked for it in writing.
    let default = server
        .push_and_run("script: ./test\n", JobOutcome::Failed)
        .await;
    assert_eq!(
        server.settled_notifications(&default).await,
        Vec::<Value>::new()
    );
}

on_both_databases!(
    a_broken_build_mails_its_recipients_and_its_fix_mails_again,
    the_commit_author_is_mailed_unless_email_is_off,
    a_busy_mail_server_gets_it_again_and_a_refused_address_is_given_up,
    a_secret_recipient_is_mailed_and_never_shown,
    a_server_without_a_mail_server_says_why_a_written_recipient_got_nothing,
);

/// A mail provider's usual setup: port 587, STARTTLS required, a login.
/// The server trusts the test's authority through `SSL_CERT_FILE`, as it
/// would a company's own.
#[tokio::test]
async fn login_over_starttls_as_a_mail_provider_asks() {
    let authority = gantry_testkit::tls::Authority::new();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, gantry_testkit::tls::pem(&authority.ca)).unwrap();
    // Read when the first mail is sent; nextest runs each test in a process of its own.
    std::env::set_var("SSL_CERT_FILE", &ca);
    let mail = MailServer::start_with(Options {
        login: Some("gantry:s3cret-pass".into()),
        starttls: Some((authority.cert_pem.clone(), authority.key_pem.clone())),
        ..Options::default()
    });
    let url = format!(
        "smtp://gantry:s3cret-pass@127.0.0.1:{}?tls=required",
        mail.port()
    );
    let server = TestServer::start_emailing(Engine::Sqlite, &url).await;
    let build = server
        .push_and_run(
            "script: ./test\nnotifications:\n  email: team@example.com\n",
            JobOutcome::Failed,
        )
        .await;
    let mails = mail.wait_for(1).await;
    assert_eq!(mails[0].login.as_deref(), Some("gantry"));
    assert!(mails[0].tls, "sent after STARTTLS");
    let list = server.settled_notifications(&build).await;
    assert_eq!(list[0]["state"], "sent");

    // A wrong password is a refusal the build's notifications show,
    // without the password.
    let wrong = format!(
        "smtp://gantry:wrong-pass@127.0.0.1:{}?tls=required",
        mail.port()
    );
    let server = TestServer::start_emailing(Engine::Sqlite, &wrong).await;
    let build = server
        .push_and_run(
            "script: ./test\nnotifications:\n  email: team@example.com\n",
            JobOutcome::Failed,
        )
        .await;
    let list = server.settled_notifications(&build).await;
    assert_eq!(list[0]["state"], "failed", "{list:?}");
    let error = list[0]["last_error"].as_str().unwrap();
    assert!(!error.contains("wrong-pass"), "{error}");
    assert_eq!(mail.mails().len(), 1);
}
