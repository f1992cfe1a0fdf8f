//! The Lambda ships only what runs in Lambda (issue 9): the `bootstrap`'s normal dependency
//! graph, as cargo resolves it for this package alone, has no local runtime in it — not the
//! embedded engine, not SQLite, not the simulated fleet, not the local driver, not proptest.

use std::collections::BTreeSet;
use std::process::Command;

/// The packages (and, for workspace crates, the features) of `cargo tree -p lambda -e normal`
/// with every feature of this crate on, as `name` and `name/feature`.
fn normal_dependencies() -> BTreeSet<String> {
    let output = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "tree",
            "-p",
            "lambda",
            "--all-features",
            "-e",
            "normal,features",
            "--prefix",
            "none",
            "--format",
            "{p}",
            "--offline",
        ])
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            // `name v1.2.3 (path)` for a package, `name feature "f"` for one of its features.
            let mut words = line.split_whitespace();
            let name = words.next()?;
            match (words.next(), words.next()) {
                (Some("feature"), Some(feature)) => {
                    Some(format!("{name}/{}", feature.trim_matches('"')))
                }
                _ => Some(name.to_string()),
            }
        })
        .collect()
}

#[test]
fn the_bootstrap_links_no_local_runtime() {
    let dependencies = normal_dependencies();
    // The graph was read: the function's own dependencies are in it.
    for expected in ["workflows", "cloud", "lambda_runtime", "aws-sdk-ec2"] {
        assert!(
            dependencies.contains(expected),
            "{expected} missing from {dependencies:#?}"
        );
    }
    let forbidden = [
        ("engine", "the embedded engine"),
        ("localfleet", "the local driver"),
        ("rusqlite", "SQLite"),
        ("libsqlite3-sys", "SQLite"),
        ("names/sqlite", "the SQLite name pool"),
        ("cloud/sim", "the simulated fleet"),
        ("proptest", "a test library"),
    ];
    let found: Vec<String> = forbidden
        .iter()
        .filter(|(package, _)| dependencies.contains(*package))
        .map(|(package, what)| format!("{package} ({what})"))
        .collect();
    assert!(
        found.is_empty(),
        "the Lambda links {found:?}; see `cargo tree -p lambda -e normal,features -i <package>` \
         for the path, and make that dependency a dev-dependency or a feature"
    );
}
