//! Stable-Rust mirror of `fuzz/fuzz_targets/asl_definition.rs`: arbitrary text and generated
//! definitions go through parsing, validation and model building without panicking, the two
//! entry points agree, and every definition that loads also *runs* (the decider, firing
//! timers as they come) to a terminal status or a clean wait, never a panic.

use std::time::{Duration, UNIX_EPOCH};

use asl::interp::{Command, Event, Execution, ExecutionInfo, Options, Status};
use asl::model::{Definition, DefinitionError};
use proptest::prelude::*;
use serde_json::{Value, json};

fn check_text(text: &str) {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        assert!(matches!(
            Definition::parse(text),
            Err(DefinitionError::Json(_))
        ));
        return;
    };
    let diags = asl::validate::validate(&value);
    for d in &diags {
        let _ = d.to_string();
    }
    match Definition::parse(text) {
        Ok(def) => {
            assert!(diags.is_empty(), "model accepted what validate rejected");
            run(&def);
        }
        Err(DefinitionError::Invalid(found)) => assert!(!found.is_empty()),
        Err(DefinitionError::Json(e)) => panic!("valid JSON reported as unreadable: {e}"),
    }
}

/// Runs a definition on the pure decider, firing timers in order; tasks fail (no handlers).
fn run(def: &Definition) {
    let mut now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let opts = Options {
        record_history: true,
        history_limit: 2_000,
    };
    let (mut ex, step) = Execution::start(
        def,
        ExecutionInfo::local("fuzz", "run"),
        json!({"a": [1, 2, {"b": "x"}], "n": 3, "s": "str"}),
        1,
        now,
        opts,
    );
    let mut pending: Vec<Command> = step.commands;
    for _ in 0..200 {
        if ex.status != Status::Running {
            return;
        }
        let Some(c) = pending.pop() else { return };
        let ev = match c {
            Command::ScheduleTask { token, .. } => Event::TaskFailed {
                token,
                error: "Fuzz.NoHandler".into(),
                cause: None,
            },
            Command::StartTimer { token, fire_at } => {
                now = now.max(fire_at);
                Event::TimerFired { token }
            }
            Command::CancelTimer { .. } | Command::Complete { .. } => continue,
        };
        if let Ok(step) = ex.handle(def, ev, now) {
            pending.extend(step.commands);
        }
    }
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("A".to_owned()),
        Just("B".to_owned()),
        Just("C".to_owned())
    ]
}

fn path() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("$")),
        Just(json!("$.a")),
        Just(json!("$.a[0]")),
        Just(json!("$.missing")),
        Just(json!(null)),
        Just(json!("$$.Execution.Input")),
        "[$.a-z\\[\\]0-9*]{0,8}".prop_map(Value::String),
    ]
}

fn state() -> impl Strategy<Value = Value> {
    let flow = prop_oneof![
        name().prop_map(|n| json!({"Next": n})),
        Just(json!({"End": true}))
    ];
    (0..8u8, flow, path(), path(), name()).prop_map(|(kind, flow, p1, p2, n)| {
        let mut s = match kind {
            0 => json!({"Type": "Pass", "InputPath": p1, "ResultPath": p2}),
            1 => json!({"Type": "Pass", "Parameters": {"x.$": p1, "c": 1}}),
            2 => json!({"Type": "Choice", "Choices": [{"Variable": p1, "NumericEquals": 3, "Next": n}], "Default": n}),
            3 => json!({"Type": "Wait", "SecondsPath": p1}),
            4 => json!({"Type": "Fail", "Error": "E", "CausePath": p1}),
            5 => json!({"Type": "Map", "ItemsPath": p1, "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Pass", "End": true}}}}),
            6 => json!({"Type": "Parallel", "Branches": [{"StartAt": "Q", "States": {"Q": {"Type": "Pass", "OutputPath": p2, "End": true}}}],
                        "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 2}]}),
            _ => json!({"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f", "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 1}]}),
        };
        if !matches!(kind, 2 | 4) {
            if let (Some(o), Some(f)) = (s.as_object_mut(), flow.as_object()) {
                o.extend(f.clone());
            }
        }
        s
    })
}

fn definition() -> impl Strategy<Value = Value> {
    (state(), state(), state(), name())
        .prop_map(|(a, b, c, start)| json!({"StartAt": start, "States": {"A": a, "B": b, "C": c}}))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,200}") {
        check_text(&text);
    }

    #[test]
    fn generated_definitions_validate_build_and_run_without_panics(def in definition()) {
        check_text(&def.to_string());
    }
}

#[test]
fn infinite_pass_loop_stops_at_the_history_limit() {
    let def = Definition::parse(
        r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Next":"B"},"B":{"Type":"Pass","Next":"A"}}}"#,
    );
    // No terminal state: invalid.
    assert!(def.is_err());
    let def = Definition::parse(
        r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Next":"C"},"C":{"Type":"Choice","Choices":[{"Variable":"$.stop","IsPresent":true,"Next":"D"}],"Default":"A"},"D":{"Type":"Succeed"}}}"#,
    )
    .unwrap();
    let (ex, step) = Execution::start(
        &def,
        ExecutionInfo::local("loop", "run"),
        json!({}),
        1,
        UNIX_EPOCH,
        Options::default(),
    );
    assert_eq!(ex.status, Status::Failed);
    assert_eq!(step.history.len(), 25_000);
    assert_eq!(ex.error.as_deref(), Some("States.Runtime"));
}
