//! Storage, one module per aggregate. SQLite (default) or PostgreSQL through
//! sqlx's `Any` driver: the same SQL (`$1` placeholders, `RETURNING`,
//! `ON CONFLICT`) runs on both; the few differences are chosen by [`Backend`].

pub mod builds;
pub mod crons;
pub mod deliveries;
pub mod deploy_locks;
pub mod jobs;
pub mod repos;

use crate::config::Database;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, Connection, Executor};
use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Mutex, Notify, OwnedMutexGuard};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// How SQLite begins a transaction that will write (see [`Db::begin`]).
pub const SQLITE_BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// How long a pooled SQLite connection is kept. The pool hands out its idle
/// connections in turn, and the server's background loops (planner,
/// statuses, leases) take one every second or so, so an idle timeout alone
/// closes none of them: every connection a burst opened would stay for good,
/// each with a worker thread, a page cache and prepared statements. With a
/// lifetime, a quiet server is back to one pooled connection within a minute,
/// and opening one costs well under a millisecond.
const SQLITE_CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// Who goes first when several writers wait on SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Someone waits for this write: a webhook for its acknowledgement.
    Urgent,
    /// Background work, and requests that are not held up by others.
    Normal,
}

/// The database: a pool and which engine is behind it.
#[derive(Debug, Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
    /// PostgreSQL: connections for job claims, whose commits do not wait
    /// for their WAL flush (see `queue::claimer`); opened on first use.
    claim_pool: Option<AnyPool>,
    /// SQLite: whose turn it is to write (see [`Db::begin`]).
    turns: Arc<WriteTurns>,
}

/// SQLite: this process's writers, queued for the one write lock.
#[derive(Debug, Default)]
struct WriteTurns {
    lock: Arc<Mutex<()>>,
    /// Urgent writers waiting; the others hold back until none is left.
    urgent: AtomicUsize,
    urgent_gone: Notify,
}

/// An urgent writer waiting for the lock; normal writers hold back meanwhile.
struct UrgentWaiting<'a>(&'a WriteTurns);

impl<'a> UrgentWaiting<'a> {
    fn new(turns: &'a WriteTurns) -> Self {
        turns.urgent.fetch_add(1, Ordering::SeqCst);
        UrgentWaiting(turns)
    }
}

impl Drop for UrgentWaiting<'_> {
    fn drop(&mut self) {
        if self.0.urgent.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.urgent_gone.notify_waiters();
        }
    }
}

/// A transaction begun with [`Db::begin`]. On SQLite it also holds this
/// process's turn to write until it is committed or dropped.
pub struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _turn: Option<OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl Deref for WriteTx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Unix time in milliseconds, the unit every `*_at` column holds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Db {
    /// Connects and runs pending migrations.
    pub async fn connect(database: &Database) -> Result<Db, sqlx::Error> {
        Db::connect_with(database, SQLITE_CONNECTION_LIFETIME).await
    }

    /// [`Db::connect`] with another lifetime for pooled SQLite connections.
    async fn connect_with(
        database: &Database,
        sqlite_lifetime: Duration,
    ) -> Result<Db, sqlx::Error> {
        sqlx::any::install_default_drivers();
        let (url, backend) = match database {
            Database::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
                }
                (
                    format!("sqlite://{}?mode=rwc", path.display()),
                    Backend::Sqlite,
                )
            }
            Database::Postgres(url) => (url.clone(), Backend::Postgres),
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let claim_pool = (backend == Backend::Postgres).then(|| {
            AnyPoolOptions::new()
                .max_connections(4)
                .idle_timeout(Duration::from_secs(30))
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("SET synchronous_commit = off").await?;
                        Ok(())
                    })
                })
                .connect_lazy_with(options.clone())
        });
        let pool = match backend {
            Backend::Sqlite => {
                // One writer at a time whatever the count (claims have their
                // own connection, see `queue::claimer`); readers need few.
                // Each connection has a worker thread, a page cache and
                // prepared statements, and opening one costs well under a
                // millisecond, so an idle server closes what it does not use
                // (see `SQLITE_CONNECTION_LIFETIME`).
                AnyPoolOptions::new()
                    .max_connections(4)
                    .idle_timeout(Duration::from_secs(30))
                    .max_lifetime(sqlite_lifetime)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // WAL lets readers run beside the writer; FULL makes every
                            // commit durable before the webhook is acknowledged.
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA synchronous = FULL").await?;
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            // 256 KiB of page cache, not SQLite's 2 MiB: a
                            // query touches a few pages and the OS caches the
                            // file anyway. In a busy spell the pool's four
                            // connections filled 1.7 MiB of caches, and the
                            // holes they left in the heap stayed resident.
                            conn.execute("PRAGMA cache_size = -256").await?;
                            // The webhook journal leaves checkpoints to the
                            // other writers, so a burst grows the WAL; once
                            // checkpointed, it goes back to at most 64 MiB.
                            conn.execute("PRAGMA journal_size_limit = 67108864").await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(16)
                    .connect_with(options)
                    .await?
            }
        };
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        Ok(Db {
            pool,
            backend,
            claim_pool,
            turns: Arc::default(),
        })
    }

    /// The connections side-by-side job claims run on: on PostgreSQL their
    /// own, whose commits do not wait for the WAL flush (see
    /// `queue::claimer`); elsewhere the one pool.
    pub fn claims_pool(&self) -> &AnyPool {
        self.claim_pool.as_ref().unwrap_or(&self.pool)
    }

    /// A fresh SQLite database in a temporary folder, for unit tests; the
    /// folder goes when the returned guard drops.
    #[cfg(test)]
    pub(crate) async fn scratch() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let db = Db::connect(&Database::Sqlite(dir.path().join("gantry.db")))
            .await
            .expect("a scratch database");
        (dir, db)
    }

    /// A transaction that will write. On SQLite it takes the write lock at
    /// `BEGIN IMMEDIATE`: a deferred transaction that reads first cannot
    /// upgrade once another connection has committed (WAL answers "database
    /// is locked" at once, past any busy timeout).
    ///
    /// SQLite has one writer at a time, and a connection that finds the lock
    /// taken sleeps in its busy handler, 1, 2, 5, 10 ms and more, whether or
    /// not the lock comes free in the meantime. Under a burst of webhooks
    /// those sleeps (thousands a second, 4–7 ms each) held up the journal's
    /// commits. So this process's write transactions first queue for their
    /// turn (see [`Db::turn`]), and each is woken the moment the one before
    /// it ends. The busy handler still guards against other processes and
    /// the few single-statement writes that run outside a transaction.
    pub async fn begin(&self) -> Result<WriteTx, sqlx::Error> {
        let turn = self.turn(Turn::Normal).await;
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with(SQLITE_BEGIN_WRITE).await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(WriteTx { tx, _turn: turn })
    }

    /// A write transaction on a connection of the caller's own (see `begin`
    /// for SQLite's `BEGIN IMMEDIATE`); the caller takes its turn first.
    pub async fn begin_on<'c>(
        &self,
        conn: &'c mut AnyConnection,
    ) -> Result<sqlx::Transaction<'c, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => conn.begin_with(SQLITE_BEGIN_WRITE).await,
            Backend::Postgres => conn.begin().await,
        }
    }

    /// A connection of a writer task's own, outside the pool, so the task
    /// never queues behind the pool's other users. It lives in `slot`: taken
    /// out here, put back by the caller once its write succeeded, and opened
    /// anew (running `sqlite_setup`, if any, on SQLite) when the slot is empty.
    pub async fn own_connection(
        &self,
        slot: &mut Option<AnyConnection>,
        sqlite_setup: Option<&str>,
    ) -> Result<AnyConnection, sqlx::Error> {
        if let Some(conn) = slot.take() {
            return Ok(conn);
        }
        let mut conn = self.pool.acquire().await?.detach();
        if let (Backend::Sqlite, Some(setup)) = (self.backend, sqlite_setup) {
            conn.execute(setup).await?;
        }
        Ok(conn)
    }

    /// Waits for this process's turn to write on SQLite (`None` on
    /// PostgreSQL, which has no single write lock). `Turn::Urgent` goes
    /// before every normal writer not already waiting at the lock.
    pub async fn turn(&self, turn: Turn) -> Option<OwnedMutexGuard<()>> {
        if self.backend != Backend::Sqlite {
            return None;
        }
        let turns = &self.turns;
        match turn {
            Turn::Urgent => {
                // Counted until it holds the lock, or until this future is
                // dropped: a count left behind would stall every normal writer.
                let waiting = UrgentWaiting::new(turns);
                let guard = turns.lock.clone().lock_owned().await;
                drop(waiting);
                Some(guard)
            }
            Turn::Normal => {
                loop {
                    let gone = turns.urgent_gone.notified();
                    if turns.urgent.load(Ordering::SeqCst) == 0 {
                        break;
                    }
                    gone.await;
                }
                Some(turns.lock.clone().lock_owned().await)
            }
        }
    }

    /// `FOR UPDATE SKIP LOCKED` where the engine has it: several servers on
    /// PostgreSQL never claim the same row; SQLite serialises writers anyway.
    pub fn skip_locked(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        }
    }
}

/// Booleans are stored as 0/1 so both engines decode them alike.
pub fn flag(b: bool) -> i64 {
    i64::from(b)
}

#[cfg(test)]
mod tests {
    /// The PostgreSQL migrations are the SQLite ones with identity ids (and
    /// `BYTEA` for `BLOB`); a change made to one engine's schema only fails
    /// here, not in production.
    #[test]
    fn the_two_engines_migrations_stay_in_step() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
        let names = |engine: &str| {
            let mut n: Vec<String> = std::fs::read_dir(dir.join(engine))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            n.sort();
            n
        };
        assert_eq!(names("sqlite"), names("postgres"));
        for name in names("sqlite") {
            let sqlite = std::fs::read_to_string(dir.join("sqlite").join(&name)).unwrap();
            let postgres = std::fs::read_to_string(dir.join("postgres").join(&name)).unwrap();
            let expected = sqlite
                .replace(
                    "INTEGER PRIMARY KEY",
                    "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
                )
                .replace(" BLOB,", " BYTEA,")
                .replace("(SQLite)", "(PostgreSQL)");
            assert_eq!(
                postgres, expected,
                "migrations/postgres/{name} differs from its SQLite twin beyond the id column"
            );
        }
    }

    /// A writer someone waits for (the webhook journal) goes before normal
    /// writers that arrive while it waits, not behind them in order.
    #[tokio::test]
    async fn an_urgent_writer_goes_before_normal_writers_that_arrive_later() {
        use super::{Db, Turn};
        use std::sync::{Arc, Mutex};
        use std::time::Duration;
        let (_dir, db) = Db::scratch().await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let writer = |name: &'static str, turn: Turn| {
            let (db, order) = (db.clone(), order.clone());
            tokio::spawn(async move {
                let _turn = db.turn(turn).await;
                order.lock().unwrap().push(name);
            })
        };
        let held = db.turn(Turn::Normal).await;
        let mut writers = Vec::new();
        for (name, turn) in [
            ("urgent 1", Turn::Urgent),
            ("normal", Turn::Normal),
            ("urgent 2", Turn::Urgent),
        ] {
            writers.push(writer(name, turn));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(held);
        for w in writers {
            w.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["urgent 1", "urgent 2", "normal"]);
    }

    /// Connections opened for a burst are closed once it is over, although
    /// the background loops keep taking one at a time (the pool hands its
    /// idle connections out in turn, so none is ever idle for long).
    #[tokio::test]
    async fn connections_a_burst_opened_close_once_it_is_over() {
        use super::Db;
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect_with(
            &crate::config::Database::Sqlite(dir.path().join("pool.db")),
            Duration::from_millis(300),
        )
        .await
        .unwrap();
        let burst = futures::future::try_join_all((0..4).map(|_| db.pool.acquire()))
            .await
            .unwrap();
        assert_eq!(db.pool.size(), 4);
        drop(burst);
        for _ in 0..20 {
            sqlx::query("SELECT 1").execute(&db.pool).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            db.pool.size() <= 1,
            "{} connections still open after the burst",
            db.pool.size()
        );
    }

    /// An urgent writer that gives up waiting (its future dropped) does not
    /// leave normal writers holding back forever.
    #[tokio::test]
    async fn an_urgent_writer_that_gives_up_does_not_stall_the_others() {
        use super::{Db, Turn};
        use std::time::Duration;
        let (_dir, db) = Db::scratch().await;
        let held = db.turn(Turn::Normal).await;
        let urgent = {
            let db = db.clone();
            tokio::spawn(async move { db.turn(Turn::Urgent).await.is_some() })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        urgent.abort();
        assert!(urgent.await.is_err(), "the urgent writer was still waiting");
        drop(held);
        let normal = tokio::time::timeout(Duration::from_secs(5), db.turn(Turn::Normal)).await;
        assert!(normal.is_ok(), "a normal writer never got its turn");
    }
}
