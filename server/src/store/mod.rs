//! Storage, one module per aggregate. SQLite (default) or PostgreSQL through
//! sqlx's `Any` driver: the same SQL (`$1` placeholders, `RETURNING`,
//! `ON CONFLICT`) runs on both; the few differences are chosen by [`Backend`].

pub mod builds;
pub mod deliveries;
pub mod deploy_locks;
pub mod jobs;
pub mod repos;

use crate::config::Database;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// How SQLite begins a transaction that will write (see [`Db::begin`]).
pub const SQLITE_BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// The database: a pool and which engine is behind it.
#[derive(Debug, Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
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
        let pool = match backend {
            Backend::Sqlite => {
                // One writer at a time whatever the count (claims have their
                // own connection, see `queue::claimer`); readers need few.
                // Each connection has a worker thread, a page cache and
                // prepared statements, and opening one costs well under a
                // millisecond, so an idle server closes what it does not use.
                AnyPoolOptions::new()
                    .max_connections(4)
                    .idle_timeout(std::time::Duration::from_secs(30))
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // WAL lets readers run beside the writer; FULL makes every
                            // commit durable before the webhook is acknowledged.
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA synchronous = FULL").await?;
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
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
        Ok(Db { pool, backend })
    }

    /// A transaction that will write. On SQLite it takes the write lock at
    /// `BEGIN IMMEDIATE`: a deferred transaction that reads first cannot
    /// upgrade once another connection has committed (WAL answers "database
    /// is locked" at once, past any busy timeout).
    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with(SQLITE_BEGIN_WRITE).await,
            Backend::Postgres => self.pool.begin().await,
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
    /// The PostgreSQL migrations are the SQLite ones with identity ids; a
    /// change made to one engine's schema only fails here, not in production.
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
                .replace("(SQLite)", "(PostgreSQL)");
            assert_eq!(
                postgres, expected,
                "migrations/postgres/{name} differs from its SQLite twin beyond the id column"
            );
        }
    }
}
