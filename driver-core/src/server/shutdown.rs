//! The trigger of a server's graceful shutdown, shared by both drivers.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Default [`ServerOptions::shutdown_grace`](super::ServerOptions::shutdown_grace).
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Tells a running server to shut down, gracefully or at once; clone it to
/// trigger from anywhere (a signal handler's thread, a test).
///
/// A graceful shutdown stops accepting, lets the requests already received
/// finish (what each connection does is
/// [`ServerConn::shutdown`](weft_proto::ServerConn::shutdown)'s), and at
/// the grace deadline cancels the handlers still running. Triggering again
/// can only bring the deadline closer: [`immediate`](Self::immediate) after
/// [`graceful`](Self::graceful) is the second Ctrl-C.
///
/// ```
/// use std::time::Duration;
/// use weft_driver::server::Shutdown;
/// let shutdown = Shutdown::new();
/// assert_eq!(shutdown.deadline(), None);
/// shutdown.graceful(Duration::from_secs(10));
/// let first = shutdown.deadline().unwrap();
/// shutdown.graceful(Duration::from_secs(60)); // never later
/// assert_eq!(shutdown.deadline(), Some(first));
/// shutdown.immediate();
/// assert!(shutdown.deadline().unwrap() < first);
/// ```
#[derive(Clone, Default)]
pub struct Shutdown(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    deadline: Option<Instant>,
    /// Bumped on every change of the deadline.
    generation: u64,
    /// Futures waiting for the next change.
    waiters: Vec<Waker>,
    /// Called on every change (an event loop's wakeup).
    listeners: Vec<Arc<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("Shutdown")
            .field("deadline", &s.deadline)
            .field("generation", &s.generation)
            .finish_non_exhaustive()
    }
}

impl Shutdown {
    /// A shutdown not yet triggered.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every write is whole under the lock: a poisoned lock is still good.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a graceful shutdown whose handlers get `grace` from now;
    /// `Duration::MAX` (or any grace past the clock's range) waits for
    /// them as long as the clock can say.
    pub fn graceful(&self, grace: Duration) {
        self.set(grace_deadline(Instant::now(), grace));
    }

    /// Stops at once: handlers still running are cancelled now.
    pub fn immediate(&self) {
        self.set(Instant::now());
    }

    fn set(&self, deadline: Instant) {
        let (waiters, listeners) = {
            let mut s = self.lock();
            if s.deadline.is_some_and(|d| d <= deadline) {
                return;
            }
            s.deadline = Some(deadline);
            s.generation += 1;
            (std::mem::take(&mut s.waiters), s.listeners.clone())
        };
        for w in waiters {
            w.wake();
        }
        for l in listeners {
            l();
        }
    }

    /// The grace deadline, once a shutdown was triggered.
    pub fn deadline(&self) -> Option<Instant> {
        self.lock().deadline
    }

    /// How many times the deadline changed: pass it to
    /// [`changed`](Self::changed).
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Completes with the new generation once the deadline changed after
    /// generation `seen`.
    pub fn changed(&self, seen: u64) -> Changed<'_> {
        Changed {
            shutdown: self,
            seen,
        }
    }

    /// Calls `f` on every change from now on (an event loop registers its
    /// wakeup). Meant for a handful of long-lived listeners.
    pub fn on_change(&self, f: impl Fn() + Send + Sync + 'static) {
        self.lock().listeners.push(Arc::new(f));
    }
}

/// The future of [`Shutdown::changed`].
#[derive(Debug)]
pub struct Changed<'a> {
    shutdown: &'a Shutdown,
    seen: u64,
}

impl Future for Changed<'_> {
    type Output = u64;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u64> {
        let mut s = self.shutdown.lock();
        if s.generation != self.seen {
            return Poll::Ready(s.generation);
        }
        if !s.waiters.iter().any(|w| w.will_wake(cx.waker())) {
            s.waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// When a graceful shutdown starting at `now` cancels what still runs:
/// `now + grace`, or for a grace past the clock's range the latest instant
/// it can say.
pub fn grace_deadline(now: Instant, grace: Duration) -> Instant {
    now.checked_add(grace).unwrap_or_else(|| latest_after(now))
}

/// The latest instant the clock can represent after `now`, within a
/// century: a grace that never runs out, without overflowing anyone's
/// arithmetic on it.
fn latest_after(now: Instant) -> Instant {
    let mut ahead = Duration::from_secs(100 * 365 * 24 * 60 * 60);
    loop {
        if let Some(t) = now.checked_add(ahead) {
            return t;
        }
        ahead /= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asked for an unbounded grace, handlers are not cancelled after the
    /// default's 10 s.
    #[test]
    fn an_unbounded_grace_is_not_cut_to_the_default() {
        let s = Shutdown::new();
        let now = Instant::now();
        s.graceful(Duration::MAX);
        let deadline = s.deadline().expect("triggered");
        assert!(deadline > now + Duration::from_secs(365 * 24 * 60 * 60));
    }
}
