//! The webhook journal: deliveries stored before they are acknowledged, then
//! turned into builds by the planner. A delivery id is stored once, so a
//! redelivery is recognised and creates nothing.
//!
//! Payloads are stored zstd-compressed (`body`): a GitHub payload shrinks to
//! about a fifth, so a burst of webhooks writes and fsyncs a fifth of the
//! pages before it is acknowledged. Deliveries stored before that keep their
//! text in `payload`.

use super::{now_ms, Db};
use sqlx::{AnyConnection, Row};

/// zstd's fastest level: a payload compresses in tens of microseconds, to
/// within a few percent of what the default level gives.
const LEVEL: i32 = 1;

/// Payloads up to this size (nearly all) are compressed with a kept
/// compressor (see `COMPRESSORS`); its tables fit the largest it has seen.
const REUSED_UP_TO: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: String,
    pub event: String,
    /// The payload, compressed.
    body: Vec<u8>,
}

impl NewDelivery {
    /// Compresses `payload` (the JSON as received) for storing.
    pub fn new(id: String, event: String, payload: &[u8]) -> std::io::Result<NewDelivery> {
        if payload.len() > REUSED_UP_TO {
            // Rare; its bigger tables are not kept.
            let body = zstd::bulk::compress(payload, LEVEL)?;
            return Ok(NewDelivery { id, event, body });
        }
        let kept = COMPRESSORS.lock().ok().and_then(|mut kept| kept.pop());
        let mut compressor = match kept {
            Some(compressor) => compressor,
            None => zstd::bulk::Compressor::new(LEVEL)?,
        };
        let body = compressor.compress(payload)?;
        if let Ok(mut kept) = COMPRESSORS.lock() {
            if kept.len() < MAX_KEPT {
                kept.push(compressor);
            }
        }
        Ok(NewDelivery { id, event, body })
    }
}

impl NewDelivery {
    /// [`new`](Self::new) for a payload as a handler received it: one over
    /// [`REUSED_UP_TO`] (GitHub sends up to 25 MB, tens of milliseconds to
    /// compress) is compressed off the async runtime, so other requests are
    /// not held up meanwhile.
    pub async fn received<P: AsRef<[u8]> + Send + 'static>(
        id: String,
        event: String,
        payload: P,
    ) -> std::io::Result<NewDelivery> {
        if payload.as_ref().len() <= REUSED_UP_TO {
            return NewDelivery::new(id, event, payload.as_ref());
        }
        tokio::task::spawn_blocking(move || NewDelivery::new(id, event, payload.as_ref()))
            .await
            .map_err(std::io::Error::other)?
    }
}

/// Compressors kept between payloads: setting one up (its tables zeroed)
/// cost as much as compressing a push payload with it. There are as many
/// as payloads were compressed at once, at most [`MAX_KEPT`].
static COMPRESSORS: std::sync::Mutex<Vec<zstd::bulk::Compressor<'static>>> =
    std::sync::Mutex::new(Vec::new());
const MAX_KEPT: usize = 8;

/// Lets go of the kept compressors (about 100 KiB each): the journal calls
/// it when webhooks have stopped coming, so an idle server gives the memory back.
pub fn release_compressors() {
    if let Ok(mut kept) = COMPRESSORS.lock() {
        kept.clear();
    }
}

#[derive(Debug, Clone)]
pub struct PendingDelivery {
    pub id: String,
    pub event: String,
    /// The JSON as received, or why the stored copy cannot be read.
    pub payload: Result<String, String>,
    /// How many times processing was started, this one included.
    pub attempts: i64,
}

/// The stored payload's text: `body` decompressed, or `payload` as it was
/// stored before compression.
fn payload_text(payload: Option<String>, body: Option<Vec<u8>>) -> Result<String, String> {
    match (body, payload) {
        (Some(body), _) => zstd::stream::decode_all(body.as_slice())
            .map_err(|e| format!("the stored payload cannot be decompressed: {e}"))
            .and_then(|bytes| {
                String::from_utf8(bytes).map_err(|_| "the stored payload is not UTF-8".to_string())
            }),
        (None, Some(text)) => Ok(text),
        (None, None) => Err("the delivery has no stored payload".into()),
    }
}

/// Stores a batch in one statement: on its own (no transaction around it)
/// that is one commit and one fsync for all of them. Returns, per delivery,
/// whether it was new (false: a redelivery).
pub async fn insert_batch(
    conn: &mut AnyConnection,
    batch: &[NewDelivery],
) -> Result<Vec<bool>, sqlx::Error> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    // One statement for the whole batch: one round trip to the database
    // (SQLite's worker thread) instead of one per delivery. Every engine
    // takes far more than 4 × 512 parameters.
    let mut sql = String::with_capacity(80 + batch.len() * 24);
    sql.push_str("INSERT INTO deliveries (id, event, body, received_at) VALUES ");
    for i in 0..batch.len() {
        let n = i * 3;
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&format!("(${}, ${}, ${}, $1)", n + 2, n + 3, n + 4));
    }
    sql.push_str(" ON CONFLICT (id) DO NOTHING RETURNING id");
    let mut query = sqlx::query_scalar::<_, String>(&sql).bind(now_ms());
    for d in batch {
        query = query.bind(&d.id).bind(&d.event).bind(&d.body);
    }
    let mut inserted: std::collections::HashSet<String> =
        query.fetch_all(&mut *conn).await?.into_iter().collect();
    // A delivery sent twice in one batch is new once, the first time.
    Ok(batch.iter().map(|d| inserted.remove(&d.id)).collect())
}

/// Takes up to `limit` unprocessed deliveries for `lease_ms`; a server that
/// dies while planning leaves them to be taken again when the lease ends.
pub async fn lease_pending(
    db: &Db,
    limit: i64,
    lease_ms: i64,
) -> Result<Vec<PendingDelivery>, sqlx::Error> {
    let now = now_ms();
    let sql = format!(
        "UPDATE deliveries SET lease_until = $1, attempts = attempts + 1
         WHERE id IN (SELECT id FROM deliveries WHERE processed_at IS NULL AND (lease_until IS NULL OR lease_until < $2)
                      ORDER BY received_at, id LIMIT $3 {})
         RETURNING id, event, payload, body, attempts",
        db.skip_locked()
    );
    let mut tx = db.begin().await?;
    let rows = sqlx::query(&sql)
        .bind(now + lease_ms)
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    let mut out: Vec<PendingDelivery> = rows
        .iter()
        .map(|r| {
            Ok(PendingDelivery {
                id: r.try_get("id")?,
                event: r.try_get("event")?,
                payload: payload_text(r.try_get("payload")?, r.try_get("body")?),
                attempts: r.try_get("attempts")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Done with a delivery; `outcome` says what came of it.
pub async fn mark_processed(
    conn: &mut AnyConnection,
    id: &str,
    outcome: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE deliveries SET processed_at = $1, outcome = $2 WHERE id = $3")
        .bind(now_ms())
        .bind(outcome)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Try again no sooner than `retry_at_ms` (a passing GitHub outage).
pub async fn retry_later(
    db: &Db,
    id: &str,
    retry_at_ms: i64,
    outcome: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE deliveries SET lease_until = $1, outcome = $2 WHERE id = $3")
        .bind(retry_at_ms)
        .bind(outcome)
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Where a delivery is in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Stored and acknowledged; not planned yet (or being planned now).
    Pending,
    /// An attempt to plan it failed (GitHub unavailable); the next is due
    /// when its lease ends, and `outcome` says why.
    Waiting,
    /// Planned: `outcome` says what came of it (a build, or why none).
    Done,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 3] = [
        DeliveryState::Pending,
        DeliveryState::Waiting,
        DeliveryState::Done,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Waiting => "waiting",
            DeliveryState::Done => "done",
        }
    }

    /// The rows in this state.
    fn condition(self) -> &'static str {
        match self {
            DeliveryState::Pending => "processed_at IS NULL AND outcome IS NULL",
            DeliveryState::Waiting => "processed_at IS NULL AND outcome IS NOT NULL",
            DeliveryState::Done => "processed_at IS NOT NULL",
        }
    }
}

/// A delivery as operators see it: what came of it, or why it waits.
#[derive(Debug, Clone)]
pub struct JournalEntry {
    pub id: String,
    pub event: String,
    /// `owner/name` from the payload, when it names one.
    pub repo: Option<String>,
    pub state: DeliveryState,
    pub attempts: i64,
    pub outcome: Option<String>,
    pub received_at_ms: i64,
    pub processed_at_ms: Option<i64>,
    /// Waiting: when the next attempt is due.
    pub next_attempt_ms: Option<i64>,
}

/// The newest `limit` deliveries (in `state`, when given), newest first.
pub async fn recent(
    db: &Db,
    state: Option<DeliveryState>,
    limit: i64,
) -> Result<Vec<JournalEntry>, sqlx::Error> {
    let sql = format!(
        "SELECT id, event, payload, body, received_at, processed_at, lease_until, attempts, outcome
         FROM deliveries WHERE {} ORDER BY received_at DESC, id DESC LIMIT $1",
        state.map_or("1 = 1", DeliveryState::condition)
    );
    let rows = sqlx::query(&sql).bind(limit).fetch_all(&db.pool).await?;
    let mut entries = Vec::with_capacity(rows.len());
    let mut payloads = Vec::with_capacity(rows.len());
    for r in &rows {
        let processed_at: Option<i64> = r.try_get("processed_at")?;
        let outcome: Option<String> = r.try_get("outcome")?;
        let state = match (processed_at, &outcome) {
            (Some(_), _) => DeliveryState::Done,
            (None, Some(_)) => DeliveryState::Waiting,
            (None, None) => DeliveryState::Pending,
        };
        let entry = JournalEntry {
            id: r.try_get("id")?,
            event: r.try_get("event")?,
            repo: None,
            state,
            attempts: r.try_get("attempts")?,
            outcome,
            received_at_ms: r.try_get("received_at")?,
            processed_at_ms: processed_at,
            next_attempt_ms: match state {
                DeliveryState::Waiting => r.try_get("lease_until")?,
                _ => None,
            },
        };
        let payload: Option<String> = r.try_get("payload")?;
        let body: Option<Vec<u8>> = r.try_get("body")?;
        entries.push(entry);
        payloads.push((payload, body));
    }
    // Decompressing and reading up to a hundred payloads: off the runtime.
    // Should that fail, the entries are still shown, without their repository.
    let repos = tokio::task::spawn_blocking(move || {
        payloads
            .into_iter()
            .map(|(payload, body)| payload_text(payload, body).ok().and_then(|t| repo_of(&t)))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    for (entry, repo) in entries.iter_mut().zip(repos) {
        entry.repo = repo;
    }
    Ok(entries)
}

/// The repository a GitHub payload names (`repository.full_name`).
fn repo_of(payload: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Payload {
        repository: Option<Repository>,
    }
    #[derive(serde::Deserialize)]
    struct Repository {
        full_name: String,
    }
    serde_json::from_str::<Payload>(payload)
        .ok()?
        .repository
        .map(|r| r.full_name)
}

pub async fn count(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM deliveries")
        .fetch_one(&db.pool)
        .await
}

pub async fn pending_count(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE processed_at IS NULL")
        .fetch_one(&db.pool)
        .await
}

/// Deletes up to `limit` deliveries planned before `before_ms`; returns how
/// many. Their builds stay, and a build keeps its delivery's id, so a late
/// redelivery of one still creates no second build.
pub async fn forget_processed(db: &Db, before_ms: i64, limit: i64) -> Result<u64, sqlx::Error> {
    // In this process's turn at SQLite's write lock, like every background
    // write: a burst of webhooks (the journal's urgent turn) goes first.
    let mut tx = db.begin().await?;
    let result = sqlx::query(
        "DELETE FROM deliveries WHERE id IN \
         (SELECT id FROM deliveries WHERE processed_at IS NOT NULL AND processed_at < $1 LIMIT $2)",
    )
    .bind(before_ms)
    .bind(limit)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(result.rows_affected())
}

/// Frees every planning lease: on SQLite only one server runs, so leases left
/// at start-up belong to a server that died, and its deliveries are retried now.
pub async fn release_all(db: &Db) -> Result<u64, sqlx::Error> {
    let result = sqlx::query("UPDATE deliveries SET lease_until = NULL WHERE processed_at IS NULL AND lease_until IS NOT NULL")
        .execute(&db.pool)
        .await?;
    Ok(result.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_reads_back_as_received_whichever_way_it_was_stored() {
        let json = r#"{"zen": "Keep it logically awesome.", "hook_id": 1}"#;
        let new = NewDelivery::new("d".into(), "ping".into(), json.as_bytes()).unwrap();
        assert_eq!(payload_text(None, Some(new.body)), Ok(json.to_string()));
        // Stored as text before compression.
        assert_eq!(payload_text(Some(json.into()), None), Ok(json.to_string()));
        // A damaged row errors that delivery alone, saying why.
        let damaged = payload_text(None, Some(b"not zstd".to_vec())).unwrap_err();
        assert!(damaged.contains("cannot be decompressed"), "{damaged}");
        assert!(payload_text(None, None).is_err());
    }

    /// A payload too big for a kept compressor is compressed off the
    /// runtime, and reads back the same.
    #[tokio::test]
    async fn a_large_payload_is_compressed_off_the_runtime_and_reads_back_whole() {
        let json = format!("{{\"big\": \"{}\"}}", "xyz".repeat(100_000));
        assert!(json.len() > REUSED_UP_TO);
        for payload in [json.clone(), "{}".to_string()] {
            let new = NewDelivery::received("d".into(), "push".into(), payload.clone())
                .await
                .unwrap();
            assert_eq!(payload_text(None, Some(new.body)), Ok(payload));
        }
    }

    /// A kept compressor carries nothing from one payload to the next, a
    /// payload too big for one is compressed on its own, and compressing
    /// goes on after the kept ones are let go.
    #[test]
    fn payloads_in_a_row_each_read_back_whole() {
        let payloads = [
            "{\"a\": 1}".to_string(),
            format!("{{\"big\": \"{}\"}}", "xyz".repeat(40_000)),
            format!("{{\"commits\": \"{}\"}}", "abc".repeat(2_000)),
            "{}".to_string(),
        ];
        for json in payloads.iter().chain(payloads.iter().rev()) {
            let new = NewDelivery::new("d".into(), "push".into(), json.as_bytes()).unwrap();
            assert!(new.body.len() < json.len().max(64));
            assert_eq!(payload_text(None, Some(new.body)).as_ref(), Ok(json));
            release_compressors();
            let again = NewDelivery::new("d".into(), "push".into(), json.as_bytes()).unwrap();
            assert_eq!(payload_text(None, Some(again.body)).as_ref(), Ok(json));
        }
    }
}
