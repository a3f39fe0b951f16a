//! The HTTP proxy the server's environment names, for its calls to GitHub's
//! API: `https_proxy` (or `HTTPS_PROXY`, `all_proxy`) for HTTPS, minus the
//! hosts `no_proxy` lists, read as curl reads them. HTTPS goes through the
//! proxy's `CONNECT` tunnel, so the proxy sees the host, never the request
//! or its token; a login in the proxy's URL (`http://user:pass@proxy:3128`)
//! is sent to the proxy alone. Plain `http://` API URLs are reached directly.
//!
//! The sign-in calls (reqwest) and the runner's clones (libgit2) and
//! deploys (the AWS SDK) read the same variables on their own.

use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpStream;
use tower::{Service, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Opens TCP connections to GitHub, directly or through the proxy's tunnel;
/// TLS to GitHub goes on top, end to end.
#[derive(Clone)]
pub struct ProxiedConnector {
    direct: HttpConnector,
    proxies: Arc<Matcher>,
}

impl ProxiedConnector {
    /// With the proxies the process's environment names.
    pub fn from_env() -> ProxiedConnector {
        let mut direct = HttpConnector::new();
        // HTTPS URLs too: TLS is the next layer's job.
        direct.enforce_http(false);
        ProxiedConnector {
            direct,
            proxies: Arc::new(Matcher::from_env()),
        }
    }

    /// The proxy a connection to `dst` goes through: HTTPS only (see above).
    fn intercept(&self, dst: &http::Uri) -> Option<Intercept> {
        (dst.scheme_str() == Some("https"))
            .then(|| self.proxies.intercept(dst))
            .flatten()
    }

    /// Where a connection to `dst` goes first, for the start-up log: the
    /// proxy, without its login.
    pub fn proxy_for(&self, dst: &http::Uri) -> Option<String> {
        let proxy = self.intercept(dst)?;
        let uri = proxy.uri();
        Some(format!(
            "{}://{}",
            uri.scheme_str().unwrap_or("http"),
            uri.authority()
                .map(|a| a.as_str().rsplit('@').next().unwrap_or_default())
                .unwrap_or_default()
        ))
    }
}

impl Service<http::Uri> for ProxiedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.direct.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: http::Uri) -> Self::Future {
        match self.intercept(&dst) {
            Some(proxy) => {
                let mut tunnel = Tunnel::new(proxy.uri().clone(), self.direct.clone());
                if let Some(login) = proxy.basic_auth() {
                    tunnel = tunnel.with_auth(login.clone());
                }
                Box::pin(async move {
                    tunnel
                        .oneshot(dst)
                        .await
                        .map_err(|e| format!("through the proxy: {e}").into())
                })
            }
            None => {
                let connecting = self.direct.call(dst);
                Box::pin(async move { connecting.await.map_err(Into::into) })
            }
        }
    }
}
