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
