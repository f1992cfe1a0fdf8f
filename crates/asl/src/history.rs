//! Execution history events in the exact shape of Step Functions `GetExecutionHistory`.
//!
//! Source: AWS Step Functions API Reference, `HistoryEvent` and the `*EventDetails` types. One
//! [`HistoryEvent`] carries `timestamp`, `type`, `id`, `previousEventId` and at most one
//! `*EventDetails` member; serde names are camelCase exactly like the API's JSON, so the
//! embedded engine's history, the CLI's progress display and the AWS mode (which converts SDK
//! events) share this one type.
//!
//! `input`/`output` inside details are JSON *text*, as the API returns them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One entry of an execution's history. Details are boxed: an event is built per state
/// transition, and a small event keeps history recording cheap.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEvent {
    /// RFC 3339 time the event was recorded (UTC, milliseconds).
    pub timestamp: String,
    /// The event type, e.g. `PassStateEntered`.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// 1-based, strictly increasing within an execution.
    pub id: i64,
    /// The event this one follows causally (0 for none), as AWS assigns it.
    pub previous_event_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_started_event_details: Option<Box<ExecutionStartedEventDetails>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_succeeded_event_details: Option<Box<ExecutionSucceededEventDetails>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_failed_event_details: Option<Box<ErrorCauseDetails>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_aborted_event_details: Option<Box<ErrorCauseDetails>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_timed_out_event_details: Option<Box<ErrorCauseDetails>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_entered_event_details: Option<Box<StateEnteredEventDetails>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_exited_event_details: Option<Box<StateExitedEventDetails>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_state_started_event_details: Option<Box<MapStateStartedEventDetails>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_iteration_started_event_details: Option<Box<MapIterationEventDetails>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_iteration_succeeded_event_details: Option<Box<MapIterationEventDetails>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_iteration_failed_event_details: Option<Box<MapIterationEventDetails>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_iteration_aborted_event_details: Option<Box<MapIterationEventDetails>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_scheduled_event_details: Option<Box<TaskScheduledEventDetails>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_started_event_details: Option<Box<TaskResourceDetails>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_succeeded_event_details: Option<Box<TaskSucceededEventDetails>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_failed_event_details: Option<Box<TaskFailedEventDetails>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_timed_out_event_details: Option<Box<TaskFailedEventDetails>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_function_scheduled_event_details: Option<Box<LambdaFunctionScheduledEventDetails>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_function_succeeded_event_details: Option<Box<ExecutionSucceededEventDetails>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_function_failed_event_details: Option<Box<ErrorCauseDetails>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_function_timed_out_event_details: Option<Box<ErrorCauseDetails>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_failed_event_details: Option<Box<EvaluationFailedEventDetails>>,
}

impl HistoryEvent {
    /// An event with no details; the caller fills the one details member that fits the type.
    pub fn new(event_type: EventType, id: i64, previous_event_id: i64, timestamp: String) -> Self {
        HistoryEvent {
            timestamp,
            event_type,
            id,
            previous_event_id,
            execution_started_event_details: None,
            execution_succeeded_event_details: None,
            execution_failed_event_details: None,
            execution_aborted_event_details: None,
            execution_timed_out_event_details: None,
            state_entered_event_details: None,
            state_exited_event_details: None,
            map_state_started_event_details: None,
            map_iteration_started_event_details: None,
            map_iteration_succeeded_event_details: None,
            map_iteration_failed_event_details: None,
            map_iteration_aborted_event_details: None,
            task_scheduled_event_details: None,
            task_started_event_details: None,
            task_succeeded_event_details: None,
            task_failed_event_details: None,
            task_timed_out_event_details: None,
            lambda_function_scheduled_event_details: None,
            lambda_function_succeeded_event_details: None,
            lambda_function_failed_event_details: None,
            lambda_function_timed_out_event_details: None,
            evaluation_failed_event_details: None,
        }
    }

    /// The state name this event is about, when it names one (entered/exited, map iteration).
    pub fn state_name(&self) -> Option<&str> {
        if let Some(d) = &self.state_entered_event_details {
            return Some(&d.name);
        }
        if let Some(d) = &self.state_exited_event_details {
            return Some(&d.name);
        }
        [
            &self.map_iteration_started_event_details,
            &self.map_iteration_succeeded_event_details,
            &self.map_iteration_failed_event_details,
            &self.map_iteration_aborted_event_details,
        ]
        .into_iter()
        .flatten()
        .map(|d| d.name.as_str())
        .next()
    }

    /// The error and cause this event reports, if it is a failure event.
    pub fn error_cause(&self) -> Option<(Option<&str>, Option<&str>)> {
        let ec = [
            &self.execution_failed_event_details,
            &self.execution_aborted_event_details,
            &self.execution_timed_out_event_details,
            &self.lambda_function_failed_event_details,
            &self.lambda_function_timed_out_event_details,
        ]
        .into_iter()
        .flatten()
        .next();
        if let Some(d) = ec {
            return Some((d.error.as_deref(), d.cause.as_deref()));
        }
        if let Some(d) = self
            .task_failed_event_details
            .as_ref()
            .or(self.task_timed_out_event_details.as_ref())
        {
            return Some((d.error.as_deref(), d.cause.as_deref()));
        }
        self.evaluation_failed_event_details
            .as_ref()
            .map(|d| (d.error.as_deref(), d.cause.as_deref()))
    }
}

/// `HistoryEventExecutionDataDetails`: whether a payload was truncated in the history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataDetails {
    pub truncated: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionStartedEventDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_details: Option<DataDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionSucceededEventDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_details: Option<DataDetails>,
}

/// `ExecutionFailedEventDetails`, `ExecutionAbortedEventDetails`, `ExecutionTimedOutEventDetails`
/// and the Lambda failure details all share this shape.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorCauseDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateEnteredEventDetails {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_details: Option<DataDetails>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateExitedEventDetails {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_details: Option<DataDetails>,
    /// Variable name → JSON text of the assigned value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_variables: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_variables_details: Option<DataDetails>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapStateStartedEventDetails {
    pub length: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapIterationEventDetails {
    pub name: String,
    pub index: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskScheduledEventDetails {
    pub resource_type: String,
    pub resource: String,
    pub region: String,
    /// JSON text of the task's parameters.
    pub parameters: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_in_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_in_seconds: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskResourceDetails {
    pub resource_type: String,
    pub resource: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSucceededEventDetails {
    pub resource_type: String,
    pub resource: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_details: Option<DataDetails>,
}

/// `TaskFailedEventDetails` and `TaskTimedOutEventDetails`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskFailedEventDetails {
    pub resource_type: String,
    pub resource: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LambdaFunctionScheduledEventDetails {
    pub resource: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_details: Option<DataDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_in_seconds: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EvaluationFailedEventDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    pub state: String,
}

macro_rules! event_types {
    ($($name:ident),* $(,)?) => {
        /// Every `HistoryEventType` of the Step Functions API (serialised by its API name).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum EventType { $($name),* }

        impl EventType {
            /// The API name, e.g. `"PassStateEntered"`.
            pub fn as_str(self) -> &'static str {
                match self { $(EventType::$name => stringify!($name)),* }
            }
        }
    };
}

event_types!(
    ActivityFailed,
    ActivityScheduled,
    ActivityScheduleFailed,
    ActivityStarted,
    ActivitySucceeded,
    ActivityTimedOut,
    ChoiceStateEntered,
    ChoiceStateExited,
    ExecutionAborted,
    ExecutionFailed,
    ExecutionStarted,
    ExecutionSucceeded,
    ExecutionTimedOut,
    FailStateEntered,
    LambdaFunctionFailed,
    LambdaFunctionScheduled,
    LambdaFunctionScheduleFailed,
    LambdaFunctionStarted,
    LambdaFunctionStartFailed,
    LambdaFunctionSucceeded,
    LambdaFunctionTimedOut,
    MapIterationAborted,
    MapIterationFailed,
    MapIterationStarted,
    MapIterationSucceeded,
    MapStateAborted,
    MapStateEntered,
    MapStateExited,
    MapStateFailed,
    MapStateStarted,
    MapStateSucceeded,
    ParallelStateAborted,
    ParallelStateEntered,
    ParallelStateExited,
    ParallelStateFailed,
    ParallelStateStarted,
    ParallelStateSucceeded,
    PassStateEntered,
    PassStateExited,
    SucceedStateEntered,
    SucceedStateExited,
    TaskFailed,
    TaskScheduled,
    TaskStarted,
    TaskStartFailed,
    TaskStateAborted,
    TaskStateEntered,
    TaskStateExited,
    TaskSubmitFailed,
    TaskSubmitted,
    TaskSucceeded,
    TaskTimedOut,
    WaitStateAborted,
    WaitStateEntered,
    WaitStateExited,
    MapRunAborted,
    MapRunFailed,
    MapRunStarted,
    MapRunSucceeded,
    ExecutionRedriven,
    MapRunRedriven,
    EvaluationFailed,
);

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Formats a time as AWS-style RFC 3339 UTC with milliseconds, e.g.
/// `2024-05-01T12:00:00.000Z`. The one formatter lives in the `clock` crate (pure
/// arithmetic, no clock read); this name is kept for the history API's callers.
pub use clock::format_rfc3339 as format_timestamp;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn event_serialises_like_the_api() {
        let mut e = HistoryEvent::new(EventType::PassStateEntered, 2, 0, "t".into());
        e.state_entered_event_details = Some(Box::new(StateEnteredEventDetails {
            name: "A".into(),
            input: Some("{}".into()),
            input_details: Some(DataDetails { truncated: false }),
        }));
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"timestamp":"t","type":"PassStateEntered","id":2,"previousEventId":0,
                "stateEnteredEventDetails":{"name":"A","input":"{}","inputDetails":{"truncated":false}}})
        );
        let back: HistoryEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn timestamps_round_trip() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let s = format_timestamp(t);
        assert_eq!(s, "2023-11-14T22:13:20.123Z");
        assert_eq!(clock::parse_rfc3339(&s), Some(t));
        assert_eq!(
            clock::parse_rfc3339("2023-11-14T23:13:20.123+01:00"),
            Some(t)
        );
    }
}
