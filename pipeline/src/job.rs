//! A job ready to run: everything a runner needs, with defaults applied.

use crate::config::deploy::Deploy;
use crate::config::env::EnvVar;
use crate::config::image::{ImagePush, ImageSpec};
use crate::config::job::GitOptions;
use crate::config::phase::Phase;
use crate::config::service::Service;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Position in the build, from 1 (shown as `<build>.<number>`).
    pub number: u32,
    pub name: String,
    pub stage: String,
    pub language: String,
    pub image: ImageSpec,
    /// Global env first, then the job's own; later entries win.
    pub env: Vec<EnvVar>,
    /// The file declares encrypted `secure:` env entries: the job needs the repository's secrets.
    pub secure_env: bool,
    pub allow_failure: bool,
    /// Commands of each phase after language defaults; phases without commands are absent.
    pub phases: BTreeMap<Phase, Vec<String>>,
    pub services: Vec<Service>,
    /// Names that resolve to 127.0.0.1 in the job's container (`addons.hosts`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// `services: docker`: the job asked for a Docker daemon.
    pub docker: bool,
    pub deploy: Vec<Deploy>,
    pub images: Vec<ImagePush>,
    /// `addons.artifacts`: files uploaded to S3 at the end of the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<crate::config::artifacts::Artifacts>,
    pub timeout_minutes: u32,
    pub git: GitOptions,
    /// Directories kept from build to build (`cache:`), as written: relative
    /// to the build directory, or under `$HOME`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache: Vec<String>,
    /// Matrix values of this job (`node_js` → `14`, `os` → `linux`): `TRAVIS_*_VERSION` and `deploy.on`.
    pub versions: BTreeMap<String, String>,
    pub dist: Option<String>,
    /// Line in the file where the job was defined.
    pub line: usize,
}

impl Job {
    pub fn commands(&self, phase: Phase) -> &[String] {
        self.phases.get(&phase).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The env as a name → value map (later entries win), for display.
    pub fn env_map(&self) -> BTreeMap<String, String> {
        self.env
            .iter()
            .map(|v| (v.name.clone(), v.value.clone()))
            .collect()
    }
}

/// A job the file describes that will not run, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedJob {
    pub name: String,
    pub stage: String,
    pub reason: String,
}
