//! Running the workflows locally: the embedded engine + the simulated fleet, wired like AWS.
//!
//! [`LocalFleet`] plays the parts AWS plays around the state machines: it deploys the four
//! definitions (substituting `${FleetprepFunctionArn}` as DefinitionSubstitutions would),
//! registers [`crate::dispatch`] as the Lambda function, and acts as EventBridge: every Auto
//! Scaling lifecycle event the simulated fleet queues starts a `name-on-launch` or
//! `release-on-terminate` execution with the event as input (`{"detail": ...}`), named after
//! the instance so a duplicate event cannot start a second execution.
//!
//! Lifecycle events only arise from calls into the simulator (scaling, instance refresh steps
//! observed by a poll, hook timeouts), so draining the queue after every handler call and
//! after every explicit scaling is enough: no background task, and runs stay deterministic.
//!
//! The handler reaches the engine through a thread-local set while [`LocalFleet::run_until_idle`]
//! drives (the engine is not `Send`, and the handler must be): drive on a current-thread
//! runtime so handlers run on the driving thread. Events a handler could not start (another
//! thread) wait in the fleet's queue for the next round.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use clock::Clock;
use cloud::sim::{FaultKind, LifecycleEvent, Scenario, SimCloud};
use engine::{Engine, EngineConfig, EngineError, TaskError, handler_fn};
use names::{NamePool, PoolOptions, SqliteNamePool};
use serde_json::{Value, json};
use sysprep::hostname::HostnamePolicy;

use crate::{Context, Settings, WORKFLOWS, definition, dispatch};

/// How to build a local fleet.
#[derive(Clone, Debug)]
pub struct FleetOptions {
    pub scenario: Scenario,
    pub settings: Settings,
    /// Hostname pattern (`{prefix}-{seq:N}`, see `sysprep::hostname`).
    pub hostname_pattern: String,
    pub hostname_prefix: String,
    /// SQLite file for the engine; None keeps executions in memory.
    pub engine_store: Option<std::path::PathBuf>,
    /// Coalesce SSM calls across executions (see [`crate::batch`]).
    pub batching: bool,
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
        }
    }
}

/// Why a local fleet could not be built.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("hostname pattern {pattern:?}: {message}")]
    Pattern { pattern: String, message: String },
    #[error("name pool: {0}")]
    Pool(String),
}

/// The function ARN the local deployment substitutes for `${FleetprepFunctionArn}`.
pub const LOCAL_FUNCTION_ARN: &str = "arn:aws:lambda:local:000000000000:function:fleetprep";

thread_local! {
    static DRIVING: RefCell<Option<Engine>> = const { RefCell::new(None) };
}

/// The engine, the simulated fleet and the handler context, wired together.
#[derive(Clone)]
pub struct LocalFleet {
    pub engine: Engine,
    pub sim: Arc<SimCloud>,
    pub context: Context,
    waiting: Arc<Mutex<Vec<LifecycleEvent>>>,
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
            HostnamePolicy::from_pattern(&pattern, &options.hostname_prefix).map_err(|e| {
                FleetError::Pattern {
                    pattern: pattern.clone(),
                    message: e.to_string(),
                }
            })?;
        let pool = SqliteNamePool::in_memory(policy, clock.clone(), PoolOptions::default())
            .map_err(|e| FleetError::Pool(e.to_string()))?;
        let pool: Arc<dyn NamePool> = Arc::new(pool);
        if let Some(fault) = scenario.any(FaultKind::ConcurrentAllocationConflict) {
            // Another writer (a second fleet, a manual allocation) already holds names.
            for n in 0..fault.preallocated.unwrap_or(3) {
                pool.allocate(&names::AllocationRequest::new(format!("i-foreign{n:010}")))
                    .await
                    .map_err(|e| FleetError::Pool(e.to_string()))?;
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
        context.hanging_actions = scenario
            .faults
            .iter()
            .filter(|f| f.kind == FaultKind::HandlerTimeout)
            .filter_map(|f| f.action.clone())
            .collect();
        Ok(Self::deploy(engine, sim, context)?)
    }

    /// Deploys the workflows into `engine` and registers the handlers.
    pub fn deploy(
        engine: Engine,
        sim: Arc<SimCloud>,
        context: Context,
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
        engine.register(
            LOCAL_FUNCTION_ARN,
            handler_fn(move |payload: Value, _task| {
                let context = context.clone();
                let sim = sim.clone();
                let waiting = waiting.clone();
                async move {
                    let result = dispatch(payload, &context).await;
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
