//! AWS Step Functions for `--engine aws`: find or create the deployed state machine, start an
//! execution, describe it and page through its history.
//!
//! History events leave this module as JSON in the shape of the GetExecutionHistory response
//! (`{"timestamp": "2024-05-01T12:00:00.250Z", "type": "TaskStateEntered", "id": 2,
//! "previousEventId": 1, "stateEnteredEventDetails": {...}}`, timestamps as RFC 3339 UTC with
//! milliseconds), which is the serde shape of `asl::history::HistoryEvent`, so the CLI turns
//! them into that type and prints them through the same reporting path as the local engine.
//! SDK types stay here.

use std::time::SystemTime;

use aws_sdk_sfn::Client;
use aws_sdk_sfn::types::HistoryEvent;
use serde_json::{Map, Value, json};

use super::AwsConfig;
use super::error::from_sdk;
use crate::CloudError;

/// A Step Functions client for the engine mode.
#[derive(Clone, Debug)]
pub struct StepFunctions {
    client: Client,
}

/// What DescribeExecution reports, in plain types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutionDescription {
    /// The execution's ARN.
    pub execution_arn: String,
    /// The ARN of the state machine it runs.
    pub state_machine_arn: String,
    /// The execution's name.
    pub name: String,
    /// `RUNNING`, `SUCCEEDED`, `FAILED`, `TIMED_OUT`, `ABORTED`, `PENDING_REDRIVE`.
    pub status: String,
    /// The execution input, as JSON text (absent when the caller may not see it).
    pub input: Option<String>,
    /// The output, as JSON text, once SUCCEEDED.
    pub output: Option<String>,
    /// The error name of a FAILED or ABORTED execution.
    pub error: Option<String>,
    /// The cause of `error`, when given.
    pub cause: Option<String>,
    /// When the execution started.
    pub start_date: SystemTime,
    /// When it ended; `None` while RUNNING.
    pub stop_date: Option<SystemTime>,
}

impl ExecutionDescription {
    /// True once the execution will not change any more.
    pub fn is_finished(&self) -> bool {
        self.status != "RUNNING"
    }
}

/// One page of history events (GetExecutionHistory JSON shape) and the token for the next.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryPage {
    /// The page's events, each a GetExecutionHistory `HistoryEvent` object.
    pub events: Vec<Value>,
    /// `nextToken` for the following page; `None` on the last page.
    pub next_token: Option<String>,
}

impl StepFunctions {
    /// Resolves `config` (credential chain, region, endpoint) and builds the client.
    pub async fn connect(config: &AwsConfig) -> Self {
        let sdk = config.load().await;
        let mut builder = aws_sdk_sfn::config::Builder::from(&sdk);
        if let Some(recorder) = &config.recorder {
            builder = builder.interceptor(super::iam::RecordingInterceptor(recorder.clone()));
        }
        Self {
            client: Client::from_conf(builder.build()),
        }
    }

    /// CreateStateMachine (STANDARD) from an ASL definition; returns the ARN.
    pub async fn create_state_machine(
        &self,
        name: &str,
        definition: &str,
        role_arn: &str,
    ) -> Result<String, CloudError> {
        let output = self
            .client
            .create_state_machine()
            .name(name)
            .definition(definition)
            .role_arn(role_arn)
            .send()
            .await
            .map_err(|e| from_sdk("states:CreateStateMachine", e))?;
        Ok(output.state_machine_arn().to_owned())
    }

    /// The ARN of the state machine called `name` (ListStateMachines, all pages), if any.
    pub async fn find_state_machine(&self, name: &str) -> Result<Option<String>, CloudError> {
        let machines = self
            .client
            .list_state_machines()
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| from_sdk("states:ListStateMachines", e))?;
        Ok(machines
            .into_iter()
            .find(|m| m.name() == name)
            .map(|m| m.state_machine_arn().to_owned()))
    }

    /// StartExecution; `name` makes the start idempotent (Step Functions rejects a second
    /// execution with the same name and a different input).
    pub async fn start_execution(
        &self,
        state_machine_arn: &str,
        name: Option<&str>,
        input: &Value,
    ) -> Result<String, CloudError> {
        let output = self
            .client
            .start_execution()
            .state_machine_arn(state_machine_arn)
            .set_name(name.map(str::to_owned))
            .input(input.to_string())
            .send()
            .await
            .map_err(|e| from_sdk("states:StartExecution", e))?;
        Ok(output.execution_arn().to_owned())
    }

    /// DescribeExecution.
    pub async fn describe_execution(
        &self,
        execution_arn: &str,
    ) -> Result<ExecutionDescription, CloudError> {
        let output = self
            .client
            .describe_execution()
            .execution_arn(execution_arn)
            .send()
            .await
            .map_err(|e| from_sdk("states:DescribeExecution", e))?;
        Ok(ExecutionDescription {
            execution_arn: output.execution_arn().to_owned(),
            state_machine_arn: output.state_machine_arn().to_owned(),
            name: output.name().unwrap_or_default().to_owned(),
            status: output.status().as_str().to_owned(),
            input: output.input().map(str::to_owned),
            output: output.output().map(str::to_owned),
            error: output.error().map(str::to_owned),
            cause: output.cause().map(str::to_owned),
            start_date: system_time(output.start_date()),
            stop_date: output.stop_date().map(system_time),
        })
    }

    /// ListExecutions of one state machine (all pages, newest first as Step Functions lists
    /// them), optionally only those with `status` (`RUNNING`, `SUCCEEDED`, …). A list item has
    /// no input, output, error or cause: those are `None` (DescribeExecution has them).
    pub async fn list_executions(
        &self,
        state_machine_arn: &str,
        status: Option<&str>,
    ) -> Result<Vec<ExecutionDescription>, CloudError> {
        let items = self
            .client
            .list_executions()
            .state_machine_arn(state_machine_arn)
            .set_status_filter(status.map(aws_sdk_sfn::types::ExecutionStatus::from))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| from_sdk("states:ListExecutions", e))?;
        Ok(items
            .into_iter()
            .map(|item| ExecutionDescription {
                execution_arn: item.execution_arn().to_owned(),
                state_machine_arn: item.state_machine_arn().to_owned(),
                name: item.name().to_owned(),
                status: item.status().as_str().to_owned(),
                input: None,
                output: None,
                error: None,
                cause: None,
                start_date: system_time(item.start_date()),
                stop_date: item.stop_date().map(system_time),
            })
            .collect())
    }

    /// One page of GetExecutionHistory (oldest first), for following a running execution.
    pub async fn history_page(
        &self,
        execution_arn: &str,
        next_token: Option<String>,
    ) -> Result<HistoryPage, CloudError> {
        let output = self
            .client
            .get_execution_history()
            .execution_arn(execution_arn)
            .set_next_token(next_token)
            .send()
            .await
            .map_err(|e| from_sdk("states:GetExecutionHistory", e))?;
        Ok(HistoryPage {
            events: output.events().iter().map(event_json).collect(),
            next_token: output.next_token().map(str::to_owned),
        })
    }

    /// The events after `after_id` (oldest first), reading newest-first pages only until it
    /// reaches `after_id`: following a long execution costs one call per poll, not one per
    /// page of the whole history.
    pub async fn history_after(
        &self,
        execution_arn: &str,
        after_id: i64,
    ) -> Result<Vec<Value>, CloudError> {
        let mut newest_first = Vec::new();
        let mut token = None;
        'pages: loop {
            let output = self
                .client
                .get_execution_history()
                .execution_arn(execution_arn)
                .reverse_order(true)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| from_sdk("states:GetExecutionHistory", e))?;
            for event in output.events() {
                if event.id() <= after_id {
                    break 'pages;
                }
                newest_first.push(event_json(event));
            }
            match output.next_token() {
                Some(next) => token = Some(next.to_owned()),
                None => break,
            }
        }
        newest_first.reverse();
        Ok(newest_first)
    }

    /// The whole history (all pages).
    pub async fn history(&self, execution_arn: &str) -> Result<Vec<Value>, CloudError> {
        let mut events = Vec::new();
        let mut token = None;
        loop {
            let page = self.history_page(execution_arn, token).await?;
            events.extend(page.events);
            match page.next_token {
                Some(next) => token = Some(next),
                None => return Ok(events),
            }
        }
    }
}

fn system_time(time: &aws_smithy_types::DateTime) -> SystemTime {
    SystemTime::try_from(*time).unwrap_or(SystemTime::UNIX_EPOCH)
}

fn rfc3339(time: &aws_smithy_types::DateTime) -> Value {
    Value::String(rfc3339_millis(time.to_millis().unwrap_or(0)))
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for milliseconds since the epoch (proleptic Gregorian, UTC).
pub use clock::format_rfc3339_millis as rfc3339_millis;

/// Inserts `key: value` when value is present.
fn put(map: &mut Map<String, Value>, key: &str, value: Option<&str>) {
    if let Some(value) = value {
        map.insert(key.to_owned(), Value::String(value.to_owned()));
    }
}

/// One SDK history event as GetExecutionHistory JSON.
pub(crate) fn event_json(event: &HistoryEvent) -> Value {
    let mut out = Map::new();
    out.insert("timestamp".into(), rfc3339(event.timestamp()));
    out.insert("type".into(), json!(event.r#type().as_str()));
    out.insert("id".into(), json!(event.id()));
    out.insert("previousEventId".into(), json!(event.previous_event_id()));
    let mut details = Map::new();
    let key = if let Some(d) = event.execution_started_event_details() {
        put(&mut details, "input", d.input());
        put(&mut details, "roleArn", d.role_arn());
        "executionStartedEventDetails"
    } else if let Some(d) = event.execution_succeeded_event_details() {
        put(&mut details, "output", d.output());
        "executionSucceededEventDetails"
    } else if let Some(d) = event.execution_failed_event_details() {
        put(&mut details, "error", d.error());
        put(&mut details, "cause", d.cause());
        "executionFailedEventDetails"
    } else if let Some(d) = event.execution_aborted_event_details() {
        put(&mut details, "error", d.error());
        put(&mut details, "cause", d.cause());
        "executionAbortedEventDetails"
    } else if let Some(d) = event.execution_timed_out_event_details() {
        put(&mut details, "error", d.error());
        put(&mut details, "cause", d.cause());
        "executionTimedOutEventDetails"
    } else if let Some(d) = event.state_entered_event_details() {
        put(&mut details, "name", Some(d.name()));
        put(&mut details, "input", d.input());
        "stateEnteredEventDetails"
    } else if let Some(d) = event.state_exited_event_details() {
        put(&mut details, "name", Some(d.name()));
        put(&mut details, "output", d.output());
        "stateExitedEventDetails"
    } else if let Some(d) = event.task_scheduled_event_details() {
        put(&mut details, "resourceType", Some(d.resource_type()));
        put(&mut details, "resource", Some(d.resource()));
        put(&mut details, "region", Some(d.region()));
        put(&mut details, "parameters", Some(d.parameters()));
        if let Some(t) = d.timeout_in_seconds() {
            details.insert("timeoutInSeconds".into(), json!(t));
        }
        if let Some(h) = d.heartbeat_in_seconds() {
            details.insert("heartbeatInSeconds".into(), json!(h));
        }
        "taskScheduledEventDetails"
    } else if let Some(d) = event.task_started_event_details() {
        put(&mut details, "resourceType", Some(d.resource_type()));
        put(&mut details, "resource", Some(d.resource()));
        "taskStartedEventDetails"
    } else if let Some(d) = event.task_succeeded_event_details() {
        put(&mut details, "resourceType", Some(d.resource_type()));
        put(&mut details, "resource", Some(d.resource()));
        put(&mut details, "output", d.output());
        "taskSucceededEventDetails"
    } else if let Some(d) = event.task_failed_event_details() {
        put(&mut details, "resourceType", Some(d.resource_type()));
        put(&mut details, "resource", Some(d.resource()));
        put(&mut details, "error", d.error());
        put(&mut details, "cause", d.cause());
        "taskFailedEventDetails"
    } else if let Some(d) = event.task_timed_out_event_details() {
        put(&mut details, "resourceType", Some(d.resource_type()));
        put(&mut details, "resource", Some(d.resource()));
        put(&mut details, "error", d.error());
        put(&mut details, "cause", d.cause());
        "taskTimedOutEventDetails"
    } else if let Some(d) = event.task_start_failed_event_details() {
        put(&mut details, "resourceType", Some(d.resource_type()));
        put(&mut details, "resource", Some(d.resource()));
        put(&mut details, "error", d.error());
        put(&mut details, "cause", d.cause());
        "taskStartFailedEventDetails"
    } else if let Some(d) = event.task_submit_failed_event_details() {
        put(&mut details, "resourceType", Some(d.resource_type()));
        put(&mut details, "resource", Some(d.resource()));
        put(&mut details, "error", d.error());
        put(&mut details, "cause", d.cause());
        "taskSubmitFailedEventDetails"
    } else if let Some(d) = event.lambda_function_scheduled_event_details() {
        put(&mut details, "resource", Some(d.resource()));
        put(&mut details, "input", d.input());
        if let Some(t) = d.timeout_in_seconds() {
            details.insert("timeoutInSeconds".into(), json!(t));
        }
        "lambdaFunctionScheduledEventDetails"
    } else if let Some(d) = event.lambda_function_succeeded_event_details() {
        put(&mut details, "output", d.output());
        "lambdaFunctionSucceededEventDetails"
    } else if let Some(d) = event.lambda_function_failed_event_details() {
        put(&mut details, "error", d.error());
        put(&mut details, "cause", d.cause());
        "lambdaFunctionFailedEventDetails"
    } else if let Some(d) = event.lambda_function_timed_out_event_details() {
        put(&mut details, "error", d.error());
        put(&mut details, "cause", d.cause());
        "lambdaFunctionTimedOutEventDetails"
    } else if let Some(d) = event.lambda_function_start_failed_event_details() {
        put(&mut details, "error", d.error());
        put(&mut details, "cause", d.cause());
        "lambdaFunctionStartFailedEventDetails"
    } else if let Some(d) = event.lambda_function_schedule_failed_event_details() {
        put(&mut details, "error", d.error());
        put(&mut details, "cause", d.cause());
        "lambdaFunctionScheduleFailedEventDetails"
    } else if let Some(d) = event.map_state_started_event_details() {
        details.insert("length".into(), json!(d.length()));
        "mapStateStartedEventDetails"
    } else if let Some((key, d)) = event
        .map_iteration_started_event_details()
        .map(|d| ("mapIterationStartedEventDetails", d))
        .or_else(|| {
            event
                .map_iteration_succeeded_event_details()
                .map(|d| ("mapIterationSucceededEventDetails", d))
        })
        .or_else(|| {
            event
                .map_iteration_failed_event_details()
                .map(|d| ("mapIterationFailedEventDetails", d))
        })
        .or_else(|| {
            event
                .map_iteration_aborted_event_details()
                .map(|d| ("mapIterationAbortedEventDetails", d))
        })
    {
        put(&mut details, "name", d.name());
        details.insert("index".into(), json!(d.index()));
        key
    } else if let Some(d) = event.evaluation_failed_event_details() {
        put(&mut details, "error", d.error());
        put(&mut details, "cause", d.cause());
        put(&mut details, "location", d.location());
        put(&mut details, "state", Some(d.state()));
        "evaluationFailedEventDetails"
    } else {
        // Events without details (for example MapStateSucceeded, WaitStateEntered is covered
        // above) or kinds fleetprep's machines never produce (activities): type and ids only.
        ""
    };
    if !key.is_empty() {
        out.insert(key.to_owned(), Value::Object(details));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sfn::types::{HistoryEventType, StateEnteredEventDetails, TaskFailedEventDetails};

    #[test]
    fn history_events_use_the_wire_shape() {
        let event = HistoryEvent::builder()
            .timestamp(aws_smithy_types::DateTime::from_millis(1_700_000_000_250))
            .r#type(HistoryEventType::TaskStateEntered)
            .id(2)
            .previous_event_id(1)
            .state_entered_event_details(
                StateEnteredEventDetails::builder()
                    .name("LaunchBuilder")
                    .input("{}")
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        assert_eq!(
            event_json(&event),
            json!({
                "timestamp": "2023-11-14T22:13:20.250Z",
                "type": "TaskStateEntered",
                "id": 2,
                "previousEventId": 1,
                "stateEnteredEventDetails": {"name": "LaunchBuilder", "input": "{}"}
            })
        );
    }

    #[test]
    fn timestamps_are_rfc3339_with_milliseconds() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(951_782_400_001), "2000-02-29T00:00:00.001Z");
        assert_eq!(
            rfc3339_millis(1_714_564_800_999),
            "2024-05-01T12:00:00.999Z"
        );
    }

    #[test]
    fn task_failures_keep_error_and_cause() {
        let event = HistoryEvent::builder()
            .timestamp(aws_smithy_types::DateTime::from_secs(1))
            .r#type(HistoryEventType::TaskFailed)
            .id(7)
            .previous_event_id(6)
            .task_failed_event_details(
                TaskFailedEventDetails::builder()
                    .resource_type("lambda")
                    .resource("invoke")
                    .error("Cloud.Throttled")
                    .cause("RequestLimitExceeded")
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let value = event_json(&event);
        assert_eq!(
            value["taskFailedEventDetails"]["error"],
            json!("Cloud.Throttled")
        );
        assert_eq!(
            value["taskFailedEventDetails"]["cause"],
            json!("RequestLimitExceeded")
        );
    }
}
