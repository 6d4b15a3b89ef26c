//! Throughput and latency of egress-proxy against a direct connection, on
//! loopback. Not a test: it prints a Markdown table (docs/performance.md).
//!
//! Run: `cargo bench -p egress-proxy --bench proxy` (release build; the
//! proxy under test is the real binary, spawned, so its RSS is its own).
//! Knobs: `BENCH_SECS` (per scenario, default 3), `BENCH_CONNS`
//! (keep-alive connection counts, default `1,8,16,32`), `BENCH_BULK_MB`
//! (default 1024), `BENCH_RUST_LOG` (the proxy's `RUST_LOG`; `warn` turns
//! the decision log off), `BENCH_UPLOAD_BODY` (`prose`: the upload is
//! keyword-free English-like text instead of one repeated byte, the input
//! that matters with `BENCH_PROXY_ARGS="--dlp-action block"`). The route is credentialed and path-allowlisted, as
//! real API routes are; the proxy's stderr is a pipe this process reads
//! (as a container runtime's log collector would). Every loop is bounded
//! in time and in count.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "support/prose.rs"]
mod prose;
#[path = "../tests/it/support.rs"]
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use support::*;

const MAX_REQUESTS_PER_WORKER: usize = 2_000_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Direct,
    Proxy,
}

struct Bench {
    _dir: tempfile::TempDir,
    proxy_ca: TestCa,
    upstream_ca: rustls_pki_types::CertificateDer<'static>,
    upstream_port: u16,
    proxy: SocketAddr,
    pid: u32,
    upstream_pid: u32,
    secs: Duration,
}

impl Bench {
    /// A TLS stream to the upstream: directly, or CONNECT through the proxy.
    async fn open(&self, path: Path) -> Box<dyn IoStream> {
        let port = self.upstream_port;
        match path {
            Path::Proxy => Box::new(
                connect_tls(self.proxy, "api.test", port, "api.test", &self.proxy_ca).await,
            ),
            Path::Direct => {
                let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                tcp.set_nodelay(true).unwrap();
                let mut roots = rustls::RootCertStore::empty();
                roots.add(self.upstream_ca.clone()).unwrap();
                let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
                let name = rustls_pki_types::ServerName::try_from("api.test").unwrap();
                Box::new(
                    tokio_rustls::TlsConnector::from(Arc::new(cfg))
                        .connect(name, tcp)
                        .await
                        .unwrap(),
                )
            }
        }
    }

    async fn connect(&self, path: Path) -> SendRequest<Full<Bytes>> {
        let (send, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(self.open(path).await))
                .await
                .unwrap();
        tokio::spawn(conn);
        send
    }

    fn host(&self) -> String {
        format!("api.test:{}", self.upstream_port)
    }
}

trait IoStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> IoStream for T {}

async fn request(
    send: &mut SendRequest<Full<Bytes>>,
    host: &str,
    path: &str,
    body: Bytes,
) -> usize {
    send.ready().await.unwrap();
    let method = if body.is_empty() { "GET" } else { "POST" };
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .body(Full::new(body))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let mut n = 0;
    let mut b = resp.into_body();
    while let Some(f) = b.frame().await {
        n += f.unwrap().data_ref().map_or(0, Bytes::len);
    }
    n
}

struct Latency {
    rps: f64,
    /// Proxy CPU time (user + system) per request, µs.
    proxy_cpu_us: f64,
    /// Context switches of the proxy's threads per request (voluntary:
    /// a thread parked in epoll/futex; involuntary: preempted).
    proxy_switches: f64,
    /// CPU time of every process on the path (this client, the upstream
    /// and, through the proxy, the proxy) per request, µs.
    total_cpu_us: f64,
    p50_us: f64,
    p99_us: f64,
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i])
}

async fn keep_alive(b: &Arc<Bench>, path: Path, conc: usize) -> Latency {
    let stop = Arc::new(AtomicBool::new(false));
    // The window opens once every connection is set up and warmed up:
    // handshakes and first requests are not keep-alive work.
    let ready = Arc::new(tokio::sync::Barrier::new(conc + 1));
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let b = b.clone();
        let stop = stop.clone();
        let ready = ready.clone();
        tasks.push(tokio::spawn(async move {
            let mut send = b.connect(path).await;
            let host = b.host();
            // Warm up.
            for _ in 0..10 {
                request(&mut send, &host, "/sse-once", Bytes::new()).await;
            }
            ready.wait().await;
            let mut lat = Vec::with_capacity(100_000);
            while !stop.load(Ordering::Relaxed) && lat.len() < MAX_REQUESTS_PER_WORKER {
                let t = Instant::now();
                request(&mut send, &host, "/sse-once", Bytes::new()).await;
                lat.push(t.elapsed().as_micros() as u32);
            }
            lat
        }));
    }
    tokio::time::timeout(Duration::from_secs(60), ready.wait())
        .await
        .expect("every connection set up and warmed up within 60 s");
    let start = Instant::now();
    let cpu0 = cpu_ticks(b.pid);
    let switches0 = context_switches(b.pid);
    let others0 = cpu_ticks(std::process::id()) + cpu_ticks(b.upstream_pid);
    tokio::time::sleep(b.secs).await;
    stop.store(true, Ordering::Relaxed);
    let cpu = cpu_ticks(b.pid) - cpu0;
    let switches = context_switches(b.pid) - switches0;
    let others = cpu_ticks(std::process::id()) + cpu_ticks(b.upstream_pid) - others0;
    let total = if path == Path::Proxy {
        cpu + others
    } else {
        others
    };
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let el = start.elapsed().as_secs_f64();
    all.sort_unstable();
    Latency {
        rps: all.len() as f64 / el,
        proxy_cpu_us: cpu as f64 * 1e6 / TICKS_PER_SEC / all.len().max(1) as f64,
        proxy_switches: switches as f64 / all.len().max(1) as f64,
        total_cpu_us: total as f64 * 1e6 / TICKS_PER_SEC / all.len().max(1) as f64,
        p50_us: pct(&all, 0.50),
        p99_us: pct(&all, 0.99),
    }
}

/// Voluntary + involuntary context switches of every thread of `pid`.
fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .map(|t| {
            std::fs::read_to_string(t.path().join("status"))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// Kernel clock ticks per second for /proc/<pid>/stat (100 on Linux x86).
const TICKS_PER_SEC: f64 = 100.0;

/// User + system CPU ticks a process has used, from /proc.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

async fn new_connections(b: &Arc<Bench>, path: Path, conc: usize) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (b, stop, count) = (b.clone(), stop.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            let host = b.host();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < MAX_REQUESTS_PER_WORKER {
                let mut send = b.connect(path).await;
                request(&mut send, &host, "/sse-once", Bytes::new()).await;
                count.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(b.secs).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// Samples the proxy's RSS while `f` runs; returns (result, min kB, max kB).
async fn with_rss<F: std::future::Future<Output = T>, T>(pid: u32, f: F) -> (T, u64, u64) {
    let done = Arc::new(AtomicBool::new(false));
    let d2 = done.clone();
    let sampler = tokio::spawn(async move {
        let (mut lo, mut hi) = (u64::MAX, 0);
        let start = Instant::now();
        while !d2.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(600) {
            let (_, rss) = rss_kb(pid);
            lo = lo.min(rss);
            hi = hi.max(rss);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (lo, hi)
    });
    let r = f.await;
    done.store(true, Ordering::Relaxed);
    let (lo, hi) = sampler.await.unwrap();
    (r, lo, hi)
}

async fn bulk_download(b: &Arc<Bench>, path: Path, bytes: u64) -> f64 {
    let mut send = b.connect(path).await;
    let t = Instant::now();
    let n = request(
        &mut send,
        &b.host(),
        &format!("/bytes/{bytes}"),
        Bytes::new(),
    )
    .await;
    assert_eq!(n as u64, bytes);
    bytes as f64 / 1e6 / t.elapsed().as_secs_f64()
}

async fn bulk_upload(b: &Arc<Bench>, path: Path, bytes: u64) -> f64 {
    let tls = b.open(path).await;
    let (mut send, conn) = hyper::client::conn::http1::handshake::<_, TestBody>(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let chunk = upload_chunk(256 * 1024);
    let stream = futures_util::stream::unfold(bytes, move |left| {
        let chunk = chunk.clone();
        async move {
            if left == 0 {
                return None;
            }
            let n = left.min(chunk.len() as u64);
            Some((
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(hyper::body::Frame::data(
                    chunk.slice(..n as usize),
                )),
                left - n,
            ))
        }
    });
    let body = BodyExt::boxed(http_body_util::StreamBody::new(stream));
    let req = http::Request::post("/upload")
        .header("host", b.host())
        .header("content-length", bytes.to_string())
        .body(body)
        .unwrap();
    let t = Instant::now();
    let resp = send.send_request(req).await.unwrap();
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(text, format!("received {bytes}").as_bytes());
    bytes as f64 / 1e6 / t.elapsed().as_secs_f64()
}

/// One upload chunk: `len` bytes of `u`, or of keyword-free prose with
/// `BENCH_UPLOAD_BODY=prose`.
fn upload_chunk(len: usize) -> Bytes {
    if std::env::var("BENCH_UPLOAD_BODY").as_deref() != Ok("prose") {
        return Bytes::from(vec![b'u'; len]);
    }
    Bytes::from(prose::words(len))
}

async fn sse_ttfe(b: &Arc<Bench>, path: Path, runs: usize) -> (f64, f64) {
    let mut send = b.connect(path).await;
    let host = b.host();
    let mut v = Vec::new();
    for _ in 0..runs {
        send.ready().await.unwrap();
        let req = http::Request::get("/sse-once")
            .header("host", &host)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let t = Instant::now();
        let resp = send.send_request(req).await.unwrap();
        let mut body = resp.into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert!(first.data_ref().is_some());
        v.push(t.elapsed().as_micros() as u32);
        while body.frame().await.is_some() {}
    }
    v.sort_unstable();
    (pct(&v, 0.5), pct(&v, 0.99))
}

fn main() {
    // Skip under `cargo test --benches` (which passes --bench only for real runs).
    if !std::env::args().any(|a| a == "--bench") && std::env::var_os(UPSTREAM_ROLE).is_none() {
        println!("egress-proxy bench: run with `cargo bench -p egress-proxy --bench proxy`");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match std::env::var_os(UPSTREAM_ROLE) {
        Some(dir) => rt.block_on(serve_upstream_role(dir.into())),
        None => rt.block_on(run()),
    }
}

async fn run() {
    let secs = Duration::from_secs(
        std::env::var("BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3),
    );
    let bulk_mb: u64 = std::env::var("BENCH_BULK_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    // The upstream runs in its own process (this binary, re-executed), so
    // "direct" is a real cross-process loopback hop like the proxy's.
    let dir = tempfile::tempdir().unwrap();
    let mut upstream = tokio::process::Command::new(std::env::current_exe().unwrap())
        .env(UPSTREAM_ROLE, dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut line = String::new();
    {
        use tokio::io::AsyncBufReadExt;
        let mut out = tokio::io::BufReader::new(upstream.stdout.take().unwrap());
        tokio::time::timeout(DEADLINE, out.read_line(&mut line))
            .await
            .unwrap()
            .unwrap();
    }
    let upstream_port: u16 = line.trim().parse().expect("upstream port");
    let upstream_ca_path = dir.path().join("upstream-ca.pem");
    let upstream_ca = {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_file(&upstream_ca_path).unwrap()
    };
    let proxy_ca = TestCa::new(dir.path(), "proxy");
    let routes = dir.path().join("bench-routes.yaml");
    std::fs::write(
        &routes,
        format!(
            "version: 1\nroutes:\n  - host: api.test\n    allow_private: true\n    ports: [{upstream_port}]\n    path_allowlist: [/sse-once, /bytes/, /upload]\n    auth: {{ scheme: Bearer, token_env: EGRESS_TOKEN_1 }}\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_egress-proxy"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--routes")
        .arg(&routes)
        .arg("--ca-cert")
        .arg(&proxy_ca.cert_path)
        .arg("--ca-key")
        .arg(&proxy_ca.key_path)
        .arg("--upstream-ca")
        .arg(&upstream_ca_path)
        .arg("--resolve")
        .arg("api.test=127.0.0.1")
        .args(
            std::env::var("BENCH_PROXY_ARGS")
                .unwrap_or_default()
                .split_whitespace(),
        )
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env("EGRESS_TOKEN_1", "bench-token-value")
        .env(
            "RUST_LOG",
            std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Read the log pipe like a log collector; count the decision lines.
    let log_lines = Arc::new(AtomicU64::new(0));
    {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let n = log_lines.clone();
        tokio::spawn(async move {
            while let Ok(Some(l)) = lines.next_line().await {
                if l.contains("egress_proxy::decision") {
                    n.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    let proxy: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    poll_until("proxy to listen", || async {
        TcpStream::connect(proxy).await.ok().map(|_| ())
    })
    .await;
    let pid = child.id().unwrap();
    let (_, idle_rss) = rss_kb(pid);
    let b = Arc::new(Bench {
        _dir: dir,
        proxy_ca,
        upstream_ca,
        upstream_port,
        proxy,
        pid,
        upstream_pid: upstream.id().unwrap_or(0),
        secs,
    });
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let want = |name: &str| only.is_empty() || only.split(',').any(|o| o.trim() == name);

    println!("\n| scenario | direct | through proxy | proxy/direct |");
    println!("|---|---|---|---|");
    let conns: Vec<usize> = std::env::var("BENCH_CONNS")
        .ok()
        .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 8, 16, 32]);
    for conc in conns {
        if !want("keepalive") {
            break;
        }
        let d = keep_alive(&b, Path::Direct, conc).await;
        let p = keep_alive(&b, Path::Proxy, conc).await;
        println!(
            "| keep-alive req/s, {conc} conn | {:.0} | {:.0} | {:.0}% |",
            d.rps,
            p.rps,
            100.0 * p.rps / d.rps
        );
        println!(
            "| keep-alive p50 / p99 latency, {conc} conn | {:.0} / {:.0} µs | {:.0} / {:.0} µs | {:+.0} / {:+.0} µs |",
            d.p50_us,
            d.p99_us,
            p.p50_us,
            p.p99_us,
            p.p50_us - d.p50_us,
            p.p99_us - d.p99_us
        );
        println!(
            "| proxy CPU per request, {conc} conn | – | {:.1} µs | |",
            p.proxy_cpu_us
        );
        println!(
            "| proxy context switches per request, {conc} conn | – | {:.2} | |",
            p.proxy_switches
        );
        println!(
            "| CPU per request, all processes, {conc} conn | {:.1} µs | {:.1} µs | |",
            d.total_cpu_us, p.total_cpu_us
        );
    }
    if want("newconn") {
        let d = new_connections(&b, Path::Direct, 4).await;
        let p = new_connections(&b, Path::Proxy, 4).await;
        println!(
            "| new connections/s (TLS each; proxy: CONNECT + TLS), 4 workers | {d:.0} | {p:.0} | {:.0}% |",
            100.0 * p / d
        );
    }
    let (mut dl_lo, mut dl_hi, mut ul_lo, mut ul_hi) = (0, 0, 0, 0);
    if want("bulk") {
        let bytes = bulk_mb * 1024 * 1024;
        let d = bulk_download(&b, Path::Direct, bytes).await;
        let cpu0 = cpu_ticks(b.pid);
        let p;
        (p, dl_lo, dl_hi) = with_rss(b.pid, bulk_download(&b, Path::Proxy, bytes)).await;
        let dl_cpu = (cpu_ticks(b.pid) - cpu0) as f64 / TICKS_PER_SEC;
        println!(
            "| download {bulk_mb} MB, MB/s | {d:.0} | {p:.0} | {:.0}% |",
            100.0 * p / d
        );
        let d = bulk_upload(&b, Path::Direct, bytes).await;
        let cpu0 = cpu_ticks(b.pid);
        let p;
        (p, ul_lo, ul_hi) = with_rss(b.pid, bulk_upload(&b, Path::Proxy, bytes)).await;
        let ul_cpu = (cpu_ticks(b.pid) - cpu0) as f64 / TICKS_PER_SEC;
        println!(
            "| upload {bulk_mb} MB, MB/s | {d:.0} | {p:.0} | {:.0}% |",
            100.0 * p / d
        );
        println!(
            "| proxy CPU for the {bulk_mb} MB download / upload | – | {dl_cpu:.2} s / {ul_cpu:.2} s | |"
        );
    }
    if want("sse") {
        let (d50, d99) = sse_ttfe(&b, Path::Direct, 200).await;
        let (p50, p99) = sse_ttfe(&b, Path::Proxy, 200).await;
        println!(
            "| SSE time to first event p50 / p99 | {d50:.0} / {d99:.0} µs | {p50:.0} / {p99:.0} µs | {:+.0} / {:+.0} µs |",
            p50 - d50,
            p99 - d99
        );
    }
    println!(
        "\n{} decision log lines read from the proxy's stderr",
        log_lines.load(Ordering::Relaxed)
    );
    let (hwm, now) = rss_kb(b.pid);
    println!("\n| proxy memory | kB |");
    println!("|---|---|");
    println!("| idle RSS after start | {idle_rss} |");
    println!("| RSS during {bulk_mb} MB download (min–max) | {dl_lo}–{dl_hi} |");
    println!("| RSS during {bulk_mb} MB upload (min–max) | {ul_lo}–{ul_hi} |");
    println!("| peak RSS over the whole run (VmHWM) | {hwm} |");
    println!("| RSS at the end | {now} |");
    let _ = child.kill().await;
    let _ = upstream.kill().await;
}

/// Set (to a directory) in the re-executed child that serves the upstream.
const UPSTREAM_ROLE: &str = "EGRESS_BENCH_UPSTREAM_DIR";

/// The upstream process: writes its CA to the directory, prints its TLS
/// port, serves until stdin closes (the parent exited or killed it).
async fn serve_upstream_role(dir: std::path::PathBuf) {
    let ca = TestCa::new(&dir, "upstream");
    let up = Upstream::start(&ca, &["api.test"]).await;
    println!("{}", up.tls_port);
    let _ = tokio::task::spawn_blocking(|| {
        use std::io::Read;
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    })
    .await;
    drop(up);
}
