//! `fleetprep bench serve`: `fleetprep serve` against moto's server, over HTTP on loopback,
//! driven by the same client code in one run: executions per second from StartExecution to
//! SUCCEEDED (a 10-state Pass chain, a 100-item inline Map) and DescribeExecution latency
//! under concurrent clients. Targets (issue): at least 50x moto's throughput, p99 under 5 ms.
//! Figures only; nothing is asserted.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::bench::{inline_map, pass_chain};
use serde_json::{Value, json};
use serve::client::Client;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Executions per workload against fleetprep serve.
    #[arg(long, default_value_t = 2000)]
    executions: usize,
    /// Executions per workload against moto (far slower; at most 8: see `MOTO_REGIONS`).
    #[arg(long, default_value_t = 8)]
    moto_executions: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// DescribeExecution calls per client for the latency figures.
    #[arg(long, default_value_t = 500)]
    describes: usize,
    /// moto's serialized server script; moto is skipped when it or moto is missing.
    #[arg(long, default_value = "scripts/moto-server.py")]
    moto_server: PathBuf,
    /// Skip moto.
    #[arg(long)]
    no_moto: bool,
}

struct Figures {
    chain_per_s: f64,
    map_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn create(c: &Client, name: &str, def: &Value) -> anyhow::Result<String> {
    let r = c
        .call(
            "CreateStateMachine",
            &json!({"name": name, "definition": def.to_string(),
                    "roleArn": "arn:aws:iam::123456789012:role/bench"}),
        )
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(r["stateMachineArn"].as_str().unwrap_or_default().to_owned())
}

/// Describes until the execution is no longer RUNNING; retries an error a few times (moto's
/// server can answer 500 to a Describe of a running execution).
#[allow(clippy::disallowed_methods)] // real-time polling against a real server
async fn wait_done(c: &Client, arn: &str) -> anyhow::Result<String> {
    let mut errors = 0;
    loop {
        match c
            .call("DescribeExecution", &json!({"executionArn": arn}))
            .await
        {
            Ok(d) => {
                let status = d["status"].as_str().unwrap_or_default().to_owned();
                if status != "RUNNING" {
                    return Ok(status);
                }
            }
            Err(e) => {
                errors += 1;
                if errors > 20 {
                    anyhow::bail!(e);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Executions per second from StartExecution to a final state, `clients` at a time.
#[allow(clippy::disallowed_methods)] // benchmarks measure elapsed real time
async fn throughput(
    slots: &[(Client, String)],
    input: &Value,
    n: usize,
    clients: usize,
) -> anyhow::Result<(f64, (Client, String))> {
    let next = Arc::new(AtomicUsize::new(0));
    let input = input.to_string();
    let slots = Arc::new(slots.to_vec());
    let t = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..clients.min(n) {
        let (slots, input, next) = (slots.clone(), input.clone(), next.clone());
        workers.spawn(async move {
            let mut last = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let (c, arn) = &slots[i % slots.len()];
                // Named: moto's server names every unnamed execution "None" (then collides).
                let ex = c
                    .call(
                        "StartExecution",
                        &json!({"stateMachineArn": arn, "input": input, "name": format!("e{i}")}),
                    )
                    .await
                    .map_err(anyhow::Error::msg)?;
                let ex = ex["executionArn"].as_str().unwrap_or_default().to_owned();
                let status = wait_done(c, &ex).await?;
                anyhow::ensure!(status == "SUCCEEDED", "{ex} ended {status}");
                last = Some((c.clone(), ex));
            }
            anyhow::Ok(last)
        });
    }
    let mut last = None;
    while let Some(r) = workers.join_next().await {
        if let Some(done) = r?? {
            last = Some(done);
        }
    }
    let last = last.ok_or_else(|| anyhow::anyhow!("no execution ran"))?;
    Ok((n as f64 / t.elapsed().as_secs_f64(), last))
}

/// p50 and p99 of DescribeExecution, `clients` concurrent clients each calling `calls` times.
#[allow(clippy::disallowed_methods)] // benchmarks measure elapsed real time
async fn describe_latency(
    c: &Client,
    arn: &str,
    clients: usize,
    calls: usize,
) -> anyhow::Result<(f64, f64)> {
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (c, arn) = (c.clone(), arn.to_owned());
        workers.spawn(async move {
            let mut times = Vec::with_capacity(calls);
            for _ in 0..calls {
                let t = Instant::now();
                c.call("DescribeExecution", &json!({"executionArn": arn}))
                    .await
                    .map_err(anyhow::Error::msg)?;
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(times)
        });
    }
    let mut all = Vec::new();
    while let Some(r) = workers.join_next().await {
        all.extend(r??);
    }
    all.sort_by(f64::total_cmp);
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Ok((at(0.50), at(0.99)))
}

/// moto's server breaks for good once a second execution starts in a region where one ran
/// (moto 5.2.1: "cannot pickle '_thread.RLock' object" deep-copying the region's backend), so
/// each moto execution gets a region of its own; the state machines are created before the
/// clock starts.
const MOTO_REGIONS: [&str; 16] = [
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-north-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-south-1",
    "ca-central-1",
    "sa-east-1",
];

/// Where executions run: one state machine per region in `regions` (or one in the client's
/// region when `regions` is empty).
async fn slots(
    c: &Client,
    name: &str,
    def: &Value,
    regions: &[&str],
) -> anyhow::Result<Vec<(Client, String)>> {
    if regions.is_empty() {
        return Ok(vec![(c.clone(), create(c, name, def).await?)]);
    }
    let mut out = Vec::new();
    for r in regions {
        let rc = c.in_region(r);
        let arn = create(&rc, name, def).await?;
        out.push((rc, arn));
    }
    Ok(out)
}

async fn measure(
    c: &Client,
    tag: &str,
    executions: usize,
    clients: usize,
    describes: usize,
    one_region_per_execution: bool,
) -> anyhow::Result<Figures> {
    let (chain_regions, map_regions): (&[&str], &[&str]) = if one_region_per_execution {
        anyhow::ensure!(
            2 * executions <= MOTO_REGIONS.len(),
            "moto runs one execution per region: at most {} executions per workload",
            MOTO_REGIONS.len() / 2
        );
        (
            &MOTO_REGIONS[..executions],
            &MOTO_REGIONS[executions..2 * executions],
        )
    } else {
        (&[], &[])
    };
    let chain = slots(
        c,
        &format!("bench-chain-{tag}"),
        &pass_chain(10),
        chain_regions,
    )
    .await?;
    let map = slots(c, &format!("bench-map-{tag}"), &inline_map(), map_regions).await?;
    let (chain_per_s, (last_client, last)) =
        throughput(&chain, &json!({"n": 1}), executions, clients).await?;
    let items: Vec<usize> = (0..100).collect();
    let (map_per_s, _) = throughput(&map, &json!({"items": items}), executions, clients).await?;
    let (p50_ms, p99_ms) = describe_latency(&last_client, &last, clients, describes).await?;
    Ok(Figures {
        chain_per_s,
        map_per_s,
        p50_ms,
        p99_ms,
    })
}

fn print(who: &str, f: &Figures) {
    println!(
        "{who:<16} pass chain (10 states): {:>9.1} executions/s   map (100 items): {:>9.1} executions/s   DescribeExecution p50 {:>7.2} ms  p99 {:>7.2} ms",
        f.chain_per_s, f.map_per_s, f.p50_ms, f.p99_ms
    );
}

/// moto's server (scripts/moto-server.py) on a free port with Step Functions execution on;
/// `None` (after saying why) when it cannot run.
#[allow(clippy::disallowed_methods)] // waits for a real process to listen
async fn start_moto(script: &std::path::Path) -> Option<(std::process::Child, Client)> {
    if !script.exists() {
        println!(
            "moto: skipped ({} not found; run from the repository root or pass --moto-server)",
            script.display()
        );
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .ok()?
        .port();
    let child = std::process::Command::new("python3")
        .arg(script)
        .args(["127.0.0.1", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            println!("moto: skipped (python3 not runnable: {e})");
            return None;
        }
    };
    let client = Client::new(&format!("http://127.0.0.1:{port}"));
    let config = json!({"stepfunctions": {"execute_state_machine": true}});
    for _ in 0..120 {
        if client.post("/moto-api/config", &config).await.is_ok() {
            return Some((child, client));
        }
        if let Ok(Some(status)) = child.try_wait() {
            println!("moto: skipped (its server exited: {status}; is moto[server] installed?)");
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let _ = child.kill();
    println!("moto: skipped (its server did not answer within 30 s)");
    None
}

pub fn run(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let server = serve::Server::start(serve::Config {
            listen: Some("127.0.0.1:0".parse()?),
            ..serve::Config::default()
        })
        .await?;
        let ours = Client::new(&format!("http://{}", server.addr()));
        println!(
            "{} executions per workload on fleetprep serve, {} on moto; {} concurrent clients; {} DescribeExecution calls per client",
            args.executions, args.moto_executions, args.clients, args.describes
        );
        let f = measure(
            &ours,
            "serve",
            args.executions,
            args.clients,
            args.describes,
            false,
        )
        .await?;
        print("fleetprep serve", &f);
        if args.no_moto {
            return anyhow::Ok(ExitCode::SUCCESS);
        }
        let Some((mut moto, client)) = start_moto(&args.moto_server).await else {
            return anyhow::Ok(ExitCode::SUCCESS);
        };
        let m = measure(
            &client,
            "moto",
            args.moto_executions,
            args.clients,
            (args.describes / 10).max(10),
            true,
        )
        .await;
        let _ = moto.kill();
        let _ = moto.wait();
        let m = m?;
        print("moto 5.2", &m);
        println!(
            "fleetprep serve / moto: pass chain {:.0}x, map {:.0}x (target >= 50x); DescribeExecution p99 {:.2} ms (target < 5 ms)",
            f.chain_per_s / m.chain_per_s,
            f.map_per_s / m.map_per_s,
            f.p99_ms
        );
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
