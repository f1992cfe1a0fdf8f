//! Static validation of a state machine definition: every problem, not just the first.
//!
//! [`validate`] returns the diagnostics of the one pass that also builds the model
//! ([`Definition::parse_with_diagnostics`]): the checks live with the compilation they
//! guard, so what validation accepts is exactly what the model can be built from, and no
//! template, path or expression is compiled twice. The checks are listed in that pass's
//! module doc; each [`Diagnostic`] names the JSON pointer and, where there is one, the state.

use serde_json::Value;

use crate::model::Definition;

pub use crate::error::Diagnostic;

/// Validates a whole definition; an empty list means valid.
pub fn validate(def: &Value) -> Vec<Diagnostic> {
    Definition::parse_with_diagnostics(def).1
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errs(v: Value) -> Vec<String> {
        validate(&v).into_iter().map(|d| d.to_string()).collect()
    }

    #[test]
    fn minimal_definition_is_valid() {
        assert!(errs(json!({"StartAt":"A","States":{"A":{"Type":"Pass","End":true}}})).is_empty());
    }

    #[test]
    fn reports_every_problem_with_state_and_path() {
        let e = errs(json!({"StartAt":"A","States":{
            "A":{"Type":"Pass","Next":"Nope","End":true},
            "B":{"Type":"Wait","Seconds":1,"SecondsPath":"$.x","End":true},
            "C":{"Type":"Task","Resource":"arn:aws:lambda:r:1:function:f","ResultPath":"$foo","End":true}
        }}));
        let all = e.join("\n");
        assert!(
            all.contains("/States/A: state \"A\": has both \"Next\" and \"End\""),
            "{all}"
        );
        assert!(
            all.contains("/States/A/Next: state \"A\": names \"Nope\""),
            "{all}"
        );
        assert!(
            all.contains("/States/B: state \"B\": a Wait state needs exactly one"),
            "{all}"
        );
        assert!(
            all.contains("/States/C/ResultPath: state \"C\": invalid JSONPath"),
            "{all}"
        );
        assert!(all.contains("state \"B\": state is unreachable"), "{all}");
    }

    #[test]
    fn bad_paths_and_intrinsics_are_reported() {
        let e = errs(json!({"StartAt":"A","States":{
            "A":{"Type":"Pass","InputPath":"bug$.x","Parameters":{"v.$":"States.MathAdd(1,'-1')"},"Next":"B"},
            "B":{"Type":"Pass","ResultPath":"$.a[*]","End":true}
        }}))
        .join("\n");
        assert!(e.contains("/States/A/InputPath"), "{e}");
        assert!(e.contains("/States/A/Parameters/v.$"), "{e}");
        assert!(e.contains("/States/B/ResultPath"), "{e}");
    }

    #[test]
    fn assign_names_are_identifiers() {
        let e = errs(
            json!({"StartAt":"A","States":{"A":{"Type":"Pass","Assign":{"ok_1":1,"x.$":"$.a","1bad":2,"states":3},"End":true}}}),
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].contains("/States/A/Assign/1bad"), "{e:?}");
        assert!(e[1].contains("reserved"), "{e:?}");
    }

    #[test]
    fn inner_scopes_cannot_assign_an_outer_variable() {
        // Developer guide, "Variable scope": a variable assigned in an inner scope cannot
        // have the same name as one assigned in an outer scope.
        let e = errs(json!({"StartAt":"Init","States":{
            "Init":{"Type":"Pass","Assign":{"x":1,"items":[1,2]},"Next":"M"},
            "M":{"Type":"Map","ItemsPath":"$items","ItemProcessor":{"StartAt":"Inner","States":{
                "Inner":{"Type":"Pass","Assign":{"x.$":"$","fresh":2},"End":true}}},"Next":"P"},
            "P":{"Type":"Parallel","Branches":[
                {"StartAt":"B1","States":{"B1":{"Type":"Pass","Assign":{"items":0},"End":true}}}],
             "End":true}
        }}));
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("/States/M/ItemProcessor/States/Inner/Assign/x.$: state \"Inner\": variable \"x\" is already assigned in an outer scope (at /States/Init/Assign/x)"),
            "{e:?}"
        );
        assert!(e[0].contains("rename this variable"), "{e:?}");
        assert!(
            e[1].starts_with("/States/P/Branches/0/States/B1/Assign/items: state \"B1\""),
            "{e:?}"
        );
    }

    #[test]
    fn variable_scopes_nest_and_siblings_are_independent() {
        // Sibling branches may reuse a name; the Map's own Assign and its Catch's Assign are in
        // the outer scope (so is a Choice rule's); a grandchild scope sees every ancestor.
        let ok = json!({"StartAt":"P","States":{
            "P":{"Type":"Parallel","Branches":[
                {"StartAt":"A","States":{"A":{"Type":"Pass","Assign":{"same":1},"End":true}}},
                {"StartAt":"B","States":{"B":{"Type":"Pass","Assign":{"same":2},"End":true}}}],
             "Assign":{"result":1},
             "Catch":[{"ErrorEquals":["States.ALL"],"Assign":{"failed":true},"Next":"Done"}],
             "Next":"Done"},
            "Done":{"Type":"Pass","End":true}}});
        assert!(errs(ok).is_empty());
        let e = errs(json!({"StartAt":"C","States":{
            "C":{"Type":"Choice","QueryLanguage":"JSONata","Choices":[
                {"Condition":"{% true %}","Assign":{"deep":1},"Next":"M"}],"Default":"M"},
            "M":{"Type":"Map","ItemProcessor":{"StartAt":"M2","States":{
                "M2":{"Type":"Map","ItemProcessor":{"StartAt":"Leaf","States":{
                    "Leaf":{"Type":"Pass","Assign":{"deep":2},"End":true}}},"End":true}}},
             "End":true}}}));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains(
                "/States/M/ItemProcessor/States/M2/ItemProcessor/States/Leaf/Assign/deep"
            ) && e[0].contains("(at /States/C/Choices/0/Assign/deep)"),
            "{e:?}"
        );
        // An inner catcher's Assign is in the inner scope.
        let e = errs(json!({"StartAt":"Init","States":{
            "Init":{"Type":"Pass","Assign":{"err":null},"Next":"M"},
            "M":{"Type":"Map","ItemProcessor":{"StartAt":"T","States":{
                "T":{"Type":"Task","Resource":"arn:aws:lambda:us-east-1:1:function:f",
                     "Catch":[{"ErrorEquals":["States.ALL"],"Assign":{"err.$":"$"},"Next":"F"}],"End":true},
                "F":{"Type":"Pass","End":true}}},"End":true}}}));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("/States/M/ItemProcessor/States/T/Catch/0/Assign/err.$"),
            "{e:?}"
        );
    }

    #[test]
    fn heartbeat_seconds_must_be_smaller_than_timeout_seconds() {
        let task = |hb: u64, to: u64| {
            errs(json!({"StartAt":"T","States":{"T":{"Type":"Task",
                "Resource":"arn:aws:lambda:us-east-1:1:function:f",
                "HeartbeatSeconds":hb,"TimeoutSeconds":to,"End":true}}}))
        };
        assert!(task(5, 6).is_empty());
        for (hb, to) in [(6, 6), (7, 6)] {
            let e = task(hb, to);
            assert_eq!(e.len(), 1, "{e:?}");
            assert!(
                e[0].starts_with(&format!("/States/T/HeartbeatSeconds: state \"T\": HeartbeatSeconds ({hb}) must be smaller than TimeoutSeconds ({to})")),
                "{e:?}"
            );
        }
    }

    #[test]
    fn retrier_fields_have_aws_upper_bounds() {
        let retrier = |r: Value| {
            let mut r = r;
            r["ErrorEquals"] = json!(["States.ALL"]);
            errs(json!({"StartAt":"T","States":{"T":{"Type":"Task",
                "Resource":"arn:aws:lambda:us-east-1:1:function:f","Retry":[r],"End":true}}}))
        };
        // The largest values AWS accepts are valid.
        assert!(
            retrier(
                json!({"IntervalSeconds":99_999_999,"MaxAttempts":99_999_999,
                "MaxDelaySeconds":31_622_400})
            )
            .is_empty()
        );
        for (field, bad) in [
            ("IntervalSeconds", 100_000_000_u64),
            ("MaxAttempts", 100_000_000),
            ("MaxDelaySeconds", 31_622_401),
        ] {
            let e = retrier(json!({ field: bad }));
            assert_eq!(e.len(), 1, "{field}: {e:?}");
            assert!(
                e[0].starts_with(&format!("/States/T/Retry/0/{field}: state \"T\": {bad} ")),
                "{e:?}"
            );
            assert!(e[0].contains("use a value from"), "says how to fix: {e:?}");
        }
    }

    #[test]
    fn top_level_timeout_seconds_must_be_positive() {
        let top = |t: Value| {
            errs(
                json!({"TimeoutSeconds":t,"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}}),
            )
        };
        assert!(top(json!(1)).is_empty());
        for bad in [json!(0), json!(-1), json!(1.5), json!("10")] {
            let e = top(bad.clone());
            assert_eq!(e.len(), 1, "{bad}: {e:?}");
            assert!(
                e[0].starts_with("/TimeoutSeconds: ") && e[0].contains("positive integer"),
                "{e:?}"
            );
        }
        // A Task's TimeoutSeconds and HeartbeatSeconds: positive integers too (ASL spec).
        for f in ["TimeoutSeconds", "HeartbeatSeconds"] {
            let e = errs(json!({"StartAt":"T","States":{"T":{"Type":"Task",
                "Resource":"arn:aws:lambda:us-east-1:1:function:f", f: 0, "End":true}}}));
            assert_eq!(e.len(), 1, "{f}: {e:?}");
            assert!(e[0].starts_with(&format!("/States/T/{f}: ")), "{e:?}");
        }
    }

    #[test]
    fn validation_reports_every_compile_error_the_model_would_hit() {
        // JSONata in these numeric and Items fields used to be compiled only while building
        // the model, so `validate` called such a definition valid and `Definition::parse`
        // rejected it. One pass: both report the same diagnostic.
        let ja =
            |state: Value| json!({"QueryLanguage":"JSONata","StartAt":"S","States":{"S":state}});
        for (state, at) in [
            (
                json!({"Type":"Task","Resource":"arn:aws:lambda:us-east-1:1:function:f",
                    "TimeoutSeconds":"{% $states.input.t + %}","End":true}),
                "/States/S/TimeoutSeconds",
            ),
            (
                json!({"Type":"Wait","Seconds":"{% ( %}","End":true}),
                "/States/S/Seconds",
            ),
            (
                json!({"Type":"Map","Items":"{% [1, %}","MaxConcurrency":"{% 1 + %}",
                    "ItemProcessor":{"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}},
                    "End":true}),
                "/States/S/Items",
            ),
        ] {
            let def = ja(state);
            let diags = validate(&def);
            assert!(
                diags
                    .iter()
                    .any(|d| d.path == at && d.state.as_deref() == Some("S")),
                "{at}: {diags:#?}"
            );
            match Definition::from_value(def) {
                Err(crate::model::DefinitionError::Invalid(found)) => assert_eq!(found, diags),
                other => panic!("{at}: expected the same diagnostics, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_bad_condition_is_reported_once() {
        // The Choice rule compiles its Condition; the field check adds only the delimiter
        // rules, not a second parse with a second copy of the syntax error.
        let e = errs(json!({"QueryLanguage":"JSONata","StartAt":"C","States":{
            "C":{"Type":"Choice","Choices":[{"Condition":"{% 1 + %}","Next":"D"}],"Default":"D"},
            "D":{"Type":"Succeed"}}}));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("/States/C/Choices/0/Condition: state \"C\": "),
            "{e:?}"
        );
    }

    #[test]
    fn the_model_holds_what_the_pass_compiled() {
        use crate::model::{FailField, Kind, PathField, ResultPathField, Setting, WaitFor};
        let (model, diags) = Definition::parse_with_diagnostics(&json!({"StartAt":"T","States":{
            "T":{"Type":"Task","Resource":"arn:aws:lambda:us-east-1:1:function:f",
                 "InputPath":"$.in","OutputPath":null,"ResultPath":"$.out",
                 "Parameters":{"a.$":"$.a"},"TimeoutSecondsPath":"$.t",
                 "Retry":[{"ErrorEquals":["States.ALL"]}],
                 "Catch":[{"ErrorEquals":["States.ALL"],"ResultPath":null,"Next":"F"}],
                 "Next":"M"},
            "M":{"Type":"Map","ItemsPath":"$.xs","Parameters":{"x.$":"$$.Map.Item.Value"},
                 "ItemProcessor":{"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}},
                 "Next":"W"},
            "W":{"Type":"Wait","SecondsPath":"$.s","Next":"F"},
            "F":{"Type":"Fail","ErrorPath":"$.e","Cause":"boom"}}}));
        assert_eq!(diags, vec![]);
        let model = model.expect("valid definition has a model");
        let state = |n: &str| model.machine.get(n).expect("state exists");
        let t = state("T");
        assert!(matches!(t.input_path, PathField::Path(_)));
        assert_eq!(t.output_path, PathField::Null);
        assert!(matches!(t.result_path, ResultPathField::Path(_)));
        assert!(t.parameters.is_some());
        assert!(matches!(
            t.kind,
            Kind::Task {
                timeout_seconds: Some(Setting::Path(_)),
                heartbeat_seconds: None,
                ..
            }
        ));
        assert_eq!(t.retry.len(), 1);
        assert_eq!((t.retry[0].max_attempts, t.retry[0].backoff_rate), (3, 2.0));
        assert_eq!(t.catch[0].result_path, ResultPathField::Null);
        let m = state("M");
        // A Map's Parameters is its ItemSelector, not a state-level Parameters.
        assert!(m.parameters.is_none());
        match &m.kind {
            Kind::Map {
                item_selector,
                items_path,
                processor,
                ..
            } => {
                assert!(item_selector.is_some());
                assert!(matches!(items_path, PathField::Path(_)));
                assert_eq!(processor.start_at, "P");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            state("W").kind,
            Kind::Wait {
                wait: WaitFor::SecondsPath(_)
            }
        ));
        assert!(matches!(
            state("F").kind,
            Kind::Fail {
                error: Some(FailField::Path(_)),
                cause: Some(FailField::Value(_))
            }
        ));
    }

    #[test]
    fn jsonata_delimiters() {
        for (out, ok) in [
            ("{% 10 %}", true),
            ("{%10%}", false),
            ("10 %}", false),
            ("{% \n10 %}", false),
            ("plain", true),
        ] {
            let e = errs(
                json!({"QueryLanguage":"JSONata","StartAt":"A","States":{"A":{"Type":"Pass","Output":out,"End":true}}}),
            );
            assert_eq!(e.is_empty(), ok, "{out:?}: {e:?}");
        }
    }
}
