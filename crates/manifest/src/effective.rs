//! Pure derivations from a validated bottle: the Claude Code default hosts,
//! token slots, the effective route table, the remotes file and the
//! agent-side environment implied by roles.
//!
//! [`crate::bottle::Bottle`] calls these once at parse time; they are public
//! so the launcher can recompute after an approval changed the table.

use crate::bottle::{AgentEnvVar, EgressRoute, GitRemote};
use crate::host::{HostPattern, IpLiterals};
use crate::merge::TokenSlot;
use crate::remotes::{GIT_TOKEN_ENV_PREFIX, Remote, RemoteAuth, RemotesFile};
use crate::routes::{Role, Route, RouteAuth, RouteTable, TableError, token_env_name};

/// The hosts Claude Code itself needs, allowed in every bottle as bare
/// routes (no auth, no path filter).
///
/// - `api.anthropic.com`: the Messages API (every model call).
/// - `claude.ai`, `platform.claude.com`, `console.anthropic.com`: account
///   and OAuth endpoints Claude Code calls to check and refresh a login.
///
/// Deliberately absent: `statsig.anthropic.com` and `sentry.io`
/// (telemetry and error reporting; the agent gets the variables that turn
/// them off, and `sentry.io` is a multi-tenant service anyone can create a
/// project on, i.e. an exfiltration channel), and the npm registry /
/// `storage.googleapis.com` (auto-update: the image pins Claude Code).
/// Operators who want them add them to `egress.allowlist`.
pub const CLAUDE_CODE_DEFAULT_HOSTS: &[&str] = &[
    "api.anthropic.com",
    "claude.ai",
    "platform.claude.com",
    "console.anthropic.com",
];

/// The non-secret value the agent's `CLAUDE_CODE_OAUTH_TOKEN` carries when a
/// route has role `claude_code_oauth`: Claude Code only checks that the
/// variable is set; egress-proxy replaces the header with the real token.
pub const OAUTH_PLACEHOLDER: &str = "claude-bottle-placeholder-injected-by-egress-proxy";

/// Variables set in the agent for role `claude_code_oauth`.
///
/// `CLAUDE_CODE_OAUTH_TOKEN` holds [`OAUTH_PLACEHOLDER`] so Claude Code
/// starts; the others turn off traffic to hosts the bottle does not allow
/// (telemetry, error reporting, auto-update, other non-essential calls),
/// so Claude Code does not stall on refused requests.
pub const OAUTH_AGENT_ENV: &[AgentEnvVar] = &[
    AgentEnvVar {
        name: "CLAUDE_CODE_OAUTH_TOKEN",
        value: OAUTH_PLACEHOLDER,
    },
    AgentEnvVar {
        name: "DISABLE_TELEMETRY",
        value: "1",
    },
    AgentEnvVar {
        name: "DISABLE_ERROR_REPORTING",
        value: "1",
    },
    AgentEnvVar {
        name: "DISABLE_AUTOUPDATER",
        value: "1",
    },
    AgentEnvVar {
        name: "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
        value: "1",
    },
];

/// [`CLAUDE_CODE_DEFAULT_HOSTS`] as patterns.
pub fn claude_code_default_hosts() -> Vec<HostPattern> {
    CLAUDE_CODE_DEFAULT_HOSTS
        .iter()
        .filter_map(|h| HostPattern::parse(h, IpLiterals::Reject).ok())
        .collect()
}

/// One slot per distinct `token_ref`, in first-use order, named by
/// `name(n)` for n = 1, 2, ….
pub fn token_slots<'a>(
    token_refs: impl IntoIterator<Item = &'a str>,
    name: impl Fn(usize) -> String,
) -> Vec<TokenSlot> {
    let mut out: Vec<TokenSlot> = Vec::new();
    for r in token_refs {
        if !out.iter().any(|s| s.token_ref == r) {
            out.push(TokenSlot {
                token_ref: r.to_owned(),
                token_env: name(out.len() + 1),
            });
        }
    }
    out
}

/// `EGRESS_TOKEN_<n>` slots for the routes' `token_ref`s.
pub fn egress_token_slots(routes: &[EgressRoute]) -> Vec<TokenSlot> {
    token_slots(
        routes
            .iter()
            .filter_map(|r| r.auth().map(|a| a.token_ref())),
        token_env_name,
    )
}

/// `GIT_GATE_TOKEN_<n>` slots for the git remotes' `token_ref`s.
pub fn git_token_slots(remotes: &[GitRemote]) -> Vec<TokenSlot> {
    token_slots(
        remotes
            .iter()
            .filter_map(|r| r.auth().map(|a| a.token_ref())),
        |n| format!("{GIT_TOKEN_ENV_PREFIX}{n}"),
    )
}

fn slot_for<'s>(slots: &'s [TokenSlot], token_ref: &str) -> Option<&'s str> {
    slots
        .iter()
        .find(|s| s.token_ref == token_ref)
        .map(|s| s.token_env.as_str())
}

/// The effective route table: default hosts, then the allowlist as bare
/// routes, then the manifest routes. A later entry with the same host
/// replaces the earlier one in place, so a manifest route wins over a bare
/// default and over an allowlist entry. Routes with auth name the slot of
/// their `token_ref` from `slots`.
pub fn effective_routes(
    allowlist: &[HostPattern],
    routes: &[EgressRoute],
    slots: &[TokenSlot],
) -> Result<RouteTable, TableError> {
    let mut table: Vec<Route> = Vec::new();
    let mut put = |route: Route| match table.iter_mut().find(|r| r.host == route.host) {
        Some(existing) => *existing = route,
        None => table.push(route),
    };
    for h in claude_code_default_hosts()
        .into_iter()
        .chain(allowlist.iter().cloned())
    {
        put(Route::bare(h));
    }
    for r in routes {
        let auth = r.auth().map(|a| RouteAuth {
            scheme: a.scheme(),
            // Every token_ref has a slot: `slots` was derived from `routes`.
            token_env: slot_for(slots, a.token_ref())
                .unwrap_or_default()
                .to_owned(),
            header: a.header().map(str::to_owned),
        });
        put(Route {
            host: r.host().clone(),
            path_allowlist: r.path_allowlist().to_vec(),
            auth,
            roles: r.roles().to_vec(),
            ports: r.ports().to_vec(),
            allow_private: r.allow_private(),
        });
    }
    RouteTable::new(table)
}

/// The remotes file for git-gate. Errors only on duplicate names (which the
/// manifest parser already refuses with a position).
pub fn remotes_file(remotes: &[GitRemote], slots: &[TokenSlot]) -> Result<RemotesFile, String> {
    let out = remotes
        .iter()
        .map(|r| Remote {
            name: r.name().clone(),
            upstream: r.upstream().to_owned(),
            auth: r.auth().map(|a| RemoteAuth {
                username: a.username().to_owned(),
                token_env: slot_for(slots, a.token_ref())
                    .unwrap_or_default()
                    .to_owned(),
            }),
            branches: r.branches().clone(),
        })
        .collect();
    RemotesFile::new(out)
}

/// Variables the agent container gets because of the roles in `table`:
/// [`OAUTH_AGENT_ENV`] when a route carries `claude_code_oauth`, else none.
/// Takes the table (not the manifest) so it stays right after approvals.
pub fn agent_env(table: &RouteTable) -> Vec<AgentEnvVar> {
    let oauth = table
        .routes()
        .iter()
        .any(|r| r.roles.contains(&Role::ClaudeCodeOauth));
    if oauth {
        OAUTH_AGENT_ENV.to_vec()
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests;
