//! Who answers a Task state: the engine's fallback handler for everything the server does not
//! run itself.
//!
//! In order:
//! - an execution started with a `#TestCase` suffix on its state machine ARN answers from the
//!   Step Functions Local mock file (`--mock-config`), as Step Functions Local does;
//! - an activity (`arn:aws:states:REGION:ACCOUNT:activity:NAME`) waits in the activity's queue
//!   for a worker's GetActivityTask, then for its SendTaskSuccess/Failure;
//! - Lambda (`arn:aws:states:::lambda:invoke` and function ARNs) goes to `--lambda-endpoint`;
//! - anything else fails as an unserved resource does in the engine.
//!
//! A waiting task (activity, callback) is a handler future that the engine's driver holds like
//! any running task: the answer comes through a channel keyed by the task token. Tokens are a
//! function of the execution ARN and the engine's task token, so after a restart the engine
//! re-dispatches the task and the same token becomes valid again (handed to a worker again).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use engine::{Engine, TaskContext, TaskError, TaskHandler};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{Value, json};

use crate::mockconfig::{MockConfig, MockHandler};
use crate::protocol::{ApiError, optional, required};

/// How long GetActivityTask waits for a task (API Reference, "GetActivityTask": "the
/// maximum time the service holds on to the request before responding is 60 seconds").
pub const ACTIVITY_POLL: Duration = Duration::from_secs(60);

/// The task token of task `token` of execution `arn`: `hex(arn)` and the token, so the server
/// can find the task again from the token alone, also after a restart.
pub fn task_token(arn: &str, token: u64) -> String {
    let mut out = String::with_capacity(arn.len() * 2 + 21);
    for b in arn.bytes() {
        out.push_str(&format!("{b:02x}"));
    }
    out.push('-');
    out.push_str(&token.to_string());
    out
}

/// The execution ARN and engine token of a task token, or `None` when it is not one of ours.
pub fn parse_task_token(text: &str) -> Option<(String, u64)> {
    let (hex, token) = text.rsplit_once('-')?;
    let token = token.parse().ok()?;
    if hex.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    Some((String::from_utf8(bytes?).ok()?, token))
}

/// A task that waits for an outside answer (activity worker or callback).
struct Waiting {
    ctx: TaskContext,
    reply: tokio::sync::oneshot::Sender<Result<Value, TaskError>>,
}

struct ActivityTask {
    token: String,
    input: Value,
}

/// The task side of the server. Cheap to share.
pub struct Tasks {
    engine: OnceLock<Engine>,
    mocks: Option<MockConfig>,
    lambda: Option<Lambda>,
    test_cases: Mutex<HashMap<String, String>>,
    mock_handlers: Mutex<HashMap<String, Arc<MockHandler>>>,
    waiting: Mutex<HashMap<String, Waiting>>,
    activities: Mutex<HashMap<String, VecDeque<ActivityTask>>>,
    // Bumped whenever an activity task is queued: pollers re-check their queue.
    posted: tokio::sync::watch::Sender<u64>,
    // Bumped whenever a task starts waiting for an outside answer.
    registered: tokio::sync::watch::Sender<u64>,
}

/// How long a SendTask* request waits for a pending task to be dispatched again after a
/// restart before calling its token stale.
const REDISPATCH_GRACE: Duration = Duration::from_secs(5);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Tasks {
    pub fn new(mocks: Option<MockConfig>, lambda_endpoint: Option<&str>) -> Result<Tasks, String> {
        let lambda = lambda_endpoint.map(Lambda::new).transpose()?;
        Ok(Tasks {
            engine: OnceLock::new(),
            mocks,
            lambda,
            test_cases: Mutex::new(HashMap::new()),
            mock_handlers: Mutex::new(HashMap::new()),
            waiting: Mutex::new(HashMap::new()),
            activities: Mutex::new(HashMap::new()),
            posted: tokio::sync::watch::Sender::new(0),
            registered: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Connects the engine (which holds this as its fallback handler), and starts letting go
    /// of waiting tasks that are over: a task whose execution was stopped or which timed out
    /// still has its handler running in the engine, which counts as a running task (a
    /// virtual clock would never jump again); answering it ends that, and the engine ignores
    /// the answer of a task that is over.
    pub fn attach(self: &Arc<Self>, engine: Engine) {
        let mut commits = engine.commits();
        let _ = self.engine.set(engine);
        let tasks = Arc::downgrade(self);
        tokio::spawn(async move {
            while commits.changed().await.is_ok() {
                let Some(tasks) = tasks.upgrade() else { return };
                tasks.release_finished();
            }
        });
    }

    /// Ends the waits of tasks that are over (see [`Tasks::attach`]).
    fn release_finished(&self) {
        let over: Vec<String> = lock(&self.waiting)
            .keys()
            .filter(|token| !self.still_pending(token))
            .cloned()
            .collect();
        for token in over {
            if let Some(w) = lock(&self.waiting).remove(&token) {
                let _ = w.reply.send(Err(TaskError::new(
                    "States.Runtime",
                    "the task is over (its execution ended or it timed out)",
                )));
            }
        }
    }

    /// Checks a `#TestCase` suffix when the execution starts (Step Functions Local fails the
    /// StartExecution of an unknown test case).
    pub fn check_test_case(&self, machine_name: &str, case: &str) -> Result<(), ApiError> {
        let Some(mocks) = &self.mocks else {
            return Err(ApiError::client(
                "InvalidArn",
                format!(
                    "Invalid Arn: the state machine ARN names test case \"{case}\", but the server was started without --mock-config"
                ),
            ));
        };
        if !mocks.has_test_case(machine_name, case) {
            return Err(ApiError::client(
                "InvalidArn",
                format!(
                    "Invalid Arn: test case \"{case}\" of state machine \"{machine_name}\" is not in the mock configuration file; add it under StateMachines.{machine_name}.TestCases"
                ),
            ));
        }
        Ok(())
    }

    /// Remembers that execution `arn` answers its tasks from mock test case `case`.
    pub fn set_test_case(&self, arn: &str, case: &str) {
        lock(&self.test_cases).insert(arn.to_owned(), case.to_owned());
    }

    /// The mock handler of a mocked execution (one per execution: each counts its own
    /// invocations), built on its first task.
    fn mock_for(&self, ctx: &TaskContext) -> Option<Result<Arc<MockHandler>, TaskError>> {
        let case = lock(&self.test_cases).get(&ctx.execution_arn).cloned()?;
        if let Some(h) = lock(&self.mock_handlers).get(&ctx.execution_arn) {
            return Some(Ok(h.clone()));
        }
        let built = (|| {
            let mocks = self.mocks.as_ref().ok_or_else(|| {
                TaskError::new(
                    "States.Runtime",
                    "the execution was started with a test case, but the server now runs without --mock-config",
                )
            })?;
            let engine = self.engine.get().ok_or_else(|| {
                TaskError::new(
                    "States.Runtime",
                    "the server is not connected to its engine",
                )
            })?;
            let text = engine
                .execution_definition(&ctx.execution_arn)
                .map_err(|e| TaskError::new("States.Runtime", e.to_string()))?;
            let def = asl::model::Definition::parse(&text)
                .map_err(|e| TaskError::new("States.Runtime", e.to_string()))?;
            let info = engine::execution_info(
                ctx.execution_arn
                    .rsplit_once(':')
                    .map(|(m, _)| m.replacen(":execution:", ":stateMachine:", 1))
                    .as_deref()
                    .unwrap_or_default(),
                "",
            );
            let case = mocks
                .test_case(&info.state_machine_name, &case, &def)
                .map_err(|e| TaskError::new("States.Runtime", e.to_string()))?;
            Ok(Arc::new(MockHandler::new(case)))
        })();
        Some(built.inspect(|h| {
            lock(&self.mock_handlers).insert(ctx.execution_arn.clone(), h.clone());
        }))
    }

    /// Registers a task that waits for an outside answer; returns its token and the answer.
    fn wait(
        &self,
        ctx: &TaskContext,
    ) -> (
        String,
        tokio::sync::oneshot::Receiver<Result<Value, TaskError>>,
    ) {
        let token = task_token(&ctx.execution_arn, ctx.token);
        let (reply, answer) = tokio::sync::oneshot::channel();
        lock(&self.waiting).insert(
            token.clone(),
            Waiting {
                ctx: ctx.clone(),
                reply,
            },
        );
        self.registered.send_modify(|n| *n = n.wrapping_add(1));
        (token, answer)
    }

    /// Runs an activity task: queued for GetActivityTask, answered by SendTask*.
    async fn activity(&self, input: Value, ctx: TaskContext) -> Result<Value, TaskError> {
        let (token, answer) = self.wait(&ctx);
        lock(&self.activities)
            .entry(ctx.resource.clone())
            .or_default()
            .push_back(ActivityTask { token, input });
        self.posted.send_modify(|n| *n = n.wrapping_add(1));
        answer.await.unwrap_or_else(|_| {
            Err(TaskError::new(
                "States.Runtime",
                "the server stopped waiting for the activity",
            ))
        })
    }

    /// GetActivityTask: the oldest queued task of the activity, waiting up to
    /// [`ACTIVITY_POLL`]; an empty answer when none came.
    pub async fn poll_activity(&self, activity_arn: &str, _worker: Option<&str>) -> Value {
        let mut posted = self.posted.subscribe();
        let deadline = tokio::time::Instant::now() + ACTIVITY_POLL;
        loop {
            let next = lock(&self.activities)
                .get_mut(activity_arn)
                .and_then(VecDeque::pop_front);
            if let Some(task) = next {
                // A task whose execution ended meanwhile is not handed out.
                if self.still_pending(&task.token) {
                    return json!({"taskToken": task.token, "input": task.input.to_string()});
                }
                continue;
            }
            #[allow(clippy::disallowed_methods)] // the long poll's real-time limit
            let expired = tokio::time::timeout_at(deadline, posted.changed()).await;
            if !matches!(expired, Ok(Ok(()))) {
                return json!({});
            }
        }
    }

    fn still_pending(&self, token: &str) -> bool {
        match (parse_task_token(token), self.engine.get()) {
            (Some((arn, t)), Some(engine)) => engine.task_pending(&arn, t),
            _ => false,
        }
    }

    /// The waiting task of a SendTask* request: `InvalidToken` for a token this server never
    /// issued, `TaskTimedOut` for one whose task is over (API Reference, "SendTaskSuccess").
    /// Right after a restart a task can still wait for the engine to dispatch it again; the
    /// request then waits for that (briefly) instead of calling a valid token stale.
    async fn waiting_ctx(&self, token: &str) -> Result<TaskContext, ApiError> {
        if parse_task_token(token).is_none() {
            return Err(ApiError::client(
                "InvalidToken",
                format!("Invalid Token: '{token}'"),
            ));
        }
        let over = || {
            ApiError::client(
                "TaskTimedOut",
                "Task Timed Out: 'Provided task does not exist anymore'",
            )
        };
        let mut registered = self.registered.subscribe();
        let deadline = tokio::time::Instant::now() + REDISPATCH_GRACE;
        loop {
            if !self.still_pending(token) {
                lock(&self.waiting).remove(token);
                return Err(over());
            }
            if let Some(w) = lock(&self.waiting).get(token) {
                return Ok(w.ctx.clone());
            }
            #[allow(clippy::disallowed_methods)] // a real-time bound on the wait
            let woke = tokio::time::timeout_at(deadline, registered.changed()).await;
            if !matches!(woke, Ok(Ok(()))) {
                return Err(over());
            }
        }
    }

    async fn answer(
        &self,
        token: &str,
        result: Result<Value, TaskError>,
    ) -> Result<Value, ApiError> {
        self.waiting_ctx(token).await?;
        let waiting = lock(&self.waiting).remove(token).ok_or_else(|| {
            ApiError::client(
                "TaskTimedOut",
                "Task Timed Out: 'Provided task does not exist anymore'",
            )
        })?;
        let _ = waiting.reply.send(result);
        Ok(json!({}))
    }

    /// API Reference, "SendTaskSuccess".
    pub async fn send_success(&self, request: &Value) -> Result<Value, ApiError> {
        let token = required(request, "taskToken")?;
        let output = required(request, "output")?;
        let output: Value = serde_json::from_str(output)
            .map_err(|e| ApiError::client("InvalidOutput", format!("Invalid Output: '{e}'")))?;
        self.answer(token, Ok(output)).await
    }

    /// API Reference, "SendTaskFailure".
    pub async fn send_failure(&self, request: &Value) -> Result<Value, ApiError> {
        let token = required(request, "taskToken")?;
        let error = optional(request, "error")?.unwrap_or_default();
        let cause = optional(request, "cause")?.unwrap_or_default();
        self.answer(token, Err(TaskError::new(error, cause))).await
    }

    /// API Reference, "SendTaskHeartbeat".
    pub async fn send_heartbeat(&self, request: &Value) -> Result<Value, ApiError> {
        let token = required(request, "taskToken")?;
        let ctx = self.waiting_ctx(token).await?;
        ctx.heartbeat().await.map_err(|e| {
            ApiError::client("TaskTimedOut", format!("Task Timed Out: '{}'", e.cause))
        })?;
        Ok(json!({}))
    }
}

fn is_activity(resource: &str) -> bool {
    let parts: Vec<&str> = resource.split(':').collect();
    parts.len() == 7 && parts[2] == "states" && parts[5] == "activity"
}

fn is_lambda(ctx: &TaskContext) -> bool {
    ctx.resource.starts_with("arn:aws:states:::lambda:invoke")
        || ctx.target.split(':').nth(2) == Some("lambda")
}

/// The engine's fallback handler.
pub struct Router(pub Arc<Tasks>);

#[async_trait]
impl TaskHandler for Router {
    async fn invoke(&self, input: Value, ctx: TaskContext) -> Result<Value, TaskError> {
        let tasks = &self.0;
        if let Some(mock) = tasks.mock_for(&ctx) {
            return mock?.invoke(input, ctx).await;
        }
        if is_activity(&ctx.resource) {
            return tasks.activity(input, ctx).await;
        }
        if is_lambda(&ctx) {
            if let Some(lambda) = &tasks.lambda {
                return lambda.invoke(input, &ctx).await;
            }
        }
        let error = if is_lambda(&ctx) {
            "Lambda.ResourceNotFoundException"
        } else {
            "States.TaskFailed"
        };
        Err(TaskError::new(
            error,
            format!(
                "state \"{}\": fleetprep serve has nothing that runs resource \"{}\"; start it with --lambda-endpoint (Lambda) or --mock-config with a #TestCase state machine ARN",
                ctx.state_name, ctx.target
            ),
        ))
    }

    // Every answer is the integration's whole response: mocks give it, activities and
    // callbacks give their output as is, and Lambda builds the Invoke envelope itself.
    fn returns_service_response(&self) -> bool {
        true
    }
}

/// A Lambda Invoke API client (AWS Lambda API Reference, "Invoke":
/// `POST /2015-03-31/functions/FunctionName/invocations`, the payload as the body; a function
/// error comes back as HTTP 200 with `X-Amz-Function-Error` and the error as the payload).
struct Lambda {
    endpoint: String,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

impl Lambda {
    fn new(endpoint: &str) -> Result<Lambda, String> {
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        endpoint
            .parse::<hyper::Uri>()
            .ok()
            .filter(|u| u.scheme_str() == Some("http") && u.host().is_some())
            .ok_or_else(|| {
                format!("--lambda-endpoint {endpoint:?}: expected an http:// URL such as http://127.0.0.1:3001")
            })?;
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        Ok(Lambda { endpoint, client })
    }

    async fn invoke(&self, payload: Value, ctx: &TaskContext) -> Result<Value, TaskError> {
        let function = &ctx.target;
        let encoded: String = function
            .chars()
            .map(|c| match c {
                ':' => "%3A".to_owned(),
                '/' => "%2F".to_owned(),
                c => c.to_string(),
            })
            .collect();
        let uri = format!(
            "{}/2015-03-31/functions/{encoded}/invocations",
            self.endpoint
        );
        let request = hyper::Request::post(&uri)
            .header("content-type", "application/json")
            .header("x-amz-invocation-type", "RequestResponse")
            .body(Full::new(Bytes::from(payload.to_string())))
            .map_err(|e| TaskError::new("Lambda.SdkClientException", e.to_string()))?;
        let response = self.client.request(request).await.map_err(|e| {
            TaskError::new(
                "Lambda.SdkClientException",
                format!("cannot reach the Lambda endpoint {}: {e}", self.endpoint),
            )
        })?;
        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let function_error = header("x-amz-function-error");
        // The Invoke API's exception name travels in this header ("ResourceNotFoundException",
        // possibly with ":<detail>" after it); the body's `Type` is only User or Service.
        let api_error =
            header("x-amzn-errortype").map(|t| t.split(':').next().unwrap_or_default().to_owned());
        let version = header("x-amz-executed-version").unwrap_or_else(|| "$LATEST".into());
        let request_id = header("x-amzn-requestid").unwrap_or_default();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| TaskError::new("Lambda.SdkClientException", e.to_string()))?
            .to_bytes();
        let text = String::from_utf8_lossy(&body).into_owned();
        if !status.is_success() {
            // The Invoke API's own error: Step Functions names it Lambda.<ExceptionName>.
            let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let kind = api_error
                .filter(|t| !t.is_empty())
                .or_else(|| {
                    parsed
                        .get("__type")
                        .and_then(Value::as_str)
                        .map(|t| t.rsplit('#').next().unwrap_or(t).to_owned())
                })
                .unwrap_or_else(|| "ServiceException".into());
            return Err(TaskError::new(format!("Lambda.{kind}"), text));
        }
        if let Some(kind) = function_error {
            // Step Functions' error is the function's errorType; the cause is the payload.
            let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let error = parsed
                .get("errorType")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or(kind);
            return Err(TaskError::new(error, text));
        }
        let payload: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !ctx.resource.starts_with("arn:aws:states:::lambda:invoke") {
            return Ok(payload);
        }
        Ok(json!({
            "ExecutedVersion": version,
            "Payload": payload,
            "SdkHttpMetadata": {
                "AllHttpHeaders": {
                    "X-Amz-Executed-Version": [version],
                    "x-amzn-RequestId": [request_id],
                    "Content-Type": ["application/json"],
                },
                "HttpHeaders": {
                    "X-Amz-Executed-Version": version,
                    "x-amzn-RequestId": request_id,
                    "Content-Type": "application/json",
                },
                "HttpStatusCode": 200,
            },
            "SdkResponseMetadata": {"RequestId": request_id},
            "StatusCode": 200,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_tokens_round_trip_and_reject_strangers() {
        let arn = "arn:aws:states:us-east-1:123456789012:execution:sm:e1";
        let t = task_token(arn, 42);
        assert_eq!(parse_task_token(&t), Some((arn.to_owned(), 42)));
        assert_eq!(parse_task_token("not-a-token"), None);
        assert_eq!(parse_task_token("abc-1"), None);
    }
}
