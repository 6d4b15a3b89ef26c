//! The embedded default manifest: used when the operator has no manifest,
//! so `launcher start` works on a fresh machine.
//!
//! Its single agent, `claude`, uses the built-in agent image, no prompt, the
//! Claude Code default hosts (see
//! [`crate::effective::CLAUDE_CODE_DEFAULT_HOSTS`]) and one route that
//! injects the operator's `CLAUDE_CODE_OAUTH_TOKEN` (from `claude
//! setup-token`) into requests to `api.anthropic.com`, with role
//! `claude_code_oauth` so the agent gets a placeholder instead of the
//! token. Supervise is on; pipelock is off; no git remotes.
//!
//! It is text parsed by the same parser as any manifest, so it cannot drift
//! from what the parser accepts (a unit test parses it).

use crate::agent::Manifest;
use crate::error::ManifestError;

/// The origin name errors and `launcher validate` show for it.
pub const DEFAULT_MANIFEST_ORIGIN: &str = "<embedded default>";

/// The name of the embedded default agent.
pub const DEFAULT_AGENT_NAME: &str = "claude";

/// The embedded default manifest text.
pub const DEFAULT_MANIFEST: &str = r#"# claude-bottle embedded default manifest (used when no manifest exists)
version: 1
agents:
  claude:
    description: Claude Code with the default hosts only; asks through supervise for more
    bottle:
      egress:
        routes:
          - host: api.anthropic.com
            auth: { scheme: Bearer, token_ref: CLAUDE_CODE_OAUTH_TOKEN }
            role: claude_code_oauth
      supervise: true
"#;

/// Parses [`DEFAULT_MANIFEST`].
pub fn default_manifest() -> Result<Manifest, ManifestError> {
    Manifest::parse(DEFAULT_MANIFEST, DEFAULT_MANIFEST_ORIGIN)
}
