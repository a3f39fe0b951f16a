//! Repository secrets: write-only API, encrypted at rest, branch limits, never
//! for forks, and a clear start-up error for a missing or wrong key.

mod support;

use gantry_server::Server;
use gantry_testkit::db::Engine;
use gantry_testkit::webhook::{fixture, point_pull_request};
use reqwest::StatusCode;
use serde_json::json;
use support::*;

const VALUE: &str = "pa55w0rd-for-deploys";

async fn put(server: &TestServer, name: &str, body: serde_json::Value) -> StatusCode {
    let response = server
        .http
        .put(format!(
            "{}/api/repos/{PUSH_REPO}/secrets/{name}",
            server.url
        ))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    response.status()
}

async fn known_repo(server: &TestServer) -> gantry_testkit::git::Repo {
    let (repo, sha) = server.repo(PUSH_REPO, &[(".travis.yml", "script: ./test\n")], "x");
    server
        .webhook(
            "push",
            "first",
            &push_payload(&repo.path.display().to_string(), &sha, "x"),
        )
        .await;
    server
        .wait_build(PUSH_REPO, |b| b["state"] == "queued")
        .await;
    let first = server.claim("r", 5).await.unwrap();
    server
        .finish(&first, gantry_protocol::JobOutcome::Passed)
        .await;
    repo
}

async fn the_api_writes_lists_and_deletes_but_never_shows_values(engine: Engine) {
    let server = TestServer::start(engine).await;
    known_repo(&server).await;
    assert_eq!(
        put(&server, "DEPLOY_KEY", json!({"value": VALUE})).await,
        StatusCode::CREATED
    );
    assert_eq!(
        put(
            &server,
            "DEPLOY_KEY",
            json!({"value": VALUE, "branches": ["master"]})
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(
        put(&server, "1BAD", json!({"value": "x"})).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        put(&server, "EMPTY", json!({"value": ""})).await,
        StatusCode::BAD_REQUEST
    );
    let unauthenticated = server
        .http
        .put(format!("{}/api/repos/{PUSH_REPO}/secrets/X", server.url))
        .json(&json!({"value": "v"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    let list = server
        .http
        .get(format!("{}/api/repos/{PUSH_REPO}/secrets", server.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let text = list.text().await.unwrap();
    assert!(!text.contains(VALUE), "{text}");
    let list: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(list[0]["name"], "DEPLOY_KEY");
    assert_eq!(list[0]["branches"], json!(["master"]));
    assert!(list[0]["updated_at"].is_string());
    let anonymous = server
        .http
        .get(format!("{}/api/repos/{PUSH_REPO}/secrets", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    // At rest: not in the table, not anywhere in the database.
    let sealed: String = sqlx::query_scalar("SELECT sealed FROM secrets")
        .fetch_one(&server.app.db.pool)
        .await
        .unwrap();
    assert!(!sealed.contains(VALUE));
    if engine == Engine::Sqlite {
        let _ = sqlx::query("PRAGMA wal_checkpoint(FULL)")
            .execute(&server.app.db.pool)
            .await;
        for file in ["gantry.db", "gantry.db-wal"] {
            let bytes = std::fs::read(server.data.path().join(file)).unwrap_or_default();
            assert!(
                !bytes.windows(VALUE.len()).any(|w| w == VALUE.as_bytes()),
                "{file} holds the value in plain text"
            );
        }
    }
    let delete = server
        .delete(
            &format!("/api/repos/{PUSH_REPO}/secrets/DEPLOY_KEY"),
            Some(ADMIN),
        )
        .await;
    assert_eq!(delete.status(), StatusCode::NO_CONTENT);
    let again = server
        .delete(
            &format!("/api/repos/{PUSH_REPO}/secrets/DEPLOY_KEY"),
            Some(ADMIN),
        )
        .await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
}

async fn jobs_get_their_branchs_secrets_and_forks_get_none(engine: Engine) {
    let server = TestServer::start(engine).await;
    let repo = known_repo(&server).await;
    let url = repo.path.display().to_string();
    put(
        &server,
        "EVERYWHERE",
        json!({"value": "value-for-all-branches"}),
    )
    .await;
    put(
        &server,
        "ONLY_MASTER",
        json!({"value": VALUE, "branches": ["master"]}),
    )
    .await;

    let sha = repo.commit(&[], "on master");
    server
        .webhook("push", "master", &push_payload(&url, &sha, "on master"))
        .await;
    let a = gantry_testkit::eventually("a job", WAIT, || server.claim("r", 1)).await;
    let mut names: Vec<String> = a.secrets.iter().map(|s| s.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["EVERYWHERE", "ONLY_MASTER"]);
    assert_eq!(
        a.secrets
            .iter()
            .find(|s| s.name == "ONLY_MASTER")
            .unwrap()
            .value,
        VALUE
    );
    assert!(
        !format!("{a:?}").contains(VALUE),
        "Debug never shows a secret"
    );
    server.finish(&a, gantry_protocol::JobOutcome::Passed).await;

    let mut dev = push_payload(&url, &sha, "on dev");
    dev["ref"] = json!("refs/heads/dev");
    server.webhook("push", "dev", &dev).await;
    let b = gantry_testkit::eventually("a job", WAIT, || server.claim("r", 1)).await;
    assert_eq!(b.build.branch, "dev");
    let names: Vec<&str> = b.secrets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["EVERYWHERE"],
        "a secret limited to master stays out of dev"
    );
    server.finish(&b, gantry_protocol::JobOutcome::Passed).await;

    let mut fork = fixture("pull_request", "opened.payload.json");
    point_pull_request(&mut fork, &url, &sha);
    fork["repository"]["full_name"] = json!(PUSH_REPO);
    fork["pull_request"]["base"]["repo"]["full_name"] = json!(PUSH_REPO);
    fork["pull_request"]["head"]["repo"]["full_name"] = json!("stranger/sample_app");
    server.webhook("pull_request", "fork", &fork).await;
    let c = gantry_testkit::eventually("a job", WAIT, || server.claim("r", 1)).await;
    assert!(c.build.fork);
    assert!(c.secrets.is_empty(), "no secret for a fork");
    assert_eq!(
        c.notes,
        ["Secrets and deploys are not given to pull requests from forks."]
    );
}

async fn start_up_refuses_a_missing_or_wrong_key(engine: Engine) {
    let server = TestServer::start(engine).await;
    known_repo(&server).await;
    put(&server, "DEPLOY_KEY", json!({"value": VALUE})).await;
    let mut config = (*server.app.config).clone();
    config.secret_key = Some("a-different-key-0123456789".into());
    let err = Server::build(config.clone(), None)
        .await
        .err()
        .expect("a wrong key is refused");
    assert_eq!(err.to_string(), "secret DEPLOY_KEY cannot be decrypted: GANTRY_SECRET_KEY is not the key it was written with");
    config.secret_key = None;
    let err = Server::build(config.clone(), None)
        .await
        .err()
        .expect("no key is refused");
    assert!(
        err.to_string()
            .contains("holds secrets but GANTRY_SECRET_KEY is not set"),
        "{err}"
    );
    config.secret_key = Some(SECRET_KEY.into());
    assert!(
        Server::build(config, None).await.is_ok(),
        "the right key starts"
    );
}

on_both_databases!(
    the_api_writes_lists_and_deletes_but_never_shows_values,
    jobs_get_their_branchs_secrets_and_forks_get_none,
    start_up_refuses_a_missing_or_wrong_key,
);
