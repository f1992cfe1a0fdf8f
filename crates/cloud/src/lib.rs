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

    // ---------------------------------------------------------------- CloudWatch
    /// CloudWatch PutMetricData.
    async fn put_metric_data(
        &self,
        namespace: &str,
        data: &[MetricDatum],
    ) -> Result<(), CloudError>;

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
    pub kind: ErrorKind,
    /// The AWS error code, e.g. `RequestLimitExceeded`, `InvalidInstanceID.NotFound`.
    pub code: String,
    pub message: String,
}

impl fmt::Display for CloudError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl CloudError {
    pub fn new(kind: ErrorKind, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind,
            code: code.into(),
            message: message.into(),
        }
    }
    pub fn throttled(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Throttled, code, message)
    }
    pub fn not_found(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, code, message)
    }
    pub fn incorrect_state(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::IncorrectState, code, message)
    }
    pub fn invalid_parameter(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParameter, code, message)
    }
    pub fn limit_exceeded(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::LimitExceeded, code, message)
    }
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
    pub key: String,
    pub value: String,
}

impl Tag {
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
    Pending,
    Running,
    ShuttingDown,
    Terminated,
    Stopping,
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
    pub launch_template_id: String,
    /// A version number, `$Latest` or `$Default`.
    pub version: String,
}

/// EC2 RunInstances input (the subset fleetprep uses).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInstancesRequest {
    pub image_id: String,
    pub instance_type: String,
    pub count: u32,
    pub subnet_id: Option<String>,
    pub security_group_ids: Vec<String>,
    /// Instance profile name or ARN (the builder needs SSM permissions).
    pub iam_instance_profile: Option<String>,
    pub user_data: Option<String>,
    pub tags: Vec<Tag>,
    /// Idempotency token: at most 64 ASCII characters.
    pub client_token: String,
    pub launch_template: Option<LaunchTemplateRef>,
}

/// One EC2 instance as DescribeInstances reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub instance_id: String,
    pub image_id: String,
    pub instance_type: String,
    pub state: InstanceState,
    /// `StateReason.Code`, e.g. `Client.UserInitiatedShutdown`.
    pub state_reason: Option<String>,
    pub launch_time: SystemTime,
    /// `windows` for Windows instances.
    pub platform: Option<String>,
    pub private_dns_name: Option<String>,
    pub tags: Vec<Tag>,
}

/// One instance's state transition from Start/Stop/TerminateInstances.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStateChange {
    pub instance_id: String,
    pub previous_state: InstanceState,
    pub current_state: InstanceState,
}

/// EC2 GetConsoleOutput (decoded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleOutput {
    pub instance_id: String,
    pub output: String,
    pub timestamp: Option<SystemTime>,
}

/// EC2 CreateImage input.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateImageRequest {
    pub instance_id: String,
    /// Unique per account and region.
    pub name: String,
    pub description: Option<String>,
    pub no_reboot: bool,
    pub tags: Vec<Tag>,
    pub client_token: String,
}

/// EC2 image states (the API's `ImageState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageState {
    Pending,
    Available,
    Invalid,
    Deregistered,
    Transient,
    Failed,
    Error,
    Disabled,
}

/// One image as DescribeImages reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub image_id: String,
    pub name: String,
    pub state: ImageState,
    /// `StateReason.Message` when the image failed.
    pub state_reason: Option<String>,
    pub source_instance_id: Option<String>,
    pub creation_date: SystemTime,
    pub tags: Vec<Tag>,
}

/// EC2 CreateLaunchTemplateVersion input.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateLaunchTemplateVersionRequest {
    pub launch_template_id: String,
    /// The version to copy from (number, `$Latest` or `$Default`).
    pub source_version: String,
    pub image_id: String,
    pub version_description: Option<String>,
    pub client_token: String,
}

/// One launch template version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchTemplateVersion {
    pub launch_template_id: String,
    pub version_number: i64,
    pub image_id: String,
    pub default_version: bool,
}

// ==================================================================== SSM types

/// SSM `PingStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PingStatus {
    Online,
    ConnectionLost,
    Inactive,
}

/// One managed instance as DescribeInstanceInformation reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceInformation {
    pub instance_id: String,
    pub ping_status: PingStatus,
    pub last_ping: SystemTime,
    /// `Windows`, `Linux`, ...
    pub platform_type: String,
    /// e.g. `Microsoft Windows Server 2022 Datacenter`.
    pub platform_name: String,
    pub platform_version: String,
    pub agent_version: String,
    /// The NetBIOS computer name the agent reports.
    pub computer_name: String,
}

/// SSM SendCommand input (document `AWS-RunPowerShellScript` in practice).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendCommandRequest {
    /// At most [`SEND_COMMAND_MAX_INSTANCES`].
    pub instance_ids: Vec<String>,
    pub document_name: String,
    /// The document's `commands` parameter: script lines (`AWS-RunPowerShellScript`).
    pub commands: Vec<String>,
    /// Parameters of any other document (e.g. `AWS-InstallWindowsUpdates`: `Action`,
    /// `AllowReboot`), sent as given.
    #[serde(default)]
    pub parameters: std::collections::BTreeMap<String, Vec<String>>,
    /// The document's `executionTimeout` parameter, seconds.
    pub execution_timeout_seconds: Option<u32>,
    pub comment: Option<String>,
}

/// SSM command invocation status (`GetCommandInvocation.Status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CommandStatus {
    Pending,
    InProgress,
    Delayed,
    Success,
    Cancelled,
    TimedOut,
    Failed,
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
    pub command_id: String,
    pub instance_id: String,
    pub status: CommandStatus,
    /// `StatusDetails`, e.g. `Undeliverable`, `DeliveryTimedOut`, `ExecutionTimedOut`.
    pub status_details: String,
    /// Script exit code; -1 while running or when the agent was cut off.
    pub response_code: i32,
    pub stdout: String,
    pub stderr: String,
}

// ==================================================================== Auto Scaling types

/// Identifies one pending lifecycle action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleHookRef {
    pub auto_scaling_group_name: String,
    pub lifecycle_hook_name: String,
    pub instance_id: String,
    /// The token from the lifecycle event, when there is one.
    pub lifecycle_action_token: Option<String>,
}

/// `LifecycleActionResult`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LifecycleActionResult {
    Continue,
    Abandon,
}

/// Auto Scaling CompleteLifecycleAction input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompleteLifecycleActionRequest {
    pub hook: LifecycleHookRef,
    pub result: LifecycleActionResult,
}

/// Auto Scaling StartInstanceRefresh input (the preferences fleetprep sets).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartInstanceRefreshRequest {
    pub auto_scaling_group_name: String,
    /// `DesiredConfiguration.LaunchTemplate`; None refreshes onto the group's current template.
    pub launch_template: Option<LaunchTemplateRef>,
    pub min_healthy_percentage: u32,
    pub instance_warmup_seconds: u32,
    /// Ascending percentages ending at 100, or empty for no checkpoints.
    pub checkpoint_percentages: Vec<u32>,
    pub checkpoint_delay_seconds: u32,
}

/// Instance refresh status (`InstanceRefreshStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InstanceRefreshStatus {
    Pending,
    InProgress,
    Successful,
    Failed,
    Cancelling,
    Cancelled,
    RollbackInProgress,
    RollbackFailed,
    RollbackSuccessful,
    Baking,
}

/// One instance refresh as DescribeInstanceRefreshes reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRefresh {
    pub instance_refresh_id: String,
    pub auto_scaling_group_name: String,
    pub status: InstanceRefreshStatus,
    pub status_reason: Option<String>,
    pub percentage_complete: u32,
    pub instances_to_update: u32,
}

// ==================================================================== CloudWatch types

/// One metric dimension.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dimension {
    pub name: String,
    pub value: String,
}

/// One CloudWatch metric datum.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricDatum {
    pub metric_name: String,
    pub value: f64,
    /// CloudWatch unit name: `Seconds`, `Count`, `Milliseconds`, ...
    pub unit: String,
    pub dimensions: Vec<Dimension>,
    pub timestamp: SystemTime,
}

// ==================================================================== secrets

/// A reference to a secret the instances read themselves. Never a value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "kebab-case")]
pub enum SecretRef {
    /// A Secrets Manager secret by name or ARN.
    SecretsManager { secret_id: String },
    /// An SSM Parameter Store parameter that must be a SecureString.
    SsmParameter { name: String },
}

/// What a secret check proves (metadata only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretMetadata {
    pub reference: SecretRef,
    /// ARN of the secret or parameter.
    pub arn: String,
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
