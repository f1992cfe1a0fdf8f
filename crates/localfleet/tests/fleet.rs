//! Auto Scaling lifecycle hooks end to end: name-on-launch, release-on-terminate, rollout.

mod common;

use std::collections::BTreeSet;

use cloud::{Cloud, InstanceState};
use engine::Status;
use workflows::{NamingMode, RenameMethod, Settings};

#[tokio::test(flavor = "current_thread")]
async fn scaling_out_names_every_instance_uniquely_and_scaling_in_releases_names() {
    let fleet = common::fleet("").await;
    let named = common::scale_out_and_name(&fleet, 900, 20).await;
    assert_eq!(named, 20);
    let in_service = fleet.sim().in_service("web");
    assert_eq!(in_service.len(), 20);
    let names: BTreeSet<String> = in_service.iter().map(|i| i.computer_name.clone()).collect();
    assert_eq!(names.len(), 20, "names must be unique: {names:?}");
    assert!(names.iter().all(|n| n.starts_with("WEB-")), "{names:?}");
    // Batching: instances that come online in the same poll wave share one SendCommand, so
    // 40 commands (20 renames, 20 identity checks) take far fewer calls.
    let calls = fleet.sim().api_calls();
    assert!(calls["ssm:SendCommand"] <= 20, "{calls:?}");

    fleet.sim().set_desired_capacity("web", 15).unwrap();
    fleet.run_until_idle().await.unwrap();
    let released = common::statuses(&fleet, "release-on-terminate");
    assert_eq!(released.len(), 5);
    assert!(
        released.iter().all(|(s, _)| *s == Status::Succeeded),
        "{released:?}"
    );
    let leases = fleet.sim().name_pool().list().await.unwrap();
    assert_eq!(leases.len(), 15);
    // Shutting down takes a minute or so after the hook completes.
    let clock = fleet.sim().clock().clone();
    clock.advance_to(clock.now() + std::time::Duration::from_secs(120));
    let terminated = fleet
        .sim()
        .instances()
        .iter()
        .filter(|i| i.state == InstanceState::Terminated)
        .count();
    assert_eq!(terminated, 5);
}

#[tokio::test(flavor = "current_thread")]
async fn sysprep_naming_mode_changes_the_machine_sid() {
    let fleet = common::fleet_with(
        "",
        "{prefix}-{seq:3}",
        Settings {
            naming_mode: NamingMode::Sysprep,
            ..Settings::default()
        },
    )
    .await;
    common::scale_out_and_name(&fleet, 900, 3).await;
    let sids: BTreeSet<String> = fleet
        .sim()
        .in_service("web")
        .iter()
        .map(|i| i.machine_sid.clone())
        .collect();
    assert_eq!(sids.len(), 3, "each generalized instance has its own SID");
    // Issue 10: pre-flight runs on each instance before it is generalized.
    let kinds = common::command_kinds(&fleet);
    let preflight = kinds.iter().position(|k| k == "# fleetprep:preflight");
    let generalize = kinds.iter().position(|k| k == "# fleetprep:generalize");
    assert!(preflight.is_some() && preflight < generalize, "{kinds:?}");
}

/// Issue 10: in the sysprep naming mode a pre-flight blocker abandons the launch before the
/// instance is generalized, and its name goes back to the pool.
#[tokio::test(flavor = "current_thread")]
async fn sysprep_naming_mode_abandons_a_launch_that_fails_preflight() {
    let fleet = common::fleet_with(
        "[[fault]]\nkind = \"preflight-appx-blocker\"\ntarget = \"group\"\n",
        "{prefix}-{seq:3}",
        Settings {
            naming_mode: NamingMode::Sysprep,
            ..Settings::default()
        },
    )
    .await;
    common::group(&fleet, 900);
    fleet.sim().set_desired_capacity("web", 2).unwrap();
    fleet.run_until_idle().await.unwrap();
    let statuses = common::statuses(&fleet, "name-on-launch");
    assert_eq!(statuses.len(), 2);
    for (status, error) in &statuses {
        assert_eq!(*status, Status::Failed);
        assert_eq!(error.as_deref(), Some("Fleetprep.PreflightBlocked"));
    }
    assert!(
        fleet
            .sim()
            .sent_commands()
            .iter()
            .all(|c| c.commands.first().map(String::as_str) != Some("# fleetprep:generalize"))
    );
    assert!(fleet.sim().name_pool().list().await.unwrap().is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn bake_then_rollout_replaces_the_group_onto_the_new_image() {
    let fleet = common::fleet("").await;
    common::group(&fleet, 900);
    fleet.sim().set_desired_capacity("web", 4).unwrap();
    fleet.run_until_idle().await.unwrap();
    let baked = common::bake(&fleet).await;
    assert_eq!(baked.status, Status::Succeeded);
    let image_id = baked.output.unwrap()["image_id"]
        .as_str()
        .unwrap()
        .to_string();
    let input = common::rollout_input("web", &image_id);
    let arn = fleet
        .engine()
        .start_execution("rollout", Some("roll-1"), input)
        .unwrap();
    fleet.run_until_idle().await.unwrap();
    let done = fleet.engine().describe(&arn).unwrap();
    assert_eq!(
        done.status,
        Status::Succeeded,
        "{:?} {:?}",
        done.error,
        done.cause
    );
    let in_service = fleet.sim().in_service("web");
    assert_eq!(in_service.len(), 4);
    assert!(
        in_service.iter().all(|i| i.image_id == image_id),
        "{in_service:?}"
    );
    let names: BTreeSet<String> = in_service.iter().map(|i| i.computer_name.clone()).collect();
    assert_eq!(names.len(), 4);
    let released = common::statuses(&fleet, "release-on-terminate");
    assert_eq!(released.len(), 4, "{released:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn the_same_seed_gives_the_same_fleet() {
    async fn run() -> (
        Vec<(String, String, String)>,
        std::collections::BTreeMap<String, u64>,
    ) {
        let fleet = common::fleet("seed = 42\n").await;
        common::group(&fleet, 900);
        fleet.sim().set_desired_capacity("web", 8).unwrap();
        fleet.run_until_idle().await.unwrap();
        let mut instances: Vec<_> = fleet
            .sim()
            .in_service("web")
            .into_iter()
            .map(|i| (i.instance_id, i.computer_name, i.machine_sid))
            .collect();
        instances.sort();
        (instances, fleet.sim().api_calls())
    }
    let first = run().await;
    let second = run().await;
    assert_eq!(first.0.len(), 8);
    assert_eq!(first, second);
}

#[tokio::test(flavor = "current_thread")]
async fn heartbeats_keep_a_short_hook_alive_through_a_long_naming() {
    // The hook times out after 240 s; naming takes several minutes, so it only succeeds if
    // the polls record heartbeats.
    let fleet = common::fleet_with(
        "",
        "{prefix}-{seq:3}",
        Settings {
            hook_timeout_seconds: 240,
            ..Settings::default()
        },
    )
    .await;
    common::scale_out_and_name(&fleet, 240, 3).await;
    let calls = fleet.sim().api_calls();
    assert!(
        calls["autoscaling:RecordLifecycleActionHeartbeat"] >= 3,
        "{calls:?}"
    );
    assert_eq!(fleet.sim().in_service("web").len(), 3);
}

#[tokio::test(flavor = "current_thread")]
async fn the_ec2launch_set_host_name_method_names_verifies_and_continues_every_instance() {
    let fleet = common::fleet_with(
        "",
        "{prefix}-{seq:3}",
        Settings {
            rename_method: RenameMethod::Ec2LaunchSetHostName,
            ..Settings::default()
        },
    )
    .await;
    let named = common::scale_out_and_name(&fleet, 900, 6).await;
    assert_eq!(named, 6);
    // CONTINUE put every instance in service, each under its leased name.
    let in_service = fleet.sim().in_service("web");
    assert_eq!(in_service.len(), 6);
    common::assert_named_by_lease(&fleet, &in_service).await;
    let names: BTreeSet<String> = in_service.iter().map(|i| i.computer_name.clone()).collect();
    assert_eq!(names.len(), 6, "names must be unique: {names:?}");
    // Every execution went through the identity check and the CONTINUE.
    for (name, exited) in common::exited_states(&fleet, "name-on-launch") {
        for state in ["SendRename", "VerifyIdentity", "ConfirmName", "Continue"] {
            assert!(exited.contains(state), "{name}: {exited:?}");
        }
    }
    // The renames sent were EC2Launch v2 setHostName scripts, covering every instance.
    let sent = fleet.sim().sent_commands();
    let renames: Vec<_> = sent
        .iter()
        .filter(|c| c.commands.first().map(String::as_str) == Some("# fleetprep:rename"))
        .collect();
    assert!(!renames.is_empty(), "{sent:?}");
    let mut renamed = BTreeSet::new();
    for command in &renames {
        let script = command.commands.join("\n");
        assert!(script.contains("task = 'setHostName'"), "{script}");
        assert!(!script.contains("Rename-Computer"), "{script}");
        renamed.extend(command.instance_ids.iter().cloned());
    }
    let instances: BTreeSet<String> = in_service.iter().map(|i| i.instance_id.clone()).collect();
    assert_eq!(renamed, instances);
}

#[tokio::test(flavor = "current_thread")]
async fn the_default_rename_method_sends_rename_computer() {
    let fleet = common::fleet("").await;
    common::scale_out_and_name(&fleet, 900, 2).await;
    let renames: Vec<String> = fleet
        .sim()
        .sent_commands()
        .iter()
        .filter(|c| c.commands.first().map(String::as_str) == Some("# fleetprep:rename"))
        .map(|c| c.commands.join("\n"))
        .collect();
    assert!(!renames.is_empty());
    for script in renames {
        assert!(
            script.contains("Rename-Computer -NewName $desired"),
            "{script}"
        );
        // It only removes other names' setHostName tasks (issue 10, point 8), never adds one.
        assert!(!script.contains("task = 'setHostName'"), "{script}");
    }
}

/// Issue 11: with the `user-data` rename method the workflow only tags the instance (the name
/// claim stays the conditional lease) and waits for SSM to report the new name: no SSM
/// command renames anything, and no identity command either.
#[tokio::test(flavor = "current_thread")]
async fn the_user_data_method_tags_instances_and_they_rename_themselves() {
    let fleet = common::fleet_with("", "{prefix}-{seq:3}", common::user_data_settings()).await;
    common::user_data_template(&fleet, true);
    let named = common::scale_out_and_name(&fleet, 900, 4).await;
    assert_eq!(named, 4);
    let in_service = fleet.sim().in_service("web");
    assert_eq!(in_service.len(), 4);
    let leases = common::assert_named_by_lease(&fleet, &in_service).await;
    let described = fleet
        .sim()
        .describe_instances(&leases.keys().cloned().collect::<Vec<_>>())
        .await
        .unwrap();
    // The tag each instance read its name from is its lease.
    for (instance_id, name) in &leases {
        let tags = &described
            .iter()
            .find(|d| &d.instance_id == instance_id)
            .unwrap()
            .tags;
        assert!(
            tags.iter()
                .any(|t| t.key == "fleetprep:hostname" && &t.value == name),
            "{tags:?}"
        );
    }
    assert!(
        fleet.sim().sent_commands().is_empty(),
        "{:?}",
        fleet.sim().sent_commands()
    );
    let executions = common::exited_states(&fleet, "name-on-launch");
    assert_eq!(executions.len(), 4);
    for (name, exited) in executions {
        for state in ["TagHostname", "CheckRenamed", "VerifyIdentity", "Continue"] {
            assert!(exited.contains(state), "{name}: {exited:?}");
        }
        assert!(!exited.contains("SendRename"), "{exited:?}");
    }
}

/// Issue 11: without `InstanceMetadataTags: enabled` the tag never reaches the instance
/// ("Work with instance tags in instance metadata"), so it never renames; the launch is
/// abandoned with an error that names the launch template setting, and the name goes back.
#[tokio::test(flavor = "current_thread")]
async fn the_user_data_method_without_metadata_tags_fails_clearly() {
    let fleet = common::fleet_with("", "{prefix}-{seq:3}", common::user_data_settings()).await;
    common::user_data_template(&fleet, false);
    common::group(&fleet, 900);
    fleet.sim().set_desired_capacity("web", 1).unwrap();
    fleet.run_until_idle().await.unwrap();
    let statuses = common::statuses(&fleet, "name-on-launch");
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0].0, Status::Failed, "{statuses:?}");
    let execution = common::executions(&fleet, "name-on-launch").remove(0);
    let cause = fleet
        .engine()
        .history(&execution.execution_arn)
        .unwrap()
        .into_iter()
        .filter_map(|e| e.task_failed_event_details)
        .map(|d| {
            format!(
                "{} {}",
                d.error.unwrap_or_default(),
                d.cause.unwrap_or_default()
            )
        })
        .find(|c| c.contains("InstanceMetadataTags"))
        .expect("a task failure naming InstanceMetadataTags");
    assert!(cause.contains("Fleetprep.VerifyFailed"), "{cause}");
    assert!(cause.contains("fleetprep:hostname="), "{cause}");
    // The instance kept its launch name, the lease was released, the launch abandoned.
    assert!(fleet.sim().name_pool().list().await.unwrap().is_empty());
    assert!(fleet.sim().in_service("web").is_empty());
}

/// The calls to Systems Manager among calls counted by operation (`service:Action`).
fn ssm_total(calls: &std::collections::BTreeMap<String, u64>) -> u64 {
    calls
        .iter()
        .filter(|(op, _)| op.starts_with("ssm:"))
        .map(|(_, n)| n)
        .sum()
}

#[tokio::test(flavor = "current_thread")]
async fn a_scale_out_beyond_the_ssm_rate_limits_is_throttled_and_absorbed() {
    // 2,000 instances launched at once: their describes, sends and status listings meet the
    // simulator's SSM token buckets in the same instants, and are throttled.
    let fleet = common::fleet_with("", "{prefix}-{seq:4}", Settings::default()).await;
    let instances = 2_000;
    let named = common::scale_out_and_name(&fleet, 900, instances).await;
    assert_eq!(named, instances);
    let throttled = fleet.sim().throttled_calls();
    let ssm_throttled = ssm_total(&throttled);
    assert!(
        ssm_throttled > 0,
        "no SSM call was throttled: {throttled:?}"
    );
    // Absorbed: every execution succeeded (checked by scale_out_and_name), every instance is
    // in service under its own name.
    let in_service = fleet.sim().in_service("web");
    assert_eq!(in_service.len(), instances);
    let names: BTreeSet<String> = in_service.iter().map(|i| i.computer_name.clone()).collect();
    assert_eq!(names.len(), instances);
    // Status is polled per command, not per instance: all SSM calls together stay under 0.6
    // per instance, and GetCommandInvocation is only for partial listings (none here).
    let calls = fleet.sim().api_calls();
    let ssm_calls = ssm_total(&calls);
    assert!(
        (ssm_calls as f64) / (instances as f64) <= 0.6,
        "{ssm_calls} SSM calls for {instances} instances: {calls:?}"
    );
    assert!(!calls.contains_key("ssm:GetCommandInvocation"), "{calls:?}");
    // Auto Scaling: a heartbeat only for a hook that could time out before the next poll
    // (the naming of most instances ends well inside the 900 s hook). A heartbeat every
    // quarter to half of the timeout cost more than one per instance here.
    let heartbeats = calls
        .get("autoscaling:RecordLifecycleActionHeartbeat")
        .copied()
        .unwrap_or(0);
    assert!(heartbeats * 20 <= instances as u64, "{calls:?}");
    // Outcome metrics are EMF lines (the function has no CloudWatch client), one per execution.
    assert_eq!(
        fleet.context().emf.count("name-on-launch", "Succeeded"),
        instances as u64
    );
}
