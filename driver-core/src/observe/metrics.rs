//! Per-method metric handles, registered once and updated per call.

use metrics::{Counter, Gauge, Histogram, Label, SharedString};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;
use std::time::Duration;
use weft_proto::{MethodKey, ReplicaState};

/// The handles of one method on one side. Error counters are registered
/// on a method's first error of each kind.
pub(crate) struct MethodMetrics {
    side: Side,
    /// A recorder was installed when the handles were made: without one
    /// they are no-ops, and the per-call bookkeeping is skipped.
    live: bool,
    labels: [Label; 2],
    calls: Counter,
    latency: Histogram,
    request_bytes: Counter,
    response_bytes: Counter,
    in_flight: Gauge,
    errors: [OnceLock<Counter>; KINDS.len()],
}

#[derive(Clone, Copy)]
enum Side {
    Client,
    Server,
}

/// Every error kind either side reports, in one table so that each has a
/// slot for its counter.
const KINDS: [&str; 11] = [
    "remote",
    "deadline_exceeded",
    "cancelled",
    "communication",
    "too_large",
    "unreachable",
    "unprocessed",
    "balancer",
    "error",
    "overloaded",
    "other",
];

/// How a request failed on the server.
#[derive(Clone, Copy)]
pub(crate) enum ServerError {
    /// The handler returned an error (or panicked).
    Error,
    /// The handler stopped because the request was cancelled.
    Cancelled,
    /// Refused for lack of room.
    Overloaded,
}

impl ServerError {
    pub(crate) fn kind(self) -> &'static str {
        match self {
            ServerError::Error => "error",
            ServerError::Cancelled => "cancelled",
            ServerError::Overloaded => "overloaded",
        }
    }
}

/// Whether a recorder other than the metrics facade's no-op fallback is
/// installed (globally, or locally for this thread). The facade has no
/// query for it; its fallback, `NoopRecorder`, is the one recorder with no
/// state, so zero-sized. (A zero-sized recorder of one's own that forwards
/// to a static is taken for no recorder: weft's metrics skip it.)
pub(crate) fn recorder_installed() -> bool {
    metrics::with_recorder(|r| std::mem::size_of_val(r) != 0)
}

impl MethodMetrics {
    fn new(side: Side, name: &str) -> Self {
        // Go component names contain dots (`github.com/acme/shop/Cart`):
        // the method is what follows the last one.
        let (component, method) = name.rsplit_once('.').unwrap_or(("", name));
        let labels = [
            Label::new("component", SharedString::from(component.to_owned())),
            Label::new("method", SharedString::from(method.to_owned())),
        ];
        let names = match side {
            Side::Client => [
                "weft_client_calls_total",
                "weft_client_latency_seconds",
                "weft_client_request_bytes_total",
                "weft_client_response_bytes_total",
                "weft_client_in_flight",
            ],
            Side::Server => [
                "weft_server_requests_total",
                "weft_server_latency_seconds",
                "weft_server_request_bytes_total",
                "weft_server_response_bytes_total",
                "weft_server_in_flight",
            ],
        };
        MethodMetrics {
            side,
            live: recorder_installed(),
            calls: metrics::counter!(names[0], labels.to_vec()),
            latency: metrics::histogram!(names[1], labels.to_vec()),
            request_bytes: metrics::counter!(names[2], labels.to_vec()),
            response_bytes: metrics::counter!(names[3], labels.to_vec()),
            in_flight: metrics::gauge!(names[4], labels.to_vec()),
            labels,
            errors: Default::default(),
        }
    }

    /// Whether anything records these metrics.
    pub(crate) fn is_live(&self) -> bool {
        self.live
    }

    /// A call started with `request_bytes` of arguments.
    pub(crate) fn started(&self, request_bytes: usize) {
        if !self.live {
            return;
        }
        self.in_flight.increment(1.0);
        self.request_bytes.increment(request_bytes as u64);
    }

    /// A call ended after `elapsed`: with `response_bytes`, or failed with
    /// an error of `kind`.
    pub(crate) fn ended(&self, elapsed: Duration, outcome: Result<usize, &'static str>) {
        if !self.live {
            return;
        }
        self.in_flight.decrement(1.0);
        self.calls.increment(1);
        self.latency.record(elapsed.as_secs_f64());
        match outcome {
            Ok(bytes) => self.response_bytes.increment(bytes as u64),
            Err(kind) => self.error_counter(kind).increment(1),
        }
    }

    fn error_counter(&self, kind: &'static str) -> &Counter {
        let slot = KINDS
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(KINDS.len() - 1);
        self.errors[slot].get_or_init(|| {
            let name = match self.side {
                Side::Client => "weft_client_errors_total",
                Side::Server => "weft_server_errors_total",
            };
            let mut labels = self.labels.to_vec();
            labels.push(Label::new("kind", KINDS[slot]));
            metrics::counter!(name, labels)
        })
    }
}

/// The server's handles for the method `name` (`component.method`).
pub(crate) fn server_method(name: &str) -> MethodMetrics {
    MethodMetrics::new(Side::Server, name)
}

/// The client's handles for a method, named as [`CallOptions::method_name`]
/// says or by its key.
///
/// [`CallOptions::method_name`]: weft_proto::CallOptions::method_name
pub(crate) fn client_method(key: &MethodKey, name: Option<&str>) -> MethodMetrics {
    match name {
        Some(name) => MethodMetrics::new(Side::Client, name),
        None => MethodMetrics::new(Side::Client, &super::KeyHex(key).to_string()),
    }
}

/// Method keys are SHA-256 prefixes: their first eight bytes are hash
/// enough.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // A key hashes as its 16 bytes after their length.
        if let Some(head) = bytes.first_chunk::<8>() {
            self.0 ^= u64::from_le_bytes(*head);
        }
    }

    fn write_usize(&mut self, _len: usize) {}
}

/// A client's handles by method.
pub(crate) type ClientMethods = HashMap<MethodKey, u32, BuildHasherDefault<KeyHasher>>;

/// One client's share of the `weft_client_replicas` gauges: it adds the
/// difference each time its counts change, so clients in one process sum.
pub(crate) struct ReplicaGauges {
    gauges: [Gauge; 3],
    counts: [usize; 3],
}

impl ReplicaGauges {
    pub(crate) fn new() -> Self {
        let g = |state: &'static str| metrics::gauge!("weft_client_replicas", "state" => state);
        ReplicaGauges {
            gauges: [g("connecting"), g("ready"), g("draining")],
            counts: [0; 3],
        }
    }

    /// Sets this client's counts from its replicas' states.
    pub(crate) fn update(&mut self, states: impl Iterator<Item = ReplicaState>) {
        let mut counts = [0usize; 3];
        for state in states {
            let i = match state {
                ReplicaState::Disconnected | ReplicaState::Checking => 0,
                ReplicaState::Idle | ReplicaState::Active => 1,
                ReplicaState::Draining => 2,
                ReplicaState::Missing => continue,
            };
            counts[i] += 1;
        }
        for ((gauge, new), old) in self.gauges.iter().zip(counts).zip(self.counts) {
            if new != old {
                gauge.increment(new as f64 - old as f64);
            }
        }
        self.counts = counts;
    }
}

impl Drop for ReplicaGauges {
    fn drop(&mut self) {
        self.update(std::iter::empty());
    }
}
