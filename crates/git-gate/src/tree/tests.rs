use proptest::prelude::*;

use super::for_each_entry;

fn entries(data: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for_each_entry(data, 20, |m, n| {
        out.push((
            String::from_utf8_lossy(m).into_owned(),
            String::from_utf8_lossy(n).into_owned(),
        ))
    })
    .map_err(|e| e.to_string())?;
    Ok(out)
}

fn entry(mode: &str, name: &[u8]) -> Vec<u8> {
    let mut e = format!("{mode} ").into_bytes();
    e.extend_from_slice(name);
    e.push(0);
    e.extend_from_slice(&[0xab; 20]);
    e
}

#[test]
fn reads_every_entry() {
    let mut t = entry("100644", b"README.md");
    t.extend(entry("40000", b"src"));
    t.extend(entry("160000", b"vendor lib"));
    assert_eq!(
        entries(&t).expect("valid"),
        vec![
            ("100644".into(), "README.md".into()),
            ("40000".into(), "src".into()),
            ("160000".into(), "vendor lib".into()),
        ]
    );
    assert_eq!(entries(b"").expect("empty tree"), vec![]);
}

#[test]
fn malformed_trees_are_errors() {
    for (bad, why) in [
        (&b"100644 a"[..], "name terminator"),
        (&b"100644 a\0\xab\xab"[..], "object id"),
        (&b"a\0"[..], "mode"),
        (&b"1x4 a\0"[..], "invalid mode"),
        (&b"100644 \0"[..], "empty name"),
    ] {
        let err = entries(bad).expect_err("malformed");
        assert!(err.contains(why), "{bad:?}: {err}");
    }
}

proptest! {
    /// Any bytes: entries or an error, never a panic; a valid tree cut
    /// anywhere short is an error, never a shorter list read as whole.
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = entries(&data);
    }

    #[test]
    fn truncated_trees_are_errors(
        names in proptest::collection::vec("[a-zA-Z0-9._-]{1,12}", 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut tree = Vec::new();
        let mut boundaries = vec![0];
        for n in &names {
            tree.extend(entry("100644", n.as_bytes()));
            boundaries.push(tree.len());
        }
        let at = cut.index(tree.len());
        let got = entries(&tree[..at]);
        match boundaries.iter().position(|&b| b == at) {
            // A cut at an entry boundary is a valid shorter tree.
            Some(k) => prop_assert_eq!(got.map(|e| e.len()), Ok(k)),
            None => prop_assert!(got.is_err(), "cut at {} of {}: {:?}", at, tree.len(), got),
        }
        prop_assert_eq!(entries(&tree).map(|e| e.len()), Ok(names.len()));
    }
}
