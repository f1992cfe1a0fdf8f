//! What each handler may call, read from the one action table ([`crate::handlers::ACTIONS`]):
//! the [`cloud::iam::Operation`]s, from which the IAM actions are derived (the operation → IAM table lives once, in
//! `cloud::iam`).
//!
//! Deployment generates the Lambda role's least-privilege policy from [`all_actions`]. The
//! tests keep both halves honest: `localfleet`'s `tests/iam.rs` runs the workflows against the simulated fleet
//! through a recording Cloud and checks that every operation a handler calls is declared for
//! it here; the AWS tests check that every SDK request an operation makes is an IAM action of
//! that operation.

use cloud::iam::Operation;

use crate::handlers::{ACTIONS, action};

/// The Cloud operations `handler` may call, or None for an unknown handler.
pub fn operations(handler: &str) -> Option<&'static [Operation]> {
    action(handler).map(|action| action.operations)
}

/// The IAM actions `handler` may need, sorted and deduplicated, or None for an unknown handler.
pub fn actions(handler: &str) -> Option<Vec<&'static str>> {
    operations(handler).map(|ops| cloud::iam::policy_actions(ops.iter().copied()))
}

/// Per handler (in [`ACTIONS`] order), the IAM actions it may need: what a deployment
/// template's per-handler review or policy derivation reads.
pub fn actions_by_handler() -> impl Iterator<Item = (&'static str, Vec<&'static str>)> {
    ACTIONS.iter().map(|action| {
        (
            action.name,
            cloud::iam::policy_actions(action.operations.iter().copied()),
        )
    })
}

/// Every IAM action any handler needs, sorted and deduplicated: the Lambda role's policy.
pub fn all_actions() -> Vec<&'static str> {
    cloud::iam::policy_actions(
        ACTIONS
            .iter()
            .flat_map(|action| action.operations.iter().copied()),
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
        for (handler, actions) in actions_by_handler() {
            for action in actions {
                assert!(all.contains(&action), "{handler}: {action}");
            }
        }
    }

    #[test]
    fn no_handler_is_declared_twice_or_lists_an_operation_twice() {
        let mut seen = std::collections::BTreeSet::new();
        for action in ACTIONS {
            assert!(seen.insert(action.name), "{} declared twice", action.name);
            let unique: std::collections::BTreeSet<_> = action.operations.iter().collect();
            assert_eq!(unique.len(), action.operations.len(), "{}", action.name);
        }
    }
}
