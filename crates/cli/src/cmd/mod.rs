//! One module per subcommand; each exposes `Args`/`Command` (clap) and `run`. The arguments
//! several subcommands share are declared once here and flattened into theirs.

pub mod aws_engine;
pub mod bake;
pub mod bench;
pub mod bench_serve;
pub mod demo;
pub mod deploy;
pub mod executions;
pub mod fleet;
pub mod graph;
pub mod hostname;
pub mod rollout;
pub mod serve;
pub mod states;
pub mod sysprep;
pub mod unattend;
pub mod userdata;

use std::path::PathBuf;

use cloud::sim::Scenario;

use crate::fleetconfig::FleetConfig;
use crate::report;

/// `--scenario` and `--seed`: how the simulated fleet misbehaves and which run of it this is.
/// Shared by every subcommand that runs on the simulated fleet (`demo`, `bake`,
/// `fleet simulate`, `bench fleet`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ScenarioArgs {
    /// Optional fault scenario (TOML) for the simulated fleet.
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Seed for the simulated fleet (default: from the wall clock).
    #[arg(long)]
    pub seed: Option<u64>,
}

impl ScenarioArgs {
    /// Reads the scenario file (naming it in errors), or the default scenario without one.
    /// The seed is `--seed`, else `default_seed`; when neither is given, a scenario file keeps
    /// its own seed and the default scenario gets one from the wall clock (fresh instance ids
    /// on every run).
    pub fn load(&self, default_seed: Option<u64>) -> anyhow::Result<Scenario> {
        let seed = self.seed.or(default_seed);
        let mut scenario = match &self.scenario {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cannot read scenario {}: {e}", path.display()))?;
                Scenario::from_toml(&text, &path.display().to_string())?
            }
            None => Scenario::default(),
        };
        if self.scenario.is_none() || seed.is_some() {
            scenario.seed = report::seed_or_now(seed);
        }
        Ok(scenario)
    }
}

/// An optional `--config` plus [`ScenarioArgs`]: what `demo` and `fleet simulate` share (`bake`
/// requires its config, so it flattens only [`ScenarioArgs`]).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SimulatedFleetArgs {
    /// Optional config file (see examples/fleetprep.toml); defaults work without one.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub sim: ScenarioArgs,
}

impl SimulatedFleetArgs {
    /// The config file, or the defaults without one.
    pub fn config(&self) -> anyhow::Result<FleetConfig> {
        match &self.config {
            Some(path) => Ok(FleetConfig::load(path)?),
            None => Ok(FleetConfig::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;
    use crate::{Cli, Command};

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from([&["fleetprep"], args].concat())
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .command
    }

    const SIM_FLAGS: [&str; 4] = ["--scenario", "faults.toml", "--seed", "7"];

    fn assert_sim(sim: &ScenarioArgs) {
        assert_eq!(sim.scenario, Some(PathBuf::from("faults.toml")));
        assert_eq!(sim.seed, Some(7));
    }

    #[test]
    fn every_simulated_fleet_subcommand_takes_the_same_flags() {
        let config = ["--config", "fleetprep.toml"];
        let Command::Demo(demo) = parse(&[&["demo"], &config[..], &SIM_FLAGS[..]].concat()) else {
            panic!("not demo")
        };
        assert_eq!(demo.fleet.config, Some(PathBuf::from("fleetprep.toml")));
        assert_sim(&demo.fleet.sim);
        let Command::Fleet(fleet::Command::Simulate(simulate)) =
            parse(&[&["fleet", "simulate"], &config[..], &SIM_FLAGS[..]].concat())
        else {
            panic!("not fleet simulate")
        };
        assert_eq!(simulate.fleet.config, Some(PathBuf::from("fleetprep.toml")));
        assert_sim(&simulate.fleet.sim);
        let Command::Bake(bake) = parse(&[&["bake"], &config[..], &SIM_FLAGS[..]].concat()) else {
            panic!("not bake")
        };
        assert_sim(&bake.sim);
        // `bake` alone requires its config.
        assert!(Cli::try_parse_from(["fleetprep", "bake"]).is_err());
    }

    #[test]
    fn seed_help_names_each_subcommands_default() {
        let cli = Cli::command();
        let seed_help = |path: &[&str]| {
            let mut command = &cli;
            for name in path {
                command = command.find_subcommand(name).unwrap();
            }
            command
                .get_arguments()
                .find(|a| a.get_id() == "seed")
                .and_then(|a| a.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default()
        };
        assert!(seed_help(&["demo"]).contains("wall clock"));
        assert!(seed_help(&["bake"]).contains("wall clock"));
        assert!(seed_help(&["fleet", "simulate"]).contains("default: 1"));
    }

    #[test]
    fn the_seed_is_the_flag_else_the_subcommands_default_else_the_scenario_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("faults.toml");
        std::fs::write(&file, "seed = 42\n").unwrap();
        let with_file = |seed| ScenarioArgs {
            scenario: Some(file.clone()),
            seed,
        };
        assert_eq!(with_file(None).load(None).unwrap().seed, 42);
        assert_eq!(with_file(None).load(Some(1)).unwrap().seed, 1);
        assert_eq!(with_file(Some(7)).load(Some(1)).unwrap().seed, 7);
        let without_file = ScenarioArgs {
            scenario: None,
            seed: Some(7),
        };
        assert_eq!(without_file.load(None).unwrap().seed, 7);
        let missing = ScenarioArgs {
            scenario: Some(dir.path().join("absent.toml")),
            seed: None,
        };
        let error = missing.load(None).unwrap_err().to_string();
        assert!(
            error.starts_with("cannot read scenario ") && error.contains("absent.toml"),
            "{error}"
        );
    }
}
