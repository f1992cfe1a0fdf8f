//! The sysprep, unattend and hostname verbs, run as a user would: the built binary, real
//! files from the repository (fixtures and examples), exit codes and output checked.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fleetprep(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fleetprep"))
        .args(args)
        .output()
        .expect("run fleetprep")
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn fixture(case: &str, file: &str) -> String {
    repo(&format!("crates/sysprep/tests/data/diagnose/{case}/{file}"))
        .display()
        .to_string()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn diagnose_prints_the_documented_json() {
    let output = fleetprep(&[
        "sysprep",
        "diagnose",
        "--log",
        &fixture("appx-not-provisioned", "setupact.log"),
        "--output",
        "json",
    ]);
    assert!(output.status.success(), "{output:?}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["category", "retriable", "evidence", "remediation"]);
    assert_eq!(json["category"], "appx-not-provisioned");
    assert_eq!(json["retriable"], false);
    assert!(
        json["evidence"][0]
            .as_str()
            .unwrap()
            .contains("Microsoft.BingWeather_4.53.51922.0_x64__8wekyb3d8bbwe")
    );
}

#[test]
fn diagnose_uses_console_and_context() {
    let output = fleetprep(&[
        "sysprep",
        "diagnose",
        "--console",
        &fixture("agent-unreachable", "console.txt"),
        "--agent-offline",
        "--output",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(json["category"], "agent-unreachable");

    // Issue 10, bug 2: the healthy EC2Launch v2 console ("Troubleshoot EC2Launch v2", sample
    // console output) prints IMAGE_STATE_UNDEPLOYABLE; with a time-out that is `timeout`.
    let output = fleetprep(&[
        "sysprep",
        "diagnose",
        "--console",
        &repo("crates/sysprep/tests/data/console/ec2launch-v2-healthy.txt")
            .display()
            .to_string(),
        "--timed-out",
    ]);
    assert!(
        stdout(&output).starts_with("category: timeout (retriable)"),
        "{}",
        stdout(&output)
    );

    let output = fleetprep(&[
        "sysprep",
        "diagnose",
        "--log",
        &fixture("timeout", "setupact.log"),
        "--timed-out",
    ]);
    assert!(output.status.success());
    assert!(
        stdout(&output).starts_with("category: timeout (retriable)"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn diagnose_help_lists_every_category() {
    let output = fleetprep(&["sysprep", "diagnose", "--help"]);
    let help = stdout(&output);
    for category in sysprep::diagnose::Category::ALL {
        assert!(
            help.contains(category.as_str()),
            "{category} missing:\n{help}"
        );
    }
}

#[test]
fn diagnose_errors_name_the_missing_file() {
    let output = fleetprep(&["sysprep", "diagnose", "--log", "no-such-setupact.log"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no-such-setupact.log"));
    let output = fleetprep(&["sysprep", "diagnose"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn command_for_every_agent() {
    for (agent, needle) in [
        ("v2", "'reset' '--block'"),
        ("v1", "InitializeInstance.ps1') -Schedule"),
        ("ec2config", "-ArgumentList '-sysprep'"),
        ("none", "/generalize /oobe /shutdown /quiet"),
    ] {
        let output = fleetprep(&["sysprep", "command", "--agent", agent]);
        assert!(output.status.success(), "{agent}: {output:?}");
        assert!(
            stdout(&output).contains(needle),
            "{agent}: {}",
            stdout(&output)
        );
    }
    let output = fleetprep(&["sysprep", "command", "--agent", "v2", "--output", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(json["agent"], "ec2launch-v2");
    assert_eq!(json["steps"].as_array().unwrap().len(), 2);

    let output = fleetprep(&["sysprep", "command", "--agent", "v3"]);
    assert_eq!(output.status.code(), Some(2));
    let output = fleetprep(&["sysprep", "command", "--agent", "v1", "--after", "reboot"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("agent none"));
}

#[test]
fn rename_offers_rename_computer_and_set_host_name() {
    let output = fleetprep(&["sysprep", "rename", "--name", "WEB-001"]);
    assert!(output.status.success(), "{output:?}");
    let text = stdout(&output);
    assert!(text.contains("$desired = 'WEB-001'"), "{text}");
    assert!(text.contains("Rename-Computer -NewName $desired -Force\n"));
    assert!(text.contains("status --block | Out-Null }\n    exit 3010"));

    let output = fleetprep(&[
        "sysprep",
        "rename",
        "--name",
        "WEB-001",
        "--method",
        "set-host-name",
        "--restart",
        "restart-computer",
    ]);
    assert!(output.status.success(), "{output:?}");
    let text = stdout(&output);
    assert!(text.contains("get-agent-config --format json"), "{text}");
    assert!(text.contains("task = 'setHostName'"), "{text}");
    assert!(text.contains("Restart-Computer -Force"), "{text}");
    assert!(!text.contains("Rename-Computer -NewName"), "{text}");

    let output = fleetprep(&[
        "sysprep",
        "rename",
        "--name",
        "WEB-001",
        "--method",
        "set-host-name",
        "--output",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(json["agent"], "ec2launch-v2");
    assert_eq!(json["detached"], false);

    // The name is checked before anything is generated.
    let output = fleetprep(&["sysprep", "rename", "--name", "web'; Stop-Computer"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not allowed"));
    assert!(output.stdout.is_empty());
}

#[test]
fn scripts_are_printed() {
    let output = fleetprep(&["sysprep", "preflight-script"]);
    assert!(output.status.success());
    assert!(stdout(&output).contains("FLEETPREP-PREFLIGHT:"));
    let output = fleetprep(&["sysprep", "detect-script"]);
    assert!(stdout(&output).contains("FLEETPREP-DETECT:"));
}

#[test]
fn preflight_check_exits_1_when_blocked() {
    let dir = repo("crates/sysprep/tests/data/preflight");
    let output = fleetprep(&[
        "sysprep",
        "preflight-check",
        "--input",
        &dir.join("blocked.txt").display().to_string(),
    ]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(stdout(&output).contains("BLOCK appx-not-provisioned"));
    let output = fleetprep(&[
        "sysprep",
        "preflight-check",
        "--input",
        &dir.join("clean.txt").display().to_string(),
        "--output",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(json["blocked"], false);
}

#[test]
fn unattend_render_never_prints_the_password_source_in_the_xml() {
    let config = repo("examples/unattend-secrets-manager.toml")
        .display()
        .to_string();
    let output = fleetprep(&["unattend", "render", "--config", &config]);
    assert!(output.status.success(), "{output:?}");
    let xml = stdout(&output);
    assert!(xml.starts_with("<?xml"));
    assert!(xml.contains("<SkipRearm>0</SkipRearm>"));
    assert!(!xml.contains("AdministratorPassword") && !xml.contains("secretsmanager"));
    let output = fleetprep(&["unattend", "render", "--config", &config, "--script"]);
    let script = stdout(&output);
    assert!(script.contains("Get-SECSecretValue"));
    assert!(script.contains(r"C:\ProgramData\Amazon\EC2Launch\sysprep\unattend.xml"));
    // Issue 10, bug 4: on the builder the agent's own file is merged into, not replaced.
    assert!(script.contains("$answer.Load($destination)"));
}

/// Issue 10, bug 4: `--base AGENT_FILE` merges into the agent's answer file offline and
/// keeps what it carries (the specialize command that turns RDP back on).
#[test]
fn unattend_render_merges_into_the_agent_file() {
    let config = repo("examples/unattend-secrets-manager.toml")
        .display()
        .to_string();
    let base = repo("crates/sysprep/tests/data/agents/ec2launch-v2-unattend.xml")
        .display()
        .to_string();
    let output = fleetprep(&["unattend", "render", "--config", &config, "--base", &base]);
    assert!(output.status.success(), "{output:?}");
    let xml = stdout(&output);
    assert!(
        xml.contains("fDenyTSConnections /t REG_DWORD /d 0"),
        "{xml}"
    );
    assert!(xml.contains("<DoNotCleanUpNonPresentDevices>true</DoNotCleanUpNonPresentDevices>"));
    assert!(xml.contains("<RegisteredOwner>Platform Team</RegisteredOwner>"));
    assert!(!xml.contains("AdministratorPassword"));
}

#[test]
fn unattend_render_reports_config_errors_with_the_line() {
    let config = repo("crates/sysprep/tests/data/config/bad-unattend.toml")
        .display()
        .to_string();
    let output = fleetprep(&["unattend", "render", "--config", &config]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad-unattend.toml"), "{stderr}");
    assert!(stderr.contains("line 4"), "{stderr}");
    assert!(stderr.contains("time_zone"), "{stderr}");
}

#[test]
fn hostname_check_exit_codes() {
    let output = fleetprep(&["hostname", "check", "WEB-001"]);
    assert_eq!(output.status.code(), Some(0));
    for (name, reason) in [
        ("web_01", "'_'"),
        ("1234", "all digits"),
        ("-web", "start with a hyphen"),
        ("abcdefghijklmnop", "at most 15"),
    ] {
        let output = fleetprep(&["hostname", "check", name]);
        assert_eq!(output.status.code(), Some(1), "{name}");
        assert!(
            stdout(&output).contains(reason),
            "{name}: {}",
            stdout(&output)
        );
    }
    let output = fleetprep(&["hostname", "check", "web_01", "--output", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(json["valid"], false);
}

#[test]
fn hostname_preview_checks_the_pattern() {
    let output = fleetprep(&[
        "hostname",
        "preview",
        "--pattern",
        "{prefix}-{seq:3}",
        "--prefix",
        "WEB",
        "--count",
        "2",
    ]);
    assert!(output.status.success());
    assert!(stdout(&output).contains("WEB-001") && stdout(&output).contains("WEB-002"));
    let output = fleetprep(&["hostname", "preview", "--pattern", "{seq:4}"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("all-digit"));
}

/// A reader that goes away (`fleetprep … | head -1`) ends the process quietly: no panic,
/// no backtrace on stderr.
#[cfg(unix)]
#[test]
fn a_closed_pipe_ends_output_without_a_panic() {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fleetprep"))
        .args(["sysprep", "preflight-script"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end before the script (tens of KiB) is written.
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !status.success() || stderr.is_empty(),
        "{status:?} {stderr}"
    );
}
