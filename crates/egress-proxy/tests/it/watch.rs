//! `--watch-routes`: the real binary reloads a routes file that changes
//! without a signal, updated the way a Kubernetes ConfigMap volume is (a
//! new timestamped directory, then the `..data` symlink swapped), through
//! the same validate-then-swap path as SIGHUP.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::binary::{base_cmd, tls_url, with_upstream_port};
use crate::support::*;

/// Writes `text` as `routes.yaml` of the ConfigMap-like directory `dir`:
/// `dir/..<n>/routes.yaml`, `dir/..data -> ..<n>` (swapped atomically by
/// rename), `dir/routes.yaml -> ..data/routes.yaml`.
fn configmap_write(dir: &Path, n: u32, text: &str) {
    let data = dir.join(format!("..2026_11_30_{n}"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("routes.yaml"), text).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(data.file_name().unwrap(), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    let link = dir.join("routes.yaml");
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("..data/routes.yaml", &link).unwrap();
    }
}

#[tokio::test]
async fn watched_configmap_routes_reload_without_a_signal() {
    let w = World::new().await;
    let dir = w.path("configmap");
    std::fs::create_dir_all(&dir).unwrap();
    let routes = "version: 1\nroutes:\n  - host: api.test\n    allow_private: true\n";
    configmap_write(&dir, 1, &with_upstream_port(&w, routes));
    let mut child = base_cmd(&w, &dir.join("routes.yaml"))
        .arg("--watch-routes")
        .arg("1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::spawn(async move {
        let mut tx = Some(tx);
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("egress-proxy listening") {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                let addr: SocketAddr = v["listen"].as_str().unwrap().parse().unwrap();
                if let Some(tx) = tx.take() {
                    let _ = tx.send(addr);
                }
            }
        }
    });
    let addr = tokio::time::timeout(DEADLINE, rx).await.unwrap().unwrap();
    let mut o = ProxyOpts::new("version: 1\nroutes: []\n");
    o.routes_file_name = "unused-routes.yaml";
    let mut p = w.proxy(o).await;
    p.shutdown.cancel();
    p.addr = addr;
    let ca = &w.proxy_ca.cert_path;
    let status = || async { curl(&p, ca, &["http://_egress.local/status"]).await.json() };

    assert_eq!(
        curl(&p, ca, &[&tls_url(&w, "new.test", "/echo")])
            .await
            .status,
        403
    );
    let v1 = status().await["version"].clone();

    // A new valid table, no signal: it serves once the watch saw it.
    let more = format!("{routes}  - host: new.test\n    allow_private: true\n");
    configmap_write(&dir, 2, &with_upstream_port(&w, &more));
    let v2 = poll_until("the watched file to be reloaded", || async {
        let v = status().await["version"].clone();
        (v != v1).then_some(v)
    })
    .await;
    assert_eq!(
        curl(&p, ca, &[&tls_url(&w, "new.test", "/echo")])
            .await
            .status,
        200
    );

    // An invalid table: the old one stays live, /status says why.
    configmap_write(&dir, 3, "version: 1\nroutes:\n  - hots: api.test\n");
    let err = poll_until("the reload error to show", || async {
        status().await["last_reload_error"]
            .as_str()
            .map(str::to_owned)
    })
    .await;
    assert!(err.contains("hots"), "{err}");
    assert_eq!(status().await["version"], v2);
    assert_eq!(
        curl(&p, ca, &[&tls_url(&w, "new.test", "/echo")])
            .await
            .status,
        200
    );

    // Fixed again: reloaded, the error cleared.
    configmap_write(&dir, 4, &with_upstream_port(&w, routes));
    poll_until("the fixed file to be reloaded", || async {
        (status().await["version"] == v1).then_some(())
    })
    .await;
    assert!(status().await["last_reload_error"].is_null());
    assert_eq!(
        curl(&p, ca, &[&tls_url(&w, "new.test", "/echo")])
            .await
            .status,
        403
    );
    let _ = child.kill().await;
}
