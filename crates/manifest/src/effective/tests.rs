use super::*;
use crate::agent::Manifest;
use crate::host::RequestHost;

fn bottle(yaml: &str) -> crate::bottle::Bottle {
    let text = format!("agents:\n  a:\n    bottle:\n{}", indent(yaml));
    Manifest::parse(&text, "m.yaml").unwrap().agents()[0]
        .bottle()
        .clone()
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("      {l}\n")).collect()
}

#[test]
fn default_hosts_all_parse() {
    assert_eq!(
        claude_code_default_hosts().len(),
        CLAUDE_CODE_DEFAULT_HOSTS.len()
    );
}

#[test]
fn token_slots_are_per_distinct_ref_in_order() {
    let slots = token_slots(["B", "A", "B", "C", "A"], token_env_name);
    let got: Vec<(&str, &str)> = slots
        .iter()
        .map(|s| (s.token_ref.as_str(), s.token_env.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("B", "EGRESS_TOKEN_1"),
            ("A", "EGRESS_TOKEN_2"),
            ("C", "EGRESS_TOKEN_3")
        ]
    );
    assert!(token_slots([], token_env_name).is_empty());
}

#[test]
fn manifest_route_wins_over_default_and_allowlist() {
    let b = bottle(
        "egress:\n  allowlist: [pypi.org]\n  routes:\n    - host: PyPI.org\n      path_allowlist: [/simple/]\n    - host: api.anthropic.com\n      auth: {header: x-api-key, token_ref: ANTHROPIC_API_KEY}\n",
    );
    let t = b.effective_routes();
    let pypi = t.lookup(&RequestHost::parse("pypi.org").unwrap()).unwrap();
    assert_eq!(
        pypi.path_allowlist.len(),
        1,
        "manifest route replaced the bare one"
    );
    let api = t
        .lookup(&RequestHost::parse("API.anthropic.com").unwrap())
        .unwrap();
    assert_eq!(api.auth.as_ref().unwrap().header_name(), "x-api-key");
    // replaced in place: one entry per host, defaults keep their position
    assert_eq!(t.routes().len(), CLAUDE_CODE_DEFAULT_HOSTS.len() + 1);
    assert_eq!(t.routes()[0].host.as_str(), "api.anthropic.com");
    // no role → no agent env
    assert!(b.agent_env().is_empty());
}

#[test]
fn wildcard_and_exact_coexist() {
    let b = bottle(
        "egress:\n  allowlist: [\"*.github.com\"]\n  routes:\n    - {host: api.github.com, auth: {scheme: Bearer, token_ref: GH}}\n",
    );
    let t = b.effective_routes();
    let api = t
        .lookup(&RequestHost::parse("api.github.com").unwrap())
        .unwrap();
    assert!(api.auth.is_some());
    let raw = t
        .lookup(&RequestHost::parse("raw.github.com").unwrap())
        .unwrap();
    assert!(raw.auth.is_none());
    assert!(
        t.lookup(&RequestHost::parse("github.com").unwrap())
            .is_some()
    );
    assert!(
        t.lookup(&RequestHost::parse("evilgithub.com").unwrap())
            .is_none()
    );
}

#[test]
fn agent_env_follows_the_table() {
    let with = bottle(
        "egress:\n  routes:\n    - {host: api.anthropic.com, role: claude_code_oauth, auth: {scheme: Bearer, token_ref: T}}\n",
    );
    let env = agent_env(with.effective_routes());
    assert_eq!(env, OAUTH_AGENT_ENV);
    assert_eq!(env[0].value, OAUTH_PLACEHOLDER);
    assert!(env.iter().all(|v| !v.value.is_empty()));
    let without = bottle("{}");
    assert!(agent_env(without.effective_routes()).is_empty());
}

#[test]
fn remotes_file_names_slots_not_refs() {
    let b = bottle(
        "git:\n  - {name: a, upstream: \"https://h.example/a.git\", auth: {token_ref: T1}}\n  - {name: b, upstream: \"https://h.example/b.git\", auth: {token_ref: T1}}\n",
    );
    let r = b.remotes_file();
    assert_eq!(
        r.get("a").unwrap().auth.as_ref().unwrap().token_env,
        "GIT_GATE_TOKEN_1"
    );
    assert_eq!(
        r.get("b").unwrap().auth.as_ref().unwrap().token_env,
        "GIT_GATE_TOKEN_1"
    );
    assert_eq!(b.git_token_slots().len(), 1);
}
