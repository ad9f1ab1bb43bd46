//! OpenTelemetry's view of the trace context on the wire: the caller's
//! span becomes the handler's parent, across processes and languages.
//!
//! The wire carries what Go's `trace.SpanContext` holds (a 16-byte trace
//! id, an 8-byte span id, the flags), which is OpenTelemetry's span
//! context: a trace a Go Service Weaver client starts continues in a weft
//! server, and the other way round.

use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use weft_proto::TraceContext;

/// The context a call made inside `span` carries on the wire; `None`
/// when no OpenTelemetry layer gave the span ids.
pub(crate) fn context_of(span: &Span) -> Option<TraceContext> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| TraceContext {
        trace_id: sc.trace_id().to_bytes(),
        span_id: sc.span_id().to_bytes(),
        flags: sc.trace_flags().to_u8(),
    })
}

/// The context of the caller's current span, if it has one (an
/// OpenTelemetry layer records it).
pub(crate) fn current_context() -> Option<TraceContext> {
    let span = Span::current();
    if span.is_none() {
        return None;
    }
    context_of(&span)
}

/// The OpenTelemetry context naming the caller's span from `trace` as a
/// remote parent; empty without one.
pub(crate) fn remote_context(trace: Option<&TraceContext>) -> Context {
    let Some(t) = trace else {
        return Context::new();
    };
    let sc = SpanContext::new(
        TraceId::from_bytes(t.trace_id),
        SpanId::from_bytes(t.span_id),
        TraceFlags::new(t.flags),
        true,
        TraceState::default(),
    );
    if sc.is_valid() {
        Context::new().with_remote_span_context(sc)
    } else {
        Context::new()
    }
}

/// Makes the caller's span, named by the context that arrived on the
/// wire, the parent of `span`. Without one (or with an invalid one) the
/// span starts a new trace.
pub(crate) fn set_remote_parent(span: &Span, trace: Option<&TraceContext>) {
    let cx = remote_context(trace);
    if cx.has_active_span() {
        let _ = span.set_parent(cx);
    }
}
