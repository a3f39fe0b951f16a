//! `gantry exec` in a checkout, on the local Docker, as a user debugs a pipeline.

use gantry_testkit::git::Repo;
use std::process::Command;

const IMAGE: &str = "gantry-test/busybox:1";

fn exec(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .arg("exec")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn runs_a_job_of_the_working_tree_and_exits_with_its_result() {
    let repo = Repo::new();
    let pipeline = format!(
        "image: {IMAGE}\nenv: [SIDE=left, SIDE=right]\nscript:\n  - cat notes.txt\n  - echo \"side $SIDE\"\n  - test \"$SIDE\" = left\n"
    );
    repo.commit(
        &[(".gantry.yml", &pipeline), ("notes.txt", "committed\n")],
        "init",
    );
    std::fs::write(repo.path.join("notes.txt"), "not committed yet\n").unwrap();

    let (code, out, err) = exec(&repo.path, &[]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        out.contains("not committed yet"),
        "the working tree, as it is: {out}"
    );
    assert!(out.contains("side left"));
    assert!(out.contains("── end of script"));
    assert!(
        !out.contains("travis_fold"),
        "markers are hidden in a terminal"
    );

    let (code, out, _) = exec(&repo.path, &["--job", "2"]);
    assert_eq!(code, Some(1), "the second job fails its test: {out}");
    assert!(out.contains("side right") && out.contains("The job failed"));

    let (code, _, err) = exec(&repo.path, &["--job", "nope"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("no job nope") && err.contains("1. [test] SIDE=left"),
        "{err}"
    );
    let names = Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Names}}"])
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&names.stdout);
    assert!(
        !names.contains("gantry-exec-"),
        "exec leaves no container: {names}"
    );
}

#[test]
fn a_directory_without_a_pipeline_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = exec(dir.path(), &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no .gantry.yml or .travis.yml"), "{err}");
}

#[test]
fn a_local_run_never_deploys() {
    let repo = Repo::new();
    let pipeline = format!(
        "image: {IMAGE}\nscript: true\ndeploy:\n  provider: script\n  script: echo SHIPPED\n  on: {{all_branches: true}}\n"
    );
    repo.commit(&[(".gantry.yml", &pipeline)], "init");
    let (code, out, err) = exec(&repo.path, &[]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        err.contains("gantry exec does not deploy or push images"),
        "{err}"
    );
    assert!(!out.contains("SHIPPED"), "{out}");
}
