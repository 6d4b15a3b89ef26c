//! Entries of a git tree object (`<mode> SP <name> NUL <raw object id>`),
//! read as a stream so a huge tree does not have to fit in memory.

use std::io::{self, BufRead, Read};

/// Upper bound on one entry's mode plus name; git's own limit on a path
/// component is far lower (`PATH_MAX`), so anything longer is malformed.
const MAX_ENTRY: usize = 64 << 10;

/// Calls `f(mode, name)` for each entry of the tree read from `r`, whose
/// object ids are `hash_len` raw bytes (20 for SHA-1, 32 for SHA-256).
/// A truncated or malformed tree is an `InvalidData` error.
pub fn for_each_entry(
    mut r: impl BufRead,
    hash_len: usize,
    mut f: impl FnMut(&[u8], &[u8]),
) -> io::Result<()> {
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("malformed tree: {what}"),
        )
    };
    let mut entry = Vec::new();
    let mut hash = vec![0u8; hash_len];
    loop {
        entry.clear();
        let n = (&mut r).take(MAX_ENTRY as u64).read_until(0, &mut entry)?;
        if n == 0 {
            return Ok(());
        }
        if entry.pop() != Some(0) {
            return Err(bad(if n >= MAX_ENTRY {
                "entry name too long"
            } else {
                "entry without its name terminator"
            }));
        }
        let Some(sp) = entry.iter().position(|&b| b == b' ') else {
            return Err(bad("entry without a mode"));
        };
        let (mode, name) = (&entry[..sp], &entry[sp + 1..]);
        if mode.is_empty() || !mode.iter().all(u8::is_ascii_digit) || name.is_empty() {
            return Err(bad("entry with an invalid mode or an empty name"));
        }
        r.read_exact(&mut hash)
            .map_err(|_| bad("entry without its object id"))?;
        f(mode, name);
    }
}

#[cfg(test)]
mod tests;
