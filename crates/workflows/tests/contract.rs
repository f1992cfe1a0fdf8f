//! The contracts the state machines and the Lambda rely on: error names, actions, ASL shape,
//! IAM coverage.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;
use workflows::{WORKFLOWS, errors, handlers, iam};

fn states_of(machine: &Value, out: &mut Vec<(String, Value)>) {
    for (name, state) in machine["States"].as_object().expect("States") {
        out.push((name.clone(), state.clone()));
        for inner in [&state["ItemProcessor"], &state["Iterator"]] {
            if inner.is_object() {
                states_of(inner, out);
            }
        }
    }
}

fn all_states(workflow: &str) -> Vec<(String, Value)> {
    let definition: Value =
        serde_json::from_str(workflows::raw_definition(workflow).unwrap()).unwrap();
    let mut out = Vec::new();
    states_of(&definition, &mut out);
    out
}

#[test]
fn error_names_are_stable_and_unique() {
    let unique: BTreeSet<_> = errors::ALL.iter().collect();
    assert_eq!(unique.len(), errors::ALL.len());
    for name in errors::ALL {
        assert!(
            name.starts_with("Fleetprep.") || *name == "Sandbox.Timedout",
            "{name}"
        );
    }
    // Pinned: renaming one breaks deployed state machines' Retry/Catch.
    assert_eq!(errors::THROTTLED, "Fleetprep.Throttled");
    assert_eq!(errors::NAME_POOL_EXHAUSTED, "Fleetprep.NamePoolExhausted");
    assert_eq!(
        errors::LIFECYCLE_ACTION_EXPIRED,
        "Fleetprep.LifecycleActionExpired"
    );
}

#[test]
fn every_definition_parses_and_validates() {
    for workflow in WORKFLOWS {
        let text = workflows::definition(
            workflow,
            "arn:aws:lambda:us-east-1:123456789012:function:fleetprep",
        )
        .unwrap();
        asl::model::Definition::parse(&text).unwrap_or_else(|e| panic!("{workflow}.asl.json: {e}"));
    }
}

#[test]
fn every_task_invokes_the_function_with_a_known_action_and_retries_with_full_jitter() {
    let known: BTreeSet<&str> = handlers::actions().collect();
    for workflow in WORKFLOWS {
        for (name, state) in all_states(workflow) {
            if state["Type"] != "Task" {
                continue;
            }
            let at = format!("{workflow}.asl.json: state {name:?}");
            assert_eq!(state["Resource"], "arn:aws:states:::lambda:invoke", "{at}");
            assert_eq!(
                state["Parameters"]["FunctionName"], "${FleetprepFunctionArn}",
                "{at}: FunctionName must be the DefinitionSubstitutions placeholder"
            );
            let action = state["Parameters"]["Payload"]["action"]
                .as_str()
                .unwrap_or("");
            assert!(known.contains(action), "{at}: unknown action {action:?}");
            assert!(
                state["TimeoutSeconds"].as_u64().is_some(),
                "{at}: no TimeoutSeconds"
            );
            let retries = state["Retry"].as_array().cloned().unwrap_or_default();
            let throttling = retries.iter().find(|r| {
                r["ErrorEquals"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|x| x == errors::THROTTLED))
            });
            let throttling = throttling.unwrap_or_else(|| panic!("{at}: no Retry on throttling"));
            assert_eq!(throttling["JitterStrategy"], "FULL", "{at}");
            assert!(
                throttling["BackoffRate"].as_f64().unwrap_or(0.0) > 1.0,
                "{at}"
            );
        }
    }
}

#[test]
fn every_task_outside_the_failure_path_is_caught() {
    // Failure-path states catch into the next failure-path state themselves.
    for workflow in WORKFLOWS {
        for (name, state) in all_states(workflow) {
            let caught = state["Catch"].as_array().is_some_and(|c| !c.is_empty());
            if state["Type"] == "Task" && !caught {
                // Inside a Map, the Map state's Catch covers the iteration.
                let in_map = ["SendScript", "CheckScript"].contains(&name.as_str());
                assert!(in_map, "{workflow}: task {name:?} has no Catch");
            }
        }
    }
}

#[test]
fn every_action_declares_its_iam_actions() {
    for action in handlers::actions() {
        assert!(iam::actions(action).is_some(), "{action}");
    }
    assert!(iam::all_actions().contains(&"ec2:RunInstances"));
}

/// A handler context on the simulated fleet (no engine: handlers are called directly).
fn context() -> workflows::Context {
    let clock: Arc<dyn clock::Clock> = Arc::new(clock::VirtualClock::new(
        UNIX_EPOCH + Duration::from_secs(1_790_000_000),
    ));
    let policy = sysprep::hostname::HostnamePolicy::from_pattern("{prefix}-{seq:3}", "WEB")
        .expect("pattern");
    let pool =
        names::SqliteNamePool::in_memory(policy, clock.clone(), Default::default()).expect("pool");
    let sim = cloud::sim::SimCloud::new(clock.clone(), Arc::new(pool), Default::default());
    workflows::Context::new(Arc::new(sim), clock)
}

#[tokio::test(flavor = "current_thread")]
async fn dispatch_rejects_bad_payloads_with_invalid_input() {
    let context = context();
    let error = workflows::dispatch(serde_json::json!({"no": "action"}), &context)
        .await
        .unwrap_err();
    assert_eq!(error.error, errors::INVALID_INPUT);
    let error = workflows::dispatch(serde_json::json!({"action": "explode"}), &context)
        .await
        .unwrap_err();
    assert_eq!(error.error, errors::INVALID_INPUT);
    assert!(error.cause.contains("known actions"), "{}", error.cause);
    let error = workflows::dispatch(
        serde_json::json!({"action": "terminate_instance"}),
        &context,
    )
    .await
    .unwrap_err();
    assert!(error.cause.contains("\"instance_id\""), "{}", error.cause);
}
