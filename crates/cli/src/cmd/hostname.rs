//! `fleetprep hostname`: Windows computer-name checks and naming-pattern previews.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use sysprep::hostname::{CandidateSpace, HostnameConfig, HostnamePolicy, NameContext, validate};

use crate::output::OutputFormat;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Check a name against the Windows rules: exit 0 if valid, else print the reason, exit 1.
    Check {
        #[arg(allow_hyphen_values = true)]
        name: String,
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Check a naming pattern and print the first names it produces.
    Preview(PreviewArgs),
}

#[derive(clap::Args)]
pub struct PreviewArgs {
    /// A config file with a [hostname] table (instead of --pattern).
    #[arg(long, value_name = "FILE", conflicts_with = "pattern")]
    config: Option<PathBuf>,
    /// e.g. "{prefix}-{zone}{seq:4}".
    #[arg(long)]
    pattern: Option<String>,
    #[arg(long, default_value = "")]
    prefix: String,
    #[arg(long, default_value = "")]
    group: String,
    /// Availability zone for {zone}.
    #[arg(long, default_value = "us-east-1a")]
    zone: String,
    #[arg(long, default_value_t = 5)]
    count: u64,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check { name, output } => {
            let result = validate(&name);
            match output {
                OutputFormat::Json => println!(
                    "{}",
                    serde_json::json!({
                        "name": name,
                        "valid": result.is_ok(),
                        "reason": result.as_ref().err().map(ToString::to_string),
                    })
                ),
                OutputFormat::Text => match &result {
                    Ok(()) => println!("{name:?} is a valid Windows computer name"),
                    Err(reason) => {
                        println!("{name:?} is not a valid Windows computer name: {reason}")
                    }
                },
            }
            Ok(if result.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Preview(args) => preview(args),
    }
}

fn preview(args: PreviewArgs) -> anyhow::Result<ExitCode> {
    let policy = match (&args.config, &args.pattern) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            sysprep::config::load_hostname_policy(&text, &path.display().to_string())?
        }
        (None, Some(pattern)) => HostnamePolicy::new(&HostnameConfig {
            pattern: pattern.clone(),
            prefix: args.prefix.clone(),
            group: args.group.clone(),
            sequence_start: 1,
        })?,
        (None, None) => anyhow::bail!("give --pattern PATTERN or --config FILE"),
    };
    println!(
        "pattern {:?}: {} names",
        policy.pattern(),
        policy.capacity()
    );
    let first = match policy.candidate_space() {
        CandidateSpace::Sequence { first, .. } => first,
        CandidateSpace::Hash { .. } => 0,
    };
    for i in 0..args.count.min(policy.capacity()) {
        let instance_id = format!("i-{:017x}", i + 1);
        let context = NameContext {
            instance_id: &instance_id,
            availability_zone: Some(&args.zone),
        };
        let n = match policy.candidate_space() {
            CandidateSpace::Sequence { .. } => first + i,
            CandidateSpace::Hash { .. } => 0,
        };
        println!("  {instance_id} -> {}", policy.candidate(n, &context)?);
    }
    Ok(ExitCode::SUCCESS)
}
