//! Library side of the `weft` command: the built-in test service both
//! drivers serve, shared with the cross-driver conformance tests.
//!
//! ```
//! let svc = weft_cli::service::Service::new("a");
//! let _tokio = weft_cli::service::tokio_handlers(&svc);
//! let _mio = weft_cli::service::mio_handlers(&svc);
//! assert_eq!(svc.cancel_count(), 0);
//! ```

pub mod service;
