//! The workflows run locally: the embedded engine and the simulated fleet, wired as AWS wires
//! Step Functions, Lambda and EventBridge.
//!
//! [`LocalFleet`] plays the parts AWS plays around the state machines: it deploys the four
//! definitions into an [`engine::Engine`] (substituting `${FleetprepFunctionArn}` with
//! [`LOCAL_FUNCTION_ARN`] as DefinitionSubstitutions would), registers [`workflows::dispatch`]
//! as the Lambda function, and acts as EventBridge: every Auto Scaling lifecycle event the
//! simulated fleet ([`cloud::sim::SimCloud`]) queues starts a `name-on-launch` or
//! `release-on-terminate` execution with the event as input (`{"detail": ...}`), named after
//! the instance so a duplicate event cannot start a second execution.
//!
//! It also plays the Lambda service's failures: a scenario's `handler-timeout` fault makes the
//! function hang for the named action until the function timeout, which the Lambda service
//! reports as `Sandbox.Timedout` ([`FleetOptions::lambda_timeout_seconds`]). This lives here,
//! around the function, so the dispatch that ships in the Lambda has no fault injection.
//!
//! The CLI (`demo`, `bake`, `fleet simulate`) and the tests drive it; the Lambda never links it
//! (nor the engine, SQLite or the simulator it brings).
//!
//! Lifecycle events only arise from calls into the simulator (scaling, instance refresh steps
//! observed by a poll, hook timeouts), so draining the queue after every handler call and
//! after every explicit scaling is enough: no background task, and runs stay deterministic.
//!
//! The engine is `Send + Sync`, but the function registered in it cannot own a handle to it:
//! the engine owns its handlers, and that cycle would keep the engine and its store thread
//! alive forever. So the function reaches the engine through a thread-local that
//! [`LocalFleet::run_until_idle`] sets while it drives: drive on a current-thread runtime so
//! handlers run on the driving thread. Events a handler could not start (another thread) wait
//! in the fleet's queue for the next round.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use localfleet::{FleetOptions, LocalFleet};
//!
//! let clock = Arc::new(clock::VirtualClock::new(std::time::SystemTime::UNIX_EPOCH));
//! let fleet = LocalFleet::simulated(FleetOptions::default(), clock).await.unwrap();
//! let input = workflows::BakeConfig {
//!     image_id: fleet.sim().base_image_id().into(),
//!     ..Default::default()
//! };
//! let arn = fleet.engine().start_execution("bake", Some("doc".into()), input.input()).unwrap();
//! fleet.run_until_idle().await.unwrap();
//! assert_eq!(fleet.engine().describe(&arn).unwrap().status, engine::Status::Succeeded);
//! # });
//! ```

#![warn(missing_docs)]

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use clock::Clock;
use cloud::sim::{FaultKind, LifecycleEvent, Scenario, SimCloud};
use engine::{Engine, EngineConfig, EngineError, TaskError, handler_fn};
use names::{NamePool, PoolOptions, SqliteNamePool};
use serde_json::{Value, json};
use std::time::Duration;
use sysprep::hostname::HostnamePolicy;

use workflows::{Context, HandlerError, Settings, WORKFLOWS, definition, dispatch, errors};

/// How to build a local fleet.
#[derive(Clone, Debug)]
pub struct FleetOptions {
    /// The simulated fleet's seed, timings and faults.
    pub scenario: Scenario,
    /// What the handlers read besides their input (the Lambda's environment on AWS).
    pub settings: Settings,
    /// Hostname pattern (`{prefix}-{seq:N}`, see `sysprep::hostname`).
    pub hostname_pattern: String,
    /// The pattern's `{prefix}`.
    pub hostname_prefix: String,
    /// SQLite file for the engine; None keeps executions in memory.
    pub engine_store: Option<std::path::PathBuf>,
    /// Coalesce SSM calls across executions (see [`workflows::batch`]).
    pub batching: bool,
    /// The function timeout a hanging action (a `handler-timeout` fault) runs into; it must
    /// stay below the Task states' TimeoutSeconds of 120.
    pub lambda_timeout_seconds: u64,
}

impl Default for FleetOptions {
    fn default() -> Self {
        Self {
            scenario: Scenario::default(),
            settings: Settings::default(),
            hostname_pattern: "{prefix}-{seq:4}".into(),
            hostname_prefix: "WEB".into(),
            engine_store: None,
            batching: true,
            lambda_timeout_seconds: 60,
        }
    }
}

/// Why a local fleet could not be built.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The engine could not open its store or deploy a definition.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The hostname pattern is not a valid naming policy.
    // The source is the detail: `{:#}` (as the CLI prints errors) shows it after the colon.
    #[error("hostname pattern {pattern:?}")]
    Pattern {
        /// The pattern as given (or as the `name-pool-exhausted` fault narrowed it).
        pattern: String,
        /// Why the policy rejects it.
        #[source]
        source: sysprep::hostname::PolicyError,
    },
    /// The name pool could not be opened or pre-filled.
    #[error("name pool")]
    Pool(#[from] names::PoolError),
}

/// The function ARN the local deployment substitutes for `${FleetprepFunctionArn}`.
pub const LOCAL_FUNCTION_ARN: &str = "arn:aws:lambda:local:000000000000:function:fleetprep";

thread_local! {
    static DRIVING: RefCell<Option<Engine>> = const { RefCell::new(None) };
}

/// The engine, the simulated fleet and the handler context, wired together. Cheap to clone.
#[derive(Clone)]
pub struct LocalFleet {
    engine: Engine,
    sim: Arc<SimCloud>,
    context: Context,
    waiting: Arc<Mutex<Vec<LifecycleEvent>>>,
}

/// The Lambda function as the engine invokes it: [`dispatch`], except that the actions a
/// `handler-timeout` fault names hang until the function timeout.
struct LocalFunction {
    context: Context,
    hanging_actions: Vec<String>,
    timeout: Duration,
}

impl LocalFunction {
    async fn invoke(&self, payload: Value) -> Result<Value, HandlerError> {
        let action = payload.get("action").and_then(Value::as_str);
        if let Some(action) = action.filter(|a| self.hanging_actions.iter().any(|h| h == a)) {
            // A Lambda that hangs burns its whole function timeout and is then killed by the
            // Lambda service, which reports `Sandbox.Timedout`. On a virtual clock the burnt
            // time is simulated by moving the clock; on a real one it is waited out.
            let clock = &self.context.clock;
            if clock.is_virtual() {
                clock.advance_to(clock.now() + self.timeout);
            } else {
                std::future::pending::<()>().await;
            }
            return Err(HandlerError::new(
                errors::LAMBDA_TIMEOUT,
                format!(
                    "Task timed out after {}.00 seconds (action {action})",
                    self.timeout.as_secs()
                ),
            ));
        }
        dispatch(payload, &self.context).await
    }
}

impl LocalFleet {
    /// Builds the whole local stack on `clock`: the simulated fleet (with the scenario's
    /// faults), an in-memory SQLite name pool, the engine, and the deployed workflows.
    pub async fn simulated(
        options: FleetOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, FleetError> {
        let scenario = options.scenario.clone();
        // NamePoolExhausted: a pool with only `pool_capacity` names ({seq:1} holds 9 or 10).
        let pattern = match scenario.any(FaultKind::NamePoolExhausted) {
            Some(_) => "{prefix}-{seq:1}".to_string(),
            None => options.hostname_pattern.clone(),
        };
        let policy =
            HostnamePolicy::from_pattern(&pattern, &options.hostname_prefix).map_err(|source| {
                FleetError::Pattern {
                    pattern: pattern.clone(),
                    source,
                }
            })?;
        let pool = SqliteNamePool::in_memory(policy, clock.clone(), PoolOptions::default())?;
        let pool: Arc<dyn NamePool> = Arc::new(pool);
        if let Some(fault) = scenario.any(FaultKind::ConcurrentAllocationConflict) {
            // Another writer (a second fleet, a manual allocation) already holds names.
            for n in 0..fault.preallocated.unwrap_or(3) {
                pool.allocate(&names::AllocationRequest::new(format!("i-foreign{n:010}")))
                    .await?;
            }
        }
        let sim = Arc::new(SimCloud::new(clock.clone(), pool, scenario.clone()));
        let engine = Engine::open(EngineConfig {
            store: options.engine_store.clone(),
            clock: clock.clone(),
        })?;
        let mut context = Context::new(sim.clone(), clock).with_settings(options.settings.clone());
        if options.batching {
            context = context.with_batcher();
        }
        let timeout = Duration::from_secs(options.lambda_timeout_seconds);
        Ok(Self::deploy(engine, sim, context, timeout)?)
    }

    /// Deploys the workflows into `engine` and registers the function: [`dispatch`] with
    /// `context`, plus the Lambda faults of the simulated fleet's scenario (a hanging action
    /// runs into `lambda_timeout`).
    pub fn deploy(
        engine: Engine,
        sim: Arc<SimCloud>,
        context: Context,
        lambda_timeout: Duration,
    ) -> Result<Self, EngineError> {
        for name in WORKFLOWS {
            let text = definition(name, LOCAL_FUNCTION_ARN)
                .map_err(|e| EngineError::store(format!("workflow {name}"), e))?;
            engine.create_state_machine(name, &text)?;
        }
        let waiting: Arc<Mutex<Vec<LifecycleEvent>>> = Arc::default();
        let fleet = LocalFleet {
            engine: engine.clone(),
            sim: sim.clone(),
            context: context.clone(),
            waiting: waiting.clone(),
        };
        let function = Arc::new(LocalFunction {
            hanging_actions: sim
                .scenario()
                .faults
                .iter()
                .filter(|f| f.kind == FaultKind::HandlerTimeout)
                .filter_map(|f| f.action.clone())
                .collect(),
            context,
            timeout: lambda_timeout,
        });
        engine.register(
            LOCAL_FUNCTION_ARN,
            handler_fn(move |payload: Value, _task| {
                let function = function.clone();
                let sim = sim.clone();
                let waiting = waiting.clone();
                async move {
                    let result = function.invoke(payload).await;
                    // The call may have made the fleet launch or terminate instances.
                    let events = sim.drain_lifecycle_events();
                    if !events.is_empty() {
                        let started = DRIVING.with(|driving| match driving.borrow().as_ref() {
                            Some(engine) => {
                                start_all(engine, events.clone());
                                true
                            }
                            None => false,
                        });
                        if !started {
                            waiting
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .extend(events);
                        }
                    }
                    result.map_err(|e| TaskError::new(e.error, e.cause))
                }
            }),
        );
        Ok(fleet)
    }

    /// The engine the workflows are deployed in.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The simulated fleet the handlers call.
    pub fn sim(&self) -> &Arc<SimCloud> {
        &self.sim
    }

    /// The handler context the function dispatches with.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// Starts one execution per queued lifecycle event (EventBridge's job on AWS). Returns the
    /// execution ARNs started.
    pub fn pump_lifecycle_events(&self) -> Vec<String> {
        let mut events =
            std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|p| p.into_inner()));
        events.extend(self.sim.drain_lifecycle_events());
        start_all(&self.engine, events)
    }

    /// Drives every execution until nothing can make progress, starting hook executions as
    /// their events arrive.
    pub async fn run_until_idle(&self) -> Result<(), EngineError> {
        DRIVING.with(|driving| *driving.borrow_mut() = Some(self.engine.clone()));
        let result = self.drive().await;
        DRIVING.with(|driving| *driving.borrow_mut() = None);
        result
    }

    async fn drive(&self) -> Result<(), EngineError> {
        loop {
            self.pump_lifecycle_events();
            self.engine.run_until_idle().await?;
            // Anything queued by the last handler calls starts another round.
            if self.pump_lifecycle_events().is_empty() {
                return Ok(());
            }
        }
    }
}

/// EventBridge: one execution per lifecycle event, named after the instance. A burst of
/// events (a scale-out of thousands) starts with one engine commit.
fn start_all(engine: &Engine, events: Vec<LifecycleEvent>) -> Vec<String> {
    let mut requests = Vec::with_capacity(events.len());
    for event in events {
        let (workflow, prefix) = if event.lifecycle_transition == LifecycleEvent::LAUNCHING {
            ("name-on-launch", "launch")
        } else {
            ("release-on-terminate", "terminate")
        };
        let name = format!("{prefix}-{}", event.instance_id);
        let input = json!({
            "version": "0",
            "detail-type": if workflow == "name-on-launch" {
                "EC2 Instance-launch Lifecycle Action"
            } else {
                "EC2 Instance-terminate Lifecycle Action"
            },
            "source": "aws.autoscaling",
            "detail": event.detail(),
        });
        requests.push((workflow.to_string(), Some(name), input));
    }
    let results = match engine.start_executions(requests) {
        Ok(results) => results,
        Err(error) => {
            tracing::error!(%error, "could not start executions");
            return Vec::new();
        }
    };
    let mut started = Vec::new();
    for result in results {
        match result {
            Ok(arn) => started.push(arn),
            // A repeated event for the same instance: the first execution handles it.
            Err(EngineError::ExecutionExists(_)) => {}
            Err(error) => tracing::error!(%error, "could not start execution"),
        }
    }
    started
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;
    use std::time::UNIX_EPOCH;

    use super::*;

    async fn fleet(scenario: &str, pattern: &str) -> Result<LocalFleet, FleetError> {
        let options = FleetOptions {
            scenario: Scenario::from_toml(scenario, "scenario.toml").expect("scenario"),
            hostname_pattern: pattern.into(),
            ..FleetOptions::default()
        };
        LocalFleet::simulated(options, Arc::new(clock::VirtualClock::new(UNIX_EPOCH))).await
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_pool_error_keeps_its_source() {
        // More foreign leases than `{seq:1}` holds: pre-filling the pool runs out of names.
        let scenario = "[[fault]]\nkind = \"concurrent-allocation-conflict\"\npreallocated = 12\n";
        let Err(error) = fleet(scenario, "{prefix}-{seq:1}").await else {
            panic!("a pool of at most ten names took twelve leases");
        };
        assert!(matches!(error, FleetError::Pool(_)), "{error:?}");
        let source = error.source().expect("the pool's own error");
        assert!(
            source.downcast_ref::<names::PoolError>().is_some(),
            "{source:?}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_pattern_error_names_the_pattern_and_keeps_its_source() {
        let Err(error) = fleet("", "{prefix}-{bogus}").await else {
            panic!("an unknown placeholder was accepted");
        };
        assert!(error.to_string().contains("{prefix}-{bogus}"), "{error}");
        let source = error.source().expect("the policy's own error");
        assert!(
            source
                .downcast_ref::<sysprep::hostname::PolicyError>()
                .is_some(),
            "{source:?}"
        );
    }
}
