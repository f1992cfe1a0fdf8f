//! JSONata 2.0.6 as AWS Step Functions implements it, for `QueryLanguage: JSONata` states:
//! a parser and a deterministic evaluator over borrowed JSON. Pure: no I/O, no clock, no
//! randomness of its own, no async runtime, and nothing from the Amazon States Language
//! crate (`asl` depends on this crate, never the reverse).
//!
//! API (stable; only additions from here on):
//! - [`is_expression`]: is this string a `{% ... %}` expression? [`strip_delimiters`] gives
//!   the text inside.
//! - [`Expression::parse`] parses the text of one `{% ... %}` string (with or without the
//!   delimiters) once, with Step Functions' rule against reading the context at the top level;
//!   [`Expression::parse_standard`] parses standard JSONata (tools and tests).
//!   [`Expression::evaluate`] runs it against a [`context::EvalContext`] and returns
//!   `Ok(None)` for JSONata's *undefined*. Bindings: `$states.input`, `$states.result`,
//!   `$states.errorOutput`, `$states.context`, every visible variable as `$name`, and the Step
//!   Functions functions `$partition`, `$range`, `$hash`, `$random`, `$uuid`, `$parse`.
//! - [`context`]: everything the evaluator reads from outside ([`context::EvalContext`]: input,
//!   context object and the entered time `$now()`/`$millis()` read from it, variables, result,
//!   error output, [`context::Entropy`]).
//! - [`error`]: [`JsonataError`], with the JSONata code ([`ErrorCode`]) as a field; its
//!   `Display` is the text users read (`"T0410: Argument 1 of function $sum ..."`). The ASL
//!   crate turns it into `States.QueryEvaluationError` (evaluation) or a definition
//!   diagnostic (parsing).
//! - [`stepfunctions`]: Base64, digests and UUIDs, shared with the `States.*` intrinsics.
//!
//! Files: `parse.rs` (a Pratt parser whose tree height is bounded), `parent.rs` (the parent
//! operator `%`, linked at parse time to the step that produces the parent), `eval.rs` (the
//! evaluator and the function library), `signature.rs` (built-in and lambda signatures),
//! `datetime.rs` and `number.rs` (the XPath date/time, integer and number pictures).
//!
//! Timestamps: `$now()`/`$millis()` read `State.EnteredTime` from the context object
//! ([`context::EvalContext::entered_millis`]); Step Functions' RFC 3339 timestamps are
//! parsed by `clock::parse_rfc3339_nanos`, the one parser Choice rules and Wait states use
//! too, and the calendar arithmetic is `clock`'s.
//!
//! Evaluation: JSONata's sequence rules over borrowed JSON (a path becomes a tuple stream at
//! its first step that binds `@`, `#` or a parent); transform copies, so input is never
//! mutated. Regexes mean what they mean in JavaScript: look-around and back-references run on
//! `fancy-regex` under a backtracking limit, the rest on the linear-time `regex` crate; regexes
//! and custom matcher functions share one matcher protocol.
//!
//! Invariants: the same expression, context and entropy always give the same result (the
//! decider that calls this must replay identically after a crash); no input can panic it or
//! hang it (bounded tree height, evaluation depth, stack use, work steps, range sizes and
//! regex backtracking); every error carries its JSONata code when the reference has one.
//!
//! Decision: own evaluator. Step Functions implements JSONata 2.0.6 (developer guide,
//! "Supported JSONata version": every 2.0.6 function and operator except `$eval`).
//! jsonata-rs (Stedi, 0.3.x) was evaluated: it re-parses the input from a string on every
//! call, binds `$random`/`$uuid`/`$now`/`$millis` to real randomness and the system clock
//! after user registrations (so they cannot be made deterministic, which this crate must
//! be), registers native functions only as plain `fn` pointers (no way to pass the
//! execution's entropy), pulls clap/chrono/rand/uuid/regress into a pure crate, and calls
//! itself incomplete. So this module implements the 2.0.6 language itself:
//! - paths with predicates, wildcards, `**`, `[]`, order-by `^( )` (a step of its own, over
//!   the whole sequence), grouping `expr{k: v}`, the tuple-stream operators `@` (context
//!   binding) and `#` (positional binding) with their variables visible to later steps,
//!   predicates, order-by and grouping, and the parent operator `%` (`parent`: resolved at
//!   parse time to the step whose input is the parent, as the reference does, including
//!   `%.%`, `%` in predicates, order-by terms and through block steps; S0217 where no step
//!   can provide the parent);
//! - every operator (arithmetic, comparison, `&`, `and`/`or`, `in`, `..` in array
//!   constructors, `? :`, `:=`, `~>` including function composition `$f ~> $g`), object and
//!   array constructors, blocks, lambdas with closures, partial application with `?`, the
//!   transform operator `| location | update [, delete] |` (a deep copy; the input is never
//!   modified), lambda type signatures `function($x)<n-n?:n>{...}` checked on every call
//!   (T0410/T0411/T0412; S0401/S0402 for malformed ones; not on partial applications, as in
//!   the reference), and regular expression literals with flags `i`/`m`: `fancy-regex`,
//!   which adds look-around and back-references (named too) to the `regex` crate's syntax
//!   and runs patterns without them on its linear-time engine; `\d`, `\w`, `\b`, `.`,
//!   `[^]`, `[]`, `\cX` and `^`/`$` under `m` are given JavaScript's meaning;
//! - JSONata's matcher protocol: a regex is a function returning
//!   `{match, start, end, groups, next}`, and any function that returns that shape (or
//!   undefined) can stand in for a regex in `$match`/`$contains`/`$split`/`$replace`
//!   (T1010 otherwise; D1004 for a later zero-length match, as in the reference);
//! - the whole 2.0.6 function library (string, numeric, aggregation, boolean, array,
//!   object, date/time, higher-order) with JSONata's argument signatures (`signature`:
//!   T0410/T0411/T0412, and the context value for a missing `-` argument), XPath pictures
//!   for `$formatNumber` (exponent, per-mille, sub-pictures, decimal-format options),
//!   `$formatInteger`/`$parseInteger` (digits, `w`/`W`/`Ww` words, `i`/`I` roman, `a`/`A`
//!   letters, ordinals) and `$fromMillis`/`$toMillis`/`$now` (`datetime`), plus the Step
//!   Functions functions `$partition`, `$range`, `$hash`, `$random(seed)`, `$uuid`, `$parse`.
//!
//! Errors are [`JsonataError`]s whose code is a field (`T0410`, `D3030`); the ASL crate
//! surfaces them as `States.QueryEvaluationError`. The differential test `tests/jsonata_oracle.rs` runs a
//! corpus covering every operator and function through jsonata 2.0.6 (npm) and this module
//! and requires agreement except for a short, checked list of deliberate differences.
//!
//! Known differences from jsonata-js 2.0.6 (those the corpus exercises are listed, with
//! their reasons, in the oracle test's `KNOWN_DIFFERENCES`): `$eval` is an error, as on AWS
//! ("use $parse"); results that are Infinity/NaN in jsonata-js are D1001 errors (or `null`
//! where JSON.stringify would print null); deep recursion through lambdas ends in U1001
//! (see Limits); where jsonata-js crashes with a JavaScript TypeError, this module gives a
//! JSONata error or leaves the value unchanged; regular expression
//! details JavaScript and the Rust engines do not share stay the engines' (Unicode `\s`
//! and case folding; a back-reference to a group not matched yet, which JavaScript
//! matches as empty, fails); a group that did not take part in a match is `null` in
//! `groups` (JSON's rendering of JavaScript's undefined). Limits: expression
//! nesting (200 levels, operators chained on one operand included: a syntax error), 1000
//! `%` per expression, evaluation depth and stack use, range size and total work are
//! bounded, and a regular expression search that backtracks may take at most 100,000
//! steps (patterns with look-around or back-references also cost more of the work
//! budget), so hostile input ends in an error instead of a crash or a hang.
//! Expressions that read the context at the top level (`$`, `$$`, a bare field name) are
//! rejected at parse time, as Step Functions does ([`Expression::parse_standard`] skips that
//! rule for tools and tests). `$now()`/`$millis()` read `$$.State.EnteredTime` (the crate
//! has no clock).

use serde_json::Value;

pub mod context;
pub mod error;
pub mod stepfunctions;

mod datetime;
mod eval;
mod number;
mod parent;
mod parse;
mod signature;

pub use error::{ErrorCode, JsonataError};
pub use parse::Node;

use context::EvalContext;

/// True when `text` is a JSONata expression string: it starts with `{%` and ends with `%}`
/// exactly. AWS does not trim: `" {% $x %} "` is a plain string (recorded in the conformance
/// case `BASE_LITERALS`).
pub fn is_expression(text: &str) -> bool {
    text.len() >= 4 && text.starts_with("{%") && text.ends_with("%}")
}

/// The expression text between `{%` and `%}` (or `text` itself when it has no delimiters).
pub fn strip_delimiters(text: &str) -> &str {
    if is_expression(text) {
        text[2..text.len() - 2].trim()
    } else {
        text
    }
}

/// A parsed JSONata expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expression {
    text: String,
    ast: Node,
}

impl Expression {
    /// Parses a JSONata expression, with or without the `{% %}` delimiters, refusing what Step
    /// Functions refuses: reading the context (`$`, `$$`, a bare field name) at the top level.
    pub fn parse(text: &str) -> Result<Expression, JsonataError> {
        let expression = Expression::parse_standard(text)?;
        if let Some(what) = parse::top_level_context_use(&expression.ast)? {
            return Err(JsonataError::uncoded(format!(
                "{what} cannot be used at the top level of an expression in Step Functions; read the state input with $states.input (e.g. $states.input.name)"
            )));
        }
        Ok(expression)
    }

    /// Parses like [`Expression::parse`] but without the Step Functions rule against reading
    /// the context (`$`, `$$`, bare field names) at the top level: standard JSONata, where
    /// `$` is the evaluation input. For tools and the differential test against the
    /// reference implementation; state machines use [`Expression::parse`].
    pub fn parse_standard(text: &str) -> Result<Expression, JsonataError> {
        let body = strip_delimiters(text);
        let ast = parse::parse(body)?;
        Ok(Expression {
            text: body.to_owned(),
            ast,
        })
    }

    /// Whether the expression reads `$states.<field>` anywhere (used by validation: AWS
    /// refuses `$states.errorOutput` outside a Catch at creation time).
    pub fn reads_states_field(&self, field: &str) -> bool {
        reads_states_field(&self.ast, field, 0)
    }

    /// The expression text (without delimiters).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Evaluates; `Ok(None)` is JSONata's undefined.
    pub fn evaluate(&self, ctx: &mut EvalContext<'_>) -> Result<Option<Value>, JsonataError> {
        eval::evaluate(&self.ast, ctx)
    }
}

/// The first step of `n` with its predicates, focus and index bindings peeled off.
fn step_core(mut n: &Node) -> &Node {
    loop {
        match n {
            Node::Filter(inner, _)
            | Node::KeepArray(inner)
            | Node::Focus(inner, _)
            | Node::Index(inner, _)
            | Node::Ancestor(inner, _) => n = inner,
            _ => return n,
        }
    }
}

/// Recursion is bounded: the parser limits a tree's height, and deeper trees are cut off
/// (validation only; nothing is evaluated).
fn reads_states_field(n: &Node, field: &str, depth: usize) -> bool {
    if depth > 1024 {
        return false;
    }
    let direct = match n {
        Node::Path(steps) => {
            matches!(steps.first().map(step_core), Some(Node::Var(v)) if v == "states")
                && matches!(steps.get(1).map(step_core), Some(Node::Name(f)) if f == field)
        }
        _ => false,
    };
    direct || n.any_child(|c| reads_states_field(c, field, depth + 1))
}
