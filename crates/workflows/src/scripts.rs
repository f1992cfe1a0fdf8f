//! The PowerShell the workflows send through SSM `AWS-RunPowerShellScript`.
//!
//! Per-instance values (hostnames) travel in a lookup table keyed by instance id, and each
//! instance picks its own entry through IMDSv2. That is what lets one SendCommand carry up to 50
//! different names (see [`crate::batch`]). Every value is quoted with
//! [`sysprep::powershell::quote`]. Each script starts with a `# fleetprep:<kind>` line so logs
//! (and the simulated fleet) can tell them apart.

use sysprep::powershell::quote;

/// The table placeholder line a batched template carries.
pub const TABLE_LINE: &str = "{{FLEETPREP_TABLE}}";

const INSTANCE_ID: [&str; 2] = [
    "$token = Invoke-RestMethod -Method Put -Uri 'http://169.254.169.254/latest/api/token' -Headers @{'X-aws-ec2-metadata-token-ttl-seconds' = '300'}",
    "$id = Invoke-RestMethod -Uri 'http://169.254.169.254/latest/meta-data/instance-id' -Headers @{'X-aws-ec2-metadata-token' = $token}",
];

/// Renders the lookup table line for (instance id, value) pairs.
pub fn table(entries: &[(String, String)]) -> String {
    let body = entries
        .iter()
        .map(|(id, value)| format!("{} = {}", quote(id), quote(value)))
        .collect::<Vec<_>>()
        .join("; ");
    format!("$fleetprepValues = @{{ {body} }}")
}

/// Replaces [`TABLE_LINE`] in a template with the table for `entries`.
pub fn render(template: &[String], entries: &[(String, String)]) -> Vec<String> {
    template
        .iter()
        .map(|line| {
            if line == TABLE_LINE {
                table(entries)
            } else {
                line.clone()
            }
        })
        .collect()
}

fn with_lookup(kind: &str, body: &[&str]) -> Vec<String> {
    let mut lines = vec![format!("# fleetprep:{kind}"), TABLE_LINE.to_string()];
    lines.extend(INSTANCE_ID.iter().map(|s| s.to_string()));
    lines.push("$value = $fleetprepValues[$id]".into());
    lines.extend(body.iter().map(|s| s.to_string()));
    lines
}

/// Rename to the instance's table value, reboot, and report the identity: exit code 3010 makes
/// the SSM agent reboot the instance and run the script again from the start (AWS Systems
/// Manager, "Rebooting managed nodes from scripts"), so the second run finds the new name and
/// prints `$env:COMPUTERNAME` and the machine SID. One command renames and verifies.
pub fn rename() -> Vec<String> {
    let mut body = vec![
        "if ($env:COMPUTERNAME -ne $value) {",
        "  Rename-Computer -NewName $value -Force",
        "  exit 3010",
        "}",
    ];
    body.extend(IDENTITY);
    with_lookup("rename", &body)
}

const IDENTITY: [&str; 2] = [
    "$sid = (Get-LocalUser | Where-Object { $_.SID -like 'S-1-5-21-*-500' } | Select-Object -First 1).SID.AccountDomainSid.Value",
    "@{ ComputerName = $env:COMPUTERNAME; MachineSid = $sid } | ConvertTo-Json -Compress",
];

/// Generalize with an unattend ComputerName from the table, then reboot: a new machine SID and
/// the new name come up together.
pub fn generalize_with_name() -> Vec<String> {
    with_lookup(
        "generalize",
        &[
            "$unattend = Join-Path $env:WINDIR 'Temp\\fleetprep-unattend.xml'",
            "$xml = '<?xml version=\"1.0\" encoding=\"utf-8\"?><unattend xmlns=\"urn:schemas-microsoft-com:unattend\"><settings pass=\"specialize\"><component name=\"Microsoft-Windows-Shell-Setup\" processorArchitecture=\"amd64\" publicKeyToken=\"31bf3856ad364e35\" language=\"neutral\" versionScope=\"nonSxS\"><ComputerName>__NAME__</ComputerName></component></settings></unattend>'",
            "Set-Content -Path $unattend -Value ($xml.Replace('__NAME__', $value)) -Encoding UTF8",
            "& (Join-Path $env:WINDIR 'System32\\Sysprep\\Sysprep.exe') /generalize /oobe /reboot /quiet \"/unattend:$unattend\"",
        ],
    )
}

/// Reports the computer name and machine SID as JSON.
pub fn identity() -> Vec<String> {
    let mut lines = vec!["# fleetprep:identity".to_string()];
    lines.extend(IDENTITY.iter().map(|s| s.to_string()));
    lines
}

/// Reports which launch agent is installed as JSON (`ec2launch-v2`, `ec2launch-v1`,
/// `ec2config`, `none`).
pub fn detect_agent() -> Vec<String> {
    vec![
        "# fleetprep:detect-agent".into(),
        "$v2 = Join-Path $env:ProgramFiles 'Amazon\\EC2Launch\\EC2Launch.exe'".into(),
        "$v1 = Join-Path $env:ProgramData 'Amazon\\EC2-Windows\\Launch\\Scripts\\InitializeInstance.ps1'".into(),
        "$cfg = Join-Path $env:ProgramFiles 'Amazon\\Ec2ConfigService\\Ec2Config.exe'".into(),
        "if (Test-Path $v2) { $agent = 'ec2launch-v2'; $version = (Get-Item $v2).VersionInfo.ProductVersion }".into(),
        "elseif (Test-Path $v1) { $agent = 'ec2launch-v1'; $version = '' }".into(),
        "elseif (Test-Path $cfg) { $agent = 'ec2config'; $version = (Get-Item $cfg).VersionInfo.ProductVersion }".into(),
        "else { $agent = 'none'; $version = '' }".into(),
        "@{ agent = $agent; version = $version } | ConvertTo-Json -Compress".into(),
    ]
}

/// The pre-flight checks: JSON of known Sysprep blockers.
pub fn preflight() -> Vec<String> {
    vec![
        "# fleetprep:preflight".into(),
        "$appx = @(Get-AppxPackage -AllUsers | Where-Object { $_.PackageUserInformation.InstallState -contains 'Installed' -and -not (Get-AppxProvisionedPackage -Online | Where-Object DisplayName -eq $_.Name) } | ForEach-Object { $_.PackageFullName })".into(),
        "$cbs = Test-Path 'HKLM:\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Component Based Servicing\\RebootPending'".into(),
        "$wu = Test-Path 'HKLM:\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\WindowsUpdate\\Auto Update\\RebootRequired'".into(),
        "$pfr = $null -ne (Get-ItemProperty 'HKLM:\\SYSTEM\\CurrentControlSet\\Control\\Session Manager' -Name PendingFileRenameOperations -ErrorAction SilentlyContinue)".into(),
        "@{ appx_not_provisioned = $appx; reboot_pending = @{ cbs = $cbs; windows_update = $wu; pending_file_rename = $pfr } } | ConvertTo-Json -Compress -Depth 4".into(),
    ]
}

/// The generalize-and-shut-down sequence for a builder, by launch agent (AWS docs: EC2Launch v2
/// `ec2launch sysprep --shutdown`; EC2Launch v1 `InitializeInstance.ps1 -Schedule` then
/// `SysprepInstance.ps1`; EC2Config `ec2config.exe -sysprep`; else plain Sysprep).
pub fn sysprep_shutdown(agent: &str) -> Vec<String> {
    let mut lines = vec!["# fleetprep:sysprep".to_string()];
    match agent {
        "ec2launch-v2" => {
            lines.push(
                "& (Join-Path $env:ProgramFiles 'Amazon\\EC2Launch\\EC2Launch.exe') reset --block"
                    .into(),
            );
            lines.push("& (Join-Path $env:ProgramFiles 'Amazon\\EC2Launch\\EC2Launch.exe') sysprep --shutdown".into());
        }
        "ec2launch-v1" => {
            lines.push("& (Join-Path $env:ProgramData 'Amazon\\EC2-Windows\\Launch\\Scripts\\InitializeInstance.ps1') -Schedule".into());
            lines.push("& (Join-Path $env:ProgramData 'Amazon\\EC2-Windows\\Launch\\Scripts\\SysprepInstance.ps1')".into());
        }
        "ec2config" => {
            lines.push("& (Join-Path $env:ProgramFiles 'Amazon\\Ec2ConfigService\\ec2config.exe') -sysprep".into());
        }
        _ => {
            lines.push("& (Join-Path $env:WINDIR 'System32\\Sysprep\\Sysprep.exe') /generalize /oobe /shutdown /quiet".into());
        }
    }
    lines
}

/// A user script (customization or cleanup) wrapped so a failure is a non-zero exit.
pub fn user_script(kind: &str, body: &str) -> Vec<String> {
    let mut lines = vec![
        format!("# fleetprep:{kind}"),
        "$ErrorActionPreference = 'Stop'".to_string(),
    ];
    lines.extend(body.lines().map(str::to_string));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_quotes_hostile_values() {
        let line = table(&[("i-1".into(), "a'b$(x)".into())]);
        assert_eq!(line, "$fleetprepValues = @{ 'i-1' = 'a''b$(x)' }");
    }

    #[test]
    fn rename_template_gets_a_table() {
        let rendered = render(
            &rename(),
            &[
                ("i-1".into(), "WEB-001".into()),
                ("i-2".into(), "WEB-002".into()),
            ],
        );
        assert!(rendered.iter().any(|l| l.contains("'i-2' = 'WEB-002'")));
        assert!(!rendered.iter().any(|l| l == TABLE_LINE));
    }
}
