//! `fleetprep serve`: starts the Step Functions API endpoint (crate `serve`) and runs until
//! interrupted. Everything else lives in that crate; see docs/local-endpoint.md.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to listen on (0 picks a free one; the address is printed).
    #[arg(long, default_value_t = 8083)]
    pub port: u16,
    /// SQLite file for state machines and executions (survives restarts and kill -9);
    /// without it everything lives in memory.
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Run on a virtual clock: Waits, retries and timeouts jump ahead as soon as nothing is
    /// running; POST /_fleetprep/clock/advance moves it by hand.
    #[arg(long)]
    pub virtual_clock: bool,
    /// Answer Task states from this Step Functions Local mock configuration file (the test
    /// case is the `#TestCase` suffix of the state machine ARN in StartExecution).
    #[arg(long)]
    pub mock_config: Option<PathBuf>,
    /// Forward Lambda tasks to this Lambda Invoke API endpoint (e.g. http://127.0.0.1:3001).
    #[arg(long)]
    pub lambda_endpoint: Option<String>,
    /// The account in ARNs.
    #[arg(long, default_value = serve::protocol::DEFAULT_ACCOUNT)]
    pub account: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = serve::Config {
        listen: Some(SocketAddr::new(args.host, args.port)),
        store: args.store,
        virtual_clock: args.virtual_clock,
        account: Some(args.account),
        mock_config: args.mock_config,
        lambda_endpoint: args.lambda_endpoint,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let server = serve::Server::start(config).await?;
        // The one line scripts wait for (and read the port from, with --port 0).
        println!("fleetprep serve: listening on http://{}", server.addr());
        tokio::signal::ctrl_c().await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
