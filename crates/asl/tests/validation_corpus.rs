//! Scores `asl::validate` against the labelled validation corpus (tests/validation, from the
//! asl-validator project, Apache-2.0; see LICENSE there): `valid-*` must be accepted,
//! `invalid-*` rejected with at least one error naming a state or field. Bar: 90% agreement.
//! `DELIBERATE_DIFFERENCES` lists where fleetprep disagrees on purpose; the test checks the
//! list both ways.

use std::path::Path;

/// (file, reason).
const DELIBERATE_DIFFERENCES: &[(&str, &str)] = &[
    (
        "valid-cfn-definition-substitutions.json",
        "CloudFormation `${...}` substitutions are resolved before deployment; fleetprep runs \
         deployed definitions, where a Resource must be a real ARN",
    ),
    (
        "valid-task-intrisic-function.json",
        "CloudFormation `Ref`/`Fn::GetAtt` objects as Resource are template syntax, not ASL; \
         Step Functions itself rejects a non-string Resource",
    ),
    (
        "valid-map-with-item-batcher-jsonata.json",
        "declares a JSONPath state inside a top-level JSONata machine; the Step Functions \
         developer guide (\"State machine structure\") says a top-level JSONata state machine \
         cannot be a mix of JSONata and JSONPath states, and AWS refuses it (\"'QueryLanguage' \
         can not be 'JSONPath' if set to 'JSONata' for whole state machine\"); the file tests \
         ItemBatcher, the JSONPath state is incidental",
    ),
];

#[test]
fn validation_corpus_agreement() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/validation/definitions");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("vendored validation corpus")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 70, "corpus has {} files", files.len());
    let mut agree = 0;
    let mut disagreements = Vec::new();
    for f in &files {
        let name = f
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let text = std::fs::read_to_string(f).expect("readable");
        let value: serde_json::Value = serde_json::from_str(&text).expect("corpus files are JSON");
        let diags = asl::validate::validate(&value);
        let want_valid = name.starts_with("valid-");
        if !want_valid {
            for d in &diags {
                assert!(
                    d.state.is_some() || !d.path.is_empty(),
                    "{name}: diagnostic names neither state nor field: {d}"
                );
            }
        }
        if diags.is_empty() == want_valid {
            agree += 1;
        } else {
            disagreements.push(name);
        }
    }
    let listed: Vec<&str> = DELIBERATE_DIFFERENCES.iter().map(|(n, _)| *n).collect();
    let unexpected: Vec<_> = disagreements
        .iter()
        .filter(|n| !listed.contains(&n.as_str()))
        .collect();
    let stale: Vec<_> = listed
        .iter()
        .filter(|n| !disagreements.iter().any(|d| d == *n))
        .collect();
    assert!(
        unexpected.is_empty(),
        "unlisted disagreements: {unexpected:?}"
    );
    assert!(
        stale.is_empty(),
        "listed differences that now agree: {stale:?}"
    );
    assert!(
        agree * 100 >= files.len() * 90,
        "agreement {agree}/{} below 90%",
        files.len()
    );
}
