//! TLS test helpers (feature `tls`): a self-signed certificate (rcgen) and
//! its PEM files, a tokio-rustls client that trusts it, and a hyper client
//! speaking what ALPN negotiated.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use delayed_response::server::rustls::pki_types::{CertificateDer, ServerName};
use delayed_response::server::rustls::{self, ClientConfig, RootCertStore};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::within;

pub const H2: &[u8] = b"h2";
pub const HTTP_1_1: &[u8] = b"http/1.1";

/// A self-signed certificate for `localhost` and 127.0.0.1, and its key.
pub struct Pki {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert: CertificateDer<'static>,
}

pub fn self_signed() -> Pki {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    Pki {
        cert_pem: certified.cert.pem(),
        key_pem: certified.signing_key.serialize_pem(),
        cert: certified.cert.der().clone(),
    }
}

/// A fresh directory of this test binary's own under cargo's temporary
/// directory for tests.
pub fn temp_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "tls-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `cert.pem` and `key.pem` with these contents into a fresh
/// directory.
pub fn pem_files(cert: &str, key: &str) -> (PathBuf, PathBuf) {
    let dir = temp_dir();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    (cert_path, key_path)
}

/// protocols.
pub fn connector(pki: &Pki, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(pki.cert.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

/// Connects to `addr` and completes the handshake for `localhost`.
pub async fn connect(addr: SocketAddr, connector: &TlsConnector) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    within("the TLS handshake", connector.connect(name, tcp))
        .await
        .unwrap()
}

pub fn alpn(tls: &TlsStream<TcpStream>) -> Option<Vec<u8>> {
    tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
}

/// A hyper client on one connection, HTTP/1.1 or HTTP/2 as negotiated.
pub enum Client<B> {
    H1(hyper::client::conn::http1::SendRequest<B>),
    H2(hyper::client::conn::http2::SendRequest<B>),
}

impl<B> Client<B>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<delayed_response::BoxError>,
{
    /// Speaks what the handshake negotiated (HTTP/1.1 without ALPN).
    pub async fn over(tls: TlsStream<TcpStream>) -> Self {
        let h2 = alpn(&tls).as_deref() == Some(H2);
        let io = TokioIo::new(tls);
        if h2 {
            let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
            tokio::spawn(conn);
            Client::H2(send)
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            Client::H1(send)
        }
    }

    pub async fn send(&mut self, req: Request<B>) -> Response<Incoming> {
        let res = match self {
            Client::H1(send) => send.send_request(req).await,
            Client::H2(send) => send.send_request(req).await,
        };
        res.unwrap()
    }
}

/// A request for `https://localhost/{path}` (with a Host header, which
/// HTTP/1.1 needs).
pub fn request<B>(path: &str, body: B) -> Request<B> {
    Request::get(format!("https://localhost{path}"))
        .header(http::header::HOST, "localhost")
        .body(body)
        .unwrap()
}

/// The next data frame of `body` (`None` at its end).
pub async fn next_data(body: &mut Incoming) -> Option<Bytes> {
    loop {
        let frame = within("a body frame", body.frame()).await?.unwrap();
        if let Ok(data) = frame.into_data() {
            return Some(data);
        }
    }
}
