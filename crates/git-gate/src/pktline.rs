//! pkt-line framing checks (git's `gitprotocol-common`): a 4-hex-digit
//! length (including itself) then payload; `0000` flush, `0001` delimiter,
//! `0002` response end; at most 65520 bytes per line.

/// Largest pkt-line git sends (`LARGE_PACKET_MAX`).
pub const MAX_PKT_LEN: usize = 65520;

/// A framing problem, with the byte offset where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PktError {
    /// The length prefix is not four hex digits.
    #[error("malformed pkt-line at byte {offset}: length prefix {prefix:?} is not four hex digits")]
    BadPrefix {
        /// Where.
        offset: usize,
        /// The prefix as text.
        prefix: String,
    },
    /// The length is 3 (reserved) or above the maximum.
    #[error(
        "malformed pkt-line at byte {offset}: length {len} is invalid; expected 0000-0002 or 0004-{MAX_PKT_LEN:04x}"
    )]
    BadLength {
        /// Where.
        offset: usize,
        /// The declared length.
        len: usize,
    },
    /// The body ended inside a pkt-line.
    #[error("truncated pkt-line at byte {offset}: the request ends inside a line")]
    Truncated {
        /// Where.
        offset: usize,
    },
}

/// One pkt-line's header: `Ok(Some(len))` for a complete header, where `len`
/// is the full line length (0 to 2 for special packets), `Ok(None)` if the
/// buffer ends before four bytes.
fn header(buf: &[u8], at: usize) -> Result<Option<usize>, PktError> {
    let Some(h) = buf.get(at..at + 4) else {
        return Ok(None);
    };
    let text = std::str::from_utf8(h)
        .ok()
        .filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit()));
    let Some(len) = text.and_then(|s| usize::from_str_radix(s, 16).ok()) else {
        return Err(PktError::BadPrefix {
            offset: at,
            prefix: String::from_utf8_lossy(h).into_owned(),
        });
    };
    if len == 3 || len > MAX_PKT_LEN {
        return Err(PktError::BadLength { offset: at, len });
    }
    Ok(Some(len))
}

/// Checks that `buf` is exactly a sequence of whole pkt-lines (an
/// upload-pack request).
pub fn check_all(buf: &[u8]) -> Result<(), PktError> {
    let mut at = 0;
    while at < buf.len() {
        match header(buf, at)? {
            None => return Err(PktError::Truncated { offset: at }),
            Some(len) if len < 4 => at += 4,
            Some(len) => {
                if at + len > buf.len() {
                    return Err(PktError::Truncated { offset: at });
                }
                at += len;
            }
        }
    }
    Ok(())
}

/// Scans a receive-pack request's command list: `Ok(Some(end))` when the
/// list's terminating flush ends at `end` (the pack follows), `Ok(None)` when
/// more bytes are needed.
pub fn command_section_end(buf: &[u8]) -> Result<Option<usize>, PktError> {
    let mut at = 0;
    loop {
        match header(buf, at)? {
            None => return Ok(None),
            Some(0) => return Ok(Some(at + 4)),
            Some(len) if len < 4 => return Err(PktError::BadLength { offset: at, len }),
            Some(len) => {
                if at + len > buf.len() {
                    return Ok(None);
                }
                at += len;
            }
        }
    }
}

/// Encodes one pkt-line.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = format!("{:04x}", payload.len() + 4).into_bytes();
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests;
