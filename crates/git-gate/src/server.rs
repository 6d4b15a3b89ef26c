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
    /// The listener failed.
    #[error("accepting connections: {0}")]
    Accept(std::io::Error),
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
    seq: AtomicU64,
}

/// Prepares every mirror, then serves git smart HTTP on `listener` until
/// `shutdown` is cancelled; in-flight requests are then awaited (the caller
/// bounds that with its grace timeout).
pub async fn run(
    listener: TcpListener,
    cfg: Config,
    shutdown: CancellationToken,
) -> Result<(), GateError> {
    let gate = Arc::new(prepare(cfg).await?);
    let tracker = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) if is_transient(&e) => {
                    warn!(error = %e, "accept failed; continuing");
                    continue;
                }
                Err(e) => return Err(GateError::Accept(e)),
            },
        };
        let gate = gate.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(
            async move {
                let svc = service_fn(move |req| {
                    let gate = gate.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(gate, req, peer).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
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

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    ) || e.raw_os_error() == Some(24)
        || e.raw_os_error() == Some(23)
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
    // Reports left by a previous run (killed mid-push) are stale.
    let _ = std::fs::remove_dir_all(&reports);
    std::fs::create_dir_all(&reports).map_err(|source| GateError::DataDir {
        path: reports.clone(),
        source,
    })?;
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
    let headers = req.headers().clone();
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
                None,
                gate.cfg.max_request_bytes,
                None,
            )
            .await
        }
        Endpoint::UploadPack => {
            // Whole negotiation request, checked before git sees it.
            let prefix = match read_prefix(
                body,
                gate.cfg.max_request_bytes,
                |buf| {
                    if gzip {
                        Ok(None)
                    } else {
                        pktline::check_all(buf).map(|()| None)
                    }
                },
                true,
            )
            .await
            {
                Ok((p, rest)) => {
                    debug_assert!(rest.is_none());
                    p
                }
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
                None,
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
            let (prefix, rest) = match read_prefix(
                body,
                gate.cfg.max_request_bytes,
                |buf| {
                    if gzip {
                        Ok(Some(buf.len()))
                    } else {
                        pktline::command_section_end(buf)
                    }
                },
                false,
            )
            .await
            {
                Ok(x) => x,
                Err(resp) => return *resp,
            };
            let guard = state.write.clone().lock_owned().await;
            let n = gate.seq.fetch_add(1, Ordering::Relaxed);
            let report = gate
                .reports
                .join(format!("{}-{n}.json", std::process::id()));
            let env = base_env(&gate, &state, Some(&report));
            let finish = Finish {
                state: state.clone(),
                report,
                started,
                _guard: guard,
            };
            serve(
                &gate,
                env,
                req,
                prefix,
                rest,
                gate.cfg.max_push_bytes,
                Some(finish),
            )
            .await
        }
    }
}

/// Reads the start of a body into memory until `check` says it has seen
/// enough (`Ok(Some(_))`), the body ends, or `limit` is hit (400). With
/// `whole`, the body must end within the limit and `check` runs on it all.
async fn read_prefix(
    mut body: Incoming,
    limit: u64,
    check: impl Fn(&[u8]) -> Result<Option<usize>, pktline::PktError>,
    whole: bool,
) -> Result<(Bytes, Option<Incoming>), Box<Response<Body>>> {
    let bad = |msg: String| Box::new(text(StatusCode::BAD_REQUEST, format!("git-gate: {msg}")));
    let mut buf = BytesMut::new();
    loop {
        match body.frame().await {
            None => break,
            Some(Err(e)) => return Err(bad(format!("reading the request body failed: {e}"))),
            Some(Ok(frame)) => {
                if let Ok(d) = frame.into_data() {
                    buf.extend_from_slice(&d);
                }
            }
        }
        if buf.len() as u64 > limit {
            return Err(bad(format!(
                "request too large: more than {limit} bytes before the pack data; split the push or raise --max-request-bytes"
            )));
        }
        if !whole {
            match check(&buf) {
                Ok(Some(_)) => return Ok((buf.freeze(), Some(body))),
                Ok(None) => {}
                Err(e) => return Err(bad(e.to_string())),
            }
        }
    }
    match check(&buf) {
        Ok(Some(_)) => Ok((buf.freeze(), None)),
        Ok(None) if whole => Ok((buf.freeze(), None)),
        Ok(None) if buf.is_empty() => Err(bad("empty push request".into())),
        Ok(None) => Err(bad(pktline::PktError::Truncated { offset: 0 }.to_string())),
        Err(e) => Err(bad(e.to_string())),
    }
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

/// After a push: log the hook's decision and release the remote.
struct Finish {
    state: Arc<RemoteState>,
    report: PathBuf,
    started: Instant,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

async fn serve(
    gate: &Gate,
    env: Vec<(String, String)>,
    req: CgiRequest<'_>,
    prefix: Bytes,
    rest: Option<Incoming>,
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
