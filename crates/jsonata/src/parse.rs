//! JSONata tokenizer and parser (top-down operator precedence, as the reference
//! implementation does). Produces [`Node`] trees whose HEIGHT is bounded: recursion and every
//! operator folded into a left operand (`a+b+c`, `x[0][0]`, `a ~> f ~> g`) count towards
//! `MAX_DEPTH`, so dropping, cloning, walking or evaluating a parsed tree cannot overflow the
//! stack, and parsing is linear (left operands are moved, never copied).

use crate::error::{JsonataError, err, uncoded};

use std::ops::ControlFlow;

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `&`
    Concat,
    /// `and`
    And,
    /// `or`
    Or,
    /// `in`
    In,
    /// `..` (inside an array constructor)
    Range,
}

/// JSONata syntax tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// Number literal.
    Num(f64),
    /// String literal.
    Str(String),
    /// `true` / `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// A field name step (`name` or `` `name` ``).
    Name(String),
    /// `$name`; `""` is the context item `$`, `"$"` is the root `$$`.
    Var(String),
    /// `*`
    Wildcard,
    /// `**`
    Descendants,
    /// `a.b.c`
    Path(Vec<Node>),
    /// `expr[pred]` (a step with a predicate or index).
    Filter(Box<Node>, Box<Node>),
    /// `-expr`
    Neg(Box<Node>),
    /// Binary operation.
    Binary(BinOp, Box<Node>, Box<Node>),
    /// `[a, b, ...]`
    Array(Vec<Node>),
    /// `{k: v, ...}`
    Object(Vec<(Node, Node)>),
    /// `cond ? a : b`
    Condition(Box<Node>, Box<Node>, Option<Box<Node>>),
    /// `(a; b; c)`
    Block(Vec<Node>),
    /// `$x := value`
    Bind(String, Box<Node>),
    /// `function($a, $b) { body }`, with its type signature when it declares one.
    Lambda(
        Vec<String>,
        std::sync::Arc<Node>,
        Option<Box<super::signature::LambdaSignature>>,
    ),
    /// `f(args)`
    Call(Box<Node>, Vec<Node>),
    /// `a ~> f(args)`: the left side becomes the first argument.
    Chain(Box<Node>, Box<Node>),
    /// `expr^(<a, >b)`: order by keys; `true` = descending.
    Sort(Box<Node>, Vec<(Node, bool)>),
    /// `/pattern/flags`
    Regex(Regex),
    /// `expr{key: value, ...}`: group the items of `expr` by key.
    Group(Box<Node>, Vec<(Node, Node)>),
    /// `expr[]`: the result is always an array (a single value is wrapped).
    KeepArray(Box<Node>),
    /// `?` as a call argument: the call is a partial application.
    Placeholder,
    /// `step@$v` (only as a path step): binds each result of `step` to `$v` and keeps the
    /// context item unchanged (a tuple stream, "Path Operators" in the JSONata docs).
    Focus(Box<Node>, String),
    /// `step#$i` (only as a path step): binds each item's position to `$i`.
    Index(Box<Node>, String),
    /// `%`: the parent of the context item. The label names the tuple-stream variable that
    /// carries it (`!0`, `!1`, ...; no user variable can have such a name), bound by the
    /// path step `parent.rs` finds for it at parse time.
    Parent(String),
    /// A path step that binds, for every item it produces, the item it was evaluated on
    /// (its parent) to each of the labels (set by `parent.rs` only).
    Ancestor(Box<Node>, Vec<String>),
    /// A path or block used as a step that returns its tuple stream (its items with the
    /// parent labels bound inside it), so later steps see those bindings (set by
    /// `parent.rs` only).
    Tuples(Box<Node>),
    /// `| location | update [, delete] |`: a function that returns a modified copy.
    Transform(
        std::sync::Arc<Node>,
        std::sync::Arc<Node>,
        Option<std::sync::Arc<Node>>,
    ),
}

impl Node {
    /// Calls `f` on each direct child in source order, stopping at the first `Break`: the
    /// one place that knows which variants have which children, for every read-only walk
    /// over the tree. Leaves (literals, names, variables, `%`, regexes) have none.
    pub(crate) fn try_for_each_child<B>(
        &self,
        mut f: impl FnMut(&Node) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        match self {
            Node::Path(items) | Node::Array(items) | Node::Block(items) => {
                items.iter().try_for_each(f)
            }
            Node::Filter(a, b) | Node::Binary(_, a, b) | Node::Chain(a, b) => {
                f(a)?;
                f(b)
            }
            Node::Neg(e)
            | Node::Bind(_, e)
            | Node::KeepArray(e)
            | Node::Focus(e, _)
            | Node::Index(e, _)
            | Node::Ancestor(e, _)
            | Node::Tuples(e) => f(e),
            Node::Object(pairs) => pairs.iter().flat_map(|(k, v)| [k, v]).try_for_each(f),
            Node::Condition(c, a, b) => {
                f(c)?;
                f(a)?;
                b.as_deref().map_or(ControlFlow::Continue(()), f)
            }
            Node::Lambda(_, body, _) => f(body),
            Node::Call(callee, args) => {
                f(callee)?;
                args.iter().try_for_each(f)
            }
            Node::Sort(e, terms) => {
                f(e)?;
                terms.iter().try_for_each(|(t, _)| f(t))
            }
            Node::Group(e, pairs) => {
                f(e)?;
                pairs.iter().flat_map(|(k, v)| [k, v]).try_for_each(f)
            }
            Node::Transform(location, update, delete) => {
                f(location)?;
                f(update)?;
                delete.as_deref().map_or(ControlFlow::Continue(()), f)
            }
            Node::Num(_)
            | Node::Str(_)
            | Node::Bool(_)
            | Node::Null
            | Node::Name(_)
            | Node::Var(_)
            | Node::Wildcard
            | Node::Descendants
            | Node::Regex(_)
            | Node::Placeholder
            | Node::Parent(_) => ControlFlow::Continue(()),
        }
    }

    /// Does any direct child satisfy `pred`? (Stops at the first that does.)
    pub(crate) fn any_child(&self, mut pred: impl FnMut(&Node) -> bool) -> bool {
        self.try_for_each_child(|c| {
            if pred(c) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .is_break()
    }
}

/// A compiled regular expression literal: JavaScript syntax as far as `fancy-regex` shares
/// it (look-around and back-references included), flags `i` and `m`. Patterns without
/// look-around or back-references run on the `regex` crate's linear-time engine (fancy-regex
/// delegates them); the others backtrack, bounded by [`REGEX_BACKTRACK_LIMIT`] per search.
#[derive(Debug, Clone)]
pub struct Regex {
    pub(crate) re: std::sync::Arc<fancy_regex::Regex>,
    /// For a pattern with `\b`/`\B`: the same pattern with JavaScript's ASCII word
    /// boundaries spelled out with look-around, for text that is not all ASCII (on ASCII
    /// text the Unicode-aware `re` matches the same, faster).
    pub(crate) exact: Option<std::sync::Arc<fancy_regex::Regex>>,
    /// The pattern needs the backtracking engine (searches cost more of the work budget).
    pub(crate) backtracks: bool,
}

impl Regex {
    /// The engine for `text`, and whether it backtracks.
    pub(crate) fn for_text(&self, text: &str) -> (&fancy_regex::Regex, bool) {
        match &self.exact {
            Some(exact) if !text.is_ascii() => (exact, true),
            _ => (&self.re, self.backtracks),
        }
    }
}

fn compile_regex(pattern: &str) -> Result<std::sync::Arc<fancy_regex::Regex>, fancy_regex::Error> {
    fancy_regex::RegexBuilder::new(pattern)
        .backtrack_limit(REGEX_BACKTRACK_LIMIT)
        // With the `m` flag, `^`/`$` also stop at `\r` as JavaScript's do.
        .crlf(true)
        .delegate_size_limit(1 << 20)
        .delegate_dfa_size_limit(1 << 20)
        .build()
        .map(std::sync::Arc::new)
}

/// Backtracking steps one search of a look-around/back-reference pattern may take before it
/// fails with an error (catastrophic patterns such as `/(a|a)*\1b/` end in an error, never a
/// hang).
pub(crate) const REGEX_BACKTRACK_LIMIT: usize = 100_000;

impl PartialEq for Regex {
    fn eq(&self, other: &Regex) -> bool {
        self.re.as_str() == other.re.as_str()
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Name(String),
    Var(String),
    Op(&'static str),
    /// The pattern in Rust syntax, and its exact-word-boundary variant (see [`Regex`]).
    Regex(String, Option<String>),
    End,
}

const MAX_DEPTH: usize = 200;
/// Parent operators allowed in one expression (see `parent.rs`: resolving them is quadratic).
const MAX_PARENTS: usize = 1000;

const OPS: &[&str] = &[
    "..", ":=", "!=", "<=", ">=", "**", "~>", "^(", ".", "[", "]", "{", "}", "(", ")", ",", ":",
    ";", "?", "+", "-", "*", "/", "%", "&", "=", "<", ">", "|", "@", "#",
];

fn tokenize(src: &str) -> Result<Vec<(Tok, usize)>, JsonataError> {
    let mut out = Vec::new();
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if src[i..].starts_with("/*") {
            match src[i + 2..].find("*/") {
                Some(end) => {
                    i += end + 4;
                    continue;
                }
                None => return Err(uncoded!("unterminated comment at offset {i}").at(i)),
            }
        }
        let start = i;
        if c.is_ascii_digit() {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
                let mut j = i + 1;
                if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
                    j += 1;
                }
                if j < b.len() && b[j].is_ascii_digit() {
                    while j < b.len() && b[j].is_ascii_digit() {
                        j += 1;
                    }
                    i = j;
                }
            }
            let n: f64 = src[start..i]
                .parse()
                .map_err(|_| uncoded!("invalid number at offset {start}").at(start))?;
            out.push((Tok::Num(n), start));
            continue;
        }
        if c == b'"' || c == b'\'' {
            let (s, next) = string_literal(src, i)?;
            out.push((Tok::Str(s), start));
            i = next;
            continue;
        }
        if c == b'`' {
            let end = src[i + 1..]
                .find('`')
                .ok_or_else(|| uncoded!("unterminated `name` at offset {i}").at(i))?;
            out.push((Tok::Name(src[i + 1..i + 1 + end].to_owned()), start));
            i += end + 2;
            continue;
        }
        if c == b'$' {
            i += 1;
            if i < b.len() && b[i] == b'$' {
                i += 1;
                out.push((Tok::Var("$".into()), start));
                continue;
            }
            let s = i;
            while i < src.len() {
                let ch = src[i..].chars().next().unwrap_or(' ');
                if ch.is_alphanumeric() || ch == '_' {
                    i += ch.len_utf8();
                } else {
                    break;
                }
            }
            out.push((Tok::Var(src[s..i].to_owned()), start));
            continue;
        }
        if c == b'/' && !src[i..].starts_with("/*") && regex_allowed(out.last().map(|t| &t.0)) {
            let (pattern, exact, next) = regex_literal(src, i)?;
            out.push((Tok::Regex(pattern, exact), start));
            i = next;
            continue;
        }
        if let Some(op) = OPS.iter().find(|op| src[i..].starts_with(**op)) {
            out.push((Tok::Op(op), start));
            i += op.len();
            continue;
        }
        let ch = src[i..].chars().next().unwrap_or(' ');
        if ch.is_alphabetic() || ch == '_' || ch == 'λ' {
            while i < src.len() {
                let ch = src[i..].chars().next().unwrap_or(' ');
                if ch.is_alphanumeric() || ch == '_' || ch == 'λ' {
                    i += ch.len_utf8();
                } else {
                    break;
                }
            }
            out.push((Tok::Name(src[start..i].to_owned()), start));
            continue;
        }
        return Err(uncoded!("unexpected character '{ch}' at offset {i}").at(i));
    }
    out.push((Tok::End, src.len()));
    Ok(out)
}

/// A `/` starts a regular expression unless it follows something that ends a value (then it
/// divides), as in the reference tokenizer.
fn regex_allowed(prev: Option<&Tok>) -> bool {
    match prev {
        None => true,
        Some(Tok::Num(_) | Tok::Str(_) | Tok::Var(_) | Tok::Regex(..)) => false,
        Some(Tok::Name(n)) => matches!(n.as_str(), "and" | "or" | "in"),
        Some(Tok::Op(op)) => !matches!(*op, ")" | "]" | "}" | "*"),
        Some(Tok::End) => true,
    }
}

/// Reads `/pattern/flags` and returns the pattern in `regex` crate syntax (`(?im)` prefix).
fn regex_literal(src: &str, start: usize) -> Result<(String, Option<String>, usize), JsonataError> {
    let b = src.as_bytes();
    let mut i = start + 1;
    let mut in_class = false;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'[' => in_class = true,
            b']' => in_class = false,
            b'/' if !in_class => break,
            _ => {}
        }
        i += 1;
    }
    if i >= b.len() {
        return Err(uncoded!("unterminated regular expression at offset {start}").at(start));
    }
    let pattern = &src[start + 1..i];
    let src_pattern = pattern;
    if pattern.is_empty() {
        return Err(uncoded!("empty regular expression at offset {start}").at(start));
    }
    i += 1;
    let flags_start = i;
    while i < b.len() && b[i].is_ascii_alphabetic() {
        i += 1;
    }
    let flags = &src[flags_start..i];
    if let Some(bad) = flags.chars().find(|c| !matches!(c, 'i' | 'm')) {
        return Err(uncoded!("unsupported regular expression flag '{bad}'"));
    }
    let with_flags = |p: String| {
        if flags.is_empty() {
            p
        } else {
            format!("(?{flags}){p}")
        }
    };
    let (pattern, boundaries) = js_classes(pattern, false);
    let exact = boundaries.then(|| with_flags(js_classes(src_pattern, true).0));
    Ok((with_flags(pattern), exact, i))
}

/// JavaScript's `\b`: a word character (ASCII `\w`) on exactly one side.
const ASCII_BOUNDARY: &str =
    "(?:(?<=[0-9A-Za-z_])(?![0-9A-Za-z_])|(?<![0-9A-Za-z_])(?=[0-9A-Za-z_]))";
/// JavaScript's `\B`.
const ASCII_NON_BOUNDARY: &str =
    "(?:(?<=[0-9A-Za-z_])(?=[0-9A-Za-z_])|(?<![0-9A-Za-z_])(?![0-9A-Za-z_]))";

/// JavaScript's `\d` and `\w` are ASCII-only (without the `u` flag, which JSONata does
/// not allow), where the Rust engines' are Unicode-aware: spell them out. In a class,
/// `[\b]` is a backspace in JavaScript. `\b`/`\B` outside a class stay Unicode-aware
/// unless `exact_boundaries` (then they become look-around over ASCII word characters);
/// the flag returned says whether the pattern has any. `.` excludes every JavaScript line
/// terminator.
fn js_classes(pattern: &str, exact_boundaries: bool) -> (String, bool) {
    let mut boundaries = false;
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(e) = chars.next() else {
                    out.push(c);
                    break;
                };
                match e {
                    'd' => out.push_str("[0-9]"),
                    'D' => out.push_str("[^0-9]"),
                    'w' => out.push_str("[0-9A-Za-z_]"),
                    'W' => out.push_str("[^0-9A-Za-z_]"),
                    'b' if in_class => out.push_str("\\x08"),
                    // `\cA`..`\cZ`: control characters.
                    'c' if chars
                        .clone()
                        .next()
                        .is_some_and(|l| l.is_ascii_alphabetic()) =>
                    {
                        let l = chars.next().unwrap_or('A');
                        out.push_str(&format!("\\x{:02X}", (l as u8) % 32));
                    }
                    'b' | 'B' => {
                        boundaries = true;
                        match (exact_boundaries, e) {
                            (false, _) => {
                                out.push('\\');
                                out.push(e);
                            }
                            (true, 'b') => out.push_str(ASCII_BOUNDARY),
                            _ => out.push_str(ASCII_NON_BOUNDARY),
                        }
                    }
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                }
            }
            // `[^]` is any character and `[]` none in JavaScript.
            '[' if !in_class && chars.as_str().starts_with("^]") => {
                chars.nth(1);
                out.push_str("[\\s\\S]");
            }
            '[' if !in_class && chars.as_str().starts_with(']') => {
                chars.next();
                out.push_str("[^\\s\\S]");
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
                // A `]` right after `[` or `[^` is a literal in Rust syntax but ends an
                // empty class in JavaScript; leave it to the engine (rare).
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            // JavaScript's `.` stops at every line terminator, not only `\n`.
            '.' if !in_class => out.push_str("[^\\n\\r\\x{2028}\\x{2029}]"),
            _ => out.push(c),
        }
    }
    (out, boundaries)
}

/// Does the pattern use a feature only the backtracking engine has (look-around,
/// back-references, atomic groups, possessive quantifiers)? Over-approximates (an escaped
/// `\\1` counts), which only makes searches cost more of the work budget.
fn backtracks(pattern: &str) -> bool {
    [
        "(?=", "(?!", "(?<=", "(?<!", "(?>", "\\k", "*+", "++", "?+", "}+",
    ]
    .iter()
    .any(|f| pattern.contains(f))
        || pattern
            .as_bytes()
            .windows(2)
            .any(|w| w[0] == b'\\' && (b'1'..=b'9').contains(&w[1]))
}

fn string_literal(src: &str, start: usize) -> Result<(String, usize), JsonataError> {
    let quote = src.as_bytes()[start] as char;
    let mut out = String::new();
    let mut it = src[start + 1..].char_indices();
    while let Some((i, c)) = it.next() {
        if c == quote {
            return Ok((out, start + 1 + i + 1));
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some((_, e)) = it.next() else { break };
        match e {
            '"' => out.push('"'),
            '\'' => out.push('\''),
            '\\' => out.push('\\'),
            '/' => out.push('/'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let mut code = 0u32;
                for _ in 0..4 {
                    let d = it
                        .next()
                        .and_then(|(_, h)| h.to_digit(16))
                        .ok_or("invalid \\u escape in string")?;
                    code = code * 16 + d;
                }
                out.push(char::from_u32(code).unwrap_or('\u{FFFD}'));
            }
            other => return Err(uncoded!("unsupported escape '\\{other}' in string")),
        }
    }
    Err(uncoded!("unterminated string starting at offset {start}").at(start))
}

fn too_deep(offset: usize) -> JsonataError {
    uncoded!(
        "the expression is nested more than {MAX_DEPTH} levels deep (operators, predicates, calls and brackets all count) at offset {offset}; split it into several expressions or use Assign variables"
    ).at(offset)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    depth: usize,
    /// True while parsing an item of an array constructor, the only place `a..b` is a
    /// range (`[1..5]`). Elsewhere `..` is a syntax error, reported after the whole parse
    /// so that a long `a..b..c` chain still ends at the depth limit in linear time.
    range_ok: bool,
    stray_range: Option<usize>,
    /// How many `%` have been read (each gets its own label).
    parents: usize,
}

fn lbp(tok: &Tok) -> u8 {
    match tok {
        Tok::Op(op) => match *op {
            "." => 75,
            "[" | "(" | "^(" | "@" | "#" => 80,
            "{" => 70,
            "*" | "/" | "%" => 60,
            "+" | "-" => 50,
            "&" => 50,
            "=" | "!=" | "<" | "<=" | ">" | ">=" => 40,
            "~>" => 40,
            "?" => 20,
            ".." => 20,
            ":=" => 10,
            _ => 0,
        },
        Tok::Name(n) => match n.as_str() {
            "and" => 30,
            "or" => 25,
            "in" => 40,
            _ => 0,
        },
        _ => 0,
    }
}

/// Parses a JSONata expression.
pub(crate) fn parse(src: &str) -> Result<Node, JsonataError> {
    let toks = tokenize(src)?;
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
        range_ok: false,
        stray_range: None,
        parents: 0,
    };
    if matches!(p.peek(), Tok::End) {
        return Err("empty expression".into());
    }
    let node = p.expression(0)?;
    if !matches!(p.peek(), Tok::End) {
        return Err(uncoded!("unexpected token at offset {}", p.offset()).at(p.offset()));
    }
    if let Some(at) = p.stray_range {
        return Err(err!(
            S0202,
            "the range operator '..' at offset {at} is only allowed inside an array constructor, as in [1..5]"
        ).at(at));
    }
    let mut node = node;
    if p.parents > 0 {
        super::parent::resolve(&mut node)?;
    }
    Ok(node)
}

impl Parser {
    fn peek(&self) -> &Tok {
        self.toks.get(self.pos).map_or(&Tok::End, |t| &t.0)
    }
    fn offset(&self) -> usize {
        self.toks.get(self.pos).map_or(0, |t| t.1)
    }
    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.toks.len() {
            self.pos += 1;
        }
        t
    }
    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Tok::Op(o) if *o == op)
    }
    fn expect(&mut self, op: &str) -> Result<(), JsonataError> {
        if self.is_op(op) {
            self.pos += 1;
            Ok(())
        } else {
            Err(uncoded!("expected '{op}' at offset {}", self.offset()).at(self.offset()))
        }
    }

    fn expression(&mut self, rbp: u8) -> Result<Node, JsonataError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(too_deep(self.offset()));
        }
        let entry = self.depth;
        let mut left = self.nud()?;
        while rbp < lbp(self.peek()) {
            // Each operator folded into `left` nests it one level deeper, so the loop counts
            // towards the same limit as recursion: the tree's height (not just the parser's
            // recursion) stays bounded, and dropping, cloning, walking or evaluating it
            // cannot overflow the stack. `.` appends to a flat `Path` instead of nesting.
            if !self.is_op(".") {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(too_deep(self.offset()));
                }
            }
            left = self.led(left)?;
        }
        self.depth = entry - 1;
        Ok(left)
    }

    fn nud(&mut self) -> Result<Node, JsonataError> {
        let at = self.offset();
        match self.next() {
            Tok::Num(n) => Ok(Node::Num(n)),
            Tok::Str(s) => Ok(Node::Str(s)),
            Tok::Var(v) => Ok(Node::Var(v)),
            Tok::Name(n) => match n.as_str() {
                "true" => Ok(Node::Bool(true)),
                "false" => Ok(Node::Bool(false)),
                "null" => Ok(Node::Null),
                "function" | "λ" if self.is_op("(") => self.lambda(),
                _ => Ok(Node::Name(n)),
            },
            Tok::Op("-") => Ok(Node::Neg(Box::new(self.expression(70)?))),
            Tok::Op("*") => Ok(Node::Wildcard),
            Tok::Op("**") => Ok(Node::Descendants),
            Tok::Op("%") => {
                // Resolving a `%` walks back over the `%`s before it: bounding their number
                // keeps parsing fast on hostile input.
                if self.parents >= MAX_PARENTS {
                    return Err(uncoded!(
                        "more than {MAX_PARENTS} parent operators '%' in one expression (offset {at}); bind the parent with '@' instead"
                    ).at(at));
                }
                self.parents += 1;
                Ok(Node::Parent(format!("!{}", self.parents - 1)))
            }
            Tok::Op("(") => {
                let mut items = Vec::new();
                while !self.is_op(")") {
                    items.push(self.expression(0)?);
                    if !self.is_op(";") {
                        break;
                    }
                    self.pos += 1;
                }
                self.expect(")")?;
                Ok(Node::Block(items))
            }
            Tok::Op("[") => {
                let mut items = Vec::new();
                if !self.is_op("]") {
                    loop {
                        let saved = std::mem::replace(&mut self.range_ok, true);
                        let item = self.expression(0);
                        self.range_ok = saved;
                        items.push(item?);
                        if !self.is_op(",") {
                            break;
                        }
                        self.pos += 1;
                    }
                }
                self.expect("]")?;
                Ok(Node::Array(items))
            }
            Tok::Op("{") => Ok(Node::Object(self.object_body()?)),
            // Only meaningful as a call argument; `Call` evaluation turns it into a partial
            // application, anywhere else it is an error at evaluation.
            Tok::Op("?") => Ok(Node::Placeholder),
            Tok::Op("|") => {
                let location = self.expression(0)?;
                self.expect("|")?;
                let update = self.expression(0)?;
                let delete = if self.is_op(",") {
                    self.pos += 1;
                    Some(std::sync::Arc::new(self.expression(0)?))
                } else {
                    None
                };
                self.expect("|")?;
                Ok(Node::Transform(
                    std::sync::Arc::new(location),
                    std::sync::Arc::new(update),
                    delete,
                ))
            }
            Tok::Regex(p, exact) => {
                let bad = |e: fancy_regex::Error| {
                    uncoded!("invalid regular expression at offset {at}: {e}").at(at)
                };
                let re = compile_regex(&p).map_err(bad)?;
                let exact = match exact {
                    Some(x) => Some(compile_regex(&x).map_err(bad)?),
                    None => None,
                };
                Ok(Node::Regex(Regex {
                    re,
                    exact,
                    backtracks: backtracks(&p),
                }))
            }
            Tok::End => Err("unexpected end of expression".into()),
            other => Err(uncoded!("unexpected {other:?} at offset {at}").at(at)),
        }
    }

    fn object_body(&mut self) -> Result<Vec<(Node, Node)>, JsonataError> {
        let mut pairs = Vec::new();
        if !self.is_op("}") {
            loop {
                let k = self.expression(0)?;
                self.expect(":")?;
                let v = self.expression(0)?;
                pairs.push((k, v));
                if !self.is_op(",") {
                    break;
                }
                self.pos += 1;
            }
        }
        self.expect("}")?;
        Ok(pairs)
    }

    fn lambda(&mut self) -> Result<Node, JsonataError> {
        self.expect("(")?;
        let mut params = Vec::new();
        if !self.is_op(")") {
            loop {
                match self.next() {
                    Tok::Var(v) => params.push(v),
                    _ => {
                        return Err(
                            uncoded!("expected a $parameter at offset {}", self.offset())
                                .at(self.offset()),
                        );
                    }
                }
                if !self.is_op(",") {
                    break;
                }
                self.pos += 1;
            }
        }
        self.expect(")")?;
        // An optional type signature `<n-n?:n>`: its tokens spell it (as the reference
        // reads it); arguments are checked against it on every call.
        let mut signature = None;
        if self.is_op("<") {
            let at = self.offset();
            let mut depth = 0usize;
            let mut text = String::new();
            loop {
                let tok = self.next();
                match &tok {
                    Tok::Op("<") => depth += 1,
                    Tok::Op(">") => depth -= 1,
                    Tok::Op("{") | Tok::End => {
                        return Err(
                            uncoded!("unterminated function signature at offset {at}").at(at)
                        );
                    }
                    _ => {}
                }
                match tok {
                    Tok::Op(op) => text.push_str(op),
                    Tok::Name(n) => text.push_str(&n),
                    _ => {
                        return Err(uncoded!(
                            "invalid function signature at offset {at}: only type symbols (s n b l a o f j x), ( ) < > ? + - : may appear"
                        ).at(at));
                    }
                }
                if depth == 0 {
                    break;
                }
            }
            signature = Some(
                super::signature::LambdaSignature::parse(&text)
                    .map_err(|e| uncoded!("{e} (offset {at})").at(at))?,
            );
        }
        self.expect("{")?;
        let body = self.expression(0)?;
        self.expect("}")?;
        Ok(Node::Lambda(
            params,
            std::sync::Arc::new(body),
            signature.map(Box::new),
        ))
    }

    fn led(&mut self, left: Node) -> Result<Node, JsonataError> {
        let at = self.offset();
        let tok = self.next();
        let bp = lbp(&tok);
        let bin_op = match &tok {
            Tok::Op("+") => Some(BinOp::Add),
            Tok::Op("-") => Some(BinOp::Sub),
            Tok::Op("*") => Some(BinOp::Mul),
            Tok::Op("/") => Some(BinOp::Div),
            Tok::Op("%") => Some(BinOp::Mod),
            Tok::Op("=") => Some(BinOp::Eq),
            Tok::Op("!=") => Some(BinOp::Ne),
            Tok::Op("<") => Some(BinOp::Lt),
            Tok::Op("<=") => Some(BinOp::Le),
            Tok::Op(">") => Some(BinOp::Gt),
            Tok::Op(">=") => Some(BinOp::Ge),
            Tok::Op("&") => Some(BinOp::Concat),
            Tok::Op("..") => Some(BinOp::Range),
            Tok::Name(n) if n == "and" => Some(BinOp::And),
            Tok::Name(n) if n == "or" => Some(BinOp::Or),
            Tok::Name(n) if n == "in" => Some(BinOp::In),
            _ => None,
        };
        if bin_op == Some(BinOp::Range) && !self.range_ok {
            self.stray_range.get_or_insert(at);
        }
        if let Some(op) = bin_op {
            // `left` is moved into the new node (never cloned: a chain of n operators stays
            // linear to parse). Operands of an operator are not array items: a range there
            // is stray.
            let saved = std::mem::replace(&mut self.range_ok, false);
            let right = self.expression(bp);
            self.range_ok = saved;
            return Ok(Node::Binary(op, Box::new(left), Box::new(right?)));
        }
        match tok {
            Tok::Op(".") => {
                let right = self.expression(bp)?;
                // Only the new steps need checking (a path on the left was checked when it
                // was built), so a long path stays linear to parse.
                let left_is_path = matches!(left, Node::Path(_));
                let mut steps = into_steps(left);
                let new_from = if left_is_path { steps.len() } else { 0 };
                steps.extend(into_steps(right));
                if let Some(lit) = steps[new_from..]
                    .iter()
                    .find(|s| matches!(s, Node::Num(_) | Node::Bool(_) | Node::Null))
                {
                    let lit = match lit {
                        Node::Num(n) => format!("{n}"),
                        Node::Bool(b) => b.to_string(),
                        _ => "null".into(),
                    };
                    return Err(err!(
                        S0213,
                        "The literal value {lit} cannot be used as a step within a path expression (offset {at})"
                    ).at(at));
                }
                Ok(Node::Path(steps))
            }
            Tok::Op("[") => {
                if self.is_op("]") {
                    self.pos += 1;
                    return Ok(Node::KeepArray(Box::new(left)));
                }
                let pred = self.expression(0)?;
                self.expect("]")?;
                Ok(attach_filter(left, pred))
            }
            Tok::Op("(") => {
                let mut args = Vec::new();
                if !self.is_op(")") {
                    loop {
                        args.push(self.expression(0)?);
                        if !self.is_op(",") {
                            break;
                        }
                        self.pos += 1;
                    }
                }
                self.expect(")")?;
                Ok(Node::Call(Box::new(left), args))
            }
            Tok::Op("^(") => {
                let mut terms = Vec::new();
                loop {
                    let desc = if self.is_op(">") {
                        self.pos += 1;
                        true
                    } else {
                        if self.is_op("<") {
                            self.pos += 1;
                        }
                        false
                    };
                    terms.push((self.expression(0)?, desc));
                    if !self.is_op(",") {
                        break;
                    }
                    self.pos += 1;
                }
                self.expect(")")?;
                // On a path, order-by is a step of its own that sorts the whole sequence so
                // far (`a.b^(x)` sorts every `b`, not each `a`'s), as the reference parser
                // does; `Var("")` marks "the incoming sequence".
                Ok(match left {
                    Node::Path(mut steps) => {
                        steps.push(Node::Sort(Box::new(Node::Var(String::new())), terms));
                        Node::Path(steps)
                    }
                    other => Node::Sort(Box::new(other), terms),
                })
            }
            Tok::Op("{") => Ok(Node::Group(Box::new(left), self.object_body()?)),
            Tok::Op(op @ ("@" | "#")) => {
                let Tok::Var(name) = self.next() else {
                    return Err(uncoded!(
                        "the '{op}' operator must be followed by a $variable (offset {at})"
                    )
                    .at(at));
                };
                if name.is_empty() || name == "$" {
                    return Err(uncoded!(
                        "the '{op}' operator needs a named $variable, not '$' or '$$' (offset {at})"
                    )
                    .at(at));
                }
                let mut steps = into_steps(left);
                let Some(last) = steps.pop() else {
                    return Err(
                        uncoded!("'{op}' needs a path step on its left (offset {at})").at(at),
                    );
                };
                if op == "@" {
                    // jsonata-js S0215/S0216: a focus binding must come before predicates
                    // and cannot follow an order-by.
                    if matches!(last, Node::Filter(..)) {
                        return Err(err!(
                            S0215,
                            "A context variable binding must precede any predicates on a step (offset {at})"
                        ).at(at));
                    }
                    if matches!(last, Node::Sort(..)) {
                        return Err(err!(
                            S0216,
                            "A context variable binding must precede the 'order-by' clause on a step (offset {at})"
                        ).at(at));
                    }
                    steps.push(Node::Focus(Box::new(last), name));
                } else {
                    steps.push(Node::Index(Box::new(last), name));
                }
                Ok(Node::Path(steps))
            }
            Tok::Op("~>") => {
                let right = self.expression(bp)?;
                Ok(Node::Chain(Box::new(left), Box::new(right)))
            }
            Tok::Op("?") => {
                let then = self.expression(0)?;
                let otherwise = if self.is_op(":") {
                    self.pos += 1;
                    Some(Box::new(self.expression(0)?))
                } else {
                    None
                };
                Ok(Node::Condition(Box::new(left), Box::new(then), otherwise))
            }
            Tok::Op(":=") => {
                let Node::Var(name) = left else {
                    return Err(uncoded!(
                        "the left side of ':=' must be a $variable (offset {at})"
                    )
                    .at(at));
                };
                // Right-associative: `$a := $b := 1`.
                let right = self.expression(bp - 1)?;
                Ok(Node::Bind(name, Box::new(right)))
            }
            other => Err(uncoded!("unexpected {other:?} at offset {at}").at(at)),
        }
    }
}

/// The steps `node` contributes to a path. An order-by on a step (`b^(x)`, possibly with
/// predicates after it) becomes the step followed by a sort step, so that in `a.b^(x)` the
/// sort applies to the whole sequence of `b`s, as in the reference implementation.
fn into_steps(node: Node) -> Vec<Node> {
    match node {
        // A string literal as a step is a field name (`a."b c"`).
        Node::Str(s) => vec![Node::Name(s)],
        Node::Path(s) => s,
        Node::Sort(inner, terms) if !is_marker(&inner) => {
            let mut steps = into_steps(*inner);
            steps.push(Node::Sort(Box::new(Node::Var(String::new())), terms));
            steps
        }
        Node::Filter(inner, pred) if has_sort(&inner) => {
            let mut steps = into_steps(*inner);
            if let Some(last) = steps.pop() {
                steps.push(Node::Filter(Box::new(last), pred));
            }
            steps
        }
        other => vec![other],
    }
}

fn is_marker(n: &Node) -> bool {
    matches!(n, Node::Var(v) if v.is_empty())
}

/// A (possibly filtered) order-by on a step. Iterative: filter chains can be long.
fn has_sort(mut n: &Node) -> bool {
    loop {
        match n {
            Node::Filter(inner, _) => n = inner,
            Node::Sort(inner, _) => return !is_marker(inner),
            _ => return false,
        }
    }
}

/// Attaches a predicate to the last step of a path, so `a.b[0]` filters `b` per input item
/// (JSONata's step semantics), while `(a.b)[0]` filters the whole result.
fn attach_filter(left: Node, pred: Node) -> Node {
    match left {
        Node::Path(mut steps) => {
            if let Some(last) = steps.pop() {
                steps.push(Node::Filter(Box::new(last), Box::new(pred)));
            }
            Node::Path(steps)
        }
        other => Node::Filter(Box::new(other), Box::new(pred)),
    }
}

/// Step Functions rejects expressions that read the context at the top level: `$`, `$$`, an
/// unqualified field name or a wildcard outside a predicate, lambda, order-by or grouping
/// (the developer guide: "You cannot use `$` or `$$` at the top level", "You cannot use
/// unqualified field names at top level"). Returns what was used, for the error message.
/// Errs on a tree deeper than any [`parse`] produces.
pub(crate) fn top_level_context_use(node: &Node) -> Result<Option<&'static str>, JsonataError> {
    let mut too_deep = false;
    let found = walk_top(node, true, 0, &mut too_deep);
    if too_deep {
        return Err(uncoded!(
            "the expression is nested more than {} levels deep",
            MAX_DEPTH * 4
        ));
    }
    Ok(found)
}

/// Recursion is safe: [`parse`] bounds the tree's height by `MAX_DEPTH`, so `depth` cannot
/// pass it for a parsed tree. A deeper tree sets `too_deep` (an error for the caller, never
/// a silent pass).
fn walk_top(n: &Node, top: bool, depth: usize, too_deep: &mut bool) -> Option<&'static str> {
    if depth > MAX_DEPTH * 4 {
        *too_deep = true;
        return None;
    }
    let d = depth + 1;
    match n {
        Node::Name(_) if top => Some("an unqualified field name"),
        Node::Var(v) if top && v.is_empty() => Some("'$'"),
        Node::Var(v) if top && v == "$" => Some("'$$'"),
        Node::Wildcard | Node::Descendants if top => Some("a wildcard"),
        // Only the first step reads the context; later steps read the previous step's items.
        Node::Path(steps) => {
            let mut it = steps.iter();
            let first = it.next().and_then(|f| walk_top(f, top, d, too_deep));
            first.or_else(|| it.find_map(|s| walk_top(s, false, d, too_deep)))
        }
        Node::Filter(e, pred) => {
            walk_top(e, top, d, too_deep).or_else(|| walk_top(pred, false, d, too_deep))
        }
        Node::Lambda(_, body, _) => walk_top(body, false, d, too_deep),
        Node::Sort(e, terms) => walk_top(e, top, d, too_deep).or_else(|| {
            terms
                .iter()
                .find_map(|(t, _)| walk_top(t, false, d, too_deep))
        }),
        Node::Group(e, pairs) => walk_top(e, top, d, too_deep).or_else(|| {
            pairs.iter().find_map(|(k, v)| {
                walk_top(k, false, d, too_deep).or_else(|| walk_top(v, false, d, too_deep))
            })
        }),
        // The location and update run against the transformed copy, not the state input.
        Node::Transform(..) => None,
        // Every other operand is evaluated against the same context as its parent.
        _ => n
            .try_for_each_child(|c| {
                walk_top(c, top, d, too_deep).map_or(ControlFlow::Continue(()), ControlFlow::Break)
            })
            .break_value(),
    }
}
