//! The IAM actions each handler may call, one list, next to the handlers.
//!
//! Deployment generates the Lambda role's least-privilege policy from [`actions`]; a test
//! checks that every Cloud operation a handler calls is covered (the simulated fleet counts
//! calls by IAM action name, so the test runs the handler and compares).

/// `(handler action, IAM actions it may call)`.
pub const HANDLER_ACTIONS: &[(&str, &[&str])] = &[
    (
        "launch_builder",
        &["ec2:RunInstances", "ec2:CreateTags", "iam:PassRole"],
    ),
    (
        "check_ssm_online",
        &[
            "ssm:DescribeInstanceInformation",
            "ssm:SendCommand",
            "autoscaling:RecordLifecycleActionHeartbeat",
        ],
    ),
    ("send_command", &["ssm:SendCommand"]),
    (
        "check_command",
        &[
            "ssm:SendCommand",
            "ssm:GetCommandInvocation",
            "autoscaling:RecordLifecycleActionHeartbeat",
        ],
    ),
    (
        "check_secrets",
        &["secretsmanager:DescribeSecret", "ssm:DescribeParameters"],
    ),
    (
        "check_stopped",
        &[
            "ec2:DescribeInstances",
            "ec2:StopInstances",
            "ssm:GetCommandInvocation",
        ],
    ),
    ("create_image", &["ec2:CreateImage", "ec2:CreateTags"]),
    ("check_image", &["ec2:DescribeImages"]),
    ("tag_image", &["ec2:CreateTags"]),
    ("terminate_instance", &["ec2:TerminateInstances"]),
    ("collect_diagnostics", &["ec2:GetConsoleOutput"]),
    (
        "cleanup_bake",
        &[
            "ec2:TerminateInstances",
            "ec2:DeregisterImage",
            "ec2:DescribeImages",
        ],
    ),
    ("publish_outcome", &["cloudwatch:PutMetricData"]),
    ("naming_settings", &[]),
    (
        "allocate_hostname",
        &[
            "dynamodb:PutItem",
            "dynamodb:GetItem",
            "dynamodb:Query",
            "dynamodb:UpdateItem",
            // Rolls back the instance item when the name item's conditional put loses a race.
            "dynamodb:DeleteItem",
        ],
    ),
    (
        "confirm_hostname",
        &["dynamodb:UpdateItem", "dynamodb:GetItem"],
    ),
    (
        "release_hostname",
        &[
            "dynamodb:DeleteItem",
            "dynamodb:GetItem",
            "dynamodb:Query",
            "dynamodb:UpdateItem",
        ],
    ),
    ("verify_identity", &[]),
    (
        "complete_lifecycle",
        &["autoscaling:CompleteLifecycleAction"],
    ),
    (
        "create_template_version",
        &[
            "ec2:CreateLaunchTemplateVersion",
            "ec2:DescribeLaunchTemplateVersions",
        ],
    ),
    ("start_refresh", &["autoscaling:StartInstanceRefresh"]),
    ("check_refresh", &["autoscaling:DescribeInstanceRefreshes"]),
    ("rollback_template", &["ec2:ModifyLaunchTemplate"]),
];

/// The IAM actions `handler` may call, or None for an unknown handler.
pub fn actions(handler: &str) -> Option<&'static [&'static str]> {
    HANDLER_ACTIONS
        .iter()
        .find(|(name, _)| *name == handler)
        .map(|(_, actions)| *actions)
}

/// Every IAM action any handler needs, sorted and deduplicated.
pub fn all_actions() -> Vec<&'static str> {
    let mut all: Vec<&str> = HANDLER_ACTIONS
        .iter()
        .flat_map(|(_, actions)| actions.iter().copied())
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}
