//! The typed model of a state machine definition.
//!
//! [`Definition::parse`] reads JSON text and makes one pass over it (`build`) that checks
//! every field and compiles every path, template, Choice rule and JSONata expression into
//! the model, recording a diagnostic for each problem; the model is returned only when there
//! are none, so the interpreter never sees an invalid definition ("parse and validate a whole
//! definition before running any state"). [`crate::validate::validate`] is the same pass's
//! diagnostics, so validation and the model cannot disagree, and nothing is compiled twice.

use std::collections::HashMap;

use serde_json::Value;

mod build;

use crate::choice::ChoiceRule;
use crate::error::Diagnostic;
use crate::jsonata_template::JsonataTemplate;
use crate::jsonpath::{JsonPath, ReferencePath};
pub use crate::query_language::QueryLanguage;
use crate::template::{PayloadExpr, Template};

/// A whole, validated state machine definition.
#[derive(Clone, Debug)]
pub struct Definition {
    /// Top-level `Comment`: free text, ignored by the interpreter.
    pub comment: Option<String>,
    /// Top-level `TimeoutSeconds`: the execution times out (`States.Timeout`) after it.
    pub timeout_seconds: Option<u64>,
    /// Top-level `QueryLanguage` (default JSONPath): what states without their own use.
    pub query_language: QueryLanguage,
    /// The top-level `StartAt` + `States`.
    pub machine: StateMachine,
    /// The definition as written (kept for storage and `$$.StateMachine`).
    pub source: Value,
}

/// A `StartAt` + `States` block: the top level, a Parallel branch or a Map processor.
#[derive(Clone, Debug)]
pub struct StateMachine {
    /// `StartAt`: the name of the first state to run; validated to exist in `states`.
    pub start_at: String,
    /// `States`, in the order the definition lists them.
    pub states: Vec<State>,
    index: HashMap<String, usize>,
}

impl StateMachine {
    /// The state called `name`, if this block has one.
    pub fn get(&self, name: &str) -> Option<&State> {
        self.index.get(name).map(|&i| &self.states[i])
    }

    /// Index of the state called `name` within `states`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }
}

/// A path field (InputPath, OutputPath, ItemsPath) that may be absent (default `$`), `null`,
/// or a path.
#[derive(Clone, Debug, PartialEq)]
pub enum PathField {
    /// Absent: the default `$` (the whole input).
    Default,
    /// `null`: the state sees `{}` (InputPath) or outputs `{}` (OutputPath).
    Null,
    /// A JSONPath selecting part of the input.
    Path(JsonPath),
}

/// `ResultPath`: absent (default `$`), `null` (discard the result), or a reference path.
#[derive(Clone, Debug, PartialEq)]
pub enum ResultPathField {
    /// Absent: the default `$` (the result replaces the input).
    Default,
    /// `null`: the result is discarded and the input passes through.
    Null,
    /// Where in the input to put the result.
    Path(ReferencePath),
}

/// `Assign`, compiled for the state's query language.
#[derive(Clone, Debug)]
pub enum Assign {
    /// A JSONPath state's `Assign`: a payload template (`"key.$"` fields are paths).
    JsonPath(Template),
    /// A JSONata state's `Assign`: values with `{% %}` expressions.
    Jsonata(JsonataTemplate),
}

/// A field that is a literal, or (JSONata states) a `{% %}` expression.
#[derive(Clone, Debug)]
pub enum Expr {
    /// The value as written.
    Literal(Value),
    /// A JSONata expression, evaluated when the state runs.
    Jsonata(JsonataTemplate),
}

/// `Next` or `End`.
#[derive(Clone, Debug, PartialEq)]
pub enum Transition {
    /// `Next`: the name of the state to run after this one.
    Next(String),
    /// `End: true`: the state machine (or branch, or iteration) ends here.
    End,
}

/// `JitterStrategy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jitter {
    /// `NONE` (the default): wait exactly the backoff interval.
    None,
    /// `FULL`: wait a random time between zero and the backoff interval.
    Full,
}

/// One `Retry` entry.
#[derive(Clone, Debug)]
pub struct Retrier {
    /// `ErrorEquals`: the error names this retrier handles (`States.ALL` matches any).
    pub error_equals: Vec<String>,
    /// `IntervalSeconds` (default 1): seconds before the first retry.
    pub interval_seconds: f64,
    /// `MaxAttempts` (default 3): retries allowed; 0 means never retry.
    pub max_attempts: u64,
    /// `BackoffRate` (default 2.0): the multiplier of the interval after each retry.
    pub backoff_rate: f64,
    /// `MaxDelaySeconds`: the cap on the backoff interval, in seconds.
    pub max_delay_seconds: Option<f64>,
    /// `JitterStrategy` (default `NONE`).
    pub jitter: Jitter,
}

/// One `Catch` entry.
#[derive(Clone, Debug)]
pub struct Catcher {
    /// `ErrorEquals`: the error names this catcher handles (`States.ALL` matches any).
    pub error_equals: Vec<String>,
    /// `Next`: the state to run with the error output.
    pub next: String,
    /// `ResultPath` (JSONPath): where the error object goes in the state's input.
    pub result_path: ResultPathField,
    /// `Output` (JSONata): the fallback state's input, computed from `$states.errorOutput`.
    pub output: Option<JsonataTemplate>,
    /// `Assign`: variables set when this catcher is taken.
    pub assign: Option<Assign>,
}

/// One Choice rule (top level of `Choices`).
#[derive(Clone, Debug)]
pub struct ChoiceBranch {
    /// The condition (`Condition` in JSONata, comparison operators in JSONPath).
    pub rule: ChoiceRule,
    /// `Next`: the state to run when the rule matches.
    pub next: String,
    /// `Assign`: variables set when this branch is taken.
    pub assign: Option<Assign>,
    /// `Output` (JSONata): the Choice state's output when this branch is taken.
    pub output: Option<JsonataTemplate>,
}

/// How a Wait state waits.
#[derive(Clone, Debug)]
pub enum WaitFor {
    /// `Seconds`: a fixed (or JSONata-computed) number of seconds.
    Seconds(Expr),
    /// `SecondsPath`: the number of seconds, read from the input.
    SecondsPath(JsonPath),
    /// `Timestamp`: an RFC 3339 instant to wait until.
    Timestamp(Expr),
    /// `TimestampPath`: the instant to wait until, read from the input.
    TimestampPath(JsonPath),
}

/// A numeric setting given as a value/expression or as a `*Path` (TimeoutSeconds,
/// MaxConcurrency, ToleratedFailureCount, …).
#[derive(Clone, Debug)]
pub enum Setting {
    /// The field itself (`TimeoutSeconds`): a literal, or a JSONata expression.
    Value(Expr),
    /// The `*Path` variant (`TimeoutSecondsPath`): read from the input.
    Path(JsonPath),
}

/// The per-type part of a state.
// Built once per definition, so the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Kind {
    /// Passes its input to its output, optionally replaced by `Result`.
    Pass {
        /// `Result`: the fixed value the state outputs instead of its input.
        result: Option<Value>,
    },
    /// Calls a resource (a Lambda function, a service integration, an activity).
    Task {
        /// `Resource`: the ARN of what to call.
        resource: String,
        /// `TimeoutSeconds` (or `TimeoutSecondsPath`): seconds before `States.Timeout`.
        timeout_seconds: Option<Setting>,
        /// `HeartbeatSeconds` (or `HeartbeatSecondsPath`): the longest silence between
        /// heartbeats, in seconds, before `States.Timeout`.
        heartbeat_seconds: Option<Setting>,
    },
    /// Picks the next state by the first matching rule.
    Choice {
        /// `Choices`, tried in order.
        choices: Vec<ChoiceBranch>,
        /// `Default`: the state to run when no rule matches; without it, `States.NoChoiceMatched`.
        default: Option<String>,
    },
    /// Delays for a duration or until an instant.
    Wait {
        /// How long, or until when.
        wait: WaitFor,
    },
    /// Ends the execution (or branch, or iteration) successfully.
    Succeed,
    /// Ends the execution (or branch, or iteration) with an error.
    Fail {
        /// `Error` (or `ErrorPath`): the error name reported.
        error: Option<FailField>,
        /// `Cause` (or `CausePath`): the explanation reported.
        cause: Option<FailField>,
    },
    /// Runs branches concurrently on the same input; outputs the array of their outputs.
    Parallel {
        /// `Branches`: one state machine per branch.
        branches: Vec<StateMachine>,
    },
    /// Runs a processor for each item of an array; outputs the array of their outputs.
    Map {
        /// `ItemProcessor` (or the legacy `Iterator`): the state machine run per item.
        processor: Box<StateMachine>,
        /// `DISTRIBUTED` processors are not supported by the local engine (runtime error).
        distributed: bool,
        /// `ItemsPath` (JSONPath): where the items array is in the input.
        items_path: PathField,
        /// `Items` (JSONata): the items array, or an expression computing it.
        items: Option<Expr>,
        /// `ItemSelector`, or the legacy `Parameters` of a Map state (JSONPath), or JSONata.
        item_selector: Option<Assign>,
        /// `MaxConcurrency`: the most iterations running at once (0 or absent: no limit).
        max_concurrency: Option<Setting>,
        /// `ToleratedFailureCount`: how many iterations may fail before the Map fails.
        tolerated_failure_count: Option<Setting>,
        /// `ToleratedFailurePercentage`: the share (0–100) of iterations that may fail.
        tolerated_failure_percentage: Option<Setting>,
    },
}

/// Fail's Error/Cause: a literal/JSONata value, or ErrorPath/CausePath.
#[derive(Clone, Debug)]
pub enum FailField {
    /// `Error`/`Cause`: a literal, or a JSONata expression.
    Value(Expr),
    /// `ErrorPath`/`CausePath`: a reference path or intrinsic function on the input.
    Path(PayloadExpr),
}

impl Kind {
    /// The ASL `Type` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Kind::Pass { .. } => "Pass",
            Kind::Task { .. } => "Task",
            Kind::Choice { .. } => "Choice",
            Kind::Wait { .. } => "Wait",
            Kind::Succeed => "Succeed",
            Kind::Fail { .. } => "Fail",
            Kind::Parallel { .. } => "Parallel",
            Kind::Map { .. } => "Map",
        }
    }
}

/// One state, with the common fields every type may carry (absent ones are `None`/default).
#[derive(Clone, Debug)]
pub struct State {
    /// The state's key in `States`; unique within its block.
    pub name: String,
    /// Effective query language (the state's own, else the top-level one).
    pub query_language: QueryLanguage,
    /// `Type` and the fields that belong to it.
    pub kind: Kind,
    /// `InputPath` (JSONPath): selects the part of the raw input the state works on.
    pub input_path: PathField,
    /// `OutputPath` (JSONPath): selects the part of the result that becomes the output.
    pub output_path: PathField,
    /// `ResultPath` (JSONPath): where the result goes in the input.
    pub result_path: ResultPathField,
    /// `Parameters` (JSONPath): the payload template that builds the effective input.
    pub parameters: Option<Template>,
    /// `ResultSelector` (JSONPath): the payload template applied to the raw task result.
    pub result_selector: Option<Template>,
    /// `Arguments` (JSONata): the effective input of a Task or Parallel/Map.
    pub arguments: Option<JsonataTemplate>,
    /// `Output` (JSONata): the state's output.
    pub output: Option<JsonataTemplate>,
    /// `Assign`: variables set when the state completes.
    pub assign: Option<Assign>,
    /// `None` for Choice, Succeed and Fail.
    pub transition: Option<Transition>,
    /// `Retry`: retriers tried in order when the state fails (Task, Parallel, Map).
    pub retry: Vec<Retrier>,
    /// `Catch`: fallbacks tried in order once retries are exhausted (Task, Parallel, Map).
    pub catch: Vec<Catcher>,
}

/// Why a definition could not be loaded: unreadable JSON or validation errors (all of them).
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    /// The text is not JSON (serde_json's message, with line and column).
    #[error("definition is not valid JSON: {0}")]
    Json(String),
    /// The JSON is not a valid state machine: every problem found, each with its location.
    #[error("definition is invalid:\n{}", .0.iter().map(|d| format!("  {d}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
}

impl Definition {
    /// Parses JSON text, validates it fully, and builds the model.
    pub fn parse(text: &str) -> Result<Definition, DefinitionError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| DefinitionError::Json(e.to_string()))?;
        Definition::from_value(value)
    }

    /// Validates a JSON value and builds the model, or returns every problem found.
    pub fn from_value(value: Value) -> Result<Definition, DefinitionError> {
        match Definition::parse_with_diagnostics(&value) {
            (Some(def), _) => Ok(def),
            (None, diags) => Err(DefinitionError::Invalid(diags)),
        }
    }

    /// The one pass over a definition: checks every field and compiles every path, template
    /// and expression exactly once, recording a [`Diagnostic`] (JSON pointer, state name) for
    /// each problem. The model is `Some` exactly when the list is empty.
    /// [`crate::validate::validate`] is this pass's diagnostics.
    pub fn parse_with_diagnostics(value: &Value) -> (Option<Definition>, Vec<Diagnostic>) {
        build::definition(value)
    }
}
