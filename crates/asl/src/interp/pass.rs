//! Pass, Succeed and Fail: the states that only shape their data or end their thread.
//! Nothing here waits; each runs to its `Produced` inside the step that entered it.

use serde_json::Value;

use super::dataflow::effective_input;
use super::thread::next_of;
use super::{Failure, Produced, Run, Thread, Work, json_text};
use crate::error::StatesError;
use crate::jsonpath::EvalContext;
use crate::model::{Expr, FailField, State};

impl Run<'_> {
    /// Pass: `Result` (or the effective input) through ResultPath and OutputPath.
    pub(super) fn run_pass(
        &mut self,
        th: &Thread,
        st: &State,
        result: Option<&Value>,
        w: Work<'_>,
    ) -> Result<Produced, StatesError> {
        let effective = effective_input(st, w.raw, w.ctx, &th.vars, w.ent, w.jsonata)?;
        let result = match result {
            Some(r) => {
                drop(effective);
                r.clone()
            }
            None => effective.into_owned(),
        };
        self.finish_state(th, st, w, result, next_of(st))
    }

    /// Succeed: the effective input through OutputPath (no ResultPath), and the thread ends.
    pub(super) fn run_succeed(
        &mut self,
        th: &Thread,
        st: &State,
        w: Work<'_>,
    ) -> Result<Produced, StatesError> {
        let effective = effective_input(st, w.raw, w.ctx, &th.vars, w.ent, w.jsonata)?;
        let effective = effective.into_owned();
        self.finish_state(th, st, w, effective, None)
    }

    /// Fail: the error and cause (literal, JSONata or `ErrorPath`/`CausePath`) go to
    /// Retry/Catch handling like any other failure.
    pub(super) fn run_fail(
        &mut self,
        th: &Thread,
        st: &State,
        error: Option<&FailField>,
        cause: Option<&FailField>,
        w: Work<'_>,
    ) -> Result<Produced, StatesError> {
        let Work {
            ctx,
            ent,
            raw,
            jsonata,
        } = w;
        // InputPath and Parameters run before every state's work: their errors come first.
        drop(effective_input(st, raw, ctx, &th.vars, ent, jsonata)?);
        let mut ec = EvalContext::new(raw, ctx, &th.vars, ent);
        let error = fail_field(error, &mut ec, "Error")?;
        let cause = fail_field(cause, &mut ec, "Cause")?;
        Ok(Produced::Fail(Failure {
            error: error.unwrap_or_default(),
            cause,
            ..Default::default()
        }))
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
