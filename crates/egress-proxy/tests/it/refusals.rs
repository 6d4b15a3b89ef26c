//! Refusals reach the client mid-upload: when DLP stops a body that is
//! still arriving, curl, Python `requests` and Node all read the 403 (not
//! a reset or a broken pipe), with and without `Expect: 100-continue`.

use egress_proxy::{DlpAction, DlpSettings};

use crate::support::*;

const ROUTES: &str = "version: 1\nroutes:\n  - host: api.test\n    allow_private: true\n";

/// An AWS-access-key-shaped value built at run time (no literal in the repo).
fn fake_key() -> String {
    let tail: String = (0..16).map(|i| (b'C' + (i * 5) % 23) as char).collect();
    format!("{}{tail}", "AKIA")
}

/// Several MB with the secret near the start.
fn upload_file(w: &World) -> std::path::PathBuf {
    let mut data = b"header line\n".repeat(80);
    data.extend_from_slice(format!("aws key {}\n", fake_key()).as_bytes());
    let filler = b"the quick brown fox jumps over the lazy dog 0123456789\n";
    while data.len() < 6 << 20 {
        data.extend_from_slice(filler);
    }
    let path = w.path("upload.bin");
    std::fs::write(&path, data).unwrap();
    path
}

async fn setup() -> (World, TestProxy) {
    let w = World::new().await;
    let mut o = ProxyOpts::new(ROUTES);
    o.dlp = DlpSettings {
        action: DlpAction::Block,
        rules: None,
        exempt: vec![],
        detectors: vec![],
    };
    let p = w.proxy(o).await;
    (w, p)
}

#[track_caller]
fn assert_readable_refusal(who: &str, status: u16, body: &str) {
    assert_eq!(status, 403, "{who}: status {status}, body {body}");
    assert!(body.contains("aws-access-key-id"), "{who}: {body}");
    assert!(body.contains("dlp_action"), "{who}: {body}");
}

#[tokio::test]
async fn curl_reads_the_403_mid_upload() {
    let (w, p) = setup().await;
    let file = upload_file(&w);
    let data = format!("@{}", file.display());
    for (expect, url) in [
        ("Expect: 100-continue", w.https("api.test", "/collect/a")),
        ("Expect:", w.https("api.test", "/collect/b")),
        ("Expect: 100-continue", w.http("api.test", "/collect/c")),
        ("Expect:", w.http("api.test", "/collect/d")),
    ] {
        let r = curl(
            &p,
            &w.proxy_ca.cert_path,
            &["-H", expect, "--data-binary", &data, &url],
        )
        .await;
        let who = format!("curl {expect:?} {url}");
        assert_eq!(r.exit, 0, "{who}: {r:?}");
        assert_readable_refusal(&who, r.status, &r.body);
    }
}

const REQUESTS_PY: &str = r#"
import sys, requests
proxy, ca, url, path, expect = sys.argv[1:6]
headers = {"Expect": "100-continue"} if expect == "yes" else {}
with open(path, "rb") as f:
    r = requests.post(url, data=f, headers=headers, proxies={"http": proxy, "https": proxy}, verify=ca, timeout=60)
print(r.status_code)
print(r.text)
"#;

#[tokio::test]
async fn python_requests_reads_the_403_mid_upload() {
    let (w, p) = setup().await;
    let file = upload_file(&w);
    let script = w.path("upload.py");
    std::fs::write(&script, REQUESTS_PY).unwrap();
    for (expect, url) in [
        ("no", w.https("api.test", "/collect/p1")),
        ("yes", w.https("api.test", "/collect/p2")),
        ("no", w.http("api.test", "/collect/p3")),
        // A policy refusal that never reads the body.
        ("no", w.https("denied.test", "/upload")),
    ] {
        let out = tokio::process::Command::new("python3")
            .arg(&script)
            .arg(p.url())
            .arg(&w.proxy_ca.cert_path)
            .arg(&url)
            .arg(&file)
            .arg(expect)
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let who = format!("requests expect={expect} {url}");
        assert!(
            out.status.success(),
            "{who}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (status, body) = stdout.split_once('\n').unwrap();
        if url.contains("denied.test") {
            assert_eq!(status.trim(), "403", "{who}: {body}");
            assert!(
                body.contains("not in this bottle's egress allowlist"),
                "{who}: {body}"
            );
        } else {
            assert_readable_refusal(&who, status.trim().parse().unwrap(), body);
        }
    }
}

/// Node's http/https with a CONNECT tunnel it opens itself (Node has no
/// proxy support built in), optionally waiting for `100 Continue`.
const NODE_JS: &str = r#"
const http = require("http"), https = require("https"), tls = require("tls"), fs = require("fs");
const [proxyPort, caPath, host, path, file, expect, scheme] = process.argv.slice(2);
const ca = fs.readFileSync(caPath);
function send(opts) {
  const headers = { "content-type": "application/octet-stream", "content-length": fs.statSync(file).size };
  if (expect === "yes") headers["expect"] = "100-continue";
  const mod = scheme === "https" ? https : http;
  const req = mod.request({ ...opts, method: "POST", headers: { ...headers, host } }, (res) => {
    let body = "";
    res.on("data", (d) => (body += d));
    res.on("end", () => { console.log(res.statusCode); console.log(body); process.exit(0); });
  });
  req.on("error", (e) => { console.log("ERROR " + e.code + " " + e.message); process.exit(1); });
  const stream = () => fs.createReadStream(file).pipe(req);
  if (expect === "yes") req.on("continue", stream); else stream();
}
if (scheme === "https") {
  const c = http.request({ host: "127.0.0.1", port: proxyPort, method: "CONNECT", path: host + ":443" });
  c.on("connect", (res, socket) => {
    send({ path, createConnection: () => tls.connect({ socket, servername: host, ca }) });
  });
  c.on("error", (e) => { console.log("ERROR " + e.message); process.exit(1); });
  c.end();
} else {
  send({ host: "127.0.0.1", port: proxyPort, path: "http://" + host + path });
}
setTimeout(() => { console.log("ERROR timeout"); process.exit(2); }, 60000);
"#;

#[tokio::test]
async fn node_reads_the_403_mid_upload() {
    let (w, p) = setup().await;
    let file = upload_file(&w);
    let script = w.path("upload.js");
    std::fs::write(&script, NODE_JS).unwrap();
    for (expect, scheme) in [
        ("no", "https"),
        ("yes", "https"),
        ("no", "http"),
        ("yes", "http"),
    ] {
        let out = tokio::process::Command::new("node")
            .arg(&script)
            .arg(p.addr.port().to_string())
            .arg(&w.proxy_ca.cert_path)
            .arg("api.test")
            .arg(format!("/collect/node-{expect}-{scheme}"))
            .arg(&file)
            .arg(expect)
            .arg(scheme)
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let who = format!("node expect={expect} {scheme}");
        assert!(
            out.status.success(),
            "{who}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (status, body) = stdout.split_once('\n').unwrap();
        assert_readable_refusal(&who, status.trim().parse().unwrap(), body);
    }
}
