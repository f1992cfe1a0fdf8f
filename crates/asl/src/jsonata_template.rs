//! JSONata in ASL fields: the `jsonata` crate's expressions as `QueryLanguage: JSONata`
//! states use them, with AWS's error texts.
//!
//! API (stable; only additions from here on):
//! - [`parse_expression`]: [`Expression::parse`] with a parse error as the definition's
//!   [`SyntaxError`] ("invalid JSONata expression '...': ...").
//! - [`evaluate_field`]: evaluates for a named field; undefined and evaluation errors become
//!   `States.QueryEvaluationError` with AWS's text, the JSONata error (code included) quoted.
//! - [`JsonataTemplate::compile`] takes a field's JSON value (Arguments, Output, Assign, Items,
//!   a Choice Condition, Wait Seconds/Timestamp, ...) and the field name used in error texts
//!   (`"Output"`, `"Assign"`); every string that is a `{% %}` expression is evaluated by
//!   [`JsonataTemplate::render`], anything else is copied. An expression that yields
//!   undefined raises `States.QueryEvaluationError` "The JSONata expression '$x' specified
//!   for the field 'Output/result' returned nothing (undefined)."

use jsonata::{Expression, is_expression, strip_delimiters};
use serde_json::Value;

use crate::error::{Diagnostic, StatesError, SyntaxError, pointer_token};
use crate::jsonpath::EvalContext;

/// Parses a `{% %}` string (or bare expression text) as a definition does: errors name the
/// expression ("invalid JSONata expression '1 +': ...").
pub fn parse_expression(text: &str) -> Result<Expression, SyntaxError> {
    Expression::parse(text)
        .map_err(|e| SyntaxError::new("JSONata expression", strip_delimiters(text), e.to_string()))
}

/// Evaluates `expr` for a named field (e.g. `"Output/result"`, `"Condition"`): undefined is an
/// error with AWS's text, and evaluation errors name the field.
pub fn evaluate_field(
    expr: &Expression,
    ctx: &mut EvalContext<'_>,
    field: &str,
) -> Result<Value, StatesError> {
    match expr.evaluate(ctx) {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(StatesError::query(format!(
            "The JSONata expression '{}' specified for the field '{field}' returned nothing (undefined).",
            expr.as_str()
        ))),
        Err(e) => Err(StatesError::query(format!(
            "The JSONata expression '{}' specified for the field '{field}' threw an error during evaluation: {e}",
            expr.as_str()
        ))),
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
        Value::String(s) if is_expression(s) => match parse_expression(s) {
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
        TNode::Expr { field, expr } => evaluate_field(expr, ctx, field)?,
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
