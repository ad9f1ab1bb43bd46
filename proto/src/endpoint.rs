//! Endpoint addresses: how replicas are named in resolvers and on the
//! command line. Only the vocabulary lives here; drivers do the dialing.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A TCP or Unix socket endpoint: `tcp://host:port`, `unix:///abs/path` or
/// `unix://relative.sock`.
///
/// ```
/// use weft_proto::NetEndpoint;
/// let e: NetEndpoint = "tcp://127.0.0.1:8000".parse()?;
/// assert_eq!(e.to_string(), "tcp://127.0.0.1:8000");
/// assert!("http://x".parse::<NetEndpoint>().is_err());
/// # Ok::<(), weft_proto::ParseNetEndpoint>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NetEndpoint {
    /// A TCP address, `host:port`.
    Tcp(String),
    /// A Unix socket path.
    Unix(PathBuf),
}

/// A TCP endpoint at `addr` (`host:port`).
pub fn tcp(addr: impl Into<String>) -> NetEndpoint {
    NetEndpoint::Tcp(addr.into())
}

/// A Unix socket endpoint at `path`.
pub fn unix(path: impl Into<PathBuf>) -> NetEndpoint {
    NetEndpoint::Unix(path.into())
}

/// Why a string is not a [`NetEndpoint`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad endpoint {input:?}: {reason}")]
pub struct ParseNetEndpoint {
    input: String,
    reason: &'static str,
}

impl FromStr for NetEndpoint {
    type Err = ParseNetEndpoint;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseNetEndpoint {
            input: s.to_owned(),
            reason,
        };
        if let Some(addr) = s.strip_prefix("tcp://") {
            match addr.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok(NetEndpoint::Tcp(addr.to_owned()))
                }
                _ => Err(err("want tcp://host:port")),
            }
        } else if let Some(path) = s.strip_prefix("unix://") {
            if path.is_empty() {
                Err(err("want unix:///path or unix://relative.sock"))
            } else {
                Ok(NetEndpoint::Unix(path.into()))
            }
        } else {
            Err(err("scheme must be tcp:// or unix://"))
        }
    }
}

impl NetEndpoint {
    /// Parses an address of a replica behind TLS: `tls://host:port` (TLS
    /// over TCP) or `tls+unix:///path` (TLS over a Unix socket), into the
    /// endpoint underneath. The drivers' TLS endpoints print themselves
    /// the same way.
    ///
    /// ```
    /// use weft_proto::NetEndpoint;
    /// assert_eq!(NetEndpoint::parse_tls("tls://db:7000")?, weft_proto::tcp("db:7000"));
    /// assert!(NetEndpoint::parse_tls("tcp://db:7000").is_err());
    /// # Ok::<(), weft_proto::ParseNetEndpoint>(())
    /// ```
    pub fn parse_tls(s: &str) -> Result<NetEndpoint, ParseNetEndpoint> {
        let inner = if let Some(rest) = s.strip_prefix("tls+unix://") {
            format!("unix://{rest}")
        } else if let Some(rest) = s.strip_prefix("tls://") {
            format!("tcp://{rest}")
        } else {
            return Err(ParseNetEndpoint {
                input: s.to_owned(),
                reason: "scheme must be tls:// or tls+unix://",
            });
        };
        inner
            .parse()
            .map_err(|e: ParseNetEndpoint| ParseNetEndpoint {
                input: s.to_owned(),
                reason: e.reason,
            })
    }

    /// The address with TLS named in its scheme: `tls://host:port` or
    /// `tls+unix://path`.
    pub fn tls_address(&self) -> String {
        match self {
            NetEndpoint::Tcp(a) => format!("tls://{a}"),
            NetEndpoint::Unix(p) => format!("tls+unix://{}", p.display()),
        }
    }

    /// The host of a TCP endpoint (brackets of an IPv6 literal removed);
    /// `localhost` for a Unix socket.
    pub fn host(&self) -> &str {
        match self {
            NetEndpoint::Tcp(a) => {
                let host = a.rsplit_once(':').map_or(a.as_str(), |(h, _)| h);
                host.trim_start_matches('[').trim_end_matches(']')
            }
            NetEndpoint::Unix(_) => "localhost",
        }
    }
}

impl fmt::Display for NetEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetEndpoint::Tcp(a) => write!(f, "tcp://{a}"),
            NetEndpoint::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}
