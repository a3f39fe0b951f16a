//! Metric 6: resident memory of an idle server and an idle remote runner
//! (separate processes, so each is measured alone), after `idle` seconds,
//! and again after 100 jobs and the same settling time. A second round of
//! 100 jobs and the same wait tells a one-time cost (code the jobs paged in)
//! from a leak: a leak grows again, a one-time cost does not.
//!
//! Beside them, in the same waits, a server as `gantry server` starts by
//! default: one embedded job slot, so the runner lives in the server's
//! process. Its budget is the two others' together.

use crate::fail;
use crate::setup::{Client, Memory, Process, Project, Stage};
use crate::stats::{num, Row};
use crate::Cx;
use std::time::Duration;

const JOBS: i64 = 100;

/// One process measured: its name in the table, its budget, and readings
/// idle, right after the jobs, and settled.
struct Subject<'a> {
    who: &'a str,
    limit: f64,
    process: &'a Process,
    readings: Vec<Memory>,
}

impl Subject<'_> {
    fn read(&mut self) {
        self.readings.push(self.process.memory());
    }
}

pub async fn run(cx: &Cx) -> Vec<Row> {
    let split = Stage::start(&cx.github_url, "0");
    let runner = Process::runner(&split.server.url, &split.data.path().join("runner"), 2);
    let default = Stage::start(&cx.github_url, "1");
    let pipeline = format!("image: {}\nscript: \"true\"\n", cx.image);
    let split_project = Project::new(&cx.github, "idle", 9_006, &pipeline);
    let default_project = Project::new(&cx.github, "idle-default", 9_007, &pipeline);
    let mut subjects = [
        Subject {
            who: "server",
            limit: 20.0,
            process: &split.server,
            readings: vec![],
        },
        Subject {
            who: "runner",
            limit: 12.0,
            process: &runner,
            readings: vec![],
        },
        Subject {
            who: "server with its default embedded runner (1 job slot)",
            limit: 32.0,
            process: &default.server,
            readings: vec![],
        },
    ];

    eprintln!("  idle: waiting {} s", cx.idle.as_secs());
    tokio::time::sleep(cx.idle).await;
    subjects.iter_mut().for_each(Subject::read);

    for round in 0..2 {
        eprintln!("  idle: {JOBS} jobs on each server (round {})", round + 1);
        for _ in 0..JOBS {
            split.client.push(&split_project).await;
            default.client.push(&default_project).await;
        }
        let first = round * JOBS + 1;
        tokio::join!(
            all_passed(&split.client, "idle", first),
            all_passed(&default.client, "idle-default", first)
        );
        subjects.iter_mut().for_each(Subject::read);
        eprintln!("  idle: waiting {} s again", cx.idle.as_secs());
        tokio::time::sleep(cx.idle).await;
        subjects.iter_mut().for_each(Subject::read);
    }

    subjects.iter().map(|s| row(cx, s)).collect()
}

/// Waits for builds `first..first + 100` of a server; each must pass.
async fn all_passed(client: &Client, project: &str, first: i64) {
    for id in first..first + JOBS {
        let build = client
            .finished(id, Duration::from_millis(100), Duration::from_secs(900))
            .await;
        if build["state"] != "passed" {
            fail!(
                "idle-memory build {id} of {project} ended {}: {}",
                build["state"],
                build["reason"]
            );
        }
    }
}

fn row(cx: &Cx, subject: &Subject) -> Row {
    let [idle, busy, after, _, again] = [0, 1, 2, 3, 4].map(|i| subject.readings[i]);
    let back = after.rss / idle.rss;
    Row {
        metric: format!(
            "6. {} RSS idle {} s, then after {JOBS} jobs and {} s more",
            subject.who,
            cx.idle.as_secs(),
            cx.idle.as_secs()
        ),
        floor: "–".into(),
        gantry: format!(
            "{} MiB idle; {} MiB right after the jobs; {} MiB settled (heap and stacks: {} → {} → {} MiB; processes: {} → {} → {}); settled after {JOBS} more jobs: {} MiB, {}× the first settled (heap and stacks {} MiB)",
            num(idle.rss),
            num(busy.rss),
            num(after.rss),
            num(idle.anon),
            num(busy.anon),
            num(after.anon),
            idle.processes,
            busy.processes,
            after.processes,
            num(again.rss),
            num(again.rss / after.rss),
            num(again.anon),
        ),
        ratio: format!("{}× idle after the jobs", num(back)),
        spread: "–".into(),
        target: format!("≤ {} MiB, back within 10%", subject.limit),
        holds: Some(idle.rss <= subject.limit && back <= 1.10),
    }
}
