use http::{HeaderMap, HeaderValue};

use super::*;

fn values(kind: &BodyKind, body: &str) -> Option<String> {
    joined_values(kind, body.as_bytes()).map(|(j, _)| String::from_utf8_lossy(&j).into_owned())
}

#[test]
fn head_doc_has_a_line_per_place_and_joins() {
    let mut h = HeaderMap::new();
    h.insert("user-agent", HeaderValue::from_static("curl/8"));
    h.insert("x-a", HeaderValue::from_static("AB"));
    h.insert("x-b", HeaderValue::from_static("CD"));
    let doc = head_doc("/p/one%20two/three?a=1%2B1&b=x+y", &h);
    let text = String::from_utf8(doc.bytes.clone()).expect("utf8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "/p/one%20two/three?a=1%2B1&b=x+y",
            "pone two",
            "pone twothree",
            "one twothree",
            "a=1+1",
            "b=x y",
            "1+1x y",
            "user-agent: curl/8",
            "x-a: AB",
            "x-b: CD",
            "ABCD",
        ]
    );
    let at = |s: &str| text.find(s).expect("present");
    assert_eq!(doc.place_at(at("pone")), Place::UrlJoined);
    assert_eq!(doc.place_at(at("b=x")), Place::Url);
    assert_eq!(doc.place_at(at("x-b")), Place::Header("x-b".into()));
    assert_eq!(doc.place_at(at("ABCD")), Place::HeadersJoined);
}

#[test]
fn body_kinds_from_content_type() {
    let kind = |ct: &str| {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_str(ct).expect("value"));
        BodyKind::of(&h)
    };
    assert_eq!(kind("application/json; charset=utf-8"), BodyKind::Json);
    assert_eq!(kind("application/vnd.api+json"), BodyKind::Json);
    assert_eq!(kind("application/x-www-form-urlencoded"), BodyKind::Form);
    assert_eq!(
        kind("multipart/form-data; boundary=\"xyz\""),
        BodyKind::Multipart(b"xyz".to_vec())
    );
    assert_eq!(kind("multipart/form-data"), BodyKind::Plain);
    assert_eq!(kind("text/plain"), BodyKind::Plain);
    assert_eq!(BodyKind::of(&HeaderMap::new()), BodyKind::Plain);
}

#[test]
fn json_values_skip_keys_and_unescape() {
    let j = r#"{"a": "AK", "nested": {"b": "IA\u0041", "list": ["x\"y", 3, "z"]}}"#;
    assert_eq!(
        values(&BodyKind::Json, j).as_deref(),
        Some("AKIAA\nAKIAAx\"y\nAKIAAx\"yz\nIAAx\"y\nIAAx\"yz\nx\"yz\n")
    );
    // Starting mid-string resynchronises at the next value.
    let tail = r#"ng value", "k": "v1", "k2": "v2"}"#;
    assert_eq!(values(&BodyKind::Json, tail).as_deref(), Some("v1v2\n"));
    assert_eq!(values(&BodyKind::Json, r#"{"only": "one"}"#), None);
}

#[test]
fn form_and_multipart_values() {
    assert_eq!(
        values(&BodyKind::Form, "a=AK%49A&b=x+y&flag").as_deref(),
        Some("AKIAx y\n")
    );
    let mp = "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nfirst\r\n--B\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\nsecond\r\n--B--\r\n";
    assert_eq!(
        values(&BodyKind::Multipart(b"B".to_vec()), mp).as_deref(),
        Some("firstsecond\n")
    );
    let long = format!("a=1&b={}", "x".repeat(JOIN_MAX_VALUE + 1));
    assert_eq!(
        values(&BodyKind::Form, &long),
        None,
        "a long value does not join"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    #[test]
    fn field_parsers_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
        for kind in [BodyKind::Json, BodyKind::Form, BodyKind::Multipart(b"B".to_vec()), BodyKind::Plain] {
            if let Some((joined, map)) = joined_values(&kind, &data) {
                for (j, src) in map {
                    proptest::prop_assert!(j <= joined.len() && src <= data.len());
                }
            }
        }
    }

    #[test]
    fn head_doc_places_every_offset(path in "/[ -~]{0,200}", value in "[ -~]{0,64}") {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert("x-a", v.clone());
            h.insert("x-b", v);
        }
        let doc = head_doc(&path, &h);
        for at in 0..doc.bytes.len() {
            let _ = doc.place_at(at);
        }
    }

    #[test]
    fn a_key_split_anywhere_in_two_json_values_is_joined(cut in 1usize..19) {
        let key = format!("{}{}", "AKIA", "QWERTYUIOPASDFGH");
        let body = format!("{{\"a\": \"{}\", \"b\": \"{}\"}}", &key[..cut], &key[cut..]);
        let (joined, _) = joined_values(&BodyKind::Json, body.as_bytes()).expect("two values");
        proptest::prop_assert!(joined.windows(key.len()).any(|w| w == key.as_bytes()));
    }
}
