#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use manifest::queue::{Outcome, ProposalId, QUEUE_FORMAT_VERSION};

use super::*;

fn args(v: Value) -> JsonObject {
    match v {
        Value::Object(m) => m,
        _ => panic!("test arguments must be an object"),
    }
}

/// Runs `egress_block` and returns the error text (or "ok").
fn egress_err(v: Value) -> String {
    match egress_block(Some(&args(v))) {
        Ok(_) => "ok".into(),
        Err(e) => e,
    }
}

#[test]
fn egress_block_normalises_a_valid_route() {
    let ask = egress_block(Some(&args(json!({
        "host": "API.Example.com",
        "path_allowlist": ["/v1/", "/v1/"],
        "auth": {"scheme": "bearer", "token_ref": "EXAMPLE_TOKEN"},
        "justification": "  fetch the docs  ",
    }))))
    .unwrap();
    assert_eq!(ask.justification, "fetch the docs");
    let ProposalRequest::Egress(req) = ask.request else {
        panic!("not an egress request");
    };
    assert_eq!(req.host, "api.example.com");
    assert_eq!(req.path_allowlist, vec!["/v1/".to_string()]);
    let auth = req.auth.unwrap();
    assert_eq!(auth.token_ref, "EXAMPLE_TOKEN");
    // The scheme is stored in its canonical spelling.
    assert_eq!(
        Some(auth.scheme.as_str()),
        manifest::AuthScheme::parse("bearer").map(|a| a.as_str())
    );
}

#[test]
fn egress_block_rejects_bad_input_with_precise_messages() {
    let cases: &[(Value, &str)] = &[
        (json!({"justification": "x"}), "missing field `host`"),
        (json!({"host": "a.com"}), "missing field `justification`"),
        (
            json!({"host": "a.com", "justification": "   "}),
            "justification: must not be empty",
        ),
        (
            json!({"host": "https://a.com", "justification": "x"}),
            "has a scheme",
        ),
        (
            json!({"host": "10.0.0.1", "justification": "x"}),
            "IP literal",
        ),
        (json!({"host": "*", "justification": "x"}), "bare wildcard"),
        (
            json!({"host": "a.com", "path_allowlist": ["v1/"], "justification": "x"}),
            "path_allowlist[0]",
        ),
        (
            json!({"host": "a.com", "auth": {"scheme": "Digest", "token_ref": "T"}, "justification": "x"}),
            "unknown auth scheme \"Digest\"",
        ),
        (
            json!({"host": "a.com", "auth": {"scheme": "Bearer", "token_ref": "ghp_secret value"}, "justification": "x"}),
            "auth.token_ref",
        ),
        (
            json!({"host": "a.com", "justification": "x", "hots": 1}),
            "unknown field `hots`",
        ),
        (json!({"host": 5, "justification": "x"}), "invalid type"),
    ];
    for (input, want) in cases {
        let got = egress_err(input.clone());
        assert!(got.starts_with("egress-block: "), "{input}: {got}");
        assert!(got.contains(want), "{input}: expected {want:?} in {got:?}");
    }
    let long = "x".repeat(MAX_JUSTIFICATION_CHARS + 1);
    assert!(egress_err(json!({"host": "a.com", "justification": long})).contains("too long"));
    let many: Vec<String> = (0..=MAX_PATHS).map(|i| format!("/p{i}/")).collect();
    assert!(
        egress_err(json!({"host": "a.com", "path_allowlist": many, "justification": "x"}))
            .contains("too many")
    );
    assert!(egress_block(None).unwrap_err().contains("missing field"));
}

#[test]
fn capability_block_checks_size_emptiness_and_no_op() {
    let ok = capability_block(
        Some(&args(
            json!({"dockerfile": "FROM debian\nRUN true\n", "justification": "need jq"}),
        )),
        Some("FROM debian\n"),
    );
    assert!(ok.is_ok());
    let same = capability_block(
        Some(&args(
            json!({"dockerfile": "FROM debian\n\n", "justification": "x"}),
        )),
        Some("FROM debian\n"),
    )
    .unwrap_err();
    assert!(same.contains("identical"), "{same}");
    let empty = capability_block(
        Some(&args(json!({"dockerfile": " \n", "justification": "x"}))),
        None,
    )
    .unwrap_err();
    assert!(empty.contains("must not be empty"), "{empty}");
    let big = "#".repeat(MAX_DOCKERFILE_BYTES + 1);
    let e = capability_block(
        Some(&args(json!({"dockerfile": big, "justification": "x"}))),
        None,
    )
    .unwrap_err();
    assert!(e.contains("too large"), "{e}");
    let e = capability_block(
        Some(&args(json!({"dockerfile": "FROM x", "justification": ""}))),
        None,
    )
    .unwrap_err();
    assert!(e.contains("justification"), "{e}");
}

#[test]
fn pipelock_and_status_validate() {
    let ask = pipelock_block(Some(&args(
        json!({"host": "Pypi.org", "justification": "pip"}),
    )))
    .unwrap();
    assert_eq!(
        ask.request,
        ProposalRequest::Pipelock {
            host: "pypi.org".into()
        }
    );
    assert!(
        pipelock_block(Some(&args(
            json!({"host": "a.com:443", "justification": "x"})
        )))
        .unwrap_err()
        .contains("port")
    );
    assert_eq!(
        proposal_status(Some(&args(json!({"id": "abc-1"}))))
            .unwrap()
            .as_str(),
        "abc-1"
    );
    assert!(
        proposal_status(Some(&args(json!({"id": "../x"}))))
            .unwrap_err()
            .contains("invalid proposal id")
    );
    assert!(
        no_args(LIST_EGRESS_ROUTES, Some(&args(json!({"x": 1}))))
            .unwrap_err()
            .contains("unknown field")
    );
    assert!(no_args(LIST_EGRESS_ROUTES, None).is_ok());
}

#[test]
fn tool_list_is_the_contract() {
    let names = |pipelock| {
        list(pipelock, 300)
            .into_iter()
            .map(|t| t.name.into_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(false),
        [
            "egress-block",
            "list-egress-routes",
            "capability-block",
            "proposal-status"
        ]
    );
    assert_eq!(
        names(true),
        [
            "egress-block",
            "list-egress-routes",
            "capability-block",
            "pipelock-block",
            "proposal-status"
        ]
    );
    for t in list(true, 120) {
        let d = t.description.unwrap_or_default();
        assert!(d.len() > 80, "{} has a thin description", t.name);
        assert_eq!(
            t.input_schema.get("type"),
            Some(&json!("object")),
            "{}",
            t.name
        );
    }
    let egress = &list(false, 120)[0];
    assert!(
        egress
            .description
            .as_deref()
            .unwrap_or_default()
            .contains("120 seconds")
    );
}

#[test]
fn replies_name_the_outcome_and_next_step() {
    let d = Decision {
        version: QUEUE_FORMAT_VERSION,
        id: ProposalId::parse("p-1").unwrap(),
        outcome: Outcome::Approved,
        note: String::new(),
        decided_at: "2026-01-01T00:00:00Z".parse().unwrap(),
        diff: Some("+  - host: a.com\n".into()),
    };
    let r = decided(EGRESS_BLOCK, &d);
    assert!(r.text.starts_with("Approved (proposal p-1)"), "{}", r.text);
    assert!(r.text.contains("retry your request"));
    assert!(r.text.contains("+  - host: a.com"));
    assert_eq!(r.structured["status"], "approved");
    let rejected = Decision {
        outcome: Outcome::Rejected,
        note: "use the mirror".into(),
        diff: None,
        ..d
    };
    let r = decided(EGRESS_BLOCK, &rejected);
    assert!(
        r.text.contains("Rejected") && r.text.contains("use the mirror"),
        "{}",
        r.text
    );
    assert_eq!(r.structured["status"], "rejected");
}

#[test]
fn terminal_spoofing_characters_are_refused() {
    for (bad, code) in [
        ("ok\u{1b}[2J", "U+001B"),
        ("line\roverwrite", "U+000D"),
        ("abc\u{202E}fed", "U+202E"),
    ] {
        let e = egress_err(json!({"host": "a.com", "justification": bad}));
        assert!(
            e.contains("justification") && e.contains(code),
            "{bad:?}: {e}"
        );
        let e = capability_block(
            Some(&args(
                json!({"dockerfile": format!("FROM x\n{bad}"), "justification": "j"}),
            )),
            None,
        )
        .unwrap_err();
        assert!(e.contains("dockerfile") && e.contains(code), "{bad:?}: {e}");
    }
    assert_eq!(
        egress_err(json!({"host": "a.com", "justification": "two\nlines\tand a tab"})),
        "ok"
    );
}
