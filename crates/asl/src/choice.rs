//! Choice rules: model, static validation, evaluation.
//!
//! API (stable; only additions from here on):
//! - [`ChoiceRule::parse`]`(value, pointer, top_level)` parses one entry of a Choice state's
//!   `Choices` array (top level: `Next`, `Comment`, `Assign`, `Output` are allowed and ignored
//!   here — the interpreter reads them) or a nested rule inside `And`/`Or`/`Not`. It returns
//!   every problem as a [`Diagnostic`] (pointer = `pointer` + the field), e.g. two comparison
//!   operators in one rule, a wrong operand type, a bad path, an unknown field.
//! - [`ChoiceRule::evaluate`] → `Result<bool, StatesError>` with AWS semantics: a comparison
//!   whose Variable holds another type is false; `IsPresent` is the only test that tolerates a
//!   missing Variable, any other raises `States.Runtime` "Invalid path '$.x': The choice
//!   state's condition path references an invalid value."; timestamps are RFC 3339 and compare
//!   as instants; `StringMatches` supports `*` and the escapes `\*` and `\\`.
//! - JSONata rules: `{"Condition": "{% ... %}", "Next": ...}`; the condition must yield a
//!   boolean, otherwise `States.QueryEvaluationError`.
//! - Timestamps are read by `clock::parse_rfc3339_nanos`, the one RFC 3339 parser (Step
//!   Functions' rules), which Wait states and JSONata use too.
//!
//! Source: "Choice workflow state" in the Step Functions developer guide.

use std::cmp::Ordering;

use serde_json::Value;

use crate::error::{Diagnostic, StatesError};
use crate::jsonata_template::{evaluate_field, parse_expression};
use crate::jsonpath::{EvalContext, JsonPath};
use jsonata::{Expression, is_expression};

/// A comparison operator family and direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// String comparison (ordinal).
    String,
    /// Numeric comparison.
    Numeric,
    /// Timestamp comparison (RFC 3339 instants).
    Timestamp,
    /// BooleanEquals.
    Boolean,
}

/// Comparison direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// Equals
    Eq,
    /// LessThan
    Lt,
    /// GreaterThan
    Gt,
    /// LessThanEquals
    Le,
    /// GreaterThanEquals
    Ge,
}

/// Type tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeTest {
    /// IsNull
    Null,
    /// IsPresent
    Present,
    /// IsNumeric
    Numeric,
    /// IsString
    String,
    /// IsBoolean
    Boolean,
    /// IsTimestamp
    Timestamp,
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A literal from the definition.
    Value(Value),
    /// A `*Path` operand.
    Path(JsonPath),
}

/// One Choice rule.
#[derive(Debug, Clone, PartialEq)]
pub enum ChoiceRule {
    /// `And: [...]`
    And(Vec<ChoiceRule>),
    /// `Or: [...]`
    Or(Vec<ChoiceRule>),
    /// `Not: {...}`
    Not(Box<ChoiceRule>),
    /// `Variable` + a comparison operator.
    Compare {
        /// The Variable path.
        variable: JsonPath,
        /// Operator family.
        kind: Kind,
        /// Direction.
        cmp: Cmp,
        /// Literal or path.
        operand: Operand,
    },
    /// `Variable` + `StringMatches`.
    Matches {
        /// The Variable path.
        variable: JsonPath,
        /// The pattern as written.
        pattern: String,
    },
    /// `Variable` + `IsNull`/`IsPresent`/...: `expected` is the boolean operand.
    Test {
        /// The Variable path.
        variable: JsonPath,
        /// Which test.
        test: TypeTest,
        /// The operand (`true`/`false`).
        expected: bool,
    },
    /// JSONata `Condition`.
    Condition(Expression),
}

const TOP_LEVEL_ONLY: &[&str] = &["Next", "Comment", "Assign", "Output"];

fn operator(name: &str) -> Option<(Kind, Cmp, bool)> {
    let (base, is_path) = match name.strip_suffix("Path") {
        Some(b) => (b, true),
        None => (name, false),
    };
    let (kind, rest) = if let Some(r) = base.strip_prefix("String") {
        (Kind::String, r)
    } else if let Some(r) = base.strip_prefix("Numeric") {
        (Kind::Numeric, r)
    } else if let Some(r) = base.strip_prefix("Timestamp") {
        (Kind::Timestamp, r)
    } else if let Some(r) = base.strip_prefix("Boolean") {
        (Kind::Boolean, r)
    } else {
        return None;
    };
    let cmp = match rest {
        "Equals" => Cmp::Eq,
        "LessThan" => Cmp::Lt,
        "GreaterThan" => Cmp::Gt,
        "LessThanEquals" => Cmp::Le,
        "GreaterThanEquals" => Cmp::Ge,
        _ => return None,
    };
    if kind == Kind::Boolean && cmp != Cmp::Eq {
        return None;
    }
    Some((kind, cmp, is_path))
}

fn type_test(name: &str) -> Option<TypeTest> {
    Some(match name {
        "IsNull" => TypeTest::Null,
        "IsPresent" => TypeTest::Present,
        "IsNumeric" => TypeTest::Numeric,
        "IsString" => TypeTest::String,
        "IsBoolean" => TypeTest::Boolean,
        "IsTimestamp" => TypeTest::Timestamp,
        _ => return None,
    })
}

/// Guards recursion on hostile, deeply nested rules.
const MAX_DEPTH: usize = 100;

impl ChoiceRule {
    /// Parses a rule at JSON pointer `pointer` (used in diagnostics).
    pub fn parse(
        value: &Value,
        pointer: &str,
        top_level: bool,
    ) -> Result<ChoiceRule, Vec<Diagnostic>> {
        let mut diags = Vec::new();
        let rule = parse_rule(value, pointer, top_level, 0, &mut diags);
        match rule {
            Some(r) if diags.is_empty() => Ok(r),
            _ => {
                if diags.is_empty() {
                    diags.push(Diagnostic::new(pointer, "invalid Choice rule"));
                }
                Err(diags)
            }
        }
    }

    /// Evaluates the rule.
    pub fn evaluate(&self, ctx: &mut EvalContext<'_>) -> Result<bool, StatesError> {
        match self {
            ChoiceRule::And(rules) => {
                for r in rules {
                    if !r.evaluate(ctx)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            ChoiceRule::Or(rules) => {
                for r in rules {
                    if r.evaluate(ctx)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            ChoiceRule::Not(r) => Ok(!r.evaluate(ctx)?),
            ChoiceRule::Test {
                variable,
                test,
                expected,
            } => {
                let found = variable.select(ctx);
                if *test == TypeTest::Present {
                    return Ok(found.is_some() == *expected);
                }
                let v = found.ok_or_else(|| invalid_path(variable))?;
                let is = match test {
                    TypeTest::Null => v.is_null(),
                    TypeTest::Numeric => v.is_number(),
                    TypeTest::String => v.is_string(),
                    TypeTest::Boolean => v.is_boolean(),
                    TypeTest::Timestamp => {
                        v.as_str().and_then(clock::parse_rfc3339_nanos).is_some()
                    }
                    TypeTest::Present => true,
                };
                Ok(is == *expected)
            }
            ChoiceRule::Matches { variable, pattern } => {
                let v = variable.select(ctx).ok_or_else(|| invalid_path(variable))?;
                Ok(v.as_str().is_some_and(|s| string_matches(s, pattern)))
            }
            ChoiceRule::Compare {
                variable,
                kind,
                cmp,
                operand,
            } => {
                let left = variable.select(ctx).ok_or_else(|| invalid_path(variable))?;
                let right = match operand {
                    Operand::Value(v) => std::borrow::Cow::Borrowed(v),
                    Operand::Path(p) => p.select(ctx).ok_or_else(|| invalid_path(p))?,
                };
                Ok(compare(*kind, *cmp, &left, &right))
            }
            ChoiceRule::Condition(expr) => {
                let v = evaluate_field(expr, ctx, "Condition")?;
                match v {
                    Value::Bool(b) => Ok(b),
                    other => Err(StatesError::query(format!(
                        "The JSONata expression '{}' specified for the field 'Condition' returned an unexpected data type: expected a boolean but got {}",
                        expr.as_str(),
                        crate::jsonpath::compact(&other)
                    ))),
                }
            }
        }
    }
}

fn invalid_path(p: &JsonPath) -> StatesError {
    StatesError::runtime(format!(
        "Invalid path '{}': The choice state's condition path references an invalid value.",
        p.as_str()
    ))
}

fn compare(kind: Kind, cmp: Cmp, left: &Value, right: &Value) -> bool {
    let ord: Option<Ordering> = match kind {
        Kind::String => match (left, right) {
            (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
            _ => None,
        },
        Kind::Numeric => match (left.as_f64(), right.as_f64()) {
            (Some(a), Some(b)) if left.is_number() && right.is_number() => a.partial_cmp(&b),
            _ => None,
        },
        Kind::Timestamp => match (
            left.as_str().and_then(clock::parse_rfc3339_nanos),
            right.as_str().and_then(clock::parse_rfc3339_nanos),
        ) {
            (Some(a), Some(b)) => Some(a.cmp(&b)),
            _ => None,
        },
        Kind::Boolean => match (left, right) {
            (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            _ => None,
        },
    };
    let Some(ord) = ord else {
        return false;
    };
    match cmp {
        Cmp::Eq => ord == Ordering::Equal,
        Cmp::Lt => ord == Ordering::Less,
        Cmp::Gt => ord == Ordering::Greater,
        Cmp::Le => ord != Ordering::Greater,
        Cmp::Ge => ord != Ordering::Less,
    }
}

/// StringMatches: `*` matches any run of characters; `\*` is a literal star and `\\` a
/// literal backslash.
pub fn string_matches(text: &str, pattern: &str) -> bool {
    #[derive(PartialEq)]
    enum Tok {
        Star,
        Ch(char),
    }
    let mut toks = Vec::new();
    let mut it = pattern.chars();
    while let Some(c) = it.next() {
        match c {
            '\\' => match it.next() {
                Some(e) => toks.push(Tok::Ch(e)),
                None => toks.push(Tok::Ch('\\')),
            },
            '*' => toks.push(Tok::Star),
            c => toks.push(Tok::Ch(c)),
        }
    }
    let s: Vec<char> = text.chars().collect();
    // Iterative wildcard matching with backtracking to the last star: O(n*m) worst case,
    // no recursion.
    let (mut si, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match toks.get(pi) {
            Some(Tok::Ch(c)) if *c == s[si] => {
                si += 1;
                pi += 1;
            }
            Some(Tok::Star) => {
                star = Some((pi, si));
                pi += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    while toks.get(pi) == Some(&Tok::Star) {
        pi += 1;
    }
    pi == toks.len()
}

fn parse_rule(
    value: &Value,
    pointer: &str,
    top_level: bool,
    depth: usize,
    diags: &mut Vec<Diagnostic>,
) -> Option<ChoiceRule> {
    if depth > MAX_DEPTH {
        diags.push(Diagnostic::new(
            pointer,
            format!("Choice rules nested more than {MAX_DEPTH} deep"),
        ));
        return None;
    }
    let Some(obj) = value.as_object() else {
        diags.push(Diagnostic::new(
            pointer,
            "a Choice rule must be a JSON object",
        ));
        return None;
    };
    let at = |k: &str| format!("{pointer}/{}", crate::error::pointer_token(k));
    let mut ops: Vec<&str> = Vec::new();
    for k in obj.keys() {
        let k = k.as_str();
        if k == "Variable" {
            continue;
        }
        if TOP_LEVEL_ONLY.contains(&k) {
            if !top_level && k != "Comment" {
                diags.push(Diagnostic::new(
                    at(k),
                    format!(
                        "'{k}' is only allowed in a top-level Choice rule, not inside And/Or/Not"
                    ),
                ));
            }
            continue;
        }
        if matches!(k, "And" | "Or" | "Not" | "Condition" | "StringMatches")
            || operator(k).is_some()
            || type_test(k).is_some()
        {
            ops.push(k);
        } else {
            diags.push(Diagnostic::new(
                at(k),
                format!("unknown field '{k}' in a Choice rule"),
            ));
        }
    }
    if top_level && !obj.contains_key("Next") {
        diags.push(Diagnostic::new(
            pointer,
            "a top-level Choice rule must have 'Next'",
        ));
    }
    let op = match ops.as_slice() {
        [one] => *one,
        [] => {
            diags.push(Diagnostic::new(
                pointer,
                "a Choice rule needs exactly one comparison operator (e.g. StringEquals), And, Or, Not or Condition",
            ));
            return None;
        }
        many => {
            diags.push(Diagnostic::new(
                pointer,
                format!(
                    "a Choice rule must have exactly one operator, found: {}",
                    many.join(", ")
                ),
            ));
            return None;
        }
    };
    let operand = &obj[op];
    let here = at(op);
    match op {
        "And" | "Or" => {
            if obj.contains_key("Variable") {
                diags.push(Diagnostic::new(
                    at("Variable"),
                    format!("'{op}' rules take no Variable"),
                ));
            }
            let Some(items) = operand.as_array().filter(|a| !a.is_empty()) else {
                diags.push(Diagnostic::new(
                    here,
                    format!("'{op}' must be a non-empty array of Choice rules"),
                ));
                return None;
            };
            let rules: Vec<ChoiceRule> = items
                .iter()
                .enumerate()
                .filter_map(|(i, r)| parse_rule(r, &format!("{here}/{i}"), false, depth + 1, diags))
                .collect();
            if rules.len() != items.len() {
                return None;
            }
            Some(if op == "And" {
                ChoiceRule::And(rules)
            } else {
                ChoiceRule::Or(rules)
            })
        }
        "Not" => {
            if obj.contains_key("Variable") {
                diags.push(Diagnostic::new(
                    at("Variable"),
                    "'Not' rules take no Variable",
                ));
            }
            parse_rule(operand, &here, false, depth + 1, diags)
                .map(|r| ChoiceRule::Not(Box::new(r)))
        }
        "Condition" => {
            if obj.contains_key("Variable") {
                diags.push(Diagnostic::new(
                    at("Variable"),
                    "'Condition' rules take no Variable",
                ));
            }
            match operand {
                Value::Bool(b) => parse_expression(if *b { "true" } else { "false" })
                    .ok()
                    .map(ChoiceRule::Condition),
                Value::String(s) if is_expression(s) => match parse_expression(s) {
                    Ok(e) => Some(ChoiceRule::Condition(e)),
                    Err(e) => {
                        diags.push(Diagnostic::new(here, e.to_string()));
                        None
                    }
                },
                _ => {
                    diags.push(Diagnostic::new(
                        here,
                        "'Condition' must be a JSONata expression string '{% ... %}' or a boolean",
                    ));
                    None
                }
            }
        }
        _ => {
            let variable = match obj.get("Variable") {
                Some(Value::String(s)) => match JsonPath::parse(s) {
                    Ok(p) => p,
                    Err(e) => {
                        diags.push(Diagnostic::new(at("Variable"), e.to_string()));
                        return None;
                    }
                },
                Some(_) => {
                    diags.push(Diagnostic::new(
                        at("Variable"),
                        "'Variable' must be a JSONPath string",
                    ));
                    return None;
                }
                None => {
                    diags.push(Diagnostic::new(
                        pointer,
                        format!("'{op}' needs a 'Variable' (a JSONPath)"),
                    ));
                    return None;
                }
            };
            if op == "StringMatches" {
                let Some(p) = operand.as_str() else {
                    diags.push(Diagnostic::new(
                        here,
                        "'StringMatches' must be a string pattern",
                    ));
                    return None;
                };
                return Some(ChoiceRule::Matches {
                    variable,
                    pattern: p.to_owned(),
                });
            }
            if let Some(test) = type_test(op) {
                let Some(b) = operand.as_bool() else {
                    diags.push(Diagnostic::new(
                        here,
                        format!("'{op}' must be true or false"),
                    ));
                    return None;
                };
                return Some(ChoiceRule::Test {
                    variable,
                    test,
                    expected: b,
                });
            }
            let (kind, cmp, is_path) = operator(op)?;
            let operand = if is_path {
                match operand.as_str().map(JsonPath::parse) {
                    Some(Ok(p)) => Operand::Path(p),
                    Some(Err(e)) => {
                        diags.push(Diagnostic::new(here, e.to_string()));
                        return None;
                    }
                    None => {
                        diags.push(Diagnostic::new(
                            here,
                            format!("'{op}' must be a JSONPath string"),
                        ));
                        return None;
                    }
                }
            } else {
                let ok = match kind {
                    Kind::String => operand.is_string(),
                    Kind::Numeric => operand.is_number(),
                    Kind::Boolean => operand.is_boolean(),
                    Kind::Timestamp => operand
                        .as_str()
                        .and_then(clock::parse_rfc3339_nanos)
                        .is_some(),
                };
                if !ok {
                    let want = match kind {
                        Kind::String => "a string",
                        Kind::Numeric => "a number",
                        Kind::Boolean => "true or false",
                        Kind::Timestamp => {
                            "an RFC 3339 timestamp string such as \"2016-03-14T01:59:00Z\""
                        }
                    };
                    diags.push(Diagnostic::new(here, format!("'{op}' must be {want}")));
                    return None;
                }
                Operand::Value(operand.clone())
            };
            Some(ChoiceRule::Compare {
                variable,
                kind,
                cmp,
                operand,
            })
        }
    }
}
