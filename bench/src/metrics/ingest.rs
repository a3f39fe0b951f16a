//! Metric 3: signed push webhooks acknowledged durably per second — a bounded
//! burst over 64 connections — then `kill -9` of the server and a count of
//! what its database kept. Floor: single-row inserts of the same payload into
//! SQLite on the same disk, each its own transaction (one fsync each), with
//! the pragmas Gantry's database uses.

use crate::fail;
use crate::setup::{ms, Project, Stage, SECRET};
use crate::stats::{num, Row, Samples};
use crate::Cx;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor};
use std::collections::HashSet;
use std::str::FromStr;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONNECTIONS: usize = 64;
const FLOOR_ROWS: usize = 500;

pub async fn run(cx: &Cx) -> Vec<Row> {
    let mut stage = Stage::start(&cx.github_url, "0");
    let address = stage.server.url.trim_start_matches("http://").to_string();
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
                let mut connections = Vec::with_capacity(CONNECTIONS);
                for _ in 0..CONNECTIONS {
                    connections.push(HookConnection::open(&address, &body).await);
                }
                let next = std::sync::atomic::AtomicUsize::new(0);
                let clock = Instant::now();
                let results: Vec<(String, u16, f64)> =
                    futures::future::join_all(connections.into_iter().map(|mut connection| {
                        let (ids, next) = (&ids, &next);
                        async move {
                            let mut answered = Vec::new();
                            loop {
                                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                let Some(id) = ids.get(i) else { break };
                                let t = Instant::now();
                                let status = connection
                                    .deliver(id)
                                    .await
                                    .unwrap_or_else(|e| fail!("delivery {id}: {e}"));
                                answered.push((id.clone(), status, ms(t.elapsed())));
                            }
                            answered
                        }
                    }))
                    .await
                    .into_iter()
                    .flatten()
                    .collect();
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

/// One keep-alive HTTP/1.1 connection, as GitHub's sender holds one: a
/// signed push written whole, its answer read whole, then the next. The
/// signature and the request's fixed parts are made once, before the clock
/// starts: GitHub signs on its own machines, so the load generator spends as
/// little of the two cores the server runs on as it can.
struct HookConnection {
    stream: tokio::net::TcpStream,
    /// The request line and headers up to the delivery id.
    head: Vec<u8>,
    /// The headers after the delivery id, then the body.
    tail: Vec<u8>,
    request: Vec<u8>,
    answer: Vec<u8>,
}

impl HookConnection {
    async fn open(address: &str, body: &[u8]) -> HookConnection {
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .unwrap_or_else(|e| fail!("cannot connect to the server at {address}: {e}"));
        let _ = stream.set_nodelay(true);
        let head = format!(
            "POST /hooks/github HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n\
             x-github-event: push\r\nx-github-delivery: "
        )
        .into_bytes();
        let mut tail = format!(
            "\r\nx-hub-signature-256: {}\r\ncontent-length: {}\r\n\r\n",
            gantry_testkit::webhook::sign(SECRET, body),
            body.len()
        )
        .into_bytes();
        tail.extend_from_slice(body);
        HookConnection {
            stream,
            head,
            tail,
            request: Vec::new(),
            answer: Vec::with_capacity(4096),
        }
    }

    /// Delivers the push as `id`; the status the server answered.
    async fn deliver(&mut self, id: &str) -> std::io::Result<u16> {
        self.request.clear();
        self.request.extend_from_slice(&self.head);
        self.request.extend_from_slice(id.as_bytes());
        self.request.extend_from_slice(&self.tail);
        self.stream.write_all(&self.request).await?;
        self.answer.clear();
        let broken =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        loop {
            if let Some(end) = self.answer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.answer[..end])
                    .map_err(|_| broken("the answer's headers are not text"))?;
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|code| code.parse().ok())
                    .ok_or_else(|| broken("no HTTP status in the answer"))?;
                let length: usize = head
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .ok_or_else(|| broken("the answer has no content-length"))?;
                while self.answer.len() < end + 4 + length {
                    if self.stream.read_buf(&mut self.answer).await? == 0 {
                        return Err(broken("the server closed the connection mid-answer"));
                    }
                }
                return Ok(status);
            }
            if self.stream.read_buf(&mut self.answer).await? == 0 {
                return Err(broken("the server closed the connection before answering"));
            }
        }
    }
}
