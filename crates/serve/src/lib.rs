//! `fleetprep serve`: the embedded engine as a Step Functions endpoint that the AWS CLI, the
//! AWS SDKs and fleetprep's own `--engine aws` talk to unchanged.
//!
//! - `protocol`: the JSON 1.0 wire (targets, errors, timestamps, names, pages).
//! - `api`: the operations, on [`engine::Engine`].
//! - `tasks`: who answers Task states (mock files, activities, callbacks, Lambda).
//! - `client`: a minimal JSON 1.0 client (benchmarks).
//! - `test_state`: TestState, on an engine of its own per call.
//! - `mockconfig`: the Step Functions Local mock file format (shared with `states exec`).
//!
//! Threads: the engine's driver runs forever on a thread of its own (its own single-threaded
//! runtime), so HTTP requests, and the long polls among them, never wait behind a decider
//! round, and a round never waits behind a request. Requests are served concurrently on the
//! caller's runtime, one task per connection.
//!
//! Besides the Step Functions API, one admin route (outside it, under `/_fleetprep/`):
//! `POST /_fleetprep/clock/advance` with `{"seconds": N}` moves a virtual clock forward
//! (`--virtual-clock`) and answers `{"now": "<RFC 3339>"}`; `GET /_fleetprep/clock` reads it.
//!
//! Not here: HTTP-free execution semantics (crate `engine`), the ASL language (crate `asl`).

pub mod api;
pub mod client;
pub mod mockconfig;
pub mod protocol;
pub mod tasks;
pub mod test_state;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};

use crate::api::Api;
use crate::protocol::{ApiError, TARGET_PREFIX, region_of};
use crate::tasks::{Router, Tasks};

/// The largest request body read: a 1 MiB definition (the Step Functions quota "Maximum
/// request size: 1 MB per request") JSON-escaped inside the request, with room to spare.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// How to run the server.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Address to listen on; port 0 picks a free one.
    pub listen: Option<SocketAddr>,
    /// The engine's SQLite file; `None` keeps everything in memory.
    pub store: Option<PathBuf>,
    /// Run on a virtual clock (starting now) instead of the system clock.
    pub virtual_clock: bool,
    /// The account in ARNs (default [`protocol::DEFAULT_ACCOUNT`]).
    pub account: Option<String>,
    /// A Step Functions Local mock configuration file.
    pub mock_config: Option<PathBuf>,
    /// A Lambda Invoke API endpoint for Lambda tasks.
    pub lambda_endpoint: Option<String>,
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    api: Arc<Api>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Engine(#[from] engine::EngineError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
}

impl Server {
    /// Opens the engine (resuming every running execution of `--store`), starts its driver
    /// and listens. Must be called inside a multi-threaded tokio runtime; the server runs
    /// until the runtime ends.
    pub async fn start(config: Config) -> Result<Server, ServeError> {
        Self::start_with(config, |_| {}).await
    }

    /// [`Server::start`], with `setup` registering extra task handlers on the engine before
    /// any execution resumes (`--fleet simulated`).
    pub async fn start_with(
        config: Config,
        setup: impl FnOnce(&engine::Engine),
    ) -> Result<Server, ServeError> {
        let mocks = match &config.mock_config {
            Some(path) => Some(
                mockconfig::MockConfig::load(path)
                    .map_err(|e| ServeError::Config(e.to_string()))?,
            ),
            None => None,
        };
        let tasks = Arc::new(
            Tasks::new(mocks, config.lambda_endpoint.as_deref()).map_err(ServeError::Config)?,
        );
        let clock: Arc<dyn clock::Clock> = if config.virtual_clock {
            Arc::new(clock::VirtualClock::new(clock::Clock::now(
                &clock::SystemClock,
            )))
        } else {
            Arc::new(clock::SystemClock)
        };
        let engine = engine::Engine::open(engine::EngineConfig {
            store: config.store.clone(),
            clock,
        })?;
        engine.register_fallback(Arc::new(Router(tasks.clone())));
        setup(&engine);
        tasks.attach(engine.clone());
        let account = config
            .account
            .as_deref()
            .unwrap_or(protocol::DEFAULT_ACCOUNT);
        let api = Arc::new(
            Api::new(engine.clone(), account, tasks).map_err(|e| ServeError::Config(e.message))?,
        );
        spawn_driver(engine)?;
        let addr = config
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8083)));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Listen { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServeError::Listen { addr, source })?;
        tokio::spawn(accept(listener, api.clone()));
        Ok(Server { addr, api })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The engine behind it.
    pub fn engine(&self) -> &engine::Engine {
        self.api.engine()
    }
}

/// Runs the engine's driver on its own thread and runtime (see the module docs).
fn spawn_driver(engine: engine::Engine) -> Result<(), ServeError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ServeError::Config(format!("cannot start the engine's runtime: {e}")))?;
    std::thread::Builder::new()
        .name("fleetprep-driver".into())
        .spawn(move || {
            if let Err(error) = rt.block_on(engine.run_forever()) {
                // The store failed under the driver: nothing can progress any more, and the
                // API would answer stale states forever. Stop loudly.
                tracing::error!(%error, "the engine's driver stopped");
                eprintln!("fleetprep serve: the engine stopped: {error}");
                std::process::exit(1);
            }
        })
        .map_err(|e| ServeError::Config(format!("cannot start the engine's driver: {e}")))?;
    Ok(())
}

async fn accept(listener: tokio::net::TcpListener, api: Arc<Api>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(error) => {
                // Out of file descriptors and the like: wait, then keep serving.
                tracing::warn!(%error, "accept failed");
                #[allow(clippy::disallowed_methods)] // back-off after a failed accept
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let api = api.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(handle(&api, req).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(error) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
}

fn json_response(status: u16, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    response
}

fn error_response(e: &ApiError) -> Response<Full<Bytes>> {
    let mut response = json_response(e.status, &e.body());
    // The SDKs also read the error name from this header (JSON 1.0 protocol).
    if let Ok(v) = hyper::header::HeaderValue::from_str(e.kind) {
        response.headers_mut().insert("x-amzn-errortype", v);
    }
    response
}

async fn handle(api: &Api, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    if path.starts_with("/_fleetprep/") {
        return admin(api, req, &path).await;
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let target = header("x-amz-target");
    let region = region_of(header("authorization").as_deref());
    let Some(op) = target
        .as_deref()
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .map(str::to_owned)
    else {
        return error_response(&ApiError::client(
            "UnknownOperationException",
            format!(
                "missing or foreign X-Amz-Target header ({target:?}); this endpoint speaks the Step Functions API (AWSStepFunctions.<Operation>)"
            ),
        ));
    };
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(e) => return error_response(&e),
    };
    match api.call(&op, &region, body).await {
        Ok(v) => json_response(200, &v),
        Err(e) => error_response(&e),
    }
}

async fn read_body(req: Request<Incoming>) -> Result<Value, ApiError> {
    let bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            ApiError::validation(format!(
                "the request body could not be read or exceeds {MAX_BODY} bytes: {e}"
            ))
        })?
        .to_bytes();
    if bytes.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::client(
            "SerializationException",
            format!("the request body is not JSON: {e}"),
        )
    })
}

/// The admin routes (see the module docs).
async fn admin(api: &Api, req: Request<Incoming>, path: &str) -> Response<Full<Bytes>> {
    let clock = api.engine().clock();
    let now = |clock: &dyn clock::Clock| json!({"now": clock::format_rfc3339(clock.now())});
    match (req.method().as_str(), path) {
        ("GET", "/_fleetprep/clock") => json_response(200, &now(clock.as_ref())),
        ("POST", "/_fleetprep/clock/advance") => {
            if !clock.is_virtual() {
                return error_response(&ApiError::validation(
                    "the clock is the system clock; start the server with --virtual-clock to move it",
                ));
            }
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(e) => return error_response(&e),
            };
            let Some(seconds) = body
                .get("seconds")
                .and_then(Value::as_f64)
                .filter(|s| s.is_finite() && *s >= 0.0)
            else {
                return error_response(&ApiError::validation(
                    "expected {\"seconds\": N} with N >= 0",
                ));
            };
            clock.advance_to(clock.now() + Duration::from_secs_f64(seconds));
            api.engine().wake();
            json_response(200, &now(clock.as_ref()))
        }
        _ => error_response(&ApiError::client(
            "UnknownOperationException",
            format!(
                "no admin route {} {path}; see GET /_fleetprep/clock and POST /_fleetprep/clock/advance",
                req.method()
            ),
        )),
    }
}
