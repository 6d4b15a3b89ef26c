//! The [`MessageScanner`] the proxy gives WebSocket relays: the request
//! DLP policy ([`Dlp`]) applied to each client→server message.
//!
//! It reuses [`DlpBody`], the scanner of request bodies, on the message as
//! a one-frame body, so messages and bodies are judged by the same rules,
//! exemptions and `warn`/`block` action.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures_util::FutureExt;
use http_body_util::BodyExt;

use crate::dlp::{Dlp, DlpAction, DlpBody, DlpHit};
use crate::ws::{Direction, MessageScanner, Verdict};

/// DLP for the messages of one WebSocket.
#[derive(Debug)]
pub struct DlpMessages {
    dlp: Arc<Dlp>,
    host: String,
    path: String,
}

impl DlpMessages {
    /// `host` and `path` label findings in the log.
    pub fn new(dlp: Arc<Dlp>, host: String, path: String) -> Self {
        Self { dlp, host, path }
    }
}

impl MessageScanner for DlpMessages {
    fn scan(&self, direction: Direction, message: &[u8]) -> Verdict {
        if direction != Direction::ToServer || self.dlp.action() == DlpAction::Off {
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
