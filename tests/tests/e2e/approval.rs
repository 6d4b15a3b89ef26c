//! The approval loop end to end: the agent asks supervise for a host over
//! MCP after a 403, the operator approves with `launcher approve`, the next
//! request succeeds without a restart and a transfer running across the
//! reload completes; a rejection's note reaches the agent; a credential goes
//! to a new host only by an explicit grant, and the listing shows what is
//! asked and the diff before the agent's words; bad ids and an invalid
//! `routes edit` change nothing; `pipelock edit` loads a checked config and
//! rolls back one pipelock cannot run.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use launcher::approvals;
use launcher::plan::identity::Component;
use tests::{bin_dir, engine_or_skip, prepare_images, run_labels};

use crate::{Started, sh, start_bottle, upstream, with_run};

/// Calls one supervise tool over MCP (see [`crate::MCP_SESSION`]) and
/// prints the tool's text; waits as long as an operator may take.
pub(crate) fn mcp_call_script() -> String {
    format!(
        "TIMEOUT = 600\n{}{}",
        crate::MCP_SESSION,
        r#"args = json.loads(sys.argv[2])
_, msgs = post({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": sys.argv[1], "arguments": args}}, sid)
for m in msgs:
    if "result" in m:
        for c in m["result"].get("content", []):
            print(c.get("text", ""))
    if "error" in m:
        print("ERROR", json.dumps(m["error"]))
"#
    )
}

fn launcher(args: &[&str], state: &std::path::Path) -> (bool, String) {
    launcher_with(args, state, &[])
}

fn launcher_with(args: &[&str], state: &std::path::Path, env: &[(&str, &str)]) -> (bool, String) {
    let mut c = Command::new(bin_dir().join("launcher"));
    c.args(args)
        .env("CLAUDE_BOTTLE_STATE_DIR", state)
        .envs(env.iter().copied())
        .stdin(Stdio::null());
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

/// Starts `tool` with `args` in the background in the agent; its answer
/// lands in `/tmp/<tag>.out` (then `/tmp/<tag>.done`).
async fn call_in_background(
    bottle: &launcher::lifecycle::Bottle,
    tag: &str,
    tool: &str,
    args: &str,
) {
    let mcp_call = mcp_call_script();
    let script = format!(
        "cat > /tmp/mcp_call.py <<'PY'\n{mcp_call}\nPY\n\
         nohup sh -c 'python3 /tmp/mcp_call.py {tool} '\"'\"'{args}'\"'\"' > /tmp/{tag}.out 2>&1; touch /tmp/{tag}.done' >/dev/null 2>&1 &\necho started"
    );
    let (code, out) = sh(bottle, &script).await;
    assert_eq!(code, Some(0), "{out}");
}

/// Polls until a file exists in the agent; returns its contents.
async fn wait_file(
    bottle: &launcher::lifecycle::Bottle,
    done: &str,
    out: &str,
    secs: u64,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (code, text) = sh(bottle, &format!("test -f {done} && cat {out}")).await;
        if code == Some(0) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{done} did not appear within {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Polls the state root until a pending proposal for `host` appears.
async fn wait_proposal(state: &std::path::Path, host: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (pending, _) = approvals::list_pending(state, None).expect("list pending");
        if let Some(p) = pending.iter().find(|p| {
            matches!(&p.proposal.request, manifest::queue::ProposalRequest::Egress(r) if r.host == host)
        }) {
            return p.proposal.id.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no proposal for {host} within 90 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn routes_version(identity: &str, state: &std::path::Path) -> String {
    let (ok, out) = launcher(&["routes", identity, "--format", "json"], state);
    assert!(ok, "routes: {out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("routes json");
    v["version"].as_str().expect("version").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_route_is_live_without_restart_and_a_rejection_returns_the_note() {
    let Some(engine) = engine_or_skip(
        "an_approved_route_is_live_without_restart_and_a_rejection_returns_the_note",
    )
    .await
    else {
        return;
    };
    let images = prepare_images(&engine).await;
    with_run(engine.clone(), |run| async move {
        let pki = upstream::TestPki::mint();
        let Started { bottle, state_root } =
            start_bottle(&engine, &images, &run, Some(pki.ca_pem.clone()), "e2e-approval-token").await;
        let plan = bottle.plan().clone();
        assert!(plan.container(Component::Supervise).is_some(), "supervise is planned: {:?}", plan.omitted);
        let identity = plan.identity.to_string();
        let fake = format!("claude-bottle-e2e-approval-{run}");
        upstream::start(&engine, &plan.identity.egress_network(), &fake, run_labels(&run), &pki).await;
        let state = state_root.path();

        // 1. Not allowed yet: a readable 403.
        let get = "curl -sS -o /dev/null -w '%{http_code}' --max-time 20 https://notallowed.test/x";
        let (_, out) = sh(&bottle, get).await;
        assert_eq!(out.trim(), "403", "{out}");

        // 2. A long transfer on an allowed host, running across the reload.
        let (code, out) = sh(
            &bottle,
            "head -c 600000 /dev/zero | tr '\\0' a > /tmp/big; \
             nohup sh -c 'curl -sS --limit-rate 25k --max-time 120 -o /tmp/dl.body -w %{http_code} \
             --data-binary @/tmp/big http://plain.test/upload > /tmp/dl.out 2>&1; touch /tmp/dl.done' \
             >/dev/null 2>&1 & echo started",
        )
        .await;
        assert_eq!(code, Some(0), "{out}");

        // 3. The agent asks for the host; the call waits for the operator.
        call_in_background(
            &bottle,
            "ask",
            "egress-block",
            r#"{"host": "notallowed.test", "path_allowlist": ["/x"], "justification": "e2e needs it"}"#,
        )
        .await;
        let id = wait_proposal(state, "notallowed.test").await;
        let (ok, listed) = launcher(&["proposals", "--format", "json"], state);
        assert!(ok && listed.contains(&id), "proposals lists it: {listed}");
        let before = routes_version(&identity, state);

        // 4. Approve from the host.
        let (ok, out) = launcher(&["approve", &id, "--note", "ok for e2e", "--allow-private"], state);
        assert!(ok, "approve: {out}");
        assert!(out.contains("+  - host: notallowed.test"), "{out}");
        let (code, _) = sh(&bottle, "test -f /tmp/dl.done").await;
        assert_ne!(code, Some(0), "the long transfer ended before the approval; it cannot prove the reload keeps it");
        let answer = wait_file(&bottle, "/tmp/ask.done", "/tmp/ask.out", 60).await;
        assert!(answer.contains("Approved"), "the agent hears approved: {answer}");
        assert!(answer.contains("ok for e2e"), "{answer}");
        let (_, out) = sh(&bottle, get).await;
        assert_eq!(out.trim(), "200", "allowed after approval, no restart: {out}");
        let after = routes_version(&identity, state);
        assert_ne!(after, before);
        // The audit log has the before/after of the live table.
        let queue = state.join(&identity).join("queue");
        let edits = launcher::approvals::queue::read_routes_edits(&queue).expect("audit");
        assert_eq!(edits.len(), 1, "{edits:?}");
        assert_eq!(edits[0].proposal.as_ref().map(|p| p.as_str()), Some(id.as_str()));
        assert_eq!((edits[0].before_version.as_str(), edits[0].after_version.as_str()), (before.as_str(), after.as_str()));
        assert!(edits[0].diff.contains("+  - host: notallowed.test"), "{}", edits[0].diff);
        // Bad input: nothing is applied.
        let (ok, out) = launcher(&["approve", "20990101-000000-zzzzzzzz"], state);
        assert!(!ok && out.contains("no proposal 20990101-000000-zzzzzzzz"), "{out}");
        assert_eq!(routes_version(&identity, state), after);

        // Deciding twice is refused.
        let (ok, out) = launcher(&["reject", &id, "--note", "changed my mind"], state);
        assert!(!ok && out.contains("already decided"), "{out}");

        // The transfer that was running across the reload completes.
        let dl = wait_file(&bottle, "/tmp/dl.done", "/tmp/dl.out", 150).await;
        assert_eq!(dl.trim(), "200", "long transfer: {dl}");
        let (_, size) = sh(&bottle, "wc -c < /tmp/dl.body").await;
        assert!(size.trim().parse::<u64>().unwrap_or(0) > 600_000, "{size}");

        // 5. A rejection returns the note.
        call_in_background(
            &bottle,
            "ask2",
            "egress-block",
            r#"{"host": "other.test", "justification": "e2e asks again"}"#,
        )
        .await;
        let id2 = wait_proposal(state, "other.test").await;
        let (ok, out) = launcher(&["reject", &id2, "--note", " "], state);
        assert!(!ok && out.contains("needs a note"), "{out}");
        let (ok, out) = launcher(&["reject", &id2, "--note", "use the mirror instead"], state);
        assert!(ok, "reject: {out}");
        let answer = wait_file(&bottle, "/tmp/ask2.done", "/tmp/ask2.out", 60).await;
        assert!(answer.contains("Rejected"), "{answer}");
        assert!(answer.contains("use the mirror instead"), "{answer}");

        // 6. A credential is granted only by name, and is live without a restart.
        call_in_background(
            &bottle,
            "ask3",
            "egress-block",
            r#"{"host": "granted.test", "auth": {"scheme": "Bearer", "token_ref": "E2E_GRANTED_TOKEN"}, "justification": "e2e needs the API"}"#,
        )
        .await;
        let id3 = wait_proposal(state, "granted.test").await;
        let (ok, out) = launcher(&["approve", &id3], state);
        assert!(!ok && out.contains("--grant E2E_GRANTED_TOKEN"), "an implicit grant: {out}");
        let (ok, out) = launcher(&["approve", &id3, "--grant", "E2E_GRANTED_TOKEN"], state);
        assert!(!ok && out.contains("is not set"), "{out}");
        let granted = format!("granted-{run}");
        let (ok, out) = launcher_with(
            &["approve", &id3, "--grant", "E2E_GRANTED_TOKEN", "--allow-private"],
            state,
            &[("E2E_GRANTED_TOKEN", &granted)],
        );
        assert!(ok, "approve --grant: {out}");
        assert!(!out.contains(&granted), "the launcher printed the token: {out}");
        let answer = wait_file(&bottle, "/tmp/ask3.done", "/tmp/ask3.out", 60).await;
        assert!(answer.contains("Approved"), "{answer}");
        let (_, echo) = sh(&bottle, "curl -sS --max-time 20 https://granted.test/echo").await;
        let echo: serde_json::Value = serde_json::from_str(echo.trim()).unwrap_or_else(|e| panic!("{e}: {echo}"));
        assert_eq!(echo["headers"]["authorization"], format!("Bearer {granted}"), "{echo}");
        let slots = std::fs::read_to_string(state.join(&identity).join("token-slots.json")).expect("slots");
        assert!(slots.contains("E2E_GRANTED_TOKEN") && !slots.contains(&granted), "{slots}");

        // 6b. A credential the bottle already holds (the manifest's
        //     E2E_GITHUB_TOKEN, sent to api.github.test) asked for on another
        //     host: never without the operator's explicit grant, and the
        //     listing says so before the agent's words.
        call_in_background(
            &bottle,
            "ask4",
            "egress-block",
            r#"{"host": "git.test", "auth": {"scheme": "Bearer", "token_ref": "E2E_GITHUB_TOKEN"}, "justification": "Approve? this is safe: the same token, only another host.\n  credential  none"}"#,
        )
        .await;
        let id4 = wait_proposal(state, "git.test").await;
        let (ok, listed) = launcher(&["proposals"], state);
        assert!(ok, "proposals: {listed}");
        let entry = &listed[listed.find(&id4).expect("listed")..];
        let at = |needle: &str| entry.find(needle).unwrap_or_else(|| panic!("{needle:?} not in:\n{entry}"));
        let asked = [
            at("  host        git.test"),
            at("  credential  $E2E_GITHUB_TOKEN (Bearer)"),
            at("GRANT NEEDED: approving sends your $E2E_GITHUB_TOKEN to git.test"),
            at("sends it to api.github.test only"),
            at("approval changes the live routes"),
            at("+  - host: git.test"),
            at("  justification (the agent's words):"),
            at("    > Approve? this is safe"),
            at("    >   credential  none"),
        ];
        assert!(asked.windows(2).all(|w| w[0] < w[1]), "order of the preview:\n{entry}");
        let live = routes_version(&identity, state);
        let (ok, out) = launcher(&["approve", &id4, "--note", "fine"], state);
        assert!(!ok, "a held credential went to a new host without a grant: {out}");
        assert!(out.contains("--grant E2E_GITHUB_TOKEN") && out.contains("sends it to api.github.test only"), "{out}");
        assert!(out.contains("  host        git.test"), "approve shows what is asked: {out}");
        assert_eq!(routes_version(&identity, state), live, "a refused approval changed the live table");
        let git_echo = "curl -sS --max-time 20 -w '\n%{http_code}' https://git.test/echo";
        let (_, refused) = sh(&bottle, git_echo).await;
        assert!(refused.trim_end().ends_with("403"), "{refused}");
        let (ok, shown) = launcher(&["proposals", "show", &id4], state);
        assert!(ok && shown.contains("justification (the agent's words, whole)"), "{shown}");
        // Granted by name, the held slot is reused: nothing is read from the
        // environment (the variable is not set for this launcher).
        let (ok, out) = launcher(&["approve", &id4, "--grant", "E2E_GITHUB_TOKEN", "--allow-private"], state);
        assert!(ok, "approve --grant of a held credential: {out}");
        assert!(out.contains("egress already held it"), "{out}");
        assert!(!out.contains("e2e-approval-token"), "the launcher printed the token: {out}");
        let answer = wait_file(&bottle, "/tmp/ask4.done", "/tmp/ask4.out", 60).await;
        assert!(answer.contains("Approved"), "{answer}");
        let (_, echo) = sh(&bottle, "curl -sS --max-time 20 https://git.test/echo").await;
        let echo: serde_json::Value = serde_json::from_str(echo.trim()).unwrap_or_else(|e| panic!("{e}: {echo}"));
        assert_eq!(echo["headers"]["authorization"], "Bearer e2e-approval-token", "{echo}");

        // 7. `routes edit` with an invalid edit changes nothing; a valid one applies.
        let live = routes_version(&identity, state);
        let scripts = tempfile::tempdir().expect("tempdir");
        let bad = scripts.path().join("bad.sh");
        std::fs::write(&bad, "#!/bin/sh\nprintf 'version: 1\\nroutes:\\n  - hostname: x.test\\n' > \"$1\"\n").expect("script");
        let good = scripts.path().join("good.sh");
        std::fs::write(&good, "#!/bin/sh\nprintf '  - host: added.test\\n' >> \"$1\"\n").expect("script");
        for s in [&bad, &good] {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(s, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let edit = |editor: &std::path::Path| {
            let out = Command::new(bin_dir().join("launcher"))
                .args(["routes", "edit", &identity])
                .env("VISUAL", editor)
                .env("CLAUDE_BOTTLE_STATE_DIR", state)
                .stdin(Stdio::null())
                .output()
                .expect("routes edit");
            (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
        };
        let (ok, out) = edit(&bad);
        assert!(!ok && out.contains("invalid") && out.contains("hostname"), "{out}");
        assert_eq!(routes_version(&identity, state), live, "an invalid edit changed the live table");
        assert_eq!(launcher::approvals::queue::read_routes_edits(&queue).expect("audit").len(), 3, "an invalid edit is not audited");
        let (ok, out) = edit(&good);
        assert!(ok, "valid edit: {out}");
        let edits = launcher::approvals::queue::read_routes_edits(&queue).expect("audit");
        assert_eq!(edits.len(), 4, "{edits:?}");
        assert_eq!(edits[1].proposal.as_ref().map(|p| p.as_str()), Some(id3.as_str()), "the grant's route");
        assert_eq!(edits[2].proposal.as_ref().map(|p| p.as_str()), Some(id4.as_str()), "the held credential's route");
        assert_eq!(edits[3].proposal, None, "a manual edit");
        assert_eq!(edits[3].before_version, live);
        assert_eq!(edits[3].after_version, routes_version(&identity, state));
        assert!(edits[3].diff.contains("+  - host: added.test"), "{}", edits[3].diff);
        let (_, shown) = launcher(&["routes", &identity], state);
        assert!(shown.contains("added.test") && shown.contains("notallowed.test"), "{shown}");

        engine.remove_container(&fake).await.expect("remove fake upstream");
        let mut progress = |l: &str| eprintln!("{l}");
        bottle.teardown(&mut progress).await;
        drop(state_root);
    })
    .await;
}

/// Polls `cmd` in `container` (as the agent user) until it exits 0.
async fn wait_in(
    engine: &launcher::engine::docker::Engine,
    container: &str,
    cmd: &str,
    secs: u64,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(out) = engine
            .exec(
                container,
                "1000:1000",
                &["sh".to_owned(), "-c".to_owned(), cmd.to_owned()],
            )
            .await
            && out.code == Some(0)
        {
            return out.output;
        }
        assert!(
            Instant::now() < deadline,
            "`{cmd}` did not succeed in {container} within {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capability_approval_then_resume_runs_the_new_dockerfile_with_the_transcript() {
    let Some(engine) = engine_or_skip(
        "a_capability_approval_then_resume_runs_the_new_dockerfile_with_the_transcript",
    )
    .await
    else {
        return;
    };
    let images = prepare_images(&engine).await;
    with_run(engine.clone(), |run| async move {
        let token = "e2e-capability-token";
        let Started { bottle, state_root } =
            start_bottle(&engine, &images, &run, None, token).await;
        let identity = bottle.plan().identity.clone();
        let state = state_root.path();
        let agent = identity.container_name(Component::Agent);

        // A transcript to carry over, and the agent's request.
        let (code, out) = sh(
            &bottle,
            "mkdir -p ~/.claude/projects/p && echo transcript-line > ~/.claude/projects/p/s.jsonl",
        )
        .await;
        assert_eq!(code, Some(0), "{out}");
        let current = std::fs::read_to_string(tests::workspace().join("images/agent/Dockerfile"))
            .expect("agent Dockerfile");
        let proposed = format!("{current}RUN echo resumed-ok > /home/agent/added.txt\n");
        let args = serde_json::json!({"dockerfile": proposed, "justification": "needs a file"})
            .to_string();
        call_in_background(&bottle, "cap", "capability-block", &args).await;
        let deadline = Instant::now() + Duration::from_secs(90);
        let id = loop {
            let (pending, _) = approvals::list_pending(state, None).expect("list");
            if let Some(p) = pending.first() {
                break p.proposal.id.to_string();
            }
            assert!(Instant::now() < deadline, "no capability proposal");
            tokio::time::sleep(Duration::from_millis(250)).await;
        };

        // The listing shows the diff against the Dockerfile the bottle runs,
        // not the whole proposed file.
        let (ok, listed) = launcher(&["proposals"], state);
        assert!(ok, "proposals: {listed}");
        assert!(listed.contains("(+1 -0 lines against the bottle's current Dockerfile)"), "{listed}");
        assert!(listed.contains("    +RUN echo resumed-ok > /home/agent/added.txt"), "{listed}");
        let added: Vec<&str> = listed
            .lines()
            .filter(|l| l.starts_with("    +") && !l.starts_with("    +++"))
            .collect();
        assert_eq!(added, ["    +RUN echo resumed-ok > /home/agent/added.txt"], "only the change: {listed}");
        assert!(
            listed.find("+RUN echo resumed-ok") < listed.find("  justification (the agent's words):"),
            "{listed}"
        );

        // Approve: state kept, bottle torn down, resume hint printed.
        let (ok, out) = launcher(&["approve", &id, "--note", "go"], state);
        assert!(ok, "approve: {out}");
        assert!(
            out.contains(&format!("launcher resume {identity}")),
            "{out}"
        );
        assert!(out.contains("+RUN echo resumed-ok"), "{out}");
        // The diff is against the Dockerfile the bottle runs, not against nothing.
        assert!(!out.contains("+FROM"), "diff baseline is the current Dockerfile: {out}");
        assert!(!out.contains("did not report answering"), "supervise answered before the teardown: {out}");
        let dir = state.join(identity.as_str());
        assert!(dir.join(".preserve").exists() && dir.join("Dockerfile").exists());
        assert!(dir.join("transcript.tar").exists());
        let (running, _) = engine.running(&agent).await.map_or((false, None), |r| r);
        assert!(!running, "the agent is torn down");

        // A proposal of a bottle that is not running is not decided.
        let stale_id = "20990101-000000-stale000";
        let stale = serde_json::json!({
            "version": 1, "id": stale_id, "bottle": identity.as_str(), "tool": "egress-block",
            "arguments": {"host": "late.test"}, "justification": "late", "created_at": "2099-01-01T00:00:00Z"
        });
        std::fs::write(dir.join(format!("queue/pending/{stale_id}.json")), stale.to_string())
            .expect("stale proposal");
        let (ok, out) = launcher(&["approve", stale_id], state);
        assert!(!ok && out.contains("is not running"), "{out}");
        assert!(!dir.join(format!("queue/decisions/{stale_id}.json")).exists());

        // Resume: same identity, new image, transcript back.
        let manifest_dir = tempfile::tempdir().expect("tempdir");
        let manifest_path = manifest_dir.path().join("m.yaml");
        std::fs::write(&manifest_path, crate::MANIFEST).expect("manifest");
        // What `launcher start` records (launch.json); resume is given no
        // flags but the state root, so manifest, bin dir, offline and labels
        // come from the record.
        launcher::lifecycle::state::BottleState::new(state, &identity)
            .write_launch(&launcher::lifecycle::state::LaunchRecord {
                manifest: Some(manifest_path.clone()),
                bin_dir: Some(bin_dir()),
                offline: true,
                labels: run_labels(&run),
                upstream_ca: None,
                pipelock_image: None,
                workspace: None,
                claude_code: None,
            })
            .expect("launch record");
        let mut child = Command::new(bin_dir().join("launcher"))
            .args(["resume", identity.as_str(), "--yes"])
            .env("CLAUDE_BOTTLE_STATE_DIR", state)
            .env("E2E_GITHUB_TOKEN", token)
            .stdin(Stdio::null())
            .spawn()
            .expect("launcher resume");
        let added = wait_in(&engine, &agent, "cat /home/agent/added.txt", 240).await;
        assert_eq!(added.trim(), "resumed-ok");
        let t = wait_in(&engine, &agent, "cat ~/.claude/projects/p/s.jsonl", 60).await;
        assert_eq!(t.trim(), "transcript-line");
        let labels = engine
            .client()
            .inspect_container(&agent, None::<bollard::query_parameters::InspectContainerOptions>)
            .await
            .expect("inspect resumed agent")
            .config
            .and_then(|c| c.labels)
            .unwrap_or_default();
        assert_eq!(labels.get(tests::LABEL_TEST_RUN), Some(&run), "labels from the launch record");
        assert!(
            !dir.join(".preserve").exists(),
            "the marker is cleared once resumed"
        );

        // A normal end of the resumed session removes the state.
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                assert!(status.success(), "resume exited {status}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "resume did not stop after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(
            !dir.exists(),
            "state removed at the end of the resumed session"
        );
        let mut progress = |l: &str| eprintln!("{l}");
        bottle.teardown(&mut progress).await;
        drop(state_root);
        // The resumed session's normal end removed its image.
        let filters = std::collections::HashMap::from([(
            "reference".to_owned(),
            vec![format!("claude-bottle/agent-resume:{identity}-*")],
        )]);
        let opts = bollard::query_parameters::ListImagesOptionsBuilder::default()
            .filters(&filters)
            .build();
        let left: Vec<String> = engine
            .client()
            .list_images(Some(opts))
            .await
            .unwrap_or_default()
            .into_iter()
            .flat_map(|i| i.repo_tags)
            .collect();
        for tag in &left {
            let _ = engine.client().remove_image(tag, None::<bollard::query_parameters::RemoveImageOptions>, None).await;
        }
        assert!(left.is_empty(), "resume images left after the resumed session ended: {left:?}");
    })
    .await;
}

/// The launcher's pipelock config as the stand-ins start with it.
const STAND_IN_PIPELOCK_CONFIG: &str = "version: 1\nmode: strict\n\napi_allowlist:\n  - \"api.github.com\"\n\nforward_proxy:\n  enabled: true\n";

/// Starts a stand-in for pipelock named `name` (the real image cannot be
/// pulled here): the base image running `cmd` as the sidecar user, with no
/// network, a `/pipelock` whose `healthcheck` passes, and `config` as its
/// config file.
async fn start_pipelock_stand_in(
    engine: &launcher::engine::docker::Engine,
    run: &str,
    name: &str,
    cmd: Vec<String>,
    config: &str,
) {
    use launcher::plan::{Attachment, PIPELOCK_BINARY, PIPELOCK_CONFIG};
    let mut plan = tests::helper_container(
        name,
        &launcher::engine::images::base_tag(),
        "10001:10001",
        cmd,
        Attachment {
            network: "none".into(),
            aliases: Vec::new(),
        },
        run_labels(run),
    );
    plan.component = Component::Pipelock;
    engine
        .create_container(&plan, &[])
        .await
        .expect("create stand-in");
    let file = |path: &str, mode: u32, text: &str| launcher::engine::archive::FileEntry {
        path: path.into(),
        mode,
        uid: 10001,
        gid: 10001,
        contents: text.as_bytes().to_vec(),
    };
    let tar = launcher::engine::archive::build(&[
        file(
            PIPELOCK_BINARY,
            0o755,
            "#!/bin/sh\n[ \"$1\" = healthcheck ] && exit 0\nexit 2\n",
        ),
        file(PIPELOCK_CONFIG, 0o644, config),
    ])
    .expect("archive");
    engine.upload(name, tar).await.expect("upload");
    engine.start(name).await.expect("start stand-in");
}

/// The Docker half of the pipelock mirror (`apply::DockerPipelock`) on a
/// stand-in container with no network: the config is copied out and back
/// in through the archive API with its mode and owner, the container is
/// restarted and passes the health check, a second mirror of the same
/// host changes nothing, and a config that is not the launcher's is refused
/// untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipelock_mirror_rewrites_the_allowlist_and_restarts_healthy() {
    use launcher::approvals::apply::{DockerPipelock, PipelockMirror as _};
    use launcher::plan::PIPELOCK_CONFIG;
    let Some(engine) =
        engine_or_skip("the_pipelock_mirror_rewrites_the_allowlist_and_restarts_healthy").await
    else {
        return;
    };
    prepare_images(&engine).await;
    with_run(engine.clone(), |run| async move {
        let name = format!("claude-bottle-e2e-pipelock-mirror-{run}");
        let config = STAND_IN_PIPELOCK_CONFIG;
        start_pipelock_stand_in(
            &engine,
            &run,
            &name,
            vec!["sleep".into(), "infinity".into()],
            config,
        )
        .await;
        let file = |path: &str, mode: u32, text: &str| launcher::engine::archive::FileEntry {
            path: path.into(),
            mode,
            uid: 10001,
            gid: 10001,
            contents: text.as_bytes().to_vec(),
        };
        let started = |engine: launcher::engine::docker::Engine, name: String| async move {
            engine
                .client()
                .inspect_container(
                    &name,
                    None::<bollard::query_parameters::InspectContainerOptions>,
                )
                .await
                .expect("inspect")
                .state
                .and_then(|s| s.started_at)
                .unwrap_or_default()
        };
        let first_start = started(engine.clone(), name.clone()).await;

        let pl = DockerPipelock::new(engine.clone(), name.clone());
        pl.mirror(&["pypi.org".to_owned(), "api.github.com".to_owned()])
            .await
            .expect("mirror");
        let out = engine
            .exec(
                &name,
                "10001:10001",
                &[
                    "sh".into(),
                    "-c".into(),
                    format!("stat -c '%a %u' {PIPELOCK_CONFIG} && cat {PIPELOCK_CONFIG}"),
                ],
            )
            .await
            .expect("read back");
        assert_eq!(out.code, Some(0), "{}", out.output);
        assert!(out.output.starts_with("644 10001\n"), "{}", out.output);
        assert!(
            out.output
                .contains("  - \"api.github.com\"\n  - \"pypi.org\"\n\nforward_proxy:"),
            "{}",
            out.output
        );
        assert_eq!(
            out.output.matches("api.github.com").count(),
            1,
            "{}",
            out.output
        );
        let (running, _) = engine.running(&name).await.expect("running");
        assert!(running, "the stand-in runs after the restart");
        let second_start = started(engine.clone(), name.clone()).await;
        assert_ne!(first_start, second_start, "it was restarted");

        // Nothing new: no rewrite, no restart.
        pl.mirror(&["PyPI.org".to_owned()])
            .await
            .expect("no-op mirror");
        assert_eq!(started(engine.clone(), name.clone()).await, second_start);

        // A config that is not the launcher's is refused and left alone.
        let tar = launcher::engine::archive::build(&[file(PIPELOCK_CONFIG, 0o644, "version: 1\n")])
            .expect("archive");
        engine.upload(&name, tar).await.expect("upload");
        let err = pl
            .mirror(&["x.test".to_owned()])
            .await
            .expect_err("refused");
        assert!(err.contains("api_allowlist"), "{err}");
        let out = engine
            .exec(
                &name,
                "10001:10001",
                &["cat".into(), PIPELOCK_CONFIG.into()],
            )
            .await
            .expect("read back");
        assert_eq!(out.output, "version: 1\n");

        engine
            .remove_container(&name)
            .await
            .expect("remove stand-in");
    })
    .await;
}

/// `launcher pipelock edit` on a bottle whose pipelock is a stand-in (the
/// real image cannot be pulled here): an edit that fails the check changes
/// nothing; a valid edit pipelock cannot run (the stand-in exits when its
/// config holds `BREAKME`) is rolled back to the previous config with
/// pipelock healthy again; a valid edit is loaded with a restart, audited,
/// and approvals can still extend it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelock_edit_loads_a_checked_config_and_rolls_back_one_pipelock_cannot_run() {
    use launcher::approvals::apply::{DockerPipelock, PipelockMirror as _};
    use launcher::plan::PIPELOCK_CONFIG;
    use launcher::plan::identity::Identity;
    let Some(engine) = engine_or_skip(
        "pipelock_edit_loads_a_checked_config_and_rolls_back_one_pipelock_cannot_run",
    )
    .await
    else {
        return;
    };
    prepare_images(&engine).await;
    with_run(engine.clone(), |run| async move {
        let identity = Identity::mint(&manifest::AgentName::parse("e2e").expect("name")).expect("identity");
        let root = tempfile::tempdir().expect("state root");
        let state = root.path();
        std::fs::create_dir_all(launcher::lifecycle::state::BottleState::new(state, &identity).queue_dir()).expect("queue");
        let name = identity.container_name(Component::Pipelock);
        // Exits at start when its config says BREAKME; stops at once on TERM.
        let script = format!(
            "grep -q BREAKME {PIPELOCK_CONFIG} && exit 3; trap 'exit 0' TERM; sleep infinity & wait"
        );
        let original = STAND_IN_PIPELOCK_CONFIG;
        start_pipelock_stand_in(&engine, &run, &name, vec!["sh".into(), "-c".into(), script], original).await;
        let config = || {
            let engine = engine.clone();
            let name = name.clone();
            async move {
                engine
                    .exec(&name, "10001:10001", &["cat".into(), PIPELOCK_CONFIG.into()])
                    .await
                    .expect("read config")
                    .output
            }
        };
        let editors = tempfile::tempdir().expect("tempdir");
        let editor = |tag: &str, text: &str| {
            let path = editors.path().join(format!("{tag}.sh"));
            std::fs::write(&path, format!("#!/bin/sh\ncat > \"$1\" <<'YAML'\n{text}YAML\n")).expect("script");
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            path
        };
        let edit = |editor: &std::path::Path| {
            let out = Command::new(bin_dir().join("launcher"))
                .args(["pipelock", "edit", identity.as_str()])
                .env("VISUAL", editor)
                .env("CLAUDE_BOTTLE_STATE_DIR", state)
                .stdin(Stdio::null())
                .output()
                .expect("pipelock edit");
            (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
        };

        // Fails the check: nothing reaches pipelock.
        let (ok, out) = edit(&editor("bad", &original.replace("enabled: true", "enabled: false")));
        assert!(!ok && out.contains("forward_proxy.enabled: must stay true"), "{out}");
        assert_eq!(config().await, original);

        // Passes the check, but pipelock cannot run it: rolled back.
        let (ok, out) = edit(&editor("breaks", &format!("# BREAKME\n{original}")));
        assert!(!ok, "{out}");
        assert!(out.contains("did not come back healthy") && out.contains("previous config was loaded again"), "{out}");
        assert_eq!(config().await, original);
        let (running, _) = engine.running(&name).await.expect("inspect");
        assert!(running, "pipelock runs again with the previous config");

        // A good edit is loaded, reported and audited.
        let good = original.replace("  - \"api.github.com\"\n", "  - \"api.github.com\"\n  - \"pypi.org\"\n");
        let (ok, out) = edit(&editor("good", &good));
        assert!(ok, "{out}");
        assert!(out.contains("+  - \"pypi.org\"") && out.contains("pipelock now also allows pypi.org"), "{out}");
        assert_eq!(config().await, good);
        let queue = launcher::lifecycle::state::BottleState::new(state, &identity).queue_dir();
        let records = launcher::approvals::queue::read_operator_records(&queue).expect("audit");
        assert!(
            matches!(&records[..], [manifest::queue::OperatorAuditRecord::PipelockEdit(r)] if r.diff.contains("pypi.org")),
            "{records:?}"
        );
        // The approvals' mirror still extends the edited config.
        DockerPipelock::new(engine.clone(), name.clone())
            .mirror(&["x.test".to_owned()])
            .await
            .expect("mirror after an edit");
        assert!(config().await.contains("  - \"pypi.org\"\n  - \"x.test\"\n"));

        engine.remove_container(&name).await.expect("remove stand-in");
    })
    .await;
}

/// `launcher cleanup` without `--yes` and without a terminal lists what it
/// would remove — here a stale state and a preserved one with its resume
/// hint — and removes nothing (it never runs with `--yes` here: the engine
/// is shared with other tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_lists_stale_and_preserved_states_and_removes_nothing_unconfirmed() {
    use launcher::lifecycle::state::{BottleState, Metadata, PRESERVE_MARKER};
    use launcher::plan::identity::Identity;
    let Some(engine) =
        engine_or_skip("cleanup_lists_stale_and_preserved_states_and_removes_nothing_unconfirmed")
            .await
    else {
        return;
    };
    // Builds the launcher binary this test runs (cached).
    prepare_images(&engine).await;
    let root = tempfile::tempdir().expect("state root");
    let mk = |id: &str| {
        let identity = Identity::parse(id).expect("identity");
        let st = BottleState::new(root.path(), &identity);
        st.create(&Metadata {
            identity: id.into(),
            agent: "e2e".into(),
            cwd: None,
            started_at: "2026-01-01T00:00:00Z".into(),
            launcher_version: "test".into(),
            images: std::collections::BTreeMap::new(),
        })
        .expect("state");
        st
    };
    // Identity suffixes are 5 base36 characters; hex is a subset.
    let suffix: String = tests::run_id().chars().take(5).collect();
    let stale = mk(&format!("stale-{suffix}"));
    let kept = mk(&format!("kept-{suffix}"));
    std::fs::write(kept.dir().join(PRESERVE_MARKER), "capability-block\n").expect("marker");
    let (ok, out) = launcher(&["cleanup"], root.path());
    assert!(!ok && out.contains("pass --yes"), "{out}");
    assert!(
        out.contains(&format!("stale state {}", stale.dir().display())),
        "{out}"
    );
    assert!(
        out.contains(&format!("preserved state {}", kept.dir().display()))
            && out.contains(&format!("launcher resume kept-{suffix}"))
            && out.contains("cleanup --preserved"),
        "{out}"
    );
    assert!(
        stale.dir().exists() && kept.dir().exists(),
        "nothing removed"
    );
}
