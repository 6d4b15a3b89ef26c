//! The real binary, spawned: startup validation, SIGHUP reload, SIGTERM
//! drain, decision logs without secrets, and bounded memory while 100 MB
//! stream each way (RSS read from /proc).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_egress-proxy");
const SECRET: &str = "binary-SECRET-token-9f8e7d";

struct Spawned {
    child: Child,
    /// Reads stderr into `logs` until EOF.
    reader: Option<tokio::task::JoinHandle<()>>,
    logs: Arc<Mutex<Vec<String>>>,
    /// A handle with the same shape as the in-process proxy so the curl
    /// helpers work.
    handle: TestProxy,
}

impl Spawned {
    fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    fn signal(&self, sig: &str) {
        let st = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(st.success());
    }

    fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Waits for the process to exit and for its stderr to be read to EOF.
    async fn exit(&mut self) -> std::process::ExitStatus {
        let status = tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .unwrap()
            .unwrap();
        if let Some(r) = self.reader.take() {
            tokio::time::timeout(DEADLINE, r).await.unwrap().unwrap();
        }
        status
    }
}

pub(crate) fn base_cmd(w: &World, routes: &PathBuf) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--routes")
        .arg(routes)
        .arg("--ca-cert")
        .arg(&w.proxy_ca.cert_path)
        .arg("--ca-key")
        .arg(&w.proxy_ca.key_path)
        .arg("--upstream-ca")
        .arg(&w.upstream_ca.cert_path)
        .arg("--log-format")
        .arg("json")
        .arg("--grace-period")
        .arg("30s")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("RUST_LOG")
        .env("EGRESS_TOKEN_1", SECRET)
        .kill_on_drop(true);
    for h in HOSTS {
        c.arg("--resolve").arg(format!("{h}=127.0.0.1"));
    }
    c
}

/// The spawned binary resolves with `--resolve` (names only), so its
/// routes list the upstream's real TLS port and URLs name it.
pub(crate) fn with_upstream_port(w: &World, routes: &str) -> String {
    routes.replace(
        "allow_private: true\n",
        &format!(
            "allow_private: true\n    ports: [{}]\n",
            w.upstream.tls_port
        ),
    )
}

/// `https://host:<upstream TLS port>/path` for the spawned binary.
pub(crate) fn tls_url(w: &World, host: &str, path: &str) -> String {
    format!("https://{host}:{}{path}", w.upstream.tls_port)
}

async fn spawn(w: &World, routes: &str) -> Spawned {
    let path = w.path("bin-routes.yaml");
    std::fs::write(&path, with_upstream_port(w, routes)).unwrap();
    let mut child = base_cmd(w, &path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let l2 = logs.clone();
    let reader = tokio::spawn(async move {
        let mut tx = Some(tx);
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("egress-proxy listening") {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                let addr: SocketAddr = v["listen"].as_str().unwrap().parse().unwrap();
                if let Some(tx) = tx.take() {
                    let _ = tx.send(addr);
                }
            }
            l2.lock().unwrap().push(line);
        }
    });
    let addr = tokio::time::timeout(DEADLINE, rx)
        .await
        .expect("proxy did not report its address")
        .unwrap();
    // A handle for the curl helpers; its in-process parts are unused.
    let handle = dummy_handle(w, addr).await;
    Spawned {
        child,
        reader: Some(reader),
        logs,
        handle,
    }
}

/// A `TestProxy` pointing at `addr` (only `addr` is used by `curl`).
async fn dummy_handle(w: &World, addr: SocketAddr) -> TestProxy {
    let mut o = ProxyOpts::new("version: 1\nroutes: []\n");
    o.routes_file_name = "unused-routes.yaml";
    let mut p = w.proxy(o).await;
    p.shutdown.cancel();
    p.addr = addr;
    p
}

#[tokio::test]
async fn sighup_reloads_and_sigterm_drains() {
    let w = World::new().await;
    let routes = "version: 1\nroutes:\n  - host: api.test\n    allow_private: true\n  - host: auth.test\n    allow_private: true\n    auth: { scheme: Bearer, token_env: EGRESS_TOKEN_1 }\n";
    let mut s = spawn(&w, routes).await;
    let ca = &w.proxy_ca.cert_path;
    let p = &s.handle;
    let r = curl(
        p,
        ca,
        &[&tls_url(
            &w,
            "auth.test",
            "/echo?token=should-not-be-logged",
        )],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.json()["headers"]["authorization"][0],
        format!("Bearer {SECRET}")
    );
    assert_eq!(
        curl(p, ca, &[&tls_url(&w, "new.test", "/echo")])
            .await
            .status,
        403
    );
    let v1 = curl(p, ca, &["http://_egress.local/status"]).await.json()["version"].clone();

    // Valid file + SIGHUP → the new route works.
    let path = w.path("bin-routes.yaml");
    std::fs::write(
        &path,
        with_upstream_port(
            &w,
            &format!("{routes}  - host: new.test\n    allow_private: true\n"),
        ),
    )
    .unwrap();
    s.signal("HUP");
    let v2 = poll_until("reload to take effect", || async {
        let v = curl(p, ca, &["http://_egress.local/status"]).await.json()["version"].clone();
        (v != v1).then_some(v)
    })
    .await;
    assert_eq!(
        curl(p, ca, &[&tls_url(&w, "new.test", "/echo")])
            .await
            .status,
        200
    );

    // Invalid file + SIGHUP → old table kept, /status says why.
    std::fs::write(&path, "version: 1\nroutes:\n  - hots: api.test\n").unwrap();
    s.signal("HUP");
    let err = poll_until("reload error to show", || async {
        let st = curl(p, ca, &["http://_egress.local/status"]).await.json();
        st["last_reload_error"].as_str().map(str::to_owned)
    })
    .await;
    assert!(err.contains("bin-routes.yaml"), "{err}");
    assert!(err.contains("hots"), "{err}");
    let st = curl(p, ca, &["http://_egress.local/status"]).await.json();
    assert_eq!(st["version"], v2);
    assert_eq!(
        curl(p, ca, &[&tls_url(&w, "new.test", "/echo")])
            .await
            .status,
        200
    );

    // SIGTERM → exit 0.
    s.signal("TERM");
    let status = s.exit().await;
    assert!(status.success(), "{status:?}");

    // Logs: one JSON line per decision; never the token or the query.
    let logs = s.logs();
    assert!(!logs.contains(SECRET), "token leaked into logs");
    assert!(
        !logs.contains("should-not-be-logged"),
        "query leaked into logs"
    );
    let decisions: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "egress_proxy::decision")
        .collect();
    let deny = decisions
        .iter()
        .find(|v| v["decision"] == "deny" && v["host"] == "new.test")
        .unwrap_or_else(|| panic!("no deny line in:\n{logs}"));
    assert_eq!(deny["status"], 403);
    let allow = decisions
        .iter()
        .find(|v| v["decision"] == "allow" && v["host"] == "auth.test")
        .unwrap();
    assert_eq!(allow["route"], "auth.test");
    assert_eq!(allow["path"], "/echo");
    assert!(allow["bytes_out"].as_u64().unwrap() > 0);
    for key in ["timestamp", "client", "method", "duration_ms", "bytes_in"] {
        assert!(allow.get(key).is_some(), "missing {key} in {allow}");
    }
    assert!(logs.contains("routes reload failed"), "{logs}");
}

#[tokio::test]
async fn hundred_megabytes_each_way_with_bounded_memory() {
    let w = World::new().await;
    let s = spawn(
        &w,
        "version: 1\nroutes:\n  - host: api.test\n    allow_private: true\n",
    )
    .await;
    let ca = &w.proxy_ca.cert_path;
    let p = &s.handle;
    let n: u64 = 100 * 1024 * 1024;
    // Warm up: one small request, then take the baseline.
    assert_eq!(
        curl(p, ca, &[&tls_url(&w, "api.test", "/echo")])
            .await
            .status,
        200
    );
    let (base_hwm, _) = rss_kb(s.pid());

    let r = curl(
        p,
        ca,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            &tls_url(&w, "api.test", &format!("/bytes/{n}")),
        ],
    )
    .await;
    assert_eq!(r.body, n.to_string(), "{r:?}");
    let file = w.path("big-upload.bin");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&file).unwrap();
        let chunk = vec![b'u'; 1024 * 1024];
        for _ in 0..100 {
            f.write_all(&chunk).unwrap();
        }
    }
    let r = curl(
        p,
        ca,
        &[
            "-T",
            file.to_str().unwrap(),
            &tls_url(&w, "api.test", "/upload"),
        ],
    )
    .await;
    assert_eq!(r.body, format!("received {n}"), "{r:?}");
    let (hwm, rss) = rss_kb(s.pid());
    eprintln!("proxy RSS: baseline peak {base_hwm} kB, peak after 2x100 MB {hwm} kB, now {rss} kB");
    // Buffering either body would need > 100 MB; streaming stays far below.
    assert!(
        hwm < 48 * 1024,
        "peak RSS {hwm} kB: bodies are being buffered"
    );
    assert!(
        hwm < base_hwm + 32 * 1024,
        "peak RSS grew from {base_hwm} to {hwm} kB"
    );
}

#[tokio::test]
async fn bad_files_exit_nonzero_before_binding() {
    let w = World::new().await;
    // Hold a port: if the binary tried to bind it first, the error would be
    // about binding, not about the file.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = held.local_addr().unwrap().to_string();
    let good_routes = w.path("ok-routes.yaml");
    std::fs::write(&good_routes, "version: 1\nroutes: []\n").unwrap();
    let bad_routes = w.path("bad-routes.yaml");
    std::fs::write(
        &bad_routes,
        "version: 1\nroutes:\n  - host: \"http://x.test\"\n    allow_private: true\n",
    )
    .unwrap();
    let garbage = w.path("garbage.pem");
    std::fs::write(&garbage, "not a pem").unwrap();
    let missing = w.path("missing.yaml");

    let cases: Vec<(Vec<(&str, PathBuf)>, &str)> = vec![
        (vec![("--routes", missing.clone())], "missing.yaml"),
        (vec![("--routes", bad_routes.clone())], "bad-routes.yaml"),
        (vec![("--ca-cert", garbage.clone())], "garbage.pem"),
        (vec![("--ca-key", garbage.clone())], "garbage.pem"),
        (
            vec![("--ca-key", w.upstream_ca.key_path.clone())],
            "does not match",
        ),
        (vec![("--upstream-ca", garbage.clone())], "garbage.pem"),
        (vec![("--upstream-ca", missing.clone())], "missing.yaml"),
    ];
    for (overrides, expect) in cases {
        // The full flag set, with this case's overrides applied.
        let mut args: Vec<(String, PathBuf)> = vec![
            ("--routes".into(), good_routes.clone()),
            ("--ca-cert".into(), w.proxy_ca.cert_path.clone()),
            ("--ca-key".into(), w.proxy_ca.key_path.clone()),
            ("--upstream-ca".into(), w.upstream_ca.cert_path.clone()),
        ];
        for (flag, val) in &overrides {
            for a in args.iter_mut() {
                if a.0 == *flag {
                    a.1 = val.clone();
                }
            }
        }
        let mut c = Command::new(BIN);
        c.arg("--listen")
            .arg(&listen)
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy");
        for (f, v) in &args {
            c.arg(f).arg(v);
        }
        let out = tokio::time::timeout(DEADLINE, c.output())
            .await
            .unwrap()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{overrides:?} should fail");
        assert!(
            stderr.contains(expect),
            "{overrides:?}: expected {expect:?} in:\n{stderr}"
        );
        assert!(
            !stderr.contains("binding"),
            "{overrides:?} failed at bind, not validation:\n{stderr}"
        );
    }
    // Missing required flag: clap's usage error.
    let out = Command::new(BIN)
        .env_remove("EGRESS_LISTEN")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    drop(held);
}

#[tokio::test]
async fn sigint_exits_zero() {
    let w = World::new().await;
    let mut s = spawn(&w, "version: 1\nroutes: []\n").await;
    let r = curl(
        &s.handle,
        &w.proxy_ca.cert_path,
        &["http://_egress.local/status"],
    )
    .await;
    assert_eq!(r.status, 200);
    s.signal("INT");
    let status = s.exit().await;
    assert!(status.success(), "{status:?}");
    assert!(s.logs().contains("SIGINT"), "{}", s.logs());
}

/// The walls of issue 11 in the spawned binary, with curl and Python:
/// another port, a credential over plain HTTP, h2c, and a DLP refusal
/// that must reach a client still uploading.
#[tokio::test]
async fn the_walls_hold_in_the_spawned_binary() {
    let w = World::new().await;
    let (tls, plain) = (w.upstream.tls_port, w.upstream.plain_port);
    let routes = format!(
        "version: 1\nroutes:\n  - host: api.test\n    allow_private: true\n    ports: [{tls}, {plain}]\n  - host: auth.test\n    allow_private: true\n    ports: [{tls}, {plain}]\n    auth: {{ scheme: Bearer, token_env: EGRESS_TOKEN_1 }}\n  - host: denied.test\n    ports: [{tls}]\n"
    );
    let path = w.path("walls-routes.yaml");
    std::fs::write(&path, routes).unwrap();
    let mut child = base_cmd(&w, &path)
        .args(["--dlp-action", "block"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr: SocketAddr = tokio::time::timeout(DEADLINE, async {
        while let Ok(Some(l)) = lines.next_line().await {
            if l.contains("egress-proxy listening") {
                let v: serde_json::Value = serde_json::from_str(&l).unwrap();
                return v["listen"].as_str().unwrap().parse().unwrap();
            }
        }
        panic!("exited before listening")
    })
    .await
    .unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let p = dummy_handle(&w, addr).await;
    let ca = &w.proxy_ca.cert_path;
    // Loopback without the opt-in.
    let r = curl(&p, ca, &[&format!("https://denied.test:{tls}/x")]).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("loopback address"), "{}", r.body);
    // Another port.
    let r = curl(&p, ca, &[&format!("https://api.test:{}/x", free_port())]).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("is not allowed for api.test"), "{}", r.body);
    // The credential never goes out in plain HTTP.
    let r = curl(&p, ca, &[&format!("http://auth.test:{plain}/echo")]).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(!r.body.contains(SECRET));
    // h2c.
    let r = curl(
        &p,
        ca,
        &["--http2", &format!("http://api.test:{plain}/echo")],
    )
    .await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("only WebSocket upgrades"), "{}", r.body);
    // DLP refusal mid-upload, read by Python requests.
    let mut data = format!("key {}{}\n", "AKIA", "QWERTYUIOPASDFGH").into_bytes();
    data.extend(std::iter::repeat_n(b'x', 6 << 20));
    let file = w.path("walls-upload.bin");
    std::fs::write(&file, data).unwrap();
    let script = "import sys, requests\nwith open(sys.argv[3], 'rb') as f:\n    r = requests.post(sys.argv[2], data=f, proxies={'https': sys.argv[1]}, verify=sys.argv[4], timeout=60)\nprint(r.status_code)\nprint(r.text)\n";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(format!("http://{addr}"))
        .arg(format!("https://api.test:{tls}/upload"))
        .arg(&file)
        .arg(ca)
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("403"), "{stdout}");
    assert!(stdout.contains("aws-access-key-id"), "{stdout}");
    let _ = child.kill().await;
}
