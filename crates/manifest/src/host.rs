//! Host patterns (what a route allows) and request hosts (what a client
//! asked for), and the one matching rule between them.
//!
//! A pattern is either exact (`api.github.com`) or a wildcard whose `*.` is
//! the whole leading label (`*.github.com`). A wildcard matches its apex and
//! any subdomain on a label boundary: `*.example.com` matches `example.com`
//! and `a.b.example.com`, never `barexample.com`. Both sides are lowercased
//! and IDNA-normalised to punycode before comparison, so matching is
//! case-insensitive and Unicode spellings cannot dodge a rule.
//!
//! Two kinds of pattern are refused because they hand the agent hosts that
//! strangers control. A wildcard whose base is a public suffix, or has
//! public suffixes below it, in the Public Suffix List (`*.github.io`,
//! `*.co.uk`, `*.amazonaws.com`): anyone can register a name there. And a
//! single-label name (`intranet`, `localhost`), which resolves through the
//! proxy's search domains to whatever is local, except the bottle's own
//! sidecars ([`SIDECAR_NAMES`]). The list is the `psl` crate's, compiled
//! in: no file, no network.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// Single-label names a pattern may use: the bottle's own sidecars.
pub const SIDECAR_NAMES: &[&str] = &["egress", "git-gate", "supervise", "pipelock"];

/// Whether IP literals may appear in a pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpLiterals {
    /// Reject `10.0.0.1` and `[::1]` (the default for manifests and proposals).
    Reject,
    /// Accept them (the operator opted in with `egress.allow_ip_literals`).
    Allow,
}

/// Why a host string was refused. Messages name the input and what would be
/// valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("host is empty; expected a DNS name such as api.example.com")]
    Empty,
    #[error("host {0:?} has a scheme; write the bare host name, e.g. {1:?}")]
    Scheme(String, String),
    #[error(
        "host {0:?} has a port; write the bare host name {1:?} (ports are not part of a route)"
    )]
    Port(String, String),
    #[error(
        "host {0:?} has a path; write the bare host name {1:?} and put paths in path_allowlist"
    )]
    Path(String, String),
    #[error(
        "host {0:?} has userinfo (user@); write the bare host name {1:?}; credentials go in auth.token_ref"
    )]
    Userinfo(String, String),
    #[error(
        "host {0:?} is a bare wildcard; allowing every host defeats the allowlist, name the domain (e.g. *.example.com)"
    )]
    BareWildcard(String),
    #[error(
        "host {0:?} has a misplaced wildcard; `*.` may only be the whole leading label, e.g. *.example.com"
    )]
    Wildcard(String),
    #[error(
        "host {0:?} is an IP literal; IP literals are refused unless egress.allow_ip_literals is true"
    )]
    IpLiteral(String),
    #[error(
        "host {0:?} has an empty label (`..`, a leading dot or a trailing dot after a dot); expected labels separated by single dots"
    )]
    EmptyLabel(String),
    #[error(
        "host {0:?} is a wildcard over {1:?}, where anyone can register a name (it is, or contains, a public suffix); name the exact hosts instead, e.g. myproject.{1}"
    )]
    PublicSuffixWildcard(String, String),
    #[error(
        "host {0:?} is a single-label name, which resolves to whatever is local; use a fully qualified name (e.g. {0}.example.com); single labels are allowed only for the bottle's sidecars ({sidecars})",
        sidecars = SIDECAR_NAMES.join(", ")
    )]
    SingleLabel(String),
    #[error("host {0:?} is not a valid DNS name: {1}")]
    Invalid(String, String),
}

/// A validated host pattern from a manifest, routes file or proposal.
///
/// Stored lowercase and in punycode; a wildcard keeps its `*.` prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPattern {
    text: String,
    wildcard: bool,
}

impl HostPattern {
    /// Parses and normalises a pattern.
    pub fn parse(input: &str, ip: IpLiterals) -> Result<Self, HostError> {
        let raw = input.trim();
        if raw.is_empty() {
            return Err(HostError::Empty);
        }
        reject_url_parts(raw)?;
        if raw == "*" || raw == "*." {
            return Err(HostError::BareWildcard(raw.to_owned()));
        }
        let (wildcard, rest) = match raw.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, raw),
        };
        if rest.contains('*') {
            return Err(HostError::Wildcard(raw.to_owned()));
        }
        if let Some(ipaddr) = parse_ip(rest) {
            if wildcard {
                return Err(HostError::Wildcard(raw.to_owned()));
            }
            return match ip {
                IpLiterals::Reject => Err(HostError::IpLiteral(raw.to_owned())),
                IpLiterals::Allow => Ok(Self {
                    text: ipaddr.to_string(),
                    wildcard: false,
                }),
            };
        }
        let ascii = dns_name(rest, raw, Names::Pattern)?;
        if wildcard && !ascii.contains('.') {
            // `*.com` would allow a whole top-level domain.
            return Err(HostError::Invalid(
                raw.to_owned(),
                "a wildcard needs at least two labels after `*.` (e.g. *.example.com), not a bare top-level domain".into(),
            ));
        }
        if wildcard && is_public_registry(&ascii) {
            return Err(HostError::PublicSuffixWildcard(raw.to_owned(), ascii));
        }
        if !wildcard && !ascii.contains('.') && !SIDECAR_NAMES.contains(&ascii.as_str()) {
            return Err(HostError::SingleLabel(raw.to_owned()));
        }
        Ok(Self {
            text: if wildcard {
                format!("*.{ascii}")
            } else {
                ascii
            },
            wildcard,
        })
    }

    /// The normalised pattern, e.g. `*.example.com`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True for `*.suffix` patterns.
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// The host without any `*.` prefix (`*.example.com` → `example.com`).
    pub fn apex(&self) -> &str {
        if self.wildcard {
            &self.text[2..]
        } else {
            &self.text
        }
    }

    /// True when this pattern is an IP literal.
    pub fn is_ip(&self) -> bool {
        parse_ip(&self.text).is_some()
    }

    /// Whether `host` is allowed by this pattern.
    pub fn matches(&self, host: &RequestHost) -> bool {
        let h = host.as_str();
        if !self.wildcard {
            return h == self.text;
        }
        let apex = self.apex();
        h == apex
            || (h.len() > apex.len()
                && h.ends_with(apex)
                && h.as_bytes()[h.len() - apex.len() - 1] == b'.')
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The host a client asked for, normalised for matching (lowercase,
/// punycode, no trailing dot, IPv6 without brackets).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RequestHost(String);

impl RequestHost {
    /// Normalises the host part of a request (no port). IP literals are
    /// accepted here: they simply match only IP patterns.
    pub fn parse(input: &str) -> Result<Self, HostError> {
        let raw = input.trim();
        if raw.is_empty() {
            return Err(HostError::Empty);
        }
        if let Some(ip) = parse_ip(raw) {
            return Ok(Self(ip.to_string()));
        }
        if raw.contains(['/', '@', ':', '*', '?', '#', ' ']) {
            return Err(HostError::Invalid(
                raw.to_owned(),
                "a request host may contain only a DNS name or an IP literal".into(),
            ));
        }
        Ok(Self(dns_name(raw, raw, Names::Request)?))
    }

    /// The normalised host.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// True when `base` is a public suffix (`github.io`, `co.uk`) or has
/// public-suffix rules below it (`amazonaws.com`, whose `s3.amazonaws.com`
/// is one), so `*.base` would cover names that strangers register.
///
/// The second question has no direct API: the list's lookup walks labels
/// from the right and asks for the next label only while the list has
/// rules below the labels matched so far. So we look up `base` plus one
/// more (unmatchable) label and count how many labels the lookup took.
fn is_public_registry(base: &str) -> bool {
    use psl::Psl;
    if psl::suffix(base.as_bytes()).is_some_and(|s| s.is_known() && s.as_bytes() == base.as_bytes())
    {
        return true;
    }
    let labels = base.split('.').count();
    let mut taken = 0usize;
    let probe: &[u8] = b"\x00";
    let walk = base
        .rsplit('.')
        .map(str::as_bytes)
        .chain(std::iter::once(probe))
        .inspect(|_| taken += 1);
    let _ = psl::List.find(walk);
    taken > labels
}

fn reject_url_parts(raw: &str) -> Result<(), HostError> {
    if let Some(idx) = raw.find("://") {
        let after = &raw[idx + 3..];
        let bare = after
            .split(['/', '?', '#'])
            .next()
            .unwrap_or("")
            .rsplit('@')
            .next()
            .unwrap_or("");
        let bare = strip_port(bare);
        return Err(HostError::Scheme(raw.to_owned(), bare.to_owned()));
    }
    if let Some(at) = raw.rfind('@') {
        let bare = strip_port(raw[at + 1..].split('/').next().unwrap_or(""));
        return Err(HostError::Userinfo(raw.to_owned(), bare.to_owned()));
    }
    if let Some(slash) = raw.find(['/', '?', '#']) {
        return Err(HostError::Path(
            raw.to_owned(),
            strip_port(&raw[..slash]).to_owned(),
        ));
    }
    // A colon is a port unless the whole thing is an IPv6 literal.
    if raw.contains(':') && parse_ip(raw).is_none() {
        return Err(HostError::Port(raw.to_owned(), strip_port(raw).to_owned()));
    }
    Ok(())
}

fn strip_port(s: &str) -> &str {
    if s.starts_with('[') {
        // `[v6]:port` → `[v6]`; an unclosed bracket is returned whole (the
        // caller reports it), never sliced past the end.
        return s.find(']').map_or(s, |i| &s[..=i]);
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => s,
    }
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    let inner = s
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(s);
    if let Ok(v6) = inner.parse::<Ipv6Addr>() {
        return Some(IpAddr::V6(v6));
    }
    if s.starts_with('[') {
        return None;
    }
    // Only the canonical dotted-quad; `0x7f.1` and friends are not IPs to us
    // and are then refused as DNS names with a numeric TLD below.
    s.parse::<IpAddr>().ok()
}

/// Which DNS-name rules apply.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Names {
    /// Patterns: LDH labels only, and a non-numeric last label.
    Pattern,
    /// Request hosts: also `_` (some real hosts carry it); they only ever
    /// match patterns, so they need not be more than well-formed.
    Request,
}

/// Lowercase punycode DNS name, 253 bytes max, no empty label; a single
/// trailing dot (the root) is dropped.
fn dns_name(rest: &str, raw: &str, rules: Names) -> Result<String, HostError> {
    let rest = rest.strip_suffix('.').unwrap_or(rest);
    if rest.is_empty() || rest.split('.').any(str::is_empty) {
        return Err(HostError::EmptyLabel(raw.to_owned()));
    }
    let ascii = idna::domain_to_ascii(rest)
        .map_err(|_| HostError::Invalid(raw.to_owned(), "IDNA conversion failed".into()))?;
    if ascii.is_empty() || ascii.split('.').any(str::is_empty) {
        return Err(HostError::EmptyLabel(raw.to_owned()));
    }
    if ascii.len() > 253 {
        return Err(HostError::Invalid(
            raw.to_owned(),
            format!("{} bytes long; the limit is 253", ascii.len()),
        ));
    }
    for label in ascii.split('.') {
        check_label(label, raw, rules == Names::Request)?;
    }
    let tld = ascii.rsplit('.').next().unwrap_or("");
    if rules == Names::Pattern && tld.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HostError::Invalid(
            raw.to_owned(),
            "the last label is numeric: this looks like a malformed IP address".into(),
        ));
    }
    Ok(ascii)
}

fn check_label(label: &str, raw: &str, allow_underscore: bool) -> Result<(), HostError> {
    if label.len() > 63 {
        return Err(HostError::Invalid(
            raw.to_owned(),
            format!("label {label:?} is longer than 63 bytes"),
        ));
    }
    let ok_char = |b: u8| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (allow_underscore && b == b'_')
    };
    if let Some(bad) = label.bytes().find(|b| !ok_char(*b)) {
        return Err(HostError::Invalid(
            raw.to_owned(),
            format!(
                "character {:?} is not allowed; labels use letters, digits and hyphens",
                bad as char
            ),
        ));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(HostError::Invalid(
            raw.to_owned(),
            format!("label {label:?} starts or ends with a hyphen"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
