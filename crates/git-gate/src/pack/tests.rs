use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use proptest::prelude::*;

use super::{Inspector, Limits, PackError};

const ROOMY: Limits = Limits {
    max_object_bytes: 1 << 30,
    max_total_bytes: 1 << 32,
};

fn git(dir: &std::path::Path, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new("git")
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "a")
        .env("GIT_AUTHOR_EMAIL", "a@b.invalid")
        .env("GIT_COMMITTER_NAME", "a")
        .env("GIT_COMMITTER_EMAIL", "a@b.invalid")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run git");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("feed git");
    let out = child.wait_with_output().expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Real packs made by git from one repository: (ofs-delta pack, ref-delta
/// pack, object count, sum of the objects' sizes).
fn real() -> &'static (Vec<u8>, Vec<u8>, u32, u64) {
    static REAL: OnceLock<(Vec<u8>, Vec<u8>, u32, u64)> = OnceLock::new();
    REAL.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        git(d, &["init", "--quiet", "."], b"");
        // Versions of one big file (deltas against each other), small
        // files, an empty file, nested trees.
        let mut big = String::new();
        for i in 0..2_000 {
            big.push_str(&format!("line {i} of a file that changes a little\n"));
        }
        for round in 0..4 {
            big.push_str(&format!("round {round}\n"));
            std::fs::write(d.join("big.txt"), &big).expect("write");
            std::fs::create_dir_all(d.join(format!("a/b{round}"))).expect("mkdir");
            std::fs::write(d.join(format!("a/b{round}/f.txt")), format!("{round}\n"))
                .expect("write");
            std::fs::write(d.join("empty"), "").expect("write");
            git(d, &["add", "-A"], b"");
            git(
                d,
                &["commit", "--quiet", "-m", &format!("round {round}")],
                b"",
            );
        }
        let objects = git(d, &["rev-list", "--objects", "--all"], b"");
        let ofs = git(
            d,
            &["pack-objects", "--stdout", "--delta-base-offset", "-q"],
            &objects,
        );
        let refd = git(d, &["pack-objects", "--stdout", "-q"], &objects);
        let sizes = git(
            d,
            &[
                "cat-file",
                "--batch-check=%(objectsize)",
                "--batch-all-objects",
            ],
            b"",
        );
        let sizes: Vec<u64> = String::from_utf8_lossy(&sizes)
            .lines()
            .map(|l| l.parse().expect("size"))
            .collect();
        // The fixture must contain deltas, or it tests less than it claims.
        let file = d.join("check.pack");
        std::fs::write(&file, &ofs).expect("write");
        let file = file.to_str().expect("utf-8");
        git(d, &["index-pack", file], b"");
        let shown = git(d, &["verify-pack", "-v", file], b"");
        assert!(
            String::from_utf8_lossy(&shown).contains("chain length = 1"),
            "no deltas in the fixture pack"
        );
        (ofs, refd, sizes.len() as u32, sizes.iter().sum())
    })
}

fn inspect(pack: &[u8], limits: Limits, chunks: &[usize]) -> Result<(u32, u64), PackError> {
    let mut ins = Inspector::new(limits, 20);
    let mut rest = pack;
    for &c in chunks {
        let (a, b) = rest.split_at(c.min(rest.len()));
        ins.feed(a)?;
        rest = b;
    }
    ins.feed(rest)?;
    ins.finish()?;
    Ok((ins.object_count(), ins.inflated_total()))
}

#[test]
fn real_packs_pass_with_their_inflated_total() {
    let (ofs, refd, count, total) = real();
    assert_eq!(inspect(ofs, ROOMY, &[]), Ok((*count, *total)));
    assert_eq!(inspect(refd, ROOMY, &[]), Ok((*count, *total)));
}

#[test]
fn a_blob_declaring_gigabytes_is_refused_from_its_header_alone() {
    let mut pack = b"PACK\0\0\0\x02\0\0\0\x01".to_vec();
    // Type 3 (blob), size 4 GiB: 0b1_011_0000, then 7-bit groups.
    let size: u64 = 4 << 30;
    let mut first = 0x80 | (3 << 4) | (size & 0x0f) as u8;
    let mut rest = size >> 4;
    let mut header = vec![];
    loop {
        header.push(first);
        if rest == 0 {
            break;
        }
        first = (rest & 0x7f) as u8 | if rest >> 7 > 0 { 0x80 } else { 0 };
        rest >>= 7;
    }
    *header.last_mut().expect("byte") &= 0x7f;
    pack.extend_from_slice(&header);
    let mut ins = Inspector::new(ROOMY, 20);
    assert_eq!(
        ins.feed(&pack),
        Err(PackError::ObjectTooLarge {
            index: 1,
            kind: "blob",
            size,
            limit: 1 << 30
        })
    );
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).expect("compress");
    e.finish().expect("compress")
}

fn varint(mut n: u64) -> Vec<u8> {
    let mut out = vec![];
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

/// A pack of one object: `kind` (3 blob, 7 ref-delta), declared size,
/// payload inflated.
fn one_object(kind: u8, declared: u64, payload: &[u8]) -> Vec<u8> {
    let mut pack = b"PACK\0\0\0\x02\0\0\0\x01".to_vec();
    let mut rest = declared >> 4;
    let mut b = (kind << 4) | (declared & 0x0f) as u8;
    loop {
        if rest == 0 {
            pack.push(b);
            break;
        }
        pack.push(b | 0x80);
        b = (rest & 0x7f) as u8;
        rest >>= 7;
    }
    if kind == 7 {
        pack.extend_from_slice(&[0x11; 20]);
    }
    pack.extend(zlib(payload));
    pack.extend_from_slice(&[0; 20]);
    pack
}

#[test]
fn a_delta_whose_result_is_huge_is_refused() {
    // Base 10 bytes, result 2^35 bytes, then a copy instruction.
    let mut delta = varint(10);
    delta.extend(varint(1 << 35));
    delta.extend_from_slice(&[0x90, 0x0a]);
    let pack = one_object(7, delta.len() as u64, &delta);
    let got = inspect(&pack, ROOMY, &[]);
    assert!(
        matches!(got, Err(PackError::ObjectTooLarge { kind: "delta", size, .. }) if size == 1 << 35),
        "{got:?}"
    );
    // Byte by byte too: the sizes may arrive one inflated byte at a time.
    let chunks = vec![1; pack.len()];
    assert_eq!(inspect(&pack, ROOMY, &chunks), got);
}

#[test]
fn the_inflated_total_is_capped() {
    let (ofs, _, _, total) = real();
    let limits = Limits {
        max_object_bytes: 1 << 30,
        max_total_bytes: total - 1,
    };
    let got = inspect(ofs, limits, &[]);
    assert!(
        matches!(got, Err(PackError::TotalTooLarge { limit, .. }) if limit == total - 1),
        "{got:?}"
    );
}

#[test]
fn malformed_packs_are_refused() {
    let liar = one_object(3, 10, &[b'x'; 100]);
    let short = one_object(3, 200, &[b'x'; 100]);
    let mut after = real().0.clone();
    after.push(0);
    for (pack, why) in [
        (&b"PACX\0\0\0\x02\0\0\0\x01"[..], "PACK"),
        (&b"PACK\0\0\0\x04\0\0\0\x01"[..], "version 4"),
        (&b"PACK\0\0\0\x02\0\0\0\x01\x50"[..], "type 5"),
        (&liar[..], "past its declared"),
        (&short[..], "not its declared"),
        (&after[..], "after the pack's trailer"),
        (
            &b"PACK\0\0\0\x02\0\0\0\x01\xb0\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"[..],
            "longer than",
        ),
    ] {
        let err = inspect(pack, ROOMY, &[]).expect_err(why);
        assert!(err.to_string().contains(why), "{why}: {err}");
    }
}

proptest! {
    /// Any split of a real pack into chunks gives the same answer.
    #[test]
    fn chunking_does_not_change_the_answer(cuts in proptest::collection::vec(0usize..4096, 0..40), refd in any::<bool>()) {
        let (ofs, r, count, total) = real();
        let pack = if refd { r } else { ofs };
        prop_assert_eq!(inspect(pack, ROOMY, &cuts), Ok((*count, *total)));
    }

    /// A real pack cut short is never accepted.
    #[test]
    fn truncated_packs_are_refused(at in any::<prop::sample::Index>()) {
        let pack = &real().0;
        let at = at.index(pack.len());
        prop_assert!(inspect(&pack[..at], ROOMY, &[]).is_err());
    }

    /// Damaged packs and arbitrary bytes: an answer, never a panic.
    #[test]
    fn damaged_packs_never_panic(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut pack = real().0.clone();
        for (i, b) in flips {
            let i = i.index(pack.len());
            pack[i] ^= b;
        }
        let _ = inspect(&pack, ROOMY, &[7, 300]);
    }

    #[test]
    fn arbitrary_bytes_never_panic(mut data in proptest::collection::vec(any::<u8>(), 0..300), pack_header in any::<bool>()) {
        if pack_header {
            let mut p = b"PACK\0\0\0\x02\0\0\0\x03".to_vec();
            p.append(&mut data);
            data = p;
        }
        let _ = inspect(&data, ROOMY, &[5]);
    }
}
