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
