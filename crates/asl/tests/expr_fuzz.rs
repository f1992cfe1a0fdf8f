//! The expression parsers never panic, whatever the text (the proptest twin of the cargo-fuzz
//! target `fuzz/fuzz_targets/asl_paths.rs`, so CI exercises it on stable).

use asl::choice::ChoiceRule;
use asl::intrinsics::IntrinsicCall;
use asl::jsonpath::{EvalContext, JsonPath, ReferencePath, SplitMix64};
use asl::template::PayloadExpr;
use jsonata::Expression;
use proptest::prelude::*;
use serde_json::json;

/// Parses `text` with every parser and evaluates whatever parses against a small input.
fn exercise(text: &str) {
    let input = json!({"a": [1, {"b": "x"}], "s": "str", "n": 3});
    let context = json!({"Execution": {"Name": "e"}});
    let vars = serde_json::Map::new();
    let mut entropy = SplitMix64(0);
    let mut ctx = EvalContext::new(&input, &context, &vars, &mut entropy);
    if let Ok(p) = JsonPath::parse(text) {
        let _ = p.select(&ctx);
        let _ = p.normalized();
    }
    if let Ok(r) = ReferencePath::parse(text) {
        let _ = r.set(input.clone(), json!(1));
    }
    if let Ok(c) = IntrinsicCall::parse(text) {
        let _ = c.evaluate(&mut ctx, "f.$");
    }
    if let Ok(e) = PayloadExpr::parse(text) {
        let _ = e.evaluate(&mut ctx, "f.$");
    }
    if let Ok(e) = Expression::parse(text) {
        let _ = e.evaluate(&mut ctx);
    }
    let _ = ChoiceRule::parse(
        &json!({"Variable": text, "StringMatches": text, "Next": "x"}),
        "",
        true,
    );
}

/// Fragments that make random strings look like the real syntaxes, so the generator reaches
/// deep into the parsers instead of failing on the first character.
const FRAGMENTS: &[&str] = &[
    "$",
    "$$",
    ".",
    "..",
    "[",
    "]",
    "*",
    "?(",
    "@",
    ")",
    "(",
    "'",
    "\"",
    ",",
    ":",
    "-1",
    "0",
    "12",
    "1.5",
    "a",
    "b",
    "States.",
    "Format",
    "Array",
    "ArrayRange",
    "MathAdd",
    "StringSplit",
    "JsonMerge",
    "Hash",
    "UUID",
    " ",
    "&&",
    "||",
    "==",
    "<",
    "!",
    "{%",
    "%}",
    "$states",
    "input",
    "function",
    "{",
    "}",
    ";",
    ":=",
    "~>",
    "$map",
    "$reduce",
    "$range",
    "$partition",
    "true",
    "null",
    "\\",
    "in",
    "and",
    "or",
    "?",
    "^(",
    "**",
    "/*",
    "*/",
    "`",
];

fn fragments() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn parsers_never_panic_on_arbitrary_text(text in "\\PC{0,40}") {
        exercise(&text);
    }

    #[test]
    fn parsers_never_panic_on_syntax_like_text(text in fragments()) {
        exercise(&text);
    }

    /// A definite path and its normalized form (`$['a'][0]`, as AWS prints it in errors)
    /// select the same node.
    #[test]
    fn normalized_paths_round_trip(
        steps in prop::collection::vec(
            prop_oneof![
                "[a-z][a-z0-9_-]{0,6}".prop_map(|n| format!(".{n}")),
                "[A-Za-z .]{1,6}".prop_map(|n| format!("['{n}']")),
                (-3i64..4).prop_map(|i| format!("[{i}]")),
            ],
            0..6,
        )
    ) {
        let text = format!("${}", steps.concat());
        let doc = json!({"a": [{"b": 1}, [2, 3], {"c d": {"e": [4]}}], "b-c": {"x": null}});
        let p = JsonPath::parse(&text).unwrap();
        prop_assert!(p.is_definite());
        let again = JsonPath::parse(&p.normalized()).unwrap();
        prop_assert_eq!(again.select_in(&doc), p.select_in(&doc));
    }
}

#[test]
fn known_tricky_inputs() {
    for text in [
        "$[",
        "$['",
        "$[?(",
        "$..",
        "$.a[1:2:0]",
        "$[-9223372036854775808]",
        "States.Array(",
        "States.Format('{}', States.Format('{}'",
        "{%",
        "{% %}",
        "{% ( %}",
        "{% [1..99999999999] %}",
        "{% $range(0, 1e300, 1) %}",
        "{% $substring('abc', 1e300) %}",
        "{% $pad('x', 1e300) %}",
        "{% 'a' & $string(1/0) %}",
        "{% $round(1, 1e9) %}",
        "{% $formatBase(1e300, 2) %}",
        "{% $partition([1], 1e300) %}",
        "{% $formatBase(-1e300, 2) %}",
        "{% $formatNumber(1e308, '#,##0.00') %}",
        "{% $formatNumber(-1e-308, '.') %}",
        "{% $decodeUrl('%') %}",
        "{% $fromMillis(-1e300) %}",
        "{% $substring('abc', -1e300, 1e300) %}",
        "{% $fromMillis(1e300) %}",
        "{% $split('abc', '', -1) %}",
        "{% ($a := [1]; $a[1e300]) %}",
        "$.a[?(@.b == 99999999999999999999999)]",
        "States.MathAdd(9223372036854775807, 1)",
        "States.ArrayRange(-9e18, 9e18, 1)",
        "States.MathRandom(-9223372036854775807, 9223372036854775807)",
    ] {
        exercise(text);
    }
}
