//! Payload templates (Parameters, ResultSelector, ItemSelector, JSONPath-mode Assign).

use asl::jsonpath::{EvalContext, SplitMix64};
use asl::template::{PayloadExpr, Template};
use serde_json::{Value, json};

fn render(template: Value, input: Value) -> Result<Value, asl::error::StatesError> {
    let context = json!({"Map": {"Item": {"Index": 2, "Value": "v"}}});
    let vars: serde_json::Map<String, Value> = serde_json::from_value(json!({"x": 41})).unwrap();
    let mut entropy = SplitMix64(0);
    let mut ctx = EvalContext::new(&input, &context, &vars, &mut entropy);
    Template::compile(&template)
        .unwrap_or_else(|d| panic!("{d:?}"))
        .render(&mut ctx)
}

#[track_caller]
fn check(template: Value, input: Value, expected: Value) {
    assert_eq!(render(template, input).unwrap(), expected);
}

#[test]
fn renders_paths_context_variables_and_intrinsics() {
    check(
        json!({
            "static": {"keep": [1, "$.not_a_path"]},
            "a.$": "$.a",
            "idx.$": "$$.Map.Item.Index",
            "var.$": "$x",
            "sum.$": "States.MathAdd($x, 1)",
            "nested": {"deep.$": "$.b[0]", "list": [{"in.$": "$.a"}, 2]},
            "whole.$": "$"
        }),
        json!({"a": "A", "b": [true]}),
        json!({
            "static": {"keep": [1, "$.not_a_path"]},
            "a": "A",
            "idx": 2,
            "var": 41,
            "sum": 42,
            "nested": {"deep": true, "list": [{"in": "A"}, 2]},
            "whole": {"a": "A", "b": [true]}
        }),
    );
}

#[test]
fn missing_path_uses_aws_text_with_the_field() {
    let e = render(json!({"value.$": "$.no_such_jsonpath"}), json!({"a": 1})).unwrap_err();
    assert_eq!(e.error, "States.Runtime");
    assert_eq!(
        e.cause,
        "The JSONPath '$.no_such_jsonpath' specified for the field 'value.$' could not be found in the input '{\"a\":1}'"
    );
}

#[test]
fn static_templates_are_flagged() {
    assert!(
        Template::compile(&json!({"a": [1, {"b": "$.x"}]}))
            .unwrap()
            .is_static()
    );
    assert!(
        !Template::compile(&json!({"a": [1, {"b.$": "$.x"}]}))
            .unwrap()
            .is_static()
    );
}

#[test]
fn compile_reports_every_bad_entry_with_its_pointer() {
    let diags = Template::compile(&json!({
        "a.$": "not a path",
        "b": {"c.$": 5},
        "d.$": "States.Nope()",
        "ok.$": "$.fine"
    }))
    .unwrap_err();
    let paths: Vec<&str> = diags.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(paths, vec!["/a.$", "/b/c.$", "/d.$"]);
    assert!(
        diags[0].message.contains("field 'a.$'"),
        "{}",
        diags[0].message
    );
    assert!(
        diags[2].message.contains("unknown intrinsic function"),
        "{}",
        diags[2].message
    );
}

#[test]
fn payload_expr_accepts_paths_and_calls() {
    assert!(matches!(
        PayloadExpr::parse("$.a"),
        Ok(PayloadExpr::Path(_))
    ));
    assert!(matches!(
        PayloadExpr::parse("States.UUID()"),
        Ok(PayloadExpr::Intrinsic(_))
    ));
    assert!(PayloadExpr::parse("plain").is_err());
}
