//! Detectors that are code, not regexes: environment dumps, and the opt-in
//! checksummed shapes (payment cards by Luhn, IBANs by mod 97, Bitcoin
//! private keys by Base58Check, BIP-39 mnemonics by their SHA-256
//! checksum).
//!
//! Is: `find(detector, bytes) -> spans`. A checksum makes a detector exact
//! about shape (a random 16-digit number passes Luhn one time in ten, and
//! a card number also needs an issuer prefix), but not about intent: a
//! test card number is still a card number. That is why the checksummed
//! detectors are opt-in, each with its own action in egress-proxy.
//!
//! Is not: a validator of real accounts; nothing here talks to anyone.

use std::ops::Range;

use sha2::{Digest, Sha256};

/// A built-in detector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Detector {
    /// A dump of environment variables (`env`, `printenv`, `export -p`,
    /// `/proc/<pid>/environ`, a `.env` file with real values, a JSON or
    /// Python dict of `os.environ`).
    EnvDump,
    /// A payment card number: 13–19 digits with an issuer prefix that pass
    /// the Luhn check, plain or grouped with spaces or dashes.
    PaymentCard,
    /// An IBAN with a known country length that passes mod 97.
    Iban,
    /// A Bitcoin private key: WIF or an extended private key (`xprv`…),
    /// verified by its Base58Check checksum.
    CryptoKey,
    /// A BIP-39 mnemonic (wallet seed phrase): 12, 15, 18, 21 or 24
    /// consecutive words of the English list whose checksum verifies.
    Bip39Mnemonic,
}

impl Detector {
    /// Every detector, in report order.
    pub const ALL: [Detector; 5] = [
        Detector::EnvDump,
        Detector::PaymentCard,
        Detector::Iban,
        Detector::CryptoKey,
        Detector::Bip39Mnemonic,
    ];

    /// The id a finding carries (`payment-card`).
    pub fn id(self) -> &'static str {
        match self {
            Self::EnvDump => "env-dump",
            Self::PaymentCard => "payment-card",
            Self::Iban => "iban",
            Self::CryptoKey => "crypto-private-key",
            Self::Bip39Mnemonic => "bip39-mnemonic",
        }
    }

    /// The description a finding carries.
    pub fn description(self) -> &'static str {
        match self {
            Self::EnvDump => "Dump of environment variables",
            Self::PaymentCard => "Payment card number (Luhn-valid, issuer prefix)",
            Self::Iban => "IBAN (mod-97 valid)",
            Self::CryptoKey => "Bitcoin private key (WIF or extended key, Base58Check-valid)",
            Self::Bip39Mnemonic => "BIP-39 mnemonic seed phrase (checksum-valid)",
        }
    }

    /// Parses an id as [`id`](Self::id) spells it.
    pub fn from_id(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.id() == s)
    }

    /// The spans of `data` this detector flags.
    pub fn find(self, data: &[u8]) -> Vec<Range<usize>> {
        match self {
            Self::EnvDump => env_dumps(data),
            Self::PaymentCard => cards(data),
            Self::Iban => ibans(data),
            Self::CryptoKey => crypto_keys(data),
            Self::Bip39Mnemonic => mnemonics(data),
        }
    }
}

// ---------------------------------------------------------------- env dumps

/// Names every real process environment has (or a bottle's has): three
/// of them side by side are an environment, not a config example.
const PROCESS_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "HOSTNAME",
    "PWD",
    "OLDPWD",
    "SHLVL",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
    "LANG",
    "LC_ALL",
    "_",
    "MAIL",
    "XDG_RUNTIME_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "DISABLE_TELEMETRY",
    "DEBIAN_FRONTEND",
];

/// Parts of a variable name that say it holds a credential.
const CREDENTIAL_NAME_PARTS: &[&str] = &[
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "API_KEY",
    "APIKEY",
    "ACCESS_KEY",
    "PRIVATE_KEY",
    "CREDENTIAL",
    "AUTH",
    "_KEY",
    "_PAT",
    "_DSN",
];

/// Gap (bytes) between two assignments of one dump.
const DUMP_GAP: usize = 512;

/// One `NAME=value` (or `"NAME": "value"`) pair.
struct Pair {
    span: Range<usize>,
    known: bool,
    credential: bool,
}

fn env_dumps(d: &[u8]) -> Vec<Range<usize>> {
    let pairs = env_pairs(d);
    let mut out = Vec::new();
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i + 1;
        while j < pairs.len() && pairs[j].span.start <= pairs[j - 1].span.end + DUMP_GAP {
            j += 1;
        }
        let group = &pairs[i..j];
        let known = group.iter().filter(|p| p.known).count();
        let cred = group.iter().filter(|p| p.credential).count();
        if known >= 3 || (known >= 2 && group.len() >= 5) || cred >= 2 || (cred >= 1 && known >= 1)
        {
            out.push(group[0].span.start..group[group.len() - 1].span.end);
        }
        i = j;
    }
    out
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_name(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn env_pairs(d: &[u8]) -> Vec<Pair> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(p) = memchr::memchr2(b'=', b':', &d[i..]) {
        let at = i + p;
        i = at + 1;
        let sep = d[at];
        // Back over an optional closing quote and the name.
        let mut ne = at;
        while ne > 0 && d[ne - 1] == b' ' && sep == b':' {
            ne -= 1;
        }
        let quote = ne > 0 && matches!(d[ne - 1], b'"' | b'\'');
        if quote {
            ne -= 1;
        }
        if sep == b':' && !quote {
            continue;
        }
        let mut ns = ne;
        while ns > 0 && is_name(d[ns - 1]) {
            ns -= 1;
        }
        if ns == ne || !is_name_start(d[ns]) || ne - ns > 64 {
            continue;
        }
        if quote {
            if ns == 0 || d[ns - 1] != d[ne] {
                continue;
            }
        } else {
            // `NAME=` starts a line, a NUL-separated entry or follows
            // `export ` / `declare -x `.
            let before = &d[..ns];
            let line_start = ns == 0 || matches!(d[ns - 1], b'\n' | b'\0');
            let exported = before.ends_with(b"export ") || before.ends_with(b"declare -x ");
            if !line_start && !exported {
                continue;
            }
        }
        let name = &d[ns..ne];
        // The value: to the end of the line / entry, or the closing quote.
        let mut vs = at + 1;
        while vs < d.len() && d[vs] == b' ' {
            vs += 1;
        }
        let vq = d.get(vs).copied().filter(|c| matches!(c, b'"' | b'\''));
        let vstart = vs + usize::from(vq.is_some());
        let vstart = vstart.min(d.len());
        let vend = match vq {
            Some(q) => memchr::memchr2(q, b'\n', &d[vstart..]),
            None => memchr::memchr3(b'\n', b'\0', b'\r', &d[vstart..]),
        }
        .map_or(d.len(), |k| vstart + k);
        if quote && vq.is_none() {
            // `"NAME": value` without a quoted string value is JSON
            // structure (a number, an object), not an environment entry.
            continue;
        }
        let value = &d[vstart..vend];
        let upper = name.iter().all(|c| !c.is_ascii_lowercase());
        let known = PROCESS_ENV.iter().any(|k| k.as_bytes() == name) && !value.is_empty();
        let credential = upper
            && CREDENTIAL_NAME_PARTS
                .iter()
                .any(|part| contains(name, part.as_bytes()))
            && real_value(value);
        out.push(Pair {
            span: ns..vend,
            known,
            credential,
        });
        i = vend.max(at + 1);
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A value that is not empty, a reference (`$VAR`, `${{ … }}`, `<…>`) or
/// an obvious placeholder.
fn real_value(v: &[u8]) -> bool {
    if v.len() < 6 || matches!(v[0], b'$' | b'<' | b'{' | b'%' | b'*') {
        return false;
    }
    let lower = v.to_ascii_lowercase();
    const PLACEHOLDERS: &[&str] = &[
        "your",
        "changeme",
        "change_me",
        "example",
        "xxxx",
        "placeholder",
        "replace",
        "dummy",
        "redacted",
        "secret_here",
        "todo",
        "none",
        "null",
        "false",
        "true",
    ];
    if PLACEHOLDERS.iter().any(|p| contains(&lower, p.as_bytes())) {
        return false;
    }
    v.iter().any(|&c| c != v[0])
}

// ------------------------------------------------------------ payment cards

fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// Issuer prefixes (IIN ranges) and the lengths they issue.
fn issuer_ok(d: &[u8]) -> bool {
    let n = d.len();
    let p = |k: usize| -> u32 {
        d[..k]
            .iter()
            .fold(0u32, |a, &c| a * 10 + u32::from(c - b'0'))
    };
    match d[0] {
        b'4' => matches!(n, 13 | 16 | 19),                // Visa
        b'5' => (51..=55).contains(&p(2)) && n == 16,     // Mastercard
        b'2' => (2221..=2720).contains(&p(4)) && n == 16, // Mastercard 2-series
        b'3' => {
            (matches!(p(2), 34 | 37) && n == 15)                  // Amex
                || ((3528..=3589).contains(&p(4)) && (16..=19).contains(&n)) // JCB
                || ((matches!(p(2), 36 | 38 | 39) || (300..=305).contains(&p(3))) && (14..=19).contains(&n)) // Diners
        }
        b'6' => {
            (p(4) == 6011 || p(2) == 65 || (644..=649).contains(&p(3)) || p(2) == 62)
                && (16..=19).contains(&n)
        }
        _ => false,
    }
}

fn cards(d: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < d.len() {
        if !d[i].is_ascii_digit()
            || (i > 0 && (d[i - 1].is_ascii_alphanumeric() || d[i - 1] == b'.'))
        {
            i += 1;
            continue;
        }
        // A run of digits with single spaces or dashes between groups.
        let mut j = i;
        let mut digits = Vec::new();
        let mut seps = Vec::new();
        while j < d.len() {
            if d[j].is_ascii_digit() {
                digits.push(d[j]);
                j += 1;
            } else if matches!(d[j], b' ' | b'-')
                && d.get(j + 1).is_some_and(u8::is_ascii_digit)
                && digits.len() < 19
            {
                seps.push((digits.len(), d[j]));
                j += 1;
            } else {
                break;
            }
        }
        let end_ok = j == d.len() || !(d[j].is_ascii_alphanumeric() || d[j] == b'.');
        let grouped = seps.is_empty()
            || (seps.iter().all(|s| s.1 == seps[0].1)
                && (seps.iter().map(|s| s.0).eq([4, 8, 12])
                    || seps.iter().map(|s| s.0).eq([4, 10])
                    || seps.iter().map(|s| s.0).eq([4, 8, 12, 16])));
        if end_ok
            && grouped
            && (13..=19).contains(&digits.len())
            && issuer_ok(&digits)
            && luhn(&digits)
            && digits.iter().any(|&c| c != digits[1])
        {
            out.push(i..j);
        }
        i = j.max(i + 1);
    }
    out
}

// -------------------------------------------------------------------- IBANs

/// IBAN length per country (ISO 13616 registry, the common ones).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AT", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"CH", 21),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"EE", 20),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MT", 31),
    (b"NL", 18),
    (b"NO", 15),
    (b"PL", 28),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"TR", 26),
    (b"UA", 29),
];

fn mod97(iban: &[u8]) -> u32 {
    let rotated = iban[4..].iter().chain(&iban[..4]);
    let mut r = 0u32;
    for &c in rotated {
        if c.is_ascii_digit() {
            r = (r * 10 + u32::from(c - b'0')) % 97;
        } else {
            let v = u32::from(c.to_ascii_uppercase() - b'A') + 10;
            r = (r * 100 + v) % 97;
        }
    }
    r
}

fn ibans(d: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 4 < d.len() {
        let start_ok = i == 0 || !d[i - 1].is_ascii_alphanumeric();
        let head = d[i].is_ascii_uppercase()
            && d[i + 1].is_ascii_uppercase()
            && d[i + 2].is_ascii_digit()
            && d[i + 3].is_ascii_digit();
        let Some(&(_, len)) = (start_ok && head)
            .then(|| IBAN_LENGTHS.iter().find(|(cc, _)| cc[..] == d[i..i + 2]))
            .flatten()
        else {
            i += 1;
            continue;
        };
        // Compact, or in groups of four separated by single spaces.
        let mut chars = Vec::with_capacity(len);
        let mut j = i;
        while j < d.len() && chars.len() < len {
            let c = d[j];
            if c.is_ascii_uppercase() || c.is_ascii_digit() {
                chars.push(c);
                j += 1;
            } else if c == b' '
                && chars.len() % 4 == 0
                && d.get(j + 1).is_some_and(u8::is_ascii_alphanumeric)
            {
                j += 1;
            } else {
                break;
            }
        }
        let end_ok = j == d.len() || !d[j].is_ascii_alphanumeric();
        if chars.len() == len && end_ok && mod97(&chars) == 1 {
            out.push(i..j);
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

// ------------------------------------------------------- Bitcoin private keys

const BASE58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

fn base58_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::with_capacity(s.len());
    for &c in s {
        let mut carry = BASE58.iter().position(|&b| b == c)? as u32;
        for b in out.iter_mut().rev() {
            carry += u32::from(*b) * 58;
            *b = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            out.insert(0, (carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let zeros = s.iter().take_while(|&&c| c == b'1').count();
    let mut v = vec![0u8; zeros];
    v.extend(out);
    Some(v)
}

fn check_ok(raw: &[u8]) -> bool {
    if raw.len() < 5 {
        return false;
    }
    let (payload, sum) = raw.split_at(raw.len() - 4);
    let h = Sha256::digest(Sha256::digest(payload));
    &h[..4] == sum
}

fn is_base58(c: u8) -> bool {
    c.is_ascii_alphanumeric() && !matches!(c, b'0' | b'O' | b'I' | b'l')
}

fn crypto_keys(d: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < d.len() {
        if !is_base58(d[i]) || (i > 0 && d[i - 1].is_ascii_alphanumeric()) {
            i += 1;
            continue;
        }
        let len = d[i..].iter().take_while(|&&c| is_base58(c)).count();
        let run = &d[i..i + len];
        let end_ok = d.get(i + len).is_none_or(|c| !c.is_ascii_alphanumeric());
        let wif = matches!((run[0], len), (b'5' | b'9', 51) | (b'K' | b'L' | b'c', 52));
        let xprv = len == 111 && matches!(&run[..4], b"xprv" | b"tprv" | b"yprv" | b"zprv");
        if end_ok
            && (wif || xprv)
            && let Some(raw) = base58_decode(run)
            && check_ok(&raw)
        {
            let version_ok = if wif {
                matches!(raw[0], 0x80 | 0xEF) && matches!(raw.len(), 37 | 38)
            } else {
                raw.len() == 82
            };
            if version_ok {
                out.push(i..i + len);
            }
        }
        i += len.max(1);
    }
    out
}

// ---------------------------------------------------------- BIP-39 mnemonics

/// The BIP-39 English word list (public domain, from the BIP-39
/// specification; SHA-256 `2f5eed53…24dbda`): 2048 words, sorted, so a
/// word's index is its binary-search position.
const BIP39_ENGLISH: &str = include_str!("bip39_english.txt");

fn bip39_words() -> &'static [&'static str] {
    static WORDS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    WORDS.get_or_init(|| BIP39_ENGLISH.lines().map(str::trim).collect())
}

/// The index of a lowercase word in the list.
fn bip39_index(word: &[u8]) -> Option<u16> {
    if !(3..=8).contains(&word.len()) {
        return None;
    }
    let i = bip39_words()
        .binary_search_by(|w| w.as_bytes().cmp(word))
        .ok()?;
    u16::try_from(i).ok()
}

/// Mnemonic lengths, longest first (a 24-word phrase is not also reported
/// as the 12 words it starts with).
const MNEMONIC_WORDS: [usize; 5] = [24, 21, 18, 15, 12];

/// Whether the word indices form a mnemonic whose checksum verifies: the
/// `11 × n` bits are `ENT` bits of entropy followed by the first
/// `ENT / 32` bits of SHA-256 of the entropy.
pub(crate) fn bip39_checksum_ok(idx: &[u16]) -> bool {
    let bits = idx.len() * 11;
    if !MNEMONIC_WORDS.contains(&idx.len()) {
        return false;
    }
    let cs = bits / 33;
    let ent = bits - cs;
    let mut packed = vec![0u8; bits.div_ceil(8)];
    for (k, &w) in idx.iter().enumerate() {
        for b in 0..11 {
            if w >> (10 - b) & 1 == 1 {
                let at = k * 11 + b;
                packed[at / 8] |= 0x80 >> (at % 8);
            }
        }
    }
    let hash = Sha256::digest(&packed[..ent / 8]);
    (0..cs).all(|b| {
        let want = hash[b / 8] >> (7 - b % 8) & 1;
        let at = ent + b;
        let got = packed[at / 8] >> (7 - at % 8) & 1;
        want == got
    })
}

/// Bytes allowed between two words of a phrase: whitespace, list
/// punctuation, quotes, numbering (`1. abandon 2. ability`) and JSON's
/// escaped newline.
fn mnemonic_gap(g: &[u8]) -> bool {
    !g.is_empty() && g.len() <= 8 && g.iter().enumerate().all(|(i, &c)| {
        matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b',' | b'"' | b'\'' | b'.' | b')' | b':' | b'-')
                || c.is_ascii_digit()
                // `\n` written out inside a JSON string.
                || (c == b'\\' && matches!(g.get(i + 1), Some(b'n' | b'r' | b't')))
                || (matches!(c, b'n' | b'r' | b't') && i > 0 && g[i - 1] == b'\\')
    })
}

/// Runs of consecutive list words (ASCII, any case) in `d`: each word's
/// span and index.
fn mnemonics(d: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    // The current run of list words: (span, index).
    let mut run: Vec<(Range<usize>, u16)> = Vec::new();
    let mut i = 0;
    let mut word = [0u8; 8];
    // Every window that verifies is reported, overlapping ones merged: a
    // real phrase next to other list words is covered even when a window
    // shifted into those words happens to verify too (one time in 16 for
    // 12 words).
    let flush = |run: &mut Vec<(Range<usize>, u16)>, out: &mut Vec<Range<usize>>| {
        if run.len() >= 12 {
            let idx: Vec<u16> = run.iter().map(|(_, w)| *w).collect();
            for s in 0..=idx.len() - 12 {
                for n in MNEMONIC_WORDS {
                    if s + n <= idx.len() && bip39_checksum_ok(&idx[s..s + n]) {
                        let span = run[s].0.start..run[s + n - 1].0.end;
                        match out.last_mut() {
                            Some(last) if last.end >= span.start => {
                                last.end = last.end.max(span.end);
                            }
                            _ => out.push(span),
                        }
                    }
                }
            }
        }
        run.clear();
    };
    while i < d.len() {
        if !d[i].is_ascii_alphabetic() {
            i += 1;
            continue;
        }
        let mut start = i;
        while i < d.len() && d[i].is_ascii_alphabetic() {
            i += 1;
        }
        // `…\nability`: the letter of an escaped newline is not the word's.
        if start > 0 && d[start - 1] == b'\\' && matches!(d[start], b'n' | b'r' | b't') {
            start += 1;
        }
        let len = i - start;
        // A word on its own: not glued to digits or `_` (an identifier).
        let bounded = (start == 0 || !matches!(d[start - 1], b'0'..=b'9' | b'_'))
            && (i == d.len() || !matches!(d[i], b'0'..=b'9' | b'_'));
        let index = (bounded && (3..=8).contains(&len))
            .then(|| {
                for (k, c) in d[start..i].iter().enumerate() {
                    word[k] = c.to_ascii_lowercase();
                }
                bip39_index(&word[..len])
            })
            .flatten();
        match index {
            Some(w)
                if run
                    .last()
                    .is_none_or(|(prev, _)| mnemonic_gap(&d[prev.end..start])) =>
            {
                run.push((start..i, w));
            }
            Some(w) => {
                flush(&mut run, &mut out);
                run.push((start..i, w));
            }
            None => flush(&mut run, &mut out),
        }
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests;
