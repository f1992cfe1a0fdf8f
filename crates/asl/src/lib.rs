//! Amazon States Language (ASL): parse, validate, evaluate, interpret — with AWS Step
//! Functions' semantics, error names and history shape.
//!
//! Pure: no I/O, no clock, no randomness source of its own, no async runtime. Callers pass
//! "now" and an entropy seed in; the same inputs always give the same outputs, which is what
//! lets the engine persist an execution as its input log and replay it after a crash.
//!
//! Main types:
//! - [`model::Definition`]: a whole definition, parsed and *fully validated* before anything
//!   runs, in one pass that compiles every expression once and reports every problem as an
//!   [`error::Diagnostic`] with the JSON path and state name
//!   ([`model::Definition::parse_with_diagnostics`]; [`validate::validate`] is its diagnostics).
//! - [`interp::Execution`]: the decider. `start`/`handle` take an [`interp::Event`] (task
//!   result, timer fired, abort) and return an [`interp::Step`]: the
//!   [`history::HistoryEvent`]s recorded and the [`interp::Command`]s for the runtime
//!   (schedule a task, start/cancel a timer, complete).
//! - [`history::HistoryEvent`]: `GetExecutionHistory`'s event shape (serde camelCase), shared
//!   by the local engine, the CLI and the AWS mode.
//! - The expression layer: [`jsonpath`], [`template`] (Parameters/ResultSelector/ItemSelector),
//!   [`intrinsics`], [`jsonata_template`] (JSONata-mode fields on the `jsonata` crate),
//!   [`choice`], with [`error::StatesError`] as AWS raises it.
//!
//! Deliberately not here: storage, timers, task dispatch, concurrency (crate `engine`);
//! distributed Map, activities and callback (`.waitForTaskToken`) patterns (a clear runtime
//! error names the state).
//!
//! ```
//! use std::time::UNIX_EPOCH;
//! use asl::interp::{Execution, ExecutionInfo, Options, Status};
//! use asl::model::Definition;
//!
//! let def = Definition::parse(r#"{"StartAt":"Hi","States":{"Hi":{"Type":"Pass",
//!     "Parameters":{"greeting.$":"States.Format('hello {}', $.who)"},"End":true}}}"#).unwrap();
//! let (ex, step) = Execution::start(&def, ExecutionInfo::local("demo", "run-1"),
//!     serde_json::json!({"who": "world"}), 42, UNIX_EPOCH, Options::default());
//! assert_eq!(ex.status, Status::Succeeded);
//! assert_eq!(ex.output, Some(serde_json::json!({"greeting": "hello world"})));
//! assert_eq!(step.history.len(), 4); // ExecutionStarted, PassStateEntered/Exited, ExecutionSucceeded
//! ```

pub mod error;
// Expression layer: JSONPath, payload templates, intrinsic functions, JSONata, Choice rules.
pub mod choice;
pub mod intrinsics;
pub mod jsonata_template;
pub mod jsonpath;
pub mod template;
// Definitions and execution: model, validation, interpreter, history events.
pub mod history;
pub mod interp;
pub mod model;
pub mod query_language;
pub mod validate;
