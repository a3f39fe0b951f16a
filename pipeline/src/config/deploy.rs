//! `deploy:` — providers that run after a job passed (dpl-compatible options).

use crate::context::BuildContext;
use crate::decode::{Decoder, Spanned};
use crate::diagnostic::Span;
use crate::yaml::{Node, NodeKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A deploy option's value: written in the file, or a reference to a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    /// Text from the file; `$NAME` references expand from the job's env at deploy time.
    Plain(String),
    /// A Travis `secure:` value: resolved from the repository secret of the option's name.
    Secure { secret: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deploy {
    pub provider: Provider,
    pub on: DeployOn,
    pub allow_failure: bool,
    /// Line of the provider in the file, to point logs back at it.
    pub line: usize,
    /// The imported file it is written in; `None` for the pipeline file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "provider", rename_all = "snake_case")]
pub enum Provider {
    Elasticbeanstalk(ElasticBeanstalk),
    S3(S3),
    Ecs(Ecs),
    Codedeploy(Codedeploy),
    Releases(Releases),
    Pages(Pages),
    Pypi(Pypi),
    Npm(Npm),
    Heroku(Heroku),
    /// dpl's `script` provider: run a command in the job's container.
    Script {
        script: String,
    },
    /// A dpl provider Gantry does not run; the job logs that it was skipped.
    Unsupported {
        name: String,
    },
}

impl Provider {
    pub fn name(&self) -> &str {
        match self {
            Provider::Elasticbeanstalk(_) => "elasticbeanstalk",
            Provider::S3(_) => "s3",
            Provider::Ecs(_) => "ecs",
            Provider::Codedeploy(_) => "codedeploy",
            Provider::Releases(_) => "releases",
            Provider::Pages(_) => "pages",
            Provider::Pypi(_) => "pypi",
            Provider::Npm(_) => "npm",
            Provider::Heroku(_) => "heroku",
            Provider::Script { .. } => "script",
            Provider::Unsupported { name } => name,
        }
    }
}

/// AWS credentials and endpoint, shared by every AWS provider.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AwsAccess {
    pub access_key_id: Option<Value>,
    pub secret_access_key: Option<Value>,
    pub region: String,
    /// An endpoint URL for S3-compatible stores and local stand-ins.
    pub endpoint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElasticBeanstalk {
    #[serde(flatten)]
    pub aws: AwsAccess,
    /// Defaults to the repository name.
    pub app: Option<String>,
    /// Without an environment only an application version is created.
    pub env: Option<String>,
    pub bucket: String,
    pub bucket_path: Option<String>,
    pub label: Option<String>,
    pub description: Option<String>,
    pub zip_file: Option<String>,
    pub only_create_app_version: bool,
    pub wait_until_deployed: bool,
    pub wait_until_deployed_timeout: u64,
    pub rollback: bool,
    /// Ship a `Dockerrun.aws.json` pointing at the images pushed by `images:`
    /// instead of the whole workspace.
    pub dockerrun: bool,
    /// The container port of a generated single-container (v1) `Dockerrun.aws.json`.
    pub container_port: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3 {
    #[serde(flatten)]
    pub aws: AwsAccess,
    pub bucket: String,
    pub local_dir: String,
    pub upload_dir: Option<String>,
    pub glob: String,
    pub dot_match: bool,
    pub acl: String,
    pub cache_control: Vec<String>,
    pub expires: Vec<String>,
    pub storage_class: String,
    pub server_side_encryption: bool,
    pub detect_encoding: bool,
    pub default_text_charset: Option<String>,
    pub index_document_suffix: Option<String>,
    pub overwrite: bool,
    pub force_path_style: bool,
    pub max_threads: u64,
    pub verbose: bool,
}

/// dpl's defaults, as a file without the options reads.
impl Default for S3 {
    fn default() -> Self {
        S3 {
            aws: AwsAccess {
                region: "us-east-1".into(),
                ..AwsAccess::default()
            },
            bucket: String::new(),
            local_dir: ".".into(),
            upload_dir: None,
            glob: "**/*".into(),
            dot_match: false,
            acl: "private".into(),
            cache_control: vec!["no-cache".into()],
            expires: Vec::new(),
            storage_class: "STANDARD".into(),
            server_side_encryption: false,
            detect_encoding: false,
            default_text_charset: None,
            index_document_suffix: None,
            overwrite: true,
            force_path_style: false,
            max_threads: 5,
            verbose: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ecs {
    #[serde(flatten)]
    pub aws: AwsAccess,
    pub cluster: String,
    pub service: String,
    /// The container whose image is replaced; required when the task has several.
    pub container: Option<String>,
    /// The new image; defaults to the first pushed image at its first tag.
    pub image: Option<String>,
    /// Seconds to wait for the deployment to finish.
    pub timeout: u64,
    pub rollback: bool,
    pub force_new_deployment: bool,
}

/// dpl's `codedeploy`: a deployment of an application revision, from S3
/// (`bucket` and `key`, often uploaded by an `s3` provider just before) or
/// from GitHub (the build's commit), to a deployment group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Codedeploy {
    #[serde(flatten)]
    pub aws: AwsAccess,
    pub application: String,
    pub deployment_group: Option<String>,
    /// `s3` or `github`; default: `s3` when `bucket` is set.
    pub revision_type: Option<String>,
    pub bucket: Option<String>,
    pub key: Option<String>,
    /// `tar`, `tgz`, `zip`, `YAML` or `JSON`; default: from `key`'s extension.
    pub bundle_type: Option<String>,
    /// GitHub revisions: default the build's repository and commit.
    pub repository: Option<String>,
    pub commit_id: Option<String>,
    pub description: Option<String>,
    /// `disallow`, `overwrite` or `retain` (CodeDeploy's default: disallow).
    pub file_exists_behavior: Option<String>,
    pub wait_until_deployed: bool,
    /// Seconds to wait (Gantry's; dpl waits as long as the job may).
    pub wait_until_deployed_timeout: u64,
}

/// dpl's `releases`: the job's files uploaded to the GitHub release of the
/// build's tag, made when missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Releases {
    /// `api_key` (dpl v1) or `token` (v2); without either, the `GITHUB_TOKEN`
    /// secret or variable.
    pub token: Option<Value>,
    /// Paths in the build directory; `$NAME` expands.
    pub files: Vec<String>,
    /// `files` are glob patterns (`*` stays within a folder, `**` crosses them).
    pub file_glob: bool,
    /// Replace an asset of the same name (else it is kept and the file skipped).
    pub overwrite: bool,
    /// `owner/name`; default: the build's repository.
    pub repo: Option<String>,
    /// Default: the build's tag.
    pub tag_name: Option<String>,
    pub name: Option<String>,
    /// `body` or `release_notes`.
    pub body: Option<String>,
    /// A file in the build directory whose text is the release's body.
    pub release_notes_file: Option<String>,
    /// Leave the release a draft (dpl publishes it once its files are up).
    pub draft: bool,
    pub prerelease: Option<bool>,
    pub target_commitish: Option<String>,
}

/// dpl's `pages`: a folder of the job's pushed as the only commit (or, with
/// `keep_history`, the next commit) of a branch, `gh-pages` by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pages {
    /// `github_token`; without it, the `GITHUB_TOKEN` secret or variable.
    pub token: Option<Value>,
    /// `owner/name`; default: the build's repository.
    pub repo: Option<String>,
    pub target_branch: String,
    pub local_dir: String,
    /// Written to `CNAME` (a custom domain).
    pub fqdn: Option<String>,
    /// In the commit message; default: `fqdn`, else the repository.
    pub project_name: Option<String>,
    pub name: String,
    pub email: String,
    /// Add a commit to the branch's history instead of replacing it.
    pub keep_history: bool,
    pub allow_empty_commit: bool,
    /// The host (`github.com`), or a URL with its scheme.
    pub github_url: String,
}

/// dpl's `pypi`: the job's `setup.py` builds the `distributions` in its
/// container, and the runner uploads what lands in `dist/` to the index,
/// as twine does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pypi {
    /// `user` (or `username`); PyPI's API tokens go with `__token__`.
    pub user: String,
    /// `password` (or `api_key`, `token`); without it, the `PYPI_PASSWORD`
    /// secret or variable.
    pub password: Option<Value>,
    /// The upload URL: PyPI's by default.
    pub server: String,
    /// `setup.py` commands, as dpl runs them (`sdist bdist_wheel`).
    pub distributions: String,
    /// A file the index already has is left as it is, not a failure.
    pub skip_existing: bool,
}

/// dpl's `npm`: `npm pack` of `src` in the job's container, and the
/// package published from the runner under `tag`, as `npm publish` does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Npm {
    /// `api_token` (v2) or `api_key` (v1); without it, the `NPM_API_TOKEN`
    /// or `NPM_TOKEN` secret or variable.
    pub token: Option<Value>,
    pub registry: String,
    /// The dist-tag the version gets.
    pub tag: String,
    /// The package's folder in the build directory.
    pub src: String,
    /// `public` or `restricted`; default: the registry's (scoped: restricted).
    pub access: Option<String>,
    /// An npm script run before packing (`npm run <script>`).
    pub run_script: Option<String>,
    /// Pack and check, publish nothing.
    pub dry_run: bool,
}

/// dpl's `heroku` (its `api` strategy, the default): the build directory
/// packed as a tarball, handed to Heroku's build API, and its build
/// followed to the end; then `run`'s commands as one-off dynos.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heroku {
    /// `api_key`; without it, the `HEROKU_API_KEY` secret or variable.
    pub api_key: Option<Value>,
    /// Default: the repository's name.
    pub app: Option<String>,
    /// After the release, in order: `restart` restarts the dynos, anything
    /// else runs in a one-off dyno (`rails db:migrate`).
    pub run: Vec<String>,
    /// Heroku's Platform API (Gantry's option, for a stand-in).
    pub api_url: String,
}

/// Heroku's Platform API.
pub const HEROKU_API_URL: &str = "https://api.heroku.com";

/// npm's public registry.
pub const NPM_REGISTRY: &str = "https://registry.npmjs.org";

/// PyPI's upload URL (twine's default repository).
pub const PYPI_UPLOAD_URL: &str = "https://upload.pypi.org/legacy/";

/// `deploy.on`: when a provider runs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeployOn {
    /// Empty: the repository's default branch.
    pub branches: Vec<String>,
    pub all_branches: bool,
    pub tags: Option<bool>,
    pub repo: Option<String>,
    /// Shell tests (`[[ … ]]`), evaluated by the runner in the job's environment.
    pub condition: Vec<String>,
    /// Runtime versions (`node_js: '18'`): the job must have them.
    pub versions: BTreeMap<String, String>,
}

impl DeployOn {
    /// Whether the build may deploy, leaving shell `condition`s to the runner.
    /// `Err` carries the reason printed in the log.
    pub fn check(
        &self,
        build: &BuildContext,
        job_versions: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        if build.is_pull_request() {
            return Err("pull requests never deploy".into());
        }
        if let Some(repo) = &self.repo {
            if repo != &build.repo {
                return Err(format!("this repository is {}, not {repo}", build.repo));
            }
        }
        match (self.tags, &build.tag) {
            (Some(true), None) => return Err("this is not a tag build (on.tags: true)".into()),
            (Some(false), Some(tag)) => {
                return Err(format!("this is a build of tag {tag} (on.tags: false)"))
            }
            _ => {}
        }
        if !self.all_branches && self.tags != Some(true) {
            let allowed: Vec<&str> = if self.branches.is_empty() {
                vec![build.default_branch.as_str()]
            } else {
                self.branches.iter().map(String::as_str).collect()
            };
            if !allowed.contains(&build.branch.as_str()) {
                return Err(format!(
                    "branch {} is not {}",
                    build.branch,
                    allowed.join(" or ")
                ));
            }
        }
        for (key, want) in &self.versions {
            let have = job_versions.get(key).map(String::as_str).unwrap_or("");
            if have != want {
                return Err(format!("{key} is {have}, not {want}"));
            }
        }
        Ok(())
    }
}

const COMMON_KEYS: &[&str] = &[
    "provider",
    "on",
    "allow_failure",
    "skip_cleanup",
    "cleanup",
    "edge",
    "run",
    "strategy",
];
const AWS_KEYS: &[&str] = &["access_key_id", "secret_access_key", "region", "endpoint"];
const EB_KEYS: &[&str] = &[
    "app",
    "env",
    "bucket",
    "bucket_name",
    "bucket_path",
    "label",
    "description",
    "zip_file",
    "only_create_app_version",
    "wait_until_deployed",
    "wait_until_deployed_timeout",
    "rollback",
    "dockerrun",
    "container_port",
];
const S3_KEYS: &[&str] = &[
    "bucket",
    "local_dir",
    "upload_dir",
    "glob",
    "dot_match",
    "acl",
    "cache_control",
    "expires",
    "storage_class",
    "server_side_encryption",
    "detect_encoding",
    "default_text_charset",
    "index_document_suffix",
    "overwrite",
    "force_path_style",
    "max_threads",
    "verbose",
];
const ECS_KEYS: &[&str] = &[
    "cluster",
    "service",
    "container",
    "image",
    "timeout",
    "rollback",
    "force_new_deployment",
];
const CODEDEPLOY_KEYS: &[&str] = &[
    "application",
    "deployment_group",
    "revision_type",
    "bucket",
    "key",
    "bundle_type",
    "repository",
    "commit_id",
    "description",
    "file_exists_behavior",
    "wait_until_deployed",
    "wait_until_deployed_timeout",
];
const RELEASES_KEYS: &[&str] = &[
    "api_key",
    "token",
    "file",
    "file_glob",
    "overwrite",
    "repo",
    "tag_name",
    "name",
    "body",
    "release_notes",
    "release_notes_file",
    "draft",
    "prerelease",
    "target_commitish",
];
const PAGES_KEYS: &[&str] = &[
    "github_token",
    "token",
    "repo",
    "target_branch",
    "local_dir",
    "fqdn",
    "project_name",
    "name",
    "email",
    "keep_history",
    "allow_empty_commit",
    "github_url",
    "verbose",
];
const PYPI_KEYS: &[&str] = &[
    "user",
    "username",
    "password",
    "api_key",
    "token",
    "server",
    "distributions",
    "skip_existing",
    // dpl's documentation upload, which PyPI no longer hosts, and its
    // tool versions (the job's own setuptools builds): accepted, unused.
    "skip_upload_docs",
    "docs_dir",
    "setuptools_version",
    "twine_version",
    "wheel_version",
    "twine_check",
    "remove_build_dir",
];
const NPM_KEYS: &[&str] = &[
    "api_token",
    "api_key",
    "registry",
    "tag",
    "src",
    "access",
    "run_script",
    "dry_run",
    // dpl's login details for the old `_auth` method and one-time
    // passwords: a token is all the registry needs. Accepted, unused.
    "email",
    "auth_method",
    "otp",
];
const HEROKU_KEYS: &[&str] = &[
    "api_key",
    "app",
    "api_url",
    // The `git` strategy's login: accepted, unused (the API deploys).
    "username",
    "user",
    "password",
    "git",
    "version",
    "log_level",
];
const SCRIPT_KEYS: &[&str] = &["script"];
const ON_KEYS: &[&str] = &[
    "branch",
    "branches",
    "all_branches",
    "tags",
    "repo",
    "condition",
];
const ACLS: &[&str] = &[
    "private",
    "public_read",
    "public_read_write",
    "authenticated_read",
    "bucket_owner_read",
    "bucket_owner_full_control",
];
const STORAGE_CLASSES: &[&str] = &[
    "STANDARD",
    "STANDARD_IA",
    "ONEZONE_IA",
    "REDUCED_REDUNDANCY",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "GLACIER_IR",
    "DEEP_ARCHIVE",
];

/// Reads `deploy:` (one provider or a list). `versions` are the language's runtime keys, allowed in `on:`.
pub fn deploys(d: &mut Decoder, node: &Node, version_keys: &[&str]) -> Vec<Deploy> {
    let items: Vec<&Node> = match &node.kind {
        NodeKind::Seq(items) => items.iter().collect(),
        NodeKind::Map(_) => vec![node],
        NodeKind::Scalar(s) if s.is_null() => Vec::new(),
        NodeKind::Scalar(_) => {
            d.type_error(node, "deploy", "a provider map or a list of them");
            return Vec::new();
        }
    };
    items
        .into_iter()
        .filter_map(|item| deploy(d, item, version_keys))
        .collect()
}

/// The options of one provider entry, with the keys already read.
struct Options<'n> {
    /// Keys with dashes read as underscores: dpl v1 accepted `local-dir` for `local_dir`.
    entries: Vec<(String, &'n Node, Span)>,
    span: Span,
}

impl<'n> Options<'n> {
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, _)| *v)
    }
    fn string(&self, d: &mut Decoder, key: &str) -> Option<String> {
        self.get(key)
            .and_then(|n| d.string(n, key))
            .map(|s| s.value)
    }
    fn required(&self, d: &mut Decoder, provider: &str, keys: &[&str]) -> Option<String> {
        let found = keys.iter().find_map(|k| self.string(d, k));
        if found.is_none() && keys.iter().all(|k| self.get(k).is_none()) {
            d.diags
                .error(
                    self.span,
                    format!("deploy provider `{provider}` needs `{}`", keys[0]),
                )
                .hint(format!("add `{}: …` to this deploy entry", keys[0]));
        }
        found
    }
    /// A string or a list of strings.
    fn strings(&self, d: &mut Decoder, key: &str) -> Option<Vec<String>> {
        let list = d.strings(self.get(key)?, key)?;
        Some(list.into_iter().map(|s| s.value).collect())
    }
    fn bool(&self, d: &mut Decoder, key: &str, default: bool) -> bool {
        self.get(key)
            .and_then(|n| d.bool(n, key))
            .unwrap_or(default)
    }
    fn number(&self, d: &mut Decoder, key: &str, min: u64, max: u64, default: u64) -> u64 {
        self.get(key)
            .and_then(|n| d.number(n, key, min, max))
            .unwrap_or(default)
    }
    fn secret(&self, d: &mut Decoder, key: &str) -> Option<Value> {
        let node = self.get(key)?;
        if let Some(secure) = node.get("secure") {
            d.string(secure, "secure")?;
            return Some(Value::Secure {
                secret: key.to_string(),
            });
        }
        d.string(node, key).map(|s| Value::Plain(s.value))
    }
    fn aws(&self, d: &mut Decoder) -> AwsAccess {
        AwsAccess {
            access_key_id: self.secret(d, "access_key_id"),
            secret_access_key: self.secret(d, "secret_access_key"),
            region: self
                .string(d, "region")
                .unwrap_or_else(|| "us-east-1".into()),
            endpoint: self.string(d, "endpoint"),
        }
    }
    fn choice(
        &self,
        d: &mut Decoder,
        key: &str,
        allowed: &[&str],
        default: &str,
        normalize: fn(&str) -> String,
    ) -> String {
        let Some(node) = self.get(key) else {
            return default.to_string();
        };
        let Some(value) = d.string(node, key) else {
            return default.to_string();
        };
        let normalized = normalize(&value.value);
        if !allowed.contains(&normalized.as_str()) {
            d.diags.error(
                node.span,
                format!(
                    "`{key}` must be one of {}, found `{}`",
                    allowed.join(", "),
                    value.value
                ),
            );
            return default.to_string();
        }
        normalized
    }
    /// An optional option that must be one of `allowed` (any case; the
    /// result is spelled as `allowed` spells it).
    fn choice_of(&self, d: &mut Decoder, key: &str, allowed: &[&str]) -> Option<String> {
        let node = self.get(key)?;
        let value = d.string(node, key)?;
        let found = allowed
            .iter()
            .find(|a| a.eq_ignore_ascii_case(&value.value))
            .map(|a| a.to_string());
        if found.is_none() {
            d.diags.error(
                node.span,
                format!(
                    "`{key}` must be one of {}, found `{}`",
                    allowed.join(", "),
                    value.value
                ),
            );
        }
        found
    }
}

fn deploy(d: &mut Decoder, node: &Node, version_keys: &[&str]) -> Option<Deploy> {
    let entries = d
        .entries(node, "deploy")
        .into_iter()
        .map(|(k, v, s)| (k.replace('-', "_"), v, s))
        .collect();
    let options = Options {
        entries,
        span: node.span,
    };
    let provider_node = match options.get("provider") {
        Some(n) => n,
        None => {
            d.diags
                .error(node.span, "a deploy entry needs a `provider`")
                .hint("provider: elasticbeanstalk, s3, ecs, codedeploy, releases, pages, pypi, npm, heroku or script");
            return None;
        }
    };
    let provider_name = d.string(provider_node, "provider")?.value;
    let (specific, provider): (&[&str], Provider) = match provider_name.as_str() {
        "elasticbeanstalk" | "elastic_beanstalk" => {
            let eb = ElasticBeanstalk {
                aws: options.aws(d),
                app: options.string(d, "app"),
                env: options.string(d, "env"),
                bucket: options
                    .required(d, "elasticbeanstalk", &["bucket", "bucket_name"])
                    .unwrap_or_default(),
                bucket_path: options.string(d, "bucket_path"),
                label: options.string(d, "label"),
                description: options.string(d, "description"),
                zip_file: options.string(d, "zip_file"),
                only_create_app_version: options.bool(d, "only_create_app_version", false),
                wait_until_deployed: options.bool(d, "wait_until_deployed", true),
                wait_until_deployed_timeout: options.number(
                    d,
                    "wait_until_deployed_timeout",
                    1,
                    86_400,
                    600,
                ),
                rollback: options.bool(d, "rollback", false),
                dockerrun: options.bool(d, "dockerrun", false),
                container_port: options.number(d, "container_port", 1, 65_535, 80),
            };
            if eb.env.is_none() && eb.rollback {
                d.diags.warning(node.span, "`rollback` needs `env`: without an environment nothing is deployed to roll back");
            }
            (EB_KEYS, Provider::Elasticbeanstalk(eb))
        }
        "s3" => {
            let cache_control = options
                .strings(d, "cache_control")
                .unwrap_or_else(|| vec!["no-cache".to_string()]);
            let expires = options.strings(d, "expires").unwrap_or_default();
            let s3 = S3 {
                aws: options.aws(d),
                bucket: options.required(d, "s3", &["bucket"]).unwrap_or_default(),
                local_dir: options.string(d, "local_dir").unwrap_or_else(|| ".".into()),
                upload_dir: options.string(d, "upload_dir"),
                glob: options.string(d, "glob").unwrap_or_else(|| "**/*".into()),
                dot_match: options.bool(d, "dot_match", false),
                acl: options.choice(d, "acl", ACLS, "private", |s| s.replace('-', "_")),
                cache_control,
                expires,
                storage_class: options.choice(
                    d,
                    "storage_class",
                    STORAGE_CLASSES,
                    "STANDARD",
                    |s| s.to_ascii_uppercase(),
                ),
                server_side_encryption: options.bool(d, "server_side_encryption", false),
                detect_encoding: options.bool(d, "detect_encoding", false),
                default_text_charset: options.string(d, "default_text_charset"),
                index_document_suffix: options.string(d, "index_document_suffix"),
                overwrite: options.bool(d, "overwrite", true),
                force_path_style: options.bool(d, "force_path_style", false),
                max_threads: options.number(d, "max_threads", 1, 15, 5),
                verbose: options.bool(d, "verbose", false),
            };
            (S3_KEYS, Provider::S3(s3))
        }
        "ecs" => {
            let ecs = Ecs {
                aws: options.aws(d),
                cluster: options.required(d, "ecs", &["cluster"]).unwrap_or_default(),
                service: options.required(d, "ecs", &["service"]).unwrap_or_default(),
                container: options.string(d, "container"),
                image: options.string(d, "image"),
                timeout: options.number(d, "timeout", 1, 86_400, 600),
                rollback: options.bool(d, "rollback", false),
                force_new_deployment: options.bool(d, "force_new_deployment", false),
            };
            (ECS_KEYS, Provider::Ecs(ecs))
        }
        "codedeploy" => {
            let codedeploy = Codedeploy {
                aws: options.aws(d),
                application: options
                    .required(d, "codedeploy", &["application"])
                    .unwrap_or_default(),
                deployment_group: options.string(d, "deployment_group"),
                revision_type: options.choice_of(d, "revision_type", &["s3", "github"]),
                bucket: options.string(d, "bucket"),
                key: options.string(d, "key"),
                bundle_type: options.choice_of(
                    d,
                    "bundle_type",
                    &["tar", "tgz", "zip", "YAML", "JSON"],
                ),
                repository: options.string(d, "repository"),
                commit_id: options.string(d, "commit_id"),
                description: options.string(d, "description"),
                file_exists_behavior: options.choice_of(
                    d,
                    "file_exists_behavior",
                    &["disallow", "overwrite", "retain"],
                ),
                wait_until_deployed: options.bool(d, "wait_until_deployed", false),
                wait_until_deployed_timeout: options.number(
                    d,
                    "wait_until_deployed_timeout",
                    1,
                    86_400,
                    600,
                ),
            };
            (CODEDEPLOY_KEYS, Provider::Codedeploy(codedeploy))
        }
        "releases" => {
            let files = options.strings(d, "file").unwrap_or_default();
            let releases = Releases {
                token: options
                    .secret(d, "api_key")
                    .or_else(|| options.secret(d, "token")),
                files,
                file_glob: options.bool(d, "file_glob", false),
                overwrite: options.bool(d, "overwrite", false),
                repo: options.string(d, "repo"),
                tag_name: options.string(d, "tag_name"),
                name: options.string(d, "name"),
                body: options
                    .string(d, "body")
                    .or_else(|| options.string(d, "release_notes")),
                release_notes_file: options.string(d, "release_notes_file"),
                draft: options.bool(d, "draft", false),
                prerelease: options
                    .get("prerelease")
                    .and_then(|n| d.bool(n, "prerelease")),
                target_commitish: options.string(d, "target_commitish"),
            };
            (RELEASES_KEYS, Provider::Releases(releases))
        }
        "pages" => {
            let pages = Pages {
                token: options
                    .secret(d, "github_token")
                    .or_else(|| options.secret(d, "token")),
                repo: options.string(d, "repo"),
                target_branch: options
                    .string(d, "target_branch")
                    .unwrap_or_else(|| "gh-pages".into()),
                local_dir: options.string(d, "local_dir").unwrap_or_else(|| ".".into()),
                fqdn: options.string(d, "fqdn"),
                project_name: options.string(d, "project_name"),
                name: options
                    .string(d, "name")
                    .unwrap_or_else(|| "Deployment Bot (from Gantry)".into()),
                email: options
                    .string(d, "email")
                    .unwrap_or_else(|| "deploy@gantry.invalid".into()),
                keep_history: options.bool(d, "keep_history", false),
                allow_empty_commit: options.bool(d, "allow_empty_commit", false),
                github_url: options
                    .string(d, "github_url")
                    .unwrap_or_else(|| "github.com".into()),
            };
            (PAGES_KEYS, Provider::Pages(pages))
        }
        "pypi" => {
            let pypi = Pypi {
                user: options
                    .string(d, "user")
                    .or_else(|| options.string(d, "username"))
                    .unwrap_or_else(|| "__token__".into()),
                password: options
                    .secret(d, "password")
                    .or_else(|| options.secret(d, "api_key"))
                    .or_else(|| options.secret(d, "token")),
                server: options
                    .string(d, "server")
                    .unwrap_or_else(|| PYPI_UPLOAD_URL.into()),
                distributions: options
                    .string(d, "distributions")
                    .unwrap_or_else(|| "sdist".into()),
                skip_existing: options.bool(d, "skip_existing", false),
            };
            (PYPI_KEYS, Provider::Pypi(pypi))
        }
        "npm" => {
            let npm = Npm {
                token: options
                    .secret(d, "api_token")
                    .or_else(|| options.secret(d, "api_key")),
                registry: options
                    .string(d, "registry")
                    .unwrap_or_else(|| NPM_REGISTRY.into()),
                tag: options.string(d, "tag").unwrap_or_else(|| "latest".into()),
                src: options.string(d, "src").unwrap_or_else(|| ".".into()),
                access: options.choice_of(d, "access", &["public", "restricted"]),
                run_script: options.string(d, "run_script"),
                dry_run: options.bool(d, "dry_run", false),
            };
            (NPM_KEYS, Provider::Npm(npm))
        }
        "heroku" => {
            if let Some(node) = options.get("strategy") {
                if d.string(node, "strategy").is_some_and(|s| s.value == "git") {
                    d.diags
                        .warning(node.span, "`strategy: git` deploys through Heroku's build API in Gantry, as `api` does")
                        .hint("the same source becomes the same build; `username` and `password` are not needed, `api_key` is");
                }
            }
            let run = options.strings(d, "run").unwrap_or_default();
            let heroku = Heroku {
                api_key: options.secret(d, "api_key"),
                app: options.string(d, "app"),
                run,
                api_url: options
                    .string(d, "api_url")
                    .unwrap_or_else(|| HEROKU_API_URL.into()),
            };
            (HEROKU_KEYS, Provider::Heroku(heroku))
        }
        "script" => {
            let script = options
                .required(d, "script", &["script"])
                .unwrap_or_default();
            (SCRIPT_KEYS, Provider::Script { script })
        }
        other => {
            d.diags
                .warning(provider_node.span, format!("deploy provider `{other}` is not supported by Gantry; it will be skipped"))
                .hint("Gantry deploys with elasticbeanstalk, s3, ecs, codedeploy, releases, pages, pypi, npm, heroku and script; run other tools with `provider: script`");
            (
                &[],
                Provider::Unsupported {
                    name: other.to_string(),
                },
            )
        }
    };
    if !matches!(provider, Provider::Unsupported { .. }) {
        let aws: &[&str] = match provider {
            Provider::Elasticbeanstalk(_)
            | Provider::S3(_)
            | Provider::Ecs(_)
            | Provider::Codedeploy(_) => AWS_KEYS,
            _ => &[],
        };
        let known: Vec<&str> = COMMON_KEYS
            .iter()
            .chain(aws)
            .chain(specific)
            .copied()
            .collect();
        for (key, _, span) in &options.entries {
            if !known.contains(&key.as_str()) {
                d.unknown_key(
                    key,
                    *span,
                    &known,
                    &format!("the `{provider_name}` provider"),
                );
            }
        }
    }
    let on = options
        .get("on")
        .map(|n| deploy_on(d, n, version_keys))
        .unwrap_or_default();
    let allow_failure = options.bool(d, "allow_failure", false);
    Some(Deploy {
        provider,
        on,
        allow_failure,
        line: node.span.line,
        file: d.diags.file_of(node.span),
    })
}

fn deploy_on(d: &mut Decoder, node: &Node, version_keys: &[&str]) -> DeployOn {
    let mut on = DeployOn::default();
    // As travis-build reads it: `on: production` is `on: {branch:
    // production}`, and an empty `on:` sets no condition.
    if let Some(scalar) = node.as_scalar() {
        if !scalar.is_null() {
            on.branches = vec![scalar.text.clone()];
        }
        return on;
    }
    for (key, value, span) in d.entries(node, "deploy.on") {
        match key {
            "branch" | "branches" => {
                on.branches = d
                    .strings(value, key)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|s: Spanned<String>| s.value)
                    .collect();
            }
            "all_branches" => on.all_branches = d.bool(value, key).unwrap_or(false),
            "tags" => on.tags = d.bool(value, key),
            "repo" => on.repo = d.string(value, key).map(|s| s.value),
            "condition" => {
                on.condition = d
                    .strings(value, key)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|s| s.value)
                    .collect();
            }
            // A runtime: `node: '8'` deploys from the job whose `node_js` is 8.
            other => {
                let key = super::job::version_key_alias(other);
                if version_keys.contains(&key)
                    || crate::catalog::all_version_keys().any(|k| k == key)
                {
                    if let Some(v) = d.string(value, other) {
                        on.versions.insert(key.to_string(), v.value);
                    }
                } else {
                    d.unknown_key(other, span, ON_KEYS, "`deploy.on`");
                }
            }
        }
    }
    on
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Event;

    #[test]
    fn heroku_reads_dpls_options_and_warns_of_the_git_strategy() {
        let parsed = crate::parse(
            "language: ruby\ndeploy:\n  provider: heroku\n  strategy: git\n  username: me\n  run: restart\n  app_name: typo\n",
        );
        let messages: Vec<(usize, &str)> = parsed
            .diagnostics
            .iter()
            .map(|d| (d.span().line, d.message.as_str()))
            .collect();
        assert!(
            messages.contains(&(
                4,
                "`strategy: git` deploys through Heroku's build API in Gantry, as `api` does"
            )),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|(line, m)| *line == 7 && m.contains("app_name")),
            "{messages:?}"
        );
        let job = parsed
            .pipeline
            .unwrap()
            .plan(&BuildContext::push("master"), &crate::Catalog::default())
            .jobs
            .remove(0);
        assert_eq!(
            job.deploy[0].provider,
            Provider::Heroku(Heroku {
                api_key: None,
                app: None,
                run: vec!["restart".into()],
                api_url: HEROKU_API_URL.into(),
            })
        );
    }

    #[test]
    fn s3_defaults_are_what_a_file_without_options_reads() {
        let parsed = crate::parse("language: generic\ndeploy:\n  provider: s3\n  bucket: b\n");
        let job = parsed
            .pipeline
            .unwrap()
            .plan(&BuildContext::push("master"), &crate::Catalog::default())
            .jobs
            .remove(0);
        let want = S3 {
            bucket: "b".into(),
            ..S3::default()
        };
        assert_eq!(job.deploy[0].provider, Provider::S3(want));
    }

    #[test]
    fn deploy_on_follows_travis_rules() {
        let none = BTreeMap::new();
        let on_default = DeployOn::default();
        assert!(on_default
            .check(&BuildContext::push("master"), &none)
            .is_ok());
        let err = on_default
            .check(&BuildContext::push("dev"), &none)
            .unwrap_err();
        assert_eq!(err, "branch dev is not master");
        let pr = BuildContext {
            event: Event::PullRequest,
            ..BuildContext::push("master")
        };
        assert_eq!(
            on_default.check(&pr, &none).unwrap_err(),
            "pull requests never deploy"
        );

        let tags = DeployOn {
            tags: Some(true),
            ..Default::default()
        };
        assert!(tags.check(&BuildContext::tag("v1.0"), &none).is_ok());
        assert!(tags.check(&BuildContext::push("master"), &none).is_err());

        let all = DeployOn {
            all_branches: true,
            ..Default::default()
        };
        assert!(all.check(&BuildContext::push("feature/x"), &none).is_ok());

        let repo = DeployOn {
            repo: Some("golang/dep".into()),
            ..Default::default()
        };
        assert!(repo
            .check(&BuildContext::push("master"), &none)
            .unwrap_err()
            .contains("not golang/dep"));

        let main = BuildContext {
            default_branch: "main".into(),
            ..BuildContext::push("main")
        };
        assert!(on_default.check(&main, &none).is_ok());

        let node12 = DeployOn {
            versions: [("node_js".to_string(), "12".to_string())].into(),
            ..Default::default()
        };
        let job: BTreeMap<String, String> = [("node_js".to_string(), "14".to_string())].into();
        assert_eq!(
            node12
                .check(&BuildContext::push("master"), &job)
                .unwrap_err(),
            "node_js is 14, not 12"
        );
    }
}
