//! `fleetprep serve`: starts the Step Functions API endpoint (crate `serve`) and runs until
//! interrupted. Everything else lives in that crate; see docs/local-endpoint.md.
//!
//! `--fleet simulated` is wired here, through [`serve::Server::start_with`], so the `serve`
//! crate does not depend on the simulator: the four workflows are deployed as the server's
//! state machines `fleetprep-<workflow>` (the names `--engine aws` looks for by default),
//! calling a function ARN under which `localfleet` registers the handlers, in process, against
//! the simulated fleet on the server's clock.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::cmd::SimulatedFleetArgs;
use crate::cmd::aws_engine::DEFAULT_STATE_MACHINE_PREFIX;
use crate::fleetconfig::FleetConfig;
use crate::session;

/// What `--fleet` serves.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FleetKind {
    /// fleetprep's own workflows against the simulated fleet.
    Simulated,
}

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
    /// Also serve fleetprep's own workflows (bake, name-on-launch, release-on-terminate,
    /// rollout) as the state machines `fleetprep-<workflow>`, their tasks run in process
    /// against the simulated fleet (`fleetprep bake --engine aws --endpoint-url URL` runs on
    /// it). Implies --virtual-clock: a bake waits minutes of simulated time. The simulated
    /// fleet lives in memory, even with --store.
    #[arg(long, value_enum)]
    pub fleet: Option<FleetKind>,
    /// The region of the --fleet state machines (other state machines live in the region
    /// each request is signed for).
    #[arg(long, default_value = serve::protocol::DEFAULT_REGION, requires = "fleet")]
    pub fleet_region: String,
    /// With --fleet: instances the simulated Auto Scaling group launches at start, each
    /// named by a `fleetprep-name-on-launch` execution (something for a rollout to refresh).
    #[arg(long, default_value_t = 0, requires = "fleet")]
    pub instances: usize,
    /// With --fleet: the naming policy and Auto Scaling group (--config), faults (--scenario)
    /// and seed of the simulated fleet.
    #[command(flatten)]
    pub fleet_config: SimulatedFleetArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let fleet = match args.fleet {
        Some(FleetKind::Simulated) => Some(SimulatedFleet {
            config: args.fleet_config.config()?,
            scenario: args.fleet_config.sim.load(None)?,
            region: args.fleet_region.clone(),
            instances: args.instances,
        }),
        None => {
            let given = &args.fleet_config;
            if given.config.is_some() || given.sim.scenario.is_some() || given.sim.seed.is_some() {
                anyhow::bail!(
                    "--config, --scenario and --seed describe the simulated fleet; add \
                     --fleet simulated to serve it"
                );
            }
            None
        }
    };
    let config = serve::Config {
        listen: Some(SocketAddr::new(args.host, args.port)),
        store: args.store,
        // The simulated fleet's boots, Sysprep runs and polls take minutes of its time.
        virtual_clock: args.virtual_clock || fleet.is_some(),
        account: Some(args.account),
        mock_config: args.mock_config,
        lambda_endpoint: args.lambda_endpoint,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let server = serve::Server::start_with(config, |setup| async move {
            match fleet {
                Some(fleet) => fleet.serve(setup).await,
                None => Ok(()),
            }
        })
        .await?;
        if let Some((kept, format)) = server.engine().store_kept_aside() {
            // Not silent: the store starts empty, and the user must learn why.
            eprintln!(
                "fleetprep serve: the store was written in store format {format} by another \
                 fleetprep; its executions were moved to {} (open it with that fleetprep) and \
                 a new store was started",
                kept.display()
            );
        }
        // The one line scripts wait for (and read the port from, with --port 0).
        println!("fleetprep serve: listening on http://{}", server.addr());
        tokio::signal::ctrl_c().await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `--fleet simulated`: what to build once the server's engine is open.
struct SimulatedFleet {
    config: FleetConfig,
    scenario: cloud::sim::Scenario,
    region: String,
    instances: usize,
}

impl SimulatedFleet {
    /// Deploys the four workflows as the server's state machines and registers their
    /// function, the handlers on the simulated fleet, under the function ARN they call.
    async fn serve(self, setup: serve::Setup) -> Result<(), serve::ServeError> {
        let failed = |context: &str, source: Box<dyn std::error::Error + Send + Sync>| {
            serve::ServeError::Setup {
                context: format!("--fleet simulated: {context}"),
                source,
            }
        };
        let account = setup.account().to_owned();
        let region = &self.region;
        let function_arn = format!("arn:aws:lambda:{region}:{account}:function:fleetprep");
        // Recorded, not assumed (docs/local-endpoint.md, "What differs from AWS").
        let role_arn = format!("arn:aws:iam::{account}:role/fleetprep-local");
        let mut state_machines = BTreeMap::new();
        for workflow in workflows::WORKFLOWS {
            let definition = workflows::definition(workflow, &function_arn)
                .map_err(|e| failed(&format!("workflow {workflow}"), Box::new(e)))?;
            let name = format!("{DEFAULT_STATE_MACHINE_PREFIX}{workflow}");
            let arn = setup
                .deploy_state_machine(region, &name, &definition, &role_arn)
                .await?;
            state_machines.insert(workflow.to_owned(), arn);
        }
        let options = session::fleet_options(
            &self.config,
            self.scenario,
            self.config.naming.pattern.clone(),
            None,
            true,
        );
        let deployed = localfleet::Deployed {
            function_arn,
            state_machines,
        };
        let fleet = localfleet::LocalFleet::serving(options, setup.engine().clone(), deployed)
            .await
            .map_err(|e| failed("the simulated fleet", Box::new(e)))?;
        fleet.sim().create_group(self.config.simulated_group());
        if self.instances > 0 {
            fleet
                .sim()
                .set_desired_capacity(&self.config.group.name, self.instances)
                .map_err(|e| failed("scaling the simulated group", Box::new(e)))?;
            // Their launch hooks start name-on-launch executions, which run once the driver
            // starts.
            fleet.pump_lifecycle_events();
        }
        Ok(())
    }
}
