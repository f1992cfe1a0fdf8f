//! Execution metrics: CloudWatch Embedded Metric Format (EMF) lines.
//!
//! Every execution ends by publishing `Duration` (seconds) and `Succeeded`/`Failed` (count)
//! with dimensions `Workflow` and `Outcome`; failures also carry the `Category`. The EMF line
//! is what the Lambda writes to its log, and CloudWatch extracts the metrics from it: no
//! PutMetricData call, so no API rate to share with a fleet-wide burst of outcomes. Locally the
//! [`EmfLog`] counts the lines instead of printing them. Spec: "Specification: Embedded metric
//! format", CloudWatch docs. The function therefore needs no `cloudwatch:PutMetricData`
//! permission and links no CloudWatch client.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde_json::{Value, json};

/// One execution outcome to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The state machine (`bake`, `name-on-launch`, …): the `Workflow` dimension.
    pub workflow: String,
    /// `succeeded` or `failed`.
    pub outcome: String,
    /// The failure category (`validation-failed`, ...), empty on success.
    pub category: String,
    /// Seconds from the execution's start to the outcome: the `Duration` metric.
    pub duration_seconds: f64,
    /// When the outcome was recorded (the EMF `Timestamp`).
    pub timestamp: SystemTime,
}

impl Outcome {
    /// The count metric this outcome carries.
    pub fn count_name(&self) -> &'static str {
        if self.outcome == "succeeded" {
            "Succeeded"
        } else {
            "Failed"
        }
    }

    /// The EMF document (one log line when serialised).
    pub fn emf(&self, namespace: &str) -> Value {
        let millis = self
            .timestamp
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let count_name = self.count_name();
        json!({
            "_aws": {
                "Timestamp": millis,
                "CloudWatchMetrics": [{
                    "Namespace": namespace,
                    "Dimensions": [["Workflow", "Outcome"]],
                    "Metrics": [
                        {"Name": "Duration", "Unit": "Seconds"},
                        {"Name": count_name, "Unit": "Count"}
                    ]
                }]
            },
            "Workflow": self.workflow,
            "Outcome": self.outcome,
            "Category": self.category,
            "Duration": self.duration_seconds,
            count_name: 1
        })
    }
}

/// Where EMF lines go: the Lambda's log (each line written by the sink), or nowhere but a
/// count (the local run, which must not print a line per execution). Either way it tallies
/// the count metric of each line by workflow (`Succeeded`/`Failed`), for reports and tests.
pub struct EmfLog {
    lines: AtomicU64,
    tally: std::sync::Mutex<std::collections::BTreeMap<(String, String), u64>>,
    sink: Option<Box<LineSink>>,
}

/// Writes one EMF line somewhere (the Lambda: its standard output).
type LineSink = dyn Fn(&str) + Send + Sync;

impl EmfLog {
    /// Counts lines and writes them nowhere.
    pub fn counting() -> Self {
        Self {
            lines: AtomicU64::new(0),
            tally: Default::default(),
            sink: None,
        }
    }

    /// Counts lines and hands each to `sink` (the Lambda writes them to standard output, which
    /// is its CloudWatch log).
    pub fn to(sink: impl Fn(&str) + Send + Sync + 'static) -> Self {
        Self {
            lines: AtomicU64::new(0),
            tally: Default::default(),
            sink: Some(Box::new(sink)),
        }
    }

    /// Writes the EMF line of `outcome`; returns it.
    pub fn write(&self, outcome: &Outcome, namespace: &str) -> String {
        let line = outcome.emf(namespace).to_string();
        self.lines.fetch_add(1, Ordering::Relaxed);
        *self
            .tally
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((outcome.workflow.clone(), outcome.count_name().to_string()))
            .or_default() += 1;
        if let Some(sink) = &self.sink {
            sink(&line);
        }
        line
    }

    /// How many lines of `workflow` carried the count metric `metric` (`Succeeded`/`Failed`).
    pub fn count(&self, workflow: &str, metric: &str) -> u64 {
        self.tally
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(workflow.to_string(), metric.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Lines written so far.
    pub fn lines(&self) -> u64 {
        self.lines.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_names_every_metric_it_carries() {
        let outcome = Outcome {
            workflow: "bake".into(),
            outcome: "failed".into(),
            category: "validation-failed".into(),
            duration_seconds: 12.5,
            timestamp: SystemTime::UNIX_EPOCH,
        };
        let emf = outcome.emf("Fleetprep");
        let metrics = emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap();
        for metric in metrics {
            let name = metric["Name"].as_str().unwrap();
            assert!(emf.get(name).is_some(), "EMF member {name} missing");
        }
        assert_eq!(emf["Failed"], 1);
    }
}
