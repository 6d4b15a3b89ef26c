//! The server: accept loop, CONNECT interception, per-request decision and
//! streaming forwarding, and the readable answers the proxy gives itself.
//!
//! Invariant: every byte a client sends either passes [`decide`] and goes to
//! the one upstream connector, or is answered/closed here. There is no raw
//! pass-through: a tunnel that does not start with a TLS ClientHello or an
//! HTTP request is closed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use manifest::RequestHost;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::addr::AddressPolicy;
use crate::allowlist::Allowlist;
use crate::ca::CertAuthority;
use crate::config::{Config, Limits};
use crate::decision::{DECISION_HEADER, Decision, MAGIC_HOST, Magic, Target, decide};
use crate::dlp::{Dlp, DlpAction, DlpBody, DlpHit, Place};
use crate::drain::ClientBody;
use crate::journal;
use crate::stream::{IdleTimeout, Prefixed};
use crate::upstream::{ConnectError, Connector, split_host_port};
use crate::ws::{self, WsLimits};
use crate::ws_scan::DlpMessages;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type on both legs.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// The running proxy's shared state.
#[derive(Debug)]
pub struct Proxy {
    allowlist: Arc<Allowlist>,
    ca: CertAuthority,
    /// Upstream connections to global addresses only.
    client: Client<Connector, ProxyBody>,
    /// For routes with `allow_private`: a separate pool, so a connection
    /// to an inside address is never reused by a route without the opt-in.
    client_private: Client<Connector, ProxyBody>,
    limits: Limits,
    dlp: Arc<Dlp>,
    inbound: Arc<crate::inbound::Inbound>,
}

impl Proxy {
    /// Builds the proxy from a validated configuration.
    pub fn new(cfg: Config) -> Arc<Self> {
        let client = |policy| {
            let connector = Connector::new(
                cfg.resolver.clone(),
                cfg.upstream_tls.clone(),
                cfg.upstream_proxy.clone(),
                cfg.limits.connect_timeout,
                policy,
            );
            Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .pool_idle_timeout(std::time::Duration::from_secs(90))
                .pool_max_idle_per_host(64)
                .build(connector)
        };
        Arc::new(Self {
            client: client(AddressPolicy::GlobalOnly),
            client_private: client(AddressPolicy::AllowPrivate),
            allowlist: cfg.allowlist,
            ca: cfg.ca,
            limits: cfg.limits,
            dlp: cfg.dlp,
            inbound: cfg.inbound,
        })
    }

    fn client(&self, policy: AddressPolicy) -> &Client<Connector, ProxyBody> {
        match policy {
            AddressPolicy::GlobalOnly => &self.client,
            AddressPolicy::AllowPrivate => &self.client_private,
        }
    }

    /// The live route table (for reloads and status).
    pub fn allowlist(&self) -> &Arc<Allowlist> {
        &self.allowlist
    }

    /// Re-reads the routes file; see [`Allowlist::reload`]. Logs the outcome.
    pub fn reload(&self) -> Result<String, crate::allowlist::LoadError> {
        match self.allowlist.reload() {
            Ok(v) => {
                let cur = self.allowlist.current();
                tracing::info!(
                    version = %v,
                    routes = cur.table().routes().len(),
                    missing_token_env = ?cur.missing_tokens(),
                    "routes reloaded"
                );
                Ok(v)
            }
            Err(e) => {
                tracing::error!(error = %e, file = %self.allowlist.path().display(), "routes reload failed; keeping the previous table");
                Err(e)
            }
        }
    }
}

/// Per-run context shared by every connection task.
#[derive(Clone)]
struct Ctx {
    proxy: Arc<Proxy>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// The client connection's slot under `max_connections`; every task
    /// serving that connection (including its CONNECT tunnel) holds a clone,
    /// so the slot frees only when all of them are done.
    _permit: Option<Arc<OwnedSemaphorePermit>>,
}

/// Serves `listener` until `shutdown` is cancelled, then stops accepting and
/// waits for open connections to finish (each is told to close after its
/// current request). Callers bound the drain with their own grace timeout.
pub async fn run(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let tasks = TaskTracker::new();
    let ctx = Ctx {
        proxy: proxy.clone(),
        shutdown: shutdown.clone(),
        tasks: tasks.clone(),
        _permit: None,
    };
    let permits = Arc::new(Semaphore::new(proxy.limits.max_connections));
    let heartbeat = tokio::spawn(timer_heartbeat());
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(client = %peer, limit = proxy.limits.max_connections, "connection limit reached; answering 503");
            tasks.spawn(refuse_busy(tcp));
            continue;
        };
        let ctx = Ctx {
            _permit: Some(Arc::new(permit)),
            ..ctx.clone()
        };
        tasks.spawn(serve_client(ctx, tcp, peer));
    }
    drop(listener);
    tasks.close();
    tasks.wait().await;
    heartbeat.abort();
    Ok(())
}

/// How often [`timer_heartbeat`] ticks: shorter than every per-request
/// timer the proxy arms (header read, TLS handshake, connect and response
/// timeouts are seconds long).
const HEARTBEAT: std::time::Duration = std::time::Duration::from_millis(500);

/// Keeps the runtime's timer wheel from interrupting itself once per
/// request. Every request arms timers (hyper's header-read timeout, the
/// response timeout); when a new timer expires before the time driver's
/// next planned wake, or when no timer was pending as the driver parked,
/// tokio wakes the driver to re-plan: an `eventfd` write and an extra
/// `epoll_wait` return per request (measured: one of each per keep-alive
/// request, about a tenth of the proxy's CPU). A timer that always fires
/// within [`HEARTBEAT`] keeps the planned wake earlier than any
/// per-request deadline, so arming those never needs the wake-up. Cost:
/// two wake-ups a second.
async fn timer_heartbeat() {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

async fn refuse_busy(mut tcp: TcpStream) {
    let body = "egress-proxy: too many concurrent connections; retry shortly\n";
    let msg = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n{DECISION_HEADER}: error\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        tcp.write_all(msg.as_bytes()),
    )
    .await;
    let _ = tcp.shutdown().await;
    // Linger: read what the client already sent so closing does not turn
    // into a reset that destroys the answer before the client reads it.
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        let mut total = 0;
        while let Ok(n) = tcp.read(&mut sink).await {
            total += n;
            if n == 0 || total > 64 * 1024 {
                break;
            }
        }
    })
    .await;
}

/// Upper bound of one connection's read (and flattened write) buffer:
/// hyper's own default. It bounds how much body a single read can pull in,
/// not the request head, which `max_header_size` limits separately.
const CONN_BUF_BYTES: usize = 8192 + 4096 * 100;

fn http1(limits: &Limits) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    // The head limit is hyper's `max_header_size` (431 past it; also caps
    // chunked trailers). `max_buf_size` stays large enough for the head
    // limit, so big body reads are not cut to the header limit's size.
    b.timer(TokioTimer::new())
        .keep_alive(true)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(CONN_BUF_BYTES))
        .header_read_timeout(limits.header_read_timeout);
    b
}

/// Serves one HTTP/1.1 connection (the client's TCP connection, or the
/// decrypted inside of a tunnel) until it ends or shutdown asks it to.
async fn serve_http<I, S>(ctx: &Ctx, io: I, peer: SocketAddr, service: S, what: &'static str)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            Request<Incoming>,
            Response = Response<ProxyBody>,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let conn = http1(&ctx.proxy.limits)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let res = tokio::select! {
        r = conn.as_mut() => r,
        () = ctx.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = res {
        if e.is_parse() || e.is_parse_status() {
            tracing::warn!(client = %peer, conn = what, error = %e, decision = "bad-request", status = 400, "malformed request");
        } else if e.is_timeout() {
            tracing::debug!(client = %peer, conn = what, error = %e, "connection timed out");
        } else {
            tracing::debug!(client = %peer, conn = what, error = %e, "connection ended with an error");
        }
    }
}

async fn serve_client(ctx: Ctx, tcp: TcpStream, peer: SocketAddr) {
    let io = IdleTimeout::new(tcp, ctx.proxy.limits.idle_timeout);
    let c = ctx.clone();
    let service = service_fn(move |req| {
        let c = c.clone();
        async move { Ok::<_, Infallible>(handle_outer(c, peer, req).await) }
    });
    serve_http(&ctx, io, peer, service, "client").await;
}

/// Where a request goes once allowed.
#[derive(Clone, Debug)]
struct Origin {
    scheme: &'static str,
    /// As the client wrote it (for messages and the Host header).
    host: String,
    request_host: RequestHost,
    port: u16,
}

impl Origin {
    fn default_port(&self) -> u16 {
        if self.scheme == "https" { 443 } else { 80 }
    }

    /// `host[:port]` as it goes into a URI and the Host header.
    fn authority(&self) -> String {
        let h = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.default_port() {
            h
        } else {
            format!("{h}:{}", self.port)
        }
    }
}

/// The client's request with its body wrapped so that a refusal mid-upload
/// still reaches the client (see [`crate::drain`]).
fn client_request(req: Request<Incoming>) -> Request<ClientBody> {
    let expects_continue = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    req.map(|b| ClientBody::new(b, expects_continue))
}

async fn handle_outer(ctx: Ctx, peer: SocketAddr, req: Request<Incoming>) -> Response<ProxyBody> {
    let req = client_request(req);
    if req.method() == Method::CONNECT {
        return handle_connect(ctx, peer, req);
    }
    let uri = req.uri().clone();
    match uri.scheme_str() {
        Some("http") => match origin_from_uri(&uri, "http") {
            Ok(origin) => forward(ctx, peer, origin, req).await,
            Err(msg) => bad_request(peer, &req, &msg),
        },
        Some(other) => {
            let msg = format!(
                "absolute-form requests with scheme {other:?} are not supported; send http:// URLs in absolute form and https:// through CONNECT"
            );
            bad_request(peer, &req, &msg)
        }
        None => {
            // Origin-form on the proxy port: only the magic host answers.
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| split_host_port(h, 80));
            match host {
                Some((h, port)) if h.eq_ignore_ascii_case(MAGIC_HOST) => {
                    match RequestHost::parse(MAGIC_HOST) {
                        Ok(request_host) => {
                            let origin = Origin {
                                scheme: "http",
                                request_host,
                                host: h,
                                port,
                            };
                            forward(ctx, peer, origin, req).await
                        }
                        Err(e) => bad_request(peer, &req, &e.to_string()),
                    }
                }
                _ => bad_request(
                    peer,
                    &req,
                    "this is a forward proxy: send requests in absolute form (http://host/path) or use CONNECT host:port for https",
                ),
            }
        }
    }
}

fn origin_from_uri(uri: &Uri, scheme: &'static str) -> Result<Origin, String> {
    let auth = uri
        .authority()
        .ok_or_else(|| format!("request target {uri} has no host"))?;
    if auth.as_str().contains('@') {
        return Err(format!(
            "request target {uri} carries userinfo; credentials in URLs are not forwarded"
        ));
    }
    let host = auth
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let request_host = RequestHost::parse(&host).map_err(|e| e.to_string())?;
    let default = if scheme == "https" { 443 } else { 80 };
    Ok(Origin {
        scheme,
        host,
        request_host,
        port: auth.port_u16().unwrap_or(default),
    })
}

fn handle_connect(ctx: Ctx, peer: SocketAddr, mut req: Request<ClientBody>) -> Response<ProxyBody> {
    let Some(auth) = req.uri().authority().cloned() else {
        return bad_request(peer, &req, "CONNECT needs a host:port target");
    };
    let Some(port) = auth.port_u16() else {
        return bad_request(peer, &req, "CONNECT target has no port; expected host:port");
    };
    let host = auth
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let request_host = match RequestHost::parse(&host) {
        Ok(h) => h,
        Err(e) => return bad_request(peer, &req, &format!("CONNECT target: {e}")),
    };
    let origin = Origin {
        scheme: "https",
        host,
        request_host,
        port,
    };
    let upgrade = hyper::upgrade::on(&mut req);
    let c = ctx.clone();
    ctx.tasks.spawn(async move {
        match upgrade.await {
            Ok(upgraded) => tunnel(c, peer, origin, upgraded).await,
            Err(e) => tracing::debug!(client = %peer, error = %e, "CONNECT upgrade failed"),
        }
    });
    Response::new(empty())
}

/// The inside of a CONNECT: TLS (intercepted with a leaf for the CONNECT
/// host) or plain HTTP; anything else is closed.
async fn tunnel(ctx: Ctx, peer: SocketAddr, origin: Origin, upgraded: hyper::upgrade::Upgraded) {
    let mut io = TokioIo::new(upgraded);
    let limits = &ctx.proxy.limits;
    // Read until the protocol is clear: one byte says TLS (0x16); an HTTP
    // request line needs its method and a space (at most 8 bytes).
    let sniff = async {
        let mut first = Vec::with_capacity(2048);
        let mut buf = [0u8; 2048];
        loop {
            let n = io.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(first);
            }
            first.extend_from_slice(&buf[..n]);
            if first[0] == 0x16 || first.len() >= 8 || !first.iter().all(u8::is_ascii_uppercase) {
                return Ok(first);
            }
        }
    };
    let first = match tokio::time::timeout(limits.tls_handshake_timeout, sniff).await {
        Ok(Ok(b)) if !b.is_empty() => b,
        Ok(Ok(_)) => return,
        Ok(Err(e)) => {
            tracing::debug!(client = %peer, error = %e, "tunnel read failed");
            return;
        }
        Err(_) => {
            tracing::warn!(client = %peer, host = %origin.request_host, "tunnel sent nothing usable within the handshake timeout; closed");
            return;
        }
    };
    let io = Prefixed::new(Bytes::from(first), io);
    let head = io.prefix().first().copied();
    if head == Some(0x16) {
        let cfg = match ctx.proxy.ca.server_config(origin.request_host.as_str()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(client = %peer, host = %origin.request_host, error = %e, "cannot mint a leaf certificate; closing tunnel");
                return;
            }
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
        let tls = match tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(io))
            .await
        {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                tracing::info!(client = %peer, host = %origin.request_host, error = %e, "client TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::info!(client = %peer, host = %origin.request_host, "client TLS handshake timed out");
                return;
            }
        };
        if let Some(sni) = tls.get_ref().1.server_name() {
            let same = RequestHost::parse(sni).is_ok_and(|s| s == origin.request_host);
            if !same {
                tracing::warn!(client = %peer, host = %origin.request_host, sni = %sni, decision = "deny", reason = "sni-mismatch", "TLS SNI differs from the CONNECT host (domain fronting); closed");
                return;
            }
        }
        serve_tunnel(ctx, peer, origin, tls).await;
    } else if looks_like_http(io.prefix()) {
        let origin = Origin {
            scheme: "http",
            ..origin
        };
        serve_tunnel(ctx, peer, origin, io).await;
    } else {
        tracing::warn!(client = %peer, host = %origin.request_host, decision = "deny", reason = "not-tls-or-http", "tunnel does not start with a TLS ClientHello or an HTTP request; closed");
    }
}

/// An HTTP/1 request line starts with an upper-case method token and a space.
fn looks_like_http(b: &[u8]) -> bool {
    let method_len = b.iter().take_while(|c| c.is_ascii_uppercase()).count();
    (3..=7).contains(&method_len) && b.get(method_len) == Some(&b' ')
}

async fn serve_tunnel<I>(ctx: Ctx, peer: SocketAddr, origin: Origin, io: I)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let c = ctx.clone();
    let origin = Arc::new(origin);
    let service = service_fn(move |req| {
        let c = c.clone();
        let origin = origin.clone();
        async move { Ok::<_, Infallible>(handle_inner(c, peer, &origin, req).await) }
    });
    serve_http(&ctx, io, peer, service, "tunnel").await;
}

/// A request inside a tunnel: its Host (and absolute-form authority, if
/// any) must name the CONNECT host, so a tunnel cannot front another host.
async fn handle_inner(
    ctx: Ctx,
    peer: SocketAddr,
    origin: &Origin,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let req = client_request(req);
    if req.method() == Method::CONNECT {
        return bad_request(peer, &req, "CONNECT inside a tunnel is not supported");
    }
    let claimed = match req.uri().authority() {
        Some(a) => Some(a.as_str().to_owned()),
        None => req
            .headers()
            .get(header::HOST)
            .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned()),
    };
    let Some(claimed) = claimed else {
        return bad_request(
            peer,
            &req,
            &format!(
                "the request has no Host header; HTTP/1.1 requires one, and inside a tunnel it must name the CONNECT host ({})",
                origin.authority()
            ),
        );
    };
    {
        let ok = split_host_port(&claimed, origin.port).is_some_and(|(h, p)| {
            p == origin.port && RequestHost::parse(&h).is_ok_and(|rh| rh == origin.request_host)
        });
        if !ok {
            let started = Instant::now();
            let body = format!(
                "egress-proxy: refused {} {}://{}{}\nreason: the request names host {claimed:?} but the tunnel was opened (CONNECT) to {}:{}; one tunnel serves one host (domain fronting is refused)\nremedy: open a separate CONNECT to the host you want to reach\n",
                req.method(),
                origin.scheme,
                origin.host,
                req.uri().path(),
                origin.host,
                origin.port
            );
            log_line(&LogFields {
                client: peer,
                method: req.method().as_str(),
                host: origin.request_host.as_str(),
                path: req.uri().path(),
                route: None,
                decision: "deny",
                reason: Some("host-mismatch"),
                status: 403,
                bytes_in: 0,
                bytes_out: body.len() as u64,
                started,
            });
            return text(StatusCode::FORBIDDEN, "deny", body);
        }
    }
    forward(ctx, peer, origin.clone(), req).await
}

/// Decides and, when allowed, forwards with streaming bodies both ways.
async fn forward(
    ctx: Ctx,
    peer: SocketAddr,
    origin: Origin,
    mut req: Request<ClientBody>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let table = ctx.proxy.allowlist.current();
    let method = req.method().clone();
    let raw_path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let target = Target {
        scheme: origin.scheme,
        port: origin.port,
        host: &origin.host,
        request_host: &origin.request_host,
        method: method.as_str(),
        path: &raw_path,
        query: query.as_deref(),
    };
    let mut fields = LogFields {
        client: peer,
        method: method.as_str(),
        host: origin.request_host.as_str(),
        path: &raw_path,
        route: None,
        decision: "allow",
        reason: None,
        status: 0,
        bytes_in: 0,
        bytes_out: 0,
        started,
    };
    let (route, path_and_query, inject, policy) = match decide(&table, &target) {
        Decision::Magic(m) => {
            let (status, body) = magic(&ctx.proxy, m);
            fields.decision = "introspection";
            fields.status = status.as_u16();
            fields.bytes_out = body.len() as u64;
            log_line(&fields);
            let mut resp = Response::new(full(body));
            *resp.status_mut() = status;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp.headers_mut()
                .insert(DECISION_HEADER, HeaderValue::from_static("introspection"));
            return resp;
        }
        Decision::Refuse(r) => {
            let body = r.body(&target);
            fields.decision = r.label();
            fields.reason = Some(r.code());
            fields.status = r.status().as_u16();
            fields.bytes_out = body.len() as u64;
            fields.route = r.route();
            log_line(&fields);
            return text(r.status(), r.label(), body);
        }
        Decision::Allow {
            route,
            path_and_query,
            inject,
        } => {
            let policy = if route.allow_private {
                AddressPolicy::AllowPrivate
            } else {
                AddressPolicy::GlobalOnly
            };
            (route.host.to_string(), path_and_query, inject, policy)
        }
    };

    let uri = match format!(
        "{}://{}{}",
        origin.scheme,
        origin.authority(),
        path_and_query
    )
    .parse::<Uri>()
    {
        Ok(u) => u,
        Err(e) => {
            drop(table);
            return bad_request(peer, &req, &format!("cannot build the upstream URL: {e}"));
        }
    };
    let wants_upgrade = is_upgrade(req.headers());
    if wants_upgrade && let Some(token) = non_websocket_upgrade(req.headers()) {
        drop(table);
        let body = format!(
            "egress-proxy: refused {method} {}://{}{raw_path}\nreason: only WebSocket upgrades are forwarded (their frames are inspected); `Upgrade: {token}` would switch to a protocol the proxy cannot police (h2c would skip the path allowlist)\nremedy: send the request without the Upgrade header (plain HTTP/1.1 works), or use a WebSocket\n",
            origin.scheme,
            origin.authority()
        );
        fields.route = Some(&route);
        fields.decision = "deny";
        fields.reason = Some("upgrade-refused");
        fields.status = 403;
        fields.bytes_out = body.len() as u64;
        log_line(&fields);
        return text(StatusCode::FORBIDDEN, "deny", body);
    }
    let client_upgrade = wants_upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    sanitize_request(&mut parts.headers, wants_upgrade);
    if let Some((name, _)) = &inject {
        // The client's value of the injected header never leaves.
        parts.headers.remove(name);
    }
    // Log what goes upstream: the normalised path, never the query.
    fields.path = path_and_query.split('?').next().unwrap_or("/");

    let dlp = &ctx.proxy.dlp;
    let scanned = dlp.covers(&origin.request_host);
    if scanned
        && let Some(hit) = dlp.scan_head(
            &origin.request_host,
            &route,
            &path_and_query,
            &parts.headers,
        )
    {
        if matches!(hit.place, Place::Url | Place::UrlJoined) {
            // The path itself carries the secret: keep it out of the logs.
            fields.path = REDACTED_PATH;
        }
        hit.log(hit.action, fields.host, fields.path);
        if hit.action == DlpAction::Block {
            let body = dlp_message(&method, &origin, &raw_path, &hit);
            fields.route = Some(&route);
            fields.decision = "deny";
            fields.reason = Some("dlp-blocked");
            fields.status = 403;
            fields.bytes_out = body.len() as u64;
            log_line(&fields);
            return text(StatusCode::FORBIDDEN, "deny", body);
        }
    }
    if let Ok(h) = HeaderValue::from_str(&origin.authority()) {
        parts.headers.insert(header::HOST, h);
    }
    if let Some((name, value)) = inject {
        parts.headers.insert(name, value);
    }
    parts.uri = uri;
    parts.version = http::Version::HTTP_11;

    let log = Arc::new(LogGuard::new(&fields, route));
    let blocked: Arc<OnceLock<DlpHit>> = Arc::new(OnceLock::new());
    let body: ProxyBody = if scanned {
        DlpBody::new(
            body.map_err(BoxError::from),
            dlp.clone(),
            blocked.clone(),
            log.host.clone(),
            log.path.clone(),
        )
        .for_request(&parts.headers)
        .boxed()
    } else {
        body.map_err(BoxError::from).boxed()
    };
    let upstream_req = Request::from_parts(
        parts,
        Counted::new(body, log.bytes_in.clone(), Some(log.clone())).boxed(),
    );
    drop(table);
    let limit = ctx.proxy.limits.response_timeout;
    let answer = tokio::time::timeout(limit, ctx.proxy.client(policy).request(upstream_req)).await;
    let mut resp = match answer {
        Ok(Ok(r)) => r,
        failed => {
            if let Some(hit) = blocked.get() {
                // The body stopped itself on a finding; nothing of the
                // secret reached the upstream.
                let body = dlp_message(&method, &origin, &raw_path, hit);
                log.finish("deny", Some("dlp-blocked"), 403);
                log.bytes_out.store(body.len() as u64, Ordering::Relaxed);
                return text(StatusCode::FORBIDDEN, "deny", body);
            }
            if let Ok(Err(e)) = &failed
                && let Some(reason) = not_global(e)
            {
                let body = format!(
                    "egress-proxy: refused {method} {}://{}{raw_path}\nreason: {reason}; the proxy connects only to global addresses, and route {} does not allow private ones\nremedy: this host points inside a private network (or at this machine); only the operator can allow that (allow_private: true on the route); the egress-block tool cannot\n",
                    origin.scheme,
                    origin.authority(),
                    log.route,
                );
                log.finish("deny", Some("private-address"), 403);
                log.bytes_out.store(body.len() as u64, Ordering::Relaxed);
                tracing::warn!(client = %peer, host = %origin.request_host, reason = %reason, decision = "deny", "upstream address is not global; refused");
                return text(StatusCode::FORBIDDEN, "deny", body);
            }
            let reason = match failed {
                Ok(Err(e)) => upstream_reason(&e),
                _ => format!(
                    "{} sent no response head within {}s",
                    origin.authority(),
                    limit.as_secs_f64()
                ),
            };
            let body = format!(
                "egress-proxy: upstream error for {method} {}://{}{raw_path}\nreason: {reason}\n",
                origin.scheme,
                origin.authority()
            );
            log.finish("error", Some("upstream-failed"), 502);
            log.bytes_out.store(body.len() as u64, Ordering::Relaxed);
            tracing::warn!(client = %peer, host = %origin.request_host, error = %reason, "upstream request failed");
            return text(StatusCode::BAD_GATEWAY, "error", body);
        }
    };
    let status = resp.status();
    log.finish("allow", None, status.as_u16());

    if status == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade
            && !resp
                .headers()
                .contains_key(header::SEC_WEBSOCKET_EXTENSIONS)
        {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            let (parts, _) = resp.into_parts();
            let log = log.clone();
            let scanner =
                DlpMessages::new(ctx.proxy.dlp.clone(), log.host.clone(), log.path.clone())
                    .with_inbound(ctx.proxy.inbound.clone(), &origin.request_host);
            let limits = WsLimits {
                max_frame: ctx.proxy.limits.ws_max_message_bytes as u64,
                max_message: ctx.proxy.limits.ws_max_message_bytes,
            };
            ctx.tasks.spawn(async move {
                let (Ok(client), Ok(upstream)) = (client_upgrade.await, upstream_upgrade.await)
                else {
                    tracing::debug!(client = %peer, "upgrade did not complete on both sides");
                    return;
                };
                let (to_up, to_client, closed) =
                    ws::relay(TokioIo::new(client), TokioIo::new(upstream), &scanner, limits)
                        .await;
                log.bytes_in.fetch_add(to_up, Ordering::Relaxed);
                log.bytes_out.fetch_add(to_client, Ordering::Relaxed);
                if let Some(close) = closed {
                    log.finish("deny", Some("websocket-closed"), 101);
                    tracing::warn!(client = %peer, host = %log.host, code = close.code, reason = %close.reason, "WebSocket closed by the proxy");
                }
            });
            let mut out = Response::from_parts(parts, empty());
            strip_hop_by_hop(out.headers_mut(), true);
            return out;
        }
        // An upstream 101 nobody asked for, or one that negotiated an
        // extension we did not offer, cannot be relayed safely.
        log.finish("error", Some("unexpected-101"), 502);
        return text(
            StatusCode::BAD_GATEWAY,
            "error",
            "egress-proxy: upstream switched protocols without an upgrade request\n".to_owned(),
        );
    }

    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    let inspected = crate::inbound::inspect(
        &ctx.proxy.inbound,
        &origin.request_host,
        &log.path,
        parts,
        body.map_err(BoxError::from).boxed(),
    )
    .await;
    let (parts, body) = match inspected {
        crate::inbound::Inspected::Pass(parts, body) => (parts, body),
        crate::inbound::Inspected::Blocked(resp) => {
            log.finish("deny", Some("injection-blocked"), 403);
            return resp;
        }
    };
    let body = Counted::new(body, log.bytes_out.clone(), Some(log)).boxed();
    Response::from_parts(parts, body)
}

/// Logged instead of a path that carries a secret.
const REDACTED_PATH: &str = "<redacted: DLP finding in the URL>";

/// The 403 body for a request DLP stopped. Names the rule and where the
/// finding is, with the scanner's masked excerpt; never the secret.
fn dlp_message(method: &Method, origin: &Origin, raw_path: &str, hit: &DlpHit) -> String {
    let shown = if matches!(hit.place, Place::Url | Place::UrlJoined) {
        "(path withheld)"
    } else {
        raw_path
    };
    format!(
        "egress-proxy: refused {method} {}://{}{shown}\nreason: it carries what looks like a secret: {}: {}\ndata-loss prevention (dlp_action: block) stopped the request before the secret left the bottle\nremedy: do not send credentials or keys to this host; if this is a false positive, tell the operator (who can exempt the content with a rule allowlist or set bottle.egress.dlp_action: warn)\n",
        origin.scheme,
        origin.authority(),
        hit.summary(),
        hit.excerpt
    )
}

fn magic(proxy: &Proxy, m: Magic) -> (StatusCode, String) {
    match m {
        Magic::Allowlist => (StatusCode::OK, proxy.allowlist.current().table().introspection().to_string()),
        Magic::Status => {
            let mut status = proxy.allowlist.status_json();
            status["dlp"] = proxy.dlp.status_json();
            status["inbound"] = proxy.inbound.status_json();
            (StatusCode::OK, status.to_string())
        }
        Magic::NotFound => (
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "unknown endpoint; the proxy answers GET /allowlist and GET /status"}).to_string(),
        ),
    }
}

/// The refusal text when the connector refused a non-global address.
fn not_global(e: &hyper_util::client::legacy::Error) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(c @ ConnectError::NotGlobal { .. }) = err.downcast_ref::<ConnectError>() {
            return Some(c.to_string());
        }
        cur = err.source();
    }
    None
}

/// The most specific reason in an upstream error chain.
fn upstream_reason(e: &hyper_util::client::legacy::Error) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut last = e.to_string();
    while let Some(err) = cur {
        if let Some(c) = err.downcast_ref::<ConnectError>() {
            return c.to_string();
        }
        last = err.to_string();
        cur = err.source();
    }
    last
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The upgrade token when it is anything but exactly `websocket`.
fn non_websocket_upgrade(h: &HeaderMap) -> Option<String> {
    let tokens: Vec<String> = h
        .get_all(header::UPGRADE)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    let only_websocket = tokens.len() == 1 && tokens[0].trim().eq_ignore_ascii_case("websocket");
    (!only_websocket).then(|| tokens.join(", "))
}

fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Removes hop-by-hop headers, headers the Connection header lists, and
/// every `Proxy-*` header. An upgrade keeps `Connection: upgrade` and
/// `Upgrade`.
fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    let listed: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    let upgrade = keep_upgrade
        .then(|| h.get(header::UPGRADE).cloned())
        .flatten();
    for name in listed {
        h.remove(name);
    }
    for name in HOP_BY_HOP {
        h.remove(*name);
    }
    let proxy_headers: Vec<HeaderName> = h
        .keys()
        .filter(|k| k.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in proxy_headers {
        h.remove(name);
    }
    if let Some(u) = upgrade {
        h.insert(header::UPGRADE, u);
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

fn sanitize_request(h: &mut HeaderMap, keep_upgrade: bool) {
    strip_hop_by_hop(h, keep_upgrade);
    // hyper's server already answered `100 Continue` to the client when the
    // body was first read; the upstream leg streams the body directly.
    h.remove(header::EXPECT);
    h.remove(header::HOST);
    // No WebSocket extension is offered: frames stay uncompressed, so the
    // inspector reads what the agent sends (see `ws`).
    h.remove(header::SEC_WEBSOCKET_EXTENSIONS);
}

fn empty() -> ProxyBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}

fn full(s: String) -> ProxyBody {
    http_body_util::Full::new(Bytes::from(s))
        .map_err(|never| match never {})
        .boxed()
}

fn text(status: StatusCode, decision: &'static str, body: String) -> Response<ProxyBody> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(DECISION_HEADER, HeaderValue::from_static(decision));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn bad_request<B>(peer: SocketAddr, req: &Request<B>, msg: &str) -> Response<ProxyBody> {
    let body = format!("egress-proxy: bad request: {msg}\n");
    log_line(&LogFields {
        client: peer,
        method: req.method().as_str(),
        host: req.uri().host().unwrap_or(""),
        path: req.uri().path(),
        route: None,
        decision: "bad-request",
        reason: Some("malformed"),
        status: 400,
        bytes_in: 0,
        bytes_out: body.len() as u64,
        started: Instant::now(),
    });
    text(StatusCode::BAD_REQUEST, "bad-request", body)
}

/// The fields of one decision log line.
struct LogFields<'a> {
    client: SocketAddr,
    method: &'a str,
    host: &'a str,
    path: &'a str,
    route: Option<&'a str>,
    decision: &'a str,
    reason: Option<&'a str>,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    started: Instant,
}

/// One structured line per request decision. Path only (never the query,
/// which may carry credentials); never a header value or a body. With the
/// JSON format it is serialised straight into the log buffer
/// ([`journal::decision_line`]); `RUST_LOG` can still turn it off.
fn log_line(f: &LogFields<'_>) {
    if !tracing::enabled!(target: "egress_proxy::decision", tracing::Level::INFO) {
        return;
    }
    let line = journal::Decision {
        client: f.client,
        method: f.method,
        host: f.host,
        path: f.path,
        route: f.route.unwrap_or(""),
        decision: f.decision,
        reason: f.reason.unwrap_or(""),
        status: f.status,
        bytes_in: f.bytes_in,
        bytes_out: f.bytes_out,
        duration_ms: f.started.elapsed().as_secs_f64() * 1000.0,
    };
    if journal::decision_line(&line) {
        return;
    }
    tracing::info!(
        target: "egress_proxy::decision",
        client = %f.client,
        method = f.method,
        host = f.host,
        path = f.path,
        route = f.route.unwrap_or(""),
        decision = f.decision,
        reason = f.reason.unwrap_or(""),
        status = f.status,
        bytes_in = f.bytes_in,
        bytes_out = f.bytes_out,
        duration_ms = f.started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
}

/// Emits the decision line for a forwarded request when the last body
/// holding it is dropped, so the line carries the bytes moved each way and
/// the full duration.
struct LogGuard {
    client: SocketAddr,
    method: String,
    host: String,
    path: String,
    route: String,
    started: Instant,
    bytes_in: Arc<AtomicU64>,
    bytes_out: Arc<AtomicU64>,
    outcome: std::sync::Mutex<(&'static str, Option<&'static str>, u16)>,
}

impl LogGuard {
    fn new(f: &LogFields<'_>, route: String) -> Self {
        Self {
            client: f.client,
            method: f.method.to_owned(),
            host: f.host.to_owned(),
            path: f.path.to_owned(),
            route,
            started: f.started,
            bytes_in: Arc::new(AtomicU64::new(0)),
            bytes_out: Arc::new(AtomicU64::new(0)),
            outcome: std::sync::Mutex::new(("allow", None, 0)),
        }
    }

    fn finish(&self, decision: &'static str, reason: Option<&'static str>, status: u16) {
        if let Ok(mut o) = self.outcome.lock() {
            *o = (decision, reason, status);
        }
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let (decision, reason, status) = self
            .outcome
            .lock()
            .map(|o| *o)
            .unwrap_or(("allow", None, 0));
        log_line(&LogFields {
            client: self.client,
            method: &self.method,
            host: &self.host,
            path: &self.path,
            route: Some(&self.route),
            decision,
            reason,
            status,
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            started: self.started,
        });
    }
}

/// A body that counts the data bytes passing through it, frame by frame.
struct Counted<B> {
    inner: B,
    count: Arc<AtomicU64>,
    _log: Option<Arc<LogGuard>>,
}

impl<B> Counted<B> {
    fn new(inner: B, count: Arc<AtomicU64>, log: Option<Arc<LogGuard>>) -> Self {
        Self {
            inner,
            count,
            _log: log,
        }
    }
}

impl<B> Body for Counted<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r
            && let Some(d) = f.data_ref()
        {
            this.count.fetch_add(d.len() as u64, Ordering::Relaxed);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
