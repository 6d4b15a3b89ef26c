//! The operator's day around a session: the agent reads the Dockerfile it
//! runs, an agent-proposed Dockerfile builds with no network, `launcher
//! stop` ends a waiting `run` cleanly, `launcher list` shows preserved
//! states, and approved routes survive a resume.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use launcher::identity::Identity;
use tests::{engine_or_skip, prepare_images, run_id};

use crate::{Started, sh, start_bottle, with_run};

/// A `RUN` step that finds its default gateway (the host, on any bridge)
/// and connects to `port` there, printing `probe-result 0` when it got
/// through. Only literal addresses: no name is ever resolved.
fn probe_dockerfile(port: u16, nonce: &str) -> String {
    format!(
        "ARG BASE\nFROM ${{BASE}}\nRUN python3 -c \"import socket,struct; \
         r=[l.split() for l in open('/proc/net/route').read().splitlines()[1:]]; \
         g=[socket.inet_ntoa(struct.pack('<L',int(f[2],16))) for f in r if f[1]=='00000000']; \
         print('probe-gateway', g, '{nonce}'); s=socket.socket(); s.settimeout(5); \
         print('probe-result', s.connect_ex((g[0] if g else '172.17.0.1', {port})))\"\n"
    )
}

/// Whether `listener` has a connection waiting (bounded wait).
async fn has_connection(listener: &tokio::net::TcpListener, within: Duration) -> bool {
    tokio::time::timeout(within, listener.accept())
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_dockerfile_builds_with_no_network() {
    let Some(engine) = engine_or_skip("an_approved_dockerfile_builds_with_no_network").await else {
        return;
    };
    prepare_images(&engine).await;
    // The test's own listener on every host interface: the bridge's
    // gateway address reaches it from any container on a bridge.
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0")
        .await
        .expect("listener");
    let port = listener.local_addr().expect("addr").port();
    let nonce = run_id();
    let identity = Identity::parse(&format!("probe-{}", &nonce[..5])).expect("identity");
    let dockerfile = probe_dockerfile(port, &nonce);
    let base = launcher::images::base_tag();

    // Control: the same RUN step on the engine's default network reaches
    // the listener, so the probe can see a wall that is not there.
    let control_tag = format!("claude-bottle/e2e-probe:{nonce}");
    let mut control_log = Vec::new();
    let context = launcher::images::build_context(&dockerfile, None).expect("context");
    engine
        .build_image(
            context,
            &control_tag,
            HashMap::from([("BASE".to_owned(), base.clone())]),
            HashMap::new(),
            &mut |l| control_log.push(l.to_owned()),
        )
        .await
        .expect("control build");
    let _ = launcher::capability::remove_resume_image(&engine, &control_tag).await;
    let control = control_log.join("\n");
    assert!(
        control.contains("probe-result 0"),
        "the control build could not reach the test's listener; the probe proves nothing:\n{control}"
    );
    assert!(
        has_connection(&listener, Duration::from_secs(5)).await,
        "control: no connection arrived"
    );

    // The approved Dockerfile, built the way `launcher resume` builds it.
    let mut log = Vec::new();
    let tag =
        launcher::resume::build::build_proposed(&engine, &identity, &dockerfile, &base, &mut |l| {
            log.push(l.to_owned())
        })
        .await
        .expect("the proposed image builds");
    let _ = launcher::capability::remove_resume_image(&engine, &tag).await;
    let log = log.join("\n");
    assert!(
        log.contains("probe-gateway []") && log.contains("probe-result"),
        "the RUN step ran without any route: {log}"
    );
    assert!(
        !log.contains("probe-result 0"),
        "a RUN step reached the host: {log}"
    );
    assert!(
        !has_connection(&listener, Duration::from_secs(2)).await,
        "the listener received a connection from the proposed build"
    );
}
