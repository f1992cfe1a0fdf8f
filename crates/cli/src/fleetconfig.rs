//! `fleetprep.toml`: the config file `bake`, `demo` and `fleet simulate` read.
//!
//! Every section and key is optional (defaults make the demo work with no file at all).
//! Unknown keys are errors, and every error names the file, the line and the key, e.g.
//! `fleetprep.toml:7: key "bake.ssm_timeout_seconds": invalid type: string "x", expected u64`.
//! See `examples/fleetprep.toml` for a commented example.

use std::path::Path;

use anyhow::Context as _;
use serde::Deserialize;
use workflows::{BakeConfig, NamingMode, RenameMethod, RolloutConfig, Settings};

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetConfig {
    pub bake: BakeConfig,
    pub naming: Naming,
    pub group: Group,
    pub rollout: Rollout,
    /// `[deploy]`: the CloudFormation stack (`fleetprep deploy`).
    pub deploy: deploy::StackOptions,
}

/// `[naming]`: how launched instances get their hostnames.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Naming {
    pub mode: NamingMode,
    /// With `mode = "rename"`: `"rename-computer"` or `"ec2launch-set-host-name"`.
    pub rename_method: RenameMethod,
    pub pattern: String,
    pub prefix: String,
    pub hook_timeout_seconds: u64,
    pub ssm_timeout_seconds: u64,
    pub cleanup_script: Option<String>,
}

impl Default for Naming {
    fn default() -> Self {
        let settings = Settings::default();
        Self {
            mode: settings.naming_mode,
            rename_method: settings.rename_method,
            pattern: "{prefix}-{seq:4}".into(),
            prefix: "WEB".into(),
            hook_timeout_seconds: settings.hook_timeout_seconds,
            ssm_timeout_seconds: settings.ssm_timeout_seconds,
            cleanup_script: None,
        }
    }
}

impl Naming {
    pub fn settings(&self) -> Settings {
        Settings {
            naming_mode: self.mode,
            rename_method: self.rename_method,
            hook_timeout_seconds: self.hook_timeout_seconds,
            cleanup_script: self.cleanup_script.clone(),
            ssm_timeout_seconds: self.ssm_timeout_seconds,
            ..Settings::default()
        }
    }
}

/// `[group]`: the Auto Scaling group (simulated locally).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Group {
    pub name: String,
    pub launch_template_id: String,
    pub instance_type: String,
}

impl Default for Group {
    fn default() -> Self {
        Self {
            name: "web".into(),
            launch_template_id: "lt-fleet".into(),
            instance_type: "m5.large".into(),
        }
    }
}

/// `[rollout]`: instance refresh preferences.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rollout {
    pub min_healthy_percentage: u32,
    pub instance_warmup_seconds: u32,
    pub checkpoint_percentages: Vec<u32>,
    pub timeout_seconds: u64,
}

impl Default for Rollout {
    fn default() -> Self {
        let defaults = RolloutConfig::default();
        Self {
            min_healthy_percentage: defaults.min_healthy_percentage,
            instance_warmup_seconds: defaults.instance_warmup_seconds,
            checkpoint_percentages: defaults.checkpoint_percentages,
            timeout_seconds: defaults.timeout_seconds,
        }
    }
}

impl FleetConfig {
    /// The simulated Auto Scaling group this config describes. Both lifecycle hooks get the
    /// configured hook timeout, as the deploy template's hooks do.
    pub fn simulated_group(&self) -> cloud::sim::GroupSpec {
        cloud::sim::GroupSpec {
            name: self.group.name.clone(),
            launch_template_id: self.group.launch_template_id.clone(),
            instance_type: self.group.instance_type.clone(),
            launch_hook_timeout_seconds: self.naming.hook_timeout_seconds,
            terminate_hook_timeout_seconds: self.naming.hook_timeout_seconds,
        }
    }

    /// The rollout input for `image_id` onto this config's group.
    pub fn rollout_input(&self, image_id: &str) -> RolloutConfig {
        RolloutConfig {
            group: self.group.name.clone(),
            launch_template_id: self.group.launch_template_id.clone(),
            image_id: image_id.to_string(),
            min_healthy_percentage: self.rollout.min_healthy_percentage,
            instance_warmup_seconds: self.rollout.instance_warmup_seconds,
            checkpoint_percentages: self.rollout.checkpoint_percentages.clone(),
            timeout_seconds: self.rollout.timeout_seconds,
        }
    }

    /// Reads and checks a config file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        Self::parse(&text, &path.display().to_string()).map_err(anyhow::Error::msg)
    }

    /// Parses config text; the error names `origin:line`, the key and the problem.
    pub fn parse(text: &str, origin: &str) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|error| locate(text, origin, &error))?;
        config.check(text, origin)?;
        Ok(config)
    }

    /// Checks that go beyond types (still naming key and line).
    fn check(&self, text: &str, origin: &str) -> Result<(), String> {
        let fail = |key: &str, message: String| {
            let line = line_of_key(text, key)
                .map(|l| format!(":{l}"))
                .unwrap_or_default();
            Err(format!("{origin}{line}: key \"{key}\": {message}"))
        };
        if let Err(error) = sysprep::hostname::HostnamePolicy::from_pattern(
            &self.naming.pattern,
            &self.naming.prefix,
        ) {
            return fail("naming.pattern", error.to_string());
        }
        if self.rollout.min_healthy_percentage > 100 {
            return fail(
                "rollout.min_healthy_percentage",
                format!(
                    "{} is not a percentage (0-100)",
                    self.rollout.min_healthy_percentage
                ),
            );
        }
        if let Err(message) = self.deploy.check() {
            let key = message
                .split_whitespace()
                .next()
                .unwrap_or("deploy")
                .to_owned();
            return fail(key.trim_end_matches(':'), message);
        }
        if self.bake.force_stop_after_seconds >= self.bake.stop_timeout_seconds {
            return fail(
                "bake.force_stop_after_seconds",
                "must be below bake.stop_timeout_seconds, or the forced stop never happens".into(),
            );
        }
        Ok(())
    }
}

/// `origin:line: key "table.key": message` from a TOML error.
fn locate(text: &str, origin: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim().to_string();
    let Some(span) = error.span() else {
        return format!("{origin}: {message}");
    };
    let start = span.start.min(text.len());
    let line = text[..start].matches('\n').count() + 1;
    let key = key_at(text, start)
        .map(|k| format!(" key \"{k}\":"))
        .unwrap_or_default();
    format!("{origin}:{line}:{key} {message}")
}

/// The dotted key defined on the line containing byte `offset` (table header + key).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let mut table = String::new();
    let mut position = 0;
    for line in text.split_inclusive('\n') {
        let end = position + line.len();
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            table = trimmed
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string();
        }
        if offset < end || end == text.len() {
            if trimmed.starts_with('[') {
                return Some(table);
            }
            let key = trimmed.split('=').next()?.trim().trim_matches('"');
            if key.is_empty() || key.starts_with('#') {
                return None;
            }
            return Some(if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            });
        }
        position = end;
    }
    None
}

/// The 1-based line defining dotted `key`, if it is spelled out in the file.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let (table, leaf) = key.rsplit_once('.').unwrap_or(("", key));
    let mut current = String::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            current = trimmed
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string();
            continue;
        }
        let this = trimmed.split('=').next().unwrap_or("").trim();
        if current == table && this == leaf {
            return Some(index + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses() {
        let text = include_str!("../../../examples/fleetprep.toml");
        let config = FleetConfig::parse(text, "fleetprep.toml").unwrap();
        assert_eq!(config.group.name, "web");
        assert!(!config.bake.customization_scripts.is_empty());
    }

    #[test]
    fn errors_name_the_line_and_the_key() {
        let text = "[bake]\nname = \"x\"\nssm_timeout_seconds = \"soon\"\n";
        let error = FleetConfig::parse(text, "f.toml").unwrap_err();
        assert!(
            error.starts_with("f.toml:3: key \"bake.ssm_timeout_seconds\":"),
            "{error}"
        );

        let error = FleetConfig::parse("[naming]\nmode = \"rename\"\npatern = \"x\"\n", "f.toml")
            .unwrap_err();
        assert!(
            error.starts_with("f.toml:3: key \"naming.patern\":"),
            "{error}"
        );
        assert!(error.contains("unknown field"), "{error}");

        let error = FleetConfig::parse("[rollout]\n\nmin_healthy_percentage = 120\n", "f.toml")
            .unwrap_err();
        assert!(
            error.starts_with("f.toml:3: key \"rollout.min_healthy_percentage\""),
            "{error}"
        );
    }

    #[test]
    fn the_rename_method_reaches_the_settings_and_bad_ones_name_the_line() {
        let config = FleetConfig::parse(
            "[naming]\nmode = \"rename\"\nrename_method = \"ec2launch-set-host-name\"\n",
            "f.toml",
        )
        .unwrap();
        assert_eq!(
            config.naming.settings().rename_method,
            RenameMethod::Ec2LaunchSetHostName
        );
        let config =
            FleetConfig::parse("[naming]\nrename_method = \"rename-computer\"\n", "f.toml")
                .unwrap();
        assert_eq!(
            config.naming.settings().rename_method,
            RenameMethod::RenameComputer
        );
        assert_eq!(
            FleetConfig::default().naming.settings().rename_method,
            RenameMethod::RenameComputer
        );
        let error = FleetConfig::parse("[naming]\n\nrename_method = \"sethostname\"\n", "f.toml")
            .unwrap_err();
        assert!(
            error.starts_with("f.toml:3: key \"naming.rename_method\":"),
            "{error}"
        );
        assert!(error.contains("ec2launch-set-host-name"), "{error}");
    }

    #[test]
    fn no_file_means_defaults() {
        let config = FleetConfig::parse("", "f.toml").unwrap();
        assert_eq!(config, FleetConfig::default());
    }
}
