//! Engine behaviour: virtual clock jumps, task dispatch, Retry/Catch, timeouts, Lambda
//! resources, Map concurrency, resume from the store.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use asl::history::EventType;
use engine::{Engine, EngineConfig, Status, TaskError, handler_fn};
use serde_json::{Value, json};

const FN: &str = "arn:aws:lambda:us-east-1:123456789012:function:Work";

fn engine() -> Engine {
    Engine::open(EngineConfig::in_memory_virtual()).expect("engine")
}

async fn run(
    engine: &Engine,
    def: Value,
    input: Value,
) -> (engine::ExecutionSummary, Vec<asl::history::HistoryEvent>) {
    engine
        .create_state_machine("sm", &def.to_string())
        .expect("valid definition");
    let arn = engine.start_execution("sm", None, input).expect("start");
    let s = engine.run_until_complete(&arn).await.expect("run");
    let h = engine.history(&arn).expect("history");
    (s, h)
}

/// A handler that fails with `Flaky` on its first `failures` calls, then answers
/// `{"got": input, "attempt": n}`; also returns the call counter.
fn flaky(failures: usize) -> (Arc<AtomicUsize>, Arc<dyn engine::TaskHandler>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let handler = handler_fn(move |input, _ctx| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        async move {
            if n < failures {
                Err(TaskError::new("Flaky", format!("attempt {n}")))
            } else {
                Ok(json!({"got": input, "attempt": n}))
            }
        }
    });
    (calls, handler)
}

fn types(h: &[asl::history::HistoryEvent]) -> Vec<EventType> {
    h.iter().map(|e| e.event_type).collect()
}

#[tokio::test]
async fn virtual_clock_jumps_over_waits_and_timestamps_advance() {
    let e = engine();
    let start = e.clock().now();
    let def = json!({"StartAt":"W","States":{"W":{"Type":"Wait","Seconds":3600,"Next":"P"},"P":{"Type":"Pass","End":true}}});
    let (s, h) = run(&e, def, json!({"a":1})).await;
    assert_eq!(s.status, Status::Succeeded);
    assert_eq!(s.output, Some(json!({"a":1})));
    assert_eq!(
        e.clock().now().duration_since(start).unwrap(),
        Duration::from_secs(3600)
    );
    let entered = clock::parse_rfc3339(&h[1].timestamp).unwrap();
    let exited = clock::parse_rfc3339(&h[2].timestamp).unwrap();
    assert_eq!(h[2].event_type, EventType::WaitStateExited);
    assert_eq!(
        exited.duration_since(entered).unwrap(),
        Duration::from_secs(3600)
    );
}

#[tokio::test]
async fn two_executions_wait_deterministically_in_deadline_order() {
    let e = engine();
    let def =
        |secs: u64| json!({"StartAt":"W","States":{"W":{"Type":"Wait","Seconds":secs,"End":true}}});
    e.create_state_machine("long", &def(100).to_string())
        .unwrap();
    e.create_state_machine("short", &def(10).to_string())
        .unwrap();
    let a = e.start_execution("long", Some("a"), json!({})).unwrap();
    let b = e.start_execution("short", Some("b"), json!({})).unwrap();
    e.run_until_idle().await.unwrap();
    let (da, db) = (e.describe(&a).unwrap(), e.describe(&b).unwrap());
    assert_eq!(
        db.stop_date.unwrap().duration_since(db.start_date).unwrap(),
        Duration::from_secs(10)
    );
    assert_eq!(
        da.stop_date.unwrap().duration_since(da.start_date).unwrap(),
        Duration::from_secs(100)
    );
}

#[tokio::test]
async fn task_retry_with_backoff_then_success() {
    let e = engine();
    let (calls, handler) = flaky(2);
    e.register(FN, handler);
    let def = json!({"StartAt":"T","States":{"T":{"Type":"Task","Resource":FN,
        "Retry":[{"ErrorEquals":["Flaky"],"IntervalSeconds":2,"BackoffRate":3.0,"MaxAttempts":3}],"End":true}}});
    let (s, h) = run(&e, def, json!({"x":1})).await;
    assert_eq!(s.status, Status::Succeeded, "{s:?}");
    assert_eq!(s.output, Some(json!({"got":{"x":1}, "attempt": 2})));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let scheduled: Vec<_> = h
        .iter()
        .filter(|e| e.event_type == EventType::LambdaFunctionScheduled)
        .map(|e| clock::parse_rfc3339(&e.timestamp).unwrap())
        .collect();
    assert_eq!(scheduled.len(), 3);
    assert_eq!(
        scheduled[1].duration_since(scheduled[0]).unwrap(),
        Duration::from_secs(2)
    );
    assert_eq!(
        scheduled[2].duration_since(scheduled[1]).unwrap(),
        Duration::from_secs(6)
    );
    // A retried attempt follows the failure event.
    let failed = h
        .iter()
        .find(|e| e.event_type == EventType::LambdaFunctionFailed)
        .unwrap();
    let next = h.iter().find(|e| e.id == failed.id + 1).unwrap();
    assert_eq!(next.previous_event_id, failed.id);
}

#[tokio::test]
async fn catch_routes_error_output_with_result_path() {
    let e = engine();
    e.register(
        FN,
        handler_fn(|_i, _c| async { Err(TaskError::new("Boom", "it broke")) }),
    );
    let def = json!({"StartAt":"T","States":{
        "T":{"Type":"Task","Resource":FN,"Catch":[{"ErrorEquals":["States.ALL"],"ResultPath":"$.err","Next":"Handled"}],"End":true},
        "Handled":{"Type":"Pass","End":true}}});
    let (s, h) = run(&e, def, json!({"keep":true})).await;
    assert_eq!(s.status, Status::Succeeded);
    assert_eq!(
        s.output,
        Some(json!({"keep":true,"err":{"Error":"Boom","Cause":"it broke"}}))
    );
    assert!(types(&h).contains(&EventType::TaskStateExited));
}

#[tokio::test]
async fn uncaught_task_error_fails_the_execution_with_its_name() {
    let e = engine();
    e.register(
        FN,
        handler_fn(|_i, _c| async { Err(TaskError::new("Boom", "it broke")) }),
    );
    let def = json!({"StartAt":"T","States":{"T":{"Type":"Task","Resource":FN,"End":true}}});
    let (s, h) = run(&e, def, json!({})).await;
    assert_eq!(s.status, Status::Failed);
    assert_eq!(s.error.as_deref(), Some("Boom"));
    assert_eq!(s.cause.as_deref(), Some("it broke"));
    assert_eq!(h.last().unwrap().event_type, EventType::ExecutionFailed);
}

#[tokio::test]
async fn lambda_invoke_wraps_the_payload_in_the_aws_envelope() {
    let e = engine();
    e.register(
        "Work",
        handler_fn(|input, ctx| async move { Ok(json!({"echo": input, "state": ctx.state_name})) }),
    );
    let def = json!({"StartAt":"T","States":{"T":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke",
        "Parameters":{"FunctionName":FN,"Payload.$":"$"},"ResultSelector":{"body.$":"$.Payload","code.$":"$.StatusCode"},"End":true}}});
    let (s, h) = run(&e, def, json!({"n":1})).await;
    assert_eq!(s.status, Status::Succeeded, "{s:?}");
    assert_eq!(
        s.output,
        Some(json!({"body":{"echo":{"n":1},"state":"T"},"code":200}))
    );
    let sched = h
        .iter()
        .find(|e| e.event_type == EventType::TaskScheduled)
        .unwrap();
    let d = sched.task_scheduled_event_details.as_ref().unwrap();
    assert_eq!(
        (d.resource_type.as_str(), d.resource.as_str()),
        ("lambda", "invoke")
    );
}

#[tokio::test]
async fn unregistered_resource_is_a_catchable_error_naming_the_state() {
    let e = engine();
    let def =
        json!({"StartAt":"Missing","States":{"Missing":{"Type":"Task","Resource":FN,"End":true}}});
    let (s, _) = run(&e, def, json!({})).await;
    assert_eq!(s.status, Status::Failed);
    assert_eq!(s.error.as_deref(), Some("Lambda.ResourceNotFoundException"));
    let cause = s.cause.unwrap();
    assert!(
        cause.contains("state \"Missing\"") && cause.contains(FN),
        "{cause}"
    );
}

#[tokio::test]
async fn task_timeout_raises_states_timeout() {
    // Real clock: under a virtual clock time stands still while a task runs.
    let e = Engine::open(EngineConfig {
        store: None,
        clock: Arc::new(clock::SystemClock),
    })
    .unwrap();
    e.register(
        FN,
        handler_fn(|_i, _c| async {
            std::future::pending::<()>().await;
            Ok(Value::Null)
        }),
    );
    let def = json!({"StartAt":"T","States":{"T":{"Type":"Task","Resource":FN,"TimeoutSeconds":1,
        "Catch":[{"ErrorEquals":["States.Timeout"],"Next":"TimedOut"}],"End":true},
        "TimedOut":{"Type":"Pass","End":true}}});
    let (s, h) = run(&e, def, json!({})).await;
    assert_eq!(s.status, Status::Succeeded);
    assert_eq!(s.output.unwrap()["Error"], "States.Timeout");
    assert!(types(&h).contains(&EventType::LambdaFunctionTimedOut));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_tasks_run_concurrently_bounded_by_max_concurrency() {
    let e = engine();
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (n2, p2) = (now.clone(), peak.clone());
    e.register(
        FN,
        handler_fn(move |input, _c| {
            let (n, p) = (n2.clone(), p2.clone());
            async move {
                let cur = n.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(cur, Ordering::SeqCst);
                tokio::task::yield_now().await;
                for _ in 0..50 {
                    tokio::task::yield_now().await;
                }
                n.fetch_sub(1, Ordering::SeqCst);
                Ok(json!(input.as_i64().unwrap_or(0) * 10))
            }
        }),
    );
    let def = json!({"StartAt":"M","States":{"M":{"Type":"Map","MaxConcurrency":3,
        "ItemProcessor":{"StartAt":"T","States":{"T":{"Type":"Task","Resource":FN,"End":true}}},"End":true}}});
    let (s, _) = run(&e, def, json!([1, 2, 3, 4, 5, 6, 7, 8])).await;
    assert_eq!(s.status, Status::Succeeded, "{s:?}");
    assert_eq!(s.output, Some(json!([10, 20, 30, 40, 50, 60, 70, 80])));
    let p = peak.load(Ordering::SeqCst);
    assert!((1..=3).contains(&p), "peak concurrency {p}");
}

#[tokio::test]
async fn resumes_running_executions_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.sqlite");
    let cfg = || EngineConfig {
        store: Some(path.clone()),
        clock: Arc::new(clock::VirtualClock::new(
            UNIX_EPOCH + Duration::from_secs(1_000_000),
        )),
    };
    let arn = {
        let e = Engine::open(cfg()).unwrap();
        let def = json!({"StartAt":"A","States":{"A":{"Type":"Pass","Result":{"v":1},"ResultPath":"$.a","Next":"W"},
            "W":{"Type":"Wait","Seconds":60,"Next":"B"},"B":{"Type":"Pass","End":true}}});
        e.create_state_machine("sm", &def.to_string()).unwrap();
        e.start_execution("sm", Some("one"), json!({"in":true}))
            .unwrap()
        // Dropped without driving: the Wait's timer is only in the store.
    };
    let e = Engine::open(cfg()).unwrap();
    assert_eq!(e.describe(&arn).unwrap().status, Status::Running);
    let s = e.run_until_complete(&arn).await.unwrap();
    assert_eq!(s.status, Status::Succeeded);
    assert_eq!(s.output, Some(json!({"in":true,"a":{"v":1}})));
    let h = e.history(&arn).unwrap();
    let ids: Vec<i64> = h.iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        (1..=h.len() as i64).collect::<Vec<_>>(),
        "ids are dense and ordered"
    );
    assert_eq!(e.list_executions(Some(Status::Succeeded)).unwrap().len(), 1);
}

#[tokio::test]
async fn stop_execution_aborts() {
    let e = engine();
    let def = json!({"StartAt":"W","States":{"W":{"Type":"Wait","Seconds":60,"End":true}}});
    e.create_state_machine("sm", &def.to_string()).unwrap();
    let arn = e.start_execution("sm", None, json!({})).unwrap();
    e.stop_execution(&arn, Some("User"), Some("stopped by test"))
        .unwrap();
    let s = e.describe(&arn).unwrap();
    assert_eq!(s.status, Status::Aborted);
    assert_eq!(
        e.history(&arn).unwrap().last().unwrap().event_type,
        EventType::ExecutionAborted
    );
    e.run_until_idle().await.unwrap();
}

#[tokio::test]
async fn progress_is_broadcast() {
    let e = engine();
    let mut rx = e.subscribe();
    let def = json!({"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}});
    let (_s, h) = run(&e, def, json!({})).await;
    let mut got = Vec::new();
    while let Ok(p) = rx.try_recv() {
        got.push(p.event.id);
    }
    assert_eq!(got, h.iter().map(|e| e.id).collect::<Vec<_>>());
}

#[tokio::test]
async fn history_rebuilt_by_replay_equals_the_events_broadcast_live() {
    // History is not stored: GetExecutionHistory replays the input log. Every event the
    // live run broadcast (retry timers, waits, choices, result paths, the lambda envelope)
    // must come back identical, ids, timestamps and payloads included.
    let e = engine();
    let (calls, handler) = flaky(1);
    e.register(FN, handler);
    let def = json!({"StartAt":"T","States":{
        "T":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke",
             "Parameters":{"FunctionName":FN,"Payload.$":"$"},
             "ResultSelector":{"out.$":"$.Payload"},"ResultPath":"$.t",
             "Retry":[{"ErrorEquals":["Flaky"],"IntervalSeconds":3,"JitterStrategy":"FULL"}],
             "Next":"W"},
        "W":{"Type":"Wait","Seconds":30,"Next":"C"},
        "C":{"Type":"Choice","Choices":[{"Variable":"$.t.out.attempt","NumericEquals":1,"Next":"P"}],
             "Default":"F"},
        "P":{"Type":"Pass","Result":{"done":true},"ResultPath":"$.p","End":true},
        "F":{"Type":"Fail","Error":"Unexpected"}}});
    let mut rx = e.subscribe();
    let (s, history) = run(&e, def, json!({"x": 1})).await;
    assert_eq!(s.status, Status::Succeeded, "{s:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let mut live = Vec::new();
    while let Ok(p) = rx.try_recv() {
        live.push(p.event);
    }
    assert!(live.len() > 15, "{} events", live.len());
    assert_eq!(live, history);
}

#[tokio::test]
async fn a_panicking_handler_fails_the_task_instead_of_hanging() {
    let e = engine();
    e.register(FN, handler_fn(|_i, _c| async { panic!("handler bug") }));
    let def = json!({"StartAt":"T","States":{"T":{"Type":"Task","Resource":FN,"End":true}}});
    let (s, _) = run(&e, def, json!({})).await;
    assert_eq!(s.status, Status::Failed);
    assert_eq!(s.error.as_deref(), Some("States.TaskFailed"));
    assert!(s.cause.unwrap().contains("panicked"));
}

#[test]
fn driving_futures_are_send_so_callers_can_spawn_them() {
    fn assert_send<T: Send>(_: &T) {}
    let e = engine();
    let fut = e.run_until_complete("arn:none");
    assert_send(&fut);
    let idle = e.run_until_idle();
    assert_send(&idle);
}

#[tokio::test]
async fn batch_start_group_commits_and_survives_reopen() {
    // Many executions started together and driven with group commits: every step is on
    // disk, the shared definition is stored once, and a reopened engine sees it all.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.sqlite3");
    let config = || EngineConfig {
        store: Some(path.clone()),
        clock: EngineConfig::in_memory_virtual().clock,
    };
    let def = json!({"StartAt":"T","States":{
        "T":{"Type":"Task","Resource":FN,"Next":"W"},
        "W":{"Type":"Wait","Seconds":5,"End":true}}});
    {
        let e = Engine::open(config()).expect("engine");
        e.register(
            FN,
            handler_fn(|input, _| async move { Ok::<_, TaskError>(json!({"echo": input})) }),
        );
        e.create_state_machine("sm", &def.to_string()).expect("def");
        let requests = vec![
            ("sm".to_string(), Some("a".to_string()), json!({"n": 1})),
            ("sm".to_string(), Some("b".to_string()), json!({"n": 2})),
            ("sm".to_string(), Some("a".to_string()), json!({"n": 3})),
            ("nope".to_string(), None, json!({})),
        ];
        let results = e.start_executions(requests).expect("batch");
        assert!(results[0].is_ok() && results[1].is_ok());
        assert!(matches!(
            results[2],
            Err(engine::EngineError::ExecutionExists(_))
        ));
        assert!(matches!(
            results[3],
            Err(engine::EngineError::NoStateMachine(_))
        ));
        e.run_until_idle().await.expect("run");
    }
    let e = Engine::open(config()).expect("reopen");
    let done = e.list_executions(Some(Status::Succeeded)).expect("list");
    assert_eq!(done.len(), 2);
    for s in &done {
        let n = s.input["n"].clone();
        assert_eq!(s.output, Some(json!({"echo": {"n": n}})));
        let h = e.history(&s.execution_arn).expect("history");
        assert_eq!(
            h.last().map(|x| x.event_type),
            Some(EventType::ExecutionSucceeded)
        );
    }
}

#[tokio::test]
async fn a_store_in_an_older_format_is_kept_aside_and_a_new_one_started() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.sqlite3");
    {
        // The first format: executions keyed by ARN, no format number.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE executions (arn TEXT PRIMARY KEY, status TEXT);
             INSERT INTO executions VALUES ('arn:old', 'RUNNING');",
        )
        .unwrap();
    }
    let config = |p: &std::path::Path| EngineConfig {
        store: Some(p.to_path_buf()),
        ..EngineConfig::in_memory_virtual()
    };
    let e = Engine::open(config(&path)).expect("a fresh store replaces the old one");
    assert!(e.list_executions(None).unwrap().is_empty());
    e.create_state_machine(
        "sm",
        r#"{"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}}"#,
    )
    .unwrap();
    let arn = e.start_execution("sm", None, json!({})).unwrap();
    e.run_until_complete(&arn).await.unwrap();
    drop(e);
    // Nothing lost: the old executions are still there, under a name that says why.
    let kept = dir.path().join("engine.sqlite3.format0");
    let old = rusqlite::Connection::open(&kept).unwrap();
    let status: String = old
        .query_row(
            "SELECT status FROM executions WHERE arn = 'arn:old'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(status, "RUNNING");
    // And the new store reopens in its own format.
    let e = Engine::open(config(&path)).unwrap();
    assert_eq!(e.list_executions(None).unwrap().len(), 1);
}

#[tokio::test]
async fn an_input_over_256_kib_is_rejected_before_any_execution_exists() {
    let e = engine();
    e.create_state_machine(
        "sm",
        &json!({"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}}).to_string(),
    )
    .expect("valid definition");
    // `{"k":"xxx…"}` is 8 bytes of framing plus the string.
    let at_limit = json!({ "k": "x".repeat(engine::MAX_INPUT_BYTES - 8) });
    assert_eq!(at_limit.to_string().len(), engine::MAX_INPUT_BYTES);
    let over = json!({ "k": "x".repeat(engine::MAX_INPUT_BYTES - 7) });
    match e.start_execution("sm", Some("big"), over) {
        Err(err @ engine::EngineError::InputTooLarge { .. }) => {
            let text = err.to_string();
            assert!(text.contains("262145 bytes"), "{text}");
            assert!(text.contains("262144"), "{text}");
        }
        other => panic!("expected InputTooLarge, got {other:?}"),
    }
    assert!(
        e.list_executions(None).unwrap().is_empty(),
        "nothing recorded"
    );
    let arn = e
        .start_execution("sm", Some("fits"), at_limit)
        .expect("at the limit");
    let s = e.run_until_complete(&arn).await.expect("run");
    assert_eq!(s.status, Status::Succeeded);
}

/// The definition's own TimeoutSeconds, in the shape measured on AWS: TIMED_OUT exactly at
/// the deadline, DescribeExecution without error or cause, and one ExecutionTimedOut event
/// with previousEventId 0 carrying States.Timeout and no cause.
#[tokio::test]
async fn top_level_timeout_seconds_times_out_like_aws() {
    let e = engine();
    let start = e.clock().now();
    let def = json!({"StartAt":"W","TimeoutSeconds":3,
        "States":{"W":{"Type":"Wait","Seconds":25,"End":true}}});
    let (s, h) = run(&e, def, json!({})).await;
    assert_eq!(s.status, Status::TimedOut);
    assert_eq!((s.error.as_deref(), s.cause.as_deref()), (None, None));
    assert_eq!(s.stop_date, Some(start + Duration::from_secs(3)));
    assert_eq!(
        types(&h),
        vec![
            EventType::ExecutionStarted,
            EventType::WaitStateEntered,
            EventType::ExecutionTimedOut
        ]
    );
    assert_eq!((h[2].id, h[2].previous_event_id), (3, 0));
    let d = h[2].execution_timed_out_event_details.as_deref().unwrap();
    assert_eq!(
        (d.error.as_deref(), d.cause.as_deref()),
        (Some("States.Timeout"), None)
    );
    let wire = serde_json::to_value(&h[2]).unwrap();
    assert_eq!(
        wire["executionTimedOutEventDetails"],
        json!({"error": "States.Timeout"}),
        "no cause key on the wire: {wire}"
    );
}

#[tokio::test]
async fn a_wait_centuries_ahead_times_out_at_the_one_year_maximum() {
    for wait in [
        json!({"Type":"Wait","Timestamp":"2600-01-01T00:00:00Z","End":true}),
        json!({"Type":"Wait","Timestamp":"2500-01-01T00:00:00Z","End":true}),
        json!({"Type":"Wait","SecondsPath":"$.s","End":true}),
    ] {
        let e = engine();
        let start = e.clock().now();
        let def = json!({"StartAt":"W","States":{"W": wait}});
        let (s, h) = run(&e, def, json!({"s": 99_999_999_999_i64})).await;
        assert_eq!(s.status, Status::TimedOut);
        // DescribeExecution of a TIMED_OUT execution carries no error and no cause on AWS;
        // States.Timeout lives in the ExecutionTimedOut event only.
        assert_eq!((s.error.as_deref(), s.cause.as_deref()), (None, None));
        let year = Duration::from_secs(365 * 24 * 60 * 60);
        assert_eq!(s.stop_date, Some(start + year));
        assert_eq!(
            types(&h),
            vec![
                EventType::ExecutionStarted,
                EventType::WaitStateEntered,
                EventType::ExecutionTimedOut
            ]
        );
        assert_eq!(h[2].previous_event_id, 0);
        let d = h[2].execution_timed_out_event_details.as_deref().unwrap();
        assert_eq!(d.error.as_deref(), Some("States.Timeout"));
        assert_eq!(
            clock::parse_rfc3339(&h[2].timestamp),
            Some(start + year),
            "{}",
            h[2].timestamp
        );
    }
}
