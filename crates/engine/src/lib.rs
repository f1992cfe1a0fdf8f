//! The embedded Step Functions runtime: runs ASL state machines durably on a laptop.
//!
//! [`Engine`] owns a SQLite store (file or in-memory), a [`clock::Clock`] and a registry of
//! [`TaskHandler`]s keyed by resource ARN. It feeds the pure decider from `asl::interp` with
//! events (task results, heartbeats, fired timers, stop requests), persists every decider step as ONE
//! transaction (the step's input event and its pending-command changes) *before* acting on
//! it, then performs the step's commands: dispatching tasks to handlers (concurrently, on
//! tokio) and arming timers.
//! - History is not stored: it is a deterministic function of the execution's start and input
//!   log, rebuilt by replay for [`Engine::history`]; the decider builds events live only while
//!   someone is subscribed ([`Engine::subscribe`]).
//!
//! - Crash safety: on [`Engine::open`] every `RUNNING` execution is rebuilt by replaying its
//!   input log through the (deterministic) decider; in-flight tasks are dispatched again
//!   (handlers must be idempotent: key side effects on [`TaskContext::idempotency_key`]) and
//!   timers are re-armed from their persisted deadlines.
//! - Time: only from the clock. With a virtual clock, when no task is running and every
//!   execution waits on a timer, the engine jumps the clock to the earliest timer (ties broken
//!   by execution ARN and token, so runs are deterministic). A real clock sleeps instead.
//! - Heartbeats: a handler calls [`TaskContext::heartbeat`] (the local SendTaskHeartbeat) to
//!   restart its state's `HeartbeatSeconds` clock. A heartbeat is an input event like a task
//!   result: logged, replayed on resume, and answered only once committed. A task silent for
//!   longer fails with `States.Timeout` (matched by `States.HeartbeatTimeout`); this applies to
//!   every resource, Lambda included (no AWS document exempts any).
//! - Callbacks (`.waitForTaskToken`): the handler hands the integration
//!   [`TaskContext::task_token`] (the task's `$$.Task.Token`), reports the integration's answer
//!   with [`TaskContext::submit`] (`TaskSubmitted`, committed like a heartbeat) and returns the
//!   callback's answer; a task dispatched again after a restart has [`TaskContext::submitted`]
//!   set and only waits for its callback.
//! - Lateness: before a task result or heartbeat is applied, the timers that fell due while
//!   the task ran fire first (a handler may advance a virtual clock to simulate long work).
//! - Lambda: a handler registered for a function ARN (or bare function name) serves both
//!   `"Resource": "arn:aws:lambda:…:function:NAME"` and `arn:aws:states:::lambda:invoke` with
//!   `FunctionName`; the decider wraps lambda:invoke results in AWS's response envelope.
//! - An unregistered resource fails the task (catchable) with a cause naming the state and
//!   the resource, unless a fallback handler is registered ([`Engine::register_fallback`]).
//!   A handler whose [`TaskHandler::returns_service_response`] is true (mocks) gives the whole
//!   lambda:invoke response itself, so it is not wrapped again.
//!
//! Not here: ASL semantics (crate `asl`), printing (crate `cli`), AWS (crate `cloud`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), engine::EngineError> {
//! use std::sync::Arc;
//! use engine::{Engine, EngineConfig, handler_fn, TaskError};
//!
//! let engine = Engine::open(EngineConfig::in_memory_virtual())?;
//! engine.register("arn:aws:lambda:us-east-1:123456789012:function:Echo",
//!     handler_fn(|input, _ctx| async move { Ok::<_, TaskError>(input) }));
//! engine.create_state_machine("demo", r#"{"StartAt":"A","States":{"A":{"Type":"Pass","End":true}}}"#)?;
//! let arn = engine.start_execution("demo", None, serde_json::json!({"x": 1}))?;
//! let done = engine.run_until_complete(&arn).await?;
//! assert_eq!(done.status, engine::Status::Succeeded);
//! # Ok(()) }
//! ```

mod store;
mod writer;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use asl::history::HistoryEvent;
use asl::interp::{Command, DecideError, Event, Execution, Options};
use asl::model::Definition;
use async_trait::async_trait;
use clock::Clock;
use serde_json::Value;
use tokio::sync::broadcast;
use tokio::task::JoinSet;

pub use asl::interp::{ExecutionInfo, Status};

use store::{NewExecution, Outcome, StepRecord, Store};
use writer::StoreThread;

/// Errors of the engine API. Task failures are not errors here: they are execution events.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store failed. `source` is the SQLite, JSON or I/O error underneath, when there is
    /// one, kept whole so callers (and `{:#}` chains) see the original.
    #[error("store: {context}")]
    Store {
        /// What the store was doing when it failed (the operation and its key).
        context: String,
        /// The underlying error; `None` for failures detected by the engine itself (a corrupt
        /// record, a stopped store thread).
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// No stored state machine has this name (Step Functions' `StateMachineDoesNotExist`).
    #[error("state machine \"{0}\" does not exist; create it with create_state_machine")]
    NoStateMachine(String),
    /// No execution has this ARN (Step Functions' `ExecutionDoesNotExist`).
    #[error("execution \"{0}\" does not exist")]
    NoExecution(String),
    /// An execution with this ARN (state machine and execution name) was started before
    /// (Step Functions' `ExecutionAlreadyExists`).
    #[error("execution \"{0}\" already exists")]
    ExecutionExists(String),
    /// The definition given to `create_state_machine` (or stored) is not a valid state machine.
    #[error("state machine \"{name}\": {source}")]
    Definition {
        /// The state machine's name.
        name: String,
        /// Why the definition was rejected: every diagnostic of the ASL validator.
        #[source]
        source: asl::model::DefinitionError,
    },
    /// The execution (by ARN) has already ended, so it cannot be stopped or sent events.
    #[error("execution \"{0}\" is not running")]
    NotRunning(String),
    /// RedriveExecution refused: the reason, as DescribeExecution's `redriveStatusReason`
    /// words it.
    #[error("execution \"{execution}\" cannot be redriven: {reason}")]
    NotRedrivable {
        /// The execution's ARN.
        execution: String,
        /// Why it cannot be redriven.
        reason: String,
    },
    /// The runtime delivered an event of another kind than its token waits for (a bug in the
    /// runtime, not in the state machine); the execution did not change.
    #[error("execution \"{execution}\": {source}")]
    UnexpectedEvent {
        /// The execution's ARN.
        execution: String,
        /// The event and what the token waited for instead.
        #[source]
        source: asl::interp::UnexpectedEvent,
    },
    /// AWS rejects such a StartExecution with a `ValidationException` (the API's `input`
    /// length constraint) before the execution exists.
    #[error(
        "ValidationException: the execution input is {bytes} bytes; StartExecution accepts at most {limit} bytes (UTF-8 JSON). Pass a reference (an S3 key, an id) instead of the data"
    )]
    InputTooLarge {
        /// Size of the serialized input, in bytes of UTF-8 JSON.
        bytes: usize,
        /// The quota it exceeds: [`MAX_INPUT_BYTES`].
        limit: usize,
    },
}

impl EngineError {
    /// A store failure caused by `source` (SQLite, JSON, I/O).
    pub fn store(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        EngineError::Store {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// A store failure with no underlying error (a corrupt record, a stopped thread).
    pub fn store_message(context: impl Into<String>) -> Self {
        EngineError::Store {
            context: context.into(),
            source: None,
        }
    }
}

/// The largest execution input StartExecution accepts: 262,144 bytes of UTF-8 JSON (Step
/// Functions quotas: "Maximum input or output size for a task, state, or execution").
pub const MAX_INPUT_BYTES: usize = 262_144;

/// How long after its stop an execution can be redriven (developer guide, "Restarting state
/// machine executions with redrive in Step Functions": "the redrivable period of 14 days").
pub const REDRIVABLE_PERIOD: std::time::Duration = std::time::Duration::from_secs(14 * 86_400);

/// A task's failure, as the handler reports it: `error` is the name Retry/Catch match on.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{error}: {cause}")]
pub struct TaskError {
    /// The error name (`States.TaskFailed`, `Cloud.Throttled`, …) that a
    /// Retry's or Catch's `ErrorEquals` is compared with.
    pub error: String,
    /// Human-readable explanation, recorded as the failure event's `cause`.
    pub cause: String,
}

impl TaskError {
    /// A failure named `error` (what Retry/Catch match) explained by `cause`.
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        TaskError {
            error: error.into(),
            cause: cause.into(),
        }
    }
}

/// What a handler knows about the task it runs, and its line back to the engine
/// ([`TaskContext::heartbeat`]).
#[derive(Clone, Debug)]
pub struct TaskContext {
    /// ARN of the execution the task belongs to (`$$.Execution.Id`).
    pub execution_arn: String,
    /// Name of the Task state being run (`$$.State.Name`).
    pub state_name: String,
    /// The state's `Resource` as written.
    pub resource: String,
    /// What the task runs: the resource, or for `arn:aws:states:::lambda:invoke` the
    /// function named by its `FunctionName` parameter (what handlers are looked up by).
    pub target: String,
    /// Unique per scheduled attempt within the execution.
    pub token: u64,
    /// `execution ARN + "/" + state name`: stable across retries and crash re-dispatch; use it
    /// as the client token for side effects.
    pub idempotency_key: String,
    /// A callback task (`.waitForTaskToken`) whose integration already answered
    /// ([`TaskContext::submitted`] was committed before a restart): only its callback is
    /// still awaited, so the integration must not be called again.
    pub submitted: bool,
    // Where heartbeats go: the driver that dispatched the task; `None` for a context made
    // outside an engine (handler tests), where a heartbeat has nobody to tell.
    beats: Option<tokio::sync::mpsc::UnboundedSender<HeartbeatRequest>>,
}

/// One heartbeat (or, with `submitted`, a callback task's submission) on its way to the
/// driver, answered once it is committed.
#[derive(Debug)]
struct HeartbeatRequest {
    execution_arn: String,
    token: u64,
    submitted: Option<Value>,
    reply: tokio::sync::oneshot::Sender<Result<(), TaskError>>,
}

/// A decided heartbeat: where to answer, and the answer.
type HeartbeatAck = (
    tokio::sync::oneshot::Sender<Result<(), TaskError>>,
    Result<(), TaskError>,
);

/// The error of a heartbeat for a task that is over, named as SendTaskHeartbeat names it.
const TASK_TIMED_OUT: &str = "TaskTimedOut";

impl TaskContext {
    /// A context for calling a handler directly (tests, other runtimes): no engine watches
    /// it, so [`TaskContext::heartbeat`] succeeds without effect.
    pub fn new(execution_arn: &str, state_name: &str, resource: &str, token: u64) -> Self {
        TaskContext {
            execution_arn: execution_arn.to_owned(),
            state_name: state_name.to_owned(),
            resource: resource.to_owned(),
            target: resource.to_owned(),
            token,
            idempotency_key: format!("{execution_arn}/{state_name}"),
            submitted: false,
            beats: None,
        }
    }

    /// The task token (`$$.Task.Token`) of this task, as a callback task's parameters carry
    /// it and SendTaskSuccess/SendTaskFailure/SendTaskHeartbeat name it.
    pub fn task_token(&self) -> String {
        asl::interp::task_token(&self.execution_arn, self.token)
    }

    /// A callback task's integration answered `output` (its `TaskSubmitted` event); the task
    /// keeps running until the handler returns the callback's answer. Returns once committed,
    /// so after a restart the task is dispatched again with [`TaskContext::submitted`] set.
    /// Fails with `TaskTimedOut` when the task is already over.
    pub async fn submit(&self, output: Value) -> Result<(), TaskError> {
        self.signal(Some(output)).await
    }

    /// SendTaskHeartbeat, locally: tells the engine the task is still making progress, which
    /// restarts the state's `HeartbeatSeconds` clock (a task that stays silent longer fails
    /// with `States.Timeout`, matched by `States.HeartbeatTimeout` in Retry/Catch). Returns
    /// once the heartbeat is committed (it survives a crash like any other task event); a
    /// state without HeartbeatSeconds accepts it without effect. Fails with `TaskTimedOut`
    /// when the task is already over (timed out, or its execution ended): stop working then,
    /// its result would be ignored.
    pub async fn heartbeat(&self) -> Result<(), TaskError> {
        self.signal(None).await
    }

    /// Sends a heartbeat (`None`) or a submission to the driver and waits for its commit.
    async fn signal(&self, submitted: Option<Value>) -> Result<(), TaskError> {
        let Some(beats) = &self.beats else {
            return Ok(());
        };
        let over = || {
            TaskError::new(
                TASK_TIMED_OUT,
                format!(
                    "state \"{}\" of execution {}: the task is no longer running (it timed out or the execution ended)",
                    self.state_name, self.execution_arn
                ),
            )
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        beats
            .send(HeartbeatRequest {
                execution_arn: self.execution_arn.clone(),
                token: self.token,
                submitted,
                reply,
            })
            .map_err(|_| over())?;
        answer.await.map_err(|_| over())?
    }
}

/// Runs one kind of task. Must be idempotent: after a crash a task may run again.
#[async_trait]
pub trait TaskHandler: Send + Sync {
    /// Runs the task on the state's effective input (after Parameters/Arguments) and
    /// returns its result, or the named error Retry/Catch see.
    async fn invoke(&self, input: Value, ctx: TaskContext) -> Result<Value, TaskError>;

    /// Whether [`TaskHandler::invoke`] returns the integration's whole service response
    /// rather than what the function returned: for `arn:aws:states:::lambda:invoke` the Invoke
    /// API response (`{"StatusCode": 200, "Payload": …}`), which is then used as is instead
    /// of being wrapped in that envelope. Mocks answer this way (Step Functions Local mock
    /// files give the whole response); real handlers don't.
    fn returns_service_response(&self) -> bool {
        false
    }
}

struct FnHandler<F>(F);

#[async_trait]
impl<F, Fut> TaskHandler for FnHandler<F>
where
    F: Fn(Value, TaskContext) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Value, TaskError>> + Send + 'static,
{
    async fn invoke(&self, input: Value, ctx: TaskContext) -> Result<Value, TaskError> {
        (self.0)(input, ctx).await
    }
}

/// Wraps an async closure as a handler.
pub fn handler_fn<F, Fut>(f: F) -> Arc<dyn TaskHandler>
where
    F: Fn(Value, TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, TaskError>> + Send + 'static,
{
    Arc::new(FnHandler(f))
}

/// How to open an engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// SQLite file; `None` = in-memory (nothing survives the process).
    pub store: Option<PathBuf>,
    /// Where time comes from: a `VirtualClock` lets the engine jump to the next timer, a
    /// `SystemClock` makes it sleep.
    pub clock: Arc<dyn Clock>,
}

impl EngineConfig {
    /// In-memory store on a virtual clock starting at a fixed instant (2024-01-01T00:00:00Z),
    /// for tests and `states exec`.
    pub fn in_memory_virtual() -> Self {
        EngineConfig {
            store: None,
            clock: Arc::new(clock::VirtualClock::new(
                UNIX_EPOCH + std::time::Duration::from_secs(1_704_067_200),
            )),
        }
    }
}

/// One history event of one execution, as broadcast to subscribers.
#[derive(Clone, Debug)]
pub struct Progress {
    /// ARN of the execution the event belongs to.
    pub execution_arn: String,
    /// The event, as GetExecutionHistory will return it.
    pub event: HistoryEvent,
}

/// DescribeExecution, locally.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecutionSummary {
    /// The execution's ARN (`executionArn`).
    pub execution_arn: String,
    /// The execution's name, given at start or generated (`name`).
    pub name: String,
    /// Name (or ARN, when registered under one) of the state machine it runs.
    pub state_machine: String,
    /// RUNNING, SUCCEEDED, FAILED, TIMED_OUT or ABORTED.
    pub status: Status,
    /// The execution input, as given to StartExecution.
    pub input: Value,
    /// The final output; `Some` only once the execution SUCCEEDED.
    pub output: Option<Value>,
    /// DescribeExecution's `error`/`cause`: set for FAILED and ABORTED, `None` for TIMED_OUT
    /// (AWS omits both there; the history's `ExecutionTimedOut` event carries States.Timeout).
    pub error: Option<String>,
    /// Explanation of `error`, when the failure gave one.
    pub cause: Option<String>,
    /// When the execution started, on the engine's clock (virtual time under a virtual clock).
    pub start_date: SystemTime,
    /// When it ended, on the engine's clock; `None` while RUNNING.
    pub stop_date: Option<SystemTime>,
    /// How often it was redriven (RedriveExecution), 0 if never.
    pub redrive_count: u64,
    /// When it was last redriven, on the engine's clock; `None` if never.
    pub redrive_date: Option<SystemTime>,
}

// The engine is shared across tokio tasks and threads: keep it Send + Sync.
const _: () = {
    fn assert_send_sync<T: Send + Sync>() {}
    fn check() {
        assert_send_sync::<Engine>();
    }
    let _ = check;
};

/// The engine. Cheap to clone (shared inside).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    clock: Arc<dyn Clock>,
    store: StoreThread,
    // The store file found in another format, moved aside, and that format.
    kept_aside: Option<(PathBuf, i64)>,
    handlers: RwLock<HashMap<String, Arc<dyn TaskHandler>>>,
    // Runs the tasks no registered handler serves (`register_fallback`).
    fallback: RwLock<Option<Arc<dyn TaskHandler>>>,
    rt: Mutex<Runtime>,
    progress: broadcast::Sender<Progress>,
    // The one driver, and the heartbeats of the tasks it runs.
    driver: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<HeartbeatRequest>>,
    beats: tokio::sync::mpsc::UnboundedSender<HeartbeatRequest>,
    // Parsed state machines by name, with the executions' reference to the stored text. Starting 10,000 executions must not parse 10,000 definitions.
    defs: Mutex<HashMap<String, CachedDefinition>>,
    // Progress of steps in the open group commit, broadcast when it commits (`flush`): a step
    // is never visible before it is durable.
    deferred: Mutex<Vec<Progress>>,
    grouping: std::sync::atomic::AtomicBool,
    // Wakes a driver that runs forever (`run_forever`) when work arrives from outside it: a
    // started or stopped execution, a moved clock.
    wake: tokio::sync::Notify,
    // Counts committed rounds, so `wait_until_complete` re-checks only when something changed.
    committed: tokio::sync::watch::Sender<u64>,
}

#[derive(Clone)]
struct CachedDefinition {
    def: Arc<Definition>,
    stored_as: Arc<str>,
}

struct Live {
    def: Arc<Definition>,
    exec: Execution,
    // Invariant: number of events in the execution's input log.
    seq: i64,
}

#[derive(Default)]
struct Runtime {
    live: HashMap<String, Live>,
    dispatch: VecDeque<(String, Command)>,
    // Ordered by deadline, then execution and token (deterministic ties).
    timers: BTreeMap<(SystemTime, String, u64), ()>,
    // Per execution: token -> deadline (mirrors `timers`; lets `forget` touch only the
    // execution's own timers instead of scanning every armed timer).
    timer_index: HashMap<String, HashMap<u64, SystemTime>>,
    names: u64,
}

impl Runtime {
    fn arm(&mut self, arn: &str, token: u64, at: SystemTime) {
        self.timers.insert((at, arn.to_owned(), token), ());
        self.timer_index
            .entry(arn.to_owned())
            .or_default()
            .insert(token, at);
    }

    fn disarm(&mut self, arn: &str, token: u64) {
        let Some(tokens) = self.timer_index.get_mut(arn) else {
            return;
        };
        if let Some(at) = tokens.remove(&token) {
            self.timers.remove(&(at, arn.to_owned(), token));
        }
        if tokens.is_empty() {
            self.timer_index.remove(arn);
        }
    }

    fn forget(&mut self, arn: &str) {
        self.live.remove(arn);
        if let Some(tokens) = self.timer_index.remove(arn) {
            for (token, at) in tokens {
                self.timers.remove(&(at, arn.to_owned(), token));
            }
        }
        // Its tasks still queued in `dispatch` are skipped when the queue is drained (a scan
        // here would cost the whole queue for every execution that ends).
    }
}

/// Polls a handler's future, turning a panic into `Err(message)`: the same isolation a task of
/// its own gives, without spawning one per task.
struct CatchPanic<F: ?Sized>(std::pin::Pin<Box<F>>);

impl<F: Future + ?Sized> Future for CatchPanic<F> {
    type Output = Result<F::Output, String>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-string panic payload".to_string());
                std::task::Poll::Ready(Err(message))
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock is a bug elsewhere; the data is still consistent
    // because every mutation is a whole step.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn seed_of(arn: &str) -> u64 {
    // FNV-1a: a stable seed per execution, so replays draw the same jitter/UUIDs.
    use std::hash::Hasher as _;
    let mut fnv = fnv::FnvHasher::default();
    fnv.write(arn.as_bytes());
    fnv.finish()
}

/// The ARNs an execution sees (`$$.Execution.Id`, `$$.StateMachine.Id`, …). A state machine
/// registered under its Step Functions ARN (`arn:PARTITION:states:REGION:ACCOUNT:stateMachine:NAME`,
/// as an API front end does) gives its executions ARNs in that partition, region and account
/// (`…:execution:NAME:EXECUTION`, the format of the Step Functions API Reference's
/// StartExecution); any other name is local (`ExecutionInfo::local`).
pub fn execution_info(state_machine: &str, execution: &str) -> ExecutionInfo {
    let parts: Vec<&str> = state_machine.splitn(7, ':').collect();
    match parts.as_slice() {
        [
            "arn",
            partition,
            "states",
            region,
            account,
            "stateMachine",
            name,
        ] => ExecutionInfo {
            execution_arn: format!(
                "arn:{partition}:states:{region}:{account}:execution:{name}:{execution}"
            ),
            execution_name: execution.to_owned(),
            state_machine_arn: state_machine.to_owned(),
            state_machine_name: (*name).to_owned(),
            role_arn: format!("arn:{partition}:iam::{account}:role/fleetprep-local"),
        },
        _ => ExecutionInfo::local(state_machine, execution),
    }
}

fn lambda_function_name(target: &str) -> Option<&str> {
    // arn:aws:lambda:region:account:function:NAME[:qualifier]
    let parts: Vec<&str> = target.split(':').collect();
    if parts.len() >= 7 && parts[2] == "lambda" && parts[5] == "function" {
        Some(parts[6])
    } else {
        None
    }
}

impl Engine {
    /// Opens (creating if needed) the store and resumes every running execution.
    pub fn open(config: EngineConfig) -> Result<Engine, EngineError> {
        let mut store = Store::open(config.store.as_deref())?;
        let kept_aside = store.kept_aside.take();
        let (tx, _) = broadcast::channel(4096);
        let (beats, beats_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut runtime = Runtime::default();
        resume(&store, &mut runtime, config.clock.as_ref())?;
        let engine = Engine {
            inner: Arc::new(Inner {
                clock: config.clock,
                store: StoreThread::spawn(store)?,
                kept_aside,
                handlers: RwLock::new(HashMap::new()),
                fallback: RwLock::new(None),
                rt: Mutex::new(runtime),
                progress: tx,
                driver: tokio::sync::Mutex::new(beats_rx),
                beats,
                defs: Mutex::new(HashMap::new()),
                deferred: Mutex::new(Vec::new()),
                grouping: std::sync::atomic::AtomicBool::new(false),
                wake: tokio::sync::Notify::new(),
                committed: tokio::sync::watch::Sender::new(0),
            }),
        };
        Ok(engine)
    }

    /// When the store file was written in another store format: where it was moved (its
    /// executions kept for the fleetprep that wrote them) and that format, so that a front end
    /// can tell its user why the store starts empty.
    pub fn store_kept_aside(&self) -> Option<(&std::path::Path, i64)> {
        self.inner
            .kept_aside
            .as_ref()
            .map(|(path, format)| (path.as_path(), *format))
    }

    /// The engine's clock.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.inner.clock.clone()
    }

    /// Whether anybody reads history events as they happen. When nobody does, the decider
    /// skips building them: history is rebuilt by replay when asked for ([`Engine::history`]).
    fn recording(&self) -> bool {
        self.inner.progress.receiver_count() > 0
    }

    /// Registers the handler for a resource ARN (or a bare Lambda function name).
    pub fn register(&self, resource: &str, handler: Arc<dyn TaskHandler>) {
        let mut h = self
            .inner
            .handlers
            .write()
            .unwrap_or_else(|p| p.into_inner());
        h.insert(resource.to_owned(), handler);
    }

    /// Registers the handler for every task whose resource (or Lambda function) has no
    /// handler of its own, e.g. one that answers by state name (`states exec --mock-config`).
    pub fn register_fallback(&self, handler: Arc<dyn TaskHandler>) {
        *self
            .inner
            .fallback
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(handler);
    }

    fn handler_for(&self, target: &str) -> Option<Arc<dyn TaskHandler>> {
        let h = self
            .inner
            .handlers
            .read()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(x) = h.get(target) {
            return Some(x.clone());
        }
        let name = lambda_function_name(target).unwrap_or(target);
        if let Some(x) = h.get(name) {
            return Some(x.clone());
        }
        h.iter()
            .find(|(k, _)| lambda_function_name(k) == Some(name))
            .map(|(_, v)| v.clone())
            .or_else(|| {
                self.inner
                    .fallback
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
            })
    }

    /// Creates (or replaces) a state machine after validating the definition fully.
    pub fn create_state_machine(&self, name: &str, definition: &str) -> Result<(), EngineError> {
        let def = Definition::parse(definition).map_err(|source| EngineError::Definition {
            name: name.to_owned(),
            source,
        })?;
        let stored_as = {
            let (name, definition, now) = (
                name.to_owned(),
                definition.to_owned(),
                self.inner.clock.now(),
            );
            self.inner.store.call(move |store| {
                store.put_state_machine(&name, &definition, now)?;
                store.definition_ref(&definition)
            })?
        };
        lock(&self.inner.defs).insert(
            name.to_owned(),
            CachedDefinition {
                def: Arc::new(def),
                stored_as: stored_as.into(),
            },
        );
        Ok(())
    }

    fn cached_definition(&self, state_machine: &str) -> Result<CachedDefinition, EngineError> {
        if let Some(c) = lock(&self.inner.defs).get(state_machine) {
            return Ok(c.clone());
        }
        let (text, stored_as) = {
            let name = state_machine.to_owned();
            self.inner.store.call(move |store| {
                let text = store
                    .state_machine(&name)?
                    .ok_or(EngineError::NoStateMachine(name))?;
                let stored_as = store.definition_ref(&text)?;
                Ok((text, stored_as))
            })?
        };
        let def = Definition::parse(&text).map_err(|source| EngineError::Definition {
            name: state_machine.to_owned(),
            source,
        })?;
        let cached = CachedDefinition {
            def: Arc::new(def),
            stored_as: stored_as.into(),
        };
        lock(&self.inner.defs).insert(state_machine.to_owned(), cached.clone());
        Ok(cached)
    }

    /// Names of the stored state machines.
    pub fn state_machines(&self) -> Result<Vec<String>, EngineError> {
        self.inner.store.call(|store| store.state_machines())
    }

    /// Starts an execution of a stored state machine; returns its ARN. The first decider step
    /// (everything up to the first Task or Wait) runs and is committed before this returns;
    /// tasks and timers run when the engine is driven (`run_until_*`).
    pub fn start_execution(
        &self,
        state_machine: &str,
        name: Option<&str>,
        input: Value,
    ) -> Result<String, EngineError> {
        self.start(state_machine, name, input, true, None)
    }

    /// Starts several executions with ONE commit (EventBridge delivering a burst of events);
    /// every start is on disk before this returns. One result per request, in order.
    pub fn start_executions(
        &self,
        requests: Vec<(String, Option<String>, Value)>,
    ) -> Result<Vec<Result<String, EngineError>>, EngineError> {
        if requests.len() <= 1 {
            return Ok(requests
                .into_iter()
                .map(|(sm, name, input)| self.start(&sm, name.as_deref(), input, true, None))
                .collect());
        }
        // Which of the named executions the store already has, in one trip to the store
        // thread for the whole burst instead of one per start.
        let named: Vec<String> = requests
            .iter()
            .filter_map(|(sm, name, _)| {
                name.as_deref().map(|n| execution_info(sm, n).execution_arn)
            })
            .collect();
        let stored = self
            .inner
            .store
            .call(move |store| store.existing_executions(&named))?;
        self.begin_group()?;
        let out = requests
            .into_iter()
            .map(|(sm, name, input)| self.start(&sm, name.as_deref(), input, false, Some(&stored)))
            .collect();
        self.flush()?;
        Ok(out)
    }

    fn start(
        &self,
        state_machine: &str,
        name: Option<&str>,
        input: Value,
        durable: bool,
        // The stored executions among a burst's names, when the caller looked them up at once.
        stored: Option<&HashSet<String>>,
    ) -> Result<String, EngineError> {
        // Checked before anything is recorded: AWS never creates the execution.
        let bytes = serde_json::to_string(&input)
            .map(|t| t.len())
            .unwrap_or(usize::MAX);
        if bytes > MAX_INPUT_BYTES {
            return Err(EngineError::InputTooLarge {
                bytes,
                limit: MAX_INPUT_BYTES,
            });
        }
        let cached = self.cached_definition(state_machine)?;
        let def = cached.def.clone();
        let now = self.inner.clock.now();
        let name = match name {
            Some(n) => n.to_owned(),
            None => {
                let mut rt = lock(&self.inner.rt);
                rt.names += 1;
                let nanos = store::to_nanos(now);
                format!("exec-{nanos:x}-{}", rt.names)
            }
        };
        let info = execution_info(state_machine, &name);
        let arn = info.execution_arn.clone();
        let in_store = match stored {
            Some(stored) => stored.contains(&arn),
            None => {
                let arn = arn.clone();
                self.inner
                    .store
                    .call(move |store| store.execution_exists(&arn))?
            }
        };
        if in_store || lock(&self.inner.rt).live.contains_key(&arn) {
            return Err(EngineError::ExecutionExists(arn));
        }
        let seed = seed_of(&arn);
        let input_text =
            serde_json::to_string(&input).map_err(|e| EngineError::store("execution input", e))?;
        let options = Options {
            record_history: self.recording(),
            ..Options::default()
        };
        let (exec, step) = Execution::start(&def, info, input, seed, now, options);
        self.inner.store.write(
            StepRecord {
                arn: arn.clone(),
                now,
                new_execution: Some(NewExecution {
                    name,
                    state_machine: state_machine.to_owned(),
                    definition: cached.stored_as.clone(),
                    input: input_text,
                    seed,
                }),
                input: None,
                redriven: false,
                outcome: Outcome::of(&step.commands),
            },
            durable,
        )?;
        let mut rt = lock(&self.inner.rt);
        rt.live.insert(arn.clone(), Live { def, exec, seq: 0 });
        self.effects(&mut rt, &arn, step.history, step.commands);
        drop(rt);
        if durable {
            self.committed();
        }
        self.inner.wake.notify_one();
        Ok(arn)
    }

    /// Opens a group commit: the following steps commit together at [`Engine::flush`].
    fn begin_group(&self) -> Result<(), EngineError> {
        self.inner.store.begin_group()?;
        self.inner
            .grouping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Commits the open group, then makes its steps visible (broadcast). Task dispatch is
    /// already ordered after this: the driver drains `dispatch` only after flushing.
    fn flush(&self) -> Result<(), EngineError> {
        if !self
            .inner
            .grouping
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Ok(());
        }
        self.inner.store.end_group()?;
        self.inner
            .grouping
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let deferred = std::mem::take(&mut *lock(&self.inner.deferred));
        for p in deferred {
            let _ = self.inner.progress.send(p);
        }
        self.committed();
        Ok(())
    }

    /// A receiver that changes whenever steps were committed (a round of the driver, a start
    /// or a stop): a front end that holds tasks open for outside answers re-checks
    /// [`Engine::task_pending`] then, and lets go of the tasks that are over.
    pub fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.committed.subscribe()
    }

    /// Tells `wait_until_complete` callers that steps were committed.
    fn committed(&self) {
        self.inner.committed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Wakes a driver running [`Engine::run_forever`] to look for work: call it after moving
    /// the clock from outside (an admin call advancing a virtual clock).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Waits until `arn` is no longer running (driven by someone else, e.g.
    /// [`Engine::run_forever`]), then describes it.
    pub async fn wait_until_complete(&self, arn: &str) -> Result<ExecutionSummary, EngineError> {
        let mut changes = self.inner.committed.subscribe();
        loop {
            let summary = self.describe(arn)?;
            if summary.status != Status::Running {
                return Ok(summary);
            }
            if changes.changed().await.is_err() {
                return Ok(summary);
            }
        }
    }

    /// Deletes a state machine (DeleteStateMachine): no new execution can start; the ones
    /// running keep their definition (each execution references the text it started with).
    /// False when it did not exist.
    pub fn delete_state_machine(&self, name: &str) -> Result<bool, EngineError> {
        lock(&self.inner.defs).remove(name);
        let name = name.to_owned();
        self.inner
            .store
            .call(move |store| store.delete_state_machine(&name))
    }

    /// Sets (`Some`) or removes (`None`) a front end's metadata entry (JSON), kept in the
    /// store beside the executions so that it survives restarts with them.
    pub fn put_metadata(
        &self,
        kind: &str,
        key: &str,
        value: Option<&Value>,
    ) -> Result<(), EngineError> {
        let (kind, key) = (kind.to_owned(), key.to_owned());
        let text = value.map(Value::to_string);
        self.inner
            .store
            .call(move |store| store.put_metadata(&kind, &key, text.as_deref()))
    }

    /// Every metadata entry of one kind, by key.
    pub fn metadata(&self, kind: &str) -> Result<Vec<(String, Value)>, EngineError> {
        let kind = kind.to_owned();
        let rows = self.inner.store.call(move |store| store.metadata(&kind))?;
        rows.into_iter()
            .map(|(k, v)| {
                serde_json::from_str(&v)
                    .map(|v| (k, v))
                    .map_err(|e| EngineError::store("corrupt metadata JSON", e))
            })
            .collect()
    }

    fn effects(
        &self,
        rt: &mut Runtime,
        arn: &str,
        history: Vec<HistoryEvent>,
        commands: Vec<Command>,
    ) {
        if self
            .inner
            .grouping
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            lock(&self.inner.deferred).extend(history.into_iter().map(|event| Progress {
                execution_arn: arn.to_owned(),
                event,
            }));
        } else {
            for event in history {
                let _ = self.inner.progress.send(Progress {
                    execution_arn: arn.to_owned(),
                    event,
                });
            }
        }
        for c in commands {
            match c {
                Command::ScheduleTask { .. } => rt.dispatch.push_back((arn.to_owned(), c)),
                Command::StartTimer { token, fire_at } => rt.arm(arn, token, fire_at),
                Command::CancelTimer { token } => rt.disarm(arn, token),
                Command::Complete { .. } => rt.forget(arn),
            }
        }
    }

    /// Applies one event to one execution: decide, commit, then act.
    fn apply(&self, arn: &str, event: Event, durable: bool) -> Result<(), EngineError> {
        let now = self.inner.clock.now();
        let mut rt = lock(&self.inner.rt);
        let Some(live) = rt.live.get_mut(arn) else {
            // The execution ended meanwhile: nothing waits for this event.
            return Ok(());
        };
        let def = live.def.clone();
        // Serialised before the decider consumes the event (no clone of a task's output).
        let logged = serde_json::to_string(&event)
            .map_err(|e| EngineError::store(format!("execution {arn}: event"), e))?;
        live.exec.set_record_history(self.recording());
        let step = match live.exec.handle(&def, event, now) {
            Ok(s) => s,
            Err(DecideError::UnknownToken(_)) => {
                // A stale token (task finished after its timeout, aborted iteration): no
                // state change, nothing to log.
                return Ok(());
            }
            Err(DecideError::NotRunning(_)) => return Err(EngineError::NotRunning(arn.to_owned())),
            // Only `redrive_execution` sends a redrive, to an execution that is not live.
            Err(DecideError::NotRedrivable(reason)) => {
                return Err(EngineError::NotRedrivable {
                    execution: arn.to_owned(),
                    reason,
                });
            }
            Err(DecideError::UnexpectedEvent(source)) => {
                return Err(EngineError::UnexpectedEvent {
                    execution: arn.to_owned(),
                    source,
                });
            }
        };
        live.seq += 1;
        let seq = live.seq;
        if !durable
            && !self
                .inner
                .grouping
                .load(std::sync::atomic::Ordering::SeqCst)
        {
            // Committed at the next flush, before anything this step schedules runs.
            self.begin_group()?;
        }
        self.log_step(arn, now, (seq, logged), false, &step.commands, durable)?;
        self.effects(&mut rt, arn, step.history, step.commands);
        Ok(())
    }

    /// Writes one decided step of an existing execution: its input event `(seq, JSON)`,
    /// whether it redrives the execution, and its outcome if it ended it.
    fn log_step(
        &self,
        arn: &str,
        now: SystemTime,
        input: (i64, String),
        redriven: bool,
        commands: &[Command],
        durable: bool,
    ) -> Result<(), EngineError> {
        self.inner.store.write(
            StepRecord {
                arn: arn.to_owned(),
                now,
                new_execution: None,
                input: Some(input),
                redriven,
                outcome: Outcome::of(commands),
            },
            durable,
        )
    }

    /// Stops a running execution (`ExecutionAborted`).
    pub fn stop_execution(
        &self,
        arn: &str,
        error: Option<&str>,
        cause: Option<&str>,
    ) -> Result<(), EngineError> {
        if !lock(&self.inner.rt).live.contains_key(arn) {
            return Err(EngineError::NotRunning(arn.to_owned()));
        }
        self.apply(
            arn,
            Event::Abort {
                error: error.map(str::to_owned),
                cause: cause.map(str::to_owned),
            },
            true,
        )?;
        self.committed();
        self.inner.wake.notify_one();
        Ok(())
    }

    /// RedriveExecution: runs a FAILED, TIMED_OUT or ABORTED execution again from its
    /// unsuccessful states (`asl::interp::Execution::redrive`), under the same ARN, input and
    /// definition. Refused with [`EngineError::NotRedrivable`] and the documented reason, also
    /// after the redrivable period of 14 days from its stop (developer guide, "Restarting
    /// state machine executions with redrive in Step Functions"). The redrive is a logged
    /// input event like any other, so a restart replays it.
    pub fn redrive_execution(&self, arn: &str) -> Result<(), EngineError> {
        let refuse = |reason: &str| EngineError::NotRedrivable {
            execution: arn.to_owned(),
            reason: reason.to_owned(),
        };
        let now = self.inner.clock.now();
        // Held throughout: the execution becomes live only once its redrive is committed,
        // and a second redrive of it waits and then finds it running.
        let mut rt = lock(&self.inner.rt);
        if rt.live.contains_key(arn) {
            return Err(refuse("Execution is RUNNING and cannot be redriven."));
        }
        let (row, replayed) = {
            let arn = arn.to_owned();
            self.inner.store.call(move |store| {
                let row = store
                    .execution(&arn)?
                    .ok_or_else(|| EngineError::NoExecution(arn.clone()))?;
                let replayed = replay(store, &row, false)?;
                Ok((row, replayed))
            })?
        };
        let stopped = row.stop_nanos.map(store::from_nanos);
        if stopped
            .and_then(|t| t.checked_add(REDRIVABLE_PERIOD))
            .is_some_and(|end| now > end)
        {
            return Err(refuse("Execution redrivable period exceeded."));
        }
        let Replayed {
            def, mut exec, seq, ..
        } = replayed;
        exec.set_record_history(self.recording());
        let step = match exec.handle(&def, Event::Redrive, now) {
            Ok(step) => step,
            Err(DecideError::NotRedrivable(reason)) => return Err(refuse(&reason)),
            Err(other) => return Err(refuse(&other.to_string())),
        };
        let logged = serde_json::to_string(&Event::Redrive)
            .map_err(|e| EngineError::store(format!("execution {arn}: event"), e))?;
        let seq = seq + 1;
        self.log_step(arn, now, (seq, logged), true, &step.commands, true)?;
        rt.live.insert(
            arn.to_owned(),
            Live {
                def: Arc::new(def),
                exec,
                seq,
            },
        );
        self.effects(&mut rt, arn, step.history, step.commands);
        drop(rt);
        self.committed();
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Drives until `arn` is no longer running, then describes it.
    pub async fn run_until_complete(&self, arn: &str) -> Result<ExecutionSummary, EngineError> {
        self.drive(Some(arn)).await?;
        self.describe(arn)
    }

    /// Drives until no execution can make progress (all complete, or nothing pending).
    pub async fn run_until_idle(&self) -> Result<(), EngineError> {
        self.drive(None).await
    }

    /// Drives every execution, for as long as the engine lives: a server's driver. Work that
    /// arrives from outside (a started or stopped execution, [`Engine::wake`]) wakes it; with
    /// a virtual clock it still jumps to the next timer as soon as no task is running. While
    /// it runs, `run_until_*` wait for it, so a server uses [`Engine::wait_until_complete`].
    pub async fn run_forever(&self) -> Result<(), EngineError> {
        let mut beats = self.inner.driver.lock().await;
        let result = self.drive_locked(None, true, &mut beats).await;
        let flushed = self.flush();
        result.and(flushed)
    }

    async fn drive(&self, target: Option<&str>) -> Result<(), EngineError> {
        let mut beats = self.inner.driver.lock().await;
        let result = self.drive_locked(target, false, &mut beats).await;
        // Whatever happened, commit what was decided (a failed step was rolled back alone).
        let flushed = self.flush();
        result.and(flushed)
    }

    // Group commit: the steps of one round (every due timer, every task result that is
    // ready) are decided and written inside one transaction, committed by `flush` at the top
    // of the next round, before any task they schedule is dispatched and before their
    // history is broadcast. The invariant "a step is durable before its effects are visible"
    // holds; a crash loses at most the uncommitted round, whose task results come back when
    // the (idempotent) tasks are re-dispatched on resume. No await happens with a group open.
    //
    // Heartbeats (TaskContext::heartbeat) are steps like task results: applied in a round's
    // group and answered only after its commit. Before a task result or a heartbeat is
    // applied, the timers that fell due while the task ran fire first: a result (or
    // heartbeat) that arrives after a deadline is too late, on a real clock as on a virtual
    // one that a handler advanced.
    async fn drive_locked(
        &self,
        target: Option<&str>,
        forever: bool,
        beats: &mut tokio::sync::mpsc::UnboundedReceiver<HeartbeatRequest>,
    ) -> Result<(), EngineError> {
        // Outside work wakes only a driver that runs forever; one that runs until a target
        // completes is driven by whoever started that work.
        let woken = || async {
            if forever {
                self.inner.wake.notified().await
            } else {
                std::future::pending().await
            }
        };
        let mut tasks: JoinSet<(String, u64, bool, Result<Value, TaskError>)> = JoinSet::new();
        // Reused every round: a round of 10,000 executions would otherwise allocate (and the
        // allocator fetch zeroed from the OS) megabytes for these lists each time.
        let mut to_run: Vec<(String, Command)> = Vec::new();
        let mut due: Vec<(String, u64)> = Vec::new();
        // Heartbeats decided in the open group, answered when it commits.
        let mut acks: Vec<HeartbeatAck> = Vec::new();
        loop {
            self.flush()?;
            for (reply, answer) in acks.drain(..) {
                // The handler may have given up waiting; nothing to tell it then.
                let _ = reply.send(answer);
            }
            if let Some(a) = target {
                if !lock(&self.inner.rt).live.contains_key(a) {
                    return Ok(());
                }
            }
            // Dispatch scheduled tasks.
            {
                let mut rt = lock(&self.inner.rt);
                let rt = &mut *rt;
                // Tasks of executions that ended in the same round are not run.
                let live = &rt.live;
                to_run.extend(
                    rt.dispatch
                        .drain(..)
                        .filter(|(arn, _)| live.contains_key(arn)),
                );
            }
            for (arn, cmd) in to_run.drain(..) {
                let Command::ScheduleTask {
                    token,
                    state,
                    resource,
                    target: what,
                    input,
                    ..
                } = cmd
                else {
                    continue;
                };
                let ctx = TaskContext {
                    idempotency_key: format!("{arn}/{state}"),
                    execution_arn: arn.clone(),
                    state_name: state.clone(),
                    resource: resource.clone(),
                    target: what.clone(),
                    token,
                    submitted: lock(&self.inner.rt)
                        .live
                        .get(&arn)
                        .is_some_and(|l| l.exec.task_submitted(token)),
                    beats: Some(self.inner.beats.clone()),
                };
                match self.handler_for(&what) {
                    Some(h) => {
                        let whole = h.returns_service_response();
                        tasks.spawn(async move {
                            // A panic in the handler becomes a task failure of this token
                            // instead of a hung execution.
                            let r = match CatchPanic(h.invoke(input, ctx)).await {
                                Ok(r) => r,
                                Err(message) => Err(TaskError::new(
                                    "States.TaskFailed",
                                    format!("the task handler panicked: {message}"),
                                )),
                            };
                            (arn, token, whole, r)
                        });
                    }
                    None => {
                        let error = if lambda_function_name(&what).is_some()
                            || resource.contains(":lambda:")
                        {
                            "Lambda.ResourceNotFoundException"
                        } else {
                            "States.TaskFailed"
                        };
                        self.apply(
                            &arn,
                            Event::TaskFailed {
                                token,
                                error: error.to_owned(),
                                cause: Some(format!(
                                    "state \"{state}\": no handler is registered for resource \"{what}\"; register one with Engine::register"
                                )),
                            },
                            false,
                        )?;
                    }
                }
            }
            let now = self.inner.clock.now();
            if self.fire_due(&mut due)? {
                continue;
            }
            if !lock(&self.inner.rt).dispatch.is_empty() {
                continue;
            }
            let next_timer = lock(&self.inner.rt)
                .timers
                .first_key_value()
                .map(|((at, _, _), _)| *at);
            if !tasks.is_empty() {
                enum Woke<J> {
                    Task(Option<J>),
                    Beat(Option<HeartbeatRequest>),
                    Timer,
                }
                let woke = if self.inner.clock.is_virtual() || next_timer.is_none() {
                    tokio::select! {
                        j = tasks.join_next() => Woke::Task(j),
                        b = beats.recv() => Woke::Beat(b),
                        _ = woken() => Woke::Timer,
                    }
                } else {
                    let wait = next_timer
                        .and_then(|t| t.duration_since(now).ok())
                        .unwrap_or_default();
                    #[allow(clippy::disallowed_methods)] // the engine's real-time timer
                    let sleep = tokio::time::sleep(wait);
                    tokio::select! {
                        j = tasks.join_next() => Woke::Task(j),
                        b = beats.recv() => Woke::Beat(b),
                        _ = sleep => Woke::Timer,
                        _ = woken() => Woke::Timer,
                    }
                };
                match woke {
                    Woke::Task(Some(j)) => {
                        self.begin_group()?;
                        self.fire_due(&mut due)?;
                        self.task_done(j)?;
                        // Every other result already in: same round, same commit.
                        while let Some(j) = tasks.try_join_next() {
                            self.task_done(j)?;
                        }
                    }
                    Woke::Beat(Some(b)) => {
                        self.begin_group()?;
                        self.fire_due(&mut due)?;
                        acks.push(self.heartbeat(b)?);
                        while let Ok(b) = beats.try_recv() {
                            acks.push(self.heartbeat(b)?);
                        }
                    }
                    Woke::Task(None) | Woke::Beat(None) | Woke::Timer => {}
                }
                continue;
            }
            match next_timer {
                Some(at) => {
                    if self.inner.clock.is_virtual() {
                        self.inner.clock.advance_to(at);
                    } else if let Ok(wait) = at.duration_since(now) {
                        #[allow(clippy::disallowed_methods)] // the engine's real-time timer
                        let sleep = tokio::time::sleep(wait);
                        tokio::select! {
                            _ = sleep => {}
                            _ = woken() => {}
                        }
                    }
                }
                None if forever => {
                    // A heartbeat can still arrive for a task that just ended: answer it.
                    tokio::select! {
                        _ = woken() => {}
                        b = beats.recv() => {
                            if let Some(b) = b {
                                self.begin_group()?;
                                acks.push(self.heartbeat(b)?);
                            }
                        }
                    }
                }
                None => return Ok(()),
            }
        }
    }

    /// Fires every timer due by now, in deadline order, in one group; true when any fired.
    fn fire_due(&self, due: &mut Vec<(String, u64)>) -> Result<bool, EngineError> {
        let now = self.inner.clock.now();
        {
            let mut rt = lock(&self.inner.rt);
            while let Some(((at, arn, token), ())) = rt.timers.first_key_value() {
                if *at > now {
                    break;
                }
                let (arn, token) = (arn.clone(), *token);
                rt.disarm(&arn, token);
                due.push((arn, token));
            }
        }
        if due.is_empty() {
            return Ok(false);
        }
        self.begin_group()?;
        for (arn, token) in due.drain(..) {
            self.apply(&arn, Event::TimerFired { token }, false)?;
        }
        Ok(true)
    }

    /// Decides one heartbeat or submission (in the open group); the answer goes out after
    /// the commit.
    fn heartbeat(&self, b: HeartbeatRequest) -> Result<HeartbeatAck, EngineError> {
        let (monitored, submitted) = lock(&self.inner.rt)
            .live
            .get(&b.execution_arn)
            .map(|l| {
                (
                    l.exec.task_heartbeat_monitored(b.token),
                    l.exec.task_submitted(b.token),
                )
            })
            .unwrap_or((None, false));
        if let (Some(output), Some(_)) = (b.submitted, monitored) {
            // A repeated submission (the handler ran again before the first was committed
            // and replayed) changes nothing.
            if !submitted {
                self.apply(
                    &b.execution_arn,
                    Event::TaskSubmitted {
                        token: b.token,
                        output,
                    },
                    false,
                )?;
            }
            return Ok((b.reply, Ok(())));
        }
        let answer = match monitored {
            None => Err(TaskError::new(
                TASK_TIMED_OUT,
                format!(
                    "task {} of execution {} is no longer running (it timed out or the execution ended)",
                    b.token, b.execution_arn
                ),
            )),
            // No HeartbeatSeconds: nothing to restart, nothing to log.
            Some(false) => Ok(()),
            Some(true) => {
                self.apply(
                    &b.execution_arn,
                    Event::TaskHeartbeat { token: b.token },
                    false,
                )?;
                Ok(())
            }
        };
        Ok((b.reply, answer))
    }

    fn task_done(
        &self,
        joined: Result<(String, u64, bool, Result<Value, TaskError>), tokio::task::JoinError>,
    ) -> Result<(), EngineError> {
        match joined {
            Ok((arn, token, false, Ok(output))) => {
                self.apply(&arn, Event::TaskSucceeded { token, output }, false)
            }
            Ok((arn, token, true, Ok(output))) => {
                self.apply(&arn, Event::TaskResponded { token, output }, false)
            }
            Ok((arn, token, _, Err(e))) => self.apply(
                &arn,
                Event::TaskFailed {
                    token,
                    error: e.error,
                    cause: Some(e.cause),
                },
                false,
            ),
            Err(join_error) => {
                // Only the wrapper task itself can fail here (runtime shutdown).
                tracing::error!(%join_error, "task dispatch was cancelled");
                Ok(())
            }
        }
    }

    /// Whether task `token` of execution `arn` still waits for its result (a callback front end
    /// answers `TaskTimedOut` to a result for a task that is over).
    pub fn task_pending(&self, arn: &str, token: u64) -> bool {
        lock(&self.inner.rt)
            .live
            .get(arn)
            .is_some_and(|l| l.exec.task_heartbeat_monitored(token).is_some())
    }

    /// DescribeExecution.
    pub fn describe(&self, arn: &str) -> Result<ExecutionSummary, EngineError> {
        let key = arn.to_owned();
        let row = self
            .inner
            .store
            .call(move |store| store.execution(&key))?
            .ok_or_else(|| EngineError::NoExecution(arn.to_owned()))?;
        Ok(summary(row))
    }

    /// ListExecutions (oldest first), optionally only those with `status`.
    pub fn list_executions(
        &self,
        status: Option<Status>,
    ) -> Result<Vec<ExecutionSummary>, EngineError> {
        let rows = self
            .inner
            .store
            .call(move |store| store.executions(status.map(Status::as_str)))?;
        Ok(rows.into_iter().map(summary).collect())
    }

    /// GetExecutionHistory (all events, oldest first), rebuilt by replaying the execution's
    /// input log through the deterministic decider: the log is the record, history is a view
    /// of it (storing both would write every state's input and output twice per step).
    pub fn history(&self, arn: &str) -> Result<Vec<HistoryEvent>, EngineError> {
        let arn = arn.to_owned();
        self.inner.store.call(move |store| {
            let row = store
                .execution(&arn)?
                .ok_or_else(|| EngineError::NoExecution(arn.clone()))?;
            Ok(replay(store, &row, true)?.history)
        })
    }

    /// The definition text an execution runs (DescribeStateMachineForExecution): the one it
    /// started with, whatever its state machine became since.
    pub fn execution_definition(&self, arn: &str) -> Result<String, EngineError> {
        let arn = arn.to_owned();
        self.inner.store.call(move |store| {
            if !store.execution_exists(&arn)? {
                return Err(EngineError::NoExecution(arn));
            }
            store.definition_of(&arn)
        })
    }

    /// Every history event as it is committed, for live displays. Slow receivers may lag
    /// (tokio broadcast semantics); [`Engine::history`] has the full history.
    pub fn subscribe(&self) -> broadcast::Receiver<Progress> {
        self.inner.progress.subscribe()
    }
}

/// Rebuilds every `RUNNING` execution (before the store moves to its thread): the decider
/// state, the tasks to dispatch again and the timers to re-arm.
fn resume(store: &Store, rt: &mut Runtime, clock: &dyn Clock) -> Result<(), EngineError> {
    let running = store.executions(Some("RUNNING"))?;
    // A virtual clock restarts at its configured time: move it to the latest persisted
    // instant so resumed history never goes back in time (a no-op on a real clock).
    if let Some(latest) = store.latest_time()? {
        clock.advance_to(latest);
    }
    for row in running {
        let replayed = match replay(store, &row, false) {
            Ok(r) => r,
            Err(error) => {
                // One unloadable execution (e.g. validation got stricter since it started)
                // must not keep the engine from opening: it stays RUNNING, untouched.
                tracing::error!(execution = %row.arn, %error, "cannot resume execution");
                continue;
            }
        };
        for command in replayed.pending {
            match command {
                Command::StartTimer { token, fire_at } => rt.arm(&row.arn, token, fire_at),
                task => rt.dispatch.push_back((row.arn.clone(), task)),
            }
        }
        rt.live.insert(
            row.arn.clone(),
            Live {
                def: Arc::new(replayed.def),
                exec: replayed.exec,
                seq: replayed.seq,
            },
        );
    }
    Ok(())
}

/// An execution rebuilt from its start and its input log.
struct Replayed {
    def: Definition,
    exec: Execution,
    /// Every history event so far (empty unless asked to record).
    history: Vec<HistoryEvent>,
    /// What the execution waits on: the tasks to dispatch (again) and the timers to arm,
    /// from the commands that scheduled them.
    pending: Vec<Command>,
    /// Number of logged input events.
    seq: i64,
}

/// Rebuilds an execution's decider state (and, with `record`, its history) by replaying its
/// input log: the one implementation of "what happened", used to resume after a crash and to
/// answer GetExecutionHistory. The log is the only record: pending tasks and timers are the
/// commands of the replayed steps that the execution still waits on.
fn replay(store: &Store, row: &store::ExecutionRow, record: bool) -> Result<Replayed, EngineError> {
    let text = store.definition_of(&row.arn)?;
    let def = Definition::parse(&text).map_err(|source| EngineError::Definition {
        name: row.state_machine.clone(),
        source,
    })?;
    let info = execution_info(&row.state_machine, &row.name);
    let options = Options {
        record_history: record,
        ..Options::default()
    };
    let (mut exec, step) = Execution::start(
        &def,
        info,
        row.input.clone(),
        row.seed,
        store::from_nanos(row.start_nanos),
        options,
    );
    let mut history = step.history;
    // The latest command per token; `waiting_tokens` below says which still matter.
    let mut commands: BTreeMap<u64, Command> = BTreeMap::new();
    let mut collect = |produced: Vec<Command>| {
        for command in produced {
            match &command {
                Command::ScheduleTask { token, .. } | Command::StartTimer { token, .. } => {
                    commands.insert(*token, command);
                }
                Command::CancelTimer { .. } | Command::Complete { .. } => {}
            }
        }
    };
    collect(step.commands);
    let inputs = store.inputs(&row.arn)?;
    let seq = inputs.len() as i64;
    for (now, event) in inputs {
        // Only events that changed the state were logged, so each one applies again.
        if let Ok(mut step) = exec.handle(&def, event, now) {
            history.append(&mut step.history);
            collect(step.commands);
        }
    }
    let waiting = exec.waiting_tokens();
    let pending = commands
        .into_iter()
        .filter(|(token, _)| waiting.contains(token))
        .map(|(_, command)| command)
        .collect();
    Ok(Replayed {
        def,
        exec,
        history,
        pending,
        seq,
    })
}

fn summary(row: store::ExecutionRow) -> ExecutionSummary {
    ExecutionSummary {
        execution_arn: row.arn,
        name: row.name,
        state_machine: row.state_machine,
        status: Status::parse(&row.status).unwrap_or(Status::Failed),
        input: row.input,
        output: row.output,
        error: row.error,
        cause: row.cause,
        start_date: store::from_nanos(row.start_nanos),
        stop_date: row.stop_nanos.map(store::from_nanos),
        redrive_count: row.redrive_count,
        redrive_date: row.redrive_nanos.map(store::from_nanos),
    }
}
