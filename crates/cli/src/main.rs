//! `fleetprep`: bake Windows golden images, name and release Auto Scaling instances, roll out
//! new images, and run every one of those state machines locally on the embedded engine.
//!
//! `main` is deliberately thin (the ripgrep habit): parse arguments, call one fallible
//! function per subcommand, print the error and pick the exit code. Each subcommand lives in
//! its own module under `cmd/`, and the CLI is the only crate that prints or reads the
//! environment.

mod cmd;
mod fleetconfig;
mod output;
mod report;

use std::process::ExitCode;

/// fleetprep runs and exits: returning freed memory to the OS only to fault it in (zeroed)
/// again moments later cost a tenth of a 10,000-instance simulation. mimalloc's option numbers
/// (`mi_option_e` in mimalloc.h, the same in its v2 and v3): 15 is `purge_delay` (-1: never
/// purge), 6 is `allow_large_os_pages` (0: no transparent huge pages, which are zeroed 2 MiB
/// at a time).
fn keep_freed_memory() {
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: mi_option_set only stores an integer option; both options are read by the
    // allocator when it next acquires or releases OS memory, at any time.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
        libmimalloc_sys::mi_option_set(libmimalloc_sys::mi_option_large_os_pages, 0);
    }
}

/// `fleetprep … | head` must end quietly when the reader goes away, as Unix tools do. Rust
/// ignores SIGPIPE, which turns every later `println!` into a panic on a broken pipe; the
/// default action instead ends the process at once (the shell reports 141), and nothing it
/// was writing to stdout can be lost to anyone, since no one reads it any more.
fn die_quietly_on_a_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to SIG_DFL installs no handler; it is done before
    // any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

// A 10,000-instance simulation allocates and frees tens of millions of small JSON values;
// glibc's allocator spent a third of that run in malloc/free, mimalloc a fraction of it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "fleetprep", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole job locally: bake an image, scale a simulated group, roll out.
    Demo(cmd::demo::Args),
    /// Bake a golden AMI from a config file.
    Bake(cmd::bake::Args),
    /// Roll an image out to the group (launch-template version + instance refresh).
    Rollout(cmd::rollout::Args),
    /// Drive the simulated fleet.
    #[command(subcommand)]
    Fleet(cmd::fleet::Command),
    /// Inspect executions stored by the embedded engine (or on AWS with --engine aws).
    #[command(subcommand)]
    Executions(cmd::executions::Command),
    /// Draw a workflow's state machine as Mermaid or Graphviz.
    Graph(cmd::graph::Args),
    /// Amazon States Language tools: validate and execute definitions.
    #[command(subcommand)]
    States(cmd::states::Command),
    /// Sysprep tools: diagnose failures, print pre-flight scripts and agent commands.
    #[command(subcommand)]
    Sysprep(cmd::sysprep::Command),
    /// Render unattend.xml answer files.
    #[command(subcommand)]
    Unattend(cmd::unattend::Command),
    /// Launch-template user data for fleet instances (SSM agent running, IMDSv2 only).
    #[command(subcommand)]
    Userdata(cmd::userdata::Command),
    /// Check hostnames against the Windows rules.
    #[command(subcommand)]
    Hostname(cmd::hostname::Command),
    /// Deploy to AWS with CloudFormation; render the template; package the Lambda.
    Deploy(cmd::deploy::Args),
    /// Benchmarks that print figures (never timed assertions).
    #[command(subcommand)]
    Bench(cmd::bench::Command),
    /// Serve the embedded engine as a Step Functions API endpoint (AWS CLI, SDKs).
    Serve(cmd::serve::Args),
}

fn main() -> ExitCode {
    die_quietly_on_a_closed_pipe();
    keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => cmd::demo::run(args),
        Command::Bake(args) => cmd::bake::run(args),
        Command::Fleet(command) => cmd::fleet::run(command),
        Command::Rollout(args) => cmd::rollout::run(args),
        Command::Executions(command) => cmd::executions::run(command),
        Command::Graph(args) => cmd::graph::run(args),
        Command::States(command) => cmd::states::run(command),
        Command::Sysprep(command) => cmd::sysprep::run(command),
        Command::Unattend(command) => cmd::unattend::run(command),
        Command::Hostname(command) => cmd::hostname::run(command),
        Command::Userdata(command) => cmd::userdata::run(command),
        Command::Bench(command) => cmd::bench::run(command),
        Command::Deploy(args) => cmd::deploy::run(args),
        Command::Serve(args) => cmd::serve::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
