//! Metric 3: signed push webhooks acknowledged durably per second — a bounded
//! burst over 64 connections — then `kill -9` of the server and a count of
//! what its database kept. Floor: single-row inserts of the same payload into
//! SQLite on the same disk, each its own transaction (one fsync each), with
//! the pragmas Gantry's database uses.

use crate::fail;
use crate::setup::{ms, Project, Stage};
use crate::stats::{num, Row, Samples};
use crate::Cx;
use futures::StreamExt;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor};
use std::collections::HashSet;
use std::str::FromStr;
use std::time::Instant;

const CONNECTIONS: usize = 64;
const FLOOR_ROWS: usize = 500;

pub async fn run(cx: &Cx) -> Vec<Row> {
    let mut stage = Stage::start(&cx.github_url, "0");
    let client = stage.client.clone();
    let data = &stage.data;
    let project = Project::new(&cx.github, "ingest", 9_003, "script: \"true\"\n");
    let body = serde_json::to_vec(&project.payload).unwrap_or_default();

    let floor_path = data.path().join("floor.db");
    let options =
        SqliteConnectOptions::from_str(&format!("sqlite://{}?mode=rwc", floor_path.display()))
            .unwrap_or_else(|e| fail!("sqlite: {e}"));
    let mut floor = options
        .connect()
        .await
        .unwrap_or_else(|e| fail!("sqlite: {e}"));
    for pragma in [
        "PRAGMA journal_mode = WAL",
        "PRAGMA synchronous = FULL",
        "CREATE TABLE rows (id TEXT PRIMARY KEY, payload TEXT NOT NULL)",
    ] {
        floor
            .execute(pragma)
            .await
            .unwrap_or_else(|e| fail!("floor: {e}"));
    }
    let payload_text = String::from_utf8_lossy(&body).to_string();

    // A read-only look into the server's own database, to tell when it is quiet.
    let db_path = data.path().join("gantry.db");
    let mut watch =
        SqliteConnectOptions::from_str(&format!("sqlite://{}?mode=ro", db_path.display()))
            .unwrap_or_else(|e| fail!("sqlite: {e}"))
            .connect()
            .await
            .unwrap_or_else(|e| fail!("cannot open the server's database: {e}"));

    let rounds = 4;
    let per_round = cx.burst / rounds;
    let (mut floor_latency, mut ack_latency) = (Samples::default(), Samples::default());
    let (mut floor_time, mut floor_rows) = (0.0, 0usize);
    let (mut burst_time, mut acked) = (0.0, Vec::<String>::new());
    for round in 0..rounds {
        for gantry_turn in [round % 2 == 0, round % 2 == 1] {
            // Each turn starts on a quiet disk: the builds of the last burst
            // planned and their statuses sent, so neither side's writes
            // compete with the other's turn.
            settle(&mut watch).await;
            if gantry_turn {
                let ids: Vec<String> = (0..per_round)
                    .map(|i| format!("bench-burst-{round}-{i}"))
                    .collect();
                let clock = Instant::now();
                let results: Vec<(String, u16, f64)> = futures::stream::iter(ids)
                    .map(|id| {
                        let (client, body) = (client.clone(), body.clone());
                        async move {
                            let t = Instant::now();
                            let status = client.deliver("push", &id, body).await;
                            (id, status, ms(t.elapsed()))
                        }
                    })
                    .buffer_unordered(CONNECTIONS)
                    .collect()
                    .await;
                burst_time += clock.elapsed().as_secs_f64();
                for (id, status, latency) in results {
                    if status == 202 {
                        acked.push(id);
                        ack_latency.push(latency);
                    } else {
                        fail!("delivery {id} got {status}, not 202");
                    }
                }
            } else {
                let clock = Instant::now();
                for i in 0..FLOOR_ROWS {
                    let t = Instant::now();
                    sqlx::query("INSERT INTO rows (id, payload) VALUES ($1, $2)")
                        .bind(format!("floor-{round}-{i}"))
                        .bind(&payload_text)
                        .execute(&mut floor)
                        .await
                        .unwrap_or_else(|e| fail!("floor insert: {e}"));
                    floor_latency.push(ms(t.elapsed()));
                }
                floor_time += clock.elapsed().as_secs_f64();
                floor_rows += FLOOR_ROWS;
            }
        }
        eprint!("\r  webhooks: round {}/{rounds}   ", round + 1);
    }
    eprintln!();
    let _ = floor.close().await;

    // kill -9 right after the last acknowledgement, then read what was kept.
    stage.server.kill9();
    let _ = watch.close().await;
    let mut db = SqliteConnectOptions::from_str(&format!("sqlite://{}", db_path.display()))
        .unwrap_or_else(|e| fail!("sqlite: {e}"))
        .connect()
        .await
        .unwrap_or_else(|e| fail!("cannot open the killed server's database: {e}"));
    let stored: HashSet<String> = sqlx::query_scalar("SELECT id FROM deliveries")
        .fetch_all(&mut db)
        .await
        .unwrap_or_else(|e| fail!("deliveries: {e}"))
        .into_iter()
        .collect();
    let lost = acked.iter().filter(|id| !stored.contains(*id)).count();
    if lost > 0 {
        fail!(
            "{lost} of {} acknowledged deliveries were lost after kill -9",
            acked.len()
        );
    }

    let floor_rate = floor_rows as f64 / floor_time;
    let gantry_rate = acked.len() as f64 / burst_time;
    let ratio = gantry_rate / floor_rate;
    vec![Row {
        metric: format!(
            "3. signed webhooks acknowledged durably ({} in bursts, {CONNECTIONS} connections), then kill -9",
            acked.len()
        ),
        floor: format!(
            "{}/s (single-row inserts, fsync each; {} ms p50)",
            num(floor_rate),
            num(floor_latency.p50())
        ),
        gantry: format!("{}/s; {} acknowledged, 0 lost", num(gantry_rate), acked.len()),
        ratio: format!("{}×", num(ratio)),
        spread: ack_latency.spread("ms per ack"),
        target: "≥ 10× floor; 0 acknowledged lost".into(),
        holds: Some(ratio >= 10.0),
    }]
}

/// Waits until the server has planned every stored delivery and sent every
/// commit status: its background writes are done.
async fn settle(watch: &mut sqlx::SqliteConnection) {
    let started = Instant::now();
    loop {
        let left: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM deliveries WHERE processed_at IS NULL)
                  + (SELECT count(*) FROM commit_statuses WHERE sent_at IS NULL)",
        )
        .fetch_one(&mut *watch)
        .await
        .unwrap_or_else(|e| fail!("cannot read the server's backlog: {e}"));
        if left == 0 {
            return;
        }
        if started.elapsed() > std::time::Duration::from_secs(300) {
            fail!("the server still has {left} deliveries to plan or statuses to send after 300 s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
