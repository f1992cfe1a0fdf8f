//! What the client tests share: finding the AWS clients, and a server on port 0.

use std::process::Command;

/// Whether python3 can import boto3 (and, with `cli`, the AWS CLI runs). Without them a test
/// skips with the reason, except under `CI=true`, where it fails.
pub fn clients_or_skip(cli: bool) -> bool {
    let boto3 = Command::new("python3")
        .args(["-c", "import boto3"])
        .output();
    let reason = if !matches!(&boto3, Ok(o) if o.status.success()) {
        Some("python3 with boto3 is not installed (pip install boto3; scripts/test does)")
    } else if cli
        && !matches!(Command::new("aws").arg("--version").output(), Ok(o) if o.status.success())
    {
        Some("the AWS CLI is not installed (pip install awscli; scripts/test does)")
    } else {
        None
    };
    match reason {
        None => true,
        Some(reason) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI needs the AWS clients: {reason}"
            );
            eprintln!("skipping: {reason}");
            false
        }
    }
}

/// A server on a free loopback port with a virtual clock and `config`'s other settings; its
/// endpoint URL.
pub async fn server_with(config: serve::Config) -> (serve::Server, String) {
    let server = serve::Server::start(serve::Config {
        listen: Some("127.0.0.1:0".parse().expect("an address")),
        virtual_clock: true,
        ..config
    })
    .await
    .expect("server starts");
    let endpoint = format!("http://{}", server.addr());
    (server, endpoint)
}
