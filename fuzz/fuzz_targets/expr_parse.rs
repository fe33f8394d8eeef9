//! The expression parser never panics, and whatever it accepts prints back to the same tree.
//!
//! `cargo fuzz run expr_parse` (from `fuzz/`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portrait_engine::expr::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(expr) = parse(text) {
        expr.check().expect("parsed trees satisfy the AST invariants");
        let printed = expr.to_string();
        assert_eq!(parse(&printed).as_ref(), Ok(&expr), "print/parse round trip of {text:?}");
    }
});
