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
