//! The readiness probe built into each sidecar daemon, for images that have
//! no curl and no shell: `<daemon> probe [--proxy ADDR] [--fail]
//! [--max-time SECS] URL` sends one HTTP/1.0 GET, prints the response body
//! on stdout and exits 0 when a response came (with `--fail`: a 2xx one),
//! 1 with the reason on stderr otherwise.
//!
//! Is: [`run_if_probe`], called first thing in each daemon's `main`, and
//! [`probe`], one bounded request (connect, write, read: all within
//! `--max-time`; at most 1 MiB read).
//!
//! Is not: an HTTP client. Plain `http://` only, no redirects, no chunked
//! bodies (an HTTP/1.0 request is answered with a plain one), and it is
//! meant for the daemon's own loopback address.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs as _};
use std::time::{Duration, Instant};

use clap::Parser;

/// The first argument that turns a daemon into its probe.
pub const SUBCOMMAND: &str = "probe";
/// The most response bytes read.
const MAX_RESPONSE: u64 = 1 << 20;

/// `<daemon> probe`: is the daemon answering HTTP?
#[derive(Debug, Parser, PartialEq, Eq)]
#[command(
    about = "Readiness probe: one HTTP GET (no curl needed); prints the body, exits 0 on a response (2xx with --fail), 1 otherwise",
    disable_version_flag = true
)]
pub struct ProbeArgs {
    /// The URL to get, `http://HOST[:PORT]/PATH`.
    pub url: String,
    /// Send the request to this HTTP proxy (`HOST:PORT`) in absolute form.
    #[arg(long, value_name = "HOST:PORT")]
    pub proxy: Option<String>,
    /// Fail unless the status is 2xx.
    #[arg(long)]
    pub fail: bool,
    /// Seconds for the whole exchange.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub max_time: u64,
}

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // each variant's message documents it
pub enum ProbeError {
    #[error("{0:?} is not an http:// URL with a host; expected e.g. http://127.0.0.1:9100/mcp")]
    BadUrl(String),
    #[error("{0:?} does not resolve to an address: {1}")]
    Resolve(String, String),
    #[error("connecting to {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("no complete response within {0} s")]
    Timeout(u64),
    #[error("talking to {0}: {1}")]
    Io(SocketAddr, std::io::Error),
    #[error("the answer is not an HTTP response: {0}")]
    NotHttp(String),
    #[error("HTTP status {0}")]
    Status(u16),
}

/// A response: status and body.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body (what followed the head).
    pub body: Vec<u8>,
}

/// When the first argument is [`SUBCOMMAND`], runs the probe and returns
/// its exit code (0 or 1; 2 for bad arguments); else `None` and the daemon
/// starts as usual.
pub fn run_if_probe(daemon: &str) -> Option<u8> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != SUBCOMMAND {
        return None;
    }
    let name = OsString::from(format!("{daemon} {SUBCOMMAND}"));
    let parsed = match ProbeArgs::try_parse_from(std::iter::once(name).chain(args)) {
        Ok(p) => p,
        Err(e) => {
            let _ = e.print();
            return Some(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match probe(&parsed) {
        Ok(r) => {
            let _ = std::io::stdout().write_all(&r.body);
            Some(0)
        }
        Err(e) => {
            eprintln!("{daemon} {SUBCOMMAND} {}: {e}", parsed.url);
            Some(1)
        }
    }
}

/// `http://host[:port]/path` → (host, port, path).
fn split_url(url: &str) -> Result<(&str, u16, &str), ProbeError> {
    let bad = || ProbeError::BadUrl(url.to_owned());
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            (h, p.parse::<u16>().map_err(|_| bad())?)
        }
        _ => (authority, 80),
    };
    let ok = |c: char| c.is_ascii_alphanumeric() || "-._[]:".contains(c);
    if host.is_empty() || !host.chars().all(ok) || path.chars().any(|c| c.is_whitespace()) {
        return Err(bad());
    }
    Ok((host, port, path))
}

/// One GET, within `args.max_time`.
pub fn probe(args: &ProbeArgs) -> Result<Response, ProbeError> {
    let deadline = Instant::now() + Duration::from_secs(args.max_time);
    let (host, port, path) = split_url(&args.url)?;
    let (target, request_target) = match &args.proxy {
        Some(p) => (p.clone(), args.url.clone()),
        None => (format!("{host}:{port}"), path.to_owned()),
    };
    let addr = target
        .to_socket_addrs()
        .map_err(|e| ProbeError::Resolve(target.clone(), e.to_string()))?
        .next()
        .ok_or_else(|| ProbeError::Resolve(target.clone(), "no address".into()))?;
    let left = |deadline: Instant| {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(ProbeError::Timeout(args.max_time))
    };
    let mut stream =
        TcpStream::connect_timeout(&addr, left(deadline)?).map_err(|e| match e.kind() {
            std::io::ErrorKind::TimedOut => ProbeError::Timeout(args.max_time),
            _ => ProbeError::Connect(addr, e),
        })?;
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
            ProbeError::Timeout(args.max_time)
        }
        _ => ProbeError::Io(addr, e),
    };
    stream
        .set_write_timeout(Some(left(deadline)?))
        .map_err(io)?;
    let authority = if port == 80 {
        host.to_owned()
    } else {
        format!("{host}:{port}")
    };
    let request = format!(
        "GET {request_target} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: {SUBCOMMAND}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        stream.set_read_timeout(Some(left(deadline)?)).map_err(io)?;
        let n = stream.read(&mut buf).map_err(io)?;
        if n == 0 || raw.len() as u64 >= MAX_RESPONSE {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let response = parse(&raw)?;
    if args.fail && !(200..300).contains(&response.status) {
        return Err(ProbeError::Status(response.status));
    }
    Ok(response)
}

/// Splits a whole response into status and body.
pub fn parse(raw: &[u8]) -> Result<Response, ProbeError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut head = httparse::Response::new(&mut headers);
    match head.parse(raw) {
        Ok(httparse::Status::Complete(len)) => Ok(Response {
            status: head.code.unwrap_or(0),
            body: raw[len..].to_vec(),
        }),
        Ok(httparse::Status::Partial) => Err(ProbeError::NotHttp(format!(
            "the head ended after {} bytes",
            raw.len()
        ))),
        Err(e) => Err(ProbeError::NotHttp(e.to_string())),
    }
}

#[cfg(test)]
mod tests;
