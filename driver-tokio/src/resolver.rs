//! Resolvers: where a client learns which replicas exist.

use crate::endpoint::{BoxFuture, Endpoint};
use std::sync::Arc;
use weft_driver::resolver::MakeEndpoint;
pub use weft_driver::resolver::ResolveError;
use weft_proto::{EndpointsVersion, NetEndpoint};

/// An endpoint shared between the resolver and the client.
pub type SharedEndpoint = Arc<dyn Endpoint>;

/// A resolver's answer: the endpoints and their version.
pub type Resolved = Result<(Vec<SharedEndpoint>, Option<EndpointsVersion>), ResolveError>;

/// Finds the replicas of a service.
///
/// `resolve(None)` returns the current set at once. `resolve(Some(v))`
/// waits until the set differs from version `v` (or returns `v` again to be
/// asked later); a constant resolver is asked only once.
///
/// A resolver of your own, here one that reads a file of `tcp://` lines
/// (a real one would wait for the file to change before answering a
/// version it has already given):
///
/// ```
/// use weft_tokio::{BoxFuture, EndpointsVersion, NetEndpoint, ResolveError, Resolved, Resolver};
/// use std::sync::Arc;
///
/// struct FileResolver(std::path::PathBuf);
///
/// impl Resolver for FileResolver {
///     fn resolve(&self, _seen: Option<EndpointsVersion>) -> BoxFuture<'_, Resolved> {
///         Box::pin(async move {
///             // A small local file; a resolver that talks to a service
///             // awaits its client here instead.
///             let text = std::fs::read_to_string(&self.0)
///                 .map_err(|e| ResolveError(format!("{}: {e}", self.0.display())))?;
///             let mut endpoints = Vec::new();
///             for line in text.lines().filter(|l| !l.is_empty()) {
///                 let e: NetEndpoint = line.parse().map_err(|e| ResolveError(format!("{e}")))?;
///                 endpoints.push(Arc::new(e) as weft_tokio::SharedEndpoint);
///             }
///             // The version lets the pool tell a new set from an old one:
///             // different sets must never share one (a hash of the text).
///             let mut h = std::hash::DefaultHasher::new();
///             std::hash::Hash::hash(&text, &mut h);
///             let version = EndpointsVersion(std::hash::Hasher::finish(&h));
///             Ok((endpoints, Some(version)))
///         })
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
    fn resolve(&self, version: Option<EndpointsVersion>) -> BoxFuture<'_, Resolved>;
}

/// A fixed set of endpoints.
///
/// ```
/// use weft_tokio::{ConstantResolver, tcp};
/// let r = ConstantResolver::new([tcp("127.0.0.1:7000"), tcp("127.0.0.1:7001")]);
/// # let _ = r;
/// ```
pub struct ConstantResolver {
    endpoints: Vec<SharedEndpoint>,
}

impl ConstantResolver {
    /// A resolver that always returns `endpoints`.
    pub fn new<E: Endpoint>(endpoints: impl IntoIterator<Item = E>) -> Self {
        ConstantResolver {
            endpoints: shared(endpoints),
        }
    }
}

fn shared<E: Endpoint>(endpoints: impl IntoIterator<Item = E>) -> Vec<SharedEndpoint> {
    endpoints
        .into_iter()
        .map(|e| Arc::new(e) as SharedEndpoint)
        .collect()
}

impl Resolver for ConstantResolver {
    fn is_constant(&self) -> bool {
        true
    }

    fn resolve(&self, _: Option<EndpointsVersion>) -> BoxFuture<'_, Resolved> {
        let eps = self.endpoints.clone();
        Box::pin(async move { Ok((eps, None)) })
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
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use weft_tokio::{Resolver, UnixDirResolver};
/// let dir = std::env::temp_dir().join(format!("weft-doc-unixdir-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let _replica = tokio::net::UnixListener::bind(dir.join("replica-1.sock"))?;
/// let (endpoints, _version) = UnixDirResolver::new(&dir).resolve(None).await?;
/// assert_eq!(endpoints.len(), 1);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
#[cfg(unix)]
#[derive(Debug)]
pub struct UnixDirResolver(weft_driver::unixdir::UnixDir, MakeEndpoint<SharedEndpoint>);

#[cfg(unix)]
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

#[cfg(unix)]
impl Resolver for UnixDirResolver {
    fn resolve(&self, seen: Option<EndpointsVersion>) -> BoxFuture<'_, Resolved> {
        use weft_driver::resolver::after_look;
        Box::pin(async move {
            let started = std::time::Instant::now();
            loop {
                let (paths, version) = self.0.scan()?;
                let now = std::time::Instant::now();
                let next = now + weft_driver::unixdir::UNIXDIR_POLL;
                match after_look(seen, version, started, now, next) {
                    None => {
                        let eps = self.1.all(paths.into_iter().map(NetEndpoint::Unix));
                        return Ok((eps, Some(version)));
                    }
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                }
            }
        })
    }
}

/// Replicas from DNS (feature `dns`): `host:port`'s A/AAAA records, or an
/// SRV name's records, looked up again as their TTL runs out (bounded by
/// [`DnsOptions`](weft_driver::dns::DnsOptions)); a change is a new version.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use weft_tokio::DnsResolver;
/// // A Kubernetes headless Service: one A record per ready pod.
/// let resolver = DnsResolver::parse("dns://cart.shop.svc.cluster.local:7000")?;
/// let conn = weft_tokio::connect(resolver, Default::default()).await?;
/// # let _ = conn; Ok(())
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
    fn resolve(&self, seen: Option<EndpointsVersion>) -> BoxFuture<'_, Resolved> {
        use weft_driver::resolver::after_look;
        Box::pin(async move {
            // Following: no sooner than the last answer allows.
            if let (Some(_), Some(at)) = (seen, self.0.next_lookup()) {
                tokio::time::sleep_until(at.into()).await;
            }
            let started = std::time::Instant::now();
            loop {
                let a = self.0.lookup().await?;
                let now = std::time::Instant::now();
                match after_look(seen, a.version, started, now, a.next_lookup) {
                    None => return Ok((self.1.all(a.endpoints), Some(a.version))),
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                }
            }
        })
    }
}

weft_driver::endpoint_flavor! {
    /// The tokio driver's endpoints, as a [`DynamicResolver`] stores them.
    pub TokioEndpoints for dyn Endpoint
}

/// An endpoint set the application changes at will; every change is a new
/// version, and clients following it see the change.
///
/// ```
/// use weft_tokio::{DynamicResolver, EndpointsVersion, tcp};
/// let r = DynamicResolver::new();
/// r.set([tcp("127.0.0.1:7000")]);
/// assert_eq!(r.version(), EndpointsVersion(1));
/// ```
pub type DynamicResolver = weft_driver::resolver::DynamicResolver<TokioEndpoints>;

impl Resolver for DynamicResolver {
    fn resolve(&self, version: Option<EndpointsVersion>) -> BoxFuture<'_, Resolved> {
        Box::pin(async move {
            let (eps, v) = self.endpoints().changed(version).await;
            Ok((eps, Some(v)))
        })
    }
}
