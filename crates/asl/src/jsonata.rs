//! JSONata for `QueryLanguage: JSONata` states.
//!
//! API (stable; only additions from here on):
//! - [`is_expression`]: is this string a `{% ... %}` expression?
//! - [`Expression::parse`] parses the text of one `{% ... %}` string (with or without the
//!   delimiters) once; [`Expression::evaluate`] runs it against an [`EvalContext`] and returns
//!   `Ok(None)` for JSONata's *undefined*. Bindings: `$states.input`, `$states.result`,
//!   `$states.errorOutput`, `$states.context`, every visible variable as `$name`, and the Step
//!   Functions functions `$partition`, `$range`, `$hash`, `$random`, `$uuid`, `$parse`.
//! - [`JsonataTemplate::compile`] takes a field's JSON value (Arguments, Output, Assign, Items,
//!   a Choice Condition, Wait Seconds/Timestamp, ...) and the field name used in error texts
//!   (`"Output"`, `"Assign"`); every string that is a `{% %}` expression is evaluated by
//!   [`JsonataTemplate::render`], anything else is copied. An expression that yields
//!   undefined raises `States.QueryEvaluationError` "The JSONata expression '$x' specified
//!   for the field 'Output/result' returned nothing (undefined)."
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
//! Evaluator errors carry JSONata's codes (`T0410: ...`, `D3030: ...`) and surface as
//! `States.QueryEvaluationError`. The differential test `tests/jsonata_oracle.rs` runs a
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

use crate::error::{Diagnostic, StatesError, SyntaxError, pointer_token};
use crate::jsonpath::EvalContext;

mod datetime;
mod eval;
mod number;
mod parent;
mod parse;
mod signature;

pub use parse::Node;

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
    /// Parses a JSONata expression, with or without the `{% %}` delimiters.
    pub fn parse(text: &str) -> Result<Expression, SyntaxError> {
        let body = strip_delimiters(text);
        let ast =
            parse::parse(body).map_err(|m| SyntaxError::new("JSONata expression", body, m))?;
        let top_use = parse::top_level_context_use(&ast)
            .map_err(|m| SyntaxError::new("JSONata expression", body, m))?;
        if let Some(what) = top_use {
            return Err(SyntaxError::new(
                "JSONata expression",
                body,
                format!(
                    "{what} cannot be used at the top level of an expression in Step Functions; read the state input with $states.input (e.g. $states.input.name)"
                ),
            ));
        }
        Ok(Expression {
            text: body.to_owned(),
            ast,
        })
    }

    /// Parses like [`Expression::parse`] but without the Step Functions rule against reading
    /// the context (`$`, `$$`, bare field names) at the top level: standard JSONata, where
    /// `$` is the evaluation input. For tools and the differential test against the
    /// reference implementation; state machines use [`Expression::parse`].
    pub fn parse_standard(text: &str) -> Result<Expression, SyntaxError> {
        let body = strip_delimiters(text);
        let ast =
            parse::parse(body).map_err(|m| SyntaxError::new("JSONata expression", body, m))?;
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

    /// Evaluates; `Ok(None)` is JSONata's undefined. Errors are
    /// `States.QueryEvaluationError` whose cause names the expression (the caller adds the
    /// field with [`Expression::evaluate_field`] when it wants AWS's full text).
    pub fn evaluate(&self, ctx: &mut EvalContext<'_>) -> Result<Option<Value>, StatesError> {
        eval::evaluate(&self.ast, ctx).map_err(|e| {
            StatesError::query(format!(
                "The JSONata expression '{}' could not be evaluated: {e}",
                self.text
            ))
        })
    }

    /// Evaluates for a named field (e.g. `"Output/result"`, `"Condition"`): undefined is an
    /// error with AWS's text, and evaluation errors name the field.
    pub fn evaluate_field(
        &self,
        ctx: &mut EvalContext<'_>,
        field: &str,
    ) -> Result<Value, StatesError> {
        match eval::evaluate(&self.ast, ctx) {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(StatesError::query(format!(
                "The JSONata expression '{}' specified for the field '{field}' returned nothing (undefined).",
                self.text
            ))),
            Err(e) => Err(StatesError::query(format!(
                "The JSONata expression '{}' specified for the field '{field}' threw an error during evaluation: {e}",
                self.text
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum TNode {
    Static(Value),
    Expr { field: String, expr: Expression },
    Object(Vec<(String, TNode)>),
    Array(Vec<TNode>),
}

/// A JSON value whose `{% %}` strings are evaluated (JSONata-mode Arguments, Output, Assign,
/// Items, Condition, Seconds, Timestamp, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct JsonataTemplate {
    root: TNode,
}

const MAX_DEPTH: usize = 512;

impl JsonataTemplate {
    /// Compiles `value`; `field` is the top-level field name used in error texts (nested
    /// fields become `field/key/...`). Diagnostic pointers are relative to the field.
    pub fn compile(value: &Value, field: &str) -> Result<JsonataTemplate, Vec<Diagnostic>> {
        let mut diags = Vec::new();
        let root = compile_t(value, field, "", 0, &mut diags);
        if diags.is_empty() {
            Ok(JsonataTemplate { root })
        } else {
            Err(diags)
        }
    }

    /// True when nothing in the template is an expression.
    pub fn is_static(&self) -> bool {
        matches!(self.root, TNode::Static(_))
    }

    /// Evaluates every expression and builds the value.
    pub fn render(&self, ctx: &mut EvalContext<'_>) -> Result<Value, StatesError> {
        render_t(&self.root, ctx)
    }
}

fn compile_t(
    value: &Value,
    field: &str,
    pointer: &str,
    depth: usize,
    diags: &mut Vec<Diagnostic>,
) -> TNode {
    if depth > MAX_DEPTH {
        diags.push(Diagnostic::new(pointer, "value nested too deeply"));
        return TNode::Static(Value::Null);
    }
    match value {
        Value::String(s) if is_expression(s) => match Expression::parse(s) {
            Ok(expr) => TNode::Expr {
                field: field.to_owned(),
                expr,
            },
            Err(e) => {
                diags.push(Diagnostic::new(pointer, e.to_string()));
                TNode::Static(Value::Null)
            }
        },
        Value::Object(m) => {
            let entries: Vec<(String, TNode)> = m
                .iter()
                .map(|(k, v)| {
                    let sub_field = format!("{field}/{k}");
                    let sub_ptr = format!("{pointer}/{}", pointer_token(k));
                    (
                        k.clone(),
                        compile_t(v, &sub_field, &sub_ptr, depth + 1, diags),
                    )
                })
                .collect();
            if entries.iter().all(|(_, n)| matches!(n, TNode::Static(_))) {
                TNode::Static(value.clone())
            } else {
                TNode::Object(entries)
            }
        }
        Value::Array(a) => {
            let items: Vec<TNode> = a
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    compile_t(
                        v,
                        &format!("{field}[{i}]"),
                        &format!("{pointer}/{i}"),
                        depth + 1,
                        diags,
                    )
                })
                .collect();
            if items.iter().all(|n| matches!(n, TNode::Static(_))) {
                TNode::Static(value.clone())
            } else {
                TNode::Array(items)
            }
        }
        other => TNode::Static(other.clone()),
    }
}

fn render_t(node: &TNode, ctx: &mut EvalContext<'_>) -> Result<Value, StatesError> {
    Ok(match node {
        TNode::Static(v) => v.clone(),
        TNode::Expr { field, expr } => expr.evaluate_field(ctx, field)?,
        TNode::Object(entries) => {
            let mut m = serde_json::Map::with_capacity(entries.len());
            for (k, n) in entries {
                m.insert(k.clone(), render_t(n, ctx)?);
            }
            Value::Object(m)
        }
        TNode::Array(items) => Value::Array(
            items
                .iter()
                .map(|n| render_t(n, ctx))
                .collect::<Result<_, _>>()?,
        ),
    })
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
