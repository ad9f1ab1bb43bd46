//! Spans and metrics for every call, written once for both drivers.
//!
//! **Spans** (through `tracing`, at `DEBUG`):
//!
//! - `weft.call`, one per call on the client, a child of the caller's
//!   current span: `method` (the `component.method` name given in
//!   [`CallOptions::method_name`](weft_proto::CallOptions::method_name), else
//!   the method key in hex), `replica` (the address of the last replica the
//!   call was sent to), `attempts`, `outcome` (`ok` or `error`),
//!   `error.kind` ([`CallError::kind`](weft_proto::CallError::kind)) and
//!   `error`.
//! - `weft.handle`, one per request on the server: `method`, `peer`,
//!   `trace_id` and `parent_span_id` (from the trace context on the wire),
//!   `outcome`, `error.kind` (`error`, `cancelled`, `overloaded`). The
//!   handler runs inside it. It has no local parent; with the
//!   `opentelemetry` feature its parent is the caller's span.
//!
//! **Metrics** (through the `metrics` facade), labelled by `component`
//! and `method`:
//!
//! | name | kind | what |
//! | --- | --- | --- |
//! | `weft_client_calls_total`, `weft_server_requests_total` | counter | calls ended |
//! | `weft_client_errors_total`, `weft_server_errors_total` | counter | failed ones, also labelled by `kind` |
//! | `weft_client_latency_seconds`, `weft_server_latency_seconds` | histogram | start to end |
//! | `weft_client_request_bytes_total`, `weft_server_request_bytes_total` | counter | argument bytes |
//! | `weft_client_response_bytes_total`, `weft_server_response_bytes_total` | counter | result bytes |
//! | `weft_client_in_flight`, `weft_server_in_flight` | gauge | calls started, not ended |
//!
//! and on the client `weft_client_replicas` (gauge, labelled by `state`:
//! `connecting`, `ready`, `draining`), summed over the process's clients.
//!
//! Install the recorder before making clients and servers: a client looks
//! once, when it is made, and without a recorder skips the per-method
//! bookkeeping altogether; handles are registered the first time a method
//! is used. With no subscriber and no recorder each costs a few branches
//! per call and allocates nothing.

mod metrics;
mod spans;

pub(crate) use metrics::{
    ClientMethods, MethodMetrics, ReplicaGauges, ServerError, client_method, recorder_installed,
    server_method,
};
pub(crate) use spans::{KeyHex, call_ended, call_span, handle_ended, handle_span};
