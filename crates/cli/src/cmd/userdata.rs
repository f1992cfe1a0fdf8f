//! `fleetprep userdata`: the launch-template user data that makes a fleet instance ready for
//! fleetprep (SSM agent running, IMDSv2 only).

use std::process::ExitCode;

use sysprep::userdata;

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
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Render(args) => {
            let script = userdata::script();
            let text = match args.format.as_str() {
                "ec2launch-v2" => userdata::ec2launch_v2(&script),
                "powershell" => userdata::powershell_tags(&script),
                other => anyhow::bail!("--format {other:?} must be ec2launch-v2 or powershell"),
            };
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
