//! Pre-flight checks: the known causes of Sysprep failure, found before Sysprep runs.
//!
//! [`preflight_script`] is a PowerShell script that checks each cause independently (one
//! failing check is reported in `errors`, it does not hide the others) and prints one marked
//! JSON line. [`parse_preflight_output`] reads that line; [`evaluate`] turns the report into
//! [`Finding`]s with a severity and a remediation. The workflow stops before Sysprep when any
//! finding is [`Severity::Block`].
//!
//! Sources: Microsoft "Sysprep fails after you remove or update Microsoft Store apps"
//! (packages installed for a user but not provisioned), "Sysprep Process Overview" (pending
//! reboots, domain membership), "SkipRearm" (rearm limit), "BitLocker ... Sysprep" (an
//! encrypted OS volume blocks generalize), "CopyProfile" (unattend Shell-Setup).

use serde::{Deserialize, Deserializer, Serialize};

use crate::agent::LaunchAgent;
use crate::powershell::quote;

/// The marker the pre-flight script prints before its JSON.
pub const PREFLIGHT_MARKER: &str = "FLEETPREP-PREFLIGHT:";

/// Below this, Sysprep and the first boot's specialize pass can run out of space.
pub const BLOCK_FREE_BYTES: u64 = 1 << 30;
/// Below this, warn.
pub const WARN_FREE_BYTES: u64 = 5 << 30;

/// What the script reports. Every field is optional: a check that could not run is absent
/// and explained in `errors`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PreflightReport {
    /// AppX packages installed for a user but not provisioned for all users.
    #[serde(deserialize_with = "one_or_many", alias = "appx_not_provisioned")]
    pub appx_not_provisioned: Option<Vec<String>>,
    /// Pending-reboot markers.
    #[serde(alias = "reboot_pending")]
    pub pending_reboot: Option<PendingReboot>,
    /// `RemainingWindowsReArmCount` (SoftwareLicensingService).
    pub rearm_count: Option<i64>,
    /// `SkipRearm` from the answer file, when present.
    pub skip_rearm: Option<i64>,
    /// Per-user AppX packages that block Sysprep, with what decided it.
    pub appx_blockers: Option<Vec<AppxBlocker>>,
    /// BitLocker state of the OS volume.
    pub bitlocker: Option<BitLocker>,
    /// Windows was upgraded in place (`HKLM\SYSTEM\Setup\Upgrade` exists): Sysprep refuses
    /// ("Sysprep will not run on an upgraded OS").
    pub upgraded_os: Option<bool>,
    /// The launch agent found.
    pub agent: Option<LaunchAgent>,
    /// The agent has recorded its run-once work as done: EC2Launch v2's `.run-once` state
    /// file exists, or EC2Launch v1's initialization task is disabled or missing.
    pub agent_run_once_recorded: Option<bool>,
    /// The answer file sets `CopyProfile` to true.
    pub copy_profile: Option<bool>,
    /// The answer file that was checked.
    pub answer_file: Option<String>,
    /// Domain membership.
    pub domain: Option<DomainMembership>,
    /// `$env:SystemDrive`, e.g. `C:`.
    pub system_drive: Option<String>,
    /// Free bytes on the system drive.
    pub free_disk_bytes: Option<u64>,
    /// Checks that could not run, with their error.
    #[serde(deserialize_with = "one_or_many_vec")]
    pub errors: Vec<String>,
}

/// One AppX package installed for a user in a way Sysprep's AppX provider rejects: not
/// provisioned for all users, or installed in another version than the provisioned one
/// (KB2769827: Sysprep fails after Store apps are updated; error 0x80073cf2). Packages are
/// compared by `PackageFamilyName` plus version, since a provisioned package's full name (a
/// bundle, `_neutral_~_`) never equals an installed one's (`_x64__`). System-signed packages
/// are not skipped: KB4057974 shows one blocking Sysprep.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AppxBlocker {
    /// `PackageFullName` (what `Remove-AppxPackage -AllUsers` takes).
    pub package_full_name: String,
    /// `PackageFamilyName` (name plus publisher id).
    pub package_family_name: String,
    /// The installed version.
    pub version: String,
    /// The provisioned version of the same family, when there is one.
    pub provisioned_version: Option<String>,
    /// `SignatureKind` (`Store`, `System`, `Developer`...).
    pub signature_kind: Option<String>,
    /// Users it is installed for (from `PackageUserInformation`).
    #[serde(deserialize_with = "one_or_many_vec")]
    pub users: Vec<String>,
}

/// Pending-reboot markers (any one blocks Sysprep).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PendingReboot {
    /// Component Based Servicing `RebootPending` key exists.
    #[serde(alias = "cbs")]
    pub cbs_reboot_pending: bool,
    /// Windows Update `RebootRequired` key exists.
    #[serde(alias = "windows_update")]
    pub windows_update_reboot_required: bool,
    /// `PendingFileRenameOperations` value exists.
    #[serde(alias = "pending_file_rename")]
    pub pending_file_rename_operations: bool,
}

/// BitLocker state of the OS volume.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BitLocker {
    /// `On`/`Off` (Get-BitLockerVolume ProtectionStatus).
    pub protection_status: Option<String>,
    /// `FullyDecrypted`, `FullyEncrypted`, `EncryptionInProgress`...
    pub volume_status: Option<String>,
}

/// Domain membership of the builder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DomainMembership {
    /// `Win32_ComputerSystem.PartOfDomain`.
    pub part_of_domain: bool,
    /// The domain (or workgroup) name.
    pub domain: Option<String>,
}

/// ConvertTo-Json writes a one-element pipeline result as a bare value; accept both shapes.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => None,
        Some(OneOrMany::One(one)) => Some(vec![one]),
        Some(OneOrMany::Many(many)) => Some(many),
    })
}

fn one_or_many_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(one_or_many(d)?.unwrap_or_default())
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing; Sysprep can run.
    Warn,
    /// Sysprep would fail or produce a broken image: do not run it.
    Block,
}

/// One problem found before Sysprep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable check name, e.g. `appx-not-provisioned`.
    pub check: String,
    /// Block or warn.
    pub severity: Severity,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub remediation: String,
    /// The values that triggered it (package names, registry keys...).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub evidence: Vec<String>,
}

/// The findings, worst first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreflightResult {
    /// True when any finding blocks Sysprep.
    pub blocked: bool,
    /// Findings, blocking first.
    pub findings: Vec<Finding>,
}

/// Why pre-flight output could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreflightError {
    /// The marker line is missing.
    #[error(
        "no line starting with {PREFLIGHT_MARKER} (or a JSON object) in the command output: did the pre-flight script run (check the SSM command's stderr)?"
    )]
    MissingMarker,
    /// The JSON on the marker line does not parse.
    #[error("output line {line}: the pre-flight JSON is invalid: {message}")]
    InvalidJson {
        /// 1-based line number in the output.
        line: usize,
        /// The JSON error.
        message: String,
    },
}

/// Reads the report from the command output: the last marked line, or else the last line
/// that is a bare JSON object.
pub fn parse_preflight_output(output: &str) -> Result<PreflightReport, PreflightError> {
    let (line, json) =
        crate::agent::marked_line(output, PREFLIGHT_MARKER).ok_or(PreflightError::MissingMarker)?;
    serde_json::from_str(json).map_err(|e| PreflightError::InvalidJson {
        line,
        message: e.to_string(),
    })
}

/// The diagnosis category a blocking finding stands for, so a bake stopped by pre-flight
/// reports the same category Sysprep itself would have failed with.
pub fn category_of(check: &str) -> Option<crate::diagnose::Category> {
    use crate::diagnose::Category;
    match check {
        "appx-not-provisioned" => Some(Category::AppxNotProvisioned),
        "rearm-limit" => Some(Category::RearmLimit),
        "bitlocker" => Some(Category::BitlockerEnabled),
        "pending-reboot" | "upgraded-os" => Some(Category::ValidationFailed),
        _ => None,
    }
}

/// Parses and evaluates in one go.
pub fn check_output(output: &str) -> Result<PreflightResult, PreflightError> {
    Ok(evaluate(&parse_preflight_output(output)?))
}

fn finding(
    check: &str,
    severity: Severity,
    message: String,
    remediation: &str,
    evidence: Vec<String>,
) -> Finding {
    Finding {
        check: check.to_owned(),
        severity,
        message,
        remediation: remediation.to_owned(),
        evidence,
    }
}

/// Turns a report into findings, blocking ones first.
pub fn evaluate(report: &PreflightReport) -> PreflightResult {
    let mut findings = Vec::new();
    let mut appx: Vec<String> = report.appx_not_provisioned.clone().unwrap_or_default();
    for blocker in report.appx_blockers.iter().flatten() {
        if !appx.contains(&blocker.package_full_name) {
            appx.push(blocker.package_full_name.clone());
        }
    }
    let packages = &appx;
    if !packages.is_empty() {
        findings.push(finding(
            "appx-not-provisioned",
            Severity::Block,
            format!(
                "{} AppX package(s) are installed for a user but not provisioned for all users; Sysprep's AppX provider will fail",
                packages.len()
            ),
            "remove each package for every user (Remove-AppxPackage -Package <name> -AllUsers) or provision it (Add-AppxProvisionedPackage); avoid Microsoft Store updates on the builder",
            packages.clone(),
        ));
    }
    if let Some(pending) = &report.pending_reboot {
        let mut evidence = Vec::new();
        if pending.cbs_reboot_pending {
            evidence.push(r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending".to_owned());
        }
        if pending.windows_update_reboot_required {
            evidence.push(r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired".to_owned());
        }
        if pending.pending_file_rename_operations {
            evidence.push(r"HKLM\SYSTEM\CurrentControlSet\Control\Session Manager\PendingFileRenameOperations".to_owned());
        }
        if !evidence.is_empty() {
            findings.push(finding(
                "pending-reboot",
                Severity::Block,
                "a reboot is pending (servicing or Windows Update); Sysprep refuses to validate".into(),
                "reboot the builder (and wait for updates to finish installing) before running Sysprep",
                evidence,
            ));
        }
    }
    if let Some(rearm) = report.rearm_count {
        let skip = report.skip_rearm == Some(1);
        if rearm <= 0 && !skip {
            findings.push(finding(
                "rearm-limit",
                Severity::Block,
                format!("the remaining Windows rearm count is {rearm}; generalize would fail with 0xC004D307"),
                "rebuild the builder from a fresh AWS AMI; SkipRearm=1 (generalize pass, Microsoft-Windows-Security-SPP) is only for images that are not for production (KB929828)",
                vec![format!("RemainingWindowsReArmCount={rearm}")],
            ));
        } else if rearm == 1 && !skip {
            findings.push(finding(
                "rearm-limit",
                Severity::Warn,
                "only one Windows rearm is left: this image can be generalized once more".into(),
                "bake from a fresh AWS AMI rather than re-baking a baked image; SkipRearm=1 is only for images that are not for production (KB929828)",
                vec![format!("RemainingWindowsReArmCount={rearm}")],
            ));
        }
    }
    if let Some(bitlocker) = &report.bitlocker {
        let on = bitlocker
            .protection_status
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("on") || s == "1");
        let encrypted = bitlocker
            .volume_status
            .as_deref()
            .is_some_and(|s| !s.eq_ignore_ascii_case("FullyDecrypted"));
        if on || encrypted {
            findings.push(finding(
                "bitlocker",
                Severity::Block,
                "BitLocker protects or encrypts the OS volume; Sysprep cannot generalize it".into(),
                "decrypt the OS volume (Disable-BitLocker -MountPoint $env:SystemDrive) and wait for FullyDecrypted",
                vec![format!(
                    "ProtectionStatus={} VolumeStatus={}",
                    bitlocker.protection_status.as_deref().unwrap_or("?"),
                    bitlocker.volume_status.as_deref().unwrap_or("?")
                )],
            ));
        }
    }
    if report.upgraded_os == Some(true) {
        findings.push(finding(
            "upgraded-os",
            Severity::Block,
            "Windows on the builder was upgraded in place; Sysprep will not run on an upgraded OS".into(),
            "bake from a fresh AWS AMI of the target Windows version instead of an in-place-upgraded builder",
            vec![r"HKLM\SYSTEM\Setup\Upgrade".to_owned()],
        ));
    }
    if report.agent_run_once_recorded == Some(true) {
        findings.push(finding(
            "agent-run-once",
            Severity::Warn,
            "the launch agent has recorded its run-once tasks as done; instances from this image would skip them (admin password, user data)".into(),
            "fleetprep's EC2Launch v2 sequence runs `ec2launch reset` first; if you run Sysprep yourself, reset the agent (v2: ec2launch reset, v1: InitializeInstance.ps1 -Schedule)",
            report.agent.map(|a| vec![a.to_string()]).unwrap_or_default(),
        ));
    }
    if report.copy_profile == Some(true) {
        findings.push(finding(
            "copy-profile",
            Severity::Warn,
            "the answer file sets CopyProfile=true: the builder's administrator profile is copied to the default profile, a common cause of specialize failures".into(),
            "set copy_profile = false unless you need the customized default profile, and clean the profile (no AppX state, no mapped drives) if you do",
            report.answer_file.clone().into_iter().collect(),
        ));
    }
    if let Some(domain) = &report.domain
        && domain.part_of_domain
    {
        findings.push(finding(
            "domain-member",
            Severity::Warn,
            format!(
                "the builder is joined to the domain {}; generalize removes the domain membership and leaves a stale computer account",
                domain.domain.as_deref().unwrap_or("(unknown)")
            ),
            "bake from a workgroup builder and join instances at launch (name-on-launch cleanup script)",
            domain.domain.clone().into_iter().collect(),
        ));
    }
    if let Some(free) = report.free_disk_bytes {
        let drive = report.system_drive.as_deref().unwrap_or("C:");
        let gib = free as f64 / f64::from(1u32 << 30);
        if free < BLOCK_FREE_BYTES {
            findings.push(finding(
                "low-disk-space",
                Severity::Block,
                format!("{drive} has {gib:.2} GiB free; Sysprep and the first boot need at least 1 GiB"),
                "free space (Dism /Online /Cleanup-Image /StartComponentCleanup, clear temp folders) or grow the root volume",
                vec![format!("FreeSpace={free}")],
            ));
        } else if free < WARN_FREE_BYTES {
            findings.push(finding(
                "low-disk-space",
                Severity::Warn,
                format!(
                    "{drive} has {gib:.2} GiB free; instances from this image start nearly full"
                ),
                "free space or grow the root volume before baking",
                vec![format!("FreeSpace={free}")],
            ));
        }
    }
    for error in &report.errors {
        findings.push(finding(
            "check-failed",
            Severity::Warn,
            format!("a pre-flight check could not run: {error}"),
            "run the pre-flight script interactively on the builder to see why; the other checks still ran",
            Vec::new(),
        ));
    }
    // Stable order: blocking first, then by check name, so output diffs stay readable.
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.check.cmp(&b.check)));
    PreflightResult {
        blocked: findings.iter().any(|f| f.severity == Severity::Block),
        findings,
    }
}

/// The pre-flight script. `answer_file` is the unattend.xml Sysprep will use (checked for
/// CopyProfile and SkipRearm); by default every launch agent's answer-file location that
/// exists is checked.
pub fn preflight_script(answer_file: Option<&str>) -> String {
    let answer_files: Vec<String> = match answer_file {
        Some(path) => vec![quote(path)],
        None => LaunchAgent::ALL
            .iter()
            .map(|a| quote(a.unattend_path()))
            .collect(),
    };
    format!(
        r#"# fleetprep: pre-flight checks for Sysprep. Each check is independent.
$ErrorActionPreference = 'Stop'
$result = [ordered]@{{}}
$errors = New-Object System.Collections.Generic.List[string]

try {{
    # KB2769827: compare by PackageFamilyName plus version (a provisioned package's full name
    # is its bundle's); KB4057974: system-signed packages block Sysprep too, so none is skipped.
    $provisioned = @{{}}
    foreach ($package in @(Get-AppxProvisionedPackage -Online)) {{
        $provisioned[('{{0}}_{{1}}' -f $package.DisplayName, $package.PublisherId)] = [string]$package.Version
    }}
    $blockers = New-Object System.Collections.Generic.List[object]
    foreach ($package in @(Get-AppxPackage -AllUsers)) {{
        if ($package.IsFramework -or $package.IsResourcePackage) {{ continue }}
        $users = @($package.PackageUserInformation | Where-Object {{ [string]$_.InstallState -eq 'Installed' }} | ForEach-Object {{ [string]$_.UserSecurityId.Username }})
        if ($users.Count -eq 0) {{ continue }}
        $family = [string]$package.PackageFamilyName
        $provisionedVersion = $provisioned[$family]
        if ($null -ne $provisionedVersion -and $provisionedVersion -eq [string]$package.Version) {{ continue }}
        $blockers.Add([ordered]@{{
            packageFullName = [string]$package.PackageFullName
            packageFamilyName = $family
            version = [string]$package.Version
            provisionedVersion = $provisionedVersion
            signatureKind = [string]$package.SignatureKind
            users = $users
        }})
    }}
    $result.appxBlockers = @($blockers)
}} catch {{ $errors.Add('appx: ' + $_.Exception.Message) }}

try {{
    $result.upgradedOs = Test-Path -LiteralPath 'HKLM:\SYSTEM\Setup\Upgrade'
}} catch {{ $errors.Add('upgraded os: ' + $_.Exception.Message) }}

try {{
    $sessionManager = Get-ItemProperty -Path 'HKLM:\SYSTEM\CurrentControlSet\Control\Session Manager' -ErrorAction SilentlyContinue
    $result.pendingReboot = [ordered]@{{
        cbsRebootPending = Test-Path -LiteralPath 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending'
        windowsUpdateRebootRequired = Test-Path -LiteralPath 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired'
        pendingFileRenameOperations = ($null -ne $sessionManager -and $null -ne $sessionManager.PendingFileRenameOperations)
    }}
}} catch {{ $errors.Add('pending reboot: ' + $_.Exception.Message) }}

try {{
    $licensing = Get-CimInstance -ClassName SoftwareLicensingService
    $result.rearmCount = [int]$licensing.RemainingWindowsReArmCount
}} catch {{ $errors.Add('rearm count: ' + $_.Exception.Message) }}

try {{
    $answerFiles = @({answer_files})
    foreach ($path in $answerFiles) {{
        if (Test-Path -LiteralPath $path) {{
            [xml]$answer = Get-Content -LiteralPath $path -Raw
            $result.answerFile = $path
            $copy = $answer.SelectSingleNode("//*[local-name()='CopyProfile']")
            $result.copyProfile = ($null -ne $copy -and $copy.InnerText.Trim() -eq 'true')
            $skip = $answer.SelectSingleNode("//*[local-name()='SkipRearm']")
            if ($null -ne $skip) {{ $result.skipRearm = [int]$skip.InnerText.Trim() }}
            break
        }}
    }}
}} catch {{ $errors.Add('answer file: ' + $_.Exception.Message) }}

try {{
    if (Get-Command -Name Get-BitLockerVolume -ErrorAction SilentlyContinue) {{
        $volume = Get-BitLockerVolume -MountPoint $env:SystemDrive
        $result.bitlocker = [ordered]@{{
            protectionStatus = [string]$volume.ProtectionStatus
            volumeStatus = [string]$volume.VolumeStatus
        }}
    }} else {{
        $result.bitlocker = [ordered]@{{ protectionStatus = 'Off'; volumeStatus = 'FullyDecrypted' }}
    }}
}} catch {{ $errors.Add('bitlocker: ' + $_.Exception.Message) }}

try {{
    $v2 = Join-Path $env:ProgramFiles 'Amazon\EC2Launch\EC2Launch.exe'
    $v1 = Join-Path $env:ProgramData 'Amazon\EC2-Windows\Launch\Scripts\InitializeInstance.ps1'
    $ec2config = Join-Path $env:ProgramFiles 'Amazon\Ec2ConfigService\Ec2Config.exe'
    if (Test-Path -LiteralPath $v2) {{
        $result.agent = 'ec2launch-v2'
        # The AWS guide names the file both `.run-once` and `.runonce`: either counts.
        $state = Join-Path $env:ProgramData 'Amazon\EC2Launch\state'
        $result.agentRunOnceRecorded = (Test-Path -LiteralPath (Join-Path $state '.run-once')) -or (Test-Path -LiteralPath (Join-Path $state '.runonce'))
    }} elseif (Test-Path -LiteralPath $v1) {{
        $result.agent = 'ec2launch-v1'
        # EC2Launch v1 runs once through a scheduled task that it disables after the first boot;
        # InitializeInstance.ps1 -Schedule enables it again.
        $initialization = Get-ScheduledTask -TaskName 'Amazon Ec2 Launch - Instance Initialization' -ErrorAction SilentlyContinue
        $result.agentRunOnceRecorded = ($null -eq $initialization -or [string]$initialization.State -eq 'Disabled')
    }} elseif (Test-Path -LiteralPath $ec2config) {{
        $result.agent = 'ec2config'
    }} else {{
        $result.agent = 'none'
    }}
}} catch {{ $errors.Add('launch agent: ' + $_.Exception.Message) }}

try {{
    $system = Get-CimInstance -ClassName Win32_ComputerSystem
    $result.domain = [ordered]@{{ partOfDomain = [bool]$system.PartOfDomain; domain = [string]$system.Domain }}
}} catch {{ $errors.Add('domain: ' + $_.Exception.Message) }}

try {{
    $disk = Get-CimInstance -ClassName Win32_LogicalDisk -Filter ("DeviceID='{{0}}'" -f $env:SystemDrive)
    $result.systemDrive = $env:SystemDrive
    $result.freeDiskBytes = [uint64]$disk.FreeSpace
}} catch {{ $errors.Add('disk: ' + $_.Exception.Message) }}

$result.errors = @($errors)
Write-Output ('{PREFLIGHT_MARKER}' + ($result | ConvertTo-Json -Compress -Depth 5))
"#,
        answer_files = answer_files.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLEAN: &str = r#"FLEETPREP-PREFLIGHT:{"appxNotProvisioned":[],"pendingReboot":{"cbsRebootPending":false,"windowsUpdateRebootRequired":false,"pendingFileRenameOperations":false},"rearmCount":1000,"bitlocker":{"protectionStatus":"Off","volumeStatus":"FullyDecrypted"},"agent":"ec2launch-v2","agentRunOnceRecorded":false,"domain":{"partOfDomain":false,"domain":"WORKGROUP"},"systemDrive":"C:","freeDiskBytes":42949672960,"errors":[]}"#;

    #[test]
    fn a_clean_builder_has_no_findings() {
        let result = check_output(CLEAN).unwrap();
        assert_eq!(result.findings, vec![]);
        assert!(!result.blocked);
    }

    #[test]
    fn every_blocker_is_found_with_remediation() {
        let output = r#"noise
FLEETPREP-PREFLIGHT:{"appxNotProvisioned":"Microsoft.BingWeather_4.53.51922.0_x64__8wekyb3d8bbwe","pendingReboot":{"cbsRebootPending":true,"windowsUpdateRebootRequired":false,"pendingFileRenameOperations":true},"rearmCount":0,"skipRearm":0,"bitlocker":{"protectionStatus":"On","volumeStatus":"FullyEncrypted"},"agent":"ec2launch-v2","agentRunOnceRecorded":true,"copyProfile":true,"answerFile":"C:\\ProgramData\\Amazon\\EC2Launch\\sysprep\\unattend.xml","domain":{"partOfDomain":true,"domain":"corp.example.com"},"systemDrive":"C:","freeDiskBytes":524288000,"errors":["disk: access denied"]}"#;
        let result = check_output(output).unwrap();
        assert!(result.blocked);
        let checks: Vec<(&str, Severity)> = result
            .findings
            .iter()
            .map(|f| (f.check.as_str(), f.severity))
            .collect();
        assert_eq!(
            checks,
            vec![
                ("appx-not-provisioned", Severity::Block),
                ("bitlocker", Severity::Block),
                ("low-disk-space", Severity::Block),
                ("pending-reboot", Severity::Block),
                ("rearm-limit", Severity::Block),
                ("agent-run-once", Severity::Warn),
                ("check-failed", Severity::Warn),
                ("copy-profile", Severity::Warn),
                ("domain-member", Severity::Warn),
            ]
        );
        assert_eq!(
            result.findings[0].evidence,
            vec!["Microsoft.BingWeather_4.53.51922.0_x64__8wekyb3d8bbwe"]
        );
        assert_eq!(result.findings[3].evidence.len(), 2);
        assert!(result.findings.iter().all(|f| !f.remediation.is_empty()));
    }

    #[test]
    fn bare_snake_case_json_is_accepted() {
        let result = check_output(
            "{\"appx_not_provisioned\":[\"A_1_x64__b\"],\"reboot_pending\":{\"cbs\":false,\"windows_update\":true,\"pending_file_rename\":false}}",
        )
        .unwrap();
        let checks: Vec<&str> = result.findings.iter().map(|f| f.check.as_str()).collect();
        assert_eq!(checks, ["appx-not-provisioned", "pending-reboot"]);
    }

    /// Both agents' run-once state is probed, and an EC2Launch v1 report names that agent.
    #[test]
    fn run_once_state_covers_both_ec2launch_versions() {
        let script = preflight_script(None);
        assert!(script.contains("'.run-once'") && script.contains("'.runonce'"));
        assert!(
            script.contains(
                "Get-ScheduledTask -TaskName 'Amazon Ec2 Launch - Instance Initialization'"
            )
        );
        let result = check_output(
            r#"FLEETPREP-PREFLIGHT:{"agent":"ec2launch-v1","agentRunOnceRecorded":true}"#,
        )
        .unwrap();
        assert!(!result.blocked);
        assert_eq!(result.findings.len(), 1);
        assert_eq!(result.findings[0].check, "agent-run-once");
        assert_eq!(result.findings[0].evidence, vec!["ec2launch-v1"]);
        assert!(
            result.findings[0]
                .remediation
                .contains("InitializeInstance.ps1 -Schedule")
        );
    }

    /// Issue 10, point 6 (KB2769827, KB4057974): packages are compared by family and version,
    /// their users come from PackageUserInformation, and system-signed ones are not hidden.
    #[test]
    fn appx_is_checked_by_family_and_version_without_hiding_system_packages() {
        let script = preflight_script(None);
        assert!(script.contains("$package.PackageFamilyName"));
        assert!(script.contains("$package.PackageUserInformation"));
        assert!(script.contains("'{0}_{1}' -f $package.DisplayName, $package.PublisherId"));
        assert!(script.contains("$provisionedVersion -eq [string]$package.Version"));
        assert!(!script.contains("SignatureKind -ne 'System'"));
        assert!(!script.contains("$provisioned -notcontains $_.PackageFullName"));
        let output = r#"FLEETPREP-PREFLIGHT:{"appxBlockers":[{"packageFullName":"Microsoft.Windows.SecHealthUI_10.0.19041.1_neutral__cw5n1h2txyewy","packageFamilyName":"Microsoft.Windows.SecHealthUI_cw5n1h2txyewy","version":"10.0.19041.1","provisionedVersion":null,"signatureKind":"System","users":"EC2AMAZ-1\\Administrator"},{"packageFullName":"Microsoft.BingWeather_4.53.51922.0_x64__8wekyb3d8bbwe","packageFamilyName":"Microsoft.BingWeather_8wekyb3d8bbwe","version":"4.53.51922.0","provisionedVersion":"4.25.20211.0","signatureKind":"Store","users":["EC2AMAZ-1\\Administrator"]}],"upgradedOs":false}"#;
        let result = check_output(output).unwrap();
        assert!(result.blocked);
        assert_eq!(result.findings.len(), 1);
        assert_eq!(
            result.findings[0].evidence,
            [
                "Microsoft.Windows.SecHealthUI_10.0.19041.1_neutral__cw5n1h2txyewy",
                "Microsoft.BingWeather_4.53.51922.0_x64__8wekyb3d8bbwe"
            ]
        );
        assert_eq!(
            category_of(&result.findings[0].check),
            Some(crate::diagnose::Category::AppxNotProvisioned)
        );
    }

    /// Issue 10, point 7: BitLocker on the OS volume and an in-place-upgraded OS block, each
    /// with the category Sysprep itself would fail with.
    #[test]
    fn bitlocker_and_an_upgraded_os_block() {
        let result = check_output(
            r#"FLEETPREP-PREFLIGHT:{"bitlocker":{"protectionStatus":"On","volumeStatus":"FullyEncrypted"},"upgradedOs":true}"#,
        )
        .unwrap();
        let checks: Vec<&str> = result.findings.iter().map(|f| f.check.as_str()).collect();
        assert_eq!(checks, ["bitlocker", "upgraded-os"]);
        assert_eq!(
            category_of("bitlocker"),
            Some(crate::diagnose::Category::BitlockerEnabled)
        );
        assert_eq!(
            category_of("upgraded-os"),
            Some(crate::diagnose::Category::ValidationFailed)
        );
        assert!(
            preflight_script(None).contains(r"Test-Path -LiteralPath 'HKLM:\SYSTEM\Setup\Upgrade'")
        );
    }

    #[test]
    fn skip_rearm_clears_the_rearm_block() {
        let report = PreflightReport {
            rearm_count: Some(0),
            skip_rearm: Some(1),
            ..PreflightReport::default()
        };
        assert!(evaluate(&report).findings.is_empty());
    }

    #[test]
    fn bad_output_is_an_error_naming_the_line() {
        assert_eq!(
            parse_preflight_output("x"),
            Err(PreflightError::MissingMarker)
        );
        let error = parse_preflight_output("a\nb\nFLEETPREP-PREFLIGHT:{\"rearmCount\":\"many\"}")
            .unwrap_err()
            .to_string();
        assert!(error.contains("line 3"), "{error}");
        assert!(
            error.contains("rearmCount") || error.contains("invalid type"),
            "{error}"
        );
    }
}
