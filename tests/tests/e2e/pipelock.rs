//! The pipelock launch path on a real engine, with a stand-in for the
//! external image (this machine cannot pull it; the opt-in canary in
//! `tests/tests/canary.rs` pulls and starts the real, pinned one).
//!
//! The stand-in is our own image: the agent image plus `/pipelock`, a small
//! Python program that accepts pipelock's command line (`run --config F
//! --listen A`, `healthcheck --addr A`), reads its config and both CA files
//! as the sidecar user (so wrong modes fail the start like the real one),
//! and forwards `CONNECT` tunnels, logging each. It proves the launcher's
//! part: start order, files and modes, the internal CIDR in the config,
//! egress chained through it with its CA trusted, supervise told, the
//! agent unable to reach it, and a clean teardown.

use std::collections::{BTreeMap, HashMap};

use launcher::plan::identity::Component;
use launcher::plan::{PIPELOCK_CA_KEY, PIPELOCK_CONFIG};
use tests::{engine_or_skip, leftovers, prepare_images, run_labels};

use crate::{Started, mcp_list_tools_script, sh, start_bottle_of, upstream, with_run};

const MANIFEST_PIPELOCK: &str = r#"
agents:
  piped:
    bottle:
      egress:
        routes:
          - host: api.github.test
            path_allowlist: [/repos/]
            auth: { scheme: Bearer, token_ref: E2E_GITHUB_TOKEN }
            allow_private: true
      supervise: true
      pipelock: true
"#;

const STUB: &str = r#"#!/usr/bin/env python3
import json, socket, sys, threading

LOG = "/tmp/pipelock-connects.log"

def arg(argv, flag):
    return argv[argv.index(flag) + 1]

def pipe(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

def handle(c):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = c.recv(4096)
        if not chunk:
            c.close()
            return
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    line = head.split(b"\r\n")[0].decode("latin-1")
    with open(LOG, "a") as f:
        f.write(line + "\n")
    parts = line.split(" ")
    if len(parts) < 2 or parts[0] != "CONNECT":
        c.sendall(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        c.close()
        return
    host, port = parts[1].rsplit(":", 1)
    try:
        u = socket.create_connection((host, int(port)), 10)
    except OSError as e:
        c.sendall(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        c.close()
        return
    c.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
    if rest:
        u.sendall(rest)
    threading.Thread(target=pipe, args=(u, c), daemon=True).start()
    pipe(c, u)

def main(argv):
    if argv[:1] == ["healthcheck"]:
        host, port = arg(argv, "--addr").rsplit(":", 1)
        socket.create_connection((host, int(port)), 2).close()
        return 0
    if argv[:1] != ["run"]:
        print("stub pipelock: unknown command", argv, file=sys.stderr)
        return 2
    config = open(arg(argv, "--config")).read()
    for line in config.splitlines():
        key, _, value = line.strip().partition(":")
        if key in ("ca_cert", "ca_key"):
            open(json.loads(value.strip())).read()
    host, port = arg(argv, "--listen").rsplit(":", 1)
    srv = socket.create_server((host, int(port)))
    print("stub pipelock listening on", host, port, flush=True)
    while True:
        c, _ = srv.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()

sys.exit(main(sys.argv[1:]))
"#;

const STUB_DOCKERFILE: &str =
    "ARG BASE\nFROM ${BASE}\nCOPY pipelock /pipelock\nENTRYPOINT [\"/pipelock\"]\nCMD []\n";

/// Builds the stand-in image over the agent image (offline, cached by tag).
async fn stub_image(engine: &launcher::engine::docker::Engine, agent_image: &str) -> String {
    let tag = launcher::engine::images::content_tag(
        Component::Pipelock,
        agent_image,
        STUB_DOCKERFILE,
        STUB.as_bytes(),
    )
    .replace("claude-bottle/", "claude-bottle-e2e/");
    if engine.image_exists(&tag).await.expect("inspect stub image") {
        return tag;
    }
    let context = launcher::engine::images::build_context(
        STUB_DOCKERFILE,
        Some(("pipelock", STUB.as_bytes())),
    )
    .expect("stub build context");
    let args = HashMap::from([("BASE".to_owned(), agent_image.to_owned())]);
    engine
        .build_image(context, &tag, args, HashMap::new(), &mut |l| {
            eprintln!("stub: {l}")
        })
        .await
        .expect("building the pipelock stand-in");
    tag
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelock_starts_first_and_egress_chains_through_it() {
    let Some(engine) = engine_or_skip("pipelock_starts_first_and_egress_chains_through_it").await
    else {
        return;
    };
    let mut images = prepare_images(&engine).await;
    let agent_image = images
        .tags
        .get(&Component::Agent)
        .expect("agent image")
        .clone();
    let stub = stub_image(&engine, &agent_image).await;
    images.unavailable.remove(&Component::Pipelock);
    images.tags.insert(Component::Pipelock, stub);
    with_run(engine.clone(), |run| async move {
        let pki = upstream::TestPki::mint();
        let token = format!("e2e-pipelock-{run}");
        let env = BTreeMap::from([("E2E_GITHUB_TOKEN".to_owned(), token.clone())]);
        let Started { bottle, state_root } = start_bottle_of(
            &engine,
            &images,
            &run,
            MANIFEST_PIPELOCK,
            "piped",
            Some(pki.ca_pem.clone()),
            env,
        )
        .await;
        let plan = bottle.plan().clone();
        assert_eq!(
            plan.containers[0].component,
            Component::Pipelock,
            "pipelock starts first"
        );
        let pipelock = plan
            .container(Component::Pipelock)
            .expect("pipelock")
            .clone();
        let egress_net = plan.identity.egress_network();
        let fake = format!("claude-bottle-e2e-plupstream-{run}");
        upstream::start(&engine, &egress_net, &fake, run_labels(&run), &pki).await;

        // The agent reaches the route through egress, and egress went
        // through pipelock (a CONNECT for the upstream in its log).
        let (code, out) = sh(
            &bottle,
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
        let log = engine
            .exec(
                &pipelock.name,
                &pipelock.user,
                &["cat".into(), "/tmp/pipelock-connects.log".into()],
            )
            .await
            .expect("pipelock log");
        assert!(
            log.output.contains("CONNECT api.github.test:443"),
            "egress did not chain through pipelock: {}",
            log.output
        );

        // The config carries the internal network's CIDR on the SSRF
        // allowlist; the files have the planned modes and owner.
        let internal = plan.identity.internal_network();
        let subnets = engine.network_subnets(&internal).await.expect("subnets");
        let cfg = engine
            .exec(
                &pipelock.name,
                &pipelock.user,
                &["cat".into(), PIPELOCK_CONFIG.into()],
            )
            .await
            .expect("read config");
        assert!(cfg.output.contains("ip_allowlist"), "{}", cfg.output);
        assert!(
            subnets.iter().any(|s| cfg.output.contains(s.as_str())),
            "{subnets:?} not in {}",
            cfg.output
        );
        assert!(
            cfg.output.contains("api.github.test"),
            "allowlist mirror: {}",
            cfg.output
        );
        let st = engine
            .exec(
                &pipelock.name,
                "0:0",
                &[
                    "stat".into(),
                    "-c".into(),
                    "%a %u".into(),
                    PIPELOCK_CA_KEY.into(),
                ],
            )
            .await
            .expect("stat key");
        assert_eq!(st.output.trim(), "400 10001", "{}", st.output);

        // pipelock is not a second way out: the agent cannot even resolve it.
        let (code, out) = sh(&bottle, "getent hosts pipelock").await;
        assert_ne!(code, Some(0), "pipelock resolves in the agent: {out}");

        // supervise lists pipelock-block.
        let (code, out) = sh(
            &bottle,
            &format!("python3 - <<'PY'\n{}\nPY", mcp_list_tools_script()),
        )
        .await;
        assert_eq!(code, Some(0), "{out}");
        assert!(
            out.contains("\"pipelock-block\""),
            "pipelock-block missing: {out}"
        );

        engine
            .remove_container(&fake)
            .await
            .expect("remove fake upstream");
        let mut progress = |l: &str| eprintln!("{l}");
        bottle.teardown(&mut progress).await;
        assert!(
            leftovers(&engine, &run).await.is_empty(),
            "teardown left objects"
        );
        drop(state_root);
    })
    .await;
}

/// Set to `1` to run canaries: tests that need a registry (upstream
/// packaging the offline suite cannot check).
pub(crate) const CANARIES_ENV: &str = "CLAUDE_BOTTLE_RUN_CANARIES";

/// Canary: the pinned pipelock image (or `CLAUDE_BOTTLE_PIPELOCK_IMAGE`)
/// pulls by digest, has the entrypoint the plan relies on, and starts in a
/// real bottle with the config the launcher renders: its own health check
/// passes, egress starts chained to it, everything tears down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_the_pinned_pipelock_image_pulls_and_starts() {
    let image = match launcher::engine::images::pipelock_image(None, |k| std::env::var(k).ok()) {
        Ok(i) => i,
        Err(e) => panic!("the pipelock image setting is invalid: {e}"),
    };
    if std::env::var(CANARIES_ENV).as_deref() != Ok("1") {
        eprintln!(
            "SKIP canary_the_pinned_pipelock_image_pulls_and_starts: needs a registry to pull {image}; set {CANARIES_ENV}=1 to run it"
        );
        return;
    }
    let Some(engine) = engine_or_skip("canary_the_pinned_pipelock_image_pulls_and_starts").await
    else {
        return;
    };
    let mut images = prepare_images(&engine).await;
    launcher::engine::images::add_pipelock(Some(&engine), &image, &mut images, &mut |l| {
        eprintln!("pull: {l}")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let info = engine
        .client()
        .inspect_image(&image)
        .await
        .expect("inspect the pulled image");
    let digest = image
        .split_once('@')
        .map(|(_, d)| d.to_owned())
        .expect("pinned");
    let repo_digests = info.repo_digests.clone().unwrap_or_default();
    assert!(
        repo_digests.iter().any(|d| d.ends_with(&digest)),
        "{image} pulled but its repo digests are {repo_digests:?}"
    );
    let entrypoint = info
        .config
        .as_ref()
        .and_then(|c| c.entrypoint.clone())
        .unwrap_or_default();
    assert_eq!(
        entrypoint.first().map(String::as_str),
        Some(launcher::plan::PIPELOCK_BINARY),
        "the plan passes `run …` to the entrypoint and health-checks {}",
        launcher::plan::PIPELOCK_BINARY
    );
    with_run(engine.clone(), |run| async move {
        let env = BTreeMap::from([("E2E_GITHUB_TOKEN".to_owned(), "canary-token".to_owned())]);
        // Ready means pipelock accepted the rendered config and CA files and
        // its own health check passed; egress then started chained to it.
        let Started { bottle, state_root } = start_bottle_of(
            &engine,
            &images,
            &run,
            MANIFEST_PIPELOCK,
            "piped",
            None,
            env,
        )
        .await;
        let (code, out) = sh(
            &bottle,
            &format!("python3 - <<'PY'\n{}\nPY", mcp_list_tools_script()),
        )
        .await;
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains("\"pipelock-block\""), "{out}");
        let mut progress = |l: &str| eprintln!("{l}");
        bottle.teardown(&mut progress).await;
        assert!(
            leftovers(&engine, &run).await.is_empty(),
            "teardown left objects"
        );
        drop(state_root);
    })
    .await;
}
