//! The agent-facing tool contract: names, descriptions, input schemas, and
//! the validation that turns raw arguments into a queued request.
//!
//! Is: pure functions from JSON arguments to either a validated
//! [`ProposalRequest`] or an error message the agent reads verbatim, and the
//! wording of every result. Tool names are a contract with the operator
//! side and with the agent's prompt: never rename one.
//!
//! Is not: MCP plumbing (that is `server`) or I/O.

use std::sync::Arc;

use manifest::merge::{ProposalError, ProposedRoute};
use manifest::queue::{
    Decision, EgressAuthRequest, EgressRequest, Outcome, Proposal, ProposalRequest,
};
use manifest::{HostPattern, IpLiterals};
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde::Deserialize;
use serde_json::{Value, json};

pub const EGRESS_BLOCK: &str = "egress-block";
pub const LIST_EGRESS_ROUTES: &str = "list-egress-routes";
pub const CAPABILITY_BLOCK: &str = "capability-block";
pub const PIPELOCK_BLOCK: &str = "pipelock-block";
pub const PROPOSAL_STATUS: &str = "proposal-status";

/// Where the agent finds its current Dockerfile (mounted read-only).
pub const AGENT_DOCKERFILE_PATH: &str = "/etc/claude-bottle/current-config/Dockerfile";

/// Largest Dockerfile a `capability-block` may carry.
pub const MAX_DOCKERFILE_BYTES: usize = 256 * 1024;
/// Largest justification.
pub const MAX_JUSTIFICATION_CHARS: usize = 4000;
/// Most path prefixes one `egress-block` may ask for.
pub const MAX_PATHS: usize = 32;

/// The tools this server lists; `pipelock-block` only when pipelock is on.
pub fn list(pipelock: bool, decision_timeout_secs: u64) -> Vec<Tool> {
    let wait = wait_sentence(decision_timeout_secs);
    let mut tools = vec![
        Tool::new(
            EGRESS_BLOCK,
            format!(
                "Ask the operator to let this bottle reach one more host, or more paths on a host. \
Call it when the egress proxy refused one of your requests with a 403 whose body names this tool \
(call list-egress-routes first to see what is already allowed). Propose ONE route: `host` is exact \
(api.example.com) or `*.example.com` for the domain and all its subdomains; `path_allowlist` lists \
absolute path prefixes (e.g. [\"/v1/\"]) and may be omitted to ask for every path; `auth` \
({{scheme: Bearer|token|Basic, token_ref}}) asks the proxy to inject a credential, where token_ref \
is the NAME of the operator's environment variable holding it - never the secret itself (you \
cannot see secrets); the operator grants a credential only explicitly and may approve the host \
without it. `justification` is read by the operator: say what you need and why. \
{wait} Approved: the route is live in the egress proxy at once - retry your request, nothing \
restarts. For a host that is already allowed only its path prefixes are widened; its \
credentials cannot be changed by a proposal. Rejected: the operator's note says why; do not ask \
again for the same thing."
            ),
            schema(json!({
                "type": "object",
                "properties": {
                    "host": {"type": "string", "description": "Host name, exact or *.domain; no scheme, port or path."},
                    "path_allowlist": {"type": "array", "items": {"type": "string"}, "description": "Absolute path prefixes such as /v1/; omit for every path."},
                    "auth": {
                        "type": "object",
                        "properties": {
                            "scheme": {"type": "string", "enum": ["Bearer", "token", "Basic"]},
                            "token_ref": {"type": "string", "description": "Name of the operator's environment variable holding the credential, e.g. GITHUB_TOKEN."}
                        },
                        "required": ["scheme", "token_ref"],
                        "additionalProperties": false
                    },
                    "justification": {"type": "string", "description": "Why you need it, for the operator."}
                },
                "required": ["host", "justification"],
                "additionalProperties": false
            })),
        ),
        Tool::new(
            LIST_EGRESS_ROUTES,
            "Show the egress proxy's live route table: every host this bottle may reach, its \
allowed path prefixes, and whether the proxy injects a credential (scheme and slot name only, \
never a token). Read-only; no operator involved. Call it before egress-block to check what is \
already allowed, and after an approval to confirm the route is live.",
            schema(json!({"type": "object", "properties": {}, "additionalProperties": false})),
        )
        .annotate(ToolAnnotations::new().read_only(true).idempotent(true)),
        Tool::new(
            CAPABILITY_BLOCK,
            format!(
                "Ask the operator to change this bottle's image. Use it only when you need a \
system package or tool that is not installed and cannot be installed without root or network \
access you lack. Pass the COMPLETE new Dockerfile (start from the current one, readable at \
{AGENT_DOCKERFILE_PATH}; at most 256 KiB) and a justification the operator will read. {wait} \
Approved: the operator's launcher rebuilds the image from your Dockerfile, then this session is \
stopped and resumed in the new image - the conversation and the mounted workspace survive, \
running processes and files outside the workspace do not. Save your work before calling. \
Rejected: the operator's note says why."
            ),
            schema(json!({
                "type": "object",
                "properties": {
                    "dockerfile": {"type": "string", "description": "The complete proposed Dockerfile."},
                    "justification": {"type": "string", "description": "Why you need it, for the operator."}
                },
                "required": ["dockerfile", "justification"],
                "additionalProperties": false
            })),
        ),
    ];
    if pipelock {
        tools.push(Tool::new(
            PIPELOCK_BLOCK,
            format!(
                "Ask the operator to add a host to pipelock, the outer DLP proxy behind the \
egress proxy. Prefer egress-block: approved egress routes are mirrored to pipelock \
automatically. Use this only when list-egress-routes shows the host is allowed but your request \
still fails with a block message from pipelock. {wait} Approved: retry your request. Rejected: \
the operator's note says why."
            ),
            schema(json!({
                "type": "object",
                "properties": {
                    "host": {"type": "string", "description": "Host name, exact or *.domain."},
                    "justification": {"type": "string", "description": "Why you need it, for the operator."}
                },
                "required": ["host", "justification"],
                "additionalProperties": false
            })),
        ));
    }
    tools.push(
        Tool::new(
            PROPOSAL_STATUS,
            "Get the operator's decision on a proposal whose call returned \"pending\": \
pending, approved or rejected, with the operator's note. Pass the id that call returned. Use it \
instead of submitting the same request again.",
            schema(json!({
                "type": "object",
                "properties": {"id": {"type": "string", "description": "The proposal id."}},
                "required": ["id"],
                "additionalProperties": false
            })),
        )
        .annotate(ToolAnnotations::new().read_only(true).idempotent(true)),
    );
    tools
}

fn wait_sentence(secs: u64) -> String {
    format!(
        "The call waits up to {secs} seconds for the operator's decision; if none arrives it \
returns \"pending\" with a proposal id - keep working and ask proposal-status later."
    )
}

fn schema(v: Value) -> Arc<JsonObject> {
    match v {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
}

/// A validated request ready to queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ask {
    pub request: ProposalRequest,
    pub justification: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EgressArgs {
    host: String,
    #[serde(default)]
    path_allowlist: Option<Vec<String>>,
    #[serde(default)]
    auth: Option<EgressAuthRequest>,
    justification: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CapabilityArgs {
    dockerfile: String,
    justification: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelockArgs {
    host: String,
    justification: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusArgs {
    id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

fn parse<T: serde::de::DeserializeOwned>(
    tool: &str,
    args: Option<&JsonObject>,
) -> Result<T, String> {
    let value = Value::Object(args.cloned().unwrap_or_default());
    serde_json::from_value(value).map_err(|e| format!("{tool}: invalid arguments: {e}"))
}

/// Refuses characters that could spoof the operator's terminal or
/// dashboard: control characters other than newline and tab (escape
/// sequences, carriage returns) and Unicode bidirectional overrides.
fn plain_text(tool: &str, field: &str, text: &str) -> Result<(), String> {
    let bad = text.char_indices().find(|&(_, c)| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    });
    match bad {
        None => Ok(()),
        Some((at, c)) => Err(format!(
            "{tool}: {field}: contains the control character U+{:04X} at byte {at}; only plain text with newlines and tabs is accepted (use \\n line endings)",
            u32::from(c)
        )),
    }
}

fn justification(tool: &str, raw: String) -> Result<String, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(format!("{tool}: {}", ProposalError::EmptyJustification));
    }
    plain_text(tool, "justification", trimmed)?;
    let chars = trimmed.chars().count();
    if chars > MAX_JUSTIFICATION_CHARS {
        return Err(format!(
            "{tool}: justification: {chars} characters is too long; at most {MAX_JUSTIFICATION_CHARS}"
        ));
    }
    Ok(trimmed.to_owned())
}

/// Validates `egress-block` arguments with the manifest's proposal rules and
/// returns the normalised request (lowercase punycode host, normalised
/// prefixes), so identical asks compare equal.
pub fn egress_block(args: Option<&JsonObject>) -> Result<Ask, String> {
    let a: EgressArgs = parse(EGRESS_BLOCK, args)?;
    let paths = a.path_allowlist.unwrap_or_default();
    if paths.len() > MAX_PATHS {
        return Err(format!(
            "{EGRESS_BLOCK}: path_allowlist: {} prefixes is too many; at most {MAX_PATHS} (a shorter common prefix covers more)",
            paths.len()
        ));
    }
    let raw = EgressRequest {
        host: a.host,
        path_allowlist: paths,
        auth: a.auth,
    };
    let route = ProposedRoute::from_request(&raw).map_err(|e| format!("{EGRESS_BLOCK}: {e}"))?;
    let justification = justification(EGRESS_BLOCK, a.justification)?;
    let request = EgressRequest {
        host: route.host.as_str().to_owned(),
        path_allowlist: route
            .path_allowlist
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect(),
        auth: route.auth.as_ref().map(|au| EgressAuthRequest {
            scheme: au.scheme.as_str().to_owned(),
            token_ref: au.token_ref.clone(),
        }),
    };
    Ok(Ask {
        request: ProposalRequest::Egress(request),
        justification,
    })
}

/// Validates `capability-block` arguments. `current` is the bottle's
/// current Dockerfile when supervise can read it: an identical proposal is
/// refused as a no-op.
pub fn capability_block(args: Option<&JsonObject>, current: Option<&str>) -> Result<Ask, String> {
    let a: CapabilityArgs = parse(CAPABILITY_BLOCK, args)?;
    if a.dockerfile.trim().is_empty() {
        return Err(format!(
            "{CAPABILITY_BLOCK}: dockerfile: must not be empty; pass the complete new Dockerfile (start from {AGENT_DOCKERFILE_PATH})"
        ));
    }
    if a.dockerfile.len() > MAX_DOCKERFILE_BYTES {
        return Err(format!(
            "{CAPABILITY_BLOCK}: dockerfile: {} bytes is too large; at most {MAX_DOCKERFILE_BYTES}",
            a.dockerfile.len()
        ));
    }
    plain_text(CAPABILITY_BLOCK, "dockerfile", &a.dockerfile)?;
    if current.is_some_and(|c| c.trim_end() == a.dockerfile.trim_end()) {
        return Err(format!(
            "{CAPABILITY_BLOCK}: dockerfile: identical to the current Dockerfile ({AGENT_DOCKERFILE_PATH}); change it before proposing"
        ));
    }
    let justification = justification(CAPABILITY_BLOCK, a.justification)?;
    Ok(Ask {
        request: ProposalRequest::Capability {
            dockerfile: a.dockerfile,
        },
        justification,
    })
}

/// Validates `pipelock-block` arguments.
pub fn pipelock_block(args: Option<&JsonObject>) -> Result<Ask, String> {
    let a: PipelockArgs = parse(PIPELOCK_BLOCK, args)?;
    let host = HostPattern::parse(&a.host, IpLiterals::Reject)
        .map_err(|e| format!("{PIPELOCK_BLOCK}: host: {e}"))?;
    let justification = justification(PIPELOCK_BLOCK, a.justification)?;
    Ok(Ask {
        request: ProposalRequest::Pipelock {
            host: host.as_str().to_owned(),
        },
        justification,
    })
}

/// Validates `proposal-status` arguments.
pub fn proposal_status(args: Option<&JsonObject>) -> Result<manifest::queue::ProposalId, String> {
    let a: StatusArgs = parse(PROPOSAL_STATUS, args)?;
    manifest::queue::ProposalId::parse(a.id.trim())
        .map_err(|e| format!("{PROPOSAL_STATUS}: id: {e}"))
}

/// Validates that `list-egress-routes` got no arguments.
pub fn no_args(tool: &str, args: Option<&JsonObject>) -> Result<(), String> {
    parse::<NoArgs>(tool, args).map(|_| ())
}

/// What the agent is told, as text plus the same facts as structured JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub text: String,
    pub structured: Value,
}

/// The reply for a decided proposal.
pub fn decided(tool: &str, decision: &Decision) -> Reply {
    let id = &decision.id;
    let note = if decision.note.trim().is_empty() {
        "(none)".to_owned()
    } else {
        decision.note.clone()
    };
    let status = match decision.outcome {
        Outcome::Approved => "approved",
        Outcome::Rejected => "rejected",
    };
    let mut text = match decision.outcome {
        Outcome::Approved => {
            let next = match tool {
                EGRESS_BLOCK => {
                    "The route is live in the egress proxy now: retry your request; nothing restarts."
                }
                CAPABILITY_BLOCK => {
                    "The operator's launcher will rebuild the image from your Dockerfile, then stop this session and resume it in the new image. Save your work now and do not start long-running tasks."
                }
                PIPELOCK_BLOCK => "The host is on pipelock's allowlist now: retry your request.",
                _ => "The change has been applied.",
            };
            format!("Approved (proposal {id}). {next}\nOperator's note: {note}")
        }
        Outcome::Rejected => format!(
            "Rejected (proposal {id}). Operator's note: {note}\nDo not ask again for the same thing; adapt your approach or ask the user."
        ),
    };
    if let Some(diff) = decision.diff.as_deref().filter(|d| !d.trim().is_empty()) {
        text.push_str("\nApplied change:\n");
        text.push_str(diff);
    }
    let mut structured = json!({
        "id": id.as_str(),
        "tool": tool,
        "status": status,
        "note": decision.note,
        "decided_at": decision.decided_at.to_string(),
    });
    if let Some(diff) = &decision.diff {
        structured["diff"] = Value::String(diff.clone());
    }
    Reply { text, structured }
}

/// The reply for a proposal still waiting.
pub fn pending(proposal: &Proposal, waited_secs: Option<u64>) -> Reply {
    let id = &proposal.id;
    let lead = match waited_secs {
        Some(s) => {
            format!("Pending (proposal {id}): the operator has not decided within {s} seconds.")
        }
        None => format!("Pending (proposal {id}): the operator has not decided yet."),
    };
    Reply {
        text: format!(
            "{lead} The proposal stays queued and is not lost. Continue with other work and call \
proposal-status with id \"{id}\" later; do not submit the same request again."
        ),
        structured: json!({
            "id": id.as_str(),
            "tool": proposal.request.tool(),
            "status": "pending",
            "created_at": proposal.created_at.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests;
