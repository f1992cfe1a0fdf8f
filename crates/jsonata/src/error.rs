//! The one error type of parsing and evaluation.
//!
//! A [`JsonataError`] carries the JSONata error code as a field (`T0410`, `D3030`, ... as the
//! reference implementation assigns them, when it has one for the case) apart from the
//! message, so callers match on [`JsonataError::code`] instead of reading a text prefix.
//! Its `Display` is the text users see inside `States.QueryEvaluationError` causes and
//! definition diagnostics, `"<code>: <message>"` (or the message alone when there is no
//! code), unchanged from when errors were strings: the conformance corpus records it.

use std::fmt;

/// A JSONata error code: one uppercase letter (S syntax, T type, D dynamic, U fleetprep's
/// resource limits) and four digits, as jsonata-js numbers its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(&'static str);

impl ErrorCode {
    /// The code for `code`; a code not of the form `X9999` does not compile in a constant
    /// context and panics otherwise (a programming error, never input-dependent).
    pub const fn new(code: &'static str) -> ErrorCode {
        let b = code.as_bytes();
        assert!(b.len() == 5 && b[0].is_ascii_uppercase());
        let mut i = 1;
        while i < 5 {
            assert!(b[i].is_ascii_digit());
            i += 1;
        }
        ErrorCode(code)
    }

    /// The code as jsonata-js writes it, e.g. `"T0410"`.
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Why an expression does not parse or could not be evaluated.
///
/// One pointer wide (the details are boxed): errors travel up the evaluator's and the parser's
/// recursion in every `Result`, whose frames the depth limits are sized for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonataError(Box<Details>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Details {
    code: Option<ErrorCode>,
    message: String,
    position: Option<usize>,
}

impl JsonataError {
    /// An error with a JSONata code.
    pub fn coded(code: ErrorCode, message: impl Into<String>) -> JsonataError {
        JsonataError(Box::new(Details {
            code: Some(code),
            message: message.into(),
            position: None,
        }))
    }

    /// An error the reference implementation has no code for.
    pub fn uncoded(message: impl Into<String>) -> JsonataError {
        JsonataError(Box::new(Details {
            code: None,
            message: message.into(),
            position: None,
        }))
    }

    /// The same error at character offset `position` of the expression.
    pub fn at(mut self, position: usize) -> JsonataError {
        self.0.position = Some(position);
        self
    }

    /// The same error under another code (the message stays).
    pub fn with_code(mut self, code: ErrorCode) -> JsonataError {
        self.0.code = Some(code);
        self
    }

    /// The JSONata code, when the reference implementation has one for this error; `None` for
    /// errors it does not name (some syntax errors, the Step Functions functions' own checks).
    pub fn code(&self) -> Option<ErrorCode> {
        self.0.code
    }

    /// True when the error has code `code` (given as text, e.g. `"T2008"`).
    pub fn has_code(&self, code: &str) -> bool {
        self.0.code.is_some_and(|c| c.as_str() == code)
    }

    /// What went wrong (without the code), as users read it.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The character offset in the expression text, for syntax errors that know it (the
    /// message names it too).
    pub fn position(&self) -> Option<usize> {
        self.0.position
    }
}

impl fmt::Display for JsonataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.code {
            Some(code) => write!(f, "{code}: {}", self.0.message),
            None => f.write_str(&self.0.message),
        }
    }
}

impl std::error::Error for JsonataError {}

impl From<String> for JsonataError {
    fn from(message: String) -> JsonataError {
        JsonataError::uncoded(message)
    }
}

impl From<&str> for JsonataError {
    fn from(message: &str) -> JsonataError {
        JsonataError::uncoded(message)
    }
}

/// `err!(T0410, "text {}", x)`: a [`JsonataError`] with that code and formatted message.
macro_rules! err {
    ($code:ident, $($fmt:tt)+) => {
        $crate::error::JsonataError::coded(
            $crate::error::ErrorCode::new(stringify!($code)),
            format!($($fmt)+),
        )
    };
}
pub(crate) use err;

/// `uncoded!("text {}", x)`: a [`JsonataError`] without a code (see [`JsonataError::uncoded`]).
macro_rules! uncoded {
    ($($fmt:tt)+) => {
        $crate::error::JsonataError::uncoded(format!($($fmt)+))
    };
}
pub(crate) use uncoded;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_code_colon_message_or_the_message_alone() {
        assert_eq!(
            err!(
                T0410,
                "Argument {} of function {} does not match",
                1,
                "$sum"
            )
            .to_string(),
            "T0410: Argument 1 of function $sum does not match"
        );
        let e = JsonataError::uncoded("unexpected token at offset 3").at(3);
        assert_eq!(e.to_string(), "unexpected token at offset 3");
        assert_eq!(e.position(), Some(3));
        assert_eq!(
            std::mem::size_of::<JsonataError>(),
            std::mem::size_of::<usize>()
        );
        assert!(err!(D3070, "x").has_code("D3070"));
        assert!(!JsonataError::uncoded("x").has_code("D3070"));
    }

    #[test]
    #[should_panic]
    fn a_malformed_code_is_refused() {
        let _ = ErrorCode::new(std::hint::black_box("t0410"));
    }
}
