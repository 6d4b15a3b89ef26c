//! supervise: the MCP server through which the bottled agent asks the
//! operator for more — a host on the egress proxy, a changed image, a host
//! on pipelock — and learns the answer.
//!
//! Is: MCP over streamable HTTP at `/mcp` (the official `rmcp` SDK served
//! by hyper), the agent-facing tools (`tools`), and the file queue the
//! operator side decides on (`queue`, contract in `docs/queue-protocol.md`).
//! A call that asks for something validates it with `manifest`, writes a
//! proposal, and waits for the decision file while keeping the client alive
//! with progress notifications.
//!
//! Is not: the operator side. It never applies a change, never talks to
//! Docker, never holds a secret; approval and application are the
//! launcher's. It is not a config reader either: `main.rs` turns flags and
//! environment into a [`Config`] and calls [`run`].
#![forbid(unsafe_code)]

pub mod egress;
pub mod queue;
pub mod server;
pub mod tools;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use egress::ProxyAddr;
pub use queue::{Queue, QueueError};

/// The MCP endpoint path.
pub const MCP_PATH: &str = "/mcp";
/// A liveness endpoint (plain `ok`), for the launcher and compose.
pub const HEALTH_PATH: &str = "/healthz";
/// `Host` values accepted by default: the sidecar's DNS alias and loopback.
/// A name without a port matches any port (`supervise` covers
/// `supervise:9100`).
pub const DEFAULT_ALLOWED_HOSTS: &[&str] = &["supervise", "localhost", "127.0.0.1", "::1"];
/// Default time a proposing call waits for the decision: below Claude
/// Code's own tool-call limit (about six minutes).
pub const DEFAULT_DECISION_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest accepted decision timeout.
pub const MAX_DECISION_TIMEOUT: Duration = Duration::from_secs(3600);
const MAX_CONNECTIONS: usize = 256;
/// Largest MCP request body (HTTP 413 above it).
const MAX_REQUEST_BYTES: usize = 2 * 1024 * 1024;
/// How long shutdown lets waiting calls send their "pending" answers.
const WAIT_DRAIN: Duration = Duration::from_secs(3);

/// Validated settings; only [`Config::new`] makes one, so every field has
/// been checked.
#[derive(Clone, Debug)]
pub struct Config {
    /// The queue directory (bind-mounted, shared with the operator side).
    queue_dir: PathBuf,
    /// The bottle identity written into every proposal.
    bottle: String,
    /// The egress proxy `list-egress-routes` asks.
    egress_proxy: Option<ProxyAddr>,
    /// The bottle's current Dockerfile (read-only), for `capability-block`.
    dockerfile: Option<PathBuf>,
    /// List `pipelock-block`.
    pipelock: bool,
    /// How long a proposing call waits before answering "pending".
    decision_timeout: Duration,
    /// How often the decisions directory is polled.
    poll_interval: Duration,
    /// How often a waiting call sends a progress notification.
    keepalive_interval: Duration,
    /// Accepted `Host` header values (DNS-rebinding guard).
    allowed_hosts: Vec<String>,
}

/// Why the settings or the server failed; messages name the bad value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "bottle identity {0:?} is invalid; expected 1-128 lowercase letters, digits, '-', '_' or '.' (e.g. dev-k3x9a)"
    )]
    Bottle(String),
    #[error("decision timeout {0} s is out of range; expected 1 to {max} seconds", max = MAX_DECISION_TIMEOUT.as_secs())]
    Timeout(u64),
    #[error(
        "allowed host {0:?} is invalid; expected a host name or host:port such as supervise or supervise:9100"
    )]
    AllowedHost(String),
    #[error("no allowed hosts; give at least one (the default is {})", DEFAULT_ALLOWED_HOSTS.join(","))]
    NoAllowedHosts,
    #[error(transparent)]
    Egress(#[from] egress::EgressError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("listening socket: {0}")]
    Accept(std::io::Error),
    #[error("opening the queue: the blocking task failed: {0}")]
    Task(String),
}

impl Config {
    /// Validates the settings. `egress_proxy` is a URL such as
    /// `http://egress:9099`; `decision_timeout_secs` must be 1..=3600.
    pub fn new(
        queue_dir: PathBuf,
        bottle: &str,
        egress_proxy: Option<&str>,
        dockerfile: Option<PathBuf>,
        pipelock: bool,
        decision_timeout_secs: u64,
        allowed_hosts: Vec<String>,
    ) -> Result<Self, Error> {
        let bottle_ok = !bottle.is_empty()
            && bottle.len() <= 128
            && bottle.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            });
        if !bottle_ok {
            return Err(Error::Bottle(bottle.to_owned()));
        }
        let decision_timeout = Duration::from_secs(decision_timeout_secs);
        if decision_timeout_secs == 0 || decision_timeout > MAX_DECISION_TIMEOUT {
            return Err(Error::Timeout(decision_timeout_secs));
        }
        let egress_proxy = egress_proxy.map(ProxyAddr::parse).transpose()?;
        let mut hosts = Vec::new();
        for h in allowed_hosts {
            let h = h.trim().to_ascii_lowercase();
            if h.is_empty() {
                continue;
            }
            let bare_ip = h
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok();
            if !bare_ip && (h.parse::<http::uri::Authority>().is_err() || h.contains('@')) {
                return Err(Error::AllowedHost(h));
            }
            hosts.push(h);
        }
        if hosts.is_empty() {
            return Err(Error::NoAllowedHosts);
        }
        Ok(Self {
            queue_dir,
            bottle: bottle.to_owned(),
            egress_proxy,
            dockerfile,
            pipelock,
            decision_timeout,
            poll_interval: Duration::from_millis(250),
            keepalive_interval: Duration::from_secs(10),
            allowed_hosts: hosts,
        })
    }
}

impl Config {
    /// Overrides how often the decisions directory is polled (default
    /// 250 ms) and how often a waiting call sends a progress notification
    /// (default 10 s). Tests shorten both.
    pub fn with_intervals(mut self, poll: Duration, keepalive: Duration) -> Self {
        self.poll_interval = poll.max(Duration::from_millis(1));
        self.keepalive_interval = keepalive.max(Duration::from_millis(1));
        self
    }

    /// The bottle identity.
    pub fn bottle(&self) -> &str {
        &self.bottle
    }

    /// The decision timeout.
    pub fn decision_timeout(&self) -> Duration {
        self.decision_timeout
    }

    /// Accepted `Host` values.
    pub fn allowed_hosts(&self) -> &[String] {
        &self.allowed_hosts
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn plain(status: http::StatusCode, text: &'static str) -> http::Response<Body> {
    let mut resp = http::Response::new(Full::new(Bytes::from_static(text.as_bytes())).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Serves MCP on `listener` until `shutdown` is cancelled, then stops
/// accepting, ends MCP sessions (waiting calls answer "pending"; their
/// proposals stay queued) and returns when every connection has closed.
/// The caller bounds that drain with its own grace timeout.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let queue_dir = config.queue_dir.clone();
    let queue = tokio::task::spawn_blocking(move || -> Result<Queue, QueueError> {
        let q = Queue::open(&queue_dir)?;
        let added = q.reconcile_audit()?;
        if added > 0 {
            tracing::warn!(
                records = added,
                "audit log was missing proposal records; appended them"
            );
        }
        Ok(q)
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))??;

    // Not a child of `shutdown`: the sessions must outlive the waiting
    // calls' last answers (see the two phases below).
    let mcp_shutdown = CancellationToken::new();
    // Also end the sessions if the caller drops this future mid-drain.
    let _end_sessions = mcp_shutdown.clone().drop_guard();
    let mut sessions = LocalSessionManager::default();
    // Sessions idle out after this long without traffic; a waiting call
    // without a progress token sends none, so outlast the decision timeout.
    sessions.session_config.keep_alive = Some(config.decision_timeout + Duration::from_secs(300));
    let mcp_config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(config.allowed_hosts.clone())
        // A 256 KiB Dockerfile stays under this even fully JSON-escaped.
        .with_max_request_body_bytes(MAX_REQUEST_BYTES)
        .with_cancellation_token(mcp_shutdown.clone());
    let local = listener.local_addr().map_err(Error::Accept)?;
    tracing::info!(
        addr = %local,
        bottle = %config.bottle,
        queue = %config.queue_dir.display(),
        allowed_hosts = ?config.allowed_hosts,
        pipelock = config.pipelock,
        decision_timeout_s = config.decision_timeout.as_secs(),
        "supervise listening"
    );
    let shared = Arc::new(server::Shared {
        config,
        queue: Arc::new(queue),
        stop_waiting: CancellationToken::new(),
        waits: TaskTracker::new(),
    });
    let waiting = shared.clone();
    let service = StreamableHttpService::new(
        move || Ok(server::Supervisor::new(shared.clone())),
        Arc::new(sessions),
        mcp_config,
    );

    let tracker = TaskTracker::new();
    // In-flight POST responses (each ends after its JSON-RPC answer).
    let posts = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    // Typically EMFILE: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let service = service.clone();
        let posts = posts.clone();
        let stop = mcp_shutdown.clone();
        tracker.spawn(async move {
            serve_connection(stream, peer, service, posts, stop).await;
            drop(permit);
        });
    }
    tracing::info!("shutting down: no new connections; waiting calls answer pending");
    // Phase 1: waiting calls answer "pending" (with their id) while their
    // sessions are still open. Phase 2: end the sessions, which closes the
    // long-lived SSE streams so connections can drain.
    waiting.stop_waiting.cancel();
    waiting.waits.close();
    posts.close();
    let drained = tokio::time::timeout(WAIT_DRAIN, async {
        waiting.waits.wait().await;
        // Their answers are written once the POST response bodies finish.
        posts.wait().await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!("waiting calls did not answer in time; closing sessions anyway");
    }
    mcp_shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    Ok(())
}

#[tracing::instrument(skip_all, fields(peer = %peer))]
async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    service: StreamableHttpService<server::Supervisor, LocalSessionManager>,
    posts: TaskTracker,
    stop: CancellationToken,
) {
    let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
        let service = service.clone();
        let posts = posts.clone();
        async move {
            let resp = match req.uri().path() {
                MCP_PATH if req.method() == http::Method::POST => {
                    let token = posts.token();
                    service.handle(req).await.map(|body| {
                        Tracked {
                            body,
                            _token: token,
                        }
                        .boxed()
                    })
                }
                MCP_PATH => service.handle(req).await,
                HEALTH_PATH => plain(http::StatusCode::OK, "ok\n"),
                _ => plain(
                    http::StatusCode::NOT_FOUND,
                    "not found; the MCP endpoint is /mcp\n",
                ),
            };
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// A response body that holds a [`TaskTracker`] token until hyper has
/// finished with it, so shutdown can wait for answers to be written.
struct Tracked {
    body: Body,
    _token: tokio_util::task::task_tracker::TaskTrackerToken,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
