//! Which launch agent an instance runs, found by a generated script.
//!
//! AWS ships three launch agents (EC2Launch v2 on Windows Server 2022+ and newer 2016/2019
//! AMIs, EC2Launch v1 on 2016/2019, EC2Config up to 2012 R2; see "Compare Amazon EC2 launch
//! agents"), and each generalizes differently. [`detection_script`] reports the agent, its
//! version, the OS build and the state that matters for Sysprep as one marked JSON line;
//! [`parse_detection_output`] finds and checks that line in whatever else the command printed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The marker the detection script prints before its JSON.
pub const DETECT_MARKER: &str = "FLEETPREP-DETECT:";
/// The marker the identity script prints before its JSON.
pub const IDENTITY_MARKER: &str = "FLEETPREP-IDENTITY:";
/// The marker the image-state script prints before its JSON.
pub const IMAGE_STATE_MARKER: &str = "FLEETPREP-IMAGESTATE:";

/// A Windows launch agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LaunchAgent {
    /// EC2Launch v2 (`EC2Launch.exe`, Windows Server 2022+ and newer 2016/2019 AMIs).
    #[serde(rename = "ec2launch-v2")]
    Ec2LaunchV2,
    /// EC2Launch v1 (PowerShell scripts, Windows Server 2016/2019).
    #[serde(rename = "ec2launch-v1")]
    Ec2LaunchV1,
    /// EC2Config (Windows Server 2012 R2 and earlier).
    #[serde(rename = "ec2config")]
    Ec2Config,
    /// No agent: plain `sysprep.exe`.
    #[serde(rename = "none")]
    None,
}

impl LaunchAgent {
    /// Every agent, for exhaustive tests.
    pub const ALL: [LaunchAgent; 4] = [
        LaunchAgent::Ec2LaunchV2,
        LaunchAgent::Ec2LaunchV1,
        LaunchAgent::Ec2Config,
        LaunchAgent::None,
    ];

    /// The stable name used in JSON and by the workflows.
    pub fn as_str(self) -> &'static str {
        match self {
            LaunchAgent::Ec2LaunchV2 => "ec2launch-v2",
            LaunchAgent::Ec2LaunchV1 => "ec2launch-v1",
            LaunchAgent::Ec2Config => "ec2config",
            LaunchAgent::None => "none",
        }
    }

    /// The answer file the agent hands to Sysprep (AWS "Use Windows Sysprep with a launch
    /// agent"); without an agent fleetprep uses the Sysprep folder.
    pub fn unattend_path(self) -> &'static str {
        match self {
            LaunchAgent::Ec2LaunchV2 => r"C:\ProgramData\Amazon\EC2Launch\sysprep\unattend.xml",
            LaunchAgent::Ec2LaunchV1 => {
                r"C:\ProgramData\Amazon\EC2-Windows\Launch\Sysprep\Unattend.xml"
            }
            LaunchAgent::Ec2Config => r"C:\Program Files\Amazon\Ec2ConfigService\sysprep2008.xml",
            LaunchAgent::None => r"C:\Windows\System32\Sysprep\unattend.xml",
        }
    }
}

impl fmt::Display for LaunchAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LaunchAgent {
    type Err = String;
    /// Accepts the JSON names and the CLI short forms `v2`, `v1`, `ec2config`, `none`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "v2" | "ec2launch-v2" => Ok(LaunchAgent::Ec2LaunchV2),
            "v1" | "ec2launch-v1" | "ec2launch" => Ok(LaunchAgent::Ec2LaunchV1),
            "ec2config" => Ok(LaunchAgent::Ec2Config),
            "none" => Ok(LaunchAgent::None),
            other => Err(format!(
                "unknown launch agent {other:?}: use v2, v1, ec2config or none"
            )),
        }
    }
}

/// Windows' generalization state, from `HKLM\...\Setup\State\ImageState`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum ImageState {
    /// Setup finished; the image is in normal use.
    Complete,
    /// Sysprep failed part-way: the image cannot be deployed or captured.
    Undeployable,
    /// Generalized and sealed to OOBE: the state a captured image should be in.
    GeneralizeResealToOobe,
    /// Specialized and sealed to OOBE.
    SpecializeResealToOobe,
    /// Generalized and sealed to audit mode.
    GeneralizeResealToAudit,
    /// Specialized and sealed to audit mode.
    SpecializeResealToAudit,
    /// A state this crate does not know, kept verbatim.
    Other(String),
}

impl From<String> for ImageState {
    fn from(value: String) -> Self {
        match value.as_str() {
            "IMAGE_STATE_COMPLETE" => ImageState::Complete,
            "IMAGE_STATE_UNDEPLOYABLE" => ImageState::Undeployable,
            "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE" => ImageState::GeneralizeResealToOobe,
            "IMAGE_STATE_SPECIALIZE_RESEAL_TO_OOBE" => ImageState::SpecializeResealToOobe,
            "IMAGE_STATE_GENERALIZE_RESEAL_TO_AUDIT" => ImageState::GeneralizeResealToAudit,
            "IMAGE_STATE_SPECIALIZE_RESEAL_TO_AUDIT" => ImageState::SpecializeResealToAudit,
            _ => ImageState::Other(value),
        }
    }
}

impl From<ImageState> for String {
    fn from(value: ImageState) -> Self {
        value.as_str().to_owned()
    }
}

impl ImageState {
    /// The registry value, e.g. `IMAGE_STATE_COMPLETE`.
    pub fn as_str(&self) -> &str {
        match self {
            ImageState::Complete => "IMAGE_STATE_COMPLETE",
            ImageState::Undeployable => "IMAGE_STATE_UNDEPLOYABLE",
            ImageState::GeneralizeResealToOobe => "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE",
            ImageState::SpecializeResealToOobe => "IMAGE_STATE_SPECIALIZE_RESEAL_TO_OOBE",
            ImageState::GeneralizeResealToAudit => "IMAGE_STATE_GENERALIZE_RESEAL_TO_AUDIT",
            ImageState::SpecializeResealToAudit => "IMAGE_STATE_SPECIALIZE_RESEAL_TO_AUDIT",
            ImageState::Other(other) => other,
        }
    }
}

/// What the detection script found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentReport {
    /// The launch agent found.
    pub agent: LaunchAgent,
    /// The agent executable or module version.
    #[serde(default, alias = "version")]
    pub agent_version: Option<String>,
    /// The agent's Windows service status (`Running`, `Stopped`), when it has one.
    #[serde(default)]
    pub agent_service: Option<String>,
    /// `Major.Minor.Build.UBR`, e.g. `10.0.20348.2340`.
    #[serde(default)]
    pub os_build: Option<String>,
    /// The OS caption, e.g. `Microsoft Windows Server 2022 Datacenter`.
    #[serde(default)]
    pub os_caption: Option<String>,
    /// `ImageState` from the registry.
    #[serde(default)]
    pub image_state: Option<ImageState>,
    /// The agent has recorded its run-once work as done, so an image captured now would skip
    /// it: EC2Launch v2's `state\.run-once` exists (`ec2launch reset` clears it), or EC2Launch
    /// v1's initialization task is missing or disabled (`InitializeInstance.ps1 -Schedule`
    /// enables it). Same meaning as the pre-flight `agent-run-once` check.
    #[serde(default)]
    pub run_once_recorded: bool,
    /// Whether the SSM Agent service is running (it carries every later command).
    #[serde(default)]
    pub ssm_agent_running: Option<bool>,
}

/// Why detection output could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetectError {
    /// The script's marker line is missing.
    #[error(
        "no line starting with {marker} (or a JSON object) in the command output: did the script run (check the SSM command's stderr)?"
    )]
    MissingMarker {
        /// The marker looked for.
        marker: &'static str,
    },
    /// The JSON on the marker line does not parse.
    #[error("output line {line}: the JSON after {marker} is invalid: {message}")]
    InvalidJson {
        /// The marker of the line.
        marker: &'static str,
        /// 1-based line number in the output.
        line: usize,
        /// The JSON error.
        message: String,
    },
}

/// The JSON of the last line starting with `marker` (a script re-run after a reboot, exit
/// 3010, prints again), or else of the last line that is a JSON object (scripts that print
/// bare JSON), with its 1-based line number. Shared by every report parser in this crate.
pub(crate) fn marked_line<'a>(output: &'a str, marker: &str) -> Option<(usize, &'a str)> {
    let lines = || {
        output
            .lines()
            .enumerate()
            .map(|(i, line)| (i + 1, line.trim_start_matches('\u{feff}').trim()))
    };
    lines()
        .filter_map(|(i, line)| line.strip_prefix(marker).map(|json| (i, json)))
        .last()
        .or_else(|| lines().filter(|(_, line)| line.starts_with('{')).last())
}

fn find_marked<'a>(output: &'a str, marker: &'static str) -> Result<(usize, &'a str), DetectError> {
    marked_line(output, marker).ok_or(DetectError::MissingMarker { marker })
}

/// Reads the detection script's report out of the command's standard output.
pub fn parse_detection_output(output: &str) -> Result<AgentReport, DetectError> {
    let (line, json) = find_marked(output, DETECT_MARKER)?;
    serde_json::from_str(json).map_err(|e| DetectError::InvalidJson {
        marker: DETECT_MARKER,
        line,
        message: e.to_string(),
    })
}

/// The PowerShell detection script (Windows PowerShell 5.1; no modules beyond the inbox ones).
pub fn detection_script() -> String {
    format!(
        r#"# fleetprep: detect the launch agent and the state that matters for Sysprep.
$ErrorActionPreference = 'Stop'
$report = [ordered]@{{
    agent = 'none'
    agentVersion = $null
    agentService = $null
    osBuild = $null
    osCaption = $null
    imageState = $null
    runOnceRecorded = $false
    ssmAgentRunning = $null
}}
$os = Get-CimInstance -ClassName Win32_OperatingSystem
$report.osCaption = [string]$os.Caption
$report.osBuild = [string]$os.Version
$currentVersion = Get-ItemProperty -Path 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion' -ErrorAction SilentlyContinue
if ($null -ne $currentVersion -and $null -ne $currentVersion.UBR) {{
    $report.osBuild = '{{0}}.{{1}}' -f $os.Version, $currentVersion.UBR
}}
$setupState = Get-ItemProperty -Path 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Setup\State' -ErrorAction SilentlyContinue
if ($null -ne $setupState) {{
    $report.imageState = [string]$setupState.ImageState
}}
$ssm = Get-Service -Name 'AmazonSSMAgent' -ErrorAction SilentlyContinue
if ($null -ne $ssm) {{
    $report.ssmAgentRunning = ($ssm.Status -eq 'Running')
}}
$v2 = Join-Path $env:ProgramFiles 'Amazon\EC2Launch\EC2Launch.exe'
$v1 = Join-Path $env:ProgramData 'Amazon\EC2-Windows\Launch\Scripts\InitializeInstance.ps1'
$ec2config = Join-Path $env:ProgramFiles 'Amazon\Ec2ConfigService\Ec2Config.exe'
if (Test-Path -LiteralPath $v2) {{
    $report.agent = 'ec2launch-v2'
    $report.agentVersion = [string](Get-Item -LiteralPath $v2).VersionInfo.ProductVersion
    $service = Get-Service -Name 'Amazon EC2Launch' -ErrorAction SilentlyContinue
    if ($null -ne $service) {{ $report.agentService = [string]$service.Status }}
    # The AWS guide names the file both `.run-once` and `.runonce`: either counts.
    $state = Join-Path $env:ProgramData 'Amazon\EC2Launch\state'
    $report.runOnceRecorded = (Test-Path -LiteralPath (Join-Path $state '.run-once')) -or (Test-Path -LiteralPath (Join-Path $state '.runonce'))
}} elseif (Test-Path -LiteralPath $v1) {{
    $report.agent = 'ec2launch-v1'
    $manifest = Join-Path $env:ProgramData 'Amazon\EC2-Windows\Launch\Module\Ec2Launch.psd1'
    if (Test-Path -LiteralPath $manifest) {{
        try {{ $report.agentVersion = [string](Import-PowerShellDataFile -Path $manifest).ModuleVersion }} catch {{ }}
    }}
    $task = Get-ScheduledTask -TaskName 'Amazon Ec2 Launch - Instance Initialization' -ErrorAction SilentlyContinue
    # Disabled after the first boot; InitializeInstance.ps1 -Schedule enables it again.
    $report.runOnceRecorded = ($null -eq $task -or [string]$task.State -eq 'Disabled')
}} elseif (Test-Path -LiteralPath $ec2config) {{
    $report.agent = 'ec2config'
    $report.agentVersion = [string](Get-Item -LiteralPath $ec2config).VersionInfo.ProductVersion
    $service = Get-Service -Name 'Ec2Config' -ErrorAction SilentlyContinue
    if ($null -ne $service) {{ $report.agentService = [string]$service.Status }}
}}
Write-Output ('{DETECT_MARKER}' + ($report | ConvertTo-Json -Compress))
"#
    )
}

/// Prints `ImageState` from `HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Setup\State`
/// as one marked JSON line. After Sysprep without shutdown it confirms that the image is
/// sealed (`IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE`) before the instance is stopped through the
/// API, as AWS-UpdateWindowsAmi does.
pub fn image_state_script() -> String {
    format!(
        r#"# fleetprep: report the Windows image state after Sysprep.
$ErrorActionPreference = 'Stop'
$setupState = Get-ItemProperty -LiteralPath 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Setup\State' -ErrorAction SilentlyContinue
$state = [ordered]@{{ imageState = $null }}
if ($null -ne $setupState) {{ $state.imageState = [string]$setupState.ImageState }}
Write-Output ('{IMAGE_STATE_MARKER}' + ($state | ConvertTo-Json -Compress))
"#
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImageStateReport {
    #[serde(default, alias = "ImageState")]
    image_state: Option<ImageState>,
}

/// Why a Sysprep run is not confirmed sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The output could not be read.
    #[error(transparent)]
    Unreadable(#[from] DetectError),
    /// The registry value is missing.
    #[error(
        "ImageState is missing under HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Setup\\State: Sysprep did not record a state; read the Panther logs"
    )]
    Missing,
    /// Sysprep finished without sealing the image.
    #[error(
        "ImageState is {0}, not IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE: Sysprep did not generalize the image; read the Panther logs"
    )]
    NotSealed(String),
}

/// Reads the image-state script's output and confirms the image is generalized and sealed
/// to OOBE, the state a captured image must be in.
pub fn confirm_sealed(output: &str) -> Result<ImageState, SealError> {
    let (line, json) = find_marked(output, IMAGE_STATE_MARKER)?;
    let report: ImageStateReport =
        serde_json::from_str(json).map_err(|e| DetectError::InvalidJson {
            marker: IMAGE_STATE_MARKER,
            line,
            message: e.to_string(),
        })?;
    match report.image_state {
        Some(ImageState::GeneralizeResealToOobe) => Ok(ImageState::GeneralizeResealToOobe),
        Some(ImageState::Other(empty)) if empty.is_empty() => Err(SealError::Missing),
        Some(other) => Err(SealError::NotSealed(other.as_str().to_owned())),
        None => Err(SealError::Missing),
    }
}

/// After a rename or a generalize-and-specialize, the machine's identity as one marked JSON
/// line: the computer name and the machine SID (the account-domain part of a local account's
/// SID, which Sysprep's generalize pass regenerates).
pub fn identity_script() -> String {
    format!(
        r#"# fleetprep: report the computer name and machine SID.
$ErrorActionPreference = 'Stop'
$account = Get-LocalUser | Select-Object -First 1
$identity = [ordered]@{{
    computerName = $env:COMPUTERNAME
    machineSid = [string]$account.SID.AccountDomainSid.Value
}}
Write-Output ('{IDENTITY_MARKER}' + ($identity | ConvertTo-Json -Compress))
"#
    )
}

/// What the identity script reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// `$env:COMPUTERNAME` (NetBIOS name, upper case).
    #[serde(alias = "ComputerName")]
    pub computer_name: String,
    /// The machine SID (`S-1-5-21-...`, without a RID).
    #[serde(alias = "MachineSid")]
    pub machine_sid: String,
}

/// Reads the identity script's report out of the command's standard output.
pub fn parse_identity_output(output: &str) -> Result<Identity, DetectError> {
    let (line, json) = find_marked(output, IDENTITY_MARKER)?;
    serde_json::from_str(json).map_err(|e| DetectError::InvalidJson {
        marker: IDENTITY_MARKER,
        line,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_marked_line_among_noise() {
        let output = "WARNING: something\r\nFLEETPREP-DETECT:{\"agent\":\"ec2launch-v2\",\"agentVersion\":\"2.0.1924.0\",\"agentService\":\"Stopped\",\"osBuild\":\"10.0.20348.2340\",\"osCaption\":\"Microsoft Windows Server 2022 Datacenter\",\"imageState\":\"IMAGE_STATE_COMPLETE\",\"runOnceRecorded\":true,\"ssmAgentRunning\":true}\r\n";
        let report = parse_detection_output(output).unwrap();
        assert_eq!(report.agent, LaunchAgent::Ec2LaunchV2);
        assert_eq!(report.agent_version.as_deref(), Some("2.0.1924.0"));
        assert_eq!(report.image_state, Some(ImageState::Complete));
        assert!(report.run_once_recorded);
        assert_eq!(report.ssm_agent_running, Some(true));
    }

    #[test]
    fn minimal_and_unknown_states() {
        let report = parse_detection_output(
            "FLEETPREP-DETECT:{\"agent\":\"none\",\"imageState\":\"IMAGE_STATE_SOMETHING_NEW\"}",
        )
        .unwrap();
        assert_eq!(report.agent, LaunchAgent::None);
        assert_eq!(
            report.image_state,
            Some(ImageState::Other("IMAGE_STATE_SOMETHING_NEW".into()))
        );
    }

    /// Detection and the pre-flight check probe the same run-once state, with one meaning:
    /// "done, so a new image would skip it".
    #[test]
    fn run_once_probes_match_the_preflight_script() {
        let detect = detection_script();
        let preflight = crate::preflight::preflight_script(None);
        for probe in [
            "(Join-Path $state '.run-once')",
            "(Join-Path $state '.runonce')",
            "Get-ScheduledTask -TaskName 'Amazon Ec2 Launch - Instance Initialization'",
            "-eq 'Disabled')",
        ] {
            assert!(detect.contains(probe), "detection lacks {probe}");
            assert!(preflight.contains(probe), "pre-flight lacks {probe}");
        }
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(matches!(
            parse_detection_output("nothing here"),
            Err(DetectError::MissingMarker { .. })
        ));
        let error = parse_detection_output("a\nFLEETPREP-DETECT:{\"agent\":\"ec2launch-v3\"}")
            .unwrap_err()
            .to_string();
        assert!(error.contains("line 2"), "{error}");
        assert!(error.contains("ec2launch-v3"), "{error}");
    }

    #[test]
    fn agent_names_round_trip() {
        for agent in LaunchAgent::ALL {
            assert_eq!(agent.as_str().parse::<LaunchAgent>(), Ok(agent));
        }
        assert_eq!("v2".parse::<LaunchAgent>(), Ok(LaunchAgent::Ec2LaunchV2));
        assert!("v3".parse::<LaunchAgent>().is_err());
    }

    #[test]
    fn bare_json_and_pascal_case_are_accepted() {
        let report =
            parse_detection_output("{\"agent\":\"ec2config\",\"version\":\"4.9.5288\"}\n").unwrap();
        assert_eq!(report.agent, LaunchAgent::Ec2Config);
        assert_eq!(report.agent_version.as_deref(), Some("4.9.5288"));
        let id =
            parse_identity_output("{\"ComputerName\":\"WEB-001\",\"MachineSid\":\"S-1-5-21-9\"}")
                .unwrap();
        assert_eq!(id.machine_sid, "S-1-5-21-9");
    }

    /// Issue 10, bug 1: success is confirmed by the registry's ImageState, as
    /// AWS-UpdateWindowsAmi does before it stops the instance.
    #[test]
    fn sealed_only_when_generalized_to_oobe() {
        let script = image_state_script();
        assert!(script.contains(r"HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Setup\State"));
        assert!(script.contains("$setupState.ImageState"));
        assert_eq!(
            confirm_sealed(
                "FLEETPREP-IMAGESTATE:{\"imageState\":\"IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE\"}"
            ),
            Ok(ImageState::GeneralizeResealToOobe)
        );
        let failed =
            confirm_sealed("FLEETPREP-IMAGESTATE:{\"imageState\":\"IMAGE_STATE_COMPLETE\"}");
        assert_eq!(
            failed,
            Err(SealError::NotSealed("IMAGE_STATE_COMPLETE".into()))
        );
        assert_eq!(
            confirm_sealed("FLEETPREP-IMAGESTATE:{\"imageState\":null}"),
            Err(SealError::Missing)
        );
        assert!(matches!(
            confirm_sealed("nothing"),
            Err(SealError::Unreadable(_))
        ));
    }

    #[test]
    fn identity_output() {
        let id = parse_identity_output(
            "FLEETPREP-IDENTITY:{\"computerName\":\"WEB-001\",\"machineSid\":\"S-1-5-21-1-2-3\"}",
        )
        .unwrap();
        assert_eq!(id.computer_name, "WEB-001");
        assert_eq!(id.machine_sid, "S-1-5-21-1-2-3");
    }
}
