//! One module per subcommand; each exposes `Args`/`Command` (clap) and `run`.

pub mod aws_engine;
pub mod bake;
pub mod bench;
pub mod demo;
pub mod executions;
pub mod fleet;
pub mod graph;
pub mod hostname;
pub mod states;
pub mod sysprep;
pub mod unattend;
