//! `workflows::iam` against what the handlers really do: the workflows run on the simulated
//! fleet with every handler invocation given its own recording Cloud
//! (`cloud::iam::RecordingCloud`), and every Cloud operation a handler called must be declared
//! for it. The runs cover the success paths (scale out with heartbeats, a bake with secrets, a
//! rollout, scale in) and the failure paths (forced stop, failed image, SSM never online, a
//! rollout rolled back), so every handler that calls AWS is exercised.

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use cloud::SecretRef;
use cloud::iam::{OperationLog, RecordingCloud};
use engine::{Status, TaskError, handler_fn};
use localfleet::{LOCAL_FUNCTION_ARN, LocalFleet};
use serde_json::Value;
use workflows::{BakeConfig, Settings, iam};

type Seen = Arc<Mutex<BTreeMap<String, BTreeSet<cloud::iam::Operation>>>>;

thread_local! {
    // The fleet being driven, for starting lifecycle executions from inside a handler (the
    // function cannot own the engine that owns it; handlers run on the driving thread, as in
    // `localfleet`).
    static DRIVING: RefCell<Option<LocalFleet>> = const { RefCell::new(None) };
}

/// Replaces the fleet's function with one that gives each invocation a recording Cloud over
/// the same simulated fleet and notes the operations under the invocation's action.
fn record_per_action(fleet: &LocalFleet, seen: &Seen) {
    let context = fleet.context().clone();
    let sim = fleet.sim().clone();
    let seen = seen.clone();
    fleet.engine().register(
        LOCAL_FUNCTION_ARN,
        handler_fn(move |payload: Value, _task| {
            let mut context = context.clone();
            let sim = sim.clone();
            let seen = seen.clone();
            async move {
                let action = payload["action"].as_str().unwrap_or("<none>").to_owned();
                let log = Arc::new(OperationLog::default());
                context.cloud = Arc::new(RecordingCloud::new(sim, log.clone()));
                let result = workflows::dispatch(payload, &context).await;
                seen.lock()
                    .unwrap()
                    .entry(action)
                    .or_default()
                    .extend(log.take());
                // As the deployed function's wiring does: the call may have launched or
                // terminated instances, whose hooks start executions at once.
                DRIVING.with(|fleet| {
                    if let Some(fleet) = fleet.borrow().as_ref() {
                        fleet.pump_lifecycle_events();
                    }
                });
                result.map_err(|e| TaskError::new(e.error, e.cause))
            }
        }),
    );
}

async fn drive(fleet: &LocalFleet) {
    DRIVING.with(|d| *d.borrow_mut() = Some(fleet.clone()));
    let result = fleet.run_until_idle().await;
    DRIVING.with(|d| *d.borrow_mut() = None);
    result.expect("run");
}

async fn recorded_fleet(scenario: &str, seen: &Seen) -> LocalFleet {
    let fleet = common::fleet_with(
        scenario,
        "{prefix}-{seq:3}",
        // A hook shorter than naming takes, so the polls record heartbeats.
        Settings {
            hook_timeout_seconds: 240,
            ..Settings::default()
        },
    )
    .await;
    record_per_action(&fleet, seen);
    fleet
}

async fn bake(fleet: &LocalFleet, name: &str) -> engine::ExecutionSummary {
    let input = BakeConfig {
        secrets: vec![
            SecretRef::SecretsManager {
                secret_id: "fleetprep/domain-join".into(),
            },
            SecretRef::SsmParameter {
                name: "/fleetprep/local-admin".into(),
            },
        ],
        ..common::bake_config(fleet)
    }
    .input();
    let arn = fleet
        .engine()
        .start_execution("bake", Some(name), input)
        .expect("start");
    drive(fleet).await;
    fleet.engine().describe(&arn).expect("describe")
}

async fn rollout(fleet: &LocalFleet, group: &str, image_id: &str) -> engine::ExecutionSummary {
    let input = common::rollout_input(group, image_id);
    let arn = fleet
        .engine()
        .start_execution("rollout", Some(&format!("roll-{group}")), input)
        .expect("start");
    drive(fleet).await;
    fleet.engine().describe(&arn).expect("describe")
}

#[tokio::test(flavor = "current_thread")]
async fn every_operation_a_handler_calls_is_declared_for_it() {
    let seen = Seen::default();

    // Success paths.
    let fleet = recorded_fleet("", &seen).await;
    common::group(&fleet, 240);
    fleet.sim().set_desired_capacity("web", 3).unwrap();
    drive(&fleet).await;
    let baked = bake(&fleet, "bake-ok").await;
    assert_eq!(baked.status, Status::Succeeded, "{:?}", baked.cause);
    let image_id = baked.output.expect("output")["image_id"]
        .as_str()
        .expect("image id")
        .to_owned();
    let rolled = rollout(&fleet, "web", &image_id).await;
    assert_eq!(rolled.status, Status::Succeeded, "{:?}", rolled.cause);
    fleet.sim().set_desired_capacity("web", 1).unwrap();
    drive(&fleet).await;
    // A rollout of a group that does not exist: StartInstanceRefresh fails, the template's
    // default version is rolled back.
    let rolled_back = rollout(&fleet, "ghost", &image_id).await;
    assert_eq!(rolled_back.status, Status::Failed);

    // Failure paths.
    for fault in [
        "stuck-stopping",
        "create-image-fails",
        "[[fault]]\nkind = \"ssm-never-online\"\ntarget = \"builder\"\n",
    ] {
        let scenario = if fault.starts_with("[[") {
            fault.to_owned()
        } else {
            format!("[[fault]]\nkind = \"{fault}\"\n")
        };
        let fleet = recorded_fleet(&scenario, &seen).await;
        let done = bake(&fleet, "bake-fault").await;
        assert_ne!(done.status, Status::Running, "{fault}");
    }

    let seen = seen.lock().unwrap().clone();
    let mut undeclared = Vec::new();
    for (action, called) in &seen {
        let declared = iam::operations(action)
            .unwrap_or_else(|| panic!("the workflows invoked {action:?}, unknown to iam.rs"));
        for operation in called {
            if !declared.contains(operation) {
                undeclared.push(format!("{action} calls {operation}"));
            }
        }
    }
    assert!(
        undeclared.is_empty(),
        "add these to their row of workflows::handlers::ACTIONS: {undeclared:#?}"
    );

    // The runs must have exercised every handler that declares an operation, or the check
    // above proves nothing about it.
    let unexercised: Vec<&str> = workflows::handlers::ACTIONS
        .iter()
        .filter(|action| {
            !action.operations.is_empty()
                && seen.get(action.name).is_none_or(|called| called.is_empty())
        })
        .map(|action| action.name)
        .collect();
    assert!(
        unexercised.is_empty(),
        "never called AWS in these runs: {unexercised:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn every_api_call_the_workflows_make_is_in_the_iam_list() {
    let fleet = common::fleet("").await;
    common::group(&fleet, 900);
    fleet.sim().set_desired_capacity("web", 3).unwrap();
    fleet.run_until_idle().await.unwrap();
    common::bake(&fleet).await;
    fleet.sim().set_desired_capacity("web", 1).unwrap();
    fleet.run_until_idle().await.unwrap();
    let allowed: BTreeSet<&str> = iam::all_actions().into_iter().collect();
    for operation in fleet.sim().api_calls().keys() {
        if operation == "autoscaling:SetDesiredCapacity" {
            continue; // the test's own scaling call, not a workflow's
        }
        assert!(
            allowed.contains(operation.as_str()),
            "{operation} is not in workflows::iam"
        );
    }
}
