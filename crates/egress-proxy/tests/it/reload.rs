//! Hot reload, in-process: a valid file swaps the table without disturbing
//! open tunnels; an invalid one keeps the old table and shows the error.

use crate::support::*;

#[tokio::test]
async fn reload_valid_then_invalid() {
    let w = World::new().await;
    let p = w
        .proxy(ProxyOpts::new(
            "version: 1\nroutes:\n  - host: api.test\n    allow_private: true\n",
        ))
        .await;
    let ca = &w.proxy_ca.cert_path;
    let port = 443;
    let v1 = p.proxy.allowlist().current().version().to_owned();

    // An open keep-alive tunnel before the reload.
    let mut send = tunnel_client(p.addr, "api.test", port, &w.proxy_ca).await;
    assert_eq!(
        get(&mut send, &format!("api.test:{port}"), "/echo").await.0,
        200
    );
    let r = curl(&p, ca, &[&w.https("new.test", "/echo")]).await;
    assert_eq!(r.status, 403);

    std::fs::write(
        &p.routes_path,
        "version: 1\nroutes:\n  - host: api.test\n    allow_private: true\n  - host: new.test\n    allow_private: true\n",
    )
    .unwrap();
    let v2 = p.proxy.reload().unwrap();
    assert_ne!(v1, v2);
    // The old tunnel keeps working on the same connection.
    assert_eq!(
        get(&mut send, &format!("api.test:{port}"), "/echo").await.0,
        200
    );
    let r = curl(&p, ca, &[&w.https("new.test", "/echo")]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let s = curl(&p, ca, &["http://_egress.local/status"]).await.json();
    assert_eq!(s["version"], v2.as_str());
    assert!(s["last_reload_error"].is_null());

    // Invalid: the old table stays, /status explains.
    std::fs::write(
        &p.routes_path,
        "version: 1\nroutes:\n  - host: api.test\n    allow_private: true\n    bogus_key: 1\n",
    )
    .unwrap();
    let err = p.proxy.reload().unwrap_err().to_string();
    assert!(err.contains("routes.yaml"), "{err}");
    assert!(err.contains("bogus_key"), "{err}");
    let r = curl(&p, ca, &[&w.https("new.test", "/echo")]).await;
    assert_eq!(r.status, 200, "old table must keep serving: {r:?}");
    let s = curl(&p, ca, &["http://_egress.local/status"]).await.json();
    assert_eq!(s["version"], v2.as_str());
    assert!(
        s["last_reload_error"]
            .as_str()
            .unwrap()
            .contains("bogus_key"),
        "{s}"
    );
    assert_eq!(
        get(&mut send, &format!("api.test:{port}"), "/echo").await.0,
        200
    );

    // Missing file: same.
    std::fs::remove_file(&p.routes_path).unwrap();
    assert!(p.proxy.reload().is_err());
    let s = curl(&p, ca, &["http://_egress.local/status"]).await.json();
    assert!(
        s["last_reload_error"]
            .as_str()
            .unwrap()
            .contains("cannot read"),
        "{s}"
    );

    // Fixed again: the error clears.
    std::fs::write(
        &p.routes_path,
        "version: 1\nroutes:\n  - host: api.test\n    allow_private: true\n",
    )
    .unwrap();
    let v3 = p.proxy.reload().unwrap();
    assert_eq!(v3, v1);
    let s = curl(&p, ca, &["http://_egress.local/status"]).await.json();
    assert!(s["last_reload_error"].is_null());
    assert_eq!(
        curl(&p, ca, &[&w.https("new.test", "/echo")]).await.status,
        403
    );
}

#[tokio::test]
async fn reload_rereads_token_variables() {
    // The env is fixed per proxy (a map), but the reload re-reads it: a
    // route added by reload gets its token.
    let w = World::new().await;
    let mut o = ProxyOpts::new("version: 1\nroutes: []\n");
    o.env = vec![("EGRESS_TOKEN_1", "late-token")];
    let p = w.proxy(o).await;
    std::fs::write(
        &p.routes_path,
        "version: 1\nroutes:\n  - host: auth.test\n    allow_private: true\n    auth: { scheme: Bearer, token_env: EGRESS_TOKEN_1 }\n",
    )
    .unwrap();
    p.proxy.reload().unwrap();
    let r = curl(&p, &w.proxy_ca.cert_path, &[&w.https("auth.test", "/echo")]).await;
    assert_eq!(
        r.json()["headers"]["authorization"],
        serde_json::json!(["Bearer late-token"])
    );
}

#[tokio::test]
async fn a_token_file_added_later_is_read_by_the_next_reload() {
    // No variable for slot 2: the route fails closed until the operator's
    // launcher writes the token file, then the reload injects it.
    let w = World::new().await;
    let tokens = w.path("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let mut o = ProxyOpts::new(
        "version: 1\nroutes:\n  - host: auth.test\n    allow_private: true\n    auth: { scheme: Bearer, token_env: EGRESS_TOKEN_2 }\n",
    );
    o.env = vec![("EGRESS_TOKEN_1", "from-env")];
    o.tokens_dir = Some(tokens.clone());
    let p = w.proxy(o).await;
    let r = curl(&p, &w.proxy_ca.cert_path, &[&w.https("auth.test", "/echo")]).await;
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.body.contains("EGRESS_TOKEN_2"), "{}", r.body);

    std::fs::write(tokens.join("EGRESS_TOKEN_2"), "from-file\n").unwrap();
    p.proxy.reload().unwrap();
    let r = curl(&p, &w.proxy_ca.cert_path, &[&w.https("auth.test", "/echo")]).await;
    assert_eq!(
        r.json()["headers"]["authorization"],
        serde_json::json!(["Bearer from-file"])
    );
    let status = curl(&p, &w.proxy_ca.cert_path, &["http://_egress.local/status"]).await;
    assert!(!status.body.contains("from-file"), "{}", status.body);
    assert_eq!(status.json()["missing_token_env"], serde_json::json!([]));

    // A file overrides the variable of the same slot.
    std::fs::write(tokens.join("EGRESS_TOKEN_1"), "file-wins").unwrap();
    std::fs::write(
        &p.routes_path,
        "version: 1\nroutes:\n  - host: auth.test\n    allow_private: true\n    auth: { scheme: Bearer, token_env: EGRESS_TOKEN_1 }\n",
    )
    .unwrap();
    p.proxy.reload().unwrap();
    let r = curl(&p, &w.proxy_ca.cert_path, &[&w.https("auth.test", "/echo")]).await;
    assert_eq!(
        r.json()["headers"]["authorization"],
        serde_json::json!(["Bearer file-wins"])
    );
}
