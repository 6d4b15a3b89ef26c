//! The HTTP front: routing, request checks, mirror refresh, push
//! serialisation and the per-decision log lines.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use manifest::remotes::Remote;
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::cgi::{self, Body, CgiRequest, text};
use crate::config::Config;
use crate::hook::{HookReport, env as hook_env};
use crate::mirror;
use crate::pktline;
use crate::upstream::Upstream;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// A remote's token is missing.
    #[error("{0}")]
    Credentials(String),
    /// A mirror could not be created.
    #[error("preparing the mirror of remote {remote:?} in {path}: {message}")]
    Mirror {
        /// The remote.
        remote: String,
        /// The mirror path.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The data directory is unusable.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The upstream trust bundle could not be written.
    #[error("{0}")]
    Trust(String),
}

struct RemoteState {
    remote: Remote,
    upstream: Upstream,
    mirror: PathBuf,
    /// Held for a refresh and for a whole push, so the mirror never moves
    /// under a push and two pushes to one remote never interleave.
    write: Arc<Mutex<()>>,
    /// When the last refresh finished and whether it worked.
    last_refresh: StdMutex<Option<(Instant, bool)>>,
}

struct Gate {
    cfg: Config,
    remotes: BTreeMap<String, Arc<RemoteState>>,
    names: String,
    reports: PathBuf,
    /// Pushes are spooled here while they are checked.
    spool: PathBuf,
    seq: AtomicU64,
}

/// First and longest pause after a failed accept (doubling in between).
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));
/// Connections over the cap that are still answered 503; past this many at
/// once, more are closed without a word.
const MAX_BUSY_REPLIES: usize = 16;

/// Prepares every mirror, then serves git smart HTTP on `listener` until
/// `shutdown` is cancelled; in-flight requests are then awaited (the caller
/// bounds that with its grace timeout).
///
/// Walls against a client that hogs the daemon: at most
/// [`Config::max_connections`] connections (one more is answered 503),
/// [`Config::header_timeout`] to send headers, [`Config::idle_timeout`]
/// per pause in a body, and a failing `accept` (out of file descriptors)
/// backs off instead of spinning.
pub async fn run(
    listener: TcpListener,
    cfg: Config,
    shutdown: CancellationToken,
) -> Result<(), GateError> {
    let gate = Arc::new(prepare(cfg).await?);
    let header_timeout = gate.cfg.header_timeout;
    let tracker = TaskTracker::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(gate.cfg.max_connections));
    let busy = Arc::new(tokio::sync::Semaphore::new(MAX_BUSY_REPLIES));
    let mut backoff = Duration::ZERO;
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => {
                    backoff = Duration::ZERO;
                    x
                }
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => {
                    // EMFILE and friends leave the listener readable, so an
                    // immediate retry fails again at once: wait instead.
                    backoff = (backoff * 2).clamp(ACCEPT_BACKOFF.0, ACCEPT_BACKOFF.1);
                    warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "accept failed; backing off");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(backoff) => continue,
                    }
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            let limit = gate.cfg.max_connections;
            // Logged once per answered refusal (at most MAX_BUSY_REPLIES a
            // second or so); a flood past that is closed silently.
            if let Ok(reply) = busy.clone().try_acquire_owned() {
                warn!(peer = %peer, limit, "connection refused: too many open connections");
                tracker.spawn(async move {
                    refuse_busy(stream, limit).await;
                    drop(reply);
                });
            }
            continue;
        };
        let gate = gate.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(
            async move {
                let _slot = slot;
                let svc = service_fn(move |req| {
                    let gate = gate.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(gate, req, peer).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .serve_connection(TokioIo::new(stream), svc);
                let mut conn = std::pin::pin!(conn);
                tokio::select! {
                    r = conn.as_mut() => if let Err(e) = r { debug!(error = %e, "connection ended with an error") },
                    () = shutdown.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
            }
            .instrument(info_span!("conn", peer = %peer)),
        );
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// Errors about one connection that is already gone; the next accept is
/// unaffected.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    )
}

/// Answers a connection over the cap with a 503 the client can show, then
/// closes it (all within a second).
async fn refuse_busy(mut stream: tokio::net::TcpStream, limit: usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let msg = format!(
        "git-gate: too many open connections (limit {limit}); close some or retry in a moment\n"
    );
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{msg}",
        msg.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(reply.as_bytes()).await?;
        stream.shutdown().await?;
        // Read what the client sent, so closing does not reset the reply.
        let mut sink = [0u8; 4096];
        let mut left = 64usize << 10;
        while left > 0 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
}

async fn prepare(cfg: Config) -> Result<Gate, GateError> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| GateError::DataDir {
        path: cfg.data_dir.clone(),
        source,
    })?;
    let data_dir = cfg
        .data_dir
        .canonicalize()
        .map_err(|source| GateError::DataDir {
            path: cfg.data_dir.clone(),
            source,
        })?;
    let reports = data_dir.join(".reports");
    let spool = data_dir.join(".spool");
    // Reports and spools left by a previous run (killed mid-push) are stale.
    for dir in [&reports, &spool] {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).map_err(|source| GateError::DataDir {
            path: dir.clone(),
            source,
        })?;
    }
    let child_env = crate::config::child_env(cfg.child_env.clone(), &cfg.remotes);
    let upstream_ca = match &cfg.upstream_ca {
        Some(extra) => {
            let bundle = data_dir.join(".upstream-ca.pem");
            crate::upstream::write_trust_bundle(extra, &bundle).map_err(GateError::Trust)?;
            Some(bundle)
        }
        None => None,
    };
    let cfg = Config {
        data_dir,
        child_env,
        upstream_ca,
        ..cfg
    };
    let upstreams = cfg.upstreams().map_err(GateError::Credentials)?;
    let mut remotes = BTreeMap::new();
    for (remote, upstream) in cfg.remotes.remotes().iter().zip(upstreams) {
        let path = cfg.mirror_path(remote.name.as_str());
        mirror::ensure(&path, &cfg.hook_exe, &cfg.child_env)
            .await
            .map_err(|message| GateError::Mirror {
                remote: remote.name.to_string(),
                path: path.clone(),
                message,
            })?;
        remotes.insert(
            remote.name.to_string(),
            Arc::new(RemoteState {
                remote: remote.clone(),
                upstream,
                mirror: path,
                write: Arc::new(Mutex::new(())),
                last_refresh: StdMutex::new(None),
            }),
        );
    }
    let names = remotes
        .keys()
        .map(|n| format!("{n}.git"))
        .collect::<Vec<_>>()
        .join(", ");
    info!(remotes = %names, data = %cfg.data_dir.display(), "git-gate ready");
    Ok(Gate {
        cfg,
        remotes,
        names,
        reports,
        spool,
        seq: AtomicU64::new(0),
    })
}

/// The three smart-HTTP endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    InfoRefs,
    UploadPack,
    ReceivePack,
}

async fn handle(gate: Arc<Gate>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let Some((name, rest)) = path.strip_prefix('/').and_then(|p| p.split_once(".git/")) else {
        return text(
            StatusCode::NOT_FOUND,
            format!(
                "git-gate: no repository at {path}; this gate serves: {}",
                gate.names
            ),
        );
    };
    let Some(state) = gate.remotes.get(name).cloned() else {
        return text(
            StatusCode::NOT_FOUND,
            format!(
                "git-gate: unknown remote {name:?}; this gate serves: {}",
                gate.names
            ),
        );
    };
    let endpoint = match (req.method().as_str(), rest) {
        ("GET", "info/refs") => Endpoint::InfoRefs,
        ("POST", "git-upload-pack") => Endpoint::UploadPack,
        ("POST", "git-receive-pack") => Endpoint::ReceivePack,
        (m, r) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!(
                    "git-gate: {m} /{name}.git/{r} is not a smart-HTTP endpoint; expected GET info/refs?service=…, POST git-upload-pack or POST git-receive-pack"
                ),
            );
        }
    };
    let service = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("service="))
        .unwrap_or("");
    if endpoint == Endpoint::InfoRefs && !matches!(service, "git-upload-pack" | "git-receive-pack")
    {
        return text(
            StatusCode::BAD_REQUEST,
            "git-gate: only smart HTTP is served; expected info/refs?service=git-upload-pack or git-receive-pack",
        );
    }
    let started = Instant::now();
    let gzip = req
        .headers()
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| {
            v.as_bytes().eq_ignore_ascii_case(b"gzip")
                || v.as_bytes().eq_ignore_ascii_case(b"x-gzip")
        });
    // The gate hands git decoded bodies, so git must not decode again.
    let mut headers = req.headers().clone();
    headers.remove(http::header::CONTENT_ENCODING);
    let method = req.method().as_str().to_owned();
    let body = req.into_body();
    let path_info = format!("/{name}.git/{rest}");
    let req = CgiRequest {
        method: &method,
        path_info: &path_info,
        query: &query,
        headers: &headers,
        remote_addr: peer.ip().to_string(),
    };

    match endpoint {
        Endpoint::InfoRefs => {
            let refresh = refresh(&gate, &state).await;
            info!(
                remote = name,
                service,
                refresh,
                duration_ms = started.elapsed().as_millis() as u64,
                "ref advertisement"
            );
            let env = base_env(&gate, &state, None);
            serve(
                &gate,
                env,
                req,
                Bytes::new(),
                cgi::Rest::None,
                gate.cfg.max_request_bytes,
                None,
            )
            .await
        }
        Endpoint::UploadPack => {
            // Whole negotiation request, decoded and checked before git sees it.
            let prefix = match read_whole(
                body,
                gzip,
                gate.cfg.max_request_bytes,
                gate.cfg.idle_timeout,
            )
            .await
            {
                Ok(p) => p,
                Err(resp) => return *resp,
            };
            let stale = state
                .last_refresh
                .lock()
                .map(|l| l.is_some_and(|(_, ok)| !ok))
                .unwrap_or(false);
            let env = base_env(&gate, &state, None);
            let resp = serve(
                &gate,
                env,
                req,
                prefix,
                cgi::Rest::None,
                gate.cfg.max_request_bytes,
                None,
            )
            .await;
            info!(
                remote = name,
                decision = "fetch",
                mirror_stale = stale,
                duration_ms = started.elapsed().as_millis() as u64,
                "fetch served"
            );
            if stale {
                crate::sideband::warn_in_fetch(
                    resp,
                    "git-gate: upstream unreachable; served from the gate's mirror, which may be out of date",
                )
            } else {
                resp
            }
        }
        Endpoint::ReceivePack => {
            let declared = headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if let Some(len) = declared.filter(|l| *l > gate.cfg.max_push_bytes) {
                warn!(
                    remote = name,
                    decision = "reject",
                    reason = "push too large",
                    bytes = len,
                    limit = gate.cfg.max_push_bytes,
                    "push decision"
                );
                return text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "git-gate: push of {len} bytes exceeds the gate's {}-byte limit; push fewer commits at a time or ask the operator to raise --max-push-bytes",
                        gate.cfg.max_push_bytes
                    ),
                );
            }
            let n = gate.seq.fetch_add(1, Ordering::Relaxed);
            let limits = crate::intake::Limits {
                max_request_bytes: gate.cfg.max_request_bytes,
                max_push_bytes: gate.cfg.max_push_bytes,
                pack: crate::pack::Limits {
                    max_object_bytes: gate.cfg.max_object_bytes,
                    max_total_bytes: gate.cfg.max_inflated_bytes,
                },
                idle: gate.cfg.idle_timeout,
            };
            let spool = gate.spool.join(format!("{}-{n}.pack", std::process::id()));
            let mut spooled = match crate::intake::receive(body, gzip, limits, spool).await {
                Ok(s) => s,
                Err(rejection) => return refuse_push(name, rejection, started),
            };
            // Only now, with the whole push checked, take the remote.
            let guard = state.write.clone().lock_owned().await;
            let report = gate
                .reports
                .join(format!("{}-{n}.json", std::process::id()));
            let env = base_env(&gate, &state, Some(&report));
            let rest = match spooled.pack.take_file() {
                Some(f) => cgi::Rest::File(tokio::fs::File::from_std(f)),
                None => cgi::Rest::None,
            };
            let finish = Finish {
                state: state.clone(),
                report,
                started,
                inflated_bytes: spooled.inflated_bytes,
                _spool: spooled.pack,
                _guard: guard,
            };
            serve(
                &gate,
                env,
                req,
                spooled.commands,
                rest,
                gate.cfg.max_push_bytes,
                Some(finish),
            )
            .await
        }
    }
}

/// The answer to a push the intake did not take, and its log line.
fn refuse_push(
    remote: &str,
    rejection: crate::intake::Rejection,
    started: Instant,
) -> Response<Body> {
    use crate::intake::Rejection;
    let duration_ms = started.elapsed().as_millis() as u64;
    match rejection {
        Rejection::BadRequest(msg) => {
            warn!(remote, decision = "reject", reason = %msg, duration_ms, "push decision");
            text(StatusCode::BAD_REQUEST, format!("git-gate: {msg}"))
        }
        Rejection::Stalled(idle) => {
            warn!(
                remote,
                decision = "reject",
                reason = "request body stalled",
                idle_secs = idle.as_secs(),
                duration_ms,
                "push decision"
            );
            text(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "git-gate: the push stopped arriving for {} s; nothing was pushed",
                    idle.as_secs()
                ),
            )
        }
        Rejection::Refused { commands, message } => {
            info!(remote, decision = "reject", reason = %message, upstream = "not-attempted", duration_ms, "push decision");
            crate::sideband::refused_push(
                &commands,
                &format!(
                    "{message}\nNothing was pushed upstream and nothing was stored on the gate."
                ),
            )
        }
    }
}

/// Reads a whole (upload-pack) request body into memory, gzip-decoded when
/// `gzip`, within `limit` bytes (decoded) and `idle` per pause, and checks
/// that it is whole pkt-lines.
async fn read_whole(
    mut body: Incoming,
    gzip: bool,
    limit: u64,
    idle: Duration,
) -> Result<Bytes, Box<Response<Body>>> {
    let bad = |status: StatusCode, msg: String| Box::new(text(status, format!("git-gate: {msg}")));
    let too_large = || {
        bad(
            StatusCode::BAD_REQUEST,
            format!(
                "request too large: more than {limit} bytes; split the request or raise --max-request-bytes"
            ),
        )
    };
    let mut buf = BytesMut::new();
    loop {
        match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                return Err(bad(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("the request stopped arriving for {} s", idle.as_secs()),
                ));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(bad(
                    StatusCode::BAD_REQUEST,
                    format!("reading the request body failed: {e}"),
                ));
            }
            Ok(Some(Ok(frame))) => {
                if let Ok(d) = frame.into_data() {
                    buf.extend_from_slice(&d);
                }
            }
        }
        if buf.len() as u64 > limit {
            return Err(too_large());
        }
    }
    let buf = if gzip {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&buf[..])
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(|e| {
                bad(
                    StatusCode::BAD_REQUEST,
                    format!("the gzip request body is invalid: {e}"),
                )
            })?;
        if out.len() as u64 > limit {
            return Err(too_large());
        }
        Bytes::from(out)
    } else {
        buf.freeze()
    };
    pktline::check_all(&buf).map_err(|e| bad(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok(buf)
}

/// Environment of the CGI child (and through it the pre-receive hook).
fn base_env(gate: &Gate, state: &RemoteState, report: Option<&PathBuf>) -> Vec<(String, String)> {
    let mut env = gate.cfg.child_env.clone();
    env.push((
        hook_env::REMOTES.into(),
        gate.cfg.remotes_path.display().to_string(),
    ));
    env.push((hook_env::REMOTE.into(), state.remote.name.to_string()));
    if let Some(r) = &gate.cfg.rules_path {
        env.push((hook_env::RULES.into(), r.display().to_string()));
    }
    if let Some(ca) = &gate.cfg.upstream_ca {
        env.push((hook_env::UPSTREAM_CA.into(), ca.display().to_string()));
    }
    if let Some(r) = report {
        env.push((hook_env::REPORT.into(), r.display().to_string()));
    }
    env
}

/// After a push: log the hook's decision, remove the spool, release the
/// remote.
struct Finish {
    state: Arc<RemoteState>,
    report: PathBuf,
    started: Instant,
    inflated_bytes: u64,
    _spool: crate::intake::Spool,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

async fn serve(
    gate: &Gate,
    env: Vec<(String, String)>,
    req: CgiRequest<'_>,
    prefix: Bytes,
    rest: cgi::Rest,
    limit: u64,
    finish: Option<Finish>,
) -> Response<Body> {
    let running = match cgi::spawn(&gate.cfg.data_dir, &env, req, prefix, rest, limit).await {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "http-backend failed");
            return text(StatusCode::BAD_GATEWAY, format!("git-gate: {e}"));
        }
    };
    let cgi::Running {
        response,
        mut child,
        feeder,
        stderr,
    } = running;
    tokio::spawn(async move {
        let status = child.wait().await;
        let fed = feeder.await.unwrap_or_else(|e| Err(e.to_string()));
        let err = stderr.await.unwrap_or_default();
        if let Err(e) = &fed {
            warn!(error = %e, "request body not fully delivered to git (push aborted; nothing lands)");
        }
        if !err.trim().is_empty() {
            debug!(stderr = %err.trim(), "http-backend stderr");
        }
        if let Some(f) = finish {
            log_push(&f, status.map(|s| s.success()).unwrap_or(false), fed.err());
        }
    });
    response
}

fn log_push(f: &Finish, git_ok: bool, body_error: Option<String>) {
    let duration_ms = f.started.elapsed().as_millis() as u64;
    match std::fs::read(&f.report)
        .ok()
        .and_then(|b| serde_json::from_slice::<HookReport>(&b).ok())
    {
        Some(r) => {
            let _ = std::fs::remove_file(&f.report);
            if r.upstream == "stale" {
                // Upstream moved under the mirror: the agent was told to
                // fetch, so its next fetch must not be debounced.
                if let Ok(mut l) = f.state.last_refresh.lock() {
                    *l = None;
                }
            }
            info!(
                remote = %f.state.remote.name,
                decision = %r.decision,
                refs = %r.refs.join(" "),
                commits_scanned = r.commits_scanned,
                blobs_scanned = r.blobs_scanned,
                bytes_scanned = r.bytes_scanned,
                inflated_bytes = f.inflated_bytes,
                findings = r.findings,
                upstream = %r.upstream,
                reason = %r.reason,
                hook_peak_rss_kib = r.peak_rss_kib,
                duration_ms,
                "push decision"
            );
        }
        None => info!(
            remote = %f.state.remote.name,
            decision = "reject",
            git_ok,
            body_error = body_error.as_deref().unwrap_or(""),
            duration_ms,
            "push ended before the gate's hook decided (malformed or aborted request)"
        ),
    }
}

/// Refreshes the mirror unless it was refreshed within the debounce
/// interval. Returns what happened, for the log line.
async fn refresh(gate: &Gate, state: &RemoteState) -> &'static str {
    // Failures are debounced too: an unreachable upstream costs one attempt
    // per interval, not one per request.
    let fresh = |s: &RemoteState| {
        s.last_refresh
            .lock()
            .ok()
            .and_then(|l| *l)
            .is_some_and(|(at, _)| at.elapsed() < gate.cfg.refresh_interval)
    };
    // A push in flight holds the lock and may end by invalidating the
    // debounce (upstream moved): wait for it rather than serve around it.
    if fresh(state) && state.write.try_lock().is_ok() {
        return "debounced";
    }
    let _w = state.write.lock().await;
    if fresh(state) {
        return "debounced";
    }
    let result = mirror::refresh(&state.mirror, &state.upstream, &gate.cfg.child_env).await;
    let ok = result.is_ok();
    if let Ok(mut l) = state.last_refresh.lock() {
        *l = Some((Instant::now(), ok));
    }
    match result {
        Ok(()) => "ok",
        Err(e) => {
            warn!(remote = %state.remote.name, upstream = %state.upstream.url, error = %e, "upstream refresh failed; serving the mirror as is");
            "failed"
        }
    }
}

/// A bounded wait used by callers that drain (exposed for `main`).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
