//! The variables a Travis script expects (`TRAVIS_*`), and Gantry's own (`GANTRY_*`).

use gantry_protocol::Assignment;

/// Where the repository is checked out inside the container (Travis's layout,
/// which scripts sometimes hard-code).
pub fn build_dir(repo: &str) -> String {
    format!("/home/travis/build/{repo}")
}

/// Everything the job container's environment starts with: the variables
/// below and the job's secrets (which turn `TRAVIS_SECURE_ENV_VARS` on).
pub fn job_environment(a: &Assignment) -> Vec<(String, String)> {
    let mut env = variables(a);
    env.extend(a.secrets.iter().map(|s| (s.name.clone(), s.value.clone())));
    if !a.secrets.is_empty() {
        set(&mut env, "TRAVIS_SECURE_ENV_VARS", "true".into());
    }
    env
}

/// Sets `name` to `value` in `env`, in place of any value it had.
pub fn set(env: &mut Vec<(String, String)>, name: &str, value: String) {
    env.retain(|(k, _)| k != name);
    env.push((name.into(), value));
}

/// Name → value, set on the job container.
pub fn variables(a: &Assignment) -> Vec<(String, String)> {
    let b = &a.build;
    let job = &a.job;
    let mut vars: Vec<(&str, String)> = vec![
        ("CI", "true".into()),
        ("CONTINUOUS_INTEGRATION", "true".into()),
        ("TRAVIS", "true".into()),
        ("HAS_JOSH_K_SEAL_OF_APPROVAL", "true".into()),
        ("GANTRY", "true".into()),
        ("TRAVIS_BRANCH", b.branch.clone()),
        ("TRAVIS_BUILD_DIR", build_dir(&a.repo.full_name)),
        ("TRAVIS_BUILD_ID", a.build_id.to_string()),
        ("TRAVIS_BUILD_NUMBER", b.number.to_string()),
        ("TRAVIS_COMMIT", b.commit.clone()),
        ("TRAVIS_COMMIT_MESSAGE", b.message.clone()),
        (
            "TRAVIS_EVENT_TYPE",
            match b.event {
                gantry_pipeline::Event::Tag => "push".into(),
                e => e.to_string(),
            },
        ),
        ("TRAVIS_JOB_ID", a.job_id.to_string()),
        ("TRAVIS_JOB_NAME", job.name.clone()),
        ("TRAVIS_JOB_NUMBER", a.number.clone()),
        ("TRAVIS_OS_NAME", "linux".into()),
        ("TRAVIS_CPU_ARCH", "amd64".into()),
        (
            "TRAVIS_DIST",
            job.dist.clone().unwrap_or_else(|| "jammy".into()),
        ),
        ("TRAVIS_LANGUAGE", job.language.clone()),
        (
            "TRAVIS_PULL_REQUEST",
            b.pull_request.map_or("false".into(), |n| n.to_string()),
        ),
        (
            "TRAVIS_PULL_REQUEST_BRANCH",
            b.head_branch.clone().unwrap_or_default(),
        ),
        (
            "TRAVIS_PULL_REQUEST_SHA",
            if b.pull_request.is_some() {
                b.commit.clone()
            } else {
                String::new()
            },
        ),
        (
            "TRAVIS_PULL_REQUEST_SLUG",
            b.head_repo.clone().unwrap_or_default(),
        ),
        ("TRAVIS_REPO_SLUG", a.repo.full_name.clone()),
        ("TRAVIS_TAG", b.tag.clone().unwrap_or_default()),
        ("TRAVIS_BUILD_STAGE_NAME", capitalize(&job.stage)),
        ("TRAVIS_ALLOW_FAILURE", job.allow_failure.to_string()),
        ("TRAVIS_SECURE_ENV_VARS", "false".into()),
        ("GANTRY_BRANCH", b.branch.clone()),
        ("GANTRY_COMMIT", b.commit.clone()),
        ("GANTRY_TAG", b.tag.clone().unwrap_or_default()),
        ("GANTRY_EVENT", b.event.to_string()),
        ("GANTRY_REPO", a.repo.full_name.clone()),
        ("GANTRY_BUILD_NUMBER", b.number.to_string()),
        ("GANTRY_JOB_NUMBER", a.number.clone()),
        ("GANTRY_JOB_ID", a.job_id.to_string()),
    ];
    if let Some(url) = &a.web_url {
        vars.push(("TRAVIS_BUILD_WEB_URL", url.clone()));
        vars.push(("GANTRY_BUILD_URL", url.clone()));
    }
    let mut out: Vec<(String, String)> =
        vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    for (key, value) in &job.versions {
        let name = match key.as_str() {
            "node_js" => "NODE",
            "rvm" => "RUBY",
            "jdk" => "JDK",
            "go" => "GO",
            other => other,
        };
        out.push((
            format!("TRAVIS_{}_VERSION", name.to_ascii_uppercase()),
            value.clone(),
        ));
    }
    out
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().collect::<String>() + chars.as_str(),
        None => String::new(),
    }
}
