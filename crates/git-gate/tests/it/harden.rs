//! The HTTP front against a client that tries to exhaust the gate: pushes
//! that inflate past the limits (zlib bombs, delta bombs, gzip bodies),
//! stalled headers and bodies, too many connections, and accept errors
//! when the daemon is out of file descriptors.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::{GateBin, RemoteSpec, World, world, world_with};

fn app() -> [RemoteSpec; 1] {
    [RemoteSpec {
        name: "app",
        branches: "",
    }]
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Upstream and mirror refs, for "nothing landed" checks.
fn refs(w: &World) -> (String, String) {
    (
        w.git_ok(&w.upstream_repo("app"), &["for-each-ref"]),
        w.git_ok(&w.mirror("app"), &["for-each-ref"]),
    )
}

/// The gate's spool directory holds nothing once a push is answered.
fn assert_spool_empty(w: &World) {
    let spool = w.path("data/.spool");
    let left: Vec<_> = std::fs::read_dir(&spool)
        .expect("spool dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    assert!(left.is_empty(), "spool files left behind: {left:?}");
}

#[test]
fn a_zlib_bomb_blob_is_refused_before_git_unpacks_it() {
    let w = world_with(&app(), |c| c.max_object_bytes = 1 << 20);
    let repo = w.clone("app", "work");
    let before = refs(&w);
    // 16 MiB of zeros: the pack carries it in about 16 KiB.
    std::fs::write(repo.join("bomb.bin"), vec![0u8; 16 << 20]).expect("write");
    w.git_ok(&repo, &["add", "bomb.bin"]);
    w.git_ok(&repo, &["commit", "--quiet", "-m", "bomb"]);
    let out = w.git(&repo, &["push", "origin", "main"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("remote: git-gate: push refused: object")
            && err.contains("(a blob) inflates to 16.0 MiB")
            && err.contains("--max-object-bytes"),
        "the agent must read why:\n{err}"
    );
    assert_eq!(refs(&w), before, "nothing may land");
    assert_spool_empty(&w);
}

#[test]
fn the_inflated_total_of_a_push_is_capped() {
    let w = world_with(&app(), |c| {
        c.max_object_bytes = 1 << 20;
        c.max_inflated_bytes = 2 << 20;
    });
    let repo = w.clone("app", "work");
    let before = refs(&w);
    for (name, byte) in [("a.bin", b'a'), ("b.bin", b'b'), ("c.bin", b'c')] {
        std::fs::write(repo.join(name), vec![byte; 900 << 10]).expect("write");
    }
    w.git_ok(&repo, &["add", "."]);
    w.git_ok(&repo, &["commit", "--quiet", "-m", "three"]);
    let out = w.git(&repo, &["push", "origin", "main"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("in total") && err.contains("--max-push-inflated-bytes"),
        "{err}"
    );
    assert_eq!(refs(&w), before);
}

/// Text that does not compress well, so git stores changes as deltas.
fn noisy(lines: usize, seed: u64) -> String {
    let mut x = seed | 1;
    (0..lines)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("{x:016x} {:016x}\n", x.rotate_left(17))
        })
        .collect()
}

#[test]
fn delta_results_count_at_their_inflated_size() {
    // 1 MiB file on the gate already; the push brings two small edits of
    // it, which git sends as deltas of a few bytes each but which inflate
    // to 1 MiB each.
    let w = world_with(&app(), |c| c.max_inflated_bytes = (3 << 20) / 2);
    let repo = w.clone("app", "work");
    let mut text = noisy(30_000, 7);
    w.commit(&repo, &[("data.txt", &text)], "data");
    w.git_ok(&repo, &["push", "--quiet", "origin", "main"]);
    let before = refs(&w);
    for i in 0..2 {
        text.push_str(&format!("edit {i}\n"));
        w.commit(&repo, &[("data.txt", &text)], &format!("edit {i}"));
    }
    let out = w.git(&repo, &["push", "origin", "main"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("in total"), "{err}");
    assert_eq!(refs(&w), before);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

#[test]
fn a_gzip_encoded_push_is_decoded_and_checked() {
    let w = world_with(&app(), |c| {
        c.max_object_bytes = 1 << 20;
        c.max_push_bytes = 4 << 20;
    });
    let repo = w.clone("app", "work");
    let before = refs(&w);
    let old = w.git_ok(&repo, &["rev-parse", "HEAD"]);
    std::fs::write(repo.join("bomb.bin"), vec![0u8; 16 << 20]).expect("write");
    w.git_ok(&repo, &["add", "bomb.bin"]);
    w.git_ok(&repo, &["commit", "--quiet", "-m", "bomb"]);
    let new = w.git_ok(&repo, &["rev-parse", "HEAD"]);
    // The pack inside a gzip body: still refused for what it inflates to.
    let body = w.push_body(&repo, &old, &new);
    let (status, text) = w.post_receive_pack(&gzip(&body), true);
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("git-gate: push refused: object") && text.contains("inflates to 16.0 MiB"),
        "{text}"
    );
    assert!(
        text.contains("ng refs/heads/main"),
        "a report git can read: {text}"
    );
    assert_eq!(refs(&w), before);
    assert_spool_empty(&w);
}

#[test]
fn a_gzip_bomb_request_body_is_refused_by_its_decoded_size() {
    let w = world_with(&app(), |c| c.max_push_bytes = 2 << 20);
    let repo = w.clone("app", "work");
    let before = refs(&w);
    let old = w.git_ok(&repo, &["rev-parse", "HEAD"]);
    // A well-formed start of a push: commands, then a pack whose one blob
    // is 16 MiB of zeros in *stored* (uncompressed) zlib blocks. The gzip
    // around it brings that down to a few dozen KiB on the wire.
    let mut body = git_gate::pktline::encode(
        format!("{old} {old} refs/heads/main\0report-status side-band-64k\n").as_bytes(),
    );
    body.extend_from_slice(b"0000PACK\0\0\0\x02\0\0\0\x01");
    let size: u64 = 16 << 20;
    body.push(0x80 | (3 << 4) | (size & 0x0f) as u8);
    let mut rest = size >> 4;
    while rest > 0 {
        body.push((rest & 0x7f) as u8 | if rest >> 7 > 0 { 0x80 } else { 0 });
        rest >>= 7;
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::none());
    z.write_all(&vec![0u8; size as usize]).expect("zlib");
    body.extend(z.finish().expect("zlib"));
    let wire = gzip(&body);
    assert!(wire.len() < 256 << 10, "{} bytes on the wire", wire.len());
    let (status, text) = w.post_receive_pack(&wire, true);
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("push refused: it is larger than 2.0 MiB (--max-push-bytes)"),
        "{text}"
    );
    assert_eq!(refs(&w), before);
    assert_spool_empty(&w);
}

/// Reads from `s` until EOF or `limit`; returns what came and how long the
/// server took to close.
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (String, Option<Duration>) {
    let started = Instant::now();
    s.set_read_timeout(Some(limit)).expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => {
                return (
                    String::from_utf8_lossy(&got).into_owned(),
                    Some(started.elapsed()),
                );
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (
                    String::from_utf8_lossy(&got).into_owned(),
                    Some(started.elapsed()),
                );
            }
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), None),
        }
    }
}

#[test]
fn stalled_headers_and_idle_connections_are_closed() {
    let w = world_with(&app(), |c| c.header_timeout = Duration::from_secs(1));
    // Slowloris: a request line and one header, then nothing.
    let mut slow = TcpStream::connect(w.gate_addr).expect("connect");
    slow.write_all(b"GET /app.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: g\r\n")
        .expect("write");
    // An idle connection that never sends a byte.
    let mut idle = TcpStream::connect(w.gate_addr).expect("connect");
    for (what, s) in [("partial headers", &mut slow), ("idle", &mut idle)] {
        let (_, closed) = read_until_closed(s, Duration::from_secs(20));
        assert!(closed.is_some(), "{what}: still open after 20 s");
    }
    // Normal requests are unaffected.
    w.clone("app", "work");
}

#[test]
fn a_stalled_push_is_cut_off_and_blocks_no_other_push() {
    let w = world_with(&app(), |c| c.idle_timeout = Duration::from_secs(2));
    let repo = w.clone("app", "work");
    let old = w.git_ok(&repo, &["rev-parse", "HEAD"]);
    let new = w.commit(&repo, &[("a.txt", "a\n")], "a");
    let body = w.push_body(&repo, &old, &new);
    // The command list and the pack header arrive, then nothing more.
    let mut stalled = TcpStream::connect(w.gate_addr).expect("connect");
    let head = format!(
        "POST /app.git/git-receive-pack HTTP/1.1\r\nHost: g\r\nContent-Type: application/x-git-receive-pack-request\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stalled.write_all(head.as_bytes()).expect("write");
    let cut = body.windows(4).position(|w| w == b"PACK").expect("pack") + 12;
    stalled.write_all(&body[..cut]).expect("write");
    // Meanwhile a real push of another branch goes through, bounded.
    let other = w.path("other");
    w.git_ok(
        w.dir.path(),
        &[
            "clone",
            "--quiet",
            &w.gate_url("app"),
            other.to_str().expect("utf-8"),
        ],
    );
    w.git_ok(&other, &["checkout", "--quiet", "-b", "side"]);
    let side = w.commit(&other, &[("b.txt", "b\n")], "b");
    let mut push = std::process::Command::new("git")
        .current_dir(&other)
        .env_clear()
        .envs(w.env())
        .args(["push", "--quiet", "origin", "side"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("git push");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = push.try_wait().expect("wait") {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = push.kill();
            let _ = push.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.is_some_and(|s| s.success()),
        "a stalled upload blocked another push"
    );
    assert_eq!(
        w.rev(&w.upstream_repo("app"), "refs/heads/side").as_deref(),
        Some(side.as_str())
    );
    // The stalled request is answered 408 and closed.
    let (text, closed) = read_until_closed(&mut stalled, Duration::from_secs(30));
    assert!(closed.is_some(), "the stalled push is still open");
    assert!(
        text.starts_with("HTTP/1.1 408") && text.contains("stopped arriving"),
        "{text}"
    );
    assert_eq!(
        w.rev(&w.upstream_repo("app"), "refs/heads/main").as_deref(),
        Some(old.as_str())
    );
    assert_spool_empty(&w);
}

#[test]
fn connections_over_the_cap_get_a_503_and_slots_come_back() {
    let w = world_with(&app(), |c| c.max_connections = 2);
    let held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(w.gate_addr).expect("connect"))
        .collect();
    // The real client reads why.
    let out = w.git(w.dir.path(), &["ls-remote", &w.gate_url("app")]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("too many open connections (limit 2)"), "{err}");
    drop(held);
    // Closed connections free their slots.
    w.wait_serves(&w.gate_url("app"), Duration::from_secs(20));
}

/// CPU time (user + system) of a process, from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<u64> = after
        .split(' ')
        .skip(11)
        .take(2)
        .map(|x| x.parse().expect("ticks"))
        .collect();
    let tck: u64 = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100);
    Duration::from_millis((f[0] + f[1]) * 1000 / tck)
}

#[test]
fn accept_errors_back_off_instead_of_spinning() {
    let w = world(&app());
    // 40 file descriptors: the gate runs out after a couple of dozen
    // connections and accept fails with EMFILE while more wait.
    let gate = GateBin::spawn(&w, &[], &[], Some(40));
    let mut held = Vec::new();
    for _ in 0..80 {
        match TcpStream::connect_timeout(&gate.addr, Duration::from_secs(2)) {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !gate.log().contains("Too many open files") {
        assert!(
            Instant::now() < deadline,
            "accept never failed:\n{}",
            gate.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let window = Duration::from_secs(2);
    let before = cpu_time(gate.pid());
    std::thread::sleep(window);
    let used = cpu_time(gate.pid()) - before;
    println!("gate CPU while out of file descriptors: {used:?} in {window:?}");
    assert!(
        used < window / 10,
        "the accept loop spins: {used:?} of CPU in {window:?}"
    );
    // Once descriptors free up, the gate serves again.
    drop(held);
    w.wait_serves(&gate.url("app"), Duration::from_secs(30));
}
