//! An HTTP proxy on 127.0.0.1 that tunnels with `CONNECT`, as squid or a
//! corporate proxy does for HTTPS: it reads the request line and headers,
//! answers `200 Connection established` and copies bytes both ways. It can
//! demand a login (`407` with `Proxy-Authenticate: Basic`), and it keeps
//! what it saw so a test can check what went through it, and what did not.

use base64::Engine;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct ConnectProxy {
    /// `http://127.0.0.1:port`, without a login.
    pub url: String,
    seen: Arc<Mutex<Seen>>,
    _server: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Seen {
    /// Each `CONNECT` target, `host:port`, in order, tunnelled or refused.
    connects: Vec<String>,
    /// Every byte clients sent, headers and tunnelled data alike.
    bytes: Vec<u8>,
}

impl ConnectProxy {
    /// A proxy anyone may use.
    pub async fn start() -> ConnectProxy {
        ConnectProxy::serve(None).await
    }

    /// A proxy that tunnels only for `username`:`password`.
    pub async fn start_with_login(username: &str, password: &str) -> ConnectProxy {
        let login =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        ConnectProxy::serve(Some(format!("Basic {login}"))).await
    }

    async fn serve(login: Option<String>) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = seen.clone();
        let server = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (seen, login) = (shared.clone(), login.clone());
                tokio::spawn(async move {
                    let _ = tunnel(client, seen, login.as_deref()).await;
                });
            }
        });
        ConnectProxy {
            url,
            seen,
            _server: server,
        }
    }

    /// The targets clients asked to be connected to, in order.
    pub fn connects(&self) -> Vec<String> {
        self.seen.lock().unwrap().connects.clone()
    }

    /// Whether `needle` passed through the proxy in the clear.
    pub fn saw(&self, needle: &str) -> bool {
        let seen = self.seen.lock().unwrap();
        seen.bytes
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    }
}

/// Serves one client connection: requests until a tunnel opens, then the tunnel.
async fn tunnel(
    mut client: TcpStream,
    seen: Arc<Mutex<Seen>>,
    login: Option<&str>,
) -> std::io::Result<()> {
    loop {
        let head = read_head(&mut client).await?;
        seen.lock()
            .unwrap()
            .bytes
            .extend_from_slice(head.as_bytes());
        let mut lines = head.lines();
        let request = lines.next().unwrap_or_default().to_string();
        let mut parts = request.split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if method != "CONNECT" {
            client
                .write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await?;
            return Ok(());
        }
        seen.lock().unwrap().connects.push(target.to_string());
        let authorized = login.is_none_or(|login| {
            lines.any(|line| {
                line.split_once(':').is_some_and(|(name, value)| {
                    name.eq_ignore_ascii_case("proxy-authorization") && value.trim() == login
                })
            })
        });
        if !authorized {
            client
                .write_all(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                      Proxy-Authenticate: Basic realm=\"proxy\"\r\nContent-Length: 0\r\n\r\n",
                )
                .await?;
            continue;
        }
        let mut server = TcpStream::connect(target).await?;
        client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
        let (mut from_client, mut to_client) = client.split();
        let (mut from_server, mut to_server) = server.split();
        let upstream = async {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = from_client.read(&mut buf).await?;
                if n == 0 {
                    return to_server.shutdown().await;
                }
                seen.lock().unwrap().bytes.extend_from_slice(&buf[..n]);
                to_server.write_all(&buf[..n]).await?;
            }
        };
        let downstream = tokio::io::copy(&mut from_server, &mut to_client);
        let _ = tokio::try_join!(upstream, downstream);
        return Ok(());
    }
}

/// The request line and headers, up to the blank line, read a byte at a
/// time so nothing of the tunnel after it is taken.
async fn read_head(client: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = client.read_u8().await?;
        head.push(byte);
        if head.len() > 64 * 1024 {
            return Err(std::io::Error::other("request head too long"));
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}
