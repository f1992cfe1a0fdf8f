//! Amazon States Language (ASL): parse, validate, evaluate, interpret. Pure: no I/O, no clock,
//! no randomness source of its own (callers pass time and entropy in).
//!
//! TODO(#2): crate overview (written by the engine work).

pub mod error;
// Expression layer: JSONPath, payload templates, intrinsic functions, JSONata, Choice rules.
pub mod choice;
pub mod intrinsics;
pub mod jsonata;
pub mod jsonpath;
pub mod template;
// Definitions and execution: model, validation, interpreter, history events.
pub mod history;
pub mod interp;
pub mod model;
pub mod validate;
