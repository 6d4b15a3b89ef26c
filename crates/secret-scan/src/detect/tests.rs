use proptest::prelude::*;

use super::*;

/// Completes `prefix` (digits) to `len` digits with a valid Luhn check digit.
pub(crate) fn luhn_complete(prefix: &str, body_seed: u64, len: usize) -> String {
    let mut x = body_seed | 1;
    let mut s = prefix.to_owned();
    while s.len() < len - 1 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push((b'0' + (x % 10) as u8) as char);
    }
    for d in b'0'..=b'9' {
        let mut c = s.clone();
        c.push(d as char);
        if luhn(c.as_bytes()) {
            return c;
        }
    }
    unreachable!("one check digit always fits")
}

/// A valid IBAN for `country` with a seeded account part.
pub(crate) fn iban(country: &str, seed: u64) -> String {
    let len = IBAN_LENGTHS
        .iter()
        .find(|(c, _)| &c[..] == country.as_bytes())
        .map(|(_, l)| *l)
        .expect("known country");
    let mut x = seed | 1;
    let bban: String = (0..len - 4)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (b'0' + (x % 10) as u8) as char
        })
        .collect();
    let probe = format!("{country}00{bban}");
    let check = 98 - mod97(probe.as_bytes());
    format!("{country}{check:02}{bban}")
}

fn base58_encode(data: &[u8]) -> String {
    let mut digits: Vec<u8> = Vec::new();
    for &b in data {
        let mut carry = u32::from(b);
        for d in digits.iter_mut() {
            carry += u32::from(*d) << 8;
            *d = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let zeros = data.iter().take_while(|&&b| b == 0).count();
    std::iter::repeat_n(b'1', zeros)
        .chain(digits.iter().rev().map(|&d| BASE58[d as usize]))
        .map(char::from)
        .collect()
}

/// A Base58Check WIF key from 32 seeded bytes.
pub(crate) fn wif(seed: u64, compressed: bool) -> String {
    let mut x = seed | 1;
    let mut payload = vec![0x80u8];
    for _ in 0..32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        payload.push((x >> 24) as u8);
    }
    if compressed {
        payload.push(0x01);
    }
    let sum = Sha256::digest(Sha256::digest(&payload));
    payload.extend_from_slice(&sum[..4]);
    base58_encode(&payload)
}

fn spans(d: Detector, text: &str) -> Vec<String> {
    d.find(text.as_bytes())
        .into_iter()
        .map(|r| text[r].to_owned())
        .collect()
}

#[test]
fn cards_by_issuer_luhn_and_grouping() {
    let visa = luhn_complete("4", 7, 16);
    let amex = luhn_complete("37", 8, 15);
    let mc = luhn_complete("52", 9, 16);
    for text in [
        format!("card {visa} exp"),
        format!(
            "{}-{}-{}-{}",
            &visa[..4],
            &visa[4..8],
            &visa[8..12],
            &visa[12..]
        ),
        format!("{} {} {}", &amex[..4], &amex[4..10], &amex[10..]),
        format!("\"number\": \"{mc}\""),
    ] {
        assert_eq!(spans(Detector::PaymentCard, &text).len(), 1, "{text}");
    }
    let mut bad = visa.clone().into_bytes();
    bad[15] = if bad[15] == b'9' { b'0' } else { bad[15] + 1 };
    let bad = String::from_utf8(bad).expect("ascii");
    for text in [
        bad,                                      // Luhn fails
        luhn_complete("9", 7, 16),                // no issuer
        format!("v{visa}"),                       // inside a word
        format!("{visa}7"),                       // longer digit run
        format!("1.{visa}"),                      // a decimal
        "4444444444444444".to_owned(),            // one repeated digit
        format!("{} {}", &visa[..8], &visa[8..]), // odd grouping
    ] {
        assert!(spans(Detector::PaymentCard, &text).is_empty(), "{text}");
    }
}

#[test]
fn ibans_by_country_length_and_mod97() {
    let de = iban("DE", 3);
    let gb = iban("GB", 4);
    let spaced: String = de
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect::<Vec<_>>()
        .join(" ");
    for text in [format!("IBAN: {de}"), format!("to {spaced}."), gb.clone()] {
        assert_eq!(spans(Detector::Iban, &text).len(), 1, "{text}");
    }
    let mut bad = de.clone().into_bytes();
    bad[10] = if bad[10] == b'9' { b'0' } else { bad[10] + 1 };
    for text in [
        String::from_utf8(bad).expect("ascii"),
        format!("{de}1"),
        format!("X{de}"),
        "DE00 not an iban at all".to_owned(),
    ] {
        assert!(spans(Detector::Iban, &text).is_empty(), "{text}");
    }
}

#[test]
fn wif_keys_by_checksum() {
    for (seed, compressed) in [(1, false), (2, true), (3, true)] {
        let k = wif(seed, compressed);
        assert_eq!(
            spans(Detector::CryptoKey, &format!("key: {k}\n")),
            vec![k.clone()]
        );
        let mut bad = k.into_bytes();
        let last = bad.len() - 1;
        bad[last] = if bad[last] == b'z' { b'y' } else { b'z' };
        let bad = String::from_utf8(bad).expect("ascii");
        assert!(spans(Detector::CryptoKey, &bad).is_empty(), "{bad}");
    }
}

#[test]
fn env_dumps_and_what_is_not_one() {
    let dumps = [
        "HOSTNAME=abc123\nHOME=/home/agent\nPATH=/usr/local/bin:/usr/bin\nPWD=/work\nSHLVL=1\n",
        "declare -x HOME=\"/home/agent\"\ndeclare -x HTTPS_PROXY=\"http://egress:9099\"\ndeclare -x PATH=\"/usr/bin\"\n",
        "PATH=/usr/bin\0HOME=/root\0HOSTNAME=box\0",
        "{\"PATH\": \"/usr/bin\", \"HOME\": \"/root\", \"SHELL\": \"/bin/bash\"}",
        "{'HOME': '/root', 'LANG': 'C.UTF-8', 'NODE_EXTRA_CA_CERTS': '/etc/ca.pem'}",
        "DB_PASSWORD=hunter2isnotgood\nSTRIPE_SECRET=abcdefgh12345678\n",
        "export GITHUB_TOKEN=abc123def456\nexport HOME=/home/me\n",
    ];
    for d in dumps {
        assert_eq!(spans(Detector::EnvDump, d).len(), 1, "{d:?}");
    }
    let not_dumps = [
        "PATH=/usr/local/bin:$PATH\n",
        "export PATH=/opt/bin:$PATH\nexport HOME=/tmp\n",
        "API_KEY=your-api-key-here\nSECRET_KEY=changeme\nDB_PASSWORD=\n",
        "GITHUB_TOKEN=${{ secrets.GITHUB_TOKEN }}\nNPM_TOKEN=$NPM_TOKEN\n",
        "x = {\"path\": \"/usr\", \"home\": 3}",
        "if a==b: PATH=1",
        "RUST_LOG=debug\nCARGO_TERM_COLOR=always\nCI=true\n",
    ];
    for d in not_dumps {
        assert!(spans(Detector::EnvDump, d).is_empty(), "{d:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn detectors_never_panic(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
        for d in Detector::ALL {
            for r in d.find(&data) {
                prop_assert!(r.start <= r.end && r.end <= data.len());
            }
        }
    }

    #[test]
    fn generated_cards_ibans_and_keys_are_found_in_noise(
        seed in any::<u64>(),
        pre in "[a-z ]{0,30}",
        post in "[a-z ]{0,30}",
    ) {
        let card = luhn_complete("4", seed, 16);
        prop_assume!(card.bytes().any(|c| c != card.as_bytes()[1]));
        let text = format!("{pre} {card} {post}");
        prop_assert_eq!(spans(Detector::PaymentCard, &text), vec![card]);
        let i = iban("FR", seed);
        prop_assert_eq!(spans(Detector::Iban, &format!("{pre} {i} {post}")), vec![i]);
        let k = wif(seed, seed % 2 == 0);
        prop_assert_eq!(spans(Detector::CryptoKey, &format!("{pre} {k} {post}")), vec![k]);
    }

    #[test]
    fn a_changed_digit_breaks_the_checksum(seed in any::<u64>(), pos in 0usize..15, delta in 1u8..10) {
        let card = luhn_complete("4", seed, 16);
        let mut b = card.into_bytes();
        // Not the issuer digit: changing it would change the issuer.
        let p = pos + 1;
        b[p] = b'0' + (b[p] - b'0' + delta) % 10;
        let text = String::from_utf8(b).expect("ascii");
        prop_assert!(spans(Detector::PaymentCard, &text).is_empty(), "{}", text);
    }
}
