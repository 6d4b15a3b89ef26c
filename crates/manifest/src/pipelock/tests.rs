use super::*;
use crate::agent::Manifest;
use crate::routes::RouteTable;

fn bottle(yaml: &str) -> Bottle {
    let text = format!(
        "agents:\n  a:\n    bottle:\n{}",
        yaml.lines()
            .map(|l| format!("      {l}\n"))
            .collect::<String>()
    );
    Manifest::parse(&text, "m.yaml").unwrap().agents()[0]
        .bottle()
        .clone()
}

#[test]
fn host_mirror_strips_wildcards_drops_ips_dedups_sorts() {
    let t = RouteTable::parse(
        "version: 1\nroutes:\n  - host: \"*.example.com\"\n  - host: example.com\n  - host: \"*.foo.bar.com\"\n  - host: 10.0.0.1\n  - host: \"[::1]\"\n  - host: a.org\n",
        "r",
    )
    .unwrap();
    assert_eq!(host_mirror(&t), ["a.org", "example.com", "foo.bar.com"]);
}

#[test]
fn cidrs() {
    for ok in [
        "172.18.0.0/16",
        "10.0.0.1/32",
        "fd00::/64",
        "::1/128",
        "0.0.0.0/0",
    ] {
        assert_eq!(Cidr::parse(ok).unwrap().to_string(), ok);
    }
    for bad in [
        "172.18.0.0",
        "172.18.0.0/33",
        "fd00::/129",
        "x/8",
        "1.2.3.4/",
        "1.2.3.4/+8",
        "1.2.3.4/08a",
    ] {
        assert_eq!(
            Cidr::parse(bad),
            Err(PipelockError::Cidr(bad.into())),
            "{bad}"
        );
    }
    assert!(
        PipelockError::Cidr("x".into())
            .to_string()
            .contains("expected an address and prefix length such as 172.18.0.0/16")
    );
}

#[test]
fn seed_phrase_detection_off_only_with_an_llm_route() {
    assert!(seed_phrase_detection(&bottle("{}")));
    assert!(seed_phrase_detection(&bottle(
        "egress: {allowlist: [a.com]}"
    )));
    assert!(!seed_phrase_detection(&bottle(
        "egress: {routes: [{host: api.anthropic.com}]}"
    )));
    assert!(!seed_phrase_detection(&bottle(
        "egress: {routes: [{host: \"*.anthropic.com\"}]}"
    )));
}

#[test]
fn full_config_renders_and_parses_as_yaml() {
    let b = bottle(
        "egress:\n  dlp_action: warn\n  allowlist: [\"*.pypi.org\"]\n  routes: [{host: api.anthropic.com, auth: {scheme: Bearer, token_ref: T}, role: claude_code_oauth}]\npipelock: true\n",
    );
    let tls = PipelockTls {
        ca_cert: "/etc/pipelock/ca.pem".into(),
        ca_key: "/etc/pipelock/ca.key".into(),
    };
    let cidr = Cidr::parse("172.18.0.0/16").unwrap();
    let y = render_config(&b, b.effective_routes(), Some(&tls), &[cidr]).unwrap();
    let expected = r#"version: 1
mode: strict
enforce: true

api_allowlist:
  - "api.anthropic.com"
  - "claude.ai"
  - "console.anthropic.com"
  - "platform.claude.com"
  - "pypi.org"

seed_phrase_detection:
  enabled: false

forward_proxy:
  enabled: true

dlp:
  include_defaults: true
  scan_env: true

request_body_scanning:
  action: "warn"

tls_interception:
  enabled: true
  ca_cert: "/etc/pipelock/ca.pem"
  ca_key: "/etc/pipelock/ca.key"
  passthrough_domains:
    - "api.anthropic.com"

ssrf:
  ip_allowlist:
    - "172.18.0.0/16"
"#;
    assert_eq!(y, expected);
    // the one YAML reader accepts it
    crate::yaml::parse_document(&y, "pipelock.yaml").unwrap();
    assert!(!y.contains("\"T\""), "no token_ref in the pipelock config");
}

#[test]
fn minimal_config_omits_optional_blocks() {
    let b = bottle("{}");
    let y = render_config(&b, b.effective_routes(), None, &[]).unwrap();
    assert!(
        !y.contains("tls_interception") && !y.contains("ssrf") && !y.contains("seed_phrase"),
        "{y}"
    );
    assert!(y.contains("action: \"block\""), "{y}");
}

#[test]
fn bad_ca_paths_are_refused() {
    let b = bottle("{}");
    for bad in ["relative/ca.pem", "/etc/ca\n.pem", ""] {
        let tls = PipelockTls {
            ca_cert: bad.into(),
            ca_key: "/k".into(),
        };
        assert_eq!(
            render_config(&b, b.effective_routes(), Some(&tls), &[]),
            Err(PipelockError::CaPath(bad.into()))
        );
    }
}
