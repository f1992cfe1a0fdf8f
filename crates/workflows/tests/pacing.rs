//! The completion loop (`name-on-launch`'s `Continue`) against Auto Scaling's throttling bucket
//! in the simulated fleet: a throttled completion waits instead of failing, and records a
//! lifecycle heartbeat only when the hook could time out before its next attempt.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clock::{Clock, VirtualClock};
use cloud::sim::{GroupSpec, LifecycleEvent, SimCloud};
use cloud::{Cloud, LifecycleHookRef};
use serde_json::{Value, json};
use workflows::{Context, Settings};

const HOOK_TIMEOUT: u64 = 900;

/// A group of one instance waiting on its launch hook, and the handler context around it.
fn one_waiting_instance() -> (Arc<VirtualClock>, Arc<SimCloud>, Context, LifecycleEvent) {
    let clock = Arc::new(VirtualClock::new(
        UNIX_EPOCH + Duration::from_secs(1_790_000_000),
    ));
    let policy = sysprep::hostname::HostnamePolicy::from_pattern("{prefix}-{seq:3}", "WEB")
        .expect("pattern");
    let pool =
        names::SqliteNamePool::in_memory(policy, clock.clone(), Default::default()).expect("pool");
    let sim = Arc::new(SimCloud::new(
        clock.clone(),
        Arc::new(pool),
        Default::default(),
    ));
    sim.create_group(GroupSpec {
        name: "web".into(),
        launch_template_id: "lt-fleet".into(),
        instance_type: "m5.large".into(),
        launch_hook_timeout_seconds: HOOK_TIMEOUT,
        terminate_hook_timeout_seconds: 600,
    });
    sim.set_desired_capacity("web", 1).expect("scale out");
    let event = sim
        .drain_lifecycle_events()
        .pop()
        .expect("a launch lifecycle event");
    let context = Context::new(sim.clone(), clock.clone()).with_settings(Settings {
        hook_timeout_seconds: HOOK_TIMEOUT,
        ..Settings::default()
    });
    (clock, sim, context, event)
}

/// Empties Auto Scaling's bucket at this instant (every call takes a token until none is left).
async fn empty_the_bucket(sim: &SimCloud, event: &LifecycleEvent) {
    let hook = LifecycleHookRef {
        auto_scaling_group_name: event.auto_scaling_group_name.clone(),
        lifecycle_hook_name: event.lifecycle_hook_name.clone(),
        instance_id: event.instance_id.clone(),
        lifecycle_action_token: Some(event.lifecycle_action_token.clone()),
    };
    for _ in 0..1_000 {
        let _ = sim.record_lifecycle_action_heartbeat(hook.clone()).await;
    }
}

fn calls(sim: &SimCloud, operation: &str) -> u64 {
    sim.api_calls().get(operation).copied().unwrap_or(0)
}

/// One attempt of `Continue`, its wait started at `since` with the last heartbeat at `last`.
async fn attempt(
    context: &Context,
    event: &LifecycleEvent,
    since: SystemTime,
    last: SystemTime,
) -> Value {
    let payload = json!({
        "action": "complete_lifecycle",
        "execution": "arn:aws:states:local:000000000000:execution:name-on-launch:launch-1",
        "state": "Continue",
        "hook": event.detail(),
        "result": "CONTINUE",
        "wait": {
            "since": clock::format_rfc3339(since),
            "last_heartbeat": clock::format_rfc3339(last),
        },
    });
    workflows::dispatch(payload, context)
        .await
        .expect("a throttled completion is an answer, not an error")
}

#[tokio::test(flavor = "current_thread")]
async fn a_throttled_completion_waits_and_heartbeats_only_near_the_hook_timeout() {
    let (clock, sim, context, event) = one_waiting_instance();
    let start = clock.now();

    // Far from the timeout: throttled, so not done; back within the first backoff window
    // (1 to 4 s), and no heartbeat spent.
    empty_the_bucket(&sim, &event).await;
    let heartbeats = calls(&sim, "autoscaling:RecordLifecycleActionHeartbeat");
    let answer = attempt(&context, &event, start, start).await;
    assert_eq!(answer["done"], false, "{answer}");
    let retry = answer["retry_seconds"].as_u64().expect("retry_seconds");
    assert!((1..=4).contains(&retry), "{answer}");
    assert_eq!(
        calls(&sim, "autoscaling:RecordLifecycleActionHeartbeat"),
        heartbeats
    );

    // 10 minutes of trying later, still 5 minutes from the timeout: a longer backoff, but
    // back no later than half a minute before the timeout (270 s from now).
    clock.advance_to(start + Duration::from_secs(600));
    empty_the_bucket(&sim, &event).await;
    let answer = attempt(&context, &event, start, start).await;
    assert_eq!(answer["done"], false, "{answer}");
    let retry = answer["retry_seconds"].as_u64().expect("retry_seconds");
    assert!(retry <= 300 - 30, "{answer}");
    assert_eq!(answer["last_heartbeat"], clock::format_rfc3339(start));

    // Within the last minute before the timeout the attempt records a heartbeat; the bucket
    // is empty, so it is tried again within half the 50 s left.
    clock.advance_to(start + Duration::from_secs(850));
    empty_the_bucket(&sim, &event).await;
    let heartbeats = calls(&sim, "autoscaling:RecordLifecycleActionHeartbeat");
    let answer = attempt(&context, &event, start, start).await;
    assert_eq!(
        calls(&sim, "autoscaling:RecordLifecycleActionHeartbeat"),
        heartbeats + 1,
        "the attempt tried a heartbeat"
    );
    let retry = answer["retry_seconds"].as_u64().expect("retry_seconds");
    assert!((1..=25).contains(&retry), "{answer}");
    assert_eq!(answer["last_heartbeat"], clock::format_rfc3339(start));

    // Refilled: the completion goes through, and the instance goes in service.
    clock.advance_to(start + Duration::from_secs(853));
    let answer = attempt(&context, &event, start, start).await;
    assert_eq!(answer["done"], true, "{answer}");
    assert_eq!(sim.in_service("web").len(), 1);
}
