//! The handler table, generic over what a handler is.

use crate::observe::{MethodMetrics, server_method};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};
use weft_proto::MethodKey;

/// Handlers by method, for any handler type `H`.
///
/// Each driver fixes `H` (an async handler returning a future, a blocking
/// one returning the result) and wraps this map with its own `set`; the
/// key, the `component.method` name each [`Request`](super::Request)
/// carries, and the lookup are the same for both.
pub struct HandlerMap<H: ?Sized> {
    map: HashMap<MethodKey, Entry<H>>,
}

/// One method: its name, shared by every request for it, its handler, and
/// its metric handles (registered on its first request, shared by clones
/// of the map).
pub(crate) struct Entry<H: ?Sized> {
    pub(crate) name: Arc<str>,
    pub(crate) handler: Arc<H>,
    metrics: Arc<OnceLock<Arc<MethodMetrics>>>,
}

impl<H: ?Sized> Entry<H> {
    pub(crate) fn metrics(&self) -> &Arc<MethodMetrics> {
        self.metrics
            .get_or_init(|| Arc::new(server_method(&self.name)))
    }
}

impl<H: ?Sized> Clone for Entry<H> {
    fn clone(&self) -> Self {
        Entry {
            name: self.name.clone(),
            handler: self.handler.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

impl<H: ?Sized> HandlerMap<H> {
    /// An empty map.
    pub fn new() -> Self {
        HandlerMap {
            map: HashMap::new(),
        }
    }

    /// Serves `component.method` with `handler`, replacing any handler it
    /// had.
    pub fn insert(&mut self, component: &str, method: &str, handler: Arc<H>) {
        let name: Arc<str> = format!("{component}.{method}").into();
        let entry = Entry {
            name,
            handler,
            metrics: Arc::default(),
        };
        self.map.insert(MethodKey::new(component, method), entry);
    }

    /// The `component.method` name and handler for `key`.
    pub fn get(&self, key: &MethodKey) -> Option<(&Arc<str>, &Arc<H>)> {
        self.map.get(key).map(|e| (&e.name, &e.handler))
    }

    pub(crate) fn entry(&self, key: &MethodKey) -> Option<&Entry<H>> {
        self.map.get(key)
    }
}

// By hand: deriving would demand `H: Clone`/`Default`/`Debug`, which
// closures behind `dyn Fn` are not; only the `Arc`s are cloned.
impl<H: ?Sized> Clone for HandlerMap<H> {
    fn clone(&self) -> Self {
        HandlerMap {
            map: self.map.clone(),
        }
    }
}

impl<H: ?Sized> Default for HandlerMap<H> {
    fn default() -> Self {
        Self::new()
    }
}

impl<H: ?Sized> fmt::Debug for HandlerMap<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.map.values().map(|e| &e.name))
            .finish()
    }
}
