//! The per-request decision, in the fixed order: magic host → universal
//! git-push block → host → normalised path → credential injection.
//!
//! Pure: it reads a loaded table and a request target and says what to do;
//! it does no I/O, so every branch is unit-tested.

use http::{HeaderName, HeaderValue, StatusCode};
use manifest::{RequestHost, Route, normalize_path};

use crate::allowlist::LoadedTable;

/// The introspection host: answered by the proxy itself, never forwarded.
pub const MAGIC_HOST: &str = "_egress.local";

/// The header that marks an answer as the proxy's own (not the upstream's).
pub const DECISION_HEADER: &str = "x-egress-decision";

/// What a request asks for, as far as the decision is concerned.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// `http` or `https`.
    pub scheme: &'a str,
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
            Self::GitPush | Self::HostNotAllowed | Self::PathNotAllowed { .. } => {
                StatusCode::FORBIDDEN
            }
            Self::BadPath(_) => StatusCode::BAD_REQUEST,
            Self::TokenMissing { .. } | Self::TokenInvalid { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// The value of the decision header (and of the log's `decision`).
    pub fn label(&self) -> &'static str {
        match self {
            Self::GitPush | Self::HostNotAllowed | Self::PathNotAllowed { .. } => "deny",
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
            Self::TokenMissing { .. } => "token-missing",
            Self::TokenInvalid { .. } => "token-invalid",
        }
    }

    /// The plain-text body the agent reads.
    pub fn body(&self, t: &Target<'_>) -> String {
        let url = format!("{}://{}{}", t.scheme, t.host, t.path);
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

/// The universal git-push block: the smart-HTTP receive-pack endpoints,
/// checked on the normalised path so `..` or escapes cannot dodge it.
pub fn is_git_push(normalised_path: &str, query: Option<&str>) -> bool {
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
