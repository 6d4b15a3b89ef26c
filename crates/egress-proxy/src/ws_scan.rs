//! The [`MessageScanner`] the proxy gives WebSocket relays: the request
//! DLP policy ([`Dlp`]) applied to each client→server message, and the
//! prompt-injection check ([`Inbound`]) to each server→client text
//! message.
//!
//! It reuses [`DlpBody`], the scanner of request bodies, on the message as
//! a one-frame body, so messages and bodies are judged by the same rules,
//! exemptions and `warn`/`block` action. Server messages are judged by
//! [`Inbound::judge`] like a response body: `warn` and `annotate` log (a
//! message has no header to annotate), `block` closes the socket with a
//! reason the agent reads.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures_util::FutureExt;
use http_body_util::BodyExt;

use crate::dlp::{Dlp, DlpAction, DlpBody, DlpHit};
use crate::inbound::{Inbound, InboundAction};
use crate::ws::{Direction, MessageScanner, Verdict};

/// DLP (and the prompt-injection check) for the messages of one
/// WebSocket.
#[derive(Debug)]
pub struct DlpMessages {
    dlp: Arc<Dlp>,
    /// `None`: server messages are not judged.
    inbound: Option<Arc<Inbound>>,
    host: String,
    path: String,
}

impl DlpMessages {
    /// `host` and `path` label findings in the log.
    pub fn new(dlp: Arc<Dlp>, host: String, path: String) -> Self {
        Self {
            dlp,
            inbound: None,
            host,
            path,
        }
    }

    /// Also judges server→client text messages from a host `inbound`
    /// covers.
    pub fn with_inbound(mut self, inbound: Arc<Inbound>, host: &manifest::RequestHost) -> Self {
        self.inbound = inbound.covers(host).then_some(inbound);
        self
    }

    fn judge(&self, message: &[u8]) -> Verdict {
        let Some(inbound) = &self.inbound else {
            return Verdict::Allow;
        };
        let Some(v) = inbound.judge(&self.host, message) else {
            return Verdict::Allow;
        };
        let action = inbound.action();
        tracing::warn!(
            target: "egress_proxy::inbound",
            action = action.as_str(),
            host = %self.host,
            path = %self.path,
            signals = %v.ids(),
            score = v.score,
            websocket = true,
            "WebSocket message tries to instruct the agent (possible prompt injection)"
        );
        match action {
            InboundAction::Block => Verdict::Block(format!(
                "egress-proxy: withheld a message that tries to instruct the agent (prompt injection: {})",
                v.ids()
            )),
            InboundAction::Warn | InboundAction::Annotate | InboundAction::Off => Verdict::Allow,
        }
    }
}

impl MessageScanner for DlpMessages {
    fn scan(&self, direction: Direction, message: &[u8]) -> Verdict {
        if direction == Direction::ToClient {
            return self.judge(message);
        }
        if self.dlp.action() == DlpAction::Off {
            return Verdict::Allow;
        }
        let hit: Arc<OnceLock<DlpHit>> = Arc::new(OnceLock::new());
        let body = http_body_util::Full::new(Bytes::copy_from_slice(message))
            .map_err(|never| -> Box<dyn std::error::Error + Send + Sync> { match never {} })
            .boxed_unsync();
        let scanned = DlpBody::new(
            body,
            self.dlp.clone(),
            hit.clone(),
            self.host.clone(),
            self.path.clone(),
        );
        // A full body is always ready: the scan completes synchronously.
        let _ = scanned.collect().now_or_never();
        match hit.get() {
            Some(h) => Verdict::Block(format!(
                "egress-proxy: DLP blocked a message: {} ({})",
                h.rule_id, h.description
            )),
            None => Verdict::Allow,
        }
    }
}
