//! Data flow through a state: what it reads and what it passes on.
//!
//! JSONPath states: InputPath then Parameters make the effective input
//! ([`effective_input`]); ResultSelector, ResultPath and OutputPath shape the output
//! ([`Run::finish_state`]). JSONata states: Arguments, Output and Assign, evaluated against the
//! raw input and `$states`. Both: Assign, and the `*Path` settings read from the state input
//! (TimeoutSecondsPath, MaxConcurrencyPath, …). One place, so every state kind moves its data
//! the same way.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::{Produced, Run, Thread, Work, json_text};
use crate::error::StatesError;
use crate::jsonpath::{Entropy, EvalContext, JsonPath, SplitMix64};
use crate::model::{Assign, Expr, Kind, PathField, ResultPathField, Setting, State};

/// The effective input: JSONPath InputPath then Parameters (a Map's Parameters apply per
/// item, see `children.rs`); JSONata: the raw input. Borrows `raw` when nothing changes it.
pub(super) fn effective_input<'r>(
    st: &State,
    raw: &'r Value,
    ctx: &Value,
    vars: &Map<String, Value>,
    ent: &mut SplitMix64,
    jsonata: bool,
) -> Result<Cow<'r, Value>, StatesError> {
    if jsonata {
        return Ok(Cow::Borrowed(raw));
    }
    let v = select_path(&st.input_path, raw, ctx, vars, ent)?;
    if let (Some(p), false) = (&st.parameters, matches!(st.kind, Kind::Map { .. })) {
        let mut ec = EvalContext::new(&v, ctx, vars, ent);
        Ok(Cow::Owned(p.render(&mut ec)?))
    } else {
        Ok(v)
    }
}

impl Run<'_> {
    /// Applies ResultSelector/ResultPath/OutputPath (JSONPath) or Output (JSONata), and Assign.
    ///
    /// The state's input `w.raw` is lent by the caller (who puts it back into the thread): on
    /// success the output may have been built in it and taken from it (ResultPath writing into
    /// the input is the common case, and copying the whole state data for it was the biggest
    /// cost of a large run); on failure it is untouched, for Retry and Catch.
    pub(super) fn finish_state(
        &mut self,
        th: &Thread,
        st: &State,
        w: Work<'_>,
        result: Value,
        next: Option<String>,
    ) -> Result<Produced, StatesError> {
        let Work {
            ctx,
            ent,
            raw,
            jsonata,
        } = w;
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
}

// Borrows for the default path `$` (the common case): callers that only read the result
// (Parameters, OutputPath) then skip a clone of the whole state data.
pub(super) fn select_path<'a>(
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

pub(super) fn apply_result_path(
    p: &ResultPathField,
    raw: Value,
    result: Value,
) -> Result<Value, StatesError> {
    match p {
        ResultPathField::Default => Ok(result),
        ResultPathField::Null => Ok(raw),
        ResultPathField::Path(rp) => rp.set(raw, result),
    }
}

/// A JSONata state's `Assign` and `Output` (None: no `Output`, the state passes its result
/// on), both evaluated before any variable changes, as AWS does.
type AssignedAndOutput = (Option<Map<String, Value>>, Option<Value>);

pub(super) fn jsonata_assign_and_output(
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

pub(super) fn render_assign(
    a: &Assign,
    ec: &mut EvalContext<'_>,
) -> Result<Map<String, Value>, StatesError> {
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

pub(super) fn setting_u64(
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

pub(super) fn setting_f64(
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
