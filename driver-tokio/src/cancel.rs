//! Cancellation signals for server handlers.

use std::sync::Mutex;
use tokio::sync::Notify;
use weft_proto::CancelReason;

/// Set once when a request must stop; observed by its handler.
#[derive(Debug, Default)]
pub(crate) struct CancelSignal {
    reason: Mutex<Option<CancelReason>>,
    notify: Notify,
}

impl CancelSignal {
    pub(crate) fn cancel(&self, reason: CancelReason) {
        let mut r = self.reason.lock().expect("unpoisoned");
        if r.is_none() {
            *r = Some(reason);
            drop(r);
            self.notify.notify_waiters();
        }
    }

    pub(crate) fn reason(&self) -> Option<CancelReason> {
        *self.reason.lock().expect("unpoisoned")
    }

    pub(crate) async fn cancelled(&self) -> CancelReason {
        loop {
            let notified = self.notify.notified();
            if let Some(r) = self.reason() {
                return r;
            }
            notified.await;
        }
    }
}
