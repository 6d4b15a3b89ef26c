//! Cost of the inflated-size check on a push, one core. Prints numbers;
//! asserts nothing.
//!
//! `cargo bench -p git-gate --bench intake`. Builds packs with the real
//! git in a temporary directory (`BENCH_MIB`, default 100, sets their
//! inflated size), then streams each pack from its file in 64 KiB reads
//! through [`git_gate::pack::Inspector`], as the gate does, and through
//! the same plus the spool write. For scale it times `git index-pack` on
//! the same pack: the work git does on every push anyway. Peak RSS is
//! measured in a fresh process (this bench re-run with `--check PACK`)
//! that does nothing but stream the pack through the check.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use git_gate::pack::{Inspector, Limits};

fn git(dir: &Path, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "b")
        .env("GIT_AUTHOR_EMAIL", "b@b.invalid")
        .env("GIT_COMMITTER_NAME", "b")
        .env("GIT_COMMITTER_EMAIL", "b@b.invalid")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "git {args:?}");
    out.stdout
}

/// A repository holding `files` (name, content), packed into a file;
/// returns it with the sum of its objects' sizes as git reports them.
fn pack_of(
    root: &Path,
    name: &str,
    files: &mut dyn Iterator<Item = (String, Vec<u8>)>,
) -> (PathBuf, u64) {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    git(&dir, &["init", "--quiet", "."], b"");
    for (f, content) in files {
        let p = dir.join(&f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    git(&dir, &["add", "-A"], b"");
    git(&dir, &["commit", "--quiet", "-m", name], b"");
    let objects = git(&dir, &["rev-list", "--objects", "--all"], b"");
    let pack = git(
        &dir,
        &["pack-objects", "--stdout", "-q", "--delta-base-offset"],
        &objects,
    );
    let path = root.join(format!("{name}.pack"));
    std::fs::write(&path, pack).unwrap();
    let sizes = git(
        &dir,
        &[
            "cat-file",
            "--batch-all-objects",
            "--batch-check=%(objectsize)",
        ],
        b"",
    );
    let sum = String::from_utf8_lossy(&sizes)
        .lines()
        .map(|l| l.parse::<u64>().unwrap())
        .sum();
    let _ = std::fs::remove_dir_all(&dir);
    (path, sum)
}

fn noisy(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 40);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(format!("let v{:x} = {:x};\n", x & 0xffff, x).as_bytes());
    }
    out.truncate(len);
    out
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Streams `pack` through the check (and the spool, when `spool`).
fn run(pack: &Path, spool: Option<&Path>) -> (Duration, u64) {
    let limits = Limits {
        max_object_bytes: u64::MAX,
        max_total_bytes: u64::MAX,
    };
    let mut ins = Inspector::new(limits, 20);
    let mut out = spool
        .map(|p| std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(p).unwrap()));
    let mut f = std::fs::File::open(pack).unwrap();
    let mut buf = vec![0u8; 64 << 10];
    let started = Instant::now();
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        ins.feed(&buf[..n]).unwrap();
        if let Some(o) = out.as_mut() {
            o.write_all(&buf[..n]).unwrap();
        }
    }
    if let Some(o) = out.as_mut() {
        o.flush().unwrap();
    }
    ins.finish().unwrap();
    (started.elapsed(), ins.inflated_total())
}

fn index_pack(root: &Path, pack: &Path) -> Duration {
    let repo = root.join("index");
    if !repo.exists() {
        git(
            root,
            &["init", "--quiet", "--bare", repo.to_str().unwrap()],
            b"",
        );
    }
    let data = std::fs::read(pack).unwrap();
    let started = Instant::now();
    git(&repo, &["index-pack", "--stdin"], &data);
    started.elapsed()
}

/// `--check PACK`: stream one pack through the check in this fresh
/// process and print `<ms> <peak RSS KiB>`.
fn check_in_this_process(pack: &Path) {
    let (took, _) = run(pack, None);
    println!("{} {}", took.as_millis(), peak_rss_kib());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--check") {
        check_in_this_process(Path::new(&args[i + 1]));
        return;
    }
    let mib: usize = std::env::var("BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    println!("building packs of {mib} MiB inflated with git …");
    let cases = [
        (
            "one text blob",
            pack_of(
                root,
                "text",
                &mut std::iter::once(("big.rs".to_owned(), noisy(mib << 20, 1))),
            ),
        ),
        (
            "one blob of zeros (bomb-shaped)",
            pack_of(
                root,
                "zeros",
                &mut std::iter::once(("zeros.bin".to_owned(), vec![0u8; mib << 20])),
            ),
        ),
        (
            "10k files of text",
            pack_of(
                root,
                "many",
                &mut (0..10_000).map(|i| {
                    (
                        format!("d{}/f{i}.rs", i % 100),
                        noisy((mib << 20) / 10_000, i),
                    )
                }),
            ),
        ),
    ];
    println!(
        "\n| pack | pack size | inflated (git's sum) | check | check MiB/s (inflated) | check + spool | git index-pack | check's peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, (pack, git_sum)) in &cases {
        let size = std::fs::metadata(pack).unwrap().len();
        let best = |spool: Option<&Path>| {
            (0..3)
                .map(|_| run(pack, spool))
                .min_by_key(|(d, _)| *d)
                .unwrap()
        };
        let (check, inflated) = best(None);
        let (spooled, _) = best(Some(&root.join("spool.pack")));
        let index = index_pack(root, pack);
        let fresh = Command::new(std::env::current_exe().unwrap())
            .args(["--check", pack.to_str().unwrap()])
            .output()
            .unwrap();
        let fresh = String::from_utf8_lossy(&fresh.stdout);
        let rss = fresh.split_whitespace().nth(1).unwrap_or("?");
        println!(
            "| {name} | {:.1} MiB | {:.1} MiB ({:.1}) | {:.0} ms | {:.0} | {:.0} ms | {:.0} ms | {rss} KiB |",
            size as f64 / (1 << 20) as f64,
            inflated as f64 / (1 << 20) as f64,
            *git_sum as f64 / (1 << 20) as f64,
            check.as_secs_f64() * 1000.0,
            inflated as f64 / (1 << 20) as f64 / check.as_secs_f64(),
            spooled.as_secs_f64() * 1000.0,
            index.as_secs_f64() * 1000.0,
        );
    }
}
