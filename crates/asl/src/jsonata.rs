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
//! Decision: own evaluator. jsonata-rs (Stedi, 0.3.x) was evaluated: it re-parses the input
//! from a string on every call, binds `$random`/`$uuid`/`$now`/`$millis` to real randomness and
//! the system clock after user registrations (so they cannot be made deterministic, which this
//! crate must be), registers native functions only as plain `fn` pointers (no way to pass the
//! execution's entropy), pulls clap/chrono/rand/uuid/regress into a pure crate, and calls itself
//! incomplete. Step Functions usage is dominated by paths, predicates, operators, object and
//! array constructors, conditionals, variable binding and the standard function library; this
//! module implements those: paths with predicates, wildcards and `**`, order-by `^( )`,
//! grouping `expr{k: v}`, every operator, object/array constructors, ranges, conditionals,
//! blocks and `:=` bindings, lambdas with closures, `~>`, regular expression literals (via the
//! `regex` crate: JavaScript syntax where the two agree, flags `i`/`m`) and the function
//! library listed in `eval::BUILTINS`. Limits: expression nesting (200 levels, operators
//! chained on one operand included: a syntax error), evaluation depth and stack use, range
//! size and total work are bounded, so hostile input ends in an error instead of a crash. `$eval` is
//! an error, as on AWS ("use $parse"). Function signatures `<...>` are accepted but not
//! checked. Not implemented: partial application `?`, the `@`/`#` binding operators, date pictures (`$fromMillis`/`$now` with a
//! picture), exponent/per-mille pictures in `$formatNumber`, word pictures in
//! `$formatInteger`/`$parseInteger`, the transform operator `| ... |`.
//! Expressions that read the context at the top level (`$`, `$$`, a bare field name) are
//! rejected at parse time, as Step Functions does.
//! `$now()`/`$millis()` read `$$.State.EnteredTime` (the crate has no clock).

use serde_json::Value;

use crate::error::{Diagnostic, StatesError, SyntaxError, pointer_token};
use crate::jsonpath::EvalContext;

mod eval;
mod parse;

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
