//! The component macro and the derives refuse what Service Weaver's
//! generator refuses, with a message that says what to write instead
//! (compile-fail tests; the expected messages are in `tests/ui/*.stderr`).

#[test]
fn macro_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/*.rs");
}
