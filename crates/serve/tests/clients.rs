//! The AWS clients against the server: `tests/clients/test_api.py` drives it with boto3 and the
//! AWS CLI (create, start, describe, history, activities, stop, sync, virtual time, bad
//! requests). `scripts/test` installs the pinned clients.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_and_the_aws_cli_drive_the_endpoint() {
    if !common::clients_or_skip(true) {
        return;
    }
    // A free port for the fake Lambda endpoint the script starts (tests/clients/test_api.py).
    let lambda_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let (_server, endpoint) = common::server_with(serve::Config {
        mock_config: Some(format!("{examples}/greeting.mock.json").into()),
        lambda_endpoint: Some(format!("http://127.0.0.1:{lambda_port}")),
        ..serve::Config::default()
    })
    .await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/test_api.py");
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .env("SFN_ENDPOINT", &endpoint)
        .env("LAMBDA_PORT", lambda_port.to_string())
        .env("EXAMPLES", examples)
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "{stdout}\n{stderr}");
}
