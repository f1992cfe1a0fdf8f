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

// ---- `states exec --mock-config FILE --test-case NAME` (Step Functions Local mock files) ----

/// Runs `states exec` on `def` (file `name`) with the mock file `mocks` and test case `case`;
/// returns the exit code, the parsed JSON result (`Null` when none) and stderr.
fn exec_mocked(
    name: &str,
    def: &Value,
    mocks: &Value,
    case: &str,
    extra: &[&str],
) -> (Option<i32>, Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let def = write(&dir, name, def);
    let mocks = write(&dir, "MockConfigFile.json", mocks);
    let out = fleetprep()
        .args(["states", "exec"])
        .arg(&def)
        .arg("--mock-config")
        .arg(&mocks)
        .args(["--test-case", case, "--output", "json"])
        .args(["--start-time", "2030-01-01T00:00:00Z"])
        .args(extra)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.code(),
        v,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn event_types(v: &Value) -> Vec<String> {
    v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

/// The `output` of every event of type `ty`, parsed.
fn outputs_of(v: &Value, ty: &str, details: &str) -> Vec<Value> {
    v["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == ty)
        .map(|e| serde_json::from_str(e[details]["output"].as_str().unwrap()).unwrap())
        .collect()
}

fn sqs_machine() -> Value {
    json!({"StartAt":"Send","States":{
        "Send":{"Type":"Task","Resource":"arn:aws:states:::sqs:sendMessage",
            "Parameters":{"QueueUrl":"https://sqs.example/q","MessageBody":"hello"},
            "ResultPath":"$.sent","End":true}}})
}

#[test]
fn mocked_return_is_the_task_result() {
    let mocks = json!({
        "StateMachines":{"orders":{"TestCases":{"HappyPath":{"Send":"SentOk"}}}},
        "MockedResponses":{"SentOk":{"0":{"Return":{"MessageId":"m-1","MD5OfMessageBody":"abc"}}}}});
    let (code, v, err) = exec_mocked("orders.asl.json", &sqs_machine(), &mocks, "HappyPath", &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(v["status"], "SUCCEEDED");
    assert_eq!(
        v["output"],
        json!({"sent":{"MessageId":"m-1","MD5OfMessageBody":"abc"}}),
    );
    assert_eq!(
        outputs_of(&v, "TaskSucceeded", "taskSucceededEventDetails"),
        [json!({"MessageId":"m-1","MD5OfMessageBody":"abc"})]
    );
}

#[test]
fn mocked_attempts_follow_the_retrier() {
    let def = json!({"StartAt":"Call","States":{
        "Call":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke",
            "Parameters":{"FunctionName":"greeter","Payload.$":"$"},
            "Retry":[{"ErrorEquals":["Lambda.TooManyRequestsException"],
                "IntervalSeconds":2,"MaxAttempts":3,"BackoffRate":2}],
            "OutputPath":"$.Payload","End":true}}});
    let mocks = json!({
        "StateMachines":{"greet":{"TestCases":{"RetryPath":{"Call":"Flaky"}}}},
        "MockedResponses":{"Flaky":{
            "0":{"Throw":{"Error":"Lambda.TooManyRequestsException","Cause":"slow down"}},
            "1":{"Return":{"StatusCode":200,"Payload":{"hello":"world"}}}}}});
    let (code, v, err) = exec_mocked("greet.json", &def, &mocks, "RetryPath", &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(v["output"], json!({"hello":"world"}));
    let types = event_types(&v);
    assert_eq!(types.iter().filter(|t| *t == "TaskScheduled").count(), 2);
    assert!(types.contains(&"TaskFailed".to_owned()), "{types:?}");
    // The retry waited IntervalSeconds on the virtual clock.
    let last = v["history"].as_array().unwrap().last().unwrap();
    assert_eq!(last["timestamp"], "2030-01-01T00:00:02.000Z");
}

#[test]
fn mocked_throw_goes_to_the_catcher() {
    let def = json!({"StartAt":"Send","States":{
        "Send":{"Type":"Task","Resource":"arn:aws:states:::sqs:sendMessage",
            "Parameters":{"QueueUrl":"q","MessageBody":"x"},
            "Retry":[{"ErrorEquals":["Queue.Busy"],"IntervalSeconds":1,"MaxAttempts":1}],
            "Catch":[{"ErrorEquals":["Queue.Busy"],"ResultPath":"$.error","Next":"Recover"}],
            "End":true},
        "Recover":{"Type":"Pass","End":true}}});
    let mocks = json!({
        "StateMachines":{"q":{"TestCases":{"SadPath":{"Send":"Busy"}}}},
        "MockedResponses":{"Busy":{"0-1":{"Throw":{"Error":"Queue.Busy","Cause":"try later"}}}}});
    let (code, v, err) = exec_mocked("q.json", &def, &mocks, "SadPath", &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        v["output"],
        json!({"error":{"Error":"Queue.Busy","Cause":"try later"}})
    );
    let types = event_types(&v);
    assert_eq!(types.iter().filter(|t| *t == "TaskFailed").count(), 2);
    assert!(types.contains(&"PassStateEntered".to_owned()));
}

/// lambda:invoke's mocked `Return` is the Invoke API response as given (Step Functions
/// Local's format), not wrapped again; a function ARN's `Return` is what the function returned.
#[test]
fn mocked_lambda_invoke_keeps_the_given_envelope() {
    let def = json!({"StartAt":"Invoke","States":{
        "Invoke":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke",
            "Parameters":{"FunctionName.$":"$.fn","Payload":{"x":1}},
            "ResultPath":"$.invoked","Next":"Direct"},
        "Direct":{"Type":"Task",
            "Resource":"arn:aws:lambda:us-east-1:123456789012:function:direct",
            "ResultPath":"$.direct","End":true}}});
    let envelope =
        json!({"StatusCode":200,"Payload":{"StatusCode":200,"body":"Hello from Lambda!"}});
    let mocks = json!({
        "StateMachines":{"lambdas":{"TestCases":{"HappyPath":{"Invoke":"Env","Direct":"Plain"}}}},
        "MockedResponses":{"Env":{"0":{"Return":envelope}},
            "Plain":{"0":{"Return":{"body":"direct"}}}}});
    let dir = tempfile::tempdir().unwrap();
    let input = write(&dir, "in.json", &json!({"fn":"greeter"}));
    let (code, v, err) = exec_mocked(
        "lambdas.asl.json",
        &def,
        &mocks,
        "HappyPath",
        &["--input", input.to_str().unwrap()],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(v["output"]["fn"], "greeter");
    assert_eq!(v["output"]["invoked"], envelope);
    assert_eq!(v["output"]["direct"], json!({"body":"direct"}));
    assert_eq!(
        outputs_of(&v, "TaskSucceeded", "taskSucceededEventDetails"),
        [envelope]
    );
    assert_eq!(
        outputs_of(
            &v,
            "LambdaFunctionSucceeded",
            "lambdaFunctionSucceededEventDetails"
        ),
        [json!({"body":"direct"})]
    );
}

/// Step Functions Local numbers a state's invocations across the whole execution, so the
/// iterations of a Map share one counter (hence MaxConcurrency 1 for a predictable order).
#[test]
fn mocked_task_inside_a_map_counts_across_iterations() {
    let def = json!({"StartAt":"Each","States":{
        "Each":{"Type":"Map","ItemsPath":"$.items","MaxConcurrency":1,
            "ItemProcessor":{"StartAt":"Name","States":{
                "Name":{"Type":"Task","Resource":"arn:aws:states:::dynamodb:putItem",
                    "Parameters":{"TableName":"t","Item":{"id":{"S.$":"$"}}},
                    "Retry":[{"ErrorEquals":["DynamoDB.ConditionalCheckFailedException"],
                        "IntervalSeconds":1,"MaxAttempts":1}],
                    "End":true}}},
            "End":true}}});
    let mocks = json!({
        "StateMachines":{"fleet":{"TestCases":{"Names":{"Name":"Puts"}}}},
        "MockedResponses":{"Puts":{
            "0":{"Return":{"n":0}},
            "1":{"Throw":{"Error":"DynamoDB.ConditionalCheckFailedException","Cause":"taken"}},
            "2-3":{"Return":{"n":"2-3"}}}}});
    let input = json!({"items":["a","b","c"]});
    let dir = tempfile::tempdir().unwrap();
    let input = write(&dir, "in.json", &input);
    let (code, v, err) = exec_mocked(
        "fleet.json",
        &def,
        &mocks,
        "Names",
        &["--input", input.to_str().unwrap()],
    );
    assert_eq!(code, Some(0), "{err}");
    // a: attempt 0; b: attempt 1 throws, its retry is attempt 2; c: attempt 3.
    assert_eq!(v["output"], json!([{"n":0},{"n":"2-3"},{"n":"2-3"}]));
}

#[test]
fn running_past_the_last_mocked_attempt_fails_the_execution() {
    let def = json!({"StartAt":"Send","States":{
        "Send":{"Type":"Task","Resource":"arn:aws:states:::sqs:sendMessage",
            "Parameters":{"QueueUrl":"q","MessageBody":"x"},
            "Retry":[{"ErrorEquals":["States.ALL"],"IntervalSeconds":1,"MaxAttempts":3}],
            "Catch":[{"ErrorEquals":["States.ALL"],"Next":"Caught"}],
            "End":true},
        "Caught":{"Type":"Succeed"}}});
    let mocks = json!({
        "StateMachines":{"q":{"TestCases":{"Short":{"Send":"Once"}}}},
        "MockedResponses":{"Once":{"0":{"Throw":{"Error":"Boom","Cause":"first"}}}}});
    let (code, v, err) = exec_mocked("q.json", &def, &mocks, "Short", &[]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(v["status"], "FAILED");
    assert_eq!(v["error"], "States.Runtime");
    let cause = v["cause"].as_str().unwrap();
    assert!(
        cause.contains("state \"Send\" was invoked 2 times"),
        "{cause}"
    );
    assert!(cause.contains("mocked response \"Once\""), "{cause}");
    assert!(cause.contains("add a key \"1\""), "{cause}");
}

#[test]
fn a_task_the_test_case_does_not_mock_fails_and_says_so() {
    let def = json!({"StartAt":"A","States":{
        "A":{"Type":"Task","Resource":"arn:aws:states:::sqs:sendMessage",
            "Parameters":{"QueueUrl":"q","MessageBody":"x"},"Next":"B"},
        "B":{"Type":"Task","Resource":"arn:aws:states:::sns:publish",
            "Parameters":{"TopicArn":"t","Message":"m"},"End":true}}});
    let mocks = json!({
        "StateMachines":{"two":{"TestCases":{"Hybrid":{"A":"Ok"}}}},
        "MockedResponses":{"Ok":{"0":{"Return":{}}}}});
    let (code, v, err) = exec_mocked("two.json", &def, &mocks, "Hybrid", &[]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(v["error"], "States.TaskFailed");
    let cause = v["cause"].as_str().unwrap();
    assert!(
        cause.contains("state \"B\"")
            && cause.contains("no mock in test case \"Hybrid\"")
            && cause.contains("add \"B\": \"<mocked response>\""),
        "{cause}"
    );
}

#[test]
fn state_machine_name_selects_the_mock_entry() {
    let mocks = json!({
        "StateMachines":{"LambdaSQSIntegration":{"TestCases":{"HappyPath":{"Send":"Ok"}}}},
        "MockedResponses":{"Ok":{"0":{"Return":{"MessageId":"1"}}}}});
    let (code, _, err) = exec_mocked("def.json", &sqs_machine(), &mocks, "HappyPath", &[]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("no state machine \"def\"")
            && err.contains("\"LambdaSQSIntegration\"")
            && err.contains("--state-machine-name"),
        "{err}"
    );
    let (code, v, err) = exec_mocked(
        "def.json",
        &sqs_machine(),
        &mocks,
        "HappyPath",
        &["--state-machine-name", "LambdaSQSIntegration"],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(v["output"]["sent"], json!({"MessageId":"1"}));
}

/// Every mistake in the mock file stops `states exec` before it runs (exit 2), naming the
/// file, the JSON pointer and the fix.
#[test]
fn mock_file_errors_name_the_place_and_the_fix() {
    let base = |responses: Value, case: Value| {
        json!({"StateMachines":{"orders":{"TestCases":{"HappyPath":case}}},
            "MockedResponses":responses})
    };
    let ok_response = json!({"Ok":{"0":{"Return":{}}}});
    let cases: Vec<(&str, Value, &str, Vec<&str>)> = vec![
        (
            "unknown test case",
            base(ok_response.clone(), json!({"Send":"Ok"})),
            "SadPath",
            vec![
                "/StateMachines/orders/TestCases: no test case \"SadPath\"",
                "\"HappyPath\"",
            ],
        ),
        (
            "unknown mocked response",
            base(ok_response.clone(), json!({"Send":"Missing"})),
            "HappyPath",
            vec![
                "/StateMachines/orders/TestCases/HappyPath/Send: no mocked response \"Missing\"",
                "add it under \"MockedResponses\" or use one of \"Ok\"",
            ],
        ),
        (
            "bad range key",
            base(
                json!({"Ok":{"0":{"Return":{}},"3-1":{"Return":{}}}}),
                json!({"Send":"Ok"}),
            ),
            "HappyPath",
            vec![
                "/MockedResponses/Ok/3-1: \"3-1\" is not an attempt number",
                "inclusive range (\"1-2\", low end first)",
            ],
        ),
        (
            "Return and Throw together",
            base(
                json!({"Ok":{"0":{"Return":{},"Throw":{"Error":"E","Cause":"C"}}}}),
                json!({"Send":"Ok"}),
            ),
            "HappyPath",
            vec!["/MockedResponses/Ok/0: has both \"Return\" and \"Throw\"; keep one"],
        ),
        (
            "Throw without Cause",
            base(
                json!({"Ok":{"0":{"Throw":{"Error":"E"}}}}),
                json!({"Send":"Ok"}),
            ),
            "HappyPath",
            vec!["/MockedResponses/Ok/0/Throw: missing \"Cause\""],
        ),
        (
            "a state the definition lacks",
            base(ok_response.clone(), json!({"Sned":"Ok"})),
            "HappyPath",
            vec![
                "/StateMachines/orders/TestCases/HappyPath/Sned: the definition has no state \"Sned\"",
            ],
        ),
        (
            "misspelt top-level field",
            json!({"StateMachines":{"orders":{"TestCases":{"HappyPath":{}}}},
                "MockedResponse":{}}),
            "HappyPath",
            vec![
                "/MockedResponse: unknown field \"MockedResponse\"",
                "missing \"MockedResponses\"",
            ],
        ),
    ];
    for (what, mocks, case, expected) in cases {
        let (code, v, err) = exec_mocked("orders.json", &sqs_machine(), &mocks, case, &[]);
        assert_eq!(code, Some(2), "{what}: {err}");
        assert_eq!(v, Value::Null, "{what}: nothing runs");
        assert!(err.contains("MockConfigFile.json: "), "{what}: {err}");
        for e in expected {
            assert!(err.contains(e), "{what}: expected {e:?} in:\n{err}");
        }
    }

    // Not JSON at all.
    let dir = tempfile::tempdir().unwrap();
    let def = write(&dir, "orders.json", &sqs_machine());
    let mocks = dir.path().join("MockConfigFile.json");
    std::fs::write(&mocks, "{\"StateMachines\": {}, // no comments\n}").unwrap();
    let out = fleetprep()
        .args(["states", "exec"])
        .arg(&def)
        .arg("--mock-config")
        .arg(&mocks)
        .args(["--test-case", "HappyPath"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("MockConfigFile.json: not valid JSON") && err.contains("line 1"),
        "{err}"
    );

    // --test-case without --mock-config is a usage error.
    let out = fleetprep()
        .args(["states", "exec"])
        .arg(&def)
        .args(["--test-case", "HappyPath"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--mock-config"));
}

/// The example pair in `examples/` runs as documented: every test case, one outcome each.
#[test]
fn example_mock_file_runs_every_test_case() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let run = |case: &str| -> Value {
        let out = fleetprep()
            .args(["states", "exec"])
            .arg(examples.join("greeting.asl.json"))
            .arg("--mock-config")
            .arg(examples.join("greeting.mock.json"))
            .args(["--test-case", case, "--output", "json"])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
    };
    let happy = run("HappyPath");
    assert_eq!(happy["status"], "SUCCEEDED");
    assert_eq!(happy["output"]["result"]["greeting"], "Hello, fleet!");
    let retry = run("RetryPath");
    assert_eq!(retry["output"]["result"]["greeting"], "Hello at last!");
    let failed = event_types(&retry)
        .into_iter()
        .filter(|t| t == "TaskFailed")
        .count();
    assert_eq!(failed, 2);
    let sad = run("SadPath");
    assert_eq!(sad["status"], "FAILED");
    assert_eq!(sad["error"], "GreetingFailed");
}
