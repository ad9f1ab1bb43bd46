//! Where a client finds its servers (`--addr`) and the TLS flags that
//! `serve`, `call` and `bench` share.

use crate::Failed;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use weft_mio::tls as mtls;
use weft_proto::{CallError, NetEndpoint};

/// `--addr` of a client.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// `tcp://host:port` or `unix:///path`: one server.
    Net(NetEndpoint),
    /// `tls://host:port` or `tls+unix:///path`: one server behind TLS.
    Tls(NetEndpoint),
    /// `unixdir:///dir`: every Unix socket in a directory, followed.
    UnixDir(PathBuf),
    /// `dns://name:port` or `dns+srv://_svc._tcp.name`: replicas from DNS,
    /// followed.
    Dns(String),
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(dir) = s.strip_prefix("unixdir://") {
            if dir.is_empty() {
                return Err(format!("{s:?}: want unixdir:///path/to/dir"));
            }
            return Ok(Target::UnixDir(dir.into()));
        }
        if s.starts_with("dns://") || s.starts_with("dns+srv://") {
            weft_mio::dns::DnsTarget::parse(s).map_err(|e| e.0)?;
            return Ok(Target::Dns(s.into()));
        }
        if s.starts_with("tls://") || s.starts_with("tls+unix://") {
            return NetEndpoint::parse_tls(s)
                .map(Target::Tls)
                .map_err(|e| e.to_string());
        }
        s.parse::<NetEndpoint>().map(Target::Net).map_err(|e| {
            format!("{e} (or tls://, tls+unix://, unixdir:///dir, dns://name:port, dns+srv://name)")
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Net(e) => write!(f, "{e}"),
            Target::Tls(e) => f.write_str(&e.tls_address()),
            Target::UnixDir(d) => write!(f, "unixdir://{}", d.display()),
            Target::Dns(s) => f.write_str(s),
        }
    }
}

impl Target {
    /// The transport, for reports.
    pub fn transport(&self) -> &'static str {
        match self {
            Target::Net(NetEndpoint::Tcp(_)) | Target::Dns(_) => "tcp",
            Target::Net(NetEndpoint::Unix(_)) | Target::UnixDir(_) => "unix",
            Target::Tls(NetEndpoint::Tcp(_)) => "tls",
            Target::Tls(NetEndpoint::Unix(_)) => "tls+unix",
        }
    }
}

/// TLS settings from the command line.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// This side's certificate chain (PEM): a server's, or a client's for
    /// mutual TLS.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A client's trusted CA certificates (PEM), for a tls:// address.
    #[arg(long, value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,
    /// A server's CA for client certificates (PEM): clients without one
    /// signed by it are refused (mutual TLS).
    #[arg(long, value_name = "PEM")]
    pub tls_client_ca: Option<PathBuf>,
    /// The name the server's certificate must carry, when it is not the
    /// host in the address (for example an IP address).
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
}

fn read(flag: &str, path: &PathBuf) -> Result<Vec<u8>, Failed> {
    std::fs::read(path).map_err(|e| Failed(format!("--{flag} {}: {e}", path.display())))
}

impl TlsArgs {
    fn identity(&self) -> Result<Option<mtls::Identity>, Failed> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => {
                mtls::Identity::from_pem(read("tls-cert", c)?, read("tls-key", k)?)
                    .map(Some)
                    .map_err(|e| Failed(format!("--tls-cert/--tls-key: {e}")))
            }
            _ => Ok(None),
        }
    }

    /// The server's settings, if it serves TLS.
    pub fn server(&self) -> Result<Option<mtls::ServerTls>, Failed> {
        let Some(identity) = self.identity()? else {
            if self.tls_client_ca.is_some() {
                return Err(Failed(
                    "--tls-client-ca needs --tls-cert and --tls-key".into(),
                ));
            }
            return Ok(None);
        };
        let client_ca = match &self.tls_client_ca {
            Some(p) => Some(
                mtls::RootCerts::from_pem(read("tls-client-ca", p)?)
                    .map_err(|e| Failed(format!("--tls-client-ca: {e}")))?,
            ),
            None => None,
        };
        mtls::ServerTls::new(&identity, client_ca.as_ref())
            .map(Some)
            .map_err(|e| Failed(format!("TLS: {e}")))
    }

    /// The client's settings for `target`: required for a TLS address,
    /// refused for a plaintext one (a flag that would be ignored is a
    /// mistake); for a followed set (unixdir, dns), `--tls-ca` dials every
    /// replica with TLS.
    pub fn client(&self, target: &Target) -> Result<Option<mtls::ClientTls>, Failed> {
        let given = self.tls_ca.is_some() || self.tls_cert.is_some();
        match target {
            Target::Tls(_) => {}
            Target::Net(_) if given => {
                return Err(Failed(format!(
                    "{target} is not a TLS address; use tls://HOST:PORT with the --tls-* flags"
                )));
            }
            Target::UnixDir(_) | Target::Dns(_) if given => {}
            _ => return Ok(None),
        }
        let Some(ca) = &self.tls_ca else {
            return Err(Failed(format!("{target} needs --tls-ca, the CA to trust")));
        };
        let roots = mtls::RootCerts::from_pem(read("tls-ca", ca)?)
            .map_err(|e| Failed(format!("--tls-ca: {e}")))?;
        let mut tls = mtls::ClientTls::new(&roots, self.identity()?.as_ref())
            .map_err(|e| Failed(format!("TLS: {e}")))?;
        if let Some(name) = &self.tls_server_name {
            tls = tls.with_domain_name(name.clone());
        }
        Ok(Some(tls))
    }
}

/// Connects a weft-tokio client to `target`.
pub async fn connect_tokio(
    target: &Target,
    tls: Option<&mtls::ClientTls>,
    opts: weft_tokio::ClientOptions,
) -> Result<weft_tokio::Connection, CallError> {
    use weft_tokio::ConstantResolver as Constant;
    match (target, tls) {
        (Target::Net(e), _) => weft_tokio::connect(Constant::new([e.clone()]), opts).await,
        (Target::Tls(e), Some(tls)) => {
            let e = weft_tokio::tls::TlsEndpoint::new(e.clone(), tls.clone());
            weft_tokio::connect(Constant::new([e]), opts).await
        }
        (Target::Tls(_), None) => unreachable!("TlsArgs::client refuses this"),
        (Target::UnixDir(d), tls) => {
            let mut r = weft_tokio::UnixDirResolver::new(d);
            if let Some(tls) = tls {
                r = r.tls(tls.clone());
            }
            weft_tokio::connect(r, opts).await
        }
        (Target::Dns(s), tls) => {
            let mut r =
                weft_tokio::DnsResolver::parse(s).map_err(|e| CallError::Unreachable(e.0))?;
            if let Some(tls) = tls {
                r = r.tls(tls.clone());
            }
            weft_tokio::connect(r, opts).await
        }
    }
}

/// Connects a weft-mio client to `target`.
pub fn connect_mio(
    target: &Target,
    tls: Option<&mtls::ClientTls>,
    opts: weft_mio::ClientOptions,
) -> Result<weft_mio::Client, CallError> {
    use weft_mio::ConstantResolver as Constant;
    match (target, tls) {
        (Target::Net(e), _) => weft_mio::Client::connect(Constant::new([e.clone()]), opts),
        (Target::Tls(e), Some(tls)) => {
            let e = weft_mio::tls::TlsEndpoint::new(e.clone(), tls.clone());
            weft_mio::Client::connect(Constant::new([e]), opts)
        }
        (Target::Tls(_), None) => unreachable!("TlsArgs::client refuses this"),
        (Target::UnixDir(d), tls) => {
            let mut r = weft_mio::UnixDirResolver::new(d);
            if let Some(tls) = tls {
                r = r.tls(tls.clone());
            }
            weft_mio::Client::connect(r, opts)
        }
        (Target::Dns(s), tls) => {
            let mut r = weft_mio::DnsResolver::parse(s).map_err(|e| CallError::Unreachable(e.0))?;
            if let Some(tls) = tls {
                r = r.tls(tls.clone());
            }
            weft_mio::Client::connect(r, opts)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme_parses_and_prints_back() {
        for s in [
            "tcp://127.0.0.1:7000",
            "unix:///tmp/w.sock",
            "tls://db:7000",
            "tls+unix:///tmp/w.sock",
            "unixdir:///run/weft",
            "dns://cart.shop.svc:7000",
            "dns+srv://_weft._tcp.cart",
        ] {
            let t: Target = s.parse().unwrap();
            assert_eq!(t.to_string(), s);
        }
        assert!(
            "dns://cart"
                .parse::<Target>()
                .unwrap_err()
                .contains("name:port")
        );
        assert!("http://x".parse::<Target>().unwrap_err().contains("dns://"));
    }
}
