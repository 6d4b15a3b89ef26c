use std::collections::BTreeMap;

use super::*;
use crate::plan::identity::Identity;
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
        workspace_mode: None,
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
  engine     not probed (no engine answered); its version and the network walls are checked at start
  agent      user 1000:1000, no capabilities, no-new-privileges, memory 8g, pids 4096
  confined   sidecars as user 10001:10001, no capabilities, no-new-privileges, read-only root with a tmpfs at /tmp and per-bottle volumes
  workspace  /src/app -> /workspace (protect mode: read-write, but read-only: surveyed at start)
  hosts allowed (6):
    api.anthropic.com
    claude.ai
    platform.claude.com
    console.anthropic.com
    pypi.org
    api.github.com  paths /repos/acme/  Authorization: Bearer from $GITHUB_TOKEN
  DLP        block, by egress-proxy; not scanned (conversation text): api.anthropic.com, claude.ai, platform.claude.com, console.anthropic.com
  injection  warn, by egress-proxy, on text responses from hosts not exempt from DLP
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

#[test]
fn shows_the_engine_walls_limits_and_workspace_mode() {
    let manifest = "agents:\n  dev:\n    bottle:\n      limits: {memory: 2g, pids: 512}\n      workspace: copy\n";
    let info = engine::EngineInfo {
        version: "20.10.24+dfsg1".into(),
        api_version: "1.41".into(),
        os: "linux".into(),
        ..Default::default()
    };
    let p = plan(manifest, &[]).with_engine(engine::assess(&info).expect("engine"));
    let text = render(&p);
    for want in [
        "  engine     Docker 20.10.24+dfsg1 (API 1.41)\n",
        "  DNS        the bottle's names only: any other name is forwarded to a sink (127.0.0.1",
        "CVE-2024-29018",
        "  host       internal bridge without a host address (com.docker.network.bridge.inhibit_ipv4=true",
        "  agent      user 1000:1000, no capabilities, no-new-privileges, memory 2g, pids 512\n",
        "  workspace  /src/app copied to /workspace (copy mode: nothing is written back",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    let guards = vec![
        crate::plan::workspace::Guard {
            path: ".git".into(),
            kind: crate::plan::workspace::GuardKind::Existing,
            why: String::new(),
        },
        crate::plan::workspace::Guard {
            path: "claude-bottle.yaml".into(),
            kind: crate::plan::workspace::GuardKind::PlaceholderDir,
            why: String::new(),
        },
    ];
    let text = render(&plan("agents:\n  dev: {}\n", &[]).with_guards(guards));
    assert!(
        text.contains(
            "(protect mode: read-write, but read-only: .git, claude-bottle.yaml (placeholder))"
        ),
        "{text}"
    );
}

#[test]
fn routes_opened_to_other_ports_or_private_addresses_say_so() {
    let text = render(&plan(
        "agents:\n  dev:\n    bottle:\n      egress:\n        routes:\n          - { host: registry.corp.example, ports: [443, 8443], allow_private: true }\n          - { host: api.example.com }\n",
        &[],
    ));
    assert!(
        text.contains("    registry.corp.example  ports 443, 8443  PRIVATE ADDRESSES ALLOWED\n"),
        "{text}"
    );
    assert!(text.contains("    api.example.com\n"), "{text}");
}
