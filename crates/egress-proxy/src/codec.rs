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

/// A push decoder for one coding layer of a streamed body (gzip,
/// deflate, br). zstd has no push decoder here: [`Push::new`] returns
/// `None` and the caller scans such a stream only if it can hold it.
pub struct Push {
    inner: PushInner,
    coding: Coding,
    input: u64,
    output: u64,
    bounds: Bounds,
}

enum PushInner {
    Gzip(flate2::write::MultiGzDecoder<Vec<u8>>),
    Zlib(flate2::write::ZlibDecoder<Vec<u8>>),
    Deflate(flate2::write::DeflateDecoder<Vec<u8>>),
    Brotli(Box<brotli_decompressor::DecompressorWriter<Vec<u8>>>),
    /// Deflate whose first byte (zlib or raw) has not arrived.
    Undecided,
}

impl std::fmt::Debug for Push {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Push")
            .field("coding", &self.coding)
            .field("input", &self.input)
            .field("output", &self.output)
            .finish()
    }
}

impl Push {
    /// A decoder for a single coding; `None` for zstd and for chains of
    /// several codings.
    pub fn new(codings: &[Coding], bounds: Bounds) -> Option<Self> {
        let [coding] = codings else { return None };
        let inner = match coding {
            Coding::Gzip => PushInner::Gzip(flate2::write::MultiGzDecoder::new(Vec::new())),
            Coding::Deflate => PushInner::Undecided,
            Coding::Brotli => PushInner::Brotli(Box::new(
                brotli_decompressor::DecompressorWriter::new(Vec::new(), 16 * 1024),
            )),
            Coding::Zstd => return None,
        };
        Some(Self {
            inner,
            coding: *coding,
            input: 0,
            output: 0,
            bounds,
        })
    }

    /// Feeds encoded bytes; returns the bytes decoded so far.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<u8>, DecodeError> {
        if data.is_empty() {
            return Ok(Vec::new());
        }
        if matches!(self.inner, PushInner::Undecided) {
            self.inner = if data[0] & 0x0f == 8 {
                PushInner::Zlib(flate2::write::ZlibDecoder::new(Vec::new()))
            } else {
                PushInner::Deflate(flate2::write::DeflateDecoder::new(Vec::new()))
            };
        }
        let coding = self.coding.as_str();
        let corrupt = |e: std::io::Error| DecodeError::Corrupt {
            coding,
            detail: e.to_string(),
        };
        let out = match &mut self.inner {
            PushInner::Gzip(d) => {
                d.write_all(data).map_err(corrupt)?;
                std::mem::take(d.get_mut())
            }
            PushInner::Zlib(d) => {
                d.write_all(data).map_err(corrupt)?;
                std::mem::take(d.get_mut())
            }
            PushInner::Deflate(d) => {
                d.write_all(data).map_err(corrupt)?;
                std::mem::take(d.get_mut())
            }
            PushInner::Brotli(d) => {
                d.write_all(data).map_err(corrupt)?;
                std::mem::take(d.get_mut())
            }
            PushInner::Undecided => Vec::new(),
        };
        self.input += data.len() as u64;
        self.output += out.len() as u64;
        check(self.output, self.input, self.bounds)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
