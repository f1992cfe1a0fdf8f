//! The typed model of a state machine definition.
//!
//! [`Definition::parse`] reads JSON text, runs the whole validation (see [`crate::validate`]),
//! and only then builds the model, so the interpreter never sees an invalid definition
//! ("parse and validate a whole definition before running any state"). Expression-bearing
//! fields (Parameters, Arguments, Output, Assign, Choice rules, …) stay raw JSON values: the
//! expression layer evaluates them.

use std::collections::HashMap;

use serde_json::Value;

use crate::choice::ChoiceRule;
use crate::error::Diagnostic;
use crate::jsonata_template::JsonataTemplate;
use crate::jsonpath::{JsonPath, ReferencePath};
use crate::template::{PayloadExpr, Template};
use crate::validate;

/// The query language of a definition or state (ASL `QueryLanguage`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum QueryLanguage {
    JsonPath,
    Jsonata,
}

impl QueryLanguage {
    pub(crate) fn from_field(v: Option<&Value>) -> Option<QueryLanguage> {
        match v?.as_str()? {
            "JSONPath" => Some(QueryLanguage::JsonPath),
            "JSONata" => Some(QueryLanguage::Jsonata),
            _ => None,
        }
    }
}

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

    /// Validates a JSON value and builds the model.
    pub fn from_value(value: Value) -> Result<Definition, DefinitionError> {
        let diags = validate::validate(&value);
        if !diags.is_empty() {
            return Err(DefinitionError::Invalid(diags));
        }
        let ql = QueryLanguage::from_field(value.get("QueryLanguage"))
            .unwrap_or(QueryLanguage::JsonPath);
        let mut b = Builder {
            diags: Vec::new(),
            top_ql: ql,
        };
        let machine = b.machine(&value, ql, "");
        if !b.diags.is_empty() {
            return Err(DefinitionError::Invalid(b.diags));
        }
        Ok(Definition {
            comment: value
                .get("Comment")
                .and_then(Value::as_str)
                .map(str::to_owned),
            timeout_seconds: value.get("TimeoutSeconds").and_then(Value::as_u64),
            query_language: ql,
            machine,
            source: value,
        })
    }
}

fn esc(seg: &str) -> String {
    seg.replace('~', "~0").replace('/', "~1")
}

fn string_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Compiles the validated JSON into the model; any compile error left (validation should have
/// caught it) is collected rather than panicking.
struct Builder {
    diags: Vec<Diagnostic>,
    // The top-level QueryLanguage: the language of every state without its own, at any depth
    // (developer guide, "Transforming data with JSONata": such a state "will use the query
    // language specified in the top-level QueryLanguage field"; a Map or Parallel state's own
    // QueryLanguage does not carry into its ItemProcessor or branches).
    top_ql: QueryLanguage,
}

impl Builder {
    fn push(&mut self, path: &str, state: &str, msg: impl Into<String>) {
        self.diags.push(Diagnostic::new(path, msg).in_state(state));
    }

    fn machine(&mut self, v: &Value, ql: QueryLanguage, base: &str) -> StateMachine {
        let start_at = v["StartAt"].as_str().unwrap_or_default().to_owned();
        let mut states = Vec::new();
        let mut index = HashMap::new();
        if let Some(map) = v["States"].as_object() {
            for (name, s) in map {
                index.insert(name.clone(), states.len());
                let path = format!("{base}/States/{}", esc(name));
                states.push(self.state(name, s, ql, &path));
            }
        }
        StateMachine {
            start_at,
            states,
            index,
        }
    }

    fn path(&mut self, v: Option<&Value>, at: &str, st: &str) -> PathField {
        match v {
            None => PathField::Default,
            Some(Value::Null) => PathField::Null,
            Some(Value::String(s)) => match JsonPath::parse(s) {
                Ok(p) => PathField::Path(p),
                Err(e) => {
                    self.push(at, st, e.to_string());
                    PathField::Default
                }
            },
            Some(_) => {
                self.push(at, st, "must be a path string or null");
                PathField::Default
            }
        }
    }

    fn json_path(&mut self, v: Option<&Value>, at: &str, st: &str) -> Option<JsonPath> {
        match self.path(v, at, st) {
            PathField::Path(p) => Some(p),
            _ => None,
        }
    }

    fn result_path(&mut self, v: Option<&Value>, at: &str, st: &str) -> ResultPathField {
        match v {
            None => ResultPathField::Default,
            Some(Value::Null) => ResultPathField::Null,
            Some(Value::String(s)) => match ReferencePath::parse(s) {
                Ok(p) => ResultPathField::Path(p),
                Err(e) => {
                    self.push(at, st, e.to_string());
                    ResultPathField::Default
                }
            },
            Some(_) => {
                self.push(at, st, "must be a path string or null");
                ResultPathField::Default
            }
        }
    }

    fn template(&mut self, v: Option<&Value>, at: &str, st: &str) -> Option<Template> {
        match Template::compile(v?) {
            Ok(t) => Some(t),
            Err(ds) => {
                self.diags
                    .extend(ds.into_iter().map(|d| d.under(at).in_state(st)));
                None
            }
        }
    }

    fn jsonata(
        &mut self,
        v: Option<&Value>,
        field: &str,
        at: &str,
        st: &str,
    ) -> Option<JsonataTemplate> {
        match JsonataTemplate::compile(v?, field) {
            Ok(t) => Some(t),
            Err(ds) => {
                self.diags
                    .extend(ds.into_iter().map(|d| d.under(at).in_state(st)));
                None
            }
        }
    }

    fn assign(
        &mut self,
        v: Option<&Value>,
        ql: QueryLanguage,
        at: &str,
        st: &str,
    ) -> Option<Assign> {
        match ql {
            QueryLanguage::JsonPath => self.template(v, at, st).map(Assign::JsonPath),
            QueryLanguage::Jsonata => self.jsonata(v, "Assign", at, st).map(Assign::Jsonata),
        }
    }

    fn expr(
        &mut self,
        v: Option<&Value>,
        ql: QueryLanguage,
        field: &str,
        at: &str,
        st: &str,
    ) -> Option<Expr> {
        let v = v?;
        match ql {
            QueryLanguage::Jsonata => self.jsonata(Some(v), field, at, st).map(Expr::Jsonata),
            QueryLanguage::JsonPath => Some(Expr::Literal(v.clone())),
        }
    }

    fn setting(
        &mut self,
        s: &Value,
        field: &str,
        ql: QueryLanguage,
        base: &str,
        st: &str,
    ) -> Option<Setting> {
        let path_field = format!("{field}Path");
        if let Some(p) = self.json_path(s.get(&path_field), &format!("{base}/{path_field}"), st) {
            return Some(Setting::Path(p));
        }
        self.expr(s.get(field), ql, field, &format!("{base}/{field}"), st)
            .map(Setting::Value)
    }

    fn state(&mut self, name: &str, s: &Value, parent_ql: QueryLanguage, base: &str) -> State {
        let ql = QueryLanguage::from_field(s.get("QueryLanguage")).unwrap_or(parent_ql);
        let ty = s["Type"].as_str().unwrap_or_default();
        let at = |f: &str| format!("{base}/{f}");
        let mut parameters_raw = s.get("Parameters");
        let kind = match ty {
            "Pass" => Kind::Pass {
                result: s.get("Result").cloned(),
            },
            "Task" => Kind::Task {
                resource: s["Resource"].as_str().unwrap_or_default().to_owned(),
                timeout_seconds: self.setting(s, "TimeoutSeconds", ql, base, name),
                heartbeat_seconds: self.setting(s, "HeartbeatSeconds", ql, base, name),
            },
            "Choice" => {
                let mut choices = Vec::new();
                for (i, r) in s["Choices"].as_array().into_iter().flatten().enumerate() {
                    let rp = format!("{base}/Choices/{i}");
                    let rule = match ChoiceRule::parse(r, &rp, true) {
                        Ok(rule) => rule,
                        Err(ds) => {
                            self.diags.extend(ds.into_iter().map(|d| d.in_state(name)));
                            continue;
                        }
                    };
                    choices.push(ChoiceBranch {
                        rule,
                        next: r["Next"].as_str().unwrap_or_default().to_owned(),
                        assign: self.assign(r.get("Assign"), ql, &format!("{rp}/Assign"), name),
                        output: self.jsonata(
                            r.get("Output"),
                            "Output",
                            &format!("{rp}/Output"),
                            name,
                        ),
                    });
                }
                Kind::Choice {
                    choices,
                    default: s.get("Default").and_then(Value::as_str).map(str::to_owned),
                }
            }
            "Wait" => {
                let wait = if let Some(p) =
                    self.json_path(s.get("SecondsPath"), &at("SecondsPath"), name)
                {
                    WaitFor::SecondsPath(p)
                } else if let Some(p) =
                    self.json_path(s.get("TimestampPath"), &at("TimestampPath"), name)
                {
                    WaitFor::TimestampPath(p)
                } else if let Some(e) =
                    self.expr(s.get("Timestamp"), ql, "Timestamp", &at("Timestamp"), name)
                {
                    WaitFor::Timestamp(e)
                } else {
                    WaitFor::Seconds(
                        self.expr(s.get("Seconds"), ql, "Seconds", &at("Seconds"), name)
                            .unwrap_or(Expr::Literal(Value::from(0))),
                    )
                };
                Kind::Wait { wait }
            }
            "Succeed" => Kind::Succeed,
            "Fail" => {
                let field = |b: &mut Builder, f: &str| -> Option<FailField> {
                    let pf = format!("{f}Path");
                    if let Some(Value::String(p)) = s.get(&pf) {
                        return match PayloadExpr::parse(p) {
                            Ok(e) => Some(FailField::Path(e)),
                            Err(e) => {
                                b.push(&at(&pf), name, e.to_string());
                                None
                            }
                        };
                    }
                    b.expr(s.get(f), ql, f, &at(f), name).map(FailField::Value)
                };
                let error = field(self, "Error");
                let cause = field(self, "Cause");
                Kind::Fail { error, cause }
            }
            "Parallel" => Kind::Parallel {
                branches: s["Branches"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                    .map(|(i, b)| self.machine(b, self.top_ql, &format!("{base}/Branches/{i}")))
                    .collect(),
            },
            _ => {
                // "Map": validation guarantees the type is one of the eight.
                let (pfield, processor) = match s.get("ItemProcessor") {
                    Some(p) => ("ItemProcessor", Some(p)),
                    None => ("Iterator", s.get("Iterator")),
                };
                let distributed = processor
                    .and_then(|p| p.pointer("/ProcessorConfig/Mode"))
                    .and_then(Value::as_str)
                    == Some("DISTRIBUTED");
                let machine = match processor {
                    Some(p) => self.machine(p, self.top_ql, &at(pfield)),
                    None => StateMachine {
                        start_at: String::new(),
                        states: Vec::new(),
                        index: HashMap::new(),
                    },
                };
                let item_selector = match (s.get("ItemSelector"), parameters_raw.take()) {
                    (Some(sel), _) => self.assign(Some(sel), ql, &at("ItemSelector"), name),
                    (None, Some(p)) => self.assign(Some(p), ql, &at("Parameters"), name),
                    (None, None) => None,
                };
                Kind::Map {
                    processor: Box::new(machine),
                    distributed,
                    items_path: self.path(s.get("ItemsPath"), &at("ItemsPath"), name),
                    items: self.expr(s.get("Items"), ql, "Items", &at("Items"), name),
                    item_selector,
                    max_concurrency: self.setting(s, "MaxConcurrency", ql, base, name),
                    tolerated_failure_count: self.setting(
                        s,
                        "ToleratedFailureCount",
                        ql,
                        base,
                        name,
                    ),
                    tolerated_failure_percentage: self.setting(
                        s,
                        "ToleratedFailurePercentage",
                        ql,
                        base,
                        name,
                    ),
                }
            }
        };
        let transition = match (s.get("Next").and_then(Value::as_str), s.get("End")) {
            (Some(n), _) => Some(Transition::Next(n.to_owned())),
            (None, Some(Value::Bool(true))) => Some(Transition::End),
            _ => None,
        };
        let retry = s["Retry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| Retrier {
                error_equals: string_list(r.get("ErrorEquals")),
                interval_seconds: r
                    .get("IntervalSeconds")
                    .and_then(Value::as_f64)
                    .unwrap_or(1.0),
                max_attempts: r.get("MaxAttempts").and_then(Value::as_u64).unwrap_or(3),
                backoff_rate: r.get("BackoffRate").and_then(Value::as_f64).unwrap_or(2.0),
                max_delay_seconds: r.get("MaxDelaySeconds").and_then(Value::as_f64),
                jitter: if r.get("JitterStrategy").and_then(Value::as_str) == Some("FULL") {
                    Jitter::Full
                } else {
                    Jitter::None
                },
            })
            .collect();
        let mut catch = Vec::new();
        for (i, c) in s["Catch"].as_array().into_iter().flatten().enumerate() {
            let cp = format!("{base}/Catch/{i}");
            catch.push(Catcher {
                error_equals: string_list(c.get("ErrorEquals")),
                next: c["Next"].as_str().unwrap_or_default().to_owned(),
                result_path: self.result_path(
                    c.get("ResultPath"),
                    &format!("{cp}/ResultPath"),
                    name,
                ),
                output: self.jsonata(c.get("Output"), "Output", &format!("{cp}/Output"), name),
                assign: self.assign(c.get("Assign"), ql, &format!("{cp}/Assign"), name),
            });
        }
        let parameters = self.template(parameters_raw, &at("Parameters"), name);
        State {
            name: name.to_owned(),
            query_language: ql,
            kind,
            input_path: self.path(s.get("InputPath"), &at("InputPath"), name),
            output_path: self.path(s.get("OutputPath"), &at("OutputPath"), name),
            result_path: self.result_path(s.get("ResultPath"), &at("ResultPath"), name),
            parameters,
            result_selector: self.template(s.get("ResultSelector"), &at("ResultSelector"), name),
            arguments: self.jsonata(s.get("Arguments"), "Arguments", &at("Arguments"), name),
            output: self.jsonata(s.get("Output"), "Output", &at("Output"), name),
            assign: self.assign(s.get("Assign"), ql, &at("Assign"), name),
            transition,
            retry,
            catch,
        }
    }
}
