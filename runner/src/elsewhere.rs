//! Tests that need an environment of their own (proxy variables are read
//! from the process's environment) run a helper test in another run of this
//! test binary. The helper prints `OUTCOME <what happened>`.

use std::process::Stdio;

/// Runs the `#[ignore]`d test `name` of this binary with `env` on top of an
/// environment without proxy variables; returns what it printed after
/// `OUTCOME `.
pub(crate) async fn run(name: &str, env: &[(&str, &str)]) -> String {
    let mut command = tokio::process::Command::new(std::env::current_exe().unwrap());
    command.args([name, "--exact", "--ignored", "--nocapture"]);
    for proxy in [
        "https_proxy",
        "HTTPS_PROXY",
        "http_proxy",
        "HTTP_PROXY",
        "no_proxy",
        "NO_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        command.env_remove(proxy);
    }
    command.envs(env.iter().copied()).stdin(Stdio::null());
    let out = command.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().find_map(|l| l.strip_prefix("OUTCOME ")) {
        Some(outcome) => outcome.to_string(),
        None => panic!(
            "{name} did not run: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}
