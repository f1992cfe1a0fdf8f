//! The parent operator `%` (JSONata 1.8+), resolved at parse time as the reference
//! implementation does (its `processAST`/`seekParent`/`resolveAncestry`).
//!
//! Each `%` is a [`Node::Parent`] with its own label. Walking the tree bottom-up, every node
//! reports the `%`s it still needs resolved ("slots", each with a level: `%` is 1, `%.%` 2).
//! In a path, the slots of a step are resolved against the steps before it, last first: a
//! field-name or wildcard step lowers the level and, at 0, becomes the step that binds the
//! label ([`Node::Ancestor`]: every item it produces carries the item it was evaluated on);
//! a `%` step raises it; a block or path step is searched from its end and then returns its
//! tuple stream ([`Node::Tuples`]). A `%` in a predicate refers to the parent of the step it
//! filters. Any other step (a function call, a variable, `**`, an order-by...) is S0217, as
//! is a `%` left unresolved at the top level. Like the reference, lambdas, the transform
//! operator, `~>` and grouping `{...}` do not pass slots outwards (a `%` there whose
//! parent is outside evaluates to undefined).
//!
//! Evaluation (`eval`) turns a path into a tuple stream from its first binding step on, so
//! later steps, predicates, order-by terms and constructors see the labels as variables.

use crate::error::{JsonataError, err, uncoded};

use std::sync::Arc;

use super::parse::Node;

/// A `%` waiting for the step that produces its parent.
struct Slot {
    label: String,
    /// How many steps back the parent is; 0 once resolved (resolved slots still travel
    /// upwards, as in the reference, where they make a top-level expression S0217).
    level: usize,
}

/// Tree height the walk accepts (the parser bounds it far below this).
const MAX_WALK_DEPTH: usize = 1000;

fn s0217(what: &str) -> JsonataError {
    err!(
        S0217,
        "The object representing the 'parent' cannot be derived from this expression ({what}); '%' needs a preceding path step that is a field name, a wildcard, a block or a path"
    )
}

/// Resolves every `%` in `root`; errors are S0217.
pub(crate) fn resolve(root: &mut Node) -> Result<(), JsonataError> {
    let mut r = Resolver { depth: 0 };
    let slots = r.seeking(root)?;
    if !slots.is_empty() {
        return Err(s0217(
            "a '%' at the top level of the expression has no parent",
        ));
    }
    Ok(())
}

struct Resolver {
    depth: usize,
}

impl Resolver {
    fn enter(&mut self) -> Result<(), JsonataError> {
        self.depth += 1;
        if self.depth > MAX_WALK_DEPTH {
            return Err(uncoded!(
                "the expression is nested more than {MAX_WALK_DEPTH} levels deep"
            ));
        }
        Ok(())
    }

    /// The unresolved slots of `node` (processing everything inside it).
    fn seeking(&mut self, node: &mut Node) -> Result<Vec<Slot>, JsonataError> {
        self.enter()?;
        let r = self.seeking_inner(node);
        self.depth -= 1;
        r
    }

    // `seeking_inner` is on every level of the recursion: its arms call small
    // non-inlined helpers so that its frame stays small in debug builds (which give a
    // function one stack slot per local of every arm).
    fn seeking_inner(&mut self, node: &mut Node) -> Result<Vec<Slot>, JsonataError> {
        match node {
            Node::Parent(label) => Ok(vec![Slot {
                label: label.clone(),
                level: 1,
            }]),
            Node::Path(steps) => self.path(steps),
            Node::Filter(..) | Node::Focus(..) | Node::Index(..) | Node::KeepArray(..) => {
                self.lone_step(node)
            }
            Node::Sort(..) => self.sort(node),
            Node::Group(..) | Node::Lambda(..) | Node::Transform(..) | Node::Chain(..) => {
                self.opaque(node)
            }
            // Everything else, leaves included (they have no operands, so no slots).
            _ => self.operands(node),
        }
    }

    /// A step outside a path (`Order[%.x]`, `(a.b)[%.x]`): its predicates resolve against
    /// it. The reference makes a field name a one-step path, which keeps what is left
    /// unresolved to itself.
    #[inline(never)]
    fn lone_step(&mut self, node: &mut Node) -> Result<Vec<Slot>, JsonataError> {
        let slots = self.step(node)?;
        let name_step = matches!(base(node), Node::Name(_) | Node::Ancestor(..));
        if is_binding_step(node) {
            let step = std::mem::replace(node, Node::Null);
            *node = Node::Path(vec![step]);
        }
        Ok(if name_step { Vec::new() } else { slots })
    }

    #[inline(never)]
    fn sort(&mut self, node: &mut Node) -> Result<Vec<Slot>, JsonataError> {
        let Node::Sort(inner, terms) = node else {
            return Ok(Vec::new());
        };
        if terms.iter().any(|(t, _)| contains_parent(t)) {
            // `(a.b)^(%.x)`: the order-by is a step after its operand, as in the
            // reference's parse tree, so its terms can resolve against it.
            let inner = std::mem::replace(inner.as_mut(), Node::Null);
            let terms = std::mem::take(terms);
            let mut steps = match inner {
                Node::Path(s) => s,
                other => vec![other],
            };
            steps.push(Node::Sort(Box::new(Node::Var(String::new())), terms));
            *node = Node::Path(steps);
            return self.seeking_inner(node);
        }
        let mut slots = self.seeking(inner)?;
        for (t, _) in terms.iter_mut() {
            slots.extend(self.seeking(t)?);
        }
        Ok(slots)
    }

    /// Nodes that, like in the reference, do not pass their slots outwards: grouping
    /// (except its operand), lambdas, the transform operator and `~>`.
    #[inline(never)]
    fn opaque(&mut self, node: &mut Node) -> Result<Vec<Slot>, JsonataError> {
        match node {
            Node::Group(expr, pairs) => {
                for (k, v) in pairs.iter_mut() {
                    self.seeking(k)?;
                    self.seeking(v)?;
                }
                self.seeking(expr)
            }
            Node::Lambda(_, body, _) => {
                self.seeking(Arc::make_mut(body))?;
                Ok(Vec::new())
            }
            Node::Transform(location, update, delete) => {
                self.seeking(Arc::make_mut(location))?;
                self.seeking(Arc::make_mut(update))?;
                if let Some(d) = delete {
                    self.seeking(Arc::make_mut(d))?;
                }
                Ok(Vec::new())
            }
            Node::Chain(l, r) => {
                self.seeking(l)?;
                self.seeking(r)?;
                Ok(Vec::new())
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Operators, constructors, calls, conditions, blocks and bindings: the slots of their
    /// operands (a call's arguments, not the function).
    #[inline(never)]
    fn operands(&mut self, node: &mut Node) -> Result<Vec<Slot>, JsonataError> {
        let mut slots = Vec::new();
        match node {
            Node::Call(f, args) => {
                self.seeking(f)?;
                for a in args.iter_mut() {
                    slots.extend(self.seeking(a)?);
                }
            }
            Node::Binary(_, l, r) => {
                slots.extend(self.seeking(l)?);
                slots.extend(self.seeking(r)?);
            }
            Node::Neg(e) | Node::Bind(_, e) | Node::Ancestor(e, _) | Node::Tuples(e) => {
                slots.extend(self.seeking(e)?);
            }
            Node::Array(items) | Node::Block(items) => {
                for i in items.iter_mut() {
                    slots.extend(self.seeking(i)?);
                }
            }
            Node::Object(pairs) => {
                for (k, v) in pairs.iter_mut() {
                    slots.extend(self.seeking(k)?);
                    slots.extend(self.seeking(v)?);
                }
            }
            Node::Condition(c, a, b) => {
                slots.extend(self.seeking(c)?);
                slots.extend(self.seeking(a)?);
                if let Some(b) = b {
                    slots.extend(self.seeking(b)?);
                }
            }
            _ => {}
        }
        Ok(slots)
    }

    /// A path: each step's slots are resolved against the steps before it; what is still
    /// unresolved past the first step is the path's own.
    fn path(&mut self, steps: &mut [Node]) -> Result<Vec<Slot>, JsonataError> {
        let mut out = Vec::new();
        for i in 0..steps.len() {
            let slots = self.step(&mut steps[i])?;
            if i == 0 {
                // Only a leading `%` itself makes the whole path seek a parent (what else
                // the first step leaves unresolved stays with it, as in the reference).
                if matches!(steps[0], Node::Parent(_)) {
                    out.extend(slots);
                }
                continue;
            }
            for mut slot in slots {
                let mut idx = i as isize - 1;
                while slot.level > 0 {
                    if idx < 0 {
                        break;
                    }
                    let mut j = idx as usize;
                    idx -= 1;
                    // Contiguous steps that bind the focus (`a@$x.b@$y`) keep the same
                    // context item: they count as one step.
                    while idx >= 0 && has_focus(&steps[j]) && has_focus(&steps[idx as usize]) {
                        j = idx as usize;
                        idx -= 1;
                    }
                    self.seek_parent(&mut steps[j], &mut slot)?;
                }
                if slot.level > 0 {
                    out.push(slot);
                }
            }
        }
        Ok(out)
    }

    /// A path step: its own slots plus what its predicates leave unresolved (a `%` in a
    /// predicate is the parent of the step's items, so it resolves on the step itself).
    fn step(&mut self, node: &mut Node) -> Result<Vec<Slot>, JsonataError> {
        self.enter()?;
        let r = match node {
            Node::Filter(inner, pred) => self.filter_step(inner, pred),
            Node::Sort(marker, terms) if matches!(marker.as_ref(), Node::Var(v) if v.is_empty()) => {
                // An order-by step: its terms' slots resolve against the steps before it.
                let mut slots = Vec::new();
                for (t, _) in terms.iter_mut() {
                    match self.seeking(t) {
                        Ok(s) => slots.extend(s),
                        Err(e) => {
                            self.depth -= 1;
                            return Err(e);
                        }
                    }
                }
                Ok(slots)
            }
            Node::Focus(inner, _) | Node::Index(inner, _) | Node::KeepArray(inner) => {
                self.step(inner)
            }
            other => self.seeking(other),
        };
        self.depth -= 1;
        r
    }

    fn filter_step(
        &mut self,
        inner: &mut Node,
        pred: &mut Node,
    ) -> Result<Vec<Slot>, JsonataError> {
        let mut slots = self.step(inner)?;
        for mut s in self.seeking(pred)? {
            if s.level == 1 {
                self.seek_parent(inner, &mut s)?;
            } else if s.level > 1 {
                s.level -= 1;
            }
            slots.push(s);
        }
        Ok(slots)
    }

    /// Moves `slot` one step back over `node` (the reference's `seekParent`).
    fn seek_parent(&mut self, node: &mut Node, slot: &mut Slot) -> Result<(), JsonataError> {
        self.enter()?;
        let r = self.seek_parent_inner(node, slot);
        self.depth -= 1;
        r
    }

    fn seek_parent_inner(&mut self, node: &mut Node, slot: &mut Slot) -> Result<(), JsonataError> {
        match node {
            Node::Filter(inner, _)
            | Node::Focus(inner, _)
            | Node::Index(inner, _)
            | Node::KeepArray(inner) => self.seek_parent(inner, slot),
            Node::Ancestor(_, labels) => {
                slot.level -= 1;
                if slot.level == 0 {
                    labels.push(slot.label.clone());
                }
                Ok(())
            }
            Node::Name(_) | Node::Wildcard => {
                slot.level -= 1;
                if slot.level == 0 {
                    let step = std::mem::replace(node, Node::Null);
                    *node = Node::Ancestor(Box::new(step), vec![slot.label.clone()]);
                }
                Ok(())
            }
            Node::Parent(_) => {
                slot.level += 1;
                Ok(())
            }
            Node::Tuples(inner) => self.seek_parent(inner, slot),
            Node::Block(items) => {
                let Some(last) = items.last_mut() else {
                    return Err(s0217("an empty block"));
                };
                if !matches!(last, Node::Path(_) | Node::Block(_) | Node::Tuples(_)) {
                    // A field name in a block is a one-step path in the reference's tree.
                    let item = std::mem::replace(last, Node::Null);
                    *last = Node::Path(vec![item]);
                }
                self.seek_parent(last, slot)?;
                let block = std::mem::replace(node, Node::Null);
                *node = Node::Tuples(Box::new(block));
                Ok(())
            }
            Node::Path(steps) => {
                let mut idx = steps.len();
                while slot.level > 0 && idx > 0 {
                    idx -= 1;
                    self.seek_parent(&mut steps[idx], slot)?;
                }
                let path = std::mem::replace(node, Node::Null);
                *node = Node::Tuples(Box::new(path));
                Ok(())
            }
            Node::Var(_) => Err(s0217("a variable")),
            Node::Call(..) => Err(s0217("a function call")),
            Node::Descendants => Err(s0217("the descendants wildcard '**'")),
            Node::Sort(..) => Err(s0217("an order-by")),
            Node::Object(_) | Node::Array(_) => Err(s0217("a constructor")),
            _ => Err(s0217("an expression that is not a path step")),
        }
    }
}

/// The step under its predicates, focus/position bindings and `[]`.
fn base(mut n: &Node) -> &Node {
    loop {
        match n {
            Node::Filter(inner, _)
            | Node::Focus(inner, _)
            | Node::Index(inner, _)
            | Node::KeepArray(inner) => n = inner,
            other => return other,
        }
    }
}

fn has_focus(mut n: &Node) -> bool {
    loop {
        match n {
            Node::Focus(..) => return true,
            Node::Filter(inner, _) | Node::Index(inner, _) | Node::KeepArray(inner) => n = inner,
            _ => return false,
        }
    }
}

/// Does this step bind a parent label (so it must run as a tuple stream)?
fn is_binding_step(n: &Node) -> bool {
    matches!(base(n), Node::Ancestor(..) | Node::Tuples(_))
}

/// Does `n` contain a `%` anywhere (a cheap syntactic check)?
fn contains_parent(n: &Node) -> bool {
    fn walk(n: &Node, depth: usize) -> bool {
        depth <= MAX_WALK_DEPTH
            && (matches!(n, Node::Parent(_)) || n.any_child(|c| walk(c, depth + 1)))
    }
    walk(n, 0)
}
