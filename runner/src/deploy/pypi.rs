//! `provider: pypi` — dpl's PyPI. As dpl does, the job's own `setup.py`
//! builds the `distributions` in its container (`build_command`); then the
//! runner uploads each file of `dist/` as twine does: a multipart POST of the
//! file and its metadata (read from its `PKG-INFO` or wheel `METADATA`) with
//! its digests, signed in with `user` and `password` (PyPI's API tokens go
//! with `__token__`). The password never enters the container.

use super::values::{expand, resolve, secret_or_env};
use super::Target;
use crate::logs::LogPipeline;
use gantry_pipeline::Pypi;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// How long one file's upload may take.
const TIMEOUT: Duration = Duration::from_secs(300);
/// The most a distribution may weigh (PyPI's own limit is 100 MB).
const MOST_BYTES: u64 = 1 << 30;

/// The command the job's container runs first: dpl's `python setup.py
/// <distributions>` (what `before_deploy` left in `dist/` goes up too, as
/// with dpl's `twine upload dist/*`).
pub fn build_command(pypi: &Pypi) -> String {
    let words: Vec<String> = pypi
        .distributions
        .split_whitespace()
        .map(|word| {
            let plain = word
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.=/".contains(c));
            if plain {
                word.to_string()
            } else {
                crate::script::quote(word)
            }
        })
        .collect();
    format!(
        "\"$(command -v python || command -v python3 || echo python)\" setup.py {}",
        words.join(" ")
    )
}

/// One file of `dist/`, ready to upload.
struct Dist {
    filename: String,
    /// `sdist` or `bdist_wheel`.
    filetype: &'static str,
    /// `source`, or the wheel's Python tag.
    pyversion: String,
    /// The metadata's fields, as twine names them (`requires_dist`, …).
    fields: Vec<(String, String)>,
}

pub async fn deploy(pypi: &Pypi, t: &Target<'_>, p: &mut LogPipeline) -> Result<(), String> {
    let password = pypi
        .password
        .as_ref()
        .and_then(|v| resolve(v, t.env, t.secrets))
        .or_else(|| secret_or_env("PYPI_PASSWORD", t.env, t.secrets))
        .ok_or("no PyPI password: set `password` (a `secure:` value is read from the repository secret PASSWORD) or the secret PYPI_PASSWORD; for an API token, the user is __token__")?;
    let user = expand(&pypi.user, t.env);
    let server = expand(&pypi.server, t.env);
    let dist = t.workspace.join("dist");
    let dists = tokio::task::spawn_blocking(move || read_dists(&dist))
        .await
        .map_err(|e| e.to_string())??;
    if dists.is_empty() {
        return Err(format!(
            "`setup.py {}` left no file in dist/",
            pypi.distributions
        ));
    }
    let client = super::upload_client(TIMEOUT)?;
    for dist in &dists {
        // One file in memory at a time, read again as it goes up.
        let (dir, filename) = (t.workspace.join("dist"), dist.filename.clone());
        // Its SHA-256 too: work the size of the file, off the runtime.
        let (bytes, digest) = tokio::task::spawn_blocking(move || {
            read_file(&dir, &filename).map(|bytes| {
                let digest = hex::encode(Sha256::digest(&bytes));
                (bytes, digest)
            })
        })
        .await
        .map_err(|e| e.to_string())??;
        let size = bytes.len();
        let (content_type, length, body) = form(dist, bytes, &digest);
        let request = client
            .post(&server)
            .basic_auth(&user, Some(&password))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header(reqwest::header::CONTENT_LENGTH, length)
            .body(body);
        let response = super::send_unless_canceled(request, &server, t.cancel).await?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let said = first_line(&text);
        if (200..300).contains(&status) {
            p.say(&format!(
                "Uploaded {} ({size} bytes) to {server}",
                dist.filename
            ))
            .await;
        } else if pypi.skip_existing && already_there(status, &text) {
            p.say(&format!(
                "{} is already on {server}: skipped (skip_existing)",
                dist.filename
            ))
            .await;
        } else {
            let hint = match status {
                401 | 403 => {
                    "; check `user` and `password` (an API token goes with the user __token__)"
                }
                _ if already_there(status, &text) => {
                    "; a version is uploaded once: raise it, or set `skip_existing: true`"
                }
                _ => "",
            };
            // An index that echoes what it was sent must not show the password.
            let said = said.replace(&password, "[password]");
            return Err(format!(
                "{server} refused {} ({status}: {said}){hint}",
                dist.filename
            ));
        }
    }
    Ok(())
}

/// Whether the index said it has the file already: PyPI's 400 "File
/// already exists", pypiserver's 409, as twine's `--skip-existing` reads them.
fn already_there(status: u16, text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    status == 409
        || (status == 400 && (text.contains("already exist") || text.contains("updating asset")))
}

fn first_line(text: &str) -> String {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    line.chars().take(300).collect()
}

/// The files of `dist/`, oldest name first, each with its metadata.
fn read_dists(dir: &Path) -> Result<Vec<Dist>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read dist/: {e}")),
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let mut out = Vec::new();
    for filename in names {
        let (filetype, pyversion) = if filename.ends_with(".whl") {
            let tag = filename
                .trim_end_matches(".whl")
                .rsplit('-')
                .nth(2)
                .unwrap_or("py3")
                .to_string();
            ("bdist_wheel", tag)
        } else if filename.ends_with(".tar.gz") || filename.ends_with(".zip") {
            ("sdist", "source".to_string())
        } else {
            // Signatures and other leftovers are not distributions.
            continue;
        };
        let bytes = read_file(dir, &filename)?;
        let metadata = if filetype == "bdist_wheel" {
            wheel_metadata(&bytes)
        } else if filename.ends_with(".zip") {
            zip_member(&bytes, |name| name.matches('/').count() == 1 && name.ends_with("/PKG-INFO"))
        } else {
            sdist_metadata(&bytes)
        }
        .ok_or_else(|| format!("dist/{filename} has no metadata (PKG-INFO or METADATA): is it a Python distribution?"))?;
        out.push(Dist {
            fields: fields(&metadata),
            filename,
            filetype,
            pyversion,
        });
    }
    Ok(out)
}

/// A file of `dist/`, read through open folders: a link the job left or
/// swapped in is refused, never followed to the runner's own files.
fn read_file(dir: &Path, filename: &str) -> Result<Vec<u8>, String> {
    let cannot = |e: &dyn std::fmt::Display| format!("cannot read dist/{filename}: {e}");
    let file =
        crate::job_files::open_file_below(dir, Path::new(filename)).map_err(|e| cannot(&e))?;
    let size = file.metadata().map_err(|e| cannot(&e))?.len();
    if size > MOST_BYTES {
        return Err(format!(
            "dist/{filename} weighs {size} bytes, more than an index takes"
        ));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(MOST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| cannot(&e))?;
    Ok(bytes)
}

/// `PKG-INFO` at the top folder of a `.tar.gz` sdist.
fn sdist_metadata(bytes: &[u8]) -> Option<String> {
    super::tarball::member(bytes, |path| {
        path.trim_start_matches("./").matches('/').count() == 1 && path.ends_with("/PKG-INFO")
    })
}

/// A wheel's `*.dist-info/METADATA`.
fn wheel_metadata(bytes: &[u8]) -> Option<String> {
    zip_member(bytes, |name| {
        name.matches('/').count() == 1 && name.ends_with(".dist-info/METADATA")
    })
}

fn zip_member(bytes: &[u8], wanted: impl Fn(&str) -> bool) -> Option<String> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).ok()?;
    let name = archive
        .file_names()
        .filter_map(Result::ok)
        .find(|n| wanted(n))?
        .into_owned();
    let mut file = archive.by_name(&name).ok()?;
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    Some(text)
}

/// The metadata's headers as twine's form fields: `Requires-Dist` →
/// `requires_dist`, `Classifier` → `classifiers`, `Project-URL` →
/// `project_urls`; the body after the headers is the `description`.
fn fields(metadata: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut lines = metadata.split('\n').peekable();
    while let Some(line) = lines.next() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            break;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let mut value = value.trim().to_string();
        // A folded value goes on in lines that start with white space.
        while let Some(next) = lines.peek() {
            if next.starts_with(' ') || next.starts_with('\t') {
                value.push('\n');
                value.push_str(next.trim_start_matches([' ', '\t']).trim_end_matches('\r'));
                lines.next();
            } else {
                break;
            }
        }
        let name = match key.trim().to_ascii_lowercase().as_str() {
            "classifier" => "classifiers".to_string(),
            "project-url" => "project_urls".to_string(),
            "platform" => "platform".to_string(),
            other => other.replace('-', "_"),
        };
        out.push((name, value));
    }
    let body: Vec<&str> = lines.collect();
    let body = body.join("\n");
    if !body.trim().is_empty() && !out.iter().any(|(k, _)| k == "description") {
        out.push(("description".into(), body));
    }
    out
}

/// The `multipart/form-data` body twine sends, its content type and its
/// length: the fields (`sha256` is the file's digest, in hex), the file's
/// bytes (not copied) and the closing line.
fn form(dist: &Dist, bytes: Vec<u8>, sha256: &str) -> (String, u64, reqwest::Body) {
    let boundary = format!("gantry-{:016x}", rand::random::<u64>());
    let mut head = Vec::with_capacity(4096);
    let mut field = |name: &str, value: &str| {
        head.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    };
    field(":action", "file_upload");
    field("protocol_version", "1");
    field("filetype", dist.filetype);
    field("pyversion", &dist.pyversion);
    field("sha256_digest", sha256);
    for (name, value) in &dist.fields {
        field(name, value);
    }
    let filename = dist.filename.replace(['"', '\r', '\n'], "_");
    head.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"content\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    let tail = format!("\r\n--{boundary}--\r\n").into_bytes();
    let length = (head.len() + bytes.len() + tail.len()) as u64;
    let parts: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(head), Ok(bytes), Ok(tail)];
    let body = reqwest::Body::wrap_stream(futures::stream::iter(parts));
    (
        format!("multipart/form-data; boundary={boundary}"),
        length,
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_headers_become_twine_s_fields() {
        let metadata = "Metadata-Version: 2.1\nName: widget\nVersion: 1.2.0\nSummary: A widget\nClassifier: License :: OSI Approved\nClassifier: Programming Language :: Python :: 3\nRequires-Dist: requests>=2\nLicense: MIT\n        and more\n\nThe long description.\n";
        let fields = fields(metadata);
        let get = |k: &str| -> Vec<&str> {
            fields
                .iter()
                .filter(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(get("metadata_version"), ["2.1"]);
        assert_eq!(get("name"), ["widget"]);
        assert_eq!(get("classifiers").len(), 2);
        assert_eq!(get("requires_dist"), ["requests>=2"]);
        assert_eq!(get("license"), ["MIT\nand more"]);
        assert_eq!(get("description"), ["The long description.\n"]);
    }

    #[test]
    fn a_wheel_s_python_tag_is_its_pyversion() {
        let dir = tempfile::tempdir().unwrap();
        let mut zip = zip::ZipWriter::new(
            std::fs::File::create(dir.path().join("widget-1.2.0-py3-none-any.whl")).unwrap(),
        );
        zip.start_file(
            "widget-1.2.0.dist-info/METADATA",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        std::io::Write::write_all(&mut zip, b"Name: widget\nVersion: 1.2.0\n").unwrap();
        zip.finish().unwrap();
        std::fs::write(dir.path().join("widget-1.2.0.tar.gz.asc"), "sig").unwrap();
        let dists = read_dists(dir.path()).unwrap();
        assert_eq!(dists.len(), 1, "a signature is not a distribution");
        assert_eq!(
            (dists[0].filetype, dists[0].pyversion.as_str()),
            ("bdist_wheel", "py3")
        );
        assert_eq!(
            dists[0].fields[0],
            ("name".to_string(), "widget".to_string())
        );
        std::fs::write(dir.path().join("broken-1.0.tar.gz"), "not gzip").unwrap();
        let error = read_dists(dir.path()).err().unwrap();
        assert!(
            error.contains("dist/broken-1.0.tar.gz has no metadata"),
            "{error}"
        );
    }

    #[test]
    fn already_there_reads_pypi_and_pypiserver() {
        assert!(already_there(
            409,
            "Package widget-1.0.tar.gz already exists!"
        ));
        assert!(already_there(
            400,
            "File already exists. See https://pypi.org/help/#file-name-reuse"
        ));
        assert!(!already_there(400, "Invalid version"));
        assert!(!already_there(
            403,
            "Invalid or non-existent authentication"
        ));
    }
}
