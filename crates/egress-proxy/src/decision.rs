//! The per-request decision, in the fixed order: magic host → method
//! (TRACE/TRACK) → path well-formed → universal git-push block → host →
//! port and transport (credentials only over TLS) → normalised path →
//! credential injection.
//!
//! Pure: it reads a loaded table and a request target and says what to do;
//! it does no I/O, so every branch is unit-tested.

use http::{HeaderName, HeaderValue, StatusCode};
use manifest::routes::has_path_parameter;
use manifest::{RequestHost, Route, normalize_path};

use crate::allowlist::LoadedTable;

/// The introspection host: answered by the proxy itself, never forwarded.
pub const MAGIC_HOST: &str = "_egress.local";

/// The header that marks an answer as the proxy's own (not the upstream's).
pub const DECISION_HEADER: &str = "x-egress-decision";

/// What a request asks for, as far as the decision is concerned.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// `https` inside an intercepted TLS session, `http` for plain HTTP
    /// (absolute-form, or plain HTTP inside a CONNECT).
    pub scheme: &'a str,
    /// The port the client asked for (CONNECT port or URL port).
    pub port: u16,
    /// The host as the client wrote it (for messages).
    pub host: &'a str,
    /// The normalised host used for matching.
    pub request_host: &'a RequestHost,
    pub method: &'a str,
    /// The raw path (before `?`).
    pub path: &'a str,
    /// The raw query (after `?`), if any.
    pub query: Option<&'a str>,
}

/// The proxy's own endpoints on the magic host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Magic {
    Allowlist,
    Status,
    NotFound,
}

/// The outcome for one request.
#[derive(Debug)]
pub enum Decision<'t> {
    /// Answer from the proxy itself.
    Magic(Magic),
    /// Forward upstream with this path and query, injecting a header.
    Allow {
        route: &'t Route,
        /// Normalised path plus the original query.
        path_and_query: String,
        inject: Option<(HeaderName, HeaderValue)>,
    },
    /// Refuse with a readable answer.
    Refuse(Refusal),
}

/// Why a request is refused; each carries what the agent needs to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `git push` over smart HTTP, refused for every host.
    GitPush,
    /// No route covers the host.
    HostNotAllowed,
    /// The route's path allowlist does not cover the normalised path.
    PathNotAllowed {
        route: String,
        normalised: String,
        allowed: Vec<String>,
    },
    /// The path could not be normalised (bad escape, control character…).
    BadPath(String),
    /// TRACE and TRACK echo the request back (headers included, the
    /// injected credential too).
    Method(String),
    /// The port is not one the route lists (or 80 for plain HTTP).
    PortNotAllowed {
        route: String,
        port: u16,
        allowed: Vec<u16>,
        plain: bool,
    },
    /// Plain HTTP to a route that injects a credential.
    CredentialNeedsTls { route: String },
    /// A `;` path parameter on a route with a path allowlist.
    PathParameter { route: String },
    /// The route needs a token whose variable is unset.
    TokenMissing { route: String, token_env: String },
    /// The token is not a valid header value.
    TokenInvalid { route: String, token_env: String },
}

impl Refusal {
    /// The status code: 403 for policy, 400 for malformed input, 502 for a
    /// proxy that cannot serve the route as configured.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::GitPush
            | Self::HostNotAllowed
            | Self::PathNotAllowed { .. }
            | Self::Method(_)
            | Self::PortNotAllowed { .. }
            | Self::CredentialNeedsTls { .. }
            | Self::PathParameter { .. } => StatusCode::FORBIDDEN,
            Self::BadPath(_) => StatusCode::BAD_REQUEST,
            Self::TokenMissing { .. } | Self::TokenInvalid { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// The value of the decision header (and of the log's `decision`).
    pub fn label(&self) -> &'static str {
        match self {
            Self::GitPush
            | Self::HostNotAllowed
            | Self::PathNotAllowed { .. }
            | Self::Method(_)
            | Self::PortNotAllowed { .. }
            | Self::CredentialNeedsTls { .. }
            | Self::PathParameter { .. } => "deny",
            Self::BadPath(_) => "bad-request",
            Self::TokenMissing { .. } | Self::TokenInvalid { .. } => "error",
        }
    }

    /// A short machine-friendly reason for logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::GitPush => "git-push-blocked",
            Self::HostNotAllowed => "host-not-allowed",
            Self::PathNotAllowed { .. } => "path-not-allowed",
            Self::BadPath(_) => "bad-path",
            Self::Method(_) => "method-not-allowed",
            Self::PortNotAllowed { .. } => "port-not-allowed",
            Self::CredentialNeedsTls { .. } => "credential-needs-tls",
            Self::PathParameter { .. } => "path-parameter",
            Self::TokenMissing { .. } => "token-missing",
            Self::TokenInvalid { .. } => "token-invalid",
        }
    }

    /// The route a refusal names, if any (for the log).
    pub fn route(&self) -> Option<&str> {
        match self {
            Self::PathNotAllowed { route, .. }
            | Self::PortNotAllowed { route, .. }
            | Self::CredentialNeedsTls { route }
            | Self::PathParameter { route }
            | Self::TokenMissing { route, .. }
            | Self::TokenInvalid { route, .. } => Some(route),
            _ => None,
        }
    }

    /// The plain-text body the agent reads.
    pub fn body(&self, t: &Target<'_>) -> String {
        let default_port = if t.scheme == "https" { 443 } else { 80 };
        let url = if t.port == default_port {
            format!("{}://{}{}", t.scheme, t.host, t.path)
        } else {
            format!("{}://{}:{}{}", t.scheme, t.host, t.port, t.path)
        };
        let (reason, remedy) = match self {
            Self::GitPush => (
                "git push over HTTPS is blocked for every host: pushes must go through git-gate, which scans them for secrets".to_owned(),
                "push to the git-gate remote of this repository instead (see `git remote -v`); fetch and clone over HTTPS are unaffected".to_owned(),
            ),
            Self::HostNotAllowed => (
                format!("host {} is not in this bottle's egress allowlist", t.request_host),
                "if the task needs this host, ask the operator for it with the `egress-block` MCP tool (host, optional path_allowlist, justification); GET http://_egress.local/allowlist shows what is allowed now".to_owned(),
            ),
            Self::PathNotAllowed {
                route,
                normalised,
                allowed,
            } => (
                format!(
                    "path {normalised} (normalised) is outside the paths allowed for route {route}: {}",
                    allowed.join(", ")
                ),
                "if the task needs this path, ask the operator to extend the route's path_allowlist with the `egress-block` MCP tool".to_owned(),
            ),
            Self::Method(m) => (
                format!("method {m} is refused: it echoes the request, credentials included, back to the sender"),
                "use another method; TRACE and TRACK are never forwarded".to_owned(),
            ),
            Self::PortNotAllowed { route, port, allowed, plain } => {
                let list = allowed.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
                let how = if *plain {
                    format!("plain HTTP may use port 80 or the route's ports ({list})")
                } else {
                    format!("route {route} allows TLS to port(s) {list}")
                };
                (
                    format!("port {port} is not allowed for {route}: {how}"),
                    "use the route's port; if the task needs another port, only the operator can add it (ports on the route in the manifest or routes file); the egress-block tool cannot".to_owned(),
                )
            }
            Self::CredentialNeedsTls { route } => (
                format!("route {route} injects a credential, and credentials are only sent inside TLS; this request is plain HTTP"),
                format!("use https:// (through CONNECT {}:443)", t.host),
            ),
            Self::PathParameter { route } => (
                format!("the path carries a `;` parameter, which route {route} refuses because it has a path allowlist (some servers strip `;…` from segments, so `/allowed/..;/other` would reach /other)"),
                "send the path without `;` parameters".to_owned(),
            ),
            Self::BadPath(detail) => (
                format!("the request path is malformed: {detail}"),
                "send a path that starts with `/` and uses valid percent-escapes".to_owned(),
            ),
            Self::TokenMissing { route, token_env } => (
                format!("route {route} injects a credential from {token_env}, but {token_env} is not set in the proxy's environment, so the request was not sent"),
                "this is an operator configuration problem: tell the operator that egress-proxy lacks the token slot variable named above".to_owned(),
            ),
            Self::TokenInvalid { route, token_env } => (
                format!("route {route} injects a credential from {token_env}, but its value is not a valid HTTP header value, so the request was not sent"),
                "this is an operator configuration problem: tell the operator that the token in the variable named above is malformed".to_owned(),
            ),
        };
        format!(
            "egress-proxy: refused {} {url}\nreason: {reason}\nremedy: {remedy}\n",
            t.method
        )
    }
}

/// Decides one request against one table.
pub fn decide<'t>(table: &'t LoadedTable, t: &Target<'_>) -> Decision<'t> {
    if t.request_host.as_str() == MAGIC_HOST {
        return Decision::Magic(match (t.method, t.path) {
            ("GET" | "HEAD", "/allowlist") => Magic::Allowlist,
            ("GET" | "HEAD", "/status") => Magic::Status,
            _ => Magic::NotFound,
        });
    }
    if t.method.eq_ignore_ascii_case("TRACE") || t.method.eq_ignore_ascii_case("TRACK") {
        return Decision::Refuse(Refusal::Method(t.method.to_owned()));
    }
    if let Some(escape) = overlong_utf8_escape(t.path) {
        return Decision::Refuse(Refusal::BadPath(format!(
            "{escape} is an overlong UTF-8 encoding (a disguised `.`, `/` or other ASCII character)"
        )));
    }
    let normalised = match normalize_path(t.path) {
        Ok(p) => p,
        Err(e) => return Decision::Refuse(Refusal::BadPath(e.to_string())),
    };
    if is_git_push(&normalised, t.query) {
        return Decision::Refuse(Refusal::GitPush);
    }
    let Some(route) = table.table().lookup(t.request_host) else {
        return Decision::Refuse(Refusal::HostNotAllowed);
    };
    if let Some(refusal) = check_transport(route, t) {
        return Decision::Refuse(refusal);
    }
    if !route.path_allowlist.is_empty() && has_path_parameter(&normalised) {
        return Decision::Refuse(Refusal::PathParameter {
            route: route.host.to_string(),
        });
    }
    if !route.allows_path(&normalised) {
        return Decision::Refuse(Refusal::PathNotAllowed {
            route: route.host.to_string(),
            normalised,
            allowed: route
                .path_allowlist
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
        });
    }
    let inject = match &route.auth {
        None => None,
        Some(auth) => {
            let Some(token) = table.token(&auth.token_env) else {
                return Decision::Refuse(Refusal::TokenMissing {
                    route: route.host.to_string(),
                    token_env: auth.token_env.clone(),
                });
            };
            let invalid = || {
                Decision::Refuse(Refusal::TokenInvalid {
                    route: route.host.to_string(),
                    token_env: auth.token_env.clone(),
                })
            };
            let Ok(name) = HeaderName::from_bytes(auth.header_name().as_bytes()) else {
                return invalid();
            };
            let Ok(mut value) = HeaderValue::from_str(&auth.header_value(token.expose())) else {
                return invalid();
            };
            value.set_sensitive(true);
            Some((name, value))
        }
    };
    let path_and_query = match t.query {
        Some(q) => format!("{normalised}?{q}"),
        None => normalised,
    };
    Decision::Allow {
        route,
        path_and_query,
        inject,
    }
}

/// Ports and transport: TLS goes to a listed port; plain HTTP only to a
/// route without a credential, on port 80 or a listed port.
fn check_transport(route: &Route, t: &Target<'_>) -> Option<Refusal> {
    let name = || route.host.to_string();
    if t.scheme == "https" {
        return (!route.allows_port(t.port)).then(|| Refusal::PortNotAllowed {
            route: name(),
            port: t.port,
            allowed: route.ports.clone(),
            plain: false,
        });
    }
    if route.auth.is_some() {
        return Some(Refusal::CredentialNeedsTls { route: name() });
    }
    (!route.allows_plain_http(t.port)).then(|| {
        let mut allowed = route.ports.clone();
        allowed.push(manifest::routes::PLAIN_HTTP_PORT);
        allowed.sort_unstable();
        allowed.dedup();
        Refusal::PortNotAllowed {
            route: name(),
            port: t.port,
            allowed,
            plain: true,
        }
    })
}

/// The first percent-escape sequence in `path` that spells an overlong
/// UTF-8 form (`%C0%AE` for `.`, `%E0%80%AF` for `/`, and 5- and 6-byte
/// leads), which lenient decoders turn into ASCII after our checks.
pub fn overlong_utf8_escape(path: &str) -> Option<String> {
    let b = path.as_bytes();
    let hex = |i: usize| -> Option<u8> {
        if b.get(i) != Some(&b'%') {
            return None;
        }
        let d = |c: u8| (c as char).to_digit(16);
        Some((d(*b.get(i + 1)?)? * 16 + d(*b.get(i + 2)?)?) as u8)
    };
    let mut i = 0;
    while i < b.len() {
        let Some(lead) = hex(i) else {
            i += 1;
            continue;
        };
        let next = hex(i + 3);
        let overlong = match lead {
            0xC0 | 0xC1 | 0xF8..=0xFF => true,
            0xE0 => next.is_some_and(|n| (0x80..=0x9F).contains(&n)),
            0xF0 => next.is_some_and(|n| (0x80..=0x8F).contains(&n)),
            _ => false,
        };
        if overlong {
            let end = if next.is_some() { i + 6 } else { i + 3 };
            return Some(path[i..end.min(path.len())].to_owned());
        }
        i += 3;
    }
    None
}

/// How a server that strips `;parameters` from segments reads a
/// normalised path: each segment cut at `;` (or `%3B`), dot segments
/// resolved again.
pub fn without_path_parameters(normalised: &str) -> String {
    let cut: Vec<&str> = normalised
        .split('/')
        .map(|seg| {
            let upper = seg.to_ascii_uppercase();
            let at = [seg.find(';'), upper.find("%3B")]
                .into_iter()
                .flatten()
                .min();
            &seg[..at.unwrap_or(seg.len())]
        })
        .collect();
    normalize_path(&cut.join("/")).unwrap_or_else(|_| normalised.to_owned())
}

/// The universal git-push block: the smart-HTTP receive-pack endpoints,
/// checked on the normalised path so `..` or escapes cannot dodge it, and
/// on its reading without `;` parameters (`git-receive-pack;x`).
pub fn is_git_push(normalised_path: &str, query: Option<&str>) -> bool {
    if has_path_parameter(normalised_path)
        && is_git_push_path(&without_path_parameters(normalised_path), query)
    {
        return true;
    }
    is_git_push_path(normalised_path, query)
}

fn is_git_push_path(normalised_path: &str, query: Option<&str>) -> bool {
    let path = normalised_path.trim_end_matches('/').to_ascii_lowercase();
    if path.ends_with("/git-receive-pack") {
        return true;
    }
    if path.ends_with("/info/refs")
        && let Some(q) = query
    {
        return q.split('&').any(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v);
            percent_decode(k).eq_ignore_ascii_case("service")
                && v.trim().eq_ignore_ascii_case("git-receive-pack")
        });
    }
    false
}

/// Decodes a query component: `%XX` escapes and `+` as a space; invalid
/// escapes stay as they are. Also what DLP scans the URL as.
pub(crate) fn decode_query(raw: &[u8]) -> Vec<u8> {
    let plus: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_encoding::percent_decode(&plus).collect()
}

fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&decode_query(s.as_bytes())).into_owned()
}

#[cfg(test)]
mod tests;
