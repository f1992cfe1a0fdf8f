//! IAM: the one table of what each [`Cloud`] operation needs, and a recorder that proves who
//! calls what.
//!
//! - [`Operation`]: every `Cloud` method (and every `NamePool` method behind
//!   [`Cloud::name_pool`]) with the IAM actions it may need on AWS, declared once in the
//!   `operations!` table below. Handlers declare the operations they call
//!   (`workflows::iam`); their least-privilege policy is derived from this table, never
//!   written twice.
//! - [`RecordingCloud`]: a `Cloud` that forwards to another and logs each operation, so a test
//!   can run a handler against the simulated fleet and compare what it called with what it
//!   declared.
//! - [`actions_for_call`]: the IAM action an AWS SDK call is authorised as. The AWS tests
//!   record every SDK request each operation makes (`aws::iam::CallRecorder`) and check it
//!   against [`Operation::iam_actions`], so the table cannot drift from the implementation.
//!
//! Deliberately no AWS SDK here (it is outside the `aws` feature): the table is data the
//! deploy template and the simulated side use too.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use names::{AllocationRequest, Lease, NamePool, PoolError};

use crate::{
    Cloud, CloudError, CommandInvocation, CompleteLifecycleActionRequest, ConsoleOutput,
    CreateImageRequest, CreateLaunchTemplateVersionRequest, Image, Instance, InstanceInformation,
    InstanceRefresh, InstanceStateChange, LaunchTemplateVersion, LifecycleHookRef,
    RunInstancesRequest, SecretMetadata, SecretRef, SendCommandRequest,
    StartInstanceRefreshRequest, Tag,
};

/// Declares [`Operation`], its names and its IAM actions from one table, so an operation
/// cannot exist without its actions.
macro_rules! operations {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal => [$($action:literal),* $(,)?], )*) => {
        /// One operation of the [`Cloud`] trait (`name_pool.*`: of the name pool behind it).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Operation {
            $( $(#[$doc])* $variant, )*
        }

        impl Operation {
            /// Every operation, in trait order.
            pub const ALL: &'static [Operation] = &[$(Operation::$variant),*];

            /// The trait method's name (`run_instances`, `name_pool.allocate`).
            pub const fn name(self) -> &'static str {
                match self {
                    $(Operation::$variant => $name,)*
                }
            }

            /// The IAM actions the operation may need on AWS, including actions the call
            /// implies without a separate request of its own (for example `iam:PassRole` for
            /// the instance profile RunInstances attaches, `ec2:CreateTags` for tags applied
            /// on create).
            pub const fn iam_actions(self) -> &'static [&'static str] {
                match self {
                    $(Operation::$variant => &[$($action),*],)*
                }
            }
        }
    };
}

operations! {
    // ------------------------------------------------------------------ EC2
    /// [`Cloud::run_instances`]: EC2 RunInstances (launches a bake's builder).
    RunInstances = "run_instances" => ["ec2:RunInstances", "ec2:CreateTags", "iam:PassRole"],
    /// [`Cloud::describe_instances`]: EC2 DescribeInstances.
    DescribeInstances = "describe_instances" => ["ec2:DescribeInstances"],
    /// [`Cloud::start_instances`]: EC2 StartInstances.
    StartInstances = "start_instances" => ["ec2:StartInstances"],
    /// [`Cloud::stop_instances`]: EC2 StopInstances (the builder after Sysprep).
    StopInstances = "stop_instances" => ["ec2:StopInstances"],
    /// [`Cloud::terminate_instances`]: EC2 TerminateInstances (a failed bake's builder).
    TerminateInstances = "terminate_instances" => ["ec2:TerminateInstances"],
    /// [`Cloud::get_console_output`]: EC2 GetConsoleOutput (failure diagnostics).
    GetConsoleOutput = "get_console_output" => ["ec2:GetConsoleOutput"],
    /// [`Cloud::create_image`]: EC2 CreateImage.
    ///
    /// CreateImage has no idempotency token: a repeated request finds the image by name.
    CreateImage = "create_image" => ["ec2:CreateImage", "ec2:DescribeImages", "ec2:CreateTags"],
    /// [`Cloud::describe_images`]: EC2 DescribeImages (polling a new AMI).
    DescribeImages = "describe_images" => ["ec2:DescribeImages"],
    /// [`Cloud::deregister_image`]: EC2 DeregisterImage (a failed bake's AMI).
    DeregisterImage = "deregister_image" => ["ec2:DeregisterImage"],
    /// [`Cloud::create_tags`]: EC2 CreateTags (tagging the finished AMI).
    CreateTags = "create_tags" => ["ec2:CreateTags"],
    /// [`Cloud::create_launch_template_version`]: EC2 CreateLaunchTemplateVersion.
    CreateLaunchTemplateVersion = "create_launch_template_version" =>
        ["ec2:CreateLaunchTemplateVersion"],
    /// [`Cloud::set_default_launch_template_version`]: EC2 ModifyLaunchTemplate `DefaultVersion`.
    SetDefaultLaunchTemplateVersion = "set_default_launch_template_version" =>
        ["ec2:ModifyLaunchTemplate", "ec2:DescribeLaunchTemplateVersions"],
    /// [`Cloud::describe_default_launch_template_version`]: EC2 DescribeLaunchTemplateVersions `$Default`.
    DescribeDefaultLaunchTemplateVersion = "describe_default_launch_template_version" =>
        ["ec2:DescribeLaunchTemplateVersions"],
    // ------------------------------------------------------------------ SSM
    /// [`Cloud::describe_instance_information`]: SSM DescribeInstanceInformation (agent online?).
    DescribeInstanceInformation = "describe_instance_information" =>
        ["ssm:DescribeInstanceInformation"],
    /// [`Cloud::send_command`]: SSM SendCommand.
    SendCommand = "send_command" => ["ssm:SendCommand"],
    /// [`Cloud::get_command_invocation`]: SSM GetCommandInvocation.
    GetCommandInvocation = "get_command_invocation" => ["ssm:GetCommandInvocation"],
    /// [`Cloud::list_command_invocations`]: SSM ListCommandInvocations (one command's
    /// invocations on up to 50 instances, polled per command).
    ListCommandInvocations = "list_command_invocations" => ["ssm:ListCommandInvocations"],
    // ------------------------------------------------------------------ Auto Scaling
    /// [`Cloud::complete_lifecycle_action`]: Auto Scaling CompleteLifecycleAction.
    CompleteLifecycleAction = "complete_lifecycle_action" =>
        ["autoscaling:CompleteLifecycleAction"],
    /// [`Cloud::record_lifecycle_action_heartbeat`]: Auto Scaling RecordLifecycleActionHeartbeat.
    RecordLifecycleActionHeartbeat = "record_lifecycle_action_heartbeat" =>
        ["autoscaling:RecordLifecycleActionHeartbeat"],
    /// [`Cloud::start_instance_refresh`]: Auto Scaling StartInstanceRefresh.
    StartInstanceRefresh = "start_instance_refresh" => ["autoscaling:StartInstanceRefresh"],
    /// [`Cloud::describe_instance_refresh`]: Auto Scaling DescribeInstanceRefreshes.
    DescribeInstanceRefresh = "describe_instance_refresh" =>
        ["autoscaling:DescribeInstanceRefreshes"],
    // ------------------------------------------------------------------ name pool (DynamoDB)
    /// `NamePool::allocate`: leases a hostname to a launching instance.
    ///
    /// Two conditional puts in one transaction, a lookup of the instance's lease, the rollback
    /// of a lost race, expired-lease reclamation.
    NamePoolAllocate = "name_pool.allocate" => [
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:Query",
    ],
    /// `NamePool::confirm`: makes an instance's lease permanent once it took the name.
    NamePoolConfirm = "name_pool.confirm" => ["dynamodb:GetItem", "dynamodb:UpdateItem"],
    /// `NamePool::release`: frees a terminated instance's hostname.
    NamePoolRelease = "name_pool.release" =>
        ["dynamodb:GetItem", "dynamodb:DeleteItem", "dynamodb:UpdateItem"],
    /// `NamePool::get_by_instance`: the lease an instance holds.
    NamePoolGetByInstance = "name_pool.get_by_instance" => ["dynamodb:GetItem"],
    /// `NamePool::get_by_name`: the lease on a hostname.
    NamePoolGetByName = "name_pool.get_by_name" => ["dynamodb:GetItem"],
    /// `NamePool::list`: every lease of the pool.
    NamePoolList = "name_pool.list" => ["dynamodb:Query"],
    // ------------------------------------------------------------------ secrets
    /// [`Cloud::check_secret`]: proves a referenced secret exists.
    ///
    /// A Secrets Manager secret or an SSM SecureString parameter: metadata only, never the value.
    CheckSecret = "check_secret" =>
        ["secretsmanager:DescribeSecret", "ssm:DescribeParameters"],
}

impl Operation {
    /// The operation with this trait-method name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|op| op.name() == name)
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What `fleetprep ... --engine aws` needs (the CLI's Step Functions client, not the Lambda).
pub const ENGINE_MODE_ACTIONS: &[&str] = &[
    "states:ListStateMachines",
    "states:StartExecution",
    "states:DescribeExecution",
    "states:GetExecutionHistory",
];

/// The IAM actions of the operation named `operation`, or None for a name that is not one.
pub fn iam_actions(operation: &str) -> Option<&'static [&'static str]> {
    Operation::from_name(operation).map(Operation::iam_actions)
}

/// The IAM actions of a set of operations, sorted and deduplicated: the action list of a
/// least-privilege policy statement.
pub fn policy_actions(operations: impl IntoIterator<Item = Operation>) -> Vec<&'static str> {
    let actions: BTreeSet<&'static str> = operations
        .into_iter()
        .flat_map(|op| op.iam_actions().iter().copied())
        .collect();
    actions.into_iter().collect()
}

/// The IAM action(s) an AWS SDK call is authorised as, from the SDK's service and operation
/// names (`"EC2"`, `"RunInstances"` → `ec2:RunInstances`). DynamoDB transactions are
/// authorised per item action, so they map to those.
pub fn actions_for_call(service: &str, operation: &str) -> Vec<String> {
    let prefix = match service {
        "EC2" => "ec2",
        "SSM" => "ssm",
        "Auto Scaling" => "autoscaling",
        "CloudWatch" => "cloudwatch",
        "DynamoDB" => "dynamodb",
        "Secrets Manager" => "secretsmanager",
        "SFN" => "states",
        "STS" => "sts",
        other => return vec![format!("{}:{operation}", other.to_lowercase())],
    };
    match (prefix, operation) {
        // "TransactWriteItems" is not an IAM action; each item is authorised as its own
        // action (DynamoDB developer guide, "Using IAM with DynamoDB transactions").
        // fleetprep's only transaction is the allocation's two conditional puts.
        ("dynamodb", "TransactWriteItems") => vec!["dynamodb:PutItem".to_owned()],
        ("dynamodb", "TransactGetItems") => vec!["dynamodb:GetItem".to_owned()],
        _ => vec![format!("{prefix}:{operation}")],
    }
}

/// The operations a [`RecordingCloud`] saw, in call order. Shared: clone the `Arc`.
#[derive(Debug, Default)]
pub struct OperationLog {
    calls: Mutex<Vec<Operation>>,
}

impl OperationLog {
    /// The operations recorded since the last `take`, in call order.
    pub fn take(&self) -> Vec<Operation> {
        std::mem::take(&mut *self.calls.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn record(&self, operation: Operation) {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(operation);
    }
}

/// A [`Cloud`] that logs every operation, then forwards it unchanged to `inner`.
pub struct RecordingCloud {
    inner: Arc<dyn Cloud>,
    log: Arc<OperationLog>,
}

impl RecordingCloud {
    /// Wraps `inner`, appending every operation called to `log`.
    pub fn new(inner: Arc<dyn Cloud>, log: Arc<OperationLog>) -> Self {
        Self { inner, log }
    }
}

#[async_trait]
impl Cloud for RecordingCloud {
    async fn run_instances(
        &self,
        request: RunInstancesRequest,
    ) -> Result<Vec<Instance>, CloudError> {
        self.log.record(Operation::RunInstances);
        self.inner.run_instances(request).await
    }

    async fn describe_instances(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<Instance>, CloudError> {
        self.log.record(Operation::DescribeInstances);
        self.inner.describe_instances(instance_ids).await
    }

    async fn start_instances(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<InstanceStateChange>, CloudError> {
        self.log.record(Operation::StartInstances);
        self.inner.start_instances(instance_ids).await
    }

    async fn stop_instances(
        &self,
        instance_ids: &[String],
        force: bool,
    ) -> Result<Vec<InstanceStateChange>, CloudError> {
        self.log.record(Operation::StopInstances);
        self.inner.stop_instances(instance_ids, force).await
    }

    async fn terminate_instances(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<InstanceStateChange>, CloudError> {
        self.log.record(Operation::TerminateInstances);
        self.inner.terminate_instances(instance_ids).await
    }

    async fn get_console_output(&self, instance_id: &str) -> Result<ConsoleOutput, CloudError> {
        self.log.record(Operation::GetConsoleOutput);
        self.inner.get_console_output(instance_id).await
    }

    async fn create_image(&self, request: CreateImageRequest) -> Result<String, CloudError> {
        self.log.record(Operation::CreateImage);
        self.inner.create_image(request).await
    }

    async fn describe_images(&self, image_ids: &[String]) -> Result<Vec<Image>, CloudError> {
        self.log.record(Operation::DescribeImages);
        self.inner.describe_images(image_ids).await
    }

    async fn deregister_image(&self, image_id: &str) -> Result<(), CloudError> {
        self.log.record(Operation::DeregisterImage);
        self.inner.deregister_image(image_id).await
    }

    async fn create_tags(&self, resource_ids: &[String], tags: &[Tag]) -> Result<(), CloudError> {
        self.log.record(Operation::CreateTags);
        self.inner.create_tags(resource_ids, tags).await
    }

    async fn create_launch_template_version(
        &self,
        request: CreateLaunchTemplateVersionRequest,
    ) -> Result<LaunchTemplateVersion, CloudError> {
        self.log.record(Operation::CreateLaunchTemplateVersion);
        self.inner.create_launch_template_version(request).await
    }

    async fn set_default_launch_template_version(
        &self,
        launch_template_id: &str,
        version: i64,
    ) -> Result<i64, CloudError> {
        self.log.record(Operation::SetDefaultLaunchTemplateVersion);
        self.inner
            .set_default_launch_template_version(launch_template_id, version)
            .await
    }

    async fn describe_default_launch_template_version(
        &self,
        launch_template_id: &str,
    ) -> Result<LaunchTemplateVersion, CloudError> {
        self.log
            .record(Operation::DescribeDefaultLaunchTemplateVersion);
        self.inner
            .describe_default_launch_template_version(launch_template_id)
            .await
    }

    async fn describe_instance_information(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<InstanceInformation>, CloudError> {
        self.log.record(Operation::DescribeInstanceInformation);
        self.inner.describe_instance_information(instance_ids).await
    }

    async fn send_command(&self, request: SendCommandRequest) -> Result<String, CloudError> {
        self.log.record(Operation::SendCommand);
        self.inner.send_command(request).await
    }

    async fn get_command_invocation(
        &self,
        command_id: &str,
        instance_id: &str,
    ) -> Result<CommandInvocation, CloudError> {
        self.log.record(Operation::GetCommandInvocation);
        self.inner
            .get_command_invocation(command_id, instance_id)
            .await
    }

    async fn list_command_invocations(
        &self,
        command_id: &str,
    ) -> Result<Vec<CommandInvocation>, CloudError> {
        self.log.record(Operation::ListCommandInvocations);
        self.inner.list_command_invocations(command_id).await
    }

    async fn complete_lifecycle_action(
        &self,
        request: CompleteLifecycleActionRequest,
    ) -> Result<(), CloudError> {
        self.log.record(Operation::CompleteLifecycleAction);
        self.inner.complete_lifecycle_action(request).await
    }

    async fn record_lifecycle_action_heartbeat(
        &self,
        hook: LifecycleHookRef,
    ) -> Result<(), CloudError> {
        self.log.record(Operation::RecordLifecycleActionHeartbeat);
        self.inner.record_lifecycle_action_heartbeat(hook).await
    }

    async fn start_instance_refresh(
        &self,
        request: StartInstanceRefreshRequest,
    ) -> Result<String, CloudError> {
        self.log.record(Operation::StartInstanceRefresh);
        self.inner.start_instance_refresh(request).await
    }

    async fn describe_instance_refresh(
        &self,
        auto_scaling_group_name: &str,
        instance_refresh_id: &str,
    ) -> Result<InstanceRefresh, CloudError> {
        self.log.record(Operation::DescribeInstanceRefresh);
        self.inner
            .describe_instance_refresh(auto_scaling_group_name, instance_refresh_id)
            .await
    }

    fn name_pool(&self) -> Arc<dyn NamePool> {
        // Handing out the pool is not an AWS call; what is done with it is.
        Arc::new(RecordingNamePool {
            inner: self.inner.name_pool(),
            log: self.log.clone(),
        })
    }

    async fn check_secret(&self, reference: &SecretRef) -> Result<SecretMetadata, CloudError> {
        self.log.record(Operation::CheckSecret);
        self.inner.check_secret(reference).await
    }
}

/// The name pool of a [`RecordingCloud`]: logs each method as its `name_pool.*` operation.
struct RecordingNamePool {
    inner: Arc<dyn NamePool>,
    log: Arc<OperationLog>,
}

#[async_trait]
impl NamePool for RecordingNamePool {
    async fn allocate(&self, request: &AllocationRequest) -> Result<Lease, PoolError> {
        self.log.record(Operation::NamePoolAllocate);
        self.inner.allocate(request).await
    }

    async fn confirm(&self, instance_id: &str) -> Result<Lease, PoolError> {
        self.log.record(Operation::NamePoolConfirm);
        self.inner.confirm(instance_id).await
    }

    async fn release(&self, instance_id: &str) -> Result<Option<Lease>, PoolError> {
        self.log.record(Operation::NamePoolRelease);
        self.inner.release(instance_id).await
    }

    async fn get_by_instance(&self, instance_id: &str) -> Result<Option<Lease>, PoolError> {
        self.log.record(Operation::NamePoolGetByInstance);
        self.inner.get_by_instance(instance_id).await
    }

    async fn get_by_name(&self, name: &str) -> Result<Option<Lease>, PoolError> {
        self.log.record(Operation::NamePoolGetByName);
        self.inner.get_by_name(name).await
    }

    async fn list(&self) -> Result<Vec<Lease>, PoolError> {
        self.log.record(Operation::NamePoolList);
        self.inner.list().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        let mut seen = BTreeSet::new();
        for op in Operation::ALL {
            assert!(seen.insert(op.name()), "{op} twice");
            assert_eq!(Operation::from_name(op.name()), Some(*op));
        }
        assert_eq!(Operation::from_name("launch_rockets"), None);
        assert_eq!(iam_actions("launch_rockets"), None);
        assert_eq!(
            iam_actions("describe_instances"),
            Some(&["ec2:DescribeInstances"][..])
        );
    }

    #[test]
    fn every_action_is_a_service_prefixed_iam_action() {
        for op in Operation::ALL {
            assert!(!op.iam_actions().is_empty(), "{op} declares no action");
            for action in op.iam_actions() {
                let (service, name) = action
                    .split_once(':')
                    .unwrap_or_else(|| panic!("{op}: {action:?} is not service:Action"));
                assert!(!service.is_empty(), "{op}: {action}");
                assert!(
                    name.starts_with(|c: char| c.is_ascii_uppercase()) && !name.contains('*'),
                    "{op}: {action}"
                );
            }
        }
    }

    #[test]
    fn policy_is_the_sorted_union() {
        let actions = policy_actions([
            Operation::DescribeInstances,
            Operation::CreateTags,
            Operation::RunInstances,
        ]);
        assert_eq!(
            actions,
            [
                "ec2:CreateTags",
                "ec2:DescribeInstances",
                "ec2:RunInstances",
                "iam:PassRole"
            ]
        );
        assert!(policy_actions([]).is_empty());
    }

    #[test]
    fn sdk_calls_map_to_iam_actions() {
        assert_eq!(
            actions_for_call("EC2", "RunInstances"),
            ["ec2:RunInstances"]
        );
        assert_eq!(
            actions_for_call("Auto Scaling", "CompleteLifecycleAction"),
            ["autoscaling:CompleteLifecycleAction"]
        );
        assert_eq!(
            actions_for_call("SFN", "StartExecution"),
            ["states:StartExecution"]
        );
        assert_eq!(
            actions_for_call("DynamoDB", "TransactWriteItems"),
            ["dynamodb:PutItem"]
        );
        assert_eq!(actions_for_call("Lambda", "Invoke"), ["lambda:Invoke"]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_recording_cloud_logs_and_forwards() {
        use std::time::{Duration, UNIX_EPOCH};
        let clock = Arc::new(clock::VirtualClock::new(
            UNIX_EPOCH + Duration::from_secs(1_790_000_000),
        ));
        let policy =
            sysprep::hostname::HostnamePolicy::from_pattern("{prefix}-{seq:3}", "WEB").unwrap();
        let pool = names::SqliteNamePool::in_memory(policy, clock.clone(), Default::default())
            .expect("pool");
        let sim = Arc::new(crate::sim::SimCloud::new(
            clock,
            Arc::new(pool),
            crate::sim::Scenario::default(),
        ));
        let log = Arc::new(OperationLog::default());
        let cloud = RecordingCloud::new(sim.clone(), log.clone());
        let missing = cloud
            .describe_instances(&["i-00000000000000000".to_owned()])
            .await
            .unwrap_err();
        assert_eq!(missing.kind, crate::ErrorKind::NotFound);
        let lease = cloud
            .name_pool()
            .allocate(&AllocationRequest::new("i-1"))
            .await
            .expect("allocate");
        assert_eq!(
            cloud
                .name_pool()
                .get_by_name(lease.name.as_str())
                .await
                .expect("lookup")
                .map(|l| l.instance_id),
            Some("i-1".to_owned())
        );
        assert_eq!(
            log.take(),
            [
                Operation::DescribeInstances,
                Operation::NamePoolAllocate,
                Operation::NamePoolGetByName
            ]
        );
        assert!(log.take().is_empty());
        // The call reached the simulated fleet.
        assert_eq!(sim.api_calls().get("ec2:DescribeInstances"), Some(&1));
    }
}
