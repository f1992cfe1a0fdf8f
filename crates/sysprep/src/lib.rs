//! Everything fleetprep knows about preparing Windows, as pure logic.
//!
//! - [`agent`]: the launch-agent detection script and its parser ([`agent::AgentReport`]).
//! - [`commands`]: per-agent Sysprep command sequences and rename commands.
//! - [`config`]: this crate's sections of a TOML config file, with located errors.
//! - [`diagnose`]: Panther log and console output classification ([`diagnose::Category`]).
//! - [`hostname`]: Windows computer-name rules and the naming [`hostname::HostnamePolicy`].
//! - [`merge`]: fleetprep's settings merged into a launch agent's own answer file.
//! - [`panther`]: fetching the tail of Sysprep's Panther logs over SSM, and classifying it.
//! - [`powershell`]: quoting values into generated scripts.
//! - [`preflight`]: the pre-flight blocker script and its findings.
//! - [`remedy`]: the fixes a self-healing bake applies (AppX removal, reboot, BitLocker off).
//! - [`secrets`]: the on-instance check that the builder can read and decrypt each secret.
//! - [`unattend`]: unattend.xml rendering/parsing and the on-instance writer script.
//!
//! This crate deliberately does no I/O (beyond reading a `BufRead` the caller hands it), makes
//! no AWS calls and knows no AWS SDK types: the workflows glue it to the cloud.
//!
//! ```
//! use sysprep::hostname::{HostnamePolicy, NameContext};
//!
//! let policy = HostnamePolicy::from_pattern("{prefix}-{seq:3}", "WEB").unwrap();
//! let context = NameContext { instance_id: "i-0abc", availability_zone: None };
//! assert_eq!(policy.candidate(1, &context).unwrap().as_str(), "WEB-001");
//! ```

#![warn(missing_docs)]

pub mod agent;
pub mod commands;
pub mod config;
pub mod diagnose;
pub mod hostname;
pub mod merge;
pub mod panther;
pub mod powershell;
pub mod preflight;
pub mod remedy;
pub mod secrets;
pub mod unattend;
pub mod userdata;
