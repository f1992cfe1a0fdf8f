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
    /// Set on `ExecutionStarted`: the execution input and role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_started_event_details: Option<Box<ExecutionStartedEventDetails>>,
    /// Set on `ExecutionSucceeded`: the execution output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_succeeded_event_details: Option<Box<ExecutionSucceededEventDetails>>,
    /// Set on `ExecutionFailed`: the error and cause that ended the execution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_failed_event_details: Option<Box<ErrorCauseDetails>>,
    /// Set on `ExecutionAborted`: the error and cause given to StopExecution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_aborted_event_details: Option<Box<ErrorCauseDetails>>,
    /// Set on `ExecutionTimedOut`: `States.Timeout` and its cause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_timed_out_event_details: Option<Box<ErrorCauseDetails>>,
    /// Set on every `*StateEntered`: the state name and its raw input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_entered_event_details: Option<Box<StateEnteredEventDetails>>,
    /// Set on every `*StateExited`: the state name, its output and assigned variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_exited_event_details: Option<Box<StateExitedEventDetails>>,
    /// Set on `MapStateStarted`: how many items the Map iterates over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_state_started_event_details: Option<Box<MapStateStartedEventDetails>>,
    /// Set on `MapIterationStarted`: the Map state and the item index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_iteration_started_event_details: Option<Box<MapIterationEventDetails>>,
    /// Set on `MapIterationSucceeded`: the Map state and the item index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_iteration_succeeded_event_details: Option<Box<MapIterationEventDetails>>,
    /// Set on `MapIterationFailed`: the Map state and the item index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_iteration_failed_event_details: Option<Box<MapIterationEventDetails>>,
    /// Set on `MapIterationAborted` (a sibling iteration failed): the Map state and the item index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_iteration_aborted_event_details: Option<Box<MapIterationEventDetails>>,
    /// Set on `TaskScheduled`: the resource, region, parameters and timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_scheduled_event_details: Option<Box<TaskScheduledEventDetails>>,
    /// Set on `TaskStarted`: the resource the task runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_started_event_details: Option<Box<TaskResourceDetails>>,
    /// Set on `TaskSucceeded`: the resource and its result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_succeeded_event_details: Option<Box<TaskSucceededEventDetails>>,
    /// Set on `TaskFailed`: the resource and the error the task returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_failed_event_details: Option<Box<TaskFailedEventDetails>>,
    /// Set on `TaskTimedOut`: the resource and the `States.Timeout` error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_timed_out_event_details: Option<Box<TaskFailedEventDetails>>,
    /// Set on `LambdaFunctionScheduled` (a Task whose `Resource` is a bare Lambda ARN): the function, input and timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_redriven_event_details: Option<Box<ExecutionRedrivenEventDetails>>,
    /// A callback (`.waitForTaskToken`) task's integration answered; the task now waits for
    /// SendTaskSuccess/SendTaskFailure. Same members as `taskSucceededEventDetails`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_submitted_event_details: Option<Box<TaskSucceededEventDetails>>,
    /// Set on `LambdaFunctionScheduled`: the function, its input and timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_function_scheduled_event_details: Option<Box<LambdaFunctionScheduledEventDetails>>,
    /// Set on `LambdaFunctionSucceeded`: the function's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_function_succeeded_event_details: Option<Box<ExecutionSucceededEventDetails>>,
    /// Set on `LambdaFunctionFailed`: the error the function returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_function_failed_event_details: Option<Box<ErrorCauseDetails>>,
    /// Set on `LambdaFunctionTimedOut`: `States.Timeout` and its cause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_function_timed_out_event_details: Option<Box<ErrorCauseDetails>>,
    /// Set on `EvaluationFailed`: a JSONata expression of the state failed to evaluate.
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
            task_submitted_event_details: None,
            execution_redriven_event_details: None,
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
    /// True when the payload exceeded the history's size limit and was cut.
    pub truncated: bool,
}

/// `ExecutionStartedEventDetails`: what an execution started with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionStartedEventDetails {
    /// The execution input, as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// Whether `input` was truncated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_details: Option<DataDetails>,
    /// The IAM role the execution runs as (`roleArn`); `None` locally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
}

/// `ExecutionSucceededEventDetails` (also `LambdaFunctionSucceededEventDetails`, which has
/// the same shape): the result.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionSucceededEventDetails {
    /// The output, as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Whether `output` was truncated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_details: Option<DataDetails>,
}

/// `ExecutionFailedEventDetails`, `ExecutionAbortedEventDetails`, `ExecutionTimedOutEventDetails`
/// and the Lambda failure details all share this shape.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorCauseDetails {
    /// The error name (`States.Timeout`, a handler's error name, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Human-readable explanation of the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

/// `StateEnteredEventDetails`: a state and the input it received.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateEnteredEventDetails {
    /// The state's name.
    pub name: String,
    /// The state's raw input (before InputPath/Parameters), as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// Whether `input` was truncated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_details: Option<DataDetails>,
}

/// `StateExitedEventDetails`: a state, its output and the variables it assigned.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateExitedEventDetails {
    /// The state's name.
    pub name: String,
    /// The state's output (after OutputPath/Output), as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Whether `output` was truncated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_details: Option<DataDetails>,
    /// Variable name → JSON text of the assigned value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_variables: Option<Map<String, Value>>,
    /// Whether `assigned_variables` was truncated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_variables_details: Option<DataDetails>,
}

/// `MapStateStartedEventDetails`: the size of a Map state's run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapStateStartedEventDetails {
    /// Number of items the Map iterates over.
    pub length: u64,
}

/// `MapIterationEventDetails`: which iteration of which Map state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapIterationEventDetails {
    /// The Map state's name.
    pub name: String,
    /// Zero-based index of the item in the Map's input array.
    pub index: u64,
}

/// `TaskScheduledEventDetails`: a service integration task about to be called.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskScheduledEventDetails {
    /// The service of the integration (`lambda`, `sqs`, …): the ARN's service part.
    pub resource_type: String,
    /// The integration's action, with its pattern suffix (`invoke`, `sendMessage.waitForTaskToken`).
    pub resource: String,
    /// The AWS region the task is called in.
    pub region: String,
    /// JSON text of the task's parameters.
    pub parameters: String,
    /// The state's `TimeoutSeconds`, when set (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_in_seconds: Option<u64>,
    /// The state's `HeartbeatSeconds`, when set (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_in_seconds: Option<u64>,
}

/// `TaskStartedEventDetails` (and the other details naming only the resource).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskResourceDetails {
    /// The integration's service (`lambda`, `sqs`, …).
    pub resource_type: String,
    /// The integration's action (`invoke`, …).
    pub resource: String,
}

/// `TaskSucceededEventDetails`: the integration's result.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSucceededEventDetails {
    /// The integration's service (`lambda`, `sqs`, …).
    pub resource_type: String,
    /// The integration's action (`invoke`, …).
    pub resource: String,
    /// The service response, as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Whether `output` was truncated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_details: Option<DataDetails>,
}

/// `ExecutionRedrivenEventDetails`: how often the execution was redriven, this time included.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionRedrivenEventDetails {
    /// How many times the execution has been redriven, this redrive included.
    pub redrive_count: u64,
}

/// `TaskFailedEventDetails` and `TaskTimedOutEventDetails`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskFailedEventDetails {
    /// The integration's service (`lambda`, `sqs`, …).
    pub resource_type: String,
    /// The integration's action (`invoke`, …).
    pub resource: String,
    /// The error name Retry/Catch match on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Human-readable explanation of the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

/// `LambdaFunctionScheduledEventDetails`: a Lambda function about to be invoked directly.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LambdaFunctionScheduledEventDetails {
    /// The function's ARN.
    pub resource: String,
    /// The payload sent to the function, as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// Whether `input` was truncated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_details: Option<DataDetails>,
    /// The state's `TimeoutSeconds`, when set (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_in_seconds: Option<u64>,
}

/// `EvaluationFailedEventDetails`: a JSONata expression failed (`States.QueryEvaluationError`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EvaluationFailedEventDetails {
    /// The error name: `States.QueryEvaluationError`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What failed to evaluate and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// The field whose expression failed (`Arguments`, `Output`, …), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The name of the state whose evaluation failed.
    pub state: String,
}

macro_rules! event_types {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Every `HistoryEventType` of the Step Functions API (serialised by its API name).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum EventType { $($(#[$doc])* $name),* }

        impl EventType {
            /// The API name, e.g. `"PassStateEntered"`.
            pub fn as_str(self) -> &'static str {
                match self { $(EventType::$name => stringify!($name)),* }
            }
        }
    };
}

event_types!(
    /// An activity worker reported failure (SendTaskFailure).
    ActivityFailed,
    /// An activity task was queued for workers to poll.
    ActivityScheduled,
    /// An activity task could not be scheduled (e.g. the activity does not exist).
    ActivityScheduleFailed,
    /// A worker took the activity task (GetActivityTask).
    ActivityStarted,
    /// An activity worker reported success (SendTaskSuccess).
    ActivitySucceeded,
    /// An activity task exceeded its TimeoutSeconds or HeartbeatSeconds.
    ActivityTimedOut,
    /// A Choice state received its input.
    ChoiceStateEntered,
    /// A Choice state picked its next state.
    ChoiceStateExited,
    /// The execution was stopped (StopExecution).
    ExecutionAborted,
    /// The execution ended with an uncaught error or in a Fail state.
    ExecutionFailed,
    /// The execution began; always the first event.
    ExecutionStarted,
    /// The execution ended successfully.
    ExecutionSucceeded,
    /// The execution exceeded the definition's TimeoutSeconds.
    ExecutionTimedOut,
    /// A Fail state was entered (it has no exit event).
    FailStateEntered,
    /// A directly invoked Lambda function returned an error.
    LambdaFunctionFailed,
    /// A Lambda function (a Task whose Resource is its ARN) is about to be invoked.
    LambdaFunctionScheduled,
    /// A Lambda invocation could not be scheduled.
    LambdaFunctionScheduleFailed,
    /// The Lambda invocation started.
    LambdaFunctionStarted,
    /// The Lambda invocation could not start (e.g. no permission to invoke).
    LambdaFunctionStartFailed,
    /// A directly invoked Lambda function returned its result.
    LambdaFunctionSucceeded,
    /// A directly invoked Lambda function exceeded the state's TimeoutSeconds.
    LambdaFunctionTimedOut,
    /// A Map iteration was stopped because the Map failed or was stopped.
    MapIterationAborted,
    /// A Map iteration ended with an error.
    MapIterationFailed,
    /// A Map iteration began.
    MapIterationStarted,
    /// A Map iteration ended successfully.
    MapIterationSucceeded,
    /// A Map state was stopped (its execution ended).
    MapStateAborted,
    /// A Map state received its input.
    MapStateEntered,
    /// A Map state produced its output.
    MapStateExited,
    /// A Map state failed (an iteration failed beyond the tolerated failures).
    MapStateFailed,
    /// A Map state started iterating (details give the item count).
    MapStateStarted,
    /// Every iteration of a Map state ended.
    MapStateSucceeded,
    /// A Parallel state was stopped (its execution ended).
    ParallelStateAborted,
    /// A Parallel state received its input.
    ParallelStateEntered,
    /// A Parallel state produced its output.
    ParallelStateExited,
    /// A branch of a Parallel state failed.
    ParallelStateFailed,
    /// A Parallel state started its branches.
    ParallelStateStarted,
    /// Every branch of a Parallel state ended successfully.
    ParallelStateSucceeded,
    /// A Pass state received its input.
    PassStateEntered,
    /// A Pass state produced its output.
    PassStateExited,
    /// A Succeed state received its input.
    SucceedStateEntered,
    /// A Succeed state produced its output.
    SucceedStateExited,
    /// A service integration task failed.
    TaskFailed,
    /// A service integration task is about to be called.
    TaskScheduled,
    /// A service integration task started.
    TaskStarted,
    /// A service integration task could not start.
    TaskStartFailed,
    /// A Task state was stopped (its execution ended).
    TaskStateAborted,
    /// A Task state received its input.
    TaskStateEntered,
    /// A Task state produced its output.
    TaskStateExited,
    /// Submitting a `.sync` or `.waitForTaskToken` task failed.
    TaskSubmitFailed,
    /// A `.sync` or `.waitForTaskToken` task was submitted; its result comes later.
    TaskSubmitted,
    /// A service integration task returned its result.
    TaskSucceeded,
    /// A task exceeded its TimeoutSeconds or HeartbeatSeconds.
    TaskTimedOut,
    /// A Wait state was stopped (its execution ended).
    WaitStateAborted,
    /// A Wait state began waiting.
    WaitStateEntered,
    /// A Wait state finished waiting.
    WaitStateExited,
    /// A Distributed Map run was stopped.
    MapRunAborted,
    /// A Distributed Map run failed.
    MapRunFailed,
    /// A Distributed Map run started.
    MapRunStarted,
    /// A Distributed Map run ended successfully.
    MapRunSucceeded,
    /// A failed execution was restarted from its failed state (RedriveExecution).
    ExecutionRedriven,
    /// A Distributed Map run was restarted (RedriveExecution).
    MapRunRedriven,
    /// A JSONata expression failed to evaluate (`States.QueryEvaluationError`).
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
