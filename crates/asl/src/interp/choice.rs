//! Choice: the first rule that matches picks the next state (else `Default`, else
//! `States.NoChoiceMatched`). The rules themselves are `crate::choice`; this file is what the
//! state does with the match: rule-level Assign/Output (JSONata) over the state's own, and the
//! input passed on.

use serde_json::Map;

use super::dataflow::{effective_input, render_assign, select_path};
use super::{Produced, Run, Thread, Work};
use crate::error::{self, StatesError};
use crate::jsonpath::EvalContext;
use crate::model::{ChoiceBranch, PathField, State};

impl Run<'_> {
    /// Chooses and produces the transition to the chosen state.
    pub(super) fn run_choice(
        &mut self,
        th: &Thread,
        st: &State,
        choices: &[ChoiceBranch],
        default: Option<&String>,
        w: Work<'_>,
    ) -> Result<Produced, StatesError> {
        let Work {
            ctx,
            ent,
            raw,
            jsonata,
        } = w;
        let effective = effective_input(st, raw, ctx, &th.vars, ent, jsonata)?;
        let mut chosen: Option<&ChoiceBranch> = None;
        {
            let mut ec = EvalContext::new(&effective, ctx, &th.vars, ent);
            for c in choices {
                if c.rule.evaluate(&mut ec)? {
                    chosen = Some(c);
                    break;
                }
            }
        }
        let next = match (chosen, default) {
            (Some(c), _) => c.next.clone(),
            (None, Some(d)) => d.clone(),
            (None, None) => {
                return Err(StatesError::new(error::NO_CHOICE_MATCHED, "No Matches!"));
            }
        };
        // Rule-level Assign/Output (JSONata) win over the state's.
        let mut ec = EvalContext::new(&effective, ctx, &th.vars, ent);
        let mut assigned = match &st.assign {
            Some(a) => Some(render_assign(a, &mut ec)?),
            None => None,
        };
        if let Some(a) = chosen.and_then(|c| c.assign.as_ref()) {
            let extra = render_assign(a, &mut ec)?;
            assigned.get_or_insert_with(Map::new).extend(extra);
        }
        let template = chosen
            .and_then(|c| c.output.as_ref())
            .or(st.output.as_ref());
        let output = if jsonata {
            match template {
                Some(t) => t.render(&mut ec)?,
                None => {
                    drop(effective);
                    std::mem::take(raw)
                }
            }
        } else if st.input_path == PathField::Default && st.output_path == PathField::Default {
            // A Choice passes its input on: move it.
            drop(effective);
            std::mem::take(raw)
        } else {
            select_path(&st.output_path, &effective, ctx, &th.vars, ec.entropy)?.into_owned()
        };
        Ok(Produced::Next(Some(next), output, assigned))
    }
}
