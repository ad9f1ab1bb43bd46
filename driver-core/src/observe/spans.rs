//! The `weft.call` and `weft.handle` spans.

use super::ServerError;
use crate::server::PeerAddr;
use std::fmt;
use tracing::Span;
use tracing::field::{Empty, display};
use weft_proto::{CallError, MethodKey, TraceContext};

/// Bytes in lowercase hex, formatted only if a subscriber asks.
pub(crate) struct Hex<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// A method key in hex: how spans and labels name a method whose name the
/// caller did not give.
pub(crate) struct KeyHex<'a>(pub(crate) &'a MethodKey);

impl fmt::Display for KeyHex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Hex(&self.0.0).fmt(f)
    }
}

/// The span of one call on the client, a child of the caller's current
/// span, if a subscriber records it. Its fields are filled in as the call
/// goes.
#[inline]
pub(crate) fn call_span(key: &MethodKey, name: Option<&str>) -> Option<Span> {
    // One load when nothing listens at DEBUG: no span value is made,
    // moved or dropped.
    if !tracing::level_enabled!(tracing::Level::DEBUG) {
        return None;
    }
    let span = make_call_span(key, name);
    (!span.is_disabled()).then_some(span)
}

#[inline(never)]
fn make_call_span(key: &MethodKey, name: Option<&str>) -> Span {
    macro_rules! span {
        ($method:expr) => {
            tracing::debug_span!(
                "weft.call",
                method = $method,
                replica = Empty,
                attempts = Empty,
                outcome = Empty,
                error.kind = Empty,
                error = Empty,
                otel.kind = "client",
            )
        };
    }
    match name {
        Some(name) => span!(name),
        None => span!(display(KeyHex(key))),
    }
}

/// Records how a call ended on its span.
pub(crate) fn call_ended(span: &Span, result: &Result<bytes::Bytes, CallError>) {
    match result {
        Ok(_) => {
            span.record("outcome", "ok");
        }
        Err(e) => {
            span.record("outcome", "error");
            span.record("error.kind", e.kind());
            span.record("error", display(e));
        }
    }
}

/// The span of one request on the server. It has no local parent: the
/// caller is in another process, named by `trace`.
pub(crate) fn handle_span(
    name: &str,
    peer: Option<&PeerAddr>,
    trace: Option<&TraceContext>,
) -> Span {
    let span = tracing::debug_span!(
        parent: None,
        "weft.handle",
        method = name,
        peer = Empty,
        trace_id = Empty,
        parent_span_id = Empty,
        outcome = Empty,
        error.kind = Empty,
        otel.kind = "server",
    );
    if span.is_disabled() {
        return span;
    }
    if let Some(peer) = peer {
        span.record("peer", display(peer));
    }
    if let Some(t) = trace {
        span.record("trace_id", display(Hex(&t.trace_id)));
        span.record("parent_span_id", display(Hex(&t.span_id)));
    }
    #[cfg(feature = "opentelemetry")]
    crate::otel::set_remote_parent(&span, trace);
    span
}

/// Records how a request ended on its span.
pub(crate) fn handle_ended(span: &Span, outcome: Result<(), ServerError>) {
    match outcome {
        Ok(()) => {
            span.record("outcome", "ok");
        }
        Err(e) => {
            span.record("outcome", "error");
            span.record("error.kind", e.kind());
        }
    }
}
