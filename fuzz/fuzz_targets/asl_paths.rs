//! Feeds arbitrary text to the JSONPath, reference-path, intrinsic-function and JSONata
//! parsers, and evaluates whatever parses: none of them may panic.
//! Run: `cargo +nightly fuzz run asl_paths` (the same checks run on stable as the proptest
//! `crates/asl/tests/expr_fuzz.rs`).
#![no_main]

use asl::intrinsics::IntrinsicCall;
use asl::jsonata::Expression;
use asl::jsonpath::{EvalContext, JsonPath, ReferencePath, SplitMix64};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let input = json!({"a": [1, {"b": "x"}], "s": "str", "n": 3});
    let context = json!({"Execution": {"Name": "e"}});
    let vars = serde_json::Map::new();
    let mut entropy = SplitMix64(0);
    let mut ctx = EvalContext::new(&input, &context, &vars, &mut entropy);
    if let Ok(p) = JsonPath::parse(text) {
        let _ = p.select(&ctx);
        // Round trip: a definite path's normalized form (`$['a'][0]`) selects the same node.
        if p.is_definite() && !p.as_str().contains(['\'', '"', '\\']) {
            let again = JsonPath::parse(&p.normalized()).expect("normalized path parses");
            assert_eq!(again.select(&ctx), p.select(&ctx));
        }
    }
    if let Ok(r) = ReferencePath::parse(text) {
        let _ = r.set(input.clone(), json!(1));
    }
    if let Ok(c) = IntrinsicCall::parse(text) {
        let _ = c.evaluate(&mut ctx, "f.$");
    }
    if let Ok(e) = Expression::parse(text) {
        let _ = e.evaluate(&mut ctx);
    }
});
