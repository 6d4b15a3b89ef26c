use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::engine::kubernetes::fake::{self, Seen, echo, status};
use crate::engine::kubernetes::render::{RenderOptions, render};

fn bundle() -> Bundle {
    let m = manifest::defaults::default_manifest().expect("default manifest");
    let agent = m
        .agent(manifest::defaults::DEFAULT_AGENT_NAME)
        .expect("agent")
        .clone();
    let opts = crate::plan::PlanOptions {
        identity: crate::plan::identity::Identity::parse("claude-k3x9a").expect("id"),
        cwd: None,
        queue_dir: "/q".into(),
        images: Component::ALL
            .into_iter()
            .map(|c| (c, format!("claude-bottle/{c}:test")))
            .collect(),
        unavailable: BTreeMap::new(),
        extra_labels: BTreeMap::new(),
        upstream_ca: None,
        skills: Vec::new(),
        workspace_mode: None,
    };
    let plan = crate::plan::build(&agent, &opts).expect("plan");
    render(&plan, &RenderOptions::default()).expect("render")
}

const NS: &str = "claude-bottle-claude-k3x9a";

fn ready_pod(name: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    })
}

fn pending_pod(name: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
        "status": {"phase": "Pending"}
    })
}

/// A cluster where everything succeeds: creates echo, Services get an
/// address, Pods are Ready.
fn happy(seen: &Seen) -> fake::Answer {
    let path = seen.uri.split('?').next().unwrap_or_default();
    if seen.method == "POST" {
        return Some((201, echo(seen)));
    }
    if let Some(name) = path.strip_prefix(&format!("/api/v1/namespaces/{NS}/services/")) {
        let ip = match name {
            "egress" => "10.96.0.10",
            "supervise" => "10.96.0.12",
            _ => "10.96.0.11",
        };
        return Some((
            200,
            serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": {"clusterIP": ip}}),
        ));
    }
    if let Some(name) = path.strip_prefix(&format!("/api/v1/namespaces/{NS}/pods/")) {
        return Some((200, ready_pod(name)));
    }
    Some((404, status(404, "NotFound", "not found")))
}

fn cluster(
    answer: impl Fn(&Seen) -> fake::Answer + Send + 'static,
) -> (Cluster, std::sync::Arc<std::sync::Mutex<Vec<Seen>>>) {
    let (client, log) = fake::client(answer);
    let mut c = Cluster::new(client);
    c.poll = Duration::from_millis(20);
    (c, log)
}

#[tokio::test]
async fn start_creates_in_order_fills_host_aliases_and_waits_for_sidecars_first() {
    let (c, log) = cluster(happy);
    let out = c
        .start(bundle(), Duration::from_secs(10), &mut |_| {})
        .await
        .expect("start");
    let log = log.lock().expect("log").clone();
    let posts: Vec<String> = log
        .iter()
        .filter(|s| s.method == "POST")
        .map(|s| s.uri.split('?').next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(posts[0], "/api/v1/namespaces");
    assert!(posts[1].ends_with("/serviceaccounts"), "{posts:?}");
    assert!(posts[2].ends_with("/networkpolicies"), "{posts:?}");
    let last_policy = posts
        .iter()
        .rposition(|p| p.ends_with("/networkpolicies"))
        .expect("policies");
    let first_pod = posts
        .iter()
        .position(|p| p.ends_with("/pods"))
        .expect("pods");
    assert!(
        last_policy < first_pod,
        "policies exist before any pod: {posts:?}"
    );
    // The agent is created after the sidecars were seen Ready.
    let agent_post = log
        .iter()
        .position(|s| {
            s.method == "POST" && s.body.contains("\"name\":\"agent\"") && s.uri.contains("/pods")
        })
        .expect("agent created");
    let supervise_ready = log
        .iter()
        .position(|s| s.method == "GET" && s.uri.ends_with("/pods/supervise"))
        .expect("supervise polled");
    assert!(supervise_ready < agent_post);
    // Every create names the field manager.
    assert!(
        log.iter()
            .filter(|s| s.method == "POST")
            .all(|s| s.uri.contains("fieldManager=claude-bottle-launcher"))
    );
    // The agent's host aliases are the Services' addresses.
    let agent = &log[agent_post].body;
    assert!(agent.contains("\"hostAliases\""), "{agent}");
    assert!(
        agent.contains("10.96.0.10") && agent.contains("10.96.0.12"),
        "{agent}"
    );
    let spec = out
        .pod(Component::Agent)
        .and_then(|p| p.spec.clone())
        .expect("spec");
    assert_eq!(spec.host_aliases.map(|a| a.len()), Some(2));
}

#[tokio::test]
async fn forbidden_names_the_verb_resource_and_rbac() {
    let (c, _) = cluster(|s| {
        if s.method == "POST" && s.uri.contains("/networkpolicies") {
            return Some((
                403,
                status(
                    403,
                    "Forbidden",
                    "networkpolicies.networking.k8s.io is forbidden: User \"dev\" cannot create resource",
                ),
            ));
        }
        happy(s)
    });
    let e = c
        .start(bundle(), Duration::from_secs(5), &mut |_| {})
        .await
        .expect_err("forbidden");
    assert!(matches!(e, KubeError::Forbidden { .. }), "{e:?}");
    let m = e.to_string();
    assert!(
        m.contains("refused to create networkpolicies in namespace claude-bottle-claude-k3x9a"),
        "{m}"
    );
    assert!(
        m.contains("needs RBAC `create` on `networkpolicies` in the bottle's namespace"),
        "{m}"
    );
}

#[tokio::test]
async fn conflict_says_the_bottle_exists_and_how_to_remove_it() {
    let (c, log) = cluster(|s| {
        if s.method == "POST" && s.uri.starts_with("/api/v1/namespaces?") {
            return Some((
                409,
                status(
                    409,
                    "AlreadyExists",
                    "namespaces \"claude-bottle-claude-k3x9a\" already exists",
                ),
            ));
        }
        happy(s)
    });
    let e = c
        .start(bundle(), Duration::from_secs(5), &mut |_| {})
        .await
        .expect_err("conflict");
    assert!(matches!(e, KubeError::Conflict { .. }), "{e:?}");
    assert!(
        e.to_string().contains("launcher stop --target kubernetes"),
        "{e}"
    );
    // Nothing else was created.
    assert_eq!(log.lock().expect("log").len(), 1);
}

#[tokio::test]
async fn sidecars_never_ready_time_out_and_the_agent_is_not_created() {
    let (c, log) = cluster(|s| {
        if s.method == "GET" && s.uri.contains("/pods/") {
            let name = s.uri.rsplit('/').next().unwrap_or_default();
            return Some((200, pending_pod(name)));
        }
        happy(s)
    });
    let e = c
        .start(bundle(), Duration::from_millis(300), &mut |_| {})
        .await
        .expect_err("timeout");
    assert!(matches!(e, KubeError::Timeout { .. }), "{e:?}");
    assert!(e.to_string().contains("phase Pending"), "{e}");
    assert!(!log.lock().expect("log").iter().any(|s| s.method == "POST"
        && s.body.contains("\"name\":\"agent\"")
        && s.uri.contains("/pods")));
}

#[tokio::test]
async fn an_api_server_that_never_answers_times_out() {
    let (c, _) = cluster(|s| {
        if s.method == "GET" && s.uri.contains("/pods/") {
            return None;
        }
        happy(s)
    });
    let e = c
        .start(bundle(), Duration::from_millis(300), &mut |_| {})
        .await
        .expect_err("timeout");
    assert!(
        e.to_string().contains("no answer from the API server yet"),
        "{e}"
    );
}

#[tokio::test]
async fn image_pull_failure_is_reported_not_waited_out() {
    let (c, _) = cluster(|s| {
        if s.method == "GET" && s.uri.ends_with("/pods/egress") {
            return Some((
                200,
                serde_json::json!({
                    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "egress"},
                    "status": {"phase": "Pending", "containerStatuses": [{"name": "egress", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                      "state": {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}}}]}
                }),
            ));
        }
        happy(s)
    });
    let e = c
        .start(bundle(), Duration::from_secs(30), &mut |_| {})
        .await
        .expect_err("failed");
    assert!(e.to_string().contains("ImagePullBackOff"), "{e}");
}

#[tokio::test]
async fn stop_deletes_the_labelled_namespace() {
    let (c, log) = cluster(|s| match s.method.as_str() {
        "GET" => Some((
            200,
            serde_json::json!({"apiVersion": "v1", "kind": "NamespaceList", "metadata": {},
            "items": [{"metadata": {"name": NS}}]}),
        )),
        "DELETE" => Some((
            200,
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
        )),
        _ => None,
    });
    assert_eq!(
        c.stop("claude-k3x9a").await.expect("stop"),
        vec![NS.to_owned()]
    );
    let log = log.lock().expect("log").clone();
    assert!(log[0].uri.contains("labelSelector=dev.claude-bottle.managed%3Dtrue%2Cdev.claude-bottle.identity%3Dclaude-k3x9a"), "{}", log[0].uri);
    assert_eq!(log[1].method, "DELETE");
    assert!(log[1].uri.starts_with(&format!("/api/v1/namespaces/{NS}")));

    let (c, _) = cluster(|_| {
        Some((
            200,
            serde_json::json!({"apiVersion": "v1", "kind": "NamespaceList", "metadata": {}, "items": []}),
        ))
    });
    let e = c.stop("claude-zzzzz").await.expect_err("none");
    assert!(e.to_string().contains("no bottle claude-zzzzz"), "{e}");

    let (c, _) = cluster(|_| Some((403, status(403, "Forbidden", "cannot list namespaces"))));
    let e = c.stop("claude-zzzzz").await.expect_err("forbidden");
    assert!(
        e.to_string()
            .contains("`list` on `namespaces` cluster-wide"),
        "{e}"
    );
}

#[test]
fn preflight_states_the_cni_caveat() {
    let line = ClusterInfo {
        context: "kind-bottles".into(),
        server: "https://127.0.0.1:6443/".into(),
    }
    .preflight(NS);
    assert!(line.contains("context kind-bottles"));
    assert!(line.contains("NetworkPolicy is enforced only if the cluster's CNI does"));
}

#[test]
fn cni_hint_names_enforcing_and_ignoring_cnis() {
    let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert!(matches!(
        CniHint::from_pods(&names(&["coredns-1", "kindnet-abcde", "calico-node-x1"])),
        CniHint::Enforcing(p) if p == "calico-node-x1"
    ));
    let h = CniHint::from_pods(&names(&["coredns-1", "kindnet-abcde"]));
    assert!(matches!(h, CniHint::NotEnforcing(_)));
    assert!(
        h.line().contains("NetworkPolicy is NOT enforced"),
        "{}",
        h.line()
    );
    assert!(matches!(
        CniHint::from_pods(&names(&["coredns-1"])),
        CniHint::Unknown(_)
    ));
}

#[tokio::test]
async fn cni_hint_from_the_api_and_when_listing_is_forbidden() {
    let (c, log) = cluster(|_| {
        Some((
            200,
            serde_json::json!({"apiVersion": "v1", "kind": "PodList", "metadata": {},
        "items": [{"metadata": {"name": "cilium-7xk2p"}}]}),
        ))
    });
    assert_eq!(
        c.cni_hint().await,
        CniHint::Enforcing("cilium-7xk2p".into())
    );
    assert!(
        log.lock().expect("log")[0]
            .uri
            .starts_with("/api/v1/namespaces/kube-system/pods")
    );
    let (c, _) = cluster(|_| Some((403, status(403, "Forbidden", "cannot list pods"))));
    let CniHint::Unknown(why) = c.cni_hint().await else {
        panic!("not unknown")
    };
    assert!(why.contains("`list` on `pods`"), "{why}");
}

#[tokio::test]
async fn bottles_are_the_labelled_namespaces_with_their_identity() {
    let (c, log) = cluster(|_| {
        Some((
            200,
            serde_json::json!({"apiVersion": "v1", "kind": "NamespaceList", "metadata": {},
            "items": [
                {"metadata": {"name": "team-a", "labels": {"dev.claude-bottle.identity": "dev-b2c3d"}}},
                {"metadata": {"name": NS, "labels": {"dev.claude-bottle.identity": "claude-k3x9a"}}},
                {"metadata": {"name": "unlabelled"}}
            ]}),
        ))
    });
    assert_eq!(
        c.bottles().await.expect("bottles"),
        vec![
            ("claude-k3x9a".to_owned(), NS.to_owned()),
            ("dev-b2c3d".to_owned(), "team-a".to_owned())
        ]
    );
    let log = log.lock().expect("log").clone();
    assert!(
        log[0]
            .uri
            .contains("labelSelector=dev.claude-bottle.managed%3Dtrue"),
        "{}",
        log[0].uri
    );
}

#[test]
fn supervise_queue_defaults_to_where_the_plan_mounts_the_queue() {
    // `supervise queue …` run by exec finds the queue without --queue.
    assert_eq!(
        bottle_queue::cli::CONTAINER_QUEUE,
        crate::engine::kubernetes::SUPERVISE_QUEUE
    );
}
