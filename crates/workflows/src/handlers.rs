//! The task handlers: one async fn per `action`, each `(payload, &Context) -> Result<Value>`.
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
use serde_json::{Value, json};

use crate::batch::{CommandSpec, DOCUMENT};
use crate::errors::{self, HandlerError};
use crate::metrics::Outcome;
use crate::{Context, NamingMode, Settings, scripts};
use sysprep::agent::LaunchAgent;
use sysprep::commands::{self, NameSource, RenameRestart, SysprepOptions};
use sysprep::diagnose::{Category, DiagnosisContext};

/// Every action [`call`] knows, in the order of [`crate::iam::HANDLER_ACTIONS`].
pub fn actions() -> impl Iterator<Item = &'static str> {
    crate::iam::HANDLER_ACTIONS.iter().map(|(name, _)| *name)
}

/// Routes to the handler named `action`.
pub async fn call(action: &str, p: Value, ctx: &Context) -> Result<Value, HandlerError> {
    match action {
        "launch_builder" => launch_builder(&p, ctx).await,
        "check_ssm_online" => check_ssm_online(&p, ctx).await,
        "send_command" => send_command(&p, ctx).await,
        "check_command" => check_command(&p, ctx).await,
        "check_secrets" => check_secrets(&p, ctx).await,
        "check_stopped" => check_stopped(&p, ctx).await,
        "create_image" => create_image(&p, ctx).await,
        "check_image" => check_image(&p, ctx).await,
        "tag_image" => tag_image(&p, ctx).await,
        "terminate_instance" => terminate_instance(&p, ctx).await,
        "collect_diagnostics" => collect_diagnostics(&p, ctx).await,
        "cleanup_bake" => cleanup_bake(&p, ctx).await,
        "publish_outcome" => publish_outcome(&p, ctx).await,
        "naming_settings" => naming_settings(&p, ctx).await,
        "allocate_hostname" => allocate_hostname(&p, ctx).await,
        "confirm_hostname" => confirm_hostname(&p, ctx).await,
        "release_hostname" => release_hostname(&p, ctx).await,
        "verify_identity" => verify_identity(&p, ctx).await,
        "complete_lifecycle" => complete_lifecycle(&p, ctx).await,
        "create_template_version" => create_template_version(&p, ctx).await,
        "start_refresh" => start_refresh(&p, ctx).await,
        "check_refresh" => check_refresh(&p, ctx).await,
        "rollback_template" => rollback_template(&p, ctx).await,
        other => Err(HandlerError::new(
            errors::INVALID_INPUT,
            format!(
                "unknown action {other:?}; known actions: {}",
                actions().collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

// ==================================================================== payload helpers

fn field<'a>(p: &'a Value, name: &str) -> Result<&'a Value, HandlerError> {
    p.get(name).filter(|v| !v.is_null()).ok_or_else(|| {
        HandlerError::new(
            errors::INVALID_INPUT,
            format!(
                "action {:?}: payload field {name:?} is missing",
                p.get("action").and_then(Value::as_str).unwrap_or("?")
            ),
        )
    })
}

fn string(p: &Value, name: &str) -> Result<String, HandlerError> {
    field(p, name)?.as_str().map(str::to_string).ok_or_else(|| {
        HandlerError::new(
            errors::INVALID_INPUT,
            format!("payload field {name:?} must be a string"),
        )
    })
}

fn opt_string(p: &Value, name: &str) -> Option<String> {
    p.get(name).and_then(Value::as_str).map(str::to_string)
}

fn number(p: &Value, name: &str, default: u64) -> u64 {
    p.get(name).and_then(Value::as_u64).unwrap_or(default)
}

fn time_of(value: Option<&Value>, fallback: SystemTime) -> SystemTime {
    value
        .and_then(Value::as_str)
        .and_then(asl::history::parse_timestamp)
        .unwrap_or(fallback)
}

fn ts(time: SystemTime) -> String {
    asl::history::format_timestamp(time)
}

/// A stable idempotency token (≤ 64 chars) from the execution id and the state name.
fn client_token(p: &Value, purpose: &str) -> String {
    let execution = opt_string(p, "execution").unwrap_or_default();
    let state = opt_string(p, "state").unwrap_or_default();
    format!(
        "fp-{purpose}-{:016x}",
        stable_hash(&format!("{execution}|{state}|{purpose}"))
    )
}

fn stable_hash(text: &str) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
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
    fn from(p: &Value, ctx: &Context) -> Self {
        let now = ctx.clock.now();
        let wait = p.get("wait").cloned().unwrap_or(Value::Null);
        let since = time_of(wait.get("since"), now);
        Wait {
            now,
            since,
            last_heartbeat: time_of(wait.get("last_heartbeat"), since),
            forced: wait.get("forced").and_then(Value::as_bool).unwrap_or(false),
        }
    }

    fn elapsed(&self) -> Duration {
        self.now.duration_since(self.since).unwrap_or_default()
    }

    fn expired(&self, p: &Value, default_seconds: u64) -> bool {
        self.elapsed() >= Duration::from_secs(number(p, "timeout_seconds", default_seconds))
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

    /// Records a lifecycle heartbeat when half the hook timeout has passed since the last one.
    async fn heartbeat(&mut self, p: &Value, ctx: &Context) -> Result<(), HandlerError> {
        let Some(hook) = hook_ref(p) else {
            return Ok(());
        };
        let every = Duration::from_secs((ctx.settings.hook_timeout_seconds / 2).max(30));
        if self
            .now
            .duration_since(self.last_heartbeat)
            .unwrap_or_default()
            < every
        {
            return Ok(());
        }
        match ctx.cloud.record_lifecycle_action_heartbeat(hook).await {
            Ok(()) => self.last_heartbeat = self.now,
            // Throttled: the hook still has half its timeout left, and the next poll (30 s
            // on) tries again; failing the poll for it would be the only real harm.
            Err(error) if error.kind == cloud::ErrorKind::Throttled => {}
            Err(error) => return Err(lifecycle_err("RecordLifecycleActionHeartbeat")(error)),
        }
        Ok(())
    }
}

fn hook_ref(p: &Value) -> Option<LifecycleHookRef> {
    let hook = p.get("hook").filter(|h| h.is_object())?;
    Some(LifecycleHookRef {
        auto_scaling_group_name: hook.get("AutoScalingGroupName")?.as_str()?.to_string(),
        lifecycle_hook_name: hook.get("LifecycleHookName")?.as_str()?.to_string(),
        instance_id: hook.get("EC2InstanceId")?.as_str()?.to_string(),
        lifecycle_action_token: hook
            .get("LifecycleActionToken")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
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

async fn launch_builder(p: &Value, ctx: &Context) -> Result<Value, HandlerError> {
    let config = field(p, "config")?;
    let image_id = string(config, "image_id")?;
    let instance_type = opt_string(config, "instance_type").unwrap_or_else(|| "m5.large".into());
    let name = opt_string(config, "name").unwrap_or_else(|| "fleetprep-builder".into());
    let request = RunInstancesRequest {
        image_id,
        instance_type,
        count: 1,
        subnet_id: opt_string(config, "subnet_id"),
        security_group_ids: config
            .get("security_group_ids")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        iam_instance_profile: opt_string(config, "instance_profile"),
        user_data: None,
        tags: vec![
            Tag::new("Name", format!("{name}-builder")),
            Tag::new("fleetprep:role", "builder"),
        ],
        client_token: client_token(p, "launch"),
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

async fn check_ssm_online(p: &Value, ctx: &Context) -> Result<Value, HandlerError> {
    let instance_id = string(p, "instance_id")?;
    let mut wait = Wait::from(p, ctx);
    wait.heartbeat(p, ctx).await?;
    if let (Some(batcher), Some(ticket)) = (&ctx.batcher, opt_string(p, "ticket")) {
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
    let expected = opt_string(p, "expected_name");
    let online = info
        .as_ref()
        .is_some_and(|i| i.ping_status == PingStatus::Online);
    let name_ok = match (&expected, &info) {
        (Some(expected), Some(info)) => {
            sysprep::hostname::key(&info.computer_name) == sysprep::hostname::key(expected)
        }
        (Some(_), None) => false,
        (None, _) => true,
    };
    let computer_name = info.as_ref().map(|i| i.computer_name.clone());
    if online && name_ok {
        if let Some(batcher) = &ctx.batcher {
            batcher.unwatch(&instance_id);
        }
        return Ok(wait.answer(true, json!({"computer_name": computer_name})));
    }
    if wait.expired(p, ctx.settings.ssm_timeout_seconds) {
        if let Some(batcher) = &ctx.batcher {
            batcher.unwatch(&instance_id);
        }
        let what = match (&expected, online) {
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
fn command_template(
    p: &Value,
    settings: &Settings,
) -> Result<(Vec<String>, String, u32), HandlerError> {
    let kind = string(p, "kind")?;
    let value = opt_string(p, "value").unwrap_or_default();
    let invalid = |what: String| HandlerError::new(errors::INVALID_INPUT, what);
    let lines = match kind.as_str() {
        "rename" => scripts::per_instance(
            &kind,
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
            scripts::per_instance(&kind, &sequence.script())
        }
        "identity" => scripts::labelled(&kind, &sysprep::agent::identity_script()),
        "detect-agent" => scripts::labelled(&kind, &sysprep::agent::detection_script()),
        "preflight" => scripts::labelled(&kind, &sysprep::preflight::preflight_script(None)),
        "sysprep" => {
            // The builder's agent as detect-agent reported it; none means plain sysprep.exe.
            let agent: LaunchAgent = match opt_string(p, "agent") {
                Some(agent) => agent
                    .parse()
                    .map_err(|e| invalid(format!("send_command sysprep: field \"agent\": {e}")))?,
                None => LaunchAgent::None,
            };
            let sequence = commands::sysprep_commands(agent, &SysprepOptions::default())
                .map_err(|e| invalid(format!("send_command sysprep: {e}")))?;
            scripts::labelled(&kind, &sequence.script())
        }
        "customization" | "cleanup" => scripts::user_script(&kind, &string(p, "script")?),
        other => {
            return Err(HandlerError::new(
                errors::INVALID_INPUT,
                format!(
                    "send_command: unknown kind {other:?}; expected rename, generalize, identity, detect-agent, preflight, sysprep, customization or cleanup"
                ),
            ));
        }
    };
    let timeout = match kind.as_str() {
        "sysprep" | "generalize" => 3600,
        _ => 1800,
    };
    Ok((lines, value, timeout))
}

async fn send_command(p: &Value, ctx: &Context) -> Result<Value, HandlerError> {
    let instance_id = string(p, "instance_id")?;
    let kind = string(p, "kind")?;
    let (template, value, timeout) = command_template(p, &ctx.settings)?;
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
    let commands = scripts::render(&template, &[(instance_id.clone(), value)]);
    let command_id = ctx
        .cloud
        .send_command(SendCommandRequest {
            instance_ids: vec![instance_id],
            document_name: DOCUMENT.into(),
            commands,
            execution_timeout_seconds: Some(timeout),
            comment: Some(format!("fleetprep {kind}")),
        })
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

async fn check_command(p: &Value, ctx: &Context) -> Result<Value, HandlerError> {
    let instance_id = string(p, "instance_id")?;
    let ticket = string(p, "ticket")?;
    let kind = string(p, "kind")?;
    let mut wait = Wait::from(p, ctx);
    wait.heartbeat(p, ctx).await?;
    let Some(invocation) = invocation(ctx, &ticket, &instance_id).await? else {
        if wait.expired(p, 1800) {
            return Err(HandlerError::new(
                errors::TIMEOUT,
                format!("{kind} command on {instance_id} never started (ticket {ticket})"),
            ));
        }
        return Ok(wait.answer(false, json!({"status": "Pending"})));
    };
    match invocation.status {
        CommandStatus::Success => {
            let parsed = interpret(&kind, &instance_id, &invocation.stdout)?;
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
        _ if wait.expired(p, 1800) => Err(HandlerError::new(
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
        _ => Ok(json!({"stdout": stdout})),
    }
}

async fn check_secrets(p: &Value, ctx: &Context) -> Result<Value, HandlerError> {
    let references: Vec<SecretRef> = serde_json::from_value(
        p.get("secrets").cloned().unwrap_or_else(|| json!([])),
    )
    .map_err(|e| {
        HandlerError::new(
            errors::INVALID_INPUT,
            format!("secrets: {e}; expected [{{\"source\": \"secrets-manager\", \"secret_id\": ...}} or {{\"source\": \"ssm-parameter\", \"name\": ...}}]"),
        )
    })?;
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

async fn check_stopped(p: &Value, ctx: &Context) -> Result<Value, HandlerError> {
    let instance_id = string(p, "instance_id")?;
    let mut wait = Wait::from(p, ctx);
    let instance = ctx
        .cloud
        .describe_instances(std::slice::from_ref(&instance_id))
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
            let force_after = Duration::from_secs(number(p, "force_after_seconds", 1500));
            if wait.elapsed() >= force_after && !wait.forced {
                // A shutdown that hangs in `stopping` is cut short with a forced stop.
                ctx.cloud
                    .stop_instances(std::slice::from_ref(&instance_id), true)
                    .await
                    .map_err(cloud_err("StopInstances"))?;
                wait.forced = true;
            }
        }
        InstanceState::Running | InstanceState::Pending => {
            // Still generalizing; if Sysprep failed, its command says so before any shutdown.
            if let Some(ticket) = opt_string(p, "ticket")
                && let Some(invocation) = invocation(ctx, &ticket, &instance_id).await?
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
    if wait.expired(p, 3600) {
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

async fn create_image(p: &Value, ctx: &Context) -> Result<Value, HandlerError> {
    let instance_id = string(p, "instance_id")?;
    let base = opt_string(p, "name").unwrap_or_else(|| "fleetprep".into());
    let token = client_token(p, "image");
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

async fn check_image(p: &Value, ctx: &Context) -> Result<Value, HandlerError> {
    let image_id = string(p, "image_id")?;
    let wait = Wait::from(p, ctx);
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
            if wait.expired(p, 3600) {
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

async fn tag_image(p: &Value, ctx: &Context) -> Result<Value, HandlerError> {
    let image_id = string(p, "image_id")?;
    let mut tags = vec![Tag::new("fleetprep:state", "available")];
    if let Some(extra) = p.get("tags").and_then(Value::as_object) {
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

async fn terminate_instance(p: &Value, ctx: &Context) -> Result<Value, HandlerError> {
    let instance_id = string(p, "instance_id")?;
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
            .find_map(|name| Category::ALL.into_iter().find(|c| c.as_str() == name))
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

/// The finding names of a [`errors::PREFLIGHT_BLOCKED`] cause (`... blocked by [a, b]: ...`).
fn blocking_findings(cause: &str) -> impl Iterator<Item = &str> {
    cause
        .split_once("blocked by [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(names, _)| names)
        .unwrap_or_default()
        .split(", ")
        .filter(|name| !name.is_empty())
}

async fn collect_diagnostics(p: &Value, ctx: &Context) -> Result<Value, HandlerError> {
    let error = p.get("error").cloned().unwrap_or(Value::Null);
    let error_name = error
        .get("Error")
        .and_then(Value::as_str)
        .unwrap_or("States.Runtime")
        .to_string();
    let cause_raw = error
        .get("Cause")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    // Lambda failures wrap the cause as {"errorMessage": ..., "errorType": ...}.
    let cause = serde_json::from_str::<Value>(&cause_raw)
        .ok()
        .and_then(|v| {
            v.get("errorMessage")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or(cause_raw);
    let console = match opt_string(p, "instance_id") {
        Some(id) => ctx
            .cloud
            .get_console_output(&id)
            .await
            .map(|c| c.output)
            .unwrap_or_default(),
        None => String::new(),
    };
    let (category, retriable, evidence, remediation) = classify(&error_name, &cause, &console);
    Ok(json!({
        "error": error_name,
        "cause": cause,
        "category": category,
        "retriable": retriable,
        "evidence": evidence,
        "remediation": remediation,
    }))
}

async fn cleanup_bake(p: &Value, ctx: &Context) -> Result<Value, HandlerError> {
    let mut terminated = Value::Null;
    let mut deregistered = Value::Null;
    if let Some(id) = opt_string(p, "instance_id") {
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
    if let Some(image) = opt_string(p, "image_id") {
        match ctx.cloud.deregister_image(&image).await {
            Ok(()) => deregistered = json!(image),
            Err(e) if e.kind == cloud::ErrorKind::NotFound => {}
            Err(e) => return Err(HandlerError::from_cloud("DeregisterImage", e)),
        }
    }
    Ok(json!({"terminated": terminated, "deregistered": deregistered}))
}

async fn publish_outcome(p: &Value, ctx: &Context) -> Result<Value, HandlerError> {
    let now = ctx.clock.now();
    let started = time_of(p.get("started"), now);
    let outcome = Outcome {
        workflow: string(p, "workflow")?,
        outcome: string(p, "outcome")?,
        category: opt_string(p, "category").unwrap_or_default(),
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

async fn naming_settings(_p: &Value, ctx: &Context) -> Result<Value, HandlerError> {
    let s = &ctx.settings;
    Ok(json!({
        "mode": match s.naming_mode { NamingMode::Rename => "rename", NamingMode::Sysprep => "sysprep" },
        "hook_timeout_seconds": s.hook_timeout_seconds,
        "ssm_timeout_seconds": s.ssm_timeout_seconds,
        "cleanup_script": s.cleanup_script,
        "has_cleanup": s.cleanup_script.is_some(),
    }))
}

async fn allocate_hostname(p: &Value, ctx: &Context) -> Result<Value, HandlerError> {
    let instance_id = string(p, "instance_id")?;
    let mut request = names::AllocationRequest::new(instance_id);
    if let Some(zone) = opt_string(p, "availability_zone") {
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

async fn confirm_hostname(p: &Value, ctx: &Context) -> Result<Value, HandlerError> {
    let instance_id = string(p, "instance_id")?;
    let lease = ctx
        .cloud
        .name_pool()
        .confirm(&instance_id)
        .await
        .map_err(errors::from_pool)?;
    Ok(json!({"hostname": lease.name.as_str()}))
}

async fn release_hostname(p: &Value, ctx: &Context) -> Result<Value, HandlerError> {
    let instance_id = string(p, "instance_id")?;
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

async fn verify_identity(p: &Value, _ctx: &Context) -> Result<Value, HandlerError> {
    let expected = string(p, "expected_name")?;
    let identity = field(p, "identity")?;
    let actual = opt_string(identity, "computer_name").unwrap_or_default();
    if sysprep::hostname::key(&actual) != sysprep::hostname::key(&expected) {
        return Err(HandlerError::new(
            errors::VERIFY_FAILED,
            format!("$env:COMPUTERNAME is {actual:?}, expected the leased name {expected:?}"),
        ));
    }
    let sid = opt_string(identity, "machine_sid").unwrap_or_default();
    if opt_string(p, "mode").as_deref() == Some("sysprep") {
        let before = opt_string(p, "before_sid").unwrap_or_default();
        if sid.is_empty() || sid == before {
            return Err(HandlerError::new(
                errors::VERIFY_FAILED,
                format!("machine SID {sid:?} did not change after generalize (was {before:?})"),
            ));
        }
    }
    Ok(json!({"computer_name": actual, "machine_sid": sid}))
}

async fn complete_lifecycle(p: &Value, ctx: &Context) -> Result<Value, HandlerError> {
    let hook = hook_ref(p).ok_or_else(|| {
        HandlerError::new(
            errors::INVALID_INPUT,
            "complete_lifecycle: payload field \"hook\" must be the lifecycle event detail (AutoScalingGroupName, LifecycleHookName, EC2InstanceId, LifecycleActionToken)",
        )
    })?;
    let result = match string(p, "result")?.as_str() {
        "CONTINUE" => LifecycleActionResult::Continue,
        "ABANDON" => LifecycleActionResult::Abandon,
        other => {
            return Err(HandlerError::new(
                errors::INVALID_INPUT,
                format!("complete_lifecycle: result {other:?} must be CONTINUE or ABANDON"),
            ));
        }
    };
    ctx.cloud
        .complete_lifecycle_action(CompleteLifecycleActionRequest { hook, result })
        .await
        .map_err(lifecycle_err("CompleteLifecycleAction"))?;
    Ok(json!({"result": string(p, "result")?}))
}

// ==================================================================== rollout

async fn create_template_version(p: &Value, ctx: &Context) -> Result<Value, HandlerError> {
    let template = string(p, "launch_template_id")?;
    let image_id = string(p, "image_id")?;
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
            client_token: client_token(p, "ltv"),
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

async fn start_refresh(p: &Value, ctx: &Context) -> Result<Value, HandlerError> {
    let group = string(p, "group")?;
    let template = string(p, "launch_template_id")?;
    let version = field(p, "version")?
        .to_string()
        .trim_matches('"')
        .to_string();
    let checkpoints = p
        .get("checkpoint_percentages")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_u64)
                .map(|v| v as u32)
                .collect()
        })
        .unwrap_or_default();
    let refresh_id = ctx
        .cloud
        .start_instance_refresh(StartInstanceRefreshRequest {
            auto_scaling_group_name: group,
            launch_template: Some(LaunchTemplateRef {
                launch_template_id: template,
                version,
            }),
            min_healthy_percentage: number(p, "min_healthy_percentage", 90) as u32,
            instance_warmup_seconds: number(p, "instance_warmup_seconds", 300) as u32,
            checkpoint_percentages: checkpoints,
            checkpoint_delay_seconds: number(p, "checkpoint_delay_seconds", 0) as u32,
        })
        .await
        .map_err(cloud_err("StartInstanceRefresh"))?;
    Ok(json!({"refresh_id": refresh_id}))
}

async fn check_refresh(p: &Value, ctx: &Context) -> Result<Value, HandlerError> {
    let group = string(p, "group")?;
    let refresh_id = string(p, "refresh_id")?;
    let wait = Wait::from(p, ctx);
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
            if wait.expired(p, 6 * 3600) {
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

async fn rollback_template(p: &Value, ctx: &Context) -> Result<Value, HandlerError> {
    let template = string(p, "launch_template_id")?;
    let previous = field(p, "previous_version")?.as_i64().ok_or_else(|| {
        HandlerError::new(errors::INVALID_INPUT, "previous_version must be an integer")
    })?;
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

    const PANTHER_APPX: &str = "2026-11-26 15:04:11, Error                 SYSPRP Package Microsoft.BingWeather_4.53.51922.0_x64__8wekyb3d8bbwe was installed for a user, but not provisioned for all users. This package will not function properly in the sysprep image.";

    #[test]
    fn windows_failures_are_classified_by_sysprep_diagnose() {
        let (category, retriable, evidence, _) = classify(errors::SYSPREP_FAILED, PANTHER_APPX, "");
        assert_eq!(category, "appx-not-provisioned");
        assert!(!retriable);
        assert!(evidence[0].contains("BingWeather"));
        // Log evidence beats the error name, even an AWS-side one.
        let (category, ..) = classify(errors::INSTANCE_GONE, PANTHER_APPX, "");
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
            let (category, _, evidence, remediation) = classify(name, "it went wrong", "");
            assert_eq!(category, expected, "{name}");
            assert_eq!(evidence, ["it went wrong"], "{name}");
            assert!(!remediation.is_empty(), "{name}");
        }
        // IMAGE_STATE_UNDEPLOYABLE on the console means the agent can never come back.
        let console =
            "2026-11-26T15:00:00Z Amazon SSM Agent: failed to register (IMAGE_STATE_UNDEPLOYABLE)";
        assert_eq!(
            classify(errors::TIMEOUT, "", console).0,
            "agent-unreachable"
        );
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
            classify(errors::PREFLIGHT_BLOCKED, &error.cause, "").0,
            "appx-not-provisioned"
        );
        let reboot_only = "pre-flight on i-1 blocked by [pending-reboot]: reboot first";
        assert_eq!(
            classify(errors::PREFLIGHT_BLOCKED, reboot_only, "").0,
            "provider-failure"
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
            command_template(&json!({"kind": "rename", "value": "WEB-001"}), &settings).unwrap()
        };
        let (computer, value, timeout) = template(RenameMethod::RenameComputer);
        let computer = computer.join("\n");
        assert_eq!((value.as_str(), timeout), ("WEB-001", 1800));
        assert!(computer.contains("Rename-Computer -NewName $desired"));
        assert!(!computer.contains("setHostName"));
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
            command_template(&json!({"kind": "rename"}), &Settings::default()).unwrap();
        assert_eq!(default.join("\n"), computer);
    }

    #[test]
    fn sysprep_commands_follow_the_detected_agent() {
        let template = |agent: &str| {
            command_template(
                &json!({"kind": "sysprep", "agent": agent}),
                &Settings::default(),
            )
            .unwrap()
            .0
            .join("\n")
        };
        assert!(template("ec2launch-v2").contains("'ec2launch sysprep'"));
        assert!(template("ec2launch-v1").contains("SysprepInstance.ps1"));
        assert!(template("ec2config").contains("-sysprep"));
        assert!(template("none").contains("/generalize"));
        let bad = command_template(
            &json!({"kind": "sysprep", "agent": "ec2launch-v9"}),
            &Settings::default(),
        )
        .unwrap_err();
        assert_eq!(bad.error, errors::INVALID_INPUT);
    }
}
