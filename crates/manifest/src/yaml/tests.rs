use super::*;

#[test]
fn nodes_carry_positions() {
    let doc = parse_document("a:\n  b: [1, x]\n", "f.yaml").unwrap();
    let Value::Map(entries) = &doc.value else {
        panic!("not a map: {doc:?}")
    };
    let (k, v) = &entries[0];
    assert_eq!(k.value, Value::Str("a".into()));
    assert_eq!((k.line, k.column), (1, 1));
    let Value::Map(inner) = &v.value else {
        panic!()
    };
    assert_eq!(inner[0].1.line, 2);
}

#[test]
fn json_is_accepted() {
    let doc = parse_document(r#"{"a": [true, null, "s"]}"#, "f.json").unwrap();
    assert!(matches!(doc.value, Value::Map(_)));
}

#[test]
fn duplicate_keys_are_errors_with_position() {
    let err = parse_document("a: 1\na: 2\n", "f.yaml").unwrap_err();
    let d = &err.diagnostics()[0];
    assert_eq!(d.file, "f.yaml");
    assert!(d.line.is_some(), "{d}");
}

#[test]
fn syntax_errors_name_file_and_line() {
    let err = parse_document("a: [1, 2\nb: c\n", "bad.yaml").unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("bad.yaml:"), "{text}");
    assert!(text.contains("not valid YAML"), "{text}");
}

#[test]
fn unknown_keys_suggest_the_close_one() {
    let doc = parse_document("hots: x\n", "f.yaml").unwrap();
    let mut c = Checker::new("f.yaml");
    c.map(&KeyPath::root(), &doc, &["host", "roles"], &[]);
    let err = c.finish(()).unwrap_err().to_string();
    assert!(err.contains("did you mean \"host\""), "{err}");
    assert!(err.contains("f.yaml:1:1: hots:"), "{err}");
}

#[test]
fn key_paths_render_like_the_docs() {
    let p = KeyPath::root()
        .key("agents")
        .key("dev")
        .key("routes")
        .index(2)
        .key("auth");
    assert_eq!(p.as_str(), "agents.dev.routes[2].auth");
    assert_eq!(KeyPath::root().key("a b").as_str(), "\"a b\"");
}
