//! Issue 10, bug 4: `unattend render --base` merges fleetprep's settings into each launch
//! agent's own answer file and keeps everything else. The agents' files are reconstructed
//! from their documented structure ("Create a standardized Amazon Machine Image (AMI) using
//! Sysprep") under `tests/data/agents/`.

use std::path::Path;

use sysprep::merge::{managed_settings, merge};
use sysprep::unattend::{Element, TimeZone, UnattendConfig, XmlText, parse, parse_xml};

const AGENT_FILES: [&str; 3] = [
    "ec2launch-v2-unattend.xml",
    "ec2launch-v1-Unattend.xml",
    "ec2config-sysprep2008.xml",
];

fn agent_file(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/agents")
            .join(name),
    )
    .expect("agent file")
}

/// Every element as `pass/component/.../element[@attrs]=text`, in document order.
fn leaves(element: &Element, prefix: &str, out: &mut Vec<String>) {
    let mut key = format!("{prefix}/{}", element.name);
    for attribute in ["pass", "name"] {
        if let Some(value) = element.attribute(attribute) {
            key.push_str(&format!("[{value}]"));
        }
    }
    if element.children.is_empty() {
        out.push(format!("{key}={}", element.text.trim()));
    }
    for child in &element.children {
        leaves(child, &key, out);
    }
}

fn config() -> UnattendConfig {
    UnattendConfig {
        time_zone: TimeZone::try_from("W. Europe Standard Time".to_owned()).unwrap(),
        registered_owner: Some(XmlText::new("Ops & <Team>").unwrap()),
        copy_profile: false,
        ..UnattendConfig::default()
    }
}

#[test]
fn the_merge_keeps_everything_the_agent_file_carries() {
    let config = config();
    let managed: Vec<String> = managed_settings(&config)
        .iter()
        .map(|s| {
            format!(
                "/unattend/settings[{}]/component[{}]/{}",
                s.pass, s.component, s.element
            )
        })
        .collect();
    for name in AGENT_FILES {
        let base = agent_file(name);
        let merged = merge(&base, &config).unwrap().xml;
        let mut before = Vec::new();
        leaves(&parse_xml(&base).unwrap(), "", &mut before);
        let mut after = Vec::new();
        leaves(&parse_xml(&merged).unwrap(), "", &mut after);
        for leaf in &before {
            let (path, _) = leaf.split_once('=').unwrap();
            if managed.iter().any(|m| m == path) {
                continue;
            }
            assert!(after.contains(leaf), "{name}: lost {leaf}\n{merged}");
        }
        // What the agent file needs at first boot is still there.
        for kept in [
            "fDenyTSConnections /t REG_DWORD /d 0",
            "<DoNotCleanUpNonPresentDevices>true</DoNotCleanUpNonPresentDevices>",
            "<InputLocale>en-US</InputLocale>",
            "<!-- Reconstructed",
            "wcm:action=\"add\"",
        ] {
            assert!(merged.contains(kept), "{name}: lost {kept}\n{merged}");
        }
        // fleetprep's settings are in place, read back by the same parser as a render.
        let read = parse(&merged).unwrap();
        assert_eq!(read.time_zone, config.time_zone, "{name}");
        assert_eq!(read.registered_owner, config.registered_owner, "{name}");
        assert!(!read.copy_profile && !read.skip_rearm, "{name}");
        assert!(merged.contains("<SkipRearm>0</SkipRearm>"), "{name}");
        // Merging again changes nothing.
        assert_eq!(merge(&merged, &config).unwrap().xml, merged, "{name}");
    }
    let v1 = merge(&agent_file("ec2launch-v1-Unattend.xml"), &config)
        .unwrap()
        .xml;
    assert!(v1.contains("RandomizeLocalAdminPassword.ps1"));
    let v2 = merge(&agent_file("ec2launch-v2-unattend.xml"), &config)
        .unwrap()
        .xml;
    assert!(v2.contains("internal randomize-password --username Administrator"));
}

/// Issue 10, bug 5: no password stays in the answer file; the agents randomize it.
#[test]
fn the_merge_removes_any_administrator_password() {
    let base = agent_file("ec2launch-v2-unattend.xml").replace(
        "<BluetoothTaskbarIconEnabled>",
        "<UserAccounts><AdministratorPassword><Value>UABhAHMAcwA=</Value><PlainText>false</PlainText></AdministratorPassword></UserAccounts><BluetoothTaskbarIconEnabled>",
    );
    let merged = merge(&base, &config()).unwrap();
    assert!(
        !merged.xml.contains("AdministratorPassword"),
        "{}",
        merged.xml
    );
    assert!(merged.warnings.iter().any(|w| w.contains("randomizes")));
    assert!(merge("<notunattend/>", &config()).is_err());
}

/// The builder's script applies the same settings to the agent's file on disk.
#[test]
fn the_builder_script_merges_the_same_settings_into_the_file_on_disk() {
    let config = config();
    for agent in sysprep::agent::LaunchAgent::ALL {
        let script = sysprep::unattend::merge_script(&config, agent.unattend_path()).unwrap();
        assert!(script.contains("$answer.Load($destination)"), "{agent}");
        assert!(
            !script.contains("FromBase64String"),
            "{agent}: never replaces the file"
        );
        for setting in managed_settings(&config) {
            let call = format!(
                "Set-AnswerValue {} {} {} {}",
                sysprep::powershell::quote(setting.pass),
                sysprep::powershell::quote(setting.component),
                sysprep::powershell::quote(setting.element),
                sysprep::powershell::quote(&setting.value)
            );
            assert!(script.contains(&call), "{agent}: {call}");
        }
        assert!(script.contains("local-name()='AdministratorPassword'"));
        let save = script.find("$answer.Save($destination)").unwrap();
        assert!(script.find("RemoveChild($secret)").unwrap() < save);
    }
}
