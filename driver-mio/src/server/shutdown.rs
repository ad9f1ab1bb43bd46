//! Graceful shutdown of the mio server: the event loop hands the trigger
//! to every connection's core, which decides the rest.

use super::{Conns, Server, Shared};
use super::{STOP_WAIT, WATCHDOG_NAME};
use std::thread;
use std::time::Instant;
use weft_driver::server::Shutdown;

impl Server {
    /// Shuts down gracefully and waits until the server has stopped:
    /// accepting stops, clients that speak weft's protocol version 1 are
    /// told to go elsewhere (goaway), the requests already received run to
    /// completion, and after [`ServerOptions::shutdown_grace`](super::ServerOptions::shutdown_grace)
    /// the handlers still running are cancelled and their callers answered
    /// with a cancellation error. Then the server's threads are joined; a
    /// handler that ignores its cancellation gets one more second, then
    /// keeps its thread and finishes on its own (logged as a warning). A
    /// handler may shut down its own server. To stop at
    /// once, or to hurry a shutdown in progress from another thread, use
    /// [`shutdown_handle`](Self::shutdown_handle); dropping the server
    /// stops at once.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// use std::time::Duration;
    /// let mut handlers = weft_mio::HandlerMap::new();
    /// handlers.set("weft.Test", "Echo", |req: weft_mio::Request| Ok(req.args));
    /// let opts = weft_mio::ServerOptions {
    ///     shutdown_grace: Duration::from_secs(5),
    ///     ..Default::default()
    /// };
    /// let bind: weft_mio::NetEndpoint = "tcp://127.0.0.1:0".parse().expect("endpoint");
    /// let server = weft_mio::Server::bind(&bind, handlers, opts)?;
    /// // ... serve until told to stop, then drain for up to five seconds:
    /// server.shutdown();
    /// # Ok(())
    /// # }
    /// ```
    pub fn shutdown(self) {
        self.shared
            .shutdown
            .graceful(self.shared.opts.shutdown_grace);
        {
            let mut conns = self.shared.lock_conns();
            while !(conns.listener.is_none() && conns.by_token.is_empty()) {
                conns = self
                    .shared
                    .stopped
                    .wait(conns)
                    .expect("weft-mio server state poisoned");
            }
        }
        self.stop();
    }

    /// The trigger of this server's shutdown: [`Shutdown::graceful`] or
    /// [`Shutdown::immediate`] from any thread starts it (or hurries it);
    /// [`shutdown`](Self::shutdown) waits for it.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shared.shutdown.clone()
    }

    /// Stops at once: every connection closed, its handlers cancelled,
    /// the threads joined (within [`STOP_WAIT`] for handlers that ignore
    /// their cancellation).
    pub(super) fn stop(&self) {
        // Workers stop leading first: wake the leader out of poll and the
        // followers out of their wait; each sees the flag on its way out.
        self.shared.sched().shutdown = true;
        self.shared.cv.notify_all();
        let _ = self.shared.waker.wake();
        if let Some(w) = self.shared.watchdog.lock().expect("unpoisoned").as_ref() {
            w.unpark();
        }
        {
            let mut conns = self.shared.lock_conns();
            let now = Instant::now();
            conns.listener = None;
            for c in conns.by_token.values_mut() {
                c.core.close(now);
            }
            // Cancels every handler still running, so the joins below end.
            self.shared.process(&mut conns, now);
        }
        // Wait for the threads to leave, but not for ever: a handler that
        // ignores its cancellation keeps its thread, which then finishes on
        // its own (as a Tokio server's handler task would). A stop from
        // inside a handler does not wait for its own thread.
        let threads = std::mem::take(&mut *self.shared.threads.lock().expect("unpoisoned"));
        let me = thread::current().id();
        let own = threads.iter().any(|t| t.thread().id() == me);
        let all_left = {
            let s = self.shared.sched();
            let (s, waited) = self
                .shared
                .cv
                .wait_timeout_while(s, STOP_WAIT, |s| s.threads > usize::from(own))
                .expect("weft-mio scheduler poisoned");
            drop(s);
            !waited.timed_out()
        };
        let mut stuck = 0;
        for t in threads {
            if t.thread().id() == me {
                continue;
            }
            // The watchdog leaves at once once unparked; the workers have
            // left (or are just returning) unless the wait ran out.
            if all_left || t.is_finished() || t.thread().name() == Some(WATCHDOG_NAME) {
                let _ = t.join();
            } else {
                stuck += 1;
            }
        }
        if stuck > 0 {
            tracing::warn!(
                threads = stuck,
                "weft-mio server stopped with handlers still running: they ignored their cancellation"
            );
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.shared.sched().shutdown {
            self.stop();
        }
    }
}

impl Shared {
    /// Tells every connection of a shutdown triggered or hurried since the
    /// last turn; stops accepting.
    pub(super) fn apply_shutdown(&self, conns: &mut Conns, now: Instant) {
        let generation = self.shutdown.generation();
        if generation == conns.shutdown_seen {
            return;
        }
        conns.shutdown_seen = generation;
        let Some(deadline) = self.shutdown.deadline() else {
            return;
        };
        // Dropping the listener closes it (which also takes it out of the
        // poller): new connections are refused from now on.
        conns.listener = None;
        conns.accept_pending = false;
        for c in conns.by_token.values_mut() {
            c.core.shutdown(now, deadline);
        }
    }

    /// Wakes [`Server::shutdown`] once a shutdown has closed everything.
    pub(super) fn notify_if_stopped(&self, conns: &Conns) {
        if conns.listener.is_none() && conns.by_token.is_empty() {
            self.stopped.notify_all();
        }
    }
}
