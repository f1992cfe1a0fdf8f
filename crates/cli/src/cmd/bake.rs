//! `fleetprep bake --config fleetprep.toml`: runs the `bake` state machine on the embedded
//! engine against the simulated fleet, with live progress and a summary.

use std::path::PathBuf;
use std::process::ExitCode;

use clock::Clock;
use engine::Status;
use serde_json::json;

use crate::cmd::ScenarioArgs;
use crate::cmd::aws_engine::{self, AwsArgs, Finished};
use crate::fleetconfig::FleetConfig;
use crate::output::OutputFormat;
use crate::report::{self, EngineKind, LiveProgress, Stopwatch};

#[derive(clap::Args)]
pub struct Args {
    /// Config file (see examples/fleetprep.toml).
    #[arg(long)]
    pub config: PathBuf,
    #[command(flatten)]
    pub sim: ScenarioArgs,
    /// Engine store (default: $FLEETPREP_STORE, else fleetprep/engine.sqlite3 in the user's
    /// data directory, e.g. ~/.local/share on Linux).
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
    let scenario = args.sim.load(None)?;
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
        input.image_id = fleet.sim().base_image_id().into();
    }
    let name = report::fresh_execution_name(
        fleet.engine(),
        &format!("bake-{:x}", fleet.sim().scenario().seed & 0xffff_ffff),
    )?;
    let arn = fleet
        .engine()
        .start_execution("bake", Some(&name), input.input())?;
    let mut progress = LiveProgress::new(true, args.output == OutputFormat::Json);
    report::drive(&fleet, &mut progress).await?;
    progress.finish();
    let done = fleet.engine().describe(&arn)?;
    // The local execution in the terms an AWS one ends in, so both print through one summary.
    let finished = Finished {
        execution_arn: done.execution_arn,
        status: done.status.as_str().into(),
        output: done.output,
        error: done.error,
        cause: done.cause,
        started: done.start_date,
        stopped: Some(done.stop_date.unwrap_or_else(|| clock.now())),
        events: fleet.engine().history(&arn)?,
    };
    print_summary(&finished, Timing::Simulated, &wall, args.output)
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
    print_summary(&done, Timing::Real, &wall, args.output)
}

/// What the execution's start-to-stop time means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timing {
    /// Virtual-clock time on the embedded engine: what the bake would take on AWS (the wall
    /// time, printed beside it, is what the simulation cost).
    Simulated,
    /// Real time on AWS Step Functions.
    Real,
}

/// Prints the one bake summary (text or JSON); a bake that did not succeed exits 1.
fn print_summary(
    done: &Finished,
    timing: Timing,
    wall: &Stopwatch,
    format: OutputFormat,
) -> anyhow::Result<ExitCode> {
    print!(
        "{}",
        render_summary(done, timing, wall.elapsed().as_secs_f64(), format)?
    );
    Ok(if done.status == Status::Succeeded.as_str() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The self-healing loop as the history records it: every remedy `PlanRemedy` chose, in
/// order, and the rounds run; None when no remedy ran.
fn remediation(events: &[asl::history::HistoryEvent]) -> Option<serde_json::Value> {
    let last = events
        .iter()
        .rev()
        .filter_map(|e| e.state_exited_event_details.as_deref())
        .filter(|d| d.name == "PlanRemedy")
        .filter_map(|d| d.output.as_deref())
        .filter_map(|output| serde_json::from_str::<serde_json::Value>(output).ok())
        .find_map(|output| output.get("remediation").cloned())?;
    let remedies = last.get("history").cloned().unwrap_or_else(|| json!([]));
    if remedies.as_array().is_none_or(|a| a.is_empty()) {
        return None;
    }
    Some(json!({
        "remedies": remedies,
        "rounds": last.get("rounds").cloned().unwrap_or(json!(0)),
    }))
}

fn render_summary(
    done: &Finished,
    timing: Timing,
    wall_seconds: f64,
    format: OutputFormat,
) -> anyhow::Result<String> {
    let remediation = remediation(&done.events);
    let seconds = done
        .stopped
        .map(|s| report::seconds_between(done.started, s))
        .unwrap_or(0.0);
    if format == OutputFormat::Json {
        let mut json = json!({
            "execution_arn": done.execution_arn,
            "status": done.status,
            "output": done.output,
            "error": done.error,
            "cause": done.cause,
            "remediation": remediation,
        });
        let key = match timing {
            Timing::Simulated => "simulated_seconds",
            Timing::Real => "seconds",
        };
        json[key] = json!(seconds);
        json["wall_seconds"] = json!(wall_seconds);
        return Ok(serde_json::to_string_pretty(&json)? + "\n");
    }
    let mut text = format!(
        "execution  {}\nstatus     {}\n",
        done.execution_arn, done.status
    );
    if let Some(output) = &done.output {
        text += &format!(
            "image      {}\n",
            output["image_id"].as_str().unwrap_or("?")
        );
    }
    if let Some(error) = &done.error {
        text += &format!(
            "category   {error}\ncause      {}\n",
            done.cause.as_deref().unwrap_or_default()
        );
    }
    if let Some(remediation) = &remediation {
        let remedies: Vec<&str> = remediation["remedies"]
            .as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_str).collect())
            .unwrap_or_default();
        let rounds = remediation["rounds"].as_u64().unwrap_or(0);
        text += &format!(
            "remediation {} ({rounds} round{})\n",
            remedies.join(", "),
            if rounds == 1 { "" } else { "s" }
        );
    }
    let took = report::human(std::time::Duration::from_secs_f64(seconds));
    text += &match timing {
        Timing::Simulated => format!("simulated  {took}  ·  wall {wall_seconds:.2}s\n"),
        Timing::Real => format!("took       {took}\n"),
    };
    Ok(text)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn finished(status: &str, error: Option<&str>) -> Finished {
        let started = UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        Finished {
            execution_arn: "arn:aws:states:us-east-1:123456789012:execution:fleetprep-bake:b1"
                .into(),
            status: status.into(),
            output: error
                .is_none()
                .then(|| serde_json::json!({"image_id": "ami-0abc"})),
            error: error.map(str::to_string),
            cause: error.map(|_| "AppX package blocks Sysprep".to_string()),
            started,
            stopped: Some(started + Duration::from_secs(25 * 60 + 3)),
            events: Vec::new(),
        }
    }

    #[test]
    fn local_and_aws_bakes_print_the_same_summary_but_for_what_their_time_means() {
        let done = finished("SUCCEEDED", None);
        let local = render_summary(&done, Timing::Simulated, 1.5, OutputFormat::Text).unwrap();
        let aws = render_summary(&done, Timing::Real, 1.5, OutputFormat::Text).unwrap();
        let head = "execution  arn:aws:states:us-east-1:123456789012:execution:fleetprep-bake:b1\n\
                    status     SUCCEEDED\n\
                    image      ami-0abc\n";
        assert_eq!(local, format!("{head}simulated  25m 03s  ·  wall 1.50s\n"));
        assert_eq!(aws, format!("{head}took       25m 03s\n"));
    }

    #[test]
    fn a_failed_bake_prints_its_category_and_cause() {
        let done = finished("FAILED", Some("appx-not-provisioned"));
        let text = render_summary(&done, Timing::Real, 0.0, OutputFormat::Text).unwrap();
        assert!(
            text.contains(
                "status     FAILED\ncategory   appx-not-provisioned\n\
                 cause      AppX package blocks Sysprep\n"
            ),
            "{text}"
        );
        assert!(!text.contains("image"), "{text}");
    }

    #[test]
    fn json_summaries_keep_each_engines_time_key() {
        let done = finished("FAILED", Some("appx-not-provisioned"));
        let parse = |timing| {
            let text = render_summary(&done, timing, 2.0, OutputFormat::Json).unwrap();
            serde_json::from_str::<serde_json::Value>(&text).unwrap()
        };
        let local = parse(Timing::Simulated);
        assert_eq!(local["simulated_seconds"], 1503.0);
        assert_eq!(local["seconds"], serde_json::Value::Null);
        let aws = parse(Timing::Real);
        assert_eq!(aws["seconds"], 1503.0);
        assert_eq!(aws["simulated_seconds"], serde_json::Value::Null);
        for summary in [&local, &aws] {
            assert_eq!(summary["status"], "FAILED");
            assert_eq!(summary["error"], "appx-not-provisioned");
            assert_eq!(summary["cause"], "AppX package blocks Sysprep");
            assert_eq!(summary["wall_seconds"], 2.0);
        }
    }
}
