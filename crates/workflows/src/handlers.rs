//! The task handlers: one async fn per `action`, each `(Request, &Context) -> Result<Response>`
//! with a serde request type, listed once in [`ACTIONS`] with the Cloud operations it may call.
//!
//! Polling handlers (`check_*`) never loop: they look once and answer `{"done": bool, ...}`;
//! the state machine's Wait + Choice loop calls them again. They receive a `wait` object
//! (`since`, `last_heartbeat`) that a Pass state initialises from `$$.State.EnteredTime` and each
//! poll hands back updated, so deadlines and lifecycle heartbeats are computed from the clock
//! without any handler-side state.

use std::time::{Duration, SystemTime};

use cloud::{
    CloudError, CommandStatus, CompleteLifecycleActionRequest, CreateImageRequest,
    CreateLaunchTemplateVersionRequest, ImageState, InstanceRefreshStatus, InstanceState,
    LaunchTemplateRef, LifecycleActionResult, LifecycleHookRef, PingStatus, RunInstancesRequest,
    SecretRef, SendCommandRequest, StartInstanceRefreshRequest, Tag,
};
use std::future::Future;
use std::pin::Pin;

use cloud::iam::Operation::{self, *};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::batch::{CommandSpec, DOCUMENT};
use crate::errors::{self, HandlerError};
use crate::metrics::Outcome;
use crate::{BakeConfig, Context, NamingMode, Settings, scripts, shape};
use sysprep::agent::LaunchAgent;
use sysprep::commands::{self, NameSource, RenameRestart, SysprepOptions};
use sysprep::diagnose::{Category, DiagnosisContext};

/// The SSM document that installs Windows updates (AWS-UpdateWindowsAmi's update step). A
/// deployment's `ssm:SendCommand` permission must name it beside `AWS-RunPowerShellScript`.
pub const WINDOWS_UPDATES_DOCUMENT: &str = "AWS-InstallWindowsUpdates";

/// One action of the function: its name (the ASL `Payload.action`), its request type, its
/// handler and the Cloud operations it may call.
pub struct Action {
    /// The `action` field of the payload.
    pub name: &'static str,
    /// The Cloud operations the handler may call; its IAM actions (and the deployed role's
    /// policy) derive from these through `cloud::iam` ([`crate::iam`]).
    pub operations: &'static [Operation],
    /// The request type's Rust name, for messages.
    pub request_type: &'static str,
    /// The request type's field names as serde reads them.
    pub request_fields: fn() -> &'static [&'static str],
    /// Whether a payload building exactly these fields (besides the envelope) deserializes into
    /// the request type; the error is serde's and names the field. Checks names, not values.
    pub check_fields: fn(&[&str]) -> Result<(), String>,
    call: for<'a> fn(Value, &'a Context) -> Pending<'a>,
}

type Pending<'a> = Pin<Box<dyn Future<Output = Result<Value, HandlerError>> + Send + 'a>>;

impl Action {
    /// Runs the handler on a payload whose envelope (`action`, `execution`, `state`) is gone.
    pub(crate) fn call<'a>(&self, request: Value, context: &'a Context) -> Pending<'a> {
        (self.call)(request, context)
    }
}

/// The payload fields every task sends besides its request: which action, and the execution
/// and state the client tokens derive from ([`crate::Task`]).
pub const ENVELOPE: [&str; 3] = ["action", "execution", "state"];

/// One table row: the handler is `async fn(Request, &Context) -> Result<impl Serialize, _>`.
macro_rules! action {
    ($name:literal, $request:ty, $handler:path, [$($operation:ident),* $(,)?]) => {
        Action {
            name: $name,
            operations: &[$($operation),*],
            request_type: stringify!($request),
            request_fields: shape::fields::<$request>,
            check_fields: shape::check::<$request>,
            call: {
                fn call<'a>(request: Value, ctx: &'a Context) -> Pending<'a> {
                    Box::pin(async move {
                        let request: $request = parse($name, request)?;
                        respond($handler(request, ctx).await?)
                    })
                }
                call
            },
        }
    };
}

/// Every action, its request type, its handler and the Cloud operations it may call: the one
/// table [`crate::dispatch`], [`crate::iam`] (and so the deployed IAM policy) and the Lambda
/// read, and the one the ASL contract test checks every Task's payload against.
pub static ACTIONS: &[Action] = &[
    action!(
        "launch_builder",
        LaunchBuilder,
        launch_builder,
        [RunInstances]
    ),
    action!(
        "check_ssm_online",
        CheckSsmOnline,
        check_ssm_online,
        [
            DescribeInstanceInformation,
            // With batching, a poll first makes sure the batched SendCommand went out.
            SendCommand,
            RecordLifecycleActionHeartbeat,
        ]
    ),
    action!("send_command", SendCommand, send_command, [SendCommand]),
    action!(
        "check_command",
        CheckCommand,
        check_command,
        [
            // With batching, checking a ticket flushes the batch it is in.
            SendCommand,
            // A batched command's status comes from one listing of the whole command; a
            // finished invocation whose listed output is partial is read whole.
            ListCommandInvocations,
            GetCommandInvocation,
            RecordLifecycleActionHeartbeat,
            // A builder terminated during Sysprep never reports its command's end.
            DescribeInstances,
        ]
    ),
    action!("check_secrets", CheckSecrets, check_secrets, [CheckSecret]),
    action!(
        "check_stopped",
        CheckStopped,
        check_stopped,
        [
            DescribeInstances,
            // A shutdown stuck in `stopping` is forced.
            StopInstances,
            // Sysprep's own command is checked while the instance still runs (batched: a
            // check flushes the batch it is in).
            GetCommandInvocation,
            ListCommandInvocations,
            SendCommand,
        ]
    ),
    action!(
        "stop_instance",
        InstanceRequest,
        stop_instance,
        [StopInstances]
    ),
    // Pure: decides the next remediation round from the failure, no cloud call.
    action!("plan_remedy", PlanRemedy, plan_remedy, []),
    action!("create_image", CreateImage, create_image, [CreateImage]),
    action!("check_image", CheckImage, check_image, [DescribeImages]),
    action!("tag_image", TagImage, tag_image, [CreateTags]),
    action!(
        "terminate_instance",
        InstanceRequest,
        terminate_instance,
        [TerminateInstances]
    ),
    action!(
        "collect_diagnostics",
        CollectDiagnostics,
        collect_diagnostics,
        [GetConsoleOutput]
    ),
    action!(
        "cleanup_bake",
        CleanupBake,
        cleanup_bake,
        [TerminateInstances, DeregisterImage]
    ),
    action!(
        "publish_outcome",
        PublishOutcome,
        publish_outcome,
        // EMF lines in the function's log: no API call.
        []
    ),
    action!("naming_settings", NoRequest, naming_settings, []),
    action!(
        "allocate_hostname",
        AllocateHostname,
        allocate_hostname,
        [NamePoolAllocate]
    ),
    // The `user-data` rename method: the leased name as the instance's tag.
    action!("tag_hostname", TagHostname, tag_hostname, [CreateTags]),
    action!(
        "confirm_hostname",
        InstanceRequest,
        confirm_hostname,
        [NamePoolConfirm]
    ),
    action!(
        "release_hostname",
        InstanceRequest,
        release_hostname,
        [NamePoolRelease]
    ),
    action!("verify_identity", VerifyIdentity, verify_identity, []),
    action!(
        "complete_lifecycle",
        CompleteLifecycle,
        complete_lifecycle,
        [CompleteLifecycleAction, RecordLifecycleActionHeartbeat]
    ),
    action!(
        "create_template_version",
        CreateTemplateVersion,
        create_template_version,
        [
            DescribeDefaultLaunchTemplateVersion,
            CreateLaunchTemplateVersion,
            SetDefaultLaunchTemplateVersion,
        ]
    ),
    action!(
        "start_refresh",
        StartRefresh,
        start_refresh,
        [StartInstanceRefresh]
    ),
    action!(
        "check_refresh",
        CheckRefresh,
        check_refresh,
        [DescribeInstanceRefresh]
    ),
    action!(
        "rollback_template",
        RollbackTemplate,
        rollback_template,
        [SetDefaultLaunchTemplateVersion]
    ),
];

/// The table row of `name`, or None for an unknown action.
pub fn action(name: &str) -> Option<&'static Action> {
    ACTIONS.iter().find(|action| action.name == name)
}

/// Every action name, in table order.
pub fn actions() -> impl Iterator<Item = &'static str> {
    ACTIONS.iter().map(|action| action.name)
}

fn parse<T: DeserializeOwned>(action: &str, request: Value) -> Result<T, HandlerError> {
    serde_json::from_value(request).map_err(|error| {
        HandlerError::new(
            errors::INVALID_INPUT,
            format!("action {action:?}: payload: {error}"),
        )
    })
}

fn respond(response: impl Serialize) -> Result<Value, HandlerError> {
    serde_json::to_value(response)
        .map_err(|error| HandlerError::new(errors::INVALID_INPUT, format!("response: {error}")))
}

// ==================================================================== request types

/// A request naming one instance.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceRequest {
    /// The EC2 instance ID (`i-...`).
    pub instance_id: String,
}

/// A request with no fields (besides the envelope).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoRequest {}

/// The polling state a `check_*` state hands back: the previous answer, of which only these
/// fields are read (the rest, such as `done` and `output`, is ignored on purpose).
#[derive(Debug, Default, Deserialize)]
pub struct WaitState {
    /// RFC 3339 time the wait started; deadlines count from it.
    pub since: Option<String>,
    /// RFC 3339 time of the last lifecycle-action heartbeat sent (default `since`).
    pub last_heartbeat: Option<String>,
    /// Whether a forced stop was already issued (`check_stopped`), so it is sent only once.
    pub forced: Option<bool>,
}

impl WaitState {
    /// No previous poll: the wait starts now.
    const EMPTY: WaitState = WaitState {
        since: None,
        last_heartbeat: None,
        forced: None,
    };
}

/// The lifecycle hook an instance waits on: the EventBridge event's `detail` (Auto Scaling user
/// guide, "Amazon EventBridge events for Amazon EC2 Auto Scaling"); other detail fields pass.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Hook {
    /// `AutoScalingGroupName`: the group the instance belongs to.
    pub auto_scaling_group_name: String,
    /// `LifecycleHookName`: the hook holding the instance in `Pending:Wait` or `Terminating:Wait`.
    pub lifecycle_hook_name: String,
    /// `EC2InstanceId`: the instance the action is for.
    #[serde(rename = "EC2InstanceId")]
    pub ec2_instance_id: String,
    /// `LifecycleActionToken`: identifies this lifecycle action to CompleteLifecycleAction.
    pub lifecycle_action_token: Option<String>,
}

impl Hook {
    fn reference(&self) -> LifecycleHookRef {
        LifecycleHookRef {
            auto_scaling_group_name: self.auto_scaling_group_name.clone(),
            lifecycle_hook_name: self.lifecycle_hook_name.clone(),
            instance_id: self.ec2_instance_id.clone(),
            lifecycle_action_token: self.lifecycle_action_token.clone(),
        }
    }
}

/// `launch_builder`: starts the bake's builder instance from the base AMI.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchBuilder {
    /// The bake's configuration (base AMI, instance type, network, instance profile).
    pub config: BakeConfig,
}

/// `check_ssm_online`: one poll for the instance's SSM agent to report `Online`
/// (optionally under an expected computer name).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSsmOnline {
    /// The EC2 instance ID (`i-...`).
    pub instance_id: String,
    /// The lifecycle hook the instance waits on, if any: heartbeats keep it alive while
    /// the poll waits.
    pub hook: Option<Hook>,
    /// The ticket of a batched command this wait follows (a rename's reboot), sent now if
    /// still queued.
    pub ticket: Option<String>,
    /// The computer name the agent must report (after a rename); `None` accepts any.
    pub expected_name: Option<String>,
    /// Seconds from the first poll before the wait fails (default the settings'
    /// `ssm_timeout_seconds`).
    pub timeout_seconds: Option<u64>,
    /// The previous poll's answer (absent on the first poll, when the wait starts now).
    pub wait: Option<WaitState>,
    /// The longest the execution can go from this poll to its next one that may record a
    /// heartbeat (the Waits on the way); see [`heartbeat_due`].
    pub next_poll_within_seconds: Option<u64>,
}

/// `send_command`: runs one of fleetprep's PowerShell commands on an instance through SSM
/// (batched with other instances' commands when a batcher is present).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendCommand {
    /// The EC2 instance ID (`i-...`).
    pub instance_id: String,
    /// Which command: `rename`, `generalize`, `identity`, `detect-agent`, `preflight`,
    /// `sysprep`, `customization`, `cleanup`, `image-state`, `panther`, `secrets-check`,
    /// `remedy` or `windows-updates`.
    pub kind: String,
    /// The instance's table value (a hostname for `rename`/`generalize`).
    pub value: Option<String>,
    /// `sysprep`: the builder's launch agent as `detect-agent` reported it.
    pub agent: Option<String>,
    /// `customization`/`cleanup`: the PowerShell to run.
    pub script: Option<String>,
    /// `secrets-check`: the secrets the builder must be able to read.
    pub secrets: Option<Vec<SecretRef>>,
    /// `remedy`: the plan `plan_remedy` answered.
    pub plan: Option<Value>,
}

/// `check_command`: one poll of a command `send_command` started.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckCommand {
    /// The EC2 instance ID (`i-...`) the command runs on.
    pub instance_id: String,
    /// What `send_command` answered: `ssm:COMMAND_ID`, or a batcher's ticket.
    pub ticket: String,
    /// The command's kind, as given to `send_command` (for messages and output parsing).
    pub kind: String,
    /// The lifecycle hook the instance waits on, if any: heartbeats keep it alive while
    /// the poll waits.
    pub hook: Option<Hook>,
    /// Seconds from the first poll before the wait fails with `Fleetprep.Timeout` (default 1800).
    pub timeout_seconds: Option<u64>,
    /// The previous poll's answer (absent on the first poll, when the wait starts now).
    pub wait: Option<WaitState>,
    /// The longest the execution can go from this poll to its next one that may record a
    /// heartbeat (the Waits on the way); see [`heartbeat_due`].
    pub next_poll_within_seconds: Option<u64>,
}

/// `check_secrets`: checks that every secret a bake's scripts read exists, without reading it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSecrets {
    /// The secrets to check, by reference.
    #[serde(default)]
    pub secrets: Vec<SecretRef>,
}

/// `check_stopped`: one poll for the builder to reach `stopped` after Sysprep.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckStopped {
    /// The builder's EC2 instance ID (`i-...`).
    pub instance_id: String,
    /// The Sysprep command's ticket: while the instance runs, a failed command fails the
    /// wait with `Fleetprep.SysprepFailed`.
    pub ticket: Option<String>,
    /// Seconds of `stopping` after which a forced StopInstances is sent once (default 1500).
    pub force_after_seconds: Option<u64>,
    /// Seconds from the first poll before the wait fails with `Fleetprep.Timeout` (default 3600).
    pub timeout_seconds: Option<u64>,
    /// The previous poll's answer (absent on the first poll, when the wait starts now).
    pub wait: Option<WaitState>,
}

/// `create_image`: creates the AMI from the stopped builder (idempotent per attempt).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateImage {
    /// The stopped builder's EC2 instance ID.
    pub instance_id: String,
    /// The AMI name prefix (default `fleetprep`); a suffix from the client token makes it unique.
    pub name: Option<String>,
    /// The retry of a failed image (Client.InternalError): a new image, new token and name.
    pub attempt: Option<u64>,
}

/// `plan_remedy`: decides the next remediation round of a self-healing bake.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRemedy {
    /// The failure the bake caught.
    pub error: Option<CaughtError>,
    /// The `panther` command's answer (`stdout`).
    pub panther: Option<Value>,
    /// The rounds already run (`rounds`, `history`).
    pub remediation: Option<Value>,
    /// The `[bake.remediation]` toggles.
    pub settings: Option<Value>,
}

/// `check_image`: one poll for the new AMI to become `available`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckImage {
    /// The AMI ID (`ami-...`).
    pub image_id: String,
    /// Seconds from the first poll before the wait fails with `Fleetprep.Timeout` (default 3600).
    pub timeout_seconds: Option<u64>,
    /// The previous poll's answer (absent on the first poll, when the wait starts now).
    pub wait: Option<WaitState>,
}

/// `tag_image`: marks the finished AMI `fleetprep:state=available` and adds the bake's tags.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagImage {
    /// The AMI ID (`ami-...`).
    pub image_id: String,
    /// Extra tags, key to value (non-string values are tagged as their JSON text).
    pub tags: Option<serde_json::Map<String, Value>>,
}

/// A Catch's error output (`{"Error": ..., "Cause": ...}`).
#[derive(Debug, Default, Deserialize)]
pub struct CaughtError {
    /// The error name (`Fleetprep.Timeout`, `States.TaskFailed`, …).
    #[serde(rename = "Error")]
    pub error: Option<String>,
    /// The cause text; for Lambda failures a JSON `{"errorMessage", "errorType"}` object.
    #[serde(rename = "Cause")]
    pub cause: Option<String>,
}

/// `collect_diagnostics`: classifies a failed bake or hook from its error, Sysprep's Panther
/// log and the instance's console output.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectDiagnostics {
    /// The failure the state machine caught.
    pub error: Option<CaughtError>,
    /// The instance whose console output to read, if it still exists.
    pub instance_id: Option<String>,
    /// The `panther` command's answer (`stdout`).
    pub panther: Option<Value>,
}

/// `cleanup_bake`: terminates a failed bake's builder and deregisters its unfinished AMI
/// (either may already be gone).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanupBake {
    /// The builder to terminate, if one was launched.
    pub instance_id: Option<String>,
    /// The AMI to deregister, if one was created.
    pub image_id: Option<String>,
}

/// `publish_outcome`: puts a workflow's outcome and duration to CloudWatch metrics.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishOutcome {
    /// The state machine: `bake`, `name-on-launch`, `release-on-terminate` or `rollout`.
    pub workflow: String,
    /// `succeeded` or `failed`.
    pub outcome: String,
    /// The failure category (from `collect_diagnostics`, or the error name), when failed.
    pub category: Option<String>,
    /// RFC 3339 start of the execution (`$$.Execution.StartTime`); the duration counts from it.
    pub started: Option<String>,
}

/// `tag_hostname`: tags a launching instance with its leased hostname (`fleetprep:hostname`),
/// which its user data reads from instance metadata and renames itself to (the `user-data`
/// rename method).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagHostname {
    /// The EC2 instance ID to tag.
    pub instance_id: String,
    /// The hostname leased to it (`allocate_hostname`'s answer).
    pub hostname: String,
}

/// `allocate_hostname`: leases a unique hostname for a launching instance (idempotent per
/// instance).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllocateHostname {
    /// The EC2 instance ID the lease is keyed on.
    pub instance_id: String,
    /// The instance's Availability Zone, for patterns that name the zone.
    pub availability_zone: Option<String>,
}

/// What the identity command reported.
#[derive(Debug, Default, Deserialize)]
pub struct Identity {
    /// `$env:COMPUTERNAME` on the instance.
    pub computer_name: Option<String>,
    /// The machine SID (`S-1-5-21-...`).
    pub machine_sid: Option<String>,
}

/// `verify_identity`: checks that the instance took its leased name (and, after Sysprep, a
/// new machine SID).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyIdentity {
    /// The leased hostname the computer must now carry (compared case-insensitively).
    pub expected_name: String,
    /// What the `identity` command reported after the rename.
    pub identity: Identity,
    /// The naming mode: `sysprep` also requires the SID to have changed.
    pub mode: Option<String>,
    /// The machine SID before generalizing.
    pub before_sid: Option<String>,
}

/// `complete_lifecycle`: ends the instance's lifecycle action (CompleteLifecycleAction).
///
/// With `wait` it is a poll of its own (`name-on-launch`'s `Continue` loop): a throttled call
/// answers `done: false` and the seconds to wait before the next attempt (`retry_seconds`,
/// a jittered backoff that grows with the time spent in the loop), and records a heartbeat
/// when the hook could otherwise time out before that attempt. Without `wait`, throttling
/// fails the task with `Fleetprep.Throttled` for the state's Retry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteLifecycle {
    /// The lifecycle action to complete.
    pub hook: Hook,
    /// `CONTINUE` (put the instance in service, or let it terminate) or `ABANDON`.
    pub result: String,
    /// The previous attempt's answer; present, the task paces itself (see above).
    pub wait: Option<WaitState>,
}

/// `create_template_version`: creates a launch template version with the new AMI from the
/// default version and makes it the default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTemplateVersion {
    /// The launch template (`lt-...`).
    pub launch_template_id: String,
    /// The AMI the new version launches (`ami-...`).
    pub image_id: String,
}

/// `start_refresh`: starts an instance refresh of the group onto a launch template version.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRefresh {
    /// The Auto Scaling group's name.
    pub group: String,
    /// The launch template (`lt-...`) the refresh moves the group to.
    pub launch_template_id: String,
    /// A version number or `$Latest`/`$Default`.
    pub version: Value,
    /// Percentage of the group's capacity that must stay healthy during the refresh (default 90).
    pub min_healthy_percentage: Option<u32>,
    /// Seconds a new instance warms up before counting as healthy (default 300).
    pub instance_warmup_seconds: Option<u32>,
    /// Percentages of replaced instances at which the refresh pauses (default none).
    pub checkpoint_percentages: Option<Vec<u32>>,
    /// Seconds the refresh waits at each checkpoint (default 0).
    pub checkpoint_delay_seconds: Option<u32>,
}

/// `check_refresh`: one poll of an instance refresh's status.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRefresh {
    /// The Auto Scaling group's name.
    pub group: String,
    /// The `InstanceRefreshId` `start_refresh` answered.
    pub refresh_id: String,
    /// Seconds from the first poll before the wait fails with `Fleetprep.Timeout` (default 6 hours).
    pub timeout_seconds: Option<u64>,
    /// The previous poll's answer (absent on the first poll, when the wait starts now).
    pub wait: Option<WaitState>,
}

/// `rollback_template`: makes the previous launch template version the default again.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackTemplate {
    /// The launch template (`lt-...`).
    pub launch_template_id: String,
    /// The version number to restore as default (what `create_template_version` answered
    /// as `previous_version`).
    pub previous_version: i64,
}

// ==================================================================== payload helpers

fn time_of(value: Option<&str>, fallback: SystemTime) -> SystemTime {
    value.and_then(clock::parse_rfc3339).unwrap_or(fallback)
}

fn ts(time: SystemTime) -> String {
    clock::format_rfc3339(time)
}

/// A stable idempotency token (≤ 64 chars) from the execution id and the state name.
fn client_token(ctx: &Context, purpose: &str) -> String {
    let (execution, state) = (&ctx.task.execution, &ctx.task.state);
    format!(
        "fp-{purpose}-{:016x}",
        stable_hash(&format!("{execution}|{state}|{purpose}"))
    )
}

fn stable_hash(text: &str) -> u64 {
    use std::hash::Hasher as _;
    let mut fnv = fnv::FnvHasher::default();
    fnv.write(text.as_bytes());
    fnv.finish()
}

fn cloud_err(context: &str) -> impl FnOnce(CloudError) -> HandlerError + '_ {
    move |error| HandlerError::from_cloud(context, error)
}

/// The polling state carried between `check_*` calls.
struct Wait {
    now: SystemTime,
    since: SystemTime,
    last_heartbeat: SystemTime,
    forced: bool,
}

impl Wait {
    fn from(wait: Option<&WaitState>, ctx: &Context) -> Self {
        let now = ctx.clock.now();
        let wait = wait.unwrap_or(&WaitState::EMPTY);
        let since = time_of(wait.since.as_deref(), now);
        Wait {
            now,
            since,
            last_heartbeat: time_of(wait.last_heartbeat.as_deref(), since),
            forced: wait.forced.unwrap_or(false),
        }
    }

    fn elapsed(&self) -> Duration {
        self.now.duration_since(self.since).unwrap_or_default()
    }

    fn expired(&self, timeout_seconds: Option<u64>, default_seconds: u64) -> bool {
        self.elapsed() >= Duration::from_secs(timeout_seconds.unwrap_or(default_seconds))
    }

    fn answer(&self, done: bool, extra: Value) -> Value {
        let mut out = json!({
            "done": done,
            "since": ts(self.since),
            "last_heartbeat": ts(self.last_heartbeat),
            "forced": self.forced,
            "elapsed_seconds": self.elapsed().as_secs(),
            "output": null,
        });
        if let (Some(out), Value::Object(extra)) = (out.as_object_mut(), extra) {
            out.extend(extra);
        }
        out
    }

    fn since_last_heartbeat(&self) -> Duration {
        self.now
            .duration_since(self.last_heartbeat)
            .unwrap_or_default()
    }

    /// How long the hook has left from the last heartbeat (zero once it may have timed out).
    fn until_hook_timeout(&self, ctx: &Context) -> Duration {
        hook_timeout(ctx).saturating_sub(self.since_last_heartbeat())
    }

    /// Records a lifecycle heartbeat when [`heartbeat_due`] says the hook could time out
    /// before the next chance to record one, `next_chance_within` from now; true when it did.
    async fn heartbeat(
        &mut self,
        hook: Option<&Hook>,
        ctx: &Context,
        next_chance_within: Duration,
    ) -> Result<bool, HandlerError> {
        let Some(hook) = hook else {
            return Ok(false);
        };
        if !heartbeat_due(
            self.since_last_heartbeat(),
            hook_timeout(ctx),
            next_chance_within,
        ) {
            return Ok(false);
        }
        let hook = hook.reference();
        // Throttled fails the poll with Fleetprep.Throttled: its Retry (full jitter) spreads
        // the fleet's next attempts over time. Skipping it until the next poll would not: the
        // polls of a fleet launched at once come at the same instants, each of which Auto
        // Scaling's bucket admits only its burst of.
        ctx.cloud
            .record_lifecycle_action_heartbeat(hook)
            .await
            .map_err(lifecycle_err("RecordLifecycleActionHeartbeat"))?;
        self.last_heartbeat = self.now;
        Ok(true)
    }
}

/// The lifecycle hook's heartbeat timeout, as the settings give it.
fn hook_timeout(ctx: &Context) -> Duration {
    Duration::from_secs(ctx.settings.hook_timeout_seconds)
}

/// What throttling can add between two polls besides their Waits: two attempts at the longest
/// delay of the poll states' `Fleetprep.Throttled` Retry (`MaxDelaySeconds` 120), or four at
/// that of the tasks between polls (a send, `ConfirmName`: 60). It bounds what a run of
/// throttled attempts costs on average, not the worst case (ten attempts at their caps): a
/// call throttled that often in a row fails its state anyway.
const RETRY_ALLOWANCE: Duration = Duration::from_secs(240);

/// The margin of a poll that does not say when its next poll comes: the longest Wait before a
/// poll in the workflows (`name-on-launch`'s `InitialRenamedWait`).
const LONGEST_WAIT_BEFORE_A_POLL: Duration = Duration::from_secs(300);

/// Whether to record a lifecycle heartbeat now: only when the hook could time out before the
/// next chance to record one (`next_chance_within` from now: for a poll, the Waits before the
/// next poll plus [`RETRY_ALLOWANCE`]; for the completion loop, [`COMPLETION_LEAD`]), and
/// never within a quarter of the timeout of the last one.
///
/// Auto Scaling has one throttling bucket for the whole account (`cloud::sim::quotas`), and
/// every heartbeat is a token a CompleteLifecycleAction does not get: an instance whose
/// naming ends well inside the hook timeout records none. A heartbeat on a fixed interval
/// instead (a quarter to a half of the timeout) cost 100,000 instances launched at once more
/// than one heartbeat each, more than the bucket refills, and launches expired.
fn heartbeat_due(since_last: Duration, timeout: Duration, next_chance_within: Duration) -> bool {
    since_last >= timeout / 4 && since_last + next_chance_within >= timeout
}

/// How close to its hook's timeout the completion loop records a heartbeat rather than only
/// trying to complete: a throttled one is tried again within half the time left (see
/// [`completion_retry`]), about six chances spread over the last minute.
const COMPLETION_LEAD: Duration = Duration::from_secs(60);

/// The longest `Continue` waits between two attempts of a throttled CompleteLifecycleAction.
const COMPLETION_BACKOFF_CAP: Duration = Duration::from_secs(300);

/// The wait before the next attempt of a throttled CompleteLifecycleAction ("Exponential
/// Backoff And Jitter", AWS Architecture Blog: full jitter): uniform over 1 s to a window of
/// twice the time already spent trying (at least 4 s, at most [`COMPLETION_BACKOFF_CAP`]), so
/// the window doubles with each attempt, as a Retry's BackoffRate 2 would, and the attempts
/// of a fleet that finished naming at once spread over Auto Scaling's refill. The draw is a
/// hash of the execution and the attempt's time: the same attempt asks for the same wait.
fn completion_backoff(execution: &str, tried_for: Duration) -> Duration {
    let window = (tried_for * 2).clamp(Duration::from_secs(4), COMPLETION_BACKOFF_CAP);
    full_jitter(execution, tried_for, window)
}

/// Uniform over 1 s to `window` (whole seconds, at least 1 s), drawn from a hash of the
/// execution and the attempt's time (`tried_for`): the same attempt asks for the same wait.
fn full_jitter(execution: &str, tried_for: Duration, window: Duration) -> Duration {
    let draw = stable_hash(&format!("{execution}|{}", tried_for.as_millis()));
    Duration::from_secs(1 + draw % window.as_secs().max(1))
}

/// When a poll has its next chance to record a heartbeat: its `next_poll_within_seconds` (or
/// [`LONGEST_WAIT_BEFORE_A_POLL`] when it gives none) plus [`RETRY_ALLOWANCE`].
fn next_chance_after_poll(seconds: Option<u64>) -> Duration {
    seconds.map_or(LONGEST_WAIT_BEFORE_A_POLL, Duration::from_secs) + RETRY_ALLOWANCE
}

/// The wait before the completion loop's next attempt after a throttled one: the
/// [`completion_backoff`], but never past half the [`COMPLETION_LEAD`] before the hook times
/// out (`remaining`), so the loop is there to record the heartbeat in time; within the lead,
/// a heartbeat that was throttled too is tried again within half the time left. Trying every
/// second or two instead adds no tokens: when tens of thousands of hooks near their timeouts
/// at once, it only multiplied the attempts (and the run's time) while as many expired.
fn completion_retry(
    execution: &str,
    tried_for: Duration,
    remaining: Duration,
    heartbeat_throttled: bool,
) -> Duration {
    if remaining.is_zero() {
        // Past the hook's timeout there is nothing left to keep alive: back off as usual
        // (not every second) until an attempt gets a token and learns the hook's fate
        // (`Fleetprep.LifecycleActionExpired` if it did time out).
        return completion_backoff(execution, tried_for);
    }
    if heartbeat_throttled {
        return full_jitter(execution, tried_for, remaining / 2);
    }
    let latest = remaining.saturating_sub(COMPLETION_LEAD / 2);
    completion_backoff(execution, tried_for)
        .min(latest)
        .max(Duration::from_secs(1))
}

fn lifecycle_err(call: &str) -> impl FnOnce(CloudError) -> HandlerError + '_ {
    move |error| {
        if error.code == "ValidationError" && error.message.contains("No active Lifecycle Action") {
            HandlerError::new(
                errors::LIFECYCLE_ACTION_EXPIRED,
                format!(
                    "{call}: {} (the hook timed out before the workflow finished; raise HeartbeatTimeout or check heartbeats)",
                    error.message
                ),
            )
        } else {
            HandlerError::from_cloud(call, error)
        }
    }
}

// ==================================================================== bake

async fn launch_builder(r: LaunchBuilder, ctx: &Context) -> Result<Value, HandlerError> {
    let config = r.config;
    if config.image_id.is_empty() {
        return Err(HandlerError::new(
            errors::INVALID_INPUT,
            "action \"launch_builder\": payload field \"config.image_id\" is missing",
        ));
    }
    let request = RunInstancesRequest {
        image_id: config.image_id,
        instance_type: config.instance_type,
        count: 1,
        subnet_id: config.subnet_id,
        security_group_ids: config.security_group_ids,
        iam_instance_profile: config.instance_profile,
        user_data: None,
        tags: vec![
            Tag::new("Name", format!("{}-builder", config.name)),
            Tag::new("fleetprep:role", "builder"),
        ],
        client_token: client_token(ctx, "launch"),
        launch_template: None,
    };
    let instances = ctx
        .cloud
        .run_instances(request)
        .await
        .map_err(cloud_err("RunInstances"))?;
    let instance = instances
        .first()
        .ok_or_else(|| HandlerError::new(errors::AWS_ERROR, "RunInstances returned no instance"))?;
    Ok(json!({"instance_id": instance.instance_id}))
}

async fn check_ssm_online(r: CheckSsmOnline, ctx: &Context) -> Result<Value, HandlerError> {
    let instance_id = r.instance_id;
    let mut wait = Wait::from(r.wait.as_ref(), ctx);
    wait.heartbeat(
        r.hook.as_ref(),
        ctx,
        next_chance_after_poll(r.next_poll_within_seconds),
    )
    .await?;
    if let (Some(batcher), Some(ticket)) = (&ctx.batcher, r.ticket) {
        // The command this wait follows may still be queued: send it now.
        batcher
            .ensure_sent(ctx.cloud.as_ref(), &ticket, wait.now)
            .await
            .map_err(cloud_err("SendCommand"))?;
    }
    let info = match &ctx.batcher {
        Some(batcher) => batcher
            .instance_information(ctx.cloud.as_ref(), wait.now, &instance_id)
            .await
            .map_err(cloud_err("DescribeInstanceInformation"))?,
        None => ctx
            .cloud
            .describe_instance_information(std::slice::from_ref(&instance_id))
            .await
            .map_err(cloud_err("DescribeInstanceInformation"))?
            .into_iter()
            .next(),
    };
    let expected = r.expected_name;
    let online = info
        .as_ref()
        .is_some_and(|i| i.ping_status == PingStatus::Online);
    let name_ok = match (&expected, &info) {
        (Some(expected), Some(info)) => {
            sysprep::hostname::ssm_name_matches(&info.computer_name, expected)
        }
        (Some(_), None) => false,
        (None, _) => true,
    };
    let computer_name = info.as_ref().map(|i| i.computer_name.clone());
    if online && name_ok {
        if let Some(batcher) = &ctx.batcher {
            batcher.unwatch(&instance_id);
        }
        // With an expected name the answer is an identity (`computer_name` as SSM reports
        // it), which `verify_identity` reads in the `user-data` rename method.
        let output = match &expected {
            Some(_) => json!({"computer_name": computer_name, "machine_sid": null}),
            None => Value::Null,
        };
        return Ok(wait.answer(
            true,
            json!({"computer_name": computer_name, "output": output}),
        ));
    }
    if wait.expired(r.timeout_seconds, ctx.settings.ssm_timeout_seconds) {
        if let Some(batcher) = &ctx.batcher {
            batcher.unwatch(&instance_id);
        }
        let what = match (&expected, online) {
            (Some(expected), true) if ctx.settings.renames_from_tag() => format!(
                "instance {instance_id} is online as {:?}, not {expected:?}, {} s after it was tagged {}={expected}: its user data never renamed it. Check the launch template: MetadataOptions InstanceMetadataTags must be enabled (\"Work with instance tags in instance metadata\"; without it the tag is not visible on the instance) and the user data must come from `fleetprep userdata render --rename user-data`",
                computer_name.unwrap_or_default(),
                wait.elapsed().as_secs(),
                sysprep::userdata::HOSTNAME_TAG,
            ),
            (Some(expected), true) => format!(
                "instance {instance_id} is online as {:?}, not {expected:?}",
                computer_name.unwrap_or_default()
            ),
            _ => format!(
                "the SSM agent on {instance_id} did not come online within {} s (ping status: {})",
                wait.elapsed().as_secs(),
                info.map(|i| format!("{:?}", i.ping_status))
                    .unwrap_or_else(|| "never registered".into())
            ),
        };
        let name = if expected.is_some() && online {
            errors::VERIFY_FAILED
        } else {
            errors::AGENT_UNREACHABLE
        };
        return Err(HandlerError::new(name, what));
    }
    Ok(wait.answer(false, json!({"computer_name": computer_name})))
}

/// The script template for a command `kind`, the instance's table value and the execution
/// timeout. `settings` picks how a rename is done ([`Settings::rename_method`]); the batcher
/// groups by the rendered template, so commands of different methods never share a send.
#[cfg(test)]
fn command_template(
    r: &SendCommand,
    settings: &Settings,
) -> Result<(Vec<String>, String, u32), HandlerError> {
    command_template_in(r, settings, "")
}

/// The builder's launch agent as `detect-agent` reported it (`agent`); none means plain
/// `sysprep.exe` and no agent password setting.
fn builder_agent(r: &SendCommand) -> Result<LaunchAgent, HandlerError> {
    match &r.agent {
        Some(agent) => agent.parse().map_err(|e| {
            HandlerError::new(
                errors::INVALID_INPUT,
                format!("send_command {}: field \"agent\": {e}", r.kind),
            )
        }),
        None => Ok(LaunchAgent::None),
    }
}

/// [`command_template`] within an execution (a reboot remedy's marker names it).
fn command_template_in(
    r: &SendCommand,
    settings: &Settings,
    execution: &str,
) -> Result<(Vec<String>, String, u32), HandlerError> {
    let kind = &r.kind;
    let value = r.value.clone().unwrap_or_default();
    let invalid = |what: String| HandlerError::new(errors::INVALID_INPUT, what);
    let lines = match kind.as_str() {
        "rename" => scripts::per_instance(
            kind,
            &commands::rename_commands_with(
                NameSource::PerInstance,
                settings.rename_method,
                RenameRestart::SsmExit3010,
            )
            .script(),
        ),
        "generalize" => {
            let sequence =
                commands::generalize_with_name_from(NameSource::PerInstance, &Default::default())
                    .map_err(|e| invalid(format!("send_command generalize: {e}")))?;
            scripts::per_instance(kind, &sequence.script())
        }
        "identity" => scripts::labelled(kind, &sysprep::agent::identity_script()),
        "detect-agent" => scripts::labelled(kind, &sysprep::agent::detection_script()),
        "preflight" => scripts::labelled(kind, &sysprep::preflight::preflight_script(None)),
        "agent-password" => {
            // Issue 10, bug 5: the agent's own randomizer, so no password is in the image.
            let agent = builder_agent(r)?;
            scripts::labelled(kind, &commands::agent_password_script(agent))
        }
        "sysprep" => {
            let agent = builder_agent(r)?;
            // Without shutdown, waited for in the command, as AWS-UpdateWindowsAmi does: a
            // failure is seen while SSM is online, and the bake stops the builder itself.
            let sequence = commands::sysprep_commands(agent, &SysprepOptions::no_shutdown())
                .map_err(|e| invalid(format!("send_command sysprep: {e}")))?;
            scripts::labelled(kind, &sequence.script())
        }
        "customization" | "cleanup" => {
            let script = r.script.as_deref().ok_or_else(|| {
                invalid(format!(
                    "send_command {kind}: payload field \"script\" is missing"
                ))
            })?;
            scripts::user_script(kind, script)
        }
        "image-state" => scripts::labelled(kind, &sysprep::agent::image_state_script()),
        "panther" => scripts::labelled(kind, &sysprep::panther::collection_script()),
        "secrets-check" => {
            let references: Vec<sysprep::unattend::PasswordRef> = r
                .secrets
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|r| match r {
                    SecretRef::SecretsManager { secret_id } => {
                        sysprep::unattend::PasswordRef::SecretsManager {
                            secret_id,
                            json_key: None,
                        }
                    }
                    SecretRef::SsmParameter { name } => {
                        sysprep::unattend::PasswordRef::SsmParameter { name }
                    }
                })
                .collect();
            scripts::labelled(kind, &sysprep::secrets::secret_check_script(&references))
        }
        "remedy" => {
            let plan = r.plan.clone().unwrap_or(Value::Null);
            let script = match plan.get("remedy").and_then(Value::as_str) {
                Some("appx") => {
                    let packages: Vec<String> = plan
                        .get("packages")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default();
                    sysprep::remedy::appx_removal_script(&packages)
                }
                Some("reboot") => sysprep::remedy::reboot_script(&format!(
                    "{}-{}",
                    execution,
                    plan.get("round").and_then(Value::as_u64).unwrap_or(0)
                )),
                Some("bitlocker") => sysprep::remedy::bitlocker_off_script(),
                other => {
                    return Err(invalid(format!(
                        "send_command remedy: plan.remedy {other:?} must be appx, reboot or bitlocker"
                    )));
                }
            };
            scripts::labelled(kind, &script)
        }
        // Sent as the AWS-InstallWindowsUpdates document (see send_command), not a script.
        "windows-updates" => Vec::new(),
        other => {
            return Err(HandlerError::new(
                errors::INVALID_INPUT,
                format!(
                    "send_command: unknown kind {other:?}; expected rename, generalize, identity, detect-agent, preflight, agent-password, sysprep, image-state, panther, secrets-check, remedy, customization or cleanup"
                ),
            ));
        }
    };
    let timeout = match kind.as_str() {
        "sysprep" | "generalize" => 3600,
        // BitLocker's remedy only starts the decryption; a reboot comes back through SSM.
        "remedy" => 3600,
        _ => 1800,
    };
    Ok((lines, value, timeout))
}

async fn send_command(r: SendCommand, ctx: &Context) -> Result<Value, HandlerError> {
    let (template, value, timeout) = command_template_in(&r, &ctx.settings, &ctx.task.execution)?;
    let SendCommand {
        instance_id, kind, ..
    } = r;
    // Only the per-instance fleet commands are batched; a bake's builder is alone, and holding
    // its commands for company would only delay it.
    let batchable = matches!(
        kind.as_str(),
        "rename" | "generalize" | "identity" | "cleanup"
    );
    if let Some(batcher) = ctx.batcher.as_ref().filter(|_| batchable) {
        let ticket = batcher.submit(
            &instance_id,
            CommandSpec {
                template,
                value,
                execution_timeout_seconds: timeout,
                comment: format!("fleetprep {kind}"),
            },
            ctx.clock.now(),
        );
        return Ok(json!({"ticket": ticket}));
    }
    let request = if kind == "windows-updates" {
        // The SSM document AWS-UpdateWindowsAmi uses: it installs the updates and reboots as
        // they need (AllowReboot), resuming after each reboot.
        SendCommandRequest {
            instance_ids: vec![instance_id],
            document_name: WINDOWS_UPDATES_DOCUMENT.into(),
            parameters: [
                ("Action".to_owned(), vec!["Install".to_owned()]),
                ("AllowReboot".to_owned(), vec!["True".to_owned()]),
            ]
            .into_iter()
            .collect(),
            comment: Some(format!("fleetprep {kind}")),
            ..SendCommandRequest::default()
        }
    } else {
        SendCommandRequest {
            instance_ids: vec![instance_id.clone()],
            document_name: DOCUMENT.into(),
            commands: scripts::render(&template, &[(instance_id, value)]),
            execution_timeout_seconds: Some(timeout),
            comment: Some(format!("fleetprep {kind}")),
            ..SendCommandRequest::default()
        }
    };
    let command_id = ctx
        .cloud
        .send_command(request)
        .await
        .map_err(cloud_err("SendCommand"))?;
    Ok(json!({"ticket": format!("ssm:{command_id}")}))
}

async fn invocation(
    ctx: &Context,
    ticket: &str,
    instance_id: &str,
) -> Result<Option<cloud::CommandInvocation>, HandlerError> {
    if let Some(command_id) = ticket.strip_prefix("ssm:") {
        return match ctx
            .cloud
            .get_command_invocation(command_id, instance_id)
            .await
        {
            Ok(invocation) => Ok(Some(invocation)),
            // Shortly after SendCommand the invocation does not exist yet: poll again.
            Err(error) if error.code == "InvocationDoesNotExist" => Ok(None),
            Err(error) => Err(HandlerError::from_cloud("GetCommandInvocation", error)),
        };
    }
    match &ctx.batcher {
        Some(batcher) => batcher
            .check(ctx.cloud.as_ref(), ticket, ctx.clock.now())
            .await
            .map_err(cloud_err("SendCommand/GetCommandInvocation")),
        None => Err(HandlerError::new(
            errors::INVALID_INPUT,
            format!("ticket {ticket:?} is a batched ticket but this process has no batcher"),
        )),
    }
}

async fn check_command(r: CheckCommand, ctx: &Context) -> Result<Value, HandlerError> {
    let CheckCommand {
        instance_id,
        ticket,
        kind,
        ..
    } = &r;
    let mut wait = Wait::from(r.wait.as_ref(), ctx);
    wait.heartbeat(
        r.hook.as_ref(),
        ctx,
        next_chance_after_poll(r.next_poll_within_seconds),
    )
    .await?;
    let Some(invocation) = invocation(ctx, ticket, instance_id).await? else {
        if wait.expired(r.timeout_seconds, 1800) {
            return Err(HandlerError::new(
                errors::TIMEOUT,
                format!("{kind} command on {instance_id} never started (ticket {ticket})"),
            ));
        }
        return Ok(wait.answer(false, json!({"status": "Pending"})));
    };
    match invocation.status {
        CommandStatus::Success => {
            let parsed = interpret(kind, instance_id, &invocation.stdout)?;
            Ok(wait.answer(true, json!({"status": "Success", "output": parsed})))
        }
        CommandStatus::Failed | CommandStatus::TimedOut | CommandStatus::Cancelled => {
            let name = if kind == "sysprep" || kind == "generalize" {
                errors::SYSPREP_FAILED
            } else {
                errors::COMMAND_FAILED
            };
            Err(HandlerError::new(
                name,
                format!(
                    "{kind} command on {instance_id} ended {:?} ({}), exit code {}: {}",
                    invocation.status,
                    invocation.status_details,
                    invocation.response_code,
                    invocation.stderr.trim()
                ),
            ))
        }
        _ if kind == "sysprep" && builder_gone(ctx, instance_id).await? => Err(HandlerError::new(
            errors::INSTANCE_GONE,
            format!("builder {instance_id} was terminated during Sysprep"),
        )),
        _ if wait.expired(r.timeout_seconds, 1800) => Err(HandlerError::new(
            errors::TIMEOUT,
            format!(
                "{kind} command on {instance_id} still {:?} after {} s",
                invocation.status,
                wait.elapsed().as_secs()
            ),
        )),
        _ => Ok(wait.answer(false, json!({"status": format!("{:?}", invocation.status)}))),
    }
}

/// Whether the instance is shutting down or terminated: an instance that goes away while
/// Sysprep runs never reports its command's end.
async fn builder_gone(ctx: &Context, instance_id: &str) -> Result<bool, HandlerError> {
    let instances = ctx
        .cloud
        .describe_instances(&[instance_id.to_owned()])
        .await
        .map_err(cloud_err("DescribeInstances"))?;
    Ok(instances.first().is_none_or(|i| {
        matches!(
            i.state,
            InstanceState::ShuttingDown | InstanceState::Terminated
        )
    }))
}

/// Turns a finished command's stdout into workflow data (and pre-flight blockers into errors),
/// with the `sysprep` crate's parsers.
fn interpret(kind: &str, instance_id: &str, stdout: &str) -> Result<Value, HandlerError> {
    let unreadable = |what: &str, error: &dyn std::fmt::Display| {
        HandlerError::new(
            errors::COMMAND_FAILED,
            format!("{what} on {instance_id}: {error}; stdout was {stdout:?}"),
        )
    };
    match kind {
        "detect-agent" => {
            let report = sysprep::agent::parse_detection_output(stdout)
                .map_err(|e| unreadable("agent detection", &e))?;
            serde_json::to_value(report).map_err(|e| unreadable("agent detection", &e))
        }
        "identity" | "rename" => {
            let identity = sysprep::agent::parse_identity_output(stdout)
                .map_err(|e| unreadable("identity", &e))?;
            Ok(json!({
                "computer_name": identity.computer_name,
                "machine_sid": identity.machine_sid,
            }))
        }
        "preflight" => {
            let result = sysprep::preflight::check_output(stdout)
                .map_err(|e| unreadable("pre-flight", &e))?;
            let blocking: Vec<_> = result
                .findings
                .iter()
                .filter(|f| f.severity == sysprep::preflight::Severity::Block)
                .collect();
            if result.blocked {
                let names: Vec<&str> = blocking.iter().map(|f| f.check.as_str()).collect();
                let details: Vec<String> = blocking
                    .iter()
                    .map(|f| {
                        let evidence = if f.evidence.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", f.evidence.join(", "))
                        };
                        format!(
                            "{}: {}{evidence}; fix: {}",
                            f.check, f.message, f.remediation
                        )
                    })
                    .collect();
                return Err(HandlerError::new(
                    errors::PREFLIGHT_BLOCKED,
                    format!(
                        "pre-flight on {instance_id} blocked by [{}]: {}",
                        names.join(", "),
                        details.join("; ")
                    ),
                ));
            }
            Ok(json!({"findings": result.findings}))
        }
        "agent-password" => {
            let report = sysprep::commands::parse_password_output(stdout)
                .map_err(|e| unreadable("agent password setting", &e))?;
            if report.agent != LaunchAgent::None && !report.randomized() {
                return Err(HandlerError::new(
                    errors::COMMAND_FAILED,
                    format!(
                        "{} on {instance_id} left the administrator password setting {:?}, not random: the image would keep one password for every instance",
                        report.agent, report.password
                    ),
                ));
            }
            serde_json::to_value(report).map_err(|e| unreadable("agent password setting", &e))
        }
        "image-state" => {
            // A Sysprep that returned without sealing the image failed, whatever its exit code
            // said (SysprepInstance.ps1 reports nothing).
            let state = sysprep::agent::confirm_sealed(stdout).map_err(|e| {
                HandlerError::new(
                    errors::SYSPREP_FAILED,
                    format!("Sysprep on {instance_id} did not seal the image: {e}"),
                )
            })?;
            Ok(json!({"image_state": state.as_str()}))
        }
        "secrets-check" => {
            let checks = sysprep::secrets::parse_secret_check(stdout)
                .map_err(|e| unreadable("secret check", &e))?;
            let problems = sysprep::secrets::unreadable(&checks);
            if !problems.is_empty() {
                return Err(HandlerError::new(
                    errors::SECRET_MISSING,
                    format!(
                        "builder {instance_id} cannot read its secrets: {}",
                        problems.join("; ")
                    ),
                ));
            }
            Ok(json!({"checked": checks.len()}))
        }
        "remedy" => {
            let report = sysprep::remedy::parse_remedy_output(stdout)
                .map_err(|e| unreadable("remedy", &e))?;
            serde_json::to_value(report).map_err(|e| unreadable("remedy", &e))
        }
        _ => Ok(json!({"stdout": stdout})),
    }
}

async fn check_secrets(r: CheckSecrets, ctx: &Context) -> Result<Value, HandlerError> {
    let references = r.secrets;
    let mut arns = Vec::new();
    for reference in &references {
        match ctx.cloud.check_secret(reference).await {
            Ok(meta) => arns.push(meta.arn),
            Err(error) if error.kind == cloud::ErrorKind::NotFound => {
                return Err(HandlerError::new(
                    errors::SECRET_MISSING,
                    format!("secret {reference:?} does not exist: {}", error.message),
                ));
            }
            Err(error) => return Err(HandlerError::from_cloud("check secret", error)),
        }
    }
    Ok(json!({"checked": arns}))
}

async fn check_stopped(r: CheckStopped, ctx: &Context) -> Result<Value, HandlerError> {
    let instance_id = &r.instance_id;
    let mut wait = Wait::from(r.wait.as_ref(), ctx);
    let instance = ctx
        .cloud
        .describe_instances(std::slice::from_ref(instance_id))
        .await
        .map_err(cloud_err("DescribeInstances"))?
        .into_iter()
        .next()
        .ok_or_else(|| {
            HandlerError::new(
                errors::INSTANCE_GONE,
                format!("{instance_id} is not described"),
            )
        })?;
    match instance.state {
        InstanceState::Stopped => return Ok(wait.answer(true, json!({"state": "stopped"}))),
        InstanceState::ShuttingDown | InstanceState::Terminated => {
            return Err(HandlerError::new(
                errors::INSTANCE_GONE,
                format!(
                    "builder {instance_id} was terminated during Sysprep ({})",
                    instance.state_reason.unwrap_or_default()
                ),
            ));
        }
        InstanceState::Stopping => {
            let force_after = Duration::from_secs(r.force_after_seconds.unwrap_or(1500));
            if wait.elapsed() >= force_after && !wait.forced {
                // A shutdown that hangs in `stopping` is cut short with a forced stop.
                ctx.cloud
                    .stop_instances(std::slice::from_ref(instance_id), true)
                    .await
                    .map_err(cloud_err("StopInstances"))?;
                wait.forced = true;
            }
        }
        InstanceState::Running | InstanceState::Pending => {
            // Still generalizing; if Sysprep failed, its command says so before any shutdown.
            if let Some(ticket) = &r.ticket
                && let Some(invocation) = invocation(ctx, ticket, instance_id).await?
                && matches!(
                    invocation.status,
                    CommandStatus::Failed | CommandStatus::TimedOut | CommandStatus::Cancelled
                )
            {
                return Err(HandlerError::new(
                    errors::SYSPREP_FAILED,
                    format!(
                        "Sysprep on {instance_id} failed (exit code {}): {}",
                        invocation.response_code,
                        invocation.stderr.trim()
                    ),
                ));
            }
        }
    }
    if wait.expired(r.timeout_seconds, 3600) {
        return Err(HandlerError::new(
            errors::TIMEOUT,
            format!(
                "builder {instance_id} did not reach stopped within {} s (state {})",
                wait.elapsed().as_secs(),
                instance.state.as_str()
            ),
        ));
    }
    Ok(wait.answer(false, json!({"state": instance.state.as_str()})))
}

/// Stops the builder through the EC2 API once Sysprep has sealed the image (the
/// AWS-UpdateWindowsAmi sequence: Sysprep without shutdown, then stop the instance).
async fn stop_instance(r: InstanceRequest, ctx: &Context) -> Result<Value, HandlerError> {
    let instance_id = r.instance_id;
    let changes = ctx
        .cloud
        .stop_instances(std::slice::from_ref(&instance_id), false)
        .await
        .map_err(cloud_err("StopInstances"))?;
    let state = changes
        .first()
        .map(|c| c.current_state.as_str())
        .unwrap_or("unknown");
    Ok(json!({"state": state}))
}

/// Decides the next remediation round of a self-healing bake from the failure (`error`), the
/// rounds already run (`remediation`) and the `[bake.remediation]` toggles (`settings`): the
/// remedy to apply, or none, which ends the bake with the failure as it is (a remedy that did
/// not help ends with the original category). Pure: no cloud call.
async fn plan_remedy(r: PlanRemedy, _ctx: &Context) -> Result<Value, HandlerError> {
    let error = r.error.unwrap_or_default();
    let error_name = error.error.as_deref().unwrap_or("");
    let cause = cause_text(&error);
    let panther = panther_stdout(r.panther.as_ref());
    let settings = crate::remediation::RemediationSettings::from_payload(r.settings.as_ref());
    let previous = r.remediation.unwrap_or(Value::Null);
    let rounds = previous.get("rounds").and_then(Value::as_u64).unwrap_or(0);
    let plan = crate::remediation::plan(error_name, &cause, panther, rounds, &settings);
    let mut history: Vec<Value> = previous
        .get("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let remedy = plan.as_ref().map(|(remedy, _)| remedy.as_str());
    if let Some(remedy) = remedy {
        history.push(json!(remedy));
    }
    Ok(json!({
        "remedy": remedy,
        "packages": plan.map(|(_, packages)| packages).unwrap_or_default(),
        "round": rounds + u64::from(remedy.is_some()),
        "rounds": rounds + u64::from(remedy.is_some()),
        "history": history,
        "max_rounds": settings.max_rounds,
    }))
}

/// The cause of a caught error, unwrapped from Lambda's `{"errorMessage": ...}` envelope.
fn cause_text(error: &CaughtError) -> String {
    let raw = error.cause.clone().unwrap_or_default();
    serde_json::from_str::<Value>(&raw)
        .ok()
        .and_then(|v| {
            v.get("errorMessage")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or(raw)
}

/// The `stdout` of the `panther` command's answer, or nothing.
fn panther_stdout(panther: Option<&Value>) -> &str {
    panther
        .and_then(|v| v.get("stdout"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

async fn create_image(r: CreateImage, ctx: &Context) -> Result<Value, HandlerError> {
    let instance_id = r.instance_id;
    let base = r.name.unwrap_or_else(|| "fleetprep".into());
    // A retry after a failed image (Client.InternalError) is a new image: a new token and
    // name, while a repeated call of one attempt stays idempotent.
    let token = match r.attempt.unwrap_or(0) {
        0 => client_token(ctx, "image"),
        attempt => client_token(ctx, &format!("image-{attempt}")),
    };
    // AMI names are unique per region; the execution-derived suffix keeps retries idempotent.
    let name = format!("{base}-{}", &token[token.len() - 8..]);
    let image_id = ctx
        .cloud
        .create_image(CreateImageRequest {
            instance_id,
            name: name.clone(),
            description: Some("Baked by fleetprep".into()),
            no_reboot: false,
            tags: vec![Tag::new("fleetprep:state", "baking")],
            client_token: token,
        })
        .await
        .map_err(cloud_err("CreateImage"))?;
    Ok(json!({"image_id": image_id, "name": name}))
}

async fn check_image(r: CheckImage, ctx: &Context) -> Result<Value, HandlerError> {
    let image_id = r.image_id;
    let wait = Wait::from(r.wait.as_ref(), ctx);
    let image = ctx
        .cloud
        .describe_images(std::slice::from_ref(&image_id))
        .await
        .map_err(cloud_err("DescribeImages"))?
        .into_iter()
        .next()
        .ok_or_else(|| HandlerError::new(errors::NOT_FOUND, format!("{image_id} not described")))?;
    match image.state {
        ImageState::Available => Ok(wait.answer(true, json!({"state": "available"}))),
        ImageState::Pending | ImageState::Transient => {
            if wait.expired(r.timeout_seconds, 3600) {
                Err(HandlerError::new(
                    errors::TIMEOUT,
                    format!(
                        "image {image_id} still pending after {} s",
                        wait.elapsed().as_secs()
                    ),
                ))
            } else {
                Ok(wait.answer(false, json!({"state": "pending"})))
            }
        }
        other => Err(HandlerError::new(
            errors::IMAGE_FAILED,
            format!(
                "image {image_id} ended {other:?}: {}",
                image.state_reason.unwrap_or_default()
            ),
        )),
    }
}

async fn tag_image(r: TagImage, ctx: &Context) -> Result<Value, HandlerError> {
    let image_id = r.image_id;
    let mut tags = vec![Tag::new("fleetprep:state", "available")];
    if let Some(extra) = &r.tags {
        for (key, value) in extra {
            tags.push(Tag::new(
                key.clone(),
                value
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| value.to_string()),
            ));
        }
    }
    ctx.cloud
        .create_tags(std::slice::from_ref(&image_id), &tags)
        .await
        .map_err(cloud_err("CreateTags"))?;
    Ok(json!({"tagged": tags.len()}))
}

async fn terminate_instance(r: InstanceRequest, ctx: &Context) -> Result<Value, HandlerError> {
    let instance_id = r.instance_id;
    match ctx
        .cloud
        .terminate_instances(std::slice::from_ref(&instance_id))
        .await
    {
        Ok(_) => Ok(json!({"terminated": instance_id})),
        Err(error) if error.kind == cloud::ErrorKind::NotFound => {
            Ok(json!({"terminated": Value::Null}))
        }
        Err(error) => Err(HandlerError::from_cloud("TerminateInstances", error)),
    }
}

/// Classifies a failure from its error name, cause and the console output: the Windows side
/// with [`sysprep::diagnose`] (the cause carries the command's stderr, e.g. Panther lines), the
/// AWS side (which `sysprep` deliberately knows nothing of) from the error name.
/// Returns (category, retriable, evidence, remediation).
pub fn classify(
    error_name: &str,
    cause: &str,
    panther: &[String],
    console: &str,
) -> (String, bool, Vec<String>, String) {
    let timed_out = [
        errors::TIMEOUT,
        errors::LAMBDA_TIMEOUT,
        "States.Timeout",
        "States.HeartbeatTimeout",
    ]
    .contains(&error_name);
    let context = DiagnosisContext {
        timed_out,
        agent_online: (error_name == errors::AGENT_UNREACHABLE).then_some(false),
    };
    let mut diagnoser = sysprep::diagnose::Diagnoser::new();
    cause.lines().for_each(|line| diagnoser.feed_log_line(line));
    panther
        .iter()
        .for_each(|line| diagnoser.feed_log_line(line));
    console
        .lines()
        .for_each(|line| diagnoser.feed_console_line(line));
    let diagnosis = diagnoser.finish(&context);
    let first_cause_line = || cause.lines().next().unwrap_or_default().to_string();
    let decisive = !matches!(
        diagnosis.category,
        Category::Unknown | Category::Timeout | Category::AgentUnreachable
    );
    // AWS-side failures: not Windows categories, so they keep their own names.
    let aws_side = match error_name {
        _ if decisive => None,
        errors::IMAGE_FAILED => Some((
            "image-failed",
            true,
            "CreateImage failed on the AWS side; retry the bake",
        )),
        errors::INSTANCE_GONE => Some((
            "instance-gone",
            true,
            "something terminated the builder (a cleanup job, a spot interruption); exclude fleetprep-tagged builders and retry",
        )),
        errors::THROTTLED => Some((
            "throttled",
            true,
            "AWS API rate limits persisted past every retry; run fewer bakes at once",
        )),
        _ => None,
    };
    if let Some((category, retriable, remediation)) = aws_side {
        return (
            category.to_string(),
            retriable,
            vec![first_cause_line()],
            remediation.to_string(),
        );
    }
    // A pre-flight block names its findings in the cause; a finding named like a category is
    // that category, any other blocker (pending reboot, BitLocker) a provider-level failure.
    // A failed Sysprep command whose output matched nothing is a provider failure too.
    let category = match error_name {
        _ if decisive => diagnosis.category,
        errors::PREFLIGHT_BLOCKED => blocking_findings(cause)
            .find_map(sysprep::preflight::category_of)
            .unwrap_or(Category::ProviderFailure),
        errors::SYSPREP_FAILED if diagnosis.category == Category::Unknown => {
            Category::ProviderFailure
        }
        _ => diagnosis.category,
    };
    let mut evidence = diagnosis.evidence;
    if evidence.is_empty() && !cause.is_empty() {
        evidence.push(first_cause_line());
    }
    let (retriable, remediation) = if category == diagnosis.category {
        (diagnosis.retriable, diagnosis.remediation)
    } else {
        (category.retriable(), category.remediation().to_string())
    };
    (
        category.as_str().to_string(),
        retriable,
        evidence,
        remediation,
    )
}

/// The lines of the Panther log tails the `panther` command printed.
pub fn panther_lines(stdout: &str) -> Vec<String> {
    sysprep::panther::parse_output(stdout)
        .into_iter()
        .flat_map(|log| log.lines)
        .collect()
}

/// The finding names of a [`errors::PREFLIGHT_BLOCKED`] cause (`... blocked by [a, b]: ...`).
pub(crate) fn blocking_findings(cause: &str) -> impl Iterator<Item = &str> {
    cause
        .split_once("blocked by [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(names, _)| names)
        .unwrap_or_default()
        .split(", ")
        .filter(|name| !name.is_empty())
}

async fn collect_diagnostics(r: CollectDiagnostics, ctx: &Context) -> Result<Value, HandlerError> {
    let error = r.error.unwrap_or_default();
    let error_name = error
        .error
        .clone()
        .unwrap_or_else(|| "States.Runtime".into());
    // Lambda failures wrap the cause as {"errorMessage": ..., "errorType": ...}.
    let cause = cause_text(&error);
    // Panther log tails fetched over SSM while the failed builder was still up.
    let panther = panther_stdout(r.panther.as_ref());
    let console = match r.instance_id {
        Some(id) => ctx
            .cloud
            .get_console_output(&id)
            .await
            .map(|c| c.output)
            .unwrap_or_default(),
        None => String::new(),
    };
    let (category, retriable, evidence, remediation) =
        classify(&error_name, &cause, &panther_lines(panther), &console);
    Ok(json!({
        "error": error_name,
        "cause": cause,
        "category": category,
        "retriable": retriable,
        "evidence": evidence,
        "remediation": remediation,
    }))
}

async fn cleanup_bake(r: CleanupBake, ctx: &Context) -> Result<Value, HandlerError> {
    let mut terminated = Value::Null;
    let mut deregistered = Value::Null;
    if let Some(id) = r.instance_id {
        match ctx
            .cloud
            .terminate_instances(std::slice::from_ref(&id))
            .await
        {
            Ok(_) => terminated = json!(id),
            Err(e) if e.kind == cloud::ErrorKind::NotFound => {}
            Err(e) => return Err(HandlerError::from_cloud("TerminateInstances", e)),
        }
    }
    if let Some(image) = r.image_id {
        match ctx.cloud.deregister_image(&image).await {
            Ok(()) => deregistered = json!(image),
            Err(e) if e.kind == cloud::ErrorKind::NotFound => {}
            Err(e) => return Err(HandlerError::from_cloud("DeregisterImage", e)),
        }
    }
    Ok(json!({"terminated": terminated, "deregistered": deregistered}))
}

async fn publish_outcome(r: PublishOutcome, ctx: &Context) -> Result<Value, HandlerError> {
    let now = ctx.clock.now();
    let started = time_of(r.started.as_deref(), now);
    let outcome = Outcome {
        workflow: r.workflow,
        outcome: r.outcome,
        category: r.category.unwrap_or_default(),
        duration_seconds: now
            .duration_since(started)
            .unwrap_or_default()
            .as_secs_f64(),
        timestamp: now,
    };
    let line = ctx.emf.write(&outcome, &ctx.settings.metric_namespace);
    Ok(json!({"emf": line}))
}

// ==================================================================== naming

async fn naming_settings(_: NoRequest, ctx: &Context) -> Result<Value, HandlerError> {
    let s = &ctx.settings;
    Ok(json!({
        "mode": match s.naming_mode { NamingMode::Rename => "rename", NamingMode::Sysprep => "sysprep" },
        // The `user-data` rename method: the instance renames itself from its tag.
        "user_data": s.renames_from_tag(),
        "hook_timeout_seconds": s.hook_timeout_seconds,
        "ssm_timeout_seconds": s.ssm_timeout_seconds,
        "cleanup_script": s.cleanup_script,
        "has_cleanup": s.cleanup_script.is_some(),
    }))
}

/// The `user-data` rename method: puts the leased name on the instance as its
/// [`sysprep::userdata::HOSTNAME_TAG`] tag, which the launch template's user data reads
/// through instance metadata and renames to. Setting the same tag again is a no-op, so a
/// retry is safe. The answer has a null `ticket`: the wait that follows polls SSM for the
/// name, with no command to flush.
async fn tag_hostname(r: TagHostname, ctx: &Context) -> Result<Value, HandlerError> {
    let name = sysprep::hostname::Hostname::parse(&r.hostname).map_err(|e| {
        HandlerError::new(
            errors::INVALID_INPUT,
            format!("tag_hostname: hostname {:?}: {e}", r.hostname),
        )
    })?;
    ctx.cloud
        .create_tags(
            std::slice::from_ref(&r.instance_id),
            &[Tag::new(sysprep::userdata::HOSTNAME_TAG, name.as_str())],
        )
        .await
        .map_err(cloud_err("CreateTags"))?;
    Ok(json!({"ticket": null, "tag": sysprep::userdata::HOSTNAME_TAG, "hostname": name.as_str()}))
}

async fn allocate_hostname(r: AllocateHostname, ctx: &Context) -> Result<Value, HandlerError> {
    let mut request = names::AllocationRequest::new(r.instance_id);
    if let Some(zone) = r.availability_zone {
        request = request.in_zone(zone);
    }
    let lease = ctx
        .cloud
        .name_pool()
        .allocate(&request)
        .await
        .map_err(errors::from_pool)?;
    Ok(json!({"hostname": lease.name.as_str(), "sequence": lease.sequence}))
}

async fn confirm_hostname(r: InstanceRequest, ctx: &Context) -> Result<Value, HandlerError> {
    let instance_id = r.instance_id;
    let lease = ctx
        .cloud
        .name_pool()
        .confirm(&instance_id)
        .await
        .map_err(errors::from_pool)?;
    Ok(json!({"hostname": lease.name.as_str()}))
}

async fn release_hostname(r: InstanceRequest, ctx: &Context) -> Result<Value, HandlerError> {
    let instance_id = r.instance_id;
    let released = ctx
        .cloud
        .name_pool()
        .release(&instance_id)
        .await
        .map_err(errors::from_pool)?;
    Ok(json!({
        "released": released.is_some(),
        "hostname": released.map(|l| l.name.as_str().to_string()),
    }))
}

async fn verify_identity(r: VerifyIdentity, _ctx: &Context) -> Result<Value, HandlerError> {
    let expected = r.expected_name;
    let identity = r.identity;
    let actual = identity.computer_name.unwrap_or_default();
    // The identity command reports `$env:COMPUTERNAME`; SSM (the `user-data` method's wait)
    // reports `DNSHostName.Domain`: the host part is the computer name either way.
    if !sysprep::hostname::ssm_name_matches(&actual, &expected) {
        return Err(HandlerError::new(
            errors::VERIFY_FAILED,
            format!("$env:COMPUTERNAME is {actual:?}, expected the leased name {expected:?}"),
        ));
    }
    let sid = identity.machine_sid.unwrap_or_default();
    if r.mode.as_deref() == Some("sysprep") {
        let before = r.before_sid.unwrap_or_default();
        if sid.is_empty() || sid == before {
            return Err(HandlerError::new(
                errors::VERIFY_FAILED,
                format!("machine SID {sid:?} did not change after generalize (was {before:?})"),
            ));
        }
    }
    Ok(json!({"computer_name": actual, "machine_sid": sid}))
}

async fn complete_lifecycle(r: CompleteLifecycle, ctx: &Context) -> Result<Value, HandlerError> {
    let hook = r.hook.reference();
    let result = match r.result.as_str() {
        "CONTINUE" => LifecycleActionResult::Continue,
        "ABANDON" => LifecycleActionResult::Abandon,
        other => {
            return Err(HandlerError::new(
                errors::INVALID_INPUT,
                format!("complete_lifecycle: result {other:?} must be CONTINUE or ABANDON"),
            ));
        }
    };
    let completed = ctx
        .cloud
        .complete_lifecycle_action(CompleteLifecycleActionRequest { hook, result })
        .await;
    let Some(state) = r.wait.as_ref() else {
        completed.map_err(lifecycle_err("CompleteLifecycleAction"))?;
        return Ok(json!({"result": r.result}));
    };
    let mut wait = Wait::from(Some(state), ctx);
    match completed {
        Ok(()) => Ok(wait.answer(true, json!({"result": r.result, "retry_seconds": 0}))),
        Err(error) if error.kind == cloud::ErrorKind::Throttled => {
            let heartbeat_throttled =
                match wait.heartbeat(Some(&r.hook), ctx, COMPLETION_LEAD).await {
                    Ok(_) => false,
                    Err(e) if e.error == errors::THROTTLED => true,
                    Err(e) => return Err(e),
                };
            let retry = completion_retry(
                &ctx.task.execution,
                wait.elapsed(),
                wait.until_hook_timeout(ctx),
                heartbeat_throttled,
            );
            Ok(wait.answer(
                false,
                json!({"result": r.result, "retry_seconds": retry.as_secs()}),
            ))
        }
        Err(error) => Err(lifecycle_err("CompleteLifecycleAction")(error)),
    }
}

// ==================================================================== rollout

async fn create_template_version(
    r: CreateTemplateVersion,
    ctx: &Context,
) -> Result<Value, HandlerError> {
    let template = r.launch_template_id;
    let image_id = r.image_id;
    let previous = ctx
        .cloud
        .describe_default_launch_template_version(&template)
        .await
        .map_err(cloud_err("DescribeLaunchTemplateVersions"))?;
    let version = ctx
        .cloud
        .create_launch_template_version(CreateLaunchTemplateVersionRequest {
            launch_template_id: template.clone(),
            source_version: previous.version_number.to_string(),
            image_id,
            version_description: Some("fleetprep rollout".into()),
            client_token: client_token(ctx, "ltv"),
        })
        .await
        .map_err(cloud_err("CreateLaunchTemplateVersion"))?;
    ctx.cloud
        .set_default_launch_template_version(&template, version.version_number)
        .await
        .map_err(cloud_err("ModifyLaunchTemplate"))?;
    Ok(json!({
        "version": version.version_number,
        "previous_version": previous.version_number,
        "previous_image_id": previous.image_id,
    }))
}

async fn start_refresh(r: StartRefresh, ctx: &Context) -> Result<Value, HandlerError> {
    let group = r.group;
    let template = r.launch_template_id;
    let version = match r.version {
        Value::String(version) => version,
        Value::Null => {
            return Err(HandlerError::new(
                errors::INVALID_INPUT,
                "action \"start_refresh\": payload field \"version\" is missing",
            ));
        }
        other => other.to_string(),
    };
    let refresh_id = ctx
        .cloud
        .start_instance_refresh(StartInstanceRefreshRequest {
            auto_scaling_group_name: group,
            launch_template: Some(LaunchTemplateRef {
                launch_template_id: template,
                version,
            }),
            min_healthy_percentage: r.min_healthy_percentage.unwrap_or(90),
            instance_warmup_seconds: r.instance_warmup_seconds.unwrap_or(300),
            checkpoint_percentages: r.checkpoint_percentages.unwrap_or_default(),
            checkpoint_delay_seconds: r.checkpoint_delay_seconds.unwrap_or(0),
        })
        .await
        .map_err(cloud_err("StartInstanceRefresh"))?;
    Ok(json!({"refresh_id": refresh_id}))
}

async fn check_refresh(r: CheckRefresh, ctx: &Context) -> Result<Value, HandlerError> {
    let group = r.group;
    let refresh_id = r.refresh_id;
    let wait = Wait::from(r.wait.as_ref(), ctx);
    let refresh = ctx
        .cloud
        .describe_instance_refresh(&group, &refresh_id)
        .await
        .map_err(cloud_err("DescribeInstanceRefreshes"))?;
    match refresh.status {
        InstanceRefreshStatus::Successful => Ok(wait.answer(
            true,
            json!({"status": "Successful", "percentage_complete": 100}),
        )),
        InstanceRefreshStatus::Pending
        | InstanceRefreshStatus::InProgress
        | InstanceRefreshStatus::Baking => {
            if wait.expired(r.timeout_seconds, 6 * 3600) {
                Err(HandlerError::new(
                    errors::TIMEOUT,
                    format!(
                        "instance refresh {refresh_id} on {group} still {:?} at {}%",
                        refresh.status, refresh.percentage_complete
                    ),
                ))
            } else {
                Ok(wait.answer(
                    false,
                    json!({"status": format!("{:?}", refresh.status), "percentage_complete": refresh.percentage_complete}),
                ))
            }
        }
        other => Err(HandlerError::new(
            errors::REFRESH_FAILED,
            format!(
                "instance refresh {refresh_id} on {group} ended {other:?}: {}",
                refresh.status_reason.unwrap_or_default()
            ),
        )),
    }
}

async fn rollback_template(r: RollbackTemplate, ctx: &Context) -> Result<Value, HandlerError> {
    let template = r.launch_template_id;
    let previous = r.previous_version;
    ctx.cloud
        .set_default_launch_template_version(&template, previous)
        .await
        .map_err(cloud_err("ModifyLaunchTemplate"))?;
    Ok(json!({"default_version": previous}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RenameMethod;

    #[test]
    fn a_heartbeat_is_due_only_when_the_hook_could_expire_before_the_next_poll() {
        let s = Duration::from_secs;
        let hook = s(900);
        let poll = |seconds| next_chance_after_poll(Some(seconds));
        // A 30 s poll loop: no heartbeat until 900 - 30 - 240 = 630 s after the last one.
        assert!(!heartbeat_due(s(629), hook, poll(30)));
        assert!(heartbeat_due(s(630), hook, poll(30)));
        // Ahead of the 300 s wait, from 360 s.
        assert!(!heartbeat_due(s(359), hook, poll(300)));
        assert!(heartbeat_due(s(360), hook, poll(300)));
        // A hook shorter than the margin: at every poll, but not within a quarter of the
        // timeout of the last heartbeat.
        assert!(!heartbeat_due(s(59), s(240), poll(120)));
        assert!(heartbeat_due(s(60), s(240), poll(120)));
        // A poll that does not say gets the longest wait's margin.
        assert_eq!(
            next_chance_after_poll(None),
            LONGEST_WAIT_BEFORE_A_POLL + RETRY_ALLOWANCE
        );
        // The completion loop: only within its lead of the timeout.
        assert!(!heartbeat_due(s(839), hook, COMPLETION_LEAD));
        assert!(heartbeat_due(s(840), hook, COMPLETION_LEAD));
    }

    #[test]
    fn the_completion_backoff_doubles_its_window_up_to_the_cap_and_is_spread() {
        let s = Duration::from_secs;
        for (tried_for, window) in [(s(0), 4), (s(10), 20), (s(100), 200), (s(1000), 300)] {
            let waits: Vec<u64> = (0..500)
                .map(|n| completion_backoff(&format!("exec-{n}"), tried_for).as_secs())
                .collect();
            assert!(
                waits.iter().all(|w| (1..=window).contains(w)),
                "{tried_for:?}: {waits:?}"
            );
            // Full jitter: the draws cover the window, not one instant.
            let distinct: std::collections::BTreeSet<u64> = waits.iter().copied().collect();
            assert!(distinct.len() as u64 >= window.min(100) / 2, "{distinct:?}");
        }
        // The same attempt asks for the same wait.
        assert_eq!(
            completion_backoff("exec-1", s(37)),
            completion_backoff("exec-1", s(37))
        );
    }

    #[test]
    fn the_completion_loop_comes_back_before_the_hook_times_out() {
        let s = Duration::from_secs;
        for n in 0..200 {
            let execution = format!("exec-{n}");
            // Far from the timeout: the backoff as drawn.
            assert_eq!(
                completion_retry(&execution, s(200), s(800), false),
                completion_backoff(&execution, s(200))
            );
            // Near it: back no later than half the lead before it, to record the heartbeat.
            let near = completion_retry(&execution, s(200), s(100), false);
            assert!(near <= s(70), "{near:?}");
            // Past the point of waiting: at once (1 s), never zero.
            assert_eq!(completion_retry(&execution, s(200), s(20), false), s(1));
            // A heartbeat throttled within the lead: within half the time left.
            let soon = completion_retry(&execution, s(200), s(40), true);
            assert!((s(1)..=s(20)).contains(&soon), "{soon:?}");
            assert_eq!(completion_retry(&execution, s(200), s(1), true), s(1));
            // Past the timeout: the ordinary backoff, not an attempt every second.
            assert_eq!(
                completion_retry(&execution, s(200), s(0), true),
                completion_backoff(&execution, s(200))
            );
        }
    }

    /// A `send_command` request for instance i-1 with `fields`.
    fn request(mut fields: Value) -> SendCommand {
        fields["instance_id"] = json!("i-1");
        serde_json::from_value(fields).expect("a send_command request")
    }

    const PANTHER_APPX: &str = "2026-11-26 15:04:11, Error                 SYSPRP Package Microsoft.BingWeather_4.53.51922.0_x64__8wekyb3d8bbwe was installed for a user, but not provisioned for all users. This package will not function properly in the sysprep image.";

    #[test]
    fn windows_failures_are_classified_by_sysprep_diagnose() {
        let (category, retriable, evidence, _) =
            classify(errors::SYSPREP_FAILED, PANTHER_APPX, &[], "");
        assert_eq!(category, "appx-not-provisioned");
        assert!(!retriable);
        assert!(evidence[0].contains("BingWeather"));
        // Log evidence beats the error name, even an AWS-side one.
        let (category, ..) = classify(errors::INSTANCE_GONE, PANTHER_APPX, &[], "");
        assert_eq!(category, "appx-not-provisioned");
    }

    #[test]
    fn observed_failures_without_evidence_follow_the_error_name() {
        let cases = [
            (errors::AGENT_UNREACHABLE, "agent-unreachable"),
            (errors::TIMEOUT, "timeout"),
            ("States.HeartbeatTimeout", "timeout"),
            (errors::SYSPREP_FAILED, "provider-failure"),
            (errors::IMAGE_FAILED, "image-failed"),
            (errors::INSTANCE_GONE, "instance-gone"),
            (errors::THROTTLED, "throttled"),
            ("States.Runtime", "unknown"),
        ];
        for (name, expected) in cases {
            let (category, _, evidence, remediation) = classify(name, "it went wrong", &[], "");
            assert_eq!(category, expected, "{name}");
            assert_eq!(evidence, ["it went wrong"], "{name}");
            assert!(!remediation.is_empty(), "{name}");
        }
        // Issue 10, bug 2: every healthy EC2Launch v2 boot prints IMAGE_STATE_UNDEPLOYABLE
        // ("Troubleshoot EC2Launch v2", sample console output): with a time-out it is `timeout`.
        let console = "2020/08/13 17:25:12Z: Windows is being configured. SysprepState=IMAGE_STATE_UNDEPLOYABLE\n2020/08/13 17:28:13Z: Message: Windows is Ready to use";
        assert_eq!(classify(errors::TIMEOUT, "", &[], console).0, "timeout");
    }

    #[test]
    fn preflight_blocks_name_their_findings_and_classify_by_them() {
        let stdout = r#"FLEETPREP-PREFLIGHT:{"appxNotProvisioned":["Contoso.App_1.0_x64__abc"],"pendingReboot":{"cbsRebootPending":true}}"#;
        let error = interpret("preflight", "i-1", stdout).unwrap_err();
        assert_eq!(error.error, errors::PREFLIGHT_BLOCKED);
        assert!(
            error
                .cause
                .contains("blocked by [appx-not-provisioned, pending-reboot]"),
            "{}",
            error.cause
        );
        assert!(error.cause.contains("Contoso.App"));
        assert_eq!(
            classify(errors::PREFLIGHT_BLOCKED, &error.cause, &[], "").0,
            "appx-not-provisioned"
        );
        let reboot_only = "pre-flight on i-1 blocked by [pending-reboot]: reboot first";
        assert_eq!(
            classify(errors::PREFLIGHT_BLOCKED, reboot_only, &[], "").0,
            // Sysprep refuses to validate with a reboot pending (preflight::category_of).
            "validation-failed"
        );
    }

    #[test]
    fn command_output_is_read_with_the_sysprep_parsers() {
        let agent = interpret(
            "detect-agent",
            "i-1",
            "noise\nFLEETPREP-DETECT:{\"agent\":\"ec2launch-v1\",\"agentVersion\":\"1.3.2004\"}\n",
        )
        .unwrap();
        assert_eq!(agent["agent"], "ec2launch-v1");
        let identity = interpret(
            "rename",
            "i-1",
            "FLEETPREP-IDENTITY:{\"computerName\":\"WEB-001\",\"machineSid\":\"S-1-5-21-1-2-3\"}",
        )
        .unwrap();
        assert_eq!(identity["computer_name"], "WEB-001");
        assert_eq!(identity["machine_sid"], "S-1-5-21-1-2-3");
        let missing = interpret("identity", "i-9", "").unwrap_err();
        assert_eq!(missing.error, errors::COMMAND_FAILED);
        assert!(missing.cause.contains("i-9"), "{}", missing.cause);
        let clean = interpret("preflight", "i-1", r#"{"appx_not_provisioned":[]}"#).unwrap();
        assert!(clean["findings"].is_array());
    }

    #[test]
    fn rename_commands_follow_the_rename_method() {
        let template = |method: RenameMethod| {
            let settings = Settings {
                rename_method: method,
                ..Settings::default()
            };
            command_template(
                &request(json!({"kind": "rename", "value": "WEB-001"})),
                &settings,
            )
            .unwrap()
        };
        let (computer, value, timeout) = template(RenameMethod::RenameComputer);
        let computer = computer.join("\n");
        assert_eq!((value.as_str(), timeout), ("WEB-001", 1800));
        assert!(computer.contains("Rename-Computer -NewName $desired"));
        // It only removes other names' setHostName tasks (issue 10, point 8), never adds one.
        assert!(!computer.contains("task = 'setHostName'"));
        let (agent, value, _) = template(RenameMethod::Ec2LaunchSetHostName);
        let agent = agent.join("\n");
        assert_eq!(value, "WEB-001");
        assert!(agent.contains("task = 'setHostName'"), "{agent}");
        assert!(!agent.contains("Rename-Computer"));
        // Both read the instance's name from the batched table and print the identity after.
        for script in [&computer, &agent] {
            assert!(script.starts_with("# fleetprep:rename\n"));
            assert!(script.contains(scripts::TABLE_LINE));
            assert!(script.contains(sysprep::agent::IDENTITY_MARKER));
        }
        // The default is Rename-Computer.
        let (default, _, _) =
            command_template(&request(json!({"kind": "rename"})), &Settings::default()).unwrap();
        assert_eq!(default.join("\n"), computer);
    }

    #[test]
    fn sysprep_commands_follow_the_detected_agent() {
        let template = |agent: &str| {
            command_template(
                &request(json!({"kind": "sysprep", "agent": agent})),
                &Settings::default(),
            )
            .unwrap()
            .0
            .join("\n")
        };
        assert!(template("ec2launch-v2").contains("'ec2launch sysprep'"));
        assert!(template("ec2launch-v1").contains("SysprepInstance.ps1"));
        // EC2Config's no-shutdown form: sysprep.exe /quit with its own answer file.
        assert!(template("ec2config").contains("sysprep2008.xml"));
        assert!(template("none").contains("/generalize"));
        let bad = command_template(
            &request(json!({"kind": "sysprep", "agent": "ec2launch-v9"})),
            &Settings::default(),
        )
        .unwrap_err();
        assert_eq!(bad.error, errors::INVALID_INPUT);
    }

    /// Issue 10, bug 5: the bake's password step is the agent's own setting, and a report
    /// that the agent does not randomize fails the bake instead of baking one password in.
    #[test]
    fn the_agent_password_step_follows_the_agent_and_checks_its_report() {
        for agent in sysprep::agent::LaunchAgent::ALL {
            let (lines, _, _) = command_template(
                &request(json!({"kind": "agent-password", "agent": agent.as_str()})),
                &Settings::default(),
            )
            .unwrap();
            let script = lines.join("\n");
            assert!(script.starts_with("# fleetprep:agent-password\n"));
            assert!(script.contains(commands::agent_password_script(agent).trim_end()));
        }
        let random = interpret(
            "agent-password",
            "i-1",
            "FLEETPREP-PASSWORD:{\"agent\":\"ec2launch-v2\",\"password\":\"random\"}",
        )
        .unwrap();
        assert_eq!(random["password"], "random");
        let kept = interpret(
            "agent-password",
            "i-1",
            "FLEETPREP-PASSWORD:{\"agent\":\"ec2launch-v1\",\"password\":\"specify\"}",
        )
        .unwrap_err();
        assert_eq!(kept.error, errors::COMMAND_FAILED);
        assert!(kept.cause.contains("not random"), "{}", kept.cause);
        // Without an agent nothing can randomize; the bake says so in its output.
        let none = interpret(
            "agent-password",
            "i-1",
            "FLEETPREP-PASSWORD:{\"agent\":\"none\",\"password\":\"unchanged\"}",
        )
        .unwrap();
        assert_eq!(none["password"], "unchanged");
    }

    /// Issue 11: only the rename naming mode with the `user-data` method renames from the tag.
    #[test]
    fn only_the_user_data_method_renames_from_the_tag() {
        let with = |naming_mode, rename_method| Settings {
            naming_mode,
            rename_method,
            ..Settings::default()
        };
        assert!(with(NamingMode::Rename, RenameMethod::UserData).renames_from_tag());
        assert!(!with(NamingMode::Sysprep, RenameMethod::UserData).renames_from_tag());
        assert!(!with(NamingMode::Rename, RenameMethod::RenameComputer).renames_from_tag());
    }
}
