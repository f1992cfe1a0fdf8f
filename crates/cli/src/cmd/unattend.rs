//! `fleetprep unattend`: render answer files and the on-instance writer script.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use sysprep::agent::LaunchAgent;
use sysprep::merge::merge;
use sysprep::unattend::{merge_script, render, writer_script};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Render unattend.xml from the [unattend] table of a config file (never with a password);
    /// with --base, merge the settings into a launch agent's own answer file instead.
    Render(RenderArgs),
}

#[derive(clap::Args)]
pub struct RenderArgs {
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The launch agent's own answer file (EC2Launch v2 sysprep\unattend.xml, EC2Launch v1
    /// Sysprep\Unattend.xml, EC2Config sysprep2008.xml): fleetprep's settings are merged into
    /// it and everything else is kept (RDP commands, locales, device settings).
    #[arg(long, value_name = "AGENT_FILE")]
    base: Option<PathBuf>,
    /// Print the PowerShell that writes the file on the instance (fetching the administrator
    /// password there) instead of the XML; it merges into the agent's file on disk.
    #[arg(long, conflicts_with = "base")]
    script: bool,
    /// Where the script writes the file (default: the launch agent's answer-file location).
    #[arg(long, value_name = "PATH", requires = "script")]
    destination: Option<String>,
    /// Launch agent whose answer-file location the script writes to.
    #[arg(long, value_parser = parse_agent, default_value = "v2")]
    agent: LaunchAgent,
}

fn parse_agent(value: &str) -> Result<LaunchAgent, String> {
    value.parse()
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Render(args) => {
            let text = std::fs::read_to_string(&args.config)
                .with_context(|| format!("cannot read {}", args.config.display()))?;
            let config = sysprep::config::load_unattend(&text, &args.config.display().to_string())?;
            let rendered = match &args.base {
                Some(base) => {
                    let text = std::fs::read_to_string(base)
                        .with_context(|| format!("cannot read {}", base.display()))?;
                    merge(&text, &config)
                        .with_context(|| format!("cannot merge into {}", base.display()))?
                }
                None => render(&config)?,
            };
            for warning in &rendered.warnings {
                eprintln!("warning: {warning}");
            }
            if args.script {
                // A launch agent's file is merged into on disk; without one fleetprep writes
                // the whole file.
                match args.destination {
                    Some(destination) => print!("{}", writer_script(&config, &destination)?),
                    None if args.agent == LaunchAgent::None => {
                        print!("{}", writer_script(&config, args.agent.unattend_path())?)
                    }
                    None => print!("{}", merge_script(&config, args.agent.unattend_path())?),
                }
            } else {
                print!("{}", rendered.xml);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
