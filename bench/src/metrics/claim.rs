//! Metric 8: two claimers taking 1,000 queued jobs through the server's own
//! claim (`queue::claimer`, which commits the claims waiting together), on
//! SQLite and on PostgreSQL, none claimed twice. Floor: 1,000 single-row `UPDATE … RETURNING` transactions, one
//! after another, on the same database and pool.

use crate::fail;
use crate::setup::ms;
use crate::stats::{num, Row, Samples};
use crate::Cx;
use gantry_server::config::Database;
use gantry_server::queue::claimer::Claimer;
use gantry_server::store::jobs::ClaimRequest;
use gantry_server::store::Db;
use sqlx::Executor;
use std::collections::HashSet;
use std::time::Instant;

const JOBS: i64 = 1_000;

pub async fn run(cx: &Cx) -> Vec<Row> {
    let mut rows = vec![backend(cx, "SQLite", None, 200.0).await];
    match &cx.postgres {
        Some(url) => rows.push(backend(cx, "PostgreSQL", Some(url), 400.0).await),
        None => eprintln!("  claim: no GANTRY_BENCH_DATABASE_URL, PostgreSQL skipped"),
    }
    rows
}

async fn backend(cx: &Cx, name: &str, postgres: Option<&String>, limit_ms: f64) -> Row {
    let (mut floor, mut gantry, mut per_claim) =
        (Samples::default(), Samples::default(), Samples::default());
    let rounds = 1 + cx.claim_rounds;
    for round in 0..rounds {
        let keep = round >= 1;
        let scratch = tempfile::tempdir().unwrap_or_else(|e| fail!("temp dir: {e}"));
        let (db, drop_db) = open(postgres, scratch.path()).await;
        fill(&db).await;
        for gantry_turn in [round % 2 == 0, round % 2 == 1] {
            if gantry_turn {
                let claimer = Claimer::start(db.clone());
                let clock = Instant::now();
                let claimers: Vec<_> = ["claimer-a", "claimer-b"]
                    .into_iter()
                    .map(|who| {
                        let claimer = claimer.clone();
                        tokio::spawn(async move {
                            let mut claimed = Vec::new();
                            loop {
                                let t = Instant::now();
                                let request = ClaimRequest {
                                    runner: who.to_string(),
                                    lease: "bench-lease".to_string(),
                                    lease_ms: 60_000,
                                };
                                match claimer.claim(request).await {
                                    Ok(Some(job)) => claimed.push((job.id.0, ms(t.elapsed()))),
                                    Ok(None) => break,
                                    Err(e) => fail!("claim: {e}"),
                                }
                            }
                            claimed
                        })
                    })
                    .collect();
                let mut all = Vec::new();
                for claimer in claimers {
                    all.extend(claimer.await.unwrap_or_else(|e| fail!("claimer: {e}")));
                }
                let took = ms(clock.elapsed());
                let unique: HashSet<i64> = all.iter().map(|(id, _)| *id).collect();
                if all.len() as i64 != JOBS || unique.len() as i64 != JOBS {
                    fail!(
                        "{name}: {} claims of {} distinct jobs, not {JOBS} once each",
                        all.len(),
                        unique.len()
                    );
                }
                if keep {
                    gantry.push(took);
                    all.iter().for_each(|(_, t)| per_claim.push(*t));
                }
            } else {
                let clock = Instant::now();
                for id in 1..=JOBS {
                    let row: Option<i64> = sqlx::query_scalar(
                        "UPDATE floor_rows SET state = 'running' WHERE id = $1 AND state = 'queued' RETURNING id",
                    )
                    .bind(id)
                    .fetch_optional(&db.pool)
                    .await
                    .unwrap_or_else(|e| fail!("floor update: {e}"));
                    if row != Some(id) {
                        fail!("floor row {id} was not updated");
                    }
                }
                if keep {
                    floor.push(ms(clock.elapsed()));
                }
            }
        }
        db.pool.close().await;
        if let Some(statement) = drop_db {
            if let Some(url) = postgres {
                drop_database(url, &statement).await;
            }
        }
        eprint!("\r  claim ({name}): round {}/{rounds}   ", round + 1);
    }
    eprintln!();
    Row {
        metric: format!("8. claim {JOBS} queued jobs, 2 claimers, {name}"),
        floor: format!(
            "{} ms ({JOBS} single-row UPDATE … RETURNING)",
            num(floor.p50())
        ),
        gantry: format!("{} ms, none claimed twice", num(gantry.p50())),
        ratio: format!("{}× floor", num(gantry.p50() / floor.p50())),
        spread: format!(
            "{} (per claim); all {JOBS}: {}",
            per_claim.spread("ms"),
            gantry.spread("ms")
        ),
        target: format!("≤ {limit_ms} ms"),
        holds: Some(gantry.p50() <= limit_ms),
    }
}

/// A new database with Gantry's schema; for PostgreSQL, the statement that drops it.
async fn open(postgres: Option<&String>, scratch: &std::path::Path) -> (Db, Option<String>) {
    match postgres {
        None => {
            let db = Db::connect(&Database::Sqlite(scratch.join("claim.db")))
                .await
                .unwrap_or_else(|e| fail!("sqlite: {e}"));
            (db, None)
        }
        Some(url) => {
            let name = format!("gantry_bench_{:08x}", rand::random::<u32>());
            let admin = sqlx::PgPool::connect(url)
                .await
                .unwrap_or_else(|e| fail!("cannot connect to GANTRY_BENCH_DATABASE_URL: {e}"));
            admin
                .execute(format!("CREATE DATABASE {name}").as_str())
                .await
                .unwrap_or_else(|e| fail!("create database: {e}"));
            admin.close().await;
            let base = url.rsplit_once('/').map(|(b, _)| b).unwrap_or(url);
            let db = Db::connect(&Database::Postgres(format!("{base}/{name}")))
                .await
                .unwrap_or_else(|e| fail!("postgres: {e}"));
            (db, Some(format!("DROP DATABASE {name} WITH (FORCE)")))
        }
    }
}

async fn drop_database(url: &str, statement: &str) {
    if let Ok(admin) = sqlx::PgPool::connect(url).await {
        let _ = admin.execute(statement).await;
        admin.close().await;
    }
}

/// One repository, one build, `JOBS` queued jobs; and the floor's table.
async fn fill(db: &Db) {
    let mut tx = db
        .pool
        .begin()
        .await
        .unwrap_or_else(|e| fail!("begin: {e}"));
    let statements = [
        "INSERT INTO repos (id, full_name, clone_url, private, default_branch, created_at) VALUES (1, 'bench/claim', '/dev/null', 0, 'master', 0)".to_string(),
        "INSERT INTO builds (id, repo_id, number, state, event, branch, commit_sha, message, author, sender, fork, created_at) VALUES (1, 1, 1, 'queued', 'push', 'master', 'abc', 'bench', 'bench', 'bench', 0, 0)".to_string(),
        "CREATE TABLE floor_rows (id BIGINT PRIMARY KEY, state TEXT NOT NULL)".to_string(),
    ];
    for sql in statements {
        sqlx::query(&sql)
            .execute(&mut *tx)
            .await
            .unwrap_or_else(|e| fail!("{sql}: {e}"));
    }
    for id in 1..=JOBS {
        sqlx::query(
            "INSERT INTO jobs (id, build_id, number, name, stage, stage_index, state, allow_failure, image, spec, created_at, queued_at)
             VALUES ($1, 1, $1, 'job', 'test', 0, 'queued', 0, 'busybox', '{}', 0, 0)",
        )
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap_or_else(|e| fail!("insert job: {e}"));
        sqlx::query("INSERT INTO floor_rows (id, state) VALUES ($1, 'queued')")
            .bind(id)
            .execute(&mut *tx)
            .await
            .unwrap_or_else(|e| fail!("insert floor row: {e}"));
    }
    tx.commit().await.unwrap_or_else(|e| fail!("commit: {e}"));
}
