//! `fleetprep sysprep`: diagnose failures, print the generated scripts and commands.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use sysprep::agent::{LaunchAgent, detection_script};
use sysprep::commands::{
    AfterSysprep, NameSource, RenameMethod, RenameRestart, SysprepOptions, rename_commands_with,
    sysprep_commands,
};
use sysprep::diagnose::{Category, Diagnoser, DiagnosisContext};
use sysprep::hostname::Hostname;
use sysprep::preflight::{Severity, check_output, preflight_script};

use crate::output::OutputFormat;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Classify a Sysprep failure from Panther logs and EC2 console output.
    #[command(after_help = categories_help())]
    Diagnose(DiagnoseArgs),
    /// Print the pre-flight check script (PowerShell; prints one JSON line).
    PreflightScript(PreflightScriptArgs),
    /// Evaluate the pre-flight script's output; exits 1 when a finding blocks Sysprep.
    PreflightCheck(PreflightCheckArgs),
    /// Print the launch-agent detection script (PowerShell; prints one JSON line).
    DetectScript,
    /// Print the command sequence that generalizes and shuts down an instance.
    #[command(name = "command")]
    Sequence(CommandArgs),
    /// Print the launch-time rename command (Rename-Computer or EC2Launch v2 setHostName).
    Rename(RenameArgs),
}

#[derive(clap::Args)]
pub struct DiagnoseArgs {
    /// A Panther log (setupact.log, setuperr.log); repeat for several.
    #[arg(long = "log", value_name = "FILE")]
    logs: Vec<PathBuf>,
    /// EC2 console output (GetConsoleOutput, decoded).
    #[arg(long, value_name = "FILE")]
    console: Option<PathBuf>,
    /// The workflow gave up waiting for Sysprep.
    #[arg(long)]
    timed_out: bool,
    /// SSM reported the agent offline when diagnostics were collected.
    #[arg(long)]
    agent_offline: bool,
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
}

#[derive(clap::Args)]
pub struct PreflightScriptArgs {
    /// The answer file Sysprep will use (default: every launch agent's location).
    #[arg(long, value_name = "PATH")]
    answer_file: Option<String>,
}

#[derive(clap::Args)]
pub struct PreflightCheckArgs {
    /// The pre-flight script's standard output.
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum After {
    Shutdown,
    Reboot,
    Quit,
}

#[derive(clap::Args)]
pub struct CommandArgs {
    /// The launch agent: v2 (EC2Launch v2), v1 (EC2Launch), ec2config, none (plain sysprep.exe).
    #[arg(long, value_parser = parse_agent)]
    agent: LaunchAgent,
    /// What Windows does after Sysprep.
    #[arg(long, value_enum, default_value = "shutdown")]
    after: After,
    /// EC2Launch v2: clean the agent's instance logs first.
    #[arg(long)]
    clean: bool,
    /// EC2Launch v2: do not wait for the agent's running tasks (--block).
    #[arg(long)]
    no_block: bool,
    /// Run Sysprep in the command itself instead of detached (the shutdown cuts the command).
    #[arg(long)]
    attached: bool,
    /// Answer file for plain sysprep.exe.
    #[arg(long, value_name = "PATH")]
    unattend: Option<String>,
    /// Plain sysprep.exe /mode:vm.
    #[arg(long)]
    mode_vm: bool,
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Method {
    /// Rename-Computer (any launch agent).
    RenameComputer,
    /// EC2Launch v2's setHostName task in agent-config.yml.
    SetHostName,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Restart {
    /// `exit 3010`: SSM Run Command reboots and runs the command again.
    Ssm,
    /// Restart-Computer (outside SSM).
    RestartComputer,
}

#[derive(clap::Args)]
pub struct RenameArgs {
    /// The new computer name (checked against the Windows rules).
    #[arg(long, allow_hyphen_values = true)]
    name: String,
    /// What renames the computer.
    #[arg(long, value_enum, default_value = "rename-computer")]
    method: Method,
    /// How the rename takes effect.
    #[arg(long, value_enum, default_value = "ssm")]
    restart: Restart,
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
}

/// Every category `diagnose` can answer, with whether a new bake can succeed without a fix.
fn categories_help() -> String {
    let mut help = String::from("Categories:\n");
    for category in Category::ALL {
        help.push_str(&format!(
            "  {:<22} {}\n",
            category.as_str(),
            if category.retriable() {
                "retriable"
            } else {
                "needs a fix"
            }
        ));
    }
    help
}

fn parse_agent(value: &str) -> Result<LaunchAgent, String> {
    value.parse()
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Diagnose(args) => diagnose(args),
        Command::PreflightScript(args) => {
            print!("{}", preflight_script(args.answer_file.as_deref()));
            Ok(ExitCode::SUCCESS)
        }
        Command::PreflightCheck(args) => preflight_check(args),
        Command::DetectScript => {
            print!("{}", detection_script());
            Ok(ExitCode::SUCCESS)
        }
        Command::Sequence(args) => print_command(args),
        Command::Rename(args) => print_rename(args),
    }
}

fn open(path: &Path) -> anyhow::Result<BufReader<File>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(BufReader::new(file))
}

fn diagnose(args: DiagnoseArgs) -> anyhow::Result<ExitCode> {
    if args.logs.is_empty() && args.console.is_none() {
        anyhow::bail!("give at least one --log FILE or --console FILE");
    }
    let mut diagnoser = Diagnoser::new();
    for log in &args.logs {
        diagnoser
            .read_log(open(log)?)
            .with_context(|| format!("reading {}", log.display()))?;
    }
    if let Some(console) = &args.console {
        diagnoser
            .read_console(open(console)?)
            .with_context(|| format!("reading {}", console.display()))?;
    }
    let context = DiagnosisContext {
        timed_out: args.timed_out,
        agent_online: args.agent_offline.then_some(false),
    };
    let progress = diagnoser.progress().clone();
    let diagnosis = diagnoser.finish(&context);
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&diagnosis)?),
        OutputFormat::Text => {
            println!(
                "category: {} ({})",
                diagnosis.category,
                if diagnosis.retriable {
                    "retriable"
                } else {
                    "not retriable"
                }
            );
            println!("remediation: {}", diagnosis.remediation);
            println!(
                "progress: {} log lines ({} errors), {} console lines, sysprep configuration complete: {}, image state: {}",
                progress.log_lines,
                progress.error_lines,
                progress.console_lines,
                if progress.sysprep_configuration_complete {
                    "yes"
                } else {
                    "no"
                },
                progress
                    .image_state
                    .as_ref()
                    .map_or("unknown", |s| s.as_str()),
            );
            if !diagnosis.evidence.is_empty() {
                println!("evidence:");
                for line in &diagnosis.evidence {
                    println!("  {line}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn preflight_check(args: PreflightCheckArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    let result = check_output(&text).with_context(|| args.input.display().to_string())?;
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&result)?),
        OutputFormat::Text => {
            if result.findings.is_empty() {
                println!("no findings: Sysprep can run");
            }
            for finding in &result.findings {
                let severity = match finding.severity {
                    Severity::Block => "BLOCK",
                    Severity::Warn => "warn ",
                };
                println!("{severity} {}: {}", finding.check, finding.message);
                println!("      fix: {}", finding.remediation);
                for evidence in &finding.evidence {
                    println!("      - {evidence}");
                }
            }
        }
    }
    Ok(if result.blocked {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_command(args: CommandArgs) -> anyhow::Result<ExitCode> {
    let options = SysprepOptions {
        after: match args.after {
            After::Shutdown => AfterSysprep::Shutdown,
            After::Reboot => AfterSysprep::Reboot,
            After::Quit => AfterSysprep::Quit,
        },
        clean: args.clean,
        block: !args.no_block,
        detach: !args.attached,
        unattend_path: args.unattend,
        mode_vm: args.mode_vm,
    };
    let sequence = sysprep_commands(args.agent, &options)?;
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&sequence)?),
        OutputFormat::Text => print!("{}", sequence.script()),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_rename(args: RenameArgs) -> anyhow::Result<ExitCode> {
    let name = Hostname::parse(&args.name)
        .map_err(|reason| anyhow::anyhow!("--name {:?}: {reason}", args.name))?;
    let method = match args.method {
        Method::RenameComputer => RenameMethod::RenameComputer,
        Method::SetHostName => RenameMethod::Ec2LaunchSetHostName,
    };
    let restart = match args.restart {
        Restart::Ssm => RenameRestart::SsmExit3010,
        Restart::RestartComputer => RenameRestart::RestartComputer,
    };
    let sequence = rename_commands_with(NameSource::Literal(&name), method, restart);
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&sequence)?),
        OutputFormat::Text => print!("{}", sequence.script()),
    }
    Ok(ExitCode::SUCCESS)
}
