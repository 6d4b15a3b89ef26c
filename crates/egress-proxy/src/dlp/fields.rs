//! What to scan in a request besides its raw bytes: the values of its
//! parts, decoded the way the receiver will decode them, and joined in
//! order so a secret cut into several fields is whole again.
//!
//! The head becomes one small text document (one line per place: the raw
//! target, each query parameter decoded, the path segments joined, the
//! query values joined, each header, the custom header values joined) so
//! one inspection covers it all and a finding's offset names its place.
//! A body batch yields its joined field values (JSON string values, form
//! values, multipart part bodies), scanned as a second document.

use std::ops::Range;

use http::HeaderMap;

use super::Place;
use crate::decision::decode_query;

/// Longest field value that takes part in a join: fragments of a split
/// secret are short; long values (documents, code, prompts) are scanned
/// on their own and would only make the joined text big.
pub(crate) const JOIN_MAX_VALUE: usize = 256;

/// Most consecutive fields one join covers: a secret cut into more
/// pieces than this is not reassembled.
pub(crate) const JOIN_WINDOW: usize = 4;

/// Every run of 2..=[`JOIN_WINDOW`] consecutive values, as a list of
/// pieces with the index of its first value. Each run is scanned on its
/// own line, so a value before or after the split secret cannot glue onto
/// it and hide its word boundaries.
fn runs<T>(values: &[T]) -> impl Iterator<Item = (usize, &[T])> {
    (0..values.len()).flat_map(move |i| {
        (2..=JOIN_WINDOW)
            .filter(move |n| i + n <= values.len())
            .map(move |n| (i, &values[i..i + n]))
    })
}

/// Request headers every client sends and no secret rides in; their
/// values are scanned one by one but not joined.
const STANDARD_HEADERS: &[&str] = &[
    "accept",
    "accept-encoding",
    "accept-language",
    "cache-control",
    "content-length",
    "content-type",
    "content-encoding",
    "user-agent",
    "pragma",
    "referer",
    "origin",
    "if-none-match",
    "if-modified-since",
    "range",
    "te",
    "dnt",
];

/// A text document assembled from places, with the place of every line.
#[derive(Debug, Default)]
pub(crate) struct Doc {
    pub bytes: Vec<u8>,
    lines: Vec<(usize, Place)>,
}

impl Doc {
    fn line(&mut self, place: Place, parts: &[&[u8]]) {
        self.lines.push((self.bytes.len(), place));
        for p in parts {
            // A newline inside a value would start a line with another
            // place; a space keeps tokens apart just as well.
            self.bytes
                .extend(p.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
        }
        self.bytes.push(b'\n');
    }

    /// The place of the line holding `offset`.
    pub fn place_at(&self, offset: usize) -> Place {
        let i = self.lines.partition_point(|(start, _)| *start <= offset);
        self.lines
            .get(i.saturating_sub(1))
            .map_or(Place::Url, |(_, p)| p.clone())
    }
}

/// The head document: see the module docs.
pub(crate) fn head_doc(path_and_query: &str, headers: &HeaderMap) -> Doc {
    let mut doc = Doc::default();
    let (path, query) = path_and_query
        .split_once('?')
        .map_or((path_and_query, None), |(p, q)| (p, Some(q)));
    doc.line(Place::Url, &[path_and_query.as_bytes()]);
    let segments: Vec<Vec<u8>> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_encoding::percent_decode_str(s).collect())
        .collect();
    let short: Vec<&[u8]> = segments
        .iter()
        .filter(|s| s.len() <= JOIN_MAX_VALUE)
        .map(Vec::as_slice)
        .collect();
    for (_, run) in runs(&short) {
        doc.line(Place::UrlJoined, run);
    }
    if let Some(q) = query {
        let mut values = Vec::new();
        for pair in q.split(['&', ';']).filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode_query(name.as_bytes());
            let value = decode_query(value.as_bytes());
            doc.line(Place::Url, &[&name, b"=", &value]);
            if !value.is_empty() && value.len() <= JOIN_MAX_VALUE {
                values.push(value);
            }
        }
        let parts: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        for (_, run) in runs(&parts) {
            doc.line(Place::UrlJoined, run);
        }
    }
    let mut custom: Vec<&[u8]> = Vec::new();
    for (name, value) in headers {
        let n = name.as_str();
        doc.line(
            Place::Header(n.to_owned()),
            &[n.as_bytes(), b": ", value.as_bytes()],
        );
        if !STANDARD_HEADERS.contains(&n) && value.len() <= JOIN_MAX_VALUE {
            custom.push(value.as_bytes());
        }
    }
    for (_, run) in runs(&custom) {
        doc.line(Place::HeadersJoined, run);
    }
    doc
}

/// How a request body is structured, from its `Content-Type`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BodyKind {
    Plain,
    Json,
    Form,
    Multipart(Vec<u8>),
}

impl BodyKind {
    pub fn of(headers: &HeaderMap) -> Self {
        let Some(ct) = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
        else {
            return Self::Plain;
        };
        let lower = ct.to_ascii_lowercase();
        let mime = lower.split(';').next().unwrap_or("").trim();
        if mime == "application/json" || mime.ends_with("+json") || mime == "application/x-ndjson" {
            Self::Json
        } else if mime == "application/x-www-form-urlencoded" {
            Self::Form
        } else if mime.starts_with("multipart/") {
            let boundary = ct.split(';').find_map(|p| {
                let (k, v) = p.trim().split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("boundary")
                    .then(|| v.trim().trim_matches('"').as_bytes().to_vec())
            });
            boundary.map_or(Self::Plain, Self::Multipart)
        } else {
            Self::Plain
        }
    }
}

/// The short field values of a body batch joined in runs of consecutive
/// values (one run a line), with where each run came from (`(offset in
/// joined, offset in buf)`); `None` when the batch has fewer than two.
/// Joined text and `(offset in joined, offset in buf)` of each line.
pub(crate) type Joined = (Vec<u8>, Vec<(usize, usize)>);

pub(crate) fn joined_values(kind: &BodyKind, buf: &[u8]) -> Option<Joined> {
    let values = match kind {
        BodyKind::Plain => return None,
        BodyKind::Json => json_values(buf),
        BodyKind::Form => form_values(buf),
        BodyKind::Multipart(b) => multipart_values(buf, b),
    };
    let short: Vec<(Range<usize>, Vec<u8>)> = values
        .into_iter()
        .filter(|(_, v)| !v.is_empty() && v.len() <= JOIN_MAX_VALUE)
        .collect();
    if short.len() < 2 {
        return None;
    }
    let mut out = Vec::new();
    let mut map = Vec::new();
    for (i, run) in runs(&short) {
        map.push((out.len(), short[i].0.start));
        for (_, v) in run {
            out.extend(v.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
        }
        out.push(b'\n');
    }
    Some((out, map))
}

/// String values (not keys) of JSON text, unescaped (a value longer than
/// [`JOIN_MAX_VALUE`] is cut just past it: it is dropped from joins
/// anyway, and skipping it is what keeps a body of base64 images cheap).
/// Tolerates starting
/// mid-document (a batch of a long body): scanning resynchronises at the
/// first quote that follows `{`, `[`, `,` or `:`.
fn json_values(buf: &[u8]) -> Vec<(Range<usize>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut prev = b'{';
    while i < buf.len() {
        let c = buf[i];
        if c == b'"' && matches!(prev, b'{' | b'[' | b',' | b':') {
            let start = i + 1;
            let mut j = start;
            let mut v = Vec::new();
            while j < buf.len() && buf[j] != b'"' {
                if v.len() > JOIN_MAX_VALUE {
                    // Too long to take part in a join (it is scanned
                    // raw): skip to the closing quote.
                    match memchr::memchr2(b'"', b'\\', &buf[j..]) {
                        Some(k) if buf[j + k] == b'\\' => {
                            j += k + 2;
                            continue;
                        }
                        Some(k) => {
                            j += k;
                            break;
                        }
                        None => {
                            j = buf.len();
                            break;
                        }
                    }
                }
                if buf[j] == b'\\' && j + 1 < buf.len() {
                    j += 1;
                    match buf[j] {
                        b'n' => v.push(b'\n'),
                        b't' => v.push(b'\t'),
                        b'r' => v.push(b'\r'),
                        b'u' => {
                            let hex = buf
                                .get(j + 1..j + 5)
                                .and_then(|h| std::str::from_utf8(h).ok());
                            match hex
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .and_then(char::from_u32)
                            {
                                Some(ch) => {
                                    v.extend_from_slice(ch.to_string().as_bytes());
                                    j += 4;
                                }
                                None => v.push(b'u'),
                            }
                        }
                        other => v.push(other),
                    }
                } else {
                    // Plain bytes up to the next quote or backslash, at
                    // once (at most one past the join limit).
                    let k = memchr::memchr2(b'"', b'\\', &buf[j..]).map_or(buf.len(), |k| j + k);
                    if k == j {
                        v.push(buf[j]);
                        j += 1;
                    } else {
                        let take = (k - j).min((JOIN_MAX_VALUE + 1).saturating_sub(v.len()));
                        v.extend_from_slice(&buf[j..j + take]);
                        j = k;
                    }
                    continue;
                }
                j += 1;
            }
            let end = j.min(buf.len());
            // A key is followed by `:`.
            let next = buf[(end + 1).min(buf.len())..]
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .copied();
            if next != Some(b':') {
                out.push((start..end, v));
            }
            i = end + 1;
            prev = b'"';
            continue;
        }
        if !c.is_ascii_whitespace() {
            prev = c;
        }
        i += 1;
    }
    out
}

fn form_values(buf: &[u8]) -> Vec<(Range<usize>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut start = 0;
    for part in buf.split(|&b| b == b'&') {
        if let Some(eq) = part.iter().position(|&b| b == b'=') {
            let v = &part[eq + 1..];
            out.push((start + eq + 1..start + part.len(), decode_query(v)));
        }
        start += part.len() + 1;
    }
    out
}

fn multipart_values(buf: &[u8], boundary: &[u8]) -> Vec<(Range<usize>, Vec<u8>)> {
    let mut delim = b"--".to_vec();
    delim.extend_from_slice(boundary);
    let mut out = Vec::new();
    let finder = memchr::memmem::Finder::new(&delim);
    let marks: Vec<usize> = finder.find_iter(buf).collect();
    for w in marks.windows(2) {
        let part = &buf[w[0] + delim.len()..w[1]];
        let base = w[0] + delim.len();
        let Some(h) = memchr::memmem::find(part, b"\r\n\r\n")
            .map(|p| p + 4)
            .or_else(|| memchr::memmem::find(part, b"\n\n").map(|p| p + 2))
        else {
            continue;
        };
        let mut body = &part[h..];
        while body.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
            body = &body[..body.len() - 1];
        }
        out.push((base + h..base + h + body.len(), body.to_vec()));
    }
    out
}

#[cfg(test)]
mod tests;
