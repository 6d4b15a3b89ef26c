//! Data-loss prevention: secrets in bodies, URLs and headers are stopped
//! (block) or logged (warn) before they leave; exempt hosts and the
//! proxy's own injected credentials are not flagged.

use std::sync::atomic::Ordering;

use egress_proxy::{DlpAction, DlpSettings};

use crate::support::*;

const ROUTES: &str = r#"
version: 1
routes:
  - host: api.test
    allow_private: true
  - host: "*.wild.test"
    allow_private: true
  - host: auth.test
    allow_private: true
    auth: { scheme: Bearer, token_env: EGRESS_TOKEN_1 }
"#;

/// An AWS-access-key-shaped value built at run time (no literal in the repo).
fn fake_key(n: u8) -> String {
    let tail: String = (0..16)
        .map(|i| (b'A' + (n.wrapping_mul(7).wrapping_add(i * 5)) % 26) as char)
        .collect();
    format!("{}{tail}", "AKIA")
}

fn filler(len: usize) -> Vec<u8> {
    b"the quick brown fox jumps over the lazy dog 0123456789\n"
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

async fn setup(action: DlpAction, injected: &str) -> (World, TestProxy) {
    let w = World::new().await;
    let mut o = ProxyOpts::new(ROUTES);
    o.env = vec![("EGRESS_TOKEN_1", injected)];
    o.dlp = DlpSettings {
        action,
        rules: None,
        exempt: vec!["*.wild.test".into()],
        ..Default::default()
    };
    let p = w.proxy(o).await;
    (w, p)
}

/// What the upstream's `/collect/<name>` received so far.
fn collected(w: &World, name: &str) -> Collected {
    let path = format!("/collect/{name}");
    w.upstream
        .state
        .collected
        .lock()
        .unwrap()
        .get(&path)
        .cloned()
        .unwrap_or_default()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn block_stops_a_secret_deep_in_a_streamed_body_before_any_of_it_leaves() {
    let (w, p) = setup(DlpAction::Block, "unused").await;
    let key = fake_key(1);
    let mut data = filler(2 << 20);
    let at = data.len() + 1;
    data.extend_from_slice(format!(" {key}\n").as_bytes());
    data.extend_from_slice(&filler(1 << 20));
    let file = w.path("body.bin");
    std::fs::write(&file, &data).unwrap();
    let ca = &w.proxy_ca.cert_path;
    let upload = format!("@{}", file.display());

    for chunked in [false, true] {
        let name = if chunked { "chunked" } else { "sized" };
        let mut args = vec!["--data-binary", &upload];
        if chunked {
            args.extend(["-H", "Transfer-Encoding: chunked"]);
        }
        let url = w.https("api.test", &format!("/collect/{name}"));
        args.push(&url);
        let r = curl(&p, ca, &args).await;
        assert_eq!(r.status, 403, "chunked={chunked}: {r:?}");
        assert_eq!(r.header("x-egress-decision"), Some("deny"));
        assert!(r.body.contains("aws-access-key-id"), "{}", r.body);
        assert!(r.body.contains("request body, line"), "{}", r.body);
        assert!(r.body.contains("dlp_action"), "{}", r.body);
        assert!(!r.body.contains(&key[4..]), "the answer leaks the key");
        // The upstream may still be reading what was sent before the
        // finding; wait until its side of the aborted request is over.
        let got = poll_until("the upstream to see the aborted body", || async {
            let c = collected(&w, name);
            c.done.then_some(c)
        })
        .await;
        assert!(!got.complete, "the cut body looked complete upstream");
        assert!(
            !contains(&got.bytes, key.as_bytes()),
            "the upstream got the key"
        );
        assert!(
            got.bytes.len() <= at,
            "the upstream got {} bytes, past the key at {at}",
            got.bytes.len()
        );
    }
}

#[tokio::test]
async fn a_clean_body_streams_through_byte_for_byte() {
    let (w, p) = setup(DlpAction::Block, "unused").await;
    let data = filler(3 << 20);
    let file = w.path("clean.bin");
    std::fs::write(&file, &data).unwrap();
    let r = curl(
        &p,
        &w.proxy_ca.cert_path,
        &[
            "--data-binary",
            &format!("@{}", file.display()),
            &w.https("api.test", "/collect/clean"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, format!("received {}", data.len()));
    let got = collected(&w, "clean");
    assert!(
        got.complete && got.bytes == data,
        "the body changed on the way"
    );
}

#[tokio::test]
async fn warn_forwards_and_exempt_hosts_are_not_scanned() {
    let key = fake_key(2);
    let body = format!("{{\"k\": \"{key}\"}}");
    let (w, p) = setup(DlpAction::Warn, "unused").await;
    let r = curl(
        &p,
        &w.proxy_ca.cert_path,
        &[
            "--data-binary",
            &body,
            &w.https("api.test", "/collect/warn"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "warn forwards: {r:?}");
    assert_eq!(collected(&w, "warn").bytes, body.as_bytes());

    let (w, p) = setup(DlpAction::Block, "unused").await;
    let r = curl(
        &p,
        &w.proxy_ca.cert_path,
        &[
            "--data-binary",
            &body,
            &w.https("a.wild.test", "/collect/exempt"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "exempt host: {r:?}");
    assert_eq!(collected(&w, "exempt").bytes, body.as_bytes());
}

#[tokio::test]
async fn secrets_in_the_url_or_a_header_are_refused_without_connecting() {
    let (w, p) = setup(DlpAction::Block, "unused").await;
    let key = fake_key(3);
    let ca = &w.proxy_ca.cert_path;
    let before = w.upstream.state.requests.load(Ordering::SeqCst);

    let r = curl(&p, ca, &[&w.https("api.test", &format!("/x?token={key}"))]).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("in the URL"), "{}", r.body);
    assert!(!r.body.contains(&key[4..]), "{}", r.body);

    let r = curl(&p, ca, &[&w.https("api.test", &format!("/leak/{key}/x"))]).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("(path withheld)"), "{}", r.body);

    let header = format!("X-Debug: {key}");
    let r = curl(&p, ca, &["-H", &header, &w.https("api.test", "/")]).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("header x-debug"), "{}", r.body);

    assert_eq!(
        w.upstream.state.requests.load(Ordering::SeqCst),
        before,
        "a refused request reached the upstream"
    );
}

#[tokio::test]
async fn the_proxys_own_injected_credential_is_not_flagged() {
    let injected = fake_key(4);
    let (w, p) = setup(DlpAction::Block, &injected).await;
    // The client's own value of the header is dropped before the scan.
    let r = curl(
        &p,
        &w.proxy_ca.cert_path,
        &[
            "-H",
            &format!("Authorization: Bearer {}", fake_key(5)),
            &w.https("auth.test", "/echo"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.json()["headers"]["authorization"][0],
        format!("Bearer {injected}")
    );
}

#[tokio::test]
async fn status_reports_the_dlp_policy() {
    let (w, p) = setup(DlpAction::Block, "unused").await;
    let r = curl(&p, &w.proxy_ca.cert_path, &["http://_egress.local/status"]).await;
    let j = r.json();
    assert_eq!(j["dlp"]["action"], "block", "{j}");
    assert!(j["dlp"]["rules"].as_u64().unwrap() > 10, "{j}");
    assert_eq!(j["dlp"]["exempt"][0], "*.wild.test", "{j}");
}
