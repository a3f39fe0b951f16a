//! Matrix expansion, stages and conditions, checked against Travis's documented rules.

use gantry_pipeline::{
    parse, BuildContext, Catalog, Event, ImageSpec, Job, Phase, Plan, Provider, Value,
};

fn plan_for(source: &str, build: &BuildContext) -> Plan {
    let parsed = parse(source);
    assert!(
        !parsed.has_errors(),
        "unexpected errors: {:#?}",
        parsed.diagnostics
    );
    parsed
        .pipeline
        .expect("pipeline")
        .plan(build, &Catalog::default())
}

fn plan(source: &str) -> Plan {
    plan_for(source, &BuildContext::push("master"))
}

fn names(plan: &Plan) -> Vec<String> {
    plan.jobs.iter().map(|j| j.name.clone()).collect()
}

fn image(job: &Job) -> &str {
    match &job.image {
        ImageSpec::Name(n) => n,
        ImageSpec::Build { .. } => "<build>",
    }
}

#[test]
fn expansion_keys_multiply_and_env_entries_are_one_job_each() {
    let p = plan("language: ruby\nrvm: [2.7, 3.2]\ngemfile: [Gemfile, gemfiles/rails7]\nenv: [DB=pg, DB=mysql]\nscript: rake\n");
    assert_eq!(p.jobs.len(), 8);
    assert_eq!(p.jobs[0].name, "rvm: 2.7, gemfile: Gemfile, DB=pg");
    assert_eq!(image(&p.jobs[0]), "ruby:2.7");
    assert_eq!(
        p.jobs[7].versions.get("gemfile").map(String::as_str),
        Some("gemfiles/rails7")
    );
    assert_eq!(
        p.jobs.iter().map(|j| j.number).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
}

/// Travis takes `ruby` and `rbenv` for `rvm`, `gemfiles` for `gemfile` and
/// `node` for `node_js` (travis-yml's schema); each expands as the key it
/// stands for, without a warning.
#[test]
fn version_keys_under_their_other_names() {
    let parsed = parse("language: ruby\nrbenv: [2.5.3, '3.2']\ngemfiles: [Gemfile, gemfiles/rails7]\nscript: rake\n");
    assert!(parsed.diagnostics.is_empty(), "{:#?}", parsed.diagnostics);
    let p = plan("language: ruby\nrbenv: [2.5.3, '3.2']\ngemfiles: [Gemfile, gemfiles/rails7]\nscript: rake\n");
    assert_eq!(p.jobs.len(), 4);
    assert_eq!(p.jobs[0].name, "rvm: 2.5.3, gemfile: Gemfile");
    assert_eq!(image(&p.jobs[0]), "ruby:2.5.3");
    assert_eq!(image(&p.jobs[3]), "ruby:3.2");

    let p = plan("language: node_js\nnode: ['18']\n");
    assert_eq!(image(&p.jobs[0]), "node:18");
    assert_eq!(
        p.jobs[0].versions.get("node_js").map(String::as_str),
        Some("18")
    );
}

/// travis-build's `deploy.on` names runtimes `node` and `ruby` (and takes
/// `node_js` and `rvm`): each deploys from the job of that version only.
#[test]
fn deploy_on_a_runtime_by_any_of_its_names() {
    for (source, deploying) in [
        ("language: node_js\nnode_js: ['8', '10']\ndeploy:\n  provider: script\n  script: ./release.sh\n  on:\n    node: '8'\n", "8"),
        ("language: node_js\nnode_js: ['8', '10']\ndeploy:\n  provider: script\n  script: ./release.sh\n  on:\n    node_js: '10'\n", "10"),
        ("language: ruby\nrvm: ['2.7', '3.2']\ndeploy:\n  provider: script\n  script: ./release.sh\n  on:\n    ruby: '3.2'\n", "3.2"),
    ] {
        let parsed = parse(source);
        assert!(parsed.diagnostics.is_empty(), "{source}: {:#?}", parsed.diagnostics);
        let p = plan(source);
        let build = BuildContext::push("master");
        let allowed: Vec<&str> = p
            .jobs
            .iter()
            .filter(|j| j.deploy[0].on.check(&build, &j.versions).is_ok())
            .flat_map(|j| j.versions.values().map(String::as_str))
            .collect();
        assert_eq!(allowed, [deploying], "{source}");
        let refused = p
            .jobs
            .iter()
            .find_map(|j| j.deploy[0].on.check(&build, &j.versions).err())
            .unwrap_or_default();
        assert!(refused.ends_with(&format!("not {deploying}")), "{refused}");
    }
}

/// travis-build reads `on: production` as `on: {branch: production}`,
/// and an empty `on:` as no condition.
#[test]
fn deploy_on_a_branch_name_alone() {
    let source = "language: node_js\ndeploy:\n  provider: script\n  script: ./release.sh\n  on: production\n";
    let parsed = parse(source);
    assert!(parsed.diagnostics.is_empty(), "{:#?}", parsed.diagnostics);
    let job = &plan(source).jobs[0];
    let on = &job.deploy[0].on;
    assert_eq!(on.branches, ["production"]);
    assert!(on
        .check(&BuildContext::push("production"), &job.versions)
        .is_ok());
    assert_eq!(
        on.check(&BuildContext::push("master"), &job.versions),
        Err("branch master is not production".into())
    );

    // An empty `on:` is no condition: the default branch deploys.
    let source = "language: node_js\ndeploy:\n  provider: script\n  script: ./release.sh\n  on:\n";
    let parsed = parse(source);
    assert!(parsed.diagnostics.is_empty(), "{:#?}", parsed.diagnostics);
    let job = &plan(source).jobs[0];
    let on = &job.deploy[0].on;
    assert!(on.branches.is_empty());
    assert!(on
        .check(&BuildContext::push("master"), &job.versions)
        .is_ok());
}

#[test]
fn global_env_goes_to_every_job_before_its_own() {
    let p = plan("language: python\npython: '3.11'\nenv:\n  global: [A=1, 'B=\"two words\"']\n  jobs: [C=3, A=9]\nscript: pytest\n");
    assert_eq!(p.jobs.len(), 2);
    let first = p.jobs[0].env_map();
    assert_eq!(first.get("A").map(String::as_str), Some("1"));
    assert_eq!(first.get("B").map(String::as_str), Some("two words"));
    assert_eq!(first.get("C").map(String::as_str), Some("3"));
    assert_eq!(
        p.jobs[1].env_map().get("A").map(String::as_str),
        Some("9"),
        "job env overrides global"
    );
}

#[test]
fn includes_inherit_root_keys_and_the_first_value_of_each_matrix_key() {
    let src = "language: node_js\nnode_js: ['18', '20']\nenv: [MODE=a, MODE=b]\nscript: npm test\njobs:\n  include:\n    - name: lint\n      script: npm run lint\n    - node_js: '22'\n      env: MODE=c\n";
    let p = plan(src);
    assert_eq!(p.jobs.len(), 6);
    let lint = p.jobs.iter().find(|j| j.name == "lint").unwrap();
    assert_eq!(image(lint), "node:18");
    assert_eq!(lint.env_map().get("MODE").map(String::as_str), Some("a"));
    assert_eq!(lint.commands(Phase::Script), ["npm run lint"]);
    let last = &p.jobs[5];
    assert_eq!(image(last), "node:22");
    assert_eq!(last.env_map().get("MODE").map(String::as_str), Some("c"));
}

/// travis-yml's `single_matrix_job_expanded?`: a root that expands to one
/// job beside `jobs.include` is dropped as a duplicate, its values going to
/// the includes (Travis since build stages, travis-ci#4681; the docs'
/// "Explicitly included jobs with only one element in the build matrix",
/// docs-travis-ci-com#2655: `- {}` keeps such a job).
#[test]
fn a_root_of_one_job_adds_no_job_beside_includes() {
    let p = plan("language: go\nscript: go test ./...\njobs:\n  include:\n    - go: '1.21'\n    - go: '1.22'\n");
    assert_eq!(names(&p), ["go: 1.21", "go: 1.22"]);
    // A single matrix value, or a one-entry `env` list, is no job of its own either.
    let p = plan(
        "language: go\ngo: '1.20'\nscript: go test ./...\njobs:\n  include:\n    - go: '1.22'\n",
    );
    assert_eq!(names(&p), ["go: 1.22"]);
    let p = plan("language: python\npython: ['3.8']\nenv: [EXTRA=no]\nscript: pytest\njobs:\n  include:\n    - name: one\n    - name: two\n      env: EXTRA=yes\n");
    assert_eq!(names(&p), ["one", "two"]);
    assert_eq!(image(&p.jobs[0]), "python:3.8");
    assert_eq!(
        p.jobs[0].env_map().get("EXTRA").map(String::as_str),
        Some("no")
    );
    // An empty include is the way to keep it; a null one adds nothing, with a warning.
    let src = "language: python\npython: ['3.8']\nscript: pytest\njobs:\n  include:\n    -\n    - {}\n    - env: EXTRA_TESTS=true\n";
    let warned = parse(src).diagnostics;
    assert!(
        warned.len() == 1
            && warned[0].line == 6
            && warned[0]
                .message
                .contains("write `- {}` for a job with the root's keys alone"),
        "{warned:#?}"
    );
    let p = plan(src);
    assert_eq!(p.jobs.len(), 2, "{:?}", names(&p));
    assert!(p.jobs[0].env.is_empty());
    assert_eq!(
        p.jobs[1].env_map().get("EXTRA_TESTS").map(String::as_str),
        Some("true")
    );
    // Two or more values expand as usual, the includes after them.
    let p = plan(
        "language: go\ngo: ['1.20', '1.21']\nscript: go test\njobs:\n  include:\n    - go: '1.22'\n",
    );
    assert_eq!(p.jobs.len(), 3);
    // An include that repeats a matrix row is that job, once (travis-yml's
    // `jobs.uniq`); one that differs in anything is a job of its own.
    let p = plan(
        "language: ruby\nrvm: ['2.2', '2.3']\nscript: rake\njobs:\n  include:\n    - rvm: '2.3'\n    - rvm: '2.3'\n      env: SLOW=1\n",
    );
    assert_eq!(
        names(&p),
        ["rvm: 2.2", "rvm: 2.3", "rvm: 2.3, SLOW=1"],
        "{:?}",
        p.jobs
    );
    // And no matrix and no includes is one job.
    assert_eq!(plan("language: go\nscript: go test\n").jobs.len(), 1);
    assert_eq!(
        plan("language: go\ngo: '1.20'\nscript: go test\n")
            .jobs
            .len(),
        1
    );
}

#[test]
fn exclude_matches_a_subset_of_keys_and_env_exactly() {
    let src = "language: python\npython: ['3.10', '3.11']\nenv: [DJANGO=4, DJANGO=5]\nscript: pytest\njobs:\n  exclude:\n    - python: '3.10'\n      env: DJANGO=5\n    - env: 'DJANGO=4 '\n";
    let p = plan(src);
    // The second rule's env differs by a space: Travis compares env strings exactly.
    assert_eq!(
        names(&p),
        [
            "python: 3.10, DJANGO=4",
            "python: 3.11, DJANGO=4",
            "python: 3.11, DJANGO=5"
        ]
    );
}

#[test]
fn allow_failures_match_every_attribute_and_honour_if() {
    let src = "language: python\npython: ['3.11', '3.12']\nscript: pytest\njobs:\n  include:\n    - name: docs\n      script: make docs\n  allow_failures:\n    - python: '3.12'\n    - name: docs\n      if: branch = master\n";
    let p = plan(src);
    let allowed: Vec<(&str, bool)> = p
        .jobs
        .iter()
        .map(|j| (j.name.as_str(), j.allow_failure))
        .collect();
    assert_eq!(
        allowed,
        [
            ("python: 3.11", false),
            ("python: 3.12", true),
            ("docs", true)
        ]
    );
    let p = plan_for(src, &BuildContext::push("dev"));
    assert!(
        !p.jobs
            .iter()
            .find(|j| j.name == "docs")
            .unwrap()
            .allow_failure
    );
}

#[test]
fn stages_order_jobs_and_included_jobs_inherit_the_previous_stage() {
    let src = "language: shell\nscript: ./test\nstages: [lint, test, deploy]\njobs:\n  include:\n    - stage: deploy\n      name: ship\n    - name: ship-docs\n    - stage: lint\n      name: fmt\n    - name: unit\n      stage: test\n";
    let p = plan(src);
    let staged: Vec<(u32, &str, &str)> = p
        .jobs
        .iter()
        .map(|j| (j.number, j.stage.as_str(), j.name.as_str()))
        .collect();
    assert_eq!(
        staged,
        [
            (1, "lint", "fmt"),
            (2, "test", "unit"),
            (3, "deploy", "ship"),
            (4, "deploy", "ship-docs")
        ]
    );
    assert_eq!(p.stages, ["lint", "test", "deploy"]);
}

#[test]
fn stage_and_job_conditions_skip_with_a_reason() {
    let src = "language: shell\nscript: ./test\nstages:\n  - test\n  - name: deploy\n    if: branch = master AND type = push\njobs:\n  include:\n    - name: unit\n    - stage: deploy\n      name: ship\n    - stage: test\n      name: tagged\n      if: tag IS present\n";
    let p = plan(src);
    assert_eq!(names(&p), ["unit", "ship"]);
    assert_eq!(p.skipped.len(), 1);
    assert!(
        p.skipped[0].reason.contains("tag IS present"),
        "{:?}",
        p.skipped
    );
    let pr = BuildContext {
        event: Event::PullRequest,
        ..BuildContext::push("master")
    };
    let p = plan_for(src, &pr);
    assert_eq!(names(&p), ["unit"]);
    assert!(p
        .skipped
        .iter()
        .any(|s| s.name == "ship" && s.reason.contains("stage deploy")));
}

#[test]
fn env_function_reads_the_jobs_env() {
    let src = "language: shell\nscript: ./test\nenv:\n  global: [DEPLOY=yes]\njobs:\n  include:\n    - name: a\n      if: env(DEPLOY) = yes\n    - name: b\n      env: MODE=slow\n      if: env(MODE) = fast\n";
    assert_eq!(names(&plan(src)), ["a"]);
}

#[test]
fn branches_and_root_if_decide_whether_the_build_runs() {
    let src = "language: shell\nscript: ./test\nbranches:\n  only: [master, /^release-/]\n";
    assert!(plan_for(src, &BuildContext::push("master"))
        .rejected
        .is_none());
    assert!(plan_for(src, &BuildContext::push("release-2"))
        .rejected
        .is_none());
    let p = plan_for(src, &BuildContext::push("dev"));
    assert_eq!(
        p.rejected.as_deref(),
        Some("branch dev is not in branches.only")
    );
    assert!(p.jobs.is_empty());
    let src = "language: shell\nscript: ./test\nif: type != pull_request\n";
    let pr = BuildContext {
        event: Event::PullRequest,
        ..BuildContext::push("master")
    };
    assert!(plan_for(src, &pr)
        .rejected
        .unwrap()
        .contains("type != pull_request"));
}

#[test]
fn language_defaults_fill_missing_phases_and_skip_switches_them_off() {
    let p = plan("language: rust\n");
    let job = &p.jobs[0];
    assert_eq!(image(job), "rust:latest");
    assert_eq!(job.commands(Phase::Install), ["cargo build --verbose"]);
    assert_eq!(
        job.commands(Phase::Script),
        ["cargo build --verbose", "cargo test --verbose"]
    );
    let p = plan("language: rust\ninstall: skip\nscript: cargo test\n");
    assert!(p.jobs[0].commands(Phase::Install).is_empty());
    // A YAML boolean is still a shell command.
    let p = plan("language: shell\nscript: true\n");
    assert_eq!(p.jobs[0].commands(Phase::Script), ["true"]);
}

/// travis-build's Python has no default script and fails the job without
/// one ("Please override the script: key"); `script: skip` is the way to run none.
#[test]
fn a_python_job_without_script_fails_as_on_travis() {
    let src = "language: python\npython: '3.12'\n";
    let warned = plan(src).diagnostics;
    assert!(
        warned.iter().any(|d| d
            .message
            .contains("has no `script`; it fails, as Travis's Python jobs do")),
        "{warned:#?}"
    );
    let script = plan(src).jobs[0].commands(Phase::Script).to_vec();
    assert_eq!(script.len(), 1);
    // The job's shell runs it: it says what to do, and fails.
    let ran = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script[0])
        .output()
        .expect("sh");
    assert_eq!(ran.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&ran.stderr).contains("set `script:` in the pipeline file"),
        "{ran:?}"
    );
    // `script: skip` runs none, and says nothing.
    let p = plan("language: python\nscript: skip\n");
    assert!(p.jobs[0].commands(Phase::Script).is_empty());
    assert!(p.diagnostics.is_empty(), "{:#?}", p.diagnostics);
}

#[test]
fn image_build_replaces_the_language_image() {
    let p = plan("language: generic\nimage:\n  build:\n    dockerfile: Dockerfile.dev\n    context: ./client\n    args: {NODE_ENV: test}\nscript: npm test\n");
    match &p.jobs[0].image {
        ImageSpec::Build { build } => {
            assert_eq!(build.dockerfile, "Dockerfile.dev");
            assert_eq!(build.context, "./client");
            assert_eq!(build.args.get("NODE_ENV").map(String::as_str), Some("test"));
        }
        other => panic!("expected a build, got {other:?}"),
    }
    let p = plan("image: alpine:3.20\nscript: ./test\n");
    assert_eq!(image(&p.jobs[0]), "alpine:3.20");
    assert_eq!(p.jobs[0].language, "shell");
}

#[test]
fn non_linux_jobs_are_skipped_with_a_reason() {
    let p = plan("language: shell\nos: [linux, osx, windows]\nscript: ./test\n");
    assert_eq!(p.jobs.len(), 1);
    assert_eq!(p.skipped.len(), 2);
    assert!(p.skipped[0].reason.contains("os: osx"));
}

#[test]
fn a_database_addon_sets_the_version_of_a_listed_service_unless_it_has_an_image() {
    let p = plan("language: python\nservices:\n  - postgres\n  - name: mariadb\n    image: mariadb:11.4\naddons:\n  postgresql: \"13\"\n  mariadb: \"10.6\"\nscript: pytest\n");
    let services: Vec<(String, String)> = p.jobs[0]
        .services
        .iter()
        .map(|s| (s.name.clone(), s.image.clone()))
        .collect();
    assert_eq!(
        services,
        [
            ("postgres".to_string(), "postgres:13".to_string()),
            ("mariadb".to_string(), "mariadb:11.4".to_string()),
        ],
        "one PostgreSQL, at the addon's version; the explicit image wins"
    );
}

#[test]
fn services_resolve_to_images_and_hostnames() {
    let p = plan("language: python\nservices:\n  - mysql\n  - redis-server\n  - docker\n  - name: search\n    image: opensearch:2\n    env: {discovery.type: single-node}\nscript: pytest\n");
    let job = &p.jobs[0];
    assert!(job.docker);
    let summary: Vec<(&str, &str)> = job
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.image.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("mysql", "mysql:8.0"),
            ("redis-server", "redis:7"),
            ("search", "opensearch:2")
        ]
    );
    assert!(job.services[1].hostnames.contains(&"redis".to_string()));
    assert!(job.services[0]
        .env
        .contains(&("MYSQL_ALLOW_EMPTY_PASSWORD".into(), "yes".into())));
}

#[test]
fn deploy_providers_are_typed_with_dpl_defaults() {
    let src = "language: node_js\nscript: npm test\ndeploy:\n  - provider: elasticbeanstalk\n    app: web\n    env: web-prod\n    bucket_name: bundles\n    access_key_id:\n      secure: abc\n    secret_access_key: $AWS_SECRET\n    on: {branch: main}\n  - provider: s3\n    bucket: site\n    local-dir: build\n    acl: public-read\n  - provider: ecs\n    cluster: prod\n    service: api\n    rollback: true\n  - provider: surge\n";
    let p = plan(src);
    let deploys = &p.jobs[0].deploy;
    assert_eq!(deploys.len(), 4);
    match &deploys[0].provider {
        Provider::Elasticbeanstalk(eb) => {
            assert_eq!(eb.bucket, "bundles");
            assert_eq!(eb.aws.region, "us-east-1");
            assert!(eb.wait_until_deployed);
            assert_eq!(eb.wait_until_deployed_timeout, 600);
            assert_eq!(
                eb.aws.access_key_id,
                Some(Value::Secure {
                    secret: "access_key_id".into()
                })
            );
            assert_eq!(
                eb.aws.secret_access_key,
                Some(Value::Plain("$AWS_SECRET".into()))
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(deploys[0].on.branches, ["main"]);
    match &deploys[1].provider {
        Provider::S3(s3) => {
            assert_eq!(s3.local_dir, "build");
            assert_eq!(s3.acl, "public_read");
            assert_eq!(s3.max_threads, 5);
            assert_eq!(s3.glob, "**/*");
        }
        other => panic!("{other:?}"),
    }
    match &deploys[2].provider {
        Provider::Ecs(ecs) => {
            assert_eq!(
                (
                    ecs.cluster.as_str(),
                    ecs.service.as_str(),
                    ecs.rollback,
                    ecs.timeout
                ),
                ("prod", "api", true, 600)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        deploys[3].provider,
        Provider::Unsupported {
            name: "surge".into()
        }
    );
}

#[test]
fn images_to_push_default_to_commit_and_latest_tags() {
    let p = plan("language: shell\nscript: ./test\nimages:\n  - name: registry.local:5000/team/app\n    credentials: {username: REG_USER, password: REG_PASS}\n  - name: team/worker\n    dockerfile: worker/Dockerfile\n    tags: [$GANTRY_BRANCH]\n");
    let images = &p.jobs[0].images;
    assert_eq!(images[0].tags, ["$GANTRY_COMMIT", "latest"]);
    assert_eq!(images[0].credentials.as_ref().unwrap().password, "REG_PASS");
    assert_eq!(images[1].build.dockerfile, "worker/Dockerfile");
    assert_eq!(images[1].tags, ["$GANTRY_BRANCH"]);
}

#[test]
fn yaml_anchors_and_merge_keys_build_jobs() {
    let src = "language: node_js\nscript: npm test\njobs:\n  include:\n    - &base\n      name: a\n      node_js: '18'\n      env: X=1\n    - <<: *base\n      name: b\n";
    let p = plan(src);
    assert_eq!(names(&p), ["a", "b"]);
    assert_eq!(image(&p.jobs[1]), "node:18");
    assert_eq!(p.jobs[1].env_map().get("X").map(String::as_str), Some("1"));
}

#[test]
fn timeouts_git_options_and_secure_env_are_read() {
    let p = plan("language: shell\nscript: ./test\ntimeout: 1h30m\ngit:\n  depth: false\n  submodules: false\nenv:\n  global:\n    - secure: c2VjcmV0\n");
    let job = &p.jobs[0];
    assert_eq!(job.timeout_minutes, 90);
    assert_eq!(job.git.depth, None);
    assert!(!job.git.submodules);
    assert!(job.secure_env);
    let p = plan("language: shell\nscript: ./test\n");
    assert_eq!(p.jobs[0].timeout_minutes, 60);
    assert_eq!(p.jobs[0].git.depth, Some(50));
}

#[test]
fn more_than_two_hundred_jobs_is_an_error() {
    let versions: Vec<String> = (0..15).map(|i| format!("'3.{i}'")).collect();
    let envs: Vec<String> = (0..14).map(|i| format!("N={i}")).collect();
    let src = format!(
        "language: python\npython: [{}]\nenv: [{}]\nscript: pytest\n",
        versions.join(", "),
        envs.join(", ")
    );
    let p = plan(&src);
    assert_eq!(p.jobs.len(), 210);
    assert!(p.diagnostics.iter().any(|d| d.message.contains("210 jobs")));
}

#[test]
fn a_jobs_cache_false_turns_the_roots_cache_off_and_unknown_caches_warn_at_their_line() {
    let p = plan("language: node_js\ncache: npm\njobs:\n  include:\n    - script: a\n    - script: b\n      cache: false\n    - script: c\n      cache:\n        directories: [deps]\n");
    assert_eq!(p.jobs[0].cache, ["node_modules", "$HOME/.npm"]);
    assert!(p.jobs[1].cache.is_empty());
    assert_eq!(p.jobs[2].cache, ["deps"]);

    let parsed = parse("language: shell\ncache:\n  - npm\n  - gradle\nscript: x\n");
    assert!(!parsed.has_errors());
    let warning = parsed
        .diagnostics
        .iter()
        .find(|d| d.message.contains("gradle"))
        .expect("a warning about `gradle`");
    assert_eq!(warning.line, 4);
    assert!(warning
        .hint
        .as_deref()
        .unwrap_or("")
        .contains("directories"));
}

#[test]
fn addons_hosts_name_localhost_in_every_job_that_has_them() {
    let p = plan(
        "script: true\naddons:\n  hosts:\n    - travis.dev\n    - api.travis.dev\n    - travis.dev\njobs:\n  include:\n    - name: inherited\n    - name: own\n      addons:\n        hosts: db.local\n",
    );
    assert_eq!(
        p.jobs[0].hosts,
        ["travis.dev", "api.travis.dev"],
        "each once"
    );
    assert_eq!(
        p.jobs[1].hosts,
        ["db.local"],
        "an include's own addons replace the root's"
    );
    let none = plan("script: true\n");
    assert!(none.jobs[0].hosts.is_empty());
}

#[test]
fn ssh_known_hosts_are_scanned_after_apt_packages_and_before_before_install() {
    use gantry_pipeline::Phase;
    let p = plan("script: ./test\nbefore_install: ./setup\naddons:\n  apt: {packages: [openssh-client]}\n  ssh_known_hosts: [github.com, git.example.com:2222, github.com]\n");
    assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
    assert_eq!(
        p.jobs[0].commands(Phase::BeforeInstall),
        [
            "gantry_apt_install openssh-client",
            "gantry_ssh_known_hosts github.com git.example.com:2222",
            "./setup"
        ]
    );
    let parsed =
        gantry_pipeline::parse("script: ./test\naddons:\n  ssh_known_hosts: 'evil.com;reboot'\n");
    let error = parsed
        .diagnostics
        .iter()
        .find(|d| d.severity == gantry_pipeline::Severity::Error)
        .expect("an error");
    assert_eq!(
        error.message,
        "`evil.com;reboot` is not a host for ssh_known_hosts"
    );
    assert_eq!(error.line, 3);
}
