//! Differential test of the JSONata evaluator against the reference implementation: the npm
//! package `jsonata`, pinned in `tests/jsonata-oracle/package.json` to 2.0.6, the version Step
//! Functions implements ("Supported JSONata version" in the Step Functions developer guide).
//!
//! The corpus (`tests/jsonata-oracle/corpus.txt`, one `input<TAB>expression` per line) is
//! evaluated by both; every case must agree (same JSON value, both undefined, or both an
//! error with the same JSONata error code; a parse error on our side agrees with a reference
//! `S0xxx` syntax error). Cases in [`KNOWN_DIFFERENCES`] must disagree: a listed difference
//! that starts to agree fails the test, so the list cannot go stale.
//!
//! Needs node and the package: `npm ci --prefix crates/jsonata/tests/jsonata-oracle`. Without
//! them the test fails and says so (it never skips).

use std::io::Write;
use std::process::{Command, Stdio};

use jsonata::Expression;
use jsonata::context::{EvalContext, SplitMix64};
use serde_json::{Map, Value, json};

/// Cases where fleetprep deliberately or knowingly differs from jsonata-js 2.0.6, with why.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[
    (
        "1 / 0",
        "jsonata-js yields Infinity, which JSON.stringify turns into null; a state's output must \
         be JSON, so fleetprep raises D1001 (number out of range) instead",
    ),
    (
        "$eval(\"1 + 1\")",
        "Step Functions does not provide $eval (\"use $parse instead\", Step Functions \
         developer guide, Supported JSONata version); fleetprep raises an error naming $parse",
    ),
    (
        "{\"a\": [1, 2]} ~> |a|{\"x\": 1}|",
        "jsonata-js 2.0.6 crashes with a JavaScript TypeError when the location selects \
         numbers; fleetprep leaves non-object matches unchanged",
    ),
    (
        "($sumto := function($n) { $n = 0 ? 0 : $n + $sumto($n - 1) }; $sumto(100))",
        "evaluation depth and stack use are bounded (U1001) so hostile expressions end in an \
         error instead of a crash; recursion through a lambda is limited to a few dozen \
         levels, where jsonata-js goes as deep as the JavaScript stack",
    ),
    (
        "$formatNumber(3, \"x\")",
        "jsonata-js 2.0.6 crashes with a JavaScript TypeError on a picture without digits; \
         fleetprep raises D3085 as XPath format-number specifies",
    ),
];

const ORACLE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/jsonata-oracle");

fn context() -> Value {
    json!({"Execution": {"Id": "arn:x", "StartTime": "2024-01-02T03:04:05.678Z"},
           "State": {"Name": "S", "EnteredTime": "2024-01-02T03:04:05.678Z"}})
}

fn corpus() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(format!("{ORACLE_DIR}/corpus.txt")).expect("corpus.txt");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("//"))
        .map(|l| {
            let (input, expr) = l
                .split_once('\t')
                .unwrap_or_else(|| panic!("corpus line without a tab: {l}"));
            (input.to_owned(), expr.to_owned())
        })
        .collect()
}

fn run_oracle(inputs: &Value, cases: &[(String, String)]) -> Vec<Value> {
    let request = json!({
        "inputs": inputs,
        "context": context(),
        "cases": cases.iter().map(|(i, e)| json!({"input": i, "expr": e})).collect::<Vec<_>>(),
    });
    let how = "install it with `npm ci --prefix crates/jsonata/tests/jsonata-oracle` (needs node >= 18 and npm)";
    assert!(
        std::path::Path::new(&format!("{ORACLE_DIR}/node_modules/jsonata")).exists(),
        "the reference JSONata implementation is not installed: {how}"
    );
    let mut child = Command::new("node")
        .arg(format!("{ORACLE_DIR}/oracle.js"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node ({e}): {how}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request.to_string().as_bytes())
        .expect("write to node");
    let out = child.wait_with_output().expect("node output");
    assert!(
        out.status.success(),
        "the oracle failed: {}\n{how}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("oracle output is JSON")
}

/// Our outcome in the oracle's shape.
fn ours(input: &Value, expr: &str) -> Value {
    let parsed = match Expression::parse_standard(expr) {
        Ok(p) => p,
        Err(e) => return json!({"error": "parse", "message": e.to_string()}),
    };
    let context = context();
    let vars = Map::new();
    let mut entropy = SplitMix64(7);
    let mut ctx = EvalContext::new(input, &context, &vars, &mut entropy);
    match parsed.evaluate(&mut ctx) {
        Ok(Some(v)) => json!({"value": v}),
        Ok(None) => json!({"undefined": true}),
        Err(e) => {
            if e.message().contains("returned a function") {
                return json!({"function": true});
            }
            let code = e.code().map_or("none", |c| c.as_str());
            json!({"error": code, "message": e.to_string()})
        }
    }
}

fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_json(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

fn agree(ours: &Value, reference: &Value) -> bool {
    match (ours.get("error"), reference.get("error")) {
        (Some(Value::String(a)), Some(Value::String(b))) => {
            a == b || (a == "parse" && b.starts_with('S'))
        }
        (None, None) => match (ours.get("value"), reference.get("value")) {
            (Some(a), Some(b)) => same_json(a, b),
            _ => ours == reference,
        },
        _ => false,
    }
}

#[test]
fn agrees_with_reference_jsonata() {
    let inputs: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{ORACLE_DIR}/inputs.json")).expect("inputs.json"),
    )
    .expect("inputs.json is JSON");
    let cases = corpus();
    let reference = run_oracle(&inputs, &cases);
    assert_eq!(reference.len(), cases.len());
    let mut agreed = 0;
    let mut failures = Vec::new();
    for ((input, expr), want) in cases.iter().zip(&reference) {
        let got = ours(&inputs[input.as_str()], expr);
        let ok = agree(&got, want);
        let listed = KNOWN_DIFFERENCES.iter().any(|(e, _)| e == expr);
        if ok {
            agreed += 1;
        }
        match (ok, listed) {
            (false, false) => failures.push(format!(
                "DIFFERS  [{input}] {expr}\n    ours:      {got}\n    reference: {want}"
            )),
            (true, true) => failures.push(format!(
                "NOW AGREES (remove from KNOWN_DIFFERENCES) [{input}] {expr}"
            )),
            _ => {}
        }
    }
    for (e, _) in KNOWN_DIFFERENCES {
        assert!(
            cases.iter().any(|(_, c)| c == e),
            "KNOWN_DIFFERENCES lists a case that is not in the corpus: {e}"
        );
    }
    println!(
        "jsonata oracle: {agreed}/{} cases agree with jsonata 2.0.6 ({} known differences)",
        cases.len(),
        KNOWN_DIFFERENCES.len()
    );
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
