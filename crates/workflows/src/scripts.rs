//! How the workflows carry the `sysprep` crate's PowerShell through SSM
//! `AWS-RunPowerShellScript`. The scripts themselves (rename, generalize, identity, agent
//! detection, pre-flight, Sysprep per launch agent) come only from `sysprep`; this module adds
//! the transport around them:
//!
//! - a `# fleetprep:<kind>` label line, so the SSM console and logs tell commands apart;
//! - for the naming commands, a per-instance prelude: a lookup table keyed by instance id from
//!   which each instance picks its own name through IMDSv2 into `$fleetprepName`
//!   ([`sysprep::commands::NAME_VARIABLE`], which the `sysprep` scripts read for
//!   [`sysprep::commands::NameSource::PerInstance`]). That is what lets one SendCommand carry
//!   up to 50 different names (see [`crate::batch`]). Every value is quoted with
//!   [`sysprep::powershell::quote`].

use sysprep::commands::NAME_VARIABLE;
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

/// A `sysprep`-generated script as command lines, under its label.
pub fn labelled(kind: &str, script: &str) -> Vec<String> {
    let mut lines = vec![format!("# fleetprep:{kind}")];
    lines.extend(script.lines().map(str::to_string));
    lines
}

/// A `sysprep` script generated for [`sysprep::commands::NameSource::PerInstance`], after the
/// prelude that sets `$fleetprepName` to this instance's table entry.
pub fn per_instance(kind: &str, script: &str) -> Vec<String> {
    let mut lines = vec![format!("# fleetprep:{kind}"), TABLE_LINE.to_string()];
    lines.extend(INSTANCE_ID.iter().map(|s| s.to_string()));
    lines.push(format!("${NAME_VARIABLE} = $fleetprepValues[$id]"));
    lines.extend(script.lines().map(str::to_string));
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
    use sysprep::commands::{NameSource, RenameRestart, rename_commands_from};

    #[test]
    fn table_quotes_hostile_values() {
        let line = table(&[("i-1".into(), "a'b$(x)".into())]);
        assert_eq!(line, "$fleetprepValues = @{ 'i-1' = 'a''b$(x)' }");
    }

    #[test]
    fn per_instance_rename_gets_a_table_and_sets_the_sysprep_variable() {
        let script = rename_commands_from(NameSource::PerInstance, RenameRestart::SsmExit3010);
        let rendered = render(
            &per_instance("rename", &script.script()),
            &[
                ("i-1".into(), "WEB-001".into()),
                ("i-2".into(), "WEB-002".into()),
            ],
        );
        assert!(rendered.iter().any(|l| l.contains("'i-2' = 'WEB-002'")));
        assert!(!rendered.iter().any(|l| l == TABLE_LINE));
        let set = rendered
            .iter()
            .position(|l| l == "$fleetprepName = $fleetprepValues[$id]")
            .expect("prelude sets the variable");
        let read = rendered
            .iter()
            .position(|l| l.contains("$desired = [string]$fleetprepName"))
            .expect("sysprep script reads it");
        assert!(set < read);
    }
}
