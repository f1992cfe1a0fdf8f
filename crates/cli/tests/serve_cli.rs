//! `fleetprep serve` as a process: kill -9 it mid-execution and start it again on the same
//! store; every execution continues, none is lost or duplicated, and a task token handed out
//! before the crash is still valid after it.

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
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetprep"))
        .args(["serve", "--port", "0", "--store"])
        .arg(store)
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

/// fleetprep's own AWS path (aws-sdk-sfn) reads an execution's history from the server.
#[cfg(feature = "aws")]
#[test]
#[allow(clippy::disallowed_methods)] // a real server process, so a real-time deadline
fn executions_history_engine_aws_reads_from_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(&dir.path().join("serve.db"));
    let port = server.port;
    let def = json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": 1, "End": true}}});
    let machine = ok(
        port,
        "CreateStateMachine",
        json!({"name": "fleetprep-sdk", "definition": def.to_string(), "roleArn": "arn:aws:iam::123456789012:role/r"}),
    )["stateMachineArn"]
        .as_str()
        .expect("ARN")
        .to_owned();
    let arn = ok(
        port,
        "StartExecution",
        json!({"stateMachineArn": machine, "name": "sdk"}),
    )["executionArn"]
        .as_str()
        .expect("ARN")
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ok(port, "DescribeExecution", json!({"executionArn": arn}))["status"] == "RUNNING" {
        assert!(Instant::now() < deadline, "still running");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_fleetprep"))
        .args([
            "executions",
            "history",
            &arn,
            "--engine",
            "aws",
            "--region",
            "us-east-1",
        ])
        .arg("--endpoint-url")
        .arg(format!("http://127.0.0.1:{port}"))
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .expect("fleetprep runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for event in ["ExecutionStarted", "PassStateEntered", "ExecutionSucceeded"] {
        assert!(stdout.contains(event), "{event} missing:\n{stdout}");
    }
}
