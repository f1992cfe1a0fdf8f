//! The Lambda function: one function, many actions, the same handlers the local engine calls.
//!
//! An invocation is one of two things, told apart by its shape ([`Invocation::parse`]):
//!
//! - A task payload from a Step Functions `lambda:invoke` state, `{"action": "...", ...}`: it
//!   goes to [`workflows::dispatch`] unchanged, exactly as the embedded engine calls it.
//! - An EventBridge "EC2 Instance-launch Lifecycle Action" / "EC2 Instance-terminate Lifecycle
//!   Action" event (when a rule targets the function instead of the state machine): it starts
//!   the matching state machine (`name-on-launch` / `release-on-terminate`) with the event as
//!   its input, exactly what the state machines receive from a rule that targets them. The
//!   execution is named after the lifecycle action token, so EventBridge's at-least-once
//!   redeliveries start one execution, not two.
//!
//! Handler failures become Lambda errors whose `errorType` is the workflow error name
//! ([`workflows::errors`]), which is what the state machines' `Retry`/`Catch` match on. Every
//! invocation yields one CloudWatch EMF line ([`emf_line`]) with its duration and outcome.
//!
//! This crate converts events and nothing else: no handler logic, no AWS calls of its own
//! beyond starting an execution. [`coldstart`] is the fake Lambda Runtime API that measures
//! the `bootstrap` binary's cold start (`fleetprep bench lambda`); with the default `aws`
//! feature off, the crate is only the conversion and that harness (no AWS SDK).
//! [`FunctionConfig`] reads settings from environment pairs given to it (main passes
//! `std::env::vars()`), so tests never touch the process environment.
//!
//! ```
//! use fleetprep_lambda::Invocation;
//! let invocation = Invocation::parse(serde_json::json!({"action": "naming_settings"})).unwrap();
//! assert!(matches!(invocation, Invocation::Task { .. }));
//! ```

pub mod coldstart;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use workflows::HandlerError;
use workflows::errors;

/// EventBridge `detail-type` of the launch hook event.
pub const LAUNCH_DETAIL_TYPE: &str = "EC2 Instance-launch Lifecycle Action";
/// EventBridge `detail-type` of the terminate hook event.
pub const TERMINATE_DETAIL_TYPE: &str = "EC2 Instance-terminate Lifecycle Action";
/// The CloudWatch namespace of the function's own metrics (EMF).
pub const DEFAULT_METRIC_NAMESPACE: &str = "Fleetprep";

/// The `detail` of an Auto Scaling lifecycle event (Auto Scaling user guide, "Amazon
/// EventBridge events for Amazon EC2 Auto Scaling", lifecycle action events).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LifecycleDetail {
    pub lifecycle_action_token: String,
    pub auto_scaling_group_name: String,
    pub lifecycle_hook_name: String,
    #[serde(rename = "EC2InstanceId")]
    pub ec2_instance_id: String,
    pub lifecycle_transition: String,
    #[serde(default)]
    pub notification_metadata: Option<String>,
}

/// Which lifecycle transition an event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    Launch,
    Terminate,
}

impl Transition {
    /// The state machine that handles the transition.
    pub fn workflow(self) -> &'static str {
        match self {
            Transition::Launch => "name-on-launch",
            Transition::Terminate => "release-on-terminate",
        }
    }
}

/// One invocation, classified.
#[derive(Clone, Debug, PartialEq)]
pub enum Invocation {
    /// A task payload for [`workflows::dispatch`].
    Task { action: String, payload: Value },
    /// A lifecycle event to start a state machine with.
    Lifecycle {
        transition: Transition,
        detail: LifecycleDetail,
        /// The whole event, passed on unchanged as the execution input.
        event: Value,
    },
    /// Auto Scaling's `autoscaling:TEST_NOTIFICATION`, sent when a hook is created: nothing
    /// to do.
    TestNotification,
}

impl Invocation {
    /// Classifies an invocation payload; a shape that is neither is an `InvalidInput` error
    /// that says what was expected.
    pub fn parse(event: Value) -> Result<Self, HandlerError> {
        if let Some(action) = event.get("action") {
            let action = action.as_str().ok_or_else(|| {
                HandlerError::new(
                    errors::INVALID_INPUT,
                    format!("field \"action\" must be a string, got {action}"),
                )
            })?;
            return Ok(Invocation::Task {
                action: action.to_owned(),
                payload: event,
            });
        }
        let detail_type = event.get("detail-type").and_then(Value::as_str);
        let transition = match detail_type {
            Some(LAUNCH_DETAIL_TYPE) => Transition::Launch,
            Some(TERMINATE_DETAIL_TYPE) => Transition::Terminate,
            Some(other) => {
                return Err(HandlerError::new(
                    errors::INVALID_INPUT,
                    format!(
                        "EventBridge event of detail-type {other:?} is not handled; route only \
                         {LAUNCH_DETAIL_TYPE:?} and {TERMINATE_DETAIL_TYPE:?} to this function"
                    ),
                ));
            }
            None => {
                if event.get("Event").and_then(Value::as_str)
                    == Some("autoscaling:TEST_NOTIFICATION")
                    || event
                        .pointer("/detail/LifecycleTransition")
                        .and_then(Value::as_str)
                        == Some("autoscaling:TEST_NOTIFICATION")
                {
                    return Ok(Invocation::TestNotification);
                }
                return Err(HandlerError::new(
                    errors::INVALID_INPUT,
                    "payload is neither a task ({\"action\": \"<handler>\", ...}) nor an \
                     EventBridge lifecycle event (with \"detail-type\" and \"detail\")",
                ));
            }
        };
        let raw_detail = event.get("detail").cloned().ok_or_else(|| {
            HandlerError::new(
                errors::INVALID_INPUT,
                format!("{} event has no \"detail\"", transition.workflow()),
            )
        })?;
        if raw_detail
            .get("LifecycleTransition")
            .and_then(Value::as_str)
            == Some("autoscaling:TEST_NOTIFICATION")
        {
            return Ok(Invocation::TestNotification);
        }
        let detail: LifecycleDetail = serde_json::from_value(raw_detail).map_err(|e| {
            HandlerError::new(
                errors::INVALID_INPUT,
                format!(
                    "lifecycle event \"detail\": {e}; expected LifecycleActionToken, \
                     AutoScalingGroupName, LifecycleHookName, EC2InstanceId, LifecycleTransition"
                ),
            )
        })?;
        let expected = match transition {
            Transition::Launch => "autoscaling:EC2_INSTANCE_LAUNCHING",
            Transition::Terminate => "autoscaling:EC2_INSTANCE_TERMINATING",
        };
        if detail.lifecycle_transition != expected {
            return Err(HandlerError::new(
                errors::INVALID_INPUT,
                format!(
                    "detail-type {:?} carries LifecycleTransition {:?}, expected {expected:?}",
                    detail_type.unwrap_or_default(),
                    detail.lifecycle_transition
                ),
            ));
        }
        Ok(Invocation::Lifecycle {
            transition,
            detail,
            event,
        })
    }

    /// The metric dimension for this invocation.
    pub fn action(&self) -> &str {
        match self {
            Invocation::Task { action, .. } => action,
            Invocation::Lifecycle { transition, .. } => match transition {
                Transition::Launch => "start_name_on_launch",
                Transition::Terminate => "start_release_on_terminate",
            },
            Invocation::TestNotification => "test_notification",
        }
    }
}

/// The execution name for a lifecycle event: the action token is unique per lifecycle action,
/// so a redelivered event maps to the same name and Step Functions refuses the duplicate.
/// Execution names allow at most 80 characters of `[A-Za-z0-9-_]`.
pub fn execution_name(transition: Transition, detail: &LifecycleDetail) -> String {
    let prefix = match transition {
        Transition::Launch => "launch",
        Transition::Terminate => "terminate",
    };
    let token: String = detail
        .lifecycle_action_token
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    let mut name = format!("{prefix}-{token}");
    name.truncate(80);
    name
}

/// Starts a state machine execution (Step Functions on AWS, a fake in tests).
#[async_trait::async_trait]
pub trait ExecutionStarter: Send + Sync {
    /// Starts `workflow` with `input` under `name`; an execution that already exists with this
    /// name counts as started (the redelivery case) and returns its ARN or name.
    async fn start(
        &self,
        workflow: &str,
        name: &str,
        input: &Value,
    ) -> Result<String, HandlerError>;
}

/// Settings read from the function's environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionConfig {
    pub hostname_table: String,
    pub hostname_pool: String,
    pub hostname_pattern: String,
    pub hostname_prefix: String,
    pub lease_ttl_seconds: u64,
    pub name_on_launch_arn: Option<String>,
    pub release_on_terminate_arn: Option<String>,
    pub settings: workflows::Settings,
}

impl FunctionConfig {
    /// Reads `FLEETPREP_*` settings from environment pairs. Missing optional values take
    /// defaults; malformed ones are errors that name the variable.
    pub fn from_env(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, String> {
        let vars: std::collections::HashMap<String, String> = vars.into_iter().collect();
        let get = |key: &str| vars.get(key).filter(|v| !v.is_empty()).cloned();
        let number = |key: &str, default: u64| -> Result<u64, String> {
            match get(key) {
                None => Ok(default),
                Some(text) => text.parse().map_err(|_| {
                    format!("environment variable {key}={text:?} must be a whole number")
                }),
            }
        };
        let mut settings = workflows::Settings::default();
        if let Some(mode) = get("FLEETPREP_NAMING_MODE") {
            settings.naming_mode =
                serde_json::from_value(Value::String(mode.clone())).map_err(|_| {
                    format!(
                        "environment variable FLEETPREP_NAMING_MODE={mode:?} must be \"rename\" or \
                         \"sysprep\""
                    )
                })?;
        }
        if let Some(method) = get("FLEETPREP_RENAME_METHOD") {
            settings.rename_method = serde_json::from_value(Value::String(method.clone()))
                .map_err(|_| {
                    format!(
                        "environment variable FLEETPREP_RENAME_METHOD={method:?} must be \
                         \"rename-computer\", \"ec2launch-set-host-name\" or \"user-data\""
                    )
                })?;
        }
        settings.hook_timeout_seconds = number(
            "FLEETPREP_HOOK_TIMEOUT_SECONDS",
            settings.hook_timeout_seconds,
        )?;
        settings.ssm_timeout_seconds = number(
            "FLEETPREP_SSM_TIMEOUT_SECONDS",
            settings.ssm_timeout_seconds,
        )?;
        settings.cleanup_script = get("FLEETPREP_CLEANUP_SCRIPT");
        if let Some(namespace) = get("FLEETPREP_METRIC_NAMESPACE") {
            settings.metric_namespace = namespace;
        }
        Ok(Self {
            hostname_table: get("FLEETPREP_HOSTNAME_TABLE")
                .unwrap_or_else(|| "fleetprep-hostnames".to_owned()),
            hostname_pool: get("FLEETPREP_HOSTNAME_POOL").unwrap_or_else(|| "default".to_owned()),
            hostname_pattern: get("FLEETPREP_HOSTNAME_PATTERN")
                .unwrap_or_else(|| "{prefix}-{seq:4}".to_owned()),
            hostname_prefix: get("FLEETPREP_HOSTNAME_PREFIX").unwrap_or_else(|| "WIN".to_owned()),
            lease_ttl_seconds: number(
                "FLEETPREP_LEASE_TTL_SECONDS",
                names::PoolOptions::default().lease_ttl.as_secs(),
            )?,
            name_on_launch_arn: get("FLEETPREP_NAME_ON_LAUNCH_ARN"),
            release_on_terminate_arn: get("FLEETPREP_RELEASE_ON_TERMINATE_ARN"),
            settings,
        })
    }

    /// The naming policy, checked (a bad pattern fails the cold start with the reason).
    pub fn policy(&self) -> Result<sysprep::hostname::HostnamePolicy, String> {
        sysprep::hostname::HostnamePolicy::from_pattern(
            &self.hostname_pattern,
            &self.hostname_prefix,
        )
        .map_err(|e| {
            format!(
                "FLEETPREP_HOSTNAME_PATTERN={:?} with FLEETPREP_HOSTNAME_PREFIX={:?}: {e}",
                self.hostname_pattern, self.hostname_prefix
            )
        })
    }
}

/// Everything an invocation needs, built once per cold start and borrowed per invocation.
#[derive(Clone)]
pub struct Function {
    pub context: workflows::Context,
    /// None when the function is only a task handler (no lifecycle events routed to it).
    pub starter: Option<Arc<dyn ExecutionStarter>>,
}

/// What one invocation did, for the EMF line.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub action: String,
    /// `Success`, or the error name.
    pub outcome: String,
    pub duration: Duration,
}

impl Function {
    /// Handles one invocation. Never panics on bad input: every malformed payload is an
    /// `InvalidInput` error naming what was wrong.
    pub async fn handle(&self, event: Value) -> (Result<Value, HandlerError>, Report) {
        let clock = self.context.clock.clone();
        let started = clock.now();
        let invocation = Invocation::parse(event);
        let action = invocation
            .as_ref()
            .map(|i| i.action().to_owned())
            .unwrap_or_else(|_| "invalid".to_owned());
        let result = match invocation {
            Ok(invocation) => self.run(invocation).await,
            Err(error) => Err(error),
        };
        let duration = clock
            .now()
            .duration_since(started)
            .unwrap_or(Duration::ZERO);
        let outcome = match &result {
            Ok(_) => "Success".to_owned(),
            Err(error) => error.error.clone(),
        };
        (
            result,
            Report {
                action,
                outcome,
                duration,
            },
        )
    }

    async fn run(&self, invocation: Invocation) -> Result<Value, HandlerError> {
        match invocation {
            Invocation::Task { payload, .. } => workflows::dispatch(payload, &self.context).await,
            Invocation::TestNotification => Ok(json!({"ignored": "autoscaling:TEST_NOTIFICATION"})),
            Invocation::Lifecycle {
                transition,
                detail,
                event,
            } => {
                let starter = self.starter.as_ref().ok_or_else(|| {
                    HandlerError::new(
                        errors::INVALID_INPUT,
                        format!(
                            "a {} event reached the function, but no state machine ARN is \
                             configured; set FLEETPREP_NAME_ON_LAUNCH_ARN and \
                             FLEETPREP_RELEASE_ON_TERMINATE_ARN, or target the state machines \
                             from the EventBridge rules",
                            transition.workflow()
                        ),
                    )
                })?;
                let name = execution_name(transition, &detail);
                let execution = starter.start(transition.workflow(), &name, &event).await?;
                Ok(json!({
                    "workflow": transition.workflow(),
                    "execution": execution,
                    "instance_id": detail.ec2_instance_id,
                }))
            }
        }
    }
}

/// The CloudWatch embedded-metric-format line for one invocation (CloudWatch user guide,
/// "Specification: Embedded metric format"): `Duration` (ms) and `Invocations`/`Errors`
/// counts, dimensioned by action.
pub fn emf_line(namespace: &str, report: &Report, at: SystemTime) -> String {
    let timestamp = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let failed = report.outcome != "Success";
    json!({
        "_aws": {
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["Action"]],
                "Metrics": [
                    {"Name": "Duration", "Unit": "Milliseconds"},
                    {"Name": "Invocations", "Unit": "Count"},
                    {"Name": "Errors", "Unit": "Count"}
                ]
            }]
        },
        "Action": report.action,
        "Outcome": report.outcome,
        "Duration": report.duration.as_secs_f64() * 1000.0,
        "Invocations": 1,
        "Errors": u32::from(failed)
    })
    .to_string()
}

/// A handler failure as the Lambda runtime reports it: `errorType` is the workflow error name
/// the state machines match on, `errorMessage` the cause.
#[derive(Debug)]
pub struct FunctionError(pub HandlerError);

#[cfg(feature = "aws")]
impl From<FunctionError> for lambda_runtime::Diagnostic {
    fn from(error: FunctionError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: error.0.error,
            error_message: error.0.cause,
        }
    }
}

/// Starts executions on AWS Step Functions, by workflow name → state machine ARN.
#[cfg(feature = "aws")]
pub struct StepFunctionsStarter {
    pub client: cloud::aws::sfn::StepFunctions,
    pub name_on_launch_arn: String,
    pub release_on_terminate_arn: String,
}

#[cfg(feature = "aws")]
#[async_trait::async_trait]
impl ExecutionStarter for StepFunctionsStarter {
    async fn start(
        &self,
        workflow: &str,
        name: &str,
        input: &Value,
    ) -> Result<String, HandlerError> {
        let arn = match workflow {
            "name-on-launch" => &self.name_on_launch_arn,
            "release-on-terminate" => &self.release_on_terminate_arn,
            other => {
                return Err(HandlerError::new(
                    errors::INVALID_INPUT,
                    format!("no state machine is configured for workflow {other:?}"),
                ));
            }
        };
        match self.client.start_execution(arn, Some(name), input).await {
            Ok(execution_arn) => Ok(execution_arn),
            // A redelivered event: the execution was started by the first delivery.
            Err(error) if error.code == "ExecutionAlreadyExists" => Ok(name.to_owned()),
            Err(error) => Err(HandlerError::from_cloud("states:StartExecution", error)),
        }
    }
}
