//! `fleetprep bench …`: benchmarks that print figures (never timed assertions).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use asl::interp::{Execution, ExecutionInfo, Options, Status};
use asl::model::Definition;
use serde_json::{Value, json};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Embedded ASL engine: Pass-chain transitions/s (decider with and without history, and
    /// through the SQLite engine), a 10,000-item inline Map, peak memory, and moto's Step
    /// Functions engine on the same definitions when moto is installed.
    Engine(EngineArgs),
    /// Simulated fleet: N instances launched at once through the lifecycle hooks, for each of
    /// `--sizes` (default 1,000, 10,000 and 100,000) in a child process of its own: wall time,
    /// peak memory, time per instance and its growth from one size to the next, SSM calls per
    /// instance (see `fleet simulate`).
    Fleet(crate::cmd::fleet::BenchArgs),
    /// The Lambda `bootstrap`: cold-start init time against a local fake Runtime API and the
    /// stripped binary size, with process creation (`true`) as the baseline in the same run.
    /// Targets: init < 30 ms, stripped size < 20 MB. `scripts/bench-lambda` builds the release
    /// bootstrap first.
    Lambda(LambdaArgs),
    /// `fleetprep serve` against moto's server over loopback HTTP: executions/s (10-state
    /// Pass chain, 100-item Map) and DescribeExecution p50/p99 under 16 concurrent clients.
    /// Targets: >= 50x moto, p99 < 5 ms. Run from the repository root (moto's script).
    Serve(crate::cmd::bench_serve::ServeArgs),
}

#[derive(clap::Args)]
pub struct EngineArgs {
    /// Pass states in the chain.
    #[arg(long, default_value_t = 1000)]
    chain: usize,
    /// Items in the inline Map.
    #[arg(long, default_value_t = 10_000)]
    items: usize,
    /// Seconds to spend per decider measurement.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Skip the moto comparison even if moto is installed.
    #[arg(long)]
    no_moto: bool,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Engine(args) => engine_bench(&args),
        Command::Fleet(args) => crate::cmd::fleet::bench(args),
        Command::Lambda(args) => lambda_bench(&args),
        Command::Serve(args) => crate::cmd::bench_serve::run(&args),
    }
}

// Benchmarks measure elapsed real time; this is the sanctioned exception to the Clock rule.
#[allow(clippy::disallowed_methods)]
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = std::time::Instant::now();
    let r = f();
    (r, t.elapsed())
}

/// A chain of `n` Pass states (the engine and serve benchmarks both run it).
pub(crate) fn pass_chain(n: usize) -> Value {
    let mut states = serde_json::Map::new();
    for i in 0..n {
        let mut s = json!({"Type": "Pass"});
        if i + 1 == n {
            s["End"] = json!(true);
        } else {
            s["Next"] = json!(format!("P{}", i + 1));
        }
        states.insert(format!("P{i}"), s);
    }
    json!({"StartAt": "P0", "States": states})
}

/// An inline Map of one Pass state over `$.items`.
pub(crate) fn inline_map() -> Value {
    json!({"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.items",
        "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "Item",
            "States": {"Item": {"Type": "Pass", "Parameters": {"n.$": "$"}, "End": true}}},
        "End": true}}})
}

fn start_now() -> std::time::SystemTime {
    std::time::UNIX_EPOCH + Duration::from_secs(1_704_067_200)
}

/// Runs the decider on `def` repeatedly for about `seconds`; returns runs and elapsed time.
fn decider_rate(
    def: &Definition,
    input: &Value,
    record: bool,
    seconds: f64,
) -> anyhow::Result<(u64, Duration)> {
    let opts = Options {
        record_history: record,
        history_limit: i64::MAX,
    };
    let mut runs = 0u64;
    let mut total = Duration::ZERO;
    while total.as_secs_f64() < seconds || runs == 0 {
        let (status, d) = timed(|| {
            let (ex, step) = Execution::start(
                def,
                ExecutionInfo::local("bench", "run"),
                input.clone(),
                7,
                start_now(),
                opts,
            );
            std::hint::black_box(step);
            ex.status
        });
        anyhow::ensure!(
            status == Status::Succeeded,
            "benchmark run ended {status:?}"
        );
        total += d;
        runs += 1;
    }
    Ok((runs, total))
}

/// CPU time this process has used so far, user plus system, every thread (from
/// `/proc/self/stat`, in clock ticks of 1/100 s as Linux reports them to user space). On a
/// shared machine it varies less than wall time.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces; the fields after it are plain numbers.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the state (field 3).
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// This process's peak resident set size (VmHWM), in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
}

fn engine_bench(args: &EngineArgs) -> anyhow::Result<ExitCode> {
    let chain = pass_chain(args.chain);
    let chain_def = Definition::from_value(chain.clone())?;
    let input = json!({"payload": "x", "n": 1});
    println!("engine benchmark (single thread; figures, not assertions)");

    // Baseline in the same run: cloning the state input once per transition, the least work
    // any interpreter that keeps input and output apart must do.
    let transitions = args.chain as u64;
    let (clones, d_base) = timed(|| {
        let mut v = input.clone();
        for _ in 0..transitions * 200 {
            v = std::hint::black_box(v.clone());
        }
        v
    });
    std::hint::black_box(clones);
    let base_rate = (transitions * 200) as f64 / d_base.as_secs_f64();

    let (runs, d) = decider_rate(&chain_def, &input, false, args.seconds)?;
    let no_hist = (runs * transitions) as f64 / d.as_secs_f64();
    let (runs, d) = decider_rate(&chain_def, &input, true, args.seconds)?;
    let with_hist = (runs * transitions) as f64 / d.as_secs_f64();
    println!(
        "pass chain ({} states), decider, no history: {:>12.0} transitions/s ({:.2}x of the clone baseline {:.0}/s)",
        args.chain,
        no_hist,
        no_hist / base_rate,
        base_rate
    );
    println!(
        "pass chain ({} states), decider, history:    {:>12.0} transitions/s",
        args.chain, with_hist
    );

    // Through the engine: SQLite (in-memory) commit of history, one execution.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let engine = engine::Engine::open(engine::EngineConfig::in_memory_virtual())?;
    engine.create_state_machine("chain", &chain.to_string())?;
    let execs = 5u64;
    let (_, d) = timed(|| -> anyhow::Result<()> {
        for _ in 0..execs {
            let arn = engine.start_execution("chain", None, input.clone())?;
            rt.block_on(engine.run_until_complete(&arn))?;
        }
        Ok(())
    });
    let engine_rate = (execs * transitions) as f64 / d.as_secs_f64();
    println!(
        "pass chain ({} states), engine + SQLite:     {:>12.0} transitions/s",
        args.chain, engine_rate
    );

    // The inline Map.
    let map_def = Definition::from_value(inline_map())?;
    let items: Vec<Value> = (0..args.items as u64).map(Value::from).collect();
    let map_input = json!({"items": items});
    let (runs, d) = decider_rate(&map_def, &map_input, true, 0.0)?;
    let per_run = d.as_secs_f64() / runs as f64;
    println!(
        "inline Map of {} Pass items, decider with history: {:.1} ms ({:.0} items/s)",
        args.items,
        per_run * 1000.0,
        args.items as f64 / per_run
    );
    match peak_rss_kib() {
        Some(k) => println!("peak memory (VmHWM): {:.1} MiB", k as f64 / 1024.0),
        None => println!("peak memory: unavailable (no /proc/self/status)"),
    }

    if !args.no_moto {
        moto_compare(args, with_hist, engine_rate, per_run)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The same definitions through moto's Step Functions engine (in-process `mock_aws` with
/// `execute_state_machine` enabled), when moto and boto3 import.
const MOTO_SCRIPT: &str = r#"
import json, sys, time
try:
    import boto3
    from moto import mock_aws
except Exception as e:
    print(json.dumps({"error": "moto/boto3 not importable: %s" % e})); sys.exit(0)
chain, items = int(sys.argv[1]), int(sys.argv[2])
def pass_chain(n):
    st = {}
    for i in range(n):
        s = {"Type": "Pass"}
        if i + 1 == n: s["End"] = True
        else: s["Next"] = "P%d" % (i + 1)
        st["P%d" % i] = s
    return {"StartAt": "P0", "States": st}
mapdef = {"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.items",
    "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "Item",
      "States": {"Item": {"Type": "Pass", "Parameters": {"n.$": "$"}, "End": True}}}, "End": True}}}
# One mock per execution: moto cannot start a second execution while the first one's
# worker state is attached to the backend (it deep-copies it).
@mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
def run_one(key, d, inp):
    c = boto3.client("stepfunctions", region_name="us-east-1")
    role = "arn:aws:iam::123456789012:role/x"
    sm = c.create_state_machine(name=key, definition=json.dumps(d), roleArn=role)["stateMachineArn"]
    t = time.perf_counter()
    ex = c.start_execution(stateMachineArn=sm, input=json.dumps(inp))["executionArn"]
    while True:
        s = c.describe_execution(executionArn=ex)["status"]
        if s != "RUNNING": break
        time.sleep(0.005)
    return {"seconds": time.perf_counter() - t, "status": s}
out = {"chain": run_one("chain", pass_chain(chain), {"payload": "x", "n": 1}),
       "map": run_one("map", mapdef, {"items": list(range(items))})}
print(json.dumps(out))
"#;

fn moto_compare(
    args: &EngineArgs,
    our_chain_rate: f64,
    our_engine_rate: f64,
    our_map_secs: f64,
) -> anyhow::Result<()> {
    // moto is far slower: smaller sizes keep the comparison short; rates are per transition.
    let chain = args.chain.min(200);
    let items = args.items.min(500);
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(MOTO_SCRIPT)
        .arg(chain.to_string())
        .arg(items.to_string())
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            println!("moto: skipped (python3 not runnable: {e})");
            return Ok(());
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = match text
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
    {
        Some(v) => v,
        None => {
            println!(
                "moto: skipped (no result; stderr: {})",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
            return Ok(());
        }
    };
    if let Some(e) = v.get("error") {
        println!("moto: skipped ({})", e.as_str().unwrap_or("unknown"));
        return Ok(());
    }
    let chain_secs = v["chain"]["seconds"].as_f64().unwrap_or(f64::NAN);
    let moto_rate = chain as f64 / chain_secs;
    println!(
        "moto Step Functions, pass chain ({chain} states): {:>10.0} transitions/s ({}) -> fleetprep decider is {:.0}x faster",
        moto_rate,
        v["chain"]["status"].as_str().unwrap_or("?"),
        our_chain_rate / moto_rate
    );
    println!(
        "  (fleetprep engine, durable in SQLite, vs moto on the pass chain: {:.0}x)",
        our_engine_rate / moto_rate
    );
    let map_secs = v["map"]["seconds"].as_f64().unwrap_or(f64::NAN);
    let moto_items = items as f64 / map_secs;
    let ours_items = args.items as f64 / our_map_secs;
    println!(
        "moto Step Functions, inline Map of {items} items: {:>10.0} items/s ({}) -> fleetprep decider is {:.0}x faster",
        moto_items,
        v["map"]["status"].as_str().unwrap_or("?"),
        ours_items / moto_items
    );
    Ok(())
}

// ==================================================================== bench lambda

#[derive(clap::Args)]
pub struct LambdaArgs {
    /// The bootstrap binary to measure; a stripped copy is measured, the file is left alone.
    /// Default: the `lambda` profile's build (what ships), else the release build, under
    /// `$CARGO_TARGET_DIR` or `target`.
    #[arg(long)]
    bootstrap: Option<std::path::PathBuf>,
    /// Measured cold starts (after one unmeasured warm-up start).
    #[arg(long, default_value_t = 15)]
    runs: usize,
    #[arg(long, value_enum, default_value_t = crate::output::OutputFormat::Text)]
    output: crate::output::OutputFormat,
}

/// Issue 5's targets for the function; sizes in decimal megabytes (the stricter reading).
const LAMBDA_INIT_TARGET_MS: f64 = 30.0;
const LAMBDA_SIZE_TARGET_MB: f64 = 20.0;
const MB: f64 = 1_000_000.0;

fn median_ms(samples: &[Duration]) -> f64 {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    match ms.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => ms[n / 2],
        n => (ms[n / 2 - 1] + ms[n / 2]) / 2.0,
    }
}

fn extreme_ms(samples: &[Duration], max: bool) -> f64 {
    let it = samples.iter().map(|d| d.as_secs_f64() * 1000.0);
    if max {
        it.fold(f64::NAN, f64::max)
    } else {
        it.fold(f64::NAN, f64::min)
    }
}

fn lambda_bench(args: &LambdaArgs) -> anyhow::Result<ExitCode> {
    use fleetprep_lambda::coldstart;

    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    let built = match &args.bootstrap {
        Some(path) => path.clone(),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| "target".into());
            let shipped = target.join("lambda").join("bootstrap");
            if shipped.is_file() {
                shipped
            } else {
                target.join("release").join("bootstrap")
            }
        }
    };
    anyhow::ensure!(
        built.is_file(),
        "no bootstrap binary at {}; build it with `cargo build --profile lambda -p lambda --bin \
         bootstrap` (scripts/bench-lambda does) or pass --bootstrap PATH",
        built.display()
    );
    let workdir = tempfile::tempdir().context("temporary directory for the stripped copy")?;
    let stripped = workdir.path().join("bootstrap");
    std::fs::copy(&built, &stripped)
        .with_context(|| format!("copying {} to strip it", built.display()))?;
    let unstripped_bytes = std::fs::metadata(&built)?.len();
    let strip = std::process::Command::new("strip")
        .arg(&stripped)
        .output()
        .context("running `strip` (binutils) on the copy of the bootstrap")?;
    anyhow::ensure!(
        strip.status.success(),
        "strip {}: {}",
        stripped.display(),
        String::from_utf8_lossy(&strip.stderr)
    );
    let stripped_bytes = std::fs::metadata(&stripped)?.len();
    let size_mb = stripped_bytes as f64 / MB;

    let timeout = Duration::from_secs(30);
    let probe = coldstart::probe_event();
    let measure = || -> anyhow::Result<coldstart::ColdStart> {
        let run = coldstart::cold_start(&stripped, &probe, timeout)?;
        coldstart::check_probe(&run).map_err(|e| anyhow::anyhow!("{}: {e}", built.display()))?;
        Ok(run)
    };
    // Warm the page cache, as on a Lambda host that has run the function before.
    measure()?;
    let mut inits = Vec::with_capacity(args.runs);
    let mut firsts = Vec::with_capacity(args.runs);
    let mut baselines = Vec::with_capacity(args.runs);
    // Interleaved, so drift in machine load affects both series alike.
    for _ in 0..args.runs {
        let run = measure()?;
        inits.push(run.init);
        firsts.push(run.first_invocation);
        baselines.push(coldstart::baseline().context("spawning `true` for the baseline")?);
    }
    let init_ms = median_ms(&inits);
    let base_ms = median_ms(&baselines);
    let first_ms = median_ms(&firsts);
    let ratio = init_ms / base_ms;
    let result = json!({
        "bootstrap": built.display().to_string(),
        "runs": args.runs,
        "init_ms_median": round2(init_ms),
        "init_ms_min": round2(extreme_ms(&inits, false)),
        "init_ms_max": round2(extreme_ms(&inits, true)),
        "first_invocation_ms_median": round2(first_ms),
        "baseline_process_ms_median": round2(base_ms),
        "init_vs_baseline": round2(ratio),
        "init_target_ms": LAMBDA_INIT_TARGET_MS,
        "init_within_target": init_ms < LAMBDA_INIT_TARGET_MS,
        "unstripped_bytes": unstripped_bytes,
        "stripped_bytes": stripped_bytes,
        "stripped_size_mb": round2(size_mb),
        "size_target_mb": LAMBDA_SIZE_TARGET_MB,
        "size_within_target": size_mb < LAMBDA_SIZE_TARGET_MB,
    });
    if args.output == crate::output::OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&result)?);
        return Ok(ExitCode::SUCCESS);
    }
    let verdict = |ok: bool| if ok { "within target" } else { "MISSES target" };
    println!(
        "lambda bootstrap ({}), {} cold starts against a local fake Runtime API, each serving \
         one checked naming_settings invocation",
        built.display(),
        args.runs
    );
    println!(
        "  init (start -> first /invocation/next): median {init_ms:.2} ms (min {:.2}, max {:.2}); \
         target < {LAMBDA_INIT_TARGET_MS:.0} ms: {}",
        extreme_ms(&inits, false),
        extreme_ms(&inits, true),
        verdict(init_ms < LAMBDA_INIT_TARGET_MS)
    );
    println!(
        "  baseline (spawn + reap `true`):          median {base_ms:.2} ms -> init is {ratio:.1}x \
         the baseline"
    );
    println!("  start -> first invocation answered:      median {first_ms:.2} ms");
    println!(
        "  binary: {:.2} MB as built, {size_mb:.2} MB stripped ({stripped_bytes} bytes); target \
         < {LAMBDA_SIZE_TARGET_MB:.0} MB: {}",
        unstripped_bytes as f64 / MB,
        verdict(size_mb < LAMBDA_SIZE_TARGET_MB)
    );
    Ok(ExitCode::SUCCESS)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
