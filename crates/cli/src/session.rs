//! Setting up a local run: which engine runs it, where the embedded engine keeps executions,
//! the virtual clock, the simulated fleet, and fresh execution names and seeds. Every local
//! subcommand (`demo`, `bake`, `rollout`, `fleet simulate`, `states exec`, `executions`) starts
//! here, so a run started by one command is found by the others.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use clock::{Clock, SystemClock};
use localfleet::LocalFleet;

/// Where executions run: the embedded engine (default) or AWS Step Functions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    #[default]
    Local,
    Aws,
}

/// Where the embedded engine keeps executions: `--store`, else `$FLEETPREP_STORE`, else
/// `fleetprep/engine.sqlite3` in the user's data directory (`$XDG_DATA_HOME` or
/// `~/.local/share` on Linux, `~/Library/Application Support` on macOS, `%APPDATA%` on
/// Windows), or under `./.fleetprep` when the platform names none.
pub fn store_path(flag: Option<PathBuf>) -> PathBuf {
    if let Some(path) = flag {
        return path;
    }
    if let Some(path) = std::env::var_os("FLEETPREP_STORE") {
        return PathBuf::from(path);
    }
    match dirs::data_dir() {
        Some(base) => base.join("fleetprep").join("engine.sqlite3"),
        None => PathBuf::from(".fleetprep").join("engine.sqlite3"),
    }
}

/// Creates the store's directory.
pub fn prepare_store(path: &std::path::Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the store directory {}: {e}",
                parent.display()
            )
        })?;
    }
    Ok(())
}

/// A virtual clock starting now (simulated time then runs ahead of the wall clock).
pub fn virtual_clock_now() -> Arc<clock::VirtualClock> {
    Arc::new(clock::VirtualClock::new(SystemClock.now()))
}

/// The time step of the simulated fleet's clock: timers due within one second fire together
/// (see [`clock::VirtualClock::ticking`]). Every poll of the workflows waits whole seconds,
/// so only jittered retries are moved, by less than a second, and a large fleet's run stops at
/// one instant per simulated second instead of one per retry.
pub const SIMULATION_TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// The simulated fleet the local subcommands (`demo`, `bake`, `fleet simulate`) run on: the
/// embedded engine with the config's naming policy, on a virtual clock starting now and
/// stepping in [`SIMULATION_TICK`]s. The
/// caller picks the hostname pattern (`fleet simulate` widens it for large groups), the
/// engine store (`None` keeps executions in memory) and whether commands are batched.
pub async fn simulated_fleet(
    config: &crate::fleetconfig::FleetConfig,
    scenario: cloud::sim::Scenario,
    hostname_pattern: String,
    engine_store: Option<PathBuf>,
    batching: bool,
) -> anyhow::Result<(LocalFleet, Arc<clock::VirtualClock>)> {
    let clock = Arc::new(clock::VirtualClock::ticking(
        SystemClock.now(),
        SIMULATION_TICK,
    ));
    let options = fleet_options(config, scenario, hostname_pattern, engine_store, batching);
    let fleet = LocalFleet::simulated(options, clock.clone()).await?;
    Ok((fleet, clock))
}

/// The local fleet the config describes (its naming settings and hostname prefix), with the
/// caller's scenario, hostname pattern, engine store and batching (see [`simulated_fleet`]).
pub fn fleet_options(
    config: &crate::fleetconfig::FleetConfig,
    scenario: cloud::sim::Scenario,
    hostname_pattern: String,
    engine_store: Option<PathBuf>,
    batching: bool,
) -> localfleet::FleetOptions {
    localfleet::FleetOptions {
        scenario,
        settings: config.naming.settings(),
        hostname_pattern,
        hostname_prefix: config.naming.prefix.clone(),
        engine_store,
        batching,
        ..localfleet::FleetOptions::default()
    }
}

/// A seed from the wall clock when none is given, so repeated runs get fresh instance ids.
/// An execution name not yet used in the store: `{prefix}-{n}` with the smallest free `n`.
/// Execution names are unique per state machine (StartExecution: "ExecutionAlreadyExists"),
/// and one store keeps every run, so a second run with the same seed needs a new name.
pub fn fresh_execution_name(engine: &engine::Engine, prefix: &str) -> anyhow::Result<String> {
    let taken: std::collections::BTreeSet<String> = engine
        .list_executions(None)?
        .into_iter()
        .map(|e| e.name)
        .collect();
    Ok((0u64..)
        .map(|n| format!("{prefix}-{n}"))
        .find(|name| !taken.contains(name))
        .unwrap_or_else(|| prefix.to_owned()))
}

pub fn seed_or_now(seed: Option<u64>) -> u64 {
    seed.unwrap_or_else(|| {
        SystemClock
            .now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64
    })
}
