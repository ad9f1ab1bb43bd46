//! weft-tests: cross-driver conformance and fault tests.
//!
//! The suites live in `tests/`; this library will hold the shared scenario
//! harness once both drivers exist.
//!
//! ```
//! assert!(weft_tests::SUITES.is_empty());
//! ```

/// Names of the conformance suites this crate runs.
pub const SUITES: &[&str] = &[];
