//! A database per test: SQLite in a temp dir, or a fresh PostgreSQL database
//! on the server `GANTRY_TEST_DATABASE_URL` names (scripts/test.sh starts one).

use sqlx::Executor;

/// Which engine a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// The URL of a new, empty PostgreSQL database for one test.
pub async fn fresh_postgres() -> String {
    let admin = std::env::var("GANTRY_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!("GANTRY_TEST_DATABASE_URL is not set: run the tests with scripts/test.sh, which starts PostgreSQL, or point it at a server (postgres://user:pass@127.0.0.1:5432/postgres)")
    });
    let name = format!("gantry_test_{:016x}", rand::random::<u64>());
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at GANTRY_TEST_DATABASE_URL: {e}"));
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create test database");
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    format!("{base}/{name}")
}
