//! The query language of a definition or state (ASL `QueryLanguage`) and the rule that picks
//! a state's language. Both the definition pass ([`crate::model`]) and whatever reports on it
//! ([`crate::validate`]) read it from here, so neither imports the other for it.

use serde_json::Value;

/// The query language of a definition or state (ASL `QueryLanguage`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum QueryLanguage {
    JsonPath,
    Jsonata,
}

impl QueryLanguage {
    /// A definition without a top-level `QueryLanguage` uses JSONPath (ASL spec).
    pub const DEFAULT: QueryLanguage = QueryLanguage::JsonPath;

    /// The language a `QueryLanguage` field names, or `None` when it is absent or names
    /// neither language.
    pub(crate) fn from_field(v: Option<&Value>) -> Option<QueryLanguage> {
        match v?.as_str()? {
            "JSONPath" => Some(QueryLanguage::JsonPath),
            "JSONata" => Some(QueryLanguage::Jsonata),
            _ => None,
        }
    }

    /// A state's language: its own, else the definition's top-level one, at any depth
    /// (developer guide, "Transforming data with JSONata": such a state "will use the query
    /// language specified in the top-level QueryLanguage field"). A Map or Parallel state's
    /// own language does not carry into its ItemProcessor or branches, so there is no
    /// "parent" language to inherit.
    pub fn for_state(own: Option<QueryLanguage>, top: QueryLanguage) -> QueryLanguage {
        own.unwrap_or(top)
    }
}
