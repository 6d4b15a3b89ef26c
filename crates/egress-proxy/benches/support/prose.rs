//! Keyword-free English-like text for the benches (`inspect`, `proxy`):
//! the input DLP's throughput is judged on.

/// `len` bytes of words, a line break every 13 words.
pub fn words(len: usize) -> Vec<u8> {
    let w = [
        "lorem",
        "ipsum",
        "dolor",
        "sit",
        "amet",
        "consectetur",
        "adipiscing",
        "elit",
        "sed",
        "do",
        "eiusmod",
        "tempor",
        "incididunt",
        "ut",
        "labore",
        "et",
        "dolore",
        "magna",
    ];
    let mut out = Vec::with_capacity(len + 16);
    let mut i = 0usize;
    while out.len() < len {
        out.extend_from_slice(w[i % w.len()].as_bytes());
        out.push(if i % 13 == 12 { b'\n' } else { b' ' });
        i = i.wrapping_mul(7).wrapping_add(3) % 1_000_003;
    }
    out.truncate(len);
    out
}
