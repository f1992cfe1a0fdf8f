//! Map and Parallel: child threads inside their state. Each Map iteration and each Parallel
//! branch is a [`Thread`] of its own, held in the state's `Phase::Children` ([`Children`]).
//! Pure children run one after another (this is also the order AWS records for them);
//! children that wait run concurrently up to MaxConcurrency. [`Run::advance_children`] starts
//! children, collects the finished ones (MapIteration* events, tolerated failures), and ends
//! the state when all are done or one failed; events for a child's token reach it through
//! `Run::deliver`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::dataflow::{effective_input, select_path, setting_f64, setting_u64};
use super::retry::failure_matches;
use super::thread::{machine_at, next_of};
use super::{Failure, Outcome, Phase, Produced, Run, Thread, Work, json_text};
use crate::error::{self, StatesError};
use crate::history::{self, EventType};
use crate::jsonpath::EvalContext;
use crate::model::{Assign, Expr, Kind, QueryLanguage, State};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Children {
    pub(super) is_map: bool,
    /// Effective input (after InputPath/Parameters) for Parallel; items for Map.
    pub(super) items: Vec<Value>,
    pub(super) effective: Value,
    pub(super) next: usize,
    pub(super) running: Vec<(usize, Thread)>,
    pub(super) results: Vec<Option<Value>>,
    pub(super) max_concurrency: usize,
    pub(super) failures: usize,
    pub(super) tolerated_count: Option<u64>,
    pub(super) tolerated_pct: Option<f64>,
    /// Map: id of the last iteration-end event (MapStateSucceeded follows it).
    pub(super) started_id: i64,
}

impl Run<'_> {
    /// Parallel: every branch gets the effective input (JSONata: Arguments).
    pub(super) fn start_parallel(
        &mut self,
        th: &mut Thread,
        st: &State,
        branches: usize,
        w: Work<'_>,
    ) -> Result<(), StatesError> {
        let Work {
            ctx,
            ent,
            raw,
            jsonata,
        } = w;
        let effective = effective_input(st, raw, ctx, &th.vars, ent, jsonata)?;
        let input = if jsonata {
            let mut ec = EvalContext::new(raw, ctx, &th.vars, ent);
            match &st.arguments {
                Some(a) => a.render(&mut ec)?,
                None => raw.clone(),
            }
        } else {
            effective.into_owned()
        };
        let ev = self.event(EventType::ParallelStateStarted, th.cursor);
        self.push(ev);
        let started = self.last_id();
        th.cursor = started;
        let ch = Children {
            is_map: false,
            items: vec![input; branches],
            effective: Value::Null,
            next: 0,
            running: Vec::new(),
            results: vec![None; branches],
            max_concurrency: 0,
            failures: 0,
            tolerated_count: None,
            tolerated_pct: None,
            started_id: started,
        };
        th.phase = Phase::Children(Box::new(ch));
        Ok(())
    }

    /// Map (inline): one iteration per item of ItemsPath (JSONata: Items), with its
    /// MaxConcurrency and tolerated failures.
    pub(super) fn start_map(
        &mut self,
        th: &mut Thread,
        st: &State,
        w: Work<'_>,
    ) -> Result<(), StatesError> {
        let Kind::Map {
            distributed,
            items_path,
            items,
            max_concurrency,
            tolerated_failure_count,
            tolerated_failure_percentage,
            ..
        } = &st.kind
        else {
            return Err(StatesError::runtime(format!(
                "state \"{}\" is not a Map state",
                st.name
            )));
        };
        let Work {
            ctx,
            ent,
            raw,
            jsonata,
        } = w;
        let effective = effective_input(st, raw, ctx, &th.vars, ent, jsonata)?;
        if *distributed {
            return Err(StatesError::runtime(
                "distributed Map (ProcessorConfig Mode DISTRIBUTED) is not supported by the local engine; use Mode INLINE",
            ));
        }
        let mut ec = EvalContext::new(&effective, ctx, &th.vars, ent);
        let max_c = setting_u64(max_concurrency.as_ref(), &mut ec, "MaxConcurrency")?;
        let list = if jsonata {
            match items {
                Some(Expr::Jsonata(t)) => t.render(&mut ec)?,
                Some(Expr::Literal(v)) => v.clone(),
                None => raw.clone(),
            }
        } else {
            select_path(items_path, &effective, ctx, &th.vars, ec.entropy)?.into_owned()
        };
        let list = match list {
            Value::Array(a) => a,
            other => {
                return Err(StatesError::query(format!(
                    "Map state input must be an array but was: {}",
                    json_text(&other)
                )));
            }
        };
        let mut ec = EvalContext::new(&effective, ctx, &th.vars, ent);
        let tc = setting_f64(
            tolerated_failure_count.as_ref(),
            &mut ec,
            "ToleratedFailureCount",
        )?;
        let tp = setting_f64(
            tolerated_failure_percentage.as_ref(),
            &mut ec,
            "ToleratedFailurePercentage",
        )?;
        let mut ev = self.event(EventType::MapStateStarted, th.cursor);
        if let Some(e) = ev.as_mut() {
            e.map_state_started_event_details =
                Some(Box::new(history::MapStateStartedEventDetails {
                    length: list.len() as u64,
                }));
        }
        self.push(ev);
        let started = self.last_id();
        th.cursor = started;
        let n = list.len();
        let ch = Children {
            is_map: true,
            items: list,
            effective: effective.into_owned(),
            next: 0,
            running: Vec::new(),
            results: vec![None; n],
            max_concurrency: max_c.unwrap_or(0) as usize,
            failures: 0,
            tolerated_count: tc.map(|v| v as u64),
            tolerated_pct: tp,
            started_id: started,
        };
        th.phase = Phase::Children(Box::new(ch));
        Ok(())
    }

    /// Advances a Map's iterations or a Parallel's branches. `Some` when the state is done.
    pub(super) fn advance_children(
        &mut self,
        th: &mut Thread,
        st: &State,
        ch: &mut Children,
    ) -> Option<Produced> {
        let state_index = th.state;
        let mut failed: Option<(Failure, i64)> = None;
        loop {
            // Start new children while allowed.
            let limit = if ch.max_concurrency == 0 {
                usize::MAX
            } else {
                ch.max_concurrency
            };
            let mut progressed = false;
            // Advance running children first (they may have been woken by an event).
            let mut i = 0;
            while i < ch.running.len() {
                let (idx, child) = &mut ch.running[i];
                let idx = *idx;
                let m = machine_at(self.def, &child.machine);
                self.advance(child, m);
                if let Phase::Done(o) = &child.phase {
                    let o = o.clone();
                    let child_cursor = child.cursor;
                    ch.running.remove(i);
                    progressed = true;
                    match o {
                        Outcome::Ok(v) => {
                            ch.results[idx] = Some(v);
                            if ch.is_map {
                                let mut e =
                                    self.event(EventType::MapIterationSucceeded, child_cursor);
                                if let Some(e) = e.as_mut() {
                                    e.map_iteration_succeeded_event_details =
                                        Some(Box::new(history::MapIterationEventDetails {
                                            name: st.name.clone(),
                                            index: idx as u64,
                                        }));
                                }
                                self.push(e);
                            }
                            th.cursor = child_cursor;
                        }
                        Outcome::Err(f) => {
                            if ch.is_map {
                                let mut e = self.event(EventType::MapIterationFailed, child_cursor);
                                if let Some(e) = e.as_mut() {
                                    e.map_iteration_failed_event_details =
                                        Some(Box::new(history::MapIterationEventDetails {
                                            name: st.name.clone(),
                                            index: idx as u64,
                                        }));
                                }
                                self.push(e);
                            }
                            th.cursor = child_cursor;
                            ch.failures += 1;
                            if ch.is_map && self.tolerated(ch) {
                                let mut err_out = Map::new();
                                err_out.insert("Error".into(), Value::String(f.error.clone()));
                                if let Some(c) = &f.cause {
                                    err_out.insert("Cause".into(), Value::String(c.clone()));
                                }
                                ch.results[idx] = Some(Value::Object(err_out));
                            } else {
                                let f = if ch.is_map
                                    && (ch.tolerated_count.is_some() || ch.tolerated_pct.is_some())
                                {
                                    Failure {
                                        error: error::EXCEED_TOLERATED_FAILURE_THRESHOLD.into(),
                                        cause: Some(format!(
                                            "The specified tolerated failure threshold was exceeded ({} failed)",
                                            ch.failures
                                        )),
                                        ..Default::default()
                                    }
                                } else {
                                    f
                                };
                                failed = Some((f, child_cursor));
                                break;
                            }
                        }
                    }
                } else {
                    i += 1;
                }
            }
            if failed.is_some() {
                break;
            }
            if ch.running.len() < limit && ch.next < ch.items.len() {
                let idx = ch.next;
                ch.next += 1;
                progressed = true;
                let mut path = th.machine.clone();
                let (child_machine, input, map_item) = if ch.is_map {
                    path.push((state_index, 0));
                    let m = machine_at(self.def, &path);
                    let item = std::mem::take(&mut ch.items[idx]);
                    let map_item = json!({"Index": idx, "Value": item});
                    let input = match self.item_input(th, st, ch, &map_item) {
                        Ok(v) => v,
                        Err(e) => {
                            let f = Failure::in_state(e, st, th);
                            failed = Some((f, th.cursor));
                            break;
                        }
                    };
                    let mut e = self.event(EventType::MapIterationStarted, th.cursor);
                    if let Some(e) = e.as_mut() {
                        e.map_iteration_started_event_details =
                            Some(Box::new(history::MapIterationEventDetails {
                                name: st.name.clone(),
                                index: idx as u64,
                            }));
                    }
                    self.push(e);
                    (m, input, Some(map_item))
                } else {
                    path.push((state_index, idx as u32));
                    let m = machine_at(self.def, &path);
                    (m, std::mem::take(&mut ch.items[idx]), None)
                };
                let cursor = if ch.is_map {
                    self.last_id()
                } else {
                    ch.started_id
                };
                let mut child = Thread::new(
                    path,
                    child_machine,
                    cursor,
                    th.vars.clone(),
                    map_item,
                    input,
                );
                self.advance(&mut child, child_machine);
                // Loop back to collect it if it finished synchronously.
                ch.running.push((idx, child));
            }
            if failed.is_some() {
                break;
            }
            if !progressed {
                break;
            }
        }
        if let Some((f, cursor)) = failed {
            // Abort the rest (their pending tasks/timers become stale tokens).
            for (idx, child) in ch.running.drain(..) {
                if ch.is_map {
                    let mut e = self.event(EventType::MapIterationAborted, child.cursor);
                    if let Some(e) = e.as_mut() {
                        e.map_iteration_aborted_event_details =
                            Some(Box::new(history::MapIterationEventDetails {
                                name: st.name.clone(),
                                index: idx as u64,
                            }));
                    }
                    self.push(e);
                }
            }
            th.cursor = cursor;
            let will_retry = st
                .retry
                .iter()
                .position(|r| failure_matches(&r.error_equals, &f))
                .is_some_and(|i| {
                    th.attempts.get(i).copied().unwrap_or(0) < st.retry[i].max_attempts
                })
                && f.error != error::RUNTIME;
            if !will_retry {
                let ty = if ch.is_map {
                    EventType::MapStateFailed
                } else {
                    EventType::ParallelStateFailed
                };
                let e = self.event(ty, th.cursor);
                self.push(e);
                th.cursor = self.last_id();
            }
            let f = if !ch.is_map && f.error != error::RUNTIME {
                // AWS reports the branch's own error name for a failed Parallel.
                f
            } else {
                f
            };
            return Some(Produced::Fail(f));
        }
        if !ch.running.is_empty() || ch.next < ch.items.len() {
            return None;
        }
        // All done.
        let results: Vec<Value> = ch
            .results
            .iter_mut()
            .map(|r| r.take().unwrap_or(Value::Null))
            .collect();
        let ty = if ch.is_map {
            EventType::MapStateSucceeded
        } else {
            EventType::ParallelStateSucceeded
        };
        // *StateSucceeded follows the last event of the children; Exited follows the same one.
        let last = self.last_id();
        let e = self.event(ty, last);
        self.push(e);
        th.cursor = last;
        let r = self.with_state_data(th, st, |run, th, w| {
            run.finish_state(th, st, w, Value::Array(results), next_of(st))
        });
        Some(match r {
            Ok(p) => p,
            Err(e) => Produced::Fail(Failure::in_state(e, st, th)),
        })
    }

    fn tolerated(&self, ch: &Children) -> bool {
        let mut ok = false;
        if let Some(c) = ch.tolerated_count {
            ok |= (ch.failures as u64) <= c;
        }
        if let Some(p) = ch.tolerated_pct {
            let total = ch.results.len().max(1) as f64;
            ok |= (ch.failures as f64) * 100.0 / total <= p;
        }
        ok
    }

    fn item_input(
        &mut self,
        th: &Thread,
        st: &State,
        ch: &Children,
        map_item: &Value,
    ) -> Result<Value, StatesError> {
        let Kind::Map { item_selector, .. } = &st.kind else {
            return Ok(map_item["Value"].clone());
        };
        let Some(sel) = item_selector else {
            return Ok(map_item["Value"].clone());
        };
        let mut ctx = self.context(th, st);
        ctx["Map"] = json!({ "Item": map_item });
        let mut ent = self.entropy.clone();
        let input = if st.query_language == QueryLanguage::Jsonata {
            &th.input
        } else {
            &ch.effective
        };
        let r = {
            let mut ec = EvalContext::new(input, &ctx, &th.vars, &mut ent);
            match sel {
                Assign::JsonPath(t) => t.render(&mut ec),
                Assign::Jsonata(t) => t.render(&mut ec),
            }
        };
        self.entropy = ent;
        self.recycle(ctx);
        r
    }
}
