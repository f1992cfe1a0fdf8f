//! Static validation of a state machine definition: every problem, not just the first.
//!
//! [`validate`] walks the raw JSON (so it can report fields the model has no place for) and
//! returns one [`Diagnostic`] per problem, each naming the JSON path and, where there is one,
//! the state. Checks, following the ASL spec (states-language.net) and what Step Functions'
//! `ValidateStateMachineDefinition` rejects:
//! - structure: `StartAt`/`States` present, `StartAt` and every `Next`/`Default` name a state in
//!   the same block, state names unique across the whole definition and at most 80 characters;
//! - each state: a known `Type`, only the fields that type allows in its query language, the
//!   required fields, mutually exclusive pairs (`Seconds`/`SecondsPath`, `Error`/`ErrorPath`,
//!   `TimeoutSeconds`/`TimeoutSecondsPath`, `Next`/`End`, …);
//! - `Retry`/`Catch` shape (`ErrorEquals` non-empty list of strings, `States.ALL` last);
//! - paths are syntactically valid JSONPath (ResultPath a reference path, no variables),
//!   intrinsic calls well-formed, JSONata `{% … %}` strings well-formed;
//! - graph: every state reachable from `StartAt`, at least one terminal state reachable;
//! - Task `HeartbeatSeconds` smaller than `TimeoutSeconds` (ASL spec, Task State);
//! - variable scopes: a Map processor or Parallel branch cannot assign a variable that an outer
//!   scope assigns (developer guide, "Variable scope"), see `Validator::variable_scopes`.

use crate::jsonata_template::{JsonataTemplate, parse_expression};
use crate::jsonpath::{JsonPath, ReferencePath};
use crate::template::Template;
use jsonata::is_expression;
use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use crate::model::QueryLanguage;

pub use crate::error::Diagnostic;

fn diag(path: &str, state: Option<&str>, message: impl Into<String>) -> Diagnostic {
    let d = Diagnostic::new(path, message);
    match state {
        Some(s) => d.in_state(s),
        None => d,
    }
}

/// Validates a whole definition; an empty list means valid.
pub fn validate(def: &Value) -> Vec<Diagnostic> {
    let mut v = Validator {
        diags: Vec::new(),
        names: HashMap::new(),
        top_ql: QueryLanguage::JsonPath,
    };
    let Some(top) = def.as_object() else {
        v.err("", None, "a state machine definition must be a JSON object");
        return v.diags;
    };
    for key in top.keys() {
        if !matches!(
            key.as_str(),
            "Comment" | "StartAt" | "States" | "Version" | "TimeoutSeconds" | "QueryLanguage"
        ) {
            v.err(
                &format!("/{key}"),
                None,
                format!("field \"{key}\" is not allowed at the top level of a definition"),
            );
        }
    }
    if let Some(t) = top.get("TimeoutSeconds") {
        // AWS rejects 0 here like it does for a Task's TimeoutSeconds: the field bounds how
        // long the execution may run, and an execution cannot be allowed to run for no time.
        if !is_positive_int(t) {
            v.err(
                "/TimeoutSeconds",
                None,
                "must be a positive integer (seconds the execution may run); remove the field for no limit other than the 1-year maximum",
            );
        }
    }
    if let Some(ver) = top.get("Version") {
        if !ver.is_string() {
            v.err("/Version", None, "must be a string such as \"1.0\"");
        }
    }
    if let Some(c) = top.get("Comment") {
        if !c.is_string() {
            v.err("/Comment", None, "must be a string");
        }
    }
    let ql = match top.get("QueryLanguage") {
        None => QueryLanguage::JsonPath,
        Some(q) => QueryLanguage::from_field(Some(q)).unwrap_or_else(|| {
            v.err(
                "/QueryLanguage",
                None,
                "must be \"JSONPath\" or \"JSONata\"",
            );
            QueryLanguage::JsonPath
        }),
    };
    v.top_ql = ql;
    v.machine(top, "", ql);
    v.variable_scopes(top, "", &HashMap::new());
    v.diags
}

/// The variables a state assigns, with the JSON path of each assignment: its own `Assign`, its
/// Choice rules' and its catchers' (`"x.$"` assigns `x`). A Map/Parallel state's own and
/// catchers' assignments belong to the scope the state is in, not to its inner scope.
fn assignments(s: &Map<String, Value>, path: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut collect = |assign: Option<&Value>, at: String| {
        if let Some(a) = assign.and_then(Value::as_object) {
            for key in a.keys() {
                let name = key.strip_suffix(".$").unwrap_or(key);
                out.push((name.to_owned(), format!("{at}/Assign/{}", esc(key))));
            }
        }
    };
    collect(s.get("Assign"), path.to_owned());
    for field in ["Choices", "Catch"] {
        if let Some(list) = s.get(field).and_then(Value::as_array) {
            for (i, item) in list.iter().enumerate() {
                collect(item.get("Assign"), format!("{path}/{field}/{i}"));
            }
        }
    }
    out
}

/// The inner scopes a state opens: its Map processor or its Parallel branches, with their paths.
fn inner_scopes<'a>(
    s: &'a Map<String, Value>,
    path: &str,
) -> Vec<(&'a Map<String, Value>, String)> {
    let mut out = Vec::new();
    for field in ["ItemProcessor", "Iterator"] {
        if let Some(m) = s.get(field).and_then(Value::as_object) {
            out.push((m, format!("{path}/{field}")));
        }
    }
    if let Some(branches) = s.get("Branches").and_then(Value::as_array) {
        for (i, b) in branches.iter().enumerate() {
            if let Some(m) = b.as_object() {
                out.push((m, format!("{path}/Branches/{i}")));
            }
        }
    }
    out
}

struct Validator {
    diags: Vec<Diagnostic>,
    // The definition's top-level QueryLanguage: the default of every state without its own,
    // nested (Map processor, Parallel branch) states included.
    top_ql: QueryLanguage,
    // Invariant: state name → JSON path of its first definition (names are unique per definition).
    names: HashMap<String, String>,
}

fn is_non_negative_int(v: &Value) -> bool {
    v.as_u64().is_some()
        || v.as_f64()
            .is_some_and(|f| f >= 0.0 && f.fract() == 0.0 && v.is_u64())
}

/// Largest IntervalSeconds / MaxAttempts a retrier may declare (Step Functions developer
/// guide, "Retrier fields").
const MAX_RETRY_FIELD: u64 = 99_999_999;
/// Largest MaxDelaySeconds a retrier may declare: AWS requires it to be less than 31622401.
const MAX_RETRY_DELAY_SECONDS: u64 = 31_622_400;

fn is_positive_int(v: &Value) -> bool {
    v.as_u64().is_some_and(|n| n > 0)
}

fn esc(seg: &str) -> String {
    seg.replace('~', "~0").replace('/', "~1")
}

const COMMON: &[&str] = &["Type", "Comment", "QueryLanguage"];

impl Validator {
    fn err(&mut self, path: &str, state: Option<&str>, msg: impl Into<String>) {
        self.diags.push(diag(path, state, msg));
    }

    /// Variable scopes (developer guide, "Passing data between states with variables",
    /// section "Variable scope"): "A variable exists in a scope if any state in the scope
    /// assigns a value to it. [...] a variable assigned in an inner scope cannot have the same
    /// name as one assigned in an outer scope." Each Map processor and Parallel branch is an
    /// inner scope of the block its state is in; sibling branches may reuse a name. `outer`:
    /// every variable of the enclosing scopes → the path of its first assignment.
    fn variable_scopes(
        &mut self,
        m: &Map<String, Value>,
        base: &str,
        outer: &HashMap<String, String>,
    ) {
        let Some(states) = m.get("States").and_then(Value::as_object) else {
            return;
        };
        let mut scope = outer.clone();
        for (name, st) in states {
            let Some(obj) = st.as_object() else {
                continue;
            };
            let path = format!("{base}/States/{}", esc(name));
            for (var, at) in assignments(obj, &path) {
                if let Some(first) = outer.get(&var) {
                    self.err(
                        &at,
                        Some(name),
                        format!(
                            "variable \"{var}\" is already assigned in an outer scope (at {first}); a Map iteration or Parallel branch can read outer variables but cannot assign one: rename this variable, or pass the value out with Output (or ResultPath) and assign it in the outer scope"
                        ),
                    );
                }
                scope.entry(var).or_insert(at);
            }
        }
        for (name, st) in states {
            let Some(obj) = st.as_object() else {
                continue;
            };
            let path = format!("{base}/States/{}", esc(name));
            for (inner, at) in inner_scopes(obj, &path) {
                self.variable_scopes(inner, &at, &scope);
            }
        }
    }

    fn machine(&mut self, m: &Map<String, Value>, base: &str, ql: QueryLanguage) {
        let start = match m.get("StartAt") {
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => {
                self.err(
                    &format!("{base}/StartAt"),
                    None,
                    "must be a string naming a state",
                );
                None
            }
            None => {
                self.err(
                    &format!("{base}/StartAt"),
                    None,
                    "missing required field \"StartAt\"",
                );
                None
            }
        };
        let Some(states) = m.get("States").and_then(Value::as_object) else {
            self.err(
                &format!("{base}/States"),
                None,
                "missing required field \"States\" (an object of state name → state)",
            );
            return;
        };
        if states.is_empty() {
            self.err(
                &format!("{base}/States"),
                None,
                "must define at least one state",
            );
        }
        if let Some(s) = start {
            if !states.contains_key(s) {
                self.err(
                    &format!("{base}/StartAt"),
                    None,
                    format!("StartAt names \"{s}\", which is not a state in this States block"),
                );
            }
        }
        // Graph: edges per state, terminal flags.
        let mut edges: HashMap<&str, Vec<&str>> = HashMap::new();
        let mut terminal: HashSet<&str> = HashSet::new();
        for (name, st) in states {
            let path = format!("{base}/States/{}", esc(name));
            if let Some(prev) = self.names.insert(name.clone(), path.clone()) {
                self.err(
                    &path,
                    Some(name),
                    format!("state name is already used at {prev}; state names must be unique in the whole definition"),
                );
            }
            // ASL spec "States": a state name's length MUST be at most 80 Unicode characters;
            // the Step Functions API types state names as 1 to 80 characters.
            if name.is_empty() {
                self.err(
                    &path,
                    None,
                    "a state name cannot be empty; give the state a name of 1 to 80 characters",
                );
            }
            if name.chars().count() > 80 {
                self.err(&path, Some(name), "state name is longer than 80 characters");
            }
            let Some(obj) = st.as_object() else {
                self.err(&path, Some(name), "a state must be a JSON object");
                continue;
            };
            let (next, is_terminal) = self.state(name, obj, &path, ql);
            if is_terminal {
                terminal.insert(name.as_str());
            }
            for (field, target) in &next {
                if !states.contains_key(*target) {
                    self.err(
                        &format!("{path}/{field}"),
                        Some(name),
                        format!("names \"{target}\", which is not a state in this States block"),
                    );
                }
            }
            edges.insert(name.as_str(), next.into_iter().map(|(_, t)| t).collect());
        }
        // Reachability from StartAt.
        if let Some(s) = start.filter(|s| states.contains_key(*s)) {
            let mut seen: HashSet<&str> = HashSet::new();
            let mut stack = vec![s];
            while let Some(n) = stack.pop() {
                if seen.insert(n) {
                    if let Some(es) = edges.get(n) {
                        stack.extend(es.iter().copied().filter(|t| states.contains_key(*t)));
                    }
                }
            }
            for name in states.keys() {
                if !seen.contains(name.as_str()) {
                    self.err(
                        &format!("{base}/States/{}", esc(name)),
                        Some(name),
                        "state is unreachable from StartAt; remove it or add a Next that names it",
                    );
                }
            }
            if !seen.iter().any(|n| terminal.contains(n)) {
                self.err(
                    &format!("{base}/States"),
                    None,
                    "no terminal state is reachable: add \"End\": true or a Succeed/Fail state",
                );
            }
        }
    }

    /// Returns (transition field → target) and whether the state can end the block.
    fn state<'a>(
        &mut self,
        name: &str,
        s: &'a Map<String, Value>,
        path: &str,
        parent_ql: QueryLanguage,
    ) -> (Vec<(String, &'a str)>, bool) {
        let st = Some(name);
        let mut next: Vec<(String, &'a str)> = Vec::new();
        let ql = match s.get("QueryLanguage") {
            None => parent_ql,
            Some(q) => match QueryLanguage::from_field(Some(q)) {
                // Developer guide, "State machine structure": "You cannot revert a top-level
                // JSONata-based state machine to a mix of JSONata and JSONPath states."
                Some(QueryLanguage::JsonPath) if self.top_ql == QueryLanguage::Jsonata => {
                    self.err(
                        &format!("{path}/QueryLanguage"),
                        st,
                        "\"QueryLanguage\" cannot be \"JSONPath\" when the top-level QueryLanguage is \"JSONata\": a JSONata state machine cannot contain JSONPath states; remove this field (the state then uses JSONata) or set the top-level QueryLanguage to \"JSONPath\"",
                    );
                    // Go on as written, so the rest is checked against the fields it uses.
                    QueryLanguage::JsonPath
                }
                Some(q) => q,
                None => {
                    self.err(
                        &format!("{path}/QueryLanguage"),
                        st,
                        "must be \"JSONPath\" or \"JSONata\"",
                    );
                    parent_ql
                }
            },
        };
        let ty = match s.get("Type") {
            Some(Value::String(t)) => t.as_str(),
            Some(_) => {
                self.err(&format!("{path}/Type"), st, "must be a string");
                return (next, true);
            }
            None => {
                self.err(
                    &format!("{path}/Type"),
                    st,
                    "missing required field \"Type\"",
                );
                return (next, true);
            }
        };
        let jp = ql == QueryLanguage::JsonPath;
        if !jp {
            self.states_field_uses(s, ty, path, st);
        }
        // Fields allowed per type (ASL spec "Common State Fields" table + JSONata variants).
        let (io_jp, io_ja): (&[&str], &[&str]) = (&["InputPath", "OutputPath"], &["Output"]);
        let mut allowed: Vec<&str> = COMMON.to_vec();
        let flow: &[&str] = &["Next", "End"];
        match ty {
            "Pass" => {
                allowed.extend(flow);
                allowed.push("Assign");
                if jp {
                    allowed.extend(io_jp);
                    allowed.extend(["Parameters", "ResultPath", "Result"]);
                } else {
                    allowed.extend(io_ja);
                }
            }
            "Task" => {
                allowed.extend(flow);
                allowed.extend([
                    "Resource",
                    "Retry",
                    "Catch",
                    "Assign",
                    "TimeoutSeconds",
                    "HeartbeatSeconds",
                    "Credentials",
                ]);
                if jp {
                    allowed.extend(io_jp);
                    allowed.extend([
                        "Parameters",
                        "ResultPath",
                        "ResultSelector",
                        "TimeoutSecondsPath",
                        "HeartbeatSecondsPath",
                    ]);
                } else {
                    allowed.extend(io_ja);
                    allowed.push("Arguments");
                }
            }
            "Choice" => {
                allowed.extend(["Choices", "Default", "Assign"]);
                if jp {
                    allowed.extend(io_jp);
                } else {
                    allowed.extend(io_ja);
                }
            }
            "Wait" => {
                allowed.extend(flow);
                allowed.extend(["Seconds", "Timestamp", "Assign"]);
                if jp {
                    allowed.extend(io_jp);
                    allowed.extend(["SecondsPath", "TimestampPath"]);
                } else {
                    allowed.extend(io_ja);
                }
            }
            "Succeed" => {
                if jp {
                    allowed.extend(io_jp);
                } else {
                    allowed.extend(io_ja);
                }
            }
            "Fail" => {
                allowed.extend(["Error", "Cause"]);
                if jp {
                    allowed.extend(["ErrorPath", "CausePath"]);
                }
            }
            "Parallel" => {
                allowed.extend(flow);
                allowed.extend(["Branches", "Retry", "Catch", "Assign"]);
                if jp {
                    allowed.extend(io_jp);
                    allowed.extend(["Parameters", "ResultPath", "ResultSelector"]);
                } else {
                    allowed.extend(io_ja);
                    allowed.push("Arguments");
                }
            }
            "Map" => {
                allowed.extend(flow);
                allowed.extend([
                    "Iterator",
                    "ItemProcessor",
                    "ItemReader",
                    "ItemSelector",
                    "ItemBatcher",
                    "ResultWriter",
                    "MaxConcurrency",
                    "ToleratedFailurePercentage",
                    "ToleratedFailureCount",
                    "Retry",
                    "Catch",
                    "Assign",
                    "Label",
                ]);
                if jp {
                    allowed.extend(io_jp);
                    allowed.extend([
                        "Parameters",
                        "ResultPath",
                        "ResultSelector",
                        "ItemsPath",
                        "MaxConcurrencyPath",
                        "ToleratedFailurePercentagePath",
                        "ToleratedFailureCountPath",
                    ]);
                } else {
                    allowed.extend(io_ja);
                    allowed.push("Items");
                }
            }
            other => {
                self.err(
                    &format!("{path}/Type"),
                    st,
                    format!("unknown state type \"{other}\" (expected Pass, Task, Choice, Wait, Succeed, Fail, Parallel or Map)"),
                );
                return (next, true);
            }
        }
        for key in s.keys() {
            if !allowed.contains(&key.as_str()) {
                let hint = if jp { "JSONPath" } else { "JSONata" };
                self.err(
                    &format!("{path}/{}", esc(key)),
                    st,
                    format!("field \"{key}\" is not allowed in a {ty} state using {hint}"),
                );
            }
        }
        // Transitions.
        let mut is_terminal = false;
        if flow.iter().all(|f| allowed.contains(f)) {
            match (s.get("Next"), s.get("End")) {
                (Some(n), Some(_)) => {
                    self.err(path, st, "has both \"Next\" and \"End\"; use exactly one");
                    if let Value::String(n) = n {
                        next.push(("Next".into(), n.as_str()));
                    }
                }
                (None, None) => self.err(path, st, "needs \"Next\" or \"End\": true"),
                (Some(Value::String(n)), None) => next.push(("Next".into(), n.as_str())),
                (Some(_), None) => self.err(&format!("{path}/Next"), st, "must be a state name"),
                (None, Some(Value::Bool(true))) => is_terminal = true,
                (None, Some(_)) => {
                    self.err(&format!("{path}/End"), st, "must be true (or use Next)")
                }
            }
        }
        if matches!(ty, "Succeed" | "Fail") {
            is_terminal = true;
        }
        // Paths and templates shared by types.
        for f in ["InputPath", "OutputPath"] {
            if let Some(p) = s.get(f) {
                self.path_field(p, &format!("{path}/{f}"), st, false, true);
            }
        }
        if let Some(p) = s.get("ResultPath") {
            self.path_field(p, &format!("{path}/ResultPath"), st, true, true);
        }
        for f in [
            "Parameters",
            "ResultSelector",
            "Assign",
            "Arguments",
            "Output",
            "ItemSelector",
            "Credentials",
        ] {
            if let Some(t) = s.get(f) {
                self.template(t, &format!("{path}/{f}"), st, ql, f == "Assign");
            }
        }
        if let Some(r) = s.get("Retry") {
            self.retry(r, &format!("{path}/Retry"), st);
        }
        if let Some(c) = s.get("Catch") {
            for (field, t) in self.catch(c, &format!("{path}/Catch"), st, ql) {
                next.push((field, t));
            }
        }
        self.exclusive(
            s,
            path,
            st,
            &[
                ("TimeoutSeconds", "TimeoutSecondsPath"),
                ("HeartbeatSeconds", "HeartbeatSecondsPath"),
            ],
        );
        match ty {
            "Task" => {
                match s.get("Resource") {
                    Some(Value::String(r)) => self.resource(r, &format!("{path}/Resource"), st),
                    Some(_) => {
                        self.err(&format!("{path}/Resource"), st, "must be a string (an ARN)")
                    }
                    None => self.err(path, st, "missing required field \"Resource\""),
                }
                for f in ["TimeoutSeconds", "HeartbeatSeconds"] {
                    if let Some(t) = s.get(f) {
                        if !(is_positive_int(t) || (!jp && is_jsonata(t))) {
                            self.err(&format!("{path}/{f}"), st, "must be a positive integer");
                        }
                    }
                }
                for f in ["TimeoutSecondsPath", "HeartbeatSecondsPath"] {
                    if let Some(p) = s.get(f) {
                        self.path_field(p, &format!("{path}/{f}"), st, false, false);
                        self.no_context_path(p, &format!("{path}/{f}"), st, f);
                    }
                }
                // ASL spec, Task State: "If provided, the HeartbeatSeconds interval MUST be
                // smaller than the TimeoutSeconds value" (checkable when both are literals).
                if let (Some(hb), Some(to)) = (
                    s.get("HeartbeatSeconds").and_then(Value::as_u64),
                    s.get("TimeoutSeconds").and_then(Value::as_u64),
                ) {
                    if hb >= to {
                        self.err(
                            &format!("{path}/HeartbeatSeconds"),
                            st,
                            format!(
                                "HeartbeatSeconds ({hb}) must be smaller than TimeoutSeconds ({to}); lower HeartbeatSeconds or raise TimeoutSeconds"
                            ),
                        );
                    }
                }
                if let Some(c) = s.get("Credentials") {
                    if !c.is_object() {
                        self.err(&format!("{path}/Credentials"), st, "must be an object");
                    }
                }
            }
            "Choice" => {
                match s.get("Choices").and_then(Value::as_array) {
                    Some(rules) if !rules.is_empty() => {
                        for (i, rule) in rules.iter().enumerate() {
                            let rp = format!("{path}/Choices/{i}");
                            match rule.get("Next") {
                                Some(Value::String(n)) => {
                                    next.push((format!("Choices/{i}/Next"), n.as_str()))
                                }
                                _ => {
                                    self.err(&rp, st, "a Choice rule needs \"Next\" naming a state")
                                }
                            }
                            self.choice_rule(rule, &rp, st, ql);
                        }
                    }
                    _ => self.err(
                        &format!("{path}/Choices"),
                        st,
                        "must be a non-empty array of rules",
                    ),
                }
                match s.get("Default") {
                    Some(Value::String(d)) => next.push(("Default".into(), d.as_str())),
                    Some(_) => self.err(&format!("{path}/Default"), st, "must be a state name"),
                    None => {}
                }
            }
            "Wait" => {
                let present: Vec<&str> = ["Seconds", "SecondsPath", "Timestamp", "TimestampPath"]
                    .into_iter()
                    .filter(|f| s.contains_key(*f))
                    .collect();
                if present.len() != 1 {
                    self.err(
                        path,
                        st,
                        format!("a Wait state needs exactly one of Seconds, SecondsPath, Timestamp, TimestampPath (found {})", if present.is_empty() { "none".to_owned() } else { present.join(", ") }),
                    );
                }
                if let Some(v) = s.get("Seconds") {
                    if !(is_non_negative_int(v) || (!jp && is_jsonata(v))) {
                        self.err(
                            &format!("{path}/Seconds"),
                            st,
                            "must be a non-negative integer",
                        );
                    }
                }
                if let Some(v) = s.get("Timestamp") {
                    let ok = match v {
                        Value::String(t) => {
                            (!jp && is_jsonata(v)) || clock::parse_rfc3339(t).is_some()
                        }
                        _ => false,
                    };
                    if !ok {
                        self.err(
                            &format!("{path}/Timestamp"),
                            st,
                            "must be an RFC 3339 timestamp such as \"2016-03-14T01:59:00Z\"",
                        );
                    }
                }
                for f in ["SecondsPath", "TimestampPath"] {
                    if let Some(p) = s.get(f) {
                        self.path_field(p, &format!("{path}/{f}"), st, false, false);
                    }
                }
            }
            "Fail" => {
                self.exclusive(
                    s,
                    path,
                    st,
                    &[("Error", "ErrorPath"), ("Cause", "CausePath")],
                );
                for f in ["Error", "Cause"] {
                    if let Some(v) = s.get(f) {
                        if !v.is_string() {
                            self.err(&format!("{path}/{f}"), st, "must be a string");
                        } else if !jp {
                            self.jsonata_string(v, &format!("{path}/{f}"), st);
                        }
                    }
                }
                for f in ["ErrorPath", "CausePath"] {
                    match s.get(f) {
                        Some(Value::String(p)) => {
                            if let Err(e) = crate::template::PayloadExpr::parse(p) {
                                self.err(&format!("{path}/{f}"), st, e.to_string());
                            }
                        }
                        Some(_) => self.err(
                            &format!("{path}/{f}"),
                            st,
                            "must be a path or intrinsic function string",
                        ),
                        None => {}
                    }
                }
            }
            "Parallel" => match s.get("Branches").and_then(Value::as_array) {
                Some(bs) if !bs.is_empty() => {
                    for (i, b) in bs.iter().enumerate() {
                        match b.as_object() {
                            // Nested states default to the top-level QueryLanguage, not the
                            // Parallel state's own (see `map`).
                            Some(bo) => {
                                self.machine(bo, &format!("{path}/Branches/{i}"), self.top_ql)
                            }
                            None => self.err(
                                &format!("{path}/Branches/{i}"),
                                st,
                                "a branch must be an object with StartAt and States",
                            ),
                        }
                    }
                }
                _ => self.err(
                    &format!("{path}/Branches"),
                    st,
                    "a Parallel state needs \"Branches\": a non-empty array of {StartAt, States}",
                ),
            },
            "Map" => self.map(s, path, st, ql),
            _ => {}
        }
        (next, is_terminal)
    }

    fn map(&mut self, s: &Map<String, Value>, path: &str, st: Option<&str>, ql: QueryLanguage) {
        self.exclusive(
            s,
            path,
            st,
            &[
                ("Iterator", "ItemProcessor"),
                ("Parameters", "ItemSelector"),
                ("MaxConcurrency", "MaxConcurrencyPath"),
                ("ToleratedFailureCount", "ToleratedFailureCountPath"),
                (
                    "ToleratedFailurePercentage",
                    "ToleratedFailurePercentagePath",
                ),
                ("Items", "ItemsPath"),
            ],
        );
        let proc_field = if s.contains_key("ItemProcessor") {
            "ItemProcessor"
        } else {
            "Iterator"
        };
        match s.get(proc_field).and_then(Value::as_object) {
            Some(p) => {
                let pp = format!("{path}/{proc_field}");
                if let Some(cfg) = p.get("ProcessorConfig") {
                    match cfg.get("Mode").and_then(Value::as_str) {
                        None | Some("INLINE") | Some("DISTRIBUTED") => {}
                        Some(m) => self.err(&format!("{pp}/ProcessorConfig/Mode"), st, format!("unknown mode \"{m}\" (INLINE or DISTRIBUTED)")),
                    }
                }
                for k in p.keys() {
                    if !matches!(k.as_str(), "StartAt" | "States" | "ProcessorConfig" | "Comment") {
                        self.err(&format!("{pp}/{}", esc(k)), st, format!("field \"{k}\" is not allowed in {proc_field}"));
                    }
                }
                // Developer guide, "Transforming data with JSONata": a state without its own
                // QueryLanguage "will use the query language specified in the top-level
                // QueryLanguage field" — the Map state's own language does not flow into its
                // ItemProcessor (AWS reports the inner states' JSONata-only fields as errors).
                self.machine(p, &pp, self.top_ql);
            }
            None => self.err(path, st, "a Map state needs \"ItemProcessor\" (or legacy \"Iterator\") with StartAt and States"),
        }
        if let Some(p) = s.get("ItemsPath") {
            self.path_field(p, &format!("{path}/ItemsPath"), st, false, false);
        }
        for f in [
            "MaxConcurrencyPath",
            "ToleratedFailureCountPath",
            "ToleratedFailurePercentagePath",
        ] {
            if let Some(p) = s.get(f) {
                self.path_field(p, &format!("{path}/{f}"), st, false, false);
                self.no_context_path(p, &format!("{path}/{f}"), st, f);
            }
        }
        let jp = ql == QueryLanguage::JsonPath;
        for f in ["MaxConcurrency", "ToleratedFailureCount"] {
            if let Some(v) = s.get(f) {
                if !(is_non_negative_int(v) || (!jp && is_jsonata(v))) {
                    self.err(&format!("{path}/{f}"), st, "must be a non-negative integer");
                }
            }
        }
        if let Some(v) = s.get("ToleratedFailurePercentage") {
            let ok =
                v.as_f64().is_some_and(|p| (0.0..=100.0).contains(&p)) || (!jp && is_jsonata(v));
            if !ok {
                self.err(
                    &format!("{path}/ToleratedFailurePercentage"),
                    st,
                    "must be a number between 0 and 100",
                );
            }
        }
        if let Some(b) = s.get("ItemBatcher").and_then(Value::as_object) {
            self.exclusive(
                b,
                &format!("{path}/ItemBatcher"),
                st,
                &[
                    ("MaxItemsPerBatch", "MaxItemsPerBatchPath"),
                    ("MaxInputBytesPerBatch", "MaxInputBytesPerBatchPath"),
                ],
            );
        }
        if let Some(r) = s.get("ItemReader").and_then(Value::as_object) {
            if let Some(c) = r.get("ReaderConfig").and_then(Value::as_object) {
                self.exclusive(
                    c,
                    &format!("{path}/ItemReader/ReaderConfig"),
                    st,
                    &[("MaxItems", "MaxItemsPath")],
                );
            }
        }
    }

    fn exclusive(
        &mut self,
        s: &Map<String, Value>,
        path: &str,
        st: Option<&str>,
        pairs: &[(&str, &str)],
    ) {
        for (a, b) in pairs {
            if s.contains_key(*a) && s.contains_key(*b) {
                self.err(
                    path,
                    st,
                    format!("has both \"{a}\" and \"{b}\"; use only one"),
                );
            }
        }
    }

    fn resource(&mut self, r: &str, path: &str, st: Option<&str>) {
        if !r.starts_with("arn:") {
            self.err(
                path,
                st,
                format!("\"{r}\" is not an ARN (expected arn:partition:service:…)"),
            );
            return;
        }
        let parts: Vec<&str> = r.split(':').collect();
        if parts.len() < 6 {
            self.err(
                path,
                st,
                format!("\"{r}\" is not a valid ARN (too few ':'-separated parts)"),
            );
            return;
        }
        if parts[2] == "lambda" && parts.get(5) == Some(&"function") {
            // arn:aws:lambda:region:account:function:name[:alias|version]
            let valid_name = |s: &str| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            };
            let ok = match parts.len() {
                7 => valid_name(parts[6]),
                8 => valid_name(parts[6]) && (valid_name(parts[7]) || parts[7] == "$LATEST"),
                _ => false,
            };
            if !ok {
                self.err(path, st, format!("\"{r}\" is not a valid Lambda function ARN (function name and optional alias/version use letters, digits, - and _)"));
            }
        }
    }

    fn retry(&mut self, r: &Value, path: &str, st: Option<&str>) {
        let Some(list) = r.as_array() else {
            self.err(path, st, "must be an array of retriers");
            return;
        };
        for (i, item) in list.iter().enumerate() {
            let p = format!("{path}/{i}");
            let Some(o) = item.as_object() else {
                self.err(&p, st, "a retrier must be an object");
                continue;
            };
            for k in o.keys() {
                if !matches!(
                    k.as_str(),
                    "ErrorEquals"
                        | "IntervalSeconds"
                        | "MaxAttempts"
                        | "BackoffRate"
                        | "MaxDelaySeconds"
                        | "JitterStrategy"
                        | "Comment"
                ) {
                    self.err(
                        &format!("{p}/{}", esc(k)),
                        st,
                        format!("field \"{k}\" is not allowed in a retrier"),
                    );
                }
            }
            self.error_equals(o.get("ErrorEquals"), &p, st, i + 1 == list.len());
            // Upper bounds from the Step Functions developer guide, "Retrier fields":
            // IntervalSeconds and MaxAttempts have a maximum value of 99999999, and
            // MaxDelaySeconds must be greater than 0 and less than 31622401.
            if let Some(v) = o.get("IntervalSeconds") {
                if !is_positive_int(v) {
                    self.err(
                        &format!("{p}/IntervalSeconds"),
                        st,
                        "must be a positive integer",
                    );
                } else if v.as_u64().is_some_and(|n| n > MAX_RETRY_FIELD) {
                    self.err(
                        &format!("{p}/IntervalSeconds"),
                        st,
                        format!("{v} exceeds the maximum of {MAX_RETRY_FIELD} seconds; use a value from 1 to {MAX_RETRY_FIELD}"),
                    );
                }
            }
            if let Some(v) = o.get("MaxAttempts") {
                if !is_non_negative_int(v) {
                    self.err(
                        &format!("{p}/MaxAttempts"),
                        st,
                        "must be a non-negative integer",
                    );
                } else if v.as_u64().is_some_and(|n| n > MAX_RETRY_FIELD) {
                    self.err(
                        &format!("{p}/MaxAttempts"),
                        st,
                        format!("{v} exceeds the maximum of {MAX_RETRY_FIELD} attempts; use a value from 0 to {MAX_RETRY_FIELD}"),
                    );
                }
            }
            if let Some(v) = o.get("BackoffRate") {
                if !v.as_f64().is_some_and(|b| b >= 1.0) {
                    self.err(&format!("{p}/BackoffRate"), st, "must be a number ≥ 1.0");
                }
            }
            if let Some(v) = o.get("MaxDelaySeconds") {
                if !is_positive_int(v) {
                    self.err(
                        &format!("{p}/MaxDelaySeconds"),
                        st,
                        "must be a positive integer",
                    );
                } else if v.as_u64().is_some_and(|n| n > MAX_RETRY_DELAY_SECONDS) {
                    self.err(
                        &format!("{p}/MaxDelaySeconds"),
                        st,
                        format!("{v} is too large: MaxDelaySeconds must be less than {} (about one year); use a value from 1 to {MAX_RETRY_DELAY_SECONDS}", MAX_RETRY_DELAY_SECONDS + 1),
                    );
                }
            }
            if let Some(v) = o.get("JitterStrategy") {
                if !matches!(v.as_str(), Some("FULL" | "NONE")) {
                    self.err(
                        &format!("{p}/JitterStrategy"),
                        st,
                        "must be \"FULL\" or \"NONE\"",
                    );
                }
            }
        }
    }

    fn catch<'a>(
        &mut self,
        c: &'a Value,
        path: &str,
        st: Option<&str>,
        ql: QueryLanguage,
    ) -> Vec<(String, &'a str)> {
        let mut next = Vec::new();
        let Some(list) = c.as_array() else {
            self.err(path, st, "must be an array of catchers");
            return next;
        };
        for (i, item) in list.iter().enumerate() {
            let p = format!("{path}/{i}");
            let Some(o) = item.as_object() else {
                self.err(&p, st, "a catcher must be an object");
                continue;
            };
            let jp = ql == QueryLanguage::JsonPath;
            for k in o.keys() {
                let ok = match k.as_str() {
                    "ErrorEquals" | "Next" | "Comment" | "Assign" => true,
                    "ResultPath" => jp,
                    "Output" => !jp,
                    _ => false,
                };
                if !ok {
                    self.err(
                        &format!("{p}/{}", esc(k)),
                        st,
                        format!("field \"{k}\" is not allowed in a catcher"),
                    );
                }
            }
            self.error_equals(o.get("ErrorEquals"), &p, st, i + 1 == list.len());
            match o.get("Next") {
                Some(Value::String(n)) => next.push((format!("Catch/{i}/Next"), n.as_str())),
                _ => self.err(&p, st, "a catcher needs \"Next\" naming a state"),
            }
            if let Some(rp) = o.get("ResultPath") {
                self.path_field(rp, &format!("{p}/ResultPath"), st, true, true);
            }
            for f in ["Output", "Assign"] {
                if let Some(t) = o.get(f) {
                    self.template(t, &format!("{p}/{f}"), st, ql, f == "Assign");
                }
            }
        }
        next
    }

    fn error_equals(&mut self, v: Option<&Value>, p: &str, st: Option<&str>, is_last: bool) {
        match v.and_then(Value::as_array) {
            Some(list) if !list.is_empty() => {
                for (j, e) in list.iter().enumerate() {
                    match e.as_str() {
                        Some("States.ALL") => {
                            if list.len() != 1 {
                                self.err(
                                    &format!("{p}/ErrorEquals/{j}"),
                                    st,
                                    "\"States.ALL\" must appear alone in ErrorEquals",
                                );
                            } else if !is_last {
                                self.err(
                                    &format!("{p}/ErrorEquals/{j}"),
                                    st,
                                    "a retrier or catcher with \"States.ALL\" must be the last one",
                                );
                            }
                        }
                        Some(_) => {}
                        None => self.err(
                            &format!("{p}/ErrorEquals/{j}"),
                            st,
                            "error names must be strings",
                        ),
                    }
                }
            }
            _ => self.err(
                &format!("{p}/ErrorEquals"),
                st,
                "needs \"ErrorEquals\": a non-empty array of error names",
            ),
        }
    }

    fn choice_rule(&mut self, rule: &Value, p: &str, st: Option<&str>, ql: QueryLanguage) {
        if let Err(diags) = crate::choice::ChoiceRule::parse(rule, p, true) {
            for d in diags {
                self.diags.push(match st {
                    Some(s) => d.in_state(s),
                    None => d,
                });
            }
        }
        for f in ["Assign", "Output"] {
            if let Some(t) = rule.get(f) {
                self.template(t, &format!("{p}/{f}"), st, ql, f == "Assign");
            }
        }
        if ql == QueryLanguage::Jsonata {
            if let Some(c) = rule.get("Condition") {
                self.jsonata_string(c, &format!("{p}/Condition"), st);
            }
        }
    }

    fn path_field(
        &mut self,
        v: &Value,
        path: &str,
        st: Option<&str>,
        reference: bool,
        nullable: bool,
    ) {
        match v {
            Value::Null if nullable => {}
            Value::String(s) => self.path_string(s, path, st, reference),
            _ => self.err(
                path,
                st,
                if nullable {
                    "must be a path string or null"
                } else {
                    "must be a path string"
                },
            ),
        }
    }

    /// Developer guide, "Accessing execution data from the Context object": JSONPath states
    /// can refer to the Context object (`$$.`) only from InputPath, OutputPath, ItemsPath,
    /// a Choice rule's Variable, ResultSelector, Parameters and the variable-to-variable
    /// comparison operators. The numeric `...Path` fields (TimeoutSecondsPath,
    /// HeartbeatSecondsPath, MaxConcurrencyPath, ToleratedFailure*Path) are not among them;
    /// they take a path into the state input or a `$variable`.
    fn no_context_path(&mut self, v: &Value, path: &str, st: Option<&str>, field: &str) {
        if v.as_str().is_some_and(|p| p.starts_with("$$")) {
            self.err(
                path,
                st,
                format!(
                    "{field} cannot read the Context Object (\"$$\"): use a path into the state input (\"$.x\") or a variable (\"$x\"); to use a Context Object value, copy it into the input with Parameters or into a variable with Assign in an earlier state"
                ),
            );
        }
    }

    /// Developer guide, "Transforming data with JSONata": `$states.result` holds a Task's,
    /// Parallel's or Map's result, `$states.errorOutput` "can be used in the Catch field's
    /// Assign or Output", and "attempting to access $states.result or $states.errorOutput in
    /// fields and states where they are not accessible will be caught at creation, update, or
    /// validation of the state machine". So: `result` only in the state-level Output and Assign
    /// of those three types, `errorOutput` only in a catcher's Output and Assign. Walks every
    /// JSONata string of the state except the nested states (checked as states).
    fn states_field_uses(
        &mut self,
        s: &Map<String, Value>,
        ty: &str,
        path: &str,
        st: Option<&str>,
    ) {
        let has_result = matches!(ty, "Task" | "Parallel" | "Map");
        for (k, v) in s {
            let at = format!("{path}/{}", esc(k));
            match k.as_str() {
                "ItemProcessor" | "Iterator" | "Branches" => {}
                "Catch" => {
                    for (i, catcher) in v.as_array().into_iter().flatten().enumerate() {
                        for (ck, cv) in catcher.as_object().into_iter().flatten() {
                            let in_output = matches!(ck.as_str(), "Output" | "Assign");
                            let access = StatesAccess {
                                result: false,
                                error_output: in_output,
                            };
                            self.states_field_walk(
                                cv,
                                &format!("{at}/{i}/{}", esc(ck)),
                                st,
                                access,
                                0,
                            );
                        }
                    }
                }
                "Output" | "Assign" => {
                    let access = StatesAccess {
                        result: has_result,
                        error_output: false,
                    };
                    self.states_field_walk(v, &at, st, access, 0);
                }
                _ => self.states_field_walk(v, &at, st, StatesAccess::default(), 0),
            }
        }
    }

    fn states_field_walk(
        &mut self,
        v: &Value,
        path: &str,
        st: Option<&str>,
        access: StatesAccess,
        depth: usize,
    ) {
        if depth > 256 {
            return;
        }
        match v {
            Value::String(s) if is_jsonata(v) => {
                // A syntax error is reported by the field's own check.
                let Ok(e) = parse_expression(s) else { return };
                if !access.error_output && e.reads_states_field("errorOutput") {
                    self.err(
                        path,
                        st,
                        "$states.errorOutput is only available in a Catch's Output and Assign; read the error there (e.g. \"Output\": \"{% $states.errorOutput %}\" in the catcher) instead of in this field",
                    );
                }
                if !access.result && e.reads_states_field("result") {
                    self.err(
                        path,
                        st,
                        "$states.result is only available in the Output and Assign of a Task, Parallel or Map state (after the work is done); here, read the state input with $states.input, or keep the value in a variable with Assign",
                    );
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    self.states_field_walk(x, &format!("{path}/{i}"), st, access, depth + 1);
                }
            }
            Value::Object(o) => {
                for (k, x) in o {
                    self.states_field_walk(x, &format!("{path}/{}", esc(k)), st, access, depth + 1);
                }
            }
            _ => {}
        }
    }

    fn path_string(&mut self, s: &str, path: &str, st: Option<&str>, reference: bool) {
        let r = if reference {
            ReferencePath::parse(s).map(|_| ())
        } else {
            JsonPath::parse(s).map(|_| ())
        };
        if let Err(e) = r {
            self.err(path, st, e.to_string());
        }
    }

    /// Payload templates (JSONPath `.$` fields or JSONata `{% %}` strings), compiled by the
    /// expression layer, plus the JSONata delimiter rules AWS enforces.
    fn template(
        &mut self,
        t: &Value,
        path: &str,
        st: Option<&str>,
        ql: QueryLanguage,
        assign: bool,
    ) {
        if assign {
            self.variable_names(t, path, st, ql);
        }
        let field = path.rsplit('/').next().unwrap_or_default().to_owned();
        let result = if ql == QueryLanguage::JsonPath {
            self.duplicate_keys(t, path, st, 0);
            Template::compile(t).map(|_| ())
        } else {
            self.jsonata_delimiters(t, path, st, 0);
            JsonataTemplate::compile(t, &field).map(|_| ())
        };
        if let Err(diags) = result {
            for d in diags {
                let d = d.under(path);
                self.diags.push(match st {
                    Some(s) => d.in_state(s),
                    None => d,
                });
            }
        }
    }

    /// Assign keys are variable names: Unicode identifiers (UAX #31: an ID_Start character,
    /// then ID_Continue characters, so not a leading `_` or digit), at most 80 characters, and
    /// not the reserved `states` (Step Functions guide, "Passing data between states with
    /// variables", "Variable name syntax").
    fn variable_names(&mut self, t: &Value, path: &str, st: Option<&str>, ql: QueryLanguage) {
        let Some(o) = t.as_object() else {
            self.err(
                path,
                st,
                "Assign must be an object of variable name → value",
            );
            return;
        };
        for k in o.keys() {
            let name = match ql {
                QueryLanguage::JsonPath => k.strip_suffix(".$").unwrap_or(k),
                QueryLanguage::Jsonata => k.as_str(),
            };
            let mut chars = name.chars();
            let valid = chars.next().is_some_and(unicode_ident::is_xid_start)
                && chars.all(unicode_ident::is_xid_continue)
                && name.chars().count() <= 80;
            if !valid {
                self.err(
                    &format!("{path}/{}", esc(k)),
                    st,
                    format!("\"{name}\" is not a valid variable name: start with a letter, then letters, digits or _ (Unicode identifier rules), at most 80 characters"),
                );
            } else if name == "states" {
                self.err(
                    &format!("{path}/{}", esc(k)),
                    st,
                    "\"states\" is reserved and cannot be assigned",
                );
            }
        }
    }

    /// `"a"` and `"a.$"` in one object both produce the key `a`: AWS rejects that.
    fn duplicate_keys(&mut self, t: &Value, path: &str, st: Option<&str>, depth: usize) {
        if depth > 256 {
            return;
        }
        match t {
            Value::Object(o) => {
                let mut seen: HashSet<&str> = HashSet::new();
                for (k, v) in o {
                    let base = k.strip_suffix(".$").unwrap_or(k);
                    let kp = format!("{path}/{}", esc(k));
                    if !seen.insert(base) {
                        self.err(
                            &kp,
                            st,
                            format!("field \"{base}\" is given twice (with and without .$)"),
                        );
                    }
                    self.duplicate_keys(v, &kp, st, depth + 1);
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    self.duplicate_keys(v, &format!("{path}/{i}"), st, depth + 1);
                }
            }
            _ => {}
        }
    }

    fn jsonata_delimiters(&mut self, t: &Value, path: &str, st: Option<&str>, depth: usize) {
        if depth > 256 {
            return;
        }
        match t {
            Value::String(_) => {
                self.jsonata_surround(t, path, st);
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    self.jsonata_delimiters(v, &format!("{path}/{i}"), st, depth + 1);
                }
            }
            Value::Object(o) => {
                for (k, v) in o {
                    self.jsonata_delimiters(v, &format!("{path}/{}", esc(k)), st, depth + 1);
                }
            }
            _ => {}
        }
    }

    /// AWS accepts `{% expr %}` only: both delimiters, whitespace inside them, and no
    /// line breaks padding the expression.
    fn jsonata_surround(&mut self, v: &Value, path: &str, st: Option<&str>) -> bool {
        let Some(s) = v.as_str() else { return true };
        let opens = s.starts_with("{%");
        let closes = s.ends_with("%}");
        if !opens && !closes {
            return true;
        }
        if !(opens && closes) || s.len() < 4 {
            self.err(
                path,
                st,
                "a JSONata expression must be written \"{% expression %}\"",
            );
            return false;
        }
        let inner = &s[2..s.len() - 2];
        if !inner.starts_with(char::is_whitespace) || !inner.ends_with(char::is_whitespace) {
            self.err(
                path,
                st,
                "a JSONata expression needs a space after \"{%\" and before \"%}\"",
            );
            return false;
        }
        if inner
            .trim_start_matches(' ')
            .starts_with(char::is_whitespace)
            || inner.trim_end_matches(' ').ends_with(char::is_whitespace)
        {
            self.err(
                path,
                st,
                "a JSONata expression may be padded by single spaces only",
            );
            return false;
        }
        true
    }

    fn jsonata_string(&mut self, v: &Value, path: &str, st: Option<&str>) {
        if self.jsonata_surround(v, path, st) {
            if let Some(s) = v.as_str().filter(|s| is_expression(s)) {
                if let Err(e) = parse_expression(s) {
                    self.err(path, st, e.to_string());
                }
            }
        }
    }
}

fn is_jsonata(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.starts_with("{%") && s.ends_with("%}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errs(v: Value) -> Vec<String> {
        validate(&v).into_iter().map(|d| d.to_string()).collect()
    }

    #[test]
    fn minimal_definition_is_valid() {
        assert!(errs(json!({"StartAt":"A","States":{"A":{"Type":"Pass","End":true}}})).is_empty());
    }

    #[test]
    fn reports_every_problem_with_state_and_path() {
        let e = errs(json!({"StartAt":"A","States":{
            "A":{"Type":"Pass","Next":"Nope","End":true},
            "B":{"Type":"Wait","Seconds":1,"SecondsPath":"$.x","End":true},
            "C":{"Type":"Task","Resource":"arn:aws:lambda:r:1:function:f","ResultPath":"$foo","End":true}
        }}));
        let all = e.join("\n");
        assert!(
            all.contains("/States/A: state \"A\": has both \"Next\" and \"End\""),
            "{all}"
        );
        assert!(
            all.contains("/States/A/Next: state \"A\": names \"Nope\""),
            "{all}"
        );
        assert!(
            all.contains("/States/B: state \"B\": a Wait state needs exactly one"),
            "{all}"
        );
        assert!(
            all.contains("/States/C/ResultPath: state \"C\": invalid JSONPath"),
            "{all}"
        );
        assert!(all.contains("state \"B\": state is unreachable"), "{all}");
    }

    #[test]
    fn bad_paths_and_intrinsics_are_reported() {
        let e = errs(json!({"StartAt":"A","States":{
            "A":{"Type":"Pass","InputPath":"bug$.x","Parameters":{"v.$":"States.MathAdd(1,'-1')"},"Next":"B"},
            "B":{"Type":"Pass","ResultPath":"$.a[*]","End":true}
        }}))
        .join("\n");
        assert!(e.contains("/States/A/InputPath"), "{e}");
        assert!(e.contains("/States/A/Parameters/v.$"), "{e}");
        assert!(e.contains("/States/B/ResultPath"), "{e}");
    }

    #[test]
    fn assign_names_are_identifiers() {
        let e = errs(
            json!({"StartAt":"A","States":{"A":{"Type":"Pass","Assign":{"ok_1":1,"x.$":"$.a","1bad":2,"states":3},"End":true}}}),
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].contains("/States/A/Assign/1bad"), "{e:?}");
        assert!(e[1].contains("reserved"), "{e:?}");
    }

    #[test]
    fn inner_scopes_cannot_assign_an_outer_variable() {
        // Developer guide, "Variable scope": a variable assigned in an inner scope cannot
        // have the same name as one assigned in an outer scope.
        let e = errs(json!({"StartAt":"Init","States":{
            "Init":{"Type":"Pass","Assign":{"x":1,"items":[1,2]},"Next":"M"},
            "M":{"Type":"Map","ItemsPath":"$items","ItemProcessor":{"StartAt":"Inner","States":{
                "Inner":{"Type":"Pass","Assign":{"x.$":"$","fresh":2},"End":true}}},"Next":"P"},
            "P":{"Type":"Parallel","Branches":[
                {"StartAt":"B1","States":{"B1":{"Type":"Pass","Assign":{"items":0},"End":true}}}],
             "End":true}
        }}));
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("/States/M/ItemProcessor/States/Inner/Assign/x.$: state \"Inner\": variable \"x\" is already assigned in an outer scope (at /States/Init/Assign/x)"),
            "{e:?}"
        );
        assert!(e[0].contains("rename this variable"), "{e:?}");
        assert!(
            e[1].starts_with("/States/P/Branches/0/States/B1/Assign/items: state \"B1\""),
            "{e:?}"
        );
    }

    #[test]
    fn variable_scopes_nest_and_siblings_are_independent() {
        // Sibling branches may reuse a name; the Map's own Assign and its Catch's Assign are in
        // the outer scope (so is a Choice rule's); a grandchild scope sees every ancestor.
        let ok = json!({"StartAt":"P","States":{
            "P":{"Type":"Parallel","Branches":[
                {"StartAt":"A","States":{"A":{"Type":"Pass","Assign":{"same":1},"End":true}}},
                {"StartAt":"B","States":{"B":{"Type":"Pass","Assign":{"same":2},"End":true}}}],
             "Assign":{"result":1},
             "Catch":[{"ErrorEquals":["States.ALL"],"Assign":{"failed":true},"Next":"Done"}],
             "Next":"Done"},
            "Done":{"Type":"Pass","End":true}}});
        assert!(errs(ok).is_empty());
        let e = errs(json!({"StartAt":"C","States":{
            "C":{"Type":"Choice","QueryLanguage":"JSONata","Choices":[
                {"Condition":"{% true %}","Assign":{"deep":1},"Next":"M"}],"Default":"M"},
            "M":{"Type":"Map","ItemProcessor":{"StartAt":"M2","States":{
                "M2":{"Type":"Map","ItemProcessor":{"StartAt":"Leaf","States":{
                    "Leaf":{"Type":"Pass","Assign":{"deep":2},"End":true}}},"End":true}}},
             "End":true}}}));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains(
                "/States/M/ItemProcessor/States/M2/ItemProcessor/States/Leaf/Assign/deep"
            ) && e[0].contains("(at /States/C/Choices/0/Assign/deep)"),
            "{e:?}"
        );
        // An inner catcher's Assign is in the inner scope.
        let e = errs(json!({"StartAt":"Init","States":{
            "Init":{"Type":"Pass","Assign":{"err":null},"Next":"M"},
            "M":{"Type":"Map","ItemProcessor":{"StartAt":"T","States":{
                "T":{"Type":"Task","Resource":"arn:aws:lambda:us-east-1:1:function:f",
                     "Catch":[{"ErrorEquals":["States.ALL"],"Assign":{"err.$":"$"},"Next":"F"}],"End":true},
                "F":{"Type":"Pass","End":true}}},"End":true}}}));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("/States/M/ItemProcessor/States/T/Catch/0/Assign/err.$"),
            "{e:?}"
        );
    }

    #[test]
    fn heartbeat_seconds_must_be_smaller_than_timeout_seconds() {
        let task = |hb: u64, to: u64| {
            errs(json!({"StartAt":"T","States":{"T":{"Type":"Task",
                "Resource":"arn:aws:lambda:us-east-1:1:function:f",
                "HeartbeatSeconds":hb,"TimeoutSeconds":to,"End":true}}}))
        };
        assert!(task(5, 6).is_empty());
        for (hb, to) in [(6, 6), (7, 6)] {
            let e = task(hb, to);
            assert_eq!(e.len(), 1, "{e:?}");
            assert!(
                e[0].starts_with(&format!("/States/T/HeartbeatSeconds: state \"T\": HeartbeatSeconds ({hb}) must be smaller than TimeoutSeconds ({to})")),
                "{e:?}"
            );
        }
    }

    #[test]
    fn retrier_fields_have_aws_upper_bounds() {
        let retrier = |r: Value| {
            let mut r = r;
            r["ErrorEquals"] = json!(["States.ALL"]);
            errs(json!({"StartAt":"T","States":{"T":{"Type":"Task",
                "Resource":"arn:aws:lambda:us-east-1:1:function:f","Retry":[r],"End":true}}}))
        };
        // The largest values AWS accepts are valid.
        assert!(
            retrier(
                json!({"IntervalSeconds":99_999_999,"MaxAttempts":99_999_999,
                "MaxDelaySeconds":31_622_400})
            )
            .is_empty()
        );
        for (field, bad) in [
            ("IntervalSeconds", 100_000_000_u64),
            ("MaxAttempts", 100_000_000),
            ("MaxDelaySeconds", 31_622_401),
        ] {
            let e = retrier(json!({ field: bad }));
            assert_eq!(e.len(), 1, "{field}: {e:?}");
            assert!(
                e[0].starts_with(&format!("/States/T/Retry/0/{field}: state \"T\": {bad} ")),
                "{e:?}"
            );
            assert!(e[0].contains("use a value from"), "says how to fix: {e:?}");
        }
    }

    #[test]
    fn top_level_timeout_seconds_must_be_positive() {
        let top = |t: Value| {
            errs(
                json!({"TimeoutSeconds":t,"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}}),
            )
        };
        assert!(top(json!(1)).is_empty());
        for bad in [json!(0), json!(-1), json!(1.5), json!("10")] {
            let e = top(bad.clone());
            assert_eq!(e.len(), 1, "{bad}: {e:?}");
            assert!(
                e[0].starts_with("/TimeoutSeconds: ") && e[0].contains("positive integer"),
                "{e:?}"
            );
        }
        // A Task's TimeoutSeconds and HeartbeatSeconds: positive integers too (ASL spec).
        for f in ["TimeoutSeconds", "HeartbeatSeconds"] {
            let e = errs(json!({"StartAt":"T","States":{"T":{"Type":"Task",
                "Resource":"arn:aws:lambda:us-east-1:1:function:f", f: 0, "End":true}}}));
            assert_eq!(e.len(), 1, "{f}: {e:?}");
            assert!(e[0].starts_with(&format!("/States/T/{f}: ")), "{e:?}");
        }
    }

    #[test]
    fn jsonata_delimiters() {
        for (out, ok) in [
            ("{% 10 %}", true),
            ("{%10%}", false),
            ("10 %}", false),
            ("{% \n10 %}", false),
            ("plain", true),
        ] {
            let e = errs(
                json!({"QueryLanguage":"JSONata","StartAt":"A","States":{"A":{"Type":"Pass","Output":out,"End":true}}}),
            );
            assert_eq!(e.is_empty(), ok, "{out:?}: {e:?}");
        }
    }
}

/// Which `$states` fields a JSONata string may read where it stands.
#[derive(Clone, Copy, Default)]
struct StatesAccess {
    result: bool,
    error_output: bool,
}
