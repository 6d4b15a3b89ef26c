//! Validated, compiled rules and the rule set with its keyword prefilter.

use std::collections::HashMap;
use std::path::Path;

use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

use regex::bytes::{Regex, RegexBuilder};

use crate::RuleError;
use crate::config::{RawAllowlist, RawConfig, RawRule};
use crate::goregex;

/// The built-in rules, in gitleaks format (see `default_rules.toml`).
pub(crate) const DEFAULT_RULES: &str = include_str!("default_rules.toml");
/// What the egress profile changes (see `egress_rules.toml`).
pub(crate) const EGRESS_RULES: &str = include_str!("egress_rules.toml");

/// Which built-in rule set: the one for repositories or the one for
/// traffic. They differ where the two places differ (see
/// `egress_rules.toml`): a committed file named `example` is likely
/// documentation, a request an agent sends is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Profile {
    /// git-gate: the default rules with their documentation-sample
    /// allowlist.
    #[default]
    Git,
    /// egress-proxy: the default rules, a wider credential-name rule and
    /// bearer headers, and a global allowlist that waives only values that
    /// are not credential-shaped (placeholders such as `xxxxxx` or
    /// `your_api_key`), never a well-formed key because it says
    /// `EXAMPLE`.
    Egress,
}

/// Compiled-program size cap per regex; generous for gitleaks' rules, small
/// enough that a hostile rule file cannot exhaust memory.
const REGEX_SIZE_LIMIT: usize = 32 << 20;

/// Keywords per prefilter automaton (the SIMD searcher's sweet spot).
pub(crate) const KEYWORDS_PER_AUTOMATON: usize = 64;

/// One detection rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub(crate) id: String,
    pub(crate) description: String,
    pub(crate) regex: Option<LazyRegex>,
    pub(crate) path: Option<LazyRegex>,
    pub(crate) keywords: Vec<String>,
    pub(crate) entropy: Option<f64>,
    pub(crate) secret_group: usize,
    pub(crate) allowlists: Vec<Allowlist>,
    pub(crate) skip_report: bool,
}

impl Rule {
    /// The rule id (`aws-access-key-id`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The human description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The lowercased prefilter keywords (empty: the rule always runs).
    pub fn keywords(&self) -> &[String] {
        &self.keywords
    }
}

/// A rule or allowlist regex, compiled the first time a scan needs it (a
/// rule's regex when input holds one of its keywords), so a loaded rule set
/// costs little memory until it is used: an idle egress-proxy with DLP on
/// stays near its DLP-off size.
/// An operator's rule is also compiled once at load, to report a bad
/// pattern with its file and rule; the built-in rules are unit-tested to
/// compile instead (`built_in_regexes_all_compile`).
#[derive(Debug, Clone)]
pub(crate) struct LazyRegex {
    translated: String,
    /// Whether Unicode classes are needed (`None`: find out on first use).
    unicode: Option<bool>,
    /// Capture groups including group 0, when known from a load check.
    captures: Option<usize>,
    compiled: OnceLock<Regex>,
}

impl LazyRegex {
    fn new(what: &str, go: &str) -> Result<Self, String> {
        let translated = goregex::translate(go);
        let (re, unicode) = build_regex(&translated).map_err(|e| {
            format!(
                "{what} {go:?} does not compile: {}",
                one_line(&e.to_string())
            )
        })?;
        Ok(Self {
            translated,
            unicode: Some(unicode),
            captures: Some(re.captures_len()),
            compiled: OnceLock::new(),
        })
    }

    /// A built-in pattern: not compiled until first use.
    fn trusted(go: &str) -> Self {
        Self {
            translated: goregex::translate(go),
            unicode: None,
            captures: None,
            compiled: OnceLock::new(),
        }
    }

    /// The compiled regex (compiled on first use).
    pub(crate) fn get(&self) -> &Regex {
        self.compiled.get_or_init(|| {
            let compiled = match self.unicode {
                Some(u) => build_with(&self.translated, u),
                None => build_regex(&self.translated).map(|(re, _)| re),
            };
            compiled.expect(
                "checked at load (operator rules) or by unit test (built-in rules); compilation is deterministic",
            )
        })
    }
}

impl std::ops::Deref for LazyRegex {
    type Target = Regex;

    fn deref(&self) -> &Regex {
        self.get()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Condition {
    Or,
    And,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RegexTarget {
    Secret,
    Match,
    Line,
}

/// A gitleaks allowlist: a finding it matches is not reported.
#[derive(Debug, Clone)]
pub(crate) struct Allowlist {
    pub condition: Condition,
    pub paths: Vec<LazyRegex>,
    pub regexes: Vec<LazyRegex>,
    pub regex_target: RegexTarget,
    /// Lowercased.
    pub stopwords: Vec<String>,
    pub commits: Vec<String>,
    /// Global allowlists only: the rules it applies to (empty: all).
    pub target_rules: Vec<String>,
}

impl Allowlist {
    /// Whether this allowlist waives a finding. `commit` is the commit the
    /// content belongs to when known.
    pub fn allows(
        &self,
        path: Option<&str>,
        commit: Option<&str>,
        secret: &[u8],
        whole: &[u8],
        line: &[u8],
    ) -> bool {
        let commit_hit = (!self.commits.is_empty()).then(|| {
            commit.is_some_and(|c| self.commits.iter().any(|a| a.eq_ignore_ascii_case(c)))
        });
        let path_hit = (!self.paths.is_empty())
            .then(|| path.is_some_and(|p| self.paths.iter().any(|r| r.is_match(p.as_bytes()))));
        let target = match self.regex_target {
            RegexTarget::Secret => secret,
            RegexTarget::Match => whole,
            RegexTarget::Line => line,
        };
        let regex_hit =
            (!self.regexes.is_empty()).then(|| self.regexes.iter().any(|r| r.is_match(target)));
        let stop_hit = (!self.stopwords.is_empty()).then(|| {
            let lower = secret.to_ascii_lowercase();
            self.stopwords
                .iter()
                .any(|w| contains(&lower, w.as_bytes()))
        });
        let checks = [commit_hit, path_hit, regex_hit, stop_hit];
        match self.condition {
            Condition::Or => checks.contains(&Some(true)),
            Condition::And => {
                checks.iter().any(Option::is_some) && checks.iter().all(|c| *c != Some(false))
            }
        }
    }

    /// Whether the path alone waives every finding in a file (OR allowlist
    /// whose path list matches), so the file need not be scanned at all.
    pub fn skips_file(&self, path: &str) -> bool {
        self.condition == Condition::Or
            && self.target_rules.is_empty()
            && self.paths.iter().any(|r| r.is_match(path.as_bytes()))
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// A prefilter anchor: its bytes and the `(keyword, offset of the anchor
/// in it)` pairs it stands for.
pub(crate) type Anchor = (Vec<u8>, Vec<(usize, usize)>);

/// A search for any of a group of anchors.
#[derive(Debug, Clone)]
pub(crate) enum Prefilter {
    /// Teddy, 16 buckets ("fat"): on prose its 8-bucket variant, which
    /// aho-corasick picks for up to 32 patterns, lets through a candidate
    /// every few bytes, each verified (measured on keyword-free text, 28
    /// anchors: 4.2 → 1.4 instructions per byte).
    Packed(aho_corasick::packed::Searcher),
    /// Where Teddy is not available (no AVX2/SSSE3, or too many anchors).
    Automaton(AhoCorasick),
}

impl Prefilter {
    fn new<'a>(anchors: impl Iterator<Item = &'a Vec<u8>> + Clone) -> Self {
        let packed = aho_corasick::packed::Config::new()
            .match_kind(aho_corasick::packed::MatchKind::LeftmostFirst)
            .only_teddy(true)
            .only_teddy_fat(Some(true))
            .heuristic_pattern_limits(false)
            .builder()
            .extend(anchors.clone())
            .build();
        match packed {
            Some(p) => Self::Packed(p),
            None => Self::Automaton(
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::LeftmostLongest)
                    .kind(Some(AhoCorasickKind::ContiguousNFA))
                    .build(anchors)
                    .expect("keywords are non-empty literals (validated)"),
            ),
        }
    }

    /// The start of the first anchor found in `hay[at..]`.
    pub(crate) fn find(&self, hay: &[u8], at: usize) -> Option<usize> {
        match self {
            Self::Packed(p) => p
                .find_in(hay, aho_corasick::Span::from(at..hay.len()))
                .map(|m| m.start()),
            Self::Automaton(ac) => ac
                .find(aho_corasick::Input::new(hay).span(at..hay.len()))
                .map(|m| m.start()),
        }
    }
}

/// A compiled rule set: rules, global allowlists and the keyword prefilter.
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub(crate) rules: Vec<Rule>,
    pub(crate) global: Vec<Allowlist>,
    /// Over the anchors of the word keywords (no punctuation; see
    /// [`anchor_of`]), [`KEYWORDS_PER_AUTOMATON`] per automaton.
    pub(crate) prefilter: Vec<Prefilter>,
    /// Anchor index → its bytes and the `(keyword, offset of the anchor in
    /// it)` pairs it stands for.
    pub(crate) anchors: Vec<Anchor>,
    /// First byte → anchors starting with it (to check every anchor at a
    /// hit, also one that is a prefix of the anchor matched).
    pub(crate) anchors_by_first: Vec<Vec<usize>>,
    /// Number of word keywords.
    pub(crate) word_keywords: usize,
    /// Keywords holding punctuation (`ghp_`, `sk-ant-`, `://`), found by
    /// their first punctuation byte `b` and the byte before it `p`:
    /// `punct[256 * b + p]` → `(offset in keyword, keyword)`; keywords
    /// that start with their punctuation byte are under `p = 0` and
    /// checked at every `b` (HTML and JSON are full of `-`, `=`, `:`, and
    /// most keywords under a byte cannot match at a given hit).
    pub(crate) punct: Vec<Vec<(usize, usize)>>,
    /// The punctuation bytes some keyword is anchored on.
    pub(crate) punct_bytes: Vec<u8>,
    /// Keyword index → the lowercase keyword.
    pub(crate) keywords: Vec<String>,
    /// Keyword pattern index → rules that list it.
    pub(crate) keyword_rules: Vec<Vec<usize>>,
    /// Rules with a regex and no keywords: they run on every input.
    pub(crate) always: Vec<usize>,
}

impl RuleSet {
    /// The built-in default rules (see the crate README for the list).
    pub fn default_rules() -> RuleSet {
        Self::builtin(Profile::Git)
    }

    /// The built-in rules of a profile.
    pub fn builtin(profile: Profile) -> RuleSet {
        let base = Self::parse(
            DEFAULT_RULES,
            "<built-in default rules>",
            false,
            Profile::Git,
        )
        .expect("the built-in rules are valid (unit-tested)");
        match profile {
            Profile::Git => base,
            Profile::Egress => {
                let extra =
                    Self::parse(EGRESS_RULES, "<built-in egress rules>", false, Profile::Git)
                        .expect("the built-in egress rules are valid (unit-tested)");
                let mut rules = base.rules;
                for r in extra.rules {
                    match rules.iter_mut().find(|b| b.id == r.id) {
                        Some(slot) => *slot = r,
                        None => rules.push(r),
                    }
                }
                Self::build(rules, extra.global)
            }
        }
    }

    /// Loads a gitleaks-format rule file from disk.
    pub fn load(path: &Path) -> Result<RuleSet, RuleError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| RuleError::Read {
            origin: origin.clone(),
            source,
        })?;
        Self::from_toml(&text, &origin)
    }

    /// Parses gitleaks-format TOML. `origin` names the file in errors.
    /// `[extend] useDefault = true` starts from the built-in rules; a rule in
    /// the file with the same id replaces the built-in one.
    pub fn from_toml(text: &str, origin: &str) -> Result<RuleSet, RuleError> {
        Self::parse(text, origin, true, Profile::Git)
    }

    /// Like [`from_toml`](Self::from_toml), with `useDefault` starting
    /// from the built-in rules of `profile`.
    pub fn from_toml_for(text: &str, origin: &str, profile: Profile) -> Result<RuleSet, RuleError> {
        Self::parse(text, origin, true, profile)
    }

    /// Like [`load`](Self::load), with `useDefault` starting from the
    /// built-in rules of `profile`.
    pub fn load_for(path: &Path, profile: Profile) -> Result<RuleSet, RuleError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| RuleError::Read {
            origin: origin.clone(),
            source,
        })?;
        Self::from_toml_for(&text, &origin, profile)
    }

    /// `check_regexes`: compile each rule's regex now to report errors
    /// (false only for the built-in rules).
    fn parse(
        text: &str,
        origin: &str,
        check_regexes: bool,
        profile: Profile,
    ) -> Result<RuleSet, RuleError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| RuleError::Syntax {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let rule_err = |rule: &str, problem: String| RuleError::Rule {
            origin: origin.to_owned(),
            rule: rule.to_owned(),
            problem,
        };
        let mut rules: Vec<Rule> = Vec::new();
        let mut global = Vec::new();
        if let Some(ext) = &raw.extend {
            if ext.path.is_some() || ext.url.is_some() {
                return Err(rule_err("[extend]", "extend.path and extend.url are not supported; concatenate the rule files or use extend.useDefault = true".into()));
            }
            if ext.use_default {
                let base = Self::builtin(profile);
                rules = base
                    .rules
                    .into_iter()
                    .filter(|r| !ext.disabled_rules.iter().any(|d| d == &r.id))
                    .collect();
                global = base.global;
            } else if !ext.disabled_rules.is_empty() {
                return Err(rule_err(
                    "[extend]",
                    "disabledRules only applies with useDefault = true".into(),
                ));
            }
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, table) in raw.rules.into_iter().enumerate() {
            let label = table
                .get("id")
                .and_then(|v| v.as_str())
                .map_or_else(|| format!("#{}", i + 1), str::to_owned);
            let raw_rule: RawRule = toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| rule_err(&label, e.message().to_owned()))?;
            let rule = compile_rule(raw_rule, check_regexes).map_err(|p| rule_err(&label, p))?;
            if seen.insert(rule.id.clone(), i).is_some() {
                return Err(rule_err(
                    &label,
                    "the id appears more than once; rule ids must be unique".into(),
                ));
            }
            match rules.iter_mut().find(|r| r.id == rule.id) {
                Some(slot) => *slot = rule,
                None => rules.push(rule),
            }
        }
        for a in raw.allowlist.into_iter().chain(raw.allowlists) {
            global.push(
                compile_allowlist(a, true, check_regexes)
                    .map_err(|p| rule_err("[allowlist]", p))?,
            );
        }
        for a in &global {
            for t in &a.target_rules {
                if !rules.iter().any(|r| &r.id == t) {
                    return Err(rule_err(
                        "[allowlist]",
                        format!("targetRules names {t:?}, which is not a rule id in this set"),
                    ));
                }
            }
        }
        Ok(Self::build(rules, global))
    }

    fn build(rules: Vec<Rule>, global: Vec<Allowlist>) -> RuleSet {
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut keywords: Vec<String> = Vec::new();
        let mut keyword_rules: Vec<Vec<usize>> = Vec::new();
        let mut always = Vec::new();
        for (ri, r) in rules.iter().enumerate() {
            if r.regex.is_none() {
                continue;
            }
            if r.keywords.is_empty() {
                always.push(ri);
            }
            for k in &r.keywords {
                let ki = *index.entry(k.clone()).or_insert_with(|| {
                    keywords.push(k.clone());
                    keyword_rules.push(Vec::new());
                    keywords.len() - 1
                });
                keyword_rules[ki].push(ri);
            }
        }
        // Keywords are lowercase and the scan lowercases its input first:
        // aho-corasick's SIMD (Teddy) prefilter exists only for
        // case-sensitive, leftmost searches of at most ~64 patterns, and is
        // several times faster than its automaton; so anchors are split
        // into groups of 64. The scan restarts one byte after each hit and
        // checks every anchor starting there, so every keyword present is
        // still seen.
        //
        // Keywords with punctuation (most vendor prefixes: `ghp_`, `xoxb-`,
        // `sk-ant-`, `dp.pt.`) stay out of the automata: many of them make
        // Teddy's nibble fingerprints collide on ordinary prose (measured:
        // 1 GB/s → 100 MB/s on keyword-free text at 160 keywords). They are
        // found by their first punctuation byte instead (memchr), which is
        // rare in prose.
        let is_punct = |b: u8| !b.is_ascii_alphanumeric();
        let mut word: Vec<usize> = Vec::new();
        let mut punct: Vec<Vec<(usize, usize)>> = Vec::new();
        for (ki, k) in keywords.iter().enumerate() {
            match k.bytes().position(is_punct) {
                Some(off) => {
                    let kb = k.as_bytes();
                    let prev = if off == 0 { 0 } else { kb[off - 1] };
                    let slot = 256 * usize::from(kb[off]) + usize::from(prev);
                    if punct.len() <= slot {
                        punct.resize(slot + 1, Vec::new());
                    }
                    punct[slot].push((off, ki));
                }
                None => word.push(ki),
            }
        }
        let punct_bytes: Vec<u8> = (0..=255u8)
            .filter(|&b| {
                let at = 256 * usize::from(b);
                punct
                    .get(at..(at + 256).min(punct.len()))
                    .is_some_and(|l| l.iter().any(|v| !v.is_empty()))
            })
            .collect();
        // Word keywords are searched by an anchor: their rarest
        // three-byte window (see `anchor_of`), verified in full at each
        // hit. Many keywords share a first letter (`akia`, `asia`, `aiza`,
        // `apikey`… all start with `a`), which makes Teddy's fingerprints
        // of their prefixes match most positions of lowercase prose
        // (measured: 33 word keywords, 130–250 MB/s on keyword-free text);
        // their anchors (`kia`, `sia`, `iza`, `pik`…) do not (1–5 GB/s).
        let mut anchors: Vec<Anchor> = Vec::new();
        for &ki in &word {
            let k = keywords[ki].as_bytes();
            let (off, len) = anchor_of(k);
            let a = &k[off..off + len];
            match anchors.iter_mut().find(|(b, _)| b == a) {
                Some((_, list)) => list.push((ki, off)),
                None => anchors.push((a.to_vec(), vec![(ki, off)])),
            }
        }
        let mut anchors_by_first: Vec<Vec<usize>> = vec![Vec::new(); 256];
        for (ai, (a, _)) in anchors.iter().enumerate() {
            anchors_by_first[a[0] as usize].push(ai);
        }
        let prefilter = anchors
            .chunks(KEYWORDS_PER_AUTOMATON)
            .map(|group| Prefilter::new(group.iter().map(|(a, _)| a)))
            .collect();
        RuleSet {
            rules,
            global,
            prefilter,
            anchors,
            anchors_by_first,
            word_keywords: word.len(),
            punct,
            punct_bytes,
            keywords,
            keyword_rules,
            always,
        }
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the set has no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// Rough frequency (percent) of a lowercase byte in English text and code.
fn byte_freq(b: u8) -> f64 {
    match b {
        b'e' => 12.7,
        b't' => 9.1,
        b'a' => 8.2,
        b'o' => 7.5,
        b'i' => 7.0,
        b'n' => 6.7,
        b's' => 6.3,
        b'h' => 6.1,
        b'r' => 6.0,
        b'd' => 4.3,
        b'l' => 4.0,
        b'c' | b'u' => 2.8,
        b'm' | b'w' => 2.4,
        b'f' => 2.2,
        b'g' | b'y' => 2.0,
        b'p' => 1.9,
        b'b' => 1.5,
        b'v' => 0.98,
        b'k' => 0.77,
        b'j' | b'x' => 0.15,
        b'q' => 0.10,
        b'z' => 0.07,
        b'0'..=b'9' => 0.5,
        _ => 1.0,
    }
}

/// Trigrams common in English and in code (`key`, `tok`, `pri`): a
/// keyword's anchor avoids them.
const COMMON_TRIGRAMS: &[&[u8; 3]] = &[
    b"the", b"and", b"ing", b"ion", b"tio", b"ent", b"ati", b"for", b"her", b"ter", b"hat", b"tha",
    b"ere", b"ate", b"his", b"con", b"res", b"ver", b"all", b"ons", b"nce", b"men", b"ith", b"ted",
    b"ers", b"pro", b"thi", b"wit", b"are", b"ess", b"not", b"ive", b"was", b"ect", b"rea", b"com",
    b"eve", b"per", b"int", b"est", b"sta", b"cti", b"ica", b"ist", b"ear", b"ain", b"one", b"our",
    b"iti", b"rat", b"key", b"cre", b"tok", b"api", b"ass", b"pas", b"wor", b"ord", b"sec", b"ken",
    b"ial", b"tai", b"nti", b"den", b"ret", b"ses", b"ker", b"get", b"set", b"val", b"str", b"len",
    b"let", b"aki", b"ssw", b"red", b"riv", b"pri", b"vat",
];

/// The window of a word keyword the prefilter searches: `(offset, len)`.
/// Three bytes (the whole keyword when shorter), chosen to be rare in
/// text: the lowest product of byte frequencies, avoiding common
/// trigrams, then the rarest first byte.
pub(crate) fn anchor_of(k: &[u8]) -> (usize, usize) {
    if k.len() <= 3 {
        return (0, k.len());
    }
    let score = |o: usize| -> (f64, f64) {
        let w = &k[o..o + 3];
        let common = if COMMON_TRIGRAMS.iter().any(|t| &t[..] == w) {
            1000.0
        } else {
            1.0
        };
        (
            w.iter().map(|&b| byte_freq(b)).product::<f64>() * common,
            byte_freq(w[0]),
        )
    };
    let best = (0..=k.len() - 3)
        .min_by(|&a, &b| {
            score(a)
                .partial_cmp(&score(b))
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(b.cmp(&a))
        })
        .unwrap_or(0);
    (best, 3)
}

/// A rule or allowlist regex; `check` compiles it now to report errors.
fn lazy_regex(what: &str, go: &str, check: bool) -> Result<LazyRegex, String> {
    if check {
        LazyRegex::new(what, go)
    } else {
        Ok(LazyRegex::trusted(go))
    }
}

/// Compiles a translated pattern; also says whether Unicode was needed.
/// Go's classes are ASCII; Unicode is used only for patterns that need it
/// (e.g. `\p{L}`), which are invalid without it.
fn build_regex(translated: &str) -> Result<(Regex, bool), regex::Error> {
    build_with(translated, false)
        .map(|r| (r, false))
        .or_else(|_| build_with(translated, true).map(|r| (r, true)))
}

fn build_with(translated: &str, unicode: bool) -> Result<Regex, regex::Error> {
    RegexBuilder::new(translated)
        .unicode(unicode)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn compile_rule(raw: RawRule, check_regex: bool) -> Result<Rule, String> {
    if raw.id.trim().is_empty() {
        return Err(
            "id is empty; expected a short kebab-case name such as \"aws-access-key-id\"".into(),
        );
    }
    if raw.required_rules.is_some() {
        return Err(
            "requiredRules (composite rules) are not supported; remove it or split the rule".into(),
        );
    }
    let regex = raw
        .regex
        .as_deref()
        .map(|r| lazy_regex("regex", r, check_regex))
        .transpose()?;
    let path = raw
        .path
        .as_deref()
        .map(|r| lazy_regex("path", r, check_regex))
        .transpose()?;
    if regex.is_none() && path.is_none() {
        return Err("has neither regex nor path; a rule needs at least one".into());
    }
    let secret_group = match raw.secret_group {
        None => 0,
        Some(g) if g < 0 => {
            return Err(format!(
                "secretGroup {g} is negative; expected 0 (auto) or a capture group number"
            ));
        }
        Some(g) => {
            let groups = regex
                .as_ref()
                .map_or(Some(0), |r| r.captures.map(|c| c - 1));
            let g = usize::try_from(g).unwrap_or(usize::MAX);
            if let Some(groups) = groups
                && g > groups
            {
                return Err(format!(
                    "secretGroup {g} but the regex has {groups} capture group(s)"
                ));
            }
            g
        }
    };
    if let Some(e) = raw.entropy
        && !(0.0..=8.0).contains(&e)
    {
        return Err(format!(
            "entropy {e} is out of range; expected bits per byte between 0 and 8 (typical: 3 to 4.5)"
        ));
    }
    let mut keywords = Vec::with_capacity(raw.keywords.len());
    for k in raw.keywords {
        if k.is_empty() {
            return Err(
                "keywords contains an empty string; every keyword must be a non-empty literal"
                    .into(),
            );
        }
        keywords.push(k.to_ascii_lowercase());
    }
    let mut allowlists = Vec::new();
    for a in raw.allowlist.into_iter().chain(raw.allowlists) {
        allowlists.push(compile_allowlist(a, false, check_regex)?);
    }
    Ok(Rule {
        id: raw.id,
        description: raw.description,
        regex,
        path,
        keywords,
        entropy: raw.entropy,
        secret_group,
        allowlists,
        skip_report: raw.skip_report,
    })
}

fn compile_allowlist(
    raw: RawAllowlist,
    global: bool,
    check_regex: bool,
) -> Result<Allowlist, String> {
    let what = raw
        .description
        .as_deref()
        .map_or_else(|| "allowlist".to_owned(), |d| format!("allowlist {d:?}"));
    let condition = match raw
        .condition
        .as_deref()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None | Some("OR") => Condition::Or,
        Some("AND") => Condition::And,
        Some(other) => {
            return Err(format!(
                "{what}: condition {other:?} is not valid; expected \"OR\" or \"AND\""
            ));
        }
    };
    let regex_target = match raw.regex_target.as_deref() {
        None | Some("secret") => RegexTarget::Secret,
        Some("match") => RegexTarget::Match,
        Some("line") => RegexTarget::Line,
        Some(other) => {
            return Err(format!(
                "{what}: regexTarget {other:?} is not valid; expected \"secret\", \"match\" or \"line\""
            ));
        }
    };
    if !global && !raw.target_rules.is_empty() {
        return Err(format!(
            "{what}: targetRules is only valid in a global [[allowlists]]"
        ));
    }
    let paths = raw
        .paths
        .iter()
        .map(|p| lazy_regex(&format!("{what}: path"), p, check_regex))
        .collect::<Result<_, _>>()?;
    let regexes = raw
        .regexes
        .iter()
        .map(|p| lazy_regex(&format!("{what}: regex"), p, check_regex))
        .collect::<Result<_, _>>()?;
    let a = Allowlist {
        condition,
        paths,
        regexes,
        regex_target,
        stopwords: raw
            .stopwords
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect(),
        commits: raw.commits,
        target_rules: raw.target_rules,
    };
    if a.paths.is_empty() && a.regexes.is_empty() && a.stopwords.is_empty() && a.commits.is_empty()
    {
        return Err(format!(
            "{what} is empty; give at least one of paths, regexes, stopwords or commits"
        ));
    }
    Ok(a)
}
