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
//! Not supported (runtime error naming the state): distributed Map (ItemReader/ResultWriter),
//! activities and `.sync`/`.waitForTaskToken` integration patterns' callbacks.

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

use children::Children;
use limits::execution_cap;
use task::LambdaKind;

/// Identity of one execution, as the context object (`$$.Execution`, `$$.StateMachine`) shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ExecutionInfo {
    pub execution_arn: String,
    pub execution_name: String,
    pub state_machine_arn: String,
    pub state_machine_name: String,
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
    Running,
    Succeeded,
    Failed,
    TimedOut,
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
    TaskSucceeded { token: u64, output: Value },
    /// The task scheduled with `token` returned the integration's whole service response,
    /// which becomes the state's result as is: for `arn:aws:states:::lambda:invoke` the
    /// Invoke API response (`StatusCode`, `Payload`, …) instead of a payload the decider
    /// wraps in that envelope. The same as [`Event::TaskSucceeded`] for every other resource.
    /// Mocked responses (`fleetprep states exec --mock-config`) give the whole response, as
    /// Step Functions Local's mock files do.
    TaskResponded { token: u64, output: Value },
    /// The task scheduled with `token` failed.
    TaskFailed {
        token: u64,
        error: String,
        cause: Option<String>,
    },
    /// The timer started with `token` fired.
    TimerFired { token: u64 },
    /// The task scheduled with `token` reported progress (SendTaskHeartbeat): its
    /// HeartbeatSeconds clock starts again. Records no history event (as on AWS).
    TaskHeartbeat { token: u64 },
    /// Stop the execution (StopExecution).
    Abort {
        error: Option<String>,
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
            | Event::TimerFired { token }
            | Event::TaskHeartbeat { token } => Some(*token),
            Event::Abort { .. } => None,
        }
    }

    /// The variant's name, for errors.
    fn kind(&self) -> &'static str {
        match self {
            Event::TaskSucceeded { .. } => "TaskSucceeded",
            Event::TaskResponded { .. } => "TaskResponded",
            Event::TaskFailed { .. } => "TaskFailed",
            Event::TimerFired { .. } => "TimerFired",
            Event::TaskHeartbeat { .. } => "TaskHeartbeat",
            Event::Abort { .. } => "Abort",
        }
    }
}

/// What the runtime must do after a step.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Command {
    /// Invoke the handler for `target` with `input`; answer with `TaskSucceeded`/`TaskFailed`.
    ScheduleTask {
        token: u64,
        /// The state that runs the task.
        state: String,
        /// The state's `Resource` as written.
        resource: String,
        /// What to dispatch on: the Lambda function (ARN or name) for Lambda resources,
        /// otherwise the resource ARN.
        target: String,
        input: Value,
        timeout_seconds: Option<u64>,
        heartbeat_seconds: Option<u64>,
    },
    /// Fire `TimerFired{token}` at `fire_at`.
    StartTimer { token: u64, fire_at: SystemTime },
    /// Forget the timer started with `token` (a task finished before its timeout, or a
    /// heartbeat replaced its heartbeat timer).
    CancelTimer { token: u64 },
    /// The execution finished.
    Complete {
        status: Status,
        output: Option<Value>,
        error: Option<String>,
        cause: Option<String>,
    },
}

/// The result of one decider step.
#[derive(Debug, Default)]
pub struct Step {
    pub history: Vec<HistoryEvent>,
    pub commands: Vec<Command>,
}

/// The decider's state for one execution. Serialise it to persist; it holds no definition
/// (pass the same [`Definition`] to every call).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Execution {
    pub info: ExecutionInfo,
    pub status: Status,
    pub output: Option<Value>,
    /// The failure of a FAILED or ABORTED execution, as DescribeExecution reports it. `None`
    /// for TIMED_OUT: AWS reports no error or cause there (States.Timeout is only in the
    /// `ExecutionTimedOut` history event).
    pub error: Option<String>,
    pub cause: Option<String>,
    input: Value,
    start_time: String,
    root: Thread,
    next_event_id: i64,
    next_token: u64,
    entropy: u64,
    timeout_token: Option<u64>,
    /// When false, history events are counted (ids advance) but not built: the fast path
    /// for benchmarks and callers that never read history.
    record_history: bool,
    history_limit: i64,
    /// The context object's execution part (`$$.Execution`, `$$.StateMachine`), built on
    /// first use and kept across steps: it holds the execution input, which may be large.
    #[serde(skip)]
    context: Option<Value>,
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
    #[error("the execution is not running (status {0})")]
    NotRunning(&'static str),
    #[error("no task or timer is waiting for token {0}")]
    UnknownToken(u64),
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
    exec_input: &'a Value,
    start_time: &'a str,
    now: SystemTime,
    now_text: String,
    next_event_id: &'a mut i64,
    next_token: &'a mut u64,
    /// The execution-level timeout timer (TimeoutSeconds or the 1-year cap), if armed.
    exec_timer: &'a mut Option<u64>,
    /// Start time + [`MAX_EXECUTION_DURATION`].
    cap: SystemTime,
    entropy: SplitMix64,
    record: bool,
    limit: i64,
    step: Step,
    ctx_cache: Option<Value>,
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
            record_history: options.record_history,
            history_limit: options.history_limit,
            context: None,
        };
        let mut step = Step::default();
        ex.with_run(
            def,
            now,
            |run, root, ex_input| {
                let mut e = run.event(EventType::ExecutionStarted, 0);
                if let Some(e) = e.as_mut() {
                    e.execution_started_event_details =
                        Some(Box::new(history::ExecutionStartedEventDetails {
                            input: Some(json_text(ex_input)),
                            input_details: Some(history::DataDetails::default()),
                            role_arn: Some(run.info.role_arn.clone()),
                        }));
                }
                run.push(e);
                let _ = root;
            },
            &mut step,
        );
        if let Some(t) = def.timeout_seconds {
            let token = ex.next_token;
            ex.next_token += 1;
            ex.timeout_token = Some(token);
            let limit = Duration::from_secs(t).min(MAX_EXECUTION_DURATION);
            step.commands.push(Command::StartTimer {
                token,
                fire_at: now + limit,
            });
        }
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
                    |run, _root, _| {
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
                    |run, root, _| run.deliver(root, &mut other),
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
            |run, _root, _| {
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
        f: impl FnOnce(&mut Run<'_>, &mut Thread, &Value) -> R,
        out: &mut Step,
    ) -> R {
        let mut run = Run {
            def,
            info: &self.info,
            exec_input: &self.input,
            start_time: &self.start_time,
            now,
            now_text: history::format_timestamp(now),
            next_event_id: &mut self.next_event_id,
            next_token: &mut self.next_token,
            exec_timer: &mut self.timeout_token,
            cap: execution_cap(&self.start_time, now),
            entropy: SplitMix64(self.entropy),
            record: self.record_history,
            limit: self.history_limit,
            step: Step::default(),
            ctx_cache: self.context.take(),
        };
        let result = f(&mut run, &mut self.root, &self.input);
        self.entropy = run.entropy.0;
        self.context = run.ctx_cache.take();
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
            |run, root, _| {
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
}
