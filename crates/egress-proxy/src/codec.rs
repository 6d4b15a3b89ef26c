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
        Coding::Zstd => match zstd::stream::read::Decoder::new(r).and_then(|mut d| {
            d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Ok(d)
        }) {
            Ok(d) => Box::new(d),
            Err(e) => Box::new(Failing(format!("{e}"))),
        },
    }
}

/// The largest zstd window accepted: 8 MiB, the limit RFC 8878 sets for
/// HTTP (`Content-Encoding: zstd`). A frame that needs more is corrupt to
/// the proxy; the decoder's memory stays bounded.
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// A reader that fails with a fixed message (a zstd decoder that could
/// not be set up).
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
/// are flushed after every chunk, zstd drained until it has nothing left).
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
            LayerState::Zstd(z) => z.push(data, room),
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

/// zstd, pushed: libzstd's streaming decoder (it reads consecutive and
/// skippable frames, refuses blocks over the format's 128 KiB and windows
/// over [`ZSTD_WINDOW_LOG_MAX`], and gives out what it decoded at once),
/// drained 64 KiB at a time so the output is checked against the bounds
/// as it grows.
struct ZstdLayer {
    dec: Result<zstd::stream::raw::Decoder<'static>, String>,
    /// Where each 64 KiB step decodes to (kept across pushes).
    buf: Vec<u8>,
}

impl Default for ZstdLayer {
    fn default() -> Self {
        let dec = zstd::stream::raw::Decoder::new()
            .and_then(|mut d| {
                d.set_parameter(zstd::stream::raw::DParameter::WindowLogMax(
                    ZSTD_WINDOW_LOG_MAX,
                ))?;
                Ok(d)
            })
            .map_err(|e| e.to_string());
        Self {
            dec,
            buf: vec![0u8; 64 * 1024],
        }
    }
}

impl ZstdLayer {
    fn push(&mut self, data: &[u8], room: u64) -> Result<Vec<u8>, LayerError> {
        use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
        let dec = self
            .dec
            .as_mut()
            .map_err(|e| LayerError::Corrupt(e.clone()))?;
        let mut input = InBuffer::around(data);
        let mut out = Vec::new();
        let buf = &mut self.buf;
        loop {
            let before = input.pos();
            let mut o = OutBuffer::around(buf.as_mut_slice());
            dec.run(&mut input, &mut o)
                .map_err(|e| LayerError::Corrupt(e.to_string()))?;
            let n = o.pos();
            if (out.len() + n) as u64 > room {
                return Err(LayerError::Over);
            }
            out.extend_from_slice(&buf[..n]);
            // Done when the input is used up and the decoder had room to
            // spare (nothing left inside it), or nothing moved.
            let consumed = input.pos() == data.len();
            if (consumed && n < buf.len()) || (n == 0 && input.pos() == before) {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests;
