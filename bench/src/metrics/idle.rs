//! Metric 6: resident memory of an idle server and an idle remote runner
//! (separate processes, so each is measured alone), after `idle` seconds,
//! and again after 100 jobs and the same settling time.

use crate::fail;
use crate::setup::{Memory, Process, Project, Stage};
use crate::stats::{num, Row};
use crate::Cx;
use std::time::Duration;

const JOBS: i64 = 100;

pub async fn run(cx: &Cx) -> Vec<Row> {
    let stage = Stage::start(&cx.github_url, "0");
    let client = stage.client.clone();
    let (server, data) = (&stage.server, &stage.data);
    let runner = Process::runner(&server.url, &data.path().join("runner"), 2);
    let project = Project::new(
        &cx.github,
        "idle",
        9_006,
        &format!("image: {}\nscript: \"true\"\n", cx.image),
    );
    eprintln!("  idle: waiting {} s", cx.idle.as_secs());
    tokio::time::sleep(cx.idle).await;
    let (server_idle, runner_idle) = (server.memory(), runner.memory());

    eprintln!("  idle: {JOBS} jobs");
    for _ in 0..JOBS {
        client.push(&project).await;
    }
    // A fresh database: the builds are 1..=100.
    for id in 1..=JOBS {
        let build = client
            .finished(id, Duration::from_millis(100), Duration::from_secs(600))
            .await;
        if build["state"] != "passed" {
            fail!(
                "idle-memory build {id} ended {}: {}",
                build["state"],
                build["reason"]
            );
        }
    }
    let (server_busy, runner_busy) = (server.memory(), runner.memory());
    eprintln!("  idle: waiting {} s again", cx.idle.as_secs());
    tokio::time::sleep(cx.idle).await;
    let (server_after, runner_after) = (server.memory(), runner.memory());

    let row = |who: &str, idle: Memory, busy: Memory, after: Memory, limit: f64| {
        let back = after.rss / idle.rss;
        Row {
            metric: format!(
                "6. {who} RSS idle {} s, then after {JOBS} jobs and {} s more",
                cx.idle.as_secs(),
                cx.idle.as_secs()
            ),
            floor: "–".into(),
            gantry: format!(
                "{} MiB idle; {} MiB right after the jobs; {} MiB settled (heap and stacks: {} → {} → {} MiB; processes: {} → {} → {})",
                num(idle.rss),
                num(busy.rss),
                num(after.rss),
                num(idle.anon),
                num(busy.anon),
                num(after.anon),
                idle.processes,
                busy.processes,
                after.processes,
            ),
            ratio: format!("{}× idle after the jobs", num(back)),
            spread: "–".into(),
            target: format!("≤ {limit} MiB, back within 10%"),
            holds: Some(idle.rss <= limit && back <= 1.10),
        }
    };
    vec![
        row("server", server_idle, server_busy, server_after, 20.0),
        row("runner", runner_idle, runner_busy, runner_after, 12.0),
    ]
}
