//! `provider: npm` — dpl's npm. The job's own npm packs `src` in its
//! container (after `run_script`, when given), so the tarball holds what
//! `npm publish` would send; then the runner publishes it as npm's CLI does:
//! one PUT of the package document (its manifest, the dist-tag, the
//! tarball's SHA-1 and SHA-512 integrity, the tarball itself in
//! `_attachments`) with the token as a bearer. The token never enters the
//! container.

use super::values::{expand, resolve, secret_or_env};
use super::Target;
use crate::logs::LogPipeline;
use base64::Engine;
use gantry_pipeline::Npm;
use serde_json::{json, Value};
use sha1::Sha1;
use sha2::{Digest, Sha512};
use std::path::Path;
use std::time::Duration;

/// Where `npm pack` leaves the package, in the build directory.
pub const PACK_DIR: &str = ".gantry-npm-pack";
/// How long the publish may take.
const TIMEOUT: Duration = Duration::from_secs(300);

/// The command the job's container runs first: `run_script`, then `npm
/// pack` of `src` into an empty [`PACK_DIR`].
pub fn pack_command(npm: &Npm, build_dir: &str) -> String {
    let into = crate::script::quote(&format!("{build_dir}/{PACK_DIR}"));
    let mut command = format!("cd {} && ", crate::script::quote(&npm.src));
    if let Some(script) = &npm.run_script {
        command.push_str(&format!("npm run {} && ", crate::script::quote(script)));
    }
    command.push_str(&format!(
        "rm -rf {into} && mkdir -p {into} && npm pack --pack-destination {into}"
    ));
    command
}

pub async fn deploy(npm: &Npm, t: &Target<'_>, p: &mut LogPipeline) -> Result<(), String> {
    let registry = expand(&npm.registry, t.env)
        .trim_end_matches('/')
        .to_string();
    let tag = expand(&npm.tag, t.env);
    // Before any work on the package: without a token there is nothing to do.
    let token = match npm.dry_run {
        true => None,
        false => Some(token(npm, t)?),
    };
    let dir = t.workspace.join(PACK_DIR);
    // Reading and unpacking the tarball, its digests, base64 and the JSON
    // around it are work the size of the package: off the runtime.
    let (npm_, registry_, tag_) = (npm.clone(), registry.clone(), tag.clone());
    let package = tokio::task::spawn_blocking(move || {
        let tarball = packed(&dir);
        // Gone from the build directory, so a later provider (s3 of `.`)
        // does not ship it.
        let _ = std::fs::remove_dir_all(&dir);
        Package::read(tarball?, &npm_, &registry_, &tag_)
    })
    .await
    .map_err(|e| e.to_string())??;
    let Package {
        name,
        version,
        size,
        document,
    } = package;
    let (Some(document), Some(token)) = (document, token) else {
        p.say(&format!(
            "Packed {name}@{version} ({size} bytes); dry_run: nothing published"
        ))
        .await;
        return Ok(());
    };
    let url = format!("{registry}/{}", name.replace('/', "%2f"));
    let client = super::upload_client(TIMEOUT)?;
    let request = client
        .put(&url)
        .bearer_auth(&token)
        .header("npm-command", "publish")
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(document);
    let response = super::send_unless_canceled(request, &registry, t.cancel).await?;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    if (200..300).contains(&status) {
        p.say(&format!(
            "Published {name}@{version} to {registry} as {tag} ({size} bytes)"
        ))
        .await;
        return Ok(());
    }
    // npm's registry answers JSON with an `error`; others, text.
    let said = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| text.lines().next().unwrap_or("").to_string())
        .replace(&token, "[token]");
    let said: String = said.chars().take(300).collect();
    let hint = if said.contains("previously published") || status == 409 {
        "; a version is published once: raise the version in package.json"
    } else if status == 401 || status == 403 {
        "; check the token (`api_token`), and that it may publish this package"
    } else {
        ""
    };
    Err(format!(
        "{registry} refused {name}@{version} ({status}: {said}){hint}"
    ))
}

/// The token to publish with: `api_token`, else the secret (or variable)
/// NPM_API_TOKEN or NPM_TOKEN.
fn token(npm: &Npm, t: &Target<'_>) -> Result<String, String> {
    npm.token
        .as_ref()
        .and_then(|v| resolve(v, t.env, t.secrets))
        .or_else(|| secret_or_env("NPM_API_TOKEN", t.env, t.secrets))
        .or_else(|| secret_or_env("NPM_TOKEN", t.env, t.secrets))
        .ok_or_else(|| "no npm token: set `api_token` (a `secure:` value is read from the repository secret API_TOKEN) or the secret NPM_API_TOKEN".to_string())
}

/// What was packed, and the publish document (serialized) unless `dry_run`.
struct Package {
    name: String,
    version: String,
    /// The tarball's bytes.
    size: usize,
    document: Option<Vec<u8>>,
}

impl Package {
    fn read(tarball: Vec<u8>, npm: &Npm, registry: &str, tag: &str) -> Result<Package, String> {
        let manifest = manifest(&tarball)?;
        let field = |key: &str| {
            manifest[key]
                .as_str()
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .ok_or(format!("the package.json has no {key}"))
        };
        let (name, version) = (field("name")?, field("version")?);
        let document = if npm.dry_run {
            None
        } else {
            let document = document(&manifest, &name, &version, tag, npm, registry, &tarball);
            Some(serde_json::to_vec(&document).map_err(|e| e.to_string())?)
        };
        Ok(Package {
            name,
            version,
            size: tarball.len(),
            document,
        })
    }
}

/// The one tarball `npm pack` left.
fn packed(dir: &Path) -> Result<Vec<u8>, String> {
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| format!("npm pack left no package ({e})"))?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".tgz"))
        .collect();
    found.sort();
    let [filename] = found.as_slice() else {
        return Err(format!(
            "npm pack left {} packages, where one was expected",
            found.len()
        ));
    };
    // Through open folders: a link the job left there is not followed.
    let mut bytes = Vec::new();
    crate::job_files::open_file_below(dir, Path::new(filename))
        .and_then(|mut file| std::io::Read::read_to_end(&mut file, &mut bytes))
        .map_err(|e| format!("cannot read {filename}: {e}"))?;
    Ok(bytes)
}

/// `package/package.json` of the tarball.
fn manifest(tarball: &[u8]) -> Result<Value, String> {
    let text = super::tarball::member(tarball, |path| path == "package/package.json")
        .ok_or("the package is not a tarball with a package/package.json")?;
    serde_json::from_str(&text).map_err(|e| format!("package.json is not JSON: {e}"))
}

/// The document `npm publish` PUTs: libnpmpublish's shape.
#[allow(clippy::too_many_arguments)]
fn document(
    manifest: &Value,
    name: &str,
    version: &str,
    tag: &str,
    npm: &Npm,
    registry: &str,
    tarball: &[u8],
) -> Value {
    let base64 = base64::engine::general_purpose::STANDARD;
    let integrity = format!("sha512-{}", base64.encode(Sha512::digest(tarball)));
    let shasum = hex::encode(Sha1::digest(tarball));
    // The registry serves it as NAME/-/BASENAME-VERSION.tgz.
    let basename = name.rsplit('/').next().unwrap_or(name);
    let attachment = format!("{name}-{version}.tgz");
    let mut version_doc = manifest.clone();
    version_doc["_id"] = json!(format!("{name}@{version}"));
    version_doc["dist"] = json!({
        "shasum": shasum,
        "integrity": integrity,
        "tarball": format!("{registry}/{name}/-/{basename}-{version}.tgz"),
    });
    json!({
        "_id": name,
        "name": name,
        "description": manifest["description"],
        "dist-tags": { tag: version },
        "versions": { version: version_doc },
        "access": npm.access,
        "_attachments": {
            attachment: {
                "content_type": "application/octet-stream",
                "data": base64.encode(tarball),
                "length": tarball.len(),
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npm() -> Npm {
        Npm {
            token: None,
            registry: gantry_pipeline::NPM_REGISTRY.into(),
            tag: "latest".into(),
            src: ".".into(),
            access: None,
            run_script: Some("build".into()),
            dry_run: false,
        }
    }

    #[test]
    fn the_pack_command_runs_the_script_then_packs_into_an_empty_folder() {
        assert_eq!(
            pack_command(&npm(), "/home/travis/build/acme/widget"),
            "cd '.' && npm run 'build' && rm -rf '/home/travis/build/acme/widget/.gantry-npm-pack' && mkdir -p '/home/travis/build/acme/widget/.gantry-npm-pack' && npm pack --pack-destination '/home/travis/build/acme/widget/.gantry-npm-pack'"
        );
    }

    #[test]
    fn the_document_carries_the_tarball_and_its_digests() {
        let manifest =
            json!({"name": "@acme/widget", "version": "1.2.0", "description": "A widget"});
        let doc = document(
            &manifest,
            "@acme/widget",
            "1.2.0",
            "next",
            &npm(),
            "http://registry.test",
            b"tarball",
        );
        assert_eq!(doc["dist-tags"]["next"], "1.2.0");
        let dist = &doc["versions"]["1.2.0"]["dist"];
        assert_eq!(dist["shasum"], hex::encode(Sha1::digest(b"tarball")));
        assert_eq!(
            dist["tarball"],
            "http://registry.test/@acme/widget/-/widget-1.2.0.tgz"
        );
        assert!(dist["integrity"].as_str().unwrap().starts_with("sha512-"));
        let attachment = &doc["_attachments"]["@acme/widget-1.2.0.tgz"];
        assert_eq!(attachment["length"], 7);
    }
}
