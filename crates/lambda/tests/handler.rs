//! The Lambda handler called directly, with the simulated fleet as its Cloud: task payloads go
//! to the same dispatch as the local engine, lifecycle events start the right state machine
//! once, bad input is a named error, every invocation yields one EMF record.
#![cfg(feature = "aws")]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use cloud::sim::{Scenario, SimCloud};
use fleetprep_lambda::{
    ExecutionStarter, Function, FunctionConfig, FunctionError, Invocation, LAUNCH_DETAIL_TYPE,
    TERMINATE_DETAIL_TYPE, Transition, emf_line, execution_name,
};
use names::{NamePool, PoolOptions, SqliteNamePool};
use serde_json::{Value, json};
use sysprep::hostname::HostnamePolicy;
use workflows::HandlerError;

#[derive(Default)]
struct RecordingStarter {
    started: Mutex<Vec<(String, String, Value)>>,
}

#[async_trait::async_trait]
impl ExecutionStarter for RecordingStarter {
    async fn start(
        &self,
        workflow: &str,
        name: &str,
        input: &Value,
    ) -> Result<String, HandlerError> {
        let mut started = self.started.lock().unwrap();
        // Step Functions semantics: a second start under the same name is the same execution.
        if !started.iter().any(|(_, n, _)| n == name) {
            started.push((workflow.to_owned(), name.to_owned(), input.clone()));
        }
        Ok(format!(
            "arn:aws:states:us-east-1:123456789012:execution:fleetprep-{workflow}:{name}"
        ))
    }
}

fn function(starter: Option<Arc<RecordingStarter>>) -> Function {
    let clock: Arc<dyn clock::Clock> = Arc::new(clock::VirtualClock::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    ));
    let pool: Arc<dyn NamePool> = Arc::new(
        SqliteNamePool::in_memory(
            HostnamePolicy::from_pattern("{prefix}-{seq:3}", "WEB").unwrap(),
            clock.clone(),
            PoolOptions::default(),
        )
        .unwrap(),
    );
    let cloud = SimCloud::new(clock.clone(), pool, Scenario::default());
    Function {
        context: workflows::Context::new(Arc::new(cloud), clock),
        starter: starter.map(|s| s as Arc<dyn ExecutionStarter>),
    }
}

fn lifecycle_event(detail_type: &str, transition: &str, token: &str) -> Value {
    json!({
        "version": "0",
        "id": "12345678-1234-1234-1234-123456789012",
        "detail-type": detail_type,
        "source": "aws.autoscaling",
        "account": "123456789012",
        "time": "2026-11-26T15:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:x:autoScalingGroupName/web"],
        "detail": {
            "LifecycleActionToken": token,
            "AutoScalingGroupName": "web",
            "LifecycleHookName": "fleetprep-launch",
            "EC2InstanceId": "i-0123456789abcdef0",
            "LifecycleTransition": transition,
            "NotificationMetadata": "{\"pool\":\"web\"}"
        }
    })
}

#[tokio::test]
async fn task_payloads_go_to_the_shared_dispatch() {
    let function = function(None);
    let (result, report) = function
        .handle(json!({"action": "naming_settings", "execution": "e", "state": "LoadSettings"}))
        .await;
    let output = result.expect("naming_settings");
    assert_eq!(output["mode"], "rename");
    assert_eq!(report.action, "naming_settings");
    assert_eq!(report.outcome, "Success");

    let (result, _) = function
        .handle(json!({"action": "allocate_hostname", "execution": "e", "state": "AllocateName", "instance_id": "i-1"}))
        .await;
    assert_eq!(result.expect("allocate")["hostname"], "WEB-001");
    // The same call again (a Step Functions retry) returns the same name.
    let (again, _) = function
        .handle(json!({"action": "allocate_hostname", "execution": "e", "state": "AllocateName", "instance_id": "i-1"}))
        .await;
    assert_eq!(again.expect("allocate again")["hostname"], "WEB-001");
}

#[tokio::test]
async fn handler_errors_become_named_lambda_errors() {
    let function = function(None);
    let (result, report) = function.handle(json!({"action": "launch_rockets"})).await;
    let error = result.expect_err("unknown action");
    assert_eq!(error.error, workflows::errors::INVALID_INPUT);
    assert_eq!(report.outcome, workflows::errors::INVALID_INPUT);
    let diagnostic: lambda_runtime::Diagnostic = FunctionError(error).into();
    assert_eq!(diagnostic.error_type, "Fleetprep.InvalidInput");
    assert!(diagnostic.error_message.contains("launch_rockets"));

    for bad in [
        json!({"action": 7}),
        json!({"hello": "world"}),
        json!([1, 2]),
        json!(null),
        json!({"detail-type": "EC2 Spot Instance Interruption Warning", "detail": {}}),
        json!({"detail-type": LAUNCH_DETAIL_TYPE}),
        json!({"detail-type": LAUNCH_DETAIL_TYPE, "detail": {"EC2InstanceId": "i-1"}}),
    ] {
        let (result, report) = function.handle(bad.clone()).await;
        let error = result.expect_err("malformed input");
        assert_eq!(error.error, "Fleetprep.InvalidInput", "{bad}: {error}");
        assert!(!error.cause.is_empty());
        assert_eq!(report.outcome, "Fleetprep.InvalidInput");
    }
}

#[tokio::test]
async fn lifecycle_events_start_the_matching_state_machine_once() {
    let starter = Arc::new(RecordingStarter::default());
    let function = function(Some(starter.clone()));
    let launch = lifecycle_event(
        LAUNCH_DETAIL_TYPE,
        "autoscaling:EC2_INSTANCE_LAUNCHING",
        "c613620e-07e2-4ed2-a9e2-ef8258911ade",
    );
    let (result, report) = function.handle(launch.clone()).await;
    let output = result.expect("start");
    assert_eq!(output["workflow"], "name-on-launch");
    assert_eq!(output["instance_id"], "i-0123456789abcdef0");
    assert_eq!(report.action, "start_name_on_launch");
    // EventBridge delivers at least once: a redelivery must not start a second execution.
    function.handle(launch.clone()).await.0.expect("redelivery");

    let terminate = lifecycle_event(
        TERMINATE_DETAIL_TYPE,
        "autoscaling:EC2_INSTANCE_TERMINATING",
        "d7e0a3b1-0000-4000-8000-000000000001",
    );
    function
        .handle(terminate.clone())
        .await
        .0
        .expect("terminate");

    let started = starter.started.lock().unwrap().clone();
    assert_eq!(started.len(), 2, "{started:?}");
    assert_eq!(started[0].0, "name-on-launch");
    assert_eq!(started[0].1, "launch-c613620e-07e2-4ed2-a9e2-ef8258911ade");
    assert_eq!(
        started[0].2, launch,
        "the state machine gets the event unchanged"
    );
    assert_eq!(started[1].0, "release-on-terminate");
    assert_eq!(started[1].2, terminate);
}

#[tokio::test]
async fn lifecycle_events_without_configured_machines_say_what_to_set() {
    let function = function(None);
    let (result, _) = function
        .handle(lifecycle_event(
            LAUNCH_DETAIL_TYPE,
            "autoscaling:EC2_INSTANCE_LAUNCHING",
            "c613620e-07e2-4ed2-a9e2-ef8258911ade",
        ))
        .await;
    let error = result.expect_err("no starter");
    assert!(
        error.cause.contains("FLEETPREP_NAME_ON_LAUNCH_ARN"),
        "{error}"
    );
}

#[test]
fn mismatched_transitions_and_test_notifications() {
    let wrong = lifecycle_event(
        LAUNCH_DETAIL_TYPE,
        "autoscaling:EC2_INSTANCE_TERMINATING",
        "t",
    );
    let error = Invocation::parse(wrong).expect_err("launch event with a terminate transition");
    assert!(error.cause.contains("EC2_INSTANCE_LAUNCHING"), "{error}");
    let test = lifecycle_event(LAUNCH_DETAIL_TYPE, "autoscaling:TEST_NOTIFICATION", "t");
    assert_eq!(
        Invocation::parse(test).unwrap(),
        Invocation::TestNotification
    );
}

#[test]
fn execution_names_fit_step_functions_rules() {
    let detail: fleetprep_lambda::LifecycleDetail = serde_json::from_value(
        lifecycle_event(
            LAUNCH_DETAIL_TYPE,
            "autoscaling:EC2_INSTANCE_LAUNCHING",
            &format!("{}/{}", "x".repeat(90), "tail"),
        )["detail"]
            .clone(),
    )
    .unwrap();
    let name = execution_name(Transition::Launch, &detail);
    assert!(name.len() <= 80);
    assert!(
        name.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    );
}

#[test]
fn emf_lines_follow_the_embedded_metric_format() {
    let report = fleetprep_lambda::Report {
        action: "create_image".to_owned(),
        outcome: "Fleetprep.Throttled".to_owned(),
        duration: Duration::from_millis(1500),
    };
    let line = emf_line(
        "Fleetprep",
        &report,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    );
    assert!(!line.contains('\n'), "one record per line");
    let record: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(record["_aws"]["Timestamp"], 1_700_000_000_000u64);
    let directive = &record["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "Fleetprep");
    assert_eq!(directive["Dimensions"], json!([["Action"]]));
    // Every metric and dimension the directive names is a member of the record.
    for metric in directive["Metrics"].as_array().unwrap() {
        let name = metric["Name"].as_str().unwrap();
        assert!(record[name].is_number(), "{name} missing from {line}");
    }
    assert_eq!(record["Action"], "create_image");
    assert_eq!(record["Duration"], 1500.0);
    assert_eq!(record["Errors"], 1);
}

#[test]
fn config_reads_fleetprep_variables_and_names_bad_ones() {
    let vars = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };
    let config = FunctionConfig::from_env(vars(&[
        ("FLEETPREP_HOSTNAME_TABLE", "names"),
        ("FLEETPREP_HOSTNAME_PATTERN", "{prefix}{seq:4}"),
        ("FLEETPREP_HOSTNAME_PREFIX", "APP"),
        ("FLEETPREP_NAMING_MODE", "sysprep"),
        ("FLEETPREP_RENAME_METHOD", "ec2launch-set-host-name"),
        ("FLEETPREP_HOOK_TIMEOUT_SECONDS", "1200"),
        ("UNRELATED", "x"),
    ]))
    .unwrap();
    assert_eq!(config.hostname_table, "names");
    assert_eq!(config.settings.naming_mode, workflows::NamingMode::Sysprep);
    assert_eq!(
        config.settings.rename_method,
        workflows::RenameMethod::Ec2LaunchSetHostName
    );
    assert_eq!(config.settings.hook_timeout_seconds, 1200);
    assert!(config.policy().is_ok());

    let error =
        FunctionConfig::from_env(vars(&[("FLEETPREP_LEASE_TTL_SECONDS", "soon")])).unwrap_err();
    assert!(error.contains("FLEETPREP_LEASE_TTL_SECONDS"), "{error}");
    let error = FunctionConfig::from_env(vars(&[("FLEETPREP_NAMING_MODE", "magic")])).unwrap_err();
    assert!(error.contains("FLEETPREP_NAMING_MODE"), "{error}");
    // Unset (or empty, as CloudFormation passes an empty parameter) is Rename-Computer.
    for unset in [vars(&[]), vars(&[("FLEETPREP_RENAME_METHOD", "")])] {
        let config = FunctionConfig::from_env(unset).unwrap();
        assert_eq!(
            config.settings.rename_method,
            workflows::RenameMethod::RenameComputer
        );
    }
    let config =
        FunctionConfig::from_env(vars(&[("FLEETPREP_RENAME_METHOD", "rename-computer")])).unwrap();
    assert_eq!(
        config.settings.rename_method,
        workflows::RenameMethod::RenameComputer
    );
    // The CLI's short spelling is not the setting's: the error lists the accepted values.
    let error = FunctionConfig::from_env(vars(&[("FLEETPREP_RENAME_METHOD", "set-host-name")]))
        .unwrap_err();
    assert!(
        error.contains("FLEETPREP_RENAME_METHOD=\"set-host-name\"")
            && error.contains("\"rename-computer\", \"ec2launch-set-host-name\" or \"user-data\""),
        "{error}"
    );
    let user_data =
        FunctionConfig::from_env(vars(&[("FLEETPREP_RENAME_METHOD", "user-data")])).unwrap();
    assert!(user_data.settings.renames_from_tag());
    let bad_pattern = FunctionConfig::from_env(vars(&[("FLEETPREP_HOSTNAME_PATTERN", "{prefix}")]))
        .unwrap()
        .policy()
        .unwrap_err();
    assert!(
        bad_pattern.contains("FLEETPREP_HOSTNAME_PATTERN"),
        "{bad_pattern}"
    );
}
