//! The `launcher` binary itself: `run` exits with the command's status,
//! SIGTERM to `start` leaves nothing behind.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tests::{LABEL_TEST_RUN, bin_dir, engine_or_skip, leftovers, prepare_images};

use crate::with_run;

const MANIFEST: &str = "agents:\n  cli:\n    prompt: Be careful.\n    skills: [./skills/review]\n    bottle:\n      supervise: true\n";

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("m.yaml"), MANIFEST).expect("manifest");
        std::fs::create_dir_all(dir.path().join("skills/review")).expect("skill dir");
        std::fs::write(
            dir.path().join("skills/review/SKILL.md"),
            "# review skill\n",
        )
        .expect("skill");
        std::fs::create_dir(dir.path().join("state")).expect("state");
        Self { dir }
    }

    fn command(&self, run: &str, sub: &str) -> Command {
        let mut c = Command::new(bin_dir().join("launcher"));
        c.arg(sub)
            .arg("--manifest")
            .arg(self.dir.path().join("m.yaml"))
            .arg("--bin-dir")
            .arg(bin_dir())
            .arg("--state-dir")
            .arg(self.dir.path().join("state"))
            .arg("--label")
            .arg(format!("{LABEL_TEST_RUN}={run}"));
        c
    }

    fn state_entries(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("state"))
            .expect("state dir")
            .count()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launcher_run_exits_with_the_commands_status_and_leaves_nothing() {
    let Some(engine) =
        engine_or_skip("launcher_run_exits_with_the_commands_status_and_leaves_nothing").await
    else {
        return;
    };
    prepare_images(&engine).await;
    with_run(engine.clone(), |run| async move {
        let env = Env::new();
        let mut cmd = env.command(&run, "run");
        let out = cmd
            .args([
                "cli",
                "--",
                "sh",
                "-c",
                "echo hello-from-agent; id -u; cat ~/.claude/skills/review/SKILL.md ~/.claude/CLAUDE.md; exit 3",
            ])
            .output()
            .expect("launcher run");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{cmd:?}\nstdout: {stdout}\nstderr: {stderr}"
        );
        assert!(
            stdout.contains("hello-from-agent\n1000\n# review skill\nBe careful."),
            "{cmd:?}\nstdout: {stdout}\nstderr: {stderr}"
        );
        assert!(
            leftovers(&engine, &run).await.is_empty(),
            "run left objects behind"
        );
        assert_eq!(env.state_entries(), 0, "run left state behind");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_launcher_start_tears_everything_down() {
    signal_tears_down(
        "sigterm_to_launcher_start_tears_everything_down",
        "TERM",
        "is running",
        0,
    )
    .await;
}

/// SIGTERM while the first sidecar is still starting: the launch stops
/// there (not after the whole bottle is up), tears down, exits 130.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_the_launch_tears_down_promptly() {
    signal_tears_down(
        "sigterm_during_the_launch_tears_down_promptly",
        "TERM",
        "waiting until ready",
        130,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_to_launcher_start_tears_everything_down() {
    signal_tears_down(
        "ctrl_c_to_launcher_start_tears_everything_down",
        "INT",
        "is running",
        0,
    )
    .await;
}

/// Starts a bottle with `launcher start` (no terminal: it waits for a
/// signal), sends `signal` once stderr has a line containing `when`, and
/// checks the exit code and that nothing is left.
async fn signal_tears_down(test: &str, signal: &'static str, when: &'static str, want_code: i32) {
    let Some(engine) = engine_or_skip(test).await else {
        return;
    };
    prepare_images(&engine).await;
    with_run(engine.clone(), |run| async move {
        let env = Env::new();
        let mut child = env
            .command(&run, "start")
            .args(["cli", "--yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("launcher start");
        let stderr = child.stderr.take().expect("stderr");
        // Read stderr on a thread until the bottle reports it is running.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("launcher: {line}");
                if line.contains(when) {
                    let _ = tx.send(());
                }
            }
        });
        let running =
            tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(300)))
                .await
                .expect("join");
        assert!(running.is_ok(), "launcher start never printed {when:?}");
        assert!(
            !leftovers(&engine, &run).await.is_empty(),
            "the bottle should exist while running"
        );
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(120);
        let code = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "launcher start did not exit after SIG{signal}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(
            code.code(),
            Some(want_code),
            "launcher start exited with {code}"
        );
        assert!(
            leftovers(&engine, &run).await.is_empty(),
            "SIG{signal} left objects behind"
        );
        assert_eq!(env.state_entries(), 0, "SIG{signal} left state behind");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launcher_start_attaches_a_terminal_to_the_agent() {
    let Some(engine) = engine_or_skip("launcher_start_attaches_a_terminal_to_the_agent").await
    else {
        return;
    };
    if Command::new("script").arg("--version").output().is_err() {
        tests::cannot_run(
            "launcher_start_attaches_a_terminal_to_the_agent",
            "`script` (util-linux) is not installed to provide a terminal",
            "install util-linux (.ci/setup.d/00-base.sh does)",
        );
        return;
    }
    prepare_images(&engine).await;
    with_run(engine.clone(), |run| async move {
        let env = Env::new();
        // `script` gives the launcher a pseudo-terminal, as an operator's shell would.
        let inner = env.command(&run, "start");
        let mut line: Vec<String> = vec![inner.get_program().to_string_lossy().into_owned()];
        line.extend(inner.get_args().map(|a| a.to_string_lossy().into_owned()));
        line.extend(["cli".to_owned(), "--yes".to_owned()]);
        let mut child = Command::new("script")
            .args(["-qec", &line.join(" "), "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("script");
        let mut stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut buf = Vec::new();
            while r
                .read_until(b'\n', &mut buf)
                .map(|n| n > 0)
                .unwrap_or(false)
            {
                let l = String::from_utf8_lossy(&buf).into_owned();
                eprint!("pty: {l}");
                let _ = tx.send(l);
                buf.clear();
            }
        });
        let wait_for = |rx: &std::sync::mpsc::Receiver<String>, what: &str| {
            let deadline = Instant::now() + Duration::from_secs(300);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(l) if l.contains(what) => return,
                    Ok(_) => {}
                    Err(e) => panic!("waiting for {what:?}: {e}"),
                }
            }
        };
        let rx = tokio::task::spawn_blocking(move || {
            wait_for(&rx, "opening bash");
            rx
        })
        .await
        .expect("join");
        use std::io::Write as _;
        // Window resize: set the launcher's terminal size the way a terminal
        // emulator does (TIOCSWINSZ → SIGWINCH to the launcher); the shell
        // in the agent sees the new size (polled, bounded, in the agent).
        // First a round trip through the attached shell: its output flows
        // through the launcher's output loop, which starts after the
        // SIGWINCH handler is installed.
        stdin.write_all(b"echo ready-$((1+1))\r").expect("type");
        stdin.flush().expect("flush");
        let rx = tokio::task::spawn_blocking(move || {
            wait_for(&rx, "ready-2");
            rx
        })
        .await
        .expect("join");
        let launcher_pid = descendant_named(child.id(), "launcher").expect("the launcher under script");
        let tty = std::fs::read_link(format!("/proc/{launcher_pid}/fd/0")).expect("launcher's terminal");
        let st = Command::new("stty")
            .arg("-F")
            .arg(&tty)
            .args(["rows", "33", "cols", "111"])
            .status()
            .expect("stty");
        assert!(st.success(), "stty on {}", tty.display());
        stdin
            .write_all(b"for i in $(seq 1 100); do s=$(stty size); [ \"$s\" = '33 111' ] && break; sleep 0.1; done; echo size-$s\r")
            .expect("type");
        stdin.flush().expect("flush");
        let rx = tokio::task::spawn_blocking(move || {
            wait_for(&rx, "size-33 111");
            rx
        })
        .await
        .expect("join");
        stdin
            .write_all(b"echo marker-$((6*7)); id -u; exit 5\r")
            .expect("type");
        stdin.flush().expect("flush");
        let rx = tokio::task::spawn_blocking(move || {
            wait_for(&rx, "marker-42");
            rx
        })
        .await
        .expect("join");
        drop(rx);
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "launcher start did not end after the shell exited"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(
            status.code(),
            Some(5),
            "the session's exit status is the launcher's"
        );
        assert!(
            leftovers(&engine, &run).await.is_empty(),
            "objects left after the session"
        );
        assert_eq!(env.state_entries(), 0);
    })
    .await;
}

/// The first process named `name` (its `comm`) among the descendants of
/// `root`, from `/proc`.
fn descendant_named(root: u32, name: &str) -> Option<u32> {
    let mut procs: Vec<(u32, u32, String)> = Vec::new();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_owned();
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0);
        procs.push((pid, ppid, comm));
    }
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (pid, ppid, comm) in &procs {
            if *ppid == p {
                if comm == name {
                    return Some(*pid);
                }
                frontier.push(*pid);
            }
        }
    }
    None
}

/// `start --dry-run` reads the engine's version and shows the walls in
/// force, the confinement, the workspace mode and its guards — and creates
/// nothing: no Docker object, no state, no placeholder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_shows_the_engine_the_walls_and_the_workspace_guards() {
    let Some(engine) =
        engine_or_skip("dry_run_shows_the_engine_the_walls_and_the_workspace_guards").await
    else {
        return;
    };
    prepare_images(&engine).await;
    let version = engine.info().await.expect("engine info").version;
    with_run(engine.clone(), |run| async move {
        let env = Env::new();
        let ws = tempfile::tempdir().expect("workspace");
        let status = Command::new("git")
            .arg("-C")
            .arg(ws.path())
            .args(["init", "-q"])
            .status()
            .expect("git init");
        assert!(status.success());
        let dry = |extra: &[&str]| {
            let mut cmd = env.command(&run, "start");
            cmd.args(["cli", "--dry-run", "--cwd"])
                .arg(ws.path())
                .args(extra);
            let out = cmd.output().expect("launcher start --dry-run");
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "{cmd:?}\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            stdout
        };
        let text = dry(&[]);
        for want in [
            format!("  engine     Docker {version}"),
            "  DNS        the bottle's names only".to_owned(),
            "  host       internal bridge without a host address".to_owned(),
            "  agent      user 1000:1000, no capabilities, no-new-privileges, memory 8g, pids 4096"
                .to_owned(),
            "(protect mode: read-write, but read-only: .git, claude-bottle.yaml (placeholder)"
                .to_owned(),
        ] {
            assert!(text.contains(&want), "missing {want:?} in:\n{text}");
        }
        let json: serde_json::Value =
            serde_json::from_str(&dry(&["--format", "json"])).expect("plan JSON");
        assert_eq!(json["engine"]["version"], version.as_str());
        assert!(
            json["engine"]["dns"]
                .as_str()
                .is_some_and(|d| d.contains("127.0.0.1")),
            "{}",
            json["engine"]
        );
        assert_eq!(json["workspace"]["mode"], "protect");
        assert_eq!(json["workspace"]["guards"][0]["path"], ".git");
        let internal = json["networks"]
            .as_array()
            .expect("networks")
            .iter()
            .find(|n| n["internal"] == true)
            .expect("internal network");
        assert_eq!(
            internal["options"]["com.docker.network.bridge.inhibit_ipv4"],
            "true"
        );
        for c in json["containers"].as_array().expect("containers") {
            assert_eq!(c["confinement"]["cap_drop"][0], "ALL", "{}", c["name"]);
            assert_eq!(c["confinement"]["no_new_privileges"], true, "{}", c["name"]);
        }
        let json: serde_json::Value =
            serde_json::from_str(&dry(&["--format", "json", "--workspace", "copy"]))
                .expect("plan JSON");
        assert_eq!(json["workspace"]["mode"], "copy");
        assert!(
            leftovers(&engine, &run).await.is_empty(),
            "a dry run created objects"
        );
        assert_eq!(env.state_entries(), 0, "a dry run created state");
        let names: Vec<String> = std::fs::read_dir(ws.path())
            .expect("workspace")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec![".git".to_owned()],
            "a dry run created placeholders"
        );
    })
    .await;
}
