//! The Gantry server: receives GitHub webhooks, turns pushes into builds and
//! jobs with [`gantry_pipeline`], hands jobs to runners over the runner API
//! ([`gantry_protocol`]), stores builds and logs, and serves the JSON API.
//!
//! ```text
//! webhook ─▶ intake (verify, journal: group commit) ─▶ planner (fetch file, plan) ─▶ jobs queued
//! runner ─▶ queue::claim (long-poll, woken by Notify) ─▶ heartbeat / log / finish ─▶ progress
//! leases: silent runners' jobs are taken back once, then errored "runner lost"
//! ```

pub mod api;
pub mod config;
pub mod cron;
pub mod error;
pub mod forge;
pub mod group_commit;
pub mod intake;
pub mod leases;
pub mod log_index;
pub mod logs;
pub mod metrics;
pub mod notifications;
pub mod planner;
pub mod progress;
pub mod proxy;
pub mod queue;
pub mod retention;
pub mod runners;
pub mod secrets;
pub mod state;
pub mod statuses;
pub mod store;

use config::Config;
use forge::Forge;
use logs::LogStore;
use metrics::Metrics;
use std::future::Future;
use std::sync::Arc;
use store::Db;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Everything a handler or background task needs; cheap to clone.
#[derive(Clone)]
pub struct App {
    pub config: Arc<Config>,
    pub db: Db,
    pub logs: Arc<LogStore>,
    pub forge: Arc<dyn Forge>,
    pub journal: intake::journal::Journal,
    /// Stores what the planner decided, many builds per commit.
    pub builds: planner::store::BuildStore,
    /// Claims jobs for runners: side by side on PostgreSQL, through one
    /// writer on SQLite (see `queue::claimer`).
    pub claimer: queue::claimer::Claimer,
    pub metrics: Arc<Metrics>,
    /// Woken whenever jobs are queued: waiting claims look again.
    pub dispatch: Arc<Notify>,
    /// Woken when deliveries are stored: the planner looks again.
    pub planner_wake: Arc<Notify>,
    /// Woken (every waiter: `notify_waiters`) when the outbox gets rows:
    /// commit statuses and webhook notifications, each sent by a loop of its own.
    pub outbox_wake: Arc<Notify>,
    /// Woken when a cron schedule is set: its first run is now.
    pub cron_wake: Arc<Notify>,
    /// Seals and opens repository secrets; `None` without `GANTRY_SECRET_KEY`.
    pub secrets: Option<secrets::SecretBox>,
    pub admin_token_hash: Option<[u8; 32]>,
    /// `GANTRY_RUNNER_TOKEN` and the embedded runner's token.
    pub runner_token_hashes: Vec<[u8; 32]>,
    /// Signs session cookies (see `api::session`).
    pub session_key: [u8; 32],
    /// What signed-in users may do, as GitHub last said (see `api::permission`).
    #[allow(clippy::type_complexity)]
    pub permissions: Arc<
        std::sync::Mutex<
            std::collections::HashMap<
                (String, String),
                (api::permission::Permission, std::time::Instant),
            >,
        >,
    >,
    /// For calls made on a user's behalf (OAuth).
    pub http: reqwest::Client,
    /// Line indexes of logs being viewed (see `log_index`).
    pub log_indexes: Arc<
        std::sync::Mutex<std::collections::HashMap<gantry_protocol::JobId, log_index::LineIndex>>,
    >,
    /// A job whose log grew: live viewers read on at once.
    pub log_events: tokio::sync::broadcast::Sender<gantry_protocol::JobId>,
    /// The runners asking this server for work (see `runners`).
    pub runners: Arc<runners::Runners>,
    /// Signs webhook notifications (made on first use).
    pub notification_key: notifications::key::NotificationKey,
}

impl App {
    /// After a job's log was cleared or replaced: the viewer's line index of
    /// the old log goes, and viewers with the page open read the log again.
    pub(crate) fn log_written_anew(&self, job: gantry_protocol::JobId) {
        self.log_indexes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&job);
        let _ = self.log_events.send(job);
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot use the data directory: {0}")]
    DataDir(#[from] std::io::Error),
    #[error("{0}")]
    Forge(String),
    #[error("{0}")]
    Secrets(String),
}

/// A built server: storage open, migrations run, ready to serve.
pub struct Server {
    app: App,
}

impl Server {
    /// Opens storage and wires the parts; `embedded_runner_token` is the
    /// token an in-process runner will present.
    pub async fn build(
        config: Config,
        embedded_runner_token: Option<&str>,
    ) -> Result<Server, StartError> {
        std::fs::create_dir_all(&config.data_dir)?;
        let db = Db::connect(&config.database).await?;
        if db.backend == store::Backend::Sqlite {
            let released = store::deliveries::release_all(&db).await?;
            if released > 0 {
                tracing::warn!(
                    count = released,
                    "deliveries left half-planned by a previous run are planned again"
                );
            }
        }
        let sealer = config.secret_key.as_deref().map(secrets::SecretBox::new);
        {
            let mut conn = db.pool.acquire().await?;
            secrets::check_key(&mut conn, sealer.as_ref())
                .await
                .map_err(StartError::Secrets)?;
        }
        let logs = Arc::new(LogStore::new(config.data_dir.join("logs"))?);
        let forge: Arc<dyn Forge> = Arc::new(
            forge::GitHub::new(
                &config.github_api_url,
                match (&config.github_app, config.github_token.as_deref()) {
                    (Some((id, pem)), _) => forge::Credentials::App {
                        id: *id,
                        key_pem: pem,
                    },
                    (None, Some(token)) => forge::Credentials::Token(token),
                    (None, None) => forge::Credentials::None,
                },
            )
            .map_err(StartError::Forge)?,
        );
        let planner_wake = Arc::new(Notify::new());
        let journal = intake::journal::Journal::start(db.clone(), planner_wake.clone());
        let claimer = queue::claimer::Claimer::start(db.clone());
        let config = Arc::new(config);
        let dispatch = Arc::new(Notify::new());
        let outbox_wake = Arc::new(Notify::new());
        let builds = planner::store::BuildStore::start(
            db.clone(),
            config.clone(),
            outbox_wake.clone(),
            dispatch.clone(),
        );
        let mut runner_token_hashes: Vec<[u8; 32]> = config
            .runner_token
            .iter()
            .map(|t| api::auth::hash_token(t))
            .collect();
        runner_token_hashes.extend(embedded_runner_token.map(api::auth::hash_token));
        let session_key =
            api::session::key(config.admin_token.as_deref(), config.secret_key.as_deref());
        let app = App {
            session_key,
            permissions: Arc::default(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(15))
                .build()
                .map_err(|e| StartError::Forge(format!("cannot build an HTTP client: {e}")))?,
            secrets: sealer,
            admin_token_hash: config.admin_token.as_deref().map(api::auth::hash_token),
            runner_token_hashes,
            config,
            db,
            logs,
            forge,
            journal,
            builds,
            claimer,
            metrics: Arc::new(Metrics::default()),
            dispatch,
            planner_wake,
            outbox_wake,
            cron_wake: Arc::new(Notify::new()),
            log_events: tokio::sync::broadcast::channel(1024).0,
            runners: Arc::default(),
            log_indexes: Arc::default(),
            notification_key: Default::default(),
        };
        Ok(Server { app })
    }

    pub fn app(&self) -> &App {
        &self.app
    }

    /// Serves until `shutdown` resolves, with the planner and lease checker running.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let planner = tokio::spawn(planner::run(self.app.clone()));
        let leases = tokio::spawn(leases::run(self.app.clone()));
        let statuses = tokio::spawn(statuses::run(self.app.clone()));
        let notifications = tokio::spawn(notifications::send::run(self.app.clone()));
        let crons = tokio::spawn(cron::run(self.app.clone()));
        let retention = tokio::spawn(retention::run(self.app.clone()));
        // Routes made ready once: served as a bare router, axum would rebuild
        // the route table for every connection (~30 KiB each, kept while the
        // connection stays open).
        let router = api::router(self.app.clone()).into_make_service();
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
        planner.abort();
        leases.abort();
        statuses.abort();
        notifications.abort();
        crons.abort();
        retention.abort();
        result
    }
}
