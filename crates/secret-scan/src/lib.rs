//! secret-scan: secret and DLP detection shared by git-gate (push scanning)
//! and egress-proxy (body scanning).
//!
//! Is: rules in gitleaks' TOML format ([`RuleSet::from_toml`]), a built-in
//! default rule set ([`RuleSet::default_rules`]), and a byte scanner
//! ([`RuleSet::scan`], [`RuleSet::scan_reader`]) that runs an ASCII
//! case-insensitive keyword prefilter (aho-corasick) first and then only the
//! candidate rules' byte regexes (Unicode classes off, like Go's). Input is
//! bytes; invalid UTF-8 is fine.
//!
//! On top of the rules: [`Detector`]s that are code (environment dumps,
//! and opt-in checksummed shapes: payment cards, IBANs, Bitcoin private
//! keys, BIP-39 seed phrases), and an [`Inspector`] that decodes what it finds encoded (base64,
//! base32, hex, percent-encoding, escapes, gzip inside those) and scans
//! again, bounded in depth and work. Two built-in [`Profile`]s: `Git`
//! (git-gate, documentation samples waived) and `Egress` (traffic:
//! a well-formed credential is refused even when it says `EXAMPLE`).
//!
//! Is not: a git walker, a file walker or a logger. Callers hand in bytes
//! and an optional path. A [`Finding`] never holds the secret: it carries the
//! rule id, line, column and an excerpt in which every detected secret on the
//! line is masked, so printing or logging a finding cannot leak what it found.
#![forbid(unsafe_code)]

mod config;
pub mod decode;
pub mod detect;
mod goregex;
pub mod inspect;
mod rules;
mod scan;

pub use decode::Encoding;
pub use detect::Detector;
pub use inspect::{Hit, Inspection, Inspector};
pub use rules::{Profile, Rule, RuleSet};
pub use scan::{Finding, shannon_entropy};

/// Why a rule file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// The file could not be read.
    #[error("{origin}: cannot read rule file: {source}")]
    Read {
        /// The file.
        origin: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not TOML, or its top level is not gitleaks-shaped.
    #[error("{origin}: not a gitleaks rule file: {message}")]
    Syntax {
        /// The file.
        origin: String,
        /// The parser's message (with line and column).
        message: String,
    },
    /// One rule (or allowlist) is invalid.
    #[error("{origin}: rule {rule:?}: {problem}")]
    Rule {
        /// The file.
        origin: String,
        /// The rule id (or `#<n>` when it has none, `[allowlist]` for a global allowlist).
        rule: String,
        /// What is wrong and what would be valid.
        problem: String,
    },
}

#[cfg(test)]
mod tests;
