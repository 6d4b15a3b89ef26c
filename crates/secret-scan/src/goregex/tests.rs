use super::translate;

fn check(go: &str, expected: &str) {
    assert_eq!(translate(go), expected, "translating {go:?}");
    regex::bytes::RegexBuilder::new(&translate(go))
        .unicode(false)
        .build()
        .expect("translated regex compiles");
}

#[test]
fn repetitions_are_kept() {
    check(r"a{2}", r"a{2}");
    check(r"[a-z]{2,}", r"[a-z]{2,}");
    check(r"(ab){1,5}?x", r"(ab){1,5}?x");
}

#[test]
fn literal_braces_are_escaped() {
    check(r"\${[A-Z]+}", r"\$\{[A-Z]+\}");
    check(r"{", r"\{");
    check(r"a{x}", r"a\{x\}");
    check(r"({2})", r"(\{2\})");
    check(r"[{}]x", r"[{}]x");
}

#[test]
fn quoted_spans_become_escaped_literals() {
    check(r"\Qa.b*\Ec", r"a\.b\*c");
}

#[test]
fn classes_with_leading_bracket_survive() {
    check(r"[]a]", r"[\]a]");
    check(r"[^]a]+", r"[^\]a]+");
}

#[test]
fn gitleaks_idioms_compile() {
    // Shapes that recur in gitleaks configs: escaped slashes and backticks
    // (\x60), `\\[nr]` terminators, lazy bounded prefixes, `:{1,3}=`.
    for go in [
        r#"(?i)[\w.-]{0,50}?(?:acme)(?:[ \t\w.-]{0,20})[\s'"]{0,3}(?:=|>|:{1,3}=|\|\||:|=>|\?=|,)[\x60'"\s=]{0,5}([a-z0-9_-]{32})(?:[\x60'"\s;]|\\[nr]|$)"#,
        r#"(?i)\b(ey[a-zA-Z0-9]{17,}\.ey[a-zA-Z0-9\/\\_-]{17,}\.(?:[a-zA-Z0-9\/\\_-]{10,}={0,2})?)(?:[\x60'"\s;]|\\[nr]|$)"#,
        r#"-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----[\s\S-]{64,}?KEY(?: BLOCK)?-----"#,
        r#"(?i)(?:^|[^\w])(\$\{[A-Z_]+\}|\{\{ *\.?[a-z_]+ *\}\})"#,
    ] {
        let t = translate(go);
        assert!(
            regex::bytes::RegexBuilder::new(&t)
                .unicode(false)
                .build()
                .is_ok(),
            "{go:?} → {t:?}"
        );
    }
}
