use proptest::prelude::*;

use super::*;

fn b64(s: &[u8]) -> String {
    data_encoding::BASE64.encode(s)
}

fn b64url_nopad(s: &[u8]) -> String {
    data_encoding::BASE64URL_NOPAD.encode(s)
}

fn hexlower(s: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(s)
}

fn pct_all(s: &[u8]) -> String {
    s.iter().map(|b| format!("%{b:02X}")).collect()
}

fn wrap(s: &str, width: usize, nl: &str) -> String {
    s.as_bytes()
        .chunks(width)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect::<Vec<_>>()
        .join(nl)
}

/// Every way one secret can be dressed, as (name, text).
fn dressings(secret: &[u8]) -> Vec<(&'static str, String)> {
    let hex = hexlower(secret);
    let pairs: Vec<String> = secret.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        ("base64", b64(secret)),
        (
            "base64 unpadded",
            data_encoding::BASE64_NOPAD.encode(secret),
        ),
        ("base64url", data_encoding::BASE64URL.encode(secret)),
        ("base64url unpadded", b64url_nopad(secret)),
        (
            "base64 wrapped 76 LF",
            wrap(&b64(&secret.repeat(3)), 76, "\n"),
        ),
        (
            "base64 wrapped 64 CRLF",
            wrap(&b64(&secret.repeat(3)), 64, "\r\n"),
        ),
        (
            "base64 wrapped JSON \\n",
            wrap(&b64(&secret.repeat(3)), 64, "\\n"),
        ),
        ("base32", data_encoding::BASE32.encode(secret)),
        (
            "base32 lower unpadded",
            data_encoding::BASE32_NOPAD.encode(secret).to_lowercase(),
        ),
        ("hex", hex.clone()),
        ("HEX", hex.to_uppercase()),
        ("hex colon", pairs.join(":")),
        ("hex dash", pairs.join("-")),
        ("hex space", pairs.join(" ")),
        ("\\x", pairs.iter().map(|p| format!("\\x{p}")).collect()),
        (
            "0x list",
            pairs
                .iter()
                .map(|p| format!("0x{p}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("percent", pct_all(secret)),
        (
            "\\u",
            secret.iter().map(|b| format!("\\u{:04x}", b)).collect(),
        ),
        ("&#", secret.iter().map(|b| format!("&#{b};")).collect()),
        ("&#x", secret.iter().map(|b| format!("&#x{b:x};")).collect()),
    ]
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn found(text: &str, secret: &[u8]) -> bool {
    decode_all(text.as_bytes())
        .iter()
        .any(|d| contains(&d.bytes, secret))
}

#[test]
fn every_dressing_decodes_back() {
    let secret = b"key=Zq3vR8xT1mK9pL2wN7yB4cF6";
    for (name, text) in dressings(secret) {
        for framed in [
            text.clone(),
            format!("{{\"data\": \"{text}\"}}"),
            format!("q={text}&x=1"),
            format!("lorem ipsum {text} dolor"),
        ] {
            assert!(found(&framed, secret), "{name}: {framed}");
        }
    }
}

#[test]
fn a_stray_character_before_base64_does_not_hide_it() {
    let secret = b"the secret phrase is longer than this";
    for prefix in ["x", "ab", "abc"] {
        let text = format!("{prefix}{}", data_encoding::BASE64_NOPAD.encode(secret));
        assert!(found(&text, secret), "{prefix}: {text}");
    }
}

#[test]
fn gzip_inside_is_inflated() {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"hello inflated world").expect("write");
    let z = gz.finish().expect("finish");
    assert_eq!(inflate(&z).as_deref(), Some(&b"hello inflated world"[..]));
    assert_eq!(inflate(b"plain text"), None);
}

#[test]
fn plain_text_and_identifiers_decode_to_nothing_texty() {
    let text = "The quick brown fox jumps over the lazy dog; see src/main.rs and \
                docs/inspection.md for details. uuid 3fa85f64-5717-4562-b3fc-2c963f66afa6 \
                mac 00:1a:2b:3c:4d:5e";
    for d in decode_all(text.as_bytes()) {
        assert!(!is_texty(&d.bytes), "{:?} decoded to text", d);
    }
}

#[test]
fn percent_layers_peel_one_at_a_time() {
    let once = pct_all(b"abc");
    let twice = once.replace('%', "%25");
    let d = decode_all(twice.as_bytes());
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].bytes, once.as_bytes());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decoders_never_panic_and_spans_are_disjoint_and_no_longer_than_input(
        data in proptest::collection::vec(any::<u8>(), 0..2048)
    ) {
        let out = decode_all(&data);
        let mut spans: Vec<_> = out.iter().map(|d| d.span.clone()).collect();
        spans.sort_by_key(|s| s.start);
        for w in spans.windows(2) {
            prop_assert!(w[0].end <= w[1].start, "overlap {:?}", w);
        }
        for d in &out {
            prop_assert!(d.span.end <= data.len());
            prop_assert!(d.bytes.len() <= d.span.len() * 4, "{:?}", d);
        }
        let total: usize = out.iter().map(|d| d.bytes.len()).sum();
        // Escapes can turn `&#N;` (4 bytes) into up to 4 UTF-8 bytes; every
        // other decoder shrinks.
        prop_assert!(total <= data.len() * 4 + 16);
    }

    #[test]
    fn decoders_never_panic_on_encoded_looking_noise(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("%4".to_owned()), Just("%41".to_owned()), Just("\\u00".to_owned()),
                Just("\\ud83d\\ude00".to_owned()), Just("\\ud83d".to_owned()), Just("&#x".to_owned()),
                Just("&#65;".to_owned()), Just("0x4".to_owned()), Just("0x41, ".to_owned()),
                Just("ab:".to_owned()), Just("=".to_owned()), Just("\n".to_owned()),
                Just("\\n".to_owned()), "[A-Za-z0-9+/_-]{1,40}",
            ],
            0..80,
        )
    ) {
        let text = parts.concat();
        let _ = decode_all(text.as_bytes());
    }

    #[test]
    fn any_texty_secret_survives_any_dressing(
        secret in "[ -~]{16,60}",
        prefix in "[ a-z]{0,20}",
        suffix in "[ a-z.,;]{0,20}",
    ) {
        for (name, text) in dressings(secret.as_bytes()) {
            let framed = format!("{prefix} {text} {suffix}");
            let hit = decode_all(framed.as_bytes())
                .iter()
                .any(|d| contains(&d.bytes, secret.as_bytes()));
            // Space-delimited hex swallows the spaces around it only when
            // the neighbours are hex too; everything else must decode.
            prop_assert!(hit, "{} lost {:?} in {:?}", name, secret, framed);
        }
    }
}

#[test]
fn hex_pieces_of_a_path_are_decoded() {
    let secret = b"the secret token value 123";
    let hex = data_encoding::HEXUPPER.encode(secret);
    for text in [
        format!("/obj/{hex}"),
        format!("/obj/{hex}/raw"),
        format!("GET /a/{hex}/{hex} x"),
    ] {
        assert!(found(&text, secret), "{text}");
    }
}

#[test]
fn json_wrapped_base64_regression() {
    let secret = b"a aAa0 AAa   A 00A aA   aa A a+LZh`A  A AA0Aa";
    let text = wrap(&b64(&secret.repeat(3)), 64, "\\n");
    // `…K0xaaG…` inside the base64 is not an escape.
    assert!(found(&text, secret));
}

// ------------------------------------------------ the run finders' fast path

/// The run finders before they skipped (probes every few bytes, each
/// probe in the alphabet walking its whole run): the reference the fast
/// ones must agree with exactly.
mod reference {
    use super::super::*;

    fn reference_delimited_hex(d: &[u8], claimed: &mut Claimed, out: &mut Vec<Decoded>) {
        // A run of MIN_HEX_PAIRS pairs spans 3 * MIN_HEX_PAIRS - 1 bytes, so
        // probing every STRIDE bytes cannot step over one.
        const STRIDE: usize = 3 * MIN_HEX_PAIRS - 2;
        let mut probe = 0;
        while probe < d.len() {
            let c = d[probe];
            if !(c.is_ascii_hexdigit() || is_hex_delim(c)) {
                probe += STRIDE;
                continue;
            }
            let mut s = probe;
            while s > 0 && (d[s - 1].is_ascii_hexdigit() || is_hex_delim(d[s - 1])) {
                s -= 1;
            }
            let mut e = probe;
            while e < d.len() && (d[e].is_ascii_hexdigit() || is_hex_delim(d[e])) {
                e += 1;
            }
            let mut i = s;
            while i + 2 < e {
                if let Some(run) = hex_pairs_at(d, i, e) {
                    if !claimed.any(run.0.clone()) {
                        claimed.take(run.0.clone());
                        out.push(Decoded {
                            span: run.0.clone(),
                            encoding: Encoding::Hex,
                            bytes: run.1,
                        });
                    }
                    i = run.0.end;
                } else {
                    i += 1;
                }
            }
            probe = e.max(probe + 1) + STRIDE - 1;
        }
    }
    fn reference_base_n(d: &[u8], claimed: &mut Claimed, out: &mut Vec<Decoded>) {
        const STRIDE: usize = MIN_BASE64 - 1;
        let mut probe = 0;
        while probe < d.len() {
            if !is_b64(d[probe]) || claimed.is(probe) {
                probe += STRIDE;
                continue;
            }
            let mut s = probe;
            while s > 0 && is_b64(d[s - 1]) && !claimed.is(s - 1) {
                s -= 1;
            }
            // Extend right across bytes and wraps.
            let mut e = probe;
            let mut line_start = s;
            let mut wrapped = false;
            loop {
                let limit = claimed.next(e);
                while e < limit && is_b64(d[e]) {
                    e += 1;
                }
                if e - line_start >= MIN_WRAP_LINE
                    && let Some(w) = wrap_at(d, e)
                    && !claimed.any(e..e + w)
                {
                    e += w;
                    line_start = e;
                    wrapped = true;
                    continue;
                }
                break;
            }
            if e - s >= MIN_BASE64 {
                decode_run(d, s..e, !wrapped, claimed, out);
            }
            probe = e.max(probe + 1) + STRIDE - 1;
        }
    }

    pub(super) fn decode_all(data: &[u8]) -> Vec<Decoded> {
        let mut out = Vec::new();
        let mut claimed = Claimed::new(data.len());
        escapes(data, &mut claimed, &mut out);
        percent(data, &mut claimed, &mut out);
        reference_delimited_hex(data, &mut claimed, &mut out);
        reference_base_n(data, &mut claimed, &mut out);
        out
    }
}

/// Text mixing what the finders look for: prose, base64 / base32 / hex
/// runs of lengths around the thresholds, wraps, delimited hex, escapes,
/// percent-encoding, keywords, stray alphabet and delimiter bytes.
fn finder_food() -> impl Strategy<Value = Vec<u8>> {
    let part = prop_oneof![
        "[a-z]{1,9}( |, |\\.|\n)",
        "[A-Za-z0-9+/]{1,70}={0,2}",
        "[A-Za-z0-9_-]{15,40}",
        "[A-Z2-7]{20,40}",
        "[a-f0-9]{28,70}",
        "([0-9a-f]{2}[:\\- ]){8,16}[0-9a-f]{2}",
        "([0-9A-F]{2} ){10,14}",
        "[a-f ]{1,40}",
        "[A-Za-z0-9+/]{30,80}(\n|\r\n|\\\\n|\\\\r\\\\n)[ \t]{0,3}[A-Za-z0-9+/]{1,80}",
        "(%[0-9A-F]{2}){1,12}",
        "(\\\\x[0-9a-f]{2}){1,6}",
        "(\\\\u00[0-9a-f]{2}){1,6}",
        "(0x[0-9a-f]{2}, ){1,6}",
        "(&#[0-9]{2,3};){1,4}",
        Just("password=".to_owned()),
        Just("AKIA".to_owned()),
        Just("ghp_".to_owned()),
        "[ -~]{1,12}",
        "[=/:\\-_ ]{1,4}",
    ];
    proptest::collection::vec(part, 0..60).prop_map(|v| v.concat().into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The skipping run finders decode exactly what probing every run
    /// decoded: same spans, encodings, bytes, order.
    #[test]
    fn skipping_finders_agree_with_the_reference(data in finder_food()) {
        prop_assert_eq!(decode_all(&data), reference::decode_all(&data));
    }

    #[test]
    fn skipping_finders_agree_with_the_reference_on_bytes(
        data in proptest::collection::vec(
            prop_oneof![
                4 => proptest::sample::select(b"abcdefABCDEF0123456789+/=-_: \n\r\\%&x".to_vec()),
                1 => any::<u8>(),
            ],
            0..1500,
        )
    ) {
        prop_assert_eq!(decode_all(&data), reference::decode_all(&data));
    }
}

#[test]
fn next_window_finds_the_first_run_of_good_positions() {
    let check = |s: &str, len: usize| {
        let b = s.as_bytes();
        let want =
            (0..b.len()).find(|&w| w + len <= b.len() && b[w..w + len].iter().all(|&c| c == b'x'));
        // With and without the word test (here: `.` and space fail).
        let dots = |x: u64| {
            let mut m = 0;
            for (i, c) in x.to_le_bytes().into_iter().enumerate() {
                if c == b'.' || c == b' ' {
                    m |= 0x80 << (8 * i);
                }
            }
            m
        };
        assert_eq!(
            next_window(b, 0, len, |k| b[k] == b'x', dots),
            want,
            "{s} {len}"
        );
        assert_eq!(
            next_window(b, 0, len, |k| b[k] == b'x', |_| 0),
            want,
            "{s} {len}"
        );
    };
    check("", 8);
    check("xxxxxxx", 8);
    check("xxxxxxxx", 8);
    check("ab xxxxxxxx", 8);
    check("xx.xx.xxxxxxx.xxxxxxxx", 8);
    check("x.xx.xxx.xxxxxxxxx", 9);
    check("xxxxxxxxxxxxxxxxxxxxxx", 20);
    check(".xxxxxxxxxxxxxxxxxxx.xxxxxxxxxxxxxxxxxxxx", 20);
}

proptest! {
    /// The word tests flag only bytes outside the class, and every byte
    /// below `+` / every byte from `g` up (what they are for).
    #[test]
    fn word_tests_flag_exactly_their_bytes(word in any::<[u8; 8]>()) {
        let x = u64::from_le_bytes(word);
        let b64 = not_b64_8(x) & 0x8080_8080_8080_8080;
        let hex = not_hex_or_delim_8(x) & 0x8080_8080_8080_8080;
        for (i, &c) in word.iter().enumerate() {
            let bit = |m: u64| m >> (8 * i + 7) & 1 == 1;
            prop_assert_eq!(bit(b64), !(b'+'..0x80).contains(&c), "{:#x}", c);
            prop_assert_eq!(bit(hex), !(b' '..b'g').contains(&c), "{:#x}", c);
            if bit(b64) {
                prop_assert!(!is_b64(c));
            }
            if bit(hex) {
                prop_assert!(!HEX_OR_DELIM[c as usize]);
            }
        }
    }
}
