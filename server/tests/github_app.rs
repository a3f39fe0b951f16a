//! Gantry signed in as a GitHub App: a JWT signed with the App's key finds
//! each repository's installation and buys installation tokens, which then
//! read pipeline files, set commit statuses and clone private repositories.
//! The GitHub double checks the JWT against the App's public key and accepts
//! nothing but issued installation tokens on the other endpoints.

mod support;

use gantry_testkit::db::Engine;
use std::time::Duration;
use support::*;

async fn a_github_app_reads_pipelines_sets_statuses_and_lends_clone_tokens(engine: Engine) {
    let server = TestServer::start_app(engine).await;
    let (repo, sha) = server.repo(PUSH_REPO, &[(".travis.yml", "script: ./test\n")], "x");
    server
        .webhook(
            "push",
            "app-1",
            &push_payload(&repo.path.display().to_string(), &sha, "x"),
        )
        .await;
    server
        .wait_build(PUSH_REPO, |b| {
            b["state"] == "queued" && !b["jobs"].as_array().unwrap().is_empty()
        })
        .await;

    let requests = server.github.requests();
    let lookup = requests
        .iter()
        .find(|r| r.path == format!("/repos/{PUSH_REPO}/installation"))
        .expect("the installation was looked up");
    assert!(
        lookup
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Bearer ey")),
        "a JWT: {lookup:?}"
    );
    assert!(requests
        .iter()
        .any(|r| r.method == "POST" && r.path == "/app/installations/4242/access_tokens"));
    let tokens = server.github.installation_tokens();
    assert_eq!(
        tokens.len(),
        1,
        "one installation token, kept until it nearly expires"
    );
    let reads: Vec<_> = requests
        .iter()
        .filter(|r| r.path.contains("/contents/"))
        .collect();
    assert!(!reads.is_empty());
    for read in &reads {
        let auth = read.authorization.clone().unwrap_or_default();
        assert!(
            tokens.iter().any(|t| auth.ends_with(t.as_str())),
            "read with an installation token: {auth}"
        );
    }

    // The pending status goes out with an installation token too (the double refuses anything else).
    gantry_testkit::eventually("the pending status", Duration::from_secs(20), || async {
        server
            .github
            .requests()
            .into_iter()
            .find(|r| r.method == "POST" && r.path.contains("/statuses/") && !r.failed)
            .filter(|r| {
                r.authorization
                    .as_deref()
                    .is_some_and(|a| tokens.iter().any(|t| a.ends_with(t.as_str())))
            })
    })
    .await;

    // A private repository's job gets an installation token to clone with.
    let (_private, full_name) = push_private(&server, "script: ./test\n", "app-2").await;
    server
        .wait_build(&full_name, |b| b["state"] == "queued")
        .await;
    let mut credentials = None;
    for _ in 0..2 {
        let a = server.claim("r1", 5).await.expect("a job");
        if a.repo.full_name == full_name {
            credentials = a.git_credentials.clone();
        }
    }
    let credentials = credentials.expect("clone credentials for the private repository");
    assert_eq!(credentials.username, "x-access-token");
    assert!(server
        .github
        .installation_tokens()
        .contains(&credentials.password));
}

on_both_databases!(a_github_app_reads_pipelines_sets_statuses_and_lends_clone_tokens);
