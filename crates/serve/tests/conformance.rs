//! The AWS-recorded conformance corpus (repo-root `conformance/`) through boto3 against the
//! endpoint, scored by the corpus's own `run.py` with its `sfn_client.py` engine command: it
//! must score every case at both levels, as `states exec` does (crates/engine/tests).

mod common;

use std::path::Path;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corpus_scores_in_full_over_the_api() {
    if !common::clients_or_skip(false) {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance");
    let cases = count_cases(&root.join("cases"));
    assert!(cases > 200, "the corpus is vendored in the repo");
    let (_server, endpoint) = common::server_with(serve::Config::default()).await;
    let client = root.join("sfn_client.py");
    let out = tokio::process::Command::new("python3")
        .arg(root.join("run.py"))
        .arg("--engine")
        .arg(format!(
            "python3 {} {{definition}} {{input}}",
            client.display()
        ))
        .args(["--jobs", "3"])
        .env("SFN_ENDPOINT", &endpoint)
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for level in ["outcome", "history"] {
        let want = format!("{level}: {cases} passed, 0 failed");
        assert!(stdout.contains(&want), "expected \"{want}\":\n{stdout}");
    }
}

fn count_cases(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("conformance/cases exists")
        .filter_map(Result::ok)
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                count_cases(&p)
            } else {
                usize::from(p.extension().is_some_and(|x| x == "json"))
            }
        })
        .sum()
}
