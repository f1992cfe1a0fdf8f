//! Every file in `examples/scenarios/` run as a user runs it (`fleetprep bake --scenario F` or
//! `fleetprep fleet simulate --scenario F`), ending in the terminal state its `[expect]` table
//! promises: the README's fault list points there, so the examples cannot drift.

use std::path::{Path, PathBuf};
use std::process::Command;

use cloud::sim::Scenario;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(args: &[&str]) -> (Option<i32>, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_fleetprep"))
        .args(args)
        .env(
            "FLEETPREP_STORE",
            "/nonexistent/fleetprep-test-store.sqlite3",
        )
        .output()
        .expect("run fleetprep");
    let json = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code(), json)
}

#[test]
fn every_example_scenario_ends_as_it_promises() {
    let config = root().join("examples/fleetprep.toml");
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("examples/scenarios"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 14, "{files:?}");
    for file in files {
        let name = file.display().to_string();
        let scenario =
            Scenario::from_toml(&std::fs::read_to_string(&file).unwrap(), &name).unwrap();
        let expect = scenario.expect.expect("[expect]");
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("engine.sqlite3");
        match expect.run.as_str() {
            "bake" => {
                let (code, summary) = run(&[
                    "bake",
                    "--config",
                    config.to_str().unwrap(),
                    "--scenario",
                    &name,
                    "--store",
                    store.to_str().unwrap(),
                    "--output",
                    "json",
                ]);
                assert_eq!(summary["status"], expect.status, "{name}: {summary:#}");
                assert_eq!(
                    code,
                    Some(if expect.status == "SUCCEEDED" { 0 } else { 1 }),
                    "{name}"
                );
                assert_eq!(
                    summary["error"].as_str(),
                    expect.category.as_deref(),
                    "{name}: {summary:#}"
                );
                match &expect.remedy {
                    Some(remedy) => {
                        let remediation = &summary["remediation"];
                        let rounds = expect.remediation_rounds.unwrap_or(1);
                        assert_eq!(remediation["rounds"], rounds, "{name}: {summary:#}");
                        let remedies = remediation["remedies"].as_array().unwrap();
                        assert!(remedies.iter().all(|r| r == remedy), "{name}: {summary:#}");
                    }
                    None => assert!(summary["remediation"].is_null(), "{name}: {summary:#}"),
                }
            }
            "fleet" => {
                let instances = expect.instances.expect("fleet scenarios say how many");
                let (code, report) = run(&[
                    "fleet",
                    "simulate",
                    "--config",
                    config.to_str().unwrap(),
                    "--instances",
                    &instances.to_string(),
                    "--scenario",
                    &name,
                    "--output",
                    "json",
                ]);
                assert_eq!(code, Some(0), "{name}: {report:#}");
                assert_eq!(
                    report["in_service"].as_u64(),
                    expect.in_service.map(u64::from),
                    "{name}: {report:#}"
                );
                let failures = report["failures_by_error"].as_object().unwrap();
                match expect.status.as_str() {
                    "SUCCEEDED" => assert!(failures.is_empty(), "{name}: {report:#}"),
                    _ => {
                        let category = expect.category.as_deref().unwrap();
                        assert!(failures.contains_key(category), "{name}: {report:#}");
                    }
                }
            }
            other => panic!("{name}: run = {other:?}"),
        }
    }
}
