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

/// The BIP-39 mnemonic of `entropy` (16, 20, 24, 28 or 32 bytes).
pub(crate) fn mnemonic(entropy: &[u8]) -> String {
    let hash = Sha256::digest(entropy);
    let ent = entropy.len() * 8;
    let bit = |i: usize| -> u16 {
        let byte = if i < ent {
            entropy[i / 8]
        } else {
            hash[(i - ent) / 8]
        };
        u16::from(byte >> (7 - i % 8) & 1)
    };
    let words = bip39_words();
    (0..(ent + ent / 32) / 11)
        .map(|w| {
            let idx = (0..11).fold(0u16, |a, b| a << 1 | bit(w * 11 + b));
            words[usize::from(idx)]
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn bip39_word_list_is_the_specification_s() {
    let w = bip39_words();
    assert_eq!(w.len(), 2048);
    assert!(w.windows(2).all(|p| p[0] < p[1]), "sorted and unique");
    assert_eq!((w[0], w[2047]), ("abandon", "zoo"));
    let digest = Sha256::digest(BIP39_ENGLISH.as_bytes());
    assert_eq!(
        format!("{digest:x}"),
        "2f5eed53a4727b4bf8880d8f3f199efc90e58503646d9ff8eff3a2ed3b24dbda"
    );
}

#[test]
fn bip39_vectors_and_dressings() {
    // The specification's first test vectors (entropy 00…00 and ff…ff).
    let zero12 = format!("{} about", ["abandon"; 11].join(" "));
    assert_eq!(mnemonic(&[0; 16]), zero12);
    let ff24 = format!("{} vote", ["zoo"; 23].join(" "));
    assert_eq!(mnemonic(&[0xff; 32]), ff24);
    for text in [&zero12, &ff24] {
        assert_eq!(spans(Detector::Bip39Mnemonic, text), vec![text.clone()]);
    }
    let m = mnemonic(&[7; 20]); // 15 words
    let listed: Vec<String> = m
        .split(' ')
        .enumerate()
        .map(|(i, w)| format!("{}. {w}", i + 1))
        .collect();
    let quoted: Vec<String> = m.split(' ').map(|w| format!("\"{w}\"")).collect();
    for dressed in [
        format!("seed: {m}\n"),
        m.to_uppercase(),
        listed.join("\n"),
        format!("[{}]", quoted.join(", ")),
        m.replace(' ', "\\n"),
    ] {
        assert_eq!(
            spans(Detector::Bip39Mnemonic, &dressed).len(),
            1,
            "{dressed}"
        );
    }
    // The last word carries the checksum: another list word breaks it
    // (for 15 words the checksum is 5 bits, so most replacements do).
    let mut words: Vec<&str> = m.split(' ').collect();
    let last = bip39_index(words[14].as_bytes()).expect("a list word");
    let wrong = bip39_words()[usize::from((last + 1) % 2048)];
    words[14] = wrong;
    let idx: Vec<u16> = words
        .iter()
        .map(|w| bip39_index(w.as_bytes()).expect("list word"))
        .collect();
    assert_eq!(
        spans(Detector::Bip39Mnemonic, &words.join(" ")).is_empty(),
        !bip39_checksum_ok(&idx)
    );
    // Eleven words, or words glued into identifiers, are not a phrase.
    let short: Vec<&str> = m.split(' ').take(11).collect();
    assert!(spans(Detector::Bip39Mnemonic, &short.join(" ")).is_empty());
    assert!(spans(Detector::Bip39Mnemonic, &m.replace(' ', "_")).is_empty());
}

#[test]
fn bip39_prose_is_not_a_phrase() {
    let prose = [
        "The quick brown fox jumps over the lazy dog while the committee reviews the annual budget.",
        "Please review the attached document and let me know if you have any questions about the release.",
        "abandon ability able about above absent absorb abstract absurd abuse access accident",
        "We found that the cache was stale because the build script never cleaned the output folder.",
    ];
    for p in prose {
        let idx: Vec<u16> = p
            .split(' ')
            .filter_map(|w| bip39_index(w.as_bytes()))
            .collect();
        let flagged = !spans(Detector::Bip39Mnemonic, p).is_empty();
        // Only a sequence of twelve list words with a valid checksum.
        assert_eq!(flagged, idx.len() == 12 && bip39_checksum_ok(&idx), "{p}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_valid_mnemonic_is_found(
        entropy in proptest::collection::vec(any::<u8>(), 32),
        len in prop::sample::select(vec![16usize, 20, 24, 28, 32]),
        pre in prop::collection::vec(0u16..2048, 0..6),
        post in "[a-z ,.]{0,30}",
    ) {
        let m = mnemonic(&entropy[..len]);
        // List words in front must not hide the phrase.
        let before: Vec<&str> = pre.iter().map(|&i| bip39_words()[usize::from(i)]).collect();
        let lead = if before.is_empty() { "seed: ".to_owned() } else { format!("{} ", before.join(" ")) };
        let text = format!("{lead}{m} {post}");
        let at = lead.len();
        let found = spans(Detector::Bip39Mnemonic, &text);
        let hits = Detector::Bip39Mnemonic.find(text.as_bytes());
        prop_assert!(
            hits.iter().any(|r| r.start <= at && r.end >= at + m.len()),
            "{} not covered by {:?}", text, found
        );
    }

    #[test]
    fn random_twelve_words_are_found_only_with_a_valid_checksum(
        idx in prop::collection::vec(0u16..2048, 12),
    ) {
        let text: Vec<&str> = idx.iter().map(|&i| bip39_words()[usize::from(i)]).collect();
        let text = text.join(" ");
        let found = !spans(Detector::Bip39Mnemonic, &text).is_empty();
        prop_assert_eq!(found, bip39_checksum_ok(&idx), "{}", text);
    }

    /// Prose: content words (many are list words: `about`, `number`,
    /// `sound`, `people`…) with a function word at least every eleven
    /// words, as sentences have; function words are not in the list.
    #[test]
    fn prose_is_not_flagged(chunks in prop::collection::vec(
        (prop::collection::vec(prop::sample::select(vec![
            "about", "hot", "word", "some", "time", "way", "many", "write", "like", "long",
            "make", "thing", "see", "two", "look", "more", "day", "could", "come", "number",
            "sound", "most", "people", "over", "water", "call", "first", "people", "may",
            "side", "been", "now", "find", "any", "new", "work", "part", "take", "get",
            "place", "made", "live", "where", "after", "back", "little", "only", "round",
            "man", "year", "came", "show", "every", "good", "give", "our", "under", "name",
        ]), 1..12), prop::sample::select(vec!["the", "of", "and", "to", "is", "in", "for", "it"])),
        0..40,
    )) {
        let mut text = String::new();
        for (content, function) in &chunks {
            prop_assert!(bip39_index(function.as_bytes()).is_none());
            text.push_str(&content.join(" "));
            text.push(' ');
            text.push_str(function);
            text.push(' ');
        }
        prop_assert!(spans(Detector::Bip39Mnemonic, &text).is_empty(), "{}", text);
    }
}

#[test]
fn random_twelve_words_verify_about_one_time_in_sixteen() {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut ok = 0;
    let n = 16_000;
    for _ in 0..n {
        let idx: Vec<u16> = (0..12)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 2048) as u16
            })
            .collect();
        ok += usize::from(bip39_checksum_ok(&idx));
    }
    // 1000 expected; 5 sigma is about ±150.
    assert!((850..1150).contains(&ok), "{ok} of {n}");
}
