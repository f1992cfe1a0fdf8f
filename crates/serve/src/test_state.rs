//! TestState (AWS Step Functions API Reference, "TestState"): runs one state on its own and
//! answers its output or error, the next state, a status (`SUCCEEDED`, `FAILED`, `RETRIABLE`,
//! `CAUGHT_ERROR`) and, at inspection level DEBUG or TRACE, the data flow through it.
//!
//! The state runs on a fresh in-memory engine, inside a definition made for it: the state
//! itself as `StartAt`, with every state it can go to (`Next`, Choice rules and `Default`,
//! Catch) replaced by a `Succeed` state of that name, so the engine's own semantics decide,
//! and the history says where it went. A Task's answer is the request's `mock` (`result`, or
//! `errorOutput`); without a mock a Task fails, as the server calls no real service.
//!
//! What the history cannot show is left out: `inspectionData` has `input`,
//! `afterParameters` (a Task's rendered parameters), `result` and `afterResultPath` (the
//! state's output), not the intermediate `afterInputPath` and `afterResultSelector`.

use std::sync::Arc;

use async_trait::async_trait;
use engine::{Engine, EngineConfig, TaskContext, TaskError, TaskHandler};
use serde_json::{Map, Value, json};

use crate::protocol::{ApiError, invalid_definition, optional, required};

/// The mocked answer of every Task invocation.
struct Mocked(Result<Value, TaskError>);

#[async_trait]
impl TaskHandler for Mocked {
    async fn invoke(&self, _input: Value, _ctx: TaskContext) -> Result<Value, TaskError> {
        self.0.clone()
    }

    // `mock.result` is the integration's whole response, as TestState documents it.
    fn returns_service_response(&self) -> bool {
        true
    }
}

fn bad_definition(message: impl Into<String>) -> ApiError {
    ApiError::client(
        "InvalidDefinition",
        format!("Invalid State Machine Definition: '{}'", message.into()),
    )
}

/// The state under test, its name, and the top-level `QueryLanguage` it inherits.
type StateUnderTest = (String, Map<String, Value>, Option<Value>);

/// The state under test: the `definition` is one state, or a whole state machine with
/// `stateName` choosing the state (its `StartAt` by default).
fn state_of(request: &Value) -> Result<StateUnderTest, ApiError> {
    let text = required(request, "definition")?;
    let def: Value = serde_json::from_str(text)
        .map_err(|e| bad_definition(format!("INVALID_JSON_DESCRIPTION: {e}")))?;
    let Value::Object(mut obj) = def else {
        return Err(bad_definition("the definition must be a JSON object"));
    };
    if let Some(Value::Object(states)) = obj.get("States") {
        let name = match optional(request, "stateName")? {
            Some(n) => n.to_owned(),
            None => obj
                .get("StartAt")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        };
        let state = match states.get(&name) {
            Some(Value::Object(s)) => s.clone(),
            _ => {
                return Err(ApiError::validation(format!(
                    "stateName \"{name}\" is not a state of the definition"
                )));
            }
        };
        let top_ql = obj.remove("QueryLanguage");
        return Ok((name, state, top_ql));
    }
    let name = optional(request, "stateName")?
        .unwrap_or("TestState")
        .to_owned();
    Ok((name, obj, None))
}

/// Every state name `state` can go to.
fn targets(state: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |v: Option<&Value>| {
        if let Some(Value::String(s)) = v {
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
    };
    push(state.get("Next"));
    push(state.get("Default"));
    for list in ["Choices", "Catch"] {
        if let Some(Value::Array(items)) = state.get(list) {
            for item in items {
                push(item.get("Next"));
            }
        }
    }
    out
}

/// API Reference, "TestState".
pub fn test_state(request: &Value, account: &str, region: &str) -> Result<Value, ApiError> {
    let (name, state, top_ql) = state_of(request)?;
    let level = optional(request, "inspectionLevel")?.unwrap_or("INFO");
    if !["INFO", "DEBUG", "TRACE"].contains(&level) {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{level}' at 'inspectionLevel' failed to satisfy constraint: Member must satisfy enum value set: [INFO, DEBUG, TRACE]"
        )));
    }
    let input_text = optional(request, "input")?.unwrap_or("{}");
    let input: Value = serde_json::from_str(input_text).map_err(|e| {
        ApiError::client(
            "InvalidExecutionInput",
            format!("Invalid State Machine Execution Input: '{e}'"),
        )
    })?;
    let mut states = Map::new();
    for target in targets(&state) {
        if target != name {
            states.insert(target, json!({"Type": "Succeed"}));
        }
    }
    let is_terminal = state.get("End") == Some(&Value::Bool(true));
    states.insert(name.clone(), Value::Object(state));
    let mut def = json!({"StartAt": name, "States": states});
    if let Some(ql) = top_ql {
        def["QueryLanguage"] = ql;
    }
    let text = def.to_string();
    asl::model::Definition::parse(&text).map_err(|e| invalid_definition(&e))?;

    let mock = match request.get("mock").filter(|m| !m.is_null()) {
        None => Err(TaskError::new(
            "States.TaskFailed",
            "TestState on fleetprep serve calls no real service: give the Task a mock (mock.result or mock.errorOutput)",
        )),
        Some(m) => match (
            m.get("result").and_then(Value::as_str),
            m.get("errorOutput"),
        ) {
            (Some(r), _) => Ok(serde_json::from_str(r)
                .map_err(|e| ApiError::validation(format!("mock.result is not JSON: {e}")))?),
            (None, Some(e)) => Err(TaskError::new(
                e.get("error").and_then(Value::as_str).unwrap_or_default(),
                e.get("cause").and_then(Value::as_str).unwrap_or_default(),
            )),
            (None, None) => {
                return Err(ApiError::validation("mock needs result or errorOutput"));
            }
        },
    };
    let machine = format!("arn:aws:states:{region}:{account}:stateMachine:TestState");
    let history = run(&machine, &text, input.clone(), Mocked(mock))?;
    Ok(answer(&name, &history, &input, level, is_terminal))
}

/// Runs the one-state machine on its own engine (a virtual clock: a Wait answers at once).
fn run(
    machine: &str,
    definition: &str,
    input: Value,
    mock: Mocked,
) -> Result<Vec<asl::history::HistoryEvent>, ApiError> {
    let engine = Engine::open(EngineConfig {
        store: None,
        clock: Arc::new(clock::VirtualClock::new(clock::Clock::now(
            &clock::SystemClock,
        ))),
    })?;
    engine.register_fallback(Arc::new(mock));
    engine.create_state_machine(machine, definition)?;
    let arn = engine.start_execution(machine, Some("test"), input)?;
    // The engine's driver is async; TestState is answered from a request task, so run it on
    // a small runtime of its own, off the request's runtime thread.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let engine2 = engine.clone();
    let arn2 = arn.clone();
    std::thread::scope(|s| {
        s.spawn(move || rt.block_on(engine2.run_until_complete(&arn2)))
            .join()
            .map_err(|_| ApiError::internal("TestState's engine panicked"))?
            .map_err(ApiError::from)
    })?;
    Ok(engine.history(&arn)?)
}

fn parse(text: &Option<String>) -> Option<Value> {
    text.as_deref().and_then(|t| serde_json::from_str(t).ok())
}

/// The response, from the one-state execution's history.
fn answer(
    name: &str,
    history: &[asl::history::HistoryEvent],
    input: &Value,
    level: &str,
    is_terminal: bool,
) -> Value {
    let mut output = None;
    let mut error: Option<(String, String)> = None;
    let mut next_state = None;
    let mut parameters = None;
    let mut result = None;
    let mut retried = false;
    let mut exited = false;
    let mut scheduled = 0;
    for e in history {
        if let Some(d) = &e.state_entered_event_details {
            if d.name != name && exited {
                next_state.get_or_insert_with(|| d.name.clone());
            }
        }
        if let Some(d) = &e.state_exited_event_details {
            if d.name == name {
                exited = true;
                output = parse(&d.output);
            }
        }
        if let Some(d) = &e.task_scheduled_event_details {
            scheduled += 1;
            if scheduled > 1 {
                retried = true;
            }
            parameters.get_or_insert_with(|| parse(&Some(d.parameters.clone())));
        }
        if let Some(d) = &e.task_succeeded_event_details {
            result = parse(&d.output);
        }
        for d in [
            &e.task_failed_event_details,
            &e.task_timed_out_event_details,
        ]
        .into_iter()
        .flatten()
        {
            error.get_or_insert_with(|| {
                (
                    d.error.clone().unwrap_or_default(),
                    d.cause.clone().unwrap_or_default(),
                )
            });
        }
        if let Some(d) = &e.execution_failed_event_details {
            error = Some((
                d.error.clone().unwrap_or_default(),
                d.cause.clone().unwrap_or_default(),
            ));
        }
    }
    let failed = history
        .last()
        .is_some_and(|e| e.execution_failed_event_details.is_some());
    let caught = !failed && error.is_some() && next_state.is_some();
    let status = if retried && error.is_some() {
        "RETRIABLE"
    } else if failed {
        "FAILED"
    } else if caught {
        "CAUGHT_ERROR"
    } else {
        "SUCCEEDED"
    };
    let mut out = json!({"status": status});
    if status == "RETRIABLE" {
        // TestState stops at the first retriable error instead of retrying.
        next_state = None;
        output = None;
    }
    if status != "FAILED" && status != "RETRIABLE" {
        if let Some(o) = &output {
            out["output"] = json!(o.to_string());
        }
    }
    if let Some((e, c)) = &error {
        if status != "SUCCEEDED" {
            out["error"] = json!(e);
            out["cause"] = json!(c);
        }
    }
    if !is_terminal && status != "FAILED" {
        if let Some(n) = next_state {
            out["nextState"] = json!(n);
        }
    }
    if level != "INFO" {
        let mut data = json!({"input": input.to_string()});
        if let Some(Some(p)) = parameters {
            data["afterParameters"] = json!(p.to_string());
        }
        if let Some(r) = result {
            data["result"] = json!(r.to_string());
        }
        if let (Some(o), true) = (&output, status == "SUCCEEDED" || status == "CAUGHT_ERROR") {
            data["afterResultPath"] = json!(o.to_string());
        }
        out["inspectionData"] = data;
    }
    out
}
