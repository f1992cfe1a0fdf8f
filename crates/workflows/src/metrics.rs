//! Execution metrics: CloudWatch Embedded Metric Format (EMF) lines and PutMetricData data.
//!
//! Every execution ends by publishing `Duration` (seconds) and `Succeeded`/`Failed` (count)
//! with dimensions `Workflow` and `Outcome`; failures also carry the `Category`. The EMF line
//! is what the Lambda writes to its log (CloudWatch extracts the metrics from it); the same data
//! goes through `Cloud::put_metric_data` so the simulated fleet (and accounts without log
//! extraction) see them too. Spec: "Specification: Embedded metric format", CloudWatch docs.

use std::time::SystemTime;

use cloud::{Dimension, MetricDatum};
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
    fn dimensions(&self) -> Vec<Dimension> {
        vec![
            Dimension {
                name: "Workflow".into(),
                value: self.workflow.clone(),
            },
            Dimension {
                name: "Outcome".into(),
                value: self.outcome.clone(),
            },
        ]
    }

    /// The PutMetricData data for this outcome.
    pub fn data(&self) -> Vec<MetricDatum> {
        let count_name = if self.outcome == "succeeded" {
            "Succeeded"
        } else {
            "Failed"
        };
        vec![
            MetricDatum {
                metric_name: "Duration".into(),
                value: self.duration_seconds,
                unit: "Seconds".into(),
                dimensions: self.dimensions(),
                timestamp: self.timestamp,
            },
            MetricDatum {
                metric_name: count_name.into(),
                value: 1.0,
                unit: "Count".into(),
                dimensions: self.dimensions(),
                timestamp: self.timestamp,
            },
        ]
    }

    /// The EMF document (one log line when serialised).
    pub fn emf(&self, namespace: &str) -> Value {
        let millis = self
            .timestamp
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let count_name = if self.outcome == "succeeded" {
            "Succeeded"
        } else {
            "Failed"
        };
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
        assert_eq!(outcome.data()[1].metric_name, "Failed");
    }
}
