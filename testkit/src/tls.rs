//! HTTPS for test servers: a certificate authority made for one test, and
//! an axum listener speaking TLS with a certificate it signed for 127.0.0.1.
//! A client trusts the server only if it is told to trust that authority.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;

/// Serves `app` over HTTPS on 127.0.0.1 until the returned task is dropped.
/// Returns the `https://` URL, the task and the authority's certificate (DER).
pub async fn serve_tls(app: axum::Router) -> (String, tokio::task::JoinHandle<()>, Vec<u8>) {
    let (listener, url, ca) = bind_tls().await;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, server, ca)
}

/// A listener on 127.0.0.1 that speaks HTTPS, its `https://` URL, and the
/// authority (DER) that signed its certificate.
pub async fn bind_tls() -> (TlsListener, String, Vec<u8>) {
    let (ca, config) = authority_and_server_config();
    let (tcp, url) = crate::bind().await;
    let listener = TlsListener {
        tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    };
    (listener, url.replacen("http://", "https://", 1), ca)
}

/// `der` as a PEM file's text, as `SSL_CERT_FILE` takes it.
pub fn pem(der: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// A certificate authority made for one test and a certificate it signed
/// for 127.0.0.1, for servers other than axum's (a mail server) to use.
pub struct Authority {
    /// The authority's certificate, DER.
    pub ca: Vec<u8>,
    /// The server's certificate and its PKCS#8 key, DER.
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    /// The same as PEM files' text.
    pub cert_pem: String,
    pub key_pem: String,
}

impl Authority {
    pub fn new() -> Authority {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Gantry test authority");
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let key = KeyPair::generate().expect("server key");
        let server = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("server params")
            .signed_by(&key, &ca, &ca_key)
            .expect("server certificate");
        Authority {
            ca: ca.der().to_vec(),
            cert: server.der().to_vec(),
            key: key.serialize_der(),
            cert_pem: server.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl Default for Authority {
    fn default() -> Self {
        Self::new()
    }
}

fn authority_and_server_config() -> (Vec<u8>, rustls::ServerConfig) {
    let authority = Authority::new();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![authority.cert.into()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(authority.key)),
        )
        .expect("server certificate and key");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (authority.ca, config)
}

pub struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            // A client that refuses the certificate ends its handshake;
            // the next one is served.
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
