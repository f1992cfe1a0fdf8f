//! The cold-start harness (`fleetprep_lambda::coldstart`) against the real `bootstrap` binary
//! (the debug build here; `fleetprep bench lambda` measures the stripped release build): the
//! fake Runtime API protocol works end to end, the probe invocation is answered and checked,
//! and a failing invocation comes back as the Runtime API error with the workflow error name.
//! No timing is asserted: the figures are the benchmark's business.
#![cfg(feature = "aws")]

use std::path::Path;
use std::time::Duration;

use fleetprep_lambda::coldstart::{self, Outcome};
use serde_json::json;

fn bootstrap() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_bootstrap"))
}

#[test]
fn the_bootstrap_serves_the_probe_invocation_through_the_runtime_api() {
    let run = coldstart::cold_start(
        bootstrap(),
        &coldstart::probe_event(),
        Duration::from_secs(60),
    )
    .expect("cold start");
    coldstart::check_probe(&run).expect("probe answered");
    assert!(run.init <= run.first_invocation, "{run:?}");
    // The JSON logs go to stderr, never into the EMF stream on stdout.
    assert!(
        run.stderr.contains("invocation succeeded"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stdout.contains("invocation succeeded"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_failing_invocation_is_posted_as_a_runtime_api_error() {
    let run = coldstart::cold_start(
        bootstrap(),
        &json!({"action": "terminate_instance"}),
        Duration::from_secs(60),
    )
    .expect("cold start");
    match &run.outcome {
        Outcome::Error {
            error_type,
            message,
        } => {
            assert_eq!(error_type, workflows::errors::INVALID_INPUT);
            assert!(message.contains("instance_id"), "{message}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    // The probe check rejects it, naming the error.
    let complaint = coldstart::check_probe(&run).unwrap_err();
    assert!(complaint.contains("InvalidInput"), "{complaint}");
}

#[test]
fn a_process_that_exits_without_polling_is_reported_with_its_status() {
    let error = coldstart::cold_start(
        Path::new("true"),
        &coldstart::probe_event(),
        Duration::from_secs(60),
    )
    .unwrap_err();
    let text = error.to_string();
    assert!(text.contains("exited (exit status: 0)"), "{text}");
    assert!(text.contains("first poll seen: false"), "{text}");
}
