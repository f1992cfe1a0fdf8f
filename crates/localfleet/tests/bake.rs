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
    // Metrics are EMF lines in the log, not API calls.
    assert!(
        !fleet
            .sim()
            .api_calls()
            .contains_key("cloudwatch:PutMetricData")
    );
    // Issue 10, bug 1: Sysprep without shutdown, ImageState confirmed, then one stop through
    // the API (AWS-UpdateWindowsAmi), never a forced one.
    assert_eq!(fleet.sim().api_calls().get("ec2:StopInstances"), Some(&1));
    let kinds: Vec<String> = fleet
        .sim()
        .sent_commands()
        .iter()
        .filter_map(|c| c.commands.first().cloned())
        .collect();
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
