use super::*;
use proptest::prelude::*;

/// An independent frame encoder (RFC 6455 §5.2), used as the oracle.
fn encode(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(m | n as u8),
        n if n <= 0xffff => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(k) => {
            out.extend_from_slice(&k);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// Records what it was asked; blocks messages containing `needle`.
struct Recorder {
    needle: Option<&'static [u8]>,
    seen: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl Recorder {
    fn new(needle: Option<&'static [u8]>) -> Self {
        Self {
            needle,
            seen: Default::default(),
        }
    }
}

impl MessageScanner for Recorder {
    fn scan(&self, _direction: Direction, message: &[u8]) -> Verdict {
        self.seen.lock().unwrap().push(message.to_vec());
        match self.needle {
            Some(n) if message.windows(n.len()).any(|w| w == n) => {
                Verdict::Block("blocked: secret".into())
            }
            _ => Verdict::Allow,
        }
    }
}

/// Decodes a stream of frames into (opcode, fin, unmasked payload).
fn decode_all(mut b: &[u8]) -> Vec<(u8, bool, Vec<u8>)> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let h = parse_header(b).unwrap().unwrap();
        let end = h.header_len + h.payload_len as usize;
        let mut p = b[h.header_len..end].to_vec();
        if let Some(m) = h.mask {
            unmask(&mut p, m, 0);
        }
        out.push((h.opcode, h.fin, p));
        b = &b[end..];
    }
    out
}

#[test]
fn headers_parse_in_all_three_length_forms() {
    for len in [0usize, 125, 126, 65535, 65536] {
        let f = encode(true, 2, &vec![7; len], Some([1, 2, 3, 4]));
        let h = parse_header(&f).unwrap().unwrap();
        assert_eq!(h.payload_len, len as u64);
        assert_eq!(h.header_len + len, f.len());
        for cut in 0..h.header_len {
            assert_eq!(parse_header(&f[..cut]).unwrap(), None, "cut {cut}");
        }
    }
    // Non-minimal lengths are refused.
    assert!(parse_header(&[0x82, 0xfe, 0, 5, 0, 0, 0, 0]).is_err());
    assert!(parse_header(&[0x82, 0xff, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0]).is_err());
}

#[test]
fn protocol_errors_close_with_1002() {
    let scanner = Recorder::new(None);
    let cases: &[(Vec<u8>, &str)] = &[
        (encode(true, 1, b"hi", None), "not masked"),
        (
            {
                let mut f = encode(true, 1, b"hi", Some([1, 1, 1, 1]));
                f[0] |= 0x40;
                f
            },
            "RSV",
        ),
        (encode(true, 3, b"", Some([1, 1, 1, 1])), "opcode"),
        (encode(false, 9, b"", Some([1, 1, 1, 1])), "control"),
        (encode(true, 9, &[0; 126], Some([1, 1, 1, 1])), "control"),
        (encode(true, 0, b"x", Some([1, 1, 1, 1])), "continuation"),
        (
            [
                encode(false, 1, b"a", Some([1, 1, 1, 1])),
                encode(true, 1, b"b", Some([1, 1, 1, 1])),
            ]
            .concat(),
            "before the previous",
        ),
    ];
    for (bytes, want) in cases {
        let mut i = Inspector::new(&scanner, WsLimits::default());
        let mut out = Vec::new();
        let err = i.push(bytes, &mut out).unwrap_err();
        assert_eq!(err.code, close_code::PROTOCOL_ERROR, "{want}");
        assert!(err.reason.contains(want), "{want}: {}", err.reason);
    }
}

#[test]
fn limits_close_with_1009_before_buffering() {
    let scanner = Recorder::new(None);
    let limits = WsLimits {
        max_frame: 1000,
        max_message: 3000,
    };
    let mut i = Inspector::new(&scanner, limits);
    let mut out = Vec::new();
    // Only the header of a huge frame: refused on the header alone.
    let f = encode(true, 2, &vec![0; 5000], Some([9, 9, 9, 9]));
    let err = i.push(&f[..14], &mut out).unwrap_err();
    assert_eq!(err.code, close_code::TOO_BIG);
    // Many allowed frames that add up past the message limit.
    let mut i = Inspector::new(&scanner, limits);
    let mut stream = Vec::new();
    for _ in 0..4 {
        stream.extend(encode(
            false,
            if stream.is_empty() { 2 } else { 0 },
            &[1; 900],
            Some([1, 2, 3, 4]),
        ));
    }
    let err = i.push(&stream, &mut out).unwrap_err();
    assert_eq!(err.code, close_code::TOO_BIG);
    assert!(i.held.len() <= limits.max_message, "{}", i.held.len());
}

#[test]
fn close_frames_carry_a_readable_reason() {
    let c = Close::new(close_code::POLICY, "é".repeat(100));
    let f = c.frame();
    assert_eq!(f[0], 0x88);
    assert!(f.len() <= 2 + 125);
    let frames = decode_all(&f);
    assert_eq!(frames[0].0, 8);
    assert_eq!(&frames[0].2[..2], &1008u16.to_be_bytes());
    assert!(std::str::from_utf8(&frames[0].2[2..]).is_ok());
}

/// One client message: its fragments and the control frames between them.
#[derive(Debug, Clone)]
struct Msg {
    opcode: u8,
    parts: Vec<Vec<u8>>,
    pings: Vec<Option<Vec<u8>>>,
}

fn msg() -> impl Strategy<Value = Msg> {
    (
        prop::sample::select(vec![1u8, 2]),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..5),
    )
        .prop_flat_map(|(opcode, parts)| {
            let n = parts.len();
            (
                Just(opcode),
                Just(parts),
                prop::collection::vec(
                    proptest::option::of(prop::collection::vec(any::<u8>(), 0..20)),
                    n,
                ),
            )
        })
        .prop_map(|(opcode, parts, pings)| Msg {
            opcode,
            parts,
            pings,
        })
}

fn encode_msgs(msgs: &[Msg], masks: &[[u8; 4]]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut k = 0;
    let mut next_mask = || {
        k += 1;
        (!masks.is_empty()).then(|| masks[k % masks.len()])
    };
    for m in msgs {
        for (i, part) in m.parts.iter().enumerate() {
            let last = i + 1 == m.parts.len();
            let op = if i == 0 { m.opcode } else { 0 };
            out.extend(encode(last, op, part, next_mask()));
            if let Some(p) = &m.pings[i] {
                out.extend(encode(true, 9, p, next_mask()));
            }
        }
    }
    out
}

fn chunked(data: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    for c in cuts {
        let end = (at + c).min(data.len());
        out.push(data[at..end].to_vec());
        at = end;
    }
    out.push(data[at..].to_vec());
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// However the bytes are cut into reads, every message reaches the
    /// scanner whole and unmasked, and what goes upstream decodes to the
    /// same messages and control frames (a control frame may move ahead
    /// of the held fragments it was sent between, as RFC 6455 allows).
    #[test]
    fn messages_are_reassembled_and_forwarded_intact(
        msgs in prop::collection::vec(msg(), 1..5),
        masks in prop::collection::vec(any::<[u8; 4]>(), 1..4),
        cuts in prop::collection::vec(1usize..200, 0..40),
    ) {
        let stream = encode_msgs(&msgs, &masks);
        let scanner = Recorder::new(None);
        let mut i = Inspector::new(&scanner, WsLimits { max_frame: 1 << 20, max_message: 1 << 20 });
        let mut out = Vec::new();
        for chunk in chunked(&stream, &cuts) {
            i.push(&chunk, &mut out).unwrap();
        }
        prop_assert_eq!(i.buffered(), 0);
        let data: Vec<Vec<u8>> = scanner.seen.lock().unwrap().iter().filter(|_| true).cloned().collect();
        let want_msgs: Vec<Vec<u8>> = msgs.iter().map(|m| m.parts.concat()).collect();
        let want_pings: Vec<Vec<u8>> = msgs.iter().flat_map(|m| m.pings.iter().flatten().cloned()).collect();
        // The scanner saw every ping and every message.
        prop_assert_eq!(data.len(), want_msgs.len() + want_pings.len());
        let frames = decode_all(&out);
        let mut got_msgs = Vec::new();
        let mut got_pings = Vec::new();
        let mut cur = Vec::new();
        for (op, fin, p) in frames {
            if op == 9 { got_pings.push(p); continue; }
            cur.extend(p);
            if fin { got_msgs.push(std::mem::take(&mut cur)); }
        }
        prop_assert_eq!(got_msgs, want_msgs);
        prop_assert_eq!(got_pings, want_pings);
        // Byte for byte: the output is a permutation of the input frames.
        prop_assert_eq!(out.len(), stream.len());
    }

    /// A message carrying the needle never has a byte of any of its
    /// frames forwarded, wherever the needle falls across fragments.
    #[test]
    fn a_blocked_message_leaves_nothing_behind(
        before in prop::collection::vec(msg(), 0..3),
        split in 0usize..7,
        pad in prop::collection::vec(any::<u8>(), 0..50),
        cuts in prop::collection::vec(1usize..64, 0..40),
    ) {
        let needle: &'static [u8] = b"SECRET";
        let mut secret = pad.clone();
        secret.extend_from_slice(needle);
        let s = split.min(secret.len());
        let bad = Msg { opcode: 1, parts: vec![secret[..s].to_vec(), secret[s..].to_vec()], pings: vec![None, None] };
        let clean: Vec<Msg> = before.into_iter().filter(|m| !m.parts.concat().windows(6).any(|w| w == needle) && !m.pings.iter().flatten().any(|p| p.windows(6).any(|w| w == needle))).collect();
        let mut all = clean.clone();
        all.push(bad);
        let stream = encode_msgs(&all, &[[3, 1, 4, 1]]);
        let scanner = Recorder::new(Some(needle));
        let mut i = Inspector::new(&scanner, WsLimits::default());
        let mut out = Vec::new();
        let mut closed = None;
        for chunk in chunked(&stream, &cuts) {
            if let Err(c) = i.push(&chunk, &mut out) { closed = Some(c); break; }
        }
        let c = closed.expect("blocked");
        prop_assert_eq!(c.code, close_code::POLICY);
        let got: Vec<u8> = decode_all(&out).into_iter().flat_map(|(_, _, p)| p).collect();
        prop_assert!(!got.windows(needle.len()).any(|w| w == needle));
        let clean_len: usize = encode_msgs(&clean, &[[3, 1, 4, 1]]).len();
        prop_assert_eq!(out.len(), clean_len, "only the clean messages left");
    }

    #[test]
    fn the_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64), cuts in prop::collection::vec(1usize..16, 0..8)) {
        let scanner = Recorder::new(None);
        let mut i = Inspector::new(&scanner, WsLimits { max_frame: 4096, max_message: 8192 });
        let mut out = Vec::new();
        for chunk in chunked(&bytes, &cuts) {
            if i.push(&chunk, &mut out).is_err() { break; }
        }
        let _ = Boundary::default().feed(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The boundary tracker agrees with the encoder for any chunking.
    #[test]
    fn boundaries_are_tracked_across_reads(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..70000), 1..4),
        cuts in prop::collection::vec(1usize..5000, 0..30),
    ) {
        let mut stream = Vec::new();
        let mut ends = Vec::new();
        for p in &payloads {
            stream.extend(encode(true, 2, p, None));
            ends.push(stream.len());
        }
        let mut b = Boundary::default();
        let mut at = 0;
        for chunk in chunked(&stream, &cuts) {
            b.feed(&chunk).unwrap();
            at += chunk.len();
            prop_assert_eq!(b.at_boundary(), at == 0 || ends.contains(&at), "at {}", at);
        }
    }
}

// ------------------------------------------------------- server → client

/// Asserts the scanner only ever sees server messages.
struct ServerRecorder(Recorder);

impl MessageScanner for ServerRecorder {
    fn scan(&self, direction: Direction, message: &[u8]) -> Verdict {
        assert_eq!(direction, Direction::ToClient);
        self.0.scan(direction, message)
    }
}

fn down(scanner: &dyn MessageScanner, max_message: usize) -> Downstream<'_> {
    Downstream::new(
        scanner,
        WsLimits {
            max_frame: 1 << 20,
            max_message,
        },
    )
}

#[test]
fn server_protocol_errors_close_with_1002() {
    let scanner = ServerRecorder(Recorder::new(None));
    for (bad, why) in [
        (vec![0xc1, 0x00], "RSV"),
        (vec![0x83, 0x00], "opcode"),
        (encode(false, 9, b"x", None), "control"),
        (encode(true, 0, b"x", None), "continuation"),
        (
            [encode(false, 1, b"a", None), encode(true, 2, b"b", None)].concat(),
            "new message",
        ),
    ] {
        let mut d = down(&scanner, 1 << 20);
        let mut out = Vec::new();
        let e = d.push(&bad, &mut out).expect_err(why);
        assert_eq!(e.code, close_code::PROTOCOL_ERROR, "{why}");
        assert!(e.reason.contains(why), "{why}: {}", e.reason);
    }
}

#[test]
fn a_masked_server_frame_is_judged_unmasked_and_forwarded_as_it_came() {
    let scanner = ServerRecorder(Recorder::new(Some(b"SECRET")));
    let mut d = down(&scanner, 1 << 20);
    let frame = encode(true, 1, b"a SECRET here", Some([9, 8, 7, 6]));
    let mut out = Vec::new();
    let mut closed = None;
    for c in frame.chunks(3) {
        if let Err(e) = d.push(c, &mut out) {
            closed = Some(e);
        }
    }
    assert_eq!(closed.expect("judged unmasked").code, close_code::POLICY);
    let clean = encode(true, 1, b"all fine", Some([9, 8, 7, 6]));
    let mut d = down(&scanner, 1 << 20);
    let mut out = Vec::new();
    d.push(&clean, &mut out).unwrap();
    assert_eq!(out, clean);
}

#[test]
fn a_huge_binary_frame_passes_without_being_held() {
    let scanner = ServerRecorder(Recorder::new(Some(b"SECRET")));
    let mut d = down(&scanner, 1024);
    let payload = vec![b'x'; 300_000];
    let frame = encode(true, 2, &payload, None);
    let mut out = Vec::new();
    for c in frame.chunks(16 * 1024) {
        d.push(c, &mut out).unwrap();
        assert!(d.buffered() <= 14, "binary payload is not buffered");
    }
    assert_eq!(out, frame);
    assert!(d.at_boundary());
    assert!(
        scanner.0.seen.lock().unwrap().is_empty(),
        "binary is not judged"
    );
}

#[test]
fn a_long_text_message_streams_judged_with_a_look_behind() {
    // 1 KiB held at most; the message is 64 KiB in 4 fragments and the
    // needle straddles two reads of the streamed part.
    let scanner = ServerRecorder(Recorder::new(Some(b"SECRET")));
    let mut d = down(&scanner, 1024);
    let mut text = vec![b'a'; 64 * 1024];
    text[40_000..40_006].copy_from_slice(b"SECRET");
    let frames: Vec<u8> = text
        .chunks(16 * 1024)
        .enumerate()
        .flat_map(|(i, c)| encode(i == 3, if i == 0 { 1 } else { 0 }, c, None))
        .collect();
    let mut out = Vec::new();
    let mut closed = None;
    for c in frames.chunks(1003) {
        if let Err(e) = d.push(c, &mut out) {
            closed = Some(e);
            break;
        }
        assert!(
            d.buffered() <= 1024 + LOOK_BEHIND + 14 + 1003,
            "{}",
            d.buffered()
        );
    }
    let c = closed.expect("the needle is found while streaming");
    assert_eq!(c.code, close_code::POLICY);
    // Nothing from the piece holding the needle on was forwarded.
    assert!(!out.windows(6).any(|w| w == b"SECRET"));
    assert!(out.len() < 40_100);
}

#[test]
fn a_blocked_server_message_is_withheld_whole() {
    let scanner = ServerRecorder(Recorder::new(Some(b"SECRET")));
    let mut d = down(&scanner, 1 << 20);
    let stream = [
        encode(true, 1, b"fine", None),
        encode(false, 1, b"first half SEC", None),
        encode(true, 9, b"ping", None),
        encode(true, 0, b"RET second half", None),
    ]
    .concat();
    let mut out = Vec::new();
    let e = d.push(&stream, &mut out).expect_err("blocked");
    assert_eq!(e.code, close_code::POLICY);
    let got = decode_all(&out);
    assert_eq!(
        got,
        vec![(1, true, b"fine".to_vec()), (9, true, b"ping".to_vec())],
        "the clean message and the ping only"
    );
    assert!(d.at_boundary(), "a close frame may follow");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// However the server's bytes are cut into reads, every text message
    /// reaches the scanner whole, binary messages are not judged, and what
    /// reaches the client decodes to the same messages and control frames.
    #[test]
    fn server_messages_are_judged_whole_and_forwarded_intact(
        msgs in prop::collection::vec(msg(), 1..5),
        cuts in prop::collection::vec(1usize..200, 0..40),
    ) {
        let stream = encode_msgs(&msgs, &[]);
        let scanner = ServerRecorder(Recorder::new(None));
        let mut d = down(&scanner, 1 << 20);
        let mut out = Vec::new();
        for chunk in chunked(&stream, &cuts) {
            d.push(&chunk, &mut out).unwrap();
        }
        prop_assert_eq!(d.buffered(), 0);
        prop_assert!(d.at_boundary());
        let seen = scanner.0.seen.lock().unwrap().clone();
        let want_text: Vec<Vec<u8>> = msgs.iter().filter(|m| m.opcode == 1).map(|m| m.parts.concat()).collect();
        prop_assert_eq!(seen, want_text);
        let mut got_msgs = Vec::new();
        let mut got_pings = Vec::new();
        let mut cur = Vec::new();
        for (op, fin, p) in decode_all(&out) {
            if op == 9 { got_pings.push(p); continue; }
            cur.extend(p);
            if fin { got_msgs.push(std::mem::take(&mut cur)); }
        }
        let want_msgs: Vec<Vec<u8>> = msgs.iter().map(|m| m.parts.concat()).collect();
        let want_pings: Vec<Vec<u8>> = msgs.iter().flat_map(|m| m.pings.iter().flatten().cloned()).collect();
        prop_assert_eq!(got_msgs, want_msgs);
        prop_assert_eq!(got_pings, want_pings);
        prop_assert_eq!(out.len(), stream.len());
    }

    #[test]
    fn the_server_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64), cuts in prop::collection::vec(1usize..16, 0..8)) {
        let scanner = Recorder::new(None);
        let mut d = down(&scanner, 8192);
        let mut out = Vec::new();
        for chunk in chunked(&bytes, &cuts) {
            if d.push(&chunk, &mut out).is_err() { break; }
        }
    }
}
