//! Finding encoded text and decoding it, so the rules can be run again on
//! what an encoding hid.
//!
//! Is: finders for the dressings an exfiltrating program reaches for —
//! base64 (standard and URL alphabets, padded or not, wrapped in lines),
//! base32, hex (plain, `:`/`-`/space delimited, `\x`/`0x` prefixed),
//! percent-encoding, and character escapes (`\uXXXX` with surrogate pairs,
//! `\xNN`, `&#NN;`/`&#xNN;`) — each returning the span it decoded and the
//! bytes. Within one call the spans are disjoint (escapes claim first, then
//! percent-encoding, then delimited hex, then base-N runs), so the decoded
//! output of one layer is never longer than its input (a `/`-separated run
//! that does not decode as a whole is also decoded piece by piece, which at
//! most doubles that run): decoding `depth` layers costs at most `2 ×
//! depth` times the input.
//!
//! Is not: a validator. The decoders are lenient (wrong padding, trailing
//! bits, mixed alphabets are accepted) because the question is "what could
//! a receiver read out of this", not "is this canonical".

use std::ops::Range;
use std::sync::OnceLock;

/// A dressing a decoded span was wearing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Base64, standard or URL alphabet, padded or not, possibly wrapped.
    Base64,
    /// Base32 (RFC 4648 alphabet, either case).
    Base32,
    /// Hex digits, plain or with delimiters between byte pairs.
    Hex,
    /// Percent-encoding (`%41`); one layer per decode.
    Percent,
    /// `\uXXXX`, `\xNN`, `&#NN;`, `&#xNN;` and `0xNN,` escapes.
    Escapes,
    /// A gzip or zlib stream (found inside decoded bytes).
    Compressed,
}

impl Encoding {
    /// Lowercase name (`base64`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Base64 => "base64",
            Self::Base32 => "base32",
            Self::Hex => "hex",
            Self::Percent => "percent-encoding",
            Self::Escapes => "escapes",
            Self::Compressed => "gzip/zlib",
        }
    }
}

/// One decoded span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Where the encoded text sits in the input.
    pub span: Range<usize>,
    pub encoding: Encoding,
    pub bytes: Vec<u8>,
}

/// Shortest base64 run decoded (20 characters: 15 bytes, shorter than any
/// credential the rules know once encoded).
pub const MIN_BASE64: usize = 20;
/// Shortest base32 run decoded.
pub const MIN_BASE32: usize = 24;
/// Shortest plain hex run decoded (16 bytes).
pub const MIN_HEX: usize = 32;
/// Fewest delimited or prefixed hex byte pairs decoded.
pub const MIN_HEX_PAIRS: usize = 12;
/// Longest inflated output of one compressed stream.
pub const MAX_INFLATE: usize = 1 << 20;

/// Decodes every encoded span found in `data` (see the module docs);
/// spans are disjoint and ordered by kind, then position.
pub fn decode_all(data: &[u8]) -> Vec<Decoded> {
    let mut out = Vec::new();
    let mut claimed = Claimed::new(data.len());
    escapes(data, &mut claimed, &mut out);
    percent(data, &mut claimed, &mut out);
    delimited_hex(data, &mut claimed, &mut out);
    base_n(data, &mut claimed, &mut out);
    out
}

/// Inflates a gzip or zlib stream found at the start of `data`, up to
/// [`MAX_INFLATE`] bytes; `None` when `data` does not start with one.
pub fn inflate(data: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read;
    let gzip = data.starts_with(&[0x1f, 0x8b]);
    let zlib = data.len() >= 2
        && data[0] & 0x0f == 8
        && (u16::from(data[0]) << 8 | u16::from(data[1])) % 31 == 0;
    if !gzip && !zlib {
        return None;
    }
    let mut out = Vec::new();
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(data))
    } else {
        Box::new(flate2::read::ZlibDecoder::new(data))
    };
    // A truncated or corrupt stream still yields what decoded before the
    // damage: that part is what a receiver could read.
    let _ = reader.take(MAX_INFLATE as u64).read_to_end(&mut out);
    (!out.is_empty()).then_some(out)
}

/// Whether decoded bytes look like text worth decoding again: mostly
/// printable ASCII or whitespace, or valid UTF-8 without control bytes.
pub fn is_texty(b: &[u8]) -> bool {
    // The first 4 KiB decide: decoded text does not turn binary halfway.
    let b = &b[..b.len().min(4096)];
    if b.is_empty() {
        return false;
    }
    let printable = b
        .iter()
        .filter(|&&c| (0x20..0x7f).contains(&c) || matches!(c, b'\t' | b'\n' | b'\r'))
        .count();
    if printable * 100 >= b.len() * 85 {
        return true;
    }
    // A cut multi-byte character at the sample's end is not binary.
    let valid = match std::str::from_utf8(b) {
        Ok(s) => s,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    !valid
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
}

/// Which input bytes an earlier finder already decoded.
/// One byte per input byte (1 = claimed), so the next claimed byte is a
/// `memchr` away; with the answer cached until the next claim, finding
/// where runs end costs one pass between claims. The map is allocated at
/// the first claim: most windows claim nothing.
struct Claimed {
    v: Vec<u8>,
    len: usize,
    /// `(from, next claimed at or after from)`, valid until a claim.
    cache: (usize, usize),
}

impl Claimed {
    fn new(len: usize) -> Self {
        Self {
            v: Vec::new(),
            len,
            cache: (1, 0),
        }
    }
    /// Whether anything is claimed.
    fn some(&self) -> bool {
        !self.v.is_empty()
    }
    fn is(&self, i: usize) -> bool {
        self.some() && self.v[i] != 0
    }
    fn any(&self, r: Range<usize>) -> bool {
        self.some() && memchr::memchr(1, &self.v[r]).is_some()
    }
    fn take(&mut self, r: Range<usize>) {
        if self.v.is_empty() {
            self.v = vec![0; self.len];
        }
        self.v[r].fill(1);
        self.cache = (1, 0);
    }
    /// The first claimed index at or after `from` (the length if none).
    fn next(&mut self, from: usize) -> usize {
        if !self.some() {
            return self.len;
        }
        if self.cache.0 <= from && from <= self.cache.1 {
            return self.cache.1;
        }
        let at = memchr::memchr(1, &self.v[from..]).map_or(self.len, |k| from + k);
        self.cache = (from, at);
        at
    }
}

/// The start of the first window of `len` (at least 8) consecutive
/// positions of `d` at or after `from` that all satisfy `ok`, or `None`.
/// Boyer–Moore style: a window is read from its end, and a failing
/// position `q` moves the next window past `q`. The window's last 8 bytes
/// are first read as one word: `bad8` marks (bit 7 of a byte) the bytes it
/// can tell fail `ok` by arithmetic (spaces, line ends, letters out of an
/// alphabet), so in prose one word read moves the window most of its
/// length. Otherwise the window is read byte by byte from its end,
/// positions already known good not again.
fn next_window(
    d: &[u8],
    from: usize,
    len: usize,
    ok: impl Fn(usize) -> bool,
    bad8: impl Fn(u64) -> u64,
) -> Option<usize> {
    let n = d.len();
    if len > n {
        return None;
    }
    let mut w = from;
    // [w, good) is known to satisfy `ok`.
    let mut good = from;
    loop {
        if w > n - len {
            return None;
        }
        let end = w + len;
        let word: [u8; 8] = d[end - 8..end].try_into().unwrap_or_default();
        let m = bad8(u64::from_le_bytes(word)) & 0x8080_8080_8080_8080;
        if m != 0 {
            // Past the highest flagged byte: the last failing position.
            w = end - (m.leading_zeros() / 8) as usize;
            good = w;
            continue;
        }
        let mut k = end;
        loop {
            if k <= good.max(w) {
                return Some(w);
            }
            k -= 1;
            if !ok(k) {
                break;
            }
        }
        good = end;
        w = k + 1;
    }
}

/// Each byte of `x` plus `add`, bit 7 of each byte set when its low seven
/// bits plus `add` reach 0x80 (no carry crosses bytes).
fn swar_add(x: u64, add: u8) -> u64 {
    (x & 0x7f7f_7f7f_7f7f_7f7f) + u64::from(add) * 0x0101_0101_0101_0101
}

/// Bit 7 set in the bytes of `x` that are below `+` or not ASCII: no
/// base64 byte is.
fn not_b64_8(x: u64) -> u64 {
    x | !swar_add(x, 0x80 - b'+')
}

/// Bit 7 set in the bytes of `x` that are control bytes, from `g` up, or
/// not ASCII: neither hex digits nor `:`, `-`, space.
fn not_hex_or_delim_8(x: u64) -> u64 {
    x | swar_add(x, 0x80 - b'g') | !(x | swar_add(x, 0x80 - b' '))
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn hex_pair(d: &[u8], i: usize) -> Option<u8> {
    Some(hex_val(*d.get(i)?)? << 4 | hex_val(*d.get(i + 1)?)?)
}

/// A byte that ends a token of URL-ish or escaped text.
fn token_end(c: u8) -> bool {
    c <= b' ' || matches!(c, b'"' | b'\'' | b'<' | b'>' | b'`') || c == 0x7f
}

/// One escape at `i`: `(decoded chars as UTF-8, length)`.
fn escape_at(d: &[u8], i: usize) -> Option<(Vec<u8>, usize)> {
    let hex4 = |at: usize| -> Option<u32> {
        let mut v = 0u32;
        for k in 0..4 {
            v = v << 4 | u32::from(hex_val(*d.get(at + k)?)?);
        }
        Some(v)
    };
    let push_char = |c: u32| -> Vec<u8> {
        char::from_u32(c).map_or_else(|| vec![b'?'], |ch| ch.to_string().into_bytes())
    };
    match (d.get(i)?, d.get(i + 1)?) {
        (b'\\', b'u') => {
            let hi = hex4(i + 2)?;
            if (0xD800..0xDC00).contains(&hi)
                && d.get(i + 6) == Some(&b'\\')
                && d.get(i + 7) == Some(&b'u')
                && let Some(lo) = hex4(i + 8)
                && (0xDC00..0xE000).contains(&lo)
            {
                let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                return Some((push_char(c), 12));
            }
            Some((push_char(hi), 6))
        }
        (b'\\', b'x') => Some((vec![hex_pair(d, i + 2)?], 4)),
        (b'0', b'x') => {
            // `0x41, 0x42` style: the pair and an optional `,` + spaces. A
            // word boundary before and a separator after, so `…K0xaaG…`
            // inside base64 is not taken for an escape.
            let b = hex_pair(d, i + 2)?;
            if i > 0 && d[i - 1].is_ascii_alphanumeric() {
                return None;
            }
            if d.get(i + 4).is_some_and(u8::is_ascii_alphanumeric) {
                return None;
            }
            let mut n = 4;
            if d.get(i + n) == Some(&b',') {
                n += 1;
            }
            while d.get(i + n) == Some(&b' ') {
                n += 1;
            }
            Some((vec![b], n))
        }
        (b'&', b'#') => {
            let (radix, start) = if matches!(d.get(i + 2), Some(b'x' | b'X')) {
                (16, i + 3)
            } else {
                (10, i + 2)
            };
            let len = d[start.min(d.len())..]
                .iter()
                .take(8)
                .take_while(|c| c.is_ascii_hexdigit())
                .count();
            if len == 0 || d.get(start + len) != Some(&b';') {
                return None;
            }
            let s = std::str::from_utf8(&d[start..start + len]).ok()?;
            let v = u32::from_str_radix(s, radix).ok()?;
            Some((push_char(v), start + len + 1 - i))
        }
        _ => None,
    }
}

/// Runs of text holding at least two escapes.
fn escapes(d: &[u8], claimed: &mut Claimed, out: &mut Vec<Decoded>) {
    let mut i = 0;
    while let Some(p) = memchr::memchr3(b'\\', b'&', b'0', &d[i..]) {
        let at = i + p;
        if escape_at(d, at).is_none() {
            i = at + 1;
            continue;
        }
        // Decode from here while escapes (or plain token bytes between
        // them) continue.
        let mut bytes = Vec::new();
        let mut j = at;
        let mut count = 0;
        let mut last_end = at;
        let mut plain_since = Vec::new();
        while j < d.len() {
            if let Some((b, n)) = escape_at(d, j) {
                bytes.append(&mut plain_since);
                bytes.extend_from_slice(&b);
                j += n;
                count += 1;
                last_end = j;
            } else if !token_end(d[j]) && plain_since.len() < 64 {
                plain_since.push(d[j]);
                j += 1;
            } else {
                break;
            }
        }
        if count >= 2 && !claimed.any(at..last_end) {
            claimed.take(at..last_end);
            out.push(Decoded {
                span: at..last_end,
                encoding: Encoding::Escapes,
                bytes,
            });
        }
        i = last_end.max(at + 1);
    }
}

/// Tokens holding `%XX`: one layer decoded.
fn percent(d: &[u8], claimed: &mut Claimed, out: &mut Vec<Decoded>) {
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'%', &d[i..]) {
        let at = i + p;
        if hex_pair(d, at + 1).is_none() {
            i = at + 1;
            continue;
        }
        let start = d[..at]
            .iter()
            .rposition(|&c| token_end(c))
            .map_or(0, |k| k + 1);
        let end = d[at..]
            .iter()
            .position(|&c| token_end(c))
            .map_or(d.len(), |k| at + k);
        if !claimed.any(start..end) {
            let bytes: Vec<u8> = percent_encoding::percent_decode(&d[start..end]).collect();
            claimed.take(start..end);
            out.push(Decoded {
                span: start..end,
                encoding: Encoding::Percent,
                bytes,
            });
        }
        i = end.max(at + 1);
    }
}

fn is_hex_delim(c: u8) -> bool {
    matches!(c, b':' | b'-' | b' ')
}

/// `de:ad:be:ef`, `de-ad-…`, `de ad …`: at least [`MIN_HEX_PAIRS`] pairs
/// with one consistent delimiter.
fn delimited_hex(d: &[u8], claimed: &mut Claimed, out: &mut Vec<Decoded>) {
    // MIN_HEX_PAIRS pairs span 3 * MIN_HEX_PAIRS - 1 bytes of hex digits
    // and delimiters: only runs of such bytes at least that long are read.
    const RUN: usize = 3 * MIN_HEX_PAIRS - 1;
    let class = |c: u8| HEX_OR_DELIM[c as usize];
    let mut from = 0;
    while let Some(w) = next_window(d, from, RUN, |k| class(d[k]), not_hex_or_delim_8) {
        let mut s = w;
        while s > 0 && class(d[s - 1]) {
            s -= 1;
        }
        let mut e = w + RUN;
        while e < d.len() && class(d[e]) {
            e += 1;
        }
        hex_pairs_in(d, s, e, claimed, out);
        from = e + 1;
    }
}

/// Every delimited pair run in the run of hex digits and delimiters
/// `s..e`.
fn hex_pairs_in(d: &[u8], s: usize, e: usize, claimed: &mut Claimed, out: &mut Vec<Decoded>) {
    let mut i = s;
    while i + 2 < e {
        if let Some(run) = hex_pairs_at(d, i, e) {
            if !claimed.any(run.0.clone()) {
                claimed.take(run.0.clone());
                out.push(Decoded {
                    span: run.0.clone(),
                    encoding: Encoding::Hex,
                    bytes: run.1,
                });
            }
            i = run.0.end;
        } else {
            i += 1;
        }
    }
}

/// Hex digits and the pair delimiters (`:`, `-`, space).
const HEX_OR_DELIM: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c.is_ascii_hexdigit() || matches!(c, b':' | b'-' | b' ');
        i += 1;
    }
    t
};

/// A delimited pair run starting exactly at `i` (ending by `e`).
fn hex_pairs_at(d: &[u8], i: usize, e: usize) -> Option<(Range<usize>, Vec<u8>)> {
    if i > 0 && d[i - 1].is_ascii_hexdigit() {
        return None;
    }
    let delim = *d.get(i + 2)?;
    if !is_hex_delim(delim) {
        return None;
    }
    let mut bytes = Vec::new();
    let mut j = i;
    while j + 1 < e {
        let Some(b) = hex_pair(d, j) else { break };
        if d.get(j + 2).is_some_and(u8::is_ascii_hexdigit) {
            break;
        }
        bytes.push(b);
        j += 2;
        if j < e && d[j] == delim && d.get(j + 1).is_some_and(u8::is_ascii_hexdigit) {
            j += 1;
        } else {
            break;
        }
    }
    (bytes.len() >= MIN_HEX_PAIRS).then_some((i..j, bytes))
}

/// Bytes of the base64 alphabets (both) and padding.
const B64_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'-' | b'_' | b'=');
        i += 1;
    }
    t
};

fn is_b64(c: u8) -> bool {
    B64_BYTES[c as usize]
}

/// Length of a line wrap at `i` (`\n`, `\r\n`, or a JSON-escaped `\n`,
/// then up to 8 spaces or tabs) when base64 continues after it.
fn wrap_at(d: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    if d.get(j) == Some(&b'\r') {
        j += 1;
    }
    if d.get(j) == Some(&b'\n') {
        j += 1;
    } else if d.get(j) == Some(&b'\\') && matches!(d.get(j + 1), Some(b'n' | b'r')) {
        j += 2;
        if d.get(j - 1) == Some(&b'r') && d.get(j) == Some(&b'\\') && d.get(j + 1) == Some(&b'n') {
            j += 2;
        }
    } else {
        return None;
    }
    let mut k = 0;
    while k < 8 && matches!(d.get(j + k), Some(b' ' | b'\t')) {
        k += 1;
    }
    d.get(j + k)
        .is_some_and(|&c| is_b64(c) && c != b'=')
        .then_some(j + k - i)
}

/// Shortest line that may be followed by a wrap (MIME wraps at 76, PEM at
/// 64, `base64` at 76 by default; nobody wraps shorter than this).
const MIN_WRAP_LINE: usize = 32;

/// Base64 / base32 / plain hex runs, possibly wrapped.
fn base_n(d: &[u8], claimed: &mut Claimed, out: &mut Vec<Decoded>) {
    // A run is decoded when it is at least MIN_BASE64 bytes long, or wraps
    // (which needs a first line of MIN_WRAP_LINE > MIN_BASE64 bytes): only
    // runs of unclaimed alphabet bytes at least MIN_BASE64 long are read.
    let mut from = 0;
    loop {
        let found = if claimed.some() {
            next_window(
                d,
                from,
                MIN_BASE64,
                |k| is_b64(d[k]) && !claimed.is(k),
                not_b64_8,
            )
        } else {
            next_window(d, from, MIN_BASE64, |k| is_b64(d[k]), not_b64_8)
        };
        let Some(w) = found else { break };
        let mut s = w;
        while s > 0 && is_b64(d[s - 1]) && !claimed.is(s - 1) {
            s -= 1;
        }
        // Extend right across bytes and wraps.
        let mut e = w + MIN_BASE64;
        let mut line_start = s;
        let mut wrapped = false;
        loop {
            let limit = claimed.next(e);
            while e < limit && is_b64(d[e]) {
                e += 1;
            }
            if e - line_start >= MIN_WRAP_LINE
                && let Some(w) = wrap_at(d, e)
                && !claimed.any(e..e + w)
            {
                e += w;
                line_start = e;
                wrapped = true;
                continue;
            }
            break;
        }
        decode_run(d, s..e, !wrapped, claimed, out);
        from = e + 1;
    }
}

/// The significant characters of a run (wraps dropped), split after each
/// group of `=` padding followed by more data.
fn segments(run: &[u8]) -> Vec<(usize, Vec<u8>)> {
    // Fast path: one segment without wraps (padding only at the end).
    let body_end = run.len() - run.iter().rev().take_while(|&&c| c == b'=').count();
    if run.iter().all(|&c| is_b64(c)) && !run[..body_end].contains(&b'=') {
        return vec![(0, run.to_vec())];
    }
    let mut segs = Vec::new();
    let mut cur = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < run.len() {
        let c = run[i];
        if c == b'=' {
            cur.push(c);
            if run.get(i + 1).is_some_and(|&n| is_b64(n) && n != b'=') {
                segs.push((start, std::mem::take(&mut cur)));
                start = i + 1;
            }
        } else if is_b64(c) {
            cur.push(c);
        } else if c == b'\\' {
            i += 1; // the letter of an escaped newline
        }
        i += 1;
    }
    if !cur.is_empty() {
        segs.push((start, cur));
    }
    segs
}

/// Decodes one segment's significant characters (padding dropped) by
/// shape: hex, then base32, then base64.
fn decode_segment(body: &[u8]) -> Option<(Encoding, Vec<u8>)> {
    let n = body.len();
    if n >= MIN_HEX && body.iter().all(u8::is_ascii_hexdigit) {
        // An odd run may carry one stray character in front.
        let skip = n % 2;
        hex_spec()
            .decode(&body[skip..])
            .ok()
            .map(|b| (Encoding::Hex, b))
    } else if n >= MIN_BASE32
        && (body.iter().all(|c| matches!(c, b'A'..=b'Z' | b'2'..=b'7'))
            || body.iter().all(|c| matches!(c, b'a'..=b'z' | b'2'..=b'7')))
    {
        base32(body).map(|b| (Encoding::Base32, b))
    } else if n >= MIN_BASE64 {
        base64(body).map(|b| (Encoding::Base64, b))
    } else {
        None
    }
}

/// Most `/` in a run whose pieces are decoded one by one: a URL path has
/// a few; a base64 blob has one every 64 characters and is not a path.
const MAX_PATH_PIECES: usize = 16;

/// `unwrapped`: the run is base64-alphabet bytes only (no line wraps).
fn decode_run(
    d: &[u8],
    run: Range<usize>,
    unwrapped: bool,
    claimed: &mut Claimed,
    out: &mut Vec<Decoded>,
) {
    // The common case (an unwrapped run, padding only at its end) is
    // decoded in place: no copy of the run, no second walk to map it back.
    let bytes = &d[run.clone()];
    let body_end = bytes.len() - bytes.iter().rev().take_while(|&&c| c == b'=').count();
    if unwrapped && memchr::memchr(b'=', &bytes[..body_end]).is_none() {
        decode_piece(d, run, &bytes[..body_end], claimed, out);
        return;
    }
    for (off, seg) in segments(bytes) {
        let body: Vec<u8> = seg.iter().copied().filter(|&c| c != b'=').collect();
        let span =
            run.start + off..(run.start + off + seg_span(&d[run.start + off..run.end], &seg));
        decode_piece(d, span, &body, claimed, out);
    }
}

/// Decodes one segment (`body`: its characters without wraps or padding)
/// covering `span` of the input.
fn decode_piece(
    d: &[u8],
    span: Range<usize>,
    body: &[u8],
    claimed: &mut Claimed,
    out: &mut Vec<Decoded>,
) {
    let decoded = decode_segment(body);
    let texty = decoded.as_ref().is_some_and(|(_, b)| is_texty(b));
    if let Some((encoding, bytes)) = decoded
        && !bytes.is_empty()
    {
        claimed.take(span.clone());
        out.push(Decoded {
            span: span.clone(),
            encoding,
            bytes,
        });
    }
    // A path (`/obj/<hex>/<hex>`) is one base64-alphabet run; when it
    // does not decode to text as a whole, its pieces are decoded too.
    let slashes = body.iter().filter(|&&c| c == b'/').count();
    if !texty && (1..=MAX_PATH_PIECES).contains(&slashes) {
        pieces(d, span, out);
    }
}

/// Decodes the `/`-separated pieces of a run (see `decode_run`); they
/// overlap the run's own span, which was claimed already. Only pieces
/// that decode to text are kept.
fn pieces(d: &[u8], span: Range<usize>, out: &mut Vec<Decoded>) {
    let mut start = span.start;
    for piece in d[span.clone()].split(|&c| c == b'/' || !is_b64(c)) {
        let r = start..start + piece.len();
        start = r.end + 1;
        if piece.len() < MIN_BASE64 {
            continue;
        }
        let body: Vec<u8> = piece.iter().copied().filter(|&c| c != b'=').collect();
        if let Some((encoding, bytes)) = decode_segment(&body)
            && is_texty(&bytes)
        {
            out.push(Decoded {
                span: r,
                encoding,
                bytes,
            });
        }
    }
}

/// How many input bytes (wraps included) a segment's characters cover.
fn seg_span(from: &[u8], seg: &[u8]) -> usize {
    let mut need = seg.len();
    let mut i = 0;
    while need > 0 && i < from.len() {
        if is_b64(from[i]) {
            need -= 1;
        } else if from[i] == b'\\' {
            i += 1;
        }
        i += 1;
    }
    i
}

fn spec(symbols: &str, translate: (&str, &str)) -> data_encoding::Encoding {
    let mut s = data_encoding::Specification::new();
    s.symbols.push_str(symbols);
    s.check_trailing_bits = false;
    s.translate.from.push_str(translate.0);
    s.translate.to.push_str(translate.1);
    s.encoding().expect("a valid alphabet")
}

fn b64_spec() -> &'static data_encoding::Encoding {
    static S: OnceLock<data_encoding::Encoding> = OnceLock::new();
    S.get_or_init(|| {
        spec(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
            ("-_", "+/"),
        )
    })
}

fn b32_spec() -> &'static data_encoding::Encoding {
    static S: OnceLock<data_encoding::Encoding> = OnceLock::new();
    S.get_or_init(|| {
        spec(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",
            ("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
        )
    })
}

fn hex_spec() -> &'static data_encoding::Encoding {
    static S: OnceLock<data_encoding::Encoding> = OnceLock::new();
    S.get_or_init(|| spec("0123456789abcdef", ("ABCDEF", "abcdef")))
}

/// Lenient base64: either alphabet, no padding needed, trailing bits
/// ignored. When the natural alignment gives binary and another one (one
/// to three stray characters in front) gives text, the text wins.
fn base64(body: &[u8]) -> Option<Vec<u8>> {
    let decode = |b: &[u8]| -> Option<Vec<u8>> {
        let usable = b.len() - usize::from(b.len() % 4 == 1);
        b64_spec().decode(&b[..usable]).ok()
    };
    let first = decode(body)?;
    if is_texty(&first[..first.len().min(48)]) {
        return Some(first);
    }
    for skip in 1..4 {
        let sample = &body[skip..body.len().min(skip + 64)];
        if decode(sample).is_some_and(|s| is_texty(&s)) {
            return decode(&body[skip..]);
        }
    }
    Some(first)
}

fn base32(body: &[u8]) -> Option<Vec<u8>> {
    // Valid unpadded lengths are 0, 2, 4, 5, 7 mod 8.
    let mut n = body.len();
    while matches!(n % 8, 1 | 3 | 6) {
        n -= 1;
    }
    b32_spec().decode(&body[..n]).ok()
}

#[cfg(test)]
mod tests;
