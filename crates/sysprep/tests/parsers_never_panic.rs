//! Proptest mirrors of the fuzz targets (fuzz/fuzz_targets/sysprep_*.rs), so CI exercises the
//! same properties without cargo-fuzz: arbitrary and near-valid input never panics and always
//! yields a bounded, well-formed answer.

use proptest::prelude::*;
use sysprep::agent::{parse_detection_output, parse_identity_output};
use sysprep::diagnose::{Category, Diagnoser, DiagnosisContext, MAX_EVIDENCE, parse_panther_line};
use sysprep::preflight::{PREFLIGHT_MARKER, Severity, check_output};

fn panther_line() -> impl Strategy<Value = String> {
    (
        "20[0-9]{2}-[0-1][0-9]-[0-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-5][0-9]",
        prop::sample::select(vec!["Info", "Warning", "Error", "Fatal", ""]),
        proptest::option::of("\\[0x[0-9a-f]{0,8}\\]?"),
        prop::sample::select(vec!["SYSPRP", "[shell unattend]", "SETUP", "[", ""]),
        prop_oneof![
            ".*",
            Just("Package X was installed for a user, but not provisioned for all users.".to_owned()),
            Just("Failure occurred while executing 'SLReArmWindows' from slc.dll; dwRet = 0xc004d307".to_owned()),
            Just("CopyProfile failed (0x80070005)".to_owned()),
            Just("SysprepState=IMAGE_STATE_UNDEPLOYABLE".to_owned()),
        ],
    )
        .prop_map(|(ts, level, code, component, message)| {
            format!("{ts}, {level}      {} {component} {message}", code.unwrap_or_default())
        })
}

proptest! {
    #[test]
    fn diagnoser_accepts_any_bytes(log in proptest::collection::vec(any::<u8>(), 0..4096),
                                   console in proptest::collection::vec(any::<u8>(), 0..1024),
                                   timed_out: bool, offline: bool) {
        let mut diagnoser = Diagnoser::new();
        diagnoser.read_log(&log[..]).unwrap();
        diagnoser.read_console(&console[..]).unwrap();
        let diagnosis = diagnoser.finish(&DiagnosisContext {
            timed_out,
            agent_online: offline.then_some(false),
        });
        prop_assert!(diagnosis.evidence.len() <= MAX_EVIDENCE);
        prop_assert_eq!(diagnosis.retriable, diagnosis.category.retriable());
    }

    #[test]
    fn diagnoser_handles_near_valid_panther_logs(lines in proptest::collection::vec(panther_line(), 0..64)) {
        let text = lines.join("\r\n");
        let mut diagnoser = Diagnoser::new();
        diagnoser.read_log(text.as_bytes()).unwrap();
        for line in &lines {
            let parsed = parse_panther_line(line);
            prop_assert!(parsed.message.len() <= line.len());
        }
        let diagnosis = diagnoser.finish(&DiagnosisContext::default());
        prop_assert!(Category::ALL.contains(&diagnosis.category));
        prop_assert!(diagnosis.evidence.len() <= MAX_EVIDENCE);
    }

    #[test]
    fn preflight_parser_accepts_any_text(text in ".*", json in proptest::collection::vec(any::<u8>(), 0..512)) {
        let json = String::from_utf8_lossy(&json);
        for input in [text.clone(), format!("{PREFLIGHT_MARKER}{text}"), format!("{PREFLIGHT_MARKER}{json}")] {
            if let Ok(result) = check_output(&input) {
                prop_assert_eq!(result.blocked, result.findings.iter().any(|f| f.severity == Severity::Block));
            }
        }
        let _ = parse_detection_output(&text);
        let _ = parse_identity_output(&text);
    }

    #[test]
    fn preflight_parser_handles_near_valid_reports(
        appx in proptest::collection::vec("[A-Za-z.]{1,20}_[0-9.]{1,10}_x64__[a-z0-9]{13}", 0..4),
        rearm in proptest::option::of(-2i64..5),
        skip in proptest::option::of(0i64..3),
        free in proptest::option::of(any::<u64>()),
        status in proptest::option::of(prop::sample::select(vec!["On", "Off", "1", "0", ""])),
    ) {
        let report = serde_json::json!({
            "appxNotProvisioned": appx, "rearmCount": rearm, "skipRearm": skip,
            "freeDiskBytes": free, "bitlocker": {"protectionStatus": status},
        });
        let result = check_output(&format!("{PREFLIGHT_MARKER}{report}")).unwrap();
        prop_assert_eq!(
            result.findings.iter().any(|f| f.check == "appx-not-provisioned"),
            !appx.is_empty()
        );
        prop_assert_eq!(result.blocked, result.findings.iter().any(|f| f.severity == Severity::Block));
    }
}
