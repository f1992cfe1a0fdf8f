//! JSONPath-mode payload templates: Parameters, ResultSelector, ItemSelector, legacy Map
//! Parameters, and JSONPath-mode Assign.
//!
//! API (stable; only additions from here on):
//! - [`Template::compile`] takes the field's JSON value once, at load time. Keys ending in
//!   `.$` must hold a path (`$...`), a context path (`$$...`), a variable reference
//!   (`$name...`) or an intrinsic call (`States.X(...)`); every bad one is reported as a
//!   [`Diagnostic`] whose `path` is a JSON pointer relative to the field (e.g. `/a/b.$`): prefix
//!   it with [`Diagnostic::under`].
//! - [`Template::render`] builds the payload for one state run; the `.$` suffix is dropped
//!   from output keys. A path that finds nothing raises `States.Runtime` with AWS's text
//!   "The JSONPath '$.x' specified for the field 'x.$' could not be found in the input '...'".
//! - [`PayloadExpr`]: one `.$`-style value on its own (a path or an intrinsic call), for
//!   fields like Fail's ErrorPath/CausePath that accept either.
//!
//! Static parts of the template are stored as ready JSON, so rendering a mostly-static
//! template is a clone, and paths are never re-parsed at run time.

use serde_json::{Map, Value};

use crate::error::{Diagnostic, StatesError, SyntaxError, pointer_token};
use crate::intrinsics::{IntrinsicCall, looks_like_intrinsic};
use crate::jsonpath::{EvalContext, JsonPath};

/// A `.$` value: a path or an intrinsic call.
#[derive(Debug, Clone, PartialEq)]
pub enum PayloadExpr {
    /// `$...`, `$$...` or `$name...`.
    Path(JsonPath),
    /// `States.X(...)`.
    Intrinsic(IntrinsicCall),
}

impl PayloadExpr {
    /// Parses a path or an intrinsic call.
    pub fn parse(text: &str) -> Result<PayloadExpr, SyntaxError> {
        if looks_like_intrinsic(text) {
            IntrinsicCall::parse(text).map(PayloadExpr::Intrinsic)
        } else if text.starts_with('$') {
            JsonPath::parse(text).map(PayloadExpr::Path)
        } else {
            Err(SyntaxError {
                kind: "JSONPath",
                expression: text.to_owned(),
                message: "expected a JSONPath ('$...'), a context path ('$$...'), a variable ('$name') or an intrinsic function call ('States.X(...)')".into(),
            })
        }
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        match self {
            PayloadExpr::Path(p) => p.as_str(),
            PayloadExpr::Intrinsic(c) => c.as_str(),
        }
    }

    /// Evaluates; `field` names the field in AWS's "could not be found" text.
    pub fn evaluate(&self, ctx: &mut EvalContext<'_>, field: &str) -> Result<Value, StatesError> {
        match self {
            PayloadExpr::Path(p) => match p.select(ctx) {
                Some(v) => Ok(v.into_owned()),
                None => Err(p.not_found_in_field(field, ctx.input)),
            },
            PayloadExpr::Intrinsic(c) => c.evaluate(ctx, field),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// A subtree with no `.$` keys anywhere: emitted as is.
    Static(Value),
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
    /// A `.$` entry; `field` is the key as written (with `.$`), for error texts.
    Dynamic {
        field: String,
        expr: PayloadExpr,
    },
}

/// A compiled payload template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    root: Node,
}

/// Guards recursion on hostile, deeply nested templates.
const MAX_DEPTH: usize = 512;

impl Template {
    /// Compiles a template, reporting every bad `.$` entry.
    pub fn compile(value: &Value) -> Result<Template, Vec<Diagnostic>> {
        let mut diags = Vec::new();
        let root = compile_node(value, "", 0, &mut diags);
        if diags.is_empty() {
            Ok(Template { root })
        } else {
            Err(diags)
        }
    }

    /// True when the template has no `.$` entries (rendering is a plain clone).
    pub fn is_static(&self) -> bool {
        matches!(self.root, Node::Static(_))
    }

    /// Renders the payload against the context.
    pub fn render(&self, ctx: &mut EvalContext<'_>) -> Result<Value, StatesError> {
        render_node(&self.root, ctx)
    }

    /// Every expression in the template with its output key path (for validation and tools).
    pub fn expressions(&self) -> Vec<&PayloadExpr> {
        let mut out = Vec::new();
        collect(&self.root, &mut out);
        out
    }
}

fn collect<'a>(node: &'a Node, out: &mut Vec<&'a PayloadExpr>) {
    match node {
        Node::Static(_) => {}
        Node::Object(entries) => entries.iter().for_each(|(_, n)| collect(n, out)),
        Node::Array(items) => items.iter().for_each(|n| collect(n, out)),
        Node::Dynamic { expr, .. } => out.push(expr),
    }
}

fn has_dynamic(value: &Value, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    match value {
        Value::Object(m) => m
            .iter()
            .any(|(k, v)| k.ends_with(".$") || has_dynamic(v, depth + 1)),
        Value::Array(a) => a.iter().any(|v| has_dynamic(v, depth + 1)),
        _ => false,
    }
}

fn compile_node(value: &Value, pointer: &str, depth: usize, diags: &mut Vec<Diagnostic>) -> Node {
    if depth > MAX_DEPTH {
        diags.push(Diagnostic::new(
            pointer,
            format!("the template is nested more than {MAX_DEPTH} levels deep"),
        ));
        return Node::Static(Value::Null);
    }
    if !has_dynamic(value, depth) {
        return Node::Static(value.clone());
    }
    match value {
        Value::Object(m) => {
            let mut entries = Vec::with_capacity(m.len());
            for (k, v) in m {
                let here = format!("{pointer}/{}", pointer_token(k));
                if let Some(out_key) = k.strip_suffix(".$") {
                    let Some(text) = v.as_str() else {
                        diags.push(Diagnostic::new(
                            here,
                            format!(
                                "the value of field '{k}' must be a string holding a JSONPath or an intrinsic function call (keys ending in '.$' are evaluated)"
                            ),
                        ));
                        continue;
                    };
                    match PayloadExpr::parse(text) {
                        Ok(expr) => entries.push((
                            out_key.to_owned(),
                            Node::Dynamic {
                                field: k.clone(),
                                expr,
                            },
                        )),
                        Err(e) => diags.push(Diagnostic::new(
                            here,
                            format!(
                                "field '{k}' is not a valid JSONPath or intrinsic function call: {e}"
                            ),
                        )),
                    }
                } else {
                    entries.push((k.clone(), compile_node(v, &here, depth + 1, diags)));
                }
            }
            Node::Object(entries)
        }
        Value::Array(a) => Node::Array(
            a.iter()
                .enumerate()
                .map(|(i, v)| compile_node(v, &format!("{pointer}/{i}"), depth + 1, diags))
                .collect(),
        ),
        other => Node::Static(other.clone()),
    }
}

fn render_node(node: &Node, ctx: &mut EvalContext<'_>) -> Result<Value, StatesError> {
    Ok(match node {
        Node::Static(v) => v.clone(),
        Node::Object(entries) => {
            let mut m = Map::with_capacity(entries.len());
            for (k, n) in entries {
                m.insert(k.clone(), render_node(n, ctx)?);
            }
            Value::Object(m)
        }
        Node::Array(items) => Value::Array(
            items
                .iter()
                .map(|n| render_node(n, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Node::Dynamic { field, expr } => expr.evaluate(ctx, field)?,
    })
}
