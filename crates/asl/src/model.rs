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
    pub comment: Option<String>,
    /// Top-level `TimeoutSeconds`: the execution times out (`States.Timeout`) after it.
    pub timeout_seconds: Option<u64>,
    pub query_language: QueryLanguage,
    /// The top-level `StartAt` + `States`.
    pub machine: StateMachine,
    /// The definition as written (kept for storage and `$$.StateMachine`).
    pub source: Value,
}

/// A `StartAt` + `States` block: the top level, a Parallel branch or a Map processor.
#[derive(Clone, Debug)]
pub struct StateMachine {
    pub start_at: String,
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
    Default,
    Null,
    Path(JsonPath),
}

/// `ResultPath`: absent (default `$`), `null` (discard the result), or a reference path.
#[derive(Clone, Debug, PartialEq)]
pub enum ResultPathField {
    Default,
    Null,
    Path(ReferencePath),
}

/// `Assign`, compiled for the state's query language.
#[derive(Clone, Debug)]
pub enum Assign {
    JsonPath(Template),
    Jsonata(JsonataTemplate),
}

/// A field that is a literal, or (JSONata states) a `{% %}` expression.
#[derive(Clone, Debug)]
pub enum Expr {
    Literal(Value),
    Jsonata(JsonataTemplate),
}

/// `Next` or `End`.
#[derive(Clone, Debug, PartialEq)]
pub enum Transition {
    Next(String),
    End,
}

/// `JitterStrategy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jitter {
    None,
    Full,
}

/// One `Retry` entry.
#[derive(Clone, Debug)]
pub struct Retrier {
    pub error_equals: Vec<String>,
    pub interval_seconds: f64,
    pub max_attempts: u64,
    pub backoff_rate: f64,
    pub max_delay_seconds: Option<f64>,
    pub jitter: Jitter,
}

/// One `Catch` entry.
#[derive(Clone, Debug)]
pub struct Catcher {
    pub error_equals: Vec<String>,
    pub next: String,
    pub result_path: ResultPathField,
    pub output: Option<JsonataTemplate>,
    pub assign: Option<Assign>,
}

/// One Choice rule (top level of `Choices`).
#[derive(Clone, Debug)]
pub struct ChoiceBranch {
    pub rule: ChoiceRule,
    pub next: String,
    pub assign: Option<Assign>,
    pub output: Option<JsonataTemplate>,
}

/// How a Wait state waits.
#[derive(Clone, Debug)]
pub enum WaitFor {
    Seconds(Expr),
    SecondsPath(JsonPath),
    Timestamp(Expr),
    TimestampPath(JsonPath),
}

/// A numeric setting given as a value/expression or as a `*Path` (TimeoutSeconds,
/// MaxConcurrency, ToleratedFailureCount, …).
#[derive(Clone, Debug)]
pub enum Setting {
    Value(Expr),
    Path(JsonPath),
}

/// The per-type part of a state.
// Built once per definition, so the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Kind {
    Pass {
        result: Option<Value>,
    },
    Task {
        resource: String,
        timeout_seconds: Option<Setting>,
        heartbeat_seconds: Option<Setting>,
    },
    Choice {
        choices: Vec<ChoiceBranch>,
        default: Option<String>,
    },
    Wait {
        wait: WaitFor,
    },
    Succeed,
    Fail {
        error: Option<FailField>,
        cause: Option<FailField>,
    },
    Parallel {
        branches: Vec<StateMachine>,
    },
    Map {
        processor: Box<StateMachine>,
        /// `DISTRIBUTED` processors are not supported by the local engine (runtime error).
        distributed: bool,
        items_path: PathField,
        items: Option<Expr>,
        /// `ItemSelector`, or the legacy `Parameters` of a Map state (JSONPath), or JSONata.
        item_selector: Option<Assign>,
        max_concurrency: Option<Setting>,
        tolerated_failure_count: Option<Setting>,
        tolerated_failure_percentage: Option<Setting>,
    },
}

/// Fail's Error/Cause: a literal/JSONata value, or ErrorPath/CausePath.
#[derive(Clone, Debug)]
pub enum FailField {
    Value(Expr),
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
    pub name: String,
    /// Effective query language (the state's own, else the top-level one).
    pub query_language: QueryLanguage,
    pub kind: Kind,
    pub input_path: PathField,
    pub output_path: PathField,
    pub result_path: ResultPathField,
    pub parameters: Option<Template>,
    pub result_selector: Option<Template>,
    pub arguments: Option<JsonataTemplate>,
    pub output: Option<JsonataTemplate>,
    pub assign: Option<Assign>,
    /// `None` for Choice, Succeed and Fail.
    pub transition: Option<Transition>,
    pub retry: Vec<Retrier>,
    pub catch: Vec<Catcher>,
}

/// Why a definition could not be loaded: unreadable JSON or validation errors (all of them).
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("definition is not valid JSON: {0}")]
    Json(String),
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
