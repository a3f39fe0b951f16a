//! `gantry lint` as a user runs it: output format, exit codes, JSON, build flags.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn gantry(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run gantry")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

#[test]
fn a_clean_file_exits_zero_and_lists_its_jobs() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        ".travis.yml",
        "language: python\npython: ['3.11', '3.12']\nscript: pytest\nservices: redis\naddons:\n  postgresql: '13'\n",
    );
    let out = gantry(&["lint"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = text(&out);
    assert!(stdout.contains("./.travis.yml: ok, 2 job(s)"), "{stdout}");
    assert!(
        stdout.contains("1. [test] python: 3.11 — python:3.11\n     services: redis (redis:7), postgresql (postgres:13)\n"),
        "{stdout}"
    );
}

#[test]
fn errors_print_file_line_column_and_exit_one() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "bad.yml",
        "language: shell\nscript:\n  run: x\nif: branch = $X\nscirpt: y\n",
    );
    let out = gantry(&["lint", "bad.yml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<String> = text(&out).lines().map(str::to_string).collect();
    assert_eq!(
        lines[0],
        "bad.yml:3:3: error: `script` must be a string or a list of strings, found a map"
    );
    assert_eq!(lines[1], "bad.yml:4:14: error: invalid `if` condition: unquoted `$` variable: use env(NAME) to read a variable, or quote the value");
    assert!(lines[2].starts_with("  hint: "), "{lines:?}");
    assert_eq!(
        lines[3],
        "bad.yml:5:1: warning: unknown key `scirpt` in the pipeline; it is ignored"
    );
    assert_eq!(lines[4], "  hint: did you mean `script`?");
    assert_eq!(lines.last().unwrap(), "bad.yml: 2 error(s), 1 warning(s)");
}

#[test]
fn warnings_alone_exit_zero() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "w.yml",
        "language: shell\nscript: ./test\naddons:\n  firefox: latest\n",
    );
    let out = gantry(&["lint", "w.yml"], dir.path());
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out).starts_with("w.yml:4:3: warning: `addons.firefox` is not supported"),
        "{}",
        text(&out)
    );
}

#[test]
fn every_file_is_checked_and_any_error_fails() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.yml", "script: ./test\n");
    write(dir.path(), "bad.yml", "script: [\n");
    let out = gantry(&["lint", "bad.yml", "good.yml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out);
    assert!(
        stdout.contains("bad.yml:2:1: error: YAML syntax error"),
        "{stdout}"
    );
    assert!(stdout.contains("good.yml: ok, 1 job(s)"), "{stdout}");
}

#[test]
fn unreadable_files_and_bad_usage_exit_two() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.yml", "script: ./test\n");
    let out = gantry(&["lint", "missing.yml", "good.yml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read missing.yml"));
    assert!(
        text(&out).contains("good.yml: ok"),
        "the readable file is still checked"
    );
    let out = gantry(&["lint", "--event", "merge", "good.yml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown event `merge`"));
    let out = gantry(&["lint", "--frobnicate"], dir.path());
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn gantry_yml_wins_over_travis_yml_in_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), ".travis.yml", "script: [\n");
    write(
        dir.path(),
        ".gantry.yml",
        "image: alpine:3.20\nscript: ./test\n",
    );
    let out = gantry(&["lint", "."], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains(".gantry.yml: ok"));
}

#[test]
fn json_lists_diagnostics_and_expanded_jobs() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p.yml",
        "language: node_js\nnode_js: ['18', '20']\nenv:\n  global: [CI_MODE=full]\n  jobs: [SUITE=unit]\nscript: npm test\nimport: acme/shared:ci.yml\njobs:\n  include:\n    - stage: deploy\n      name: ship\n      image: {build: {dockerfile: Dockerfile.dev}}\n  allow_failures:\n    - node_js: '20'\n",
    );
    let out = gantry(&["lint", "--json", "p.yml"], dir.path());
    assert_eq!(out.status.code(), Some(0));
    let json: Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let file = &json[0];
    assert_eq!(file["file"], "p.yml");
    assert_eq!(file["diagnostics"][0]["severity"], "warning");
    assert_eq!(file["diagnostics"][0]["line"], 7);
    assert_eq!(file["diagnostics"][0]["column"], 9);
    let jobs = file["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 3);
    assert_eq!(jobs[0]["name"], "node_js: 18, SUITE=unit");
    assert_eq!(jobs[0]["stage"], "test");
    assert_eq!(jobs[0]["image"], "node:18");
    assert_eq!(
        jobs[0]["env"],
        serde_json::json!({"CI_MODE": "full", "SUITE": "unit"})
    );
    assert_eq!(jobs[0]["allow_failure"], false);
    assert_eq!(jobs[1]["allow_failure"], true);
    assert_eq!(jobs[2]["stage"], "deploy");
    assert_eq!(jobs[2]["image"]["build"]["dockerfile"], "Dockerfile.dev");
    assert!(jobs[0].get("services").is_none(), "none asked for");
}

#[test]
fn branch_event_and_tag_flags_set_the_build_conditions_see() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p.yml",
        "language: shell\nscript: ./test\nstages:\n  - test\n  - name: release\n    if: tag IS present\njobs:\n  include:\n    - name: unit\n    - name: pr-only\n      if: type = pull_request\n    - stage: release\n      name: publish\n",
    );
    let names = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["lint", "--json"];
        all.extend_from_slice(args);
        all.push("p.yml");
        let out = gantry(&all, dir.path());
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        json[0]["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&[]), ["unit"]);
    assert_eq!(names(&["--event", "pull_request"]), ["unit", "pr-only"]);
    assert_eq!(names(&["--tag", "v1.0.0"]), ["unit", "publish"]);

    write(
        dir.path(),
        "b.yml",
        "script: ./test\nbranches:\n  only: [main]\n",
    );
    let out = gantry(&["lint", "--branch", "dev", "b.yml"], dir.path());
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out).contains("b.yml: no build for this event: branch dev is not in branches.only"),
        "{}",
        text(&out)
    );
}

#[test]
fn lint_says_which_webhooks_a_build_tells_and_what_artifacts_go_up() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        ".travis.yml",
        "script: ./test\nnotifications:\n  webhooks:\n    - urls: [https://chat.example/hook, $TEAM_HOOK]\n      on_success: change\n    - urls: https://only.example/tags\n      if: tag IS present\naddons:\n  artifacts:\n    paths: [logs]\n",
    );
    let out = gantry(&["lint", "."], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains("  webhook: https://chat.example/hook — success: change, failure: always, start: never, cancel: always, error: always"),
        "{shown}"
    );
    assert!(
        shown.contains("  webhook: $TEAM_HOOK — success: change"),
        "{shown}"
    );
    assert!(
        !shown.contains("only.example"),
        "its `if:` is false for a push: {shown}"
    );
    assert!(
        shown.contains("     artifacts: logs, to S3 after after_script"),
        "{shown}"
    );

    let out = gantry(&["lint", "--json", "--tag", "v1", "."], dir.path());
    let json: Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let hooks = json[0]["webhooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 3, "a tag build tells all three: {hooks:?}");
    assert_eq!(hooks[2]["url"]["plain"], "https://only.example/tags");
    assert_eq!(hooks[0]["on_success"], "change");
    assert_eq!(json[0]["jobs"][0]["artifacts"]["paths"][0], "logs");
}

/// A user checks before pushing a tag that the release would go out, and
/// that a branch push would not.
#[test]
fn lint_says_which_deploys_a_build_runs_and_why_others_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        ".travis.yml",
        "script: ./test\ndeploy:\n  - provider: releases\n    api_key: {secure: abc}\n    file: dist/app.tar.gz\n    on: {tags: true}\n  - provider: s3\n    bucket: site\n    on:\n      branch: master\n      condition: $DEPLOY = yes\n  - provider: surge\n    api_key: x\n",
    );
    let out = gantry(&["lint", "."], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains(
            "     deploy: releases (line 3) — skipped: this is not a tag build (on.tags: true)"
        ),
        "{shown}"
    );
    assert!(
        shown.contains(
            "     deploy: s3 (line 7) — runs if the job passes and `$DEPLOY = yes` holds"
        ),
        "{shown}"
    );
    assert!(
        shown.contains("     deploy: surge (line 12) — skipped: Gantry does not run it"),
        "{shown}"
    );

    let out = gantry(&["lint", "--json", "--tag", "v1.0.0", "."], dir.path());
    let json: Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let deploy = json[0]["jobs"][0]["deploy"].as_array().unwrap();
    assert_eq!(deploy[0]["provider"], "releases");
    assert_eq!(deploy[0]["skipped"], Value::Null, "a tag build releases");
    assert_eq!(
        deploy[1]["skipped"], "branch v1.0.0 is not master",
        "{deploy:?}"
    );
}

#[test]
fn imports_of_the_repository_are_read_from_disk_and_problems_name_their_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("ci")).unwrap();
    write(
        dir.path(),
        ".travis.yml",
        "import:\n  - ci/matrix.yml\n  - acme/shared:deploy.yml@v1\nscript: [pytest]\n",
    );
    write(
        dir.path(),
        "ci/matrix.yml",
        "language: python\npython: ['3.11', '3.12']\nif: branch = $X\n",
    );
    let out = gantry(&["lint"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let lines: Vec<String> = text(&out).lines().map(str::to_string).collect();
    assert_eq!(
        lines[0],
        "./.travis.yml:3:5: warning: `acme/shared:deploy.yml@v1` was not read: only this repository's files are read here, as they are on disk"
    );
    assert!(
        lines[1].starts_with("./ci/matrix.yml:3:14: error: invalid `if` condition"),
        "{lines:?}"
    );

    // Fixed, the imported matrix is what lint lists.
    write(
        dir.path(),
        "ci/matrix.yml",
        "language: python\npython: ['3.11', '3.12']\n",
    );
    let out = gantry(&["lint", "--json"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report[0]["jobs"].as_array().unwrap().len(), 2);
    assert_eq!(report[0]["diagnostics"][0]["severity"], "warning");
}
