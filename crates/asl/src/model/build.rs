//! The one pass over a definition: checks it and builds the model from the same walk.
//!
//! Every path, payload template, Choice rule and JSONata expression is compiled here, once,
//! where it is checked: a compile error becomes a [`Diagnostic`] (JSON pointer, state name)
//! and a compiled value goes into the model. (The `$states` access check, `states_field_uses`,
//! still parses a JSONata state's strings to inspect them; see there.) There is no other
//! compile path, so validation
//! ([`crate::validate::validate`]) and the model cannot disagree. The walk goes over the raw
//! JSON, so it can report fields the model has no place for; on any problem the model is
//! dropped and every diagnostic returned. Checks, following the ASL spec (states-language.net)
//! and what Step Functions' `ValidateStateMachineDefinition` rejects:
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

use crate::choice::ChoiceRule;
use crate::jsonata_template::{JsonataTemplate, parse_expression};
use crate::jsonpath::{JsonPath, ReferencePath};
use crate::template::{PayloadExpr, Template};
use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::{
    Assign, Catcher, ChoiceBranch, Definition, Expr, FailField, Jitter, Kind, PathField,
    ResultPathField, Retrier, Setting, State, StateMachine, Transition, WaitFor,
};
use crate::error::Diagnostic;
use crate::query_language::QueryLanguage;

fn diag(path: &str, state: Option<&str>, message: impl Into<String>) -> Diagnostic {
    let d = Diagnostic::new(path, message);
    match state {
        Some(s) => d.in_state(s),
        None => d,
    }
}

/// Checks and builds a whole definition: the model when there is no diagnostic.
pub(super) fn definition(def: &Value) -> (Option<Definition>, Vec<Diagnostic>) {
    let mut v = Validator {
        diags: Vec::new(),
        names: HashMap::new(),
        top_ql: QueryLanguage::DEFAULT,
    };
    let Some(top) = def.as_object() else {
        v.err("", None, "a state machine definition must be a JSON object");
        return (None, v.diags);
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
        None => QueryLanguage::DEFAULT,
        Some(q) => QueryLanguage::from_field(Some(q)).unwrap_or_else(|| {
            v.err(
                "/QueryLanguage",
                None,
                "must be \"JSONPath\" or \"JSONata\"",
            );
            QueryLanguage::DEFAULT
        }),
    };
    v.top_ql = ql;
    let machine = v.machine(top, "");
    v.variable_scopes(top, "", &HashMap::new());
    if !v.diags.is_empty() {
        return (None, v.diags);
    }
    let model = Definition {
        comment: top
            .get("Comment")
            .and_then(Value::as_str)
            .map(str::to_owned),
        timeout_seconds: top.get("TimeoutSeconds").and_then(Value::as_u64),
        query_language: ql,
        machine,
        source: def.clone(),
    };
    (Some(model), v.diags)
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

/// A numeric setting: its `...Path` form wins over its value (only one can be valid).
fn setting(path: Option<JsonPath>, value: Option<Expr>) -> Option<Setting> {
    path.map(Setting::Path).or(value.map(Setting::Value))
}

/// A compiled template's JSONPath form (Parameters, ResultSelector), if that is what it is.
fn jsonpath_template(t: Option<Assign>) -> Option<Template> {
    match t? {
        Assign::JsonPath(t) => Some(t),
        Assign::Jsonata(_) => None,
    }
}

/// A compiled template's JSONata form (Arguments, Output), if that is what it is.
fn jsonata_template(t: Option<Assign>) -> Option<JsonataTemplate> {
    match t? {
        Assign::Jsonata(t) => Some(t),
        Assign::JsonPath(_) => None,
    }
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

    /// A `StartAt` + `States` block (the top level, a Parallel branch or a Map processor).
    /// Its states use their own QueryLanguage, else the top-level one.
    fn machine(&mut self, m: &Map<String, Value>, base: &str) -> StateMachine {
        let mut machine = StateMachine {
            start_at: String::new(),
            states: Vec::new(),
            index: HashMap::new(),
        };
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
            return machine;
        };
        machine.start_at = start.unwrap_or_default().to_owned();
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
            let (next, is_terminal, state) = self.state(name, obj, &path);
            if let Some(state) = state {
                machine.index.insert(name.clone(), machine.states.len());
                machine.states.push(state);
            }
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
        machine
    }

    /// Returns (transition field → target), whether the state can end the block, and the
    /// state's model (`None` when it has no known `Type`; a diagnostic says why).
    fn state<'a>(
        &mut self,
        name: &str,
        s: &'a Map<String, Value>,
        path: &str,
    ) -> (Vec<(String, &'a str)>, bool, Option<State>) {
        let st = Some(name);
        let mut next: Vec<(String, &'a str)> = Vec::new();
        let own_ql = match s.get("QueryLanguage") {
            None => None,
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
                    Some(QueryLanguage::JsonPath)
                }
                Some(q) => Some(q),
                None => {
                    self.err(
                        &format!("{path}/QueryLanguage"),
                        st,
                        "must be \"JSONPath\" or \"JSONata\"",
                    );
                    None
                }
            },
        };
        let ql = QueryLanguage::for_state(own_ql, self.top_ql);
        let ty = match s.get("Type") {
            Some(Value::String(t)) => t.as_str(),
            Some(_) => {
                self.err(&format!("{path}/Type"), st, "must be a string");
                return (next, true, None);
            }
            None => {
                self.err(
                    &format!("{path}/Type"),
                    st,
                    "missing required field \"Type\"",
                );
                return (next, true, None);
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
                return (next, true, None);
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
        let mut io_paths = [PathField::Default, PathField::Default];
        for (slot, f) in io_paths.iter_mut().zip(["InputPath", "OutputPath"]) {
            if let Some(p) = s.get(f) {
                *slot = self.path_field(p, &format!("{path}/{f}"), st, true);
            }
        }
        let [input_path, output_path] = io_paths;
        let result_path = match s.get("ResultPath") {
            Some(p) => self.result_path_field(p, &format!("{path}/ResultPath"), st),
            None => ResultPathField::Default,
        };
        let mut templates: HashMap<&str, Assign> = HashMap::new();
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
                if let Some(compiled) =
                    self.template(t, &format!("{path}/{f}"), st, ql, f == "Assign")
                {
                    templates.insert(f, compiled);
                }
            }
        }
        let retry = match s.get("Retry") {
            Some(r) => self.retry(r, &format!("{path}/Retry"), st),
            None => Vec::new(),
        };
        let catch = match s.get("Catch") {
            Some(c) => {
                let (targets, catchers) = self.catch(c, &format!("{path}/Catch"), st, ql);
                next.extend(targets);
                catchers
            }
            None => Vec::new(),
        };
        self.exclusive(
            s,
            path,
            st,
            &[
                ("TimeoutSeconds", "TimeoutSecondsPath"),
                ("HeartbeatSeconds", "HeartbeatSecondsPath"),
            ],
        );
        let mut kind = match ty {
            "Task" => {
                let resource = match s.get("Resource") {
                    Some(Value::String(r)) => {
                        self.resource(r, &format!("{path}/Resource"), st);
                        r.clone()
                    }
                    Some(_) => {
                        self.err(&format!("{path}/Resource"), st, "must be a string (an ARN)");
                        String::new()
                    }
                    None => {
                        self.err(path, st, "missing required field \"Resource\"");
                        String::new()
                    }
                };
                let mut values = [None, None];
                for (slot, f) in values
                    .iter_mut()
                    .zip(["TimeoutSeconds", "HeartbeatSeconds"])
                {
                    if let Some(t) = s.get(f) {
                        let ok = is_positive_int(t) || (!jp && is_jsonata(t));
                        *slot = self.setting_value(
                            t,
                            ok,
                            "must be a positive integer",
                            ql,
                            f,
                            path,
                            st,
                        );
                    }
                }
                let mut paths = [None, None];
                for (slot, f) in paths
                    .iter_mut()
                    .zip(["TimeoutSecondsPath", "HeartbeatSecondsPath"])
                {
                    if let Some(p) = s.get(f) {
                        *slot = self.setting_path(p, path, st, f);
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
                let [timeout_path, heartbeat_path] = paths;
                let [timeout_value, heartbeat_value] = values;
                Kind::Task {
                    resource,
                    timeout_seconds: setting(timeout_path, timeout_value),
                    heartbeat_seconds: setting(heartbeat_path, heartbeat_value),
                }
            }
            "Choice" => {
                let mut choices = Vec::new();
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
                            choices.extend(self.choice_rule(rule, &rp, st, ql));
                        }
                    }
                    _ => self.err(
                        &format!("{path}/Choices"),
                        st,
                        "must be a non-empty array of rules",
                    ),
                }
                let default = match s.get("Default") {
                    Some(Value::String(d)) => {
                        next.push(("Default".into(), d.as_str()));
                        Some(d.clone())
                    }
                    Some(_) => {
                        self.err(&format!("{path}/Default"), st, "must be a state name");
                        None
                    }
                    None => None,
                };
                Kind::Choice { choices, default }
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
                let mut seconds = None;
                if let Some(v) = s.get("Seconds") {
                    let ok = is_non_negative_int(v) || (!jp && is_jsonata(v));
                    seconds = self.setting_value(
                        v,
                        ok,
                        "must be a non-negative integer",
                        ql,
                        "Seconds",
                        path,
                        st,
                    );
                }
                let mut timestamp = None;
                if let Some(v) = s.get("Timestamp") {
                    let ok = match v {
                        Value::String(t) => {
                            (!jp && is_jsonata(v)) || clock::parse_rfc3339(t).is_some()
                        }
                        _ => false,
                    };
                    timestamp = self.setting_value(
                        v,
                        ok,
                        "must be an RFC 3339 timestamp such as \"2016-03-14T01:59:00Z\"",
                        ql,
                        "Timestamp",
                        path,
                        st,
                    );
                }
                let mut paths = [None, None];
                for (slot, f) in paths.iter_mut().zip(["SecondsPath", "TimestampPath"]) {
                    if let Some(p) = s.get(f) {
                        *slot = self.required_path(p, &format!("{path}/{f}"), st);
                    }
                }
                let wait = match (paths, timestamp, seconds) {
                    ([Some(p), _], _, _) => WaitFor::SecondsPath(p),
                    ([None, Some(p)], _, _) => WaitFor::TimestampPath(p),
                    (_, Some(e), _) => WaitFor::Timestamp(e),
                    (_, None, e) => WaitFor::Seconds(e.unwrap_or(Expr::Literal(Value::from(0)))),
                };
                Kind::Wait { wait }
            }
            "Fail" => {
                self.exclusive(
                    s,
                    path,
                    st,
                    &[("Error", "ErrorPath"), ("Cause", "CausePath")],
                );
                let mut values = [None, None];
                for (slot, f) in values.iter_mut().zip(["Error", "Cause"]) {
                    if let Some(v) = s.get(f) {
                        if !v.is_string() {
                            self.err(&format!("{path}/{f}"), st, "must be a string");
                        } else if !jp {
                            *slot = self
                                .jsonata_string(v, &format!("{path}/{f}"), st, f)
                                .map(Expr::Jsonata);
                        } else {
                            *slot = Some(Expr::Literal(v.clone()));
                        }
                    }
                }
                let mut paths = [None, None];
                for (slot, f) in paths.iter_mut().zip(["ErrorPath", "CausePath"]) {
                    match s.get(f) {
                        Some(Value::String(p)) => match PayloadExpr::parse(p) {
                            Ok(e) => *slot = Some(e),
                            Err(e) => self.err(&format!("{path}/{f}"), st, e.to_string()),
                        },
                        Some(_) => self.err(
                            &format!("{path}/{f}"),
                            st,
                            "must be a path or intrinsic function string",
                        ),
                        None => {}
                    }
                }
                let [error, cause] = [0, 1].map(|i| match paths[i].take() {
                    Some(p) => Some(FailField::Path(p)),
                    None => values[i].take().map(FailField::Value),
                });
                Kind::Fail { error, cause }
            }
            "Parallel" => {
                let mut branches = Vec::new();
                match s.get("Branches").and_then(Value::as_array) {
                    Some(bs) if !bs.is_empty() => {
                        for (i, b) in bs.iter().enumerate() {
                            match b.as_object() {
                                // Nested states default to the top-level QueryLanguage, not the
                                // Parallel state's own (see `map`).
                                Some(bo) => branches
                                    .push(self.machine(bo, &format!("{path}/Branches/{i}"))),
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
                }
                Kind::Parallel { branches }
            }
            "Map" => self.map(s, path, st, ql),
            "Pass" => Kind::Pass {
                result: s.get("Result").cloned(),
            },
            _ => Kind::Succeed,
        };
        // A Map's `Parameters` is its legacy ItemSelector (JSONPath).
        let mut parameters = templates.remove("Parameters");
        if let Kind::Map { item_selector, .. } = &mut kind {
            *item_selector = templates.remove("ItemSelector").or(parameters.take());
        }
        let transition = match (s.get("Next").and_then(Value::as_str), s.get("End")) {
            (Some(n), _) => Some(Transition::Next(n.to_owned())),
            (None, Some(Value::Bool(true))) => Some(Transition::End),
            _ => None,
        };
        let state = State {
            name: name.to_owned(),
            query_language: ql,
            kind,
            input_path,
            output_path,
            result_path,
            parameters: jsonpath_template(parameters),
            result_selector: jsonpath_template(templates.remove("ResultSelector")),
            arguments: jsonata_template(templates.remove("Arguments")),
            output: jsonata_template(templates.remove("Output")),
            assign: templates.remove("Assign"),
            transition,
            retry,
            catch,
        };
        (next, is_terminal, Some(state))
    }

    /// A Map state's own fields; `item_selector` is filled in by the caller, which compiles
    /// the templates every state type shares.
    fn map(
        &mut self,
        s: &Map<String, Value>,
        path: &str,
        st: Option<&str>,
        ql: QueryLanguage,
    ) -> Kind {
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
        let mut distributed = false;
        let processor = match s.get(proc_field).and_then(Value::as_object) {
            Some(p) => {
                let pp = format!("{path}/{proc_field}");
                if let Some(cfg) = p.get("ProcessorConfig") {
                    match cfg.get("Mode").and_then(Value::as_str) {
                        None | Some("INLINE") => {}
                        Some("DISTRIBUTED") => distributed = true,
                        Some(m) => self.err(
                            &format!("{pp}/ProcessorConfig/Mode"),
                            st,
                            format!("unknown mode \"{m}\" (INLINE or DISTRIBUTED)"),
                        ),
                    }
                }
                for k in p.keys() {
                    if !matches!(
                        k.as_str(),
                        "StartAt" | "States" | "ProcessorConfig" | "Comment"
                    ) {
                        self.err(
                            &format!("{pp}/{}", esc(k)),
                            st,
                            format!("field \"{k}\" is not allowed in {proc_field}"),
                        );
                    }
                }
                // Developer guide, "Transforming data with JSONata": a state without its own
                // QueryLanguage "will use the query language specified in the top-level
                // QueryLanguage field" — the Map state's own language does not flow into its
                // ItemProcessor (AWS reports the inner states' JSONata-only fields as errors).
                self.machine(p, &pp)
            }
            None => {
                self.err(path, st, "a Map state needs \"ItemProcessor\" (or legacy \"Iterator\") with StartAt and States");
                StateMachine {
                    start_at: String::new(),
                    states: Vec::new(),
                    index: HashMap::new(),
                }
            }
        };
        let items_path = match s.get("ItemsPath") {
            Some(p) => self.path_field(p, &format!("{path}/ItemsPath"), st, false),
            None => PathField::Default,
        };
        let mut paths = [None, None, None];
        for (slot, f) in paths.iter_mut().zip([
            "MaxConcurrencyPath",
            "ToleratedFailureCountPath",
            "ToleratedFailurePercentagePath",
        ]) {
            if let Some(p) = s.get(f) {
                *slot = self.setting_path(p, path, st, f);
            }
        }
        let jp = ql == QueryLanguage::JsonPath;
        let mut values = [None, None, None];
        for (slot, f) in values
            .iter_mut()
            .zip(["MaxConcurrency", "ToleratedFailureCount"])
        {
            if let Some(v) = s.get(f) {
                let ok = is_non_negative_int(v) || (!jp && is_jsonata(v));
                *slot =
                    self.setting_value(v, ok, "must be a non-negative integer", ql, f, path, st);
            }
        }
        if let Some(v) = s.get("ToleratedFailurePercentage") {
            let ok =
                v.as_f64().is_some_and(|p| (0.0..=100.0).contains(&p)) || (!jp && is_jsonata(v));
            values[2] = self.setting_value(
                v,
                ok,
                "must be a number between 0 and 100",
                ql,
                "ToleratedFailurePercentage",
                path,
                st,
            );
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
        let items = match s.get("Items") {
            Some(v) => self.expr(v, ql, "Items", &format!("{path}/Items"), st),
            None => None,
        };
        let [
            max_concurrency,
            tolerated_failure_count,
            tolerated_failure_percentage,
        ] = [0, 1, 2].map(|i| setting(paths[i].take(), values[i].take()));
        Kind::Map {
            processor: Box::new(processor),
            distributed,
            items_path,
            items,
            item_selector: None,
            max_concurrency,
            tolerated_failure_count,
            tolerated_failure_percentage,
        }
    }

    /// A numeric setting's value (TimeoutSeconds, Seconds, MaxConcurrency, …), compiled when
    /// `ok` (it has the required shape), else reported with `expected`.
    #[allow(clippy::too_many_arguments)]
    fn setting_value(
        &mut self,
        v: &Value,
        ok: bool,
        expected: &str,
        ql: QueryLanguage,
        field: &str,
        path: &str,
        st: Option<&str>,
    ) -> Option<Expr> {
        let at = format!("{path}/{field}");
        if !ok {
            self.err(&at, st, expected);
            return None;
        }
        self.expr(v, ql, field, &at, st)
    }

    /// A numeric setting's `...Path` field: a path into the input or a variable, never `$$`.
    fn setting_path(
        &mut self,
        p: &Value,
        path: &str,
        st: Option<&str>,
        field: &str,
    ) -> Option<JsonPath> {
        let at = format!("{path}/{field}");
        let compiled = self.required_path(p, &at, st);
        self.no_context_path(p, &at, st, field);
        compiled
    }

    /// A field that is a literal in a JSONPath state and a JSONata template in a JSONata one.
    fn expr(
        &mut self,
        v: &Value,
        ql: QueryLanguage,
        field: &str,
        at: &str,
        st: Option<&str>,
    ) -> Option<Expr> {
        match ql {
            QueryLanguage::JsonPath => Some(Expr::Literal(v.clone())),
            QueryLanguage::Jsonata => self.jsonata(v, field, at, st).map(Expr::Jsonata),
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

    fn retry(&mut self, r: &Value, path: &str, st: Option<&str>) -> Vec<Retrier> {
        let mut retriers = Vec::new();
        let Some(list) = r.as_array() else {
            self.err(path, st, "must be an array of retriers");
            return retriers;
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
            // Defaults from the ASL spec, "Retrying after error".
            retriers.push(Retrier {
                error_equals: string_list(o.get("ErrorEquals")),
                interval_seconds: o
                    .get("IntervalSeconds")
                    .and_then(Value::as_f64)
                    .unwrap_or(1.0),
                max_attempts: o.get("MaxAttempts").and_then(Value::as_u64).unwrap_or(3),
                backoff_rate: o.get("BackoffRate").and_then(Value::as_f64).unwrap_or(2.0),
                max_delay_seconds: o.get("MaxDelaySeconds").and_then(Value::as_f64),
                jitter: if o.get("JitterStrategy").and_then(Value::as_str) == Some("FULL") {
                    Jitter::Full
                } else {
                    Jitter::None
                },
            });
        }
        retriers
    }

    fn catch<'a>(
        &mut self,
        c: &'a Value,
        path: &str,
        st: Option<&str>,
        ql: QueryLanguage,
    ) -> (Vec<(String, &'a str)>, Vec<Catcher>) {
        let mut next = Vec::new();
        let mut catchers = Vec::new();
        let Some(list) = c.as_array() else {
            self.err(path, st, "must be an array of catchers");
            return (next, catchers);
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
            let target = match o.get("Next") {
                Some(Value::String(n)) => {
                    next.push((format!("Catch/{i}/Next"), n.as_str()));
                    n.clone()
                }
                _ => {
                    self.err(&p, st, "a catcher needs \"Next\" naming a state");
                    String::new()
                }
            };
            let result_path = match o.get("ResultPath") {
                Some(rp) => self.result_path_field(rp, &format!("{p}/ResultPath"), st),
                None => ResultPathField::Default,
            };
            let [output, assign] = ["Output", "Assign"].map(|f| {
                let t = o.get(f)?;
                self.template(t, &format!("{p}/{f}"), st, ql, f == "Assign")
            });
            catchers.push(Catcher {
                error_equals: string_list(o.get("ErrorEquals")),
                next: target,
                result_path,
                output: jsonata_template(output),
                assign,
            });
        }
        (next, catchers)
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

    /// One top-level Choice rule; `None` when the rule itself does not parse.
    fn choice_rule(
        &mut self,
        rule: &Value,
        p: &str,
        st: Option<&str>,
        ql: QueryLanguage,
    ) -> Option<ChoiceBranch> {
        // The rule's JSONata `Condition` is compiled here, and only here.
        let parsed = match ChoiceRule::parse(rule, p, true) {
            Ok(r) => Some(r),
            Err(diags) => {
                for d in diags {
                    self.diags.push(match st {
                        Some(s) => d.in_state(s),
                        None => d,
                    });
                }
                None
            }
        };
        let [assign, output] = ["Assign", "Output"].map(|f| {
            let t = rule.get(f)?;
            self.template(t, &format!("{p}/{f}"), st, ql, f == "Assign")
        });
        if ql == QueryLanguage::Jsonata {
            if let Some(c) = rule.get("Condition") {
                self.jsonata_surround(c, &format!("{p}/Condition"), st);
            }
        }
        Some(ChoiceBranch {
            rule: parsed?,
            next: rule["Next"].as_str().unwrap_or_default().to_owned(),
            assign,
            output: jsonata_template(output),
        })
    }

    /// InputPath, OutputPath, ItemsPath, ...: a JSONPath, or `null` where `nullable`.
    fn path_field(&mut self, v: &Value, path: &str, st: Option<&str>, nullable: bool) -> PathField {
        match v {
            Value::Null if nullable => PathField::Null,
            Value::String(s) => match JsonPath::parse(s) {
                Ok(p) => PathField::Path(p),
                Err(e) => {
                    self.err(path, st, e.to_string());
                    PathField::Default
                }
            },
            _ => {
                self.err(
                    path,
                    st,
                    if nullable {
                        "must be a path string or null"
                    } else {
                        "must be a path string"
                    },
                );
                PathField::Default
            }
        }
    }

    /// A path field that must be a path (no `null`): SecondsPath, TimeoutSecondsPath, ...
    fn required_path(&mut self, v: &Value, path: &str, st: Option<&str>) -> Option<JsonPath> {
        match self.path_field(v, path, st, false) {
            PathField::Path(p) => Some(p),
            _ => None,
        }
    }

    /// `ResultPath` (a state's or a catcher's): a reference path or `null`.
    fn result_path_field(&mut self, v: &Value, path: &str, st: Option<&str>) -> ResultPathField {
        match v {
            Value::Null => ResultPathField::Null,
            Value::String(s) => match ReferencePath::parse(s) {
                Ok(p) => ResultPathField::Path(p),
                Err(e) => {
                    self.err(path, st, e.to_string());
                    ResultPathField::Default
                }
            },
            _ => {
                self.err(path, st, "must be a path string or null");
                ResultPathField::Default
            }
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
                // A syntax error is reported by the field's own check. This parse only
                // inspects the expression (nothing of it reaches the model): a compiled
                // `JsonataTemplate` does not expose its expressions, so this check cannot run
                // on the compiled fields yet.
                // TODO(issue 9): walk the compiled templates once the JSONata crate exposes
                // their expressions (as `Template::expressions` does), and drop this parse.
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

    /// Payload templates (JSONPath `.$` fields or JSONata `{% %}` strings), compiled by the
    /// expression layer, plus the JSONata delimiter rules AWS enforces.
    /// The result is an [`Assign`] because that is the model's "template in either language".
    fn template(
        &mut self,
        t: &Value,
        path: &str,
        st: Option<&str>,
        ql: QueryLanguage,
        assign: bool,
    ) -> Option<Assign> {
        if assign {
            self.variable_names(t, path, st, ql);
        }
        let field = path.rsplit('/').next().unwrap_or_default().to_owned();
        if ql == QueryLanguage::JsonPath {
            self.duplicate_keys(t, path, st, 0);
            let compiled = Template::compile(t);
            self.compiled(compiled, path, st).map(Assign::JsonPath)
        } else {
            self.jsonata_delimiters(t, path, st, 0);
            self.jsonata(t, &field, path, st).map(Assign::Jsonata)
        }
    }

    /// A JSONata template for `field` (named in evaluation errors) at `path`.
    fn jsonata(
        &mut self,
        t: &Value,
        field: &str,
        path: &str,
        st: Option<&str>,
    ) -> Option<JsonataTemplate> {
        let compiled = JsonataTemplate::compile(t, field);
        self.compiled(compiled, path, st)
    }

    /// A compiler's result: the value, or its diagnostics (pointers relative to `path`)
    /// recorded against `path` and the state.
    fn compiled<T>(
        &mut self,
        result: Result<T, Vec<Diagnostic>>,
        path: &str,
        st: Option<&str>,
    ) -> Option<T> {
        match result {
            Ok(t) => Some(t),
            Err(diags) => {
                for d in diags {
                    let d = d.under(path);
                    self.diags.push(match st {
                        Some(s) => d.in_state(s),
                        None => d,
                    });
                }
                None
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

    /// A JSONata state's string field (Fail's Error and Cause): delimiters as AWS requires,
    /// then compiled.
    fn jsonata_string(
        &mut self,
        v: &Value,
        path: &str,
        st: Option<&str>,
        field: &str,
    ) -> Option<JsonataTemplate> {
        if self.jsonata_surround(v, path, st) {
            self.jsonata(v, field, path, st)
        } else {
            None
        }
    }
}

fn is_jsonata(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.starts_with("{%") && s.ends_with("%}"))
}

/// Which `$states` fields a JSONata string may read where it stands.
#[derive(Clone, Copy, Default)]
struct StatesAccess {
    result: bool,
    error_output: bool,
}
