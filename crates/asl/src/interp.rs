//! The interpreter: a pure, deterministic *decider* (Temporal style).
//!
//! An [`Execution`] is serialisable state. [`Execution::start`] and [`Execution::handle`] take
//! an [`Event`] (task result, timer fired, abort) plus "now", and return a [`Step`]: the history
//! events recorded and the [`Command`]s for the runtime (schedule a task, start a timer, the
//! execution completed). Everything that is pure ASL — Pass, Choice, Succeed, Fail, path and
//! expression processing, even a 10,000-item inline Map of Pass states — runs synchronously
//! inside one step; only Task and Wait states (and Retry delays) wait for the runtime.
//!
//! Map iterations and Parallel branches are child threads inside their state. Pure children run
//! one after another (this is also the order AWS records for them); children that wait run
//! concurrently up to MaxConcurrency.
//!
//! Task timers: `TimeoutSeconds` and `HeartbeatSeconds` each arm a timer when the task is
//! scheduled; [`Event::TaskHeartbeat`] (SendTaskHeartbeat) replaces the heartbeat timer with
//! one `HeartbeatSeconds` later and records no history. Either timer firing fails the task with
//! `States.Timeout` (a `TaskTimedOut`/`LambdaFunctionTimedOut` event, as AWS records it); a
//! missed heartbeat is also matched by `States.HeartbeatTimeout` in Retry/Catch.
//! `TimeoutSecondsPath`/`HeartbeatSecondsPath` select from the state input (after InputPath,
//! before Parameters).
//!
//! Limits, as AWS enforces them: every timer deadline is bounded by the Standard-workflow
//! maximum execution time ([`MAX_EXECUTION_DURATION`], 1 year). A Wait, backoff or task timeout
//! reaching past it arms one execution-level timer at the cap instead, and the execution times
//! out there (`ExecutionTimedOut` with `States.Timeout` and previousEventId 0, status
//! TIMED_OUT with no error or cause, as AWS records it), so no timestamp the
//! ASL accepts can overflow a clock. State output over 256 KiB and variables over their
//! limits ([`MAX_VARIABLE_BYTES`], [`MAX_ASSIGN_BYTES`], [`MAX_VARIABLES_TOTAL_BYTES`]) fail
//! the state with `States.DataLimitExceeded`, which no Retry or Catch sees.
//!
//! History ids follow AWS: `previousEventId` is the event this one follows within its thread
//! (not simply the previous id); see the rules next to each event kind below, reverse-read from
//! executions recorded on AWS (the conformance corpus).
//!
//! Not supported (runtime error naming the state): distributed Map (ItemReader/ResultWriter),
//! activities and `.sync`/`.waitForTaskToken` integration patterns' callbacks.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::{self, StatesError};
use crate::history::{self, EventType, HistoryEvent};
use crate::jsonpath::{Entropy, EvalContext, JsonPath, SplitMix64};
use crate::model::{
    Assign, Catcher, Definition, Expr, FailField, Jitter, Kind, PathField, ResultPathField,
    Setting, State, StateMachine, Transition, WaitFor,
};

/// Step Functions' payload limit for state input/output and results (256 KiB).
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// Workflow-variable limits (Step Functions developer guide, "Passing data between states
/// with variables" › Limits): one variable at most 256 KiB, everything one `Assign` sets at
/// most 256 KiB together, and all stored variables at most 10 MiB per execution. Sizes are
/// the compact JSON text of the values, as the payload limit counts them.
pub const MAX_VARIABLE_BYTES: usize = 256 * 1024;
/// See [`MAX_VARIABLE_BYTES`].
pub const MAX_ASSIGN_BYTES: usize = 256 * 1024;
/// See [`MAX_VARIABLE_BYTES`].
pub const MAX_VARIABLES_TOTAL_BYTES: usize = 10 * 1024 * 1024;
/// Step Functions' history limit per execution.
pub const MAX_HISTORY_EVENTS: i64 = 25_000;

/// AWS's maximum execution time for a Standard workflow (Step Functions quotas: "1 year. If an
/// execution runs for more than the 1-year maximum, it will fail with a States.Timeout error").
/// Every timer (Wait, retry backoff, task timeout, heartbeat) is bounded by it, so no deadline
/// the ASL accepts can overflow a clock or a store.
pub const MAX_EXECUTION_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);
const LAMBDA_INVOKE: &str = "arn:aws:states:::lambda:invoke";

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

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
enum LambdaKind {
    /// `arn:aws:lambda:…:function:…`: LambdaFunction* events, raw result.
    Function,
    /// `arn:aws:states:::lambda:invoke`: Task* events, response envelope.
    Invoke,
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

impl From<StatesError> for Failure {
    fn from(e: StatesError) -> Self {
        Failure {
            error: e.error,
            cause: Some(e.cause),
            heartbeat: false,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Children {
    is_map: bool,
    /// Effective input (after InputPath/Parameters) for Parallel; items for Map.
    items: Vec<Value>,
    effective: Value,
    next: usize,
    running: Vec<(usize, Thread)>,
    results: Vec<Option<Value>>,
    max_concurrency: usize,
    failures: usize,
    tolerated_count: Option<u64>,
    tolerated_pct: Option<f64>,
    /// Map: id of the last iteration-end event (MapStateSucceeded follows it).
    started_id: i64,
}

/// Reasons an event could not be applied.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecideError {
    #[error("the execution is not running (status {0})")]
    NotRunning(&'static str),
    #[error("no task or timer is waiting for token {0}")]
    UnknownToken(u64),
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
            mut other => {
                let mut delivered = Ok(false);
                self.with_run(
                    def,
                    now,
                    |run, root, _| {
                        delivered = run.deliver(root, &mut other);
                    },
                    &mut step,
                );
                match delivered {
                    Ok(true) => {}
                    Ok(false) => {
                        let token = match other {
                            Event::TaskSucceeded { token, .. }
                            | Event::TaskResponded { token, .. }
                            | Event::TaskFailed { token, .. }
                            | Event::TimerFired { token }
                            | Event::TaskHeartbeat { token } => token,
                            Event::Abort { .. } => 0,
                        };
                        return Err(DecideError::UnknownToken(token));
                    }
                    Err(()) => {}
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

/// Resolves a thread's machine path.
fn machine_at<'d>(def: &'d Definition, path: &[(u32, u32)]) -> &'d StateMachine {
    let mut m = &def.machine;
    for &(s, b) in path {
        m = match &m.states[s as usize].kind {
            Kind::Map { processor, .. } => processor,
            Kind::Parallel { branches } => &branches[b as usize],
            _ => m,
        };
    }
    m
}

fn entered_type(kind: &Kind) -> EventType {
    match kind {
        Kind::Pass { .. } => EventType::PassStateEntered,
        Kind::Task { .. } => EventType::TaskStateEntered,
        Kind::Choice { .. } => EventType::ChoiceStateEntered,
        Kind::Wait { .. } => EventType::WaitStateEntered,
        Kind::Succeed => EventType::SucceedStateEntered,
        Kind::Fail { .. } => EventType::FailStateEntered,
        Kind::Parallel { .. } => EventType::ParallelStateEntered,
        Kind::Map { .. } => EventType::MapStateEntered,
    }
}

fn exited_type(kind: &Kind) -> EventType {
    match kind {
        Kind::Pass { .. } => EventType::PassStateExited,
        Kind::Task { .. } => EventType::TaskStateExited,
        Kind::Choice { .. } => EventType::ChoiceStateExited,
        Kind::Wait { .. } => EventType::WaitStateExited,
        Kind::Succeed => EventType::SucceedStateExited,
        Kind::Fail { .. } => EventType::FailStateEntered,
        Kind::Parallel { .. } => EventType::ParallelStateExited,
        Kind::Map { .. } => EventType::MapStateExited,
    }
}

/// What the state produced when its work completes.
enum Produced {
    /// Continue to `next` (None = end) with `output`; `assign` already computed.
    Next(Option<String>, Value, Option<Map<String, Value>>),
    Fail(Failure),
}

impl Run<'_> {
    fn event(&mut self, ty: EventType, prev: i64) -> Option<HistoryEvent> {
        let id = *self.next_event_id;
        *self.next_event_id += 1;
        if !self.record {
            return None;
        }
        Some(HistoryEvent::new(ty, id, prev, self.now_text.clone()))
    }

    fn push(&mut self, e: Option<HistoryEvent>) {
        if let Some(e) = e {
            self.step.history.push(e);
        }
    }

    fn last_id(&self) -> i64 {
        *self.next_event_id - 1
    }

    fn token(&mut self) -> u64 {
        let t = *self.next_token;
        *self.next_token += 1;
        t
    }

    /// The deadline for a timer due at `at` (`None`: later than a `SystemTime` can hold).
    /// A deadline past the execution's 1-year cap arms the cap timer (once) and parks the
    /// timer just after the cap: the execution times out first, so it never fires, and no
    /// deadline ever overflows the clock or the store.
    fn deadline(&mut self, at: Option<SystemTime>) -> SystemTime {
        match at {
            Some(t) if t <= self.cap => t,
            _ => {
                if self.exec_timer.is_none() {
                    let token = self.token();
                    self.step.commands.push(Command::StartTimer {
                        token,
                        fire_at: self.cap,
                    });
                    *self.exec_timer = Some(token);
                }
                self.cap + Duration::from_secs(1)
            }
        }
    }

    /// The deadline `d` from now (see [`Run::deadline`]).
    fn after(&mut self, d: Duration) -> SystemTime {
        let at = self.now.checked_add(d);
        self.deadline(at)
    }

    /// The context object for a state. The execution part is built once per step and reused
    /// (it holds the execution input, which may be large); hand it back with [`Run::recycle`].
    fn context(&mut self, th: &Thread, st: &State) -> Value {
        let mut ctx = self.ctx_cache.take().unwrap_or_else(|| {
            // Built by hand: `json!` would re-serialise the input into a new Value.
            let text = |s: &str| Value::String(s.to_owned());
            let mut execution = Map::new();
            execution.insert("Id".into(), text(&self.info.execution_arn));
            execution.insert("Input".into(), self.exec_input.clone());
            execution.insert("StartTime".into(), text(self.start_time));
            execution.insert("Name".into(), text(&self.info.execution_name));
            execution.insert("RoleArn".into(), text(&self.info.role_arn));
            execution.insert("RedriveCount".into(), Value::from(0));
            let mut machine = Map::new();
            machine.insert("Id".into(), text(&self.info.state_machine_arn));
            machine.insert("Name".into(), text(&self.info.state_machine_name));
            let mut ctx = Map::new();
            ctx.insert("Execution".into(), Value::Object(execution));
            ctx.insert("StateMachine".into(), Value::Object(machine));
            ctx.insert("State".into(), Value::Object(Map::new()));
            Value::Object(ctx)
        });
        let mut state = Map::new();
        state.insert("EnteredTime".into(), Value::String(th.entered_time.clone()));
        state.insert("Name".into(), Value::String(st.name.clone()));
        // AWS lists `RetryCount` for the states that can retry (Task, Parallel, Map), 0 on
        // the first attempt; a Pass state's context (recorded on AWS) has only Name and
        // EnteredTime.
        if matches!(
            st.kind,
            Kind::Task { .. } | Kind::Parallel { .. } | Kind::Map { .. }
        ) {
            let retries: u64 = th.attempts.iter().sum();
            state.insert("RetryCount".into(), Value::from(retries));
        }
        if let Some(obj) = ctx.as_object_mut() {
            obj.insert("State".into(), Value::Object(state));
            match &th.map_item {
                Some(item) => {
                    obj.insert("Map".into(), json!({ "Item": item }));
                }
                None => {
                    obj.shift_remove("Map");
                }
            }
        }
        ctx
    }

    fn recycle(&mut self, ctx: Value) {
        self.ctx_cache = Some(ctx);
    }

    /// Runs a thread until it waits or is done.
    fn advance(&mut self, th: &mut Thread, m: &StateMachine) {
        loop {
            let st = &m.states[th.state as usize];
            match std::mem::replace(&mut th.phase, Phase::Run) {
                Phase::Enter => {
                    self.enter(th, st);
                    th.phase = Phase::Run;
                }
                Phase::Run => {
                    if let Some(p) = self.run_state(th, st, m) {
                        self.complete(th, st, p);
                    }
                }
                Phase::Children(mut ch) => {
                    let r = self.advance_children(th, st, &mut ch);
                    match r {
                        None => {
                            th.phase = Phase::Children(ch);
                            return;
                        }
                        Some(p) => self.complete(th, st, p),
                    }
                }
                other @ (Phase::Task { .. } | Phase::Sleep { .. } | Phase::Done(_)) => {
                    th.phase = other;
                    return;
                }
            }
            if *self.next_event_id >= self.limit {
                return;
            }
        }
    }

    fn enter(&mut self, th: &mut Thread, st: &State) {
        th.attempts = vec![0; st.retry.len()];
        th.entered_prev = th.cursor;
        th.entered_time = self.now_text.clone();
        let mut e = self.event(entered_type(&st.kind), th.cursor);
        let id = *self.next_event_id - 1;
        if let Some(e) = e.as_mut() {
            let text = th.input_text.take().unwrap_or_else(|| json_text(&th.input));
            e.state_entered_event_details = Some(Box::new(history::StateEnteredEventDetails {
                name: st.name.clone(),
                input: Some(text),
                input_details: Some(history::DataDetails::default()),
            }));
        }
        self.push(e);
        th.entered_id = id;
        th.cursor = id;
    }

    /// Completes the current state: exit event and transition, or error handling.
    fn complete(&mut self, th: &mut Thread, st: &State, p: Produced) {
        match p {
            Produced::Next(next, output, assigned) => {
                if let Err(f) = check_size(&output, &st.name) {
                    return self.fail_state(th, st, f, false);
                }
                if let Some(a) = &assigned
                    && let Err(f) = check_assigned(a, &th.vars, &st.name)
                {
                    return self.fail_state(th, st, f, false);
                }
                let mut carried: Option<String> = None;
                if !matches!(st.kind, Kind::Fail { .. }) {
                    let mut e = self.event(exited_type(&st.kind), th.cursor);
                    let id = self.last_id();
                    if let Some(e) = e.as_mut() {
                        let text = json_text(&output);
                        if next.is_some() {
                            carried = Some(text.clone());
                        }
                        e.state_exited_event_details =
                            Some(Box::new(history::StateExitedEventDetails {
                                name: st.name.clone(),
                                output: Some(text),
                                output_details: Some(history::DataDetails::default()),
                                assigned_variables: assigned.as_ref().map(|a| {
                                    a.iter()
                                        .map(|(k, v)| (k.clone(), Value::String(json_text(v))))
                                        .collect()
                                }),
                                assigned_variables_details: assigned
                                    .as_ref()
                                    .map(|_| history::DataDetails::default()),
                            }));
                    }
                    self.push(e);
                    th.cursor = id;
                }
                if let Some(a) = assigned {
                    th.vars.extend(a);
                }
                match next {
                    Some(n) => {
                        let m = machine_at(self.def, &th.machine);
                        th.state = m.position(&n).unwrap_or(0) as u32;
                        th.input = output;
                        th.input_text = carried;
                        th.phase = Phase::Enter;
                    }
                    None => th.phase = Phase::Done(Outcome::Ok(output)),
                }
            }
            Produced::Fail(f) => self.fail_state(th, st, f, true),
        }
    }

    /// Error handling for the current state: Retry, then Catch, else the thread fails.
    /// `retriable` is false for errors no retrier may see (payload limit).
    fn fail_state(&mut self, th: &mut Thread, st: &State, f: Failure, retriable: bool) {
        let terminal = f.error == error::RUNTIME || f.error == error::DATA_LIMIT_EXCEEDED;
        if retriable && !terminal {
            if let Some(i) = st
                .retry
                .iter()
                .position(|r| failure_matches(&r.error_equals, &f))
            {
                let r = &st.retry[i];
                if th.attempts.len() < st.retry.len() {
                    th.attempts.resize(st.retry.len(), 0);
                }
                let n = th.attempts[i];
                if n < r.max_attempts {
                    th.attempts[i] += 1;
                    let mut delay = r.interval_seconds * r.backoff_rate.powi(n as i32);
                    if let Some(max) = r.max_delay_seconds {
                        delay = delay.min(max);
                    }
                    if r.jitter == Jitter::Full {
                        let u = (self.entropy.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                        delay *= u;
                    }
                    let token = self.token();
                    let fire_at = self.after(Duration::from_secs_f64(delay.clamp(0.0, 1e9)));
                    self.step
                        .commands
                        .push(Command::StartTimer { token, fire_at });
                    th.phase = Phase::Sleep { token, retry: true };
                    return;
                }
            }
        }
        if !terminal {
            if let Some(c) = st
                .catch
                .iter()
                .find(|c| failure_matches(&c.error_equals, &f))
            {
                match self.catch_output(th, st, c, &f) {
                    Ok((output, assigned)) => {
                        // The failed state still exits (its Exited event carries the output).
                        let p = Produced::Next(Some(c.next.clone()), output, assigned);
                        return self.complete(th, st, p);
                    }
                    Err(f2) => {
                        th.phase = Phase::Done(Outcome::Err(f2));
                        return;
                    }
                }
            }
        }
        th.phase = Phase::Done(Outcome::Err(f));
    }

    fn catch_output(
        &mut self,
        th: &Thread,
        st: &State,
        c: &Catcher,
        f: &Failure,
    ) -> Result<(Value, Option<Map<String, Value>>), Failure> {
        let mut err_out = Map::new();
        err_out.insert("Error".into(), Value::String(f.error.clone()));
        if let Some(cause) = &f.cause {
            err_out.insert("Cause".into(), Value::String(cause.clone()));
        }
        let err_out = Value::Object(err_out);
        let ctx = self.context(th, st);
        let mut ent = self.entropy.clone();
        let res = (|| {
            if st.query_language == crate::model::QueryLanguage::Jsonata {
                let mut ec = EvalContext::new(&th.input, &ctx, &th.vars, &mut ent)
                    .with_error_output(&err_out);
                let assigned = match &c.assign {
                    Some(a) => Some(render_assign(a, &mut ec)?),
                    None => None,
                };
                let out = match &c.output {
                    Some(t) => t.render(&mut ec)?,
                    None => err_out.clone(),
                };
                Ok((out, assigned))
            } else {
                let mut ec = EvalContext::new(&err_out, &ctx, &th.vars, &mut ent);
                let assigned = match &c.assign {
                    Some(a) => Some(render_assign(a, &mut ec)?),
                    None => None,
                };
                let out = apply_result_path(&c.result_path, th.input.clone(), err_out.clone())?;
                Ok((out, assigned))
            }
        })();
        self.entropy = ent;
        self.recycle(ctx);
        res.map_err(|e: StatesError| Failure::from(e.in_state(&st.name, th.entered_id as u64)))
    }

    /// Runs (or re-runs after a retry delay) the current state's work.
    fn run_state(&mut self, th: &mut Thread, st: &State, _m: &StateMachine) -> Option<Produced> {
        match self.try_run_state(th, st) {
            Ok(p) => p,
            Err(e) => {
                let f = Failure::from(e.in_state(&st.name, th.entered_id as u64));
                if f.error == error::QUERY_EVALUATION_ERROR {
                    let mut ev = self.event(EventType::EvaluationFailed, th.entered_prev);
                    let id = self.last_id();
                    if let Some(ev) = ev.as_mut() {
                        ev.evaluation_failed_event_details =
                            Some(Box::new(history::EvaluationFailedEventDetails {
                                error: Some(f.error.clone()),
                                cause: f.cause.clone(),
                                location: None,
                                state: st.name.clone(),
                            }));
                    }
                    self.push(ev);
                    th.cursor = id;
                    if let Kind::Map { .. } = st.kind {
                        let ev = self.event(EventType::MapStateFailed, th.cursor);
                        self.push(ev);
                        th.cursor = self.last_id();
                    }
                }
                Some(Produced::Fail(f))
            }
        }
    }

    fn try_run_state(
        &mut self,
        th: &mut Thread,
        st: &State,
    ) -> Result<Option<Produced>, StatesError> {
        let jsonata = st.query_language == crate::model::QueryLanguage::Jsonata;
        // Fast path: a Pass state with nothing to evaluate (the common chain link).
        if let Kind::Pass { result: None } = &st.kind {
            if !jsonata
                && st.input_path == PathField::Default
                && st.output_path == PathField::Default
                && st.result_path == ResultPathField::Default
                && st.parameters.is_none()
                && st.assign.is_none()
            {
                // The output becomes the next state's input: move, don't clone.
                let out = std::mem::take(&mut th.input);
                return Ok(Some(Produced::Next(next_of(st), out, None)));
            }
        }
        let ctx = self.context(th, st);
        let mut ent = self.entropy.clone();
        // The state's input is lent out instead of cloned (the state data of a big
        // workflow is copied otherwise several times per state). It goes back afterwards: a
        // waiting state reads it when its result arrives, a retry runs on it again. Only an
        // output that IS the input takes it (`Produced::Next` then replaces it anyway).
        let mut raw = std::mem::take(&mut th.input);
        let r = self.state_work(th, st, &ctx, &mut ent, jsonata, &mut raw);
        th.input = raw;
        self.entropy = ent;
        self.recycle(ctx);
        r
    }

    fn state_work(
        &mut self,
        th: &mut Thread,
        st: &State,
        ctx: &Value,
        ent: &mut SplitMix64,
        jsonata: bool,
        raw: &mut Value,
    ) -> Result<Option<Produced>, StatesError> {
        use std::borrow::Cow;
        // JSONPath: InputPath then Parameters. JSONata: the raw input.
        let effective: Cow<'_, Value> = if jsonata {
            Cow::Borrowed(&*raw)
        } else {
            let v = select_path(&st.input_path, raw, ctx, &th.vars, ent)?;
            if let (Some(p), false) = (&st.parameters, matches!(st.kind, Kind::Map { .. })) {
                let mut ec = EvalContext::new(&v, ctx, &th.vars, ent);
                Cow::Owned(p.render(&mut ec)?)
            } else {
                v
            }
        };
        match &st.kind {
            Kind::Pass { result } => {
                let result = match result {
                    Some(r) => r.clone(),
                    None => effective.into_owned(),
                };
                self.finish_state(th, st, ctx, ent, raw, result, next_of(st), jsonata)
                    .map(Some)
            }
            Kind::Succeed => {
                let effective = effective.into_owned();
                self.finish_state(th, st, ctx, ent, raw, effective, None, jsonata)
                    .map(Some)
            }
            Kind::Fail { error, cause } => {
                let mut ec = EvalContext::new(raw, ctx, &th.vars, ent);
                let error = fail_field(error.as_ref(), &mut ec, "Error")?;
                let cause = fail_field(cause.as_ref(), &mut ec, "Cause")?;
                Ok(Some(Produced::Fail(Failure {
                    error: error.unwrap_or_default(),
                    cause,
                    ..Default::default()
                })))
            }
            Kind::Choice { choices, default } => {
                let mut chosen: Option<&crate::model::ChoiceBranch> = None;
                {
                    let mut ec = EvalContext::new(&effective, ctx, &th.vars, ent);
                    for c in choices {
                        if c.rule.evaluate(&mut ec)? {
                            chosen = Some(c);
                            break;
                        }
                    }
                }
                let next = match (chosen, default) {
                    (Some(c), _) => c.next.clone(),
                    (None, Some(d)) => d.clone(),
                    (None, None) => {
                        return Err(StatesError::new(error::NO_CHOICE_MATCHED, "No Matches!"));
                    }
                };
                // Rule-level Assign/Output (JSONata) win over the state's.
                let mut ec = EvalContext::new(&effective, ctx, &th.vars, ent);
                let mut assigned = match &st.assign {
                    Some(a) => Some(render_assign(a, &mut ec)?),
                    None => None,
                };
                if let Some(a) = chosen.and_then(|c| c.assign.as_ref()) {
                    let extra = render_assign(a, &mut ec)?;
                    assigned.get_or_insert_with(Map::new).extend(extra);
                }
                let template = chosen
                    .and_then(|c| c.output.as_ref())
                    .or(st.output.as_ref());
                let output = if jsonata {
                    match template {
                        Some(t) => t.render(&mut ec)?,
                        None => {
                            drop(effective);
                            std::mem::take(raw)
                        }
                    }
                } else if st.input_path == PathField::Default
                    && st.output_path == PathField::Default
                {
                    // A Choice passes its input on: move it.
                    drop(effective);
                    std::mem::take(raw)
                } else {
                    select_path(&st.output_path, &effective, ctx, &th.vars, ec.entropy)?
                        .into_owned()
                };
                Ok(Some(Produced::Next(Some(next), output, assigned)))
            }
            Kind::Wait { wait } => {
                let fire_at = {
                    let mut ec = EvalContext::new(&effective, ctx, &th.vars, ent);
                    wait_until(wait, &mut ec, self.now)?
                };
                let fire_at = self.deadline(fire_at);
                let token = self.token();
                self.step
                    .commands
                    .push(Command::StartTimer { token, fire_at });
                th.phase = Phase::Sleep {
                    token,
                    retry: false,
                };
                Ok(None)
            }
            Kind::Task {
                resource,
                timeout_seconds,
                heartbeat_seconds,
            } => {
                let arguments = if jsonata {
                    let mut ec = EvalContext::new(raw, ctx, &th.vars, ent);
                    Some(match &st.arguments {
                        Some(a) => a.render(&mut ec)?,
                        None => raw.clone(),
                    })
                } else {
                    None
                };
                // TimeoutSecondsPath/HeartbeatSecondsPath select from the state input (after
                // InputPath), not from what Parameters built: AWS's Task example pairs
                // `"Parameters": {"JobName": "myGlueJob"}` with `"$.params.maxTime"`.
                let state_input = if !jsonata && st.parameters.is_some() {
                    Some(select_path(&st.input_path, raw, ctx, &th.vars, ent)?)
                } else {
                    None
                };
                let (timeout, heartbeat) = {
                    let input = state_input.as_deref().unwrap_or(&effective);
                    let mut ec = EvalContext::new(input, ctx, &th.vars, ent);
                    (
                        setting_u64(timeout_seconds.as_ref(), &mut ec, "TimeoutSeconds")?,
                        setting_u64(heartbeat_seconds.as_ref(), &mut ec, "HeartbeatSeconds")?,
                    )
                };
                drop(state_input);
                // JSONPath: the effective input is the task's input (moved when rendered).
                let args = arguments.unwrap_or_else(|| effective.into_owned());
                self.schedule(th, st, resource, args, timeout, heartbeat)?;
                Ok(None)
            }
            Kind::Parallel { branches } => {
                let input = if jsonata {
                    let mut ec = EvalContext::new(raw, ctx, &th.vars, ent);
                    match &st.arguments {
                        Some(a) => a.render(&mut ec)?,
                        None => raw.clone(),
                    }
                } else {
                    effective.into_owned()
                };
                let ev = self.event(EventType::ParallelStateStarted, th.cursor);
                self.push(ev);
                let started = self.last_id();
                th.cursor = started;
                let ch = Children {
                    is_map: false,
                    items: vec![input; branches.len()],
                    effective: Value::Null,
                    next: 0,
                    running: Vec::new(),
                    results: vec![None; branches.len()],
                    max_concurrency: 0,
                    failures: 0,
                    tolerated_count: None,
                    tolerated_pct: None,
                    started_id: started,
                };
                th.phase = Phase::Children(Box::new(ch));
                Ok(None)
            }
            Kind::Map {
                distributed,
                items_path,
                items,
                max_concurrency,
                tolerated_failure_count,
                tolerated_failure_percentage,
                ..
            } => {
                if *distributed {
                    return Err(StatesError::runtime(
                        "distributed Map (ProcessorConfig Mode DISTRIBUTED) is not supported by the local engine; use Mode INLINE",
                    ));
                }
                let mut ec = EvalContext::new(&effective, ctx, &th.vars, ent);
                let max_c = setting_u64(max_concurrency.as_ref(), &mut ec, "MaxConcurrency")?;
                let list = if jsonata {
                    match items {
                        Some(Expr::Jsonata(t)) => t.render(&mut ec)?,
                        Some(Expr::Literal(v)) => v.clone(),
                        None => raw.clone(),
                    }
                } else {
                    select_path(items_path, &effective, ctx, &th.vars, ec.entropy)?.into_owned()
                };
                let list = match list {
                    Value::Array(a) => a,
                    other => {
                        return Err(StatesError::query(format!(
                            "Map state input must be an array but was: {}",
                            json_text(&other)
                        )));
                    }
                };
                let mut ec = EvalContext::new(&effective, ctx, &th.vars, ent);
                let tc = setting_f64(
                    tolerated_failure_count.as_ref(),
                    &mut ec,
                    "ToleratedFailureCount",
                )?;
                let tp = setting_f64(
                    tolerated_failure_percentage.as_ref(),
                    &mut ec,
                    "ToleratedFailurePercentage",
                )?;
                let mut ev = self.event(EventType::MapStateStarted, th.cursor);
                if let Some(e) = ev.as_mut() {
                    e.map_state_started_event_details =
                        Some(Box::new(history::MapStateStartedEventDetails {
                            length: list.len() as u64,
                        }));
                }
                self.push(ev);
                let started = self.last_id();
                th.cursor = started;
                let n = list.len();
                let ch = Children {
                    is_map: true,
                    items: list,
                    effective: effective.into_owned(),
                    next: 0,
                    running: Vec::new(),
                    results: vec![None; n],
                    max_concurrency: max_c.unwrap_or(0) as usize,
                    failures: 0,
                    tolerated_count: tc.map(|v| v as u64),
                    tolerated_pct: tp,
                    started_id: started,
                };
                th.phase = Phase::Children(Box::new(ch));
                Ok(None)
            }
        }
    }

    /// Applies ResultSelector/ResultPath/OutputPath (JSONPath) or Output (JSONata), and Assign.
    ///
    /// `raw` is the state's input, lent by the caller (who puts it back into the thread): on
    /// success the output may have been built in it and taken from it (ResultPath writing into
    /// the input is the common case, and copying the whole state data for it was the biggest
    /// cost of a large run); on failure it is untouched, for Retry and Catch.
    #[allow(clippy::too_many_arguments)]
    fn finish_state(
        &mut self,
        th: &Thread,
        st: &State,
        ctx: &Value,
        ent: &mut SplitMix64,
        raw: &mut Value,
        result: Value,
        next: Option<String>,
        jsonata: bool,
    ) -> Result<Produced, StatesError> {
        if jsonata {
            let (assigned, output) = {
                let mut ec = EvalContext::new(raw, ctx, &th.vars, ent).with_result(&result);
                jsonata_assign_and_output(st, &mut ec)?
            };
            return Ok(Produced::Next(next, output.unwrap_or(result), assigned));
        }
        let result = match &st.result_selector {
            Some(t) => {
                let mut ec = EvalContext::new(&result, ctx, &th.vars, ent);
                t.render(&mut ec)?
            }
            None => result,
        };
        let assigned = match &st.assign {
            Some(a) => {
                let mut ec = EvalContext::new(&result, ctx, &th.vars, ent);
                Some(render_assign(a, &mut ec)?)
            }
            None => None,
        };
        if st.output_path == PathField::Default {
            // Nothing can fail after ResultPath: build the output in the input itself.
            let output = match (&st.kind, &st.result_path) {
                (Kind::Succeed, _) | (_, ResultPathField::Default) => result,
                (_, ResultPathField::Null) => std::mem::take(raw),
                (_, ResultPathField::Path(rp)) => {
                    rp.set_in_place(raw, result)?;
                    std::mem::take(raw)
                }
            };
            return Ok(Produced::Next(next, output, assigned));
        }
        let combined = if matches!(st.kind, Kind::Succeed) {
            result
        } else {
            apply_result_path(&st.result_path, raw.clone(), result)?
        };
        let output = select_path(&st.output_path, &combined, ctx, &th.vars, ent)?.into_owned();
        Ok(Produced::Next(next, output, assigned))
    }

    fn schedule(
        &mut self,
        th: &mut Thread,
        st: &State,
        resource: &str,
        args: Value,
        timeout: Option<u64>,
        heartbeat: Option<u64>,
    ) -> Result<(), StatesError> {
        let lambda = if resource == LAMBDA_INVOKE
            || resource.starts_with("arn:aws:states:::lambda:invoke")
        {
            Some(LambdaKind::Invoke)
        } else if resource.starts_with("arn:aws:lambda:") {
            Some(LambdaKind::Function)
        } else {
            None
        };
        let target = match lambda {
            Some(LambdaKind::Invoke) => args
                .get("FunctionName")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    StatesError::runtime(
                        "arn:aws:states:::lambda:invoke needs \"FunctionName\" in Parameters/Arguments",
                    )
                })?
                .to_owned(),
            _ => resource.to_owned(),
        };
        let token = self.token();
        match lambda {
            Some(LambdaKind::Function) => {
                let mut e = self.event(EventType::LambdaFunctionScheduled, th.cursor);
                if let Some(e) = e.as_mut() {
                    e.lambda_function_scheduled_event_details =
                        Some(Box::new(history::LambdaFunctionScheduledEventDetails {
                            resource: resource.to_owned(),
                            input: Some(json_text(&args)),
                            input_details: Some(history::DataDetails::default()),
                            timeout_in_seconds: timeout,
                        }));
                }
                self.push(e);
                th.cursor = self.last_id();
                let e = self.event(EventType::LambdaFunctionStarted, th.cursor);
                self.push(e);
                th.cursor = self.last_id();
            }
            _ => {
                let mut e = self.event(EventType::TaskScheduled, th.cursor);
                if let Some(e) = e.as_mut() {
                    let (resource_type, resource) = resource_parts(resource);
                    e.task_scheduled_event_details =
                        Some(Box::new(history::TaskScheduledEventDetails {
                            resource_type,
                            resource,
                            region: "local".into(),
                            parameters: json_text(&args),
                            timeout_in_seconds: timeout,
                            heartbeat_in_seconds: heartbeat,
                        }));
                }
                self.push(e);
                th.cursor = self.last_id();
                let mut e = self.event(EventType::TaskStarted, th.cursor);
                if let Some(e) = e.as_mut() {
                    let (resource_type, resource) = resource_parts(resource);
                    e.task_started_event_details = Some(Box::new(history::TaskResourceDetails {
                        resource_type,
                        resource,
                    }));
                }
                self.push(e);
                th.cursor = self.last_id();
            }
        }
        // The handler's input, moved out of the rendered parameters (lambda:invoke sends
        // only the Payload).
        let input = match (lambda, args) {
            (Some(LambdaKind::Invoke), Value::Object(mut m)) => {
                m.swap_remove("Payload").unwrap_or(Value::Null)
            }
            (Some(LambdaKind::Invoke), _) => Value::Null,
            (_, args) => args,
        };
        let timeout_token = match timeout {
            Some(t) => {
                let tt = self.token();
                let fire_at = self.after(Duration::from_secs(t));
                self.step
                    .commands
                    .push(Command::StartTimer { token: tt, fire_at });
                Some(tt)
            }
            None => None,
        };
        // HeartbeatSeconds: a second timer, re-armed by every heartbeat (Event::TaskHeartbeat).
        let heartbeat_timer = heartbeat.map(|h| {
            let ht = self.token();
            let fire_at = self.after(Duration::from_secs(h));
            self.step
                .commands
                .push(Command::StartTimer { token: ht, fire_at });
            (h, ht)
        });
        self.step.commands.push(Command::ScheduleTask {
            token,
            state: st.name.clone(),
            resource: resource.to_owned(),
            target,
            input,
            timeout_seconds: timeout,
            heartbeat_seconds: heartbeat,
        });
        th.phase = Phase::Task {
            token,
            timeout_token,
            lambda,
            heartbeat: heartbeat_timer,
        };
        Ok(())
    }

    /// Delivers an event to the thread waiting for its token. `Ok(false)`: nobody waits.
    /// The matching task's output is taken out of `ev` (not copied).
    fn deliver(&mut self, th: &mut Thread, ev: &mut Event) -> Result<bool, ()> {
        let m = machine_at(self.def, &th.machine);
        let st = &m.states[th.state as usize];
        match &mut th.phase {
            Phase::Task {
                token,
                timeout_token,
                lambda,
                heartbeat,
            } => {
                let (token, timeout_token, lambda) = (*token, *timeout_token, *lambda);
                let heartbeat_timer = heartbeat.map(|(_, timer)| timer);
                // The task is over (result, failure or one of its timers fired): its other
                // timers are not needed any more.
                let cancel = |run: &mut Self, fired: Option<u64>| {
                    for t in [timeout_token, heartbeat_timer].into_iter().flatten() {
                        if Some(t) != fired {
                            run.step.commands.push(Command::CancelTimer { token: t });
                        }
                    }
                };
                let resource = || match &st.kind {
                    Kind::Task { resource, .. } => resource_parts(resource),
                    _ => (String::new(), String::new()),
                };
                match ev {
                    Event::TaskSucceeded { token: t, output }
                    | Event::TaskResponded { token: t, output }
                        if *t == token =>
                    {
                        let output = std::mem::take(output);
                        let whole = matches!(ev, Event::TaskResponded { .. });
                        let output = match lambda {
                            Some(LambdaKind::Invoke) if !whole => lambda_envelope(output),
                            _ => output,
                        };
                        let ty = if lambda == Some(LambdaKind::Function) {
                            EventType::LambdaFunctionSucceeded
                        } else {
                            EventType::TaskSucceeded
                        };
                        let mut e = self.event(ty, th.cursor);
                        if let Some(e) = e.as_mut() {
                            if ty == EventType::LambdaFunctionSucceeded {
                                e.lambda_function_succeeded_event_details =
                                    Some(Box::new(history::ExecutionSucceededEventDetails {
                                        output: Some(json_text(&output)),
                                        output_details: Some(history::DataDetails::default()),
                                    }));
                            } else {
                                let (res_type, res_name) = resource();
                                e.task_succeeded_event_details =
                                    Some(Box::new(history::TaskSucceededEventDetails {
                                        resource_type: res_type,
                                        resource: res_name,
                                        output: Some(json_text(&output)),
                                        output_details: Some(history::DataDetails::default()),
                                    }));
                            }
                        }
                        self.push(e);
                        th.cursor = self.last_id();
                        cancel(self, None);
                        let p = if let Err(f) = check_size(&output, &st.name) {
                            Produced::Fail(f)
                        } else {
                            let mut raw = std::mem::take(&mut th.input);
                            let ctx = self.context(th, st);
                            let mut ent = self.entropy.clone();
                            let jsonata = st.query_language == crate::model::QueryLanguage::Jsonata;
                            let r = self.finish_state(
                                th,
                                st,
                                &ctx,
                                &mut ent,
                                &mut raw,
                                output,
                                next_of(st),
                                jsonata,
                            );
                            th.input = raw;
                            self.entropy = ent;
                            self.recycle(ctx);
                            match r {
                                Ok(p) => p,
                                Err(e) => Produced::Fail(Failure::from(
                                    e.in_state(&st.name, th.entered_id as u64),
                                )),
                            }
                        };
                        th.phase = Phase::Run;
                        self.complete(th, st, p);
                        Ok(true)
                    }
                    Event::TaskFailed {
                        token: t,
                        error,
                        cause,
                    } if *t == token => {
                        cancel(self, None);
                        let f = Failure {
                            error: error.clone(),
                            cause: cause.clone(),
                            heartbeat: false,
                        };
                        self.task_failed(th, st, lambda, f, false);
                        Ok(true)
                    }
                    Event::TimerFired { token: t } if Some(*t) == timeout_token => {
                        cancel(self, timeout_token);
                        let f = Failure {
                            error: error::TIMEOUT.to_owned(),
                            cause: None,
                            heartbeat: false,
                        };
                        self.task_failed(th, st, lambda, f, true);
                        Ok(true)
                    }
                    // A missed heartbeat: AWS records the same TaskTimedOut (error
                    // `States.Timeout`, no cause) as for TimeoutSeconds; only Retry/Catch can
                    // tell them apart, through `States.HeartbeatTimeout`.
                    Event::TimerFired { token: t } if Some(*t) == heartbeat_timer => {
                        cancel(self, heartbeat_timer);
                        let f = Failure {
                            error: error::TIMEOUT.to_owned(),
                            cause: None,
                            heartbeat: true,
                        };
                        self.task_failed(th, st, lambda, f, true);
                        Ok(true)
                    }
                    Event::TaskHeartbeat { token: t } if *t == token => {
                        if let Some((seconds, old)) = *heartbeat {
                            self.step.commands.push(Command::CancelTimer { token: old });
                            let timer = self.token();
                            let fire_at = self.after(Duration::from_secs(seconds));
                            self.step.commands.push(Command::StartTimer {
                                token: timer,
                                fire_at,
                            });
                            *heartbeat = Some((seconds, timer));
                        }
                        Ok(true)
                    }
                    _ => Ok(false),
                }
            }
            Phase::Sleep { token, retry } => match ev {
                Event::TimerFired { token: t } if *t == *token => {
                    if *retry {
                        th.phase = Phase::Run;
                        // A retried Map/Parallel starts again without a new Entered event.
                    } else {
                        // Wait state: exit with the effective output.
                        let mut raw = std::mem::take(&mut th.input);
                        let ctx = self.context(th, st);
                        let mut ent = self.entropy.clone();
                        let jsonata = st.query_language == crate::model::QueryLanguage::Jsonata;
                        let r = self.wait_output(th, st, &ctx, &mut ent, &mut raw, jsonata);
                        th.input = raw;
                        self.entropy = ent;
                        self.recycle(ctx);
                        let p = match r {
                            Ok(p) => p,
                            Err(e) => Produced::Fail(Failure::from(
                                e.in_state(&st.name, th.entered_id as u64),
                            )),
                        };
                        th.phase = Phase::Run;
                        self.complete(th, st, p);
                    }
                    Ok(true)
                }
                _ => Ok(false),
            },
            Phase::Children(ch) => {
                for (_, child) in ch.running.iter_mut() {
                    if self.deliver(child, ev)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    /// A Wait state's output. `raw` is lent as in [`Run::finish_state`]: taken only by an
    /// output that is the whole input.
    fn wait_output(
        &mut self,
        th: &Thread,
        st: &State,
        ctx: &Value,
        ent: &mut SplitMix64,
        raw: &mut Value,
        jsonata: bool,
    ) -> Result<Produced, StatesError> {
        if jsonata {
            let (assigned, out) = {
                let mut ec = EvalContext::new(raw, ctx, &th.vars, ent);
                jsonata_assign_and_output(st, &mut ec)?
            };
            let out = out.unwrap_or_else(|| std::mem::take(raw));
            return Ok(Produced::Next(next_of(st), out, assigned));
        }
        let (assigned, out) = {
            let effective = select_path(&st.input_path, raw, ctx, &th.vars, ent)?;
            let mut ec = EvalContext::new(&effective, ctx, &th.vars, ent);
            let assigned = match &st.assign {
                Some(a) => Some(render_assign(a, &mut ec)?),
                None => None,
            };
            let out = if st.input_path == PathField::Default && st.output_path == PathField::Default
            {
                None
            } else {
                Some(select_path(&st.output_path, &effective, ctx, &th.vars, ent)?.into_owned())
            };
            (assigned, out)
        };
        let out = out.unwrap_or_else(|| std::mem::take(raw));
        Ok(Produced::Next(next_of(st), out, assigned))
    }

    fn task_failed(
        &mut self,
        th: &mut Thread,
        st: &State,
        lambda: Option<LambdaKind>,
        failure: Failure,
        timed_out: bool,
    ) {
        let (error, cause) = (failure.error.clone(), failure.cause.clone());
        let (res_type, res_name) = match &st.kind {
            Kind::Task { resource, .. } => resource_parts(resource),
            _ => (String::new(), String::new()),
        };
        let ty = match (lambda == Some(LambdaKind::Function), timed_out) {
            (true, false) => EventType::LambdaFunctionFailed,
            (true, true) => EventType::LambdaFunctionTimedOut,
            (false, false) => EventType::TaskFailed,
            (false, true) => EventType::TaskTimedOut,
        };
        let mut e = self.event(ty, th.cursor);
        if let Some(e) = e.as_mut() {
            let ec = history::ErrorCauseDetails {
                error: Some(error.clone()),
                cause: cause.clone(),
            };
            let tf = history::TaskFailedEventDetails {
                resource_type: res_type,
                resource: res_name,
                error: Some(error.clone()),
                cause: cause.clone(),
            };
            match ty {
                EventType::LambdaFunctionFailed => {
                    e.lambda_function_failed_event_details = Some(Box::new(ec))
                }
                EventType::LambdaFunctionTimedOut => {
                    e.lambda_function_timed_out_event_details = Some(Box::new(ec))
                }
                EventType::TaskFailed => e.task_failed_event_details = Some(Box::new(tf)),
                _ => e.task_timed_out_event_details = Some(Box::new(tf)),
            }
        }
        self.push(e);
        th.cursor = self.last_id();
        th.phase = Phase::Run;
        self.fail_state(th, st, failure, true);
    }

    /// Advances a Map's iterations or a Parallel's branches. `Some` when the state is done.
    fn advance_children(
        &mut self,
        th: &mut Thread,
        st: &State,
        ch: &mut Children,
    ) -> Option<Produced> {
        let state_index = th.state;
        let mut failed: Option<(Failure, i64)> = None;
        loop {
            // Start new children while allowed.
            let limit = if ch.max_concurrency == 0 {
                usize::MAX
            } else {
                ch.max_concurrency
            };
            let mut progressed = false;
            // Advance running children first (they may have been woken by an event).
            let mut i = 0;
            while i < ch.running.len() {
                let (idx, child) = &mut ch.running[i];
                let idx = *idx;
                let m = machine_at(self.def, &child.machine);
                self.advance(child, m);
                if let Phase::Done(o) = &child.phase {
                    let o = o.clone();
                    let child_cursor = child.cursor;
                    ch.running.remove(i);
                    progressed = true;
                    match o {
                        Outcome::Ok(v) => {
                            ch.results[idx] = Some(v);
                            if ch.is_map {
                                let mut e =
                                    self.event(EventType::MapIterationSucceeded, child_cursor);
                                if let Some(e) = e.as_mut() {
                                    e.map_iteration_succeeded_event_details =
                                        Some(Box::new(history::MapIterationEventDetails {
                                            name: st.name.clone(),
                                            index: idx as u64,
                                        }));
                                }
                                self.push(e);
                            }
                            th.cursor = child_cursor;
                        }
                        Outcome::Err(f) => {
                            if ch.is_map {
                                let mut e = self.event(EventType::MapIterationFailed, child_cursor);
                                if let Some(e) = e.as_mut() {
                                    e.map_iteration_failed_event_details =
                                        Some(Box::new(history::MapIterationEventDetails {
                                            name: st.name.clone(),
                                            index: idx as u64,
                                        }));
                                }
                                self.push(e);
                            }
                            th.cursor = child_cursor;
                            ch.failures += 1;
                            if ch.is_map && self.tolerated(ch) {
                                let mut err_out = Map::new();
                                err_out.insert("Error".into(), Value::String(f.error.clone()));
                                if let Some(c) = &f.cause {
                                    err_out.insert("Cause".into(), Value::String(c.clone()));
                                }
                                ch.results[idx] = Some(Value::Object(err_out));
                            } else {
                                let f = if ch.is_map
                                    && (ch.tolerated_count.is_some() || ch.tolerated_pct.is_some())
                                {
                                    Failure {
                                        error: error::EXCEED_TOLERATED_FAILURE_THRESHOLD.into(),
                                        cause: Some(format!(
                                            "The specified tolerated failure threshold was exceeded ({} failed)",
                                            ch.failures
                                        )),
                                        ..Default::default()
                                    }
                                } else {
                                    f
                                };
                                failed = Some((f, child_cursor));
                                break;
                            }
                        }
                    }
                } else {
                    i += 1;
                }
            }
            if failed.is_some() {
                break;
            }
            if ch.running.len() < limit && ch.next < ch.items.len() {
                let idx = ch.next;
                ch.next += 1;
                progressed = true;
                let mut path = th.machine.clone();
                let (child_machine, input, map_item) = if ch.is_map {
                    path.push((state_index, 0));
                    let m = machine_at(self.def, &path);
                    let item = std::mem::take(&mut ch.items[idx]);
                    let map_item = json!({"Index": idx, "Value": item});
                    let input = match self.item_input(th, st, ch, &map_item) {
                        Ok(v) => v,
                        Err(e) => {
                            let f = Failure::from(e.in_state(&st.name, th.entered_id as u64));
                            failed = Some((f, th.cursor));
                            break;
                        }
                    };
                    let mut e = self.event(EventType::MapIterationStarted, th.cursor);
                    if let Some(e) = e.as_mut() {
                        e.map_iteration_started_event_details =
                            Some(Box::new(history::MapIterationEventDetails {
                                name: st.name.clone(),
                                index: idx as u64,
                            }));
                    }
                    self.push(e);
                    (m, input, Some(map_item))
                } else {
                    path.push((state_index, idx as u32));
                    let m = machine_at(self.def, &path);
                    (m, std::mem::take(&mut ch.items[idx]), None)
                };
                let cursor = if ch.is_map {
                    self.last_id()
                } else {
                    ch.started_id
                };
                let mut child = Thread::new(
                    path,
                    child_machine,
                    cursor,
                    th.vars.clone(),
                    map_item,
                    input,
                );
                self.advance(&mut child, child_machine);
                // Loop back to collect it if it finished synchronously.
                ch.running.push((idx, child));
            }
            if failed.is_some() {
                break;
            }
            if !progressed {
                break;
            }
        }
        if let Some((f, cursor)) = failed {
            // Abort the rest (their pending tasks/timers become stale tokens).
            for (idx, child) in ch.running.drain(..) {
                if ch.is_map {
                    let mut e = self.event(EventType::MapIterationAborted, child.cursor);
                    if let Some(e) = e.as_mut() {
                        e.map_iteration_aborted_event_details =
                            Some(Box::new(history::MapIterationEventDetails {
                                name: st.name.clone(),
                                index: idx as u64,
                            }));
                    }
                    self.push(e);
                }
            }
            th.cursor = cursor;
            let will_retry = st
                .retry
                .iter()
                .position(|r| failure_matches(&r.error_equals, &f))
                .is_some_and(|i| {
                    th.attempts.get(i).copied().unwrap_or(0) < st.retry[i].max_attempts
                })
                && f.error != error::RUNTIME;
            if !will_retry {
                let ty = if ch.is_map {
                    EventType::MapStateFailed
                } else {
                    EventType::ParallelStateFailed
                };
                let e = self.event(ty, th.cursor);
                self.push(e);
                th.cursor = self.last_id();
            }
            let f = if !ch.is_map && f.error != error::RUNTIME {
                // AWS reports the branch's own error name for a failed Parallel.
                f
            } else {
                f
            };
            return Some(Produced::Fail(f));
        }
        if !ch.running.is_empty() || ch.next < ch.items.len() {
            return None;
        }
        // All done.
        let results: Vec<Value> = ch
            .results
            .iter_mut()
            .map(|r| r.take().unwrap_or(Value::Null))
            .collect();
        let ty = if ch.is_map {
            EventType::MapStateSucceeded
        } else {
            EventType::ParallelStateSucceeded
        };
        // *StateSucceeded follows the last event of the children; Exited follows the same one.
        let last = self.last_id();
        let e = self.event(ty, last);
        self.push(e);
        th.cursor = last;
        let mut raw = std::mem::take(&mut th.input);
        let ctx = self.context(th, st);
        let mut ent = self.entropy.clone();
        let jsonata = st.query_language == crate::model::QueryLanguage::Jsonata;
        let r = self.finish_state(
            th,
            st,
            &ctx,
            &mut ent,
            &mut raw,
            Value::Array(results),
            next_of(st),
            jsonata,
        );
        th.input = raw;
        self.entropy = ent;
        self.recycle(ctx);
        Some(match r {
            Ok(p) => p,
            Err(e) => Produced::Fail(Failure::from(e.in_state(&st.name, th.entered_id as u64))),
        })
    }

    fn tolerated(&self, ch: &Children) -> bool {
        let mut ok = false;
        if let Some(c) = ch.tolerated_count {
            ok |= (ch.failures as u64) <= c;
        }
        if let Some(p) = ch.tolerated_pct {
            let total = ch.results.len().max(1) as f64;
            ok |= (ch.failures as f64) * 100.0 / total <= p;
        }
        ok
    }

    fn item_input(
        &mut self,
        th: &Thread,
        st: &State,
        ch: &Children,
        map_item: &Value,
    ) -> Result<Value, StatesError> {
        let Kind::Map { item_selector, .. } = &st.kind else {
            return Ok(map_item["Value"].clone());
        };
        let Some(sel) = item_selector else {
            return Ok(map_item["Value"].clone());
        };
        let mut ctx = self.context(th, st);
        ctx["Map"] = json!({ "Item": map_item });
        let mut ent = self.entropy.clone();
        let input = if st.query_language == crate::model::QueryLanguage::Jsonata {
            &th.input
        } else {
            &ch.effective
        };
        let r = {
            let mut ec = EvalContext::new(input, &ctx, &th.vars, &mut ent);
            match sel {
                Assign::JsonPath(t) => t.render(&mut ec),
                Assign::Jsonata(t) => t.render(&mut ec),
            }
        };
        self.entropy = ent;
        self.recycle(ctx);
        r
    }
}

fn next_of(st: &State) -> Option<String> {
    match &st.transition {
        Some(Transition::Next(n)) => Some(n.clone()),
        _ => None,
    }
}

/// `States.ALL` matches everything except the terminal errors; `States.TaskFailed` matches
/// every error except `States.Timeout` (Step Functions developer guide, "Error names").
fn error_matches(list: &[String], error: &str) -> bool {
    list.iter().any(|e| {
        e == error
            || (e == error::ALL && error != error::RUNTIME && error != error::DATA_LIMIT_EXCEEDED)
            || (e == error::TASK_FAILED
                && error != error::TIMEOUT
                && error != error::RUNTIME
                && error != error::DATA_LIMIT_EXCEEDED)
    })
}

/// [`error_matches`], plus `States.HeartbeatTimeout` for a missed heartbeat: AWS raises
/// `States.Timeout` for both kinds of task timeout and lets Retry/Catch single out the
/// heartbeat kind by that name ("`States.HeartbeatTimeout` ... only available inside the
/// Catch and Retry fields": Step Functions developer guide, "Error names").
fn failure_matches(list: &[String], f: &Failure) -> bool {
    error_matches(list, &f.error)
        || (f.heartbeat && list.iter().any(|e| e == error::HEARTBEAT_TIMEOUT))
}

fn check_size(v: &Value, state: &str) -> Result<(), Failure> {
    // Cheap pre-check: small scalars and tiny containers cannot exceed the limit.
    let small = match v {
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::String(s) => s.len() < 1024,
        _ => true,
    };
    if small || serialized_len_at_most(v, MAX_PAYLOAD_BYTES) {
        return Ok(());
    }
    let n = json_len(v);
    if n > MAX_PAYLOAD_BYTES {
        return Err(Failure {
            error: error::DATA_LIMIT_EXCEEDED.into(),
            cause: Some(format!(
                "The state/task '{state}' returned a result with a size exceeding the maximum number of bytes service limit."
            )),
            ..Default::default()
        });
    }
    Ok(())
}

/// The workflow-variable limits ([`MAX_VARIABLE_BYTES`] and its siblings) for what `state`'s
/// `Assign` sets, given the variables already in scope. Exceeding one fails the state with
/// `States.DataLimitExceeded` (terminal, like the payload limit: no Retry or Catch sees it).
fn check_assigned(
    assigned: &Map<String, Value>,
    vars: &Map<String, Value>,
    state: &str,
) -> Result<(), Failure> {
    let fail = |cause: String| Failure {
        error: error::DATA_LIMIT_EXCEEDED.into(),
        cause: Some(cause),
        ..Default::default()
    };
    let mut assign_total = 0usize;
    for (name, v) in assigned {
        let n = json_len(v);
        if n > MAX_VARIABLE_BYTES {
            return Err(fail(format!(
                "The state '{state}' assigns {n} bytes to the variable '{name}', more than the {MAX_VARIABLE_BYTES} bytes a variable may hold. Store the data elsewhere (S3, DynamoDB) and keep a reference in the variable."
            )));
        }
        assign_total += n;
    }
    if assign_total > MAX_ASSIGN_BYTES {
        return Err(fail(format!(
            "The state '{state}' assigns {assign_total} bytes of variables in one Assign, more than the {MAX_ASSIGN_BYTES} bytes allowed. Split the assignments across states."
        )));
    }
    let kept: usize = vars
        .iter()
        .filter(|(k, _)| !assigned.contains_key(*k))
        .map(|(_, v)| json_len(v))
        .sum();
    let total = kept + assign_total;
    if total > MAX_VARIABLES_TOTAL_BYTES {
        return Err(fail(format!(
            "The state '{state}' would bring the execution's variables to {total} bytes, more than the {MAX_VARIABLES_TOTAL_BYTES} bytes allowed in total."
        )));
    }
    Ok(())
}

/// The length of `v`'s compact JSON text, counted without building it.
fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing a Value to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// Whether `v` certainly serialises to at most `limit` bytes, judged from an upper bound that
/// costs no allocation (every state output is checked; serialising each one to measure it
/// was a visible share of a big run). `false` means "maybe larger": measure exactly.
fn serialized_len_at_most(v: &Value, limit: usize) -> bool {
    fn take(left: &mut usize, n: usize) -> bool {
        match left.checked_sub(n) {
            Some(rest) => {
                *left = rest;
                true
            }
            None => false,
        }
    }
    fn bound(v: &Value, left: &mut usize) -> bool {
        match v {
            Value::Null | Value::Bool(_) => take(left, 5),
            // An f64 or i64/u64 never prints longer than 24 characters.
            Value::Number(_) => take(left, 24),
            // Worst case every byte is escaped as \u00XX.
            Value::String(s) => take(left, s.len() * 6 + 2),
            Value::Array(a) => take(left, a.len() + 2) && a.iter().all(|x| bound(x, left)),
            Value::Object(m) => {
                take(left, m.len() * 2 + 2)
                    && m.iter()
                        .all(|(k, x)| take(left, k.len() * 6 + 2) && bound(x, left))
            }
        }
    }
    let mut left = limit;
    bound(v, &mut left)
}

// Borrows for the default path `$` (the common case): callers that only read the result
// (Parameters, OutputPath) then skip a clone of the whole state data.
fn select_path<'a>(
    p: &PathField,
    input: &'a Value,
    ctx: &Value,
    vars: &Map<String, Value>,
    ent: &mut dyn Entropy,
) -> Result<std::borrow::Cow<'a, Value>, StatesError> {
    match p {
        PathField::Default => Ok(std::borrow::Cow::Borrowed(input)),
        PathField::Null => Ok(std::borrow::Cow::Owned(Value::Object(Map::new()))),
        PathField::Path(path) => {
            let ec = EvalContext::new(input, ctx, vars, ent);
            match path.select(&ec) {
                Some(v) => Ok(std::borrow::Cow::Owned(v.into_owned())),
                None => Err(path.not_found_invalid_path()),
            }
        }
    }
}

fn apply_result_path(p: &ResultPathField, raw: Value, result: Value) -> Result<Value, StatesError> {
    match p {
        ResultPathField::Default => Ok(result),
        ResultPathField::Null => Ok(raw),
        ResultPathField::Path(rp) => rp.set(raw, result),
    }
}

/// A JSONata state's `Assign` and `Output` (None: no `Output`, the state passes its result
/// on), both evaluated before any variable changes, as AWS does.
type AssignedAndOutput = (Option<Map<String, Value>>, Option<Value>);

fn jsonata_assign_and_output(
    st: &State,
    ec: &mut EvalContext<'_>,
) -> Result<AssignedAndOutput, StatesError> {
    let assigned = match &st.assign {
        Some(a) => Some(render_assign(a, ec)?),
        None => None,
    };
    let output = match &st.output {
        Some(t) => Some(t.render(ec)?),
        None => None,
    };
    Ok((assigned, output))
}

fn render_assign(a: &Assign, ec: &mut EvalContext<'_>) -> Result<Map<String, Value>, StatesError> {
    let v = match a {
        Assign::JsonPath(t) => t.render(ec)?,
        Assign::Jsonata(t) => t.render(ec)?,
    };
    match v {
        Value::Object(m) => Ok(m),
        other => Err(StatesError::runtime(format!(
            "Assign must be an object, got {}",
            json_text(&other)
        ))),
    }
}

fn fail_field(
    f: Option<&FailField>,
    ec: &mut EvalContext<'_>,
    name: &str,
) -> Result<Option<String>, StatesError> {
    let v = match f {
        None => return Ok(None),
        Some(FailField::Value(Expr::Literal(v))) => v.clone(),
        Some(FailField::Value(Expr::Jsonata(t))) => t.render(ec)?,
        Some(FailField::Path(p)) => p.evaluate(ec, &format!("{name}Path"))?,
    };
    match v {
        Value::String(s) => Ok(Some(s)),
        Value::Null => Ok(None),
        other => match f {
            Some(FailField::Path(_)) => Ok(Some(json_text(&other))),
            _ => Err(StatesError::query(format!(
                "The {name} field must evaluate to a string, got {}",
                json_text(&other)
            ))),
        },
    }
}

fn setting_value(
    s: Option<&Setting>,
    ec: &mut EvalContext<'_>,
    field: &str,
) -> Result<Option<(Value, Option<JsonPath>)>, StatesError> {
    Ok(match s {
        None => None,
        Some(Setting::Value(Expr::Literal(v))) => Some((v.clone(), None)),
        Some(Setting::Value(Expr::Jsonata(t))) => Some((t.render(ec)?, None)),
        Some(Setting::Path(p)) => match p.select(ec) {
            Some(v) => Some((v.into_owned(), Some(p.clone()))),
            None => {
                return Err(StatesError::runtime(format!(
                    "The {field}Path field refers to a path that could not be found: {}",
                    p.as_str()
                )));
            }
        },
    })
}

fn setting_u64(
    s: Option<&Setting>,
    ec: &mut EvalContext<'_>,
    field: &str,
) -> Result<Option<u64>, StatesError> {
    match setting_value(s, ec, field)? {
        None => Ok(None),
        Some((v, path)) => match v.as_u64().or_else(|| {
            // A *Path may point at a numeric string ("1"), which AWS parses.
            path.as_ref()
                .and(v.as_str())
                .and_then(|s| s.trim().parse::<u64>().ok())
        }) {
            Some(n) => Ok(Some(n)),
            None => Err(match path {
                Some(p) => StatesError::runtime(format!(
                    "The {field}Path field refers to value \"{}\" which is not a valid integer: {}",
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| json_text(&v)),
                    p.as_str()
                )),
                None => StatesError::query(format!(
                    "The {field} field must be a non-negative integer, got {}",
                    json_text(&v)
                )),
            }),
        },
    }
}

fn setting_f64(
    s: Option<&Setting>,
    ec: &mut EvalContext<'_>,
    field: &str,
) -> Result<Option<f64>, StatesError> {
    match setting_value(s, ec, field)? {
        None => Ok(None),
        Some((v, _)) => match v.as_f64() {
            Some(n) if n >= 0.0 => Ok(Some(n)),
            _ => Err(StatesError::runtime(format!(
                "The {field} field must be a non-negative number, got {}",
                json_text(&v)
            ))),
        },
    }
}

/// When a Wait state ends; `Ok(None)` when that is later than a `SystemTime` can hold (the
/// caller bounds it by the execution's 1-year cap anyway).
fn wait_until(
    w: &WaitFor,
    ec: &mut EvalContext<'_>,
    now: SystemTime,
) -> Result<Option<SystemTime>, StatesError> {
    let later = |n: u64| now.checked_add(Duration::from_secs(n));
    let seconds = |v: &Value, what: &str| -> Result<Option<SystemTime>, StatesError> {
        if let Some(n) = v.as_i64() {
            if n < 0 {
                return Err(StatesError::runtime(format!(
                    "The {what} parameter references a negative value: {n}"
                )));
            }
            return Ok(later(n as u64));
        }
        Err(StatesError::runtime(format!(
            "The {what} parameter cannot be parsed as a long value: {}",
            json_text(v)
        )))
    };
    let stamp = |v: &Value, what: &str| -> Result<SystemTime, StatesError> {
        v.as_str()
            .and_then(clock::parse_rfc3339)
            .ok_or_else(|| {
                StatesError::runtime(format!(
                    "The {what} parameter does not reference a valid ISO-8601 extended offset date-time format string: {}",
                    json_text(v)
                ))
            })
    };
    match w {
        WaitFor::Seconds(Expr::Literal(v)) => seconds(v, "Seconds"),
        WaitFor::Seconds(Expr::Jsonata(t)) => {
            let v = t.render(ec)?;
            match v.as_i64() {
                Some(n) if n >= 0 => Ok(later(n as u64)),
                _ => Err(StatesError::query(format!(
                    "The Seconds field must evaluate to a non-negative integer, got {}",
                    json_text(&v)
                ))),
            }
        }
        WaitFor::Timestamp(Expr::Literal(v)) => stamp(v, "Timestamp").map(Some),
        WaitFor::Timestamp(Expr::Jsonata(t)) => {
            let v = t.render(ec)?;
            stamp(&v, "Timestamp")
                .map(Some)
                .map_err(|e| StatesError::query(e.cause))
        }
        WaitFor::SecondsPath(p) => {
            let v = p
                .select(ec)
                .ok_or_else(|| p.not_found_invalid_path())?
                .into_owned();
            if let Some(n) = v.as_i64() {
                if n < 0 {
                    return Err(StatesError::runtime(format!(
                        "The SecondsPath parameter references a negative value: {} == {n}",
                        p.as_str()
                    )));
                }
                return Ok(later(n as u64));
            }
            Err(StatesError::runtime(format!(
                "The SecondsPath parameter cannot be parsed as a long value: {} == {}",
                p.as_str(),
                json_text(&v)
            )))
        }
        WaitFor::TimestampPath(p) => {
            let v = p
                .select(ec)
                .ok_or_else(|| p.not_found_invalid_path())?
                .into_owned();
            v.as_str()
                .and_then(clock::parse_rfc3339)
                .map(Some)
                .ok_or_else(|| {
                    StatesError::runtime(format!(
                        "The TimestampPath parameter does not reference a valid ISO-8601 extended offset date-time format string: {} == {}",
                        p.as_str(),
                        json_text(&v)
                    ))
                })
        }
    }
}

/// Start time + [`MAX_EXECUTION_DURATION`]; `start` is the execution's recorded start time
/// (`now` stands in should it not parse, which the formatter never produces).
fn execution_cap(start: &str, now: SystemTime) -> SystemTime {
    let start = clock::parse_rfc3339(start).unwrap_or(now);
    start.checked_add(MAX_EXECUTION_DURATION).unwrap_or(start)
}

/// `resourceType`/`resource` as Task* history events show them: for
/// `arn:aws:states:::lambda:invoke` → (`lambda`, `invoke`).
fn resource_parts(resource: &str) -> (String, String) {
    if let Some(rest) = resource.strip_prefix("arn:aws:states:::") {
        let mut it = rest.splitn(2, ':');
        let ty = it.next().unwrap_or_default().to_owned();
        let name = it.next().unwrap_or_default().to_owned();
        return (ty, name);
    }
    let parts: Vec<&str> = resource.split(':').collect();
    (
        parts.get(2).copied().unwrap_or_default().to_owned(),
        parts.last().copied().unwrap_or_default().to_owned(),
    )
}

/// The response `arn:aws:states:::lambda:invoke` returns (Lambda Invoke API response as Step
/// Functions serialises it).
fn lambda_envelope(payload: Value) -> Value {
    // Built once: `json!` re-serialises every field, for every task result.
    static ENVELOPE: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    let template = ENVELOPE.get_or_init(|| {
        match json!({
            "ExecutedVersion": "$LATEST",
            "Payload": null,
            "SdkHttpMetadata": {
                "AllHttpHeaders": {
                    "X-Amz-Executed-Version": ["$LATEST"],
                    "Content-Type": ["application/json"],
                },
                "HttpHeaders": {
                    "X-Amz-Executed-Version": "$LATEST",
                    "Content-Type": "application/json",
                },
                "HttpStatusCode": 200,
            },
            "SdkResponseMetadata": {"RequestId": "00000000-0000-0000-0000-000000000000"},
            "StatusCode": 200,
        }) {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    });
    let mut envelope = template.clone();
    envelope.insert("Payload".into(), payload);
    Value::Object(envelope)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialized_length_bound_never_understates() {
        let samples = [
            json!(null),
            json!({"a": "\u{1}\"\\", "b": [1, 2.5, -3e300, true], "ü": {"x": null}}),
            json!(["x".repeat(100), {"k": "v"}]),
            json!(u64::MAX),
        ];
        for v in samples {
            let exact = serde_json::to_vec(&v).unwrap().len();
            assert!(serialized_len_at_most(&v, exact * 6 + 64), "{v}");
            for limit in 0..exact {
                assert!(!serialized_len_at_most(&v, limit), "{v} fits {limit}?");
            }
        }
    }

    #[test]
    fn waiting_tokens_follow_the_task_and_its_timeout() {
        let def = Definition::parse(
            r#"{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"arn:aws:lambda:us-east-1:1:function:f","TimeoutSeconds":5,"End":true}}}"#,
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
        let token_of = |task: bool| {
            step.commands.iter().find_map(|c| match c {
                Command::ScheduleTask { token, .. } if task => Some(*token),
                Command::StartTimer { token, .. } if !task => Some(*token),
                _ => None,
            })
        };
        let (task, timeout) = (token_of(true).unwrap(), token_of(false).unwrap());
        assert_eq!(ex.waiting_tokens(), [task, timeout].into_iter().collect());
        // The timeout fires: the task is not waited on any more (its late result is stale).
        ex.handle(&def, Event::TimerFired { token: timeout }, now)
            .unwrap();
        assert!(ex.waiting_tokens().is_empty());
        assert_eq!(ex.status, Status::Failed);
    }
}
