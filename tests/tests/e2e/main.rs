//! End-to-end: real bottles on a real Docker engine (SPEC §10).
//!
//! Each test labels everything with its run id and removes it by label
//! before and after; without an engine each test fails with the install
//! hint (prints why it is skipped only with `CLAUDE_BOTTLE_ALLOW_SKIPS=1`).

mod approval;
mod cli;
mod compose;
mod images;
mod images_base_pull;
mod images_claude_code;
mod images_sidecars;
mod pipelock;
mod session;
mod upstream;
mod walls;

use std::collections::BTreeMap;
use std::path::Path;

use futures_util::FutureExt as _;
use launcher::engine::BottleEngine as _;
use launcher::engine::docker::Engine;
use launcher::lifecycle::state::{BottleState, Metadata};
use launcher::lifecycle::{self, Bottle, LABEL_LAUNCHER_PID};
use launcher::plan::identity::{Component, Identity};
use launcher::plan::{self, PlanOptions};
use tests::{LABEL_TEST_RUN, engine_or_skip, leftovers, prepare_images, purge, run_id, run_labels};

const MANIFEST: &str = r#"
agents:
  e2e:
    bottle:
      egress:
        routes:
          # The fake upstreams sit on a Docker network (private addresses):
          # the operator's opt-in, as for any internal upstream.
          - host: plain.test
            allow_private: true
          - host: api.github.test
            path_allowlist: [/repos/]
            auth: { scheme: Bearer, token_ref: E2E_GITHUB_TOKEN }
            allow_private: true
      supervise: true
"#;

/// Runs `body` with a fresh run id; removes everything labelled with it
/// before and after, even when `body` panics.
pub(crate) async fn with_run<F, Fut>(engine: Engine, body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let engine = &engine;
    let run = run_id();
    purge(engine, &run).await;
    let result = std::panic::AssertUnwindSafe(body(run.clone()))
        .catch_unwind()
        .await;
    purge(engine, &run).await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    assert!(
        leftovers(engine, &run).await.is_empty(),
        "objects left behind by run {run}"
    );
}

struct Started {
    bottle: Bottle,
    state_root: tempfile::TempDir,
}

async fn start_bottle(
    engine: &Engine,
    images: &launcher::engine::images::ImageSet,
    run: &str,
    upstream_ca: Option<String>,
    token: &str,
) -> Started {
    let env = BTreeMap::from([("E2E_GITHUB_TOKEN".to_owned(), token.to_owned())]);
    start_bottle_of(engine, images, run, MANIFEST, "e2e", upstream_ca, env).await
}

async fn start_bottle_of(
    engine: &Engine,
    images: &launcher::engine::images::ImageSet,
    run: &str,
    manifest_text: &str,
    agent_name: &str,
    upstream_ca: Option<String>,
    env: BTreeMap<String, String>,
) -> Started {
    start_bottle_with(engine, images, run, manifest_text, agent_name, env, |o| {
        o.upstream_ca = upstream_ca;
    })
    .await
}

/// Starts a bottle of `agent_name` from `manifest_text`, with `tweak`
/// applied to its plan options (workspace, upstream CA, …).
pub(crate) async fn start_bottle_with(
    engine: &Engine,
    images: &launcher::engine::images::ImageSet,
    run: &str,
    manifest_text: &str,
    agent_name: &str,
    env: BTreeMap<String, String>,
    tweak: impl FnOnce(&mut PlanOptions),
) -> Started {
    let manifest = manifest::Manifest::parse(manifest_text, "e2e.yaml").expect("manifest");
    let agent = manifest.agent(agent_name).expect("agent");
    let identity = Identity::mint(agent.name()).expect("identity");
    let state_root = tempfile::tempdir().expect("state root");
    let state = BottleState::new(state_root.path(), &identity);
    let mut extra = run_labels(run);
    extra.insert(LABEL_LAUNCHER_PID.into(), std::process::id().to_string());
    let mut opts = PlanOptions {
        identity: identity.clone(),
        cwd: None,
        queue_dir: state.queue_dir(),
        images: images.tags.clone(),
        unavailable: images.unavailable.clone(),
        extra_labels: extra,
        upstream_ca: None,
        skills: Vec::new(),
        workspace_mode: None,
    };
    tweak(&mut opts);
    let dockerfile =
        launcher::engine::images::agent_dockerfile(&launcher::engine::images::AgentImage::Default)
            .expect("default Dockerfile")
            .expect("embedded");
    let plan = plan::build(agent, &opts)
        .expect("plan")
        .with_current_dockerfile(&dockerfile);
    let meta = Metadata {
        identity: identity.to_string(),
        agent: agent_name.into(),
        cwd: opts.cwd.clone(),
        started_at: "2026-01-01T00:00:00Z".into(),
        launcher_version: "test".into(),
        images: BTreeMap::new(),
    };
    let env = move |k: &str| env.get(k).cloned();
    let mut progress = |l: &str| eprintln!("[{identity}] {l}");
    let bottle = lifecycle::launch(engine, plan, state, meta, &env, &mut progress)
        .await
        .expect("bottle starts");
    Started { bottle, state_root }
}

async fn sh(bottle: &Bottle, script: &str) -> (Option<i64>, String) {
    let out = bottle
        .exec_in_agent(&["sh".to_owned(), "-c".to_owned(), script.to_owned()])
        .await
        .expect("exec in agent");
    (out.code, out.output)
}

fn secret_token() -> String {
    format!("e2e-secret-{}", run_id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bottle_isolates_injects_and_tears_down() {
    let Some(engine) = engine_or_skip("a_bottle_isolates_injects_and_tears_down").await else {
        return;
    };
    let images = prepare_images(&engine).await;
    with_run(engine.clone(), |run| async move {
        let pki = upstream::TestPki::mint();
        let token = secret_token();
        let Started { bottle, state_root } = start_bottle(&engine, &images, &run, Some(pki.ca_pem.clone()), &token).await;
        let plan = bottle.plan().clone();
        let egress_net = plan.identity.egress_network();
        let fake = format!("claude-bottle-e2e-upstream-{run}");
        upstream::start(&engine, &egress_net, &fake, run_labels(&run), &pki).await;
        let fake_ip = upstream::ip_on(&engine, &fake, &egress_net).await;

        // Allowed route: the upstream sees the injected token.
        let (code, out) = sh(&bottle, "curl -sS --max-time 30 https://api.github.test/repos/acme/app").await;
        assert_eq!(code, Some(0), "{out}");
        let echo: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(echo["path"], "/repos/acme/app", "{out}");
        assert_eq!(echo["headers"]["authorization"], format!("Bearer {token}"), "{out}");

        // A path outside the allowlist and a host outside it: readable 403s.
        let (_, out) = sh(&bottle, "curl -sS --max-time 30 -w '\\n%{http_code}' https://api.github.test/orgs/x").await;
        assert!(out.trim_end().ends_with("403"), "{out}");
        assert!(out.contains("/orgs/x"), "the denial names the path: {out}");
        let (_, out) = sh(&bottle, "curl -sS --max-time 30 -w '\\n%{http_code}' https://notallowed.test/").await;
        assert!(out.trim_end().ends_with("403") && out.contains("notallowed.test"), "{out}");

        // Plain http:// goes through the proxy too (lowercase http_proxy).
        let (code, out) = sh(&bottle, "curl -sS --max-time 30 http://plain.test/hello").await;
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains("\"path\": \"/hello\""), "{out}");

        // The token is nowhere in the agent: env, /proc/*/environ, files it
        // can read, the introspection endpoint.
        let (_, env) = sh(&bottle, "env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'").await;
        assert!(!env.contains(&token), "token visible in the agent environment");
        let (_, files) = sh(&bottle, &format!("grep -rIl -- '{token}' / 2>/dev/null | head -5")).await;
        assert!(files.trim().is_empty(), "token in agent files: {files}");
        let (code, intro) = sh(&bottle, "curl -sS --max-time 30 http://_egress.local/allowlist").await;
        assert_eq!(code, Some(0), "{intro}");
        assert!(intro.contains("api.github.test") && !intro.contains(&token), "{intro}");

        // No direct path: no DNS for the upstream's alias, no TCP to its IP.
        let (code, out) = sh(&bottle, "getent hosts api.github.test").await;
        assert_ne!(code, Some(0), "the egress-only alias resolves in the agent: {out}");
        let probe = format!(
            "python3 -c \"import socket; socket.create_connection(('{fake_ip}', 443), 5)\" 2>&1; echo rc=$?"
        );
        let (_, out) = sh(&bottle, &probe).await;
        assert!(!out.contains("rc=0"), "direct TCP to the upstream succeeded: {out}");

        // Files copied in are owned by the sidecar user with the stated modes.
        let egress = plan.container(Component::Egress).expect("egress").name.clone();
        // (The image has no shell or stat: read the modes from an archive.)
        for (path, mode) in [("/etc/egress-proxy/routes.yaml", 0o644), ("/etc/egress-proxy/ca.key", 0o400)] {
            assert_eq!(tests::mode_and_owner(&engine, &egress, path).await, (mode, 10001), "{path}");
        }
        // The CA key is only in egress.
        let (code, _) = sh(&bottle, "grep -rl 'PRIVATE KEY' /etc /usr/local/share 2>/dev/null | grep -q .").await;
        assert_ne!(code, Some(0), "a private key is readable in the agent");

        // A command's exit status comes back unchanged.
        let (code, _) = sh(&bottle, "exit 7").await;
        assert_eq!(code, Some(7));

        // Teardown: the fake upstream first (it sits on the bottle's network).
        engine.remove_container(&fake).await.expect("remove fake upstream");
        let state_dir = state_root.path().join(plan.identity.as_str());
        assert!(state_dir.is_dir());
        let mut progress = |l: &str| eprintln!("{l}");
        bottle.teardown(&mut progress).await;
        assert!(leftovers(&engine, &run).await.is_empty(), "teardown left objects");
        assert!(!state_dir.exists(), "teardown left the state directory");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bottles_of_one_agent_do_not_collide() {
    let Some(engine) = engine_or_skip("two_bottles_of_one_agent_do_not_collide").await else {
        return;
    };
    let images = prepare_images(&engine).await;
    with_run(engine.clone(), |run| async move {
        let (a, b) = tokio::join!(
            start_bottle(&engine, &images, &run, None, "t1"),
            start_bottle(&engine, &images, &run, None, "t2"),
        );
        assert_ne!(a.bottle.plan().identity, b.bottle.plan().identity);
        let mut progress = |l: &str| eprintln!("{l}");
        a.bottle.teardown(&mut progress).await;
        // The other bottle is untouched by the first one's teardown.
        let (code, _) = sh(&b.bottle, "true").await;
        assert_eq!(code, Some(0));
        b.bottle.teardown(&mut progress).await;
        drop((a.state_root, b.state_root));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphan_probe_refuses_and_cleanup_removes_planted_orphans() {
    let Some(engine) =
        engine_or_skip("an_orphan_probe_refuses_and_cleanup_removes_planted_orphans").await
    else {
        return;
    };
    let images = prepare_images(&engine).await;
    with_run(engine.clone(), |run| async move {
        let manifest = manifest::Manifest::parse(MANIFEST, "e2e.yaml").expect("manifest");
        let agent = manifest.agent("e2e").expect("agent");
        let identity = Identity::mint(agent.name()).expect("identity");
        // Plant an orphan: a network with the bottle's name and a container,
        // labelled as a bottle whose launcher (pid) is gone.
        let mut labels = identity.labels("e2e", "agent");
        labels.extend(run_labels(&run));
        labels.insert(LABEL_LAUNCHER_PID.into(), u32::MAX.to_string());
        let net = launcher::plan::NetworkPlan {
            name: identity.internal_network(),
            internal: true,
            options: BTreeMap::new(),
            labels: labels.clone(),
        };
        engine.create_network(&net).await.expect("plant network");
        let orphan = launcher::plan::ContainerPlan {
            component: Component::Agent,
            name: identity.container_name(Component::Agent),
            image: images.tags[&Component::Agent].clone(),
            user: "1000:1000".into(),
            cmd: vec!["sleep".into(), "infinity".into()],
            workdir: None,
            networks: vec![launcher::plan::Attachment {
                network: net.name.clone(),
                aliases: vec![],
            }],
            env: BTreeMap::new(),
            secret_env: vec![],
            files: vec![],
            mounts: vec![],
            volumes: Vec::new(),
            confinement: launcher::plan::Confinement::engine_default(),
            health: None,
            labels,
        };
        engine
            .create_container(&orphan, &[])
            .await
            .expect("plant container");
        let mut vlabels = identity.labels("e2e", "volume-egress");
        vlabels.extend(run_labels(&run));
        engine
            .create_volume(&launcher::plan::VolumePlan {
                name: format!("{}-config", identity.container_name(Component::Egress)),
                labels: vlabels,
            })
            .await
            .expect("plant volume");

        // A launch with that identity stops before creating anything.
        let state_root = tempfile::tempdir().expect("state root");
        let state = BottleState::new(state_root.path(), &identity);
        let opts = PlanOptions {
            identity: identity.clone(),
            cwd: None,
            queue_dir: state.queue_dir(),
            images: images.tags.clone(),
            unavailable: images.unavailable.clone(),
            extra_labels: run_labels(&run),
            upstream_ca: None,
            skills: Vec::new(),
            workspace_mode: None,
        };
        let plan = plan::build(agent, &opts).expect("plan");
        let meta = Metadata {
            identity: identity.to_string(),
            agent: "e2e".into(),
            cwd: None,
            started_at: "2026-01-01T00:00:00Z".into(),
            launcher_version: "test".into(),
            images: BTreeMap::new(),
        };
        let env = |k: &str| (k == "E2E_GITHUB_TOKEN").then(|| "x".to_owned());
        let mut progress = |l: &str| eprintln!("{l}");
        let err = lifecycle::launch(&engine, plan, state, meta, &env, &mut progress)
            .await
            .expect_err("orphans refuse the launch");
        let msg = err.to_string();
        assert!(
            msg.contains("launcher cleanup") && msg.contains(&identity.internal_network()),
            "{msg}"
        );
        assert!(
            msg.contains(&format!(
                "{}-config",
                identity.container_name(Component::Egress)
            )),
            "the planted volume is found by the probe: {msg}"
        );
        assert!(
            !state_root.path().join(identity.as_str()).exists(),
            "nothing created on refusal"
        );

        // cleanup: find it as an orphan and remove it by label.
        let found = engine.bottles().await.expect("find");
        let mine = found
            .iter()
            .find(|f| f.identity == identity.as_str())
            .expect("planted bottle found");
        assert!(mine.is_orphan());
        let removed = engine
            .remove_bottle(identity.as_str())
            .await
            .expect("remove");
        assert_eq!(
            removed.len(),
            3,
            "container, volume and network: {removed:?}"
        );
        assert!(leftovers(&engine, &run).await.is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_token_stops_the_launch_by_name_before_docker_is_touched() {
    let Some(engine) =
        engine_or_skip("a_missing_token_stops_the_launch_by_name_before_docker_is_touched").await
    else {
        return;
    };
    with_run(engine.clone(), |run| async move {
        let manifest = manifest::Manifest::parse(MANIFEST, "e2e.yaml").expect("manifest");
        let agent = manifest.agent("e2e").expect("agent");
        let identity = Identity::mint(agent.name()).expect("identity");
        let state_root = tempfile::tempdir().expect("state root");
        let state = BottleState::new(state_root.path(), &identity);
        let images: BTreeMap<Component, String> = Component::ALL
            .into_iter()
            .map(|c| (c, format!("claude-bottle/{c}:none")))
            .collect();
        let opts = PlanOptions {
            identity: identity.clone(),
            cwd: None,
            queue_dir: state.queue_dir(),
            images,
            unavailable: BTreeMap::new(),
            extra_labels: BTreeMap::from([(LABEL_TEST_RUN.to_owned(), run.clone())]),
            upstream_ca: None,
            skills: Vec::new(),
            workspace_mode: None,
        };
        let plan = plan::build(agent, &opts).expect("plan");
        let meta = Metadata {
            identity: identity.to_string(),
            agent: "e2e".into(),
            cwd: None,
            started_at: "2026-01-01T00:00:00Z".into(),
            launcher_version: "test".into(),
            images: BTreeMap::new(),
        };
        let mut progress = |l: &str| eprintln!("{l}");
        let err = lifecycle::launch(&engine, plan, state, meta, &|_| None, &mut progress)
            .await
            .expect_err("missing token");
        assert!(err.to_string().contains("E2E_GITHUB_TOKEN"), "{err}");
        assert!(leftovers(&engine, &run).await.is_empty());
        assert!(!Path::new(&state_root.path().join(identity.as_str())).exists());
    })
    .await;
}

const MANIFEST_GIT: &str = r#"
agents:
  gitter:
    bottle:
      git:
        - name: app
          upstream: "https://git.test/acme/app.git"
          auth: { token_ref: E2E_GIT_TOKEN }
      supervise: true
"#;

/// The opening of a minimal MCP client (streamable HTTP, JSON-RPC) in
/// Python's standard library — the agent image has no MCP package
/// (air-gapped build): `post` and an initialised session `sid`. `TIMEOUT`
/// must be defined before it.
pub(crate) const MCP_SESSION: &str = r#"
import json, sys, urllib.request
URL = "http://supervise:9100/mcp"
def post(msg, sid=None):
    h = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    if sid:
        h["mcp-session-id"] = sid
    req = urllib.request.Request(URL, data=json.dumps(msg).encode(), headers=h, method="POST")
    with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
        body = r.read().decode()
        sid = r.headers.get("mcp-session-id") or sid
    msgs = []
    if body.strip().startswith("{"):
        msgs.append(json.loads(body))
    else:
        for line in body.splitlines():
            if line.startswith("data:") and line[5:].strip():
                msgs.append(json.loads(line[5:]))
    return sid, msgs
sid, _ = post({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "0"}}})
post({"jsonrpc": "2.0", "method": "notifications/initialized"}, sid)
"#;

/// Lists supervise's tools as a sorted JSON array of names.
pub(crate) fn mcp_list_tools_script() -> String {
    format!(
        "TIMEOUT = 60\n{MCP_SESSION}{}",
        r#"_, msgs = post({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}, sid)
print(json.dumps(sorted(t["name"] for m in msgs if "result" in m for t in m["result"]["tools"])))
"#
    )
}

fn random_alnum(n: usize) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).expect("randomness");
    b.iter()
        .map(|x| char::from(A[usize::from(*x) % A.len()]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_goes_through_the_gate_and_mcp_reaches_supervise() {
    let Some(engine) = engine_or_skip("git_goes_through_the_gate_and_mcp_reaches_supervise").await
    else {
        return;
    };
    let images = prepare_images(&engine).await;
    with_run(engine.clone(), |run| async move {
        let pki = upstream::TestPki::mint();
        let git_token = format!("e2e-git-{}", run_id());
        let env = BTreeMap::from([("E2E_GIT_TOKEN".to_owned(), git_token.clone())]);
        let Started { bottle, state_root } =
            start_bottle_of(&engine, &images, &run, MANIFEST_GIT, "gitter", Some(pki.ca_pem.clone()), env).await;
        let plan = bottle.plan().clone();
        assert!(plan.container(Component::GitGate).is_some(), "git-gate is planned: {:?}", plan.omitted);
        let egress_net = plan.identity.egress_network();
        let fake = format!("claude-bottle-e2e-git-{run}");
        upstream::start(&engine, &egress_net, &fake, run_labels(&run), &pki).await;

        // Clone and a clean push, through the upstream URL (insteadOf -> git-gate).
        let script = format!(
            "set -e; cd /tmp; git clone -q {url} app 2>&1; cd app; test -f README.md; \
             echo clean > clean.txt; git add clean.txt; \
             git -c user.name=e2e -c user.email=e2e@example.test commit -q -m clean-commit; \
             git push -q origin HEAD:main 2>&1",
            url = upstream::GIT_UPSTREAM
        );
        let (code, out) = sh(&bottle, &script).await;
        assert_eq!(code, Some(0), "clone + clean push: {out}");
        let log = engine
            .exec(&fake, "0:0", &["git".into(), "-C".into(), "/srv/git/app.git".into(), "log".into(), "--format=%s".into(), "main".into()])
            .await
            .expect("upstream log");
        assert!(log.output.contains("clean-commit"), "the clean push reached the upstream: {}", log.output);

        // A push carrying a secret is refused, naming the file; nothing lands.
        let secret = format!("ghp_{}", random_alnum(36));
        let script = format!(
            "cd /tmp/app; printf 'token = \"%s\"\\n' '{secret}' > leak.txt; git add leak.txt; \
             git -c user.name=e2e -c user.email=e2e@example.test commit -q -m leak-commit; \
             git push origin HEAD:main 2>&1"
        );
        let (code, out) = sh(&bottle, &script).await;
        assert_ne!(code, Some(0), "a push with a secret was accepted: {out}");
        assert!(out.contains("leak.txt"), "the refusal names the file: {out}");
        assert!(!out.contains(&secret), "the refusal must redact the secret: {out}");
        let log = engine
            .exec(&fake, "0:0", &["git".into(), "-C".into(), "/srv/git/app.git".into(), "log".into(), "--format=%s".into(), "main".into()])
            .await
            .expect("upstream log");
        assert!(!log.output.contains("leak-commit"), "the secret reached the upstream: {}", log.output);

        // The gate presented the operator's token upstream; the agent never sees it.
        let auth = engine
            .exec(&fake, "0:0", &["cat".into(), "/srv/auth.log".into()])
            .await
            .expect("auth log");
        assert!(auth.output.contains(&git_token), "upstream saw no token: {}", auth.output);
        let (_, seen) = sh(&bottle, "env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'; cat ~/.gitconfig /etc/gitconfig /tmp/app/.git/config 2>/dev/null").await;
        assert!(!seen.contains(&git_token), "git token visible in the agent");

        // An MCP client in the agent lists supervise's tools.
        let (code, out) = sh(&bottle, &format!("python3 - <<'PY'\n{}\nPY", mcp_list_tools_script())).await;
        assert_eq!(code, Some(0), "{out}");
        for tool in ["egress-block", "list-egress-routes", "capability-block", "proposal-status"] {
            assert!(out.contains(&format!("\"{tool}\"")), "tool {tool} missing: {out}");
        }

        // supervise reads the current Dockerfile: root-owned 0644 (SPEC §6).
        let sup = plan.container(Component::Supervise).expect("supervise planned");
        let df = launcher::plan::CURRENT_DOCKERFILE;
        // Readable by supervise's user (10001), writable by root only.
        assert_eq!(tests::mode_and_owner(&engine, &sup.name, df).await, (0o644, 0));

        engine.remove_container(&fake).await.expect("remove fake upstream");
        let mut progress = |l: &str| eprintln!("{l}");
        bottle.teardown(&mut progress).await;
        drop(state_root);
    })
    .await;
}
