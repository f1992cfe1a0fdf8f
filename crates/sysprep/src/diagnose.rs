//! Failure diagnosis: Sysprep's Panther logs and the EC2 console output, classified.
//!
//! The input is streamed line by line ([`Diagnoser::read_log`] takes any `BufRead`), lines are
//! capped at [`MAX_LINE_BYTES`] and only a bounded number of evidence lines is kept, so a
//! log of hundreds of megabytes is diagnosed in constant memory.
//!
//! Panther lines look like (setupact.log / setuperr.log):
//!
//! ```text
//! 2024-03-12 14:02:17, Error      [0x0f0082] SYSPRP ActionPlatform::LaunchModule: Failure occurred while executing 'SysprepGeneralizeValidate' from C:\Windows\System32\AppxSysprep.dll; dwRet = 0x3cf2
//! ```
//!
//! that is: timestamp, level, an optional `[0x......]` Sysprep error code, the component
//! (`SYSPRP`, `[shell unattend]`, ...) and the message, often ending in an HRESULT.
//!
//! The category names are API (the workflows' `Fail` errors and the CLI print them); see
//! [`Category`].

use std::io::{self, BufRead};

use serde::{Deserialize, Serialize};

use crate::agent::ImageState;

/// Longer lines are cut (the rest is skipped, not buffered).
pub const MAX_LINE_BYTES: usize = 4096;
/// Evidence lines kept per category.
pub const MAX_EVIDENCE: usize = 12;

/// What went wrong. The serialized names are fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// An AppX package is installed for a user but not provisioned for all users.
    AppxNotProvisioned,
    /// No Windows rearms left (0xC004D307) and SkipRearm not set.
    RearmLimit,
    /// The CopyProfile step of specialize failed.
    #[serde(rename = "copyprofile-failed")]
    CopyprofileFailed,
    /// "Sysprep was not able to validate your Windows installation".
    ValidationFailed,
    /// A Windows or third-party Sysprep provider failed (licensing, Defender cleanup, ...).
    ProviderFailure,
    /// BitLocker protects the OS volume: `ValidateBitLockerState` in BdeSysprep.dll fails with
    /// 0x80310039 ("Troubleshoot Sysprep with Amazon EC2 Windows instances").
    BitlockerEnabled,
    /// Sysprep could not parse or process the answer file (0x80220005).
    UnattendInvalid,
    /// The SSM agent never came (back) online.
    AgentUnreachable,
    /// Sysprep did not finish in time and the logs show no cause.
    Timeout,
    /// Nothing known matched; read the evidence.
    Unknown,
}

impl Category {
    /// Every category, in the order the issue lists them.
    pub const ALL: [Category; 10] = [
        Category::AppxNotProvisioned,
        Category::CopyprofileFailed,
        Category::RearmLimit,
        Category::ProviderFailure,
        Category::ValidationFailed,
        Category::BitlockerEnabled,
        Category::UnattendInvalid,
        Category::AgentUnreachable,
        Category::Timeout,
        Category::Unknown,
    ];

    /// The fixed name (`appx-not-provisioned`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Category::AppxNotProvisioned => "appx-not-provisioned",
            Category::CopyprofileFailed => "copyprofile-failed",
            Category::RearmLimit => "rearm-limit",
            Category::ProviderFailure => "provider-failure",
            Category::ValidationFailed => "validation-failed",
            Category::BitlockerEnabled => "bitlocker-enabled",
            Category::UnattendInvalid => "unattend-invalid",
            Category::AgentUnreachable => "agent-unreachable",
            Category::Timeout => "timeout",
            Category::Unknown => "unknown",
        }
    }

    /// Whether baking again from the same source can succeed without a fix. A provider
    /// failure is not: its remedy is updating or removing the software that registered it.
    pub fn retriable(self) -> bool {
        matches!(self, Category::AgentUnreachable | Category::Timeout)
    }

    /// What to do about it.
    pub fn remediation(self) -> &'static str {
        match self {
            Category::AppxNotProvisioned => {
                "remove the listed AppX packages for all users (Remove-AppxPackage -AllUsers) or provision them, then bake again; keep the builder off the Microsoft Store"
            }
            Category::CopyprofileFailed => {
                "set copy_profile = false, or clean the administrator profile before Sysprep (no per-user AppX state, no redirected folders)"
            }
            Category::RearmLimit => {
                "no Windows rearms are left (0xC004D307): rebuild the builder from a fresh AWS AMI; SkipRearm=1 is only for images that are not for production (KB929828)"
            }
            Category::ProviderFailure => {
                "a Sysprep provider DLL failed (see the evidence): update or remove the software that registered it (antivirus, licensing agents), then bake again"
            }
            Category::ValidationFailed => {
                "Sysprep refused this installation: reboot to finish pending updates, do not Sysprep an in-place-upgraded OS, and check setuperr.log for the failed check"
            }
            Category::BitlockerEnabled => {
                "BitLocker protects the OS volume and Sysprep cannot generalize it: decrypt it (Disable-BitLocker -MountPoint $env:SystemDrive), wait for FullyDecrypted, then bake again (or enable [bake.remediation] bitlocker)"
            }
            Category::UnattendInvalid => {
                "Sysprep could not parse or process the answer file: check it with `fleetprep unattend render --base` against the agent's file, and look in setupact.log for the setting it rejected"
            }
            Category::AgentUnreachable => {
                "the instance never reported back: check the console output, the SSM agent and the builder's instance profile and network path to SSM, then bake again"
            }
            Category::Timeout => {
                "Sysprep did not finish in time: raise the bake deadline for large images, or fetch the Panther logs from the volume to find where it stopped"
            }
            Category::Unknown => {
                "no known failure pattern matched: read setupact.log and setuperr.log under C:\\Windows\\System32\\Sysprep\\Panther"
            }
        }
    }

    /// Higher wins when several categories match: the most specific cause first.
    fn priority(self) -> u8 {
        match self {
            Category::AppxNotProvisioned => 8,
            Category::BitlockerEnabled => 7,
            Category::RearmLimit => 6,
            Category::CopyprofileFailed => 5,
            Category::UnattendInvalid => 4,
            Category::ValidationFailed => 3,
            Category::ProviderFailure => 2,
            Category::AgentUnreachable | Category::Timeout | Category::Unknown => 0,
        }
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The classified result, as the CLI prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// The category (one of the fixed names).
    pub category: Category,
    /// Whether baking again without a fix can succeed ([`Category::retriable`]).
    pub retriable: bool,
    /// The decisive lines, verbatim (trimmed, capped in length).
    pub evidence: Vec<String>,
    /// What to do about it.
    pub remediation: String,
}

/// What the workflow knows besides the logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DiagnosisContext {
    /// The workflow gave up waiting (for SSM, for `stopped`).
    pub timed_out: bool,
    /// Whether SSM reported the agent online when diagnostics were collected.
    pub agent_online: Option<bool>,
}

/// How far Sysprep got, from console markers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// "Windows sysprep configuration complete" seen on the console.
    pub sysprep_configuration_complete: bool,
    /// "Windows is Ready to use" seen on the console.
    pub windows_ready: bool,
    /// The last `IMAGE_STATE_*` seen (console `SysprepState=...` or a log line).
    pub image_state: Option<ImageState>,
    /// Lines read from the Panther log and the console.
    pub log_lines: u64,
    /// Non-empty console lines read.
    pub console_lines: u64,
    /// Error-level Panther lines.
    pub error_lines: u64,
}

/// Level of a Panther line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `Info`.
    Info,
    /// `Warning`.
    Warning,
    /// `Error`.
    Error,
    /// Anything else (or not a Panther line).
    Other,
}

/// One parsed Panther line (borrowing from the input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PantherLine<'a> {
    /// `YYYY-MM-DD HH:MM:SS`.
    pub timestamp: Option<&'a str>,
    /// The level word.
    pub level: Level,
    /// The `[0x0f0082]` Sysprep code, without brackets.
    pub code: Option<&'a str>,
    /// `SYSPRP`, `[shell unattend]`, ...
    pub component: Option<&'a str>,
    /// The rest of the line.
    pub message: &'a str,
}

/// Splits a Panther line; anything that does not look like one is all message.
pub fn parse_panther_line(line: &str) -> PantherLine<'_> {
    let plain = PantherLine {
        timestamp: None,
        level: Level::Other,
        code: None,
        component: None,
        message: line,
    };
    // "YYYY-MM-DD HH:MM:SS, " is 21 bytes.
    let Some((timestamp, rest)) = line.split_once(", ") else {
        return plain;
    };
    let ts = timestamp.as_bytes();
    if ts.len() != 19 || !ts[0].is_ascii_digit() || ts[4] != b'-' || ts[13] != b':' {
        return plain;
    }
    let rest = rest.trim_start();
    let (level_word, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let level = match level_word {
        "Info" => Level::Info,
        "Warning" => Level::Warning,
        "Error" => Level::Error,
        _ => Level::Other,
    };
    let mut rest = rest.trim_start();
    let mut code = None;
    if let Some(after) = rest.strip_prefix("[0x")
        && let Some(end) = after.find(']')
    {
        code = Some(&rest[1..end + 3]);
        rest = after[end + 1..].trim_start();
    }
    // Components are one token ("SYSPRP") or bracketed ("[shell unattend]").
    let (component, message) = if rest.starts_with('[') {
        match rest.find(']') {
            Some(end) => (Some(&rest[..=end]), rest[end + 1..].trim_start()),
            None => (None, rest),
        }
    } else {
        match rest.split_once(char::is_whitespace) {
            Some((component, message))
                if component
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) =>
            {
                (Some(component), message.trim_start())
            }
            _ => (None, rest),
        }
    };
    PantherLine {
        timestamp: Some(timestamp),
        level,
        code,
        component,
        message,
    }
}

fn contains_ci(haystack: &str, needle: &str) -> bool {
    // std's lowercase and substring search are optimized even in debug builds, which keeps
    // huge logs fast in tests; needles are ASCII.
    haystack
        .to_ascii_lowercase()
        .contains(&needle.to_ascii_lowercase())
}

/// The category a single log line is evidence for, if any.
fn classify_log_line(line: &PantherLine<'_>) -> Option<Category> {
    let m = line.message.to_ascii_lowercase();
    let has = |needle: &str| m.contains(needle);
    if line.level == Level::Info {
        // Almost every line of a huge log is Info; only Sysprep's own summary sentence
        // matters there, so skip the other patterns (this keeps big logs fast).
        return has("not able to validate your windows installation")
            .then_some(Category::ValidationFailed);
    }
    let failing = line.level == Level::Error || has("fail") || has("error");
    if has("was installed for a user, but not provisioned for all users")
        || (failing && has("appxsysprep.dll"))
        || has("0x80073cf2")
    {
        return Some(Category::AppxNotProvisioned);
    }
    // "Troubleshoot Sysprep with Amazon EC2 Windows instances": BitLocker on the OS volume
    // fails the BdeSysprep.dll provider's ValidateBitLockerState with 0x80310039.
    if has("0x80310039") || (failing && (has("validatebitlockerstate") || has("bdesysprep.dll"))) {
        return Some(Category::BitlockerEnabled);
    }
    // The HRESULT decides: "could not parse or process unattend answer file" is also what a
    // failed specialize setting (CopyProfile, 0x80070005) leaves behind.
    if has("0x80220005") {
        return Some(Category::UnattendInvalid);
    }
    if has("0xc004d307")
        || (failing && has("slrearmwindows"))
        || has("maximum allowed number of re-arms")
    {
        return Some(Category::RearmLimit);
    }
    if failing && has("copyprofile") {
        return Some(Category::CopyprofileFailed);
    }
    if has("not able to validate your windows installation")
        || has("sysprep will not run on an upgraded os")
        || (failing && has("sysprep_clean_validate_opk"))
        || has("require a reboot")
    {
        return Some(Category::ValidationFailed);
    }
    if line.level == Level::Error
        && (has("failure occurred while executing")
            || has("error in executing action")
            || has("sysprep_generalize"))
    {
        return Some(Category::ProviderFailure);
    }
    None
}

/// Finds `IMAGE_STATE_[A-Z_]+` in a line.
fn image_state_in(line: &str) -> Option<ImageState> {
    let start = line.find("IMAGE_STATE_")?;
    let rest = &line[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
        .unwrap_or(rest.len());
    Some(ImageState::from(rest[..end].to_owned()))
}

/// Accumulates evidence from streamed logs; [`Diagnoser::finish`] classifies.
#[derive(Debug, Default)]
pub struct Diagnoser {
    // Invariant: each Vec holds at most MAX_EVIDENCE lines.
    evidence: Vec<(Category, Vec<String>)>,
    last_errors: Vec<String>,
    last_log_line: Option<String>,
    console_evidence: Vec<String>,
    progress: Progress,
}

fn push_bounded(lines: &mut Vec<String>, line: &str) {
    if lines.len() < MAX_EVIDENCE {
        lines.push(line.to_owned());
    }
}

impl Diagnoser {
    /// An empty diagnoser.
    pub fn new() -> Self {
        Self::default()
    }

    /// What the console markers say so far.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// One line of setupact.log / setuperr.log.
    pub fn feed_log_line(&mut self, raw: &str) {
        let line = raw.trim();
        if line.is_empty() {
            return;
        }
        self.progress.log_lines += 1;
        match &mut self.last_log_line {
            Some(last) => {
                last.clear();
                last.push_str(line);
            }
            None => self.last_log_line = Some(line.to_owned()),
        }
        let parsed = parse_panther_line(line);
        if parsed.level == Level::Error {
            self.progress.error_lines += 1;
            // Keep the most recent errors for `unknown`: the last ones are nearest the stop.
            if self.last_errors.len() == MAX_EVIDENCE {
                self.last_errors.remove(0);
            }
            self.last_errors.push(line.to_owned());
        }
        if let Some(state) = image_state_in(line) {
            self.progress.image_state = Some(state);
        }
        if let Some(category) = classify_log_line(&parsed) {
            match self.evidence.iter_mut().find(|(c, _)| *c == category) {
                Some((_, lines)) => push_bounded(lines, line),
                None => self.evidence.push((category, vec![line.to_owned()])),
            }
        }
    }

    /// One line of EC2 console output.
    pub fn feed_console_line(&mut self, raw: &str) {
        let line = raw.trim();
        if line.is_empty() {
            return;
        }
        self.progress.console_lines += 1;
        if contains_ci(line, "Windows sysprep configuration complete") {
            self.progress.sysprep_configuration_complete = true;
            push_bounded(&mut self.console_evidence, line);
        }
        if contains_ci(line, "Windows is Ready to use") {
            self.progress.windows_ready = true;
        }
        if let Some(state) = image_state_in(line) {
            self.progress.image_state = Some(state);
            push_bounded(&mut self.console_evidence, line);
        }
    }

    /// Streams a Panther log.
    pub fn read_log<R: BufRead>(&mut self, reader: R) -> io::Result<()> {
        for_each_line(reader, |line| self.feed_log_line(line))
    }

    /// Streams console output.
    pub fn read_console<R: BufRead>(&mut self, reader: R) -> io::Result<()> {
        for_each_line(reader, |line| self.feed_console_line(line))
    }

    /// The classification: decisive log evidence first, then what the workflow observed.
    pub fn finish(self, context: &DiagnosisContext) -> Diagnosis {
        let decisive = self
            .evidence
            .into_iter()
            .max_by_key(|(category, _)| category.priority());
        let (category, evidence) = match decisive {
            Some((category, lines)) => (category, lines),
            None => {
                // `SysprepState=IMAGE_STATE_UNDEPLOYABLE` is what every healthy EC2Launch v2 boot
                // prints while Windows is being configured ("Troubleshoot EC2Launch v2", sample
                // console output), so the console state alone decides nothing.
                if context.agent_online == Some(false) {
                    (Category::AgentUnreachable, self.console_evidence)
                } else if context.timed_out {
                    // Where Sysprep stopped is the most useful thing to show.
                    let mut lines = self.console_evidence;
                    lines.extend(self.last_errors);
                    lines.extend(self.last_log_line);
                    lines.truncate(MAX_EVIDENCE);
                    (Category::Timeout, lines)
                } else {
                    let mut lines = self.last_errors;
                    lines.extend(self.console_evidence);
                    lines.truncate(MAX_EVIDENCE);
                    (Category::Unknown, lines)
                }
            }
        };
        Diagnosis {
            category,
            retriable: category.retriable(),
            evidence,
            remediation: category.remediation().to_owned(),
        }
    }
}

/// Classifies a Panther log and optional console output (both streamed).
pub fn diagnose<L: BufRead, C: BufRead>(
    log: Option<L>,
    console: Option<C>,
    context: &DiagnosisContext,
) -> io::Result<Diagnosis> {
    let mut diagnoser = Diagnoser::new();
    if let Some(log) = log {
        diagnoser.read_log(log)?;
    }
    if let Some(console) = console {
        diagnoser.read_console(console)?;
    }
    Ok(diagnoser.finish(context))
}

/// Calls `f` with each line of `reader`, decoded leniently: invalid UTF-8 is replaced, NUL
/// bytes are dropped (a UTF-16LE log of ASCII text reads as its text), and a line longer than
/// [`MAX_LINE_BYTES`] is cut there without buffering the rest.
pub fn for_each_line<R: BufRead, F: FnMut(&str)>(mut reader: R, mut f: F) -> io::Result<()> {
    let mut line: Vec<u8> = Vec::with_capacity(256);
    let mut overflow = false;
    loop {
        let buffer = match reader.fill_buf() {
            Ok(buffer) => buffer,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buffer.is_empty() {
            if !line.is_empty() {
                emit(&line, &mut f);
            }
            return Ok(());
        }
        let (chunk, newline) = match buffer.iter().position(|&b| b == b'\n') {
            Some(i) => (&buffer[..i], Some(i)),
            None => (buffer, None),
        };
        if !overflow {
            let room = MAX_LINE_BYTES.saturating_sub(line.len());
            let take = &chunk[..chunk.len().min(room)];
            if take.contains(&0) {
                line.extend(take.iter().filter(|&&b| b != 0));
            } else {
                line.extend_from_slice(take);
            }
            overflow = chunk.len() > room;
        }
        let used = match newline {
            Some(i) => i + 1,
            None => chunk.len(),
        };
        reader.consume(used);
        if newline.is_some() {
            emit(&line, &mut f);
            line.clear();
            overflow = false;
        }
    }
}

fn emit<F: FnMut(&str)>(line: &[u8], f: &mut F) {
    let text = String::from_utf8_lossy(line);
    f(text.trim_start_matches('\u{feff}').trim_end_matches('\r'));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_panther_lines() {
        let line = parse_panther_line(
            "2024-03-12 14:02:17, Error      [0x0f0082] SYSPRP ActionPlatform::LaunchModule: Failure occurred while executing 'SLReArmWindows' from C:\\Windows\\System32\\slc.dll; dwRet = 0xc004d307",
        );
        assert_eq!(line.timestamp, Some("2024-03-12 14:02:17"));
        assert_eq!(line.level, Level::Error);
        assert_eq!(line.code, Some("0x0f0082"));
        assert_eq!(line.component, Some("SYSPRP"));
        assert!(line.message.starts_with("ActionPlatform::LaunchModule"));

        let shell = parse_panther_line(
            "2024-03-12 14:20:01, Info                  [shell unattend] Running 'specialize' pass",
        );
        assert_eq!(shell.component, Some("[shell unattend]"));
        assert_eq!(shell.level, Level::Info);
        assert_eq!(shell.message, "Running 'specialize' pass");

        let junk = parse_panther_line("not, a panther line");
        assert_eq!(junk.level, Level::Other);
        assert_eq!(junk.message, "not, a panther line");
    }

    #[test]
    fn lines_are_capped_and_nuls_dropped() {
        let mut long = vec![b'x'; MAX_LINE_BYTES * 3];
        long.extend_from_slice(b"\nshort\r\nl\0a\0s\0t");
        let mut lines = Vec::new();
        for_each_line(&long[..], |l| lines.push(l.to_owned())).unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].len(), MAX_LINE_BYTES);
        assert_eq!(lines[1], "short");
        assert_eq!(lines[2], "last");
    }

    #[test]
    fn small_buffers_split_lines_correctly() {
        let text = "one\ntwo two\nthree";
        let reader = io::BufReader::with_capacity(2, text.as_bytes());
        let mut lines = Vec::new();
        for_each_line(reader, |l| lines.push(l.to_owned())).unwrap();
        assert_eq!(lines, vec!["one", "two two", "three"]);
    }

    #[test]
    fn context_decides_when_logs_say_nothing() {
        let finish = |context: DiagnosisContext, console: &str| {
            let mut d = Diagnoser::new();
            d.feed_log_line("2024-03-12 14:02:17, Info                  SYSPRP Sysprep starting");
            for line in console.lines() {
                d.feed_console_line(line);
            }
            d.finish(&context).category
        };
        assert_eq!(finish(DiagnosisContext::default(), ""), Category::Unknown);
        assert_eq!(
            finish(
                DiagnosisContext {
                    timed_out: true,
                    agent_online: None
                },
                ""
            ),
            Category::Timeout
        );
        assert_eq!(
            finish(
                DiagnosisContext {
                    timed_out: true,
                    agent_online: Some(false)
                },
                ""
            ),
            Category::AgentUnreachable
        );
        // Printed by every healthy EC2Launch v2 boot ("Troubleshoot EC2Launch v2").
        assert_eq!(
            finish(
                DiagnosisContext::default(),
                "2024/03/12 14:30:00Z: Windows is being configured. SysprepState=IMAGE_STATE_UNDEPLOYABLE"
            ),
            Category::Unknown
        );
    }

    #[test]
    fn category_names_are_the_documented_ones() {
        let names: Vec<String> = Category::ALL
            .iter()
            .map(|c| {
                serde_json::to_value(c)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            names,
            [
                "appx-not-provisioned",
                "copyprofile-failed",
                "rearm-limit",
                "provider-failure",
                "validation-failed",
                "bitlocker-enabled",
                "unattend-invalid",
                "agent-unreachable",
                "timeout",
                "unknown"
            ]
        );
        for c in Category::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
    }
}
