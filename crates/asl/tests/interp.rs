//! The decider on its own: determinism across serialisation (what crash recovery relies on),
//! commands for tasks and timers, Parallel/Map with tasks, limits, JSONata tasks.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use asl::history::EventType;
use asl::interp::{Command, Event, Execution, ExecutionInfo, Options, Status, Step};
use asl::model::Definition;
use serde_json::{Value, json};

const FN: &str = "arn:aws:lambda:us-east-1:123456789012:function:F";

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn start(def: &Definition, input: Value) -> (Execution, Step) {
    Execution::start(
        def,
        ExecutionInfo::local("sm", "e"),
        input,
        9,
        t0(),
        Options::default(),
    )
}

/// Answers every task with `f(input)` and fires timers in deadline order; optionally
/// round-trips the decider state through JSON before every event (as a restart would).
fn drive(
    def: &Definition,
    input: Value,
    roundtrip: bool,
    f: impl Fn(&Value) -> Result<Value, String>,
) -> (Execution, Vec<asl::history::HistoryEvent>) {
    let (mut ex, step) = start(def, input);
    let mut history = step.history;
    let mut pending = step.commands;
    let mut now = t0();
    while ex.status == Status::Running {
        // Tasks first (in order), then the earliest timer.
        let pos = pending
            .iter()
            .position(|c| matches!(c, Command::ScheduleTask { .. }))
            .or_else(|| {
                pending
                    .iter()
                    .enumerate()
                    .filter_map(|(i, c)| match c {
                        Command::StartTimer { fire_at, .. } => Some((i, *fire_at)),
                        _ => None,
                    })
                    .min_by_key(|(_, t)| *t)
                    .map(|(i, _)| i)
            });
        let Some(pos) = pos else { break };
        let ev = match pending.remove(pos) {
            Command::ScheduleTask { token, input, .. } => match f(&input) {
                Ok(output) => Event::TaskSucceeded { token, output },
                Err(e) => Event::TaskFailed {
                    token,
                    error: e,
                    cause: Some("because".into()),
                },
            },
            Command::StartTimer { token, fire_at } => {
                now = now.max(fire_at);
                Event::TimerFired { token }
            }
            _ => continue,
        };
        if roundtrip {
            let text = serde_json::to_string(&ex).unwrap();
            ex = serde_json::from_str(&text).unwrap();
        }
        match ex.handle(def, ev, now) {
            Ok(step) => {
                history.extend(step.history);
                pending.extend(
                    step.commands
                        .into_iter()
                        .filter(|c| !matches!(c, Command::CancelTimer { .. })),
                );
            }
            Err(_) => continue, // stale token (e.g. a cancelled timeout)
        }
    }
    (ex, history)
}

fn def(v: Value) -> Definition {
    Definition::from_value(v).expect("valid definition")
}

#[test]
fn serialised_state_replays_identically() {
    let d = def(json!({"StartAt":"P","States":{
        "P":{"Type":"Parallel","Branches":[
            {"StartAt":"T1","States":{"T1":{"Type":"Task","Resource":FN,"Retry":[{"ErrorEquals":["Odd"],"IntervalSeconds":1,"MaxAttempts":2,"JitterStrategy":"FULL"}],"End":true}}},
            {"StartAt":"W","States":{"W":{"Type":"Wait","Seconds":30,"Next":"T2"},"T2":{"Type":"Task","Resource":FN,"End":true}}}
        ],"Next":"M"},
        "M":{"Type":"Map","ItemsPath":"$[0].items","MaxConcurrency":2,
             "ItemProcessor":{"StartAt":"T3","States":{"T3":{"Type":"Task","Resource":FN,"End":true}}},"End":true}}}));
    let calls = std::cell::Cell::new(0);
    let f = |i: &Value| {
        calls.set(calls.get() + 1);
        if calls.get() == 1 {
            Err("Odd".to_owned())
        } else {
            Ok(json!({"items": [1, 2, 3], "echo": i}))
        }
    };
    let (a, ha) = drive(&d, json!({"x": 1}), false, f);
    calls.set(0);
    let (b, hb) = drive(&d, json!({"x": 1}), true, f);
    assert_eq!(a.status, Status::Succeeded, "{:?} {:?}", a.error, a.cause);
    assert_eq!(a.output, b.output);
    let strip = |h: &[asl::history::HistoryEvent]| -> Vec<Value> {
        h.iter().map(|e| serde_json::to_value(e).unwrap()).collect()
    };
    assert_eq!(strip(&ha), strip(&hb), "round-tripped decider diverged");
    assert_eq!(a.output.unwrap().as_array().unwrap().len(), 3);
}

#[test]
fn wait_emits_a_timer_and_exits_when_it_fires() {
    let d = def(json!({"StartAt":"W","States":{"W":{"Type":"Wait","Seconds":90,"End":true}}}));
    let (mut ex, step) = start(&d, json!({"k": 1}));
    assert_eq!(ex.status, Status::Running);
    let Some(Command::StartTimer { token, fire_at }) = step.commands.first().cloned() else {
        panic!("expected a timer, got {:?}", step.commands)
    };
    assert_eq!(fire_at, t0() + Duration::from_secs(90));
    assert!(
        ex.handle(&d, Event::TimerFired { token: token + 100 }, fire_at)
            .is_err(),
        "unknown token is rejected"
    );
    let step = ex.handle(&d, Event::TimerFired { token }, fire_at).unwrap();
    assert_eq!(ex.status, Status::Succeeded);
    let types: Vec<EventType> = step.history.iter().map(|e| e.event_type).collect();
    assert_eq!(
        types,
        vec![EventType::WaitStateExited, EventType::ExecutionSucceeded]
    );
}

#[test]
fn payload_over_256_kib_fails_with_data_limit_exceeded() {
    let big = "x".repeat(300 * 1024);
    let d = def(json!({"StartAt":"P","States":{"P":{"Type":"Pass","Result":big,"End":true}}}));
    let (ex, _) = start(&d, json!({}));
    assert_eq!(ex.status, Status::Failed);
    assert_eq!(ex.error.as_deref(), Some("States.DataLimitExceeded"));
}

#[test]
fn data_limit_is_not_caught_by_states_all() {
    let big = "x".repeat(300 * 1024);
    let d = def(json!({"StartAt":"T","States":{
        "T":{"Type":"Task","Resource":FN,"Catch":[{"ErrorEquals":["States.ALL"],"Next":"C"}],"End":true},
        "C":{"Type":"Pass","End":true}}}));
    let (ex, _) = drive(&d, json!({}), false, |_| Ok(json!(big)));
    assert_eq!(ex.error.as_deref(), Some("States.DataLimitExceeded"));
}

#[test]
fn jsonata_task_arguments_output_and_assign() {
    let d = def(json!({"QueryLanguage":"JSONata","StartAt":"T","States":{
        "T":{"Type":"Task","Resource":FN,"Arguments":{"n":"{% $states.input.n * 2 %}"},
             "Assign":{"seen":"{% $states.result.n %}"},
             "Output":{"r":"{% $states.result.n + 1 %}"},"Next":"U"},
        "U":{"Type":"Pass","Output":{"seen":"{% $seen %}","r":"{% $states.input.r %}"},"End":true}}}));
    let (ex, h) = drive(&d, json!({"n": 5}), false, |i| Ok(i.clone()));
    assert_eq!(
        ex.status,
        Status::Succeeded,
        "{:?} {:?}",
        ex.error,
        ex.cause
    );
    assert_eq!(ex.output, Some(json!({"seen": 10, "r": 11})));
    let exited = h
        .iter()
        .find(|e| e.event_type == EventType::LambdaFunctionSucceeded);
    assert!(exited.is_some());
}

#[test]
fn map_tolerated_failures_keep_error_outputs() {
    let d = def(
        json!({"StartAt":"M","States":{"M":{"Type":"Map","ToleratedFailureCount":1,
        "ItemProcessor":{"StartAt":"T","States":{"T":{"Type":"Task","Resource":FN,"End":true}}},"End":true}}}),
    );
    let (ex, _) = drive(&d, json!([1, 2, 3]), false, |i| {
        if i == &json!(2) {
            Err("Bad".into())
        } else {
            Ok(json!(0))
        }
    });
    assert_eq!(ex.status, Status::Succeeded, "{:?}", ex.cause);
    assert_eq!(
        ex.output,
        Some(json!([0, {"Error": "Bad", "Cause": "because"}, 0]))
    );
    let (ex, _) = drive(&d, json!([1, 2, 2]), false, |i| {
        if i == &json!(2) {
            Err("Bad".into())
        } else {
            Ok(json!(0))
        }
    });
    assert_eq!(
        ex.error.as_deref(),
        Some("States.ExceedToleratedFailureThreshold")
    );
}

#[test]
fn execution_timeout_times_out() {
    let d = def(
        json!({"TimeoutSeconds":10,"StartAt":"W","States":{"W":{"Type":"Wait","Seconds":60,"End":true}}}),
    );
    let (ex, h) = drive(&d, json!({}), false, |_| Ok(json!(null)));
    assert_eq!(ex.status, Status::TimedOut);
    assert_eq!(h.last().unwrap().event_type, EventType::ExecutionTimedOut);
}

#[test]
fn full_jitter_is_deterministic_for_a_seed_and_bounded() {
    let d = def(
        json!({"StartAt":"T","States":{"T":{"Type":"Task","Resource":FN,
        "Retry":[{"ErrorEquals":["E"],"IntervalSeconds":100,"MaxAttempts":1,"JitterStrategy":"FULL"}],"End":true}}}),
    );
    let delay = || {
        let (mut ex, step) = start(&d, json!({}));
        let Some(Command::ScheduleTask { token, .. }) = step
            .commands
            .into_iter()
            .find(|c| matches!(c, Command::ScheduleTask { .. }))
        else {
            panic!("no task")
        };
        let step = ex
            .handle(
                &d,
                Event::TaskFailed {
                    token,
                    error: "E".into(),
                    cause: None,
                },
                t0(),
            )
            .unwrap();
        step.commands
            .into_iter()
            .find_map(|c| match c {
                Command::StartTimer { fire_at, .. } => Some(fire_at.duration_since(t0()).unwrap()),
                _ => None,
            })
            .unwrap()
    };
    let (a, b) = (delay(), delay());
    assert_eq!(a, b);
    assert!(a <= Duration::from_secs(100));
}

// ---- Wait timestamps follow the same Step Functions rule as Choice comparisons ("an
// uppercase T must separate the date and time portions, and an uppercase Z must denote that a
// numeric time zone offset is not present"): one parser, `clock::parse_rfc3339`.

#[test]
fn wait_timestamp_path_rejects_what_a_choice_comparison_rejects() {
    let d = def(json!({"StartAt":"W","States":{
        "W":{"Type":"Wait","TimestampPath":"$.until","End":true}}}));
    for bad in ["2023-11-14t22:15:00z", "2023-02-30T00:00:00Z"] {
        assert_eq!(asl::choice::parse_timestamp(bad), None, "{bad}");
        let (ex, _) = start(&d, json!({"until": bad}));
        assert_eq!(ex.status, Status::Failed, "{bad}");
        assert_eq!(ex.error.as_deref(), Some("States.Runtime"), "{bad}");
    }
    let (ex, step) = start(&d, json!({"until": "2023-11-14T22:15:00Z"}));
    assert_eq!(ex.status, Status::Running);
    assert!(
        step.commands.iter().any(|c| matches!(c,
            Command::StartTimer { fire_at, .. } if *fire_at == t0() + Duration::from_secs(100))),
        "{:?}",
        step.commands
    );
}

#[test]
fn wait_until_a_time_before_the_epoch_is_a_past_time_not_a_bad_timestamp() {
    let d = def(json!({"StartAt":"W","States":{
        "W":{"Type":"Wait","TimestampPath":"$.until","End":true}}}));
    let (ex, _) = start(&d, json!({"until": "1969-07-20T20:17:40Z"}));
    assert_ne!(
        ex.error.as_deref(),
        Some("States.Runtime"),
        "{:?}",
        ex.cause
    );
}

#[test]
fn a_wait_timestamp_with_a_lowercase_t_or_z_fails_validation() {
    for stamp in ["2016-03-14t01:59:00Z", "2016-03-14T01:59:00z"] {
        let diagnostics = asl::validate::validate(&json!({"StartAt":"W","States":{
            "W":{"Type":"Wait","Timestamp":stamp,"End":true}}}));
        assert!(
            diagnostics.iter().any(|d| d.path == "/States/W/Timestamp"),
            "{stamp}: {diagnostics:?}"
        );
    }
    let ok = asl::validate::validate(&json!({"StartAt":"W","States":{
        "W":{"Type":"Wait","Timestamp":"2016-03-14T01:59:00Z","End":true}}}));
    assert!(ok.is_empty(), "{ok:?}");
}

/// The commands of one step, by kind: (tasks, timers started, timers cancelled).
fn split(commands: &[Command]) -> (Vec<u64>, Vec<(u64, SystemTime)>, Vec<u64>) {
    let (mut tasks, mut started, mut cancelled) = (Vec::new(), Vec::new(), Vec::new());
    for c in commands {
        match c {
            Command::ScheduleTask { token, .. } => tasks.push(*token),
            Command::StartTimer { token, fire_at } => started.push((*token, *fire_at)),
            Command::CancelTimer { token } => cancelled.push(*token),
            Command::Complete { .. } => {}
        }
    }
    (tasks, started, cancelled)
}

#[test]
fn a_heartbeat_restarts_the_heartbeat_timer_and_replays_identically() {
    let d = def(
        json!({"StartAt":"T","States":{"T":{"Type":"Task","Resource":FN,
        "HeartbeatSeconds":5,"TimeoutSeconds":60,"End":true}}}),
    );
    let (mut ex, step) = start(&d, json!({}));
    let (tasks, timers, _) = split(&step.commands);
    let task = tasks[0];
    // The timeout (60 s) and the heartbeat (5 s) timers.
    assert_eq!(timers.len(), 2);
    let (first_beat, deadline) = timers[1];
    assert_eq!(deadline, t0() + Duration::from_secs(5));
    assert_eq!(ex.waiting_tokens().len(), 3);
    assert_eq!(ex.task_heartbeat_monitored(task), Some(true));
    assert_eq!(ex.task_heartbeat_monitored(task + 100), None);

    // A heartbeat at +4 s: the old heartbeat timer goes, a new one fires at +9 s; no history.
    let at = t0() + Duration::from_secs(4);
    let step = ex
        .handle(&d, Event::TaskHeartbeat { token: task }, at)
        .unwrap();
    assert!(step.history.is_empty());
    let (_, timers, cancelled) = split(&step.commands);
    assert_eq!(cancelled, [first_beat]);
    assert_eq!(timers.len(), 1);
    let (second_beat, deadline) = timers[0];
    assert_eq!(deadline, t0() + Duration::from_secs(9));
    assert!(ex.waiting_tokens().contains(&second_beat));
    assert!(!ex.waiting_tokens().contains(&first_beat));
    // The replaced timer firing late is stale.
    assert!(
        ex.handle(&d, Event::TimerFired { token: first_beat }, at)
            .is_err()
    );

    // The same log replayed from a serialised start gives the same state.
    let text = serde_json::to_string(&ex).unwrap();
    let mut again: Execution = serde_json::from_str(&text).unwrap();
    let fired = t0() + Duration::from_secs(9);
    let a = ex
        .handle(&d, Event::TimerFired { token: second_beat }, fired)
        .unwrap();
    let b = again
        .handle(&d, Event::TimerFired { token: second_beat }, fired)
        .unwrap();
    assert_eq!(
        serde_json::to_value(&a.history).unwrap(),
        serde_json::to_value(&b.history).unwrap()
    );
    // The heartbeat timeout: LambdaFunctionTimedOut (States.Timeout), the timeout timer is
    // cancelled, the task is no longer waited on.
    assert!(
        a.history
            .iter()
            .any(|e| e.event_type == EventType::LambdaFunctionTimedOut)
    );
    assert_eq!(ex.status, Status::Failed);
    assert_eq!(ex.error.as_deref(), Some("States.Timeout"));
    assert_eq!(split(&a.commands).2.len(), 1);
    assert_eq!(ex.task_heartbeat_monitored(task), None);
}

#[test]
fn a_heartbeat_for_a_task_without_heartbeat_seconds_changes_nothing() {
    let d = def(json!({"StartAt":"T","States":{"T":{"Type":"Task","Resource":FN,"End":true}}}));
    let (mut ex, step) = start(&d, json!({}));
    let task = split(&step.commands).0[0];
    assert_eq!(ex.task_heartbeat_monitored(task), Some(false));
    let step = ex
        .handle(&d, Event::TaskHeartbeat { token: task }, t0())
        .unwrap();
    assert!(step.commands.is_empty() && step.history.is_empty());
}

#[test]
fn inner_scopes_read_outer_variables_and_keep_their_own() {
    // Developer guide, "Variable scope": Map iterations and Parallel branches read outer
    // variables; their own variables go out of scope when the state completes.
    let d = def(json!({"StartAt":"Init","States":{
        "Init":{"Type":"Pass","Assign":{"bias":10},"Next":"M"},
        "M":{"Type":"Map","ItemsPath":"$.items","ItemProcessor":{"StartAt":"Inner","States":{
            "Inner":{"Type":"Pass","Assign":{"mine.$":"$"},"Next":"Use"},
            "Use":{"Type":"Pass","Parameters":{"v.$":"States.MathAdd($mine, $bias)"},"End":true}}},
         "ResultPath":"$.r","Next":"After"},
        "After":{"Type":"Pass","Parameters":{"bias.$":"$bias","r.$":"$.r"},"Next":"Leak"},
        "Leak":{"Type":"Pass","Parameters":{"mine.$":"$mine"},"End":true}}}));
    let (ex, h) = drive(&d, json!({"items": [1, 2]}), false, |_| Ok(json!(null)));
    // Inside: $bias read from the outer scope. Outside: $mine does not exist any more.
    let after = h
        .iter()
        .filter_map(|e| e.state_exited_event_details.as_ref())
        .find(|d| d.name == "After")
        .and_then(|d| d.output.clone())
        .expect("After exited");
    let after: Value = serde_json::from_str(&after).unwrap();
    assert_eq!(after, json!({"bias": 10, "r": [{"v": 11}, {"v": 12}]}));
    assert_eq!(ex.status, Status::Failed);
    assert!(
        ex.cause.as_deref().unwrap_or_default().contains("mine"),
        "{:?} {:?}",
        ex.error,
        ex.cause
    );
}

#[test]
fn a_definition_reassigning_an_outer_variable_inside_a_map_is_rejected() {
    let text = json!({"StartAt":"Init","States":{
        "Init":{"Type":"Pass","Assign":{"x":1},"Next":"M"},
        "M":{"Type":"Map","ItemProcessor":{"StartAt":"Inner","States":{
            "Inner":{"Type":"Pass","Assign":{"x":2},"End":true}}},"End":true}}})
    .to_string();
    let err = Definition::parse(&text)
        .expect_err("AWS rejects it")
        .to_string();
    assert!(
        err.contains("/States/M/ItemProcessor/States/Inner/Assign/x")
            && err.contains("outer scope"),
        "{err}"
    );
}

/// Step Functions' "Variable name syntax": Unicode identifiers (an ID_Start character, then
/// ID_Continue characters), at most 80 characters; both query languages read them back.
#[test]
fn variable_names_are_unicode_identifiers() {
    let d = def(json!({"StartAt":"A","States":{
        "A":{"Type":"Pass","Assign":{"größe":3,"名前":"x","a_1":true},"Next":"B"},
        "B":{"Type":"Pass","Parameters":{"g.$":"$größe","n.$":"States.Format('{}-{}', $名前, $a_1)"},
             "Next":"C"},
        "C":{"Type":"Pass","QueryLanguage":"JSONata","Output":"{% $merge([$states.input, {'sum': $größe + 1}]) %}",
             "End":true}}}));
    let (ex, _) = drive(&d, json!({}), false, |_| Ok(json!(null)));
    assert_eq!(
        ex.status,
        Status::Succeeded,
        "{:?} {:?}",
        ex.error,
        ex.cause
    );
    assert_eq!(ex.output, Some(json!({"g": 3, "n": "x-true", "sum": 4})));

    let long = "v".repeat(81);
    for bad in [
        "_hidden",
        "9lives",
        "has-dash",
        "has space",
        "",
        long.as_str(),
    ] {
        let text =
            json!({"StartAt":"A","States":{"A":{"Type":"Pass","Assign":{bad: 1},"End":true}}})
                .to_string();
        let err = Definition::parse(&text)
            .expect_err("not a variable name")
            .to_string();
        assert!(
            err.contains("is not a valid variable name"),
            "{bad:?}: {err}"
        );
    }
    let eighty = "v".repeat(80);
    let text =
        json!({"StartAt":"A","States":{"A":{"Type":"Pass","Assign":{eighty: 1},"End":true}}})
            .to_string();
    Definition::parse(&text).expect("80 characters are allowed");
}
