//! The scan: prefilter, candidate regexes, entropy, allowlists, redaction.

use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::ops::Range;

use crate::detect::Detector;
use crate::rules::RuleSet;

/// Bytes of context kept either side of a secret in an excerpt.
const CONTEXT: usize = 32;
/// Chunk size of [`RuleSet::scan_reader`].
const CHUNK: usize = 8 << 20;
/// Overlap between chunks: a match longer than this that straddles a chunk
/// boundary can be missed (private key blocks are a few KiB).
const OVERLAP: usize = 64 << 10;

/// One detected secret. Holds no secret material: `excerpt` has every
/// secret detected on its line replaced by `***` (a short prefix of a long
/// secret is kept so a reader can tell which value is meant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The rule that matched.
    pub rule_id: String,
    /// The rule's description.
    pub description: String,
    /// The scanned path, when the caller gave one.
    pub path: Option<String>,
    /// 1-based line of the secret's first byte.
    pub line: usize,
    /// 1-based byte column of the secret's first byte.
    pub column: usize,
    /// Byte offset of the secret in the scanned input.
    pub offset: usize,
    /// The line around the secret, secrets masked, control characters
    /// replaced, at most a few dozen bytes of context either side.
    pub excerpt: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {} ({}): {}",
            self.path.as_deref().unwrap_or("<input>"),
            self.line,
            self.column,
            self.rule_id,
            self.description,
            self.excerpt
        )
    }
}

/// Shannon entropy of `data` in bits per byte (0 to 8).
pub fn shannon_entropy(data: &[u8]) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    let mut counts = [0usize; 256];
    for &b in data {
        counts[b as usize] += 1;
    }
    let n = data.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// A match before redaction: positions only.
struct Hit {
    rule: usize,
    secret: Range<usize>,
}

impl RuleSet {
    /// Scans `data` (any bytes). `path` feeds path rules and allowlists and
    /// is copied into findings. Findings are ordered by position.
    pub fn scan(&self, data: &[u8], path: Option<&str>) -> Vec<Finding> {
        self.scan_with_commit(data, path, None)
    }

    /// Like [`scan`](Self::scan), with the commit the content belongs to
    /// (for allowlists that list commits).
    pub fn scan_with_commit(
        &self,
        data: &[u8],
        path: Option<&str>,
        commit: Option<&str>,
    ) -> Vec<Finding> {
        let hits = self.hits(data, path, commit);
        redact(data, path, &hits, &|ri| {
            let r = &self.rules[ri];
            (r.id.as_str(), r.description.as_str())
        })
    }

    /// Like [`scan`](Self::scan), plus the code [`Detector`]s given: one
    /// ordered list of findings, every secret on a line masked in every
    /// excerpt.
    pub fn scan_detect(
        &self,
        data: &[u8],
        path: Option<&str>,
        detectors: &[Detector],
    ) -> Vec<Finding> {
        let mut hits = self.hits(data, path, None);
        if detectors.is_empty() {
            return redact(data, path, &hits, &|ri| {
                let r = &self.rules[ri];
                (r.id.as_str(), r.description.as_str())
            });
        }
        let n = self.rules.len();
        for (k, d) in detectors.iter().enumerate() {
            for span in d.find(data) {
                hits.push(Hit {
                    rule: n + k,
                    secret: span,
                });
            }
        }
        hits.sort_by_key(|h| (h.secret.start, h.rule));
        hits.dedup_by(|later, first| later.secret == first.secret && !later.secret.is_empty());
        redact(data, path, &hits, &|ri| match self.rules.get(ri) {
            Some(r) => (r.id.as_str(), r.description.as_str()),
            None => {
                let d = detectors[ri - n];
                (d.id(), d.description())
            }
        })
    }

    fn hits(&self, data: &[u8], path: Option<&str>, commit: Option<&str>) -> Vec<Hit> {
        let mut hits = Vec::new();
        if let Some(p) = path
            && self.global.iter().any(|a| a.skips_file(p))
        {
            return hits;
        }
        // Path-only rules report the file itself.
        for (ri, r) in self.rules.iter().enumerate() {
            if r.regex.is_none()
                && let (Some(pr), Some(p)) = (&r.path, path)
                && pr.is_match(p.as_bytes())
                && !r.skip_report
                && !self.allowed(ri, Some(p), commit, b"", b"", b"")
            {
                hits.push(Hit {
                    rule: ri,
                    secret: 0..0,
                });
            }
        }
        let mut candidate = vec![false; self.rules.len()];
        for &ri in &self.always {
            candidate[ri] = true;
        }
        if !self.keywords.is_empty() {
            // One pass that copies and lowercases (the compiler vectorizes
            // it), not a copy and then a lowercasing pass.
            let lower: Vec<u8> = data.iter().map(u8::to_ascii_lowercase).collect();
            for (k, present) in self.keywords_in(&lower).into_iter().enumerate() {
                if present {
                    for &ri in &self.keyword_rules[k] {
                        candidate[ri] = true;
                    }
                }
            }
        }
        for (ri, _) in candidate.iter().enumerate().filter(|(_, c)| **c) {
            let rule = &self.rules[ri];
            let Some(re) = rule.regex.as_deref() else {
                continue;
            };
            if let Some(pr) = &rule.path
                && !path.is_some_and(|p| pr.is_match(p.as_bytes()))
            {
                continue;
            }
            for caps in re.captures_iter(data) {
                let Some(whole) = caps.get(0) else { continue };
                let secret = if rule.secret_group > 0 {
                    match caps.get(rule.secret_group) {
                        Some(m) => m,
                        None => continue,
                    }
                } else {
                    caps.iter()
                        .skip(1)
                        .flatten()
                        .find(|m| !m.is_empty())
                        .unwrap_or(whole)
                };
                let bytes = secret.as_bytes();
                if let Some(min) = rule.entropy
                    && shannon_entropy(bytes) < min
                {
                    continue;
                }
                if rule.skip_report {
                    continue;
                }
                let line = line_of(data, secret.start());
                if self.allowed(ri, path, commit, bytes, whole.as_bytes(), &data[line]) {
                    continue;
                }
                hits.push(Hit {
                    rule: ri,
                    secret: secret.range(),
                });
            }
        }
        hits.sort_by_key(|h| (h.secret.start, h.rule));
        // One secret, one finding: when several rules flag the same bytes,
        // the first rule in file order (the specific one) reports it.
        hits.dedup_by(|later, first| later.secret == first.secret && !later.secret.is_empty());
        hits
    }

    /// Which keywords occur in `lower` (the lowercased input), by keyword
    /// index.
    pub(crate) fn keywords_in(&self, lower: &[u8]) -> Vec<bool> {
        let mut seen = vec![false; self.keywords.len()];
        let mut left = self.word_keywords;
        for ac in &self.prefilter {
            let mut at = 0;
            while left > 0 && at < lower.len() {
                let Some(p) = ac.find(lower, at) else {
                    break;
                };
                at = p + 1;
                // Every anchor at `p` (one may be a prefix of the one
                // matched), and every keyword each stands for.
                for &ai in &self.anchors_by_first[lower[p] as usize] {
                    let (anchor, kws) = &self.anchors[ai];
                    if !lower[p..].starts_with(anchor) {
                        continue;
                    }
                    for &(k, off) in kws {
                        if !seen[k]
                            && p >= off
                            && lower[p - off..].starts_with(self.keywords[k].as_bytes())
                        {
                            left -= 1;
                            seen[k] = true;
                        }
                    }
                }
            }
        }
        for bytes in self.punct_bytes.chunks(3) {
            match *bytes {
                [a] => self.punct_hits(memchr::memchr_iter(a, lower), lower, &mut seen),
                [a, b] => self.punct_hits(memchr::memchr2_iter(a, b, lower), lower, &mut seen),
                [a, b, c] => {
                    self.punct_hits(memchr::memchr3_iter(a, b, c, lower), lower, &mut seen);
                }
                _ => {}
            }
        }
        seen
    }

    /// Marks the punctuated keywords found at `hits` (positions of their
    /// punctuation bytes in `lower`).
    fn punct_hits(&self, hits: impl Iterator<Item = usize>, lower: &[u8], seen: &mut [bool]) {
        for pos in hits {
            let at = 256 * usize::from(lower[pos]);
            let lead = self.punct.get(at).map_or(&[][..], Vec::as_slice);
            let after = match pos.checked_sub(1) {
                Some(p) if lower[p] != 0 => self
                    .punct
                    .get(at + usize::from(lower[p]))
                    .map_or(&[][..], Vec::as_slice),
                _ => &[][..],
            };
            for &(off, k) in lead.iter().chain(after) {
                let kb = self.keywords[k].as_bytes();
                if !seen[k] && pos >= off && lower[pos - off..].starts_with(kb) {
                    seen[k] = true;
                }
            }
        }
    }

    fn allowed(
        &self,
        ri: usize,
        path: Option<&str>,
        commit: Option<&str>,
        secret: &[u8],
        whole: &[u8],
        line: &[u8],
    ) -> bool {
        let rule = &self.rules[ri];
        rule.allowlists
            .iter()
            .any(|a| a.allows(path, commit, secret, whole, line))
            || self
                .global
                .iter()
                .filter(|a| {
                    a.target_rules.is_empty() || a.target_rules.iter().any(|t| t == &rule.id)
                })
                .any(|a| a.allows(path, commit, secret, whole, line))
    }

    /// Scans a stream in bounded memory (chunks of 8 MiB overlapping by 64
    /// KiB); line numbers and offsets are relative to the whole stream.
    pub fn scan_reader<R: Read>(
        &self,
        reader: R,
        path: Option<&str>,
    ) -> std::io::Result<Vec<Finding>> {
        self.scan_reader_capped(reader, path, usize::MAX)
            .map(|(fs, _)| fs)
    }

    /// Like [`scan_reader`](Self::scan_reader) but keeps at most `cap`
    /// findings (the first ones), so input dense with secrets cannot grow
    /// memory; returns them with the total count.
    pub fn scan_reader_capped<R: Read>(
        &self,
        mut reader: R,
        path: Option<&str>,
        cap: usize,
    ) -> std::io::Result<(Vec<Finding>, usize)> {
        let mut total = 0usize;
        let mut buf: Vec<u8> = Vec::new();
        let mut base = 0usize; // stream offset of buf[0]
        let mut base_line = 1usize; // line number of buf[0]
        let mut prev_end = 0usize; // stream offset where the previous chunk ended
        let mut overlap_seen: HashSet<(usize, String)> = HashSet::new();
        let mut out = Vec::new();
        loop {
            let want = CHUNK.saturating_sub(buf.len());
            let n = (&mut reader).take(want as u64).read_to_end(&mut buf)?;
            let eof = n < want;
            let mut next_seen = HashSet::new();
            let keep_from = if eof {
                buf.len()
            } else {
                // Keep the tail (from a line start when possible) for the next chunk.
                let k = buf.len().saturating_sub(OVERLAP);
                buf[k..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(k, |p| k + p + 1)
            };
            for mut f in self.scan(&buf, path) {
                f.offset += base;
                f.line += base_line - 1;
                let key = (f.offset, f.rule_id.clone());
                if f.offset < prev_end && overlap_seen.contains(&key) {
                    continue;
                }
                if f.offset >= base + keep_from {
                    next_seen.insert(key);
                }
                total += 1;
                if out.len() < cap {
                    out.push(f);
                }
            }
            if eof {
                break;
            }
            overlap_seen = next_seen;
            prev_end = base + buf.len();
            base_line += buf[..keep_from].iter().filter(|&&b| b == b'\n').count();
            base += keep_from;
            buf.drain(..keep_from);
        }
        Ok((out, total))
    }
}

fn line_of(data: &[u8], at: usize) -> Range<usize> {
    let start = data[..at]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let end = data[at..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(data.len(), |p| at + p);
    start..end
}

fn redact<'a>(
    data: &[u8],
    path: Option<&str>,
    hits: &[Hit],
    label: &dyn Fn(usize) -> (&'a str, &'a str),
) -> Vec<Finding> {
    let mut out = Vec::with_capacity(hits.len());
    let mut line_no = 1usize;
    let mut counted = 0usize;
    for h in hits {
        let (rule_id, description) = label(h.rule);
        let at = h.secret.start;
        line_no += data[counted..at].iter().filter(|&&b| b == b'\n').count();
        counted = at;
        let line = line_of(data, at);
        let from = line.start.max(at.saturating_sub(CONTEXT));
        let from = floor_char(data, from, line.start);
        let to = line.end.min(h.secret.end.max(at) + CONTEXT);
        let to = ceil_char(data, to, line.end);
        // Every secret touching this window is masked, not just this one.
        let mut excerpt = String::new();
        if from > line.start {
            excerpt.push('…');
        }
        let mut masks: Vec<&Hit> = hits
            .iter()
            .filter(|o| o.secret.start < to && o.secret.end > from)
            .collect();
        masks.sort_by_key(|o| o.secret.start);
        let mut i = from;
        for m in masks {
            let s = m.secret.start.clamp(from, to);
            let e = m.secret.end.min(to).max(s);
            if s < i {
                i = i.max(e);
                continue;
            }
            push_clean(&mut excerpt, &data[i..s]);
            if m.secret.start >= from && m.secret.len() >= 20 {
                push_clean(&mut excerpt, &data[s..(s + 4).min(e)]);
            }
            excerpt.push_str("***");
            i = e;
        }
        if i < to {
            push_clean(&mut excerpt, &data[i..to]);
        }
        if to < line.end {
            excerpt.push('…');
        }
        if h.secret.is_empty() {
            excerpt = format!("file name matches {rule_id}");
        }
        out.push(Finding {
            rule_id: rule_id.to_owned(),
            description: description.to_owned(),
            path: path.map(str::to_owned),
            line: line_no,
            column: at - line.start + 1,
            offset: at,
            excerpt,
        });
    }
    out
}

/// Moves `i` back to a UTF-8 boundary (not below `min`).
fn floor_char(data: &[u8], mut i: usize, min: usize) -> usize {
    while i > min && i < data.len() && (data[i] & 0xC0) == 0x80 {
        i -= 1;
    }
    i
}

/// Moves `i` forward to a UTF-8 boundary (not above `max`).
fn ceil_char(data: &[u8], mut i: usize, max: usize) -> usize {
    while i < max && (data[i] & 0xC0) == 0x80 {
        i += 1;
    }
    i
}

/// Appends bytes as text with invalid UTF-8 and control characters replaced,
/// so an excerpt cannot carry terminal escapes.
fn push_clean(out: &mut String, bytes: &[u8]) {
    for c in String::from_utf8_lossy(bytes).chars() {
        out.push(if c.is_control() {
            if c == '\t' { ' ' } else { '?' }
        } else {
            c
        });
    }
}
