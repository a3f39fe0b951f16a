//! `provider: s3` — dpl's options: upload `local_dir` (matching `glob`,
//! dot files only with `dot_match`) under `upload_dir`, with content types,
//! ACL, cache control, expiry, storage class and encryption; multipart for
//! large files; at most `max_threads` uploads at once. S3 only adds: nothing
//! in the bucket is deleted.

use super::aws::{describe, Aws, Service};
use super::values::expand;
use super::Target;
use crate::job_files;
use crate::logs::LogPipeline;
use aws_sdk_s3::primitives::{ByteStream, DateTime, DateTimeFormat};
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, IndexDocument, ObjectCannedAcl, ServerSideEncryption,
    StorageClass, WebsiteConfiguration,
};
use futures::StreamExt;
use gantry_pipeline::S3;
use globset::{Glob, GlobMatcher};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Files above this go up in parts.
const MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
const PART_SIZE: usize = 8 * 1024 * 1024;

/// One file to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// Relative to the workspace; opened through [`job_files`], never
    /// through a link.
    pub path: PathBuf,
    pub key: String,
    pub size: u64,
    /// `Content-Type` and, with `detect_encoding`, `Content-Encoding`;
    /// read while planning, off the async runtime.
    pub content_type: String,
    pub encoding: Option<String>,
}

/// The files under `local_dir` in `workspace` that `s3` uploads, with
/// their keys, sorted. Links (to files or folders) are left out: they may
/// lead anywhere on the runner. Blocking.
pub fn plan(workspace: &Path, local_dir: &Path, s3: &S3) -> Result<Vec<Upload>, String> {
    let glob = Glob::new(&s3.glob)
        .map_err(|e| format!("`glob: {}` is not a valid pattern: {e}", s3.glob))?
        .compile_matcher();
    let dir = job_files::open_dir_below(workspace, local_dir).map_err(|e| {
        format!(
            "local_dir `{}` is not a directory in the workspace: {e}",
            local_dir.display()
        )
    })?;
    let mut out = Vec::new();
    let mut walk = Walk {
        local_dir,
        glob: &glob,
        s3,
        out: &mut out,
    };
    walk.folder(&dir, Path::new(""))?;
    let prefix = s3
        .upload_dir
        .as_deref()
        .map(|d| d.trim_matches('/'))
        .filter(|d| !d.is_empty());
    for upload in &mut out {
        if let Some(prefix) = prefix {
            upload.key = format!("{prefix}/{}", upload.key);
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// A walk of `local_dir` through open folders.
struct Walk<'a> {
    local_dir: &'a Path,
    glob: &'a GlobMatcher,
    s3: &'a S3,
    out: &'a mut Vec<Upload>,
}

impl Walk<'_> {
    /// The files under the open folder `dir`, which is `at` below `local_dir`.
    fn folder(&mut self, dir: &File, at: &Path) -> Result<(), String> {
        let cannot =
            |e: std::io::Error| format!("cannot read {}: {e}", self.local_dir.join(at).display());
        let entries = std::fs::read_dir(job_files::through(dir, "")).map_err(cannot)?;
        for entry in entries {
            let entry = entry.map_err(cannot)?;
            let name = entry.file_name();
            let shown = name.to_string_lossy();
            if shown == ".git" || (!self.s3.dot_match && shown.starts_with('.')) {
                continue;
            }
            let relative = at.join(&name);
            // `file_type` and `metadata` of a directory entry never follow a link.
            let kind = entry.file_type().map_err(cannot)?;
            if kind.is_dir() {
                let sub = job_files::open_no_link(&job_files::through(dir, &name), true)
                    .map_err(cannot)?;
                self.folder(&sub, &relative)?;
            } else if kind.is_file() {
                let key = relative.to_string_lossy().replace('\\', "/");
                if self.glob.is_match(&key) {
                    let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                    // Read from the folder open here: no second walk from the root.
                    let encoding = if self.s3.detect_encoding {
                        job_files::open_no_link(&job_files::through(dir, &name), false)
                            .ok()
                            .and_then(|mut file| encoding(&mut file))
                    } else {
                        None
                    };
                    self.out.push(Upload {
                        // `site/x`, and `x` (not `./x`) for the workspace's top.
                        path: job_files::normal(&self.local_dir.join(&relative)),
                        content_type: content_type(&relative, self.s3),
                        key,
                        size,
                        encoding,
                    });
                }
            }
        }
        Ok(())
    }
}

/// `"max-age=99999: *.css, *.js"` → (value, globs); a plain value matches everything.
fn per_glob(entries: &[String], key: &str) -> Option<String> {
    let mut fallback = None;
    for entry in entries {
        match entry.rsplit_once(": ") {
            Some((value, globs)) => {
                let file = key.rsplit('/').next().unwrap_or(key);
                let hit = globs.split(',').map(str::trim).any(|g| {
                    Glob::new(g)
                        .map(|g| {
                            let m = g.compile_matcher();
                            m.is_match(key) || m.is_match(file)
                        })
                        .unwrap_or(false)
                });
                if hit {
                    return Some(value.trim().to_string());
                }
            }
            None if fallback.is_none() => fallback = Some(entry.trim().to_string()),
            None => {}
        }
    }
    fallback
}

/// A file's content type, from its name, as dpl sets it.
fn content_type(path: &Path, s3: &S3) -> String {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    match &s3.default_text_charset {
        Some(charset) if mime.type_() == mime_guess::mime::TEXT => {
            format!(
                "{}; charset={}",
                mime.essence_str(),
                charset.to_ascii_lowercase()
            )
        }
        _ => mime.essence_str().to_string(),
    }
}

/// `Content-Encoding` of compressed content (`detect_encoding`), from its
/// first two bytes, as dpl tells it.
fn encoding(file: &mut File) -> Option<String> {
    let mut head = [0u8; 2];
    match (std::io::Read::read(file, &mut head).ok()?, head) {
        (2, [0x1f, 0x8b]) => Some("gzip".to_string()),
        (2, [0x1f, 0x9d]) => Some("compress".to_string()),
        _ => None,
    }
}

pub async fn deploy(s3: &S3, aws: &Aws, t: &Target<'_>, p: &mut LogPipeline) -> Result<(), String> {
    // `$VAR` in the names expands from the job's environment, as in every provider.
    let s3 = &S3 {
        bucket: expand(&s3.bucket, t.env),
        local_dir: expand(&s3.local_dir, t.env),
        upload_dir: s3.upload_dir.as_deref().map(|u| expand(u, t.env)),
        ..s3.clone()
    };
    let (workspace, local_dir, options) = (
        t.workspace.to_path_buf(),
        PathBuf::from(&s3.local_dir),
        s3.clone(),
    );
    let uploads = tokio::task::spawn_blocking(move || plan(&workspace, &local_dir, &options))
        .await
        .map_err(|e| e.to_string())??;
    let client = aws.s3(Service::S3, s3.force_path_style);
    let total: u64 = uploads.iter().map(|u| u.size).sum();
    p.say(&format!(
        "Uploading {} file(s), {} bytes, from {} to s3://{}/{} ({} at a time)",
        uploads.len(),
        total,
        s3.local_dir,
        s3.bucket,
        s3.upload_dir.as_deref().unwrap_or(""),
        s3.max_threads
    ))
    .await;
    let (done, skipped, failed) = upload_all(&client, s3, t.workspace, uploads, p).await;
    if let Some(suffix) = &s3.index_document_suffix {
        client
            .put_bucket_website()
            .bucket(&s3.bucket)
            .website_configuration(
                WebsiteConfiguration::builder()
                    .index_document(
                        IndexDocument::builder()
                            .suffix(suffix)
                            .build()
                            .map_err(|e| e.to_string())?,
                    )
                    .build(),
            )
            .send()
            .await
            .map_err(|e| format!("setting the index document failed: {}", describe(&e)))?;
        p.say(&format!("Index document set to {suffix}")).await;
    }
    p.say(&format!(
        "Uploaded {done} file(s){}",
        if skipped > 0 {
            format!(", skipped {skipped} that already existed")
        } else {
            String::new()
        }
    ))
    .await;
    if !failed.is_empty() {
        return Err(format!("{} file(s) could not be uploaded", failed.len()));
    }
    Ok(())
}

/// Uploads `uploads`, at most `max_threads` at a time, saying each failure
/// (and, with `verbose`, each file); returns (uploaded, skipped, failed keys).
pub(crate) async fn upload_all(
    client: &aws_sdk_s3::Client,
    s3: &S3,
    workspace: &Path,
    uploads: Vec<Upload>,
    p: &mut LogPipeline,
) -> (usize, usize, Vec<String>) {
    let mut results = futures::stream::iter(uploads.into_iter().map(|u| {
        let client = client.clone();
        async move {
            let result = upload(&client, s3, workspace, &u).await;
            (u, result)
        }
    }))
    .buffer_unordered(s3.max_threads.max(1) as usize);
    let (mut done, mut skipped, mut failed) = (0usize, 0usize, Vec::new());
    while let Some((u, result)) = results.next().await {
        match result {
            Ok(true) => {
                done += 1;
                if s3.verbose {
                    p.say(&format!("uploaded {} ({} bytes)", u.key, u.size))
                        .await;
                }
            }
            Ok(false) => {
                skipped += 1;
                if s3.verbose {
                    p.say(&format!(
                        "skipped {}: it exists and overwrite is off",
                        u.key
                    ))
                    .await;
                }
            }
            Err(e) => {
                p.say(&format!("\x1b[31;1mfailed to upload {}: {e}\x1b[0m", u.key))
                    .await;
                failed.push(u.key);
            }
        }
    }
    drop(results);
    (done, skipped, failed)
}

/// Uploads one file; `Ok(false)` when it exists and `overwrite` is off.
async fn upload(
    client: &aws_sdk_s3::Client,
    s3: &S3,
    workspace: &Path,
    u: &Upload,
) -> Result<bool, String> {
    if !s3.overwrite
        && client
            .head_object()
            .bucket(&s3.bucket)
            .key(&u.key)
            .send()
            .await
            .is_ok()
    {
        return Ok(false);
    }
    let (content_type, encoding) = (u.content_type.clone(), u.encoding.clone());
    let cache_control = per_glob(&s3.cache_control, &u.key);
    let expires = per_glob(&s3.expires, &u.key)
        .map(|e| {
            DateTime::from_str(&e, DateTimeFormat::HttpDate)
                .or_else(|_| DateTime::from_str(&e, DateTimeFormat::DateTime))
                .map_err(|_| format!("expires `{e}` is not an HTTP date"))
        })
        .transpose()?;
    let acl = ObjectCannedAcl::from(s3.acl.replace('_', "-").as_str());
    let class = StorageClass::from(s3.storage_class.as_str());
    let sse = s3
        .server_side_encryption
        .then_some(ServerSideEncryption::Aes256);

    if u.size <= MULTIPART_THRESHOLD {
        let body = ByteStream::read_from()
            .file(open(workspace, u).await?)
            .build()
            .await
            .map_err(|e| e.to_string())?;
        client
            .put_object()
            .bucket(&s3.bucket)
            .key(&u.key)
            .body(body)
            .content_type(content_type)
            .set_content_encoding(encoding)
            .set_cache_control(cache_control)
            .set_expires(expires)
            .acl(acl)
            .storage_class(class)
            .set_server_side_encryption(sse)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        return Ok(true);
    }

    let created = client
        .create_multipart_upload()
        .bucket(&s3.bucket)
        .key(&u.key)
        .content_type(content_type)
        .set_content_encoding(encoding)
        .set_cache_control(cache_control)
        .set_expires(expires)
        .acl(acl)
        .storage_class(class)
        .set_server_side_encryption(sse)
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let upload_id = created
        .upload_id()
        .ok_or("S3 returned no upload id")?
        .to_string();
    let parts = upload_parts(client, s3, open(workspace, u).await?, &upload_id, u).await;
    match parts {
        Ok(parts) => {
            client
                .complete_multipart_upload()
                .bucket(&s3.bucket)
                .key(&u.key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| describe(&e))?;
            Ok(true)
        }
        Err(e) => {
            let _ = client
                .abort_multipart_upload()
                .bucket(&s3.bucket)
                .key(&u.key)
                .upload_id(&upload_id)
                .send()
                .await;
            Err(e)
        }
    }
}

/// Opens an upload's file, never through a link (it may have become one since the plan).
pub(crate) async fn open(workspace: &Path, u: &Upload) -> Result<tokio::fs::File, String> {
    let (root, path) = (workspace.to_path_buf(), u.path.clone());
    let file = tokio::task::spawn_blocking(move || job_files::open_file_below(&root, &path))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(tokio::fs::File::from_std(file))
}

async fn upload_parts(
    client: &aws_sdk_s3::Client,
    s3: &S3,
    mut file: tokio::fs::File,
    upload_id: &str,
    u: &Upload,
) -> Result<Vec<CompletedPart>, String> {
    use tokio::io::AsyncReadExt;
    let mut parts = Vec::new();
    let mut number = 1;
    loop {
        let mut buf = Vec::with_capacity(PART_SIZE);
        let read = (&mut file)
            .take(PART_SIZE as u64)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| e.to_string())?;
        if read == 0 {
            break;
        }
        let out = client
            .upload_part()
            .bucket(&s3.bucket)
            .key(&u.key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(buf))
            .send()
            .await
            .map_err(|e| describe(&e))?;
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build(),
        );
        number += 1;
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> S3 {
        let yaml = "language: generic\ndeploy:\n  provider: s3\n  bucket: b\n";
        let parsed = gantry_pipeline::parse(yaml);
        let job = parsed
            .pipeline
            .unwrap()
            .plan(
                &gantry_pipeline::BuildContext::default(),
                &gantry_pipeline::Catalog::default(),
            )
            .jobs
            .remove(0);
        match job.deploy[0].provider.clone() {
            gantry_pipeline::Provider::S3(s3) => s3,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plans_keys_with_glob_dot_files_and_upload_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("css")).unwrap();
        std::fs::create_dir_all(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join("index.html"), "<h1>").unwrap();
        std::fs::write(dir.path().join("css/site.css"), "a{}").unwrap();
        std::fs::write(dir.path().join(".well-known"), "x").unwrap();
        std::fs::write(dir.path().join(".git/HEAD"), "x").unwrap();
        let mut s3 = options();
        let keys = |s3: &S3| -> Vec<String> {
            plan(dir.path(), Path::new("."), s3)
                .unwrap()
                .into_iter()
                .map(|u| u.key)
                .collect()
        };
        assert_eq!(keys(&s3), ["css/site.css", "index.html"]);
        s3.dot_match = true;
        assert_eq!(keys(&s3), [".well-known", "css/site.css", "index.html"]);
        s3.glob = "*.html".into();
        s3.upload_dir = Some("/site/".into());
        assert_eq!(keys(&s3), ["site/index.html"]);
    }

    /// A committed link (or one a job made) would upload the runner's own
    /// files: `local_dir: dist` with `dist -> /`, or `site/x -> /etc/shadow`.
    #[test]
    fn links_and_paths_out_of_the_workspace_are_never_uploaded() {
        use std::os::unix::fs::symlink;
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("shadow"), "root:x").unwrap();
        let ws = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(ws.path().join("site")).unwrap();
        std::fs::write(ws.path().join("site/index.html"), "<h1>").unwrap();
        symlink(host.path().join("shadow"), ws.path().join("site/shadow")).unwrap();
        symlink(host.path(), ws.path().join("site/host")).unwrap();
        symlink(host.path(), ws.path().join("dist")).unwrap();
        let s3 = options();

        let uploads = plan(ws.path(), Path::new("site"), &s3).unwrap();
        let keys: Vec<_> = uploads.iter().map(|u| u.key.as_str()).collect();
        assert_eq!(keys, ["index.html"]);
        assert_eq!(uploads[0].path, Path::new("site/index.html"));

        for local_dir in ["dist", "../", "/etc", "site/host"] {
            let error = plan(ws.path(), Path::new(local_dir), &s3).unwrap_err();
            assert!(
                error.starts_with(&format!("local_dir `{local_dir}` is not a directory")),
                "{error}"
            );
        }
    }

    #[test]
    fn cache_control_maps_by_glob() {
        let entries = vec![
            "no-cache".to_string(),
            "max-age=99999: *.css, *.js".to_string(),
        ];
        assert_eq!(
            per_glob(&entries, "css/site.css").as_deref(),
            Some("max-age=99999")
        );
        assert_eq!(
            per_glob(&entries, "index.html").as_deref(),
            Some("no-cache")
        );
    }

    #[test]
    fn content_types_and_encodings() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("site/js")).unwrap();
        std::fs::write(dir.path().join("site/a.html"), "<p>").unwrap();
        std::fs::write(dir.path().join("site/js/app.js"), [0x1f, 0x8b, 8, 0]).unwrap();
        std::fs::write(dir.path().join("site/js/old.js"), [0x1f, 0x9d, 1]).unwrap();
        std::fs::write(dir.path().join("site/one-byte"), [0x1f]).unwrap();
        let mut s3 = options();
        s3.default_text_charset = Some("UTF-8".into());
        s3.detect_encoding = true;
        let headers = |s3: &S3| -> Vec<(String, String, Option<String>)> {
            plan(dir.path(), Path::new("site"), s3)
                .unwrap()
                .into_iter()
                .map(|u| (u.key, u.content_type, u.encoding))
                .collect()
        };
        let found = headers(&s3);
        assert_eq!(
            found[0],
            ("a.html".into(), "text/html; charset=utf-8".into(), None)
        );
        assert_eq!(found[1].0, "js/app.js");
        assert!(found[1].1.contains("javascript"), "{found:?}");
        assert_eq!(found[1].2.as_deref(), Some("gzip"));
        assert_eq!(found[2].2.as_deref(), Some("compress"));
        assert_eq!(
            found[3],
            ("one-byte".into(), "application/octet-stream".into(), None)
        );
        s3.detect_encoding = false;
        assert!(headers(&s3).iter().all(|(_, _, e)| e.is_none()));
    }
}
