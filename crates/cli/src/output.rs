//! How a reporting command prints: human text or one JSON document.

use clap::ValueEnum;

/// `--output text|json`, shared by every command that reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}
