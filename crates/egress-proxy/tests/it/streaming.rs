//! Streaming: SSE event by event, 100-continue, WebSocket upgrade, large
//! bodies through the in-process proxy.

use std::process::Stdio;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::support::*;

const ROUTES: &str = "version: 1\nroutes:\n  - host: api.test\n    allow_private: true\n";

#[tokio::test]
async fn sse_first_event_arrives_before_the_stream_ends() {
    let w = World::new().await;
    let p = w.proxy(ProxyOpts::new(ROUTES)).await;
    let mut child = curl_cmd(&p, &w.proxy_ca.cert_path)
        .arg("-N")
        .arg(w.https("api.test", "/sse"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The upstream holds the second event until released: the first must
    // already be here.
    let first = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.as_deref(), Some("data: first-event"));
    assert!(
        child.try_wait().unwrap().is_none(),
        "stream must still be open"
    );
    w.upstream.state.sse_release.notify_one();
    let mut rest = Vec::new();
    while let Some(l) = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .unwrap()
        .unwrap()
    {
        rest.push(l);
    }
    assert!(rest.contains(&"data: second-event".to_owned()), "{rest:?}");
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn expect_100_continue_and_chunked_uploads_pass() {
    let w = World::new().await;
    let p = w.proxy(ProxyOpts::new(ROUTES)).await;
    let ca = &w.proxy_ca.cert_path;
    let body = "a".repeat(5000);
    let r = curl(
        &p,
        ca,
        &[
            "-H",
            "Expect: 100-continue",
            // Without a `100 Continue` from the proxy curl would wait out
            // this timeout (longer than the test's curl --max-time).
            "--expect100-timeout",
            "600",
            "--data-binary",
            &body,
            &w.https("api.test", "/upload"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, "received 5000");
    // A refused request answers at once, without asking for the body.
    let r = curl(
        &p,
        ca,
        &[
            "-H",
            "Expect: 100-continue",
            "--expect100-timeout",
            "600",
            "--data-binary",
            &body,
            &w.https("denied.test", "/upload"),
        ],
    )
    .await;
    assert_eq!(r.status, 403, "{r:?}");
    let r = curl(
        &p,
        ca,
        &[
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &body,
            &w.https("api.test", "/upload"),
        ],
    )
    .await;
    assert_eq!(r.body, "received 5000", "{r:?}");
}

#[tokio::test]
async fn large_download_and_upload_stream_in_process() {
    let w = World::new().await;
    let p = w.proxy(ProxyOpts::new(ROUTES)).await;
    let ca = &w.proxy_ca.cert_path;
    let n: u64 = 20 * 1024 * 1024;
    let r = curl(
        &p,
        ca,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            &w.https("api.test", &format!("/bytes/{n}")),
        ],
    )
    .await;
    assert_eq!(r.body, n.to_string(), "{r:?}");
    let file = w.path("upload.bin");
    std::fs::write(&file, vec![b'u'; n as usize]).unwrap();
    let r = curl(
        &p,
        ca,
        &[
            "-T",
            file.to_str().unwrap(),
            &w.https("api.test", "/upload"),
        ],
    )
    .await;
    assert_eq!(r.body, format!("received {n}"), "{r:?}");
}

#[tokio::test]
async fn websocket_upgrade_passes_after_the_decision() {
    let w = World::new().await;
    let p = w.proxy(ProxyOpts::new(ROUTES)).await;
    let port = 443;
    let before = w.upstream.state.requests.load(Ordering::SeqCst);
    // Denied host: the upgrade never reaches an upstream.
    let mut send = tunnel_client(p.addr, "denied.test", port, &w.proxy_ca).await;
    let req = http::Request::get("/ws")
        .header("host", format!("denied.test:{port}"))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(w.upstream.state.requests.load(Ordering::SeqCst), before);

    // Allowed host: 101, then bytes flow both ways.
    let mut send = tunnel_client(p.addr, "api.test", port, &w.proxy_ca).await;
    let req = http::Request::get("/ws")
        .header("host", format!("api.test:{port}"))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 101);
    assert_eq!(resp.headers()["upgrade"], "websocket");
    let upgraded = hyper::upgrade::on(resp).await.unwrap();
    let mut io = hyper_util::rt::TokioIo::new(upgraded);
    // A masked text frame (the raw echo upstream sends the same bytes back).
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | 18];
    frame.extend_from_slice(&mask);
    frame.extend(
        b"ping-through-proxy"
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4]),
    );
    io.write_all(&frame).await.unwrap();
    let mut buf = vec![0u8; frame.len()];
    tokio::time::timeout(DEADLINE, io.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(buf, frame);
}

#[tokio::test]
async fn keep_alive_reuses_one_tunnel_for_many_requests() {
    let w = World::new().await;
    let p = w.proxy(ProxyOpts::new(ROUTES)).await;
    let port = 443;
    let mut send = tunnel_client(p.addr, "api.test", port, &w.proxy_ca).await;
    for i in 0..20 {
        let (status, _, body) = get(
            &mut send,
            &format!("api.test:{port}"),
            &format!("/echo?i={i}"),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    // And the response body streamed through hyper's client in frames.
    let req = http::Request::get("/bytes/1000000")
        .header("host", format!("api.test:{port}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    send.ready().await.unwrap();
    let resp = send.send_request(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 1_000_000);
}
