//! `deploy/fleetprep.yaml` is generated from the code's declarations and checked in; this test
//! regenerates it and compares (`UPDATE_GOLDEN=1` rewrites the file; review the diff).
//!
//! What is generated from where:
//! - the four state machines from the checked-in ASL files (`workflows::raw_definition`), with
//!   `${FleetprepFunctionArn}` left for `DefinitionSubstitutions`, so the deployed definitions
//!   are byte-for-byte the ones the local engine runs;
//! - the Lambda role's policy from the IAM declarations: the Cloud operations each handler
//!   calls (`workflows::iam`) and the IAM actions of each operation (`cloud::iam`), DynamoDB
//!   actions scoped to the hostname table.
//!
//! The template is JSON, which is valid YAML, so CloudFormation and cfn-lint read it as is.
//! When `cfn-lint` is installed (`pip install cfn-lint`) the test also lints the file.
#![cfg(feature = "aws")]

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::{Value, json};

fn template_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/fleetprep.yaml")
}

fn machine_id(workflow: &str) -> String {
    let mut id = String::new();
    for part in workflow.split('-') {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            id.push(first.to_ascii_uppercase());
            id.extend(chars);
        }
    }
    format!("{id}StateMachine")
}

/// Every IAM action the function may need, split into table-scoped DynamoDB actions and the
/// rest (which EC2/SSM/Auto Scaling mostly cannot scope by resource at creation time).
fn function_actions() -> (Vec<String>, Vec<String>) {
    let mut all: BTreeSet<String> = workflows::iam::all_actions()
        .into_iter()
        .map(str::to_owned)
        .collect();
    // PassRole is granted separately, on the builder role only.
    all.remove("iam:PassRole");
    let (dynamodb, rest): (Vec<String>, Vec<String>) =
        all.into_iter().partition(|a| a.starts_with("dynamodb:"));
    (dynamodb, rest)
}

fn generate() -> Value {
    let (dynamodb_actions, other_actions) = function_actions();
    let mut resources = serde_json::Map::new();
    let mut outputs = serde_json::Map::new();
    let get_att = |resource: &str, attribute: &str| json!({"Fn::GetAtt": [resource, attribute]});
    let reference = |name: &str| json!({"Ref": name});

    resources.insert(
        "HostnameTable".into(),
        json!({
            "Type": "AWS::DynamoDB::Table",
            "Properties": {
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"}
                ],
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"}
                ],
                "TimeToLiveSpecification": {
                    "AttributeName": cloud::aws::hostnames::TTL_ATTRIBUTE,
                    "Enabled": true
                },
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": true}
            }
        }),
    );

    let machines: Vec<(String, &str)> = workflows::WORKFLOWS
        .iter()
        .map(|w| (machine_id(w), *w))
        .collect();
    let start_targets: Vec<Value> = ["name-on-launch", "release-on-terminate"]
        .iter()
        .map(|w| reference(&machine_id(w)))
        .collect();

    let start_by_name: Vec<Value> = ["name-on-launch", "release-on-terminate"]
        .iter()
        .map(|w| {
            json!({"Fn::Sub": format!(
                "arn:${{AWS::Partition}}:states:${{AWS::Region}}:${{AWS::AccountId}}:stateMachine:fleetprep-{w}"
            )})
        })
        .collect();
    resources.insert(
        "FunctionRole".into(),
        json!({
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [{
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole"
                    }]
                },
                "ManagedPolicyArns": [
                    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
                ],
                "Policies": [{
                    "PolicyName": "fleetprep-handlers",
                    "PolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Sid": "HandlerCalls",
                                "Effect": "Allow",
                                "Action": other_actions,
                                "Resource": "*"
                            },
                            {
                                "Sid": "HostnameLeases",
                                "Effect": "Allow",
                                "Action": dynamodb_actions,
                                "Resource": get_att("HostnameTable", "Arn")
                            },
                            {
                                "Sid": "PassBuilderRole",
                                "Effect": "Allow",
                                "Action": "iam:PassRole",
                                "Resource": reference("BuilderRoleArn")
                            },
                            {
                                // By name, not Ref: the state machines depend on the function,
                                // which depends on this role.
                                "Sid": "StartLifecycleWorkflows",
                                "Effect": "Allow",
                                "Action": "states:StartExecution",
                                "Resource": start_by_name
                            }
                        ]
                    }
                }]
            }
        }),
    );

    resources.insert(
        "Function".into(),
        json!({
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "Description": "fleetprep task handlers (one function, many actions)",
                "Runtime": "provided.al2023",
                "Handler": "bootstrap",
                "Architectures": [reference("FunctionArchitecture")],
                "MemorySize": 256,
                // Below the Task states' TimeoutSeconds (120), so a hung invocation surfaces
                // as Sandbox.Timedout that the state machines retry.
                "Timeout": 60,
                "Role": get_att("FunctionRole", "Arn"),
                "Code": {
                    "S3Bucket": reference("FunctionCodeBucket"),
                    "S3Key": reference("FunctionCodeKey")
                },
                "Environment": {"Variables": {
                    "FLEETPREP_HOSTNAME_TABLE": reference("HostnameTable"),
                    "FLEETPREP_HOSTNAME_POOL": reference("AutoScalingGroupName"),
                    "FLEETPREP_HOSTNAME_PATTERN": reference("HostnamePattern"),
                    "FLEETPREP_HOSTNAME_PREFIX": reference("HostnamePrefix"),
                    "FLEETPREP_NAMING_MODE": reference("NamingMode"),
                    "FLEETPREP_RENAME_METHOD": reference("RenameMethod"),
                    "FLEETPREP_HOOK_TIMEOUT_SECONDS": reference("HookHeartbeatTimeout"),
                    "FLEETPREP_METRIC_NAMESPACE": fleetprep_lambda::DEFAULT_METRIC_NAMESPACE,
                    "RUST_LOG": "info"
                }}
            }
        }),
    );

    resources.insert(
        "StatesRole".into(),
        json!({
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [{
                        "Effect": "Allow",
                        "Principal": {"Service": "states.amazonaws.com"},
                        "Action": "sts:AssumeRole"
                    }]
                },
                "Policies": [{
                    "PolicyName": "invoke-fleetprep",
                    "PolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [{
                            "Effect": "Allow",
                            "Action": "lambda:InvokeFunction",
                            "Resource": [
                                get_att("Function", "Arn"),
                                {"Fn::Join": ["", [get_att("Function", "Arn"), ":*"]]}
                            ]
                        }]
                    }
                }]
            }
        }),
    );

    for (id, workflow) in &machines {
        let asl: Value = serde_json::from_str(
            workflows::raw_definition(workflow).expect("every workflow has a checked-in file"),
        )
        .expect("checked-in ASL is JSON");
        resources.insert(
            id.clone(),
            json!({
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {
                    "StateMachineName": format!("fleetprep-{workflow}"),
                    "StateMachineType": "STANDARD",
                    "RoleArn": get_att("StatesRole", "Arn"),
                    "Definition": asl,
                    "DefinitionSubstitutions": {
                        "FleetprepFunctionArn": get_att("Function", "Arn")
                    }
                }
            }),
        );
        resources.insert(
            format!("{id}FailedAlarm"),
            json!({
                "Type": "AWS::CloudWatch::Alarm",
                "Properties": {
                    "AlarmDescription": format!("fleetprep-{workflow} executions failed"),
                    "Namespace": "AWS/States",
                    "MetricName": "ExecutionsFailed",
                    "Dimensions": [{"Name": "StateMachineArn", "Value": reference(id)}],
                    "Statistic": "Sum",
                    "Period": 300,
                    "EvaluationPeriods": 1,
                    "Threshold": 1,
                    "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                    "TreatMissingData": "notBreaching"
                }
            }),
        );
        outputs.insert(
            id.clone(),
            json!({"Value": reference(id), "Description": format!("fleetprep-{workflow}")}),
        );
    }

    resources.insert(
        "EventsRole".into(),
        json!({
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [{
                        "Effect": "Allow",
                        "Principal": {"Service": "events.amazonaws.com"},
                        "Action": "sts:AssumeRole"
                    }]
                },
                "Policies": [{
                    "PolicyName": "start-lifecycle-workflows",
                    "PolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [{
                            "Effect": "Allow",
                            "Action": "states:StartExecution",
                            "Resource": start_targets
                        }]
                    }
                }]
            }
        }),
    );
    for (rule, detail_type, workflow) in [
        (
            "LaunchRule",
            fleetprep_lambda::LAUNCH_DETAIL_TYPE,
            "name-on-launch",
        ),
        (
            "TerminateRule",
            fleetprep_lambda::TERMINATE_DETAIL_TYPE,
            "release-on-terminate",
        ),
    ] {
        resources.insert(
            rule.into(),
            json!({
                "Type": "AWS::Events::Rule",
                "Properties": {
                    "Description": format!("{detail_type} → fleetprep-{workflow}"),
                    "EventPattern": {
                        "source": ["aws.autoscaling"],
                        "detail-type": [detail_type],
                        "detail": {"AutoScalingGroupName": [reference("AutoScalingGroupName")]}
                    },
                    "Targets": [{
                        "Id": workflow,
                        "Arn": reference(&machine_id(workflow)),
                        "RoleArn": get_att("EventsRole", "Arn")
                    }]
                }
            }),
        );
    }
    for (hook, transition, default_result) in [
        (
            "LaunchHook",
            "autoscaling:EC2_INSTANCE_LAUNCHING",
            "ABANDON",
        ),
        (
            "TerminateHook",
            "autoscaling:EC2_INSTANCE_TERMINATING",
            "CONTINUE",
        ),
    ] {
        resources.insert(
            hook.into(),
            json!({
                "Type": "AWS::AutoScaling::LifecycleHook",
                "Properties": {
                    "AutoScalingGroupName": reference("AutoScalingGroupName"),
                    "LifecycleTransition": transition,
                    "HeartbeatTimeout": reference("HookHeartbeatTimeout"),
                    "DefaultResult": default_result
                }
            }),
        );
    }
    resources.insert(
        "FunctionErrorsAlarm".into(),
        json!({
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "AlarmDescription": "fleetprep function errors",
                "Namespace": fleetprep_lambda::DEFAULT_METRIC_NAMESPACE,
                "MetricName": "Errors",
                "Statistic": "Sum",
                "Period": 300,
                "EvaluationPeriods": 1,
                "Threshold": 5,
                "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                "TreatMissingData": "notBreaching"
            }
        }),
    );
    let widgets: Vec<Value> = machines
        .iter()
        .enumerate()
        .map(|(i, (id, workflow))| {
            json!({
                "type": "metric",
                "x": (i % 2) * 12,
                "y": (i / 2) * 6,
                "width": 12,
                "height": 6,
                "properties": {
                    "title": format!("fleetprep-{workflow}"),
                    "region": "${AWS::Region}",
                    "stat": "Sum",
                    "period": 300,
                    "metrics": [
                        ["AWS/States", "ExecutionsSucceeded", "StateMachineArn", format!("${{{id}}}")],
                        ["AWS/States", "ExecutionsFailed", "StateMachineArn", format!("${{{id}}}")]
                    ]
                }
            })
        })
        .collect();
    resources.insert(
        "Dashboard".into(),
        json!({
            "Type": "AWS::CloudWatch::Dashboard",
            "Properties": {
                "DashboardBody": {"Fn::Sub": json!({"widgets": widgets}).to_string()}
            }
        }),
    );
    outputs.insert(
        "FunctionArn".into(),
        json!({"Value": get_att("Function", "Arn")}),
    );
    outputs.insert(
        "HostnameTableName".into(),
        json!({"Value": reference("HostnameTable")}),
    );

    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "fleetprep: golden Windows AMIs, unique hostnames and rollouts for an EC2 Auto Scaling group, as Step Functions state machines with one Rust Lambda. GENERATED by crates/lambda/tests/deploy_template.rs (UPDATE_GOLDEN=1); do not edit by hand.",
        "Parameters": {
            "FunctionCodeBucket": {"Type": "String", "Description": "S3 bucket holding the bootstrap zip"},
            "FunctionCodeKey": {"Type": "String", "Description": "S3 key of the zip (bootstrap at its root; build it with scripts/build-lambda)"},
            "FunctionArchitecture": {"Type": "String", "Default": "x86_64", "AllowedValues": ["x86_64", "arm64"]},
            "AutoScalingGroupName": {"Type": "String", "Description": "The group whose instances get names"},
            "BuilderRoleArn": {"Type": "String", "Description": "Role of the bake builder's instance profile (passed to RunInstances)"},
            "HostnamePattern": {"Type": "String", "Default": "{prefix}-{seq:4}"},
            "HostnamePrefix": {"Type": "String", "Default": "WIN"},
            "NamingMode": {"Type": "String", "Default": "rename", "AllowedValues": ["rename", "sysprep"]},
            "RenameMethod": {"Type": "String", "Default": "rename-computer", "AllowedValues": ["rename-computer", "ec2launch-set-host-name"], "Description": "With NamingMode rename: Rename-Computer (any launch agent) or EC2Launch v2's setHostName task (needs EC2Launch v2 with the hostName input)"},
            "HookHeartbeatTimeout": {"Type": "Number", "Default": 900, "MinValue": 30, "MaxValue": 7200}
        },
        "Resources": resources,
        "Outputs": outputs
    })
}

#[test]
fn deploy_template_matches_the_declarations() {
    let generated = serde_json::to_string_pretty(&generate()).expect("serialise") + "\n";
    let path = template_path();
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().expect("deploy dir")).expect("mkdir deploy");
        std::fs::write(&path, &generated).expect("write template");
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run UPDATE_GOLDEN=1 cargo test -p lambda --test deploy_template",
            path.display()
        )
    });
    assert!(
        checked_in == generated,
        "{} is stale: the ASL files or IAM declarations changed; run UPDATE_GOLDEN=1 cargo \
         test -p lambda --test deploy_template and review the diff",
        path.display()
    );
}

#[test]
fn every_state_machine_uses_only_the_substituted_function() {
    let template = generate();
    for workflow in workflows::WORKFLOWS {
        let machine = &template["Resources"][machine_id(workflow)]["Properties"];
        let text = machine["Definition"].to_string();
        assert!(
            text.contains(workflows::FUNCTION_ARN_PLACEHOLDER),
            "{workflow} invokes the function through the placeholder"
        );
        assert!(
            !text.contains("arn:aws:lambda:"),
            "{workflow} hard-codes a function ARN"
        );
    }
}

#[test]
fn the_policy_covers_every_declared_action_and_nothing_broad() {
    let template = generate();
    let statements = template["Resources"]["FunctionRole"]["Properties"]["Policies"][0]
        ["PolicyDocument"]["Statement"]
        .as_array()
        .expect("statements")
        .clone();
    let mut granted = BTreeSet::new();
    for statement in &statements {
        match &statement["Action"] {
            Value::String(action) => {
                granted.insert(action.clone());
            }
            Value::Array(actions) => {
                for action in actions {
                    let action = action.as_str().expect("action string");
                    assert!(!action.contains('*'), "wildcard action {action}");
                    granted.insert(action.to_owned());
                }
            }
            other => panic!("unexpected Action {other}"),
        }
    }
    for (handler, actions) in workflows::iam::actions_by_handler() {
        for action in actions {
            assert!(granted.contains(action), "{handler}: {action} not granted");
        }
    }
    // Least privilege: nothing beyond what the handlers need, plus starting the two lifecycle
    // state machines (the function's own call, for events routed to it).
    let needed: BTreeSet<String> = workflows::iam::all_actions()
        .into_iter()
        .chain(["states:StartExecution"])
        .map(str::to_owned)
        .collect();
    let extra: Vec<&String> = granted.difference(&needed).collect();
    assert!(extra.is_empty(), "granted but no handler needs: {extra:?}");
}

/// cfn-lint, when installed, must accept the template.
#[test]
fn cfn_lint_accepts_the_template() {
    let path = template_path();
    let output = match std::process::Command::new("cfn-lint").arg(&path).output() {
        Ok(output) => output,
        Err(error) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("cfn-lint is not installed ({error}); scripts/test installs it");
            }
            eprintln!("skipping: cfn-lint not installed ({error}); pip install cfn-lint");
            return;
        }
    };
    assert!(
        output.status.success(),
        "cfn-lint {}:\n{}{}",
        path.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
