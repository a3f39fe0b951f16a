//! Git's smart HTTP protocol on 127.0.0.1 behind HTTP Basic auth, as GitHub
//! serves a private repository: the real `git http-backend` run as a CGI
//! program, refusing every request without the expected login. Over plain
//! HTTP, or over HTTPS with a certificate authority of the test's own.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use base64::Engine;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;

pub struct GitHttp {
    /// `http://127.0.0.1:port` (or `https://`); a repository `root/x.git`
    /// is at `{url}/x.git`.
    pub url: String,
    /// Over HTTPS: the authority that signed the server's certificate (DER).
    pub ca: Option<Vec<u8>>,
    /// Every request: its path and whether it carried the right login.
    pub requests: Requests,
    _server: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Backend {
    root: PathBuf,
    login: String,
    requests: Requests,
}

impl GitHttp {
    /// Serves the repositories under `root` to `username`:`password` only.
    pub async fn start(root: &Path, username: &str, password: &str) -> GitHttp {
        let (app, requests) = Backend::app(root, username, password);
        let (url, server) = crate::serve(app).await;
        GitHttp {
            url,
            ca: None,
            requests,
            _server: server,
        }
    }

    /// As [`GitHttp::start`], over HTTPS.
    pub async fn start_tls(root: &Path, username: &str, password: &str) -> GitHttp {
        let (app, requests) = Backend::app(root, username, password);
        let (url, server, ca) = crate::tls::serve_tls(app).await;
        GitHttp {
            url,
            ca: Some(ca),
            requests,
            _server: server,
        }
    }
}

type Requests = Arc<Mutex<Vec<(String, bool)>>>;

/// A host that answers every request with a redirect to the same path on
/// another (`302 Found`, as a moved repository's old host does), recording
/// each request's path and whether it carried an `Authorization` header.
pub struct Redirect {
    pub url: String,
    pub requests: Requests,
    _server: tokio::task::JoinHandle<()>,
}

impl Redirect {
    pub async fn start(target: &str) -> Redirect {
        let requests = Requests::default();
        let seen = requests.clone();
        let target = target.trim_end_matches('/').to_string();
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let (seen, target) = (seen.clone(), target.clone());
            async move {
                let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
                seen.lock().unwrap().push((
                    uri.path().to_string(),
                    headers.contains_key("authorization"),
                ));
                Response::builder()
                    .status(StatusCode::FOUND)
                    .header("location", format!("{target}{path}"))
                    .body(Body::empty())
                    .unwrap()
            }
        });
        let (url, server) = crate::serve(app).await;
        Redirect {
            url,
            requests,
            _server: server,
        }
    }
}

impl Backend {
    fn app(root: &Path, username: &str, password: &str) -> (axum::Router, Requests) {
        let backend = Backend {
            root: root.to_path_buf(),
            login: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            ),
            requests: Arc::default(),
        };
        let requests = backend.requests.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let backend = backend.clone();
                async move { backend.handle(method, uri, headers, body).await }
            },
        );
        (app, requests)
    }
}

impl Backend {
    async fn handle(&self, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let authorized = header("authorization") == self.login;
        self.requests
            .lock()
            .unwrap()
            .push((uri.path().to_string(), authorized));
        if !authorized {
            return Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header("www-authenticate", "Basic realm=\"GitHub\"")
                .body(Body::empty())
                .unwrap();
        }
        let mut child = tokio::process::Command::new("git")
            .arg("http-backend")
            .env("GIT_PROJECT_ROOT", &self.root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("PATH_INFO", uri.path())
            .env("QUERY_STRING", uri.query().unwrap_or_default())
            .env("REQUEST_METHOD", method.as_str())
            .env("CONTENT_TYPE", header("content-type"))
            .env("CONTENT_LENGTH", body.len().to_string())
            .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
            .env("HTTP_GIT_PROTOCOL", header("git-protocol"))
            .env("REMOTE_USER", "gantry")
            .env("REMOTE_ADDR", "127.0.0.1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("git http-backend");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(&body).await.expect("request body");
        drop(stdin);
        let out = child.wait_with_output().await.expect("git http-backend");
        // CGI output: headers, a blank line, the body.
        let split = out
            .stdout
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| (i, 4))
            .or_else(|| {
                out.stdout
                    .windows(2)
                    .position(|w| w == b"\n\n")
                    .map(|i| (i, 2))
            })
            .expect("CGI headers");
        let head = String::from_utf8_lossy(&out.stdout[..split.0]).to_string();
        let mut response = Response::builder();
        for line in head.lines() {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            if name.eq_ignore_ascii_case("status") {
                let code = value.trim().split(' ').next().unwrap_or("200");
                response = response.status(code.parse::<u16>().unwrap_or(200));
            } else {
                response = response.header(name.trim(), value.trim());
            }
        }
        response
            .body(Body::from(out.stdout[split.0 + split.1..].to_vec()))
            .unwrap()
    }
}
