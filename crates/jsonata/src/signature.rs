//! Argument checking for the standard function library, by the function signatures JSONata
//! documents ("Function signatures" in the JSONata docs: `s` string, `n` number, `b`
//! boolean, `l` null, `a` array, `o` object, `f` function, `j` any JSON value, `x` anything,
//! `(..)` a choice, `a<n>` an array of numbers, `?` optional, `+` one or more, `-` "use the
//! context value when the argument is missing").
//!
//! Like the reference implementation, a signature becomes a regular expression over one
//! symbol per supplied argument (`m` for undefined); errors are T0410 (an argument does not
//! match), T0411 (the context value substituted for a missing argument does not match) and
//! T0412 (an array argument holds items of the wrong type).

use crate::error::{JsonataError, err};

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::eval::{ArrKind, V};

struct Param {
    regex: String,
    ty: char,
    context_regex: Option<regex::Regex>,
    subtype: Option<String>,
}

pub(crate) struct Signature {
    params: Vec<Param>,
    full: regex::Regex,
}

/// The type signature declared on a lambda (`function($x)<n-n?:n>{ ... }`), checked on
/// every call as the reference does.
#[derive(Clone)]
pub struct LambdaSignature {
    text: String,
    sig: std::sync::Arc<Signature>,
}

impl LambdaSignature {
    /// Parses the signature text including its angle brackets; errors are S0401 (a type
    /// parameter on a type other than `a` or `f`) and S0402 (a type parameter inside a
    /// choice).
    pub(crate) fn parse(text: &str) -> Result<LambdaSignature, JsonataError> {
        Ok(LambdaSignature {
            text: text.to_owned(),
            sig: std::sync::Arc::new(parse(text)?),
        })
    }

    /// The signature text, e.g. `<n-n?:n>`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Checks a call's arguments (see [`validate`]); `what` names the function in errors.
    pub(crate) fn check<'a>(
        &self,
        what: &str,
        args: Vec<Option<V<'a>>>,
        context: &V<'a>,
    ) -> Result<Vec<Option<V<'a>>>, JsonataError> {
        check(&self.sig, what, args, context)
    }
}

impl std::fmt::Debug for LambdaSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LambdaSignature({})", self.text)
    }
}

impl PartialEq for LambdaSignature {
    fn eq(&self, other: &LambdaSignature) -> bool {
        self.text == other.text
    }
}

/// The signatures of the JSONata 2.0.6 function library (from its function documentation).
pub(crate) fn signature_of(name: &str) -> Option<&'static str> {
    Some(match name {
        "sum" | "max" | "min" | "average" => "<a<n>:n>",
        "count" => "<a:n>",
        "string" => "<x-b?:s>",
        "substring" => "<s-nn?:s>",
        "substringBefore" | "substringAfter" => "<s-s:s>",
        "lowercase" | "uppercase" | "trim" => "<s-:s>",
        "length" => "<s-:n>",
        "pad" => "<s-ns?:s>",
        "match" => "<s-f<s:o>n?:a<o>>",
        "contains" => "<s-(sf):b>",
        "replace" => "<s-(sf)(sf)n?:s>",
        "split" => "<s-(sf)n?:a<s>>",
        "join" => "<a<s>s?:s>",
        "formatNumber" => "<n-so?:s>",
        "formatBase" => "<n-n?:s>",
        "formatInteger" => "<n-s:s>",
        "parseInteger" => "<s-s:n>",
        "number" => "<(nsb)-:n>",
        "floor" | "ceil" | "abs" | "sqrt" => "<n-:n>",
        "round" => "<n-n?:n>",
        "power" => "<n-n:n>",
        "boolean" | "not" => "<x-:b>",
        "map" | "filter" => "<af>",
        "zip" => "<a+>",
        "single" => "<af?>",
        "reduce" => "<afj?:j>",
        "sift" => "<o-f?:o>",
        "keys" => "<x-:a<s>>",
        "lookup" => "<x-s:x>",
        "append" => "<xx:a>",
        "exists" => "<x:b>",
        "spread" => "<x-:a<o>>",
        "merge" => "<a<o>:o>",
        "reverse" | "shuffle" => "<a:a>",
        "each" => "<o-f:a>",
        "error" => "<s?:x>",
        "assert" => "<bs?:x>",
        "type" => "<x:s>",
        "sort" => "<af?:a>",
        "distinct" => "<x:x>",
        "base64encode" | "base64decode" | "encodeUrlComponent" | "encodeUrl"
        | "decodeUrlComponent" | "decodeUrl" => "<s-:s>",
        "toMillis" => "<s-s?:n>",
        "fromMillis" => "<n-s?s?:s>",
        "now" => "<s?s?:s>",
        "millis" => "<:n>",
        _ => return None,
    })
}

/// How many arguments a higher-order function passes to this builtin (its declared
/// parameters), e.g. `$map(xs, $string)` calls `$string(item, index)`.
pub(crate) fn arity(name: &str) -> Option<usize> {
    if name == "string" {
        // The reference declares `$string(arg, prettify = false)`: one counted parameter.
        return Some(1);
    }
    let sig = signature_of(name)?;
    compiled(sig).ok().map(|s| s.params.len())
}

fn symbol(v: Option<&V<'_>>) -> char {
    match v {
        None => 'm',
        Some(v) => match v.type_name() {
            "string" => 's',
            "number" => 'n',
            "boolean" => 'b',
            "null" => 'l',
            "array" => 'a',
            "object" => 'o',
            _ => 'f',
        },
    }
}

fn parse(sig: &str) -> Result<Signature, JsonataError> {
    let chars: Vec<char> = sig.chars().collect();
    let mut params: Vec<Param> = Vec::new();
    let mut i = 1;
    let closing = |from: usize, open: char, close: char| -> usize {
        let mut depth = 1;
        let mut j = from;
        while j + 1 < chars.len() {
            j += 1;
            if chars[j] == close {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            } else if chars[j] == open {
                depth += 1;
            }
        }
        j
    };
    let new = |regex: String, ty: char| Param {
        regex,
        ty,
        context_regex: None,
        subtype: None,
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            ':' | '>' => break,
            's' | 'n' | 'b' | 'l' | 'o' => params.push(new(format!("[{c}m]"), c)),
            'a' => params.push(new("[asnblfom]".into(), 'a')),
            'f' => params.push(new("f".into(), 'f')),
            'j' => params.push(new("[asnblom]".into(), 'j')),
            'x' => params.push(new("[asnblfom]".into(), 'x')),
            '-' | '?' | '+' => {
                let p = params
                    .last_mut()
                    .ok_or("signature modifier without a type")?;
                if c == '-' {
                    p.context_regex = Some(
                        regex::Regex::new(&format!("^{}$", p.regex)).map_err(|e| e.to_string())?,
                    );
                    p.regex.push('?');
                } else {
                    p.regex.push(c);
                }
            }
            '(' => {
                let end = closing(i, '(', ')');
                let choice: String = chars[i + 1..end].iter().collect();
                if choice.contains('<') {
                    return Err(err!(
                        S0402,
                        "Choice groups containing parameterized types are not supported: ({choice}) in the signature {sig}"
                    ));
                }
                params.push(new(format!("[{choice}m]"), '('));
                i = end;
            }
            '<' => {
                let end = closing(i, '<', '>');
                let sub: String = chars[i + 1..end].iter().collect();
                match params.last_mut() {
                    Some(p) if p.ty == 'a' || p.ty == 'f' => p.subtype = Some(sub),
                    _ => {
                        return Err(err!(
                            S0401,
                            "Type parameters can only be applied to functions and arrays (the signature {sig})"
                        ));
                    }
                }
                i = end;
            }
            _ => {}
        }
        i += 1;
    }
    let full = params
        .iter()
        .map(|p| format!("({})", p.regex))
        .collect::<String>();
    let full = regex::Regex::new(&format!("^{full}$")).map_err(|e| e.to_string())?;
    Ok(Signature { params, full })
}

thread_local! {
    static CACHE: RefCell<HashMap<&'static str, Rc<Signature>>> = RefCell::new(HashMap::new());
}

fn compiled(sig: &'static str) -> Result<Rc<Signature>, JsonataError> {
    if let Some(s) = CACHE.with(|c| c.borrow().get(sig).cloned()) {
        return Ok(s);
    }
    let s = Rc::new(parse(sig)?);
    CACHE.with(|c| c.borrow_mut().insert(sig, s.clone()));
    Ok(s)
}

fn plural(t: &str) -> &'static str {
    match t.chars().next() {
        Some('a') => "arrays",
        Some('b') => "booleans",
        Some('f') => "functions",
        Some('n') => "numbers",
        Some('o') => "objects",
        _ => "strings",
    }
}

/// Checks `args` against the signature of builtin `name` and returns them fixed up: the
/// context value substituted for a missing `-` argument, and single values wrapped in an
/// array where an array is expected. Builtins without a signature pass through unchanged.
pub(crate) fn validate<'a>(
    name: &str,
    args: Vec<Option<V<'a>>>,
    context: &V<'a>,
) -> Result<Vec<Option<V<'a>>>, JsonataError> {
    let Some(sig) = signature_of(name) else {
        return Ok(args);
    };
    let sig = compiled(sig)?;
    check(&sig, name, args, context)
}

fn check<'a>(
    sig: &Signature,
    name: &str,
    args: Vec<Option<V<'a>>>,
    context: &V<'a>,
) -> Result<Vec<Option<V<'a>>>, JsonataError> {
    let supplied: String = args.iter().map(|a| symbol(a.as_ref())).collect();
    let Some(caps) = sig.full.captures(&supplied) else {
        // Find the first argument the signature cannot match (for the error's index).
        let mut partial = String::from("^");
        let mut good = 0;
        for p in &sig.params {
            partial.push_str(&p.regex);
            match regex::Regex::new(&partial)
                .ok()
                .and_then(|r| r.find(&supplied).map(|m| m.end()))
            {
                Some(end) => good = end,
                None => break,
            }
        }
        return Err(err!(
            T0410,
            "Argument {} of function \"{name}\" does not match function signature",
            good + 1
        ));
    };
    let mut out = Vec::with_capacity(sig.params.len());
    let mut ai = 0;
    for (pi, p) in sig.params.iter().enumerate() {
        let m = caps.get(pi + 1).map_or("", |m| m.as_str());
        if m.is_empty() {
            match &p.context_regex {
                Some(re) => {
                    let ct = symbol(Some(context)).to_string();
                    if re.is_match(&ct) {
                        out.push(Some(context.clone()));
                    } else {
                        return Err(err!(
                            T0411,
                            "Context value is not a compatible type with argument {} of function \"{name}\"",
                            ai + 1
                        ));
                    }
                }
                None => {
                    out.push(args.get(ai).cloned().flatten());
                    ai += 1;
                }
            }
            continue;
        }
        for single in m.chars() {
            let arg = args.get(ai).cloned().flatten();
            if p.ty == 'a' && single != 'm' {
                if let (Some(sub), Some(a)) = (&p.subtype, &arg) {
                    let ok = if single == 'a' {
                        let items = a.to_vec();
                        match items.first() {
                            None => true,
                            Some(first) => {
                                let t = symbol(Some(first));
                                sub.starts_with(t) && items.iter().all(|x| symbol(Some(x)) == t)
                            }
                        }
                    } else {
                        m == sub
                    };
                    if !ok {
                        return Err(err!(
                            T0412,
                            "Argument {} of function \"{name}\" must be an array of {}",
                            ai + 1,
                            plural(sub)
                        ));
                    }
                }
                let arg = match arg {
                    Some(a) if single != 'a' => Some(V::Arr(Rc::new(vec![a]), ArrKind::Plain)),
                    other => other,
                };
                out.push(arg);
            } else if p.ty == 'a' {
                out.push(None);
            } else {
                out.push(arg);
            }
            ai += 1;
        }
    }
    Ok(out)
}
