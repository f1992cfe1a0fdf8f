//! Wait: the state arms one timer (Seconds, Timestamp or their `*Path`/JSONata forms,
//! bounded by the execution's 1-year cap) and sleeps; when it fires the state exits with its
//! effective output. A retry delay is a sleep too, but belongs to Retry (`retry.rs`).

use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::dataflow::{effective_input, jsonata_assign_and_output, render_assign, select_path};
use super::thread::next_of;
use super::{Command, Failure, Phase, Produced, Run, Thread, Work, json_text};
use crate::error::StatesError;
use crate::jsonpath::EvalContext;
use crate::model::{Expr, PathField, State, WaitFor};

impl Run<'_> {
    /// Arms the Wait state's timer: the thread sleeps until [`Run::on_wait_timer_fired`].
    pub(super) fn start_wait(
        &mut self,
        th: &mut Thread,
        st: &State,
        wait: &WaitFor,
        w: Work<'_>,
    ) -> Result<(), StatesError> {
        let Work {
            ctx,
            ent,
            raw,
            jsonata,
        } = w;
        let effective = effective_input(st, raw, ctx, &th.vars, ent, jsonata)?;
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
        Ok(())
    }

    /// The Wait is over: the state exits with its effective output.
    pub(super) fn on_wait_timer_fired(&mut self, th: &mut Thread, st: &State) {
        let r = self.with_state_data(th, st, |run, th, w| run.wait_output(th, st, w));
        let p = match r {
            Ok(p) => p,
            Err(e) => Produced::Fail(Failure::in_state(e, st, th)),
        };
        th.phase = Phase::Run;
        self.complete(th, st, p);
    }

    /// A Wait state's output. `w.raw` is lent as in [`Run::finish_state`]: taken only by an
    /// output that is the whole input.
    fn wait_output(
        &mut self,
        th: &Thread,
        st: &State,
        w: Work<'_>,
    ) -> Result<Produced, StatesError> {
        let Work {
            ctx,
            ent,
            raw,
            jsonata,
        } = w;
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
