use super::*;
use manifest::Manifest;

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
  bare:
    bottle:
      supervise: false
  piped:
    bottle:
      pipelock: true
"#;

fn agent(name: &str) -> Agent {
    let m = Manifest::parse(MANIFEST, "test.yaml").expect("manifest parses");
    m.agent(name).expect("agent exists").clone()
}

fn opts() -> PlanOptions {
    PlanOptions {
        identity: Identity::parse("dev-k3x9a").expect("id"),
        cwd: Some("/src/app".into()),
        queue_dir: "/state/dev-k3x9a/queue".into(),
        images: Component::ALL
            .into_iter()
            .map(|c| (c, format!("claude-bottle/{c}:test")))
            .collect(),
        unavailable: BTreeMap::new(),
        extra_labels: BTreeMap::from([("dev.claude-bottle.test-run".into(), "run1".into())]),
        upstream_ca: None,
        skills: Vec::new(),
        workspace_mode: None,
    }
}

fn plan(name: &str) -> Plan {
    build(&agent(name), &opts()).expect("plan builds")
}

#[test]
fn sidecars_start_before_the_agent_in_spec_order() {
    let p = plan("dev");
    let order: Vec<Component> = p.containers.iter().map(|c| c.component).collect();
    assert_eq!(
        order,
        vec![
            Component::Egress,
            Component::GitGate,
            Component::Supervise,
            Component::Agent
        ]
    );
    assert!(p.omitted.is_empty());
    let bare: Vec<Component> = plan("bare")
        .containers
        .iter()
        .map(|c| c.component)
        .collect();
    assert_eq!(bare, vec![Component::Egress, Component::Agent]);
}

#[test]
fn agent_is_only_on_the_internal_network_and_sidecars_have_aliases() {
    let p = plan("dev");
    let agent = p.container(Component::Agent).expect("agent");
    assert_eq!(agent.networks.len(), 1);
    assert_eq!(
        agent.networks[0].network,
        "claude-bottle-internal-dev-k3x9a"
    );
    assert!(
        p.networks
            .iter()
            .any(|n| n.name == agent.networks[0].network && n.internal)
    );
    let egress = p.container(Component::Egress).expect("egress");
    assert_eq!(egress.networks[0].aliases, vec!["egress"]);
    assert_eq!(
        egress.networks[1].network,
        "claude-bottle-egress-net-dev-k3x9a"
    );
    let gate = p.container(Component::GitGate).expect("git-gate");
    assert_eq!(gate.networks[0].aliases, vec!["git-gate"]);
    assert_eq!(gate.networks.len(), 2);
    let sup = p.container(Component::Supervise).expect("supervise");
    assert_eq!(sup.networks.len(), 1, "supervise never reaches the outside");
}

#[test]
fn agent_env_has_both_proxy_cases_no_proxy_and_ca_variables() {
    let p = plan("dev");
    let env = &p.container(Component::Agent).expect("agent").env;
    for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
        assert_eq!(env[k], "http://egress:9099", "{k}");
    }
    assert_eq!(
        env["NO_PROXY"],
        "git-gate,supervise,localhost,127.0.0.1,::1"
    );
    assert_eq!(env["no_proxy"], env["NO_PROXY"]);
    assert_eq!(env["NODE_EXTRA_CA_CERTS"], AGENT_CA_PATH);
    assert_eq!(env["SSL_CERT_FILE"], AGENT_CA_BUNDLE);
    assert_eq!(env["REQUESTS_CA_BUNDLE"], AGENT_CA_BUNDLE);
    // Role claude_code_oauth: placeholder + telemetry off.
    assert_eq!(
        env["CLAUDE_CODE_OAUTH_TOKEN"],
        manifest::effective::OAUTH_PLACEHOLDER
    );
    assert_eq!(env["DISABLE_TELEMETRY"], "1");
}

#[test]
fn without_the_oauth_role_the_agent_gets_no_placeholder() {
    let p = plan("bare");
    let env = &p.container(Component::Agent).expect("agent").env;
    assert!(!env.contains_key("CLAUDE_CODE_OAUTH_TOKEN"));
    assert!(!env.contains_key("DISABLE_TELEMETRY"));
    assert_eq!(env["NO_PROXY"], "localhost,127.0.0.1,::1");
}

#[test]
fn secrets_go_only_to_the_sidecar_that_needs_them_and_never_into_the_plan() {
    let p = plan("dev");
    let egress = p.container(Component::Egress).expect("egress");
    assert_eq!(
        egress.secret_env,
        vec![
            SecretEnv {
                name: "EGRESS_TOKEN_1".into(),
                token_ref: "GITHUB_TOKEN".into()
            },
            SecretEnv {
                name: "EGRESS_TOKEN_2".into(),
                token_ref: "CLAUDE_CODE_OAUTH_TOKEN".into()
            },
        ]
    );
    let gate = p.container(Component::GitGate).expect("gate");
    assert_eq!(
        gate.secret_env,
        vec![SecretEnv {
            name: "GIT_GATE_TOKEN_1".into(),
            token_ref: "GITHUB_TOKEN".into()
        }]
    );
    let agent = p.container(Component::Agent).expect("agent");
    assert!(agent.secret_env.is_empty());
    assert!(
        !agent
            .env
            .keys()
            .any(|k| k.starts_with("EGRESS_TOKEN") || k.starts_with("GIT_GATE_TOKEN"))
    );
    assert_eq!(
        p.token_refs(),
        vec!["GITHUB_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"]
    );
}

#[test]
fn ca_key_goes_only_to_egress_readable_by_the_sidecar_user_alone() {
    let p = plan("dev");
    for c in &p.containers {
        let has_key = c.files.iter().any(|f| f.source == FileSource::CaKey);
        assert_eq!(has_key, c.component == Component::Egress, "{}", c.name);
    }
    let egress = p.container(Component::Egress).expect("egress");
    let key = egress
        .files
        .iter()
        .find(|f| f.source == FileSource::CaKey)
        .expect("key");
    assert_eq!((key.mode, key.uid), (0o400, SIDECAR_UID));
    for f in egress
        .files
        .iter()
        .filter(|f| f.source != FileSource::CaKey)
    {
        assert_eq!((f.mode, f.uid), (0o644, SIDECAR_UID), "{}", f.path);
    }
    let agent = p.container(Component::Agent).expect("agent");
    let ca = agent
        .files
        .iter()
        .find(|f| f.source == FileSource::CaCert)
        .expect("ca in agent");
    assert_eq!(ca.path, AGENT_CA_PATH);
}

#[test]
fn routes_file_and_git_config_are_rendered_from_the_manifest() {
    let p = plan("dev");
    let a = agent("dev");
    let egress = p.container(Component::Egress).expect("egress");
    let routes = egress
        .files
        .iter()
        .find(|f| f.path.ends_with("routes.yaml"))
        .expect("routes");
    assert_eq!(routes.source, FileSource::Text(a.bottle().routes_file()));
    let agent = p.container(Component::Agent).expect("agent");
    let git = agent
        .files
        .iter()
        .find(|f| f.path == "/etc/gitconfig")
        .expect("gitconfig");
    let FileSource::Text(text) = &git.source else {
        panic!("text")
    };
    assert!(
        text.contains(
            "[url \"http://git-gate:9200/app.git\"]\n\tinsteadOf = https://github.com/acme/app.git"
        ),
        "{text}"
    );
    let mcp = agent
        .files
        .iter()
        .find(|f| f.path.ends_with(".claude.json"))
        .expect("mcp");
    let FileSource::Text(text) = &mcp.source else {
        panic!("text")
    };
    assert!(text.contains("http://supervise:9100/mcp"), "{text}");
    assert!(agent.files.iter().any(|f| f.path.ends_with("CLAUDE.md")));
}

#[test]
fn workspace_and_queue_are_mounted() {
    let p = plan("dev");
    let agent = p.container(Component::Agent).expect("agent");
    assert_eq!(
        agent.mounts,
        vec![Mount {
            source: "/src/app".into(),
            target: WORKSPACE.into(),
            read_only: false
        }]
    );
    assert_eq!(agent.workdir.as_deref(), Some(WORKSPACE));
    let sup = p.container(Component::Supervise).expect("supervise");
    assert_eq!(
        sup.mounts[0].source,
        PathBuf::from("/state/dev-k3x9a/queue")
    );
    assert_eq!(sup.mounts[0].target, SUPERVISE_QUEUE);
}

#[test]
fn every_object_is_labelled_with_identity_component_and_extra_labels() {
    let p = plan("dev");
    let labelled = p
        .containers
        .iter()
        .map(|c| &c.labels)
        .chain(p.networks.iter().map(|n| &n.labels))
        .chain(p.volumes.iter().map(|v| &v.labels));
    for l in labelled {
        assert_eq!(l[crate::plan::identity::LABEL_IDENTITY], "dev-k3x9a");
        assert_eq!(l["dev.claude-bottle.test-run"], "run1");
        assert!(l.contains_key(crate::plan::identity::LABEL_COMPONENT));
    }
}

#[test]
fn sidecars_run_as_the_non_root_sidecar_user_and_the_agent_as_agent() {
    let p = plan("dev");
    for c in &p.containers {
        let want = if c.component == Component::Agent {
            AGENT_UID
        } else {
            SIDECAR_UID
        };
        assert_eq!(c.user, format!("{want}:{want}"), "{}", c.name);
    }
}

#[test]
fn an_unavailable_sidecar_is_omitted_with_its_reason_and_dropped_from_no_proxy() {
    let mut o = opts();
    o.unavailable
        .insert(Component::GitGate, "git-gate is not built yet".into());
    let p = build(&agent("dev"), &o).expect("plan");
    assert!(p.container(Component::GitGate).is_none());
    assert_eq!(
        p.omitted,
        vec![Omitted {
            component: Component::GitGate,
            reason: "git-gate is not built yet".into()
        }]
    );
    let agent = p.container(Component::Agent).expect("agent");
    assert_eq!(agent.env["NO_PROXY"], "supervise,localhost,127.0.0.1,::1");
    assert!(!agent.files.iter().any(|f| f.path == "/etc/gitconfig"));
}

#[test]
fn refusals_name_the_problem() {
    let mut o = opts();
    o.unavailable.insert(
        Component::Pipelock,
        "the pipelock image is not on this engine".into(),
    );
    let err = build(&agent("piped"), &o).expect_err("pipelock unavailable");
    assert!(
        err.to_string().contains("bottle.pipelock")
            && err.to_string().contains("piped")
            && err.to_string().contains("not on this engine"),
        "{err}"
    );
    let mut o = opts();
    o.images.remove(&Component::Pipelock);
    let err = build(&agent("piped"), &o).expect_err("no pipelock image");
    assert_eq!(err, PlanError::NoImage(Component::Pipelock));

    let mut o = opts();
    o.unavailable
        .insert(Component::Egress, "egress-proxy binary missing".into());
    let err = build(&agent("dev"), &o).expect_err("no egress");
    assert!(
        err.to_string().contains("egress-proxy binary missing"),
        "{err}"
    );

    let mut o = opts();
    o.cwd = Some("relative".into());
    assert_eq!(
        build(&agent("dev"), &o),
        Err(PlanError::RelativeCwd("relative".into()))
    );

    let mut o = opts();
    o.images.remove(&Component::Agent);
    assert_eq!(
        build(&agent("dev"), &o),
        Err(PlanError::NoImage(Component::Agent))
    );
}

#[test]
fn preflight_summaries_show_token_refs_not_slots() {
    let p = plan("dev");
    let gh = p
        .routes
        .iter()
        .find(|r| r.host == "api.github.com")
        .expect("route");
    assert_eq!(gh.token_ref.as_deref(), Some("GITHUB_TOKEN"));
    assert_eq!(gh.path_allowlist, vec!["/repos/acme/"]);
    assert_eq!(gh.auth.as_deref(), Some("Authorization: Bearer"));
    assert!(
        p.routes
            .iter()
            .any(|r| r.host == "pypi.org" && r.auth.is_none())
    );
    assert_eq!(p.git_remotes[0].token_ref.as_deref(), Some("GITHUB_TOKEN"));
}

#[test]
fn the_plan_serialises_to_json_without_secret_values() {
    let json = serde_json::to_string(&plan("dev")).expect("json");
    assert!(json.contains("\"token_ref\":\"GITHUB_TOKEN\""), "{json}");
    assert!(json.contains("\"kind\":\"ca_key\""), "{json}");
}

#[test]
fn the_embedded_default_agent_plans() {
    let m = manifest::default_manifest().expect("default");
    let p = build(&m.agents()[0], &opts()).expect("plan");
    assert_eq!(p.agent, "claude");
    assert!(p.container(Component::Supervise).is_some());
    assert_eq!(p.token_refs(), vec!["CLAUDE_CODE_OAUTH_TOKEN"]);
}

#[test]
fn an_upstream_ca_is_copied_into_egress_and_git_gate_and_passed_as_a_flag() {
    let mut o = opts();
    o.upstream_ca = Some("-----BEGIN CERTIFICATE-----\n".into());
    let p = build(&agent("dev"), &o).expect("plan");
    let egress = p.container(Component::Egress).expect("egress");
    assert!(
        egress
            .cmd
            .windows(2)
            .any(|w| w == ["--upstream-ca", "/etc/egress-proxy/upstream-ca.crt"])
    );
    assert!(
        egress
            .files
            .iter()
            .any(|f| f.path == "/etc/egress-proxy/upstream-ca.crt" && f.mode == 0o644)
    );
    assert!(
        !plan("dev")
            .container(Component::Egress)
            .expect("egress")
            .cmd
            .contains(&"--upstream-ca".to_owned())
    );
}

#[test]
fn skill_files_go_under_the_agents_skills_directory_with_modes() {
    let mut o = opts();
    o.skills = vec![
        SkillFile {
            skill: "review".into(),
            relative: "SKILL.md".into(),
            host_path: "/m/skills/review/SKILL.md".into(),
            executable: false,
        },
        SkillFile {
            skill: "review".into(),
            relative: "bin/run.sh".into(),
            host_path: "/m/skills/review/bin/run.sh".into(),
            executable: true,
        },
    ];
    let p = build(&agent("dev"), &o).expect("plan");
    let agent = p.container(Component::Agent).expect("agent");
    let skill: Vec<(&str, u32, u64)> = agent
        .files
        .iter()
        .filter(|f| f.path.contains("/skills/"))
        .map(|f| (f.path.as_str(), f.mode, f.uid))
        .collect();
    assert_eq!(
        skill,
        vec![
            (
                "/home/agent/.claude/skills/review/SKILL.md",
                0o644,
                AGENT_UID
            ),
            (
                "/home/agent/.claude/skills/review/bin/run.sh",
                0o755,
                AGENT_UID
            ),
        ]
    );
}

/// The planned files of `c` at [`CURRENT_DOCKERFILE`].
fn dockerfile_files(c: &ContainerPlan) -> Vec<&PlannedFile> {
    c.files
        .iter()
        .filter(|f| f.path == CURRENT_DOCKERFILE)
        .collect()
}

#[test]
fn supervise_and_the_agent_get_the_current_dockerfile_read_only() {
    let p = plan("dev").with_current_dockerfile("FROM debian\n");
    let sup = p.container(Component::Supervise).expect("supervise");
    let i = sup
        .cmd
        .iter()
        .position(|a| a == "--dockerfile")
        .expect("--dockerfile passed");
    assert_eq!(sup.cmd[i + 1], CURRENT_DOCKERFILE);
    let f = dockerfile_files(sup);
    assert_eq!(f.len(), 1);
    // Root-owned 0644: the sidecar user (10001) reads it, cannot change it.
    assert_eq!((f[0].mode, f[0].uid), (0o644, 0));
    assert_eq!(f[0].source, FileSource::Text("FROM debian\n".into()));
    // The agent reads the same text, root-owned 0644: it cannot change it.
    let agent = p.container(Component::Agent).expect("agent");
    let f = dockerfile_files(agent);
    assert_eq!(f.len(), 1);
    assert_eq!((f[0].mode, f[0].uid), (0o644, 0));
    assert_eq!(f[0].source, FileSource::Text("FROM debian\n".into()));
    // No other sidecar gets it.
    for c in p
        .containers
        .iter()
        .filter(|c| !matches!(c.component, Component::Supervise | Component::Agent))
    {
        assert!(
            c.files.iter().all(|f| f.path != CURRENT_DOCKERFILE),
            "{}",
            c.name
        );
    }
}

#[test]
fn a_second_dockerfile_replaces_the_first() {
    let p = plan("dev")
        .with_current_dockerfile("FROM a\n")
        .with_current_dockerfile("FROM b\n");
    let sup = p.container(Component::Supervise).expect("supervise");
    assert_eq!(sup.cmd.iter().filter(|a| *a == "--dockerfile").count(), 1);
    let f = dockerfile_files(sup);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].source, FileSource::Text("FROM b\n".into()));
    let agent = p.container(Component::Agent).expect("agent");
    let f = dockerfile_files(agent);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].source, FileSource::Text("FROM b\n".into()));
}

#[test]
fn without_supervise_the_dockerfile_goes_nowhere() {
    let before = plan("bare");
    let after = before.clone().with_current_dockerfile("FROM x\n");
    assert_eq!(before, after);
}

const PINNED: &str = "ghcr.io/luckypipewrench/pipelock@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn piped_opts() -> PlanOptions {
    let mut o = opts();
    o.images.insert(Component::Pipelock, PINNED.into());
    o
}

#[test]
fn pinned_images_are_recognised() {
    assert_eq!(validate_pinned_image(PINNED), Ok(()));
    assert_eq!(validate_pinned_image(DEFAULT_PIPELOCK_IMAGE), Ok(()));
    for bad in [
        "ghcr.io/luckypipewrench/pipelock:3.5.0",
        "ghcr.io/luckypipewrench/pipelock@sha256:abc",
        "ghcr.io/luckypipewrench/pipelock@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
        "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "ghcr.io/x y@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "",
    ] {
        assert_eq!(
            validate_pinned_image(bad),
            Err(PlanError::PipelockNotPinned(bad.into())),
            "{bad}"
        );
    }
}

#[test]
fn pipelock_starts_first_on_the_egress_network_only() {
    let p = build(&agent("piped"), &piped_opts()).expect("plan");
    let order: Vec<Component> = p.containers.iter().map(|c| c.component).collect();
    assert_eq!(
        order,
        vec![
            Component::Pipelock,
            Component::Egress,
            Component::Supervise,
            Component::Agent
        ]
    );
    let pl = p.container(Component::Pipelock).expect("pipelock");
    assert_eq!(pl.image, PINNED);
    assert_eq!(pl.name, "claude-bottle-pipelock-dev-k3x9a");
    // Never on the internal network: the agent cannot use it as a way out.
    assert_eq!(
        pl.networks,
        vec![Attachment {
            network: p.identity.egress_network(),
            aliases: vec!["pipelock".into()],
        }]
    );
    assert_eq!(pl.user, "10001:10001");
    assert_eq!(
        pl.cmd,
        [
            "run",
            "--config",
            PIPELOCK_CONFIG,
            "--listen",
            "0.0.0.0:8888"
        ]
    );
    assert_eq!(
        pl.health.as_deref(),
        Some(
            &[
                "/pipelock".to_owned(),
                "healthcheck".into(),
                "--addr".into(),
                "127.0.0.1:8888".into()
            ][..]
        )
    );
    assert_eq!(pl.env.get("HOME").map(String::as_str), Some("/tmp"));
    assert!(pl.secret_env.is_empty(), "pipelock gets no token");
    assert_eq!(pl.labels["dev.claude-bottle.component"], "pipelock");
    let modes: Vec<(&str, u32, u64)> = pl
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.mode, f.uid))
        .collect();
    assert_eq!(
        modes,
        vec![
            (PIPELOCK_CONFIG, 0o644, 10001),
            (PIPELOCK_CA_CERT, 0o644, 10001),
            (PIPELOCK_CA_KEY, 0o400, 10001),
        ]
    );
    assert_eq!(pl.files[1].source, FileSource::PipelockCaCert);
    assert_eq!(pl.files[2].source, FileSource::PipelockCaKey);
}

#[test]
fn pipelock_config_is_the_manifest_rendering_plus_the_internal_cidr() {
    let a = agent("piped");
    let p = build(&a, &piped_opts()).expect("plan");
    let pl = p.container(Component::Pipelock).expect("pipelock");
    let FileSource::PipelockConfig(base) = &pl.files[0].source else {
        panic!("config source: {:?}", pl.files[0].source);
    };
    let tls = manifest::pipelock::PipelockTls {
        ca_cert: PIPELOCK_CA_CERT.into(),
        ca_key: PIPELOCK_CA_KEY.into(),
    };
    let table = a.bottle().effective_routes();
    let cidr = manifest::pipelock::Cidr::parse("172.18.0.0/16").expect("cidr");
    let want = manifest::pipelock::render_config(
        a.bottle(),
        table,
        Some(&tls),
        std::slice::from_ref(&cidr),
    )
    .expect("render");
    assert_eq!(format!("{base}{}", pipelock_ssrf_section(&[cidr])), want);
    assert!(want.contains("172.18.0.0/16"), "{want}");
    assert!(
        base.contains(PIPELOCK_CA_KEY),
        "TLS interception on: {base}"
    );
    assert_eq!(pipelock_ssrf_section(&[]), "");
}

#[test]
fn egress_chains_to_pipelock_and_trusts_its_ca_supervise_lists_pipelock_block() {
    let mut o = piped_opts();
    o.upstream_ca = Some("TEST CA PEM\n".into());
    let p = build(&agent("piped"), &o).expect("plan");
    let eg = p.container(Component::Egress).expect("egress");
    let arg = |flag: &str| {
        let i = eg
            .cmd
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("{flag} missing: {:?}", eg.cmd));
        eg.cmd[i + 1].clone()
    };
    assert_eq!(arg("--upstream-proxy"), "http://pipelock:8888");
    let ca_path = arg("--upstream-ca");
    let ca = eg
        .files
        .iter()
        .find(|f| f.path == ca_path)
        .expect("upstream CA file");
    assert_eq!(
        ca.source,
        FileSource::Bundle(vec![
            FileSource::Text("TEST CA PEM\n".into()),
            FileSource::PipelockCaCert
        ])
    );
    assert_eq!(ca.mode, 0o644);
    // Without an extra CA, pipelock's alone.
    let p2 = build(&agent("piped"), &piped_opts()).expect("plan");
    let eg2 = p2.container(Component::Egress).expect("egress");
    assert!(
        eg2.files
            .iter()
            .any(|f| f.source == FileSource::PipelockCaCert)
    );
    let sup = p.container(Component::Supervise).expect("supervise");
    assert!(sup.cmd.contains(&"--pipelock".to_owned()), "{:?}", sup.cmd);
    // Bottles without pipelock are unchanged by it.
    let d = plan("dev");
    assert!(d.container(Component::Pipelock).is_none());
    let deg = d.container(Component::Egress).expect("egress");
    assert!(!deg.cmd.contains(&"--upstream-proxy".to_owned()));
    let dsup = d.container(Component::Supervise).expect("supervise");
    assert!(!dsup.cmd.contains(&"--pipelock".to_owned()));
    // The agent's proxy is still egress, never pipelock.
    let ag = p.container(Component::Agent).expect("agent");
    assert_eq!(ag.env["HTTPS_PROXY"], "http://egress:9099");
    assert!(!ag.env["NO_PROXY"].contains("pipelock"));
}

/// The value following `flag` in `cmd`, each time it appears.
fn flag_values<'a>(cmd: &'a [String], flag: &str) -> Vec<&'a str> {
    cmd.windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| w[1].as_str())
        .collect()
}

#[test]
fn egress_scans_with_the_manifest_dlp_action_and_exempts_the_llm_hosts() {
    let p = plan("dev");
    let cmd = &p.container(Component::Egress).expect("egress").cmd;
    assert_eq!(flag_values(cmd, "--dlp-action"), vec!["block"]);
    let exempt = flag_values(cmd, "--dlp-exempt-host");
    assert!(exempt.contains(&"api.anthropic.com"), "{exempt:?}");
    assert!(exempt.contains(&"claude.ai"), "{exempt:?}");
    // Routes without a role are scanned.
    assert!(!exempt.contains(&"api.github.com"), "{exempt:?}");
    assert!(!exempt.contains(&"pypi.org"), "{exempt:?}");
    // No duplicates although the role route repeats a default host.
    let mut unique = exempt.clone();
    unique.dedup();
    assert_eq!(unique.len(), exempt.len(), "{exempt:?}");

    let warn = Manifest::parse(
        "agents:\n  w:\n    bottle:\n      egress:\n        dlp_action: warn\n        routes:\n          - host: llm.example.com\n            auth: { scheme: Bearer, token_ref: T }\n            role: claude_code_oauth\n",
        "w.yaml",
    )
    .expect("parses");
    let p = build(warn.agent("w").expect("agent"), &opts()).expect("plan");
    let cmd = &p.container(Component::Egress).expect("egress").cmd;
    assert_eq!(flag_values(cmd, "--dlp-action"), vec!["warn"]);
    assert!(flag_values(cmd, "--dlp-exempt-host").contains(&"llm.example.com"));
}

#[test]
fn with_pipelock_egress_leaves_dlp_to_pipelock() {
    let p = build(&agent("piped"), &piped_opts()).expect("plan");
    let cmd = &p.container(Component::Egress).expect("egress").cmd;
    assert_eq!(flag_values(cmd, "--dlp-action"), vec!["off"]);
    assert!(flag_values(cmd, "--dlp-exempt-host").is_empty());
    assert_eq!(p.dlp, "block, by pipelock");
    assert!(
        plan("dev")
            .dlp
            .starts_with("block, by egress-proxy; not scanned")
    );
}

/// The manifest's inspection knobs reach egress-proxy's command line, and
/// the preflight's route summary says which routes an operator opened to
/// other ports or to private addresses.
#[test]
fn inspection_knobs_and_route_opt_ins_reach_egress_and_the_preflight() {
    let m = Manifest::parse(
        "agents:\n  k:\n    bottle:\n      egress:\n        injection_action: block\n        dlp_detectors: { iban: block, payment_card: warn }\n        routes:\n          - { host: registry.corp.example, ports: [8443], allow_private: true }\n",
        "k.yaml",
    )
    .expect("parses");
    let p = build(m.agent("k").expect("agent"), &opts()).expect("plan");
    let cmd = &p.container(Component::Egress).expect("egress").cmd;
    assert_eq!(flag_values(cmd, "--injection-action"), vec!["block"]);
    let mut detectors = flag_values(cmd, "--dlp-detector");
    detectors.sort_unstable();
    assert_eq!(detectors, vec!["iban=block", "payment-card=warn"]);
    assert!(p.dlp.contains("detectors"), "{}", p.dlp);
    assert!(p.inbound.starts_with("block"), "{}", p.inbound);
    let r = p
        .routes
        .iter()
        .find(|r| r.host == "registry.corp.example")
        .expect("route");
    assert_eq!((r.ports.as_slice(), r.allow_private), (&[8443][..], true));
    let defaults = p.routes.iter().find(|r| r.host == "api.anthropic.com");
    assert!(defaults.is_some_and(|r| !r.allow_private && r.ports == [443]));
    // With pipelock, responses are still inspected by egress-proxy.
    let p = build(&agent("piped"), &piped_opts()).expect("plan");
    let cmd = &p.container(Component::Egress).expect("egress").cmd;
    assert_eq!(flag_values(cmd, "--injection-action"), vec!["warn"]);
    assert!(flag_values(cmd, "--dlp-detector").is_empty());
}

const RESTORED: &str = "version: 1
routes:
  - host: api.github.com
    path_allowlist: [/repos/acme/]
    auth: { scheme: Bearer, token_env: EGRESS_TOKEN_1 }
  - host: approved.example
    auth: { scheme: Bearer, token_env: EGRESS_TOKEN_3 }
";

fn restored_slots() -> Vec<manifest::TokenSlot> {
    vec![
        manifest::TokenSlot {
            token_ref: "GITHUB_TOKEN".into(),
            token_env: "EGRESS_TOKEN_1".into(),
        },
        manifest::TokenSlot {
            token_ref: "CLAUDE_CODE_OAUTH_TOKEN".into(),
            token_env: "EGRESS_TOKEN_2".into(),
        },
        manifest::TokenSlot {
            token_ref: "GRANTED_TOKEN".into(),
            token_env: "EGRESS_TOKEN_3".into(),
        },
    ]
}

#[test]
fn restored_routes_replace_the_manifests_with_their_recorded_slots() {
    let table = manifest::RouteTable::parse(RESTORED, "routes.yaml").expect("routes");
    let p = plan("dev")
        .with_restored_routes(&agent("dev"), &table, &restored_slots())
        .expect("restored");
    let egress = p.container(Component::Egress).expect("egress");
    let routes = egress
        .files
        .iter()
        .find(|f| f.path == EGRESS_ROUTES)
        .expect("routes file");
    assert_eq!(routes.source, FileSource::Text(table.render()));
    // Only the slots the table names, each from its recorded variable.
    let env: Vec<(&str, &str)> = egress
        .secret_env
        .iter()
        .map(|s| (s.name.as_str(), s.token_ref.as_str()))
        .collect();
    assert_eq!(
        env,
        vec![
            ("EGRESS_TOKEN_1", "GITHUB_TOKEN"),
            ("EGRESS_TOKEN_3", "GRANTED_TOKEN")
        ]
    );
    assert_eq!(p.token_refs(), vec!["GITHUB_TOKEN", "GRANTED_TOKEN"]);
    // The preflight shows the restored table, the grant by its name.
    let hosts: Vec<(&str, Option<&str>)> = p
        .routes
        .iter()
        .map(|r| (r.host.as_str(), r.token_ref.as_deref()))
        .collect();
    assert_eq!(
        hosts,
        vec![
            ("api.github.com", Some("GITHUB_TOKEN")),
            ("approved.example", Some("GRANTED_TOKEN"))
        ]
    );
    // The plan holds names only.
    let json = serde_json::to_string(&p).expect("json");
    assert!(json.contains("GRANTED_TOKEN") && json.contains("approved.example"));
}

#[test]
fn a_restored_slot_without_a_recorded_variable_is_refused_by_name() {
    let table = manifest::RouteTable::parse(RESTORED, "routes.yaml").expect("routes");
    let slots: Vec<manifest::TokenSlot> = restored_slots().into_iter().take(2).collect();
    let err = plan("dev")
        .with_restored_routes(&agent("dev"), &table, &slots)
        .expect_err("slot 3 has no variable");
    assert!(err.to_string().contains("EGRESS_TOKEN_3"), "{err}");
}

#[test]
fn restored_routes_reach_pipelocks_allowlist() {
    let table = manifest::RouteTable::parse(RESTORED, "routes.yaml").expect("routes");
    let p = build(&agent("piped"), &piped_opts())
        .expect("plan")
        .with_restored_routes(&agent("piped"), &table, &restored_slots())
        .expect("restored");
    let pl = p.container(Component::Pipelock).expect("pipelock");
    let config = pl
        .files
        .iter()
        .find(|f| f.path == PIPELOCK_CONFIG)
        .expect("config");
    let FileSource::PipelockConfig(text) = &config.source else {
        panic!("{:?}", config.source)
    };
    assert!(text.contains("\"approved.example\""), "{text}");
}

#[test]
fn the_internal_network_gives_the_host_no_address() {
    let p = plan("dev");
    let internal = p.networks.iter().find(|n| n.internal).expect("internal");
    assert_eq!(
        internal.options.get(INHIBIT_IPV4).map(String::as_str),
        Some("true")
    );
    let egress = p.networks.iter().find(|n| !n.internal).expect("egress");
    assert!(
        egress.options.is_empty(),
        "the egress bridge routes out through the host"
    );
}

#[test]
fn every_container_drops_all_capabilities_and_gains_no_privileges() {
    for name in ["dev", "bare", "piped"] {
        let mut o = opts();
        if name == "piped" {
            o = piped_opts();
        }
        let p = build(&agent(name), &o).expect("plan");
        for c in &p.containers {
            let k = &c.confinement;
            assert_eq!(k.cap_drop, vec!["ALL".to_owned()], "{}", c.name);
            assert!(
                k.cap_add.is_empty(),
                "{}: no capability is added back",
                c.name
            );
            assert!(k.no_new_privileges, "{}", c.name);
            assert!(
                k.memory_bytes >= 64 << 20 && k.pids_limit >= 64,
                "{}",
                c.name
            );
            if c.component == Component::Agent {
                continue;
            }
            assert!(
                k.read_only_rootfs,
                "{}: sidecars have a read-only root",
                c.name
            );
            assert!(k.tmpfs.contains_key(SIDECAR_TMPFS), "{}", c.name);
            // Every file the launcher writes lies on one of its volumes
            // (Docker refuses uploads into a read-only root).
            for f in &c.files {
                assert!(
                    c.volumes
                        .iter()
                        .any(|v| std::path::Path::new(&f.path).starts_with(&v.target)),
                    "{}: {} is on no volume",
                    c.name,
                    f.path
                );
            }
            for v in &c.volumes {
                assert!(
                    p.volumes.iter().any(|pv| pv.name == v.volume),
                    "{} planned",
                    v.volume
                );
                assert!(
                    v.volume.starts_with(&c.name),
                    "{} is named after its container",
                    v.volume
                );
            }
        }
    }
}

#[test]
fn the_agent_and_supervise_resolve_only_through_the_sink_without_ipv6() {
    let p = plan("dev");
    for comp in [Component::Agent, Component::Supervise] {
        let c = p.container(comp).expect("planned");
        let dns = c.confinement.dns.as_ref().expect("dns set");
        assert_eq!(dns.servers, vec![DNS_SINK.to_owned()], "{comp}");
        assert!(
            dns.options.iter().any(|o| o.starts_with("timeout:")),
            "{comp}"
        );
        assert_eq!(
            c.confinement
                .sysctls
                .get("net.ipv6.conf.all.disable_ipv6")
                .map(String::as_str),
            Some("1")
        );
        assert_eq!(
            c.confinement
                .sysctls
                .get("net.ipv6.conf.default.disable_ipv6")
                .map(String::as_str),
            Some("1")
        );
    }
    // Egress and git-gate resolve upstreams with the engine's DNS.
    for comp in [Component::Egress, Component::GitGate] {
        assert_eq!(
            p.container(comp).expect("planned").confinement.dns,
            None,
            "{comp}"
        );
    }
}

#[test]
fn the_agents_limits_come_from_the_manifest() {
    let m = Manifest::parse(
        "agents:\n  small:\n    bottle:\n      limits: {memory: 1536m, pids: 300}\n",
        "t.yaml",
    )
    .expect("manifest");
    let p = build(m.agent("small").expect("agent"), &opts()).expect("plan");
    let k = &p.container(Component::Agent).expect("agent").confinement;
    assert_eq!((k.memory_bytes, k.pids_limit), (1536 << 20, 300));
    assert!(
        !k.read_only_rootfs,
        "the agent installs and builds in its own root"
    );
    let dev = plan("dev");
    let k = &dev.container(Component::Agent).expect("agent").confinement;
    assert_eq!((k.memory_bytes, k.pids_limit), (8 << 30, 4096), "defaults");
}

#[test]
fn the_trust_bundle_is_written_root_owned_before_start() {
    let p = plan("dev");
    let agent = p.container(Component::Agent).expect("agent");
    let bundle = agent
        .files
        .iter()
        .find(|f| f.path == AGENT_CA_BUNDLE)
        .expect("bundle planned");
    assert_eq!(
        (bundle.mode, bundle.uid, &bundle.source),
        (0o644, 0, &FileSource::TrustBundle)
    );
    assert_eq!(agent.user, format!("{AGENT_UID}:{AGENT_UID}"));
}

#[test]
fn workspace_modes_mount_or_copy() {
    let p = plan("dev");
    let w = p.workspace.as_ref().expect("workspace");
    assert_eq!(
        (w.mode, w.host.as_path()),
        (WorkspaceMode::Protect, std::path::Path::new("/src/app"))
    );
    let mut o = opts();
    o.workspace_mode = Some(WorkspaceMode::Copy);
    let p = build(&agent("dev"), &o).expect("plan");
    let a = p.container(Component::Agent).expect("agent");
    assert!(
        a.mounts.is_empty(),
        "copy mode mounts nothing from the host"
    );
    assert_eq!(a.workdir.as_deref(), Some(WORKSPACE));
    assert_eq!(
        p.workspace.as_ref().map(|w| w.mode),
        Some(WorkspaceMode::Copy)
    );
    let m = Manifest::parse(
        "agents:\n  c:\n    bottle:\n      workspace: copy\n",
        "t.yaml",
    )
    .expect("manifest");
    let p = build(m.agent("c").expect("agent"), &opts()).expect("plan");
    assert_eq!(
        p.workspace.as_ref().map(|w| w.mode),
        Some(WorkspaceMode::Copy),
        "from the manifest"
    );
    let mut o = opts();
    o.workspace_mode = Some(WorkspaceMode::Protect);
    let p = build(m.agent("c").expect("agent"), &o).expect("plan");
    assert_eq!(
        p.workspace.as_ref().map(|w| w.mode),
        Some(WorkspaceMode::Protect),
        "the flag wins"
    );
    let mut o = opts();
    o.cwd = None;
    assert_eq!(build(&agent("dev"), &o).expect("plan").workspace, None);
}
