//! Configuration: what the operator passes (paths, flags) and the validated
//! [`Config`] the proxy runs with. Loading reads every file and fails with an
//! error naming the file and the problem, before anything binds a port.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::allowlist::{Allowlist, LoadError};
use crate::ca::{CaError, CertAuthority};
use crate::dlp::{Dlp, DlpError, DlpSettings};
use crate::env::{Env, TokenDir};
use crate::inbound::{Inbound, InboundAction};
use crate::resolve::Resolver;
use crate::upstream::{ProxyUrlError, UpstreamProxy};

/// The smallest header buffer hyper accepts.
pub const MIN_HEADER_BYTES: usize = 8192;

/// Resource limits, each with a flag and a default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head (request line + headers) accepted; larger gets 431.
    pub max_header_bytes: usize,
    /// Time allowed for a client to send a complete request head.
    pub header_read_timeout: Duration,
    /// A connection (or tunnel) with no bytes moving for this long is closed.
    pub idle_timeout: Duration,
    /// Time allowed for the client-side TLS handshake inside a CONNECT.
    pub tls_handshake_timeout: Duration,
    /// Concurrent client connections; more are answered 503 and closed.
    pub max_connections: usize,
    /// Time allowed to reach an upstream (TCP, proxy CONNECT, TLS each).
    pub connect_timeout: Duration,
    /// Time an upstream has to send its response head once the request is
    /// sent; after it the client gets a 502 instead of waiting forever.
    pub response_timeout: Duration,
    /// Largest WebSocket message (and frame) held for inspection; larger
    /// ones close the socket with 1009.
    pub ws_max_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            tls_handshake_timeout: Duration::from_secs(10),
            max_connections: 1024,
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(180),
            ws_max_message_bytes: 1 << 20,
        }
    }
}

/// What the operator asked for: file paths and options, not yet read.
#[derive(Clone, Debug)]
pub struct Settings {
    pub routes: PathBuf,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub upstream_ca: Option<PathBuf>,
    pub upstream_proxy: Option<String>,
    /// Trust the system root store on the upstream leg (always true in the
    /// binary; tests turn it off to stay hermetic).
    pub system_roots: bool,
    pub limits: Limits,
    /// Secret scanning of outgoing requests (off unless asked for).
    pub dlp: DlpSettings,
    /// Prompt-injection scanning of responses (hosts exempt from DLP are
    /// exempt here too).
    pub inbound: InboundAction,
    /// A directory of token files (`EGRESS_TOKEN_<n>`) that override the
    /// environment and are re-read on every reload.
    pub tokens_dir: Option<PathBuf>,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Routes(#[from] LoadError),
    #[error("{0}")]
    Ca(#[from] CaError),
    #[error("{0}")]
    Dlp(#[from] DlpError),
    #[error("{file}: cannot read upstream CA file: {source}")]
    UpstreamCaRead {
        file: String,
        source: std::io::Error,
    },
    #[error(
        "{file}: no PEM CERTIFICATE block found; expected one or more CA certificates in PEM form"
    )]
    UpstreamCaEmpty { file: String },
    #[error("{file}: certificate {index} is not a usable trust anchor: {detail}")]
    UpstreamCaBad {
        file: String,
        index: usize,
        detail: String,
    },
    #[error("{0}")]
    UpstreamProxy(#[from] ProxyUrlError),
    #[error(
        "max header bytes {0} is below hyper's minimum of {MIN_HEADER_BYTES}; pass at least {MIN_HEADER_BYTES}"
    )]
    HeaderBytes(usize),
    #[error(
        "{dir}: the token directory is not a readable directory ({reason}); create it or drop --tokens-dir"
    )]
    TokensDir { dir: String, reason: String },
    #[error("max connections must be at least 1")]
    MaxConnections,
    #[error("building the upstream TLS configuration: {0}")]
    Tls(String),
}

/// Everything the proxy needs, validated.
#[derive(Debug)]
pub struct Config {
    pub allowlist: Arc<Allowlist>,
    pub ca: CertAuthority,
    pub upstream_tls: Arc<rustls::ClientConfig>,
    pub upstream_proxy: Option<UpstreamProxy>,
    pub resolver: Arc<dyn Resolver>,
    pub limits: Limits,
    pub dlp: Arc<Dlp>,
    pub inbound: Arc<Inbound>,
}

impl Config {
    /// Reads and validates every file `settings` names. Binds nothing.
    pub fn load(
        settings: &Settings,
        env: Arc<dyn Env>,
        resolver: Arc<dyn Resolver>,
    ) -> Result<Self, ConfigError> {
        let l = &settings.limits;
        if l.max_header_bytes < MIN_HEADER_BYTES {
            return Err(ConfigError::HeaderBytes(l.max_header_bytes));
        }
        if l.max_connections == 0 {
            return Err(ConfigError::MaxConnections);
        }
        let env: Arc<dyn Env> = match &settings.tokens_dir {
            Some(dir) => {
                let bad = |reason: String| ConfigError::TokensDir {
                    dir: dir.display().to_string(),
                    reason,
                };
                std::fs::read_dir(dir).map_err(|e| bad(e.to_string()))?;
                Arc::new(TokenDir::new(dir.clone(), env))
            }
            None => env,
        };
        let allowlist = Arc::new(Allowlist::load(&settings.routes, env)?);
        let ca = CertAuthority::load(&settings.ca_cert, &settings.ca_key)?;
        let dlp = Arc::new(Dlp::load(&settings.dlp)?);
        let inbound = Arc::new(Inbound::load(settings.inbound, &settings.dlp.exempt)?);
        let extra = match &settings.upstream_ca {
            Some(p) => read_ca_bundle(p)?,
            None => Vec::new(),
        };
        // Validate each extra anchor on its own so the error names it.
        for (i, c) in extra.iter().enumerate() {
            let mut store = rustls::RootCertStore::empty();
            store
                .add(c.clone())
                .map_err(|e| ConfigError::UpstreamCaBad {
                    file: settings
                        .upstream_ca
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    index: i + 1,
                    detail: e.to_string(),
                })?;
        }
        let upstream_tls = crate::upstream::client_tls(settings.system_roots, &extra)
            .map_err(|e| ConfigError::Tls(e.to_string()))?;
        let upstream_proxy = match settings.upstream_proxy.as_deref().map(str::trim) {
            Some(u) if !u.is_empty() => Some(UpstreamProxy::parse(u)?),
            _ => None,
        };
        Ok(Self {
            allowlist,
            ca,
            upstream_tls,
            upstream_proxy,
            resolver,
            limits: settings.limits.clone(),
            dlp,
            inbound,
        })
    }
}

fn read_ca_bundle(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| ConfigError::UpstreamCaRead {
        file: file.clone(),
        source,
    })?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| ConfigError::UpstreamCaBad {
            file: file.clone(),
            index: 0,
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(ConfigError::UpstreamCaEmpty { file });
    }
    Ok(certs)
}

/// Parses a duration flag: `30s`, `500ms`, `5m`, `1h`, or bare seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let bad = || {
        format!(
            "invalid duration {s:?}; expected a number with an optional unit ms, s, m or h (e.g. 30s, 500ms, 5m)"
        )
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let d = match unit.trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(bad()),
    };
    if d.is_zero() {
        return Err(format!(
            "invalid duration {s:?}; it must be greater than zero"
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests;
