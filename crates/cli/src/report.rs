//! Live progress and summaries for executions, built only from `asl::history::HistoryEvent`s
//! (the GetExecutionHistory shape), so the local engine and AWS Step Functions share one
//! reporting path: feed [`LiveProgress::on_event`] events from either. [`drive`] runs a local
//! fleet while feeding it; the rest are the helpers reports share: an ARN's workflow and
//! name, durations in words, a stopwatch, plain-text tables. A run's setup (store, clock,
//! simulated fleet, execution names) is `crate::session`'s.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::time::{Duration, SystemTime};

use asl::history::{EventType, HistoryEvent};
use clock::{Clock, SystemClock};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use localfleet::LocalFleet;

/// The workflow and execution name of a Step Functions execution ARN.
pub fn split_arn(arn: &str) -> (String, String) {
    let mut parts = arn.rsplitn(3, ':');
    let name = parts.next().unwrap_or_default().to_string();
    let workflow = parts.next().unwrap_or_default().to_string();
    (workflow, name)
}

/// One line per execution: current state while running, outcome when done.
pub struct LiveProgress {
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
    /// Executions seen per workflow and outcome, for the one-line tally of big runs.
    pub tally: BTreeMap<String, BTreeMap<String, u64>>,
    per_execution: bool,
    visible: bool,
}

impl LiveProgress {
    /// `per_execution`: one line per execution (the demo); otherwise one line per workflow.
    /// Draws nothing when stderr is not a terminal or `quiet`.
    pub fn new(per_execution: bool, quiet: bool) -> Self {
        let visible = !quiet && std::io::stderr().is_terminal();
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Self {
            multi: MultiProgress::with_draw_target(target),
            bars: HashMap::new(),
            tally: BTreeMap::new(),
            per_execution,
            visible,
        }
    }

    fn bar(&mut self, key: &str, label: &str) -> &ProgressBar {
        if !self.bars.contains_key(key) {
            let bar = self.multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix:<52} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(label.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            self.bars.insert(key.to_string(), bar);
        }
        &self.bars[key]
    }

    /// Updates the display with one history event of `arn`.
    pub fn on_event(&mut self, arn: &str, event: &HistoryEvent) {
        let (workflow, name) = split_arn(arn);
        let outcome = match event.event_type {
            EventType::ExecutionStarted => Some("running"),
            EventType::ExecutionSucceeded => Some("succeeded"),
            EventType::ExecutionFailed => Some("failed"),
            EventType::ExecutionTimedOut => Some("timed out"),
            EventType::ExecutionAborted => Some("aborted"),
            _ => None,
        };
        if let Some(outcome) = outcome {
            let counts = self.tally.entry(workflow.clone()).or_default();
            if outcome != "running" {
                if let Some(running) = counts.get_mut("running") {
                    *running = running.saturating_sub(1);
                }
            }
            *counts.entry(outcome.to_string()).or_default() += 1;
        }
        if self.per_execution {
            let label = format!("{workflow} {name}");
            let bar = self.bar(arn, &label).clone();
            if let Some(state) = event.state_name()
                && event.state_entered_event_details.is_some()
            {
                bar.set_message(state.to_string());
            }
            match event.event_type {
                EventType::ExecutionSucceeded => bar.finish_with_message("✔ succeeded"),
                EventType::ExecutionFailed
                | EventType::ExecutionTimedOut
                | EventType::ExecutionAborted => {
                    let error = event
                        .error_cause()
                        .and_then(|(e, _)| e.map(str::to_string))
                        .unwrap_or_default();
                    bar.finish_with_message(format!("✘ {error}"));
                }
                _ => {}
            }
        } else if outcome.is_some() {
            let message = self.tally[&workflow]
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ");
            let bar = self.bar(&workflow, &workflow).clone();
            bar.set_message(message);
        }
    }

    /// Stops every spinner.
    pub fn finish(&self) {
        for bar in self.bars.values() {
            if !bar.is_finished() {
                bar.finish();
            }
        }
    }
}

/// Drives the fleet until idle, feeding every committed history event to `progress`.
pub async fn drive(fleet: &LocalFleet, progress: &mut LiveProgress) -> anyhow::Result<()> {
    if !progress.visible {
        // Nothing to draw: without a subscriber the engine skips building history events
        // (the store rebuilds them on request), which is most of a big run's cost.
        fleet.run_until_idle().await?;
        return Ok(());
    }
    let mut events = fleet.engine().subscribe();
    let run = fleet.run_until_idle();
    tokio::pin!(run);
    let result = loop {
        tokio::select! {
            result = &mut run => break result,
            received = events.recv() => match received {
                Ok(p) => progress.on_event(&p.execution_arn, &p.event),
                // A lagging display skips events; the store keeps the full history.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {}
            },
        }
    };
    while let Ok(p) = events.try_recv() {
        progress.on_event(&p.execution_arn, &p.event);
    }
    result?;
    Ok(())
}

/// Wall time, read only through the `clock` crate.
pub struct Stopwatch {
    started: SystemTime,
}

impl Stopwatch {
    pub fn start() -> Self {
        Self {
            started: SystemClock.now(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        SystemClock
            .now()
            .duration_since(self.started)
            .unwrap_or_default()
    }
}

/// Seconds between two times, 0 when reversed.
pub fn seconds_between(from: SystemTime, to: SystemTime) -> f64 {
    to.duration_since(from).unwrap_or_default().as_secs_f64()
}

/// `1h 02m 03s` for summaries.
pub fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs >= 3600 {
        format!(
            "{}h {:02}m {:02}s",
            secs / 3600,
            (secs % 3600) / 60,
            secs % 60
        )
    } else if secs >= 60 {
        format!("{}m {:02}s", secs / 60, secs % 60)
    } else {
        format!("{:.2}s", duration.as_secs_f64())
    }
}

/// Prints rows as an aligned text table.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| -> String {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    out.push_str(&line(widths.iter().map(|w| "-".repeat(*w)).collect()));
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.clone()));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_split_into_workflow_and_name() {
        assert_eq!(
            split_arn("arn:aws:states:local:000000000000:execution:name-on-launch:launch-i-1"),
            ("name-on-launch".to_string(), "launch-i-1".to_string())
        );
    }

    #[test]
    fn tables_align() {
        let out = table(&["a", "bb"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(out, "a    bb\n---  --\nxxx  y\n");
    }

    #[test]
    fn progress_tallies_outcomes_from_history_events() {
        let mut progress = LiveProgress::new(false, true);
        let arn = "arn:aws:states:local:0:execution:bake:b1";
        progress.on_event(
            arn,
            &HistoryEvent::new(EventType::ExecutionStarted, 1, 0, String::new()),
        );
        assert_eq!(progress.tally["bake"]["running"], 1);
        progress.on_event(
            arn,
            &HistoryEvent::new(EventType::ExecutionSucceeded, 9, 8, String::new()),
        );
        assert_eq!(progress.tally["bake"]["running"], 0);
        assert_eq!(progress.tally["bake"]["succeeded"], 1);
    }
}
