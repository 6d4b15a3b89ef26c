//! The walls of SPEC §11, tried from the agent's side with real clients.
//!
//! `the_agent_reaches_nothing_but_its_sidecars`: one bottle (egress,
//! git-gate, supervise; the agent image plus a setuid-root python the test
//! adds) in which the agent
//! - cannot connect to a listener of the test's on the host (bound to all
//!   interfaces) through any address of the host: the internal network's
//!   gateway, the egress bridge's and docker0's gateways, every host IPv4
//!   and IPv6 address;
//! - resolves its sidecars' names but no other name, and no DNS query for a
//!   random name reaches any place the test owns (a logging DNS server on
//!   the host, one in a container on a network of the test's), asked
//!   through getent, getaddrinfo, raw UDP and TCP to 127.0.0.11, to every
//!   resolv.conf server and to every gateway; the test first asserts the
//!   container's DNS is the sink, so on an unprotected launcher it fails
//!   before any query is sent;
//! - has no capability, no-new-privileges (a setuid-root binary stays
//!   uid 1000), no raw socket, and every container of the bottle is
//!   confined as planned (`docker inspect`).
//!
//! `the_workspace_cannot_plant_code_for_the_host`: protect mode (writes to
//! `.git`, the manifest names, a submodule's `.git` and the hooks path
//! fail, ordinary files work, placeholders vanish at teardown) and copy
//! mode (nothing reaches the host directory).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use launcher::engine::docker::Engine;
use launcher::plan::PlanOptions;
use launcher::plan::identity::Component;
use manifest::WorkspaceMode;
use tests::{engine_or_skip, prepare_images, run_labels};

use crate::{Started, sh, start_bottle_with, with_run};

const MANIFEST_WALLS: &str = r#"
agents:
  walled:
    bottle:
      git:
        - name: app
          upstream: "https://git.test/acme/app.git"
      supervise: true
      limits: { memory: 1g, pids: 512 }
  plain:
    bottle:
      supervise: false
"#;

/// The agent image plus a setuid-root copy of python3: with
/// no-new-privileges it must stay the agent user.
const SUID_DOCKERFILE: &str = "ARG BASE\nFROM ${BASE}\nUSER root\nRUN cp /usr/bin/python3 /usr/local/bin/python3-suid && chown 0:0 /usr/local/bin/python3-suid && chmod 4755 /usr/local/bin/python3-suid\nUSER 1000:1000\n";

async fn suid_image(engine: &Engine, agent_image: &str) -> String {
    let tag =
        launcher::engine::images::content_tag(Component::Agent, agent_image, SUID_DOCKERFILE, b"")
            .replace("claude-bottle/", "claude-bottle-e2e/suid-");
    if engine.image_exists(&tag).await.expect("inspect image") {
        return tag;
    }
    let context = launcher::engine::images::build_context(SUID_DOCKERFILE, None).expect("context");
    let args = HashMap::from([("BASE".to_owned(), agent_image.to_owned())]);
    engine
        .build_image(context, &tag, args, HashMap::new(), &mut |l| {
            eprintln!("suid image: {l}")
        })
        .await
        .expect("building the setuid test image");
    tag
}

/// Listeners of the test on the host, bound to all interfaces: TCP (IPv4
/// and IPv6) for the host wall, UDP+TCP on one port for DNS. Each records
/// what reached it.
struct HostTraps {
    tcp4: u16,
    tcp6: Option<u16>,
    dns: u16,
    reached: Arc<Mutex<Vec<String>>>,
    dns_seen: Arc<Mutex<Vec<Vec<u8>>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl HostTraps {
    async fn start() -> Self {
        let reached = Arc::new(Mutex::new(Vec::new()));
        let dns_seen = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        let accept = |l: tokio::net::TcpListener, log: Arc<Mutex<Vec<String>>>| {
            tokio::spawn(async move {
                while let Ok((_, peer)) = l.accept().await {
                    log.lock().expect("lock").push(peer.to_string());
                }
            })
        };
        let l4 = tokio::net::TcpListener::bind("0.0.0.0:0")
            .await
            .expect("bind tcp4");
        let tcp4 = l4.local_addr().expect("addr").port();
        tasks.push(accept(l4, reached.clone()));
        let tcp6 = match tokio::net::TcpListener::bind("[::]:0").await {
            Ok(l6) => {
                let p = l6.local_addr().expect("addr").port();
                tasks.push(accept(l6, reached.clone()));
                Some(p)
            }
            Err(e) => {
                eprintln!("no IPv6 listener on the host ({e}); IPv6 addresses are not probed");
                None
            }
        };
        // One port number for DNS over UDP and TCP (bounded retries).
        let mut bound = None;
        for _ in 0..20 {
            let udp = tokio::net::UdpSocket::bind("0.0.0.0:0")
                .await
                .expect("bind udp");
            let port = udp.local_addr().expect("addr").port();
            if let Ok(tcp) = tokio::net::TcpListener::bind(("0.0.0.0", port)).await {
                bound = Some((udp, tcp, port));
                break;
            }
        }
        let (udp, tcp, dns) = bound.expect("a free port for UDP and TCP");
        let seen = dns_seen.clone();
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, _)) = udp.recv_from(&mut buf).await {
                seen.lock().expect("lock").push(buf[..n].to_vec());
            }
        }));
        let seen = dns_seen.clone();
        tasks.push(tokio::spawn(async move {
            use tokio::io::AsyncReadExt as _;
            while let Ok((mut c, _)) = tcp.accept().await {
                let mut buf = vec![0u8; 4096];
                let n = tokio::time::timeout(std::time::Duration::from_secs(2), c.read(&mut buf))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or(0);
                seen.lock().expect("lock").push(buf[..n].to_vec());
            }
        }));
        Self {
            tcp4,
            tcp6,
            dns,
            reached,
            dns_seen,
            tasks,
        }
    }
}

impl Drop for HostTraps {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The host's own addresses: IPv4 from /proc/net/fib_trie (not loopback),
/// IPv6 from /proc/net/if_inet6 (not ::1), link-local ones with the
/// agent's interface as scope.
fn host_addresses() -> (Vec<String>, Vec<String>) {
    let fib = std::fs::read_to_string("/proc/net/fib_trie").unwrap_or_default();
    let v4 = launcher::plan::preflight::engine::local_ipv4_addresses(&fib)
        .into_iter()
        .filter(|ip| !ip.is_loopback())
        .map(|ip| ip.to_string())
        .collect();
    let mut v6 = Vec::new();
    for line in std::fs::read_to_string("/proc/net/if_inet6")
        .unwrap_or_default()
        .lines()
    {
        let Some(hex) = line.split_whitespace().next() else {
            continue;
        };
        let Ok(bits) = u128::from_str_radix(hex, 16) else {
            continue;
        };
        let ip = std::net::Ipv6Addr::from(bits);
        if ip.is_loopback() {
            continue;
        }
        let text = if (ip.segments()[0] & 0xffc0) == 0xfe80 {
            format!("{ip}%eth0")
        } else {
            ip.to_string()
        };
        if !v6.contains(&text) {
            v6.push(text);
        }
    }
    (v4, v6)
}

/// The gateway addresses Docker reports for `network`.
async fn gateways(engine: &Engine, network: &str) -> Vec<String> {
    engine
        .network_facts(network)
        .await
        .map(|f| f.gateways)
        .unwrap_or_default()
}

/// Asked from the agent: argv[1] a name, argv[2] DNS targets, argv[3] TCP
/// targets (JSON lists of [ip, port]); prints what happened as JSON.
const PROBE: &str = r#"
import json, socket, struct, subprocess, sys
name, dns_targets, tcp_targets = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
def query(qid):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack(">HH", 1, 1)
def family(ip):
    return socket.AF_INET6 if ":" in ip else socket.AF_INET
out = {"udp": {}, "tcp_dns": {}, "connect": {}}
out["getent"] = subprocess.run(["getent", "hosts", name], capture_output=True, timeout=60).returncode
try:
    out["getaddrinfo"] = repr(socket.getaddrinfo(name, 443))
except OSError as e:
    out["getaddrinfo"] = "error: %s" % e
servers = [l.split()[1] for l in open("/etc/resolv.conf") if l.startswith("nameserver")]
for ip, port in dns_targets + [[s, 53] for s in servers]:
    key = "%s:%s" % (ip, port)
    try:
        s = socket.socket(family(ip), socket.SOCK_DGRAM)
        s.settimeout(1)
        s.sendto(query(0x4242), (ip, port))
        out["udp"][key] = "answered %d bytes" % len(s.recv(4096))
    except OSError as e:
        out["udp"][key] = "%s: %s" % (type(e).__name__, e)
    try:
        c = socket.socket(family(ip), socket.SOCK_STREAM)
        c.settimeout(2)
        c.connect((ip, port))
        q = query(0x4343)
        c.sendall(struct.pack(">H", len(q)) + q)
        out["tcp_dns"][key] = "answered %d bytes" % len(c.recv(4096))
    except OSError as e:
        out["tcp_dns"][key] = "%s: %s" % (type(e).__name__, e)
for ip, port in tcp_targets:
    key = "[%s]:%s" % (ip, port)
    try:
        c = socket.socket(family(ip), socket.SOCK_STREAM)
        c.settimeout(4)
        c.connect((ip, port))
        out["connect"][key] = "CONNECTED"
    except OSError as e:
        out["connect"][key] = "%s: %s" % (type(e).__name__, e)
print(json.dumps(out))
"#;

/// A DNS logger (UDP and TCP on `port`, on `host`) appending each query's
/// bytes, hex-encoded, to `log`; prints "ready" once listening.
const DNS_LOGGER: &str = r#"
import socket, sys, threading
host, port, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def note(data):
    with open(log, "a") as f:
        f.write(data.hex() + "\n")
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind((host, port))
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind((host, port))
t.listen(16)
def tcp():
    while True:
        c, _ = t.accept()
        c.settimeout(2)
        try:
            note(c.recv(4096))
        except OSError:
            pass
        c.close()
threading.Thread(target=tcp, daemon=True).start()
print("ready", flush=True)
while True:
    note(u.recvfrom(4096)[0])
"#;

/// Starts the test's DNS logger container on a network of its own.
async fn dns_logger_container(engine: &Engine, run: &str, image: &str) -> (String, String) {
    let net = format!("claude-bottle-e2e-dnslog-{run}");
    engine
        .create_network(&launcher::plan::NetworkPlan {
            name: net.clone(),
            internal: true,
            options: BTreeMap::new(),
            labels: run_labels(run),
        })
        .await
        .expect("logger network");
    let name = format!("claude-bottle-e2e-dnslog-{run}");
    let plan = tests::helper_container(
        &name,
        image,
        "0:0",
        ["python3", "-c", DNS_LOGGER, "0.0.0.0", "53", "/tmp/dns.log"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        launcher::plan::Attachment {
            network: net.clone(),
            aliases: Vec::new(),
        },
        run_labels(run),
    );
    engine
        .create_container(&plan, &[])
        .await
        .expect("logger container");
    engine.start(&name).await.expect("start logger");
    let check: Vec<String> = [
        "sh",
        "-c",
        "test -n \"$(cat /proc/net/udp | awk '$2 ~ /:0035$/')\"",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    engine
        .wait_ready(&name, "0:0", &check, std::time::Duration::from_secs(60))
        .await
        .expect("logger ready");
    let ip = crate::upstream::ip_on(engine, &name, &net).await;
    (name, ip)
}

fn random_name(run: &str) -> String {
    format!("leak{}{}.exfil.example", run, tests::run_id())
}

/// The hex of `name` as its last label appears in a DNS query.
fn qname_hex(name: &str) -> String {
    let first = name.split('.').next().unwrap_or_default();
    first.bytes().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_reaches_nothing_but_its_sidecars() {
    let test = "the_agent_reaches_nothing_but_its_sidecars";
    let Some(engine) = engine_or_skip(test).await else {
        return;
    };
    let mut images = prepare_images(&engine).await;
    let agent_image = images.tags[&Component::Agent].clone();
    images
        .tags
        .insert(Component::Agent, suid_image(&engine, &agent_image).await);
    let report =
        launcher::plan::preflight::engine::assess(&engine.info().await.expect("engine info"))
            .expect("this engine is supported");
    with_run(engine.clone(), |run| async move {
        let traps = HostTraps::start().await;
        let (logger, logger_ip) = dns_logger_container(&engine, &run, &agent_image).await;
        let Started { bottle, state_root } =
            start_bottle_with(&engine, &images, &run, MANIFEST_WALLS, "walled", BTreeMap::new(), |_| {}).await;
        let plan = bottle.plan().clone();
        let internal = plan.identity.internal_network();

        let mut gws = gateways(&engine, &internal).await;
        let internal_gws = gws.clone();
        gws.extend(gateways(&engine, &plan.identity.egress_network()).await);
        gws.extend(gateways(&engine, "bridge").await);
        let (v4, v6) = host_addresses();
        let probe = |name: String, dns: Vec<(String, u16)>, tcp: Vec<(String, u16)>| {
            let bottle = &bottle;
            async move {
                let (code, out) = sh(
                    bottle,
                    &format!(
                        "cat > /tmp/probe.py <<'PY'\n{PROBE}\nPY\npython3 /tmp/probe.py '{name}' '{}' '{}'",
                        serde_json::to_string(&dns).expect("json"),
                        serde_json::to_string(&tcp).expect("json")
                    ),
                )
                .await;
                assert_eq!(code, Some(0), "{out}");
                let v: serde_json::Value =
                    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
                eprintln!("probe: {v:#}");
                v
            }
        };

        // 1. The host wall: a listener of the test's on the host, bound to
        //    all interfaces, is reached through no address of the host.
        let mut tcp_targets: Vec<(String, u16)> =
            gws.iter().chain(&v4).map(|ip| (ip.clone(), traps.tcp4)).collect();
        if let Some(p6) = traps.tcp6 {
            tcp_targets.extend(v6.iter().map(|ip| (ip.clone(), p6)));
        }
        let out = probe("egress".into(), Vec::new(), tcp_targets).await;
        for (target, result) in out["connect"].as_object().expect("connect results") {
            assert_ne!(result, "CONNECTED", "the agent reached the host at {target}");
        }
        assert!(
            traps.reached.lock().expect("lock").is_empty(),
            "the host listener was reached: {:?}",
            traps.reached.lock().expect("lock")
        );
        let facts = engine.network_facts(&internal).await.expect("internal network");
        assert_eq!(
            facts.options.get(launcher::plan::INHIBIT_IPV4).map(String::as_str),
            Some("true"),
            "the internal bridge gives the host no address"
        );

        // 2. Every container confined as planned (docker inspect).
        for c in &plan.containers {
            let info = engine
                .client()
                .inspect_container(&c.name, None::<bollard::query_parameters::InspectContainerOptions>)
                .await
                .expect("inspect");
            let hc = info.host_config.expect("host config");
            let who = &c.name;
            assert_eq!(hc.cap_drop.as_deref(), Some(&["ALL".to_owned()][..]), "{who}: cap_drop");
            assert!(hc.cap_add.as_ref().is_none_or(Vec::is_empty), "{who}: cap_add {:?}", hc.cap_add);
            assert!(
                hc.security_opt.as_ref().is_some_and(|o| o.iter().any(|x| x.starts_with("no-new-privileges"))),
                "{who}: security_opt {:?}",
                hc.security_opt
            );
            assert!(hc.pids_limit.is_some_and(|p| p > 0), "{who}: pids {:?}", hc.pids_limit);
            assert!(hc.memory.is_some_and(|m| m > 0), "{who}: memory {:?}", hc.memory);
            assert_eq!(hc.memory_swap, hc.memory, "{who}: no swap on top");
            assert_ne!(hc.privileged, Some(true), "{who}");
            if c.component == Component::Agent {
                assert_eq!(hc.memory, Some(1 << 30), "the manifest's limit");
                assert_eq!(hc.pids_limit, Some(512), "the manifest's limit");
            } else {
                assert_eq!(hc.readonly_rootfs, Some(true), "{who}: read-only root");
                assert!(hc.tmpfs.as_ref().is_some_and(|t| t.contains_key("/tmp")), "{who}: tmpfs");
            }
            if matches!(c.component, Component::Agent | Component::Supervise) {
                assert_eq!(hc.dns.as_deref(), Some(&["127.0.0.1".to_owned()][..]), "{who}: DNS sink");
                let sysctls = hc.sysctls.unwrap_or_default();
                assert_eq!(sysctls.get("net.ipv6.conf.all.disable_ipv6").map(String::as_str), Some("1"), "{who}");
            }
        }

        // 3. In the agent: no capability, no-new-privileges (a setuid-root
        //    binary stays uid 1000), no raw socket.
        let (_, status) = sh(&bottle, "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs)' /proc/self/status").await;
        for want in ["CapEff:\t0000000000000000", "CapPrm:\t0000000000000000", "CapBnd:\t0000000000000000", "NoNewPrivs:\t1"] {
            assert!(status.contains(want), "{want} in:\n{status}");
        }
        let (_, out) = sh(
            &bottle,
            "ls -l /usr/local/bin/python3-suid; /usr/local/bin/python3-suid -c 'import os; print(\"euid\", os.geteuid())'",
        )
        .await;
        assert!(out.contains("-rwsr-xr-x") && out.contains("euid 1000"), "setuid-root must not elevate: {out}");
        for py in ["python3", "/usr/local/bin/python3-suid"] {
            let (_, out) = sh(
                &bottle,
                &format!("{py} -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); print(\"RAW-OK\")' 2>&1"),
            )
            .await;
            assert!(!out.contains("RAW-OK") && out.contains("PermissionError"), "{py}: raw socket: {out}");
        }

        // 4. DNS. The sink is configured (checked before any query, so an
        //    unprotected launcher fails here and sends none); the bottle's
        //    own names resolve.
        for c in [Component::Agent, Component::Supervise] {
            let name = &plan.container(c).expect("planned").name;
            let hc = engine
                .client()
                .inspect_container(name, None::<bollard::query_parameters::InspectContainerOptions>)
                .await
                .expect("inspect")
                .host_config
                .expect("host config");
            assert_eq!(hc.dns.as_deref(), Some(&[launcher::plan::DNS_SINK.to_owned()][..]), "{name}: DNS");
        }
        let (code, out) = sh(&bottle, "getent hosts egress && getent hosts git-gate && getent hosts supervise").await;
        assert_eq!(code, Some(0), "the bottle's own names resolve: {out}");
        // A sink listener of the agent's own, in its own namespace, where
        // the embedded resolver forwards unknown names.
        let (_, out) = sh(
            &bottle,
            &format!(
                "cat > /tmp/dnslog.py <<'PY'\n{DNS_LOGGER}\nPY\ntimeout 300 python3 /tmp/dnslog.py 127.0.0.1 53 /tmp/sink.log > /tmp/sink.out 2>&1 &\nfor i in $(seq 50); do grep -q ready /tmp/sink.out 2>/dev/null && break; sleep 0.1; done; cat /tmp/sink.out"
            ),
        )
        .await;
        let sink_up = out.contains("ready");
        if !sink_up {
            eprintln!("NOTE: the agent could not listen on 127.0.0.1:53 ({out}); the sink is not observed");
        }
        // A random name, asked every way, towards every place the test
        // owns: port 53 only on the internal gateway (nobody's address).
        let name = random_name(&run);
        let mut dns_targets: Vec<(String, u16)> = vec![("127.0.0.11".into(), 53), (logger_ip.clone(), 53)];
        dns_targets.extend(internal_gws.iter().map(|ip| (ip.clone(), 53)));
        dns_targets.extend(gws.iter().chain(&v4).map(|ip| (ip.clone(), traps.dns)));
        let out = probe(name.clone(), dns_targets, Vec::new()).await;
        assert_ne!(out["getent"], 0, "{name} resolved: {out}");
        assert!(out["getaddrinfo"].as_str().is_some_and(|s| s.starts_with("error")), "{out}");
        let hex = qname_hex(&name);
        let host_seen = traps.dns_seen.lock().expect("lock").iter().any(|q| {
            q.iter().map(|b| format!("{b:02x}")).collect::<String>().contains(&hex)
        });
        assert!(!host_seen, "a query for {name} reached the test's DNS server on the host");
        let log = engine
            .exec(&logger, "0:0", &["sh".into(), "-c".into(), "cat /tmp/dns.log 2>/dev/null; true".into()])
            .await
            .expect("logger log");
        assert!(!log.output.contains(&hex), "a query for {name} reached the test's DNS container");
        if sink_up {
            let (_, sink) = sh(&bottle, "cat /tmp/sink.log 2>/dev/null; true").await;
            let forwarded = sink.contains(&hex);
            eprintln!("the sink in the agent's own namespace saw the query: {forwarded}");
            if report.engine_dns_forwards_out == Some(true) {
                assert!(
                    forwarded,
                    "engine {} forwards unknown names; they must land in the agent's own sink",
                    report.version
                );
            }
        }

        engine.remove_container(&logger).await.expect("remove logger");
        let mut progress = |l: &str| eprintln!("{l}");
        bottle.teardown(&mut progress).await;
        drop(state_root);
    })
    .await;
}

/// Runs `git` in `dir` (as the test's user).
fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.test"])
        .args(args)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A repository owned by the agent's uid: a commit, a checked-out
/// submodule link (a nested repository), `core.hooksPath` naming a
/// directory that does not exist yet.
fn workspace_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("workspace");
    let root = dir.path();
    std::fs::write(root.join("README.md"), "hello\n").expect("readme");
    git(root, &["init", "-q"]);
    git(root, &["add", "README.md"]);
    git(root, &["commit", "-q", "-m", "init"]);
    let sub = root.join("sub");
    std::fs::create_dir(&sub).expect("sub");
    git(&sub, &["init", "-q"]);
    git(&sub, &["commit", "-q", "--allow-empty", "-m", "s"]);
    let sha = git(&sub, &["rev-parse", "HEAD"]);
    git(
        root,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{sha},sub"),
        ],
    );
    git(root, &["commit", "-q", "-m", "sub"]);
    git(root, &["config", "core.hooksPath", ".githooks"]);
    let status = std::process::Command::new("chown")
        .args(["-R", "1000:1000"])
        .arg(root)
        .status()
        .expect("chown");
    assert!(status.success(), "chown the workspace to the agent's uid");
    dir
}

/// Every file under `root` with its contents (directories as "<dir>").
fn snapshot(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("entry").path();
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            let meta = std::fs::symlink_metadata(&p).expect("stat");
            if meta.is_dir() {
                out.insert(rel, b"<dir>".to_vec());
                stack.push(p);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    out
}

/// A bottle of the `plain` agent working in `root` in `mode`.
async fn start_in(
    engine: &Engine,
    images: &launcher::engine::images::ImageSet,
    run: &str,
    root: &Path,
    mode: WorkspaceMode,
) -> Started {
    let root = root.to_owned();
    start_bottle_with(
        engine,
        images,
        run,
        MANIFEST_WALLS,
        "plain",
        BTreeMap::new(),
        |o: &mut PlanOptions| {
            o.cwd = Some(root);
            o.workspace_mode = Some(mode);
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workspace_cannot_plant_code_for_the_host() {
    let test = "the_workspace_cannot_plant_code_for_the_host";
    let Some(engine) = engine_or_skip(test).await else {
        return;
    };
    let images = prepare_images(&engine).await;
    with_run(engine.clone(), |run| async move {
        let ws = workspace_repo();
        let root = std::fs::canonicalize(ws.path()).expect("canonical");
        let before = snapshot(&root);

        // Protect mode.
        let Started { bottle, state_root } =
            start_in(&engine, &images, &run, &root, WorkspaceMode::Protect).await;
        let attempts = [
            ("a git hook", "echo 'touch /tmp/pwned' > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit"),
            ("core.fsmonitor via git config", "git config core.fsmonitor 'touch /tmp/pwned'"),
            ("the repository config", "echo '[alias] st = !touch /tmp/pwned' >> .git/config"),
            ("the index (a new gitlink)", "git update-index --add --cacheinfo 160000,$(git rev-parse HEAD),evil"),
            ("a submodule's modules config", "mkdir -p .git/modules/evil && echo x > .git/modules/evil/config"),
            ("the submodule's config", "echo '[core] fsmonitor = touch /tmp/pwned' >> sub/.git/config"),
            ("the submodule's hooks", "echo x > sub/.git/hooks/post-checkout"),
            ("the manifest", "echo 'agents: {}' > claude-bottle.yaml"),
            ("the manifest (.yml)", "echo 'agents: {}' > claude-bottle.yml"),
            ("the manifest (.json)", "echo '{}' > claude-bottle.json"),
            ("the hooks path", "mkdir -p .githooks && echo x > .githooks/pre-commit"),
            ("removing .git", "rm -rf .git"),
            ("renaming .git", "mv .git git-moved"),
            ("renaming the manifest placeholder", "mv claude-bottle.yaml elsewhere"),
        ];
        for (what, cmd) in attempts {
            let (code, out) = sh(&bottle, &format!("cd /workspace && {{ {cmd}; }} 2>&1")).await;
            assert_ne!(code, Some(0), "the agent could write {what}: {out}");
        }
        let (code, out) = sh(
            &bottle,
            "cd /workspace && echo work > notes.txt && echo more >> README.md && git log --oneline | head -3 && git status --short",
        )
        .await;
        assert_eq!(code, Some(0), "ordinary files and read-only git work: {out}");
        assert!(out.contains("init") && out.contains("notes.txt"), "{out}");
        let mut progress = |l: &str| eprintln!("{l}");
        bottle.teardown(&mut progress).await;
        drop(state_root);
        let mut after = snapshot(&root);
        assert_eq!(after.remove("notes.txt").as_deref(), Some(&b"work\n"[..]), "ordinary writes reach the host");
        assert_eq!(after.remove("README.md").as_deref(), Some(&b"hello\nmore\n"[..]));
        let mut expected = before.clone();
        expected.remove("README.md");
        assert_eq!(after, expected, "nothing else changed, and every placeholder is gone");

        // Copy mode: the agent works on its copy; nothing reaches the host.
        let before = snapshot(&root);
        let Started { bottle, state_root } =
            start_in(&engine, &images, &run, &root, WorkspaceMode::Copy).await;
        let (code, out) = sh(
            &bottle,
            "cd /workspace && cat notes.txt && echo x > .git/hooks/pre-commit && echo copy > copied.txt && echo '{}' > claude-bottle.json \
             && git add -A && git -c user.name=a -c user.email=a@example.test commit -q -m in-bottle && git log --oneline | head -1",
        )
        .await;
        assert_eq!(code, Some(0), "the copy is the agent's to change: {out}");
        assert!(out.contains("work") && out.contains("in-bottle"), "{out}");
        let mut progress = |l: &str| eprintln!("{l}");
        bottle.teardown(&mut progress).await;
        drop(state_root);
        assert_eq!(snapshot(&root), before, "copy mode wrote nothing back to the host");
    })
    .await;
}
