//! RedriveExecution on the engine (developer guide, "Restarting state machine executions with
//! redrive in Step Functions"): a failed execution runs again from its failed state under the
//! same ARN; the redrive is logged, so it survives a restart; the documented limits refuse it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use asl::history::EventType;
use clock::Clock as _;
use engine::{Engine, EngineConfig, EngineError, Status, TaskContext, TaskError, handler_fn};
use serde_json::{Value, json};

const SQS: &str = "arn:aws:states:::sqs:sendMessage";

/// A handler that fails its first `failures` calls, then answers how many calls it took.
fn flaky(e: &Engine, failures: usize) -> Arc<AtomicUsize> {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    e.register(
        SQS,
        handler_fn(move |_input: Value, _ctx: TaskContext| {
            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if n <= failures {
                    Err(TaskError::new("Queue.Down", format!("call {n}")))
                } else {
                    Ok(json!({"calls": n}))
                }
            }
        }),
    );
    calls
}

#[tokio::test]
async fn a_redrive_survives_a_restart_and_reruns_only_the_failed_task() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.sqlite");
    let clock = Arc::new(clock::VirtualClock::new(
        UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    ));
    let cfg = || EngineConfig {
        store: Some(path.clone()),
        clock: clock.clone(),
    };
    let def = json!({"StartAt": "Before", "States": {
        "Before": {"Type": "Pass", "Result": 1, "ResultPath": "$.before", "Next": "Send"},
        "Send": {"Type": "Task", "Resource": SQS, "End": true}}});
    let arn = {
        let e = Engine::open(cfg()).unwrap();
        let calls = flaky(&e, 1);
        e.create_state_machine("sm", &def.to_string()).unwrap();
        let arn = e.start_execution("sm", Some("run"), json!({})).unwrap();
        let s = e.run_until_complete(&arn).await.unwrap();
        assert_eq!(
            (s.status, s.error.as_deref()),
            (Status::Failed, Some("Queue.Down"))
        );
        assert_eq!(s.redrive_count, 0);
        e.redrive_execution(&arn).unwrap();
        let s = e.describe(&arn).unwrap();
        assert_eq!((s.status, s.redrive_count), (Status::Running, 1));
        assert!(s.redrive_date.is_some() && s.stop_date.is_none() && s.error.is_none());
        assert!(matches!(
            e.redrive_execution(&arn),
            Err(EngineError::NotRedrivable { reason, .. }) if reason.contains("RUNNING")
        ));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        arn
        // Dropped before the task runs again: the redrive is only in the store.
    };
    let e = Engine::open(cfg()).unwrap();
    flaky(&e, 0);
    let s = e.run_until_complete(&arn).await.unwrap();
    assert_eq!(s.status, Status::Succeeded);
    assert_eq!(s.output, Some(json!({"calls": 1})));
    assert_eq!(s.redrive_count, 1);
    let h = e.history(&arn).unwrap();
    let count = |t: EventType| h.iter().filter(|e| e.event_type == t).count();
    assert_eq!(count(EventType::ExecutionRedriven), 1);
    assert_eq!(
        count(EventType::PassStateEntered),
        1,
        "the Pass state ran once"
    );
    assert_eq!(count(EventType::TaskScheduled), 2);
    let ids: Vec<i64> = h.iter().map(|e| e.id).collect();
    assert_eq!(ids, (1..=h.len() as i64).collect::<Vec<_>>());
    assert!(matches!(
        e.redrive_execution(&arn),
        Err(EngineError::NotRedrivable { reason, .. }) if reason.contains("SUCCEEDED")
    ));
    assert!(matches!(
        e.redrive_execution(&format!("{arn}-none")),
        Err(EngineError::NoExecution(_))
    ));
}

#[tokio::test]
async fn the_redrivable_period_is_14_days_from_the_stop() {
    let clock = Arc::new(clock::VirtualClock::new(
        UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    ));
    let e = Engine::open(EngineConfig {
        store: None,
        clock: clock.clone(),
    })
    .unwrap();
    let def = json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "E"}}});
    e.create_state_machine("sm", &def.to_string()).unwrap();
    let arn = e.start_execution("sm", None, json!({})).unwrap();
    let stopped = e.describe(&arn).unwrap().stop_date.unwrap();
    clock.advance_to(stopped + engine::REDRIVABLE_PERIOD);
    e.redrive_execution(&arn).unwrap();
    // The Fail state fails again at once; the period counts from this new stop.
    let s = e.describe(&arn).unwrap();
    assert_eq!((s.status, s.redrive_count), (Status::Failed, 1));
    clock.advance_to(s.stop_date.unwrap() + engine::REDRIVABLE_PERIOD + Duration::from_secs(1));
    assert!(matches!(
        e.redrive_execution(&arn),
        Err(EngineError::NotRedrivable { reason, .. }) if reason == "Execution redrivable period exceeded."
    ));
}
