//! A fake Lambda Runtime API on 127.0.0.1 and a cold-start measurement of a `bootstrap` binary
//! against it: what `fleetprep bench lambda` reports and what the lambda crate's tests check.
//!
//! The server speaks the part of the Runtime API a custom runtime uses (Lambda developer guide,
//! "Using the Lambda runtime API for custom runtimes"): `GET /2018-06-01/runtime/invocation/next`
//! answers one event with the `Lambda-Runtime-*` headers, `POST .../invocation/{id}/response`
//! and `.../invocation/{id}/error` take the outcome, `POST .../runtime/init/error` a failed
//! initialisation. After the one invocation, the runtime's next poll is left unanswered (as
//! Lambda does while an environment is frozen) and the process is killed.
//!
//! Init time is what Lambda reports as "Init Duration": from process start until the runtime
//! first asks for an invocation. Measured here from just before `spawn` to the arrival of that
//! request, so process creation is included; [`baseline`] measures process creation alone
//! (spawning and reaping `true`) with the same clock, so reports can give a ratio.
//!
//! Only `std` networking (one thread per connection, HTTP/1.1 keep-alive, `Content-Length` and
//! chunked bodies): no async runtime of its own, so it cannot share or disturb the measured
//! process's. Deliberately not a general HTTP server: requests it does not expect get a 404.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The request id the fake runtime gives its one invocation.
pub const REQUEST_ID: &str = "coldstart-0001";
const NEXT_PATH: &str = "/2018-06-01/runtime/invocation/next";
const INVOCATION_PREFIX: &str = "/2018-06-01/runtime/invocation/";
const INIT_ERROR_PATH: &str = "/2018-06-01/runtime/init/error";

/// One cold start: the measured init time and everything the process answered.
#[derive(Clone, Debug)]
pub struct ColdStart {
    /// Process start → first `GET .../invocation/next`.
    pub init: Duration,
    /// Process start → the invocation's outcome posted.
    pub first_invocation: Duration,
    /// The outcome the runtime posted for the invocation.
    pub outcome: Outcome,
    /// What the process wrote (EMF lines go to stdout, JSON logs to stderr).
    pub stdout: String,
    pub stderr: String,
}

/// What the runtime posted for the one invocation.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// `POST .../invocation/{id}/response` with this body.
    Response(Value),
    /// `POST .../invocation/{id}/error`: `errorType`, `errorMessage`.
    Error { error_type: String, message: String },
}

/// Why a cold start could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("cannot start {binary}: {source}")]
    Spawn {
        binary: String,
        source: std::io::Error,
    },
    #[error("fake Runtime API on 127.0.0.1: {0}")]
    Server(std::io::Error),
    #[error(
        "{binary} did not complete an invocation within {timeout:?} (first poll seen: {polled}); \
         its stderr:\n{stderr}"
    )]
    Timeout {
        binary: String,
        timeout: Duration,
        polled: bool,
        stderr: String,
    },
    #[error(
        "{binary} exited ({status}) before completing an invocation (first poll seen: \
         {polled}); its stderr:\n{stderr}"
    )]
    Exited {
        binary: String,
        status: String,
        polled: bool,
        stderr: String,
    },
    #[error("{binary} reported an initialisation error: {body}; its stderr:\n{stderr}")]
    InitError {
        binary: String,
        body: String,
        stderr: String,
    },
    #[error("{binary} posted a response that is not JSON ({reason}): {body:?}")]
    BadResponse {
        binary: String,
        reason: String,
        body: String,
    },
}

/// The environment the Lambda service gives a `provided.al2023` function, pointed at the fake
/// Runtime API, with dummy credentials and an AWS endpoint where nothing listens: a measured
/// invocation must not need AWS.
pub fn lambda_environment(runtime_api: &str) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api),
        ("AWS_LAMBDA_FUNCTION_NAME", "fleetprep"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/fleetprep"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "coldstart"),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "coldstart"),
        ("AWS_SECRET_ACCESS_KEY", "coldstart"),
        ("AWS_SESSION_TOKEN", "coldstart"),
        // Discard port: a call to AWS would fail at once instead of hanging.
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ("FLEETPREP_HOSTNAME_TABLE", "coldstart"),
        // Lambda's own PATH for custom runtimes (not the caller's: the measured process
        // sees the same environment wherever the benchmark runs).
        ("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin"),
        ("LANG", "en_US.UTF-8"),
        ("TZ", ":UTC"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Shared between the connection threads and the measuring thread.
struct State {
    event: Vec<u8>,
    served: AtomicBool,
    shutdown: AtomicBool,
    events: Mutex<mpsc::Sender<ServerEvent>>,
}

enum ServerEvent {
    FirstPoll(Instant),
    Posted(Instant, Posted),
}

enum Posted {
    Response(Vec<u8>),
    Error(Vec<u8>),
    InitError(Vec<u8>),
}

/// Starts `binary` with [`lambda_environment`] against a fresh fake Runtime API, serves it
/// `event` once and returns the measurement. The process is killed afterwards in every case.
pub fn cold_start(
    binary: &Path,
    event: &Value,
    timeout: Duration,
) -> Result<ColdStart, HarnessError> {
    let name = binary.display().to_string();
    let listener = TcpListener::bind("127.0.0.1:0").map_err(HarnessError::Server)?;
    let address = listener.local_addr().map_err(HarnessError::Server)?;
    let (sender, receiver) = mpsc::channel();
    let state = Arc::new(State {
        event: event.to_string().into_bytes(),
        served: AtomicBool::new(false),
        shutdown: AtomicBool::new(false),
        events: Mutex::new(sender),
    });
    let acceptor = {
        let state = state.clone();
        std::thread::spawn(move || accept_loop(listener, state))
    };

    let mut command = Command::new(binary);
    command
        .env_clear()
        .envs(lambda_environment(&address.to_string()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = now();
    let mut child = command.spawn().map_err(|source| HarnessError::Spawn {
        binary: name.clone(),
        source,
    })?;
    // Drain the pipes as the process writes, so a chatty process never blocks on a full pipe.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());

    let deadline = started + timeout;
    let mut first_poll = None;
    let mut posted = None;
    let mut exited = None;
    while posted.is_none() && exited.is_none() {
        let left = deadline.saturating_duration_since(now());
        if left.is_zero() {
            break;
        }
        // Short slices, so a process that dies during init is reported at once.
        match receiver.recv_timeout(left.min(Duration::from_millis(20))) {
            Ok(ServerEvent::FirstPoll(at)) => first_poll = Some(at),
            Ok(ServerEvent::Posted(at, what)) => posted = Some((at, what)),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                exited = child.try_wait().ok().flatten();
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    state.shutdown.store(true, Ordering::SeqCst);
    // Wake the acceptor so it sees the shutdown flag.
    let _ = TcpStream::connect(address);
    let _ = acceptor.join();
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();

    let Some((posted_at, posted)) = posted else {
        if let Some(status) = exited {
            return Err(HarnessError::Exited {
                binary: name,
                status: status.to_string(),
                polled: first_poll.is_some(),
                stderr,
            });
        }
        return Err(HarnessError::Timeout {
            binary: name,
            timeout,
            polled: first_poll.is_some(),
            stderr,
        });
    };
    let outcome = match posted {
        Posted::InitError(body) => {
            return Err(HarnessError::InitError {
                binary: name,
                body: String::from_utf8_lossy(&body).into_owned(),
                stderr,
            });
        }
        Posted::Response(body) => Outcome::Response(parse_json(&name, &body)?),
        Posted::Error(body) => {
            let value = parse_json(&name, &body)?;
            let text = |key: &str| {
                value
                    .get(key)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            Outcome::Error {
                error_type: text("errorType"),
                message: text("errorMessage"),
            }
        }
    };
    // An invocation was answered, so the runtime polled first.
    let first_poll = first_poll.unwrap_or(posted_at);
    Ok(ColdStart {
        init: first_poll.saturating_duration_since(started),
        first_invocation: posted_at.saturating_duration_since(started),
        outcome,
        stdout,
        stderr,
    })
}

/// The invocation a cold-start measurement serves: `naming_settings` answers from the
/// function's configuration alone, so it needs no AWS endpoint.
pub fn probe_event() -> Value {
    serde_json::json!({"action": "naming_settings"})
}

/// Checks that a cold start served [`probe_event`] the way the deployed function must: a
/// response (not an error) carrying the naming settings, and exactly one EMF record for it on
/// stdout. The error says what was wrong, with what the process answered.
pub fn check_probe(run: &ColdStart) -> Result<(), String> {
    let response = match &run.outcome {
        Outcome::Response(response) => response,
        Outcome::Error {
            error_type,
            message,
        } => {
            return Err(format!(
                "naming_settings failed with {error_type}: {message}; stderr:\n{}",
                run.stderr
            ));
        }
    };
    let mode_ok = matches!(response["mode"].as_str(), Some("rename" | "sysprep"));
    if !mode_ok || !response["hook_timeout_seconds"].is_u64() {
        return Err(format!(
            "naming_settings answered {response}, expected \"mode\" (rename|sysprep) and \
             \"hook_timeout_seconds\""
        ));
    }
    let records: Vec<Value> = run
        .stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|record| record.get("_aws").is_some())
        .collect();
    match records.as_slice() {
        [record] if record["Action"] == "naming_settings" && record["Outcome"] == "Success" => {
            Ok(())
        }
        _ => Err(format!(
            "expected one EMF record for naming_settings with Outcome Success on stdout, got: \
             {:?}",
            run.stdout
        )),
    }
}

/// Process creation alone, timed like [`cold_start`]: spawn `true` and reap it.
pub fn baseline() -> std::io::Result<Duration> {
    let started = now();
    Command::new("true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    Ok(now().saturating_duration_since(started))
}

// The harness measures elapsed real time: the sanctioned benchmark exception to the Clock rule.
#[allow(clippy::disallowed_methods)]
fn now() -> Instant {
    Instant::now()
}

fn parse_json(binary: &str, body: &[u8]) -> Result<Value, HarnessError> {
    serde_json::from_slice(body).map_err(|e| HarnessError::BadResponse {
        binary: binary.to_owned(),
        reason: e.to_string(),
        body: String::from_utf8_lossy(body).into_owned(),
    })
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn accept_loop(listener: TcpListener, state: Arc<State>) {
    for stream in listener.incoming() {
        if state.shutdown.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let state = state.clone();
        // Detached: a connection whose poll is left hanging ends when the process is killed.
        std::thread::spawn(move || serve_connection(stream, &state));
    }
}

struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

/// Serves requests on one keep-alive connection until the peer closes it.
fn serve_connection(stream: TcpStream, state: &State) {
    let _ = stream.set_nodelay(true);
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut writer = write_half;
    let mut reader = BufReader::new(stream);
    while let Ok(Some(request)) = read_request(&mut reader) {
        let arrived = now();
        let send = |event| {
            let _ = state
                .events
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .send(event);
        };
        let reply = match (request.method.as_str(), request.path.as_str()) {
            ("GET", NEXT_PATH) => {
                if state.served.swap(true, Ordering::SeqCst) {
                    // Lambda freezes the environment here: the poll stays open, unanswered,
                    // until the harness kills the process and the connection closes.
                    let _ = reader.read_to_end(&mut Vec::new());
                    return;
                }
                send(ServerEvent::FirstPoll(arrived));
                next_invocation(&state.event)
            }
            ("POST", INIT_ERROR_PATH) => {
                send(ServerEvent::Posted(
                    arrived,
                    Posted::InitError(request.body),
                ));
                accepted()
            }
            ("POST", path) if path.starts_with(INVOCATION_PREFIX) => {
                let rest = &path[INVOCATION_PREFIX.len()..];
                match rest.split_once('/') {
                    Some((id, "response")) if id == REQUEST_ID => {
                        send(ServerEvent::Posted(arrived, Posted::Response(request.body)));
                        accepted()
                    }
                    Some((id, "error")) if id == REQUEST_ID => {
                        send(ServerEvent::Posted(arrived, Posted::Error(request.body)));
                        accepted()
                    }
                    _ => not_found(),
                }
            }
            _ => not_found(),
        };
        if writer
            .write_all(&reply)
            .and_then(|_| writer.flush())
            .is_err()
        {
            return;
        }
    }
}

fn next_invocation(event: &[u8]) -> Vec<u8> {
    let deadline_ms = clock::Clock::now(&clock::SystemClock)
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        + 60_000;
    let mut reply = format!(
        "HTTP/1.1 200 OK\r\n\
         Content-Type: application/json\r\n\
         Lambda-Runtime-Aws-Request-Id: {REQUEST_ID}\r\n\
         Lambda-Runtime-Deadline-Ms: {deadline_ms}\r\n\
         Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:fleetprep\r\n\
         Lambda-Runtime-Trace-Id: Root=1-00000000-000000000000000000000000;Sampled=0\r\n\
         Content-Length: {}\r\n\r\n",
        event.len()
    )
    .into_bytes();
    reply.extend_from_slice(event);
    reply
}

fn accepted() -> Vec<u8> {
    let body = br#"{"status":"OK"}"#;
    let mut reply = format!(
        "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    reply.extend_from_slice(body);
    reply
}

fn not_found() -> Vec<u8> {
    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()
}

/// Reads one HTTP/1.1 request; `Ok(None)` when the peer closed the connection between requests.
fn read_request(reader: &mut impl BufRead) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(invalid(format!("malformed request line {line:?}")));
    };
    let (method, path) = (method.to_owned(), target.to_owned());
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 {
            return Err(invalid("connection closed inside the headers".to_owned()));
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        read_chunked(reader)?
    } else {
        let length: usize = match headers.get("content-length") {
            Some(text) => text
                .parse()
                .map_err(|_| invalid(format!("Content-Length {text:?} is not a number")))?,
            None => 0,
        };
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        body
    };
    Ok(Some(Request { method, path, body }))
}

fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line)?;
        let size_text = size_line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| invalid(format!("bad chunk size {size_text:?}")))?;
        if size == 0 {
            // Trailers, then the blank line.
            loop {
                let mut trailer = String::new();
                if reader.read_line(&mut trailer)? == 0 || trailer.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0; 2];
        reader.read_exact(&mut crlf)?;
    }
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_content_length_and_chunked_bodies_on_one_connection() {
        let wire = b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\
                     POST /b HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n2\r\nxy\r\n1;x=y\r\nz\r\n0\r\n\r\n\
                     GET /c HTTP/1.1\r\nHost: h\r\n\r\n";
        let mut reader = BufReader::new(&wire[..]);
        let a = read_request(&mut reader).unwrap().unwrap();
        assert_eq!((a.method.as_str(), a.path.as_str()), ("POST", "/a"));
        assert_eq!(a.body, b"abc");
        let b = read_request(&mut reader).unwrap().unwrap();
        assert_eq!(b.body, b"xyz");
        let c = read_request(&mut reader).unwrap().unwrap();
        assert_eq!((c.method.as_str(), c.body.len()), ("GET", 0));
        assert!(read_request(&mut reader).unwrap().is_none());
    }

    #[test]
    fn malformed_requests_are_errors_not_panics() {
        for wire in [
            &b"\r\n"[..],
            b"POST /a HTTP/1.1\r\nContent-Length: lots\r\n\r\n",
            b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"GET /a HTTP/1.1\r\nHost: h\r\n",
        ] {
            assert!(read_request(&mut BufReader::new(wire)).is_err(), "{wire:?}");
        }
    }

    #[test]
    fn next_invocation_carries_the_runtime_headers() {
        let reply = String::from_utf8(next_invocation(br#"{"action":"x"}"#)).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"));
        for header in [
            "Lambda-Runtime-Aws-Request-Id: coldstart-0001",
            "Lambda-Runtime-Deadline-Ms: ",
            "Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:",
            "Content-Length: 14\r\n",
        ] {
            assert!(reply.contains(header), "{header} missing in {reply}");
        }
        assert!(reply.ends_with("\r\n\r\n{\"action\":\"x\"}"));
    }

    #[test]
    fn a_binary_that_does_not_exist_is_a_named_error() {
        let error = cold_start(
            Path::new("no-such-bootstrap-binary"),
            &serde_json::json!({}),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("no-such-bootstrap-binary"),
            "{error}"
        );
    }
}
