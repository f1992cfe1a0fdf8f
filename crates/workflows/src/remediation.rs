//! The self-healing bake's decisions: which fix to apply for a failure, and when to stop.
//!
//! When pre-flight or Sysprep fails with a known, fixable cause the bake goes back, fixes it
//! through SSM and tries again ("Troubleshoot Sysprep with Amazon EC2 Windows instances":
//! retry the Sysprep operation or return to a previous state), at most
//! [`RemediationSettings::max_rounds`] times. Which causes have a fix is
//! [`sysprep::remedy`]'s knowledge; which fixes may run is the user's (`[bake.remediation]`).
//! A fix that did not help ends the bake with the failure as it then is, which names the
//! original category: never an endless loop.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sysprep::remedy::Remedy;

use crate::errors;

/// The `[bake.remediation]` table (in the bake's input as `config.remediation`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemediationSettings {
    /// Remove per-user AppX packages for all users (on by default).
    pub appx: bool,
    /// Reboot for a pending reboot (on by default).
    pub reboot: bool,
    /// Decrypt a BitLocker OS volume (off by default: it takes long).
    pub bitlocker: bool,
    /// Rounds before the bake gives up (default 2).
    pub max_rounds: u64,
}

impl Default for RemediationSettings {
    fn default() -> Self {
        Self {
            appx: true,
            reboot: true,
            bitlocker: false,
            max_rounds: 2,
        }
    }
}

impl RemediationSettings {
    /// From the bake input's `config.remediation` (absent or null: the defaults).
    pub fn from_payload(value: Option<&Value>) -> Self {
        value
            .filter(|v| !v.is_null())
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }

    fn allows(&self, remedy: Remedy) -> bool {
        match remedy {
            Remedy::Appx => self.appx,
            Remedy::Reboot => self.reboot,
            Remedy::Bitlocker => self.bitlocker,
        }
    }
}

/// The next fix for `error_name` (with its cause and any Panther log tails) after `rounds`
/// rounds, with the AppX packages to remove; None ends the bake.
pub fn plan(
    error_name: &str,
    cause: &str,
    panther_stdout: &str,
    rounds: u64,
    settings: &RemediationSettings,
) -> Option<(Remedy, Vec<String>)> {
    if rounds >= settings.max_rounds {
        return None;
    }
    let remedy = match error_name {
        errors::PREFLIGHT_BLOCKED => crate::handlers::blocking_findings(cause)
            .filter_map(sysprep::remedy::remedy_for)
            .find(|r| settings.allows(*r))?,
        errors::SYSPREP_FAILED => {
            let lines = crate::handlers::panther_lines(panther_stdout);
            let mut diagnoser = sysprep::diagnose::Diagnoser::new();
            cause
                .lines()
                .chain(lines.iter().map(String::as_str))
                .for_each(|line| diagnoser.feed_log_line(line));
            let diagnosis = diagnoser.finish(&Default::default());
            sysprep::remedy::remedy_for_category(diagnosis.category)
                .filter(|r| settings.allows(*r))?
        }
        _ => return None,
    };
    let packages = if remedy == Remedy::Appx {
        appx_packages(cause, panther_stdout)
    } else {
        Vec::new()
    };
    Some((remedy, packages))
}

/// AppX package full names named in a pre-flight cause or in Panther lines (`Package X was
/// installed for a user, but not provisioned for all users`).
fn appx_packages(cause: &str, panther_stdout: &str) -> Vec<String> {
    let mut packages = Vec::new();
    let looks_like_full_name = |word: &str| word.matches('_').count() >= 4;
    for word in cause
        .split(|c: char| c.is_whitespace() || "(),;[]".contains(c))
        .chain(panther_stdout.split(char::is_whitespace))
    {
        if looks_like_full_name(word) && !packages.iter().any(|p| p == word) {
            packages.push(word.to_owned());
        }
    }
    packages
}

#[cfg(test)]
mod tests {
    use super::*;

    const APPX_CAUSE: &str = "pre-flight on i-1 blocked by [appx-not-provisioned]: 1 AppX package(s) are installed for a user but not provisioned for all users; Sysprep's AppX provider will fail (Microsoft.BingWeather_4.53.51922.0_x64__8wekyb3d8bbwe); fix: remove it";

    #[test]
    fn known_causes_get_their_remedy_within_the_rounds() {
        let settings = RemediationSettings::default();
        let plan = plan(errors::PREFLIGHT_BLOCKED, APPX_CAUSE, "", 0, &settings).unwrap();
        assert_eq!(plan.0, Remedy::Appx);
        assert_eq!(
            plan.1,
            ["Microsoft.BingWeather_4.53.51922.0_x64__8wekyb3d8bbwe"]
        );
        assert!(super::plan(errors::PREFLIGHT_BLOCKED, APPX_CAUSE, "", 2, &settings).is_none());
        let reboot = "pre-flight on i-1 blocked by [pending-reboot]: reboot first";
        assert_eq!(
            super::plan(errors::PREFLIGHT_BLOCKED, reboot, "", 1, &settings).map(|p| p.0),
            Some(Remedy::Reboot)
        );
        // BitLocker is opt-in; rearm and unknown failures have no remedy.
        let bitlocker = "pre-flight on i-1 blocked by [bitlocker]: decrypt";
        assert!(super::plan(errors::PREFLIGHT_BLOCKED, bitlocker, "", 0, &settings).is_none());
        let on = RemediationSettings {
            bitlocker: true,
            ..RemediationSettings::default()
        };
        assert_eq!(
            super::plan(errors::PREFLIGHT_BLOCKED, bitlocker, "", 0, &on).map(|p| p.0),
            Some(Remedy::Bitlocker)
        );
        let rearm = "pre-flight on i-1 blocked by [rearm-limit]: no rearms";
        assert!(super::plan(errors::PREFLIGHT_BLOCKED, rearm, "", 0, &settings).is_none());
        assert!(super::plan(errors::TIMEOUT, "", "", 0, &settings).is_none());
        let off = RemediationSettings {
            appx: false,
            ..RemediationSettings::default()
        };
        assert!(super::plan(errors::PREFLIGHT_BLOCKED, APPX_CAUSE, "", 0, &off).is_none());
    }
}
