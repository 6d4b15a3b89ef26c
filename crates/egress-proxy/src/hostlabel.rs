//! Data in host names: an agent allowed `*.example.com` can put what it
//! wants to leak in front of `.example.com`, and the name travels to the
//! zone's DNS servers the moment anyone resolves it — before any byte of
//! HTTP.
//!
//! Is: a shape check of the labels left of a wildcard route's base
//! (length, alphabet, entropy, alone and joined), their decodings (hex,
//! base32) for the rules to read, and a per-wildcard count of new unique
//! subdomains in a sliding minute. The proxy runs it before it resolves
//! anything, and applies `dlp_action`.
//!
//! Is not: a DNS filter for the agent (the agent has no DNS but the
//! bottle's own names); only names the proxy is asked to reach pass here.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shortest run of a label that can read as data.
pub const DATA_RUN: usize = 20;
/// Bits per character above which a run reads as data, not a word.
pub const DATA_ENTROPY: f64 = 3.5;
/// New unique subdomains of one wildcard allowed per [`RATE_WINDOW`].
pub const RATE_LIMIT: usize = 30;
/// The sliding window of the rate check.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Subdomains remembered per wildcard (oldest forgotten first).
const REMEMBERED: usize = 4096;

/// What a host name gave away.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// A label (or the labels joined) reads as encoded data.
    DataLabel,
    /// More new unique subdomains than [`RATE_LIMIT`] in a minute.
    Rate,
}

impl Finding {
    pub fn id(&self) -> &'static str {
        match self {
            Self::DataLabel => "hostname-data",
            Self::Rate => "subdomain-rate",
        }
    }

    pub fn description(&self) -> String {
        match self {
            Self::DataLabel => {
                "Host name label that reads as encoded data (length, alphabet, entropy)".into()
            }
            Self::Rate => format!(
                "More than {RATE_LIMIT} new subdomains of one wildcard route within {}s",
                RATE_WINDOW.as_secs()
            ),
        }
    }
}

/// The labels left of `base` in `host` (`a.b.example.com` under
/// `*.example.com` → `a.b`); `None` for the apex or a host outside it.
pub fn subdomain<'a>(host: &'a str, base: &str) -> Option<&'a str> {
    let sub = host.strip_suffix(base)?.strip_suffix('.')?;
    (!sub.is_empty()).then_some(sub)
}

fn entropy(s: &[u8]) -> f64 {
    secret_scan::shannon_entropy(s)
}

/// A run that reads as data: long enough, letters and digits mixed (or
/// all hex), high entropy.
fn data_like(run: &[u8]) -> bool {
    if run.len() < DATA_RUN {
        return false;
    }
    let digits = run.iter().filter(|c| c.is_ascii_digit()).count();
    let hex = run.iter().all(u8::is_ascii_hexdigit);
    let mixed = digits > 0 && digits < run.len();
    (mixed || hex) && entropy(run) >= if hex { 3.0 } else { DATA_ENTROPY }
}

/// Whether the subdomain's labels read as data: a hex label that decodes
/// to text, one hyphen-separated run of a label, or the alphanumeric
/// labels joined (data cut into several labels).
pub fn looks_like_data(sub: &str) -> bool {
    let labels: Vec<&str> = sub.split('.').collect();
    // A label that is hex and decodes to text.
    if labels.iter().any(|l| {
        l.len() >= 16
            && l.bytes().all(|c| c.is_ascii_hexdigit())
            && data_encoding::HEXLOWER_PERMISSIVE
                .decode(&l.as_bytes()[..l.len() & !1])
                .is_ok_and(|d| secret_scan::decode::is_texty(&d))
    }) {
        return true;
    }
    if labels
        .iter()
        .flat_map(|l| l.split('-'))
        .any(|run| data_like(run.as_bytes()))
    {
        return true;
    }
    let joined: Vec<u8> = labels
        .iter()
        .filter(|l| l.len() >= 8 && l.bytes().all(|c| c.is_ascii_alphanumeric()))
        .flat_map(|l| l.bytes())
        .collect();
    labels.len() >= 2 && joined.len() >= 2 * DATA_RUN && data_like(&joined)
}

/// Text for the rules: the subdomain, its labels joined, and each label
/// (and the join) decoded as hex or base32 where it is shaped like them.
pub fn decodings(sub: &str) -> Vec<u8> {
    let mut doc = sub.as_bytes().to_vec();
    doc.push(b'\n');
    let joined: String = sub.split('.').collect();
    let mut candidates: Vec<String> = sub.split('.').map(str::to_owned).collect();
    candidates.push(joined.clone());
    doc.extend_from_slice(joined.as_bytes());
    doc.push(b'\n');
    for c in candidates {
        let b = c.as_bytes();
        if b.len() < 16 {
            continue;
        }
        if b.iter().all(u8::is_ascii_hexdigit) {
            let even = &b[..b.len() & !1];
            if let Ok(d) = data_encoding::HEXLOWER_PERMISSIVE.decode(even) {
                doc.extend_from_slice(&d);
                doc.push(b'\n');
            }
        }
        if b.iter().all(|c| matches!(c, b'a'..=b'z' | b'2'..=b'7')) {
            let up = c.to_ascii_uppercase();
            let mut n = up.len();
            while matches!(n % 8, 1 | 3 | 6) {
                n -= 1;
            }
            if let Ok(d) = data_encoding::BASE32_NOPAD.decode(&up.as_bytes()[..n]) {
                doc.extend_from_slice(&d);
                doc.push(b'\n');
            }
        }
    }
    doc
}

/// New unique subdomains per wildcard, over a sliding window.
#[derive(Debug, Default)]
pub struct RateWatch {
    inner: Mutex<HashMap<String, Seen>>,
}

#[derive(Debug, Default)]
struct Seen {
    known: HashSet<String>,
    order: VecDeque<String>,
    /// When each recent new subdomain was first seen.
    recent: VecDeque<Instant>,
}

impl RateWatch {
    /// Records `sub` under `wildcard`; true when it is new and the window
    /// already holds [`RATE_LIMIT`] new ones.
    pub fn exceeded(&self, wildcard: &str, sub: &str, now: Instant) -> bool {
        let Ok(mut map) = self.inner.lock() else {
            return false;
        };
        let seen = map.entry(wildcard.to_owned()).or_default();
        while seen
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > RATE_WINDOW)
        {
            seen.recent.pop_front();
        }
        if seen.known.contains(sub) {
            return false;
        }
        if seen.recent.len() >= RATE_LIMIT {
            // Not remembered: a refused name stays new, so it keeps being
            // refused while the window is full.
            return true;
        }
        seen.known.insert(sub.to_owned());
        seen.order.push_back(sub.to_owned());
        if seen.order.len() > REMEMBERED
            && let Some(old) = seen.order.pop_front()
        {
            seen.known.remove(&old);
        }
        seen.recent.push_back(now);
        false
    }
}

#[cfg(test)]
mod tests;
