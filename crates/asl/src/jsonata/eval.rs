//! JSONata evaluator: sequences, path steps with predicates, operators, constructors,
//! lambdas with closures, and the function library (standard + Step Functions extras).
//!
//! Values borrow from the execution's JSON where they can ([`V::Json`]), so `$states.input.x`
//! on a large input copies nothing until the result is converted back to JSON.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use serde_json::{Map, Number, Value};

use super::parse::{BinOp, Node};
use crate::intrinsics::{base64_decode, base64_encode, hash, uuid_v4};
use crate::jsonpath::{EvalContext, SplitMix64, compact};

/// Internal value. `None` (in `Option<V>`) is JSONata's undefined.
#[derive(Clone)]
pub(crate) enum V<'a> {
    /// Borrowed from the execution's JSON.
    Json(&'a Value),
    Null,
    Bool(bool),
    Num(f64),
    Str(Rc<str>),
    /// An array; `seq` marks a result sequence (flattened by path steps), `cons` an array
    /// built by a constructor (kept whole by path steps).
    Arr(Rc<Vec<V<'a>>>, ArrKind),
    Obj(Rc<Vec<(String, V<'a>)>>),
    Func(Rc<Func<'a>>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArrKind {
    Plain,
    Seq,
    Cons,
}

pub(crate) enum Func<'a> {
    Lambda {
        params: Vec<String>,
        body: std::sync::Arc<Node>,
        env: Env<'a>,
    },
    Builtin(&'static str),
    Regex(std::sync::Arc<regex::Regex>),
}

type Env<'a> = Rc<Scope<'a>>;

pub(crate) struct Scope<'a> {
    vars: RefCell<HashMap<String, V<'a>>>,
    parent: Option<Env<'a>>,
}

impl<'a> Scope<'a> {
    fn child(parent: &Env<'a>) -> Env<'a> {
        Rc::new(Scope {
            vars: RefCell::new(HashMap::new()),
            parent: Some(parent.clone()),
        })
    }
    fn lookup(&self, name: &str) -> Option<V<'a>> {
        if let Some(v) = self.vars.borrow().get(name) {
            return Some(v.clone());
        }
        self.parent.as_ref().and_then(|p| p.lookup(name))
    }
    fn bind(&self, name: &str, v: V<'a>) {
        self.vars.borrow_mut().insert(name.to_owned(), v);
    }
}

type R<T> = Result<T, String>;

/// Limits: evaluation depth (recursion through lambdas and nesting), range size, and total
/// work, so hostile expressions end with an error instead of exhausting the machine.
const MAX_EVAL_DEPTH: usize = 200;
/// Stack the evaluator may use (measured from where evaluation started). Debug builds have
/// large frames, and engine worker threads may have small stacks, so depth alone is not a
/// safe bound.
const STACK_BUDGET: usize = 384 * 1024;
const MAX_RANGE: f64 = 10_000_000.0;
const MAX_STEPS: u64 = 50_000_000;

struct Ev<'c, 'a> {
    ctx: &'c mut EvalContext<'a>,
    stack_base: usize,
    depth: usize,
    steps: u64,
    states: Option<V<'a>>,
}

pub(crate) fn evaluate(node: &Node, ctx: &mut EvalContext<'_>) -> R<Option<Value>> {
    let input: &Value = ctx.input;
    let marker = 0u8;
    let mut ev = Ev {
        ctx,
        stack_base: stack_address(&marker),
        depth: 0,
        steps: 0,
        states: None,
    };
    let env: Env<'_> = Rc::new(Scope {
        vars: RefCell::new(HashMap::new()),
        parent: None,
    });
    // AWS binds `$` to the state input as well (a bare path reads from it).
    let root = V::Json(input);
    let out = ev.eval(node, &root, &env)?;
    match out {
        None => Ok(None),
        Some(V::Func(_)) => {
            Err("the expression returned a function, which has no JSON value".into())
        }
        Some(v) => to_json(&v).map(Some),
    }
}

/// Address of a local, to measure how much stack the recursion has used (no unsafe: the
/// pointer is only compared, never dereferenced).
fn stack_address(marker: &u8) -> usize {
    marker as *const u8 as usize
}

// ------------------------------------------------------------------ conversions

fn num_value(n: f64) -> R<Value> {
    if !n.is_finite() {
        return Err("D1001: Number out of range (infinite or NaN)".into());
    }
    if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
        Ok(Value::from(n as i64))
    } else {
        Number::from_f64(n)
            .map(Value::Number)
            .ok_or_else(|| "D1001: Number out of range".to_string())
    }
}

pub(crate) fn to_json(v: &V<'_>) -> R<Value> {
    to_json_depth(v, 0)
}

fn to_json_depth(v: &V<'_>, depth: usize) -> R<Value> {
    if depth > 1000 {
        return Err("value nested too deeply".into());
    }
    Ok(match v {
        V::Json(j) => (*j).clone(),
        V::Null => Value::Null,
        V::Bool(b) => Value::Bool(*b),
        V::Num(n) => num_value(*n)?,
        V::Str(s) => Value::String(s.to_string()),
        V::Arr(items, _) => Value::Array(
            items
                .iter()
                .filter(|i| !matches!(i, V::Func(_)))
                .map(|i| to_json_depth(i, depth + 1))
                .collect::<R<_>>()?,
        ),
        V::Obj(entries) => {
            let mut m = Map::with_capacity(entries.len());
            for (k, val) in entries.iter() {
                if !matches!(val, V::Func(_)) {
                    m.insert(k.clone(), to_json_depth(val, depth + 1)?);
                }
            }
            Value::Object(m)
        }
        V::Func(_) => Value::String(String::new()),
    })
}

impl<'a> V<'a> {
    fn str(s: &str) -> V<'a> {
        V::Str(Rc::from(s))
    }
    fn seq(items: Vec<V<'a>>) -> V<'a> {
        V::Arr(Rc::new(items), ArrKind::Seq)
    }
    fn array(items: Vec<V<'a>>) -> V<'a> {
        V::Arr(Rc::new(items), ArrKind::Plain)
    }
    fn as_f64(&self) -> Option<f64> {
        match self {
            V::Num(n) => Some(*n),
            V::Json(Value::Number(n)) => n.as_f64(),
            _ => None,
        }
    }
    fn as_str(&self) -> Option<&str> {
        match self {
            V::Str(s) => Some(s),
            V::Json(Value::String(s)) => Some(s),
            _ => None,
        }
    }
    fn as_bool(&self) -> Option<bool> {
        match self {
            V::Bool(b) => Some(*b),
            V::Json(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }
    fn is_array(&self) -> bool {
        matches!(self, V::Arr(..) | V::Json(Value::Array(_)))
    }
    fn is_null(&self) -> bool {
        matches!(self, V::Null | V::Json(Value::Null))
    }
    fn kind(&self) -> ArrKind {
        match self {
            V::Arr(_, k) => *k,
            _ => ArrKind::Plain,
        }
    }
    /// Array items (borrowed JSON arrays become `V::Json` items).
    fn items(&self) -> Option<Vec<V<'a>>> {
        match self {
            V::Arr(items, _) => Some(items.as_ref().clone()),
            V::Json(Value::Array(a)) => Some(a.iter().map(V::Json).collect()),
            _ => None,
        }
    }
    fn len(&self) -> usize {
        match self {
            V::Arr(items, _) => items.len(),
            V::Json(Value::Array(a)) => a.len(),
            _ => 1,
        }
    }
    /// The value as a sequence (non-arrays become one-item sequences).
    fn to_vec(&self) -> Vec<V<'a>> {
        self.items().unwrap_or_else(|| vec![self.clone()])
    }
    fn field(&self, name: &str) -> Option<V<'a>> {
        match self {
            V::Json(Value::Object(m)) => m.get(name).map(V::Json),
            V::Obj(entries) => entries
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone()),
            _ => None,
        }
    }
    fn entries(&self) -> Option<Vec<(String, V<'a>)>> {
        match self {
            V::Json(Value::Object(m)) => {
                Some(m.iter().map(|(k, v)| (k.clone(), V::Json(v))).collect())
            }
            V::Obj(e) => Some(e.as_ref().clone()),
            _ => None,
        }
    }
    fn type_name(&self) -> &'static str {
        match self {
            V::Null | V::Json(Value::Null) => "null",
            V::Bool(_) | V::Json(Value::Bool(_)) => "boolean",
            V::Num(_) | V::Json(Value::Number(_)) => "number",
            V::Str(_) | V::Json(Value::String(_)) => "string",
            V::Arr(..) | V::Json(Value::Array(_)) => "array",
            V::Obj(_) | V::Json(Value::Object(_)) => "object",
            V::Func(_) => "function",
        }
    }
}

/// Undefined-aware sequence builder: empty → undefined, one → the item, many → sequence.
fn collapse<'a>(mut items: Vec<V<'a>>) -> Option<V<'a>> {
    match items.len() {
        0 => None,
        1 => items.pop(),
        _ => Some(V::seq(items)),
    }
}

/// JSONata's boolean cast (`$boolean`).
fn truthy(v: &Option<V<'_>>) -> bool {
    match v {
        None => false,
        Some(v) => truthy_v(v),
    }
}

fn truthy_v(v: &V<'_>) -> bool {
    match v {
        V::Null | V::Json(Value::Null) => false,
        V::Bool(b) => *b,
        V::Json(Value::Bool(b)) => *b,
        V::Num(n) => *n != 0.0,
        V::Json(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        V::Str(s) => !s.is_empty(),
        V::Json(Value::String(s)) => !s.is_empty(),
        V::Arr(..) | V::Json(Value::Array(_)) => {
            let items = v.to_vec();
            match items.len() {
                0 => false,
                1 => truthy_v(&items[0]),
                _ => items.iter().any(truthy_v),
            }
        }
        V::Obj(e) => !e.is_empty(),
        V::Json(Value::Object(m)) => !m.is_empty(),
        V::Func(_) => false,
    }
}

fn deep_eq(a: &V<'_>, b: &V<'_>) -> bool {
    if let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (a.as_str(), b.as_str()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (a.as_bool(), b.as_bool()) {
        return x == y;
    }
    if a.is_null() && b.is_null() {
        return true;
    }
    if a.is_array() && b.is_array() {
        let (x, y) = (a.to_vec(), b.to_vec());
        return x.len() == y.len() && x.iter().zip(&y).all(|(p, q)| deep_eq(p, q));
    }
    if let (Some(x), Some(y)) = (a.entries(), b.entries()) {
        return x.len() == y.len()
            && x.iter()
                .all(|(k, v)| y.iter().any(|(k2, v2)| k == k2 && deep_eq(v, v2)));
    }
    false
}

/// `$string` formatting of numbers: integers without a fraction, others at 15 significant
/// digits like JavaScript's `toPrecision(15)` then trimmed.
fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e21 {
        return format!("{}", n as i128);
    }
    let s = format!("{:.*e}", 14, n);
    let parsed: f64 = s.parse().unwrap_or(n);
    let out = format!("{parsed}");
    if out.contains('e') {
        out
    } else {
        out.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

fn stringify(v: &V<'_>) -> R<String> {
    Ok(match v {
        V::Str(s) => s.to_string(),
        V::Json(Value::String(s)) => s.clone(),
        V::Num(n) => {
            if !n.is_finite() {
                return Err(
                    "D3001: Attempting to invoke string function on Infinity or NaN".into(),
                );
            }
            fmt_num(*n)
        }
        V::Json(Value::Number(n)) => match n.as_f64() {
            Some(f) if n.is_f64() => fmt_num(f),
            _ => n.to_string(),
        },
        V::Func(_) => String::new(),
        other => compact(&to_json(other)?),
    })
}

// ------------------------------------------------------------------ evaluation

impl<'c, 'a> Ev<'c, 'a> {
    fn tick(&mut self) -> R<()> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err("U1001: evaluation exceeded the work limit".into());
        }
        Ok(())
    }

    fn states(&mut self) -> V<'a> {
        if let Some(s) = &self.states {
            return s.clone();
        }
        let mut entries = vec![
            ("input".to_owned(), V::Json(self.ctx.input)),
            ("context".to_owned(), V::Json(self.ctx.context)),
        ];
        if let Some(r) = self.ctx.result {
            entries.push(("result".to_owned(), V::Json(r)));
        }
        if let Some(e) = self.ctx.error_output {
            entries.push(("errorOutput".to_owned(), V::Json(e)));
        }
        let v = V::Obj(Rc::new(entries));
        self.states = Some(v.clone());
        v
    }

    fn eval(&mut self, node: &Node, input: &V<'a>, env: &Env<'a>) -> R<Option<V<'a>>> {
        self.tick()?;
        self.depth += 1;
        let marker = 0u8;
        if self.depth > MAX_EVAL_DEPTH
            || self.stack_base.abs_diff(stack_address(&marker)) > STACK_BUDGET
        {
            self.depth -= 1;
            return Err(
                "U1001: Stack overflow error: check for non-terminating recursive function".into(),
            );
        }
        let r = self.eval_inner(node, input, env);
        self.depth -= 1;
        r
    }

    fn eval_inner(&mut self, node: &Node, input: &V<'a>, env: &Env<'a>) -> R<Option<V<'a>>> {
        Ok(match node {
            Node::Num(n) => Some(V::Num(*n)),
            Node::Str(s) => Some(V::str(s)),
            Node::Bool(b) => Some(V::Bool(*b)),
            Node::Null => Some(V::Null),
            Node::Var(name) => self.var(name, input, env),
            Node::Name(name) => lookup_name(input, name),
            Node::Wildcard => {
                let mut out = Vec::new();
                let items = if input.is_array() {
                    input.to_vec()
                } else {
                    vec![input.clone()]
                };
                for item in items {
                    if let Some(entries) = item.entries() {
                        for (_, v) in entries {
                            push_flat(&mut out, v);
                        }
                    }
                }
                collapse(out)
            }
            Node::Descendants => {
                let mut out = Vec::new();
                descendants(input, &mut out, 0);
                collapse(out)
            }
            Node::Path(steps) => self.path(steps, input, env)?,
            Node::Filter(expr, pred) => {
                let v = self.eval(expr, input, env)?;
                match v {
                    None => None,
                    Some(v) => self.filter(&v, pred, env)?,
                }
            }
            Node::Neg(e) => match self.eval(e, input, env)? {
                None => None,
                Some(v) => Some(V::Num(
                    -v.as_f64()
                        .ok_or("D1002: Cannot negate a non-numeric value")?,
                )),
            },
            Node::Binary(op, l, r) => self.binary(*op, l, r, input, env)?,
            Node::Array(items) => {
                let mut out = Vec::new();
                for item in items {
                    if let Some(v) = self.eval(item, input, env)? {
                        if matches!(item, Node::Array(_)) {
                            out.push(v);
                        } else if v.is_array() {
                            out.extend(v.to_vec());
                        } else {
                            out.push(v);
                        }
                    }
                }
                Some(V::Arr(Rc::new(out), ArrKind::Cons))
            }
            Node::Object(pairs) => {
                let mut entries: Vec<(String, V<'a>)> = Vec::with_capacity(pairs.len());
                for (k, v) in pairs {
                    let key = self.eval(k, input, env)?;
                    let Some(key) = key else { continue };
                    let key = key
                        .as_str()
                        .ok_or_else(|| {
                            format!(
                                "T1003: Key in object structure must evaluate to a string; got: {}",
                                key.type_name()
                            )
                        })?
                        .to_owned();
                    if let Some(val) = self.eval(v, input, env)? {
                        if let Some(slot) = entries.iter_mut().find(|(k2, _)| *k2 == key) {
                            slot.1 = val;
                        } else {
                            entries.push((key, val));
                        }
                    }
                }
                Some(V::Obj(Rc::new(entries)))
            }
            Node::Condition(c, then, otherwise) => {
                let cv = self.eval(c, input, env)?;
                if truthy(&cv) {
                    self.eval(then, input, env)?
                } else if let Some(o) = otherwise {
                    self.eval(o, input, env)?
                } else {
                    None
                }
            }
            Node::Block(items) => {
                let scope = Scope::child(env);
                let mut last = None;
                for item in items {
                    last = self.eval(item, input, &scope)?;
                }
                last
            }
            Node::Bind(name, value) => {
                let v = self.eval(value, input, env)?;
                if let Some(v) = &v {
                    env.bind(name, v.clone());
                }
                v
            }
            Node::Lambda(params, body) => Some(V::Func(Rc::new(Func::Lambda {
                params: params.clone(),
                body: body.clone(),
                env: env.clone(),
            }))),
            Node::Call(f, args) => {
                let func = self.eval(f, input, env)?;
                let mut argv = Vec::with_capacity(args.len());
                for a in args {
                    argv.push(self.eval(a, input, env)?);
                }
                match func {
                    Some(V::Func(func)) => self.apply(&func, argv, input)?,
                    _ => {
                        let name = match f.as_ref() {
                            Node::Var(n) => format!("${n}"),
                            _ => "expression".into(),
                        };
                        return Err(format!(
                            "T1006: Attempted to invoke a non-function ({name})"
                        ));
                    }
                }
            }
            Node::Chain(l, r) => {
                let lv = self.eval(l, input, env)?;
                match r.as_ref() {
                    Node::Call(f, args) => {
                        let func = self.eval(f, input, env)?;
                        let mut argv = vec![lv];
                        for a in args {
                            argv.push(self.eval(a, input, env)?);
                        }
                        match func {
                            Some(V::Func(func)) => self.apply(&func, argv, input)?,
                            _ => return Err("T2006: The right side of the function application operator ~> must be a function".into()),
                        }
                    }
                    other => match self.eval(other, input, env)? {
                        Some(V::Func(func)) => self.apply(&func, vec![lv], input)?,
                        _ => return Err("T2006: The right side of the function application operator ~> must be a function".into()),
                    },
                }
            }
            Node::KeepArray(e) => match self.eval(e, input, env)? {
                Some(v) if v.is_array() => Some(V::Arr(Rc::new(v.to_vec()), ArrKind::Cons)),
                Some(v) => Some(V::Arr(Rc::new(vec![v]), ArrKind::Cons)),
                None => None,
            },
            Node::Regex(re) => Some(V::Func(Rc::new(Func::Regex(re.0.clone())))),
            Node::Group(expr, pairs) => {
                let Some(v) = self.eval(expr, input, env)? else {
                    return Ok(None);
                };
                // Group the items by key (keeping first-seen order), then evaluate each
                // group's value with the group's items as the context.
                let mut groups: Vec<(String, usize, Vec<V<'a>>)> = Vec::new();
                for item in v.to_vec() {
                    for (pi, (k, _)) in pairs.iter().enumerate() {
                        let Some(key) = self.eval(k, &item, env)? else {
                            continue;
                        };
                        let key = key
                            .as_str()
                            .ok_or_else(|| {
                                format!(
                                    "T1003: Key in object structure must evaluate to a string; got: {}",
                                    key.type_name()
                                )
                            })?
                            .to_owned();
                        match groups.iter_mut().find(|(k2, _, _)| *k2 == key) {
                            Some((_, gpi, items)) => {
                                if *gpi != pi {
                                    return Err(format!(
                                        "D1009: Multiple key definitions evaluate to same key: \"{key}\""
                                    ));
                                }
                                items.push(item.clone());
                            }
                            None => groups.push((key, pi, vec![item.clone()])),
                        }
                    }
                }
                let mut entries = Vec::with_capacity(groups.len());
                for (key, pi, mut items) in groups {
                    let ctx = if items.len() == 1 {
                        items.pop().unwrap_or(V::Null)
                    } else {
                        V::seq(items)
                    };
                    if let Some(val) = self.eval(&pairs[pi].1, &ctx, env)? {
                        entries.push((key, val));
                    }
                }
                Some(V::Obj(Rc::new(entries)))
            }
            Node::Sort(expr, terms) => {
                let Some(v) = self.eval(expr, input, env)? else {
                    return Ok(None);
                };
                let items = v.to_vec();
                let mut keyed = Vec::with_capacity(items.len());
                for item in items {
                    let mut keys = Vec::new();
                    for (t, _) in terms {
                        keys.push(self.eval(t, &item, env)?);
                    }
                    keyed.push((keys, item));
                }
                let mut err = None;
                keyed.sort_by(|a, b| {
                    for (i, (_, desc)) in terms.iter().enumerate() {
                        let o = match order(&a.0[i], &b.0[i]) {
                            Ok(o) => o,
                            Err(e) => {
                                err.get_or_insert(e);
                                std::cmp::Ordering::Equal
                            }
                        };
                        let o = if *desc { o.reverse() } else { o };
                        if o != std::cmp::Ordering::Equal {
                            return o;
                        }
                    }
                    std::cmp::Ordering::Equal
                });
                if let Some(e) = err {
                    return Err(e);
                }
                Some(V::seq(keyed.into_iter().map(|(_, v)| v).collect()))
            }
        })
    }

    fn var(&mut self, name: &str, input: &V<'a>, env: &Env<'a>) -> Option<V<'a>> {
        match name {
            "" => Some(input.clone()),
            "$" => Some(V::Json(self.ctx.input)),
            _ => {
                if let Some(v) = env.lookup(name) {
                    return Some(v);
                }
                if name == "states" {
                    return Some(self.states());
                }
                if let Some(v) = self.ctx.variables.get(name) {
                    return Some(V::Json(v));
                }
                if BUILTINS.contains(&name) {
                    return Some(V::Func(Rc::new(Func::Builtin(
                        BUILTINS.iter().find(|b| **b == name).copied().unwrap_or(""),
                    ))));
                }
                None
            }
        }
    }

    fn path(&mut self, steps: &[Node], input: &V<'a>, env: &Env<'a>) -> R<Option<V<'a>>> {
        // The first step sees the input as a sequence when it is an array (unless the
        // step is a variable, which ignores the context).
        let mut seq: Vec<V<'a>> = match steps.first() {
            Some(Node::Var(_)) => vec![input.clone()],
            _ if input.is_array() => input.to_vec(),
            _ => vec![input.clone()],
        };
        let last = steps.len().saturating_sub(1);
        // `a.b[]` anywhere in the path: the whole result is an array.
        let mut keep = false;
        for (i, step) in steps.iter().enumerate() {
            let step = match step {
                Node::KeepArray(inner) => {
                    keep = true;
                    inner.as_ref()
                }
                other => other,
            };
            let mut results: Vec<V<'a>> = Vec::new();
            for item in &seq {
                if let Some(r) = self.eval(step, item, env)? {
                    results.push(r);
                }
            }
            if i == last
                && results.len() == 1
                && results[0].is_array()
                && results[0].kind() != ArrKind::Seq
            {
                // A single array result of the last step is kept whole
                // (e.g. `$states.input.items`).
                return Ok(results.pop());
            }
            let mut next = Vec::new();
            for r in results {
                if r.is_array() && r.kind() != ArrKind::Cons {
                    next.extend(r.to_vec());
                } else {
                    next.push(r);
                }
            }
            seq = next;
        }
        if keep {
            return Ok(if seq.is_empty() {
                None
            } else {
                Some(V::Arr(Rc::new(seq), ArrKind::Cons))
            });
        }
        Ok(collapse(seq))
    }

    fn filter(&mut self, v: &V<'a>, pred: &Node, env: &Env<'a>) -> R<Option<V<'a>>> {
        let items = v.to_vec();
        // A literal number predicate is an index (negative counts from the end).
        if let Node::Num(n) = pred {
            return Ok(index(&items, *n));
        }
        if let Node::Neg(inner) = pred
            && let Node::Num(n) = inner.as_ref()
        {
            return Ok(index(&items, -*n));
        }
        let mut out = Vec::new();
        let len = items.len();
        for (i, item) in items.into_iter().enumerate() {
            let r = self.eval(pred, &item, env)?;
            let keep = match &r {
                Some(rv) if rv.as_f64().is_some() => {
                    let n = rv.as_f64().unwrap_or(0.0).floor();
                    let n = if n < 0.0 { n + len as f64 } else { n };
                    n == i as f64
                }
                Some(rv)
                    if rv.is_array()
                        && rv.to_vec().iter().all(|x| x.as_f64().is_some())
                        && rv.len() > 0 =>
                {
                    rv.to_vec().iter().any(|x| {
                        let n = x.as_f64().unwrap_or(-1.0).floor();
                        let n = if n < 0.0 { n + len as f64 } else { n };
                        n == i as f64
                    })
                }
                _ => truthy(&r),
            };
            if keep {
                out.push(item);
            }
        }
        Ok(collapse(out))
    }

    fn binary(
        &mut self,
        op: BinOp,
        l: &Node,
        r: &Node,
        input: &V<'a>,
        env: &Env<'a>,
    ) -> R<Option<V<'a>>> {
        match op {
            BinOp::And => {
                let lv = self.eval(l, input, env)?;
                if !truthy(&lv) {
                    return Ok(Some(V::Bool(false)));
                }
                let rv = self.eval(r, input, env)?;
                return Ok(Some(V::Bool(truthy(&rv))));
            }
            BinOp::Or => {
                let lv = self.eval(l, input, env)?;
                if truthy(&lv) {
                    return Ok(Some(V::Bool(true)));
                }
                let rv = self.eval(r, input, env)?;
                return Ok(Some(V::Bool(truthy(&rv))));
            }
            _ => {}
        }
        let lv = self.eval(l, input, env)?;
        let rv = self.eval(r, input, env)?;
        let sym = match op {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            _ => "",
        };
        Ok(match op {
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod => {
                let (Some(a), Some(b)) = (&lv, &rv) else {
                    check_num(&lv, "left", sym)?;
                    check_num(&rv, "right", sym)?;
                    return Ok(None);
                };
                let x = a.as_f64().ok_or_else(|| {
                    format!("T2001: The left side of the {sym} operator must evaluate to a number")
                })?;
                let y = b.as_f64().ok_or_else(|| {
                    format!("T2002: The right side of the {sym} operator must evaluate to a number")
                })?;
                let n = match op {
                    BinOp::Add => x + y,
                    BinOp::Sub => x - y,
                    BinOp::Mul => x * y,
                    BinOp::Div => x / y,
                    _ => x % y,
                };
                if !n.is_finite() {
                    return Err("D1001: Number out of range".into());
                }
                Some(V::Num(n))
            }
            BinOp::Eq | BinOp::Ne => {
                let (Some(a), Some(b)) = (&lv, &rv) else {
                    return Ok(Some(V::Bool(false)));
                };
                let eq = deep_eq(a, b);
                Some(V::Bool(if op == BinOp::Eq { eq } else { !eq }))
            }
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                // Type errors first (as jsonata-js checks them), then undefined → false.
                for side in [&lv, &rv].into_iter().flatten() {
                    if side.as_f64().is_none() && side.as_str().is_none() {
                        return Err(format!(
                            "T2010: The expressions either side of operator \"{sym}\" must evaluate to numeric or string values"
                        ));
                    }
                }
                let (Some(a), Some(b)) = (&lv, &rv) else {
                    return Ok(Some(V::Bool(false)));
                };
                let ord = if let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) {
                    x.partial_cmp(&y)
                } else if let (Some(x), Some(y)) = (a.as_str(), b.as_str()) {
                    Some(x.cmp(y))
                } else {
                    return Err(format!(
                        "T2010: The expressions either side of operator \"{sym}\" must be of the same data type and either a number or a string"
                    ));
                };
                let Some(ord) = ord else {
                    return Ok(Some(V::Bool(false)));
                };
                use std::cmp::Ordering::*;
                Some(V::Bool(match op {
                    BinOp::Lt => ord == Less,
                    BinOp::Le => ord != Greater,
                    BinOp::Gt => ord == Greater,
                    _ => ord != Less,
                }))
            }
            BinOp::Concat => {
                let a = match &lv {
                    Some(v) => stringify(v)?,
                    None => String::new(),
                };
                let b = match &rv {
                    Some(v) => stringify(v)?,
                    None => String::new(),
                };
                Some(V::str(&(a + &b)))
            }
            BinOp::In => {
                let (Some(a), Some(b)) = (&lv, &rv) else {
                    return Ok(Some(V::Bool(false)));
                };
                Some(V::Bool(b.to_vec().iter().any(|x| deep_eq(a, x))))
            }
            BinOp::Range => {
                let (Some(a), Some(b)) = (&lv, &rv) else {
                    return Ok(None);
                };
                let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) else {
                    return Err("T2003: The left and right sides of the range operator (..) must evaluate to integers".into());
                };
                if x.fract() != 0.0 || y.fract() != 0.0 {
                    return Err("T2003: The left and right sides of the range operator (..) must evaluate to integers".into());
                }
                if y - x + 1.0 > MAX_RANGE {
                    return Err("D2014: The size of the sequence allocated by the range operator (..) must not exceed 1e7".into());
                }
                if x > y {
                    return Ok(None);
                }
                let mut out = Vec::with_capacity((y - x + 1.0) as usize);
                let mut i = x;
                while i <= y {
                    out.push(V::Num(i));
                    i += 1.0;
                }
                Some(V::array(out))
            }
            BinOp::And | BinOp::Or => None,
        })
    }

    fn apply(
        &mut self,
        func: &Func<'a>,
        args: Vec<Option<V<'a>>>,
        input: &V<'a>,
    ) -> R<Option<V<'a>>> {
        match func {
            Func::Lambda { params, body, env } => {
                let scope = Scope::child(env);
                for (i, p) in params.iter().enumerate() {
                    if let Some(Some(v)) = args.get(i) {
                        scope.bind(p, v.clone());
                    }
                }
                self.eval(body, input, &scope)
            }
            Func::Builtin(name) => self.builtin(name, args, input),
            Func::Regex(re) => {
                let text = args.first().cloned().flatten();
                let Some(text) = text.as_ref().and_then(V::as_str) else {
                    return Ok(None);
                };
                Ok(regex_matches(re, text, Some(1)).into_iter().next())
            }
        }
    }

    fn call_fn(&mut self, f: &V<'a>, args: Vec<Option<V<'a>>>, input: &V<'a>) -> R<Option<V<'a>>> {
        match f {
            V::Func(func) => {
                let func = func.clone();
                // Pass only as many arguments as a lambda declares (JSONata's HOF convention).
                let args = match func.as_ref() {
                    Func::Lambda { params, .. } => args.into_iter().take(params.len()).collect(),
                    Func::Builtin(_) | Func::Regex(_) => args,
                };
                self.apply(&func, args, input)
            }
            _ => Err("T1006: Attempted to invoke a non-function".into()),
        }
    }
}

fn check_num(v: &Option<V<'_>>, side: &str, sym: &str) -> R<()> {
    match v {
        Some(x) if x.as_f64().is_none() => Err(format!(
            "T200{}: The {side} side of the {sym} operator must evaluate to a number",
            if side == "left" { 1 } else { 2 }
        )),
        _ => Ok(()),
    }
}

fn order(a: &Option<V<'_>>, b: &Option<V<'_>>) -> R<std::cmp::Ordering> {
    use std::cmp::Ordering;
    Ok(match (a, b) {
        (None, None) => Ordering::Equal,
        (None, _) => Ordering::Greater,
        (_, None) => Ordering::Less,
        (Some(x), Some(y)) => {
            if let (Some(p), Some(q)) = (x.as_f64(), y.as_f64()) {
                p.partial_cmp(&q).unwrap_or(Ordering::Equal)
            } else if let (Some(p), Some(q)) = (x.as_str(), y.as_str()) {
                p.cmp(q)
            } else {
                return Err("T2008: The expressions within an order-by clause must evaluate to numeric or string values".into());
            }
        }
    })
}

fn index<'a>(items: &[V<'a>], n: f64) -> Option<V<'a>> {
    let n = n.floor();
    let i = if n < 0.0 { n + items.len() as f64 } else { n };
    if i < 0.0 {
        return None;
    }
    items.get(i as usize).cloned()
}

fn push_flat<'a>(out: &mut Vec<V<'a>>, v: V<'a>) {
    if v.is_array() && v.kind() != ArrKind::Cons {
        out.extend(v.to_vec());
    } else {
        out.push(v);
    }
}

fn lookup_name<'a>(input: &V<'a>, name: &str) -> Option<V<'a>> {
    if input.is_array() {
        let mut out = Vec::new();
        for item in input.to_vec() {
            if let Some(v) = lookup_name(&item, name) {
                push_flat(&mut out, v);
            }
        }
        return collapse(out);
    }
    input.field(name)
}

fn descendants<'a>(v: &V<'a>, out: &mut Vec<V<'a>>, depth: usize) {
    if depth > 500 {
        return;
    }
    if !v.is_array() {
        out.push(v.clone());
    }
    if let Some(items) = v.items() {
        for i in items {
            descendants(&i, out, depth + 1);
        }
    } else if let Some(entries) = v.entries() {
        for (_, c) in entries {
            descendants(&c, out, depth + 1);
        }
    }
}

// ------------------------------------------------------------------ function library

/// `$match` results: `{match, index, groups}` per match (index in characters, as in
/// JavaScript for BMP text).
fn regex_matches<'a>(re: &regex::Regex, text: &str, limit: Option<usize>) -> Vec<V<'a>> {
    let mut out = Vec::new();
    for caps in re.captures_iter(text) {
        if limit.is_some_and(|l| out.len() >= l) {
            break;
        }
        let Some(m) = caps.get(0) else { continue };
        let groups: Vec<V<'a>> = caps
            .iter()
            .skip(1)
            .map(|g| V::str(g.map_or("", |g| g.as_str())))
            .collect();
        out.push(V::Obj(Rc::new(vec![
            ("match".to_owned(), V::str(m.as_str())),
            (
                "index".to_owned(),
                V::Num(text[..m.start()].chars().count() as f64),
            ),
            ("groups".to_owned(), V::array(groups)),
        ])));
    }
    out
}

const BUILTINS: &[&str] = &[
    "eval",
    "match",
    "string",
    "number",
    "boolean",
    "not",
    "exists",
    "count",
    "sum",
    "max",
    "min",
    "average",
    "length",
    "substring",
    "substringBefore",
    "substringAfter",
    "uppercase",
    "lowercase",
    "trim",
    "pad",
    "contains",
    "split",
    "join",
    "replace",
    "keys",
    "values",
    "lookup",
    "merge",
    "append",
    "reverse",
    "sort",
    "distinct",
    "zip",
    "map",
    "filter",
    "reduce",
    "each",
    "single",
    "sift",
    "spread",
    "type",
    "abs",
    "floor",
    "ceil",
    "round",
    "power",
    "sqrt",
    "random",
    "millis",
    "now",
    "toMillis",
    "fromMillis",
    "base64encode",
    "base64decode",
    "error",
    "assert",
    "shuffle",
    "formatBase",
    "formatNumber",
    "formatInteger",
    "parseInteger",
    "encodeUrl",
    "encodeUrlComponent",
    "decodeUrl",
    "decodeUrlComponent",
    "partition",
    "range",
    "hash",
    "uuid",
    "parse",
];

impl<'c, 'a> Ev<'c, 'a> {
    fn builtin(&mut self, name: &str, args: Vec<Option<V<'a>>>, input: &V<'a>) -> R<Option<V<'a>>> {
        let arg = |i: usize| args.get(i).cloned().flatten();
        let need_str = |i: usize| -> R<Option<String>> {
            match arg(i) {
                None => Ok(None),
                Some(v) => v.as_str().map(|s| Some(s.to_owned())).ok_or_else(|| {
                    format!("T0410: Argument {} of function ${name} does not match function signature (expected a string, got {})", i + 1, v.type_name())
                }),
            }
        };
        let need_num = |i: usize| -> R<Option<f64>> {
            match arg(i) {
                None => Ok(None),
                Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                    format!("T0410: Argument {} of function ${name} does not match function signature (expected a number, got {})", i + 1, v.type_name())
                }),
            }
        };
        let nums = |v: &V<'a>| -> R<Vec<f64>> {
            v.to_vec()
                .iter()
                .map(|x| {
                    x.as_f64().ok_or_else(|| {
                        format!("T0412: Argument 1 of function ${name} must be an array of numbers")
                    })
                })
                .collect()
        };
        Ok(match name {
            "string" => match args.first() {
                None => Some(V::str(&stringify(input)?)),
                Some(None) => None,
                Some(Some(v)) => {
                    let pretty = arg(1).is_some_and(|p| truthy_v(&p));
                    if pretty && (v.is_array() || v.entries().is_some()) {
                        let json = to_json(v)?;
                        Some(V::str(&serde_json::to_string_pretty(&json).unwrap_or_default()))
                    } else {
                        Some(V::str(&stringify(v)?))
                    }
                }
            },
            "number" => match arg(0) {
                None => None,
                Some(v) => {
                    if let Some(n) = v.as_f64() {
                        Some(V::Num(n))
                    } else if let Some(b) = v.as_bool() {
                        Some(V::Num(if b { 1.0 } else { 0.0 }))
                    } else if let Some(s) = v.as_str() {
                        let n: f64 = parse_number(s).ok_or_else(|| {
                            format!("D3030: Unable to cast value to a number: \"{s}\"")
                        })?;
                        Some(V::Num(n))
                    } else {
                        return Err(format!(
                            "D3030: Unable to cast value to a number: {}",
                            v.type_name()
                        ));
                    }
                }
            },
            "boolean" => arg(0).map(|v| V::Bool(truthy_v(&v))),
            "not" => arg(0).map(|v| V::Bool(!truthy_v(&v))),
            "exists" => Some(V::Bool(arg(0).is_some())),
            "count" => Some(V::Num(arg(0).map_or(0, |v| v.to_vec().len()) as f64)),
            "sum" => match arg(0) {
                None => None,
                Some(v) => Some(V::Num(nums(&v)?.iter().sum())),
            },
            "max" | "min" => match arg(0) {
                None => None,
                Some(v) => {
                    let ns = nums(&v)?;
                    if ns.is_empty() {
                        None
                    } else if name == "max" {
                        Some(V::Num(ns.iter().copied().fold(f64::MIN, f64::max)))
                    } else {
                        Some(V::Num(ns.iter().copied().fold(f64::MAX, f64::min)))
                    }
                }
            },
            "average" => match arg(0) {
                None => None,
                Some(v) => {
                    let ns = nums(&v)?;
                    if ns.is_empty() {
                        None
                    } else {
                        Some(V::Num(ns.iter().sum::<f64>() / ns.len() as f64))
                    }
                }
            },
            "length" => need_str(0)?.map(|s| V::Num(s.chars().count() as f64)),
            "substring" => match need_str(0)? {
                None => None,
                Some(s) => {
                    let chars: Vec<char> = s.chars().collect();
                    let len = chars.len() as f64;
                    let mut start = need_num(1)?.unwrap_or(0.0).trunc();
                    if start < 0.0 {
                        start = (len + start).max(0.0);
                    }
                    let count = need_num(2)?.map(f64::trunc);
                    let end = match count {
                        Some(c) if c <= 0.0 => start,
                        Some(c) => (start + c).min(len),
                        None => len,
                    };
                    let (s0, e0) = (start.min(len) as usize, end.max(start).min(len) as usize);
                    Some(V::str(&chars[s0..e0].iter().collect::<String>()))
                }
            },
            "substringBefore" | "substringAfter" => match (need_str(0)?, need_str(1)?) {
                (Some(s), Some(c)) => Some(V::str(match s.find(&c) {
                    Some(i) if name == "substringBefore" => &s[..i],
                    Some(i) => &s[i + c.len()..],
                    None => &s,
                })),
                (Some(s), None) => Some(V::str(&s)),
                _ => None,
            },
            "uppercase" => need_str(0)?.map(|s| V::str(&s.to_uppercase())),
            "lowercase" => need_str(0)?.map(|s| V::str(&s.to_lowercase())),
            "trim" => {
                need_str(0)?.map(|s| V::str(&s.split_whitespace().collect::<Vec<_>>().join(" ")))
            }
            "pad" => match need_str(0)? {
                None => None,
                Some(s) => {
                    let width = need_num(1)?.unwrap_or(0.0);
                    let pad = need_str(2)?.unwrap_or_else(|| " ".into());
                    let pad = if pad.is_empty() { " ".to_owned() } else { pad };
                    let len = s.chars().count();
                    let target = width.abs().min(1e6) as usize;
                    if target <= len {
                        Some(V::str(&s))
                    } else {
                        let fill: String = pad.chars().cycle().take(target - len).collect();
                        Some(V::str(&if width < 0.0 { fill + &s } else { s + &fill }))
                    }
                }
            },
            "match" => match need_str(0)? {
                None => None,
                Some(text) => {
                    let Some(V::Func(f)) = arg(1) else {
                        return Err("T0410: Argument 2 of function $match must be a regular expression".into());
                    };
                    let Func::Regex(re) = f.as_ref() else {
                        return Err("T0410: Argument 2 of function $match must be a regular expression".into());
                    };
                    let limit = need_num(2)?.map(|n| n.max(0.0) as usize);
                    collapse(regex_matches(re, &text, limit))
                }
            },
            "contains" if matches!(arg(1), Some(V::Func(_))) => match (need_str(0)?, arg(1)) {
                (Some(text), Some(V::Func(f))) => match f.as_ref() {
                    Func::Regex(re) => Some(V::Bool(re.is_match(&text))),
                    _ => return Err("T0410: Argument 2 of function $contains must be a string or a regular expression".into()),
                },
                _ => None,
            },
            "split" if matches!(arg(1), Some(V::Func(_))) => match (need_str(0)?, arg(1)) {
                (Some(text), Some(V::Func(f))) => match f.as_ref() {
                    Func::Regex(re) => {
                        let limit = need_num(2)?.map(|n| n.max(0.0) as usize);
                        let parts = re.split(&text).map(V::str);
                        Some(V::array(match limit {
                            Some(l) => parts.take(l).collect(),
                            None => parts.collect(),
                        }))
                    }
                    _ => return Err("T0410: Argument 2 of function $split must be a string or a regular expression".into()),
                },
                _ => None,
            },
            "replace" if matches!(arg(1), Some(V::Func(_))) => match (need_str(0)?, arg(1)) {
                (Some(text), Some(V::Func(f))) => match f.as_ref() {
                    Func::Regex(re) => {
                        let rep = need_str(2)?.unwrap_or_default();
                        let limit = need_num(3)?.map(|n| n.max(0.0) as usize).unwrap_or(0);
                        Some(V::str(&re.replacen(&text, limit, rep.as_str())))
                    }
                    _ => return Err("T0410: Argument 2 of function $replace must be a string or a regular expression".into()),
                },
                _ => None,
            },
            "contains" => match (need_str(0)?, need_str(1)?) {
                (Some(s), Some(p)) => Some(V::Bool(s.contains(&p))),
                _ => None,
            },
            "split" => match need_str(0)? {
                None => None,
                Some(s) => {
                    let sep = need_str(1)?.ok_or("T0410: Argument 2 of function $split must be a string (regular expressions are not supported)")?;
                    let limit = need_num(2)?.map(|n| n.max(0.0) as usize);
                    let parts: Vec<V<'a>> = if sep.is_empty() {
                        s.chars().map(|c| V::str(&c.to_string())).collect()
                    } else {
                        s.split(sep.as_str()).map(V::str).collect()
                    };
                    let parts = match limit {
                        Some(l) => parts.into_iter().take(l).collect(),
                        None => parts,
                    };
                    Some(V::array(parts))
                }
            },
            "join" => match arg(0) {
                None => None,
                Some(v) => {
                    let sep = need_str(1)?.unwrap_or_default();
                    let strs: R<Vec<String>> = v
                        .to_vec()
                        .iter()
                        .map(|x| x.as_str().map(str::to_owned).ok_or_else(|| "T0412: Argument 1 of function $join must be an array of strings".to_string()))
                        .collect();
                    Some(V::str(&strs?.join(&sep)))
                }
            },
            "replace" => {
                match need_str(0)? {
                    None => None,
                    Some(s) => {
                        let pat = need_str(1)?.ok_or("T0410: Argument 2 of function $replace must be a string (regular expressions are not supported)")?;
                        if pat.is_empty() {
                            return Err("D3010: Second argument of replace function cannot be an empty string".into());
                        }
                        let rep = need_str(2)?.unwrap_or_default();
                        match need_num(3)? {
                            Some(l) => Some(V::str(&s.replacen(&pat, &rep, l.max(0.0) as usize))),
                            None => Some(V::str(&s.replace(&pat, &rep))),
                        }
                    }
                }
            }
            "keys" => match arg(0) {
                None => None,
                Some(v) => {
                    let mut keys: Vec<String> = Vec::new();
                    for item in if v.is_array() { v.to_vec() } else { vec![v] } {
                        for (k, _) in item.entries().unwrap_or_default() {
                            if !keys.contains(&k) {
                                keys.push(k);
                            }
                        }
                    }
                    collapse(keys.iter().map(|k| V::str(k)).collect())
                }
            },
            "values" => arg(0).and_then(|v| {
                collapse(
                    v.entries()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(_, x)| x)
                        .collect(),
                )
            }),
            "lookup" => match (arg(0), need_str(1)?) {
                (Some(v), Some(k)) => lookup_name(&v, &k),
                _ => None,
            },
            "merge" => match arg(0) {
                None => None,
                Some(v) => {
                    let mut out: Vec<(String, V<'a>)> = Vec::new();
                    for item in v.to_vec() {
                        for (k, x) in item.entries().ok_or(
                            "T0412: Argument 1 of function $merge must be an array of objects",
                        )? {
                            if let Some(slot) = out.iter_mut().find(|(k2, _)| *k2 == k) {
                                slot.1 = x;
                            } else {
                                out.push((k, x));
                            }
                        }
                    }
                    Some(V::Obj(Rc::new(out)))
                }
            },
            "append" => match (arg(0), arg(1)) {
                (None, b) => b,
                (a, None) => a,
                (Some(a), Some(b)) => {
                    let mut items = a.to_vec();
                    items.extend(b.to_vec());
                    Some(V::array(items))
                }
            },
            "reverse" => arg(0).map(|v| {
                let mut items = v.to_vec();
                items.reverse();
                V::array(items)
            }),
            "sort" => match arg(0) {
                None => None,
                Some(v) => {
                    let mut items = v.to_vec();
                    match arg(1) {
                        None => {
                            let mut err = None;
                            items.sort_by(|a, b| match order(&Some(a.clone()), &Some(b.clone())) {
                                Ok(o) => o,
                                Err(e) => {
                                    err.get_or_insert(e);
                                    std::cmp::Ordering::Equal
                                }
                            });
                            if let Some(e) = err {
                                return Err(e.replace("T2008", "D3070"));
                            }
                        }
                        Some(f) => {
                            // Insertion-based merge sort through the comparator ($f(a, b) true
                            // means a goes after b), stable like JSONata's.
                            let mut sorted: Vec<V<'a>> = Vec::with_capacity(items.len());
                            for item in items {
                                let mut pos = sorted.len();
                                while pos > 0 {
                                    let after = self.call_fn(
                                        &f,
                                        vec![Some(sorted[pos - 1].clone()), Some(item.clone())],
                                        input,
                                    )?;
                                    if truthy(&after) {
                                        pos -= 1;
                                    } else {
                                        break;
                                    }
                                }
                                sorted.insert(pos, item);
                            }
                            items = sorted;
                        }
                    }
                    Some(V::array(items))
                }
            },
            "distinct" => arg(0).map(|v| {
                if !v.is_array() {
                    return v;
                }
                let mut out: Vec<V<'a>> = Vec::new();
                for x in v.to_vec() {
                    if !out.iter().any(|y| deep_eq(&x, y)) {
                        out.push(x);
                    }
                }
                V::array(out)
            }),
            "shuffle" => arg(0).map(|v| {
                let mut items = v.to_vec();
                for i in (1..items.len()).rev() {
                    let j = (self.ctx.entropy.next_u64() % (i as u64 + 1)) as usize;
                    items.swap(i, j);
                }
                V::array(items)
            }),
            "zip" => {
                let arrays: Vec<Vec<V<'a>>> = args
                    .iter()
                    .map(|a| a.as_ref().map(V::to_vec).unwrap_or_default())
                    .collect();
                let n = arrays.iter().map(Vec::len).min().unwrap_or(0);
                Some(V::array(
                    (0..n)
                        .map(|i| V::array(arrays.iter().map(|a| a[i].clone()).collect()))
                        .collect(),
                ))
            }
            "map" | "filter" | "each" => {
                let Some(f) = arg(1) else {
                    return Err(format!(
                        "T0410: Argument 2 of function ${name} must be a function"
                    ));
                };
                let Some(v) = arg(0) else { return Ok(None) };
                let mut out = Vec::new();
                if name == "each" {
                    for (k, x) in v.entries().unwrap_or_default() {
                        if let Some(r) = self.call_fn(
                            &f,
                            vec![Some(x), Some(V::str(&k)), Some(v.clone())],
                            input,
                        )? {
                            out.push(r);
                        }
                    }
                    return Ok(collapse(out));
                }
                let items = v.to_vec();
                let whole = V::array(items.clone());
                for (i, x) in items.into_iter().enumerate() {
                    let r = self.call_fn(
                        &f,
                        vec![Some(x.clone()), Some(V::Num(i as f64)), Some(whole.clone())],
                        input,
                    )?;
                    if name == "map" {
                        if let Some(r) = r {
                            out.push(r);
                        }
                    } else if truthy(&r) {
                        out.push(x);
                    }
                }
                collapse(out)
            }
            "single" => match arg(0) {
                None => None,
                Some(v) => {
                    let mut found = Vec::new();
                    for (i, x) in v.to_vec().into_iter().enumerate() {
                        let keep = match arg(1) {
                            Some(f) => truthy(&self.call_fn(
                                &f,
                                vec![Some(x.clone()), Some(V::Num(i as f64)), Some(v.clone())],
                                input,
                            )?),
                            None => true,
                        };
                        if keep {
                            found.push(x);
                        }
                    }
                    match found.len() {
                        1 => found.pop(),
                        0 => return Err("D3139: The $single() function expected exactly 1 matching result. Instead it matched 0.".into()),
                        n => return Err(format!("D3138: The $single() function expected exactly 1 matching result. Instead it matched {n}.")),
                    }
                }
            },
            "reduce" => {
                let Some(f) = arg(1) else {
                    return Err("T0410: Argument 2 of function $reduce must be a function".into());
                };
                let Some(v) = arg(0) else { return Ok(None) };
                let mut items = v.to_vec().into_iter();
                let mut acc = match arg(2) {
                    Some(init) => Some(init),
                    None => items.next(),
                };
                for x in items {
                    acc = self.call_fn(&f, vec![acc, Some(x)], input)?;
                }
                acc
            }
            "sift" => match (arg(0), arg(1)) {
                (Some(v), Some(f)) => {
                    let mut out = Vec::new();
                    for (k, x) in v.entries().unwrap_or_default() {
                        if truthy(&self.call_fn(
                            &f,
                            vec![Some(x.clone()), Some(V::str(&k)), Some(v.clone())],
                            input,
                        )?) {
                            out.push((k, x));
                        }
                    }
                    if out.is_empty() {
                        None
                    } else {
                        Some(V::Obj(Rc::new(out)))
                    }
                }
                _ => None,
            },
            "spread" => arg(0).map(|v| {
                let mut out = Vec::new();
                for item in if v.is_array() { v.to_vec() } else { vec![v] } {
                    match item.entries() {
                        Some(es) => {
                            out.extend(es.into_iter().map(|(k, x)| V::Obj(Rc::new(vec![(k, x)]))))
                        }
                        None => out.push(item),
                    }
                }
                V::seq(out)
            }),
            "type" => arg(0).map(|v| V::str(v.type_name())),
            "abs" => need_num(0)?.map(|n| V::Num(n.abs())),
            "floor" => need_num(0)?.map(|n| V::Num(n.floor())),
            "ceil" => need_num(0)?.map(|n| V::Num(n.ceil())),
            "sqrt" => match need_num(0)? {
                Some(n) if n < 0.0 => {
                    return Err(
                        "D3060: The sqrt function cannot be applied to a negative number".into(),
                    );
                }
                n => n.map(|n| V::Num(n.sqrt())),
            },
            "power" => match (need_num(0)?, need_num(1)?) {
                (Some(b), Some(e)) => {
                    let r = b.powf(e);
                    if !r.is_finite() {
                        return Err("D3061: The power function has resulted in a value that cannot be represented as a JSON number".into());
                    }
                    Some(V::Num(r))
                }
                _ => None,
            },
            "round" => match need_num(0)? {
                None => None,
                Some(n) => {
                    let prec = need_num(1)?.unwrap_or(0.0).clamp(-15.0, 15.0) as i32;
                    let f = 10f64.powi(prec);
                    let x = n * f;
                    // Round half to even, as JSONata does.
                    let r = x.round();
                    let r = if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
                        r - x.signum()
                    } else {
                        r
                    };
                    Some(V::Num(r / f))
                }
            },
            "random" => {
                // Step Functions' $random([seed]): a float in [0, 1).
                let bits = match need_num(0)? {
                    Some(seed) => {
                        crate::jsonpath::Entropy::next_u64(&mut SplitMix64(seed as i64 as u64))
                    }
                    None => self.ctx.entropy.next_u64(),
                };
                Some(V::Num((bits >> 11) as f64 / (1u64 << 53) as f64))
            }
            "millis" | "now" => {
                // The local engine has no clock here: use the state's entered time from the
                // context object, so results are reproducible.
                let entered = self
                    .ctx
                    .context
                    .pointer("/State/EnteredTime")
                    .or_else(|| self.ctx.context.pointer("/Execution/StartTime"))
                    .and_then(Value::as_str)
                    .ok_or(
                        "D3100: $now()/$millis() need State.EnteredTime in the context object",
                    )?;
                if name == "now" {
                    Some(V::str(entered))
                } else {
                    let ns = crate::choice::parse_timestamp(entered)
                        .ok_or("D3110: invalid EnteredTime")?;
                    Some(V::Num((ns / 1_000_000) as f64))
                }
            }
            "toMillis" => match need_str(0)? {
                None => None,
                Some(s) => {
                    let ns = crate::choice::parse_timestamp(&s).ok_or_else(|| {
                        format!("D3110: The timestamp '{s}' is not ISO 8601 (RFC 3339)")
                    })?;
                    Some(V::Num((ns.div_euclid(1_000_000)) as f64))
                }
            },
            "fromMillis" => need_num(0)?.map(|ms| V::str(&clock::format_rfc3339_millis(ms as i64))),
            "base64encode" => need_str(0)?.map(|s| V::str(&base64_encode(s.as_bytes()))),
            "base64decode" => match need_str(0)? {
                None => None,
                Some(s) => {
                    let bytes = base64_decode(&s).ok_or("D3137: the string is not valid Base64")?;
                    Some(V::str(&String::from_utf8_lossy(&bytes)))
                }
            },
            "error" => {
                let msg = need_str(0)?.unwrap_or_else(|| "$error() function evaluated".into());
                return Err(format!("D3137: {msg}"));
            }
            "assert" => {
                let ok = arg(0)
                    .and_then(|v| v.as_bool())
                    .ok_or("T0410: Argument 1 of function $assert must be a boolean")?;
                if !ok {
                    let msg = need_str(1)?.unwrap_or_else(|| "$assert() statement failed".into());
                    return Err(format!("D3141: {msg}"));
                }
                None
            }
            "formatNumber" => match need_num(0)? {
                None => None,
                Some(n) => {
                    let picture = need_str(1)?.ok_or("T0410: Argument 2 of function $formatNumber must be a picture string")?;
                    Some(V::str(&format_number(n, &picture)?))
                }
            },
            "formatInteger" => match need_num(0)? {
                None => None,
                Some(n) => {
                    let picture = need_str(1)?.ok_or("T0410: Argument 2 of function $formatInteger must be a picture string")?;
                    Some(V::str(&format_number(n.trunc(), &picture)?))
                }
            },
            "parseInteger" => match need_str(0)? {
                None => None,
                Some(text) => {
                    let digits: String = text.chars().filter(|c| *c != ',').collect();
                    let n: f64 = digits.trim().parse().map_err(|_| {
                        format!("D3137: Unable to parse '{text}' as an integer")
                    })?;
                    Some(V::Num(n.trunc()))
                }
            },
            "encodeUrlComponent" | "encodeUrl" => need_str(0)?.map(|s| {
                let keep: &[u8] = if name == "encodeUrl" {
                    b"-_.!~*'();,/?:@&=+$#"
                } else {
                    b"-_.!~*'()"
                };
                let mut out = String::with_capacity(s.len());
                for b in s.bytes() {
                    if b.is_ascii_alphanumeric() || keep.contains(&b) {
                        out.push(b as char);
                    } else {
                        out.push_str(&format!("%{b:02X}"));
                    }
                }
                V::str(&out)
            }),
            "decodeUrlComponent" | "decodeUrl" => match need_str(0)? {
                None => None,
                Some(s) => {
                    let b = s.as_bytes();
                    let mut bytes = Vec::with_capacity(b.len());
                    let mut i = 0;
                    while i < b.len() {
                        if b[i] == b'%' {
                            let hex = s
                                .get(i + 1..i + 3)
                                .and_then(|h| u8::from_str_radix(h, 16).ok())
                                .ok_or("D3140: Malformed URL passed to $decodeUrl")?;
                            bytes.push(hex);
                            i += 3;
                        } else {
                            bytes.push(b[i]);
                            i += 1;
                        }
                    }
                    Some(V::str(&String::from_utf8(bytes).map_err(|_| {
                        "D3140: Malformed URL passed to $decodeUrl".to_string()
                    })?))
                }
            },
            "formatBase" => {
                match need_num(0)? {
                    None => None,
                    Some(n) => {
                        let radix = need_num(1)?.unwrap_or(10.0) as u32;
                        if !(2..=36).contains(&radix) {
                            return Err("D3100: The radix of the formatBase function must be between 2 and 36".into());
                        }
                        let r = n.round() as i64;
                        let neg = r < 0;
                        // unsigned_abs: i64::MIN has no positive i64 counterpart.
                        let mut x = r.unsigned_abs();
                        let mut digits = Vec::new();
                        loop {
                            digits.push(
                                std::char::from_digit((x % u64::from(radix)) as u32, radix)
                                    .unwrap_or('0'),
                            );
                            x /= u64::from(radix);
                            if x == 0 {
                                break;
                            }
                        }
                        if neg {
                            digits.push('-');
                        }
                        Some(V::str(&digits.iter().rev().collect::<String>()))
                    }
                }
            }
            // ---- Step Functions additions
            "partition" => {
                let Some(v) = arg(0) else { return Ok(None) };
                let size = need_num(1)?.ok_or("The $partition function needs a chunk size")?;
                if size.fract() != 0.0 || size <= 0.0 {
                    return Err(format!(
                        "The chunk size argument of $partition must be a positive integer, but was {}",
                        fmt_num(size)
                    ));
                }
                let items = v.to_vec();
                let chunks: Vec<V<'a>> = items
                    .chunks(size.min(1e9) as usize)
                    .map(|c| V::array(c.to_vec()))
                    .collect();
                Some(V::Arr(Rc::new(chunks), ArrKind::Cons))
            }
            "range" => {
                let start = need_num(0)?.ok_or("The $range function needs a start")?;
                let end = need_num(1)?.ok_or("The $range function needs an end")?;
                let step = need_num(2)?.unwrap_or(1.0);
                if step == 0.0 || start.fract() != 0.0 || end.fract() != 0.0 || step.fract() != 0.0
                {
                    return Err(
                        "The arguments of $range must be integers and the step must not be 0"
                            .into(),
                    );
                }
                let count = if (step > 0.0 && end >= start) || (step < 0.0 && end <= start) {
                    ((end - start) / step).floor() + 1.0
                } else {
                    0.0
                };
                if count > 1000.0 {
                    return Err(format!(
                        "The $range function can create at most 1000 items, but {} were requested",
                        fmt_num(count)
                    ));
                }
                Some(V::Arr(
                    Rc::new(
                        (0..count as i64)
                            .map(|i| V::Num(start + i as f64 * step))
                            .collect(),
                    ),
                    ArrKind::Cons,
                ))
            }
            "hash" => match (arg(0), need_str(1)?) {
                (Some(v), alg) => {
                    let data = stringify(&v)?;
                    let alg = alg.unwrap_or_else(|| "SHA-256".into());
                    Some(V::str(&hash(&alg, data.as_bytes()).ok_or_else(|| format!("The hash algorithm '{alg}' is not supported; use MD5, SHA-1, SHA-256, SHA-384 or SHA-512"))?))
                }
                _ => None,
            },
            "uuid" => {
                let (a, b) = (self.ctx.entropy.next_u64(), self.ctx.entropy.next_u64());
                Some(V::str(&uuid_v4(a, b)))
            }
            "parse" => match need_str(0)? {
                None => None,
                Some(s) => {
                    let v: Value = serde_json::from_str(&s).map_err(|e| {
                        format!("The $parse function could not parse its argument as JSON: {e}")
                    })?;
                    Some(from_json(v))
                }
            },
            "eval" => {
                return Err(
                    "$eval is not available in Step Functions; use $parse to read JSON text"
                        .into(),
                );
            }
            other => {
                return Err(format!(
                    "T1006: Attempted to invoke a non-function (${other})"
                ));
            }
        })
    }
}

/// `$formatNumber` for decimal pictures (XPath `format-number` subset): optional prefix and
/// suffix, `0` (mandatory digit), `#` (optional digit), `,` grouping, `.` decimal point, and
/// `%` (percent). Exponents and per-mille are not supported.
fn format_number(n: f64, picture: &str) -> R<String> {
    let is_pic = |c: char| matches!(c, '0'..='9' | '#' | ',' | '.');
    let start = picture.find(is_pic).ok_or_else(|| {
        format!("D3085: The picture string '{picture}' must contain at least one digit or '#'")
    })?;
    let end = picture.rfind(is_pic).map_or(start, |e| e + 1);
    let (prefix, body, suffix) = (&picture[..start], &picture[start..end], &picture[end..]);
    if body.matches('.').count() > 1 {
        return Err(format!(
            "D3081: The picture string '{picture}' has more than one decimal point"
        ));
    }
    let (int_pic, frac_pic) = body.split_once('.').unwrap_or((body, ""));
    let min_int = int_pic.chars().filter(|c| c.is_ascii_digit()).count();
    let min_frac = frac_pic.chars().filter(|c| c.is_ascii_digit()).count();
    let max_frac = frac_pic
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '#')
        .count();
    let group = int_pic
        .rfind(',')
        .map(|i| int_pic[i + 1..].chars().filter(|c| *c != ',').count())
        .filter(|g| *g > 0);
    let mut v = n;
    if prefix.contains('%') || suffix.contains('%') {
        v *= 100.0;
    }
    if !v.is_finite() {
        return Err("D3001: Attempting to format Infinity or NaN".into());
    }
    let text = format!("{:.*}", max_frac.min(20), v.abs());
    let (int_digits, frac_digits) = text.split_once('.').unwrap_or((&text, ""));
    let mut frac = frac_digits.to_owned();
    while frac.len() > min_frac && frac.ends_with('0') {
        frac.pop();
    }
    let mut int = int_digits.trim_start_matches('0').to_owned();
    while int.len() < min_int {
        int.insert(0, '0');
    }
    if int.is_empty() && frac.is_empty() {
        int.push('0');
    }
    if let Some(g) = group {
        let digits: Vec<char> = int.chars().collect();
        let mut grouped = String::new();
        for (i, c) in digits.iter().enumerate() {
            let from_end = digits.len() - i;
            if i > 0 && from_end / g * g == from_end {
                grouped.push(',');
            }
            grouped.push(*c);
        }
        int = grouped;
    }
    let sign = if v < 0.0
        && (int.chars().any(|c| c.is_ascii_digit() && c != '0') || frac.chars().any(|c| c != '0'))
    {
        "-"
    } else {
        ""
    };
    let number = if frac.is_empty() {
        int
    } else {
        format!("{int}.{frac}")
    };
    Ok(format!("{sign}{prefix}{number}{suffix}"))
}

fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim();
    let v: Value = serde_json::from_str(t).ok()?;
    v.as_f64()
}

/// Owned JSON into an owned internal value (for `$parse`).
fn from_json<'a>(v: Value) -> V<'a> {
    match v {
        Value::Null => V::Null,
        Value::Bool(b) => V::Bool(b),
        Value::Number(n) => V::Num(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => V::Str(Rc::from(s.as_str())),
        Value::Array(a) => V::array(a.into_iter().map(from_json).collect()),
        Value::Object(m) => V::Obj(Rc::new(
            m.into_iter().map(|(k, v)| (k, from_json(v))).collect(),
        )),
    }
}
