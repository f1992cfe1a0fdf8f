//! `fleetprep fleet simulate --instances N [--scenario FILE]`: launches N instances at once
//! through the lifecycle hooks on the simulated fleet and reports the figures the scale target
//! is checked against: wall time, simulated time, API calls by operation, name collisions.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
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
    /// The group's lifecycle hook timeout for this run (default: the config's `[naming]
    /// hook_timeout_seconds`); `bench fleet` sets it to what each size needs.
    #[arg(long)]
    pub hook_timeout_seconds: Option<u64>,
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
    let mut config = args.fleet.config()?;
    if let Some(seconds) = args.hook_timeout_seconds {
        config.naming.hook_timeout_seconds = seconds;
    }
    if let Some(needed) = hook_too_short(args.instances, config.naming.hook_timeout_seconds) {
        eprintln!(
            "fleet simulate: {} instances launched at once complete their launches at Auto \
             Scaling's simulated rate ({} per second), which takes a large share of their {} s \
             hooks: hooks may time out (Fleetprep.LifecycleActionExpired) while heartbeats and \
             completions wait for the same tokens. A hook of about {needed} s needs no \
             heartbeat: set [naming] hook_timeout_seconds (or --hook-timeout-seconds) to it.",
            args.instances,
            cloud::sim::AUTO_SCALING_REQUESTS_PER_SECOND,
            config.naming.hook_timeout_seconds
        );
    }
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
        "hook_timeout_seconds": config.naming.hook_timeout_seconds,
        "in_service": in_service.len(),
        "wall_seconds": wall_seconds,
        "simulated_seconds": simulated,
        "executions": outcomes,
        "failures_by_error": errors,
        "collisions": collisions,
        "api_calls": calls,
        "api_calls_total": calls.values().sum::<u64>(),
        // The outcome metrics the Lambda would write to its log (no API call).
        "emf_lines": fleet.context().emf.lines(),
        "throttled_calls": fleet.sim().throttled_calls(),
        "throttling_failures": throttling_failures,
        "send_command_calls_per_50_instances":
            send_commands as f64 * 50.0 / args.instances.max(1) as f64,
        "batching": !args.no_batching,
        // This process's peak resident set: `bench fleet` runs each size in a child process
        // of its own so the figure belongs to one size.
        "peak_memory_mib": crate::cmd::bench::peak_rss_kib().map(|k| k as f64 / 1024.0),
        "cpu_seconds": crate::cmd::bench::cpu_seconds(),
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
            "  {:<40} {}",
            "(EMF log lines, no API call)", report["emf_lines"]
        );
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

/// Simulated seconds from launch to a named instance when nothing is throttled (what a
/// 1,000-instance run takes).
const NAMING_SECONDS: u64 = 600;

/// The launch hook timeout `instances` launched at once need: the naming, plus one and a half
/// times the completions at Auto Scaling's simulated rate (the bucket sets the pace of a large
/// scale-out: 100,000 instances need 1,000 s of CompleteLifecycleAction alone, longer than the
/// default 900 s hook, and every heartbeat that keeps a hook alive meanwhile is a token a
/// completion does not get). Never below the 900 s default.
pub fn hook_timeout_needed(instances: usize) -> u64 {
    (NAMING_SECONDS + completion_seconds(instances).ceil() as u64).max(900)
}

/// The seconds `instances` completions take at Auto Scaling's simulated rate, half as much
/// again for the heartbeats and the throttled attempts beside them.
fn completion_seconds(instances: usize) -> f64 {
    instances as f64 / cloud::sim::AUTO_SCALING_REQUESTS_PER_SECOND * 1.5
}

/// The hook timeout to suggest when `hook_timeout_seconds` is too short for `instances`
/// launched at once: when completing them at Auto Scaling's rate (half as much again) takes
/// more than half the hook. A shorter hook on a small fleet is fine: heartbeats keep it alive,
/// and there are tokens for them.
fn hook_too_short(instances: usize, hook_timeout_seconds: u64) -> Option<u64> {
    let needed = hook_timeout_needed(instances);
    (hook_timeout_seconds < needed
        && completion_seconds(instances) > hook_timeout_seconds as f64 / 2.0)
        .then_some(needed)
}

/// `bench fleet`'s arguments.
#[derive(clap::Args, Clone)]
pub struct BenchArgs {
    /// Fleet sizes to launch, comma-separated; each runs in a child process of its own, so
    /// its peak memory is its own.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000usize, 10_000, 100_000])]
    pub sizes: Vec<usize>,
    #[command(flatten)]
    pub fleet: SimulatedFleetArgs,
    /// Also launch the smallest size with every command sent on its own (what batching saves).
    #[arg(long)]
    pub compare_batching: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Runs `fleet simulate` for one size in a child process (this same binary) and returns its
/// JSON report: a fresh process per size, so peak memory and allocator state do not carry
/// over from one size to the next.
fn simulate_in_child(
    args: &BenchArgs,
    configured_hook_seconds: u64,
    instances: usize,
    batching: bool,
) -> anyhow::Result<serde_json::Value> {
    let exe = std::env::current_exe().context("locating the fleetprep binary to re-run")?;
    let mut command = std::process::Command::new(&exe);
    command.args(["fleet", "simulate", "--output", "json", "--instances"]);
    command.arg(instances.to_string());
    if let Some(config) = &args.fleet.config {
        command.arg("--config").arg(config);
    }
    if let Some(scenario) = &args.fleet.sim.scenario {
        command.arg("--scenario").arg(scenario);
    }
    if let Some(seed) = args.fleet.sim.seed {
        command.arg("--seed").arg(seed.to_string());
    }
    if !batching {
        command.arg("--no-batching");
    }
    // A size whose launches expire measures its failure path, not a scale-out: each size gets
    // the hook timeout it needs, or the config's when that is longer.
    command.arg("--hook-timeout-seconds").arg(
        configured_hook_seconds
            .max(hook_timeout_needed(instances))
            .to_string(),
    );
    let out = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {} fleet simulate", exe.display()))?;
    // Exit code 1 means collisions or throttling failures: still a report to print.
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "fleet simulate --instances {instances} printed no report (exit status {})",
            out.status
        )
    })
}

/// `bench fleet`: the launch wave at each size, one child process per size, printed as
/// figures and ratios between sizes (no assertions: targets are read off the output).
pub fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !args.sizes.is_empty() && args.sizes.iter().all(|&n| n > 0),
        "--sizes needs at least one size, each at least 1 (e.g. --sizes 1000,10000,100000)"
    );
    let configured_hook = args.fleet.config()?.naming.hook_timeout_seconds;
    let mut rows = Vec::new();
    for &size in &args.sizes {
        let report = simulate_in_child(&args, configured_hook, size, true)?;
        if args.output == OutputFormat::Text {
            eprintln!(
                "  {size} instances: {:.2} s",
                report["wall_seconds"].as_f64().unwrap_or(f64::NAN)
            );
        }
        rows.push(report);
    }
    let unbatched = match (args.compare_batching, args.sizes.iter().min()) {
        (true, Some(&smallest)) => {
            Some(simulate_in_child(&args, configured_hook, smallest, false)?)
        }
        _ => None,
    };
    let number = |report: &serde_json::Value, key: &str| report[key].as_f64().unwrap_or(f64::NAN);
    let per_instance_ms =
        |r: &serde_json::Value| number(r, "wall_seconds") * 1000.0 / number(r, "instances");
    let cpu_per_instance_ms =
        |r: &serde_json::Value| number(r, "cpu_seconds") * 1000.0 / number(r, "instances");
    let ssm_calls = |r: &serde_json::Value| -> f64 {
        r["api_calls"]
            .as_object()
            .map(|calls| {
                calls
                    .iter()
                    .filter(|(op, _)| op.starts_with("ssm:"))
                    .filter_map(|(_, n)| n.as_u64())
                    .sum::<u64>() as f64
            })
            .unwrap_or(f64::NAN)
            / number(r, "instances")
    };
    let summary: Vec<serde_json::Value> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            // Growth against the previous size: time per instance at this size over that at
            // the one before (1.0 = linear).
            let growth = i.checked_sub(1).map(|p| {
                json!({
                    "wall": per_instance_ms(r) / per_instance_ms(&rows[p]),
                    "cpu": cpu_per_instance_ms(r) / cpu_per_instance_ms(&rows[p]),
                })
            });
            json!({
                "instances": r["instances"],
                "wall_seconds": r["wall_seconds"],
                "cpu_seconds": r["cpu_seconds"],
                "cpu_ms_per_instance": number(r, "cpu_seconds") * 1000.0 / number(r, "instances"),
                "peak_memory_mib": r["peak_memory_mib"],
                "hook_timeout_seconds": r["hook_timeout_seconds"],
                "ms_per_instance": per_instance_ms(r),
                "per_instance_vs_previous_size": growth,
                "ssm_calls_per_instance": ssm_calls(r),
                "throttled_calls": r["throttled_calls"],
                "throttling_failures": r["throttling_failures"],
                "collisions": r["collisions"],
                "executions": r["executions"],
                "failures_by_error": r["failures_by_error"],
            })
        })
        .collect();
    if args.output == OutputFormat::Json {
        let report = json!({"sizes": summary, "runs": rows, "unbatched": unbatched});
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("fleet bench: N instances launched at once, one child process per size");
    println!(
        "{:>9} {:>9} {:>8} {:>8} {:>9} {:>8} {:>8} {:>13} {:>9} {:>9} {:>10}",
        "instances",
        "succeeded",
        "wall s",
        "CPU s",
        "peak MiB",
        "ms/inst",
        "CPU ms",
        "vs prev w/cpu",
        "SSM/inst",
        "throttled",
        "collisions"
    );
    for row in &summary {
        let growth = &row["per_instance_vs_previous_size"];
        let growth = match (growth["wall"].as_f64(), growth["cpu"].as_f64()) {
            (Some(w), Some(c)) => format!("{w:.2}x/{c:.2}x"),
            _ => "-".into(),
        };
        let throttled: u64 = row["throttled_calls"]
            .as_object()
            .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
            .unwrap_or(0);
        println!(
            "{:>9} {:>9} {:>8.2} {:>8.2} {:>9.1} {:>8.3} {:>8.3} {:>13} {:>9.3} {:>9} {:>10}",
            row["instances"],
            row["executions"]["SUCCEEDED"].as_u64().unwrap_or(0),
            row["wall_seconds"].as_f64().unwrap_or(f64::NAN),
            row["cpu_seconds"].as_f64().unwrap_or(f64::NAN),
            row["peak_memory_mib"].as_f64().unwrap_or(f64::NAN),
            row["ms_per_instance"].as_f64().unwrap_or(f64::NAN),
            row["cpu_ms_per_instance"].as_f64().unwrap_or(f64::NAN),
            growth,
            row["ssm_calls_per_instance"].as_f64().unwrap_or(f64::NAN),
            throttled,
            row["collisions"],
        );
    }
    let hooks: Vec<String> = summary
        .iter()
        .map(|row| format!("{} at {}", row["hook_timeout_seconds"], row["instances"]))
        .collect();
    println!(
        "launch hook timeout (s) per size, what the size needs or the config's if longer: {}",
        hooks.join(", ")
    );
    // A size whose launches failed is not a fast run: say so beside the figures.
    for row in &summary {
        let failed = row["failures_by_error"]
            .as_object()
            .filter(|failures| !failures.is_empty());
        if let Some(failures) = failed {
            println!(
                "at {} instances, executions that did not succeed, by error: {}",
                row["instances"],
                serde_json::Value::Object(failures.clone())
            );
        }
    }
    if let (Some(first), Some(last)) = (summary.first(), summary.last())
        && summary.len() > 1
    {
        let ratio = |key: &str| {
            last[key].as_f64().unwrap_or(f64::NAN) / first[key].as_f64().unwrap_or(f64::NAN)
        };
        println!(
            "time per instance at {} over that at {}: wall {:.2}x, CPU {:.2}x (1.00 = linear)",
            last["instances"],
            first["instances"],
            ratio("ms_per_instance"),
            ratio("cpu_ms_per_instance")
        );
    }
    if let Some(largest) = rows.last() {
        println!(
            "\nAPI calls at {} instances (per instance):",
            largest["instances"]
        );
        if let Some(calls) = largest["api_calls"].as_object() {
            for (operation, count) in calls {
                let n = count.as_f64().unwrap_or(0.0);
                println!(
                    "  {operation:<40} {:>10} {:>8.3}",
                    count,
                    n / number(largest, "instances")
                );
            }
        }
    }
    if let (Some(unbatched), Some(batched)) = (
        &unbatched,
        rows.iter().min_by_key(|r| r["instances"].as_u64()),
    ) {
        println!(
            "\nbatching at {} instances: {:.2} SSM calls per instance batched, {:.2} unbatched",
            batched["instances"],
            ssm_calls(batched),
            ssm_calls(unbatched)
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hook_a_size_needs_grows_with_the_completions_at_auto_scalings_rate() {
        // Small fleets complete within the default hook.
        assert_eq!(hook_timeout_needed(1_000), 900);
        assert_eq!(hook_timeout_needed(10_000), 900);
        // 100,000 at 100 per second: 1,000 s of completions, half as much again, plus naming.
        assert_eq!(hook_timeout_needed(100_000), 600 + 1_500);
        // Said only where the completions take a large share of the hook.
        assert_eq!(hook_too_short(100_000, 900), Some(2_100));
        assert_eq!(hook_too_short(100_000, 2_100), None);
        assert_eq!(hook_too_short(10_000, 900), None);
        assert_eq!(hook_too_short(5, 240), None);
    }
}
