use manifest::{Manifest, RemotesFile, RouteTable, parse_markdown_agent};
use proptest::prelude::*;

/// Keys a manifest or routes file may (or may almost) contain, so generated
/// documents reach deep into the validators.
const KEYS: &[&str] = &[
    "version",
    "agents",
    "dev",
    "bottle",
    "egress",
    "allowlist",
    "routes",
    "host",
    "path_allowlist",
    "auth",
    "scheme",
    "token_ref",
    "token_env",
    "header",
    "role",
    "roles",
    "git",
    "name",
    "upstream",
    "branches",
    "allow",
    "protected",
    "supervise",
    "pipelock",
    "dlp_action",
    "allow_ip_literals",
    "prompt",
    "skills",
    "image",
    "dockerfile",
    "runtime",
    "cred_proxy",
    "remotes",
    "username",
    "description",
    "auth_scheme",
    "auth_header",
];

const SCALARS: &[&str] = &[
    "1",
    "2",
    "true",
    "no",
    "null",
    "~",
    "\"\"",
    "a.com",
    "\"*.a.com\"",
    "\"*\"",
    "10.0.0.1",
    "\"[::1]\"",
    "/a/",
    "/a/../b",
    "Bearer",
    "Digest",
    "GITHUB_TOKEN",
    "EGRESS_TOKEN_1",
    "claude_code_oauth",
    "block",
    "warn",
    "\"https://h.com/a.git\"",
    "x-api-key",
    "main",
    "\"feature/*\"",
    "-1",
    "1.5",
    "\"\\u0000\"",
    "&a x",
    "*a",
];

fn yaml_value(depth: u32) -> BoxedStrategy<String> {
    let leaf = prop::sample::select(SCALARS)
        .prop_map(str::to_owned)
        .boxed();
    if depth == 0 {
        return leaf;
    }
    prop_oneof![
        3 => leaf,
        2 => prop::collection::vec((prop::sample::select(KEYS), yaml_value(depth - 1)), 0..5)
            .prop_map(|kv| format!("{{{}}}", kv.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", "))),
        1 => prop::collection::vec(yaml_value(depth - 1), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
    ]
    .boxed()
}

fn check_error_shape(e: &manifest::ManifestError, file: &str) -> Result<(), TestCaseError> {
    prop_assert!(!e.diagnostics().is_empty());
    for d in e.diagnostics() {
        prop_assert_eq!(d.file.as_str(), file);
        prop_assert!(!d.message.is_empty());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn structured_documents_never_panic(doc in yaml_value(6)) {
        if let Err(e) = Manifest::parse(&doc, "m.yaml") { check_error_shape(&e, "m.yaml")?; }
        if let Err(e) = RouteTable::parse(&doc, "r.yaml") { check_error_shape(&e, "r.yaml")?; }
        if let Err(e) = RemotesFile::parse(&doc, "g.yaml") { check_error_shape(&e, "g.yaml")?; }
        let md = format!("---\n{doc}\n---\nbody\n");
        if let Err(e) = parse_markdown_agent(&md, "a.md", "a") { check_error_shape(&e, "a.md")?; }
    }

    #[test]
    fn agent_shaped_documents_never_panic(bottle in yaml_value(5)) {
        let doc = format!("agents:\n  dev:\n    bottle: {bottle}\n");
        if let Err(e) = Manifest::parse(&doc, "m.yaml") { check_error_shape(&e, "m.yaml")?; }
    }

    #[test]
    fn arbitrary_text_never_panics(s in "[ -~\\n\\t]{0,200}") {
        let _ = Manifest::parse(&s, "m.yaml");
        let _ = RouteTable::parse(&s, "r.yaml");
        let _ = parse_markdown_agent(&s, "a.md", "a");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Stresses the frontmatter splitter: delimiters in odd places, CRLF,
    /// BOMs, unterminated blocks, multi-byte characters.
    #[test]
    fn markdown_splitting_never_panics(lines in prop::collection::vec(prop::sample::select(vec![
        "---", "...", "---\r", "--- ", "\u{feff}---", "name: a", "description: é😀", "bottle: {}", "", "body ---", "-- -",
    ]), 0..8), crlf in any::<bool>()) {
        let sep = if crlf { "\r\n" } else { "\n" };
        let text = lines.join(sep);
        if let Err(e) = parse_markdown_agent(&text, "a.md", "a") { check_error_shape(&e, "a.md")?; }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The predecessor's flat route form, with any values (quoted YAML
    /// strings): always refused, one diagnostic per flat key naming it and
    /// the `auth:` form, never a panic and never a parsed bottle.
    #[test]
    fn flat_route_auth_is_always_refused_with_the_recipe(
        scheme in proptest::option::of("[ -~]{0,12}"),
        token_ref in proptest::option::of("[ -~]{0,12}"),
        header in proptest::option::of("[ -~]{0,12}"),
    ) {
        prop_assume!(scheme.is_some() || token_ref.is_some() || header.is_some());
        let q = |v: &str| serde_json::to_string(v).expect("json string");
        let mut route = String::from("{host: a.example");
        for (k, v) in [("auth_scheme", &scheme), ("token_ref", &token_ref), ("auth_header", &header)] {
            if let Some(v) = v {
                route.push_str(&format!(", {k}: {}", q(v)));
            }
        }
        route.push('}');
        let doc = format!("agents:\n  dev:\n    bottle:\n      egress:\n        routes: [{route}]\n");
        let err = Manifest::parse(&doc, "m.yaml").expect_err("the flat form is refused");
        check_error_shape(&err, "m.yaml")?;
        let text = err.to_string();
        for (k, v) in [("auth_scheme", &scheme), ("token_ref", &token_ref), ("auth_header", &header)] {
            if v.is_some() {
                let line = text.lines().find(|l| l.contains(&format!("routes[0].{k}:")));
                prop_assert!(line.is_some_and(|l| l.contains("`auth: {")), "{k}: {text}");
            }
        }
    }
}
