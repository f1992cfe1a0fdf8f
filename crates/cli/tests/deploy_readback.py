"""Reads a deployed fleetprep stack back through each resource's own API (boto3, installed
with moto by scripts/test) and prints one JSON document for crates/cli/tests/deploy_moto.rs.

CREATE_COMPLETE on a local endpoint proves little by itself: moto's CloudFormation skips some
resource types and ignores some properties. The Rust test asserts on what this script reads.

usage: deploy_readback.py ENDPOINT STACK
"""

import ast
import json
import sys

import boto3

endpoint, stack = sys.argv[1], sys.argv[2]


def client(service):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def document(value):
    """A policy document: IAM returns JSON (URL-encoded on the wire, decoded by boto3); moto
    5.2.1 stores the documents CloudFormation gives it as a Python repr. FIXME(#5)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return ast.literal_eval(value)
    return value


def attempt(call):
    try:
        return call()
    except Exception as error:  # the test reports what could not be read
        return {"error": f"{type(error).__name__}: {error}"}


cfn = client("cloudformation")
resources = {}
try:
    summaries = cfn.describe_stack_resources(StackName=stack)["StackResources"]
except Exception:
    summaries = []
for resource in summaries:
    if "LogicalResourceId" not in resource:
        # moto lists the resources it skipped without an id or type.
        continue
    resources[resource["LogicalResourceId"]] = {
        "type": resource.get("ResourceType"),
        "physical": resource.get("PhysicalResourceId"),
    }

out = {"resources": resources, "read": {}}
read = out["read"]
for logical, resource in resources.items():
    kind, physical = resource["type"], resource["physical"]
    if kind == "AWS::StepFunctions::StateMachine":
        read[logical] = attempt(
            lambda: {
                k: v
                for k, v in client("stepfunctions")
                .describe_state_machine(stateMachineArn=physical)
                .items()
                if k in ("definition", "roleArn", "loggingConfiguration", "name")
            }
        )
    elif kind == "AWS::IAM::Role":
        iam = client("iam")

        def role():
            policies = iam.list_role_policies(RoleName=physical)["PolicyNames"]
            return {
                "trust": document(
                    iam.get_role(RoleName=physical)["Role"]["AssumeRolePolicyDocument"]
                ),
                "policies": {
                    name: document(
                        iam.get_role_policy(RoleName=physical, PolicyName=name)[
                            "PolicyDocument"
                        ]
                    )
                    for name in policies
                },
            }

        read[logical] = attempt(role)
    elif kind == "AWS::DynamoDB::Table":
        dynamodb = client("dynamodb")
        read[logical] = attempt(
            lambda: {
                "table": dynamodb.describe_table(TableName=physical)["Table"],
                "ttl": dynamodb.describe_time_to_live(TableName=physical)[
                    "TimeToLiveDescription"
                ],
                "backups": dynamodb.describe_continuous_backups(TableName=physical)[
                    "ContinuousBackupsDescription"
                ],
            }
        )
    elif kind == "AWS::Events::Rule":
        events = client("events")
        name = physical.split("/")[-1].split("|")[-1]
        read[logical] = attempt(
            lambda: {
                "rule": events.describe_rule(Name=name),
                "targets": events.list_targets_by_rule(Rule=name)["Targets"],
            }
        )
    elif kind == "AWS::Lambda::Function":
        read[logical] = attempt(
            lambda: client("lambda").get_function_configuration(FunctionName=physical)
        )
    elif kind == "AWS::SQS::Queue":
        read[logical] = attempt(
            lambda: client("sqs").get_queue_attributes(
                QueueUrl=physical, AttributeNames=["All"]
            )["Attributes"]
        )
    elif kind == "AWS::Logs::LogGroup":
        read[logical] = attempt(
            lambda: client("logs").describe_log_groups(logGroupNamePrefix=physical)[
                "logGroups"
            ]
        )
    elif kind == "AWS::SNS::Topic":
        read[logical] = attempt(
            lambda: client("sns").get_topic_attributes(TopicArn=physical)["Attributes"]
        )

# What moto did not create, read through the APIs that would show it.
out["alarms"] = attempt(
    lambda: [
        a["AlarmName"]
        for a in client("cloudwatch").describe_alarms(AlarmNamePrefix=stack + "-")[
            "MetricAlarms"
        ]
    ]
)
out["hooks"] = attempt(
    lambda: [
        h["LifecycleHookName"]
        for h in client("autoscaling").describe_lifecycle_hooks(
            AutoScalingGroupName=sys.argv[3] if len(sys.argv) > 3 else "web"
        )["LifecycleHooks"]
    ]
)
out["tables"] = attempt(lambda: client("dynamodb").list_tables()["TableNames"])
print(json.dumps(out, default=str))
