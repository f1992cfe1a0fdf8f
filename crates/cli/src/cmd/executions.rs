//! `fleetprep executions list|show|history ID`: executions stored by the embedded engine, or
//! (`--engine aws`) those of the deployed state machines, printed the same way.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use engine::{Engine, EngineConfig, ExecutionSummary, Status};
use serde_json::{Value, json};

use crate::cmd::aws_engine::{self, AwsArgs};
use crate::output::OutputFormat;
use crate::report;
use crate::session::{self, EngineKind};

#[derive(clap::Args, Clone)]
pub struct Common {
    /// Engine store (default: $FLEETPREP_STORE, else fleetprep/engine.sqlite3 in the user's
    /// data directory, e.g. ~/.local/share on Linux).
    #[arg(long, global = true)]
    pub store: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text, global = true)]
    pub output: OutputFormat,
    /// Read executions from the embedded engine's store or from AWS Step Functions.
    #[arg(long, value_enum, default_value_t = EngineKind::Local, global = true)]
    pub engine: EngineKind,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Lists executions, newest last.
    List {
        /// Only executions with this status (RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED).
        #[arg(long)]
        status: Option<String>,
        /// Only executions of this workflow.
        #[arg(long)]
        workflow: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Describes one execution (ARN or name).
    Show {
        id: String,
        #[command(flatten)]
        common: Common,
    },
    /// Prints an execution's history (GetExecutionHistory shape).
    History {
        id: String,
        #[command(flatten)]
        common: Common,
    },
}

fn open(common: &Common) -> anyhow::Result<Engine> {
    open_store(common.store.clone())
}

/// A runtime for the `--engine aws` calls.
fn aws_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// The executions (of `workflow`, else of every workflow) with `status`, oldest first.
fn list(
    common: &Common,
    status: Option<Status>,
    workflow: Option<&str>,
) -> anyhow::Result<Vec<ExecutionSummary>> {
    let keep = |e: &ExecutionSummary| workflow.is_none_or(|w| e.state_machine == w);
    if common.engine == EngineKind::Aws {
        let names = match workflow {
            Some(w) => vec![w],
            None => workflows::WORKFLOWS.to_vec(),
        };
        return aws_runtime()?.block_on(aws_engine::list_executions(&common.aws, &names, status));
    }
    Ok(open(common)?
        .list_executions(status)?
        .into_iter()
        .filter(keep)
        .collect())
}

/// The execution `id` (an ARN, or a name unique among the listed executions).
fn find_execution(common: &Common, id: &str) -> anyhow::Result<ExecutionSummary> {
    if common.engine != EngineKind::Aws {
        return find(&open(common)?, id);
    }
    let runtime = aws_runtime()?;
    if id.starts_with("arn:") {
        return runtime.block_on(aws_engine::describe(&common.aws, id));
    }
    let listed = runtime.block_on(aws_engine::list_executions(
        &common.aws,
        &workflows::WORKFLOWS,
        None,
    ))?;
    let found = only_match(listed, id)?;
    runtime.block_on(aws_engine::describe(&common.aws, &found.execution_arn))
}

fn open_store(store: Option<PathBuf>) -> anyhow::Result<Engine> {
    let path = session::store_path(store);
    if !path.exists() {
        anyhow::bail!(
            "no execution store at {} (run `fleetprep demo` or `fleetprep bake` first, or pass --store)",
            path.display()
        );
    }
    Ok(Engine::open(EngineConfig {
        store: Some(path),
        clock: Arc::new(clock::SystemClock),
    })?)
}

fn find(engine: &Engine, id: &str) -> anyhow::Result<ExecutionSummary> {
    if let Ok(found) = engine.describe(id) {
        return Ok(found);
    }
    only_match(engine.list_executions(None)?, id)
}

/// The one execution of `executions` named `id` (or whose ARN ends in `:id`).
fn only_match(executions: Vec<ExecutionSummary>, id: &str) -> anyhow::Result<ExecutionSummary> {
    let matches: Vec<ExecutionSummary> = executions
        .into_iter()
        .filter(|e| e.name == id || e.execution_arn.ends_with(&format!(":{id}")))
        .collect();
    match matches.len() {
        1 => Ok(matches.into_iter().next().expect("one match")),
        0 => {
            anyhow::bail!("no execution named or with ARN {id:?}; see `fleetprep executions list`")
        }
        n => anyhow::bail!("{n} executions are named {id:?}; pass the full ARN"),
    }
}

fn describe_json(e: &ExecutionSummary) -> Value {
    json!({
        "executionArn": e.execution_arn,
        "name": e.name,
        "stateMachine": e.state_machine,
        "status": e.status.as_str(),
        "startDate": asl::history::format_timestamp(e.start_date),
        "stopDate": e.stop_date.map(asl::history::format_timestamp),
        "input": e.input,
        "output": e.output,
        "error": e.error,
        "cause": e.cause,
    })
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::List {
            status,
            workflow,
            common,
        } => {
            let status = match status {
                Some(s) => Some(Status::parse(&s.to_ascii_uppercase()).ok_or_else(|| {
                    anyhow::anyhow!(
                        "--status {s:?}: expected RUNNING, SUCCEEDED, FAILED, TIMED_OUT or ABORTED"
                    )
                })?),
                None => None,
            };
            let executions = list(&common, status, workflow.as_deref())?;
            if common.output == OutputFormat::Json {
                let list: Vec<Value> = executions.iter().map(describe_json).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"executions": list}))?
                );
            } else {
                let rows: Vec<Vec<String>> = executions
                    .iter()
                    .map(|e| {
                        vec![
                            e.name.clone(),
                            e.state_machine.clone(),
                            e.status.as_str().to_string(),
                            asl::history::format_timestamp(e.start_date),
                            e.error.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    report::table(&["NAME", "WORKFLOW", "STATUS", "STARTED", "ERROR"], &rows)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Show { id, common } => {
            let e = find_execution(&common, &id)?;
            if common.output == OutputFormat::Json {
                println!("{}", serde_json::to_string_pretty(&describe_json(&e))?);
            } else {
                println!("execution  {}", e.execution_arn);
                println!("workflow   {}", e.state_machine);
                println!("status     {}", e.status.as_str());
                println!(
                    "started    {}",
                    asl::history::format_timestamp(e.start_date)
                );
                if let Some(stop) = e.stop_date {
                    println!("stopped    {}", asl::history::format_timestamp(stop));
                }
                if let Some(error) = &e.error {
                    println!("error      {error}");
                }
                if let Some(cause) = &e.cause {
                    println!("cause      {cause}");
                }
                if let Some(output) = &e.output {
                    println!("output     {output}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::History { id, common } => {
            let events = if common.engine == EngineKind::Aws {
                let arn = if id.starts_with("arn:") {
                    id
                } else {
                    find_execution(&common, &id)?.execution_arn
                };
                aws_runtime()?.block_on(aws_engine::history(&common.aws, &arn))?
            } else {
                let engine = open(&common)?;
                let e = find(&engine, &id)?;
                engine.history(&e.execution_arn)?
            };
            if common.output == OutputFormat::Json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"events": events}))?
                );
            } else {
                let rows: Vec<Vec<String>> = events
                    .iter()
                    .map(|ev| {
                        vec![
                            ev.id.to_string(),
                            ev.timestamp.clone(),
                            ev.event_type.to_string(),
                            ev.state_name().unwrap_or_default().to_string(),
                            ev.error_cause()
                                .and_then(|(e, _)| e.map(str::to_string))
                                .unwrap_or_default(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    report::table(&["ID", "TIMESTAMP", "TYPE", "STATE", "ERROR"], &rows)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
