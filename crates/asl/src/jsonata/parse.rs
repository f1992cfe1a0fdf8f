//! JSONata tokenizer and parser (top-down operator precedence, as the reference
//! implementation does). Produces [`Node`] trees whose HEIGHT is bounded: recursion and every
//! operator folded into a left operand (`a+b+c`, `x[0][0]`, `a ~> f ~> g`) count towards
//! `MAX_DEPTH`, so dropping, cloning, walking or evaluating a parsed tree cannot overflow the
//! stack, and parsing is linear (left operands are moved, never copied).

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
    /// `function($a, $b) { body }`
    Lambda(Vec<String>, std::sync::Arc<Node>),
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
    /// `| location | update [, delete] |`: a function that returns a modified copy.
    Transform(
        std::sync::Arc<Node>,
        std::sync::Arc<Node>,
        Option<std::sync::Arc<Node>>,
    ),
}

/// A compiled regular expression literal (JavaScript syntax as far as the `regex` crate
/// shares it; flags `i` and `m`).
#[derive(Debug, Clone)]
pub struct Regex(pub std::sync::Arc<regex::Regex>);

impl PartialEq for Regex {
    fn eq(&self, other: &Regex) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Name(String),
    Var(String),
    Op(&'static str),
    Regex(String),
    End,
}

const MAX_DEPTH: usize = 200;

const OPS: &[&str] = &[
    "..", ":=", "!=", "<=", ">=", "**", "~>", "^(", ".", "[", "]", "{", "}", "(", ")", ",", ":",
    ";", "?", "+", "-", "*", "/", "%", "&", "=", "<", ">", "|", "@", "#",
];

fn tokenize(src: &str) -> Result<Vec<(Tok, usize)>, String> {
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
                None => return Err(format!("unterminated comment at offset {i}")),
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
                .map_err(|_| format!("invalid number at offset {start}"))?;
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
                .ok_or_else(|| format!("unterminated `name` at offset {i}"))?;
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
            let (pattern, next) = regex_literal(src, i)?;
            out.push((Tok::Regex(pattern), start));
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
        return Err(format!("unexpected character '{ch}' at offset {i}"));
    }
    out.push((Tok::End, src.len()));
    Ok(out)
}

/// A `/` starts a regular expression unless it follows something that ends a value (then it
/// divides), as in the reference tokenizer.
fn regex_allowed(prev: Option<&Tok>) -> bool {
    match prev {
        None => true,
        Some(Tok::Num(_) | Tok::Str(_) | Tok::Var(_) | Tok::Regex(_)) => false,
        Some(Tok::Name(n)) => matches!(n.as_str(), "and" | "or" | "in"),
        Some(Tok::Op(op)) => !matches!(*op, ")" | "]" | "}" | "*"),
        Some(Tok::End) => true,
    }
}

/// Reads `/pattern/flags` and returns the pattern in `regex` crate syntax (`(?im)` prefix).
fn regex_literal(src: &str, start: usize) -> Result<(String, usize), String> {
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
        return Err(format!("unterminated regular expression at offset {start}"));
    }
    let pattern = &src[start + 1..i];
    if pattern.is_empty() {
        return Err(format!("empty regular expression at offset {start}"));
    }
    i += 1;
    let flags_start = i;
    while i < b.len() && b[i].is_ascii_alphabetic() {
        i += 1;
    }
    let flags = &src[flags_start..i];
    if let Some(bad) = flags.chars().find(|c| !matches!(c, 'i' | 'm')) {
        return Err(format!("unsupported regular expression flag '{bad}'"));
    }
    let full = if flags.is_empty() {
        pattern.to_owned()
    } else {
        format!("(?{flags}){pattern}")
    };
    Ok((full, i))
}

fn string_literal(src: &str, start: usize) -> Result<(String, usize), String> {
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
            other => return Err(format!("unsupported escape '\\{other}' in string")),
        }
    }
    Err(format!("unterminated string starting at offset {start}"))
}

fn too_deep(offset: usize) -> String {
    format!(
        "the expression is nested more than {MAX_DEPTH} levels deep (operators, predicates, calls and brackets all count) at offset {offset}; split it into several expressions or use Assign variables"
    )
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
pub(crate) fn parse(src: &str) -> Result<Node, String> {
    let toks = tokenize(src)?;
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
        range_ok: false,
        stray_range: None,
    };
    if matches!(p.peek(), Tok::End) {
        return Err("empty expression".into());
    }
    let node = p.expression(0)?;
    if !matches!(p.peek(), Tok::End) {
        return Err(format!("unexpected token at offset {}", p.offset()));
    }
    if let Some(at) = p.stray_range {
        return Err(format!(
            "S0202: the range operator '..' at offset {at} is only allowed inside an array constructor, as in [1..5]"
        ));
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
    fn expect(&mut self, op: &str) -> Result<(), String> {
        if self.is_op(op) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected '{op}' at offset {}", self.offset()))
        }
    }

    fn expression(&mut self, rbp: u8) -> Result<Node, String> {
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

    fn nud(&mut self) -> Result<Node, String> {
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
            Tok::Regex(p) => regex::RegexBuilder::new(&p)
                .size_limit(1 << 20)
                .build()
                .map(|r| Node::Regex(Regex(std::sync::Arc::new(r))))
                .map_err(|e| format!("invalid regular expression at offset {at}: {e}")),
            Tok::End => Err("unexpected end of expression".into()),
            other => Err(format!("unexpected {other:?} at offset {at}")),
        }
    }

    fn object_body(&mut self) -> Result<Vec<(Node, Node)>, String> {
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

    fn lambda(&mut self) -> Result<Node, String> {
        self.expect("(")?;
        let mut params = Vec::new();
        if !self.is_op(")") {
            loop {
                match self.next() {
                    Tok::Var(v) => params.push(v),
                    _ => return Err(format!("expected a $parameter at offset {}", self.offset())),
                }
                if !self.is_op(",") {
                    break;
                }
                self.pos += 1;
            }
        }
        self.expect(")")?;
        // An optional type signature `<n-n:n>` is accepted and ignored (arguments are not
        // type-checked against it).
        if self.is_op("<") {
            let mut depth = 0usize;
            loop {
                match self.next() {
                    Tok::Op("<") => depth += 1,
                    Tok::Op(">") => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    Tok::Op(">=") if depth == 1 => break,
                    Tok::End => return Err("unterminated function signature".into()),
                    _ => {}
                }
            }
        }
        self.expect("{")?;
        let body = self.expression(0)?;
        self.expect("}")?;
        Ok(Node::Lambda(params, std::sync::Arc::new(body)))
    }

    fn led(&mut self, left: Node) -> Result<Node, String> {
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
                let mut steps = into_steps(left);
                steps.extend(into_steps(right));
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
                    return Err(format!(
                        "the '{op}' operator must be followed by a $variable (offset {at})"
                    ));
                };
                if name.is_empty() || name == "$" {
                    return Err(format!(
                        "the '{op}' operator needs a named $variable, not '$' or '$$' (offset {at})"
                    ));
                }
                let mut steps = into_steps(left);
                let Some(last) = steps.pop() else {
                    return Err(format!(
                        "'{op}' needs a path step on its left (offset {at})"
                    ));
                };
                if op == "@" {
                    // jsonata-js S0215/S0216: a focus binding must come before predicates
                    // and cannot follow an order-by.
                    if matches!(last, Node::Filter(..)) {
                        return Err(format!(
                            "S0215: A context variable binding must precede any predicates on a step (offset {at})"
                        ));
                    }
                    if matches!(last, Node::Sort(..)) {
                        return Err(format!(
                            "S0216: A context variable binding must precede the 'order-by' clause on a step (offset {at})"
                        ));
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
                    return Err(format!(
                        "the left side of ':=' must be a $variable (offset {at})"
                    ));
                };
                // Right-associative: `$a := $b := 1`.
                let right = self.expression(bp - 1)?;
                Ok(Node::Bind(name, Box::new(right)))
            }
            other => Err(format!("unexpected {other:?} at offset {at}")),
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
pub(crate) fn top_level_context_use(node: &Node) -> Result<Option<&'static str>, String> {
    let mut too_deep = false;
    let found = walk_top(node, true, 0, &mut too_deep);
    if too_deep {
        return Err(format!(
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
        Node::Path(steps) => {
            let mut it = steps.iter();
            let first = it.next().and_then(|f| walk_top(f, top, d, too_deep));
            first.or_else(|| it.find_map(|s| walk_top(s, false, d, too_deep)))
        }
        Node::Filter(e, pred) => {
            walk_top(e, top, d, too_deep).or_else(|| walk_top(pred, false, d, too_deep))
        }
        Node::Lambda(_, body) => walk_top(body, false, d, too_deep),
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
        Node::Neg(e)
        | Node::Bind(_, e)
        | Node::KeepArray(e)
        | Node::Focus(e, _)
        | Node::Index(e, _) => walk_top(e, top, d, too_deep),
        // The location and update run against the transformed copy, not the state input.
        Node::Transform(..) => None,
        Node::Binary(_, l, r) | Node::Chain(l, r) => {
            walk_top(l, top, d, too_deep).or_else(|| walk_top(r, top, d, too_deep))
        }
        Node::Array(items) | Node::Block(items) => {
            items.iter().find_map(|i| walk_top(i, top, d, too_deep))
        }
        Node::Object(pairs) => pairs.iter().find_map(|(k, v)| {
            walk_top(k, top, d, too_deep).or_else(|| walk_top(v, top, d, too_deep))
        }),
        Node::Condition(c, a, b) => walk_top(c, top, d, too_deep)
            .or_else(|| walk_top(a, top, d, too_deep))
            .or_else(|| b.as_ref().and_then(|b| walk_top(b, top, d, too_deep))),
        Node::Call(f, args) => walk_top(f, top, d, too_deep)
            .or_else(|| args.iter().find_map(|a| walk_top(a, top, d, too_deep))),
        _ => None,
    }
}
