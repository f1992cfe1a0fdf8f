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
use crate::context::{Entropy, EvalContext, SplitMix64};
use crate::error::{ErrorCode, JsonataError, err, uncoded};
use crate::stepfunctions::{base64_decode, base64_encode, hash, uuid_v4};

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
        signature: Option<super::signature::LambdaSignature>,
    },
    Builtin(&'static str),
    /// A regular expression literal: a matcher function (JSONata's "generic matcher"
    /// protocol) returning `{match, start, end, groups, next}` or undefined.
    Regex(super::parse::Regex),
    /// The `next` function of a regex match object: searches `text` again from byte `from`.
    RegexNext {
        re: super::parse::Regex,
        text: Rc<str>,
        from: usize,
        /// `from` as a UTF-16 position (so positions are found in linear time overall).
        from_units: usize,
    },
    /// `$f(?, 2)`: `args[i] == None` is a placeholder filled by the call's arguments in order.
    Partial {
        func: Rc<Func<'a>>,
        args: Vec<Option<Option<V<'a>>>>,
    },
    /// `$f ~> $g`: `x => $g($f(x))`.
    Compose(V<'a>, V<'a>),
    /// `| location | update [, delete] |`.
    Transform {
        location: std::sync::Arc<Node>,
        update: std::sync::Arc<Node>,
        delete: Option<std::sync::Arc<Node>>,
        env: Env<'a>,
    },
}

impl Func<'_> {
    /// How many arguments a higher-order function passes (JSONata passes a lambda only as
    /// many as it declares); `None` = all.
    fn arity(&self) -> Option<usize> {
        match self {
            Func::Lambda { params, .. } => Some(params.len()),
            Func::Partial { args, .. } => Some(args.iter().filter(|a| a.is_none()).count()),
            Func::Compose(..) | Func::Transform { .. } => Some(1),
            Func::Builtin(name) => super::signature::arity(name),
            Func::Regex(_) => None,
            Func::RegexNext { .. } => Some(0),
        }
    }
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

type R<T> = Result<T, JsonataError>;

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
        return Err(err!(D1001, "Number out of range (infinite or NaN)"));
    }
    if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
        Ok(Value::from(n as i64))
    } else {
        Number::from_f64(n)
            .map(Value::Number)
            .ok_or_else(|| err!(D1001, "Number out of range"))
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
    pub(crate) fn to_vec(&self) -> Vec<V<'a>> {
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
    pub(crate) fn type_name(&self) -> &'static str {
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
    js_number(s.parse().unwrap_or(n))
}

/// JavaScript's `Number.prototype.toString`: shortest round-trip digits, in exponent form
/// (`1e+21`, `1.5e-7`) outside [1e-7, 1e21).
fn js_number(n: f64) -> String {
    let e = format!("{n:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if n != 0.0 && !(-6..21).contains(&exp) {
        format!("{mantissa}e{}{exp}", if exp > 0 { "+" } else { "" })
    } else {
        format!("{n}")
    }
}

fn stringify(v: &V<'_>) -> R<String> {
    Ok(match v {
        V::Str(s) => s.to_string(),
        V::Json(Value::String(s)) => s.clone(),
        V::Num(n) => {
            if !n.is_finite() {
                return Err(err!(
                    D3001,
                    "Attempting to invoke string function on Infinity or NaN"
                ));
            }
            fmt_num(*n)
        }
        V::Json(Value::Number(n)) => match n.as_f64() {
            Some(f) if n.is_f64() => fmt_num(f),
            _ => n.to_string(),
        },
        V::Func(_) => String::new(),
        other => serde_json::to_string(&to_json(other)?).unwrap_or_default(),
    })
}

// ------------------------------------------------------------------ evaluation

impl<'c, 'a> Ev<'c, 'a> {
    fn tick(&mut self) -> R<()> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(err!(U1001, "evaluation exceeded the work limit"));
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

    /// Enters one level of guarded recursion: counts a step and a level, and fails with
    /// U1001 past the depth limit or the stack budget. The caller runs its body and then
    /// leaves with `self.depth -= 1`. A call that returns (rather than a helper taking the
    /// body as a closure) so no extra frame sits on every level of the recursion: debug
    /// builds' frames are what the stack budget is spent on (see `eval_inner`).
    fn enter(&mut self) -> R<()> {
        self.tick()?;
        self.depth += 1;
        let marker = 0u8;
        if self.depth > MAX_EVAL_DEPTH
            || self.stack_base.abs_diff(stack_address(&marker)) > STACK_BUDGET
        {
            self.depth -= 1;
            return Err(err!(
                U1001,
                "Stack overflow error: check for non-terminating recursive function"
            ));
        }
        Ok(())
    }

    fn eval(&mut self, node: &Node, input: &V<'a>, env: &Env<'a>) -> R<Option<V<'a>>> {
        self.enter()?;
        let r = self.eval_inner(node, input, env);
        self.depth -= 1;
        r
    }

    // Every non-trivial arm lives in its own non-inlined method: debug builds give a
    // function one stack slot per local of every arm, and `eval_inner` is on every level of
    // the recursion, so keeping it small is what lets deep (but legitimate) recursion such
    // as a recursive lambda fit the stack budget.
    fn eval_inner(&mut self, node: &Node, input: &V<'a>, env: &Env<'a>) -> R<Option<V<'a>>> {
        // Arms return the callee's result directly (no `?` and re-wrap): in debug builds
        // every such temporary gets its own stack slot in this frame.
        match node {
            Node::Num(n) => Ok(Some(V::Num(*n))),
            Node::Str(s) => Ok(Some(V::str(s))),
            Node::Bool(b) => Ok(Some(V::Bool(*b))),
            Node::Null => Ok(Some(V::Null)),
            Node::Var(name) => Ok(self.var(name, input, env)),
            Node::Name(name) => Ok(lookup_name(input, name)),
            Node::Wildcard => self.eval_wildcard(node, input, env),
            Node::Descendants => self.eval_descendants(input),
            Node::Path(steps) => self.path(steps, input, env),
            Node::Filter(..) => self.eval_filter(node, input, env),
            Node::Neg(..) => self.eval_neg(node, input, env),
            Node::Binary(op, l, r) => self.binary(*op, l, r, input, env),
            Node::Array(..) => self.eval_array(node, input, env),
            Node::Object(..) => self.eval_object(node, input, env),
            Node::Condition(..) => self.eval_condition(node, input, env),
            Node::Block(..) => self.eval_block(node, input, env),
            Node::Bind(..) => self.eval_bind(node, input, env),
            Node::Lambda(..) => self.eval_lambda(node, env),
            Node::Call(_, args) if args.iter().any(|a| matches!(a, Node::Placeholder)) => {
                self.eval_partial(node, input, env)
            }
            Node::Placeholder => Err(err!(
                S0211,
                "The symbol ? cannot be used as a unary operator (it is a placeholder only in function arguments)"
            )),
            Node::Focus(..) | Node::Index(..) | Node::Ancestor(..) | Node::Tuples(_) => {
                self.path(std::slice::from_ref(node), input, env)
            }
            Node::Parent(label) => Ok(env.lookup(label)),
            Node::Transform(..) => self.eval_transform(node, input, env),
            Node::Call(..) => self.eval_call(node, input, env),
            Node::Chain(..) => self.eval_chain(node, input, env),
            Node::KeepArray(..) => self.eval_keeparray(node, input, env),
            Node::Regex(re) => Ok(Some(V::Func(Rc::new(Func::Regex(re.clone()))))),
            Node::Group(..) => self.eval_group(node, input, env),
            Node::Sort(..) => self.eval_sort(node, input, env),
        }
    }

    #[inline(never)]
    fn eval_descendants(&mut self, input: &V<'a>) -> R<Option<V<'a>>> {
        let mut out = Vec::new();
        descendants(input, &mut out, 0);
        Ok(collapse(out))
    }

    #[inline(never)]
    fn eval_lambda(&mut self, node: &Node, env: &Env<'a>) -> R<Option<V<'a>>> {
        let Node::Lambda(params, body, signature) = node else {
            return Ok(None);
        };
        Ok(Some(V::Func(Rc::new(Func::Lambda {
            params: params.clone(),
            body: body.clone(),
            env: env.clone(),
            signature: signature.as_deref().cloned(),
        }))))
    }

    #[inline(never)]
    fn eval_wildcard(&mut self, node: &Node, input: &V<'a>, env: &Env<'a>) -> R<Option<V<'a>>> {
        let _ = (input, env);
        let Node::Wildcard = node else {
            return Ok(None);
        };
        Ok({
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
        })
    }

    #[inline(never)]
    fn eval_filter(&mut self, node: &Node, input: &V<'a>, env: &Env<'a>) -> R<Option<V<'a>>> {
        let _ = (input, env);
        let Node::Filter(expr, pred) = node else {
            return Ok(None);
        };
        Ok({
            let v = self.eval(expr, input, env)?;
            match v {
                None => None,
                Some(v) => self.filter(&v, pred, env)?,
            }
        })
    }

    #[inline(never)]
    fn eval_neg(&mut self, node: &Node, input: &V<'a>, env: &Env<'a>) -> R<Option<V<'a>>> {
        let _ = (input, env);
        let Node::Neg(e) = node else {
            return Ok(None);
        };
        Ok(match self.eval(e, input, env)? {
            None => None,
            Some(v) => {
                Some(V::Num(-v.as_f64().ok_or_else(|| {
                    err!(D1002, "Cannot negate a non-numeric value")
                })?))
            }
        })
    }

    #[inline(never)]
    fn eval_array(&mut self, node: &Node, input: &V<'a>, env: &Env<'a>) -> R<Option<V<'a>>> {
        let _ = (input, env);
        let Node::Array(items) = node else {
            return Ok(None);
        };
        Ok({
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
            Some(V::Arr(Rc::new(out), ArrKind::Plain))
        })
    }

    #[inline(never)]
    fn eval_object(&mut self, node: &Node, input: &V<'a>, env: &Env<'a>) -> R<Option<V<'a>>> {
        let Node::Object(pairs) = node else {
            return Ok(None);
        };
        // An object constructor groups its context like `expr{...}` does (a single item
        // when the context is not an array), so two pairs with one key are an error.
        let items = if input.is_array() {
            input.to_vec()
        } else {
            vec![input.clone()]
        };
        let tuples = items
            .into_iter()
            .map(|at| Tuple {
                at,
                vars: Vec::new(),
            })
            .collect();
        self.group_by(tuples, pairs, env).map(Some)
    }

    /// JSONata's grouping: each item's key (per pair) picks its group; pairs must not share
    /// a key (D1009); each group's value is evaluated with the group's items (and, for tuple
    /// streams, their variables) as the context.
    fn group_by(
        &mut self,
        tuples: Vec<Tuple<'a>>,
        pairs: &[(Node, Node)],
        env: &Env<'a>,
    ) -> R<V<'a>> {
        let mut groups: Vec<(String, usize, Vec<Tuple<'a>>)> = Vec::new();
        for t in tuples {
            let scope = t.scope(env);
            for (pi, (k, _)) in pairs.iter().enumerate() {
                let Some(key) = self.eval(k, &t.at, &scope)? else {
                    continue;
                };
                let key = key
                    .as_str()
                    .ok_or_else(|| {
                        err!(
                            T1003,
                            "Key in object structure must evaluate to a string; got: {}",
                            key.type_name()
                        )
                    })?
                    .to_owned();
                match groups.iter_mut().find(|(k2, _, _)| *k2 == key) {
                    Some((_, gpi, items)) => {
                        if *gpi != pi {
                            return Err(err!(
                                D1009,
                                "Multiple key definitions evaluate to same key: \"{key}\""
                            ));
                        }
                        items.push(t.clone());
                    }
                    None => groups.push((key, pi, vec![t.clone()])),
                }
            }
        }
        let mut entries = Vec::with_capacity(groups.len());
        for (key, pi, items) in groups {
            let merged = merge_tuples(items);
            let scope = merged.scope(env);
            if let Some(val) = self.eval(&pairs[pi].1, &merged.at, &scope)? {
                entries.push((key, val));
            }
        }
        Ok(V::Obj(Rc::new(entries)))
    }

    #[inline(never)]
    fn eval_condition(&mut self, node: &Node, input: &V<'a>, env: &Env<'a>) -> R<Option<V<'a>>> {
        let _ = (input, env);
        let Node::Condition(c, then, otherwise) = node else {
            return Ok(None);
        };
        Ok({
            let cv = self.eval(c, input, env)?;
            if truthy(&cv) {
                self.eval(then, input, env)?
            } else if let Some(o) = otherwise {
                self.eval(o, input, env)?
            } else {
                None
            }
        })
    }

    #[inline(never)]
    fn eval_block(&mut self, node: &Node, input: &V<'a>, env: &Env<'a>) -> R<Option<V<'a>>> {
        let _ = (input, env);
        let Node::Block(items) = node else {
            return Ok(None);
        };
        Ok({
            let scope = Scope::child(env);
            let mut last = None;
            for item in items {
                last = self.eval(item, input, &scope)?;
            }
            last
        })
    }

    #[inline(never)]
    fn eval_bind(&mut self, node: &Node, input: &V<'a>, env: &Env<'a>) -> R<Option<V<'a>>> {
        let _ = (input, env);
        let Node::Bind(name, value) = node else {
            return Ok(None);
        };
        Ok({
            let v = self.eval(value, input, env)?;
            if let Some(v) = &v {
                env.bind(name, v.clone());
            }
            v
        })
    }

    #[inline(never)]
    fn eval_partial(&mut self, node: &Node, input: &V<'a>, env: &Env<'a>) -> R<Option<V<'a>>> {
        let _ = (input, env);
        let Node::Call(f, args) = node else {
            return Ok(None);
        };
        Ok({
            let func = self.eval(f, input, env)?;
            let mut bound = Vec::with_capacity(args.len());
            for a in args {
                bound.push(match a {
                    Node::Placeholder => None,
                    other => Some(self.eval(other, input, env)?),
                });
            }
            match func {
                Some(V::Func(func)) => Some(V::Func(Rc::new(Func::Partial { func, args: bound }))),
                _ => {
                    return Err(err!(T1008, "Attempted to partially apply a non-function"));
                }
            }
        })
    }

    #[inline(never)]
    fn eval_transform(&mut self, node: &Node, input: &V<'a>, env: &Env<'a>) -> R<Option<V<'a>>> {
        let _ = (input, env);
        let Node::Transform(location, update, delete) = node else {
            return Ok(None);
        };
        Ok(Some(V::Func(Rc::new(Func::Transform {
            location: location.clone(),
            update: update.clone(),
            delete: delete.clone(),
            env: env.clone(),
        }))))
    }

    #[inline(never)]
    fn eval_call(&mut self, node: &Node, input: &V<'a>, env: &Env<'a>) -> R<Option<V<'a>>> {
        let _ = (input, env);
        let Node::Call(f, args) = node else {
            return Ok(None);
        };
        Ok({
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
                    return Err(err!(T1006, "Attempted to invoke a non-function ({name})"));
                }
            }
        })
    }

    #[inline(never)]
    fn eval_chain(&mut self, node: &Node, input: &V<'a>, env: &Env<'a>) -> R<Option<V<'a>>> {
        let _ = (input, env);
        let Node::Chain(l, r) = node else {
            return Ok(None);
        };
        Ok({
            let lv = self.eval(l, input, env)?;
            match r.as_ref() {
                Node::Call(f, args) if !args.iter().any(|a| matches!(a, Node::Placeholder)) => {
                    let func = self.eval(f, input, env)?;
                    let mut argv = vec![lv];
                    for a in args {
                        argv.push(self.eval(a, input, env)?);
                    }
                    match func {
                        Some(V::Func(func)) => self.apply(&func, argv, input)?,
                        _ => {
                            return Err(err!(
                                T2006,
                                "The right side of the function application operator ~> must be a function"
                            ));
                        }
                    }
                }
                other => match self.eval(other, input, env)? {
                    Some(g @ V::Func(_)) if matches!(lv, Some(V::Func(_))) => {
                        // Function composition: `$f ~> $g` is `function($x) { $g($f($x)) }`.
                        let f = lv.unwrap_or(V::Null);
                        Some(V::Func(Rc::new(Func::Compose(f, g))))
                    }
                    Some(V::Func(func)) => self.apply(&func, vec![lv], input)?,
                    _ => {
                        return Err(err!(
                            T2006,
                            "The right side of the function application operator ~> must be a function"
                        ));
                    }
                },
            }
        })
    }

    #[inline(never)]
    fn eval_keeparray(&mut self, node: &Node, input: &V<'a>, env: &Env<'a>) -> R<Option<V<'a>>> {
        let _ = (input, env);
        let Node::KeepArray(e) = node else {
            return Ok(None);
        };
        Ok(match self.eval(e, input, env)? {
            Some(v) if v.is_array() => Some(V::Arr(Rc::new(v.to_vec()), ArrKind::Cons)),
            Some(v) => Some(V::Arr(Rc::new(vec![v]), ArrKind::Cons)),
            None => None,
        })
    }

    #[inline(never)]
    fn eval_group(&mut self, node: &Node, input: &V<'a>, env: &Env<'a>) -> R<Option<V<'a>>> {
        let Node::Group(expr, pairs) = node else {
            return Ok(None);
        };
        // A path with `@`/`#` bindings groups its tuples, so keys and values see the
        // variables.
        if let Node::Path(steps) = expr.as_ref()
            && let Some(first) = steps.iter().position(is_tuple_step)
        {
            let seq = self.path(&steps[..first], input, env)?;
            let seq = match (first, seq) {
                (0, _) => {
                    if input.is_array() {
                        input.to_vec()
                    } else {
                        vec![input.clone()]
                    }
                }
                (_, None) => return Ok(None),
                (_, Some(v)) => v.to_vec(),
            };
            let mut keep = false;
            let tuples = self.tuple_path(&steps[first..], seq, env, &mut keep)?;
            if tuples.is_empty() {
                return Ok(None);
            }
            return self.group_by(tuples, pairs, env).map(Some);
        }
        let Some(v) = self.eval(expr, input, env)? else {
            return Ok(None);
        };
        let tuples = v
            .to_vec()
            .into_iter()
            .map(|at| Tuple {
                at,
                vars: Vec::new(),
            })
            .collect();
        self.group_by(tuples, pairs, env).map(Some)
    }

    #[inline(never)]
    fn eval_sort(&mut self, node: &Node, input: &V<'a>, env: &Env<'a>) -> R<Option<V<'a>>> {
        let _ = (input, env);
        let Node::Sort(expr, terms) = node else {
            return Ok(None);
        };
        Ok({
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
            keyed.sort_by(|a, b| compare_keys(&a.0, &b.0, terms, &mut err));
            if let Some(e) = err {
                return Err(e);
            }
            Some(V::seq(keyed.into_iter().map(|(_, v)| v).collect()))
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
        match self.path_core(steps, input, env)? {
            PathOut::Value(v) => Ok(v),
            PathOut::Tuples(tuples, keep) => {
                let items: Vec<V<'a>> = tuples.into_iter().map(|t| t.at).collect();
                Ok(finish_path(items, keep))
            }
        }
    }

    /// The tuple stream of a path or block that a parent label resolved into
    /// ([`Node::Tuples`]): its items with the variables bound inside it.
    fn tuples_of(&mut self, node: &Node, input: &V<'a>, env: &Env<'a>) -> R<Vec<Tuple<'a>>> {
        self.enter()?;
        let r = self.tuples_of_inner(node, input, env);
        self.depth -= 1;
        r
    }

    fn tuples_of_inner(&mut self, node: &Node, input: &V<'a>, env: &Env<'a>) -> R<Vec<Tuple<'a>>> {
        let plain = |v: Option<V<'a>>| -> Vec<Tuple<'a>> {
            v.map(|v| v.to_vec())
                .unwrap_or_default()
                .into_iter()
                .map(|at| Tuple {
                    at,
                    vars: Vec::new(),
                })
                .collect()
        };
        match node {
            Node::Tuples(inner) => self.tuples_of(inner, input, env),
            Node::Path(steps) => match self.path_core(steps, input, env)? {
                PathOut::Value(v) => Ok(plain(v)),
                PathOut::Tuples(t, _) => Ok(t),
            },
            Node::Block(items) => {
                let scope = Scope::child(env);
                let Some((last, init)) = items.split_last() else {
                    return Ok(Vec::new());
                };
                for item in init {
                    self.eval(item, input, &scope)?;
                }
                self.tuples_of(last, input, &scope)
            }
            other => {
                let v = self.eval(other, input, env)?;
                Ok(plain(v))
            }
        }
    }

    fn path_core(&mut self, steps: &[Node], input: &V<'a>, env: &Env<'a>) -> R<PathOut<'a>> {
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
            if is_tuple_step(step) {
                // From the first `@`/`#` step on, the path is a tuple stream.
                let tuples = self.tuple_path(&steps[i..], seq, env, &mut keep)?;
                return Ok(PathOut::Tuples(tuples, keep));
            }
            let step = match step {
                Node::KeepArray(inner) => {
                    keep = true;
                    inner.as_ref()
                }
                other => other,
            };
            let mut results: Vec<V<'a>> = Vec::new();
            if i == 0 && matches!(step, Node::Array(_)) {
                // A leading array constructor is evaluated once (not per context item), and
                // its items are the sequence the next step walks, as the reference
                // implementation does.
                let items = self.eval(step, input, env)?.map(|r| r.to_vec());
                if i == last {
                    return Ok(PathOut::Value(
                        items.map(|v| V::Arr(Rc::new(v), ArrKind::Cons)),
                    ));
                }
                seq = items.unwrap_or_default();
                continue;
            } else if is_sort_step(step) {
                // An order-by step sorts the whole sequence at once.
                if let Some(r) = self.eval(step, &V::seq(std::mem::take(&mut seq)), env)? {
                    results.push(r);
                }
            } else {
                let cons = i == last && matches!(step, Node::Array(_));
                for item in &seq {
                    if let Some(r) = self.eval(step, item, env)? {
                        // A trailing array constructor's arrays are kept whole.
                        results.push(if cons {
                            V::Arr(Rc::new(r.to_vec()), ArrKind::Cons)
                        } else {
                            r
                        });
                    }
                }
            }
            if i == last
                && results.len() == 1
                && results[0].is_array()
                && results[0].kind() != ArrKind::Seq
            {
                // A single array result of the last step is kept whole
                // (e.g. `$states.input.items`).
                if keep {
                    let r = results.pop().map(|r| r.to_vec()).unwrap_or_default();
                    return Ok(PathOut::Value(Some(V::Arr(Rc::new(r), ArrKind::Cons))));
                }
                return Ok(PathOut::Value(results.pop()));
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
        Ok(PathOut::Value(finish_path(seq, keep)))
    }

    /// Evaluates path steps as a tuple stream (JSONata "Path Operators": `@` context binding
    /// and `#` positional binding): every item carries the variables bound by earlier steps,
    /// and later steps, predicates and constructors see them.
    fn tuple_path(
        &mut self,
        steps: &[Node],
        seq: Vec<V<'a>>,
        env: &Env<'a>,
        keep: &mut bool,
    ) -> R<Vec<Tuple<'a>>> {
        let mut tuples: Option<Vec<Tuple<'a>>> = None;
        for step in steps {
            let parts = StepParts::of(step);
            *keep |= parts.keep;
            let incoming = match tuples.take() {
                Some(t) => t,
                None => seq
                    .iter()
                    .map(|v| Tuple {
                        at: v.clone(),
                        vars: Vec::new(),
                    })
                    .collect(),
            };
            let mut out: Vec<Tuple<'a>> = Vec::new();
            if let Node::Sort(marker, terms) = parts.base
                && matches!(marker.as_ref(), Node::Var(v) if v.is_empty())
            {
                out = self.sort_tuples(incoming, terms, env)?;
                if let Some(ix) = parts.index {
                    for (i, t) in out.iter_mut().enumerate() {
                        t.bind(ix, V::Num(i as f64));
                    }
                }
            } else if let Node::Tuples(_) = parts.base {
                // A path or block step that returns its own tuple stream: its bindings join
                // the incoming ones (the reference's `Object.assign(tuple, res[bb])`).
                for t in &incoming {
                    let scope = t.scope(env);
                    for rt in self.tuples_of(parts.base, &t.at, &scope)? {
                        let mut nt = t.clone();
                        for (k, v) in rt.vars {
                            nt.bind(&k, v);
                        }
                        nt.at = rt.at;
                        out.push(nt);
                    }
                }
            } else {
                for t in &incoming {
                    let scope = t.scope(env);
                    let Some(res) = self.eval(parts.base, &t.at, &scope)? else {
                        continue;
                    };
                    let items = if res.is_array() {
                        res.to_vec()
                    } else {
                        vec![res]
                    };
                    for (bb, item) in items.into_iter().enumerate() {
                        let mut nt = t.clone();
                        match parts.focus {
                            Some(f) => nt.bind(f, item),
                            None => nt.at = item,
                        }
                        if let Some(ix) = parts.index {
                            nt.bind(ix, V::Num(bb as f64));
                        }
                        // `%` in a later step (or a predicate of this one) is the item
                        // this step was evaluated on.
                        for label in parts.ancestors {
                            nt.bind(label, t.at.clone());
                        }
                        out.push(nt);
                    }
                }
            }
            for stage in &parts.stages {
                match stage {
                    Stage::Filter(pred) => out = self.filter_tuples(out, pred, env)?,
                    Stage::Index(ix) => {
                        for (i, t) in out.iter_mut().enumerate() {
                            t.bind(ix, V::Num(i as f64));
                        }
                    }
                }
            }
            tuples = Some(out);
        }
        Ok(tuples.unwrap_or_default())
    }

    fn sort_tuples(
        &mut self,
        tuples: Vec<Tuple<'a>>,
        terms: &[(Node, bool)],
        env: &Env<'a>,
    ) -> R<Vec<Tuple<'a>>> {
        let mut keyed = Vec::with_capacity(tuples.len());
        for t in tuples {
            let scope = t.scope(env);
            let mut keys = Vec::new();
            for (term, _) in terms {
                keys.push(self.eval(term, &t.at, &scope)?);
            }
            keyed.push((keys, t));
        }
        let mut err = None;
        keyed.sort_by(|a, b| compare_keys(&a.0, &b.0, terms, &mut err));
        if let Some(e) = err {
            return Err(e);
        }
        Ok(keyed.into_iter().map(|(_, t)| t).collect())
    }

    fn filter_tuples(
        &mut self,
        tuples: Vec<Tuple<'a>>,
        pred: &Node,
        env: &Env<'a>,
    ) -> R<Vec<Tuple<'a>>> {
        let len = tuples.len();
        if let Some(n) = literal_index(pred) {
            let n = n.floor();
            let i = if n < 0.0 { n + len as f64 } else { n };
            return Ok(if i >= 0.0 && (i as usize) < len {
                vec![tuples[i as usize].clone()]
            } else {
                Vec::new()
            });
        }
        let mut out = Vec::new();
        for (i, t) in tuples.into_iter().enumerate() {
            let scope = t.scope(env);
            let r = self.eval(pred, &t.at, &scope)?;
            if predicate_keeps(&r, i, len) {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// `| location | update [, delete] |` applied to `obj`: a deep copy of `obj` in which
    /// every object the location selects gets the update's fields merged in and the
    /// delete's fields removed (all updates are evaluated against the unmodified copy, in
    /// document order, like the reference implementation does for non-overlapping matches).
    fn transform(
        &mut self,
        obj: &V<'a>,
        location: &Node,
        update: &Node,
        delete: Option<&Node>,
        env: &Env<'a>,
    ) -> R<V<'a>> {
        if obj.type_name() != "object" && obj.type_name() != "array" {
            return Err(err!(
                T0410,
                "Argument 1 of the transform function does not match function signature (expected an object or array, got {})",
                obj.type_name()
            ));
        }
        let copy = deep_copy(obj, 0)?;
        let mut edits: HashMap<usize, Vec<Edit<'a>>> = HashMap::new();
        if let Some(matches) = self.eval(location, &copy, env)? {
            for m in matches.to_vec() {
                let upd = self.eval(update, &m, env)?;
                let mut es = Vec::new();
                if let Some(u) = upd {
                    let Some(fields) = u.entries().filter(|_| !u.is_array()) else {
                        return Err(err!(
                            T2011,
                            "The insert/update clause of the transform expression must evaluate to an object: got {}",
                            u.type_name()
                        ));
                    };
                    es.push(Edit::Update(fields));
                }
                if let Some(d) = delete
                    && let Some(dv) = self.eval(d, &m, env)?
                {
                    let names: Option<Vec<String>> = dv
                        .to_vec()
                        .iter()
                        .map(|x| x.as_str().map(str::to_owned))
                        .collect();
                    let Some(names) = names else {
                        return Err(err!(
                            T2012,
                            "The delete clause of the transform expression must evaluate to a string or array of strings"
                        ));
                    };
                    es.push(Edit::Delete(names));
                }
                if let V::Obj(rc) = &m {
                    edits
                        .entry(Rc::as_ptr(rc) as *const u8 as usize)
                        .or_default()
                        .extend(es);
                }
            }
        }
        // `copy` (and every matched object) stays alive while rebuilding, so the addresses
        // in `edits` cannot be reused by new values.
        rebuild(&copy, &edits, 0)
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
                    err!(
                        T2001,
                        "The left side of the {sym} operator must evaluate to a number"
                    )
                })?;
                let y = b.as_f64().ok_or_else(|| {
                    err!(
                        T2002,
                        "The right side of the {sym} operator must evaluate to a number"
                    )
                })?;
                let n = match op {
                    BinOp::Add => x + y,
                    BinOp::Sub => x - y,
                    BinOp::Mul => x * y,
                    BinOp::Div => x / y,
                    _ => x % y,
                };
                if !n.is_finite() {
                    return Err(err!(D1001, "Number out of range"));
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
                        return Err(err!(
                            T2010,
                            "The expressions either side of operator \"{sym}\" must evaluate to numeric or string values"
                        ));
                    }
                }
                let (Some(a), Some(b)) = (&lv, &rv) else {
                    return Ok(None);
                };
                let ord = if let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) {
                    x.partial_cmp(&y)
                } else if let (Some(x), Some(y)) = (a.as_str(), b.as_str()) {
                    Some(x.cmp(y))
                } else {
                    return Err(err!(
                        T2009,
                        "The values either side of operator \"{sym}\" must be of the same data type"
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
                    return Err(err!(
                        T2003,
                        "The left and right sides of the range operator (..) must evaluate to integers"
                    ));
                };
                if x.fract() != 0.0 || y.fract() != 0.0 {
                    return Err(err!(
                        T2003,
                        "The left and right sides of the range operator (..) must evaluate to integers"
                    ));
                }
                if y - x + 1.0 > MAX_RANGE {
                    return Err(err!(
                        D2014,
                        "The size of the sequence allocated by the range operator (..) must not exceed 1e7"
                    ));
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
        self.apply_with(func, args, input, false)
    }

    /// `unchecked`: skip a lambda's signature check (partial application).
    fn apply_with(
        &mut self,
        func: &Func<'a>,
        args: Vec<Option<V<'a>>>,
        input: &V<'a>,
        unchecked: bool,
    ) -> R<Option<V<'a>>> {
        match func {
            Func::Lambda {
                params,
                body,
                env,
                signature,
            } => {
                let args = match signature {
                    Some(sig) if !unchecked => {
                        sig.check(&format!("function{}", sig.as_str()), args, input)?
                    }
                    _ => args,
                };
                let scope = Scope::child(env);
                for (i, p) in params.iter().enumerate() {
                    if let Some(Some(v)) = args.get(i) {
                        scope.bind(p, v.clone());
                    }
                }
                self.eval(body, input, &scope)
            }
            Func::Builtin(name) => self.builtin(name, args, input),
            Func::Partial { func, args: bound } => {
                let mut supplied = args.into_iter();
                let full = bound
                    .iter()
                    .map(|b| match b {
                        Some(v) => v.clone(),
                        None => supplied.next().flatten(),
                    })
                    .collect();
                let func = func.clone();
                // The reference partially applies a lambda by making a new lambda without
                // the signature, so the arguments are not checked against it.
                self.apply_with(&func, full, input, true)
            }
            Func::Compose(f, g) => {
                let x = args.into_iter().next().flatten();
                let mid = self.call_fn(f, vec![x], input)?;
                self.call_fn(g, vec![mid], input)
            }
            Func::Transform {
                location,
                update,
                delete,
                env,
            } => {
                let Some(obj) = args.into_iter().next().flatten() else {
                    return Ok(None);
                };
                self.transform(&obj, location, update, delete.as_deref(), env)
                    .map(Some)
            }
            Func::Regex(re) => {
                let mut args = args.into_iter();
                let text: Rc<str> = match args.next().flatten() {
                    Some(V::Str(s)) => s,
                    Some(v) => match v.as_str() {
                        Some(s) => Rc::from(s),
                        None => return Ok(None),
                    },
                    None => return Ok(None),
                };
                // Like the reference's closure `(str, fromIndex)`: a second numeric argument
                // (e.g. the index `$map` passes) is where the search starts.
                let from = match args.next().flatten().and_then(|v| v.as_f64()) {
                    Some(n) if n > 0.0 => byte_offset(&text, n as usize),
                    _ => 0,
                };
                let from_units = unit_index(&text, from);
                self.regex_search(re, text, (from, from_units), false)
            }
            Func::RegexNext {
                re,
                text,
                from,
                from_units,
            } => self.regex_search(re, text.clone(), (*from, *from_units), true),
        }
    }

    fn call_fn(&mut self, f: &V<'a>, args: Vec<Option<V<'a>>>, input: &V<'a>) -> R<Option<V<'a>>> {
        match f {
            V::Func(func) => {
                let func = func.clone();
                // Pass only as many arguments as a lambda declares (JSONata's HOF convention).
                let args = match func.arity() {
                    Some(n) => args.into_iter().take(n).collect(),
                    None => args,
                };
                self.apply(&func, args, input)
            }
            _ => Err(err!(T1006, "Attempted to invoke a non-function")),
        }
    }
}

/// The tuples of one group as one context: the items (one, or a sequence) and every
/// variable bound to its values across the group.
fn merge_tuples(mut items: Vec<Tuple<'_>>) -> Tuple<'_> {
    if items.len() == 1 {
        return items.pop().unwrap_or(Tuple {
            at: V::seq(Vec::new()),
            vars: Vec::new(),
        });
    }
    let mut names: Vec<String> = Vec::new();
    for t in &items {
        for (k, _) in &t.vars {
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
    let vars = names
        .into_iter()
        .map(|n| {
            let vals: Vec<V<'_>> = items
                .iter()
                .filter_map(|t| t.vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()))
                .collect();
            let v = collapse(vals).unwrap_or(V::seq(Vec::new()));
            (n, v)
        })
        .collect();
    Tuple {
        at: V::seq(items.into_iter().map(|t| t.at).collect()),
        vars,
    }
}

/// One item of a tuple stream: the context item `@` and the variables bound so far.
#[derive(Clone)]
struct Tuple<'a> {
    at: V<'a>,
    vars: Vec<(String, V<'a>)>,
}

impl<'a> Tuple<'a> {
    fn bind(&mut self, name: &str, v: V<'a>) {
        match self.vars.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = v,
            None => self.vars.push((name.to_owned(), v)),
        }
    }
    fn scope(&self, env: &Env<'a>) -> Env<'a> {
        if self.vars.is_empty() {
            return env.clone();
        }
        let scope = Scope::child(env);
        for (k, v) in &self.vars {
            scope.bind(k, v.clone());
        }
        scope
    }
}

/// A path's result: plain values, or (from the first binding step on) a tuple stream.
enum PathOut<'a> {
    Value(Option<V<'a>>),
    Tuples(Vec<Tuple<'a>>, bool),
}

enum Stage<'n> {
    Filter(&'n Node),
    Index(&'n str),
}

/// A path step taken apart: the expression, its `@`/`#` bindings, and the predicates and
/// positional bindings that follow it in order.
struct StepParts<'n> {
    base: &'n Node,
    focus: Option<&'n str>,
    index: Option<&'n str>,
    stages: Vec<Stage<'n>>,
    keep: bool,
    /// Parent labels this step binds (see `parent.rs`).
    ancestors: &'n [String],
}

impl<'n> StepParts<'n> {
    fn of(step: &'n Node) -> StepParts<'n> {
        // Collect wrappers outside-in, then apply them inside-out (the parse order).
        let mut wrappers = Vec::new();
        let mut base = step;
        while let Node::Filter(inner, _)
        | Node::Focus(inner, _)
        | Node::Index(inner, _)
        | Node::KeepArray(inner) = base
        {
            wrappers.push(base);
            base = inner;
        }
        let mut ancestors: &[String] = &[];
        if let Node::Ancestor(inner, labels) = base {
            base = inner;
            ancestors = labels;
        }
        let mut parts = StepParts {
            base,
            focus: None,
            index: None,
            stages: Vec::new(),
            keep: false,
            ancestors,
        };
        for w in wrappers.into_iter().rev() {
            match w {
                Node::Filter(_, pred) => parts.stages.push(Stage::Filter(pred)),
                Node::Focus(_, v) => parts.focus = Some(v),
                Node::Index(_, v) if parts.stages.is_empty() => parts.index = Some(v),
                Node::Index(_, v) => parts.stages.push(Stage::Index(v)),
                Node::KeepArray(_) => parts.keep = true,
                _ => {}
            }
        }
        parts
    }
}

/// Does this path step (or a wrapper of it) bind with `@` or `#`? Iterative: wrappers can
/// be chained deeply.
fn is_tuple_step(mut n: &Node) -> bool {
    loop {
        match n {
            Node::Focus(..) | Node::Index(..) | Node::Ancestor(..) | Node::Tuples(_) => {
                return true;
            }
            Node::Filter(inner, _) | Node::KeepArray(inner) => n = inner,
            _ => return false,
        }
    }
}

/// An order-by step of a path (see `parse::into_steps`), possibly with predicates.
fn is_sort_step(mut n: &Node) -> bool {
    loop {
        match n {
            Node::Filter(inner, _) => n = inner,
            Node::Sort(inner, _) => return matches!(inner.as_ref(), Node::Var(v) if v.is_empty()),
            _ => return false,
        }
    }
}

fn finish_path<'a>(seq: Vec<V<'a>>, keep: bool) -> Option<V<'a>> {
    if keep {
        return if seq.is_empty() {
            None
        } else {
            Some(V::Arr(Rc::new(seq), ArrKind::Cons))
        };
    }
    collapse(seq)
}

fn literal_index(pred: &Node) -> Option<f64> {
    match pred {
        Node::Num(n) => Some(*n),
        Node::Neg(inner) => match inner.as_ref() {
            Node::Num(n) => Some(-*n),
            _ => None,
        },
        _ => None,
    }
}

/// JSONata's predicate rule: a number (or array of numbers) selects by position, anything
/// else by truthiness.
fn predicate_keeps(r: &Option<V<'_>>, i: usize, len: usize) -> bool {
    let pos = |x: f64| {
        let n = x.floor();
        let n = if n < 0.0 { n + len as f64 } else { n };
        n == i as f64
    };
    match r {
        Some(rv) if rv.as_f64().is_some() => pos(rv.as_f64().unwrap_or(-1.0)),
        Some(rv)
            if rv.is_array()
                && rv.len() > 0
                && rv.to_vec().iter().all(|x| x.as_f64().is_some()) =>
        {
            rv.to_vec().iter().any(|x| pos(x.as_f64().unwrap_or(-1.0)))
        }
        _ => truthy(r),
    }
}

fn compare_keys(
    a: &[Option<V<'_>>],
    b: &[Option<V<'_>>],
    terms: &[(Node, bool)],
    err: &mut Option<JsonataError>,
) -> std::cmp::Ordering {
    for (i, (_, desc)) in terms.iter().enumerate() {
        // Undefined keys sort last in either direction.
        match (&a[i], &b[i]) {
            (None, None) => continue,
            (None, _) => return std::cmp::Ordering::Greater,
            (_, None) => return std::cmp::Ordering::Less,
            _ => {}
        }
        let o = match order(&a[i], &b[i]) {
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
}

enum Edit<'a> {
    Update(Vec<(String, V<'a>)>),
    Delete(Vec<String>),
}

/// A copy with fresh objects and arrays (the transform operator's copy semantics: the
/// input is never modified, and each copied object has its own identity).
fn deep_copy<'a>(v: &V<'a>, depth: usize) -> R<V<'a>> {
    if depth > 1000 {
        return Err("value nested too deeply".into());
    }
    Ok(if let Some(entries) = v.entries() {
        V::Obj(Rc::new(
            entries
                .into_iter()
                .map(|(k, x)| Ok((k, deep_copy(&x, depth + 1)?)))
                .collect::<R<_>>()?,
        ))
    } else if let Some(items) = v.items() {
        V::Arr(
            Rc::new(
                items
                    .iter()
                    .map(|x| deep_copy(x, depth + 1))
                    .collect::<R<_>>()?,
            ),
            ArrKind::Plain,
        )
    } else {
        v.clone()
    })
}

fn rebuild<'a>(v: &V<'a>, edits: &HashMap<usize, Vec<Edit<'a>>>, depth: usize) -> R<V<'a>> {
    if depth > 1000 {
        return Err("value nested too deeply".into());
    }
    Ok(match v {
        V::Obj(rc) => {
            let mut entries = rc.as_ref().clone();
            if let Some(es) = edits.get(&(Rc::as_ptr(rc) as *const u8 as usize)) {
                for e in es {
                    match e {
                        Edit::Update(fields) => {
                            for (k, x) in fields {
                                match entries.iter_mut().find(|(k2, _)| k2 == k) {
                                    Some(slot) => slot.1 = x.clone(),
                                    None => entries.push((k.clone(), x.clone())),
                                }
                            }
                        }
                        Edit::Delete(names) => entries.retain(|(k, _)| !names.contains(k)),
                    }
                }
            }
            V::Obj(Rc::new(
                entries
                    .into_iter()
                    .map(|(k, x)| Ok((k, rebuild(&x, edits, depth + 1)?)))
                    .collect::<R<_>>()?,
            ))
        }
        V::Arr(items, kind) => V::Arr(
            Rc::new(
                items
                    .iter()
                    .map(|x| rebuild(x, edits, depth + 1))
                    .collect::<R<_>>()?,
            ),
            *kind,
        ),
        other => other.clone(),
    })
}

fn check_num(v: &Option<V<'_>>, side: &str, sym: &str) -> R<()> {
    match v {
        Some(x) if x.as_f64().is_none() => Err(JsonataError::coded(
            ErrorCode::new(if side == "left" { "T2001" } else { "T2002" }),
            format!("The {side} side of the {sym} operator must evaluate to a number"),
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
                return Err(err!(
                    T2008,
                    "The expressions within an order-by clause must evaluate to numeric or string values"
                ));
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

/// Byte offset of UTF-16 position `units` in `text` (its length when past the end; a
/// position inside a surrogate pair moves to the character's end). Matcher positions
/// (`start`, `end`, `$match`'s `index`) and the substrings `$split`/`$replace` take
/// between them count UTF-16 units, as JavaScript's strings do.
fn byte_offset(text: &str, units: usize) -> usize {
    if text.is_ascii() {
        return units.min(text.len());
    }
    let mut seen = 0;
    for (b, c) in text.char_indices() {
        if seen >= units {
            return b;
        }
        seen += c.len_utf16();
    }
    text.len()
}

/// UTF-16 position of byte offset `byte` in `text`.
fn unit_index(text: &str, byte: usize) -> usize {
    if text.is_ascii() {
        return byte;
    }
    utf16_len(&text[..byte.min(text.len())])
}

fn utf16_len(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

/// UTF-16 positions of one text mapped to byte offsets once, so that taking many
/// substrings stays linear.
struct Units<'t> {
    text: &'t str,
    /// Byte offset of each UTF-16 position (and of the end); empty for ASCII text.
    bytes: Vec<usize>,
}

impl<'t> Units<'t> {
    fn new(text: &'t str) -> Units<'t> {
        let mut bytes = Vec::new();
        if !text.is_ascii() {
            for (b, c) in text.char_indices() {
                // A position inside a surrogate pair moves to the character's end.
                bytes.push(b);
                if c.len_utf16() == 2 {
                    bytes.push(b + c.len_utf8());
                }
            }
            bytes.push(text.len());
        }
        Units { text, bytes }
    }

    fn len(&self) -> usize {
        if self.bytes.is_empty() {
            self.text.len()
        } else {
            self.bytes.len() - 1
        }
    }

    fn byte(&self, unit: usize) -> usize {
        if self.bytes.is_empty() {
            unit.min(self.text.len())
        } else {
            self.bytes[unit.min(self.bytes.len() - 1)]
        }
    }

    /// JavaScript's `substring(a, b)`: clamped, and swapped when `a > b`.
    fn substring(&self, a: f64, b: f64) -> &'t str {
        let len = self.len() as f64;
        let clamp = |x: f64| if x.is_nan() { 0.0 } else { x.clamp(0.0, len) } as usize;
        let (mut x, mut y) = (clamp(a), clamp(b));
        if x > y {
            std::mem::swap(&mut x, &mut y);
        }
        &self.text[self.byte(x)..self.byte(y)]
    }
}

fn regex_error(e: fancy_regex::Error) -> JsonataError {
    err!(
        U1001,
        "the regular expression could not be evaluated ({e}); simplify the pattern (look-around and back-references backtrack, and a search may take at most {} steps)",
        super::parse::REGEX_BACKTRACK_LIMIT
    )
}

/// Work charged per regular expression search (a search may scan the whole text).
const REGEX_SEARCH_COST: u64 = 64;
/// Work charged per search of a pattern that backtracks (up to `REGEX_BACKTRACK_LIMIT`
/// steps each): the evaluation's work budget then allows about 10,000 such searches, so
/// many searches that each stay just under the limit cannot add up to a hang either.
const BACKTRACKING_SEARCH_COST: u64 = 5_000;

/// One result of JSONata's matcher protocol: a matcher function (a regex literal or any
/// function) applied to a string returns undefined (no match) or
/// `{match, start, end, groups, next}`, and `next()` returns the following match.
struct Found<'a> {
    matched: Option<V<'a>>,
    start: Option<V<'a>>,
    end: Option<V<'a>>,
    groups: Option<V<'a>>,
    next: Option<V<'a>>,
    obj: V<'a>,
}

impl<'a> Found<'a> {
    fn start(&self) -> f64 {
        self.start.as_ref().and_then(V::as_f64).unwrap_or(f64::NAN)
    }
    fn matched_len(&self) -> f64 {
        self.matched
            .as_ref()
            .and_then(V::as_str)
            .map_or(f64::NAN, |m| utf16_len(m) as f64)
    }
}

impl<'c, 'a> Ev<'c, 'a> {
    fn charge(&mut self, cost: u64) -> R<()> {
        self.steps += cost;
        self.tick()
    }

    /// A regex search of `text` from byte `from`: the match object, or undefined. Like the
    /// reference, a `next` search that starts at the end finds nothing, and a `next` search
    /// that finds an empty match is D1004 (it would never progress).
    fn regex_search(
        &mut self,
        re: &super::parse::Regex,
        text: Rc<str>,
        (from, from_units): (usize, usize),
        continuing: bool,
    ) -> R<Option<V<'a>>> {
        let regex = re;
        let (re, backtracks) = regex.for_text(&text);
        self.charge(if backtracks {
            BACKTRACKING_SEARCH_COST
        } else {
            REGEX_SEARCH_COST
        })?;
        if continuing && from >= text.len() {
            return Ok(None);
        }
        let Some(caps) = re.captures_from_pos(&*text, from).map_err(regex_error)? else {
            return Ok(None);
        };
        let Some(m) = caps.get(0) else {
            return Ok(None);
        };
        if continuing && m.start() == m.end() {
            return Err(err!(
                D1004,
                "Regular expression matches zero length string: /{}/",
                re.as_str()
            ));
        }
        let groups: Vec<V<'a>> = caps
            .iter()
            .skip(1)
            // A group that did not take part is undefined in JavaScript, which JSON renders
            // as null.
            .map(|g| g.map_or(V::Null, |g| V::str(g.as_str())))
            .collect();
        let start = from_units + unit_index(&text[from..], m.start().saturating_sub(from));
        let end = start + utf16_len(m.as_str());
        let (matched, next_from) = (V::str(m.as_str()), m.end());
        Ok(Some(V::Obj(Rc::new(vec![
            ("match".to_owned(), matched),
            ("start".to_owned(), V::Num(start as f64)),
            ("end".to_owned(), V::Num(end as f64)),
            ("groups".to_owned(), V::array(groups)),
            (
                "next".to_owned(),
                V::Func(Rc::new(Func::RegexNext {
                    re: regex.clone(),
                    text,
                    from: next_from,
                    from_units: end,
                })),
            ),
        ]))))
    }

    /// Applies a matcher to `text` (the first match).
    fn matcher_first(
        &mut self,
        name: &str,
        matcher: &V<'a>,
        text: &str,
        input: &V<'a>,
    ) -> R<Option<Found<'a>>> {
        let r = self.call_fn(matcher, vec![Some(V::str(text))], input)?;
        found(name, r)
    }

    /// The match after `prev` (its `next()`).
    fn matcher_next(
        &mut self,
        name: &str,
        prev: &Found<'a>,
        input: &V<'a>,
    ) -> R<Option<Found<'a>>> {
        self.tick()?;
        let Some(next) = &prev.next else {
            return Err(err!(
                T1010,
                "The matcher function argument passed to function ${name} does not return the correct object structure (its result has no 'next' function)"
            ));
        };
        let r = self.call_fn(next, Vec::new(), input)?;
        found(name, r)
    }

    /// Runs `each` on the matches of `matcher` in `text`, in order, until `limit` of them
    /// have been handled; returns how many were. As in the reference, the matcher's `next()`
    /// is asked once more after the last handled match.
    fn each_match(
        &mut self,
        name: &str,
        matcher: &V<'a>,
        text: &str,
        limit: Option<f64>,
        input: &V<'a>,
        mut each: impl FnMut(&mut Self, &Found<'a>) -> R<()>,
    ) -> R<usize> {
        let mut handled = 0usize;
        let mut cur = self.matcher_first(name, matcher, text, input)?;
        while let Some(f) = cur {
            if limit.is_some_and(|l| handled as f64 >= l) {
                break;
            }
            each(self, &f)?;
            handled += 1;
            cur = self.matcher_next(name, &f, input)?;
        }
        Ok(handled)
    }

    /// `$match(str, matcher, limit)`: `{match, index, groups}` per match.
    fn builtin_match(
        &mut self,
        text: &str,
        matcher: &V<'a>,
        limit: Option<f64>,
        input: &V<'a>,
    ) -> R<Option<V<'a>>> {
        if limit.is_some_and(|l| l < 0.0) {
            return Err(err!(
                D3040,
                "Third argument of match function must evaluate to a positive number"
            ));
        }
        let mut out = Vec::new();
        if limit.is_some_and(|l| l == 0.0) {
            return Ok(None);
        }
        self.each_match("match", matcher, text, limit, input, |_, f| {
            let mut entries = Vec::new();
            if let Some(m) = &f.matched {
                entries.push(("match".to_owned(), m.clone()));
            }
            if let Some(s) = &f.start {
                entries.push(("index".to_owned(), s.clone()));
            }
            if let Some(g) = &f.groups {
                entries.push(("groups".to_owned(), g.clone()));
            }
            out.push(V::Obj(Rc::new(entries)));
            Ok(())
        })?;
        Ok(collapse(out))
    }

    /// `$split(str, matcher, limit)`.
    fn builtin_split(
        &mut self,
        text: &str,
        matcher: &V<'a>,
        limit: Option<f64>,
        input: &V<'a>,
    ) -> R<Option<V<'a>>> {
        if limit.is_some_and(|l| l < 0.0) {
            return Err(err!(
                D3020,
                "Third argument of split function must evaluate to a positive number"
            ));
        }
        let mut out = Vec::new();
        if limit.is_some_and(|l| l == 0.0) {
            return Ok(Some(V::array(out)));
        }
        let units = Units::new(text);
        let mut start = 0.0;
        let handled = self.each_match("split", matcher, text, limit, input, |_, f| {
            out.push(V::str(units.substring(start, f.start())));
            start = f.end.as_ref().and_then(V::as_f64).unwrap_or(f64::NAN);
            Ok(())
        })?;
        if handled == 0 {
            return Ok(Some(V::array(vec![V::str(text)])));
        }
        if limit.is_none_or(|l| (handled as f64) < l) {
            let rest = if start.is_nan() {
                text
            } else {
                units.substring(start, f64::INFINITY)
            };
            out.push(V::str(rest));
        }
        Ok(Some(V::array(out)))
    }

    /// `$replace(str, matcher, replacement, limit)`; `replacement` is a string (with `$0`,
    /// `$1`.. and `$$`) or a function of the match object.
    fn builtin_replace(
        &mut self,
        text: &str,
        matcher: &V<'a>,
        replacement: &V<'a>,
        limit: Option<f64>,
        input: &V<'a>,
    ) -> R<Option<V<'a>>> {
        if limit.is_some_and(|l| l < 0.0) {
            return Err(err!(
                D3011,
                "Fourth argument of replace function must evaluate to a positive number"
            ));
        }
        if limit.is_some_and(|l| l == 0.0) {
            return Ok(Some(V::str(text)));
        }
        let units = Units::new(text);
        let mut out = String::new();
        let mut position = 0.0;
        let handled = self.each_match("replace", matcher, text, limit, input, |ev, f| {
            out.push_str(units.substring(position, f.start()));
            let with = match replacement {
                V::Func(_) => {
                    let r = ev.call_fn(replacement, vec![Some(f.obj.clone())], input)?;
                    match r.as_ref().and_then(V::as_str) {
                        Some(s) => s.to_owned(),
                        None => {
                            return Err(err!(D3012, "Attempted to replace a matched string with a non-string value ({})",
                                r.map_or("undefined", |v| v.type_name())
                            ));
                        }
                    }
                }
                other => substitute(other.as_str().unwrap_or_default(), f),
            };
            out.push_str(&with);
            position = f.start() + f.matched_len();
            Ok(())
        })?;
        if handled == 0 {
            return Ok(Some(V::str(text)));
        }
        out.push_str(if position.is_nan() {
            ""
        } else {
            units.substring(position, f64::INFINITY)
        });
        Ok(Some(V::str(&out)))
    }
}

/// Checks a matcher's result: undefined, or an object with at least one of `start`
/// (number), `groups` (array) or `next` (function), as the reference checks (T1010).
fn found<'a>(name: &str, r: Option<V<'a>>) -> R<Option<Found<'a>>> {
    let Some(obj) = r else { return Ok(None) };
    let start = obj.field("start").filter(|v| v.as_f64().is_some());
    let groups = obj.field("groups").filter(V::is_array);
    let next = obj.field("next").filter(|v| matches!(v, V::Func(_)));
    if obj.entries().is_none() || (start.is_none() && groups.is_none() && next.is_none()) {
        return Err(err!(
            T1010,
            "The matcher function argument passed to function ${name} does not return the correct object structure (undefined, or an object with 'match', 'start', 'end', 'groups' and 'next')"
        ));
    }
    Ok(Some(Found {
        matched: obj.field("match"),
        end: obj.field("end"),
        start,
        groups,
        next,
        obj,
    }))
}

/// A `$replace` replacement string for one match: `$$` is `$`, `$0` the match, `$n` group n
/// (the longest group number that exists, as the reference reads it), other `$` literal.
fn substitute(replacement: &str, f: &Found<'_>) -> String {
    let groups: Vec<String> = f
        .groups
        .as_ref()
        .map(|g| {
            g.to_vec()
                .iter()
                .map(|x| x.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default();
    let matched = f
        .matched
        .as_ref()
        .and_then(V::as_str)
        .unwrap_or_default()
        .to_owned();
    let max_digits = if groups.is_empty() {
        1
    } else {
        groups.len().to_string().len()
    };
    let mut out = String::new();
    let mut rest = replacement;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix('0') {
            out.push_str(&matched);
            rest = r;
        } else {
            let lead = |n: usize| -> String {
                rest.chars()
                    .take(n)
                    .take_while(char::is_ascii_digit)
                    .collect()
            };
            let mut n: Option<usize> = lead(max_digits).parse().ok();
            if max_digits > 1 && n.is_some_and(|n| n > groups.len()) {
                n = lead(max_digits - 1).parse().ok();
            }
            match n {
                Some(n) => {
                    if n >= 1
                        && let Some(g) = groups.get(n - 1)
                    {
                        out.push_str(g);
                    }
                    // The reference skips the digits of the number it parsed.
                    rest = &rest[n.to_string().len().min(rest.len())..];
                }
                None => out.push('$'),
            }
        }
    }
    out.push_str(rest);
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
        let args = super::signature::validate(name, args, input)?;
        let arg = |i: usize| args.get(i).cloned().flatten();
        let need_str = |i: usize| -> R<Option<String>> {
            match arg(i) {
                None => Ok(None),
                Some(v) => v.as_str().map(|s| Some(s.to_owned())).ok_or_else(|| {
                    err!(T0410, "Argument {} of function ${name} does not match function signature (expected a string, got {})", i + 1, v.type_name())
                }),
            }
        };
        let need_num = |i: usize| -> R<Option<f64>> {
            match arg(i) {
                None => Ok(None),
                Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                    err!(T0410, "Argument {} of function ${name} does not match function signature (expected a number, got {})", i + 1, v.type_name())
                }),
            }
        };
        let nums = |v: &V<'a>| -> R<Vec<f64>> {
            v.to_vec()
                .iter()
                .map(|x| {
                    x.as_f64().ok_or_else(|| {
                        err!(
                            T0412,
                            "Argument 1 of function ${name} must be an array of numbers"
                        )
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
                            err!(D3030, "Unable to cast value to a number: \"{s}\"")
                        })?;
                        Some(V::Num(n))
                    } else {
                        return Err(err!(D3030, "Unable to cast value to a number: {}",
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
                    // JavaScript `Array.prototype.slice` on the characters, as the reference
                    // implementation does (fractions truncate, negatives count from the end).
                    let chars: Vec<char> = s.chars().collect();
                    let len = chars.len() as f64;
                    let mut start = need_num(1)?.unwrap_or(0.0);
                    if len + start < 0.0 {
                        start = 0.0;
                    }
                    let end = match need_num(2)? {
                        Some(c) if c <= 0.0 => return Ok(Some(V::str(""))),
                        Some(c) if start >= 0.0 => start + c,
                        Some(c) => len + start + c,
                        None => len,
                    };
                    let clamp = |x: f64| {
                        let x = x.trunc();
                        let x = if x < 0.0 { (len + x).max(0.0) } else { x.min(len) };
                        x as usize
                    };
                    let (s0, e0) = (clamp(start), clamp(end));
                    Some(V::str(&if e0 > s0 {
                        chars[s0..e0].iter().collect::<String>()
                    } else {
                        String::new()
                    }))
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
                    let Some(m @ V::Func(_)) = arg(1) else {
                        return Err(err!(T0410, "Argument 2 of function $match must be a regular expression or a matcher function"));
                    };
                    return self.builtin_match(&text, &m, need_num(2)?, input);
                }
            },
            "contains" if matches!(arg(1), Some(V::Func(_))) => match (need_str(0)?, arg(1)) {
                (Some(text), Some(m)) => {
                    Some(V::Bool(self.matcher_first("contains", &m, &text, input)?.is_some()))
                }
                _ => None,
            },
            "split" if matches!(arg(1), Some(V::Func(_))) => match (need_str(0)?, arg(1)) {
                (Some(text), Some(m)) => return self.builtin_split(&text, &m, need_num(2)?, input),
                _ => None,
            },
            "replace" if matches!(arg(1), Some(V::Func(_))) => match (need_str(0)?, arg(1)) {
                (Some(text), Some(m)) => {
                    let Some(rep) = arg(2) else {
                        return Err(err!(T0410, "Argument 3 of function $replace does not match function signature (expected a string or a function)"));
                    };
                    if rep.as_str().is_none() && !matches!(rep, V::Func(_)) {
                        return Err(err!(T0410, "Argument 3 of function $replace does not match function signature (expected a string or a function, got {})", rep.type_name()));
                    }
                    return self.builtin_replace(&text, &m, &rep, need_num(3)?, input);
                }
                _ => None,
            },
            "contains" => match (need_str(0)?, need_str(1)?) {
                (Some(s), Some(p)) => Some(V::Bool(s.contains(&p))),
                _ => None,
            },
            "split" => match need_str(0)? {
                None => None,
                Some(s) => {
                    let sep = need_str(1)?.ok_or_else(|| err!(T0410, "Argument 2 of function $split must be a string, a regular expression or a matcher function"))?;
                    if need_num(2)?.is_some_and(|n| n < 0.0) {
                        return Err(err!(D3020, "Third argument of split function must evaluate to a positive number"));
                    }
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
                        .map(|x| x.as_str().map(str::to_owned).ok_or_else(|| err!(T0412, "Argument 1 of function $join must be an array of strings")))
                        .collect();
                    Some(V::str(&strs?.join(&sep)))
                }
            },
            "replace" => {
                match need_str(0)? {
                    None => None,
                    Some(s) => {
                        let pat = need_str(1)?.ok_or_else(|| err!(T0410, "Argument 2 of function $replace must be a string, a regular expression or a matcher function"))?;
                        if pat.is_empty() {
                            return Err(err!(D3010, "Second argument of replace function cannot be an empty string"));
                        }
                        let rep = need_str(2)?.unwrap_or_default();
                        match need_num(3)? {
                            Some(l) if l < 0.0 => {
                                return Err(err!(D3011, "Fourth argument of replace function must evaluate to a positive number"));
                            }
                            Some(l) => Some(V::str(&s.replacen(&pat, &rep, l as usize))),
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
            "lookup" => match (arg(0), need_str(1)?) {
                (Some(v), Some(k)) => lookup_name(&v, &k),
                _ => None,
            },
            "merge" => match arg(0) {
                None => None,
                Some(v) => {
                    let mut out: Vec<(String, V<'a>)> = Vec::new();
                    for item in v.to_vec() {
                        for (k, x) in item.entries().ok_or_else(|| err!(T0412, "Argument 1 of function $merge must be an array of objects"))? {
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
                                // The reference reports an unsortable array under $sort's own
                                // code (the message stays the comparison's).
                                return Err(if e.has_code("T2008") {
                                    e.with_code(ErrorCode::new("D3070"))
                                } else {
                                    e
                                });
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
                    return Err(err!(T0410, "Argument 2 of function ${name} must be a function"
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
                        0 => return Err(err!(D3139, "The $single() function expected exactly 1 matching result. Instead it matched 0.")),
                        n => return Err(err!(D3138, "The $single() function expected exactly 1 matching result. Instead it matched {n}.")),
                    }
                }
            },
            "reduce" => {
                let Some(f) = arg(1) else {
                    return Err(err!(T0410, "Argument 2 of function $reduce must be a function"));
                };
                if let V::Func(func) = &f
                    && func.arity().is_some_and(|n| n < 2)
                {
                    return Err(err!(D3050, "The second argument of reduce function must be a function with at least two arguments"));
                }
                let Some(v) = arg(0) else { return Ok(None) };
                let items = v.to_vec();
                let whole = V::array(items.clone());
                let (mut acc, start) = match arg(2) {
                    Some(init) => (Some(init), 0),
                    None if !items.is_empty() => (Some(items[0].clone()), 1),
                    None => (None, 0),
                };
                // The function also gets the position and the array when it declares them.
                for (i, x) in items.into_iter().enumerate().skip(start) {
                    acc = self.call_fn(
                        &f,
                        vec![acc, Some(x), Some(V::Num(i as f64)), Some(whole.clone())],
                        input,
                    )?;
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
                if !v.is_array() && v.entries().is_none() {
                    return v;
                }
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
                        err!(D3060, "The sqrt function cannot be applied to a negative number"),
                    );
                }
                n => n.map(|n| V::Num(n.sqrt())),
            },
            "power" => match (need_num(0)?, need_num(1)?) {
                (Some(b), Some(e)) => {
                    let r = b.powf(e);
                    if !r.is_finite() {
                        return Err(err!(D3061, "The power function has resulted in a value that cannot be represented as a JSON number"));
                    }
                    Some(V::Num(r))
                }
                _ => None,
            },
            "round" => match need_num(0)? {
                None => None,
                Some(n) => {
                    let prec = need_num(1)?.unwrap_or(0.0).clamp(-300.0, 300.0) as i32;
                    Some(V::Num(super::number::round(n, prec)))
                }
            },
            "random" => {
                // Step Functions' $random([seed]): a float in [0, 1).
                let bits = match need_num(0)? {
                    Some(seed) => {
                        Entropy::next_u64(&mut SplitMix64(seed as i64 as u64))
                    }
                    None => self.ctx.entropy.next_u64(),
                };
                Some(V::Num((bits >> 11) as f64 / (1u64 << 53) as f64))
            }
            "millis" | "now" => {
                // The crate has no clock: "now" is the state's entered time from the context
                // object, so results are reproducible (and constant within one evaluation,
                // as JSONata's are).
                let ms = self.ctx.entered_millis().ok_or_else(|| err!(D3100, "$now()/$millis() need State.EnteredTime in the context object"))?;
                if name == "millis" {
                    Some(V::Num(ms))
                } else if arg(0).is_none() && arg(1).is_none() {
                    Some(V::str(&super::datetime::format_datetime(ms, None, None)?))
                } else {
                    let (pic, tz) = (need_str(0)?, need_str(1)?);
                    Some(V::str(&super::datetime::format_datetime(
                        ms,
                        pic.as_deref(),
                        tz.as_deref(),
                    )?))
                }
            }
            "toMillis" => match need_str(0)? {
                None => None,
                Some(s) => match need_str(1)? {
                    None => Some(V::Num(super::datetime::parse_iso(&s).ok_or_else(|| {
                        err!(D3110, "The argument of the toMillis function must be an ISO 8601 formatted timestamp. Given \"{s}\""
                        )
                    })?)),
                    Some(picture) => {
                        let now = self.ctx.entered_millis().unwrap_or(0.0) as i64;
                        match super::datetime::parse_datetime(&s, &picture, now)? {
                            Some(ms) if ms.is_finite() => Some(V::Num(ms)),
                            // NaN in the reference, which JSON renders as null.
                            Some(_) => Some(V::Null),
                            None => None,
                        }
                    }
                },
            },
            "fromMillis" => match need_num(0)? {
                None => None,
                Some(ms) => {
                    let (pic, tz) = (need_str(1)?, need_str(2)?);
                    Some(V::str(&super::datetime::format_datetime(
                        ms,
                        pic.as_deref(),
                        tz.as_deref(),
                    )?))
                }
            },
            "base64encode" => need_str(0)?.map(|s| V::str(&base64_encode(s.as_bytes()))),
            "base64decode" => match need_str(0)? {
                None => None,
                Some(s) => {
                    // Lenient like the reference (Node's decoder skips characters outside the
                    // alphabet).
                    let clean: String = s
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/'))
                        .collect();
                    let padded = format!("{clean}{}", "=".repeat((4 - clean.len() % 4) % 4));
                    let bytes = base64_decode(&padded)
                        .or_else(|| base64_decode(&clean))
                        .unwrap_or_default();
                    Some(V::str(&String::from_utf8_lossy(&bytes)))
                }
            },
            "error" => {
                let msg = need_str(0)?.unwrap_or_else(|| "$error() function evaluated".into());
                return Err(err!(D3137, "{msg}"));
            }
            "assert" => {
                let ok = arg(0)
                    .and_then(|v| v.as_bool())
                    .ok_or_else(|| err!(T0410, "Argument 1 of function $assert must be a boolean"))?;
                if !ok {
                    let msg = need_str(1)?.unwrap_or_else(|| "$assert() statement failed".into());
                    return Err(err!(D3141, "{msg}"));
                }
                None
            }
            "formatNumber" => match need_num(0)? {
                None => None,
                Some(n) => {
                    let picture = need_str(1)?.unwrap_or_default();
                    let mut options = Vec::new();
                    for (k, v) in arg(2).and_then(|o| o.entries()).unwrap_or_default() {
                        options.push((k, stringify(&v)?));
                    }
                    Some(V::str(&super::number::format_number(n, &picture, &options)?))
                }
            },
            "formatInteger" => match need_num(0)? {
                None => None,
                Some(n) => {
                    let picture = need_str(1)?.unwrap_or_default();
                    Some(V::str(&super::datetime::format_integer(n, &picture)?))
                }
            },
            "parseInteger" => match need_str(0)? {
                None => None,
                Some(text) => {
                    let picture = need_str(1)?.unwrap_or_default();
                    // An unparsable number is NaN in the reference, which JSON renders as null.
                    Some(
                        super::datetime::parse_integer(&text, &picture)?
                            .filter(|n| n.is_finite())
                            .map_or(V::Null, V::Num),
                    )
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
                                .ok_or_else(|| err!(D3140, "Malformed URL passed to $decodeUrl"))?;
                            bytes.push(hex);
                            i += 3;
                        } else {
                            bytes.push(b[i]);
                            i += 1;
                        }
                    }
                    Some(V::str(&String::from_utf8(bytes).map_err(|_| {
                        err!(D3140, "Malformed URL passed to $decodeUrl")
                    })?))
                }
            },
            "formatBase" => {
                match need_num(0)? {
                    None => None,
                    Some(n) => {
                        let radix = need_num(1)?.unwrap_or(10.0) as u32;
                        if !(2..=36).contains(&radix) {
                            return Err(err!(D3100, "The radix of the formatBase function must be between 2 and 36"));
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
                    return Err(uncoded!(
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
                    return Err(uncoded!(
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
                    Some(V::str(&hash(&alg, data.as_bytes()).ok_or_else(|| uncoded!("The hash algorithm '{alg}' is not supported; use MD5, SHA-1, SHA-256, SHA-384 or SHA-512"))?))
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
                return Err(err!(T1006, "Attempted to invoke a non-function (${other})"
                ));
            }
        })
    }
}

/// `$number` of a string: a decimal number (`-?digits[.digits][e±digits]`, no spaces) or a
/// `0x`/`0o`/`0b` integer.
fn parse_number(s: &str) -> Option<f64> {
    let radix = |p: &str, r: u32| {
        s.strip_prefix(p)
            .or_else(|| s.strip_prefix(&p.to_uppercase()))
            .filter(|d| !d.is_empty())
            .and_then(|d| u128::from_str_radix(d, r).ok())
            .map(|v| v as f64)
    };
    if let Some(v) = radix("0x", 16)
        .or_else(|| radix("0o", 8))
        .or_else(|| radix("0b", 2))
    {
        return Some(v);
    }
    let b = s.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let st = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > st
    };
    if !digits(&mut i) {
        return None;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if !digits(&mut i) {
            return None;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if !digits(&mut i) {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
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
