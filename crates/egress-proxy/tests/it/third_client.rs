//! A third HTTP stack: Python `requests` through the proxy.

use crate::support::*;

const SCRIPT: &str = r#"
import sys, requests
proxy, ca, ok_url, denied_url = sys.argv[1:5]
s = requests.Session()
s.trust_env = False
s.proxies = {"https": proxy, "http": proxy}
s.verify = ca
r = s.get(ok_url, headers={"Authorization": "Bearer from-client"})
print(r.status_code)
print(r.json()["headers"]["authorization"][0])
r = s.get(denied_url)
print(r.status_code)
print(r.headers.get("x-egress-decision"))
print("egress-block" in r.text)
"#;

#[tokio::test]
async fn python_requests_through_the_proxy() {
    let w = World::new().await;
    let mut o = ProxyOpts::new(
        "version: 1\nroutes:\n  - host: auth.test\n    allow_private: true\n    auth: { scheme: Bearer, token_env: EGRESS_TOKEN_1 }\n",
    );
    o.env = vec![("EGRESS_TOKEN_1", "py-token")];
    let p = w.proxy(o).await;
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(p.url())
        .arg(&w.proxy_ca.cert_path)
        .arg(w.https("auth.test", "/echo"))
        .arg(w.https("denied.test", "/x"))
        .output()
        .await
        .expect(
            "python3 must be installed (.ci/setup.d/egress-proxy.sh installs python3-requests)",
        );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, ["200", "Bearer py-token", "403", "deny", "True"]);
}
