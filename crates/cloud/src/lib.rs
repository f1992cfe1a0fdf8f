//! The `Cloud` trait: the one seam between fleetprep's workflows and AWS.
//!
//! Workflow task handlers only ever talk to a [`Cloud`]. Two implementations exist:
//!
//! - `sim::SimCloud` (cargo feature `sim`), the simulated fleet: EC2, SSM, Auto Scaling and
//!   CloudWatch behaviour on a [`clock::Clock`] (virtual in the demo and tests), seeded and
//!   deterministic, with fault injection from a TOML scenario. The Lambda builds without it.
//! - `aws::AwsCloud` (cargo feature `aws`), the same operations on the official AWS SDK.
//!
//! [`iam::Operation`] names every operation of the trait once, with the IAM actions it needs
//! on AWS: the one table least-privilege policies are derived from.
//!
//! Every request and response here is a plain struct of this crate (serde-serialisable); AWS SDK
//! types never leave this crate. Errors are one type, [`CloudError`], carrying a coarse
//! [`ErrorKind`] that the workflows map to their error names plus the AWS error code verbatim
//! (for example `RequestLimitExceeded`, `InvalidInstanceID.NotFound`).
//!
//! The trait deliberately mirrors AWS operations one to one (one method per API call) and does
//! not batch, retry or poll: batching lives in the workflows' batching layer, retries and polling
//! live in the state machines (Retry, Wait + Choice), so that the same behaviour runs locally
//! and on Step Functions. Limits that AWS enforces (for example at most 50 instance ids per
//! SendCommand) are enforced by every implementation the same way, so a workflow that works on
//! the simulator cannot break that limit on AWS.
//!
//! Plaintext secrets never cross this trait: [`Cloud::check_secret`] only proves that a
//! referenced secret exists (DescribeSecret / GetParameter metadata), it never returns a value.
//!
//! Contract for implementors (coordination note): after publication this trait only grows by
//! additions; new methods get a default body where one makes sense.
//!
//! ```
//! use cloud::{CloudError, ErrorKind};
//! let error = CloudError::throttled("RequestLimitExceeded", "Request limit exceeded.");
//! assert_eq!(error.kind, ErrorKind::Throttled);
//! assert!(error.is_retryable());
//! ```

#[cfg(feature = "aws")]
pub mod aws;
pub mod iam;
#[cfg(feature = "sim")]
pub mod sim;

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use names::NamePool;
use serde::{Deserialize, Serialize};

/// The most instance ids one SSM SendCommand accepts (AWS API reference, SendCommand,
/// `InstanceIds`: "You can specify a maximum of 50 IDs").
pub const SEND_COMMAND_MAX_INSTANCES: usize = 50;

/// The most characters of a command's output ListCommandInvocations returns per plugin (AWS
/// API reference, CommandPlugin, `Output`: "Length Constraints: Maximum length of 2500"); the
/// rest is read with GetCommandInvocation.
pub const LIST_COMMAND_OUTPUT_MAX_CHARS: usize = 2500;

/// The line the SSM agent writes between standard output and standard error in a plugin's
/// `Output`.
pub const PLUGIN_OUTPUT_ERROR_LINE: &str = "----------ERROR-------";

/// The hostname table's TTL attribute (epoch seconds): written by the DynamoDB name pool
/// (`aws::hostnames`), declared by the deploy template (outside the `aws` feature).
pub const HOSTNAME_TTL_ATTRIBUTE: &str = "ttl";

/// The one seam to AWS. Object-safe: workflows hold an `Arc<dyn Cloud>`.
#[async_trait]
pub trait Cloud: Send + Sync {
    // ---------------------------------------------------------------- EC2
    /// EC2 RunInstances. `client_token` makes the call idempotent: repeating it returns the
    /// instances launched the first time.
    async fn run_instances(
        &self,
        request: RunInstancesRequest,
    ) -> Result<Vec<Instance>, CloudError>;

    /// EC2 DescribeInstances for the given ids. Unknown ids are an error
    /// (`InvalidInstanceID.NotFound`, kind [`ErrorKind::NotFound`]); terminated instances are
    /// still described for a while, as on AWS.
    async fn describe_instances(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<Instance>, CloudError>;

    /// EC2 StartInstances.
    async fn start_instances(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<InstanceStateChange>, CloudError>;

    /// EC2 StopInstances; `force` is the API's `Force` flag (used when an instance is stuck in
    /// `stopping`).
    async fn stop_instances(
        &self,
        instance_ids: &[String],
        force: bool,
    ) -> Result<Vec<InstanceStateChange>, CloudError>;

    /// EC2 TerminateInstances. Terminating an already terminated instance succeeds.
    async fn terminate_instances(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<InstanceStateChange>, CloudError>;

    /// EC2 GetConsoleOutput (decoded from base64; empty when nothing was captured yet).
    async fn get_console_output(&self, instance_id: &str) -> Result<ConsoleOutput, CloudError>;

    /// EC2 CreateImage. Returns the new image id. Repeating a request with the same
    /// `client_token` returns the same image id. (EC2 CreateImage has no ClientToken parameter;
    /// the AWS implementation gets the same effect from the unique image `name`.)
    async fn create_image(&self, request: CreateImageRequest) -> Result<String, CloudError>;

    /// EC2 DescribeImages for the given ids.
    async fn describe_images(&self, image_ids: &[String]) -> Result<Vec<Image>, CloudError>;

    /// EC2 DeregisterImage. Deregistering an unknown or already deregistered image is
    /// `InvalidAMIID.NotFound` / `InvalidAMIID.Unavailable` (kind NotFound); cleanup code treats
    /// NotFound as done.
    async fn deregister_image(&self, image_id: &str) -> Result<(), CloudError>;

    /// EC2 CreateTags (adds or overwrites).
    async fn create_tags(&self, resource_ids: &[String], tags: &[Tag]) -> Result<(), CloudError>;

    /// EC2 CreateLaunchTemplateVersion: a new version of `launch_template_id`, copied from
    /// `source_version`, with a new image id.
    async fn create_launch_template_version(
        &self,
        request: CreateLaunchTemplateVersionRequest,
    ) -> Result<LaunchTemplateVersion, CloudError>;

    /// EC2 ModifyLaunchTemplate `DefaultVersion` (used to roll back). Returns the previous
    /// default version number.
    async fn set_default_launch_template_version(
        &self,
        launch_template_id: &str,
        version: i64,
    ) -> Result<i64, CloudError>;

    /// EC2 DescribeLaunchTemplateVersions `$Default` for a template.
    async fn describe_default_launch_template_version(
        &self,
        launch_template_id: &str,
    ) -> Result<LaunchTemplateVersion, CloudError>;

    // ---------------------------------------------------------------- SSM
    /// SSM DescribeInstanceInformation for the given ids. Instances whose agent never
    /// registered are simply absent from the answer (as on AWS), not an error.
    async fn describe_instance_information(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<InstanceInformation>, CloudError>;

    /// SSM SendCommand. Returns the command id. More than [`SEND_COMMAND_MAX_INSTANCES`]
    /// instance ids is rejected with kind InvalidParameter before anything is sent.
    async fn send_command(&self, request: SendCommandRequest) -> Result<String, CloudError>;

    /// SSM GetCommandInvocation. Shortly after SendCommand this may be
    /// `InvocationDoesNotExist` (kind NotFound): callers poll again, it is not a failure.
    async fn get_command_invocation(
        &self,
        command_id: &str,
        instance_id: &str,
    ) -> Result<CommandInvocation, CloudError>;

    /// SSM ListCommandInvocations for one command with `Details`: the invocation on every
    /// instance the command targets, in one call (a SendCommand targets at most
    /// [`SEND_COMMAND_MAX_INSTANCES`], which one page of results holds). Invocations not
    /// visible yet are absent. With `Details` the output is the plugin's `Output`, at most
    /// [`LIST_COMMAND_OUTPUT_MAX_CHARS`] characters (standard error included after the
    /// agent's `----------ERROR-------` line); GetCommandInvocation has the whole of both
    /// (AWS API reference, ListCommandInvocations and CommandPlugin).
    async fn list_command_invocations(
        &self,
        command_id: &str,
    ) -> Result<Vec<CommandInvocation>, CloudError>;

    // ---------------------------------------------------------------- Auto Scaling
    /// Auto Scaling CompleteLifecycleAction (CONTINUE or ABANDON).
    async fn complete_lifecycle_action(
        &self,
        request: CompleteLifecycleActionRequest,
    ) -> Result<(), CloudError>;

    /// Auto Scaling RecordLifecycleActionHeartbeat: restarts the hook's heartbeat timeout.
    async fn record_lifecycle_action_heartbeat(
        &self,
        hook: LifecycleHookRef,
    ) -> Result<(), CloudError>;

    /// Auto Scaling StartInstanceRefresh. Returns the refresh id.
    async fn start_instance_refresh(
        &self,
        request: StartInstanceRefreshRequest,
    ) -> Result<String, CloudError>;

    /// Auto Scaling DescribeInstanceRefreshes for one group and refresh id.
    async fn describe_instance_refresh(
        &self,
        auto_scaling_group_name: &str,
        instance_refresh_id: &str,
    ) -> Result<InstanceRefresh, CloudError>;

    // ---------------------------------------------------------------- hostname store
    /// The hostname lease store ([`names::NamePool`]): SQLite for the simulated fleet,
    /// DynamoDB on AWS. The naming pattern is configured when the implementation is built.
    fn name_pool(&self) -> Arc<dyn NamePool>;

    // ---------------------------------------------------------------- secrets
    /// Proves that a referenced secret exists and is readable by the instances, without
    /// reading its value (Secrets Manager DescribeSecret; SSM GetParameter metadata without
    /// decryption). Missing is kind NotFound.
    async fn check_secret(&self, reference: &SecretRef) -> Result<SecretMetadata, CloudError>;
}

// ==================================================================== errors

/// The coarse class of a [`CloudError`]; the workflows map these to their error names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorKind {
    /// API rate limit (`RequestLimitExceeded`, `ThrottlingException`): retry with backoff.
    Throttled,
    /// The resource does not exist (`InvalidInstanceID.NotFound`, `InvocationDoesNotExist`).
    NotFound,
    /// The resource is in the wrong state for the call (`IncorrectInstanceState`).
    IncorrectState,
    /// The request is malformed or breaks an API limit (`InvalidParameterValue`).
    InvalidParameter,
    /// A quota is used up (`InstanceLimitExceeded`, name pool exhausted).
    LimitExceeded,
    /// The service failed or could not be reached (5xx, timeouts): retry.
    Unavailable,
    /// Credentials or IAM policy deny the call.
    AccessDenied,
    /// A conditional write lost a race (`ConditionalCheckFailedException`,
    /// `IdempotentParameterMismatch`).
    Conflict,
    /// Anything else.
    Other,
}

/// An error from a [`Cloud`] call: the kind, the AWS error code verbatim, and the message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct CloudError {
    /// The class of failure the workflows map to an error name.
    pub kind: ErrorKind,
    /// The AWS error code, e.g. `RequestLimitExceeded`, `InvalidInstanceID.NotFound`.
    pub code: String,
    /// The error message as the API returns it (or the implementation's own, naming the fix).
    pub message: String,
}

impl fmt::Display for CloudError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl CloudError {
    /// An error of `kind` with the AWS error `code` and `message`.
    pub fn new(kind: ErrorKind, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind,
            code: code.into(),
            message: message.into(),
        }
    }
    /// An [`ErrorKind::Throttled`] error (`RequestLimitExceeded`, `ThrottlingException`).
    pub fn throttled(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Throttled, code, message)
    }
    /// An [`ErrorKind::NotFound`] error (`InvalidInstanceID.NotFound`, …).
    pub fn not_found(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, code, message)
    }
    /// An [`ErrorKind::IncorrectState`] error (`IncorrectInstanceState`, …).
    pub fn incorrect_state(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::IncorrectState, code, message)
    }
    /// An [`ErrorKind::InvalidParameter`] error (`InvalidParameterValue`, …).
    pub fn invalid_parameter(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParameter, code, message)
    }
    /// An [`ErrorKind::LimitExceeded`] error (`InstanceLimitExceeded`, …).
    pub fn limit_exceeded(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::LimitExceeded, code, message)
    }
    /// An [`ErrorKind::Unavailable`] error (a 5xx answer, a timeout, no connection).
    pub fn unavailable(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, code, message)
    }

    /// True for errors a caller should retry with backoff (throttling, service unavailable).
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, ErrorKind::Throttled | ErrorKind::Unavailable)
    }
}

/// Rejects SendCommand requests that AWS would reject for their size, with the same message on
/// every implementation.
pub fn check_send_command_limits(request: &SendCommandRequest) -> Result<(), CloudError> {
    if request.instance_ids.is_empty() {
        return Err(CloudError::invalid_parameter(
            "InvalidParameters",
            "SendCommand: InstanceIds is empty; pass between 1 and 50 instance ids",
        ));
    }
    if request.instance_ids.len() > SEND_COMMAND_MAX_INSTANCES {
        return Err(CloudError::invalid_parameter(
            "InvalidParameters",
            format!(
                "SendCommand: {} instance ids given, the API accepts at most {}; split the call \
                 into batches of {}",
                request.instance_ids.len(),
                SEND_COMMAND_MAX_INSTANCES,
                SEND_COMMAND_MAX_INSTANCES
            ),
        ));
    }
    Ok(())
}

// ==================================================================== EC2 types

/// A resource tag.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tag {
    /// The tag key (at most 128 characters; the `aws:` prefix is reserved).
    pub key: String,
    /// The tag value (at most 256 characters; may be empty).
    pub value: String,
}

impl Tag {
    /// A tag `key` = `value`.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// EC2 instance state names (the API's `InstanceState.Name`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    /// `pending`: launching or starting, not yet running.
    Pending,
    /// `running`: up (which says nothing about Windows having booted or the SSM agent).
    Running,
    /// `shutting-down`: being terminated.
    ShuttingDown,
    /// `terminated`: gone for good; still described for a while after termination.
    Terminated,
    /// `stopping`: shutting down to `stopped` (Sysprep's shutdown, or StopInstances).
    Stopping,
    /// `stopped`: shut down, its volumes kept; an image can be created from it.
    Stopped,
}

impl InstanceState {
    /// The API spelling (`shutting-down`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::ShuttingDown => "shutting-down",
            Self::Terminated => "terminated",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
        }
    }
}

/// Which launch template (and version) to launch from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchTemplateRef {
    /// The launch template's ID (`lt-...`).
    pub launch_template_id: String,
    /// A version number, `$Latest` or `$Default`.
    pub version: String,
}

/// EC2 RunInstances input (the subset fleetprep uses).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInstancesRequest {
    /// The AMI to launch (`ami-...`).
    pub image_id: String,
    /// The EC2 instance type (`m5.large`, …).
    pub instance_type: String,
    /// How many instances to launch (RunInstances' `MinCount` and `MaxCount`).
    pub count: u32,
    /// The subnet to launch in; `None` for the default VPC's default subnet.
    pub subnet_id: Option<String>,
    /// Security group IDs (`sg-...`); empty for the VPC's default group.
    pub security_group_ids: Vec<String>,
    /// Instance profile name or ARN (the builder needs SSM permissions).
    pub iam_instance_profile: Option<String>,
    /// User data as plain text (base64-encoded on the way to the API).
    pub user_data: Option<String>,
    /// Tags applied to the instances at launch (`TagSpecifications`, resource type `instance`).
    pub tags: Vec<Tag>,
    /// Idempotency token: at most 64 ASCII characters.
    pub client_token: String,
    /// Launch from this template; the request's other fields override its values.
    pub launch_template: Option<LaunchTemplateRef>,
}

/// One EC2 instance as DescribeInstances reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// The instance ID (`i-...`).
    pub instance_id: String,
    /// The AMI it was launched from.
    pub image_id: String,
    /// The EC2 instance type (`m5.large`, …).
    pub instance_type: String,
    /// Instance state as DescribeInstances reports it (`State.Name`).
    pub state: InstanceState,
    /// `StateReason.Code`, e.g. `Client.UserInitiatedShutdown`.
    pub state_reason: Option<String>,
    /// When the instance was last launched or started (`LaunchTime`).
    pub launch_time: SystemTime,
    /// `windows` for Windows instances.
    pub platform: Option<String>,
    /// The private DNS name EC2 assigned (`ip-10-0-0-1.ec2.internal`), when it has one.
    pub private_dns_name: Option<String>,
    /// The instance's tags.
    pub tags: Vec<Tag>,
}

/// One instance's state transition from Start/Stop/TerminateInstances.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStateChange {
    /// The instance ID (`i-...`).
    pub instance_id: String,
    /// The state before the call.
    pub previous_state: InstanceState,
    /// The state right after the call (e.g. `stopping`, not yet `stopped`).
    pub current_state: InstanceState,
}

/// EC2 GetConsoleOutput (decoded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleOutput {
    /// The instance ID (`i-...`).
    pub instance_id: String,
    /// The console text (the most recent 64 KB EC2 keeps), decoded from base64.
    pub output: String,
    /// When the output was last updated; `None` when nothing was captured yet.
    pub timestamp: Option<SystemTime>,
}

/// EC2 CreateImage input.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateImageRequest {
    /// The instance to image (fleetprep's builder, stopped after Sysprep).
    pub instance_id: String,
    /// Unique per account and region.
    pub name: String,
    /// The AMI's description.
    pub description: Option<String>,
    /// `NoReboot`: image a running instance without shutting it down first (false: EC2 may
    /// reboot it for a consistent file system).
    pub no_reboot: bool,
    /// Tags applied to the new AMI (and its snapshots).
    pub tags: Vec<Tag>,
    /// Makes retries return the same image (see [`Cloud::create_image`]).
    pub client_token: String,
}

/// EC2 image states (the API's `ImageState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageState {
    /// `pending`: being created; not yet usable.
    Pending,
    /// `available`: registered and can launch instances.
    Available,
    /// `invalid`: the AMI is not valid.
    Invalid,
    /// `deregistered`: deregistered; no longer usable.
    Deregistered,
    /// `transient`: temporarily unavailable while EC2 works on it.
    Transient,
    /// `failed`: creation failed (see `state_reason`).
    Failed,
    /// `error`: an error occurred with the AMI.
    Error,
    /// `disabled`: disabled (DisableImage); cannot launch instances until re-enabled.
    Disabled,
}

/// One image as DescribeImages reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// The AMI ID (`ami-...`).
    pub image_id: String,
    /// The AMI name, unique per account and region.
    pub name: String,
    /// Image state as DescribeImages reports it.
    pub state: ImageState,
    /// `StateReason.Message` when the image failed.
    pub state_reason: Option<String>,
    /// The instance the image was created from (`SourceInstanceId`), when EC2 reports it.
    pub source_instance_id: Option<String>,
    /// When the image was created (`CreationDate`).
    pub creation_date: SystemTime,
    /// The AMI's tags.
    pub tags: Vec<Tag>,
}

/// EC2 CreateLaunchTemplateVersion input.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateLaunchTemplateVersionRequest {
    /// The launch template (`lt-...`).
    pub launch_template_id: String,
    /// The version to copy from (number, `$Latest` or `$Default`).
    pub source_version: String,
    /// The AMI the new version launches (`LaunchTemplateData.ImageId`).
    pub image_id: String,
    /// The version's description.
    pub version_description: Option<String>,
    /// Idempotency token: a repeated request returns the version created the first time.
    pub client_token: String,
}

/// One launch template version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchTemplateVersion {
    /// The launch template (`lt-...`).
    pub launch_template_id: String,
    /// The version number (1 for a template's first version).
    pub version_number: i64,
    /// The AMI this version launches.
    pub image_id: String,
    /// Whether this is the template's default version (what `$Default` resolves to).
    pub default_version: bool,
}

// ==================================================================== SSM types

/// SSM `PingStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PingStatus {
    /// The agent is connected and answering: commands can be sent.
    Online,
    /// The agent stopped pinging Systems Manager (instance rebooting, agent stopped, no route).
    ConnectionLost,
    /// The instance is not running (stopped or terminated).
    Inactive,
}

/// One managed instance as DescribeInstanceInformation reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceInformation {
    /// The managed instance's ID (`i-...`).
    pub instance_id: String,
    /// Whether the agent is reachable now.
    pub ping_status: PingStatus,
    /// When the agent last pinged Systems Manager (`LastPingDateTime`).
    pub last_ping: SystemTime,
    /// `Windows`, `Linux`, ...
    pub platform_type: String,
    /// e.g. `Microsoft Windows Server 2022 Datacenter`.
    pub platform_name: String,
    /// The OS version (`10.0.20348` for Windows Server 2022).
    pub platform_version: String,
    /// The SSM agent's version.
    pub agent_version: String,
    /// The NetBIOS computer name the agent reports.
    pub computer_name: String,
}

/// SSM SendCommand input (document `AWS-RunPowerShellScript` in practice).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendCommandRequest {
    /// At most [`SEND_COMMAND_MAX_INSTANCES`].
    pub instance_ids: Vec<String>,
    /// The SSM document to run (`AWS-RunPowerShellScript`, `AWS-InstallWindowsUpdates`).
    pub document_name: String,
    /// The document's `commands` parameter: script lines (`AWS-RunPowerShellScript`).
    pub commands: Vec<String>,
    /// Parameters of any other document (e.g. `AWS-InstallWindowsUpdates`: `Action`,
    /// `AllowReboot`), sent as given.
    #[serde(default)]
    pub parameters: std::collections::BTreeMap<String, Vec<String>>,
    /// The document's `executionTimeout` parameter, seconds.
    pub execution_timeout_seconds: Option<u32>,
    /// SendCommand's `Comment` (at most 100 characters), shown in the console and history.
    pub comment: Option<String>,
}

/// SSM command invocation status (`GetCommandInvocation.Status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CommandStatus {
    /// Not yet delivered to the instance's agent.
    Pending,
    /// The agent is running the command.
    InProgress,
    /// Delivery failed and is being retried (the agent was unreachable).
    Delayed,
    /// The command ran and exited with code 0. Terminal.
    Success,
    /// The command was cancelled before it completed. Terminal.
    Cancelled,
    /// Delivery or execution exceeded its timeout (`StatusDetails` says which). Terminal.
    TimedOut,
    /// The command ran and failed (non-zero exit code), or could not be delivered. Terminal.
    Failed,
    /// A cancel request is being processed.
    Cancelling,
}

impl CommandStatus {
    /// True once the invocation will not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Success | Self::Cancelled | Self::TimedOut | Self::Failed
        )
    }
}

/// SSM GetCommandInvocation output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandInvocation {
    /// The command's ID, as SendCommand returned it.
    pub command_id: String,
    /// The instance this invocation ran on (`i-...`).
    pub instance_id: String,
    /// Where the invocation stands.
    pub status: CommandStatus,
    /// `StatusDetails`, e.g. `Undeliverable`, `DeliveryTimedOut`, `ExecutionTimedOut`.
    pub status_details: String,
    /// Script exit code; -1 while running or when the agent was cut off.
    pub response_code: i32,
    /// Standard output (`StandardOutputContent`; the API keeps at most the first 24,000
    /// characters).
    pub stdout: String,
    /// Standard error (`StandardErrorContent`; at most the first 8,000 characters).
    pub stderr: String,
}

// ==================================================================== Auto Scaling types

/// Identifies one pending lifecycle action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleHookRef {
    /// The Auto Scaling group's name.
    pub auto_scaling_group_name: String,
    /// The lifecycle hook holding the instance.
    pub lifecycle_hook_name: String,
    /// The instance in `Pending:Wait` or `Terminating:Wait` (`i-...`).
    pub instance_id: String,
    /// The token from the lifecycle event, when there is one.
    pub lifecycle_action_token: Option<String>,
}

/// `LifecycleActionResult`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LifecycleActionResult {
    /// `CONTINUE`: proceed: a launching instance goes in service, a terminating one terminates.
    Continue,
    /// `ABANDON`: a launching instance is terminated and replaced; a terminating one
    /// terminates anyway (other hooks are skipped).
    Abandon,
}

/// Auto Scaling CompleteLifecycleAction input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompleteLifecycleActionRequest {
    /// The lifecycle action to complete.
    pub hook: LifecycleHookRef,
    /// What the group does with the instance next.
    pub result: LifecycleActionResult,
}

/// Auto Scaling StartInstanceRefresh input (the preferences fleetprep sets).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartInstanceRefreshRequest {
    /// The Auto Scaling group to refresh.
    pub auto_scaling_group_name: String,
    /// `DesiredConfiguration.LaunchTemplate`; None refreshes onto the group's current template.
    pub launch_template: Option<LaunchTemplateRef>,
    /// `Preferences.MinHealthyPercentage`: the share of desired capacity (0–100) that stays
    /// in service while instances are replaced.
    pub min_healthy_percentage: u32,
    /// `Preferences.InstanceWarmup`: seconds after a new instance is in service before it
    /// counts as healthy.
    pub instance_warmup_seconds: u32,
    /// Ascending percentages ending at 100, or empty for no checkpoints.
    pub checkpoint_percentages: Vec<u32>,
    /// `Preferences.CheckpointDelay`: seconds to wait at each checkpoint.
    pub checkpoint_delay_seconds: u32,
}

/// Instance refresh status (`InstanceRefreshStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InstanceRefreshStatus {
    /// The request was created but the refresh has not started.
    Pending,
    /// Instances are being replaced.
    InProgress,
    /// Every instance was replaced. Terminal.
    Successful,
    /// The refresh failed (see `status_reason`). Terminal.
    Failed,
    /// A cancellation (CancelInstanceRefresh) is in progress.
    Cancelling,
    /// The refresh was cancelled. Terminal.
    Cancelled,
    /// A rollback to the previous configuration is in progress.
    RollbackInProgress,
    /// The rollback failed. Terminal.
    RollbackFailed,
    /// The rollback completed. Terminal.
    RollbackSuccessful,
    /// Replacement is done and the refresh waits out its bake time before it succeeds.
    Baking,
}

/// One instance refresh as DescribeInstanceRefreshes reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRefresh {
    /// The refresh's ID, as StartInstanceRefresh returned it.
    pub instance_refresh_id: String,
    /// The group being refreshed.
    pub auto_scaling_group_name: String,
    /// Where the refresh stands.
    pub status: InstanceRefreshStatus,
    /// Why it is in its status (`StatusReason`), e.g. why it failed.
    pub status_reason: Option<String>,
    /// Percentage (0–100) of instances replaced so far.
    pub percentage_complete: u32,
    /// Instances still to be replaced.
    pub instances_to_update: u32,
}

// ==================================================================== CloudWatch types

// ==================================================================== secrets

/// A reference to a secret the instances read themselves. Never a value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "kebab-case")]
pub enum SecretRef {
    /// A Secrets Manager secret by name or ARN.
    SecretsManager {
        /// The secret's name or ARN (`SecretId`).
        secret_id: String,
    },
    /// An SSM Parameter Store parameter that must be a SecureString.
    SsmParameter {
        /// The parameter's name (`/fleet/join`) or ARN.
        name: String,
    },
}

/// What a secret check proves (metadata only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretMetadata {
    /// The reference that was checked.
    pub reference: SecretRef,
    /// ARN of the secret or parameter.
    pub arn: String,
    /// When the value last changed (`LastChangedDate` / `LastModifiedDate`), when known.
    pub last_changed: Option<SystemTime>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_command_limits_name_the_problem() {
        let mut request = SendCommandRequest {
            document_name: "AWS-RunPowerShellScript".into(),
            ..Default::default()
        };
        let empty = check_send_command_limits(&request).unwrap_err();
        assert_eq!(empty.kind, ErrorKind::InvalidParameter);
        request.instance_ids = (0..51).map(|i| format!("i-{i:017x}")).collect();
        let too_many = check_send_command_limits(&request).unwrap_err();
        assert!(too_many.message.contains("51 instance ids"), "{too_many}");
        request.instance_ids.truncate(50);
        assert!(check_send_command_limits(&request).is_ok());
    }

    #[test]
    fn api_spellings_round_trip() {
        assert_eq!(
            serde_json::to_value(InstanceState::ShuttingDown).unwrap(),
            "shutting-down"
        );
        assert_eq!(
            serde_json::to_value(LifecycleActionResult::Abandon).unwrap(),
            "ABANDON"
        );
        let reference: SecretRef =
            serde_json::from_str(r#"{"source":"ssm-parameter","name":"/fleet/join"}"#).unwrap();
        assert_eq!(
            reference,
            SecretRef::SsmParameter {
                name: "/fleet/join".into()
            }
        );
    }
}
