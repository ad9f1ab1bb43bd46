//! Endpoints and resolvers, blocking flavour.

use crate::stream::Stream;
use std::io;
use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::time::{Duration, Instant};
pub use weft_driver::resolver::ResolveError;
use weft_driver::resolver::{MakeEndpoint, after_look};
#[cfg(feature = "tls")]
pub use weft_driver::tls::TlsEndpoint;
use weft_proto::EndpointsVersion;
use weft_proto::NetEndpoint;

/// A replica that can be dialed. Dialing blocks (it runs on a helper
/// thread, never on the event loop).
pub trait Endpoint: Send + Sync + 'static {
    /// Opens a connection.
    fn dial(&self) -> io::Result<Stream>;
    /// Opens a connection, giving up after `timeout` (the client's
    /// connect timeout, after which the client has given up on it): what
    /// the client calls. The default calls [`dial`](Self::dial), which then
    /// bounds its own time.
    fn dial_timeout(&self, timeout: Duration) -> io::Result<Stream> {
        let _ = timeout;
        self.dial()
    }
    /// The replica's address, as resolver sets are compared.
    fn address(&self) -> String;
}

impl Endpoint for NetEndpoint {
    /// Dials with the default connect timeout.
    fn dial(&self) -> io::Result<Stream> {
        self.dial_timeout(weft_proto::DEFAULT_CONNECT_TIMEOUT)
    }

    /// A TCP address's addresses are tried in turn within `timeout`. A
    /// Unix socket connects at once or not at all: when its server's
    /// listen queue is full the dial fails then (the client backs off and
    /// dials again) rather than waiting for the server to accept.
    fn dial_timeout(&self, timeout: Duration) -> io::Result<Stream> {
        match self {
            NetEndpoint::Tcp(addr) => Stream::from_std_tcp(connect_tcp(addr, timeout)?),
            NetEndpoint::Unix(path) => match mio::net::UnixStream::connect(path) {
                Ok(s) => Ok(Stream::Unix(s)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!("the server's listen queue is full ({e})"),
                )),
                Err(e) => Err(e),
            },
        }
    }

    fn address(&self) -> String {
        self.to_string()
    }
}

/// Connects to the first of `addr`'s addresses that answers, all within
/// `timeout`.
fn connect_tcp(addr: &str, timeout: Duration) -> io::Result<std::net::TcpStream> {
    // A timeout past the clock's range leaves each attempt the whole of it.
    let deadline = Instant::now().checked_add(timeout);
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        let left = deadline.map_or(timeout, |d| d.saturating_duration_since(Instant::now()));
        if left.is_zero() {
            break;
        }
        match std::net::TcpStream::connect_timeout(&a, left) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{addr}: no address answered within {timeout:?}"),
        )
    }))
}

#[cfg(feature = "tls")]
impl Endpoint for weft_driver::tls::TlsEndpoint {
    /// Connects; the TLS handshake runs in the connection's first reads
    /// and writes on the event loop.
    fn dial(&self) -> io::Result<Stream> {
        self.dial_timeout(weft_proto::DEFAULT_CONNECT_TIMEOUT)
    }

    fn dial_timeout(&self, timeout: Duration) -> io::Result<Stream> {
        let conn = self.connection()?;
        let sock = self.endpoint().dial_timeout(timeout)?;
        Ok(Stream::Tls(Box::new(crate::tls::TlsStream::new(
            sock, conn,
        ))))
    }

    fn address(&self) -> String {
        TlsEndpoint::address(self)
    }
}

/// An endpoint shared between a resolver and clients.
pub type SharedEndpoint = Arc<dyn Endpoint>;

/// A resolver's answer.
pub type Resolved = Result<(Vec<SharedEndpoint>, Option<EndpointsVersion>), ResolveError>;

/// Finds replicas. `resolve(None)` answers at once; `resolve(Some(v))`
/// blocks until the set differs from version `v`.
///
/// A resolver of your own; here one that re-reads a file of `tcp://` lines
/// every second and answers when its contents change:
///
/// ```
/// use std::sync::Arc;
/// use weft_mio::{EndpointsVersion, NetEndpoint, ResolveError, Resolved, Resolver, SharedEndpoint};
///
/// struct FileResolver(std::path::PathBuf);
///
/// impl FileResolver {
///     fn read(&self) -> Result<(String, EndpointsVersion), ResolveError> {
///         let text = std::fs::read_to_string(&self.0)
///             .map_err(|e| ResolveError(format!("{}: {e}", self.0.display())))?;
///         // Different sets must never share a version: a hash of the text.
///         let mut h = std::hash::DefaultHasher::new();
///         std::hash::Hash::hash(&text, &mut h);
///         let version = EndpointsVersion(std::hash::Hasher::finish(&h));
///         Ok((text, version))
///     }
/// }
///
/// impl Resolver for FileResolver {
///     fn resolve(&self, seen: Option<EndpointsVersion>) -> Resolved {
///         let (text, version) = loop {
///             let (text, version) = self.read()?;
///             if Some(version) != seen {
///                 break (text, version);
///             }
///             // Blocks its own thread, never a caller's.
///             std::thread::sleep(std::time::Duration::from_secs(1));
///         };
///         let mut endpoints = Vec::new();
///         for line in text.lines().filter(|l| !l.is_empty()) {
///             let e: NetEndpoint = line.parse().map_err(|e| ResolveError(format!("{e}")))?;
///             endpoints.push(Arc::new(e) as SharedEndpoint);
///         }
///         Ok((endpoints, Some(version)))
///     }
/// }
/// # let _ = FileResolver("endpoints.txt".into());
/// ```
pub trait Resolver: Send + Sync + 'static {
    /// Whether the set never changes (default: no, it is followed).
    fn is_constant(&self) -> bool {
        false
    }
    /// The endpoints and their version (required unless constant).
    fn resolve(&self, version: Option<EndpointsVersion>) -> Resolved;
}

/// A fixed set of endpoints.
///
/// ```
/// let r = weft_mio::ConstantResolver::new(["tcp://127.0.0.1:7000".parse::<weft_proto::NetEndpoint>()?]);
/// # let _ = r;
/// # Ok::<(), weft_proto::ParseNetEndpoint>(())
/// ```
pub struct ConstantResolver(Vec<SharedEndpoint>);

impl ConstantResolver {
    /// A resolver that always returns `endpoints`.
    pub fn new<E: Endpoint>(endpoints: impl IntoIterator<Item = E>) -> Self {
        ConstantResolver(
            endpoints
                .into_iter()
                .map(|e| Arc::new(e) as SharedEndpoint)
                .collect(),
        )
    }
}

impl Resolver for ConstantResolver {
    fn is_constant(&self) -> bool {
        true
    }
    fn resolve(&self, _: Option<EndpointsVersion>) -> Resolved {
        Ok((self.0.clone(), None))
    }
}

/// A following resolver's endpoints: plain ones.
fn plain() -> MakeEndpoint<SharedEndpoint> {
    MakeEndpoint::new(|e| Arc::new(e) as SharedEndpoint)
}

/// A following resolver's endpoints: behind TLS with `tls`.
#[cfg(feature = "tls")]
fn with_tls(tls: weft_driver::tls::ClientTls) -> MakeEndpoint<SharedEndpoint> {
    MakeEndpoint::new(move |e| {
        Arc::new(weft_driver::tls::TlsEndpoint::new(e, tls.clone())) as SharedEndpoint
    })
}

/// The Unix sockets in a directory, followed as they come and go
/// (`unixdir:///path`): noticed within [`UNIXDIR_POLL`](weft_driver::unixdir::UNIXDIR_POLL).
///
/// ```
/// use weft_mio::{Resolver, UnixDirResolver};
/// let dir = std::env::temp_dir().join(format!("weft-doc-unixdir-mio-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let _replica = std::os::unix::net::UnixListener::bind(dir.join("replica-1.sock"))?;
/// let (endpoints, _version) = UnixDirResolver::new(&dir).resolve(None).unwrap();
/// assert_eq!(endpoints.len(), 1);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct UnixDirResolver(weft_driver::unixdir::UnixDir, MakeEndpoint<SharedEndpoint>);

impl UnixDirResolver {
    /// Follows the sockets in `dir`.
    pub fn new(dir: impl Into<std::path::PathBuf>) -> Self {
        UnixDirResolver(weft_driver::unixdir::UnixDir::new(dir), plain())
    }

    /// Dials every replica it finds with TLS (`tls` as for a
    /// [`TlsEndpoint`](weft_driver::tls::TlsEndpoint)): mutual TLS across a
    /// followed set.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: weft_driver::tls::ClientTls) -> Self {
        self.1 = with_tls(tls);
        self
    }
}

impl Resolver for UnixDirResolver {
    fn resolve(&self, seen: Option<EndpointsVersion>) -> Resolved {
        let started = std::time::Instant::now();
        loop {
            let (paths, version) = self.0.scan()?;
            let now = std::time::Instant::now();
            let next = now + weft_driver::unixdir::UNIXDIR_POLL;
            match after_look(seen, version, started, now, next) {
                None => {
                    let eps = paths.into_iter().map(NetEndpoint::Unix);
                    return Ok((self.1.all(eps), Some(version)));
                }
                Some(at) => std::thread::sleep(at.saturating_duration_since(now)),
            }
        }
    }
}

/// Replicas from DNS (feature `dns`), blocking: `host:port`'s A/AAAA
/// records, or an SRV name's records, looked up again as their TTL runs
/// out (bounded by [`DnsOptions`](weft_driver::dns::DnsOptions)); a change
/// is a new version.
///
/// ```no_run
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let resolver = weft_mio::DnsResolver::parse("dns+srv://_weft._tcp.cart.shop.svc.cluster.local")?;
/// let client = weft_mio::Client::connect(resolver, Default::default())?;
/// # let _ = client; Ok(())
/// # }
/// ```
#[cfg(feature = "dns")]
#[derive(Debug)]
pub struct DnsResolver(weft_driver::dns::Dns, MakeEndpoint<SharedEndpoint>);

#[cfg(feature = "dns")]
impl DnsResolver {
    /// Follows `target` with `opts`.
    pub fn new(
        target: weft_driver::dns::DnsTarget,
        opts: weft_driver::dns::DnsOptions,
    ) -> Result<Self, ResolveError> {
        weft_driver::dns::Dns::new(target, opts).map(|d| DnsResolver(d, plain()))
    }

    /// Follows `dns://name:port` or `dns+srv://name` with the system's
    /// DNS configuration.
    pub fn parse(addr: &str) -> Result<Self, ResolveError> {
        Self::new(
            weft_driver::dns::DnsTarget::parse(addr)?,
            Default::default(),
        )
    }

    /// Dials every replica it finds with TLS (`tls` as for a
    /// [`TlsEndpoint`](weft_driver::tls::TlsEndpoint)): mutual TLS across a
    /// followed set.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: weft_driver::tls::ClientTls) -> Self {
        self.1 = with_tls(tls);
        self
    }
}

#[cfg(feature = "dns")]
impl Resolver for DnsResolver {
    fn resolve(&self, seen: Option<EndpointsVersion>) -> Resolved {
        // Following: no sooner than the last answer allows.
        if let (Some(_), Some(at)) = (seen, self.0.next_lookup()) {
            std::thread::sleep(at.saturating_duration_since(std::time::Instant::now()));
        }
        let started = std::time::Instant::now();
        loop {
            let a = self.0.lookup_blocking()?;
            let now = std::time::Instant::now();
            match after_look(seen, a.version, started, now, a.next_lookup) {
                None => return Ok((self.1.all(a.endpoints), Some(a.version))),
                Some(at) => std::thread::sleep(at.saturating_duration_since(now)),
            }
        }
    }
}

weft_driver::endpoint_flavor! {
    /// The mio driver's endpoints, as a [`DynamicResolver`] stores them.
    pub MioEndpoints for dyn Endpoint
}

/// An endpoint set the application changes at will; every change is a new
/// version, and clients following it see the change.
///
/// ```
/// use weft_mio::{DynamicResolver, EndpointsVersion, NetEndpoint};
/// let r = DynamicResolver::new();
/// r.set(["tcp://127.0.0.1:7000".parse::<NetEndpoint>()?]);
/// assert_eq!(r.version(), EndpointsVersion(1));
/// # Ok::<(), weft_mio::ParseNetEndpoint>(())
/// ```
pub type DynamicResolver = weft_driver::resolver::DynamicResolver<MioEndpoints>;

impl Resolver for DynamicResolver {
    /// Blocks until the set differs from `version`, or for at most
    /// [`FOLLOW_MAX_WAIT`](weft_driver::resolver::FOLLOW_MAX_WAIT), then
    /// answers with the same version: the thread of a closed client ends.
    fn resolve(&self, version: Option<EndpointsVersion>) -> Resolved {
        let max = weft_driver::resolver::FOLLOW_MAX_WAIT;
        let (eps, v) = self.endpoints().wait_changed_for(version, max);
        Ok((eps, Some(v)))
    }
}
