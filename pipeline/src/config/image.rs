//! `image:` (what a job runs in) and `images:` (what a passing job builds and pushes).

use crate::decode::Decoder;
use crate::diagnostic::Span;
use crate::yaml::{Node, NodeKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The image a job's container runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ImageSpec {
    /// A registry image such as `node:18`.
    Name(String),
    /// Built from the repository first (the `docker build -f Dockerfile.dev` flow).
    Build { build: BuildSpec },
}

/// How to build an image from the checked-out repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildSpec {
    pub dockerfile: String,
    pub context: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// An image to build, tag and push after the job passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagePush {
    /// Repository without tag: `registry.example.com/team/web`, `user/app`.
    pub name: String,
    #[serde(flatten)]
    pub build: BuildSpec,
    /// Tags to push; `$GANTRY_COMMIT`, `$GANTRY_BRANCH`, `$GANTRY_TAG` expand.
    pub tags: Vec<String>,
    /// Names of the repository secrets holding the registry login, if it needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<RegistryCredentials>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryCredentials {
    pub username: String,
    pub password: String,
}

const BUILD_KEYS: &[&str] = &["dockerfile", "context", "args", "target"];
const PUSH_KEYS: &[&str] = &[
    "name",
    "dockerfile",
    "context",
    "args",
    "target",
    "tags",
    "credentials",
];

fn build_spec(d: &mut Decoder, node: &Node) -> Option<BuildSpec> {
    let mut spec = BuildSpec {
        dockerfile: "Dockerfile".into(),
        context: ".".into(),
        args: BTreeMap::new(),
        target: None,
    };
    if let NodeKind::Scalar(_) = node.kind {
        spec.dockerfile = d.string(node, "build")?.value;
        return Some(spec);
    }
    for (key, value, span) in d.entries(node, "build") {
        build_key(d, &mut spec, key, value, span, BUILD_KEYS, "`image.build`");
    }
    Some(spec)
}

/// Reads one key shared by `image.build` and `images[]`; returns false when it is not a build key.
fn build_key(
    d: &mut Decoder,
    spec: &mut BuildSpec,
    key: &str,
    value: &Node,
    span: Span,
    known: &[&str],
    context: &str,
) -> bool {
    match key {
        "dockerfile" => {
            if let Some(s) = d.string(value, key) {
                spec.dockerfile = s.value;
            }
        }
        "context" => {
            if let Some(s) = d.string(value, key) {
                spec.context = s.value;
            }
        }
        "target" => spec.target = d.string(value, key).map(|s| s.value),
        "args" => {
            for (name, v, _) in d.entries(value, "args") {
                if let Some(v) = d.string(v, name) {
                    spec.args.insert(name.to_string(), v.value);
                }
            }
        }
        other => {
            if known == BUILD_KEYS {
                d.unknown_key(other, span, known, context);
            }
            return false;
        }
    }
    true
}

/// `image: node:18` or `image: {build: {dockerfile: Dockerfile.dev}}`.
pub fn image(d: &mut Decoder, node: &Node) -> Option<ImageSpec> {
    match &node.kind {
        NodeKind::Scalar(_) => {
            let name = d.string(node, "image")?;
            if name.value.trim().is_empty() || name.value.contains(char::is_whitespace) {
                d.diags
                    .error(node.span, format!("`{}` is not an image name", name.value));
                return None;
            }
            Some(ImageSpec::Name(name.value))
        }
        NodeKind::Map(_) => {
            let mut result = None;
            for (key, value, span) in d.entries(node, "image") {
                match key {
                    "build" => {
                        result = build_spec(d, value).map(|build| ImageSpec::Build { build })
                    }
                    "name" => result = image(d, value),
                    other => d.unknown_key(other, span, &["build", "name"], "`image`"),
                }
            }
            if node.get("build").is_none() && node.get("name").is_none() {
                d.diags
                    .error(node.span, "`image` needs a name or a `build:` section");
            }
            result
        }
        NodeKind::Seq(_) => {
            d.type_error(node, "image", "an image name or a `build:` map");
            None
        }
    }
}

/// `images:`: a list of images to build and push.
pub fn pushes(d: &mut Decoder, node: &Node) -> Vec<ImagePush> {
    let items: Vec<&Node> = match &node.kind {
        NodeKind::Seq(items) => items.iter().collect(),
        NodeKind::Map(_) => vec![node],
        _ => {
            d.type_error(node, "images", "a list of images");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for item in items {
        let mut spec = BuildSpec {
            dockerfile: "Dockerfile".into(),
            context: ".".into(),
            args: BTreeMap::new(),
            target: None,
        };
        let mut name = None;
        let mut tags = vec!["$GANTRY_COMMIT".to_string(), "latest".to_string()];
        let mut credentials = None;
        for (key, value, span) in d.entries(item, "images") {
            if build_key(d, &mut spec, key, value, span, PUSH_KEYS, "an image") {
                continue;
            }
            match key {
                "name" => name = d.string(value, key),
                "tags" => {
                    if let Some(list) = d.strings(value, key) {
                        tags = list.into_iter().map(|s| s.value).collect();
                    }
                }
                "credentials" => {
                    let username = value.get("username").and_then(|n| d.string(n, "username"));
                    let password = value.get("password").and_then(|n| d.string(n, "password"));
                    match (username, password) {
                        (Some(u), Some(p)) => {
                            credentials = Some(RegistryCredentials {
                                username: u.value,
                                password: p.value,
                            })
                        }
                        _ => {
                            d.diags
                                .error(value.span, "`credentials` needs `username` and `password`: the names of secrets")
                                .hint("credentials: {username: DOCKER_USERNAME, password: DOCKER_PASSWORD}");
                        }
                    }
                }
                other => d.unknown_key(other, span, PUSH_KEYS, "an image"),
            }
        }
        let Some(name) = name else {
            d.diags
                .error(item.span, "an image in `images` needs a `name`")
                .hint("name: registry.example.com/team/app");
            continue;
        };
        if name.value.contains(char::is_whitespace) || name.value.is_empty() {
            d.diags
                .error(name.span, format!("`{}` is not an image name", name.value));
            continue;
        }
        if name
            .value
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'))
        {
            d.diags
                .error(
                    name.span,
                    format!("`{}`: give the image name without a tag", name.value),
                )
                .hint("put tags under `tags:`");
            continue;
        }
        if tags.is_empty() {
            d.diags.error(item.span, "an image needs at least one tag");
            continue;
        }
        out.push(ImagePush {
            name: name.value,
            build: spec,
            tags,
            credentials,
        });
    }
    out
}
