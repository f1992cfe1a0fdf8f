//! Kills a real engine process (`src/bin/crash_worker.rs`) with SIGKILL at random points,
//! repeatedly, restarts it on the same SQLite file, and checks that the execution reaches the
//! same result as an uninterrupted run with a consistent history.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use asl::history::{EventType, HistoryEvent};
use engine::{Engine, EngineConfig, Status};

fn worker() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_crash_worker"))
}

fn run_to_end(store: &std::path::Path) -> serde_json::Value {
    let out = Command::new(worker())
        .arg(store)
        .output()
        .expect("worker runs");
    assert!(
        out.status.success(),
        "worker failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or_default()).expect("worker prints JSON")
}

fn history(store: &std::path::Path) -> Vec<HistoryEvent> {
    let e = Engine::open(EngineConfig {
        store: Some(store.into()),
        clock: std::sync::Arc::new(clock::SystemClock),
    })
    .expect("reopen store");
    let arn = "arn:aws:states:local:000000000000:execution:crash:run";
    assert_eq!(e.describe(arn).unwrap().status, Status::Succeeded);
    e.history(arn).unwrap()
}

fn shape(h: &[HistoryEvent]) -> Vec<(EventType, i64, i64, Option<String>)> {
    h.iter()
        .map(|e| {
            let out = e
                .state_exited_event_details
                .as_ref()
                .and_then(|d| d.output.clone());
            (e.event_type, e.id, e.previous_event_id, out)
        })
        .collect()
}

#[test]
fn kill_nine_at_random_points_then_resume_gives_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let reference_store = dir.path().join("reference.sqlite");
    let expected = run_to_end(&reference_store);
    assert_eq!(expected["status"], "SUCCEEDED");
    let reference = history(&reference_store);

    let store = dir.path().join("crashy.sqlite");
    // Deterministic pseudo-random kill delays (LCG seeded by the pid).
    let mut seed = u64::from(std::process::id()) | 1;
    let mut kills = 0;
    for _ in 0..8 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = 15 + (seed >> 33) % 120;
        let mut child = Command::new(worker())
            .arg(&store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn worker");
        std::thread::sleep(Duration::from_millis(delay));
        if child.try_wait().expect("poll").is_none() {
            child.kill().expect("SIGKILL"); // Child::kill is SIGKILL on Unix
            kills += 1;
        }
        let _ = child.wait();
    }
    assert!(
        kills >= 3,
        "only {kills} kills landed mid-run; the worker is too fast"
    );
    let got = run_to_end(&store);
    assert_eq!(got, expected);
    let h = history(&store);
    assert_eq!(
        shape(&h),
        shape(&reference),
        "history differs from the uninterrupted run"
    );
    assert_eq!(
        h.iter()
            .filter(|e| e.event_type == EventType::ExecutionStarted)
            .count(),
        1
    );
    for (i, e) in h.iter().enumerate() {
        assert_eq!(e.id, i as i64 + 1);
        assert!(e.previous_event_id < e.id);
    }
}
