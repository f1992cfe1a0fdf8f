//! Running a thread: one step's bookkeeping (event ids, tokens, timer deadlines, the context
//! object) and the loop that moves a thread through its states: enter a state, run its work
//! (dispatched to the file of its kind), complete it (exit event and transition), and deliver
//! an event to the thread that waits on its token.

use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

use super::{
    Command, Delivery, Event, Failure, Outcome, Phase, Produced, Run, Thread, UnexpectedEvent,
    Work, json_text,
};
use crate::error::{self, StatesError};
use crate::history::{self, EventType, HistoryEvent};
use crate::model::{
    Definition, Kind, PathField, QueryLanguage, ResultPathField, State, StateMachine, Transition,
};

use super::limits::{check_assigned, check_size};

impl Run<'_> {
    pub(super) fn event(&mut self, ty: EventType, prev: i64) -> Option<HistoryEvent> {
        let id = *self.next_event_id;
        *self.next_event_id += 1;
        if !self.record {
            return None;
        }
        Some(HistoryEvent::new(ty, id, prev, self.now_text.clone()))
    }

    pub(super) fn push(&mut self, e: Option<HistoryEvent>) {
        if let Some(e) = e {
            self.step.history.push(e);
        }
    }

    pub(super) fn last_id(&self) -> i64 {
        *self.next_event_id - 1
    }

    pub(super) fn token(&mut self) -> u64 {
        let t = *self.next_token;
        *self.next_token += 1;
        t
    }

    /// The deadline for a timer due at `at` (`None`: later than a `SystemTime` can hold).
    /// A deadline past the execution's 1-year cap arms the cap timer (once) and parks the
    /// timer just after the cap: the execution times out first, so it never fires, and no
    /// deadline ever overflows the clock or the store.
    pub(super) fn deadline(&mut self, at: Option<SystemTime>) -> SystemTime {
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
    pub(super) fn after(&mut self, d: Duration) -> SystemTime {
        let at = self.now.checked_add(d);
        self.deadline(at)
    }

    /// The context object for a state. The execution part is built once per step and reused;
    /// hand it back with [`Run::recycle`]. The execution input is moved into it, not copied
    /// (copying it made building the context a tenth of a fleet run's time): it goes back to
    /// the execution at the end of the step ([`Run::return_input`]).
    pub(super) fn context(&mut self, th: &Thread, st: &State) -> Value {
        let mut ctx = self.ctx_cache.take().unwrap_or_else(|| {
            // Built by hand: `json!` would re-serialise the input into a new Value.
            let text = |s: &str| Value::String(s.to_owned());
            let mut execution = Map::new();
            execution.insert("Id".into(), text(&self.info.execution_arn));
            execution.insert("Input".into(), std::mem::take(self.exec_input));
            self.input_lent = true;
            execution.insert("StartTime".into(), text(self.start_time));
            execution.insert("Name".into(), text(&self.info.execution_name));
            execution.insert("RoleArn".into(), text(&self.info.role_arn));
            execution.insert("RedriveCount".into(), Value::from(self.redrive_count));
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

    pub(super) fn recycle(&mut self, ctx: Value) {
        self.ctx_cache = Some(ctx);
    }

    /// The execution input, wherever it is in this step (see [`Run::context`]).
    pub(super) fn execution_input(&self) -> &Value {
        match &self.ctx_cache {
            Some(ctx) if self.input_lent => &ctx["Execution"]["Input"],
            _ => self.exec_input,
        }
    }

    /// Gives the execution its input back from the context at the end of a step.
    pub(super) fn return_input(&mut self) {
        if let Some(mut ctx) = self.ctx_cache.take() {
            if let Some(input) = ctx.pointer_mut("/Execution/Input") {
                *self.exec_input = std::mem::take(input);
                self.input_lent = false;
            }
        }
        // Every taker of the context hands it back before the step ends.
        debug_assert!(!self.input_lent, "the context was not recycled");
    }

    /// Runs a thread until it waits or is done.
    pub(super) fn advance(&mut self, th: &mut Thread, m: &StateMachine) {
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

    pub(super) fn enter(&mut self, th: &mut Thread, st: &State) {
        th.attempts = vec![0; st.retry.len()];
        th.unfinished = None;
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
    pub(super) fn complete(&mut self, th: &mut Thread, st: &State, p: Produced) {
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

    /// Runs (or re-runs after a retry delay) the current state's work.
    pub(super) fn run_state(
        &mut self,
        th: &mut Thread,
        st: &State,
        _m: &StateMachine,
    ) -> Option<Produced> {
        match self.try_run_state(th, st) {
            Ok(p) => p,
            Err(e) => {
                let f = Failure::in_state(e, st, th);
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

    pub(super) fn try_run_state(
        &mut self,
        th: &mut Thread,
        st: &State,
    ) -> Result<Option<Produced>, StatesError> {
        let jsonata = st.query_language == QueryLanguage::Jsonata;
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
        self.with_state_data(th, st, |run, th, w| run.state_work(th, st, w))
    }

    /// Runs `f` on the current state's evaluation inputs ([`Work`]). The state's input is lent
    /// out instead of cloned (the state data of a big workflow is copied otherwise several
    /// times per state). It goes back afterwards: a waiting state reads it when its result
    /// arrives, a retry runs on it again. Only an output that IS the input takes it
    /// (`Produced::Next` then replaces it anyway).
    pub(super) fn with_state_data<R>(
        &mut self,
        th: &mut Thread,
        st: &State,
        f: impl FnOnce(&mut Self, &mut Thread, Work<'_>) -> R,
    ) -> R {
        let ctx = self.context(th, st);
        let mut ent = self.entropy.clone();
        let mut raw = std::mem::take(&mut th.input);
        let work = Work {
            ctx: &ctx,
            ent: &mut ent,
            raw: &mut raw,
            jsonata: st.query_language == QueryLanguage::Jsonata,
        };
        let r = f(self, th, work);
        th.input = raw;
        self.entropy = ent;
        self.recycle(ctx);
        r
    }

    /// The current state's work, by kind. `None`: the state waits (a task, a timer, children).
    fn state_work(
        &mut self,
        th: &mut Thread,
        st: &State,
        w: Work<'_>,
    ) -> Result<Option<Produced>, StatesError> {
        match &st.kind {
            Kind::Pass { result } => self.run_pass(th, st, result.as_ref(), w).map(Some),
            Kind::Succeed => self.run_succeed(th, st, w).map(Some),
            Kind::Fail { error, cause } => self
                .run_fail(th, st, error.as_ref(), cause.as_ref(), w)
                .map(Some),
            Kind::Choice { choices, default } => self
                .run_choice(th, st, choices, default.as_ref(), w)
                .map(Some),
            Kind::Wait { wait } => self.start_wait(th, st, wait, w).map(|()| None),
            Kind::Task {
                resource,
                timeout_seconds,
                heartbeat_seconds,
            } => {
                let settings = (timeout_seconds.as_ref(), heartbeat_seconds.as_ref());
                self.start_task(th, st, resource, settings, w)
                    .map(|()| None)
            }
            Kind::Parallel { branches } => self
                .start_parallel(th, st, branches.len(), w)
                .map(|()| None),
            Kind::Map { .. } => self.start_map(th, st, w).map(|()| None),
        }
    }

    /// Delivers an event to the thread waiting for its token (the transition table in the
    /// module doc). The matching task's output is taken out of `ev` (not copied). An event of
    /// another kind than the token waits for is refused before anything changes.
    pub(super) fn deliver(
        &mut self,
        th: &mut Thread,
        ev: &mut Event,
    ) -> Result<Delivery, UnexpectedEvent> {
        let m = machine_at(self.def, &th.machine);
        let st = &m.states[th.state as usize];
        match &mut th.phase {
            Phase::Task {
                token,
                timeout_token,
                lambda,
                heartbeat,
                submitted,
            } => {
                let task = super::task::RunningTask {
                    token: *token,
                    timeout_token: *timeout_token,
                    lambda: *lambda,
                    heartbeat_timer: heartbeat.map(|(_, timer)| timer),
                    submitted: *submitted,
                };
                self.deliver_to_task(th, st, task, ev)
            }
            Phase::Sleep { token, retry } => {
                let (token, retry) = (*token, *retry);
                match ev {
                    Event::TimerFired { token: t } if *t == token => {
                        if retry {
                            self.on_retry_timer_fired(th);
                        } else {
                            self.on_wait_timer_fired(th, st);
                        }
                        Ok(Delivery::Applied)
                    }
                    other if other.token() == Some(token) => Err(UnexpectedEvent {
                        event: other.kind(),
                        token,
                        state: Some(st.name.clone()),
                        expected: "TimerFired",
                    }),
                    _ => Ok(Delivery::NotWaiting),
                }
            }
            Phase::Children(ch) => {
                for (_, child) in ch.running.iter_mut() {
                    if self.deliver(child, ev)? == Delivery::Applied {
                        return Ok(Delivery::Applied);
                    }
                }
                Ok(Delivery::NotWaiting)
            }
            Phase::Enter | Phase::Run | Phase::Done(_) => Ok(Delivery::NotWaiting),
        }
    }
}

/// Resolves a thread's machine path.
pub(super) fn machine_at<'d>(def: &'d Definition, path: &[(u32, u32)]) -> &'d StateMachine {
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

pub(super) fn entered_type(kind: &Kind) -> EventType {
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

pub(super) fn exited_type(kind: &Kind) -> EventType {
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

pub(super) fn next_of(st: &State) -> Option<String> {
    match &st.transition {
        Some(Transition::Next(n)) => Some(n.clone()),
        _ => None,
    }
}
