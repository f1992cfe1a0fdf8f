//! Every script fleetprep generates, parsed by a real PowerShell grammar (tree-sitter): zero
//! ERROR or MISSING nodes, for every agent and option combination, and hostile values stay
//! inside one string literal.

use sysprep::agent::{LaunchAgent, detection_script, identity_script};
use sysprep::commands::{
    AfterSysprep, RenameRestart, SysprepOptions, rename_commands, sysprep_commands,
};
use sysprep::hostname::Hostname;
use sysprep::powershell::quote;

fn parse(script: &str) -> tree_sitter::Tree {
    let mut parser = tree_sitter::Parser::new();
    parser
        .set_language(&tree_sitter_powershell::LANGUAGE.into())
        .expect("load the PowerShell grammar");
    parser.parse(script, None).expect("parse")
}

/// Returns the first ERROR/MISSING node with its position and the surrounding line.
fn first_error(script: &str) -> Option<String> {
    let tree = parse(script);
    let mut cursor = tree.walk();
    let mut stack = vec![tree.root_node()];
    while let Some(node) = stack.pop() {
        if node.is_error() || node.is_missing() {
            let row = node.start_position().row;
            let line = script.lines().nth(row).unwrap_or("");
            return Some(format!(
                "{} at {}:{}: {line:?}",
                if node.is_missing() {
                    "MISSING"
                } else {
                    "ERROR"
                },
                row + 1,
                node.start_position().column + 1
            ));
        }
        if node.has_error() {
            stack.extend(node.children(&mut cursor));
        }
    }
    None
}

fn assert_parses(what: &str, script: &str) {
    if let Some(error) = first_error(script) {
        panic!("{what}: {error}\n---\n{script}");
    }
}

#[test]
fn detection_and_identity_scripts_parse() {
    assert_parses("detection", &detection_script());
    assert_parses("identity", &identity_script());
    assert_parses("image state", &sysprep::agent::image_state_script());
    assert_parses("panther", &sysprep::panther::collection_script());
    let references = [
        sysprep::unattend::PasswordRef::SecretsManager {
            secret_id: "it's $(admin)".into(),
            json_key: None,
        },
        sysprep::unattend::PasswordRef::SsmParameter {
            name: "/fleet/admin".into(),
        },
    ];
    assert_parses(
        "secret check",
        &sysprep::secrets::secret_check_script(&references),
    );
    assert_parses(
        "secret check (none)",
        &sysprep::secrets::secret_check_script(&[]),
    );
    assert_parses(
        "remedy appx",
        &sysprep::remedy::appx_removal_script(&["it's $(x)".into(), "B_1_x64__b".into()]),
    );
    assert_parses(
        "remedy appx (none)",
        &sysprep::remedy::appx_removal_script(&[]),
    );
    assert_parses("remedy reboot", &sysprep::remedy::reboot_script("exec/1"));
    assert_parses("remedy bitlocker", &sysprep::remedy::bitlocker_off_script());
    assert_parses(
        "password scrub",
        &sysprep::unattend::password_scrub_script(),
    );
    for agent in LaunchAgent::ALL {
        assert_parses(
            &format!("agent password {agent}"),
            &sysprep::commands::agent_password_script(agent),
        );
    }
    assert_parses(
        "ec2config set password",
        &sysprep::commands::ec2config_set_password_script(),
    );
}

#[test]
fn every_sysprep_command_combination_parses() {
    let mut generated = 0;
    for agent in LaunchAgent::ALL {
        for after in [
            AfterSysprep::Shutdown,
            AfterSysprep::Reboot,
            AfterSysprep::Quit,
        ] {
            for clean in [false, true] {
                for block in [false, true] {
                    for detach in [false, true] {
                        for mode_vm in [false, true] {
                            for unattend_path in
                                [None, Some(r"C:\Answer Files\it's.xml".to_owned())]
                            {
                                let options = SysprepOptions {
                                    after,
                                    clean,
                                    block,
                                    detach,
                                    unattend_path,
                                    mode_vm,
                                };
                                if let Ok(sequence) = sysprep_commands(agent, &options) {
                                    generated += 1;
                                    assert_parses(
                                        &format!("{agent} {options:?}"),
                                        &sequence.script(),
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    // v2: 2 afters x 8; v1: 2 x 8; ec2config: 2 x 8 (shutdown, quit); none: 3 x 8 x (2
    // paths without /mode:vm + 1 with it, which takes no /unattend).
    assert_eq!(generated, 16 + 16 + 16 + 72);
}

#[test]
fn generalize_with_name_parses() {
    use sysprep::unattend::{PasswordRef, UnattendConfig};
    let config = UnattendConfig {
        admin_password: Some(PasswordRef::SsmParameter {
            name: "/fleet/admin".into(),
        }),
        ..UnattendConfig::default()
    };
    let name = Hostname::parse("WEB-a001").unwrap();
    let sequence = sysprep::commands::generalize_with_name(&name, &config).unwrap();
    assert_parses("generalize_with_name", &sequence.script());
    let per_instance = sysprep::commands::generalize_with_name_from(
        sysprep::commands::NameSource::PerInstance,
        &config,
    )
    .unwrap();
    assert_parses("generalize_with_name per instance", &per_instance.script());
}

#[test]
fn rename_scripts_parse() {
    use sysprep::commands::{NameSource, RenameMethod, rename_commands_with};
    let name = Hostname::parse("WEB-a001").unwrap();
    let mut generated = 0;
    for restart in [RenameRestart::SsmExit3010, RenameRestart::RestartComputer] {
        assert_parses("rename", &rename_commands(&name, restart).script());
        for method in [
            RenameMethod::RenameComputer,
            RenameMethod::Ec2LaunchSetHostName,
        ] {
            for source in [NameSource::Literal(&name), NameSource::PerInstance] {
                let script = rename_commands_with(source, method, restart).script();
                assert_parses(
                    &format!("rename {method:?} {restart:?} {source:?}"),
                    &script,
                );
                generated += 1;
            }
        }
    }
    assert_eq!(generated, 8);
}

const HOSTILE: &[&str] = &[
    "it's",
    "'; Remove-Item -Recurse C:\\ ; '",
    "$(Stop-Computer -Force)",
    "`n`$env:PATH",
    "line one\nline two\r\n'$x'",
    "\u{2018}smart\u{2019} \u{201A}quotes\u{201B}",
    "@'\n'@",
    "\"double\" $var ${braced}",
    "",
    "#<not a comment>#",
];

/// Parses `$value = <quote(value)>` and decodes the one verbatim string literal it must
/// contain; an error names what went wrong (a parse error, code inside, several literals).
fn round_trip(value: &str) -> Result<String, String> {
    let script = format!("$value = {}\nWrite-Output $value\n", quote(value));
    if let Some(error) = first_error(&script) {
        return Err(error);
    }
    let tree = parse(&script);
    let mut literals = Vec::new();
    let mut stack = vec![tree.root_node()];
    let mut cursor = tree.walk();
    while let Some(node) = stack.pop() {
        match node.kind() {
            "verbatim_string_characters" | "verbatim_here_string_characters" => literals.push(
                node.utf8_text(script.as_bytes())
                    .map_err(|e| e.to_string())?
                    .to_owned(),
            ),
            "expandable_string_literal" | "expandable_here_string_literal" | "sub_expression" => {
                return Err(format!("an expandable part: {}", node.kind()));
            }
            _ => {}
        }
        stack.extend(node.children(&mut cursor));
    }
    let [literal] = literals.as_slice() else {
        return Err(format!("expected one literal, found {literals:?}"));
    };
    let inner = literal
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .ok_or_else(|| format!("{literal:?} is not single-quoted"))?;
    let mut decoded = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        decoded.push(c);
        if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}')
            && chars.next() != Some(c)
        {
            return Err("a lone quote inside the literal".into());
        }
    }
    Ok(decoded)
}

/// Each hostile value, quoted, is one verbatim string literal: nothing inside it is parsed
/// as code, and the text between the quotes decodes back to the value.
#[test]
fn hostile_values_stay_one_verbatim_string() {
    for value in HOSTILE {
        assert_eq!(round_trip(value).as_deref(), Ok(*value), "{value:?}");
    }
}

proptest::proptest! {
    /// Any value without control characters (tab, CR, LF allowed) is one verbatim literal.
    #[test]
    fn any_quoted_value_round_trips(value in "([^\\p{Cc}]|[\t\r\n'\u{2018}\u{2019}$`\"@#{}()])*") {
        proptest::prop_assert_eq!(round_trip(&value), Ok(value.clone()));
    }

    /// Values with other control characters become a concatenation that still parses and
    /// has no expandable (code-running) part.
    #[test]
    fn control_characters_are_spliced_in(value in "([\\x00-\\x1f\\x7f]|[a-z'$`])*") {
        let script = format!("$value = {}\nWrite-Output $value\n", quote(&value));
        proptest::prop_assert_eq!(first_error(&script), None, "{:?}", script);
        let sexp = parse(&script).root_node().to_sexp();
        proptest::prop_assert!(!sexp.contains("expandable") && !sexp.contains("sub_expression"), "{}", sexp);
    }
}

/// The harness itself can fail: broken PowerShell is reported, and an unquoted value would be
/// seen as code.
#[test]
fn the_grammar_check_catches_broken_scripts() {
    assert!(first_error("if ($x {\n").is_some());
    assert!(first_error("$a = 'unterminated\n").is_some());
    let tree = parse("$value = \"$(Stop-Computer)\"\n");
    assert!(tree.root_node().to_sexp().contains("sub_expression"));
}

#[test]
fn preflight_scripts_parse() {
    assert_parses(
        "preflight default",
        &sysprep::preflight::preflight_script(None),
    );
    assert_parses(
        "preflight hostile path",
        &sysprep::preflight::preflight_script(Some("C:\\it's $(here)\\unattend.xml")),
    );
}

#[test]
fn unattend_writer_scripts_parse() {
    use sysprep::unattend::{PasswordRef, UnattendConfig, writer_script};
    let sources = [
        None,
        Some(PasswordRef::SsmParameter {
            name: "/fleet/it's $(admin)".into(),
        }),
        Some(PasswordRef::SecretsManager {
            secret_id: "arn:aws:secretsmanager:us-east-1:1:secret:x".into(),
            json_key: None,
        }),
        Some(PasswordRef::SecretsManager {
            secret_id: "name`with\"quotes".into(),
            json_key: Some("pass'word".into()),
        }),
    ];
    for source in sources {
        let config = UnattendConfig {
            admin_password: source.clone(),
            ..UnattendConfig::default()
        };
        for agent in LaunchAgent::ALL {
            let script = writer_script(&config, agent.unattend_path()).expect("writer script");
            assert_parses(&format!("writer {source:?} {agent}"), &script);
            let merge = sysprep::unattend::merge_script(&config, agent.unattend_path())
                .expect("merge script");
            assert_parses(&format!("merge {source:?} {agent}"), &merge);
        }
    }
}

/// A hostile value reaches each generator that takes free text; the script it produces must
/// have exactly the syntax tree of the same script made with a plain value (node kinds only,
/// not text), so the value stayed inside its string literal and added no code. Generators
/// that reject a value (paths with `"`, `|`, ...) are skipped for it.
#[test]
fn hostile_values_cannot_change_a_generated_script() {
    use sysprep::unattend::{PasswordRef, UnattendConfig, writer_script};
    type Generator = fn(&str) -> Option<String>;
    let generators: [(&str, Generator); 6] = [
        ("merge registered owner", |v| {
            let config = UnattendConfig {
                registered_owner: Some(sysprep::unattend::XmlText::new(v).ok()?),
                ..UnattendConfig::default()
            };
            sysprep::unattend::merge_script(&config, r"C:\Windows\Panther\unattend.xml").ok()
        }),
        ("preflight answer file", |v| {
            Some(sysprep::preflight::preflight_script(Some(v)))
        }),
        ("writer ssm parameter", |v| {
            let config = UnattendConfig {
                admin_password: Some(PasswordRef::SsmParameter { name: v.into() }),
                ..UnattendConfig::default()
            };
            writer_script(&config, r"C:\Windows\Panther\unattend.xml").ok()
        }),
        ("writer secrets manager", |v| {
            let config = UnattendConfig {
                admin_password: Some(PasswordRef::SecretsManager {
                    secret_id: v.into(),
                    json_key: Some(v.into()),
                }),
                ..UnattendConfig::default()
            };
            writer_script(&config, r"C:\Windows\Panther\unattend.xml").ok()
        }),
        ("writer destination", |v| {
            writer_script(&UnattendConfig::default(), &format!(r"C:\x\{v}.xml")).ok()
        }),
        ("sysprep.exe unattend path", |v| {
            let options = SysprepOptions {
                unattend_path: Some(format!(r"C:\x\{v}.xml")),
                detach: false,
                ..SysprepOptions::default()
            };
            sysprep_commands(LaunchAgent::None, &options)
                .ok()
                .map(|s| s.script())
        }),
    ];
    let mut compared = 0;
    for (what, generate) in generators {
        let plain = generate("plain").expect("the plain value is accepted");
        assert_parses(what, &plain);
        let expected = parse(&plain).root_node().to_sexp();
        for value in HOSTILE.iter().filter(|v| !v.is_empty()) {
            let Some(script) = generate(value) else {
                continue;
            };
            assert_parses(&format!("{what} with {value:?}"), &script);
            assert_eq!(
                parse(&script).root_node().to_sexp(),
                expected,
                "{what}: {value:?} changed the script's structure\n{script}"
            );
            compared += 1;
        }
    }
    // Every generator took some hostile values (the two path generators reject a few).
    assert!(compared >= 4 * 9 + 2 * 5, "only {compared} comparisons");
}

#[test]
fn user_data_script_parses() {
    let script = sysprep::userdata::script();
    assert_parses("user data", &script);
    // The `<powershell>` envelope's body is the same script.
    let tagged = sysprep::userdata::powershell_tags(&script);
    let body = tagged
        .strip_prefix("<powershell>\n")
        .and_then(|rest| rest.split("</powershell>").next())
        .unwrap();
    assert_parses("user data in <powershell>", body);
}
