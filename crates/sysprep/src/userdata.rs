//! Launch-template user data that makes a fleet instance ready for fleetprep: the SSM agent
//! set to start automatically and running (fleetprep names instances through Run Command),
//! and instance metadata read through IMDSv2 only, with a console warning when the instance
//! still answers IMDSv1 (the launch template's `MetadataOptions` must set
//! `HttpTokens: required`; an instance cannot turn IMDSv1 off for itself).
//!
//! Two envelopes for one script:
//! - [`ec2launch_v2`]: EC2Launch v2's YAML user data, one `executeScript` task, PowerShell as
//!   `localSystem`, `frequency: always` so every boot re-checks ("EC2Launch v2 task
//!   definitions", executeScript, and "User data scripts", EC2 User Guide for Windows).
//! - [`powershell_tags`]: `<powershell>` with `<persist>true</persist>`, the form EC2Launch
//!   v1 and EC2Config run (and v2 too), on every boot because of `persist`.
//!
//! With the `user-data` rename method ([`crate::commands::RenameMethod::UserData`]) the same
//! user data also renames the instance from its [`HOSTNAME_TAG`] tag, which the name
//! workflow sets: [`rename_from_tag_script`] is the one `Rename-Computer` implementation
//! (`crate::commands::rename_commands_with`) with the name read from instance metadata.
//! Instance tags are only in instance metadata when the launch template's metadata options
//! say `InstanceMetadataTags: enabled`, and the metadata is updated while the instance runs
//! when a tag is added ("Work with instance tags in instance metadata", EC2 User Guide), so
//! the script waits for the tag.

use crate::commands::{NameSource, RenameMethod, RenameRestart, rename_commands_with};
use crate::powershell::quote;

/// The instance tag that carries the leased hostname for the `user-data` rename method. Tag
/// keys in instance metadata may hold letters, digits and `+ - = . , _ : @` ("Work with
/// instance tags in instance metadata"), so this key is readable there.
pub const HOSTNAME_TAG: &str = "fleetprep:hostname";

/// How long the user data waits for [`HOSTNAME_TAG`] before it fails, seconds: the default
/// launch lifecycle hook timeout, after which the launch is abandoned anyway.
pub const TAG_WAIT_SECONDS: u32 = 900;

/// The marker the tag reader prints (with the name) once it has read the tag.
pub const TAG_MARKER: &str = "FLEETPREP-HOSTNAME-TAG:";

/// PowerShell that sets `$fleetprepName` ([`crate::commands::NAME_VARIABLE`]) to this
/// instance's [`HOSTNAME_TAG`], read through IMDSv2 (a session token from a PUT, then a GET
/// carrying it: "Use IMDSv2"; the `tags/instance/<key>` category: "Work with instance tags in
/// instance metadata"), retried every 5 s for [`TAG_WAIT_SECONDS`]. When it never appears the
/// error says which of the two causes it is: no tags in instance metadata at all
/// (`InstanceMetadataTags` disabled), or no such tag (the workflow never tagged it).
pub fn tag_read_script() -> String {
    format!(
        r#"# fleetprep: the computer name is this instance's {tag} tag, read through instance metadata
$imds = 'http://169.254.169.254/latest'
$tagKey = {key}
$deadline = (Get-Date).AddSeconds({wait})
${var} = $null
while ($null -eq ${var}) {{
    try {{
        $token = Invoke-RestMethod -Method Put -Uri "$imds/api/token" -Headers @{{ 'X-aws-ec2-metadata-token-ttl-seconds' = '300' }} -TimeoutSec 5
        ${var} = [string](Invoke-RestMethod -Uri "$imds/meta-data/tags/instance/$tagKey" -Headers @{{ 'X-aws-ec2-metadata-token' = $token }} -TimeoutSec 5)
    }} catch {{
        if ((Get-Date) -gt $deadline) {{
            $tagsVisible = $true
            try {{
                $null = Invoke-RestMethod -Uri "$imds/meta-data/tags/instance" -Headers @{{ 'X-aws-ec2-metadata-token' = $token }} -TimeoutSec 5
            }} catch {{
                $tagsVisible = $false
            }}
            if ($tagsVisible) {{
                throw ('no {{0}} tag on this instance after {wait} s: the name workflow did not tag it' -f $tagKey)
            }}
            throw 'instance metadata shows no tags: set MetadataOptions InstanceMetadataTags=enabled in the launch template'
        }}
        Start-Sleep -Seconds 5
    }}
}}
Write-Output ({marker} + ${var})
"#,
        tag = HOSTNAME_TAG,
        key = quote(HOSTNAME_TAG),
        wait = TAG_WAIT_SECONDS,
        var = crate::commands::NAME_VARIABLE,
        marker = quote(TAG_MARKER),
    )
}

/// The user-data rename: [`tag_read_script`] into `Rename-Computer` with the launch agents'
/// own renamers off, then the restart `restart` names ([`RenameRestart::Ec2LaunchExit3010`]
/// in EC2Launch v2's YAML, [`RenameRestart::RestartComputer`] in `<powershell>` for EC2Launch
/// v1 and EC2Config). Idempotent: on the boot after the rename the name matches and it only
/// reports the identity.
pub fn rename_from_tag_script(restart: RenameRestart) -> String {
    rename_commands_with(NameSource::InstanceTag, RenameMethod::UserData, restart).script()
}

/// The user-data envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// EC2Launch v2 YAML ([`ec2launch_v2`]).
    Ec2LaunchV2,
    /// `<powershell>` with `persist` ([`powershell_tags`]).
    PowerShell,
}

/// The complete user data: [`script`], and with `rename_from_tag` the rename from the
/// [`HOSTNAME_TAG`] tag after it, restarting the way the envelope's agent documents.
pub fn render(format: Format, rename_from_tag: bool) -> String {
    let mut body = script();
    if rename_from_tag {
        let restart = match format {
            Format::Ec2LaunchV2 => RenameRestart::Ec2LaunchExit3010,
            Format::PowerShell => RenameRestart::RestartComputer,
        };
        body.push_str(&rename_from_tag_script(restart));
    }
    match format {
        Format::Ec2LaunchV2 => ec2launch_v2(&body),
        Format::PowerShell => powershell_tags(&body),
    }
}

/// The PowerShell both envelopes run.
pub fn script() -> String {
    // IMDSv2: a session token from a PUT, then GETs carrying it ("Use the Instance Metadata
    // Service to access instance metadata", EC2 User Guide). A GET without a token that
    // succeeds means IMDSv1 is still on.
    r#"# fleetprep: fleet instance readiness (SSM agent running, IMDSv2 only)
$ErrorActionPreference = 'Continue'
$agent = Get-Service -Name 'AmazonSSMAgent' -ErrorAction SilentlyContinue
if ($null -eq $agent) {
    Write-Output 'fleetprep: the SSM agent (AmazonSSMAgent) is not installed; fleetprep cannot reach this instance'
} else {
    Set-Service -Name 'AmazonSSMAgent' -StartupType Automatic
    if ($agent.Status -ne 'Running') {
        Start-Service -Name 'AmazonSSMAgent'
    }
    Write-Output ('fleetprep: SSM agent ' + (Get-Service -Name 'AmazonSSMAgent').Status)
}
$imds = 'http://169.254.169.254/latest'
try {
    $token = Invoke-RestMethod -Method Put -Uri "$imds/api/token" -Headers @{ 'X-aws-ec2-metadata-token-ttl-seconds' = '300' } -TimeoutSec 5
    $id = Invoke-RestMethod -Uri "$imds/meta-data/instance-id" -Headers @{ 'X-aws-ec2-metadata-token' = $token } -TimeoutSec 5
    Write-Output "fleetprep: IMDSv2 answers for $id"
} catch {
    Write-Output "fleetprep: IMDSv2 did not answer: $($_.Exception.Message)"
}
try {
    $null = Invoke-RestMethod -Uri "$imds/meta-data/instance-id" -TimeoutSec 5
    Write-Output 'fleetprep: WARNING: IMDSv1 is enabled; set MetadataOptions HttpTokens=required in the launch template'
} catch {
    Write-Output 'fleetprep: IMDSv1 is off (HttpTokens=required)'
}
"#
    .to_owned()
}

/// EC2Launch v2 YAML user data running `script` on every boot as LocalSystem.
pub fn ec2launch_v2(script: &str) -> String {
    let mut out = String::from(
        "version: 1.0\ntasks:\n- task: executeScript\n  inputs:\n  - frequency: always\n    type: powershell\n    runAs: localSystem\n    content: |-\n",
    );
    for line in script.lines() {
        if line.is_empty() {
            out.push('\n');
        } else {
            out.push_str("      ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `<powershell>` user data for EC2Launch v1 and EC2Config, run on every boot.
pub fn powershell_tags(script: &str) -> String {
    format!(
        "<powershell>\n{}</powershell>\n<persist>true</persist>\n",
        ensure_newline(script)
    )
}

fn ensure_newline(script: &str) -> String {
    if script.ends_with('\n') {
        script.to_owned()
    } else {
        format!("{script}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_yaml_carries_the_script_verbatim_in_one_execute_script_task() {
        let script = script();
        let yaml = ec2launch_v2(&script);
        let parsed: serde_json::Value = serde_norway::from_str(&yaml).unwrap();
        assert_eq!(parsed["version"], 1.0);
        let task = &parsed["tasks"][0];
        assert_eq!(task["task"], "executeScript");
        let inputs = &task["inputs"][0];
        assert_eq!(inputs["frequency"], "always");
        assert_eq!(inputs["type"], "powershell");
        assert_eq!(inputs["runAs"], "localSystem");
        assert_eq!(inputs["content"].as_str().unwrap(), script.trim_end());
    }

    #[test]
    fn the_tags_persist_and_close() {
        let data = powershell_tags(&script());
        assert!(data.starts_with("<powershell>\n# fleetprep"));
        assert!(data.ends_with("</powershell>\n<persist>true</persist>\n"));
        assert_eq!(data.matches("<powershell>").count(), 1);
    }

    /// Issue 11: the `user-data` rename method reads the tag through IMDSv2 ("Use IMDSv2":
    /// PUT a token, then GET with it; "Work with instance tags in instance metadata": the
    /// `tags/instance/<key>` path) and renames with the shared Rename-Computer code.
    #[test]
    fn the_rename_reads_the_tag_through_imdsv2_then_renames_with_the_shared_code() {
        let yaml = render(Format::Ec2LaunchV2, true);
        let parsed: serde_json::Value = serde_norway::from_str(&yaml).unwrap();
        let content = parsed["tasks"][0]["inputs"][0]["content"].as_str().unwrap();
        let token = content
            .find("Invoke-RestMethod -Method Put -Uri \"$imds/api/token\"")
            .unwrap();
        let tag = content
            .find("\"$imds/meta-data/tags/instance/$tagKey\" -Headers @{ 'X-aws-ec2-metadata-token' = $token }")
            .unwrap();
        let check = content.rfind("-notmatch '^[A-Za-z0-9-]{1,15}$'").unwrap();
        let rename = content
            .find("Rename-Computer -NewName $desired -Force")
            .unwrap();
        let exit = content.rfind("exit 3010").unwrap();
        assert!(
            token < tag && tag < check && check < rename && rename < exit,
            "{content}"
        );
        assert!(content.contains("$tagKey = 'fleetprep:hostname'"));
        assert!(content.contains("if ($env:COMPUTERNAME -ne $desired)"));
        // Inside EC2Launch v2's own run: never wait for the agent, never Restart-Computer.
        assert!(!content.contains("status --block"), "{content}");
        assert!(!content.contains("Restart-Computer"));
        // The same renamer block the SSM rename uses.
        let shared = crate::commands::agent_renamers_block(RenameRestart::Ec2LaunchExit3010);
        assert!(content.contains(shared.trim_end()));
        // The readiness part is still there, before the rename.
        assert!(content.find("AmazonSSMAgent").unwrap() < token);

        let tags = render(Format::PowerShell, true);
        assert!(tags.contains("    Restart-Computer -Force\n    exit 0\n"));
        assert!(tags.ends_with("</powershell>\n<persist>true</persist>\n"));
        // Without the method nothing renames.
        assert!(!render(Format::Ec2LaunchV2, false).contains("Rename-Computer"));
        assert_eq!(
            render(Format::PowerShell, false),
            powershell_tags(&script())
        );
    }

    #[test]
    fn a_missing_tag_says_which_of_the_two_causes_it_is() {
        let read = tag_read_script();
        assert!(read.contains("Start-Sleep -Seconds 5"));
        assert!(read.contains(&format!("AddSeconds({TAG_WAIT_SECONDS})")));
        assert!(read.contains("InstanceMetadataTags=enabled"));
        assert!(read.contains("the name workflow did not tag it"));
    }

    #[test]
    fn the_script_keeps_the_agent_running_and_uses_imdsv2() {
        let script = script();
        assert!(script.contains("Set-Service -Name 'AmazonSSMAgent' -StartupType Automatic"));
        assert!(script.contains("Start-Service -Name 'AmazonSSMAgent'"));
        assert!(script.contains("X-aws-ec2-metadata-token-ttl-seconds"));
    }
}
