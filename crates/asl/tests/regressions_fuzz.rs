//! Inputs the fuzzers found (fuzz/regressions/asl_paths and asl_definition): very long
//! operator chains and deep nesting in JSONata, JSONPath and intrinsic functions. Each runs on a
//! thread with a small stack and must end in a result or an error, never a stack overflow;
//! parsing is linear in the input, so the whole file runs in well under a second.

use asl::intrinsics::IntrinsicCall;
use asl::jsonata_template::{evaluate_field, parse_expression};
use asl::jsonpath::{EvalContext, JsonPath, SplitMix64};
use serde_json::json;

/// Half of Rust's default of 2 MiB per thread (and an eighth of a main thread's 8 MiB); debug
/// builds have large frames, and the parsers' depth limits are sized to fit this.
const STACK: usize = 1024 * 1024;

/// Runs `f` on a thread with a `STACK`-byte stack; a stack overflow aborts the whole test
/// binary, so reaching the assertion proves there was none.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(f)
        .expect("spawn test thread")
        .join()
        .expect("the test thread panicked")
}

/// Parses `text` as JSONata and evaluates it when it parses; returns the error text, if any.
fn jsonata(text: String) -> Result<serde_json::Value, String> {
    on_small_stack(move || {
        let input = json!({"a": [1, {"b": "x"}], "s": "str", "n": 3});
        let context = json!({"Execution": {"Name": "e"}});
        let vars = serde_json::Map::new();
        let mut entropy = SplitMix64(0);
        let mut ctx = EvalContext::new(&input, &context, &vars, &mut entropy);
        let e = parse_expression(&text).map_err(|e| e.to_string())?;
        // Clone and drop the tree too: both recurse over it.
        let copy = e.clone();
        drop(copy);
        evaluate_field(&e, &mut ctx, "Output").map_err(|e| e.cause)
    })
}

#[test]
fn jsonata_long_predicate_chain_is_a_syntax_error_not_a_crash() {
    let text = format!("$states.input{}", "[0]".repeat(20_000));
    let err = jsonata(text).expect_err("20,000 nested predicates are rejected");
    assert!(err.contains("nested more than"), "{err}");
}

#[test]
fn jsonata_bare_dollar_predicate_chain_is_an_error() {
    // The fuzz reproducer verbatim: `$` at the top level is rejected as well, but the depth
    // limit is reached first (while parsing).
    let text = format!("${}", "[0]".repeat(20_000));
    let err = jsonata(text).expect_err("rejected");
    assert!(err.contains("nested more than"), "{err}");
}

#[test]
fn jsonata_long_chain_operator_is_an_error() {
    let text = "$~>$string()".repeat(30_000);
    assert!(jsonata(text).is_err());
    let text = format!("$states.input.n{}", "~>$string()".repeat(30_000));
    let err = jsonata(text).expect_err("rejected");
    assert!(err.contains("nested more than"), "{err}");
}

#[test]
fn jsonata_long_binary_chain_is_linear_and_bounded() {
    // 10,000 terms: rejected (too deep), quickly (the left side is moved, not cloned).
    let text = vec!["1"; 10_000].join("+");
    let err = jsonata(text).expect_err("rejected");
    assert!(err.contains("nested more than"), "{err}");
    // A chain within the limit still works.
    let text = ["1"; 10].join("+");
    assert_eq!(jsonata(text), Ok(json!(10)));
    let text = ["'a'"; 10].join(" & ");
    assert_eq!(jsonata(text), Ok(json!("a".repeat(10))));
}

#[test]
fn jsonata_deep_brackets_and_unary_minus_are_errors() {
    for text in [
        format!("{}1{}", "(".repeat(50_000), ")".repeat(50_000)),
        format!("{}1{}", "[".repeat(50_000), "]".repeat(50_000)),
        format!("{}1", "-".repeat(50_000)),
        format!("{}1{}", "$f(".repeat(50_000), ")".repeat(50_000)),
        format!("$states.input{}", "{'a': 1}".repeat(50_000)),
        format!("$states.input{}", "^($)".repeat(50_000)),
        format!("$states.input{}", "[]".repeat(50_000)),
        format!("{}1", "$a := ".repeat(50_000)),
        format!("$states.input.n{}", " ? 1 : 2".repeat(50_000)),
    ] {
        let head: String = text.chars().take(20).collect();
        let err = jsonata(text).expect_err(&head);
        assert!(err.contains("nested more than"), "{head}: {err}");
    }
}

#[test]
fn jsonata_long_flat_path_is_not_deep() {
    // `.` steps form one flat path: a long path parses and evaluates (to undefined here).
    let text = format!("$states.input{}", ".a".repeat(5_000));
    let err = jsonata(text).expect_err("undefined is an error for a field");
    assert!(err.contains("returned nothing (undefined)"), "{err}");
}

fn jsonpath_select(text: String) -> Result<Option<serde_json::Value>, String> {
    on_small_stack(move || {
        let input = json!({"a": {"a": {"a": [1, {"a": 2}]}}, "s": "str"});
        let context = json!({});
        let vars = serde_json::Map::new();
        let mut entropy = SplitMix64(0);
        let ctx = EvalContext::new(&input, &context, &vars, &mut entropy);
        let p = JsonPath::parse(&text).map_err(|e| e.to_string())?;
        let _ = p.normalized();
        Ok(p.select(&ctx).map(|v| v.into_owned()))
    })
}

#[test]
fn jsonpath_repeated_descendants_are_fast() {
    for n in [3, 3_000, 10_000] {
        let text = format!("${}", "..a".repeat(n));
        // Any outcome is fine, as long as it ends (quickly) without a crash.
        let _ = jsonpath_select(text);
    }
    let text = format!("${}", "..*".repeat(10_000));
    let _ = jsonpath_select(text);
    // The same text is a JSONata range chain (`..` is the range operator there): rejected
    // as too deep, in linear time.
    let err = jsonata(format!("${}", "..a".repeat(10_000))).expect_err("rejected");
    assert!(err.contains("nested more than"), "{err}");
    // A short one still selects (Jayway keeps a node once per path that reaches it).
    let got = jsonpath_select("$..a..a".into())
        .expect("parses")
        .expect("matches");
    assert_eq!(got[0], json!({"a": [1, {"a": 2}]}));
}

#[test]
fn jsonpath_descendant_blowup_is_bounded() {
    // Each `..` keeps a node once per path reaching it: on 40 nested arrays, 20 `..*` would
    // select C(40, 20) ~ 10^11 nodes. The visit budget ends it as "no result".
    on_small_stack(|| {
        let mut input = json!(1);
        for _ in 0..40 {
            input = json!([input]);
        }
        let p = JsonPath::parse(&format!("${}", "..*".repeat(20))).expect("parses");
        assert_eq!(p.select_in(&input), None);
        // Two levels are still answered in full (each node once per path reaching it).
        let p = JsonPath::parse("$..*..*").expect("parses");
        let got = p.select_in(&input).expect("selects");
        assert_eq!(got.as_array().map(Vec::len), Some(40 * 39 / 2));
    });
}

#[test]
fn jsonpath_deep_filters_are_errors() {
    for text in [
        format!("$[?({}@.a)]", "!".repeat(50_000)),
        format!("$[?({}@.a{})]", "(".repeat(50_000), ")".repeat(50_000)),
        format!("$[?({})]", vec!["@.a"; 50_000].join(" && ")),
        format!("$[?({})]", vec!["@.a"; 50_000].join(" || ")),
        format!("${}", "[0]".repeat(50_000)),
    ] {
        let _ = jsonpath_select(text);
    }
}

#[test]
fn intrinsic_deep_nesting_is_an_error() {
    let deep = format!(
        "{}'x'{}",
        "States.Format(".repeat(20_000),
        ")".repeat(20_000)
    );
    let long = format!("States.Array({})", vec!["1"; 50_000].join(", "));
    on_small_stack(move || {
        assert!(IntrinsicCall::parse(&deep).is_err());
        let _ = IntrinsicCall::parse(&long);
    });
}
