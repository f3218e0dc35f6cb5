//! An in-process Lambda Runtime API (the 2018-06-01 protocol) for what a real peer cannot
//! be made to do on demand: chosen deadlines, init errors, a peer that hangs up. It serves
//! under a path prefix, as some peers do, to prove the runtime never treats
//! `AWS_LAMBDA_RUNTIME_API` as host:port.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use serde_json::Value;

/// What the runtime answered for one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Response(Value),
    Error { error_type: String, body: Value },
}

#[derive(Debug, Default)]
struct State {
    pending: Mutex<VecDeque<(String, Value, u64)>>,
    replies: Mutex<HashMap<String, Reply>>,
    init_error: Mutex<Option<Value>>,
    // One condition variable per mutex: a Condvar must not be shared between mutexes.
    pending_changed: Condvar,
    replies_changed: Condvar,
    init_changed: Condvar,
    hang_up: AtomicBool,
    next_id: AtomicU64,
}

#[derive(Debug)]
pub struct FakeRuntimeApi {
    /// The value for AWS_LAMBDA_RUNTIME_API: `127.0.0.1:PORT/prefix`.
    pub endpoint: String,
    state: Arc<State>,
    port: u16,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for FakeRuntimeApi {
    fn drop(&mut self) {
        // Wake the /next waiters, or dropping the runtime would wait for them forever.
        self.hang_up();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

const PREFIX: &str = "/peer-prefix";

impl FakeRuntimeApi {
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(State::default());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::clone(&state);
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req| serve(Arc::clone(&state), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            endpoint: format!("127.0.0.1:{port}{PREFIX}"),
            state,
            port,
            runtime: Some(runtime),
        }
    }

    /// Queues an event with `time_left` before its deadline; returns its request id.
    pub fn queue(&self, event: Value, time_left: Duration) -> String {
        // Unique across tests running at once, like Lambda's UUIDs: request dirs are /tmp/<id>.
        let id = format!(
            "req-{}-{}",
            self.port,
            self.state.next_id.fetch_add(1, Ordering::SeqCst)
        );
        let deadline = (SystemTime::now() + time_left)
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        self.state
            .pending
            .lock()
            .unwrap()
            .push_back((id.clone(), event, deadline));
        self.state.pending_changed.notify_all();
        id
    }

    /// Waits up to `wait` for the reply to `id`.
    pub fn reply(&self, id: &str, wait: Duration) -> Option<Reply> {
        let guard = self.state.replies.lock().unwrap();
        let (mut guard, _) = self
            .state
            .replies_changed
            .wait_timeout_while(guard, wait, |r| !r.contains_key(id))
            .unwrap();
        guard.remove(id)
    }

    /// Queues and waits.
    pub fn invoke(&self, event: Value, time_left: Duration) -> Reply {
        self.invoke_with_id(event, time_left).1
    }

    /// Queues and waits; also returns the request id.
    pub fn invoke_with_id(&self, event: Value, time_left: Duration) -> (String, Reply) {
        let id = self.queue(event, time_left);
        let reply = self
            .reply(&id, time_left + Duration::from_secs(30))
            .unwrap_or_else(|| panic!("no reply to {id}"));
        (id, reply)
    }

    pub fn init_error(&self, wait: Duration) -> Option<Value> {
        let guard = self.state.init_error.lock().unwrap();
        let (guard, _) = self
            .state
            .init_changed
            .wait_timeout_while(guard, wait, |e| e.is_none())
            .unwrap();
        guard.clone()
    }

    /// From now on, every request gets its connection closed without an answer.
    pub fn hang_up(&self) {
        self.state.hang_up.store(true, Ordering::SeqCst);
        let _guard = self.state.pending.lock().unwrap();
        self.state.pending_changed.notify_all();
    }
}

fn answer(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    response
}

async fn serve(
    state: Arc<State>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    if state.hang_up.load(Ordering::SeqCst) {
        return Err(std::io::Error::other("peer hangs up"));
    }
    let Some(path) = req.uri().path().strip_prefix(PREFIX).map(str::to_owned) else {
        return Ok(answer(StatusCode::NOT_FOUND, "no prefix"));
    };
    let error_type = req
        .headers()
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["2018-06-01", "runtime", "invocation", "next"] => {
            let next = tokio::task::spawn_blocking(move || {
                let guard = state.pending.lock().unwrap();
                let mut guard = state
                    .pending_changed
                    .wait_while(guard, |p| {
                        p.is_empty() && !state.hang_up.load(Ordering::SeqCst)
                    })
                    .unwrap();
                if state.hang_up.load(Ordering::SeqCst) {
                    None
                } else {
                    guard.pop_front()
                }
            })
            .await
            .unwrap();
            let Some((id, event, deadline)) = next else {
                return Err(std::io::Error::other("peer hangs up"));
            };
            let mut response = answer(StatusCode::OK, &event.to_string());
            let headers = response.headers_mut();
            headers.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
            headers.insert(
                "lambda-runtime-deadline-ms",
                deadline.to_string().parse().unwrap(),
            );
            headers.insert(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:000000000000:function:scar-test"
                    .parse()
                    .unwrap(),
            );
            headers.insert(
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000".parse().unwrap(),
            );
            Ok(response)
        }
        [
            "2018-06-01",
            "runtime",
            "invocation",
            id,
            kind @ ("response" | "error"),
        ] => {
            let reply = if *kind == "response" {
                Reply::Response(json)
            } else {
                // Lambda reports the body's errorType; the header only says "unhandled".
                let error_type = json["errorType"]
                    .as_str()
                    .map(str::to_owned)
                    .or(error_type)
                    .unwrap_or_default();
                Reply::Error {
                    error_type,
                    body: json,
                }
            };
            state
                .replies
                .lock()
                .unwrap()
                .insert((*id).to_owned(), reply);
            state.replies_changed.notify_all();
            Ok(answer(StatusCode::ACCEPTED, "{\"status\":\"OK\"}"))
        }
        ["2018-06-01", "runtime", "init", "error"] => {
            *state.init_error.lock().unwrap() = Some(json);
            state.init_changed.notify_all();
            Ok(answer(StatusCode::ACCEPTED, "{\"status\":\"OK\"}"))
        }
        _ => Ok(answer(StatusCode::NOT_FOUND, "unknown path")),
    }
}
