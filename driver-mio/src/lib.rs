//! weft-mio: an event-loop client and server for weft on mio.
//!
//! Not built yet: this crate will drive `weft_proto`'s state machines on a
//! mio event loop with a blocking API for callers. For now it only re-exports
//! the protocol core.
//!
//! ```
//! let key = weft_mio::proto::MethodKey::new("weft.Test", "Echo");
//! assert_eq!(key.to_string().len(), 32);
//! ```

pub use weft_proto as proto;
