//! `fleetprep fleet simulate --instances N [--scenario FILE]`: launches N instances at once
//! through the lifecycle hooks on the simulated fleet and reports the figures the scale target
//! is checked against: wall time, simulated time, API calls by operation, name collisions.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;

use clock::Clock;
use engine::Status;
use serde_json::json;

use crate::cmd::SimulatedFleetArgs;
use crate::output::OutputFormat;
use crate::report::{self, LiveProgress, Stopwatch};
use crate::session;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Scale a simulated group to N instances at once and report.
    Simulate(SimulateArgs),
}

#[derive(clap::Args, Clone)]
// The shared `--seed` help names the wall clock; a simulation defaults to seed 1 instead.
#[command(mut_arg("seed", |seed| seed.help("Seed for the simulated fleet (default: 1, so runs compare)")))]
pub struct SimulateArgs {
    #[arg(long, default_value_t = 100)]
    pub instances: usize,
    #[command(flatten)]
    pub fleet: SimulatedFleetArgs,
    /// Send every command on its own (measures what batching saves).
    #[arg(long)]
    pub no_batching: bool,
    /// Engine store for the run (default: a temporary file, removed afterwards; a file store
    /// keeps SQLite's page cache bounded, which an in-memory store of 10,000 histories is not).
    #[arg(long)]
    pub store: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    let Command::Simulate(args) = command;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(simulate(args))
}

/// The report `fleet simulate` prints (also used by `bench fleet`).
pub async fn simulate_report(args: &SimulateArgs) -> anyhow::Result<serde_json::Value> {
    let config = args.fleet.config()?;
    // Seed 1 unless given, so runs compare.
    let scenario = args.fleet.sim.load(Some(1))?;
    // Enough digits for the whole group.
    let digits = (args.instances.max(1) as f64).log10().floor() as usize + 1;
    let pattern = if config.naming.pattern == "{prefix}-{seq:4}" && digits > 4 {
        format!("{{prefix}}-{{seq:{digits}}}")
    } else {
        config.naming.pattern.clone()
    };
    let scratch = tempfile::tempdir()?;
    let store = args
        .store
        .clone()
        .unwrap_or_else(|| scratch.path().join("simulate.sqlite3"));
    let wall = Stopwatch::start();
    let (fleet, clock) =
        session::simulated_fleet(&config, scenario, pattern, Some(store), !args.no_batching)
            .await?;
    let started = clock.now();
    config.create_simulated_group(fleet.sim());
    fleet
        .sim()
        .set_desired_capacity(&config.group.name, args.instances)?;
    let mut progress = LiveProgress::new(false, args.output == OutputFormat::Json);
    report::drive(&fleet, &mut progress).await?;
    progress.finish();
    let wall_seconds = wall.elapsed().as_secs_f64();
    let simulated = report::seconds_between(started, clock.now());

    let executions = fleet.engine().list_executions(None)?;
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for e in &executions {
        *outcomes.entry(e.status.as_str().to_string()).or_default() += 1;
        if e.status != Status::Succeeded {
            *errors
                .entry(e.error.clone().unwrap_or_else(|| "none".into()))
                .or_default() += 1;
        }
    }
    let in_service = fleet.sim().in_service(&config.group.name);
    let names: BTreeSet<String> = in_service
        .iter()
        .map(|i| i.computer_name.to_ascii_uppercase())
        .collect();
    let collisions = in_service.len() - names.len();
    let calls = fleet.sim().api_calls();
    let send_commands = calls.get("ssm:SendCommand").copied().unwrap_or(0);
    let throttling_failures = errors
        .get(workflows::errors::THROTTLED)
        .copied()
        .unwrap_or(0);
    Ok(json!({
        "instances": args.instances,
        "in_service": in_service.len(),
        "wall_seconds": wall_seconds,
        "simulated_seconds": simulated,
        "executions": outcomes,
        "failures_by_error": errors,
        "collisions": collisions,
        "api_calls": calls,
        "api_calls_total": calls.values().sum::<u64>(),
        "throttled_calls": fleet.sim().throttled_calls(),
        "throttling_failures": throttling_failures,
        "send_command_calls_per_50_instances":
            send_commands as f64 * 50.0 / args.instances.max(1) as f64,
        "batching": !args.no_batching,
    }))
}

async fn simulate(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let report = simulate_report(&args).await?;
    if args.output == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} instances, {} in service, {} name collisions",
            report["instances"], report["in_service"], report["collisions"]
        );
        println!(
            "wall time {:.2}s, simulated time {}",
            report["wall_seconds"].as_f64().unwrap_or(0.0),
            report::human(std::time::Duration::from_secs_f64(
                report["simulated_seconds"].as_f64().unwrap_or(0.0)
            ))
        );
        println!("executions {}", report["executions"]);
        if let Some(failures) = report["failures_by_error"].as_object()
            && !failures.is_empty()
        {
            println!("failures   {}", report["failures_by_error"]);
        }
        println!("\nAPI calls ({} total)", report["api_calls_total"]);
        if let Some(calls) = report["api_calls"].as_object() {
            for (operation, count) in calls {
                println!("  {operation:<40} {count}");
            }
        }
        println!(
            "\nSendCommand calls per 50 instances: {:.2}",
            report["send_command_calls_per_50_instances"]
                .as_f64()
                .unwrap_or(0.0)
        );
    }
    let ok = report["collisions"] == 0 && report["throttling_failures"] == 0;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `bench fleet`: the same launch wave with and without batching, in one run, printed as
/// figures and ratios (no assertions: targets are read off the output).
pub fn bench(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let batched = runtime.block_on(simulate_report(&SimulateArgs {
        no_batching: false,
        ..args.clone()
    }))?;
    let unbatched = runtime.block_on(simulate_report(&SimulateArgs {
        no_batching: true,
        ..args.clone()
    }))?;
    let figure =
        |report: &serde_json::Value, op: &str| report["api_calls"][op].as_u64().unwrap_or(0);
    let ratio = |a: u64, b: u64| {
        if a == 0 {
            f64::NAN
        } else {
            b as f64 / a as f64
        }
    };
    let rows = [
        (
            "wall seconds",
            batched["wall_seconds"].as_f64().unwrap_or(0.0),
            unbatched["wall_seconds"].as_f64().unwrap_or(0.0),
        ),
        (
            "simulated seconds",
            batched["simulated_seconds"].as_f64().unwrap_or(0.0),
            unbatched["simulated_seconds"].as_f64().unwrap_or(0.0),
        ),
        (
            "API calls",
            batched["api_calls_total"].as_f64().unwrap_or(0.0),
            unbatched["api_calls_total"].as_f64().unwrap_or(0.0),
        ),
    ];
    let report = json!({
        "instances": args.instances,
        "batched": batched,
        "unbatched": unbatched,
        "send_command_reduction": ratio(figure(&batched, "ssm:SendCommand"), figure(&unbatched, "ssm:SendCommand")),
        "describe_reduction": ratio(
            figure(&batched, "ssm:DescribeInstanceInformation"),
            figure(&unbatched, "ssm:DescribeInstanceInformation"),
        ),
    });
    if args.output == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("fleet bench: {} instances launched at once", args.instances);
        println!("{:<22} {:>14} {:>14}", "", "batched", "unbatched");
        for (name, a, b) in rows {
            println!("{name:<22} {a:>14.2} {b:>14.2}");
        }
        for op in [
            "ssm:SendCommand",
            "ssm:DescribeInstanceInformation",
            "ssm:GetCommandInvocation",
        ] {
            println!(
                "{op:<40} {:>8} {:>8}",
                figure(&batched, op),
                figure(&unbatched, op)
            );
        }
        println!(
            "SendCommand calls: {:.1}x fewer with batching; DescribeInstanceInformation: {:.1}x fewer",
            report["send_command_reduction"]
                .as_f64()
                .unwrap_or(f64::NAN),
            report["describe_reduction"].as_f64().unwrap_or(f64::NAN)
        );
        println!(
            "SendCommand calls per 50 instances (batched): {:.2}; collisions: {}",
            batched["send_command_calls_per_50_instances"]
                .as_f64()
                .unwrap_or(0.0),
            batched["collisions"]
        );
    }
    Ok(ExitCode::SUCCESS)
}
