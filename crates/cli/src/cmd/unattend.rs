//! `fleetprep unattend`: render answer files and the on-instance writer script.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use sysprep::agent::LaunchAgent;
use sysprep::unattend::{render, writer_script};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Render unattend.xml from the [unattend] table of a config file (never with a password).
    Render(RenderArgs),
}

#[derive(clap::Args)]
pub struct RenderArgs {
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Print the PowerShell that writes the file on the instance (fetching the administrator
    /// password there) instead of the XML.
    #[arg(long)]
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
            let rendered = render(&config)?;
            for warning in &rendered.warnings {
                eprintln!("warning: {warning}");
            }
            if args.script {
                let destination = args
                    .destination
                    .unwrap_or_else(|| args.agent.unattend_path().to_owned());
                print!("{}", writer_script(&config, &destination)?);
            } else {
                print!("{}", rendered.xml);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
