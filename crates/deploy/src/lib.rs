//! The CloudFormation stack fleetprep deploys, generated from the code's own declarations, and
//! the Lambda package check.
//!
//! - [`template`]: the template from [`StackOptions`] (the `[deploy]` section of
//!   `fleetprep.toml`): the four state machines from the checked-in ASL files, the function,
//!   its least-privilege role (from the handlers' IAM declarations through [`iam`]), lifecycle
//!   hooks and the rules that route them, alarms, logs, a dashboard and the optional
//!   prerequisites. `fleetprep deploy render` prints it; `deploy/fleetprep.yaml` is the
//!   rendered default (a test keeps it current).
//! - [`iam`]: the resource scope and conditions of every IAM action a handler may need.
//! - [`package`]: the `bootstrap` zip for `provided.al2023`, and the check that the binary is
//!   an ELF executable for the chosen architecture that runs on Amazon Linux 2023.
//!
//! No AWS SDK here: rendering and packaging work in every build of the CLI; the deploy itself
//! (CloudFormation, S3) lives behind the CLI's `aws` feature.

pub mod iam;
pub mod options;
pub mod package;
pub mod template;

pub use options::{Arch, StackOptions};
pub use template::{Template, render};
