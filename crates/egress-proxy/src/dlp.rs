//! Data-loss prevention on the way out: the URL, the client's headers and the
//! body of every forwarded request are scanned with the shared secret
//! scanner (`secret-scan`, the rules git-gate uses) before they leave.
//!
//! Is: the policy (`off | warn | block`, the rules, the exempt hosts) and
//! [`DlpBody`], a request body wrapper that scans as it streams. A body is
//! forwarded in batches; the last [`HOLD_BACK`] bytes seen are held back and
//! scanned again together with the next batch, so a secret of up to
//! `HOLD_BACK` bytes is found whole even when it straddles reads, and under
//! `block` no byte of it has left when it is found: the body ends with an
//! error, the upstream request is aborted and the client reads a 403.
//!
//! Is not: a response scanner (DLP guards what leaves), nor a WebSocket
//! scanner (bytes after an upgrade are not HTTP bodies). Hosts whose bodies
//! are conversation text (the LLM API) are exempt: the operator's prompts
//! and the files the agent reads would trip the rules all day.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use manifest::{HostPattern, IpLiterals, RequestHost};
use secret_scan::{Finding, RuleSet};

/// Bytes held back and rescanned with the next batch: the longest secret
/// guaranteed to be found whole (private key blocks are a few KiB).
pub const HOLD_BACK: usize = 16 * 1024;
/// New bytes gathered before a scan: larger batches rescan the held-back
/// tail less often (the tail costs `HOLD_BACK / BATCH` extra work).
pub const BATCH: usize = 64 * 1024;
/// Findings logged per body under `warn`; the rest are counted.
const MAX_WARN_LINES: usize = 20;

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
    /// `None` when the action is `off`.
    rules: Option<RuleSet>,
    exempt: Vec<HostPattern>,
}

impl fmt::Debug for Dlp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dlp")
            .field("action", &self.action)
            .field("rules", &self.rule_count())
            .field("exempt", &self.exempt)
            .finish()
    }
}

impl Dlp {
    /// Reads the rule file (if any) and parses the exempt hosts. With
    /// action `off` nothing is read.
    pub fn load(s: &DlpSettings) -> Result<Self, DlpError> {
        let rules = match (&s.rules, s.action) {
            (_, DlpAction::Off) => None,
            (Some(path), _) => Some(RuleSet::load(path)?),
            (None, _) => Some(RuleSet::default_rules()),
        };
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
            rules,
            exempt,
        })
    }

    /// A policy that scans nothing.
    pub fn off() -> Self {
        Self {
            action: DlpAction::Off,
            rules: None,
            exempt: Vec::new(),
        }
    }

    pub fn action(&self) -> DlpAction {
        self.action
    }

    /// The number of rules loaded (0 when off).
    pub fn rule_count(&self) -> usize {
        self.rules.as_ref().map_or(0, RuleSet::len)
    }

    fn scan(&self, data: &[u8]) -> Vec<Finding> {
        self.rules
            .as_ref()
            .map_or_else(Vec::new, |r| r.scan(data, None))
    }

    /// `{action, rules, exempt}` for the status endpoint.
    pub fn status_json(&self) -> serde_json::Value {
        serde_json::json!({
            "action": self.action.as_str(),
            "rules": self.rule_count(),
            "exempt": self.exempt.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })
    }

    /// Whether requests to `host` are scanned.
    pub fn covers(&self, host: &RequestHost) -> bool {
        self.rules.is_some() && !self.exempt.iter().any(|p| p.matches(host))
    }

    /// Scans the request target and the client's header values. The first
    /// finding, if any.
    pub fn scan_head(&self, path_and_query: &str, headers: &HeaderMap) -> Option<DlpHit> {
        let url = path_and_query.as_bytes();
        if let Some(f) = self.scan(url).into_iter().next() {
            return Some(DlpHit::new(Place::Url, &f, f.offset, 1));
        }
        let decoded = crate::decision::decode_query(url);
        if decoded != url
            && let Some(f) = self.scan(&decoded).into_iter().next()
        {
            return Some(DlpHit::new(Place::Url, &f, f.offset, 1));
        }
        for (name, value) in headers {
            let mut line = Vec::with_capacity(name.as_str().len() + 2 + value.len());
            line.extend_from_slice(name.as_str().as_bytes());
            line.extend_from_slice(b": ");
            line.extend_from_slice(value.as_bytes());
            if let Some(f) = self.scan(&line).into_iter().next() {
                return Some(DlpHit::new(
                    Place::Header(name.as_str().to_owned()),
                    &f,
                    f.offset,
                    1,
                ));
            }
        }
        None
    }
}

/// Where in the request a finding sits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    Url,
    Header(String),
    Body,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url => f.write_str("the URL"),
            Self::Header(h) => write!(f, "header {h}"),
            Self::Body => f.write_str("the request body"),
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
}

impl DlpHit {
    fn new(place: Place, f: &Finding, offset: usize, line: usize) -> Self {
        Self {
            rule_id: f.rule_id.clone(),
            description: f.description.clone(),
            place,
            offset,
            line,
            excerpt: f.excerpt.clone(),
        }
    }

    /// "rule aws-access-key-id (AWS access key id) in the request body, line 3 (byte 120)".
    pub fn summary(&self) -> String {
        match self.place {
            Place::Body => format!(
                "rule {} ({}) in {}, line {} (byte {})",
                self.rule_id, self.description, self.place, self.line, self.offset
            ),
            _ => format!(
                "rule {} ({}) in {}",
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

/// A request body scanned as it streams; see the module docs.
pub struct DlpBody<B> {
    inner: B,
    dlp: Arc<Dlp>,
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
    /// Under `warn`: findings already logged (rule, absolute offset).
    logged: HashSet<(String, usize)>,
    warned: usize,
    host: String,
    path: String,
}

impl<B> fmt::Debug for DlpBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the buffered bytes: they may hold the secret.
        f.debug_struct("DlpBody")
            .field("buffered", &self.buf.len())
            .field("base", &self.base)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl<B> DlpBody<B> {
    /// Wraps `inner`; `hit` receives the finding that blocks it. `host` and
    /// `path` only label warnings.
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
            buf: BytesMut::new(),
            base: 0,
            lines_before: 0,
            ready: None,
            trailers: None,
            finished: false,
            hit,
            logged: HashSet::new(),
            warned: 0,
            host,
            path,
        }
    }

    /// Scans `buf`; forwards all of it when `last`, else all but the
    /// held-back tail. `Err` when a finding blocks the body.
    fn scan(&mut self, last: bool) -> Result<(), Blocked> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let findings = self.dlp.scan(&self.buf);
        if !findings.is_empty() {
            match self.dlp.action {
                DlpAction::Block => {
                    let f = &findings[0];
                    let hit = DlpHit::new(
                        Place::Body,
                        f,
                        self.base + f.offset,
                        self.lines_before + f.line,
                    );
                    hit.log(DlpAction::Block, &self.host, &self.path);
                    let _ = self.hit.set(hit);
                    self.buf.clear();
                    return Err(Blocked);
                }
                DlpAction::Warn => self.warn(&findings),
                DlpAction::Off => {}
            }
        }
        let keep = if last {
            0
        } else {
            HOLD_BACK.min(self.buf.len())
        };
        let out = self.buf.split_to(self.buf.len() - keep).freeze();
        self.base += out.len();
        self.lines_before += out.iter().filter(|&&b| b == b'\n').count();
        self.logged.retain(|(_, off)| *off >= self.base);
        if !out.is_empty() {
            self.ready = Some(out);
        }
        Ok(())
    }

    fn warn(&mut self, findings: &[Finding]) {
        for f in findings {
            let abs = self.base + f.offset;
            if !self.logged.insert((f.rule_id.clone(), abs)) {
                continue;
            }
            self.warned += 1;
            if self.warned <= MAX_WARN_LINES {
                DlpHit::new(Place::Body, f, abs, self.lines_before + f.line).log(
                    DlpAction::Warn,
                    &self.host,
                    &self.path,
                );
            }
        }
    }
}

impl<B> Drop for DlpBody<B> {
    fn drop(&mut self) {
        if self.warned > MAX_WARN_LINES {
            tracing::warn!(
                target: "egress_proxy::dlp",
                action = "warn",
                host = %self.host,
                path = %self.path,
                findings = self.warned,
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
            if this.finished {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(d) => {
                        this.buf.extend_from_slice(&d);
                        if this.buf.len() >= HOLD_BACK + BATCH
                            && let Err(b) = this.scan(false)
                        {
                            this.finished = true;
                            return Poll::Ready(Some(Err(b.into())));
                        }
                    }
                    Err(frame) => {
                        // Trailers end the body.
                        this.trailers = frame.into_trailers().ok();
                        this.finished = true;
                        if let Err(b) = this.scan(true) {
                            this.trailers = None;
                            return Poll::Ready(Some(Err(b.into())));
                        }
                    }
                },
                Poll::Ready(None) => {
                    this.finished = true;
                    if let Err(b) = this.scan(true) {
                        return Poll::Ready(Some(Err(b.into())));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished && self.ready.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        // The bytes are unchanged: what the client announced still holds.
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
