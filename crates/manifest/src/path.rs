//! Request-path normalisation and path-prefix checks.
//!
//! The egress proxy decides on the *normalised* path and forwards that same
//! normalised path upstream, so what was checked is what the upstream sees.
//! Normalisation (RFC 3986 §6.2.2): percent-decoding of unreserved characters
//! only (`%2e` → `.`, `%7E` → `~`), upper-case hex in the escapes that remain,
//! removal of dot segments, and collapsing of duplicate slashes. Encoded
//! slashes and backslashes (`%2F`, `%5C`) stay encoded, and a route with a
//! path allowlist refuses any path containing them, because some upstreams
//! decode them into separators after our check.

use std::fmt;

/// Why a path was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path {0:?} is not absolute; expected it to start with `/`")]
    NotAbsolute(String),
    #[error("path {0:?} has an invalid percent-escape; expected `%` followed by two hex digits")]
    BadEscape(String),
    #[error(
        "path {0:?} contains {1}; paths may not contain whitespace, control characters or backslashes"
    )]
    BadChar(String, String),
    #[error("path prefix {0:?} has a query or fragment; a path_allowlist entry is a path only")]
    Query(String),
    #[error("path prefix {given:?} is not normalised; write {normalised:?}")]
    NotNormalised { given: String, normalised: String },
}

/// Normalises the path of a request target (the part before `?`).
///
/// The result always starts with `/`; a trailing slash is kept when the
/// input had one (or ended in a dot segment).
pub fn normalize_path(raw: &str) -> Result<String, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute(raw.to_owned()));
    }
    if let Some(c) = raw
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '\\')
    {
        return Err(PathError::BadChar(raw.to_owned(), format!("{c:?}")));
    }
    let decoded = decode_unreserved(raw)?;
    let mut out: Vec<&str> = Vec::new();
    let mut trailing = false;
    for seg in decoded.split('/') {
        trailing = false;
        match seg {
            "" => trailing = true,
            "." => trailing = true,
            ".." => {
                out.pop();
                trailing = true;
            }
            s => out.push(s),
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for seg in &out {
        path.push('/');
        path.push_str(seg);
    }
    if path.is_empty() || trailing {
        path.push('/');
    }
    Ok(path)
}

/// Decodes `%XX` escapes of unreserved characters; upper-cases the others.
fn decode_unreserved(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(PathError::BadEscape(raw.to_owned()));
            };
            let v = (h * 16 + l) as u8;
            if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
                out.push(v as char);
            } else {
                out.push('%');
                out.push_str(&format!("{v:02X}"));
            }
            i += 3;
        } else {
            // Safe: we only split at ASCII bytes, so char boundaries hold.
            let ch_len = utf8_len(b);
            out.push_str(&raw[i..i + ch_len]);
            i += ch_len;
        }
    }
    Ok(out)
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7F => 1,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

/// True when a normalised path still carries an encoded slash or backslash.
pub fn has_encoded_separator(normalised: &str) -> bool {
    let upper = normalised.to_ascii_uppercase();
    upper.contains("%2F") || upper.contains("%5C")
}

/// One `path_allowlist` entry: an absolute, normalised path prefix matched on
/// segment boundaries. `/repos/acme` and `/repos/acme/` are the same prefix:
/// both allow `/repos/acme` and everything below it, never `/repos/acmeevil`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PathPrefix(String);

impl PathPrefix {
    /// Validates a prefix as written in a manifest, routes file or proposal.
    /// It must already be normalised; the error says what to write instead.
    pub fn parse(input: &str) -> Result<Self, PathError> {
        if input.contains(['?', '#']) {
            return Err(PathError::Query(input.to_owned()));
        }
        let normalised = normalize_path(input)?;
        if normalised != input {
            return Err(PathError::NotNormalised {
                given: input.to_owned(),
                normalised,
            });
        }
        Ok(Self(input.to_owned()))
    }

    /// The prefix as written (normalised).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the normalised request path is at or below this prefix.
    pub fn allows(&self, normalised_path: &str) -> bool {
        let base = self.0.trim_end_matches('/');
        if base.is_empty() {
            return normalised_path.starts_with('/');
        }
        match normalised_path.strip_prefix(base) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }
}

impl fmt::Display for PathPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests;
