//! The AWS clients against the server: `tests/clients/test_api.py` drives it with boto3 and the
//! AWS CLI (create, start, describe, history, activities, stop, sync, virtual time, bad
//! requests). `scripts/test` installs the pinned clients.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_and_the_aws_cli_drive_the_endpoint() {
    if !common::clients_or_skip(true) {
        return;
    }
    let (_server, endpoint) = common::virtual_server().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/test_api.py");
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .env("SFN_ENDPOINT", &endpoint)
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "{stdout}\n{stderr}");
}
