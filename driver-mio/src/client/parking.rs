//! Where a client's parked callers sleep: one futex word per client, one
//! bit per caller thread, so the thread that polls wakes every caller its
//! turn answered with one system call.
//!
//! Unparking callers one at a time cost a context switch each on top of
//! the caller's own: the kernel runs a woken thread at once when it shares
//! the waker's core, so the polling thread was switched out after every
//! unpark and back in to make the next. Woken together, at the end of the
//! turn, they run one after another. (`FUTEX_WAKE_BITSET` wakes the waiters
//! of one word whose bit set meets the mask: threads past 32 share bits,
//! and a shared bit wakes its other owners for nothing, who look at their
//! results and sleep again.)
//!
//! Elsewhere than Linux each caller is unparked on its own, at once.

use std::sync::atomic::{AtomicU32, Ordering};

/// One client's parking lot.
pub(super) struct Lot {
    /// Bumped by every wake: a caller sleeps only if it has not moved
    /// since the caller read it, before it looked at its result.
    seq: AtomicU32,
    /// Bits of parked callers answered during the current turn.
    deferred: AtomicU32,
    /// Wake system calls made, for tests.
    #[cfg(test)]
    pub(super) wake_calls: AtomicU32,
}

impl Lot {
    pub(super) fn new() -> Lot {
        Lot {
            seq: AtomicU32::new(0),
            deferred: AtomicU32::new(0),
            #[cfg(test)]
            wake_calls: AtomicU32::new(0),
        }
    }

    /// What to pass to [`wait`](Self::wait): read before looking at the
    /// result, so that a wake after the look is not missed.
    pub(super) fn seq(&self) -> u32 {
        self.seq.load(Ordering::SeqCst)
    }

    /// Sleeps until a wake for `bit` after `seen`, or spuriously.
    pub(super) fn wait(&self, seen: u32, bit: u32) {
        sys::wait(&self.seq, seen, bit);
    }

    /// Moves the word: a caller that read it before and sleeps after does
    /// not sleep. Every wake moves it first, while the caller cannot yet
    /// have decided to sleep (its waker holds the caller's state).
    pub(super) fn bump(&self) {
        self.seq.fetch_add(1, Ordering::SeqCst);
    }

    /// Wakes the callers of `bits` now (moving the word again, for one
    /// whose waker had no state to hold).
    pub(super) fn wake(&self, bits: u32) {
        self.bump();
        #[cfg(test)]
        self.wake_calls.fetch_add(1, Ordering::SeqCst);
        sys::wake(&self.seq, bits);
    }

    /// Wakes the callers of `bits` at the end of the turn in progress.
    pub(super) fn defer(&self, bits: u32) {
        self.deferred.fetch_or(bits, Ordering::SeqCst);
    }

    /// Ends a turn: wakes everyone it deferred.
    pub(super) fn flush(&self) {
        let bits = self.deferred.swap(0, Ordering::SeqCst);
        if bits != 0 {
            self.wake(bits);
        }
    }
}

/// Whether wakes can be deferred and sent together.
pub(super) const BATCHED: bool = cfg!(target_os = "linux");

#[cfg(target_os = "linux")]
mod sys {
    use std::sync::atomic::AtomicU32;

    pub(super) fn wait(word: &AtomicU32, seen: u32, bit: u32) {
        // SAFETY: `word` is a live, aligned u32 for the whole call; the
        // kernel only reads it and compares it with `seen`. A null timeout
        // sleeps until woken; the result (woken, EAGAIN when the word
        // moved, EINTR) needs no handling: the caller looks again.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT_BITSET | libc::FUTEX_PRIVATE_FLAG,
                seen,
                std::ptr::null::<libc::timespec>(),
                std::ptr::null::<u32>(),
                bit,
            );
        }
    }

    pub(super) fn wake(word: &AtomicU32, bits: u32) {
        // SAFETY: as in `wait`; the kernel does not touch the word here,
        // it only finds the threads waiting on its address.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAKE_BITSET | libc::FUTEX_PRIVATE_FLAG,
                i32::MAX,
                std::ptr::null::<libc::timespec>(),
                std::ptr::null::<u32>(),
                bits,
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    use std::sync::atomic::{AtomicU32, Ordering};

    /// The caller's waker unparks its thread itself (`BATCHED` is false).
    pub(super) fn wait(word: &AtomicU32, seen: u32, _bit: u32) {
        if word.load(Ordering::SeqCst) == seen {
            std::thread::park();
        }
    }

    pub(super) fn wake(_: &AtomicU32, _: u32) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn a_caller_does_not_sleep_once_the_word_moved() {
        let lot = Lot::new();
        let seen = lot.seq();
        lot.bump();
        // Would sleep for good if it did not compare the word.
        lot.wait(seen, 1);
    }

    /// Callers answered in one turn are woken by one system call.
    #[cfg(target_os = "linux")]
    #[test]
    fn wakes_deferred_in_a_turn_go_together() {
        let lot = Arc::new(Lot::new());
        let seen = lot.seq();
        let sleepers: Vec<_> = [1u32, 2, 4]
            .into_iter()
            .map(|bit| {
                let lot = lot.clone();
                thread::spawn(move || {
                    while lot.seq() == seen {
                        lot.wait(seen, bit);
                    }
                })
            })
            .collect();
        for bit in [1, 2, 4] {
            lot.defer(bit);
        }
        lot.flush();
        for s in sleepers {
            s.join().unwrap();
        }
        assert_eq!(lot.wake_calls.load(Ordering::SeqCst), 1);
        // Nothing deferred: no call.
        lot.flush();
        assert_eq!(lot.wake_calls.load(Ordering::SeqCst), 1);
    }
}
