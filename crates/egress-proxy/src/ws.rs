//! WebSocket frames after a `101`: parsed, reassembled and scanned in both
//! directions (client→server by DLP, server→client text by the
//! prompt-injection check).
//!
//! Is: an incremental RFC 6455 frame parser ([`parse_header`]), the
//! client→server [`Inspector`] (unmasking, fragmentation, control frames
//! interleaved in a fragmented message, frame and message size limits, no
//! extensions: RSV bits refuse), and [`relay`], which joins the two
//! upgraded streams. Every data message is held until its last frame has
//! arrived and passed the [`MessageScanner`]; only then are its frames
//! forwarded, byte for byte as the client sent them. Control frames
//! (ping, pong, close; 125 bytes at most) are scanned and forwarded at
//! once. A blocked message closes the client with a close frame (1008)
//! whose reason names the finding, and the upstream connection is dropped.
//!
//! Memory per connection is bounded: one partial frame (at most
//! [`WsLimits::max_frame`] plus a read), at most [`WsLimits::max_message`]
//! bytes of held frames and as much of their unmasked payload, and the
//! relay's two 16 KiB read buffers.
//!
//! Is not: a WebSocket endpoint (it never answers pings itself) nor a
//! decompressor: the proxy strips `Sec-WebSocket-Extensions` from the
//! request, so `permessage-deflate` is never negotiated, and a frame with
//! an RSV bit set is a protocol error (in both directions).
//!
//! Server→client ([`Downstream`]): frames should be unmasked (a masked one
//! is unmasked for the judgement and forwarded as it came); text messages
//! are reassembled and judged before any of their frames is forwarded
//! (bounded by [`WsLimits::max_message`]; a longer one is judged in
//! pieces with a [`LOOK_BEHIND`] window while it streams); binary messages
//! and control frames pass as they arrive. A blocked server message
//! closes the client with 1008 and a reason, as a blocked client message
//! does.

use std::fmt;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Which way a message travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the agent to the upstream (scanned).
    ToServer,
    /// From the upstream to the agent.
    ToClient,
}

/// What a scanner says about one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Refuse; the text becomes the close reason the agent reads.
    Block(String),
}

/// Decides on one whole (reassembled, unmasked) message.
pub trait MessageScanner: Send + Sync {
    fn scan(&self, direction: Direction, message: &[u8]) -> Verdict;
}

/// Size limits for the inspected direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WsLimits {
    /// Largest payload of one frame.
    pub max_frame: u64,
    /// Largest message held for scanning, frame headers included.
    pub max_message: usize,
}

impl Default for WsLimits {
    fn default() -> Self {
        Self {
            max_frame: 1 << 20,
            max_message: 1 << 20,
        }
    }
}

/// Close status codes the proxy sends (RFC 6455 §7.4.1).
pub mod close_code {
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
}

/// Why the proxy ends a WebSocket: the close frame it sends the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    pub reason: String,
}

impl fmt::Display for Close {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.reason)
    }
}

impl Close {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }

    /// The unmasked close frame for the client; the reason is cut to the
    /// 123 bytes a control frame allows, on a character boundary.
    pub fn frame(&self) -> Vec<u8> {
        let mut reason = self.reason.as_str();
        while reason.len() > 123 {
            let mut end = 123;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason = &reason[..end];
        }
        let mut out = Vec::with_capacity(4 + reason.len());
        out.push(0x88);
        out.push((2 + reason.len()) as u8);
        out.extend_from_slice(&self.code.to_be_bytes());
        out.extend_from_slice(reason.as_bytes());
        out
    }
}

/// One frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    /// The three RSV bits (non-zero only with a negotiated extension).
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
    /// Bytes of header before the payload.
    pub header_len: usize,
}

impl FrameHeader {
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// Parses a frame header from the start of `buf`: `Ok(None)` when more
/// bytes are needed. Fails on a length that is not minimally encoded or
/// has the top bit set.
pub fn parse_header(buf: &[u8]) -> Result<Option<FrameHeader>, Close> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    let masked = b1 & 0x80 != 0;
    let len7 = u64::from(b1 & 0x7f);
    let ext = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let header_len = 2 + ext + if masked { 4 } else { 0 };
    if buf.len() < header_len {
        return Ok(None);
    }
    let payload_len = match ext {
        2 => {
            let n = u64::from(u16::from_be_bytes([buf[2], buf[3]]));
            if n < 126 {
                return Err(Close::new(
                    close_code::PROTOCOL_ERROR,
                    "frame length not minimally encoded",
                ));
            }
            n
        }
        8 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let n = u64::from_be_bytes(b);
            if n >> 63 != 0 || n <= 0xffff {
                return Err(Close::new(
                    close_code::PROTOCOL_ERROR,
                    "frame length not minimally encoded",
                ));
            }
            n
        }
        _ => len7,
    };
    let mask = masked.then(|| {
        let at = 2 + ext;
        [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]
    });
    Ok(Some(FrameHeader {
        fin: b0 & 0x80 != 0,
        rsv: (b0 >> 4) & 0x7,
        opcode: b0 & 0x0f,
        mask,
        payload_len,
        header_len,
    }))
}

/// XORs `data` with the mask, `offset` bytes into the payload.
pub fn unmask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= mask[(offset + i) % 4];
    }
}

/// The client→server side: frames in, bytes to forward out.
pub struct Inspector<'s> {
    scanner: &'s dyn MessageScanner,
    limits: WsLimits,
    /// Bytes read but not yet a whole frame.
    pending: Vec<u8>,
    /// Raw frames of the data message in progress (held until it passes).
    held: Vec<u8>,
    /// Its unmasked payload.
    message: Vec<u8>,
    in_message: bool,
}

impl fmt::Debug for Inspector<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the bytes: they may hold what DLP is looking for.
        f.debug_struct("Inspector")
            .field("pending", &self.pending.len())
            .field("held", &self.held.len())
            .field("in_message", &self.in_message)
            .finish_non_exhaustive()
    }
}

impl<'s> Inspector<'s> {
    pub fn new(scanner: &'s dyn MessageScanner, limits: WsLimits) -> Self {
        Self {
            scanner,
            limits,
            pending: Vec::new(),
            held: Vec::new(),
            message: Vec::new(),
            in_message: false,
        }
    }

    /// Bytes buffered inside the inspector (for the memory bound).
    pub fn buffered(&self) -> usize {
        self.pending.len() + self.held.len() + self.message.len()
    }

    /// Takes `data` from the client; appends to `out` what may go
    /// upstream now. `Err` ends the connection with that close frame.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), Close> {
        self.pending.extend_from_slice(data);
        let mut at = 0;
        while let Some(h) = parse_header(&self.pending[at..])? {
            self.check(&h)?;
            // Checked against max_frame (≤ usize) in `check`.
            let total = h.header_len + h.payload_len as usize;
            if self.pending.len() - at < total {
                break;
            }
            let frame = at..at + total;
            at += total;
            self.frame(h, frame, out)?;
        }
        self.pending.drain(..at);
        Ok(())
    }

    fn check(&self, h: &FrameHeader) -> Result<(), Close> {
        let err = |code, why: &str| Err(Close::new(code, format!("egress-proxy: {why}")));
        if h.mask.is_none() {
            return err(close_code::PROTOCOL_ERROR, "client frame is not masked");
        }
        if h.rsv != 0 {
            return err(
                close_code::PROTOCOL_ERROR,
                "RSV bit set; no extension (permessage-deflate) was negotiated",
            );
        }
        match h.opcode {
            0..=2 | 8..=10 => {}
            _ => return err(close_code::PROTOCOL_ERROR, "unknown opcode"),
        }
        if h.is_control() && (!h.fin || h.payload_len > 125) {
            return err(
                close_code::PROTOCOL_ERROR,
                "control frame fragmented or over 125 bytes",
            );
        }
        if h.payload_len > self.limits.max_frame {
            return err(
                close_code::TOO_BIG,
                &format!(
                    "frame of {} bytes exceeds the inspection limit of {}",
                    h.payload_len, self.limits.max_frame
                ),
            );
        }
        match (h.opcode, self.in_message) {
            (0, false) => err(
                close_code::PROTOCOL_ERROR,
                "continuation frame outside a message",
            ),
            (1 | 2, true) => err(
                close_code::PROTOCOL_ERROR,
                "new message before the previous one ended",
            ),
            _ => Ok(()),
        }
    }

    fn frame(
        &mut self,
        h: FrameHeader,
        range: std::ops::Range<usize>,
        out: &mut Vec<u8>,
    ) -> Result<(), Close> {
        let mut payload = self.pending[range.start + h.header_len..range.end].to_vec();
        if let Some(mask) = h.mask {
            unmask(&mut payload, mask, 0);
        }
        if h.is_control() {
            self.verdict(&payload)?;
            out.extend_from_slice(&self.pending[range]);
            return Ok(());
        }
        if self.held.len() + range.len() > self.limits.max_message {
            return Err(Close::new(
                close_code::TOO_BIG,
                format!(
                    "egress-proxy: message exceeds the inspection limit of {} bytes",
                    self.limits.max_message
                ),
            ));
        }
        self.held.extend_from_slice(&self.pending[range]);
        self.message.extend_from_slice(&payload);
        self.in_message = !h.fin;
        if h.fin {
            let message = std::mem::take(&mut self.message);
            self.verdict(&message)?;
            out.append(&mut self.held);
        }
        Ok(())
    }

    fn verdict(&self, message: &[u8]) -> Result<(), Close> {
        match self.scanner.scan(Direction::ToServer, message) {
            Verdict::Allow => Ok(()),
            Verdict::Block(why) => Err(Close::new(close_code::POLICY, why)),
        }
    }
}

/// Text kept from the streamed part of an oversized server→client text
/// message and judged again with the next piece (the same look-behind as
/// streamed HTTP responses).
pub const LOOK_BEHIND: usize = 4096;

/// The frame being read on the server→client side.
#[derive(Debug)]
struct DownFrame {
    header: FrameHeader,
    /// Payload bytes still to come.
    remaining: u64,
    /// Payload bytes read so far (the mask offset).
    read: usize,
    /// What happens to the payload.
    mode: DownMode,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DownMode {
    /// Forwarded as it arrives (binary messages, frames of other
    /// messages).
    Pass,
    /// Held with its message until the message is judged.
    Hold,
    /// A text message over the hold limit: forwarded as it arrives, each
    /// piece judged with a look-behind.
    Stream,
    /// A control frame: collected (125 bytes at most) and forwarded whole.
    Control,
}

/// The server→client side: unmasked frames in, bytes for the client out.
/// Text messages (opcode 1 and their continuations) are reassembled and
/// judged by the [`MessageScanner`] (direction [`Direction::ToClient`])
/// before any of their frames is forwarded, up to `limits.max_message`
/// held bytes; a longer text message is judged on what is held, then
/// forwarded piece by piece, each piece judged with the last
/// [`LOOK_BEHIND`] bytes before it. Binary messages and control frames are
/// forwarded as they arrive, never buffered beyond a control frame's 125
/// bytes. Memory: a frame header, the held message (at most
/// `max_message` of frames plus as much payload) and the look-behind.
pub struct Downstream<'s> {
    scanner: &'s dyn MessageScanner,
    limits: WsLimits,
    /// Header bytes of the next frame (at most 14).
    header: Vec<u8>,
    frame: Option<DownFrame>,
    /// Inside a data message: `Some(true)` text, `Some(false)` binary.
    message: Option<bool>,
    /// Raw frames of the text message being held.
    held: Vec<u8>,
    /// Its payload.
    text: Vec<u8>,
    /// Streaming an oversized text message: the look-behind.
    tail: Vec<u8>,
    streaming: bool,
    /// A control frame being collected (header and payload).
    control: Vec<u8>,
    /// Whether every byte emitted so far ends on a frame boundary.
    emitted_boundary: bool,
}

impl fmt::Debug for Downstream<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Downstream")
            .field("held", &self.held.len())
            .field("streaming", &self.streaming)
            .finish_non_exhaustive()
    }
}

impl<'s> Downstream<'s> {
    pub fn new(scanner: &'s dyn MessageScanner, limits: WsLimits) -> Self {
        Self {
            scanner,
            limits,
            header: Vec::new(),
            frame: None,
            message: None,
            held: Vec::new(),
            text: Vec::new(),
            tail: Vec::new(),
            streaming: false,
            control: Vec::new(),
            emitted_boundary: true,
        }
    }

    /// Bytes buffered inside (for the memory bound).
    pub fn buffered(&self) -> usize {
        self.header.len() + self.held.len() + self.text.len() + self.tail.len() + self.control.len()
    }

    /// Whether the bytes emitted so far end between frames (a close frame
    /// may follow them).
    pub fn at_boundary(&self) -> bool {
        self.emitted_boundary
    }

    /// Takes `data` from the upstream; appends to `out` what may go to the
    /// client now. `Err` ends the connection with that close frame.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<(), Close> {
        while !data.is_empty() {
            let Some(frame) = self.frame.as_mut() else {
                let want = 14usize.saturating_sub(self.header.len());
                let take = want.min(data.len());
                self.header.extend_from_slice(&data[..take]);
                match parse_header(&self.header)? {
                    None => data = &data[take..],
                    Some(h) => {
                        let used = h.header_len - (self.header.len() - take);
                        data = &data[used..];
                        self.header.truncate(h.header_len);
                        self.start(h, out)?;
                    }
                }
                continue;
            };
            let n = (frame.remaining.min(data.len() as u64)) as usize;
            let (piece, rest) = data.split_at(n);
            data = rest;
            frame.remaining -= n as u64;
            let mode = frame.mode;
            let done = frame.remaining == 0;
            // A masked server frame breaks RFC 6455 (the client will
            // refuse it); it is judged unmasked and forwarded as it came.
            let at = frame.read;
            frame.read += n;
            let mask = frame.header.mask;
            let unmasked = |dst: &mut Vec<u8>| {
                let from = dst.len();
                dst.extend_from_slice(piece);
                if let Some(m) = mask {
                    unmask(&mut dst[from..], m, at);
                }
            };
            match mode {
                DownMode::Pass => out.extend_from_slice(piece),
                DownMode::Hold => {
                    self.held.extend_from_slice(piece);
                    unmasked(&mut self.text);
                }
                DownMode::Stream => {
                    let mut window = std::mem::take(&mut self.tail);
                    unmasked(&mut window);
                    self.verdict(&window)?;
                    let keep = window.len().min(LOOK_BEHIND);
                    self.tail = window.split_off(window.len() - keep);
                    out.extend_from_slice(piece);
                }
                DownMode::Control => self.control.extend_from_slice(piece),
            }
            if !piece.is_empty() && mode != DownMode::Hold && mode != DownMode::Control {
                self.emitted_boundary = false;
            }
            if done {
                self.end_frame(out)?;
            }
        }
        Ok(())
    }

    /// A header has been read: check it and decide where its payload goes.
    fn start(&mut self, h: FrameHeader, out: &mut Vec<u8>) -> Result<(), Close> {
        let err = |code, why: &str| Err(Close::new(code, format!("egress-proxy: {why}")));
        if h.rsv != 0 {
            return err(
                close_code::PROTOCOL_ERROR,
                "RSV bit set in a server frame; no extension was negotiated",
            );
        }
        match h.opcode {
            0..=2 | 8..=10 => {}
            _ => return err(close_code::PROTOCOL_ERROR, "unknown opcode from the server"),
        }
        if h.is_control() && (!h.fin || h.payload_len > 125) {
            return err(
                close_code::PROTOCOL_ERROR,
                "server control frame fragmented or over 125 bytes",
            );
        }
        let header = std::mem::take(&mut self.header);
        let mode = if h.is_control() {
            self.control = header;
            DownMode::Control
        } else {
            let text = match (h.opcode, self.message) {
                (0, None) => {
                    return err(
                        close_code::PROTOCOL_ERROR,
                        "server continuation frame outside a message",
                    );
                }
                (1 | 2, Some(_)) => {
                    return err(
                        close_code::PROTOCOL_ERROR,
                        "server began a new message before the previous one ended",
                    );
                }
                (0, Some(t)) => t,
                (op, _) => op == 1,
            };
            self.message = Some(text);
            if !text {
                out.extend_from_slice(&header);
                self.emitted_boundary = false;
                DownMode::Pass
            } else if self.streaming {
                out.extend_from_slice(&header);
                self.emitted_boundary = false;
                DownMode::Stream
            } else if h.payload_len > self.limits.max_message as u64
                || self.held.len() + header.len() + h.payload_len as usize > self.limits.max_message
            {
                // Too long to hold: judge what is held, let it go, and
                // stream the rest of the message.
                let held = std::mem::take(&mut self.text);
                self.verdict(&held)?;
                out.append(&mut self.held);
                let keep = held.len().min(LOOK_BEHIND);
                self.tail = held[held.len() - keep..].to_vec();
                self.streaming = true;
                out.extend_from_slice(&header);
                self.emitted_boundary = false;
                DownMode::Stream
            } else {
                self.held.extend_from_slice(&header);
                DownMode::Hold
            }
        };
        self.frame = Some(DownFrame {
            header: h,
            remaining: h.payload_len,
            read: 0,
            mode,
        });
        if h.payload_len == 0 {
            self.end_frame(out)?;
        }
        Ok(())
    }

    /// The current frame's payload is complete.
    fn end_frame(&mut self, out: &mut Vec<u8>) -> Result<(), Close> {
        let Some(frame) = self.frame.take() else {
            return Ok(());
        };
        match frame.mode {
            DownMode::Control => {
                // Forwarded whole; a control frame may come between the
                // fragments of a held message (it moves ahead of them).
                // Frames end before a control frame starts, so the bytes
                // emitted end on a boundary after it.
                out.append(&mut self.control);
                self.emitted_boundary = true;
            }
            DownMode::Hold if frame.header.fin => {
                let text = std::mem::take(&mut self.text);
                self.verdict(&text)?;
                out.append(&mut self.held);
                self.emitted_boundary = true;
            }
            DownMode::Hold => {}
            DownMode::Pass | DownMode::Stream => self.emitted_boundary = true,
        }
        if !frame.header.is_control() && frame.header.fin {
            self.message = None;
            self.streaming = false;
            self.tail.clear();
        }
        Ok(())
    }

    fn verdict(&self, message: &[u8]) -> Result<(), Close> {
        match self.scanner.scan(Direction::ToClient, message) {
            Verdict::Allow => Ok(()),
            Verdict::Block(why) => Err(Close::new(close_code::POLICY, why)),
        }
    }
}

/// Follows frame boundaries in a stream without buffering payloads, so
/// the relay knows where a close frame may be inserted.
#[derive(Debug, Default)]
pub struct Boundary {
    header: Vec<u8>,
    remaining: u64,
}

impl Boundary {
    /// Consumes `data`; errors on a malformed header.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), Close> {
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = (self.remaining.min(data.len() as u64)) as usize;
                self.remaining -= n as u64;
                data = &data[n..];
                continue;
            }
            let want = 14 - self.header.len();
            let take = want.min(data.len());
            self.header.extend_from_slice(&data[..take]);
            match parse_header(&self.header)? {
                None => data = &data[take..],
                Some(h) => {
                    let used = h.header_len - (self.header.len() - take);
                    data = &data[used..];
                    self.header.clear();
                    self.remaining = h.payload_len;
                }
            }
        }
        Ok(())
    }

    /// True between frames.
    pub fn at_boundary(&self) -> bool {
        self.header.is_empty() && self.remaining == 0
    }
}

/// How long a blocked connection keeps relaying server frames to reach a
/// frame boundary for the close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How long the client's last bytes are read after the close frame.
const CLOSE_DRAIN: Duration = Duration::from_secs(2);

/// Joins the upgraded client and upstream streams until either ends or a
/// message is blocked. Returns bytes forwarded (to upstream, to client).
pub async fn relay<C, U>(
    mut client: C,
    mut upstream: U,
    scanner: &dyn MessageScanner,
    limits: WsLimits,
) -> (u64, u64, Option<Close>)
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let mut inspector = Inspector::new(scanner, limits);
    let mut downstream = Downstream::new(scanner, limits);
    let (mut up_bytes, mut down_bytes) = (0u64, 0u64);
    let mut cbuf = vec![0u8; 16 * 1024];
    let mut ubuf = vec![0u8; 16 * 1024];
    let mut out = Vec::new();
    let (mut client_done, mut upstream_done) = (false, false);
    // A server→client message was blocked: the downstream state stops
    // there (no grace reading).
    let mut close_from_server = false;
    let blocked = loop {
        if client_done && upstream_done {
            break None;
        }
        tokio::select! {
            r = client.read(&mut cbuf), if !client_done => match r {
                Ok(0) | Err(_) => {
                    client_done = true;
                    let _ = upstream.shutdown().await;
                }
                Ok(n) => {
                    out.clear();
                    if let Err(close) = inspector.push(&cbuf[..n], &mut out) {
                        break Some(close);
                    }
                    if upstream.write_all(&out).await.is_err() {
                        break None;
                    }
                    up_bytes += out.len() as u64;
                }
            },
            r = upstream.read(&mut ubuf), if !upstream_done => match r {
                Ok(0) | Err(_) => {
                    upstream_done = true;
                    let _ = client.shutdown().await;
                }
                Ok(n) => {
                    out.clear();
                    let verdict = downstream.push(&ubuf[..n], &mut out);
                    // What passed before a finding still goes out (whole
                    // frames, or the clean part of a streamed one).
                    if client.write_all(&out).await.is_err() {
                        break None;
                    }
                    down_bytes += out.len() as u64;
                    if let Err(close) = verdict {
                        if close.code == close_code::POLICY {
                            close_from_server = true;
                            break Some(close);
                        }
                        tracing::debug!(reason = %close, "upstream sent a malformed WebSocket frame");
                        break None;
                    }
                }
            },
        }
    };
    if blocked.is_some() && !close_from_server {
        // Finish the server frame in flight (bounded, and through the
        // server→client inspection), then tell the client.
        let budget = limits.max_message as u64;
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            let mut sent = 0u64;
            while !downstream.at_boundary() && sent <= budget {
                match upstream.read(&mut ubuf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        // Only up to the boundary: nothing of a next frame.
                        out.clear();
                        for i in 0..n {
                            if downstream.push(&ubuf[i..=i], &mut out).is_err() {
                                return;
                            }
                            if downstream.at_boundary() {
                                break;
                            }
                        }
                        if client.write_all(&out).await.is_err() {
                            return;
                        }
                        sent += out.len() as u64;
                    }
                }
            }
        })
        .await;
    }
    if let Some(close) = &blocked {
        drop(upstream);
        if downstream.at_boundary() {
            let _ = client.write_all(&close.frame()).await;
            let _ = client.flush().await;
        }
        let _ = client.shutdown().await;
        // Read what the client still sends (its pong, its close frame)
        // until it closes, briefly: closing with unread bytes would reset
        // the connection and could lose the close frame on its way.
        let _ = tokio::time::timeout(CLOSE_DRAIN, async {
            let mut sink = [0u8; 1024];
            while let Ok(n) = client.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }
    (up_bytes, down_bytes, blocked)
}

#[cfg(test)]
mod tests;
