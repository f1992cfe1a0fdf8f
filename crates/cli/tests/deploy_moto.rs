//! `fleetprep deploy` end to end against moto's CloudFormation on loopback (the endpoint the
//! AWS tests use, `FLEETPREP_TEST_AWS_ENDPOINT`, started by scripts/test): create →
//! CREATE_COMPLETE, a second run changes nothing, a changed parameter updates the stack, no
//! `--yes` without a terminal is refused, `deploy delete` keeps the hostname table. Every
//! resource moto creates is read back through its own API (`deploy_readback.py`, boto3).
//!
//! moto 5.2.1 (pinned in scripts/test) is not CloudFormation: it silently skips some resource
//! types and ignores `DefinitionSubstitutions`. [`MOTO_SKIPS`] lists the types it does not
//! create; the test asserts moto still skips them (FIXME(#5) style: the assert fails the day
//! moto creates them, the cue to read them back too).
#![cfg(feature = "aws")]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

/// Resource types moto 5.2.1's CloudFormation accepts but does not create.
const MOTO_SKIPS: &[&str] = &[
    "AWS::CloudWatch::Alarm",
    "AWS::AutoScaling::LifecycleHook",
    "AWS::Scheduler::Schedule",
    "AWS::SNS::Subscription",
    "AWS::SQS::QueuePolicy",
    "AWS::CloudWatch::Dashboard",
    "AWS::IAM::InstanceProfile",
];

fn endpoint() -> Option<String> {
    let url = std::env::var("FLEETPREP_TEST_AWS_ENDPOINT")
        .unwrap_or_else(|_| "http://127.0.0.1:5000".to_owned());
    let address = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let reachable = std::net::ToSocketAddrs::to_socket_addrs(&address)
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    if reachable {
        return Some(url);
    }
    let message = format!("AWS endpoint {url} is unreachable; scripts/test starts moto");
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{message}");
    }
    eprintln!("skipping: {message}");
    None
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fleetprep(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_fleetprep"))
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .stdin(Stdio::null())
        .output()
        .expect("run fleetprep");
    eprintln!(
        "fleetprep {}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn readback(endpoint: &str, stack: &str) -> Value {
    let script = repo().join("crates/cli/tests/deploy_readback.py");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let output = Command::new(python)
        .arg(script)
        .args([endpoint, stack])
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "readback: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("readback JSON")
}

fn deploy_args<'a>(
    config: &'a str,
    stack: &'a str,
    endpoint: &'a str,
    package: &'a str,
) -> Vec<&'a str> {
    vec![
        "deploy",
        "--config",
        config,
        "--stack",
        stack,
        "--endpoint-url",
        endpoint,
        "--region",
        "us-east-1",
        "--package",
        package,
    ]
}

#[test]
fn deploy_creates_updates_no_ops_and_deletes_on_moto() {
    let Some(endpoint) = endpoint() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let stack = format!(
        "fp-{}-{}",
        std::process::id(),
        clock::Clock::now(&clock::SystemClock)
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    // The package step on a real executable (this crate's own binary stands in for the
    // bootstrap: an x86_64 ELF executable built here).
    let zip = dir.path().join("bootstrap.zip");
    let zip_text = zip.display().to_string();
    let packaged = fleetprep(&[
        "deploy",
        "package",
        "--bootstrap",
        env!("CARGO_BIN_EXE_fleetprep"),
        "--output",
        &zip_text,
    ]);
    assert!(packaged.status.success());
    assert!(stdout(&packaged).contains("fleetprep/lambda/bootstrap-"));

    // The example config deploys as is.
    let example = repo().join("examples/fleetprep.toml");
    let example_text = example.display().to_string();
    let created = fleetprep(
        &[
            deploy_args(&example_text, &stack, &endpoint, &zip_text),
            vec!["--yes"],
        ]
        .concat(),
    );
    assert!(created.status.success(), "create failed");
    let out = stdout(&created);
    assert!(
        out.contains(&format!("stack {stack}: CREATE_COMPLETE")),
        "{out}"
    );
    // FIXME(#5): moto 5.2.1 keeps the outputs of the empty template a change set's new stack
    // starts with (execute_change_set never re-reads them), so none are printed; on AWS the
    // state machine ARNs follow. Fails the day moto returns them: then assert them.
    assert!(
        !out.contains("BakeStateMachineArn = "),
        "moto returns outputs now: {out}"
    );

    // Nothing changed: nothing happens, and it says so.
    let again = fleetprep(
        &[
            deploy_args(&example_text, &stack, &endpoint, &zip_text),
            vec!["--yes"],
        ]
        .concat(),
    );
    assert!(again.status.success());
    assert!(
        stdout(&again).contains("up to date: no changes"),
        "{}",
        stdout(&again)
    );

    // A changed parameter (the hostname prefix) updates the stack.
    let changed = dir.path().join("changed.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    assert!(text.contains("prefix = \"WEB\""));
    std::fs::write(
        &changed,
        text.replace("prefix = \"WEB\"", "prefix = \"APP\""),
    )
    .unwrap();
    let changed_text = changed.display().to_string();
    // Without --yes and without a terminal: refused, nothing executed.
    let unconfirmed = fleetprep(&deploy_args(&changed_text, &stack, &endpoint, &zip_text));
    assert!(!unconfirmed.status.success());
    assert!(String::from_utf8_lossy(&unconfirmed.stderr).contains("--yes"));
    let updated = fleetprep(
        &[
            deploy_args(&changed_text, &stack, &endpoint, &zip_text),
            vec!["--yes"],
        ]
        .concat(),
    );
    assert!(updated.status.success());
    assert!(
        stdout(&updated).contains(&format!("stack {stack}: UPDATE_COMPLETE")),
        "{}",
        stdout(&updated)
    );

    let status = fleetprep(&[
        "deploy",
        "status",
        "--stack",
        &stack,
        "--endpoint-url",
        &endpoint,
        "--region",
        "us-east-1",
    ]);
    assert!(stdout(&status).contains("UPDATE_COMPLETE"));

    check_readback(&readback(&endpoint, &stack), &stack);
    let table = readback(&endpoint, &stack)["resources"]["HostnameTable"]["physical"]
        .as_str()
        .unwrap()
        .to_owned();

    let deleted = fleetprep(&[
        "deploy",
        "delete",
        "--stack",
        &stack,
        "--endpoint-url",
        &endpoint,
        "--region",
        "us-east-1",
    ]);
    assert!(deleted.status.success());
    assert!(stdout(&deleted).contains("is kept"), "{}", stdout(&deleted));
    let after = readback(&endpoint, &stack);
    let tables = after["tables"].as_array().unwrap();
    assert!(
        tables.iter().any(|t| t == &Value::from(table.clone())),
        "the table {table} is gone: {tables:?}"
    );
}

fn check_readback(read: &Value, stack: &str) {
    let template: Value = {
        let output = fleetprep(&[
            "deploy",
            "render",
            "--config",
            &repo().join("examples/fleetprep.toml").display().to_string(),
            "--format",
            "json",
        ]);
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let resources = read["resources"].as_object().unwrap();
    let created = &read["read"];
    for (logical, resource) in template["Resources"].as_object().unwrap() {
        let kind = resource["Type"].as_str().unwrap();
        if MOTO_SKIPS.contains(&kind) {
            continue;
        }
        assert!(
            resources.contains_key(logical),
            "moto did not create {logical} ({kind})"
        );
    }
    // Every created resource that has a reader was read without error.
    for (logical, value) in created.as_object().unwrap() {
        assert!(value.get("error").is_none(), "{logical}: {value}");
    }
    // FIXME(#5): moto 5.2.1 creates none of these; the day it does, read them back too.
    assert_eq!(
        read["alarms"],
        serde_json::json!([]),
        "moto now creates alarms"
    );

    // State machines: the checked-in definitions, named after the stack.
    for workflow in ["bake", "name-on-launch", "release-on-terminate", "rollout"] {
        let id = deploy::template::machine_id(workflow);
        let machine = &created[&id];
        assert_eq!(machine["name"], format!("{stack}-{workflow}"));
        let definition: Value =
            serde_json::from_str(machine["definition"].as_str().unwrap()).unwrap();
        let text = definition.to_string();
        // FIXME(#5): moto 5.2.1 ignores DefinitionSubstitutions and keeps the placeholder; on
        // AWS the function's ARN is in its place. Either way no other function is named and
        // the rest is the checked-in definition.
        let function_arn = created["Function"]["FunctionArn"].as_str().unwrap();
        assert!(
            text.contains(workflows::FUNCTION_ARN_PLACEHOLDER) || text.contains(function_arn),
            "{workflow}: invokes neither the placeholder nor {function_arn}"
        );
        let checked_in: Value =
            serde_json::from_str(workflows::raw_definition(workflow).unwrap()).unwrap();
        assert!(
            serde_json::from_str::<Value>(
                &text.replace(function_arn, workflows::FUNCTION_ARN_PLACEHOLDER)
            )
            .unwrap()
                == checked_in,
            "{workflow}: the deployed definition is not the checked-in one"
        );
    }
    // The function role's policy is the rendered one (least privilege, conditions intact).
    let role = &created["FunctionRole"];
    let rendered_policy = &template["Resources"]["FunctionRole"]["Properties"]["Policies"][0];
    let deployed_policy = &role["policies"][rendered_policy["PolicyName"].as_str().unwrap()];
    let sids = |policy: &Value| -> Vec<String> {
        policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["Sid"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        sids(deployed_policy),
        sids(&rendered_policy["PolicyDocument"])
    );
    let send_command = deployed_policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "RunCommandOnGroupInstances")
        .unwrap();
    assert_eq!(
        send_command["Condition"]["StringEquals"]["ssm:resourceTag/aws:autoscaling:groupName"],
        "web"
    );
    // Trust policies keep their confused-deputy conditions.
    assert!(
        created["StatesRole"]["trust"]
            .to_string()
            .contains("aws:SourceAccount")
    );
    // The table: protected, TTL and point-in-time recovery on.
    let table = &created["HostnameTable"];
    assert_eq!(table["table"]["DeletionProtectionEnabled"], true);
    // FIXME(#5): moto 5.2.1's CloudFormation ignores TimeToLiveSpecification and
    // PointInTimeRecoverySpecification (the template test checks both are declared).
    assert_eq!(
        table["ttl"]["TimeToLiveStatus"], "DISABLED",
        "moto applies TTL now"
    );
    assert_eq!(
        table["backups"]["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"], "DISABLED",
        "moto applies point-in-time recovery now"
    );
    // The rules: filtered on this stack's hook, retried, with a dead-letter queue.
    let rule = &created["LaunchRule"];
    let pattern: Value =
        serde_json::from_str(rule["rule"]["EventPattern"].as_str().unwrap()).unwrap();
    assert_eq!(
        pattern["detail"]["LifecycleHookName"],
        serde_json::json!([format!("{stack}-launch")])
    );
    assert_eq!(
        pattern["detail"]["AutoScalingGroupName"],
        serde_json::json!(["web"])
    );
    let target = &rule["targets"][0];
    assert!(
        target["DeadLetterConfig"]["Arn"]
            .as_str()
            .unwrap()
            .ends_with(&format!("{stack}-dead-letters"))
    );
    assert!(
        target["RetryPolicy"]["MaximumRetryAttempts"]
            .as_u64()
            .is_some()
    );
    // The function: the right runtime and architecture, its own log group, the changed prefix.
    let function = &created["Function"];
    assert_eq!(function["Runtime"], "provided.al2023");
    assert_eq!(
        function["Environment"]["Variables"]["FLEETPREP_HOSTNAME_PREFIX"],
        "APP"
    );
    assert_eq!(
        function["Environment"]["Variables"]["FLEETPREP_METRIC_NAMESPACE"],
        format!("Fleetprep/{stack}")
    );
    let queue = &created["DeadLetterQueue"];
    assert_eq!(queue["SqsManagedSseEnabled"], "true");
    let logs = &created["FunctionLogGroup"];
    assert_eq!(logs[0]["retentionInDays"], 90);
}
