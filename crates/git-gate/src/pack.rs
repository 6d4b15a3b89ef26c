//! A streaming check of a pushed pack's *inflated* size, before git sees it.
//!
//! A pack is `PACK`, a version (2 or 3), an object count, the objects, and a
//! 20-byte trailer. Each object starts with a varint header holding its type
//! and size, then (for deltas) its base, then a zlib stream. A whole object
//! (commit, tree, blob, tag) declares its inflated size in that header; a
//! delta declares the size of its instructions, and the instructions begin
//! with the base's size and the *result's* size. So a few kilobytes can
//! declare gigabytes (a zlib bomb of a blob, or a delta that copies a base
//! over and over), which git's `receive.maxInputSize` (compressed bytes)
//! never sees.
//!
//! [`Inspector`] reads the pack as it streams, refuses as soon as a header
//! declares an object over [`Limits::max_object_bytes`] or the sum over
//! [`Limits::max_total_bytes`], and otherwise inflates each zlib stream
//! into a small scratch buffer only to find where the next object starts,
//! checking that it inflates to exactly its declared size. Memory stays
//! constant; nothing is written. What it does not do: resolve deltas,
//! hash objects or verify the trailer (git does all three afterwards).

use flate2::{Decompress, FlushDecompress, Status};

/// Sizes a push may not exceed once inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest single object (whole, or a delta's result).
    pub max_object_bytes: u64,
    /// Largest sum of all objects' inflated sizes.
    pub max_total_bytes: u64,
}

/// Why a pack was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    /// One object is too big once inflated.
    #[error(
        "object {index} of the pack (a {kind}) inflates to {} ({size} bytes); this gate takes objects up to {} (--max-object-bytes)",
        human(*size),
        human(*limit)
    )]
    ObjectTooLarge {
        /// 1-based position in the pack.
        index: u32,
        /// `blob`, `tree`, `commit`, `tag` or `delta`.
        kind: &'static str,
        /// Its inflated size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// All objects together are too big once inflated.
    #[error(
        "the pack's objects inflate to more than {} in total; this gate takes up to {} per push (--max-push-inflated-bytes)",
        human(*total),
        human(*limit)
    )]
    TotalTooLarge {
        /// The running total when the limit was crossed.
        total: u64,
        /// The limit.
        limit: u64,
    },
    /// Not a well-formed pack.
    #[error("malformed pack at byte {offset}: {problem}")]
    Malformed {
        /// Offset from the start of the pack.
        offset: u64,
        /// What is wrong.
        problem: String,
    },
}

/// `n` bytes in KiB, MiB or GiB, for messages.
pub fn human(n: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if n >= size {
            return format!("{:.1} {unit}", n as f64 / size as f64);
        }
    }
    format!("{n} bytes")
}

const TRAILER: usize = 20;
/// A size or offset varint longer than this overflows 64 bits.
const MAX_VARINT: usize = 10;
/// The two size varints at the start of a delta's instructions.
const DELTA_HEAD: usize = 2 * MAX_VARINT;
/// Scratch output of one inflate call; inflated bytes are dropped.
const SCRATCH: usize = 64 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Commit,
    Tree,
    Blob,
    Tag,
    OfsDelta,
    RefDelta,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Commit => "commit",
            Kind::Tree => "tree",
            Kind::Blob => "blob",
            Kind::Tag => "tag",
            Kind::OfsDelta | Kind::RefDelta => "delta",
        }
    }

    fn is_delta(self) -> bool {
        matches!(self, Kind::OfsDelta | Kind::RefDelta)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The 12-byte pack header.
    Header,
    /// An object's type-and-size varint.
    ObjectHeader,
    /// An ofs-delta's base offset varint.
    OfsBase,
    /// A ref-delta's base object id (this many bytes left).
    RefBase(usize),
    /// An object's zlib stream.
    Data,
    /// The trailer (this many bytes left).
    Trailer(usize),
    /// Complete; nothing may follow.
    Done,
}

/// The streaming check; feed it the pack in any chunks, then [`finish`].
///
/// [`finish`]: Inspector::finish
pub struct Inspector {
    limits: Limits,
    hash_len: usize,
    state: State,
    /// Bytes of the pack consumed so far.
    offset: u64,
    /// Bytes of the current header or varint.
    head: Vec<u8>,
    count: u32,
    index: u32,
    total: u64,
    kind: Kind,
    /// The current object's declared (inflated) size.
    declared: u64,
    zlib: Decompress,
    /// The current object's first inflated bytes (a delta's two sizes).
    delta_head: Vec<u8>,
    delta_checked: bool,
    scratch: Box<[u8]>,
}

impl std::fmt::Debug for Inspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inspector")
            .field("state", &self.state)
            .field("offset", &self.offset)
            .field("object", &self.index)
            .field("count", &self.count)
            .field("inflated_total", &self.total)
            .finish_non_exhaustive()
    }
}

impl Inspector {
    /// A new check for a pack whose object ids are `hash_len` bytes (20 for
    /// SHA-1, 32 for SHA-256).
    pub fn new(limits: Limits, hash_len: usize) -> Self {
        Self {
            limits,
            hash_len,
            state: State::Header,
            offset: 0,
            head: Vec::with_capacity(12),
            count: 0,
            index: 0,
            total: 0,
            kind: Kind::Blob,
            declared: 0,
            zlib: Decompress::new(true),
            delta_head: Vec::with_capacity(DELTA_HEAD),
            delta_checked: false,
            scratch: vec![0u8; SCRATCH].into_boxed_slice(),
        }
    }

    /// The sum of the inflated sizes of the objects seen so far (a delta
    /// counts at its result's size).
    pub fn inflated_total(&self) -> u64 {
        self.total
    }

    /// Objects the pack header announced.
    pub fn object_count(&self) -> u32 {
        self.count
    }

    fn malformed(&self, problem: impl Into<String>) -> PackError {
        PackError::Malformed {
            offset: self.offset,
            problem: problem.into(),
        }
    }

    /// Checks the next bytes of the pack.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), PackError> {
        while !data.is_empty() {
            let used = match self.state {
                State::Header => self.header(data)?,
                State::ObjectHeader => self.object_header(data)?,
                State::OfsBase => self.ofs_base(data)?,
                State::RefBase(left) => {
                    let n = left.min(data.len());
                    self.state = if n == left {
                        State::Data
                    } else {
                        State::RefBase(left - n)
                    };
                    n
                }
                State::Data => self.inflate(data)?,
                State::Trailer(left) => {
                    let n = left.min(data.len());
                    self.state = if n == left {
                        State::Done
                    } else {
                        State::Trailer(left - n)
                    };
                    n
                }
                State::Done => return Err(self.malformed("data after the pack's trailer")),
            };
            self.offset += used as u64;
            data = &data[used..];
        }
        Ok(())
    }

    /// The pack must be complete.
    pub fn finish(&self) -> Result<(), PackError> {
        match self.state {
            State::Done => Ok(()),
            State::Header => Err(self.malformed("the pack ends inside its header")),
            State::Trailer(_) => Err(self.malformed("the pack ends inside its trailer")),
            _ => Err(self.malformed(format!(
                "the pack ends inside object {} of {}",
                self.index + 1,
                self.count
            ))),
        }
    }

    fn header(&mut self, data: &[u8]) -> Result<usize, PackError> {
        let n = (12 - self.head.len()).min(data.len());
        self.head.extend_from_slice(&data[..n]);
        if self.head.len() < 12 {
            return Ok(n);
        }
        if &self.head[..4] != b"PACK" {
            return Err(self.malformed("it does not start with PACK"));
        }
        let word = |i: usize| {
            u32::from_be_bytes([
                self.head[i],
                self.head[i + 1],
                self.head[i + 2],
                self.head[i + 3],
            ])
        };
        let version = word(4);
        if version != 2 && version != 3 {
            return Err(self.malformed(format!("version {version}; expected 2 or 3")));
        }
        self.count = word(8);
        self.head.clear();
        self.state = if self.count == 0 {
            State::Trailer(TRAILER)
        } else {
            State::ObjectHeader
        };
        Ok(n)
    }

    /// Reads one varint byte at a time into `head`; `Some` once complete.
    fn varint_byte(&mut self, b: u8, what: &str) -> Result<bool, PackError> {
        self.head.push(b);
        if self.head.len() > MAX_VARINT {
            return Err(self.malformed(format!("{what} is longer than {MAX_VARINT} bytes")));
        }
        Ok(b & 0x80 == 0)
    }

    fn object_header(&mut self, data: &[u8]) -> Result<usize, PackError> {
        for (i, &b) in data.iter().enumerate() {
            if !self.varint_byte(b, "an object header")? {
                continue;
            }
            let kind = match (self.head[0] >> 4) & 7 {
                1 => Kind::Commit,
                2 => Kind::Tree,
                3 => Kind::Blob,
                4 => Kind::Tag,
                6 => Kind::OfsDelta,
                7 => Kind::RefDelta,
                t => {
                    return Err(self.malformed(format!("object type {t} is not a git object type")));
                }
            };
            let mut size = u64::from(self.head[0] & 0x0f);
            for (k, &c) in self.head.iter().enumerate().skip(1) {
                let shift = 4 + 7 * (k as u32 - 1);
                let part = u64::from(c & 0x7f)
                    .checked_shl(shift)
                    .filter(|p| p >> shift == u64::from(c & 0x7f))
                    .ok_or_else(|| self.malformed("an object size overflows 64 bits"))?;
                size |= part;
            }
            self.head.clear();
            self.index += 1;
            self.kind = kind;
            self.declared = size;
            self.delta_head.clear();
            self.delta_checked = false;
            self.zlib.reset(true);
            // A delta's instructions are never bigger than a real object.
            self.check_object(size)?;
            if !kind.is_delta() {
                self.add_to_total(size)?;
            }
            self.state = match kind {
                Kind::OfsDelta => State::OfsBase,
                Kind::RefDelta => State::RefBase(self.hash_len),
                _ => State::Data,
            };
            return Ok(i + 1);
        }
        Ok(data.len())
    }

    fn ofs_base(&mut self, data: &[u8]) -> Result<usize, PackError> {
        for (i, &b) in data.iter().enumerate() {
            if self.varint_byte(b, "a delta's base offset")? {
                self.head.clear();
                self.state = State::Data;
                return Ok(i + 1);
            }
        }
        Ok(data.len())
    }

    fn check_object(&self, size: u64) -> Result<(), PackError> {
        if size > self.limits.max_object_bytes {
            return Err(PackError::ObjectTooLarge {
                index: self.index,
                kind: self.kind.name(),
                size,
                limit: self.limits.max_object_bytes,
            });
        }
        Ok(())
    }

    fn add_to_total(&mut self, size: u64) -> Result<(), PackError> {
        self.total = self.total.saturating_add(size);
        if self.total > self.limits.max_total_bytes {
            return Err(PackError::TotalTooLarge {
                total: self.total,
                limit: self.limits.max_total_bytes,
            });
        }
        Ok(())
    }

    /// A delta's instructions start with two varints: the base's size and
    /// the result's size. Checks the result once both are in.
    fn check_delta_head(&mut self) -> Result<(), PackError> {
        let mut sizes = [0u64; 2];
        let mut at = 0;
        for s in &mut sizes {
            let mut shift = 0u32;
            loop {
                let Some(&b) = self.delta_head.get(at) else {
                    return Ok(()); // more inflated bytes needed
                };
                at += 1;
                if shift > 63 {
                    return Err(self.malformed("a delta's size overflows 64 bits"));
                }
                *s |= u64::from(b & 0x7f) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    break;
                }
            }
        }
        self.delta_checked = true;
        self.check_object(sizes[1])?;
        self.add_to_total(sizes[1])
    }

    fn inflate(&mut self, data: &[u8]) -> Result<usize, PackError> {
        let before_in = self.zlib.total_in();
        loop {
            let consumed = (self.zlib.total_in() - before_in) as usize;
            let out_before = self.zlib.total_out();
            let status = self
                .zlib
                .decompress(&data[consumed..], &mut self.scratch, FlushDecompress::None)
                .map_err(|e| {
                    self.malformed(format!("object {} is not valid zlib: {e}", self.index))
                })?;
            let produced = (self.zlib.total_out() - out_before) as usize;
            if self.zlib.total_out() > self.declared {
                return Err(self.malformed(format!(
                    "object {} inflates past its declared {} bytes",
                    self.index, self.declared
                )));
            }
            if self.kind.is_delta() && !self.delta_checked && self.delta_head.len() < DELTA_HEAD {
                let take = produced.min(DELTA_HEAD - self.delta_head.len());
                self.delta_head.extend_from_slice(&self.scratch[..take]);
                self.check_delta_head()?;
            }
            let used = (self.zlib.total_in() - before_in) as usize;
            match status {
                Status::StreamEnd => {
                    if self.zlib.total_out() != self.declared {
                        return Err(self.malformed(format!(
                            "object {} inflates to {} bytes, not its declared {}",
                            self.index,
                            self.zlib.total_out(),
                            self.declared
                        )));
                    }
                    if self.kind.is_delta() && !self.delta_checked {
                        return Err(self.malformed(format!("delta {} has no sizes", self.index)));
                    }
                    self.state = if self.index == self.count {
                        State::Trailer(TRAILER)
                    } else {
                        State::ObjectHeader
                    };
                    return Ok(used);
                }
                // Output buffer full: more may be pending, go round again.
                _ if produced == self.scratch.len() => {}
                // All input taken: wait for more.
                _ if used == data.len() => return Ok(used),
                _ if produced > 0 || used > consumed => {}
                _ => {
                    return Err(self.malformed(format!(
                        "object {}'s zlib stream makes no progress",
                        self.index
                    )));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
