use super::{Update, parse_updates};

#[test]
fn parses_pre_receive_input() {
    let z = "0".repeat(40);
    let a = "a".repeat(40);
    let input = format!("{z} {a} refs/heads/main\n{a} {z} refs/heads/old\n");
    let got = parse_updates(input.as_bytes()).expect("valid");
    assert_eq!(
        got[0],
        Update {
            old: z.clone(),
            new: a.clone(),
            refname: "refs/heads/main".into()
        }
    );
    assert_eq!(got.len(), 2);
}

#[test]
fn rejects_malformed_lines() {
    let a = "a".repeat(40);
    for line in [
        "abc def refs/heads/x".to_owned(),
        format!("{a} {a} --format=x"),
        format!("{a} {a} heads/main"),
        format!("{a} {a} refs/"),
        format!("{a} {a} refs/heads/a\x1b[31m"),
    ] {
        let err = parse_updates(format!("{line}\n").as_bytes()).expect_err(&line);
        assert!(err.contains("malformed ref update line"), "{err}");
    }
}
