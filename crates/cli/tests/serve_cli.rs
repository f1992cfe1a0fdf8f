//! `fleetprep serve` as a process: kill -9 it mid-execution and start it again on the same
//! store; every execution continues, none is lost or duplicated, and a task token handed out
//! before the crash (an activity's, a callback's) is still valid after it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Serve {
    child: Child,
    port: u16,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(store: &std::path::Path) -> Serve {
    start_serving(&["--store".as_ref(), store.as_os_str()])
}

/// `fleetprep serve --port 0` with `args`, once it listens.
fn start_serving(args: &[&std::ffi::OsStr]) -> Serve {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetprep"))
        .args(["serve", "--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("fleetprep serve starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the listening line");
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    Serve { child, port }
}

/// One Step Functions call over HTTP/1.1; (status, body).
fn call(port: u16, op: &str, body: Value) -> (u16, Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let body = body.to_string();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: localhost\r\nX-Amz-Target: AWSStepFunctions.{op}\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("read");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let json = response
        .split("\r\n\r\n")
        .nth(1)
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

fn ok(port: u16, op: &str, body: Value) -> Value {
    let (status, v) = call(port, op, body);
    assert_eq!(status, 200, "{op}: {v}");
    v
}

/// Creates state machine `name` with `definition` and starts execution `execution` of it;
/// the execution's ARN.
fn create_and_start(port: u16, name: &str, definition: &Value, execution: &str) -> String {
    let machine = ok(
        port,
        "CreateStateMachine",
        json!({"name": name, "definition": definition.to_string(), "roleArn": "arn:aws:iam::123456789012:role/r"}),
    )["stateMachineArn"]
        .as_str()
        .expect("ARN")
        .to_owned();
    ok(
        port,
        "StartExecution",
        json!({"stateMachineArn": machine, "name": execution}),
    )["executionArn"]
        .as_str()
        .expect("ARN")
        .to_owned()
}

#[test]
#[allow(clippy::disallowed_methods)] // a real server process, so a real-time deadline
fn kill_9_mid_execution_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("serve.db");
    let mut server = start(&store);
    let port = server.port;
    let activity = ok(port, "CreateActivity", json!({"name": "worker"}))["activityArn"]
        .as_str()
        .expect("activity ARN")
        .to_owned();
    let with_task = json!({"StartAt": "Work", "States": {
        "Work": {"Type": "Task", "Resource": activity, "Next": "Rest"},
        "Rest": {"Type": "Wait", "Seconds": 1, "Next": "Done"},
        "Done": {"Type": "Pass", "End": true}}});
    let waiting = json!({"StartAt": "Rest", "States": {
        "Rest": {"Type": "Wait", "Seconds": 2, "End": true}}});
    let mut machines = Vec::new();
    for (name, def) in [("tasks", &with_task), ("waits", &waiting)] {
        let arn = ok(
            port,
            "CreateStateMachine",
            json!({"name": name, "definition": def.to_string(), "roleArn": "arn:aws:iam::123456789012:role/r"}),
        )["stateMachineArn"]
            .as_str()
            .expect("ARN")
            .to_owned();
        for i in 0..4 {
            ok(
                port,
                "StartExecution",
                json!({"stateMachineArn": arn, "name": format!("{name}-{i}"), "input": format!("{{\"i\": {i}}}")}),
            );
        }
        machines.push(arn);
    }
    let before = ok(port, "GetActivityTask", json!({"activityArn": activity}));
    let early_token = before["taskToken"].as_str().expect("a task").to_owned();

    // kill -9: no shutdown code runs.
    server.child.kill().expect("SIGKILL");
    server.child.wait().expect("reaped");
    let server = start(&store);
    let port = server.port;

    // The token handed out before the crash still answers its task.
    ok(
        port,
        "SendTaskSuccess",
        json!({"taskToken": early_token, "output": "{\"answered\": \"before\"}"}),
    );
    let mut answered = 1;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let running: usize = machines
            .iter()
            .map(|m| {
                ok(
                    port,
                    "ListExecutions",
                    json!({"stateMachineArn": m, "statusFilter": "RUNNING"}),
                )["executions"]
                    .as_array()
                    .map_or(0, Vec::len)
            })
            .sum();
        if running == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{running} executions still running"
        );
        if answered == 4 {
            // Every task is answered; the rest is Waits (a poll now would wait 60 s).
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        // Answer whatever the activity hands out (the others' tasks, re-queued on restart;
        // a task already answered is not handed out again).
        let (_, task) = call(
            port,
            "GetActivityTask",
            json!({"activityArn": activity, "workerName": "w"}),
        );
        if let Some(token) = task["taskToken"].as_str() {
            ok(
                port,
                "SendTaskSuccess",
                json!({"taskToken": token, "output": "{\"answered\": \"after\"}"}),
            );
            answered += 1;
        }
    }
    for m in &machines {
        let all = ok(port, "ListExecutions", json!({"stateMachineArn": m}));
        let all = all["executions"].as_array().expect("executions");
        assert_eq!(all.len(), 4, "no execution lost or duplicated: {all:?}");
        for e in all {
            assert_eq!(e["status"], "SUCCEEDED", "{e}");
            let history = ok(
                port,
                "GetExecutionHistory",
                json!({"executionArn": e["executionArn"]}),
            );
            let types: Vec<&str> = history["events"]
                .as_array()
                .expect("events")
                .iter()
                .filter_map(|ev| ev["type"].as_str())
                .collect();
            let count = |t: &str| types.iter().filter(|x| **x == t).count();
            assert_eq!(count("ExecutionStarted"), 1, "{types:?}");
            assert_eq!(count("ExecutionSucceeded"), 1, "{types:?}");
            assert!(
                count("ActivitySucceeded") + count("TaskSucceeded") <= 1,
                "{types:?}"
            );
        }
    }
    // Exactly one execution got the answer sent with the pre-crash token.
    let answered_before = ok(
        port,
        "ListExecutions",
        json!({"stateMachineArn": machines[0]}),
    )["executions"]
        .as_array()
        .expect("executions")
        .iter()
        .filter(|e| {
            let d = ok(
                port,
                "DescribeExecution",
                json!({"executionArn": e["executionArn"]}),
            );
            d["output"]
                .as_str()
                .and_then(|o| serde_json::from_str::<Value>(o).ok())
                == Some(json!({"answered": "before"}))
        })
        .count();
    assert_eq!(answered_before, 1);
}

/// A `.waitForTaskToken` task submitted before a kill -9 still waits after it, under the same
/// token (the task's `$$.Task.Token`), and is not submitted a second time.
#[test]
#[allow(clippy::disallowed_methods)] // a real server process, so a real-time deadline
fn a_callback_token_stays_valid_across_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("serve.db");
    let mut server = start(&store);
    let port = server.port;
    let def = json!({"StartAt": "Send", "States": {"Send": {"Type": "Task",
        "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        "Parameters": {"QueueUrl": "q", "MessageBody": {"TaskToken.$": "$$.Task.Token"}},
        "End": true}}});
    let arn = create_and_start(port, "callback", &def, "cb");
    let history = |port: u16| {
        ok(port, "GetExecutionHistory", json!({"executionArn": arn}))["events"]
            .as_array()
            .expect("events")
            .clone()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let token = loop {
        let events = history(port);
        if events.iter().any(|e| e["type"] == "TaskSubmitted") {
            let parameters = events
                .iter()
                .find(|e| e["type"] == "TaskScheduled")
                .and_then(|e| e["taskScheduledEventDetails"]["parameters"].as_str())
                .expect("TaskScheduled parameters");
            let parameters: Value = serde_json::from_str(parameters).expect("JSON");
            break parameters["MessageBody"]["TaskToken"]
                .as_str()
                .expect("the token in the message")
                .to_owned();
        }
        assert!(Instant::now() < deadline, "never submitted: {events:?}");
        std::thread::sleep(Duration::from_millis(20));
    };

    server.child.kill().expect("SIGKILL");
    server.child.wait().expect("reaped");
    let server = start(&store);
    let port = server.port;
    ok(port, "SendTaskHeartbeat", json!({"taskToken": token}));
    ok(
        port,
        "SendTaskSuccess",
        json!({"taskToken": token, "output": "{\"after\": \"restart\"}"}),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let done = loop {
        let d = ok(port, "DescribeExecution", json!({"executionArn": arn}));
        if d["status"] != "RUNNING" {
            break d;
        }
        assert!(Instant::now() < deadline, "still running");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(done["output"], "{\"after\":\"restart\"}");
    let types: Vec<String> = history(port)
        .iter()
        .filter_map(|e| e["type"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        types.iter().filter(|t| *t == "TaskSubmitted").count(),
        1,
        "{types:?}"
    );
    let (status, v) = call(
        port,
        "SendTaskSuccess",
        json!({"taskToken": token, "output": "{}"}),
    );
    assert_eq!(
        (status, v["__type"].as_str()),
        (400, Some("TaskTimedOut")),
        "{v}"
    );
}

/// fleetprep's own AWS path (aws-sdk-sfn) reads an execution's history from the server.
#[cfg(feature = "aws")]
#[test]
#[allow(clippy::disallowed_methods)] // a real server process, so a real-time deadline
fn executions_history_engine_aws_reads_from_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(&dir.path().join("serve.db"));
    let port = server.port;
    let def = json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": 1, "End": true}}});
    let arn = create_and_start(port, "fleetprep-sdk", &def, "sdk");
    let deadline = Instant::now() + Duration::from_secs(20);
    while ok(port, "DescribeExecution", json!({"executionArn": arn}))["status"] == "RUNNING" {
        assert!(Instant::now() < deadline, "still running");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stdout = fleetprep_aws(port, &["executions", "history", &arn]);
    for event in ["ExecutionStarted", "PassStateEntered", "ExecutionSucceeded"] {
        assert!(stdout.contains(event), "{event} missing:\n{stdout}");
    }
}

/// `fleetprep ARGS --engine aws` against the server on `port` (aws-sdk-sfn over HTTP, with
/// dummy credentials from the environment); its stdout, once it succeeded.
#[cfg(feature = "aws")]
fn fleetprep_aws(port: u16, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_fleetprep"))
        .args(args)
        .args(["--engine", "aws", "--region", "us-east-1"])
        .arg("--endpoint-url")
        .arg(format!("http://127.0.0.1:{port}"))
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("fleetprep runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "fleetprep {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `fleetprep serve --fleet simulated` serves fleetprep's own workflows as state machines
/// `fleetprep-<workflow>`: a whole bake runs over HTTP through aws-sdk-sfn (`bake --engine
/// aws`), its tasks handled in process against the simulated fleet, and `executions
/// list|show|history --engine aws` read it back.
#[cfg(feature = "aws")]
#[test]
fn bake_engine_aws_runs_on_serve_fleet_simulated() {
    let args = ["--fleet", "simulated", "--seed", "7", "--instances", "2"];
    let server = start_serving(&args.map(std::ffi::OsStr::new));
    let port = server.port;
    let machines = ok(port, "ListStateMachines", json!({}))["stateMachines"].clone();
    let mut names: Vec<&str> = machines
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "fleetprep-bake",
            "fleetprep-name-on-launch",
            "fleetprep-release-on-terminate",
            "fleetprep-rollout"
        ]
    );
    let bake = ok(
        port,
        "DescribeStateMachine",
        json!({"stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:fleetprep-bake"}),
    );
    let definition = bake["definition"].as_str().expect("the definition");
    assert!(
        definition.contains("arn:aws:lambda:us-east-1:123456789012:function:fleetprep")
            && !definition.contains("${FleetprepFunctionArn}"),
        "the function ARN is substituted: {definition}"
    );

    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/fleetprep.toml");
    // The example config names a deployed stack (`[deploy] stack`); the prefix says the state
    // machines are the server's own instead.
    let summary = fleetprep_aws(
        port,
        &[
            "bake",
            "--config",
            config,
            "--poll-seconds",
            "1",
            "--state-machine-prefix",
            "fleetprep-",
        ],
    );
    let field = |name: &str| {
        summary
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name:?} line in:\n{summary}"))
            .to_owned()
    };
    assert_eq!(field("status"), "SUCCEEDED", "{summary}");
    let image = field("image");
    assert!(image.starts_with("ami-"), "{summary}");
    let arn = field("execution");
    assert!(
        arn.starts_with("arn:aws:states:us-east-1:123456789012:execution:fleetprep-bake:"),
        "{arn}"
    );

    // The bake, and one name-on-launch execution per instance the group launched at start
    // (their launch hooks, as EventBridge would start them).
    let listed: Value = serde_json::from_str(&fleetprep_aws(
        port,
        &["executions", "list", "--output", "json"],
    ))
    .expect("JSON");
    let executions = listed["executions"].as_array().expect("executions");
    let of = |workflow: &str| -> Vec<&Value> {
        executions
            .iter()
            .filter(|e| e["stateMachine"] == workflow)
            .collect()
    };
    let bakes = of("bake");
    assert_eq!(bakes.len(), 1, "{listed}");
    assert_eq!(bakes[0]["executionArn"], arn.as_str());
    assert_eq!(bakes[0]["status"], "SUCCEEDED");
    let launches = of("name-on-launch");
    assert_eq!(launches.len(), 2, "{listed}");
    assert!(
        launches.iter().all(|e| e["status"] == "SUCCEEDED"),
        "{listed}"
    );
    assert_eq!(executions.len(), 3, "{listed}");

    let name = arn.rsplit(':').next().expect("a name");
    let shown: Value = serde_json::from_str(&fleetprep_aws(
        port,
        &["executions", "show", name, "--output", "json"],
    ))
    .expect("JSON");
    assert_eq!(shown["executionArn"], arn.as_str());
    assert_eq!(shown["output"]["image_id"], image.as_str());

    let history: Value = serde_json::from_str(&fleetprep_aws(
        port,
        &["executions", "history", &arn, "--output", "json"],
    ))
    .expect("JSON");
    let events = history["events"].as_array().expect("events");
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types.first(), Some(&"ExecutionStarted"), "{types:?}");
    assert_eq!(types.last(), Some(&"ExecutionSucceeded"), "{types:?}");
    assert!(
        events
            .iter()
            .any(|e| e["taskScheduledEventDetails"]["parameters"]
                .as_str()
                .is_some_and(|p| p.contains("function:fleetprep"))),
        "the bake's tasks invoke the served function: {types:?}"
    );
}
