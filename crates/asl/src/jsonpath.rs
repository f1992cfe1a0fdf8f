//! JSONPath as Step Functions uses it (Jayway JsonPath syntax), plus the evaluation context
//! shared by every expression kind.
//!
//! API (stable; only additions from here on):
//! - [`EvalContext`], [`Variables`], [`Entropy`], [`SplitMix64`]: what an expression sees while
//!   a state runs (input `$`, context object `$$`, variables `$name`, result, error output,
//!   randomness), defined once in `jsonata::context` and shared by every expression kind.
//! - [`JsonPath::parse`] → [`JsonPath`] (root `$`, `$$` or `$name`; `.name`, `['name']`,
//!   `[n]`, `[-n]`, `[a,b]`, `[*]`, `..`, `[start:end:step]`, `[?(@.x > 1 && @.y)]`).
//!   [`JsonPath::select`] returns `None` when a *definite* path finds nothing (callers turn
//!   that into the AWS error with [`JsonPath::not_found_in_field`] or
//!   [`JsonPath::not_found_invalid_path`]); an *indefinite* path (wildcards, slices, filters,
//!   `..`, unions) returns an array of the matches, as Jayway does — but, as in Jayway, a
//!   missing `.name` before the first indefinite segment (`$.nothing[*]`) is not found
//!   (`None`), not `[]`. A multi-property leaf (`$['a','b']`) merges the properties that
//!   exist into one object (Jayway's "multiPropertyMergeCase"; definite). Limits: filters
//!   nest at most 32 levels (brackets, `!`, `&&`, `||`: a syntax error), and one selection
//!   visits at most a million nodes (repeated `..` multiplies matches); past that `select`
//!   returns `None`, so the caller reports the path as not found instead of running for hours.
//! - [`ReferencePath`]: the restricted form for ResultPath/ItemsPath/InputPath-style fields
//!   (`$`, `.name`, `['name']`, `[n]` only); [`ReferencePath::set`] implements ResultPath's
//!   merge, raising `States.ResultPathMatchFailure` when the target is not an object/array.
//!
//! Which type for which JSONPath-mode field (as AWS accepts them):
//! - ResultPath: [`ReferencePath`] (`$`-rooted and definite; [`ReferencePath::set`]).
//! - InputPath, OutputPath, ItemsPath, Choice `Variable`/`*Path` operands and the `*Path`
//!   fields that read a value (SecondsPath, TimestampPath, MaxConcurrencyPath,
//!   ToleratedFailureCountPath/PercentagePath, TimeoutSecondsPath, HeartbeatSecondsPath):
//!   [`JsonPath`] — AWS accepts `$$` and `$var` roots there (the conformance case
//!   `MAP_STATE_REFERENCE_IN_MAX_CONCURRENCY_PATH` uses `"MaxConcurrencyPath": "$maxConcurrency"`).
//! - Fail `ErrorPath`/`CausePath`: [`crate::template::PayloadExpr`], because they also accept
//!   intrinsic calls (conformance case `test_state_fail_intrinsic`).
//!
//! Selection borrows from the input whenever the path is definite: no cloning on the hot path
//! (about 30 million definite selections per second on one core in release builds).

use std::borrow::Cow;

use serde_json::Value;

use crate::error::{StatesError, SyntaxError};

/// The evaluation context is the JSONata crate's: one definition shared by JSONPath, the
/// intrinsic functions, payload templates and JSONata.
pub use jsonata::context::{Entropy, EvalContext, SplitMix64, Variables};

/// What a path starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRoot {
    /// `$`: the state's effective input.
    Input,
    /// `$$`: the context object.
    Context,
    /// `$name`: a variable.
    Variable(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Name(String),
    Index(i64),
    Wildcard,
    Names(Vec<String>),
    Indexes(Vec<i64>),
    Slice(Option<i64>, Option<i64>, Option<i64>),
    Filter(Box<Filter>),
    /// `..` followed by the segment applied at every level.
    Descendant(Box<Segment>),
}

impl Segment {
    fn is_definite(&self) -> bool {
        matches!(self, Segment::Name(_) | Segment::Index(_))
    }
}

/// A parsed JSONPath (compile once, select many times).
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    text: String,
    root: PathRoot,
    segments: Vec<Segment>,
    definite: bool,
}

/// Guards recursion when walking arbitrarily deep values with `..`.
const MAX_DEPTH: usize = 1000;

impl JsonPath {
    /// Parses a path starting with `$`, `$$` or `$name`.
    pub fn parse(text: &str) -> Result<JsonPath, SyntaxError> {
        let err = |m: String| SyntaxError::new("JSONPath", text, m);
        let bytes = text.as_bytes();
        if bytes.first() != Some(&b'$') {
            return Err(err("a path must start with '$'".into()));
        }
        let (root, start) = if bytes.get(1) == Some(&b'$') {
            (PathRoot::Context, 2)
        } else if text[1..].chars().next().is_some_and(is_variable_start) {
            // Variable names are Unicode identifiers (`validate` checks the assigned ones);
            // `_` may start a reference so that the error names the unassigned variable.
            let end = text[1..]
                .char_indices()
                .skip(1)
                .find(|&(_, c)| !unicode_ident::is_xid_continue(c))
                .map_or(text.len(), |(i, _)| 1 + i);
            (PathRoot::Variable(text[1..end].to_owned()), end)
        } else {
            (PathRoot::Input, 1)
        };
        let mut cur = Cursor {
            text,
            pos: start,
            depth: 0,
        };
        let segments = cur.segments(false).map_err(err)?;
        if cur.pos < text.len() {
            return Err(err(format!(
                "unexpected '{}' at offset {}",
                cur.rest().chars().next().unwrap_or(' '),
                cur.pos
            )));
        }
        // Jayway's `PropertyPathToken.isTokenDefinite`: a multi-property token at the leaf
        // ("multiPropertyMergeCase") is definite — it yields one merged object.
        let definite = match segments.split_last() {
            Some((Segment::Names(_), prefix)) => prefix.iter().all(Segment::is_definite),
            _ => segments.iter().all(Segment::is_definite),
        };
        Ok(JsonPath {
            text: text.to_owned(),
            root,
            segments,
            definite,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// What the path starts from.
    pub fn root(&self) -> &PathRoot {
        &self.root
    }

    /// True when the path names at most one node (only `.name`, `['name']`, `[n]`).
    pub fn is_definite(&self) -> bool {
        self.definite
    }

    /// Selects against the context: `$` → input, `$$` → context object, `$name` → variable.
    /// `None` when a definite path finds nothing or the variable is not visible.
    pub fn select<'v>(&self, ctx: &EvalContext<'v>) -> Option<Cow<'v, Value>> {
        let root: &'v Value = match &self.root {
            PathRoot::Input => ctx.input,
            PathRoot::Context => ctx.context,
            PathRoot::Variable(name) => ctx.variables.get(name)?,
        };
        self.select_in(root)
    }

    /// Applies the path's segments to `root`, whatever the path's root kind.
    pub fn select_in<'v>(&self, root: &'v Value) -> Option<Cow<'v, Value>> {
        if self.definite {
            let mut node = root;
            for seg in &self.segments {
                if let Segment::Names(names) = seg {
                    // Only ever the leaf (see `parse`): Jayway returns the merged object
                    // itself, not wrapped in an array, because the path is definite.
                    return merge_properties(node, names).map(Cow::Owned);
                }
                node = step_definite(node, seg)?;
            }
            return Some(Cow::Borrowed(node));
        }
        // The definite prefix (leading `.name` / `[n]` before the first indefinite segment).
        // Jayway (`PathToken.handleObjectProperty`, `PropertyPathToken.evaluate`) throws
        // "Missing property in path $['x']" for a non-leaf property token whose upstream and
        // itself are definite, and "Expected to find an object with property ..." when such
        // a token meets a non-object — so `$.nothing[*]` is a path-not-found error, not `[]`.
        // An index out of range is silently skipped (`handleArrayIndex` catches it): `[]`.
        let mut node = root;
        let mut rest = self.segments.as_slice();
        while let Some((seg, tail)) = rest.split_first() {
            match seg {
                Segment::Name(_) => node = step_definite(node, seg)?,
                Segment::Index(_) => match step_definite(node, seg) {
                    Some(child) => node = child,
                    None => return Some(Cow::Owned(Value::Array(Vec::new()))),
                },
                _ => break,
            }
            rest = tail;
        }
        let budget = Budget::new();
        let last = rest.len().saturating_sub(1);
        let matches = match rest.split_last() {
            // A leaf multi-property token merges per node (Jayway's multiPropertyMergeCase);
            // nodes that are not objects are skipped because the upstream is indefinite.
            Some((Segment::Names(names), _)) => select_all(root, node, &rest[..last], &budget)
                .into_iter()
                .filter_map(|n| merge_properties(n, names))
                .collect(),
            _ => select_all(root, node, rest, &budget)
                .into_iter()
                .cloned()
                .collect(),
        };
        if budget.exhausted() {
            return None;
        }
        Some(Cow::Owned(Value::Array(matches)))
    }

    /// Jayway's normalized form, as AWS prints it in errors: `$['a']['b'][0]`.
    pub fn normalized(&self) -> String {
        let mut out = match &self.root {
            PathRoot::Input => "$".to_owned(),
            PathRoot::Context => "$$".to_owned(),
            PathRoot::Variable(n) => format!("${n}"),
        };
        for seg in &self.segments {
            push_normalized(&mut out, seg);
        }
        out
    }

    /// AWS's error when a Parameters/ResultSelector/ItemSelector/Fail `*Path` field's path
    /// finds nothing: `States.Runtime` "The JSONPath '$.x' specified for the field 'f.$'
    /// could not be found in the input '{...}'".
    pub fn not_found_in_field(&self, field: &str, input: &Value) -> StatesError {
        StatesError::runtime(format!(
            "The JSONPath '{}' specified for the field '{field}' could not be found in the input '{}'",
            self.text,
            compact(input)
        ))
    }

    /// AWS's error when InputPath/OutputPath/ItemsPath finds nothing: `States.Runtime`
    /// "Invalid path '$.x' : No results for path: $['x']".
    pub fn not_found_invalid_path(&self) -> StatesError {
        StatesError::runtime(format!(
            "Invalid path '{}' : No results for path: {}",
            self.text,
            self.normalized()
        ))
    }
}

impl std::fmt::Display for JsonPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Compact JSON text of a value, as AWS embeds inputs in causes.
pub fn compact(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn push_normalized(out: &mut String, seg: &Segment) {
    match seg {
        Segment::Name(n) => {
            out.push_str("['");
            out.push_str(n);
            out.push_str("']");
        }
        Segment::Index(i) => out.push_str(&format!("[{i}]")),
        Segment::Wildcard => out.push_str("[*]"),
        Segment::Names(ns) => {
            let parts: Vec<String> = ns.iter().map(|n| format!("'{n}'")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        }
        Segment::Indexes(is) => {
            let parts: Vec<String> = is.iter().map(|i| i.to_string()).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        }
        Segment::Slice(a, b, c) => {
            let f = |x: &Option<i64>| x.map(|v| v.to_string()).unwrap_or_default();
            match c {
                Some(_) => out.push_str(&format!("[{}:{}:{}]", f(a), f(b), f(c))),
                None => out.push_str(&format!("[{}:{}]", f(a), f(b))),
            }
        }
        Segment::Filter(_) => out.push_str("[?]"),
        Segment::Descendant(inner) => {
            out.push_str("..");
            push_normalized(out, inner);
        }
    }
}

/// Jayway's leaf multi-property token (`$['a','b']`, `PathToken.handleObjectProperty`): one
/// object holding the named properties that exist (with default options a missing property
/// is left out, and a JSON `null` value is kept). `None` when `node` is not an object.
fn merge_properties(node: &Value, names: &[String]) -> Option<Value> {
    let Value::Object(m) = node else {
        return None;
    };
    let merged = names
        .iter()
        .filter_map(|n| m.get(n).map(|v| (n.clone(), v.clone())))
        .collect();
    Some(Value::Object(merged))
}

fn step_definite<'v>(node: &'v Value, seg: &Segment) -> Option<&'v Value> {
    match (seg, node) {
        (Segment::Name(n), Value::Object(m)) => m.get(n),
        (Segment::Index(i), Value::Array(a)) => a.get(resolve_index(*i, a.len())?),
        _ => None,
    }
}

fn resolve_index(i: i64, len: usize) -> Option<usize> {
    if i >= 0 {
        usize::try_from(i).ok().filter(|u| *u < len)
    } else {
        let back = usize::try_from(i.unsigned_abs()).ok()?;
        len.checked_sub(back)
    }
}

/// Nodes one selection may visit. Every `..` keeps a node once per path that reaches it (as
/// Jayway does), so `$..*..*..*` grows with the input's depth to the power of the number of
/// `..`: the budget turns that into "no result" (a path-not-found error for the caller)
/// instead of hours of work. A million is far above any real selection on a 256 KiB input.
const MAX_VISITS: usize = 1_000_000;

struct Budget(std::cell::Cell<usize>);

impl Budget {
    fn new() -> Budget {
        Budget(std::cell::Cell::new(MAX_VISITS))
    }
    /// Spends `n` visits; false once the budget is gone.
    fn spend(&self, n: usize) -> bool {
        let left = self.0.get().saturating_sub(n);
        self.0.set(left);
        left > 0
    }
    fn exhausted(&self) -> bool {
        self.0.get() == 0
    }
}

fn select_all<'v>(
    root: &'v Value,
    start: &'v Value,
    segments: &[Segment],
    budget: &Budget,
) -> Vec<&'v Value> {
    let mut current = vec![start];
    for seg in segments {
        let mut next = Vec::new();
        for node in current {
            if !budget.spend(1) {
                return Vec::new();
            }
            apply(root, node, seg, &mut next, budget);
        }
        current = next;
    }
    current
}

fn apply<'v>(
    root: &'v Value,
    node: &'v Value,
    seg: &Segment,
    out: &mut Vec<&'v Value>,
    budget: &Budget,
) {
    match seg {
        Segment::Name(_) | Segment::Index(_) => {
            if let Some(v) = step_definite(node, seg) {
                out.push(v);
            }
        }
        Segment::Wildcard => match node {
            Value::Object(m) => out.extend(m.values()),
            Value::Array(a) => out.extend(a.iter()),
            _ => {}
        },
        Segment::Names(ns) => {
            if let Value::Object(m) = node {
                out.extend(ns.iter().filter_map(|n| m.get(n)));
            }
        }
        Segment::Indexes(is) => {
            if let Value::Array(a) = node {
                out.extend(
                    is.iter()
                        .filter_map(|i| resolve_index(*i, a.len()).and_then(|u| a.get(u))),
                );
            }
        }
        Segment::Slice(start, end, step) => {
            if let Value::Array(a) = node {
                slice(a, *start, *end, *step, out);
            }
        }
        Segment::Filter(f) => match node {
            Value::Array(a) => out.extend(a.iter().filter(|item| f.test(root, item, budget))),
            // Jayway applies a filter on an object to the object itself.
            Value::Object(_) if f.test(root, node, budget) => out.push(node),
            _ => {}
        },
        Segment::Descendant(inner) => {
            // Iterative walk (no recursion) so deep values cannot overflow the stack.
            let mut stack: Vec<(&Value, usize)> = vec![(node, 0)];
            let mut nodes = Vec::new();
            while let Some((v, depth)) = stack.pop() {
                if !budget.spend(1) {
                    return;
                }
                nodes.push(v);
                if depth >= MAX_DEPTH {
                    continue;
                }
                match v {
                    Value::Object(m) => {
                        for child in m.values().rev() {
                            stack.push((child, depth + 1));
                        }
                    }
                    Value::Array(a) => {
                        for child in a.iter().rev() {
                            stack.push((child, depth + 1));
                        }
                    }
                    _ => {}
                }
            }
            for v in nodes {
                if budget.exhausted() {
                    return;
                }
                apply(root, v, inner, out, budget);
            }
        }
    }
}

fn slice<'v>(
    a: &'v [Value],
    start: Option<i64>,
    end: Option<i64>,
    step: Option<i64>,
    out: &mut Vec<&'v Value>,
) {
    let len = i64::try_from(a.len()).unwrap_or(i64::MAX);
    let norm = |x: i64| if x < 0 { (len + x).max(0) } else { x.min(len) };
    let step = step.unwrap_or(1);
    if step <= 0 {
        return;
    }
    let s = norm(start.unwrap_or(0));
    let e = norm(end.unwrap_or(len));
    let mut i = s;
    while i < e {
        if let Some(v) = usize::try_from(i).ok().and_then(|u| a.get(u)) {
            out.push(v);
        }
        i = i.saturating_add(step);
    }
}

// ---------------------------------------------------------------- filter expressions

#[derive(Debug, Clone, PartialEq)]
enum Filter {
    Or(Box<Filter>, Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Compare(Operand, CmpOp, Operand),
    Exists(Operand),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Nin,
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Literal(Value),
    /// `@...` (relative) when the flag is true, `$...` otherwise.
    Path(bool, Vec<Segment>),
}

impl Operand {
    fn resolve<'v>(
        &'v self,
        root: &'v Value,
        current: &'v Value,
        budget: &Budget,
    ) -> Option<Cow<'v, Value>> {
        match self {
            Operand::Literal(v) => Some(Cow::Borrowed(v)),
            Operand::Path(relative, segs) => {
                let start = if *relative { current } else { root };
                if segs.iter().all(Segment::is_definite) {
                    let mut node = start;
                    for s in segs {
                        node = step_definite(node, s)?;
                    }
                    Some(Cow::Borrowed(node))
                } else {
                    let all = select_all(root, start, segs, budget);
                    Some(Cow::Owned(Value::Array(all.into_iter().cloned().collect())))
                }
            }
        }
    }
}

impl Filter {
    fn test(&self, root: &Value, current: &Value, budget: &Budget) -> bool {
        match self {
            Filter::Or(a, b) => a.test(root, current, budget) || b.test(root, current, budget),
            Filter::And(a, b) => a.test(root, current, budget) && b.test(root, current, budget),
            Filter::Not(a) => !a.test(root, current, budget),
            Filter::Exists(op) => op.resolve(root, current, budget).is_some(),
            Filter::Compare(l, op, r) => {
                let (Some(l), Some(r)) = (
                    l.resolve(root, current, budget),
                    r.resolve(root, current, budget),
                ) else {
                    return false;
                };
                compare(&l, *op, &r)
            }
        }
    }
}

fn compare(l: &Value, op: CmpOp, r: &Value) -> bool {
    use std::cmp::Ordering;
    let ord = match (l, r) {
        (Value::Number(a), Value::Number(b)) => a
            .as_f64()
            .zip(b.as_f64())
            .and_then(|(a, b)| a.partial_cmp(&b)),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        _ => None,
    };
    match op {
        CmpOp::Eq => ord == Some(Ordering::Equal) || (ord.is_none() && json_eq(l, r)),
        CmpOp::Ne => !(ord == Some(Ordering::Equal) || (ord.is_none() && json_eq(l, r))),
        CmpOp::Lt => ord == Some(Ordering::Less),
        CmpOp::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
        CmpOp::Gt => ord == Some(Ordering::Greater),
        CmpOp::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
        CmpOp::In => r
            .as_array()
            .is_some_and(|a| a.iter().any(|x| compare(l, CmpOp::Eq, x))),
        CmpOp::Nin => r
            .as_array()
            .is_some_and(|a| !a.iter().any(|x| compare(l, CmpOp::Eq, x))),
    }
}

/// JSON equality where numbers compare by value (`1 == 1.0`).
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

// ---------------------------------------------------------------- parser

fn is_variable_start(c: char) -> bool {
    unicode_ident::is_xid_start(c) || c == '_'
}

struct Cursor<'t> {
    text: &'t str,
    pos: usize,
    depth: usize,
}

/// Nesting limit for filters (brackets, parentheses, `!`, and each `&&`/`||`, which nest the
/// filter tree one level deeper): keeps parsing, testing and dropping a filter off deep
/// recursion whatever the text.
const MAX_FILTER_NESTING: usize = 32;

impl<'t> Cursor<'t> {
    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_FILTER_NESTING {
            return Err(format!(
                "filter nested more than {MAX_FILTER_NESTING} levels deep (brackets, '!', '&&' and '||' all count) at offset {}",
                self.pos
            ));
        }
        Ok(())
    }

    fn rest(&self) -> &'t str {
        self.text.get(self.pos..).unwrap_or("")
    }
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }
    fn peek_at(&self, n: usize) -> Option<u8> {
        self.text.as_bytes().get(self.pos + n).copied()
    }
    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }
    fn eat(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }
    fn expect(&mut self, s: &str) -> Result<(), String> {
        if self.eat(s) {
            Ok(())
        } else {
            Err(format!("expected '{s}' at offset {}", self.pos))
        }
    }

    /// Parses segments; inside a filter (`in_filter`) stops at operators and `)`.
    fn segments(&mut self, in_filter: bool) -> Result<Vec<Segment>, String> {
        let mut segs = Vec::new();
        loop {
            match self.peek() {
                Some(b'.') if self.peek_at(1) == Some(b'.') => {
                    self.pos += 2;
                    let inner = if self.peek() == Some(b'[') {
                        self.bracket()?
                    } else if self.eat("*") {
                        Segment::Wildcard
                    } else {
                        Segment::Name(self.dot_name(in_filter)?)
                    };
                    segs.push(Segment::Descendant(Box::new(inner)));
                }
                Some(b'.') => {
                    self.pos += 1;
                    if self.eat("*") {
                        segs.push(Segment::Wildcard);
                    } else {
                        segs.push(Segment::Name(self.dot_name(in_filter)?));
                    }
                }
                Some(b'[') => segs.push(self.bracket()?),
                _ => return Ok(segs),
            }
        }
    }

    fn dot_name(&mut self, in_filter: bool) -> Result<String, String> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            let stop = c == b'.'
                || c == b'['
                || c == b']'
                || c.is_ascii_whitespace()
                || (in_filter && (c.is_ascii_whitespace() || b")=!<>&|,]".contains(&c)));
            if stop {
                break;
            }
            // Advance by whole UTF-8 characters.
            let ch_len = self.rest().chars().next().map_or(1, char::len_utf8);
            self.pos += ch_len;
        }
        if self.pos == start {
            return Err(format!("empty property name at offset {start}"));
        }
        Ok(self.text[start..self.pos].to_owned())
    }

    fn bracket(&mut self) -> Result<Segment, String> {
        self.expect("[")?;
        self.skip_ws();
        let seg = match self.peek() {
            Some(b'*') => {
                self.pos += 1;
                Segment::Wildcard
            }
            Some(b'?') => {
                self.pos += 1;
                self.skip_ws();
                self.expect("(")?;
                self.enter()?;
                let f = self.filter_or()?;
                self.depth -= 1;
                self.skip_ws();
                self.expect(")")?;
                Segment::Filter(Box::new(f))
            }
            Some(b'(') => {
                // Jayway's script expression; the only form in use is `(@.length-N)`,
                // which is index -N.
                self.pos += 1;
                self.skip_ws();
                if !self.eat("@.length") {
                    return Err(format!(
                        "only the script expression '(@.length-N)' is supported (offset {})",
                        self.pos
                    ));
                }
                self.skip_ws();
                let back = if self.eat("-") {
                    self.int()?.ok_or("expected a number after '@.length-'")?
                } else {
                    0
                };
                self.skip_ws();
                self.expect(")")?;
                Segment::Index(back.checked_neg().ok_or("index out of range")?)
            }
            Some(b'\'') | Some(b'"') => {
                let mut names = vec![self.quoted()?];
                self.skip_ws();
                while self.eat(",") {
                    self.skip_ws();
                    names.push(self.quoted()?);
                    self.skip_ws();
                }
                if names.len() == 1 {
                    Segment::Name(names.pop().unwrap_or_default())
                } else {
                    Segment::Names(names)
                }
            }
            _ => self.index_or_slice()?,
        };
        self.skip_ws();
        self.expect("]")?;
        Ok(seg)
    }

    fn quoted(&mut self) -> Result<String, String> {
        let q = self.peek().ok_or("unterminated bracket")?;
        if q != b'\'' && q != b'"' {
            return Err(format!("expected a quoted name at offset {}", self.pos));
        }
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        loop {
            let Some((i, c)) = chars.next() else {
                return Err("unterminated quoted name".into());
            };
            if c == '\\' {
                // Only an escaped quote is an escape; any other backslash is literal (Jayway).
                if let Some((_, n)) = chars.clone().next()
                    && n as u32 == u32::from(q)
                {
                    chars.next();
                    out.push(n);
                    continue;
                }
                out.push(c);
            } else if c as u32 == u32::from(q) {
                self.pos += i + 1;
                return Ok(out);
            } else {
                out.push(c);
            }
        }
    }

    fn int(&mut self) -> Result<Option<i64>, String> {
        self.skip_ws();
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let s = &self.text[start..self.pos];
        if s.is_empty() {
            return Ok(None);
        }
        s.parse::<i64>()
            .map(Some)
            .map_err(|_| format!("invalid index '{s}' at offset {start}"))
    }

    fn index_or_slice(&mut self) -> Result<Segment, String> {
        let first = self.int()?;
        self.skip_ws();
        if self.peek() == Some(b':') {
            self.pos += 1;
            let end = self.int()?;
            self.skip_ws();
            let step = if self.eat(":") { self.int()? } else { None };
            return Ok(Segment::Slice(first, end, step));
        }
        let Some(first) = first else {
            return Err(format!(
                "expected an index, a quoted name, '*' or '?(' at offset {}",
                self.pos
            ));
        };
        self.skip_ws();
        if self.peek() == Some(b',') {
            let mut all = vec![first];
            while self.eat(",") {
                all.push(self.int()?.ok_or("expected an index after ','")?);
                self.skip_ws();
            }
            return Ok(Segment::Indexes(all));
        }
        Ok(Segment::Index(first))
    }

    fn filter_or(&mut self) -> Result<Filter, String> {
        let entry = self.depth;
        let mut left = self.filter_and()?;
        loop {
            self.skip_ws();
            if self.eat("||") {
                self.enter()?;
                let right = self.filter_and()?;
                left = Filter::Or(Box::new(left), Box::new(right));
            } else {
                self.depth = entry;
                return Ok(left);
            }
        }
    }

    fn filter_and(&mut self) -> Result<Filter, String> {
        let entry = self.depth;
        let mut left = self.filter_unary()?;
        loop {
            self.skip_ws();
            if self.eat("&&") {
                self.enter()?;
                let right = self.filter_unary()?;
                left = Filter::And(Box::new(left), Box::new(right));
            } else {
                self.depth = entry;
                return Ok(left);
            }
        }
    }

    fn filter_unary(&mut self) -> Result<Filter, String> {
        self.skip_ws();
        if self.peek() == Some(b'!') && self.peek_at(1) != Some(b'=') {
            self.pos += 1;
            self.enter()?;
            let inner = self.filter_unary()?;
            self.depth -= 1;
            return Ok(Filter::Not(Box::new(inner)));
        }
        if self.peek() == Some(b'(') {
            self.pos += 1;
            self.enter()?;
            let f = self.filter_or()?;
            self.depth -= 1;
            self.skip_ws();
            self.expect(")")?;
            return Ok(f);
        }
        let left = self.operand()?;
        self.skip_ws();
        let op = if self.eat("==") {
            CmpOp::Eq
        } else if self.eat("!=") {
            CmpOp::Ne
        } else if self.eat("<=") {
            CmpOp::Le
        } else if self.eat(">=") {
            CmpOp::Ge
        } else if self.eat("<") {
            CmpOp::Lt
        } else if self.eat(">") {
            CmpOp::Gt
        } else if self.rest().starts_with("nin ") || self.rest().starts_with("nin[") {
            self.pos += 3;
            CmpOp::Nin
        } else if self.rest().starts_with("in ") || self.rest().starts_with("in[") {
            self.pos += 2;
            CmpOp::In
        } else {
            return match left {
                Operand::Path(..) => Ok(Filter::Exists(left)),
                Operand::Literal(_) => Err(format!(
                    "expected a comparison operator at offset {}",
                    self.pos
                )),
            };
        };
        let right = self.operand()?;
        Ok(Filter::Compare(left, op, right))
    }

    fn operand(&mut self) -> Result<Operand, String> {
        self.skip_ws();
        match self.peek() {
            Some(b'@') => {
                self.pos += 1;
                Ok(Operand::Path(true, self.segments(true)?))
            }
            Some(b'$') => {
                self.pos += 1;
                Ok(Operand::Path(false, self.segments(true)?))
            }
            Some(b'\'') | Some(b'"') => Ok(Operand::Literal(Value::String(self.quoted()?))),
            Some(b'[') => {
                self.pos += 1;
                self.enter()?;
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    if self.eat("]") {
                        break;
                    }
                    match self.operand()? {
                        Operand::Literal(v) => items.push(v),
                        Operand::Path(..) => return Err("paths are not allowed in a list".into()),
                    }
                    self.skip_ws();
                    if !self.eat(",") {
                        self.skip_ws();
                        self.expect("]")?;
                        break;
                    }
                }
                self.depth -= 1;
                Ok(Operand::Literal(Value::Array(items)))
            }
            _ => {
                for (word, v) in [
                    ("true", Value::Bool(true)),
                    ("false", Value::Bool(false)),
                    ("null", Value::Null),
                ] {
                    if self.eat(word) {
                        return Ok(Operand::Literal(v));
                    }
                }
                let start = self.pos;
                if self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
                {
                    // Jayway reads an unquoted word as a string (asl-validator accepts
                    // `[?(@.OutputKey == FooBar)]`).
                    while self
                        .peek()
                        .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
                    {
                        self.pos += 1;
                    }
                    return Ok(Operand::Literal(Value::String(
                        self.text[start..self.pos].to_owned(),
                    )));
                }
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_digit() || b"-+.eE".contains(&c))
                {
                    self.pos += 1;
                }
                let s = &self.text[start..self.pos];
                let n: Value = serde_json::from_str(s)
                    .ok()
                    .filter(Value::is_number)
                    .ok_or_else(|| format!("expected a value at offset {start}"))?;
                Ok(Operand::Literal(n))
            }
        }
    }
}

// ---------------------------------------------------------------- reference paths

/// A Reference Path: a definite path from `$` with only `.name`, `['name']` and `[n]` steps.
/// Used for ResultPath (with [`ReferencePath::set`]) and wherever ASL requires one.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferencePath {
    path: JsonPath,
}

impl ReferencePath {
    /// Parses a Reference Path; rejects `$$`, variables, wildcards, filters, slices, `..`.
    pub fn parse(text: &str) -> Result<ReferencePath, SyntaxError> {
        let path = JsonPath::parse(text)?;
        if path.root != PathRoot::Input {
            return Err(SyntaxError::new(
                "JSONPath",
                text,
                "a reference path must start with '$' (not '$$' or a variable)",
            ));
        }
        if !path.segments.iter().all(Segment::is_definite) {
            return Err(SyntaxError::new(
                "JSONPath",
                text,
                "a reference path may only use '.name', \"['name']\" and '[n]' (no wildcards, filters, slices or '..')",
            ));
        }
        Ok(ReferencePath { path })
    }

    /// The underlying path.
    pub fn path(&self) -> &JsonPath {
        &self.path
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        self.path.as_str()
    }

    /// The node at the path, if any.
    pub fn get<'v>(&self, root: &'v Value) -> Option<&'v Value> {
        let mut node = root;
        for seg in &self.path.segments {
            node = step_definite(node, seg)?;
        }
        Some(node)
    }

    /// ResultPath semantics: returns `target` with `value` placed at the path, creating
    /// missing intermediate objects. `$` replaces the whole target. Fails with
    /// `States.ResultPathMatchFailure` when a step meets a non-object (or an out-of-range
    /// index), as AWS does.
    pub fn set(&self, mut target: Value, value: Value) -> Result<Value, StatesError> {
        self.set_in_place(&mut target, value)?;
        Ok(target)
    }

    /// [`ReferencePath::set`] on a borrowed target. On failure `target` is untouched: the
    /// path is checked completely before anything is written.
    pub fn set_in_place(&self, target: &mut Value, value: Value) -> Result<(), StatesError> {
        if self.path.segments.is_empty() {
            *target = value;
            return Ok(());
        }
        let fail = |t: &Value| {
            StatesError::result_path(format!(
                "Unable to apply ReferencePath {} to input {}",
                self.path.text,
                compact(t)
            ))
        };
        // Check first (so the error can show the untouched input), then write.
        {
            let mut node = &*target;
            for seg in &self.path.segments {
                match (seg, node) {
                    (Segment::Name(n), Value::Object(m)) => match m.get(n) {
                        Some(child) => node = child,
                        None => break,
                    },
                    (Segment::Index(i), Value::Array(a)) => {
                        match resolve_index(*i, a.len()).and_then(|u| a.get(u)) {
                            Some(child) => node = child,
                            None => return Err(fail(target)),
                        }
                    }
                    _ => return Err(fail(target)),
                }
            }
        }
        let mut node = target;
        let last = self.path.segments.len() - 1;
        for (i, seg) in self.path.segments.iter().enumerate() {
            node = match (seg, node) {
                (Segment::Name(n), Value::Object(m)) => {
                    if i == last {
                        m.insert(n.clone(), value);
                        return Ok(());
                    }
                    m.entry(n.clone())
                        .or_insert_with(|| Value::Object(Default::default()))
                }
                (Segment::Index(ix), Value::Array(a)) => {
                    let len = a.len();
                    let Some(slot) = resolve_index(*ix, len).and_then(|u| a.get_mut(u)) else {
                        return Err(StatesError::result_path(format!(
                            "Unable to apply ReferencePath {}: index out of range",
                            self.path.text
                        )));
                    };
                    if i == last {
                        *slot = value;
                        return Ok(());
                    }
                    slot
                }
                (_, _) => {
                    return Err(StatesError::result_path(format!(
                        "Unable to apply ReferencePath {}: a step is not an object",
                        self.path.text
                    )));
                }
            };
        }
        Ok(())
    }
}
