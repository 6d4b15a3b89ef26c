use bytes::Bytes;

use super::Injector;
use crate::pktline::encode;

fn run(chunks: &[&[u8]]) -> Vec<u8> {
    let mut inj = Injector {
        pending: Default::default(),
        insert: Some(encode(b"\x02warn\n")),
        done: false,
    };
    let mut out = Vec::new();
    for c in chunks {
        out.extend_from_slice(&inj.push(Bytes::copy_from_slice(c)));
    }
    out.extend_from_slice(&inj.pending);
    out
}

#[test]
fn inserts_after_packfile_header_across_chunk_splits() {
    let mut resp = encode(b"acknowledgments\n");
    resp.extend(encode(b"NAK\n"));
    resp.extend(b"0001");
    resp.extend(encode(b"packfile\n"));
    resp.extend(encode(b"\x01PACKDATA"));
    resp.extend(b"0000");
    let mut want = encode(b"acknowledgments\n");
    want.extend(encode(b"NAK\n"));
    want.extend(b"0001");
    want.extend(encode(b"packfile\n"));
    want.extend(encode(b"\x02warn\n"));
    want.extend(encode(b"\x01PACKDATA"));
    want.extend(b"0000");
    for split in 0..resp.len() {
        assert_eq!(
            run(&[&resp[..split], &resp[split..]]),
            want,
            "split at {split}"
        );
    }
}

#[test]
fn responses_without_a_pack_pass_through() {
    let mut resp = encode(b"version 2\n");
    resp.extend(b"0000");
    assert_eq!(run(&[&resp]), resp);
    assert_eq!(run(&[b"not pkt lines at all"]), b"not pkt lines at all");
}

#[test]
fn inserts_before_the_first_banded_line_of_a_v0_fetch() {
    let mut resp = encode(b"shallow 0123456789012345678901234567890123456789\n");
    resp.extend(encode(b"NAK\n"));
    resp.extend(encode(b"\x02Enumerating objects: 3, done.\n"));
    resp.extend(encode(b"\x01PACKDATA"));
    resp.extend(b"0000");
    let mut want = encode(b"shallow 0123456789012345678901234567890123456789\n");
    want.extend(encode(b"NAK\n"));
    want.extend(encode(b"\x02warn\n"));
    want.extend(encode(b"\x02Enumerating objects: 3, done.\n"));
    want.extend(encode(b"\x01PACKDATA"));
    want.extend(b"0000");
    for split in 0..resp.len() {
        assert_eq!(
            run(&[&resp[..split], &resp[split..]]),
            want,
            "split at {split}"
        );
    }
}

#[test]
fn a_v0_fetch_without_side_band_passes_through() {
    // After NAK the raw pack follows: "PACK" is not a pkt-line length.
    let mut resp = encode(b"NAK\n");
    resp.extend(b"PACK\x00\x00\x00\x02rest");
    assert_eq!(run(&[&resp]), resp);
    // A ref advertisement has no banded line either.
    let mut adv = encode(b"# service=git-upload-pack\n");
    adv.extend(b"0000");
    adv.extend(encode(
        b"0123456789012345678901234567890123456789 HEAD\x00side-band-64k\n",
    ));
    adv.extend(b"0000");
    assert_eq!(run(&[&adv]), adv);
}

fn refusal_body(commands: &[u8], message: &str) -> Vec<u8> {
    let resp = super::refused_push(commands, message);
    assert_eq!(
        resp.headers()[http::header::CONTENT_TYPE],
        "application/x-git-receive-pack-result"
    );
    let body = resp.into_body();
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(http_body_util::BodyExt::collect(body))
        .expect("body")
        .to_bytes()
        .to_vec()
}

fn commands(caps: &str) -> Vec<u8> {
    let (a, b) = ("a".repeat(40), "b".repeat(40));
    let mut c = encode(format!("{a} {b} refs/heads/main\0{caps}\n").as_bytes());
    c.extend(encode(format!("{a} {b} refs/heads/dev\n").as_bytes()));
    c.extend(b"0000");
    c
}

#[test]
fn a_refusal_speaks_side_band_and_report_status() {
    let got = refusal_body(
        &commands("report-status side-band-64k agent=git/2"),
        "push refused: too big",
    );
    let mut report = encode(b"unpack refused by git-gate (see above)\n");
    report.extend(encode(b"ng refs/heads/main refused by git-gate\n"));
    report.extend(encode(b"ng refs/heads/dev refused by git-gate\n"));
    report.extend(b"0000");
    let mut want = encode(b"\x02git-gate: push refused: too big\n");
    let mut banded = vec![1u8];
    banded.extend(&report);
    want.extend(encode(&banded));
    want.extend(b"0000");
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
}

#[test]
fn without_side_band_the_report_carries_the_message() {
    let got = refusal_body(&commands("report-status"), "push refused: too big");
    let mut want = encode(b"unpack push refused: too big\n");
    want.extend(encode(b"ng refs/heads/main refused by git-gate\n"));
    want.extend(encode(b"ng refs/heads/dev refused by git-gate\n"));
    want.extend(b"0000");
    assert_eq!(got, want);
}

proptest::proptest! {
    /// Whatever the command list holds, the refusal is whole pkt-lines.
    #[test]
    fn any_command_list_gives_a_well_formed_refusal(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
        let got = refusal_body(&data, "no");
        proptest::prop_assert!(crate::pktline::check_all(&got).is_ok());
    }
}
