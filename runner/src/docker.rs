//! The Docker backend, through bollard.
//!
//! Lifecycle of a job, each step labelled `gantry.job=<id>` and
//! `gantry.runner=<name>` so leftovers can always be found:
//! set up (network, image) → start (job container idling, services in its
//! network namespace) → run steps (`docker exec`, streamed) → destroy
//! (containers and network removed, whatever the ending). Safe to run many
//! jobs at once: every name carries the job id. The caller cleans up with
//! [`Docker::destroy`]; [`Docker::janitor`] removes what a dead runner left.

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, NetworkCreateRequest};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use futures::StreamExt;
use gantry_pipeline::{BuildSpec, Service};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const JOB_LABEL: &str = "gantry.job";
pub const RUNNER_LABEL: &str = "gantry.runner";

/// Resource limits the runner's operator sets for every job.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub pids: i64,
    /// Mount the host's Docker socket for `services: docker` (never for forks).
    pub allow_docker_socket: bool,
    /// Room for build caches on this runner; the least recently used go first.
    #[serde(default = "default_cache_bytes")]
    pub cache_bytes: u64,
}

fn default_cache_bytes() -> u64 {
    10 * 1024 * 1024 * 1024
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 4 * 1024 * 1024 * 1024,
            nano_cpus: 2_000_000_000,
            pids: 4096,
            allow_docker_socket: false,
            cache_bytes: default_cache_bytes(),
        }
    }
}

/// What a build normally needs of root's powers; everything else is dropped.
pub const CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "NET_BIND_SERVICE",
];

/// Everything the job container's spec depends on.
#[derive(Debug, Clone)]
pub struct JobContainer<'a> {
    pub job_id: i64,
    pub runner: &'a str,
    pub image: &'a str,
    pub env: &'a [(String, String)],
    pub workspace: &'a Path,
    /// The mirror's objects the workspace borrows (see `workspace`): mounted
    /// read-only at the same path, where the workspace's `.git` looks.
    pub git_objects: Option<&'a Path>,
    pub build_dir: &'a str,
    pub gantry_dir: &'a Path,
    pub network: &'a str,
    pub services: &'a [Service],
    /// More names for 127.0.0.1 (`addons.hosts`).
    pub hosts: &'a [String],
    pub limits: &'a Limits,
    pub docker_socket: bool,
}

pub fn labels(job_id: i64, runner: &str) -> HashMap<String, String> {
    HashMap::from([
        (JOB_LABEL.to_string(), job_id.to_string()),
        (RUNNER_LABEL.to_string(), runner.to_string()),
    ])
}

fn bind(source: &Path, target: &str, read_only: bool) -> Mount {
    Mount {
        target: Some(target.into()),
        source: Some(source.display().to_string()),
        typ: Some(MountType::BIND),
        read_only: Some(read_only),
        ..Default::default()
    }
}

/// The job container: idles until steps are exec'd into it. Services share
/// its network namespace, so they answer on `localhost` (as on Travis) and by
/// name (each name maps to 127.0.0.1).
pub fn job_container_spec(c: &JobContainer) -> ContainerCreateBody {
    let mut mounts = vec![
        bind(c.workspace, c.build_dir, false),
        bind(c.gantry_dir, crate::script::GANTRY_DIR, false),
    ];
    if let Some(objects) = c.git_objects {
        mounts.push(bind(objects, &objects.display().to_string(), true));
    }
    if c.docker_socket {
        mounts.push(bind(
            Path::new("/var/run/docker.sock"),
            "/var/run/docker.sock",
            false,
        ));
    }
    let mut hosts: Vec<String> = c
        .services
        .iter()
        .flat_map(|s| &s.hostnames)
        .chain(c.hosts)
        .map(|h| format!("{h}:127.0.0.1"))
        .collect();
    hosts.sort();
    hosts.dedup();
    ContainerCreateBody {
        image: Some(c.image.into()),
        entrypoint: Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            "trap 'exit 0' TERM INT; while :; do sleep 1; done".into(),
        ]),
        cmd: Some(vec![]),
        env: Some(c.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        working_dir: Some(c.build_dir.into()),
        labels: Some(labels(c.job_id, c.runner)),
        host_config: Some(HostConfig {
            mounts: Some(mounts),
            network_mode: Some(c.network.into()),
            extra_hosts: Some(hosts),
            memory: Some(c.limits.memory_bytes),
            memory_swap: Some(c.limits.memory_bytes),
            nano_cpus: Some(c.limits.nano_cpus),
            pids_limit: Some(c.limits.pids),
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: Some(CAPABILITIES.iter().map(|s| s.to_string()).collect()),
            security_opt: Some(vec!["no-new-privileges".into()]),
            init: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A service container in the job container's network namespace.
pub fn service_spec(
    job_id: i64,
    runner: &str,
    job_container: &str,
    service: &Service,
    limits: &Limits,
) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(service.image.clone()),
        env: Some(
            service
                .env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
        ),
        labels: Some(labels(job_id, runner)),
        host_config: Some(HostConfig {
            network_mode: Some(format!("container:{job_container}")),
            memory: Some(limits.memory_bytes),
            pids_limit: Some(limits.pids),
            security_opt: Some(vec!["no-new-privileges".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What went wrong, in words a user understands.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot reach Docker: {0}; is the Docker engine running and is its socket readable by the runner?")]
    Unreachable(String),
    #[error("image {image} is not available: {message}")]
    ImageMissing { image: String, message: String },
    #[error("building the image from {dockerfile} failed: {message}")]
    Build { dockerfile: String, message: String },
    #[error("Docker failed to {action}: {message}")]
    Engine {
        action: &'static str,
        message: String,
    },
}

fn engine(action: &'static str) -> impl Fn(bollard::errors::Error) -> DockerError {
    move |e| DockerError::Engine {
        action,
        message: short(&e),
    }
}

/// bollard's errors, without the noise.
fn short(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

#[derive(Clone)]
pub struct Docker {
    client: bollard::Docker,
    runner: String,
    networks: Arc<Mutex<Networks>>,
}

/// Networks made ahead of jobs. Creating one takes Docker 100–200 ms (a
/// bridge and its firewall rules), which would otherwise stand in front of
/// every job's container (bench metric 2). A spare is a fresh network that
/// nothing has joined, so a job gets the same isolation either way.
#[derive(Default)]
struct Networks {
    /// Whether to keep a spare (a runner agent does; `gantry exec` does not).
    enabled: bool,
    spare: Option<String>,
    /// The spare being made.
    making: Option<tokio::task::JoinHandle<()>>,
    /// Spares given to jobs, by job id: their labels name no job, so
    /// [`Docker::destroy`] removes them by name.
    taken: HashMap<i64, String>,
}

impl Docker {
    pub async fn connect(runner: &str) -> Result<Docker, DockerError> {
        let client = bollard::Docker::connect_with_local_defaults()
            .map_err(|e| DockerError::Unreachable(short(&e)))?;
        let client = client
            .negotiate_version()
            .await
            .map_err(|e| DockerError::Unreachable(short(&e)))?;
        client
            .ping()
            .await
            .map_err(|e| DockerError::Unreachable(short(&e)))?;
        Ok(Docker {
            client,
            runner: runner.to_string(),
            networks: Arc::default(),
        })
    }

    /// Keeps one network made ahead of the next job, until [`Docker::drop_spares`].
    pub fn keep_a_spare_network(&self) {
        self.lock_networks().enabled = true;
        self.make_spare();
    }

    /// Stops making spares and removes the one kept (a graceful stop).
    pub async fn drop_spares(&self) {
        let making = {
            let mut n = self.lock_networks();
            n.enabled = false;
            n.making.take()
        };
        if let Some(making) = making {
            // It sees `enabled` is off and removes what it made.
            let _ = making.await;
        }
        let spare = self.lock_networks().spare.take();
        if let Some(name) = spare {
            let _ = self.client.remove_network(&name).await;
        }
    }

    /// The network kept for the next job, once it is made.
    pub fn spare_network(&self) -> Option<String> {
        self.lock_networks().spare.clone()
    }

    fn lock_networks(&self) -> std::sync::MutexGuard<'_, Networks> {
        // The lock guards plain fields: a panic elsewhere leaves them usable.
        self.networks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn make_spare(&self) {
        let mut n = self.lock_networks();
        if !n.enabled || n.spare.is_some() || n.making.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let docker = self.clone();
        n.making = Some(tokio::spawn(async move {
            let name = format!("{}-net-{:08x}", docker.name_prefix(), rand::random::<u32>());
            let request = NetworkCreateRequest {
                name: name.clone(),
                labels: Some(HashMap::from([(
                    RUNNER_LABEL.into(),
                    docker.runner.clone(),
                )])),
                ..Default::default()
            };
            if let Err(e) = docker.client.create_network(request).await {
                tracing::warn!(error = %short(&e), "cannot make a network ahead of the next job");
                return;
            }
            let unwanted = {
                let mut n = docker.lock_networks();
                if n.enabled && n.spare.is_none() {
                    n.spare = Some(name);
                    None
                } else {
                    Some(name)
                }
            };
            if let Some(name) = unwanted {
                let _ = docker.client.remove_network(&name).await;
            }
        }));
    }

    /// The network for job `job_id`: the spare when there is one (and a new
    /// spare is begun), else one made now. Returns its name.
    pub async fn job_network(&self, job_id: i64) -> Result<String, DockerError> {
        let spare = {
            let mut n = self.lock_networks();
            let spare = n.spare.take();
            if let Some(name) = &spare {
                n.taken.insert(job_id, name.clone());
            }
            spare
        };
        self.make_spare();
        if let Some(name) = spare {
            // Nothing has joined a spare, so `docker network prune` removes it.
            if self.client.inspect_network(&name, None).await.is_ok() {
                return Ok(name);
            }
            self.lock_networks().taken.remove(&job_id);
        }
        let name = self.job_name(job_id);
        self.create_network(&name, job_id).await?;
        Ok(name)
    }

    pub fn client(&self) -> &bollard::Docker {
        &self.client
    }

    pub fn runner(&self) -> &str {
        &self.runner
    }

    /// Makes sure `image` is present, pulling it when it is not. Progress lines go to `log`.
    pub async fn ensure_image(
        &self,
        image: &str,
        log: &mut Vec<String>,
    ) -> Result<(), DockerError> {
        if self.client.inspect_image(image).await.is_ok() {
            return Ok(());
        }
        log.push(format!("Pulling {image}"));
        let options = CreateImageOptionsBuilder::new().from_image(image).build();
        let mut pull = self.client.create_image(Some(options), None, None);
        while let Some(item) = pull.next().await {
            if let Err(e) = item {
                return Err(DockerError::ImageMissing {
                    image: image.into(),
                    message: short(&e),
                });
            }
        }
        self.client
            .inspect_image(image)
            .await
            .map(|_| ())
            .map_err(|e| DockerError::ImageMissing {
                image: image.into(),
                message: short(&e),
            })
    }

    /// Builds `spec` from `workspace`, tagged `tag`; each line of Docker's output is passed to `progress`.
    /// `git_objects`: the mirror objects the workspace's `.git` borrows, sent with the context.
    pub async fn build_image(
        &self,
        workspace: &Path,
        git_objects: Option<&Path>,
        spec: &BuildSpec,
        tag: &str,
        labels: HashMap<String, String>,
        progress: &mut (dyn FnMut(String) + Send),
    ) -> Result<(), DockerError> {
        let failed = |message: String| DockerError::Build {
            dockerfile: spec.dockerfile.clone(),
            message,
        };
        // Opened through open folders: a committed link (`context: dist`
        // with `dist -> /`) would send the runner's own files to Docker.
        let context = crate::job_files::open_dir_below(workspace, Path::new(&spec.context))
            .map_err(|e| {
                failed(format!(
                    "the context `{}` is not a folder in the repository: {e}",
                    spec.context
                ))
            })?;
        let dockerfile = Path::new(&spec.context).join(&spec.dockerfile);
        if !std::fs::symlink_metadata(workspace.join(&dockerfile)).is_ok_and(|m| m.is_file()) {
            return Err(failed(format!(
                "{} does not exist in the repository",
                dockerfile.display()
            )));
        }
        // The workspace's `.git` is in the context only when the context is the workspace.
        let whole = Path::new(&spec.context)
            .components()
            .all(|c| c == std::path::Component::CurDir);
        let borrowed = git_objects
            .filter(|_| whole && workspace.join(".git/objects").is_dir())
            .map(Path::to_path_buf);
        let tar = tokio::task::spawn_blocking(move || tar_dir(&context, borrowed.as_deref()))
            .await
            .map_err(|e| failed(e.to_string()))?
            .map_err(|e| failed(e.to_string()))?;
        let mut builder = BuildImageOptionsBuilder::new()
            .dockerfile(&spec.dockerfile)
            .t(tag)
            .rm(true)
            .forcerm(true)
            .labels(&labels);
        if !spec.args.is_empty() {
            builder = builder.buildargs(
                &spec
                    .args
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            );
        }
        if let Some(target) = &spec.target {
            builder = builder.target(target);
        }
        let mut stream =
            self.client
                .build_image(builder.build(), None, Some(bollard::body_full(tar.into())));
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| failed(short(&e)))?;
            if let Some(error) = info.error_detail.and_then(|d| d.message) {
                return Err(failed(error));
            }
            if let Some(text) = info.stream {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    progress(line.to_string());
                }
            }
        }
        Ok(())
    }

    /// Gives `source` another name (`repo:tag`).
    pub async fn tag_image(&self, source: &str, repo: &str, tag: &str) -> Result<(), DockerError> {
        let options = bollard::query_parameters::TagImageOptionsBuilder::new()
            .repo(repo)
            .tag(tag)
            .build();
        self.client
            .tag_image(source, Some(options))
            .await
            .map_err(engine("tag the image"))
    }

    /// Pushes `repo:tag`; `progress` gets the engine's status lines.
    /// Returns the pushed digest when the engine reports one.
    pub async fn push_image(
        &self,
        repo: &str,
        tag: &str,
        credentials: Option<bollard::auth::DockerCredentials>,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(), String> {
        let options = bollard::query_parameters::PushImageOptionsBuilder::new()
            .tag(tag)
            .build();
        let mut stream = self.client.push_image(repo, Some(options), credentials);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| short(&e))?;
            if let Some(error) = info.error_detail.and_then(|d| d.message) {
                return Err(error);
            }
            if let Some(status) = info.status {
                progress(&status);
            }
        }
        Ok(())
    }

    pub async fn create_network(&self, name: &str, job_id: i64) -> Result<(), DockerError> {
        let request = NetworkCreateRequest {
            name: name.into(),
            labels: Some(labels(job_id, &self.runner)),
            ..Default::default()
        };
        self.client
            .create_network(request)
            .await
            .map(|_| ())
            .map_err(engine("create the job's network"))
    }

    pub async fn create_and_start(
        &self,
        name: &str,
        spec: ContainerCreateBody,
        action: &'static str,
    ) -> Result<(), DockerError> {
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        self.client
            .create_container(Some(options), spec)
            .await
            .map_err(engine(action))?;
        self.client
            .start_container(name, None)
            .await
            .map_err(engine(action))
    }

    /// Whether a container was killed for using too much memory.
    pub async fn oom_killed(&self, name: &str) -> bool {
        self.client
            .inspect_container(name, None)
            .await
            .ok()
            .and_then(|c| c.state)
            .and_then(|s| s.oom_killed)
            .unwrap_or(false)
    }

    /// How many processes the kernel's OOM killer killed in the container's
    /// cgroup (`oom_kill` of cgroup v1 `memory.oom_control` or v2 `memory.events`).
    /// Docker's own flag only covers the container's first process.
    pub async fn oom_kills(&self, name: &str) -> u64 {
        use bollard::exec::{CreateExecOptions, StartExecResults};
        let options = CreateExecOptions::<String> {
            cmd: Some(vec![
                "sh".into(),
                "-c".into(),
                "cat /sys/fs/cgroup/memory/memory.oom_control /sys/fs/cgroup/memory.events 2>/dev/null".into(),
            ]),
            attach_stdout: Some(true),
            ..Default::default()
        };
        let Ok(exec) = self.client.create_exec(name, options).await else {
            return 0;
        };
        let Ok(StartExecResults::Attached { mut output, .. }) =
            self.client.start_exec(&exec.id, None).await
        else {
            return 0;
        };
        let mut text = String::new();
        while let Some(Ok(chunk)) = output.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        text.lines()
            .filter_map(|l| l.strip_prefix("oom_kill "))
            .filter_map(|n| n.trim().parse::<u64>().ok())
            .max()
            .unwrap_or(0)
    }

    /// Stops a container at once (cancel, timeout).
    pub async fn destroy_container(&self, name: &str) {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        let _ = self.client.remove_container(name, Some(options)).await;
    }

    /// The name of a job's container (and network): job ids are per server, so
    /// the runner's name keeps two servers' jobs apart on one Docker engine.
    pub fn job_name(&self, job_id: i64) -> String {
        format!("{}-job-{job_id}", self.name_prefix())
    }

    /// `gantry-<runner>`, with what Docker refuses in names replaced.
    fn name_prefix(&self) -> String {
        let runner: String = self
            .runner
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        format!("gantry-{runner}")
    }

    /// Removes every container and network of this runner's job.
    pub async fn destroy(&self, job_id: i64) {
        let filter = HashMap::from([(
            "label".to_string(),
            vec![
                format!("{JOB_LABEL}={job_id}"),
                format!("{RUNNER_LABEL}={}", self.runner),
            ],
        )]);
        self.remove_matching(filter).await;
        let taken = self.lock_networks().taken.remove(&job_id);
        if let Some(name) = taken {
            let _ = self.client.remove_network(&name).await;
        }
    }

    /// Removes everything this runner left behind (after a crash).
    pub async fn janitor(&self) -> usize {
        let filter = HashMap::from([(
            "label".to_string(),
            vec![format!("{RUNNER_LABEL}={}", self.runner)],
        )]);
        self.remove_matching(filter).await
    }

    async fn remove_matching(&self, filter: HashMap<String, Vec<String>>) -> usize {
        let mut removed = 0;
        let list = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filter)
            .build();
        if let Ok(containers) = self.client.list_containers(Some(list)).await {
            for c in containers {
                if let Some(id) = c.id {
                    let options = RemoveContainerOptionsBuilder::new()
                        .force(true)
                        .v(true)
                        .build();
                    if self
                        .client
                        .remove_container(&id, Some(options))
                        .await
                        .is_ok()
                    {
                        removed += 1;
                    }
                }
            }
        }
        if let Ok(networks) = self
            .client
            .list_networks(Some(
                ListNetworksOptionsBuilder::new().filters(&filter).build(),
            ))
            .await
        {
            for n in networks {
                if let Some(id) = n.id {
                    if self.client.remove_network(&id).await.is_ok() {
                        removed += 1;
                    }
                }
            }
        }
        if let Ok(volumes) = self
            .client
            .list_volumes(Some(
                ListVolumesOptionsBuilder::new().filters(&filter).build(),
            ))
            .await
        {
            for v in volumes.volumes.unwrap_or_default() {
                if self
                    .client
                    .remove_volume(
                        &v.name,
                        None::<bollard::query_parameters::RemoveVolumeOptions>,
                    )
                    .await
                    .is_ok()
                {
                    removed += 1;
                }
            }
        }
        removed
    }
}

/// A tar of an open folder, for `docker build`, links kept as links. When
/// it is the workspace (with its `.git`), the mirror objects that `.git`
/// borrows (`git_objects`, the path the runner chose, never what the build
/// may have written into its alternates file) go in too and the alternates
/// file is emptied: `git` works in the image as in a plain clone. Blocking.
fn tar_dir(dir: &std::fs::File, git_objects: Option<&Path>) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    crate::job_files::append_tree(&mut builder, dir, Path::new(""))?;
    if let Some(objects) = git_objects.filter(|o| o.is_dir()) {
        builder.append_dir_all(".git/objects", objects)?;
        // Docker unpacks the context in order: this entry replaces the first.
        let mut header = tar::Header::new_gnu();
        header.set_size(0);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(
            &mut header,
            ".git/objects/info/alternates",
            std::io::empty(),
        )?;
    }
    builder.into_inner()
}

/// The tag of an image built for a job: per repository and Dockerfile, so builds reuse Docker's cache.
pub fn build_tag(repo: &str, spec: &BuildSpec) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!(
        "{}\n{}\n{:?}\n{:?}",
        spec.context, spec.dockerfile, spec.args, spec.target
    ));
    let name: String = repo
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("gantry-build/{name}:{}", &hex::encode(digest)[..12])
}

/// Where a job's deploy makes its bundles: beside the job's `/gantry`
/// folder, not in it, so nothing the job left there is written through.
pub fn deploy_scratch(data_dir: &Path, job_id: i64) -> PathBuf {
    data_dir.join("jobs").join(format!("{job_id}.deploy"))
}

/// Paths the runner keeps per job.
pub fn job_paths(data_dir: &Path, job_id: i64) -> (PathBuf, PathBuf) {
    (
        data_dir.join("workspaces").join(job_id.to_string()),
        data_dir.join("jobs").join(job_id.to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_containers_are_locked_down_and_labelled() {
        let limits = Limits::default();
        let services = vec![Service {
            name: "mysql".into(),
            image: "mysql:8.0".into(),
            hostnames: vec!["mysql".into()],
            env: vec![],
        }];
        let spec = job_container_spec(&JobContainer {
            job_id: 42,
            runner: "r1",
            image: "node:20",
            env: &[("CI".into(), "true".into())],
            workspace: Path::new("/data/ws/42"),
            git_objects: Some(Path::new("/data/mirrors/ab.git/objects")),
            build_dir: "/home/travis/build/o/r",
            gantry_dir: Path::new("/data/jobs/42"),
            network: "gantry-job-42",
            services: &services,
            hosts: &["travis.dev".to_string()],
            limits: &limits,
            docker_socket: false,
        });
        let host = spec.host_config.unwrap();
        assert_eq!(
            spec.labels.unwrap().get(JOB_LABEL).map(String::as_str),
            Some("42")
        );
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
        assert!(!host
            .cap_add
            .unwrap()
            .iter()
            .any(|c| c == "SYS_ADMIN" || c == "NET_RAW"));
        assert_eq!(
            host.security_opt,
            Some(vec!["no-new-privileges".to_string()])
        );
        assert_eq!(host.memory, Some(4 * 1024 * 1024 * 1024));
        assert_eq!(host.pids_limit, Some(4096));
        assert_eq!(
            host.extra_hosts,
            Some(vec![
                "mysql:127.0.0.1".to_string(),
                "travis.dev:127.0.0.1".to_string()
            ])
        );
        let objects = host
            .mounts
            .iter()
            .flatten()
            .find(|m| m.source.as_deref() == Some("/data/mirrors/ab.git/objects"))
            .expect("the mirror's objects are mounted");
        assert_eq!(
            (objects.target.as_deref(), objects.read_only),
            (Some("/data/mirrors/ab.git/objects"), Some(true)),
            "at the path the workspace's alternates name, read-only"
        );
        assert!(
            !host
                .mounts
                .unwrap()
                .iter()
                .any(|m| m.target.as_deref() == Some("/var/run/docker.sock")),
            "no Docker socket unless allowed"
        );
        assert_eq!(spec.env, Some(vec!["CI=true".to_string()]));
        assert_eq!(spec.working_dir.as_deref(), Some("/home/travis/build/o/r"));
    }

    #[test]
    fn services_join_the_job_containers_network_namespace() {
        let service = Service {
            name: "redis".into(),
            image: "redis:7".into(),
            hostnames: vec!["redis".into()],
            env: vec![("A".into(), "1".into())],
        };
        let spec = service_spec(7, "r", "gantry-7", &service, &Limits::default());
        assert_eq!(
            spec.host_config.unwrap().network_mode.as_deref(),
            Some("container:gantry-7")
        );
        assert_eq!(spec.env, Some(vec!["A=1".to_string()]));
        assert_eq!(
            spec.labels.unwrap().get(RUNNER_LABEL).map(String::as_str),
            Some("r")
        );
    }

    #[test]
    fn build_tags_are_stable_per_repo_and_dockerfile() {
        let spec = BuildSpec {
            dockerfile: "Dockerfile.dev".into(),
            context: ".".into(),
            args: Default::default(),
            target: None,
        };
        let tag = build_tag("Owner/Repo", &spec);
        assert!(tag.starts_with("gantry-build/owner/repo:"));
        assert_eq!(tag, build_tag("Owner/Repo", &spec));
        let other = BuildSpec {
            dockerfile: "Dockerfile".into(),
            ..spec
        };
        assert_ne!(tag, build_tag("Owner/Repo", &other));
    }
}
