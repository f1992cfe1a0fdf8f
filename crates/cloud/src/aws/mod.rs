//! [`crate::Cloud`] on the official AWS SDK for Rust (cargo feature `aws`).
//!
//! - [`AwsCloud`]: EC2, SSM, Auto Scaling, CloudWatch, Secrets Manager and the DynamoDB
//!   hostname store ([`hostnames::DynamoHostnames`]) behind the one trait.
//! - [`AwsConfig`]: `--profile/--region/--endpoint-url`, resolved through the standard
//!   credential chain (env, profiles, SSO, IMDS).
//! - [`sfn::StepFunctions`]: the engine mode's client (start, describe, history).
//! - [`iam`]: the IAM actions of every Cloud operation, and the call recorder that checks them.
//!
//! The implementation respects the APIs' real limits so the workflows cannot break them:
//! DescribeInstances and DescribeInstanceInformation are batched and paginated, CreateTags is
//! batched, SendCommand rejects more than 50 ids (the caller batches: the command id is the
//! unit the state machine polls). RunInstances carries the request's ClientToken; CreateImage
//! has no token in the API, so a repeated request finds the image by its unique name. Throttling
//! is retried by the SDK's adaptive retry mode first and, when that gives up, surfaces as
//! [`crate::ErrorKind::Throttled`] for the state machine's own Retry.
//!
//! Deliberately absent: no waiting or polling (the state machines own Wait + Choice), no SDK
//! type in any public signature except `aws_config`-free plain structs of this crate.

mod config;
mod convert;
pub mod error;
pub mod hostnames;
pub mod iam;
pub mod sfn;

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_sdk_autoscaling::types::{DesiredConfiguration, RefreshPreferences};
use aws_sdk_ec2::types::{
    Filter, HttpTokensState, IamInstanceProfileSpecification, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, LaunchTemplateSpecification, RequestLaunchTemplateData,
    ResourceType, TagSpecification,
};
use aws_sdk_ssm::types::{InstanceInformationStringFilter, ParameterStringFilter};
use clock::Clock;
use names::{NamePool, PoolOptions};
use sysprep::hostname::HostnamePolicy;

pub use config::{AwsConfig, DEFAULT_MAX_ATTEMPTS};
use convert::*;
use error::from_sdk;
pub use hostnames::{DynamoHostnames, DynamoNamePool};
pub use iam::CallRecorder;

use crate::{
    Cloud, CloudError, CommandInvocation, CompleteLifecycleActionRequest, ConsoleOutput,
    CreateImageRequest, CreateLaunchTemplateVersionRequest, Image, Instance, InstanceInformation,
    InstanceRefresh, InstanceStateChange, LaunchTemplateVersion, LifecycleHookRef,
    RunInstancesRequest, SEND_COMMAND_MAX_INSTANCES, SecretMetadata, SecretRef, SendCommandRequest,
    StartInstanceRefreshRequest, Tag, check_send_command_limits,
};

/// Instance ids per DescribeInstances call. The API takes more, but a request URL/body of
/// 1,000 ids is the documented practical bound and keeps a single failure small.
pub const DESCRIBE_INSTANCES_BATCH: usize = 1000;
/// DescribeInstanceInformation's `InstanceIds` filter takes at most 50 values.
pub const DESCRIBE_INSTANCE_INFORMATION_BATCH: usize = 50;
/// CreateTags: "Constraints: Up to 1000 resource IDs. We recommend breaking up this request
/// into smaller batches." (EC2 API reference, CreateTags.)
pub const CREATE_TAGS_BATCH: usize = 1000;
/// The tag CreateImage puts on the image to remember the request's client token.
pub const CLIENT_TOKEN_TAG: &str = "fleetprep:client-token";

/// The Cloud on AWS.
#[derive(Clone, Debug)]
pub struct AwsCloud {
    ec2: aws_sdk_ec2::Client,
    ssm: aws_sdk_ssm::Client,
    autoscaling: aws_sdk_autoscaling::Client,
    secrets: aws_sdk_secretsmanager::Client,
    hostnames: DynamoHostnames,
    name_pool: Arc<DynamoNamePool>,
}

/// Which hostname pool the Cloud hands out: the DynamoDB table, the pool's namespace in it
/// (one per Auto Scaling group in practice), the naming policy and lease options.
#[derive(Clone, Debug)]
pub struct HostnameStore {
    /// The DynamoDB table's name.
    pub table: String,
    /// The pool's partition key in the table; names are unique within it.
    pub namespace: String,
    /// The naming pattern and its parameters.
    pub policy: HostnamePolicy,
    /// Lease options (how long an unconfirmed lease lives).
    pub options: PoolOptions,
}

macro_rules! client {
    ($krate:ident, $sdk:expr, $config:expr) => {{
        let mut builder = $krate::config::Builder::from($sdk);
        if let Some(recorder) = &$config.recorder {
            builder = builder.interceptor(iam::RecordingInterceptor(recorder.clone()));
        }
        $krate::Client::from_conf(builder.build())
    }};
}

impl AwsCloud {
    /// Resolves `config` once and builds every client. `clock` dates hostname leases (the
    /// system clock in production).
    pub async fn connect(
        config: &AwsConfig,
        hostnames: HostnameStore,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let sdk = config.load().await;
        let dynamodb = client!(aws_sdk_dynamodb, &sdk, config);
        let table = DynamoHostnames::new(dynamodb, hostnames.table);
        let name_pool = Arc::new(table.pool(
            hostnames.namespace,
            hostnames.policy,
            clock,
            hostnames.options,
        ));
        Self {
            ec2: client!(aws_sdk_ec2, &sdk, config),
            ssm: client!(aws_sdk_ssm, &sdk, config),
            autoscaling: client!(aws_sdk_autoscaling, &sdk, config),
            secrets: client!(aws_sdk_secretsmanager, &sdk, config),
            hostnames: table,
            name_pool,
        }
    }

    /// The hostname table (for setup: [`DynamoHostnames::create_table`]).
    pub fn hostnames(&self) -> &DynamoHostnames {
        &self.hostnames
    }

    async fn find_image_by_name(&self, name: &str) -> Result<Option<Image>, CloudError> {
        let output = self
            .ec2
            .describe_images()
            .owners("self")
            .filters(Filter::builder().name("name").values(name).build())
            .send()
            .await
            .map_err(|e| from_sdk("ec2:DescribeImages", e))?;
        Ok(output.images().first().map(image))
    }
}

fn state_changes(
    list: &[aws_sdk_ec2::types::InstanceStateChange],
) -> Result<Vec<InstanceStateChange>, CloudError> {
    list.iter().map(state_change).collect()
}

#[async_trait]
impl Cloud for AwsCloud {
    async fn run_instances(
        &self,
        request: RunInstancesRequest,
    ) -> Result<Vec<Instance>, CloudError> {
        let count = i32::try_from(request.count.max(1)).map_err(|_| {
            CloudError::invalid_parameter(
                "InvalidParameterValue",
                format!("RunInstances: count {} is too large", request.count),
            )
        })?;
        let mut call = self
            .ec2
            .run_instances()
            .min_count(count)
            .max_count(count)
            .client_token(&request.client_token)
            .set_subnet_id(request.subnet_id.clone())
            .set_security_group_ids(
                (!request.security_group_ids.is_empty())
                    .then(|| request.security_group_ids.clone()),
            );
        if !request.image_id.is_empty() {
            call = call.image_id(&request.image_id);
        }
        if !request.instance_type.is_empty() {
            call = call.instance_type(request.instance_type.as_str().into());
        }
        if let Some(profile) = &request.iam_instance_profile {
            let spec = if profile.starts_with("arn:") {
                IamInstanceProfileSpecification::builder().arn(profile)
            } else {
                IamInstanceProfileSpecification::builder().name(profile)
            };
            call = call.iam_instance_profile(spec.build());
        }
        if let Some(user_data) = &request.user_data {
            // The API wants base64; the request carries the script text.
            call = call.user_data(aws_smithy_types::base64::encode(user_data));
        }
        if request.launch_template.is_none() {
            // Instances launched without a template (the bake's builders) answer instance
            // metadata over IMDSv2 only; the deploy template's role may require it with the
            // `ec2:MetadataHttpTokens` condition ("Configure the instance metadata options for
            // new instances", EC2 User Guide). A template keeps its own metadata options.
            call = call.metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_tokens(HttpTokensState::Required)
                    .http_endpoint(InstanceMetadataEndpointState::Enabled)
                    .build(),
            );
        }
        if let Some(template) = &request.launch_template {
            call = call.launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_id(&template.launch_template_id)
                    .version(&template.version)
                    .build(),
            );
        }
        if !request.tags.is_empty() {
            for resource in [ResourceType::Instance, ResourceType::Volume] {
                call = call.tag_specifications(
                    TagSpecification::builder()
                        .resource_type(resource)
                        .set_tags(Some(sdk_tags(&request.tags)))
                        .build(),
                );
            }
        }
        let output = call
            .send()
            .await
            .map_err(|e| from_sdk("ec2:RunInstances", e))?;
        output.instances().iter().map(instance).collect()
    }

    async fn describe_instances(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<Instance>, CloudError> {
        let mut found = Vec::with_capacity(instance_ids.len());
        for batch in instance_ids.chunks(DESCRIBE_INSTANCES_BATCH) {
            let reservations = self
                .ec2
                .describe_instances()
                .set_instance_ids(Some(batch.to_vec()))
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| from_sdk("ec2:DescribeInstances", e))?;
            for reservation in reservations {
                for item in reservation.instances() {
                    found.push(instance(item)?);
                }
            }
        }
        Ok(found)
    }

    async fn start_instances(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<InstanceStateChange>, CloudError> {
        let output = self
            .ec2
            .start_instances()
            .set_instance_ids(Some(instance_ids.to_vec()))
            .send()
            .await
            .map_err(|e| from_sdk("ec2:StartInstances", e))?;
        state_changes(output.starting_instances())
    }

    async fn stop_instances(
        &self,
        instance_ids: &[String],
        force: bool,
    ) -> Result<Vec<InstanceStateChange>, CloudError> {
        let output = self
            .ec2
            .stop_instances()
            .set_instance_ids(Some(instance_ids.to_vec()))
            .force(force)
            .send()
            .await
            .map_err(|e| from_sdk("ec2:StopInstances", e))?;
        state_changes(output.stopping_instances())
    }

    async fn terminate_instances(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<InstanceStateChange>, CloudError> {
        let output = self
            .ec2
            .terminate_instances()
            .set_instance_ids(Some(instance_ids.to_vec()))
            .send()
            .await
            .map_err(|e| from_sdk("ec2:TerminateInstances", e))?;
        state_changes(output.terminating_instances())
    }

    async fn get_console_output(&self, instance_id: &str) -> Result<ConsoleOutput, CloudError> {
        let output = self
            .ec2
            .get_console_output()
            .instance_id(instance_id)
            .send()
            .await
            .map_err(|e| from_sdk("ec2:GetConsoleOutput", e))?;
        let text = match output.output() {
            Some(encoded) => decode_console(encoded),
            None => String::new(),
        };
        Ok(ConsoleOutput {
            instance_id: output.instance_id().unwrap_or(instance_id).to_owned(),
            output: text,
            timestamp: output.timestamp().and_then(system_time),
        })
    }

    async fn create_image(&self, request: CreateImageRequest) -> Result<String, CloudError> {
        // CreateImage has no ClientToken: a retry is recognised by the unique image name and
        // the token tag, and answered with the image the first attempt created.
        if let Some(existing) = self.find_image_by_name(&request.name).await? {
            return same_request_image(&request, existing);
        }
        let mut tags = request.tags.clone();
        tags.push(Tag::new(CLIENT_TOKEN_TAG, &request.client_token));
        let result = self
            .ec2
            .create_image()
            .instance_id(&request.instance_id)
            .name(&request.name)
            .set_description(request.description.clone())
            .no_reboot(request.no_reboot)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Image)
                    .set_tags(Some(sdk_tags(&tags)))
                    .build(),
            )
            .send()
            .await;
        match result {
            Ok(output) => output.image_id().map(str::to_owned).ok_or_else(|| {
                CloudError::unavailable(
                    "MissingImageId",
                    format!(
                        "ec2:CreateImage for {} answered without an image id",
                        request.instance_id
                    ),
                )
            }),
            Err(error) => {
                let mapped = from_sdk("ec2:CreateImage", error);
                // A concurrent retry won the name between our lookup and our call.
                if mapped.code == "InvalidAMIName.Duplicate"
                    && let Some(existing) = self.find_image_by_name(&request.name).await?
                {
                    return same_request_image(&request, existing);
                }
                Err(mapped)
            }
        }
    }

    async fn describe_images(&self, image_ids: &[String]) -> Result<Vec<Image>, CloudError> {
        let mut found = Vec::with_capacity(image_ids.len());
        for batch in image_ids.chunks(DESCRIBE_INSTANCES_BATCH) {
            let output = self
                .ec2
                .describe_images()
                .set_image_ids(Some(batch.to_vec()))
                .send()
                .await
                .map_err(|e| from_sdk("ec2:DescribeImages", e))?;
            found.extend(output.images().iter().map(image));
        }
        Ok(found)
    }

    async fn deregister_image(&self, image_id: &str) -> Result<(), CloudError> {
        self.ec2
            .deregister_image()
            .image_id(image_id)
            .send()
            .await
            .map_err(|e| from_sdk("ec2:DeregisterImage", e))?;
        Ok(())
    }

    async fn create_tags(&self, resource_ids: &[String], tags: &[Tag]) -> Result<(), CloudError> {
        if tags.is_empty() {
            return Ok(());
        }
        for batch in resource_ids.chunks(CREATE_TAGS_BATCH) {
            self.ec2
                .create_tags()
                .set_resources(Some(batch.to_vec()))
                .set_tags(Some(sdk_tags(tags)))
                .send()
                .await
                .map_err(|e| from_sdk("ec2:CreateTags", e))?;
        }
        Ok(())
    }

    async fn create_launch_template_version(
        &self,
        request: CreateLaunchTemplateVersionRequest,
    ) -> Result<LaunchTemplateVersion, CloudError> {
        let output = self
            .ec2
            .create_launch_template_version()
            .launch_template_id(&request.launch_template_id)
            .source_version(&request.source_version)
            .set_version_description(request.version_description.clone())
            .client_token(&request.client_token)
            .launch_template_data(
                RequestLaunchTemplateData::builder()
                    .image_id(&request.image_id)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| from_sdk("ec2:CreateLaunchTemplateVersion", e))?;
        let version = output.launch_template_version().ok_or_else(|| {
            CloudError::unavailable(
                "MissingLaunchTemplateVersion",
                format!(
                    "ec2:CreateLaunchTemplateVersion for {} answered without a version",
                    request.launch_template_id
                ),
            )
        })?;
        Ok(launch_template_version(
            version,
            &request.launch_template_id,
        ))
    }

    async fn set_default_launch_template_version(
        &self,
        launch_template_id: &str,
        version: i64,
    ) -> Result<i64, CloudError> {
        let previous = self
            .describe_default_launch_template_version(launch_template_id)
            .await?;
        self.ec2
            .modify_launch_template()
            .launch_template_id(launch_template_id)
            .default_version(version.to_string())
            .send()
            .await
            .map_err(|e| from_sdk("ec2:ModifyLaunchTemplate", e))?;
        Ok(previous.version_number)
    }

    async fn describe_default_launch_template_version(
        &self,
        launch_template_id: &str,
    ) -> Result<LaunchTemplateVersion, CloudError> {
        let output = self
            .ec2
            .describe_launch_template_versions()
            .launch_template_id(launch_template_id)
            .versions("$Default")
            .send()
            .await
            .map_err(|e| from_sdk("ec2:DescribeLaunchTemplateVersions", e))?;
        let version = output.launch_template_versions().first().ok_or_else(|| {
            CloudError::not_found(
                "InvalidLaunchTemplateId.NotFound",
                format!("launch template {launch_template_id} has no default version"),
            )
        })?;
        Ok(launch_template_version(version, launch_template_id))
    }

    async fn describe_instance_information(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<InstanceInformation>, CloudError> {
        let mut found = Vec::with_capacity(instance_ids.len());
        for batch in instance_ids.chunks(DESCRIBE_INSTANCE_INFORMATION_BATCH) {
            let filter = InstanceInformationStringFilter::builder()
                .key("InstanceIds")
                .set_values(Some(batch.to_vec()))
                .build()
                .map_err(|e| CloudError::invalid_parameter("ConstructionFailure", e.to_string()))?;
            let items = self
                .ssm
                .describe_instance_information()
                .filters(filter)
                .max_results(50)
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| from_sdk("ssm:DescribeInstanceInformation", e))?;
            found.extend(items.iter().map(instance_information));
        }
        Ok(found)
    }

    async fn send_command(&self, request: SendCommandRequest) -> Result<String, CloudError> {
        check_send_command_limits(&request)?;
        let mut call = self
            .ssm
            .send_command()
            .set_instance_ids(Some(request.instance_ids.clone()))
            .document_name(&request.document_name)
            .set_comment(request.comment.clone());
        // AWS-RunPowerShellScript takes `commands`; other documents take their own parameters.
        if !request.commands.is_empty() {
            call = call.parameters("commands", request.commands.clone());
        }
        for (name, values) in &request.parameters {
            call = call.parameters(name, values.clone());
        }
        if let Some(seconds) = request.execution_timeout_seconds {
            call = call.parameters("executionTimeout", vec![seconds.to_string()]);
        }
        let output = call
            .send()
            .await
            .map_err(|e| from_sdk("ssm:SendCommand", e))?;
        output
            .command()
            .and_then(|c| c.command_id())
            .map(str::to_owned)
            .ok_or_else(|| {
                CloudError::unavailable(
                    "MissingCommandId",
                    "ssm:SendCommand answered without a command id",
                )
            })
    }

    async fn get_command_invocation(
        &self,
        command_id: &str,
        instance_id: &str,
    ) -> Result<CommandInvocation, CloudError> {
        let output = self
            .ssm
            .get_command_invocation()
            .command_id(command_id)
            .instance_id(instance_id)
            .send()
            .await
            .map_err(|e| from_sdk("ssm:GetCommandInvocation", e))?;
        Ok(CommandInvocation {
            command_id: output.command_id().unwrap_or(command_id).to_owned(),
            instance_id: output.instance_id().unwrap_or(instance_id).to_owned(),
            status: command_status(output.status()),
            status_details: output.status_details().unwrap_or_default().to_owned(),
            response_code: output.response_code(),
            stdout: output
                .standard_output_content()
                .unwrap_or_default()
                .to_owned(),
            stderr: output
                .standard_error_content()
                .unwrap_or_default()
                .to_owned(),
        })
    }

    async fn list_command_invocations(
        &self,
        command_id: &str,
    ) -> Result<Vec<CommandInvocation>, CloudError> {
        // One page holds every invocation of a command (SendCommand targets at most 50
        // instances; MaxResults is at most 50); the NextToken loop is only a safeguard.
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .ssm
                .list_command_invocations()
                .command_id(command_id)
                .details(true)
                .max_results(SEND_COMMAND_MAX_INSTANCES as i32)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| from_sdk("ssm:ListCommandInvocations", e))?;
            for invocation in page.command_invocations() {
                // AWS-RunPowerShellScript has one plugin (aws:runPowerShellScript): its
                // Output and ResponseCode are the script's.
                let plugin = invocation.command_plugins().first();
                out.push(CommandInvocation {
                    command_id: invocation.command_id().unwrap_or(command_id).to_owned(),
                    instance_id: invocation.instance_id().unwrap_or_default().to_owned(),
                    status: command_status(invocation.status()),
                    status_details: invocation.status_details().unwrap_or_default().to_owned(),
                    response_code: plugin.map_or(-1, |p| p.response_code()),
                    stdout: plugin
                        .and_then(|p| p.output())
                        .unwrap_or_default()
                        .to_owned(),
                    stderr: String::new(),
                });
            }
            match page.next_token() {
                Some(token) if !token.is_empty() => next = Some(token.to_owned()),
                _ => return Ok(out),
            }
        }
    }

    async fn complete_lifecycle_action(
        &self,
        request: CompleteLifecycleActionRequest,
    ) -> Result<(), CloudError> {
        let hook = &request.hook;
        self.autoscaling
            .complete_lifecycle_action()
            .auto_scaling_group_name(&hook.auto_scaling_group_name)
            .lifecycle_hook_name(&hook.lifecycle_hook_name)
            .instance_id(&hook.instance_id)
            .set_lifecycle_action_token(hook.lifecycle_action_token.clone())
            .lifecycle_action_result(lifecycle_result(request.result))
            .send()
            .await
            .map_err(|e| from_sdk("autoscaling:CompleteLifecycleAction", e))?;
        Ok(())
    }

    async fn record_lifecycle_action_heartbeat(
        &self,
        hook: LifecycleHookRef,
    ) -> Result<(), CloudError> {
        self.autoscaling
            .record_lifecycle_action_heartbeat()
            .auto_scaling_group_name(&hook.auto_scaling_group_name)
            .lifecycle_hook_name(&hook.lifecycle_hook_name)
            .instance_id(&hook.instance_id)
            .set_lifecycle_action_token(hook.lifecycle_action_token.clone())
            .send()
            .await
            .map_err(|e| from_sdk("autoscaling:RecordLifecycleActionHeartbeat", e))?;
        Ok(())
    }

    async fn start_instance_refresh(
        &self,
        request: StartInstanceRefreshRequest,
    ) -> Result<String, CloudError> {
        let to_i32 = |value: u32| i32::try_from(value).unwrap_or(i32::MAX);
        let mut preferences = RefreshPreferences::builder()
            .min_healthy_percentage(to_i32(request.min_healthy_percentage))
            .instance_warmup(to_i32(request.instance_warmup_seconds));
        if !request.checkpoint_percentages.is_empty() {
            preferences = preferences
                .set_checkpoint_percentages(Some(
                    request
                        .checkpoint_percentages
                        .iter()
                        .map(|p| to_i32(*p))
                        .collect(),
                ))
                .checkpoint_delay(to_i32(request.checkpoint_delay_seconds));
        }
        let mut call = self
            .autoscaling
            .start_instance_refresh()
            .auto_scaling_group_name(&request.auto_scaling_group_name)
            .preferences(preferences.build());
        if let Some(template) = &request.launch_template {
            call = call.desired_configuration(
                DesiredConfiguration::builder()
                    .launch_template(
                        aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                            .launch_template_id(&template.launch_template_id)
                            .version(&template.version)
                            .build(),
                    )
                    .build(),
            );
        }
        let output = call
            .send()
            .await
            .map_err(|e| from_sdk("autoscaling:StartInstanceRefresh", e))?;
        output
            .instance_refresh_id()
            .map(str::to_owned)
            .ok_or_else(|| {
                CloudError::unavailable(
                    "MissingInstanceRefreshId",
                    "autoscaling:StartInstanceRefresh answered without a refresh id",
                )
            })
    }

    async fn describe_instance_refresh(
        &self,
        auto_scaling_group_name: &str,
        instance_refresh_id: &str,
    ) -> Result<InstanceRefresh, CloudError> {
        let output = self
            .autoscaling
            .describe_instance_refreshes()
            .auto_scaling_group_name(auto_scaling_group_name)
            .instance_refresh_ids(instance_refresh_id)
            .send()
            .await
            .map_err(|e| from_sdk("autoscaling:DescribeInstanceRefreshes", e))?;
        let refresh = output.instance_refreshes().first().ok_or_else(|| {
            CloudError::not_found(
                "ActiveInstanceRefreshNotFound",
                format!(
                    "instance refresh {instance_refresh_id} of group {auto_scaling_group_name} \
                     does not exist"
                ),
            )
        })?;
        Ok(instance_refresh(refresh, auto_scaling_group_name))
    }

    fn name_pool(&self) -> Arc<dyn NamePool> {
        self.name_pool.clone()
    }

    async fn check_secret(&self, reference: &SecretRef) -> Result<SecretMetadata, CloudError> {
        match reference {
            SecretRef::SecretsManager { secret_id } => {
                let output = self
                    .secrets
                    .describe_secret()
                    .secret_id(secret_id)
                    .send()
                    .await
                    .map_err(|e| from_sdk("secretsmanager:DescribeSecret", e))?;
                Ok(SecretMetadata {
                    reference: reference.clone(),
                    arn: output.arn().unwrap_or_default().to_owned(),
                    last_changed: output
                        .last_changed_date()
                        .or(output.created_date())
                        .and_then(system_time),
                })
            }
            SecretRef::SsmParameter { name } => {
                // DescribeParameters reads metadata only: not even the ciphertext crosses.
                let filter = ParameterStringFilter::builder()
                    .key("Name")
                    .option("Equals")
                    .values(name)
                    .build()
                    .map_err(|e| {
                        CloudError::invalid_parameter("ConstructionFailure", e.to_string())
                    })?;
                let output = self
                    .ssm
                    .describe_parameters()
                    .parameter_filters(filter)
                    .send()
                    .await
                    .map_err(|e| from_sdk("ssm:DescribeParameters", e))?;
                let parameter = output
                    .parameters()
                    .iter()
                    .find(|p| p.name() == Some(name.as_str()))
                    .ok_or_else(|| {
                        CloudError::not_found(
                            "ParameterNotFound",
                            format!("SSM parameter {name:?} does not exist"),
                        )
                    })?;
                if parameter.r#type() != Some(&aws_sdk_ssm::types::ParameterType::SecureString) {
                    return Err(CloudError::invalid_parameter(
                        "InvalidParameterType",
                        format!(
                            "SSM parameter {name:?} is a {}, not a SecureString; store secrets \
                             as SecureString so they are encrypted at rest",
                            parameter
                                .r#type()
                                .map(|t| t.as_str())
                                .unwrap_or("parameter")
                        ),
                    ));
                }
                Ok(SecretMetadata {
                    reference: reference.clone(),
                    arn: parameter.arn().unwrap_or_default().to_owned(),
                    last_changed: parameter.last_modified_date().and_then(system_time),
                })
            }
        }
    }
}

/// A retried CreateImage found an image with the requested name: it is ours only if it came
/// from the same instance (or carries the same client token).
fn same_request_image(request: &CreateImageRequest, existing: Image) -> Result<String, CloudError> {
    let token_matches = existing
        .tags
        .iter()
        .any(|t| t.key == CLIENT_TOKEN_TAG && t.value == request.client_token);
    let source_matches = existing.source_instance_id.as_deref() == Some(&request.instance_id);
    if token_matches || source_matches {
        Ok(existing.image_id)
    } else {
        Err(CloudError::new(
            crate::ErrorKind::Conflict,
            "InvalidAMIName.Duplicate",
            format!(
                "ec2:CreateImage: an image named {:?} already exists ({}) and was not made from \
                 {}; choose a unique image name",
                request.name, existing.image_id, request.instance_id
            ),
        ))
    }
}

fn system_time(time: &aws_smithy_types::DateTime) -> Option<SystemTime> {
    SystemTime::try_from(*time).ok()
}

/// Console output is base64 (EC2 API reference, GetConsoleOutput); undecodable output is kept
/// as sent rather than lost, since it is diagnostic evidence.
fn decode_console(encoded: &str) -> String {
    match aws_smithy_types::base64::decode(encoded) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => encoded.to_owned(),
    }
}
