//! Every fault of issue 4 on the simulated fleet: the execution ends in its defined terminal
//! state, nothing is left running or half-made, and the failure metric is emitted.

mod common;

use std::collections::BTreeSet;

use cloud::Cloud;
use engine::Status;
use localfleet::LocalFleet;

/// Bakes under `scenario` and checks the common guarantees; returns the fleet and the failure
/// category (the Fail state's Error), or None when the bake succeeded.
async fn bake_under(scenario: &str) -> (LocalFleet, Option<String>) {
    let fleet = common::fleet(scenario).await;
    let done = common::bake(&fleet).await;
    assert_ne!(done.status, Status::Running);
    let leftovers = fleet.sim().leftovers();
    assert!(
        leftovers.is_empty(),
        "{scenario}: left behind {leftovers:?}"
    );
    match done.status {
        Status::Succeeded => (fleet, None),
        _ => {
            assert_eq!(
                common::failed_metrics(&fleet, "bake"),
                1,
                "{scenario}: failure metric"
            );
            (fleet, done.error)
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn ssm_agent_never_online_fails_as_agent_unreachable() {
    let (_, category) =
        bake_under("[[fault]]\nkind = \"ssm-never-online\"\ntarget = \"builder\"\n").await;
    assert_eq!(category.as_deref(), Some("agent-unreachable"));
}

/// Issue 10, self-healing bake: the AppX blocker is removed for all users through SSM, pre-flight
/// passes and the bake succeeds (a remedied blocker stays fixed).
#[tokio::test(flavor = "current_thread")]
async fn appx_preflight_blocker_is_remedied_and_the_bake_succeeds() {
    let (fleet, category) = bake_under("[[fault]]\nkind = \"preflight-appx-blocker\"\n").await;
    assert_eq!(category, None);
    let remedies = remedy_commands(&fleet);
    assert_eq!(remedies.len(), 1, "{remedies:?}");
    assert!(remedies[0].contains("Remove-AppxPackage"));
}

/// A blocker that comes back fails the bake after the default two rounds, with the original
/// category: never an endless loop.
#[tokio::test(flavor = "current_thread")]
async fn a_recurring_appx_blocker_fails_after_two_rounds() {
    let (fleet, category) =
        bake_under("[[fault]]\nkind = \"preflight-appx-blocker\"\nrecurs = true\n").await;
    assert_eq!(category.as_deref(), Some("appx-not-provisioned"));
    assert_eq!(remedy_commands(&fleet).len(), 2);
    // Sysprep never ran: no instance was generalized.
    assert!(
        fleet
            .sim()
            .instances()
            .iter()
            .all(|i| i.state != cloud::InstanceState::Stopped)
    );
}

fn remedy_commands(fleet: &LocalFleet) -> Vec<String> {
    fleet
        .sim()
        .sent_commands()
        .iter()
        .filter(|c| c.commands.first().map(String::as_str) == Some("# fleetprep:remedy"))
        .map(|c| c.commands.join("\n"))
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn sysprep_validation_failure_is_classified() {
    let (_, category) = bake_under("[[fault]]\nkind = \"sysprep-validation-failure\"\n").await;
    assert_eq!(category.as_deref(), Some("validation-failed"));
}

#[tokio::test(flavor = "current_thread")]
async fn builder_terminated_mid_sysprep_fails_as_instance_gone() {
    let (_, category) = bake_under("[[fault]]\nkind = \"terminated-mid-sysprep\"\n").await;
    assert_eq!(category.as_deref(), Some("instance-gone"));
}

#[tokio::test(flavor = "current_thread")]
async fn instance_stuck_in_stopping_is_force_stopped_and_the_bake_succeeds() {
    let (fleet, category) = bake_under("[[fault]]\nkind = \"stuck-stopping\"\n").await;
    assert_eq!(category, None);
    assert!(fleet.sim().api_calls()["ec2:StopInstances"] >= 1);
}

/// Issue 10: a 10-minute EC2 throttling storm used to fail the bake in under 3 simulated
/// minutes; Fleetprep.Throttled now has its own capped, jittered retrier.
#[tokio::test(flavor = "current_thread")]
async fn request_limit_storm_is_absorbed_by_retries() {
    let (fleet, category) =
        bake_under("[[fault]]\nkind = \"throttle-storm\"\nduration_seconds = 600\n").await;
    assert_eq!(category, None, "throttling must not fail the workflow");
    assert!(!fleet.sim().throttled_calls().is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn create_image_failure_deregisters_the_image() {
    let (fleet, category) = bake_under("[[fault]]\nkind = \"create-image-fails\"\n").await;
    assert_eq!(category.as_deref(), Some("image-failed"));
    assert!(fleet.sim().api_calls()["ec2:DeregisterImage"] >= 1);
}

#[tokio::test(flavor = "current_thread")]
async fn image_stuck_pending_times_out_and_is_deregistered() {
    let (_, category) = bake_under("[[fault]]\nkind = \"image-stuck-pending\"\n").await;
    assert_eq!(category.as_deref(), Some("timeout"));
}

#[tokio::test(flavor = "current_thread")]
async fn handler_timeout_fails_as_timeout() {
    let (_, category) =
        bake_under("[[fault]]\nkind = \"handler-timeout\"\naction = \"check_image\"\n").await;
    assert_eq!(category.as_deref(), Some("timeout"));
}

#[tokio::test(flavor = "current_thread")]
async fn lost_heartbeats_expire_the_hook_and_release_the_name() {
    let fleet = common::fleet(
        "[[fault]]\nkind = \"lifecycle-heartbeat-timeout\"\nheartbeat_timeout_seconds = 200\n",
    )
    .await;
    common::group(&fleet, 200);
    fleet.sim().set_desired_capacity("web", 3).unwrap();
    fleet.run_until_idle().await.unwrap();
    let statuses = common::statuses(&fleet, "name-on-launch");
    assert_eq!(statuses.len(), 3);
    for (status, error) in &statuses {
        assert_eq!(*status, Status::Failed);
        assert_eq!(error.as_deref(), Some("Fleetprep.LifecycleActionExpired"));
    }
    assert!(
        fleet.sim().name_pool().list().await.unwrap().is_empty(),
        "names released"
    );
    assert_eq!(common::failed_metrics(&fleet, "name-on-launch"), 3);
    assert!(fleet.sim().leftovers().waiting_on_hooks.is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn exhausted_name_pool_abandons_the_extra_launches() {
    let fleet = common::fleet("[[fault]]\nkind = \"name-pool-exhausted\"\n").await;
    common::group(&fleet, 900);
    fleet.sim().set_desired_capacity("web", 12).unwrap();
    fleet.run_until_idle().await.unwrap();
    let statuses = common::statuses(&fleet, "name-on-launch");
    let failed: Vec<_> = statuses
        .iter()
        .filter(|(s, _)| *s == Status::Failed)
        .collect();
    let capacity = 12 - failed.len();
    assert!(capacity >= 9, "{statuses:?}");
    assert!(!failed.is_empty());
    assert!(
        failed
            .iter()
            .all(|(_, e)| e.as_deref() == Some("Fleetprep.NamePoolExhausted"))
    );
    assert_eq!(
        common::failed_metrics(&fleet, "name-on-launch"),
        failed.len()
    );
    let in_service = fleet.sim().in_service("web");
    assert_eq!(in_service.len(), capacity);
    let names: BTreeSet<_> = in_service.iter().map(|i| i.computer_name.clone()).collect();
    assert_eq!(names.len(), capacity, "no duplicate names");
    assert!(
        fleet.sim().leftovers().waiting_on_hooks.is_empty(),
        "abandoned, not left waiting"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn names_held_by_another_writer_are_never_handed_out_twice() {
    let fleet =
        common::fleet("[[fault]]\nkind = \"concurrent-allocation-conflict\"\npreallocated = 4\n")
            .await;
    let foreign: BTreeSet<String> = fleet
        .sim()
        .name_pool()
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.name.as_str().to_string())
        .collect();
    assert_eq!(foreign.len(), 4);
    common::scale_out_and_name(&fleet, 900, 10).await;
    let names: BTreeSet<_> = fleet
        .sim()
        .in_service("web")
        .iter()
        .map(|i| i.computer_name.clone())
        .collect();
    assert_eq!(names.len(), 10);
    assert!(names.is_disjoint(&foreign), "{names:?} vs {foreign:?}");
    // Failure metric: none, this conflict is resolved, not failed.
    assert_eq!(common::failed_metrics(&fleet, "name-on-launch"), 0);
}

/// Issue 10: `[bake] windows_updates` installs updates through AWS-InstallWindowsUpdates (the
/// document AWS-UpdateWindowsAmi uses) before pre-flight; it reboots as the updates need, so
/// the pending reboot is gone and no remedy runs.
#[tokio::test(flavor = "current_thread")]
async fn windows_updates_run_through_the_aws_document_before_preflight() {
    let fleet = common::fleet("[[fault]]\nkind = \"pending-reboot\"\n").await;
    let input = workflows::BakeConfig {
        windows_updates: true,
        ..common::bake_config(&fleet)
    }
    .input();
    let arn = fleet
        .engine()
        .start_execution("bake", Some("bake-updates"), input)
        .expect("start");
    fleet.run_until_idle().await.expect("run");
    let done = fleet.engine().describe(&arn).expect("describe");
    assert_eq!(done.status, Status::Succeeded, "{:?}", done.cause);
    let sent = fleet.sim().sent_commands();
    let updates = sent
        .iter()
        .position(|c| c.document_name == workflows::handlers::WINDOWS_UPDATES_DOCUMENT)
        .expect("updates sent");
    let preflight = sent
        .iter()
        .position(|c| c.commands.first().map(String::as_str) == Some("# fleetprep:preflight"))
        .unwrap();
    assert!(updates < preflight);
    assert!(remedy_commands(&fleet).is_empty());
}
