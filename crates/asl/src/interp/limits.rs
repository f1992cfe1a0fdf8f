//! Limits, as AWS enforces them.
//!
//! Time: every timer deadline is bounded by the Standard-workflow maximum execution time
//! ([`MAX_EXECUTION_DURATION`], 1 year). A Wait, backoff or task timeout reaching past it arms
//! one execution-level timer at the cap instead (`Run::deadline`), and the execution times
//! out there (`ExecutionTimedOut` with `States.Timeout` and previousEventId 0, status
//! TIMED_OUT with no error or cause, as AWS records it), so no timestamp the ASL accepts can
//! overflow a clock.
//!
//! Size: state output over 256 KiB ([`MAX_PAYLOAD_BYTES`]) and variables over their limits
//! ([`MAX_VARIABLE_BYTES`], [`MAX_ASSIGN_BYTES`], [`MAX_VARIABLES_TOTAL_BYTES`]) fail the state
//! with `States.DataLimitExceeded`, which no Retry or Catch sees. History: an execution whose
//! history would pass [`MAX_HISTORY_EVENTS`] (or `Options::history_limit`) fails.

use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use super::Failure;
use crate::error;

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

pub(super) fn check_size(v: &Value, state: &str) -> Result<(), Failure> {
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
pub(super) fn check_assigned(
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
pub(super) fn serialized_len_at_most(v: &Value, limit: usize) -> bool {
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

/// Start time + [`MAX_EXECUTION_DURATION`]; `start` is the execution's recorded start time
/// (`now` stands in should it not parse, which the formatter never produces).
pub(super) fn execution_cap(start: &str, now: SystemTime) -> SystemTime {
    let start = clock::parse_rfc3339(start).unwrap_or(now);
    start.checked_add(MAX_EXECUTION_DURATION).unwrap_or(start)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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
}
