//! Intrinsic functions: results recorded on AWS, argument checks and error names.

use asl::intrinsics::IntrinsicCall;
use asl::jsonpath::{EvalContext, SplitMix64};
use serde_json::{Value, json};

fn eval_with(call: &str, input: &Value, seed: u64) -> Result<Value, asl::error::StatesError> {
    let context =
        json!({"StateMachine": {"Name": "my-machine-x", "Id": "arn"}, "Execution": {"Name": "e1"}});
    let vars: serde_json::Map<String, Value> =
        serde_json::from_value(json!({"csv": "a,b", "n": 2})).unwrap();
    let mut entropy = SplitMix64(seed);
    let mut ctx = EvalContext::new(input, &context, &vars, &mut entropy);
    let c = IntrinsicCall::parse(call).unwrap_or_else(|e| panic!("{call}: {e}"));
    c.evaluate(&mut ctx, "field.$")
}

fn eval(call: &str, input: &Value) -> Result<Value, asl::error::StatesError> {
    eval_with(call, input, 7)
}

/// Evaluates `call` on `input` and compares with `expected`.
#[track_caller]
fn check(call: &str, input: Value, expected: Value) {
    match eval(call, &input) {
        Ok(v) => assert_eq!(v, expected, "{call} on {input}"),
        Err(e) => panic!("{call} on {input}: {e}"),
    }
}

/// Expects `States.IntrinsicFailure` whose cause contains `needle`.
#[track_caller]
fn check_fails(call: &str, input: Value, needle: &str) {
    let e = eval(call, &input).expect_err(call);
    assert_eq!(e.error, "States.IntrinsicFailure", "{call}: {e}");
    assert!(
        e.cause.contains(needle),
        "{call}: cause {:?} lacks {needle:?}",
        e.cause
    );
}

#[test]
fn format() {
    let i = json!({"s": "HelloWorld", "n": 1.1, "z": null, "o": {"Arg1": 1, "Arg2": []}, "t": "{} and {}"});
    check(
        "States.Format('Formatting argument {}.', $.s)",
        i.clone(),
        json!("Formatting argument HelloWorld."),
    );
    check("States.Format('x={}', $.n)", i.clone(), json!("x=1.1"));
    check("States.Format('x={}', $.z)", i.clone(), json!("x=null"));
    check(
        "States.Format('fst={}', $.o)",
        i.clone(),
        json!("fst={Arg1=1, Arg2=[]}"),
    );
    check(
        "States.Format('{}', $$.StateMachine)",
        i.clone(),
        json!("{Name=my-machine-x, Id=arn}"),
    );
    check("States.Format($.t, 1, 'b')", i.clone(), json!("1 and b"));
    check(
        "States.Format('esc \\{\\} {}', 'v')",
        i.clone(),
        json!("esc {} v"),
    );
    check(
        "States.Format('it\\'s {}', $csv)",
        i.clone(),
        json!("it's a,b"),
    );
    check_fails("States.Format('{} {}', 1)", i.clone(), "placeholders");
    check_fails("States.Format('{}', 1, 2)", i, "placeholder");
}

#[test]
fn json_conversions() {
    check(
        "States.StringToJson($.s)",
        json!({"s": "{\"a\": [1, 2]}"}),
        json!({"a": [1, 2]}),
    );
    check("States.StringToJson($.s)", json!({"s": ""}), json!(null));
    check("States.StringToJson($.s)", json!({"s": " "}), json!(null));
    check("States.StringToJson($.s)", json!({"s": "-0"}), json!(0));
    check(
        "States.StringToJson($.s)",
        json!({"s": "\"HelloWorld\""}),
        json!("HelloWorld"),
    );
    check_fails(
        "States.StringToJson($.s)",
        json!({"s": "{nope"}),
        "parsed as JSON",
    );
    check_fails(
        "States.StringToJson($.s)",
        json!({"s": 1}),
        "must be a string",
    );
    check(
        "States.JsonToString($.o)",
        json!({"o": {"Arg1": 1, "Arg2": []}}),
        json!("{\"Arg1\":1,\"Arg2\":[]}"),
    );
    check(
        "States.JsonToString($.o)",
        json!({"o": "HelloWorld"}),
        json!("\"HelloWorld\""),
    );
    check(
        "States.JsonMerge($.a, $.b, false)",
        json!({"a": {"a": {"a1": 1}, "b": 2, "d": 3}, "b": {"a": {"a3": 1}, "c": 3, "d": 4}}),
        json!({"a": {"a3": 1}, "b": 2, "c": 3, "d": 4}),
    );
    check(
        "States.JsonMerge(States.StringToJson('{\"k\": \"false\"}'), $.b, false)",
        json!({"b": {"x": 1}}),
        json!({"k": "false", "x": 1}),
    );
    check_fails(
        "States.JsonMerge($.a, $.b, $.deep)",
        json!({"a": {}, "b": {}, "deep": true}),
        "shallow",
    );
    check_fails(
        "States.JsonMerge($.a, $.b, false)",
        json!({"a": 1, "b": {}}),
        "JSON objects",
    );
}

#[test]
fn arrays() {
    check(
        "States.Array('a', 1, true, null, $.o)",
        json!({"o": {"k": []}}),
        json!(["a", 1, true, null, {"k": []}]),
    );
    check("States.Array()", json!({}), json!([]));
    check(
        "States.ArrayPartition($.a, 2)",
        json!({"a": [0, 1, 2]}),
        json!([[0, 1], [2]]),
    );
    check("States.ArrayPartition($.a, 5)", json!({"a": []}), json!([]));
    check_fails(
        "States.ArrayPartition($.a, 0)",
        json!({"a": [1]}),
        "positive",
    );
    check_fails(
        "States.ArrayPartition($.a, 1)",
        json!({"a": "x"}),
        "must be an array",
    );
    check(
        "States.ArrayContains($.a, $.v)",
        json!({"a": [[1, 2, 3], 2], "v": [1, 2, 3]}),
        json!(true),
    );
    check(
        "States.ArrayContains($.a, $.v)",
        json!({"a": [], "v": null}),
        json!(false),
    );
    check(
        "States.ArrayContains($.a, 1)",
        json!({"a": [1.0]}),
        json!(true),
    );
    check(
        "States.ArrayRange(1, 9, 2)",
        json!({}),
        json!([1, 3, 5, 7, 9]),
    );
    check("States.ArrayRange(0, 3, 1)", json!({}), json!([0, 1, 2, 3]));
    check("States.ArrayRange(5, 1, -2)", json!({}), json!([5, 3, 1]));
    check("States.ArrayRange(1, 0, 1)", json!({}), json!([]));
    check(
        "States.ArrayRange(1, 1000, 1)",
        json!({}),
        Value::Array((1..=1000).map(Value::from).collect()),
    );
    check_fails("States.ArrayRange(0, 1000, 1)", json!({}), "limit of 1000");
    check_fails("States.ArrayRange(0, 10, 0)", json!({}), "must not be 0");
    check(
        "States.ArrayGetItem($.a, 5)",
        json!({"a": [1, 2, 3, 4, 5, 6, 7, 8, 9]}),
        json!(6),
    );
    check_fails(
        "States.ArrayGetItem($.a, 9)",
        json!({"a": [1]}),
        "out of bounds",
    );
    check_fails(
        "States.ArrayGetItem($.a, -1)",
        json!({"a": [1]}),
        "out of bounds",
    );
    check(
        "States.ArrayLength($.a)",
        json!({"a": [1, [2], {}]}),
        json!(3),
    );
    check(
        "States.ArrayUnique($.a)",
        json!({"a": [null, null, 1, 1.0, "x", "x", [], [], {"a": 1}, {"a": 1}, true]}),
        json!([null, 1, "x", [], {"a": 1}, true]),
    );
    check(
        "States.ArrayGetItem(States.StringSplit($$.StateMachine.Name, '-'), 0)",
        json!({}),
        json!("my"),
    );
}

#[test]
fn encoding_and_hashing() {
    check(
        "States.Base64Encode($.s)",
        json!({"s": "Data to encode"}),
        json!("RGF0YSB0byBlbmNvZGU="),
    );
    check("States.Base64Encode($.s)", json!({"s": ""}), json!(""));
    check("States.Base64Encode('ab')", json!({}), json!("YWI="));
    check(
        "States.Base64Decode($.s)",
        json!({"s": "RGF0YSB0byBlbmNvZGU="}),
        json!("Data to encode"),
    );
    check("States.Base64Decode('YWI=')", json!({}), json!("ab"));
    check("States.Base64Decode('YWI')", json!({}), json!("ab"));
    check_fails("States.Base64Decode('!!!')", json!({}), "not valid Base64");
    check_fails(
        "States.Base64Encode($.s)",
        json!({"s": "x".repeat(10_001)}),
        "limit of 10000",
    );
    let data = json!({"d": "input data"});
    check(
        "States.Hash($.d, 'MD5')",
        data.clone(),
        json!("812f45842bc6d66ee14572ce20db8e86"),
    );
    check(
        "States.Hash($.d, 'SHA-1')",
        data.clone(),
        json!("aaff4a450a104cd177d28d18d74485e8cae074b7"),
    );
    check(
        "States.Hash($.d, 'SHA-256')",
        data.clone(),
        json!("b4a697a057313163aee33cd8d40c66e9f0f177e00cac2de32475ffff6169c3e3"),
    );
    check(
        "States.Hash($.d, 'SHA-384')",
        data.clone(),
        json!(
            "d28a7d5cf25a74f11a50a18452b75e04bb3d70c9dd0510d6123aa008c756511b87525bdc835ebb27e1fb9e9374a15562"
        ),
    );
    let sha512 = eval("States.Hash($.d, 'SHA-512')", &data).unwrap();
    assert_eq!(sha512.as_str().map(str::len), Some(128));
    check_fails(
        "States.Hash($.d, $.alg)",
        json!({"d": "x", "alg": "SHA-999"}),
        "unknown hash algorithm",
    );
}

#[test]
fn math() {
    // Each argument is rounded half up (Java Math.round), as recorded on AWS.
    for (a, b, sum) in [
        (json!(-9), json!(3), -6),
        (json!(1.49), json!(1.5), 3),
        (json!(-1.5), json!(0), -1),
        (json!(-1.51), json!(0), -2),
        (json!(-0.5), json!(0.5), 1),
        (json!(-2.5), json!(0), -2),
        (json!(-1.5), json!(-1.51), -3),
    ] {
        check(
            "States.MathAdd($.a, $.b)",
            json!({"a": a, "b": b}),
            json!(sum),
        );
    }
    check(
        "States.MathAdd($.Iterations, -1)",
        json!({"Iterations": 3}),
        json!(2),
    );
    check(
        "States.MathAdd(States.MathAdd(1, 2), $n)",
        json!({}),
        json!(5),
    );
    check_fails(
        "States.MathAdd($.a, 1)",
        json!({"a": "1"}),
        "must be an integer",
    );
    for seed in 0..50 {
        let v = eval_with("States.MathRandom(-5, 5)", &json!({}), seed).unwrap();
        let n = v.as_i64().unwrap();
        assert!((-5..5).contains(&n), "{n}");
    }
    // A seed makes the result reproducible regardless of the entropy source.
    let a = eval_with("States.MathRandom(0, 999, 3)", &json!({}), 1).unwrap();
    let b = eval_with("States.MathRandom(0, 999, 3)", &json!({}), 2).unwrap();
    assert_eq!(a, b);
    check_fails("States.MathRandom(5, 5)", json!({}), "greater than");
}

#[test]
fn strings_and_uuid() {
    let split =
        |s: &str, d: &str| eval("States.StringSplit($.s, $.d)", &json!({"s": s, "d": d})).unwrap();
    assert_eq!(split(" , ", ","), json!([" ", " "]));
    assert_eq!(split(",,,,", ","), json!([]));
    assert_eq!(
        split("This.is+a,test=string", ".+,="),
        json!(["This", "is", "a", "test", "string"])
    );
    assert_eq!(
        split("split on T and \nnew line", "T\n"),
        json!(["split on ", " and ", "new line"])
    );
    check(
        "States.StringSplit($csv, ',')",
        json!({}),
        json!(["a", "b"]),
    );
    let u = eval_with("States.UUID()", &json!({}), 42).unwrap();
    let s = u.as_str().unwrap();
    assert_eq!(s.len(), 36);
    assert_eq!(&s[14..15], "4");
    assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"));
    assert_eq!(
        u,
        eval_with("States.UUID()", &json!({}), 42).unwrap(),
        "deterministic given entropy"
    );
    assert_ne!(u, eval_with("States.UUID()", &json!({}), 43).unwrap());
}

#[test]
fn missing_path_argument_is_a_runtime_error_naming_the_field() {
    let e = eval("States.Format('{}', $.nope)", &json!({"a": 1})).unwrap_err();
    assert_eq!(e.error, "States.Runtime");
    assert_eq!(
        e.cause,
        "The JSONPath '$.nope' specified for the field 'field.$' could not be found in the input '{\"a\":1}'"
    );
}

#[test]
fn parse_errors() {
    for (bad, needle) in [
        ("States.Nope(1)", "unknown intrinsic function"),
        ("states.Format('x')", "unknown intrinsic function"),
        ("States.Format", "expected '('"),
        ("States.Format(", "expected an argument"),
        ("States.Format('x'", "expected ',' or ')'"),
        ("States.Format('x)", "unterminated"),
        ("States.UUID(1)", "takes 0 argument"),
        ("States.ArrayRange(1, 2)", "takes 3 argument"),
        ("States.Format()", "at least 1"),
        ("States.Format(1)", "must be a string"),
        ("States.Array(1) extra", "unexpected text"),
        ("States.Array($.a[)", "expected"),
        ("States.Array(@)", "expected an argument"),
        // Literal arguments of the wrong type are rejected up front (asl-validator's
        // invalid-math-add.json).
        (
            "States.MathAdd(1,'-1')",
            "argument 2 of States.MathAdd must be a number",
        ),
        (
            "States.ArrayLength('abc')",
            "must be a path or a nested call",
        ),
        ("States.JsonMerge($.a, $.b, true)", "must be false"),
        ("States.Hash($.d, 'SHA-999')", "unknown hash algorithm"),
        ("States.StringSplit($.s, 1)", "must be a string"),
        ("States.ArrayRange(1, '2', 1)", "must be a number"),
    ] {
        let err = IntrinsicCall::parse(bad).expect_err(bad);
        assert!(err.to_string().contains(needle), "{bad}: {err}");
    }
    let deep = format!("{}1{}", "States.Array(".repeat(40), ")".repeat(40));
    assert!(
        IntrinsicCall::parse(&deep)
            .unwrap_err()
            .to_string()
            .contains("at most 10 intrinsic functions")
    );
}

#[test]
fn up_to_ten_nested_calls_per_field() {
    // The developer guide's example (nine calls in one field; its template has one '{}' too
    // many for its two values, fixed here).
    let guide = "States.Format('{}.{}', States.ArrayGetItem(States.StringSplit(States.ArrayGetItem(States.StringSplit($.ImageRecipe.Arn, '/'), 2), '.'), 0), States.ArrayGetItem(States.StringSplit(States.ArrayGetItem(States.StringSplit($.ImageRecipe.Arn, '/'), 2), '.'), 1))";
    let out = eval(
        guide,
        &json!({"ImageRecipe": {"Arn": "arn:aws:imagebuilder:us-east-1:1:image-recipe/my.recipe/1.0.0"}}),
    );
    assert_eq!(out.unwrap(), json!("1.0"));
    let ten = format!("{}1{}", "States.Array(".repeat(10), ")".repeat(10));
    assert!(IntrinsicCall::parse(&ten).is_ok());
    let eleven = format!("{}1{}", "States.Array(".repeat(11), ")".repeat(11));
    assert!(IntrinsicCall::parse(&eleven).is_err());
}
