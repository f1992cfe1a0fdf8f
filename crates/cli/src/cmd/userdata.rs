//! `fleetprep userdata`: the launch-template user data that makes a fleet instance ready for
//! fleetprep (SSM agent running, IMDSv2 only), and with the `user-data` rename method the
//! rename from the instance's `fleetprep:hostname` tag.

use std::path::PathBuf;
use std::process::ExitCode;

use sysprep::userdata::{self, Format};

use crate::fleetconfig::FleetConfig;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print the user data for the group's launch template.
    Render(RenderArgs),
}

#[derive(clap::Args)]
pub struct RenderArgs {
    /// `ec2launch-v2` (YAML, EC2Launch v2) or `powershell` (`<powershell>` tags: EC2Launch v1,
    /// EC2Config, and v2 too).
    #[arg(long, default_value = "ec2launch-v2")]
    format: String,
    /// `user-data`: also rename the instance from its `fleetprep:hostname` tag, read through
    /// instance metadata (the launch template needs `InstanceMetadataTags: enabled`);
    /// `none`: only readiness. Default: from `--config`'s `[naming]`, else `none`.
    #[arg(long)]
    rename: Option<String>,
    /// The fleetprep.toml whose `[naming] rename_method` picks the rename.
    #[arg(long)]
    config: Option<PathBuf>,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Render(args) => {
            let format = match args.format.as_str() {
                "ec2launch-v2" => Format::Ec2LaunchV2,
                "powershell" => Format::PowerShell,
                other => anyhow::bail!("--format {other:?} must be ec2launch-v2 or powershell"),
            };
            let rename = match args.rename.as_deref() {
                Some("user-data") => true,
                Some("none") => false,
                Some(other) => anyhow::bail!("--rename {other:?} must be user-data or none"),
                None => match &args.config {
                    Some(path) => FleetConfig::load(path)?
                        .naming
                        .settings()
                        .renames_from_tag(),
                    None => false,
                },
            };
            print!("{}", userdata::render(format, rename));
            Ok(ExitCode::SUCCESS)
        }
    }
}
