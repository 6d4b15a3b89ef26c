//! The cluster side: create a rendered [`Bundle`], wait for it, delete it.
//!
//! Is: `start` (objects created in order; the sidecar Services' ClusterIPs
//! read back into the Pods' host aliases; sidecars Ready within a timeout,
//! then the agent), `stop` (the bottle's namespace, found by label),
//! `bottles` (the labelled namespaces, for the approval commands), and
//! errors that name the verb, the resource and the RBAC the operator
//! needs ([`KubeError`]).
//!
//! Is not: rendering ([`super::render`]), `exec` ([`super::exec`]) or the
//! approval loop (`crate::approvals::apply::kubernetes`,
//! `crate::approvals::queue::kubernetes`).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::render::{Bundle, Object};
use super::{Component, LABEL_IDENTITY, LABEL_MANAGED};

/// The field manager recorded on every object the launcher writes.
pub const FIELD_MANAGER: &str = "claude-bottle-launcher";
/// How long `start` waits for the sidecars, then for the agent.
pub const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// What went wrong talking to the cluster.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// No kubeconfig / in-cluster config.
    #[error(
        "no Kubernetes cluster to talk to: {0}. Set KUBECONFIG or a current context (`kubectl config current-context`)"
    )]
    Config(String),
    /// RBAC refused a request.
    #[error(
        "the cluster refused to {verb} {resource}{ns}: {message}. The operator's account needs RBAC `{verb}` on `{resource}`{scope} (see docs/kubernetes.md, \"RBAC\")"
    )]
    Forbidden {
        /// The verb (create, get, patch, delete, list).
        verb: &'static str,
        /// The resource (plural, e.g. `pods`, `pods/exec`).
        resource: String,
        /// ` in namespace X` or empty.
        ns: String,
        /// ` in the bottle's namespace` or ` cluster-wide`.
        scope: String,
        /// The API server's message.
        message: String,
    },
    /// The object exists already.
    #[error(
        "{kind} {name}{ns} already exists: {message}. Another bottle with this identity, or a leftover of one; remove it with `launcher stop --target kubernetes <identity>`"
    )]
    Conflict {
        /// Kind.
        kind: String,
        /// Name.
        name: String,
        /// ` in namespace X` or empty.
        ns: String,
        /// The API server's message.
        message: String,
    },
    /// Something did not happen in time.
    #[error("{what} not within {secs} s ({last})")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The timeout.
        secs: u64,
        /// The last thing seen.
        last: String,
    },
    /// A Pod failed before it was Ready.
    #[error(
        "pod {pod} in namespace {ns} failed to start: {reason}. See `kubectl -n {ns} describe pod {pod}`"
    )]
    PodFailed {
        /// Namespace.
        ns: String,
        /// Pod.
        pod: String,
        /// Why.
        reason: String,
    },
    /// No bottle with this identity on the cluster.
    #[error(
        "no bottle {0} on this cluster (no namespace labelled {LABEL_IDENTITY}={0}); see `kubectl get ns -l {LABEL_MANAGED}=true`"
    )]
    NotFound(String),
    /// Any other API error.
    #[error("{verb} {resource}{ns}: {message}")]
    Api {
        /// Verb.
        verb: &'static str,
        /// Resource.
        resource: String,
        /// Namespace note.
        ns: String,
        /// Message.
        message: String,
    },
}

/// Maps a kube error for `verb` on `resource` (named `name`, in `ns`).
pub fn classify(
    e: kube::Error,
    verb: &'static str,
    resource: &str,
    name: &str,
    ns: Option<&str>,
) -> KubeError {
    let ns_note = ns.map(|n| format!(" in namespace {n}")).unwrap_or_default();
    match e {
        kube::Error::Api(s) if s.code == 403 => KubeError::Forbidden {
            verb,
            resource: resource.to_owned(),
            ns: ns_note,
            scope: if ns.is_some() {
                " in the bottle's namespace".into()
            } else {
                " cluster-wide".into()
            },
            message: s.message.clone(),
        },
        kube::Error::Api(s) if s.code == 409 => KubeError::Conflict {
            kind: resource.to_owned(),
            name: name.to_owned(),
            ns: ns_note,
            message: s.message.clone(),
        },
        other => KubeError::Api {
            verb,
            resource: resource.to_owned(),
            ns: ns_note,
            message: other.to_string(),
        },
    }
}

/// A connection to the cluster of the current kubeconfig context.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
    /// How often readiness is polled.
    pub poll: Duration,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").finish_non_exhaustive()
    }
}

/// What the preflight says about the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterInfo {
    /// The kubeconfig context (or `in-cluster`).
    pub context: String,
    /// The API server URL.
    pub server: String,
}

impl ClusterInfo {
    /// The preflight line for `--target kubernetes`.
    pub fn preflight(&self, namespace: &str) -> String {
        format!(
            "kubernetes: context {}, server {}, namespace {namespace} (created, one per bottle). NetworkPolicy is enforced only if the cluster's CNI does (Calico, Cilium, …; kindnet/flannel alone do not): without it the agent is NOT confined to its sidecars",
            self.context, self.server
        )
    }
}

/// What the Pods in `kube-system` suggest about NetworkPolicy enforcement
/// (a hint for the preflight, not a proof: only the procedure in
/// docs/kubernetes.md proves it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CniHint {
    /// A CNI that enforces NetworkPolicy runs (its Pod name).
    Enforcing(String),
    /// Only a CNI that ignores NetworkPolicy was seen.
    NotEnforcing(String),
    /// Nothing recognised, or kube-system could not be listed.
    Unknown(String),
}

impl CniHint {
    /// From the names of the Pods in `kube-system`.
    pub fn from_pods(names: &[String]) -> Self {
        const ENFORCING: &[&str] = &[
            "calico-node",
            "canal",
            "cilium",
            "antrea-agent",
            "kube-router",
            "weave-net",
        ];
        const IGNORING: &[&str] = &["kindnet", "kube-flannel", "flannel"];
        if let Some(n) = names
            .iter()
            .find(|n| ENFORCING.iter().any(|e| n.starts_with(e)))
        {
            return Self::Enforcing(n.clone());
        }
        if let Some(n) = names
            .iter()
            .find(|n| IGNORING.iter().any(|e| n.starts_with(e)))
        {
            return Self::NotEnforcing(n.clone());
        }
        Self::Unknown("no known CNI Pod in kube-system".into())
    }

    /// The preflight line.
    pub fn line(&self) -> String {
        match self {
            Self::Enforcing(p) => format!(
                "CNI: {p} runs in kube-system (a CNI that enforces NetworkPolicy); prove it once with the procedure in docs/kubernetes.md"
            ),
            Self::NotEnforcing(p) => format!(
                "WARNING: CNI {p} runs in kube-system and no policy-enforcing CNI was found: NetworkPolicy is NOT enforced, the agent would reach the network directly. Install Calico or Cilium (docs/kubernetes.md)"
            ),
            Self::Unknown(why) => format!(
                "CNI: unknown ({why}); NetworkPolicy enforcement unchecked (k3s enforces it in-process; see docs/kubernetes.md)"
            ),
        }
    }
}

impl Cluster {
    /// What kube-system's Pods suggest about NetworkPolicy enforcement.
    pub async fn cni_hint(&self) -> CniHint {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), "kube-system");
        match api.list(&ListParams::default()).await {
            Ok(list) => CniHint::from_pods(
                &list
                    .items
                    .into_iter()
                    .filter_map(|p| p.metadata.name)
                    .collect::<Vec<_>>(),
            ),
            Err(e) => CniHint::Unknown(
                classify(e, "list", "pods", "kube-system", Some("kube-system")).to_string(),
            ),
        }
    }

    /// The cluster of the current kubeconfig context (or in-cluster).
    pub async fn connect() -> Result<(Self, ClusterInfo), KubeError> {
        let kubeconfig = kube::config::Kubeconfig::read().ok();
        let context = kubeconfig
            .as_ref()
            .and_then(|k| k.current_context.clone())
            .unwrap_or_else(|| "in-cluster".into());
        let config = kube::Config::infer()
            .await
            .map_err(|e| KubeError::Config(e.to_string()))?;
        let server = config.cluster_url.to_string();
        let client =
            kube::Client::try_from(config).map_err(|e| KubeError::Config(e.to_string()))?;
        Ok((Self::new(client), ClusterInfo { context, server }))
    }

    /// Over an existing client (tests pass a mock service).
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            poll: Duration::from_secs(1),
        }
    }

    /// The client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    async fn create<K>(&self, ns: Option<&str>, resource: &str, obj: &K) -> Result<K, KubeError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Serialize
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let name = obj.meta().name.clone().unwrap_or_default();
        let ns_name = ns.unwrap_or_default();
        let api: Api<K> = Api::namespaced(self.client.clone(), ns_name);
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        api.create(&pp, obj)
            .await
            .map_err(|e| classify(e, "create", resource, &name, ns))
    }

    /// Creates every object of `bundle` and waits: sidecars Ready, then
    /// the agent Ready, each within `timeout`. On failure the namespace is
    /// left for inspection (`stop` removes it).
    pub async fn start(
        &self,
        mut bundle: Bundle,
        timeout: Duration,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Bundle, KubeError> {
        let ns = bundle.namespace.clone();
        let ns = ns.as_str();
        let mut pods = Vec::new();
        for o in &bundle.objects {
            match o {
                Object::Namespace(n) => {
                    let api: Api<Namespace> = Api::all(self.client.clone());
                    let pp = PostParams {
                        field_manager: Some(FIELD_MANAGER.into()),
                        ..PostParams::default()
                    };
                    api.create(&pp, n)
                        .await
                        .map_err(|e| classify(e, "create", "namespaces", ns, None))?;
                }
                Object::ServiceAccount(x) => {
                    self.create::<ServiceAccount>(Some(ns), "serviceaccounts", x)
                        .await?;
                }
                Object::NetworkPolicy(x) => {
                    self.create::<NetworkPolicy>(Some(ns), "networkpolicies", x)
                        .await?;
                }
                Object::ConfigMap(x) => {
                    self.create::<ConfigMap>(Some(ns), "configmaps", x).await?;
                }
                Object::Secret(x) => {
                    self.create::<Secret>(Some(ns), "secrets", x).await?;
                }
                Object::PersistentVolumeClaim(x) => {
                    self.create::<PersistentVolumeClaim>(Some(ns), "persistentvolumeclaims", x)
                        .await?;
                }
                Object::Service(x) => {
                    self.create::<Service>(Some(ns), "services", x).await?;
                }
                Object::Pod(p) => {
                    pods.push(p.clone());
                    continue;
                }
            }
            progress(&format!("created {} {}", o.kind(), o.name()));
        }
        // The Services exist: their ClusterIPs become the host aliases of
        // the Pods that use sidecar names.
        let services: Api<Service> = Api::namespaced(self.client.clone(), ns);
        let mut ips = BTreeMap::new();
        for c in [Component::Egress, Component::GitGate, Component::Supervise] {
            if !bundle.objects.iter().any(|o| matches!(o, Object::Service(s) if s.metadata.name.as_deref() == Some(c.as_str()))) {
                continue;
            }
            let s = services
                .get(c.as_str())
                .await
                .map_err(|e| classify(e, "get", "services", c.as_str(), Some(ns)))?;
            if let Some(ip) = s.spec.and_then(|s| s.cluster_ip).filter(|ip| ip != "None") {
                ips.insert(c, ip);
            }
        }
        bundle.set_service_ips(&ips);
        let (agent, sidecars): (Vec<String>, Vec<String>) = pods
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .partition(|n| n == Component::Agent.as_str());
        for name in &sidecars {
            if let Some(p) = bundle.pod(component_of(name)) {
                self.create::<Pod>(Some(ns), "pods", p).await?;
                progress(&format!("created Pod {name}"));
            }
        }
        self.wait_ready(ns, &sidecars, timeout, progress).await?;
        if let Some(p) = bundle.pod(Component::Agent) {
            self.create::<Pod>(Some(ns), "pods", p).await?;
            progress("created Pod agent");
            self.wait_ready(ns, &agent, timeout, progress).await?;
        }
        Ok(bundle)
    }

    /// Waits until every Pod in `names` reports the Ready condition.
    pub async fn wait_ready(
        &self,
        ns: &str,
        names: &[String],
        timeout: Duration,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(), KubeError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let mut last = String::from("no answer from the API server yet");
        let what = format!("pods {} Ready in namespace {ns}", names.join(", "));
        let waited = tokio::time::timeout(timeout, async {
            let mut pending: Vec<String> = names.to_vec();
            while !pending.is_empty() {
                let mut still = Vec::new();
                for name in &pending {
                    let p = api
                        .get(name)
                        .await
                        .map_err(|e| classify(e, "get", "pods", name, Some(ns)))?;
                    match pod_state(&p) {
                        PodState::Ready => progress(&format!("pod {name} is ready")),
                        PodState::Failed(reason) => {
                            return Err(KubeError::PodFailed {
                                ns: ns.to_owned(),
                                pod: name.clone(),
                                reason,
                            });
                        }
                        PodState::Waiting(why) => {
                            last = format!("{name}: {why}");
                            still.push(name.clone());
                        }
                    }
                }
                pending = still;
                if !pending.is_empty() {
                    tokio::time::sleep(self.poll).await;
                }
            }
            Ok(())
        })
        .await;
        match waited {
            Ok(r) => r,
            Err(_) => Err(KubeError::Timeout {
                what,
                secs: timeout.as_secs(),
                last,
            }),
        }
    }

    /// The bottles on the cluster: `(identity, namespace)` of every
    /// namespace labelled as a bottle's, sorted.
    pub async fn bottles(&self) -> Result<Vec<(String, String)>, KubeError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let lp = ListParams::default().labels(&format!("{LABEL_MANAGED}=true"));
        let list = api
            .list(&lp)
            .await
            .map_err(|e| classify(e, "list", "namespaces", "", None))?;
        let mut out: Vec<(String, String)> = list
            .items
            .into_iter()
            .filter_map(|n| {
                let id = n.metadata.labels.as_ref()?.get(LABEL_IDENTITY)?.clone();
                Some((id, n.metadata.name?))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Deletes the namespace of bottle `identity` (found by its labels),
    /// which deletes everything in it. Returns the namespaces deleted.
    pub async fn stop(&self, identity: &str) -> Result<Vec<String>, KubeError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let lp = ListParams::default()
            .labels(&format!("{LABEL_MANAGED}=true,{LABEL_IDENTITY}={identity}"));
        let list = api
            .list(&lp)
            .await
            .map_err(|e| classify(e, "list", "namespaces", identity, None))?;
        let names: Vec<String> = list
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect();
        if names.is_empty() {
            return Err(KubeError::NotFound(identity.to_owned()));
        }
        for n in &names {
            match api.delete(n, &DeleteParams::default()).await {
                Ok(_) => {}
                // Already going away.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(classify(e, "delete", "namespaces", n, None)),
            }
        }
        Ok(names)
    }
}

fn component_of(pod: &str) -> Component {
    Component::parse(pod).unwrap_or(Component::Agent)
}

/// Where a Pod is on its way to Ready.
#[derive(Debug, PartialEq, Eq)]
pub enum PodState {
    /// Ready.
    Ready,
    /// Not yet, and why.
    Waiting(String),
    /// Will not become ready by waiting.
    Failed(String),
}

/// Reads a Pod's status.
pub fn pod_state(p: &Pod) -> PodState {
    let Some(status) = &p.status else {
        return PodState::Waiting("no status yet".into());
    };
    if status.phase.as_deref() == Some("Failed") {
        return PodState::Failed(
            status
                .message
                .clone()
                .unwrap_or_else(|| "phase Failed".into()),
        );
    }
    let statuses = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for c in statuses {
        if let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.clone().unwrap_or_default();
            if matches!(
                reason.as_str(),
                "ErrImagePull"
                    | "ImagePullBackOff"
                    | "CrashLoopBackOff"
                    | "CreateContainerConfigError"
                    | "InvalidImageName"
            ) {
                return PodState::Failed(format!(
                    "container {}: {reason}{}",
                    c.name,
                    w.message
                        .as_deref()
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default()
                ));
            }
        }
    }
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if ready {
        PodState::Ready
    } else {
        PodState::Waiting(format!(
            "phase {}",
            status.phase.as_deref().unwrap_or("unknown")
        ))
    }
}

#[cfg(test)]
mod tests;
