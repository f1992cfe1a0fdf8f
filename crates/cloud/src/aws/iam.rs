//! IAM actions per [`crate::Cloud`] operation, declared in one table next to the code that makes
//! the calls, and a recorder that proves the table right.
//!
//! The deploy template's least-privilege policy is the union of [`iam_actions`] over the Cloud
//! operations a handler uses (the workflows declare those per handler). The recorder is an SDK
//! interceptor that notes every call's service and operation as the IAM action it needs; the
//! AWS tests run each Cloud operation against a local endpoint and assert that every recorded
//! action is declared here, so a new SDK call cannot ship without its permission.

use std::sync::Mutex;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_types::config_bag::ConfigBag;

/// The IAM actions each Cloud operation (named as the trait method) may need, including
/// actions the call implies without a separate SDK request (for example `iam:PassRole` for the
/// builder's instance profile, `ec2:CreateTags` for tags applied on create).
pub const CLOUD_OPERATIONS: &[(&str, &[&str])] = &[
    (
        "run_instances",
        &["ec2:RunInstances", "ec2:CreateTags", "iam:PassRole"],
    ),
    ("describe_instances", &["ec2:DescribeInstances"]),
    ("start_instances", &["ec2:StartInstances"]),
    ("stop_instances", &["ec2:StopInstances"]),
    ("terminate_instances", &["ec2:TerminateInstances"]),
    ("get_console_output", &["ec2:GetConsoleOutput"]),
    (
        "create_image",
        &["ec2:CreateImage", "ec2:DescribeImages", "ec2:CreateTags"],
    ),
    ("describe_images", &["ec2:DescribeImages"]),
    ("deregister_image", &["ec2:DeregisterImage"]),
    ("create_tags", &["ec2:CreateTags"]),
    (
        "create_launch_template_version",
        &["ec2:CreateLaunchTemplateVersion"],
    ),
    (
        "set_default_launch_template_version",
        &[
            "ec2:ModifyLaunchTemplate",
            "ec2:DescribeLaunchTemplateVersions",
        ],
    ),
    (
        "describe_default_launch_template_version",
        &["ec2:DescribeLaunchTemplateVersions"],
    ),
    (
        "describe_instance_information",
        &["ssm:DescribeInstanceInformation"],
    ),
    ("send_command", &["ssm:SendCommand"]),
    ("get_command_invocation", &["ssm:GetCommandInvocation"]),
    (
        "complete_lifecycle_action",
        &["autoscaling:CompleteLifecycleAction"],
    ),
    (
        "record_lifecycle_action_heartbeat",
        &["autoscaling:RecordLifecycleActionHeartbeat"],
    ),
    (
        "start_instance_refresh",
        &["autoscaling:StartInstanceRefresh"],
    ),
    (
        "describe_instance_refresh",
        &["autoscaling:DescribeInstanceRefreshes"],
    ),
    ("put_metric_data", &["cloudwatch:PutMetricData"]),
    // The name pool (`Cloud::name_pool`, DynamoDB): one entry per NamePool method.
    (
        "name_pool.allocate",
        &[
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:Query",
        ],
    ),
    (
        "name_pool.confirm",
        &["dynamodb:GetItem", "dynamodb:UpdateItem"],
    ),
    (
        "name_pool.release",
        &[
            "dynamodb:GetItem",
            "dynamodb:DeleteItem",
            "dynamodb:UpdateItem",
        ],
    ),
    ("name_pool.get_by_instance", &["dynamodb:GetItem"]),
    ("name_pool.get_by_name", &["dynamodb:GetItem"]),
    ("name_pool.list", &["dynamodb:Query"]),
    (
        "check_secret",
        &["secretsmanager:DescribeSecret", "ssm:DescribeParameters"],
    ),
];

/// What `fleetprep ... --engine aws` needs (the CLI's Step Functions client, not the Lambda).
pub const ENGINE_MODE_ACTIONS: &[&str] = &[
    "states:ListStateMachines",
    "states:StartExecution",
    "states:DescribeExecution",
    "states:GetExecutionHistory",
];

/// The IAM actions a Cloud operation needs, or None for a name that is not a Cloud operation.
pub fn iam_actions(operation: &str) -> Option<&'static [&'static str]> {
    CLOUD_OPERATIONS
        .iter()
        .find(|(name, _)| *name == operation)
        .map(|(_, actions)| *actions)
}

/// The IAM actions for a set of Cloud operations, sorted and deduplicated: the statement of a
/// least-privilege policy. Unknown operation names are returned as the error, all of them.
pub fn policy_actions<'a>(
    operations: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<&'static str>, Vec<String>> {
    let mut actions = std::collections::BTreeSet::new();
    let mut unknown = Vec::new();
    for operation in operations {
        match iam_actions(operation) {
            Some(list) => actions.extend(list.iter().copied()),
            None => unknown.push(operation.to_owned()),
        }
    }
    if unknown.is_empty() {
        Ok(actions.into_iter().collect())
    } else {
        Err(unknown)
    }
}

/// The IAM action an SDK call needs, from the SDK's service and operation names.
/// DynamoDB transactions are authorised per item action, so they map to several.
pub fn actions_for_call(service: &str, operation: &str) -> Vec<String> {
    let prefix = match service {
        "EC2" => "ec2",
        "SSM" => "ssm",
        "Auto Scaling" => "autoscaling",
        "CloudWatch" => "cloudwatch",
        "DynamoDB" => "dynamodb",
        "Secrets Manager" => "secretsmanager",
        "SFN" => "states",
        "STS" => "sts",
        other => return vec![format!("{}:{operation}", other.to_lowercase())],
    };
    match (prefix, operation) {
        // "TransactWriteItems" is not an IAM action; each item is authorised as its own
        // action (DynamoDB developer guide, "Using IAM with DynamoDB transactions").
        // fleetprep's only transaction is the allocation's two conditional puts.
        ("dynamodb", "TransactWriteItems") => vec!["dynamodb:PutItem".to_owned()],
        ("dynamodb", "TransactGetItems") => vec!["dynamodb:GetItem".to_owned()],
        _ => vec![format!("{prefix}:{operation}")],
    }
}

/// Collects the IAM actions of every SDK call made through clients that carry it.
#[derive(Debug, Default)]
pub struct CallRecorder {
    calls: Mutex<Vec<String>>,
}

impl CallRecorder {
    /// The actions recorded since the last `take`, in call order.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn record(&self, service: &str, operation: &str) {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(actions_for_call(service, operation));
    }
}

/// The SDK interceptor that feeds a [`CallRecorder`].
#[derive(Debug)]
pub(crate) struct RecordingInterceptor(pub(crate) std::sync::Arc<CallRecorder>);

impl Intercept for RecordingInterceptor {
    fn name(&self) -> &'static str {
        "fleetprep-iam-recorder"
    }

    // Not `read_before_execution`: client interceptors see that hook before the operation's
    // configuration (and so its Metadata) is in the bag. Serialization happens once per call,
    // before any retry.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(metadata) = cfg.load::<Metadata>() {
            self.0.record(metadata.service(), metadata.name());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_calls_map_to_iam_actions() {
        assert_eq!(
            actions_for_call("EC2", "RunInstances"),
            ["ec2:RunInstances"]
        );
        assert_eq!(
            actions_for_call("Auto Scaling", "CompleteLifecycleAction"),
            ["autoscaling:CompleteLifecycleAction"]
        );
        assert_eq!(
            actions_for_call("SFN", "StartExecution"),
            ["states:StartExecution"]
        );
        assert!(
            actions_for_call("DynamoDB", "TransactWriteItems")
                .contains(&"dynamodb:PutItem".to_owned())
        );
    }

    #[test]
    fn policy_is_the_sorted_union_and_unknown_names_are_errors() {
        let actions = policy_actions(["describe_instances", "create_tags", "run_instances"])
            .expect("known operations");
        assert_eq!(
            actions,
            [
                "ec2:CreateTags",
                "ec2:DescribeInstances",
                "ec2:RunInstances",
                "iam:PassRole"
            ]
        );
        assert_eq!(
            policy_actions(["describe_instances", "launch_rockets"]),
            Err(vec!["launch_rockets".to_owned()])
        );
    }

    #[test]
    fn every_action_is_service_prefixed() {
        for (operation, actions) in CLOUD_OPERATIONS {
            assert!(!actions.is_empty(), "{operation} declares no action");
            for action in *actions {
                let (service, name) = action.split_once(':').expect("service:Action");
                assert!(!service.is_empty() && name.chars().next().unwrap().is_ascii_uppercase());
            }
        }
    }
}
