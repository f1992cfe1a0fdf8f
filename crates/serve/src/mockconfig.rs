//! Step Functions Local mock configuration files (`states exec --mock-config FILE --test-case NAME`,
//! `serve --mock-config FILE` with the test case after `#` in the state machine ARN).
//!
//! The format is AWS's, unchanged, so one file serves both Step Functions Local and fleetprep
//! (AWS Step Functions developer guide, "Configuration file for mocked service
//! integrations" and "Using mocked service integrations for testing in Step Functions Local"):
//!
//! ```json
//! {"StateMachines": {"<state machine>": {"TestCases": {"<case>": {"<Task state>": "<response>"}}}},
//!  "MockedResponses": {"<response>": {"0": {"Throw": {"Error": "…", "Cause": "…"}},
//!                                     "1-2": {"Return": {…}}}}}
//! ```
//!
//! - [`MockConfig::load`] checks the whole file and reports every problem with the file, the
//!   JSON pointer and the fix; [`MockConfig::test_case`] then checks the chosen test case
//!   against the definition (every state it names is a Task state), all before anything runs.
//! - [`MockHandler`] answers every task of the execution by state name (registered with
//!   `Engine::register_fallback`). Each state's invocations are numbered from 0 across the
//!   whole execution: retries count, and so do the iterations of a Map and the branches of a
//!   Parallel, which share one counter per state name as in Step Functions Local (hence its
//!   advice to set `MaxConcurrency` to 1 for predictable answers inside a Map).
//! - `Return` is the integration's whole response: for `arn:aws:states:::lambda:invoke` the
//!   Invoke API response (`{"StatusCode": 200, "Payload": …}`), used as is
//!   ([`engine::TaskHandler::returns_service_response`]); for a Lambda function ARN, what the
//!   function returned.
//! - An invocation past the last attempt key fails the execution, as AWS documents ("you must
//!   specify a mocked response for every invocation"): the task fails with `States.Runtime`,
//!   which `States.ALL` does not catch. A Task state the test case does not name fails as an
//!   unregistered resource does, with a cause that says which mock to add.
//!
//! It lives beside the API server, not in the engine: it is a user-facing file format (paths,
//! JSON pointers), while the engine only needs a task handler. `states exec --mock-config` and
//! `serve --mock-config` both use it.
//!
//! Not here: calling real services for unmocked states (Step Functions Local does;
//! fleetprep fails them), and generated task tokens for `.waitForTaskToken` (a mocked
//! `.waitForTaskToken` task answers at once with its mocked response, but the engine has no
//! `$$.Task.Token` to give its parameters).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::Mutex;

use asl::model::{Definition, Kind, StateMachine};
use async_trait::async_trait;
use engine::{TaskContext, TaskError, TaskHandler};
use serde_json::{Map, Value};

/// One problem in a mock configuration file: where it is, and how to fix it.
#[derive(Debug, Clone, PartialEq)]
pub struct MockError {
    /// The file as given on the command line.
    pub file: String,
    /// JSON pointer into the file (`""` for the whole document).
    pub pointer: String,
    pub message: String,
}

impl fmt::Display for MockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pointer.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.pointer, self.message)
        }
    }
}

/// Every problem found, one per line.
#[derive(Debug)]
pub struct MockErrors(pub Vec<MockError>);

impl fmt::Display for MockErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "the mock configuration has {n} problem{}",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for MockErrors {}

/// What one invocation of a mocked Task answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The task succeeds with this whole service response.
    Return(Value),
    /// The task fails with this error and cause.
    Throw { error: String, cause: String },
}

/// A mocked response: outcomes by inclusive attempt range, sorted, contiguous from 0.
#[derive(Debug, Clone, PartialEq)]
pub struct MockedResponse {
    ranges: Vec<(u64, u64, Outcome)>,
}

impl MockedResponse {
    /// The outcome of the `attempt`-th invocation (0-based), or `None` past the last key.
    pub fn at(&self, attempt: u64) -> Option<&Outcome> {
        self.ranges
            .iter()
            .find(|(lo, hi, _)| (*lo..=*hi).contains(&attempt))
            .map(|(_, _, o)| o)
    }

    /// Invocations the response covers.
    pub(crate) fn len(&self) -> u64 {
        self.ranges.last().map_or(0, |(_, hi, _)| hi + 1)
    }
}

/// A parsed, fully checked mock configuration file.
#[derive(Debug)]
pub struct MockConfig {
    file: String,
    /// State machine → test case → (Task state → mocked response name).
    state_machines: BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>,
    responses: BTreeMap<String, MockedResponse>,
}

/// JSON pointer escaping (RFC 6901): `~` → `~0`, `/` → `~1`.
fn esc(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

impl MockConfig {
    /// Reads and checks a mock configuration file; every problem is reported.
    pub fn load(path: &Path) -> Result<MockConfig, MockErrors> {
        let file = path.display().to_string();
        let err = |pointer: &str, message: String| MockError {
            file: file.clone(),
            pointer: pointer.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| MockErrors(vec![err("", format!("cannot read the file: {e}"))]))?;
        let doc: Value = serde_json::from_str(&text).map_err(|e| {
            MockErrors(vec![err(
                "",
                format!(
                    "not valid JSON: {e}; fix the syntax (JSON has no comments or trailing commas)"
                ),
            )])
        })?;
        MockConfig::from_value(&file, &doc)
    }

    /// Checks a parsed document; `file` names it in errors.
    pub fn from_value(file: &str, doc: &Value) -> Result<MockConfig, MockErrors> {
        let mut errors = Vec::new();
        let mut err = |pointer: String, message: String| {
            errors.push(MockError {
                file: file.to_owned(),
                pointer,
                message,
            })
        };
        let Some(top) = doc.as_object() else {
            err(
                String::new(),
                "must be a JSON object with \"StateMachines\" and \"MockedResponses\"".into(),
            );
            return Err(MockErrors(errors));
        };
        for key in top.keys() {
            if key != "StateMachines" && key != "MockedResponses" {
                err(
                    format!("/{}", esc(key)),
                    format!(
                        "unknown field \"{key}\"; the top level has only \"StateMachines\" and \"MockedResponses\""
                    ),
                );
            }
        }

        let mut responses = BTreeMap::new();
        match top.get("MockedResponses") {
            None => err(
                String::new(),
                "missing \"MockedResponses\"; add an object of mocked responses, e.g. {\"MyResponse\": {\"0\": {\"Return\": {}}}}".into(),
            ),
            Some(Value::Object(m)) => {
                for (name, v) in m {
                    let at = format!("/MockedResponses/{}", esc(name));
                    if let Some(r) = mocked_response(&at, v, &mut err) {
                        responses.insert(name.clone(), r);
                    }
                }
            }
            Some(_) => err(
                "/MockedResponses".into(),
                "must be an object whose fields are mocked responses".into(),
            ),
        }

        let mut state_machines = BTreeMap::new();
        match top.get("StateMachines") {
            None => err(
                String::new(),
                "missing \"StateMachines\"; add {\"<state machine name>\": {\"TestCases\": {\"<test case>\": {\"<Task state>\": \"<mocked response>\"}}}}".into(),
            ),
            Some(Value::Object(m)) => {
                for (sm, v) in m {
                    let at = format!("/StateMachines/{}", esc(sm));
                    let cases = test_cases(&at, v, &responses, top, &mut err);
                    state_machines.insert(sm.clone(), cases);
                }
            }
            Some(_) => err(
                "/StateMachines".into(),
                "must be an object whose fields are state machine names".into(),
            ),
        }
        if errors.is_empty() {
            Ok(MockConfig {
                file: file.to_owned(),
                state_machines,
                responses,
            })
        } else {
            Err(MockErrors(errors))
        }
    }

    /// Whether the file has test case `case` for state machine `sm`.
    pub fn has_test_case(&self, sm: &str, case: &str) -> bool {
        self.state_machines
            .get(sm)
            .is_some_and(|cases| cases.contains_key(case))
    }

    /// The test case `case` of state machine `sm`, checked against `definition`: every state
    /// it names must be a Task state somewhere in it (Map and Parallel included).
    pub fn test_case(
        &self,
        sm: &str,
        case: &str,
        definition: &Definition,
    ) -> Result<TestCase, MockErrors> {
        let one = |pointer: String, message: String| {
            MockErrors(vec![MockError {
                file: self.file.clone(),
                pointer,
                message,
            }])
        };
        let names = |m: &mut dyn Iterator<Item = &String>| {
            m.map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ")
        };
        let Some(cases) = self.state_machines.get(sm) else {
            return Err(one(
                "/StateMachines".into(),
                format!(
                    "no state machine \"{sm}\" (the definition file's name without .json/.asl.json); it has {}; rename the key or pass --state-machine-name",
                    names(&mut self.state_machines.keys())
                ),
            ));
        };
        let at = format!("/StateMachines/{}/TestCases", esc(sm));
        let Some(states) = cases.get(case) else {
            return Err(one(
                at,
                format!(
                    "no test case \"{case}\"; it has {}; pass one of them to --test-case or add \"{case}\"",
                    names(&mut cases.keys())
                ),
            ));
        };
        let mut tasks = HashMap::new();
        task_states(&definition.machine, &mut tasks);
        let mut errors = Vec::new();
        let mut mocked = HashMap::new();
        for (state, response) in states {
            let pointer = format!("{at}/{}/{}", esc(case), esc(state));
            match tasks.get(state.as_str()) {
                Some(true) => {
                    mocked.insert(state.clone(), (response.clone(), self.responses[response].clone()));
                }
                Some(false) => errors.push(MockError {
                    file: self.file.clone(),
                    pointer,
                    message: format!(
                        "state \"{state}\" is not a Task state; only Task states can be mocked, so remove it"
                    ),
                }),
                None => errors.push(MockError {
                    file: self.file.clone(),
                    pointer,
                    message: format!(
                        "the definition has no state \"{state}\"; use the name of one of its Task states"
                    ),
                }),
            }
        }
        if !errors.is_empty() {
            return Err(MockErrors(errors));
        }
        Ok(TestCase {
            file: self.file.clone(),
            state_machine: sm.to_owned(),
            name: case.to_owned(),
            mocked,
        })
    }
}

/// Every state name of `m` and its nested machines, `true` for Task states.
fn task_states<'a>(m: &'a StateMachine, out: &mut HashMap<&'a str, bool>) {
    for st in &m.states {
        out.insert(&st.name, matches!(st.kind, Kind::Task { .. }));
        match &st.kind {
            Kind::Parallel { branches } => branches.iter().for_each(|b| task_states(b, out)),
            Kind::Map { processor, .. } => task_states(processor, out),
            _ => {}
        }
    }
}

fn test_cases(
    at: &str,
    v: &Value,
    responses: &BTreeMap<String, MockedResponse>,
    top: &Map<String, Value>,
    err: &mut impl FnMut(String, String),
) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let Some(obj) = v.as_object() else {
        err(
            at.to_owned(),
            "must be an object with one field, \"TestCases\"".into(),
        );
        return out;
    };
    for key in obj.keys().filter(|k| *k != "TestCases") {
        err(
            format!("{at}/{}", esc(key)),
            format!("unknown field \"{key}\"; a state machine has only \"TestCases\""),
        );
    }
    let cases = match obj.get("TestCases") {
        Some(Value::Object(c)) => c,
        Some(_) => {
            err(
                format!("{at}/TestCases"),
                "must be an object whose fields are test cases".into(),
            );
            return out;
        }
        None => {
            err(
                at.to_owned(),
                "missing \"TestCases\"; add {\"TestCases\": {\"<test case>\": {\"<Task state>\": \"<mocked response>\"}}}".into(),
            );
            return out;
        }
    };
    // A name that exists but is broken was reported already; don't report it twice.
    let declared = |name: &str| {
        top.get("MockedResponses")
            .and_then(Value::as_object)
            .is_some_and(|m| m.contains_key(name))
    };
    for (case, states) in cases {
        let at = format!("{at}/TestCases/{}", esc(case));
        let Some(states) = states.as_object() else {
            err(
                at,
                "must be an object mapping Task state names to mocked response names".into(),
            );
            continue;
        };
        let mut map = BTreeMap::new();
        for (state, response) in states {
            let at = format!("{at}/{}", esc(state));
            match response.as_str() {
                Some(r) if responses.contains_key(r) => {
                    map.insert(state.clone(), r.to_owned());
                }
                Some(r) if declared(r) => {}
                Some(r) => err(
                    at,
                    format!(
                        "no mocked response \"{r}\"; add it under \"MockedResponses\" or use one of {}",
                        if responses.is_empty() {
                            "(none yet)".to_owned()
                        } else {
                            responses
                                .keys()
                                .map(|k| format!("\"{k}\""))
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    ),
                ),
                None => err(
                    at,
                    "must be the name of a mocked response (a string)".into(),
                ),
            }
        }
        out.insert(case.clone(), map);
    }
    out
}

/// Parses an attempt key: `"3"` or an inclusive range `"1-2"`.
fn attempt_key(key: &str) -> Option<(u64, u64)> {
    let digits = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match key.split_once('-') {
        None => digits(key).map(|n| (n, n)),
        Some((lo, hi)) => match (digits(lo), digits(hi)) {
            (Some(lo), Some(hi)) if lo <= hi => Some((lo, hi)),
            _ => None,
        },
    }
}

fn mocked_response(
    at: &str,
    v: &Value,
    err: &mut impl FnMut(String, String),
) -> Option<MockedResponse> {
    let Some(obj) = v.as_object() else {
        err(
            at.to_owned(),
            "must be an object of attempts, e.g. {\"0\": {\"Return\": {…}}}".into(),
        );
        return None;
    };
    if obj.is_empty() {
        err(
            at.to_owned(),
            "has no attempts; add at least \"0\": {\"Return\": …} or \"0\": {\"Throw\": …}".into(),
        );
        return None;
    }
    let mut ok = true;
    let mut ranges = Vec::new();
    for (key, v) in obj {
        let at = format!("{at}/{}", esc(key));
        let Some((lo, hi)) = attempt_key(key) else {
            err(
                at,
                format!(
                    "\"{key}\" is not an attempt number; write a non-negative integer (\"0\") or an inclusive range (\"1-2\", low end first)"
                ),
            );
            ok = false;
            continue;
        };
        match outcome(&at, v, err) {
            Some(o) => ranges.push((lo, hi, o, key.clone())),
            None => ok = false,
        }
    }
    if !ok {
        return None;
    }
    ranges.sort_by_key(|(lo, hi, _, _)| (*lo, *hi));
    // Every invocation needs a response (AWS: "you must specify a mocked response for every
    // invocation"), so the keys must cover 0..=last without gaps or overlaps.
    let mut next = 0u64;
    for (i, (lo, hi, _, key)) in ranges.iter().enumerate() {
        if *lo > next {
            err(
                at.to_owned(),
                format!(
                    "no response for attempt{} {}; add a key \"{}\" (attempts count from 0 and every one needs a response)",
                    if *lo - next > 1 { "s" } else { "" },
                    if *lo - next > 1 {
                        format!("{next}-{}", lo - 1)
                    } else {
                        next.to_string()
                    },
                    if *lo - next > 1 {
                        format!("{next}-{}", lo - 1)
                    } else {
                        next.to_string()
                    },
                ),
            );
            ok = false;
        } else if *lo < next {
            let (_, _, _, earlier) = &ranges[i - 1];
            err(
                format!("{at}/{}", esc(key)),
                format!("attempts \"{key}\" overlap \"{earlier}\"; give each attempt one response"),
            );
            ok = false;
        }
        next = next.max(hi.saturating_add(1));
    }
    ok.then(|| MockedResponse {
        ranges: ranges
            .into_iter()
            .map(|(lo, hi, o, _)| (lo, hi, o))
            .collect(),
    })
}

fn outcome(at: &str, v: &Value, err: &mut impl FnMut(String, String)) -> Option<Outcome> {
    let Some(obj) = v.as_object() else {
        err(
            at.to_owned(),
            "must be an object with either \"Return\" or \"Throw\"".into(),
        );
        return None;
    };
    let mut ok = true;
    for key in obj.keys().filter(|k| *k != "Return" && *k != "Throw") {
        err(
            format!("{at}/{}", esc(key)),
            format!("unknown field \"{key}\"; an attempt has only \"Return\" or \"Throw\""),
        );
        ok = false;
    }
    let result = match (obj.get("Return"), obj.get("Throw")) {
        (Some(_), Some(_)) => {
            err(
                at.to_owned(),
                "has both \"Return\" and \"Throw\"; keep one (split the attempts into two keys to return on some and throw on others)".into(),
            );
            None
        }
        (None, None) => {
            err(
                at.to_owned(),
                "has neither \"Return\" nor \"Throw\"; add one".into(),
            );
            None
        }
        (Some(r), None) => Some(Outcome::Return(r.clone())),
        (None, Some(t)) => {
            let at = format!("{at}/Throw");
            let field = |name: &str, err: &mut dyn FnMut(String, String)| match t.get(name) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => {
                    err(format!("{at}/{name}"), "must be a string".into());
                    None
                }
                None => {
                    err(
                        at.clone(),
                        format!(
                            "missing \"{name}\"; a Throw needs string fields \"Error\" and \"Cause\""
                        ),
                    );
                    None
                }
            };
            if t.is_object() {
                let error = field("Error", err);
                let cause = field("Cause", err);
                match (error, cause) {
                    (Some(error), Some(cause)) => Some(Outcome::Throw { error, cause }),
                    _ => None,
                }
            } else {
                err(
                    at.clone(),
                    "must be an object {\"Error\": \"…\", \"Cause\": \"…\"}".into(),
                );
                None
            }
        }
    };
    if ok { result } else { None }
}

/// A test case chosen for one execution, checked against its definition.
#[derive(Debug)]
pub struct TestCase {
    file: String,
    state_machine: String,
    name: String,
    /// Task state → (mocked response name, response).
    mocked: HashMap<String, (String, MockedResponse)>,
}

/// The handler for every task of a mocked execution: answers by state name and attempt.
pub struct MockHandler {
    case: TestCase,
    /// Invocations so far, per state name, across the whole execution.
    calls: Mutex<HashMap<String, u64>>,
}

impl MockHandler {
    pub fn new(case: TestCase) -> MockHandler {
        MockHandler {
            case,
            calls: Mutex::new(HashMap::new()),
        }
    }

    /// The answer to one invocation of `state` (numbered in call order).
    fn answer(&self, ctx: &TaskContext) -> Result<Value, TaskError> {
        let c = &self.case;
        let state = &ctx.state_name;
        let Some((response_name, response)) = c.mocked.get(state) else {
            // As the engine fails a task nobody serves, so Retry/Catch see the same error.
            let error = if ctx.resource.contains(":lambda:") {
                "Lambda.ResourceNotFoundException"
            } else {
                "States.TaskFailed"
            };
            return Err(TaskError::new(
                error,
                format!(
                    "state \"{state}\" (resource \"{}\") has no mock in test case \"{}\" of state machine \"{}\" in {}; add \"{state}\": \"<mocked response>\" to that test case",
                    ctx.resource, c.name, c.state_machine, c.file
                ),
            ));
        };
        let attempt = {
            let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
            let n = calls.entry(state.clone()).or_insert(0);
            let attempt = *n;
            *n += 1;
            attempt
        };
        match response.at(attempt) {
            Some(Outcome::Return(v)) => Ok(v.clone()),
            Some(Outcome::Throw { error, cause }) => Err(TaskError::new(error, cause)),
            None => Err(TaskError::new(
                asl::error::RUNTIME,
                format!(
                    "state \"{state}\" was invoked {} times but mocked response \"{response_name}\" in {} covers attempts 0-{} only; add a key \"{}\" (or a range) to it",
                    attempt + 1,
                    c.file,
                    response.len().saturating_sub(1),
                    attempt
                ),
            )),
        }
    }
}

#[async_trait]
impl TaskHandler for MockHandler {
    async fn invoke(&self, _input: Value, ctx: TaskContext) -> Result<Value, TaskError> {
        self.answer(&ctx)
    }

    fn returns_service_response(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn attempt_keys() {
        assert_eq!(attempt_key("0"), Some((0, 0)));
        assert_eq!(attempt_key("1-2"), Some((1, 2)));
        assert_eq!(attempt_key("3-3"), Some((3, 3)));
        for bad in ["", "-1", "a", "2-1", "1-", "-", "1-2-3", " 1", "+1", "1.0"] {
            assert_eq!(attempt_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn outcomes_by_attempt() {
        let doc = json!({"StateMachines": {"sm": {"TestCases": {"c": {"A": "R"}}}},
            "MockedResponses": {"R": {"0": {"Throw": {"Error": "E", "Cause": "C"}},
                "1-2": {"Return": {"x": 1}}, "3": {"Return": 2}}}});
        let cfg = MockConfig::from_value("m.json", &doc).unwrap();
        let r = &cfg.responses["R"];
        assert_eq!(
            r.at(0),
            Some(&Outcome::Throw {
                error: "E".into(),
                cause: "C".into()
            })
        );
        assert_eq!(r.at(1), Some(&Outcome::Return(json!({"x": 1}))));
        assert_eq!(r.at(2), Some(&Outcome::Return(json!({"x": 1}))));
        assert_eq!(r.at(3), Some(&Outcome::Return(json!(2))));
        assert_eq!(r.at(4), None);
        assert_eq!(r.len(), 4);
    }

    #[test]
    fn gaps_and_overlaps_are_reported() {
        let doc = json!({"StateMachines": {},
            "MockedResponses": {"Gap": {"0": {"Return": 1}, "2-3": {"Return": 2}},
                "Late": {"1": {"Return": 1}},
                "Overlap": {"0-2": {"Return": 1}, "2": {"Return": 2}}}});
        let e = MockConfig::from_value("m.json", &doc)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/MockedResponses/Gap: no response for attempt 1; add a key \"1\""),
            "{e}"
        );
        assert!(
            e.contains("/MockedResponses/Late: no response for attempt 0"),
            "{e}"
        );
        assert!(
            e.contains("/MockedResponses/Overlap/2: attempts \"2\" overlap \"0-2\""),
            "{e}"
        );
    }
}
