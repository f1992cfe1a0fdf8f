//! The Lambda bootstrap: builds the clients once per cold start, then serves invocations.
//! Run on `provided.al2023`; see the `fleetprep_lambda` library for what an invocation does.

use std::io::Write;
use std::sync::Arc;

use cloud::aws::sfn::StepFunctions;
use cloud::aws::{AwsCloud, AwsConfig, HostnameStore};
use fleetprep_lambda::{Function, FunctionConfig, FunctionError, StepFunctionsStarter, emf_line};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    // Lambda sends stdout and stderr to CloudWatch Logs alike; stdout carries the EMF lines,
    // so the JSON logs go to stderr and never split an EMF record.
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_current_span(false)
        .without_time()
        .init();

    let config = FunctionConfig::from_env(std::env::vars())?;
    let policy = config.policy()?;
    let clock: Arc<dyn clock::Clock> = Arc::new(clock::SystemClock);
    let aws = AwsConfig::default();
    let cloud = AwsCloud::connect(
        &aws,
        HostnameStore {
            table: config.hostname_table.clone(),
            namespace: config.hostname_pool.clone(),
            policy,
            options: names::PoolOptions {
                lease_ttl: std::time::Duration::from_secs(config.lease_ttl_seconds),
            },
        },
        clock.clone(),
    )
    .await;
    let starter = match (&config.name_on_launch_arn, &config.release_on_terminate_arn) {
        (Some(launch), Some(terminate)) => Some(Arc::new(StepFunctionsStarter {
            client: StepFunctions::connect(&aws).await,
            name_on_launch_arn: launch.clone(),
            release_on_terminate_arn: terminate.clone(),
        })
            as Arc<dyn fleetprep_lambda::ExecutionStarter>),
        _ => None,
    };
    let namespace = config.settings.metric_namespace.clone();
    let function = Function {
        context: workflows::Context {
            // Outcome metrics are EMF lines in the function's log, like the invocation line.
            emf: Arc::new(workflows::metrics::EmfLog::to(|line| {
                let _ = writeln!(std::io::stdout().lock(), "{line}");
            })),
            ..workflows::Context::new(Arc::new(cloud), clock.clone()).with_settings(config.settings)
        },
        starter,
    };
    let function = &function;
    let namespace = namespace.as_str();
    let clock = &clock;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let (result, report) = function.handle(event.payload).await;
        match &result {
            Ok(_) => tracing::info!(action = %report.action, duration_ms = report.duration.as_millis() as u64, "invocation succeeded"),
            Err(error) => tracing::warn!(action = %report.action, error = %error.error, cause = %error.cause, "invocation failed"),
        }
        let line = emf_line(namespace, &report, clock.now());
        // One write per line so concurrent output never interleaves inside an EMF record.
        let _ = writeln!(std::io::stdout().lock(), "{line}");
        result.map_err(FunctionError)
    }))
    .await
}
