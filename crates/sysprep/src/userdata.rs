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

    #[test]
    fn the_script_keeps_the_agent_running_and_uses_imdsv2() {
        let script = script();
        assert!(script.contains("Set-Service -Name 'AmazonSSMAgent' -StartupType Automatic"));
        assert!(script.contains("Start-Service -Name 'AmazonSSMAgent'"));
        assert!(script.contains("X-aws-ec2-metadata-token-ttl-seconds"));
    }
}
