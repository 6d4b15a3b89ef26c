//! The signals of text that tries to take over an agent, and how they add
//! up to a verdict.
//!
//! Each signal has a weight; a text is flagged when the weights reach
//! [`THRESHOLD`]. Channels a human reader does not see (HTML comments,
//! hidden elements, zero-width and tag characters, bidi controls, fake
//! chat-role markers, images that carry data to another host) weigh enough
//! alone, and so does a visible instruction-override phrase ("ignore all
//! previous instructions"). Weaker prose signals (it addresses an AI, it
//! tells the reader to send credentials somewhere) need each other. A page that discusses prompt injection (it names the attack
//! at least twice) has its visible signals not counted at all, so an
//! article quoting an attack is not flagged, while the same article hiding
//! an instruction in a comment, or carrying zero-width or bidi characters,
//! still is. That is a choice: an attack page that names the attack twice
//! in plain view is missed unless it also uses a hidden channel.

use std::ops::Range;
use std::sync::OnceLock;

use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

/// Sum of weights at which a text is flagged.
pub const THRESHOLD: u32 = 3;

/// One signal found in a text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signal {
    pub id: &'static str,
    pub span: Range<usize>,
    pub weight: u32,
}

/// The verdict on a text: the signals that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub signals: Vec<Signal>,
    pub score: u32,
}

impl Verdict {
    /// `instruction-override,hidden-html` (distinct ids, in order found).
    pub fn ids(&self) -> String {
        let mut ids: Vec<&str> = Vec::new();
        for s in &self.signals {
            if !ids.contains(&s.id) {
                ids.push(s.id);
            }
        }
        ids.join(",")
    }
}

fn re(pattern: &str) -> Regex {
    RegexBuilder::new(pattern)
        .unicode(false)
        .case_insensitive(true)
        .size_limit(8 << 20)
        .build()
        .expect("built-in pattern compiles (unit-tested)")
}

// The patterns whose matches are signals (the others only qualify them).
const OVERRIDE: &str = concat!(
    r"\b(?:ignore|disregard|forget|override|bypass)\s+(?:(?:all|any|the|your|my|of|these|those)\s+){0,3}",
    r"(?:previous|prior|above|earlier|preceding|existing|system|original|initial|safety)\s+(?:[a-z]+\s+)?",
    r"(?:instructions?|prompts?|directions?|rules|guidelines|guardrails|constraints|directives)\b",
    r"|\byou are now\b[^.\n]{0,30}\b(?:DAN|jailbroken|unrestricted|unfiltered|in developer mode|free of)",
    r"|\bnew (?:system )?instructions?\s*:",
    r"|\b(?:do not|don't|never)\s+(?:tell|inform|alert|notify|mention (?:this|it) to)\s+(?:the\s+)?(?:user|human|operator|developer)",
    r"|\bsystem (?:override|prompt override)\b",
);

const AGENT: &str = concat!(
    r"\bif you are an? (?:AI|LLM|language model|assistant|agent|bot|coding agent)\b",
    r"|\b(?:attention|note to|message for|instructions? for)\s+(?:the\s+|all\s+|any\s+)?(?:AI|LLM|assistants?|agents?|models?|Claude|ChatGPT|Copilot)\b",
    r"|\b(?:AI|LLM) (?:agents?|assistants?|models?) (?:reading|processing|browsing|summari[sz]ing) this\b",
    r"|\bas an AI (?:agent|assistant|model)\b",
);

const EXFIL: &str = concat!(
    r"\b(?:send|post|upload|exfiltrate|forward|e-?mail|leak|transmit|paste|append|include)\b[^\n]{0,60}?",
    r"\b(?:api[_ -]?keys?|access tokens?|tokens|credentials|secrets|passwords|ssh keys?|private keys?|env(?:ironment)? variables|\.env\b|session cookies|conversation history|system prompt)",
    r"|\b(?:cat|type|print|dump|read)\s+[^\n]{0,20}(?:~/\.ssh|\.env\b|/proc/self/environ|id_rsa|\.aws/credentials|\.netrc|\.git-credentials)",
    r"|\b(?:curl|wget)\b[^\n]{0,120}\|\s*(?:ba|z)?sh\b",
    r"|\bprintenv\b[^\n]{0,40}\b(?:curl|wget|nc)\b",
);

const FAKE_ROLE: &str = concat!(
    r"<\|im_start\|>\s*(?:system|assistant)|<\|(?:system|endoftext)\|>",
    r"|(?-i:\[/?(?:SYSTEM|INST)\])|<<SYS>>",
    r"|</?(?:system|system[-_]prompt|system[-_]instructions?|tool[-_]result|function[-_]results|assistant)>",
    r"|(?:^|\n)[ \t#*>]*(?:(?-i:SYSTEM)|System (?:message|prompt|instruction|override)s?)\s*:",
);

const IMAGE: &str = concat!(
    r#"!\[[^\]\n]{0,200}\]\(\s*(https?://[^)\s]+)"#,
    r#"|\[[^\]\n]{0,200}\]\(\s*(https?://[^)\s]+)"#,
    r#"|<img\b[^>]{0,300}?\bsrc\s*=\s*["']?(https?://[^"'\s>]+)"#,
);

struct Patterns {
    override_: Regex,
    agent: Regex,
    exfil: Regex,
    fake_role: Regex,
    discussion: Regex,
    hidden_style: Regex,
    image: Regex,
    /// Matches where any signal pattern matches: one search that lets a
    /// short text with none of them skip the separate searches.
    any: RegexSet,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| Patterns {
        any: RegexSetBuilder::new([OVERRIDE, AGENT, EXFIL, FAKE_ROLE, IMAGE])
            .unicode(false)
            .case_insensitive(true)
            .size_limit(8 << 20)
            .build()
            .expect("built-in patterns compile (unit-tested)"),
        override_: re(OVERRIDE),
        agent: re(AGENT),
        exfil: re(EXFIL),
        fake_role: re(FAKE_ROLE),
        discussion: re(
            r"\bprompt[- ]injections?\b|\bjailbreak(?:s|ing)?\b|\binjection attacks?\b|\badversarial prompts?\b",
        ),
        hidden_style: re(concat!(
            r#"<[a-z][a-z0-9]*\b[^>]{0,300}?(?:style\s*=\s*["'][^"']{0,300}?(?:display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0(?:px|em|pt|rem|%)?\s*[;"']|opacity\s*:\s*0(?:\.0+)?\s*[;"']|(?:left|top|text-indent)\s*:\s*-\d{3,}|color\s*:\s*(?:#fff(?:fff)?|white|transparent|rgba\([^)]*,\s*0\s*\)))"#,
            r#"|\bhidden\b(?:\s*=\s*["']?hidden)?[\s>/]|aria-hidden\s*=\s*["']true)[^>]{0,300}>"#,
        )),
        image: re(IMAGE),
    })
}

/// Placeholders and data shapes in a URL that say "fill in what you know".
fn carries_data(url: &[u8]) -> bool {
    static P: OnceLock<Regex> = OnceLock::new();
    let p = P.get_or_init(|| {
        re(concat!(
            r"[{}]|%7B|%7D|\$\(|\$\{|<[A-Z_ ]{2,}>|%3C[A-Z_]|\[(?:[A-Z_ ]{2,})\]|%5B[A-Z_]",
            r"|[?&][a-z_]{1,20}=(?:INSERT|YOUR|BASE64|ENCODED|DATA|SECRET|CONVERSATION|SUMMARY|HISTORY)",
            r"|[?&=/][A-Za-z0-9+/_-]{48,}",
        ))
    });
    p.is_match(url)
}

fn url_host(url: &[u8]) -> &[u8] {
    let rest = url.splitn(2, |&b| b == b':').nth(1).unwrap_or(b"");
    let rest = rest.strip_prefix(b"//").unwrap_or(rest);
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#' | b':'))
        .unwrap_or(rest.len());
    let host = &rest[..end];
    host.rsplit(|&b| b == b'@').next().unwrap_or(host)
}

/// The registrable part, roughly: the last two labels.
fn site(host: &[u8]) -> Vec<u8> {
    let lower = host.to_ascii_lowercase();
    let labels: Vec<&[u8]> = lower.split(|&b| b == b'.').collect();
    let n = labels.len();
    labels[n.saturating_sub(2)..].join(&b'.')
}

/// Every signal in `text`. `own_host` is the host that served it (links
/// back to the same site carry nothing away).
pub fn signals(text: &[u8], own_host: &str) -> Vec<Signal> {
    let p = patterns();
    if text.len() <= GATE_MAX_BYTES && text.is_ascii() && !p.any.is_match(text) {
        // Exactly the empty result: every signal comes from a match of one
        // of the set's patterns or from non-ASCII characters.
        return Vec::new();
    }
    signals_ungated(p, text, own_host)
}

/// Up to this length the one combined search is cheaper than the separate
/// ones it can spare (each search has a fixed cost; a typical API response
/// or SSE event is far shorter). Longer texts go straight to the separate,
/// literal-prefiltered searches.
const GATE_MAX_BYTES: usize = 4096;

fn signals_ungated(p: &Patterns, text: &[u8], own_host: &str) -> Vec<Signal> {
    let mut out = Vec::new();
    let discussion = p.discussion.find_iter(text).take(2).count() >= 2;
    let hidden = hidden_regions(text);
    let in_hidden = |r: &Range<usize>| hidden.iter().any(|h| h.start <= r.start && r.end <= h.end);
    let visible_weight = |w: u32| if discussion { 0 } else { w };
    let phrase = |re: &Regex, id: &'static str, w: u32, out: &mut Vec<Signal>| {
        for m in re.find_iter(text) {
            let span = m.range();
            let (id, weight) = if in_hidden(&span) {
                ("hidden-instructions", THRESHOLD)
            } else {
                (id, visible_weight(w))
            };
            out.push(Signal { id, span, weight });
        }
    };
    phrase(&p.override_, "instruction-override", THRESHOLD, &mut out);
    phrase(&p.agent, "addresses-the-agent", 2, &mut out);
    phrase(&p.exfil, "exfiltration-directive", 2, &mut out);
    phrase(&p.fake_role, "fake-role-marker", THRESHOLD, &mut out);
    let own = site(own_host.as_bytes());
    for c in p.image.captures_iter(text) {
        let Some(url) = c.get(1).or_else(|| c.get(2)).or_else(|| c.get(3)) else {
            continue;
        };
        let host = url_host(url.as_bytes());
        if !host.is_empty() && site(host) != own && carries_data(url.as_bytes()) {
            let span = c.get(0).map_or(url.range(), |m| m.range());
            let weight = if in_hidden(&span) {
                THRESHOLD
            } else {
                visible_weight(THRESHOLD)
            };
            out.push(Signal {
                id: "data-carrying-link",
                span,
                weight,
            });
        }
    }
    invisible(text, &mut out);
    out.sort_by_key(|s| s.span.start);
    out
}

/// Sums the weights; `Some` at or over [`THRESHOLD`]. The same signal id
/// counts once (ten override phrases are one signal).
pub fn verdict(signals: Vec<Signal>) -> Option<Verdict> {
    let mut seen: Vec<&str> = Vec::new();
    let mut score = 0;
    for s in &signals {
        if !seen.contains(&s.id) {
            seen.push(s.id);
            score += s.weight;
        }
    }
    let signals: Vec<Signal> = signals.into_iter().filter(|s| s.weight > 0).collect();
    (score >= THRESHOLD).then_some(Verdict { signals, score })
}

/// HTML comments, however long: `<!--` to the first `-->` after it (an
/// unterminated one is no region). A plain search: a lazy `.*?` regex
/// between the two is found backwards from each `-->` by the regex engine,
/// quadratic on a page of many short comments.
fn comments(text: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(k) = memchr::memmem::find(&text[at..], b"<!--") {
        let start = at + k;
        let Some(e) = memchr::memmem::find(&text[start + 4..], b"-->") else {
            break;
        };
        at = start + 4 + e + 3;
        out.push(start..at);
    }
    out
}

/// HTML comments and elements styled or marked invisible (their content
/// up to the closing tag or 2000 bytes).
fn hidden_regions(text: &[u8]) -> Vec<Range<usize>> {
    let p = patterns();
    let mut out = comments(text);
    for m in p.hidden_style.find_iter(text) {
        let end = memchr::memmem::find(&text[m.end()..], b"</")
            .map_or(text.len(), |k| m.end() + k)
            .min(m.end() + 2000);
        out.push(m.start()..end);
    }
    out
}

fn is_zero_width(c: char) -> bool {
    matches!(
        c,
        '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{2061}'
            ..='\u{2064}' | '\u{180E}' | '\u{FEFF}'
    )
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn is_tag(c: char) -> bool {
    ('\u{E0000}'..='\u{E007F}').contains(&c)
}

fn is_rtl_script(c: char) -> bool {
    matches!(c, '\u{0590}'..='\u{08FF}' | '\u{FB1D}'..='\u{FDFF}' | '\u{FE70}'..='\u{FEFF}')
}

/// Zero-width characters used as a channel (three or more in a row, or
/// between ASCII letters), Unicode tag characters outside flag emoji, and
/// bidi controls in text with no right-to-left script around them.
fn invisible(text: &[u8], out: &mut Vec<Signal>) {
    let s = String::from_utf8_lossy(text);
    if s.is_ascii() {
        return;
    }
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let mut zw_run = 0;
    let mut zw_between = 0;
    let mut tags = 0;
    let mut bidi = 0;
    let mut first: Option<usize> = None;
    for (i, &(at, c)) in chars.iter().enumerate() {
        let prev = i.checked_sub(1).map(|k| chars[k].1);
        let next = chars.get(i + 1).map(|x| x.1);
        if is_zero_width(c) {
            zw_run += 1;
            let ascii_around = prev.is_some_and(|p| p.is_ascii_alphanumeric())
                && next.is_some_and(|n| n.is_ascii_alphanumeric() || is_zero_width(n));
            if ascii_around && !(c == '\u{FEFF}' && at == 0) {
                zw_between += 1;
            }
            if zw_run >= 3 || zw_between >= 2 {
                first.get_or_insert(at);
            }
        } else {
            zw_run = 0;
        }
        if is_tag(c) {
            // Flag emoji: U+1F3F4 followed by tag letters and U+E007F.
            let mut k = i;
            while k > 0 && is_tag(chars[k - 1].1) {
                k -= 1;
            }
            let flag = k > 0 && chars[k - 1].1 == '\u{1F3F4}';
            if !flag {
                tags += 1;
                first.get_or_insert(at);
            }
        }
        if is_bidi_control(c) {
            let lo = i.saturating_sub(32);
            let hi = (i + 32).min(chars.len());
            if !chars[lo..hi].iter().any(|x| is_rtl_script(x.1)) {
                bidi += 1;
                first.get_or_insert(at);
            }
        }
    }
    // Spans are byte offsets into the lossily decoded text; close enough
    // for an offset in a log line.
    let at = first.unwrap_or(0);
    if zw_between >= 2
        || chars
            .windows(3)
            .any(|w| w.iter().all(|x| is_zero_width(x.1) && x.1 != '\u{200D}'))
    {
        out.push(Signal {
            id: "zero-width-characters",
            span: at..at + 1,
            weight: THRESHOLD,
        });
    }
    if tags >= 2 {
        out.push(Signal {
            id: "unicode-tag-characters",
            span: at..at + 1,
            weight: THRESHOLD,
        });
    }
    if bidi >= 1 {
        out.push(Signal {
            id: "bidi-control-characters",
            span: at..at + 1,
            weight: THRESHOLD,
        });
    }
}

#[cfg(test)]
mod tests;
