//! `compose/compose.yaml` run with the system `docker-compose` (v1) against
//! our locally built images: the agent reaches an allowlisted fake upstream
//! only through egress (token injected there), git goes through git-gate,
//! supervise answers, and nothing is reachable directly — not the host
//! through the internal bridge, not a DNS server for an unknown name; every
//! container is confined as the launcher confines it. Torn down by project
//! name, then by the project's and the run's labels.

use std::collections::BTreeMap;
use std::path::Path;

use futures_util::FutureExt as _;
use launcher::engine::docker::Engine;
use launcher::plan::identity::Component;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use tests::{
    engine_or_skip, labelled, leftovers, prepare_images, purge, run_id, run_labels, workspace,
};

use crate::upstream;

const MANIFEST_COMPOSE: &str = r#"
agents:
  composed:
    bottle:
      egress:
        routes:
          - host: api.github.test
            path_allowlist: [/repos/]
            auth: { scheme: Bearer, token_ref: E2E_GITHUB_TOKEN }
            allow_private: true
      git:
        - name: app
          upstream: "https://git.test/acme/app.git"
          auth: { token_ref: E2E_GIT_TOKEN }
"#;

const COMPOSE_LABEL: &str = "com.docker.compose.project";
const COMPOSE_TIMEOUT_SECS: &str = "300";

fn write(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("config dir");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("dir mode");
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("file mode");
}

fn mkdir(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(path).expect("dir");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("dir mode");
}

/// `docker-compose -p PROJECT -f compose/compose.yaml ARGS…`, bounded by
/// `timeout`; returns (success, combined output).
fn compose(project: &str, env: &BTreeMap<String, String>, args: &[&str]) -> (bool, String) {
    let file = workspace().join("compose/compose.yaml");
    let out = std::process::Command::new("timeout")
        .arg(COMPOSE_TIMEOUT_SECS)
        .arg("docker-compose")
        .arg("--no-ansi")
        .args(["-p", project, "-f"])
        .arg(&file)
        .args(args)
        .envs(env)
        .output()
        .expect("running docker-compose (install it: .ci/setup.d/docker.sh)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Removes what compose made for `project`, by name and then by label.
async fn compose_down(engine: &Engine, project: &str, env: &BTreeMap<String, String>) {
    let (ok, out) = tokio::task::block_in_place(|| {
        compose(project, env, &["down", "-v", "--remove-orphans", "-t", "2"])
    });
    if !ok {
        eprintln!("docker-compose down: {out}");
    }
    let label = [(COMPOSE_LABEL, project)];
    if let Ok(cs) = engine.containers_with_labels(&label).await {
        for c in cs {
            if let Some(id) = c.id {
                let _ = engine.remove_container(&id).await;
            }
        }
    }
    if let Ok(ns) = engine.networks_with_labels(&label).await {
        for n in ns {
            if let Some(name) = n.name {
                let _ = engine.remove_network(&name).await;
            }
        }
    }
}

async fn service_container(engine: &Engine, project: &str, service: &str) -> String {
    let cs = engine
        .containers_with_labels(&[
            (COMPOSE_LABEL, project),
            ("com.docker.compose.service", service),
        ])
        .await
        .expect("list containers");
    cs.into_iter()
        .find_map(|c| {
            c.names
                .and_then(|n| n.first().map(|n| n.trim_start_matches('/').to_owned()))
        })
        .unwrap_or_else(|| panic!("no {service} container in project {project}"))
}

async fn agent_sh(engine: &Engine, agent: &str, script: &str) -> (Option<i64>, String) {
    let out = engine
        .exec(
            agent,
            "1000:1000",
            &["sh".to_owned(), "-c".to_owned(), script.to_owned()],
        )
        .await
        .expect("exec in the compose agent");
    (out.code, out.output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_stack_reaches_upstreams_only_through_egress() {
    let test = "compose_stack_reaches_upstreams_only_through_egress";
    let Some(engine) = engine_or_skip(test).await else {
        return;
    };
    let compose_ok = std::process::Command::new("docker-compose")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !compose_ok {
        if std::env::var(tests::REQUIRE_DOCKER_ENV).as_deref() == Ok("1") {
            panic!("{test}: docker-compose is not installed (.ci/setup.d/docker.sh installs it)");
        }
        tests::cannot_run(
            test,
            "docker-compose is not installed",
            "install Debian's docker-compose (.ci/setup.d/docker.sh does)",
        );
        return;
    }
    let images = prepare_images(&engine).await;
    let tag = |c: Component| {
        images
            .tags
            .get(&c)
            .cloned()
            .unwrap_or_else(|| panic!("no image for {c}: {:?}", images.unavailable))
    };

    let run = run_id();
    let project = format!("cbe2e{run}");
    let dir = tempfile::tempdir().expect("config dir");
    let cfg = dir.path();
    let manifest =
        manifest::Manifest::parse(MANIFEST_COMPOSE, "compose-e2e.yaml").expect("manifest");
    let bottle = manifest.agent("composed").expect("agent").bottle().clone();
    let pki = upstream::TestPki::mint();
    // The bottle CA egress intercepts with (PKCS#8 key, as the launcher mints).
    let ca_key = KeyPair::generate().expect("ca key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
        .distinguished_name
        .push(DnType::CommonName, "claude-bottle compose e2e CA");
    let ca_cert = params.self_signed(&ca_key).expect("ca cert");
    write(
        &cfg.join("egress/routes.yaml"),
        &bottle.routes_file(),
        0o644,
    );
    write(&cfg.join("egress/ca.crt"), &ca_cert.pem(), 0o644);
    // A test directory (0700 tempdir): 0644 lets uid 10001 read the key
    // without chown; the README tells operators to chown 10001 + 0400.
    write(&cfg.join("egress/ca.key"), &ca_key.serialize_pem(), 0o644);
    write(&cfg.join("egress/upstream-ca.crt"), &pki.ca_pem, 0o644);
    write(
        &cfg.join("git-gate/remotes.yaml"),
        &bottle.remotes_file().render(),
        0o644,
    );
    write(&cfg.join("git-gate/upstream-ca.crt"), &pki.ca_pem, 0o644);
    write(
        &cfg.join("agent/gitconfig"),
        "[url \"http://git-gate:9200/app.git\"]\n\tinsteadOf = https://git.test/acme/app.git\n",
        0o644,
    );
    write(
        &cfg.join("current-config/Dockerfile"),
        "FROM scratch\n",
        0o644,
    );
    mkdir(&cfg.join("queue"), 0o777);
    mkdir(&cfg.join("workspace"), 0o777);

    let token = format!("e2e-compose-{run}");
    let git_token = format!("e2e-compose-git-{run}");
    let env: BTreeMap<String, String> = [
        ("CLAUDE_BOTTLE_EGRESS_IMAGE", tag(Component::Egress)),
        ("CLAUDE_BOTTLE_GIT_GATE_IMAGE", tag(Component::GitGate)),
        ("CLAUDE_BOTTLE_SUPERVISE_IMAGE", tag(Component::Supervise)),
        ("CLAUDE_BOTTLE_AGENT_IMAGE", tag(Component::Agent)),
        ("CLAUDE_BOTTLE_CONFIG_DIR", cfg.display().to_string()),
        ("EGRESS_TOKEN_1", token.clone()),
        ("GIT_GATE_TOKEN_1", git_token.clone()),
        (
            "EGRESS_UPSTREAM_CA",
            "/etc/egress-proxy/upstream-ca.crt".to_owned(),
        ),
        (
            "GIT_GATE_UPSTREAM_CA",
            "/etc/git-gate/upstream-ca.crt".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();

    purge(&engine, &run).await;
    compose_down(&engine, &project, &env).await;
    let body = async {
        let (ok, out) = tokio::task::block_in_place(|| compose(&project, &env, &["up", "-d"]));
        assert!(ok, "docker-compose up failed:\n{out}");
        let egress_net = format!("{project}_egress");
        let internal_net = format!("{project}_internal");
        let fake = format!("claude-bottle-e2e-compose-upstream-{run}");
        upstream::start(&engine, &egress_net, &fake, run_labels(&run), &pki).await;
        let fake_ip = upstream::ip_on(&engine, &fake, &egress_net).await;
        let agent = service_container(&engine, &project, "agent").await;

        // The walls, as the launcher builds them: every container confined,
        // the internal bridge without a host address, the agent's DNS the
        // sink, and nothing on the host reachable through the bridge.
        for service in ["egress", "git-gate", "supervise", "agent"] {
            let name = service_container(&engine, &project, service).await;
            let hc = engine
                .client()
                .inspect_container(
                    &name,
                    None::<bollard::query_parameters::InspectContainerOptions>,
                )
                .await
                .expect("inspect")
                .host_config
                .expect("host config");
            assert_eq!(
                hc.cap_drop.as_deref(),
                Some(&["ALL".to_owned()][..]),
                "{service}"
            );
            assert!(
                hc.security_opt
                    .as_ref()
                    .is_some_and(|o| o.iter().any(|x| x.starts_with("no-new-privileges"))),
                "{service}: {:?}",
                hc.security_opt
            );
            assert!(
                hc.pids_limit.is_some_and(|p| p > 0) && hc.memory.is_some_and(|m| m > 0),
                "{service}: limits"
            );
            if service == "agent" || service == "supervise" {
                assert_eq!(
                    hc.dns.as_deref(),
                    Some(&["127.0.0.1".to_owned()][..]),
                    "{service}: DNS sink"
                );
            }
            if service != "agent" {
                assert_eq!(hc.readonly_rootfs, Some(true), "{service}: read-only root");
            }
        }
        let facts = engine
            .network_facts(&internal_net)
            .await
            .expect("internal network");
        assert_eq!(
            facts
                .options
                .get("com.docker.network.bridge.inhibit_ipv4")
                .map(String::as_str),
            Some("true")
        );
        let listener = std::net::TcpListener::bind("0.0.0.0:0").expect("host listener");
        let port = listener.local_addr().expect("addr").port();
        for gw in &facts.gateways {
            let (_, out) = agent_sh(
                &engine,
                &agent,
                &format!("python3 -c \"import socket; socket.create_connection(('{gw}', {port}), 4)\" 2>&1; echo rc=$?"),
            )
            .await;
            assert!(
                !out.contains("rc=0"),
                "the agent reached the host through {gw}: {out}"
            );
        }
        drop(listener);
        let (code, out) = agent_sh(
            &engine,
            &agent,
            "getent hosts egress && grep -c . /etc/ssl/certs/ca-certificates.crt",
        )
        .await;
        assert_eq!(code, Some(0), "{out}");
        // With the sink checked above, an unknown name goes nowhere.
        let (code, out) = agent_sh(
            &engine,
            &agent,
            &format!("getent hosts compose{run}.exfil.example"),
        )
        .await;
        assert_ne!(code, Some(0), "an unknown name resolved: {out}");

        // Through egress: the route answers with the token injected upstream.
        let (code, out) = agent_sh(
            &engine,
            &agent,
            "curl -sS --max-time 30 https://api.github.test/repos/acme/app",
        )
        .await;
        assert_eq!(code, Some(0), "{out}");
        let echo: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(
            echo["headers"]["authorization"],
            format!("Bearer {token}"),
            "{out}"
        );
        let (_, out) = agent_sh(
            &engine,
            &agent,
            "curl -sS --max-time 30 -w '\\n%{http_code}' https://notallowed.test/",
        )
        .await;
        assert!(
            out.trim_end().ends_with("403") && out.contains("notallowed.test"),
            "{out}"
        );
        let (_, env_seen) = agent_sh(
            &engine,
            &agent,
            "env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'",
        )
        .await;
        assert!(
            !env_seen.contains(&token) && !env_seen.contains(&git_token),
            "a token is visible in the agent"
        );

        // git through git-gate (insteadOf), with the token added there.
        let (code, out) = agent_sh(
            &engine,
            &agent,
            "git ls-remote https://git.test/acme/app.git 2>&1",
        )
        .await;
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains("refs/heads/main"), "{out}");

        // supervise answers on the internal network.
        let (_, out) = agent_sh(
            &engine,
            &agent,
            "curl -sS -o /dev/null -w '%{http_code}' --max-time 10 http://supervise:9100/mcp",
        )
        .await;
        assert!(
            !out.trim().is_empty() && out.trim() != "000",
            "supervise did not answer: {out}"
        );

        // Nothing directly: no DNS for the upstream, no TCP to its address.
        let (code, out) = agent_sh(&engine, &agent, "getent hosts api.github.test").await;
        assert_ne!(
            code,
            Some(0),
            "the upstream's alias resolves in the agent: {out}"
        );
        let probe = format!(
            "python3 -c \"import socket; socket.create_connection(('{fake_ip}', 443), 5)\" 2>&1; echo rc=$?"
        );
        let (_, out) = agent_sh(&engine, &agent, &probe).await;
        assert!(
            !out.contains("rc=0"),
            "direct TCP to the upstream succeeded: {out}"
        );
        // The agent is on the internal network only.
        let nets = engine
            .client()
            .inspect_container(
                &agent,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .expect("inspect agent")
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default();
        assert_eq!(
            nets.keys().cloned().collect::<Vec<_>>(),
            vec![internal_net],
            "agent networks"
        );

        engine
            .remove_container(&fake)
            .await
            .expect("remove fake upstream");
    };
    let result = std::panic::AssertUnwindSafe(body).catch_unwind().await;
    purge(&engine, &run).await;
    compose_down(&engine, &project, &env).await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    assert!(
        labelled(&engine, COMPOSE_LABEL, &project).await.is_empty(),
        "compose objects left behind"
    );
    assert!(
        leftovers(&engine, &run).await.is_empty(),
        "test objects left behind"
    );
}
