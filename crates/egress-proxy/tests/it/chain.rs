//! Upstream proxy chaining: proxy A sends every upstream connection through
//! proxy B with CONNECT and trusts B's interception CA (plus its own roots).

use crate::support::*;

#[tokio::test]
async fn chained_through_a_second_instance() {
    let w = World::new().await;
    // B: the parent. It injects a token, which proves the request passed it.
    let mut ob = ProxyOpts::new(
        "version: 1\nroutes:\n  - host: auth.test\n    allow_private: true\n    auth: { scheme: Bearer, token_env: EGRESS_TOKEN_1 }\n",
    );
    ob.env = vec![("EGRESS_TOKEN_1", "from-parent")];
    ob.routes_file_name = "routes-b.yaml";
    let b = w.proxy(ob).await;
    // A: trusts B's CA for the upstream leg (B intercepts).
    let mut oa = ProxyOpts::new(
        "version: 1\nroutes:\n  - host: auth.test\n    allow_private: true\n  - host: api.test\n    allow_private: true\n",
    );
    oa.upstream_proxy = Some(format!("http://{}", b.addr));
    oa.upstream_ca = Some(w.proxy_ca.cert_path.clone());
    oa.routes_file_name = "routes-a.yaml";
    let a = w.proxy(oa).await;
    let ca = &w.proxy_ca.cert_path;

    let r = curl(&a, ca, &[&w.https("auth.test", "/echo")]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.json()["headers"]["authorization"],
        serde_json::json!(["Bearer from-parent"])
    );
    // Allowed by A, refused by B: B's 403 comes back to the client.
    let r = curl(&a, ca, &[&w.https("api.test", "/echo")]).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("api.test"));
    // Plain http also rides B's CONNECT, and B will not put its
    // credential on a plain-HTTP request.
    let r = curl(&a, ca, &[&w.http("auth.test", "/echo")]).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("only sent inside TLS"), "{}", r.body);
    // Parent down → 502 naming the proxy.
    let mut oc =
        ProxyOpts::new("version: 1\nroutes:\n  - host: api.test\n    allow_private: true\n");
    oc.upstream_proxy = Some(format!("http://127.0.0.1:{}", free_port()));
    oc.routes_file_name = "routes-c.yaml";
    let c = w.proxy(oc).await;
    let r = curl(&c, ca, &[&w.https("api.test", "/echo")]).await;
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.body.contains("upstream proxy"), "{}", r.body);
}
