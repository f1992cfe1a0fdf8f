//! `fleetprep states validate|exec` as the conformance runner and users call them.

use std::process::Command;

use serde_json::{Value, json};

fn fleetprep() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fleetprep"))
}

fn write(dir: &tempfile::TempDir, name: &str, v: &Value) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, v.to_string()).expect("write temp file");
    p
}

#[test]
fn validate_exit_codes_and_messages() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        &dir,
        "good.json",
        &json!({"StartAt":"A","States":{"A":{"Type":"Pass","End":true}}}),
    );
    let bad = write(
        &dir,
        "bad.json",
        &json!({"StartAt":"A","States":{"A":{"Type":"Pass","Next":"Nope"}}}),
    );
    let ok = fleetprep()
        .args(["states", "validate"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(ok.status.success());
    let out = fleetprep()
        .args(["states", "validate"])
        .arg(&good)
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("/States/A/Next: state \"A\": names \"Nope\""),
        "{text}"
    );
}

#[test]
fn exec_prints_one_json_result_on_the_virtual_clock() {
    let dir = tempfile::tempdir().unwrap();
    let def = write(
        &dir,
        "def.json",
        &json!({"StartAt":"W","States":{
        "W":{"Type":"Wait","Seconds":3600,"Next":"F"},
        "F":{"Type":"Fail","Error":"Done","Cause":"after an hour"}}}),
    );
    let input = write(&dir, "in.json", &json!({"k": [1, 2]}));
    let out = fleetprep()
        .args(["states", "exec"])
        .arg(&def)
        .arg("--input")
        .arg(&input)
        .args(["--output", "json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    assert_eq!(v["status"], "FAILED");
    assert_eq!(v["error"], "Done");
    assert_eq!(v["cause"], "after an hour");
    assert_eq!(v["output"], Value::Null);
    let types: Vec<&str> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "ExecutionStarted",
            "WaitStateEntered",
            "WaitStateExited",
            "FailStateEntered",
            "ExecutionFailed"
        ]
    );
    assert_eq!(
        v["history"][0]["executionStartedEventDetails"]["input"],
        "{\"k\":[1,2]}"
    );
}

/// The virtual clock starts now unless `--start-time` pins it, and Wait states move it on.
#[test]
fn exec_virtual_clock_starts_now_or_at_start_time() {
    let dir = tempfile::tempdir().unwrap();
    let def = write(
        &dir,
        "def.json",
        &json!({"StartAt":"W","States":{
        "W":{"Type":"Wait","Seconds":3600,"Next":"P"},
        "P":{"Type":"Pass","Parameters":{"started.$":"$$.Execution.StartTime",
            "entered.$":"$$.State.EnteredTime"},"End":true}}}),
    );
    let exec = |extra: &[&str]| -> Value {
        let out = fleetprep()
            .args(["states", "exec"])
            .arg(&def)
            .args(["--output", "json"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
    };

    let pinned = exec(&["--start-time", "2030-06-01T12:00:00Z"]);
    assert_eq!(pinned["output"]["started"], "2030-06-01T12:00:00.000Z");
    assert_eq!(pinned["output"]["entered"], "2030-06-01T13:00:00.000Z");
    assert_eq!(
        pinned["history"][0]["timestamp"],
        "2030-06-01T12:00:00.000Z"
    );
    assert_eq!(pinned, exec(&["--start-time", "2030-06-01T12:00:00Z"]));

    let before = clock::format_rfc3339(clock::Clock::now(&clock::SystemClock));
    let now = exec(&[]);
    let started = now["output"]["started"].as_str().unwrap().to_owned();
    // Same-format UTC timestamps order as strings.
    assert!(
        started >= before,
        "{started} is before the run began ({before})"
    );

    let bad = fleetprep()
        .args(["states", "exec"])
        .arg(&def)
        .args(["--start-time", "yesterday"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("RFC 3339"));
}
