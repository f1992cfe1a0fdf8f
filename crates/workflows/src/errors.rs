//! The error names handlers raise: the contract the state machines `Retry` and `Catch` on.
//!
//! On AWS a Lambda error's `errorType` becomes the task's Error; locally the engine uses
//! [`HandlerError::error`] the same way. These strings are API: tests pin them, and the ASL
//! files refer to them verbatim.

use cloud::{CloudError, ErrorKind};
use serde::{Deserialize, Serialize};

/// An AWS rate limit (RequestLimitExceeded, ThrottlingException). Retried with backoff.
pub const THROTTLED: &str = "Fleetprep.Throttled";
/// A service error worth retrying (5xx, timeouts, name store outage).
pub const TRANSIENT: &str = "Fleetprep.Transient";
/// The payload is malformed (a bug in the state machine or a bad event).
pub const INVALID_INPUT: &str = "Fleetprep.InvalidInput";
/// A resource the workflow works on does not exist any more.
pub const NOT_FOUND: &str = "Fleetprep.NotFound";
/// The instance was terminated or stopped by someone else mid-workflow.
pub const INSTANCE_GONE: &str = "Fleetprep.InstanceGone";
/// A resource is in a state the call cannot handle.
pub const INCORRECT_STATE: &str = "Fleetprep.IncorrectState";
/// A quota is used up.
pub const LIMIT_EXCEEDED: &str = "Fleetprep.LimitExceeded";
/// IAM denied the call.
pub const ACCESS_DENIED: &str = "Fleetprep.AccessDenied";
/// A conditional write lost (idempotency mismatch, conflicting writer).
pub const CONFLICT: &str = "Fleetprep.Conflict";
/// An AWS error with no better name.
pub const AWS_ERROR: &str = "Fleetprep.AwsError";
/// The SSM agent did not come online before the deadline.
pub const AGENT_UNREACHABLE: &str = "Fleetprep.AgentUnreachable";
/// A polled condition did not happen before its deadline.
pub const TIMEOUT: &str = "Fleetprep.Timeout";
/// An SSM command ended Failed / TimedOut / Cancelled.
pub const COMMAND_FAILED: &str = "Fleetprep.CommandFailed";
/// Sysprep itself failed (its command failed before the shutdown).
pub const SYSPREP_FAILED: &str = "Fleetprep.SysprepFailed";
/// The pre-flight checks found a blocking problem; Sysprep was not started.
pub const PREFLIGHT_BLOCKED: &str = "Fleetprep.PreflightBlocked";
/// CreateImage ended in `failed` / `error` / `invalid`.
pub const IMAGE_FAILED: &str = "Fleetprep.ImageFailed";
/// Every name of the pool is leased.
pub const NAME_POOL_EXHAUSTED: &str = "Fleetprep.NamePoolExhausted";
/// The instance's name could not be verified (wrong name or unchanged SID after reboot).
pub const VERIFY_FAILED: &str = "Fleetprep.VerifyFailed";
/// The lifecycle action expired before the workflow completed it.
pub const LIFECYCLE_ACTION_EXPIRED: &str = "Fleetprep.LifecycleActionExpired";
/// A referenced secret does not exist.
pub const SECRET_MISSING: &str = "Fleetprep.SecretMissing";
/// The instance refresh failed or was cancelled.
pub const REFRESH_FAILED: &str = "Fleetprep.RefreshFailed";

/// Lambda killed the function at its timeout (the Lambda service's own error name).
pub const LAMBDA_TIMEOUT: &str = "Sandbox.Timedout";

/// Every name above, for documentation and the contract test.
pub const ALL: &[&str] = &[
    THROTTLED,
    TRANSIENT,
    INVALID_INPUT,
    NOT_FOUND,
    INSTANCE_GONE,
    INCORRECT_STATE,
    LIMIT_EXCEEDED,
    ACCESS_DENIED,
    CONFLICT,
    AWS_ERROR,
    AGENT_UNREACHABLE,
    TIMEOUT,
    COMMAND_FAILED,
    SYSPREP_FAILED,
    PREFLIGHT_BLOCKED,
    IMAGE_FAILED,
    NAME_POOL_EXHAUSTED,
    VERIFY_FAILED,
    LIFECYCLE_ACTION_EXPIRED,
    SECRET_MISSING,
    REFRESH_FAILED,
    LAMBDA_TIMEOUT,
];

/// The names the state machines retry with backoff and full jitter.
pub const RETRYABLE: &[&str] = &[THROTTLED, TRANSIENT];

/// A handler failure: the error name (the contract) and a human cause.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{error}: {cause}")]
pub struct HandlerError {
    /// The error name Retry/Catch match on (`Fleetprep.Timeout`, …; see the constants above).
    pub error: String,
    /// Human-readable explanation, naming the instance, call or field involved.
    pub cause: String,
}

impl HandlerError {
    /// A failure named `error` (one of this module's constants) explained by `cause`.
    pub fn new(error: &str, cause: impl Into<String>) -> Self {
        Self {
            error: error.to_string(),
            cause: cause.into(),
        }
    }

    /// A cloud error mapped to its workflow name, the AWS code kept in the cause.
    pub fn from_cloud(context: &str, error: CloudError) -> Self {
        let name = match error.kind {
            ErrorKind::Throttled => THROTTLED,
            ErrorKind::Unavailable => TRANSIENT,
            ErrorKind::NotFound if error.code.starts_with("InvalidInstanceID") => INSTANCE_GONE,
            ErrorKind::NotFound => NOT_FOUND,
            ErrorKind::IncorrectState => INCORRECT_STATE,
            ErrorKind::InvalidParameter => INVALID_INPUT,
            ErrorKind::LimitExceeded => LIMIT_EXCEEDED,
            ErrorKind::AccessDenied => ACCESS_DENIED,
            ErrorKind::Conflict => CONFLICT,
            ErrorKind::Other => AWS_ERROR,
        };
        Self::new(
            name,
            format!("{context}: {} ({})", error.message, error.code),
        )
    }

    /// Whether the state machines retry this error with backoff ([`RETRYABLE`]).
    pub fn is_retryable(&self) -> bool {
        RETRYABLE.contains(&self.error.as_str())
    }
}

/// Maps a name-store error to its workflow name.
pub fn from_pool(error: names::PoolError) -> HandlerError {
    let name = match &error {
        names::PoolError::Exhausted { .. } => NAME_POOL_EXHAUSTED,
        names::PoolError::NotFound { .. } => NOT_FOUND,
        names::PoolError::InvalidRequest(_) => INVALID_INPUT,
        names::PoolError::Unavailable { .. } => TRANSIENT,
    };
    HandlerError::new(name, error.to_string())
}
