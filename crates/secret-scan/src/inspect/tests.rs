use proptest::prelude::*;

use super::*;
use crate::Profile;

/// An AWS access key id with 16 distinct characters (always above the
/// rule's entropy floor), built at run time.
fn aws_key(seed: u64) -> String {
    let mut a = *b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut x = seed.wrapping_mul(6364136223846793005) | 1;
    for i in (1..a.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        a.swap(i, (x % (i as u64 + 1)) as usize);
    }
    format!(
        "{}{}",
        "AKIA",
        std::str::from_utf8(&a[..16]).expect("ascii")
    )
}

fn inspector() -> Inspector {
    Inspector::new(RuleSet::builtin(Profile::Egress), &[Detector::EnvDump])
}

#[derive(Debug, Clone, Copy)]
enum Enc {
    B64,
    B64Url,
    Hex,
    HexColon,
    Pct,
    Unicode,
    B32,
    Gzip64,
}

fn apply(e: Enc, s: &[u8]) -> Vec<u8> {
    match e {
        Enc::B64 => data_encoding::BASE64.encode(s).into_bytes(),
        Enc::B64Url => data_encoding::BASE64URL_NOPAD.encode(s).into_bytes(),
        Enc::Hex => data_encoding::HEXLOWER.encode(s).into_bytes(),
        Enc::HexColon => s
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
            .into_bytes(),
        Enc::Pct => s
            .iter()
            .flat_map(|b| format!("%{b:02X}").into_bytes())
            .collect(),
        Enc::Unicode => s
            .iter()
            .flat_map(|b| format!("\\u{b:04x}").into_bytes())
            .collect(),
        Enc::B32 => data_encoding::BASE32.encode(s).into_bytes(),
        Enc::Gzip64 => {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(s).expect("write");
            data_encoding::BASE64
                .encode(&gz.finish().expect("finish"))
                .into_bytes()
        }
    }
}

fn enc() -> impl Strategy<Value = Enc> {
    prop_oneof![
        Just(Enc::B64),
        Just(Enc::B64Url),
        Just(Enc::Hex),
        Just(Enc::HexColon),
        Just(Enc::Pct),
        Just(Enc::Unicode),
        Just(Enc::B32),
        Just(Enc::Gzip64),
    ]
}

#[test]
fn a_plain_key_is_found_with_no_layers() {
    let key = aws_key(1);
    let h = inspector()
        .first(format!("id={key}").as_bytes())
        .expect("found");
    assert_eq!(h.finding.rule_id, "aws-access-key-id");
    assert!(h.layers.is_empty());
    assert_eq!(h.dressing(), "plain");
}

#[test]
fn nested_layers_are_reported_outermost_first() {
    let key = aws_key(2);
    let inner = apply(Enc::Hex, key.as_bytes());
    let outer = apply(Enc::B64, &inner);
    let text = format!(
        "{{\"note\": \"{}\"}}",
        String::from_utf8(outer).expect("ascii")
    );
    let ins = inspector().inspect(text.as_bytes());
    let h = ins
        .hits
        .iter()
        .find(|h| h.finding.rule_id == "aws-access-key-id")
        .expect("found");
    assert_eq!(h.layers, vec![Encoding::Base64, Encoding::Hex]);
    assert_eq!(h.offset, 10, "the offset of the outer span");
    assert!(
        !h.finding.excerpt.contains(&key[4..]),
        "{}",
        h.finding.excerpt
    );
    assert!(ins.complete);
}

#[test]
fn egress_profile_refuses_a_key_that_says_example_and_git_profile_waives_it() {
    let doc = ["AKIA", "IOSFODNN7", "EXAMPLE"].concat();
    let egress = inspector();
    assert!(egress.first(doc.as_bytes()).is_some());
    let git = Inspector::new(RuleSet::builtin(Profile::Git), &[]);
    assert!(git.first(doc.as_bytes()).is_none());
    // Placeholders stay waived in both.
    for p in [
        "api_key = \"xxxxxxxxxxxxxxxx\"",
        "token: your_api_key",
        "password=${DB_PASSWORD}",
    ] {
        assert!(egress.first(p.as_bytes()).is_none(), "{p}");
    }
}

#[test]
fn decode_work_is_bounded_by_the_budget() {
    // A deep pile of base64 of base64 … of text: each layer is scanned,
    // the walk stops at MAX_DEPTH, and the decoded total stays within
    // BUDGET_FACTOR times the input.
    let mut s = b"nothing to see here, just words".to_vec();
    for _ in 0..8 {
        s = apply(Enc::B64, &s);
    }
    let ins = inspector().inspect(&s);
    assert!(ins.hits.is_empty());
    assert!(ins.complete);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn a_key_under_up_to_three_encodings_is_found(
        seed in any::<u64>(),
        encs in proptest::collection::vec(enc(), 1..=3),
        pre in "[a-z ]{0,16}",
        post in "[a-z ]{0,16}",
    ) {
        let key = aws_key(seed);
        let mut s = format!("k {key} v").into_bytes();
        for e in &encs {
            s = apply(*e, &s);
        }
        let text = [pre.as_bytes(), b" ", &s, b" ", post.as_bytes()].concat();
        let hit = inspector().first(&text);
        prop_assert!(hit.is_some(), "{:?} hid the key", encs);
        let hit = hit.expect("checked");
        prop_assert_eq!(hit.finding.rule_id.as_str(), "aws-access-key-id");
        prop_assert!(!hit.finding.excerpt.contains(&key[4..]));
    }

    #[test]
    fn inspection_never_panics_on_noise(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = inspector().inspect(&data);
    }
}

#[test]
fn hex_in_a_path_segment_is_found() {
    let key = aws_key(5);
    let hex = data_encoding::HEXUPPER.encode(format!("k {key} v").as_bytes());
    let ins = inspector();
    assert!(
        ins.first(format!("/obj/{hex}\nobj{hex}\n").as_bytes())
            .is_some()
    );
    let gh = ["ghp", "_", "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"].concat();
    let hex = data_encoding::HEXUPPER.encode(gh.as_bytes());
    assert!(
        ins.first(format!("/obj/{hex}\n").as_bytes()).is_some(),
        "gh"
    );
}
