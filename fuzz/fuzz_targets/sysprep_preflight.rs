#![no_main]
//! Arbitrary bytes as pre-flight output: parsing never panics, and whatever parses evaluates
//! to findings whose `blocked` flag agrees with their severities.
use libfuzzer_sys::fuzz_target;
use sysprep::preflight::{PREFLIGHT_MARKER, Severity, check_output, parse_preflight_output};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for input in [text.to_string(), format!("{PREFLIGHT_MARKER}{text}")] {
        if let Ok(result) = check_output(&input) {
            let any_block = result
                .findings
                .iter()
                .any(|f| f.severity == Severity::Block);
            assert_eq!(result.blocked, any_block);
            assert!(result.findings.iter().all(|f| !f.remediation.is_empty()));
        }
        let _ = parse_preflight_output(&input);
    }
});
