//! JSONata in ASL fields: templates (Output, Arguments, Assign) and the errors a definition
//! and an execution see (the `jsonata` crate's own tests cover the language).

use asl::jsonata_template::{JsonataTemplate, evaluate_field, parse_expression};
use asl::jsonpath::{EvalContext, SplitMix64};
use serde_json::{Value, json};

fn render(template: Value, field: &str, input: Value) -> Result<Value, asl::error::StatesError> {
    let context = json!({});
    let vars: serde_json::Map<String, Value> = serde_json::from_value(json!({"v": 1})).unwrap();
    let mut entropy = SplitMix64(0);
    let mut ctx = EvalContext::new(&input, &context, &vars, &mut entropy);
    JsonataTemplate::compile(&template, field)
        .unwrap_or_else(|d| panic!("{d:?}"))
        .render(&mut ctx)
}

#[test]
fn templates_evaluate_nested_expressions_and_copy_literals() {
    let out = render(
        json!({
            "sum": "{% $sum($states.input.values) + $v %}",
            "literal": " {% not evaluated %} ",
            "path_like": "$states.input",
            "list": [1, "{% $v %}", {"in": "{% $states.input.values[0] %}"}]
        }),
        "Output",
        json!({"values": [1, 2]}),
    )
    .unwrap();
    assert_eq!(
        out,
        json!({"sum": 4, "literal": " {% not evaluated %} ", "path_like": "$states.input", "list": [1, 1, {"in": 1}]})
    );
    assert!(
        JsonataTemplate::compile(&json!({"a": [1, "x"]}), "Output")
            .unwrap()
            .is_static()
    );
}

#[test]
fn undefined_results_use_aws_text_with_the_field_path() {
    // Recorded on AWS: BASE_UNDEFINED_ASSIGN / _OUTPUT / _OUTPUT_FIELD.
    let e = render(
        json!({"result": "{% $doesNotExist %}"}),
        "Assign",
        json!({}),
    )
    .unwrap_err();
    assert_eq!(e.error, "States.QueryEvaluationError");
    assert_eq!(
        e.cause,
        "The JSONata expression '$doesNotExist' specified for the field 'Assign/result' returned nothing (undefined)."
    );
    let e = render(json!("{% $doesNotExist %}"), "Output", json!({})).unwrap_err();
    assert_eq!(
        e.cause,
        "The JSONata expression '$doesNotExist' specified for the field 'Output' returned nothing (undefined)."
    );
}

#[test]
fn template_compile_errors_point_at_the_field() {
    let d = JsonataTemplate::compile(&json!({"a": {"b": "{% 1 + %}"}}), "Arguments").unwrap_err();
    assert_eq!(d[0].path, "/a/b");
    assert!(d[0].message.contains("JSONata"), "{}", d[0].message);
}

#[test]
fn evaluation_errors_quote_the_jsonata_error_with_its_code() {
    let input = json!({});
    let context = json!({});
    let mut entropy = SplitMix64(0);
    let mut ctx = EvalContext::new(&input, &context, &(), &mut entropy);
    let expr = parse_expression("{% 'a' + 1 %}").unwrap();
    let e = evaluate_field(&expr, &mut ctx, "Output").unwrap_err();
    assert_eq!(e.error, "States.QueryEvaluationError");
    assert_eq!(
        e.cause,
        "The JSONata expression ''a' + 1' specified for the field 'Output' threw an error during evaluation: T2001: The left side of the + operator must evaluate to a number"
    );
}

#[test]
fn parse_errors_name_the_expression() {
    let e = parse_expression("{% 1 + %}").unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid JSONata expression '1 +': unexpected end of expression"
    );
}
