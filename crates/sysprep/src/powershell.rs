//! Quoting values into generated PowerShell.
//!
//! Every value fleetprep puts into a script goes through [`quote`], which emits a
//! *single-quoted* (verbatim) string: PowerShell expands nothing inside single quotes — no
//! `$var`, no `$(...)`, no backtick escapes — and the only character that ends the string is a
//! single quote, which is written twice to stand for itself (about_Quoting_Rules). PowerShell
//! also accepts the typographic quotes U+2018..U+201B as single quotes, so those are doubled
//! too. Newlines are legal inside a single-quoted string and stay literal. Other control
//! characters are spliced in as `[char]0xNN` (see [`quote`]).

/// Characters PowerShell's tokenizer treats as a single quote (`'` and U+2018..U+201B).
const SINGLE_QUOTES: [char; 5] = ['\'', '\u{2018}', '\u{2019}', '\u{201A}', '\u{201B}'];

/// `value` as a PowerShell expression that evaluates to exactly `value`: a single-quoted
/// literal, or — when `value` holds control characters other than tab, CR and LF, which
/// cannot be written inside a literal reliably (NUL ends PowerShell's tokenizer) — a
/// parenthesized concatenation of literals and `[char]0xNN` values.
pub fn quote(value: &str) -> String {
    if !value.chars().any(needs_char_code) {
        return literal(value);
    }
    let mut parts = Vec::new();
    let mut run = String::new();
    for ch in value.chars() {
        if needs_char_code(ch) {
            if !run.is_empty() {
                parts.push(literal(&run));
                run.clear();
            }
            parts.push(format!("[char]0x{:X}", u32::from(ch)));
        } else {
            run.push(ch);
        }
    }
    if !run.is_empty() {
        parts.push(literal(&run));
    }
    // A leading '' keeps `+` string concatenation even when the value starts with a char.
    format!("('' + {})", parts.join(" + "))
}

fn needs_char_code(ch: char) -> bool {
    ch.is_control() && !matches!(ch, '\t' | '\n' | '\r')
}

fn literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for ch in value.chars() {
        if SINGLE_QUOTES.contains(&ch) {
            // Doubling with the same character keeps the value byte-for-byte.
            out.push(ch);
        }
        out.push(ch);
    }
    out.push('\'');
    out
}

/// Why a value cannot be used as a Windows path in a generated command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?}: {reason}")]
pub struct PathError {
    /// Which option held the path.
    pub what: &'static str,
    /// The path as given.
    pub value: String,
    /// Why it was rejected.
    pub reason: String,
}

/// Checks a Windows path that ends up in a native program's argument list. Quoting protects
/// PowerShell, but a native argument with `"` would be re-split by the program's C runtime,
/// and Windows forbids these characters in paths anyway ("Naming Files, Paths, and
/// Namespaces").
pub fn check_windows_path(what: &'static str, value: &str) -> Result<(), PathError> {
    let error = |reason: &str| PathError {
        what,
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    if value.is_empty() {
        return Err(error("a path cannot be empty"));
    }
    if let Some(ch) = value
        .chars()
        .find(|c| c.is_control() || matches!(c, '"' | '<' | '>' | '|' | '?' | '*'))
    {
        return Err(error(&format!(
            "character {ch:?} is not allowed in a Windows path"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_doubled_and_nothing_else_changes() {
        assert_eq!(quote("plain"), "'plain'");
        assert_eq!(quote("it's"), "'it''s'");
        assert_eq!(quote("$(calc)`n\"x\""), "'$(calc)`n\"x\"'");
        assert_eq!(quote("a\u{2019}b"), "'a\u{2019}\u{2019}b'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a\0b"), "('' + 'a' + [char]0x0 + 'b')");
        assert_eq!(quote("\u{1b}"), "('' + [char]0x1B)");
    }

    #[test]
    fn paths_reject_quote_and_wildcards() {
        assert!(check_windows_path("p", r"C:\Windows\Panther\unattend.xml").is_ok());
        assert!(check_windows_path("p", r"C:\My Files\u.xml").is_ok());
        for bad in ["", "C:\\a\"b", "C:\\a|b", "C:\\a\nb", "C:\\*"] {
            assert!(check_windows_path("p", bad).is_err(), "{bad:?}");
        }
    }
}
