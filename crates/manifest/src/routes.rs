//! The routes file: the route table egress-proxy loads, and the one parser
//! and renderer every side uses (the launcher writes it, approvals merge into
//! it, egress-proxy loads and hot-reloads it).
//!
//! It never holds a secret: a route with auth names the environment variable
//! (`token_env`, always `EGRESS_TOKEN_<n>`) from which the proxy reads the
//! token value.
//!
//! ```yaml
//! version: 1
//! routes:
//!   - host: api.github.com
//!     path_allowlist: [/repos/acme/]
//!     auth: { scheme: Bearer, token_env: EGRESS_TOKEN_1 }
//!   - host: "*.anthropic.com"
//!     auth: { header: x-api-key, token_env: EGRESS_TOKEN_2 }
//!     roles: [claude_code_oauth]
//!   - host: registry.internal.example
//!     ports: [443, 8443]
//!     allow_private: true
//! ```
//!
//! `ports` (default `[443]`) lists the ports a TLS request may target;
//! `allow_private` is the operator's opt-in to upstream addresses that are
//! not globally routable (loopback, RFC 1918, link-local, …). Neither can
//! come from an agent's proposal: [`crate::merge_route`] never sets them.

use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::ManifestError;
use crate::host::{HostPattern, IpLiterals, RequestHost};
use crate::path::{PathPrefix, has_encoded_separator};
use crate::yaml::{Checker, KeyPath, Node, Value, parse_document};

/// The routes-file format version this crate reads and writes.
pub const ROUTES_FILE_VERSION: u64 = 1;

/// The ports a route allows when it names none: HTTPS only.
pub const DEFAULT_PORTS: &[u16] = &[443];

/// The port plain `http://` uses; a route without a credential accepts
/// plain HTTP there (and on its listed ports).
pub const PLAIN_HTTP_PORT: u16 = 80;

/// Prefix of every token slot variable.
pub const TOKEN_ENV_PREFIX: &str = "EGRESS_TOKEN_";

/// The slot variable for the `n`th distinct token (1-based).
pub fn token_env_name(n: usize) -> String {
    format!("{TOKEN_ENV_PREFIX}{n}")
}

/// How an injected token is presented upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum AuthScheme {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `Authorization: token <token>` (GitHub's classic form).
    #[serde(rename = "token")]
    Token,
    /// `Authorization: Basic <token>`; the token is the already-encoded
    /// base64 `user:password`.
    Basic,
}

impl AuthScheme {
    /// The spellings accepted in files (case-insensitive).
    pub const VALID: &'static str = "Bearer, token or Basic";

    /// Parses a scheme name, case-insensitively.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "bearer" => Some(Self::Bearer),
            "token" => Some(Self::Token),
            "basic" => Some(Self::Basic),
            _ => None,
        }
    }

    /// The canonical spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bearer => "Bearer",
            Self::Token => "token",
            Self::Basic => "Basic",
        }
    }
}

impl fmt::Display for AuthScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A marker that changes what the launcher sets up around a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Role {
    /// This route injects Claude Code's OAuth token: the agent gets a
    /// placeholder `CLAUDE_CODE_OAUTH_TOKEN` and telemetry-off variables.
    /// At most one route per bottle may carry it.
    #[serde(rename = "claude_code_oauth")]
    ClaudeCodeOauth,
}

impl Role {
    /// Every known role name.
    pub const ALL: &'static [&'static str] = &["claude_code_oauth"];

    /// Parses a role name (exact spelling).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "claude_code_oauth" => Some(Self::ClaudeCodeOauth),
            _ => None,
        }
    }

    /// The name used in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClaudeCodeOauth => "claude_code_oauth",
        }
    }
}

/// Credential injection for one route, as the proxy sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RouteAuth {
    /// `Authorization` scheme; `None` when `header` carries the raw token.
    pub scheme: Option<AuthScheme>,
    /// The slot variable holding the token in the proxy's environment.
    pub token_env: String,
    /// A custom header that receives the raw token (e.g. `x-api-key`),
    /// lowercase; `None` means `Authorization: <scheme> <token>`.
    pub header: Option<String>,
}

impl RouteAuth {
    /// The header this route sets (and whose client-sent values it drops).
    pub fn header_name(&self) -> &str {
        self.header.as_deref().unwrap_or("authorization")
    }

    /// The header value for `token`.
    pub fn header_value(&self, token: &str) -> String {
        match (&self.header, self.scheme) {
            (Some(_), _) | (None, None) => token.to_owned(),
            (None, Some(scheme)) => format!("{scheme} {token}"),
        }
    }
}

/// One entry of the route table.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    /// Which hosts the route covers.
    pub host: HostPattern,
    /// Allowed path prefixes; empty means every path.
    pub path_allowlist: Vec<PathPrefix>,
    /// Credential injection, if any.
    pub auth: Option<RouteAuth>,
    /// Roles (see [`Role`]).
    pub roles: Vec<Role>,
    /// Ports TLS requests may target: sorted, deduplicated, never empty
    /// ([`DEFAULT_PORTS`] unless the operator listed others).
    pub ports: Vec<u16>,
    /// The operator's opt-in to upstream addresses that are not global
    /// (private, loopback, link-local, …). Never set by a proposal.
    pub allow_private: bool,
}

impl Route {
    /// A bare-pass route: no auth, no path filter, port 443, global
    /// addresses only.
    pub fn bare(host: HostPattern) -> Self {
        Self {
            host,
            path_allowlist: Vec::new(),
            auth: None,
            roles: Vec::new(),
            ports: DEFAULT_PORTS.to_vec(),
            allow_private: false,
        }
    }

    /// Whether a *normalised* request path passes this route's allowlist.
    /// With an allowlist, encoded separators (`%2F`, `%5C`) and path
    /// parameters (`;`, `%3B`) never pass: upstreams that strip
    /// `;params` from segments would read `/a/..;/b` as `/b`, and ones that
    /// decode `%2F` would re-open traversal, after our check.
    pub fn allows_path(&self, normalised_path: &str) -> bool {
        if self.path_allowlist.is_empty() {
            return true;
        }
        if has_encoded_separator(normalised_path) || has_path_parameter(normalised_path) {
            return false;
        }
        self.path_allowlist
            .iter()
            .any(|p| p.allows(normalised_path))
    }

    /// Whether TLS requests may go to `port`.
    pub fn allows_port(&self, port: u16) -> bool {
        self.ports.contains(&port)
    }

    /// Whether plain (unencrypted) HTTP may go to `port`: only on a route
    /// without a credential, to port 80 or a listed port.
    pub fn allows_plain_http(&self, port: u16) -> bool {
        self.auth.is_none() && (port == PLAIN_HTTP_PORT || self.allows_port(port))
    }
}

/// True when a path carries a segment parameter (`;` or its escape
/// `%3B`), which some upstreams strip before routing.
pub fn has_path_parameter(path: &str) -> bool {
    path.contains(';') || path.to_ascii_uppercase().contains("%3B")
}

/// A validated route table. Hosts are unique; lookups prefer an exact
/// match, then the most specific (longest) matching wildcard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteTable {
    routes: Vec<Route>,
}

/// Why a table could not be built from routes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("host {0:?} appears in more than one route; merge them into one route")]
    DuplicateHost(String),
    #[error("role {0} appears on more than one route; it may be on at most one")]
    DuplicateRole(&'static str),
}

impl RouteTable {
    /// Builds a table, refusing duplicate hosts and duplicated singleton roles.
    pub fn new(routes: Vec<Route>) -> Result<Self, TableError> {
        let mut seen = std::collections::HashSet::new();
        let mut oauth = false;
        for r in &routes {
            if !seen.insert(r.host.as_str()) {
                return Err(TableError::DuplicateHost(r.host.as_str().to_owned()));
            }
            if r.roles.contains(&Role::ClaudeCodeOauth) {
                if oauth {
                    return Err(TableError::DuplicateRole(Role::ClaudeCodeOauth.as_str()));
                }
                oauth = true;
            }
        }
        Ok(Self { routes })
    }

    /// The routes in file order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route that governs `host`: exact match first, else the matching
    /// wildcard with the longest apex.
    pub fn lookup(&self, host: &RequestHost) -> Option<&Route> {
        if let Some(r) = self
            .routes
            .iter()
            .find(|r| !r.host.is_wildcard() && r.host.matches(host))
        {
            return Some(r);
        }
        self.routes
            .iter()
            .filter(|r| r.host.is_wildcard() && r.host.matches(host))
            .max_by_key(|r| r.host.apex().len())
    }

    /// The route whose pattern is exactly `host` (case-insensitive, after
    /// normalisation), used by merges.
    pub fn get(&self, host: &HostPattern) -> Option<&Route> {
        self.routes.iter().find(|r| &r.host == host)
    }

    /// Every token slot variable the table names, deduplicated, in order.
    pub fn token_envs(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for r in &self.routes {
            if let Some(a) = &r.auth
                && !out.contains(&a.token_env.as_str())
            {
                out.push(&a.token_env);
            }
        }
        out
    }

    /// Parses and validates a routes file. All problems are reported at once.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ManifestError> {
        let doc = parse_document(text, origin)?;
        let mut c = Checker::new(origin);
        let root = KeyPath::root();
        let routes = parse_routes_doc(&mut c, &root, &doc);
        if !c.is_clean() {
            return c.finish(Self::default());
        }
        match Self::new(routes) {
            Ok(t) => Ok(t),
            Err(e) => Err(ManifestError::single(origin, "routes", e.to_string())),
        }
    }

    /// Renders the table as a routes file (YAML). `parse(render(t)) == t`.
    pub fn render(&self) -> String {
        let mut out = format!("version: {ROUTES_FILE_VERSION}\n");
        if self.routes.is_empty() {
            out.push_str("routes: []\n");
            return out;
        }
        out.push_str("routes:\n");
        for r in &self.routes {
            out.push_str(&format!("  - host: {}\n", quote(r.host.as_str())));
            if !r.path_allowlist.is_empty() {
                out.push_str("    path_allowlist:\n");
                for p in &r.path_allowlist {
                    out.push_str(&format!("      - {}\n", quote(p.as_str())));
                }
            }
            if let Some(a) = &r.auth {
                out.push_str("    auth:\n");
                if let Some(s) = a.scheme {
                    out.push_str(&format!("      scheme: {}\n", quote(s.as_str())));
                }
                if let Some(h) = &a.header {
                    out.push_str(&format!("      header: {}\n", quote(h)));
                }
                out.push_str(&format!("      token_env: {}\n", quote(&a.token_env)));
            }
            if !r.roles.is_empty() {
                out.push_str("    roles:\n");
                for role in &r.roles {
                    out.push_str(&format!("      - {}\n", role.as_str()));
                }
            }
            if r.ports != DEFAULT_PORTS {
                let ports: Vec<String> = r.ports.iter().map(u16::to_string).collect();
                out.push_str(&format!("    ports: [{}]\n", ports.join(", ")));
            }
            if r.allow_private {
                out.push_str("    allow_private: true\n");
            }
        }
        out
    }

    /// A content hash of the rendered table: the version egress-proxy
    /// reports in `/status` so a reload can be confirmed.
    pub fn version_hash(&self) -> String {
        let digest = Sha256::digest(self.render().as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    /// The introspection view (`_egress.local/allowlist`): hosts, paths,
    /// ports, the private-address opt-in, auth scheme/header, slot names
    /// and roles; never a token value.
    pub fn introspection(&self) -> serde_json::Value {
        let routes: Vec<serde_json::Value> = self
            .routes
            .iter()
            .map(|r| {
                let mut v = serde_json::json!({
                    "host": r.host.as_str(),
                    "path_allowlist": r.path_allowlist.iter().map(PathPrefix::as_str).collect::<Vec<_>>(),
                    "roles": r.roles.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
                    "ports": r.ports,
                    "allow_private": r.allow_private,
                });
                if let Some(a) = &r.auth {
                    v["auth"] = serde_json::json!({
                        "scheme": a.scheme.map(AuthScheme::as_str),
                        "header": a.header_name(),
                        "token_env": a.token_env,
                    });
                }
                v
            })
            .collect();
        serde_json::json!({ "version": self.version_hash(), "routes": routes })
    }
}

/// Double-quotes a scalar when YAML would otherwise misread it.
fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'))
        && !s.starts_with(['-', '.'])
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "~"
        )
        && s.parse::<f64>().is_err();
    if plain {
        s.to_owned()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
    }
}

fn parse_routes_doc(c: &mut Checker, root: &KeyPath, doc: &Node) -> Vec<Route> {
    let Some(top) = c.map(root, doc, &["version", "routes"], &[]) else {
        return Vec::new();
    };
    match top.get("version") {
        None => c.error(
            root,
            doc,
            format!("missing required key \"version\" (the routes-file format version; expected {ROUTES_FILE_VERSION})"),
        ),
        Some(v) => match &v.value {
            Value::Int(n) if *n == i128::from(ROUTES_FILE_VERSION) => {}
            other => c.error(
                &root.key("version"),
                v,
                format!(
                    "unsupported routes-file version {}; this build reads version {ROUTES_FILE_VERSION}",
                    describe(other)
                ),
            ),
        },
    }
    let Some(routes_node) = top.require(c, root, doc, "routes", "the list of routes") else {
        return Vec::new();
    };
    let path = root.key("routes");
    let Some(items) = c.seq(&path, routes_node, "routes") else {
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| parse_route(c, &path.index(i), item))
        .collect()
}

fn describe(v: &Value) -> String {
    match v {
        Value::Int(n) => n.to_string(),
        Value::Str(s) => format!("{s:?}"),
        other => other.kind().to_owned(),
    }
}

fn parse_route(c: &mut Checker, path: &KeyPath, node: &Node) -> Option<Route> {
    let m = c.map(
        path,
        node,
        &[
            "host",
            "path_allowlist",
            "auth",
            "roles",
            "ports",
            "allow_private",
        ],
        &[],
    )?;
    let before = c.count();
    let host = m
        .require(c, path, node, "host", "the host this route covers")
        .and_then(|h| {
            let p = path.key("host");
            let s = c.string(&p, h, "a host name")?;
            HostPattern::parse(s, IpLiterals::Allow)
                .map_err(|e| c.error(&p, h, e.to_string()))
                .ok()
        });
    let path_allowlist = m
        .get("path_allowlist")
        .map(|n| parse_path_allowlist(c, &path.key("path_allowlist"), n))
        .unwrap_or_default();
    let auth = m
        .get("auth")
        .and_then(|n| parse_route_auth(c, &path.key("auth"), n));
    let roles = m
        .get("roles")
        .map(|n| parse_roles(c, &path.key("roles"), n))
        .unwrap_or_default();
    let ports = m
        .get("ports")
        .map(|n| parse_ports(c, &path.key("ports"), n))
        .unwrap_or_else(|| DEFAULT_PORTS.to_vec());
    let allow_private = m
        .get("allow_private")
        .and_then(|n| c.boolean(&path.key("allow_private"), n))
        .unwrap_or(false);
    if c.count() != before {
        return None;
    }
    Some(Route {
        host: host?,
        path_allowlist,
        auth,
        roles,
        ports,
        allow_private,
    })
}

/// Parses a `ports` list (shared with the manifest parser): 1–65535, at
/// least one; returned sorted and deduplicated.
pub(crate) fn parse_ports(c: &mut Checker, path: &KeyPath, node: &Node) -> Vec<u16> {
    let Some(items) = c.seq(path, node, "port numbers, e.g. [443, 8443]") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match &item.value {
            Value::Int(n) if (1..=65535).contains(n) => {
                if let Ok(p) = u16::try_from(*n) {
                    out.push(p);
                }
            }
            other => c.error(
                &path.index(i),
                item,
                format!(
                    "{} is not a port; expected a number from 1 to 65535 (e.g. 443)",
                    describe(other)
                ),
            ),
        }
    }
    if items.is_empty() {
        c.error(
            path,
            node,
            "ports is empty; list at least one port (omit the key for the default [443])",
        );
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Parses a `path_allowlist` list (shared with the manifest parser).
pub(crate) fn parse_path_allowlist(
    c: &mut Checker,
    path: &KeyPath,
    node: &Node,
) -> Vec<PathPrefix> {
    let Some(items) = c.seq(path, node, "absolute path prefixes") else {
        return Vec::new();
    };
    let mut out: Vec<PathPrefix> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = path.index(i);
        let Some(s) = c.string(&p, item, "an absolute path prefix") else {
            continue;
        };
        if has_path_parameter(s) {
            c.error(
                &p,
                item,
                format!("path prefix {s:?} contains a path parameter (`;`); requests with one are refused on routes with a path allowlist, so write the prefix without it"),
            );
            continue;
        }
        match PathPrefix::parse(s) {
            Ok(prefix) if !out.contains(&prefix) => out.push(prefix),
            Ok(_) => {}
            Err(e) => c.error(&p, item, e.to_string()),
        }
    }
    out
}

/// Parses a `roles` value: a role name or a list of them.
pub(crate) fn parse_roles(c: &mut Checker, path: &KeyPath, node: &Node) -> Vec<Role> {
    let mut out = Vec::new();
    for (p, n, s) in c.string_or_list(path, node, "a role name") {
        match Role::parse(s) {
            Some(r) if !out.contains(&r) => out.push(r),
            Some(_) => {}
            None => {
                let hint = crate::yaml::did_you_mean(s, Role::ALL)
                    .map(|h| format!("did you mean {h:?}? "))
                    .unwrap_or_default();
                c.error(
                    &p,
                    n,
                    format!(
                        "unknown role {s:?}; {hint}known roles: {}",
                        Role::ALL.join(", ")
                    ),
                );
            }
        }
    }
    out
}

fn parse_route_auth(c: &mut Checker, path: &KeyPath, node: &Node) -> Option<RouteAuth> {
    let m = c.map(path, node, &["scheme", "token_env", "header"], &[("token_ref", "token_ref belongs in a manifest; a routes file names the slot variable with token_env (e.g. EGRESS_TOKEN_1)")])?;
    let before = c.count();
    let scheme = m
        .get("scheme")
        .and_then(|n| parse_scheme(c, &path.key("scheme"), n));
    let header = m
        .get("header")
        .and_then(|n| parse_header_name(c, &path.key("header"), n));
    let token_env = m
        .require(c, path, node, "token_env", "the slot variable holding the token, e.g. EGRESS_TOKEN_1")
        .and_then(|n| {
            let p = path.key("token_env");
            let s = c.string(&p, n, "a token slot variable")?;
            if valid_token_env(s) {
                Some(s.to_owned())
            } else {
                c.error(
                    &p,
                    n,
                    format!("token_env {s:?} is not a token slot; expected {TOKEN_ENV_PREFIX}<n> (e.g. {TOKEN_ENV_PREFIX}1)"),
                );
                None
            }
        });
    check_scheme_header(
        c,
        path,
        node,
        m.get("scheme").is_some(),
        m.get("header").is_some(),
    );
    if c.count() != before {
        return None;
    }
    Some(RouteAuth {
        scheme,
        token_env: token_env?,
        header,
    })
}

/// `scheme` and `header` are mutually exclusive and one is required.
pub(crate) fn check_scheme_header(
    c: &mut Checker,
    path: &KeyPath,
    node: &Node,
    has_scheme: bool,
    has_header: bool,
) {
    match (has_scheme, has_header) {
        (true, true) => c.error(
            path,
            node,
            "both scheme and header are set; use scheme for `Authorization: <scheme> <token>` or header for a raw token in a custom header, not both",
        ),
        (false, false) => c.error(
            path,
            node,
            format!("missing \"scheme\" ({}) or \"header\" (a header name that receives the raw token)", AuthScheme::VALID),
        ),
        _ => {}
    }
}

pub(crate) fn parse_scheme(c: &mut Checker, path: &KeyPath, node: &Node) -> Option<AuthScheme> {
    let s = c.string(path, node, "an auth scheme")?;
    let scheme = AuthScheme::parse(s);
    if scheme.is_none() {
        c.error(
            path,
            node,
            format!("unknown auth scheme {s:?}; expected {}", AuthScheme::VALID),
        );
    }
    scheme
}

/// Headers a route may not set: they carry framing, routing or proxy
/// semantics that injection must never touch.
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "keep-alive",
    "expect",
];

pub(crate) fn parse_header_name(c: &mut Checker, path: &KeyPath, node: &Node) -> Option<String> {
    let s = c.string(path, node, "a header name")?;
    let lower = s.to_ascii_lowercase();
    let token_char = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if lower.is_empty() || !lower.bytes().all(token_char) {
        c.error(
            path,
            node,
            format!("header {s:?} is not a valid HTTP header name; expected letters, digits and - (e.g. x-api-key)"),
        );
        return None;
    }
    if FORBIDDEN_HEADERS.contains(&lower.as_str()) || lower.starts_with("proxy-") {
        c.error(
            path,
            node,
            format!("header {s:?} cannot carry a token (it controls framing or proxying); use authorization or a custom header such as x-api-key"),
        );
        return None;
    }
    Some(lower)
}

/// `EGRESS_TOKEN_<n>` with `n` a positive decimal number.
pub fn valid_token_env(s: &str) -> bool {
    s.strip_prefix(TOKEN_ENV_PREFIX).is_some_and(|n| {
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && !n.starts_with('0')
    })
}

#[cfg(test)]
mod tests;
