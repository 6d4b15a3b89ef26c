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

/// A receive-pack result that refuses every ref of the push whose command
/// list is `commands`, in the form that client negotiated: `message` on band
/// 2 (the agent's git prints `remote: git-gate: …`) when it asked for
/// side-band, and a report-status (`unpack …`, `ng <ref> …`) when it asked
/// for one, which carries the message itself when there is no side-band.
pub fn refused_push(commands: &[u8], message: &str) -> Response<Body> {
    let (caps, refs) = parse_commands(commands);
    let has = |c: &str| caps.split(' ').any(|x| x == c);
    let band_max = if has("side-band-64k") {
        Some(pktline::MAX_PKT_LEN - 5)
    } else if has("side-band") {
        Some(1000 - 5)
    } else {
        None
    };
    let mut report = Vec::new();
    if has("report-status") || has("report-status-v2") {
        let unpack = if band_max.is_some() {
            "refused by git-gate (see above)"
        } else {
            message
        };
        report.extend(pktline::encode(
            format!("unpack {}\n", one_line(unpack)).as_bytes(),
        ));
        for r in &refs {
            report.extend(pktline::encode(
                format!("ng {r} refused by git-gate\n").as_bytes(),
            ));
        }
        report.extend_from_slice(b"0000");
    }
    let mut out = Vec::new();
    match band_max {
        Some(max) => {
            let mut band = |n: u8, data: &[u8]| {
                for chunk in data.chunks(max) {
                    let mut line = vec![n];
                    line.extend_from_slice(chunk);
                    out.extend(pktline::encode(&line));
                }
            };
            for l in message.lines() {
                band(2, format!("git-gate: {l}\n").as_bytes());
            }
            band(1, &report);
            out.extend_from_slice(b"0000");
        }
        None => out = report,
    }
    let mut r = Response::new(BodyExt::boxed(
        http_body_util::Full::new(Bytes::from(out)).map_err(|never| match never {}),
    ));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-git-receive-pack-result"),
    );
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    r
}

/// Control characters out, so a report line stays one line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The capabilities (after the NUL of the first command) and the ref names
/// of a receive-pack command list; anything unreadable is skipped.
fn parse_commands(commands: &[u8]) -> (String, Vec<String>) {
    let mut caps = String::new();
    let mut refs = Vec::new();
    let mut at = 0;
    while let Some(len) = commands
        .get(at..at + 4)
        .and_then(|h| std::str::from_utf8(h).ok())
        .and_then(|h| usize::from_str_radix(h, 16).ok())
    {
        if len < 4 || at + len > commands.len() {
            break;
        }
        let line = &commands[at + 4..at + len];
        at += len;
        let (cmd, c) = match line.iter().position(|&b| b == 0) {
            Some(nul) => (&line[..nul], Some(&line[nul + 1..])),
            None => (line, None),
        };
        if let Some(c) = c
            && caps.is_empty()
        {
            caps = String::from_utf8_lossy(c).trim().to_owned();
        }
        let cmd = String::from_utf8_lossy(cmd);
        let mut it = cmd.trim_end().splitn(3, ' ');
        if let (Some(o), Some(n), Some(r)) = (it.next(), it.next(), it.next())
            && [o, n]
                .iter()
                .all(|x| x.len() >= 40 && x.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            refs.push(one_line(r));
        }
    }
    (caps, refs)
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
