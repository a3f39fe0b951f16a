//! Cold clone and warm fetch of a repository with thousands of commits over
//! `git://` on 127.0.0.1, with libgit2 (git2) and with the git CLI, into a
//! bare mirror as the runner does. Prints the median of each.
//!
//! Usage: clone-compare <git-url> <repo-dir-to-add-commits-to> <runs>

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn cli_mirror(url: &str, dir: &Path) {
    let ok = Command::new("git").args(["init", "--bare", "-q"]).arg(dir).status().unwrap().success()
        && Command::new("git").arg("-C").arg(dir).args(["fetch", "-q", url, "+refs/heads/*:refs/heads/*"]).status().unwrap().success();
    assert!(ok, "git fetch failed");
}

fn git2_mirror(url: &str, dir: &Path) {
    let repo = git2::Repository::init_bare(dir).unwrap();
    let mut remote = repo.remote_anonymous(url).unwrap();
    remote.fetch(&["+refs/heads/*:refs/heads/*"], None, None).unwrap();
}

fn add_commits(work: &Path, n: usize, tag: &str) {
    for i in 0..n {
        std::fs::write(work.join(format!("new-{tag}-{i}.txt")), format!("{tag} {i}\n")).unwrap();
        let ok = Command::new("git").arg("-C").arg(work).args(["add", "-A"]).status().unwrap().success()
            && Command::new("git").arg("-C").arg(work).args(["commit", "-qm", &format!("{tag} {i}")]).status().unwrap().success();
        assert!(ok);
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (url, work, runs) = (&args[1], Path::new(&args[2]), args[3].parse::<usize>().unwrap());
    let tmp = std::env::temp_dir().join(format!("clone-compare-{}", std::process::id()));
    let (mut cold_cli, mut cold_git2, mut warm_cli, mut warm_git2) = (vec![], vec![], vec![], vec![]);
    for run in 0..runs {
        // ABAB: alternate which goes first.
        let order: [&str; 2] = if run % 2 == 0 { ["cli", "git2"] } else { ["git2", "cli"] };
        let mut mirrors = vec![];
        for tool in order {
            let dir = tmp.join(format!("{tool}-{run}"));
            let t = Instant::now();
            if tool == "cli" { cli_mirror(url, &dir) } else { git2_mirror(url, &dir) }
            if tool == "cli" { cold_cli.push(t.elapsed()) } else { cold_git2.push(t.elapsed()) }
            mirrors.push((tool, dir));
        }
        add_commits(work, 20, &format!("run{run}"));
        for (tool, dir) in &mirrors {
            let t = Instant::now();
            if *tool == "cli" {
                assert!(Command::new("git").arg("-C").arg(dir).args(["fetch", "-q", url, "+refs/heads/*:refs/heads/*"]).status().unwrap().success());
                warm_cli.push(t.elapsed());
            } else {
                let repo = git2::Repository::open_bare(dir).unwrap();
                repo.remote_anonymous(url).unwrap().fetch(&["+refs/heads/*:refs/heads/*"], None, None).unwrap();
                warm_git2.push(t.elapsed());
            }
        }
        for (_, dir) in mirrors {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    let (cc, cg, wc, wg) = (median(cold_cli), median(cold_git2), median(warm_cli), median(warm_git2));
    println!("| fetch into a bare mirror | git CLI | libgit2 (git2) | libgit2 / CLI |");
    println!("| --- | --- | --- | --- |");
    println!("| cold (whole history) | {:.0} ms | {:.0} ms | {:.2}x |", cc.as_secs_f64() * 1e3, cg.as_secs_f64() * 1e3, cg.as_secs_f64() / cc.as_secs_f64());
    println!("| warm (20 new commits) | {:.0} ms | {:.0} ms | {:.2}x |", wc.as_secs_f64() * 1e3, wg.as_secs_f64() * 1e3, wg.as_secs_f64() / wc.as_secs_f64());
}
