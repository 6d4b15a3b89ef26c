//! Shared test fixtures: CAs in a tempdir, a local TLS (and plain) upstream
//! built on hyper + rustls, the proxy started in-process on 127.0.0.1:0, and
//! helpers to drive it with real clients. Every name resolves to 127.0.0.1
//! through the proxy's static resolver; nothing touches real DNS.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use egress_proxy::{Config, DlpSettings, Limits, MapEnv, Proxy, Settings, StaticResolver};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub type TestBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Every fake host the upstream certificate covers and the resolver maps.
pub const HOSTS: &[&str] = &[
    "api.test",
    "paths.test",
    "wild.test",
    "a.wild.test",
    "deep.a.wild.test",
    "barwild.test",
    "auth.test",
    "key.test",
    "notoken.test",
    "git.test",
    "new.test",
    "down.test",
    "denied.test",
];

/// A generous bound for anything a test waits on.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A CA: certificate and key as PEM files in a directory.
pub struct TestCa {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(dir: &Path, name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let cert = params.self_signed(&key).unwrap();
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();
        let cert_path = dir.join(format!("{name}-ca.pem"));
        let key_path = dir.join(format!("{name}-ca.key"));
        std::fs::write(&cert_path, &cert_pem).unwrap();
        std::fs::write(&key_path, &key_pem).unwrap();
        Self {
            cert_pem,
            key_pem,
            cert_path,
            key_path,
            issuer: Issuer::new(params, key),
        }
    }

    /// A rustls server config with a leaf for `names`.
    pub fn server_config(&self, names: &[&str]) -> Arc<ServerConfig> {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let key_der = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap();
        let mut cfg =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert.der().clone()], key_der)
                .unwrap();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    }

    /// A leaf for `names` (DNS names or IP addresses) as PEM: (cert, key).
    pub fn leaf_pem(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub fn cert_der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).unwrap()
    }
}

/// Observations the upstream records.
#[derive(Default)]
pub struct UpstreamState {
    pub requests: AtomicUsize,
    pub sse_release: Notify,
    /// Per `/collect/<name>` path: every body byte received (even from an
    /// aborted request) and whether the body ended cleanly.
    pub collected: std::sync::Mutex<std::collections::HashMap<String, Collected>>,
    pub git_root: std::sync::Mutex<Option<PathBuf>>,
    /// Messages the `/ws-echo` WebSocket received (unmasked), in order.
    pub ws_messages: std::sync::Mutex<Vec<Vec<u8>>>,
    /// `Sec-WebSocket-Extensions` values seen on upgrade requests.
    pub ws_extensions: std::sync::Mutex<Vec<String>>,
}

/// What `/collect/<name>` received.
#[derive(Default, Clone, Debug)]
pub struct Collected {
    pub bytes: Vec<u8>,
    /// The body ended cleanly (not cut off by an aborted connection).
    pub complete: bool,
    /// The handler is done reading (cleanly or not).
    pub done: bool,
}

/// A local upstream: TLS on `tls_addr`, plain HTTP on `plain_addr`.
pub struct Upstream {
    pub tls_port: u16,
    pub plain_port: u16,
    pub state: Arc<UpstreamState>,
    stop: CancellationToken,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Upstream {
    pub async fn start(ca: &TestCa, names: &[&str]) -> Self {
        let cfg = ca.server_config(names);
        let state = Arc::new(UpstreamState::default());
        let stop = CancellationToken::new();
        let tls = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tls_port = tls.local_addr().unwrap().port();
        let plain_port = plain.local_addr().unwrap().port();
        {
            let state = state.clone();
            let stop = stop.clone();
            let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
            tokio::spawn(async move {
                loop {
                    let (tcp, _) = tokio::select! { () = stop.cancelled() => break, a = tls.accept() => match a { Ok(a) => a, Err(_) => continue } };
                    let _ = tcp.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    let state = state.clone();
                    tokio::spawn(async move {
                        if let Ok(s) = acceptor.accept(tcp).await {
                            serve_upstream(s, state).await;
                        }
                    });
                }
            });
        }
        {
            let state = state.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    let (tcp, _) = tokio::select! { () = stop.cancelled() => break, a = plain.accept() => match a { Ok(a) => a, Err(_) => continue } };
                    let _ = tcp.set_nodelay(true);
                    tokio::spawn(serve_upstream(tcp, state.clone()));
                }
            });
        }
        Self {
            tls_port,
            plain_port,
            state,
            stop,
        }
    }
}

async fn serve_upstream<S>(io: S, state: Arc<UpstreamState>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(upstream_handler(state, req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades()
        .await;
}

fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).map_err(|n| match n {}).boxed()
}

async fn upstream_handler(
    state: Arc<UpstreamState>,
    mut req: Request<Incoming>,
) -> Response<TestBody> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_owned();
    if path.contains(".git/") {
        return git_backend(&state, req).await;
    }
    if path == "/hang" {
        // Never answers (until the test ends).
        std::future::pending::<()>().await;
    }
    if path == "/sse-once" {
        let mut resp = Response::new(full("data: only-event\n\n"));
        resp.headers_mut()
            .insert("content-type", "text/event-stream".parse().unwrap());
        return resp;
    }
    if path == "/sse" {
        let (tx, rx) = tokio::sync::mpsc::channel::<
            Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>,
        >(4);
        let st = state.clone();
        tokio::spawn(async move {
            let _ = tx
                .send(Ok(Frame::data(Bytes::from_static(
                    b"data: first-event\n\n",
                ))))
                .await;
            st.sse_release.notified().await;
            let _ = tx
                .send(Ok(Frame::data(Bytes::from_static(
                    b"data: second-event\n\n",
                ))))
                .await;
        });
        let stream = tokio_stream_from(rx);
        let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
        resp.headers_mut()
            .insert("content-type", "text/event-stream".parse().unwrap());
        return resp;
    }
    if let Some(n) = path.strip_prefix("/bytes/") {
        let total: u64 = n.parse().unwrap_or(0);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let stream = futures_util::stream::unfold(total, move |left| {
            let chunk = chunk.clone();
            async move {
                if left == 0 {
                    return None;
                }
                let n = left.min(chunk.len() as u64);
                Some((
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(
                        chunk.slice(..n as usize),
                    )),
                    left - n,
                ))
            }
        });
        let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
        resp.headers_mut()
            .insert("content-length", total.to_string().parse().unwrap());
        return resp;
    }
    if path.starts_with("/collect/") {
        let mut body = req.into_body();
        let mut n: u64 = 0;
        loop {
            match body.frame().await {
                Some(Ok(f)) => {
                    if let Some(d) = f.data_ref() {
                        n += d.len() as u64;
                        let mut c = state.collected.lock().unwrap();
                        c.entry(path.clone())
                            .or_default()
                            .bytes
                            .extend_from_slice(d);
                    }
                }
                end => {
                    let mut c = state.collected.lock().unwrap();
                    let e = c.entry(path.clone()).or_default();
                    e.complete = end.is_none();
                    e.done = true;
                    break;
                }
            }
        }
        return Response::new(full(format!("received {n}")));
    }
    if path == "/upload" {
        let mut body = req.into_body();
        let mut n: u64 = 0;
        while let Some(f) = body.frame().await {
            match f {
                Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                Err(e) => return Response::new(full(format!("error {e}"))),
            }
        }
        return Response::new(full(format!("received {n}")));
    }
    if path == "/ws-echo" && req.headers().contains_key("sec-websocket-key") {
        return ws_echo(state, req);
    }
    if path == "/ws" && req.headers().contains_key("upgrade") {
        let up = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(u) = up.await {
                let mut io = TokioIo::new(u);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let mut resp = Response::new(full(Bytes::new()));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        resp.headers_mut()
            .insert("upgrade", "websocket".parse().unwrap());
        resp.headers_mut()
            .insert("connection", "upgrade".parse().unwrap());
        return resp;
    }
    // Echo: method, path, query and headers as JSON.
    let mut headers = serde_json::Map::new();
    for (k, v) in req.headers() {
        let entry = headers
            .entry(k.as_str().to_owned())
            .or_insert_with(|| serde_json::Value::Array(vec![]));
        if let serde_json::Value::Array(a) = entry {
            a.push(serde_json::Value::String(
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            ));
        }
    }
    let method = req.method().to_string();
    let query = req.uri().query().map(str::to_owned);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let json = serde_json::json!({
        "method": method,
        "path": path,
        "query": query,
        "headers": headers,
        "body_len": body.len(),
    });
    let mut resp = Response::new(full(json.to_string()));
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    resp
}

/// A minimal RFC 6455 server: records every message and echoes it back
/// as `echo: <message>`.
/// An unmasked (server) WebSocket frame.
fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![u8::from(fin) << 7 | opcode];
    if payload.len() < 126 {
        frame.push(payload.len() as u8);
    } else {
        frame.push(126);
        frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    frame.extend_from_slice(payload);
    frame
}

fn ws_echo(state: Arc<UpstreamState>, mut req: Request<Incoming>) -> Response<TestBody> {
    for v in req.headers().get_all("sec-websocket-extensions") {
        state
            .ws_extensions
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    let key = req.headers()["sec-websocket-key"].as_bytes().to_vec();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(&key);
    ctx.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let accept = base64(ctx.finish().as_ref());
    let up = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(u) = up.await else { return };
        let mut io = TokioIo::new(u);
        let mut buf: Vec<u8> = Vec::new();
        let mut message: Vec<u8> = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            while let Ok(Some(h)) = egress_proxy::ws::parse_header(&buf) {
                let end = h.header_len + h.payload_len as usize;
                if buf.len() < end {
                    break;
                }
                let mut p = buf[h.header_len..end].to_vec();
                if let Some(m) = h.mask {
                    egress_proxy::ws::unmask(&mut p, m, 0);
                }
                buf.drain(..end);
                match h.opcode {
                    8 => {
                        let _ = io.write_all(&[0x88, 0]).await;
                        return;
                    }
                    9 => {
                        let mut pong = vec![0x8a, p.len() as u8];
                        pong.extend_from_slice(&p);
                        let _ = io.write_all(&pong).await;
                    }
                    10 => {}
                    _ => {
                        message.extend_from_slice(&p);
                        if h.fin {
                            let m = std::mem::take(&mut message);
                            state.ws_messages.lock().unwrap().push(m.clone());
                            let mut reply = b"echo: ".to_vec();
                            reply.extend_from_slice(&m);
                            // `split:…` is answered in two fragments with
                            // a ping between them.
                            let frame = if m.starts_with(b"split:") {
                                let half = reply.len() / 2;
                                [
                                    server_frame(false, 1, &reply[..half]),
                                    server_frame(true, 9, b"between"),
                                    server_frame(true, 0, &reply[half..]),
                                ]
                                .concat()
                            } else {
                                server_frame(true, 1, &reply)
                            };
                            if io.write_all(&frame).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
            match io.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    });
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert("upgrade", "websocket".parse().unwrap());
    h.insert("connection", "upgrade".parse().unwrap());
    h.insert("sec-websocket-accept", accept.parse().unwrap());
    resp
}

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in input.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Runs `git http-backend` as a CGI for the request.
async fn git_backend(state: &UpstreamState, req: Request<Incoming>) -> Response<TestBody> {
    let root = state.git_root.lock().unwrap().clone();
    let Some(root) = root else {
        let mut r = Response::new(full("no git root"));
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    };
    let exec_path = String::from_utf8(
        Command::new("git")
            .arg("--exec-path")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let backend = Path::new(exec_path.trim()).join("git-http-backend");
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let header = |n: &str| {
        parts
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let mut child = tokio::process::Command::new(backend)
        .env_clear()
        .env("GIT_PROJECT_ROOT", &root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("HTTP_GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", "test")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let out = child.wait_with_output().await.unwrap();
    let _ = writer.await;
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2)));
    let Some((pos, sep)) = split else {
        let mut r = Response::new(full("bad cgi output"));
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        return r;
    };
    let head = String::from_utf8_lossy(&raw[..pos]).into_owned();
    let mut resp = Response::new(full(Bytes::copy_from_slice(&raw[pos + sep..])));
    for line in head.lines() {
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("status") {
                let code: u16 = v
                    .split_whitespace()
                    .next()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(500);
                *resp.status_mut() = StatusCode::from_u16(code).unwrap();
            } else if let (Ok(name), Ok(val)) = (
                http::HeaderName::from_bytes(k.as_bytes()),
                http::HeaderValue::from_str(v),
            ) {
                resp.headers_mut().append(name, val);
            }
        }
    }
    resp
}

/// The proxy running in-process.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub proxy: Arc<Proxy>,
    pub routes_path: PathBuf,
    pub shutdown: CancellationToken,
    pub task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestProxy {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Options for an in-process proxy.
pub struct ProxyOpts<'a> {
    pub routes: &'a str,
    pub env: Vec<(&'a str, &'a str)>,
    pub upstream_proxy: Option<String>,
    pub upstream_ca: Option<PathBuf>,
    pub limits: Limits,
    pub routes_file_name: &'a str,
    pub dlp: DlpSettings,
    pub inbound: egress_proxy::InboundAction,
    pub tokens_dir: Option<PathBuf>,
}

impl<'a> ProxyOpts<'a> {
    pub fn new(routes: &'a str) -> Self {
        Self {
            routes,
            env: vec![],
            upstream_proxy: None,
            upstream_ca: None,
            limits: Limits::default(),
            routes_file_name: "routes.yaml",
            dlp: DlpSettings::default(),
            inbound: egress_proxy::InboundAction::Off,
            tokens_dir: None,
        }
    }
}

/// Every test host at 127.0.0.1; ports 443 and 80 lead to the upstream's
/// TLS and plain listeners, so requests use the ports an agent would.
pub fn resolver(up: &Upstream) -> Arc<StaticResolver> {
    Arc::new(
        StaticResolver::new(
            HOSTS
                .iter()
                .map(|h| (h.to_string(), IpAddr::V4(Ipv4Addr::LOCALHOST))),
        )
        .with_ports([(443, up.tls_port), (80, up.plain_port)]),
    )
}

/// Everything one test needs: a tempdir, the two CAs and the upstream.
pub struct World {
    pub dir: tempfile::TempDir,
    pub proxy_ca: TestCa,
    pub upstream_ca: TestCa,
    pub upstream: Upstream,
}

impl World {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let proxy_ca = TestCa::new(dir.path(), "proxy");
        let upstream_ca = TestCa::new(dir.path(), "upstream");
        let mut names: Vec<&str> = HOSTS.to_vec();
        names.push("*.wild.test");
        names.push("127.0.0.1");
        names.retain(|n| *n != "barwild.test");
        let upstream = Upstream::start(&upstream_ca, &names).await;
        Self {
            dir,
            proxy_ca,
            upstream_ca,
            upstream,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts a proxy trusting the upstream CA (and only it).
    pub async fn proxy(&self, opts: ProxyOpts<'_>) -> TestProxy {
        let routes_path = self.path(opts.routes_file_name);
        std::fs::write(&routes_path, opts.routes).unwrap();
        let settings = Settings {
            routes: routes_path.clone(),
            ca_cert: self.proxy_ca.cert_path.clone(),
            ca_key: self.proxy_ca.key_path.clone(),
            upstream_ca: Some(
                opts.upstream_ca
                    .unwrap_or_else(|| self.upstream_ca.cert_path.clone()),
            ),
            upstream_proxy: opts.upstream_proxy,
            system_roots: false,
            limits: opts.limits,
            dlp: opts.dlp,
            inbound: opts.inbound,
            tokens_dir: opts.tokens_dir,
        };
        let cfg = Config::load(
            &settings,
            Arc::new(MapEnv::new(opts.env)),
            resolver(&self.upstream),
        )
        .unwrap();
        let proxy = Proxy::new(cfg);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(egress_proxy::run(listener, proxy.clone(), shutdown.clone()));
        TestProxy {
            addr,
            proxy,
            routes_path,
            shutdown,
            task: Some(task),
        }
    }

    /// `https://host/path` (port 443, which the proxy's resolver maps to
    /// the upstream's TLS port).
    pub fn https(&self, host: &str, path: &str) -> String {
        format!("https://{host}{path}")
    }

    /// `http://host/path` (port 80, mapped to the upstream's plain port).
    pub fn http(&self, host: &str, path: &str) -> String {
        format!("http://{host}{path}")
    }
}

/// The result of a curl run: status, headers (lowercased names) and body.
#[derive(Debug)]
pub struct CurlResult {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub stderr: String,
    pub exit: i32,
}

impl CurlResult {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A curl command preconfigured for the proxy and its CA.
pub fn curl_cmd(proxy: &TestProxy, ca: &Path) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("curl");
    c.arg("-q")
        .arg("-sS")
        .arg("--max-time")
        .arg("120")
        .arg("--proxy")
        .arg(proxy.url())
        .arg("--cacert")
        .arg(ca)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env_remove("CURL_CA_BUNDLE")
        .kill_on_drop(true);
    c
}

/// Runs curl through the proxy; `-D` captures the last response's headers.
pub async fn curl(proxy: &TestProxy, ca: &Path, args: &[&str]) -> CurlResult {
    let hdr = tempfile::NamedTempFile::new().unwrap();
    let out: Output = curl_cmd(proxy, ca)
        .arg("-D")
        .arg(hdr.path())
        .args(args)
        .output()
        .await
        .unwrap();
    let raw = std::fs::read_to_string(hdr.path()).unwrap_or_default();
    // With a proxy the dump holds the CONNECT answer first; keep the last block.
    let last = raw
        .split("\r\n\r\n")
        .filter(|b| b.starts_with("HTTP/"))
        .last()
        .unwrap_or("")
        .to_owned();
    let mut lines = last.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    CurlResult {
        status,
        headers,
        body: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        exit: out.status.code().unwrap_or(-1),
    }
}

/// Polls `f` until it returns `Some` or the deadline passes.
pub async fn poll_until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A Rust client tunnel: CONNECT host:port through the proxy, TLS with the
/// proxy CA trusted, SNI = `sni`. Returns the TLS stream.
pub async fn connect_tls(
    proxy: SocketAddr,
    host: &str,
    port: u16,
    sni: &str,
    ca: &TestCa,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut tcp = TcpStream::connect(proxy).await.unwrap();
    tcp.write_all(
        format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            tcp.read(&mut b).await.unwrap(),
            1,
            "proxy closed during CONNECT"
        );
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "CONNECT answer: {}",
        String::from_utf8_lossy(&head)
    );
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der()).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls_pki_types::ServerName::try_from(sni.to_owned()).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap()
}

/// A keep-alive hyper client over one tunnel.
pub async fn tunnel_client(
    proxy: SocketAddr,
    host: &str,
    port: u16,
    ca: &TestCa,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let tls = connect_tls(proxy, host, port, host, ca).await;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    send
}

/// GET `path` on a tunnel client; returns status, decision header and body.
pub async fn get(
    send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: &str,
    path: &str,
) -> (u16, Option<String>, String) {
    send.ready().await.unwrap();
    let req = Request::get(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let decision = resp
        .headers()
        .get("x-egress-decision")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        decision,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// Peak and current RSS (kB) of a process, from /proc.
pub fn rss_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Runs a blocking command with a bound, collecting output.
pub fn run_cmd(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Reads a response head (through the blank line) byte by byte, so nothing
/// after it is consumed.
pub async fn read_head(tcp: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(DEADLINE, tcp.read(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            n,
            1,
            "closed during the head: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}
