//! Jobs run by the executor against the real Docker engine, with images
//! built locally (scripts/test-images.sh). Each test checks that the job left
//! no container or network behind.

use bytes::Bytes;
use gantry_protocol::JobOutcome;
use gantry_runner::docker::Limits;
use gantry_runner::job::{self};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod support;
use support::*;

#[tokio::test]
async fn a_passing_job_runs_its_phases_in_the_checked_out_repository() {
    let h = default_harness().await;
    let (repo, sha) = repo_with(&[("hello.txt", "hello from the repo\n")]);
    let pipeline = format!("image: {IMAGE}\nenv: [MODE=fast]\ninstall: echo installing in $(pwd)\nscript:\n  - cat hello.txt\n  - echo \"mode=$MODE job=$TRAVIS_JOB_NUMBER test_result=$TRAVIS_TEST_RESULT\"\n");
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline, &[]).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    assert!(
        log.contains("installing in /home/travis/build/acme/widget"),
        "{log}"
    );
    assert!(log.contains("hello from the repo"));
    assert!(log.contains("mode=fast job=7.1 test_result=0"));
    assert_eq!(phase_names(&outcome), ["install", "script"]);
}

#[tokio::test]
async fn a_failing_script_fails_and_an_install_failure_errors() {
    let h = default_harness().await;
    let (repo, sha) = repo_with(&[("f", "x")]);
    let failing = format!("image: {IMAGE}\nscript:\n  - 'false'\n  - echo still runs\nafter_failure: echo reporting failure\n");
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &failing, &[]).await;
    assert_eq!(outcome.outcome, JobOutcome::Failed, "{log}");
    assert_eq!(outcome.exit_code, Some(1));
    assert!(log.contains("still runs") && log.contains("reporting failure"));

    let erroring = format!("image: {IMAGE}\ninstall: ls /no/such/dir\nscript: echo never\n");
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &erroring, &[]).await;
    assert_eq!(outcome.outcome, JobOutcome::Errored, "{log}");
    assert_eq!(
        outcome.reason.as_deref(),
        Some("a command failed during install")
    );
    assert!(!log.contains("\nnever"));
    assert!(log.contains("failed and exited with 1 during install"));
}

/// Steps write into a FIFO the runner reads (not Docker's attach stream):
/// stderr comes along, and a background process that outlives its step
/// still writes into the log rather than dying of SIGPIPE.
#[tokio::test]
async fn stderr_and_a_background_process_reach_the_log() {
    let h = default_harness().await;
    let (repo, sha) = repo_with(&[("f", "x")]);
    let pipeline = format!(
        "image: {IMAGE}\nscript:\n  - echo to-stdout; echo to-stderr >&2\n  - (sleep 1; echo from-the-background) &\nafter_script: sleep 3; echo after-script-ran\n"
    );
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline, &[]).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    let at = |text: &str| {
        log.find(text)
            .unwrap_or_else(|| panic!("{text} not in {log}"))
    };
    // Output lines, not the echoed commands (`$ echo to-stdout; …`).
    assert!(at("\nto-stdout\n") < at("\nto-stderr\n"));
    assert!(at("\nfrom-the-background\n") < at("\nafter-script-ran\n"));
}

/// The phases a job reported, by name, in order.
fn phase_names(outcome: &job::Outcome) -> Vec<&str> {
    outcome.phases.iter().map(|p| p.phase.as_str()).collect()
}

/// The names of the networks labelled with this runner's name.
fn runner_networks(h: &Harness) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args(["network", "ls", "--format", "{{.Name}}", "--filter"])
        .arg(format!("label=gantry.runner={}", h.rt.docker.runner()))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// A runner keeps one network ready for its next job. The job takes it, its
/// clean-up removes it, a fresh one (never joined by a job) takes its place,
/// and a graceful stop removes that.
#[tokio::test]
async fn a_network_made_ahead_serves_one_job_and_none_is_left() {
    let h = default_harness().await;
    h.rt.docker.keep_a_spare_network();
    let wait = Duration::from_secs(30);
    let first = gantry_testkit::eventually("a spare network", wait, || async {
        h.rt.docker.spare_network()
    })
    .await;
    assert_eq!(runner_networks(&h), std::slice::from_ref(&first));
    let (repo, sha) = repo_with(&[("f", "x")]);
    let pipeline = format!("image: {IMAGE}\nscript: 'true'\n");
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline, &[]).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    let second = gantry_testkit::eventually("the next spare", wait, || async {
        h.rt.docker.spare_network().filter(|name| *name != first)
    })
    .await;
    // The job's network (the first spare) went with the job.
    assert_eq!(runner_networks(&h), std::slice::from_ref(&second));
    // A spare pruned by the operator (nothing has joined it) is not missed.
    let pruned = std::process::Command::new("docker")
        .args(["network", "rm", &second])
        .output()
        .unwrap();
    assert!(pruned.status.success());
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline, &[]).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    gantry_testkit::eventually("a spare after the pruned one", wait, || async {
        h.rt.docker.spare_network().filter(|name| *name != second)
    })
    .await;
    h.rt.docker.drop_spares().await;
    assert!(runner_networks(&h).is_empty());
}

#[tokio::test]
async fn services_answer_by_name_on_localhost_and_by_the_addons_hosts_names() {
    let h = default_harness().await;
    let (repo, sha) = repo_with(&[("f", "x")]);
    let pipeline = format!(
        "image: {IMAGE}\nservices:\n  - name: web\n    image: gantry-test/web:1\naddons:\n  hosts: [travis.dev]\nscript:\n  - for i in $(seq 1 50); do wget -qO- http://web:8000/ && break; sleep 0.1; done\n  - wget -qO- http://localhost:8000/\n  - wget -qO- http://travis.dev:8000/\n"
    );
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline, &[]).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    assert_eq!(
        log.matches("hello from the web service").count(),
        3,
        "{log}"
    );
    assert!(log.contains("Started service web (gantry-test/web:1), reachable as web and localhost"));
}

#[tokio::test]
async fn an_image_built_from_the_repositorys_dockerfile() {
    let h = default_harness().await;
    let dockerfile = format!("FROM {IMAGE}\nRUN echo baked into the image > /baked.txt\n");
    let (repo, sha) = repo_with(&[("ci/Dockerfile.test", &dockerfile)]);
    let pipeline = "image:\n  build:\n    dockerfile: Dockerfile.test\n    context: ci\nscript: cat /baked.txt\n";
    let (outcome, log) = run_pipeline(&h, &repo, &sha, pipeline, &[]).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    assert!(log.contains("$ docker build -f Dockerfile.test -t gantry-build/acme/widget:"));
    assert!(log.contains("baked into the image"));

    let broken = "image:\n  build:\n    dockerfile: Missing.dockerfile\nscript: 'true'\n";
    let (outcome, _) = run_pipeline(&h, &repo, &sha, broken, &[]).await;
    assert_eq!(outcome.outcome, JobOutcome::Errored);
    assert!(outcome
        .reason
        .unwrap()
        .contains("Missing.dockerfile does not exist in the repository"));
}

/// A workspace borrows the runner's mirror of the repository instead of a
/// copy: `git` sees the history in the job and inside `docker build`, a build
/// can still commit, and no build can change what later builds check out.
#[tokio::test]
async fn git_works_from_a_mirror_that_no_build_can_change() {
    let h = default_harness().await;
    gantry_testkit::require_image(DEBIAN_IMAGE);
    let dockerfile =
        format!("FROM {DEBIAN_IMAGE}\nCOPY . /src\nRUN git -C /src rev-parse HEAD > /built-from\n");
    let (repo, _) = repo_with(&[("Dockerfile", &dockerfile)]);
    let sha = repo.commit(&[("second.txt", "2")], "second");
    let pipeline = "image:\n  build:\n    dockerfile: Dockerfile\nscript:\n  - echo \"image built from $(cat /built-from)\"\n  - echo \"head $(git rev-parse HEAD), $(git rev-list --count HEAD) commits\"\n  - mirror=$(cat .git/objects/info/alternates)\n  - if touch \"$mirror/planted\" 2>/dev/null; then echo MIRROR WRITABLE; else echo the mirror is read-only; fi\n  - git -c user.name=ci -c user.email=ci@example.com commit -q --allow-empty -m local && echo committed locally\n";
    let (outcome, log) = run_pipeline(&h, &repo, &sha, pipeline, &[]).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    // Whole lines of output: the log also echoes each command.
    let printed = |text: &str| log.lines().any(|l| l.trim_end() == text);
    assert!(printed(&format!("image built from {sha}")), "{log}");
    assert!(printed(&format!("head {sha}, 2 commits")), "{log}");
    assert!(printed("the mirror is read-only"), "{log}");
    assert!(!printed("MIRROR WRITABLE"), "{log}");
    assert!(printed("committed locally"), "{log}");
    let mirrors: Vec<_> = std::fs::read_dir(h.rt.data_dir.join("mirrors"))
        .unwrap()
        .map(|m| m.unwrap().path())
        .collect();
    assert_eq!(mirrors.len(), 1);
    assert!(mirrors[0].join("objects").is_dir());
    assert!(!mirrors[0].join("objects/planted").exists());
}

/// A pull request's job runs on its head merged into its base, as Travis
/// runs GitHub's merge ref: the base branch's newer files are there, and
/// `TRAVIS_COMMIT` names the merge while `TRAVIS_PULL_REQUEST_SHA` names the head.
#[tokio::test]
async fn a_pull_request_runs_merged_into_its_base() {
    let h = default_harness().await;
    gantry_testkit::require_image(DEBIAN_IMAGE);
    let (repo, _) = repo_with(&[("README", "v1\n")]);
    repo.checkout_new_branch("feature");
    let head = repo.commit(&[("feature.txt", "from the pull request\n")], "feature");
    repo.switch_to("master");
    let base = repo.commit(&[("master.txt", "landed on master\n")], "meanwhile");
    let pipeline = format!("image: {DEBIAN_IMAGE}\nscript:\n  - cat feature.txt master.txt\n  - echo \"commit $TRAVIS_COMMIT head $TRAVIS_PULL_REQUEST_SHA\"\n  - echo \"HEAD $(git rev-parse HEAD) parents $(git log -1 --format=%P)\"\n");
    let mut a = assignment(&repo, &head, &pipeline, &[]);
    a.build.event = gantry_pipeline::Event::PullRequest;
    a.build.pull_request = Some(1);
    a.build.base_commit = Some(base.clone());
    let (outcome, log) = run(&h, &a, CancellationToken::new()).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    let printed = |text: &str| log.lines().any(|l| l.trim_end() == text);
    assert!(printed("from the pull request"), "{log}");
    assert!(printed("landed on master"), "{log}");
    let merge = log
        .lines()
        .find_map(|l| l.trim_end().strip_prefix("HEAD "))
        .and_then(|rest| rest.split_once(" parents "))
        .map(|(merge, parents)| (merge.to_string(), parents.to_string()))
        .unwrap_or_else(|| panic!("no HEAD line: {log}"));
    assert_eq!(merge.1, format!("{base} {head}"), "{log}");
    assert!(printed(&format!("commit {} head {head}", merge.0)), "{log}");
}

/// `addons.apt` packages come from Debian's mirror, installed in the job's
/// own container before `before_install`; an image without `apt-get`
/// errors the job there, as a failing `before_install` does.
#[tokio::test]
async fn apt_addon_packages_are_installed_before_before_install() {
    let h = default_harness().await;
    gantry_testkit::require_image(DEBIAN_IMAGE);
    let (repo, sha) = repo_with(&[("f", "x")]);
    let pipeline = format!("image: {DEBIAN_IMAGE}\naddons:\n  apt:\n    packages: [hello]\nbefore_install: echo before install\nscript: hello --greeting='hello from addons.apt'\n");
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline, &[]).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    let printed = |text: &str| log.lines().position(|l| l.trim_end() == text);
    assert!(printed("hello from addons.apt").is_some(), "{log}");
    let install = log
        .find("gantry_apt_install hello")
        .expect("the command is shown");
    assert!(install < log.find("\nbefore install").expect("before_install ran"));

    let pipeline =
        format!("image: {IMAGE}\naddons:\n  apt:\n    packages: [hello]\nscript: echo never\n");
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline, &[]).await;
    assert_eq!(outcome.outcome, JobOutcome::Errored, "{log}");
    assert_eq!(
        outcome.reason.as_deref(),
        Some("a command failed during before_install")
    );
    assert!(
        log.contains("addons.apt needs an image with apt-get (Debian or Ubuntu)"),
        "{log}"
    );
}

/// Travis's browser setup, as mocha's and FormSG's files write it:
/// `addons.chrome` gives `google-chrome` (Debian's Chromium) and
/// `CHROME_BIN`, `services: xvfb` an X display on `DISPLAY`, both ready
/// before `before_install`.
#[tokio::test]
async fn chrome_and_xvfb_are_ready_before_before_install() {
    let h = default_harness().await;
    gantry_testkit::require_image(DEBIAN_IMAGE);
    let (repo, sha) = repo_with(&[("page.html", "<p id=greeting>hello from a page</p>")]);
    let pipeline = format!(
        "image: {DEBIAN_IMAGE}\naddons:\n  chrome: stable\n  apt:\n    packages: [x11-utils]\nservices:\n  - xvfb\nbefore_install: echo \"display $DISPLAY, chrome $CHROME_BIN\"\nscript:\n  - google-chrome --headless --disable-gpu --dump-dom \"file://$PWD/page.html\"\n  - google-chrome-stable --version\n  - xdpyinfo | grep dimensions\n"
    );
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline, &[]).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    assert!(
        log.contains("display :99.0, chrome /usr/local/bin/google-chrome"),
        "{log}"
    );
    assert!(
        log.contains(r#"<p id="greeting">hello from a page</p>"#),
        "Chromium rendered the page: {log}"
    );
    assert!(log.contains("dimensions:    1024x768 pixels"), "{log}");
    let version = log.lines().filter(|l| l.starts_with("Chromium ")).count();
    assert!(version >= 1, "google-chrome-stable --version: {log}");
}

#[tokio::test]
async fn a_missing_image_errors_with_a_clear_reason() {
    let h = default_harness().await;
    let (repo, sha) = repo_with(&[("f", "x")]);
    let pipeline = "image: gantry-test/no-such-image:404\nscript: 'true'\n";
    let (outcome, log) = run_pipeline(&h, &repo, &sha, pipeline, &[]).await;
    assert_eq!(outcome.outcome, JobOutcome::Errored);
    let reason = outcome.reason.unwrap();
    assert!(
        reason.starts_with("image gantry-test/no-such-image:404 is not available"),
        "{reason}"
    );
    assert!(log.contains(&reason));
}

#[tokio::test]
async fn secrets_are_masked_however_they_are_printed() {
    let h = default_harness().await;
    let (repo, sha) = repo_with(&[("f", "x")]);
    let secret = "s3cr3t-T0ken/value+1";
    let pem = "-----BEGIN KEY-----\nMIIBVgIBADANBgkqhkiG9w0B\n-----END KEY-----";
    let pipeline = format!(
        "image: {IMAGE}\nscript:\n  - echo \"plain $API_TOKEN\"\n  - printf '%s' \"$API_TOKEN\" | base64\n  - printf 'split %s' \"${{API_TOKEN%%value+1}}\"; sleep 0.3; printf 'value+1 end\\n'\n  - echo \"$PEM\"\n  - echo \"url s3cr3t-T0ken%2Fvalue%2B1\"\n  - env | grep API_TOKEN\n"
    );
    let (outcome, log) = run(
        &h,
        &assignment(
            &repo,
            &sha,
            &pipeline,
            &[("API_TOKEN", secret), ("PEM", pem)],
        ),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    assert!(!log.contains(secret), "{log}");
    assert!(
        !log.contains("czNjcjN0LVQwa2VuL3ZhbHVlKzE"),
        "base64 of the secret: {log}"
    );
    assert!(
        !log.contains("MIIBVgIBADANBgkqhkiG9w0B"),
        "a line of a multi-line secret: {log}"
    );
    assert!(
        !log.contains("s3cr3t-T0ken%2Fvalue%2B1"),
        "URL-encoded: {log}"
    );
    assert!(log.contains("plain [secure]"));
    assert!(
        log.contains("split [secure] end"),
        "a value split across two writes: {log}"
    );
    assert!(log.contains("API_TOKEN=[secure]"));
}

#[tokio::test]
async fn a_job_over_its_time_limit_is_stopped() {
    let h = harness(
        Limits::default(),
        Duration::from_secs(600),
        Some(Duration::from_secs(3)),
    )
    .await;
    let (repo, sha) = repo_with(&[("f", "x")]);
    let pipeline = format!("image: {IMAGE}\nscript: while true; do echo tick; sleep 0.2; done\nafter_script: echo never\n");
    let started = std::time::Instant::now();
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline, &[]).await;
    assert_eq!(outcome.outcome, JobOutcome::Errored);
    assert_eq!(
        outcome.reason.as_deref(),
        Some("The job exceeded its time limit (3 seconds) and has been terminated.")
    );
    assert!(log.contains("tick"));
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn a_silent_job_is_stopped() {
    let h = harness(Limits::default(), Duration::from_secs(2), None).await;
    let (repo, sha) = repo_with(&[("f", "x")]);
    let pipeline = format!("image: {IMAGE}\nscript: echo start; sleep 60\n");
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline, &[]).await;
    assert_eq!(outcome.outcome, JobOutcome::Errored, "{log}");
    assert!(outcome
        .reason
        .unwrap()
        .starts_with("No output has been received in the last"));
}

/// Travis's shell helpers, as `.travis.yml` files call them, in a busybox
/// image through the whole runner: a retried flaky command passes, a
/// `travis_wait` keeps a quiet command past the no-output limit, a job's own
/// folds leave its phases whole, and `travis_terminate` ends the job with
/// its status, running nothing after.
#[tokio::test]
async fn travis_shell_helpers_work_as_on_travis() {
    let h = harness(Limits::default(), Duration::from_secs(3), None).await;
    let (repo, sha) = repo_with(&[("f", "x")]);
    let pipeline = format!(
        "image: {IMAGE}\n\
         env: GANTRY_WAIT_TICK=1\n\
         install: travis_retry sh -c 'n=$(cat /tmp/tries 2>/dev/null || echo 0); echo $((n+1)) > /tmp/tries; [ $n -ge 1 ]'\n\
         script:\n\
         \x20 - travis_wait 10 sh -c 'sleep 5; echo quiet-command-done'\n\
         \x20 - travis_fold start deps; travis_time_start; echo fetching; travis_time_finish; travis_fold end deps\n"
    );
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline, &[]).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    assert!(log.contains("failed. Retrying, 2 of 3."), "{log}");
    assert!(log.contains("Still running (2 of 10)"), "{log}");
    assert!(log.contains("\nquiet-command-done"), "{log}");
    assert!(
        !log.contains("start=0,finish=0"),
        "every timer got its time: {log}"
    );
    assert_eq!(phase_names(&outcome), ["install", "script"]);

    for (status, expected) in [
        (0, JobOutcome::Passed),
        (1, JobOutcome::Failed),
        (4, JobOutcome::Errored),
    ] {
        let pipeline = format!(
            "image: {IMAGE}\ninstall: (echo inside; travis_terminate {status}; echo not-after-terminate)\nscript: echo never-script\nafter_script: echo never-after-script\n"
        );
        let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline, &[]).await;
        assert_eq!(outcome.outcome, expected, "{log}");
        assert_eq!(
            outcome.reason.as_deref(),
            Some(format!("travis_terminate {status} ended the job during install").as_str())
        );
        assert!(log.contains("\ninside"), "{log}");
        assert!(
            !log.contains("\nnever-") && !log.contains("\nnot-after"),
            "{log}"
        );
    }
}

#[tokio::test]
async fn a_canceled_job_stops_within_seconds() {
    let h = default_harness().await;
    let (repo, sha) = repo_with(&[("f", "x")]);
    let pipeline = format!("image: {IMAGE}\nscript: echo started; sleep 120\n");
    let a = assignment(&repo, &sha, &pipeline, &[]);
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        trigger.cancel();
    });
    let started = std::time::Instant::now();
    let (outcome, log) = run(&h, &a, cancel).await;
    assert_eq!(outcome.outcome, JobOutcome::Canceled, "{log}");
    assert!(log.contains("started"));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "stopped quickly: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_job_using_too_much_memory_errors_as_out_of_memory() {
    let limits = Limits {
        memory_bytes: 32 * 1024 * 1024,
        ..Limits::default()
    };
    let h = harness(limits, Duration::from_secs(600), None).await;
    let (repo, sha) = repo_with(&[("f", "x")]);
    let pipeline =
        format!("image: {IMAGE}\nscript: dd if=/dev/zero of=/dev/null bs=128M count=1\n");
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline, &[]).await;
    assert_eq!(outcome.outcome, JobOutcome::Errored, "{log}");
    let reason = outcome.reason.unwrap();
    assert_eq!(
        reason,
        "out of memory: a process used more than the job's 32 MiB and was killed"
    );
    assert!(log.contains(&reason));
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_megabytes_of_output_arrive_whole_in_order_with_flat_memory() {
    let h = default_harness().await;
    let (repo, sha) = repo_with(&[("f", "x")]);
    const LINES: u64 = 20_000_000;
    let pipeline = format!("image: {IMAGE}\nscript: seq 1 {LINES}\n");
    let a = assignment(&repo, &sha, &pipeline, &[]);
    let (tx, mut rx) = mpsc::channel::<Bytes>(8);
    let peak = Arc::new(AtomicU64::new(0));
    let before = rss_kib();
    // Check order as chunks arrive, holding only a partial line.
    let checker = {
        let peak = peak.clone();
        tokio::spawn(async move {
            let (mut next, mut partial, mut total, mut in_order) = (1u64, Vec::new(), 0u64, true);
            while let Some(chunk) = rx.recv().await {
                total += chunk.len() as u64;
                assert!(chunk.ends_with(b"\n"), "chunks end on a line boundary");
                partial.extend_from_slice(&chunk);
                let mut start = 0;
                for i in 0..partial.len() {
                    if partial[i] == b'\n' {
                        let line = &partial[start..i];
                        if next <= LINES {
                            if line == next.to_string().as_bytes() {
                                next += 1;
                            } else if next > 1 {
                                in_order = false;
                            }
                        }
                        start = i + 1;
                    }
                }
                partial.drain(..start);
                peak.fetch_max(rss_kib(), Ordering::Relaxed);
            }
            (next - 1, total, in_order)
        })
    };
    let outcome = job::run(
        &h.rt,
        &a,
        job::Source::Clone(None),
        tx,
        CancellationToken::new(),
    )
    .await;
    let (seen, total, in_order) = checker.await.unwrap();
    assert_eq!(outcome.outcome, JobOutcome::Passed);
    assert_eq!(seen, LINES, "every line arrived");
    assert!(in_order);
    assert!(total > 168_000_000, "{total} bytes");
    let growth_mib = peak.load(Ordering::Relaxed).saturating_sub(before) / 1024;
    assert!(growth_mib < 64, "memory grew by {growth_mib} MiB");
    assert_no_leftovers(a.job_id.0);
}

/// `addons.ssh_known_hosts` as Travis runs it: before `before_install`,
/// `ssh-keyscan` of each host (with its port) into `~/.ssh/known_hosts`. The
/// image's `ssh-keyscan` is a stand-in from the repository here (the test
/// image has no OpenSSH, and no SSH server is reachable from a job's
/// network); it prints the arguments it got as its key line.
#[tokio::test]
async fn ssh_known_hosts_are_scanned_before_before_install() {
    let h = default_harness().await;
    let (repo, _) = repo_with(&[(
        "bin/ssh-keyscan",
        "#!/bin/sh\ncase \"$*\" in *unreachable*) exit 1;; esac\necho \"|1|c2FsdA==|aGFzaA== ssh-ed25519 AAAAC3Nza $*\"\n",
    )]);
    let sha = repo.make_executable("bin/ssh-keyscan");
    let hosts = "addons:\n  ssh_known_hosts:\n    - git.example.com\n    - 111.22.33.44:5555\n    - '[2001:db8::1]:2222'\n    - unreachable.example\n";
    let pipeline = format!(
        "image: {IMAGE}\nenv:\n  global:\n    - PATH=$TRAVIS_BUILD_DIR/bin:$PATH\n{hosts}before_install: echo before-install-ran\nscript: cat ~/.ssh/known_hosts\n"
    );
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &pipeline, &[]).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    for line in [
        "ssh-ed25519 AAAAC3Nza -t rsa,ecdsa,ed25519 -p 22 -H git.example.com",
        "ssh-ed25519 AAAAC3Nza -t rsa,ecdsa,ed25519 -p 5555 -H 111.22.33.44",
        "ssh-ed25519 AAAAC3Nza -t rsa,ecdsa,ed25519 -p 2222 -H 2001:db8::1",
        "Added the SSH host keys of 111.22.33.44:5555",
        "ssh-keyscan got no host key from unreachable.example",
    ] {
        assert!(log.contains(line), "{line} not in:\n{log}");
    }
    let added = log
        .find("Added the SSH host keys of git.example.com")
        .unwrap();
    assert!(added < log.find("before-install-ran").unwrap(), "{log}");

    // An image without ssh-keyscan: a yellow line, and the job goes on.
    let plain = format!("image: {IMAGE}\n{hosts}script: echo still runs\n");
    let (outcome, log) = run_pipeline(&h, &repo, &sha, &plain, &[]).await;
    assert_eq!(outcome.outcome, JobOutcome::Passed, "{log}");
    assert!(
        log.contains("addons.ssh_known_hosts needs ssh-keyscan (Debian: openssh-client), and this image has none"),
        "{log}"
    );
    assert!(log.contains("still runs"), "{log}");
}
