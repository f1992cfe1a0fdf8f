//! Shared setup: a virtual clock, the simulated fleet, the engine, the deployed workflows.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use clock::VirtualClock;
use cloud::Cloud as _;
use cloud::sim::{GroupSpec, Scenario};
use engine::{ExecutionSummary, Status};
use localfleet::{FleetOptions, LocalFleet};
use workflows::{BakeConfig, RolloutConfig, Settings};

pub async fn fleet_with(scenario: &str, pattern: &str, settings: Settings) -> LocalFleet {
    let scenario = Scenario::from_toml(scenario, "scenario.toml").expect("scenario");
    let clock = Arc::new(VirtualClock::new(
        UNIX_EPOCH + Duration::from_secs(1_790_000_000),
    ));
    let options = FleetOptions {
        scenario,
        settings,
        hostname_pattern: pattern.into(),
        ..FleetOptions::default()
    };
    LocalFleet::simulated(options, clock).await.expect("fleet")
}

pub async fn fleet(scenario: &str) -> LocalFleet {
    fleet_with(scenario, "{prefix}-{seq:3}", Settings::default()).await
}

pub fn bake_config(fleet: &LocalFleet) -> BakeConfig {
    BakeConfig {
        image_id: fleet.sim().base_image_id().into(),
        customization_scripts: vec!["Install-WindowsFeature Web-Server".into()],
        ..BakeConfig::default()
    }
}

pub async fn bake(fleet: &LocalFleet) -> ExecutionSummary {
    let input = bake_config(fleet).input();
    let arn = fleet
        .engine()
        .start_execution("bake", Some("bake-1"), input)
        .expect("start");
    fleet.run_until_idle().await.expect("run");
    fleet.engine().describe(&arn).expect("describe")
}

/// Rollout input for `group` on the template the simulated fleet's groups launch from.
pub fn rollout_input(group: &str, image_id: &str) -> serde_json::Value {
    RolloutConfig {
        group: group.into(),
        launch_template_id: "lt-fleet".into(),
        image_id: image_id.into(),
        min_healthy_percentage: 50,
        instance_warmup_seconds: 60,
        ..RolloutConfig::default()
    }
    .input()
}

/// Settings for the `user-data` rename method (instances rename themselves from their tag).
pub fn user_data_settings() -> Settings {
    Settings {
        rename_method: workflows::RenameMethod::UserData,
        ..Settings::default()
    }
}

/// Gives the fleet's launch template the user data that renames from the `fleetprep:hostname`
/// tag (`fleetprep userdata render --rename user-data`), with instance tags in instance
/// metadata on or off.
pub fn user_data_template(fleet: &LocalFleet, instance_metadata_tags: bool) {
    fleet.sim().set_launch_template_data(
        "lt-fleet",
        cloud::sim::LaunchTemplateData {
            user_data: Some(sysprep::userdata::render(
                sysprep::userdata::Format::Ec2LaunchV2,
                true,
            )),
            instance_metadata_tags,
        },
    );
}

pub fn group(fleet: &LocalFleet, hook_timeout: u64) {
    fleet.sim().create_group(GroupSpec {
        name: "web".into(),
        launch_template_id: "lt-fleet".into(),
        instance_type: "m5.large".into(),
        launch_hook_timeout_seconds: hook_timeout,
        terminate_hook_timeout_seconds: 600,
    });
}

/// Creates the `web` group, scales it to `desired` and runs until idle; every
/// `name-on-launch` execution must succeed. Returns how many there were.
pub async fn scale_out_and_name(fleet: &LocalFleet, hook_timeout: u64, desired: usize) -> usize {
    group(fleet, hook_timeout);
    fleet
        .sim()
        .set_desired_capacity("web", desired)
        .expect("scale out");
    fleet.run_until_idle().await.expect("run");
    let statuses = statuses(fleet, "name-on-launch");
    assert!(
        statuses.iter().all(|(s, _)| *s == Status::Succeeded),
        "{statuses:?}"
    );
    statuses.len()
}

/// How many `Failed` EMF metric lines the workflow wrote.
pub fn failed_metrics(fleet: &LocalFleet, workflow: &str) -> usize {
    fleet.context().emf.count(workflow, "Failed") as usize
}

/// The label line (`# fleetprep:<kind>`) of every command sent, in order.
pub fn command_kinds(fleet: &LocalFleet) -> Vec<String> {
    fleet
        .sim()
        .sent_commands()
        .iter()
        .filter_map(|c| c.commands.first().cloned())
        .collect()
}

/// Each execution of `workflow` with the names of the states it exited.
pub fn exited_states(
    fleet: &LocalFleet,
    workflow: &str,
) -> Vec<(String, std::collections::BTreeSet<String>)> {
    executions(fleet, workflow)
        .into_iter()
        .map(|e| {
            let exited = fleet
                .engine()
                .history(&e.execution_arn)
                .expect("history")
                .into_iter()
                .filter_map(|event| event.state_exited_event_details.map(|d| d.name))
                .collect();
            (e.name, exited)
        })
        .collect()
}

/// Every execution of `workflow`.
pub fn executions(fleet: &LocalFleet, workflow: &str) -> Vec<ExecutionSummary> {
    fleet
        .engine()
        .list_executions(None)
        .expect("list")
        .into_iter()
        .filter(|e| e.state_machine == workflow)
        .collect()
}

pub fn statuses(fleet: &LocalFleet, workflow: &str) -> Vec<(Status, Option<String>)> {
    executions(fleet, workflow)
        .into_iter()
        .map(|e| (e.status, e.error))
        .collect()
}

/// Asserts every instance in `in_service` has the name its lease holds, and returns the
/// leases by instance.
pub async fn assert_named_by_lease(
    fleet: &LocalFleet,
    in_service: &[cloud::sim::SimInstanceView],
) -> std::collections::BTreeMap<String, String> {
    let leases = fleet.sim().name_pool().list().await.expect("leases");
    let mut names = std::collections::BTreeMap::new();
    for instance in in_service {
        let lease = leases
            .iter()
            .find(|l| l.instance_id == instance.instance_id)
            .unwrap_or_else(|| panic!("no lease for {}", instance.instance_id));
        assert_eq!(instance.computer_name, lease.name.as_str(), "{instance:?}");
        names.insert(instance.instance_id.clone(), lease.name.as_str().to_owned());
    }
    names
}
