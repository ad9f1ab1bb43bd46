//! TLS and mutual TLS settings both drivers share (feature `tls`).
//!
//! The shape follows tonic's `ClientTlsConfig` / `ServerTlsConfig`: a
//! server has a certificate chain and key and may require client
//! certificates signed by a CA of its choosing; a client trusts a set of
//! CA roots, may present a certificate of its own, and may override the
//! name it checks the server's certificate against. Only PEM or DER
//! certificates given explicitly are trusted (no system roots): weft's
//! peers are services of one deployment, under its own CA.
//!
//! The crypto provider is *ring*, chosen here rather than by whatever
//! process-wide default happens to be installed.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io;
use std::sync::Arc;

pub use rustls;

/// Why a TLS setting could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// A PEM input had no certificate, or one that does not parse.
    #[error("TLS: bad certificate PEM: {0}")]
    Certificate(String),
    /// The private key PEM had no key, or one that does not parse.
    #[error("TLS: bad private key PEM: {0}")]
    Key(String),
    /// rustls refused the combination (a key that does not match the
    /// certificate, an empty root set).
    #[error("TLS: {0}")]
    Config(String),
    /// The name to check the server's certificate against is not a DNS
    /// name or IP address.
    #[error("TLS: bad server name {0:?}")]
    ServerName(String),
}

/// Certificates to trust as roots (CAs), from PEM.
#[derive(Debug, Clone, Default)]
pub struct RootCerts(Vec<CertificateDer<'static>>);

impl RootCerts {
    /// Every certificate in `pem` (at least one).
    pub fn from_pem(pem: impl AsRef<[u8]>) -> Result<Self, TlsError> {
        Ok(RootCerts(certs_from_pem(pem.as_ref())?))
    }

    /// One DER certificate.
    pub fn from_der(der: impl Into<Vec<u8>>) -> Self {
        RootCerts(vec![CertificateDer::from(der.into())])
    }

    fn store(&self) -> Result<rustls::RootCertStore, TlsError> {
        // rustls takes an empty store, and every handshake then fails with
        // an unknown issuer: say so where the mistake is made.
        if self.0.is_empty() {
            return Err(TlsError::Config("no root certificates to trust".into()));
        }
        let mut store = rustls::RootCertStore::empty();
        for c in &self.0 {
            store
                .add(c.clone())
                .map_err(|e| TlsError::Certificate(e.to_string()))?;
        }
        Ok(store)
    }
}

/// A certificate chain and its private key: what a server (and, for
/// mutual TLS, a client) proves itself with.
#[derive(Debug)]
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Identity {
    /// A chain (leaf first) and a PKCS#8, PKCS#1 or SEC1 key, both PEM.
    pub fn from_pem(chain: impl AsRef<[u8]>, key: impl AsRef<[u8]>) -> Result<Self, TlsError> {
        let chain = certs_from_pem(chain.as_ref())?;
        let key = PrivateKeyDer::from_pem_slice(key.as_ref())
            .map_err(|e| TlsError::Key(e.to_string()))?;
        Ok(Identity { chain, key })
    }
}

fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Certificate("no CERTIFICATE block".into()));
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn config_err(e: rustls::Error) -> TlsError {
    TlsError::Config(e.to_string())
}

/// A client's TLS settings: the CA roots it trusts, optionally its own
/// certificate (mutual TLS) and the name the server's certificate must
/// carry. Cheap to clone.
///
/// ```no_run
/// use weft_driver::tls::{ClientTls, Identity, RootCerts};
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let roots = RootCerts::from_pem(std::fs::read("ca.pem")?)?;
/// // Mutual TLS: present a certificate when the server asks for one.
/// let me = Identity::from_pem(std::fs::read("client.pem")?, std::fs::read("client.key")?)?;
/// let tls = ClientTls::new(&roots, Some(&me))?
///     // The name the server's certificate must carry, when it is not
///     // the host dialled (for example an IP address).
///     .with_domain_name("cart.internal");
/// # let _ = tls; Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
    domain: Option<String>,
}

impl ClientTls {
    /// Trusts `roots`; presents `identity` when the server asks for a
    /// client certificate.
    pub fn new(roots: &RootCerts, identity: Option<&Identity>) -> Result<Self, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(config_err)?
            .with_root_certificates(roots.store()?);
        let config = match identity {
            Some(id) => builder
                .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
                .map_err(config_err)?,
            None => builder.with_no_client_auth(),
        };
        Ok(Self::from_rustls(Arc::new(config)))
    }

    /// Settings made directly with rustls.
    pub fn from_rustls(config: Arc<rustls::ClientConfig>) -> Self {
        ClientTls {
            config,
            domain: None,
        }
    }

    /// Checks the server's certificate against `name` rather than the host
    /// of the address dialed (tonic's `domain_name`): for addresses that
    /// are IPs, or a certificate issued to a service name.
    pub fn with_domain_name(mut self, name: impl Into<String>) -> Self {
        self.domain = Some(name.into());
        self
    }

    /// The rustls configuration.
    pub fn config(&self) -> &Arc<rustls::ClientConfig> {
        &self.config
    }

    /// The name to check for a server dialed at `host` (the override if
    /// one was set).
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>, TlsError> {
        let name = self.domain.as_deref().unwrap_or(host);
        // An IPv6 literal arrives bracketed from a `host:port` address.
        let name = name.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(name.to_owned()).map_err(|_| TlsError::ServerName(name.to_owned()))
    }

    /// A client connection for a server at `host`, for a driver that runs
    /// rustls itself.
    pub fn connect(&self, host: &str) -> io::Result<rustls::ClientConnection> {
        let name = self.server_name(host).map_err(io::Error::other)?;
        rustls::ClientConnection::new(self.config.clone(), name)
            .map_err(|e| io::Error::other(describe(&e)))
    }
}

/// A server's TLS settings: its certificate and key, and optionally the
/// CA its clients' certificates must be signed by (mutual TLS: a client
/// without such a certificate is refused). Cheap to clone.
///
/// ```no_run
/// use weft_driver::tls::{Identity, RootCerts, ServerTls};
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let me = Identity::from_pem(std::fs::read("server.pem")?, std::fs::read("server.key")?)?;
/// // Only clients with a certificate signed by this CA get in.
/// let clients = RootCerts::from_pem(std::fs::read("clients-ca.pem")?)?;
/// let tls = ServerTls::new(&me, Some(&clients))?;
/// # let _ = tls; Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
}

impl ServerTls {
    /// Serves with `identity`; with `client_ca`, requires every client to
    /// present a certificate signed by it.
    pub fn new(identity: &Identity, client_ca: Option<&RootCerts>) -> Result<Self, TlsError> {
        let provider = provider();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(config_err)?;
        let builder = match client_ca {
            Some(ca) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(ca.store()?),
                    provider,
                )
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(identity.chain.clone(), identity.key.clone_key())
            .map_err(config_err)?;
        Ok(Self::from_rustls(Arc::new(config)))
    }

    /// Settings made directly with rustls.
    pub fn from_rustls(config: Arc<rustls::ServerConfig>) -> Self {
        ServerTls { config }
    }

    /// The rustls configuration.
    pub fn config(&self) -> &Arc<rustls::ServerConfig> {
        &self.config
    }

    /// A server connection, for a driver that runs rustls itself.
    pub fn accept(&self) -> io::Result<rustls::ServerConnection> {
        rustls::ServerConnection::new(self.config.clone())
            .map_err(|e| io::Error::other(describe(&e)))
    }
}

/// A TLS failure as a user should read it: what went wrong, and the usual
/// cause. Every message starts with `TLS`.
pub fn describe(e: &rustls::Error) -> String {
    use rustls::{AlertDescription as A, Error as E};
    let hint = match e {
        E::InvalidMessage(_) => " (is the peer speaking TLS? a plaintext server or client?)",
        E::AlertReceived(A::UnknownCA | A::BadCertificate | A::CertificateRequired) => {
            " (the peer refused our certificate: missing, or not signed by a CA it trusts)"
        }
        E::InvalidCertificate(_) => {
            " (the peer's certificate is not signed by a trusted CA, or not for this name)"
        }
        E::NoCertificatesPresented => " (the server requires a client certificate)",
        _ => "",
    };
    format!("TLS: {e}{hint}")
}

/// `e` with a TLS failure inside described by [`describe`]; other errors
/// unchanged. For streams (tokio-rustls) that report rustls errors as
/// `io::Error`s.
pub fn describe_io(e: io::Error) -> io::Error {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(tls) => io::Error::new(e.kind(), describe(tls)),
        None => e,
    }
}

/// [`describe_io`] for an error writing to a TLS stream: a peer that hung
/// up is described as such, since under TLS 1.3 a server that refuses the
/// client's certificate does so only after the client's handshake is done,
/// so the client learns it from a failed write as often as from the alert.
pub fn describe_write_io(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => io::Error::new(
            e.kind(),
            format!(
                "TLS: the peer closed the connection while we wrote to it ({e}); \
                 a server that refuses the client certificate does that"
            ),
        ),
        _ => describe_io(e),
    }
}

/// The error for a peer that hung up during the TLS handshake: typically
/// a plaintext server that could not make sense of our hello.
pub fn closed_in_handshake() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "TLS: the peer closed the connection during the handshake (is it speaking TLS?)",
    )
}

/// A replica behind TLS: an endpoint and the client settings to dial it
/// with. Its address is `tls://host:port` or `tls+unix://path`; the
/// server's certificate is checked against the host (or the settings'
/// domain name).
#[derive(Debug, Clone)]
pub struct TlsEndpoint {
    endpoint: weft_proto::NetEndpoint,
    tls: ClientTls,
}

impl TlsEndpoint {
    /// `endpoint`, dialed with `tls`.
    pub fn new(endpoint: weft_proto::NetEndpoint, tls: ClientTls) -> Self {
        TlsEndpoint { endpoint, tls }
    }

    /// Parses `tls://host:port` or `tls+unix://path`.
    pub fn parse(addr: &str, tls: ClientTls) -> Result<Self, weft_proto::ParseNetEndpoint> {
        Ok(Self::new(weft_proto::NetEndpoint::parse_tls(addr)?, tls))
    }

    /// The endpoint underneath.
    pub fn endpoint(&self) -> &weft_proto::NetEndpoint {
        &self.endpoint
    }

    /// The client settings.
    pub fn tls(&self) -> &ClientTls {
        &self.tls
    }

    /// The address, TLS named in its scheme.
    pub fn address(&self) -> String {
        self.endpoint.tls_address()
    }

    /// A fresh rustls client connection for this replica.
    pub fn connection(&self) -> io::Result<rustls::ClientConnection> {
        self.tls.connect(self.endpoint.host())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_root_set_is_refused_where_it_is_made() {
        let err = ClientTls::new(&RootCerts::default(), None).unwrap_err();
        assert!(
            matches!(&err, TlsError::Config(m) if m.contains("no root certificates")),
            "{err}"
        );
    }
}
