//! `fleetprep bake --config fleetprep.toml`: runs the `bake` state machine on the embedded
//! engine against the simulated fleet, with live progress and a summary.

use std::path::PathBuf;
use std::process::ExitCode;

use clock::Clock;
use engine::Status;
use serde_json::json;

use crate::cmd::aws_engine::{self, AwsArgs};
use crate::fleetconfig::FleetConfig;
use crate::output::OutputFormat;
use crate::report::{self, EngineKind, LiveProgress, Stopwatch};

#[derive(clap::Args)]
pub struct Args {
    /// Config file (see examples/fleetprep.toml).
    #[arg(long)]
    pub config: PathBuf,
    /// Optional fault scenario (TOML) for the simulated fleet.
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Engine store (default: $FLEETPREP_STORE or ~/.fleetprep/engine.sqlite3).
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
    runtime.block_on(bake(args))
}

async fn bake(args: Args) -> anyhow::Result<ExitCode> {
    let config = FleetConfig::load(&args.config)?;
    if args.engine == EngineKind::Aws {
        return bake_on_aws(&args, &config).await;
    }
    let scenario = crate::cmd::demo::load_scenario(args.scenario.as_ref(), args.seed)?;
    let store = report::store_path(args.store.clone());
    report::prepare_store(&store)?;
    let wall = Stopwatch::start();
    let (fleet, clock) = report::simulated_fleet(
        &config,
        scenario,
        config.naming.pattern.clone(),
        Some(store.clone()),
        true,
    )
    .await?;
    let mut input = config.bake.clone();
    if input.image_id.is_empty() {
        input.image_id = fleet.sim.base_image_id().into();
    }
    let name = format!("bake-{:x}", fleet.sim.scenario().seed & 0xffff_ffff);
    let arn = fleet
        .engine
        .start_execution("bake", Some(&name), input.input())?;
    let mut progress = LiveProgress::new(true, args.output == OutputFormat::Json);
    report::drive(&fleet, &mut progress).await?;
    progress.finish();
    let done = fleet.engine.describe(&arn)?;
    let simulated = done
        .stop_date
        .map(|s| report::seconds_between(done.start_date, s))
        .unwrap_or_else(|| report::seconds_between(done.start_date, clock.now()));
    if args.output == OutputFormat::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "execution_arn": done.execution_arn,
                "status": done.status.as_str(),
                "output": done.output,
                "error": done.error,
                "cause": done.cause,
                "simulated_seconds": simulated,
                "wall_seconds": wall.elapsed().as_secs_f64(),
            }))?
        );
    } else {
        println!("execution  {}", done.execution_arn);
        println!("status     {}", done.status.as_str());
        if let Some(output) = &done.output {
            println!("image      {}", output["image_id"].as_str().unwrap_or("?"));
        }
        if let Some(error) = &done.error {
            println!("category   {error}");
            println!("cause      {}", done.cause.clone().unwrap_or_default());
        }
        println!(
            "simulated  {}  ·  wall {:.2}s",
            report::human(std::time::Duration::from_secs_f64(simulated)),
            wall.elapsed().as_secs_f64()
        );
    }
    Ok(if done.status == Status::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The same bake on the deployed state machine, through the same progress display.
async fn bake_on_aws(args: &Args, config: &FleetConfig) -> anyhow::Result<ExitCode> {
    if config.bake.image_id.is_empty() {
        anyhow::bail!(
            "{}: key \"bake.image_id\" is required with --engine aws (the base Windows AMI)",
            args.config.display()
        );
    }
    let wall = Stopwatch::start();
    let mut progress = LiveProgress::new(true, args.output == OutputFormat::Json);
    let done =
        aws_engine::run_execution(&args.aws, "bake", &config.bake.input(), None, &mut progress)
            .await?;
    progress.finish();
    let took = done
        .stopped
        .map(|s| report::seconds_between(done.started, s))
        .unwrap_or(0.0);
    if args.output == OutputFormat::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "execution_arn": done.execution_arn,
                "status": done.status,
                "output": done.output,
                "error": done.error,
                "cause": done.cause,
                "seconds": took,
                "wall_seconds": wall.elapsed().as_secs_f64(),
            }))?
        );
    } else {
        println!("execution  {}", done.execution_arn);
        println!("status     {}", done.status);
        if let Some(output) = &done.output {
            println!("image      {}", output["image_id"].as_str().unwrap_or("?"));
        }
        if let Some(error) = &done.error {
            println!("category   {error}");
            println!("cause      {}", done.cause.clone().unwrap_or_default());
        }
        println!(
            "took       {}",
            report::human(std::time::Duration::from_secs_f64(took))
        );
    }
    Ok(if done.status == "SUCCEEDED" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
