//! The shell script a job's container runs: Travis's lifecycle with Travis's
//! failure rules, POSIX `sh` so it runs in any image (busybox included).
//!
//! Each phase is wrapped in Travis's own fold and time markers, so any
//! viewer that folds Travis logs folds Gantry's:
//!
//! ```text
//! travis_fold:start:install\r\e[0Ktravis_time:start:<id>\r\e[0K$ npm ci
//! …output…
//! travis_time:end:<id>:start=0,finish=0,duration=0,event=install\r\e[0Ktravis_fold:end:install\r\e[0K
//! gantry_phase:end:install:rc=0\r\e[0K
//! ```
//! The runner fills in the times as the markers pass it (busybox `date` has
//! no nanoseconds) and reads `gantry_phase:end` for per-phase results.
//!
//! A job runs in steps (`docker exec` each): `main` (before_install →
//! after_success/after_failure), then the runner's deploy steps, then
//! `after_script`. Each step saves its exports and directory for the next,
//! so `export FOO=1` in before_install is still there in after_script.

use gantry_pipeline::{Job, Phase};

/// Where the runner mounts its per-job files inside the container.
pub const GANTRY_DIR: &str = "/gantry";

/// Exit codes of the `main` step.
pub const EXIT_PASSED: i64 = 0;
pub const EXIT_FAILED: i64 = 1;
pub const EXIT_ERRORED: i64 = 2;

/// Quotes a string for `sh` single quotes.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Defined in every step: Gantry's phase markers and state, then Travis's
/// shell helpers that `.travis.yml` files call (`travis_retry`,
/// `travis_wait`, `travis_terminate`, `travis_fold`, `travis_time_start`,
/// `travis_time_finish`) and its colour variables, written for POSIX `sh`.
/// `travis_wait` passes the command's output through as it comes (Travis
/// holds it back until the end); `GANTRY_WAIT_TICK` shortens its minute in
/// tests. `travis_terminate` leaves its status in `/gantry/terminated` for
/// the runner, then ends the step's shell from wherever it was called.
/// `gantry_apt_install` is `addons.apt` (see the pipeline's `addons.rs`):
/// through `sudo` when the image runs as another user, as on Travis.
/// `gantry_ssh_known_hosts` is `addons.ssh_known_hosts`: a host that gives
/// no key is a yellow line, not a failed job (Travis's addon never failed one).
/// `gantry_chrome` (`addons.chrome`, after apt installed Debian's Chromium)
/// puts Travis's `google-chrome` on the `PATH`: Chromium, without its
/// sandbox as root, where it cannot have one. `gantry_xvfb` (`services:
/// xvfb`) starts Xvfb on :99 and waits for its socket, as Travis's does.
const PRELUDE: &str = r#"gantry_shell=$$
ANSI_RED='\033[31;1m'
ANSI_GREEN='\033[32;1m'
ANSI_YELLOW='\033[33;1m'
ANSI_RESET='\033[0m'
ANSI_CLEAR='\033[0K'
travis_retry() {
  local result=0 count=1
  while [ "$count" -le 3 ]; do
    if [ "$result" -ne 0 ]; then
      printf '\n\033[31;1mThe command "%s" failed. Retrying, %s of 3.\033[0m\n\n' "$*" "$count" >&2
    fi
    "$@" && { result=0; break; }
    result=$?
    count=$((count + 1))
    sleep 1
  done
  if [ "$count" -gt 3 ]; then
    printf '\n\033[31;1mThe command "%s" failed 3 times.\033[0m\n\n' "$*" >&2
  fi
  return "$result"
}
travis_wait() {
  local timeout=20 cmd_pid jigger_pid result
  case "$1" in
    ''|*[!0-9]*) ;;
    *) timeout=$1; shift ;;
  esac
  "$@" &
  cmd_pid=$!
  travis_jigger "$cmd_pid" "$timeout" "$@" &
  jigger_pid=$!
  wait "$cmd_pid"
  result=$?
  kill "$jigger_pid" 2>/dev/null
  if [ "$result" -eq 0 ]; then
    printf '\n\033[32;1mThe command %s exited with %s.\033[0m\n' "$*" "$result"
  else
    printf '\n\033[31;1mThe command %s exited with %s.\033[0m\n' "$*" "$result"
  fi
  return "$result"
}
travis_jigger() {
  local cmd_pid=$1 timeout=$2 count=0
  shift 2
  while [ "$count" -lt "$timeout" ]; do
    count=$((count + 1))
    printf 'Still running (%s of %s): %s\n' "$count" "$timeout" "$*"
    sleep "${GANTRY_WAIT_TICK:-60}" </dev/null >/dev/null 2>&1
  done
  printf '\n\033[31;1mTimeout (%s minutes) reached. Terminating "%s"\033[0m\n\n' "$timeout" "$*"
  kill -9 "$cmd_pid"
}
travis_terminate() {
  printf '%s\n' "${1:-0}" > /gantry/terminated
  kill -9 "$gantry_shell"
  exit "${1:-0}"
}
travis_fold() {
  printf 'travis_fold:%s:%s\r\033[0K' "$1" "$2"
}
travis_time_start() {
  gantry_timer=$((gantry_timer + 1))
  TRAVIS_TIMER_ID=$(printf '%08x' $(( ((($$ & 4095) + 1) << 16) + gantry_timer )))
  export TRAVIS_TIMER_ID
  printf 'travis_time:start:%s\r\033[0K' "$TRAVIS_TIMER_ID"
}
travis_time_finish() {
  local result=$?
  printf 'travis_time:end:%s:start=0,finish=0,duration=0,event=%s\r\033[0K' "$TRAVIS_TIMER_ID" "${1:-}"
  return "$result"
}
gantry_apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    printf '\033[31;1maddons.apt needs an image with apt-get (Debian or Ubuntu), and this one has none: set `image:`, or install the packages in before_install.\033[0m\n' >&2
    return 127
  fi
  local sudo=
  if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}
gantry_chrome() {
  local chromium sudo= bin=/usr/local/bin
  chromium=$(command -v chromium || command -v chromium-browser) || {
    printf '\033[31;1maddons.chrome: Chromium is not installed (Debian: chromium); use an image with apt-get, or one with Chrome.\033[0m\n' >&2
    return 127
  }
  if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
  $sudo mkdir -p "$bin" && $sudo tee "$bin/google-chrome" >/dev/null <<GANTRY_CHROME &&
#!/bin/sh
# Travis's google-chrome: Debian's Chromium, without its sandbox as root.
if [ "\$(id -u)" = 0 ]; then exec $chromium --no-sandbox "\$@"; fi
exec $chromium "\$@"
GANTRY_CHROME
  $sudo chmod 755 "$bin/google-chrome" && $sudo ln -sf google-chrome "$bin/google-chrome-stable" || return
  case ":$PATH:" in *":$bin:"*) ;; *) PATH="$bin:$PATH"; export PATH ;; esac
  CHROME_BIN="$bin/google-chrome"
  export CHROME_BIN
  printf 'google-chrome is %s\n' "$("$CHROME_BIN" --version 2>/dev/null)"
}
gantry_xvfb() {
  if ! command -v Xvfb >/dev/null 2>&1; then
    printf '\033[31;1mservices: xvfb needs Xvfb (Debian: xvfb), and it is not installed: use an image with apt-get, or one with Xvfb.\033[0m\n' >&2
    return 127
  fi
  Xvfb :99 -screen 0 1024x768x24 -nolisten tcp >/tmp/gantry-xvfb.log 2>&1 &
  DISPLAY=:99.0
  export DISPLAY
  local waited=0
  while [ ! -S /tmp/.X11-unix/X99 ]; do
    if [ "$waited" -ge 100 ]; then
      printf '\033[31;1mXvfb did not start within 10 s: %s\033[0m\n' "$(cat /tmp/gantry-xvfb.log)" >&2
      return 1
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  printf 'Xvfb is running on display :99\n'
}
gantry_ssh_known_hosts() {
  if ! command -v ssh-keyscan >/dev/null 2>&1; then
    printf '\033[33;1maddons.ssh_known_hosts needs ssh-keyscan (Debian: openssh-client), and this image has none: no host key was added.\033[0m\n' >&2
    return 0
  fi
  local entry host port keys
  mkdir -p "$HOME/.ssh" && chmod 700 "$HOME/.ssh"
  for entry in "$@"; do
    case "$entry" in
      \[*\]:*) host=${entry%]:*}; host=${host#\[}; port=${entry##*]:} ;;
      *:*:*) host=$entry; port=22 ;;
      *:*) host=${entry%:*}; port=${entry##*:} ;;
      *) host=$entry; port=22 ;;
    esac
    keys=$(ssh-keyscan -t rsa,ecdsa,ed25519 -p "$port" -H "$host" 2>/dev/null) || keys=
    if [ -n "$keys" ]; then
      printf '%s\n' "$keys" >> "$HOME/.ssh/known_hosts"
      printf 'Added the SSH host keys of %s\n' "$entry"
    else
      printf '\033[33;1mssh-keyscan got no host key from %s\033[0m\n' "$entry" >&2
    fi
  done
}
gantry_start() {
  printf 'travis_fold:start:%s\r\033[0Ktravis_time:start:%s\r\033[0K' "$1" "$2"
}
gantry_end() {
  printf 'travis_time:end:%s:start=0,finish=0,duration=0,event=%s\r\033[0Ktravis_fold:end:%s\r\033[0K\n' "$2" "$1" "$1"
  printf 'gantry_phase:end:%s:rc=%s\r\033[0K\n' "$1" "$3"
}
gantry_save() {
  export -p > /gantry/env.sh
  pwd > /gantry/pwd
  cat /proc/self/environ > /gantry/environ 2>/dev/null
}
"#;

fn restore(build_dir: &str) -> String {
    format!(
        "[ -f /gantry/env.sh ] && . /gantry/env.sh\nif [ -f /gantry/pwd ]; then cd \"$(cat /gantry/pwd)\" 2>/dev/null || cd {dir}; else cd {dir}; fi\n",
        dir = quote(build_dir)
    )
}

fn echo_command(cmd: &str) -> String {
    format!("printf '\\033[33;1m$ %s\\033[0m\\n' {}\n", quote(cmd))
}

/// A phase whose failure errors the job and stops it.
fn stopping_phase(phase: Phase, commands: &[String], id: usize) -> String {
    let name = phase.key();
    let mut out = format!("gantry_start {name} {id:08x}\n");
    for cmd in commands {
        out.push_str(&echo_command(cmd));
        out.push_str(&format!("eval {}\ngantry_rc=$?\n", quote(cmd)));
        out.push_str(&format!(
            "if [ $gantry_rc -ne 0 ]; then\n  printf '\\n\\033[31;1mThe command \"%s\" failed and exited with %s during {name}.\\033[0m\\n\\nYour build has been stopped.\\n' {} \"$gantry_rc\"\n  gantry_end {name} {id:08x} $gantry_rc\n  gantry_save\n  exit {EXIT_ERRORED}\nfi\n",
            quote(cmd)
        ));
    }
    out.push_str(&format!("gantry_end {name} {id:08x} 0\n"));
    out
}

/// `script`: every command runs; any failure fails the job.
fn script_phase(commands: &[String], id: usize) -> String {
    let mut out = format!("gantry_start script {id:08x}\ngantry_script_rc=0\n");
    for cmd in commands {
        out.push_str(&echo_command(cmd));
        out.push_str(&format!("eval {}\ngantry_rc=$?\n", quote(cmd)));
        out.push_str(&format!(
            "if [ $gantry_rc -eq 0 ]; then\n  printf '\\n\\033[32;1mThe command \"%s\" exited with 0.\\033[0m\\n' {q}\nelse\n  printf '\\n\\033[31;1mThe command \"%s\" exited with %s.\\033[0m\\n' {q} \"$gantry_rc\"\n  gantry_script_rc=$gantry_rc\n  TRAVIS_TEST_RESULT=1\nfi\n",
            q = quote(cmd)
        ));
    }
    out.push_str(&format!("gantry_end script {id:08x} $gantry_script_rc\n"));
    out
}

/// A phase that never changes the result.
fn lenient_phase(phase: Phase, commands: &[String], id: usize) -> String {
    let name = phase.key();
    let mut out = format!("gantry_start {name} {id:08x}\ngantry_phase_rc=0\n");
    for cmd in commands {
        out.push_str(&echo_command(cmd));
        out.push_str(&format!(
            "eval {}\ngantry_rc=$?\n[ $gantry_rc -ne 0 ] && gantry_phase_rc=$gantry_rc\n",
            quote(cmd)
        ));
    }
    out.push_str(&format!("gantry_end {name} {id:08x} $gantry_phase_rc\n"));
    out
}

/// `s` in double quotes: `$HOME` and other variables expand, as on Travis.
fn double_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if matches!(c, '"' | '\\' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Unpacks the archives the runner put in `/gantry/cache/in` into the
/// directories they were made from, before `before_install`.
fn cache_restore(dirs: &[String]) -> String {
    const RESTORE: &str = r#"gantry_cache_restore() {
  if [ ! -f "/gantry/cache/in/$2" ]; then
    printf 'nothing cached yet for %s\n' "$1"
  elif mkdir -p "$1" && tar -xf "/gantry/cache/in/$2" -C "$1"; then
    printf 'restored %s\n' "$1"
  else
    printf '\033[33;1mcould not restore %s; the job goes on without it\033[0m\n' "$1"
  fi
  rm -f "/gantry/cache/in/$2"
}
"#;
    cache_fold(
        "cache.1",
        "Setting up the build cache",
        RESTORE,
        "gantry_cache_restore",
        dirs,
    )
}

/// Packs each cached directory into `/gantry/cache/out` for the runner to
/// keep, after `script` and `before_cache`. A failure here never changes
/// the job's result.
fn cache_store(dirs: &[String]) -> String {
    const STORE: &str = r#"mkdir -p /gantry/cache/out
gantry_cache_store() {
  if [ ! -d "$1" ]; then
    printf '%s is not a directory; nothing to keep\n' "$1"
  elif tar -cf "/gantry/cache/out/$2" -C "$1" .; then
    printf 'stored %s\n' "$1"
  else
    rm -f "/gantry/cache/out/$2"
    printf '\033[33;1mcould not store %s\033[0m\n' "$1"
  fi
}
"#;
    cache_fold(
        "cache.2",
        "store build cache",
        STORE,
        "gantry_cache_store",
        dirs,
    )
}

/// A fold that defines `function` and calls it with each directory and its archive.
fn cache_fold(fold: &str, title: &str, define: &str, function: &str, dirs: &[String]) -> String {
    let mut out = format!("printf 'travis_fold:start:{fold}\\r\\033[0K{title}\\n'\n{define}");
    for dir in dirs {
        out.push_str(&format!(
            "{function} {} {}\n",
            double_quote(dir),
            crate::cache::archive_name(dir)
        ));
    }
    out.push_str(&format!("printf 'travis_fold:end:{fold}\\r\\033[0K'\n"));
    out
}

/// The `main` step: setup phases, `script`, then `after_success` or `after_failure`.
/// Exits 0 (passed), 1 (failed) or 2 (errored).
pub fn main_step(job: &Job, exports: &[(String, String)], build_dir: &str) -> String {
    let mut out = String::from("#!/bin/sh\n# Generated by Gantry.\n");
    out.push_str(PRELUDE);
    for (name, raw) in exports {
        out.push_str(&format!("export {name}={raw}\n"));
    }
    out.push_str(&format!(
        "mkdir -p {dir} 2>/dev/null; cd {dir}\nTRAVIS_TEST_RESULT=0\nexport TRAVIS_TEST_RESULT\n",
        dir = quote(build_dir)
    ));
    if !job.cache.is_empty() {
        out.push_str(&cache_restore(&job.cache));
    }
    let mut id = 1;
    for phase in [Phase::BeforeInstall, Phase::Install, Phase::BeforeScript] {
        let commands = job.commands(phase);
        if !commands.is_empty() {
            out.push_str(&stopping_phase(phase, commands, id));
            id += 1;
        }
    }
    out.push_str(&script_phase(job.commands(Phase::Script), id));
    id += 1;
    if !job.cache.is_empty() {
        let before_cache = job.commands(Phase::BeforeCache);
        if !before_cache.is_empty() {
            out.push_str(&lenient_phase(Phase::BeforeCache, before_cache, id));
            id += 1;
        }
        out.push_str(&cache_store(&job.cache));
    }
    out.push_str("export TRAVIS_TEST_RESULT\n");
    let success = job.commands(Phase::AfterSuccess);
    let failure = job.commands(Phase::AfterFailure);
    if !success.is_empty() || !failure.is_empty() {
        out.push_str("if [ \"$TRAVIS_TEST_RESULT\" = 0 ]; then\n");
        if !success.is_empty() {
            out.push_str(&lenient_phase(Phase::AfterSuccess, success, id));
        } else {
            out.push_str(":\n");
        }
        out.push_str("else\n");
        if !failure.is_empty() {
            out.push_str(&lenient_phase(Phase::AfterFailure, failure, id + 1));
        } else {
            out.push_str(":\n");
        }
        out.push_str("fi\n");
    }
    out.push_str("gantry_save\nexit $TRAVIS_TEST_RESULT\n");
    out
}

/// A later step (`before_deploy`, `after_deploy`, `after_script`): restores the
/// environment, runs the phase and saves again. Exits with the first failure.
pub fn phase_step(phase: Phase, commands: &[String], build_dir: &str, id: usize) -> String {
    let mut out = String::from("#!/bin/sh\n# Generated by Gantry.\n");
    out.push_str(PRELUDE);
    out.push_str(&restore(build_dir));
    let body = match phase.on_failure() {
        gantry_pipeline::FailureEffect::Errored => stopping_phase(phase, commands, id),
        _ => lenient_phase(phase, commands, id),
    };
    out.push_str(&body);
    out.push_str("gantry_save\nexit ${gantry_phase_rc:-0}\n");
    out
}

/// A deploy's `on.condition`: exits 0 when the shell test holds. Travis
/// evaluates them with bash (`[[ … ]]`); images without bash use `sh`.
pub fn condition_step(condition: &str, build_dir: &str) -> String {
    let mut out = String::from("#!/bin/sh\n# Generated by Gantry.\n");
    out.push_str(&restore(build_dir));
    let test = format!("if {condition}\nthen exit 0\nelse exit 1\nfi");
    out.push_str(&format!(
        "if command -v bash >/dev/null 2>&1; then exec bash -c {q}; else eval {q}; fi\n",
        q = quote(&test)
    ));
    out
}

/// dpl's `script` provider: one command in the job's environment, its exit
/// code the deploy's result. Exports are saved for `after_deploy`.
pub fn command_step(command: &str, build_dir: &str) -> String {
    let mut out = String::from("#!/bin/sh\n# Generated by Gantry.\n");
    out.push_str(PRELUDE);
    out.push_str(&restore(build_dir));
    out.push_str(&echo_command(command));
    out.push_str(&format!(
        "eval {}\ngantry_rc=$?\ngantry_save\nexit $gantry_rc\n",
        quote(command)
    ));
    out
}

/// The artifacts addon's words, evaluated by the job's shell as Travis
/// evaluates them (written into double quotes, so `$VAR` and `$(…)` work):
/// writes the folder the paths are relative to, the `:`-joined paths and
/// the `:`-joined target paths to `/gantry/artifacts.{dir,paths,targets}`.
pub fn artifacts_step(
    working_dir: Option<&str>,
    paths: &str,
    targets: &str,
    build_dir: &str,
) -> String {
    let mut out = String::from("#!/bin/sh\n# Generated by Gantry.\n");
    out.push_str(&restore(build_dir));
    out.push_str(&format!("cd {} || exit 3\n", quote(build_dir)));
    if let Some(dir) = working_dir {
        out.push_str(&format!(
            "gantry_dir=\"{dir}\"\ncd -- \"$gantry_dir\" || {{ printf 'working_dir %s is not a folder\\n' \"$gantry_dir\" >&2; exit 3; }}\n"
        ));
    }
    out.push_str(&format!(
        "pwd > /gantry/artifacts.dir\nprintf '%s' \"{paths}\" > /gantry/artifacts.paths\nprintf '%s' \"{targets}\" > /gantry/artifacts.targets\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn job(yaml: &str) -> Job {
        let parsed = gantry_pipeline::parse(yaml);
        assert!(!parsed.has_errors(), "{:?}", parsed.diagnostics);
        let plan = parsed.pipeline.unwrap().plan(
            &gantry_pipeline::BuildContext::default(),
            &gantry_pipeline::Catalog::default(),
        );
        plan.jobs.into_iter().next().unwrap()
    }

    /// Runs a step with the host's `sh` in a temp dir standing in for /gantry.
    fn run(script: &str) -> (i32, String) {
        let dir = tempfile::tempdir().unwrap();
        let gantry = dir.path().join("gantry");
        std::fs::create_dir(&gantry).unwrap();
        let script = script.replace("/gantry/", &format!("{}/", gantry.display()));
        let out = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap_or(-1), text)
    }

    #[test]
    fn quoting_survives_any_command() {
        // eval sees exactly the text the user wrote: same output as running it directly.
        let command = r#"echo "it's" '$HOME' \n "a  b" $((1+2))"#;
        let (rc, via_eval) = run(&format!("eval {}", quote(command)));
        let (_, direct) = run(command);
        assert_eq!(rc, 0);
        assert_eq!(via_eval, direct);
        assert_eq!(via_eval.trim(), "it's $HOME n a  b 3");
    }

    #[test]
    fn every_script_command_runs_and_any_failure_fails() {
        let j = job("script:\n  - 'false'\n  - echo second ran\nafter_failure: echo after failure\nafter_success: echo never\n");
        let (rc, out) = run(&main_step(&j, &[], "."));
        assert_eq!(rc as i64, EXIT_FAILED, "{out}");
        assert!(out.contains("second ran"));
        assert!(out.contains("The command \"false\" exited with 1."));
        assert!(out.contains("after failure"));
        assert!(!out.contains("never"));
        assert!(out.contains("gantry_phase:end:script:rc=1"));
    }

    #[test]
    fn a_failing_install_errors_and_stops() {
        let j = job("install:\n  - sh -c 'exit 3'\nscript: echo never\n");
        let (rc, out) = run(&main_step(&j, &[], "."));
        assert_eq!(rc as i64, EXIT_ERRORED, "{out}");
        assert!(out.contains("failed and exited with 3 during install"));
        assert!(!out.contains("never"));
        assert!(out.contains("gantry_phase:end:install:rc=3"));
    }

    #[test]
    fn exports_carry_across_phases_and_steps() {
        let j = job("before_install: export GREETING=hello\nscript: echo \"$GREETING $TARGET\"\nafter_script: echo \"after $GREETING\"\n");
        let dir = tempfile::tempdir().unwrap();
        let gantry = dir.path().join("gantry");
        std::fs::create_dir(&gantry).unwrap();
        let fix = |s: String| s.replace("/gantry/", &format!("{}/", gantry.display()));
        let main = fix(main_step(
            &j,
            &[("TARGET".into(), "\"x86 64\"".into())],
            &dir.path().display().to_string(),
        ));
        let out = Command::new("sh").arg("-c").arg(main).output().unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("hello x86 64"));
        let after = fix(phase_step(
            Phase::AfterScript,
            j.commands(Phase::AfterScript),
            &dir.path().display().to_string(),
            9,
        ));
        let out = Command::new("sh").arg("-c").arg(after).output().unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("after hello"),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    #[test]
    fn phases_carry_travis_fold_and_time_markers() {
        let j = job("install: echo installing\nscript: echo testing\n");
        let (rc, out) = run(&main_step(&j, &[], "."));
        assert_eq!(rc, 0);
        assert!(out.contains("travis_fold:start:install\r\x1b[0Ktravis_time:start:00000001\r\x1b[0K\x1b[33;1m$ echo installing"), "{out:?}");
        assert!(out.contains("travis_time:end:00000002:start=0,finish=0,duration=0,event=script\r\x1b[0Ktravis_fold:end:script\r\x1b[0K\n"), "{out:?}");
    }

    /// `addons.apt`'s helper updates the package lists, then installs, and
    /// goes through `sudo` only for a user other than root. `apt-get`, `id`
    /// and `sudo` are stand-ins on the PATH that print what they were asked.
    #[test]
    fn apt_install_updates_first_and_uses_sudo_only_when_not_root() {
        use std::os::unix::fs::PermissionsExt;
        let bin = tempfile::tempdir().unwrap();
        for (name, body) in [
            (
                "apt-get",
                r#"echo "${AS:-root}: apt-get $* DEBIAN_FRONTEND=$DEBIAN_FRONTEND""#,
            ),
            ("sudo", r#"AS=sudo exec "$@""#),
            ("id", r#"echo "$FAKE_UID""#),
        ] {
            let path = bin.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let path = format!(
            "{}:{}",
            bin.path().display(),
            std::env::var("PATH").unwrap()
        );
        let j = job("addons: {apt: {packages: [hello, jq]}}\nscript: 'true'\n");
        for (uid, who) in [("0", "root"), ("1000", "sudo")] {
            let exports = [
                ("PATH".to_string(), path.clone()),
                ("FAKE_UID".to_string(), uid.to_string()),
            ];
            let (rc, out) = run(&main_step(&j, &exports, "."));
            assert_eq!(rc as i64, EXIT_PASSED, "{out}");
            let update = out.find(&format!("{who}: apt-get update -qq "));
            let install = out.find(&format!(
                "{who}: apt-get install -y -qq --no-install-recommends hello jq DEBIAN_FRONTEND=noninteractive\n"
            ));
            assert!(
                update.is_some() && install.is_some() && update < install,
                "{out}"
            );
        }
    }

    #[test]
    fn travis_retry_runs_a_failing_command_up_to_three_times() {
        let flaky = "travis_retry sh -c 'n=$(cat tries 2>/dev/null || echo 0); echo $((n+1)) > tries; [ $n -ge 1 ]'";
        let j = job(&format!("script:\n  - \"{flaky}\"\n  - cat tries\n"));
        let (rc, out) = run(&main_step(&j, &[], "."));
        assert_eq!(rc as i64, EXIT_PASSED, "{out}");
        assert!(out.contains("failed. Retrying, 2 of 3."), "{out}");
        assert!(!out.contains("3 of 3"), "{out}");
        assert!(out.contains("\n2\n"), "two tries: {out}");

        let j = job("script: travis_retry sh -c 'echo try; exit 7'\n");
        let (rc, out) = run(&main_step(&j, &[], "."));
        assert_eq!(rc as i64, EXIT_FAILED, "{out}");
        assert_eq!(out.matches("try\n").count(), 3, "{out}");
        assert!(out.contains("failed 3 times."), "{out}");
        assert!(
            out.contains("exited with 7."),
            "the last status is kept: {out}"
        );
    }

    #[test]
    fn travis_wait_reports_while_it_waits_and_stops_a_command_at_its_limit() {
        let j = job("script:\n  - travis_wait 5 sh -c 'sleep 1.5; echo slow done'\n  - travis_wait 1 sleep 30\n");
        let started = std::time::Instant::now();
        let tick = [("GANTRY_WAIT_TICK".to_string(), "1".to_string())];
        let (rc, out) = run(&main_step(&j, &tick, "."));
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        assert_eq!(rc as i64, EXIT_FAILED, "{out}");
        assert!(
            out.contains("Still running (1 of 5): sh -c sleep 1.5; echo slow done"),
            "{out}"
        );
        assert!(out.contains("slow done"), "{out}");
        assert!(
            out.contains("The command sh -c sleep 1.5; echo slow done exited with 0."),
            "{out}"
        );
        assert!(
            out.contains("Timeout (1 minutes) reached. Terminating \"sleep 30\""),
            "{out}"
        );
        assert!(
            out.contains("The command sleep 30 exited with 137."),
            "{out}"
        );
    }

    #[test]
    fn travis_fold_and_time_print_travis_markers() {
        let j = job("script:\n  - travis_fold start deps; travis_time_start; echo fetching; travis_time_finish; travis_fold end deps\n");
        let (rc, out) = run(&main_step(&j, &[], "."));
        assert_eq!(rc, 0, "{out}");
        let opened = "travis_fold:start:deps\r\x1b[0Ktravis_time:start:";
        let start = out.find(opened).expect(&out) + opened.len();
        let id = &out[start..start + 8];
        assert!(
            u32::from_str_radix(id, 16).unwrap() > 0xffff,
            "not a phase's id: {id}"
        );
        assert!(out.contains(&format!("fetching\ntravis_time:end:{id}:start=0,finish=0,duration=0,event=\r\x1b[0Ktravis_fold:end:deps\r\x1b[0K")), "{out:?}");
    }

    #[test]
    fn travis_terminate_ends_the_step_from_a_subshell_and_leaves_its_status() {
        let j = job("install: (echo inside; travis_terminate 3)\nscript: echo never\n");
        let dir = tempfile::tempdir().unwrap();
        let gantry = dir.path().join("gantry");
        std::fs::create_dir(&gantry).unwrap();
        let main = main_step(&j, &[], ".").replace("/gantry/", &format!("{}/", gantry.display()));
        let out = Command::new("sh").arg("-c").arg(main).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("inside") && !text.contains("never"), "{text}");
        assert_eq!(
            std::fs::read_to_string(gantry.join("terminated")).unwrap(),
            "3\n"
        );
    }
}
