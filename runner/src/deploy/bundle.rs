//! Elastic Beanstalk source bundles: the workspace zipped as the EB CLI does
//! (`.ebignore` when present, else `.gitignore`), or a `Dockerrun.aws.json`
//! that points at the images this job pushed.

use super::images::PushedImage;
use crate::job_files;
use ignore::WalkBuilder;
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use zip::write::SimpleFileOptions;

/// Zips `dir` into `out`; returns the number of files.
pub fn zip_workspace(dir: &Path, out: &Path) -> Result<usize, String> {
    let eb_ignore = dir.join(".ebignore").is_file();
    let mut walk = WalkBuilder::new(dir);
    walk.hidden(false)
        .parents(false)
        .ignore(false)
        .git_global(false)
        .git_exclude(false)
        .require_git(false)
        .git_ignore(!eb_ignore)
        .follow_links(false)
        .sort_by_file_name(|a, b| a.cmp(b))
        .filter_entry(|e| e.file_name() != ".git");
    if eb_ignore {
        walk.add_custom_ignore_filename(".ebignore");
    }
    let file =
        std::fs::File::create(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut zip = zip::ZipWriter::new(file);
    let mut count = 0;
    for entry in walk.build() {
        let entry = entry.map_err(|e| format!("cannot read the workspace: {e}"))?;
        let path = entry.path();
        if path == out || !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let Ok(relative) = path.strip_prefix(dir) else {
            continue;
        };
        let name = relative.to_string_lossy().replace('\\', "/");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &entry
                .metadata()
                .map_err(|e| format!("cannot read {name}: {e}"))?
                .permissions(),
        );
        zip.start_file(
            name.as_str(),
            SimpleFileOptions::default().unix_permissions(mode),
        )
        .map_err(|e| format!("cannot add {name} to the bundle: {e}"))?;
        // Through open folders: a link swapped in since the walk is refused.
        let mut source = job_files::open_file_below(dir, relative)
            .map_err(|e| format!("cannot read {name}: {e}"))?;
        std::io::copy(&mut source, &mut zip)
            .map_err(|e| format!("cannot add {name} to the bundle: {e}"))?;
        count += 1;
    }
    zip.finish()
        .map_err(|e| format!("cannot write the bundle: {e}"))?;
    Ok(count)
}

/// The `Dockerrun.aws.json` to ship: the repository's own with every image
/// this job pushed moved to its new tag, or a v1 file for the one pushed image.
pub fn dockerrun(
    existing: Option<&str>,
    pushed: &[PushedImage],
    container_port: u64,
) -> Result<String, String> {
    if pushed.is_empty() {
        return Err("`dockerrun: true` needs images pushed by `images:` in this job".into());
    }
    let doc = match existing {
        Some(text) => {
            let mut doc: Value = serde_json::from_str(text)
                .map_err(|e| format!("Dockerrun.aws.json is not valid JSON: {e}"))?;
            let version = doc
                .get("AWSEBDockerrunVersion")
                .map(|v| v.to_string().trim_matches('"').to_string())
                .ok_or("Dockerrun.aws.json has no AWSEBDockerrunVersion")?;
            match version.as_str() {
                "1" => {
                    if let Some(name) = doc.pointer_mut("/Image/Name") {
                        repoint(name, pushed);
                    }
                }
                "2" | "3" => {
                    if let Some(Value::Array(containers)) = doc.get_mut("containerDefinitions") {
                        for c in containers {
                            if let Some(image) = c.get_mut("image") {
                                repoint(image, pushed);
                            }
                        }
                    }
                }
                other => return Err(format!("Dockerrun.aws.json version {other} is not 1, 2 or 3")),
            }
            doc
        }
        None if pushed.len() == 1 => json!({
            "AWSEBDockerrunVersion": "1",
            "Image": {"Name": pushed[0].reference(), "Update": "true"},
            "Ports": [{"ContainerPort": container_port}],
        }),
        None => {
            return Err(format!(
                "this job pushed {} images; add a Dockerrun.aws.json (v2) naming them to the repository",
                pushed.len()
            ))
        }
    };
    serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())
}

/// `repo[:tag]` naming a pushed image becomes `repo:new-tag`.
fn repoint(image: &mut Value, pushed: &[PushedImage]) {
    let Some(text) = image.as_str() else {
        return;
    };
    let without_tag = match text.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => text,
    };
    if let Some(p) = pushed.iter().find(|p| p.name == without_tag) {
        *image = Value::String(p.reference());
    }
}

/// The most of one `.ebextensions` or `.platform` file (they are config files).
const EXTRA_LIMIT: u64 = 64 << 20;

/// Zips a Dockerrun bundle: the file plus `.ebextensions/` and `.platform/` when present.
pub fn zip_dockerrun(workspace: &Path, dockerrun: &str, out: &Path) -> Result<usize, String> {
    let file =
        std::fs::File::create(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut zip = zip::ZipWriter::new(file);
    zip.start_file("Dockerrun.aws.json", SimpleFileOptions::default())
        .and_then(|_| zip.write_all(dockerrun.as_bytes()).map_err(Into::into))
        .map_err(|e| format!("cannot write the bundle: {e}"))?;
    let mut count = 1;
    for extra in [".ebextensions", ".platform"] {
        let dir = workspace.join(extra);
        // A link here may lead anywhere on the runner: not followed.
        if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        for entry in WalkBuilder::new(&dir).hidden(false).build().flatten() {
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            let Ok(relative) = entry.path().strip_prefix(workspace) else {
                continue;
            };
            let name = relative.to_string_lossy().replace('\\', "/");
            let bytes = job_files::open_file_below(workspace, relative)
                .and_then(|f| job_files::read_plain(f, &name, EXTRA_LIMIT))
                .map_err(|e| format!("cannot read {name}: {e}"))?;
            zip.start_file(name.as_str(), SimpleFileOptions::default())
                .and_then(|_| zip.write_all(&bytes).map_err(Into::into))
                .map_err(|e| format!("cannot write the bundle: {e}"))?;
            count += 1;
        }
    }
    zip.finish()
        .map_err(|e| format!("cannot write the bundle: {e}"))?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(zip: &Path) -> Vec<String> {
        let mut archive = zip::ZipArchive::new(std::fs::File::open(zip).unwrap()).unwrap();
        (0..archive.len())
            .map(|i| archive.by_index(i).unwrap().name().unwrap().to_string())
            .collect()
    }

    #[test]
    fn zips_honouring_ebignore_over_gitignore() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path().join("ws");
        std::fs::create_dir_all(w.join("node_modules/x")).unwrap();
        std::fs::create_dir_all(w.join(".git")).unwrap();
        std::fs::write(w.join("Dockerfile"), "FROM x").unwrap();
        std::fs::write(w.join("node_modules/x/i.js"), "").unwrap();
        std::fs::write(w.join(".git/HEAD"), "").unwrap();
        std::fs::write(w.join("secret.env"), "").unwrap();
        std::fs::write(w.join(".gitignore"), "node_modules/\n").unwrap();
        let out = dir.path().join("a.zip");
        zip_workspace(&w, &out).unwrap();
        assert_eq!(names(&out), [".gitignore", "Dockerfile", "secret.env"]);

        std::fs::write(w.join(".ebignore"), "secret.env\n").unwrap();
        zip_workspace(&w, &out).unwrap();
        assert_eq!(
            names(&out),
            [
                ".ebignore",
                ".gitignore",
                "Dockerfile",
                "node_modules/x/i.js"
            ]
        );
    }

    #[test]
    fn dockerrun_points_at_pushed_tags() {
        let pushed = vec![PushedImage {
            name: "127.0.0.1:5000/multi-client".into(),
            tags: vec!["abc123".into(), "latest".into()],
        }];
        let v2 = r#"{"AWSEBDockerrunVersion": 2, "containerDefinitions": [
            {"name": "client", "image": "127.0.0.1:5000/multi-client", "essential": false},
            {"name": "nginx", "image": "nginx:1.25"}]}"#;
        let out: Value = serde_json::from_str(&dockerrun(Some(v2), &pushed, 80).unwrap()).unwrap();
        assert_eq!(
            out["containerDefinitions"][0]["image"],
            "127.0.0.1:5000/multi-client:abc123"
        );
        assert_eq!(out["containerDefinitions"][1]["image"], "nginx:1.25");

        let v1: Value = serde_json::from_str(&dockerrun(None, &pushed, 8080).unwrap()).unwrap();
        assert_eq!(v1["Image"]["Name"], "127.0.0.1:5000/multi-client:abc123");
        assert_eq!(v1["Ports"][0]["ContainerPort"], 8080);
        assert!(dockerrun(None, &[], 80).is_err());
    }

    #[test]
    fn dockerrun_from_the_shared_fixtures_stays_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/aws/dockerrun");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            if !entry.path().to_string_lossy().ends_with(".json") {
                continue;
            }
            seen += 1;
            let text = std::fs::read_to_string(entry.path()).unwrap();
            let pushed = vec![PushedImage {
                name: "x/y".into(),
                tags: vec!["t".into()],
            }];
            let out = dockerrun(Some(&text), &pushed, 80)
                .unwrap_or_else(|e| panic!("{}: {e}", entry.path().display()));
            let _: Value = serde_json::from_str(&out).unwrap();
        }
        assert!(
            seen >= 5,
            "expected the Dockerrun fixtures in {}",
            dir.display()
        );
    }
}
