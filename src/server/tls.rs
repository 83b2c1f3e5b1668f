//! TLS (feature `tls`): a server configuration from PEM files, and the ALPN
//! protocols a [`Server`](super::Server) offers.
//!
//! The handshake itself is part of serving a connection (`conn.rs`): it is
//! bounded by the header read timeout, and the protocol it negotiates by
//! ALPN picks HTTP/2 or HTTP/1.1.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, InconsistentKeys, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// The ALPN id of HTTP/2.
const H2: &[u8] = b"h2";
/// The ALPN id of HTTP/1.1.
const HTTP_1_1: &[u8] = b"http/1.1";

/// Loads a certificate chain and its private key from PEM files into a
/// server configuration that offers HTTP/2 and HTTP/1.1 by ALPN (a
/// [`Server`](super::Server) with [`http1_only`](super::Server::http1_only)
/// takes HTTP/2 out again).
///
/// `cert` holds the server's certificate first, then the intermediate
/// certificates, if any (`-----BEGIN CERTIFICATE-----` sections; a Let's
/// Encrypt `fullchain.pem` is one). `key` holds its private key: PKCS#8
/// (`BEGIN PRIVATE KEY`), PKCS#1 (`BEGIN RSA PRIVATE KEY`) or SEC1
/// (`BEGIN EC PRIVATE KEY`); the first key in the file is used.
///
/// The configuration uses the process-wide default [`CryptoProvider`] if
/// one is installed, else *ring*'s, with rustls's safe defaults (TLS 1.3
/// and 1.2), and no client certificates. Change it at will before handing
/// it to [`Server::tls`](super::Server::tls).
///
/// # Errors
///
/// An [`io::Error`] whose message names the file and the problem: a file
/// that cannot be read (its kind, such as
/// [`NotFound`](io::ErrorKind::NotFound), is kept), no certificate or no
/// private key in it, PEM that does not parse, or a key that does not
/// belong to the certificate (all [`InvalidData`](io::ErrorKind::InvalidData)
/// or [`InvalidInput`](io::ErrorKind::InvalidInput)).
///
/// # Examples
///
/// ```no_run
/// use std::sync::Arc;
/// use delayed_response::server::{self, Server};
///
/// # fn run() -> std::io::Result<()> {
/// let config = server::load_tls_config("cert.pem", "key.pem")?;
/// let server = Server::new().tls(Arc::new(config));
/// # Ok(()) }
/// ```
pub fn load_tls_config(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> io::Result<ServerConfig> {
    let (cert, key) = (cert.as_ref(), key.as_ref());
    let certs = load_certs(cert)?;
    let private_key = load_key(key)?;
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid_input(format!("TLS configuration: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, private_key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => {
                invalid_input(format!(
                    "{}: the private key does not belong to the certificate in {}",
                    key.display(),
                    cert.display()
                ))
            }
            e => invalid_input(format!(
                "{}, {}: unusable certificate or key: {e}",
                cert.display(),
                key.display()
            )),
        })?;
    config.alpn_protocols = vec![H2.to_vec(), HTTP_1_1.to_vec()];
    Ok(config)
}

fn load_certs(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let pem = read(path, "certificate")?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(path, e))?;
    if certs.is_empty() {
        let hint = if PrivateKeyDer::from_pem_slice(&pem).is_ok() {
            " (it holds a private key: are the certificate and key files swapped?)"
        } else {
            ""
        };
        return Err(invalid_data(format!(
            "{}: no certificate (a PEM `BEGIN CERTIFICATE` section){hint}",
            path.display()
        )));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> io::Result<PrivateKeyDer<'static>> {
    let pem = read(path, "private key")?;
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => {
            let hint = match CertificateDer::pem_slice_iter(&pem).next() {
                Some(Ok(_)) => {
                    " (it holds a certificate: are the certificate and key files swapped?)"
                }
                _ => "",
            };
            Err(invalid_data(format!(
                "{}: no private key (a PEM `BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY` \
                 or `BEGIN EC PRIVATE KEY` section){hint}",
                path.display()
            )))
        }
        Err(e) => Err(bad_pem(path, e)),
    }
}

/// Reads a whole PEM file, naming it in the error.
fn read(path: &Path, what: &str) -> io::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot read the {what} file {}: {e}", path.display()),
        )
    })
}

fn bad_pem(path: &Path, e: pem::Error) -> io::Error {
    invalid_data(format!("{}: not valid PEM: {e}", path.display()))
}

fn invalid_data(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn invalid_input(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// The TLS acceptor of a [`Server`](super::Server) (a newtype for `Debug`).
#[derive(Clone)]
pub(super) struct Tls(pub(super) TlsAcceptor);

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let alpn: Vec<_> = self
            .0
            .config()
            .alpn_protocols
            .iter()
            .map(|p| String::from_utf8_lossy(p))
            .collect();
        f.debug_struct("Tls").field("alpn", &alpn).finish()
    }
}

impl Tls {
    /// The acceptor to serve with: its ALPN protocols are those the server
    /// speaks. A configuration that offers none gets `h2` (unless
    /// `http1_only`) and `http/1.1`; `http1_only` takes `h2` out of one that
    /// offers it. Either way the configuration is copied, never changed
    /// under its other users.
    pub(super) fn acceptor(&self, http1_only: bool) -> TlsAcceptor {
        let config = self.0.config();
        let offered = &config.alpn_protocols;
        let alpn = if offered.is_empty() {
            let mut alpn = vec![HTTP_1_1.to_vec()];
            if !http1_only {
                alpn.insert(0, H2.to_vec());
            }
            alpn
        } else if http1_only && offered.iter().any(|p| p == H2) {
            offered.iter().filter(|p| *p != H2).cloned().collect()
        } else {
            return self.0.clone();
        };
        let mut config = ServerConfig::clone(config);
        config.alpn_protocols = alpn;
        TlsAcceptor::from(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(alpn: &[&[u8]]) -> Tls {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(rustls::server::ResolvesServerCertUsingSni::new()));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Tls(TlsAcceptor::from(Arc::new(config)))
    }

    fn alpn(acceptor: &TlsAcceptor) -> Vec<&[u8]> {
        acceptor
            .config()
            .alpn_protocols
            .iter()
            .map(Vec::as_slice)
            .collect()
    }

    #[test]
    fn a_config_without_alpn_offers_what_the_server_speaks() {
        let none = tls(&[]);
        assert_eq!(alpn(&none.acceptor(false)), [H2, HTTP_1_1]);
        assert_eq!(alpn(&none.acceptor(true)), [HTTP_1_1]);
    }

    #[test]
    fn http1_only_takes_h2_out_of_the_offered_protocols() {
        let both = tls(&[H2, HTTP_1_1]);
        assert_eq!(alpn(&both.acceptor(true)), [HTTP_1_1]);
        assert_eq!(alpn(&both.acceptor(false)), [H2, HTTP_1_1]);
        // The caller's configuration is left as it was.
        assert_eq!(alpn(&both.0), [H2, HTTP_1_1]);
    }
}
