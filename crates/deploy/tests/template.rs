//! The rendered template: the checked-in default is current (`UPDATE_GOLDEN=1` rewrites it),
//! every variant passes cfn-lint (and checkov, when installed) with no finding, the roles are
//! least-privilege, and the stack's names derive from the stack name.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use deploy::{Arch, StackOptions, Template, render};
use serde_json::{Value, json};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn bake_input() -> Value {
    json!({"config": {"name": "web-golden", "image_id": "ami-0windows2022base"}})
}

/// Every variant CI checks: both architectures, each optional part on and off.
fn variants() -> Vec<(String, StackOptions)> {
    let default = StackOptions::default();
    let mut all = vec![("default".to_owned(), default.clone())];
    all.push((
        "arm64".into(),
        StackOptions {
            arch: Arch::Arm64,
            ..default.clone()
        },
    ));
    all.push((
        "minimal".into(),
        StackOptions {
            create_builder_role: false,
            builder_role_arn: Some("arn:aws:iam::123456789012:role/builder".into()),
            require_imdsv2_on_builders: false,
            log_retention_days: 30,
            ..default.clone()
        },
    ));
    all.push((
        "everything".into(),
        StackOptions {
            arch: Arch::Arm64,
            builder_secrets: vec![
                "fleetprep/domain-join-*".into(),
                "/fleetprep/local-admin".into(),
            ],
            create_fleet_instance_profile: true,
            bake_schedule: Some("cron(0 4 22 * ? *)".into()),
            // YAML 1.1 reads a plain `yes`/`on` as a boolean: the emitter must quote them.
            tags: [
                ("Team".to_owned(), "web".to_owned()),
                ("on".to_owned(), "yes".to_owned()),
            ]
            .into(),
            ..default
        },
    ));
    all
}

fn rendered(options: &StackOptions) -> Template {
    render(options, Some(&bake_input())).unwrap_or_else(|e| panic!("render: {e}"))
}

#[test]
fn the_checked_in_template_is_the_rendered_default() {
    let path = repo().join("deploy/fleetprep.yaml");
    let generated = render(&StackOptions::default(), None)
        .and_then(|t| t.to_yaml())
        .unwrap();
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{} is stale: the ASL files, IAM declarations or the deploy crate changed; run \
         UPDATE_GOLDEN=1 cargo test -p deploy --test template and review the diff",
        path.display()
    );
}

#[test]
fn yaml_and_json_are_the_same_document() {
    let template = rendered(&StackOptions::default());
    let from_yaml: Value = serde_norway::from_str(&template.to_yaml().unwrap()).unwrap();
    assert_eq!(from_yaml, template.body);
    let from_json: Value = serde_json::from_str(&template.to_json_pretty()).unwrap();
    assert_eq!(from_json, template.body);
}

#[test]
fn every_variant_fits_the_s3_route_and_says_whether_it_fits_inline() {
    for (name, options) in variants() {
        let size = rendered(&options).to_json_compact().len();
        assert!(size < deploy::template::S3_TEMPLATE_LIMIT, "{name}: {size}");
        // The definitions alone exceed the inline limit: `fleetprep deploy` uploads it.
        assert!(
            size > deploy::template::INLINE_TEMPLATE_LIMIT,
            "{name}: {size}"
        );
    }
}

fn resources(template: &Template) -> &serde_json::Map<String, Value> {
    template.body["Resources"].as_object().unwrap()
}

/// Statements of every identity policy of every role (inline policies), `Fn::If` branches
/// included.
fn identity_statements(template: &Template) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (id, resource) in resources(template) {
        if resource["Type"] != "AWS::IAM::Role" {
            continue;
        }
        for policy in resource["Properties"]["Policies"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for statement in policy["PolicyDocument"]["Statement"].as_array().unwrap() {
                let statement = match statement.get("Fn::If") {
                    Some(branches) => branches[1].clone(),
                    None => statement.clone(),
                };
                out.push((id.clone(), statement));
            }
        }
    }
    out
}

fn actions_of(statement: &Value) -> Vec<String> {
    match &statement["Action"] {
        Value::String(a) => vec![a.clone()],
        Value::Array(a) => a.iter().map(|a| a.as_str().unwrap().to_owned()).collect(),
        other => panic!("Action {other}"),
    }
}

#[test]
fn no_mutating_action_is_granted_on_every_resource_without_a_condition() {
    for (name, options) in variants() {
        let template = rendered(&options);
        let statements = identity_statements(&template);
        assert!(statements.len() > 10, "{name}: found the policies");
        for (role, statement) in statements {
            assert_eq!(statement["Effect"], "Allow");
            let everything = match &statement["Resource"] {
                Value::String(r) => r == "*",
                Value::Array(r) => r.iter().any(|r| r == "*"),
                _ => false,
            };
            if !everything || statement.get("Condition").is_some() {
                continue;
            }
            let mutating: Vec<String> = actions_of(&statement)
                .into_iter()
                .filter(|a| deploy::iam::is_mutating(a))
                .collect();
            assert!(
                mutating.is_empty(),
                "{name}: {role} grants {mutating:?} on \"*\" without a condition"
            );
        }
    }
}

#[test]
fn the_function_gets_exactly_the_declared_actions() {
    let template = rendered(&StackOptions::default());
    let role = &resources(&template)["FunctionRole"];
    let mut granted = BTreeSet::new();
    for statement in role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap()
    {
        for action in actions_of(statement) {
            assert!(!action.contains('*'), "wildcard action {action}");
            granted.insert(action);
        }
    }
    let declared: BTreeSet<String> = workflows::iam::all_actions()
        .iter()
        .map(|a| a.to_string())
        .chain(["logs:CreateLogStream".into(), "logs:PutLogEvents".into()])
        .collect();
    assert_eq!(granted, declared, "granted ≠ declared + own log group");
}

#[test]
fn dangerous_actions_carry_their_scope() {
    let template = rendered(&StackOptions::default());
    let statements = identity_statements(&template);
    let find = |sid: &str| {
        statements
            .iter()
            .find(|(_, s)| s["Sid"] == sid)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| panic!("no statement {sid}"))
    };
    let documents = find("RunCommandDocuments");
    let text = documents["Resource"].to_string();
    assert!(text.contains("document/AWS-RunPowerShellScript"), "{text}");
    assert!(
        text.contains("document/AWS-InstallWindowsUpdates"),
        "{text}"
    );
    assert_eq!(
        find("RunCommandOnGroupInstances")["Condition"]["StringEquals"]["ssm:resourceTag/aws:autoscaling:groupName"],
        json!({"Ref": "AutoScalingGroupName"})
    );
    let builders = find("BuilderInstances");
    assert_eq!(
        actions_of(&builders),
        [
            "ec2:CreateImage",
            "ec2:GetConsoleOutput",
            "ec2:StopInstances",
            "ec2:TerminateInstances"
        ]
    );
    assert!(
        find("FleetprepImages")["Condition"]["Null"]["aws:ResourceTag/fleetprep:state"] == "false"
    );
    assert_eq!(
        find("PassBuilderRoleToEc2")["Condition"]["StringEquals"]["iam:PassedToService"],
        "ec2.amazonaws.com"
    );
    assert!(
        find("GroupLifecycleAndRefresh")["Resource"]["Fn::Sub"]
            .as_str()
            .unwrap()
            .ends_with("autoScalingGroupName/${AutoScalingGroupName}")
    );
    assert!(
        find("GroupLaunchTemplate")["Resource"]["Fn::Sub"]
            .as_str()
            .unwrap()
            .ends_with("launch-template/${LaunchTemplateId}")
    );
}

#[test]
fn service_roles_trust_only_this_account_and_stack() {
    let template = rendered(&variants().pop().unwrap().1);
    for (id, resource) in resources(&template) {
        if resource["Type"] != "AWS::IAM::Role" {
            continue;
        }
        let statement = &resource["Properties"]["AssumeRolePolicyDocument"]["Statement"][0];
        let service = statement["Principal"]["Service"].as_str().unwrap();
        if ["lambda.amazonaws.com", "ec2.amazonaws.com"].contains(&service) {
            // Neither service sets the source keys when it assumes a role (see template.rs).
            continue;
        }
        assert_eq!(
            statement["Condition"]["StringEquals"]["aws:SourceAccount"],
            json!({"Ref": "AWS::AccountId"}),
            "{id}"
        );
        let source = statement["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Sub"]
            .as_str()
            .unwrap();
        assert!(source.contains("${AWS::StackName}-"), "{id}: {source}");
    }
}

#[test]
fn hooks_are_named_filtered_and_wait_for_their_rules() {
    let template = rendered(&StackOptions::default());
    let r = resources(&template);
    for name in ["Launch", "Terminate"] {
        let hook = &r[&format!("{name}Hook")];
        let rule = &r[&format!("{name}Rule")];
        assert_eq!(hook["DependsOn"], json!([format!("{name}Rule")]));
        let hook_name = &hook["Properties"]["LifecycleHookName"];
        assert_eq!(
            rule["Properties"]["EventPattern"]["detail"]["LifecycleHookName"],
            json!([hook_name])
        );
        let target = &rule["Properties"]["Targets"][0];
        assert!(target["RetryPolicy"].is_object());
        assert_eq!(
            target["DeadLetterConfig"]["Arn"],
            json!({"Fn::GetAtt": ["DeadLetterQueue", "Arn"]})
        );
    }
    assert_eq!(
        r["DeadLetterQueue"]["Properties"]["SqsManagedSseEnabled"],
        true
    );
}

#[test]
fn every_alarm_notifies_the_topic_and_the_error_alarm_reads_the_published_metric() {
    let template = rendered(&StackOptions::default());
    let alarms: Vec<(&String, &Value)> = resources(&template)
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::CloudWatch::Alarm")
        .collect();
    // 3 per state machine, the function, 2 rules, the dead letters.
    assert_eq!(alarms.len(), workflows::WORKFLOWS.len() * 3 + 4);
    for (id, alarm) in &alarms {
        assert_eq!(
            alarm["Properties"]["AlarmActions"],
            json!([{"Ref": "AlarmTopic"}]),
            "{id}"
        );
    }
    // The function's EMF line publishes Errors with the Action dimension only.
    let line = fleetprep_lambda::emf_line(
        "Fleetprep/stack",
        &fleetprep_lambda::Report {
            action: "create_image".into(),
            outcome: "Fleetprep.AwsError".into(),
            duration: std::time::Duration::from_millis(5),
        },
        std::time::SystemTime::UNIX_EPOCH,
    );
    let emf: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        emf["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["Action"]])
    );
    let query = resources(&template)["FunctionErrorsAlarm"]["Properties"]["Metrics"][0]
        ["Expression"]["Fn::Sub"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        query,
        "SELECT SUM(Errors) FROM SCHEMA(\"Fleetprep/${AWS::StackName}\", Action)"
    );
    let function = &resources(&template)["Function"]["Properties"];
    assert_eq!(
        function["Environment"]["Variables"]["FLEETPREP_METRIC_NAMESPACE"]["Fn::Sub"],
        "Fleetprep/${AWS::StackName}"
    );
}

#[test]
fn the_table_is_kept_and_protected() {
    let template = rendered(&StackOptions::default());
    let table = &resources(&template)["HostnameTable"];
    assert_eq!(table["DeletionPolicy"], "Retain");
    assert_eq!(table["UpdateReplacePolicy"], "Retain");
    assert_eq!(table["Properties"]["DeletionProtectionEnabled"], true);
    assert_eq!(
        table["Properties"]["TimeToLiveSpecification"]["AttributeName"],
        cloud::HOSTNAME_TTL_ATTRIBUTE
    );
}

#[test]
fn names_derive_from_the_stack_name_and_every_parameter_is_described() {
    for (name, options) in variants() {
        let template = rendered(&options);
        for (id, resource) in resources(&template) {
            for key in [
                "FunctionName",
                "StateMachineName",
                "TopicName",
                "QueueName",
                "LogGroupName",
                "Name",
                "LifecycleHookName",
                "DashboardName",
                "InstanceProfileName",
                "AlarmName",
            ] {
                if let Some(value) = resource["Properties"].get(key) {
                    let text = value["Fn::Sub"].as_str().unwrap_or_else(|| {
                        panic!("{name}: {id}.{key} is not derived from the stack: {value}")
                    });
                    assert!(text.contains("${AWS::StackName}"), "{name}: {id}.{key}");
                }
            }
        }
        for (parameter, spec) in template.body["Parameters"].as_object().unwrap() {
            assert!(
                spec["Description"].as_str().is_some_and(|d| !d.is_empty()),
                "{name}: parameter {parameter} has no description"
            );
        }
    }
}

#[test]
fn every_state_machine_uses_only_the_substituted_function() {
    let template = rendered(&StackOptions::default());
    for workflow in workflows::WORKFLOWS {
        let machine = &resources(&template)[&deploy::template::machine_id(workflow)]["Properties"];
        let text = machine["DefinitionString"].as_str().unwrap().to_owned();
        assert_eq!(
            machine["DefinitionSubstitutions"]["FleetprepFunctionArn"],
            json!({"Fn::GetAtt": ["Function", "Arn"]})
        );
        // The definition is the checked-in one, byte for byte once parsed.
        let checked_in: Value =
            serde_json::from_str(workflows::raw_definition(workflow).unwrap()).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), checked_in);
        assert!(
            text.contains(workflows::FUNCTION_ARN_PLACEHOLDER),
            "{workflow}"
        );
        assert!(
            !text.contains("arn:aws:lambda:"),
            "{workflow} hard-codes a function ARN"
        );
        assert_eq!(
            template.body["Outputs"][Template::state_machine_output(workflow)]["Value"],
            json!({"Ref": deploy::template::machine_id(workflow)})
        );
    }
}

#[test]
fn optional_parts_appear_only_when_asked() {
    let all = variants();
    let types = |options: &StackOptions| -> BTreeSet<String> {
        resources(&rendered(options))
            .values()
            .map(|r| r["Type"].as_str().unwrap().to_owned())
            .collect()
    };
    let minimal = types(&all[2].1);
    let everything = types(&all[3].1);
    for optional in ["AWS::Scheduler::Schedule", "AWS::IAM::InstanceProfile"] {
        assert!(!minimal.contains(optional), "{optional} in minimal");
        assert!(everything.contains(optional), "{optional} missing");
    }
    assert!(
        rendered(&all[2].1).body["Parameters"]
            .get("BuilderRoleArn")
            .is_some()
    );
    assert!(
        rendered(&all[3].1).body["Parameters"]
            .get("BuilderRoleArn")
            .is_none()
    );
    let everything_rendered = rendered(&all[3].1);
    let schedule = &resources(&everything_rendered)["BakeSchedule"]["Properties"]["Target"];
    assert_eq!(
        serde_json::from_str::<Value>(schedule["Input"].as_str().unwrap()).unwrap(),
        bake_input()
    );
}

/// Writes every variant to a file and runs `tool args.. FILES` once (one start-up, not one per
/// variant); `None` when the tool is missing outside CI. `file_flag` goes before each file.
fn run_on_variants(
    tool: &str,
    args: &[&str],
    file_flag: Option<&str>,
) -> Option<std::process::Output> {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(tool);
    command.args(args);
    for (name, options) in variants() {
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, rendered(&options).to_yaml().unwrap()).unwrap();
        command.args(file_flag).arg(&path);
    }
    match command.output() {
        Ok(output) => Some(output),
        Err(error) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{tool} is not installed ({error}); scripts/test installs it");
            }
            eprintln!("skipping: {tool} not installed ({error})");
            None
        }
    }
}

#[test]
fn cfn_lint_finds_nothing_in_any_variant() {
    // cfn-lint exits 0 only without errors, warnings and informational findings.
    let Some(output) = run_on_variants("cfn-lint", &[], None) else {
        return;
    };
    assert!(
        output.status.success(),
        "cfn-lint:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn checkov() -> String {
    std::env::var("FLEETPREP_CHECKOV").unwrap_or_else(|_| "checkov".into())
}

#[test]
fn checkov_fails_no_check_that_is_not_skipped_with_a_reason() {
    let Some(output) = run_on_variants(
        &checkov(),
        &["--quiet", "--compact", "--framework", "cloudformation"],
        Some("-f"),
    ) else {
        return;
    };
    assert!(
        output.status.success(),
        "checkov:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // Every skip in a resource's Metadata says why.
    for (name, options) in variants() {
        for (id, resource) in resources(&rendered(&options)) {
            for skip in resource["Metadata"]["checkov"]["skip"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let reason = skip["comment"].as_str().unwrap_or("");
                assert!(
                    reason.len() > 20,
                    "{name}: {id} skips {} without a reason",
                    skip["id"]
                );
            }
        }
    }
}

#[test]
fn asl_validator_accepts_every_state_machine() {
    let validator =
        repo().join("crates/deploy/tests/asl-validator/node_modules/.bin/asl-validator");
    if !validator.exists() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "{} missing; scripts/test runs npm ci for it",
                validator.display()
            );
        }
        eprintln!(
            "skipping: asl-validator not installed (npm ci --prefix crates/deploy/tests/asl-validator)"
        );
        return;
    }
    for workflow in workflows::WORKFLOWS {
        let file = repo().join(format!(
            "crates/workflows/statemachines/{workflow}.asl.json"
        ));
        assert!(Path::new(&file).exists(), "{}", file.display());
        let output = Command::new(&validator)
            .arg("--json-path")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "asl-validator {workflow}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
