//! fleetprep's state machines and their task handlers.
//!
//! The four state machines live in `statemachines/*.asl.json`: `bake`, `name-on-launch`,
//! `release-on-terminate` and `rollout`. They are the files that get deployed to AWS Step
//! Functions, so they use standard ASL only: every task is `arn:aws:states:::lambda:invoke`
//! with `FunctionName` `${FleetprepFunctionArn}` (a DefinitionSubstitutions placeholder) and a
//! `Payload` of `{"action": "...", ...}`. [`definition`] loads one with the placeholders
//! substituted, for the embedded engine.
//!
//! Handlers are plain async functions of `(Request, &Context)`, each request a serde struct;
//! [`handlers::ACTIONS`] is the one table of action name, request type, handler and the Cloud
//! operations it may call, and [`dispatch`] routes a payload through it by its `action`. The Lambda function and the embedded engine call the same [`dispatch`],
//! so handlers never know where they run. Handlers only talk to AWS through
//! [`cloud::Cloud`], only read time through [`clock::Clock`], and are idempotent: client tokens
//! are derived from the execution id and state name the payload carries.
//!
//! Errors are a documented contract ([`errors`]): the state machines `Retry` and `Catch` on these
//! names, so they are tested and never renamed. [`iam`] lists the IAM actions each handler may
//! call (for least-privilege policies). [`batch::Batcher`] coalesces SSM SendCommand and describe
//! calls from many concurrent executions when they share one process (the local fleet);
//! on Lambda every invocation sends its own.
//!
//! The `localfleet` crate wires the embedded engine, the simulated fleet and [`dispatch`] the
//! way AWS wires Step Functions, Lambda and EventBridge; this crate knows neither the engine
//! nor the simulator, so the Lambda links only what runs in Lambda.
//!
//! Polling handlers (`check_*`) answer `{"done": ..}` once and never loop; deadlines come from a
//! `wait.since` timestamp the state machine carries, so handlers hold no state between calls.
//!
//! This crate deliberately does not interpret ASL (the `engine` and `asl` crates do), does not
//! print (the CLI does), and does not decide Windows policy (the `sysprep` crate does).
//!
//! ```
//! let bake = workflows::definition("bake", "arn:aws:lambda:local:0:function:fleetprep").unwrap();
//! assert!(bake.contains("arn:aws:lambda:local:0:function:fleetprep"));
//! assert!(!bake.contains("${FleetprepFunctionArn}"));
//! ```

pub mod batch;
pub mod errors;
pub mod handlers;
pub mod iam;
pub mod metrics;
pub mod remediation;
pub mod scripts;
pub mod shape;

use std::sync::Arc;

use clock::Clock;
use cloud::Cloud;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use errors::HandlerError;
/// What renames the computer in [`NamingMode::Rename`] ([`Settings::rename_method`]).
pub use sysprep::commands::RenameMethod;

/// The placeholder every task's `FunctionName` uses (a DefinitionSubstitutions key).
pub const FUNCTION_ARN_PLACEHOLDER: &str = "${FleetprepFunctionArn}";

/// The workflow names, in the order they run in the demo.
pub const WORKFLOWS: [&str; 4] = ["bake", "name-on-launch", "release-on-terminate", "rollout"];

/// The checked-in ASL text of a workflow, placeholders untouched (what gets deployed).
pub fn raw_definition(name: &str) -> Option<&'static str> {
    Some(match name {
        "bake" => include_str!("../statemachines/bake.asl.json"),
        "name-on-launch" => include_str!("../statemachines/name-on-launch.asl.json"),
        "release-on-terminate" => include_str!("../statemachines/release-on-terminate.asl.json"),
        "rollout" => include_str!("../statemachines/rollout.asl.json"),
        _ => return None,
    })
}

/// A workflow's ASL with `${FleetprepFunctionArn}` replaced by `function_arn` (what
/// DefinitionSubstitutions does on deployment).
pub fn definition(name: &str, function_arn: &str) -> Result<String, HandlerError> {
    let raw = raw_definition(name).ok_or_else(|| {
        HandlerError::new(
            errors::INVALID_INPUT,
            format!(
                "unknown workflow {name:?}; expected one of {}",
                WORKFLOWS.join(", ")
            ),
        )
    })?;
    Ok(raw.replace(FUNCTION_ARN_PLACEHOLDER, function_arn))
}

/// How instances get their names at launch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NamingMode {
    /// Rename-Computer and reboot (fast; keeps the image's SID, fine for most fleets).
    #[default]
    Rename,
    /// Generalize with an unattend ComputerName and reboot (new machine SID; slower).
    Sysprep,
}

/// Settings the handlers read that are not in the execution input (on AWS they come from the
/// Lambda's environment; locally from the CLI config).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// How a launching instance takes its leased name (rename, or Sysprep with unattend).
    pub naming_mode: NamingMode,
    /// What renames the computer when `naming_mode` is [`NamingMode::Rename`]:
    /// `rename-computer` (any launch agent), `ec2launch-set-host-name` (EC2Launch v2's
    /// `setHostName` task, kept in the agent's config so it holds the name on every boot) or
    /// `user-data` (the launch template's user data renames from the instance's tag).
    /// Ignored in [`NamingMode::Sysprep`], where the unattend file names the computer.
    pub rename_method: RenameMethod,
    /// Seconds the launch hook waits without a heartbeat (the hook's HeartbeatTimeout).
    pub hook_timeout_seconds: u64,
    /// Optional PowerShell run on terminate (e.g. leave the AD domain).
    pub cleanup_script: Option<String>,
    /// How long to wait for the SSM agent of a launched instance.
    pub ssm_timeout_seconds: u64,
    /// CloudWatch namespace for metrics.
    pub metric_namespace: String,
}

impl Settings {
    /// Whether instances rename themselves from their `fleetprep:hostname` tag
    /// ([`sysprep::userdata::HOSTNAME_TAG`]): the `user-data` rename method in the rename
    /// naming mode. The name workflow then only tags the instance and waits for the name.
    pub fn renames_from_tag(&self) -> bool {
        self.naming_mode == NamingMode::Rename && self.rename_method == RenameMethod::UserData
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            naming_mode: NamingMode::Rename,
            rename_method: RenameMethod::RenameComputer,
            hook_timeout_seconds: 900,
            cleanup_script: None,
            ssm_timeout_seconds: 1200,
            metric_namespace: "Fleetprep".into(),
        }
    }
}

/// Everything a handler may use. Cheap to clone.
#[derive(Clone)]
pub struct Context {
    /// The AWS seam: the SDK-backed cloud on Lambda, the simulated fleet locally.
    pub cloud: Arc<dyn Cloud>,
    /// Where handlers read the time (poll deadlines, heartbeats, metric timestamps).
    pub clock: Arc<dyn Clock>,
    /// Deployment settings that are not in the execution input.
    pub settings: Settings,
    /// Coalesces SendCommand and describe calls across executions sharing this process.
    pub batcher: Option<Arc<batch::Batcher>>,
    /// The task being run ([`dispatch`] sets it from the payload's envelope).
    pub task: Task,
    /// Where outcome metrics go, as EMF lines ([`metrics::EmfLog`]).
    pub emf: Arc<metrics::EmfLog>,
}

/// Which task a payload runs: the execution and state the client tokens derive from, so a
/// retried or resumed task repeats its side effects idempotently. Every Task state sends them
/// (`$$.Execution.Id`, `$$.State.Name`) next to `action`: the payload's envelope.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Task {
    /// `$$.Execution.Id`: the execution's ARN (empty when the payload has none).
    #[serde(default)]
    pub execution: String,
    /// `$$.State.Name`: the Task state's name (empty when the payload has none).
    #[serde(default)]
    pub state: String,
}

impl Context {
    /// A context on `cloud` and `clock` with default settings, no batcher and no task.
    pub fn new(cloud: Arc<dyn Cloud>, clock: Arc<dyn Clock>) -> Self {
        Self {
            cloud,
            clock,
            settings: Settings::default(),
            batcher: None,
            task: Task::default(),
            emf: Arc::new(metrics::EmfLog::counting()),
        }
    }

    /// The same context with `settings` instead of the defaults.
    pub fn with_settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// The same context with a fresh [`batch::Batcher`], so that SendCommand and
    /// DescribeInstanceInformation calls of concurrent executions are coalesced (a
    /// long-lived process running many executions).
    pub fn with_batcher(mut self) -> Self {
        self.batcher = Some(Arc::new(batch::Batcher::new()));
        self
    }
}

/// Routes `{"action": "...", ...}` to its handler. The one entry point for the Lambda and the
/// embedded engine.
pub async fn dispatch(payload: Value, context: &Context) -> Result<Value, HandlerError> {
    let invalid = |what: String| HandlerError::new(errors::INVALID_INPUT, what);
    let Value::Object(mut request) = payload else {
        return Err(invalid(format!(
            "payload must be an object {{\"action\": \"<handler>\", ...}}, got {payload}"
        )));
    };
    let name = request.remove("action");
    let name = name.as_ref().and_then(Value::as_str).ok_or_else(|| {
        invalid(
            "payload has no string field \"action\"; expected {\"action\": \"<handler>\", ...}"
                .into(),
        )
    })?;
    let action = handlers::action(name).ok_or_else(|| {
        invalid(format!(
            "unknown action {name:?}; known actions: {}",
            handlers::actions().collect::<Vec<_>>().join(", ")
        ))
    })?;
    let field = |request: &mut serde_json::Map<String, Value>, key: &str| match request.remove(key)
    {
        Some(Value::String(text)) => Ok(text),
        None | Some(Value::Null) => Ok(String::new()),
        Some(other) => Err(invalid(format!(
            "action {name:?}: payload field {key:?} must be a string, got {other}"
        ))),
    };
    let mut context = context.clone();
    context.task = Task {
        execution: field(&mut request, "execution")?,
        state: field(&mut request, "state")?,
    };
    action.call(Value::Object(request), &context).await
}

/// What a bake needs; serialised as the `bake` execution input (`{"config": ...}`). Every field
/// has a default so the input always carries every path the state machine reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BakeConfig {
    /// Image name prefix (the execution adds a unique suffix).
    pub name: String,
    /// The Windows base AMI to start from.
    pub image_id: String,
    /// The builder's EC2 instance type (default `m5.large`).
    pub instance_type: String,
    /// The subnet to launch the builder in; `None` for the default VPC's.
    pub subnet_id: Option<String>,
    /// Security groups of the builder; empty for the VPC's default group.
    pub security_group_ids: Vec<String>,
    /// Instance profile with AmazonSSMManagedInstanceCore.
    pub instance_profile: Option<String>,
    /// PowerShell scripts run in order before pre-flight.
    pub customization_scripts: Vec<String>,
    /// Secrets the scripts read on the instance; checked to exist, never read here.
    pub secrets: Vec<cloud::SecretRef>,
    /// Tags for the finished image.
    pub tags: std::collections::BTreeMap<String, String>,
    /// Seconds to wait for the builder's SSM agent to come online (default 1200).
    pub ssm_timeout_seconds: u64,
    /// Seconds to wait for the builder to stop after Sysprep (default 3600).
    pub stop_timeout_seconds: u64,
    /// Seconds in `stopping` after which the builder is force-stopped (default 1500).
    pub force_stop_after_seconds: u64,
    /// Seconds to wait for the AMI to become `available` (default 3600).
    pub image_timeout_seconds: u64,
    /// Install Windows updates before pre-flight, through the SSM document AWS uses for it
    /// (AWS-InstallWindowsUpdates, as AWS-UpdateWindowsAmi does), rebooting as they need.
    pub windows_updates: bool,
    /// `[bake.remediation]`: which fixes the self-healing bake may apply, and how often.
    pub remediation: remediation::RemediationSettings,
}

impl Default for BakeConfig {
    fn default() -> Self {
        Self {
            name: "fleetprep-golden".into(),
            image_id: String::new(),
            instance_type: "m5.large".into(),
            subnet_id: None,
            security_group_ids: Vec::new(),
            instance_profile: None,
            customization_scripts: Vec::new(),
            secrets: Vec::new(),
            tags: std::collections::BTreeMap::new(),
            ssm_timeout_seconds: 1200,
            stop_timeout_seconds: 3600,
            force_stop_after_seconds: 1500,
            image_timeout_seconds: 3600,
            windows_updates: false,
            remediation: remediation::RemediationSettings::default(),
        }
    }
}

impl BakeConfig {
    /// The `bake` execution input.
    pub fn input(&self) -> Value {
        serde_json::json!({ "config": self })
    }
}

/// What a rollout needs; serialised as the `rollout` execution input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RolloutConfig {
    /// The Auto Scaling group to refresh.
    pub group: String,
    /// The group's launch template (`lt-...`), which gets a version with the new AMI.
    pub launch_template_id: String,
    /// The AMI to roll out (`ami-...`).
    pub image_id: String,
    /// Percentage of capacity that must stay healthy during the refresh (default 90).
    pub min_healthy_percentage: u32,
    /// Seconds a new instance warms up before counting as healthy (default 300).
    pub instance_warmup_seconds: u32,
    /// Percentages of replaced instances at which the refresh pauses (default none).
    pub checkpoint_percentages: Vec<u32>,
    /// Seconds before the rollout gives up waiting for the refresh (default 6 hours).
    pub timeout_seconds: u64,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        Self {
            group: String::new(),
            launch_template_id: String::new(),
            image_id: String::new(),
            min_healthy_percentage: 90,
            instance_warmup_seconds: 300,
            checkpoint_percentages: Vec::new(),
            timeout_seconds: 6 * 3600,
        }
    }
}

impl RolloutConfig {
    /// The `rollout` execution input.
    pub fn input(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}
