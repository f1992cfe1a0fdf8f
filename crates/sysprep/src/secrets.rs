//! Checking, from the instance's side, that the builder can read and decrypt each secret it
//! will need, before Sysprep runs.
//!
//! The workflow's own check (Secrets Manager DescribeSecret, SSM parameter metadata) proves a
//! secret exists, not that the *builder's* role may read it or use its KMS key. The script
//! here reads each secret the way the answer-file writer will (AWS Tools for PowerShell:
//! `Get-SECSecretValue`, `Get-SSMParameter -WithDecryption`), keeps the value in a variable
//! only long enough to see it is not empty, and prints one marked JSON line with a verdict per
//! reference: never a value.

use serde::{Deserialize, Serialize};

use crate::agent::{DetectError, marked_line};
use crate::powershell::quote;
use crate::unattend::PasswordRef;

/// The marker the script prints before its JSON.
pub const SECRETS_MARKER: &str = "FLEETPREP-SECRETS:";

/// The reference as the script reports it (`secretsmanager:<id>`, `ssm:<name>`).
pub fn reference_name(reference: &PasswordRef) -> String {
    match reference {
        PasswordRef::SecretsManager { secret_id, .. } => format!("secretsmanager:{secret_id}"),
        PasswordRef::SsmParameter { name } => format!("ssm:{name}"),
    }
}

/// The PowerShell that reads and decrypts every secret in `references` on the instance.
pub fn secret_check_script(references: &[PasswordRef]) -> String {
    let mut script = String::from(
        "# fleetprep: can this instance read and decrypt each secret? (values are never printed)\n$ErrorActionPreference = 'Stop'\n$checks = New-Object System.Collections.Generic.List[object]\n",
    );
    for reference in references {
        let read = match reference {
            PasswordRef::SecretsManager { secret_id, .. } => format!(
                "$value = (Get-SECSecretValue -SecretId {}).SecretString\n    if ([string]::IsNullOrEmpty($value)) {{ throw 'the secret has no SecretString' }}",
                quote(secret_id)
            ),
            PasswordRef::SsmParameter { name } => format!(
                "$parameter = Get-SSMParameter -Name {} -WithDecryption $true\n    if ([string]$parameter.Type -ne 'SecureString') {{ throw ('the parameter is a {{0}}, not a SecureString' -f $parameter.Type) }}\n    $value = $parameter.Value\n    if ([string]::IsNullOrEmpty($value)) {{ throw 'the parameter is empty' }}",
                quote(name)
            ),
        };
        script.push_str(&format!(
            "try {{\n    {read}\n    $checks.Add([ordered]@{{ reference = {name}; readable = $true; error = $null }})\n}} catch {{\n    $checks.Add([ordered]@{{ reference = {name}; readable = $false; error = [string]$_.Exception.Message }})\n}} finally {{\n    Remove-Variable -Name value, parameter -ErrorAction SilentlyContinue\n}}\n",
            name = quote(&reference_name(reference)),
        ));
    }
    script.push_str(&format!(
        "Write-Output ({} + (ConvertTo-Json -InputObject @($checks) -Compress -Depth 3))\n",
        quote(SECRETS_MARKER)
    ));
    script
}

/// One reference's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretCheck {
    /// `secretsmanager:<id>` or `ssm:<name>`.
    pub reference: String,
    /// Read and decrypted.
    pub readable: bool,
    /// Why not (AccessDeniedException, KMS AccessDenied, ...).
    #[serde(default)]
    pub error: Option<String>,
}

/// Reads the script's verdicts.
pub fn parse_secret_check(output: &str) -> Result<Vec<SecretCheck>, DetectError> {
    let (line, json) = marked_line(output, SECRETS_MARKER).ok_or(DetectError::MissingMarker {
        marker: SECRETS_MARKER,
    })?;
    serde_json::from_str(json).map_err(|e| DetectError::InvalidJson {
        marker: SECRETS_MARKER,
        line,
        message: e.to_string(),
    })
}

/// The references the instance cannot use, each with why: the bake must stop before Sysprep.
pub fn unreadable(checks: &[SecretCheck]) -> Vec<String> {
    checks
        .iter()
        .filter(|c| !c.readable)
        .map(|c| {
            format!(
                "{}: {} (the builder's instance profile needs secretsmanager:GetSecretValue or ssm:GetParameter on it, and kms:Decrypt on its key)",
                c.reference,
                c.error.as_deref().unwrap_or("not readable")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn references() -> Vec<PasswordRef> {
        vec![
            PasswordRef::SecretsManager {
                secret_id: "fleetprep/admin".into(),
                json_key: Some("password".into()),
            },
            PasswordRef::SsmParameter {
                name: "/fleetprep/join".into(),
            },
        ]
    }

    /// Issue 10, point 10: every secret is read and decrypted on the instance, and no value
    /// is ever printed.
    #[test]
    fn each_secret_is_read_and_decrypted_without_printing_it() {
        let script = secret_check_script(&references());
        assert!(script.contains("Get-SECSecretValue -SecretId 'fleetprep/admin'"));
        assert!(script.contains("Get-SSMParameter -Name '/fleetprep/join' -WithDecryption $true"));
        assert!(script.contains("-ne 'SecureString'"));
        assert_eq!(script.matches("Remove-Variable -Name value").count(), 2);
        for line in script.lines().filter(|l| l.contains("Write-Output")) {
            assert!(!line.contains("$value"), "{line}");
        }
        let checks = parse_secret_check(
            r#"FLEETPREP-SECRETS:[{"reference":"secretsmanager:fleetprep/admin","readable":true,"error":null},{"reference":"ssm:/fleetprep/join","readable":false,"error":"User: arn:aws:sts::123456789012:assumed-role/builder/i-1 is not authorized to perform: kms:Decrypt"}]"#,
        )
        .unwrap();
        let problems = unreadable(&checks);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with("ssm:/fleetprep/join: User:"));
        assert!(parse_secret_check("").is_err());
    }
}
