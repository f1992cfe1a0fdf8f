//! Arbitrary bytes as a state machine definition: JSON parsing, static validation and model
//! building must never panic, and the two entry points must agree (they are one pass:
//! `Definition::parse` rejects a definition with exactly the diagnostics `validate` returns).
//! Run: `scripts/fuzz asl_definition`.
#![no_main]

use asl::model::{Definition, DefinitionError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        // Not JSON: the loader must say so rather than fail in some other way.
        assert!(matches!(
            Definition::parse(text),
            Err(DefinitionError::Json(_))
        ));
        return;
    };
    let diags = asl::validate::validate(&value);
    for d in &diags {
        // Every diagnostic renders (Display must not panic on odd names or paths).
        let _ = d.to_string();
    }
    match Definition::parse(text) {
        Ok(_) => assert!(diags.is_empty(), "model accepted what validate rejected"),
        Err(DefinitionError::Invalid(found)) => {
            assert!(
                !found.is_empty(),
                "an invalid definition must name a problem"
            );
            assert_eq!(found, diags, "parse and validate are one pass");
            let _ = DefinitionError::Invalid(found).to_string();
        }
        Err(DefinitionError::Json(e)) => panic!("valid JSON reported as unreadable: {e}"),
    }
});
