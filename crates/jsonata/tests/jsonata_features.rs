//! JSONata language features closed for issue #2, asserted against the results the JSONata
//! documentation (docs.jsonata.org, 2.0.x) gives, written as Step Functions expressions
//! (`$states.input` instead of a top-level `$`). Runs without node; the differential test in
//! `jsonata_oracle.rs` covers the same ground against the reference implementation.

use jsonata::Expression;
use jsonata::context::{EvalContext, SplitMix64};
use serde_json::{Map, Value, json};

fn library() -> Value {
    json!({"library": {
        "books": [
            {"title": "SICP", "isbn": "1", "price": 38.9, "authors": ["Abelson", "Sussman"]},
            {"title": "K&R", "isbn": "2", "price": 33.59, "authors": ["Kernighan", "Richie"]},
            {"title": "Dragon", "isbn": "3", "price": 23.38, "authors": ["Aho", "Ullman"]}
        ],
        "loans": [
            {"customer": "c1", "isbn": "1"},
            {"customer": "c3", "isbn": "3"}
        ],
        "customers": [
            {"id": "c1", "name": "Joe"},
            {"id": "c2", "name": "Fred"},
            {"id": "c3", "name": "Jason"}
        ]
    }})
}

fn eval(expr: &str) -> Result<Option<Value>, String> {
    let input = library();
    let context = json!({"State": {"EnteredTime": "2024-01-02T03:04:05.678Z"}});
    let vars = Map::new();
    let mut entropy = SplitMix64(1);
    let mut ctx = EvalContext::new(&input, &context, &vars, &mut entropy);
    let parsed = Expression::parse(expr).map_err(|e| e.to_string())?;
    parsed.evaluate(&mut ctx).map_err(|e| e.to_string())
}

#[track_caller]
fn check(expr: &str, expected: Value) {
    match eval(expr) {
        Ok(Some(v)) => assert_eq!(v, expected, "{expr}"),
        other => panic!("{expr}: {other:?}"),
    }
}

#[track_caller]
fn check_err(expr: &str, code: &str) {
    match eval(expr) {
        Err(cause) => assert!(cause.contains(code), "{expr}: {cause}"),
        other => panic!("{expr}: expected {code}, got {other:?}"),
    }
}

#[test]
fn partial_application_and_function_chaining() {
    // docs: "Partial function application".
    check(
        "($first5 := $substring(?, 0, 5); $first5('Hello World'))",
        json!("Hello"),
    );
    check("'Hello World' ~> $substring(?, 6)", json!("World"));
    check(
        "($pow2 := $power(2, ?); $map([1, 2, 3], $pow2))",
        json!([2, 4, 8]),
    );
    check(
        "($f := function($a, $b, $c) { $a & $b & $c }; $g := $f(?, '-', ?); $g('x', 'y'))",
        json!("x-y"),
    );
    // docs: "Function composition" with `~>` between two functions.
    check(
        "($normalize := $trim ~> $uppercase; '  hello  world ' ~> $normalize)",
        json!("HELLO WORLD"),
    );
    check(
        "($inc := function($x) { $x + 1 }; $dbl := function($x) { $x * 2 }; ($inc ~> $dbl)(5))",
        json!(12),
    );
    // Arguments of a partial application are checked when it is called (jsonata-js 2.0.6
    // skips the check and fails with a JavaScript TypeError here).
    check_err("$substring(?, 0)(5)", "T0411");
    check_err("$states.input.nothing(?)", "T1008");
}

#[test]
fn context_and_positional_variable_binding() {
    // docs: "Path Operators" - join loans to books with `@`.
    check(
        "$states.input.library.loans@$l.books@$b[$l.isbn = $b.isbn].{'title': $b.title, 'customer': $l.customer}",
        json!([{"title": "SICP", "customer": "c1"}, {"title": "Dragon", "customer": "c3"}]),
    );
    check(
        "$states.input.library.loans@$l.customers@$c[$c.id = $l.customer].$c.name",
        json!(["Joe", "Jason"]),
    );
    // `#` binds the position in the sequence.
    check(
        "$states.input.library.books#$i.{'i': $i, 't': title}",
        json!([{"i": 0, "t": "SICP"}, {"i": 1, "t": "K&R"}, {"i": 2, "t": "Dragon"}]),
    );
    check(
        "$states.input.library.books#$i[$i > 0].title",
        json!(["K&R", "Dragon"]),
    );
    // A `#` after a predicate numbers the filtered items.
    check(
        "$states.input.library.books[price < 35]#$i.{'i': $i, 't': title}",
        json!([{"i": 0, "t": "K&R"}, {"i": 1, "t": "Dragon"}]),
    );
    // After an order-by, `#` numbers the sorted sequence.
    check(
        "$states.input.library.books^(price)#$i.{'i': $i, 't': title}",
        json!([{"i": 0, "t": "Dragon"}, {"i": 1, "t": "K&R"}, {"i": 2, "t": "SICP"}]),
    );
    // Grouping sees the bound variables.
    check(
        "$states.input.library.loans@$l.customers@$c[$c.id = $l.customer]{$c.name: $l.isbn}",
        json!({"Joe": "1", "Jason": "3"}),
    );
    assert!(eval("$states.input.library.books[0]@$b").is_err(), "S0215");
}

#[test]
fn transform_operator_copies() {
    check(
        "$states.input.library ~> |books|{'price': price * 2}, 'authors'| ~> $lookup('books')",
        json!([
            {"title": "SICP", "isbn": "1", "price": 77.8},
            {"title": "K&R", "isbn": "2", "price": 67.18},
            {"title": "Dragon", "isbn": "3", "price": 46.76}
        ]),
    );
    // The input is copied, never modified.
    check(
        "($x := $states.input.library ~> |books|{'price': 0}|; $states.input.library.books.price)",
        json!([38.9, 33.59, 23.38]),
    );
    check(
        "($t := |loans[customer = 'c3']|{'customer': 'c2'}|; $t($states.input.library).loans.customer)",
        json!(["c1", "c2"]),
    );
    check_err("$states.input.library ~> |books|'x'|", "T2011");
    check_err("$states.input.library ~> |books|{}, 5|", "T2012");
}

#[test]
fn date_time_pictures() {
    // docs: $fromMillis examples.
    check(
        "$fromMillis(1510067557121)",
        json!("2017-11-07T15:12:37.121Z"),
    );
    check(
        "$fromMillis(1510067557121, '[M01]/[D01]/[Y0001] [h#1]:[m01][P]')",
        json!("11/07/2017 3:12pm"),
    );
    check(
        "$fromMillis(1510067557121, '[H01]:[m01]:[s01] [z]', '-0500')",
        json!("10:12:37 GMT-05:00"),
    );
    check(
        "$fromMillis(1510067557121, '[FNn], [D1o] [MNn] [Y]')",
        json!("Tuesday, 7th November 2017"),
    );
    check(
        "$fromMillis(1510067557121, '[FN,*-3], [D1] [MN,*-3] [Y0001]')",
        json!("TUE, 7 NOV 2017"),
    );
    check(
        "$fromMillis(1510067557121, '[Dwo] [MNn]')",
        json!("seventh November"),
    );
    check("$fromMillis(1510067557121, '[YI]')", json!("MMXVII"));
    check_err("$fromMillis(0, '[Q]')", "D3132");
    check_err("$fromMillis(0, '[Y')", "D3135");
    // docs: $toMillis with a picture.
    check(
        "$toMillis('13/11/2018', '[D]/[M]/[Y]')",
        json!(1542067200000i64),
    );
    check(
        "$toMillis('Tuesday, 13th November 2018', '[FNn], [D1o] [MNn] [Y]')",
        json!(1542067200000i64),
    );
    check(
        "$toMillis('2017-11-07T15:12:37.121Z')",
        json!(1510067557121i64),
    );
    check_err("$toMillis('yesterday')", "D3110");
    // $now with a picture formats the state's entered time (the crate has no clock).
    check("$now('[Y0001]-[M01]-[D01]')", json!("2024-01-02"));
    check("$now('[H01]:[m01]', '+0100')", json!("04:04"));
    check("$millis()", json!(1704164645678i64));
}

#[test]
fn number_pictures() {
    // docs: $formatNumber examples.
    check("$formatNumber(12345.6, '#,###.00')", json!("12,345.60"));
    check("$formatNumber(1234.5678, '00.000e0')", json!("12.346e2"));
    check("$formatNumber(34.555, '#0.00;(#0.00)')", json!("34.56"));
    check("$formatNumber(-34.555, '#0.00;(#0.00)')", json!("(34.56)"));
    check("$formatNumber(0.14, '01%')", json!("14%"));
    check("$formatNumber(0.4857, '###.#‰')", json!("485.7‰"));
    check("$formatNumber(1234.5678, '#.000e0')", json!("0.123e4"));
    check_err("$formatNumber(1, '0.0.0')", "D3081");
    // docs: $formatInteger / $parseInteger examples.
    check(
        "$formatInteger(2789, 'w')",
        json!("two thousand, seven hundred and eighty-nine"),
    );
    check("$formatInteger(1999, 'I')", json!("MCMXCIX"));
    check("$formatInteger(27, 'A')", json!("AA"));
    check("$formatInteger(21, 'Ww;o')", json!("Twenty-First"));
    check("$formatInteger(22, '0;o')", json!("22nd"));
    check(
        "$parseInteger('twelve thousand, four hundred and seventy-six', 'w')",
        json!(12476),
    );
    check("$parseInteger('MCMLXXXIV', 'I')", json!(1984));
    check("$parseInteger('12,345,678', '#,##0')", json!(12345678));
    check_err("$formatInteger(1, 'x')", "D3130");
}

#[test]
fn signature_errors() {
    check_err("$uppercase(1)", "T0410");
    check_err("$length('a', 'b')", "T0410");
    // A missing argument takes the context value; the top-level context is the state
    // input object, not a string.
    check_err("$states.input.library.$length()", "T0411");
    check(
        "$states.input.library.books[0].title.$uppercase()",
        json!("SICP"),
    );
    check_err("$sum(['a'])", "T0412");
    check_err("$join([1])", "T0412");
    check_err("$number('abc')", "D3030");
    check_err("$reduce([1], function($a) { $a })", "D3050");
    check_err("$split('a', ',', -1)", "D3020");
}

#[test]
fn hostile_pictures_end_in_errors() {
    let zeros = "0".repeat(5000);
    check_err(&format!("$formatInteger(1, '{zeros}')"), "D3080");
    check_err(&format!("$formatNumber(1, '{zeros}')"), "D3080");
    check_err("$formatInteger(1e300, 'w')", "D3001");
    check_err("$fromMillis(1e300)", "D3001");
    check_err("$formatNumber(1/0, '0')", "D1001");
    // Wide but bounded pictures still work.
    check("$formatInteger(7, '000000')", json!("000007"));
    check(
        "$string($length($formatNumber(1e300, '#,##0')))",
        json!("401"),
    );
}

#[test]
fn parent_operator() {
    // docs: "Path Operators", `%` (parent).
    check(
        "$states.input.library.books.authors.{'author': $, 'title': %.title}[[0..1]]",
        json!([{"author": "Abelson", "title": "SICP"}, {"author": "Sussman", "title": "SICP"}]),
    );
    check(
        "$states.input.library.books[isbn in %.loans.isbn].title",
        json!(["SICP", "Dragon"]),
    );
    check(
        "$states.input.library.books.authors[$ = 'Aho'].%.title",
        json!("Dragon"),
    );
    check(
        "$states.input.library.books.authors.%.%.customers[0].name",
        json!("Joe"),
    );
    // Ordering by a field of the parent, and a parent through a block step.
    check(
        "$states.input.library.books.(authors)^(%.price)[0]",
        json!("Aho"),
    );
    // A `%` with no step before it to be the parent of is S0217, at parse time.
    for bad in [
        "%.title",
        "$states.input.library.books.$count(authors).%",
        "$states.input.library.**.%",
        "$states.input.library.books^(price).%",
    ] {
        let err = Expression::parse(bad).expect_err(bad).to_string();
        assert!(err.contains("S0217"), "{bad}: {err}");
    }
}

#[test]
fn custom_matcher_functions() {
    // docs: "Using Regular Expressions", generic matchers: any function that returns
    // `{match, start, end, groups, next}` (or undefined) can stand in for a regex.
    let matcher = "($at := function($s, $from) { ($i := $length($substringBefore($substring($s, $from), ';')); $i = $length($substring($s, $from)) ? undefined : {'match': ';', 'start': $from + $i, 'end': $from + $i + 1, 'groups': [], 'next': function() { $at($s, $from + $i + 1) }}) }; $semi := function($s) { $at($s, 0) };";
    check(
        &format!("{matcher} $split('a;b;c', $semi))"),
        json!(["a", "b", "c"]),
    );
    check(
        &format!("{matcher} $replace('a;b;c', $semi, ' & '))"),
        json!("a & b & c"),
    );
    check(
        &format!("{matcher} $match('a;b', $semi))"),
        json!({"match": ";", "index": 1, "groups": []}),
    );
    check(
        &format!("{matcher} [$contains('a;b', $semi), $contains('ab', $semi)])"),
        json!([true, false]),
    );
    // A matcher that returns something else is T1010.
    check_err("$match('abc', function($s) { 'nope' })", "T1010");
    // A regex is itself a matcher function.
    check(
        "/b(.)/('abcbd')",
        json!({"match": "bc", "start": 1, "end": 3, "groups": ["c"]}),
    );
}

#[test]
fn regex_look_around_and_back_references() {
    check(
        "$match('100 USD, 200 EUR', /\\d+(?= EUR)/).match",
        json!("200"),
    );
    // As in JavaScript, "00" after "EUR2" is not preceded by "EUR".
    check(
        "$match('USD100 EUR200', /(?<!EUR)\\d+/).match",
        json!(["100", "00"]),
    );
    check(
        "$replace('aa bb cd', /(\\w)\\1/, '<$1>')",
        json!("<a> <b> cd"),
    );
    check("$split('a-b_c', /[-_](?=c)/)", json!(["a-b", "c"]));
    // A later match of zero length is D1004, as in the reference (it would never progress).
    check_err("$split('a1b22c', /(?<=\\d)(?=\\D)/)", "D1004");
    // Catastrophic backtracking ends in an error (the search's backtracking limit) instead
    // of a hang.
    let text = "a".repeat(40);
    check_err(
        &format!("$contains('{text}', /^(a|a)*\\1b/)"),
        "backtracking",
    );
    // Many searches that each backtrack exhaust the evaluation's work budget.
    check_err("$count([1..20000].($contains('ab', /(?=b)/)))", "U1001");
}

#[test]
fn lambda_signatures_are_checked() {
    // docs: "Function signatures" on lambdas.
    check("function($x)<n:n>{ $x * 2 }(21)", json!(42));
    check_err("function($x)<n:n>{ $x * 2 }('21')", "T0410");
    check_err("function($x, $y)<nn:n>{ $x + $y }(1, 2, 3)", "T0410");
    // `-`: a missing argument is the context value.
    check(
        "$states.input.library.books[0].title.function($x)<s-:s>{ $uppercase($x) }()",
        json!("SICP"),
    );
    check_err("$states.input.library.function($x)<s-:s>{ $x }()", "T0411");
    // Array parameters wrap a single value and check item types.
    check("function($a)<a<n>:n>{ $count($a) }(7)", json!(1));
    check_err("function($a)<a<n>:n>{ $sum($a) }([1, '2'])", "T0412");
    check(
        "$map([1, 2], function($v)<n:n>{ $v * 10 })",
        json!([10, 20]),
    );
    // Malformed signatures are syntax errors.
    for bad in [
        "function($x)<n<n>:n>{ $x }(1)",
        "function($x)<(a<n>):n>{ $x }(1)",
    ] {
        assert!(Expression::parse(bad).is_err(), "{bad}");
    }
}

/// Runs `f` on a thread with a 1 MiB stack (as `regressions_fuzz.rs` does): a stack overflow
/// would abort the test binary.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(f)
        .expect("spawn test thread")
        .join()
        .expect("the test thread panicked")
}

#[test]
fn hostile_parents_regexes_and_signatures_end_in_errors() {
    // (expression, what the outcome must contain; "" = must evaluate without error)
    let cases: Vec<(String, &str)> = vec![
        // Many `%` in one path: bounded (resolving them is quadratic).
        (
            format!("$states.input.a.{}b", "%.".repeat(5000)),
            "parent operators",
        ),
        (
            format!("$states.input.a.b.c.{}x", "%.".repeat(900)),
            "S0217",
        ),
        // `%` at the bottom of deep nesting.
        (
            format!("$states.input.a.{}%.x{}", "(".repeat(190), ")".repeat(190)),
            "",
        ),
        (format!("$states.input.a.b{}", "[%.x]".repeat(150)), ""),
        // Deeply nested regular expressions and signatures.
        (
            format!("$match('a', /{}a{}/)", "(".repeat(5000), ")".repeat(5000)),
            "regular expression",
        ),
        (
            format!("$match('a', /{}a/)", "(?=".repeat(3000)),
            "regular expression",
        ),
        (
            format!(
                "function($x)<{}n{}>{{ $x }}(1)",
                "a<".repeat(3000),
                ">".repeat(3000)
            ),
            "T041",
        ),
        (
            format!("function($x)<{}>{{ $x }}(1)", "(".repeat(3000)),
            "T0410",
        ),
        // Many matches in long non-ASCII text: positions are found in linear time.
        (
            format!(
                "$count($split('{}', /é/)) = 50001 ? 1 : $error('wrong count')",
                "é".repeat(50_000)
            ),
            "",
        ),
        (
            format!(
                "$length($replace('{}', /(?<=é)x/, 'y')) = 10000 ? 1 : $error('wrong')",
                "éx".repeat(5_000)
            ),
            "",
        ),
        // ... but a backtracking pattern's searches are charged to the work budget (about
        // 10,000 of them).
        (
            format!("$replace('{}', /(?<=é)x/, 'y')", "éx".repeat(30_000)),
            "U1001",
        ),
    ];
    for (text, want) in cases {
        let head: String = text.chars().take(60).collect();
        let outcome = on_small_stack(move || {
            let input = json!({"a": {"b": {"c": {"x": 1}}}});
            let context = json!({});
            let vars = Map::new();
            let mut entropy = SplitMix64(1);
            let mut ctx = EvalContext::new(&input, &context, &vars, &mut entropy);
            match Expression::parse(&text) {
                Ok(e) => e.evaluate(&mut ctx).map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        });
        match (want, outcome) {
            ("", Ok(())) => {}
            ("", Err(e)) => panic!("{head}: {e}"),
            (_, Ok(())) => panic!("{head}: expected an error containing {want}"),
            (_, Err(e)) => assert!(e.contains(want), "{head}: {e}"),
        }
    }
}
