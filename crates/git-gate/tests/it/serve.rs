use crate::harness::{RemoteSpec, aws_key, http_raw, world};

#[test]
fn unknown_remote_is_404_with_the_list_of_names() {
    let w = world(&[
        RemoteSpec {
            name: "app",
            branches: "",
        },
        RemoteSpec {
            name: "docs",
            branches: "",
        },
    ]);
    let (status, body) = http_raw(w.gate_addr, "GET /nope.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n", b"").expect("http");
    assert_eq!(status, 404);
    assert!(
        body.contains("unknown remote \"nope\"") && body.contains("app.git, docs.git"),
        "{body}"
    );
    // The real client shows it too.
    let out = w.git(w.dir.path(), &["clone", &w.gate_url("nope"), "x"]);
    assert!(!out.status.success());
}

#[test]
fn malformed_and_oversized_requests_are_400() {
    let w = world(&[RemoteSpec {
        name: "app",
        branches: "",
    }]);
    let body = b"zzzzthis is not a pkt-line";
    let head = format!(
        "POST /app.git/git-upload-pack HTTP/1.1\r\nHost: g\r\nContent-Type: application/x-git-upload-pack-request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let (status, text) = http_raw(w.gate_addr, &head, body).expect("http");
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("malformed pkt-line at byte 0"), "{text}");
    let body = b"0009ab";
    let head = format!(
        "POST /app.git/git-receive-pack HTTP/1.1\r\nHost: g\r\nContent-Type: application/x-git-receive-pack-request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let (status, text) = http_raw(w.gate_addr, &head, body).expect("http");
    assert_eq!(status, 400, "{text}");
    // Oversized: 17 MiB of valid-looking pkt-lines (limit is 16 MiB).
    let line = crate_pkt(&[b'a'; 65000]);
    let mut big = Vec::new();
    while big.len() < 17 << 20 {
        big.extend_from_slice(&line);
    }
    let head = format!(
        "POST /app.git/git-upload-pack HTTP/1.1\r\nHost: g\r\nContent-Type: application/x-git-upload-pack-request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        big.len()
    );
    match http_raw(w.gate_addr, &head, &big) {
        Ok((status, text)) => assert_eq!(status, 400, "{text}"),
        // The gate may answer and close before the client finished sending.
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ),
            "{e}"
        ),
    }
    // Dumb HTTP is refused.
    let (status, _) = http_raw(
        w.gate_addr,
        "GET /app.git/info/refs HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n",
        b"",
    )
    .expect("http");
    assert_eq!(status, 400);
}

fn crate_pkt(payload: &[u8]) -> Vec<u8> {
    git_gate::pktline::encode(payload)
}

#[test]
fn unreachable_upstream_serves_the_mirror_with_a_warning() {
    let w = world(&[RemoteSpec {
        name: "app",
        branches: "",
    }]);
    let first = w.clone("app", "first");
    let head = w.git_ok(&first, &["rev-parse", "HEAD"]);
    w.upstream_stop.cancel();
    // Bounded poll until the upstream no longer accepts.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(w.upstream_addr).is_ok()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let dest = w.path("second");
    let out = w.git(
        w.dir.path(),
        &["clone", &w.gate_url("app"), dest.to_str().expect("utf-8")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("upstream unreachable; served from the gate's mirror"),
        "{err}"
    );
    assert_eq!(w.git_ok(&dest, &["rev-parse", "HEAD"]), head);

    // Protocol v0 (side-band negotiated) hears it too.
    let dest = w.path("third");
    let out = w.git(
        w.dir.path(),
        &[
            "-c",
            "protocol.version=0",
            "clone",
            &w.gate_url("app"),
            dest.to_str().expect("utf-8"),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("upstream unreachable; served from the gate's mirror"),
        "v0: {err}"
    );
    assert_eq!(w.git_ok(&dest, &["rev-parse", "HEAD"]), head);
}

#[test]
fn scan_cli_exits_1_on_findings_and_never_prints_the_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.env");
    let key = aws_key();
    std::fs::write(&bad, format!("A=1\nKEY={key}\n")).expect("write");
    let good = dir.path().join("good.txt");
    std::fs::write(&good, "nothing to see\n").expect("write");
    let exe = env!("CARGO_BIN_EXE_git-gate");
    let out = std::process::Command::new(exe)
        .args(["scan", bad.to_str().expect("utf-8")])
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("bad.env:2:5: aws-access-key-id") && stdout.contains("KEY=AKIA***"),
        "{stdout}"
    );
    assert!(!stdout.contains(&key[4..]));
    let out = std::process::Command::new(exe)
        .args(["scan", good.to_str().expect("utf-8")])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    let mut child = std::process::Command::new(exe)
        .args(["scan", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("x = {key}\n").as_bytes())
            .expect("write");
    }
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(1));
    let out = std::process::Command::new(exe)
        .args(["scan", "/nonexistent/file"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/file"));
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, "[[rules]]\nid = \"broken\"\nregex = '''(x'''\n").expect("write");
    let out = std::process::Command::new(exe)
        .args([
            "scan",
            "--rules",
            rules.to_str().expect("utf-8"),
            good.to_str().expect("utf-8"),
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rules.toml: rule \"broken\": regex"), "{err}");
}

#[test]
fn shutdown_stops_accepting_and_run_returns() {
    let w = world(&[RemoteSpec {
        name: "app",
        branches: "",
    }]);
    w.clone("app", "before");
    w.gate_stop.cancel();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match std::net::TcpStream::connect(w.gate_addr) {
            Err(_) => break,
            Ok(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Ok(_) => panic!("gate still accepting 30 s after shutdown"),
        }
    }
}

#[test]
fn clone_checks_out_the_upstream_default_branch() {
    let w = world(&[RemoteSpec {
        name: "app",
        branches: "",
    }]);
    let up = w.upstream_repo("app");
    w.git_ok(&up, &["branch", "trunk", "main"]);
    w.git_ok(&up, &["symbolic-ref", "HEAD", "refs/heads/trunk"]);
    let repo = w.clone("app", "work");
    assert_eq!(
        w.git_ok(&repo, &["symbolic-ref", "--short", "HEAD"]),
        "trunk"
    );
}
