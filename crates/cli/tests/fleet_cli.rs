//! The fleet verbs as a user runs them: demo, bake, fleet simulate, executions, graph.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn fleetprep(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fleetprep"))
        .args(args)
        // Never touch the user's store from a test.
        .env(
            "FLEETPREP_STORE",
            "/nonexistent/fleetprep-test-store.sqlite3",
        )
        .output()
        .expect("run fleetprep")
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn demo_bakes_names_and_rolls_out_and_stores_executions() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("engine.sqlite3");
    let store = store.to_str().unwrap();
    let output = fleetprep(&[
        "demo",
        "--instances",
        "6",
        "--seed",
        "7",
        "--store",
        store,
        "--output",
        "json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = json(&output);
    assert_eq!(summary["ok"], true);
    assert_eq!(summary["collisions"], 0);
    let instances = summary["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 6);
    let image = summary["bake"]["image_id"].as_str().unwrap();
    assert!(
        instances.iter().all(|i| i["image_id"] == image),
        "rolled out onto the baked image"
    );
    assert!(
        summary["simulated_seconds"].as_f64().unwrap() > summary["wall_seconds"].as_f64().unwrap()
    );

    let list = fleetprep(&["executions", "list", "--store", store, "--output", "json"]);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let executions = json(&list)["executions"].as_array().unwrap().clone();
    let bake = executions
        .iter()
        .find(|e| e["stateMachine"] == "bake")
        .expect("the bake execution is stored");
    assert_eq!(bake["status"], "SUCCEEDED");
    let name = bake["name"].as_str().unwrap();

    let history = fleetprep(&[
        "executions",
        "history",
        name,
        "--store",
        store,
        "--output",
        "json",
    ]);
    assert!(history.status.success());
    let events = json(&history)["events"].as_array().unwrap().clone();
    assert_eq!(events.first().unwrap()["type"], "ExecutionStarted");
    assert_eq!(events.last().unwrap()["type"], "ExecutionSucceeded");

    let show = fleetprep(&["executions", "show", name, "--store", store]);
    assert!(String::from_utf8_lossy(&show.stdout).contains("SUCCEEDED"));
}

#[test]
fn bake_with_a_fault_scenario_reports_the_category_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("appx.toml");
    std::fs::write(
        &scenario,
        "[[fault]]\nkind = \"preflight-appx-blocker\"\nrecurs = true\n",
    )
    .unwrap();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fleetprep.toml");
    let store = dir.path().join("engine.sqlite3");
    let output = fleetprep(&[
        "bake",
        "--config",
        config.to_str().unwrap(),
        "--scenario",
        scenario.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let summary = json(&output);
    assert_eq!(summary["status"], "FAILED");
    assert_eq!(summary["error"], "appx-not-provisioned");
}

#[test]
fn config_errors_name_the_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fleetprep.toml");
    std::fs::write(
        &config,
        "[bake]\nname = \"x\"\n\n[naming]\nmode = \"renamed\"\n",
    )
    .unwrap();
    let output = fleetprep(&["bake", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("fleetprep.toml:5: key \"naming.mode\""),
        "{stderr}"
    );
}

#[test]
fn fleet_simulate_reports_calls_and_no_collisions() {
    let output = fleetprep(&[
        "fleet",
        "simulate",
        "--instances",
        "120",
        "--output",
        "json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = json(&output);
    assert_eq!(report["in_service"], 120);
    assert_eq!(report["collisions"], 0);
    assert_eq!(report["throttling_failures"], 0);
    let sends = report["api_calls"]["ssm:SendCommand"].as_u64().unwrap();
    assert!(
        sends < 120 / 10,
        "batched: {sends} SendCommand calls for 120 instances"
    );
}

/// A hook too short for the fleet's size is said up front, with the setting that fixes it;
/// `--hook-timeout-seconds` overrides the config for one run.
#[test]
fn fleet_simulate_says_when_the_hook_is_too_short_for_the_fleet() {
    // 400 launches complete in 4 s at Auto Scaling's simulated rate: more than half of a 10 s
    // hook.
    let output = fleetprep(&[
        "fleet",
        "simulate",
        "--instances",
        "400",
        "--hook-timeout-seconds",
        "10",
        "--output",
        "json",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("which takes a large share of their 10 s hooks")
            && stderr.contains("hook_timeout_seconds (or --hook-timeout-seconds) to it"),
        "{stderr}"
    );
    let report = json(&output);
    assert_eq!(report["hook_timeout_seconds"], 10);
    // A short hook on a small fleet: heartbeats keep it alive, nothing to say.
    let output = fleetprep(&[
        "fleet",
        "simulate",
        "--instances",
        "5",
        "--hook-timeout-seconds",
        "240",
        "--output",
        "json",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("hook_timeout_seconds"), "{stderr}");
    let report = json(&output);
    assert_eq!(report["hook_timeout_seconds"], 240);
    assert_eq!(report["in_service"], 5, "{report}");
}

/// Issue 11: the `user-data` rename method on the simulated fleet: every instance is named
/// from its tag, and no SSM command is sent for naming.
#[test]
fn fleet_simulate_with_the_user_data_rename_method_sends_no_command() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/user-data-naming.toml");
    let output = fleetprep(&[
        "fleet",
        "simulate",
        "--config",
        config.to_str().unwrap(),
        "--instances",
        "12",
        "--output",
        "json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = json(&output);
    assert_eq!(report["in_service"], 12);
    assert_eq!(report["collisions"], 0);
    assert!(
        report["api_calls"].get("ssm:SendCommand").is_none(),
        "{}",
        report["api_calls"]
    );
    assert_eq!(report["api_calls"]["ec2:CreateTags"], 12);
}

#[test]
fn graph_draws_every_workflow_in_both_formats() {
    for workflow in ["bake", "name-on-launch", "release-on-terminate", "rollout"] {
        let mermaid = fleetprep(&["graph", workflow, "--format", "mermaid"]);
        assert!(mermaid.status.success());
        assert!(String::from_utf8_lossy(&mermaid.stdout).starts_with("flowchart TD"));
        let dot = fleetprep(&["graph", workflow, "--format", "dot"]);
        assert!(String::from_utf8_lossy(&dot.stdout).starts_with("digraph"));
    }
    let missing = fleetprep(&["graph", "nope"]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn rollout_refreshes_the_group_onto_a_given_image() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("engine.sqlite3");
    let store = store.to_str().unwrap();
    let output = fleetprep(&[
        "rollout",
        "--image",
        "ami-0new",
        "--instances",
        "3",
        "--seed",
        "5",
        "--store",
        store,
        "--output",
        "json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = json(&output);
    assert_eq!(summary["status"], "SUCCEEDED");
    assert_eq!(summary["image_id"], "ami-0new");
    let bad = fleetprep(&["rollout", "--image", "not-an-ami", "--store", store]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not an AMI id"));
}

/// Issue 10: a second `fleetprep bake` in the same store used to fail with
/// `execution "…:bake:bake-0" already exists`; every run gets a fresh execution name.
#[test]
fn a_second_bake_in_the_same_store_gets_a_fresh_execution_name() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let config = root.join("examples/fleetprep.toml");
    let scenario = root.join("examples/scenarios/ssm-never-online.toml");
    let store = dir.path().join("engine.sqlite3");
    let mut arns = Vec::new();
    for _ in 0..2 {
        let output = fleetprep(&[
            "bake",
            "--config",
            config.to_str().unwrap(),
            "--scenario",
            scenario.to_str().unwrap(),
            "--store",
            store.to_str().unwrap(),
            "--output",
            "json",
        ]);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let summary = json(&output);
        assert_eq!(summary["error"], "agent-unreachable");
        arns.push(summary["execution_arn"].as_str().unwrap().to_owned());
    }
    assert_ne!(arns[0], arns[1]);
}
