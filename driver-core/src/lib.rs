//! weft-driver: what weft's drivers share.
//!
//! `weft-proto` decides everything on the wire; a driver moves bytes and
//! time. Between the two sits glue that does not depend on the runtime:
//! result slots and wakers for callers, which connection a command goes to,
//! the handler table and how a request reaches its handler. It lives here
//! once, and `weft-tokio` and `weft-mio` keep only their event loops and
//! their public API. Applications never depend on this crate directly; the
//! drivers re-export what users need.
//!
//! The drivers plug in through [`Transport`] (read and write one stream,
//! readiness reported the way `std::task` does) and, on the client, a small
//! runtime trait for what must be spawned (dials, resolves, connection
//! loops, the timer).
#![forbid(unsafe_code)]

pub mod server;
mod transport;

pub use transport::{READ_SPARE, Transport};

pub mod client;
pub mod component;
#[cfg(feature = "dns")]
pub mod dns;
pub mod observe;
#[cfg(feature = "opentelemetry")]
mod otel;
pub mod resolver;
pub mod tcp;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(unix)]
pub mod unixdir;

/// A fresh 64-bit seed from the OS's randomness (via `RandomState`): for a
/// pool's RNG and for keying each server connection's request table.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(0u64)
}
