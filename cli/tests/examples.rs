//! Every pipeline in `pipeline-examples/` lints clean and expands to the jobs its README promises.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pipeline-examples")
}

fn lint(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .arg("lint")
        .arg("--json")
        .args(args)
        .current_dir(examples())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn jobs(example: &str, flags: &[&str]) -> Vec<Value> {
    let mut args = flags.to_vec();
    args.push(example);
    let report = lint(&args);
    let file = &report[0];
    let diagnostics = file["diagnostics"].as_array().unwrap();
    assert!(diagnostics.is_empty(), "{example}: {diagnostics:#?}");
    file["jobs"].as_array().unwrap().clone()
}

#[test]
fn every_example_directory_has_a_pipeline_and_a_readme_line() {
    let readme = std::fs::read_to_string(examples().join("README.md")).unwrap();
    let mut count = 0;
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_dir() {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            gantry_has_pipeline(&path),
            "{name} has no .gantry.yml or .travis.yml"
        );
        assert!(
            readme.contains(&format!("`{name}/`")),
            "README.md does not describe {name}"
        );
        jobs(&name, &[]);
        count += 1;
    }
    assert!(count >= 4);
}

fn gantry_has_pipeline(dir: &std::path::Path) -> bool {
    dir.join(".gantry.yml").is_file() || dir.join(".travis.yml").is_file()
}

#[test]
fn node_elasticbeanstalk_tests_in_dockerfile_dev() {
    let jobs = jobs("node-elasticbeanstalk", &[]);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["image"]["build"]["dockerfile"], "Dockerfile.dev");
}

#[test]
fn multi_container_builds_in_the_client_context() {
    let jobs = jobs("multi-container-elasticbeanstalk", &[]);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["image"]["build"]["context"], "./client");
}

#[test]
fn ecs_service_runs_in_the_go_image_with_its_database_url() {
    let jobs = jobs("ecs-service", &["--branch", "main"]);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["image"], "golang:1.22");
    assert_eq!(
        jobs[0]["env"]["DATABASE_URL"],
        "postgres://postgres:test@postgres/postgres?sslmode=disable"
    );
}

#[test]
fn python_matrix_has_a_lint_stage_five_test_jobs_and_one_allowed_failure() {
    let jobs = jobs("python-matrix-services", &[]);
    let summary: Vec<(String, String, bool)> = jobs
        .iter()
        .map(|j| {
            (
                j["stage"].as_str().unwrap().into(),
                j["name"].as_str().unwrap().into(),
                j["allow_failure"].as_bool().unwrap(),
            )
        })
        .collect();
    let expected = [
        ("lint", "flake8", false),
        ("test", "python: 3.10, DJANGO=4.2", false),
        ("test", "python: 3.11, DJANGO=4.2", false),
        ("test", "python: 3.11, DJANGO=5.0", false),
        ("test", "python: 3.12, DJANGO=4.2", false),
        ("test", "python: 3.12, DJANGO=5.0", true),
    ];
    let expected: Vec<(String, String, bool)> = expected
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), *c))
        .collect();
    assert_eq!(summary, expected);
    assert_eq!(jobs[1]["env"]["REDIS_URL"], "redis://redis:6379/0");
    assert_eq!(jobs[1]["cache"], serde_json::json!(["$HOME/.cache/pip"]));
}

#[test]
fn shared_config_imports_the_matrix_and_deploys_only_from_master() {
    let master = jobs("shared-config", &[]);
    let names: Vec<&str> = master.iter().map(|j| j["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["python: 3.11", "python: 3.12"]);
    assert_eq!(master[0]["image"], "python:3.11");
    assert_eq!(master[0]["env"]["REDIS_URL"], "redis://redis:6379/0");
    assert_eq!(master[0]["deploy"][0]["provider"], "elasticbeanstalk");
    // Logs and lint point at the file the deploy is written in.
    assert_eq!(master[0]["deploy"][0]["file"], "ci/deploy.yml");
    assert_eq!(master[0]["deploy"][0]["line"], 3);
    let feature = jobs("shared-config", &["--branch", "feature"]);
    assert!(
        feature[0]["deploy"].is_null(),
        "deploy.yml is not imported: {}",
        feature[0]
    );
}
