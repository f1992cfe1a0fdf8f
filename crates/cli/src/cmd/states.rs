//! `fleetprep states validate|exec`: check ASL definitions and run them on the embedded engine.
//!
//! `exec --mock-config FILE --test-case NAME` answers Task states from a Step Functions Local
//! mock configuration file (module `mockconfig`), so a definition runs without handlers.

use serve::mockconfig;

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
        /// Answer Task states from this Step Functions Local mock configuration file
        /// (`StateMachines` / `MockedResponses`); needs --test-case.
        #[arg(long, requires = "test_case")]
        mock_config: Option<PathBuf>,
        /// The test case of the mock configuration to run.
        #[arg(long, requires = "mock_config")]
        test_case: Option<String>,
        /// The state machine's name, here and in the mock configuration (default: the
        /// definition file's name without `.json` / `.asl.json`).
        #[arg(long)]
        state_machine_name: Option<String>,
    },
}

/// `--mock-config` and `--test-case`, together.
struct Mocks {
    file: PathBuf,
    test_case: String,
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
            mock_config,
            test_case,
            state_machine_name,
        } => {
            let mocks = mock_config
                .zip(test_case)
                .map(|(file, test_case)| Mocks { file, test_case });
            let clock: Arc<dyn clock::Clock> = match (real_time, start_time) {
                (true, _) => Arc::new(clock::SystemClock),
                (false, Some(start)) => Arc::new(clock::VirtualClock::new(start)),
                (false, None) => crate::report::virtual_clock_now(),
            };
            exec(
                &definition,
                input.as_deref(),
                output,
                clock,
                store,
                name,
                mocks,
                state_machine_name,
            )
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

#[allow(clippy::too_many_arguments)] // one per command-line option
fn exec(
    definition: &std::path::Path,
    input: Option<&std::path::Path>,
    output: OutputFormat,
    clock: Arc<dyn clock::Clock>,
    store: Option<PathBuf>,
    name: Option<String>,
    mocks: Option<Mocks>,
    state_machine_name: Option<String>,
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
    let sm = match state_machine_name {
        Some(n) => n,
        None => stem_name(definition),
    };
    // Check first, act later: the mock file and the test case are checked against the
    // definition before the engine (and its store) is opened.
    let handler = match mocks {
        None => None,
        Some(m) => {
            let def = asl::model::Definition::parse(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", definition.display()))?;
            let cfg = mockconfig::MockConfig::load(&m.file)?;
            let case = cfg.test_case(&sm, &m.test_case, &def)?;
            Some(Arc::new(mockconfig::MockHandler::new(case)))
        }
    };
    let engine = engine::Engine::open(engine::EngineConfig { store, clock })?;
    if let Some(h) = handler {
        engine.register_fallback(h);
    }
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

/// The engine's state machine name for a definition file: its name without `.json` /
/// `.asl.json`, other characters than letters, digits, `-` and `_` replaced by `-`.
fn stem_name(definition: &std::path::Path) -> String {
    definition
        .file_stem()
        .and_then(|s| s.to_str())
        .map(|s| {
            s.trim_end_matches(".asl").replace(
                |c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_',
                "-",
            )
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "definition".to_owned())
}
