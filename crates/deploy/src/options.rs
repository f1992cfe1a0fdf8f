//! What a rendered template contains: the `[deploy]` section of `fleetprep.toml`
//! ([`StackOptions`], chosen when the template is rendered) and the stack parameters
//! ([`StackParameters`], values CloudFormation takes at deploy time).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The Lambda's instruction set (`Architectures` of `AWS::Lambda::Function`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Arch {
    #[default]
    #[serde(rename = "x86_64")]
    X86_64,
    #[serde(rename = "arm64")]
    Arm64,
}

impl Arch {
    /// The name Lambda and the CLI use (`x86_64`, `arm64`).
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The Rust target the `bootstrap` is built for on this architecture.
    pub fn rust_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
            Arch::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }
}

impl std::str::FromStr for Arch {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "x86_64" => Ok(Arch::X86_64),
            "arm64" => Ok(Arch::Arm64),
            other => Err(format!(
                "architecture {other:?} must be \"x86_64\" or \"arm64\""
            )),
        }
    }
}

/// `[deploy]` in `fleetprep.toml`: where the stack goes and which optional parts it has. Every
/// key is optional; the defaults render `deploy/fleetprep.yaml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StackOptions {
    /// The stack name `fleetprep deploy` uses when `--stack` is not given.
    pub stack: Option<String>,
    /// The AWS region (default: from the profile or environment).
    pub region: Option<String>,
    /// The S3 bucket for the Lambda package and the template. Without one, `fleetprep deploy`
    /// creates `fleetprep-artifacts-<account>-<region>` (encrypted, public access blocked).
    pub artifacts_bucket: Option<String>,
    /// The Lambda's architecture.
    pub arch: Arch,
    /// Create the bake builder's role and instance profile (AmazonSSMManagedInstanceCore and
    /// read access to `builder_secrets`). Off: pass `builder_role_arn`.
    pub create_builder_role: bool,
    /// The builder's existing role (with `create_builder_role = false`).
    pub builder_role_arn: Option<String>,
    /// Secrets Manager secret ARNs (or name prefixes ending in `*`) and SSM parameter names the
    /// builder's scripts read on the instance; the created builder role may read exactly these.
    pub builder_secrets: Vec<String>,
    /// Create a role and instance profile for the fleet's launch template (SSM core, and the
    /// instance-metadata tags the `user-data` rename method reads need nothing more).
    pub create_fleet_instance_profile: bool,
    /// Builders must be launched with IMDSv2 only (an IAM condition on RunInstances).
    pub require_imdsv2_on_builders: bool,
    /// An EventBridge Scheduler expression that starts a bake from `[bake]`, e.g.
    /// `cron(0 4 22 * ? *)` (the 22nd of each month: always after Patch Tuesday).
    pub bake_schedule: Option<String>,
    /// Days the function's and the state machines' logs are kept (a CloudWatch Logs
    /// retention value).
    pub log_retention_days: u32,
    /// Tags on every resource that takes tags (and on the stack itself).
    pub tags: BTreeMap<String, String>,
    /// The address subscribed to the alarm topic (the `AlarmEmail` parameter).
    pub alarm_email: Option<String>,
    /// X-Ray tracing of the state machines (the `Tracing` parameter).
    pub tracing: bool,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            stack: None,
            region: None,
            artifacts_bucket: None,
            arch: Arch::X86_64,
            create_builder_role: true,
            builder_role_arn: None,
            builder_secrets: Vec::new(),
            create_fleet_instance_profile: false,
            require_imdsv2_on_builders: true,
            bake_schedule: None,
            log_retention_days: 90,
            tags: BTreeMap::new(),
            alarm_email: None,
            tracing: false,
        }
    }
}

/// The retention values CloudWatch Logs accepts (`RetentionInDays`, "AWS::Logs::LogGroup",
/// CloudFormation Template Reference).
pub const LOG_RETENTION_DAYS: &[u32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

impl StackOptions {
    /// Checks beyond types; the error names the `deploy.` key and the fix.
    pub fn check(&self) -> Result<(), String> {
        if !LOG_RETENTION_DAYS.contains(&self.log_retention_days) {
            return Err(format!(
                "deploy.log_retention_days = {} is not a CloudWatch Logs retention; use one of \
                 {LOG_RETENTION_DAYS:?}",
                self.log_retention_days
            ));
        }
        if !self.create_builder_role && self.builder_role_arn.is_none() {
            return Err(
                "deploy.create_builder_role = false needs deploy.builder_role_arn (the role \
                 of the builder's instance profile)"
                    .into(),
            );
        }
        if self.create_builder_role && self.builder_role_arn.is_some() {
            return Err(
                "deploy.builder_role_arn is only used with deploy.create_builder_role = false"
                    .into(),
            );
        }
        if let Some(schedule) = &self.bake_schedule {
            let ok = ["cron(", "rate(", "at("]
                .iter()
                .any(|p| schedule.starts_with(p))
                && schedule.ends_with(')');
            if !ok {
                return Err(format!(
                    "deploy.bake_schedule = {schedule:?} is not an EventBridge Scheduler \
                     expression; write cron(...), rate(...) or at(...)"
                ));
            }
        }
        for key in self.tags.keys() {
            if key.to_ascii_lowercase().starts_with("aws:") {
                return Err(format!(
                    "deploy.tags: {key:?} uses the reserved aws: prefix; pick another key"
                ));
            }
        }
        Ok(())
    }
}

/// The stack's parameter values (CloudFormation `Parameters`), from the rest of the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackParameters {
    pub function_code_bucket: String,
    pub function_code_key: String,
    pub auto_scaling_group_name: String,
    pub launch_template_id: String,
    pub hostname_pattern: String,
    pub hostname_prefix: String,
    pub naming_mode: String,
    pub rename_method: String,
    pub hook_heartbeat_timeout: u64,
    pub alarm_email: String,
    pub tracing: bool,
    /// The builder's existing role, when the stack does not create one.
    pub builder_role_arn: Option<String>,
}

impl StackParameters {
    /// `(ParameterKey, ParameterValue)` pairs, in the template's parameter order.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![
            ("FunctionCodeBucket", self.function_code_bucket.clone()),
            ("FunctionCodeKey", self.function_code_key.clone()),
            ("AutoScalingGroupName", self.auto_scaling_group_name.clone()),
            ("LaunchTemplateId", self.launch_template_id.clone()),
            ("HostnamePattern", self.hostname_pattern.clone()),
            ("HostnamePrefix", self.hostname_prefix.clone()),
            ("NamingMode", self.naming_mode.clone()),
            ("RenameMethod", self.rename_method.clone()),
            (
                "HookHeartbeatTimeout",
                self.hook_heartbeat_timeout.to_string(),
            ),
            ("AlarmEmail", self.alarm_email.clone()),
            (
                "Tracing",
                if self.tracing { "true" } else { "false" }.into(),
            ),
        ];
        if let Some(arn) = &self.builder_role_arn {
            pairs.push(("BuilderRoleArn", arn.clone()));
        }
        pairs
    }
}
