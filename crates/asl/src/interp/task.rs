//! Task: scheduling (the `ScheduleTask` command and the Task*/LambdaFunction* events, as AWS
//! records each resource kind), results (`lambda:invoke`'s response envelope), failures, and
//! the task's two timers. `TimeoutSeconds` and `HeartbeatSeconds` each arm a timer when the
//! task is scheduled; [`Event::TaskHeartbeat`] (SendTaskHeartbeat) replaces the heartbeat timer
//! with one `HeartbeatSeconds` later and records no history. Either timer firing fails the task
//! with `States.Timeout` (a `TaskTimedOut`/`LambdaFunctionTimedOut` event, as AWS records it);
//! a missed heartbeat is also matched by `States.HeartbeatTimeout` in Retry/Catch.
//! `TimeoutSecondsPath`/`HeartbeatSecondsPath` select from the state input (after InputPath,
//! before Parameters). What happens after a failure is Retry/Catch (`retry.rs`).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::dataflow::{effective_input, select_path, setting_u64};
use super::limits::check_size;
use super::thread::next_of;
use super::{
    Command, Delivery, Event, Failure, Phase, Produced, Run, Thread, UnexpectedEvent, Work,
    json_text,
};
use crate::error::{self, StatesError};
use crate::history::{self, EventType};
use crate::jsonpath::EvalContext;
use crate::model::{Kind, Setting, State};

const LAMBDA_INVOKE: &str = "arn:aws:states:::lambda:invoke";

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub(super) enum LambdaKind {
    /// `arn:aws:lambda:…:function:…`: LambdaFunction* events, raw result.
    Function,
    /// `arn:aws:states:::lambda:invoke`: Task* events, response envelope.
    Invoke,
}

/// The task a thread waits on, copied out of its `Phase::Task`.
#[derive(Clone, Copy, Debug)]
pub(super) struct RunningTask {
    pub(super) token: u64,
    pub(super) timeout_token: Option<u64>,
    pub(super) lambda: Option<LambdaKind>,
    /// The heartbeat timer armed at the start of the task or at its last heartbeat.
    pub(super) heartbeat_timer: Option<u64>,
}

impl Run<'_> {
    /// Renders the task's input (Parameters or Arguments) and its timeouts, and schedules it.
    pub(super) fn start_task(
        &mut self,
        th: &mut Thread,
        st: &State,
        resource: &str,
        (timeout_seconds, heartbeat_seconds): (Option<&Setting>, Option<&Setting>),
        w: Work<'_>,
    ) -> Result<(), StatesError> {
        let Work {
            ctx,
            ent,
            raw,
            jsonata,
        } = w;
        let effective = effective_input(st, raw, ctx, &th.vars, ent, jsonata)?;
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
                setting_u64(timeout_seconds, &mut ec, "TimeoutSeconds")?,
                setting_u64(heartbeat_seconds, &mut ec, "HeartbeatSeconds")?,
            )
        };
        drop(state_input);
        // JSONPath: the effective input is the task's input (moved when rendered).
        let args = arguments.unwrap_or_else(|| effective.into_owned());
        self.schedule(th, st, resource, args, timeout, heartbeat)
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

    /// An event for a token `task` waits on: its result, its failure, a heartbeat, or one of
    /// its timers. Any other event with one of those tokens is refused unapplied.
    pub(super) fn deliver_to_task(
        &mut self,
        th: &mut Thread,
        st: &State,
        task: RunningTask,
        ev: &mut Event,
    ) -> Result<Delivery, UnexpectedEvent> {
        match ev {
            Event::TaskSucceeded { token, output } | Event::TaskResponded { token, output }
                if *token == task.token =>
            {
                let output = std::mem::take(output);
                let whole = matches!(ev, Event::TaskResponded { .. });
                self.on_task_succeeded(th, st, task, output, whole);
            }
            Event::TaskFailed {
                token,
                error,
                cause,
            } if *token == task.token => {
                let f = Failure {
                    error: error.clone(),
                    cause: cause.clone(),
                    heartbeat: false,
                };
                self.on_task_failed(th, st, task, f);
            }
            Event::TimerFired { token } if Some(*token) == task.timeout_token => {
                self.on_task_timed_out(th, st, task, false);
            }
            Event::TimerFired { token } if Some(*token) == task.heartbeat_timer => {
                self.on_task_timed_out(th, st, task, true);
            }
            Event::TaskHeartbeat { token } if *token == task.token => self.on_task_heartbeat(th),
            other => {
                let Some(token) = other.token() else {
                    return Ok(Delivery::NotWaiting);
                };
                let expected = if token == task.token {
                    "TaskSucceeded, TaskResponded, TaskFailed or TaskHeartbeat"
                } else if Some(token) == task.timeout_token || Some(token) == task.heartbeat_timer {
                    "TimerFired"
                } else {
                    return Ok(Delivery::NotWaiting);
                };
                return Err(UnexpectedEvent {
                    event: other.kind(),
                    token,
                    state: Some(st.name.clone()),
                    expected,
                });
            }
        }
        Ok(Delivery::Applied)
    }

    /// The task's result: recorded, then through ResultSelector/ResultPath/OutputPath (or
    /// Output) to the next state. `whole`: the output is the integration's whole response
    /// ([`Event::TaskResponded`]), not a payload to wrap in `lambda:invoke`'s envelope.
    fn on_task_succeeded(
        &mut self,
        th: &mut Thread,
        st: &State,
        task: RunningTask,
        output: Value,
        whole: bool,
    ) {
        let lambda = task.lambda;
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
                let (res_type, res_name) = task_resource(st);
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
        self.cancel_task_timers(task, None);
        let p = if let Err(f) = check_size(&output, &st.name) {
            Produced::Fail(f)
        } else {
            let r = self.with_state_data(th, st, |run, th, w| {
                run.finish_state(th, st, w, output, next_of(st))
            });
            match r {
                Ok(p) => p,
                Err(e) => Produced::Fail(Failure::in_state(e, st, th)),
            }
        };
        th.phase = Phase::Run;
        self.complete(th, st, p);
    }

    /// The handler reported a failure.
    fn on_task_failed(&mut self, th: &mut Thread, st: &State, task: RunningTask, f: Failure) {
        self.cancel_task_timers(task, None);
        self.record_task_failure(th, st, task.lambda, f, false);
    }

    /// TimeoutSeconds passed, or (`heartbeat`) HeartbeatSeconds passed without a heartbeat.
    /// AWS records the same TaskTimedOut (error `States.Timeout`, no cause) for both; only
    /// Retry/Catch can tell them apart, through `States.HeartbeatTimeout`.
    fn on_task_timed_out(
        &mut self,
        th: &mut Thread,
        st: &State,
        task: RunningTask,
        heartbeat: bool,
    ) {
        let fired = if heartbeat {
            task.heartbeat_timer
        } else {
            task.timeout_token
        };
        self.cancel_task_timers(task, fired);
        let f = Failure {
            error: error::TIMEOUT.to_owned(),
            cause: None,
            heartbeat,
        };
        self.record_task_failure(th, st, task.lambda, f, true);
    }

    /// SendTaskHeartbeat: the HeartbeatSeconds clock starts again (a new timer replaces the
    /// armed one). Nothing to do for a task without HeartbeatSeconds.
    fn on_task_heartbeat(&mut self, th: &mut Thread) {
        if let Phase::Task {
            heartbeat: Some((seconds, timer)),
            ..
        } = &mut th.phase
        {
            self.step
                .commands
                .push(Command::CancelTimer { token: *timer });
            let next = self.token();
            let fire_at = self.after(Duration::from_secs(*seconds));
            self.step.commands.push(Command::StartTimer {
                token: next,
                fire_at,
            });
            *timer = next;
        }
    }

    /// The task is over (result, failure or one of its timers fired): its other timers are
    /// not needed any more.
    fn cancel_task_timers(&mut self, task: RunningTask, fired: Option<u64>) {
        for t in [task.timeout_token, task.heartbeat_timer]
            .into_iter()
            .flatten()
        {
            if Some(t) != fired {
                self.step.commands.push(Command::CancelTimer { token: t });
            }
        }
    }

    /// Records the task's failure (or time-out) as AWS does for its resource kind, then
    /// Retry/Catch.
    fn record_task_failure(
        &mut self,
        th: &mut Thread,
        st: &State,
        lambda: Option<LambdaKind>,
        failure: Failure,
        timed_out: bool,
    ) {
        let (error, cause) = (failure.error.clone(), failure.cause.clone());
        let (res_type, res_name) = task_resource(st);
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
}

/// `resource_parts` of the state's `Resource` (empty for a state that is not a Task).
fn task_resource(st: &State) -> (String, String) {
    match &st.kind {
        Kind::Task { resource, .. } => resource_parts(resource),
        _ => (String::new(), String::new()),
    }
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
