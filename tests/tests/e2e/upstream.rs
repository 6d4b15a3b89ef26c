//! A fake upstream: our own container on a bottle's egress network, with
//! network aliases (`api.github.test`, `plain.test`, `api.anthropic.com`, …), answering HTTPS (test
//! CA) and plain HTTP with a JSON echo of the request it received.

use std::collections::BTreeMap;
use std::time::Duration;

use launcher::engine::docker::Engine;
use launcher::plan::Attachment;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// Aliases the fake upstream answers to.
pub const ALIASES: &[&str] = &[
    "api.github.test",
    "plain.test",
    "notallowed.test",
    "granted.test",
    "git.test",
    // The Anthropic API host, for the stand-in Claude Code (session tests).
    "api.anthropic.com",
];

/// The fake git upstream's repository URL (served by `git http-backend`).
pub const GIT_UPSTREAM: &str = "https://git.test/acme/app.git";

const SERVER: &str = r#"
import base64, http.server, json, os, ssl, subprocess, threading

def read_body(h):
    if h.headers.get("transfer-encoding", "").lower() == "chunked":
        out = b""
        while True:
            size = int(h.rfile.readline().strip().split(b";")[0], 16)
            if size == 0:
                h.rfile.readline()
                return out
            out += h.rfile.read(size)
            h.rfile.readline()
    n = int(h.headers.get("content-length") or 0)
    return h.rfile.read(n) if n else b""

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self):
        body = read_body(self)
        if self.path.startswith("/acme/"):
            return self.git(body)
        out = json.dumps({"method": self.command, "path": self.path,
                          "headers": {k.lower(): v for k, v in self.headers.items()},
                          "body": body.decode("utf-8", "replace")}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def git(self, body):
        auth = self.headers.get("authorization", "")
        if auth.startswith("Basic "):
            with open("/srv/auth.log", "a") as f:
                f.write(base64.b64decode(auth[6:]).decode("utf-8", "replace") + "\n")
        path, _, query = self.path.partition("?")
        env = dict(os.environ, GIT_PROJECT_ROOT="/srv/git", GIT_HTTP_EXPORT_ALL="1",
                   PATH_INFO=path[len("/acme"):], QUERY_STRING=query, REQUEST_METHOD=self.command,
                   CONTENT_TYPE=self.headers.get("content-type", ""), CONTENT_LENGTH=str(len(body)),
                   HTTP_CONTENT_ENCODING=self.headers.get("content-encoding", ""),
                   HTTP_GIT_PROTOCOL=self.headers.get("git-protocol", ""), REMOTE_USER="gate")
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        sep = b"\r\n\r\n" if b"\r\n\r\n" in out else b"\n\n"
        head, _, rest = out.partition(sep)
        status, headers = 200, []
        for line in head.decode().splitlines():
            k, _, v = line.partition(":")
            if k.lower() == "status":
                status = int(v.strip().split()[0])
            elif k:
                headers.append((k, v.strip()))
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("content-length", str(len(rest)))
        self.end_headers()
        self.wfile.write(rest)
    do_GET = do_POST = do_PUT = answer
    def log_message(self, *a):
        pass

plain = http.server.ThreadingHTTPServer(("0.0.0.0", 80), H)
threading.Thread(target=plain.serve_forever, daemon=True).start()
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("/srv/cert.pem", "/srv/key.pem")
tls = http.server.ThreadingHTTPServer(("0.0.0.0", 443), H)
tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
tls.serve_forever()
"#;

/// Creates `/srv/git/app.git` with one commit on `main`, pushes allowed.
const SEED_REPO: &str = "set -e
git init -q --bare -b main /srv/git/app.git
git -C /srv/git/app.git config http.receivepack true
git init -q -b main /tmp/seed
cd /tmp/seed
echo hello > README.md
git add README.md
git -c user.name=seed -c user.email=seed@example.test commit -q -m seed
git push -q /srv/git/app.git main
";

/// A test CA and a leaf for [`ALIASES`].
pub struct TestPki {
    /// CA certificate (PEM): egress trusts it via `--upstream-ca`.
    pub ca_pem: String,
    /// Leaf certificate (PEM).
    pub leaf_pem: String,
    /// Leaf key (PEM).
    pub leaf_key_pem: String,
}

impl TestPki {
    /// Mints a fresh CA and leaf.
    pub fn mint() -> Self {
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "claude-bottle e2e upstream CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().expect("leaf key");
        let leaf_params =
            CertificateParams::new(ALIASES.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .expect("leaf params");
        let leaf = leaf_params
            .signed_by(&leaf_key, &issuer)
            .expect("leaf cert");
        Self {
            ca_pem: ca_cert.pem(),
            leaf_pem: leaf.pem(),
            leaf_key_pem: leaf_key.serialize_pem(),
        }
    }
}

/// Starts the fake upstream on `network` and returns its container name.
pub async fn start(
    engine: &Engine,
    network: &str,
    name: &str,
    labels: BTreeMap<String, String>,
    pki: &TestPki,
) -> String {
    let plan = tests::helper_container(
        name,
        &launcher::engine::images::base_tag(),
        "0:0",
        vec!["python3".into(), "/srv/server.py".into()],
        Attachment {
            network: network.to_owned(),
            aliases: ALIASES.iter().map(|s| (*s).to_owned()).collect(),
        },
        labels,
    );
    engine
        .create_container(&plan, &[])
        .await
        .expect("create fake upstream");
    let file = |path: &str, text: &str| launcher::engine::archive::FileEntry {
        path: path.into(),
        mode: 0o644,
        uid: 0,
        gid: 0,
        contents: text.as_bytes().to_vec(),
    };
    let tar = launcher::engine::archive::build(&[
        file("/srv/server.py", SERVER),
        file("/srv/cert.pem", &pki.leaf_pem),
        file("/srv/key.pem", &pki.leaf_key_pem),
    ])
    .expect("archive");
    engine
        .upload(name, tar)
        .await
        .expect("upload fake upstream files");
    engine.start(name).await.expect("start fake upstream");
    let seed = engine
        .exec(name, "0:0", &["sh".into(), "-c".into(), SEED_REPO.into()])
        .await
        .expect("seed repository");
    assert_eq!(
        seed.code,
        Some(0),
        "seeding the fake git upstream: {}",
        seed.output
    );
    let check: Vec<String> = [
        "python3",
        "-c",
        "import socket; socket.create_connection(('127.0.0.1', 443), 1); socket.create_connection(('127.0.0.1', 80), 1)",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    engine
        .wait_ready(name, "0:0", &check, Duration::from_secs(60))
        .await
        .expect("fake upstream ready");
    name.to_owned()
}

/// The container's IP address on `network`.
pub async fn ip_on(engine: &Engine, container: &str, network: &str) -> String {
    let info = engine
        .client()
        .inspect_container(container, None)
        .await
        .expect("inspect container");
    info.network_settings
        .and_then(|n| n.networks)
        .and_then(|mut n| n.remove(network))
        .and_then(|e| e.ip_address)
        .filter(|ip| !ip.is_empty())
        .expect("container has an IP on the network")
}
