//! QueryLanguage resolution and the create-time rules that depend on it, checked against the
//! Step Functions developer guide:
//! - a state without its own QueryLanguage uses the top-level one, at any depth: a Map or
//!   Parallel state's own language does not carry into its ItemProcessor or branches
//!   ("Transforming data with JSONata");
//! - a JSONata state machine cannot contain JSONPath states ("State machine structure");
//! - `$states.errorOutput` only in a Catch's Output and Assign, and `$states.result` only in
//!   the Output and Assign of a Task, Parallel or Map state ("Transforming data with JSONata",
//!   "Reserved variable: $states");
//! - the Context Object (`$$`) is not readable from the numeric `...Path` fields
//!   ("Accessing execution data from the Context object");
//! - state names have 1 to 80 characters.

use std::time::{Duration, UNIX_EPOCH};

use asl::interp::{Execution, ExecutionInfo, Options, Status};
use asl::model::{Definition, QueryLanguage};
use asl::validate::{Diagnostic, validate};
use serde_json::{Value, json};

fn diags(def: Value) -> Vec<Diagnostic> {
    validate(&def)
}

/// The one diagnostic at `path`, failing with every diagnostic when there is not exactly one.
fn only_at(def: Value, path: &str) -> Diagnostic {
    let ds = diags(def);
    let at: Vec<&Diagnostic> = ds.iter().filter(|d| d.path == path).collect();
    assert_eq!(
        at.len(),
        1,
        "expected one diagnostic at {path}, got {ds:#?}"
    );
    at[0].clone()
}

fn map_with(map_ql: Option<&str>, inner: Value) -> Value {
    let mut m = json!({
        "Type": "Map",
        "ItemProcessor": {"StartAt": "P", "States": {"P": inner}},
        "End": true
    });
    if let Some(q) = map_ql {
        m["QueryLanguage"] = json!(q);
        if q == "JSONata" {
            m["Items"] = json!("{% $states.input.xs %}");
        }
    }
    json!({"StartAt": "M", "States": {"M": m}})
}

#[test]
fn map_query_language_does_not_reach_its_item_processor() {
    // JSONPath machine, JSONata Map: the inner Pass is JSONPath, so JSONata's Output is an
    // error there, reported at the inner state.
    let def = map_with(
        Some("JSONata"),
        json!({"Type": "Pass", "Output": "{% $states.input %}", "End": true}),
    );
    let d = only_at(def, "/States/M/ItemProcessor/States/P/Output");
    assert_eq!(d.state.as_deref(), Some("P"));
    // Same answer as with no QueryLanguage on the Map at all.
    let plain = map_with(
        None,
        json!({"Type": "Pass", "Output": "{% $states.input %}", "End": true}),
    );
    only_at(plain, "/States/M/ItemProcessor/States/P/Output");
    // JSONPath fields are what the inner state takes.
    let ok = map_with(
        Some("JSONata"),
        json!({"Type": "Pass", "Parameters": {"v.$": "$"}, "End": true}),
    );
    assert_eq!(diags(ok), vec![]);
    // An inner state can still opt in on its own.
    let own = map_with(
        Some("JSONata"),
        json!({"Type": "Pass", "QueryLanguage": "JSONata", "Output": "{% $states.input %}", "End": true}),
    );
    assert_eq!(diags(own), vec![]);
}

#[test]
fn parallel_query_language_does_not_reach_its_branches() {
    let def = json!({"StartAt": "Par", "States": {"Par": {
        "Type": "Parallel", "QueryLanguage": "JSONata", "End": true,
        "Branches": [{"StartAt": "B", "States": {"B": {"Type": "Pass", "Output": 1, "End": true}}}]
    }}});
    let d = only_at(def, "/States/Par/Branches/0/States/B/Output");
    assert_eq!(d.state.as_deref(), Some("B"));
}

#[test]
fn interpreter_uses_the_top_level_language_inside_a_jsonata_map() {
    let def = Definition::from_value(map_with(
        Some("JSONata"),
        json!({"Type": "Pass", "Parameters": {"v.$": "$"}, "End": true}),
    ))
    .expect("valid definition");
    assert_eq!(def.machine.states[0].query_language, QueryLanguage::Jsonata);
    let inner: Vec<QueryLanguage> = match &def.machine.states[0].kind {
        asl::model::Kind::Map { processor, .. } => {
            processor.states.iter().map(|s| s.query_language).collect()
        }
        _ => Vec::new(),
    };
    assert_eq!(inner, vec![QueryLanguage::JsonPath]);
    let (ex, _) = Execution::start(
        &def,
        ExecutionInfo::local("sm", "e"),
        json!({"xs": [1, 2]}),
        9,
        UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        Options::default(),
    );
    assert_eq!(
        ex.status,
        Status::Succeeded,
        "{:?} {:?}",
        ex.error,
        ex.cause
    );
    assert_eq!(ex.output, Some(json!([{"v": 1}, {"v": 2}])));
}

#[test]
fn jsonata_machine_rejects_jsonpath_states() {
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "A", "States": {
        "A": {"Type": "Pass", "QueryLanguage": "JSONPath", "End": true}
    }});
    let d = only_at(def, "/States/A/QueryLanguage");
    assert_eq!(d.state.as_deref(), Some("A"));
    assert!(d.message.contains("JSONata state machine"), "{}", d.message);
    // Nested states too (they inherit JSONata from the top level).
    let nested = json!({"QueryLanguage": "JSONata", "StartAt": "M", "States": {"M": {
        "Type": "Map", "End": true,
        "ItemProcessor": {"StartAt": "P", "States": {
            "P": {"Type": "Pass", "QueryLanguage": "JSONPath", "End": true}
        }}
    }}});
    only_at(nested, "/States/M/ItemProcessor/States/P/QueryLanguage");
    // Declaring JSONata again, and JSONata states in a JSONPath machine, are fine.
    let fine = json!({"QueryLanguage": "JSONata", "StartAt": "A", "States": {
        "A": {"Type": "Pass", "QueryLanguage": "JSONata", "End": true}
    }});
    assert_eq!(diags(fine), vec![]);
    let mixed = json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "QueryLanguage": "JSONata", "Next": "B"},
        "B": {"Type": "Pass", "QueryLanguage": "JSONPath", "End": true}
    }});
    assert_eq!(diags(mixed), vec![]);
}

fn task(extra: Value) -> Value {
    let mut t = json!({
        "Type": "Task",
        "Resource": "arn:aws:lambda:us-east-1:123456789012:function:F",
        "End": true
    });
    if let (Some(t), Some(e)) = (t.as_object_mut(), extra.as_object()) {
        t.extend(e.clone());
    }
    json!({"QueryLanguage": "JSONata", "StartAt": "T", "States": {"T": t}})
}

#[test]
fn error_output_only_in_a_catch() {
    // Allowed: a catcher's Output and Assign.
    let ok = task(json!({"Catch": [{
        "ErrorEquals": ["States.ALL"], "Next": "H",
        "Output": {"e": "{% $states.errorOutput.Error %}"},
        "Assign": {"why": "{% $states.errorOutput.Cause %}"}
    }]}));
    let mut ok = ok;
    ok["States"]["H"] = json!({"Type": "Succeed"});
    ok["States"]["T"]["End"] = json!(true);
    assert_eq!(diags(ok), vec![]);
    // Refused: the state's own Output, Arguments, Assign (nested inside objects too).
    for (field, value) in [
        ("Output", json!("{% $states.errorOutput %}")),
        (
            "Arguments",
            json!({"a": ["{% $states.errorOutput.Cause %}"]}),
        ),
        (
            "Assign",
            json!({"x": "{% $exists($states.errorOutput) ? 1 : 2 %}"}),
        ),
    ] {
        let ds = diags(task(json!({ field: value })));
        let hit: Vec<_> = ds
            .iter()
            .filter(|d| {
                d.message
                    .contains("$states.errorOutput is only available in a Catch")
            })
            .collect();
        assert_eq!(hit.len(), 1, "{field}: {ds:#?}");
        assert!(
            hit[0].path.starts_with(&format!("/States/T/{field}")),
            "{:?}",
            hit[0]
        );
        assert_eq!(hit[0].state.as_deref(), Some("T"));
    }
    // A Choice rule and a Pass state are not catchers either.
    let choice = json!({"QueryLanguage": "JSONata", "StartAt": "C", "States": {
        "C": {"Type": "Choice", "Default": "D", "Choices": [
            {"Condition": "{% $states.errorOutput = null %}", "Next": "D"}
        ]},
        "D": {"Type": "Succeed"}
    }});
    only_at(choice, "/States/C/Choices/0/Condition");
    // Mentioning the name in a string literal is not a use.
    let literal = task(json!({"Output": "{% '$states.errorOutput' %}"}));
    assert_eq!(diags(literal), vec![]);
    // Other $states fields are untouched by this rule.
    let input = task(json!({"Output": "{% $states.input.errorOutput %}"}));
    assert_eq!(diags(input), vec![]);
}

fn jsonpath_map(field: &str, value: &str) -> Value {
    json!({"StartAt": "M", "States": {"M": {
        "Type": "Map", "End": true, field: value,
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}
    }}})
}

#[test]
fn numeric_path_fields_cannot_read_the_context_object() {
    for f in [
        "MaxConcurrencyPath",
        "ToleratedFailureCountPath",
        "ToleratedFailurePercentagePath",
    ] {
        let d = only_at(
            jsonpath_map(f, "$$.Execution.Input.n"),
            &format!("/States/M/{f}"),
        );
        assert!(d.message.contains("Context Object"), "{}", d.message);
        // A state-input path and a variable are fine.
        assert_eq!(diags(jsonpath_map(f, "$.n")), vec![]);
        assert_eq!(diags(jsonpath_map(f, "$n")), vec![]);
    }
    for f in ["TimeoutSecondsPath", "HeartbeatSecondsPath"] {
        let def = json!({"StartAt": "T", "States": {"T": {
            "Type": "Task", "End": true, f: "$$.Execution.Input.t",
            "Resource": "arn:aws:lambda:us-east-1:123456789012:function:F"
        }}});
        let d = only_at(def, &format!("/States/T/{f}"));
        assert_eq!(d.state.as_deref(), Some("T"));
    }
    // ItemsPath may read the Context Object.
    assert_eq!(
        diags(jsonpath_map("ItemsPath", "$$.Execution.Input.xs")),
        vec![]
    );
}

#[test]
fn empty_state_name_is_rejected() {
    let def = json!({"StartAt": "", "States": {"": {"Type": "Succeed"}}});
    let d = only_at(def, "/States/");
    assert!(d.message.contains("1 to 80 characters"), "{}", d.message);
    let long = "n".repeat(81);
    let def = json!({"StartAt": long, "States": {long.clone(): {"Type": "Succeed"}}});
    only_at(def, &format!("/States/{long}"));
    let max = "n".repeat(80);
    let def = json!({"StartAt": max, "States": {max.clone(): {"Type": "Succeed"}}});
    assert_eq!(diags(def), vec![]);
}

#[test]
fn result_only_in_the_output_and_assign_of_states_with_a_result() {
    let result_msg = "$states.result is only available in the Output and Assign";
    // Allowed: Task, Map and Parallel Output and Assign.
    assert_eq!(
        diags(task(json!({
            "Output": {"r": "{% $states.result.Payload %}"},
            "Assign": {"r": "{% $states.result %}"}
        }))),
        vec![]
    );
    let map = json!({"QueryLanguage": "JSONata", "StartAt": "M", "States": {"M": {
        "Type": "Map", "Output": "{% $states.result %}", "End": true,
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}
    }}});
    assert_eq!(diags(map), vec![]);
    let parallel = json!({"QueryLanguage": "JSONata", "StartAt": "P", "States": {"P": {
        "Type": "Parallel", "Assign": {"n": "{% $count($states.result) %}"}, "End": true,
        "Branches": [{"StartAt": "B", "States": {"B": {"Type": "Pass", "End": true}}}]
    }}});
    assert_eq!(diags(parallel), vec![]);
    // Refused: before the work (Arguments), in a catcher, and in states without a result.
    let d = only_at(
        task(json!({"Arguments": {"a": "{% $states.result %}"}})),
        "/States/T/Arguments/a",
    );
    assert!(d.message.contains(result_msg), "{}", d.message);
    let mut caught = task(json!({"Catch": [{
        "ErrorEquals": ["States.ALL"], "Next": "H", "Output": "{% $states.result %}"
    }]}));
    caught["States"]["H"] = json!({"Type": "Succeed"});
    let d = only_at(caught, "/States/T/Catch/0/Output");
    assert!(d.message.contains(result_msg), "{}", d.message);
    for state in [
        json!({"Type": "Pass", "Output": "{% $states.result %}", "End": true}),
        json!({"Type": "Wait", "Seconds": "{% $states.result %}", "End": true}),
        json!({"Type": "Choice", "Default": "E", "Choices": [
            {"Condition": "{% $states.result > 1 %}", "Next": "E"}
        ]}),
    ] {
        let def = json!({"QueryLanguage": "JSONata", "StartAt": "S", "States": {
            "S": state, "E": {"Type": "Succeed"}
        }});
        let ds = diags(def.clone());
        assert!(
            ds.iter().any(|d| d.message.contains(result_msg)),
            "{def}: {ds:#?}"
        );
    }
    // A field merely named like it is not the reserved one.
    assert_eq!(
        diags(task(json!({"Arguments": "{% $states.input.result %}"}))),
        vec![]
    );
}
