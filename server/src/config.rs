//! Server settings: every one a flag and an env var; checked before start-up.

use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `gantry server` settings. No `Debug`: it holds tokens and keys.
#[derive(Clone, Args)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, env = "GANTRY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where the database (SQLite) and logs are kept.
    #[arg(long, env = "GANTRY_DATA_DIR", default_value = "./gantry-data")]
    pub data_dir: PathBuf,
    /// `postgres://…` to use PostgreSQL; default SQLite at DATA_DIR/gantry.db.
    #[arg(long, env = "GANTRY_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The URL users reach Gantry at, for links in statuses and logs.
    #[arg(long, env = "GANTRY_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// The secret GitHub signs webhooks with (the webhook's "Secret" field).
    #[arg(long, env = "GANTRY_GITHUB_WEBHOOK_SECRET", hide_env_values = true)]
    pub github_webhook_secret: Option<String>,
    /// A GitHub token to read pipeline files (and, later, report statuses).
    #[arg(long, env = "GANTRY_GITHUB_TOKEN", hide_env_values = true)]
    pub github_token: Option<String>,
    /// Sign in to GitHub as this GitHub App (with GANTRY_GITHUB_APP_KEY_FILE) instead of a token.
    #[arg(long, env = "GANTRY_GITHUB_APP_ID")]
    pub github_app_id: Option<u64>,
    /// The GitHub App's private key (the .pem file GitHub generated).
    #[arg(long, env = "GANTRY_GITHUB_APP_KEY_FILE")]
    pub github_app_key_file: Option<PathBuf>,
    /// A GitHub OAuth app's client id: users sign in to the viewer with GitHub.
    #[arg(long, env = "GANTRY_GITHUB_CLIENT_ID")]
    pub github_client_id: Option<String>,
    /// The OAuth app's client secret.
    #[arg(long, env = "GANTRY_GITHUB_CLIENT_SECRET", hide_env_values = true)]
    pub github_client_secret: Option<String>,
    /// GitHub's web address, for OAuth sign-in (GitHub Enterprise: https://HOST).
    #[arg(long, env = "GANTRY_GITHUB_URL", default_value = "https://github.com")]
    pub github_url: String,
    /// GitHub's REST API (GitHub Enterprise: https://HOST/api/v3).
    #[arg(
        long,
        env = "GANTRY_GITHUB_API_URL",
        default_value = "https://api.github.com"
    )]
    pub github_api_url: String,
    /// Bearer token for write calls of the JSON API (restart, cancel, manual builds).
    #[arg(long, env = "GANTRY_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Shared token remote runners present.
    #[arg(long, env = "GANTRY_RUNNER_TOKEN", hide_env_values = true)]
    pub runner_token: Option<String>,
    /// Encrypts repository secrets at rest (any long random string; keep it safe).
    #[arg(long, env = "GANTRY_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// Show every repository's builds only to the admin, public ones too.
    #[arg(long, env = "GANTRY_PRIVATE_BY_DEFAULT", default_value_t = false)]
    pub private_by_default: bool,
    /// Commit statuses are named `<context>/push` and `<context>/pr`.
    #[arg(long, env = "GANTRY_STATUS_CONTEXT", default_value = "gantry")]
    pub status_context: String,
    /// Jobs the embedded runner runs at once; 0 disables it.
    #[arg(long, env = "GANTRY_EMBEDDED_RUNNERS", default_value_t = 1)]
    pub embedded_runners: u32,
    /// Seconds a runner may go without a heartbeat before its job is taken back.
    #[arg(long, env = "GANTRY_LEASE_SECONDS", default_value_t = 60)]
    pub lease_seconds: u64,
    /// A new push to a branch (or to a pull request) cancels that branch's
    /// older builds: `queued` ones (Travis's default), also `running` ones, or `off`.
    #[arg(long, env = "GANTRY_AUTO_CANCEL", value_enum, default_value_t = AutoCancel::Queued)]
    pub auto_cancel: AutoCancel,
    /// Days a finished job's log is kept; after that it is replaced by one
    /// line saying so. Unset: logs are kept for ever.
    #[arg(long, env = "GANTRY_LOG_RETENTION_DAYS")]
    pub log_retention_days: Option<u32>,
    /// Days a planned webhook delivery's payload is kept in the journal.
    /// The builds it made stay; only what GitHub sent goes.
    #[arg(long, env = "GANTRY_DELIVERY_RETENTION_DAYS", default_value_t = 30)]
    pub delivery_retention_days: u32,
    /// The mail server email notifications go through: `smtp://HOST:25`,
    /// `smtp://USER:PASSWORD@HOST:587?tls=required` (STARTTLS) or
    /// `smtps://USER:PASSWORD@HOST:465`. Unset: no email is sent.
    #[arg(long, env = "GANTRY_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// The From of email notifications; default `Gantry <gantry@HOST>`, HOST
    /// from GANTRY_PUBLIC_URL.
    #[arg(long, env = "GANTRY_EMAIL_FROM")]
    pub email_from: Option<String>,
}

/// Which older builds of a branch or pull request a new one cancels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AutoCancel {
    /// None: every push builds to the end.
    Off,
    /// Those no job of which has started.
    Queued,
    /// Queued ones and running ones (running jobs stop at their next heartbeat).
    Running,
}

/// Where builds are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

/// Settings after checking: what the server runs with.
#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database: Database,
    pub public_url: Option<String>,
    pub webhook_secret: String,
    pub github_token: Option<String>,
    /// A GitHub App's id and private key (PEM).
    pub github_app: Option<(u64, String)>,
    /// A GitHub OAuth app (client id, client secret) for signing users in.
    pub github_oauth: Option<(String, String)>,
    pub github_url: String,
    pub github_api_url: String,
    pub admin_token: Option<String>,
    pub runner_token: Option<String>,
    pub embedded_runners: u32,
    pub lease: Duration,
    pub status_context: String,
    pub secret_key: Option<String>,
    pub private_by_default: bool,
    pub auto_cancel: AutoCancel,
    /// How long a finished job's log is kept (`None`: for ever).
    pub log_retention: Option<Duration>,
    /// How long a planned delivery's payload is kept in the journal.
    pub delivery_retention: Duration,
    /// Where email notifications go out (`None`: none are sent).
    pub email: Option<EmailSettings>,
}

/// The mail server and sender of email notifications. No `Debug`: the URL
/// may hold a password.
#[derive(Clone)]
pub struct EmailSettings {
    pub smtp_url: String,
    pub from: String,
}

impl std::fmt::Debug for Config {
    // Tokens and secrets stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("database", &self.database)
            .field("public_url", &self.public_url)
            .field("github_api_url", &self.github_api_url)
            .field("embedded_runners", &self.embedded_runners)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// A setting that stops start-up, naming what to fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ServerArgs {
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let webhook_secret = self.github_webhook_secret.filter(|s| !s.is_empty()).ok_or_else(|| {
            ConfigError(
                "GANTRY_GITHUB_WEBHOOK_SECRET is not set: set it to the secret of your GitHub webhook (any long random string, e.g. `openssl rand -hex 32`), so Gantry can refuse forged deliveries".into(),
            )
        })?;
        let database = match self.database_url.as_deref() {
            None | Some("") => Database::Sqlite(self.data_dir.join("gantry.db")),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Database::Postgres(url.to_string())
            }
            Some(url) if url.starts_with("sqlite://") => {
                Database::Sqlite(PathBuf::from(url.trim_start_matches("sqlite://")))
            }
            Some(other) => {
                let scheme = other.split(':').next().unwrap_or(other);
                return Err(ConfigError(format!(
                    "GANTRY_DATABASE_URL must start with postgres:// or sqlite://, found `{scheme}:`; leave it unset for SQLite in GANTRY_DATA_DIR"
                )));
            }
        };
        if self
            .secret_key
            .as_deref()
            .is_some_and(|k| !k.is_empty() && k.len() < 16)
        {
            return Err(ConfigError("GANTRY_SECRET_KEY is shorter than 16 characters: use a long random string (openssl rand -hex 32)".into()));
        }
        if self.lease_seconds < 5 {
            return Err(ConfigError(
                "GANTRY_LEASE_SECONDS must be at least 5".into(),
            ));
        }
        if self.log_retention_days == Some(0) {
            return Err(ConfigError(
                "GANTRY_LOG_RETENTION_DAYS must be at least 1: leave it unset to keep logs for ever"
                    .into(),
            ));
        }
        if self.delivery_retention_days == 0 {
            return Err(ConfigError(
                "GANTRY_DELIVERY_RETENTION_DAYS must be at least 1".into(),
            ));
        }
        for (name, value) in [
            ("GANTRY_ADMIN_TOKEN", &self.admin_token),
            ("GANTRY_RUNNER_TOKEN", &self.runner_token),
        ] {
            if value.as_deref().is_some_and(|t| t.len() < 16) {
                return Err(ConfigError(format!(
                    "{name} is shorter than 16 characters: use a long random token"
                )));
            }
        }
        let github_app = match (self.github_app_id, &self.github_app_key_file) {
            (None, None) => None,
            (Some(id), Some(path)) => {
                let pem = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError(format!(
                        "cannot read GANTRY_GITHUB_APP_KEY_FILE {}: {e}",
                        path.display()
                    ))
                })?;
                Some((id, pem))
            }
            (Some(_), None) => {
                return Err(ConfigError("GANTRY_GITHUB_APP_ID is set without GANTRY_GITHUB_APP_KEY_FILE: point it at the App's private key (.pem)".into()))
            }
            (None, Some(_)) => {
                return Err(ConfigError("GANTRY_GITHUB_APP_KEY_FILE is set without GANTRY_GITHUB_APP_ID: set the App's id (its settings page shows it)".into()))
            }
        };
        if github_app.is_some() && self.github_token.as_deref().is_some_and(|t| !t.is_empty()) {
            return Err(ConfigError(
                "set either GANTRY_GITHUB_TOKEN or the GitHub App (GANTRY_GITHUB_APP_ID), not both"
                    .into(),
            ));
        }
        let github_oauth = match (
            self.github_client_id.filter(|v| !v.is_empty()),
            self.github_client_secret.filter(|v| !v.is_empty()),
        ) {
            (None, None) => None,
            (Some(id), Some(secret)) => {
                if self.secret_key.as_deref().is_none_or(str::is_empty) {
                    return Err(ConfigError("GitHub sign-in (GANTRY_GITHUB_CLIENT_ID) needs GANTRY_SECRET_KEY: it encrypts the users' GitHub tokens in their session cookies".into()));
                }
                if self.public_url.is_none() {
                    return Err(ConfigError("GitHub sign-in (GANTRY_GITHUB_CLIENT_ID) needs GANTRY_PUBLIC_URL: GitHub sends users back to <public url>/login/github/callback".into()));
                }
                Some((id, secret))
            }
            _ => {
                return Err(ConfigError("set both GANTRY_GITHUB_CLIENT_ID and GANTRY_GITHUB_CLIENT_SECRET (from the OAuth app's settings), or neither".into()))
            }
        };
        if let Some(url) = &self.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError(format!(
                    "GANTRY_PUBLIC_URL must start with http:// or https://, found `{url}`"
                )));
            }
        }
        let email = match self.smtp_url.filter(|u| !u.is_empty()) {
            None => None,
            Some(smtp_url) => {
                let host = self
                    .public_url
                    .as_deref()
                    .and_then(|u| u.split("://").nth(1))
                    .and_then(|rest| rest.split(['/', ':']).next())
                    .filter(|h| !h.is_empty())
                    .unwrap_or("localhost");
                let settings = EmailSettings {
                    smtp_url,
                    from: self
                        .email_from
                        .filter(|f| !f.is_empty())
                        .unwrap_or_else(|| format!("Gantry <gantry@{host}>")),
                };
                crate::notifications::email::check(&settings).map_err(ConfigError)?;
                Some(settings)
            }
        };
        Ok(Config {
            listen: self.listen,
            data_dir: self.data_dir,
            database,
            public_url: self.public_url.map(|u| u.trim_end_matches('/').to_string()),
            webhook_secret,
            github_token: self.github_token.filter(|t| !t.is_empty()),
            github_app,
            github_oauth,
            github_url: self.github_url.trim_end_matches('/').to_string(),
            github_api_url: self.github_api_url.trim_end_matches('/').to_string(),
            admin_token: self.admin_token,
            runner_token: self.runner_token,
            embedded_runners: self.embedded_runners,
            lease: Duration::from_secs(self.lease_seconds),
            status_context: self.status_context,
            secret_key: self.secret_key.filter(|k| !k.is_empty()),
            private_by_default: self.private_by_default,
            auto_cancel: self.auto_cancel,
            log_retention: self
                .log_retention_days
                .map(|days| Duration::from_secs(u64::from(days) * 24 * 60 * 60)),
            delivery_retention: Duration::from_secs(
                u64::from(self.delivery_retention_days) * 24 * 60 * 60,
            ),
            email,
        })
    }
}
