//! The upstream leg: one connector for every request (plain, TLS and
//! WebSocket), direct or through an upstream proxy's CONNECT, with the
//! configured trust (system roots plus the extra CA file).
//!
//! Failures are classified (DNS, refused, timeout, proxy, TLS verify) so the
//! 502 the agent reads says what went wrong.
//!
//! SSRF: a direct connection resolves the name **once**, checks every
//! address against the connector's [`AddressPolicy`] and dials only the
//! [`Vetted`] addresses that came out of that one check; there is no second
//! lookup for DNS rebinding to race. Through a parent proxy the parent
//! resolves names (it must enforce its own address policy; pipelock does);
//! IP-literal targets are still checked here, and the parent's own address
//! is the operator's configuration, never checked.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::addr::{AddressPolicy, NonGlobal, Vetted, vet};
use crate::resolve::Resolver;

/// An upstream (parent) proxy reached with `CONNECT`, e.g. pipelock.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamProxy {
    host: String,
    port: u16,
    /// `Proxy-Authorization` value from userinfo in the URL.
    auth: Option<String>,
}

impl fmt::Debug for UpstreamProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamProxy")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("auth", &self.auth.as_ref().map(|_| "***"))
            .finish()
    }
}

impl fmt::Display for UpstreamProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}:{}", self.host, self.port)
    }
}

/// Why an upstream proxy URL was refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "upstream proxy {url:?}: {detail}; expected http://host:port (optionally http://user:password@host:port)"
)]
pub struct ProxyUrlError {
    url: String,
    detail: String,
}

impl UpstreamProxy {
    /// Parses `http://[user:pass@]host[:port]` (or bare `host:port`).
    pub fn parse(url: &str) -> Result<Self, ProxyUrlError> {
        let err = |detail: &str| ProxyUrlError {
            url: redact_userinfo(url),
            detail: detail.to_owned(),
        };
        let rest = match url.split_once("://") {
            Some(("http" | "HTTP", rest)) => rest,
            Some((scheme, _)) => {
                return Err(err(&format!("scheme {scheme:?} is not supported")));
            }
            None => url,
        };
        let authority = rest.trim_end_matches('/');
        if authority.contains('/') || authority.contains('?') {
            return Err(err("a proxy URL has no path"));
        }
        let (auth, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hp)) => (
                Some(format!("Basic {}", base64(&percent_decode(userinfo)))),
                hp,
            ),
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport, 80).ok_or_else(|| err("bad host or port"))?;
        if host.is_empty() {
            return Err(err("the host is empty"));
        }
        Ok(Self { host, port, auth })
    }
}

fn redact_userinfo(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        (None, Some(at)) => format!("***@{}", &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// Splits `host:port`, `[v6]:port` or `host` (default port).
pub fn split_host_port(s: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((h.to_owned(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h.to_owned(), p.parse().ok()?)),
        Some(_) => None,
        None => Some((s.to_owned(), default_port)),
    }
}

/// Decodes `%XX` in URL userinfo (`+` is literal there).
fn percent_decode(s: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(s).collect()
}

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Why the upstream could not be reached. The messages are what the agent
/// reads in the 502 body, so they say which step failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the request URI {0:?} has no host")]
    NoHost(String),
    #[error("DNS lookup of {host} failed: {detail}")]
    Dns { host: String, detail: String },
    #[error("connecting to {host}:{port} failed: {detail}")]
    Connect {
        host: String,
        port: u16,
        detail: String,
    },
    #[error("connecting to {host}:{port} timed out after {secs}s")]
    Timeout { host: String, port: u16, secs: u64 },
    #[error("upstream proxy {proxy} refused CONNECT {host}:{port}: {detail}")]
    Proxy {
        proxy: String,
        host: String,
        port: u16,
        detail: String,
    },
    #[error("TLS certificate of {host} failed verification: {detail}")]
    TlsVerify { host: String, detail: String },
    #[error("TLS handshake with {host} failed: {detail}")]
    Tls { host: String, detail: String },
    /// The target resolved to an address the route may not reach. The
    /// proxy answers 403 for this one, not 502: it is policy.
    #[error("{host} resolves to {addr}")]
    NotGlobal { host: String, addr: NonGlobal },
}

/// Builds the upstream TLS client config: system roots (when asked; an
/// empty or unreadable system store is tolerated) plus the extra CA
/// certificates, together.
pub fn client_tls(
    system_roots: bool,
    extra: &[CertificateDer<'static>],
) -> Result<Arc<ClientConfig>, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    if system_roots {
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::warn!(error = %e, "some system root certificates could not be loaded");
        }
        let (added, ignored) = roots.add_parsable_certificates(native.certs);
        tracing::debug!(added, ignored, "loaded system root certificates");
    }
    for c in extra {
        roots.add(c.clone())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The connector hyper's client pool calls for every new upstream connection.
/// One connector (and so one pool) per [`AddressPolicy`]: a connection
/// opened for a route with `allow_private` is never reused by one without.
#[derive(Clone)]
pub struct Connector {
    resolver: Arc<dyn Resolver>,
    tls: TlsConnector,
    proxy: Option<Arc<UpstreamProxy>>,
    connect_timeout: Duration,
    policy: AddressPolicy,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("proxy", &self.proxy)
            .field("connect_timeout", &self.connect_timeout)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// A connector with this resolver, trust, optional parent proxy and
    /// address policy.
    pub fn new(
        resolver: Arc<dyn Resolver>,
        tls: Arc<ClientConfig>,
        proxy: Option<UpstreamProxy>,
        connect_timeout: Duration,
        policy: AddressPolicy,
    ) -> Self {
        Self {
            resolver,
            tls: TlsConnector::from(tls),
            proxy: proxy.map(Arc::new),
            connect_timeout,
            policy,
        }
    }

    /// Opens a connection to `uri`'s origin (TLS for `https`).
    pub async fn connect(&self, uri: Uri) -> Result<UpstreamStream, ConnectError> {
        let https = uri.scheme_str() == Some("https");
        let host = uri
            .host()
            .ok_or_else(|| ConnectError::NoHost(uri.to_string()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let secs = self.connect_timeout.as_secs();
        let tcp = tokio::time::timeout(self.connect_timeout, self.tcp(&host, port))
            .await
            .map_err(|_| ConnectError::Timeout {
                host: host.clone(),
                port,
                secs,
            })??;
        if !https {
            return Ok(UpstreamStream::Tcp(tcp));
        }
        let name = ServerName::try_from(host.clone()).map_err(|e| ConnectError::Tls {
            host: host.clone(),
            detail: e.to_string(),
        })?;
        let tls = tokio::time::timeout(self.connect_timeout, self.tls.connect(name, tcp))
            .await
            .map_err(|_| ConnectError::Timeout {
                host: host.clone(),
                port,
                secs,
            })?
            .map_err(|e| classify_tls(&host, e))?;
        Ok(UpstreamStream::Tls(Box::new(tls)))
    }

    async fn tcp(&self, host: &str, port: u16) -> Result<TcpStream, ConnectError> {
        match &self.proxy {
            None => {
                let vetted = self.resolve_vetted(host, port).await?;
                dial(host, port, &vetted).await
            }
            Some(p) => {
                // The parent resolves names; a literal we can check here.
                if let Ok(ip) = host.parse::<std::net::IpAddr>() {
                    vet(&[SocketAddr::new(ip, port)], self.policy).map_err(|addr| {
                        ConnectError::NotGlobal {
                            host: host.to_owned(),
                            addr,
                        }
                    })?;
                }
                let mut s = self.dial_parent(p).await.map_err(|e| ConnectError::Proxy {
                    proxy: p.to_string(),
                    host: host.to_owned(),
                    port,
                    detail: e.to_string(),
                })?;
                proxy_connect(&mut s, p, host, port).await?;
                Ok(s)
            }
        }
    }

    /// The one resolution of a connection decision, checked whole.
    async fn resolve_vetted(&self, host: &str, port: u16) -> Result<Vec<Vetted>, ConnectError> {
        let addrs: Vec<SocketAddr> =
            self.resolver
                .resolve(host, port)
                .await
                .map_err(|e| ConnectError::Dns {
                    host: host.to_owned(),
                    detail: e.to_string(),
                })?;
        vet(&addrs, self.policy).map_err(|addr| ConnectError::NotGlobal {
            host: host.to_owned(),
            addr,
        })
    }

    /// The parent proxy is the operator's configuration (usually a sidecar
    /// on a private network): its address is not subject to the policy.
    async fn dial_parent(&self, p: &UpstreamProxy) -> Result<TcpStream, ConnectError> {
        let addrs =
            self.resolver
                .resolve(&p.host, p.port)
                .await
                .map_err(|e| ConnectError::Dns {
                    host: p.host.clone(),
                    detail: e.to_string(),
                })?;
        let operator_configured = vet(&addrs, AddressPolicy::AllowPrivate).unwrap_or_default();
        dial(&p.host, p.port, &operator_configured).await
    }
}

/// Connects to the first vetted address that answers.
async fn dial(host: &str, port: u16, addrs: &[Vetted]) -> Result<TcpStream, ConnectError> {
    let mut last = None;
    for addr in addrs.iter().map(|v| v.addr()) {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = Some(format!("{addr}: {e}")),
        }
    }
    Err(ConnectError::Connect {
        host: host.to_owned(),
        port,
        detail: last.unwrap_or_else(|| "no addresses".into()),
    })
}

async fn proxy_connect(
    s: &mut TcpStream,
    p: &UpstreamProxy,
    host: &str,
    port: u16,
) -> Result<(), ConnectError> {
    let perr = |detail: String| ConnectError::Proxy {
        proxy: p.to_string(),
        host: host.to_owned(),
        port,
        detail,
    };
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(a) = &p.auth {
        req.push_str(&format!("Proxy-Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| perr(e.to_string()))?;
    // Read the response head byte by byte so nothing of the tunnel is consumed.
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err(perr("response head larger than 16 KiB".into()));
        }
        let n = s.read(&mut byte).await.map_err(|e| perr(e.to_string()))?;
        if n == 0 {
            return Err(perr("connection closed before the CONNECT answer".into()));
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let status_line = text.lines().next().unwrap_or("").to_owned();
    let code = status_line.split_whitespace().nth(1).unwrap_or("");
    if code.len() == 3 && code.starts_with('2') {
        Ok(())
    } else {
        Err(perr(format!("answered {status_line:?}")))
    }
}

fn classify_tls(host: &str, e: io::Error) -> ConnectError {
    let detail = e.to_string();
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(c)) => ConnectError::TlsVerify {
            host: host.to_owned(),
            detail: format!("{c:?}"),
        },
        _ => ConnectError::Tls {
            host: host.to_owned(),
            detail,
        },
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<UpstreamStream>;
    type Error = ConnectError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.connect(uri).await.map(TokioIo::new) })
    }
}

/// A connection to an upstream origin.
#[derive(Debug)]
pub enum UpstreamStream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Connection for UpstreamStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Tcp(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }
}

#[cfg(test)]
mod tests;
