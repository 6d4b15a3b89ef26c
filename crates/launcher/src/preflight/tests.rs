use std::collections::BTreeMap;

use super::*;
use crate::identity::Identity;
use crate::plan::{PlanOptions, build};

fn plan(manifest_text: &str, unavailable: &[(Component, &str)]) -> Plan {
    let m = manifest::Manifest::parse(manifest_text, "t.yaml").expect("manifest");
    let opts = PlanOptions {
        identity: Identity::parse("dev-k3x9a").expect("id"),
        cwd: Some("/src/app".into()),
        queue_dir: "/q".into(),
        images: Component::ALL
            .into_iter()
            .map(|c| (c, format!("claude-bottle/{c}:t")))
            .collect(),
        unavailable: unavailable
            .iter()
            .map(|(c, r)| (*c, (*r).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        extra_labels: BTreeMap::new(),
        upstream_ca: None,
        skills: Vec::new(),
    };
    build(&m.agents()[0], &opts).expect("plan")
}

#[test]
fn shows_hosts_routes_with_token_refs_remotes_sidecars_and_mounts() {
    let text = render(&plan(
        r#"
agents:
  dev:
    bottle:
      egress:
        allowlist: [pypi.org]
        routes:
          - host: api.github.com
            path_allowlist: [/repos/acme/]
            auth: { scheme: Bearer, token_ref: GITHUB_TOKEN }
      git:
        - { name: app, upstream: "https://github.com/acme/app.git", auth: { token_ref: GITHUB_TOKEN } }
"#,
        &[],
    ));
    let expected = "\
bottle dev-k3x9a (agent dev)
  image      claude-bottle/agent:t
  workspace  /src/app -> /workspace
  hosts allowed (6):
    api.anthropic.com
    claude.ai
    platform.claude.com
    console.anthropic.com
    pypi.org
    api.github.com  paths /repos/acme/  Authorization: Bearer from $GITHUB_TOKEN
  DLP        block, by egress-proxy; not scanned (conversation text): api.anthropic.com, claude.ai, platform.claude.com, console.anthropic.com
  git remotes (via git-gate, pushes secret-scanned):
    app -> https://github.com/acme/app.git  token from $GITHUB_TOKEN
  sidecars   egress, git-gate, supervise
";
    assert_eq!(text, expected);
}

#[test]
fn shows_what_is_left_out_and_why() {
    let text = render(&plan(
        "agents:\n  dev:\n    bottle:\n      git:\n        - { name: app, upstream: \"https://github.com/acme/app.git\" }\n",
        &[(Component::GitGate, "git-gate binary not found")],
    ));
    assert!(text.contains("  sidecars   egress, supervise\n"), "{text}");
    assert!(
        text.contains("  left out   git-gate: git-gate binary not found\n"),
        "{text}"
    );
}
