use std::sync::{Arc, Mutex};
use std::time::Duration;

use manifest::routes::RouteTable;

use super::*;
use crate::approvals::apply;
use crate::engine::kubernetes::fake::{self, status};

const NS: &str = "claude-bottle-claude-k3x9a";
const OLD: &str = "version: 1\nroutes:\n  - host: api.anthropic.com\n";
const TOKEN: &str = "ghp_NEVER_IN_AN_ERROR";

/// egress-proxy as the fake cluster sees it: `/status` reports the version
/// of whatever the routes ConfigMap holds (the watch, instantly).
#[derive(Clone)]
struct WatchingProxy {
    routes: Arc<Mutex<String>>,
}

impl PodExec for WatchingProxy {
    async fn exec(
        &self,
        pod: &str,
        container: &str,
        cmd: &[String],
        _stdin: Option<&[u8]>,
    ) -> Result<ExecOutput, String> {
        assert_eq!((pod, container), ("egress", "egress"));
        assert_eq!(cmd, egress_status_probe(5).as_slice());
        let text = self.routes.lock().map_err(|e| e.to_string())?.clone();
        let v = RouteTable::parse(&text, "routes.yaml")
            .map_err(|e| e.to_string())?
            .version_hash();
        Ok(ExecOutput {
            code: Some(0),
            stdout: serde_json::json!({"version": v}).to_string(),
            stderr: String::new(),
        })
    }
}

/// A fake API server holding the routes ConfigMap.
fn cluster(
    routes: Arc<Mutex<String>>,
    forbid_secret: bool,
) -> (kube::Client, Arc<Mutex<Vec<fake::Seen>>>) {
    fake::client(move |s| {
        let cm = format!("/api/v1/namespaces/{NS}/configmaps/{}", EGRESS_CONFIGMAP);
        let secret = format!("/api/v1/namespaces/{NS}/secrets/{}", EGRESS_TOKENS_SECRET);
        let path = s.uri.split('?').next().unwrap_or_default();
        let cm_json = |text: &str| serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": EGRESS_CONFIGMAP}, "data": {ROUTES_KEY: text}});
        match (s.method.as_str(), path) {
            ("GET", p) if p == cm => Some((200, cm_json(&routes.lock().ok()?.clone()))),
            ("PATCH", p) if p == cm => {
                let v: serde_json::Value = serde_json::from_str(&s.body).ok()?;
                let text = v["data"][ROUTES_KEY].as_str()?.to_owned();
                *routes.lock().ok()? = text.clone();
                Some((200, cm_json(&text)))
            }
            ("PATCH", p) if p == secret && forbid_secret => Some((
                403,
                status(403, "Forbidden", "secrets \"egress-tokens\" is forbidden"),
            )),
            ("PATCH", p) if p == secret => Some((
                200,
                serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": EGRESS_TOKENS_SECRET}}),
            )),
            _ => Some((404, status(404, "NotFound", "not found"))),
        }
    })
}

#[tokio::test]
async fn approval_goes_through_the_configmap_and_is_confirmed_by_status() {
    let routes = Arc::new(Mutex::new(OLD.to_owned()));
    let (client, log) = cluster(routes.clone(), false);
    let egress = KubeEgress::new(
        client,
        NS,
        WatchingProxy {
            routes: routes.clone(),
        },
    );
    let (table, before) = apply::live_table("claude-k3x9a", &egress)
        .await
        .expect("live");
    assert_eq!(table.routes().len(), 1);
    let new = RouteTable::parse(&format!("{OLD}  - host: pypi.org\n"), "new").expect("new");
    egress
        .write_token("EGRESS_TOKEN_2", TOKEN)
        .await
        .expect("token");
    let s = apply::apply_table(
        "claude-k3x9a",
        &egress,
        None::<&NoPipelock>,
        OLD,
        &before,
        &new,
        Duration::from_secs(5),
    )
    .await
    .expect("applied");
    assert_eq!(s.version, new.version_hash());
    assert!(routes.lock().expect("routes").contains("pypi.org"));
    let log = log.lock().expect("log").clone();
    let token = log
        .iter()
        .find(|s| s.uri.contains("/secrets/"))
        .expect("secret patch");
    assert_eq!(token.method, "PATCH");
    assert!(token.body.contains("\"stringData\""), "{}", token.body);
    assert!(token.uri.contains("fieldManager=claude-bottle-launcher"));
}

#[tokio::test]
async fn forbidden_token_write_names_the_rbac_and_never_the_value() {
    let routes = Arc::new(Mutex::new(OLD.to_owned()));
    let (client, _) = cluster(routes.clone(), true);
    let egress = KubeEgress::new(client, NS, WatchingProxy { routes });
    let e = egress
        .write_token("EGRESS_TOKEN_2", TOKEN)
        .await
        .expect_err("forbidden");
    assert!(e.contains("`patch` on `secrets`"), "{e}");
    assert!(!e.contains(TOKEN));
    let e = egress
        .write_token("../x", TOKEN)
        .await
        .expect_err("bad key");
    assert!(
        e.contains("not a valid Secret key") && !e.contains(TOKEN),
        "{e}"
    );
}

#[tokio::test]
async fn an_unconfirmed_reload_writes_the_old_routes_back() {
    // A proxy whose watch never fires: status stays at the old version.
    #[derive(Clone)]
    struct Stuck(String);
    impl PodExec for Stuck {
        async fn exec(
            &self,
            _: &str,
            _: &str,
            _: &[String],
            _: Option<&[u8]>,
        ) -> Result<ExecOutput, String> {
            Ok(ExecOutput {
                code: Some(0),
                stdout: serde_json::json!({"version": self.0}).to_string(),
                stderr: String::new(),
            })
        }
    }
    let routes = Arc::new(Mutex::new(OLD.to_owned()));
    let (client, _) = cluster(routes.clone(), false);
    let old_v = RouteTable::parse(OLD, "old").expect("old").version_hash();
    let mut egress = KubeEgress::new(client, NS, Stuck(old_v.clone()));
    egress.propagation = Duration::from_millis(200);
    egress.poll = Duration::from_millis(20);
    let new = RouteTable::parse(&format!("{OLD}  - host: pypi.org\n"), "new").expect("new");
    let before = EgressStatus {
        version: old_v,
        ..EgressStatus::default()
    };
    let e = apply::apply_table(
        "b",
        &egress,
        None::<&NoPipelock>,
        OLD,
        &before,
        &new,
        Duration::from_millis(300),
    )
    .await
    .expect_err("not confirmed");
    assert!(
        e.to_string()
            .contains("previous routes file was written back"),
        "{e}"
    );
    assert_eq!(*routes.lock().expect("routes"), OLD);
}

#[tokio::test]
async fn a_failing_probe_is_an_error_with_its_output() {
    struct Down;
    impl PodExec for Down {
        async fn exec(
            &self,
            _: &str,
            _: &str,
            _: &[String],
            _: Option<&[u8]>,
        ) -> Result<ExecOutput, String> {
            Ok(ExecOutput {
                code: Some(7),
                stdout: "connection refused".into(),
                stderr: String::new(),
            })
        }
    }
    let (client, _) = cluster(Arc::new(Mutex::new(OLD.to_owned())), false);
    let e = KubeEgress::new(client, NS, Down)
        .status()
        .await
        .expect_err("down");
    assert!(e.contains("exited Some(7): connection refused"), "{e}");
}

/// No pipelock on Kubernetes (render refuses it).
struct NoPipelock;
impl apply::PipelockMirror for NoPipelock {
    async fn mirror(&self, _: &[String]) -> Result<(), String> {
        Ok(())
    }
}
