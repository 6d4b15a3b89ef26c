//! Inspection cost, one core: prints numbers, asserts nothing.
//!
//! `cargo bench -p egress-proxy --bench inspect`. For request bodies it
//! streams each input through `DlpBody` (the code the proxy runs: 64 KiB
//! batches, 16 KiB held back, decode-and-rescan, joined fields) and
//! compares with the rules alone over the same windows (what the proxy did
//! before decode-and-rescan). For heads it times `Dlp::scan_head` per
//! request. For responses it times `Inbound::judge` per MB.
//! `BENCH_MB` (default 32) sizes each body input.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use egress_proxy::dlp::DlpBody;
use egress_proxy::{Dlp, DlpAction, DlpSettings, Inbound, InboundAction};
use http::{HeaderMap, HeaderValue};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use manifest::RequestHost;
use secret_scan::{Profile, RuleSet};

#[path = "support/prose.rs"]
mod prose;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An LLM-API-like JSON body: messages with prose and code.
fn llm_json(len: usize) -> Vec<u8> {
    let msg = r#"{"role": "user", "content": "Here is the code:\n```rust\nfn checksum(path: &Path) -> io::Result<String> {\n    let mut h = Sha256::new();\n    let mut f = File::open(path)?;\n    io::copy(&mut f, &mut h)?;\n    Ok(hex::encode(h.finalize()))\n}\n```\nWhy is it slow on large files? The token budget is fine and the password field is hashed."}, "#;
    let mut out = b"{\"model\": \"m\", \"max_tokens\": 4096, \"messages\": [".to_vec();
    while out.len() < len {
        out.extend_from_slice(msg.as_bytes());
    }
    out.truncate(len);
    out
}

/// JSON carrying base64 images (the worst case for decode-and-rescan).
fn b64_json(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let raw: Vec<u8> = (0..48 * 1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        out.extend_from_slice(b"{\"image\": \"data:image/png;base64,");
        out.extend_from_slice(data_encoding::BASE64.encode(&raw).as_bytes());
        out.extend_from_slice(b"\"},\n");
    }
    out.truncate(len);
    out
}

fn html(len: usize) -> Vec<u8> {
    let page = "<div class=\"doc\"><h2>Section</h2><p>Some documentation text with <a href=\"/x\">links</a> and <code>code()</code>.</p><!-- layout --></div>\n";
    page.as_bytes().iter().copied().cycle().take(len).collect()
}

fn dlp(action: DlpAction) -> Arc<Dlp> {
    Arc::new(
        Dlp::load(&DlpSettings {
            action,
            ..Default::default()
        })
        .unwrap(),
    )
}

/// Streams `data` through a DlpBody in 64 KiB reads; best of three, MB/s.
fn body_mbps(d: &Arc<Dlp>, data: &[u8], content_type: &str) -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_str(content_type).unwrap());
    let mut best = f64::MAX;
    for _ in 0..3 {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = data
            .chunks(64 * 1024)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        let inner = StreamBody::new(futures_util::stream::iter(frames));
        let mut body = DlpBody::new(
            inner,
            d.clone(),
            Arc::new(OnceLock::new()),
            "bench".into(),
            "/".into(),
        )
        .for_request(&headers);
        let t = Instant::now();
        rt.block_on(async {
            while let Some(f) = body.frame().await {
                std::hint::black_box(f.is_ok());
            }
        });
        best = best.min(t.elapsed().as_secs_f64());
    }
    data.len() as f64 / 1e6 / best
}

/// The rules alone (git profile, plain scan) over the same 80 KiB windows
/// every 64 KiB: what body scanning cost before decode-and-rescan.
fn rules_only_mbps(data: &[u8]) -> f64 {
    let set = RuleSet::builtin(Profile::Git);
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let mut at = 0;
        while at < data.len() {
            let end = (at + 80 * 1024).min(data.len());
            std::hint::black_box(set.scan(&data[at..end], None));
            at += 64 * 1024;
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    data.len() as f64 / 1e6 / best
}

fn head_us(d: &Dlp, path: &str, headers: &HeaderMap, n: usize) -> f64 {
    let host = RequestHost::parse("api.example.test").unwrap();
    for _ in 0..100 {
        std::hint::black_box(d.scan_head(&host, "api.example.test", path, headers));
    }
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(d.scan_head(&host, "api.example.test", path, headers));
    }
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn main() {
    let mb: f64 = std::env::var("BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32.0);
    let len = (mb * 1048576.0) as usize;
    let on = dlp(DlpAction::Block);
    println!("request bodies ({mb} MiB each), MB/s on one core, best of 3:");
    println!(
        "{:<40} {:>14} {:>14} {:>12}",
        "input", "rules only", "DlpBody", "µs/MB DlpBody"
    );
    let inputs: [(&str, Vec<u8>, &str); 4] = [
        ("text, no keyword hits", prose::words(len), "text/plain"),
        ("LLM API JSON with code", llm_json(len), "application/json"),
        ("JSON with base64 images", b64_json(len), "application/json"),
        ("HTML", html(len), "text/html"),
    ];
    // `BENCH_ONLY=base64` runs only the inputs (and sections) whose name
    // holds it: one input under callgrind counts instructions reliably on
    // a loaded machine.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    for (name, data, ct) in inputs.iter().filter(|(n, _, _)| n.contains(&only)) {
        let base = rules_only_mbps(data);
        let full = body_mbps(&on, data, ct);
        println!("{name:<40} {base:>14.0} {full:>14.0} {:>12.0}", 1e6 / full);
    }

    let mut h = HeaderMap::new();
    for (k, v) in [
        ("accept", "application/json"),
        ("accept-encoding", "gzip, br"),
        ("user-agent", "agent/1.0 (linux; x86_64)"),
        ("content-type", "application/json"),
        ("x-request-id", "3fa85f64-5717-4562-b3fc-2c963f66afa6"),
        ("if-none-match", "\"9b74c9897bac770ffc029102a200c5de\""),
        ("cookie", "theme=dark; _session=Zq3vR8xT1mK9pL2wN7yB4cF6"),
        ("x-github-api-version", "2022-11-28"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    if !only.is_empty() && !"request heads".contains(&only) {
        return;
    }
    let n: usize = std::env::var("BENCH_HEADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    println!("\nrequest heads, µs per request (mean of {n}):");
    for (name, path) in [
        ("short path, no query", "/repos/acme/widgets"),
        (
            "API path with query",
            "/repos/acme/widgets/issues?state=open&per_page=50&page=2&sort=updated",
        ),
        (
            "long search query",
            "/search?q=how+to+fix+rust+borrow+checker+error+E0502+cannot+borrow+as+mutable+because+it+is+also+borrowed&hl=en&num=20&start=40",
        ),
    ] {
        let empty = HeaderMap::new();
        println!(
            "{name:<40} {:>8.1} (8 headers)  {:>8.1} (no headers)",
            head_us(&on, path, &h, n),
            head_us(&on, path, &empty, n)
        );
    }

    if !only.is_empty() {
        return;
    }
    let inbound = Inbound::load(InboundAction::Warn, &[]).unwrap();
    let page = html(len);
    let text = prose::words(len);
    println!("\nresponses (prompt-injection scan), MB/s:");
    for (name, data) in [("HTML", &page), ("plain text", &text)] {
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            for c in data.chunks(256 * 1024) {
                std::hint::black_box(inbound.judge("docs.example.test", c));
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!("{name:<40} {:>8.0}", data.len() as f64 / 1e6 / best);
    }
}
