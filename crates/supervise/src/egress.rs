//! Reads the egress proxy's live route table for `list-egress-routes`.
//!
//! Is: one plain-HTTP absolute-form request, `GET
//! http://_egress.local/allowlist`, sent THROUGH the proxy (the magic host
//! is answered by the proxy itself, never forwarded), with a connect and
//! total timeout and a body size limit.
//!
//! Is not: a general HTTP client, and not a cache: every call asks the
//! proxy, so the agent sees what is live.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;

/// The magic introspection host answered by egress-proxy.
pub const INTROSPECTION_HOST: &str = "_egress.local";
/// Largest route table we accept.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const TOTAL_TIMEOUT: Duration = Duration::from_secs(15);

/// A validated `--egress-proxy` address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyAddr {
    authority: String,
}

/// Why `--egress-proxy` is invalid or the proxy could not answer.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error(
        "egress proxy URL {0:?} is invalid; expected http://HOST:PORT, e.g. http://egress:9099"
    )]
    BadUrl(String),
    #[error("connecting to the egress proxy at {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("asking the egress proxy at {addr} for {INTROSPECTION_HOST}/allowlist: {reason}")]
    Request { addr: String, reason: String },
    #[error(
        "the egress proxy at {addr} answered {status} for {INTROSPECTION_HOST}/allowlist: {body}"
    )]
    Status {
        addr: String,
        status: u16,
        body: String,
    },
    #[error(
        "the egress proxy at {addr} answered {INTROSPECTION_HOST}/allowlist with something that is not JSON: {reason}"
    )]
    NotJson { addr: String, reason: String },
}

impl ProxyAddr {
    /// Parses `http://host:port` (a trailing `/` is allowed; the port
    /// defaults to 80).
    pub fn parse(url: &str) -> Result<Self, EgressError> {
        let bad = || EgressError::BadUrl(url.to_owned());
        let uri: http::Uri = url.parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("http") {
            return Err(bad());
        }
        let auth = uri.authority().ok_or_else(bad)?;
        if auth.as_str().contains('@') || !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad());
        }
        let port = auth.port_u16().unwrap_or(80);
        Ok(Self {
            authority: format!("{}:{port}", auth.host()),
        })
    }

    /// `host:port`.
    pub fn authority(&self) -> &str {
        &self.authority
    }
}

/// Fetches the route table and returns it as a JSON value.
pub async fn fetch_routes(proxy: &ProxyAddr) -> Result<serde_json::Value, EgressError> {
    match tokio::time::timeout(TOTAL_TIMEOUT, fetch_inner(proxy)).await {
        Ok(r) => r,
        Err(_) => Err(EgressError::Request {
            addr: proxy.authority.clone(),
            reason: format!("no answer within {} seconds", TOTAL_TIMEOUT.as_secs()),
        }),
    }
}

async fn fetch_inner(proxy: &ProxyAddr) -> Result<serde_json::Value, EgressError> {
    let addr = proxy.authority.clone();
    let stream =
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(EgressError::Connect {
                    addr,
                    reason: e.to_string(),
                });
            }
            Err(_) => {
                return Err(EgressError::Connect {
                    addr,
                    reason: format!("timed out after {} seconds", CONNECT_TIMEOUT.as_secs()),
                });
            }
        };
    let request_err = |reason: String| EgressError::Request {
        addr: proxy.authority.clone(),
        reason,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| request_err(e.to_string()))?;
    let conn_task = tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "egress introspection connection ended");
        }
    });
    let req = http::Request::get(format!("http://{INTROSPECTION_HOST}/allowlist"))
        .header(http::header::HOST, INTROSPECTION_HOST)
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| request_err(e.to_string()))?;
    let result = async {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| request_err(e.to_string()))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| request_err(format!("reading the body: {e}")))?
            .to_bytes();
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            let snippet: String = text.chars().take(500).collect();
            return Err(EgressError::Status {
                addr: proxy.authority.clone(),
                status: status.as_u16(),
                body: snippet.trim().to_owned(),
            });
        }
        serde_json::from_slice(&body).map_err(|e| EgressError::NotJson {
            addr: proxy.authority.clone(),
            reason: e.to_string(),
        })
    }
    .await;
    conn_task.abort();
    result
}

#[cfg(test)]
mod tests;
