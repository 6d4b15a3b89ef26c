//! Data-loss prevention on the way out: the URL, the client's headers and the
//! body of every forwarded request are scanned with the shared secret
//! scanner (`secret-scan`, the rules git-gate uses) before they leave.
//!
//! Is: the policy (`off | warn | block`, the rules, the opt-in detectors
//! with their own actions, the exempt hosts) and [`DlpBody`], a request
//! body wrapper that scans as it streams. Everything goes through
//! `secret_scan::Inspector` (egress profile): the rules and detectors run
//! on the bytes and again on whatever is found encoded in them (base64,
//! hex, percent-encoding, escapes, gzip inside those). The head is scanned
//! as one document of its places ([`fields`]): the raw target, every query
//! parameter decoded, path segments and query values joined, every header,
//! custom header values joined; a body batch also has its JSON, form or
//! multipart values joined and scanned, so a secret cut across fields is
//! whole again. Host names under a wildcard route are checked for data
//! ([`crate::hostlabel`]). A compressed body (`Content-Encoding`) is held,
//! up to [`MAX_COMPRESSED`], decoded within bounds and scanned before any
//! of it leaves; under `block`, a body that cannot be decoded is refused.
//!
//! A body is
//! forwarded in batches; the last [`HOLD_BACK`] bytes seen are held back and
//! scanned again together with the next batch, so a secret of up to
//! `HOLD_BACK` bytes is found whole even when it straddles reads, and under
//! `block` no byte of it has left when it is found: the body ends with an
//! error, the upstream request is aborted and the client reads a 403.
//!
//! Is not: a response scanner (that is [`crate::inbound`]). WebSocket
//! messages are scanned through [`Dlp::scan_message`] once the proxy
//! parses frames. Hosts whose bodies
//! are conversation text (the LLM API) are exempt: the operator's prompts
//! and the files the agent reads would trip the rules all day.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use manifest::{HostPattern, IpLiterals, RequestHost};
pub use secret_scan::Detector;
use secret_scan::{Finding, Hit, Inspector, Profile, RuleSet};

use crate::codec::{self, Bounds, Coding};
use crate::hostlabel;

pub(crate) mod fields;

use fields::BodyKind;

/// Bytes held back and rescanned with the next batch: the longest secret
/// guaranteed to be found whole (private key blocks are a few KiB).
pub const HOLD_BACK: usize = 16 * 1024;
/// New bytes gathered before a scan: larger batches rescan the held-back
/// tail less often (the tail costs `HOLD_BACK / BATCH` extra work).
pub const BATCH: usize = 64 * 1024;
/// Findings logged per body under `warn`; the rest are counted.
const MAX_WARN_LINES: usize = 20;
/// Largest compressed request body held for inspection; past it, `block`
/// refuses the body (it cannot be inspected) and `warn` forwards it.
pub const MAX_COMPRESSED: usize = 8 << 20;
/// How far a compressed request body is decoded.
pub const DECODE_BOUNDS: Bounds = Bounds {
    max_out: 256 << 20,
    max_ratio: 200,
};
/// The rule id of a body refused because it could not be decoded.
pub const UNDECODABLE: &str = "undecodable-body";

/// What happens when a request carries something that looks like a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DlpAction {
    /// Nothing is scanned.
    #[default]
    Off,
    /// Forwarded; each finding is logged.
    Warn,
    /// Refused with a 403 before the secret leaves.
    Block,
}

impl DlpAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Warn => "warn",
            Self::Block => "block",
        }
    }
}

impl std::str::FromStr for DlpAction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "off" => Ok(Self::Off),
            "warn" => Ok(Self::Warn),
            "block" => Ok(Self::Block),
            other => Err(format!(
                "unknown DLP action {other:?}; expected off, warn or block"
            )),
        }
    }
}

/// What the operator asked for: not yet loaded.
#[derive(Clone, Debug, Default)]
pub struct DlpSettings {
    pub action: DlpAction,
    /// A gitleaks-format TOML rule file; the built-in rules when `None`.
    pub rules: Option<PathBuf>,
    /// Host patterns (`api.example.com`, `*.example.com`) never scanned.
    pub exempt: Vec<String>,
    /// Opt-in checksummed detectors, each with its own action (the
    /// environment-dump detector is always on and follows `action`).
    pub detectors: Vec<(Detector, DlpAction)>,
}

/// Parses `payment-card=block` (a detector id, `=`, an action).
pub fn parse_detector(s: &str) -> Result<(Detector, DlpAction), String> {
    let (id, action) = s.split_once('=').ok_or_else(|| {
        format!("DLP detector {s:?}: expected ID=ACTION, e.g. payment-card=block")
    })?;
    let id = id.trim();
    let d = Detector::from_id(id)
        .filter(|d| *d != Detector::EnvDump)
        .ok_or_else(|| {
            let known: Vec<&str> = Detector::ALL
                .iter()
                .filter(|d| **d != Detector::EnvDump)
                .map(|d| d.id())
                .collect();
            format!(
                "unknown DLP detector {id:?}; expected one of {}",
                known.join(", ")
            )
        })?;
    Ok((d, action.parse()?))
}

/// Why the DLP settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DlpError {
    #[error("{0}")]
    Rules(#[from] secret_scan::RuleError),
    #[error(
        "DLP exempt host {host:?}: {reason}; expected a host name such as api.example.com or *.example.com"
    )]
    ExemptHost { host: String, reason: String },
}

/// The loaded policy.
pub struct Dlp {
    action: DlpAction,
    /// `None` when every action is `off`.
    inspector: Option<Inspector>,
    exempt: Vec<HostPattern>,
    /// Opt-in detectors and their actions.
    detectors: Vec<(Detector, DlpAction)>,
    hosts: hostlabel::RateWatch,
}

impl fmt::Debug for Dlp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dlp")
            .field("action", &self.action)
            .field("rules", &self.rule_count())
            .field("exempt", &self.exempt)
            .field("detectors", &self.detectors)
            .finish()
    }
}

impl Dlp {
    /// Reads the rule file (if any) and parses the exempt hosts. With
    /// every action `off` nothing is read.
    pub fn load(s: &DlpSettings) -> Result<Self, DlpError> {
        let detectors: Vec<(Detector, DlpAction)> = s
            .detectors
            .iter()
            .copied()
            .filter(|(_, a)| *a != DlpAction::Off)
            .collect();
        let on = s.action != DlpAction::Off || !detectors.is_empty();
        let rules = match (&s.rules, on) {
            (_, false) => None,
            (Some(path), true) => Some(RuleSet::load_for(path, Profile::Egress)?),
            (None, true) => Some(RuleSet::builtin(Profile::Egress)),
        };
        let mut run: Vec<Detector> = detectors.iter().map(|(d, _)| *d).collect();
        if s.action != DlpAction::Off {
            run.push(Detector::EnvDump);
        }
        let exempt = s
            .exempt
            .iter()
            .map(|h| h.trim())
            .filter(|h| !h.is_empty())
            .map(|h| {
                HostPattern::parse(h, IpLiterals::Allow).map_err(|e| DlpError::ExemptHost {
                    host: h.to_owned(),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            action: s.action,
            inspector: rules.map(|r| Inspector::new(r, &run)),
            exempt,
            detectors,
            hosts: hostlabel::RateWatch::default(),
        })
    }

    /// A policy that scans nothing.
    pub fn off() -> Self {
        Self {
            action: DlpAction::Off,
            inspector: None,
            exempt: Vec::new(),
            detectors: Vec::new(),
            hosts: hostlabel::RateWatch::default(),
        }
    }

    pub fn action(&self) -> DlpAction {
        self.action
    }

    /// The number of rules loaded (0 when off).
    pub fn rule_count(&self) -> usize {
        self.inspector.as_ref().map_or(0, |i| i.rules().len())
    }

    /// The action for a finding of `rule_id`: an opt-in detector's own,
    /// else the policy's.
    fn action_for(&self, rule_id: &str) -> DlpAction {
        self.detectors
            .iter()
            .find(|(d, _)| d.id() == rule_id)
            .map_or(self.action, |(_, a)| *a)
    }

    fn inspect(&self, data: &[u8]) -> Vec<Hit> {
        self.inspector
            .as_ref()
            .map_or_else(Vec::new, |i| i.inspect(data).hits)
    }

    /// `{action, rules, exempt}` for the status endpoint.
    pub fn status_json(&self) -> serde_json::Value {
        serde_json::json!({
            "action": self.action.as_str(),
            "rules": self.rule_count(),
            "exempt": self.exempt.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "detectors": self.detectors.iter().map(|(d, a)| (d.id().to_owned(), a.as_str())).collect::<std::collections::BTreeMap<_, _>>(),
        })
    }

    /// Whether requests to `host` are scanned.
    pub fn covers(&self, host: &RequestHost) -> bool {
        self.inspector.is_some() && !self.exempt.iter().any(|p| p.matches(host))
    }

    /// Scans the host name (under a wildcard route: `route` is the route's
    /// host pattern), the request target and the client's header values.
    /// The hit to act on, if any: the first one whose action is `block`,
    /// else the first `warn` one.
    pub fn scan_head(
        &self,
        host: &RequestHost,
        route: &str,
        path_and_query: &str,
        headers: &HeaderMap,
    ) -> Option<DlpHit> {
        let mut hits = Vec::new();
        if let Some(h) = self.scan_host(host, route) {
            hits.push(h);
        }
        let doc = fields::head_doc(path_and_query, headers);
        for h in self.inspect(&doc.bytes) {
            let place = doc.place_at(h.offset);
            hits.push(DlpHit::from_hit(
                place,
                &h,
                h.offset,
                1,
                self.action_for(&h.finding.rule_id),
            ));
        }
        pick(hits)
    }

    fn scan_host(&self, host: &RequestHost, route: &str) -> Option<DlpHit> {
        let base = route.strip_prefix("*.")?;
        let sub = hostlabel::subdomain(host.as_str(), base)?;
        let named = |f: hostlabel::Finding| DlpHit {
            rule_id: f.id().to_owned(),
            description: f.description(),
            place: Place::Host,
            offset: 0,
            line: 1,
            excerpt: format!("<{} bytes of labels>.{base}", sub.len()),
            dressing: String::new(),
            action: self.action,
        };
        if let Some(h) = self.inspect(&hostlabel::decodings(sub)).first() {
            let mut hit =
                DlpHit::from_hit(Place::Host, h, 0, 1, self.action_for(&h.finding.rule_id));
            hit.excerpt = format!("<{} bytes of labels>.{base}", sub.len());
            return Some(hit);
        }
        if hostlabel::looks_like_data(sub) {
            return Some(named(hostlabel::Finding::DataLabel));
        }
        self.hosts
            .exceeded(route, sub, Instant::now())
            .then(|| named(hostlabel::Finding::Rate))
    }

    /// Scans one reassembled outgoing message (a WebSocket text or binary
    /// message): the hit to act on, as [`scan_head`](Self::scan_head).
    pub fn scan_message(&self, data: &[u8]) -> Option<DlpHit> {
        pick(
            self.inspect(data)
                .iter()
                .map(|h| {
                    DlpHit::from_hit(
                        Place::Message,
                        h,
                        h.offset,
                        h.finding.line,
                        self.action_for(&h.finding.rule_id),
                    )
                })
                .collect(),
        )
    }

    /// Scans a body batch, raw and its fields joined.
    fn scan_body(&self, buf: &[u8], kind: &BodyKind) -> Vec<(Hit, usize)> {
        let mut out: Vec<(Hit, usize)> = self
            .inspect(buf)
            .into_iter()
            .map(|h| {
                let at = h.offset;
                (h, at)
            })
            .collect();
        if let Some((joined, map)) = fields::joined_values(kind, buf) {
            for h in self.inspect(&joined) {
                let i = map
                    .partition_point(|(j, _)| *j <= h.offset)
                    .saturating_sub(1);
                let at = map.get(i).map_or(0, |(_, src)| *src);
                out.push((h, at));
            }
        }
        out
    }
}

/// The hit to act on: the first `block`, else the first `warn`.
fn pick(hits: Vec<DlpHit>) -> Option<DlpHit> {
    let block = hits.iter().position(|h| h.action == DlpAction::Block);
    let i = block.or_else(|| hits.iter().position(|h| h.action == DlpAction::Warn))?;
    hits.into_iter().nth(i)
}

/// Where in the request a finding sits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    Url,
    /// The path segments or query values joined.
    UrlJoined,
    Header(String),
    /// The custom header values joined.
    HeadersJoined,
    /// The host name (labels under a wildcard route).
    Host,
    Body,
    /// A WebSocket message.
    Message,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url => f.write_str("the URL"),
            Self::UrlJoined => f.write_str("the URL (path segments or query values joined)"),
            Self::Header(h) => write!(f, "header {h}"),
            Self::HeadersJoined => f.write_str("the request headers (values joined)"),
            Self::Host => f.write_str("the host name"),
            Self::Body => f.write_str("the request body"),
            Self::Message => f.write_str("a WebSocket message"),
        }
    }
}

/// One finding, without the secret: rule, place, position and the
/// scanner's masked excerpt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DlpHit {
    pub rule_id: String,
    pub description: String,
    pub place: Place,
    /// Byte offset in the URL, header line or body.
    pub offset: usize,
    /// 1-based line in the body (1 for the URL and headers).
    pub line: usize,
    /// The line around the secret with the secret masked (`***`).
    pub excerpt: String,
    /// The encodings that hid it (`base64 > hex`), empty when plain.
    pub dressing: String,
    /// What the policy does with it.
    pub action: DlpAction,
}

impl DlpHit {
    fn new(place: Place, f: &Finding, offset: usize, line: usize, action: DlpAction) -> Self {
        Self {
            rule_id: f.rule_id.clone(),
            description: f.description.clone(),
            place,
            offset,
            line,
            excerpt: f.excerpt.clone(),
            dressing: String::new(),
            action,
        }
    }

    fn from_hit(place: Place, h: &Hit, offset: usize, line: usize, action: DlpAction) -> Self {
        let mut hit = Self::new(place, &h.finding, offset, line, action);
        if !h.layers.is_empty() {
            hit.dressing = h.dressing();
        }
        hit
    }

    /// A body that cannot be inspected (undecodable or too large).
    fn undecodable(why: String, action: DlpAction) -> Self {
        Self {
            rule_id: UNDECODABLE.to_owned(),
            description: why,
            place: Place::Body,
            offset: 0,
            line: 1,
            excerpt: String::new(),
            dressing: String::new(),
            action,
        }
    }

    /// "rule aws-access-key-id (AWS access key id) in the request body, line 3 (byte 120)".
    pub fn summary(&self) -> String {
        let hidden = if self.dressing.is_empty() {
            String::new()
        } else {
            format!(", hidden by {}", self.dressing)
        };
        match self.place {
            Place::Body if self.rule_id == UNDECODABLE => {
                format!("the request body cannot be inspected: {}", self.description)
            }
            Place::Body | Place::Message => format!(
                "rule {} ({}) in {}, line {} (byte {}){hidden}",
                self.rule_id, self.description, self.place, self.line, self.offset
            ),
            _ => format!(
                "rule {} ({}) in {}{hidden}",
                self.rule_id, self.description, self.place
            ),
        }
    }

    /// Logs the finding (never the excerpt: logs outlive the request).
    pub fn log(&self, action: DlpAction, host: &str, path: &str) {
        tracing::warn!(
            target: "egress_proxy::dlp",
            action = action.as_str(),
            host,
            path,
            rule = %self.rule_id,
            place = %self.place,
            dressing = %self.dressing,
            line = self.line,
            offset = self.offset,
            "possible secret in an outgoing request"
        );
    }
}

/// The error a blocked body ends with; the finding is in the shared slot.
#[derive(Debug)]
pub struct Blocked;

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request body blocked by DLP")
    }
}

impl std::error::Error for Blocked {}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The `block` finding that stops a body.
type Stop = Box<DlpHit>;

/// Warn-level findings of one body: logged once each, up to a cap.
#[derive(Default)]
struct Warned {
    /// (rule, absolute offset) already logged.
    logged: HashSet<(String, usize)>,
    count: usize,
}

impl Warned {
    fn log(&mut self, hit: &DlpHit, host: &str, path: &str) {
        if !self.logged.insert((hit.rule_id.clone(), hit.offset)) {
            return;
        }
        self.count += 1;
        if self.count <= MAX_WARN_LINES {
            hit.log(DlpAction::Warn, host, path);
        }
    }

    fn forget_before(&mut self, offset: usize) {
        self.logged.retain(|(_, off)| *off >= offset);
    }
}

/// Scans one window of a body: the hits with absolute offsets and lines.
/// `Err` holds the first `block` hit.
fn scan_window(
    dlp: &Dlp,
    kind: &BodyKind,
    buf: &[u8],
    base: usize,
    lines_before: usize,
) -> Result<Vec<DlpHit>, Stop> {
    let mut hits = Vec::new();
    for (h, at) in dlp.scan_body(buf, kind) {
        let line = lines_before
            + buf[..at.min(buf.len())]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
            + 1;
        let action = dlp.action_for(&h.finding.rule_id);
        let hit = DlpHit::from_hit(Place::Body, &h, base + at, line, action);
        if action == DlpAction::Block {
            return Err(Box::new(hit));
        }
        if action == DlpAction::Warn {
            hits.push(hit);
        }
    }
    Ok(hits)
}

/// A request body scanned as it streams; see the module docs.
pub struct DlpBody<B> {
    inner: B,
    dlp: Arc<Dlp>,
    kind: BodyKind,
    /// Content codings of the body; non-empty: the body is held whole
    /// (up to [`MAX_COMPRESSED`]) and decoded before it is forwarded.
    codings: Result<Vec<Coding>, String>,
    /// Compressed mode: the compressed bytes held so far.
    held: BytesMut,
    /// Compressed mode: the decode-and-scan running on the blocking pool.
    decoding: Option<tokio::task::JoinHandle<Result<(), Stop>>>,
    /// Compressed mode under `warn` only: gave up holding (too large or
    /// undecodable) and streams the rest unscanned.
    passthrough: bool,
    /// Bytes read but not yet forwarded (the held-back tail plus the batch).
    buf: BytesMut,
    /// Absolute offset of `buf[0]` in the body.
    base: usize,
    /// Newlines in the forwarded bytes (for absolute line numbers).
    lines_before: usize,
    /// Scanned bytes waiting to be forwarded.
    ready: Option<Bytes>,
    trailers: Option<HeaderMap>,
    finished: bool,
    /// Set under `block` when a finding stops the body.
    hit: Arc<OnceLock<DlpHit>>,
    warned: Warned,
    host: String,
    path: String,
}

impl<B> fmt::Debug for DlpBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the buffered bytes: they may hold the secret.
        f.debug_struct("DlpBody")
            .field("buffered", &self.buf.len())
            .field("held", &self.held.len())
            .field("base", &self.base)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl<B> DlpBody<B> {
    /// Wraps `inner`; `hit` receives the finding that blocks it. `host` and
    /// `path` only label warnings. The body is treated as plain bytes;
    /// see [`for_request`](Self::for_request).
    pub fn new(
        inner: B,
        dlp: Arc<Dlp>,
        hit: Arc<OnceLock<DlpHit>>,
        host: String,
        path: String,
    ) -> Self {
        Self {
            inner,
            dlp,
            kind: BodyKind::Plain,
            codings: Ok(Vec::new()),
            held: BytesMut::new(),
            decoding: None,
            passthrough: false,
            buf: BytesMut::new(),
            base: 0,
            lines_before: 0,
            ready: None,
            trailers: None,
            finished: false,
            hit,
            warned: Warned::default(),
            host,
            path,
        }
    }

    /// Reads the request's `Content-Type` (JSON, form and multipart values
    /// are also scanned joined) and `Content-Encoding` (a compressed body
    /// is decoded for the scan).
    pub fn for_request(mut self, headers: &HeaderMap) -> Self {
        self.kind = BodyKind::of(headers);
        self.codings = codec::codings(headers);
        self
    }

    fn compressed(&self) -> bool {
        !self.passthrough && !matches!(&self.codings, Ok(c) if c.is_empty())
    }

    /// Stops the body with `hit` (a `block` finding).
    fn block(&mut self, hit: DlpHit) -> BoxError {
        hit.log(DlpAction::Block, &self.host, &self.path);
        let _ = self.hit.set(hit);
        self.buf.clear();
        self.held.clear();
        self.finished = true;
        self.trailers = None;
        Blocked.into()
    }

    /// Scans `buf`; forwards all of it when `last`, else all but the
    /// held-back tail. `Err` when a finding blocks the body.
    fn scan(&mut self, last: bool) -> Result<(), Stop> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let warns = scan_window(
            &self.dlp,
            &self.kind,
            &self.buf,
            self.base,
            self.lines_before,
        )?;
        for h in &warns {
            self.warned.log(h, &self.host, &self.path);
        }
        let keep = if last {
            0
        } else {
            HOLD_BACK.min(self.buf.len())
        };
        let out = self.buf.split_to(self.buf.len() - keep).freeze();
        self.base += out.len();
        self.lines_before += memchr::memchr_iter(b'\n', &out).count();
        self.warned.forget_before(self.base);
        if !out.is_empty() {
            self.ready = Some(out);
        }
        Ok(())
    }

    /// Compressed mode, more bytes arrived.
    fn hold(&mut self, d: &[u8]) -> Result<(), Stop> {
        self.held.extend_from_slice(d);
        if self.held.len() <= MAX_COMPRESSED {
            return Ok(());
        }
        let why = format!(
            "a compressed body larger than {} MiB (the inspection limit); send it uncompressed",
            MAX_COMPRESSED >> 20
        );
        self.give_up(why)
    }

    /// The body cannot be inspected: refused under `block`; under `warn`
    /// logged and forwarded unscanned from here on.
    fn give_up(&mut self, why: String) -> Result<(), Stop> {
        let hit = DlpHit::undecodable(why, self.dlp.action);
        if self.dlp.action == DlpAction::Block {
            return Err(Box::new(hit));
        }
        hit.log(DlpAction::Warn, &self.host, &self.path);
        self.passthrough = true;
        if !self.held.is_empty() {
            self.ready = Some(self.held.split().freeze());
        }
        Ok(())
    }

    /// Compressed mode, the body ended: decode and scan it on the
    /// blocking pool.
    fn start_decoding(&mut self) -> Result<(), Stop> {
        let codings = match &self.codings {
            Ok(c) => c.clone(),
            Err(why) => {
                let why = format!("it carries {why}");
                return self.give_up(why);
            }
        };
        let data = self.held.clone().freeze();
        let dlp = self.dlp.clone();
        let kind = self.kind.clone();
        let (host, path) = (self.host.clone(), self.path.clone());
        self.decoding = Some(tokio::task::spawn_blocking(move || {
            scan_decoded(&dlp, &kind, &data, &codings, &host, &path)
        }));
        Ok(())
    }
}

/// Decodes a held compressed body and scans the decoded stream in
/// windows (the same batch / hold-back geometry as a plain body). Warn
/// findings are logged here; the first `block` one is returned.
fn scan_decoded(
    dlp: &Dlp,
    kind: &BodyKind,
    data: &[u8],
    codings: &[Coding],
    host: &str,
    path: &str,
) -> Result<(), Stop> {
    let mut buf: Vec<u8> = Vec::new();
    let mut base = 0usize;
    let mut lines = 0usize;
    let mut warned = Warned::default();
    let mut blocked: Option<Stop> = None;
    let mut window = |buf: &mut Vec<u8>, last: bool, blocked: &mut Option<Stop>| {
        match scan_window(dlp, kind, buf, base, lines) {
            Err(hit) => {
                *blocked = Some(hit);
                return false;
            }
            Ok(warns) => warns.iter().for_each(|h| warned.log(h, host, path)),
        }
        let keep = if last { 0 } else { HOLD_BACK.min(buf.len()) };
        let gone = buf.len() - keep;
        lines += memchr::memchr_iter(b'\n', &buf[..gone]).count();
        base += gone;
        buf.drain(..gone);
        true
    };
    let decoded = codec::decode(data, codings, DECODE_BOUNDS, |piece| {
        buf.extend_from_slice(piece);
        buf.len() < HOLD_BACK + BATCH || window(&mut buf, false, &mut blocked)
    });
    if let Some(hit) = blocked {
        return Err(hit);
    }
    if let Err(e) = decoded {
        let hit = DlpHit::undecodable(e.to_string(), dlp.action);
        if dlp.action == DlpAction::Block {
            return Err(Box::new(hit));
        }
        hit.log(DlpAction::Warn, host, path);
    }
    window(&mut buf, true, &mut blocked);
    blocked.map_or(Ok(()), Err)
}

impl<B> Drop for DlpBody<B> {
    fn drop(&mut self) {
        if self.warned.count > MAX_WARN_LINES {
            tracing::warn!(
                target: "egress_proxy::dlp",
                action = "warn",
                host = %self.host,
                path = %self.path,
                findings = self.warned.count,
                logged = MAX_WARN_LINES,
                "more possible secrets in this request body than were logged"
            );
        }
    }
}

impl<B> Body for DlpBody<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if let Some(b) = this.ready.take() {
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
            if let Some(task) = this.decoding.as_mut() {
                let done = match Pin::new(task).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(r) => r,
                };
                this.decoding = None;
                match done {
                    Ok(Ok(())) => {
                        if !this.held.is_empty() {
                            this.ready = Some(this.held.split().freeze());
                        }
                    }
                    Ok(Err(hit)) => return Poll::Ready(Some(Err(this.block(*hit)))),
                    Err(e) => {
                        let hit = DlpHit::undecodable(
                            format!("the decoder failed: {e}"),
                            DlpAction::Block,
                        );
                        return Poll::Ready(Some(Err(this.block(hit))));
                    }
                }
                continue;
            }
            if this.finished {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(d) if this.passthrough => {
                        if !d.is_empty() {
                            this.ready = Some(d);
                        }
                    }
                    Ok(d) if this.compressed() => {
                        if let Err(hit) = this.hold(&d) {
                            return Poll::Ready(Some(Err(this.block(*hit))));
                        }
                    }
                    Ok(d) => {
                        this.buf.extend_from_slice(&d);
                        if this.buf.len() >= HOLD_BACK + BATCH
                            && let Err(hit) = this.scan(false)
                        {
                            return Poll::Ready(Some(Err(this.block(*hit))));
                        }
                    }
                    Err(frame) => {
                        // Trailers end the body.
                        this.trailers = frame.into_trailers().ok();
                        if let Err(hit) = this.end() {
                            return Poll::Ready(Some(Err(this.block(*hit))));
                        }
                    }
                },
                Poll::Ready(None) => {
                    if let Err(hit) = this.end() {
                        return Poll::Ready(Some(Err(this.block(*hit))));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished
            && self.ready.is_none()
            && self.trailers.is_none()
            && self.decoding.is_none()
            && self.held.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        // The bytes are unchanged: what the client announced still holds.
        self.inner.size_hint()
    }
}

impl<B> DlpBody<B> {
    /// The client's body ended: scan what is left (or start decoding).
    fn end(&mut self) -> Result<(), Stop> {
        self.finished = true;
        if self.compressed() {
            return self.start_decoding();
        }
        self.scan(true)
    }
}

#[cfg(test)]
mod tests;
