//! Errors of the ASL crate: runtime errors as Step Functions raises them, static diagnostics,
//! and syntax errors of the expression languages.
//!
//! API (stable; only additions from here on):
//! - [`StatesError`] `{ error, cause }`: a runtime error exactly as ASL raises it. `error` is
//!   the name that `Retry`/`Catch` match on (one of the `States.*` constants below, or a
//!   user/Task error). `cause` is the cause TEXT. For errors raised while a state runs, AWS
//!   prefixes the cause with `An error occurred while executing the state 'NAME' (entered at
//!   the event id #N). `; the expression layer does NOT add that prefix (it does not know the
//!   state or the event id): the interpreter adds it with [`StatesError::in_state`].
//! - The `States.*` error names as constants ([`ALL`], [`RUNTIME`], ...).
//! - [`Diagnostic`] `{ path, state, message }`: one static validation problem; `path` is a JSON
//!   pointer into the definition (e.g. `/States/Foo/Parameters/bar.$`).
//! - [`SyntaxError`]: why a JSONPath, intrinsic call or JSONata expression does not parse.

use std::fmt;

/// `States.ALL`: matches every error name in Retry/Catch (never raised itself).
pub const ALL: &str = "States.ALL";
/// A state raised an error that has no more specific name (e.g. a missing JSONPath).
pub const RUNTIME: &str = "States.Runtime";
/// A Task ran longer than TimeoutSeconds, or the execution exceeded its TimeoutSeconds.
pub const TIMEOUT: &str = "States.Timeout";
/// A Task failed; matches every Task error except `States.Timeout`.
pub const TASK_FAILED: &str = "States.TaskFailed";
/// A Parallel branch failed.
pub const BRANCH_FAILED: &str = "States.BranchFailed";
/// No Choice rule matched and the Choice state has no Default.
pub const NO_CHOICE_MATCHED: &str = "States.NoChoiceMatched";
/// An intrinsic function failed (bad argument types or values).
pub const INTRINSIC_FAILURE: &str = "States.IntrinsicFailure";
/// ResultPath could not be applied to the state input.
pub const RESULT_PATH_MATCH_FAILURE: &str = "States.ResultPathMatchFailure";
/// A `.$` field of Parameters referenced a path that does not exist.
pub const PARAMETER_PATH_FAILURE: &str = "States.ParameterPathFailure";
/// A JSONata expression failed or returned an unusable value.
pub const QUERY_EVALUATION_ERROR: &str = "States.QueryEvaluationError";
/// A Map state's failures exceeded ToleratedFailureCount/Percentage.
pub const EXCEED_TOLERATED_FAILURE_THRESHOLD: &str = "States.ExceedToleratedFailureThreshold";
/// A Task did not send a heartbeat within HeartbeatSeconds. Only matched on, never raised:
/// AWS raises [`TIMEOUT`] for a missed heartbeat too (its `TaskTimedOut` event says
/// `States.Timeout`), and `States.HeartbeatTimeout` in `ErrorEquals` matches only that kind
/// ("only available inside the Catch and Retry fields": developer guide, "Error names").
pub const HEARTBEAT_TIMEOUT: &str = "States.HeartbeatTimeout";
/// The execution lacked the privileges for the code it tried to run.
pub const PERMISSIONS: &str = "States.Permissions";
/// A distributed Map's ItemReader failed.
pub const ITEM_READER_FAILED: &str = "States.ItemReaderFailed";
/// A distributed Map's ResultWriter failed.
pub const RESULT_WRITER_FAILED: &str = "States.ResultWriterFailed";
/// A state's input, output or result exceeded the 256 KiB payload limit.
pub const DATA_LIMIT_EXCEEDED: &str = "States.DataLimitExceeded";

/// Every predefined `States.*` name, for validation of `ErrorEquals`.
pub const ALL_STATES_ERRORS: &[&str] = &[
    ALL,
    RUNTIME,
    TIMEOUT,
    TASK_FAILED,
    BRANCH_FAILED,
    NO_CHOICE_MATCHED,
    INTRINSIC_FAILURE,
    RESULT_PATH_MATCH_FAILURE,
    PARAMETER_PATH_FAILURE,
    QUERY_EVALUATION_ERROR,
    EXCEED_TOLERATED_FAILURE_THRESHOLD,
    HEARTBEAT_TIMEOUT,
    PERMISSIONS,
    ITEM_READER_FAILED,
    RESULT_WRITER_FAILED,
    DATA_LIMIT_EXCEEDED,
];

/// A runtime error as ASL raises it: the name `Retry`/`Catch` match on, and the cause text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}: {cause}")]
pub struct StatesError {
    /// Error name, e.g. `States.Runtime`.
    pub error: String,
    /// Cause text, without the "An error occurred while executing the state" prefix.
    pub cause: String,
}

impl StatesError {
    /// An error with any name.
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        StatesError {
            error: error.into(),
            cause: cause.into(),
        }
    }

    /// `States.Runtime` with `cause`.
    pub fn runtime(cause: impl Into<String>) -> Self {
        Self::new(RUNTIME, cause)
    }

    /// `States.IntrinsicFailure` with `cause`.
    pub fn intrinsic(cause: impl Into<String>) -> Self {
        Self::new(INTRINSIC_FAILURE, cause)
    }

    /// `States.QueryEvaluationError` with `cause`.
    pub fn query(cause: impl Into<String>) -> Self {
        Self::new(QUERY_EVALUATION_ERROR, cause)
    }

    /// `States.ResultPathMatchFailure` with `cause`.
    pub fn result_path(cause: impl Into<String>) -> Self {
        Self::new(RESULT_PATH_MATCH_FAILURE, cause)
    }

    /// Adds AWS's state prefix to the cause: `An error occurred while executing the state
    /// 'NAME' (entered at the event id #ID). CAUSE`. Used by the interpreter, which knows both.
    pub fn in_state(mut self, state: &str, entered_event_id: u64) -> Self {
        self.cause = format!(
            "An error occurred while executing the state '{state}' (entered at the event id #{entered_event_id}). {}",
            self.cause
        );
        self
    }
}

/// One static validation problem in a definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// JSON pointer into the definition, e.g. `/States/Foo/Parameters/bar.$`.
    pub path: String,
    /// The state the problem is in, when there is one.
    pub state: Option<String>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic at `path` (no state yet).
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            path: path.into(),
            state: None,
            message: message.into(),
        }
    }

    /// Names the state the problem is in.
    pub fn in_state(mut self, state: impl Into<String>) -> Self {
        self.state = Some(state.into());
        self
    }

    /// Prefixes the pointer with `prefix` (e.g. `/States/Foo/Parameters`), for diagnostics
    /// produced by a compiler that only knew a relative location.
    pub fn under(mut self, prefix: &str) -> Self {
        self.path = format!("{prefix}{}", self.path);
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            Some(state) => write!(f, "{}: state \"{state}\": {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// Escapes one JSON-pointer token (`~` → `~0`, `/` → `~1`, RFC 6901).
pub fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Why an expression (JSONPath, intrinsic call, JSONata) does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} '{expression}': {message}")]
pub struct SyntaxError {
    /// What was parsed: `JSONPath`, `intrinsic function`, `JSONata expression`.
    pub kind: &'static str,
    /// The expression text as written.
    pub expression: String,
    /// What is wrong, with the character offset when known.
    pub message: String,
}

impl SyntaxError {
    pub(crate) fn new(kind: &'static str, expression: &str, message: impl Into<String>) -> Self {
        SyntaxError {
            kind,
            expression: expression.to_owned(),
            message: message.into(),
        }
    }
}
