//! The operator's day around a session: `launcher start claude` runs Claude
//! Code attached (a stand-in package installed with `--claude-code`, in a
//! pseudo-terminal) and `resume` continues its transcript; the agent reads
//! the Dockerfile it runs, an agent-proposed Dockerfile builds with no
//! network, `launcher stop` ends a waiting `run` cleanly, `launcher list`
//! shows preserved states, and approved routes survive a resume.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use launcher::engine::BottleEngine as _;
use launcher::engine::docker::Engine;
use launcher::plan::identity::{Component, Identity};
use sha2::Digest as _;
use tests::{
    LABEL_TEST_RUN, bin_dir, engine_or_skip, leftovers, prepare_images, run_id, run_labels,
    workspace,
};

use crate::{upstream, with_run};

const MANIFEST: &str = "agents:
  day:
    bottle:
      egress:
        # The fake upstream is on a Docker network: the operator's opt-in.
        routes:
          - host: plain.test
            allow_private: true
      supervise: true
";

/// A manifest, a state root and an upstream CA in a temporary directory,
/// and `launcher` commands labelled with the test's run.
struct Day {
    dir: tempfile::TempDir,
    run: String,
}

impl Day {
    fn new(run: &str, ca_pem: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("m.yaml"), MANIFEST).expect("manifest");
        std::fs::write(dir.path().join("ca.pem"), ca_pem).expect("ca");
        std::fs::create_dir(dir.path().join("state")).expect("state");
        Self {
            dir,
            run: run.to_owned(),
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `launcher <args>` with the state root (and nothing else) set.
    fn launcher(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin_dir().join("launcher"));
        c.args(args)
            .env("CLAUDE_BOTTLE_STATE_DIR", self.state())
            .stdin(Stdio::null());
        c
    }

    /// `launcher start|run day` with the test's manifest, binaries, label
    /// and upstream CA.
    fn bottle(&self, sub: &str) -> Command {
        let mut c = self.launcher(&[sub, "day"]);
        c.arg("--manifest")
            .arg(self.dir.path().join("m.yaml"))
            .arg("--bin-dir")
            .arg(bin_dir())
            .arg("--upstream-ca")
            .arg(self.dir.path().join("ca.pem"))
            .arg("--label")
            .arg(format!("{LABEL_TEST_RUN}={}", self.run));
        c
    }
}

/// Runs `c` to completion: (success, stdout + stderr).
fn output(c: &mut Command) -> (bool, String) {
    let out = c.output().expect("launcher runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Spawns `c` with its stderr read line by line into a channel (and
/// echoed, prefixed with `tag`).
fn spawn(c: &mut Command, tag: &'static str) -> (Child, Receiver<String>) {
    let mut child = c
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn launcher");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{tag}: {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits (bounded) for a line containing `what`; returns the lines read
/// up to and including it.
async fn wait_line(rx: Receiver<String>, what: &str, secs: u64) -> (Receiver<String>, String) {
    let what = what.to_owned();
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut seen = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => {
                    seen.push_str(&l);
                    seen.push('\n');
                    if l.contains(&what) {
                        return (rx, seen);
                    }
                }
                Err(e) => panic!("waiting {secs} s for {what:?}: {e}; read so far:\n{seen}"),
            }
        }
    })
    .await
    .expect("join")
}

/// Waits (bounded) until `child` exits; returns its status and the rest
/// of its stderr.
async fn wait_exit(
    mut child: Child,
    rx: Receiver<String>,
    secs: u64,
) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the launcher did not exit within {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let rest = tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        while let Ok(l) = rx.recv_timeout(Duration::from_secs(5)) {
            out.push_str(&l);
            out.push('\n');
        }
        out
    })
    .await
    .expect("join");
    (status, rest)
}

/// The identity in a `bottle <identity> is running` / `resumed` line.
fn identity_in(text: &str) -> Identity {
    let id = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("bottle ")
                .and_then(|r| r.split_whitespace().next())
        })
        .unwrap_or_else(|| panic!("no `bottle <identity>` line in:\n{text}"));
    Identity::parse(id).expect("identity")
}

/// Runs `script` in the agent of `identity` as the agent user.
async fn in_agent(engine: &Engine, identity: &Identity, script: &str) -> (Option<i64>, String) {
    let out = engine
        .exec(
            &identity.container_name(Component::Agent),
            "1000:1000",
            &["sh".to_owned(), "-c".to_owned(), script.to_owned()],
        )
        .await
        .expect("exec in the agent");
    (out.code, out.output)
}

/// Starts an MCP tool call in the agent in the background; its answer
/// lands in `/tmp/<tag>.out`, then `/tmp/<tag>.done`.
async fn call_tool(
    engine: &Engine,
    identity: &Identity,
    tag: &str,
    tool: &str,
    args: &serde_json::Value,
) {
    let script = format!(
        "cat > /tmp/mcp_call.py <<'PY'\n{}\nPY\ncat > /tmp/{tag}.json <<'JSON'\n{args}\nJSON\n\
         nohup sh -c 'python3 /tmp/mcp_call.py {tool} \"$(cat /tmp/{tag}.json)\" > /tmp/{tag}.out 2>&1; touch /tmp/{tag}.done' >/dev/null 2>&1 &\necho started",
        crate::approval::mcp_call_script()
    );
    let (code, out) = in_agent(engine, identity, &script).await;
    assert_eq!(code, Some(0), "{out}");
}

/// Polls until a pending proposal of `identity` whose request mentions
/// `needle` appears; returns its id.
async fn wait_proposal(state: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (pending, _) = launcher::approvals::list_pending(state, None).expect("list pending");
        if let Some(p) = pending
            .iter()
            .find(|p| serde_json::to_string(&p.proposal).is_ok_and(|j| j.contains(needle)))
        {
            return p.proposal.id.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no proposal mentioning {needle} within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Polls a file in the agent until it exists; returns the paired output.
async fn wait_answer(engine: &Engine, identity: &Identity, tag: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (code, text) = in_agent(
            engine,
            identity,
            &format!("test -f /tmp/{tag}.done && cat /tmp/{tag}.out"),
        )
        .await;
        if code == Some(0) {
            return text;
        }
        assert!(Instant::now() < deadline, "no answer to {tag} within 120 s");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A `RUN` step that finds its default gateway (the host, on any bridge)
/// and connects to `port` there, printing `probe-result 0` when it got
/// through. Only literal addresses: no name is ever resolved.
fn probe_dockerfile(port: u16, nonce: &str) -> String {
    format!(
        "ARG BASE\nFROM ${{BASE}}\nRUN python3 -c \"import socket,struct; \
         r=[l.split() for l in open('/proc/net/route').read().splitlines()[1:]]; \
         g=[socket.inet_ntoa(struct.pack('<L',int(f[2],16))) for f in r if f[1]=='00000000']; \
         print('probe-gateway', g, '{nonce}'); s=socket.socket(); s.settimeout(5); \
         print('probe-result', s.connect_ex((g[0] if g else '172.17.0.1', {port})))\"\n"
    )
}

/// Whether `listener` has a connection waiting (bounded wait).
async fn has_connection(listener: &tokio::net::TcpListener, within: Duration) -> bool {
    tokio::time::timeout(within, listener.accept())
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_dockerfile_builds_with_no_network() {
    let Some(engine) = engine_or_skip("an_approved_dockerfile_builds_with_no_network").await else {
        return;
    };
    prepare_images(&engine).await;
    // The test's own listener on every host interface: the bridge's
    // gateway address reaches it from any container on a bridge.
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0")
        .await
        .expect("listener");
    let port = listener.local_addr().expect("addr").port();
    let nonce = run_id();
    let identity = Identity::parse(&format!("probe-{}", &nonce[..5])).expect("identity");
    let dockerfile = probe_dockerfile(port, &nonce);
    let base = launcher::engine::images::base_tag();

    // Control: the same RUN step on the engine's default network reaches
    // the listener, so the probe can see a wall that is not there.
    let control_tag = format!("claude-bottle/e2e-probe:{nonce}");
    let mut control_log = Vec::new();
    let context = launcher::engine::images::build_context(&dockerfile, None).expect("context");
    engine
        .build_image(
            context,
            &control_tag,
            HashMap::from([("BASE".to_owned(), base.clone())]),
            HashMap::new(),
            &mut |l| control_log.push(l.to_owned()),
        )
        .await
        .expect("control build");
    let _ = launcher::approvals::capability::remove_resume_image(&engine, &control_tag).await;
    let control = control_log.join("\n");
    assert!(
        control.contains("probe-result 0"),
        "the control build could not reach the test's listener; the probe proves nothing:\n{control}"
    );
    assert!(
        has_connection(&listener, Duration::from_secs(5)).await,
        "control: no connection arrived"
    );

    // The approved Dockerfile, built the way `launcher resume` builds it.
    let mut log = Vec::new();
    let tag = launcher::lifecycle::resume::build::build_proposed(
        &engine,
        &identity,
        &dockerfile,
        &base,
        None,
        &mut |l| log.push(l.to_owned()),
    )
    .await
    .expect("the proposed image builds");
    let _ = launcher::approvals::capability::remove_resume_image(&engine, &tag).await;
    let log = log.join("\n");
    assert!(
        log.contains("probe-gateway []") && log.contains("probe-result"),
        "the RUN step ran without any route: {log}"
    );
    assert!(
        !log.contains("probe-result 0"),
        "a RUN step reached the host: {log}"
    );
    assert!(
        !has_connection(&listener, Duration::from_secs(2)).await,
        "the listener received a connection from the proposed build"
    );
}

/// A session around a capability approval, driven through the `launcher`
/// binary as an operator would: the agent reads the Dockerfile it runs
/// (and cannot change it), gets a route and a credential approved, then a
/// Dockerfile; `start` ends printing the resume command, `list` shows the
/// preserved state, and `resume` brings the bottle back with the approved
/// routes live (the credential read again from the operator's
/// environment, by the name recorded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_routes_survive_a_resume() {
    let Some(engine) = engine_or_skip("approved_routes_survive_a_resume").await else {
        return;
    };
    prepare_images(&engine).await;
    with_run(engine.clone(), |run| async move {
        let pki = upstream::TestPki::mint();
        let day = Day::new(&run, &pki.ca_pem);
        let state = day.state();
        let (start, rx) = spawn(day.bottle("start").arg("--yes"), "start");
        let (rx, seen) = wait_line(rx, "is running", 300).await;
        assert!(seen.contains("minted the bottle CA, SHA-256 "), "{seen}");
        assert!(seen.contains("built with no network"), "{seen}");
        let identity = identity_in(&seen);
        let fake = format!("claude-bottle-e2e-day-{run}");
        upstream::start(
            &engine,
            &identity.egress_network(),
            &fake,
            run_labels(&run),
            &pki,
        )
        .await;

        // The agent reads the Dockerfile it runs; it cannot change or replace it.
        let df = launcher::plan::CURRENT_DOCKERFILE;
        let (code, current) = in_agent(&engine, &identity, &format!("cat {df}")).await;
        assert_eq!(code, Some(0), "{current}");
        let embedded = launcher::engine::images::agent_dockerfile(
            &launcher::engine::images::AgentImage::Default,
        )
        .expect("default Dockerfile")
        .expect("embedded");
        assert_eq!(current, embedded);
        for write in [
            format!("echo x >> {df}"),
            format!("rm -f {df}"),
            format!("mv {df} /tmp/x"),
            format!("touch {}/other", df.rsplit_once('/').map_or("", |(d, _)| d)),
        ] {
            let (code, out) = in_agent(&engine, &identity, &write).await;
            assert_ne!(code, Some(0), "`{write}` succeeded in the agent: {out}");
        }
        let (_, after) = in_agent(&engine, &identity, &format!("cat {df}")).await;
        assert_eq!(after, embedded, "the Dockerfile changed");

        // A route and a credential, approved during the session.
        let get = "curl -sS --max-time 20 https://notallowed.test/x";
        let (_, out) = in_agent(
            &engine,
            &identity,
            &format!("{get} -o /dev/null -w '%{{http_code}}'"),
        )
        .await;
        assert_eq!(out.trim(), "403", "{out}");
        call_tool(
            &engine,
            &identity,
            "route",
            "egress-block",
            &serde_json::json!({"host": "notallowed.test", "justification": "e2e"}),
        )
        .await;
        let id = wait_proposal(&state, "notallowed.test").await;
        let (ok, out) = output(&mut day.launcher(&["approve", &id, "--allow-private"]));
        assert!(ok, "approve: {out}");
        assert!(
            wait_answer(&engine, &identity, "route")
                .await
                .contains("Approved")
        );
        let grant = format!("grant-{run}");
        call_tool(
            &engine,
            &identity,
            "cred",
            "egress-block",
            &serde_json::json!({
            "host": "granted.test",
            "auth": {"scheme": "Bearer", "token_ref": "E2E_DAY_GRANT"},
            "justification": "e2e"}),
        )
        .await;
        let id = wait_proposal(&state, "granted.test").await;
        let (ok, out) = output(
            day.launcher(&[
                "approve",
                &id,
                "--grant",
                "E2E_DAY_GRANT",
                "--allow-private",
            ])
            .env("E2E_DAY_GRANT", &grant),
        );
        assert!(ok, "approve --grant: {out}");
        assert!(
            wait_answer(&engine, &identity, "cred")
                .await
                .contains("Approved")
        );
        let echo = "curl -sS --max-time 20 https://granted.test/echo";
        let (_, out) = in_agent(&engine, &identity, echo).await;
        assert!(out.contains(&format!("Bearer {grant}")), "{out}");

        // A Dockerfile from the one the agent read.
        let proposed = format!("{current}RUN echo resumed-ok > /home/agent/added.txt\n");
        call_tool(
            &engine,
            &identity,
            "cap",
            "capability-block",
            &serde_json::json!({"dockerfile": proposed, "justification": "needs a file"}),
        )
        .await;
        let id = wait_proposal(&state, "resumed-ok").await;
        // The fake upstream leaves the bottle's network before it goes.
        engine
            .remove_container(&fake)
            .await
            .expect("remove fake upstream");
        let (ok, out) = output(&mut day.launcher(&["approve", &id, "--note", "go"]));
        assert!(ok, "approve capability: {out}");
        let (status, rest) = wait_exit(start, rx, 120).await;
        assert!(status.success(), "start exited {status}: {rest}");
        assert!(
            rest.contains(&format!("  launcher resume {identity}")),
            "start's last words: {rest}"
        );
        assert!(!rest.contains("teardown:"), "{rest}");
        let saved = std::fs::read_to_string(state.join(identity.as_str()).join("routes.yaml"))
            .expect("routes kept");
        assert!(
            saved.contains("notallowed.test")
                && saved.contains("granted.test")
                && !saved.contains(&grant),
            "{saved}"
        );

        // `list` shows the preserved state with the command.
        let (ok, out) = output(&mut day.launcher(&["list"]));
        assert!(
            ok && out.contains(&format!("launcher resume {identity}")),
            "list: {out}"
        );
        let (ok, out) = output(&mut day.launcher(&["list", "--format", "json"]));
        let v: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{ok} {e}: {out}"));
        assert!(
            v["preserved"]
                .as_array()
                .is_some_and(|p| p.iter().any(|x| x["identity"] == identity.as_str())),
            "{v}"
        );

        // Without the granted credential exported, the resume stops by its name.
        let (ok, out) = output(&mut day.launcher(&["resume", identity.as_str(), "--yes"]));
        assert!(!ok && out.contains("E2E_DAY_GRANT"), "{out}");
        assert!(
            state.join(identity.as_str()).join(".preserve").exists(),
            "a failed resume keeps the state"
        );

        let (resume, rx) = spawn(
            day.launcher(&["resume", identity.as_str(), "--yes"])
                .env("E2E_DAY_GRANT", &grant),
            "resume",
        );
        let (rx, seen) = wait_line(rx, "resumed from", 400).await;
        assert!(
            seen.contains("notallowed.test") && seen.contains("granted.test"),
            "the preflight shows the restored routes: {seen}"
        );
        assert!(seen.contains("no network"), "{seen}");
        upstream::start(
            &engine,
            &identity.egress_network(),
            &fake,
            run_labels(&run),
            &pki,
        )
        .await;
        let (_, out) = in_agent(&engine, &identity, "cat /home/agent/added.txt").await;
        assert_eq!(out.trim(), "resumed-ok");
        let (_, out) = in_agent(
            &engine,
            &identity,
            &format!("{get} -o /dev/null -w '%{{http_code}}'"),
        )
        .await;
        assert_eq!(
            out.trim(),
            "200",
            "the approved route is live after the resume: {out}"
        );
        let (_, out) = in_agent(&engine, &identity, echo).await;
        assert!(
            out.contains(&format!("Bearer {grant}")),
            "the granted credential after the resume: {out}"
        );
        let (_, out) = in_agent(&engine, &identity, &format!("cat {df}")).await;
        assert_eq!(out, proposed, "the agent reads the Dockerfile it now runs");

        // `stop` ends the waiting resume cleanly.
        engine
            .remove_container(&fake)
            .await
            .expect("remove fake upstream");
        let (ok, out) = output(&mut day.launcher(&["stop", identity.as_str()]));
        assert!(ok, "stop: {out}");
        let (status, rest) = wait_exit(resume, rx, 120).await;
        assert!(
            !rest.contains("teardown:") && !rest.contains("error"),
            "resume after stop: {rest}"
        );
        // Like `start`, a session ended by a signal is a normal end.
        assert!(status.success(), "{status}: {rest}");
        assert!(leftovers(&engine, &run).await.is_empty(), "objects left");
        assert!(!state.join(identity.as_str()).exists(), "state left");
    })
    .await;
}

/// `launcher stop` while a `launcher run` waits for its command: the run
/// process tears its own bottle down and exits without an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launcher_stop_ends_a_waiting_run_cleanly() {
    let Some(engine) = engine_or_skip("launcher_stop_ends_a_waiting_run_cleanly").await else {
        return;
    };
    prepare_images(&engine).await;
    with_run(engine.clone(), |run| async move {
        let pki = upstream::TestPki::mint();
        let day = Day::new(&run, &pki.ca_pem);
        let (child, rx) = spawn(day.bottle("run").args(["--", "sleep", "600"]), "run");
        let (rx, _) = wait_line(rx, "agent: ready", 300).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        let identity = loop {
            let found = engine.bottles().await.expect("find");
            let mine = tests::labelled(&engine, LABEL_TEST_RUN, &run).await;
            if let Some(f) = found.iter().find(|f| f.containers.keys().any(|c| mine.iter().any(|m| m.trim_start_matches('/') == c))) {
                break Identity::parse(&f.identity).expect("identity");
            }
            assert!(Instant::now() < deadline, "the run's bottle is not listed");
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        // The command is running (the agent image has no ps: /proc).
        let deadline = Instant::now() + Duration::from_secs(60);
        let running = "for p in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $p; echo; done | grep -q '^sleep 600'";
        while in_agent(&engine, &identity, running).await.0 != Some(0) {
            assert!(Instant::now() < deadline, "the run's command never started");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let (ok, out) = output(&mut day.launcher(&["stop", identity.as_str()]));
        assert!(ok, "stop: {out}");
        assert!(out.contains(&format!("removed {}", identity.container_name(Component::Agent))), "{out}");
        let (status, rest) = wait_exit(child, rx, 120).await;
        assert!(!rest.contains("teardown:") && !rest.contains("error"), "the run printed an error: {rest}");
        assert_eq!(status.code(), Some(130), "{rest}");
        assert!(leftovers(&engine, &run).await.is_empty(), "objects left");
        assert_eq!(std::fs::read_dir(day.state()).expect("state").count(), 0, "state left");
    })
    .await;
}

/// `npm pack` of the stand-in fixture into `dir`; the tarball's path.
fn pack_standin(dir: &Path) -> Option<PathBuf> {
    let fixture = workspace().join("tests/fixtures/claude-code-standin");
    let out = Command::new("npm")
        .arg("pack")
        .arg(&fixture)
        .arg("--pack-destination")
        .arg(dir)
        .env("npm_config_cache", dir.join("npm-cache"))
        .env("npm_config_offline", "true")
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let name = String::from_utf8_lossy(&o.stdout)
                .lines()
                .last()?
                .trim()
                .to_owned();
            Some(dir.join(name))
        }
        Ok(o) => panic!(
            "npm pack {}: {}",
            fixture.display(),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(_) => None,
    }
}

/// A launcher command on a pseudo-terminal (`script`), as an operator's
/// shell runs it: its terminal output line by line, and its input.
struct Tty {
    child: Child,
    input: ChildStdin,
    lines: Option<Receiver<String>>,
    seen: String,
}

impl Tty {
    fn spawn(launcher_args: &[String], env: &[(&str, &str)], cwd: &Path) -> Self {
        let mut line = vec![bin_dir().join("launcher").display().to_string()];
        line.extend(launcher_args.iter().cloned());
        let mut child = Command::new("script")
            .args(["-qec", &line.join(" "), "/dev/null"])
            .current_dir(cwd)
            .env_remove("CLAUDE_BOTTLE_MANIFEST")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("script");
        let input = child.stdin.take().expect("stdin");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(out);
            let mut buf = Vec::new();
            while r.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                let l = String::from_utf8_lossy(&buf).replace('\r', "");
                eprint!("tty: {l}");
                if tx.send(l).is_err() {
                    break;
                }
                buf.clear();
            }
        });
        Self {
            child,
            input,
            lines: Some(rx),
            seen: String::new(),
        }
    }

    /// Waits (bounded) for a line containing `what`; returns everything
    /// read so far.
    async fn wait_for(&mut self, what: &str, secs: u64) -> String {
        let rx = self.lines.take().expect("reader");
        let what_owned = what.to_owned();
        let (rx, got) = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(secs);
            let mut got = String::new();
            loop {
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(l) => {
                        let hit = l.contains(&what_owned);
                        got.push_str(&l);
                        if hit {
                            return (rx, Ok(got));
                        }
                    }
                    Err(e) => return (rx, Err((e, got))),
                }
            }
        })
        .await
        .expect("join");
        self.lines = Some(rx);
        match got {
            Ok(g) => {
                self.seen.push_str(&g);
                self.seen.clone()
            }
            Err((e, g)) => {
                self.seen.push_str(&g);
                panic!(
                    "waiting {secs} s for {what:?}: {e}; the terminal showed:\n{}",
                    self.seen
                )
            }
        }
    }

    fn type_line(&mut self, text: &str) {
        self.input
            .write_all(format!("{text}\r").as_bytes())
            .expect("type");
        self.input.flush().expect("flush");
    }

    /// Waits (bounded) for the command to exit; its status and what it
    /// printed last.
    async fn exit(mut self, secs: u64) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "no exit within {secs} s; the terminal showed:\n{}",
                self.seen
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let rx = self.lines.take().expect("reader");
        let rest = tokio::task::spawn_blocking(move || {
            let mut out = String::new();
            while let Ok(l) = rx.recv_timeout(Duration::from_secs(5)) {
                out.push_str(&l);
            }
            out
        })
        .await
        .expect("join");
        (status, rest)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_runs_attached_and_resume_continues_its_transcript() {
    let test = "claude_runs_attached_and_resume_continues_its_transcript";
    let Some(engine) = engine_or_skip(test).await else {
        return;
    };
    if Command::new("script").arg("--version").output().is_err() {
        tests::cannot_run(
            test,
            "`script` is not installed to provide a terminal",
            "install bsdutils (.ci/setup.d/00-base.sh does)",
        );
        return;
    }
    let packs = tempfile::tempdir().expect("tempdir");
    let Some(tgz) = pack_standin(packs.path()) else {
        tests::cannot_run(
            test,
            "npm is not installed to pack the stand-in Claude Code",
            "install Debian's nodejs and npm (.ci/setup.d/session.sh does)",
        );
        return;
    };
    prepare_images(&engine).await;
    with_run(engine.clone(), |run| async move {
        let pki = upstream::TestPki::mint();
        let dir = tempfile::tempdir().expect("tempdir");
        let (home, cwd, state) = (
            dir.path().join("home"),
            dir.path().join("cwd"),
            dir.path().join("state"),
        );
        for d in [&home, &cwd, &state] {
            std::fs::create_dir(d).expect("mkdir");
        }
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &pki.ca_pem).expect("ca");
        // The embedded default agent, except that its API host is the
        // test's fake upstream on a Docker network (a private address):
        // the operator's opt-in, nothing else changed.
        let default = manifest::defaults::DEFAULT_MANIFEST;
        let opened = default.replace(
            "role: claude_code_oauth\n",
            "role: claude_code_oauth\n            allow_private: true\n",
        );
        assert_ne!(opened, default, "the default manifest's API route moved");
        let manifest_path = dir.path().join("claude.yaml");
        std::fs::write(&manifest_path, opened).expect("manifest");
        let token = format!("oauth-{run}");
        let env = [
            ("HOME", home.to_str().expect("utf-8")),
            ("CLAUDE_CODE_OAUTH_TOKEN", token.as_str()),
            ("CLAUDE_BOTTLE_STATE_DIR", state.to_str().expect("utf-8")),
        ];
        let want = format!(
            "upstream saw authorization sha256 {:x}",
            sha2::Sha256::digest(format!("Bearer {token}").as_bytes())
        );

        // `launcher start claude`, attached: the stand-in's own output.
        let t0 = Instant::now();
        let args: Vec<String> = [
            "start",
            "claude",
            "--manifest",
            &manifest_path.display().to_string(),
            "--yes",
            "--bin-dir",
            &bin_dir().display().to_string(),
            "--label",
            &format!("{LABEL_TEST_RUN}={run}"),
            "--upstream-ca",
            &ca.display().to_string(),
            "--claude-code",
            &tgz.display().to_string(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let mut start = Tty::spawn(&args, &env, &cwd);
        let seen = start.wait_for("mcp supervise: routes", 1200).await;
        eprintln!(
            "timing: start to the session's first screen: {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        assert!(
            seen.contains("claude-code-standin 0.0.0 (new session)"),
            "{seen}"
        );
        assert!(!seen.contains("opening bash"), "{seen}");
        assert!(
            seen.contains("capability-block") && seen.contains("list-egress-routes"),
            "{seen}"
        );
        assert!(seen.contains("minted the bottle CA, SHA-256 "), "{seen}");
        let identity = identity_in(&seen);
        let fake = format!("claude-bottle-e2e-claude-{run}");
        upstream::start(
            &engine,
            &identity.egress_network(),
            &fake,
            run_labels(&run),
            &pki,
        )
        .await;

        // The Anthropic API through egress: the upstream got the operator's token.
        start.type_line("hello");
        start.wait_for("upstream saw authorization", 120).await;
        assert!(
            start.seen.contains(&want),
            "the API host did not get the injected token:\n{}",
            start.seen
        );

        // A capability approval ends the session with the resume command.
        start.type_line("/capability");
        start.wait_for("capability-block: waiting", 60).await;
        let deadline = Instant::now() + Duration::from_secs(120);
        let id = loop {
            let (pending, _) = launcher::approvals::list_pending(&state, None).expect("pending");
            if let Some(p) = pending.first() {
                break p.proposal.id.to_string();
            }
            assert!(Instant::now() < deadline, "no capability proposal");
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        engine
            .remove_container(&fake)
            .await
            .expect("remove fake upstream");
        let out = Command::new(bin_dir().join("launcher"))
            .args(["approve", &id, "--note", "ok"])
            .env("CLAUDE_BOTTLE_STATE_DIR", &state)
            .stdin(Stdio::null())
            .output()
            .expect("approve");
        assert!(
            out.status.success(),
            "approve: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (status, rest) = start.exit(180).await;
        assert!(status.success(), "start: {status}\n{rest}");
        assert!(
            rest.contains(&format!("launcher resume {identity}")),
            "start's last words:\n{rest}"
        );

        // `launcher resume`: the transcript is there, `claude --continue` shows it.
        let t0 = Instant::now();
        let args: Vec<String> = ["resume", identity.as_str(), "--yes"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let mut resume = Tty::spawn(&args, &env, &cwd);
        let seen = resume.wait_for("previous user: hello", 1200).await;
        eprintln!(
            "timing: resume to the continued session: {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        assert!(
            seen.contains("(continuing)") && seen.contains("transcripts restored"),
            "{seen}"
        );
        let added = engine
            .exec(
                &identity.container_name(Component::Agent),
                "1000:1000",
                &["cat".into(), "/home/agent/capability.txt".into()],
            )
            .await
            .expect("exec");
        assert_eq!(
            added.output.trim(),
            "standin-capability",
            "the approved Dockerfile runs"
        );
        upstream::start(
            &engine,
            &identity.egress_network(),
            &fake,
            run_labels(&run),
            &pki,
        )
        .await;
        resume.type_line("again");
        resume.wait_for("upstream saw authorization", 120).await;
        assert!(
            resume.seen.matches(&want).count() == 1,
            "after the resume:\n{}",
            resume.seen
        );
        engine
            .remove_container(&fake)
            .await
            .expect("remove fake upstream");
        resume.type_line("/exit");
        let (status, rest) = resume.exit(180).await;
        assert!(status.success(), "resume: {status}\n{rest}");
        assert!(leftovers(&engine, &run).await.is_empty(), "objects left");
        assert!(
            !state.join(identity.as_str()).exists(),
            "state left after the resumed session"
        );
    })
    .await;
}
