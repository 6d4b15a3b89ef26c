//! The single-route merge that applies an approved `egress-block` proposal
//! to a live route table.
//!
//! Unknown host → the route is appended (with a token slot when it carries
//! auth). Known host → the union of path prefixes; the existing auth is kept
//! and proposed auth ignored, because credentials are the operator's to
//! assign, not the agent's. A route that already allows every path stays
//! that way. Host comparison is on the normalised pattern, so it is
//! case-insensitive.
//!
//! A proposal never carries `ports` or `allow_private`: a new route gets
//! the defaults (port 443, global addresses only) and a known route keeps
//! what the operator gave it. Reaching a private address or another port
//! is an operator's edit, never an approval of the agent's request.

use serde::{Deserialize, Serialize};

use crate::host::{HostPattern, IpLiterals};
use crate::path::PathPrefix;
use crate::routes::{
    AuthScheme, Route, RouteAuth, RouteTable, TOKEN_ENV_PREFIX, has_path_parameter, token_env_name,
};

/// One operator token (`token_ref`, the operator's environment variable)
/// mapped to the proxy-side slot variable that carries it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TokenSlot {
    /// Name of the operator's host environment variable holding the secret.
    pub token_ref: String,
    /// Name of the variable in the egress container (`EGRESS_TOKEN_<n>`).
    pub token_env: String,
}

/// Authentication an agent proposes for a new route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProposedAuth {
    /// How the token is presented.
    pub scheme: AuthScheme,
    /// The operator's environment variable the agent suggests; the operator
    /// decides whether it is supplied.
    pub token_ref: String,
}

/// A validated single route proposed by the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProposedRoute {
    /// The host asked for.
    pub host: HostPattern,
    /// Path prefixes asked for; empty means every path.
    pub path_allowlist: Vec<PathPrefix>,
    /// Auth asked for, if any.
    pub auth: Option<ProposedAuth>,
}

/// Why a proposal is invalid; each message names the field and what would be
/// valid, and is shown to the agent verbatim.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposalError {
    #[error("host: {0}")]
    Host(String),
    #[error("path_allowlist[{0}]: {1}")]
    Path(usize, String),
    #[error("auth.scheme: unknown auth scheme {0:?}; expected {valid}", valid = AuthScheme::VALID)]
    Scheme(String),
    #[error(
        "auth.token_ref: {0:?} is not an environment variable name; expected letters, digits and _ (e.g. GITHUB_TOKEN)"
    )]
    TokenRef(String),
    #[error("justification: must not be empty; say what you need the access for")]
    EmptyJustification,
}

impl ProposedRoute {
    /// Validates the raw fields of an `egress-block` request. IP literals
    /// are refused: an agent cannot ask for one.
    pub fn from_request(req: &crate::queue::EgressRequest) -> Result<Self, ProposalError> {
        let host = HostPattern::parse(&req.host, IpLiterals::Reject)
            .map_err(|e| ProposalError::Host(e.to_string()))?;
        let mut path_allowlist: Vec<PathPrefix> = Vec::new();
        for (i, p) in req.path_allowlist.iter().enumerate() {
            if has_path_parameter(p) {
                return Err(ProposalError::Path(
                    i,
                    format!(
                        "path prefix {p:?} contains a path parameter (`;`); write the prefix without it"
                    ),
                ));
            }
            let prefix = PathPrefix::parse(p).map_err(|e| ProposalError::Path(i, e.to_string()))?;
            if !path_allowlist.contains(&prefix) {
                path_allowlist.push(prefix);
            }
        }
        let auth = match &req.auth {
            None => None,
            Some(a) => {
                let scheme = AuthScheme::parse(&a.scheme)
                    .ok_or_else(|| ProposalError::Scheme(a.scheme.clone()))?;
                if !valid_env_name(&a.token_ref) {
                    return Err(ProposalError::TokenRef(a.token_ref.clone()));
                }
                Some(ProposedAuth {
                    scheme,
                    token_ref: a.token_ref.clone(),
                })
            }
        };
        Ok(Self {
            host,
            path_allowlist,
            auth,
        })
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`, the portable environment variable name.
pub fn valid_env_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The result of a merge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merge {
    /// The new table.
    pub table: RouteTable,
    /// Unified diff of the rendered routes file, before → after; empty when
    /// nothing changed.
    pub diff: String,
    /// A slot that the egress container must now be given (new auth on a new
    /// host whose `token_ref` had no slot yet).
    pub new_slot: Option<TokenSlot>,
    /// False when the proposal was already fully covered.
    pub changed: bool,
}

/// Merges one proposed route into `table`. `slots` is the bottle's current
/// token-slot mapping: a proposed `token_ref` that already has a slot reuses
/// it; otherwise the next free `EGRESS_TOKEN_<n>` is assigned.
pub fn merge_route(table: &RouteTable, slots: &[TokenSlot], proposal: &ProposedRoute) -> Merge {
    let mut routes: Vec<Route> = table.routes().to_vec();
    let mut new_slot = None;
    if let Some(existing) = routes.iter_mut().find(|r| r.host == proposal.host) {
        // Known host: widen paths only. A route with no allowlist already
        // allows everything, and a proposal with no allowlist asks for
        // everything.
        if !existing.path_allowlist.is_empty() {
            if proposal.path_allowlist.is_empty() {
                existing.path_allowlist.clear();
            } else {
                for p in &proposal.path_allowlist {
                    if !existing.path_allowlist.contains(p) {
                        existing.path_allowlist.push(p.clone());
                    }
                }
            }
        }
    } else {
        let auth = proposal.auth.as_ref().map(|a| {
            let token_env = match slots.iter().find(|s| s.token_ref == a.token_ref) {
                Some(s) => s.token_env.clone(),
                None => {
                    let env = next_free_slot(table, slots);
                    new_slot = Some(TokenSlot {
                        token_ref: a.token_ref.clone(),
                        token_env: env.clone(),
                    });
                    env
                }
            };
            RouteAuth {
                scheme: Some(a.scheme),
                token_env,
                header: None,
            }
        });
        // Defaults only: port 443, global addresses only.
        let mut route = Route::bare(proposal.host.clone());
        route.path_allowlist = proposal.path_allowlist.clone();
        route.auth = auth;
        routes.push(route);
    }
    // Hosts stay unique (we only appended an absent one) and roles are
    // untouched, so construction cannot fail; fall back to the old table
    // rather than panic if that invariant is ever broken.
    let new_table = RouteTable::new(routes).unwrap_or_else(|_| table.clone());
    let before = table.render();
    let after = new_table.render();
    let changed = before != after;
    let diff = if changed {
        unified_diff(&before, &after)
    } else {
        String::new()
    };
    Merge {
        table: new_table,
        diff,
        new_slot,
        changed,
    }
}

impl Merge {
    /// The operator's opt-in, given at approval (`launcher approve
    /// --allow-private`), never by the proposal: the route for `host` in
    /// the merged table may reach non-global addresses. `before` is the
    /// table the merge started from, so the diff stays against it.
    #[must_use]
    pub fn allow_private(mut self, before: &RouteTable, host: &HostPattern) -> Self {
        let mut routes = self.table.routes().to_vec();
        let Some(route) = routes.iter_mut().find(|r| &r.host == host) else {
            return self;
        };
        if route.allow_private {
            return self;
        }
        route.allow_private = true;
        let Ok(table) = RouteTable::new(routes) else {
            return self;
        };
        let (old, new) = (before.render(), table.render());
        self.changed = old != new;
        self.diff = if self.changed {
            unified_diff(&old, &new)
        } else {
            String::new()
        };
        self.table = table;
        self
    }
}

fn next_free_slot(table: &RouteTable, slots: &[TokenSlot]) -> String {
    let used = table
        .token_envs()
        .into_iter()
        .chain(slots.iter().map(|s| s.token_env.as_str()))
        .filter_map(|e| e.strip_prefix(TOKEN_ENV_PREFIX)?.parse::<usize>().ok())
        .max()
        .unwrap_or(0);
    token_env_name(used + 1)
}

/// A unified diff (`--- before` / `+++ after`) of two texts.
pub fn unified_diff(before: &str, after: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header("before", "after")
        .to_string()
}

#[cfg(test)]
mod tests;
