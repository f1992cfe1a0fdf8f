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

/// Which pending command a driver answers next: the first task, else the earliest timer.
fn next_command(pending: &[Command]) -> Option<usize> {
    pending
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
        })
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
        let Some(pos) = next_command(&pending) else {
            break;
        };
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
    // As measured on AWS: DescribeExecution of a TIMED_OUT execution has no error and no
    // cause; the ExecutionTimedOut event follows no event (previousEventId 0) and carries
    // States.Timeout without a cause.
    assert_eq!((ex.error.as_deref(), ex.cause.as_deref()), (None, None));
    let last = h.last().unwrap();
    assert_eq!(last.event_type, EventType::ExecutionTimedOut);
    assert_eq!(last.previous_event_id, 0);
    let d = last.execution_timed_out_event_details.as_deref().unwrap();
    assert_eq!(d.error.as_deref(), Some("States.Timeout"));
    assert_eq!(d.cause, None);
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
        assert_eq!(clock::parse_rfc3339_nanos(bad), None, "{bad}");
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

/// Every task input, in the order the tasks were scheduled, answering each with `f`.
fn task_inputs(
    d: &Definition,
    input: Value,
    f: impl Fn(usize) -> Result<Value, String>,
) -> (Execution, Vec<Value>) {
    let seen = std::cell::RefCell::new(Vec::new());
    let (ex, _) = drive(d, input, false, |i| {
        let n = seen.borrow().len();
        seen.borrow_mut().push(i.clone());
        f(n)
    });
    (ex, seen.into_inner())
}

#[test]
fn retry_count_is_zero_on_the_first_attempt_of_a_task_and_counts_retries() {
    let d = def(
        json!({"StartAt":"T","States":{"T":{"Type":"Task","Resource":FN,
        "Parameters":{"rc.$":"$$.State.RetryCount"},
        "Retry":[{"ErrorEquals":["E"],"IntervalSeconds":1,"MaxAttempts":3}],"End":true}}}),
    );
    let (ex, inputs) = task_inputs(&d, json!({}), |n| {
        if n < 2 {
            Err("E".into())
        } else {
            Ok(json!("done"))
        }
    });
    assert_eq!(
        ex.status,
        Status::Succeeded,
        "{:?} {:?}",
        ex.error,
        ex.cause
    );
    assert_eq!(
        inputs,
        vec![json!({"rc": 0}), json!({"rc": 1}), json!({"rc": 2})]
    );
}

#[test]
fn retry_count_is_in_the_context_of_parallel_and_map_but_not_pass() {
    let d = def(json!({"StartAt":"P","States":{
        "P":{"Type":"Parallel","Parameters":{"rc.$":"$$.State.RetryCount"},
             "Branches":[{"StartAt":"B","States":{"B":{"Type":"Pass","End":true}}}],
             "ResultPath":"$.parallel","Next":"M"},
        "M":{"Type":"Map","ItemsPath":"$.items",
             "ItemSelector":{"rc.$":"$$.State.RetryCount"},
             "ItemProcessor":{"StartAt":"I","States":{"I":{"Type":"Pass","End":true}}},
             "ResultPath":"$.map","Next":"S"},
        "S":{"Type":"Pass","Parameters":{"state.$":"$$.State"},"ResultPath":"$.pass","End":true}}}));
    let (ex, _) = drive(&d, json!({"items":[1]}), false, |_| Ok(json!(null)));
    assert_eq!(
        ex.status,
        Status::Succeeded,
        "{:?} {:?}",
        ex.error,
        ex.cause
    );
    let out = ex.output.unwrap();
    assert_eq!(out["parallel"], json!([{"rc": 0}]));
    assert_eq!(out["map"], json!([{"rc": 0}]));
    // A Pass state's context (as recorded on AWS) has no RetryCount.
    let keys: Vec<&String> = out["pass"]["state"].as_object().unwrap().keys().collect();
    assert_eq!(keys, vec!["EnteredTime", "Name"]);
}

const YEAR: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Runs `d` (tasks answer `null`) and checks it timed out at the 1-year cap, with no timer
/// armed beyond it.
fn assert_times_out_at_one_year(d: &Definition, input: Value) {
    let (mut ex, step) = start(d, input);
    let mut pending = step.commands;
    let mut history = step.history;
    let mut now = t0();
    let mut rounds = 0;
    while ex.status == Status::Running {
        rounds += 1;
        assert!(rounds < 100, "the execution never ended");
        for c in &pending {
            if let Command::StartTimer { fire_at, .. } = c {
                assert!(
                    *fire_at <= t0() + YEAR + Duration::from_secs(1),
                    "a timer beyond the 1-year cap: {fire_at:?}"
                );
            }
        }
        let next = next_command(&pending).expect("a running execution waits on something");
        let ev = match pending.remove(next) {
            Command::ScheduleTask { token, .. } => Event::TaskFailed {
                token,
                error: "E".into(),
                cause: None,
            },
            Command::StartTimer { token, fire_at } => {
                now = now.max(fire_at);
                Event::TimerFired { token }
            }
            _ => unreachable!(),
        };
        if let Ok(step) = ex.handle(d, ev, now) {
            history.extend(step.history);
            pending.extend(step.commands);
        }
    }
    assert_eq!(ex.status, Status::TimedOut, "{:?} {:?}", ex.error, ex.cause);
    assert_eq!((ex.error.as_deref(), ex.cause.as_deref()), (None, None));
    assert_eq!(now, t0() + YEAR);
    let last = history.last().unwrap();
    assert_eq!(last.event_type, EventType::ExecutionTimedOut);
    assert_eq!(last.previous_event_id, 0);
    let d = last.execution_timed_out_event_details.as_deref().unwrap();
    assert_eq!(d.error.as_deref(), Some("States.Timeout"));
    assert!(
        d.cause.as_deref().is_some_and(|c| c.contains("1 year")),
        "the cap keeps its cause in the event: {:?}",
        d.cause
    );
    assert_eq!(
        last.timestamp,
        asl::history::format_timestamp(t0() + YEAR),
        "times out exactly at the cap"
    );
}

#[test]
fn a_wait_past_the_one_year_maximum_times_the_execution_out_at_one_year() {
    for wait in [
        json!({"Timestamp":"2600-01-01T00:00:00Z"}),
        json!({"Timestamp":"9999-12-31T23:59:59Z"}),
        json!({"Seconds": 99_999_999}),
        json!({"SecondsPath":"$.s"}),
        json!({"TimestampPath":"$.t"}),
    ] {
        let mut w = json!({"Type":"Wait","End":true});
        w.as_object_mut()
            .unwrap()
            .extend(wait.as_object().unwrap().clone());
        let d = def(json!({"StartAt":"W","States":{"W": w}}));
        for s in [99_999_999_999_i64, i64::MAX] {
            assert_times_out_at_one_year(&d, json!({"s": s, "t": "2500-06-01T00:00:00Z"}));
        }
    }
}

#[test]
fn huge_task_timeouts_and_retry_backoff_are_bounded_by_the_cap() {
    let d = def(
        json!({"StartAt":"T","States":{"T":{"Type":"Task","Resource":FN,
        "TimeoutSecondsPath":"$.t","HeartbeatSecondsPath":"$.t","End":true}}}),
    );
    // The task never answers here: the first timer due is the cap.
    let (ex, step) = start(&d, json!({"t": u64::MAX}));
    assert_eq!(ex.status, Status::Running);
    let timers: Vec<SystemTime> = step
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::StartTimer { fire_at, .. } => Some(*fire_at),
            _ => None,
        })
        .collect();
    assert!(!timers.is_empty());
    assert_eq!(timers.iter().min(), Some(&(t0() + YEAR)));
    assert!(
        timers
            .iter()
            .all(|t| *t <= t0() + YEAR + Duration::from_secs(1))
    );

    let d = def(
        json!({"StartAt":"T","States":{"T":{"Type":"Task","Resource":FN,
        "Retry":[{"ErrorEquals":["E"],"IntervalSeconds":99_999_999,"BackoffRate":2,"MaxAttempts":10}],
        "End":true}}}),
    );
    assert_times_out_at_one_year(&d, json!({}));
}

#[test]
fn an_explicit_timeout_seconds_beyond_a_year_is_capped_at_a_year() {
    let d = def(json!({"TimeoutSeconds":99_999_999,"StartAt":"W",
        "States":{"W":{"Type":"Wait","Seconds":99_999_998,"End":true}}}));
    assert_times_out_at_one_year(&d, json!({}));
}

#[test]
fn seconds_path_must_reference_a_non_negative_integer() {
    let d =
        def(json!({"StartAt":"W","States":{"W":{"Type":"Wait","SecondsPath":"$.s","End":true}}}));
    for (s, cause) in [
        (json!(-5), "references a negative value: $.s == -5"),
        (json!(2.5), "cannot be parsed as a long value: $.s == 2.5"),
        (
            json!("10"),
            "cannot be parsed as a long value: $.s == \"10\"",
        ),
        (
            json!(u64::MAX),
            "cannot be parsed as a long value: $.s == 18446744073709551615",
        ),
    ] {
        let (ex, _) = start(&d, json!({ "s": s }));
        assert_eq!(ex.status, Status::Failed);
        assert_eq!(ex.error.as_deref(), Some("States.Runtime"));
        let c = ex.cause.unwrap();
        assert!(c.contains(cause), "{c}");
    }
}

#[test]
fn timeout_and_heartbeat_paths_read_the_state_input_not_the_parameters() {
    // The AWS Task-state example: Parameters builds {"JobName": ...}, the timeout comes from
    // the state input.
    let d = def(
        json!({"StartAt":"T","States":{"T":{"Type":"Task","Resource":FN,
        "InputPath":"$.job",
        "Parameters":{"JobName":"myGlueJob"},
        "TimeoutSecondsPath":"$.params.maxTime",
        "HeartbeatSecondsPath":"$.params.beat","End":true}}}),
    );
    let (ex, step) = start(&d, json!({"job":{"params":{"maxTime":30,"beat":10}}}));
    assert_eq!(ex.status, Status::Running, "{:?} {:?}", ex.error, ex.cause);
    let mut timers: Vec<SystemTime> = step
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::StartTimer { fire_at, .. } => Some(*fire_at),
            _ => None,
        })
        .collect();
    timers.sort();
    assert_eq!(
        timers,
        vec![
            t0() + Duration::from_secs(10),
            t0() + Duration::from_secs(30)
        ]
    );
    let input = step.commands.iter().find_map(|c| match c {
        Command::ScheduleTask { input, .. } => Some(input.clone()),
        _ => None,
    });
    assert_eq!(input, Some(json!({"JobName":"myGlueJob"})));
}

#[test]
fn a_variable_over_256_kib_fails_with_data_limit_exceeded_even_under_catch() {
    let big = "x".repeat(257 * 1024);
    let d = def(json!({"StartAt":"P","States":{
        "P":{"Type":"Pass","Assign":{"v":big},"End":true}}}));
    let (ex, _) = start(&d, json!({}));
    assert_eq!(ex.status, Status::Failed);
    assert_eq!(ex.error.as_deref(), Some("States.DataLimitExceeded"));
    assert!(
        ex.cause.as_deref().unwrap().contains("'v'"),
        "{:?}",
        ex.cause
    );

    let d = def(json!({"StartAt":"T","States":{
        "T":{"Type":"Task","Resource":FN,"Assign":{"v.$":"$"},
             "Catch":[{"ErrorEquals":["States.ALL"],"Next":"C"}],"End":true},
        "C":{"Type":"Pass","End":true}}}));
    let (ex, _) = drive(&d, json!({}), false, |_| {
        Ok(json!({"a": "y".repeat(200 * 1024), "b": "y".repeat(60 * 1024)}))
    });
    assert_eq!(ex.error.as_deref(), Some("States.DataLimitExceeded"));
}

#[test]
fn one_assign_may_set_at_most_256_kib_in_total() {
    let half = "x".repeat(130 * 1024);
    let d = def(json!({"StartAt":"P","States":{
        "P":{"Type":"Pass","Assign":{"a":half,"b":half},"End":true}}}));
    let (ex, _) = start(&d, json!({}));
    assert_eq!(ex.error.as_deref(), Some("States.DataLimitExceeded"));
    assert!(
        ex.cause.as_deref().unwrap().contains("one Assign"),
        "{:?}",
        ex.cause
    );

    // Each under the limit, in separate states: fine.
    let d = def(json!({"StartAt":"P","States":{
        "P":{"Type":"Pass","Assign":{"a":half},"Next":"Q"},
        "Q":{"Type":"Pass","Assign":{"b":half},"End":true}}}));
    let (ex, _) = start(&d, json!({}));
    assert_eq!(
        ex.status,
        Status::Succeeded,
        "{:?} {:?}",
        ex.error,
        ex.cause
    );
}

#[test]
fn all_variables_together_may_hold_at_most_10_mib() {
    // 45 variables of 240 KiB = 10.5 MiB: the state that crosses 10 MiB fails.
    let n = 45;
    let mut states = serde_json::Map::new();
    for i in 0..n {
        let mut s = json!({"Type":"Pass"});
        s["Assign"] = json!({ format!("v{i}.$"): "$.blob" });
        if i + 1 < n {
            s["Next"] = json!(format!("S{}", i + 1));
        } else {
            s["End"] = json!(true);
        }
        states.insert(format!("S{i}"), s);
    }
    let d = def(json!({"StartAt":"S0","States": states}));
    let (ex, h) = start(&d, json!({"blob": "x".repeat(240 * 1024)}));
    assert_eq!(ex.error.as_deref(), Some("States.DataLimitExceeded"));
    assert!(
        ex.cause.as_deref().unwrap().contains("in total"),
        "{:?}",
        ex.cause
    );
    // 10 MiB / (240 KiB + quotes) = 42 states fit.
    let exited = h
        .history
        .iter()
        .filter(|e| e.event_type == EventType::PassStateExited)
        .count();
    assert_eq!(exited, 42);
}
