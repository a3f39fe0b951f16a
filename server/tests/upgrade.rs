//! Upgrading a database that already holds data: what an older Gantry
//! stored still reads after the new migrations ran — on SQLite and PostgreSQL.

mod support;

use gantry_server::config::Database;
use gantry_server::store::deliveries::{insert_batch, lease_pending, NewDelivery};
use gantry_server::store::Db;
use gantry_testkit::db::{fresh_postgres, Engine};
use sqlx::any::AnyPoolOptions;

/// A database migrated up to (and with) migration `last`, as the Gantry of
/// that migration left it: the migrations are copied to a directory of their
/// own and run from there, checksums and all.
async fn database_at(engine: Engine, last: i64, dir: &std::path::Path) -> Database {
    let name = match engine {
        Engine::Sqlite => "sqlite",
        Engine::Postgres => "postgres",
    };
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../migrations")
        .join(name);
    let older = dir.join("migrations");
    std::fs::create_dir_all(&older).unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let version: i64 = file.split('_').next().unwrap().parse().unwrap();
        if version <= last {
            std::fs::copy(&path, older.join(&file)).unwrap();
        }
    }
    let (database, url) = match engine {
        Engine::Sqlite => {
            let path = dir.join("gantry.db");
            let url = format!("sqlite://{}?mode=rwc", path.display());
            (Database::Sqlite(path), url)
        }
        Engine::Postgres => {
            let url = fresh_postgres().await;
            (Database::Postgres(url.clone()), url)
        }
    };
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    sqlx::migrate::Migrator::new(older.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    // What that Gantry stored: a delivery still to plan and a planned one,
    // their payloads as text.
    for (id, processed) in [("waiting", None), ("planned", Some(2i64))] {
        sqlx::query(
            "INSERT INTO deliveries (id, event, payload, received_at, processed_at, attempts, outcome)
             VALUES ($1, 'push', $2, 1, $3, $4, $5)",
        )
        .bind(id)
        .bind(format!("{{\"zen\": \"{id}\"}}"))
        .bind(processed)
        .bind(i64::from(processed.is_some()))
        .bind(processed.map(|_| "build created"))
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
    database
}

/// Migration 0008 builds the deliveries table again, with payloads stored
/// compressed: the deliveries stored before it are all still there, the one
/// not yet planned reads back as it was received, and new ones store beside
/// them.
async fn deliveries_stored_before_compression_survive_the_upgrade(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let database = database_at(engine, 7, dir.path()).await;
    let db = Db::connect(&database).await.unwrap();

    let kept: Vec<(String, Option<i64>, Option<String>)> =
        sqlx::query_as("SELECT id, processed_at, outcome FROM deliveries ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        kept,
        [
            (
                "planned".to_string(),
                Some(2),
                Some("build created".to_string())
            ),
            ("waiting".to_string(), None, None),
        ]
    );
    let new = NewDelivery::new("after".into(), "push".into(), b"{\"zen\": \"after\"}").unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    assert_eq!(insert_batch(&mut conn, &[new]).await.unwrap(), [true]);
    drop(conn);

    let pending: Vec<(String, Result<String, String>)> = lease_pending(&db, 10, 60_000)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.id, d.payload))
        .collect();
    assert_eq!(
        pending,
        [
            ("after".to_string(), Ok("{\"zen\": \"after\"}".to_string())),
            (
                "waiting".to_string(),
                Ok("{\"zen\": \"waiting\"}".to_string())
            ),
        ]
    );
}

on_both_databases!(deliveries_stored_before_compression_survive_the_upgrade);
