//! `services:` — sidecar containers a job reaches by name.

use crate::catalog::{self, Catalog};
use crate::decode::Decoder;
use crate::diagnostic::Span;
use crate::yaml::{Node, NodeKind};
use serde::{Deserialize, Serialize};

/// A service container started beside the job on its network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    pub image: String,
    /// Names the job reaches the service by.
    pub hostnames: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// What a `services:` entry asks for, before images are looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceRequest {
    /// A known Travis service by name, or one with an explicit image.
    Container {
        name: String,
        image: Option<String>,
        env: Vec<(String, String)>,
        span: Span,
    },
    /// `services: docker`: the job needs a Docker daemon.
    Docker { span: Span },
    /// `services: xvfb`: an X display in the job's own container.
    Xvfb { span: Span },
}

const SERVICE_KEYS: &[&str] = &["name", "image", "env", "alias"];

/// Reads `services:` (a name, or a list of names and `{name, image, env}` maps).
pub fn requests(d: &mut Decoder, node: &Node) -> Vec<ServiceRequest> {
    let items: Vec<&Node> = match &node.kind {
        NodeKind::Seq(items) => items.iter().collect(),
        NodeKind::Scalar(s) if s.is_null() => Vec::new(),
        _ => vec![node],
    };
    let mut out = Vec::new();
    for item in items {
        match &item.kind {
            NodeKind::Scalar(_) => {
                let Some(name) = d.string(item, "services") else {
                    continue;
                };
                out.push(request(d, name.value, None, Vec::new(), item.span));
            }
            NodeKind::Map(_) => {
                let mut name = None;
                let mut image = None;
                let mut env = Vec::new();
                for (key, value, span) in d.entries(item, "services") {
                    match key {
                        "name" | "alias" => name = d.string(value, key).map(|s| s.value),
                        "image" => image = d.string(value, key).map(|s| s.value),
                        "env" => env = container_env(d, value),
                        other => d.unknown_key(other, span, SERVICE_KEYS, "a service"),
                    }
                }
                let Some(name) = name.or_else(|| image.as_deref().map(short_name)) else {
                    d.diags
                        .error(item.span, "a service needs a `name` or an `image`");
                    continue;
                };
                out.push(request(d, name, image, env, item.span));
            }
            NodeKind::Seq(_) => d.type_error(item, "services", "a service name or a map"),
        }
    }
    out
}

/// A container's env: Docker allows names a shell would not (`discovery.type`).
fn container_env(d: &mut Decoder, node: &Node) -> Vec<(String, String)> {
    let mut env = Vec::new();
    match &node.kind {
        NodeKind::Map(_) => {
            for (name, value, _) in d.entries(node, "env") {
                if let Some(v) = d.string(value, name) {
                    env.push((name.to_string(), v.value));
                }
            }
        }
        _ => {
            for item in d.strings(node, "env").unwrap_or_default() {
                match item.value.split_once('=') {
                    Some((k, v)) if !k.is_empty() => env.push((k.to_string(), v.to_string())),
                    _ => {
                        d.diags.error(
                            item.span,
                            format!("expected NAME=value, found `{}`", item.value),
                        );
                    }
                }
            }
        }
    }
    env
}

fn short_name(image: &str) -> String {
    let base = image.rsplit('/').next().unwrap_or(image);
    base.split([':', '@']).next().unwrap_or(base).to_string()
}

fn request(
    d: &mut Decoder,
    name: String,
    image: Option<String>,
    env: Vec<(String, String)>,
    span: Span,
) -> ServiceRequest {
    if name == "docker" && image.is_none() {
        return ServiceRequest::Docker { span };
    }
    if name == "xvfb" && image.is_none() {
        return ServiceRequest::Xvfb { span };
    }
    if image.is_none() && catalog::service(&name).is_none() {
        d.diags
            .warning(span, format!("unknown service `{name}`; it is ignored"))
            .hint(format!(
                "give it an image: `- name: {name}` with `image: <image>`"
            ));
    }
    ServiceRequest::Container {
        name,
        image,
        env,
        span,
    }
}

/// `addons.postgresql: "11"` and the like: the service at that version
/// (the catalog's image at that tag), started whether or not `services:`
/// names it, as on Travis. An image given in `services:` wins.
pub fn at_version(
    requests: &mut Vec<ServiceRequest>,
    name: &str,
    version: &str,
    span: Span,
    catalog: &Catalog,
) {
    let Some(known) = catalog::service(name) else {
        return;
    };
    let image = catalog.service_image(known);
    // Without its digest (`@sha256:…`) or tag; a registry's `:port` stays.
    let base = image.split('@').next().unwrap_or(&image);
    let repository = match base.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => repository,
        _ => base,
    };
    let versioned = format!("{repository}:{version}");
    let listed = requests.iter_mut().find_map(|r| match r {
        ServiceRequest::Container { name, image, .. }
            if catalog::service(name).map(|k| k.name) == Some(known.name) =>
        {
            Some(image)
        }
        _ => None,
    });
    match listed {
        Some(image) => {
            image.get_or_insert(versioned);
        }
        None => requests.push(ServiceRequest::Container {
            name: known.name.to_string(),
            image: Some(versioned),
            env: Vec::new(),
            span,
        }),
    }
}

/// Resolves requests to containers through the image catalog; unknown names without an image are dropped.
pub fn resolve(requests: &[ServiceRequest], catalog: &Catalog) -> Vec<Service> {
    requests
        .iter()
        .filter_map(|r| match r {
            ServiceRequest::Docker { .. } | ServiceRequest::Xvfb { .. } => None,
            ServiceRequest::Container {
                name, image, env, ..
            } => {
                let known = catalog::service(name);
                let image = image
                    .clone()
                    .or_else(|| known.map(|k| catalog.service_image(k)))?;
                let mut hostnames: Vec<String> = vec![name.clone()];
                let mut all_env: Vec<(String, String)> = Vec::new();
                if let Some(k) = known {
                    hostnames.extend(k.hostnames.iter().map(|h| h.to_string()));
                    all_env.extend(k.env.iter().map(|(a, b)| (a.to_string(), b.to_string())));
                }
                hostnames.dedup();
                hostnames.sort();
                hostnames.dedup();
                for (k, v) in env {
                    all_env.retain(|(existing, _)| existing != k);
                    all_env.push((k.clone(), v.clone()));
                }
                Some(Service {
                    name: name.clone(),
                    image,
                    hostnames,
                    env: all_env,
                })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An operator's mirror keeps its registry port; a pinned digest goes.
    #[test]
    fn a_version_replaces_the_catalog_images_tag_or_digest() {
        let mut catalog = Catalog::default();
        let versioned = |catalog: &Catalog| {
            let mut requests = Vec::new();
            at_version(&mut requests, "postgresql", "11", Span::default(), catalog);
            match &requests[0] {
                ServiceRequest::Container { image, .. } => image.clone().unwrap(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(versioned(&catalog), "postgres:11");
        for (mirror, expected) in [
            (
                "mirror.local:5000/postgres:16",
                "mirror.local:5000/postgres:11",
            ),
            (
                "mirror.local:5000/postgres",
                "mirror.local:5000/postgres:11",
            ),
            ("postgres:16@sha256:0123abcd", "postgres:11"),
        ] {
            catalog
                .service_images
                .insert("postgresql".into(), mirror.into());
            assert_eq!(versioned(&catalog), expected, "{mirror}");
        }
    }
}
