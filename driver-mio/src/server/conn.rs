//! One connection of the mio server: reading it while it wants reading,
//! writing it while the socket takes bytes, with edge-triggered readiness.

use super::Handler;
use crate::stream::{Stream, read_once, write_once};
use mio::{Interest, Registry, Token};
use std::io;
use std::time::Instant;
use weft_driver::server::Dispatcher;
use weft_proto::ServerConn;

/// Reads of one connection per turn, so a client that keeps sending does
/// not keep the loop from the others.
const READS_PER_TURN: usize = 8;

pub(super) struct Conn {
    pub(super) stream: Stream,
    pub(super) core: ServerConn,
    pub(super) requests: Dispatcher<Handler>,
    /// The socket reported bytes (or an end) not yet read to `WouldBlock`:
    /// readiness is edge-triggered, so a connection left unread at its
    /// handler limit or its read budget is read later without a new event.
    pub(super) readable: bool,
    /// The socket reported a hang-up or an error: read it to the end, since
    /// a short read no longer proves that the next bytes bring an event.
    pub(super) closing: bool,
    /// A write would have blocked, so the socket is registered for
    /// writability until the queue is written out.
    pub(super) write_blocked: bool,
}

/// Reads `c` while it is readable, wants reading and has budget left,
/// taking the core's events after each read (so the handler limit counts
/// what just arrived). Returns whether it stopped for the budget alone.
pub(super) fn pump(
    c: &mut Conn,
    now: Instant,
    handlers: &weft_driver::server::HandlerMap<Handler>,
) -> bool {
    let mut reads = 0;
    loop {
        c.requests.handle_events(now, &mut c.core, handlers);
        if !c.readable || !c.requests.wants_read(&c.core) {
            return false;
        }
        if reads == READS_PER_TURN {
            return true;
        }
        reads += 1;
        let buf = c.core.read_buf(weft_driver::READ_SPARE);
        let spare = buf.capacity() - buf.len();
        match read_once(&mut c.stream, buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.readable = false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            read => {
                let drained = |n| !c.closing && c.stream.drained_by_short_read(spare, n);
                if !matches!(read, Ok(n) if n > 0 && !drained(n)) {
                    c.readable = false;
                }
                c.requests.on_read(now, &mut c.core, read);
            }
        }
    }
}

/// Shuts the socket's write half when the core closes gracefully (see
/// `ServerConn::wants_close_write`). Returns whether that changed
/// something the next turn acts on.
pub(super) fn close_write(c: &mut Conn, token: Token, registry: &Registry, now: Instant) -> bool {
    if !c.core.wants_close_write() {
        return false;
    }
    match c.stream.close_write() {
        Ok(()) => c.core.handle_write_closed(now),
        // The close_notify waits for the socket: its writability brings
        // the next try (the core gives up after its linger).
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            if c.write_blocked {
                return false;
            }
            let both = Interest::READABLE | Interest::WRITABLE;
            match registry.reregister(&mut c.stream, token, both) {
                Ok(()) => {
                    c.write_blocked = true;
                    return false;
                }
                Err(e) => c
                    .core
                    .handle_transport_closed(now, format!("registering for writes: {e}")),
            }
        }
        Err(e) => c
            .core
            .handle_transport_closed(now, format!("shutting down writes: {e}")),
    }
    true
}

/// Writes what the core has queued until the socket takes no more, and
/// tells the core whether the stream still holds some (TLS records): a
/// failed connection is not finished while it does. Returns whether
/// writing failed (the core's failure is then taken next turn).
pub(super) fn flush_conn(c: &mut Conn, token: Token, registry: &Registry, now: Instant) -> bool {
    let failed = write_conn(c, token, registry, now);
    c.core
        .handle_output_held(now, c.stream.has_pending_output());
    failed
}

fn write_conn(c: &mut Conn, token: Token, registry: &Registry, now: Instant) -> bool {
    while !c.core.transmit().is_empty() || c.stream.has_pending_output() {
        match write_once(&mut c.stream, c.core.transmit()) {
            Ok(n) => c.core.advance_transmit(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if c.write_blocked {
                    return false;
                }
                // Re-registering reports readiness as it is now, so room
                // made since the write failed is not missed.
                let both = Interest::READABLE | Interest::WRITABLE;
                return match registry.reregister(&mut c.stream, token, both) {
                    Ok(()) => {
                        c.write_blocked = true;
                        false
                    }
                    Err(e) => {
                        c.core
                            .handle_transport_closed(now, format!("registering for writes: {e}"));
                        true
                    }
                };
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                c.core.handle_transport_closed(now, format!("write: {e}"));
                return true;
            }
        }
    }
    if c.write_blocked
        && registry
            .reregister(&mut c.stream, token, Interest::READABLE)
            .is_ok()
    {
        c.write_blocked = false;
    }
    false
}
