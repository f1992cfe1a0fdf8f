//! The interpreter: a pure, deterministic *decider* (Temporal style).
//!
//! An [`Execution`] is serialisable state. [`Execution::start`] and [`Execution::handle`] take
//! an [`Event`] (task result, timer fired, abort) plus "now", and return a [`Step`]: the history
//! events recorded and the [`Command`]s for the runtime (schedule a task, start a timer, the
//! execution completed). Everything that is pure ASL — Pass, Choice, Succeed, Fail, path and
//! expression processing, even a 10,000-item inline Map of Pass states — runs synchronously
//! inside one step; only Task and Wait states (and Retry delays) wait for the runtime.
//!
//! # Transitions
//!
//! Each thread (the top level, one Map iteration, one Parallel branch) is in one `Phase`. An
//! event goes to the thread that waits on its token; `(sync)` rows run inside the same step.
//!
//! ```text
//! phase                 event                               leads to                     file
//! --------------------  ----------------------------------  ---------------------------  -----------
//! Enter                 (sync) *StateEntered recorded       Run                          thread.rs
//! Run                   (sync) Pass, Succeed                Enter next | Done(Ok)        pass.rs
//! Run                   (sync) Fail                         Retry/Catch, else Done(Err)  pass.rs
//! Run                   (sync) Choice                       Enter chosen                 choice.rs
//! Run                   (sync) Wait                         Sleep(wait)                  wait.rs
//! Run                   (sync) Task                         Task                         task.rs
//! Run                   (sync) Map, Parallel                Children                     children.rs
//! Task                  TaskSucceeded, TaskResponded        Enter next | Done(Ok)        task.rs
//! Task                  TaskFailed                          Retry/Catch                  task.rs
//! Task                  TimerFired(timeout | heartbeat)     Retry/Catch (States.Timeout) task.rs
//! Task                  TaskHeartbeat                       Task (heartbeat timer anew)  task.rs
//! Task                  TaskSubmitted (callback)            Task (waits for the callback) task.rs
//! Sleep(wait)           TimerFired                          Enter next | Done(Ok)        wait.rs
//! Sleep(retry)          TimerFired                          Run (the same state again)   retry.rs
//! Children              any event for a child's token       Children | Enter next | Done children.rs
//! (any failure)         Retry matches, attempts left        Sleep(retry)                 retry.rs
//! (any failure)         Catch matches                       Enter catcher's Next         retry.rs
//! (any failure)         neither                             Done(Err)                    retry.rs
//! (execution)           TimerFired(execution timeout)       TIMED_OUT                    mod.rs
//! (execution)           Abort                               ABORTED                      mod.rs
//! Task, Sleep           an event of another kind for the    DecideError::UnexpectedEvent mod.rs
//!                       token it waits on
//! (none)                an event for no waited token        DecideError::UnknownToken    mod.rs
//! ```
//!
//! A root thread in `Done` ends the execution (SUCCEEDED or FAILED); a limit breached on the
//! way fails the state or the execution (see `limits.rs`).
//!
//! # Files
//!
//! - `mod.rs`: the public API ([`Execution`], [`Event`], [`Command`], [`Step`], the errors)
//!   and the shared vocabulary (`Thread`, `Phase`, `Failure`, `Produced`, the `Run` working
//!   set of one step).
//! - `thread.rs`: one step's bookkeeping (event ids, tokens, deadlines, the context object)
//!   and the loop that moves a thread through its states and delivers events to it.
//! - `pass.rs`, `choice.rs`, `wait.rs`, `task.rs`, `children.rs` (Map and Parallel): one
//!   state kind each: what running it does and the events it handles.
//! - `retry.rs`: Retry and Catch, for every state kind that has them.
//! - `dataflow.rs`: InputPath, Parameters, ResultSelector, ResultPath, OutputPath, and
//!   JSONata Arguments/Output/Assign.
//! - `limits.rs`: payload, variable, history and time limits.
//!
//! Map iterations and Parallel branches are child threads inside their state. Pure children run
//! one after another (this is also the order AWS records for them); children that wait run
//! concurrently up to MaxConcurrency.
//!
//! History ids follow AWS: `previousEventId` is the event this one follows within its thread
//! (not simply the previous id); see the rules next to each event kind, reverse-read from
//! executions recorded on AWS (the conformance corpus).
//!
//! Callbacks (`.waitForTaskToken`): the task's context has `Task.Token` ([`task_token`]);
//! the runtime reports the integration's answer as [`Event::TaskSubmitted`] and the callback
//! as the task's result. Not supported (runtime error naming the state): distributed Map
//! (ItemReader/ResultWriter) and `.sync` integrations.

mod children;
mod choice;
mod dataflow;
mod limits;
mod pass;
mod retry;
mod task;
mod thread;
mod wait;

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{self, StatesError};
use crate::history::{self, EventType, HistoryEvent};
use crate::jsonpath::SplitMix64;
use crate::model::{Definition, State, StateMachine};

pub use limits::{
    MAX_ASSIGN_BYTES, MAX_EXECUTION_DURATION, MAX_HISTORY_EVENTS, MAX_PAYLOAD_BYTES,
    MAX_VARIABLE_BYTES, MAX_VARIABLES_TOTAL_BYTES,
};

pub use task::{is_callback, parse_task_token, task_token};

use children::Children;
use limits::execution_cap;
use task::LambdaKind;

/// Identity of one execution, as the context object (`$$.Execution`, `$$.StateMachine`) shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ExecutionInfo {
    /// `$$.Execution.Id`: the execution's ARN.
    pub execution_arn: String,
    /// `$$.Execution.Name`: the name given at StartExecution (or generated).
    pub execution_name: String,
    /// `$$.StateMachine.Id`: the state machine's ARN.
    pub state_machine_arn: String,
    /// `$$.StateMachine.Name`.
    pub state_machine_name: String,
    /// `$$.Execution.RoleArn`: the IAM role the execution runs as.
    pub role_arn: String,
}

impl ExecutionInfo {
    /// Local ARNs in the AWS format, for region `local` and account `000000000000`.
    pub fn local(state_machine: &str, execution: &str) -> Self {
        ExecutionInfo {
            execution_arn: format!(
                "arn:aws:states:local:000000000000:execution:{state_machine}:{execution}"
            ),
            execution_name: execution.to_owned(),
            state_machine_arn: format!(
                "arn:aws:states:local:000000000000:stateMachine:{state_machine}"
            ),
            state_machine_name: state_machine.to_owned(),
            role_arn: "arn:aws:iam::000000000000:role/fleetprep-local".to_owned(),
        }
    }
}

/// Execution status as AWS names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// `RUNNING`: started and not yet ended.
    Running,
    /// `SUCCEEDED`: ended in a Succeed state or an `End` state; has an output.
    Succeeded,
    /// `FAILED`: ended by an uncaught error or a Fail state.
    Failed,
    /// `TIMED_OUT`: ran longer than the definition's `TimeoutSeconds`.
    TimedOut,
    /// `ABORTED`: stopped by StopExecution.
    Aborted,
}

impl Status {
    /// `RUNNING`, `SUCCEEDED`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "RUNNING",
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
            Status::TimedOut => "TIMED_OUT",
            Status::Aborted => "ABORTED",
        }
    }

    /// Parses `as_str` output.
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "RUNNING" => Status::Running,
            "SUCCEEDED" => Status::Succeeded,
            "FAILED" => Status::Failed,
            "TIMED_OUT" => Status::TimedOut,
            "ABORTED" => Status::Aborted,
            _ => return None,
        })
    }
}

/// Something that happened outside the decider.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Event {
    /// The task scheduled with `token` returned `output`.
    TaskSucceeded {
        /// The token of the `ScheduleTask` command answered.
        token: u64,
        /// The task's result.
        output: Value,
    },
    /// The task scheduled with `token` returned the integration's whole service response,
    /// which becomes the state's result as is: for `arn:aws:states:::lambda:invoke` the
    /// Invoke API response (`StatusCode`, `Payload`, …) instead of a payload the decider
    /// wraps in that envelope. The same as [`Event::TaskSucceeded`] for every other resource.
    /// Mocked responses (`fleetprep states exec --mock-config`) give the whole response, as
    /// Step Functions Local's mock files do.
    TaskResponded {
        /// The token of the `ScheduleTask` command answered.
        token: u64,
        /// The whole service response.
        output: Value,
    },
    /// The task scheduled with `token` failed.
    TaskFailed {
        /// The token of the `ScheduleTask` command answered.
        token: u64,
        /// The error name Retry/Catch match on.
        error: String,
        /// Human-readable explanation of the error.
        cause: Option<String>,
    },
    /// The callback task (`.waitForTaskToken`) scheduled with `token` handed its task token
    /// to the integration, which answered `output` (the `TaskSubmitted` event); the task now
    /// waits for its callback (SendTaskSuccess/SendTaskFailure), which comes as
    /// [`Event::TaskSucceeded`]/[`Event::TaskResponded`]/[`Event::TaskFailed`].
    TaskSubmitted {
        /// The token of the `ScheduleTask` command answered.
        token: u64,
        /// The integration's response, recorded in `TaskSubmitted`.
        output: Value,
    },
    /// The timer started with `token` fired.
    TimerFired {
        /// The token of the `StartTimer` command.
        token: u64,
    },
    /// The task scheduled with `token` reported progress (SendTaskHeartbeat): its
    /// HeartbeatSeconds clock starts again. Records no history event (as on AWS).
    TaskHeartbeat {
        /// The token of the running task's `ScheduleTask` command.
        token: u64,
    },
    /// Run the ended (FAILED, TIMED_OUT or ABORTED) execution again from its unsuccessful
    /// states (RedriveExecution; see [`Execution::redrive`]).
    Redrive,
    /// Stop the execution (StopExecution).
    Abort {
        /// StopExecution's `error`, recorded in `ExecutionAborted`.
        error: Option<String>,
        /// StopExecution's `cause`, recorded in `ExecutionAborted`.
        cause: Option<String>,
    },
}

impl Event {
    /// The token the event is for (`None` for Abort).
    fn token(&self) -> Option<u64> {
        match self {
            Event::TaskSucceeded { token, .. }
            | Event::TaskResponded { token, .. }
            | Event::TaskFailed { token, .. }
            | Event::TaskSubmitted { token, .. }
            | Event::TimerFired { token }
            | Event::TaskHeartbeat { token } => Some(*token),
            Event::Abort { .. } | Event::Redrive => None,
        }
    }

    /// The variant's name, for errors.
    fn kind(&self) -> &'static str {
        match self {
            Event::TaskSucceeded { .. } => "TaskSucceeded",
            Event::TaskResponded { .. } => "TaskResponded",
            Event::TaskFailed { .. } => "TaskFailed",
            Event::TaskSubmitted { .. } => "TaskSubmitted",
            Event::TimerFired { .. } => "TimerFired",
            Event::TaskHeartbeat { .. } => "TaskHeartbeat",
            Event::Abort { .. } => "Abort",
            Event::Redrive => "Redrive",
        }
    }
}

/// What the runtime must do after a step.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Command {
    /// Invoke the handler for `target` with `input`; answer with `TaskSucceeded`/`TaskFailed`.
    ScheduleTask {
        /// Identifies this task attempt; the answering event carries it back. Unique
        /// within the execution.
        token: u64,
        /// The state that runs the task.
        state: String,
        /// The state's `Resource` as written.
        resource: String,
        /// What to dispatch on: the Lambda function (ARN or name) for Lambda resources,
        /// otherwise the resource ARN.
        target: String,
        /// The task's effective input (after InputPath and Parameters/Arguments).
        input: Value,
        /// The resolved `TimeoutSeconds`, for the runtime's information; the decider arms
        /// the timeout timer itself.
        timeout_seconds: Option<u64>,
        /// The resolved `HeartbeatSeconds`, for the runtime's information; the decider
        /// arms the heartbeat timer itself.
        heartbeat_seconds: Option<u64>,
    },
    /// Fire `TimerFired{token}` at `fire_at`.
    StartTimer {
        /// Identifies the timer; `TimerFired` carries it back.
        token: u64,
        /// The instant (on the runtime's clock) the timer is due.
        fire_at: SystemTime,
    },
    /// Forget the timer started with `token` (a task finished before its timeout, or a
    /// heartbeat replaced its heartbeat timer).
    CancelTimer {
        /// The token of the `StartTimer` command to cancel.
        token: u64,
    },
    /// The execution finished.
    Complete {
        /// The final status (never `Running`).
        status: Status,
        /// The execution output, when it SUCCEEDED.
        output: Option<Value>,
        /// The error name, when it FAILED or was ABORTED.
        error: Option<String>,
        /// The cause of `error`, when one was given.
        cause: Option<String>,
    },
}

/// The result of one decider step.
#[derive(Debug, Default)]
pub struct Step {
    /// The history events the step recorded, in order (empty when history is off).
    pub history: Vec<HistoryEvent>,
    /// What the runtime must do now, in order.
    pub commands: Vec<Command>,
}

/// The decider's state for one execution. Serialise it to persist; it holds no definition
/// (pass the same [`Definition`] to every call).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Execution {
    /// The execution's identity (ARNs, names, role).
    pub info: ExecutionInfo,
    /// Where the execution stands.
    pub status: Status,
    /// The output, once SUCCEEDED.
    pub output: Option<Value>,
    /// The failure of a FAILED or ABORTED execution, as DescribeExecution reports it. `None`
    /// for TIMED_OUT: AWS reports no error or cause there (States.Timeout is only in the
    /// `ExecutionTimedOut` history event).
    pub error: Option<String>,
    /// The cause of `error`, when one was given.
    pub cause: Option<String>,
    input: Value,
    start_time: String,
    root: Thread,
    next_event_id: i64,
    next_token: u64,
    entropy: u64,
    timeout_token: Option<u64>,
    /// How often the execution was redriven (`$$.Execution.RedriveCount`).
    #[serde(default)]
    redrive_count: u64,
    /// When false, history events are counted (ids advance) but not built: the fast path
    /// for benchmarks and callers that never read history.
    record_history: bool,
    history_limit: i64,
}

/// Per-execution switches.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Options {
    /// Build history events (true for every real run; false only to measure the decider).
    pub record_history: bool,
    /// Fail the execution when its history would exceed this many events (AWS: 25,000).
    pub history_limit: i64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            record_history: true,
            history_limit: MAX_HISTORY_EVENTS,
        }
    }
}

/// A sequence of states being run: the top level, one Map iteration or one Parallel branch.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Thread {
    // Invariant: path from the definition's top-level machine to this thread's machine:
    // (state index, branch index) per nesting level (branch 0 for a Map processor).
    machine: Vec<(u32, u32)>,
    state: u32,
    /// Id of the event this thread's next event follows.
    cursor: i64,
    entered_id: i64,
    entered_prev: i64,
    entered_time: String,
    vars: Map<String, Value>,
    /// `$$.Map.Item` for a Map iteration.
    map_item: Option<Value>,
    /// The current state's raw input.
    input: Value,
    /// Attempts used per retrier of the current state.
    attempts: Vec<u64>,
    phase: Phase,
    /// The children of the Map or Parallel state that failed this thread: the failed and
    /// aborted iterations or branches where they stopped, the successful ones' results and
    /// the items not started. What a redrive resumes; cleared when the thread moves on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unfinished: Option<Box<Children>>,
    /// JSON text of `input` when the previous state's Exited event already rendered it
    /// (saves serialising every payload twice); never persisted.
    #[serde(skip)]
    input_text: Option<String>,
}

impl Thread {
    fn new(
        machine: Vec<(u32, u32)>,
        m: &StateMachine,
        cursor: i64,
        vars: Map<String, Value>,
        map_item: Option<Value>,
        input: Value,
    ) -> Thread {
        Thread {
            machine,
            state: m.position(&m.start_at).unwrap_or(0) as u32,
            cursor,
            entered_id: 0,
            entered_prev: 0,
            entered_time: String::new(),
            vars,
            map_item,
            input,
            attempts: Vec::new(),
            phase: Phase::Enter,
            unfinished: None,
            input_text: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
enum Phase {
    /// About to enter the current state with `input`.
    Enter,
    /// Entered; about to run (again, after a retry delay) the state's work.
    Run,
    Task {
        token: u64,
        timeout_token: Option<u64>,
        lambda: Option<LambdaKind>,
        /// HeartbeatSeconds and the token of the timer armed at the last heartbeat (or at
        /// the start of the task).
        #[serde(default)]
        heartbeat: Option<(u64, u64)>,
        /// A callback task whose integration answered (`TaskSubmitted`): it only waits for
        /// its callback now, so a runtime that dispatches it again must not call the
        /// integration again.
        #[serde(default)]
        submitted: bool,
    },
    Sleep {
        token: u64,
        retry: bool,
    },
    Children(Box<Children>),
    Done(Outcome),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
enum Outcome {
    Ok(Value),
    Err(Failure),
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
struct Failure {
    error: String,
    cause: Option<String>,
    /// A missed heartbeat raised this `States.Timeout`: `States.HeartbeatTimeout` in
    /// ErrorEquals matches it too (that name is only matched on, never raised; see
    /// [`failure_matches`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    heartbeat: bool,
}

impl Failure {
    /// `e` raised by `st`'s work, its cause naming the state and its Entered event, as AWS
    /// words it.
    fn in_state(e: StatesError, st: &State, th: &Thread) -> Failure {
        Failure::from(e.in_state(&st.name, th.entered_id as u64))
    }
}

impl From<StatesError> for Failure {
    fn from(e: StatesError) -> Self {
        Failure {
            error: e.error,
            cause: Some(e.cause),
            heartbeat: false,
        }
    }
}

/// What the state produced when its work completes.
enum Produced {
    /// Continue to `next` (None = end) with `output`; `assign` already computed.
    Next(Option<String>, Value, Option<Map<String, Value>>),
    Fail(Failure),
}

/// Reasons an event could not be applied.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecideError {
    /// The execution has ended (its status, e.g. `SUCCEEDED`); events are ignored.
    #[error("the execution is not running (status {0})")]
    NotRunning(&'static str),
    /// The token names no pending task or timer (already answered, cancelled, or never issued).
    #[error("no task or timer is waiting for token {0}")]
    UnknownToken(u64),
    /// RedriveExecution's `ExecutionNotRedrivable`, with the reason as DescribeExecution's
    /// `redriveStatusReason` words it.
    #[error("{0}")]
    NotRedrivable(String),
    /// The token is pending, but for another kind of event.
    #[error(transparent)]
    UnexpectedEvent(#[from] UnexpectedEvent),
}

/// An event for a token the execution waits on, but of another kind than that token waits
/// for (a task result for a timer's token, a timer for a task's token): the runtime mixed up
/// its tokens. Nothing was applied; the execution is as before.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "{event} for token {token}, but {waiter} waits on that token for {expected}",
    waiter = match .state {
        Some(s) => format!("state \"{s}\""),
        None => "the execution timeout".to_owned(),
    }
)]
pub struct UnexpectedEvent {
    /// The event's kind, as [`Event`] names it (`TaskSucceeded`, `TimerFired`, ...).
    pub event: &'static str,
    /// The token the event was for.
    pub token: u64,
    /// The state waiting on the token; `None` for the execution's own timeout timer.
    pub state: Option<String>,
    /// The event kinds the token waits for.
    pub expected: &'static str,
}

/// Whether a thread took an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Delivery {
    Applied,
    /// No thread waits on the event's token (stale: a task that finished after its timeout,
    /// an aborted Map iteration).
    NotWaiting,
}

/// What a state's work is evaluated against, lent for one evaluation by
/// `Run::with_state_data`: the context object, the step's entropy, the state's raw input (out
/// of its thread for the time being) and whether the state speaks JSONata.
struct Work<'w> {
    ctx: &'w Value,
    ent: &'w mut SplitMix64,
    raw: &'w mut Value,
    jsonata: bool,
}

/// Runtime working set for one step.
struct Run<'a> {
    def: &'a Definition,
    info: &'a ExecutionInfo,
    /// The execution's input, lent to the context object (`$$.Execution.Input`) while the
    /// step runs and given back at its end (see [`Run::context`]).
    exec_input: &'a mut Value,
    start_time: &'a str,
    now: SystemTime,
    now_text: String,
    next_event_id: &'a mut i64,
    next_token: &'a mut u64,
    /// The execution-level timeout timer (TimeoutSeconds or the 1-year cap), if armed.
    exec_timer: &'a mut Option<u64>,
    /// `$$.Execution.RedriveCount`.
    redrive_count: u64,
    /// Start time + [`MAX_EXECUTION_DURATION`].
    cap: SystemTime,
    entropy: SplitMix64,
    record: bool,
    limit: i64,
    step: Step,
    ctx_cache: Option<Value>,
    /// The input is in the context object, not in `exec_input`.
    input_lent: bool,
}

impl Execution {
    /// Starts an execution: records `ExecutionStarted` and runs until every thread waits.
    pub fn start(
        def: &Definition,
        info: ExecutionInfo,
        input: Value,
        seed: u64,
        now: SystemTime,
        options: Options,
    ) -> (Execution, Step) {
        let now_text = history::format_timestamp(now);
        let root = Thread::new(Vec::new(), &def.machine, 0, Map::new(), None, input.clone());
        let mut ex = Execution {
            info,
            status: Status::Running,
            output: None,
            error: None,
            cause: None,
            input,
            start_time: now_text,
            root,
            next_event_id: 1,
            next_token: 1,
            entropy: seed,
            timeout_token: None,
            redrive_count: 0,
            record_history: options.record_history,
            history_limit: options.history_limit,
        };
        let mut step = Step::default();
        ex.with_run(
            def,
            now,
            |run, root| {
                let mut e = run.event(EventType::ExecutionStarted, 0);
                if let Some(e) = e.as_mut() {
                    e.execution_started_event_details =
                        Some(Box::new(history::ExecutionStartedEventDetails {
                            input: Some(json_text(run.execution_input())),
                            input_details: Some(history::DataDetails::default()),
                            role_arn: Some(run.info.role_arn.clone()),
                        }));
                }
                run.push(e);
                let _ = root;
            },
            &mut step,
        );
        ex.arm_execution_timeout(def, now, &mut step);
        let mut more = ex.advance(def, now);
        step.history.append(&mut more.history);
        step.commands.append(&mut more.commands);
        (ex, step)
    }

    /// Applies one event and runs until every thread waits again.
    pub fn handle(
        &mut self,
        def: &Definition,
        event: Event,
        now: SystemTime,
    ) -> Result<Step, DecideError> {
        let event = match event {
            Event::Redrive => return self.redrive(def, now),
            other => other,
        };
        if self.status != Status::Running {
            return Err(DecideError::NotRunning(self.status.as_str()));
        }
        let mut step = Step::default();
        match event {
            Event::Abort { error, cause } => {
                self.end_execution(
                    def,
                    now,
                    EventType::ExecutionAborted,
                    |e| &mut e.execution_aborted_event_details,
                    Status::Aborted,
                    error,
                    cause,
                    &mut step,
                );
                return Ok(step);
            }
            Event::TimerFired { token } if Some(token) == self.timeout_token => {
                // Shape measured on AWS (floci-io/floci#2733): the ExecutionTimedOut event has
                // previousEventId 0 (it follows no event of the execution's threads) and
                // carries only the error States.Timeout; DescribeExecution of the TIMED_OUT
                // execution has no error and no cause, so the summary gets neither.
                let within_cap = def
                    .timeout_seconds
                    .is_some_and(|t| Duration::from_secs(t) <= MAX_EXECUTION_DURATION);
                // The 1-year cap was not measured; AWS documents only that such an execution
                // fails with States.Timeout. The event keeps a cause there so a user can tell
                // the cap from the definition's own TimeoutSeconds in the history.
                let cause = (!within_cap).then(|| {
                    "The execution reached the maximum execution time of a Standard workflow (1 year)."
                        .to_owned()
                });
                self.with_run(
                    def,
                    now,
                    |run, _root| {
                        let mut e = run.event(EventType::ExecutionTimedOut, 0);
                        if let Some(e) = e.as_mut() {
                            e.execution_timed_out_event_details =
                                Some(Box::new(history::ErrorCauseDetails {
                                    error: Some(error::TIMEOUT.to_owned()),
                                    cause: cause.clone(),
                                }));
                        }
                        run.push(e);
                    },
                    &mut step,
                );
                self.finish(Status::TimedOut, None, None, None, &mut step);
                return Ok(step);
            }
            // The execution timeout's token, in an event that is not its timer.
            other if self.timeout_token.is_some() && other.token() == self.timeout_token => {
                return Err(DecideError::UnexpectedEvent(UnexpectedEvent {
                    event: other.kind(),
                    token: self.timeout_token.unwrap_or_default(),
                    state: None,
                    expected: "TimerFired",
                }));
            }
            mut other => {
                let delivery = self.with_run(
                    def,
                    now,
                    |run, root| run.deliver(root, &mut other),
                    &mut step,
                );
                match delivery? {
                    Delivery::Applied => {}
                    Delivery::NotWaiting => {
                        return Err(DecideError::UnknownToken(other.token().unwrap_or(0)));
                    }
                }
            }
        }
        let mut more = self.advance(def, now);
        step.history.append(&mut more.history);
        step.commands.append(&mut more.commands);
        Ok(step)
    }

    /// RedriveExecution (developer guide, "Restarting state machine executions with redrive
    /// in Step Functions"): an execution that is FAILED, TIMED_OUT or ABORTED runs again from
    /// its unsuccessful states with the same input, definition and ARN. It records
    /// `ExecutionRedriven` (with the new `redriveCount`); every thread that stopped resumes
    /// where it stopped: a failed or interrupted state runs again with its retry counts reset
    /// to 0 (a Task is scheduled again with fresh timeouts; a Fail state is entered again and
    /// fails again), a Map or Parallel resumes only its failed and aborted iterations and
    /// branches (after a `States.DataLimitExceeded` it runs whole again), and the states that
    /// succeeded are not run again. The execution's `TimeoutSeconds` starts again.
    ///
    /// Refused (`NotRedrivable`, with the documented reason) while RUNNING, once SUCCEEDED, at
    /// 24,999 history events ("Make sure your workflow execution contains less than 24,999
    /// events") and after a year from the start (the maximum open time). The 14-day
    /// redrivable period counts from the stop date, which the runtime keeps.
    pub fn redrive(&mut self, def: &Definition, now: SystemTime) -> Result<Step, DecideError> {
        let refuse = |reason: &str| Err(DecideError::NotRedrivable(reason.to_owned()));
        match self.status {
            Status::Running => return refuse("Execution is RUNNING and cannot be redriven."),
            Status::Succeeded => return refuse("Execution is SUCCEEDED and cannot be redriven."),
            Status::Failed | Status::TimedOut | Status::Aborted => {}
        }
        if self.next_event_id > MAX_REDRIVE_EVENTS {
            return refuse("Execution history event limit exceeded.");
        }
        if now >= execution_cap(&self.start_time, now) {
            return refuse("Execution has exceeded the max execution time.");
        }
        self.status = Status::Running;
        self.output = None;
        self.error = None;
        self.cause = None;
        self.redrive_count += 1;
        let count = self.redrive_count;
        let mut step = Step::default();
        self.with_run(
            def,
            now,
            |run, root| {
                let last = run.last_id();
                let mut e = run.event(EventType::ExecutionRedriven, last);
                if let Some(e) = e.as_mut() {
                    e.execution_redriven_event_details =
                        Some(Box::new(history::ExecutionRedrivenEventDetails {
                            redrive_count: count,
                        }));
                }
                run.push(e);
                resume_thread(run.def, root);
            },
            &mut step,
        );
        // The one-year cap timer (if one was armed) was forgotten with the execution; a
        // deadline past it arms it again.
        self.timeout_token = None;
        self.arm_execution_timeout(def, now, &mut step);
        let mut more = self.advance(def, now);
        step.history.append(&mut more.history);
        step.commands.append(&mut more.commands);
        Ok(step)
    }

    /// Arms the definition's `TimeoutSeconds` (at most a Standard workflow's year) from now.
    fn arm_execution_timeout(&mut self, def: &Definition, now: SystemTime, step: &mut Step) {
        if let Some(t) = def.timeout_seconds {
            let token = self.next_token;
            self.next_token += 1;
            self.timeout_token = Some(token);
            let limit = Duration::from_secs(t).min(MAX_EXECUTION_DURATION);
            step.commands.push(Command::StartTimer {
                token,
                fire_at: now + limit,
            });
        }
    }

    /// How often the execution was redriven.
    pub fn redrive_count(&self) -> u64 {
        self.redrive_count
    }

    /// The id the next history event will get (= events so far + 1).
    pub fn next_event_id(&self) -> i64 {
        self.next_event_id
    }

    /// The tokens this execution waits on: running tasks, their timeouts, Wait and retry
    /// timers, the execution timeout. A runtime that rebuilds its pending work by replay keeps
    /// exactly the commands whose token is in this set (a task whose timeout already fired is
    /// not waited on any more, so it is not dispatched again).
    pub fn waiting_tokens(&self) -> std::collections::BTreeSet<u64> {
        fn walk(th: &Thread, out: &mut std::collections::BTreeSet<u64>) {
            match &th.phase {
                Phase::Task {
                    token,
                    timeout_token,
                    heartbeat,
                    ..
                } => {
                    out.insert(*token);
                    out.extend(*timeout_token);
                    out.extend(heartbeat.map(|(_, timer)| timer));
                }
                Phase::Sleep { token, .. } => {
                    out.insert(*token);
                }
                Phase::Children(ch) => {
                    for (_, child) in &ch.running {
                        walk(child, out);
                    }
                }
                Phase::Enter | Phase::Run | Phase::Done(_) => {}
            }
        }
        let mut out = std::collections::BTreeSet::new();
        if self.status != Status::Running {
            return out;
        }
        out.extend(self.timeout_token);
        walk(&self.root, &mut out);
        out
    }

    /// Whether the task scheduled with `token` still runs (`Some`) and has a HeartbeatSeconds
    /// clock that a heartbeat would restart (`Some(true)`). A runtime answers
    /// SendTaskHeartbeat with it: `None` is AWS's `TaskTimedOut` (the task is over), and a
    /// heartbeat for `Some(false)` changes nothing, so it need not be logged.
    pub fn task_heartbeat_monitored(&self, token: u64) -> Option<bool> {
        fn walk(th: &Thread, token: u64) -> Option<bool> {
            match &th.phase {
                Phase::Task {
                    token: t,
                    heartbeat,
                    ..
                } if *t == token => Some(heartbeat.is_some()),
                Phase::Children(ch) => ch.running.iter().find_map(|(_, c)| walk(c, token)),
                _ => None,
            }
        }
        if self.status != Status::Running {
            return None;
        }
        walk(&self.root, token)
    }

    /// Whether the callback task scheduled with `token` still runs and its integration
    /// already answered (`TaskSubmitted`): a runtime dispatching it again after a restart
    /// only waits for its callback then.
    pub fn task_submitted(&self, token: u64) -> bool {
        fn walk(th: &Thread, token: u64) -> Option<bool> {
            match &th.phase {
                Phase::Task {
                    token: t,
                    submitted,
                    ..
                } if *t == token => Some(*submitted),
                Phase::Children(ch) => ch.running.iter().find_map(|(_, c)| walk(c, token)),
                _ => None,
            }
        }
        self.status == Status::Running && walk(&self.root, token).unwrap_or(false)
    }

    /// Switches building history events on or off for the following steps. Decisions never
    /// depend on it (ids advance either way), so a caller that can rebuild history by replay
    /// builds events only while somebody reads them.
    pub fn set_record_history(&mut self, on: bool) {
        self.record_history = on;
    }

    /// Ends the execution from outside its states (abort, execution timeout): one closing
    /// history event carrying the error and cause in the field `details` selects, then the
    /// final status.
    #[allow(clippy::too_many_arguments)]
    fn end_execution(
        &mut self,
        def: &Definition,
        now: SystemTime,
        event_type: EventType,
        details: fn(&mut HistoryEvent) -> &mut Option<Box<history::ErrorCauseDetails>>,
        status: Status,
        error: Option<String>,
        cause: Option<String>,
        step: &mut Step,
    ) {
        self.with_run(
            def,
            now,
            |run, _root| {
                let mut e = run.event(event_type, *run.next_event_id - 1);
                if let Some(e) = e.as_mut() {
                    *details(e) = Some(Box::new(history::ErrorCauseDetails {
                        error: error.clone(),
                        cause: cause.clone(),
                    }));
                }
                run.push(e);
            },
            step,
        );
        self.finish(status, None, error, cause, step);
    }

    fn finish(
        &mut self,
        status: Status,
        output: Option<Value>,
        error: Option<String>,
        cause: Option<String>,
        step: &mut Step,
    ) {
        self.status = status;
        self.output = output.clone();
        self.error = error.clone();
        self.cause = cause.clone();
        step.commands.push(Command::Complete {
            status,
            output,
            error,
            cause,
        });
    }

    /// Runs `f` with this execution's decider state lent out as a [`Run`], appends what it
    /// produced to `out`, and returns `f`'s result.
    fn with_run<R>(
        &mut self,
        def: &Definition,
        now: SystemTime,
        f: impl FnOnce(&mut Run<'_>, &mut Thread) -> R,
        out: &mut Step,
    ) -> R {
        let mut run = Run {
            def,
            info: &self.info,
            exec_input: &mut self.input,
            start_time: &self.start_time,
            now,
            now_text: history::format_timestamp(now),
            next_event_id: &mut self.next_event_id,
            next_token: &mut self.next_token,
            exec_timer: &mut self.timeout_token,
            redrive_count: self.redrive_count,
            cap: execution_cap(&self.start_time, now),
            entropy: SplitMix64(self.entropy),
            record: self.record_history,
            limit: self.history_limit,
            step: Step::default(),
            ctx_cache: None,
            input_lent: false,
        };
        let result = f(&mut run, &mut self.root);
        self.entropy = run.entropy.0;
        run.return_input();
        let mut step = run.step;
        if out.history.is_empty() && out.commands.is_empty() {
            *out = step;
        } else {
            out.history.append(&mut step.history);
            out.commands.append(&mut step.commands);
        }
        result
    }

    fn advance(&mut self, def: &Definition, now: SystemTime) -> Step {
        let mut step = Step::default();
        let done = self.with_run(
            def,
            now,
            |run, root| {
                let mut done = None;
                run.advance(root, &def.machine);
                if let Phase::Done(o) = &root.phase {
                    done = Some(o.clone());
                    let last = root.cursor;
                    match o {
                        Outcome::Ok(v) => {
                            let mut e = run.event(EventType::ExecutionSucceeded, last);
                            if let Some(e) = e.as_mut() {
                                e.execution_succeeded_event_details =
                                    Some(Box::new(history::ExecutionSucceededEventDetails {
                                        output: Some(json_text(v)),
                                        output_details: Some(history::DataDetails::default()),
                                    }));
                            }
                            run.push(e);
                        }
                        Outcome::Err(f) => {
                            let mut e = run.event(EventType::ExecutionFailed, last);
                            if let Some(e) = e.as_mut() {
                                e.execution_failed_event_details =
                                    Some(Box::new(history::ErrorCauseDetails {
                                        error: non_empty(&f.error),
                                        cause: f.cause.clone(),
                                    }));
                            }
                            run.push(e);
                        }
                    }
                } else if *run.next_event_id >= run.limit {
                    // The failure is the limit-th event: drop this step's events beyond it.
                    let keep_below = run.limit;
                    run.step.history.retain(|e| e.id < keep_below);
                    *run.next_event_id = keep_below.max(1);
                    let f = Failure {
                        error: error::RUNTIME.to_owned(),
                        cause: Some(format!(
                            "The execution reached the maximum number of history events ({}).",
                            run.limit
                        )),
                        ..Default::default()
                    };
                    let mut e = run.event(EventType::ExecutionFailed, *run.next_event_id - 1);
                    if let Some(e) = e.as_mut() {
                        e.execution_failed_event_details =
                            Some(Box::new(history::ErrorCauseDetails {
                                error: Some(f.error.clone()),
                                cause: f.cause.clone(),
                            }));
                    }
                    run.push(e);
                    done = Some(Outcome::Err(f));
                }
                done
            },
            &mut step,
        );
        match done {
            Some(Outcome::Ok(v)) => self.finish(Status::Succeeded, Some(v), None, None, &mut step),
            Some(Outcome::Err(f)) => self.finish(
                Status::Failed,
                None,
                non_empty(&f.error),
                f.cause,
                &mut step,
            ),
            None => {}
        }
        step
    }
}

/// The most history events an execution may have to be redriven: the developer guide asks for
/// "less than 24,999 events to accommodate the `ExecutionRedriven` history event and at least
/// one other history event".
const MAX_REDRIVE_EVENTS: i64 = 24_998;

/// Makes a thread that stopped (failed, or interrupted by an abort or a time-out) run its
/// unsuccessful state again on the next advance; see [`Execution::redrive`].
fn resume_thread(def: &Definition, th: &mut Thread) {
    let m = thread::machine_at(def, &th.machine);
    let Some(st) = m.states.get(th.state as usize) else {
        return;
    };
    match std::mem::replace(&mut th.phase, Phase::Run) {
        // Interrupted while its iterations or branches ran: those resume.
        Phase::Children(mut ch) => {
            for (_, child) in ch.running.iter_mut() {
                resume_thread(def, child);
            }
            th.phase = Phase::Children(ch);
        }
        Phase::Done(Outcome::Ok(v)) => th.phase = Phase::Done(Outcome::Ok(v)),
        Phase::Done(Outcome::Err(f)) if f.error != error::DATA_LIMIT_EXCEEDED => {
            if let Some(mut ch) = th.unfinished.take() {
                for (_, child) in ch.running.iter_mut() {
                    resume_thread(def, child);
                }
                th.phase = Phase::Children(ch);
            } else if matches!(st.kind, crate::model::Kind::Fail { .. }) {
                th.phase = Phase::Enter;
            }
        }
        // A failed state's input is still the thread's; it runs again (a Wait waits again,
        // a Task is scheduled again).
        Phase::Done(Outcome::Err(_)) | Phase::Task { .. } | Phase::Sleep { .. } | Phase::Run => {}
        Phase::Enter => th.phase = Phase::Enter,
    }
    th.unfinished = None;
    th.attempts = vec![0; st.retry.len()];
}

/// A Fail state without Error has no error name (AWS reports none, not "").
fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

fn json_text(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A started execution of one Lambda Task with TimeoutSeconds: its definition, the
    /// execution, the task's token and the timeout timer's token, and "now".
    fn task_with_timeout() -> (Definition, Execution, u64, u64, SystemTime) {
        let def = Definition::parse(
            r#"{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"arn:aws:lambda:us-east-1:1:function:f","TimeoutSeconds":5,"End":true}}}"#,
        )
        .unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let (ex, step) = Execution::start(
            &def,
            ExecutionInfo::local("sm", "e"),
            json!({}),
            1,
            now,
            Options::default(),
        );
        let token_of = |task: bool| {
            step.commands.iter().find_map(|c| match c {
                Command::ScheduleTask { token, .. } if task => Some(*token),
                Command::StartTimer { token, .. } if !task => Some(*token),
                _ => None,
            })
        };
        let (task, timeout) = (token_of(true).unwrap(), token_of(false).unwrap());
        (def, ex, task, timeout, now)
    }

    #[test]
    fn waiting_tokens_follow_the_task_and_its_timeout() {
        let (def, mut ex, task, timeout, now) = task_with_timeout();
        assert_eq!(ex.waiting_tokens(), [task, timeout].into_iter().collect());
        // The timeout fires: the task is not waited on any more (its late result is stale).
        ex.handle(&def, Event::TimerFired { token: timeout }, now)
            .unwrap();
        assert!(ex.waiting_tokens().is_empty());
        assert_eq!(ex.status, Status::Failed);
    }

    #[test]
    fn an_event_of_the_wrong_kind_for_a_waited_token_is_refused_unapplied() {
        let (def, mut ex, task, timeout, now) = task_with_timeout();
        let before = ex.next_event_id();
        // A task result for the timeout timer's token.
        let err = ex
            .handle(
                &def,
                Event::TaskSucceeded {
                    token: timeout,
                    output: json!(1),
                },
                now,
            )
            .unwrap_err();
        assert_eq!(
            err,
            DecideError::UnexpectedEvent(UnexpectedEvent {
                event: "TaskSucceeded",
                token: timeout,
                state: Some("T".into()),
                expected: "TimerFired",
            })
        );
        assert_eq!(
            err.to_string(),
            format!(
                "TaskSucceeded for token {timeout}, but state \"T\" waits on that token for TimerFired"
            )
        );
        // A timer for the task's token.
        let err = ex
            .handle(&def, Event::TimerFired { token: task }, now)
            .unwrap_err();
        assert!(
            matches!(&err, DecideError::UnexpectedEvent(e) if e.event == "TimerFired" && e.token == task),
            "{err:?}"
        );
        // Nothing was applied: the task still runs and its result completes the execution.
        assert_eq!(ex.next_event_id(), before);
        assert_eq!(ex.waiting_tokens(), [task, timeout].into_iter().collect());
        // A token nobody waits on stays the (ignorable) UnknownToken.
        assert!(matches!(
            ex.handle(&def, Event::TimerFired { token: 999 }, now),
            Err(DecideError::UnknownToken(999))
        ));
        ex.handle(
            &def,
            Event::TaskSucceeded {
                token: task,
                output: json!(1),
            },
            now,
        )
        .unwrap();
        assert_eq!(ex.status, Status::Succeeded);
        assert_eq!(ex.output, Some(json!(1)));
    }

    /// The one task scheduled by `step`: its token and input.
    fn scheduled(step: &Step) -> (u64, Value) {
        step.commands
            .iter()
            .find_map(|c| match c {
                Command::ScheduleTask { token, input, .. } => Some((*token, input.clone())),
                _ => None,
            })
            .unwrap()
    }

    fn types(history: &[HistoryEvent]) -> Vec<String> {
        history
            .iter()
            .map(|e| format!("{:?}", e.event_type))
            .collect()
    }

    #[test]
    fn a_callback_task_sees_its_token_records_the_submission_and_waits_for_the_callback() {
        // The shape of AWS's recorded `sqs:sendMessage.waitForTaskToken` executions:
        // TaskScheduled, TaskStarted, TaskSubmitted (the integration's answer), then the
        // callback's TaskSucceeded with SendTaskSuccess's output.
        let def = Definition::parse(
            r#"{"StartAt":"Send","States":{"Send":{"Type":"Task",
                "Resource":"arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters":{"QueueUrl":"q","MessageBody":{"TaskToken.$":"$$.Task.Token"}},
                "End":true}}}"#,
        )
        .unwrap();
        let now = SystemTime::UNIX_EPOCH;
        let info = ExecutionInfo::local("sm", "e");
        let arn = info.execution_arn.clone();
        let (mut ex, step) = Execution::start(&def, info, json!({}), 1, now, Options::default());
        let (token, input) = scheduled(&step);
        assert_eq!(
            input["MessageBody"]["TaskToken"],
            json!(task_token(&arn, token))
        );
        assert_eq!(
            parse_task_token(&task_token(&arn, token)),
            Some((arn.clone(), token))
        );
        assert!(!ex.task_submitted(token));
        let submitted = ex
            .handle(
                &def,
                Event::TaskSubmitted {
                    token,
                    output: json!({"MessageId": "m"}),
                },
                now,
            )
            .unwrap();
        assert_eq!(types(&submitted.history), ["TaskSubmitted"]);
        let d = submitted.history[0]
            .task_submitted_event_details
            .as_ref()
            .unwrap();
        assert_eq!(
            (d.resource_type.as_str(), d.resource.as_str()),
            ("sqs", "sendMessage.waitForTaskToken")
        );
        assert_eq!(d.output.as_deref(), Some(r#"{"MessageId":"m"}"#));
        assert!(ex.task_submitted(token));
        assert_eq!(ex.status, Status::Running);
        // A second submission is a runtime bug, refused unapplied.
        assert!(matches!(
            ex.handle(
                &def,
                Event::TaskSubmitted {
                    token,
                    output: json!({})
                },
                now
            ),
            Err(DecideError::UnexpectedEvent(_))
        ));
        let done = ex
            .handle(
                &def,
                Event::TaskSucceeded {
                    token,
                    output: json!("answer"),
                },
                now,
            )
            .unwrap();
        assert_eq!(
            types(&done.history),
            ["TaskSucceeded", "TaskStateExited", "ExecutionSucceeded"]
        );
        assert_eq!(done.history[0].previous_event_id, submitted.history[0].id);
        assert_eq!(ex.output, Some(json!("answer")));
    }

    #[test]
    fn only_a_callback_task_has_a_task_token_and_its_lambda_result_is_not_wrapped() {
        let run = |resource: &str| {
            let def = Definition::parse(&format!(
                r#"{{"StartAt":"T","States":{{"T":{{"Type":"Task","Resource":"{resource}",
                    "Parameters":{{"FunctionName":"f","Payload":{{"token.$":"$$.Task.Token"}}}},"End":true}}}}}}"#
            ))
            .unwrap();
            let (mut ex, step) = Execution::start(
                &def,
                ExecutionInfo::local("sm", "e"),
                json!({}),
                1,
                SystemTime::UNIX_EPOCH,
                Options::default(),
            );
            if ex.status != Status::Running {
                return (ex, None);
            }
            let (token, input) = scheduled(&step);
            ex.handle(
                &def,
                Event::TaskSucceeded {
                    token,
                    output: json!({"ok": 1}),
                },
                SystemTime::UNIX_EPOCH,
            )
            .unwrap();
            (ex, Some(input))
        };
        let (ex, input) = run("arn:aws:states:::lambda:invoke.waitForTaskToken");
        assert!(
            input.unwrap()["token"]
                .as_str()
                .is_some_and(|t| parse_task_token(t).is_some())
        );
        assert_eq!(ex.output, Some(json!({"ok": 1})));
        // Without the suffix there is no `$$.Task`: the path matches nothing.
        let (ex, input) = run("arn:aws:states:::lambda:invoke");
        assert!(input.is_none());
        assert_eq!(ex.status, Status::Failed);
        assert_eq!(ex.error.as_deref(), Some("States.Runtime"));
    }

    fn tasks_of(step: &Step) -> Vec<(u64, Value)> {
        step.commands
            .iter()
            .filter_map(|c| match c {
                Command::ScheduleTask { token, input, .. } => Some((*token, input.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_redrive_reruns_the_failed_task_and_not_the_states_before_it() {
        let def = Definition::parse(
            r#"{"StartAt":"Before","States":{
                "Before":{"Type":"Pass","Result":"done","ResultPath":"$.before","Next":"T"},
                "T":{"Type":"Task","Resource":"arn:aws:states:::sqs:sendMessage",
                     "Parameters":{"redrives.$":"$$.Execution.RedriveCount"},
                     "Retry":[{"ErrorEquals":["Flaky"],"MaxAttempts":1}],"End":true}}}"#,
        )
        .unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let (mut ex, step) = Execution::start(
            &def,
            ExecutionInfo::local("sm", "e"),
            json!({}),
            1,
            now,
            Options::default(),
        );
        let (token, input) = scheduled(&step);
        assert_eq!(input, json!({"redrives": 0}));
        // Not redrivable while it runs.
        assert!(
            matches!(ex.redrive(&def, now), Err(DecideError::NotRedrivable(r)) if r.contains("RUNNING"))
        );
        let failed = |ex: &mut Execution, token| {
            ex.handle(
                &def,
                Event::TaskFailed {
                    token,
                    error: "Broken".into(),
                    cause: None,
                },
                now,
            )
            .unwrap()
        };
        failed(&mut ex, token);
        assert_eq!(ex.status, Status::Failed);
        let before = ex.next_event_id();
        let step = ex.handle(&def, Event::Redrive, now).unwrap();
        assert_eq!(ex.status, Status::Running);
        assert_eq!(ex.redrive_count(), 1);
        assert_eq!(
            types(&step.history),
            ["ExecutionRedriven", "TaskScheduled", "TaskStarted"],
            "the Pass state before is not run again"
        );
        assert_eq!(step.history[0].id, before);
        assert_eq!(
            step.history[0]
                .execution_redriven_event_details
                .as_ref()
                .unwrap()
                .redrive_count,
            1
        );
        let (token, input) = scheduled(&step);
        assert_eq!(input, json!({"redrives": 1}));
        // Retry counts start again at 0: Flaky is retried once more.
        let step = ex
            .handle(
                &def,
                Event::TaskFailed {
                    token,
                    error: "Flaky".into(),
                    cause: None,
                },
                now,
            )
            .unwrap();
        assert_eq!(ex.status, Status::Running);
        let timer = step.commands.iter().find_map(|c| match c {
            Command::StartTimer { token, .. } => Some(*token),
            _ => None,
        });
        let step = ex
            .handle(
                &def,
                Event::TimerFired {
                    token: timer.unwrap(),
                },
                now,
            )
            .unwrap();
        let (token, _) = scheduled(&step);
        ex.handle(
            &def,
            Event::TaskSucceeded {
                token,
                output: json!("ok"),
            },
            now,
        )
        .unwrap();
        assert_eq!(ex.status, Status::Succeeded);
        assert_eq!(ex.output, Some(json!("ok")));
        assert!(
            matches!(ex.redrive(&def, now), Err(DecideError::NotRedrivable(r)) if r.contains("SUCCEEDED"))
        );
    }

    #[test]
    fn a_redriven_map_reruns_only_its_failed_and_aborted_iterations() {
        let def = Definition::parse(
            r#"{"StartAt":"M","States":{"M":{"Type":"Map","End":true,
                "ItemProcessor":{"StartAt":"T","States":{"T":{"Type":"Task",
                    "Resource":"arn:aws:states:::sqs:sendMessage","End":true}}}}}}"#,
        )
        .unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let (mut ex, step) = Execution::start(
            &def,
            ExecutionInfo::local("sm", "e"),
            json!([10, 11, 12]),
            1,
            now,
            Options::default(),
        );
        let tasks = tasks_of(&step);
        assert_eq!(
            tasks.iter().map(|(_, i)| i.clone()).collect::<Vec<_>>(),
            [json!(10), json!(11), json!(12)]
        );
        // Item 0 succeeds, item 1 fails (the Map fails), item 2 is aborted.
        ex.handle(
            &def,
            Event::TaskSucceeded {
                token: tasks[0].0,
                output: json!("a"),
            },
            now,
        )
        .unwrap();
        ex.handle(
            &def,
            Event::TaskFailed {
                token: tasks[1].0,
                error: "Broken".into(),
                cause: None,
            },
            now,
        )
        .unwrap();
        assert_eq!(ex.status, Status::Failed);
        let step = ex.handle(&def, Event::Redrive, now).unwrap();
        let again = tasks_of(&step);
        assert_eq!(
            again.iter().map(|(_, i)| i.clone()).collect::<Vec<_>>(),
            [json!(11), json!(12)],
            "only the failed and the aborted iteration run again"
        );
        for (token, input) in again {
            ex.handle(
                &def,
                Event::TaskSucceeded {
                    token,
                    output: json!(format!("r{input}")),
                },
                now,
            )
            .unwrap();
        }
        assert_eq!(ex.status, Status::Succeeded);
        assert_eq!(ex.output, Some(json!(["a", "r11", "r12"])));
    }

    #[test]
    fn an_aborted_wait_waits_again_after_a_redrive() {
        let def = Definition::parse(
            r#"{"StartAt":"W","States":{"W":{"Type":"Wait","Seconds":60,"End":true}}}"#,
        )
        .unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let (mut ex, _) = Execution::start(
            &def,
            ExecutionInfo::local("sm", "e"),
            json!({}),
            1,
            now,
            Options::default(),
        );
        ex.handle(
            &def,
            Event::Abort {
                error: None,
                cause: None,
            },
            now,
        )
        .unwrap();
        assert_eq!(ex.status, Status::Aborted);
        let step = ex.handle(&def, Event::Redrive, now).unwrap();
        let timer = step.commands.iter().find_map(|c| match c {
            Command::StartTimer { token, fire_at } => Some((*token, *fire_at)),
            _ => None,
        });
        let (token, at) = timer.expect("the Wait's timer again");
        assert_eq!(at, now + Duration::from_secs(60));
        ex.handle(&def, Event::TimerFired { token }, at).unwrap();
        assert_eq!(ex.status, Status::Succeeded);
    }

    #[test]
    fn the_execution_input_lent_to_the_context_comes_back_after_every_step() {
        // Both Tasks read the input through the context: the first in the start step, the
        // second in the step of the first one's result. Each step lends the input to the
        // context and must give it back, or the second payload (and the stored execution)
        // would lose it.
        let def = Definition::parse(
            r#"{"StartAt":"A","States":{
                "A":{"Type":"Task","Resource":"arn:aws:lambda:us-east-1:1:function:f","Parameters":{"id.$":"$$.Execution.Id","in.$":"$$.Execution.Input"},"ResultPath":null,"Next":"B"},
                "B":{"Type":"Task","Resource":"arn:aws:lambda:us-east-1:1:function:f","Parameters":{"in.$":"$$.Execution.Input.detail"},"End":true}}}"#,
        )
        .unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let scheduled = |step: &Step| {
            step.commands
                .iter()
                .find_map(|c| match c {
                    Command::ScheduleTask { token, input, .. } => Some((*token, input.clone())),
                    _ => None,
                })
                .expect("a task was scheduled")
        };
        let input = json!({"detail": {"EC2InstanceId": "i-1"}});
        let (mut ex, step) = Execution::start(
            &def,
            ExecutionInfo::local("sm", "e"),
            input.clone(),
            1,
            now,
            Options::default(),
        );
        let started = step.history[0]
            .execution_started_event_details
            .as_ref()
            .and_then(|d| d.input.clone());
        assert_eq!(
            started.as_deref(),
            Some(r#"{"detail":{"EC2InstanceId":"i-1"}}"#)
        );
        let (token, payload) = scheduled(&step);
        assert_eq!(payload["in"], input);
        assert_eq!(ex.input, input);
        let step = ex
            .handle(
                &def,
                Event::TaskSucceeded {
                    token,
                    output: json!({}),
                },
                now,
            )
            .unwrap();
        assert_eq!(scheduled(&step).1["in"], input["detail"]);
        assert_eq!(ex.input, input);
    }
}
