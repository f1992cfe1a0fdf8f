//! The wire: Step Functions' JSON 1.0 protocol as the AWS SDKs speak it.
//!
//! AWS Step Functions API Reference, "Making API requests" / "Common Errors": every operation
//! is a `POST /` with `X-Amz-Target: AWSStepFunctions.<Operation>` and
//! `Content-Type: application/x-amz-json-1.0`; the body is the request structure as JSON, the
//! answer the response structure. An error is HTTP 400 (client errors) or 500 with the body
//! `{"__type": "<ErrorName>", "message": "…"}`, which the SDKs turn into the operation's
//! typed exception by `__type`. Timestamps travel as epoch seconds (JSON numbers).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// The `X-Amz-Target` prefix of every Step Functions operation.
pub const TARGET_PREFIX: &str = "AWSStepFunctions.";

/// The account in ARNs unless `--account` says otherwise (the one moto and Step Functions
/// Local use too, so ARNs copied from their docs work unchanged).
pub const DEFAULT_ACCOUNT: &str = "123456789012";

/// The region of an unsigned request.
pub const DEFAULT_REGION: &str = "us-east-1";

/// An error answer: the `__type` the SDKs map to an exception, its message, its status.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub kind: &'static str,
    pub message: String,
    pub status: u16,
}

impl ApiError {
    /// A client error (HTTP 400), named as the API Reference lists it for the operation.
    pub fn client(kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
            status: 400,
        }
    }

    /// A failure of the server itself (HTTP 500, `InternalFailure` as in "Common Errors").
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError {
            kind: "InternalFailure",
            message: message.into(),
            status: 500,
        }
    }

    /// `ValidationException` (a request field breaks its documented constraint).
    pub fn validation(message: impl Into<String>) -> Self {
        ApiError::client("ValidationException", message)
    }

    pub fn body(&self) -> Value {
        json!({"__type": self.kind, "message": self.message})
    }
}

impl From<engine::EngineError> for ApiError {
    fn from(e: engine::EngineError) -> Self {
        use engine::EngineError as E;
        match e {
            E::NoExecution(arn) => ApiError::client(
                "ExecutionDoesNotExist",
                format!("Execution Does Not Exist: '{arn}'"),
            ),
            E::NoStateMachine(arn) => ApiError::client(
                "StateMachineDoesNotExist",
                format!("State Machine Does Not Exist: '{arn}'"),
            ),
            E::ExecutionExists(arn) => ApiError::client(
                "ExecutionAlreadyExists",
                format!("Execution Already Exists: '{arn}'"),
            ),
            E::InputTooLarge { .. } => ApiError::validation(e.to_string()),
            E::Definition { source, .. } => invalid_definition(&source),
            E::NotRunning(arn) => {
                ApiError::validation(format!("Execution is not running: '{arn}'"))
            }
            // The store or a replay failed: the whole error chain, so the cause is not lost.
            other @ (E::Store { .. } | E::UnexpectedEvent { .. }) => {
                let mut message = other.to_string();
                let mut source = std::error::Error::source(&other);
                while let Some(cause) = source {
                    message.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
                ApiError::internal(message)
            }
        }
    }
}

/// CreateStateMachine's `InvalidDefinition` (API Reference: "The provided Amazon States
/// Language definition is not valid"), with every diagnostic as AWS lists them: code, message
/// and the JSON pointer it is at.
pub fn invalid_definition(e: &asl::model::DefinitionError) -> ApiError {
    let problems: Vec<String> = diagnostics(e)
        .iter()
        .map(|d| {
            format!(
                "{}: {} at {}",
                d["code"].as_str().unwrap_or_default(),
                d["message"].as_str().unwrap_or_default(),
                d["location"].as_str().unwrap_or_default()
            )
        })
        .collect();
    ApiError::client(
        "InvalidDefinition",
        format!(
            "Invalid State Machine Definition: '{}'",
            problems.join(", ")
        ),
    )
}

/// ValidateStateMachineDefinition's `diagnostics` (API Reference,
/// "ValidateStateMachineDefinitionDiagnostic": severity, code, message, location).
pub fn diagnostics(e: &asl::model::DefinitionError) -> Vec<Value> {
    use asl::model::DefinitionError as D;
    match e {
        D::Json(message) => vec![json!({
            "severity": "ERROR",
            "code": "INVALID_JSON_DESCRIPTION",
            "message": message,
            "location": "",
        })],
        D::Invalid(diags) => diags
            .iter()
            .map(|d| {
                let message = match &d.state {
                    Some(state) => format!("state \"{state}\": {}", d.message),
                    None => d.message.clone(),
                };
                json!({
                    "severity": "ERROR",
                    "code": "SCHEMA_VALIDATION_FAILED",
                    "message": message,
                    "location": d.path,
                })
            })
            .collect(),
    }
}

/// The region of a SigV4-signed request: the third field of the credential scope
/// (`Credential=AKID/20240101/us-east-1/states/aws4_request`). The signature itself is not
/// checked: this is a local endpoint, and the SDKs sign with whatever credentials they have.
pub fn region_of(authorization: Option<&str>) -> String {
    authorization
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|scope| scope.split(['/', ',', ' ']).nth(2))
        .filter(|r| !r.is_empty())
        .unwrap_or(DEFAULT_REGION)
        .to_owned()
}

/// A timestamp as the JSON protocols send it: epoch seconds, millisecond precision.
pub fn epoch_seconds(t: SystemTime) -> Value {
    let millis = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as f64,
        Err(e) => -(e.duration().as_millis() as f64),
    };
    json!(millis / 1000.0)
}

/// A required string member of the request, or the `ValidationException` AWS answers.
pub fn required<'a>(request: &'a Value, member: &str) -> Result<&'a str, ApiError> {
    match request.get(member) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ApiError::validation(format!(
            "1 validation error detected: Value at '{member}' must be a string"
        ))),
        None => Err(ApiError::validation(format!(
            "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
        ))),
    }
}

/// An optional string member.
pub fn optional<'a>(request: &'a Value, member: &str) -> Result<Option<&'a str>, ApiError> {
    match request.get(member) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::validation(format!(
            "1 validation error detected: Value at '{member}' must be a string"
        ))),
    }
}

/// A resource name as the API Reference constrains it (CreateStateMachine `name`,
/// StartExecution `name`, CreateActivity `name`): 1 to 80 characters, none of whitespace,
/// `< > { } [ ]`, `? *`, `" # % \ ^ | ~ ` $ & , ; : /`, or control characters.
pub fn check_name(name: &str) -> Result<(), ApiError> {
    let bad = |c: char| {
        c.is_whitespace()
            || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(c)
            || ('\u{0}'..='\u{1f}').contains(&c)
            || ('\u{7f}'..='\u{9f}').contains(&c)
    };
    let len = name.chars().count();
    if len == 0 || len > 80 || name.chars().any(bad) {
        return Err(ApiError::client(
            "InvalidName",
            format!("Invalid Name: '{name}'"),
        ));
    }
    Ok(())
}

/// The page size of a List*/GetExecutionHistory request: `maxResults` 0 or absent is the
/// default (100), at most 1000 (API Reference, "maxResults").
pub fn page_size(request: &Value) -> Result<usize, ApiError> {
    match request.get("maxResults") {
        None | Some(Value::Null) => Ok(100),
        Some(v) => match v.as_u64() {
            Some(0) => Ok(100),
            Some(n) if n <= 1000 => Ok(n as usize),
            _ => Err(ApiError::validation(format!(
                "1 validation error detected: Value '{v}' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 1000"
            ))),
        },
    }
}

/// One page of `items` from the request's `nextToken` (an offset this server issued), and the
/// token of the next page. A token the server did not issue is `InvalidToken`.
pub fn paginate<T>(request: &Value, items: Vec<T>) -> Result<(Vec<T>, Option<String>), ApiError> {
    let size = page_size(request)?;
    let start = match optional(request, "nextToken")? {
        None => 0,
        Some(token) => token
            .strip_prefix("page-")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n <= items.len())
            .ok_or_else(|| ApiError::client("InvalidToken", format!("Invalid Token: '{token}'")))?,
    };
    let end = (start + size).min(items.len());
    let next = (end < items.len()).then(|| format!("page-{end}"));
    let page = items.into_iter().skip(start).take(end - start).collect();
    Ok((page, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_comes_from_the_credential_scope() {
        let auth = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/eu-west-3/states/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc";
        assert_eq!(region_of(Some(auth)), "eu-west-3");
        assert_eq!(region_of(None), DEFAULT_REGION);
        assert_eq!(region_of(Some("garbage")), DEFAULT_REGION);
    }

    #[test]
    fn names_follow_the_documented_constraints() {
        assert!(check_name("my-machine_1.v2").is_ok());
        for bad in ["", "a b", "a:b", "a/b", "a*", "x\u{1}", &"n".repeat(81)] {
            assert_eq!(check_name(bad).unwrap_err().kind, "InvalidName", "{bad:?}");
        }
    }

    #[test]
    fn pages_cover_every_item_once_and_reject_foreign_tokens() {
        let items: Vec<u32> = (0..5).collect();
        let req = json!({"maxResults": 2});
        let (p1, t1) = paginate(&req, items.clone()).unwrap();
        assert_eq!(p1, vec![0, 1]);
        let req2 = json!({"maxResults": 2, "nextToken": t1.unwrap()});
        let (p2, t2) = paginate(&req2, items.clone()).unwrap();
        assert_eq!(p2, vec![2, 3]);
        let (p3, t3) = paginate(
            &json!({"maxResults": 2, "nextToken": t2.unwrap()}),
            items.clone(),
        )
        .unwrap();
        assert_eq!((p3, t3), (vec![4], None));
        let err = paginate(&json!({"nextToken": "nope"}), items).unwrap_err();
        assert_eq!(err.kind, "InvalidToken");
    }
}
