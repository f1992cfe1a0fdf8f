//! Task heartbeats (`HeartbeatSeconds`/`HeartbeatSecondsPath` and `TaskContext::heartbeat`,
//! the local SendTaskHeartbeat).
//!
//! AWS semantics, as recorded on AWS (localstack's validated snapshot
//! `tests/aws/services/stepfunctions/v2/timeouts/test_heartbeats.snapshot.json`) and documented
//! (developer guide, "Error names"; ASL spec, Task state): a task silent for longer than
//! HeartbeatSeconds fails with a `TaskTimedOut` event whose error is `States.Timeout` (no
//! cause), the same error TimeoutSeconds raises; `States.HeartbeatTimeout` is "only available
//! inside the Catch and Retry fields" and matches only the heartbeat kind. A heartbeat records
//! no history event.
//!
//! Handlers here advance the virtual clock themselves to simulate long work: time stands
//! still while a task runs unless the task moves it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use asl::history::{EventType, HistoryEvent};
use engine::{Engine, EngineConfig, ExecutionSummary, Status, TaskContext, TaskError, handler_fn};
use serde_json::{Value, json};

const FN: &str = "arn:aws:lambda:us-east-1:123456789012:function:Work";
/// A non-Lambda resource, so the history uses the Task* events (TaskScheduled carries
/// heartbeatInSeconds).
const SQS: &str = "arn:aws:states:::sqs:sendMessage";

fn engine() -> Engine {
    Engine::open(EngineConfig::in_memory_virtual()).expect("engine")
}

async fn run(engine: &Engine, def: Value, input: Value) -> (ExecutionSummary, Vec<HistoryEvent>) {
    engine
        .create_state_machine("sm", &def.to_string())
        .expect("valid definition");
    let arn = engine.start_execution("sm", None, input).expect("start");
    let s = engine.run_until_complete(&arn).await.expect("run");
    let h = engine.history(&arn).expect("history");
    (s, h)
}

fn types(h: &[HistoryEvent]) -> Vec<EventType> {
    h.iter().map(|e| e.event_type).collect()
}

/// A handler that works `steps` times for `work` seconds of (virtual) time, sending a
/// heartbeat after each step when `beat`; counts its calls and records heartbeat answers.
struct Worker {
    calls: Arc<AtomicUsize>,
    beats_refused: Arc<AtomicUsize>,
}

fn worker(e: &Engine, steps: &'static [u64], beat: bool) -> (Worker, Arc<dyn engine::TaskHandler>) {
    let clock = e.clock();
    let calls = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let (c, r) = (calls.clone(), refused.clone());
    let handler = handler_fn(move |input: Value, ctx: TaskContext| {
        let (clock, c, r) = (clock.clone(), c.clone(), r.clone());
        async move {
            let attempt = c.fetch_add(1, Ordering::SeqCst);
            // `steps` per attempt: attempt 0 uses all of them, later attempts none (fast).
            let work: &[u64] = if attempt == 0 { steps } else { &[] };
            for s in work {
                clock.advance_to(clock.now() + Duration::from_secs(*s));
                if beat && ctx.heartbeat().await.is_err() {
                    r.fetch_add(1, Ordering::SeqCst);
                    return Err(TaskError::new("Gone", "the task timed out"));
                }
            }
            Ok(json!({"input": input, "attempt": attempt}))
        }
    });
    (
        Worker {
            calls,
            beats_refused: refused,
        },
        handler,
    )
}

fn at(h: &[HistoryEvent], ty: EventType) -> SystemTime {
    let e = h
        .iter()
        .find(|e| e.event_type == ty)
        .expect("event present");
    clock::parse_rfc3339(&e.timestamp).expect("timestamp")
}

#[tokio::test]
async fn heartbeats_in_time_keep_a_long_task_alive() {
    let e = engine();
    let start = e.clock().now();
    let (w, h) = worker(&e, &[4, 4, 4], true);
    e.register(SQS, h);
    let def = json!({"StartAt":"T","States":{"T":{"Type":"Task","Resource":SQS,
        "HeartbeatSeconds":5,"TimeoutSeconds":60,"End":true}}});
    let (s, h) = run(&e, def, json!({"x": 1})).await;
    assert_eq!(s.status, Status::Succeeded, "{s:?}");
    assert_eq!(s.output.unwrap()["attempt"], 0);
    assert_eq!(w.calls.load(Ordering::SeqCst), 1);
    assert_eq!(w.beats_refused.load(Ordering::SeqCst), 0);
    // 12 s of work against a 5 s heartbeat: only the heartbeats kept it alive.
    assert_eq!(
        at(&h, EventType::TaskSucceeded),
        start + Duration::from_secs(12)
    );
    let scheduled = h
        .iter()
        .find_map(|e| e.task_scheduled_event_details.as_ref())
        .unwrap();
    assert_eq!(scheduled.heartbeat_in_seconds, Some(5));
    assert_eq!(scheduled.timeout_in_seconds, Some(60));
    // A heartbeat records no history event.
    assert_eq!(
        types(&h),
        [
            EventType::ExecutionStarted,
            EventType::TaskStateEntered,
            EventType::TaskScheduled,
            EventType::TaskStarted,
            EventType::TaskSucceeded,
            EventType::TaskStateExited,
            EventType::ExecutionSucceeded,
        ]
    );
}

#[tokio::test]
async fn a_missed_heartbeat_times_the_task_out_as_aws_records_it() {
    let e = engine();
    let (w, h) = worker(&e, &[6], true);
    e.register(SQS, h);
    let def = json!({"StartAt":"T","States":{"T":{"Type":"Task","Resource":SQS,
        "HeartbeatSeconds":5,"End":true}}});
    let (s, h) = run(&e, def, json!({})).await;
    assert_eq!(s.status, Status::Failed, "{s:?}");
    assert_eq!(s.error.as_deref(), Some("States.Timeout"));
    assert_eq!(w.calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        types(&h),
        [
            EventType::ExecutionStarted,
            EventType::TaskStateEntered,
            EventType::TaskScheduled,
            EventType::TaskStarted,
            EventType::TaskTimedOut,
            EventType::ExecutionFailed,
        ]
    );
    let timed_out = h[4].task_timed_out_event_details.as_ref().unwrap();
    assert_eq!(timed_out.error.as_deref(), Some("States.Timeout"));
    assert_eq!(timed_out.cause, None);
    assert_eq!(timed_out.resource_type, "sqs");
    assert_eq!(timed_out.resource, "sendMessage");
    assert_eq!(h[4].previous_event_id, 4);
}

#[tokio::test]
async fn a_task_that_finishes_after_its_heartbeat_deadline_is_too_late() {
    // No heartbeat at all, result after 6 s: the 5 s deadline came first.
    let e = engine();
    let (w, h) = worker(&e, &[6], false);
    e.register(FN, h);
    let def = json!({"StartAt":"T","States":{"T":{"Type":"Task","Resource":FN,
        "HeartbeatSeconds":5,"End":true}}});
    let (s, h) = run(&e, def, json!({})).await;
    assert_eq!(s.status, Status::Failed, "{s:?}");
    assert_eq!(s.error.as_deref(), Some("States.Timeout"));
    assert_eq!(w.calls.load(Ordering::SeqCst), 1);
    // A Lambda function resource times out with its own event type.
    assert!(types(&h).contains(&EventType::LambdaFunctionTimedOut));
    assert!(!types(&h).contains(&EventType::LambdaFunctionSucceeded));
}

#[tokio::test]
async fn retry_on_states_heartbeat_timeout_runs_the_task_again() {
    let e = engine();
    let (w, h) = worker(&e, &[6], true);
    e.register(SQS, h);
    let def = json!({"StartAt":"T","States":{"T":{"Type":"Task","Resource":SQS,
        "HeartbeatSeconds":5,
        "Retry":[{"ErrorEquals":["States.HeartbeatTimeout"],"IntervalSeconds":2,"MaxAttempts":1}],
        "End":true}}});
    let (s, h) = run(&e, def, json!({"x": 1})).await;
    assert_eq!(s.status, Status::Succeeded, "{s:?}");
    assert_eq!(s.output.unwrap()["attempt"], 1);
    assert_eq!(w.calls.load(Ordering::SeqCst), 2);
    let t = types(&h);
    assert_eq!(
        t.iter().filter(|t| **t == EventType::TaskTimedOut).count(),
        1
    );
    assert_eq!(
        t.iter().filter(|t| **t == EventType::TaskScheduled).count(),
        2
    );
}

#[tokio::test]
async fn states_task_failed_does_not_match_a_heartbeat_timeout() {
    let e = engine();
    let (w, h) = worker(&e, &[6], true);
    e.register(SQS, h);
    let def = json!({"StartAt":"T","States":{"T":{"Type":"Task","Resource":SQS,
        "HeartbeatSeconds":5,
        "Retry":[{"ErrorEquals":["States.TaskFailed"],"MaxAttempts":3}],
        "End":true}}});
    let (s, _) = run(&e, def, json!({})).await;
    assert_eq!(s.status, Status::Failed, "{s:?}");
    assert_eq!(s.error.as_deref(), Some("States.Timeout"));
    assert_eq!(w.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn catch_states_all_catches_a_heartbeat_timeout() {
    let e = engine();
    let (_w, h) = worker(&e, &[6], true);
    e.register(SQS, h);
    let def = json!({"StartAt":"T","States":{"T":{"Type":"Task","Resource":SQS,
        "HeartbeatSeconds":5,"ResultPath":"$.r",
        "Catch":[{"ErrorEquals":["States.ALL"],"ResultPath":"$.err","Next":"Recovered"}],
        "End":true},
        "Recovered":{"Type":"Pass","End":true}}});
    let (s, h) = run(&e, def, json!({"x": 1})).await;
    assert_eq!(s.status, Status::Succeeded, "{s:?}");
    let out = s.output.unwrap();
    assert_eq!(out["x"], 1);
    assert_eq!(out["err"]["Error"], "States.Timeout");
    assert!(types(&h).contains(&EventType::TaskTimedOut));
}

#[tokio::test]
async fn states_heartbeat_timeout_matches_only_the_heartbeat_kind_of_timeout() {
    // The task heartbeats every second (never misses one) but runs past TimeoutSeconds: a
    // States.Timeout that is NOT a heartbeat timeout, so the first catcher is skipped.
    let e = engine();
    let (w, h) = worker(&e, &[1, 1, 1, 1], true);
    e.register(SQS, h);
    let def = json!({"StartAt":"T","States":{"T":{"Type":"Task","Resource":SQS,
        "HeartbeatSeconds":2,"TimeoutSeconds":3,
        "Catch":[{"ErrorEquals":["States.HeartbeatTimeout"],"Next":"Heartbeat"},
                 {"ErrorEquals":["States.Timeout"],"Next":"Timeout"}],
        "End":true},
        "Heartbeat":{"Type":"Pass","Result":"heartbeat","End":true},
        "Timeout":{"Type":"Pass","Result":"timeout","Next":"Linger"},
        "Linger":{"Type":"Wait","Seconds":1,"End":true}}});
    let (s, _) = run(&e, def.clone(), json!({})).await;
    assert_eq!(s.status, Status::Succeeded, "{s:?}");
    assert_eq!(s.output, Some(json!("timeout")));
    // The heartbeat sent after the deadline was refused, as SendTaskHeartbeat answers
    // TaskTimedOut (observable because the execution lingers while the handler returns).
    assert_eq!(w.beats_refused.load(Ordering::SeqCst), 1);

    // A silent task under the same definition: the heartbeat catcher takes it.
    let e = engine();
    let (_w, h) = worker(&e, &[2, 2], false);
    e.register(SQS, h);
    let (s, _) = run(&e, def, json!({})).await;
    assert_eq!(s.output, Some(json!("heartbeat")), "{s:?}");
}

#[tokio::test]
async fn heartbeat_seconds_path_reads_the_interval_from_the_input() {
    let e = engine();
    let (_w, h) = worker(&e, &[3, 3], true);
    e.register(SQS, h);
    let def = json!({"StartAt":"T","States":{"T":{"Type":"Task","Resource":SQS,
        "HeartbeatSecondsPath":"$.hb","End":true}}});
    let (s, h) = run(&e, def.clone(), json!({"hb": 4})).await;
    assert_eq!(s.status, Status::Succeeded, "{s:?}");
    let scheduled = h
        .iter()
        .find_map(|e| e.task_scheduled_event_details.as_ref())
        .unwrap();
    assert_eq!(scheduled.heartbeat_in_seconds, Some(4));

    // The same work against a 2 s interval from the input misses its first heartbeat.
    let e = engine();
    let (_w, h) = worker(&e, &[3, 3], true);
    e.register(SQS, h);
    let (s, _) = run(&e, def, json!({"hb": 2})).await;
    assert_eq!(s.status, Status::Failed, "{s:?}");
    assert_eq!(s.error.as_deref(), Some("States.Timeout"));
}

#[tokio::test]
async fn a_heartbeat_without_heartbeat_seconds_is_accepted_without_effect() {
    let e = engine();
    let (w, h) = worker(&e, &[100, 100], true);
    e.register(SQS, h);
    let def = json!({"StartAt":"T","States":{"T":{"Type":"Task","Resource":SQS,"End":true}}});
    let (s, _) = run(&e, def, json!({})).await;
    assert_eq!(s.status, Status::Succeeded, "{s:?}");
    assert_eq!(w.beats_refused.load(Ordering::SeqCst), 0);
    // Outside an engine (a handler called directly) a heartbeat has nobody to tell.
    let ctx = TaskContext::new("arn:x", "T", SQS, 1);
    assert_eq!(ctx.heartbeat().await, Ok(()));
}

#[tokio::test]
async fn a_silent_task_times_out_on_the_real_clock() {
    let e = Engine::open(EngineConfig {
        store: None,
        clock: Arc::new(clock::SystemClock),
    })
    .unwrap();
    e.register(
        SQS,
        handler_fn(|_i, _c| async {
            std::future::pending::<()>().await;
            Ok(Value::Null)
        }),
    );
    let def = json!({"StartAt":"T","States":{"T":{"Type":"Task","Resource":SQS,
        "HeartbeatSeconds":1,"TimeoutSeconds":600,
        "Catch":[{"ErrorEquals":["States.HeartbeatTimeout"],"Next":"Late"}],"End":true},
        "Late":{"Type":"Pass","End":true}}});
    let (s, h) = run(&e, def, json!({})).await;
    assert_eq!(s.status, Status::Succeeded, "{s:?}");
    assert_eq!(s.output.unwrap()["Error"], "States.Timeout");
    assert!(types(&h).contains(&EventType::TaskTimedOut));
}

#[tokio::test]
async fn a_committed_heartbeat_survives_a_restart() {
    // Engine 1 runs the task until its heartbeat at +4 s is committed, then goes away
    // mid-task. Engine 2 resumes it (the task is dispatched again) and finishes the work at
    // +7 s: past the first deadline (+5 s) but inside the one the heartbeat set (+9 s).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.sqlite");
    let start = UNIX_EPOCH + Duration::from_secs(1_000_000);
    let cfg = || EngineConfig {
        store: Some(path.clone()),
        clock: Arc::new(clock::VirtualClock::new(start)),
    };
    let def = json!({"StartAt":"T","States":{"T":{"Type":"Task","Resource":SQS,
        "HeartbeatSeconds":5,"End":true}}});
    let arn = {
        let e = Engine::open(cfg()).unwrap();
        e.create_state_machine("sm", &def.to_string()).unwrap();
        let (beaten_tx, beaten) = tokio::sync::oneshot::channel::<()>();
        let beaten_tx = Arc::new(std::sync::Mutex::new(Some(beaten_tx)));
        let clock = e.clock();
        e.register(
            SQS,
            handler_fn(move |_i, ctx: TaskContext| {
                let (clock, beaten_tx) = (clock.clone(), beaten_tx.clone());
                async move {
                    clock.advance_to(clock.now() + Duration::from_secs(4));
                    ctx.heartbeat().await?;
                    if let Some(tx) = beaten_tx.lock().unwrap().take() {
                        let _ = tx.send(());
                    }
                    std::future::pending::<()>().await;
                    Ok(Value::Null)
                }
            }),
        );
        let arn = e.start_execution("sm", Some("one"), json!({})).unwrap();
        tokio::select! {
            r = e.run_until_complete(&arn) => panic!("the task never finishes: {r:?}"),
            _ = beaten => {}
        }
        arn
        // The engine (and the running task) are dropped here, mid-task.
    };
    let e = Engine::open(cfg()).unwrap();
    assert_eq!(e.describe(&arn).unwrap().status, Status::Running);
    let clock = e.clock();
    assert_eq!(clock.now(), start + Duration::from_secs(4), "clock resumed");
    e.register(
        SQS,
        handler_fn(move |_i, _ctx| {
            let clock = clock.clone();
            async move {
                clock.advance_to(start + Duration::from_secs(7));
                Ok(json!("done"))
            }
        }),
    );
    let s = e.run_until_complete(&arn).await.unwrap();
    assert_eq!(s.status, Status::Succeeded, "{s:?}");
    assert_eq!(s.output, Some(json!("done")));
}
