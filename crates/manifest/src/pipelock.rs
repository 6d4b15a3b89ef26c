//! The pipelock sidecar's configuration: the host mirror of the egress route
//! table and the YAML config pipelock loads.
//!
//! pipelock (an external DLP proxy, opt-in with `bottle.pipelock: true`)
//! sits on egress-proxy's upstream leg. Its hostname allowlist is a mirror
//! of egress-proxy's effective hosts, so the two layers never disagree:
//! `*.x` becomes `x` (pipelock allows a suffix), IP literals are dropped
//! (pipelock's allowlist holds names; its SSRF guard handles addresses).
//!
//! Is not: anything about starting pipelock; the launcher does that.

use std::net::IpAddr;

use crate::bottle::Bottle;
use crate::host::RequestHost;
use crate::routes::RouteTable;

/// The host whose bodies are conversation text: pipelock passes its TLS
/// through (no interception, no body scan), and a manifest route to it
/// turns pipelock's BIP-39 seed-phrase detector off.
pub const LLM_API_HOST: &str = "api.anthropic.com";

/// Hosts pipelock never intercepts.
pub const TLS_PASSTHROUGH: &[&str] = &[LLM_API_HOST];

/// Why a pipelock config could not be rendered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PipelockError {
    #[error(
        "pipelock CA path {0:?} is not an absolute in-container path without control characters; expected e.g. /etc/pipelock/ca.pem"
    )]
    CaPath(String),
    #[error(
        "SSRF allowlist entry {0:?} is not a CIDR; expected an address and prefix length such as 172.18.0.0/16 or fd00::/64"
    )]
    Cidr(String),
}

/// An IP network in CIDR notation (`172.18.0.0/16`), for pipelock's SSRF
/// allowlist (the bottle's internal network, so sibling sidecars pass).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `address/prefix`; a bare address is refused (say `/32`).
    pub fn parse(s: &str) -> Result<Self, PipelockError> {
        let bad = || PipelockError::Cidr(s.to_owned());
        let (a, p) = s.trim().split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { addr, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// pipelock's TLS interception CA, as in-container paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelockTls {
    /// CA certificate path inside the pipelock container.
    pub ca_cert: String,
    /// CA key path inside the pipelock container.
    pub ca_key: String,
}

/// The hosts pipelock allows: every host of `table` with `*.` stripped,
/// bare `*` and IP literals dropped, deduplicated and sorted.
pub fn host_mirror(table: &RouteTable) -> Vec<String> {
    let mut out: Vec<String> = table
        .routes()
        .iter()
        .filter(|r| !r.host.is_ip())
        .map(|r| r.host.apex().to_owned())
        .filter(|h| !h.is_empty() && h != "*")
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Whether pipelock's seed-phrase detector stays on: off when a manifest
/// route covers [`LLM_API_HOST`] (conversation text trips it, and it is
/// a global toggle in pipelock).
pub fn seed_phrase_detection(bottle: &Bottle) -> bool {
    let Ok(llm) = RequestHost::parse(LLM_API_HOST) else {
        return true;
    };
    !bottle
        .egress()
        .routes()
        .iter()
        .any(|r| r.host().matches(&llm))
}

/// Renders pipelock's YAML config for `bottle`, mirroring `table` (the
/// bottle's current effective route table: pass
/// `bottle.effective_routes()` at start, the merged table after an
/// approval). `tls` turns on TLS interception with the given CA; `ssrf`
/// lists networks exempt from pipelock's SSRF guard (omitted when empty so
/// pipelock keeps its defaults). The config holds no secret.
pub fn render_config(
    bottle: &Bottle,
    table: &RouteTable,
    tls: Option<&PipelockTls>,
    ssrf: &[Cidr],
) -> Result<String, PipelockError> {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"));
    let mut out = String::from("version: 1\nmode: strict\nenforce: true\n\napi_allowlist:\n");
    for h in host_mirror(table) {
        out.push_str(&format!("  - {}\n", q(&h)));
    }
    if !seed_phrase_detection(bottle) {
        out.push_str("\nseed_phrase_detection:\n  enabled: false\n");
    }
    out.push_str("\nforward_proxy:\n  enabled: true\n");
    out.push_str("\ndlp:\n  include_defaults: true\n  scan_env: true\n");
    out.push_str(&format!(
        "\nrequest_body_scanning:\n  action: {}\n",
        q(bottle.egress().dlp_action().as_str())
    ));
    if let Some(t) = tls {
        for p in [&t.ca_cert, &t.ca_key] {
            if !p.starts_with('/') || p.chars().any(char::is_control) {
                return Err(PipelockError::CaPath(p.clone()));
            }
        }
        out.push_str(&format!(
            "\ntls_interception:\n  enabled: true\n  ca_cert: {}\n  ca_key: {}\n  passthrough_domains:\n",
            q(&t.ca_cert),
            q(&t.ca_key)
        ));
        for d in TLS_PASSTHROUGH {
            out.push_str(&format!("    - {}\n", q(d)));
        }
    }
    if !ssrf.is_empty() {
        out.push_str("\nssrf:\n  ip_allowlist:\n");
        for c in ssrf {
            out.push_str(&format!("    - {}\n", q(&c.to_string())));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
