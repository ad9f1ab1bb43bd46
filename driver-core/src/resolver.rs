//! What both drivers' resolvers share: the error type and the versioned,
//! settable endpoint set behind `DynamicResolver`.

use std::future::poll_fn;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};
use weft_proto::{EndpointsVersion, NetEndpoint};

/// Why a resolver could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("resolver: {0}")]
pub struct ResolveError(pub String);

/// A set of endpoints the application replaces at will; every change is a
/// new version, and whoever waits for a change (a blocking thread or a
/// task) is woken.
///
/// ```
/// use weft_driver::resolver::EndpointSet;
/// use weft_proto::EndpointsVersion;
/// let set = EndpointSet::new();
/// assert_eq!(set.set(vec!["a"]), EndpointsVersion(1));
/// assert_eq!(set.wait_changed(Some(EndpointsVersion(0))), (vec!["a"], EndpointsVersion(1)));
/// ```
#[derive(Debug)]
pub struct EndpointSet<E> {
    state: Mutex<State<E>>,
    changed: Condvar,
}

#[derive(Debug)]
struct State<E> {
    version: EndpointsVersion,
    endpoints: Vec<E>,
    wakers: Vec<Waker>,
}

impl<E: Clone> Default for EndpointSet<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: Clone> EndpointSet<E> {
    /// An empty set at version 0.
    pub fn new() -> Self {
        EndpointSet {
            state: Mutex::new(State {
                version: EndpointsVersion(0),
                endpoints: Vec::new(),
                wakers: Vec::new(),
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<E>> {
        self.state.lock().expect("endpoint set poisoned")
    }

    /// Replaces the set; returns the new version.
    pub fn set(&self, endpoints: Vec<E>) -> EndpointsVersion {
        let mut s = self.lock();
        s.version = EndpointsVersion(s.version.0 + 1);
        s.endpoints = endpoints;
        let version = s.version;
        let wakers = std::mem::take(&mut s.wakers);
        drop(s);
        self.changed.notify_all();
        wakers.into_iter().for_each(Waker::wake);
        version
    }

    /// The current version.
    pub fn version(&self) -> EndpointsVersion {
        self.lock().version
    }

    /// The current set and its version.
    pub fn current(&self) -> (Vec<E>, EndpointsVersion) {
        let s = self.lock();
        (s.endpoints.clone(), s.version)
    }

    /// Blocks until the version differs from `since` (at once for `None`).
    pub fn wait_changed(&self, since: Option<EndpointsVersion>) -> (Vec<E>, EndpointsVersion) {
        let mut s = self.lock();
        if let Some(v) = since {
            s = self
                .changed
                .wait_while(s, |s| s.version == v)
                .expect("endpoint set poisoned");
        }
        (s.endpoints.clone(), s.version)
    }

    /// Like [`wait_changed`](Self::wait_changed), but answers with the
    /// current (unchanged) set after `max`: how a resolver thread whose
    /// client has closed finds out, on its next answer, that nobody asks.
    ///
    /// ```
    /// use std::time::Duration;
    /// use weft_driver::resolver::EndpointSet;
    /// use weft_proto::EndpointsVersion;
    /// let set = EndpointSet::<&str>::new();
    /// let v = set.set(vec!["a"]);
    /// // Nothing changes: after the bound, the same version again.
    /// assert_eq!(set.wait_changed_for(Some(v), Duration::from_millis(10)), (vec!["a"], v));
    /// ```
    pub fn wait_changed_for(
        &self,
        since: Option<EndpointsVersion>,
        max: Duration,
    ) -> (Vec<E>, EndpointsVersion) {
        let mut s = self.lock();
        if let Some(v) = since {
            s = self
                .changed
                .wait_timeout_while(s, max, |s| s.version == v)
                .expect("endpoint set poisoned")
                .0;
        }
        (s.endpoints.clone(), s.version)
    }

    /// Completes when the version differs from `since` (at once for
    /// `None`).
    pub async fn changed(&self, since: Option<EndpointsVersion>) -> (Vec<E>, EndpointsVersion) {
        poll_fn(|cx| {
            let mut s = self.lock();
            if since.is_some_and(|v| v == s.version) {
                if !s.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    s.wakers.push(cx.waker().clone());
                }
                return Poll::Pending;
            }
            Poll::Ready((s.endpoints.clone(), s.version))
        })
        .await
    }
}

/// How long a resolver waits for a change before answering with the
/// version it was given, so that a resolver whose client is gone stops
/// soon after: those that look again and again (Unix directory, DNS) and
/// weft-mio's blocking `DynamicResolver`. (weft-tokio's resolve task ends
/// when its client closes.)
pub const FOLLOW_MAX_WAIT: Duration = Duration::from_secs(5);

/// What a following resolver does after a look that found `found`: answer
/// now (`None`: the set changed, or it has waited [`FOLLOW_MAX_WAIT`]
/// since `started`), or look again at the instant returned. Both drivers'
/// `UnixDirResolver` and `DnsResolver` only sleep until it.
///
/// ```
/// use std::time::{Duration, Instant};
/// use weft_driver::resolver::after_look;
/// use weft_proto::EndpointsVersion as V;
/// let t0 = Instant::now();
/// let soon = t0 + Duration::from_millis(200);
/// assert_eq!(after_look(Some(V(3)), V(4), t0, t0, soon), None); // changed
/// assert_eq!(after_look(Some(V(4)), V(4), t0, t0, soon), Some(soon)); // wait
/// assert_eq!(after_look(None, V(4), t0, t0, soon), None); // first answer
/// ```
pub fn after_look(
    seen: Option<EndpointsVersion>,
    found: EndpointsVersion,
    started: Instant,
    now: Instant,
    next_look: Instant,
) -> Option<Instant> {
    let give_up = started + FOLLOW_MAX_WAIT;
    if seen != Some(found) || now >= give_up {
        None
    } else {
        Some(next_look.min(give_up))
    }
}

/// A driver's flavour of endpoint, as a [`DynamicResolver`] stores it.
pub trait Flavor: Send + Sync + 'static {
    /// How the driver shares an endpoint (e.g. `Arc<dyn Endpoint>`).
    type Shared: Clone + Send + Sync + 'static;
}

/// Declares a driver's endpoint [`Flavor`]: a marker type whose endpoints
/// are shared as `Arc<dyn Trait>` for the driver's endpoint trait.
#[macro_export]
macro_rules! endpoint_flavor {
    ($(#[$meta:meta])* $vis:vis $name:ident for dyn $endpoint:ident) => {
        $(#[$meta])*
        #[derive(Debug)]
        $vis struct $name;

        impl $crate::resolver::Flavor for $name {
            type Shared = ::std::sync::Arc<dyn $endpoint>;
        }

        impl<E: $endpoint> $crate::resolver::Share<E> for $name {
            fn share(endpoint: E) -> ::std::sync::Arc<dyn $endpoint> {
                ::std::sync::Arc::new(endpoint)
            }
        }
    };
}

/// How a driver turns one of its endpoints into its shared form.
pub trait Share<E>: Flavor {
    /// `endpoint`, shared.
    fn share(endpoint: E) -> Self::Shared;
}

/// An endpoint set the application changes at will; every change is a new
/// version, and clients following it see the change. Each driver names it
/// `DynamicResolver` for its own endpoints and implements its resolver
/// trait for it.
pub struct DynamicResolver<F: Flavor> {
    set: Arc<EndpointSet<F::Shared>>,
}

impl<F: Flavor> Clone for DynamicResolver<F> {
    fn clone(&self) -> Self {
        DynamicResolver {
            set: self.set.clone(),
        }
    }
}

impl<F: Flavor> Default for DynamicResolver<F> {
    fn default() -> Self {
        DynamicResolver {
            set: Arc::new(EndpointSet::new()),
        }
    }
}

impl<F: Flavor> std::fmt::Debug for DynamicResolver<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamicResolver")
            .field("version", &self.version())
            .finish_non_exhaustive()
    }
}

impl<F: Flavor> DynamicResolver<F> {
    /// An empty set at version 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the set; returns the new version.
    pub fn set<E>(&self, endpoints: impl IntoIterator<Item = E>) -> EndpointsVersion
    where
        F: Share<E>,
    {
        self.set.set(endpoints.into_iter().map(F::share).collect())
    }

    /// The current version.
    pub fn version(&self) -> EndpointsVersion {
        self.set.version()
    }

    /// The set itself, which a driver's resolver trait waits on.
    pub fn endpoints(&self) -> &EndpointSet<F::Shared> {
        &self.set
    }
}

/// How a following resolver (DNS, a Unix directory) turns the addresses it
/// found into a driver's endpoints: plainly, or behind TLS once the
/// application gave client settings. Each driver says how to make its own
/// endpoint from an address; handing out what was found is written once.
///
/// ```
/// use weft_driver::resolver::MakeEndpoint;
/// use weft_proto::NetEndpoint;
/// let names = MakeEndpoint::new(|e: NetEndpoint| e.to_string());
/// let found = ["tcp://127.0.0.1:7000".parse().unwrap()];
/// assert_eq!(names.all(found), vec!["tcp://127.0.0.1:7000".to_string()]);
/// ```
pub struct MakeEndpoint<T>(Box<dyn Fn(NetEndpoint) -> T + Send + Sync>);

impl<T> MakeEndpoint<T> {
    /// Makes each endpoint with `make`.
    pub fn new(make: impl Fn(NetEndpoint) -> T + Send + Sync + 'static) -> Self {
        MakeEndpoint(Box::new(make))
    }

    /// An endpoint for each address found, in order.
    pub fn all(&self, found: impl IntoIterator<Item = NetEndpoint>) -> Vec<T> {
        found.into_iter().map(&*self.0).collect()
    }
}

impl<T> std::fmt::Debug for MakeEndpoint<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MakeEndpoint")
    }
}
