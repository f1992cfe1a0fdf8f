//! SDK shapes → this crate's plain types (and back for inputs). Enums are matched on their API
//! spelling (`as_str`) so a value a newer API adds becomes a named error, not a panic.

use std::time::SystemTime;

use crate::{
    CloudError, CommandStatus, Image, ImageState, Instance, InstanceInformation, InstanceRefresh,
    InstanceRefreshStatus, InstanceState, InstanceStateChange, LaunchTemplateVersion,
    LifecycleActionResult, PingStatus, Tag,
};

fn time(value: Option<&aws_smithy_types::DateTime>) -> Option<SystemTime> {
    value.and_then(|t| SystemTime::try_from(*t).ok())
}

pub(crate) fn sdk_tags(tags: &[Tag]) -> Vec<aws_sdk_ec2::types::Tag> {
    tags.iter()
        .map(|t| {
            aws_sdk_ec2::types::Tag::builder()
                .key(&t.key)
                .value(&t.value)
                .build()
        })
        .collect()
}

fn tags(list: &[aws_sdk_ec2::types::Tag]) -> Vec<Tag> {
    list.iter()
        .map(|t| Tag::new(t.key().unwrap_or_default(), t.value().unwrap_or_default()))
        .collect()
}

pub(crate) fn instance_state(name: &str) -> Result<InstanceState, CloudError> {
    Ok(match name {
        "pending" => InstanceState::Pending,
        "running" => InstanceState::Running,
        "shutting-down" => InstanceState::ShuttingDown,
        "terminated" => InstanceState::Terminated,
        "stopping" => InstanceState::Stopping,
        "stopped" => InstanceState::Stopped,
        other => {
            return Err(CloudError::unavailable(
                "UnknownInstanceState",
                format!("EC2 reported instance state {other:?}, which fleetprep does not know"),
            ));
        }
    })
}

fn state_of(
    state: Option<&aws_sdk_ec2::types::InstanceState>,
) -> Result<InstanceState, CloudError> {
    instance_state(
        state
            .and_then(|s| s.name())
            .map(|n| n.as_str())
            .unwrap_or("pending"),
    )
}

pub(crate) fn instance(item: &aws_sdk_ec2::types::Instance) -> Result<Instance, CloudError> {
    Ok(Instance {
        instance_id: item.instance_id().unwrap_or_default().to_owned(),
        image_id: item.image_id().unwrap_or_default().to_owned(),
        instance_type: item
            .instance_type()
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default(),
        state: state_of(item.state())?,
        state_reason: item
            .state_reason()
            .and_then(|r| r.code())
            .map(str::to_owned),
        launch_time: time(item.launch_time()).unwrap_or(SystemTime::UNIX_EPOCH),
        platform: item.platform().map(|p| p.as_str().to_owned()),
        private_dns_name: item
            .private_dns_name()
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
        tags: tags(item.tags()),
    })
}

pub(crate) fn state_change(
    item: &aws_sdk_ec2::types::InstanceStateChange,
) -> Result<InstanceStateChange, CloudError> {
    Ok(InstanceStateChange {
        instance_id: item.instance_id().unwrap_or_default().to_owned(),
        previous_state: state_of(item.previous_state())?,
        current_state: state_of(item.current_state())?,
    })
}

fn image_state(name: &str) -> ImageState {
    match name {
        "pending" => ImageState::Pending,
        "available" => ImageState::Available,
        "invalid" => ImageState::Invalid,
        "deregistered" => ImageState::Deregistered,
        "transient" => ImageState::Transient,
        "failed" => ImageState::Failed,
        "disabled" => ImageState::Disabled,
        // "error" and anything newer: the workflow treats it as a failed image.
        _ => ImageState::Error,
    }
}

pub(crate) fn image(item: &aws_sdk_ec2::types::Image) -> Image {
    Image {
        image_id: item.image_id().unwrap_or_default().to_owned(),
        name: item.name().unwrap_or_default().to_owned(),
        state: image_state(item.state().map(|s| s.as_str()).unwrap_or("pending")),
        state_reason: item
            .state_reason()
            .and_then(|r| r.message())
            .map(str::to_owned),
        source_instance_id: item.source_instance_id().map(str::to_owned),
        // CreationDate is an ISO 8601 string in this API.
        creation_date: item
            .creation_date()
            .and_then(|d| {
                aws_smithy_types::DateTime::from_str(
                    d,
                    aws_smithy_types::date_time::Format::DateTime,
                )
                .ok()
            })
            .and_then(|d| SystemTime::try_from(d).ok())
            .unwrap_or(SystemTime::UNIX_EPOCH),
        tags: tags(item.tags()),
    }
}

pub(crate) fn launch_template_version(
    item: &aws_sdk_ec2::types::LaunchTemplateVersion,
    launch_template_id: &str,
) -> LaunchTemplateVersion {
    LaunchTemplateVersion {
        launch_template_id: item
            .launch_template_id()
            .unwrap_or(launch_template_id)
            .to_owned(),
        version_number: item.version_number().unwrap_or_default(),
        image_id: item
            .launch_template_data()
            .and_then(|d| d.image_id())
            .unwrap_or_default()
            .to_owned(),
        default_version: item.default_version().unwrap_or(false),
    }
}

pub(crate) fn instance_information(
    item: &aws_sdk_ssm::types::InstanceInformation,
) -> InstanceInformation {
    InstanceInformation {
        instance_id: item.instance_id().unwrap_or_default().to_owned(),
        ping_status: match item.ping_status().map(|s| s.as_str()) {
            Some("Online") => PingStatus::Online,
            Some("ConnectionLost") => PingStatus::ConnectionLost,
            _ => PingStatus::Inactive,
        },
        last_ping: time(item.last_ping_date_time()).unwrap_or(SystemTime::UNIX_EPOCH),
        platform_type: item
            .platform_type()
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default(),
        platform_name: item.platform_name().unwrap_or_default().to_owned(),
        platform_version: item.platform_version().unwrap_or_default().to_owned(),
        agent_version: item.agent_version().unwrap_or_default().to_owned(),
        computer_name: item.computer_name().unwrap_or_default().to_owned(),
    }
}

pub(crate) fn command_status(
    status: Option<&aws_sdk_ssm::types::CommandInvocationStatus>,
) -> CommandStatus {
    match status.map(|s| s.as_str()) {
        Some("Pending") | None => CommandStatus::Pending,
        Some("InProgress") => CommandStatus::InProgress,
        Some("Delayed") => CommandStatus::Delayed,
        Some("Success") => CommandStatus::Success,
        Some("Cancelled") => CommandStatus::Cancelled,
        Some("TimedOut") => CommandStatus::TimedOut,
        Some("Cancelling") => CommandStatus::Cancelling,
        // "Failed" and anything newer.
        Some(_) => CommandStatus::Failed,
    }
}

pub(crate) fn lifecycle_result(result: LifecycleActionResult) -> &'static str {
    match result {
        LifecycleActionResult::Continue => "CONTINUE",
        LifecycleActionResult::Abandon => "ABANDON",
    }
}

pub(crate) fn instance_refresh(
    item: &aws_sdk_autoscaling::types::InstanceRefresh,
    group: &str,
) -> InstanceRefresh {
    let status = match item.status().map(|s| s.as_str()) {
        Some("Pending") | None => InstanceRefreshStatus::Pending,
        Some("InProgress") => InstanceRefreshStatus::InProgress,
        Some("Successful") => InstanceRefreshStatus::Successful,
        Some("Cancelling") => InstanceRefreshStatus::Cancelling,
        Some("Cancelled") => InstanceRefreshStatus::Cancelled,
        Some("RollbackInProgress") => InstanceRefreshStatus::RollbackInProgress,
        Some("RollbackFailed") => InstanceRefreshStatus::RollbackFailed,
        Some("RollbackSuccessful") => InstanceRefreshStatus::RollbackSuccessful,
        Some("Baking") => InstanceRefreshStatus::Baking,
        Some(_) => InstanceRefreshStatus::Failed,
    };
    InstanceRefresh {
        instance_refresh_id: item.instance_refresh_id().unwrap_or_default().to_owned(),
        auto_scaling_group_name: item.auto_scaling_group_name().unwrap_or(group).to_owned(),
        status,
        status_reason: item.status_reason().map(str::to_owned),
        percentage_complete: item
            .percentage_complete()
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(0),
        instances_to_update: item
            .instances_to_update()
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_states_use_the_api_spelling() {
        for state in [
            InstanceState::Pending,
            InstanceState::Running,
            InstanceState::ShuttingDown,
            InstanceState::Terminated,
            InstanceState::Stopping,
            InstanceState::Stopped,
        ] {
            assert_eq!(instance_state(state.as_str()).unwrap(), state);
        }
        let error = instance_state("hibernating").unwrap_err();
        assert!(error.message.contains("hibernating"), "{error}");
    }

    #[test]
    fn image_creation_date_is_parsed() {
        let item = aws_sdk_ec2::types::Image::builder()
            .image_id("ami-1")
            .name("golden")
            .state(aws_sdk_ec2::types::ImageState::Available)
            .creation_date("2024-05-01T12:00:00.000Z")
            .build();
        let converted = image(&item);
        assert_eq!(converted.state, ImageState::Available);
        assert_eq!(
            converted
                .creation_date
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            1_714_564_800
        );
    }

    #[test]
    fn unknown_command_statuses_are_failures() {
        assert_eq!(command_status(None), CommandStatus::Pending);
        assert_eq!(
            command_status(Some(&"Success".into())),
            CommandStatus::Success
        );
        assert_eq!(
            command_status(Some(&"SomethingNew".into())),
            CommandStatus::Failed
        );
    }
}
