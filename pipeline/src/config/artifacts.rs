//! `addons.artifacts`: Travis's artifacts addon — files the job leaves
//! behind, uploaded to S3 at the end of the job (after `after_script`),
//! whatever its result, but never for a pull request.

use super::deploy::Value;
use crate::decode::Decoder;
use crate::yaml::{Node, NodeKind};
use serde::{Deserialize, Serialize};

/// Travis's default `paths`: the files git does not track.
pub const DEFAULT_PATHS: &str = "$(git ls-files -o | tr \"\\n\" \":\")";
/// Travis's default `target_paths`.
pub const DEFAULT_TARGET: &str = "/${TRAVIS_REPO_SLUG}/${TRAVIS_BUILD_NUMBER}/${TRAVIS_JOB_NUMBER}";

/// Where and what to upload. Every option also reads Travis's
/// `ARTIFACTS_*` variable (from the job's env or the repository's
/// secrets) when the file does not give it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifacts {
    /// Default: `$ARTIFACTS_BUCKET`.
    pub bucket: Option<Value>,
    /// The AWS access key id; default `$ARTIFACTS_KEY`.
    pub key: Option<Value>,
    /// The AWS secret access key; default `$ARTIFACTS_SECRET`.
    pub secret: Option<Value>,
    /// Default `$ARTIFACTS_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// An S3-compatible endpoint (MinIO, a local stand-in); default AWS.
    pub endpoint: Option<String>,
    /// Shell words evaluated in the job's container, then split at `:`;
    /// relative to `working_dir`. Default: [`DEFAULT_PATHS`].
    pub paths: Vec<String>,
    /// Key prefixes in the bucket, evaluated like `paths`; each gets every file.
    pub target_paths: Vec<String>,
    /// Relative to the build directory.
    pub working_dir: Option<String>,
    /// Only for builds of this branch (Travis's `branch`).
    pub branch: Option<String>,
    /// S3 canned ACL (`private`, `public-read`, …).
    pub permissions: String,
    pub cache_control: Option<String>,
    /// Files larger than this (bytes) are left out; default 5 GiB.
    pub max_size: u64,
    /// Uploads side by side.
    pub concurrency: u64,
    /// One log line per file.
    pub debug: bool,
    /// Where `addons.artifacts` is written.
    pub line: usize,
}

impl Artifacts {
    fn new(line: usize) -> Artifacts {
        Artifacts {
            bucket: None,
            key: None,
            secret: None,
            region: None,
            endpoint: None,
            paths: Vec::new(),
            target_paths: Vec::new(),
            working_dir: None,
            branch: None,
            permissions: "private".into(),
            cache_control: None,
            max_size: 5 << 30,
            concurrency: 5,
            debug: false,
            line,
        }
    }
}

const KEYS: &[&str] = &[
    "enabled",
    "bucket",
    "key",
    "secret",
    "s3_region",
    "region",
    "endpoint",
    "paths",
    "target_paths",
    "working_dir",
    "branch",
    "permissions",
    "cache_control",
    "max_size",
    "concurrency",
    "debug",
    "log_format",
];

/// An option that may be a Travis `secure:` value: read from the
/// repository secret `secret_name`.
fn value(d: &mut Decoder, node: &Node, key: &str, secret_name: &str) -> Option<Value> {
    if let Some(secure) = node.get("secure") {
        d.string(secure, "secure")?;
        return Some(Value::Secure {
            secret: secret_name.to_string(),
        });
    }
    d.string(node, key).map(|s| Value::Plain(s.value))
}

/// `a:b` strings or lists of them, as Travis joins them.
fn words(d: &mut Decoder, node: &Node, key: &str) -> Vec<String> {
    d.strings(node, key)
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.value)
        .filter(|s| !s.trim().is_empty())
        .collect()
}

/// Reads `addons.artifacts`: `true`, or a map of options; `None` when off.
pub fn decode(d: &mut Decoder, node: &Node) -> Option<Artifacts> {
    let line = node.span.line;
    if let NodeKind::Scalar(_) = node.kind {
        return d
            .bool(node, "addons.artifacts")
            .filter(|on| *on)
            .map(|_| Artifacts::new(line));
    }
    let mut a = Artifacts::new(line);
    let mut enabled = true;
    for (key, value_node, span) in d.entries(node, "addons.artifacts") {
        match key {
            "enabled" => enabled = d.bool(value_node, "enabled").unwrap_or(true),
            "bucket" => a.bucket = value(d, value_node, key, "ARTIFACTS_BUCKET"),
            "key" | "aws_access_key_id" | "access_key_id" => {
                a.key = value(d, value_node, key, "ARTIFACTS_KEY")
            }
            "secret" | "aws_secret_access_key" | "secret_access_key" => {
                a.secret = value(d, value_node, key, "ARTIFACTS_SECRET")
            }
            "s3_region" | "region" => a.region = d.string(value_node, key).map(|s| s.value),
            "endpoint" => a.endpoint = d.string(value_node, key).map(|s| s.value),
            "paths" => a.paths = words(d, value_node, key),
            "target_paths" => a.target_paths = words(d, value_node, key),
            "working_dir" => a.working_dir = d.string(value_node, key).map(|s| s.value),
            "branch" => a.branch = d.string(value_node, key).map(|s| s.value),
            "permissions" => {
                if let Some(p) = d.string(value_node, key) {
                    a.permissions = p.value;
                }
            }
            "cache_control" => a.cache_control = d.string(value_node, key).map(|s| s.value),
            "max_size" => {
                if let Some(n) = d.number(value_node, key, 1, u64::MAX >> 1) {
                    a.max_size = n;
                }
            }
            "concurrency" => {
                if let Some(n) = d.number(value_node, key, 1, 15) {
                    a.concurrency = n;
                }
            }
            "debug" => {
                // Travis: "anything non-empty turns on debug logging".
                a.debug = match value_node.as_scalar() {
                    Some(s) => s.as_bool().unwrap_or(!s.is_null() && !s.text.is_empty()),
                    None => true,
                }
            }
            "log_format" => {}
            _ => d.unknown_key(key, span, KEYS, "addons.artifacts"),
        }
    }
    enabled.then_some(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::Diagnostics;

    fn read(source: &str) -> (Option<Artifacts>, Vec<crate::diagnostic::Diagnostic>) {
        let node = crate::yaml::load(source).unwrap().unwrap();
        let mut diags = Diagnostics::new();
        let mut d = Decoder::new(&mut diags);
        let a = decode(&mut d, node.get("artifacts").unwrap());
        (a, diags.into_sorted())
    }

    #[test]
    fn true_is_travis_defaults_and_false_is_off() {
        let (a, diags) = read("artifacts: true\n");
        assert!(diags.is_empty());
        let a = a.unwrap();
        assert!(a.paths.is_empty() && a.target_paths.is_empty() && a.bucket.is_none());
        assert_eq!((a.permissions.as_str(), a.line), ("private", 1));
        assert!(read("artifacts: false\n").0.is_none());
        assert!(read("artifacts:\n  enabled: false\n  bucket: b\n")
            .0
            .is_none());
    }

    #[test]
    fn options_secure_values_and_a_misspelt_key() {
        let (a, diags) = read(
            "artifacts:\n  bucket: my-bucket\n  key: {secure: abc}\n  secret: $S3_SECRET\n  s3_region: eu-west-1\n  paths:\n    - $(ls *.log | tr \"\\n\" \":\")\n    - build/out\n  target_paths: /logs/$TRAVIS_BUILD_NUMBER\n  working_dir: out\n  debug: 1\n  pahts: x\n",
        );
        let a = a.unwrap();
        assert_eq!(a.bucket, Some(Value::Plain("my-bucket".into())));
        assert_eq!(
            a.key,
            Some(Value::Secure {
                secret: "ARTIFACTS_KEY".into()
            })
        );
        assert_eq!(a.secret, Some(Value::Plain("$S3_SECRET".into())));
        assert_eq!(a.region.as_deref(), Some("eu-west-1"));
        assert_eq!(a.paths, ["$(ls *.log | tr \"\\n\" \":\")", "build/out"]);
        assert_eq!(a.target_paths, ["/logs/$TRAVIS_BUILD_NUMBER"]);
        assert_eq!(a.working_dir.as_deref(), Some("out"));
        assert!(a.debug);
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert_eq!(diags[0].line, 12);
        assert_eq!(diags[0].hint.as_deref(), Some("did you mean `paths`?"));
    }
}
