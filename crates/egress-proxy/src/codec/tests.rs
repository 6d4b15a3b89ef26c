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
        Coding::Zstd => {
            ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
        }
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

#[test]
fn push_decoding_matches_pull_decoding() {
    let text = b"streamed html <p>hello</p> ".repeat(500);
    for c in [Coding::Gzip, Coding::Deflate, Coding::Brotli] {
        let enc = encode(c, &text);
        let mut p = Push::new(&[c], BIG).expect("push decoder");
        let mut out = Vec::new();
        for chunk in enc.chunks(7) {
            out.extend(p.push(chunk).expect("decodes"));
        }
        assert_eq!(out, text, "{c:?}");
    }
    assert!(Push::new(&[Coding::Zstd], BIG).is_none());
    assert!(Push::new(&[Coding::Gzip, Coding::Brotli], BIG).is_none());
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
    fn any_body_round_trips(data in proptest::collection::vec(any::<u8>(), 0..8192), which in 0usize..4) {
        let c = [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd][which];
        prop_assert_eq!(decoded(&encode(c, &data), &[c], BIG).expect("decodes"), data);
    }
}
