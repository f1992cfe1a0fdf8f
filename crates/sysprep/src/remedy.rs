//! The fixes a self-healing bake applies through SSM before it tries again: "retry the Sysprep
//! operation or return to a previous state" ("Troubleshoot Sysprep with Amazon EC2 Windows
//! instances").
//!
//! - [`Remedy::Appx`]: remove the per-user AppX packages that block Sysprep, for every user
//!   (KB2769827: remove them for all users, or provision them).
//! - [`Remedy::Reboot`]: reboot through the SSM reboot protocol: the script exits 3010 once,
//!   SSM Run Command reboots the instance and runs it again, and the second run finds its flag
//!   and reports ("Handling reboots when running commands").
//! - [`Remedy::Bitlocker`]: turn BitLocker off on the OS volume and report the decryption
//!   progress; the workflow calls it again until the volume is `FullyDecrypted`.
//!
//! Rearm limit, CopyProfile and unknown failures have no remedy: [`remedy_for`] answers None.
//! Every script prints one marked JSON line ([`REMEDY_MARKER`]) that [`parse_remedy_output`]
//! reads.

use serde::{Deserialize, Serialize};

use crate::agent::{DetectError, marked_line};
use crate::diagnose::Category;
use crate::powershell::quote;

/// The marker each remedy script prints before its JSON.
pub const REMEDY_MARKER: &str = "FLEETPREP-REMEDY:";

/// A fix the bake can apply by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Remedy {
    /// Remove per-user AppX packages for all users.
    Appx,
    /// Reboot and wait for SSM.
    Reboot,
    /// Decrypt the OS volume (long: opt-in).
    Bitlocker,
}

impl Remedy {
    /// The stable name (`appx`, `reboot`, `bitlocker`), as `[bake.remediation]` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Remedy::Appx => "appx",
            Remedy::Reboot => "reboot",
            Remedy::Bitlocker => "bitlocker",
        }
    }
}

/// The remedy for a pre-flight finding (by its check name) or a diagnosis category.
pub fn remedy_for(check_or_category: &str) -> Option<Remedy> {
    match check_or_category {
        "appx-not-provisioned" => Some(Remedy::Appx),
        "pending-reboot" => Some(Remedy::Reboot),
        "bitlocker" | "bitlocker-enabled" => Some(Remedy::Bitlocker),
        _ => None,
    }
}

/// The remedy for a classified Sysprep failure, if it has one.
pub fn remedy_for_category(category: Category) -> Option<Remedy> {
    remedy_for(category.as_str())
}

/// Removes each package (by `PackageFullName`) for every user; packages already gone are
/// skipped, so running it again changes nothing.
pub fn appx_removal_script(packages: &[String]) -> String {
    let names: Vec<String> = packages.iter().map(|p| quote(p)).collect();
    format!(
        r#"# fleetprep remedy: remove per-user AppX packages that block Sysprep, for all users.
$ErrorActionPreference = 'Stop'
$removed = New-Object System.Collections.Generic.List[string]
foreach ($fullName in @({names})) {{
    $installed = @(Get-AppxPackage -AllUsers | Where-Object {{ $_.PackageFullName -eq $fullName }})
    if ($installed.Count -gt 0) {{
        Remove-AppxPackage -Package $fullName -AllUsers
        $removed.Add($fullName)
    }}
}}
$report = [ordered]@{{ remedy = 'appx'; done = $true; removed = @($removed) }}
Write-Output ({marker} + ($report | ConvertTo-Json -Compress))
"#,
        names = names.join(", "),
        marker = quote(REMEDY_MARKER),
    )
}

/// Reboots once through SSM's reboot protocol. `token` (the execution and round) names the
/// flag file, so each remediation round reboots exactly once even when retried.
pub fn reboot_script(token: &str) -> String {
    let flag = format!(
        "fleetprep-reboot-{}",
        token
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect::<String>()
    );
    format!(
        r#"# fleetprep remedy: reboot once (exit 3010: SSM reboots and runs this again).
$ErrorActionPreference = 'Stop'
$flag = Join-Path $env:ProgramData (Join-Path 'Amazon\fleetprep' {flag})
if (-not (Test-Path -LiteralPath $flag)) {{
    [void](New-Item -ItemType File -Force -Path $flag)
    exit 3010
}}
Remove-Item -LiteralPath $flag -Force
$report = [ordered]@{{ remedy = 'reboot'; done = $true }}
Write-Output ({marker} + ($report | ConvertTo-Json -Compress))
"#,
        flag = quote(&flag),
        marker = quote(REMEDY_MARKER),
    )
}

/// Turns BitLocker off on the OS volume (once) and reports whether it is fully decrypted.
pub fn bitlocker_off_script() -> String {
    format!(
        r#"# fleetprep remedy: decrypt the OS volume (Sysprep cannot generalize a BitLocker volume).
$ErrorActionPreference = 'Stop'
$volume = Get-BitLockerVolume -MountPoint $env:SystemDrive
if ([string]$volume.VolumeStatus -ne 'FullyDecrypted' -and [string]$volume.VolumeStatus -ne 'DecryptionInProgress') {{
    [void](Disable-BitLocker -MountPoint $env:SystemDrive)
    $volume = Get-BitLockerVolume -MountPoint $env:SystemDrive
}}
$report = [ordered]@{{ remedy = 'bitlocker'; done = ([string]$volume.VolumeStatus -eq 'FullyDecrypted'); volumeStatus = [string]$volume.VolumeStatus; encryptionPercentage = [int]$volume.EncryptionPercentage }}
Write-Output ({marker} + ($report | ConvertTo-Json -Compress))
"#,
        marker = quote(REMEDY_MARKER),
    )
}

/// What a remedy script reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemedyReport {
    /// Which remedy ran.
    pub remedy: Remedy,
    /// The fix is complete (BitLocker: fully decrypted).
    pub done: bool,
    /// AppX: the packages removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    /// BitLocker: the volume status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_status: Option<String>,
}

/// Reads a remedy script's report.
pub fn parse_remedy_output(output: &str) -> Result<RemedyReport, DetectError> {
    let (line, json) = marked_line(output, REMEDY_MARKER).ok_or(DetectError::MissingMarker {
        marker: REMEDY_MARKER,
    })?;
    serde_json::from_str(json).map_err(|e| DetectError::InvalidJson {
        marker: REMEDY_MARKER,
        line,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_causes_have_remedies_and_the_rest_do_not() {
        assert_eq!(remedy_for("appx-not-provisioned"), Some(Remedy::Appx));
        assert_eq!(remedy_for("pending-reboot"), Some(Remedy::Reboot));
        assert_eq!(
            remedy_for_category(Category::BitlockerEnabled),
            Some(Remedy::Bitlocker)
        );
        for category in [
            Category::RearmLimit,
            Category::CopyprofileFailed,
            Category::Unknown,
            Category::UnattendInvalid,
        ] {
            assert_eq!(remedy_for_category(category), None, "{category}");
        }
    }

    #[test]
    fn scripts_report_with_the_marker() {
        let appx =
            appx_removal_script(&["Microsoft.BingWeather_4.53.51922.0_x64__8wekyb3d8bbwe".into()]);
        assert!(appx.contains("Remove-AppxPackage -Package $fullName -AllUsers"));
        assert!(appx.contains("'Microsoft.BingWeather_4.53.51922.0_x64__8wekyb3d8bbwe'"));
        let reboot = reboot_script("exec:1/round 2");
        assert!(reboot.contains("exit 3010"));
        assert!(reboot.contains("'fleetprep-reboot-exec-1-round-2'"));
        let bitlocker = bitlocker_off_script();
        assert!(bitlocker.contains("Disable-BitLocker -MountPoint $env:SystemDrive"));
        let report = parse_remedy_output(
            "FLEETPREP-REMEDY:{\"remedy\":\"bitlocker\",\"done\":false,\"volumeStatus\":\"DecryptionInProgress\",\"encryptionPercentage\":40}",
        )
        .unwrap();
        assert_eq!(report.remedy, Remedy::Bitlocker);
        assert!(!report.done);
    }
}
