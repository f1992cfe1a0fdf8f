//! Intrinsic functions (`States.Format(...)` and the other 17) for JSONPath-mode `.$` fields.
//!
//! API (stable; only additions from here on):
//! - [`IntrinsicCall::parse`] parses a call once (`States.Name(arg, ...)`; arguments are
//!   `'strings'` with `\'` `\{` `\}` `\\` escapes, numbers, `true`/`false`/`null`, paths
//!   `$...`/`$$...`/`$var...`, and nested calls). Unknown names, wrong argument counts,
//!   literal arguments of the wrong type (`States.MathAdd(1, '-1')`) and more than 10 calls
//!   in one field are parse errors, so `states validate` catches them.
//! - [`IntrinsicCall::evaluate`] runs it against an [`EvalContext`]; `field` (e.g. `"value.$"`)
//!   names the field in the error text when a path argument finds nothing. Failures are
//!   `States.IntrinsicFailure` (bad argument type/value, limits) or `States.Runtime` (a path
//!   argument not found).
//! - [`looks_like_intrinsic`] tells a `.$` value that is meant to be a call.
//!
//! AWS limits enforced: ArrayRange at most 1000 items, Base64Encode/Decode and Hash inputs at
//! most 10,000 characters, JsonMerge shallow only, MathAdd/MathRandom/ArrayRange take
//! integers (AWS rounds non-integral numbers half up, as Java's `Math.round`).
//!
//! `States.IntrinsicFailure` causes read "Invalid arguments in States.X: <what is wrong>"; the
//! corpus recorded no failing intrinsic call, so AWS's exact wording per case is not known.
//!
//! Source of behaviour: the "Intrinsic functions" page of the Step Functions developer guide
//! and the AWS-recorded conformance executions (e.g. StringSplit drops empty tokens,
//! StringToJson of a blank string is `null`, Format prints objects as `{k=v, ...}`).

use serde_json::{Number, Value};

use crate::error::{StatesError, SyntaxError};
use crate::jsonpath::{EvalContext, JsonPath, SplitMix64, compact, json_eq};
use jsonata::stepfunctions::{base64_decode, base64_encode, hash, uuid_v4};

/// The 18 intrinsic functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `States.Format(template, values...)`
    Format,
    /// `States.StringToJson(string)`
    StringToJson,
    /// `States.JsonToString(value)`
    JsonToString,
    /// `States.Array(values...)`
    Array,
    /// `States.ArrayPartition(array, size)`
    ArrayPartition,
    /// `States.ArrayContains(array, value)`
    ArrayContains,
    /// `States.ArrayRange(start, end, step)`
    ArrayRange,
    /// `States.ArrayGetItem(array, index)`
    ArrayGetItem,
    /// `States.ArrayLength(array)`
    ArrayLength,
    /// `States.ArrayUnique(array)`
    ArrayUnique,
    /// `States.Base64Encode(string)`
    Base64Encode,
    /// `States.Base64Decode(string)`
    Base64Decode,
    /// `States.Hash(data, algorithm)`
    Hash,
    /// `States.JsonMerge(a, b, false)`
    JsonMerge,
    /// `States.MathRandom(start, end[, seed])`
    MathRandom,
    /// `States.MathAdd(a, b)`
    MathAdd,
    /// `States.StringSplit(string, delimiters)`
    StringSplit,
    /// `States.UUID()`
    Uuid,
}

impl Function {
    /// Looks a function up by its full name (`States.Format`).
    pub fn from_name(name: &str) -> Option<Function> {
        use Function::*;
        Some(match name {
            "States.Format" => Format,
            "States.StringToJson" => StringToJson,
            "States.JsonToString" => JsonToString,
            "States.Array" => Array,
            "States.ArrayPartition" => ArrayPartition,
            "States.ArrayContains" => ArrayContains,
            "States.ArrayRange" => ArrayRange,
            "States.ArrayGetItem" => ArrayGetItem,
            "States.ArrayLength" => ArrayLength,
            "States.ArrayUnique" => ArrayUnique,
            "States.Base64Encode" => Base64Encode,
            "States.Base64Decode" => Base64Decode,
            "States.Hash" => Hash,
            "States.JsonMerge" => JsonMerge,
            "States.MathRandom" => MathRandom,
            "States.MathAdd" => MathAdd,
            "States.StringSplit" => StringSplit,
            "States.UUID" => Uuid,
            _ => return None,
        })
    }

    /// The full name, e.g. `States.Format`.
    pub fn name(self) -> &'static str {
        use Function::*;
        match self {
            Format => "States.Format",
            StringToJson => "States.StringToJson",
            JsonToString => "States.JsonToString",
            Array => "States.Array",
            ArrayPartition => "States.ArrayPartition",
            ArrayContains => "States.ArrayContains",
            ArrayRange => "States.ArrayRange",
            ArrayGetItem => "States.ArrayGetItem",
            ArrayLength => "States.ArrayLength",
            ArrayUnique => "States.ArrayUnique",
            Base64Encode => "States.Base64Encode",
            Base64Decode => "States.Base64Decode",
            Hash => "States.Hash",
            JsonMerge => "States.JsonMerge",
            MathRandom => "States.MathRandom",
            MathAdd => "States.MathAdd",
            StringSplit => "States.StringSplit",
            Uuid => "States.UUID",
        }
    }

    /// Allowed argument counts (min, max).
    fn arity(self) -> (usize, usize) {
        use Function::*;
        match self {
            Format => (1, usize::MAX),
            Array => (0, usize::MAX),
            StringToJson | JsonToString | ArrayLength | ArrayUnique | Base64Encode
            | Base64Decode => (1, 1),
            ArrayPartition | ArrayContains | ArrayGetItem | Hash | MathAdd | StringSplit => (2, 2),
            ArrayRange | JsonMerge => (3, 3),
            MathRandom => (2, 3),
            Uuid => (0, 0),
        }
    }
}

/// One argument of a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// A literal value. For strings, `raw` keeps the text as written (escapes intact) so
    /// `States.Format` can tell an escaped `\{` from a placeholder.
    Literal {
        /// The value (escapes resolved).
        value: Value,
        /// The literal as written between the quotes (strings only).
        raw: Option<String>,
    },
    /// A path (`$...`, `$$...`, `$var...`).
    Path(JsonPath),
    /// A nested call.
    Call(Box<IntrinsicCall>),
}

/// A parsed intrinsic function call.
#[derive(Debug, Clone, PartialEq)]
pub struct IntrinsicCall {
    text: String,
    function: Function,
    args: Vec<Arg>,
}

/// AWS: "You can nest up to 10 intrinsic functions within a field" (its example counts every
/// call in the field, the outer one included). Also keeps hostile input off the stack.
const MAX_CALLS: usize = 10;
/// AWS's limit on ArrayRange results.
const MAX_RANGE_ITEMS: usize = 1000;
/// AWS's input limit for Base64Encode/Decode and Hash.
const MAX_INPUT_CHARS: usize = 10_000;

/// True when a `.$` value is meant as an intrinsic call (starts with `States.`).
pub fn looks_like_intrinsic(text: &str) -> bool {
    text.trim_start().starts_with("States.")
}

impl IntrinsicCall {
    /// Parses `States.Name(args...)`.
    pub fn parse(text: &str) -> Result<IntrinsicCall, SyntaxError> {
        let mut p = Parser {
            text,
            pos: 0,
            depth: 0,
        };
        let call = p
            .call()
            .map_err(|m| SyntaxError::new("intrinsic function", text, m))?;
        p.skip_ws();
        if p.pos != text.len() {
            return Err(SyntaxError::new(
                "intrinsic function",
                text,
                format!("unexpected text after the call at offset {}", p.pos),
            ));
        }
        Ok(call)
    }

    /// The call as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The function called.
    pub fn function(&self) -> Function {
        self.function
    }

    /// The arguments.
    pub fn args(&self) -> &[Arg] {
        &self.args
    }

    /// Evaluates the call. `field` names the field for "could not be found" errors.
    pub fn evaluate(&self, ctx: &mut EvalContext<'_>, field: &str) -> Result<Value, StatesError> {
        let mut values = Vec::with_capacity(self.args.len());
        for arg in &self.args {
            values.push(match arg {
                Arg::Literal { value, .. } => value.clone(),
                Arg::Path(p) => match p.select(ctx) {
                    Some(v) => v.into_owned(),
                    None => return Err(p.not_found_in_field(field, ctx.input)),
                },
                Arg::Call(c) => c.evaluate(ctx, field)?,
            });
        }
        self.apply(values, ctx)
    }

    fn fail(&self, msg: impl std::fmt::Display) -> StatesError {
        StatesError::intrinsic(format!(
            "Invalid arguments in {}: {msg}",
            self.function.name()
        ))
    }

    fn int_arg(&self, v: &Value, what: &str) -> Result<i64, StatesError> {
        match v.as_f64() {
            Some(f) if f.is_finite() && f.abs() < 9.0e15 => Ok(java_round(f)),
            _ => Err(self.fail(format!(
                "the {what} argument must be an integer, but was {}",
                compact(v)
            ))),
        }
    }

    fn str_arg<'v>(&self, v: &'v Value, what: &str) -> Result<&'v str, StatesError> {
        v.as_str().ok_or_else(|| {
            self.fail(format!(
                "the {what} argument must be a string, but was {}",
                compact(v)
            ))
        })
    }

    fn array_arg<'v>(&self, v: &'v Value, what: &str) -> Result<&'v Vec<Value>, StatesError> {
        v.as_array().ok_or_else(|| {
            self.fail(format!(
                "the {what} argument must be an array, but was {}",
                compact(v)
            ))
        })
    }

    fn apply(&self, mut v: Vec<Value>, ctx: &mut EvalContext<'_>) -> Result<Value, StatesError> {
        use Function::*;
        // Arity was checked at parse time; `get` keeps this panic-free regardless.
        let arg = |i: usize| v.get(i).cloned().unwrap_or(Value::Null);
        match self.function {
            Format => {
                let template = match self.args.first() {
                    Some(Arg::Literal { raw: Some(raw), .. }) => raw.clone(),
                    _ => {
                        // A template from a path has no escapes to honour.
                        let t = arg(0);
                        self.str_arg(&t, "first")?.replace('\\', "\\\\")
                    }
                };
                format(&template, v.get(1..).unwrap_or(&[])).map_err(|m| self.fail(m))
            }
            StringToJson => {
                let s = arg(0);
                let s = self.str_arg(&s, "first")?;
                if s.trim().is_empty() {
                    return Ok(Value::Null);
                }
                let mut parsed: Value = serde_json::from_str(s).map_err(|e| {
                    self.fail(format!("the string could not be parsed as JSON ({e})"))
                })?;
                fix_negative_zero(&mut parsed, 0);
                Ok(parsed)
            }
            JsonToString => Ok(Value::String(compact(&arg(0)))),
            Array => Ok(Value::Array(v)),
            ArrayPartition => {
                let size = self.int_arg(&arg(1), "second")?;
                let array = self.array_arg(&v[0], "first")?;
                if size <= 0 {
                    return Err(self.fail(format!(
                        "the chunk size must be a positive integer, but was {size}"
                    )));
                }
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                Ok(Value::Array(
                    array
                        .chunks(size)
                        .map(|c| Value::Array(c.to_vec()))
                        .collect(),
                ))
            }
            ArrayContains => {
                let needle = arg(1);
                let array = self.array_arg(&v[0], "first")?;
                Ok(Value::Bool(array.iter().any(|x| json_eq(x, &needle))))
            }
            ArrayRange => {
                let start = self.int_arg(&arg(0), "first")?;
                let end = self.int_arg(&arg(1), "second")?;
                let step = self.int_arg(&arg(2), "third")?;
                if step == 0 {
                    return Err(self.fail("the step argument must not be 0"));
                }
                let count = if (step > 0 && end >= start) || (step < 0 && end <= start) {
                    (end - start) / step + 1
                } else {
                    0
                };
                if count > MAX_RANGE_ITEMS as i64 {
                    return Err(self.fail(format!(
                        "the result would have {count} items, more than the limit of {MAX_RANGE_ITEMS}"
                    )));
                }
                Ok(Value::Array(
                    (0..count).map(|i| Value::from(start + i * step)).collect(),
                ))
            }
            ArrayGetItem => {
                let index = self.int_arg(&arg(1), "second")?;
                let array = self.array_arg(&v[0], "first")?;
                usize::try_from(index)
                    .ok()
                    .and_then(|i| array.get(i))
                    .cloned()
                    .ok_or_else(|| {
                        self.fail(format!(
                            "the index {index} is out of bounds for an array of {} items",
                            array.len()
                        ))
                    })
            }
            ArrayLength => Ok(Value::from(self.array_arg(&v[0], "first")?.len())),
            ArrayUnique => {
                let array = self.array_arg(&v[0], "first")?;
                let mut out: Vec<Value> = Vec::with_capacity(array.len());
                for x in array {
                    if !out.iter().any(|y| json_eq(x, y)) {
                        out.push(x.clone());
                    }
                }
                Ok(Value::Array(out))
            }
            Base64Encode => {
                let s = arg(0);
                let s = self.str_arg(&s, "first")?;
                self.check_len(s)?;
                Ok(Value::String(base64_encode(s.as_bytes())))
            }
            Base64Decode => {
                let s = arg(0);
                let s = self.str_arg(&s, "first")?;
                self.check_len(s)?;
                let bytes =
                    base64_decode(s).ok_or_else(|| self.fail("the string is not valid Base64"))?;
                String::from_utf8(bytes)
                    .map(Value::String)
                    .map_err(|_| self.fail("the decoded data is not valid UTF-8 text"))
            }
            Hash => {
                let data = arg(0);
                let alg = arg(1);
                let data = match &data {
                    Value::String(s) => s.clone(),
                    other => compact(other),
                };
                self.check_len(&data)?;
                let alg = self.str_arg(&alg, "second")?;
                hash(alg, data.as_bytes()).map(Value::String).ok_or_else(|| {
                    self.fail(format!(
                        "unknown hash algorithm '{alg}'; use MD5, SHA-1, SHA-256, SHA-384 or SHA-512"
                    ))
                })
            }
            JsonMerge => {
                let deep = arg(2);
                if deep != Value::Bool(false) {
                    return Err(self.fail(
                        "only shallow merges are supported: the third argument must be false",
                    ));
                }
                let b = v.pop().and(v.pop()).unwrap_or(Value::Null);
                let a = v.pop().unwrap_or(Value::Null);
                match (a, b) {
                    (Value::Object(mut a), Value::Object(b)) => {
                        for (k, val) in b {
                            a.insert(k, val);
                        }
                        Ok(Value::Object(a))
                    }
                    (a, b) => Err(self.fail(format!(
                        "both values to merge must be JSON objects, but were {} and {}",
                        compact(&a),
                        compact(&b)
                    ))),
                }
            }
            MathRandom => {
                let start = self.int_arg(&arg(0), "first")?;
                let end = self.int_arg(&arg(1), "second")?;
                if end <= start {
                    return Err(self.fail(format!(
                        "the end ({end}) must be greater than the start ({start})"
                    )));
                }
                let span = (end - start).unsigned_abs();
                let bits = match v.get(2) {
                    Some(seed) => {
                        let seed = self.int_arg(seed, "third")?;
                        crate::jsonpath::Entropy::next_u64(&mut SplitMix64(seed as u64))
                    }
                    None => ctx.entropy.next_u64(),
                };
                // Start inclusive, end exclusive, as the developer guide specifies.
                Ok(Value::from(start + (bits % span) as i64))
            }
            MathAdd => {
                let a = self.int_arg(&arg(0), "first")?;
                let b = self.int_arg(&arg(1), "second")?;
                a.checked_add(b)
                    .map(Value::from)
                    .ok_or_else(|| self.fail("the sum overflows"))
            }
            StringSplit => {
                let s = arg(0);
                let d = arg(1);
                let s = self.str_arg(&s, "first")?;
                let d = self.str_arg(&d, "second")?;
                let parts: Vec<Value> = s
                    .split(|c: char| d.contains(c))
                    .filter(|p| !p.is_empty())
                    .map(|p| Value::String(p.to_owned()))
                    .collect();
                Ok(Value::Array(parts))
            }
            Uuid => Ok(Value::String(uuid_v4(
                ctx.entropy.next_u64(),
                ctx.entropy.next_u64(),
            ))),
        }
    }

    fn check_len(&self, s: &str) -> Result<(), StatesError> {
        let n = s.chars().count();
        if n > MAX_INPUT_CHARS {
            return Err(self.fail(format!(
                "the input has {n} characters, more than the limit of {MAX_INPUT_CHARS}"
            )));
        }
        Ok(())
    }
}

/// AWS (Jackson) reads `-0` as the integer 0; serde_json reads it as the float -0.0.
fn fix_negative_zero(v: &mut Value, depth: usize) {
    if depth > 256 {
        return;
    }
    match v {
        Value::Number(n)
            if n.as_f64() == Some(0.0) && n.is_f64() && n.to_string().starts_with('-') =>
        {
            *v = Value::from(0);
        }
        Value::Array(a) => a.iter_mut().for_each(|x| fix_negative_zero(x, depth + 1)),
        Value::Object(m) => m.values_mut().for_each(|x| fix_negative_zero(x, depth + 1)),
        _ => {}
    }
}

/// Java's `Math.round`: half up (towards positive infinity).
fn java_round(f: f64) -> i64 {
    (f + 0.5).floor() as i64
}

/// States.Format: replaces each unescaped `{}` with the next value; `\{`, `\}`, `\\`, `\'`
/// stand for themselves.
fn format(template: &str, values: &[Value]) -> Result<Value, String> {
    let mut out = String::with_capacity(template.len());
    let mut next = values.iter();
    let mut chars = template.chars().peekable();
    let mut used = 0usize;
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e) => out.push(e),
                None => out.push('\\'),
            },
            '{' if chars.peek() == Some(&'}') => {
                chars.next();
                let v = next.next().ok_or_else(|| {
                    format!(
                        "the template has more '{{}}' placeholders than the {} value(s) given",
                        values.len()
                    )
                })?;
                used += 1;
                out.push_str(&format_value(v));
            }
            _ => out.push(c),
        }
    }
    if used != values.len() {
        return Err(format!(
            "the template has {used} '{{}}' placeholder(s) but {} value(s) were given",
            values.len()
        ));
    }
    Ok(Value::String(out))
}

/// How States.Format prints a value: strings raw, objects as `{k=v, ...}`, arrays as
/// `[a, b]` (Java's `Map`/`List` `toString`), scalars as JSON.
pub fn format_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(format_value).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}={}", format_value(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        other => compact(other),
    }
}

/// What a literal argument must be, checked when the call is parsed (AWS rejects such
/// definitions up front, e.g. `States.MathAdd(1, '-1')`).
#[derive(Clone, Copy, PartialEq)]
enum Want {
    Any,
    Number,
    String,
    /// An array or object: only a path or a call can produce one.
    Structured,
    False,
}

fn check_literal_types(function: Function, args: &[Arg]) -> Result<(), String> {
    use Function::*;
    use Want::*;
    let wants: &[Want] = match function {
        Format => &[String],
        StringToJson | Base64Encode | Base64Decode => &[String],
        ArrayPartition | ArrayGetItem => &[Structured, Number],
        ArrayContains => &[Structured, Any],
        ArrayRange | MathRandom => &[Number, Number, Number],
        ArrayLength | ArrayUnique => &[Structured],
        Hash => &[Any, String],
        JsonMerge => &[Structured, Structured, False],
        MathAdd => &[Number, Number],
        StringSplit => &[String, String],
        JsonToString | Array | Uuid => &[],
    };
    for (i, (arg, want)) in args.iter().zip(wants).enumerate() {
        let Arg::Literal { value, .. } = arg else {
            continue;
        };
        let ok = match want {
            Any => true,
            Number => value.is_number(),
            String => value.is_string(),
            Structured => false,
            False => *value == Value::Bool(false),
        };
        if !ok {
            let what = match want {
                Any => "any value",
                Number => "a number",
                String => "a string",
                Structured => "a path or a nested call (a literal cannot be an array or object)",
                False => "false (only shallow merges are supported)",
            };
            return Err(format!(
                "argument {} of {} must be {what}, but is {}",
                i + 1,
                function.name(),
                compact(value)
            ));
        }
    }
    if function == Hash
        && let Some(Arg::Literal {
            value: Value::String(alg),
            ..
        }) = args.get(1)
        && hash(alg, b"").is_none()
    {
        return Err(format!(
            "unknown hash algorithm '{alg}'; use MD5, SHA-1, SHA-256, SHA-384 or SHA-512"
        ));
    }
    Ok(())
}

struct Parser<'t> {
    text: &'t str,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        self.text.get(self.pos..).unwrap_or("")
    }
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }
    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn call(&mut self) -> Result<IntrinsicCall, String> {
        self.depth += 1;
        if self.depth > MAX_CALLS {
            return Err(format!(
                "a field may nest at most {MAX_CALLS} intrinsic functions"
            ));
        }
        self.skip_ws();
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_')
        {
            self.pos += 1;
        }
        let name = &self.text[start..self.pos];
        let function = Function::from_name(name).ok_or_else(|| {
            format!(
                "unknown intrinsic function '{name}' (names are case-sensitive, e.g. States.Format)"
            )
        })?;
        self.skip_ws();
        if self.peek() != Some(b'(') {
            return Err(format!("expected '(' after {name}"));
        }
        self.pos += 1;
        let mut args = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b')') {
            self.pos += 1;
        } else {
            loop {
                args.push(self.arg()?);
                self.skip_ws();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b')') => {
                        self.pos += 1;
                        break;
                    }
                    _ => {
                        return Err(format!(
                            "expected ',' or ')' in the arguments of {name} at offset {}",
                            self.pos
                        ));
                    }
                }
            }
        }
        let (min, max) = function.arity();
        if args.len() < min || args.len() > max {
            let expected = if min == max {
                format!("{min}")
            } else if max == usize::MAX {
                format!("at least {min}")
            } else {
                format!("{min} to {max}")
            };
            return Err(format!(
                "{name} takes {expected} argument(s) but was given {}",
                args.len()
            ));
        }
        check_literal_types(function, &args)?;
        Ok(IntrinsicCall {
            text: self.text[start..self.pos].to_owned(),
            function,
            args,
        })
    }

    fn arg(&mut self) -> Result<Arg, String> {
        self.skip_ws();
        match self.peek() {
            Some(b'\'') => {
                self.pos += 1;
                let mut value = String::new();
                let start = self.pos;
                let mut chars = self.rest().char_indices();
                loop {
                    let Some((i, c)) = chars.next() else {
                        return Err("unterminated string literal".into());
                    };
                    match c {
                        '\\' => match chars.next() {
                            Some((_, e)) => value.push(e),
                            None => return Err("unterminated string literal".into()),
                        },
                        '\'' => {
                            let raw = self.text[start..start + i].to_owned();
                            self.pos = start + i + 1;
                            return Ok(Arg::Literal {
                                value: Value::String(value),
                                raw: Some(raw),
                            });
                        }
                        _ => value.push(c),
                    }
                }
            }
            Some(b'$') => {
                // A path runs to the next ',' or ')' outside brackets and quotes.
                let start = self.pos;
                let bytes = self.text.as_bytes();
                let mut depth = 0i32;
                let mut quote: Option<u8> = None;
                while self.pos < bytes.len() {
                    let c = bytes[self.pos];
                    match quote {
                        Some(q) => {
                            if c == b'\\' {
                                self.pos += 1;
                            } else if c == q {
                                quote = None;
                            }
                        }
                        None => match c {
                            b'\'' | b'"' => quote = Some(c),
                            b'[' | b'(' => depth += 1,
                            b']' => depth -= 1,
                            b')' if depth == 0 => break,
                            b')' => depth -= 1,
                            b',' if depth == 0 => break,
                            _ => {}
                        },
                    }
                    self.pos += 1;
                }
                let text = self.text.get(start..self.pos).unwrap_or("").trim_end();
                JsonPath::parse(text).map(Arg::Path).map_err(|e| e.message)
            }
            Some(c) if c.is_ascii_digit() || c == b'-' => {
                let start = self.pos;
                self.pos += 1;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_digit() || b".eE+-".contains(&c))
                {
                    self.pos += 1;
                }
                let s = &self.text[start..self.pos];
                let n: Number = serde_json::from_str(s)
                    .map_err(|_| format!("invalid number '{s}' at offset {start}"))?;
                Ok(Arg::Literal {
                    value: Value::Number(n),
                    raw: None,
                })
            }
            Some(b'S') => Ok(Arg::Call(Box::new(self.call()?))),
            _ => {
                for (word, v) in [
                    ("true", Value::Bool(true)),
                    ("false", Value::Bool(false)),
                    ("null", Value::Null),
                ] {
                    if self.rest().starts_with(word) {
                        self.pos += word.len();
                        return Ok(Arg::Literal {
                            value: v,
                            raw: None,
                        });
                    }
                }
                Err(format!(
                    "expected an argument ('string', number, true, false, null, a path or a call) at offset {}",
                    self.pos
                ))
            }
        }
    }
}
