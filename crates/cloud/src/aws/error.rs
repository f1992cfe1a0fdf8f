//! AWS error codes → [`CloudError`].
//!
//! The workflows' Retry/Catch rules match on [`ErrorKind`] (through the workflow error names),
//! so the mapping is a table with one test per row family. The AWS code is kept verbatim in
//! `CloudError::code` so logs and the CLI show what AWS said.
//!
//! Sources: EC2 API error codes (docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview),
//! SSM, Auto Scaling, DynamoDB, Secrets Manager and Step Functions API references ("Errors"
//! section of each operation), and the SDK's own retry classifier for throttling codes.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::{CloudError, ErrorKind};

/// The coarse kind of an AWS error code. `http_status` decides only for codes this table does
/// not know (a 5xx is worth retrying, a 4xx is not).
pub fn classify(code: &str, http_status: Option<u16>) -> ErrorKind {
    match code {
        // Throttling: EC2 says RequestLimitExceeded, most JSON services ThrottlingException,
        // Query services Throttling; DynamoDB has its own capacity errors.
        "RequestLimitExceeded"
        | "ThrottlingException"
        | "Throttling"
        | "ThrottledException"
        | "RequestThrottled"
        | "RequestThrottledException"
        | "TooManyRequestsException"
        | "ProvisionedThroughputExceededException"
        | "RequestLimitExceededException"
        | "SlowDown"
        | "PriorRequestNotComplete"
        | "EC2ThrottledException"
        | "BandwidthLimitExceeded" => ErrorKind::Throttled,

        // Not found. `InvocationDoesNotExist` right after SendCommand means "not yet" and the
        // state machine polls again; cleanup treats a gone image or instance as done.
        "InvocationDoesNotExist"
        | "InvalidCommandId"
        | "ResourceNotFoundException"
        | "ResourceNotFound"
        | "ParameterNotFound"
        | "ExecutionDoesNotExist"
        | "StateMachineDoesNotExist"
        | "ActivityDoesNotExist"
        | "ActiveInstanceRefreshNotFound"
        | "ActiveInstanceRefreshNotFoundFault"
        | "InvalidAMIID.Unavailable"
        | "InvalidAMIID.Malformed" => ErrorKind::NotFound,
        c if c.ends_with(".NotFound") => ErrorKind::NotFound,

        // Wrong state for the call.
        "IncorrectInstanceState"
        | "IncorrectState"
        | "InvalidInstanceId"
        | "InvalidInstanceState"
        | "ScalingActivityInProgress"
        | "ScalingActivityInProgressFault"
        | "InstanceRefreshInProgress"
        | "InstanceRefreshInProgressFault"
        | "ResourceInUse"
        | "ResourceInUseFault"
        | "ResourceInUseException"
        | "UnsupportedOperation"
        | "ExecutionAlreadyExists"
        | "ExecutionNotRedrivable" => ErrorKind::IncorrectState,

        // Malformed request or a request that breaks an API limit.
        "InvalidParameterValue"
        | "InvalidParameter"
        | "InvalidParameters"
        | "InvalidParameterCombination"
        | "InvalidParameterException"
        | "InvalidParameterValueException"
        | "MissingParameter"
        | "ValidationException"
        | "ValidationError"
        | "InvalidDocument"
        | "InvalidDefinition"
        | "InvalidArn"
        | "InvalidName"
        | "InvalidExecutionInput"
        | "InvalidRequestException"
        | "InvalidInput"
        | "SerializationException"
        | "UnknownOperationException"
        | "InvalidAction" => ErrorKind::InvalidParameter,
        c if c.starts_with("InvalidParameter") || c.ends_with(".Malformed") => {
            ErrorKind::InvalidParameter
        }

        // Quotas.
        "InstanceLimitExceeded"
        | "VcpuLimitExceeded"
        | "LimitExceeded"
        | "LimitExceededFault"
        | "LimitExceededException"
        | "ResourceLimitExceeded"
        | "AMIQuotaExceeded"
        | "StateMachineLimitExceeded"
        | "ExecutionLimitExceeded"
        | "NamePoolExhausted" => ErrorKind::LimitExceeded,

        // Credentials and IAM.
        "UnauthorizedOperation"
        | "AccessDenied"
        | "AccessDeniedException"
        | "AuthFailure"
        | "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "SignatureDoesNotMatch"
        | "MissingAuthenticationToken"
        | "IncompleteSignature"
        | "OptInRequired"
        | "Blocked" => ErrorKind::AccessDenied,

        // Lost races and idempotency mismatches.
        "ConditionalCheckFailedException"
        | "TransactionCanceledException"
        | "TransactionConflictException"
        | "IdempotentParameterMismatch"
        | "IdempotentParameterMismatchException"
        | "InvalidAMIName.Duplicate"
        | "AlreadyExists"
        | "AlreadyExistsFault"
        | "ResourceConflictException"
        | "ConflictException" => ErrorKind::Conflict,

        // The service failed or could not be reached.
        "InternalError"
        | "InternalFailure"
        | "InternalServerError"
        | "InternalServerErrorException"
        | "InternalServerException"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "Unavailable"
        | "InsufficientInstanceCapacity"
        | "InsufficientCapacity"
        | "RequestTimeout"
        | "RequestTimeoutException"
        | "DispatchFailure"
        | "Timeout" => ErrorKind::Unavailable,

        _ => match http_status {
            Some(status) if status >= 500 => ErrorKind::Unavailable,
            Some(429) => ErrorKind::Throttled,
            Some(401 | 403) => ErrorKind::AccessDenied,
            _ => ErrorKind::Other,
        },
    }
}

/// Converts an SDK error of any operation, naming the operation (`ec2:RunInstances`) in the
/// message so a failed execution says which call failed.
pub fn from_sdk<E>(
    operation: &str,
    error: SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = error.raw_response().map(|r| r.status().as_u16());
    match &error {
        SdkError::ServiceError(service) => {
            let meta = service.err();
            // A response without an error code is not the service's protocol (an HTML error
            // page, a 404 for an unknown route): name it by its status.
            let code = match (meta.code(), status) {
                (Some(code), _) => code.to_owned(),
                (None, Some(status)) => format!("HttpStatus{status}"),
                (None, None) => "Unknown".to_owned(),
            };
            let message = meta
                .message()
                .map(str::to_owned)
                .unwrap_or_else(|| DisplayErrorContext(&error).to_string());
            CloudError::new(
                classify(&code, status),
                code,
                format!("{operation}: {message}"),
            )
        }
        SdkError::TimeoutError(_) => CloudError::unavailable(
            "Timeout",
            format!(
                "{operation}: the request timed out: {}",
                DisplayErrorContext(&error)
            ),
        ),
        SdkError::DispatchFailure(_) => CloudError::unavailable(
            "DispatchFailure",
            format!(
                "{operation}: could not reach the endpoint (check --endpoint-url, --region and \
                 the network): {}",
                DisplayErrorContext(&error)
            ),
        ),
        SdkError::ResponseError(_) => {
            // The service answered something that is not its protocol (for example an HTML
            // error page); the status decides whether retrying can help.
            let code = match status {
                Some(s) => format!("HttpStatus{s}"),
                None => "ResponseError".to_owned(),
            };
            CloudError::new(
                classify(&code, status),
                code,
                format!(
                    "{operation}: unreadable response: {}",
                    DisplayErrorContext(&error)
                ),
            )
        }
        _ => CloudError::invalid_parameter(
            "ConstructionFailure",
            format!(
                "{operation}: the request could not be built: {}",
                DisplayErrorContext(&error)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(code: &str, status: Option<u16>, expected: ErrorKind) {
        assert_eq!(classify(code, status), expected, "code {code:?}");
    }

    #[test]
    fn throttling_codes_are_throttled() {
        for code in [
            "RequestLimitExceeded",
            "ThrottlingException",
            "Throttling",
            "ProvisionedThroughputExceededException",
            "TooManyRequestsException",
        ] {
            check(code, Some(400), ErrorKind::Throttled);
        }
        check("SomethingNew", Some(429), ErrorKind::Throttled);
    }

    #[test]
    fn gone_resources_are_not_found() {
        for code in [
            "InvalidInstanceID.NotFound",
            "InvalidAMIID.NotFound",
            "InvalidAMIID.Unavailable",
            "InvalidLaunchTemplateId.NotFound",
            "InvocationDoesNotExist",
            "ResourceNotFoundException",
            "ParameterNotFound",
            "ExecutionDoesNotExist",
        ] {
            check(code, Some(400), ErrorKind::NotFound);
        }
    }

    #[test]
    fn state_limit_access_conflict_and_server_codes() {
        check(
            "IncorrectInstanceState",
            Some(400),
            ErrorKind::IncorrectState,
        );
        check("InvalidInstanceId", Some(400), ErrorKind::IncorrectState);
        check(
            "InvalidParameterValue",
            Some(400),
            ErrorKind::InvalidParameter,
        );
        check(
            "InvalidParameterValue.Something",
            Some(400),
            ErrorKind::InvalidParameter,
        );
        check("ValidationError", Some(400), ErrorKind::InvalidParameter);
        check("InstanceLimitExceeded", Some(400), ErrorKind::LimitExceeded);
        check("UnauthorizedOperation", Some(403), ErrorKind::AccessDenied);
        check(
            "ConditionalCheckFailedException",
            Some(400),
            ErrorKind::Conflict,
        );
        check(
            "IdempotentParameterMismatch",
            Some(400),
            ErrorKind::Conflict,
        );
        check("InternalError", Some(500), ErrorKind::Unavailable);
        check(
            "InsufficientInstanceCapacity",
            Some(500),
            ErrorKind::Unavailable,
        );
    }

    #[test]
    fn unknown_codes_fall_back_on_the_status() {
        check("HttpStatus500", Some(500), ErrorKind::Unavailable);
        check("HttpStatus503", Some(503), ErrorKind::Unavailable);
        check("Mystery", Some(400), ErrorKind::Other);
        check("Mystery", None, ErrorKind::Other);
        check("Mystery", Some(403), ErrorKind::AccessDenied);
    }
}
