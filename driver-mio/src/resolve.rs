//! Endpoints and resolvers, blocking flavour.

use crate::stream::Stream;
use std::io;
use std::sync::{Arc, Condvar, Mutex};
use weft_proto::NetEndpoint;

/// A replica that can be dialed. Dialing blocks (it runs on a helper
/// thread, never on the event loop).
pub trait Endpoint: Send + Sync + 'static {
    /// Opens a connection.
    fn dial(&self) -> io::Result<Stream>;
    /// The replica's address, as resolver sets are compared.
    fn address(&self) -> String;
}

impl Endpoint for NetEndpoint {
    fn dial(&self) -> io::Result<Stream> {
        match self {
            NetEndpoint::Tcp(addr) => Stream::from_std_tcp(std::net::TcpStream::connect(addr)?),
            NetEndpoint::Unix(path) => {
                Stream::from_std_unix(std::os::unix::net::UnixStream::connect(path)?)
            }
        }
    }

    fn address(&self) -> String {
        self.to_string()
    }
}

/// A version of a resolver's set; only equality matters.
pub type Version = u64;

/// An endpoint shared between a resolver and clients.
pub type SharedEndpoint = Arc<dyn Endpoint>;

/// Why a resolver could not answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("resolver: {0}")]
pub struct ResolveError(pub String);

/// A resolver's answer.
pub type Resolved = Result<(Vec<SharedEndpoint>, Option<Version>), ResolveError>;

/// Finds replicas. `resolve(None)` answers at once; `resolve(Some(v))`
/// blocks until the set differs from version `v`.
pub trait Resolver: Send + Sync + 'static {
    /// Whether the set never changes.
    fn is_constant(&self) -> bool;
    /// The endpoints and their version (required unless constant).
    fn resolve(&self, version: Option<Version>) -> Resolved;
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
    fn resolve(&self, _: Option<Version>) -> Resolved {
        Ok((self.0.clone(), None))
    }
}

/// The current set and its version.
type Versioned = (Version, Vec<SharedEndpoint>);

/// An endpoint set the application changes at will.
#[derive(Clone, Default)]
pub struct DynamicResolver {
    inner: Arc<(Mutex<Versioned>, Condvar)>,
}

impl DynamicResolver {
    /// An empty set at version 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the set; returns the new version.
    pub fn set<E: Endpoint>(&self, endpoints: impl IntoIterator<Item = E>) -> Version {
        let (m, cv) = &*self.inner;
        let mut g = m.lock().expect("unpoisoned");
        g.0 += 1;
        g.1 = endpoints
            .into_iter()
            .map(|e| Arc::new(e) as SharedEndpoint)
            .collect();
        cv.notify_all();
        g.0
    }
}

impl Resolver for DynamicResolver {
    fn is_constant(&self) -> bool {
        false
    }
    fn resolve(&self, version: Option<Version>) -> Resolved {
        let (m, cv) = &*self.inner;
        let mut g = m.lock().expect("unpoisoned");
        if let Some(v) = version {
            g = cv.wait_while(g, |(cur, _)| *cur == v).expect("unpoisoned");
        }
        Ok((g.1.clone(), Some(g.0)))
    }
}
