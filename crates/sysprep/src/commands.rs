//! The exact commands that generalize and shut down an instance, per launch agent, and the
//! commands that rename one.
//!
//! Sources (AWS EC2 User Guide): "Use Windows Sysprep with EC2Launch v2" and the EC2Launch v2
//! CLI reference (`ec2launch reset [--clean] [--block]`, `ec2launch sysprep [--clean]
//! [--shutdown] [--block]`); "Use Windows Sysprep with EC2Launch" (v1:
//! `InitializeInstance.ps1 -Schedule`, then `SysprepInstance.ps1 [-NoShutdown]`); "Use
//! Windows Sysprep with EC2Config" (`ec2config.exe -sysprep`); Microsoft "Sysprep
//! command-line options" (`sysprep.exe /generalize /oobe /shutdown|/reboot|/quit /quiet
//! /unattend:<file>`).
//!
//! Why `detach`: under SSM Run Command the shutdown kills the command mid-flight, so its status
//! ends as a failure or never arrives. Detached, the command starts Sysprep with
//! `Start-Process` and returns success; the workflow then polls EC2 for `stopped`.
//! Why `block`: `--block` makes the EC2Launch v2 CLI wait until the agent's own tasks finish.
//! It is safe under SSM; inside an EC2Launch v2 `executeScript` task it deadlocks unless
//! that task has `detach: true` (the CLI reference's Example 4), which fleetprep never uses.

use serde::{Deserialize, Serialize};

use crate::agent::LaunchAgent;
use crate::hostname::Hostname;
use crate::powershell::{PathError, check_windows_path, quote};

/// What Windows does once Sysprep finishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterSysprep {
    /// Shut down: the state an image is captured in.
    #[default]
    Shutdown,
    /// Reboot straight into specialize/OOBE (launch-time `sysprep` naming mode).
    Reboot,
    /// Stay running (debugging).
    Quit,
}

/// Options for the generalize command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SysprepOptions {
    /// What Windows does after Sysprep.
    pub after: AfterSysprep,
    /// EC2Launch v2 `--clean`: delete the agent's instance logs first.
    pub clean: bool,
    /// EC2Launch v2 `--block`: wait for the agent's running tasks first.
    pub block: bool,
    /// Start Sysprep detached so the SSM command reports success before the shutdown.
    pub detach: bool,
    /// Answer file for plain `sysprep.exe` (agents use their own, see
    /// [`LaunchAgent::unattend_path`]).
    pub unattend_path: Option<String>,
    /// Plain `sysprep.exe` `/mode:vm` (skips hardware re-detection; only for the same
    /// hypervisor and instance family). Microsoft allows only `/generalize /oobe` and one of
    /// `/reboot`, `/shutdown`, `/quit` with it, so it takes no `unattend_path`.
    pub mode_vm: bool,
}

impl Default for SysprepOptions {
    fn default() -> Self {
        Self {
            after: AfterSysprep::Shutdown,
            clean: false,
            block: true,
            detach: true,
            unattend_path: None,
            mode_vm: false,
        }
    }
}

impl SysprepOptions {
    /// Sysprep without shutdown, waited for in the command: what AWS-UpdateWindowsAmi does
    /// ("AWS-UpdateWindowsAmi" runbook: Sysprep, then stop the instance through the API), so a
    /// failure is seen while SSM is still online. Per agent ("Create a standardized Amazon
    /// Machine Image (AMI) using Sysprep"): `ec2launch sysprep` without `--shutdown`,
    /// `SysprepInstance.ps1 -NoShutdown`, and `sysprep.exe /quit` with the agent's answer file
    /// for EC2Config and plain Sysprep.
    pub fn no_shutdown() -> Self {
        Self {
            after: AfterSysprep::Quit,
            detach: false,
            ..Self::default()
        }
    }
}

/// One command of a sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// What the step does, for logs.
    pub description: String,
    /// PowerShell; fails (throws) when the command fails.
    pub script: String,
}

/// The commands for one job, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandSequence {
    /// The agent the sequence is for.
    pub agent: LaunchAgent,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// True when the last step returns before Sysprep finishes (poll EC2 for the outcome).
    pub detached: bool,
}

impl CommandSequence {
    /// One script running every step, for `AWS-RunPowerShellScript`.
    pub fn script(&self) -> String {
        let mut out = String::from("$ErrorActionPreference = 'Stop'\n");
        for step in &self.steps {
            out.push_str("\n# ");
            out.push_str(&step.description.replace(['\r', '\n'], " "));
            out.push('\n');
            out.push_str(&step.script);
            if !step.script.ends_with('\n') {
                out.push('\n');
            }
        }
        out
    }
}

/// Why a command cannot be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The agent cannot do what the options ask.
    #[error("{agent}: {reason}")]
    Unsupported {
        /// The agent.
        agent: LaunchAgent,
        /// Why, and what to use instead.
        reason: String,
    },
    /// A path option is not a usable Windows path.
    #[error(transparent)]
    Path(#[from] PathError),
    /// The answer file for the sequence could not be produced.
    #[error(transparent)]
    Unattend(#[from] crate::unattend::UnattendError),
}

const CHECK_EXIT: &str = "if ($LASTEXITCODE -ne 0) { throw ('{0} failed with exit code {1}' -f $command, $LASTEXITCODE) }\n";

/// A native argument inside a `Start-Process -ArgumentList` string: quoted with `"` when it
/// has spaces (callers have rejected `"` and trailing backslashes already).
fn native_arg(arg: &str) -> String {
    if arg.contains(char::is_whitespace) {
        format!("\"{arg}\"")
    } else {
        arg.to_owned()
    }
}

/// `exe_expr` is a PowerShell expression for the program; `args` are literal arguments.
fn run_native(name: &str, exe_expr: &str, args: &[String], detach: bool) -> String {
    let mut out = format!("$command = {}\n$program = {exe_expr}\n", quote(name));
    if detach {
        let joined: Vec<String> = args.iter().map(|a| native_arg(a)).collect();
        out.push_str(&format!(
            "Start-Process -FilePath $program -ArgumentList {} -WindowStyle Hidden\n",
            quote(&joined.join(" "))
        ));
    } else {
        out.push_str("& $program");
        for arg in args {
            out.push(' ');
            out.push_str(&quote(arg));
        }
        out.push('\n');
        out.push_str(CHECK_EXIT);
    }
    out
}

const EC2LAUNCH_V2: &str = "Join-Path $env:ProgramFiles 'Amazon\\EC2Launch\\EC2Launch.exe'";
const EC2LAUNCH_V1_SCRIPTS: &str =
    "Join-Path $env:ProgramData 'Amazon\\EC2-Windows\\Launch\\Scripts'";
const EC2CONFIG: &str = "Join-Path $env:ProgramFiles 'Amazon\\Ec2ConfigService\\Ec2Config.exe'";
const SYSPREP_EXE: &str = "Join-Path $env:SystemRoot 'System32\\Sysprep\\sysprep.exe'";

/// The generalize-and-shut-down sequence for `agent`, as AWS documents it.
pub fn sysprep_commands(
    agent: LaunchAgent,
    options: &SysprepOptions,
) -> Result<CommandSequence, CommandError> {
    let unsupported = |reason: &str| CommandError::Unsupported {
        agent,
        reason: reason.to_owned(),
    };
    if agent != LaunchAgent::None && options.unattend_path.is_some() {
        return Err(unsupported(&format!(
            "launch agents use their own answer file ({}); write it there instead of setting unattend_path",
            agent.unattend_path()
        )));
    }
    if agent != LaunchAgent::None && options.mode_vm {
        return Err(unsupported(
            "/mode:vm is only available with plain sysprep.exe (agent none)",
        ));
    }
    let steps = match agent {
        LaunchAgent::Ec2LaunchV2 => {
            if options.after == AfterSysprep::Reboot {
                return Err(unsupported(
                    "ec2launch sysprep can shut down (--shutdown) or stay up, not reboot; use agent none for /reboot",
                ));
            }
            let mut reset = vec!["reset".to_owned()];
            let mut sysprep = vec!["sysprep".to_owned()];
            for args in [&mut reset, &mut sysprep] {
                if options.clean {
                    args.push("--clean".to_owned());
                }
                if options.block {
                    args.push("--block".to_owned());
                }
            }
            if options.after == AfterSysprep::Shutdown {
                sysprep.push("--shutdown".to_owned());
            }
            vec![
                Step {
                    description:
                        "EC2Launch v2: clear run-once state so new instances run once-tasks again"
                            .into(),
                    script: run_native("ec2launch reset", EC2LAUNCH_V2, &reset, false),
                },
                Step {
                    description: "EC2Launch v2: update unattend.xml, disable RDP, run Sysprep"
                        .into(),
                    script: run_native("ec2launch sysprep", EC2LAUNCH_V2, &sysprep, options.detach),
                },
            ]
        }
        LaunchAgent::Ec2LaunchV1 => {
            if options.after == AfterSysprep::Reboot {
                return Err(unsupported(
                    "SysprepInstance.ps1 can shut down or not (-NoShutdown), not reboot; use agent none for /reboot",
                ));
            }
            let no_shutdown = options.after == AfterSysprep::Quit;
            let initialize = format!(
                "$command = 'InitializeInstance.ps1 -Schedule'\n$scripts = {EC2LAUNCH_V1_SCRIPTS}\n& (Join-Path $scripts 'InitializeInstance.ps1') -Schedule\n"
            );
            let sysprep = if options.detach {
                format!(
                    "$command = 'SysprepInstance.ps1'\n$scripts = {EC2LAUNCH_V1_SCRIPTS}\n$arguments = '-NoProfile -ExecutionPolicy Bypass -File \"{{0}}\"{}' -f (Join-Path $scripts 'SysprepInstance.ps1')\nStart-Process -FilePath 'powershell.exe' -ArgumentList $arguments -WindowStyle Hidden\n",
                    if no_shutdown { " -NoShutdown" } else { "" }
                )
            } else {
                format!(
                    "$command = 'SysprepInstance.ps1'\n$scripts = {EC2LAUNCH_V1_SCRIPTS}\n& (Join-Path $scripts 'SysprepInstance.ps1'){}\n",
                    if no_shutdown { " -NoShutdown" } else { "" }
                )
            };
            vec![
                Step {
                    description: "EC2Launch v1: schedule instance initialization for the next boot"
                        .into(),
                    script: initialize,
                },
                Step {
                    description: "EC2Launch v1: run Sysprep with the agent's answer file".into(),
                    script: sysprep,
                },
            ]
        }
        LaunchAgent::Ec2Config => match options.after {
            AfterSysprep::Reboot => {
                return Err(unsupported(
                    "ec2config.exe -sysprep always shuts down; use agent none for /reboot",
                ));
            }
            // --clean/--block are EC2Launch v2 flags with no EC2Config equivalent; they are
            // ignored rather than rejected so the defaults work for every agent.
            AfterSysprep::Shutdown => vec![Step {
                description: "EC2Config: run Sysprep with sysprep2008.xml and shut down".into(),
                script: run_native(
                    "ec2config.exe -sysprep",
                    EC2CONFIG,
                    &["-sysprep".to_owned()],
                    options.detach,
                ),
            }],
            // `ec2config.exe -sysprep` cannot stay up, so the no-shutdown form runs sysprep.exe
            // with EC2Config's own answer file, after doing what the BundleConfig setting
            // SetPasswordAfterSysprep makes EC2Config do first: enable Ec2SetPassword so the
            // first boot randomizes the administrator password (EC2Config service).
            AfterSysprep::Quit => vec![
                Step {
                    description: "EC2Config: randomize the administrator password at first boot (Ec2SetPassword)".into(),
                    script: ec2config_set_password_script(),
                },
                Step {
                    description: "Sysprep: generalize, OOBE, quit, with EC2Config's sysprep2008.xml".into(),
                    script: run_native(
                        "sysprep.exe",
                        SYSPREP_EXE,
                        &[
                            "/generalize".to_owned(),
                            "/oobe".to_owned(),
                            "/quit".to_owned(),
                            "/quiet".to_owned(),
                            format!("/unattend:{}", LaunchAgent::Ec2Config.unattend_path()),
                        ],
                        options.detach,
                    ),
                },
            ],
        },
        LaunchAgent::None => {
            let unattend = options
                .unattend_path
                .clone()
                .unwrap_or_else(|| LaunchAgent::None.unattend_path().to_owned());
            check_windows_path("unattend_path", &unattend)?;
            if unattend.ends_with('\\') {
                return Err(PathError {
                    what: "unattend_path",
                    value: unattend,
                    reason: "must name a file, not a folder".into(),
                }
                .into());
            }
            let after = match options.after {
                AfterSysprep::Shutdown => "/shutdown",
                AfterSysprep::Reboot => "/reboot",
                AfterSysprep::Quit => "/quit",
            };
            let args: Vec<String> = if options.mode_vm {
                // Microsoft "Sysprep Command-Line Options": `Sysprep /generalize /oobe
                // /mode:vm`, and "the only additional switches that apply to VM mode are
                // /reboot, /shutdown, and /quit" (no /quiet, no /unattend): Windows then finds
                // the answer file by its implicit search, which includes the Sysprep folder.
                if options.unattend_path.is_some() {
                    return Err(unsupported(
                        "/mode:vm takes no /unattend (Sysprep Command-Line Options: only /reboot, /shutdown and /quit go with it); leave unattend_path unset so Windows finds C:\\Windows\\System32\\Sysprep\\unattend.xml itself",
                    ));
                }
                ["/generalize", "/oobe", "/mode:vm", after]
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect()
            } else {
                let mut args: Vec<String> = ["/generalize", "/oobe", after, "/quiet"]
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect();
                args.push(format!("/unattend:{unattend}"));
                args
            };
            vec![Step {
                description: "Sysprep: generalize, OOBE, with the answer file".into(),
                script: run_native("sysprep.exe", SYSPREP_EXE, &args, options.detach),
            }]
        }
    };
    Ok(CommandSequence {
        agent,
        steps,
        detached: options.detach,
    })
}

/// Enables EC2Config's `Ec2SetPassword` plugin in `Settings\Config.xml`, the agent's own way
/// to give every instance a new random administrator password at first boot (EC2Config
/// service, `SetPasswordAfterSysprep`).
pub fn ec2config_set_password_script() -> String {
    format!(
        r#"$ec2configSettings = {EC2CONFIG_SETTINGS}
[xml]$ec2configXml = Get-Content -LiteralPath $ec2configSettings -Raw
$setPassword = $ec2configXml.SelectSingleNode("//Plugin[Name='Ec2SetPassword']")
if ($null -eq $setPassword) {{ throw ('{{0}} has no Ec2SetPassword plugin' -f $ec2configSettings) }}
if ([string]$setPassword.State -ne 'Enabled') {{
    $setPassword.State = 'Enabled'
    $ec2configXml.Save($ec2configSettings)
}}
"#
    )
}

/// Makes the launch agent randomize the administrator password at each new instance's first
/// boot, by the agent's own setting, so no password ever needs to be in the image
/// ("Create a standardized Amazon Machine Image (AMI) using Sysprep", password settings):
/// EC2Launch v2 `setAdminAccount` with a random password (EC2Launch v2 settings), EC2Launch v1
/// `adminPasswordType` `Random` in `LaunchConfig.json` (Configure EC2Launch), EC2Config's
/// `Ec2SetPassword` (EC2Config service). Without an agent there is nothing to set.
pub fn agent_password_script(agent: LaunchAgent) -> String {
    match agent {
        LaunchAgent::Ec2LaunchV2 => format!(
            r#"$agentProgram = {EC2LAUNCH_V2}
$agentConfigPath = {EC2LAUNCH_V2_CONFIG}
{read}$accounts = @($agentStages | ForEach-Object {{ $_.tasks }} | Where-Object {{ $null -ne $_ -and $_.task -eq 'setAdminAccount' }})
$random = @($accounts | Where-Object {{ [string]$_.inputs.password.type -eq 'random' }})
if ($random.Count -eq 0) {{
    $task = [pscustomobject]@{{ task = 'setAdminAccount'; inputs = [pscustomobject]@{{ name = 'Administrator'; password = [pscustomobject]@{{ type = 'random' }} }} }}
    $preReady = $null
    foreach ($stage in $agentStages) {{
        $kept = @($stage.tasks | Where-Object {{ $null -ne $_ -and $_.task -ne 'setAdminAccount' }})
        $stage | Add-Member -NotePropertyName 'tasks' -NotePropertyValue $kept -Force
        if ($stage.stage -eq 'preReady') {{ $preReady = $stage }}
    }}
    if ($null -eq $preReady) {{
        $agentStages = $agentStages + @([pscustomobject]@{{ stage = 'preReady'; tasks = @($task) }})
    }} else {{
        $preReady.tasks = @($preReady.tasks) + @($task)
    }}
    $agentConfig | Add-Member -NotePropertyName 'config' -NotePropertyValue $agentStages -Force
{save}}}
"#,
            read = read_agent_config(""),
            save = save_agent_config("    ", "setAdminAccount with a random password"),
        ),
        LaunchAgent::Ec2LaunchV1 => format!(
            r#"$launchConfigPath = {EC2LAUNCH_V1_LAUNCH_CONFIG}
$launchConfig = Get-Content -LiteralPath $launchConfigPath -Raw | ConvertFrom-Json
if ([string]$launchConfig.adminPasswordType -ne 'Random') {{
    $launchConfig | Add-Member -NotePropertyName 'adminPasswordType' -NotePropertyValue 'Random' -Force
    $launchConfig | ConvertTo-Json -Depth 8 | Out-File -Encoding UTF8 -FilePath $launchConfigPath
}}
"#
        ),
        LaunchAgent::Ec2Config => ec2config_set_password_script(),
        LaunchAgent::None => {
            "Write-Verbose 'no launch agent: nothing randomizes the administrator password at launch'\n"
                .to_owned()
        }
    }
}

/// How the rename takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RenameRestart {
    /// `exit 3010`: SSM Run Command reboots the instance and runs the script again, which
    /// then finds the name already set and succeeds (AWS "Rebooting managed nodes from
    /// scripts").
    #[default]
    SsmExit3010,
    /// `Rename-Computer -Restart` (outside SSM).
    RestartComputer,
}

/// The PowerShell variable (without `$`) a per-instance prelude sets to the instance's own
/// computer name: see [`NameSource::PerInstance`].
pub const NAME_VARIABLE: &str = "fleetprepName";

/// Where a naming command takes the computer name from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameSource<'a> {
    /// This name, quoted into the script.
    Literal(&'a Hostname),
    /// `$fleetprepName` ([`NAME_VARIABLE`]), set on the instance by a prelude the caller puts
    /// before the script: one script then serves many instances, each picking its own name
    /// (SSM Run Command sends one script to up to 50 instances). The script checks the value
    /// against the computer-name rules before using it, so a missing entry fails loudly.
    PerInstance,
}

impl NameSource<'_> {
    /// PowerShell that sets `$desired` to the name (and, per instance, checks it).
    fn assign_desired(self) -> String {
        match self {
            NameSource::Literal(name) => format!("$desired = {}\n", quote(name.as_str())),
            NameSource::PerInstance => format!(
                "$desired = [string]${NAME_VARIABLE}\nif ($desired -notmatch '^[A-Za-z0-9-]{{1,15}}$' -or $desired -match '^[0-9]+$') {{ throw ('no valid computer name for this instance: \"{{0}}\"' -f $desired) }}\n"
            ),
        }
    }

    fn describe(self) -> String {
        match self {
            NameSource::Literal(name) => name.to_string(),
            NameSource::PerInstance => format!("${NAME_VARIABLE}"),
        }
    }
}

/// Idempotent rename: does nothing when the computer already has `name` (compared
/// case-insensitively, as Windows does), and prints the final name with the identity marker.
pub fn rename_commands(name: &Hostname, restart: RenameRestart) -> CommandSequence {
    rename_commands_from(NameSource::Literal(name), restart)
}

/// [`rename_commands`] with the name from `source`.
pub fn rename_commands_from(source: NameSource<'_>, restart: RenameRestart) -> CommandSequence {
    rename_commands_with(source, RenameMethod::RenameComputer, restart)
}

/// What renames the computer in the launch-time naming mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RenameMethod {
    /// `Rename-Computer`: works with every launch agent and without one.
    #[default]
    RenameComputer,
    /// EC2Launch v2's `setHostName` task (AWS "Task definitions for EC2Launch v2 startup
    /// tasks": inputs `hostName`, at most 15 letters/digits/hyphens and not all digits, and
    /// `reboot`; frequency always; stages PostReady and UserData). The task only runs while
    /// the agent boots, so the command puts it into `agent-config.yml`'s `postReady` stage and
    /// restarts; EC2Launch v2 then renames and reboots once more. The task stays in the
    /// config (frequency always), so the agent keeps the name on every later boot. Needs an
    /// EC2Launch v2 version whose `setHostName` accepts `hostName`: `ec2launch validate`
    /// rejects the file otherwise, and the command restores the previous file and fails.
    #[serde(rename = "ec2launch-set-host-name")]
    Ec2LaunchSetHostName,
}

/// The restart that applies a new name, after EC2Launch v2 (when installed) has finished its
/// own run: rebooting while the agent is mid-run would cut its tasks short (EC2Launch v2
/// settings, `ec2launch status --block` waits for the service to finish). `exit 3010` asks
/// SSM Run Command to reboot and run the script again ("Handling reboots when running
/// commands").
fn restart_block(restart: RenameRestart) -> String {
    let restart = match restart {
        RenameRestart::SsmExit3010 => "    exit 3010\n",
        RenameRestart::RestartComputer => "    Restart-Computer -Force\n    exit 0\n",
    };
    format!(
        "    $agentProgram = {EC2LAUNCH_V2}\n    if (Test-Path -LiteralPath $agentProgram) {{ & $agentProgram status --block | Out-Null }}\n{restart}"
    )
}

/// `Rename-Computer` after switching off the launch agents' own renamers, then the restart.
fn rename_computer_block(restart: RenameRestart) -> String {
    format!(
        "{}    Rename-Computer -NewName $desired -Force\n{}",
        agent_renamers_block(),
        restart_block(restart)
    )
}

/// Writes `$agentConfig` back to `$agentConfigPath` as JSON (JSON is YAML), checks it with
/// `ec2launch validate` and puts the previous file back when validation fails; `what` names
/// the change in the error. The one way fleetprep edits EC2Launch v2's `agent-config.yml`.
fn save_agent_config(indent: &str, what: &str) -> String {
    let lines = [
        "$agentBackup = $agentConfigPath + '.fleetprep-backup'".to_owned(),
        "Copy-Item -LiteralPath $agentConfigPath -Destination $agentBackup -Force".to_owned(),
        "# Windows PowerShell 5.1's type data for arrays makes ConvertTo-Json write some".to_owned(),
        "# arrays as {\"value\": [...], \"Count\": n}; without it they stay arrays.".to_owned(),
        "Remove-TypeData -TypeName System.Array -ErrorAction SilentlyContinue".to_owned(),
        "$agentConfig | ConvertTo-Json -Depth 16 | Out-File -Encoding UTF8 -FilePath $agentConfigPath".to_owned(),
        "& $agentProgram validate".to_owned(),
        "if ($LASTEXITCODE -ne 0) {".to_owned(),
        "    $code = $LASTEXITCODE".to_owned(),
        "    Copy-Item -LiteralPath $agentBackup -Destination $agentConfigPath -Force".to_owned(),
        format!("    throw ('ec2launch validate rejected {what} (exit code {{0}}): the EC2Launch v2 version may predate it; agent-config.yml was restored' -f $code)"),
        "}".to_owned(),
    ];
    lines
        .iter()
        .map(|line| format!("{indent}{line}\n"))
        .collect()
}

/// Reads EC2Launch v2's configuration into `$agentConfig` and its non-empty stages into
/// `$agentStages` (the CLI reference's `get-agent-config --format json`).
fn read_agent_config(indent: &str) -> String {
    [
        "$agentJson = & $agentProgram get-agent-config --format json | Out-String",
        "if ($LASTEXITCODE -ne 0) { throw ('ec2launch get-agent-config failed with exit code {0}' -f $LASTEXITCODE) }",
        "$agentConfig = $agentJson | ConvertFrom-Json",
        "$agentStages = @($agentConfig.config | Where-Object { $null -ne $_ })",
    ]
    .iter()
    .map(|line| format!("{indent}{line}\n"))
    .collect()
}

/// Switches off the launch agents' own renamers, which would put their name back at the next
/// boot: an EC2Launch v2 `setHostName` task for another name (EC2Launch v2 settings: the task
/// runs with frequency always), EC2Config's `Ec2SetComputerName` plugin in
/// `Settings\Config.xml` (EC2Config service), and EC2Launch v1's `setComputerName` in
/// `LaunchConfig.json` (Configure EC2Launch). Each is only touched when present and on, so
/// running it again changes nothing. Shared by every `Rename-Computer` script (SSM and
/// user-data renames alike).
pub fn agent_renamers_block() -> String {
    format!(
        r#"    # The launch agents' own renamers would undo this name at the next boot.
    $agentProgram = {EC2LAUNCH_V2}
    if (Test-Path -LiteralPath $agentProgram) {{
        $agentConfigPath = {EC2LAUNCH_V2_CONFIG}
        & $agentProgram status --block | Out-Null
{read}        $otherNames = @($agentStages | ForEach-Object {{ $_.tasks }} | Where-Object {{ $null -ne $_ -and $_.task -eq 'setHostName' -and [string]$_.inputs.hostName -ne $desired }})
        if ($otherNames.Count -gt 0) {{
            foreach ($stage in $agentStages) {{
                $kept = @($stage.tasks | Where-Object {{ $null -ne $_ -and $_.task -ne 'setHostName' }})
                $stage | Add-Member -NotePropertyName 'tasks' -NotePropertyValue $kept -Force
            }}
            $agentConfig | Add-Member -NotePropertyName 'config' -NotePropertyValue $agentStages -Force
{save}        }}
    }}
    $ec2configSettings = {EC2CONFIG_SETTINGS}
    if (Test-Path -LiteralPath $ec2configSettings) {{
        [xml]$ec2configXml = Get-Content -LiteralPath $ec2configSettings -Raw
        $renamer = $ec2configXml.SelectSingleNode("//Plugin[Name='Ec2SetComputerName']")
        if ($null -ne $renamer -and [string]$renamer.State -ne 'Disabled') {{
            $renamer.State = 'Disabled'
            $ec2configXml.Save($ec2configSettings)
        }}
    }}
    $launchConfigPath = {EC2LAUNCH_V1_LAUNCH_CONFIG}
    if (Test-Path -LiteralPath $launchConfigPath) {{
        $launchConfig = Get-Content -LiteralPath $launchConfigPath -Raw | ConvertFrom-Json
        if ($launchConfig.setComputerName -eq $true) {{
            $launchConfig.setComputerName = $false
            $launchConfig | ConvertTo-Json -Depth 8 | Out-File -Encoding UTF8 -FilePath $launchConfigPath
        }}
    }}
"#,
        read = read_agent_config("        "),
        save = save_agent_config("            ", "removing setHostName"),
    )
}

const EC2CONFIG_SETTINGS: &str =
    "Join-Path $env:ProgramFiles 'Amazon\\Ec2ConfigService\\Settings\\Config.xml'";
const EC2LAUNCH_V1_LAUNCH_CONFIG: &str =
    "Join-Path $env:ProgramData 'Amazon\\EC2-Windows\\Launch\\Config\\LaunchConfig.json'";

const EC2LAUNCH_V2_CONFIG: &str =
    "Join-Path $env:ProgramData 'Amazon\\EC2Launch\\config\\agent-config.yml'";
const EC2LAUNCH_V2_AGENT_LOG: &str =
    "Join-Path $env:ProgramData 'Amazon\\EC2Launch\\log\\agent.log'";

/// Puts `setHostName` with `$desired` into EC2Launch v2's `agent-config.yml`, then restarts.
///
/// The file is edited the way the EC2Launch v2 CLI reference shows (`get-agent-config
/// --format json | ConvertFrom-Json`, change, `ConvertTo-Json | Out-File -Encoding UTF8`
/// back to `agent-config.yml`: JSON is YAML), so no YAML text is spliced and the name reaches
/// the file JSON-escaped. `ec2launch validate` checks the result; on failure the previous
/// file is put back.
///
/// Why the boot-time comparison: after the restart the agent renames and reboots by itself,
/// and SSM runs this script again once the agent is back. If the task was already in the
/// file *before* this boot and the name still differs (neither active nor pending), EC2Launch
/// v2 ran it and did not rename: the script fails instead of rebooting forever. Written
/// during this boot (a retry whose restart never happened) it restarts again. `status
/// --block` first lets this boot's agent run finish, since it may be renaming (and about to
/// reboot) right now; a rename it made shows as the pending name, and then only the restart
/// is left.
fn set_host_name_block(restart: RenameRestart) -> String {
    format!(
        r#"    $agentProgram = {EC2LAUNCH_V2}
    $agentConfigPath = {EC2LAUNCH_V2_CONFIG}
    & $agentProgram status --block | Out-Null
    # The name the next boot applies: already $desired when the agent renamed during this boot
    # and its own reboot has not happened yet, so only the restart is left.
    $pending = [string](Get-ItemProperty -LiteralPath 'HKLM:\SYSTEM\CurrentControlSet\Control\ComputerName\ComputerName').ComputerName
    if ($pending -ne $desired) {{
{read}        $current = @($agentStages | ForEach-Object {{ $_.tasks }} | Where-Object {{ $null -ne $_ -and $_.task -eq 'setHostName' }})
        $configured = $current.Count -eq 1 -and [string]$current[0].inputs.hostName -eq $desired -and $current[0].inputs.reboot -eq $true
        if ($configured) {{
            $booted = (Get-CimInstance -ClassName Win32_OperatingSystem).LastBootUpTime
            if ((Get-Item -LiteralPath $agentConfigPath).LastWriteTime -lt $booted) {{
                throw ('EC2Launch v2 ran setHostName {{0}} on this boot but the computer is still {{1}}; see {{2}}' -f $desired, $env:COMPUTERNAME, ({EC2LAUNCH_V2_AGENT_LOG}))
            }}
        }} else {{
            $task = [pscustomobject]@{{ task = 'setHostName'; inputs = [pscustomobject]@{{ hostName = $desired; reboot = $true }} }}
            $postReady = $null
            foreach ($stage in $agentStages) {{
                $kept = @($stage.tasks | Where-Object {{ $null -ne $_ -and $_.task -ne 'setHostName' }})
                $stage | Add-Member -NotePropertyName 'tasks' -NotePropertyValue $kept -Force
                if ($stage.stage -eq 'postReady') {{ $postReady = $stage }}
            }}
            # First in postReady: the rename reboot comes before startSsm, so SSM resumes this
            # command only once the name is in place.
            if ($null -eq $postReady) {{
                $agentStages = $agentStages + @([pscustomobject]@{{ stage = 'postReady'; tasks = @($task) }})
            }} else {{
                $postReady.tasks = @($task) + @($postReady.tasks)
            }}
            $agentConfig | Add-Member -NotePropertyName 'config' -NotePropertyValue $agentStages -Force
{save}        }}
    }}
{restart}"#,
        read = read_agent_config("        "),
        save = save_agent_config("            ", "setHostName with the hostName input"),
        restart = restart_block(restart),
    )
}

/// Idempotent rename by `method`, taking effect by `restart`; prints the final name with the
/// identity marker once the computer has it.
pub fn rename_commands_with(
    source: NameSource<'_>,
    method: RenameMethod,
    restart: RenameRestart,
) -> CommandSequence {
    let (agent, rename, how) = match method {
        RenameMethod::RenameComputer => (
            LaunchAgent::None,
            rename_computer_block(restart),
            "Rename-Computer",
        ),
        RenameMethod::Ec2LaunchSetHostName => (
            LaunchAgent::Ec2LaunchV2,
            set_host_name_block(restart),
            "EC2Launch v2 setHostName",
        ),
    };
    let script = format!(
        "{}if ($env:COMPUTERNAME -ne $desired) {{\n{rename}}}\n",
        source.assign_desired()
    );
    CommandSequence {
        agent,
        steps: vec![
            Step {
                description: format!(
                    "Rename the computer to {} with {how} and restart",
                    source.describe()
                ),
                script,
            },
            Step {
                description: "Report the computer name and machine SID".into(),
                script: crate::agent::identity_script(),
            },
        ],
        detached: false,
    }
}

/// The launch-time `sysprep` naming mode: write an answer file whose `ComputerName` is `name`
/// (the rest, including the password source, from `base`), then generalize with plain
/// `sysprep.exe /reboot` so specialize applies the name and a new machine SID on the next
/// boot. The last step is detached: the reboot cuts the command.
pub fn generalize_with_name(
    name: &Hostname,
    base: &crate::unattend::UnattendConfig,
) -> Result<CommandSequence, CommandError> {
    generalize_with_name_from(NameSource::Literal(name), base)
}

/// [`generalize_with_name`] with the name from `source`.
pub fn generalize_with_name_from(
    source: NameSource<'_>,
    base: &crate::unattend::UnattendConfig,
) -> Result<CommandSequence, CommandError> {
    let mut config = base.clone();
    let path = LaunchAgent::None.unattend_path();
    let writer = match source {
        NameSource::Literal(name) => {
            config.computer_name = Some(crate::unattend::ComputerName::Name(name.clone()));
            crate::unattend::writer_script(&config, path)?
        }
        NameSource::PerInstance => {
            // Rendered with a placeholder `*`; the writer replaces the element's text with the
            // instance's name on the instance (XmlDocument escapes it).
            config.computer_name = Some(crate::unattend::ComputerName::Random);
            let assign = source.assign_desired();
            crate::unattend::writer_script_with_name(&config, path, &assign, "$desired")?
        }
    };
    let mut sequence = sysprep_commands(
        LaunchAgent::None,
        &SysprepOptions {
            after: AfterSysprep::Reboot,
            detach: true,
            unattend_path: Some(path.to_owned()),
            ..SysprepOptions::default()
        },
    )?;
    sequence.steps.insert(
        0,
        Step {
            description: format!("Write unattend.xml with ComputerName {}", source.describe()),
            script: writer,
        },
    );
    Ok(sequence)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(agent: LaunchAgent, options: &SysprepOptions) -> String {
        sysprep_commands(agent, options).unwrap().script()
    }

    #[test]
    fn ec2launch_v2_resets_then_syspreps_with_shutdown() {
        let s = script(LaunchAgent::Ec2LaunchV2, &SysprepOptions::default());
        let reset = s.find("'reset' '--block'").expect("reset --block");
        let sysprep = s
            .find("-ArgumentList 'sysprep --block --shutdown'")
            .expect("detached sysprep");
        assert!(reset < sysprep);
        let attached = script(
            LaunchAgent::Ec2LaunchV2,
            &SysprepOptions {
                detach: false,
                clean: true,
                ..SysprepOptions::default()
            },
        );
        assert!(attached.contains("& $program 'sysprep' '--clean' '--block' '--shutdown'"));
        assert!(attached.contains("$LASTEXITCODE"));
    }

    #[test]
    fn ec2launch_v1_schedules_then_runs_sysprep_instance() {
        let s = script(LaunchAgent::Ec2LaunchV1, &SysprepOptions::default());
        assert!(s.contains("'InitializeInstance.ps1') -Schedule"));
        assert!(s.contains("SysprepInstance.ps1"));
        assert!(!s.contains("-NoShutdown"));
        let quit = script(
            LaunchAgent::Ec2LaunchV1,
            &SysprepOptions {
                after: AfterSysprep::Quit,
                detach: false,
                ..SysprepOptions::default()
            },
        );
        assert!(quit.contains("'SysprepInstance.ps1') -NoShutdown"));
    }

    #[test]
    fn ec2config_and_plain_sysprep() {
        let s = script(LaunchAgent::Ec2Config, &SysprepOptions::default());
        assert!(s.contains("Ec2Config.exe") && s.contains("-ArgumentList '-sysprep'"));
        let plain = script(
            LaunchAgent::None,
            &SysprepOptions {
                after: AfterSysprep::Reboot,
                detach: false,
                unattend_path: Some(r"C:\Answer Files\unattend.xml".into()),
                ..SysprepOptions::default()
            },
        );
        assert!(plain.contains(
            r"& $program '/generalize' '/oobe' '/reboot' '/quiet' '/unattend:C:\Answer Files\unattend.xml'"
        ));
        let detached = script(
            LaunchAgent::None,
            &SysprepOptions {
                unattend_path: Some(r"C:\Answer Files\unattend.xml".into()),
                ..SysprepOptions::default()
            },
        );
        assert!(detached.contains(
            r#"-ArgumentList '/generalize /oobe /shutdown /quiet "/unattend:C:\Answer Files\unattend.xml"'"#
        ));
    }

    /// Issue 10, bug 1: the no-shutdown form each agent documents ("Create a standardized
    /// Amazon Machine Image (AMI) using Sysprep"; "AWS-UpdateWindowsAmi"), run inside the
    /// command so its exit code and the Panther logs are seen while SSM is online.
    #[test]
    fn no_shutdown_sysprep_per_agent() {
        let options = SysprepOptions::no_shutdown();
        let v2 = script(LaunchAgent::Ec2LaunchV2, &options);
        assert!(v2.contains("& $program 'sysprep' '--block'\n"), "{v2}");
        assert!(!v2.contains("--shutdown") && !v2.contains("Start-Process"));
        let v1 = script(LaunchAgent::Ec2LaunchV1, &options);
        assert!(v1.contains("'SysprepInstance.ps1') -NoShutdown"), "{v1}");
        assert!(!v1.contains("Start-Process"));
        let ec2config = script(LaunchAgent::Ec2Config, &options);
        let password = ec2config.find("$setPassword.State = 'Enabled'").unwrap();
        let quit = ec2config
            .find(r"'/generalize' '/oobe' '/quit' '/quiet' '/unattend:C:\Program Files\Amazon\Ec2ConfigService\sysprep2008.xml'")
            .expect("sysprep.exe /quit with EC2Config's answer file");
        assert!(password < quit);
        assert!(!ec2config.contains("-sysprep"));
        let plain = script(LaunchAgent::None, &options);
        assert!(plain.contains("'/quit'") && !plain.contains("'/shutdown'"));
        // Native programs' exit codes are checked; SysprepInstance.ps1 is PowerShell and
        // reports nothing, which is why the bake confirms ImageState afterwards either way.
        for agent in LaunchAgent::ALL {
            let sequence = sysprep_commands(agent, &options).unwrap();
            assert!(!sequence.detached, "{agent}");
            assert_eq!(
                sequence.script().contains("$LASTEXITCODE"),
                agent != LaunchAgent::Ec2LaunchV1,
                "{agent}"
            );
        }
    }

    /// Issue 10, bug 5: each agent's own password setting, never a password in the image.
    #[test]
    fn the_agents_randomize_the_password_by_their_own_setting() {
        let v2 = agent_password_script(LaunchAgent::Ec2LaunchV2);
        assert!(v2.contains("task = 'setAdminAccount'"));
        assert!(v2.contains("password = [pscustomobject]@{ type = 'random' }"));
        assert!(v2.contains("& $agentProgram validate"));
        let v1 = agent_password_script(LaunchAgent::Ec2LaunchV1);
        assert!(v1.contains("'adminPasswordType' -NotePropertyValue 'Random'"));
        let ec2config = agent_password_script(LaunchAgent::Ec2Config);
        assert!(ec2config.contains("//Plugin[Name='Ec2SetPassword']"));
        for agent in LaunchAgent::ALL {
            assert!(!agent_password_script(agent).contains("AdministratorPassword"));
        }
    }

    /// Issue 10, point 9: Microsoft "Sysprep Command-Line Options": "the only additional
    /// switches that apply to VM mode are /reboot, /shutdown, and /quit".
    #[test]
    fn mode_vm_only_takes_the_flags_microsoft_allows() {
        for (after, flag) in [
            (AfterSysprep::Shutdown, "/shutdown"),
            (AfterSysprep::Reboot, "/reboot"),
            (AfterSysprep::Quit, "/quit"),
        ] {
            let s = script(
                LaunchAgent::None,
                &SysprepOptions {
                    after,
                    mode_vm: true,
                    detach: false,
                    ..SysprepOptions::default()
                },
            );
            let call = s.lines().find(|l| l.starts_with("& $program")).unwrap();
            assert_eq!(
                call,
                format!("& $program '/generalize' '/oobe' '/mode:vm' '{flag}'")
            );
        }
        let error = sysprep_commands(
            LaunchAgent::None,
            &SysprepOptions {
                mode_vm: true,
                unattend_path: Some(r"C:\x\unattend.xml".into()),
                ..SysprepOptions::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("/mode:vm takes no /unattend"), "{error}");
    }

    #[test]
    fn unsupported_combinations_say_why() {
        let reboot = SysprepOptions {
            after: AfterSysprep::Reboot,
            ..SysprepOptions::default()
        };
        for agent in [
            LaunchAgent::Ec2LaunchV2,
            LaunchAgent::Ec2LaunchV1,
            LaunchAgent::Ec2Config,
        ] {
            let error = sysprep_commands(agent, &reboot).unwrap_err().to_string();
            assert!(error.contains("agent none"), "{error}");
        }
        let error = sysprep_commands(
            LaunchAgent::None,
            &SysprepOptions {
                unattend_path: Some("C:\\a\"b.xml".into()),
                ..SysprepOptions::default()
            },
        )
        .unwrap_err();
        assert!(error.to_string().contains("unattend_path"));
    }

    #[test]
    fn generalize_with_name_writes_the_name_then_reboots() {
        let name = Hostname::parse("APP-0042").unwrap();
        let sequence =
            generalize_with_name(&name, &crate::unattend::UnattendConfig::default()).unwrap();
        assert_eq!(sequence.steps.len(), 2);
        assert!(sequence.detached);
        let script = sequence.script();
        let write = script
            .find("$answer.Save($destination)")
            .expect("writes the file");
        let run = script.find("/reboot").expect("reboots");
        assert!(write < run);
        // The first step is exactly the writer for the base config plus this ComputerName.
        let named = crate::unattend::UnattendConfig {
            computer_name: Some(crate::unattend::ComputerName::Name(name)),
            ..crate::unattend::UnattendConfig::default()
        };
        let expected =
            crate::unattend::writer_script(&named, LaunchAgent::None.unattend_path()).unwrap();
        assert_eq!(sequence.steps[0].script, expected);
        let xml = crate::unattend::render(&named).unwrap().xml;
        assert!(xml.contains("<ComputerName>APP-0042</ComputerName>"));
    }

    #[test]
    fn rename_is_idempotent_and_quoted() {
        let name = Hostname::parse("WEB-001").unwrap();
        let s = rename_commands(&name, RenameRestart::SsmExit3010).script();
        assert!(s.contains("$desired = 'WEB-001'"));
        assert!(s.contains("if ($env:COMPUTERNAME -ne $desired)"));
        assert!(s.contains("exit 3010"));
        assert!(s.contains(crate::agent::IDENTITY_MARKER));
    }

    #[test]
    fn set_host_name_edits_the_agent_config_then_restarts() {
        let name = Hostname::parse("WEB-001").unwrap();
        let sequence = rename_commands_with(
            NameSource::Literal(&name),
            RenameMethod::Ec2LaunchSetHostName,
            RenameRestart::SsmExit3010,
        );
        assert_eq!(sequence.agent, LaunchAgent::Ec2LaunchV2);
        let s = sequence.script();
        assert!(s.contains("$desired = 'WEB-001'"));
        // Nothing happens when the name is already in place.
        let guard = s.find("if ($env:COMPUTERNAME -ne $desired) {").unwrap();
        // The documented JSON round trip of agent-config.yml, with the task and both inputs.
        let pending = s.find("$pending -ne $desired");
        let read = s.find("get-agent-config --format json | Out-String");
        let task = s.find(
            "task = 'setHostName'; inputs = [pscustomobject]@{ hostName = $desired; reboot = $true }",
        );
        let write =
            s.find("ConvertTo-Json -Depth 16 | Out-File -Encoding UTF8 -FilePath $agentConfigPath");
        let validate = s.find("& $agentProgram validate");
        let restart = s.find("    exit 3010");
        let order = [Some(guard), pending, read, task, write, validate, restart];
        assert!(order.iter().all(Option::is_some), "{s}");
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "steps out of order:\n{s}"
        );
        assert!(s.contains("agent-config.yml"));
        assert!(s.contains("Copy-Item -LiteralPath $agentBackup -Destination $agentConfigPath"));
        // Any earlier setHostName task is replaced, not duplicated.
        assert!(s.contains("$_.task -ne 'setHostName'"));
        // The loop guard: a task that predates this boot and did not rename is an error.
        assert!(s.contains("LastWriteTime -lt $booted"));
        assert!(!s.contains("Rename-Computer"));
        assert!(s.contains(crate::agent::IDENTITY_MARKER));

        let outside_ssm = rename_commands_with(
            NameSource::Literal(&name),
            RenameMethod::Ec2LaunchSetHostName,
            RenameRestart::RestartComputer,
        )
        .script();
        assert!(outside_ssm.contains("    Restart-Computer -Force\n    exit 0\n"));
        assert!(!outside_ssm.contains("exit 3010"));
    }

    /// Issue 10, bug 8: the launch agents' own renamers (EC2Launch v2 `setHostName` for another
    /// name, EC2Config `Ec2SetComputerName`, EC2Launch v1 `setComputerName`) are switched off
    /// before Rename-Computer, and the restart waits for `ec2launch status --block` (EC2Launch
    /// v2 settings; EC2Config service; Configure EC2Launch).
    #[test]
    fn rename_computer_disables_the_agents_renamers_and_waits_for_the_agent() {
        let name = Hostname::parse("APP-0042").unwrap();
        for restart in [RenameRestart::SsmExit3010, RenameRestart::RestartComputer] {
            let s = rename_commands(&name, restart).script();
            let v2 = s
                .find("$_.task -eq 'setHostName' -and [string]$_.inputs.hostName -ne $desired")
                .expect("v2 setHostName check");
            let v2_removed = s.find("$_.task -ne 'setHostName'").expect("removes it");
            let validate = s.find("& $agentProgram validate").expect("validated");
            let ec2config = s
                .find("//Plugin[Name='Ec2SetComputerName']")
                .expect("EC2Config renamer");
            let disabled = s.find("$renamer.State = 'Disabled'").expect("disabled");
            let v1 = s
                .find("$launchConfig.setComputerName = $false")
                .expect("v1");
            let rename = s
                .find("Rename-Computer -NewName $desired -Force\n")
                .unwrap();
            let wait = s.rfind("& $agentProgram status --block").unwrap();
            let exit = match restart {
                RenameRestart::SsmExit3010 => s.find("exit 3010").unwrap(),
                RenameRestart::RestartComputer => s.find("Restart-Computer -Force").unwrap(),
            };
            let order = [
                v2, v2_removed, validate, ec2config, disabled, v1, rename, wait, exit,
            ];
            assert!(order.windows(2).all(|w| w[0] < w[1]), "{restart:?}\n{s}");
            assert!(!s.contains("-Restart\n"), "the restart waits for the agent");
        }
        // The setHostName method waits for the agent before its restart too.
        let s = rename_commands_with(
            NameSource::Literal(&name),
            RenameMethod::Ec2LaunchSetHostName,
            RenameRestart::SsmExit3010,
        )
        .script();
        let wait = s.rfind("& $agentProgram status --block").unwrap();
        assert!(wait < s.find("exit 3010").unwrap());
    }

    #[test]
    fn both_rename_methods_for_the_per_instance_name() {
        for method in [
            RenameMethod::RenameComputer,
            RenameMethod::Ec2LaunchSetHostName,
        ] {
            let s =
                rename_commands_with(NameSource::PerInstance, method, RenameRestart::SsmExit3010)
                    .script();
            let check = s.find("-notmatch").expect("name check");
            let guard = s.find("if ($env:COMPUTERNAME -ne $desired)").unwrap();
            assert!(check < guard, "{method:?}");
        }
        // The default method is the one the workflows have always used.
        assert_eq!(
            rename_commands_from(NameSource::PerInstance, RenameRestart::SsmExit3010),
            rename_commands_with(
                NameSource::PerInstance,
                RenameMethod::default(),
                RenameRestart::SsmExit3010
            )
        );
        assert_eq!(
            serde_json::to_string(&RenameMethod::Ec2LaunchSetHostName).unwrap(),
            "\"ec2launch-set-host-name\""
        );
    }

    #[test]
    fn per_instance_naming_reads_and_checks_the_prelude_variable() {
        let rename =
            rename_commands_from(NameSource::PerInstance, RenameRestart::SsmExit3010).script();
        assert!(rename.contains("$desired = [string]$fleetprepName"));
        let check = rename.find("-notmatch").expect("name check");
        assert!(check < rename.find("Rename-Computer -NewName").unwrap());
        let generalize = generalize_with_name_from(
            NameSource::PerInstance,
            &crate::unattend::UnattendConfig::default(),
        )
        .unwrap()
        .script();
        assert!(generalize.contains("$nameNode.InnerText = $desired"));
        assert!(generalize.find("$nameNode").unwrap() < generalize.find("sysprep.exe").unwrap());
        assert!(generalize.contains("/reboot"));
    }
}
