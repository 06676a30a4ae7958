//! Runs a real function bootstrap the way Lambda does: as a child process polling the Lambda
//! Runtime API (`/2018-06-01/runtime/...`), served here on a loopback port.
//!
//! The process stays up between invocations, like a warm execution environment, so a test can
//! invoke it several times and see what it kept.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

const API: &str = "/2018-06-01/runtime";
/// Deadline given to each invocation (the function sees it in its context).
const INVOCATION_TIMEOUT: Duration = Duration::from_secs(90);

/// How an invocation ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The function posted a response.
    Response(Value),
    /// The function posted an invocation error (`errorType`, `errorMessage`).
    Error(Value),
}

impl Outcome {
    /// The response, or a panic that shows the function's error.
    pub fn expect_response(self) -> Value {
        match self {
            Outcome::Response(v) => v,
            Outcome::Error(e) => panic!("the function failed: {e}"),
        }
    }

    /// The error, or a panic that shows the unexpected response.
    pub fn expect_error(self) -> Value {
        match self {
            Outcome::Error(e) => e,
            Outcome::Response(v) => panic!("the function succeeded unexpectedly: {v}"),
        }
    }
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Outcome>>>>;

struct ApiState {
    name: String,
    events: tokio::sync::Mutex<mpsc::Receiver<(String, Bytes)>>,
    pending: Pending,
    init_error: Mutex<Option<Value>>,
    /// When the process first asked for an event: the end of its cold start.
    first_poll: Mutex<Option<std::time::Instant>>,
}

/// A function bootstrap running behind a local Runtime API.
pub struct Function {
    name: String,
    started: std::time::Instant,
    child: Child,
    sender: mpsc::Sender<(String, Bytes)>,
    state: Arc<ApiState>,
    logs: Arc<Mutex<Vec<String>>>,
    server: tokio::task::JoinHandle<()>,
}

/// The directory holding the workspace's binaries: `VIGIL_BIN_DIR`, else the target directory
/// this test or tool was built into.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("VIGIL_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current executable");
    let dir = exe.parent().expect("executable directory");
    if dir.ends_with("deps") {
        dir.parent()
            .expect("target profile directory")
            .to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// The path of a function's bootstrap binary, checked to exist.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} not found: build the functions first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

impl Function {
    /// Starts the bootstrap `binary` as function `name` with the given environment (on top of
    /// the variables Lambda itself sets).
    pub async fn start(name: &str, binary: &Path, env: &[(&str, &str)]) -> Function {
        let (sender, receiver) = mpsc::channel(16);
        let state = Arc::new(ApiState {
            name: name.to_owned(),
            events: tokio::sync::Mutex::new(receiver),
            pending: Arc::default(),
            init_error: Mutex::new(None),
            first_poll: Mutex::new(None),
        });
        let server_state = state.clone();
        let (addr, server) = crate::serve::serve_loopback("Runtime API", move |_, req| {
            handle(server_state.clone(), req)
        })
        .await;

        let mut command = Command::new(binary);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            command.env(k, v);
        }
        let started = std::time::Instant::now();
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));

        let logs: Arc<Mutex<Vec<String>>> = Arc::default();
        let echo = std::env::var_os("VIGIL_ECHO_LOGS").is_some();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        tokio::spawn(collect_lines(stdout, logs.clone(), name.to_owned(), echo));
        tokio::spawn(collect_lines(stderr, logs.clone(), name.to_owned(), echo));

        Function {
            name: name.to_owned(),
            started,
            child,
            sender,
            state,
            logs,
            server,
        }
    }

    /// Invokes the function with `event` and waits for its response or error. Panics when the
    /// process exits or the invocation times out: both are failures of the function.
    pub async fn invoke(&mut self, event: &Value) -> Outcome {
        match self.try_invoke(event).await {
            Ok(outcome) => outcome,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`Function::invoke`], with the process's exit or a timeout as an `Err` that says which.
    pub async fn try_invoke(&mut self, event: &Value) -> Result<Outcome, String> {
        let id = format!(
            "{:08x}-0000-4000-8000-{:012x}",
            std::process::id(),
            REQUEST_IDS.fetch_add(1, Ordering::Relaxed)
        );
        let (tx, rx) = oneshot::channel();
        self.state
            .pending
            .lock()
            .expect("pending lock")
            .insert(id.clone(), tx);
        let body = Bytes::from(serde_json::to_vec(event).expect("event JSON"));
        self.sender
            .send((id, body))
            .await
            .map_err(|_| "the Runtime API queue is closed".to_owned())?;

        let deadline = tokio::time::sleep(INVOCATION_TIMEOUT);
        tokio::pin!(deadline);
        tokio::pin!(rx);
        loop {
            tokio::select! {
                outcome = &mut rx => return outcome.map_err(|_| "the invocation was dropped".to_owned()),
                _ = &mut deadline => return Err(format!("{}: no result within {INVOCATION_TIMEOUT:?}", self.name)),
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                        let init = self.state.init_error.lock().expect("init lock").clone();
                        return Err(format!(
                            "{} exited ({status}) before answering; init error: {init:?}; logs:\n{}",
                            self.name,
                            self.logs().join("\n")
                        ));
                    }
                }
            }
        }
    }

    /// Waits until the process exits, for functions expected to fail at start-up, and returns
    /// its exit status and the init error it posted to the Runtime API, if any. Lambda reports
    /// such a start as `Runtime.ExitError` with the process's last log lines.
    pub async fn exit(&mut self) -> (std::process::ExitStatus, Option<Value>) {
        let status = tokio::time::timeout(INVOCATION_TIMEOUT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not exit", self.name))
            .expect("child status");
        // Give the log readers a moment to drain the pipes.
        tokio::time::sleep(Duration::from_millis(100)).await;
        (
            status,
            self.state.init_error.lock().expect("init lock").clone(),
        )
    }

    /// Waits up to `limit` for the process's first `GET /invocation/next` and returns the time
    /// from spawning it: its cold start, as Lambda's init phase measures it.
    pub async fn time_to_first_poll(&self, limit: Duration) -> Option<Duration> {
        let until = std::time::Instant::now() + limit;
        loop {
            if let Some(at) = *self.state.first_poll.lock().expect("poll lock") {
                return Some(at.duration_since(self.started));
            }
            if std::time::Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }

    /// The process id of the running bootstrap.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The function's log lines (its stdout) so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().expect("log lock").clone()
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        self.server.abort();
    }
}

/// Collects a child's output lines (its JSON logs) for the test to inspect.
async fn collect_lines(
    pipe: impl tokio::io::AsyncRead + Unpin,
    logs: Arc<Mutex<Vec<String>>>,
    label: String,
    echo: bool,
) {
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if echo {
            eprintln!("[{label}] {line}");
        }
        logs.lock().expect("log lock").push(line);
    }
}

fn reply(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

async fn handle(
    state: Arc<ApiState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let Some(rest) = path.strip_prefix(API) else {
        return Ok(reply(StatusCode::NOT_FOUND, "not found"));
    };
    if method == Method::GET && rest == "/invocation/next" {
        state
            .first_poll
            .lock()
            .expect("poll lock")
            .get_or_insert_with(std::time::Instant::now);
        let next = state.events.lock().await.recv().await;
        let Some((id, body)) = next else {
            return Ok(reply(StatusCode::GONE, "shutting down"));
        };
        let deadline = chrono::Utc::now().timestamp_millis()
            + i64::try_from(INVOCATION_TIMEOUT.as_millis()).unwrap_or(i64::MAX);
        let arn = format!(
            "arn:aws:lambda:us-east-1:000000000000:function:{}",
            state.name
        );
        let response = Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .header("lambda-runtime-aws-request-id", &id)
            .header("lambda-runtime-deadline-ms", deadline.to_string())
            .header("lambda-runtime-invoked-function-arn", arn)
            .header(
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000;Sampled=0",
            )
            .body(Full::new(body))
            .expect("response");
        return Ok(response);
    }
    if method != Method::POST {
        return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let json: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    if rest == "/init/error" {
        *state.init_error.lock().expect("init lock") = Some(json);
        return Ok(reply(StatusCode::ACCEPTED, "{}"));
    }
    let Some(tail) = rest.strip_prefix("/invocation/") else {
        return Ok(reply(StatusCode::NOT_FOUND, "not found"));
    };
    let (id, outcome) = if let Some(id) = tail.strip_suffix("/response") {
        (id, Outcome::Response(json))
    } else if let Some(id) = tail.strip_suffix("/error") {
        (id, Outcome::Error(json))
    } else {
        return Ok(reply(StatusCode::NOT_FOUND, "not found"));
    };
    let waiter = state.pending.lock().expect("pending lock").remove(id);
    match waiter {
        Some(tx) => {
            let _ = tx.send(outcome);
            Ok(reply(StatusCode::ACCEPTED, "{}"))
        }
        None => Ok(reply(StatusCode::BAD_REQUEST, "unknown request id")),
    }
}
