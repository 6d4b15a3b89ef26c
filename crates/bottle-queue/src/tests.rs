use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use manifest::queue::{
    AuditRecord, Decision, EgressRequest, Outcome, Proposal, ProposalId, ProposalRequest,
    QUEUE_FORMAT_VERSION,
};

use super::*;

fn id(s: &str) -> ProposalId {
    ProposalId::parse(s).unwrap()
}

fn proposal(i: &str) -> Proposal {
    Proposal {
        version: QUEUE_FORMAT_VERSION,
        id: id(i),
        bottle: "dev-k3x9a".into(),
        request: ProposalRequest::Egress(EgressRequest {
            host: "a.example".into(),
            path_allowlist: vec!["/v1/".into()],
            auth: None,
        }),
        justification: "read the docs".into(),
        created_at: "2026-11-23T14:05:09Z".parse().unwrap(),
    }
}

fn decision(i: &str) -> Decision {
    Decision {
        version: QUEUE_FORMAT_VERSION,
        id: id(i),
        outcome: Outcome::Rejected,
        note: "no".into(),
        decided_at: "2026-11-23T14:06:30Z".parse().unwrap(),
        diff: None,
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn queue() -> (tempfile::TempDir, QueueDir) {
    let dir = tempfile::tempdir().unwrap();
    let q = QueueDir::new(dir.path());
    std::fs::create_dir_all(q.pending_dir()).unwrap();
    std::fs::create_dir_all(q.decisions_dir()).unwrap();
    (dir, q)
}

#[test]
fn file_names_map_to_ids() {
    assert!(id_of_file_name("20261123-140509-aaaaaaaa.json").is_some());
    assert!(id_of_file_name(".20261123-140509-aaaaaaaa.json").is_none());
    assert!(id_of_file_name("Upper.json").is_none());
    assert!(id_of_file_name("x.txt").is_none());
    assert!(id_of_file_name("-x.json").is_none());
}

#[test]
fn listings_skip_temp_and_foreign_files_and_a_missing_dir_is_empty() {
    let (_d, q) = queue();
    let p = q.pending_dir();
    std::fs::write(p.join("20261123-140510-bbbbbbbb.json"), "{}").unwrap();
    std::fs::write(p.join("20261123-140509-aaaaaaaa.json"), "{}").unwrap();
    std::fs::write(p.join(".x.json.1.tmp"), "{").unwrap();
    std::fs::write(p.join("README"), "hi").unwrap();
    std::fs::write(p.join("Upper.json"), "{}").unwrap();
    assert_eq!(
        q.pending_ids().unwrap(),
        [
            id("20261123-140509-aaaaaaaa"),
            id("20261123-140510-bbbbbbbb")
        ]
    );
    assert!(q.decision_ids().unwrap().is_empty());
    assert!(
        QueueDir::new("/nonexistent/q")
            .pending_ids()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_valid_record_reads_back_and_absence_is_none() {
    let (_d, q) = queue();
    let p = proposal("20261123-140509-aaaaaaaa");
    write_atomic(
        &q.pending_dir(),
        "20261123-140509-aaaaaaaa.json",
        &serde_json::to_vec(&p).unwrap(),
    )
    .unwrap();
    assert_eq!(q.proposal(&p.id).unwrap(), Some(p.clone()));
    assert_eq!(q.decision(&p.id).unwrap(), None);
    assert_eq!(mode(&q.proposal_path(&p.id)), 0o644);
}

#[test]
fn invalid_files_are_refused_with_the_path_and_the_reason() {
    let (_d, q) = queue();
    let i = id("20261123-140509-aaaaaaaa");
    let path = q.decision_path(&i);

    std::fs::write(&path, b"{not json").unwrap();
    let e = q.decision(&i).unwrap_err();
    assert!(
        matches!(
            e,
            QueueError::Corrupt {
                what: "decision",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains(&format!("{i}.json")), "{e}");
    assert!(e.invalid_file().is_some());

    let mut other = decision("20261123-000000-cccccccc");
    std::fs::write(&path, serde_json::to_vec(&other).unwrap()).unwrap();
    let e = q.decision(&i).unwrap_err();
    assert!(matches!(e, QueueError::IdMismatch { .. }), "{e}");

    other.id = i.clone();
    other.version = 99;
    std::fs::write(&path, serde_json::to_vec(&other).unwrap()).unwrap();
    let e = q.decision(&i).unwrap_err();
    assert!(matches!(e, QueueError::Version { .. }), "{e}");
    assert!(e.to_string().contains("version 99"), "{e}");

    // Another version is reported as such even when its shape differs.
    std::fs::write(&path, br#"{"version":2,"whatever":true}"#).unwrap();
    assert!(matches!(
        q.decision(&i).unwrap_err(),
        QueueError::Version { .. }
    ));
    std::fs::write(&path, br#"{"id":"x"}"#).unwrap();
    assert!(
        q.decision(&i)
            .unwrap_err()
            .to_string()
            .contains("(missing)")
    );

    std::fs::write(&path, vec![b' '; (MAX_FILE_BYTES + 10) as usize]).unwrap();
    let e = q.decision(&i).unwrap_err();
    assert!(matches!(e, QueueError::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("at most 1 MiB"), "{e}");

    std::fs::write(
        &path,
        br#"{"version":1,"id":"x","outcome":"maybe","decided_at":"2026-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    let e = q.decision(&i).unwrap_err();
    assert!(e.to_string().contains("maybe"), "{e}");
    let (p, reason) = e.invalid_file().unwrap();
    assert_eq!(p, path);
    assert!(reason.starts_with("not a valid decision file"), "{reason}");
}

#[test]
fn write_atomic_replaces_whole_files_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    write_atomic(dir.path(), "a.json", b"one").unwrap();
    write_atomic(dir.path(), "a.json", b"two").unwrap();
    assert_eq!(std::fs::read(dir.path().join("a.json")).unwrap(), b"two");
    assert_eq!(files_in(dir.path()), vec!["a.json".to_string()]);
    assert_eq!(mode(&dir.path().join("a.json")), 0o644);
    // A missing directory is an error naming the target, and leaves nothing.
    let e = write_atomic(&dir.path().join("missing"), "b.json", b"x").unwrap_err();
    assert!(e.to_string().contains("b.json"), "{e}");
}

#[test]
fn write_new_never_replaces_and_leaves_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        write_new(dir.path(), "a.json", b"one").unwrap(),
        Written::Created
    );
    assert_eq!(
        write_new(dir.path(), "a.json", b"two").unwrap(),
        Written::AlreadyExists
    );
    assert_eq!(std::fs::read(dir.path().join("a.json")).unwrap(), b"one");
    assert_eq!(files_in(dir.path()), vec!["a.json".to_string()]);
    assert_eq!(mode(&dir.path().join("a.json")), 0o644);
}

#[test]
fn concurrent_write_new_has_exactly_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let d = dir.path().to_owned();
            std::thread::spawn(move || write_new(&d, "a.json", format!("{i}").as_bytes()).unwrap())
        })
        .collect();
    let wins = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|w| *w == Written::Created)
        .count();
    assert_eq!(wins, 1);
    assert_eq!(files_in(dir.path()), vec!["a.json".to_string()]);
}

#[test]
fn audit_appends_repair_a_torn_last_line_and_readers_skip_it() {
    let (_d, q) = queue();
    std::fs::write(q.audit_path(), "{\"event\":\"decis").unwrap();
    let d = decision("20261123-140509-aaaaaaaa");
    q.append_audit(&AuditRecord::Decision(d.clone())).unwrap();
    let text = std::fs::read_to_string(q.audit_path()).unwrap();
    assert!(text.starts_with("{\"event\":\"decis\n{"), "{text}");
    assert!(text.ends_with("}\n"));
    let lines = q.audit_lines::<AuditRecord>().unwrap();
    assert_eq!(lines.records, [AuditRecord::Decision(d)]);
    assert_eq!(lines.skipped, 1);
}

#[test]
fn a_new_audit_log_is_shared_and_a_missing_one_is_empty() {
    let (_d, q) = queue();
    assert!(q.audit_lines::<AuditRecord>().unwrap().records.is_empty());
    q.append_audit(&AuditRecord::Proposal(proposal("20261123-140509-aaaaaaaa")))
        .unwrap();
    assert_eq!(mode(&q.audit_path()), 0o666);
}

#[test]
fn concurrent_audit_appends_never_interleave() {
    let (_d, q) = queue();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let q = q.clone();
            std::thread::spawn(move || {
                for _ in 0..20 {
                    q.append_audit(&AuditRecord::Decision(decision("20261123-140509-aaaaaaaa")))
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let lines = q.audit_lines::<AuditRecord>().unwrap();
    assert_eq!(lines.records.len(), 160);
    assert_eq!(lines.skipped, 0);
}

#[test]
fn random_names_are_base36() {
    let s = random_base36(8).unwrap();
    assert_eq!(s.len(), 8);
    assert!(
        s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    );
}

#[test]
fn queue_cli_takes_the_queue_from_the_flag_or_the_default() {
    let (dir, q) = queue();
    std::fs::write(
        q.proposal_path(&id("p-1")),
        serde_json::to_vec(&proposal("p-1")).unwrap(),
    )
    .unwrap();
    let run = |args: &[&str], default: &Path| {
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        cli::run(&args, &mut std::io::empty(), default)
    };
    let elsewhere = Path::new("/nonexistent-queue");
    let flag = format!("--queue={}", dir.path().display());
    for out in [
        run(&["show", "p-1"], dir.path()),
        run(&[&flag, "show", "p-1"], elsewhere),
        run(
            &["show", "p-1", "--queue", dir.path().to_str().unwrap()],
            elsewhere,
        ),
    ] {
        assert_eq!(out.code, cli::EXIT_OK, "{}", out.stderr);
        assert!(out.stdout.contains("\"decision\":null"), "{}", out.stdout);
    }
    // Nothing on stdin is a bad decision, and nothing is written.
    let out = run(&["decide", "p-1"], dir.path());
    assert_eq!(out.code, cli::EXIT_USAGE);
    assert!(out.stderr.contains("not JSON"), "{}", out.stderr);
    assert!(q.decision(&id("p-1")).unwrap().is_none());
    let out = run(&["--queue"], dir.path());
    assert_eq!(out.code, cli::EXIT_USAGE);
    assert!(out.stderr.contains("--queue needs a DIR"), "{}", out.stderr);
    // A second decision through `decide` is refused with its own code.
    let d = serde_json::to_string(&decision("p-1")).unwrap();
    let args = vec!["decide".to_owned(), "p-1".to_owned()];
    let first = cli::run(&args, &mut d.as_bytes(), dir.path());
    assert_eq!(first.code, cli::EXIT_OK, "{}", first.stderr);
    let second = cli::run(&args, &mut d.as_bytes(), dir.path());
    assert_eq!(second.code, cli::EXIT_DECIDED, "{}", second.stderr);
}
