//! Signing in to the web viewer and acting from it: a signed session cookie,
//! and a CSRF token in every form that changes something.

mod support;

use gantry_testkit::db::Engine;
use reqwest::redirect::Policy;
use reqwest::StatusCode;
use support::*;

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// Signs in with `token`; returns the status and the session cookie, if set.
async fn sign_in(server: &TestServer, token: &str) -> (StatusCode, Option<String>) {
    let response = browser()
        .post(format!("{}/login", server.url))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    let cookie = response
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    (response.status(), cookie)
}

fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    page[at..].split('"').next().unwrap().to_string()
}

async fn get(server: &TestServer, path: &str, cookie: Option<&str>) -> String {
    let mut request = browser().get(format!("{}{path}", server.url));
    if let Some(c) = cookie {
        request = request.header("cookie", c);
    }
    request.send().await.unwrap().text().await.unwrap()
}

async fn post(
    server: &TestServer,
    path: &str,
    cookie: Option<&str>,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = browser().post(format!("{}{path}", server.url)).form(form);
    if let Some(c) = cookie {
        request = request.header("cookie", c);
    }
    request.send().await.unwrap()
}

async fn the_admin_signs_in_and_forms_need_their_csrf_token(engine: Engine) {
    let server = TestServer::start(engine).await;
    let build = server.queued_build("x").await;
    let id = build["id"].as_i64().unwrap();
    let page = format!("/{PUSH_REPO}/builds/{id}");
    let cancel = format!("{page}/cancel");

    // Signed out: no buttons, and the action is refused.
    assert!(!get(&server, &page, None).await.contains("Cancel build"));
    assert!(get(&server, "/", None).await.contains("href=\"/login\""));
    assert_eq!(
        post(&server, &cancel, None, &[("csrf", "x")])
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );

    // A wrong token signs nobody in.
    let (status, cookie) = sign_in(&server, "not-the-token").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(cookie.is_none());

    let (status, cookie) = sign_in(&server, ADMIN).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let set_cookie = cookie.expect("a session cookie");
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    assert!(
        !cookie.contains(ADMIN),
        "the cookie does not carry the token"
    );

    let signed_in = get(&server, &page, Some(&cookie)).await;
    assert!(
        signed_in.contains("Cancel build") && signed_in.contains("Restart build"),
        "{signed_in}"
    );
    let csrf = csrf_of(&signed_in);

    // A forged form: no token, a wrong token, or a tampered cookie.
    assert_eq!(
        post(&server, &cancel, Some(&cookie), &[]).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(&server, &cancel, Some(&cookie), &[("csrf", "0123abcd")])
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    let tampered = format!("{}x", cookie);
    assert_eq!(
        post(&server, &cancel, Some(&tampered), &[("csrf", &csrf)])
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let (_, still) = server.admin_get(&format!("/api/builds/{id}")).await;
    assert_eq!(still["state"], "queued", "nothing was canceled");

    // The real form cancels, and comes back to the build page.
    let response = post(&server, &cancel, Some(&cookie), &[("csrf", &csrf)]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], page.as_str());
    server
        .wait_build(PUSH_REPO, |b| b["state"] == "canceled")
        .await;

    // Signing out needs the token too, and ends the session.
    assert_eq!(
        post(&server, "/logout", Some(&cookie), &[]).await.status(),
        StatusCode::FORBIDDEN
    );
    let out = post(&server, "/logout", Some(&cookie), &[("csrf", &csrf)]).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(out.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
}

async fn a_signed_in_admin_sees_private_repositories(engine: Engine) {
    let server = TestServer::start(engine).await;
    let (_repo, full_name) = push_private(&server, "script: ./test\n", "p-1").await;
    server
        .wait_build(&full_name, |b| b["state"] == "queued")
        .await;
    assert!(!get(&server, "/", None).await.contains(&full_name));
    let (_, cookie) = sign_in(&server, ADMIN).await;
    let cookie = cookie.unwrap().split(';').next().unwrap().to_string();
    assert!(get(&server, "/", Some(&cookie)).await.contains(&full_name));
    assert!(get(&server, &format!("/{full_name}"), Some(&cookie))
        .await
        .contains("#1"));
}

async fn the_admin_manages_secrets_from_the_pages(engine: Engine) {
    let server = TestServer::start(engine).await;
    server.queued_build("x").await;
    let page = format!("/{PUSH_REPO}/secrets");
    let response = browser()
        .get(format!("{}{page}", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "signed out");

    let (_, cookie) = sign_in(&server, ADMIN).await;
    let cookie = cookie.unwrap().split(';').next().unwrap().to_string();
    let list = get(&server, &format!("/{PUSH_REPO}"), Some(&cookie)).await;
    assert!(
        list.contains(&format!("href=\"{page}\">Secrets</a>")),
        "{list}"
    );
    let form = get(&server, &page, Some(&cookie)).await;
    assert!(form.contains("No secrets yet."));
    let csrf = csrf_of(&form);
    const VALUE: &str = "s3cr3t-deploy-key-value";

    let forged = post(
        &server,
        &page,
        Some(&cookie),
        &[("name", "DEPLOY_KEY"), ("value", VALUE)],
    )
    .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let (_, listed) = server
        .admin_get(&format!("/api/repos/{PUSH_REPO}/secrets"))
        .await;
    assert_eq!(
        listed.as_array().unwrap().len(),
        0,
        "a forged form stores nothing"
    );

    let saved = post(
        &server,
        &page,
        Some(&cookie),
        &[
            ("csrf", &csrf),
            ("name", "DEPLOY_KEY"),
            ("value", VALUE),
            ("branches", "master, release"),
        ],
    )
    .await;
    assert_eq!(saved.status(), StatusCode::OK);
    let html = saved.text().await.unwrap();
    assert!(
        html.contains("DEPLOY_KEY saved")
            && html.contains("<code>DEPLOY_KEY</code>")
            && html.contains("master, release"),
        "{html}"
    );
    assert!(!html.contains(VALUE), "the value is never shown");
    let (_, listed) = server
        .admin_get(&format!("/api/repos/{PUSH_REPO}/secrets"))
        .await;
    assert_eq!(listed[0]["name"], "DEPLOY_KEY");
    assert_eq!(
        listed[0]["branches"],
        serde_json::json!(["master", "release"])
    );

    let bad = post(
        &server,
        &page,
        Some(&cookie),
        &[("csrf", &csrf), ("name", "1BAD"), ("value", "x")],
    )
    .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    let deleted = post(
        &server,
        &format!("{page}/DEPLOY_KEY/delete"),
        Some(&cookie),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(deleted.status(), StatusCode::OK);
    assert!(deleted.text().await.unwrap().contains("DEPLOY_KEY deleted"));
    let (_, listed) = server
        .admin_get(&format!("/api/repos/{PUSH_REPO}/secrets"))
        .await;
    assert_eq!(listed.as_array().unwrap().len(), 0);
}

/// Crons from the repository's pages: a writer (push access) schedules a
/// branch and sees its first run; a reader is refused; forms need the CSRF
/// token; a schedule of another repository cannot be deleted from here.
async fn crons_are_scheduled_from_the_pages_by_those_who_may_push(engine: Engine) {
    let server = TestServer::start_oauth(engine).await;
    // Kept: the GitHub double serves the branch from it.
    let _repo = queued_build_with_reader_and_writer(&server).await;
    let page = format!("/{PUSH_REPO}/crons");

    let reader = sign_in_with_github(&server, "reader").await;
    assert!(refused(&server, &page, &reader)
        .await
        .contains("reader needs push access to binkkatal/sample_app to schedule its builds"));

    let writer = sign_in_with_github(&server, "writer").await;
    let list = get(&server, &format!("/{PUSH_REPO}"), Some(&writer)).await;
    assert!(
        list.contains(&format!("href=\"{page}\">Crons</a>")),
        "{list}"
    );
    let form = get(&server, &page, Some(&writer)).await;
    assert!(form.contains("No cron builds yet."), "{form}");
    let csrf = csrf_of(&form);

    let forged = post(
        &server,
        &page,
        Some(&writer),
        &[("branch", "master"), ("interval", "daily")],
    )
    .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(server.count("crons").await, 0, "a forged form sets nothing");

    let bad = post(
        &server,
        &page,
        Some(&writer),
        &[
            ("csrf", &csrf),
            ("branch", "master"),
            ("interval", "hourly"),
        ],
    )
    .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().await.unwrap().contains("is not an interval"));

    let saved = post(
        &server,
        &page,
        Some(&writer),
        &[
            ("csrf", &csrf),
            ("branch", "master"),
            ("interval", "weekly"),
            ("skip_if_recent", "true"),
        ],
    )
    .await;
    let status = saved.status();
    let html = saved.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains("master is built weekly; the first build runs now")
            && html.contains("<code>master</code>")
            && html.contains("not after a build in the last 24 h"),
        "{html}"
    );
    // Its first run is skipped (the push above is recent), and the page says so.
    let shown = gantry_testkit::eventually("the first run on the page", WAIT, || async {
        let html = get(&server, &page, Some(&writer)).await;
        html.contains("skipped: build #1 of master ran in the last 24 hours")
            .then_some(html)
    })
    .await;
    let id = {
        let (_, crons) = server
            .admin_get(&format!("/api/repos/{PUSH_REPO}/crons"))
            .await;
        crons[0]["id"].as_i64().unwrap()
    };
    assert!(shown.contains(&format!("/crons/{id}/delete")));

    let elsewhere = post(
        &server,
        &format!("/acme/other/crons/{id}/delete"),
        Some(&writer),
        &[("csrf", &csrf)],
    )
    .await;
    assert_ne!(elsewhere.status(), StatusCode::OK);
    // Another repository's schedule, by its id, through this repository's page.
    let (other, other_sha) = server.repo(
        "Codertocat/Hello-World",
        &[(".travis.yml", "script: ./test\n")],
        "x",
    );
    let mut payload = gantry_testkit::webhook::fixture("pull_request", "opened.payload.json");
    gantry_testkit::webhook::point_pull_request(
        &mut payload,
        &other.path.display().to_string(),
        &other_sha,
    );
    server.webhook("pull_request", "pr-other", &payload).await;
    server
        .wait_build("Codertocat/Hello-World", |b| b["state"] == "queued")
        .await;
    let (status, theirs) = server
        .admin_post(
            "/api/repos/Codertocat/Hello-World/crons",
            serde_json::json!({"branch": "master", "interval": "daily"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{theirs}");
    let crossed = post(
        &server,
        &format!("{page}/{}/delete", theirs["id"]),
        Some(&writer),
        &[("csrf", &csrf)],
    )
    .await;
    assert!(crossed
        .text()
        .await
        .unwrap()
        .contains(&format!("there is no cron {} in {PUSH_REPO}", theirs["id"])));
    let (status, _) = server
        .admin_get(&format!("/api/crons/{}", theirs["id"]))
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the other repository's schedule stays"
    );

    let deleted = post(
        &server,
        &format!("{page}/{id}/delete"),
        Some(&writer),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(deleted.status(), StatusCode::OK);
    assert!(deleted
        .text()
        .await
        .unwrap()
        .contains("the schedule of master is deleted"));
    assert_eq!(
        server.count("crons").await,
        1,
        "only the other repository's is left"
    );
}

/// A build that errored because GitHub was down has no jobs; its page's
/// Restart reads the pipeline file again and comes back to the build,
/// which shows why it still has none, or runs once GitHub is back.
async fn restarting_a_build_without_jobs_from_its_page_plans_it_again(engine: Engine) {
    let server = TestServer::start(engine).await;
    let (_repo, sha) = queued_build_kept(&server).await;
    // A manual build while GitHub is down errors at once.
    server.github.fail_next(1_000, 502);
    let (status, _) = server
        .admin_post(
            &format!("/api/repos/{PUSH_REPO}/builds"),
            serde_json::json!({"branch": "master", "commit": sha}),
        )
        .await;
    assert!(status.is_success(), "{status}");
    let errored = server
        .wait_build(PUSH_REPO, |b| b["state"] == "errored")
        .await;
    assert_eq!(errored["jobs"].as_array().unwrap().len(), 0);
    let page = format!("/{PUSH_REPO}/builds/{}", errored["id"]);
    let restart = format!("{page}/restart");

    let (_, cookie) = sign_in(&server, ADMIN).await;
    let cookie = cookie.unwrap().split(';').next().unwrap().to_string();
    let html = get(&server, &page, Some(&cookie)).await;
    assert!(html.contains("GitHub was unavailable"), "{html}");
    let csrf = csrf_of(&html);

    // Still down: back to the page, which says so.
    let response = post(&server, &restart, Some(&cookie), &[("csrf", &csrf)]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], page.as_str());
    let (_, still) = server
        .admin_get(&format!("/api/builds/{}", errored["id"]))
        .await;
    assert_eq!(still["state"], "errored");

    // Back: the same build is queued with its job.
    server.github.recover();
    let response = post(&server, &restart, Some(&cookie), &[("csrf", &csrf)]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let (_, queued) = server
        .admin_get(&format!("/api/builds/{}", errored["id"]))
        .await;
    assert_eq!(queued["state"], "queued", "{queued}");
    assert_eq!(queued["number"], errored["number"]);
    assert_eq!(queued["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(server.count("builds").await, 2);
}

/// A build of `PUSH_REPO` queued, and two GitHub users: `reader` may pull
/// from it and `writer` may push. The repository is returned to be kept:
/// the GitHub double serves its branches from it.
async fn queued_build_with_reader_and_writer(server: &TestServer) -> gantry_testkit::git::Repo {
    let (repo, _) = queued_build_kept(server).await;
    server.github.grant("reader", PUSH_REPO, "pull");
    server.github.grant("writer", PUSH_REPO, "push");
    repo
}

/// A queued build of `PUSH_REPO`; its repository (kept: the GitHub double
/// serves files and branches from it) and commit.
async fn queued_build_kept(server: &TestServer) -> (gantry_testkit::git::Repo, String) {
    let (repo, sha) = server.repo(PUSH_REPO, &[(".travis.yml", "script: ./test\n")], "x");
    let payload = push_payload(&repo.path.display().to_string(), &sha, "x");
    server.webhook("push", "push-x", &payload).await;
    server
        .wait_build(PUSH_REPO, |b| b["state"] == "queued")
        .await;
    (repo, sha)
}

/// `page` as `cookie`'s user, who may not see it: the refusal's words.
/// A user who may only read sees `page` with `shows` but without `button`,
/// and posting its form to `action` anyway (with a valid CSRF token) gets
/// 403; returns what the refusal says.
async fn no_button_for(
    server: &TestServer,
    page: &str,
    reader: &str,
    shows: &str,
    button: &str,
    action: &str,
) -> String {
    let html = get(server, page, Some(reader)).await;
    assert!(
        html.contains(shows) && !html.contains(button),
        "no {button} without push: {html}"
    );
    let refused = post(server, action, Some(reader), &[("csrf", &csrf_of(&html))]).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{action}");
    refused.text().await.unwrap()
}

async fn refused(server: &TestServer, page: &str, cookie: &str) -> String {
    let response = browser()
        .get(format!("{}{page}", server.url))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    response.text().await.unwrap()
}

/// Signs in through GitHub as the double's browser user; returns the session cookie.
async fn sign_in_with_github(server: &TestServer, login: &str) -> String {
    server.github.browser_signed_in_as(login);
    let start = browser()
        .get(format!("{}/login/github", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    let state_cookie = start.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let authorize = start.headers()["location"].to_str().unwrap().to_string();
    assert!(
        authorize.starts_with(&format!(
            "{}/login/oauth/authorize?client_id=oauth-client-id",
            server.github.url
        )),
        "{authorize}"
    );
    let back = browser().get(&authorize).send().await.unwrap();
    assert_eq!(back.status(), StatusCode::FOUND);
    let callback = back.headers()["location"].to_str().unwrap().to_string();
    let path = callback
        .strip_prefix("http://gantry.test")
        .expect("back to the public URL");
    // A callback without the state cookie (a forged link) signs nobody in.
    let forged = browser()
        .get(format!("{}{path}", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let done = browser()
        .get(format!("{}{path}", server.url))
        .header("cookie", &state_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        done.status(),
        StatusCode::SEE_OTHER,
        "{}",
        done.text().await.unwrap_or_default()
    );
    let session = done.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(
        !session.contains("gho_"),
        "the GitHub token is sealed, not readable: {session}"
    );
    session
}

async fn github_users_act_by_their_repository_permissions(engine: Engine) {
    let server = TestServer::start_oauth(engine).await;
    let build = server.queued_build("x").await;
    let page = format!("/{PUSH_REPO}/builds/{}", build["id"]);
    server.github.grant("reader", PUSH_REPO, "pull");
    server.github.grant("writer", PUSH_REPO, "push");

    let reader = sign_in_with_github(&server, "reader").await;
    let refusal = no_button_for(
        &server,
        &page,
        &reader,
        "reader",
        "Cancel build",
        &format!("{page}/cancel"),
    )
    .await;
    assert!(refusal.contains("reader needs push access"), "{refusal}");
    let secrets = browser()
        .get(format!("{}/{PUSH_REPO}/secrets", server.url))
        .header("cookie", &reader)
        .send()
        .await
        .unwrap();
    assert_eq!(
        secrets.status(),
        StatusCode::FORBIDDEN,
        "secrets need admin"
    );
    let (_, still) = server
        .admin_get(&format!("/api/builds/{}", build["id"]))
        .await;
    assert_eq!(still["state"], "queued");

    let writer = sign_in_with_github(&server, "writer").await;
    let html = get(&server, &page, Some(&writer)).await;
    assert!(html.contains("Cancel build"), "{html}");
    let csrf = csrf_of(&html);
    let canceled = post(
        &server,
        &format!("{page}/cancel"),
        Some(&writer),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(canceled.status(), StatusCode::SEE_OTHER);
    server
        .wait_build(PUSH_REPO, |b| b["state"] == "canceled")
        .await;
}

async fn private_repositories_show_to_github_users_who_can_read_them(engine: Engine) {
    let server = TestServer::start_oauth(engine).await;
    let (_repo, full_name) = push_private(&server, "script: ./test\n", "priv-gh").await;
    server
        .wait_build(&full_name, |b| b["state"] == "queued")
        .await;
    server.github.grant("reader", &full_name, "pull");
    server.github.grant("stranger", &full_name, "none");
    let page = format!("{}/{full_name}", server.url);
    let status = |cookie: Option<String>| {
        let page = page.clone();
        async move {
            let mut request = browser().get(page);
            if let Some(c) = cookie {
                request = request.header("cookie", c);
            }
            request.send().await.unwrap().status()
        }
    };
    assert_eq!(status(None).await, StatusCode::NOT_FOUND);
    let stranger = sign_in_with_github(&server, "stranger").await;
    assert_eq!(status(Some(stranger.clone())).await, StatusCode::NOT_FOUND);
    let reader = sign_in_with_github(&server, "reader").await;
    assert_eq!(status(Some(reader.clone())).await, StatusCode::OK);
    let api = browser()
        .get(format!("{}/api/repos/{full_name}/builds", server.url))
        .header("cookie", &reader)
        .send()
        .await
        .unwrap();
    assert_eq!(
        api.status(),
        StatusCode::OK,
        "the viewer's own API calls work too"
    );
    assert!(get(&server, "/", Some(&reader)).await.contains(&full_name));
    assert!(!get(&server, "/", Some(&stranger))
        .await
        .contains(&full_name));
}

/// Clearing a repository's build caches from its Caches page: by users
/// with push access only, with the form's CSRF token; every job claimed
/// after carries the new count, which tells runners to drop their caches.
async fn caches_are_cleared_from_the_page_by_those_who_may_push(engine: Engine) {
    let server = TestServer::start_oauth(engine).await;
    let _repo = queued_build_with_reader_and_writer(&server).await;
    let page = format!("/{PUSH_REPO}/caches");
    let api = format!("/api/repos/{PUSH_REPO}/caches");
    let generation = || async { server.admin_get(&api).await.1["generation"].clone() };

    let reader = sign_in_with_github(&server, "reader").await;
    let clear = post(&server, &format!("{page}/clear"), Some(&reader), &[]).await;
    assert_eq!(clear.status(), StatusCode::FORBIDDEN);
    assert!(refused(&server, &page, &reader)
        .await
        .contains("reader needs push access to binkkatal/sample_app to clear its caches"));

    let writer = sign_in_with_github(&server, "writer").await;
    let list = get(&server, &format!("/{PUSH_REPO}"), Some(&writer)).await;
    assert!(
        list.contains(&format!("href=\"{page}\">Caches</a>")),
        "{list}"
    );
    let form = get(&server, &page, Some(&writer)).await;
    assert!(form.contains("Never cleared."), "{form}");
    let csrf = csrf_of(&form);

    let forged = post(&server, &format!("{page}/clear"), Some(&writer), &[]).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(generation().await, 0, "a forged form clears nothing");

    let cleared = post(
        &server,
        &format!("{page}/clear"),
        Some(&writer),
        &[("csrf", &csrf)],
    )
    .await;
    let status = cleared.status();
    let html = cleared.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains("caches cleared") && html.contains("Last cleared 20"),
        "{html}"
    );
    assert_eq!(generation().await, 1);

    // The queued job goes out with the clear: its runner drops what it kept.
    let job = server.claim("r1", 5).await.expect("the queued job");
    assert_eq!(job.repo.cache_generation, 1);

    // The JSON API clears too, for the admin only.
    let anonymous = server.delete(&api, None).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(generation().await, 1);
    let by_admin = server.delete(&api, Some(ADMIN)).await;
    assert_eq!(by_admin.status(), StatusCode::OK);
    let body: serde_json::Value = by_admin.json().await.unwrap();
    assert_eq!(body["generation"], 2);
    assert_eq!(body["repo"], PUSH_REPO);
}

/// A log that shows what it should not is removed, as on Travis: by users
/// with push access (with the form's CSRF token) or the admin, never while
/// its job runs. What is left says who removed it and when.
async fn a_log_is_removed_by_those_who_may_push_and_never_while_its_job_runs(engine: Engine) {
    let server = TestServer::start_oauth(engine).await;
    let _repo = queued_build_with_reader_and_writer(&server).await;
    let job = server.claim("r1", 5).await.expect("the queued job");
    let leaked = b"building\ntoken in base64: bGVha2VkLXRva2Vu\n".to_vec();
    let sent = server
        .runner_post(
            &gantry_protocol::log_path(job.job_id, 0),
            &job.lease,
            leaked.into(),
        )
        .await;
    assert_eq!(sent.status(), StatusCode::OK);
    let api = format!("/api/jobs/{}/log", job.job_id);
    let page = format!("/{PUSH_REPO}/jobs/{}", job.job_id);
    let admin_delete = || server.delete(&api, Some(ADMIN));

    let running = admin_delete().await;
    assert_eq!(running.status(), StatusCode::CONFLICT);
    assert!(running.text().await.unwrap().contains("job"), "says why");
    assert!(server.text(&api).await.contains("bGVha2VkLXRva2Vu"));
    server
        .finish(&job, gantry_protocol::JobOutcome::Passed)
        .await;

    let reader = sign_in_with_github(&server, "reader").await;
    no_button_for(
        &server,
        &page,
        &reader,
        "bGVha2VkLXRva2Vu",
        "Remove log",
        &format!("{page}/log/remove"),
    )
    .await;

    let writer = sign_in_with_github(&server, "writer").await;
    let seen = get(&server, &page, Some(&writer)).await;
    assert!(seen.contains("Remove log"), "{seen}");
    let forged = post(&server, &format!("{page}/log/remove"), Some(&writer), &[]).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(
        server.text(&api).await.contains("bGVha2VkLXRva2Vu"),
        "a forged form removes nothing"
    );
    let removed = post(
        &server,
        &format!("{page}/log/remove"),
        Some(&writer),
        &[("csrf", &csrf_of(&seen))],
    )
    .await;
    assert_eq!(removed.status(), StatusCode::SEE_OTHER);
    let log = server.text(&api).await;
    assert!(
        log.starts_with("\u{1b}[33;1m[gantry] Log removed by writer at 20"),
        "{log}"
    );
    assert_eq!(log.lines().count(), 1, "{log}");
    // The page read the old log before (its line index is kept): it shows the new one.
    let seen = get(&server, &page, Some(&writer)).await;
    assert!(
        !seen.contains("bGVha2VkLXRva2Vu")
            && seen.contains("Log removed by writer")
            && seen.contains("data-lines=\"1\""),
        "{seen}"
    );

    let anonymous = server.delete(&api, None).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let by_admin = admin_delete().await;
    assert_eq!(by_admin.status(), StatusCode::OK);
    let body: serde_json::Value = by_admin.json().await.unwrap();
    assert!(
        body["log"]
            .as_str()
            .unwrap()
            .starts_with("Log removed by the admin at "),
        "{body}"
    );
}

async fn builds_are_triggered_from_the_page_by_those_who_may_push(engine: Engine) {
    let server = TestServer::start_oauth(engine).await;
    let _repo = queued_build_with_reader_and_writer(&server).await;
    let page = format!("/{PUSH_REPO}/trigger");

    let reader = sign_in_with_github(&server, "reader").await;
    assert!(refused(&server, &page, &reader)
        .await
        .contains("reader needs push access to binkkatal/sample_app to trigger its builds"));

    let writer = sign_in_with_github(&server, "writer").await;
    let list = get(&server, &format!("/{PUSH_REPO}"), Some(&writer)).await;
    assert!(
        list.contains(&format!("href=\"{page}\">Trigger a build</a>")),
        "{list}"
    );
    let form = get(&server, &page, Some(&writer)).await;
    assert!(
        form.contains("name=\"branch\" value=\"master\""),
        "the default branch: {form}"
    );
    let csrf = csrf_of(&form);

    let forged = post(&server, &page, Some(&writer), &[("branch", "master")]).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        server.count("builds").await,
        1,
        "a forged form builds nothing"
    );

    // A wrong form comes back filled in, saying what was wrong.
    let config = "script: make deploy\nenv: [STAGE=prod]\n";
    let bad = post(
        &server,
        &page,
        Some(&writer),
        &[
            ("csrf", &csrf),
            ("branch", "nope"),
            ("config", config),
            ("merge_mode", "deep_merge_append"),
        ],
    )
    .await;
    assert_eq!(bad.status(), StatusCode::NOT_FOUND);
    let shown = bad.text().await.unwrap();
    assert!(
        shown.contains("no branch nope in binkkatal/sample_app"),
        "{shown}"
    );
    assert!(
        shown.contains("script: make deploy\nenv: [STAGE=prod]"),
        "the config is kept, line by line: {shown}"
    );

    let made = post(
        &server,
        &page,
        Some(&writer),
        &[
            ("csrf", &csrf),
            ("branch", "master"),
            ("message", "deploy now"),
            ("config", config),
            ("merge_mode", "replace"),
        ],
    )
    .await;
    assert_eq!(made.status(), StatusCode::SEE_OTHER);
    let to = made.headers()["location"].to_str().unwrap().to_string();
    let (_, builds) = server.get(&format!("/api/repos/{PUSH_REPO}/builds")).await;
    let build = &builds[0];
    assert_eq!(to, format!("/{PUSH_REPO}/builds/{}", build["id"]));
    assert_eq!(
        (build["event"].as_str(), build["message"].as_str()),
        (Some("api"), Some("deploy now"))
    );
    assert_eq!(build["author"], "writer", "the build says who triggered it");
    let spec: String = sqlx::query_scalar("SELECT spec FROM jobs WHERE build_id = $1")
        .bind(build["id"].as_i64().unwrap())
        .fetch_one(&server.app.db.pool)
        .await
        .unwrap();
    let spec: serde_json::Value = serde_json::from_str(&spec).unwrap();
    assert_eq!(
        spec["phases"]["script"],
        serde_json::json!(["make deploy"]),
        "the file's ./test is replaced"
    );
    // Everyone who sees the build sees the config it ran with.
    let shown = get(&server, &to, None).await;
    assert!(
        shown.contains("Triggered with a config of its own (replace)")
            && shown.contains("script: make deploy\nenv: [STAGE=prod]"),
        "{shown}"
    );
}

on_both_databases!(
    builds_are_triggered_from_the_page_by_those_who_may_push,
    a_log_is_removed_by_those_who_may_push_and_never_while_its_job_runs,
    caches_are_cleared_from_the_page_by_those_who_may_push,
    crons_are_scheduled_from_the_pages_by_those_who_may_push,
    the_admin_manages_secrets_from_the_pages,
    the_admin_signs_in_and_forms_need_their_csrf_token,
    a_signed_in_admin_sees_private_repositories,
    github_users_act_by_their_repository_permissions,
    private_repositories_show_to_github_users_who_can_read_them,
    restarting_a_build_without_jobs_from_its_page_plans_it_again,
);
