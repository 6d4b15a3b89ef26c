use super::*;

fn agent(s: &str) -> AgentName {
    AgentName::parse(s).expect("valid agent name")
}

#[test]
fn from_parts_is_slug_dash_five_base36() {
    let id = Identity::from_parts(&agent("dev"), [0, 35, 36, 71, 255]);
    assert_eq!(id.as_str(), "dev-0z0z3");
    assert_eq!(id.agent(), "dev");
}

#[test]
fn minted_identities_parse_and_differ() {
    let a = Identity::mint(&agent("code-review")).expect("mint");
    let b = Identity::mint(&agent("code-review")).expect("mint");
    assert_eq!(Identity::parse(a.as_str()), Ok(a.clone()));
    assert!(a.as_str().starts_with("code-review-"));
    // 36^5 possibilities: a collision here means the randomness is broken.
    assert_ne!(a, b);
}

#[test]
fn parse_rejects_bad_identities_naming_them() {
    for bad in [
        "dev",
        "dev-",
        "dev-abcd",
        "dev-abcdef",
        "dev-ABCDE",
        "-abcde",
        "Dev-abcde",
        "dev_x-abcde",
        "",
    ] {
        let err = Identity::parse(bad).expect_err(bad);
        assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        assert!(err.to_string().contains("e.g. dev-k3x9a"), "{err}");
    }
}

#[test]
fn names_follow_the_spec() {
    let id = Identity::parse("dev-k3x9a").expect("valid");
    assert_eq!(
        id.container_name(Component::Egress),
        "claude-bottle-egress-dev-k3x9a"
    );
    assert_eq!(
        id.container_name(Component::GitGate),
        "claude-bottle-git-gate-dev-k3x9a"
    );
    assert_eq!(
        id.container_name(Component::Agent),
        "claude-bottle-agent-dev-k3x9a"
    );
    assert_eq!(id.internal_network(), "claude-bottle-internal-dev-k3x9a");
    assert_eq!(id.egress_network(), "claude-bottle-egress-net-dev-k3x9a");
    // The egress network never collides with the egress container's name.
    assert_ne!(id.egress_network(), id.container_name(Component::Egress));
}

#[test]
fn labels_name_identity_component_and_agent() {
    let id = Identity::parse("dev-k3x9a").expect("valid");
    let labels = id.labels("dev", "egress");
    assert_eq!(labels[LABEL_IDENTITY], "dev-k3x9a");
    assert_eq!(labels[LABEL_COMPONENT], "egress");
    assert_eq!(labels[LABEL_AGENT], "dev");
    assert_eq!(labels[LABEL_MANAGED], "true");
}

#[test]
fn component_round_trips_and_rejects_unknown() {
    for c in Component::ALL {
        assert_eq!(Component::parse(c.as_str()), Ok(c));
    }
    let err = Component::parse("proxy").expect_err("unknown");
    assert!(
        err.contains("\"proxy\"") && err.contains("git-gate"),
        "{err}"
    );
}
