//! A panicking handler fails its own call and nothing else.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};
use weft_proto::{HandlerError, HandlerResult};

/// What the message of a panicked handler's error starts with.
pub const HANDLER_PANICKED: &str = "handler panicked";

/// The caller's error message for a handler that panicked with `payload`:
/// `handler panicked: <payload>` for a `&str` or `String` payload (what
/// `panic!` makes), `handler panicked: Box<dyn Any>` otherwise.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    format!("{HANDLER_PANICKED}: {}", panic_text(payload))
}

pub use weft_proto::panic_text;

/// The error a call gets when its handler panicked with `payload`.
pub fn panicked(payload: Box<dyn Any + Send>) -> HandlerError {
    let message = panic_message(&*payload);
    tracing::error!(%message, "handler panicked; its call fails, the connection goes on");
    // The payload's own drop could panic too; that must not escape either.
    let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
    HandlerError::new(message)
}

/// Runs `f`, turning a panic into the [`panicked`] error. For blocking
/// handlers, and for the call that makes an async handler's future.
pub fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, HandlerError> {
    // The handler owns its request and shares nothing with the driver but
    // the cancel token, whose state stays consistent across a panic.
    catch_unwind(AssertUnwindSafe(f)).map_err(panicked)
}

/// Polls a handler's future once, turning a panic into the [`panicked`]
/// error. Once it has panicked, drop the future: it must not be polled
/// again.
pub fn poll_catching<F>(fut: Pin<&mut F>, cx: &mut Context<'_>) -> Poll<HandlerResult>
where
    F: Future<Output = HandlerResult> + ?Sized,
{
    match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
        Ok(poll) => poll,
        Err(payload) => Poll::Ready(Err(panicked(payload))),
    }
}

/// A handler's future whose panic becomes its result (see
/// [`poll_catching`]).
#[derive(Debug)]
pub struct CatchPanic<F> {
    fut: Option<F>,
}

impl<F> CatchPanic<F> {
    /// Wraps `fut`.
    pub fn new(fut: F) -> Self {
        CatchPanic { fut: Some(fut) }
    }
}

impl<F: Future<Output = HandlerResult> + Unpin> Future for CatchPanic<F> {
    type Output = HandlerResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<HandlerResult> {
        let Some(fut) = self.fut.as_mut() else {
            return Poll::Ready(Err(HandlerError::new(format!(
                "{HANDLER_PANICKED}: polled after it finished"
            ))));
        };
        let poll = poll_catching(Pin::new(fut), cx);
        if poll.is_ready() {
            // Dropped here, so a panicking drop is caught too.
            let fut = self.fut.take();
            let _ = catch_unwind(AssertUnwindSafe(move || drop(fut)));
        }
        poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn message(r: HandlerResult) -> String {
        let err = r.expect_err("the handler panicked");
        // HandlerError shows its message through Debug only.
        format!("{err:?}")
    }

    #[test]
    fn the_payload_becomes_the_message() {
        assert_eq!(panic_message(&"boom"), "handler panicked: boom");
        assert_eq!(
            panic_message(&String::from("formatted 7")),
            "handler panicked: formatted 7"
        );
        assert_eq!(panic_message(&42u32), "handler panicked: Box<dyn Any>");
    }

    #[test]
    fn a_panic_in_a_blocking_handler_is_its_error() {
        let r = catch_panic(|| -> HandlerResult { panic!("sync {}", 1) }).and_then(|r| r);
        assert!(message(r).contains("handler panicked: sync 1"));
        let ok = catch_panic(|| -> HandlerResult { Ok(bytes::Bytes::from_static(b"x")) });
        assert_eq!(&ok.unwrap().unwrap()[..], b"x");
    }

    #[test]
    fn a_panic_in_a_future_is_its_result() {
        let mut cx = Context::from_waker(Waker::noop());
        let mut fut = CatchPanic::new(Box::pin(async {
            std::panic::panic_any(7u8);
        }));
        let Poll::Ready(r) = Pin::new(&mut fut).poll(&mut cx) else {
            panic!("a panic is a result");
        };
        assert!(message(r).contains("handler panicked: Box<dyn Any>"));
        // Polled again, it does not touch the dropped future.
        assert!(Pin::new(&mut fut).poll(&mut cx).is_ready());
    }
}
