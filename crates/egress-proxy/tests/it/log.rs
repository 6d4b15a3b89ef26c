//! The decision log through the real binary: one line per decision, none
//! lost at a graceful exit, and a log reader that stops reading never
//! blocks a request (lines are dropped and counted instead).

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::binary::{base_cmd, with_upstream_port};
use crate::support::*;

const ROUTES: &str = "version: 1\nroutes:\n  - host: api.test\n    allow_private: true\n";

/// Spawns the binary with `extra` flags; returns the child and the listen
/// address, leaving the rest of stderr unread.
async fn spawn(
    w: &World,
    extra: &[&str],
) -> (
    tokio::process::Child,
    BufReader<tokio::process::ChildStderr>,
    std::net::SocketAddr,
) {
    let path = w.path("log-routes.yaml");
    std::fs::write(&path, with_upstream_port(w, ROUTES)).unwrap();
    let mut child = base_cmd(w, &path)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let addr = tokio::time::timeout(DEADLINE, async {
        let mut line = String::new();
        loop {
            line.clear();
            assert!(err.read_line(&mut line).await.unwrap() > 0, "exited early");
            if line.contains("egress-proxy listening") {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                return v["listen"].as_str().unwrap().parse().unwrap();
            }
        }
    })
    .await
    .unwrap();
    (child, err, addr)
}

async fn requests(w: &World, addr: std::net::SocketAddr, n: usize) {
    let port = w.upstream.tls_port;
    let mut send = tunnel_client(addr, "api.test", port, &w.proxy_ca).await;
    for i in 0..n {
        let (status, _, body) = get(
            &mut send,
            &format!("api.test:{port}"),
            &format!("/echo?i={i}"),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
}

fn term(child: &tokio::process::Child) {
    let st = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().unwrap().to_string())
        .status()
        .unwrap();
    assert!(st.success());
}

/// (decision lines, lines reporting drops and their sum).
fn count(rest: &str) -> (usize, u64) {
    let (mut decisions, mut dropped) = (0, 0);
    for l in rest.lines() {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON line ({e}): {l}"));
        if v["target"] == "egress_proxy::decision" {
            decisions += 1;
        }
        if v["target"] == "egress_proxy::journal" {
            dropped += v["dropped"].as_u64().unwrap();
        }
    }
    (decisions, dropped)
}

#[tokio::test]
async fn no_decision_line_is_lost_at_a_graceful_exit() {
    let w = World::new().await;
    let (mut child, mut err, addr) = spawn(&w, &[]).await;
    let n = 300;
    requests(&w, addr, n).await;
    // Straight after the last answer, before the writer's next batch.
    term(&child);
    let mut rest = String::new();
    tokio::time::timeout(DEADLINE, err.read_to_string(&mut rest))
        .await
        .unwrap()
        .unwrap();
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    let (decisions, dropped) = count(&rest);
    assert_eq!(dropped, 0, "{rest}");
    assert_eq!(decisions, n, "every decision has its line");
}

#[tokio::test]
async fn a_stalled_log_reader_never_blocks_requests() {
    let w = World::new().await;
    // A small buffer; stderr is a pipe (64 KiB) this test stops reading.
    let (mut child, mut err, addr) = spawn(&w, &["--log-buffer-bytes", "16384"]).await;
    let n = 3000;
    tokio::time::timeout(std::time::Duration::from_secs(120), requests(&w, addr, n))
        .await
        .expect("requests waited for the log writer");
    term(&child);
    let mut rest = String::new();
    tokio::time::timeout(DEADLINE, err.read_to_string(&mut rest))
        .await
        .unwrap()
        .unwrap();
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    let (decisions, dropped) = count(&rest);
    assert!(
        dropped > 0,
        "the writer fell behind, so lines were dropped: {decisions} lines"
    );
    // Every decision line is written or counted (a few dropped lines may
    // be the shutdown messages, which also went into the full buffer).
    let lost = (n - decisions) as u64;
    assert!(decisions <= n);
    assert!(
        dropped >= lost && dropped <= lost + 10,
        "{decisions} written, {dropped} dropped of {n}"
    );
}
