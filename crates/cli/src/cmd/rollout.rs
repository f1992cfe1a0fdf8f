//! `fleetprep rollout --image AMI`: roll an image out to the group without baking it first
//! (a new launch-template version and an instance refresh, rolled back on failure). Locally
//! the simulated group is scaled to `--instances` first, so there is something to refresh.

use std::path::PathBuf;
use std::process::ExitCode;

use clock::Clock as _;
use serde_json::json;

use crate::cmd::SimulatedFleetArgs;
use crate::cmd::aws_engine::{self, AwsArgs, Finished};
use crate::output::OutputFormat;
use crate::report::{self, EngineKind, LiveProgress};

#[derive(clap::Args)]
pub struct Args {
    /// The AMI to roll out.
    #[arg(long)]
    pub image: String,
    #[command(flatten)]
    pub fleet: SimulatedFleetArgs,
    /// Locally: instances in the simulated group before the rollout.
    #[arg(long, default_value_t = 4)]
    pub instances: usize,
    /// Engine store (default: $FLEETPREP_STORE, else the user's data directory).
    #[arg(long)]
    pub store: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Run on the embedded engine against the simulated fleet, or on AWS Step Functions.
    #[arg(long, value_enum, default_value_t = EngineKind::Local)]
    pub engine: EngineKind,
    #[command(flatten)]
    pub aws: AwsArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(rollout(args))
}

async fn rollout(args: Args) -> anyhow::Result<ExitCode> {
    if !args.image.starts_with("ami-") {
        anyhow::bail!("--image {:?} is not an AMI id (ami-...)", args.image);
    }
    let config = args.fleet.config()?;
    let input = config.rollout_input(&args.image).input();
    let mut progress = LiveProgress::new(true, args.output == OutputFormat::Json);
    let done = if args.engine == EngineKind::Aws {
        aws_engine::run_execution(&args.aws, "rollout", &input, None, &mut progress).await?
    } else {
        let scenario = args.fleet.sim.load(None)?;
        let store = report::store_path(args.store.clone());
        report::prepare_store(&store)?;
        let (fleet, clock) = report::simulated_fleet(
            &config,
            scenario,
            config.naming.pattern.clone(),
            Some(store),
            true,
        )
        .await?;
        fleet.sim().create_group(config.simulated_group());
        fleet
            .sim()
            .set_desired_capacity(&config.group.name, args.instances)?;
        report::drive(&fleet, &mut progress).await?;
        let name = format!("rollout-{:x}", fleet.sim().scenario().seed & 0xffff_ffff);
        let arn = fleet
            .engine()
            .start_execution("rollout", Some(&name), input)?;
        report::drive(&fleet, &mut progress).await?;
        let done = fleet.engine().describe(&arn)?;
        Finished {
            execution_arn: done.execution_arn,
            status: done.status.as_str().into(),
            output: done.output,
            error: done.error,
            cause: done.cause,
            started: done.start_date,
            stopped: Some(done.stop_date.unwrap_or_else(|| clock.now())),
            events: Vec::new(),
        }
    };
    progress.finish();
    let ok = done.status == "SUCCEEDED";
    match args.output {
        OutputFormat::Json => println!(
            "{}",
            json!({
                "ok": ok,
                "execution_arn": done.execution_arn,
                "status": done.status,
                "image_id": args.image,
                "output": done.output,
                "error": done.error,
                "cause": done.cause,
            })
        ),
        OutputFormat::Text => {
            println!("rollout of {}: {}", args.image, done.status);
            println!("execution {}", done.execution_arn);
            if let Some(error) = &done.error {
                println!("error {error}: {}", done.cause.as_deref().unwrap_or(""));
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
