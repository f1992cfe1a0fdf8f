//! Crash-test worker (used by `tests/crash.rs`; not a user tool): runs one multi-step execution on a SQLite file,
//! resuming it if it already exists, and prints the final result as one JSON line.
//!
//! Run: `cargo run -p engine --bin crash_worker -- STORE.sqlite`

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use engine::{Engine, EngineConfig, TaskError, handler_fn};
use serde_json::json;

/// The definition under test: a sequential Map whose iterations run a Task (which sends a
/// heartbeat: a logged, replayed event), a Wait and a Pass.
pub const DEFINITION: &str = r#"{
  "StartAt": "Prepare",
  "States": {
    "Prepare": {"Type": "Pass", "Parameters": {"items.$": "States.ArrayRange(1, 25, 1)"}, "Next": "Each"},
    "Each": {
      "Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 1,
      "ItemProcessor": {"StartAt": "Double", "States": {
        "Double": {"Type": "Task", "Resource": "arn:aws:lambda:local:000000000000:function:Double", "HeartbeatSeconds": 10, "Next": "Nap"},
        "Nap": {"Type": "Wait", "Seconds": 5, "Next": "Shape"},
        "Shape": {"Type": "Pass", "Parameters": {"v.$": "$"}, "End": true}
      }},
      "ResultPath": "$.doubled", "Next": "Done"
    },
    "Done": {"Type": "Pass", "End": true}
  }
}"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: crash_worker STORE.sqlite")?;
    let engine = Engine::open(EngineConfig {
        store: Some(path.into()),
        clock: Arc::new(clock::VirtualClock::new(
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        )),
    })?;
    engine.register(
        "arn:aws:lambda:local:000000000000:function:Double",
        handler_fn(|input, ctx| async move {
            ctx.heartbeat().await?;
            // Slow enough that a kill lands mid-run; pure, so re-running it is harmless.
            std::thread::sleep(Duration::from_millis(12));
            match input.as_i64() {
                Some(n) => Ok(json!(n * 2)),
                None => Err(TaskError::new("BadInput", format!("not a number: {input}"))),
            }
        }),
    );
    let arn = "arn:aws:states:local:000000000000:execution:crash:run";
    if engine.describe(arn).is_err() {
        engine.create_state_machine("crash", DEFINITION)?;
        engine.start_execution("crash", Some("run"), json!({}))?;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let s = rt.block_on(engine.run_until_complete(arn))?;
    println!(
        "{}",
        json!({"status": s.status.as_str(), "output": s.output})
    );
    Ok(())
}
