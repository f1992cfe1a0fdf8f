//! The Step Functions operations, on the engine.
//!
//! Each operation follows its page of the AWS Step Functions API Reference (named beside it):
//! request members, response members and the errors it lists. State machines are engine state
//! machines registered under their ARN (so executions see real ARNs in the context object);
//! what the engine does not keep (type, role, tags, dates, activities) is this module's
//! metadata, stored in the engine's store so it survives restarts with the executions.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use engine::{Engine, ExecutionSummary, Status};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::protocol::{
    ApiError, check_name, diagnostics, epoch_seconds, invalid_definition, optional, paginate,
    required,
};
use crate::tasks::Tasks;

/// Metadata kinds in the engine's store.
const STATE_MACHINES: &str = "serve.stateMachine";
const ACTIVITIES: &str = "serve.activity";
const TEST_CASES: &str = "serve.testCase";

/// RedriveExecution's `clientToken`: "The API will return idempotent responses for the last
/// 10 client tokens used to successfully redrive the execution. These client tokens are valid
/// for up to 15 minutes after they are first used." (API Reference, "RedriveExecution").
const REDRIVE_TOKENS: usize = 10;
const REDRIVE_TOKEN_MILLIS: i64 = 15 * 60 * 1000;

/// Why an EXPRESS execution cannot be redriven (API Reference, "RedriveExecution": "This API
/// action is not supported by EXPRESS state machines.").
const EXPRESS_NOT_REDRIVABLE: &str = "Redrive is not supported for EXPRESS state machines.";

/// What a state machine is beyond its definition (DescribeStateMachine's members).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StateMachine {
    arn: String,
    name: String,
    #[serde(rename = "type")]
    kind: String,
    role_arn: String,
    definition: String,
    creation_millis: i64,
    #[serde(default)]
    update_millis: Option<i64>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    logging_configuration: Option<Value>,
    #[serde(default)]
    tracing_configuration: Option<Value>,
    #[serde(default)]
    tags: Vec<Tag>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Tag {
    key: String,
    value: String,
}

/// An activity (CreateActivity).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Activity {
    pub arn: String,
    pub name: String,
    pub creation_millis: i64,
    #[serde(default)]
    tags: Vec<Tag>,
}

#[derive(Default)]
struct Registry {
    machines: BTreeMap<String, StateMachine>,
    activities: BTreeMap<String, Activity>,
}

/// The API over one engine.
pub struct Api {
    engine: Engine,
    account: String,
    registry: Mutex<Registry>,
    pub(crate) tasks: Arc<Tasks>,
    // Per execution: the client tokens of its last redrives, with their redrive dates.
    redrives: Mutex<std::collections::HashMap<String, Vec<(String, i64)>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn from_millis(ms: i64) -> SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64)
}

/// The parts of a state machine ARN (`arn:PARTITION:states:REGION:ACCOUNT:stateMachine:NAME`),
/// and the Step Functions Local test case after `#`, if any.
fn parse_machine_arn(arn: &str) -> Result<(String, Option<String>), ApiError> {
    let (base, case) = match arn.split_once('#') {
        Some((b, c)) => (b, Some(c.to_owned())),
        None => (arn, None),
    };
    let parts: Vec<&str> = base.split(':').collect();
    if parts.len() == 7 && parts[0] == "arn" && parts[2] == "states" && parts[5] == "stateMachine" {
        Ok((base.to_owned(), case))
    } else {
        Err(invalid_arn(arn))
    }
}

/// The state machine ARN of an execution ARN (`…:execution:MACHINE:NAME`).
fn machine_of_execution(arn: &str) -> Result<String, ApiError> {
    let parts: Vec<&str> = arn.split(':').collect();
    if parts.len() == 8 && parts[0] == "arn" && parts[2] == "states" && parts[5] == "execution" {
        Ok(format!(
            "arn:{}:states:{}:{}:stateMachine:{}",
            parts[1], parts[3], parts[4], parts[6]
        ))
    } else {
        Err(invalid_arn(arn))
    }
}

/// The execution id of an EXPRESS execution's ARN: a UUID derived from the engine's ARN, so the
/// same execution always has the same API ARN (across restarts too).
fn express_execution_id(engine_arn: &str) -> String {
    use std::hash::Hasher;
    let half = |salt: &[u8]| {
        let mut hasher = fnv::FnvHasher::default();
        hasher.write(salt);
        hasher.write(engine_arn.as_bytes());
        hasher.finish()
    };
    let bits = (u128::from(half(b"high")) << 64) | u128::from(half(b"low"));
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The API ARN of an EXPRESS execution the engine names `engine_arn`
/// (`arn:aws:states:REGION:ACCOUNT:execution:MACHINE:NAME`): AWS names those
/// `arn:aws:states:REGION:ACCOUNT:express:MACHINE:NAME:ID` (Service Authorization
/// Reference, "Actions, resources, and condition keys for AWS Step Functions", resource type
/// `express`: `arn:${Partition}:states:${Region}:${Account}:express:${StateMachineName}:
/// ${ExecutionId}:${ExpressId}`). `None` for an ARN that is not an engine execution ARN.
fn express_arn(engine_arn: &str) -> Option<String> {
    let parts: Vec<&str> = engine_arn.split(':').collect();
    (parts.len() == 8 && parts[5] == "execution").then(|| {
        format!(
            "arn:{}:states:{}:{}:express:{}:{}:{}",
            parts[1],
            parts[3],
            parts[4],
            parts[6],
            parts[7],
            express_execution_id(engine_arn)
        )
    })
}

/// The engine's ARN of an EXPRESS execution given by its API ARN (see [`express_arn`]);
/// `None` when `arn` is not in the EXPRESS form. An id that is not the execution's is
/// `ExecutionDoesNotExist`, as AWS answers for an unknown execution.
fn engine_arn_of_express(arn: &str) -> Result<Option<String>, ApiError> {
    let parts: Vec<&str> = arn.split(':').collect();
    if parts.len() != 9 || parts[0] != "arn" || parts[2] != "states" || parts[5] != "express" {
        return Ok(None);
    }
    let engine_arn = format!(
        "arn:{}:states:{}:{}:execution:{}:{}",
        parts[1], parts[3], parts[4], parts[6], parts[7]
    );
    if express_execution_id(&engine_arn) != parts[8] {
        return Err(ApiError::client(
            "ExecutionDoesNotExist",
            format!("Execution Does Not Exist: '{arn}'"),
        ));
    }
    Ok(Some(engine_arn))
}

fn invalid_arn(arn: &str) -> ApiError {
    ApiError::client("InvalidArn", format!("Invalid Arn: '{arn}'"))
}

fn tags_of(request: &Value) -> Result<Vec<Tag>, ApiError> {
    match request.get("tags") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
            ApiError::validation(format!("tags must be a list of {{key, value}}: {e}"))
        }),
    }
}

fn merge_tags(into: &mut Vec<Tag>, new: Vec<Tag>) {
    for tag in new {
        match into.iter_mut().find(|t| t.key == tag.key) {
            Some(t) => t.value = tag.value,
            None => into.push(tag),
        }
    }
}

impl Api {
    /// The API over `engine`, with the metadata it stored before (a restart).
    pub fn new(engine: Engine, account: &str, tasks: Arc<Tasks>) -> Result<Api, ApiError> {
        let mut registry = Registry::default();
        for (arn, value) in engine.metadata(STATE_MACHINES)? {
            let machine: StateMachine = serde_json::from_value(value)
                .map_err(|e| ApiError::internal(format!("stored state machine {arn}: {e}")))?;
            registry.machines.insert(arn, machine);
        }
        for (arn, value) in engine.metadata(ACTIVITIES)? {
            let activity: Activity = serde_json::from_value(value)
                .map_err(|e| ApiError::internal(format!("stored activity {arn}: {e}")))?;
            registry.activities.insert(arn, activity);
        }
        for (arn, case) in engine.metadata(TEST_CASES)? {
            if let Some(case) = case.as_str() {
                tasks.set_test_case(&arn, case);
            }
        }
        Ok(Api {
            engine,
            account: account.to_owned(),
            registry: Mutex::new(registry),
            tasks,
            redrives: Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// The engine the operations run on (for the server's driver and admin calls).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The account in its ARNs.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The ARN of state machine `name` in `region`.
    pub(crate) fn machine_arn(&self, region: &str, name: &str) -> String {
        format!(
            "arn:aws:states:{region}:{}:stateMachine:{name}",
            self.account
        )
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_millis(&self) -> i64 {
        millis(self.engine.clock().now())
    }

    fn machine(&self, arn: &str) -> Result<StateMachine, ApiError> {
        self.registry().machines.get(arn).cloned().ok_or_else(|| {
            ApiError::client(
                "StateMachineDoesNotExist",
                format!("State Machine Does Not Exist: '{arn}'"),
            )
        })
    }

    fn save_machine(&self, machine: &StateMachine) -> Result<(), ApiError> {
        let value = serde_json::to_value(machine)
            .map_err(|e| ApiError::internal(format!("state machine metadata: {e}")))?;
        self.engine
            .put_metadata(STATE_MACHINES, &machine.arn, Some(&value))?;
        self.registry()
            .machines
            .insert(machine.arn.clone(), machine.clone());
        Ok(())
    }

    /// One operation: `op` is the `X-Amz-Target` operation name.
    pub async fn call(&self, op: &str, region: &str, request: Value) -> Result<Value, ApiError> {
        if !request.is_object() {
            return Err(ApiError::client(
                "SerializationException",
                "the request body must be a JSON object",
            ));
        }
        // EXPRESS executions have ARNs of their own form on the API; the engine its one form.
        let mut request = request;
        if let Some(arn) = request.get("executionArn").and_then(Value::as_str)
            && let Some(engine_arn) = engine_arn_of_express(arn)?
        {
            request["executionArn"] = Value::String(engine_arn);
        }
        let mut response = self.dispatch(op, region, request).await?;
        self.express_arns_in(&mut response);
        Ok(response)
    }

    /// Gives the EXPRESS executions in a response their API ARNs ([`express_arn`]): the
    /// `executionArn` of a started or described execution, and of each listed one.
    fn express_arns_in(&self, response: &mut Value) {
        let express = |engine_arn: &str| {
            machine_of_execution(engine_arn).is_ok_and(|machine| {
                self.registry()
                    .machines
                    .get(&machine)
                    .is_some_and(|m| m.kind == "EXPRESS")
            })
        };
        let rewrite = |value: &mut Value| {
            if let Some(arn) = value.get("executionArn").and_then(Value::as_str)
                && express(arn)
                && let Some(api_arn) = express_arn(arn)
            {
                value["executionArn"] = Value::String(api_arn);
            }
        };
        rewrite(response);
        if let Some(items) = response.get_mut("executions").and_then(Value::as_array_mut) {
            items.iter_mut().for_each(rewrite);
        }
    }

    async fn dispatch(&self, op: &str, region: &str, request: Value) -> Result<Value, ApiError> {
        match op {
            "CreateStateMachine" => self.create_state_machine(region, &request),
            "DescribeStateMachine" => self.describe_state_machine(&request),
            "UpdateStateMachine" => self.update_state_machine(&request),
            "DeleteStateMachine" => self.delete_state_machine(&request),
            "ListStateMachines" => self.list_state_machines(region, &request),
            "ValidateStateMachineDefinition" => Ok(validate_definition(&request)?),
            "DescribeStateMachineForExecution" => self.describe_machine_for_execution(&request),
            "TagResource" => self.tag_resource(&request),
            "UntagResource" => self.untag_resource(&request),
            "ListTagsForResource" => self.list_tags(&request),
            "StartExecution" => self.start_execution(&request, false).map(|(v, _)| v),
            "StartSyncExecution" => self.start_sync_execution(&request).await,
            "DescribeExecution" => self.describe_execution(&request),
            "ListExecutions" => self.list_executions(&request),
            "GetExecutionHistory" => self.get_execution_history(&request),
            "StopExecution" => self.stop_execution(&request),
            "RedriveExecution" => self.redrive_execution(&request),
            "CreateActivity" => self.create_activity(region, &request),
            "DescribeActivity" => self.describe_activity(&request),
            "DeleteActivity" => self.delete_activity(&request),
            "ListActivities" => self.list_activities(region, &request),
            "GetActivityTask" => self.get_activity_task(&request).await,
            "SendTaskSuccess" => self.tasks.send_success(&request).await,
            "SendTaskFailure" => self.tasks.send_failure(&request).await,
            "SendTaskHeartbeat" => self.tasks.send_heartbeat(&request).await,
            "TestState" => {
                // It runs an engine of its own to completion: off the request threads.
                let (account, region) = (self.account.clone(), region.to_owned());
                tokio::task::spawn_blocking(move || {
                    crate::test_state::test_state(&request, &account, &region)
                })
                .await
                .map_err(|e| ApiError::internal(format!("TestState: {e}")))?
            }
            _ => Err(ApiError::client(
                "UnknownOperationException",
                format!(
                    "Unknown operation: AWSStepFunctions.{op} (fleetprep serve does not implement it)"
                ),
            )),
        }
    }

    // --- State machines ---------------------------------------------------------------

    /// API Reference, "CreateStateMachine". Idempotent: the same name with the same
    /// definition, role and type returns the existing machine; a different one is
    /// `StateMachineAlreadyExists`.
    fn create_state_machine(&self, region: &str, request: &Value) -> Result<Value, ApiError> {
        let name = required(request, "name")?;
        check_name(name)?;
        let definition = required(request, "definition")?;
        let role_arn = required(request, "roleArn")?;
        let kind = optional(request, "type")?.unwrap_or("STANDARD");
        if kind != "STANDARD" && kind != "EXPRESS" {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{kind}' at 'type' failed to satisfy constraint: Member must satisfy enum value set: [STANDARD, EXPRESS]"
            )));
        }
        asl::model::Definition::parse(definition).map_err(|e| invalid_definition(&e))?;
        let arn = self.machine_arn(region, name);
        if let Some(existing) = self.registry().machines.get(&arn) {
            if existing.definition == definition
                && existing.role_arn == role_arn
                && existing.kind == kind
            {
                return Ok(json!({
                    "stateMachineArn": arn,
                    "creationDate": epoch_seconds(from_millis(existing.creation_millis)),
                }));
            }
            return Err(ApiError::client(
                "StateMachineAlreadyExists",
                format!("State Machine Already Exists: '{arn}'"),
            ));
        }
        self.engine.create_state_machine(&arn, definition)?;
        let machine = StateMachine {
            arn: arn.clone(),
            name: name.to_owned(),
            kind: kind.to_owned(),
            role_arn: role_arn.to_owned(),
            definition: definition.to_owned(),
            creation_millis: self.now_millis(),
            update_millis: None,
            description: optional(request, "description")?.map(str::to_owned),
            logging_configuration: request.get("loggingConfiguration").cloned(),
            tracing_configuration: request.get("tracingConfiguration").cloned(),
            tags: tags_of(request)?,
        };
        self.save_machine(&machine)?;
        Ok(json!({
            "stateMachineArn": arn,
            "creationDate": epoch_seconds(from_millis(machine.creation_millis)),
        }))
    }

    fn describe_machine_value(&self, m: &StateMachine) -> Value {
        let mut out = json!({
            "stateMachineArn": m.arn,
            "name": m.name,
            "status": "ACTIVE",
            "definition": m.definition,
            "roleArn": m.role_arn,
            "type": m.kind,
            "creationDate": epoch_seconds(from_millis(m.creation_millis)),
            "loggingConfiguration": m.logging_configuration.clone()
                .unwrap_or_else(|| json!({"level": "OFF", "includeExecutionData": false})),
            "tracingConfiguration": m.tracing_configuration.clone()
                .unwrap_or_else(|| json!({"enabled": false})),
        });
        if let Some(d) = &m.description {
            out["description"] = json!(d);
        }
        out
    }

    /// API Reference, "DescribeStateMachine".
    fn describe_state_machine(&self, request: &Value) -> Result<Value, ApiError> {
        let (arn, _) = parse_machine_arn(required(request, "stateMachineArn")?)?;
        Ok(self.describe_machine_value(&self.machine(&arn)?))
    }

    /// API Reference, "UpdateStateMachine": new definition and/or role; running executions
    /// keep the definition they started with.
    fn update_state_machine(&self, request: &Value) -> Result<Value, ApiError> {
        let (arn, _) = parse_machine_arn(required(request, "stateMachineArn")?)?;
        let mut machine = self.machine(&arn)?;
        let definition = optional(request, "definition")?;
        let role_arn = optional(request, "roleArn")?;
        let logging = request.get("loggingConfiguration").filter(|v| !v.is_null());
        let tracing = request.get("tracingConfiguration").filter(|v| !v.is_null());
        if definition.is_none() && role_arn.is_none() && logging.is_none() && tracing.is_none() {
            return Err(ApiError::client(
                "MissingRequiredParameter",
                "UpdateStateMachine needs at least one of definition, roleArn, loggingConfiguration, tracingConfiguration",
            ));
        }
        if let Some(d) = definition {
            asl::model::Definition::parse(d).map_err(|e| invalid_definition(&e))?;
            self.engine.create_state_machine(&arn, d)?;
            machine.definition = d.to_owned();
        }
        if let Some(r) = role_arn {
            machine.role_arn = r.to_owned();
        }
        if let Some(l) = logging {
            machine.logging_configuration = Some(l.clone());
        }
        if let Some(t) = tracing {
            machine.tracing_configuration = Some(t.clone());
        }
        let now = self.now_millis();
        machine.update_millis = Some(now);
        self.save_machine(&machine)?;
        Ok(json!({"updateDate": epoch_seconds(from_millis(now))}))
    }

    /// API Reference, "DeleteStateMachine": succeeds for a machine that does not exist (the
    /// call is idempotent); running executions continue.
    fn delete_state_machine(&self, request: &Value) -> Result<Value, ApiError> {
        let (arn, _) = parse_machine_arn(required(request, "stateMachineArn")?)?;
        if self.registry().machines.remove(&arn).is_some() {
            self.engine.put_metadata(STATE_MACHINES, &arn, None)?;
            self.engine.delete_state_machine(&arn)?;
        }
        Ok(json!({}))
    }

    /// API Reference, "ListStateMachines" (by name; this region's machines only).
    fn list_state_machines(&self, region: &str, request: &Value) -> Result<Value, ApiError> {
        let prefix = format!("arn:aws:states:{region}:{}:stateMachine:", self.account);
        let items: Vec<Value> = self
            .registry()
            .machines
            .values()
            .filter(|m| m.arn.starts_with(&prefix))
            .map(|m| {
                json!({
                    "stateMachineArn": m.arn,
                    "name": m.name,
                    "type": m.kind,
                    "creationDate": epoch_seconds(from_millis(m.creation_millis)),
                })
            })
            .collect();
        let (page, next) = paginate(request, items)?;
        Ok(with_token(json!({"stateMachines": page}), next))
    }

    /// API Reference, "DescribeStateMachineForExecution": the definition the execution runs.
    fn describe_machine_for_execution(&self, request: &Value) -> Result<Value, ApiError> {
        let arn = required(request, "executionArn")?;
        let machine_arn = machine_of_execution(arn)?;
        let definition = self.engine.execution_definition(arn)?;
        let machine = self.registry().machines.get(&machine_arn).cloned();
        let (role, update) = match &machine {
            Some(m) => (
                m.role_arn.clone(),
                m.update_millis.unwrap_or(m.creation_millis),
            ),
            None => (String::new(), self.now_millis()),
        };
        Ok(json!({
            "stateMachineArn": machine_arn,
            "name": machine_arn.rsplit(':').next().unwrap_or_default(),
            "definition": definition,
            "roleArn": role,
            "updateDate": epoch_seconds(from_millis(update)),
        }))
    }

    /// API Reference, "TagResource" (state machines and activities).
    fn tag_resource(&self, request: &Value) -> Result<Value, ApiError> {
        let arn = required(request, "resourceArn")?;
        let tags = tags_of(request)?;
        self.with_tags(arn, |t| merge_tags(t, tags))?;
        Ok(json!({}))
    }

    /// API Reference, "UntagResource".
    fn untag_resource(&self, request: &Value) -> Result<Value, ApiError> {
        let arn = required(request, "resourceArn")?;
        let keys: Vec<String> = request
            .get("tagKeys")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .ok_or_else(|| ApiError::validation("tagKeys must be a list of strings"))?;
        self.with_tags(arn, |t| t.retain(|tag| !keys.contains(&tag.key)))?;
        Ok(json!({}))
    }

    /// API Reference, "ListTagsForResource".
    fn list_tags(&self, request: &Value) -> Result<Value, ApiError> {
        let arn = required(request, "resourceArn")?;
        let mut tags = Vec::new();
        self.with_tags(arn, |t| tags = t.clone())?;
        Ok(json!({"tags": tags}))
    }

    /// Changes (or reads) a resource's tags; `ResourceNotFound` for an unknown ARN.
    fn with_tags(&self, arn: &str, change: impl FnOnce(&mut Vec<Tag>)) -> Result<(), ApiError> {
        let not_found =
            || ApiError::client("ResourceNotFound", format!("Resource not found: '{arn}'"));
        let mut registry = self.registry();
        if let Some(m) = registry.machines.get_mut(arn) {
            change(&mut m.tags);
            let value = serde_json::to_value(&*m).map_err(|e| ApiError::internal(e.to_string()))?;
            drop(registry);
            self.engine
                .put_metadata(STATE_MACHINES, arn, Some(&value))?;
            return Ok(());
        }
        if let Some(a) = registry.activities.get_mut(arn) {
            change(&mut a.tags);
            let value = serde_json::to_value(&*a).map_err(|e| ApiError::internal(e.to_string()))?;
            drop(registry);
            self.engine.put_metadata(ACTIVITIES, arn, Some(&value))?;
            return Ok(());
        }
        Err(not_found())
    }

    // --- Executions -------------------------------------------------------------------

    /// API Reference, "StartExecution". Idempotent as documented there: the same name and
    /// input as a *running* execution returns that execution; a different input, or an
    /// execution that ended, is `ExecutionAlreadyExists`.
    fn start_execution(&self, request: &Value, sync: bool) -> Result<(Value, String), ApiError> {
        let (arn, test_case) = parse_machine_arn(required(request, "stateMachineArn")?)?;
        let machine = self.machine(&arn)?;
        if sync && machine.kind != "EXPRESS" {
            return Err(ApiError::client(
                "StateMachineTypeNotSupported",
                format!(
                    "This operation is not supported by this type of state machine: '{arn}' is {}",
                    machine.kind
                ),
            ));
        }
        let input_text = optional(request, "input")?.unwrap_or("{}");
        let input: Value = serde_json::from_str(input_text).map_err(|e| {
            ApiError::client(
                "InvalidExecutionInput",
                format!("Invalid State Machine Execution Input: '{e}'"),
            )
        })?;
        let name = optional(request, "name")?;
        if let Some(name) = name {
            check_name(name)?;
            let exec_arn = engine::execution_info(&arn, name).execution_arn;
            if let Ok(existing) = self.engine.describe(&exec_arn) {
                if existing.status == Status::Running && existing.input == input {
                    return Ok((
                        json!({
                            "executionArn": exec_arn,
                            "startDate": epoch_seconds(existing.start_date),
                        }),
                        exec_arn,
                    ));
                }
                return Err(ApiError::client(
                    "ExecutionAlreadyExists",
                    format!("Execution Already Exists: '{exec_arn}'"),
                ));
            }
        }
        if let Some(case) = &test_case {
            self.tasks.check_test_case(&machine.name, case)?;
        }
        // The test case must be known before the first task runs: record it under the
        // execution's ARN, which is only known once the engine names it, so name it here.
        let name = match name {
            Some(n) => n.to_owned(),
            None => new_execution_name(),
        };
        let exec_arn = engine::execution_info(&arn, &name).execution_arn;
        if let Some(case) = &test_case {
            self.engine
                .put_metadata(TEST_CASES, &exec_arn, Some(&json!(case)))?;
            self.tasks.set_test_case(&exec_arn, case);
        }
        let started = self.engine.start_execution(&arn, Some(&name), input)?;
        let summary = self.engine.describe(&started)?;
        Ok((
            json!({
                "executionArn": started,
                "startDate": epoch_seconds(summary.start_date),
            }),
            started,
        ))
    }

    /// API Reference, "StartSyncExecution" (EXPRESS only): starts and answers when done.
    async fn start_sync_execution(&self, request: &Value) -> Result<Value, ApiError> {
        let (_, arn) = self.start_execution(request, true)?;
        let s = self.engine.wait_until_complete(&arn).await?;
        let mut out = execution_value(&s);
        out["billingDetails"] =
            json!({"billedMemoryUsedInMB": 64, "billedDurationInMilliseconds": 100});
        Ok(out)
    }

    /// API Reference, "DescribeExecution".
    fn describe_execution(&self, request: &Value) -> Result<Value, ApiError> {
        let arn = required(request, "executionArn")?;
        let machine_arn = machine_of_execution(arn)?;
        let s = self.engine.describe(arn)?;
        let express = self
            .registry()
            .machines
            .get(&machine_arn)
            .is_some_and(|m| m.kind == "EXPRESS");
        let mut out = execution_value(&s);
        add_redrive_members(&mut out, &s, express, self.engine.clock().now());
        Ok(out)
    }

    /// API Reference, "ListExecutions": newest first, optionally by `statusFilter`.
    fn list_executions(&self, request: &Value) -> Result<Value, ApiError> {
        let (arn, _) = parse_machine_arn(required(request, "stateMachineArn")?)?;
        self.machine(&arn)?;
        let status = match optional(request, "statusFilter")? {
            None => None,
            Some(s) => Some(Status::parse(s).ok_or_else(|| {
                ApiError::validation(format!(
                    "1 validation error detected: Value '{s}' at 'statusFilter' failed to satisfy constraint: Member must satisfy enum value set: [RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, PENDING_REDRIVE]"
                ))
            })?),
        };
        let mut items: Vec<ExecutionSummary> = self
            .engine
            .list_executions(status)?
            .into_iter()
            .filter(|e| e.state_machine == arn)
            .collect();
        items.sort_by_key(|e| std::cmp::Reverse(e.start_date));
        let items: Vec<Value> = items
            .iter()
            .map(|e| {
                let mut v = json!({
                    "executionArn": e.execution_arn,
                    "stateMachineArn": e.state_machine,
                    "name": e.name,
                    "status": e.status.as_str(),
                    "startDate": epoch_seconds(e.start_date),
                });
                if let Some(stop) = e.stop_date {
                    v["stopDate"] = epoch_seconds(stop);
                }
                if let Some(d) = e.redrive_date {
                    v["redriveCount"] = json!(e.redrive_count);
                    v["redriveDate"] = epoch_seconds(d);
                }
                v
            })
            .collect();
        let (page, next) = paginate(request, items)?;
        Ok(with_token(json!({"executions": page}), next))
    }

    /// API Reference, "GetExecutionHistory": pages of `maxResults`, `reverseOrder`, and
    /// `includeExecutionData` (default true; false leaves out every input and output).
    fn get_execution_history(&self, request: &Value) -> Result<Value, ApiError> {
        let arn = required(request, "executionArn")?;
        machine_of_execution(arn)?;
        let include_data = request
            .get("includeExecutionData")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let reverse = request
            .get("reverseOrder")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut events = self.engine.history(arn)?;
        if reverse {
            events.reverse();
        }
        let events: Vec<Value> = events
            .iter()
            .map(|e| history_event_value(e, include_data))
            .collect();
        let (page, next) = paginate(request, events)?;
        Ok(with_token(json!({"events": page}), next))
    }

    /// API Reference, "StopExecution".
    fn stop_execution(&self, request: &Value) -> Result<Value, ApiError> {
        let arn = required(request, "executionArn")?;
        machine_of_execution(arn)?;
        let error = optional(request, "error")?;
        let cause = optional(request, "cause")?;
        let s = self.engine.describe(arn)?;
        if s.status == Status::Running {
            match self.engine.stop_execution(arn, error, cause) {
                Ok(()) | Err(engine::EngineError::NotRunning(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let s = self.engine.describe(arn)?;
        let stop = s.stop_date.unwrap_or_else(|| self.engine.clock().now());
        Ok(json!({"stopDate": epoch_seconds(stop)}))
    }

    /// API Reference, "RedriveExecution": a FAILED, TIMED_OUT or ABORTED STANDARD execution
    /// runs again from its unsuccessful states (the engine's `redrive_execution`); answers its
    /// `redriveDate`. `clientToken` makes it idempotent as documented there: a token used for
    /// one of the execution's last 10 successful redrives within 15 minutes answers that
    /// redrive again instead of redriving once more.
    fn redrive_execution(&self, request: &Value) -> Result<Value, ApiError> {
        let arn = required(request, "executionArn")?;
        let machine_arn = machine_of_execution(arn)?;
        let client_token = optional(request, "clientToken")?;
        if let Some(token) = client_token
            && (token.is_empty() || token.len() > 64)
        {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value at 'clientToken' failed to satisfy constraint: Member must have length between 1 and 64 (it has {})",
                token.len()
            )));
        }
        let s = self.engine.describe(arn)?;
        if let Some(m) = self.registry().machines.get(&machine_arn)
            && m.kind == "EXPRESS"
        {
            return Err(ApiError::client(
                "ExecutionNotRedrivable",
                format!("{EXPRESS_NOT_REDRIVABLE} Execution: '{arn}'"),
            ));
        }
        let now = self.now_millis();
        if let Some(token) = client_token {
            let recent = lock(&self.redrives);
            if let Some((_, at)) = recent
                .get(arn)
                .and_then(|tokens| tokens.iter().find(|(t, _)| t == token))
                .filter(|(_, at)| now - at <= REDRIVE_TOKEN_MILLIS)
            {
                return Ok(json!({"redriveDate": epoch_seconds(from_millis(*at))}));
            }
        }
        self.engine.redrive_execution(arn)?;
        let redriven = self.engine.describe(arn)?;
        let date = redriven.redrive_date.unwrap_or(s.start_date);
        if let Some(token) = client_token {
            let mut recent = lock(&self.redrives);
            let tokens = recent.entry(arn.to_owned()).or_default();
            tokens.push((token.to_owned(), millis(date)));
            let excess = tokens.len().saturating_sub(REDRIVE_TOKENS);
            tokens.drain(..excess);
        }
        Ok(json!({"redriveDate": epoch_seconds(date)}))
    }

    // --- Activities -------------------------------------------------------------------

    /// API Reference, "CreateActivity" (idempotent by name).
    fn create_activity(&self, region: &str, request: &Value) -> Result<Value, ApiError> {
        let name = required(request, "name")?;
        check_name(name)?;
        let arn = format!("arn:aws:states:{region}:{}:activity:{name}", self.account);
        if let Some(a) = self.registry().activities.get(&arn) {
            return Ok(json!({
                "activityArn": arn,
                "creationDate": epoch_seconds(from_millis(a.creation_millis)),
            }));
        }
        let activity = Activity {
            arn: arn.clone(),
            name: name.to_owned(),
            creation_millis: self.now_millis(),
            tags: tags_of(request)?,
        };
        let value =
            serde_json::to_value(&activity).map_err(|e| ApiError::internal(e.to_string()))?;
        self.engine.put_metadata(ACTIVITIES, &arn, Some(&value))?;
        self.registry()
            .activities
            .insert(arn.clone(), activity.clone());
        Ok(json!({
            "activityArn": arn,
            "creationDate": epoch_seconds(from_millis(activity.creation_millis)),
        }))
    }

    fn activity(&self, arn: &str) -> Result<Activity, ApiError> {
        self.registry().activities.get(arn).cloned().ok_or_else(|| {
            ApiError::client(
                "ActivityDoesNotExist",
                format!("Activity Does Not Exist: '{arn}'"),
            )
        })
    }

    /// API Reference, "DescribeActivity".
    fn describe_activity(&self, request: &Value) -> Result<Value, ApiError> {
        let arn = required(request, "activityArn")?;
        let a = self.activity(arn)?;
        Ok(json!({
            "activityArn": a.arn,
            "name": a.name,
            "creationDate": epoch_seconds(from_millis(a.creation_millis)),
        }))
    }

    /// API Reference, "DeleteActivity".
    fn delete_activity(&self, request: &Value) -> Result<Value, ApiError> {
        let arn = required(request, "activityArn")?;
        if self.registry().activities.remove(arn).is_some() {
            self.engine.put_metadata(ACTIVITIES, arn, None)?;
        }
        Ok(json!({}))
    }

    /// API Reference, "ListActivities".
    fn list_activities(&self, region: &str, request: &Value) -> Result<Value, ApiError> {
        let prefix = format!("arn:aws:states:{region}:{}:activity:", self.account);
        let items: Vec<Value> = self
            .registry()
            .activities
            .values()
            .filter(|a| a.arn.starts_with(&prefix))
            .map(|a| {
                json!({
                    "activityArn": a.arn,
                    "name": a.name,
                    "creationDate": epoch_seconds(from_millis(a.creation_millis)),
                })
            })
            .collect();
        let (page, next) = paginate(request, items)?;
        Ok(with_token(json!({"activities": page}), next))
    }

    /// API Reference, "GetActivityTask": waits up to 60 seconds for a task of the activity;
    /// with none, answers an empty response (no `taskToken`).
    async fn get_activity_task(&self, request: &Value) -> Result<Value, ApiError> {
        let arn = required(request, "activityArn")?;
        self.activity(arn)?;
        let worker = optional(request, "workerName")?;
        Ok(self.tasks.poll_activity(arn, worker).await)
    }
}

/// StartExecution's generated name when none is given: UUID-shaped, as AWS generates.
fn new_execution_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded randomly per process; the counter makes names within it unique.
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let random = |salt: u64| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_u64(salt);
        h.finish()
    };
    let (a, b) = (random(1), random(2));
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

fn with_token(mut out: Value, next: Option<String>) -> Value {
    if let Some(t) = next {
        out["nextToken"] = json!(t);
    }
    out
}

/// DescribeExecution's (and StartSyncExecution's) members for one execution.
fn execution_value(s: &ExecutionSummary) -> Value {
    let mut out = json!({
        "executionArn": s.execution_arn,
        "stateMachineArn": s.state_machine,
        "name": s.name,
        "status": s.status.as_str(),
        "startDate": epoch_seconds(s.start_date),
        "input": s.input.to_string(),
        "inputDetails": {"included": true},
    });
    if let Some(stop) = s.stop_date {
        out["stopDate"] = epoch_seconds(stop);
    }
    if let Some(output) = &s.output {
        out["output"] = json!(output.to_string());
        out["outputDetails"] = json!({"included": true});
    }
    if let Some(e) = &s.error {
        out["error"] = json!(e);
    }
    if let Some(c) = &s.cause {
        out["cause"] = json!(c);
    }
    out
}

/// DescribeExecution's redrive members: `redriveCount`, `redriveDate`, and `redriveStatus`
/// with `redriveStatusReason` when it is NOT_REDRIVABLE (API Reference, "DescribeExecution";
/// the reasons as worded there). The history-size limit is checked by RedriveExecution
/// only: knowing it here would cost a replay per describe.
fn add_redrive_members(out: &mut Value, s: &ExecutionSummary, express: bool, now: SystemTime) {
    out["redriveCount"] = json!(s.redrive_count);
    if let Some(d) = s.redrive_date {
        out["redriveDate"] = epoch_seconds(d);
    }
    let reason = match s.status {
        Status::Running => Some("Execution is RUNNING and cannot be redriven."),
        Status::Succeeded => Some("Execution is SUCCEEDED and cannot be redriven."),
        _ if express => Some(EXPRESS_NOT_REDRIVABLE),
        _ if s
            .stop_date
            .and_then(|t| t.checked_add(engine::REDRIVABLE_PERIOD))
            .is_some_and(|end| now > end) =>
        {
            Some("Execution redrivable period exceeded.")
        }
        _ => None,
    };
    match reason {
        Some(r) => {
            out["redriveStatus"] = json!("NOT_REDRIVABLE");
            out["redriveStatusReason"] = json!(r);
        }
        None => out["redriveStatus"] = json!("REDRIVABLE"),
    }
}

/// One history event on the wire: the engine's event (already in the API's shape) with its
/// timestamp as epoch seconds, and without inputs and outputs unless `include_data`.
fn history_event_value(e: &asl::history::HistoryEvent, include_data: bool) -> Value {
    let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
    if let Some(t) = clock::parse_rfc3339(&e.timestamp) {
        v["timestamp"] = epoch_seconds(t);
    }
    if !include_data {
        if let Value::Object(map) = &mut v {
            for (key, details) in map.iter_mut() {
                if key.ends_with("EventDetails") {
                    if let Value::Object(d) = details {
                        strip_data(d);
                    }
                }
            }
        }
    }
    v
}

fn strip_data(details: &mut Map<String, Value>) {
    for member in ["input", "output"] {
        if details.remove(member).is_some() {
            details.insert(format!("{member}Details"), json!({"included": false}));
        }
    }
    details.remove("parameters");
}

/// API Reference, "ValidateStateMachineDefinition": `result` OK or FAIL with the
/// diagnostics (never an error for a bad definition).
fn validate_definition(request: &Value) -> Result<Value, ApiError> {
    let definition = required(request, "definition")?;
    let max = request
        .get("maxResults")
        .and_then(Value::as_u64)
        .filter(|n| *n > 0)
        .unwrap_or(100) as usize;
    Ok(match asl::model::Definition::parse(definition) {
        Ok(_) => json!({"result": "OK", "diagnostics": [], "truncated": false}),
        Err(e) => {
            let mut all = diagnostics(&e);
            let truncated = all.len() > max;
            all.truncate(max);
            json!({"result": "FAIL", "diagnostics": all, "truncated": truncated})
        }
    })
}
