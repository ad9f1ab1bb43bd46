//! Resolvers: where a client learns which replicas exist.

use crate::endpoint::{BoxFuture, Endpoint};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// A version of a resolver's endpoint set; only equality matters.
pub type Version = u64;

/// An endpoint shared between the resolver and the client.
pub type SharedEndpoint = Arc<dyn Endpoint>;

/// A resolver's answer: the endpoints and their version.
pub type Resolved = Result<(Vec<SharedEndpoint>, Option<Version>), ResolveError>;

/// Why a resolver could not answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("resolver: {0}")]
pub struct ResolveError(pub String);

/// Finds the replicas of a service.
///
/// `resolve(None)` returns the current set at once. `resolve(Some(v))`
/// waits until the set differs from version `v` (or returns `v` again to be
/// asked later); a constant resolver is asked only once.
pub trait Resolver: Send + Sync + 'static {
    /// Whether the set never changes.
    fn is_constant(&self) -> bool;
    /// The endpoints and their version (required unless constant).
    fn resolve(&self, version: Option<Version>) -> BoxFuture<'_, Resolved>;
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
            endpoints: endpoints
                .into_iter()
                .map(|e| Arc::new(e) as SharedEndpoint)
                .collect(),
        }
    }
}

impl Resolver for ConstantResolver {
    fn is_constant(&self) -> bool {
        true
    }

    fn resolve(&self, _: Option<Version>) -> BoxFuture<'_, Resolved> {
        let eps = self.endpoints.clone();
        Box::pin(async move { Ok((eps, None)) })
    }
}

/// An endpoint set the application changes at will; every change is a new
/// version, and clients following it see the change.
///
/// ```
/// use weft_tokio::{DynamicResolver, tcp};
/// let r = DynamicResolver::new();
/// r.set([tcp("127.0.0.1:7000")]);
/// assert_eq!(r.version(), 1);
/// ```
#[derive(Clone)]
pub struct DynamicResolver {
    tx: Arc<watch::Sender<(Version, Vec<SharedEndpoint>)>>,
    failures: Arc<Mutex<u32>>,
}

impl Default for DynamicResolver {
    fn default() -> Self {
        Self::new()
    }
}

impl DynamicResolver {
    /// An empty set at version 0.
    pub fn new() -> Self {
        DynamicResolver {
            tx: Arc::new(watch::channel((0, Vec::new())).0),
            failures: Arc::new(Mutex::new(0)),
        }
    }

    /// Replaces the set; returns the new version.
    pub fn set<E: Endpoint>(&self, endpoints: impl IntoIterator<Item = E>) -> Version {
        let eps: Vec<SharedEndpoint> = endpoints
            .into_iter()
            .map(|e| Arc::new(e) as SharedEndpoint)
            .collect();
        let mut v = 0;
        self.tx.send_modify(|(ver, set)| {
            *ver += 1;
            *set = eps;
            v = *ver;
        });
        v
    }

    /// The current version.
    pub fn version(&self) -> Version {
        self.tx.borrow().0
    }

    /// Makes the next `n` resolves fail (for tests of resolver errors).
    pub fn fail_next(&self, n: u32) {
        *self.failures.lock().expect("unpoisoned") = n;
    }
}

impl Resolver for DynamicResolver {
    fn is_constant(&self) -> bool {
        false
    }

    fn resolve(&self, version: Option<Version>) -> BoxFuture<'_, Resolved> {
        let mut rx = self.tx.subscribe();
        Box::pin(async move {
            {
                let mut f = self.failures.lock().expect("unpoisoned");
                if *f > 0 {
                    *f -= 1;
                    return Err(ResolveError("injected failure".into()));
                }
            }
            if let Some(v) = version {
                // Sender lives in self, so this only ends on a change.
                let _ = rx.wait_for(|(cur, _)| *cur != v).await;
            }
            let (v, eps) = rx.borrow().clone();
            Ok((eps, Some(v)))
        })
    }
}
