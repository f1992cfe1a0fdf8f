//! `fleetprep deploy`: render the stack, package the Lambda, and create or update the stack
//! through a change set.
//!
//! `render` and `package` work in every build (the `deploy` crate has no SDK). Deploying,
//! `delete` and `status` talk to CloudFormation and S3 and need the `aws` feature; without it
//! they say how to get it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use deploy::{Arch, StackOptions};

use crate::fleetconfig::FleetConfig;

/// `fleetprep deploy [SUBCOMMAND]`: without a subcommand, deploys.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub deploy: DeployArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Print the CloudFormation template for a config.
    Render(RenderArgs),
    /// Build the Lambda package (`bootstrap` zip for provided.al2023) from a built bootstrap.
    Package(PackageArgs),
    /// Delete the stack (the hostname table is kept).
    Delete(StackArgs),
    /// Show the stack's status and outputs.
    Status(StackArgs),
}

/// Where the stack is and who calls AWS.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Connection {
    /// AWS region (default: [deploy] region, then the profile or environment).
    #[arg(long)]
    pub region: Option<String>,
    /// Named profile from the shared AWS config.
    #[arg(long)]
    pub profile: Option<String>,
    /// One endpoint for every AWS service (a local endpoint such as moto).
    #[arg(long)]
    pub endpoint_url: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct DeployArgs {
    /// The config file (its [deploy] section chooses the optional parts).
    #[arg(long, required = true)]
    pub config: Option<PathBuf>,
    /// The stack name (default: [deploy] stack).
    #[arg(long)]
    pub stack: Option<String>,
    #[command(flatten)]
    pub connection: Connection,
    /// Deploy this Lambda package (a zip with `bootstrap` at its root) instead of packaging
    /// the bootstrap that scripts/build-lambda built.
    #[arg(long)]
    pub package: Option<PathBuf>,
    /// Execute the change set without asking.
    #[arg(long)]
    pub yes: bool,
}

#[derive(clap::Args, Debug)]
pub struct RenderArgs {
    /// The config file (defaults render deploy/fleetprep.yaml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// `yaml` or `json`.
    #[arg(long, default_value = "yaml")]
    pub format: String,
}

#[derive(clap::Args, Debug)]
pub struct PackageArgs {
    /// The function's architecture.
    #[arg(long, default_value = "x86_64")]
    pub arch: Arch,
    /// The built bootstrap (default: what scripts/build-lambda prints, target/lambda/bootstrap).
    #[arg(long)]
    pub bootstrap: Option<PathBuf>,
    /// Where to write the zip (default: target/lambda/bootstrap-<arch>.zip).
    #[arg(long)]
    pub output: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct StackArgs {
    /// The stack name (default: [deploy] stack of --config).
    #[arg(long)]
    pub stack: Option<String>,
    /// The config whose [deploy] section names the stack and its region.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub connection: Connection,
}

impl StackArgs {
    /// The stack name and the connection, the config's `[deploy]` stack and region filling
    /// what the command line left out. Only the AWS implementation reads a stack (a build
    /// without the `aws` feature answers how to get it).
    #[cfg_attr(not(feature = "aws"), allow(dead_code))]
    pub fn resolve(&self) -> anyhow::Result<(String, Connection)> {
        let config = load_config(self.config.as_deref())?;
        let stack = stack_name(self.stack.as_deref(), &config.deploy)?;
        let mut connection = self.connection.clone();
        if connection.region.is_none() {
            connection.region = config.deploy.region.clone();
        }
        Ok((stack, connection))
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(Command::Render(render)) => run_render(render),
        Some(Command::Package(package)) => run_package(package),
        Some(Command::Delete(stack)) => imp::delete(stack),
        Some(Command::Status(stack)) => imp::status(stack),
        None => imp::deploy(args.deploy),
    }
}

fn load_config(path: Option<&Path>) -> anyhow::Result<FleetConfig> {
    match path {
        Some(path) => FleetConfig::load(path),
        None => Ok(FleetConfig::default()),
    }
}

/// The template for a config (its schedule starts a bake of its `[bake]`).
pub fn template(config: &FleetConfig) -> anyhow::Result<deploy::Template> {
    let input = config.bake.input();
    deploy::render(&config.deploy, Some(&input)).map_err(anyhow::Error::msg)
}

fn run_render(args: RenderArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(args.config.as_deref())?;
    let template = template(&config)?;
    let text = match args.format.as_str() {
        "yaml" => template.to_yaml().map_err(anyhow::Error::msg)?,
        "json" => template.to_json_pretty(),
        other => anyhow::bail!("--format {other:?} must be yaml or json"),
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// The zip for a bootstrap file, after checking the binary can run on the function.
pub fn package_bootstrap(path: &Path, arch: Arch) -> anyhow::Result<Vec<u8>> {
    let data = std::fs::read(path).with_context(|| {
        format!(
            "cannot read the bootstrap {}; build it with scripts/build-lambda (or pass \
             --bootstrap / --package)",
            path.display()
        )
    })?;
    deploy::package::check_bootstrap(&path.display().to_string(), &data, arch)?;
    Ok(deploy::package::zip_bootstrap(&data)?)
}

fn default_bootstrap() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into());
    PathBuf::from(target).join("lambda/bootstrap")
}

fn run_package(args: PackageArgs) -> anyhow::Result<ExitCode> {
    let bootstrap = args.bootstrap.unwrap_or_else(default_bootstrap);
    let zip = package_bootstrap(&bootstrap, args.arch)?;
    let output = args.output.unwrap_or_else(|| {
        bootstrap
            .parent()
            .unwrap_or(Path::new("."))
            .join(format!("bootstrap-{}.zip", args.arch.as_str()))
    });
    std::fs::write(&output, &zip).with_context(|| format!("cannot write {}", output.display()))?;
    println!(
        "{} ({} bytes, {}; key {})",
        output.display(),
        zip.len(),
        args.arch.as_str(),
        deploy::package::package_key(&zip)
    );
    Ok(ExitCode::SUCCESS)
}

/// The stack parameters from the config.
#[cfg_attr(not(feature = "aws"), allow(dead_code))]
pub fn parameters(
    config: &FleetConfig,
    code_bucket: &str,
    code_key: &str,
) -> deploy::options::StackParameters {
    let naming = &config.naming;
    let as_text = |value: serde_json::Value| value.as_str().unwrap_or_default().to_owned();
    deploy::options::StackParameters {
        function_code_bucket: code_bucket.to_owned(),
        function_code_key: code_key.to_owned(),
        auto_scaling_group_name: config.group.name.clone(),
        launch_template_id: config.group.launch_template_id.clone(),
        hostname_pattern: naming.pattern.clone(),
        hostname_prefix: naming.prefix.clone(),
        naming_mode: as_text(serde_json::to_value(naming.mode).unwrap_or_default()),
        rename_method: as_text(serde_json::to_value(naming.rename_method).unwrap_or_default()),
        hook_heartbeat_timeout: naming.hook_timeout_seconds,
        alarm_email: config.deploy.alarm_email.clone().unwrap_or_default(),
        tracing: config.deploy.tracing,
        builder_role_arn: config.deploy.builder_role_arn.clone(),
    }
}

/// The stack name: the flag, else `[deploy] stack`.
#[cfg_attr(not(feature = "aws"), allow(dead_code))]
fn stack_name(flag: Option<&str>, options: &StackOptions) -> anyhow::Result<String> {
    flag.map(str::to_owned)
        .or_else(|| options.stack.clone())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no stack name: pass --stack NAME, or --config FILE whose [deploy] section sets stack"
            )
        })
}

#[cfg(feature = "aws")]
#[path = "deploy_aws.rs"]
mod imp;
#[cfg(feature = "aws")]
pub use imp::state_machine_arn;

#[cfg(not(feature = "aws"))]
mod imp {
    use super::*;

    fn unavailable() -> anyhow::Error {
        anyhow::anyhow!(
            "this fleetprep was built without AWS support, so it cannot deploy; install it with \
             `cargo install --path crates/cli --features aws` (or build with `cargo build \
             --release --features aws`). `fleetprep deploy render` and `deploy package` work \
             in every build."
        )
    }

    pub(super) fn deploy(_args: DeployArgs) -> anyhow::Result<ExitCode> {
        Err(unavailable())
    }
    pub(super) fn delete(_args: StackArgs) -> anyhow::Result<ExitCode> {
        Err(unavailable())
    }
    pub(super) fn status(_args: StackArgs) -> anyhow::Result<ExitCode> {
        Err(unavailable())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_commands_take_the_stack_and_region_from_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let example = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fleetprep.toml"),
        )
        .unwrap();
        let config = dir.path().join("fleetprep.toml");
        std::fs::write(
            &config,
            example.replace("# region = \"eu-west-1\"", "region = \"eu-west-1\""),
        )
        .unwrap();
        let from_config = StackArgs {
            stack: None,
            config: Some(config.clone()),
            connection: Connection::default(),
        };
        let (stack, connection) = from_config.resolve().unwrap();
        assert_eq!(stack, "fleetprep-web");
        assert_eq!(connection.region.as_deref(), Some("eu-west-1"));
        // The command line wins over the config.
        let flags = StackArgs {
            stack: Some("other".into()),
            config: Some(config),
            connection: Connection {
                region: Some("us-west-2".into()),
                ..Connection::default()
            },
        };
        let (stack, connection) = flags.resolve().unwrap();
        assert_eq!(
            (stack.as_str(), connection.region.as_deref()),
            ("other", Some("us-west-2"))
        );
        let neither = StackArgs {
            stack: None,
            config: None,
            connection: Connection::default(),
        };
        let error = neither.resolve().unwrap_err().to_string();
        assert!(error.contains("--stack NAME"), "{error}");
    }

    #[test]
    fn the_default_config_renders_the_checked_in_template() {
        let text = template(&FleetConfig::default())
            .unwrap()
            .to_yaml()
            .unwrap();
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/fleetprep.yaml");
        // The golden file is rendered with no bake input; the default config has no schedule,
        // so the input is unused and both agree.
        assert_eq!(text, std::fs::read_to_string(path).unwrap());
    }

    #[test]
    fn a_stack_name_is_required_somewhere() {
        let options = StackOptions::default();
        assert!(
            stack_name(None, &options)
                .unwrap_err()
                .to_string()
                .contains("--stack")
        );
        assert_eq!(stack_name(Some("a"), &options).unwrap(), "a");
    }
}
