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
        for branch in state["Branches"].as_array().into_iter().flatten() {
            states_of(branch, out);
        }
    }
}

/// The action a Task invokes and the payload fields it builds: the keys of
/// `Parameters.Payload` (JSONPath; a `.$` suffix only says the value is a path) or of
/// `Arguments.Payload` (JSONata), envelope fields excluded.
fn task_payload(state: &Value) -> Option<(String, Vec<String>)> {
    let payload = state["Parameters"]["Payload"]
        .as_object()
        .or_else(|| state["Arguments"]["Payload"].as_object())?;
    let action = payload
        .get("action")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_default();
    let fields = payload
        .keys()
        .map(|key| key.strip_suffix(".$").unwrap_or(key).to_owned())
        .filter(|key| !handlers::ENVELOPE.contains(&key.as_str()))
        .collect();
    Some((action, fields))
}

/// Problems with one Task's payload against its action's request type, as messages.
fn check_task(at: &str, action: &str, fields: &[String]) -> Vec<String> {
    let Some(row) = handlers::action(action) else {
        return vec![format!("{at}: unknown action {action:?}")];
    };
    let declared = (row.request_fields)();
    let mut problems: Vec<String> = fields
        .iter()
        .filter(|field| !declared.contains(&field.as_str()))
        .map(|field| {
            format!(
                "{at}: payload field {field:?} is not a field of {} ({declared:?}); rename it in \
                 the ASL or the request type",
                row.request_type
            )
        })
        .collect();
    if problems.is_empty() {
        let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
        if let Err(error) = (row.check_fields)(&fields) {
            problems.push(format!(
                "{at}: the payload does not make a {}: {error}",
                row.request_type
            ));
        }
    }
    problems
}

#[test]
fn every_task_payload_builds_exactly_its_request_type() {
    let mut problems = Vec::new();
    let mut checked = BTreeSet::new();
    for workflow in WORKFLOWS {
        for (name, state) in all_states(workflow) {
            if state["Type"] != "Task" {
                continue;
            }
            let at = format!("{workflow}.asl.json: state {name:?}");
            let Some((action, fields)) = task_payload(&state) else {
                problems.push(format!("{at}: no Payload object"));
                continue;
            };
            problems.extend(check_task(&at, &action, &fields));
            checked.insert(action);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Every action in the table is invoked by some state machine.
    let unused: Vec<&str> = handlers::actions()
        .filter(|action| !checked.contains(*action))
        .collect();
    assert!(unused.is_empty(), "no Task invokes {unused:?}");
}

#[test]
fn the_payload_check_catches_renamed_missing_and_extra_fields() {
    let at = "test";
    // What the ASL builds for terminate_instance today passes.
    assert_eq!(
        check_task(at, "terminate_instance", &["instance_id".into()]),
        Vec::<String>::new()
    );
    // A field renamed on one side only.
    let renamed = check_task(at, "terminate_instance", &["instance".into()]);
    assert!(
        renamed[0].contains("\"instance\" is not a field of InstanceRequest"),
        "{renamed:?}"
    );
    // A required field left out; optional ones may be.
    let missing = check_task(at, "check_image", &["wait".into()]);
    assert!(
        missing[0].contains("missing field `image_id`"),
        "{missing:?}"
    );
    assert!(check_task(at, "check_image", &["image_id".into()]).is_empty());
    // Nested request types with required fields of their own still deserialize.
    assert!(check_task(at, "complete_lifecycle", &["hook".into(), "result".into()]).is_empty());
    assert!(check_task(at, "launch_builder", &["config".into()]).is_empty());
    assert!(check_task(at, "launch_rockets", &[])[0].contains("unknown action"));
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

/// Whether a state is a poll that may record a lifecycle heartbeat: a Task handed the hook and
/// the wait.
fn records_heartbeats(state: &Value) -> bool {
    let payload = &state["Parameters"]["Payload"];
    state["Type"] == "Task" && payload["hook.$"].is_string() && payload["wait.$"].is_string()
}

/// The most seconds of Wait on any path (Next, Choices, Default; a Catch leaves for the
/// failure path) from `name` to the next poll that may record a heartbeat, or to the end.
fn longest_wait_to_next_poll(states: &Value, name: &str, seen: &mut Vec<String>) -> u64 {
    let state = &states[name];
    if records_heartbeats(state) || seen.iter().any(|s| s == name) {
        return 0;
    }
    seen.push(name.to_string());
    let own = state["Seconds"].as_u64().unwrap_or(0);
    let mut next: Vec<&str> = Vec::new();
    next.extend(state["Next"].as_str());
    next.extend(state["Default"].as_str());
    for choice in state["Choices"].as_array().into_iter().flatten() {
        next.extend(choice["Next"].as_str());
    }
    let longest = next
        .into_iter()
        .map(|n| longest_wait_to_next_poll(states, n, seen))
        .max()
        .unwrap_or(0);
    seen.pop();
    own + longest
}

#[test]
fn every_poll_that_heartbeats_knows_how_soon_its_next_poll_comes() {
    // A poll records a heartbeat only when the hook could time out before the next one
    // (`handlers::heartbeat_due`): a poll that claimed less than the Waits ahead of it would
    // let the hook expire. The completion loop computes its own wait (`retry_seconds`).
    let mut polls = 0;
    for workflow in WORKFLOWS {
        let definition: Value =
            serde_json::from_str(workflows::raw_definition(workflow).unwrap()).unwrap();
        let states = &definition["States"];
        for (name, state) in states.as_object().expect("States") {
            let payload = &state["Parameters"]["Payload"];
            if !records_heartbeats(state) || payload["action"] == "complete_lifecycle" {
                continue;
            }
            polls += 1;
            let longest = state["Next"].as_str().map_or(0, |n| {
                longest_wait_to_next_poll(states, n, &mut vec![name.clone()])
            });
            let declared = payload["next_poll_within_seconds"].as_u64();
            assert_eq!(
                declared,
                Some(longest),
                "{workflow}: {name} must declare next_poll_within_seconds = {longest}, the \
                 longest Wait before the next poll that may record a heartbeat"
            );
        }
    }
    assert!(polls >= 7, "{polls}");
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
    assert!(error.cause.contains("instance_id"), "{}", error.cause);
    // A field the request type does not have is an error too, not silently ignored.
    let error = workflows::dispatch(
        serde_json::json!({"action": "terminate_instance", "instance_id": "i-1", "instance": "i-2"}),
        &context,
    )
    .await
    .unwrap_err();
    assert_eq!(error.error, errors::INVALID_INPUT);
    assert!(
        error.cause.contains("unknown field `instance`"),
        "{}",
        error.cause
    );
}
