//! What each handler may call, one list, next to the handlers: the [`cloud::iam::Operation`]s,
//! from which the IAM actions are derived (the operation → IAM table lives once, in
//! `cloud::iam`).
//!
//! Deployment generates the Lambda role's least-privilege policy from [`all_actions`]. The
//! tests keep both halves honest: `tests/iam.rs` runs the workflows against the simulated fleet
//! through a recording Cloud and checks that every operation a handler calls is declared for
//! it here; the AWS tests check that every SDK request an operation makes is an IAM action of
//! that operation.

use cloud::iam::Operation::{self, *};

/// `(handler action, Cloud operations it may call)`, in [`crate::handlers::call`]'s order.
pub const HANDLER_ACTIONS: &[(&str, &[Operation])] = &[
    ("launch_builder", &[RunInstances]),
    (
        "check_ssm_online",
        &[
            DescribeInstanceInformation,
            // With batching, a poll first makes sure the batched SendCommand went out.
            SendCommand,
            RecordLifecycleActionHeartbeat,
        ],
    ),
    ("send_command", &[SendCommand]),
    (
        "check_command",
        &[
            // With batching, checking a ticket flushes the batch it is in.
            SendCommand,
            // A batched command's status comes from one listing of the whole command; a
            // finished invocation whose listed output is partial is read whole.
            ListCommandInvocations,
            GetCommandInvocation,
            RecordLifecycleActionHeartbeat,
        ],
    ),
    ("check_secrets", &[CheckSecret]),
    (
        "check_stopped",
        &[
            DescribeInstances,
            // A shutdown stuck in `stopping` is forced.
            StopInstances,
            // Sysprep's own command is checked while the instance still runs (batched: a
            // check flushes the batch it is in).
            GetCommandInvocation,
            ListCommandInvocations,
            SendCommand,
        ],
    ),
    ("create_image", &[CreateImage]),
    ("check_image", &[DescribeImages]),
    ("tag_image", &[CreateTags]),
    ("terminate_instance", &[TerminateInstances]),
    ("collect_diagnostics", &[GetConsoleOutput]),
    ("cleanup_bake", &[TerminateInstances, DeregisterImage]),
    // EMF lines in the function's log: no API call.
    ("publish_outcome", &[]),
    ("naming_settings", &[]),
    ("allocate_hostname", &[NamePoolAllocate]),
    ("confirm_hostname", &[NamePoolConfirm]),
    ("release_hostname", &[NamePoolRelease]),
    ("verify_identity", &[]),
    ("complete_lifecycle", &[CompleteLifecycleAction]),
    (
        "create_template_version",
        &[
            DescribeDefaultLaunchTemplateVersion,
            CreateLaunchTemplateVersion,
            SetDefaultLaunchTemplateVersion,
        ],
    ),
    ("start_refresh", &[StartInstanceRefresh]),
    ("check_refresh", &[DescribeInstanceRefresh]),
    ("rollback_template", &[SetDefaultLaunchTemplateVersion]),
];

/// The Cloud operations `handler` may call, or None for an unknown handler.
pub fn operations(handler: &str) -> Option<&'static [Operation]> {
    HANDLER_ACTIONS
        .iter()
        .find(|(name, _)| *name == handler)
        .map(|(_, operations)| *operations)
}

/// The IAM actions `handler` may need, sorted and deduplicated, or None for an unknown handler.
pub fn actions(handler: &str) -> Option<Vec<&'static str>> {
    operations(handler).map(|ops| cloud::iam::policy_actions(ops.iter().copied()))
}

/// Every IAM action any handler needs, sorted and deduplicated: the Lambda role's policy.
pub fn all_actions() -> Vec<&'static str> {
    cloud::iam::policy_actions(
        HANDLER_ACTIONS
            .iter()
            .flat_map(|(_, operations)| operations.iter().copied()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_derived_from_the_operations() {
        assert_eq!(
            actions("launch_builder").expect("known"),
            ["ec2:CreateTags", "ec2:RunInstances", "iam:PassRole"]
        );
        assert_eq!(actions("naming_settings"), Some(vec![]));
        assert_eq!(actions("launch_rockets"), None);
        let all = all_actions();
        assert!(all.windows(2).all(|w| w[0] < w[1]), "sorted, no duplicates");
        for (handler, _) in HANDLER_ACTIONS {
            for action in actions(handler).expect("known") {
                assert!(all.contains(&action), "{handler}: {action}");
            }
        }
    }

    #[test]
    fn no_handler_is_declared_twice_or_lists_an_operation_twice() {
        let mut seen = std::collections::BTreeSet::new();
        for (handler, operations) in HANDLER_ACTIONS {
            assert!(seen.insert(*handler), "{handler} declared twice");
            let unique: std::collections::BTreeSet<_> = operations.iter().collect();
            assert_eq!(unique.len(), operations.len(), "{handler}");
        }
    }
}
