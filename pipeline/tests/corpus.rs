//! Thirty real `.travis.yml` files from public projects (`../shared/fixtures/travis-corpus`,
//! beside the repository): none may panic or error, and job counts follow Travis's rules.

use gantry_pipeline::{parse, BuildContext, Catalog, Plan, Severity};
use std::path::PathBuf;

fn corpus_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/travis-corpus");
    assert!(
        dir.is_dir(),
        "the Travis corpus is missing at {}: check out shared/ beside the repository",
        dir.display()
    );
    dir
}

fn plan(name: &str) -> Plan {
    let path = corpus_dir().join(format!("{name}.travis.yml"));
    let source =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let parsed = parse(&source);
    assert!(!parsed.has_errors(), "{name}: {:#?}", parsed.diagnostics);
    parsed
        .pipeline
        .unwrap()
        .plan(&BuildContext::push("master"), &Catalog::default())
}

#[test]
fn every_corpus_file_reads_without_errors() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 30, "the corpus has 30 files");
    for path in files {
        let source = std::fs::read_to_string(&path).unwrap();
        let parsed = parse(&source);
        let errors: Vec<_> = parsed
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
        let plan = parsed
            .pipeline
            .unwrap()
            .plan(&BuildContext::push("master"), &Catalog::default());
        assert!(
            plan.rejected.is_some() || !plan.jobs.is_empty() || !plan.skipped.is_empty(),
            "{}: no job at all",
            path.display()
        );
        assert!(
            plan.diagnostics
                .iter()
                .all(|d| d.severity == Severity::Warning),
            "{}: {:#?}",
            path.display(),
            plan.diagnostics
        );
    }
}

/// Jobs Travis would create: the ones Gantry runs plus the ones it skips (macOS, Windows, other arches).
fn travis_count(plan: &Plan) -> usize {
    plan.jobs.len()
        + plan
            .skipped
            .iter()
            .filter(|s| s.reason.contains("not supported"))
            .count()
}

#[test]
fn ripgrep_nine_included_jobs_one_on_macos() {
    // No matrix key at the root (env has only `global`), so only the 9 includes exist.
    let p = plan("BurntSushi__ripgrep");
    assert_eq!(travis_count(&p), 9);
    assert_eq!(p.jobs.len(), 8);
    assert_eq!(
        p.skipped[0].name,
        "rust: nightly, TARGET=x86_64-apple-darwin XML_CATALOG_FILES=/usr/local/etc/xml/catalog"
    );
    assert_eq!(
        p.jobs[0].env_map().get("PROJECT_NAME").map(String::as_str),
        Some("ripgrep"),
        "global map entries"
    );
    assert_eq!(
        p.jobs[0].env_map().get("TARGET").map(String::as_str),
        Some("i686-unknown-linux-musl")
    );
    assert_eq!(
        p.jobs[0].image,
        gantry_pipeline::ImageSpec::Name("rustlang/rust:nightly".into())
    );
    assert!(p.fast_finish);
}

#[test]
fn apt_addons_are_installed_before_before_install() {
    use gantry_pipeline::Phase;
    let p = plan("BurntSushi__ripgrep");
    let apt = |job: &gantry_pipeline::Job| job.commands(Phase::BeforeInstall)[0].clone();
    assert_eq!(
        apt(&p.jobs[0]),
        "gantry_apt_install \
         libxslt1-dev asciidoc docbook-xsl xsltproc libxml2-utils zsh xz-utils liblz4-tool musl-tools",
        "the root's packages"
    );
    assert_eq!(p.jobs[2].env_map()["TARGET"], "arm-unknown-linux-gnueabihf");
    assert!(
        apt(&p.jobs[2]).ends_with(
            "gantry_apt_install gcc-4.8-arm-linux-gnueabihf binutils-arm-linux-gnueabihf \
             libc6-armhf-cross libc6-dev-armhf-cross libxslt1-dev asciidoc docbook-xsl xsltproc libxml2-utils"
        ),
        "an include's own addons replace the root's: {}",
        apt(&p.jobs[2])
    );
    // The file's own before_install commands follow.
    let parse_server = plan("parse-community__parse-server");
    let first = parse_server.jobs[0].commands(Phase::BeforeInstall);
    assert!(first[0].ends_with("postgresql-11-postgis-2.5 postgresql-11-postgis-2.5-scripts"));
}

/// FormSG's browser tests: `addons.chrome` and `services: xvfb` become one
/// apt install of Chromium and Xvfb, then the two set-ups, ahead of the
/// file's own before_install; `services: docker` still gives a daemon.
#[test]
fn chrome_and_xvfb_are_set_up_before_before_install() {
    use gantry_pipeline::Phase;
    let path = corpus_dir().join("opengovsg__FormSG.travis.yml");
    let parsed = parse(&std::fs::read_to_string(path).unwrap());
    let browser: Vec<&str> = parsed
        .diagnostics
        .iter()
        .map(|d| d.message.as_str())
        .filter(|m| m.contains("chrome") || m.contains("xvfb"))
        .collect();
    assert!(browser.is_empty(), "{browser:?}");
    let p = plan("opengovsg__FormSG");
    let job = &p.jobs[0];
    let before_install = job.commands(Phase::BeforeInstall);
    assert_eq!(
        before_install[..3],
        [
            "gantry_apt_install chromium xvfb",
            "gantry_chrome",
            "gantry_xvfb"
        ]
    );
    assert!(job.docker);
    assert!(job.services.is_empty(), "xvfb is not a container");
}

#[test]
fn database_addons_start_that_version_of_the_service() {
    let images = |name: &str| -> Vec<String> {
        plan(name).jobs[0]
            .services
            .iter()
            .map(|s| format!("{} {}", s.name, s.image))
            .collect()
    };
    // `addons.postgresql` alone starts it, as on Travis.
    assert_eq!(
        images("Yardsourcing__yardsourcing-engine"),
        ["postgresql postgres:9.6"]
    );
    assert_eq!(
        images("diesel-rs__diesel"),
        ["mysql mysql:8.0", "postgresql postgres:9.5"]
    );
    assert_eq!(
        images("cov2words__cov2words-backend"),
        ["mariadb mariadb:10.2"]
    );
    let services = &plan("Yardsourcing__yardsourcing-engine").jobs[0].services;
    assert!(
        services[0]
            .env
            .contains(&("POSTGRES_HOST_AUTH_METHOD".into(), "trust".into())),
        "the catalog's settings stay: {services:?}"
    );
}

#[test]
fn celery_four_pythons_plus_ten_includes_across_three_stages() {
    // python (4) × os (1) × env.jobs (1) = 4 root jobs in `test`, plus 10 includes.
    let p = plan("celery__celery");
    assert_eq!(p.jobs.len(), 14);
    assert_eq!(p.stages, ["test", "integration", "lint"]);
    assert_eq!(p.jobs_in_stage("test").count(), 5);
    assert_eq!(p.jobs_in_stage("integration").count(), 8);
    // allow_failures `python: '3.9'` matches the root 3.9 job, the 3.9 integration job and lint.
    let allowed: Vec<&str> = p
        .jobs
        .iter()
        .filter(|j| j.allow_failure)
        .map(|j| j.name.as_str())
        .collect();
    assert_eq!(allowed.len(), 3, "{allowed:?}");
    let lint = p.jobs_in_stage("lint").next().unwrap();
    assert_eq!(
        lint.env_map().get("TOXENV").map(String::as_str),
        Some("flake8,apicheck,configcheck,bandit")
    );
    assert_eq!(
        lint.env_map().get("PYTHONUNBUFFERED").map(String::as_str),
        Some("yes")
    );
}

#[test]
fn devise_matrix_of_84_minus_49_excluded() {
    // rvm (7) × gemfile (6) × env (2) = 84; 15 rvm+gemfile rules remove 30 rows, the
    // 4 env+gemfile rules remove 28 more of which 9 were already gone: 84 - 49 = 35.
    let p = plan("heartcombo__devise");
    assert_eq!(p.jobs.len(), 35);
    // ruby-head keeps 4 gemfiles with active_record only (mongoid rows are excluded) = 4;
    // rails-6.0 survives for 2.5.3, 2.6.0 and ruby-head, active_record only: 2 more.
    assert_eq!(p.jobs.iter().filter(|j| j.allow_failure).count(), 6);
}

#[test]
fn express_fourteen_versions_plus_an_allowed_nightly() {
    let p = plan("expressjs__express");
    assert_eq!(p.jobs.len(), 15);
    let allowed: Vec<&str> = p
        .jobs
        .iter()
        .filter(|j| j.allow_failure)
        .map(|j| j.name.as_str())
        .collect();
    assert_eq!(
        allowed,
        ["node_js: 13, NVM_NODEJS_ORG_MIRROR=https://nodejs.org/download/nightly"]
    );
}

#[test]
fn mocha_nine_includes_in_declared_stage_order() {
    // The root's `node_js` and one-entry `env` list expand to a single job,
    // which travis-yml drops beside `jobs.include`: the 9 includes are the
    // build, and each inherits the root's `env`. Unnamed includes inherit
    // the previous stage.
    let p = plan("mochajs__mocha");
    assert_eq!(p.jobs.len(), 9);
    let coverage = p
        .jobs
        .iter()
        .find(|j| j.name == "Latest Node.js (with coverage)")
        .expect("the first include");
    assert_eq!(
        coverage.image,
        gantry_pipeline::ImageSpec::Name("node:14".into())
    );
    assert!(
        coverage
            .env
            .iter()
            .any(|v| v.name == "NODE_OPTIONS" && v.value == "--trace-warnings"),
        "{:?}",
        coverage.env
    );
    assert_eq!(p.stages, ["smoke", "precache", "lint", "test"]);
    let smoke: Vec<&str> = p.jobs_in_stage("smoke").map(|j| j.name.as_str()).collect();
    assert_eq!(smoke, ["Latest Node.js", "Node.js v12", "Node.js v10"]);
    let v10 = p.jobs_in_stage("smoke").last().unwrap();
    assert_eq!(
        v10.image,
        gantry_pipeline::ImageSpec::Name("node:10".into()),
        "merge key keeps own node_js"
    );
    assert!(
        v10.env.is_empty(),
        "`env: null` in the anchor clears the inherited env"
    );
    assert_eq!(p.jobs_in_stage("test").count(), 4);
}

#[test]
fn golang_dep_six_includes_two_on_macos() {
    let p = plan("golang__dep");
    assert_eq!(travis_count(&p), 6);
    assert_eq!(p.jobs.len(), 4);
    assert_eq!(p.stages, ["test"]);
}

#[test]
fn requests_six_includes_in_two_stages() {
    let p = plan("psf__requests");
    assert_eq!(p.jobs.len(), 6);
    assert_eq!(p.stages, ["test", "coverage"]);
    assert_eq!(
        p.jobs[5].commands(gantry_pipeline::Phase::Script),
        ["codecov"]
    );
}

#[test]
fn caches_are_read_as_travis_reads_them() {
    let cache = |name: &str| plan(name).jobs[0].cache.clone();
    assert_eq!(
        cache("diesel-rs__diesel"),
        ["$HOME/.cargo", "$HOME/.rustup"]
    );
    assert_eq!(cache("psf__requests"), ["$HOME/.cache/pip"]);
    assert_eq!(cache("heartcombo__devise"), ["vendor/bundle"]);
    // `yarn: true` beside `directories`; `~` is the home directory.
    assert_eq!(
        cache("facebook__create-react-app"),
        ["$HOME/.cache/yarn", ".npm"]
    );
    // A job's own `cache:` replaces the root's.
    let mocha = plan("mochajs__mocha");
    let by_name = |name: &str| {
        mocha
            .jobs
            .iter()
            .find(|j| j.name == name)
            .unwrap_or_else(|| panic!("job {name}"))
            .cache
            .clone()
    };
    assert_eq!(by_name("Prime cache"), ["$HOME/.npm", "$HOME/npm"]);
    assert_eq!(by_name("Latest Node.js"), ["$HOME/.npm", "node_modules"]);
    // A list of shortcuts.
    let formsg = cache("opengovsg__FormSG");
    assert!(formsg.starts_with(&["node_modules".to_string(), "$HOME/.npm".to_string()]));
    assert!(formsg.contains(&"$HOME/.cache/pip".to_string()));
}

/// What `notifications:` of a corpus file reads as: its warnings about
/// notifications, and the webhooks a push of master and a fork's pull
/// request would tell.
fn notifications(name: &str) -> (Vec<String>, Plan, Plan) {
    let path = corpus_dir().join(format!("{name}.travis.yml"));
    let source = std::fs::read_to_string(&path).unwrap();
    let parsed = parse(&source);
    let warnings = parsed
        .diagnostics
        .iter()
        .filter(|d| d.message.contains("notifications"))
        .map(|d| d.message.clone())
        .collect();
    let pipeline = parsed.pipeline.unwrap();
    let fork = BuildContext {
        event: gantry_pipeline::Event::PullRequest,
        fork: true,
        pull_request: Some(7),
        head_repo: Some("someone/fork".into()),
        ..BuildContext::push("master")
    };
    (
        warnings,
        pipeline.plan(&BuildContext::push("master"), &Catalog::default()),
        pipeline.plan(&fork, &Catalog::default()),
    )
}

#[test]
fn webhook_notifications_of_real_files() {
    use gantry_pipeline::{WebhookUrl, When};
    // diesel: `if: fork = false`, so a fork's pull request tells nobody, silently.
    let (warnings, push, fork) = notifications("diesel-rs__diesel");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(push.webhooks.len(), 1);
    let hook = &push.webhooks[0];
    assert_eq!(
        hook.url,
        WebhookUrl::Plain("https://webhooks.gitter.im/e/1d32e0ad32841bd56b02".into())
    );
    assert_eq!(
        (
            hook.when.on_success,
            hook.when.on_failure,
            hook.when.on_start
        ),
        (When::Change, When::Always, When::Never)
    );
    assert!(fork.webhooks.is_empty());
    assert!(fork.diagnostics.is_empty(), "{:?}", fork.diagnostics);

    // httpie: told of starts too; a fork's pull request is not sent, and says so.
    let (_, push, fork) = notifications("httpie__httpie");
    assert_eq!(push.webhooks[0].when.on_start, When::Always);
    assert!(fork.webhooks.is_empty());
    assert!(fork.diagnostics.iter().any(|d| d
        .message
        .contains("not sent for a pull request from a fork")));

    // mocha: an encrypted URL, read from the repository secret WEBHOOK_URL;
    // `email: false` says nothing.
    let (warnings, push, _) = notifications("mochajs__mocha");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        push.webhooks[0].url,
        WebhookUrl::Secure {
            secret: "WEBHOOK_URL".into()
        }
    );
    assert_eq!(push.webhooks[0].when.on_success, When::Change);

    // celery: one IRC channel, told of a change only; etcd's top-level
    // flags are read.
    let (warnings, push, fork) = notifications("celery__celery");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(push.webhooks.is_empty());
    assert_eq!(push.irc.len(), 1);
    assert_eq!(push.irc[0].channel.shown(), "chat.freenode.net:6667#celery");
    assert_eq!(
        (push.irc[0].when.on_success, push.irc[0].when.on_failure),
        (When::Change, When::Change)
    );
    assert!(!push.irc[0].skip_join);
    assert!(fork.irc.is_empty());
    // pytest: says its lines without joining.
    let (warnings, push, _) = notifications("pytest-dev__pytest");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(push.irc[0].skip_join);
    let (warnings, _, _) = notifications("etcd-io__etcd");
    assert!(warnings.is_empty(), "{warnings:?}");
}

/// The three real `provider: releases` entries read as dpl reads them, with
/// no warning: ripgrep's one glob, dep's list of files, guzzle's two.
#[test]
fn github_releases_of_real_files() {
    use gantry_pipeline::{Provider, Releases, Value};
    let releases = |name: &str, linux: bool| -> (Releases, gantry_pipeline::DeployOn) {
        let mut source =
            std::fs::read_to_string(corpus_dir().join(format!("{name}.travis.yml"))).unwrap();
        if linux {
            // dep's release job runs on macOS, which Gantry skips: read it as a Linux job.
            source = source.replace("      os: osx\n      stage: deploy", "      stage: deploy");
        }
        let parsed = parse(&source);
        assert!(
            !parsed
                .diagnostics
                .iter()
                .any(|d| d.message.contains("releases")
                    || d.message.contains("api_key")
                    || d.message.contains("file")),
            "{name}: {:#?}",
            parsed.diagnostics
        );
        let plan = parsed
            .pipeline
            .unwrap()
            // ripgrep builds only tags that look like 1.2.3.
            .plan(&BuildContext::tag("1.0.0"), &Catalog::default());
        let deploy = plan
            .jobs
            .iter()
            .flat_map(|j| &j.deploy)
            .find(|d| d.provider.name() == "releases")
            .unwrap_or_else(|| panic!("{name}: no releases deploy"));
        match &deploy.provider {
            Provider::Releases(r) => (r.clone(), deploy.on.clone()),
            other => panic!("{other:?}"),
        }
    };

    let (rg, on) = releases("BurntSushi__ripgrep", false);
    assert!(rg.file_glob);
    assert_eq!(
        rg.files,
        ["deployment/${PROJECT_NAME}-${TRAVIS_TAG}-${TARGET}.tar.gz"]
    );
    assert_eq!(
        rg.token,
        Some(Value::Secure {
            secret: "api_key".into()
        })
    );
    assert!(!rg.overwrite && !rg.draft);
    assert_eq!(on.tags, Some(true));
    assert_eq!(on.condition, ["$TRAVIS_RUST_VERSION = nightly"]);

    let (dep, _) = releases("golang__dep", true);
    assert!(!dep.file_glob);
    assert_eq!(dep.files.len(), 26);
    assert_eq!(dep.files[0], "release/dep-linux-amd64");

    let (guzzle, on) = releases("guzzle__guzzle", false);
    assert_eq!(
        guzzle.files,
        ["build/artifacts/guzzle.phar", "build/artifacts/guzzle.zip"]
    );
    assert_eq!(on.repo.as_deref(), Some("guzzle/guzzle"));
    assert!(on.all_branches);
}

/// pytest's real `provider: pypi` entry, on a tag of its repository: its
/// user, both distributions, and the password from the secret PASSWORD.
#[test]
fn pypi_of_a_real_file() {
    use gantry_pipeline::{Provider, Value, PYPI_UPLOAD_URL};
    let path = corpus_dir().join("pytest-dev__pytest.travis.yml");
    let parsed = parse(&std::fs::read_to_string(path).unwrap());
    let deploy_warnings: Vec<&str> = parsed
        .diagnostics
        .iter()
        .map(|d| d.message.as_str())
        .filter(|m| m.contains("deploy") || m.contains("pypi"))
        .collect();
    assert!(deploy_warnings.is_empty(), "{deploy_warnings:?}");
    let plan = plan_tag("pytest-dev__pytest", "6.2.0", "pytest-dev/pytest");
    let pypi = plan
        .jobs
        .iter()
        .flat_map(|j| &j.deploy)
        .find_map(|d| match &d.provider {
            Provider::Pypi(p) => Some(p.clone()),
            _ => None,
        })
        .expect("the deploy job");
    assert_eq!(pypi.user, "nicoddemus");
    assert_eq!(pypi.distributions, "sdist bdist_wheel");
    assert_eq!(
        pypi.password,
        Some(Value::Secure {
            secret: "password".into()
        })
    );
    assert_eq!(pypi.server, PYPI_UPLOAD_URL);
    assert!(!pypi.skip_existing);
}

/// 540co's real `provider: codedeploy` entry, after its `s3` upload.
#[test]
fn codedeploy_of_a_real_file() {
    use gantry_pipeline::Provider;
    let path = corpus_dir().join("540co__jukebox-api.travis.yml");
    let parsed = parse(&std::fs::read_to_string(path).unwrap());
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    let plan = parsed
        .pipeline
        .unwrap()
        .plan(&BuildContext::push("master"), &Catalog::default());
    let names: Vec<&str> = plan.jobs[0]
        .deploy
        .iter()
        .map(|d| d.provider.name())
        .collect();
    assert_eq!(names, ["s3", "codedeploy"]);
    let Provider::Codedeploy(cd) = &plan.jobs[0].deploy[1].provider else {
        panic!("not codedeploy")
    };
    assert_eq!(cd.application, "jukebox-api");
    assert_eq!(
        cd.deployment_group.as_deref(),
        Some("jukebox-api-$TRAVIS_BRANCH")
    );
    assert_eq!(
        (cd.bucket.as_deref(), cd.key.as_deref()),
        (Some("540-jukebox-api"), Some("$TRAVIS_BRANCH"))
    );
    assert!(!cd.wait_until_deployed);
}

/// parse-server's real `provider: npm` entry: its token from the secret
/// API_TOKEN, npm's registry and the `latest` tag.
#[test]
fn npm_of_a_real_file() {
    use gantry_pipeline::{Provider, Value, NPM_REGISTRY};
    let plan = plan_tag(
        "parse-community__parse-server",
        "4.5.0",
        "parse-community/parse-server",
    );
    let npm = plan
        .jobs
        .iter()
        .flat_map(|j| &j.deploy)
        .find_map(|d| match &d.provider {
            Provider::Npm(n) => Some(n.clone()),
            _ => None,
        })
        .expect("the npm deploy");
    assert_eq!(
        npm.token,
        Some(Value::Secure {
            secret: "api_token".into()
        })
    );
    assert_eq!(
        (npm.registry.as_str(), npm.tag.as_str()),
        (NPM_REGISTRY, "latest")
    );
    assert!(!npm.dry_run);
}

/// `name`'s plan for a tag of `repo`.
fn plan_tag(name: &str, tag: &str, repo: &str) -> Plan {
    let path = corpus_dir().join(format!("{name}.travis.yml"));
    let parsed = parse(&std::fs::read_to_string(path).unwrap());
    let context = BuildContext {
        repo: repo.into(),
        ..BuildContext::tag(tag)
    };
    parsed.pipeline.unwrap().plan(&context, &Catalog::default())
}

/// parse-server's real `provider: pages` entry reads as dpl reads it.
#[test]
fn github_pages_of_a_real_file() {
    use gantry_pipeline::{Provider, Value};
    let source =
        std::fs::read_to_string(corpus_dir().join("parse-community__parse-server.travis.yml"))
            .unwrap();
    let parsed = parse(&source);
    assert!(
        !parsed
            .diagnostics
            .iter()
            .any(|d| d.message.contains("pages")),
        "{:#?}",
        parsed.diagnostics
    );
    let plan = parsed
        .pipeline
        .unwrap()
        .plan(&BuildContext::tag("4.0.0"), &Catalog::default());
    let pages = plan
        .jobs
        .iter()
        .flat_map(|j| &j.deploy)
        .find_map(|d| match &d.provider {
            Provider::Pages(p) => Some((p.clone(), d.on.clone())),
            _ => None,
        });
    let (pages, on) = pages.expect("a pages deploy");
    assert_eq!(
        pages.token,
        Some(Value::Secure {
            secret: "token".into()
        })
    );
    assert_eq!(pages.local_dir, "docs/");
    assert_eq!(pages.target_branch, "gh-pages");
    assert!(!pages.keep_history);
    assert!(on.all_branches);
}

/// Yardsourcing's real file: its Ruby named with `rbenv:`, and its
/// `provider: heroku` entry: the key from the secret API_KEY, its app, and
/// the migration it runs after the release. Nothing in it is warned about.
#[test]
fn heroku_of_a_real_file() {
    use gantry_pipeline::{Provider, Value, HEROKU_API_URL};
    let path = corpus_dir().join("Yardsourcing__yardsourcing-engine.travis.yml");
    let parsed = parse(&std::fs::read_to_string(path).unwrap());
    assert!(parsed.diagnostics.is_empty(), "{:#?}", parsed.diagnostics);
    let context = BuildContext {
        repo: "Yardsourcing/yardsourcing-engine".into(),
        ..BuildContext::push("master")
    };
    let plan = parsed.pipeline.unwrap().plan(&context, &Catalog::default());
    assert_eq!(plan.jobs.len(), 1);
    assert_eq!(
        plan.jobs[0].image,
        gantry_pipeline::ImageSpec::Name("ruby:2.5.3".into())
    );
    let deploy = &plan.jobs[0].deploy[0];
    let Provider::Heroku(heroku) = &deploy.provider else {
        panic!("{:?}", deploy.provider);
    };
    assert_eq!(
        heroku.api_key,
        Some(Value::Secure {
            secret: "api_key".into()
        })
    );
    assert_eq!(heroku.app.as_deref(), Some("powerful-dawn-55301"));
    assert_eq!(heroku.run, ["rails db:migrate"]);
    assert_eq!(heroku.api_url, HEROKU_API_URL);
    assert_eq!(
        deploy.on.repo.as_deref(),
        Some("Yardsourcing/yardsourcing-engine")
    );
}
