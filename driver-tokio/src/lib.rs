//! weft-tokio: the async client and server for weft on Tokio.
//!
//! Not built yet: this crate will drive `weft_proto`'s state machines over
//! Tokio sockets. For now it only re-exports the protocol core.
//!
//! ```
//! let key = weft_tokio::proto::MethodKey::new("weft.Test", "Echo");
//! assert_eq!(key.to_string().len(), 32);
//! ```

pub use weft_proto as proto;
