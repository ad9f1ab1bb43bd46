//! The cancellation state of one request, observable by async and blocking
//! handlers alike.

use smallvec::SmallVec;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use weft_proto::CancelReason;

/// Set once when a request must stop; read by its handler.
///
/// Async handlers wait through [`Waker`]s and blocking handlers through a
/// [`Condvar`], so one type serves every runtime without depending on any.
/// Requests are rarely cancelled and rarely waited on by more than one
/// future, so an uncontended mutex is all the hot path pays.
#[derive(Debug, Default)]
pub(crate) struct CancelToken {
    state: Mutex<State>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct State {
    reason: Option<CancelReason>,
    /// Futures waiting, each under its own key so one polled again replaces
    /// its waker instead of piling up another (a handler in a `select!`
    /// loop polls the same future many times). One inline slot: a handler
    /// usually waits in one place.
    waiters: SmallVec<[(u64, Waker); 1]>,
    next_key: u64,
    /// Threads blocked in [`CancelToken::wait`]: the condvar is only
    /// notified when there are some, since a notify is a syscall.
    sleepers: usize,
}

impl CancelToken {
    /// Back to not cancelled, for reuse by another request; `&mut` proves
    /// nobody else can see the change.
    pub(crate) fn reset(&mut self) {
        let state = self
            .state
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *state = State::default();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A handler that panicked while holding the lock cannot leave the
        // state half-written (every write is one assignment), so a poisoned
        // lock is still good to read.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cancels with `reason` unless already cancelled; wakes every waiter.
    /// Returns whether this call set the reason (the first one wins).
    pub(crate) fn cancel(&self, reason: CancelReason) -> bool {
        let (waiters, sleepers) = {
            let mut s = self.lock();
            if s.reason.is_some() {
                return false;
            }
            s.reason = Some(reason);
            (std::mem::take(&mut s.waiters), s.sleepers)
        };
        // Woken after unlocking, so a waiter that runs at once does not
        // block on the lock we hold. Blocked threads recheck the reason
        // under the lock, so notifying after it loses no wakeup.
        if sleepers > 0 {
            self.cv.notify_all();
        }
        for (_, w) in waiters {
            w.wake();
        }
        true
    }

    /// Why the request was cancelled, if it was.
    pub(crate) fn reason(&self) -> Option<CancelReason> {
        self.lock().reason
    }

    /// Completes with the reason once the request is cancelled.
    pub(crate) fn cancelled(&self) -> Cancelled<'_> {
        Cancelled {
            token: self,
            key: None,
        }
    }

    /// Blocks until cancelled or until `timeout` passes; the reason if
    /// cancelled.
    pub(crate) fn wait(&self, timeout: Duration) -> Option<CancelReason> {
        let mut s = self.lock();
        if s.reason.is_some() || timeout.is_zero() {
            return s.reason;
        }
        s.sleepers += 1;
        let (mut s, _) = self
            .cv
            .wait_timeout_while(s, timeout, |s| s.reason.is_none())
            .unwrap_or_else(|e| e.into_inner());
        s.sleepers -= 1;
        s.reason
    }
}

/// The future of [`CancelToken::cancelled`].
#[derive(Debug)]
pub(crate) struct Cancelled<'a> {
    token: &'a CancelToken,
    /// Our entry in the waiter list, once registered.
    key: Option<u64>,
}

impl Future for Cancelled<'_> {
    type Output = CancelReason;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<CancelReason> {
        let mut s = self.token.lock();
        if let Some(reason) = s.reason {
            drop(s);
            // `cancel` took the waiter list; nothing is left to remove.
            self.key = None;
            return Poll::Ready(reason);
        }
        match self.key {
            Some(key) => {
                if let Some((_, w)) = s.waiters.iter_mut().find(|(k, _)| *k == key)
                    && !w.will_wake(cx.waker())
                {
                    w.clone_from(cx.waker());
                }
            }
            None => {
                let key = s.next_key;
                s.next_key += 1;
                s.waiters.push((key, cx.waker().clone()));
                drop(s);
                self.key = Some(key);
            }
        }
        Poll::Pending
    }
}

impl Drop for Cancelled<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.token.lock().waiters.retain(|(k, _)| *k != key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    use std::thread;
    use std::time::Instant;

    /// Unparks the test thread and counts wakes.
    struct ThreadWaker {
        thread: thread::Thread,
        wakes: AtomicUsize,
    }

    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.wakes.fetch_add(1, Ordering::SeqCst);
            self.thread.unpark();
        }
    }

    fn thread_waker() -> (Arc<ThreadWaker>, Waker) {
        let w = Arc::new(ThreadWaker {
            thread: thread::current(),
            wakes: AtomicUsize::new(0),
        });
        (w.clone(), Waker::from(w))
    }

    /// Far past anything the tests wait for: reaching it means a missed
    /// wakeup, and the test fails instead of hanging.
    const STUCK: Duration = Duration::from_secs(10);

    /// Polls `fut` on this thread until it completes, parking in between:
    /// a minimal executor, so the test needs no runtime. Panics if the
    /// future stays pending without waking its task.
    fn block_on<F: Future>(fut: F) -> F::Output {
        let (count, waker) = thread_waker();
        let mut cx = Context::from_waker(&waker);
        let mut fut = std::pin::pin!(fut);
        loop {
            let wakes = count.wakes.load(Ordering::SeqCst);
            if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                return out;
            }
            let stuck_at = Instant::now() + STUCK;
            while count.wakes.load(Ordering::SeqCst) == wakes {
                let left = stuck_at.saturating_duration_since(Instant::now());
                assert!(!left.is_zero(), "pending and never woken");
                thread::park_timeout(left);
            }
        }
    }

    #[test]
    fn cancelled_completes_when_another_thread_cancels() {
        let token = Arc::new(CancelToken::default());
        let t = token.clone();
        let canceller = thread::spawn(move || {
            // Cancels only once the future is registered, so the wake (not
            // an already-set reason) is what completes it.
            while t.lock().waiters.is_empty() {
                thread::yield_now();
            }
            t.cancel(CancelReason::Cancelled)
        });
        assert_eq!(block_on(token.cancelled()), CancelReason::Cancelled);
        assert!(canceller.join().unwrap());
        assert!(token.lock().waiters.is_empty());
    }

    #[test]
    fn cancel_wakes_the_registered_waker_once() {
        let token = CancelToken::default();
        let (count, waker) = thread_waker();
        let mut cx = Context::from_waker(&waker);
        let mut fut = std::pin::pin!(token.cancelled());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        // Polled again with the same waker: still one registration.
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert_eq!(token.lock().waiters.len(), 1);
        token.cancel(CancelReason::DeadlineExceeded);
        assert_eq!(count.wakes.load(Ordering::SeqCst), 1);
        assert_eq!(
            fut.as_mut().poll(&mut cx),
            Poll::Ready(CancelReason::DeadlineExceeded)
        );
    }

    #[test]
    fn a_dropped_future_leaves_no_waker_behind() {
        let token = CancelToken::default();
        let (_, waker) = thread_waker();
        let mut cx = Context::from_waker(&waker);
        {
            let mut fut = std::pin::pin!(token.cancelled());
            assert!(fut.as_mut().poll(&mut cx).is_pending());
        }
        assert!(token.lock().waiters.is_empty());
    }

    #[test]
    fn wait_returns_the_reason_from_another_thread() {
        let token = Arc::new(CancelToken::default());
        let t = token.clone();
        let canceller = thread::spawn(move || {
            // The waiter counts itself under the lock and releases it only
            // inside the condvar wait: seeing the count, it is asleep.
            while t.lock().sleepers == 0 {
                thread::yield_now();
            }
            t.cancel(CancelReason::ConnectionLost)
        });
        // Only the notify can end the wait before STUCK.
        let started = Instant::now();
        assert_eq!(token.wait(STUCK), Some(CancelReason::ConnectionLost));
        assert!(started.elapsed() < STUCK, "not notified");
        assert!(canceller.join().unwrap());
        assert_eq!(token.lock().sleepers, 0);
    }

    #[test]
    fn wait_times_out_without_a_cancel() {
        let token = CancelToken::default();
        assert_eq!(token.wait(Duration::from_millis(1)), None);
        assert_eq!(token.reason(), None);
    }

    #[test]
    fn cancel_is_set_once() {
        let token = CancelToken::default();
        assert!(token.cancel(CancelReason::DeadlineExceeded));
        assert!(!token.cancel(CancelReason::Cancelled));
        assert!(!token.cancel(CancelReason::ConnectionLost));
        assert_eq!(token.reason(), Some(CancelReason::DeadlineExceeded));
        assert_eq!(block_on(token.cancelled()), CancelReason::DeadlineExceeded);
        assert_eq!(
            token.wait(Duration::ZERO),
            Some(CancelReason::DeadlineExceeded)
        );
    }
}
