//! `fleetprep states validate|exec`: check ASL definitions and run them on the embedded engine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::output::OutputFormat;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Validate definitions: exit 0 when all are valid, else print every error and exit 1.
    Validate {
        /// Definition files (JSON).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Run a definition once on the embedded engine and print the result.
    Exec {
        /// Definition file (JSON).
        definition: PathBuf,
        /// Input file (JSON); default `{}`.
        #[arg(long)]
        input: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
        /// Use the real clock (Wait states really wait). Default: a virtual clock that starts
        /// now and jumps to the next timer whenever the execution waits.
        #[arg(long, conflicts_with = "start_time")]
        real_time: bool,
        /// Start the virtual clock at this instant (RFC 3339, e.g. `2024-01-01T00:00:00Z`)
        /// instead of now, so that timestamps, `$$.Execution.StartTime` and history are the
        /// same on every run.
        #[arg(long, value_parser = parse_start_time)]
        start_time: Option<SystemTime>,
        /// SQLite store to keep the execution in (default: in-memory, discarded).
        #[arg(long)]
        store: Option<PathBuf>,
        /// Execution name (default: generated).
        #[arg(long)]
        name: Option<String>,
    },
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Validate { files, output } => validate(&files, output),
        Command::Exec {
            definition,
            input,
            output,
            real_time,
            start_time,
            store,
            name,
        } => {
            let clock: Arc<dyn clock::Clock> = match (real_time, start_time) {
                (true, _) => Arc::new(clock::SystemClock),
                (false, Some(start)) => Arc::new(clock::VirtualClock::new(start)),
                (false, None) => crate::report::virtual_clock_now(),
            };
            exec(&definition, input.as_deref(), output, clock, store, name)
        }
    }
}

fn parse_start_time(text: &str) -> Result<SystemTime, String> {
    clock::parse_rfc3339(text).ok_or_else(|| {
        format!("'{text}' is not an RFC 3339 timestamp; write it like 2024-01-01T00:00:00Z")
    })
}

fn validate(files: &[PathBuf], output: OutputFormat) -> anyhow::Result<ExitCode> {
    let mut all_ok = true;
    let mut report = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        let errors: Vec<String> = match serde_json::from_str::<Value>(&text) {
            Err(e) => vec![format!("not valid JSON: {e}")],
            Ok(v) => asl::validate::validate(&v)
                .iter()
                .map(|d| d.to_string())
                .collect(),
        };
        all_ok &= errors.is_empty();
        match output {
            OutputFormat::Text => {
                if errors.is_empty() {
                    println!("{}: valid", f.display());
                } else {
                    for e in &errors {
                        println!("{}: {e}", f.display());
                    }
                }
            }
            OutputFormat::Json => report.push(json!({"file": f.display().to_string(), "valid": errors.is_empty(), "errors": errors})),
        }
    }
    if output == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn exec(
    definition: &std::path::Path,
    input: Option<&std::path::Path>,
    output: OutputFormat,
    clock: Arc<dyn clock::Clock>,
    store: Option<PathBuf>,
    name: Option<String>,
) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(definition)
        .with_context(|| format!("cannot read {}", definition.display()))?;
    let input: Value = match input {
        Some(p) => {
            let t = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            serde_json::from_str(&t)
                .with_context(|| format!("{} is not valid JSON", p.display()))?
        }
        None => json!({}),
    };
    let engine = engine::Engine::open(engine::EngineConfig { store, clock })?;
    let sm = definition
        .file_stem()
        .and_then(|s| s.to_str())
        .map(|s| {
            s.trim_end_matches(".asl").replace(
                |c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_',
                "-",
            )
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "definition".to_owned());
    if let Err(e) = engine.create_state_machine(&sm, &text) {
        bail!("{}: {e}", definition.display());
    }
    let arn = engine.start_execution(&sm, name.as_deref(), input)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let summary = rt.block_on(engine.run_until_complete(&arn))?;
    let history = engine.history(&arn)?;
    match output {
        OutputFormat::Json => {
            let doc = json!({
                "status": summary.status.as_str(),
                "output": summary.output,
                "error": summary.error,
                "cause": summary.cause,
                "history": history,
            });
            println!("{}", serde_json::to_string(&doc)?);
        }
        OutputFormat::Text => {
            for e in &history {
                let name = e.state_name().unwrap_or("");
                println!("{:>5} {:<28} {name}", e.id, e.event_type.as_str());
            }
            println!("status: {}", summary.status.as_str());
            if let Some(o) = &summary.output {
                println!("output: {}", serde_json::to_string_pretty(o)?);
            }
            if let Some(e) = &summary.error {
                println!("error: {e}");
            }
            if let Some(c) = &summary.cause {
                println!("cause: {c}");
            }
        }
    }
    Ok(match summary.status {
        engine::Status::Succeeded => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    })
}
