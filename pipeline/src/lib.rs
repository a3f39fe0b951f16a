//! The Gantry pipeline file format.
//!
//! Reads `.gantry.yml` or `.travis.yml` (unchanged Travis files work wherever
//! the feature exists), reports every problem with its line and column, and
//! expands the file into the jobs of one build:
//!
//! ```
//! use gantry_pipeline::{parse, BuildContext, Catalog};
//!
//! let parsed = parse("language: python\npython: ['3.11', '3.12']\nscript: pytest\n");
//! assert!(parsed.diagnostics.is_empty());
//! let plan = parsed.pipeline.unwrap().plan(&BuildContext::push("master"), &Catalog::default());
//! assert_eq!(plan.jobs.len(), 2);
//! assert_eq!(plan.jobs[1].image, gantry_pipeline::ImageSpec::Name("python:3.12".into()));
//! ```
//!
//! Pure: no I/O, no async. The server plans builds with it; the runner reads the jobs.

pub mod catalog;
pub mod condition;
pub mod config;
pub mod context;
mod decode;
pub mod diagnostic;
pub mod import;
pub mod job;
pub mod plan;
pub mod skip;
mod yaml;

pub use catalog::Catalog;
pub use config::artifacts::Artifacts;
pub use config::deploy::{
    AwsAccess, Codedeploy, Deploy, DeployOn, Ecs, ElasticBeanstalk, Heroku, Npm, Pages, Provider,
    Pypi, Releases, Value, HEROKU_API_URL, NPM_REGISTRY, PYPI_UPLOAD_URL, S3,
};
pub use config::env::{is_name as is_env_name, EnvVar};
pub use config::image::{BuildSpec, ImagePush, ImageSpec, RegistryCredentials};
pub use config::job::GitOptions;
pub use config::notifications::irc::{Credential, Irc, IrcAddress, IrcChannel};
pub use config::notifications::slack::{Slack, SlackRoom};
pub use config::notifications::{Email, Outcomes, Recipient, Webhook, WebhookUrl, When};
pub use config::phase::{FailureEffect, Phase};
pub use config::service::Service;
pub use context::{BuildContext, Event};
pub use diagnostic::{Diagnostic, Severity, Span};
pub use import::Assembly;
pub use job::{Job, SkippedJob};
pub use plan::Plan;
pub use skip::skip_marker;

/// Pipeline file names, in the order they are looked for.
pub const PIPELINE_FILES: [&str; 2] = [".gantry.yml", ".travis.yml"];

/// Picks the pipeline file among those present: `.gantry.yml` wins over `.travis.yml`.
pub fn choose_file(exists: impl Fn(&str) -> bool) -> Option<&'static str> {
    PIPELINE_FILES.into_iter().find(|name| exists(name))
}

/// A pipeline file without errors, ready to plan builds.
#[derive(Debug, Clone)]
pub struct Pipeline {
    config: config::Config,
}

impl Pipeline {
    /// The jobs of a build of this pipeline.
    pub fn plan(&self, build: &BuildContext, catalog: &Catalog) -> Plan {
        plan::plan(&self.config, build, catalog)
    }

    pub fn config(&self) -> &config::Config {
        &self.config
    }
}

/// The result of reading a file: the pipeline when it has no errors, and every
/// diagnostic (warnings too), sorted by position.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub pipeline: Option<Pipeline>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Parsed {
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }
}

/// Reads a pipeline file's text alone: files it imports are not read (a
/// warning says so); [`Assembly`] reads them.
pub fn parse(source: &str) -> Parsed {
    Assembly::new(PIPELINE_FILES[1], source, None).finish()
}

fn parsed(config: Option<config::Config>, diags: diagnostic::Diagnostics) -> Parsed {
    let has_errors = diags.has_errors();
    Parsed {
        pipeline: config
            .filter(|_| !has_errors)
            .map(|config| Pipeline { config }),
        diagnostics: diags.into_sorted(),
    }
}
