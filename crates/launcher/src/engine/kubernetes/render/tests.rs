use std::collections::BTreeMap;

use manifest::{Agent, Manifest};

use super::*;
use crate::plan::identity::Identity;
use crate::plan::{self, PlanOptions};

/// An agent with routes (one with a credential), git remotes with a
/// token, and supervise.
const MANIFEST: &str = r#"
agents:
  dev:
    prompt: Be careful.
    bottle:
      egress:
        allowlist: [pypi.org]
        routes:
          - host: api.github.com
            path_allowlist: [/repos/acme/]
            auth: { scheme: Bearer, token_ref: GITHUB_TOKEN }
          - host: api.anthropic.com
            auth: { scheme: Bearer, token_ref: CLAUDE_CODE_OAUTH_TOKEN }
            role: claude_code_oauth
      git:
        - { name: app, upstream: "https://github.com/acme/app.git", auth: { token_ref: GITHUB_TOKEN } }
      supervise: true
  piped:
    bottle:
      pipelock: true
"#;

fn agent(name: &str) -> Agent {
    let m = Manifest::parse(MANIFEST, "test.yaml").expect("manifest parses");
    m.agent(name).expect("agent exists").clone()
}

fn default_agent() -> Agent {
    let m = manifest::defaults::default_manifest().expect("default manifest");
    m.agent(manifest::defaults::DEFAULT_AGENT_NAME)
        .expect("default agent")
        .clone()
}

fn plan_for(agent: &Agent) -> Plan {
    let opts = PlanOptions {
        identity: Identity::parse(&format!("{}-k3x9a", agent.name().as_str())).expect("id"),
        cwd: None,
        queue_dir: "/state/queue".into(),
        images: Component::ALL
            .into_iter()
            .map(|c| (c, format!("claude-bottle/{c}:test")))
            .collect(),
        unavailable: BTreeMap::new(),
        extra_labels: BTreeMap::from([
            ("dev.claude-bottle.launcher-pid".into(), "4242".into()),
            ("team".into(), "web".into()),
        ]),
        upstream_ca: None,
        skills: Vec::new(),
        workspace_mode: None,
    };
    plan::build(agent, &opts)
        .expect("plan builds")
        .with_current_dockerfile("FROM debian:trixie\n")
}

fn bundle(agent: &Agent) -> Bundle {
    render(&plan_for(agent), &RenderOptions::default()).expect("renders")
}

fn pod_spec(b: &Bundle, c: Component) -> PodSpec {
    b.pod(c).and_then(|p| p.spec.clone()).expect("pod spec")
}

#[test]
fn golden_default_agent() {
    insta::assert_snapshot!(bundle(&default_agent()).to_yaml().expect("yaml"));
}

#[test]
fn golden_routes_remotes_credentials() {
    insta::assert_snapshot!(bundle(&agent("dev")).to_yaml().expect("yaml"));
}

#[test]
fn golden_pinned_service_ips() {
    let opts = RenderOptions {
        namespace: Some("team-web-bottle".into()),
        service_ips: BTreeMap::from([
            (Component::Egress, "10.96.200.10".into()),
            (Component::GitGate, "10.96.200.11".into()),
            (Component::Supervise, "10.96.200.12".into()),
        ]),
        cluster_cidrs: vec!["10.96.0.0/12".into(), "fd00:10:96::/112".into()],
    };
    let b = render(&plan_for(&agent("dev")), &opts).expect("renders");
    let spec = pod_spec(&b, Component::Agent);
    let aliases = spec.host_aliases.expect("aliases");
    assert_eq!(aliases.len(), 3);
    assert_eq!(aliases[0].ip, "10.96.200.10");
    let sup = pod_spec(&b, Component::Supervise)
        .host_aliases
        .expect("aliases");
    assert_eq!(sup.len(), 1, "supervise only needs egress");
    insta::assert_snapshot!(b.to_yaml().expect("yaml"));
}

#[test]
fn no_secret_value_is_ever_rendered() {
    let mut b = bundle(&agent("dev"));
    assert!(b.fill_secret(EGRESS_TOKENS_SECRET, "EGRESS_TOKEN_1", b"ghp_SECRETVALUE"));
    assert!(b.fill_secret(CA_SECRET, CA_KEY_KEY, b"-----BEGIN PRIVATE KEY-----KEYDATA"));
    // Filling is for `start`; render output comes from a fresh bundle.
    let yaml = bundle(&agent("dev")).to_yaml().expect("yaml");
    assert!(!yaml.contains("ghp_SECRETVALUE") && !yaml.contains("KEYDATA"));
    for o in &bundle(&agent("dev")).objects {
        if let Object::Secret(s) = o {
            assert!(
                s.data.iter().flatten().all(|(_, v)| v.0.is_empty()),
                "{} has a value",
                o.name()
            );
            assert!(s.string_data.is_none());
        }
    }
    assert_eq!(
        b.secret_keys(EGRESS_TOKENS_SECRET),
        vec!["EGRESS_TOKEN_1".to_owned(), "EGRESS_TOKEN_2".to_owned()]
    );
}

#[test]
fn ca_key_and_tokens_are_mounted_only_into_the_sidecar_that_injects_them() {
    let b = bundle(&agent("dev"));
    let uses = |spec: &PodSpec, secret: &str| {
        spec.volumes.iter().flatten().any(|v| {
            v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some(secret)
                || v.projected
                    .iter()
                    .flat_map(|p| p.sources.iter().flatten())
                    .any(|s| s.secret.as_ref().is_some_and(|s| s.name == secret))
        }) || spec
            .containers
            .iter()
            .flat_map(|c| c.env.iter().flatten())
            .any(|e| {
                e.value_from
                    .as_ref()
                    .and_then(|f| f.secret_key_ref.as_ref())
                    .is_some_and(|r| r.name == secret)
            })
    };
    for (c, allowed) in [
        (CA_SECRET, Component::Egress),
        (EGRESS_TOKENS_SECRET, Component::Egress),
        (GIT_GATE_TOKENS_SECRET, Component::GitGate),
    ] {
        for comp in [
            Component::Egress,
            Component::GitGate,
            Component::Supervise,
            Component::Agent,
        ] {
            assert_eq!(
                uses(&pod_spec(&b, comp), c),
                comp == allowed,
                "{c} in {comp}"
            );
        }
    }
}

#[test]
fn every_pod_is_confined() {
    let b = bundle(&agent("dev"));
    for comp in [
        Component::Egress,
        Component::GitGate,
        Component::Supervise,
        Component::Agent,
    ] {
        let spec = pod_spec(&b, comp);
        assert_eq!(spec.automount_service_account_token, Some(false));
        let psc = spec.security_context.clone().expect("pod security");
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(
            psc.seccomp_profile.expect("seccomp").type_,
            "RuntimeDefault"
        );
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            let sc = c.security_context.clone().expect("container security");
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{comp}");
            assert_eq!(
                sc.capabilities.and_then(|c| c.drop),
                Some(vec!["ALL".to_owned()])
            );
            assert_eq!(sc.run_as_non_root, Some(true));
            if comp != Component::Agent || c.name == "seed" {
                assert_eq!(
                    sc.read_only_root_filesystem,
                    Some(true),
                    "{comp}/{}",
                    c.name
                );
            }
        }
        let limits = spec.containers[0]
            .resources
            .clone()
            .and_then(|r| r.limits)
            .expect("limits");
        assert!(limits.contains_key("memory"), "{comp}");
    }
    // The agent's memory limit is the manifest's.
    let agent_mem = pod_spec(&b, Component::Agent).containers[0]
        .resources
        .clone()
        .and_then(|r| r.limits)
        .and_then(|l| l.get("memory").cloned())
        .expect("memory");
    assert_eq!(agent_mem.0, "8192Mi");
    let ns = match &b.objects[0] {
        Object::Namespace(n) => n.clone(),
        other => panic!("first object is {}", other.kind()),
    };
    assert_eq!(
        ns.metadata
            .labels
            .expect("labels")
            .get("pod-security.kubernetes.io/enforce"),
        Some(&"restricted".to_owned())
    );
}

#[test]
fn agent_has_no_cluster_dns_and_only_sidecar_egress() {
    let b = bundle(&agent("dev"));
    let spec = pod_spec(&b, Component::Agent);
    assert_eq!(spec.dns_policy.as_deref(), Some("None"));
    assert_eq!(
        spec.dns_config.and_then(|d| d.nameservers),
        Some(vec!["127.0.0.1".to_owned()])
    );
    let policies: BTreeMap<&str, &NetworkPolicySpec> = b
        .objects
        .iter()
        .filter_map(|o| match o {
            Object::NetworkPolicy(p) => Some((o.name(), p.spec.as_ref().expect("spec"))),
            _ => None,
        })
        .collect();
    let deny = policies["default-deny"];
    assert_eq!(
        deny.policy_types.clone().expect("types"),
        vec!["Ingress".to_owned(), "Egress".to_owned()]
    );
    assert!(deny.ingress.is_none() && deny.egress.is_none());
    // Only agent-to-sidecars selects the agent for egress, and each rule
    // names a sidecar pod and its port.
    fn agent_sel(s: &NetworkPolicySpec) -> Option<&str> {
        s.pod_selector
            .as_ref()
            .and_then(|l| l.match_labels.as_ref())
            .and_then(|m| m.get(LABEL_COMPONENT))
            .map(String::as_str)
    }
    let for_agent: Vec<&str> = policies
        .iter()
        .filter(|(_, s)| agent_sel(s) == Some("agent"))
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(for_agent, vec!["agent-to-sidecars"]);
    let rules = policies["agent-to-sidecars"].egress.clone().expect("rules");
    let targets: Vec<(String, i32)> = rules
        .iter()
        .map(|r| {
            let peer = &r.to.as_ref().expect("to")[0];
            assert!(peer.ip_block.is_none() && peer.namespace_selector.is_none());
            let c = peer
                .pod_selector
                .as_ref()
                .and_then(|s| s.match_labels.as_ref())
                .expect("sel")[LABEL_COMPONENT]
                .clone();
            let IntOrString::Int(p) = r.ports.as_ref().expect("ports")[0]
                .port
                .clone()
                .expect("port")
            else {
                panic!("named port")
            };
            (c, p)
        })
        .collect();
    assert_eq!(
        targets,
        vec![
            ("egress".to_owned(), 9099),
            ("git-gate".to_owned(), 9200),
            ("supervise".to_owned(), 9100)
        ]
    );
    // Internet egress exists for egress and git-gate only, never to
    // private or link-local ranges.
    let internet: Vec<&str> = policies
        .iter()
        .filter(|(_, s)| {
            s.egress
                .iter()
                .flatten()
                .any(|r| r.to.iter().flatten().any(|p| p.ip_block.is_some()))
        })
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(internet, vec!["egress-to-internet", "git-gate-to-internet"]);
    let block = policies["egress-to-internet"]
        .egress
        .clone()
        .expect("rules")[0]
        .to
        .clone()
        .expect("to")[0]
        .ip_block
        .clone()
        .expect("block");
    for cidr in [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
    ] {
        assert!(
            block
                .except
                .as_ref()
                .expect("except")
                .iter()
                .any(|e| e == cidr),
            "{cidr}"
        );
    }
}

#[test]
fn egress_reads_routes_and_tokens_from_one_watched_projected_volume() {
    let b = bundle(&agent("dev"));
    let spec = pod_spec(&b, Component::Egress);
    let args = spec.containers[0].args.clone().expect("args");
    let at = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .expect(flag)
    };
    assert_eq!(at("--routes"), "/etc/egress-proxy/routes.yaml");
    assert_eq!(at("--tokens-dir"), "/etc/egress-proxy");
    assert_eq!(at("--watch-routes"), WATCH_ROUTES_SECONDS.to_string());
    assert_eq!(args.iter().filter(|a| *a == "--tokens-dir").count(), 1);
    let mounts = spec.containers[0].volume_mounts.clone().expect("mounts");
    let m = mounts
        .iter()
        .find(|m| m.mount_path == "/etc/egress-proxy")
        .expect("config mount");
    assert!(
        m.sub_path.is_none(),
        "a subPath mount never sees ConfigMap updates"
    );
    let vol = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == m.name)
        .and_then(|v| v.projected.clone())
        .expect("projected");
    let names: Vec<String> = vol
        .sources
        .iter()
        .flatten()
        .map(|s| {
            s.config_map
                .as_ref()
                .map(|c| c.name.clone())
                .or_else(|| s.secret.as_ref().map(|s| s.name.clone()))
                .expect("source")
        })
        .collect();
    assert_eq!(
        names,
        vec![EGRESS_CONFIGMAP, EGRESS_TOKENS_SECRET, CA_SECRET]
    );
}

#[test]
fn unsupported_plans_are_refused_with_a_remedy() {
    let e = render(&plan_for(&agent("piped")), &RenderOptions::default()).expect_err("pipelock");
    assert!(e.to_string().contains("bottle.pipelock"), "{e}");
    let bad = RenderOptions {
        namespace: Some("Bad_Name".into()),
        ..RenderOptions::default()
    };
    let e = render(&plan_for(&agent("dev")), &bad).expect_err("namespace");
    assert!(e.to_string().contains("\"Bad_Name\""), "{e}");
    assert!(parse_service_ip("egress=10.0.0.1").is_ok());
    for bad in ["egress", "agent=10.0.0.1", "egress=nope", "=1.2.3.4"] {
        let e = parse_service_ip(bad).expect_err(bad);
        assert!(e.to_string().contains("COMPONENT=IP"), "{e}");
    }
}
