//! The simulated fleet behaves like EC2/SSM/Auto Scaling on the virtual clock.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use clock::{Clock, VirtualClock};
use cloud::sim::{FaultKind, GroupSpec, LifecycleEvent, Scenario, SimCloud};
use cloud::*;
use names::{PoolOptions, SqliteNamePool};
use sysprep::hostname::HostnamePolicy;

fn sim(scenario: Scenario) -> (Arc<VirtualClock>, SimCloud) {
    let clock = Arc::new(VirtualClock::new(
        UNIX_EPOCH + Duration::from_secs(1_790_000_000),
    ));
    let policy = HostnamePolicy::from_pattern("{prefix}-{seq:3}", "WEB").unwrap();
    let pool = SqliteNamePool::in_memory(policy, clock.clone(), PoolOptions::default()).unwrap();
    let cloud = SimCloud::new(clock.clone(), Arc::new(pool), scenario);
    (clock, cloud)
}

fn scenario(text: &str) -> Scenario {
    Scenario::from_toml(text, "test.toml").unwrap()
}

async fn launch_builder(cloud: &SimCloud, token: &str) -> String {
    let instances = cloud
        .run_instances(RunInstancesRequest {
            image_id: cloud.base_image_id().into(),
            instance_type: "m5.large".into(),
            count: 1,
            client_token: token.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    instances[0].instance_id.clone()
}

async fn state(cloud: &SimCloud, id: &str) -> InstanceState {
    cloud.describe_instances(&[id.to_string()]).await.unwrap()[0].state
}

fn advance(clock: &VirtualClock, secs: u64) {
    clock.advance_by(Duration::from_secs(secs));
}

#[tokio::test]
async fn builder_goes_running_then_online_then_sysprep_shuts_it_down() {
    let (clock, cloud) = sim(Scenario::default());
    let id = launch_builder(&cloud, "bake-1").await;
    // Idempotent ClientToken: the same instance comes back.
    assert_eq!(launch_builder(&cloud, "bake-1").await, id);
    assert_eq!(state(&cloud, &id).await, InstanceState::Pending);
    advance(&clock, 61);
    assert_eq!(state(&cloud, &id).await, InstanceState::Running);
    let info = cloud
        .describe_instance_information(std::slice::from_ref(&id))
        .await
        .unwrap();
    assert!(info.is_empty(), "agent not registered yet: {info:?}");
    advance(&clock, 301);
    let info = cloud
        .describe_instance_information(std::slice::from_ref(&id))
        .await
        .unwrap();
    assert_eq!(info[0].ping_status, PingStatus::Online);

    let identity = cloud
        .send_command(SendCommandRequest {
            instance_ids: vec![id.clone()],
            document_name: "AWS-RunPowerShellScript".into(),
            // The simulated instance answers the `sysprep` crate's identity script.
            commands: vec![sysprep::agent::identity_script()],
            ..Default::default()
        })
        .await
        .unwrap();
    // Right after SendCommand the invocation does not exist yet (as on AWS).
    let early = cloud
        .get_command_invocation(&identity, &id)
        .await
        .unwrap_err();
    assert_eq!(early.code, "InvocationDoesNotExist");
    advance(&clock, 31);
    let before: serde_json::Value = serde_json::from_str(
        &cloud
            .get_command_invocation(&identity, &id)
            .await
            .unwrap()
            .stdout,
    )
    .unwrap();

    let command = cloud
        .send_command(SendCommandRequest {
            instance_ids: vec![id.clone()],
            document_name: "AWS-RunPowerShellScript".into(),
            commands: vec![
                "& $env:WINDIR\\System32\\Sysprep\\Sysprep.exe /generalize /oobe /shutdown /quiet"
                    .into(),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    advance(&clock, 7 * 60);
    assert_eq!(state(&cloud, &id).await, InstanceState::Running);
    advance(&clock, 14 * 60);
    let now = state(&cloud, &id).await;
    assert!(
        matches!(now, InstanceState::Stopping | InstanceState::Stopped),
        "{now:?}"
    );
    // The command was cut off by the shutdown: it never reports Success.
    let invocation = cloud.get_command_invocation(&command, &id).await.unwrap();
    assert_eq!(invocation.status, CommandStatus::InProgress);
    advance(&clock, 61);
    assert_eq!(state(&cloud, &id).await, InstanceState::Stopped);

    let image = cloud
        .create_image(CreateImageRequest {
            instance_id: id.clone(),
            name: "golden-1".into(),
            client_token: "img-1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let again = cloud
        .create_image(CreateImageRequest {
            instance_id: id.clone(),
            name: "golden-1".into(),
            client_token: "img-1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(image, again);
    advance(&clock, 9 * 60);
    assert_eq!(
        cloud
            .describe_images(std::slice::from_ref(&image))
            .await
            .unwrap()[0]
            .state,
        ImageState::Pending
    );
    advance(&clock, 21 * 60 + 1);
    assert_eq!(
        cloud
            .describe_images(std::slice::from_ref(&image))
            .await
            .unwrap()[0]
            .state,
        ImageState::Available
    );
    cloud
        .terminate_instances(std::slice::from_ref(&id))
        .await
        .unwrap();
    advance(&clock, 120);
    assert_eq!(state(&cloud, &id).await, InstanceState::Terminated);
    assert!(cloud.leftovers().is_empty(), "{:?}", cloud.leftovers());
    assert!(
        before["ComputerName"]
            .as_str()
            .unwrap()
            .starts_with("EC2AMAZ-"),
        "{before}"
    );
    assert_eq!(before["Generalized"], false);
}

#[tokio::test]
async fn generalize_changes_the_machine_sid_and_applies_the_unattend_name() {
    let (clock, cloud) = sim(Scenario::default());
    let id = launch_builder(&cloud, "sid").await;
    let other = launch_builder(&cloud, "sid-2").await;
    advance(&clock, 400);
    let sid_of = |id: &str| {
        cloud
            .instances()
            .into_iter()
            .find(|i| i.instance_id == id)
            .unwrap()
    };
    // Clones of one image share its SID until generalized.
    assert_eq!(sid_of(&id).machine_sid, sid_of(&other).machine_sid);
    cloud
        .send_command(SendCommandRequest {
            instance_ids: vec![id.clone()],
            document_name: "AWS-RunPowerShellScript".into(),
            commands: vec![
                "Set-Content C:\\unattend.xml '<ComputerName>WEB-007</ComputerName>'".into(),
                "Sysprep.exe /generalize /oobe /reboot /unattend:C:\\unattend.xml".into(),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    advance(&clock, 20 * 60 + 421);
    let after = sid_of(&id);
    assert_ne!(after.machine_sid, sid_of(&other).machine_sid);
    assert_eq!(after.computer_name, "WEB-007");
    assert_eq!(after.state, InstanceState::Running);
}

#[tokio::test]
async fn send_command_rejects_more_than_fifty_instances() {
    let (_clock, cloud) = sim(Scenario::default());
    let error = cloud
        .send_command(SendCommandRequest {
            instance_ids: (0..51).map(|i| format!("i-{i}")).collect(),
            document_name: "AWS-RunPowerShellScript".into(),
            commands: vec!["hostname".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidParameter);
    assert!(error.message.contains("at most 50"), "{error}");
}

#[tokio::test]
async fn describe_calls_are_throttled_by_a_token_bucket_refilled_on_the_clock() {
    let (clock, cloud) = sim(Scenario::default());
    let id = launch_builder(&cloud, "t").await;
    let mut throttled = 0;
    for _ in 0..150 {
        if let Err(error) = cloud.describe_instances(std::slice::from_ref(&id)).await {
            assert_eq!(error.code, "RequestLimitExceeded");
            assert!(error.is_retryable());
            throttled += 1;
        }
    }
    // A 100-token bucket: exactly 50 of 150 back-to-back calls are rejected.
    assert_eq!(throttled, 50);
    advance(&clock, 1);
    assert!(
        cloud
            .describe_instances(std::slice::from_ref(&id))
            .await
            .is_ok()
    );
    assert_eq!(cloud.throttled_calls()["ec2:DescribeInstances"], 50);
}

#[tokio::test]
async fn throttle_storm_rejects_every_ec2_call_for_its_duration() {
    let (clock, cloud) = sim(scenario(
        "[[fault]]\nkind = \"throttle-storm\"\nduration_seconds = 60\n",
    ));
    let error = cloud
        .run_instances(RunInstancesRequest {
            image_id: cloud.base_image_id().into(),
            instance_type: "m5.large".into(),
            count: 1,
            client_token: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Throttled);
    advance(&clock, 61);
    launch_builder(&cloud, "x").await;
}

#[tokio::test]
async fn group_launch_waits_on_the_hook_and_abandons_on_timeout() {
    let (clock, cloud) = sim(Scenario::default());
    cloud.create_group(GroupSpec {
        name: "web".into(),
        launch_template_id: "lt-fleet".into(),
        instance_type: "m5.large".into(),
        launch_hook_timeout_seconds: 600,
        terminate_hook_timeout_seconds: 300,
    });
    cloud.set_desired_capacity("web", 3).unwrap();
    let events = cloud.drain_lifecycle_events();
    assert_eq!(events.len(), 3);
    assert!(
        events
            .iter()
            .all(|e| e.lifecycle_transition == LifecycleEvent::LAUNCHING)
    );
    let first = &events[0];
    cloud
        .complete_lifecycle_action(CompleteLifecycleActionRequest {
            hook: LifecycleHookRef {
                auto_scaling_group_name: "web".into(),
                lifecycle_hook_name: first.lifecycle_hook_name.clone(),
                instance_id: first.instance_id.clone(),
                lifecycle_action_token: Some(first.lifecycle_action_token.clone()),
            },
            result: LifecycleActionResult::Continue,
        })
        .await
        .unwrap();
    // Heartbeat keeps the second alive past the first timeout.
    advance(&clock, 500);
    cloud
        .record_lifecycle_action_heartbeat(LifecycleHookRef {
            auto_scaling_group_name: "web".into(),
            lifecycle_hook_name: events[1].lifecycle_hook_name.clone(),
            instance_id: events[1].instance_id.clone(),
            lifecycle_action_token: Some(events[1].lifecycle_action_token.clone()),
        })
        .await
        .unwrap();
    advance(&clock, 200);
    let views = cloud.instances();
    let by_id = |id: &str| views.iter().find(|v| v.instance_id == id).unwrap().clone();
    assert_eq!(
        by_id(&events[0].instance_id).lifecycle_state.as_deref(),
        Some("InService")
    );
    assert_eq!(
        by_id(&events[1].instance_id).lifecycle_state.as_deref(),
        Some("Pending:Wait")
    );
    let third = by_id(&events[2].instance_id);
    assert!(
        matches!(
            third.state,
            InstanceState::ShuttingDown | InstanceState::Terminated
        ),
        "{third:?}"
    );
    // Completing an expired action is the AWS ValidationError.
    let late = cloud
        .complete_lifecycle_action(CompleteLifecycleActionRequest {
            hook: LifecycleHookRef {
                auto_scaling_group_name: "web".into(),
                lifecycle_hook_name: events[2].lifecycle_hook_name.clone(),
                instance_id: events[2].instance_id.clone(),
                lifecycle_action_token: Some(events[2].lifecycle_action_token.clone()),
            },
            result: LifecycleActionResult::Continue,
        })
        .await
        .unwrap_err();
    assert_eq!(late.code, "ValidationError");
    let _ = clock.now();
}

#[test]
fn scenario_errors_name_the_line_and_key() {
    let error =
        Scenario::from_toml("seed = 1\n[[fault]]\nkind = \"volcano\"\n", "storm.toml").unwrap_err();
    assert!(error.to_string().starts_with("storm.toml:3"), "{error}");
    assert!(error.to_string().contains("volcano"), "{error}");
    let error =
        Scenario::from_toml("[[fault]]\nkind = \"handler-timeout\"\n", "t.toml").unwrap_err();
    assert!(
        error.to_string().contains("needs key \"action\""),
        "{error}"
    );
    let parsed = scenario("[[fault]]\nkind = \"stuck-stopping\"\ntarget = \"builder\"\n");
    assert!(parsed.fault(FaultKind::StuckStopping, false).is_some());
    assert!(parsed.fault(FaultKind::StuckStopping, true).is_none());
}

/// Sends one script to `id`, lets it finish, and returns its invocation.
async fn run_script(
    clock: &VirtualClock,
    cloud: &SimCloud,
    id: &str,
    script: String,
) -> CommandInvocation {
    let command = cloud
        .send_command(SendCommandRequest {
            instance_ids: vec![id.to_string()],
            document_name: "AWS-RunPowerShellScript".into(),
            commands: script.lines().map(str::to_string).collect(),
            ..Default::default()
        })
        .await
        .unwrap();
    advance(clock, 120);
    cloud.get_command_invocation(&command, id).await.unwrap()
}

#[tokio::test]
async fn the_sysprep_crates_report_scripts_get_answers_its_parsers_read() {
    let (clock, cloud) = sim(scenario("[[fault]]\nkind = \"preflight-appx-blocker\"\n"));
    let id = launch_builder(&cloud, "reports").await;
    advance(&clock, 400);

    // The detection and pre-flight scripts mention Sysprep and the launch agents; the sim must
    // answer them as reports, not start a Sysprep.
    let detected = run_script(&clock, &cloud, &id, sysprep::agent::detection_script()).await;
    assert_eq!(detected.status, CommandStatus::Success);
    let report = sysprep::agent::parse_detection_output(&detected.stdout).unwrap();
    assert_eq!(report.agent, sysprep::agent::LaunchAgent::Ec2LaunchV2);

    let preflight = run_script(
        &clock,
        &cloud,
        &id,
        sysprep::preflight::preflight_script(None),
    )
    .await;
    let result = sysprep::preflight::check_output(&preflight.stdout).unwrap();
    assert!(result.blocked, "{result:?}");
    assert_eq!(result.findings[0].check, "appx-not-provisioned");

    let identity = run_script(&clock, &cloud, &id, sysprep::agent::identity_script()).await;
    let identity = sysprep::agent::parse_identity_output(&identity.stdout).unwrap();
    assert!(
        identity.computer_name.starts_with("EC2AMAZ-"),
        "{identity:?}"
    );
    assert!(
        identity.machine_sid.starts_with("S-1-5-21-"),
        "{identity:?}"
    );
    assert_eq!(state(&cloud, &id).await, InstanceState::Running);

    // The rename script with a literal name renames (exit 3010, reboot, re-run).
    let name = sysprep::hostname::Hostname::parse("WEB-042").unwrap();
    let rename =
        sysprep::commands::rename_commands(&name, sysprep::commands::RenameRestart::SsmExit3010);
    let command = cloud
        .send_command(SendCommandRequest {
            instance_ids: vec![id.clone()],
            document_name: "AWS-RunPowerShellScript".into(),
            commands: vec![rename.script()],
            ..Default::default()
        })
        .await
        .unwrap();
    advance(&clock, 20 * 60);
    let done = cloud.get_command_invocation(&command, &id).await.unwrap();
    assert_eq!(done.status, CommandStatus::Success, "{done:?}");
    let renamed = sysprep::agent::parse_identity_output(&done.stdout).unwrap();
    assert_eq!(renamed.computer_name, "WEB-042");
}

#[tokio::test]
async fn the_ec2launch_set_host_name_rename_takes_effect_after_its_reboots() {
    use sysprep::commands::{NameSource, RenameMethod, RenameRestart, rename_commands_with};
    let (clock, cloud) = sim(scenario(""));
    let a = launch_builder(&cloud, "set-host-name-a").await;
    let b = launch_builder(&cloud, "set-host-name-b").await;
    advance(&clock, 400);
    // One batched script for two instances: each takes its own name from the table prelude.
    let script = rename_commands_with(
        NameSource::PerInstance,
        RenameMethod::Ec2LaunchSetHostName,
        RenameRestart::SsmExit3010,
    )
    .script();
    let mut commands = vec![
        "# fleetprep:rename".to_string(),
        format!("$fleetprepValues = @{{ '{a}' = 'WEB-101'; '{b}' = 'WEB-102' }}"),
        "$fleetprepName = $fleetprepValues[$id]".to_string(),
    ];
    commands.extend(script.lines().map(str::to_string));
    let command = cloud
        .send_command(SendCommandRequest {
            instance_ids: vec![a.clone(), b.clone()],
            document_name: "AWS-RunPowerShellScript".into(),
            commands: commands.clone(),
            comment: Some("fleetprep rename".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    // The script exits 3010 at first: the name is not in place until the reboots are over.
    advance(&clock, 35);
    let running = cloud.get_command_invocation(&command, &a).await.unwrap();
    assert_eq!(running.status, CommandStatus::InProgress, "{running:?}");
    let before = cloud.instances();
    assert!(
        before
            .iter()
            .all(|i| i.computer_name.starts_with("EC2AMAZ-")),
        "{before:?}"
    );
    advance(&clock, 20 * 60);
    for (id, name) in [(&a, "WEB-101"), (&b, "WEB-102")] {
        let done = cloud.get_command_invocation(&command, id).await.unwrap();
        assert_eq!(done.status, CommandStatus::Success, "{done:?}");
        let identity = sysprep::agent::parse_identity_output(&done.stdout).unwrap();
        assert_eq!(identity.computer_name, name);
    }
    // Still a rename, not a Sysprep: the machine SID is the image's.
    let after = cloud.instances();
    for id in [&a, &b] {
        let sid = |list: &[cloud::sim::SimInstanceView]| {
            list.iter()
                .find(|i| &i.instance_id == id)
                .map(|i| i.machine_sid.clone())
        };
        assert_eq!(sid(&before), sid(&after));
    }
    assert_eq!(state(&cloud, &a).await, InstanceState::Running);
    // The sim keeps what was sent.
    let sent = cloud.sent_commands();
    let last = sent.last().expect("recorded");
    assert_eq!(last.command_id, command);
    assert_eq!(last.instance_ids, [a.clone(), b.clone()]);
    assert_eq!(last.commands, commands);
    assert_eq!(last.comment.as_deref(), Some("fleetprep rename"));
}

// ---- Start/Stop/TerminateInstances check the whole request before changing anything (EC2:
// "If you specify multiple instances and the request fails ... none of the instances are
// terminated"; StartInstances with one terminated id among stopped ones starts none).

/// Three running builders: `a`, `b`, and `c`, which is then terminated (and gone by the end).
async fn running_pair_and_terminated(clock: &VirtualClock, cloud: &SimCloud) -> [String; 3] {
    let a = launch_builder(cloud, "batch-a").await;
    let b = launch_builder(cloud, "batch-b").await;
    let c = launch_builder(cloud, "batch-c").await;
    advance(clock, 61);
    cloud
        .terminate_instances(std::slice::from_ref(&c))
        .await
        .unwrap();
    advance(clock, 91);
    assert_eq!(state(cloud, &a).await, InstanceState::Running);
    assert_eq!(state(cloud, &b).await, InstanceState::Running);
    assert_eq!(state(cloud, &c).await, InstanceState::Terminated);
    [a, b, c]
}

/// Awaits `call` (a Start/Stop/TerminateInstances), which must fail with `code` and change no
/// instance: not at once, and not later through a transition it scheduled.
async fn refused_as_a_whole(
    clock: &VirtualClock,
    cloud: &SimCloud,
    code: &str,
    call: impl std::future::Future<Output = Result<Vec<InstanceStateChange>, CloudError>>,
) -> CloudError {
    let before = cloud.instances();
    let err = call.await.unwrap_err();
    assert_eq!(err.code, code, "{err}");
    assert_eq!(cloud.instances(), before);
    advance(clock, 120);
    assert_eq!(cloud.instances(), before, "a transition was scheduled");
    err
}

/// `(instance, previous, current)` for each change, in the order the call reported them.
fn transitions(changes: &[InstanceStateChange]) -> Vec<(&str, InstanceState, InstanceState)> {
    changes
        .iter()
        .map(|c| (c.instance_id.as_str(), c.previous_state, c.current_state))
        .collect()
}

async fn stop_until_stopped(clock: &VirtualClock, cloud: &SimCloud, id: &str) {
    cloud
        .stop_instances(&[id.to_string()], false)
        .await
        .unwrap();
    advance(clock, 61);
    assert_eq!(state(cloud, id).await, InstanceState::Stopped);
}

#[tokio::test]
async fn an_unknown_id_fails_the_whole_state_change_and_changes_nothing() {
    let (clock, cloud) = sim(Scenario::default());
    let [a, b, _] = running_pair_and_terminated(&clock, &cloud).await;
    let unknown = "i-0123456789abcdef0".to_string();
    let code = "InvalidInstanceID.NotFound";

    let ids = [a.clone(), unknown.clone()];
    let err = refused_as_a_whole(&clock, &cloud, code, cloud.stop_instances(&ids, false)).await;
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert_eq!(
        err.message,
        format!("The instance ID '{unknown}' does not exist")
    );
    let ids = [a.clone(), b.clone(), unknown.clone()];
    refused_as_a_whole(&clock, &cloud, code, cloud.terminate_instances(&ids)).await;

    stop_until_stopped(&clock, &cloud, &a).await;
    let ids = [a.clone(), unknown.clone()];
    refused_as_a_whole(&clock, &cloud, code, cloud.start_instances(&ids)).await;

    // Several unknown ids: one error naming all of them, as EC2 words it.
    let other = "i-0fedcba9876543210".to_string();
    let ids = [unknown.clone(), a.clone(), other.clone()];
    let err = refused_as_a_whole(&clock, &cloud, code, cloud.terminate_instances(&ids)).await;
    assert_eq!(
        err.message,
        format!("The instance IDs '{unknown}, {other}' do not exist")
    );
}

#[tokio::test]
async fn an_instance_in_the_wrong_state_fails_the_whole_start_or_stop() {
    let (clock, cloud) = sim(Scenario::default());
    let [a, b, terminated] = running_pair_and_terminated(&clock, &cloud).await;
    let code = "IncorrectInstanceState";

    let ids = [a.clone(), terminated.clone(), b.clone()];
    let err = refused_as_a_whole(&clock, &cloud, code, cloud.stop_instances(&ids, true)).await;
    assert_eq!(err.kind, ErrorKind::IncorrectState);
    assert!(err.message.contains(&terminated), "{err}");

    stop_until_stopped(&clock, &cloud, &a).await;
    let ids = [a.clone(), terminated.clone()];
    refused_as_a_whole(&clock, &cloud, code, cloud.start_instances(&ids)).await;

    // Once the request is valid, every instance changes and each is reported.
    let changes = cloud
        .start_instances(&[a.clone(), b.clone()])
        .await
        .unwrap();
    assert_eq!(
        transitions(&changes),
        [
            (a.as_str(), InstanceState::Stopped, InstanceState::Pending),
            (b.as_str(), InstanceState::Running, InstanceState::Running),
        ]
    );
}

#[tokio::test]
async fn terminating_an_already_terminated_instance_is_not_an_error() {
    let (clock, cloud) = sim(Scenario::default());
    let [a, _, terminated] = running_pair_and_terminated(&clock, &cloud).await;
    let changes = cloud
        .terminate_instances(&[terminated.clone(), a.clone()])
        .await
        .unwrap();
    assert_eq!(
        transitions(&changes),
        [
            (
                terminated.as_str(),
                InstanceState::Terminated,
                InstanceState::Terminated
            ),
            (
                a.as_str(),
                InstanceState::Running,
                InstanceState::ShuttingDown
            ),
        ]
    );
    advance(&clock, 91);
    assert_eq!(state(&cloud, &a).await, InstanceState::Terminated);
}

#[tokio::test]
async fn an_instance_that_never_ran_cannot_be_stopped_but_a_restarting_one_can() {
    let (clock, cloud) = sim(Scenario::default());
    let fresh = launch_builder(&cloud, "never-ran").await;
    assert_eq!(state(&cloud, &fresh).await, InstanceState::Pending);
    let ids = [fresh.clone()];
    let err = cloud.stop_instances(&ids, false).await.unwrap_err();
    assert_eq!(err.code, "IncorrectInstanceState");
    assert_eq!(
        err.message,
        format!(
            "Instance '{fresh}' cannot be stopped as it has never reached the 'running' state."
        )
    );
    assert_eq!(state(&cloud, &fresh).await, InstanceState::Pending);
    // Once it has run: stop it, start it, and stop it while it is pending again.
    advance(&clock, 61);
    stop_until_stopped(&clock, &cloud, &fresh).await;
    cloud.start_instances(&ids).await.unwrap();
    assert_eq!(state(&cloud, &fresh).await, InstanceState::Pending);
    let changes = cloud.stop_instances(&ids, false).await.unwrap();
    assert_eq!(
        transitions(&changes),
        [(
            fresh.as_str(),
            InstanceState::Pending,
            InstanceState::Stopping
        )]
    );
}

#[tokio::test]
async fn list_command_invocations_shows_every_instance_of_a_command_in_one_call() {
    let (clock, cloud) = sim(scenario(""));
    let a = launch_builder(&cloud, "list-a").await;
    let b = launch_builder(&cloud, "list-b").await;
    advance(&clock, 400);
    let identity = sysprep::agent::identity_script();
    let command = cloud
        .send_command(SendCommandRequest {
            instance_ids: vec![a.clone(), b.clone()],
            document_name: "AWS-RunPowerShellScript".into(),
            commands: identity.lines().map(str::to_string).collect(),
            ..Default::default()
        })
        .await
        .unwrap();
    // Right after SendCommand the invocations are not visible yet: an empty list, no error.
    assert!(
        cloud
            .list_command_invocations(&command)
            .await
            .unwrap()
            .is_empty()
    );
    advance(&clock, 20 * 60);
    let before = cloud.api_calls();
    let listed = cloud.list_command_invocations(&command).await.unwrap();
    let mut ids: Vec<&str> = listed.iter().map(|i| i.instance_id.as_str()).collect();
    ids.sort();
    let mut expected = vec![a.as_str(), b.as_str()];
    expected.sort();
    assert_eq!(ids, expected);
    for invocation in &listed {
        assert_eq!(invocation.status, CommandStatus::Success, "{invocation:?}");
        // The same output GetCommandInvocation gives for a short, successful script.
        let whole = cloud
            .get_command_invocation(&command, &invocation.instance_id)
            .await
            .unwrap();
        assert_eq!(invocation.stdout, whole.stdout);
        sysprep::agent::parse_identity_output(&invocation.stdout).unwrap();
    }
    let after = cloud.api_calls();
    assert_eq!(
        after["ssm:ListCommandInvocations"]
            - before
                .get("ssm:ListCommandInvocations")
                .copied()
                .unwrap_or(0),
        1
    );
    assert!(
        cloud
            .list_command_invocations("unknown")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn ssm_and_auto_scaling_calls_are_throttled_by_their_own_buckets() {
    let (clock, cloud) = sim(scenario(""));
    let ids = vec!["i-0000000000000000a".to_string()];
    let mut throttled = None;
    for _ in 0..200 {
        if let Err(error) = cloud.describe_instance_information(&ids).await {
            throttled = Some(error);
            break;
        }
    }
    let error = throttled.expect("a burst of 200 DescribeInstanceInformation calls is throttled");
    assert_eq!(error.kind, ErrorKind::Throttled);
    assert_eq!(error.code, "ThrottlingException");
    // EC2's buckets are separate: DescribeInstances still answers.
    cloud.describe_instances(&[]).await.unwrap();
    // The bucket refills on the clock.
    advance(&clock, 5);
    cloud.describe_instance_information(&ids).await.unwrap();
    assert!(cloud.throttled_calls()["ssm:DescribeInstanceInformation"] >= 1);

    // Auto Scaling: one bucket for every operation. A burst of heartbeats (for no active
    // action: the bucket is drawn from before the request is looked at) empties it, and a
    // CompleteLifecycleAction right after is throttled too.
    let hook = LifecycleHookRef {
        auto_scaling_group_name: "web".into(),
        lifecycle_hook_name: "launch".into(),
        instance_id: ids[0].clone(),
        lifecycle_action_token: None,
    };
    let mut answers = Vec::new();
    for _ in 0..400 {
        answers.push(cloud.record_lifecycle_action_heartbeat(hook.clone()).await);
    }
    let throttled_heartbeats = answers
        .iter()
        .filter(|a| a.as_ref().is_err_and(|e| e.kind == ErrorKind::Throttled))
        .count();
    assert!(
        (1..400).contains(&throttled_heartbeats),
        "{throttled_heartbeats} of 400 heartbeats throttled"
    );
    let error = cloud
        .complete_lifecycle_action(CompleteLifecycleActionRequest {
            hook,
            result: LifecycleActionResult::Continue,
        })
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Throttled);
    assert_eq!(error.code, "Throttling");
}

/// Issue 10, bug 3: the SSM agent reports `ComputerName` as `DNSHostName.Domain`, with the
/// workgroup as the domain off a domain (amazon-ssm-agent source, platform code for Windows,
/// `fullyQualifiedDomainName`); the simulator reports it the same way.
#[tokio::test]
async fn ssm_reports_the_computer_name_fully_qualified() {
    let (clock, cloud) = sim(Scenario::default());
    let id = launch_builder(&cloud, "fqdn").await;
    advance(&clock, 400);
    let info = cloud
        .describe_instance_information(std::slice::from_ref(&id))
        .await
        .unwrap();
    let netbios = cloud
        .instances()
        .into_iter()
        .find(|i| i.instance_id == id)
        .unwrap()
        .computer_name;
    assert_eq!(info[0].computer_name, format!("{netbios}.WORKGROUP"));
    assert!(sysprep::hostname::ssm_name_matches(
        &info[0].computer_name,
        &netbios
    ));
}

/// Runs the no-shutdown Sysprep form for `agent` and waits long enough for any Sysprep.
async fn sysprep_without_shutdown(
    clock: &VirtualClock,
    cloud: &SimCloud,
    id: &str,
    agent: sysprep::agent::LaunchAgent,
) -> CommandInvocation {
    let script = sysprep::commands::sysprep_commands(
        agent,
        &sysprep::commands::SysprepOptions::no_shutdown(),
    )
    .unwrap()
    .script();
    let command = cloud
        .send_command(SendCommandRequest {
            instance_ids: vec![id.to_string()],
            document_name: "AWS-RunPowerShellScript".into(),
            commands: script.lines().map(str::to_string).collect(),
            ..Default::default()
        })
        .await
        .unwrap();
    advance(clock, 21 * 60);
    cloud.get_command_invocation(&command, id).await.unwrap()
}

/// Issue 10, bug 1: Sysprep without shutdown (AWS-UpdateWindowsAmi) returns in the command;
/// the image state is sealed and the builder keeps running until it is stopped through the
/// API.
#[tokio::test]
async fn sysprep_without_shutdown_seals_the_image_and_keeps_the_builder_running() {
    for agent in sysprep::agent::LaunchAgent::ALL {
        let (clock, cloud) = sim(Scenario::default());
        let id = launch_builder(&cloud, "no-shutdown").await;
        advance(&clock, 400);
        let done = sysprep_without_shutdown(&clock, &cloud, &id, agent).await;
        assert_eq!(done.status, CommandStatus::Success, "{agent}: {done:?}");
        assert_eq!(state(&cloud, &id).await, InstanceState::Running, "{agent}");
        let image_state =
            run_script(&clock, &cloud, &id, sysprep::agent::image_state_script()).await;
        assert_eq!(
            sysprep::agent::confirm_sealed(&image_state.stdout),
            Ok(sysprep::agent::ImageState::GeneralizeResealToOobe),
            "{agent}"
        );
        cloud
            .stop_instances(std::slice::from_ref(&id), false)
            .await
            .unwrap();
        advance(&clock, 61);
        assert_eq!(state(&cloud, &id).await, InstanceState::Stopped, "{agent}");
    }
}

/// Issue 10, bug 1: a failed Sysprep leaves Windows running with its Panther logs
/// ("Troubleshoot Sysprep with Amazon EC2 Windows instances"), which the collection script
/// fetches over SSM and the diagnosis classifies.
#[tokio::test]
async fn a_failed_sysprep_leaves_the_builder_running_with_panther_logs() {
    let (clock, cloud) = sim(scenario(
        "[[fault]]\nkind = \"sysprep-validation-failure\"\n",
    ));
    let id = launch_builder(&cloud, "panther").await;
    advance(&clock, 400);
    let done = sysprep_without_shutdown(
        &clock,
        &cloud,
        &id,
        sysprep::agent::LaunchAgent::Ec2LaunchV2,
    )
    .await;
    assert_eq!(done.status, CommandStatus::Failed, "{done:?}");
    assert!(
        !done.stderr.contains("SYSPRP"),
        "the evidence is on disk: {done:?}"
    );
    assert_eq!(state(&cloud, &id).await, InstanceState::Running);
    let info = cloud
        .describe_instance_information(std::slice::from_ref(&id))
        .await
        .unwrap();
    assert_eq!(info[0].ping_status, PingStatus::Online);
    let image_state = run_script(&clock, &cloud, &id, sysprep::agent::image_state_script()).await;
    assert!(sysprep::agent::confirm_sealed(&image_state.stdout).is_err());
    let logs = run_script(&clock, &cloud, &id, sysprep::panther::collection_script()).await;
    assert_eq!(logs.status, CommandStatus::Success);
    let tails = sysprep::panther::parse_output(&logs.stdout);
    assert!(
        tails
            .iter()
            .any(|t| t.path.ends_with(r"Sysprep\Panther\setupact.log"))
    );
    assert!(
        tails
            .iter()
            .any(|t| t.path.ends_with(r"Sysprep\Panther\setuperr.log"))
    );
    let diagnosis = sysprep::panther::diagnose_output(
        &logs.stdout,
        "",
        &sysprep::diagnose::DiagnosisContext::default(),
    );
    assert_eq!(
        diagnosis.category,
        sysprep::diagnose::Category::ValidationFailed
    );
}

async fn preflight(clock: &VirtualClock, cloud: &SimCloud, id: &str) -> Vec<String> {
    let output = run_script(clock, cloud, id, sysprep::preflight::preflight_script(None)).await;
    sysprep::preflight::check_output(&output.stdout)
        .unwrap()
        .findings
        .into_iter()
        .filter(|f| f.severity == sysprep::preflight::Severity::Block)
        .map(|f| f.check)
        .collect()
}

/// The self-healing bake's remedies act on the simulated Windows: AppX removal fixes the
/// blocker unless it recurs, and Sysprep fails on whatever is left with the Panther lines
/// Windows writes for it.
#[tokio::test]
async fn remedies_fix_the_blockers_they_target() {
    use sysprep::remedy::{appx_removal_script, parse_remedy_output, reboot_script};
    for recurs in [false, true] {
        let text = format!("[[fault]]\nkind = \"preflight-appx-blocker\"\nrecurs = {recurs}\n");
        let (clock, cloud) = sim(scenario(&text));
        let id = launch_builder(&cloud, "appx").await;
        advance(&clock, 400);
        assert_eq!(
            preflight(&clock, &cloud, &id).await,
            ["appx-not-provisioned"]
        );
        let removal = run_script(
            &clock,
            &cloud,
            &id,
            appx_removal_script(&["Microsoft.BingWeather_4.53.51922.0_x64__8wekyb3d8bbwe".into()]),
        )
        .await;
        let report = parse_remedy_output(&removal.stdout).unwrap();
        assert_eq!(report.removed.len(), 1);
        let after = preflight(&clock, &cloud, &id).await;
        assert_eq!(after.is_empty(), !recurs, "recurs = {recurs}: {after:?}");
        if recurs {
            let done = sysprep_without_shutdown(
                &clock,
                &cloud,
                &id,
                sysprep::agent::LaunchAgent::Ec2LaunchV2,
            )
            .await;
            assert_eq!(done.status, CommandStatus::Failed);
            let logs = run_script(&clock, &cloud, &id, sysprep::panther::collection_script()).await;
            let diagnosis = sysprep::panther::diagnose_output(
                &logs.stdout,
                "",
                &sysprep::diagnose::DiagnosisContext::default(),
            );
            assert_eq!(
                diagnosis.category,
                sysprep::diagnose::Category::AppxNotProvisioned
            );
        }
    }

    // A pending reboot clears once the reboot remedy has rebooted (exit 3010, rerun).
    let (clock, cloud) = sim(scenario("[[fault]]\nkind = \"pending-reboot\"\n"));
    let id = launch_builder(&cloud, "reboot").await;
    advance(&clock, 400);
    assert_eq!(preflight(&clock, &cloud, &id).await, ["pending-reboot"]);
    let command = cloud
        .send_command(SendCommandRequest {
            instance_ids: vec![id.clone()],
            document_name: "AWS-RunPowerShellScript".into(),
            commands: vec![reboot_script("bake/1")],
            ..Default::default()
        })
        .await
        .unwrap();
    advance(&clock, 40);
    let info = cloud
        .describe_instance_information(std::slice::from_ref(&id))
        .await
        .unwrap();
    assert_eq!(info[0].ping_status, PingStatus::ConnectionLost, "rebooting");
    advance(&clock, 300);
    let done = cloud.get_command_invocation(&command, &id).await.unwrap();
    assert_eq!(done.status, CommandStatus::Success, "{done:?}");
    assert!(parse_remedy_output(&done.stdout).unwrap().done);
    assert!(preflight(&clock, &cloud, &id).await.is_empty());
}

#[tokio::test]
async fn bitlocker_decrypts_over_time_once_turned_off() {
    let (clock, cloud) = sim(scenario(
        "[[fault]]\nkind = \"bitlocker-enabled\"\nduration_seconds = 600\n",
    ));
    let id = launch_builder(&cloud, "bitlocker").await;
    advance(&clock, 400);
    assert_eq!(preflight(&clock, &cloud, &id).await, ["bitlocker"]);
    let script = sysprep::remedy::bitlocker_off_script();
    let first = run_script(&clock, &cloud, &id, script.clone()).await;
    assert!(
        !sysprep::remedy::parse_remedy_output(&first.stdout)
            .unwrap()
            .done
    );
    advance(&clock, 600);
    let second = run_script(&clock, &cloud, &id, script).await;
    assert!(
        sysprep::remedy::parse_remedy_output(&second.stdout)
            .unwrap()
            .done
    );
    assert!(preflight(&clock, &cloud, &id).await.is_empty());
}

/// `times = 1`: the first image fails with Client.InternalError, the next one succeeds.
#[tokio::test]
async fn a_transient_create_image_failure_fails_only_the_first_image() {
    let (clock, cloud) = sim(scenario(
        "[[fault]]\nkind = \"create-image-fails\"\ntimes = 1\n",
    ));
    let id = launch_builder(&cloud, "image").await;
    advance(&clock, 400);
    let mut states = Vec::new();
    for token in ["first", "second"] {
        let image = cloud
            .create_image(CreateImageRequest {
                instance_id: id.clone(),
                name: format!("golden-{token}"),
                client_token: token.into(),
                ..Default::default()
            })
            .await
            .unwrap();
        advance(&clock, 31 * 60);
        let described = cloud.describe_images(&[image]).await.unwrap();
        states.push((described[0].state, described[0].state_reason.clone()));
    }
    assert_eq!(states[0].0, ImageState::Failed);
    assert!(
        states[0]
            .1
            .as_deref()
            .unwrap()
            .starts_with("Client.InternalError")
    );
    assert_eq!(states[1].0, ImageState::Available);
}

/// `examples/scenarios/` has a file for every fault the simulator can inject, each with the
/// terminal state it promises (the bake and fleet tests run them).
#[test]
fn every_fault_kind_has_an_example_scenario() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/scenarios");
    let mut kinds = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let scenario = Scenario::from_toml(&text, &path.display().to_string()).unwrap();
        let expect = scenario.expect.as_ref().unwrap_or_else(|| {
            panic!("{}: no [expect] table", path.display());
        });
        assert!(["bake", "fleet"].contains(&expect.run.as_str()), "{path:?}");
        assert!(
            ["SUCCEEDED", "FAILED"].contains(&expect.status.as_str()),
            "{path:?}"
        );
        for fault in &scenario.faults {
            kinds.insert(format!("{:?}", fault.kind));
        }
    }
    // Exhaustive: a new fault kind does not compile here until it has a scenario.
    let all = |kind: FaultKind| match kind {
        FaultKind::SsmNeverOnline
        | FaultKind::PreflightAppxBlocker
        | FaultKind::PendingReboot
        | FaultKind::BitlockerEnabled
        | FaultKind::SysprepValidationFailure
        | FaultKind::TerminatedMidSysprep
        | FaultKind::StuckStopping
        | FaultKind::ThrottleStorm
        | FaultKind::CreateImageFails
        | FaultKind::ImageStuckPending
        | FaultKind::HandlerTimeout
        | FaultKind::LifecycleHeartbeatTimeout
        | FaultKind::NamePoolExhausted
        | FaultKind::ConcurrentAllocationConflict => format!("{kind:?}"),
    };
    for kind in [
        FaultKind::SsmNeverOnline,
        FaultKind::PreflightAppxBlocker,
        FaultKind::PendingReboot,
        FaultKind::BitlockerEnabled,
        FaultKind::SysprepValidationFailure,
        FaultKind::TerminatedMidSysprep,
        FaultKind::StuckStopping,
        FaultKind::ThrottleStorm,
        FaultKind::CreateImageFails,
        FaultKind::ImageStuckPending,
        FaultKind::HandlerTimeout,
        FaultKind::LifecycleHeartbeatTimeout,
        FaultKind::NamePoolExhausted,
        FaultKind::ConcurrentAllocationConflict,
    ] {
        assert!(kinds.contains(&all(kind)), "no scenario for {kind:?}");
    }
}

/// Issue 11: the launch template's user data reads the `fleetprep:hostname` tag at boot and
/// on its retries after the tag is added (instance metadata shows a new tag while the instance
/// runs), only within its wait, and only when the template puts instance tags in instance
/// metadata ("Work with instance tags in instance metadata").
#[tokio::test]
async fn user_data_renames_from_its_tag_only_with_metadata_tags_and_within_its_wait() {
    use sysprep::userdata::{Format, HOSTNAME_TAG, TAG_WAIT_SECONDS, render};
    for metadata_tags in [true, false] {
        let (clock, cloud) = sim(Scenario::default());
        cloud.set_launch_template_data(
            "lt-fleet",
            cloud::sim::LaunchTemplateData {
                user_data: Some(render(Format::Ec2LaunchV2, true)),
                instance_metadata_tags: metadata_tags,
            },
        );
        cloud.create_group(GroupSpec {
            name: "web".into(),
            launch_template_id: "lt-fleet".into(),
            instance_type: "m5.large".into(),
            launch_hook_timeout_seconds: 7200,
            terminate_hook_timeout_seconds: 300,
        });
        cloud.set_desired_capacity("web", 3).unwrap();
        let ids: Vec<String> = cloud
            .drain_lifecycle_events()
            .into_iter()
            .map(|e| e.instance_id)
            .collect();
        let tag = |name: &str| vec![Tag::new(HOSTNAME_TAG, name)];
        // Tagged before it booted: read at boot.
        cloud.create_tags(&ids[..1], &tag("WEB-001")).await.unwrap();
        advance(&clock, 600);
        // Tagged while it runs: read on the next retry.
        cloud
            .create_tags(&ids[1..2], &tag("WEB-002"))
            .await
            .unwrap();
        advance(&clock, 300);
        // Tagged after the user data gave up: never read.
        advance(&clock, u64::from(TAG_WAIT_SECONDS));
        cloud.create_tags(&ids[2..], &tag("WEB-003")).await.unwrap();
        advance(&clock, 300);
        let names: Vec<String> = ids
            .iter()
            .map(|id| {
                cloud
                    .instances()
                    .into_iter()
                    .find(|i| &i.instance_id == id)
                    .unwrap()
                    .computer_name
            })
            .collect();
        if metadata_tags {
            assert_eq!(names[..2], ["WEB-001", "WEB-002"], "{names:?}");
            let info = cloud
                .describe_instance_information(&ids[..1])
                .await
                .unwrap();
            assert_eq!(info[0].computer_name, "WEB-001.WORKGROUP");
            assert_eq!(info[0].ping_status, PingStatus::Online);
        }
        let unchanged = if metadata_tags {
            &names[2..]
        } else {
            &names[..]
        };
        assert!(
            unchanged.iter().all(|n| n.starts_with("EC2AMAZ-")),
            "metadata tags {metadata_tags}: {names:?}"
        );
    }
}
