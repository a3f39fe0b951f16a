//! Metric 7: the runner's checkout (libgit2: mirror fetch, workspace,
//! checkout at depth 50) of a repository with ~50k objects served by
//! `git daemon` on 127.0.0.1 — cold (no mirror) and warm (mirror present,
//! a second job of the commit; and a job of another commit, whose
//! checkout starts from the first one's snapshot) — against `git clone`
//! and `git clone --reference`. Each checkout and clone
//! starts with the disk flushed (`sync`): the cold one writes tens of MB,
//! and the warm one right after would otherwise queue behind its write-back.

use crate::fail;
use crate::setup::ms;
use crate::stats::{num, Row, Samples};
use crate::Cx;
use gantry_pipeline::GitOptions;
use gantry_runner::workspace::Workspaces;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// Commits of one file change each: commit + root tree + folder tree + blob.
const COMMITS: usize = 12_500;

pub async fn run(cx: &Cx) -> Vec<Row> {
    let work = tempfile::tempdir().unwrap_or_else(|e| fail!("temp dir: {e}"));
    let (sha, parent, objects) = make_repository(&work.path().join("repo"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| fail!("a free port: {e}"));
    let mut daemon = Command::new("git")
        .args([
            "daemon",
            "--reuseaddr",
            "--listen=127.0.0.1",
            "--export-all",
        ])
        .arg(format!("--port={port}"))
        .arg(format!("--base-path={}", work.path().display()))
        .arg(work.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| fail!("git daemon: {e}"));
    let _daemon = KillOnDrop(&mut daemon);
    let url = format!("git://127.0.0.1:{port}/repo/.git");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    let (mut cli_cold, mut cli_warm) = (Samples::default(), Samples::default());
    let (mut cold, mut warm) = (Samples::default(), Samples::default());
    let mut other = Samples::default();
    let rounds = cx.warmup + cx.samples;
    for round in 0..rounds {
        let keep = round >= cx.warmup;
        let dir = work.path().join(format!("round-{round}"));
        for gantry_turn in [round % 2 == 0, round % 2 == 1] {
            if gantry_turn {
                let workspaces = Workspaces::new(&dir.join("runner"));
                let options = GitOptions::default();
                let turns = [(&sha, &mut cold), (&sha, &mut warm), (&parent, &mut other)];
                for (i, (commit, samples)) in turns.into_iter().enumerate() {
                    crate::setup::flush_disk().await;
                    let clock = Instant::now();
                    if let Err(e) = workspaces
                        .checkout(
                            &url,
                            commit,
                            None,
                            &options,
                            &dir.join(format!("ws-{i}")),
                            None,
                        )
                        .await
                    {
                        fail!("the runner's checkout failed: {e}");
                    }
                    if keep {
                        samples.push(ms(clock.elapsed()));
                    }
                }
            } else {
                let first = dir.join("cli-cold").display().to_string();
                let second = dir.join("cli-warm").display().to_string();
                for (args, samples) in [
                    (vec!["clone", "-q", &url, &first], &mut cli_cold),
                    (
                        vec!["clone", "-q", "--reference", &first, &url, &second],
                        &mut cli_warm,
                    ),
                ] {
                    crate::setup::flush_disk().await;
                    let clock = Instant::now();
                    let ok = tokio::process::Command::new("git")
                        .args(&args)
                        .status()
                        .await
                        .is_ok_and(|s| s.success());
                    if !ok {
                        fail!("git {args:?} failed");
                    }
                    if keep {
                        samples.push(ms(clock.elapsed()));
                    }
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        eprint!("\r  clone: round {}/{rounds}   ", round + 1);
    }
    eprintln!();
    drop(_daemon);

    let cold_ratio = cold.p50() / cli_cold.p50();
    let warm_ratio = warm.p50() / cold.p50();
    let other_ratio = other.p50() / cold.p50();
    vec![
        Row {
            metric: format!("7a. cold checkout, {objects} objects (no mirror)"),
            floor: format!("{} ms (git clone)", num(cli_cold.p50())),
            gantry: format!("{} ms", num(cold.p50())),
            ratio: format!("{}× git clone", num(cold_ratio)),
            spread: cold.spread("ms"),
            target: "≤ 1.1× git clone".into(),
            holds: Some(cold_ratio <= 1.1),
        },
        Row {
            metric: "7b. warm checkout (mirror present, a second job of the commit)".into(),
            floor: format!("{} ms (git clone --reference)", num(cli_warm.p50())),
            gantry: format!("{} ms", num(warm.p50())),
            ratio: format!(
                "{}× Gantry cold; {}× git clone --reference",
                num(warm_ratio),
                num(warm.p50() / cli_warm.p50())
            ),
            spread: warm.spread("ms"),
            target: "≤ 0.1× cold".into(),
            holds: Some(warm_ratio <= 0.1),
        },
        Row {
            metric:
                "7c. warm checkout of another commit (mirror and a snapshot of its parent present)"
                    .into(),
            floor: format!("{} ms (git clone --reference)", num(cli_warm.p50())),
            gantry: format!("{} ms", num(other.p50())),
            ratio: format!("{}× Gantry cold", num(other_ratio)),
            spread: other.spread("ms"),
            target: "≤ 0.1× cold".into(),
            holds: Some(other_ratio <= 0.1),
        },
    ]
}

/// A repository of `COMMITS` commits made with `git fast-import`; its head,
/// the head's parent and its object count.
fn make_repository(path: &Path) -> (String, String, usize) {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(path)
            .args(args)
            .output()
            .unwrap_or_else(|e| fail!("git: {e}"));
        if !out.status.success() {
            fail!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    std::fs::create_dir_all(path).unwrap_or_else(|e| fail!("mkdir: {e}"));
    git(&["init", "-q", "-b", "master"]);
    let mut import = Command::new("git")
        .arg("-C")
        .arg(path)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| fail!("git fast-import: {e}"));
    {
        let mut stdin =
            std::io::BufWriter::new(import.stdin.take().unwrap_or_else(|| fail!("stdin")));
        for i in 0..COMMITS {
            let content = format!("line {i} of a source file\n").repeat(20);
            let message = format!("commit {i}\n");
            let mut out = format!(
                "commit refs/heads/master\nmark :{}\ncommitter Bench <b@b> {} +0000\ndata {}\n{message}",
                i + 1,
                1_700_000_000 + i,
                message.len()
            );
            if i > 0 {
                out.push_str(&format!("from :{i}\n"));
            }
            out.push_str(&format!(
                "M 100644 inline src/d{:02}/file{}.txt\ndata {}\n{content}\n",
                i % 50,
                i % 500,
                content.len()
            ));
            if stdin.write_all(out.as_bytes()).is_err() {
                fail!("git fast-import stopped reading");
            }
        }
    }
    if !import.wait().is_ok_and(|s| s.success()) {
        fail!("git fast-import failed");
    }
    git(&["checkout", "-q", "master"]);
    let head = git(&["rev-parse", "HEAD"]);
    let parent = git(&["rev-parse", "HEAD~1"]);
    let objects: usize = git(&["count-objects", "-v"])
        .lines()
        .filter(|l| l.starts_with("count:") || l.starts_with("in-pack:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok())
        .sum();
    (head, parent, objects)
}

struct KillOnDrop<'a>(&'a mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
