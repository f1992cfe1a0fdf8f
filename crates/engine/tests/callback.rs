//! Callback tasks (`.waitForTaskToken`): the handler hands the integration `$$.Task.Token`,
//! reports the integration's answer with `TaskContext::submit` (the `TaskSubmitted` event),
//! and returns the callback's answer. History as AWS records it (localstack's validated
//! snapshot `tests/aws/services/stepfunctions/v2/callback/test_callback.snapshot.json`):
//! TaskScheduled, TaskStarted, TaskSubmitted, then TaskSucceeded with the callback's output.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use asl::history::EventType;
use engine::{Engine, EngineConfig, Status, TaskContext, TaskError, handler_fn};
use serde_json::{Value, json};

const SQS: &str = "arn:aws:states:::sqs:sendMessage.waitForTaskToken";

fn definition() -> String {
    json!({"StartAt": "Send", "States": {"Send": {"Type": "Task", "Resource": SQS,
        "Parameters": {"QueueUrl": "q", "MessageBody": {"TaskToken.$": "$$.Task.Token"}},
        "End": true}}})
    .to_string()
}

#[tokio::test]
async fn a_callback_task_records_its_submission_then_the_callback() {
    let e = Engine::open(EngineConfig::in_memory_virtual()).unwrap();
    e.register(
        SQS,
        handler_fn(|input: Value, ctx: TaskContext| async move {
            assert!(!ctx.submitted);
            // The parameters carry the token the callback names.
            assert_eq!(input["MessageBody"]["TaskToken"], json!(ctx.task_token()));
            ctx.submit(json!({"MessageId": "m-1"})).await?;
            Ok::<_, TaskError>(json!({"answer": 42}))
        }),
    );
    e.create_state_machine("sm", &definition()).unwrap();
    let arn = e.start_execution("sm", None, json!({})).unwrap();
    let s = e.run_until_complete(&arn).await.unwrap();
    assert_eq!(s.status, Status::Succeeded);
    assert_eq!(s.output, Some(json!({"answer": 42})));
    let h = e.history(&arn).unwrap();
    let types: Vec<EventType> = h.iter().map(|e| e.event_type).collect();
    assert_eq!(
        types,
        [
            EventType::ExecutionStarted,
            EventType::TaskStateEntered,
            EventType::TaskScheduled,
            EventType::TaskStarted,
            EventType::TaskSubmitted,
            EventType::TaskSucceeded,
            EventType::TaskStateExited,
            EventType::ExecutionSucceeded,
        ]
    );
    let submitted = h[4].task_submitted_event_details.as_ref().unwrap();
    assert_eq!(submitted.resource_type, "sqs");
    assert_eq!(submitted.resource, "sendMessage.waitForTaskToken");
    assert_eq!(submitted.output.as_deref(), Some(r#"{"MessageId":"m-1"}"#));
    assert_eq!(h[5].previous_event_id, h[4].id);
}

#[tokio::test]
async fn a_submitted_callback_task_resumes_after_a_restart_without_a_second_submission() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.sqlite");
    let cfg = || EngineConfig {
        store: Some(path.clone()),
        clock: Arc::new(clock::VirtualClock::new(
            UNIX_EPOCH + Duration::from_secs(1_000_000),
        )),
    };
    let (arn, token) = {
        let e = Engine::open(cfg()).unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        e.register(
            SQS,
            handler_fn(move |_input: Value, ctx: TaskContext| {
                let tx = tx.clone();
                async move {
                    ctx.submit(json!({"MessageId": "m-1"})).await?;
                    let _ = tx.send(ctx.task_token());
                    // The callback never comes in this process.
                    std::future::pending::<Result<Value, TaskError>>().await
                }
            }),
        );
        e.create_state_machine("sm", &definition()).unwrap();
        let arn = e.start_execution("sm", None, json!({})).unwrap();
        let mut rx = rx;
        let token = tokio::select! {
            t = rx.recv() => t.unwrap(),
            r = e.run_until_complete(&arn) => panic!("the execution ended: {r:?}"),
        };
        (arn, token)
    };
    let e = Engine::open(cfg()).unwrap();
    e.register(
        SQS,
        handler_fn(move |_input: Value, ctx: TaskContext| {
            let token = token.clone();
            async move {
                // The same task, with the same token, only waits for its callback now.
                assert!(ctx.submitted);
                assert_eq!(ctx.task_token(), token);
                Ok::<_, TaskError>(json!("called back"))
            }
        }),
    );
    let s = e.run_until_complete(&arn).await.unwrap();
    assert_eq!(s.status, Status::Succeeded);
    assert_eq!(s.output, Some(json!("called back")));
    let submissions = e
        .history(&arn)
        .unwrap()
        .iter()
        .filter(|e| e.event_type == EventType::TaskSubmitted)
        .count();
    assert_eq!(submissions, 1);
}
