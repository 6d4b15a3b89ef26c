//! Content codings (`gzip`, `deflate`, `br`, `zstd`): undoing them so the
//! inspectors read what the receiver will read, with bounds on the
//! decoded size and on the expansion ratio (a decompression bomb costs
//! the proxy a bounded amount of CPU, then is refused or skipped).
//!
//! Is: the `Content-Encoding` parser, a pull decoder over a complete body
//! ([`decode`]) and a push decoder for bodies that stream ([`Push`]).
//!
//! Is not: a re-encoder. What is forwarded is always the bytes the client
//! or upstream sent; only a copy is decoded.

use std::io::{Read, Write};

use http::HeaderMap;

/// One content coding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    Deflate,
    Brotli,
    Zstd,
}

impl Coding {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Deflate => "deflate",
            Self::Brotli => "br",
            Self::Zstd => "zstd",
        }
    }
}

/// The codings of a message in the order they were applied (`identity`
/// dropped). Err names the coding the proxy cannot undo.
pub fn codings(headers: &HeaderMap) -> Result<Vec<Coding>, String> {
    let mut out = Vec::new();
    for v in headers.get_all(http::header::CONTENT_ENCODING) {
        let v = v
            .to_str()
            .map_err(|_| "a Content-Encoding value that is not text".to_owned())?;
        for token in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            out.push(match token.to_ascii_lowercase().as_str() {
                "identity" => continue,
                "gzip" | "x-gzip" => Coding::Gzip,
                "deflate" => Coding::Deflate,
                "br" => Coding::Brotli,
                "zstd" => Coding::Zstd,
                other => {
                    return Err(format!(
                        "Content-Encoding {other:?}, which the proxy cannot decode (it reads gzip, deflate, br and zstd)"
                    ));
                }
            });
        }
    }
    Ok(out)
}

/// How far decoding may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Decoded bytes at most.
    pub max_out: u64,
    /// Decoded bytes per encoded byte at most (beyond the first MiB).
    pub max_ratio: u64,
}

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the {coding} stream is corrupt: {detail}")]
    Corrupt {
        coding: &'static str,
        detail: String,
    },
    #[error("it decodes to more than {limit} bytes, the inspection limit")]
    TooLarge { limit: u64 },
    #[error("it expands more than {ratio} times (a decompression bomb?)")]
    Ratio { ratio: u64 },
}

fn reader<'a>(r: Box<dyn Read + 'a>, c: Coding, first: Option<u8>) -> Box<dyn Read + 'a> {
    match c {
        Coding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        // RFC 9110's deflate is zlib; some servers send raw deflate.
        Coding::Deflate if first.is_some_and(|b| b & 0x0f == 8) => {
            Box::new(flate2::read::ZlibDecoder::new(r))
        }
        Coding::Deflate => Box::new(flate2::read::DeflateDecoder::new(r)),
        Coding::Brotli => Box::new(brotli_decompressor::Decompressor::new(r, 16 * 1024)),
        Coding::Zstd => match ruzstd::decoding::StreamingDecoder::new(r) {
            Ok(d) => Box::new(d),
            Err(e) => Box::new(Failing(format!("{e}"))),
        },
    }
}

/// A reader that fails with a fixed message (a zstd frame header that
/// did not parse).
struct Failing(String);

impl Read for Failing {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other(self.0.clone()))
    }
}

/// Decodes `data` (codings applied in `codings` order) and hands the
/// decoded bytes to `sink` in pieces of at most 64 KiB. `sink` returns
/// false to stop early (a finding under block).
pub fn decode(
    data: &[u8],
    codings: &[Coding],
    bounds: Bounds,
    mut sink: impl FnMut(&[u8]) -> bool,
) -> Result<(), DecodeError> {
    let Some(outermost) = codings.last() else {
        sink(data);
        return Ok(());
    };
    let mut r: Box<dyn Read + '_> = Box::new(data);
    // Undo the last-applied coding first. Only the outermost layer's first
    // byte is known here; inner deflate layers are assumed zlib.
    for (i, c) in codings.iter().rev().enumerate() {
        let first = if i == 0 {
            data.first().copied()
        } else {
            Some(0x78)
        };
        r = reader(r, *c, first);
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).map_err(|e| DecodeError::Corrupt {
            coding: outermost.as_str(),
            detail: e.to_string(),
        })?;
        if n == 0 {
            return Ok(());
        }
        total += n as u64;
        check(total, data.len() as u64, bounds)?;
        if !sink(&buf[..n]) {
            return Ok(());
        }
    }
}

fn check(out: u64, input: u64, b: Bounds) -> Result<(), DecodeError> {
    if out > b.max_out {
        return Err(DecodeError::TooLarge { limit: b.max_out });
    }
    if out > (1 << 20) + input.saturating_mul(b.max_ratio) {
        return Err(DecodeError::Ratio { ratio: b.max_ratio });
    }
    Ok(())
}

/// A push decoder for a streamed body: every layer of its codings, undone
/// last-applied first, each layer's output bounded *while* it is produced
/// (a layer writes into a [`Sink`] that refuses to grow past the bounds,
/// so one small chunk of a bomb cannot expand in memory before the check).
/// Whatever a layer has decoded is handed on at once (flate2 and brotli
/// are flushed after every chunk); zstd hands on what its window lets go
/// (see [`ZstdLayer`]).
pub struct Push {
    layers: Vec<Layer>,
    outermost: Coding,
    input: u64,
    bounds: Bounds,
}

struct Layer {
    coding: Coding,
    state: LayerState,
    /// Bytes this layer has produced so far.
    out: u64,
}

enum LayerState {
    Gzip(flate2::write::MultiGzDecoder<Sink>),
    Zlib(flate2::write::ZlibDecoder<Sink>),
    Deflate(flate2::write::DeflateDecoder<Sink>),
    Brotli(Box<brotli_decompressor::DecompressorWriter<Sink>>),
    /// Deflate whose first byte (zlib or raw) has not arrived.
    Undecided,
    Zstd(Box<ZstdLayer>),
}

/// Where a layer writes: a buffer that refuses to grow past `room`.
#[derive(Default)]
struct Sink {
    buf: Vec<u8>,
    room: u64,
    over: bool,
}

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if b.len() as u64 > self.room {
            self.over = true;
            return Err(std::io::Error::other(
                "decoded output beyond the inspection bounds",
            ));
        }
        self.room -= b.len() as u64;
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Why one layer stopped.
enum LayerError {
    /// Its output would pass the bounds.
    Over,
    Corrupt(String),
}

impl std::fmt::Debug for Push {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let codings: Vec<&str> = self.layers.iter().map(|l| l.coding.as_str()).collect();
        f.debug_struct("Push")
            .field("codings", &codings)
            .field("input", &self.input)
            .finish()
    }
}

impl Push {
    /// A decoder for `codings` (in the order they were applied); `None`
    /// when there is nothing to undo.
    pub fn new(codings: &[Coding], bounds: Bounds) -> Option<Self> {
        let outermost = *codings.last()?;
        let layers = codings
            .iter()
            .rev()
            .map(|&coding| Layer {
                coding,
                state: match coding {
                    Coding::Gzip => {
                        LayerState::Gzip(flate2::write::MultiGzDecoder::new(Sink::default()))
                    }
                    Coding::Deflate => LayerState::Undecided,
                    Coding::Brotli => LayerState::Brotli(Box::new(
                        brotli_decompressor::DecompressorWriter::new(Sink::default(), 16 * 1024),
                    )),
                    Coding::Zstd => LayerState::Zstd(Box::default()),
                },
                out: 0,
            })
            .collect();
        Some(Self {
            layers,
            outermost,
            input: 0,
            bounds,
        })
    }

    /// Feeds encoded bytes; returns the bytes decoded so far.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<u8>, DecodeError> {
        if data.is_empty() {
            return Ok(Vec::new());
        }
        self.input += data.len() as u64;
        let ratio_limit =
            (1u64 << 20).saturating_add(self.input.saturating_mul(self.bounds.max_ratio));
        let limit = ratio_limit.min(self.bounds.max_out);
        let mut piece = data.to_vec();
        for layer in &mut self.layers {
            if piece.is_empty() {
                break;
            }
            let room = limit.saturating_sub(layer.out);
            match layer.push(&piece, room) {
                Ok(out) => {
                    layer.out += out.len() as u64;
                    piece = out;
                }
                Err(LayerError::Over) if limit == self.bounds.max_out => {
                    return Err(DecodeError::TooLarge {
                        limit: self.bounds.max_out,
                    });
                }
                Err(LayerError::Over) => {
                    return Err(DecodeError::Ratio {
                        ratio: self.bounds.max_ratio,
                    });
                }
                Err(LayerError::Corrupt(detail)) => {
                    return Err(DecodeError::Corrupt {
                        coding: self.outermost.as_str(),
                        detail,
                    });
                }
            }
        }
        Ok(piece)
    }
}

impl Layer {
    fn push(&mut self, data: &[u8], room: u64) -> Result<Vec<u8>, LayerError> {
        if matches!(self.state, LayerState::Undecided) {
            self.state = if data[0] & 0x0f == 8 {
                LayerState::Zlib(flate2::write::ZlibDecoder::new(Sink::default()))
            } else {
                LayerState::Deflate(flate2::write::DeflateDecoder::new(Sink::default()))
            };
        }
        match &mut self.state {
            LayerState::Gzip(d) => through(d, data, room, |d| d.get_mut()),
            LayerState::Zlib(d) => through(d, data, room, |d| d.get_mut()),
            LayerState::Deflate(d) => through(d, data, room, |d| d.get_mut()),
            LayerState::Brotli(d) => through(d.as_mut(), data, room, |d| d.get_mut()),
            LayerState::Zstd(z) => z.push(data, self.out.saturating_add(room)),
            LayerState::Undecided => Ok(Vec::new()),
        }
    }
}

/// Writes `data` through a write-side decoder and flushes it, so every
/// byte it can decode so far comes out now, into a sink with `room`.
fn through<D: Write>(
    d: &mut D,
    data: &[u8],
    room: u64,
    sink: impl Fn(&mut D) -> &mut Sink,
) -> Result<Vec<u8>, LayerError> {
    sink(d).room = room;
    let written = d.write_all(data).and_then(|()| d.flush());
    let s = sink(d);
    let out = std::mem::take(&mut s.buf);
    match written {
        Ok(()) => Ok(out),
        Err(_) if s.over => Err(LayerError::Over),
        Err(e) => Err(LayerError::Corrupt(e.to_string())),
    }
}

/// zstd, pushed: the frame and block headers are read here so that each
/// block is decoded only once it is whole, and accounted before it is
/// decoded (a raw or RLE block by its declared size, a compressed one by
/// the format's 128 KiB maximum). The decoder keeps its window: bytes
/// come out once they are older than the window, or when the frame ends
/// (a single-segment frame, the usual one for a whole response, gives
/// everything at its end). Skippable frames are skipped.
#[derive(Default)]
struct ZstdLayer {
    dec: Option<ruzstd::decoding::FrameDecoder>,
    /// Bytes received and not yet decoded (at most one block and headers).
    pending: Vec<u8>,
    /// Whether the current frame carries a content checksum.
    checksum: bool,
    /// Bytes of a skippable frame still to skip.
    skip: u64,
    /// Upper bound of the bytes decoded so far.
    produced: u64,
}

const ZSTD_MAGIC: u32 = 0xFD2F_B528;
const ZSTD_MAX_BLOCK: usize = 128 * 1024;

impl ZstdLayer {
    /// `limit`: how many bytes this layer may have decoded in all.
    fn push(&mut self, data: &[u8], limit: u64) -> Result<Vec<u8>, LayerError> {
        let corrupt = |m: String| LayerError::Corrupt(m);
        self.pending.extend_from_slice(data);
        let mut out = Vec::new();
        let mut at = 0usize;
        loop {
            let rest = &self.pending[at..];
            if self.skip > 0 {
                let n = rest
                    .len()
                    .min(usize::try_from(self.skip).unwrap_or(usize::MAX));
                self.skip -= n as u64;
                at += n;
                if self.skip > 0 {
                    break;
                }
                continue;
            }
            let Some(dec) = self.dec.as_mut() else {
                // Between frames: a frame header, or a skippable frame.
                if rest.len() < 5 {
                    break;
                }
                let magic = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
                if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
                    if rest.len() < 8 {
                        break;
                    }
                    self.skip = u64::from(u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]));
                    at += 8;
                    continue;
                }
                if magic != ZSTD_MAGIC {
                    return Err(corrupt(format!("not a zstd frame (magic {magic:#010x})")));
                }
                let desc = rest[4];
                let single = desc & 0x20 != 0;
                let size = 5
                    + usize::from(!single)
                    + [0, 1, 2, 4][usize::from(desc & 3)]
                    + match desc >> 6 {
                        0 => usize::from(single),
                        1 => 2,
                        2 => 4,
                        _ => 8,
                    };
                if rest.len() < size {
                    break;
                }
                let mut header = &rest[..size];
                let mut d = ruzstd::decoding::FrameDecoder::new();
                d.init(&mut header).map_err(|e| corrupt(e.to_string()))?;
                self.checksum = desc & 0x04 != 0;
                self.dec = Some(d);
                at += size;
                continue;
            };
            if rest.len() < 3 {
                break;
            }
            let h = u32::from(rest[0]) | u32::from(rest[1]) << 8 | u32::from(rest[2]) << 16;
            let last = h & 1 == 1;
            let size = (h >> 3) as usize;
            if size > ZSTD_MAX_BLOCK {
                return Err(corrupt(format!(
                    "a block of {size} bytes (at most 128 KiB)"
                )));
            }
            let (body, decodes_to) = match (h >> 1) & 3 {
                0 => (size, size),
                1 => (1, size),
                2 => (size, ZSTD_MAX_BLOCK),
                _ => return Err(corrupt("a reserved block type".to_owned())),
            };
            let need = 3 + body + if last && self.checksum { 4 } else { 0 };
            if rest.len() < need {
                break;
            }
            if self.produced + decodes_to as u64 > limit {
                return Err(LayerError::Over);
            }
            self.produced += decodes_to as u64;
            let (read, _) = dec
                .decode_from_to(&rest[..need], &mut [])
                .map_err(|e| corrupt(e.to_string()))?;
            if read != need {
                return Err(corrupt(format!("a block read {read} of its {need} bytes")));
            }
            at += need;
            if let Some(bytes) = dec.collect() {
                out.extend_from_slice(&bytes);
            }
            if last {
                self.dec = None;
            }
        }
        self.pending.drain(..at);
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
