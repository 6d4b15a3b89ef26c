//! Injecting a progress message into a fetch response, so the agent's
//! terminal shows `remote: …` (used when the mirror is stale).
//!
//! A fetch response is pkt-lines, and once the pack starts every pkt-line
//! is side-band multiplexed: its first payload byte is the band (1 data,
//! 2 progress, 3 error). Protocol v2 announces that with a `packfile`
//! section header; v0/v1 with side-band negotiated simply start sending
//! banded lines after their `ACK`/`NAK` lines. Either way the message goes
//! in as a band-2 line right before the first banded line. Nothing before
//! it can start with a byte below 4 (`ACK`, `NAK`, `shallow`, section
//! names, object ids are text). A response with no banded line — `ls-refs`,
//! a ref advertisement, a v0 fetch without side-band whose raw `PACK` is not
//! a pkt-line — passes through unchanged.

use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt, stream};
use http::Response;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

use crate::cgi::Body;
use crate::pktline;

/// Stop looking for the section header after this many bytes.
const SEARCH_LIMIT: usize = 1 << 20;

/// Rewrites the fetch response body to carry `message` on band 2.
pub fn warn_in_fetch(resp: Response<Body>, message: &str) -> Response<Body> {
    let (parts, body) = resp.into_parts();
    let mut line = vec![2u8];
    line.extend_from_slice(message.as_bytes());
    line.push(b'\n');
    let state = Arc::new(Mutex::new(Injector {
        pending: BytesMut::new(),
        insert: Some(pktline::encode(&line)),
        done: false,
    }));
    let tail_state = state.clone();
    let data = body
        .into_data_stream()
        .map_ok(move |chunk| state.lock().map(|mut s| s.push(chunk)).unwrap_or_default());
    let tail = stream::once(async move {
        Ok(tail_state
            .lock()
            .map(|mut s| s.pending.split().freeze())
            .unwrap_or_default())
    });
    let frames = data
        .chain(tail)
        .try_filter(|b| std::future::ready(!b.is_empty()))
        .map_ok(Frame::data);
    Response::from_parts(parts, BodyExt::boxed(StreamBody::new(frames)))
}

struct Injector {
    pending: BytesMut,
    insert: Option<Vec<u8>>,
    done: bool,
}

impl Injector {
    fn push(&mut self, chunk: Bytes) -> Bytes {
        if self.done {
            return chunk;
        }
        self.pending.extend_from_slice(&chunk);
        let mut at = 0;
        loop {
            let buf = &self.pending[..];
            let Some(h) = buf.get(at..at + 4) else { break };
            let Some(len) = std::str::from_utf8(h)
                .ok()
                .and_then(|s| usize::from_str_radix(s, 16).ok())
            else {
                return self.give_up();
            };
            let len = if len < 4 { 4 } else { len };
            if at + len > buf.len() {
                break;
            }
            let banded = matches!(buf.get(at + 4), Some(1..=3)) && len > 4;
            if banded {
                let mut out = BytesMut::from(&self.pending[..at]);
                if let Some(ins) = self.insert.take() {
                    out.extend_from_slice(&ins);
                }
                out.extend_from_slice(&self.pending[at..]);
                self.pending.clear();
                self.done = true;
                return out.freeze();
            }
            at += len;
        }
        if self.pending.len() > SEARCH_LIMIT {
            return self.give_up();
        }
        // Release whole lines already checked; keep only a partial one.
        self.pending.split_to(at).freeze()
    }

    fn give_up(&mut self) -> Bytes {
        self.done = true;
        self.pending.split().freeze()
    }
}

#[cfg(test)]
mod tests;
