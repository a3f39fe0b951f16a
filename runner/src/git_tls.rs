//! TLS for libgit2's HTTPS clones, over the rustls the rest of Gantry
//! already uses. libgit2 is built without a TLS library of its own (it
//! would link the system OpenSSL into both binaries: 1.5 MiB resident in
//! every idle server and runner, bench metric 6) and, as its API allows,
//! gets this stream for every `https://` connection instead. libgit2 still
//! speaks HTTP, asks for credentials and follows redirects; only the bytes
//! on the wire go through here.
//!
//! Certificates are checked against the system's trusted roots
//! (`/etc/ssl/certs`, or the bundle `SSL_CERT_FILE` names, as with
//! OpenSSL). An invalid certificate fails the clone, with the reason.
//!
//! Behind an HTTP proxy (`https_proxy`, git's `http.proxy`), libgit2 opens
//! the proxy's connection and its `CONNECT` tunnel itself, and hands the
//! tunnel here to run TLS over (`wrap`): the proxy sees only ciphertext.

use libc::{c_char, c_int, c_uint, c_void, size_t, ssize_t};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::ffi::{CStr, CString};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::Duration;

/// Makes libgit2 use this module for HTTPS; call before any clone (each
/// call after the first does nothing).
pub fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        libgit2_sys::init();
        let mut registration = Registration {
            version: STREAM_VERSION,
            init: Some(tls_init),
            wrap: Some(tls_wrap),
        };
        // SAFETY: libgit2 is initialised; it copies the registration.
        let failed = unsafe { git_stream_register(STREAM_TLS, &mut registration) } != 0;
        if failed {
            tracing::error!("libgit2 refused the TLS stream; HTTPS clones will fail");
        }
    });
}

// ------------------------------------------------- libgit2's stream ABI
// `git2/sys/stream.h` of libgit2 1.9 (libgit2-sys 0.18), which libgit2-sys
// does not bind.

const STREAM_VERSION: c_int = 1;
const STREAM_TLS: c_int = 2;
/// `encrypted : 1` is the lowest bit of the bitfield word.
const ENCRYPTED: c_uint = 1;

#[repr(C)]
struct GitStream {
    version: c_int,
    /// `encrypted : 1, proxy_support : 1`.
    flags: c_uint,
    /// Milliseconds for each read and write; 0 blocks.
    timeout: c_int,
    /// Milliseconds to connect; 0 takes the system's.
    connect_timeout: c_int,
    connect: Option<unsafe extern "C" fn(*mut GitStream) -> c_int>,
    certificate:
        Option<unsafe extern "C" fn(*mut *mut libgit2_sys::git_cert, *mut GitStream) -> c_int>,
    set_proxy: Option<unsafe extern "C" fn(*mut GitStream, *const c_void) -> c_int>,
    read: Option<unsafe extern "C" fn(*mut GitStream, *mut c_void, size_t) -> ssize_t>,
    write: Option<unsafe extern "C" fn(*mut GitStream, *const c_char, size_t, c_int) -> ssize_t>,
    close: Option<unsafe extern "C" fn(*mut GitStream) -> c_int>,
    free: Option<unsafe extern "C" fn(*mut GitStream)>,
}

#[repr(C)]
struct Registration {
    version: c_int,
    init: Option<unsafe extern "C" fn(*mut *mut GitStream, *const c_char, *const c_char) -> c_int>,
    /// TLS over an HTTP proxy's `CONNECT` tunnel.
    wrap: Option<unsafe extern "C" fn(*mut *mut GitStream, *mut GitStream, *const c_char) -> c_int>,
}

extern "C" {
    fn git_stream_register(kind: c_int, registration: *mut Registration) -> c_int;
}

/// One HTTPS connection; `parent` first, so libgit2's pointer is ours.
#[repr(C)]
struct Tls {
    parent: GitStream,
    host: String,
    /// None over a proxy's tunnel.
    port: Option<String>,
    /// The proxy's tunnel to run over, until [`Tls::open`] takes it.
    tunnel: Option<Tunnel>,
    conn: Option<StreamOwned<ClientConnection, Wire>>,
    /// The server's certificate, for libgit2's certificate callback.
    cert: Option<(libgit2_sys::git_cert_x509, Vec<u8>)>,
}

/// Why a connection failed; libgit2 treats a bad certificate apart.
enum Failure {
    Certificate(String),
    Other(String),
}

impl Tls {
    /// Where this stream goes, for messages.
    fn address(&self) -> String {
        match &self.port {
            Some(port) => format!("{}:{port}", self.host),
            None => format!("{} (through the proxy)", self.host),
        }
    }

    fn open(&mut self) -> Result<(), Failure> {
        let mut wire = match self.tunnel.take() {
            Some(tunnel) => Wire::Tunnel(tunnel),
            None => Wire::Tcp(self.connect_tcp()?),
        };
        let other = |what: &str, e: &dyn std::fmt::Display| {
            Failure::Other(format!("{what} {}: {e}", self.address()))
        };
        let name =
            ServerName::try_from(self.host.clone()).map_err(|e| other("not a server name:", &e))?;
        let mut conn = ClientConnection::new(client_config().map_err(Failure::Other)?, name)
            .map_err(|e| other("cannot start TLS with", &e))?;
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut wire) {
                return Err(match rustls_error(&e) {
                    Some(rustls::Error::InvalidCertificate(why)) => Failure::Certificate(format!(
                        "the certificate of {} is not trusted: {why:?}",
                        self.host
                    )),
                    _ => other("TLS handshake failed with", &e),
                });
            }
        }
        if let Some(der) = conn.peer_certificates().and_then(|c| c.first()) {
            let data = der.to_vec();
            let x509 = libgit2_sys::git_cert_x509 {
                parent: libgit2_sys::git_cert {
                    cert_type: libgit2_sys::GIT_CERT_X509,
                },
                data: std::ptr::null_mut(),
                len: data.len(),
            };
            self.cert = Some((x509, data));
        }
        self.conn = Some(StreamOwned::new(conn, wire));
        Ok(())
    }

    /// A TCP connection of this stream's own, to the first address that answers.
    fn connect_tcp(&self) -> Result<TcpStream, Failure> {
        let other = |what: &str, e: &dyn std::fmt::Display| {
            Failure::Other(format!("{what} {}: {e}", self.address()))
        };
        let port = self.port.as_deref().unwrap_or_default();
        let port: u16 = port
            .parse()
            .map_err(|_| Failure::Other(format!("`{port}` is not a port")))?;
        let addresses = (self.host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| other("cannot resolve", &e))?;
        let connect_timeout = millis(self.parent.connect_timeout);
        let mut last = None;
        let mut tcp = None;
        for address in addresses {
            let attempt = match connect_timeout {
                Some(t) => TcpStream::connect_timeout(&address, t),
                None => TcpStream::connect(address),
            };
            match attempt {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let tcp = match (tcp, last) {
            (Some(tcp), _) => tcp,
            (None, Some(e)) => return Err(other("cannot connect to", &e)),
            (None, None) => return Err(other("no address for", &"none found")),
        };
        let timeout = millis(self.parent.timeout);
        let _ = tcp.set_read_timeout(timeout);
        let _ = tcp.set_write_timeout(timeout);
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let conn = self.conn.as_mut().ok_or_else(not_open)?;
        match conn.read(buf) {
            // A server that closes without TLS's goodbye: HTTP's own
            // framing (length, chunks) tells libgit2 whether it got it all.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            other => other,
        }
    }

    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let conn = self.conn.as_mut().ok_or_else(not_open)?;
        let n = conn.write(data)?;
        conn.flush()?;
        Ok(n)
    }

    fn close(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            // A tunnel is left alone: libgit2 closes it, and when a
            // connection fails it may already have freed it.
            if matches!(conn.sock, Wire::Tcp(_)) {
                conn.conn.send_close_notify();
                let _ = conn.flush();
                if let Wire::Tcp(tcp) = &conn.sock {
                    let _ = tcp.shutdown(Shutdown::Both);
                }
            }
        }
    }
}

/// What TLS runs over.
enum Wire {
    Tcp(TcpStream),
    Tunnel(Tunnel),
}

/// A proxy's `CONNECT` tunnel: libgit2's stream to the proxy, which it
/// opened, owns and frees, and keeps open while this stream is in use.
struct Tunnel(*mut GitStream);

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Wire::Tcp(tcp) => tcp.read(buf),
            Wire::Tunnel(Tunnel(stream)) => {
                // SAFETY: libgit2's live stream (see `Tunnel`), and a buffer of `len` bytes.
                let n = unsafe {
                    let read = (**stream).read.ok_or_else(|| proxy_failed("read from"))?;
                    read(*stream, buf.as_mut_ptr().cast(), buf.len())
                };
                usize::try_from(n).map_err(|_| proxy_failed("read from"))
            }
        }
    }
}

impl Write for Wire {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Wire::Tcp(tcp) => tcp.write(data),
            Wire::Tunnel(Tunnel(stream)) => {
                // SAFETY: as in `read`, with `len` bytes to send.
                let n = unsafe {
                    let write = (**stream).write.ok_or_else(|| proxy_failed("write to"))?;
                    write(*stream, data.as_ptr().cast(), data.len(), 0)
                };
                usize::try_from(n).map_err(|_| proxy_failed("write to"))
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Wire::Tcp(tcp) => tcp.flush(),
            Wire::Tunnel(_) => Ok(()),
        }
    }
}

/// Why libgit2's stream to the proxy failed, as it told.
fn proxy_failed(doing: &str) -> io::Error {
    // SAFETY: libgit2's last error of this thread, copied before any other call.
    let why = unsafe {
        let e = libgit2_sys::git_error_last();
        if e.is_null() || (*e).message.is_null() {
            "the connection failed".to_string()
        } else {
            CStr::from_ptr((*e).message).to_string_lossy().into_owned()
        }
    };
    io::Error::other(format!("cannot {doing} the proxy: {why}"))
}

fn not_open() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the TLS stream is not open")
}

fn millis(ms: c_int) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms as u64))
}

fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

// ------------------------------------------------------------ trust

/// The system's roots, read once; why there are none, if there are none.
fn system_roots() -> &'static Result<RootCertStore, String> {
    static ROOTS: OnceLock<Result<RootCertStore, String>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            return Err(format!(
                "no trusted root certificates for HTTPS clones ({}); install the \
                 ca-certificates package or point SSL_CERT_FILE at a bundle",
                found
                    .errors
                    .first()
                    .map_or("none in the system store".to_string(), |e| e.to_string())
            ));
        }
        Ok(roots)
    })
}

/// Roots trusted on top of the system's (a test's own certificate authority).
static ALSO_TRUSTED: Mutex<Vec<CertificateDer<'static>>> = Mutex::new(Vec::new());

/// Trusts `ca` (DER) for HTTPS clones in this process, beside the system's roots.
#[cfg(test)]
pub(crate) fn also_trust(ca: Vec<u8>) {
    ALSO_TRUSTED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(CertificateDer::from(ca));
}

/// Built per connection (a few microseconds), so a root trusted later counts.
pub(crate) fn client_config() -> Result<Arc<ClientConfig>, String> {
    let mut roots = system_roots()
        .clone()
        .unwrap_or_else(|_| RootCertStore::empty());
    let also = ALSO_TRUSTED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    roots.add_parsable_certificates(also);
    if roots.is_empty() {
        if let Err(why) = system_roots() {
            return Err(why.clone());
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // libgit2 speaks HTTP/1.1.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

// ------------------------------------------------------- the callbacks

/// Sets libgit2's error message for the failing call.
fn set_error(message: &str) {
    let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
    // SAFETY: a valid C string; libgit2 copies it.
    unsafe { libgit2_sys::git_error_set_str(libgit2_sys::GIT_ERROR_SSL as c_int, text.as_ptr()) };
}

/// Runs a callback body; a panic must not cross into C.
fn guarded<T>(failed: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| {
        set_error("the TLS stream failed (a bug in Gantry)");
        failed
    })
}

/// # Safety
/// `stream` is a pointer [`tls_init`] made and libgit2 has not freed.
unsafe fn this<'a>(stream: *mut GitStream) -> &'a mut Tls {
    &mut *(stream as *mut Tls)
}

unsafe extern "C" fn tls_init(
    out: *mut *mut GitStream,
    host: *const c_char,
    port: *const c_char,
) -> c_int {
    guarded(-1, || {
        if out.is_null() || host.is_null() || port.is_null() {
            return -1;
        }
        let port = CStr::from_ptr(port).to_string_lossy().into_owned();
        *out = new_stream(host, Some(port), None);
        0
    })
}

/// TLS to `host` over `tunnel`, a proxy's `CONNECT` that libgit2 opened.
unsafe extern "C" fn tls_wrap(
    out: *mut *mut GitStream,
    tunnel: *mut GitStream,
    host: *const c_char,
) -> c_int {
    guarded(-1, || {
        if out.is_null() || tunnel.is_null() || host.is_null() {
            return -1;
        }
        *out = new_stream(host, None, Some(Tunnel(tunnel)));
        0
    })
}

/// # Safety
/// `host` is a C string.
unsafe fn new_stream(
    host: *const c_char,
    port: Option<String>,
    tunnel: Option<Tunnel>,
) -> *mut GitStream {
    let tls = Box::new(Tls {
        parent: GitStream {
            version: STREAM_VERSION,
            flags: ENCRYPTED,
            timeout: 0,
            connect_timeout: 0,
            connect: Some(tls_connect),
            certificate: Some(tls_certificate),
            set_proxy: None,
            read: Some(tls_read),
            write: Some(tls_write),
            close: Some(tls_close),
            free: Some(tls_free),
        },
        host: CStr::from_ptr(host).to_string_lossy().into_owned(),
        port,
        tunnel,
        conn: None,
        cert: None,
    });
    Box::into_raw(tls) as *mut GitStream
}

unsafe extern "C" fn tls_connect(stream: *mut GitStream) -> c_int {
    guarded(-1, || match this(stream).open() {
        Ok(()) => 0,
        Err(Failure::Certificate(why)) => {
            set_error(&why);
            libgit2_sys::GIT_ECERTIFICATE as c_int
        }
        Err(Failure::Other(why)) => {
            set_error(&why);
            -1
        }
    })
}

unsafe extern "C" fn tls_certificate(
    out: *mut *mut libgit2_sys::git_cert,
    stream: *mut GitStream,
) -> c_int {
    guarded(-1, || {
        let tls = this(stream);
        match tls.cert.as_mut() {
            Some((x509, data)) => {
                x509.data = data.as_mut_ptr() as *mut c_void;
                *out = x509 as *mut libgit2_sys::git_cert_x509 as *mut libgit2_sys::git_cert;
                0
            }
            None => {
                set_error("the server sent no certificate");
                -1
            }
        }
    })
}

/// A read's or write's byte count for libgit2, or -1 with the reason set.
fn transferred(result: io::Result<usize>, doing: &str) -> ssize_t {
    result.map_or_else(
        |e| {
            set_error(&format!("{doing} the server failed: {e}"));
            -1
        },
        |n| n as ssize_t,
    )
}

unsafe extern "C" fn tls_read(stream: *mut GitStream, buf: *mut c_void, len: size_t) -> ssize_t {
    guarded(-1, || {
        let buf = std::slice::from_raw_parts_mut(buf as *mut u8, len);
        transferred(this(stream).read(buf), "reading from")
    })
}

unsafe extern "C" fn tls_write(
    stream: *mut GitStream,
    data: *const c_char,
    len: size_t,
    _flags: c_int,
) -> ssize_t {
    guarded(-1, || {
        let data = std::slice::from_raw_parts(data as *const u8, len);
        transferred(this(stream).write(data), "writing to")
    })
}

unsafe extern "C" fn tls_close(stream: *mut GitStream) -> c_int {
    guarded(-1, || {
        this(stream).close();
        0
    })
}

unsafe extern "C" fn tls_free(stream: *mut GitStream) {
    guarded((), || drop(Box::from_raw(stream as *mut Tls)))
}
