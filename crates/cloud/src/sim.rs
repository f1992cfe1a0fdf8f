//! The simulated fleet: EC2, SSM, Auto Scaling and CloudWatch on a [`Clock`].
//!
//! [`SimCloud`] implements [`Cloud`] the way AWS behaves, on virtual time:
//!
//! - instances go `pending` → `running` in tens of seconds; the SSM agent comes online minutes
//!   later; Windows identity (computer name, machine SID) is tracked, the SID changes after a
//!   generalize;
//! - SSM commands are understood by what the PowerShell does (Sysprep, Rename-Computer,
//!   EC2Launch v2 `setHostName` (its rename takes effect after the SSM restart and the agent's
//!   own reboot); the `sysprep` crate's pre-flight / identity / agent-detection scripts by the
//!   output markers they print; anything else succeeds), and every accepted SendCommand is kept
//!   for inspection ([`SimCloud::sent_commands`]): a Sysprep run takes 8-20 minutes then shuts the instance down, and its command invocation is
//!   cut off (stays `InProgress`) as on a real instance;
//! - CreateImage takes 10-30 minutes; Auto Scaling groups launch instances behind lifecycle
//!   hooks and queue [`LifecycleEvent`]s that the driver turns into `name-on-launch` /
//!   `release-on-terminate` executions; instance refreshes replace instances batch by batch;
//! - the EC2 API is throttled by token buckets (`RequestLimitExceeded`), refilled on the clock.
//!
//! Everything random is a hash of the scenario seed and a stable key (the instance id, the
//! command id), so a run is deterministic whatever order concurrent calls arrive in. Time-driven
//! changes are queued as events and applied lazily whenever the simulation is touched at a later
//! time; nothing runs in the background.
//!
//! Faults come from a TOML [`Scenario`] (see [`FaultKind`] for the kinds). The simulator
//! does not run any workflow itself: that is the engine's job. It also keeps API-call counters
//! per operation ([`SimCloud::api_calls`]) so the scale benchmark can report them.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use clock::Clock;
use names::NamePool;
use serde::{Deserialize, Serialize};

use crate::*;

mod quotas;

/// Tokens per second of the simulated Auto Scaling bucket (our choice: AWS publishes none; see
/// `quotas`): the pace at which a scale-out's lifecycle actions complete once it is throttled.
pub const AUTO_SCALING_REQUESTS_PER_SECOND: f64 = quotas::AUTO_SCALING_PER_SECOND;

// ==================================================================== scenario

/// A fault to inject (the issue-4 list).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// The SSM agent never comes online on the target instances.
    SsmNeverOnline,
    /// An AppX package is installed for a user but not provisioned: pre-flight reports it and
    /// Sysprep's AppX provider fails on it. Removing it for all users fixes it, unless
    /// `recurs = true` (it comes back, as a Store app that reinstalls itself).
    PreflightAppxBlocker,
    /// A reboot is pending (Component Based Servicing) until the builder reboots.
    PendingReboot,
    /// BitLocker protects the OS volume until it is turned off and decrypted
    /// (`duration_seconds`, default 1800).
    BitlockerEnabled,
    /// Sysprep fails validation ("Sysprep was not able to validate your Windows installation").
    SysprepValidationFailure,
    /// The instance is terminated (by someone else) while Sysprep runs.
    TerminatedMidSysprep,
    /// After Sysprep the instance stays in `stopping` until force-stopped.
    StuckStopping,
    /// Every EC2 call is throttled (`RequestLimitExceeded`) for `duration_seconds`.
    ThrottleStorm,
    /// CreateImage ends in state `failed` (`Client.InternalError`); with `times = N` only the
    /// first N images fail, a transient failure.
    CreateImageFails,
    /// CreateImage never leaves `pending`.
    ImageStuckPending,
    /// The named handler action never returns (the Task's TimeoutSeconds must fire). The
    /// simulator only records it; the workflow dispatcher honours it.
    HandlerTimeout,
    /// Lifecycle heartbeats are lost and the hook's timeout is `heartbeat_timeout_seconds`.
    LifecycleHeartbeatTimeout,
    /// The hostname pool is (nearly) exhausted: the driver builds a pool with a one-digit
    /// sequence (`{prefix}-{seq:1}`), so the tenth launch finds no free name.
    NamePoolExhausted,
    /// Another writer holds `preallocated` names of the pool before the fleet launches, so
    /// allocations race with it.
    ConcurrentAllocationConflict,
}

/// Which instances a fault hits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultTarget {
    /// Every instance.
    #[default]
    All,
    /// Only instances launched by RunInstances (image builders).
    Builder,
    /// Only instances launched by an Auto Scaling group.
    Group,
}

/// One injected fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// What goes wrong.
    pub kind: FaultKind,
    /// Which instances it hits (default all).
    #[serde(default)]
    pub target: FaultTarget,
    /// ThrottleStorm: how long the storm lasts from the start of the run.
    #[serde(default)]
    pub duration_seconds: Option<u64>,
    /// HandlerTimeout: the handler action that hangs, e.g. `check_ssm_online`.
    #[serde(default)]
    pub action: Option<String>,
    /// LifecycleHeartbeatTimeout: the hook timeout.
    #[serde(default)]
    pub heartbeat_timeout_seconds: Option<u64>,
    /// ConcurrentAllocationConflict: names held by another writer.
    #[serde(default)]
    pub preallocated: Option<u64>,
    /// PreflightAppxBlocker: the blocker comes back after every removal.
    #[serde(default)]
    pub recurs: bool,
    /// CreateImageFails: how many images fail before one succeeds (default: all).
    #[serde(default)]
    pub times: Option<u32>,
}

/// A scenario file: a seed and faults.
///
/// ```toml
/// seed = 42
/// [[fault]]
/// kind = "sysprep-validation-failure"
/// target = "builder"
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Seeds every random draw (timings, machine SIDs), so a run with the same seed and faults
    /// repeats exactly.
    #[serde(default)]
    pub seed: u64,
    /// The `[[fault]]` tables, in file order (the first matching one applies).
    #[serde(default, rename = "fault")]
    pub faults: Vec<Fault>,
    /// What should happen under these faults (the scenario tests check it; the simulator
    /// ignores it).
    #[serde(default)]
    pub expect: Option<Expect>,
}

/// The terminal state a scenario file promises, checked by the tests that run every file in
/// `examples/scenarios/`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `bake` (through `fleetprep bake`) or `fleet` (through `fleetprep fleet simulate`).
    pub run: String,
    /// The execution's terminal status: `SUCCEEDED` or `FAILED`.
    pub status: String,
    /// The failure category (a failed bake's Fail error).
    #[serde(default)]
    pub category: Option<String>,
    /// The remedy the self-healing bake applied, and how many rounds it took.
    #[serde(default)]
    pub remedy: Option<String>,
    /// How many remediation rounds the self-healing bake ran.
    #[serde(default)]
    pub remediation_rounds: Option<u32>,
    /// Fleet runs: how many instances are launched.
    #[serde(default)]
    pub instances: Option<u32>,
    /// Fleet runs: how many instances end in service.
    #[serde(default)]
    pub in_service: Option<u32>,
}

/// A scenario file that could not be read, with its location.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct ScenarioError {
    /// The file name, with `:LINE` when the TOML parser located the problem.
    pub origin: String,
    /// What is wrong and, where it can, how to fix it.
    pub message: String,
}

impl Scenario {
    /// Parses scenario TOML; errors name the origin (file name), line and key.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ScenarioError> {
        let scenario: Self = toml::from_str(text).map_err(|error| {
            let location = error
                .span()
                .map(|span| {
                    let line = text[..span.start.min(text.len())].lines().count().max(1);
                    format!(":{line}")
                })
                .unwrap_or_default();
            ScenarioError {
                origin: format!("{origin}{location}"),
                message: error.message().trim().to_string(),
            }
        })?;
        for (index, fault) in scenario.faults.iter().enumerate() {
            if fault.kind == FaultKind::HandlerTimeout && fault.action.is_none() {
                return Err(ScenarioError {
                    origin: origin.to_string(),
                    message: format!(
                        "fault[{index}] (handler-timeout) needs key \"action\": the handler \
                         action that hangs, e.g. action = \"check_image\""
                    ),
                });
            }
        }
        Ok(scenario)
    }

    /// The first fault of `kind` that hits an instance launched the given way.
    pub fn fault(&self, kind: FaultKind, from_group: bool) -> Option<&Fault> {
        self.faults.iter().find(|fault| {
            fault.kind == kind
                && match fault.target {
                    FaultTarget::All => true,
                    FaultTarget::Builder => !from_group,
                    FaultTarget::Group => from_group,
                }
        })
    }

    /// The first fault of `kind` regardless of target.
    pub fn any(&self, kind: FaultKind) -> Option<&Fault> {
        self.faults.iter().find(|fault| fault.kind == kind)
    }
}

// ==================================================================== timings

/// Realistic durations (seconds) as ranges; one value per instance is drawn from the seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timings {
    /// From launch (or start) to `running`.
    pub pending_to_running: (u64, u64),
    /// From `running` until the SSM agent is `Online` (Windows boot and agent start).
    pub ssm_online_after_running: (u64, u64),
    /// How long Sysprep generalizes before the instance shuts down.
    pub sysprep: (u64, u64),
    /// From `stopping` to `stopped`.
    pub stopping: (u64, u64),
    /// From CreateImage until the AMI is `available`.
    pub create_image: (u64, u64),
    /// How long an SSM command script runs.
    pub command: (u64, u64),
    /// A Windows reboot, until the SSM agent is back online.
    pub reboot: (u64, u64),
    /// From `shutting-down` to `terminated`.
    pub shutting_down: (u64, u64),
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            pending_to_running: (20, 60),
            ssm_online_after_running: (120, 300),
            sysprep: (8 * 60, 20 * 60),
            stopping: (20, 60),
            create_image: (10 * 60, 30 * 60),
            command: (5, 30),
            reboot: (60, 150),
            shutting_down: (30, 90),
        }
    }
}

// ==================================================================== public sim-only types

/// What an Auto Scaling lifecycle hook announces (the EventBridge "EC2 Instance-launch
/// Lifecycle Action" / "EC2 Instance-terminate Lifecycle Action" detail).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleEvent {
    /// `autoscaling:EC2_INSTANCE_LAUNCHING` or `autoscaling:EC2_INSTANCE_TERMINATING`.
    pub lifecycle_transition: String,
    /// The group the instance belongs to.
    pub auto_scaling_group_name: String,
    /// The hook that holds the instance.
    pub lifecycle_hook_name: String,
    /// Identifies this lifecycle action to CompleteLifecycleAction.
    pub lifecycle_action_token: String,
    /// The instance launching or terminating (`i-...`).
    pub instance_id: String,
    /// When the group put the instance in the wait state (the event's `time`).
    pub time: SystemTime,
}

impl LifecycleEvent {
    /// The transition of a hook on launch (the instance waits in `Pending:Wait`).
    pub const LAUNCHING: &'static str = "autoscaling:EC2_INSTANCE_LAUNCHING";
    /// The transition of a hook on termination (the instance waits in `Terminating:Wait`).
    pub const TERMINATING: &'static str = "autoscaling:EC2_INSTANCE_TERMINATING";

    /// The EventBridge event `detail` object, shaped as AWS sends it.
    pub fn detail(&self) -> serde_json::Value {
        serde_json::json!({
            "LifecycleActionToken": self.lifecycle_action_token,
            "AutoScalingGroupName": self.auto_scaling_group_name,
            "LifecycleHookName": self.lifecycle_hook_name,
            "EC2InstanceId": self.instance_id,
            "LifecycleTransition": self.lifecycle_transition,
        })
    }
}

/// An Auto Scaling group definition for the simulator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSpec {
    /// The group's name.
    pub name: String,
    /// The launch template (`lt-...`) the group launches from.
    pub launch_template_id: String,
    /// The EC2 instance type of its instances.
    pub instance_type: String,
    /// Launch hook timeout (HeartbeatTimeout), seconds.
    pub launch_hook_timeout_seconds: u64,
    /// Terminate hook timeout, seconds.
    pub terminate_hook_timeout_seconds: u64,
}

/// One Windows instance's identity, as the sim sees it (for checks and the demo summary).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimInstanceView {
    /// The instance ID (`i-...`).
    pub instance_id: String,
    /// The EC2 instance state.
    pub state: InstanceState,
    /// The Auto Scaling group it belongs to; `None` for builders.
    pub group: Option<String>,
    /// `Pending:Wait`, `InService`, `Terminating:Wait`, ...
    pub lifecycle_state: Option<String>,
    /// The Windows computer name (NetBIOS) it currently has.
    pub computer_name: String,
    /// The Windows machine SID; Sysprep generalize gives a new one.
    pub machine_sid: String,
    /// The AMI it was launched from.
    pub image_id: String,
}

/// A SendCommand the sim accepted, as sent (for tests and the CLI to inspect what ran).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentCommand {
    /// The command ID SendCommand returned.
    pub command_id: String,
    /// The instances it was sent to (at most 50).
    pub instance_ids: Vec<String>,
    /// The SSM document it ran.
    pub document_name: String,
    /// The `commands` parameter, one entry per line as sent.
    pub commands: Vec<String>,
    /// SendCommand's `Comment`.
    pub comment: Option<String>,
}

/// Things the sim found still running or half-made (nothing should be after a workflow ends).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leftovers {
    /// Builder instances (not in a group) that are not terminated.
    pub builder_instances: Vec<String>,
    /// Images still `pending` or `failed` and not deregistered.
    pub half_made_images: Vec<String>,
    /// Group instances waiting on a lifecycle hook.
    pub waiting_on_hooks: Vec<String>,
}

impl Leftovers {
    /// True when nothing is left over: the workflow cleaned up after itself.
    pub fn is_empty(&self) -> bool {
        self.builder_instances.is_empty()
            && self.half_made_images.is_empty()
            && self.waiting_on_hooks.is_empty()
    }
}

// ==================================================================== the simulator

/// The simulated fleet. Cheap to share as `Arc<SimCloud>`.
pub struct SimCloud {
    clock: Arc<dyn Clock>,
    pool: Arc<dyn NamePool>,
    scenario: Scenario,
    timings: Timings,
    world: Mutex<World>,
    started_at: SystemTime,
}

impl std::fmt::Debug for SimCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimCloud")
            .field("scenario", &self.scenario)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct World {
    next_seq: u64,
    events: BinaryHeap<Reverse<(SystemTime, u64, Event)>>,
    instances: BTreeMap<String, SimInstance>,
    run_tokens: HashMap<String, Vec<String>>,
    commands: HashMap<(String, String), SimInvocation>,
    command_seq: u64,
    images: BTreeMap<String, SimImage>,
    image_tokens: HashMap<String, String>,
    templates: BTreeMap<String, SimTemplate>,
    template_tokens: HashMap<String, i64>,
    groups: BTreeMap<String, SimGroup>,
    refreshes: BTreeMap<String, SimRefresh>,
    lifecycle_queue: Vec<LifecycleEvent>,
    secrets: BTreeMap<String, SecretMetadata>,
    calls: BTreeMap<String, u64>,
    throttled: BTreeMap<String, u64>,
    buckets: HashMap<&'static str, quotas::Bucket>,
    sent: Vec<SentCommand>,
    failed_images: u64,
    // Command id -> the instances it targets (ListCommandInvocations without a scan).
    command_targets: HashMap<String, Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Running(String),
    SsmOnline(String),
    CommandDone(String, String),
    Stopped(String),
    Terminated(String),
    RebootUp(String),
    ImageDone(String),
    HookTimeout(String, u64),
    OutOfBandTerminate(String),
    RefreshStep(String),
    /// The launch template's user data looks for the instance's `fleetprep:hostname` tag
    /// (at boot, and on its next retry after a tag is added).
    TagPoll(String),
}

struct SimInstance {
    id: String,
    image_id: String,
    instance_type: String,
    state: InstanceState,
    state_reason: Option<String>,
    launch_time: SystemTime,
    tags: Vec<Tag>,
    from_group: Option<String>,
    lifecycle_state: Option<String>,
    hook_token: Option<String>,
    // Bumped by every heartbeat: a HookTimeout event only fires for the current generation.
    hook_gen: u64,
    ssm_online: bool,
    ever_online: bool,
    computer_name: String,
    pending_name: Option<String>,
    // The command the SSM agent re-runs after the reboot it is rebooting for (exit 3010).
    rerun_command: Option<String>,
    machine_sid: String,
    generalized: bool,
    sysprep_running: bool,
    // `HKLM\...\Setup\State\ImageState`.
    image_state: sysprep::agent::ImageState,
    // Panther logs on the instance's disk: (path, content), as Sysprep leaves them.
    panther: Vec<(String, String)>,
    // What pre-flight and Sysprep find on this instance (from the scenario's faults).
    appx_blocker: bool,
    reboot_pending: bool,
    // BitLocker on the OS volume: None when off; Some(None) until turned off, then the
    // time decryption finishes.
    bitlocker: Option<Option<SystemTime>>,
    console: String,
    generation: u64,
    // The launch agent's administrator password setting as fleetprep's bake left it
    // (`sysprep::commands::agent_password_script`): None until that script runs. Images
    // capture it and instances launched from them inherit it.
    admin_password: Option<String>,
    // The launch template's user data renames the instance from its `fleetprep:hostname`
    // tag (`sysprep::userdata::rename_from_tag_script`).
    renames_from_tag: bool,
    // `MetadataOptions.InstanceMetadataTags` of the launch template: without it the tag is
    // not visible to the instance ("Work with instance tags in instance metadata").
    metadata_tags: bool,
    // When the current boot finished (the user data's tag wait counts from it).
    booted_at: Option<SystemTime>,
}

/// What the launch template gives instances besides the image (sim-only: the trait's
/// template calls only change the image).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LaunchTemplateData {
    /// The user data (`fleetprep userdata render`).
    pub user_data: Option<String>,
    /// `MetadataOptions.InstanceMetadataTags: enabled`.
    pub instance_metadata_tags: bool,
}

struct SimInvocation {
    status: CommandStatus,
    details: String,
    code: i32,
    stdout: String,
    stderr: String,
    effect: Effect,
    visible_at: SystemTime,
}

impl SimInvocation {
    /// As GetCommandInvocation shows it: output only once the invocation has finished.
    fn view(&self, command_id: &str, instance_id: &str) -> CommandInvocation {
        CommandInvocation {
            command_id: command_id.to_string(),
            instance_id: instance_id.to_string(),
            status: self.status,
            status_details: self.details.clone(),
            response_code: self.code,
            stdout: if self.status.is_terminal() {
                self.stdout.clone()
            } else {
                String::new()
            },
            stderr: self.stderr.clone(),
        }
    }

    /// As ListCommandInvocations with Details shows it: the plugin's `Output` is standard
    /// output, then the agent's error line and standard error, cut to
    /// [`LIST_COMMAND_OUTPUT_MAX_CHARS`] characters.
    fn listed(&self, command_id: &str, instance_id: &str) -> CommandInvocation {
        let mut view = self.view(command_id, instance_id);
        let mut output = std::mem::take(&mut view.stdout);
        if !view.stderr.is_empty() {
            output.push_str(&format!("\n{PLUGIN_OUTPUT_ERROR_LINE}\n{}", view.stderr));
        }
        view.stdout = output.chars().take(LIST_COMMAND_OUTPUT_MAX_CHARS).collect();
        view.stderr = String::new();
        view
    }
}

#[derive(Clone, Debug)]
enum Effect {
    None,
    /// A rename script whose restart (exit 3010) applies the name.
    Rename(String, RenameBy),
    /// The script runs again after the reboot its exit code 3010 asked for.
    Rerun,
    /// `sysprep::remedy::reboot_script`: exits 3010 once, then reports on the rerun.
    RebootRemedy,
    /// The reboot remedy's second run, after the reboot.
    RebootRemedyDone,
    Sysprep {
        after: SysprepAfter,
        name: Option<String>,
    },
    /// Sysprep fails validation; `attached` when the command waits for it (the no-shutdown
    /// form), so the command itself reports the failure and the builder keeps running.
    SysprepFails {
        attached: bool,
        exit_code: i32,
        panther: &'static str,
    },
}

/// What Windows does when Sysprep finishes, as the command asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SysprepAfter {
    Shutdown,
    Reboot,
    /// The no-shutdown form: the command returns when Sysprep is done, the instance stays up.
    Quit,
}

/// What a rename script uses, which decides how many reboots the name takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RenameBy {
    /// `Rename-Computer`: the name applies at the restart SSM performs for exit 3010.
    RenameComputer,
    /// EC2Launch v2 `setHostName`: the restart SSM performs starts the agent, whose
    /// `postReady` task renames and reboots once more before SSM comes back.
    Ec2LaunchSetHostName,
}

struct SimImage {
    image: Image,
    fails: bool,
    // The builder's administrator password setting when the image was created.
    admin_password: Option<String>,
}

struct SimTemplate {
    versions: Vec<LaunchTemplateVersion>,
    default_version: i64,
    data: LaunchTemplateData,
}

struct SimGroup {
    spec: GroupSpec,
    template_version: String,
}

struct SimRefresh {
    refresh: InstanceRefresh,
    request: StartInstanceRefreshRequest,
    old_instances: Vec<String>,
    replaced: usize,
    batch: Vec<String>,
}

const WINDOWS_AMI: &str = "ami-0windows2022base";

impl SimCloud {
    /// A simulated account with one Windows base image and one launch template (`lt-fleet`,
    /// version 1, default) ready for groups.
    pub fn new(clock: Arc<dyn Clock>, pool: Arc<dyn NamePool>, scenario: Scenario) -> Self {
        let now = clock.now();
        let mut world = World::default();
        world.images.insert(
            WINDOWS_AMI.to_string(),
            SimImage {
                image: Image {
                    image_id: WINDOWS_AMI.to_string(),
                    name: "Windows_Server-2022-English-Full-Base".into(),
                    state: ImageState::Available,
                    state_reason: None,
                    source_instance_id: None,
                    creation_date: now,
                    tags: vec![],
                },
                fails: false,
                admin_password: None,
            },
        );
        world.templates.insert(
            "lt-fleet".into(),
            SimTemplate {
                versions: vec![LaunchTemplateVersion {
                    launch_template_id: "lt-fleet".into(),
                    version_number: 1,
                    image_id: WINDOWS_AMI.into(),
                    default_version: true,
                }],
                default_version: 1,
                data: LaunchTemplateData::default(),
            },
        );
        for (key, arn) in [
            (
                "secretsmanager:fleetprep/domain-join",
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:fleetprep/domain-join-AbCdEf",
            ),
            (
                "ssm:/fleetprep/local-admin",
                "arn:aws:ssm:us-east-1:123456789012:parameter/fleetprep/local-admin",
            ),
        ] {
            let reference = if let Some(id) = key.strip_prefix("secretsmanager:") {
                SecretRef::SecretsManager {
                    secret_id: id.into(),
                }
            } else {
                SecretRef::SsmParameter {
                    name: key.trim_start_matches("ssm:").into(),
                }
            };
            world.secrets.insert(
                key.to_string(),
                SecretMetadata {
                    reference,
                    arn: arn.into(),
                    last_changed: Some(now),
                },
            );
        }
        Self {
            clock,
            pool,
            scenario,
            timings: Timings::default(),
            world: Mutex::new(world),
            started_at: now,
        }
    }

    /// Overrides the default timings.
    pub fn with_timings(mut self, timings: Timings) -> Self {
        self.timings = timings;
        self
    }

    /// The fault scenario the fleet runs under.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// The clock the fleet's timings run on (a virtual clock in tests and demos).
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The Windows base image id every builder starts from.
    pub fn base_image_id(&self) -> &'static str {
        WINDOWS_AMI
    }

    fn lock(&self) -> MutexGuard<'_, World> {
        // A poisoned lock means a panic elsewhere already failed the run; keep the data.
        let mut world = self.world.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.now();
        self.settle(&mut world, now);
        world
    }

    fn draw(&self, key: &str, range: (u64, u64)) -> Duration {
        let (low, high) = range;
        let span = high.saturating_sub(low) + 1;
        Duration::from_secs(low + mix(self.scenario.seed, key) % span)
    }

    fn schedule(world: &mut World, at: SystemTime, event: Event) {
        world.next_seq += 1;
        let seq = world.next_seq;
        world.events.push(Reverse((at, seq, event)));
    }

    /// Applies every queued event due at or before `now`.
    fn settle(&self, world: &mut World, now: SystemTime) {
        while let Some(Reverse((at, _, _))) = world.events.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, _, event))) = world.events.pop() else {
                break;
            };
            self.apply(world, at, event);
        }
    }

    /// Forces pending time-driven changes to apply (the driver calls this between steps).
    pub fn tick(&self) {
        drop(self.lock());
    }

    /// The earliest time at which the simulation will change by itself, if any.
    pub fn next_event_at(&self) -> Option<SystemTime> {
        let world = self.lock();
        world.events.peek().map(|Reverse((at, _, _))| *at)
    }

    fn apply(&self, world: &mut World, at: SystemTime, event: Event) {
        match event {
            Event::Running(id) => {
                if let Some(instance) = world.instances.get_mut(&id)
                    && instance.state == InstanceState::Pending
                {
                    instance.state = InstanceState::Running;
                    instance.booted_at = Some(at);
                    let renames_from_tag = instance.renames_from_tag;
                    // What a healthy EC2Launch v2 boot prints ("Troubleshoot EC2Launch v2",
                    // sample console log output): UNDEPLOYABLE while Windows is configured.
                    instance.console.push_str(&format!(
                        "{}: Windows is being configured. SysprepState=IMAGE_STATE_UNDEPLOYABLE\n{}: Message: Windows is Ready to use\n",
                        console_time(at),
                        console_time(at)
                    ));
                    let never_online = self
                        .scenario
                        .fault(FaultKind::SsmNeverOnline, instance.from_group.is_some())
                        .is_some();
                    if renames_from_tag {
                        // The agent runs the user data once Windows is up.
                        let delay = self.draw(&format!("userdata/{id}"), (30, 90));
                        Self::schedule(world, at + delay, Event::TagPoll(id.clone()));
                    }
                    if !never_online {
                        let delay =
                            self.draw(&format!("ssm/{id}"), self.timings.ssm_online_after_running);
                        Self::schedule(world, at + delay, Event::SsmOnline(id));
                    }
                }
            }
            Event::SsmOnline(id) => {
                if let Some(instance) = world.instances.get_mut(&id)
                    && instance.state == InstanceState::Running
                {
                    instance.ssm_online = true;
                    instance.ever_online = true;
                }
            }
            Event::CommandDone(command_id, instance_id) => {
                let key = (command_id.clone(), instance_id.clone());
                // An instance that went away mid-command never reports: its invocation stays
                // in progress until SSM times it out.
                let gone = world
                    .instances
                    .get(&instance_id)
                    .is_none_or(|i| i.state != InstanceState::Running);
                let effect = match world.commands.get_mut(&key) {
                    Some(invocation) if !invocation.status.is_terminal() && !gone => {
                        let effect = invocation.effect.clone();
                        match effect {
                            Effect::SysprepFails {
                                attached: false, ..
                            } => {
                                // Detached (Start-Process), the command reported success long
                                // before Sysprep failed: only the Panther logs and the running
                                // builder tell.
                                invocation.status = CommandStatus::Success;
                                invocation.details = "Success".into();
                                invocation.code = 0;
                            }
                            Effect::SysprepFails {
                                attached: true,
                                exit_code,
                                ..
                            } => {
                                // The command sees the failure; the evidence is in Panther.
                                let (status, details) = if exit_code == 0 {
                                    (CommandStatus::Success, "Success")
                                } else {
                                    (CommandStatus::Failed, "Failed")
                                };
                                invocation.status = status;
                                invocation.details = details.into();
                                invocation.code = exit_code;
                                if exit_code != 0 {
                                    invocation.stderr = format!(
                                        "sysprep failed with exit code {exit_code}; see the Panther logs"
                                    );
                                }
                            }
                            Effect::Sysprep {
                                after: SysprepAfter::Quit,
                                ..
                            } => {
                                invocation.status = CommandStatus::Success;
                                invocation.details = "Success".into();
                                invocation.code = 0;
                            }
                            Effect::Sysprep { .. } => {
                                // Cut off by the shutdown: the agent never reports completion.
                            }
                            Effect::Rename(..) | Effect::RebootRemedy => {
                                // Decided below, once the instance's state is known.
                            }
                            _ => {
                                invocation.status = CommandStatus::Success;
                                invocation.details = "Success".into();
                                invocation.code = 0;
                            }
                        }
                        effect
                    }
                    _ => Effect::None,
                };
                let Some(instance) = world.instances.get_mut(&instance_id) else {
                    return;
                };
                match effect {
                    Effect::Rename(name, by)
                        if sysprep::hostname::key(&instance.computer_name)
                            != sysprep::hostname::key(&name) =>
                    {
                        // The name takes effect at the restart the script asks for (exit
                        // 3010); the agent then runs the script again, which finds the name
                        // set and prints the identity.
                        instance.pending_name = Some(name);
                        instance.ssm_online = false;
                        instance.rerun_command = Some(command_id.clone());
                        let mut delay = self.draw(
                            &format!("reboot/{command_id}/{instance_id}"),
                            self.timings.reboot,
                        );
                        if by == RenameBy::Ec2LaunchSetHostName {
                            // EC2Launch v2 renames in postReady and reboots a second time
                            // before startSsm, so SSM is back only after both boots.
                            delay += self.draw(
                                &format!("agent-reboot/{command_id}/{instance_id}"),
                                self.timings.reboot,
                            );
                        }
                        Self::schedule(world, at + delay, Event::RebootUp(instance_id));
                    }
                    Effect::Rename(..) | Effect::Rerun => {
                        // Already named: the script prints the identity and exits 0.
                        let stdout = identity_json(instance);
                        if let Some(invocation) = world.commands.get_mut(&key) {
                            invocation.status = CommandStatus::Success;
                            invocation.details = "Success".into();
                            invocation.code = 0;
                            invocation.stdout = stdout;
                        }
                    }
                    Effect::SysprepFails { panther, .. } => {
                        // A failed Sysprep leaves Windows running with its Panther logs
                        // ("Troubleshoot Sysprep with Amazon EC2 Windows instances").
                        instance.sysprep_running = false;
                        instance.panther = panther_logs(at, panther);
                    }
                    Effect::RebootRemedy => {
                        // exit 3010: SSM reboots the instance and runs the script again
                        // ("Handling reboots when running commands").
                        instance.ssm_online = false;
                        instance.rerun_command = Some(command_id.clone());
                        let delay = self.draw(
                            &format!("reboot/{command_id}/{instance_id}"),
                            self.timings.reboot,
                        );
                        Self::schedule(world, at + delay, Event::RebootUp(instance_id));
                    }
                    Effect::RebootRemedyDone => {
                        if let Some(invocation) = world.commands.get_mut(&key) {
                            invocation.status = CommandStatus::Success;
                            invocation.details = "Success".into();
                            invocation.code = 0;
                            invocation.stdout = format!(
                                "{}{}",
                                sysprep::remedy::REMEDY_MARKER,
                                serde_json::json!({"remedy": "reboot", "done": true})
                            );
                        }
                    }
                    Effect::Sysprep { after, name } => {
                        instance.sysprep_running = false;
                        instance.generalized = true;
                        instance.image_state = sysprep::agent::ImageState::GeneralizeResealToOobe;
                        instance.panther = panther_logs(at, PANTHER_GENERALIZED);
                        instance.machine_sid =
                            sid(self.scenario.seed, &format!("{instance_id}/{command_id}"));
                        match after {
                            SysprepAfter::Quit => {}
                            SysprepAfter::Reboot => {
                                instance.ssm_online = false;
                                instance.console.push_str(&format!(
                                    "{}: Windows sysprep configuration complete.\n",
                                    console_time(at)
                                ));
                                instance.pending_name = Some(name.unwrap_or_else(|| {
                                    format!(
                                        "WIN-{}",
                                        &sid_hex(self.scenario.seed, &instance_id)[..11]
                                    )
                                }));
                                let delay = self.draw(&format!("oobe/{instance_id}"), (180, 420));
                                Self::schedule(world, at + delay, Event::RebootUp(instance_id));
                            }
                            SysprepAfter::Shutdown => {
                                instance.ssm_online = false;
                                instance.state = InstanceState::Stopping;
                                instance.state_reason =
                                    Some("Client.InstanceInitiatedShutdown".into());
                                let stuck = self
                                    .scenario
                                    .fault(FaultKind::StuckStopping, instance.from_group.is_some())
                                    .is_some();
                                if !stuck {
                                    let delay = self.draw(
                                        &format!("stop/{instance_id}"),
                                        self.timings.stopping,
                                    );
                                    Self::schedule(world, at + delay, Event::Stopped(instance_id));
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            Event::Stopped(id) => {
                if let Some(instance) = world.instances.get_mut(&id)
                    && instance.state == InstanceState::Stopping
                {
                    instance.state = InstanceState::Stopped;
                }
            }
            Event::Terminated(id) => {
                if let Some(instance) = world.instances.get_mut(&id)
                    && instance.state == InstanceState::ShuttingDown
                {
                    instance.state = InstanceState::Terminated;
                    instance.lifecycle_state =
                        instance.from_group.as_ref().map(|_| "Terminated".into());
                }
            }
            Event::RebootUp(id) => {
                if let Some(instance) = world.instances.get_mut(&id)
                    && instance.state == InstanceState::Running
                {
                    if let Some(name) = instance.pending_name.take() {
                        instance.computer_name = name;
                    }
                    instance.booted_at = Some(at);
                    // Any reboot completes pending servicing.
                    instance.reboot_pending = false;
                    let rerun = instance.rerun_command.take();
                    if self
                        .scenario
                        .fault(FaultKind::SsmNeverOnline, instance.from_group.is_some())
                        .is_none()
                    {
                        instance.ssm_online = true;
                    }
                    if let Some(command_id) = rerun {
                        if let Some(invocation) =
                            world.commands.get_mut(&(command_id.clone(), id.clone()))
                        {
                            invocation.effect = match invocation.effect {
                                Effect::RebootRemedy => Effect::RebootRemedyDone,
                                _ => Effect::Rerun,
                            };
                        }
                        let delay =
                            self.draw(&format!("rerun/{command_id}/{id}"), self.timings.command);
                        Self::schedule(world, at + delay, Event::CommandDone(command_id, id));
                    }
                }
            }
            Event::ImageDone(image_id) => {
                if let Some(image) = world.images.get_mut(&image_id)
                    && image.image.state == ImageState::Pending
                {
                    if image.fails {
                        image.image.state = ImageState::Failed;
                        image.image.state_reason =
                            Some("Client.InternalError: snapshot creation failed".into());
                    } else {
                        image.image.state = ImageState::Available;
                    }
                }
            }
            Event::OutOfBandTerminate(id) => self.begin_terminate(world, at, &id, false),
            Event::HookTimeout(id, generation) => {
                let Some(instance) = world.instances.get_mut(&id) else {
                    return;
                };
                if instance.hook_token.is_none() || instance.hook_gen != generation {
                    return;
                }
                instance.hook_token = None;
                // Both hooks default to ABANDON here: a launch that times out is terminated,
                // a terminate that times out proceeds (DefaultResult, Auto Scaling docs).
                self.begin_terminate(world, at, &id, false);
            }
            Event::RefreshStep(refresh_id) => self.step_refresh(world, at, &refresh_id),
            Event::TagPoll(id) => self.tag_poll(world, at, &id),
        }
    }

    /// The user data's look at the instance's `fleetprep:hostname` tag: the name is taken
    /// only when tags are in instance metadata, within the script's wait after boot, and when
    /// it differs from the current name; then Rename-Computer and the restart (exit 3010 under
    /// EC2Launch v2), and SSM is back after the reboot with the new name.
    fn tag_poll(&self, world: &mut World, at: SystemTime, id: &str) {
        let Some(instance) = world.instances.get_mut(id) else {
            return;
        };
        let waiting = instance.booted_at.is_some_and(|booted| {
            at.duration_since(booted).unwrap_or_default()
                <= Duration::from_secs(u64::from(sysprep::userdata::TAG_WAIT_SECONDS))
        });
        if instance.state != InstanceState::Running
            || !instance.renames_from_tag
            || !instance.metadata_tags
            || !waiting
            || instance.pending_name.is_some()
        {
            return;
        }
        let Some(name) = instance
            .tags
            .iter()
            .find(|t| t.key == sysprep::userdata::HOSTNAME_TAG)
            .map(|t| t.value.clone())
        else {
            return;
        };
        if sysprep::hostname::key(&instance.computer_name) == sysprep::hostname::key(&name) {
            return;
        }
        instance.pending_name = Some(name);
        instance.ssm_online = false;
        let delay = self.draw(&format!("tag-reboot/{id}"), self.timings.reboot);
        Self::schedule(world, at + delay, Event::RebootUp(id.to_string()));
    }

    fn count(&self, world: &mut World, operation: &str) {
        *world.calls.entry(operation.to_string()).or_default() += 1;
    }

    /// Counts the call and applies the API's rate limit ([`quotas`]: token buckets refilled on
    /// the clock) and, for EC2, the throttle-storm fault.
    fn api_call(&self, world: &mut World, operation: &str) -> Result<(), CloudError> {
        self.count(world, operation);
        let now = self.clock.now();
        let storm = operation.starts_with("ec2:")
            && self
                .scenario
                .any(FaultKind::ThrottleStorm)
                .is_some_and(|fault| {
                    now < self.started_at
                        + Duration::from_secs(fault.duration_seconds.unwrap_or(600))
                });
        let Some(quota) = quotas::quota(operation) else {
            return Ok(());
        };
        let admitted = !storm
            && world
                .buckets
                .entry(quota.class)
                .or_insert_with(|| quotas::Bucket::full(&quota, now))
                .take(&quota, now);
        if admitted {
            return Ok(());
        }
        *world.throttled.entry(operation.to_string()).or_default() += 1;
        Err(CloudError::throttled(
            quota.error_code,
            format!("{} ({operation})", quota.message),
        ))
    }

    fn new_instance_id(&self, world: &mut World, salt: &str) -> String {
        world.next_seq += 1;
        let n = world.next_seq;
        format!("i-{:017x}", mix(self.scenario.seed, &format!("{salt}/{n}")))
    }

    fn launch(
        &self,
        world: &mut World,
        image_id: &str,
        instance_type: &str,
        tags: Vec<Tag>,
        group: Option<String>,
    ) -> String {
        let now = self.clock.now();
        let salt = group.clone().unwrap_or_else(|| "run".into());
        let mut id = self.new_instance_id(world, &salt);
        while world.instances.contains_key(&id) {
            id = self.new_instance_id(world, &salt);
        }
        let delay = self.draw(&format!("boot/{id}"), self.timings.pending_to_running);
        let name = format!(
            "EC2AMAZ-{}",
            &sid_hex(self.scenario.seed, &id)[..7].to_uppercase()
        );
        let sid = sid(self.scenario.seed, &format!("{image_id}/base"));
        let from_group = group.is_some();
        world.instances.insert(
            id.clone(),
            SimInstance {
                id: id.clone(),
                image_id: image_id.to_string(),
                instance_type: instance_type.to_string(),
                state: InstanceState::Pending,
                state_reason: None,
                launch_time: now,
                tags,
                from_group: group,
                lifecycle_state: None,
                hook_token: None,
                hook_gen: 0,
                ssm_online: false,
                ever_online: false,
                computer_name: name,
                pending_name: None,
                rerun_command: None,
                // Instances cloned from one image share its SID until generalized.
                machine_sid: sid,
                generalized: false,
                sysprep_running: false,
                image_state: sysprep::agent::ImageState::Complete,
                panther: Vec::new(),
                appx_blocker: self
                    .scenario
                    .fault(FaultKind::PreflightAppxBlocker, from_group)
                    .is_some(),
                reboot_pending: self
                    .scenario
                    .fault(FaultKind::PendingReboot, from_group)
                    .is_some(),
                bitlocker: self
                    .scenario
                    .fault(FaultKind::BitlockerEnabled, from_group)
                    .map(|_| None),
                console: String::new(),
                generation: 0,
                admin_password: world
                    .images
                    .get(image_id)
                    .and_then(|i| i.admin_password.clone()),
                renames_from_tag: false,
                metadata_tags: false,
                booted_at: None,
            },
        );
        Self::schedule(world, now + delay, Event::Running(id.clone()));
        id
    }

    fn begin_terminate(&self, world: &mut World, at: SystemTime, id: &str, hook: bool) {
        let Some(instance) = world.instances.get_mut(id) else {
            return;
        };
        if matches!(
            instance.state,
            InstanceState::ShuttingDown | InstanceState::Terminated
        ) {
            return;
        }
        instance.ssm_online = false;
        instance.sysprep_running = false;
        if hook && let Some(group) = instance.from_group.clone() {
            // Terminate lifecycle hook: wait for CONTINUE (or the timeout) before terminating.
            let token = format!("{:032x}", mix(self.scenario.seed, &format!("term/{id}")));
            instance.lifecycle_state = Some("Terminating:Wait".into());
            instance.hook_token = Some(token.clone());
            instance.hook_gen += 1;
            let generation = instance.hook_gen;
            let timeout = world
                .groups
                .get(&group)
                .map(|g| g.spec.terminate_hook_timeout_seconds)
                .unwrap_or(600);
            world.lifecycle_queue.push(LifecycleEvent {
                lifecycle_transition: LifecycleEvent::TERMINATING.into(),
                auto_scaling_group_name: group,
                lifecycle_hook_name: "fleetprep-terminate".into(),
                lifecycle_action_token: token.clone(),
                instance_id: id.to_string(),
                time: at,
            });
            Self::schedule(
                world,
                at + Duration::from_secs(timeout),
                Event::HookTimeout(id.to_string(), generation),
            );
            return;
        }
        instance.state = InstanceState::ShuttingDown;
        instance.state_reason = Some("Client.UserInitiatedShutdown".into());
        if instance.from_group.is_some() {
            instance.lifecycle_state = Some("Terminating".into());
        }
        let delay = self.draw(&format!("term/{id}"), self.timings.shutting_down);
        Self::schedule(world, at + delay, Event::Terminated(id.to_string()));
    }

    fn instance_view(instance: &SimInstance) -> Instance {
        Instance {
            instance_id: instance.id.clone(),
            image_id: instance.image_id.clone(),
            instance_type: instance.instance_type.clone(),
            state: instance.state,
            state_reason: instance.state_reason.clone(),
            launch_time: instance.launch_time,
            platform: Some("windows".into()),
            private_dns_name: Some(format!("ip-10-0-{}.ec2.internal", &instance.id[2..8])),
            tags: instance.tags.clone(),
        }
    }

    // ------------------------------------------------------------ Auto Scaling (sim side)

    /// Sets the launch template's user data and instance metadata options (what
    /// CreateLaunchTemplate would carry); instances launched from it afterwards get them.
    pub fn set_launch_template_data(&self, template_id: &str, data: LaunchTemplateData) {
        if let Some(template) = self.lock().templates.get_mut(template_id) {
            template.data = data;
        }
    }

    /// The administrator password setting an image's builder had when it was captured:
    /// `Some("random")` only when the bake ran the agent's own setting on it.
    pub fn image_admin_password(&self, image_id: &str) -> Option<String> {
        self.lock()
            .images
            .get(image_id)
            .and_then(|i| i.admin_password.clone())
    }

    /// Creates an Auto Scaling group with a launch and a terminate lifecycle hook.
    pub fn create_group(&self, spec: GroupSpec) {
        let mut world = self.lock();
        world.groups.insert(
            spec.name.clone(),
            SimGroup {
                spec,
                template_version: "$Default".into(),
            },
        );
    }

    fn group_instances(world: &World, group: &str) -> Vec<String> {
        world
            .instances
            .values()
            .filter(|i| {
                i.from_group.as_deref() == Some(group)
                    && !matches!(
                        i.state,
                        InstanceState::ShuttingDown | InstanceState::Terminated
                    )
                    && i.lifecycle_state.as_deref() != Some("Terminating:Wait")
            })
            .map(|i| i.id.clone())
            .collect()
    }

    fn template_image(world: &World, template_id: &str, version: &str) -> String {
        let Some(template) = world.templates.get(template_id) else {
            return WINDOWS_AMI.into();
        };
        let wanted = match version {
            "$Default" => template.default_version,
            "$Latest" => template
                .versions
                .iter()
                .map(|v| v.version_number)
                .max()
                .unwrap_or(1),
            other => other.parse().unwrap_or(template.default_version),
        };
        template
            .versions
            .iter()
            .find(|v| v.version_number == wanted)
            .map(|v| v.image_id.clone())
            .unwrap_or_else(|| WINDOWS_AMI.into())
    }

    fn launch_into_group(&self, world: &mut World, group: &str, version: &str) -> Option<String> {
        let (template, instance_type, timeout) = {
            let g = world.groups.get(group)?;
            (
                g.spec.launch_template_id.clone(),
                g.spec.instance_type.clone(),
                g.spec.launch_hook_timeout_seconds,
            )
        };
        let image = Self::template_image(world, &template, version);
        let now = self.clock.now();
        let tags = vec![Tag::new("aws:autoscaling:groupName", group)];
        let id = self.launch(world, &image, &instance_type, tags, Some(group.to_string()));
        let data = world
            .templates
            .get(&template)
            .map(|t| t.data.clone())
            .unwrap_or_default();
        if let Some(instance) = world.instances.get_mut(&id) {
            instance.renames_from_tag = data
                .user_data
                .is_some_and(|u| u.contains(sysprep::userdata::TAG_MARKER));
            instance.metadata_tags = data.instance_metadata_tags;
        }
        let token = format!("{:032x}", mix(self.scenario.seed, &format!("launch/{id}")));
        let timeout = self
            .scenario
            .fault(FaultKind::LifecycleHeartbeatTimeout, true)
            .and_then(|f| f.heartbeat_timeout_seconds)
            .unwrap_or(timeout);
        let mut generation = 0;
        if let Some(instance) = world.instances.get_mut(&id) {
            instance.lifecycle_state = Some("Pending:Wait".into());
            instance.hook_token = Some(token.clone());
            instance.hook_gen += 1;
            generation = instance.hook_gen;
        }
        world.lifecycle_queue.push(LifecycleEvent {
            lifecycle_transition: LifecycleEvent::LAUNCHING.into(),
            auto_scaling_group_name: group.to_string(),
            lifecycle_hook_name: "fleetprep-launch".into(),
            lifecycle_action_token: token.clone(),
            instance_id: id.clone(),
            time: now,
        });
        Self::schedule(
            world,
            now + Duration::from_secs(timeout),
            Event::HookTimeout(id.clone(), generation),
        );
        Some(id)
    }

    /// SetDesiredCapacity: launches or terminates (newest first) to reach `desired`.
    pub fn set_desired_capacity(&self, group: &str, desired: usize) -> Result<(), CloudError> {
        let mut world = self.lock();
        self.count(&mut world, "autoscaling:SetDesiredCapacity");
        let version = world
            .groups
            .get(group)
            .map(|g| g.template_version.clone())
            .ok_or_else(|| {
                CloudError::invalid_parameter(
                    "ValidationError",
                    format!("AutoScalingGroup name not found - {group}"),
                )
            })?;
        let mut current = Self::group_instances(&world, group);
        while current.len() < desired {
            if let Some(id) = self.launch_into_group(&mut world, group, &version) {
                current.push(id);
            }
        }
        let now = self.clock.now();
        while current.len() > desired {
            if let Some(id) = current.pop() {
                self.begin_terminate(&mut world, now, &id, true);
            }
        }
        Ok(())
    }

    /// Takes the lifecycle events queued since the last call (the driver starts executions).
    pub fn drain_lifecycle_events(&self) -> Vec<LifecycleEvent> {
        std::mem::take(&mut self.lock().lifecycle_queue)
    }

    /// Every instance the sim knows, with its Windows identity.
    pub fn instances(&self) -> Vec<SimInstanceView> {
        let world = self.lock();
        world
            .instances
            .values()
            .map(|i| SimInstanceView {
                instance_id: i.id.clone(),
                state: i.state,
                group: i.from_group.clone(),
                lifecycle_state: i.lifecycle_state.clone(),
                computer_name: i.computer_name.clone(),
                machine_sid: i.machine_sid.clone(),
                image_id: i.image_id.clone(),
            })
            .collect()
    }

    /// In-service instances of a group.
    pub fn in_service(&self, group: &str) -> Vec<SimInstanceView> {
        self.instances()
            .into_iter()
            .filter(|i| {
                i.group.as_deref() == Some(group)
                    && i.lifecycle_state.as_deref() == Some("InService")
            })
            .collect()
    }

    /// Every accepted SendCommand, oldest first.
    pub fn sent_commands(&self) -> Vec<SentCommand> {
        self.lock().sent.clone()
    }

    /// API calls per operation (`ec2:DescribeInstances` → n).
    pub fn api_calls(&self) -> BTreeMap<String, u64> {
        self.lock().calls.clone()
    }

    /// Calls rejected with RequestLimitExceeded, per operation.
    pub fn throttled_calls(&self) -> BTreeMap<String, u64> {
        self.lock().throttled.clone()
    }

    /// Anything still running or half-made outside Auto Scaling groups.
    pub fn leftovers(&self) -> Leftovers {
        let world = self.lock();
        let mut leftovers = Leftovers::default();
        for instance in world.instances.values() {
            if instance.from_group.is_none()
                && instance.state != InstanceState::Terminated
                && instance.state != InstanceState::ShuttingDown
            {
                leftovers.builder_instances.push(instance.id.clone());
            }
            if instance
                .lifecycle_state
                .as_deref()
                .is_some_and(|s| s.ends_with(":Wait"))
            {
                leftovers.waiting_on_hooks.push(instance.id.clone());
            }
        }
        for image in world.images.values() {
            if matches!(image.image.state, ImageState::Pending | ImageState::Failed) {
                leftovers
                    .half_made_images
                    .push(image.image.image_id.clone());
            }
        }
        leftovers
    }

    /// Images the sim holds (for summaries).
    pub fn images(&self) -> Vec<Image> {
        self.lock()
            .images
            .values()
            .map(|i| i.image.clone())
            .collect()
    }

    /// Terminates an instance behind everyone's back (used by the TerminatedMidSysprep fault
    /// and by tests).
    pub fn terminate_out_of_band(&self, instance_id: &str) {
        let mut world = self.lock();
        let now = self.clock.now();
        self.begin_terminate(&mut world, now, instance_id, false);
    }

    fn step_refresh(&self, world: &mut World, at: SystemTime, refresh_id: &str) {
        let Some(refresh) = world.refreshes.get(refresh_id) else {
            return;
        };
        if refresh.refresh.status != InstanceRefreshStatus::InProgress {
            return;
        }
        let group = refresh.refresh.auto_scaling_group_name.clone();
        // Wait for the current batch of replacements to be in service.
        let batch_ready = refresh.batch.iter().all(|id| {
            world
                .instances
                .get(id)
                .is_some_and(|i| i.lifecycle_state.as_deref() == Some("InService"))
        });
        let batch_failed = refresh.batch.iter().any(|id| {
            world.instances.get(id).is_some_and(|i| {
                matches!(
                    i.state,
                    InstanceState::ShuttingDown | InstanceState::Terminated
                )
            })
        });
        let warmup = Duration::from_secs(u64::from(refresh.request.instance_warmup_seconds));
        if batch_failed {
            let refresh = world.refreshes.get_mut(refresh_id).expect("checked above");
            refresh.refresh.status = InstanceRefreshStatus::Failed;
            refresh.refresh.status_reason =
                Some("A replacement instance failed its launch lifecycle hook".into());
            return;
        }
        if !batch_ready {
            Self::schedule(
                world,
                at + Duration::from_secs(15),
                Event::RefreshStep(refresh_id.into()),
            );
            return;
        }
        let (version, total, min_healthy) = {
            let r = &world.refreshes[refresh_id];
            let lt = r.request.launch_template.clone();
            (
                lt.map(|l| l.version).unwrap_or_else(|| "$Default".into()),
                r.old_instances.len(),
                r.request.min_healthy_percentage,
            )
        };
        // Terminate the old instances the finished batch replaced.
        let finished: Vec<String> = {
            let r = world.refreshes.get_mut(refresh_id).expect("checked above");
            let done = r.batch.len();
            let from = r.replaced;
            r.replaced += done;
            r.batch.clear();
            r.old_instances[from..(from + done).min(total)].to_vec()
        };
        for old in finished {
            self.begin_terminate(world, at, &old, true);
        }
        let replaced = world.refreshes[refresh_id].replaced;
        let percent = (replaced * 100).checked_div(total).unwrap_or(100) as u32;
        if replaced >= total {
            let r = world.refreshes.get_mut(refresh_id).expect("checked above");
            r.refresh.status = InstanceRefreshStatus::Successful;
            r.refresh.percentage_complete = 100;
            if let Some(g) = world.groups.get_mut(&group) {
                g.template_version = version;
            }
            return;
        }
        // Next batch: as many as min healthy percentage allows, at least one.
        let batch_size = ((total * (100 - min_healthy.min(100)) as usize) / 100).max(1);
        let batch_size = batch_size.min(total - replaced);
        let mut batch = Vec::new();
        for _ in 0..batch_size {
            if let Some(id) = self.launch_into_group(world, &group, &version) {
                batch.push(id);
            }
        }
        let r = world.refreshes.get_mut(refresh_id).expect("checked above");
        r.batch = batch;
        r.refresh.percentage_complete = percent;
        Self::schedule(
            world,
            at + warmup.max(Duration::from_secs(15)),
            Event::RefreshStep(refresh_id.into()),
        );
    }
}

#[async_trait]
impl Cloud for SimCloud {
    async fn run_instances(
        &self,
        request: RunInstancesRequest,
    ) -> Result<Vec<Instance>, CloudError> {
        let mut world = self.lock();
        self.api_call(&mut world, "ec2:RunInstances")?;
        if request.client_token.is_empty() || request.client_token.len() > 64 {
            return Err(CloudError::invalid_parameter(
                "InvalidParameterValue",
                "ClientToken must be 1-64 ASCII characters",
            ));
        }
        if let Some(ids) = world.run_tokens.get(&request.client_token) {
            return Ok(ids
                .iter()
                .filter_map(|id| world.instances.get(id).map(Self::instance_view))
                .collect());
        }
        let image_id = match &request.launch_template {
            Some(lt) if request.image_id.is_empty() => {
                Self::template_image(&world, &lt.launch_template_id, &lt.version)
            }
            _ => request.image_id.clone(),
        };
        if !world.images.contains_key(&image_id) && image_id.starts_with("ami-") {
            // The simulated account owns any AMI a config names: it becomes a Windows base image.
            let now = self.clock.now();
            world.images.insert(
                image_id.clone(),
                SimImage {
                    image: Image {
                        image_id: image_id.clone(),
                        name: format!("simulated-windows-base-{image_id}"),
                        state: ImageState::Available,
                        state_reason: None,
                        source_instance_id: None,
                        creation_date: now,
                        tags: vec![],
                    },
                    fails: false,
                    admin_password: None,
                },
            );
        }
        match world.images.get(&image_id) {
            Some(image) if image.image.state == ImageState::Available => {}
            _ => {
                return Err(CloudError::not_found(
                    "InvalidAMIID.NotFound",
                    format!("The image id '[{image_id}]' does not exist"),
                ));
            }
        }
        if request.count == 0 {
            return Err(CloudError::invalid_parameter(
                "InvalidParameterValue",
                "MinCount and MaxCount must be at least 1",
            ));
        }
        let mut ids = Vec::new();
        for _ in 0..request.count {
            let id = self.launch(
                &mut world,
                &image_id,
                &request.instance_type,
                request.tags.clone(),
                None,
            );
            ids.push(id);
        }
        world
            .run_tokens
            .insert(request.client_token.clone(), ids.clone());
        Ok(ids
            .iter()
            .filter_map(|id| world.instances.get(id).map(Self::instance_view))
            .collect())
    }

    async fn describe_instances(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<Instance>, CloudError> {
        let mut world = self.lock();
        self.api_call(&mut world, "ec2:DescribeInstances")?;
        let mut out = Vec::new();
        for id in instance_ids {
            match world.instances.get(id) {
                Some(instance) => out.push(Self::instance_view(instance)),
                None => {
                    return Err(instance_not_found(id));
                }
            }
        }
        Ok(out)
    }

    async fn start_instances(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<InstanceStateChange>, CloudError> {
        change_instance_states(
            self,
            "ec2:StartInstances",
            instance_ids,
            |id, instance| {
                (!matches!(
                    instance.state,
                    InstanceState::Stopped | InstanceState::Running | InstanceState::Pending
                ))
                .then(|| {
                    format!(
                        "The instance '{id}' is not in a state from which it can be started ({}).",
                        instance.state.as_str()
                    )
                })
            },
            |world, id, previous, now| {
                // Starting a running or pending instance is a no-op that still reports it.
                if previous != InstanceState::Stopped {
                    return;
                }
                let Some(instance) = world.instances.get_mut(id) else {
                    return;
                };
                instance.state = InstanceState::Pending;
                instance.generation += 1;
                let delay = self.draw(
                    &format!("start/{id}/{}", instance.generation),
                    self.timings.pending_to_running,
                );
                Self::schedule(world, now + delay, Event::Running(id.to_string()));
            },
        )
    }

    async fn stop_instances(
        &self,
        instance_ids: &[String],
        force: bool,
    ) -> Result<Vec<InstanceStateChange>, CloudError> {
        change_instance_states(
            self,
            "ec2:StopInstances",
            instance_ids,
            |id, instance| match instance.state {
                InstanceState::ShuttingDown | InstanceState::Terminated => Some(format!(
                    "This instance '{id}' is not in a state from which it can be stopped ({}).",
                    instance.state.as_str()
                )),
                // A first launch still pending cannot be stopped; one pending again after a
                // start can (EC2 answers the former with this message).
                InstanceState::Pending if instance.generation == 0 => Some(format!(
                    "Instance '{id}' cannot be stopped as it has never reached the 'running' state."
                )),
                _ => None,
            },
            |world, id, previous, now| match previous {
                InstanceState::Running | InstanceState::Pending => {
                    let Some(instance) = world.instances.get_mut(id) else {
                        return;
                    };
                    instance.state = InstanceState::Stopping;
                    instance.ssm_online = false;
                    instance.sysprep_running = false;
                    instance.state_reason = Some("Client.UserInitiatedShutdown".into());
                    let stuck = self
                        .scenario
                        .fault(FaultKind::StuckStopping, instance.from_group.is_some())
                        .is_some();
                    if !stuck {
                        let delay = self.draw(&format!("stop/{id}"), self.timings.stopping);
                        Self::schedule(world, now + delay, Event::Stopped(id.to_string()));
                    }
                }
                InstanceState::Stopping if force => {
                    // A forced stop cuts a hung shutdown short (EC2 StopInstances Force=true).
                    Self::schedule(
                        world,
                        now + Duration::from_secs(30),
                        Event::Stopped(id.to_string()),
                    );
                }
                // Stopping (without force) or already stopped: nothing to do, still reported.
                _ => {}
            },
        )
    }

    async fn terminate_instances(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<InstanceStateChange>, CloudError> {
        // TerminateInstances is idempotent: every state is accepted, and terminating a
        // shutting-down or terminated instance succeeds without changing it (EC2 API reference,
        // TerminateInstances: "if you terminate an instance more than once, each call succeeds").
        change_instance_states(
            self,
            "ec2:TerminateInstances",
            instance_ids,
            |_, _| None,
            |world, id, _, now| self.begin_terminate(world, now, id, false),
        )
    }

    async fn get_console_output(&self, instance_id: &str) -> Result<ConsoleOutput, CloudError> {
        let mut world = self.lock();
        self.api_call(&mut world, "ec2:GetConsoleOutput")?;
        let instance = world
            .instances
            .get(instance_id)
            .ok_or_else(|| instance_not_found(instance_id))?;
        Ok(ConsoleOutput {
            instance_id: instance_id.to_string(),
            output: instance.console.clone(),
            timestamp: Some(self.clock.now()),
        })
    }

    async fn create_image(&self, request: CreateImageRequest) -> Result<String, CloudError> {
        let mut world = self.lock();
        self.api_call(&mut world, "ec2:CreateImage")?;
        if let Some(id) = world.image_tokens.get(&request.client_token) {
            return Ok(id.clone());
        }
        if world
            .images
            .values()
            .any(|i| i.image.name == request.name && i.image.state != ImageState::Deregistered)
        {
            return Err(CloudError::invalid_parameter(
                "InvalidAMIName.Duplicate",
                format!("AMI name {} is already in use by another AMI", request.name),
            ));
        }
        let (from_group, state, admin_password) = match world.instances.get(&request.instance_id) {
            Some(i) => (i.from_group.is_some(), i.state, i.admin_password.clone()),
            None => {
                return Err(instance_not_found(&request.instance_id));
            }
        };
        if !matches!(state, InstanceState::Running | InstanceState::Stopped) {
            return Err(CloudError::incorrect_state(
                "IncorrectInstanceState",
                format!(
                    "Instance '{}' is not in a state from which an image can be created ({}).",
                    request.instance_id,
                    state.as_str()
                ),
            ));
        }
        let now = self.clock.now();
        let id = format!(
            "ami-{:017x}",
            mix(
                self.scenario.seed,
                &format!("image/{}", request.client_token)
            )
        );
        // `times = N`: only the first N images fail (a transient Client.InternalError).
        let fails = self
            .scenario
            .fault(FaultKind::CreateImageFails, from_group)
            .is_some_and(|f| f.times.is_none_or(|n| world.failed_images < u64::from(n)));
        if fails {
            world.failed_images += 1;
        }
        let stuck = self
            .scenario
            .fault(FaultKind::ImageStuckPending, from_group)
            .is_some();
        world.images.insert(
            id.clone(),
            SimImage {
                image: Image {
                    image_id: id.clone(),
                    name: request.name.clone(),
                    state: ImageState::Pending,
                    state_reason: None,
                    source_instance_id: Some(request.instance_id.clone()),
                    creation_date: now,
                    tags: request.tags.clone(),
                },
                fails,
                admin_password,
            },
        );
        world
            .image_tokens
            .insert(request.client_token.clone(), id.clone());
        if !stuck {
            let delay = self.draw(&format!("image/{id}"), self.timings.create_image);
            Self::schedule(&mut world, now + delay, Event::ImageDone(id.clone()));
        }
        Ok(id)
    }

    async fn describe_images(&self, image_ids: &[String]) -> Result<Vec<Image>, CloudError> {
        let mut world = self.lock();
        self.api_call(&mut world, "ec2:DescribeImages")?;
        let mut out = Vec::new();
        for id in image_ids {
            match world.images.get(id) {
                Some(image) if image.image.state != ImageState::Deregistered => {
                    out.push(image.image.clone())
                }
                _ => {
                    return Err(CloudError::not_found(
                        "InvalidAMIID.NotFound",
                        format!("The image id '[{id}]' does not exist"),
                    ));
                }
            }
        }
        Ok(out)
    }

    async fn deregister_image(&self, image_id: &str) -> Result<(), CloudError> {
        let mut world = self.lock();
        self.api_call(&mut world, "ec2:DeregisterImage")?;
        match world.images.get_mut(image_id) {
            Some(image) if image.image.state != ImageState::Deregistered => {
                image.image.state = ImageState::Deregistered;
                Ok(())
            }
            _ => Err(CloudError::not_found(
                "InvalidAMIID.Unavailable",
                format!("The image id '[{image_id}]' is no longer available"),
            )),
        }
    }

    async fn create_tags(&self, resource_ids: &[String], tags: &[Tag]) -> Result<(), CloudError> {
        let mut world = self.lock();
        self.api_call(&mut world, "ec2:CreateTags")?;
        for id in resource_ids {
            let target: Option<&mut Vec<Tag>> = if id.starts_with("ami-") {
                world.images.get_mut(id).map(|i| &mut i.image.tags)
            } else {
                world.instances.get_mut(id).map(|i| &mut i.tags)
            };
            let Some(existing) = target else {
                return Err(CloudError::not_found(
                    if id.starts_with("ami-") {
                        "InvalidAMIID.NotFound"
                    } else {
                        "InvalidInstanceID.NotFound"
                    },
                    format!("The resource '{id}' does not exist"),
                ));
            };
            for tag in tags {
                existing.retain(|t| t.key != tag.key);
                existing.push(tag.clone());
            }
        }
        // Instance metadata shows a new tag while the instance runs ("Work with instance tags
        // in instance metadata"): the user data's next retry (every 5 s) sees it.
        if tags
            .iter()
            .any(|t| t.key == sysprep::userdata::HOSTNAME_TAG)
        {
            let now = self.clock.now();
            for id in resource_ids {
                if world.instances.get(id).is_some_and(|i| i.renames_from_tag) {
                    let delay = self.draw(&format!("tag-poll/{id}"), (1, 5));
                    Self::schedule(&mut world, now + delay, Event::TagPoll(id.clone()));
                }
            }
        }
        Ok(())
    }

    async fn create_launch_template_version(
        &self,
        request: CreateLaunchTemplateVersionRequest,
    ) -> Result<LaunchTemplateVersion, CloudError> {
        let mut world = self.lock();
        self.api_call(&mut world, "ec2:CreateLaunchTemplateVersion")?;
        let token_key = format!("{}/{}", request.launch_template_id, request.client_token);
        let template = world
            .templates
            .get(&request.launch_template_id)
            .ok_or_else(|| {
                CloudError::not_found(
                    "InvalidLaunchTemplateId.NotFound",
                    format!(
                        "The specified launch template, with template ID {}, does not exist.",
                        request.launch_template_id
                    ),
                )
            })?;
        if let Some(version) = world.template_tokens.get(&token_key) {
            let v = template
                .versions
                .iter()
                .find(|v| v.version_number == *version)
                .cloned();
            if let Some(v) = v {
                return Ok(v);
            }
        }
        let number = template
            .versions
            .iter()
            .map(|v| v.version_number)
            .max()
            .unwrap_or(0)
            + 1;
        let version = LaunchTemplateVersion {
            launch_template_id: request.launch_template_id.clone(),
            version_number: number,
            image_id: request.image_id.clone(),
            default_version: false,
        };
        if let Some(template) = world.templates.get_mut(&request.launch_template_id) {
            template.versions.push(version.clone());
        }
        world.template_tokens.insert(token_key, number);
        Ok(version)
    }

    async fn set_default_launch_template_version(
        &self,
        launch_template_id: &str,
        version: i64,
    ) -> Result<i64, CloudError> {
        let mut world = self.lock();
        self.api_call(&mut world, "ec2:ModifyLaunchTemplate")?;
        let template = world.templates.get_mut(launch_template_id).ok_or_else(|| {
            CloudError::not_found(
                "InvalidLaunchTemplateId.NotFound",
                format!("The specified launch template, with template ID {launch_template_id}, does not exist."),
            )
        })?;
        if !template
            .versions
            .iter()
            .any(|v| v.version_number == version)
        {
            return Err(CloudError::invalid_parameter(
                "InvalidLaunchTemplateId.VersionNotFound",
                format!(
                    "Could not find launch template version {version} for {launch_template_id}"
                ),
            ));
        }
        let previous = template.default_version;
        template.default_version = version;
        for v in &mut template.versions {
            v.default_version = v.version_number == version;
        }
        Ok(previous)
    }

    async fn describe_default_launch_template_version(
        &self,
        launch_template_id: &str,
    ) -> Result<LaunchTemplateVersion, CloudError> {
        let mut world = self.lock();
        self.api_call(&mut world, "ec2:DescribeLaunchTemplateVersions")?;
        let template = world.templates.get(launch_template_id).ok_or_else(|| {
            CloudError::not_found(
                "InvalidLaunchTemplateId.NotFound",
                format!("The specified launch template, with template ID {launch_template_id}, does not exist."),
            )
        })?;
        template
            .versions
            .iter()
            .find(|v| v.version_number == template.default_version)
            .cloned()
            .ok_or_else(|| {
                CloudError::not_found(
                    "InvalidLaunchTemplateId.VersionNotFound",
                    "default version missing",
                )
            })
    }

    async fn describe_instance_information(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<InstanceInformation>, CloudError> {
        let mut world = self.lock();
        self.api_call(&mut world, "ssm:DescribeInstanceInformation")?;
        if instance_ids.len() > 50 {
            return Err(CloudError::invalid_parameter(
                "InvalidInstanceInformationFilterValue",
                format!(
                    "{} instance ids given; the InstanceIds filter takes at most 50",
                    instance_ids.len()
                ),
            ));
        }
        let now = self.clock.now();
        Ok(instance_ids
            .iter()
            .filter_map(|id| world.instances.get(id))
            .filter(|i| i.ever_online)
            .map(|i| InstanceInformation {
                instance_id: i.id.clone(),
                ping_status: if i.ssm_online {
                    PingStatus::Online
                } else {
                    PingStatus::ConnectionLost
                },
                last_ping: now,
                platform_type: "Windows".into(),
                platform_name: "Microsoft Windows Server 2022 Datacenter".into(),
                platform_version: "10.0.20348".into(),
                agent_version: "3.3.1142.0".into(),
                // The agent reports `DNSHostName.Domain`, and `Domain` is the workgroup off a
                // domain (amazon-ssm-agent source, platform code for Windows,
                // `fullyQualifiedDomainName`); simulated instances are in WORKGROUP.
                computer_name: format!("{}.WORKGROUP", i.computer_name),
            })
            .collect())
    }

    async fn send_command(&self, request: SendCommandRequest) -> Result<String, CloudError> {
        let mut world = self.lock();
        self.api_call(&mut world, "ssm:SendCommand")?;
        check_send_command_limits(&request)?;
        let now = self.clock.now();
        for id in &request.instance_ids {
            let online = world.instances.get(id).is_some_and(|i| i.ssm_online);
            if !online {
                return Err(CloudError::invalid_parameter(
                    "InvalidInstanceId",
                    format!(
                        "Instance {id} is not in a valid state for SendCommand: the SSM agent is not online"
                    ),
                ));
            }
        }
        world.command_seq += 1;
        let command_id = format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            mix(self.scenario.seed, &format!("cmd/{}", world.command_seq)) as u32,
            world.command_seq & 0xffff,
            world.command_seq & 0xfff,
            0,
            world.command_seq
        );
        let script = request.commands.join("\n");
        for id in &request.instance_ids {
            let Some(instance) = world.instances.get(id) else {
                continue;
            };
            let from_group = instance.from_group.is_some();
            let mut stdout = String::new();
            let mut effect = Effect::None;
            let mut delay = self.draw(&format!("cmd/{command_id}/{id}"), self.timings.command);
            let mut status_failed = false;
            let lower = script.to_ascii_lowercase();
            // The `sysprep` crate's report scripts are recognised by the output markers they
            // print (stable constants), checked first: their text mentions Sysprep and the
            // launch agents too.
            if request.document_name == "AWS-InstallWindowsUpdates" {
                // The document installs the updates and reboots as they need (AllowReboot):
                // tens of minutes, and no reboot is left pending afterwards.
                delay = self.draw(&format!("updates/{id}"), (20 * 60, 40 * 60));
                if let Some(instance) = world.instances.get_mut(id) {
                    instance.reboot_pending = false;
                }
                stdout = "Windows updates installed.".into();
            } else if script.contains(sysprep::preflight::PREFLIGHT_MARKER) {
                stdout = preflight_json(&world.instances[id], now);
            } else if script.contains(sysprep::commands::PASSWORD_MARKER) {
                // `agent_password_script`: the agent's own randomizer is on from now on (no
                // agent: nothing to set). Checked before the generic branches: the script
                // mentions EC2Launch and throws on its own failure paths.
                let agent = extract_between(&script, "agent = '", "'").unwrap_or_default();
                let password = if agent == "none" {
                    "unchanged"
                } else {
                    "random"
                };
                if let Some(instance) = world.instances.get_mut(id) {
                    instance.admin_password = Some(password.to_owned());
                }
                stdout = format!(
                    "{}{}",
                    sysprep::commands::PASSWORD_MARKER,
                    serde_json::json!({"agent": agent, "password": password})
                );
            } else if script.contains(sysprep::remedy::REMEDY_MARKER) {
                let recurs = self
                    .scenario
                    .fault(FaultKind::PreflightAppxBlocker, from_group)
                    .is_some_and(|f| f.recurs);
                let bitlocker_seconds = self
                    .scenario
                    .fault(FaultKind::BitlockerEnabled, from_group)
                    .and_then(|f| f.duration_seconds)
                    .unwrap_or(1800);
                let Some(instance) = world.instances.get_mut(id) else {
                    continue;
                };
                if lower.contains("remedy = 'appx'") {
                    let removed: Vec<&str> = if instance.appx_blocker {
                        vec![APPX_BLOCKER]
                    } else {
                        vec![]
                    };
                    // A recurring blocker is back by the next pre-flight.
                    instance.appx_blocker = instance.appx_blocker && recurs;
                    stdout = format!(
                        "{}{}",
                        sysprep::remedy::REMEDY_MARKER,
                        serde_json::json!({"remedy": "appx", "done": true, "removed": removed})
                    );
                } else if lower.contains("remedy = 'reboot'") {
                    effect = Effect::RebootRemedy;
                } else if lower.contains("remedy = 'bitlocker'") {
                    let decrypted_at = match instance.bitlocker {
                        None => None,
                        Some(Some(at)) => Some(at),
                        Some(None) => Some(now + Duration::from_secs(bitlocker_seconds)),
                    };
                    instance.bitlocker = decrypted_at.map(Some);
                    let done = decrypted_at.is_none_or(|at| at <= now);
                    stdout = format!(
                        "{}{}",
                        sysprep::remedy::REMEDY_MARKER,
                        serde_json::json!({
                            "remedy": "bitlocker",
                            "done": done,
                            "volumeStatus": if done { "FullyDecrypted" } else { "DecryptionInProgress" },
                        })
                    );
                }
            } else if script.contains(sysprep::agent::DETECT_MARKER) {
                stdout = serde_json::json!({"agent": "ec2launch-v2", "version": "2.0.2107.0"})
                    .to_string();
            } else if script.contains(sysprep::secrets::SECRETS_MARKER) {
                // The builder reads each secret: readable when the simulated account has it.
                let mut checks: Vec<serde_json::Value> = Vec::new();
                for reference in script.split("@{ reference = '").skip(1) {
                    let name = reference.split('\'').next().unwrap_or_default();
                    if checks.iter().any(|c| c["reference"] == name) {
                        continue;
                    }
                    let readable = world.secrets.contains_key(name);
                    checks.push(serde_json::json!({
                        "reference": name,
                        "readable": readable,
                        "error": (!readable).then_some("ResourceNotFoundException: Secrets Manager can't find the specified secret."),
                    }));
                }
                stdout = format!(
                    "{}{}",
                    sysprep::secrets::SECRETS_MARKER,
                    serde_json::Value::Array(checks)
                );
            } else if script.contains(sysprep::agent::IMAGE_STATE_MARKER) {
                stdout = format!(
                    "{}{}",
                    sysprep::agent::IMAGE_STATE_MARKER,
                    serde_json::json!({"imageState": world.instances[id].image_state.as_str()})
                );
            } else if script.contains(sysprep::panther::PANTHER_MARKER) {
                stdout = panther_output(&world.instances[id].panther);
            } else if lower.contains("sysprep")
                && (lower.contains("/generalize")
                    || (lower.contains("ec2launch") && lower.contains(" sysprep"))
                    || lower.contains("sysprepinstance.ps1")
                    || lower.contains("-sysprep"))
            {
                let instance = &world.instances[id];
                // What Sysprep finds first: the AppX provider, BitLocker, then validation
                // (a pending reboot fails it too).
                let failure = if instance.appx_blocker {
                    Some(PANTHER_APPX_FAILED)
                } else if instance
                    .bitlocker
                    .is_some_and(|at| at.is_none_or(|at| at > now))
                {
                    Some(PANTHER_BITLOCKER_FAILED)
                } else if instance.reboot_pending
                    || self
                        .scenario
                        .fault(FaultKind::SysprepValidationFailure, from_group)
                        .is_some()
                {
                    Some(PANTHER_VALIDATION_FAILED)
                } else {
                    None
                };
                if let Some(panther) = failure {
                    let attached = !lower.contains("start-process");
                    // SysprepInstance.ps1 reports nothing; the native programs exit non-zero.
                    let exit_code = if lower.contains("sysprepinstance.ps1") {
                        0
                    } else {
                        1
                    };
                    effect = Effect::SysprepFails {
                        attached,
                        exit_code,
                        panther,
                    };
                    delay = Duration::from_secs(90);
                } else {
                    effect = Effect::Sysprep {
                        after: sysprep_after(&lower),
                        name: rename_target(&script, id).or_else(|| {
                            extract_between(&script, "<ComputerName>", "</ComputerName>")
                        }),
                    };
                    delay = self.draw(&format!("sysprep/{id}"), self.timings.sysprep);
                    if self
                        .scenario
                        .fault(FaultKind::TerminatedMidSysprep, from_group)
                        .is_some()
                    {
                        // Someone terminates the builder halfway through.
                        let half = delay / 2;
                        Self::schedule(
                            &mut world,
                            now + half,
                            Event::OutOfBandTerminate(id.clone()),
                        );
                    }
                }
                if let Some(i) = world.instances.get_mut(id) {
                    i.sysprep_running = true;
                }
            } else if lower.contains("rename-computer") {
                let name = rename_target(&script, id).unwrap_or_default();
                effect = Effect::Rename(name, RenameBy::RenameComputer);
            } else if lower.contains("task = 'sethostname'") {
                // The `sysprep` crate's EC2Launch v2 rename: it adds this task to
                // agent-config.yml (other scripts only mention the agent). Checked before the
                // `throw` fallback below: the script throws on its own failure paths.
                let name = rename_target(&script, id).unwrap_or_default();
                effect = Effect::Rename(name, RenameBy::Ec2LaunchSetHostName);
            } else if script.contains(sysprep::agent::IDENTITY_MARKER) {
                stdout = identity_json(&world.instances[id]);
            } else if lower.contains("exit 1") || lower.contains("throw") {
                status_failed = true;
            }
            let effect = if status_failed {
                Effect::SysprepFails {
                    attached: false,
                    exit_code: 1,
                    panther: "",
                }
            } else {
                effect
            };
            world.commands.insert(
                (command_id.clone(), id.clone()),
                SimInvocation {
                    status: CommandStatus::InProgress,
                    details: "InProgress".into(),
                    code: -1,
                    stdout,
                    stderr: String::new(),
                    effect,
                    // Invocations appear a moment after SendCommand returns.
                    visible_at: now + Duration::from_secs(2),
                },
            );
            Self::schedule(
                &mut world,
                now + delay,
                Event::CommandDone(command_id.clone(), id.clone()),
            );
        }
        world
            .command_targets
            .insert(command_id.clone(), request.instance_ids.clone());
        world.sent.push(SentCommand {
            command_id: command_id.clone(),
            instance_ids: request.instance_ids,
            document_name: request.document_name,
            commands: request.commands,
            comment: request.comment,
        });
        Ok(command_id)
    }

    async fn get_command_invocation(
        &self,
        command_id: &str,
        instance_id: &str,
    ) -> Result<CommandInvocation, CloudError> {
        let mut world = self.lock();
        self.api_call(&mut world, "ssm:GetCommandInvocation")?;
        let now = self.clock.now();
        let invocation = world
            .commands
            .get(&(command_id.to_string(), instance_id.to_string()))
            .filter(|i| i.visible_at <= now)
            .ok_or_else(|| {
                CloudError::not_found(
                    "InvocationDoesNotExist",
                    format!("no invocation of command {command_id} on {instance_id} (yet)"),
                )
            })?;
        Ok(invocation.view(command_id, instance_id))
    }

    async fn list_command_invocations(
        &self,
        command_id: &str,
    ) -> Result<Vec<CommandInvocation>, CloudError> {
        let mut world = self.lock();
        self.api_call(&mut world, "ssm:ListCommandInvocations")?;
        let now = self.clock.now();
        let Some(targets) = world.command_targets.get(command_id) else {
            // An unknown command id lists nothing (ListCommandInvocations does not fail).
            return Ok(Vec::new());
        };
        Ok(targets
            .iter()
            .filter_map(|instance_id| {
                let key = (command_id.to_string(), instance_id.clone());
                let invocation = world.commands.get(&key).filter(|i| i.visible_at <= now)?;
                Some(invocation.listed(command_id, instance_id))
            })
            .collect())
    }

    async fn complete_lifecycle_action(
        &self,
        request: CompleteLifecycleActionRequest,
    ) -> Result<(), CloudError> {
        let mut world = self.lock();
        self.api_call(&mut world, "autoscaling:CompleteLifecycleAction")?;
        let now = self.clock.now();
        let hook = &request.hook;
        let instance = world.instances.get_mut(&hook.instance_id);
        let Some(instance) = instance else {
            return Err(no_active_action(hook));
        };
        let token_matches = match (&instance.hook_token, &hook.lifecycle_action_token) {
            (Some(active), Some(given)) => active == given,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if !token_matches {
            return Err(no_active_action(hook));
        }
        instance.hook_token = None;
        let state = instance.lifecycle_state.clone().unwrap_or_default();
        match (state.as_str(), request.result) {
            ("Pending:Wait", LifecycleActionResult::Continue) => {
                instance.lifecycle_state = Some("InService".into());
            }
            ("Pending:Wait", LifecycleActionResult::Abandon) => {
                let id = hook.instance_id.clone();
                self.begin_terminate(&mut world, now, &id, false);
            }
            ("Terminating:Wait", _) => {
                let id = hook.instance_id.clone();
                self.begin_terminate(&mut world, now, &id, false);
            }
            _ => return Err(no_active_action(hook)),
        }
        Ok(())
    }

    async fn record_lifecycle_action_heartbeat(
        &self,
        hook: LifecycleHookRef,
    ) -> Result<(), CloudError> {
        let mut world = self.lock();
        self.api_call(&mut world, "autoscaling:RecordLifecycleActionHeartbeat")?;
        let now = self.clock.now();
        let lost = self
            .scenario
            .fault(FaultKind::LifecycleHeartbeatTimeout, true)
            .is_some();
        let group = match world.instances.get(&hook.instance_id) {
            Some(i)
                if i.hook_token.is_some()
                    && (hook.lifecycle_action_token.is_none()
                        || hook.lifecycle_action_token == i.hook_token) =>
            {
                i.from_group.clone()
            }
            _ => return Err(no_active_action(&hook)),
        };
        if lost {
            // The heartbeat never reaches Auto Scaling; the hook keeps its old deadline.
            return Ok(());
        }
        let timeout = group
            .and_then(|g| {
                world
                    .groups
                    .get(&g)
                    .map(|g| g.spec.launch_hook_timeout_seconds)
            })
            .unwrap_or(3600);
        // Restart the timeout: a new generation supersedes the old deadline.
        let mut generation = 0;
        if let Some(i) = world.instances.get_mut(&hook.instance_id) {
            i.hook_gen += 1;
            generation = i.hook_gen;
        }
        Self::schedule(
            &mut world,
            now + Duration::from_secs(timeout),
            Event::HookTimeout(hook.instance_id.clone(), generation),
        );
        Ok(())
    }

    async fn start_instance_refresh(
        &self,
        request: StartInstanceRefreshRequest,
    ) -> Result<String, CloudError> {
        let mut world = self.lock();
        self.api_call(&mut world, "autoscaling:StartInstanceRefresh")?;
        if !world.groups.contains_key(&request.auto_scaling_group_name) {
            return Err(CloudError::invalid_parameter(
                "ValidationError",
                format!(
                    "AutoScalingGroup name not found - {}",
                    request.auto_scaling_group_name
                ),
            ));
        }
        if world.refreshes.values().any(|r| {
            r.refresh.auto_scaling_group_name == request.auto_scaling_group_name
                && matches!(
                    r.refresh.status,
                    InstanceRefreshStatus::Pending | InstanceRefreshStatus::InProgress
                )
        }) {
            return Err(CloudError::new(
                ErrorKind::Conflict,
                "InstanceRefreshInProgress",
                format!(
                    "An Instance Refresh is already in progress for {}",
                    request.auto_scaling_group_name
                ),
            ));
        }
        let now = self.clock.now();
        let id = format!(
            "{:08x}-refresh-{}",
            mix(
                self.scenario.seed,
                &format!("refresh/{}", world.refreshes.len())
            ) as u32,
            world.refreshes.len() + 1
        );
        let old: Vec<String> = world
            .instances
            .values()
            .filter(|i| {
                i.from_group.as_deref() == Some(&request.auto_scaling_group_name)
                    && i.lifecycle_state.as_deref() == Some("InService")
            })
            .map(|i| i.id.clone())
            .collect();
        world.refreshes.insert(
            id.clone(),
            SimRefresh {
                refresh: InstanceRefresh {
                    instance_refresh_id: id.clone(),
                    auto_scaling_group_name: request.auto_scaling_group_name.clone(),
                    status: InstanceRefreshStatus::InProgress,
                    status_reason: None,
                    percentage_complete: 0,
                    instances_to_update: old.len() as u32,
                },
                request,
                old_instances: old,
                replaced: 0,
                batch: Vec::new(),
            },
        );
        Self::schedule(
            &mut world,
            now + Duration::from_secs(5),
            Event::RefreshStep(id.clone()),
        );
        Ok(id)
    }

    async fn describe_instance_refresh(
        &self,
        auto_scaling_group_name: &str,
        instance_refresh_id: &str,
    ) -> Result<InstanceRefresh, CloudError> {
        let mut world = self.lock();
        self.api_call(&mut world, "autoscaling:DescribeInstanceRefreshes")?;
        world
            .refreshes
            .get(instance_refresh_id)
            // A refresh id of another group is unknown, as on AWS.
            .filter(|r| r.refresh.auto_scaling_group_name == auto_scaling_group_name)
            .map(|r| {
                let mut refresh = r.refresh.clone();
                refresh.instances_to_update =
                    (r.old_instances.len() - r.replaced.min(r.old_instances.len())) as u32;
                refresh
            })
            .ok_or_else(|| {
                CloudError::not_found(
                    "ValidationError",
                    format!("instance refresh {instance_refresh_id} not found"),
                )
            })
    }

    fn name_pool(&self) -> Arc<dyn NamePool> {
        self.pool.clone()
    }

    async fn check_secret(&self, reference: &SecretRef) -> Result<SecretMetadata, CloudError> {
        let mut world = self.lock();
        let key = match reference {
            SecretRef::SecretsManager { secret_id } => {
                self.count(&mut world, "secretsmanager:DescribeSecret");
                format!("secretsmanager:{secret_id}")
            }
            SecretRef::SsmParameter { name } => {
                // As the AWS implementation does: DescribeParameters reads the metadata
                // (type, existence) without the value, so plaintext never crosses the workflow.
                self.count(&mut world, "ssm:DescribeParameters");
                format!("ssm:{name}")
            }
        };
        world
            .secrets
            .get(&key)
            .cloned()
            .ok_or_else(|| match reference {
                SecretRef::SecretsManager { secret_id } => CloudError::not_found(
                    "ResourceNotFoundException",
                    format!("Secrets Manager can't find the specified secret: {secret_id}"),
                ),
                SecretRef::SsmParameter { name } => CloudError::not_found(
                    "ParameterNotFound",
                    format!("parameter {name} not found"),
                ),
            })
    }
}

/// What a Sysprep command asks Windows to do afterwards, per agent ("Create a standardized
/// Amazon Machine Image (AMI) using Sysprep"): `ec2launch sysprep` shuts down only with
/// `--shutdown`, `SysprepInstance.ps1` unless `-NoShutdown`, `ec2config.exe -sysprep` always,
/// and `sysprep.exe` as its `/shutdown`, `/reboot` or `/quit` says.
fn sysprep_after(lower: &str) -> SysprepAfter {
    if lower.contains("/reboot") {
        SysprepAfter::Reboot
    } else if lower.contains("/shutdown")
        || lower.contains("--shutdown")
        || lower.contains("-sysprep'")
        || (lower.contains("sysprepinstance.ps1") && !lower.contains("-noshutdown"))
    {
        SysprepAfter::Shutdown
    } else {
        SysprepAfter::Quit
    }
}

/// The Panther logs a Sysprep run leaves: `setupact.log` with every line and `setuperr.log`
/// with the errors, in `%WINDIR%\System32\Sysprep\Panther` ("Troubleshoot Sysprep with Amazon
/// EC2 Windows instances").
fn panther_logs(at: SystemTime, lines: &str) -> Vec<(String, String)> {
    let stamp = clock::format_rfc3339_seconds(at).replace('T', " ");
    let stamp = stamp.trim_end_matches('Z');
    let restamp = |text: &str| -> String {
        text.lines()
            .map(|line| match line.split_once(", ") {
                Some((_, rest)) if line.as_bytes().first().is_some_and(u8::is_ascii_digit) => {
                    format!("{stamp}, {rest}\n")
                }
                _ => format!("{line}\n"),
            })
            .collect()
    };
    let act = restamp(lines);
    let err: String = act
        .lines()
        .filter(|l| l.contains(", Error"))
        .map(|l| format!("{l}\n"))
        .collect();
    let folder = r"C:\Windows\System32\Sysprep\Panther";
    vec![
        (format!(r"{folder}\setupact.log"), act),
        (format!(r"{folder}\setuperr.log"), err),
    ]
}

/// What `sysprep::panther::collection_script` prints for these logs: a marked header and the
/// bounded tail of each.
fn panther_output(logs: &[(String, String)]) -> String {
    let mut out = String::new();
    for (path, content) in logs {
        let bytes = content.len() as u64;
        let start = content
            .len()
            .saturating_sub(sysprep::panther::TAIL_BYTES as usize);
        let start = (start..=content.len())
            .find(|&i| content.is_char_boundary(i))
            .unwrap_or(content.len());
        let tail = &content[start..];
        out.push_str(sysprep::panther::PANTHER_MARKER);
        out.push_str(
            &serde_json::json!({"path": path, "bytes": bytes, "tailBytes": tail.len()}).to_string(),
        );
        out.push('\n');
        out.push_str(tail);
        if !tail.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// What the fleetprep identity snippet prints on this instance.
fn identity_json(instance: &SimInstance) -> String {
    serde_json::json!({
        "ComputerName": instance.computer_name,
        "MachineSid": instance.machine_sid,
        "Generalized": instance.generalized,
    })
    .to_string()
}

/// The console's timestamp format (`2020/08/13 17:25:12Z`, "Troubleshoot EC2Launch v2").
fn console_time(at: SystemTime) -> String {
    clock::format_rfc3339_seconds(at)
        .replacen('-', "/", 2)
        .replace('T', " ")
}

/// EC2's answer for an instance id it does not know.
fn instance_not_found(id: &str) -> CloudError {
    CloudError::not_found(
        "InvalidInstanceID.NotFound",
        format!("The instance ID '{id}' does not exist"),
    )
}

/// The one path behind StartInstances, StopInstances and TerminateInstances. EC2 checks the
/// whole request before it changes anything: an unknown id fails the call with
/// `InvalidInstanceID.NotFound` naming every unknown id, an instance in the wrong state (`refused`
/// returns the message) fails it with `IncorrectInstanceState`, and in both cases no instance
/// changes (EC2 API reference, TerminateInstances: "If you specify multiple instances and the
/// request fails (for example, because of a single incorrect instance ID), none of the instances
/// are terminated"; StartInstances naming one terminated instance among stopped ones starts
/// none). Only then is `apply` run for each id in request order, with the state the instance is
/// in just before its change and the call's time.
fn change_instance_states(
    sim: &SimCloud,
    operation: &str,
    instance_ids: &[String],
    refused: impl Fn(&str, &SimInstance) -> Option<String>,
    mut apply: impl FnMut(&mut World, &str, InstanceState, SystemTime),
) -> Result<Vec<InstanceStateChange>, CloudError> {
    let mut world = sim.lock();
    sim.api_call(&mut world, operation)?;
    let now = sim.clock.now();
    let mut missing: Vec<&str> = Vec::new();
    for id in instance_ids {
        if !world.instances.contains_key(id) && !missing.contains(&id.as_str()) {
            missing.push(id);
        }
    }
    match missing.as_slice() {
        [] => {}
        [one] => return Err(instance_not_found(one)),
        many => {
            return Err(CloudError::not_found(
                "InvalidInstanceID.NotFound",
                format!("The instance IDs '{}' do not exist", many.join(", ")),
            ));
        }
    }
    for id in instance_ids {
        if let Some(instance) = world.instances.get(id)
            && let Some(message) = refused(id, instance)
        {
            return Err(CloudError::incorrect_state(
                "IncorrectInstanceState",
                message,
            ));
        }
    }
    let mut out = Vec::with_capacity(instance_ids.len());
    for id in instance_ids {
        let Some(previous) = world.instances.get(id).map(|i| i.state) else {
            continue;
        };
        apply(&mut world, id, previous, now);
        let current = world.instances.get(id).map_or(previous, |i| i.state);
        out.push(InstanceStateChange {
            instance_id: id.clone(),
            previous_state: previous,
            current_state: current,
        });
    }
    Ok(out)
}

fn no_active_action(hook: &LifecycleHookRef) -> CloudError {
    CloudError::invalid_parameter(
        "ValidationError",
        format!(
            "No active Lifecycle Action found with instance ID {} (hook {}, group {})",
            hook.instance_id, hook.lifecycle_hook_name, hook.auto_scaling_group_name
        ),
    )
}

/// The name a (possibly batched) rename script gives `instance_id`: the `'i-…' = 'X'` entry
/// of the per-instance table, or else the single literal name (`$desired = 'X'` as the
/// `sysprep` crate writes it, or `-NewName 'X'`).
fn rename_target(script: &str, instance_id: &str) -> Option<String> {
    let key = format!("'{instance_id}' = '");
    let start = script.find(&key).map(|at| at + key.len()).or_else(|| {
        ["$desired = '", "-NewName '"]
            .iter()
            .find_map(|open| script.find(open).map(|at| at + open.len()))
    })?;
    script[start..].split('\'').next().map(str::to_string)
}

fn extract_between(text: &str, open: &str, close: &str) -> Option<String> {
    let start = text.find(open)? + open.len();
    let end = text[start..].find(close)? + start;
    Some(text[start..end].trim().to_string())
}

/// A stable 64-bit hash of (seed, key): splitmix64 over FNV-1a. Deterministic across runs and
/// platforms, unlike `std`'s randomly keyed hasher.
fn mix(seed: u64, key: &str) -> u64 {
    // FNV-1a from the standard offset basis xor the seed.
    use std::hash::Hasher as _;
    let mut fnv = fnv::FnvHasher::with_key(0xcbf2_9ce4_8422_2325 ^ seed);
    fnv.write(key.as_bytes());
    let mut z = fnv.finish().wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn sid_hex(seed: u64, key: &str) -> String {
    format!("{:016x}", mix(seed, key))
}

/// A machine SID (`S-1-5-21-a-b-c`) derived from the key.
fn sid(seed: u64, key: &str) -> String {
    let h = mix(seed, key);
    let g = mix(seed ^ 0x5eed, key);
    format!("S-1-5-21-{}-{}-{}", h as u32, (h >> 32) as u32, g as u32)
}

/// setupact.log lines (Panther) for a validation failure, in the real format.
const PANTHER_VALIDATION_FAILED: &str = "2026-11-26 15:04:11, Error                 SYSPRP Sysprep_Clean_Validate_Opk: There are one or more Windows updates that require a reboot.\n2026-11-26 15:04:11, Error                 SYSPRP ActionPlatform::LaunchModule: Failure occurred while executing 'Sysprep_Clean_Validate_Opk' from C:\\Windows\\System32\\spopk.dll; dwRet = 0x3cf2\n2026-11-26 15:04:11, Error                 SYSPRP SysprepSession::Validate: Error in validating actions from C:\\Windows\\System32\\Sysprep\\ActionFiles\\Cleanup.xml; dwRet = 0x3cf2\n2026-11-26 15:04:11, Error      [0x0f0070] SYSPRP RunDlls:An error occurred while running registry sysprep DLLs, halting sysprep execution. dwRet = 0x3cf2\nSysprep was not able to validate your Windows installation.\n";

/// setupact.log lines (Panther) of a generalize that succeeded.
const PANTHER_GENERALIZED: &str = "2026-11-26 15:04:11, Info                  SYSPRP ========================================================\n2026-11-26 15:04:11, Info                  SYSPRP ===          Beginning of a new sysprep run          ===\n2026-11-26 15:04:12, Info       [0x0f004d] SYSPRP WinMain:Processing 'generalize' internal provider...\n2026-11-26 15:09:40, Info                  SYSPRP ActionPlatform::LaunchModule: Successfully executed 'Sysprep_Generalize_Bcd' from C:\\Windows\\System32\\spbcd.dll\n2026-11-26 15:10:02, Info       [0x0f0052] SYSPRP WinMain:Sysprep successfully completed\n";

/// The per-user package the AppX fault installs.
const APPX_BLOCKER: &str = "Microsoft.BingWeather_4.53.51922.0_x64__8wekyb3d8bbwe";

/// What `sysprep::preflight::preflight_script` prints on this instance.
fn preflight_json(instance: &SimInstance, now: SystemTime) -> String {
    let bitlocker_on = instance
        .bitlocker
        .is_some_and(|at| at.is_none_or(|at| at > now));
    let blockers: Vec<serde_json::Value> = if instance.appx_blocker {
        vec![serde_json::json!({
            "packageFullName": APPX_BLOCKER,
            "packageFamilyName": "Microsoft.BingWeather_8wekyb3d8bbwe",
            "version": "4.53.51922.0",
            "provisionedVersion": "4.25.20211.0",
            "signatureKind": "Store",
            "users": ["Administrator"],
        })]
    } else {
        vec![]
    };
    let report = serde_json::json!({
        "appxBlockers": blockers,
        "upgradedOs": false,
        "pendingReboot": {
            "cbsRebootPending": instance.reboot_pending,
            "windowsUpdateRebootRequired": false,
            "pendingFileRenameOperations": false,
        },
        "rearmCount": 1001,
        "bitlocker": if bitlocker_on {
            serde_json::json!({"protectionStatus": "On", "volumeStatus": "FullyEncrypted"})
        } else {
            serde_json::json!({"protectionStatus": "Off", "volumeStatus": "FullyDecrypted"})
        },
        "agent": "ec2launch-v2",
        "agentRunOnceRecorded": false,
        "copyProfile": false,
        "domain": {"partOfDomain": false, "domain": "WORKGROUP"},
        "systemDrive": "C:",
        "freeDiskBytes": 45_634_027_520u64,
        "errors": [],
    });
    format!("{}{report}", sysprep::preflight::PREFLIGHT_MARKER)
}

/// setupact.log lines for the AppX provider's failure (KB2769827).
const PANTHER_APPX_FAILED: &str = "2026-11-26 15:04:11, Error                 SYSPRP Package Microsoft.BingWeather_4.53.51922.0_x64__8wekyb3d8bbwe was installed for a user, but not provisioned for all users. This package will not function properly in the sysprep image.\n2026-11-26 15:04:11, Error                 SYSPRP Failed to remove apps for the current user: 0x80073cf2.\n2026-11-26 15:04:11, Error      [0x0f0082] SYSPRP ActionPlatform::LaunchModule: Failure occurred while executing 'SysprepGeneralizeValidate' from C:\\Windows\\System32\\AppxSysprep.dll; dwRet = 0x3cf2\n";

/// setupact.log lines for BitLocker on the OS volume ("Troubleshoot Sysprep with Amazon EC2
/// Windows instances").
const PANTHER_BITLOCKER_FAILED: &str = "2026-11-26 15:04:11, Error      [0x0f0082] SYSPRP ActionPlatform::LaunchModule: Failure occurred while executing 'ValidateBitLockerState' from C:\\Windows\\System32\\BdeSysprep.dll; dwRet = 0x80310039\n2026-11-26 15:04:11, Error      [0x0f0070] SYSPRP RunExternalDlls:An error occurred while running registry sysprep DLLs, halting sysprep execution. dwRet = 0x80310039\n";

/// The Panther line Sysprep writes for an AppX blocker (for console/diagnostics).
pub const PANTHER_APPX_LINE: &str = "2026-11-26 15:04:11, Error                 SYSPRP Package Microsoft.BingWeather_4.53.51922.0_x64__8wekyb3d8bbwe was installed for a user, but not provisioned for all users. This package will not function properly in the sysprep image.";
