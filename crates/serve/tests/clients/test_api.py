"""boto3 and the AWS CLI against `fleetprep serve` (started by tests/clients.rs on port 0 with a
virtual clock; its URL is in SFN_ENDPOINT). Each test_* function is one scenario; the script exits
non-zero when any fails. Run a subset with: python3 test_api.py test_activities ...
"""
import json
import os
import re
import subprocess
import sys
import threading
import time
import traceback
import urllib.request
import uuid

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

ENDPOINT = os.environ["SFN_ENDPOINT"]
ROLE = "arn:aws:iam::123456789012:role/test"


def client(region="us-east-1"):
    # inject_host_prefix=False: StartSyncExecution otherwise goes to sync-<host>.
    return boto3.client(
        "stepfunctions", endpoint_url=ENDPOINT, region_name=region,
        aws_access_key_id="test", aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1}, inject_host_prefix=False, read_timeout=90))


sfn = client()


def name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def machine(definition, kind="STANDARD", prefix="sm"):
    return sfn.create_state_machine(name=name(prefix), definition=json.dumps(definition),
                                    roleArn=ROLE, type=kind)["stateMachineArn"]


def error_of(call, **kw):
    try:
        call(**kw)
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["Error"]["Message"], \
            e.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError(f"{call.__name__} succeeded, expected an error")


def wait_done(arn, timeout=20):
    deadline = time.time() + timeout
    while True:
        d = sfn.describe_execution(executionArn=arn)
        if d["status"] != "RUNNING":
            return d
        assert time.time() < deadline, f"{arn} still RUNNING"
        time.sleep(0.02)


def wait_status(arn, status, timeout=20):
    deadline = time.time() + timeout
    while sfn.describe_execution(executionArn=arn)["status"] != status:
        assert time.time() < deadline, f"{arn} never became {status}"
        time.sleep(0.02)


PASS_CHAIN = {"StartAt": "A", "States": {
    "A": {"Type": "Pass", "Result": {"n": 1}, "ResultPath": "$.a", "Next": "B"},
    "B": {"Type": "Pass", "End": True}}}


def admin(path, body=None):
    req = urllib.request.Request(ENDPOINT + path, method="POST" if body is not None else "GET",
                                 data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def test_state_machine_lifecycle():
    n = name("life")
    arn = sfn.create_state_machine(name=n, definition=json.dumps(PASS_CHAIN), roleArn=ROLE,
                                   tags=[{"key": "team", "value": "a"}])["stateMachineArn"]
    assert arn == f"arn:aws:states:us-east-1:123456789012:stateMachine:{n}", arn
    # Idempotent with the same definition and role; a different one is a conflict.
    again = sfn.create_state_machine(name=n, definition=json.dumps(PASS_CHAIN), roleArn=ROLE)
    assert again["stateMachineArn"] == arn
    code, _, status = error_of(sfn.create_state_machine, name=n, definition=json.dumps(
        {"StartAt": "X", "States": {"X": {"Type": "Succeed"}}}), roleArn=ROLE)
    assert (code, status) == ("StateMachineAlreadyExists", 400), code
    d = sfn.describe_state_machine(stateMachineArn=arn)
    assert d["name"] == n and d["type"] == "STANDARD" and d["status"] == "ACTIVE"
    assert json.loads(d["definition"]) == PASS_CHAIN and d["roleArn"] == ROLE
    new_def = {"StartAt": "X", "States": {"X": {"Type": "Pass", "Result": 7, "End": True}}}
    sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(new_def))
    assert json.loads(sfn.describe_state_machine(stateMachineArn=arn)["definition"]) == new_def
    sfn.tag_resource(resourceArn=arn, tags=[{"key": "env", "value": "dev"}])
    sfn.untag_resource(resourceArn=arn, tagKeys=["team"])
    assert sfn.list_tags_for_resource(resourceArn=arn)["tags"] == [{"key": "env", "value": "dev"}]
    sfn.delete_state_machine(stateMachineArn=arn)
    code, _, _ = error_of(sfn.describe_state_machine, stateMachineArn=arn)
    assert code == "StateMachineDoesNotExist", code
    sfn.delete_state_machine(stateMachineArn=arn)  # idempotent


def test_invalid_definitions_are_answered_as_aws_does():
    bad = {"StartAt": "Nope", "States": {"A": {"Type": "Pass", "End": True}}}
    code, message, status = error_of(sfn.create_state_machine, name=name("bad"),
                                     definition=json.dumps(bad), roleArn=ROLE)
    assert (code, status) == ("InvalidDefinition", 400), (code, status)
    assert message.startswith("Invalid State Machine Definition: ") and "Nope" in message, message
    code, _, _ = error_of(sfn.create_state_machine, name=name("bad"), definition="{not json",
                          roleArn=ROLE)
    assert code == "InvalidDefinition"
    v = sfn.validate_state_machine_definition(definition=json.dumps(bad))
    assert v["result"] == "FAIL" and v["diagnostics"], v
    assert v["diagnostics"][0]["code"] == "SCHEMA_VALIDATION_FAILED"
    assert sfn.validate_state_machine_definition(definition=json.dumps(PASS_CHAIN))["result"] == "OK"
    code, _, _ = error_of(sfn.create_state_machine, name="has space", definition=json.dumps(PASS_CHAIN),
                          roleArn=ROLE)
    assert code == "InvalidName"


def test_list_state_machines_pages():
    mine = {machine(PASS_CHAIN, prefix="page") for _ in range(3)}
    seen, token, pages = set(), None, 0
    while True:
        kw = {"maxResults": 2}
        if token:
            kw["nextToken"] = token
        page = sfn.list_state_machines(**kw)
        assert len(page["stateMachines"]) <= 2
        seen |= {m["stateMachineArn"] for m in page["stateMachines"]}
        pages += 1
        token = page.get("nextToken")
        if not token:
            break
    assert mine <= seen and pages >= 2
    code, _, _ = error_of(sfn.list_state_machines, nextToken="forged")
    assert code == "InvalidToken"


def test_execution_describe_history_and_list():
    arn = machine(PASS_CHAIN)
    ex = sfn.start_execution(stateMachineArn=arn, name="run-1", input='{"x": 1}')
    assert ex["executionArn"].endswith(":execution:" + arn.split(":")[-1] + ":run-1")
    d = wait_done(ex["executionArn"])
    assert d["status"] == "SUCCEEDED" and json.loads(d["output"]) == {"x": 1, "a": {"n": 1}}, d
    assert d["stopDate"] >= d["startDate"]
    events = sfn.get_execution_history(executionArn=ex["executionArn"])["events"]
    types = [e["type"] for e in events]
    assert types == ["ExecutionStarted", "PassStateEntered", "PassStateExited", "PassStateEntered",
                     "PassStateExited", "ExecutionSucceeded"], types
    assert [e["id"] for e in events] == list(range(1, 7))
    rev = sfn.get_execution_history(executionArn=ex["executionArn"], reverseOrder=True)["events"]
    assert [e["id"] for e in rev] == list(range(6, 0, -1))
    page = sfn.get_execution_history(executionArn=ex["executionArn"], maxResults=4)
    rest = sfn.get_execution_history(executionArn=ex["executionArn"], maxResults=4,
                                     nextToken=page["nextToken"])
    assert [e["id"] for e in page["events"] + rest["events"]] == list(range(1, 7))
    assert "nextToken" not in rest
    bare = sfn.get_execution_history(executionArn=ex["executionArn"], includeExecutionData=False)
    assert "input" not in bare["events"][0]["executionStartedEventDetails"]
    # Idempotency: the execution ended, so the same name is taken whatever the input.
    code, _, _ = error_of(sfn.start_execution, stateMachineArn=arn, name="run-1", input='{"x": 1}')
    assert code == "ExecutionAlreadyExists"
    listed = sfn.list_executions(stateMachineArn=arn, statusFilter="SUCCEEDED")["executions"]
    assert [e["name"] for e in listed] == ["run-1"]
    assert sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING")["executions"] == []
    for_exec = sfn.describe_state_machine_for_execution(executionArn=ex["executionArn"])
    assert json.loads(for_exec["definition"]) == PASS_CHAIN


def test_bad_requests():
    arn = machine(PASS_CHAIN)
    code, _, status = error_of(sfn.start_execution, stateMachineArn=arn, input="{nope")
    assert (code, status) == ("InvalidExecutionInput", 400)
    code, _, _ = error_of(sfn.start_execution, stateMachineArn=arn + "-missing")
    assert code == "StateMachineDoesNotExist"
    code, _, _ = error_of(sfn.describe_state_machine, stateMachineArn="not-an-arn")
    assert code == "InvalidArn"
    code, _, _ = error_of(sfn.describe_execution,
                          executionArn=arn.replace(":stateMachine:", ":execution:") + ":none")
    assert code == "ExecutionDoesNotExist"
    code, _, _ = error_of(sfn.start_sync_execution, stateMachineArn=arn)
    assert code == "StateMachineTypeNotSupported"


def test_region_comes_from_the_signature():
    eu = client("eu-west-3")
    arn = eu.create_state_machine(name=name("eu"), definition=json.dumps(PASS_CHAIN),
                                  roleArn=ROLE)["stateMachineArn"]
    assert arn.startswith("arn:aws:states:eu-west-3:123456789012:stateMachine:"), arn
    assert arn not in {m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]}


def test_express_sync_execution():
    arn = machine(PASS_CHAIN, kind="EXPRESS")
    r = sfn.start_sync_execution(stateMachineArn=arn, input='{"y": 2}', name="sync-1")
    assert r["status"] == "SUCCEEDED" and json.loads(r["output"]) == {"y": 2, "a": {"n": 1}}, r
    # An EXPRESS execution's ARN is arn:aws:states:REGION:ACCOUNT:express:MACHINE:NAME:ID
    # (API Reference, StartSyncExecution), and the same ARN describes it again.
    parts = r["executionArn"].split(":")
    machine_name = arn.split(":")[-1]
    assert len(parts) == 9 and parts[5] == "express" and parts[6:8] == [machine_name, "sync-1"], r
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", parts[8]), r
    d = sfn.describe_execution(executionArn=r["executionArn"])
    assert d["executionArn"] == r["executionArn"] and d["status"] == "SUCCEEDED", d
    started = sfn.start_execution(stateMachineArn=arn)["executionArn"]
    assert started.split(":")[5] == "express", started
    assert started in {e["executionArn"] for e in sfn.list_executions(stateMachineArn=arn)["executions"]}
    wrong_id = ":".join(parts[:8] + ["00000000-0000-0000-0000-000000000000"])
    code, _, _ = error_of(sfn.describe_execution, executionArn=wrong_id)
    assert code == "ExecutionDoesNotExist", code
    failing = machine({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "E", "Cause": "C"}}},
                      kind="EXPRESS")
    r = sfn.start_sync_execution(stateMachineArn=failing)
    assert (r["status"], r["error"], r["cause"]) == ("FAILED", "E", "C"), r


def test_virtual_clock_jumps_long_waits():
    # 300 days: within a Standard workflow's one-year limit, so the Wait ends normally.
    days_300 = 300 * 86400
    arn = machine({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": days_300, "End": True}}})
    ex = sfn.start_execution(stateMachineArn=arn)
    d = wait_done(ex["executionArn"], timeout=10)
    assert d["status"] == "SUCCEEDED", d
    assert (d["stopDate"] - d["startDate"]).total_seconds() >= days_300 - 1, d
    # A year-long Wait reaches the one-year execution limit: TIMED_OUT, also at once.
    arn = machine({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 2 * 31536000, "End": True}}})
    d = wait_done(sfn.start_execution(stateMachineArn=arn)["executionArn"], timeout=10)
    assert d["status"] == "TIMED_OUT", d


def activity_machine(activity_arn, extra=None):
    task = {"Type": "Task", "Resource": activity_arn, "End": True}
    task.update(extra or {})
    return machine({"StartAt": "Work", "States": {"Work": task}})


def test_activities_success_failure_heartbeat_and_tokens():
    act = sfn.create_activity(name=name("act"))["activityArn"]
    assert act in {a["activityArn"] for a in sfn.list_activities()["activities"]}
    arn = activity_machine(act, {"HeartbeatSeconds": 3600})
    ex = sfn.start_execution(stateMachineArn=arn, name="work-1", input='{"job": 1}')
    # Same name and input while running: the same execution (StartExecution idempotency).
    same = sfn.start_execution(stateMachineArn=arn, name="work-1", input='{"job": 1}')
    assert same["executionArn"] == ex["executionArn"]
    code, _, _ = error_of(sfn.start_execution, stateMachineArn=arn, name="work-1", input='{"job": 2}')
    assert code == "ExecutionAlreadyExists"
    task = sfn.get_activity_task(activityArn=act, workerName="w1")
    assert json.loads(task["input"]) == {"job": 1}, task
    sfn.send_task_heartbeat(taskToken=task["taskToken"])
    sfn.send_task_success(taskToken=task["taskToken"], output='{"done": true}')
    d = wait_done(ex["executionArn"])
    assert d["status"] == "SUCCEEDED" and json.loads(d["output"]) == {"done": True}, d
    types = [e["type"] for e in sfn.get_execution_history(executionArn=ex["executionArn"])["events"]]
    assert "ActivityScheduled" in types or "TaskScheduled" in types, types
    # The task is over: its token is no longer valid.
    code, _, _ = error_of(sfn.send_task_success, taskToken=task["taskToken"], output="{}")
    assert code == "TaskTimedOut", code
    code, _, _ = error_of(sfn.send_task_success, taskToken="forged", output="{}")
    assert code == "InvalidToken", code
    ex2 = sfn.start_execution(stateMachineArn=arn)
    task = sfn.get_activity_task(activityArn=act)
    sfn.send_task_failure(taskToken=task["taskToken"], error="Worker.Broke", cause="disk full")
    d = wait_done(ex2["executionArn"])
    assert (d["status"], d["error"], d["cause"]) == ("FAILED", "Worker.Broke", "disk full"), d
    sfn.delete_activity(activityArn=act)
    assert act not in {a["activityArn"] for a in sfn.list_activities()["activities"]}


def test_stop_execution():
    act = sfn.create_activity(name=name("stop"))["activityArn"]
    arn = activity_machine(act)
    ex = sfn.start_execution(stateMachineArn=arn)
    sfn.stop_execution(executionArn=ex["executionArn"], error="Ops", cause="stopped by test")
    d = wait_done(ex["executionArn"])
    assert (d["status"], d["error"], d["cause"]) == ("ABORTED", "Ops", "stopped by test"), d
    assert sfn.get_execution_history(executionArn=ex["executionArn"])["events"][-1]["type"] == "ExecutionAborted"
    # An ABORTED execution redrives: the interrupted activity task is handed out again.
    assert sfn.describe_execution(executionArn=ex["executionArn"])["redriveStatus"] == "REDRIVABLE"
    sfn.redrive_execution(executionArn=ex["executionArn"])
    task = sfn.get_activity_task(activityArn=act)
    sfn.send_task_success(taskToken=task["taskToken"], output='{"second": "attempt"}')
    d = wait_done(ex["executionArn"])
    assert (d["status"], json.loads(d["output"]), d["redriveCount"]) == \
        ("SUCCEEDED", {"second": "attempt"}, 1), d


def test_admin_clock_advance_times_a_task_out():
    act = sfn.create_activity(name=name("slow"))["activityArn"]
    arn = activity_machine(act, {"TimeoutSeconds": 60})
    ex = sfn.start_execution(stateMachineArn=arn)
    wait_status(ex["executionArn"], "RUNNING")
    # A task is running, so the virtual clock does not jump by itself.
    time.sleep(0.2)
    assert sfn.describe_execution(executionArn=ex["executionArn"])["status"] == "RUNNING"
    admin("/_fleetprep/clock/advance", {"seconds": 61})
    d = wait_done(ex["executionArn"])
    assert (d["status"], d["error"]) == ("FAILED", "States.Timeout"), d


def test_virtual_clock_still_jumps_after_abandoned_tasks():
    # The stopped and timed-out activity tasks above no longer count as running.
    arn = machine({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 86400, "End": True}}})
    d = wait_done(sfn.start_execution(stateMachineArn=arn)["executionArn"], timeout=10)
    assert d["status"] == "SUCCEEDED", d


def test_long_poll_blocks_no_other_client():
    act = sfn.create_activity(name=name("idle"))["activityArn"]
    done = {}

    def poll():
        done["task"] = client().get_activity_task(activityArn=act)

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(0.2)
    arn = machine(PASS_CHAIN)
    for _ in range(20):
        sfn.list_state_machines()
    ex = sfn.start_execution(stateMachineArn=arn)
    assert wait_done(ex["executionArn"])["status"] == "SUCCEEDED"
    assert t.is_alive(), "the long poll returned early"
    # Give the poller a task so it ends now rather than after 60 s.
    activity_machine_arn = activity_machine(act)
    sfn.start_execution(stateMachineArn=activity_machine_arn, input='{"late": 1}')
    t.join(30)
    assert json.loads(done["task"]["input"]) == {"late": 1}
    # Answer it: a running task holds virtual time still for everyone.
    sfn.send_task_success(taskToken=done["task"]["taskToken"], output="{}")


CLI_ENV = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
               AWS_DEFAULT_REGION="us-east-1", AWS_PAGER="")


def aws_cli(*args):
    """`aws stepfunctions ARGS` against the endpoint; its JSON answer."""
    out = subprocess.run(["aws", "stepfunctions", "--endpoint-url", ENDPOINT, *args],
                         env=CLI_ENV, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout) if out.stdout.strip() else {}


def aws_cli_failure(*args):
    """`aws stepfunctions ARGS`, which must fail; its error output."""
    out = subprocess.run(["aws", "stepfunctions", "--endpoint-url", ENDPOINT, *args],
                         env=CLI_ENV, capture_output=True, text=True)
    assert out.returncode != 0, out.stdout
    return out.stderr


def test_aws_cli():
    aws = aws_cli
    n = name("cli")
    arn = aws("create-state-machine", "--name", n, "--definition", json.dumps(PASS_CHAIN),
              "--role-arn", ROLE)["stateMachineArn"]
    ex = aws("start-execution", "--state-machine-arn", arn, "--input", '{"cli": true}')
    d = wait_done(ex["executionArn"])
    assert d["status"] == "SUCCEEDED"
    shown = aws("describe-execution", "--execution-arn", ex["executionArn"])
    assert json.loads(shown["output"]) == {"cli": True, "a": {"n": 1}}
    hist = aws("get-execution-history", "--execution-arn", ex["executionArn"])
    assert hist["events"][-1]["type"] == "ExecutionSucceeded"
    assert n in [m["name"] for m in aws("list-state-machines")["stateMachines"]]
    bad = aws_cli_failure("describe-state-machine", "--state-machine-arn", arn + "x")
    assert "StateMachineDoesNotExist" in bad, bad


def test_test_state():
    task = {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "f", "Payload.$": "$"},
            "ResultSelector": {"body.$": "$.Payload"}, "ResultPath": "$.r", "Next": "After",
            "Retry": [{"ErrorEquals": ["Throttled"], "MaxAttempts": 2}],
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Handler"}]}
    r = sfn.test_state(definition=json.dumps(task), roleArn=ROLE, input='{"a": 1}',
                       inspectionLevel="DEBUG",
                       mock={"result": json.dumps({"StatusCode": 200, "Payload": {"ok": True}})})
    assert r["status"] == "SUCCEEDED" and r["nextState"] == "After", r
    assert json.loads(r["output"]) == {"a": 1, "r": {"body": {"ok": True}}}, r
    assert json.loads(r["inspectionData"]["input"]) == {"a": 1}
    assert json.loads(r["inspectionData"]["afterParameters"]) == {"FunctionName": "f", "Payload": {"a": 1}}
    assert json.loads(r["inspectionData"]["afterInputPath"]) == {"a": 1}
    assert json.loads(r["inspectionData"]["result"]) == {"StatusCode": 200, "Payload": {"ok": True}}
    assert json.loads(r["inspectionData"]["afterResultSelector"]) == {"body": {"ok": True}}
    assert json.loads(r["inspectionData"]["afterResultPath"]) == {"a": 1, "r": {"body": {"ok": True}}}
    narrowed = dict(task, InputPath="$.inner")
    r = sfn.test_state(definition=json.dumps(narrowed), roleArn=ROLE,
                       input='{"inner": {"b": 2}, "other": 3}', inspectionLevel="DEBUG",
                       mock={"result": json.dumps({"Payload": 7})})
    assert json.loads(r["inspectionData"]["afterInputPath"]) == {"b": 2}, r
    assert json.loads(r["inspectionData"]["afterParameters"])["Payload"] == {"b": 2}, r
    assert json.loads(r["inspectionData"]["afterResultSelector"]) == {"body": 7}, r
    r = sfn.test_state(definition=json.dumps(task), roleArn=ROLE, input="{}",
                       mock={"errorOutput": {"error": "Boom", "cause": "bad"}})
    assert (r["status"], r["error"], r["nextState"]) == ("CAUGHT_ERROR", "Boom", "Handler"), r
    assert "inspectionData" not in r  # INFO
    r = sfn.test_state(definition=json.dumps(task), roleArn=ROLE, input="{}",
                       mock={"errorOutput": {"error": "Throttled", "cause": "slow down"}})
    assert (r["status"], r["error"]) == ("RETRIABLE", "Throttled"), r
    choice = {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericGreaterThan": 5, "Next": "Big"}],
              "Default": "Small"}
    r = sfn.test_state(definition=json.dumps(choice), roleArn=ROLE, input='{"n": 9}')
    assert (r["status"], r["nextState"]) == ("SUCCEEDED", "Big"), r
    fail = {"Type": "Fail", "Error": "Nope", "Cause": "because"}
    r = sfn.test_state(definition=json.dumps(fail), roleArn=ROLE)
    assert (r["status"], r["error"], r["cause"]) == ("FAILED", "Nope", "because"), r
    code, _, _ = error_of(sfn.test_state, definition=json.dumps({"Type": "Nope"}), roleArn=ROLE)
    assert code == "InvalidDefinition", code


def test_mock_config_answers_by_test_case():
    # The state machine's name is the key in the mock file; the test case follows '#'.
    definition = open(os.path.join(os.environ["EXAMPLES"], "greeting.asl.json")).read()
    try:
        arn = sfn.create_state_machine(name="greeting", definition=definition,
                                       roleArn=ROLE)["stateMachineArn"]
    except ClientError:
        arn = "arn:aws:states:us-east-1:123456789012:stateMachine:greeting"
    happy = sfn.start_execution(stateMachineArn=arn + "#HappyPath", input='{"who": "fleet"}')
    d = wait_done(happy["executionArn"])
    assert d["status"] == "SUCCEEDED", d
    out = json.loads(d["output"])
    assert out["result"] == {"greeting": "Hello, fleet!"} and out["sent"]["MessageId"], out
    retry = wait_done(sfn.start_execution(stateMachineArn=arn + "#RetryPath")["executionArn"])
    assert json.loads(retry["output"])["result"] == {"greeting": "Hello at last!"}, retry
    sad = wait_done(sfn.start_execution(stateMachineArn=arn + "#SadPath")["executionArn"])
    assert (sad["status"], sad["error"]) == ("FAILED", "GreetingFailed"), sad
    code, message, _ = error_of(sfn.start_execution, stateMachineArn=arn + "#NoSuchCase")
    assert code == "InvalidArn" and "NoSuchCase" in message, (code, message)


CALLBACK = "arn:aws:states:::sqs:sendMessage.waitForTaskToken"


def callback_machine(extra=None, catch=None):
    task = {"Type": "Task", "Resource": CALLBACK,
            "Parameters": {"QueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/q",
                           "MessageBody": {"job.$": "$.job", "TaskToken.$": "$$.Task.Token"}},
            "End": True}
    task.update(extra or {})
    states = {"Send": task}
    if catch:
        task["Catch"] = [{"ErrorEquals": [catch], "Next": "Caught"}]
        states["Caught"] = {"Type": "Pass", "End": True}
    return machine({"StartAt": "Send", "States": states})


def submitted_token(execution_arn, timeout=20):
    """The task token of a callback task, read where a consumer would find it (the message
    the task sent: TaskScheduled's parameters) once the task is submitted."""
    deadline = time.time() + timeout
    while True:
        events = sfn.get_execution_history(executionArn=execution_arn)["events"]
        if any(e["type"] == "TaskSubmitted" for e in events):
            scheduled = next(e for e in events if e["type"] == "TaskScheduled")
            params = json.loads(scheduled["taskScheduledEventDetails"]["parameters"])
            return params["MessageBody"]["TaskToken"]
        assert time.time() < deadline, f"{execution_arn} never submitted its task"
        time.sleep(0.02)


def test_callbacks_with_boto3():
    arn = callback_machine({"HeartbeatSeconds": 3600})
    ex = sfn.start_execution(stateMachineArn=arn, input='{"job": 7}')["executionArn"]
    token = submitted_token(ex)
    sfn.send_task_heartbeat(taskToken=token)
    code, _, _ = error_of(sfn.send_task_success, taskToken=token, output="{not json")
    assert code == "InvalidOutput", code
    sfn.send_task_success(taskToken=token, output='{"processed": 7}')
    d = wait_done(ex)
    assert d["status"] == "SUCCEEDED" and json.loads(d["output"]) == {"processed": 7}, d
    events = sfn.get_execution_history(executionArn=ex)["events"]
    assert [e["type"] for e in events] == [
        "ExecutionStarted", "TaskStateEntered", "TaskScheduled", "TaskStarted", "TaskSubmitted",
        "TaskSucceeded", "TaskStateExited", "ExecutionSucceeded"], events
    scheduled = events[2]["taskScheduledEventDetails"]
    assert (scheduled["resourceType"], scheduled["resource"]) == ("sqs", "sendMessage.waitForTaskToken")
    assert json.loads(scheduled["parameters"])["MessageBody"]["job"] == 7
    assert scheduled["heartbeatInSeconds"] == 3600
    for e in events[4:6]:
        details = e["taskSubmittedEventDetails" if e["type"] == "TaskSubmitted" else "taskSucceededEventDetails"]
        assert (details["resourceType"], details["resource"]) == ("sqs", "sendMessage.waitForTaskToken"), e
    assert json.loads(events[5]["taskSucceededEventDetails"]["output"]) == {"processed": 7}
    # API Reference, "SendTaskSuccess": a closed task is TaskTimedOut; a token that is not
    # one of ours is InvalidToken, also one naming an execution that does not exist.
    for call in (sfn.send_task_success, sfn.send_task_failure, sfn.send_task_heartbeat):
        kw = {"output": "{}"} if call == sfn.send_task_success else {}
        assert error_of(call, taskToken=token, **kw)[0] == "TaskTimedOut", call
        assert error_of(call, taskToken="forged", **kw)[0] == "InvalidToken", call
    stranger = ex.replace(ex.split(":")[-1], "nobody").encode().hex() + "-1"
    assert error_of(sfn.send_task_success, taskToken=stranger, output="{}")[0] == "InvalidToken"
    # SendTaskFailure fails the task with the sender's error and cause.
    ex = sfn.start_execution(stateMachineArn=arn, input='{"job": 8}')["executionArn"]
    sfn.send_task_failure(taskToken=submitted_token(ex), error="Consumer.Rejected", cause="bad job")
    d = wait_done(ex)
    assert (d["status"], d["error"], d["cause"]) == ("FAILED", "Consumer.Rejected", "bad job"), d
    failed = [e for e in sfn.get_execution_history(executionArn=ex)["events"] if e["type"] == "TaskFailed"]
    assert failed[0]["taskFailedEventDetails"]["resource"] == "sendMessage.waitForTaskToken", failed


def test_callback_heartbeat_and_task_timeouts():
    # A missed heartbeat: TaskTimedOut with States.Timeout, caught by States.HeartbeatTimeout.
    arn = callback_machine({"HeartbeatSeconds": 10}, catch="States.HeartbeatTimeout")
    ex = sfn.start_execution(stateMachineArn=arn, input='{"job": 1}')["executionArn"]
    token = submitted_token(ex)
    admin("/_fleetprep/clock/advance", {"seconds": 6})
    sfn.send_task_heartbeat(taskToken=token)  # restarts the 10 s
    admin("/_fleetprep/clock/advance", {"seconds": 6})
    time.sleep(0.1)
    assert sfn.describe_execution(executionArn=ex)["status"] == "RUNNING"
    admin("/_fleetprep/clock/advance", {"seconds": 5})
    d = wait_done(ex)
    assert d["status"] == "SUCCEEDED", d
    events = sfn.get_execution_history(executionArn=ex)["events"]
    timed_out = [e for e in events if e["type"] == "TaskTimedOut"]
    assert timed_out and timed_out[0]["taskTimedOutEventDetails"]["error"] == "States.Timeout", events
    assert error_of(sfn.send_task_success, taskToken=token, output="{}")[0] == "TaskTimedOut"
    # TimeoutSeconds covers the whole wait for the callback.
    arn = callback_machine({"TimeoutSeconds": 30})
    ex = sfn.start_execution(stateMachineArn=arn, input='{"job": 2}')["executionArn"]
    submitted_token(ex)
    admin("/_fleetprep/clock/advance", {"seconds": 31})
    d = wait_done(ex)
    assert (d["status"], d["error"]) == ("FAILED", "States.Timeout"), d


def test_callbacks_with_the_aws_cli():
    arn = callback_machine()
    ex = aws_cli("start-execution", "--state-machine-arn", arn, "--input", '{"job": 3}')["executionArn"]
    token = submitted_token(ex)
    aws_cli("send-task-heartbeat", "--task-token", token)
    aws_cli("send-task-success", "--task-token", token, "--task-output", '{"cli": "done"}')
    d = wait_done(ex)
    assert d["status"] == "SUCCEEDED" and json.loads(d["output"]) == {"cli": "done"}, d
    ex = aws_cli("start-execution", "--state-machine-arn", arn, "--input", '{"job": 4}')["executionArn"]
    token = submitted_token(ex)
    aws_cli("send-task-failure", "--task-token", token, "--error", "Cli.Error", "--cause", "from the cli")
    d = wait_done(ex)
    assert (d["status"], d["error"], d["cause"]) == ("FAILED", "Cli.Error", "from the cli"), d
    bad = aws_cli_failure("send-task-success", "--task-token", token, "--task-output", "{}")
    assert "TaskTimedOut" in bad, bad


# A Map whose second item fails on the first attempt only: its Parse state reads the text at
# index $$.Execution.RedriveCount, which is not JSON at 0. Every iteration records the attempt
# its last state ran in.
REDRIVE_MAP = {"StartAt": "Before", "States": {
    "Before": {"Type": "Pass", "Parameters": {"items": [1, 2, 3], "ranAt.$": "$$.Execution.RedriveCount"},
               "Next": "Each"},
    "Each": {"Type": "Map", "ItemsPath": "$.items", "ResultPath": "$.results", "End": True,
             "ItemSelector": {"item.$": "$$.Map.Item.Value"},
             "ItemProcessor": {"StartAt": "Check", "States": {
                 "Check": {"Type": "Choice", "Choices": [
                     {"Variable": "$.item", "NumericEquals": 2, "Next": "Parse"}], "Default": "Done"},
                 "Parse": {"Type": "Pass", "ResultPath": "$.parsed", "Next": "Done", "Parameters": {
                     "v.$": "States.StringToJson(States.ArrayGetItem(States.Array('not json', '{}'), $$.Execution.RedriveCount))"}},
                 "Done": {"Type": "Pass", "End": True,
                          "Parameters": {"item.$": "$.item", "ranAt.$": "$$.Execution.RedriveCount"}}}}}}}


def test_redrive_with_boto3():
    arn = machine(REDRIVE_MAP)
    ex = sfn.start_execution(stateMachineArn=arn)["executionArn"]
    d = wait_done(ex)
    assert (d["status"], d["redriveCount"], d["redriveStatus"]) == ("FAILED", 0, "REDRIVABLE"), d
    failed_events = len(sfn.get_execution_history(executionArn=ex)["events"])
    r = sfn.redrive_execution(executionArn=ex)
    d = wait_done(ex)
    assert d["status"] == "SUCCEEDED", d
    out = json.loads(d["output"])
    # The Pass before the Map and the Map's first iteration ran once, in the first attempt;
    # the failed iteration and the one never started ran in the redrive.
    assert out["ranAt"] == 0, out
    assert [(x["item"], x["ranAt"]) for x in out["results"]] == [(1, 0), (2, 1), (3, 1)], out
    assert d["redriveCount"] == 1 and d["redriveDate"] == r["redriveDate"], d
    assert (d["redriveStatus"], d["redriveStatusReason"]) == \
        ("NOT_REDRIVABLE", "Execution is SUCCEEDED and cannot be redriven."), d
    events = sfn.get_execution_history(executionArn=ex)["events"]
    redriven = events[failed_events]
    assert redriven["type"] == "ExecutionRedriven", redriven
    assert redriven["executionRedrivenEventDetails"] == {"redriveCount": 1}, redriven
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    # After the redrive: item 2's Parse runs again (no new Entered event) and enters Done;
    # item 3 starts; nothing of item 1 or of the Pass before the Map runs again.
    after = [e["type"] for e in events[failed_events:]]
    assert after.count("PassStateEntered") == 2 and after.count("MapIterationStarted") == 1, after
    assert after[-1] == "ExecutionSucceeded", after
    listed = sfn.list_executions(stateMachineArn=arn)["executions"]
    assert listed[0]["redriveCount"] == 1, listed
    # API Reference, "RedriveExecution": its errors.
    code, message, _ = error_of(sfn.redrive_execution, executionArn=ex)
    assert code == "ExecutionNotRedrivable" and "SUCCEEDED" in message, (code, message)
    code, _, _ = error_of(sfn.redrive_execution, executionArn=ex + "-none")
    assert code == "ExecutionDoesNotExist", code
    code, _, _ = error_of(sfn.redrive_execution, executionArn="not-an-arn")
    assert code == "InvalidArn", code
    act = sfn.create_activity(name=name("busy"))["activityArn"]
    running = sfn.start_execution(stateMachineArn=activity_machine(act))["executionArn"]
    code, message, _ = error_of(sfn.redrive_execution, executionArn=running)
    assert code == "ExecutionNotRedrivable" and "RUNNING" in message, (code, message)
    sfn.stop_execution(executionArn=running)
    express = machine({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "E"}}}, kind="EXPRESS")
    failed = sfn.start_execution(stateMachineArn=express)["executionArn"]
    wait_done(failed)
    assert sfn.describe_execution(executionArn=failed)["redriveStatus"] == "NOT_REDRIVABLE"
    code, _, _ = error_of(sfn.redrive_execution, executionArn=failed)
    assert code == "ExecutionNotRedrivable", code


def test_redrive_client_token_is_idempotent_and_a_fail_state_fails_again():
    arn = machine({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Always"}}})
    ex = sfn.start_execution(stateMachineArn=arn)["executionArn"]
    wait_done(ex)
    first = sfn.redrive_execution(executionArn=ex, clientToken="redrive-1")
    d = wait_done(ex)
    # "Reenters the Fail state and fails again."
    assert (d["status"], d["error"], d["redriveCount"]) == ("FAILED", "Always", 1), d
    again = sfn.redrive_execution(executionArn=ex, clientToken="redrive-1")
    assert again["redriveDate"] == first["redriveDate"]
    assert sfn.describe_execution(executionArn=ex)["redriveCount"] == 1
    sfn.redrive_execution(executionArn=ex, clientToken="redrive-2")
    assert wait_done(ex)["redriveCount"] == 2
    types = [e["type"] for e in sfn.get_execution_history(executionArn=ex)["events"]]
    assert types == ["ExecutionStarted", "FailStateEntered", "ExecutionFailed",
                     "ExecutionRedriven", "FailStateEntered", "ExecutionFailed",
                     "ExecutionRedriven", "FailStateEntered", "ExecutionFailed"], types


def test_redrive_with_the_aws_cli():
    arn = machine(REDRIVE_MAP)
    ex = aws_cli("start-execution", "--state-machine-arn", arn)["executionArn"]
    assert wait_done(ex)["status"] == "FAILED"
    r = aws_cli("redrive-execution", "--execution-arn", ex)
    assert "redriveDate" in r, r
    d = aws_cli("describe-execution", "--execution-arn", ex)
    d = wait_done(ex) if d["status"] == "RUNNING" else d
    assert (d["status"], d["redriveCount"]) == ("SUCCEEDED", 1), d
    bad = aws_cli_failure("redrive-execution", "--execution-arn", ex)
    assert "ExecutionNotRedrivable" in bad, bad


class FakeLambda:
    """The Lambda Invoke API on LAMBDA_PORT: function `echo` returns its payload, `broken`
    raises (X-Amz-Function-Error), anything else is ResourceNotFoundException."""

    def __init__(self):
        import http.server

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                fn = self.path.split("/")[3]
                headers = {"Content-Type": "application/json", "x-amzn-RequestId": "req-1",
                           "X-Amz-Executed-Version": "$LATEST"}
                if fn.endswith("echo"):
                    status, payload = 200, {"echo": json.loads(body)}
                elif fn.endswith("broken"):
                    status, payload = 200, {"errorType": "ValueError", "errorMessage": "bad value"}
                    headers["X-Amz-Function-Error"] = "Unhandled"
                else:
                    status, payload = 404, {"Type": "User", "message": "Function not found"}
                    headers["x-amzn-ErrorType"] = "ResourceNotFoundException"
                data = json.dumps(payload).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["LAMBDA_PORT"])), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_lambda_tasks_go_to_the_lambda_endpoint():
    lam = FakeLambda()
    try:
        invoke = machine({"StartAt": "Call", "States": {"Call": {
            "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "echo", "Payload.$": "$"}, "End": True}}})
        d = wait_done(sfn.start_execution(stateMachineArn=invoke, input='{"k": 1}')["executionArn"])
        out = json.loads(d["output"])
        assert out["StatusCode"] == 200 and out["Payload"] == {"echo": {"k": 1}}, out
        assert out["SdkResponseMetadata"]["RequestId"] == "req-1", out
        plain = machine({"StartAt": "Call", "States": {"Call": {
            "Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:echo",
            "End": True}}})
        d = wait_done(sfn.start_execution(stateMachineArn=plain, input='{"k": 2}')["executionArn"])
        assert json.loads(d["output"]) == {"echo": {"k": 2}}, d
        types = [e["type"] for e in sfn.get_execution_history(executionArn=d["executionArn"])["events"]]
        assert "LambdaFunctionSucceeded" in types, types
        broken = machine({"StartAt": "Call", "States": {"Call": {
            "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "broken", "Payload": {}}, "End": True}}})
        d = wait_done(sfn.start_execution(stateMachineArn=broken)["executionArn"])
        assert (d["status"], d["error"]) == ("FAILED", "ValueError"), d
        assert json.loads(d["cause"])["errorMessage"] == "bad value", d
        missing = machine({"StartAt": "Call", "States": {"Call": {
            "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "nope", "Payload": {}}, "End": True}}})
        d = wait_done(sfn.start_execution(stateMachineArn=missing)["executionArn"])
        assert (d["status"], d["error"]) == ("FAILED", "Lambda.ResourceNotFoundException"), d
        # A callback through Lambda: the function gets the token; its Invoke response is the
        # TaskSubmitted output; the callback's output is the result, not wrapped.
        callback = machine({"StartAt": "Call", "States": {"Call": {
            "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {"FunctionName": "echo", "Payload": {"token.$": "$$.Task.Token"}},
            "End": True}}})
        ex = sfn.start_execution(stateMachineArn=callback)["executionArn"]
        deadline = time.time() + 20
        while True:
            events = sfn.get_execution_history(executionArn=ex)["events"]
            submitted = [e for e in events if e["type"] == "TaskSubmitted"]
            if submitted:
                break
            assert time.time() < deadline, events
            time.sleep(0.02)
        details = submitted[0]["taskSubmittedEventDetails"]
        assert (details["resourceType"], details["resource"]) == ("lambda", "invoke.waitForTaskToken")
        response = json.loads(details["output"])
        assert response["StatusCode"] == 200, response
        sfn.send_task_success(taskToken=response["Payload"]["echo"]["token"], output='"called back"')
        d = wait_done(ex)
        assert (d["status"], json.loads(d["output"])) == ("SUCCEEDED", "called back"), d
    finally:
        lam.server.shutdown()


def main(names):
    tests = {k: v for k, v in globals().items() if k.startswith("test_") and callable(v)}
    chosen = names or list(tests)
    failed = []
    for t in chosen:
        try:
            tests[t]()
            print(f"ok   {t}")
        except Exception:
            failed.append(t)
            print(f"FAIL {t}\n{traceback.format_exc()}")
    print(f"{len(chosen) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
