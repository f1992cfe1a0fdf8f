//! What an expression reads from outside while a state runs: the evaluation context.
//!
//! The evaluator has no clock, no randomness and no state of its own; everything it may read
//! comes in through [`EvalContext`], which Step Functions' other expression kinds (JSONPath,
//! the `States.*` intrinsic functions, payload templates) share:
//! - the state's effective input (JSONata `$states.input`, JSONPath `$`);
//! - the context object (`$states.context`, JSONPath `$$`), which also carries the
//!   evaluation time: `$now()`/`$millis()` read `State.EnteredTime` (else
//!   `Execution.StartTime`), so a replayed execution sees the same time ([`EvalContext::entered_millis`]);
//! - the visible variables ([`Variables`]: `$name`);
//! - the task result and the error output (`$states.result`, `$states.errorOutput`);
//! - an [`Entropy`] source for `$random()`, `$uuid()`, `$shuffle()` (and `States.MathRandom`,
//!   `States.UUID`), with [`SplitMix64`] as a deterministic, seedable implementation.
//!
//! Build it with [`EvalContext::new`] and the `with_*` methods.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

/// Source of randomness for `States.MathRandom`, `States.UUID`, `$random()`, `$uuid()`.
/// The crate has none of its own, so a run is reproducible given the entropy.
pub trait Entropy {
    /// The next 64 random bits.
    fn next_u64(&mut self) -> u64;
}

/// SplitMix64: a tiny deterministic generator, good enough for jitter and UUIDs in tests and
/// on the local engine (seed it from the execution id for reproducible runs).
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl Entropy for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Variables visible to a state (`$name` in JSONPath, intrinsics and JSONata).
pub trait Variables {
    /// The value of variable `name` (without the `$`), if it is visible.
    fn get(&self, name: &str) -> Option<&Value>;
}

impl Variables for () {
    fn get(&self, _name: &str) -> Option<&Value> {
        None
    }
}

impl Variables for serde_json::Map<String, Value> {
    fn get(&self, name: &str) -> Option<&Value> {
        serde_json::Map::get(self, name)
    }
}

impl<S: std::hash::BuildHasher> Variables for HashMap<String, Value, S> {
    fn get(&self, name: &str) -> Option<&Value> {
        HashMap::get(self, name)
    }
}

impl Variables for BTreeMap<String, Value> {
    fn get(&self, name: &str) -> Option<&Value> {
        BTreeMap::get(self, name)
    }
}

/// Everything an expression can read while a state runs.
pub struct EvalContext<'a> {
    /// The state's effective input (`$`, JSONata `$states.input`).
    pub input: &'a Value,
    /// The context object (`$$`, JSONata `$states.context`).
    pub context: &'a Value,
    /// Visible variables.
    pub variables: &'a dyn Variables,
    /// Task/Parallel/Map result (JSONata `$states.result`), when there is one.
    pub result: Option<&'a Value>,
    /// Error output in a Catch (JSONata `$states.errorOutput`), when there is one.
    pub error_output: Option<&'a Value>,
    /// Randomness for the random/UUID functions.
    pub entropy: &'a mut dyn Entropy,
}

impl<'a> EvalContext<'a> {
    /// A context with input, context object, variables and entropy; no result/error output.
    pub fn new(
        input: &'a Value,
        context: &'a Value,
        variables: &'a dyn Variables,
        entropy: &'a mut dyn Entropy,
    ) -> Self {
        EvalContext {
            input,
            context,
            variables,
            result: None,
            error_output: None,
            entropy,
        }
    }

    /// Sets `$states.result`.
    pub fn with_result(mut self, result: &'a Value) -> Self {
        self.result = Some(result);
        self
    }

    /// Sets `$states.errorOutput`.
    pub fn with_error_output(mut self, error_output: &'a Value) -> Self {
        self.error_output = Some(error_output);
        self
    }

    /// Milliseconds since the epoch of the state's entered time (`State.EnteredTime` of the
    /// context object, else `Execution.StartTime`): JSONata's evaluation timestamp for
    /// `$now()` and `$millis()`. `None` when the context object has neither.
    pub fn entered_millis(&self) -> Option<f64> {
        let entered = self
            .context
            .pointer("/State/EnteredTime")
            .or_else(|| self.context.pointer("/Execution/StartTime"))
            .and_then(Value::as_str)?;
        crate::datetime::parse_iso(entered).or_else(|| {
            clock::parse_rfc3339_nanos(entered).map(|ns| ns.div_euclid(1_000_000) as f64)
        })
    }
}
