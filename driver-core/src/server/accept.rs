//! What a listener does when `accept` fails.

use std::io;
use std::time::Duration;

/// The first pause after the process ran out of a resource.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// The longest pause: how long at most a freed descriptor waits to be used.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What to do after a failed `accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptFailure {
    /// One connection failed (aborted before it was accepted, a signal):
    /// accept the next at once.
    Transient,
    /// The process or the system is out of descriptors or memory: accept
    /// nothing for this long, then try again whether or not the listener
    /// reports new connections (those already waiting report nothing).
    Exhausted(Duration),
    /// The listener itself is broken.
    Fatal,
}

/// The accept loop's backoff: from 5 ms, doubling up to 1 s while `accept`
/// keeps failing for want of descriptors or memory, and back to 5 ms after
/// a connection is accepted. A loop that retried at once would spin a core
/// while nothing can change; one that waited for the listener's next event
/// would never serve the connections already queued.
#[derive(Debug, Clone)]
pub struct AcceptBackoff {
    next: Duration,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        AcceptBackoff {
            next: ACCEPT_BACKOFF_MIN,
        }
    }
}

impl AcceptBackoff {
    /// A loop that has not failed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A connection was accepted: the next exhaustion starts from the
    /// shortest pause again.
    pub fn on_success(&mut self) {
        self.next = ACCEPT_BACKOFF_MIN;
    }

    /// Classifies a failed `accept` and, for exhaustion, returns the pause
    /// and doubles the next one. Logs once per pause (a warning) or per
    /// fatal error.
    pub fn on_error(&mut self, e: &io::Error) -> AcceptFailure {
        if is_resource_exhaustion(e) {
            let pause = self.next;
            self.next = (self.next * 2).min(ACCEPT_BACKOFF_MAX);
            tracing::warn!(error = %e, ?pause, "accept failed for want of resources; pausing accepts");
            return AcceptFailure::Exhausted(pause);
        }
        if is_transient(e) {
            tracing::debug!(error = %e, "accept failed; continuing");
            return AcceptFailure::Transient;
        }
        tracing::error!(error = %e, "accept failed");
        AcceptFailure::Fatal
    }
}

// errno values: the same on every platform for these three...
const ENOMEM: i32 = 12;
const ENFILE: i32 = 23;
const EMFILE: i32 = 24;
// ... and not for this one.
#[cfg(any(target_os = "linux", target_os = "android"))]
const ENOBUFS: i32 = 105;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const ENOBUFS: i32 = 55;
#[cfg(any(target_os = "linux", target_os = "android"))]
const EPROTO: i32 = 71;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const EPROTO: i32 = 100;

/// EMFILE, ENFILE, ENOBUFS, ENOMEM: `accept` cannot succeed until
/// something else closes a descriptor or frees memory.
pub fn is_resource_exhaustion(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::OutOfMemory
        || matches!(e.raw_os_error(), Some(ENOMEM | ENFILE | EMFILE | ENOBUFS))
}

/// One connection's failure, not the listener's: the next `accept` may
/// succeed. Besides a connection aborted before it was accepted and a
/// signal, Linux's `accept(2)` passes on network errors already pending on
/// the new connection (retry "as for EAGAIN", it says), and `EPERM` when a
/// firewall rule forbids that one connection.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
            | io::ErrorKind::NetworkDown
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::HostUnreachable
    ) || matches!(e.raw_os_error(), Some(code) if PENDING_NETWORK_ERRORS.contains(&code))
}

/// `accept(2)`'s pending network errors with no `io::ErrorKind` of their
/// own, and `EPERM` (whose kind, `PermissionDenied`, `EACCES` shares).
#[cfg(any(target_os = "linux", target_os = "android"))]
const PENDING_NETWORK_ERRORS: &[i32] = {
    const EPERM: i32 = 1;
    const ENONET: i32 = 64;
    const ENOPROTOOPT: i32 = 92;
    const EOPNOTSUPP: i32 = 95;
    const EHOSTDOWN: i32 = 112;
    &[EPROTO, EPERM, ENONET, ENOPROTOOPT, EOPNOTSUPP, EHOSTDOWN]
};
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const PENDING_NETWORK_ERRORS: &[i32] = &[EPROTO];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exhaustion_backs_off_doubling_to_a_second() {
        let mut b = AcceptBackoff::new();
        let emfile = io::Error::from_raw_os_error(EMFILE);
        let pauses: Vec<_> = (0..10)
            .map(|_| match b.on_error(&emfile) {
                AcceptFailure::Exhausted(d) => d.as_millis(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(pauses, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.on_success();
        let enobufs = io::Error::from_raw_os_error(ENOBUFS);
        assert_eq!(
            b.on_error(&enobufs),
            AcceptFailure::Exhausted(ACCEPT_BACKOFF_MIN)
        );
    }

    #[test]
    fn every_exhaustion_errno_backs_off() {
        for errno in [ENOMEM, ENFILE, EMFILE, ENOBUFS] {
            assert!(is_resource_exhaustion(&io::Error::from_raw_os_error(errno)));
        }
        assert!(!is_resource_exhaustion(&io::Error::from(
            io::ErrorKind::ConnectionAborted
        )));
    }

    /// What `accept(2)` on Linux says to retry: one connection's network
    /// trouble, which must not stop (Tokio) or stall (mio) the listener.
    #[cfg(target_os = "linux")]
    #[test]
    fn network_errors_pending_on_one_connection_are_skipped() {
        let mut b = AcceptBackoff::new();
        // ENETDOWN, ENOPROTOOPT, EHOSTDOWN, ENONET, EHOSTUNREACH,
        // EOPNOTSUPP, ENETUNREACH, EPERM, EPROTO.
        for errno in [100, 92, 112, 64, 113, 95, 101, 1, 71] {
            let e = io::Error::from_raw_os_error(errno);
            assert_eq!(b.on_error(&e), AcceptFailure::Transient, "{e}");
        }
        // EBADF, EINVAL: the listener itself.
        for errno in [9, 22] {
            let e = io::Error::from_raw_os_error(errno);
            assert_eq!(b.on_error(&e), AcceptFailure::Fatal, "{e}");
        }
    }

    #[test]
    fn a_dropped_connection_is_skipped_and_anything_else_is_fatal() {
        let mut b = AcceptBackoff::new();
        let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(b.on_error(&aborted), AcceptFailure::Transient);
        let bad = io::Error::from(io::ErrorKind::InvalidInput);
        assert_eq!(b.on_error(&bad), AcceptFailure::Fatal);
    }
}
