//! JSONPath selection and ResultPath semantics (Jayway syntax as Step Functions uses it).

use asl::jsonpath::{EvalContext, JsonPath, ReferencePath, SplitMix64};
use serde_json::{Value, json};

/// Selects `path` from `input` (context `{"Execution": {"Name": "exec"}}`, variable `$v`).
fn select(path: &str, input: &Value) -> Option<Value> {
    let context = json!({"Execution": {"Name": "exec", "Input": input.clone()}});
    let vars: serde_json::Map<String, Value> =
        serde_json::from_value(json!({"v": {"a": [1, 2]}, "s": "text"})).unwrap();
    let mut entropy = SplitMix64(1);
    let ctx = EvalContext::new(input, &context, &vars, &mut entropy);
    let p = JsonPath::parse(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    p.select(&ctx).map(|c| c.into_owned())
}

#[track_caller]
fn check(path: &str, input: Value, expected: Option<Value>) {
    assert_eq!(select(path, &input), expected, "path {path}");
}

#[test]
fn definite_paths() {
    let doc = json!({"a": {"b": [10, 20, 30]}, "delivery-partner": "x", "k y": 1});
    check("$", doc.clone(), Some(doc.clone()));
    check("$.a.b", doc.clone(), Some(json!([10, 20, 30])));
    check("$.a.b[1]", doc.clone(), Some(json!(20)));
    check("$.a.b[-1]", doc.clone(), Some(json!(30)));
    check("$['a']['b'][0]", doc.clone(), Some(json!(10)));
    check("$[\"a\"].b[2]", doc.clone(), Some(json!(30)));
    check("$.delivery-partner", doc.clone(), Some(json!("x")));
    check("$['k y']", doc.clone(), Some(json!(1)));
    check("$.a.missing", doc.clone(), None);
    check("$.a.b[3]", doc.clone(), None);
    check("$.a.b.c", doc.clone(), None);
    check("$[0]", json!(["first"]), Some(json!("first")));
    // Jayway's `(@.length-N)` script form (asl-validator's valid-path-array-context.json).
    check(
        "$[(@.length-1)].bar",
        json!([{"bar": 1}, {"bar": 2}]),
        Some(json!(2)),
    );
}

#[test]
fn quoted_names_keep_backslashes_like_jayway() {
    // Recorded on AWS: ESCAPE_SEQUENCES_JSONPATH.
    let input = json!({"Test\\\"\"Name\"": "Value\"\\"});
    check("$['Test\\\"\"Name\"']", input, Some(json!("Value\"\\")));
    check("$['it\\'s']", json!({"it's": 1}), Some(json!(1)));
}

#[test]
fn indefinite_paths_return_arrays() {
    let doc =
        json!({"items": [{"id": 1, "p": 5}, {"id": 2, "p": 15}, {"id": 3}], "o": {"x": 1, "y": 2}});
    check("$.items[*].id", doc.clone(), Some(json!([1, 2, 3])));
    check("$.items[*].p", doc.clone(), Some(json!([5, 15])));
    check("$.o.*", doc.clone(), Some(json!([1, 2])));
    check("$.items[0,2].id", doc.clone(), Some(json!([1, 3])));
    check("$.items[1:].id", doc.clone(), Some(json!([2, 3])));
    check("$.items[:2].id", doc.clone(), Some(json!([1, 2])));
    check("$.items[-1:].id", doc.clone(), Some(json!([3])));
    check("$.items[0:3:2].id", doc.clone(), Some(json!([1, 3])));
    check("$..id", doc.clone(), Some(json!([1, 2, 3])));
    check("$.o['x','y']", doc.clone(), Some(json!({"x": 1, "y": 2})));
    check("$.items[*].none", doc.clone(), Some(json!([])));
}

/// Jayway `PathToken.handleObjectProperty`, multi-property branch (`assert isLeaf()`):
/// "Object merged = ctx.jsonProvider().createMap(); for (String property : properties) {
/// ... if(hasProperty(...)) ... else if DEFAULT_PATH_LEAF_TO_NULL ... else if
/// REQUIRE_PROPERTIES throw ... else continue; ... setProperty(merged, property, propertyVal) }
/// ctx.addResult(evalPath, pathRef, merged)". `PropertyPathToken.isTokenDefinite` returns true
/// for `multiPropertyMergeCase()` (leaf, several properties), and a definite path's value is
/// returned unwrapped (`EvaluationContextImpl.getValue`). Default options: missing properties
/// are left out. A non-leaf union (`['a','b'].x`) iterates instead and is indefinite.
#[test]
fn multi_property_leaf_merges_into_one_object_like_jayway() {
    let doc = json!({"a": {"k": 1}, "s": "str", "z": null});
    check(
        "$['a','s']",
        doc.clone(),
        Some(json!({"a": {"k": 1}, "s": "str"})),
    );
    // Missing properties are omitted; present JSON nulls are kept.
    check(
        "$['s','nope','z']",
        doc.clone(),
        Some(json!({"s": "str", "z": null})),
    );
    check("$['nope','gone']", doc.clone(), Some(json!({})));
    check("$.a['k','x']", doc.clone(), Some(json!({"k": 1})));
    assert!(JsonPath::parse("$.a['k','x']").unwrap().is_definite());
    // A definite upstream that is not an object: PropertyPathToken throws ("Expected to find
    // an object with property ..."): not found.
    check("$.s['a','b']", doc.clone(), None);
    check("$.nope['a','b']", doc.clone(), None);
    // Under a wildcard, one merged object per element; non-objects are skipped because the
    // upstream is indefinite.
    check(
        "$.items[*]['id','p']",
        json!({"items": [{"id": 1, "p": 2, "q": 3}, {"id": 4}, 5]}),
        Some(json!([{"id": 1, "p": 2}, {"id": 4}])),
    );
    // Not at the leaf: iteration, an indefinite array of the values found.
    check(
        "$['a','b'].k",
        json!({"a": {"k": 1}, "b": {"k": 2}}),
        Some(json!([1, 2])),
    );
    // The normalized form selects the same merged object.
    let p = JsonPath::parse("$.a['k','x']").unwrap();
    let again = JsonPath::parse(&p.normalized()).unwrap();
    assert_eq!(again.select_in(&doc), p.select_in(&doc));
}

/// Jayway `PathToken.handleObjectProperty`, single property, non-leaf and absent:
/// "if (! (isUpstreamDefinite() && isTokenDefinite()) && !REQUIRE_PROPERTIES ||
/// SUPPRESS_EXCEPTIONS) { return; } else { throw new PathNotFoundException("Missing property
/// in path " + evalPath); }" — so a missing `.name` before the first indefinite token throws
/// (Step Functions reports the path as not found), while a missing leaf ("if(isLeaf()) ...
/// return") or a property below a wildcard (upstream not definite) is just no match.
#[test]
fn missing_property_on_a_definite_prefix_is_not_found_like_jayway() {
    let doc = json!({"a": [{"x": 1}, {"y": 2}], "s": "str", "o": {}});
    check("$.nothing[*]", doc.clone(), None);
    check("$.nothing..x", doc.clone(), None);
    check("$.o.nothing[0:1]", doc.clone(), None);
    check("$.nothing[?(@.x)]", doc.clone(), None);
    // PropertyPathToken.evaluate: a non-object under a definite upstream throws too.
    check("$.s.k[*]", doc.clone(), None);
    // Still no match, not an error:
    check("$.a[*].missing", doc.clone(), Some(json!([])));
    check("$.a[*].missing[*]", doc.clone(), Some(json!([])));
    check("$..missing", doc.clone(), Some(json!([])));
    check("$.a[*].x", doc.clone(), Some(json!([1])));
    // handleArrayIndex swallows IndexOutOfBoundsException: no match.
    check("$.a[5].x[*]", doc.clone(), Some(json!([])));
    check("$.o[*]", doc.clone(), Some(json!([])));
    // The caller turns `None` into AWS's error.
    let e = JsonPath::parse("$.nothing[*]")
        .unwrap()
        .not_found_in_field("f.$", &json!({"a": 1}));
    assert_eq!(e.error, "States.Runtime");
    assert_eq!(
        e.cause,
        "The JSONPath '$.nothing[*]' specified for the field 'f.$' could not be found in the input '{\"a\":1}'"
    );
}

#[test]
fn filters() {
    let doc = json!({"items": [
        {"id": 1, "p": 5, "tag": "a", "ok": true},
        {"id": 2, "p": 15, "tag": "b"},
        {"id": 3, "p": 25, "tag": "a", "ok": false}
    ], "limit": 10});
    check("$.items[?(@.p > 10)].id", doc.clone(), Some(json!([2, 3])));
    check("$.items[?(@.p <= 15)].id", doc.clone(), Some(json!([1, 2])));
    check(
        "$.items[?(@.tag == 'a')].id",
        doc.clone(),
        Some(json!([1, 3])),
    );
    check(
        "$.items[?(@.tag != \"a\")].id",
        doc.clone(),
        Some(json!([2])),
    );
    check("$.items[?(@.ok)].id", doc.clone(), Some(json!([1, 3])));
    check("$.items[?(!@.ok)].id", doc.clone(), Some(json!([2])));
    check(
        "$.items[?(@.p > 1 && @.tag == 'a')].id",
        doc.clone(),
        Some(json!([1, 3])),
    );
    check(
        "$.items[?(@.p < 10 || @.p > 20)].id",
        doc.clone(),
        Some(json!([1, 3])),
    );
    check(
        "$.items[?(@.p > $.limit)].id",
        doc.clone(),
        Some(json!([2, 3])),
    );
    check("$.items[?(@.ok == true)].id", doc.clone(), Some(json!([1])));
    check(
        "$.items[?(@.id in [1, 2])].id",
        doc.clone(),
        Some(json!([1, 2])),
    );
    // A type mismatch compares false rather than failing.
    check("$.items[?(@.tag > 1)].id", doc, Some(json!([])));
}

#[test]
fn context_and_variables() {
    let input = json!({"x": 1});
    check("$$.Execution.Name", input.clone(), Some(json!("exec")));
    check("$$.Execution.Input.x", input.clone(), Some(json!(1)));
    check(
        "$$",
        input.clone(),
        Some(json!({"Execution": {"Name": "exec", "Input": {"x": 1}}})),
    );
    check("$v.a[1]", input.clone(), Some(json!(2)));
    check("$s", input.clone(), Some(json!("text")));
    check("$nosuch", input, None);
}

#[test]
fn parse_errors_name_the_problem() {
    for (bad, needle) in [
        ("a.b", "must start with '$'"),
        ("", "must start with '$'"),
        ("$.", "empty property name"),
        ("$[", "expected"),
        ("$['unterminated", "unterminated"),
        ("$.a[?(@.x >)]", "expected a value"),
        ("$.a]", "unexpected"),
        ("$[99999999999999999999]", "invalid index"),
    ] {
        let err = JsonPath::parse(bad).expect_err(bad);
        assert!(err.to_string().contains(needle), "{bad}: {err}");
    }
}

#[test]
fn error_texts_match_aws() {
    let p = JsonPath::parse("$.no_such_jsonpath").unwrap();
    let e = p.not_found_in_field("value.$", &json!({"a": 1}));
    assert_eq!(e.error, "States.Runtime");
    assert_eq!(
        e.cause,
        "The JSONPath '$.no_such_jsonpath' specified for the field 'value.$' could not be found in the input '{\"a\":1}'"
    );
    let p = JsonPath::parse("$.NoSuchInputPath").unwrap();
    assert_eq!(
        p.not_found_invalid_path().cause,
        "Invalid path '$.NoSuchInputPath' : No results for path: $['NoSuchInputPath']"
    );
    let p = JsonPath::parse("$.a[0].b").unwrap();
    assert_eq!(p.normalized(), "$['a'][0]['b']");
}

#[test]
fn result_path_merges_like_aws() {
    let set = |path: &str, target: Value, value: Value| {
        ReferencePath::parse(path).unwrap().set(target, value)
    };
    assert_eq!(set("$", json!({"a": 1}), json!(5)).unwrap(), json!(5));
    assert_eq!(
        set("$.r", json!({"a": 1}), json!(5)).unwrap(),
        json!({"a": 1, "r": 5})
    );
    assert_eq!(
        set("$.a", json!({"a": 1}), json!(5)).unwrap(),
        json!({"a": 5})
    );
    assert_eq!(
        set("$.x.y.z", json!({"a": 1}), json!(true)).unwrap(),
        json!({"a": 1, "x": {"y": {"z": true}}})
    );
    assert_eq!(
        set("$.l[1]", json!({"l": [0, 0]}), json!(9)).unwrap(),
        json!({"l": [0, 9]})
    );
    let err = set("$.a.b", json!({"a": "str"}), json!(1)).unwrap_err();
    assert_eq!(err.error, "States.ResultPathMatchFailure");
    assert_eq!(
        err.cause,
        "Unable to apply ReferencePath $.a.b to input {\"a\":\"str\"}"
    );
    let err = set("$.r", json!("scalar"), json!(1)).unwrap_err();
    assert_eq!(err.error, "States.ResultPathMatchFailure");
}

#[test]
fn result_path_in_place_leaves_the_input_untouched_on_failure() {
    // The interpreter builds a state's output inside its input; a failed ResultPath must
    // leave that input as it was, for Retry and Catch.
    for (path, input) in [
        ("$.a.b", json!({"a": "str", "keep": [1, 2]})),
        ("$.l[5].x", json!({"l": [0, 1]})),
        ("$.r", json!("scalar")),
    ] {
        let mut target = input.clone();
        let err = ReferencePath::parse(path)
            .unwrap()
            .set_in_place(&mut target, json!({"result": 1}))
            .unwrap_err();
        assert_eq!(err.error, "States.ResultPathMatchFailure", "{path}");
        assert_eq!(target, input, "{path}");
    }
    let mut target = json!({"a": {"b": 1}});
    ReferencePath::parse("$.a.c")
        .unwrap()
        .set_in_place(&mut target, json!(2))
        .unwrap();
    assert_eq!(target, json!({"a": {"b": 1, "c": 2}}));
}

#[test]
fn reference_paths_reject_indefinite_forms() {
    for bad in [
        "$.a[*]",
        "$..a",
        "$.a[1:2]",
        "$$.Execution",
        "$var.x",
        "$.a[?(@.b)]",
    ] {
        assert!(
            ReferencePath::parse(bad).is_err(),
            "{bad} should be rejected"
        );
    }
    let r = ReferencePath::parse("$.a['b'][0]").unwrap();
    assert_eq!(r.get(&json!({"a": {"b": [7]}})), Some(&json!(7)));
}

#[test]
fn deep_values_are_searched_without_recursion() {
    // serde_json parses at most 128 levels; go right up to that.
    let mut v = json!(1);
    for _ in 0..127 {
        v = json!({"n": v});
    }
    let p = JsonPath::parse("$..n").unwrap();
    let out = p.select_in(&v).unwrap();
    assert_eq!(out.as_array().map(Vec::len), Some(127));
}
