//! The shape of a request type, read from its `Deserialize` impl: the field names serde expects
//! and whether a given set of fields deserializes. The ASL contract test
//! (`tests/contract.rs`) checks every Task's payload against it, so a field renamed in a
//! handler's request type and not in the state machine fails a test instead of an execution.
//!
//! [`Probe`] is a `Deserializer` with no data: asked for a struct it records the field names
//! (`deserialize_struct`'s `fields`) and, when given the fields a payload builds, answers every
//! one with a placeholder of whatever type is asked for. A payload that lacks a required field
//! or names an unknown one (request types `deny_unknown_fields`) then fails with serde's own
//! `missing field`/`unknown field` error.

use std::cell::Cell;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

/// The field names of a struct request type, as its `Deserialize` impl declares them (serde
/// renames applied).
pub fn fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let recorded = Cell::new(None);
    // The probe stops at `deserialize_struct`: recording is all it does here.
    let _ = T::deserialize(Probe {
        recorded: &recorded,
        present: None,
    });
    recorded.get().unwrap_or(&[])
}

/// Whether a payload building exactly `present` deserializes into `T` (values are placeholders:
/// this checks names, not values). The error is serde's, naming the field.
pub fn check<'de, T: Deserialize<'de>>(present: &[&str]) -> Result<(), String> {
    let recorded = Cell::new(None);
    T::deserialize(Probe {
        recorded: &recorded,
        present: Some(present),
    })
    .map(drop)
    .map_err(|e: Error| e.0)
}

/// A probe error (serde's message).
#[derive(Debug)]
pub struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

#[derive(Clone, Copy)]
struct Probe<'a> {
    recorded: &'a Cell<Option<&'static [&'static str]>>,
    /// The top-level fields to present; None only records.
    present: Option<&'a [&'a str]>,
}

/// The placeholder for any value inside a presented field: the simplest value of the type
/// asked for (structs get every field they declare, so nested required fields are satisfied).
struct Placeholder;

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
        Err(de::Error::custom("a request type must be a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.recorded.set(Some(fields));
        match self.present {
            None => Err(de::Error::custom("recorded")),
            Some(present) => visitor.visit_map(Fields::new(present.iter().copied())),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// A map of the given keys, each answered by a [`Placeholder`].
struct Fields<'a, I: Iterator<Item = &'a str>> {
    keys: I,
}

impl<'a, I: Iterator<Item = &'a str>> Fields<'a, I> {
    fn new(keys: I) -> Self {
        Fields { keys }
    }
}

impl<'de, 'a, I: Iterator<Item = &'a str>> de::MapAccess<'de> for Fields<'a, I> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.keys.next() {
            Some(key) => seed.deserialize(key.into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        seed.deserialize(Placeholder)
    }
}

/// Placeholders answer the numeric visits with 0; one macro writes them all.
macro_rules! zero {
    ($($method:ident => $visit:ident($value:expr)),* $(,)?) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.$visit($value)
        })*
    };
}

impl<'de> de::Deserializer<'de> for Placeholder {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    zero! {
        deserialize_bool => visit_bool(false),
        deserialize_i8 => visit_i64(0),
        deserialize_i16 => visit_i64(0),
        deserialize_i32 => visit_i64(0),
        deserialize_i64 => visit_i64(0),
        deserialize_u8 => visit_u64(0),
        deserialize_u16 => visit_u64(0),
        deserialize_u32 => visit_u64(0),
        deserialize_u64 => visit_u64(0),
        deserialize_f32 => visit_f64(0.0),
        deserialize_f64 => visit_f64(0.0),
        deserialize_char => visit_char('0'),
        deserialize_str => visit_str(""),
        deserialize_string => visit_str(""),
        deserialize_identifier => visit_str(""),
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(de::value::SeqDeserializer::<_, Error>::new(
            std::iter::empty::<()>(),
        ))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_map(Fields::new(std::iter::empty()))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_map(Fields::new(fields.iter().copied()))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let first: &str = variants.first().copied().unwrap_or_default();
        visitor.visit_enum(first.into_deserializer())
    }

    serde::forward_to_deserialize_any! {
        i128 u128 bytes byte_buf unit unit_struct newtype_struct tuple tuple_struct ignored_any
    }
}
