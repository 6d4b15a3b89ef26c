//! Integration tests: supervise in-process on 127.0.0.1:0, driven by the
//! official Python MCP client (`tests/it/mcp_client.py`) over streamable
//! HTTP, with the test playing the operator side by writing decision files.
//!
//! Without the Python `mcp` package the tests fail with the install hint;
//! `CLAUDE_BOTTLE_ALLOW_SKIPS=1` (never honoured under CI) makes them print
//! `SKIP` and pass instead.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use manifest::queue::{AuditRecord, Decision, Outcome, ProposalId, QUEUE_FORMAT_VERSION};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio_util::sync::CancellationToken;

mod queue_cli;
mod stub_proxy;

/// Generous bound for anything a loaded 2-core machine should finish.
const DEADLINE: Duration = Duration::from_secs(90);

fn python() -> String {
    std::env::var("SUPERVISE_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// True when the Python MCP client is importable. Skips (prints why) or, in
/// CI, panics.
fn have_mcp_client(test: &str) -> bool {
    static AVAILABLE: OnceLock<Result<(), String>> = OnceLock::new();
    let result = AVAILABLE.get_or_init(|| {
        match std::process::Command::new(python())
            .args(["-c", "import mcp.client.streamable_http, mcp"])
            .output()
        {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(String::from_utf8_lossy(&o.stderr).trim().to_owned()),
            Err(e) => Err(format!("cannot run {}: {e}", python())),
        }
    });
    match result {
        Ok(()) => true,
        Err(why) => {
            // A test that cannot run never counts as passed unless skips
            // are allowed explicitly (README, "Test"); CI never allows them.
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
            let allowed = std::env::var("CLAUDE_BOTTLE_ALLOW_SKIPS").as_deref() == Ok("1");
            assert!(
                allowed && !ci,
                "{test} cannot run: the Python MCP client is unavailable ({why}); install it with `bash .ci/setup.d/supervise.sh` (pip install 'mcp>=2,<3'), or set CLAUDE_BOTTLE_ALLOW_SKIPS=1 to skip it"
            );
            eprintln!(
                "SKIP {test}: Python MCP client unavailable ({why}) (CLAUDE_BOTTLE_ALLOW_SKIPS=1); pip install 'mcp>=2,<3' to run it"
            );
            false
        }
    }
}

struct Server {
    url: String,
    addr: std::net::SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), supervise::Error>>,
}

struct Opts {
    timeout_secs: u64,
    egress_proxy: Option<String>,
    dockerfile: Option<PathBuf>,
    pipelock: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            timeout_secs: 60,
            egress_proxy: None,
            dockerfile: None,
            pipelock: false,
        }
    }
}

async fn start(queue: &Path, opts: Opts) -> Server {
    let config = supervise::Config::new(
        queue.to_owned(),
        "dev-test1",
        opts.egress_proxy.as_deref(),
        opts.dockerfile,
        opts.pipelock,
        opts.timeout_secs,
        supervise::DEFAULT_ALLOWED_HOSTS
            .iter()
            .map(|s| s.to_string())
            .collect(),
    )
    .unwrap()
    .with_intervals(Duration::from_millis(25), Duration::from_millis(200));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(supervise::run(listener, config, shutdown.clone()));
    Server {
        url: format!("http://{addr}/mcp"),
        addr,
        shutdown,
        task,
    }
}

impl Server {
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("server drained within the deadline")
            .unwrap()
            .unwrap();
    }
}

struct Client {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    progress: Vec<Value>,
}

impl Client {
    async fn connect(url: &str, host_header: Option<&str>) -> (Self, Value) {
        Self::spawn(&[url], host_header).await
    }

    /// The SDK's high-level client on the newest protocol (stateless).
    async fn connect_modern(url: &str) -> (Self, Value) {
        Self::spawn(&["--modern", url], None).await
    }

    async fn spawn(args: &[&str], host_header: Option<&str>) -> (Self, Value) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/mcp_client.py");
        let mut cmd = Command::new(python());
        cmd.arg(script).args(args);
        if let Some(h) = host_header {
            cmd.arg(h);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut c = Self {
            child,
            stdin,
            lines,
            progress: Vec::new(),
        };
        let ready = c.recv().await;
        assert_eq!(ready["ready"], true, "client did not initialise: {ready}");
        (c, ready)
    }

    async fn send(&mut self, cmd: Value) {
        let mut line = cmd.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// The next answer line; progress events are collected on the way.
    async fn recv(&mut self) -> Value {
        loop {
            let v = self.next_line().await;
            if v["event"] == "progress" {
                self.progress.push(v);
                continue;
            }
            return v;
        }
    }

    async fn next_line(&mut self) -> Value {
        let line = tokio::time::timeout(DEADLINE, self.lines.next_line())
            .await
            .expect("MCP client answered within the deadline")
            .unwrap()
            .expect("MCP client exited early");
        serde_json::from_str(&line).unwrap()
    }

    /// Waits for the first progress event of a running call.
    async fn wait_progress(&mut self) -> Value {
        let v = self.next_line().await;
        assert_eq!(v["event"], "progress", "expected a progress event, got {v}");
        v
    }

    async fn call(&mut self, tool: &str, args: Value) -> Value {
        self.send(json!({"op": "call", "tool": tool, "args": args}))
            .await;
        self.recv().await
    }

    async fn quit(mut self) {
        self.send(json!({"op": "quit"})).await;
        let _ = tokio::time::timeout(DEADLINE, self.child.wait()).await;
    }
}

/// Polls `queue/pending` until a proposal file appears; returns its id.
async fn wait_for_pending(queue: &Path) -> ProposalId {
    let dir = queue.join("pending");
    let start = Instant::now();
    loop {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name().into_string().unwrap();
                if let Some(stem) = name.strip_suffix(".json")
                    && let Ok(id) = ProposalId::parse(stem)
                {
                    return id;
                }
            }
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no proposal appeared in {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Plays the operator side: writes the decision file atomically.
fn decide(queue: &Path, id: &ProposalId, outcome: Outcome, note: &str, diff: Option<&str>) {
    let d = Decision {
        version: QUEUE_FORMAT_VERSION,
        id: id.clone(),
        outcome,
        note: note.into(),
        decided_at: jiff::Timestamp::now(),
        diff: diff.map(str::to_owned),
    };
    let bytes = serde_json::to_vec_pretty(&d).unwrap();
    supervise::queue::write_atomic(&queue.join("decisions"), &format!("{id}.json"), &bytes)
        .unwrap();
}

fn audit(queue: &Path) -> Vec<AuditRecord> {
    std::fs::read_to_string(queue.join("audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn pending_count(queue: &Path) -> usize {
    std::fs::read_dir(queue.join("pending"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn tool_names(list: &Value) -> Vec<String> {
    list["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialize_and_list_tools() {
    if !have_mcp_client("initialize_and_list_tools") {
        return;
    }
    let q = tempfile::tempdir().unwrap();
    let server = start(q.path(), Opts::default()).await;
    let (mut c, ready) = Client::connect(&server.url, None).await;
    assert_eq!(ready["server"], "supervise");
    assert!(
        ready["instructions"]
            .as_str()
            .unwrap()
            .contains("egress-block")
    );
    c.send(json!({"op": "list_tools"})).await;
    let list = c.recv().await;
    assert_eq!(
        tool_names(&list),
        [
            "egress-block",
            "list-egress-routes",
            "capability-block",
            "proposal-status"
        ]
    );
    let egress = &list["tools"][0];
    assert!(egress["description"].as_str().unwrap().contains("403"));
    assert_eq!(
        egress["inputSchema"]["required"],
        json!(["host", "justification"])
    );
    // pipelock-block is not callable when it is not listed.
    let r = c
        .call(
            "pipelock-block",
            json!({"host": "a.com", "justification": "x"}),
        )
        .await;
    assert!(r["ok"] == false || r["isError"] == true, "{r}");
    c.quit().await;
    server.stop().await;

    let server = start(
        q.path(),
        Opts {
            pipelock: true,
            ..Opts::default()
        },
    )
    .await;
    let (mut c, _) = Client::connect(&server.url, None).await;
    c.send(json!({"op": "list_tools"})).await;
    let list = c.recv().await;
    assert!(
        tool_names(&list).contains(&"pipelock-block".to_string()),
        "{list}"
    );
    c.quit().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_protocol_client_works_statelessly() {
    if !have_mcp_client("newest_protocol_client_works_statelessly") {
        return;
    }
    let q = tempfile::tempdir().unwrap();
    let server = start(q.path(), Opts::default()).await;
    let (mut c, ready) = Client::connect_modern(&server.url).await;
    assert_eq!(ready["server"], "supervise", "{ready}");
    c.send(json!({"op": "list_tools"})).await;
    assert_eq!(tool_names(&c.recv().await).len(), 4);
    c.send(
        json!({"op": "call", "tool": "egress-block", "progress": true,
        "args": {"host": "static.example.org", "justification": "assets"}}),
    )
    .await;
    let id = wait_for_pending(q.path()).await;
    c.wait_progress().await;
    decide(q.path(), &id, Outcome::Approved, "", None);
    let r = c.recv().await;
    assert_eq!(r["structured"]["status"], "approved", "{r}");
    let bad = c
        .call(
            "egress-block",
            json!({"host": "a.com/x", "justification": "x"}),
        )
        .await;
    assert_eq!(bad["isError"], true, "{bad}");
    c.quit().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_header_of_the_sidecar_alias_is_accepted() {
    if !have_mcp_client("host_header_of_the_sidecar_alias_is_accepted") {
        return;
    }
    let q = tempfile::tempdir().unwrap();
    let server = start(q.path(), Opts::default()).await;
    // The official client, sending Host: supervise:9100 as Claude Code does
    // for http://supervise:9100/mcp.
    let (mut c, _) = Client::connect(&server.url, Some("supervise:9100")).await;
    c.send(json!({"op": "list_tools"})).await;
    assert_eq!(c.recv().await["ok"], true);
    c.quit().await;
    // Any other name is refused by the DNS-rebinding guard.
    assert_eq!(raw_initialize(server.addr, "supervise:9100").await, 200);
    assert_eq!(raw_initialize(server.addr, "evil.example").await, 403);
    server.stop().await;
}

/// Sends a bare initialize POST with the given Host; returns the status.
async fn raw_initialize(addr: std::net::SocketAddr, host: &str) -> u16 {
    use tokio::io::AsyncReadExt;
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#;
    let req = format!(
        "POST /mcp HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(DEADLINE, s.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_block_approved_with_progress_keepalive() {
    if !have_mcp_client("egress_block_approved_with_progress_keepalive") {
        return;
    }
    let q = tempfile::tempdir().unwrap();
    let server = start(q.path(), Opts::default()).await;
    let (mut c, _) = Client::connect(&server.url, None).await;
    c.send(json!({
        "op": "call",
        "tool": "egress-block",
        "progress": true,
        "args": {"host": "API.example.com", "path_allowlist": ["/v1/"], "justification": "read the API docs"},
    }))
    .await;
    let id = wait_for_pending(q.path()).await;
    // The call stays open and the client hears from the server meanwhile.
    let p = c.wait_progress().await;
    assert!(p["message"].as_str().unwrap().contains(id.as_str()), "{p}");
    decide(
        q.path(),
        &id,
        Outcome::Approved,
        "ok for docs",
        Some("+  - host: api.example.com\n"),
    );
    let r = c.recv().await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["isError"], false, "{r}");
    let text = r["text"].as_str().unwrap();
    assert!(
        text.starts_with(&format!("Approved (proposal {id})")),
        "{text}"
    );
    assert!(
        text.contains("ok for docs") && text.contains("retry your request"),
        "{text}"
    );
    assert!(text.contains("+  - host: api.example.com"), "{text}");
    assert_eq!(r["structured"]["status"], "approved");
    assert_eq!(r["structured"]["message"], r["text"]);

    // The proposal on disk is normalised and audited exactly once.
    let records = audit(q.path());
    assert_eq!(records.len(), 1, "{records:?}");
    let AuditRecord::Proposal(p) = &records[0] else {
        panic!("expected a proposal record, got {records:?}");
    };
    assert_eq!(p.id, id);
    assert_eq!(p.bottle, "dev-test1");
    assert_eq!(p.justification, "read the API docs");
    let j = serde_json::to_value(p).unwrap();
    assert_eq!(j["tool"], "egress-block");
    assert_eq!(j["arguments"]["host"], "api.example.com");

    // proposal-status agrees after the fact.
    let s = c.call("proposal-status", json!({"id": id.as_str()})).await;
    assert_eq!(s["structured"]["status"], "approved", "{s}");
    c.quit().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_block_rejected_carries_the_note() {
    if !have_mcp_client("egress_block_rejected_carries_the_note") {
        return;
    }
    let q = tempfile::tempdir().unwrap();
    let server = start(q.path(), Opts::default()).await;
    let (mut c, _) = Client::connect(&server.url, None).await;
    c.send(json!({"op": "call", "tool": "egress-block", "args": {"host": "*.pastebin.com", "justification": "share logs"}}))
        .await;
    let id = wait_for_pending(q.path()).await;
    decide(
        q.path(),
        &id,
        Outcome::Rejected,
        "no paste sites; write logs to the workspace",
        None,
    );
    let r = c.recv().await;
    assert_eq!(r["isError"], false, "{r}");
    let text = r["text"].as_str().unwrap();
    assert!(text.starts_with("Rejected"), "{text}");
    assert!(text.contains("no paste sites"), "{text}");
    assert_eq!(r["structured"]["status"], "rejected");
    c.quit().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_answers_pending_and_status_reports_the_later_decision() {
    if !have_mcp_client("timeout_answers_pending_and_status_reports_the_later_decision") {
        return;
    }
    let q = tempfile::tempdir().unwrap();
    let server = start(
        q.path(),
        Opts {
            timeout_secs: 1,
            ..Opts::default()
        },
    )
    .await;
    let (mut c, _) = Client::connect(&server.url, None).await;
    let r = c
        .call(
            "egress-block",
            json!({"host": "crates.io", "justification": "cargo"}),
        )
        .await;
    assert_eq!(r["isError"], false, "{r}");
    assert_eq!(r["structured"]["status"], "pending", "{r}");
    let id = r["structured"]["id"].as_str().unwrap().to_owned();
    assert!(
        r["text"].as_str().unwrap().contains("proposal-status"),
        "{r}"
    );

    let s = c.call("proposal-status", json!({"id": id})).await;
    assert_eq!(s["structured"]["status"], "pending", "{s}");

    // Asking again for the same thing does not queue a duplicate.
    let again = c
        .call(
            "egress-block",
            json!({"host": "crates.io", "justification": "cargo, again"}),
        )
        .await;
    assert_eq!(again["structured"]["id"], id.as_str(), "{again}");
    assert_eq!(pending_count(q.path()), 1);

    decide(
        q.path(),
        &ProposalId::parse(&id).unwrap(),
        Outcome::Approved,
        "",
        None,
    );
    let s = c.call("proposal-status", json!({"id": id})).await;
    assert_eq!(s["structured"]["status"], "approved", "{s}");
    assert!(
        s["text"]
            .as_str()
            .unwrap()
            .contains("Operator's note: (none)"),
        "{s}"
    );
    c.quit().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_inputs_are_tool_errors_and_queue_nothing() {
    if !have_mcp_client("invalid_inputs_are_tool_errors_and_queue_nothing") {
        return;
    }
    let q = tempfile::tempdir().unwrap();
    let server = start(q.path(), Opts::default()).await;
    let (mut c, _) = Client::connect(&server.url, None).await;
    let cases = [
        (
            "egress-block",
            json!({"host": "example.com:443", "justification": "x"}),
            "has a port",
        ),
        (
            "egress-block",
            json!({"host": "example.com", "path_allowlist": ["docs"], "justification": "x"}),
            "path_allowlist[0]",
        ),
        (
            "egress-block",
            json!({"host": "example.com", "auth": {"scheme": "Digest", "token_ref": "T"}, "justification": "x"}),
            "unknown auth scheme",
        ),
        (
            "egress-block",
            json!({"host": "example.com", "justification": ""}),
            "justification: must not be empty",
        ),
        (
            "egress-block",
            json!({"host": "example.com"}),
            "missing field `justification`",
        ),
        (
            "capability-block",
            json!({"dockerfile": "", "justification": "x"}),
            "dockerfile: must not be empty",
        ),
        (
            "proposal-status",
            json!({"id": "../../etc/passwd"}),
            "invalid proposal id",
        ),
        (
            "proposal-status",
            json!({"id": "20260101-000000-nothere"}),
            "no proposal with id",
        ),
        ("list-egress-routes", json!({}), "without --egress-proxy"),
    ];
    for (tool, args, want) in cases {
        let r = c.call(tool, args.clone()).await;
        assert_eq!(r["ok"], true, "{tool} {args}: {r}");
        assert_eq!(r["isError"], true, "{tool} {args}: {r}");
        let text = r["text"].as_str().unwrap();
        assert!(
            text.contains(want),
            "{tool} {args}: expected {want:?} in {text:?}"
        );
    }
    let r = c.call("no-such-tool", json!({})).await;
    assert_eq!(r["ok"], false, "unknown tools are protocol errors: {r}");
    assert_eq!(pending_count(q.path()), 0);
    assert!(audit(q.path()).is_empty());
    c.quit().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_egress_routes_reads_the_proxy_table() {
    if !have_mcp_client("list_egress_routes_reads_the_proxy_table") {
        return;
    }
    let table = json!({"version": "abc123", "routes": [
        {"host": "api.example.com", "path_allowlist": ["/v1/"], "roles": [],
         "auth": {"scheme": "Bearer", "header": "authorization", "token_env": "EGRESS_TOKEN_1"}}
    ]});
    let stub = stub_proxy::start(table.clone()).await;
    let q = tempfile::tempdir().unwrap();
    let server = start(
        q.path(),
        Opts {
            egress_proxy: Some(format!("http://{}", stub.addr)),
            ..Opts::default()
        },
    )
    .await;
    let (mut c, _) = Client::connect(&server.url, None).await;
    let r = c.call("list-egress-routes", json!({})).await;
    assert_eq!(r["isError"], false, "{r}");
    assert_eq!(r["structured"], table);
    let text: Value = serde_json::from_str(r["text"].as_str().unwrap()).unwrap();
    assert_eq!(text, table);
    // The request went to the proxy in absolute form for the magic host.
    assert_eq!(
        stub.requests(),
        vec!["GET http://_egress.local/allowlist host=_egress.local".to_string()]
    );
    c.quit().await;
    server.stop().await;
    drop(stub);

    // An unreachable proxy is a tool error naming the address.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let server = start(
        q.path(),
        Opts {
            egress_proxy: Some(format!("http://{dead}")),
            ..Opts::default()
        },
    )
    .await;
    let (mut c, _) = Client::connect(&server.url, None).await;
    let r = c.call("list-egress-routes", json!({})).await;
    assert_eq!(r["isError"], true, "{r}");
    let text = r["text"].as_str().unwrap();
    assert!(
        text.contains("connecting to the egress proxy") && text.contains(&dead.to_string()),
        "{text}"
    );
    c.quit().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capability_block_queues_a_new_dockerfile() {
    if !have_mcp_client("capability_block_queues_a_new_dockerfile") {
        return;
    }
    let q = tempfile::tempdir().unwrap();
    let current = q.path().join("Dockerfile.current");
    std::fs::write(&current, "FROM debian:bookworm\n").unwrap();
    let server = start(
        q.path(),
        Opts {
            dockerfile: Some(current),
            ..Opts::default()
        },
    )
    .await;
    let (mut c, _) = Client::connect(&server.url, None).await;
    let same = c
        .call(
            "capability-block",
            json!({"dockerfile": "FROM debian:bookworm\n", "justification": "x"}),
        )
        .await;
    assert_eq!(same["isError"], true, "{same}");
    assert!(
        same["text"].as_str().unwrap().contains("identical"),
        "{same}"
    );

    let new = "FROM debian:bookworm\nRUN apt-get update && apt-get install -y jq\n";
    c.send(json!({"op": "call", "tool": "capability-block", "args": {"dockerfile": new, "justification": "need jq"}}))
        .await;
    let id = wait_for_pending(q.path()).await;
    decide(q.path(), &id, Outcome::Approved, "", None);
    let r = c.recv().await;
    assert_eq!(r["isError"], false, "{r}");
    assert!(r["text"].as_str().unwrap().contains("rebuild"), "{r}");
    let AuditRecord::Proposal(p) = &audit(q.path())[0] else {
        panic!("expected a proposal record");
    };
    assert_eq!(
        p.request,
        manifest::queue::ProposalRequest::Capability {
            dockerfile: new.to_owned()
        }
    );
    c.quit().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_wait_keeps_the_proposal_and_delivers_the_decision() {
    if !have_mcp_client("restart_mid_wait_keeps_the_proposal_and_delivers_the_decision") {
        return;
    }
    let q = tempfile::tempdir().unwrap();
    let first = start(q.path(), Opts::default()).await;
    let (mut c1, _) = Client::connect(&first.url, None).await;
    // List first: this client re-lists tools after a result otherwise,
    // which would fail once the server is gone.
    c1.send(json!({"op": "list_tools"})).await;
    assert_eq!(c1.recv().await["ok"], true);
    c1.send(json!({"op": "call", "tool": "egress-block", "args": {"host": "pypi.org", "justification": "pip install"}}))
        .await;
    let id = wait_for_pending(q.path()).await;

    // supervise goes away while the call waits.
    first.stop().await;
    // The waiting call answered "pending" with its id before the session
    // closed, so the agent can ask proposal-status later.
    let r = c1.recv().await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["structured"]["status"], "pending", "{r}");
    assert_eq!(r["structured"]["id"], id.as_str(), "{r}");
    drop(c1);

    // A new supervise on the same queue still knows the proposal.
    let second = start(q.path(), Opts::default()).await;
    let (mut c2, _) = Client::connect(&second.url, None).await;
    let s = c2.call("proposal-status", json!({"id": id.as_str()})).await;
    assert_eq!(s["structured"]["status"], "pending", "{s}");
    decide(q.path(), &id, Outcome::Approved, "go ahead", None);
    let s = c2.call("proposal-status", json!({"id": id.as_str()})).await;
    assert_eq!(s["structured"]["status"], "approved", "{s}");
    assert!(s["text"].as_str().unwrap().contains("go ahead"), "{s}");
    // Restart did not duplicate the audit record.
    assert_eq!(audit(q.path()).len(), 1);
    c2.quit().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_decision_file_is_skipped_until_a_valid_one_lands() {
    if !have_mcp_client("corrupt_decision_file_is_skipped_until_a_valid_one_lands") {
        return;
    }
    let q = tempfile::tempdir().unwrap();
    let server = start(q.path(), Opts::default()).await;
    let (mut c, _) = Client::connect(&server.url, None).await;
    c.send(json!({"op": "call", "tool": "egress-block", "progress": true, "args": {"host": "a.example", "justification": "x"}}))
        .await;
    let id = wait_for_pending(q.path()).await;
    std::fs::write(
        q.path().join("decisions").join(format!("{id}.json")),
        b"{garbage",
    )
    .unwrap();
    // The server keeps waiting (and keeps the client alive) despite it.
    c.wait_progress().await;
    c.wait_progress().await;
    decide(q.path(), &id, Outcome::Rejected, "second thoughts", None);
    let r = c.recv().await;
    assert_eq!(r["structured"]["status"], "rejected", "{r}");
    c.quit().await;
    server.stop().await;
}

#[test]
fn binary_help_and_bad_settings() {
    let bin = env!("CARGO_BIN_EXE_supervise");
    let help = std::process::Command::new(bin)
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--listen",
        "--queue",
        "--bottle",
        "--egress-proxy",
        "--dockerfile",
        "--pipelock",
        "--decision-timeout",
        "--allowed-host",
        "SUPERVISE_QUEUE",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
    let q = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--bottle",
            "dev-x",
            "--decision-timeout",
            "0",
            "--queue",
        ])
        .arg(q.path())
        .env_remove("SUPERVISE_DECISION_TIMEOUT")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("decision timeout 0 s is out of range"),
        "{err}"
    );
    let out = std::process::Command::new(bin)
        .args(["--listen", "127.0.0.1:0", "--bottle", "Dev X", "--queue"])
        .arg(q.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bottle identity \"Dev X\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_and_stops_on_sigterm() {
    let q = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_supervise"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--bottle",
            "dev-bin01",
            "--log-format",
            "json",
            "--queue",
        ])
        .arg(q.path())
        .env("SUPERVISE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut logs = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr: std::net::SocketAddr = loop {
        let line = tokio::time::timeout(DEADLINE, logs.next_line())
            .await
            .expect("supervise logged its address in time")
            .unwrap()
            .expect("supervise exited before listening");
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if v["fields"]["message"] == "supervise listening" {
            break v["fields"]["addr"].as_str().unwrap().parse().unwrap();
        }
    };
    // The queue layout exists as soon as it listens.
    assert!(q.path().join("pending").is_dir() && q.path().join("decisions").is_dir());
    assert!(q.path().join("audit.jsonl").is_file());
    assert_eq!(raw_get(addr, "/healthz").await, 200);
    assert_eq!(raw_get(addr, "/elsewhere").await, 404);
    assert_eq!(raw_initialize(addr, "supervise").await, 200);

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("supervise exited after SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

/// A bare GET; returns the status.
async fn raw_get(addr: std::net::SocketAddr, path: &str) -> u16 {
    use tokio::io::AsyncReadExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(DEADLINE, s.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
}
