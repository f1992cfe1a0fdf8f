//! The bake state machine end to end on the engine against the simulated fleet.

mod common;

use cloud::ImageState;
use engine::Status;

#[tokio::test(flavor = "current_thread")]
async fn bake_produces_an_available_tagged_image_and_leaves_nothing_running() {
    let fleet = common::fleet("").await;
    let done = common::bake(&fleet).await;
    assert_eq!(
        done.status,
        Status::Succeeded,
        "{:?} {:?}",
        done.error,
        done.cause
    );
    let output = done.output.unwrap();
    let image_id = output["image_id"].as_str().unwrap().to_string();
    let image = fleet
        .sim()
        .images()
        .into_iter()
        .find(|i| i.image_id == image_id)
        .unwrap();
    assert_eq!(image.state, ImageState::Available);
    assert!(
        image
            .tags
            .iter()
            .any(|t| t.key == "fleetprep:state" && t.value == "available")
    );
    assert_eq!(output["agent"], "ec2launch-v2");
    assert!(
        fleet.sim().leftovers().is_empty(),
        "{:?}",
        fleet.sim().leftovers()
    );
    // Simulated time: minutes of Sysprep and CreateImage went by.
    let took = done
        .stop_date
        .unwrap()
        .duration_since(done.start_date)
        .unwrap();
    assert!(took.as_secs() > 20 * 60, "{took:?}");
    assert_eq!(fleet.context().emf.count("bake", "Succeeded"), 1);
    // Issue 10, bug 1: Sysprep without shutdown, ImageState confirmed, then one stop through
    // the API (AWS-UpdateWindowsAmi), never a forced one.
    assert_eq!(fleet.sim().api_calls().get("ec2:StopInstances"), Some(&1));
    let kinds = common::command_kinds(&fleet);
    let sysprep = kinds
        .iter()
        .position(|k| k == "# fleetprep:sysprep")
        .unwrap();
    let sealed = kinds
        .iter()
        .position(|k| k == "# fleetprep:image-state")
        .unwrap();
    assert!(sysprep < sealed, "{kinds:?}");
    let script = fleet.sim().sent_commands()[sysprep].commands.join("\n");
    assert!(
        !script.contains("--shutdown") && !script.contains("Start-Process"),
        "{script}"
    );
}

/// Issue 10, bug 5: the bake leaves the administrator password to the launch agent's own
/// randomizer before Sysprep, so the image carries that setting and no password.
#[tokio::test(flavor = "current_thread")]
async fn the_baked_image_leaves_the_password_to_the_agents_randomizer() {
    let fleet = common::fleet("").await;
    let done = common::bake(&fleet).await;
    assert_eq!(done.status, Status::Succeeded, "{:?}", done.cause);
    let output = done.output.unwrap();
    assert_eq!(output["admin_password"], "random");
    let image_id = output["image_id"].as_str().unwrap();
    assert_eq!(
        fleet.sim().image_admin_password(image_id).as_deref(),
        Some("random")
    );
    let kinds = common::command_kinds(&fleet);
    let preflight = kinds.iter().rposition(|k| k == "# fleetprep:preflight");
    let password = kinds.iter().position(|k| k == "# fleetprep:agent-password");
    let sysprep = kinds.iter().position(|k| k == "# fleetprep:sysprep");
    assert!(
        preflight < password && password.is_some() && password < sysprep,
        "{kinds:?}"
    );
    // The detected agent's own setting (the simulated builder runs EC2Launch v2).
    let script = fleet.sim().sent_commands()[password.unwrap()]
        .commands
        .join("\n");
    assert!(script.contains("task = 'setAdminAccount'"), "{script}");
}

/// The same bake without the password step still "succeeds", and the simulated image shows
/// what is wrong with it: no randomizer setting of fleetprep's, so whatever password the
/// builder had is baked in. This is what the test above would catch if the step went missing.
#[tokio::test(flavor = "current_thread")]
async fn a_bake_without_the_password_step_is_detectably_wrong() {
    let fleet = common::fleet("").await;
    let mut definition: serde_json::Value = serde_json::from_str(
        &workflows::definition("bake", localfleet::LOCAL_FUNCTION_ARN).unwrap(),
    )
    .unwrap();
    definition["States"]["PreflightDone"]["Choices"][0]["Next"] = "SendSysprep".into();
    definition["States"]["Baked"]["Parameters"]
        .as_object_mut()
        .unwrap()
        .remove("admin_password.$");
    for state in [
        "SendAgentPassword",
        "StartAgentPasswordWait",
        "WaitAgentPassword",
        "CheckAgentPassword",
        "AgentPasswordDone",
        "RememberPassword",
    ] {
        definition["States"].as_object_mut().unwrap().remove(state);
    }
    fleet
        .engine()
        .create_state_machine("bake-without-password", &definition.to_string())
        .unwrap();
    let arn = fleet
        .engine()
        .start_execution(
            "bake-without-password",
            Some("bake-1"),
            common::bake_config(&fleet).input(),
        )
        .unwrap();
    fleet.run_until_idle().await.unwrap();
    let done = fleet.engine().describe(&arn).unwrap();
    assert_eq!(done.status, Status::Succeeded, "{:?}", done.cause);
    let image_id = done.output.unwrap()["image_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(fleet.sim().image_admin_password(&image_id), None);
}
