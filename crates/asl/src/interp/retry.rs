//! Retry and Catch, for every state kind that has them (Task, Map, Parallel; a Fail state's
//! error and a failed data-flow step go through them too). A matching retrier with attempts
//! left sleeps its backoff (`Phase::Sleep { retry: true }`) and runs the state's work again;
//! else a matching catcher exits the state to its `Next` with the error output; else the
//! thread fails. `States.Runtime` and `States.DataLimitExceeded` are terminal: no retrier or
//! catcher sees them.

use std::time::Duration;

use serde_json::{Map, Value};

use super::dataflow::{apply_result_path, render_assign};
use super::{Command, Failure, Outcome, Phase, Produced, Run, Thread};
use crate::error::{self, StatesError};
use crate::jsonpath::{Entropy, EvalContext};
use crate::model::{Catcher, Jitter, QueryLanguage, State};

impl Run<'_> {
    /// Error handling for the current state: Retry, then Catch, else the thread fails.
    /// `retriable` is false for errors no retrier may see (payload limit).
    pub(super) fn fail_state(&mut self, th: &mut Thread, st: &State, f: Failure, retriable: bool) {
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

    /// The retry delay is over: the state's work runs again (a retried Map/Parallel starts
    /// again without a new Entered event).
    pub(super) fn on_retry_timer_fired(&mut self, th: &mut Thread) {
        th.phase = Phase::Run;
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
            if st.query_language == QueryLanguage::Jsonata {
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
        res.map_err(|e: StatesError| Failure::in_state(e, st, th))
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
pub(super) fn failure_matches(list: &[String], f: &Failure) -> bool {
    error_matches(list, &f.error)
        || (f.heartbeat && list.iter().any(|e| e == error::HEARTBEAT_TIMEOUT))
}
