//! `fleetprep demo`: the whole job on a laptop, no AWS account needed. Bakes a golden image on
//! the simulated fleet, scales a group to N instances that each get a unique hostname through
//! the launch lifecycle hook, then rolls the group onto the baked image.

use std::path::PathBuf;
use std::process::ExitCode;

use clock::Clock;
use engine::Status;
use serde_json::json;

use crate::cmd::SimulatedFleetArgs;
use crate::output::OutputFormat;
use crate::report::{self, LiveProgress, Stopwatch};

#[derive(clap::Args)]
pub struct Args {
    /// How many instances the simulated group scales to.
    #[arg(long, default_value_t = 20)]
    pub instances: usize,
    #[command(flatten)]
    pub fleet: SimulatedFleetArgs,
    /// Engine store (default: $FLEETPREP_STORE, else fleetprep/engine.sqlite3 in the user's
    /// data directory, e.g. ~/.local/share on Linux).
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Keep executions in memory only.
    #[arg(long)]
    pub in_memory: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(demo(args))
}

async fn demo(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.fleet.config()?;
    let scenario = args.fleet.sim.load(None)?;
    let store = if args.in_memory {
        None
    } else {
        let path = report::store_path(args.store.clone());
        report::prepare_store(&path)?;
        Some(path)
    };
    let wall = Stopwatch::start();
    let (fleet, clock) = report::simulated_fleet(
        &config,
        scenario,
        config.naming.pattern.clone(),
        store.clone(),
        true,
    )
    .await?;
    let started = clock.now();
    let quiet = args.output == OutputFormat::Json;
    let mut progress = LiveProgress::new(true, quiet);
    let run_id = format!("{:x}", fleet.sim().scenario().seed & 0xffff_ffff);

    // 1. Bake.
    let mut bake = config.bake.clone();
    if bake.image_id.is_empty() {
        bake.image_id = fleet.sim().base_image_id().into();
    }
    if bake.customization_scripts.is_empty() {
        bake.customization_scripts = vec!["Install-WindowsFeature Web-Server".into()];
    }
    let bake_name = report::fresh_execution_name(fleet.engine(), &format!("demo-bake-{run_id}"))?;
    let bake_arn = fleet
        .engine()
        .start_execution("bake", Some(&bake_name), bake.input())?;
    report::drive(&fleet, &mut progress).await?;
    let baked = fleet.engine().describe(&bake_arn)?;
    let image_id = baked
        .output
        .as_ref()
        .and_then(|o| o["image_id"].as_str())
        .map(str::to_string);

    // 2. Scale out: every instance is named by the launch hook.
    fleet.sim().create_group(config.simulated_group());
    let scaled_at = clock.now();
    fleet
        .sim()
        .set_desired_capacity(&config.group.name, args.instances)?;
    report::drive(&fleet, &mut progress).await?;
    let scaled_took = report::seconds_between(scaled_at, clock.now());

    // 3. Roll out onto the baked image.
    let mut rollout = None;
    if let (Status::Succeeded, Some(image_id)) = (baked.status, image_id.as_deref()) {
        let input = config.rollout_input(image_id).input();
        let arn = fleet.engine().start_execution(
            "rollout",
            Some(&format!("demo-rollout-{run_id}")),
            input,
        )?;
        report::drive(&fleet, &mut progress).await?;
        rollout = Some(fleet.engine().describe(&arn)?);
    }
    progress.finish();

    // Summary.
    let simulated = report::seconds_between(started, clock.now());
    let wall_seconds = wall.elapsed().as_secs_f64();
    let executions = fleet.engine().list_executions(None)?;
    let mut launches = std::collections::HashMap::new();
    for e in executions
        .iter()
        .filter(|e| e.state_machine == "name-on-launch")
    {
        let took = e
            .stop_date
            .map(|stop| report::seconds_between(e.start_date, stop))
            .unwrap_or(0.0);
        launches.insert(
            e.name.trim_start_matches("launch-").to_string(),
            (took, e.status),
        );
    }
    let mut instances = fleet.sim().in_service(&config.group.name);
    instances.sort_by(|a, b| a.computer_name.cmp(&b.computer_name));
    let mut by_status: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>> =
        Default::default();
    for e in &executions {
        *by_status
            .entry(e.state_machine.clone())
            .or_default()
            .entry(e.status.as_str().to_string())
            .or_default() += 1;
    }
    let bake_seconds = baked
        .stop_date
        .map(|s| report::seconds_between(baked.start_date, s))
        .unwrap_or(0.0);
    let rollout_seconds = rollout.as_ref().and_then(|r| {
        r.stop_date
            .map(|s| report::seconds_between(r.start_date, s))
    });
    let names: std::collections::BTreeSet<_> = instances
        .iter()
        .map(|i| i.computer_name.to_ascii_uppercase())
        .collect();
    let collisions = instances.len() - names.len();
    let ok = baked.status == Status::Succeeded
        && rollout
            .as_ref()
            .is_some_and(|r| r.status == Status::Succeeded)
        && instances.len() == args.instances
        && collisions == 0;

    if args.output == OutputFormat::Json {
        let summary = json!({
            "ok": ok,
            "bake": {
                "status": baked.status.as_str(),
                "image_id": image_id,
                "error": baked.error,
                "cause": baked.cause,
                "simulated_seconds": bake_seconds,
            },
            "scale_out": {"instances": args.instances, "simulated_seconds": scaled_took},
            "rollout": rollout.as_ref().map(|r| json!({
                "status": r.status.as_str(),
                "error": r.error,
                "simulated_seconds": rollout_seconds,
            })),
            "instances": instances.iter().map(|i| json!({
                "instance_id": i.instance_id,
                "hostname": i.computer_name,
                "image_id": i.image_id,
                "machine_sid": i.machine_sid,
                "naming_seconds": launches.get(&i.instance_id).map(|l| l.0),
            })).collect::<Vec<_>>(),
            "executions": by_status,
            "collisions": collisions,
            "simulated_seconds": simulated,
            "wall_seconds": wall_seconds,
            "api_calls": fleet.sim().api_calls(),
            "store": store.map(|p| p.display().to_string()),
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!();
        match (&image_id, baked.status) {
            (Some(image), Status::Succeeded) => println!(
                "bake       {image}  ({} simulated)",
                report::human(std::time::Duration::from_secs_f64(bake_seconds))
            ),
            _ => println!(
                "bake       FAILED {}: {}",
                baked.error.clone().unwrap_or_default(),
                baked.cause.clone().unwrap_or_default()
            ),
        }
        println!(
            "scale-out  {} instances named  ({} simulated)",
            instances.len(),
            report::human(std::time::Duration::from_secs_f64(scaled_took))
        );
        if let Some(r) = &rollout {
            println!(
                "rollout    {}  ({} simulated)",
                r.status.as_str(),
                report::human(std::time::Duration::from_secs_f64(
                    rollout_seconds.unwrap_or(0.0)
                ))
            );
        }
        println!();
        let rows: Vec<Vec<String>> = instances
            .iter()
            .map(|i| {
                vec![
                    i.computer_name.clone(),
                    i.instance_id.clone(),
                    i.image_id.clone(),
                    launches
                        .get(&i.instance_id)
                        .map(|l| report::human(std::time::Duration::from_secs_f64(l.0)))
                        .unwrap_or_default(),
                ]
            })
            .collect();
        print!(
            "{}",
            report::table(&["HOSTNAME", "INSTANCE", "IMAGE", "NAMED IN"], &rows)
        );
        println!();
        for (workflow, counts) in &by_status {
            let counts = counts
                .iter()
                .map(|(k, v)| format!("{} {v}", k.to_lowercase()))
                .collect::<Vec<_>>()
                .join(", ");
            println!("{workflow:<22} {counts}");
        }
        println!(
            "\nsimulated time {}  ·  wall time {:.2}s  ·  {} name collisions",
            report::human(std::time::Duration::from_secs_f64(simulated)),
            wall_seconds,
            collisions
        );
        if let Some(path) = &store {
            println!(
                "executions stored in {} (fleetprep executions list)",
                path.display()
            );
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
