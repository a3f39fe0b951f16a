//! `provider: releases` — dpl's GitHub Releases: the release of the build's
//! tag is found (drafts too) or made as a draft, each file goes up as an
//! asset, then the release is published (unless `draft: true`), so nobody
//! downloads from a release that is half there. An asset of the same name
//! is kept unless `overwrite: true`. The token goes only into the
//! `Authorization` header; no error text carries it.

use super::s3::{self, Upload};
use super::values::{expand, github_token};
use super::Target;
use crate::job_files::{in_workspace, literal, open_file_below, read_plain};
use crate::logs::LogPipeline;
use gantry_pipeline::{Releases, S3};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value as Json};
use std::path::{Path, PathBuf};
use std::time::Duration;

const YELLOW: &str = "\x1b[33;1m";
const RESET: &str = "\x1b[0m";
/// The API of github.com; a server for GitHub Enterprise sends its own.
pub const GITHUB_API: &str = "https://api.github.com";
/// The most of a `release_notes_file` read.
const NOTES_LIMIT: u64 = 1 << 20;
/// Attempts of a call GitHub may answer with a 5xx during an outage.
const ATTEMPTS: u32 = 3;

#[derive(Debug, Deserialize)]
struct Release {
    id: u64,
    tag_name: String,
    draft: bool,
    upload_url: String,
    #[serde(default)]
    html_url: String,
    #[serde(default)]
    assets: Vec<Asset>,
}

#[derive(Debug, Deserialize)]
struct Asset {
    id: u64,
    name: String,
}

pub async fn deploy(r: &Releases, t: &Target<'_>, p: &mut LogPipeline) -> Result<(), String> {
    let token = github_token(r.token.as_ref(), "api_key", t.env, t.secrets)?;
    let slug = r
        .repo
        .as_deref()
        .map(|s| expand(s, t.env))
        .unwrap_or_else(|| t.repo.full_name.clone());
    let tag = r
        .tag_name
        .as_deref()
        .map(|s| expand(s, t.env))
        .filter(|s| !s.is_empty())
        .or_else(|| t.build.tag.clone())
        .ok_or("this is not a tag build, and `tag_name` is not set: deploy releases `on: {tags: true}`")?;

    let files: Vec<String> = r.files.iter().map(|f| expand(f, t.env)).collect();
    let (workspace, build_dir, glob) = (
        t.workspace.to_path_buf(),
        t.build_dir.to_string(),
        r.file_glob,
    );
    let (uploads, notes) =
        tokio::task::spawn_blocking(move || plan(&workspace, &build_dir, &files, glob))
            .await
            .map_err(|e| e.to_string())?;
    for note in &notes {
        p.say(&format!("{YELLOW}{note}{RESET}")).await;
    }
    if uploads.is_empty() && !r.files.is_empty() {
        return Err(format!(
            "none of the files to upload was found ({})",
            r.files.join(", ")
        ));
    }
    let body = match &r.release_notes_file {
        Some(file) => Some(read_notes(t.workspace, t.build_dir, &expand(file, t.env)).await?),
        None => r.body.as_deref().map(|b| expand(b, t.env)),
    };

    // What the options say of the release: set when it is made, and again
    // when it is published (dpl updates an existing release with them).
    let mut details = json!({});
    if let Some(name) = &r.name {
        details["name"] = json!(expand(name, t.env));
    }
    if let Some(body) = &body {
        details["body"] = json!(body);
    }
    if let Some(pre) = r.prerelease {
        details["prerelease"] = json!(pre);
    }

    let api = t.github_api.trim_end_matches('/');
    let gh = GitHub::new(api, &token)?;
    let release = match gh.find(&slug, &tag, t).await? {
        Some(release) => {
            p.say(&format!(
                "Release {tag} of {slug} exists{}",
                if release.draft { " (a draft)" } else { "" }
            ))
            .await;
            release
        }
        None => {
            let mut new = details.clone();
            new["tag_name"] = json!(tag);
            new["draft"] = json!(true);
            if new.get("name").is_none() {
                new["name"] = json!(tag);
            }
            new["target_commitish"] = json!(r
                .target_commitish
                .as_deref()
                .map(|c| expand(c, t.env))
                .unwrap_or_else(|| t.build.commit.clone()));
            let url = format!("{api}/repos/{slug}/releases");
            let doing = "creating the release";
            let created = gh
                .checked(
                    gh.sent(gh.call(Method::POST, &url).json(&new), t).await?,
                    doing,
                )
                .await?;
            let made: Release = GitHub::read(created, doing).await?;
            p.say(&format!(
                "Created release {tag} of {slug}, a draft until its files are up"
            ))
            .await;
            made
        }
    };

    let upload_to = release
        .upload_url
        .split('{')
        .next()
        .unwrap_or_default()
        .to_string();
    for u in &uploads {
        let name = asset_name(&u.path);
        if let Some(existing) = release.assets.iter().find(|a| a.name == name) {
            if !r.overwrite {
                p.say(&format!(
                    "{name} is already on release {tag}; kept (`overwrite: true` replaces it)"
                ))
                .await;
                continue;
            }
            let url = format!("{api}/repos/{slug}/releases/assets/{}", existing.id);
            gh.send(
                || gh.call(Method::DELETE, &url),
                &format!("deleting the old {name}"),
                t,
            )
            .await?;
        }
        let file = s3::open(t.workspace, u).await?;
        let stream = tokio_util::io::ReaderStream::new(file);
        let request = gh
            .call(Method::POST, &upload_to)
            .query(&[("name", name.as_str())])
            .header(reqwest::header::CONTENT_TYPE, &u.content_type)
            .header(reqwest::header::CONTENT_LENGTH, u.size)
            .body(reqwest::Body::wrap_stream(stream));
        // Not retried: a failed upload may leave a broken asset behind, which
        // the next attempt would collide with.
        gh.checked(
            gh.sent(request, t).await?,
            &format!("uploading {}", u.path.display()),
        )
        .await?;
        p.say(&format!(
            "Uploaded {} ({} bytes) as {name}",
            u.path.display(),
            u.size
        ))
        .await;
    }

    // Published (or kept a draft), with the options as given.
    let mut update = details;
    update["draft"] = json!(r.draft);
    let url = format!("{api}/repos/{slug}/releases/{}", release.id);
    let doing = "publishing the release";
    let published = gh
        .send(|| gh.call(Method::PATCH, &url).json(&update), doing, t)
        .await?;
    let done: Release = GitHub::read(published, doing).await?;
    p.say(&if done.draft {
        format!(
            "Release {} stays a draft (draft: true): {}",
            done.tag_name, done.html_url
        )
    } else {
        format!("Published release {}: {}", done.tag_name, done.html_url)
    })
    .await;
    Ok(())
}

/// The files to upload, relative to the workspace, and what was left out
/// and why. Blocking.
fn plan(
    workspace: &Path,
    build_dir: &str,
    files: &[String],
    glob: bool,
) -> (Vec<Upload>, Vec<String>) {
    let (mut uploads, mut notes) = (Vec::new(), Vec::new());
    let (inside, outside) = in_workspace(build_dir, files.iter().map(String::as_str), build_dir);
    for path in outside {
        notes.push(format!(
            "{path} is not in the build directory; only files in it are uploaded"
        ));
    }
    for path in inside {
        let shown = path.display().to_string();
        let (folder, pattern) = split_pattern(&path, glob);
        let options = S3 {
            glob: pattern.clone(),
            dot_match: true,
            ..S3::default()
        };
        let local_dir = if folder.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            folder
        };
        // `*` stays within a folder, as in dpl; `**` crosses them.
        let depth = pattern.matches('/').count();
        let found: Vec<Upload> = s3::plan(workspace, &local_dir, &options)
            .unwrap_or_default()
            .into_iter()
            .filter(|u| pattern.contains("**") || u.key.matches('/').count() == depth)
            .collect();
        if found.is_empty() {
            notes.push(format!("{shown} was not found; nothing uploaded for it"));
        }
        for u in found {
            if uploads
                .iter()
                .any(|o: &Upload| asset_name(&o.path) == asset_name(&u.path))
            {
                notes.push(format!(
                    "{} has the same name as a file uploaded before it; it is left out",
                    u.path.display()
                ));
            } else {
                uploads.push(u);
            }
        }
    }
    (uploads, notes)
}

/// The folders before the first one with a glob character, and the rest
/// as a pattern: `dist/*/bin-*` → (`dist`, `*/bin-*`). Without `glob`, or
/// without a glob character, the last name is the file, matching only itself.
fn split_pattern(path: &Path, glob: bool) -> (PathBuf, String) {
    let mut folder = PathBuf::new();
    let mut rest: Vec<String> = Vec::new();
    for c in path.components() {
        let text = c.as_os_str().to_string_lossy();
        if rest.is_empty() && !(glob && text.contains(['*', '?', '[', '{'])) {
            folder.push(c);
        } else {
            rest.push(text.into_owned());
        }
    }
    if rest.is_empty() {
        // No pattern at all: the last name is the file.
        let name = folder
            .file_name()
            .map(|n| literal(&n.to_string_lossy()))
            .unwrap_or_default();
        folder.pop();
        return (folder, name);
    }
    (folder, rest.join("/"))
}

fn asset_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

async fn read_notes(workspace: &Path, build_dir: &str, file: &str) -> Result<String, String> {
    let (inside, _) = in_workspace(build_dir, [file], build_dir);
    let Some(path) = inside.into_iter().next() else {
        return Err(format!(
            "release_notes_file {file} is not in the build directory"
        ));
    };
    let root = workspace.to_path_buf();
    let shown = file.to_string();
    tokio::task::spawn_blocking(move || {
        let f = open_file_below(&root, &path)?;
        read_plain(f, &shown, NOTES_LIMIT)
    })
    .await
    .map_err(|e| e.to_string())?
    .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    .map_err(|e| format!("release_notes_file {file} cannot be read: {e}"))
}

/// GitHub's REST API with the job's token.
struct GitHub {
    http: reqwest::Client,
    api: String,
    token: String,
}

impl GitHub {
    fn new(api: &str, token: &str) -> Result<GitHub, String> {
        reqwest::Url::parse(api)
            .map_err(|e| format!("the GitHub API URL {api} is not a URL: {e}"))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("gantry/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.without_url().to_string())?;
        Ok(GitHub {
            http,
            api: api.to_string(),
            token: token.to_string(),
        })
    }

    fn call(&self, method: Method, url: &str) -> RequestBuilder {
        self.http
            .request(method, url)
            .bearer_auth(&self.token)
            .header(reqwest::header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
    }

    /// Sends, giving up when the job is canceled. Errors never name the URL's query.
    async fn sent(&self, request: RequestBuilder, t: &Target<'_>) -> Result<Response, String> {
        tokio::select! {
            sent = request.send() => sent.map_err(|e| format!("GitHub did not answer: {}", e.without_url())),
            _ = t.cancel.cancelled() => Err("the deploy was canceled".into()),
        }
    }

    /// `Ok` for a 2xx answer; else what GitHub said, with a hint for the usual causes.
    async fn checked(&self, response: Response, doing: &str) -> Result<Response, String> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let said: Json = response.json().await.unwrap_or(Json::Null);
        let mut message = said["message"].as_str().unwrap_or("").to_string();
        if let Some(errors) = said["errors"].as_array() {
            for e in errors {
                if let Some(code) = e["code"].as_str().or_else(|| e["message"].as_str()) {
                    message.push_str(&format!(" ({code})"));
                }
            }
        }
        let hint = match status {
            StatusCode::UNAUTHORIZED => {
                ": GitHub refused the token; check `api_key` or GITHUB_TOKEN"
            }
            StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {
                ": the token needs write access to the repository's contents"
            }
            _ => "",
        };
        Err(format!(
            "{doing} failed: GitHub answered {status} {message}{hint}"
        ))
    }

    /// Sends until GitHub answers with something other than a 5xx, at most
    /// [`ATTEMPTS`] times; only for calls that may be repeated.
    async fn send(
        &self,
        request: impl Fn() -> RequestBuilder,
        doing: &str,
        t: &Target<'_>,
    ) -> Result<Response, String> {
        let mut attempt = 1;
        loop {
            let answer = self.sent(request(), t).await;
            let again = match &answer {
                Ok(response) => response.status().is_server_error(),
                Err(_) => !t.cancel.is_cancelled(),
            };
            if !again || attempt >= ATTEMPTS {
                return self.checked(answer?, doing).await;
            }
            tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
            attempt += 1;
        }
    }

    /// The JSON of a checked answer.
    async fn read<T: serde::de::DeserializeOwned>(
        response: Response,
        doing: &str,
    ) -> Result<T, String> {
        response.json().await.map_err(|e| {
            format!(
                "{doing}: GitHub's answer was not understood: {}",
                e.without_url()
            )
        })
    }

    /// The release of `tag`, drafts included (GitHub's by-tag lookup skips
    /// them), from the newest 1,000 releases.
    async fn find(&self, slug: &str, tag: &str, t: &Target<'_>) -> Result<Option<Release>, String> {
        for page in 1..=10 {
            let url = format!("{}/repos/{slug}/releases", self.api);
            let doing = "listing the releases";
            let listed = self
                .send(
                    || {
                        self.call(Method::GET, &url)
                            .query(&[("per_page", "100"), ("page", &page.to_string())])
                    },
                    doing,
                    t,
                )
                .await?;
            let releases: Vec<Release> = GitHub::read(listed, doing).await?;
            let last = releases.len() < 100;
            if let Some(found) = releases.into_iter().find(|r| r.tag_name == tag) {
                return Ok(Some(found));
            }
            if last {
                break;
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, path: &str) {
        let full = dir.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, path).unwrap();
    }

    #[test]
    fn files_are_named_paths_or_patterns_within_one_folder() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "dist/tool-linux.tar.gz",
            "dist/tool-mac.tar.gz",
            "dist/old/tool-0.1.tar.gz",
            "README.md",
            "docs/README.md",
        ] {
            touch(dir.path(), f);
        }
        let build = "/home/travis/build/o/r";
        let files = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();

        let (up, notes) = plan(
            dir.path(),
            build,
            &files(&["dist/*.tar.gz", "/etc/passwd"]),
            true,
        );
        let names: Vec<String> = up.iter().map(|u| u.path.display().to_string()).collect();
        assert_eq!(names, ["dist/tool-linux.tar.gz", "dist/tool-mac.tar.gz"]);
        assert_eq!(up[0].content_type, "application/gzip");
        assert_eq!(
            notes,
            ["/etc/passwd is not in the build directory; only files in it are uploaded"]
        );

        // `**` crosses folders.
        let (up, _) = plan(dir.path(), build, &files(&["dist/**/*.tar.gz"]), true);
        assert_eq!(up.len(), 3, "{up:?}");

        // Without file_glob a `*` is a character of the name.
        let (up, notes) = plan(dir.path(), build, &files(&["dist/*.tar.gz"]), false);
        assert!(up.is_empty());
        assert_eq!(
            notes,
            ["dist/*.tar.gz was not found; nothing uploaded for it"]
        );

        // Absolute paths in the build directory, and two files of one name.
        let (up, notes) = plan(
            dir.path(),
            build,
            &files(&[
                &format!("{build}/README.md"),
                "docs/README.md",
                "missing.zip",
            ]),
            false,
        );
        assert_eq!(up.len(), 1);
        assert_eq!(up[0].path, PathBuf::from("README.md"));
        assert_eq!(
            notes,
            [
                "docs/README.md has the same name as a file uploaded before it; it is left out",
                "missing.zip was not found; nothing uploaded for it"
            ]
        );
    }
}
