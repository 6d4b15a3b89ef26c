use std::io::Write;

use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;

use super::*;

pub(crate) fn encode(c: Coding, data: &[u8]) -> Vec<u8> {
    match c {
        Coding::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).expect("write");
            e.finish().expect("finish")
        }
        Coding::Deflate => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).expect("write");
            e.finish().expect("finish")
        }
        Coding::Brotli => {
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                w.write_all(data).expect("write");
            }
            out
        }
        Coding::Zstd => zstd::encode_all(data, 3).expect("zstd"),
    }
}

const BIG: Bounds = Bounds {
    max_out: 64 << 20,
    max_ratio: 1000,
};

fn decoded(data: &[u8], codings: &[Coding], b: Bounds) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    decode(data, codings, b, |p| {
        out.extend_from_slice(p);
        true
    })?;
    Ok(out)
}

fn headers(v: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("content-encoding", HeaderValue::from_str(v).expect("value"));
    h
}

#[test]
fn content_encoding_lists_parse_in_order_and_unknown_ones_are_named() {
    assert_eq!(codings(&HeaderMap::new()), Ok(vec![]));
    assert_eq!(codings(&headers("identity")), Ok(vec![]));
    assert_eq!(
        codings(&headers("gzip, br")),
        Ok(vec![Coding::Gzip, Coding::Brotli])
    );
    assert_eq!(codings(&headers("ZSTD")), Ok(vec![Coding::Zstd]));
    let e = codings(&headers("compress")).unwrap_err();
    assert!(
        e.contains("\"compress\"") && e.contains("gzip, deflate, br and zstd"),
        "{e}"
    );
}

#[test]
fn every_coding_round_trips_and_chains_undo_in_reverse() {
    let text = b"the quick brown fox ".repeat(1000);
    for c in [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd] {
        assert_eq!(
            decoded(&encode(c, &text), &[c], BIG).expect("decodes"),
            text,
            "{c:?}"
        );
    }
    let chained = encode(Coding::Brotli, &encode(Coding::Gzip, &text));
    assert_eq!(
        decoded(&chained, &[Coding::Gzip, Coding::Brotli], BIG).expect("decodes"),
        text
    );
    // Raw deflate (no zlib header), as some servers send it.
    let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    raw.write_all(&text).expect("write");
    let raw = raw.finish().expect("finish");
    assert_eq!(
        decoded(&raw, &[Coding::Deflate], BIG).expect("decodes"),
        text
    );
}

#[test]
fn bombs_and_corrupt_streams_are_errors() {
    let zeros = vec![0u8; 8 << 20];
    let bomb = encode(Coding::Gzip, &zeros);
    let tight = Bounds {
        max_out: 64 << 20,
        max_ratio: 100,
    };
    assert_eq!(
        decoded(&bomb, &[Coding::Gzip], tight),
        Err(DecodeError::Ratio { ratio: 100 })
    );
    let small = Bounds {
        max_out: 1 << 20,
        max_ratio: 100_000,
    };
    assert_eq!(
        decoded(&bomb, &[Coding::Gzip], small),
        Err(DecodeError::TooLarge { limit: 1 << 20 })
    );
    for c in [Coding::Gzip, Coding::Brotli, Coding::Zstd] {
        assert!(
            matches!(
                decoded(b"this is not compressed at all", &[c], BIG),
                Err(DecodeError::Corrupt { .. })
            ),
            "{c:?}"
        );
    }
}

/// Encodes `data` with `codings` applied in order.
fn encode_all(codings: &[Coding], data: &[u8]) -> Vec<u8> {
    codings.iter().fold(data.to_vec(), |d, &c| encode(c, &d))
}

/// Pushes `enc` in chunks of `size`; the concatenated output.
fn pushed(codings: &[Coding], enc: &[u8], size: usize, b: Bounds) -> Result<Vec<u8>, DecodeError> {
    let mut p = Push::new(codings, b).expect("push decoder");
    let mut out = Vec::new();
    for chunk in enc.chunks(size.max(1)) {
        out.extend(p.push(chunk)?);
    }
    Ok(out)
}

const CHAINS: [&[Coding]; 9] = [
    &[Coding::Gzip],
    &[Coding::Deflate],
    &[Coding::Brotli],
    &[Coding::Zstd],
    &[Coding::Gzip, Coding::Brotli],
    &[Coding::Brotli, Coding::Gzip],
    &[Coding::Deflate, Coding::Zstd],
    &[Coding::Zstd, Coding::Gzip],
    &[Coding::Gzip, Coding::Gzip],
];

#[test]
fn push_decoding_matches_pull_decoding() {
    let text = b"streamed html <p>hello</p> ".repeat(500);
    for codings in CHAINS {
        let enc = encode_all(codings, &text);
        for size in [1, 7, 4096, enc.len()] {
            assert_eq!(
                pushed(codings, &enc, size, BIG).expect("decodes"),
                text,
                "{codings:?} in chunks of {size}"
            );
        }
    }
    assert!(Push::new(&[], BIG).is_none());
}

/// The last chunk's text comes out with it: a decoder that kept its
/// output until a next write would let the end of a page go unread.
#[test]
fn a_single_chunk_is_decoded_whole_at_once() {
    let text = b"<p>the end of the page carries the instruction</p>".repeat(2000);
    for codings in CHAINS {
        let enc = encode_all(codings, &text);
        let mut p = Push::new(codings, BIG).expect("push decoder");
        assert_eq!(p.push(&enc).expect("decodes"), text, "{codings:?}");
    }
}

/// zstd frames as servers send them: several frames in a row, skippable
/// frames between them, a frame with a content checksum.
#[test]
fn zstd_frames_in_a_row_and_skippable_frames_are_read() {
    let a = b"first frame text ".repeat(300);
    let b = b"second frame text ".repeat(300);
    let mut enc = encode(Coding::Zstd, &a);
    enc.extend_from_slice(&0x184D_2A53u32.to_le_bytes());
    enc.extend_from_slice(&5u32.to_le_bytes());
    enc.extend_from_slice(b"skip!");
    enc.extend_from_slice(&encode(Coding::Zstd, &b));
    let want = [a.as_slice(), b.as_slice()].concat();
    for size in [1, 3, 100, enc.len()] {
        assert_eq!(
            pushed(&[Coding::Zstd], &enc, size, BIG).expect("decodes"),
            want,
            "chunks of {size}"
        );
    }
    // A frame with a content checksum, which the decoder verifies.
    let mut e = zstd::stream::Encoder::new(Vec::new(), 3).expect("encoder");
    e.include_checksum(true).expect("checksum flag");
    e.write_all(b"hello").expect("write");
    let framed = e.finish().expect("finish");
    assert_ne!(framed[4] & 0x04, 0, "the frame carries a checksum");
    for size in [1, framed.len()] {
        assert_eq!(
            pushed(&[Coding::Zstd], &framed, size, BIG).expect("decodes"),
            b"hello"
        );
    }
    let mut damaged = framed.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    assert!(matches!(
        pushed(&[Coding::Zstd], &damaged, 64, BIG),
        Err(DecodeError::Corrupt { .. })
    ));
}

/// A zstd frame of RLE blocks: 4 bytes of input per 128 KiB of output.
fn zstd_rle_bomb(blocks: usize) -> Vec<u8> {
    let mut out = 0xFD2F_B528u32.to_le_bytes().to_vec();
    out.push(0x00); // not single segment, no checksum, no content size
    out.push(11 << 3); // window 2^(10+11) = 2 MiB
    for i in 0..blocks {
        let last = u32::from(i + 1 == blocks);
        let h = ((128 * 1024u32) << 3) | (1 << 1) | last;
        out.extend_from_slice(&h.to_le_bytes()[..3]);
        out.push(b'A');
    }
    out
}

/// A bomb is refused by the bounds before it expands: the output of one
/// chunk never passes them, whatever the coding.
#[test]
fn bombs_pushed_in_one_chunk_stop_at_the_bounds() {
    let tight = Bounds {
        max_out: 4 << 20,
        max_ratio: 100,
    };
    let zeros = vec![0u8; 64 << 20];
    for c in [Coding::Gzip, Coding::Deflate, Coding::Brotli] {
        let bomb = encode(c, &zeros);
        let r = pushed(&[c], &bomb, bomb.len(), tight);
        assert!(
            matches!(
                r,
                Err(DecodeError::Ratio { .. } | DecodeError::TooLarge { .. })
            ),
            "{c:?}: {:?}",
            r.map(|v| v.len())
        );
    }
    let bomb = zstd_rle_bomb(512); // 2 KiB -> 64 MiB
    let r = pushed(&[Coding::Zstd], &bomb, bomb.len(), tight);
    assert!(
        matches!(r, Err(DecodeError::Ratio { ratio: 100 })),
        "{:?}",
        r.map(|v| v.len())
    );
    // Within the bounds the same frame decodes.
    let small = zstd_rle_bomb(4);
    let out = pushed(&[Coding::Zstd], &small, 3, BIG).expect("decodes");
    assert_eq!(out, vec![b'A'; 4 * 128 * 1024]);
}

/// A zstd frame that asks for a window over 8 MiB (RFC 8878's limit for
/// HTTP) is refused, pushed or pulled: the decoder's memory stays bounded.
#[test]
fn a_zstd_window_over_8_mib_is_refused() {
    let mut big = zstd_rle_bomb(2);
    big[5] = (14 << 3) as u8; // window 2^(10+14) = 16 MiB
    assert!(matches!(
        pushed(&[Coding::Zstd], &big, 64, BIG),
        Err(DecodeError::Corrupt { .. })
    ));
    assert!(matches!(
        decoded(&big, &[Coding::Zstd], BIG),
        Err(DecodeError::Corrupt { .. })
    ));
    big[5] = (13 << 3) as u8; // 8 MiB: accepted
    assert_eq!(
        pushed(&[Coding::Zstd], &big, 64, BIG)
            .expect("decodes")
            .len(),
        2 * 128 * 1024
    );
}

#[test]
fn corrupt_pushed_streams_are_errors() {
    for codings in CHAINS {
        let r = pushed(
            codings,
            b"this is not compressed at all, not even a little",
            5,
            BIG,
        );
        assert!(
            matches!(r, Err(DecodeError::Corrupt { .. })),
            "{codings:?}: {r:?}"
        );
    }
    // A reserved zstd block type.
    let mut bad = 0xFD2F_B528u32.to_le_bytes().to_vec();
    bad.extend_from_slice(&[0x00, 0x58, 0x07, 0x00, 0x00]);
    assert!(matches!(
        pushed(&[Coding::Zstd], &bad, 64, BIG),
        Err(DecodeError::Corrupt { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn decoders_never_panic_on_garbage(
        data in proptest::collection::vec(any::<u8>(), 0..4096),
        which in 0usize..4,
    ) {
        let c = [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd][which];
        let _ = decoded(&data, &[c], BIG);
        if let Some(mut p) = Push::new(&[c], BIG) {
            let _ = p.push(&data);
        }
    }

    #[test]
    fn any_body_pushed_in_any_chunks_round_trips(
        data in proptest::collection::vec(any::<u8>(), 0..6000),
        chain in 0..CHAINS.len(),
        size in 1usize..3000,
    ) {
        let codings = CHAINS[chain];
        let enc = encode_all(codings, &data);
        prop_assert_eq!(pushed(codings, &enc, size, BIG).expect("decodes"), data);
    }

    /// Near-valid streams (a valid encoding with bytes overwritten) reach
    /// deep into the decoders, where random bytes never get.
    #[test]
    fn push_decoders_never_panic_on_damaged_streams(
        data in proptest::collection::vec(any::<u8>(), 1..3000),
        chain in 0..CHAINS.len(),
        damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        size in 1usize..600,
    ) {
        let codings = CHAINS[chain];
        let mut enc = encode_all(codings, &data);
        for (at, b) in damage {
            let i = at.index(enc.len());
            enc[i] = b;
        }
        let _ = pushed(codings, &enc, size, BIG);
        let _ = decoded(&enc, codings, BIG);
    }

    #[test]
    fn push_decoders_never_panic_on_garbage(
        data in proptest::collection::vec(any::<u8>(), 0..4096),
        chain in 0..CHAINS.len(),
        size in 1usize..600,
    ) {
        let _ = pushed(CHAINS[chain], &data, size, BIG);
    }

    #[test]
    fn any_body_round_trips(data in proptest::collection::vec(any::<u8>(), 0..8192), which in 0usize..4) {
        let c = [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd][which];
        prop_assert_eq!(decoded(&encode(c, &data), &[c], BIG).expect("decodes"), data);
    }
}
