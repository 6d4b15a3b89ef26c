use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use git_gate::cgi::{self, CgiRequest, text};
use git_gate::config::Config;
use http::StatusCode;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use manifest::remotes::RemotesFile;
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "upstream-test-token-1";
pub const USER: &str = "x-access-token";

/// Everything one test needs: a tempdir, a runtime, upstream and gate.
pub struct World {
    /// Kept alive for the servers; dropped (tasks stopped) before `dir`.
    _rt: tokio::runtime::Runtime,
    pub dir: tempfile::TempDir,
    pub upstream_addr: SocketAddr,
    pub upstream_stop: CancellationToken,
    pub gate_addr: SocketAddr,
    pub gate_stop: CancellationToken,
}

impl World {
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Environment for every git the test runs (client and seeding).
    pub fn env(&self) -> Vec<(String, String)> {
        base_env(self.dir.path())
    }

    pub fn gate_url(&self, name: &str) -> String {
        format!("http://{}/{name}.git", self.gate_addr)
    }

    pub fn upstream_repo(&self, name: &str) -> PathBuf {
        self.path("upstream").join(format!("{name}.git"))
    }

    pub fn mirror(&self, name: &str) -> PathBuf {
        self.path("data").join(format!("{name}.git"))
    }

    /// Runs git in `dir` with the test environment.
    pub fn git(&self, dir: &Path, args: &[&str]) -> Output {
        git_in(self.dir.path(), dir, args)
    }

    /// Runs git and asserts success; returns stdout.
    pub fn git_ok(&self, dir: &Path, args: &[&str]) -> String {
        let out = self.git(dir, args);
        assert!(
            out.status.success(),
            "git {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `git rev-parse <rev>` in a bare repo, or None.
    pub fn rev(&self, repo: &Path, rev: &str) -> Option<String> {
        let out = self.git(repo, &["rev-parse", "--verify", "--quiet", rev]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Clones `name` through the gate into `<dir>/<into>`.
    pub fn clone(&self, name: &str, into: &str) -> PathBuf {
        let dest = self.path(into);
        self.git_ok(
            self.dir.path(),
            &[
                "clone",
                "--quiet",
                &self.gate_url(name),
                dest.to_str().expect("utf-8 path"),
            ],
        );
        dest
    }

    /// Writes `files` and commits them in `repo`.
    pub fn commit(&self, repo: &Path, files: &[(&str, &str)], msg: &str) -> String {
        for (name, content) in files {
            let p = repo.join(name);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).expect("mkdir");
            }
            std::fs::write(&p, content).expect("write file");
            self.git_ok(repo, &["add", name]);
        }
        self.git_ok(repo, &["commit", "--quiet", "-m", msg]);
        self.git_ok(repo, &["rev-parse", "HEAD"])
    }
}

impl World {
    /// The pack `git pack-objects --revs` makes in `repo` of `new` minus
    /// `old`: what a push of `new` over `old` sends.
    pub fn pack(&self, repo: &Path, old: &str, new: &str) -> Vec<u8> {
        let mut child = Command::new("git")
            .current_dir(repo)
            .env_clear()
            .envs(self.env())
            .args(["pack-objects", "--stdout", "--revs", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("pack-objects");
        {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(format!("{new}\n^{old}\n").as_bytes())
                .expect("feed pack-objects");
        }
        let out = child.wait_with_output().expect("pack-objects");
        assert!(out.status.success());
        out.stdout
    }

    /// A raw receive-pack request body updating main from `old` to `new`
    /// (whatever `old` really is on the gate), with the pack `repo` makes.
    pub fn push_body(&self, repo: &Path, old: &str, new: &str) -> Vec<u8> {
        let mut body = git_gate::pktline::encode(
            format!("{old} {new} refs/heads/main\0report-status side-band-64k agent=raw\n")
                .as_bytes(),
        );
        body.extend_from_slice(b"0000");
        body.extend(self.pack(repo, old, new));
        body
    }

    /// POSTs a raw receive-pack request to the gate's `app` remote.
    pub fn post_receive_pack(&self, body: &[u8], gzip: bool) -> (u16, String) {
        let head = format!(
            "POST /app.git/git-receive-pack HTTP/1.1\r\nHost: g\r\nContent-Type: application/x-git-receive-pack-request\r\n{}Content-Length: {}\r\nConnection: close\r\n\r\n",
            if gzip {
                "Content-Encoding: gzip\r\n"
            } else {
                ""
            },
            body.len()
        );
        http_raw(self.gate_addr, &head, body).expect("http")
    }

    /// Polls (bounded by `limit`) until `git ls-remote url` succeeds.
    pub fn wait_serves(&self, url: &str, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let out = self.git(self.dir.path(), &["ls-remote", url]);
            if out.status.success() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{url} not served after {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.gate_stop.cancel();
        self.upstream_stop.cancel();
    }
}

pub fn base_env(root: &Path) -> Vec<(String, String)> {
    let home = root.join("home");
    let _ = std::fs::create_dir_all(&home);
    let gc = root.join("gitconfig");
    if !gc.exists() {
        std::fs::write(&gc, "[user]\n\tname = Agent\n\temail = agent@bottle.invalid\n[init]\n\tdefaultBranch = main\n[protocol]\n\tversion = 2\n[advice]\n\tdetachedHead = false\n")
            .expect("write gitconfig");
    }
    vec![
        (
            "PATH".into(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        ),
        ("HOME".into(), home.display().to_string()),
        ("GIT_CONFIG_GLOBAL".into(), gc.display().to_string()),
        ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
        ("LANG".into(), "C".into()),
    ]
}

pub fn git_in(root: &Path, dir: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .current_dir(dir)
        .env_clear()
        .envs(base_env(root))
        .env("GIT_TERMINAL_PROMPT", "0")
        .args(args)
        .output()
        .expect("run git")
}

/// Remote spec for [`world`]: name, branch rules YAML (or "").
pub struct RemoteSpec {
    pub name: &'static str,
    pub branches: &'static str,
}

/// Builds upstream bare repos (each seeded with one commit on main), the
/// upstream server, and the gate.
pub fn world(remotes: &[RemoteSpec]) -> World {
    world_with(remotes, |_| {})
}

/// [`world`], with a chance to adjust the gate's config before it starts.
pub fn world_with(remotes: &[RemoteSpec], tweak: impl FnOnce(&mut Config)) -> World {
    world_full(remotes, None, tweak)
}

/// [`world_with`], the upstream served over HTTPS with a certificate for
/// 127.0.0.1 issued by `tls` (a test CA nothing trusts by default).
pub fn world_full(
    remotes: &[RemoteSpec],
    tls: Option<&TestCa>,
    tweak: impl FnOnce(&mut Config),
) -> World {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("git_gate=info")
        .try_init();
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let root = dir.path().to_path_buf();
    let up_root = root.join("upstream");
    std::fs::create_dir_all(&up_root).expect("mkdir upstream");
    for r in remotes {
        let bare = up_root.join(format!("{}.git", r.name));
        let out = git_in(
            &root,
            &root,
            &["init", "--quiet", "--bare", bare.to_str().expect("utf-8")],
        );
        assert!(out.status.success());
        let seed = root.join(format!("seed-{}", r.name));
        assert!(
            git_in(
                &root,
                &root,
                &["init", "--quiet", seed.to_str().expect("utf-8")]
            )
            .status
            .success()
        );
        std::fs::write(seed.join("README.md"), format!("# {}\n", r.name)).expect("write");
        assert!(git_in(&root, &seed, &["add", "README.md"]).status.success());
        assert!(
            git_in(&root, &seed, &["commit", "--quiet", "-m", "initial"])
                .status
                .success()
        );
        assert!(
            git_in(
                &root,
                &seed,
                &["push", "--quiet", bare.to_str().expect("utf-8"), "main"]
            )
            .status
            .success()
        );
    }
    let upstream_stop = CancellationToken::new();
    let acceptor = tls.map(|ca| tokio_rustls::TlsAcceptor::from(ca.server_config("127.0.0.1")));
    let scheme = if tls.is_some() { "https" } else { "http" };
    let upstream_addr = rt.block_on(start_upstream(
        up_root,
        root.clone(),
        upstream_stop.clone(),
        acceptor,
    ));

    let mut yaml = String::from("version: 1\nremotes:\n");
    for r in remotes {
        yaml.push_str(&format!(
            "  - name: {}\n    upstream: {scheme}://{upstream_addr}/{}.git\n    auth: {{ username: {USER}, token_env: GIT_GATE_TOKEN_1 }}\n",
            r.name, r.name
        ));
        if !r.branches.is_empty() {
            yaml.push_str(&format!("    branches: {}\n", r.branches));
        }
    }
    let remotes_path = root.join("remotes.yaml");
    std::fs::write(&remotes_path, &yaml).expect("write remotes");
    let remotes_file = RemotesFile::parse(&yaml, "remotes.yaml").expect("valid remotes file");
    let mut child_env = base_env(&root);
    child_env.push(("GIT_GATE_TOKEN_1".into(), TOKEN.into()));
    let cfg = Config {
        remotes: remotes_file,
        remotes_path,
        data_dir: root.join("data"),
        rules_path: None,
        upstream_ca: None,
        refresh_interval: Duration::ZERO,
        max_request_bytes: 16 << 20,
        max_push_bytes: 1 << 30,
        max_object_bytes: 1 << 30,
        max_inflated_bytes: 4 << 30,
        header_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(60),
        max_connections: 64,
        hook_exe: PathBuf::from(env!("CARGO_BIN_EXE_git-gate")),
        child_env,
    };
    let mut cfg = cfg;
    tweak(&mut cfg);
    let gate_stop = CancellationToken::new();
    let gate_addr = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind gate");
        let addr = l.local_addr().expect("addr");
        let stop = gate_stop.clone();
        tokio::spawn(async move {
            if let Err(e) = git_gate::run(l, cfg, stop).await {
                eprintln!("gate stopped: {e}");
            }
        });
        addr
    });
    wait_listening(gate_addr);
    World {
        _rt: rt,
        dir,
        upstream_addr,
        upstream_stop,
        gate_addr,
        gate_stop,
    }
}

/// Polls (bounded) until the gate answers HTTP; mirrors are prepared first.
fn wait_listening(addr: SocketAddr) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if let Ok((status, _)) = http_raw(
            addr,
            "GET /nonexistent.git/info/refs HTTP/1.1\r\nHost: gate\r\nConnection: close\r\n\r\n",
            b"",
        ) && status == 404
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("gate did not come up on {addr}");
}

/// One raw HTTP/1.1 exchange; returns status and body text.
pub fn http_raw(addr: SocketAddr, head: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// The test upstream: `git http-backend` over `root`, basic auth required.
async fn start_upstream(
    root: PathBuf,
    env_root: PathBuf,
    stop: CancellationToken,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = l.local_addr().expect("addr");
    let root = Arc::new(root);
    let env = Arc::new(base_env(&env_root));
    let expected = format!(
        "Basic {}",
        git_gate::upstream::base64(format!("{USER}:{TOKEN}").as_bytes())
    );
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                () = stop.cancelled() => break,
                r = l.accept() => match r { Ok(x) => x, Err(_) => continue },
            };
            let (root, env, expected) = (root.clone(), env.clone(), expected.clone());
            let tls = tls.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (root, env, expected) = (root.clone(), env.clone(), expected.clone());
                    async move {
                        let authed = req
                            .headers()
                            .get(http::header::AUTHORIZATION)
                            .is_some_and(|v| v.as_bytes() == expected.as_bytes());
                        if !authed {
                            let mut r = text(StatusCode::UNAUTHORIZED, "authentication required");
                            r.headers_mut().insert(
                                http::header::WWW_AUTHENTICATE,
                                http::HeaderValue::from_static("Basic realm=\"test\""),
                            );
                            return Ok::<_, std::convert::Infallible>(r);
                        }
                        let path = req.uri().path().to_owned();
                        let query = req.uri().query().unwrap_or("").to_owned();
                        let method = req.method().as_str().to_owned();
                        let headers = req.headers().clone();
                        let creq = CgiRequest {
                            method: &method,
                            path_info: &path,
                            query: &query,
                            headers: &headers,
                            remote_addr: peer.ip().to_string(),
                        };
                        let resp = match cgi::spawn(
                            &root,
                            &env,
                            creq,
                            Bytes::new(),
                            cgi::Rest::Body(req.into_body()),
                            u64::MAX,
                        )
                        .await
                        {
                            Ok(running) => {
                                let cgi::Running {
                                    response,
                                    mut child,
                                    ..
                                } = running;
                                tokio::spawn(async move {
                                    let _ = child.wait().await;
                                });
                                response
                            }
                            Err(e) => text(StatusCode::BAD_GATEWAY, e),
                        };
                        Ok(resp)
                    }
                });
                let http = hyper::server::conn::http1::Builder::new();
                match tls {
                    // A client that refuses the certificate just hangs up.
                    Some(tls) => {
                        if let Ok(s) = tls.accept(stream).await {
                            let _ = http.serve_connection(TokioIo::new(s), svc).await;
                        }
                    }
                    None => {
                        let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                    }
                }
            });
        }
    });
    addr
}

/// Secret-shaped strings, assembled at run time (this file must scan clean).
pub fn aws_key() -> String {
    ["AKIA", "Q3XZ7TPLM4", "WN2KRV"].concat()
}

pub fn private_key() -> String {
    let body = "MIIEowIBAAKCAQEAq7BFUpkGp3+LQmlQ\nYx0x9yvZPzD7Lk3h1M0VgK2jz8mA4c\nQk4r6bQ2wPq7Fh8e9dNmA1sLkTz3Vb0P\nc2R5uXw8YhJ1nKfG7tE4iQoZlB3dM6SaV\n";
    format!(
        "{}{} RSA PRIVATE KEY-----\n{body}{}{} RSA PRIVATE KEY-----\n",
        "-----", "BEGIN", "-----", "END"
    )
}

/// A throwaway certificate authority for a TLS upstream.
pub struct TestCa {
    pub cert_path: PathBuf,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    /// A new CA whose certificate is written to `<dir>/<name>-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let cert = params.self_signed(&key).expect("self-signed");
        let cert_path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&cert_path, cert.pem()).expect("write CA");
        Self {
            cert_path,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A rustls server config with a leaf for `name` (a host or an IP).
    pub fn server_config(&self, name: &str) -> Arc<rustls::ServerConfig> {
        use rustls_pki_types::pem::PemObject;
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .expect("params")
            .signed_by(&key, &self.issuer)
            .expect("leaf");
        let key_der =
            rustls_pki_types::PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes())
                .expect("key der");
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key_der)
        .expect("server config");
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    }
}

/// The real `git-gate` binary, run as a child process (killed on drop).
pub struct GateBin {
    child: std::process::Child,
    pub addr: SocketAddr,
    /// Every stderr line the daemon wrote (JSON log lines).
    log: Arc<std::sync::Mutex<Vec<String>>>,
}

impl GateBin {
    /// Starts `git-gate` on 127.0.0.1:0 serving `w`'s remotes from a fresh
    /// data directory, with exactly `env` (plus PATH, HOME and the token)
    /// as its environment and `args` appended. `ulimit_n` lowers its
    /// open-file limit (through `sh -c ulimit -n`).
    pub fn spawn(w: &World, args: &[&str], env: &[(&str, &str)], ulimit_n: Option<u32>) -> Self {
        use std::io::BufRead;
        let data = tempfile::tempdir_in(w.dir.path()).expect("data dir").keep();
        let exe = env!("CARGO_BIN_EXE_git-gate");
        let mut gate_args: Vec<String> = vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--remotes".into(),
            w.path("remotes.yaml").display().to_string(),
            "--data".into(),
            data.display().to_string(),
            "--log-format".into(),
            "json".into(),
        ];
        gate_args.extend(args.iter().map(|a| (*a).to_owned()));
        let mut cmd = match ulimit_n {
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(exe);
                c
            }
            None => Command::new(exe),
        };
        let base = base_env(w.dir.path());
        cmd.args(&gate_args)
            .env_clear()
            .envs(base.into_iter().filter(|(k, _)| k == "PATH" || k == "HOME"))
            .env("GIT_GATE_TOKEN_1", TOKEN)
            .env("RUST_LOG", "git_gate=debug")
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("spawn git-gate");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = serde_json::from_str::<serde_json::Value>(&line)
                    .ok()
                    .filter(|v| v["fields"]["message"] == "listening")
                    .and_then(|v| v["fields"]["listen"].as_str()?.parse::<SocketAddr>().ok())
                {
                    let _ = tx.send(addr);
                }
                if let Ok(mut l) = sink.lock() {
                    l.push(line);
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "git-gate did not report listening: {:?}",
                    log.lock().map(|l| l.clone())
                );
            }
        };
        Self { child, addr, log }
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}.git", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The daemon's log so far, for failure messages.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }
}

impl Drop for GateBin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
