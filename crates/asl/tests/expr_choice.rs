//! Choice rules: parsing, validation diagnostics and AWS evaluation semantics.

use asl::choice::{ChoiceRule, string_matches};
use asl::jsonpath::{EvalContext, SplitMix64};
use serde_json::{Value, json};

fn eval(rule: Value, input: Value) -> Result<bool, asl::error::StatesError> {
    let context = json!({});
    let vars: serde_json::Map<String, Value> =
        serde_json::from_value(json!({"limit": 10})).unwrap();
    let mut entropy = SplitMix64(0);
    let mut ctx = EvalContext::new(&input, &context, &vars, &mut entropy);
    let mut rule = rule;
    rule["Next"] = json!("X");
    ChoiceRule::parse(&rule, "/States/C/Choices/0", true)
        .unwrap_or_else(|d| panic!("{d:?}"))
        .evaluate(&mut ctx)
}

#[track_caller]
fn check(rule: Value, input: Value, expected: bool) {
    let shown = rule.to_string();
    assert_eq!(eval(rule, input).unwrap(), expected, "{shown}");
}

#[test]
fn comparisons() {
    let i =
        json!({"s": "b", "n": 5, "b": true, "t": "2016-03-14T01:59:00Z", "other": "c", "m": 5.0});
    check(
        json!({"Variable": "$.s", "StringEquals": "b"}),
        i.clone(),
        true,
    );
    check(
        json!({"Variable": "$.s", "StringLessThan": "c"}),
        i.clone(),
        true,
    );
    check(
        json!({"Variable": "$.s", "StringGreaterThanEquals": "b"}),
        i.clone(),
        true,
    );
    check(
        json!({"Variable": "$.s", "StringEqualsPath": "$.other"}),
        i.clone(),
        false,
    );
    check(
        json!({"Variable": "$.s", "StringLessThanPath": "$.other"}),
        i.clone(),
        true,
    );
    check(
        json!({"Variable": "$.n", "NumericEquals": 5}),
        i.clone(),
        true,
    );
    check(
        json!({"Variable": "$.n", "NumericEqualsPath": "$.m"}),
        i.clone(),
        true,
    );
    check(
        json!({"Variable": "$.n", "NumericLessThan": 5.5}),
        i.clone(),
        true,
    );
    check(
        json!({"Variable": "$.n", "NumericGreaterThan": 5}),
        i.clone(),
        false,
    );
    check(
        json!({"Variable": "$.n", "NumericLessThanPath": "$limit"}),
        i.clone(),
        true,
    );
    check(
        json!({"Variable": "$.b", "BooleanEquals": true}),
        i.clone(),
        true,
    );
    check(
        json!({"Variable": "$.b", "BooleanEqualsPath": "$.b"}),
        i.clone(),
        true,
    );
    check(
        json!({"Variable": "$.t", "TimestampEquals": "2016-03-14T03:59:00+02:00"}),
        i.clone(),
        true,
    );
    check(
        json!({"Variable": "$.t", "TimestampLessThan": "2016-03-14T01:59:00.001Z"}),
        i.clone(),
        true,
    );
    check(
        json!({"Variable": "$.t", "TimestampGreaterThanPath": "$.t"}),
        i.clone(),
        false,
    );
    // Type mismatches compare false instead of failing.
    check(
        json!({"Variable": "$.n", "StringEquals": "5"}),
        i.clone(),
        false,
    );
    check(
        json!({"Variable": "$.s", "NumericEquals": 5}),
        i.clone(),
        false,
    );
    check(
        json!({"Variable": "$.s", "TimestampEquals": "2016-03-14T01:59:00Z"}),
        i,
        false,
    );
}

#[test]
fn type_tests_and_presence() {
    let i = json!({"z": null, "n": 1, "s": "x", "b": false, "t": "2020-01-01T00:00:00Z"});
    check(json!({"Variable": "$.z", "IsNull": true}), i.clone(), true);
    check(json!({"Variable": "$.n", "IsNull": false}), i.clone(), true);
    check(
        json!({"Variable": "$.n", "IsNumeric": true}),
        i.clone(),
        true,
    );
    check(
        json!({"Variable": "$.s", "IsString": true}),
        i.clone(),
        true,
    );
    check(
        json!({"Variable": "$.b", "IsBoolean": true}),
        i.clone(),
        true,
    );
    check(
        json!({"Variable": "$.t", "IsTimestamp": true}),
        i.clone(),
        true,
    );
    check(
        json!({"Variable": "$.s", "IsTimestamp": true}),
        i.clone(),
        false,
    );
    check(
        json!({"Variable": "$.missing", "IsPresent": false}),
        i.clone(),
        true,
    );
    check(
        json!({"Variable": "$.z", "IsPresent": true}),
        i.clone(),
        true,
    );
    let e = eval(json!({"Variable": "$.missing", "StringEquals": "x"}), i).unwrap_err();
    assert_eq!(e.error, "States.Runtime");
    assert_eq!(
        e.cause,
        "Invalid path '$.missing': The choice state's condition path references an invalid value."
    );
}

#[test]
fn boolean_combinators() {
    let i = json!({"v": 25, "type": "Private"});
    check(
        json!({"And": [
            {"Variable": "$.v", "NumericGreaterThanEquals": 20},
            {"Variable": "$.v", "NumericLessThan": 30}
        ]}),
        i.clone(),
        true,
    );
    check(
        json!({"Or": [
            {"Variable": "$.v", "NumericLessThan": 20},
            {"Not": {"Variable": "$.type", "StringEquals": "Public"}}
        ]}),
        i.clone(),
        true,
    );
    check(
        json!({"Not": {"Variable": "$.v", "NumericEquals": 25}}),
        i,
        false,
    );
}

#[test]
fn string_matches_wildcards_and_escapes() {
    assert!(string_matches("log-2020.txt", "log-*.txt"));
    assert!(string_matches("anything", "*"));
    assert!(string_matches("", "*"));
    assert!(!string_matches("log.txt", "log-*.txt"));
    assert!(string_matches("a*b", "a\\*b"));
    assert!(!string_matches("axb", "a\\*b"));
    assert!(string_matches("a\\b", "a\\\\b"));
    assert!(string_matches("abcabc", "*abc"));
    assert!(string_matches("abXcdYef", "ab*cd*ef"));
    check(
        json!({"Variable": "$.f", "StringMatches": "*.log"}),
        json!({"f": "x.log"}),
        true,
    );
    check(
        json!({"Variable": "$.f", "StringMatches": "*.log"}),
        json!({"f": 1}),
        false,
    );
}

#[test]
fn jsonata_conditions() {
    let cond = |c: &str, input: Value| eval(json!({"Condition": c}), input);
    assert_eq!(
        cond(
            "{% $states.input.value >= 20 and $states.input.value < 30 %}",
            json!({"value": 25})
        ),
        Ok(true)
    );
    assert_eq!(
        cond(
            "{% $not($states.input.type = 'Private') %}",
            json!({"type": "Public"})
        ),
        Ok(true)
    );
    assert_eq!(
        cond("{% $states.input.condition %}", json!({"condition": false})),
        Ok(false)
    );
    let e = cond("{% $states.input.condition %}", json!({"condition": "yes"})).unwrap_err();
    assert_eq!(e.error, "States.QueryEvaluationError");
    let e = cond("{% $states.input.missing %}", json!({})).unwrap_err();
    assert_eq!(e.error, "States.QueryEvaluationError");
    assert!(
        e.cause.contains("returned nothing (undefined)"),
        "{}",
        e.cause
    );
}

#[test]
fn validation_reports_each_problem() {
    let diags = |v: Value, top: bool| ChoiceRule::parse(&v, "/R", top).unwrap_err();
    let d = diags(
        json!({"Variable": "$.a", "StringEquals": 1, "Next": "X"}),
        true,
    );
    assert_eq!(d[0].path, "/R/StringEquals");
    assert!(d[0].message.contains("must be a string"));
    let d = diags(
        json!({"Variable": "$.a", "StringEquals": "x", "NumericEquals": 1, "Next": "X"}),
        true,
    );
    assert!(
        d[0].message.contains("exactly one operator"),
        "{}",
        d[0].message
    );
    let d = diags(json!({"StringEquals": "x", "Next": "X"}), true);
    assert!(d[0].message.contains("needs a 'Variable'"));
    let d = diags(json!({"Variable": "$.a", "StringEquals": "x"}), true);
    assert!(d[0].message.contains("must have 'Next'"));
    let d = diags(
        json!({"Variable": "$.a", "StringEquals": "x", "Next": "X"}),
        false,
    );
    assert!(d[0].message.contains("only allowed in a top-level"));
    let d = diags(json!({"Variable": "$.a", "Bogus": 1, "Next": "X"}), true);
    assert!(d.iter().any(|x| x.path == "/R/Bogus"));
    let d = diags(
        json!({"Variable": "$.a", "TimestampEquals": "yesterday", "Next": "X"}),
        true,
    );
    assert!(d[0].message.contains("RFC 3339"));
    let d = diags(json!({"And": [], "Next": "X"}), true);
    assert!(d[0].message.contains("non-empty array"));
    let d = diags(
        json!({"And": [{"Variable": "bad", "IsNull": true}], "Next": "X"}),
        true,
    );
    assert_eq!(d[0].path, "/R/And/0/Variable");
    let d = diags(
        json!({"Variable": "$.a", "StringEqualsPath": "nope", "Next": "X"}),
        true,
    );
    assert_eq!(d[0].path, "/R/StringEqualsPath");
    let d = diags(
        json!({"Variable": "$.a", "BooleanLessThan": true, "Next": "X"}),
        true,
    );
    assert_eq!(d[0].path, "/R/BooleanLessThan");
}

#[test]
fn timestamps() {
    // The accepted and rejected forms are tested where the one parser lives (the `clock`
    // crate); Choice comparisons must accept and reject exactly what it does.
    for text in [
        "2016-03-14T01:59:00Z",
        "2016-03-14T01:59:00.5+01:00",
        "2016-03-14t01:59:00z",
        "2019-02-29T00:00:00Z",
    ] {
        let is_timestamp = eval(
            json!({"Variable": "$.t", "IsTimestamp": true}),
            json!({ "t": text }),
        )
        .unwrap();
        assert_eq!(
            is_timestamp,
            clock::parse_rfc3339_nanos(text).is_some(),
            "{text}"
        );
    }
}
