//! JSONata: the language core, the function library and the Step Functions additions.

use jsonata::context::{EvalContext, SplitMix64};
use jsonata::{Expression, JsonataError, is_expression};
use serde_json::{Value, json};

fn input() -> Value {
    json!({
        "name": "fleet",
        "n": 5,
        "items": [
            {"id": 1, "price": 10, "tags": ["a", "b"]},
            {"id": 2, "price": 25, "tags": ["c"]},
            {"id": 3, "price": 5, "tags": []}
        ],
        "nested": {"deep": {"value": "x"}},
        "FunctionInput": {"fst": [0, 1, 2, 3], "snd": 3}
    })
}

fn eval_on(expr: &str, input: &Value, seed: u64) -> Result<Option<Value>, JsonataError> {
    let context = json!({"State": {"Name": "S", "EnteredTime": "2024-01-02T03:04:05.678Z"}, "Map": {"Item": {"Value": 7}}});
    let vars: serde_json::Map<String, Value> = serde_json::from_value(
        json!({"theAnswer": 42, "varname": {"varfield": "vf"}, "list": [3, 1, 2]}),
    )
    .unwrap();
    let result = json!({"ok": true});
    let mut entropy = SplitMix64(seed);
    let mut ctx = EvalContext::new(input, &context, &vars, &mut entropy).with_result(&result);
    Expression::parse(expr)
        .unwrap_or_else(|e| panic!("{expr}: {e}"))
        .evaluate(&mut ctx)
}

/// Evaluates `expr` against [`input`] and compares with `expected` (`None` = undefined).
#[track_caller]
fn check(expr: &str, expected: Option<Value>) {
    match eval_on(expr, &input(), 1) {
        Ok(v) => assert_eq!(v, expected, "{expr}"),
        Err(e) => panic!("{expr}: {e}"),
    }
}

#[track_caller]
fn check_err(expr: &str, needle: &str) {
    let e = eval_on(expr, &input(), 1).expect_err(expr).to_string();
    assert!(e.contains(needle), "{expr}: {e}");
}

#[test]
fn delimiters() {
    assert!(is_expression("{% $x %}"));
    assert!(!is_expression(" {% $x %} "), "AWS does not trim");
    assert!(!is_expression("$states.input"));
    assert_eq!(Expression::parse("{% 1 + 1 %}").unwrap().as_str(), "1 + 1");
}

#[test]
fn states_bindings_and_variables() {
    check("$states.input.name", Some(json!("fleet")));
    check("$states.input.nested.deep.value", Some(json!("x")));
    check("$states.context.Map.Item.Value", Some(json!(7)));
    check("$states.result.ok", Some(json!(true)));
    check("$states.errorOutput", None);
    check("$theAnswer", Some(json!(42)));
    check("$varname.varfield", Some(json!("vf")));
    check("$doesNotExist", None);
    check("$states.input.nope", None);
    // Inside predicates and lambdas `$` and field names read the current item.
    check("$states.input.items[$.price > 20].id", Some(json!(2)));
    check(
        "$map($states.input.items, function($v) { $v.id * 10 })",
        Some(json!([10, 20, 30])),
    );
}

#[test]
fn paths_and_predicates() {
    check("$states.input.items.id", Some(json!([1, 2, 3])));
    check("$states.input.items[0].id", Some(json!(1)));
    check("$states.input.items[-1].id", Some(json!(3)));
    check("$states.input.items[price > 8].id", Some(json!([1, 2])));
    check("$states.input.items[price > 20].id", Some(json!(2)));
    check("$states.input.items[price > 20].id[]", Some(json!([2])));
    check("$states.input.items[price > 8].id[]", Some(json!([1, 2])));
    check("$states.input.items[].id", Some(json!([1, 2, 3])));
    check("$states.input.items[price > 100].id", None);
    check("$states.input.items.tags", Some(json!(["a", "b", "c"])));
    check("$states.input.items[0].tags", Some(json!(["a", "b"])));
    check("$states.input.items['c' in tags].id", Some(json!(2)));
    check("$states.input.nested.*.value", Some(json!("x")));
    check("$states.input.**.value", Some(json!("x")));
    check("$count($states.input.items)", Some(json!(3)));
    check("$states.input.items^(>price).id", Some(json!([2, 1, 3])));
    check("$states.input.items^(price).id", Some(json!([3, 1, 2])));
    check("($states.input.items.price)[1]", Some(json!(25)));
}

#[test]
fn operators() {
    check("1 + 2 * 3", Some(json!(7)));
    check("(1 + 2) * 3", Some(json!(9)));
    check("7 % 4 - 10 / 4", Some(json!(0.5)));
    check("-$states.input.n", Some(json!(-5)));
    check("$states.input.n = 5", Some(json!(true)));
    check("$states.input.n != 5", Some(json!(false)));
    check("'a' < 'b' and 2 >= 2", Some(json!(true)));
    check("false or 1 > 2", Some(json!(false)));
    check("'x' & 1 & true & null", Some(json!("x1truenull")));
    check(
        "$states.input.name & '-' & $states.input.missing",
        Some(json!("fleet-")),
    );
    check("3 in [1, 2, 3]", Some(json!(true)));
    check("$states.input.n > 3 ? 'big' : 'small'", Some(json!("big")));
    check("$states.input.n > 30 ? 'big'", None);
    check("[1..4]", Some(json!([1, 2, 3, 4])));
    check("[0, [1, 2], $list]", Some(json!([0, [1, 2], 3, 1, 2])));
    check("$states.input.missing = 1", Some(json!(false)));
    // jsonata-js 2.0.6: a comparison with an undefined operand is undefined.
    check("$states.input.missing > 1", None);
    check("$states.input.missing + 1", None);
    check_err("true > 1", "T2010");
    check("$states.input = '\"'", Some(json!(false)));
    check_err("'a' + 1", "T2001");
    check_err("1 < 'a'", "T2009");
}

#[test]
fn constructors_blocks_and_lambdas() {
    check(
        "{'name': $states.input.name, 'count': $count($states.input.items), 'gone': $nope}",
        Some(json!({"name": "fleet", "count": 3})),
    );
    check("($x := 2; $y := $x * 3; $x + $y)", Some(json!(8)));
    check(
        "($double := function($v) { $v * 2 }; $double(21))",
        Some(json!(42)),
    );
    check(
        "($fact := function($n) { $n <= 1 ? 1 : $n * $fact($n - 1) }; $fact(10))",
        Some(json!(3628800)),
    );
    check(
        "$map([1, 2, 3], function($v, $i) { $v + $i })",
        Some(json!([1, 3, 5])),
    );
    check(
        "$filter($states.input.items, function($v) { $v.price < 20 }).id",
        Some(json!([1, 3])),
    );
    check(
        "$reduce([1, 2, 3, 4], function($a, $b) { $a + $b })",
        Some(json!(10)),
    );
    check(
        "$reduce([1, 2], function($a, $b) { $a + $b }, 10)",
        Some(json!(13)),
    );
    check("[1, 2, 3] ~> $sum()", Some(json!(6)));
    check("$sort($list)", Some(json!([1, 2, 3])));
    check(
        "$sort($list, function($a, $b) { $a < $b })",
        Some(json!([3, 2, 1])),
    );
    check(
        "$each({'a': 1, 'b': 2}, function($v, $k) { $k & $v })",
        Some(json!(["a1", "b2"])),
    );
    check_err("($f := function($n) { $f($n) }; $f(1))", "U1001");
    check_err("$nope()", "T1006");
    check_err("function($x) { $x }", "returned a function");
}

#[test]
fn standard_functions() {
    check("$string(1.5)", Some(json!("1.5")));
    check("$string({'a': [1]})", Some(json!("{\"a\":[1]}")));
    check("$string({'a': 1}, true)", Some(json!("{\n  \"a\": 1\n}")));
    check("(function($x)<n:n>{ $x * 2 })(4)", Some(json!(8)));
    check("$number('12.5')", Some(json!(12.5)));
    check("$boolean([])", Some(json!(false)));
    check("$not(0)", Some(json!(true)));
    check("$exists($states.input.nope)", Some(json!(false)));
    check("$sum($states.input.items.price)", Some(json!(40)));
    check("$max($states.input.items.price)", Some(json!(25)));
    check("$min($states.input.items.price)", Some(json!(5)));
    check("$average([1, 2])", Some(json!(1.5)));
    check("$length('héllo')", Some(json!(5)));
    check("$substring('fleetprep', 5)", Some(json!("prep")));
    check("$substring('fleetprep', -4, 2)", Some(json!("pr")));
    check("$substringBefore('a-b-c', '-')", Some(json!("a")));
    check("$substringAfter('a-b-c', '-')", Some(json!("b-c")));
    check("$uppercase('ab') & $lowercase('CD')", Some(json!("ABcd")));
    check("$trim('  a   b ')", Some(json!("a b")));
    check("$pad('7', -3, '0')", Some(json!("007")));
    check("$contains('fleet', 'lee')", Some(json!(true)));
    check("$split('a,b,c', ',')", Some(json!(["a", "b", "c"])));
    check("$join(['a', 'b'], '-')", Some(json!("a-b")));
    check("$replace('a.b.c', '.', '/')", Some(json!("a/b/c")));
    check("$keys({'a': 1, 'b': 2})", Some(json!(["a", "b"])));
    check("$lookup({'a': 1}, 'a')", Some(json!(1)));
    check(
        "$merge([{'a': 1}, {'b': 2, 'a': 3}])",
        Some(json!({"a": 3, "b": 2})),
    );
    check("$append([1], [2, 3])", Some(json!([1, 2, 3])));
    check("$reverse([1, 2, 3])", Some(json!([3, 2, 1])));
    check("$distinct([1, 1, 'a', 'a'])", Some(json!([1, "a"])));
    check(
        "$zip([1, 2], ['a', 'b'])",
        Some(json!([[1, "a"], [2, "b"]])),
    );
    check(
        "$type('x') & $type(1) & $type(null)",
        Some(json!("stringnumbernull")),
    );
    check(
        "$abs(-2) + $floor(1.7) + $ceil(1.2) + $sqrt(16) + $power(2, 3)",
        Some(json!(17)),
    );
    check(
        "$round(2.5) & ',' & $round(3.5) & ',' & $round(1.2345, 2)",
        Some(json!("2,4,1.23")),
    );
    check("$base64decode($base64encode('hi'))", Some(json!("hi")));
    check("$now()", Some(json!("2024-01-02T03:04:05.678Z")));
    check("$toMillis('1970-01-01T00:00:01Z')", Some(json!(1000)));
    check("$fromMillis(1000)", Some(json!("1970-01-01T00:00:01.000Z")));
    check(
        "$single([1, 2, 3], function($v) { $v = 2 })",
        Some(json!(2)),
    );
    check("$formatBase(255, 16)", Some(json!("ff")));
    check(
        "$formatNumber(1234.5678, '#,##0.00')",
        Some(json!("1,234.57")),
    );
    check("$formatNumber(0.5, '#.00')", Some(json!(".50")));
    check("$formatNumber(12, '000')", Some(json!("012")));
    check("$formatNumber(-3.14159, '0.0##')", Some(json!("-3.142")));
    check("$formatNumber(0.25, '#0%')", Some(json!("25%")));
    check(
        "$formatNumber(1234567, '$#,##0')",
        Some(json!("$1,234,567")),
    );
    check("$formatInteger(42.9, '000')", Some(json!("042")));
    check("$parseInteger('1,234', '#,##0')", Some(json!(1234)));
    check(
        "$encodeUrlComponent('a b&c=d/é')",
        Some(json!("a%20b%26c%3Dd%2F%C3%A9")),
    );
    check(
        "$encodeUrl('https://x.io/a b?q=1')",
        Some(json!("https://x.io/a%20b?q=1")),
    );
    check(
        "$decodeUrlComponent('a%20b%26c%3Dd%2F%C3%A9')",
        Some(json!("a b&c=d/é")),
    );
    check_err("$decodeUrl('%zz')", "Malformed URL");
    check_err("$error('boom')", "boom");
}

#[test]
fn step_functions_functions() {
    check(
        "$partition($states.input.FunctionInput.fst, $states.input.FunctionInput.snd)",
        Some(json!([[0, 1, 2], [3]])),
    );
    check("$partition([0], 2)", Some(json!([[0]])));
    check("$range(0, 10, 3)", Some(json!([0, 3, 6, 9])));
    check("$range(0, 9, 3)", Some(json!([0, 3, 6, 9])));
    check("$range(5, 1, -2)", Some(json!([5, 3, 1])));
    check(
        "$hash('input data', 'SHA-256')",
        Some(json!(
            "b4a697a057313163aee33cd8d40c66e9f0f177e00cac2de32475ffff6169c3e3"
        )),
    );
    check(
        "$parse('{\"a\": [1, {\"b\": null}]}')",
        Some(json!({"a": [1, {"b": null}]})),
    );
    check("$parse('[1,2]')[1]", Some(json!(2)));
    check_err("$parse('{bad')", "could not parse");
    check_err("$eval('1')", "use $parse");
    check_err("$partition([1], 0)", "positive integer");
    check_err("$range(0, 5000, 1)", "at most 1000");
    let a = eval_on("$random()", &input(), 9).unwrap().unwrap();
    let f = a.as_f64().unwrap();
    assert!((0.0..1.0).contains(&f), "{f}");
    assert_eq!(
        eval_on("$random()", &input(), 9).unwrap().unwrap(),
        a,
        "same entropy, same value"
    );
    assert_eq!(
        eval_on("$random(5)", &input(), 1).unwrap(),
        eval_on("$random(5)", &input(), 2).unwrap()
    );
    let u = eval_on("$uuid()", &input(), 3).unwrap().unwrap();
    assert_eq!(u.as_str().map(str::len), Some(36));
    assert_ne!(Some(u), eval_on("$uuid()", &input(), 4).unwrap());
}

#[test]
fn parse_errors() {
    for (bad, needle) in [
        ("", "empty expression"),
        ("1 +", "unexpected end"),
        ("(1", "expected ')'"),
        ("'open", "unterminated string"),
        ("1 ! 2", "unexpected character"),
        ("[1, 2", "expected ']'"),
        ("{'a' 1}", "expected ':'"),
        ("1 := 2", "must be a $variable"),
        ("/* open", "unterminated comment"),
        ("$states.input{b 1}", "expected ':'"),
        // Step Functions forbids reading the context at the top level.
        (
            "name",
            "unqualified field name cannot be used at the top level",
        ),
        ("$.n", "'$' cannot be used at the top level"),
        ("$$.x", "'$$' cannot be used at the top level"),
        ("{'a': x}", "unqualified field name"),
        ("1 + *", "a wildcard"),
        ("/unterminated", "unterminated regular expression"),
        ("$x ~> /a/g", "unsupported regular expression flag"),
    ] {
        let err = Expression::parse(bad).expect_err(bad);
        assert!(err.to_string().contains(needle), "{bad}: {err}");
    }
    // Syntax errors carry the offset as a field too (the message names it).
    let err = Expression::parse("1 ! 2").unwrap_err();
    assert_eq!(err.to_string(), "unexpected character '!' at offset 2");
    assert_eq!((err.code(), err.position()), (None, Some(2)));
    let err = Expression::parse("[1..2] ~> $x.(1..2)").unwrap_err();
    assert!(err.has_code("S0202"), "{err}");
    assert!(err.position().is_some(), "{err}");
    let deep = format!("{}1{}", "(".repeat(500), ")".repeat(500));
    assert!(
        Expression::parse(&deep)
            .unwrap_err()
            .to_string()
            .contains("nested")
    );
}

#[test]
fn runaway_recursion_is_an_error_even_on_a_small_stack() {
    // Engine worker threads may have small stacks: the depth limit must trip first.
    let handle = std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(|| {
            let deep_parens = format!("{}1{}", "(".repeat(190), ")".repeat(190));
            let r1 = eval_on("($f := function($n) { 1 + $f($n) }; $f(1))", &input(), 1);
            let r2 = eval_on(&deep_parens, &input(), 1);
            (r1.is_err(), r2.map(|v| v.is_some()).unwrap_or(true))
        })
        .unwrap();
    assert_eq!(handle.join().unwrap(), (true, true));
}

#[test]
fn regular_expressions() {
    check("$contains('fleet-01', /[0-9]+$/)", Some(json!(true)));
    check("$contains('fleet', /^[0-9]+$/)", Some(json!(false)));
    check("$split('a1b22c', /[0-9]+/)", Some(json!(["a", "b", "c"])));
    check("$replace('a1b22c', /[0-9]+/, '#')", Some(json!("a#b#c")));
    check(
        "$replace('John Smith', /(\\w+)\\s(\\w+)/, '$2, $1')",
        Some(json!("Smith, John")),
    );
    check(
        "$match('ababbabbcc', /a(b+)/)",
        Some(json!([
            {"match": "ab", "index": 0, "groups": ["b"]},
            {"match": "abb", "index": 2, "groups": ["bb"]},
            {"match": "abb", "index": 5, "groups": ["bb"]}
        ])),
    );
    check("$match('x', /y/)", None);
    check(
        "$boolean($match('A@B.io', /^[a-z]+@[a-z.]+$/i))",
        Some(json!(true)),
    );
    // Division still divides.
    check("$states.input.n / 5 / 1", Some(json!(1)));
    check("(10)/2", Some(json!(5)));
    let err = Expression::parse("/(/").unwrap_err();
    assert!(
        err.to_string().contains("invalid regular expression"),
        "{err}"
    );
}

#[test]
fn grouping_object_constructor() {
    let input = json!({"sales": [
        {"region": "eu", "amount": 10},
        {"region": "us", "amount": 5},
        {"region": "eu", "amount": 7}
    ]});
    let out = eval_on("$states.input.sales{region: $sum(amount)}", &input, 0).unwrap();
    assert_eq!(out, Some(json!({"eu": 17, "us": 5})));
    let out = eval_on("$states.input.sales[amount > 6]{'big': region}", &input, 0).unwrap();
    assert_eq!(out, Some(json!({"big": ["eu", "eu"]})));
}
