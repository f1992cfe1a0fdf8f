//! Golden tests: `tests/data/diagnose/<case>/` holds `setupact.log` and/or `console.txt`
//! (real Panther and console line formats), an optional `context.json`, and `expected.json`.
//! `UPDATE_GOLDEN=1 cargo test` rewrites the expectations; review the diff.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use sysprep::diagnose::{Category, Diagnoser, DiagnosisContext, diagnose};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/diagnose")
}

fn open(path: &Path) -> Option<BufReader<File>> {
    File::open(path).ok().map(BufReader::new)
}

#[test]
fn every_fixture_matches_its_expectation() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(data_dir())
        .expect("fixture dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    let mut seen = Vec::new();
    for case in &cases {
        let context: DiagnosisContext = std::fs::read_to_string(case.join("context.json"))
            .map(|text| serde_json::from_str(&text).expect("context.json"))
            .unwrap_or_default();
        let diagnosis = diagnose(
            open(&case.join("setupact.log")),
            open(&case.join("console.txt")),
            &context,
        )
        .expect("read fixture");
        let actual = serde_json::to_string_pretty(&diagnosis).expect("json") + "\n";
        let expected_path = case.join("expected.json");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&expected_path, &actual).expect("write golden");
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|_| {
            panic!(
                "{} missing: run with UPDATE_GOLDEN=1",
                expected_path.display()
            )
        });
        assert_eq!(actual, expected, "case {}", case.display());
        // Each case directory is named after the category it must produce.
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(diagnosis.category.as_str(), name, "case {name}");
        seen.push(diagnosis.category);
    }
    for category in Category::ALL {
        assert!(seen.contains(&category), "no fixture for {category}");
    }
}

/// A reader that produces `total` bytes of Panther info lines without holding them, with one
/// decisive error line in the middle.
struct HugeLog {
    chunk: Vec<u8>,
    position: usize,
    produced: u64,
    total: u64,
    error_line: Option<Vec<u8>>,
}

impl HugeLog {
    fn new(total: u64) -> Self {
        let mut chunk = Vec::new();
        for i in 0..1000 {
            chunk.extend_from_slice(format!("2024-02-02 09:14:55, Info                  SYSPRP ActionPlatform::LaunchModule: Successfully executed 'Step{i}' from C:\\Windows\\System32\\spbcd.dll\r\n").as_bytes());
        }
        Self {
            chunk,
            position: 0,
            produced: 0,
            total,
            error_line: Some(b"2024-02-02 09:14:55, Error      [0x0f0082] SYSPRP ActionPlatform::LaunchModule: Failure occurred while executing 'SLReArmWindows' from C:\\Windows\\System32\\slc.dll; dwRet = 0xc004d307\r\n".to_vec()),
        }
    }
}

impl Read for HugeLog {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.produced >= self.total {
            return Ok(0);
        }
        // At a chunk boundary past the middle, emit the error line once.
        if self.position == 0 && self.produced >= self.total / 2 {
            if let Some(line) = self.error_line.take() {
                let n = line.len().min(buf.len());
                buf[..n].copy_from_slice(&line[..n]);
                if n < line.len() {
                    self.error_line = None;
                    return Err(io::Error::other("test buffer too small for the error line"));
                }
                self.produced += n as u64;
                return Ok(n);
            }
        }
        let rest = &self.chunk[self.position..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.position = (self.position + n) % self.chunk.len();
        self.produced += n as u64;
        Ok(n)
    }
}

/// Issue #3: huge logs are streamed. 64 MiB go through a 64 KiB buffer; the diagnoser keeps
/// only bounded evidence.
#[test]
fn a_huge_log_is_streamed() {
    let reader = BufReader::with_capacity(64 << 10, HugeLog::new(64 << 20));
    let mut diagnoser = Diagnoser::new();
    diagnoser.read_log(reader).expect("stream");
    assert!(diagnoser.progress().log_lines > 400_000);
    let diagnosis = diagnoser.finish(&DiagnosisContext::default());
    assert_eq!(diagnosis.category, Category::RearmLimit);
    assert_eq!(diagnosis.evidence.len(), 1);
}

/// Issue 10, bug 2: every healthy EC2Launch v2 boot prints
/// `SysprepState=IMAGE_STATE_UNDEPLOYABLE` while Windows is being configured ("Troubleshoot
/// EC2Launch v2", the sample console log output, used verbatim as test data). A healthy
/// console plus a time-out is `timeout`, and without one nothing is decided by it.
#[test]
fn a_healthy_ec2launch_v2_console_is_not_an_unreachable_agent() {
    let console =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/console/ec2launch-v2-healthy.txt");
    let classify = |context: DiagnosisContext| {
        diagnose(None::<&[u8]>, open(&console), &context)
            .expect("read console")
            .category
    };
    let timed_out = DiagnosisContext {
        timed_out: true,
        agent_online: None,
    };
    assert_eq!(classify(timed_out), Category::Timeout);
    assert!(Category::Timeout.retriable());
    assert_eq!(classify(DiagnosisContext::default()), Category::Unknown);
}
