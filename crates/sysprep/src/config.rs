//! Reading this crate's sections out of a TOML config file.
//!
//! Each section deserializes straight from the TOML deserializer, so a bad value is reported
//! with the file, line, column and key (toml's spans), and the checking constructors run
//! during deserialization (`try_from`), so an invalid naming pattern or computer name is
//! rejected at load time with its reason. Other sections of the file are ignored: the same
//! `fleetprep.toml` carries the workflows' settings.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::commands::SysprepOptions;
use crate::hostname::HostnamePolicy;
use crate::unattend::UnattendConfig;

/// A config file that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct ConfigError {
    /// The file name (or other origin) as given by the caller.
    pub origin: String,
    /// toml's message: position, the offending line, the key and the reason.
    pub message: String,
}

#[derive(Deserialize)]
struct Section<T> {
    // Unknown top-level keys are ignored on purpose (other crates' sections).
    #[serde(default = "Option::default")]
    unattend: Option<T>,
}

#[derive(Deserialize)]
struct HostnameSection<T> {
    #[serde(default = "Option::default")]
    hostname: Option<T>,
}

#[derive(Deserialize)]
struct SysprepSection<T> {
    #[serde(default = "Option::default")]
    sysprep: Option<T>,
}

fn parse<D: DeserializeOwned>(text: &str, origin: &str) -> Result<D, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError {
        origin: origin.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })
}

fn missing(origin: &str, table: &str) -> ConfigError {
    ConfigError {
        origin: origin.to_owned(),
        message: format!("no [{table}] table: add one (see the examples/ folder)"),
    }
}

/// The `[unattend]` table.
pub fn load_unattend(text: &str, origin: &str) -> Result<UnattendConfig, ConfigError> {
    parse::<Section<UnattendConfig>>(text, origin)?
        .unattend
        .ok_or_else(|| missing(origin, "unattend"))
}

/// The `[hostname]` table, checked into a policy.
pub fn load_hostname_policy(text: &str, origin: &str) -> Result<HostnamePolicy, ConfigError> {
    parse::<HostnameSection<HostnamePolicy>>(text, origin)?
        .hostname
        .ok_or_else(|| missing(origin, "hostname"))
}

/// The `[sysprep]` table, or the defaults when it is absent.
pub fn load_sysprep_options(text: &str, origin: &str) -> Result<SysprepOptions, ConfigError> {
    Ok(parse::<SysprepSection<SysprepOptions>>(text, origin)?
        .sysprep
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_load_and_others_are_ignored() {
        let text = r#"
[bake]
instance_type = "m6i.large"

[hostname]
pattern = "{prefix}-{zone}{seq:4}"
prefix = "WEB"

[unattend]
time_zone = "UTC"
registered_owner = "Ops"

[unattend.admin_password]
ssm_parameter = "/fleet/admin"

[sysprep]
clean = true
"#;
        let policy = load_hostname_policy(text, "fleetprep.toml").unwrap();
        assert_eq!(policy.capacity(), 9999);
        let unattend = load_unattend(text, "fleetprep.toml").unwrap();
        assert_eq!(unattend.registered_owner.unwrap().as_str(), "Ops");
        assert!(load_sysprep_options(text, "fleetprep.toml").unwrap().clean);
    }

    /// The shipped examples stay loadable.
    #[test]
    fn examples_load() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let naming = std::fs::read_to_string(dir.join("sysprep-naming.toml")).unwrap();
        let policy = load_hostname_policy(&naming, "sysprep-naming.toml").unwrap();
        assert_eq!(policy.pattern(), "{prefix}-{group}{zone}{seq:4}");
        assert!(
            load_sysprep_options(&naming, "sysprep-naming.toml")
                .unwrap()
                .detach
        );
        let unattend = std::fs::read_to_string(dir.join("unattend-secrets-manager.toml")).unwrap();
        let config = load_unattend(&unattend, "unattend-secrets-manager.toml").unwrap();
        assert!(matches!(
            config.admin_password,
            Some(crate::unattend::PasswordRef::SecretsManager { .. })
        ));
    }

    #[test]
    fn errors_name_the_file_line_and_key() {
        let text = "[hostname]\nprefix = \"webfarm\"\npattern = \"{prefix}-{seq:8}\"\n";
        let error = load_hostname_policy(text, "fleet.toml")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("fleet.toml: "), "{error}");
        assert!(error.contains("line 1"), "{error}");
        assert!(error.contains("16-character"), "{error}");

        let text = "[unattend]\ntime_zone = \"UTC\"\ncomputer_name = \"bad_name\"\n";
        let error = load_unattend(text, "u.toml").unwrap_err().to_string();
        assert!(error.contains("line 3"), "{error}");
        assert!(error.contains("computer_name"), "{error}");

        let text = "[unattend]\ncopy_profil = true\n";
        let error = load_unattend(text, "u.toml").unwrap_err().to_string();
        assert!(
            error.contains("line 2") && error.contains("copy_profil"),
            "{error}"
        );

        let text = "[unattend.admin_password]\nsecrets_manager = \"a\"\nssm_parameter = \"b\"\n";
        let error = load_unattend(text, "u.toml").unwrap_err().to_string();
        assert!(error.contains("not both"), "{error}");

        assert!(
            load_unattend("", "empty.toml")
                .unwrap_err()
                .to_string()
                .contains("[unattend]")
        );
    }
}
