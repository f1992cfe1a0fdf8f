//! Fetching Sysprep's Panther logs while SSM is still online, and classifying them.
//!
//! Where the logs are ("Troubleshoot Sysprep with Amazon EC2 Windows instances"; Microsoft
//! "Deployment Troubleshooting and Log Files"): `%WINDIR%\System32\Sysprep\Panther` for the
//! generalize pass Sysprep runs, `%WINDIR%\Panther` for specialize and OOBE, and
//! `%WINDIR%\Panther\UnattendGC` for the oobeSystem pass; each holds `setupact.log` (every
//! action) and `setuperr.log` (errors only).
//!
//! [`collection_script`] reads only the tail of each file (a `FileStream` seek, never the
//! whole file: setupact.log grows to hundreds of megabytes) and prints each tail after a
//! marked header line. The tails together stay under the 24,000 characters of standard output
//! that SSM GetCommandInvocation returns (`StandardOutputContent`). [`diagnose_output`]
//! streams the tails through [`crate::diagnose::Diagnoser`].

use serde::{Deserialize, Serialize};

use crate::diagnose::{Diagnoser, Diagnosis, DiagnosisContext};

/// The marker of each file's header line.
pub const PANTHER_MARKER: &str = "FLEETPREP-PANTHER:";

/// Bytes read from the end of each log: six files stay under SSM's 24,000-character output.
pub const TAIL_BYTES: u64 = 3500;
// Invariant: every tail fits in GetCommandInvocation's 24,000 characters of standard output.
const _: () = assert!((FOLDERS.len() * FILES.len()) as u64 * TAIL_BYTES < 24_000);

/// The Panther folders, relative to `%WINDIR%`, in the order Sysprep's passes write them.
pub const FOLDERS: [&str; 3] = [
    r"System32\Sysprep\Panther",
    r"Panther",
    r"Panther\UnattendGC",
];

/// The log files in each folder.
pub const FILES: [&str; 2] = ["setupact.log", "setuperr.log"];

/// The PowerShell that prints the tail of every Panther log that exists.
pub fn collection_script() -> String {
    let folders: Vec<String> = FOLDERS
        .iter()
        .map(|f| crate::powershell::quote(f))
        .collect();
    let files: Vec<String> = FILES.iter().map(|f| crate::powershell::quote(f)).collect();
    format!(
        r#"# fleetprep: the tail of each Sysprep Panther log (bounded; never the whole file).
$ErrorActionPreference = 'Stop'
$tailBytes = {TAIL_BYTES}
foreach ($folder in @({folders})) {{
    foreach ($file in @({files})) {{
        $path = Join-Path (Join-Path $env:WINDIR $folder) $file
        if (-not (Test-Path -LiteralPath $path)) {{ continue }}
        # Sysprep may still hold the file open: share it for reading and writing.
        $stream = New-Object System.IO.FileStream($path, [System.IO.FileMode]::Open, [System.IO.FileAccess]::Read, [System.IO.FileShare]::ReadWrite)
        try {{
            $length = $stream.Length
            $start = [Math]::Max([long]0, $length - $tailBytes)
            [void]$stream.Seek($start, [System.IO.SeekOrigin]::Begin)
            $buffer = New-Object byte[] ([int]($length - $start))
            $read = $stream.Read($buffer, 0, $buffer.Length)
        }} finally {{
            $stream.Dispose()
        }}
        # UTF-16 logs of ASCII text read as text once the NUL bytes are dropped.
        $text = [System.Text.Encoding]::UTF8.GetString($buffer, 0, $read).Replace([string][char]0, '')
        $header = [ordered]@{{ path = $path; bytes = $length; tailBytes = $read }}
        Write-Output ('{PANTHER_MARKER}' + ($header | ConvertTo-Json -Compress))
        Write-Output $text
    }}
}}
"#,
        folders = folders.join(", "),
        files = files.join(", "),
    )
}

/// One log's tail as the script printed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogTail {
    /// The file, e.g. `C:\Windows\System32\Sysprep\Panther\setupact.log`.
    pub path: String,
    /// The file's whole size.
    pub bytes: u64,
    /// How many bytes of its end were read.
    pub tail_bytes: u64,
    /// The tail's lines; the first is dropped when the tail starts mid-line.
    #[serde(skip)]
    pub lines: Vec<String>,
}

/// Splits the script's output into the logs it found (none when no Panther log exists).
/// Lines before the first header and headers that do not parse are ignored.
pub fn parse_output(output: &str) -> Vec<LogTail> {
    let mut logs: Vec<LogTail> = Vec::new();
    for line in output.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(json) = line.trim_start().strip_prefix(PANTHER_MARKER) {
            if let Ok(tail) = serde_json::from_str::<LogTail>(json) {
                logs.push(tail);
            }
            continue;
        }
        if let Some(current) = logs.last_mut() {
            // A tail that starts inside the file starts mid-line: drop that partial line.
            if current.lines.is_empty() && current.tail_bytes < current.bytes && !line.is_empty() {
                current.lines.push(String::new());
                continue;
            }
            current.lines.push(line.to_owned());
        }
    }
    for log in &mut logs {
        log.lines.retain(|l| !l.trim().is_empty());
    }
    logs
}

/// Classifies the fetched logs (and the console output, if any).
pub fn diagnose_output(output: &str, console: &str, context: &DiagnosisContext) -> Diagnosis {
    let mut diagnoser = Diagnoser::new();
    for log in parse_output(output) {
        for line in &log.lines {
            diagnoser.feed_log_line(line);
        }
    }
    for line in console.lines() {
        diagnoser.feed_console_line(line);
    }
    diagnoser.finish(context)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::Category;

    /// Issue 10, bug 1: every documented Panther folder and both logs are read, by a bounded
    /// tail.
    #[test]
    fn the_script_reads_a_bounded_tail_of_every_panther_log() {
        let script = collection_script();
        for folder in [
            "'System32\\Sysprep\\Panther'",
            "'Panther'",
            "'Panther\\UnattendGC'",
        ] {
            assert!(script.contains(folder), "{folder}");
        }
        assert!(script.contains("'setupact.log', 'setuperr.log'"));
        assert!(script.contains("$stream.Seek($start"));
        assert!(!script.contains("Get-Content"), "never loads a whole file");
    }

    #[test]
    fn fetched_tails_are_classified() {
        let output = format!(
            "{PANTHER_MARKER}{{\"path\":\"C:\\\\Windows\\\\System32\\\\Sysprep\\\\Panther\\\\setupact.log\",\"bytes\":900000,\"tailBytes\":3500}}\n\
             Sysprep_Generalize_Bcd' from C:\\Windows\\System32\\spbcd.dll\n\
             2024-03-12 14:02:17, Info                  SYSPRP Sysprep starting\n\
             {PANTHER_MARKER}{{\"path\":\"C:\\\\Windows\\\\System32\\\\Sysprep\\\\Panther\\\\setuperr.log\",\"bytes\":310,\"tailBytes\":310}}\n\
             2024-03-12 14:02:17, Error                 SYSPRP Package Microsoft.BingWeather_4.53.51922.0_x64__8wekyb3d8bbwe was installed for a user, but not provisioned for all users. This package will not function properly in the sysprep image.\n"
        );
        let logs = parse_output(&output);
        assert_eq!(logs.len(), 2);
        assert_eq!(logs[0].lines.len(), 1, "the partial first line is dropped");
        assert_eq!(logs[1].lines.len(), 1);
        let diagnosis = diagnose_output(&output, "", &DiagnosisContext::default());
        assert_eq!(diagnosis.category, Category::AppxNotProvisioned);
        assert!(parse_output("no logs here").is_empty());
    }
}
