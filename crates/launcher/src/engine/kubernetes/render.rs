//! The bottle as Kubernetes objects: a pure function of the [`Plan`] the
//! Docker engine executes and [`RenderOptions`].
//!
//! Is: one namespace per bottle (Pod Security Admission `restricted`
//! enforced), one service account without a token, NetworkPolicies
//! (default deny, the agent to its sidecars' ports only, internet egress
//! for egress and git-gate only), ConfigMaps for routes, remotes and
//! files, Secrets for the CA key and tokens (keys only: values are filled
//! by `start`, never rendered), a PersistentVolumeClaim for supervise's
//! queue, Services for the sidecars, Pods for the sidecars and the agent.
//! The typed `k8s-openapi` structs keep each object well-formed.
//!
//! Is not: I/O. The CA, tokens and ClusterIPs come in later through
//! [`Bundle::fill_secret`] and [`Bundle::set_service_ips`].

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapProjection, ConfigMapVolumeSource, Container,
    EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction, HostAlias, KeyToPath, Namespace,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, Pod,
    PodDNSConfig, PodDNSConfigOption, PodSecurityContext, PodSpec, Probe, ProjectedVolumeSource,
    ResourceRequirements, SeccompProfile, Secret, SecretKeySelector, SecretProjection,
    SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
    VolumeProjection, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    AGENT_HOME, AGENT_UID, Component, ContainerPlan, DNS_SINK, EGRESS_PORT, EGRESS_ROUTES_PATH,
    EGRESS_TOKENS_DIR, FileSource, GIT_GATE_PORT, LABEL_COMPONENT, LABEL_IDENTITY, LABEL_MANAGED,
    Plan, SIDECAR_UID, SUPERVISE_PORT, SUPERVISE_QUEUE,
};

/// The service account every Pod of the bottle runs as (no token mounted).
pub const SERVICE_ACCOUNT: &str = "bottle";
/// The ConfigMap holding the bottle CA certificate (public; filled at start).
pub const CA_CONFIGMAP: &str = "bottle-ca";
/// The Secret holding the bottle CA certificate and key (egress only).
pub const CA_SECRET: &str = "egress-ca";
/// The Secret egress-proxy reads token files from (`--tokens-dir`).
pub const EGRESS_TOKENS_SECRET: &str = "egress-tokens";
/// The Secret git-gate's token variables come from.
pub const GIT_GATE_TOKENS_SECRET: &str = "git-gate-tokens";
/// egress-proxy's files (routes, upstream CA): the routes ConfigMap.
pub const EGRESS_CONFIGMAP: &str = "egress-files";
/// The key of the routes file in [`EGRESS_CONFIGMAP`].
pub const ROUTES_KEY: &str = "routes.yaml";
/// How often egress-proxy checks its mounted routes file
/// (`--watch-routes`): ConfigMap updates arrive without a signal.
pub const WATCH_ROUTES_SECONDS: u64 = 2;
/// supervise's queue, reached by the launcher through `exec` into
/// supervise (docs/decisions.md).
pub const QUEUE_CLAIM: &str = "supervise-queue";
/// Size requested for the queue.
pub const QUEUE_SIZE: &str = "256Mi";
/// Annotation on Secrets: where their values come from.
pub const ANNOTATION_VALUES: &str = "dev.claude-bottle/values";
/// The key of the bottle CA certificate.
pub const CA_CERT_KEY: &str = "ca.crt";
/// The key of the bottle CA key.
pub const CA_KEY_KEY: &str = "ca.key";
/// Labels Pod Security Admission reads on the namespace.
const PSA_LABELS: &[(&str, &str)] = &[
    ("pod-security.kubernetes.io/enforce", "restricted"),
    ("pod-security.kubernetes.io/enforce-version", "latest"),
];
/// Addresses sidecars never reach directly: RFC 1918, loopback,
/// link-local (cloud metadata), CGNAT, and their IPv6 counterparts.
pub const PRIVATE_V4: &[&str] = &[
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "100.64.0.0/10",
];
/// IPv6 ranges sidecars never reach directly (ULA, link-local, loopback).
pub const PRIVATE_V6: &[&str] = &["fc00::/7", "fe80::/10", "::1/128"];
/// Labels a `launcher` running on a Docker host adds that mean nothing in
/// a cluster.
const DOCKER_ONLY_LABELS: &[&str] = &["dev.claude-bottle.launcher-pid"];

/// Why the plan cannot be rendered for Kubernetes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    /// The plan asks for something the Kubernetes engine does not do yet.
    #[error("{what} is not supported with --target kubernetes yet; {remedy}")]
    Unsupported {
        /// What.
        what: String,
        /// What the operator can do.
        remedy: String,
    },
    /// A namespace name the API server would refuse.
    #[error(
        "namespace {0:?} is not a valid Kubernetes name; expected at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit"
    )]
    Namespace(String),
    /// A `--service-ip` that is not an address.
    #[error(
        "--service-ip {0:?}: expected COMPONENT=IP with COMPONENT one of egress, git-gate, supervise, e.g. egress=10.96.200.10"
    )]
    ServiceIp(String),
    /// YAML serialization failed (a bug).
    #[error("rendering {kind} {name} as YAML: {reason}")]
    Yaml {
        /// Kind.
        kind: &'static str,
        /// Name.
        name: String,
        /// Why.
        reason: String,
    },
}

/// Everything besides the plan the objects depend on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// The bottle's namespace (default `claude-bottle-<identity>`).
    pub namespace: Option<String>,
    /// ClusterIPs to pin on the sidecar Services (GitOps: the agent's
    /// host aliases are then complete in the rendered YAML). Empty: the
    /// API server assigns them and `start` fills the host aliases.
    pub service_ips: BTreeMap<Component, String>,
    /// The cluster's pod and service CIDRs, excluded from the sidecars'
    /// internet egress besides the private ranges.
    pub cluster_cidrs: Vec<String>,
}

/// Parses `--service-ip COMPONENT=IP`.
pub fn parse_service_ip(s: &str) -> Result<(Component, String), RenderError> {
    let bad = || RenderError::ServiceIp(s.to_owned());
    let (c, ip) = s.split_once('=').ok_or_else(bad)?;
    let c = Component::parse(c).map_err(|_| bad())?;
    if !matches!(
        c,
        Component::Egress | Component::GitGate | Component::Supervise
    ) || ip.parse::<std::net::IpAddr>().is_err()
    {
        return Err(bad());
    }
    Ok((c, ip.to_owned()))
}

/// One object of the bottle, in apply order.
// About twenty per bottle, built once: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    /// The bottle's namespace.
    Namespace(Namespace),
    /// The Pods' service account.
    ServiceAccount(ServiceAccount),
    /// A NetworkPolicy.
    NetworkPolicy(NetworkPolicy),
    /// A ConfigMap.
    ConfigMap(ConfigMap),
    /// A Secret (values filled by `start` only).
    Secret(Secret),
    /// supervise's queue.
    PersistentVolumeClaim(PersistentVolumeClaim),
    /// A sidecar Service.
    Service(Service),
    /// A Pod.
    Pod(Pod),
}

impl Object {
    /// The object's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Namespace(_) => "Namespace",
            Self::ServiceAccount(_) => "ServiceAccount",
            Self::NetworkPolicy(_) => "NetworkPolicy",
            Self::ConfigMap(_) => "ConfigMap",
            Self::Secret(_) => "Secret",
            Self::PersistentVolumeClaim(_) => "PersistentVolumeClaim",
            Self::Service(_) => "Service",
            Self::Pod(_) => "Pod",
        }
    }

    /// The object's metadata.
    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Self::Namespace(o) => &o.metadata,
            Self::ServiceAccount(o) => &o.metadata,
            Self::NetworkPolicy(o) => &o.metadata,
            Self::ConfigMap(o) => &o.metadata,
            Self::Secret(o) => &o.metadata,
            Self::PersistentVolumeClaim(o) => &o.metadata,
            Self::Service(o) => &o.metadata,
            Self::Pod(o) => &o.metadata,
        }
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        self.meta().name.as_deref().unwrap_or_default()
    }

    fn yaml(&self) -> Result<String, serde_saphyr::ser::Error> {
        match self {
            Self::Namespace(o) => serde_saphyr::to_string(o),
            Self::ServiceAccount(o) => serde_saphyr::to_string(o),
            Self::NetworkPolicy(o) => serde_saphyr::to_string(o),
            Self::ConfigMap(o) => serde_saphyr::to_string(o),
            Self::Secret(o) => serde_saphyr::to_string(o),
            Self::PersistentVolumeClaim(o) => serde_saphyr::to_string(o),
            Self::Service(o) => serde_saphyr::to_string(o),
            Self::Pod(o) => serde_saphyr::to_string(o),
        }
    }
}

/// All objects of one bottle.
#[derive(Clone, Debug, PartialEq)]
pub struct Bundle {
    /// The namespace everything lives in.
    pub namespace: String,
    /// The objects, in apply order (the namespace first, the agent last).
    pub objects: Vec<Object>,
}

impl Bundle {
    /// Sets `key` of Secret `name` (or of the CA ConfigMap, for the public
    /// certificate). Returns whether the object exists.
    pub fn fill_secret(&mut self, name: &str, key: &str, value: &[u8]) -> bool {
        for o in &mut self.objects {
            match o {
                Object::Secret(s) if s.metadata.name.as_deref() == Some(name) => {
                    s.data
                        .get_or_insert_with(BTreeMap::new)
                        .insert(key.to_owned(), ByteString(value.to_vec()));
                    return true;
                }
                Object::ConfigMap(c) if c.metadata.name.as_deref() == Some(name) => {
                    c.data
                        .get_or_insert_with(BTreeMap::new)
                        .insert(key.to_owned(), String::from_utf8_lossy(value).into_owned());
                    return true;
                }
                _ => {}
            }
        }
        false
    }

    /// The keys of Secret `name` (the token slots it holds).
    pub fn secret_keys(&self, name: &str) -> Vec<String> {
        self.objects
            .iter()
            .find_map(|o| match o {
                Object::Secret(s) if s.metadata.name.as_deref() == Some(name) => {
                    Some(s.data.iter().flatten().map(|(k, _)| k.clone()).collect())
                }
                _ => None,
            })
            .unwrap_or_default()
    }

    /// Gives the Pods that use sidecar names (the agent, supervise) host
    /// aliases for the Services' ClusterIPs, once known.
    pub fn set_service_ips(&mut self, ips: &BTreeMap<Component, String>) {
        for o in &mut self.objects {
            let Object::Pod(p) = o else { continue };
            let component = p
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_COMPONENT))
                .and_then(|c| Component::parse(c).ok());
            let wanted: &[Component] = match component {
                Some(Component::Agent) => {
                    &[Component::Egress, Component::GitGate, Component::Supervise]
                }
                Some(Component::Supervise) => &[Component::Egress],
                _ => continue,
            };
            let Some(spec) = p.spec.as_mut() else {
                continue;
            };
            let aliases: Vec<HostAlias> = wanted
                .iter()
                .filter_map(|c| {
                    ips.get(c).map(|ip| HostAlias {
                        ip: ip.clone(),
                        hostnames: Some(vec![c.as_str().to_owned()]),
                    })
                })
                .collect();
            spec.host_aliases = (!aliases.is_empty()).then_some(aliases);
        }
    }

    /// The Pod of `component`.
    pub fn pod(&self, component: Component) -> Option<&Pod> {
        self.objects.iter().find_map(|o| match o {
            Object::Pod(p) if p.metadata.name.as_deref() == Some(component.as_str()) => Some(p),
            _ => None,
        })
    }

    /// All objects as multi-document YAML, with a comment above the ones
    /// `start` completes. Secrets carry their keys only.
    pub fn to_yaml(&self) -> Result<String, RenderError> {
        let mut out = String::new();
        for o in &self.objects {
            out.push_str("---\n");
            match o {
                Object::Secret(_) => out.push_str(
                    "# Values are filled in by `launcher start --target kubernetes` from the operator's environment and the minted bottle CA; render never prints them.\n",
                ),
                Object::ConfigMap(c) if c.metadata.name.as_deref() == Some(CA_CONFIGMAP) => out.push_str(
                    "# The bottle CA certificate is minted by `launcher start --target kubernetes`.\n",
                ),
                Object::Pod(p)
                    if p.spec.as_ref().is_some_and(|s| {
                        s.dns_policy.as_deref() == Some("None") && s.host_aliases.is_none()
                    }) =>
                {
                    out.push_str(
                        "# hostAliases for the sidecar Services are filled in by `launcher start --target kubernetes` once the API server assigned their ClusterIPs (pin them with --service-ip to render them here).\n",
                    );
                }
                _ => {}
            }
            let mut text = o.yaml().map_err(|e| RenderError::Yaml {
                kind: o.kind(),
                name: o.name().to_owned(),
                reason: e.to_string(),
            })?;
            if !text.ends_with('\n') {
                text.push('\n');
            }
            out.push_str(&text);
        }
        Ok(out)
    }
}

/// The default namespace of a bottle.
pub fn default_namespace(plan: &Plan) -> String {
    format!("claude-bottle-{}", plan.identity.as_str())
}

fn valid_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Builds the objects of `plan`.
pub fn render(plan: &Plan, opts: &RenderOptions) -> Result<Bundle, RenderError> {
    if plan.container(Component::Pipelock).is_some() {
        return Err(RenderError::Unsupported {
            what: "bottle.pipelock".into(),
            remedy: "set `pipelock: false` for this agent (egress-proxy's own DLP scanning stays on), or run it on Docker".into(),
        });
    }
    if plan.cwd.is_some() {
        return Err(RenderError::Unsupported {
            what: "--cwd (a host directory as the workspace)".into(),
            remedy:
                "leave --cwd out: the agent's work leaves the cluster by git push through git-gate"
                    .into(),
        });
    }
    let namespace = opts
        .namespace
        .clone()
        .unwrap_or_else(|| default_namespace(plan));
    if !valid_dns_label(&namespace) {
        return Err(RenderError::Namespace(namespace));
    }
    let r = Renderer {
        plan,
        namespace: &namespace,
    };
    let present: Vec<Component> = plan
        .containers
        .iter()
        .map(|c| c.component)
        .filter(|c| *c != Component::Agent)
        .collect();

    let mut objects = vec![
        Object::Namespace(Namespace {
            metadata: ObjectMeta {
                name: Some(namespace.clone()),
                labels: Some({
                    let mut l = r.labels("namespace");
                    l.extend(
                        PSA_LABELS
                            .iter()
                            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
                    );
                    l
                }),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        }),
        Object::ServiceAccount(ServiceAccount {
            metadata: r.meta(SERVICE_ACCOUNT, "service-account"),
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        }),
    ];
    objects.extend(
        r.network_policies(&present, opts)
            .into_iter()
            .map(Object::NetworkPolicy),
    );

    let mut config_maps = vec![ConfigMap {
        metadata: r.meta(CA_CONFIGMAP, "ca"),
        data: Some(BTreeMap::from([(CA_CERT_KEY.to_owned(), String::new())])),
        ..ConfigMap::default()
    }];
    let mut secrets = Vec::new();
    let mut claims = Vec::new();
    let mut services = Vec::new();
    let mut pods = Vec::new();
    for c in &plan.containers {
        let mut built = r.pod(c)?;
        config_maps.append(&mut built.config_maps);
        secrets.append(&mut built.secrets);
        claims.append(&mut built.claims);
        if let Some(port) = service_port(c.component) {
            services.push(r.service(c.component, port, opts.service_ips.get(&c.component)));
        }
        pods.push(built.pod);
    }
    objects.extend(config_maps.into_iter().map(Object::ConfigMap));
    objects.extend(secrets.into_iter().map(Object::Secret));
    objects.extend(claims.into_iter().map(Object::PersistentVolumeClaim));
    objects.extend(services.into_iter().map(Object::Service));
    objects.extend(pods.into_iter().map(Object::Pod));
    let mut bundle = Bundle { namespace, objects };
    bundle.set_service_ips(&opts.service_ips);
    Ok(bundle)
}

/// The port a sidecar serves the agent on.
pub fn service_port(c: Component) -> Option<u16> {
    match c {
        Component::Egress => Some(EGRESS_PORT),
        Component::GitGate => Some(GIT_GATE_PORT),
        Component::Supervise => Some(SUPERVISE_PORT),
        Component::Pipelock | Component::Agent => None,
    }
}

/// Who may open connections to a sidecar.
fn clients(c: Component, present: &[Component]) -> Vec<Component> {
    let mut out = vec![Component::Agent];
    if c == Component::Egress && present.contains(&Component::Supervise) {
        // supervise asks egress for its status and allowlist.
        out.push(Component::Supervise);
    }
    out
}

struct Renderer<'a> {
    plan: &'a Plan,
    namespace: &'a str,
}

/// What one plan container becomes.
struct Built {
    pod: Pod,
    config_maps: Vec<ConfigMap>,
    secrets: Vec<Secret>,
    claims: Vec<PersistentVolumeClaim>,
}

impl Renderer<'_> {
    /// The bottle's labels for an object of `component`, with the
    /// operator's extra labels (from the plan's agent container).
    fn labels(&self, component: &str) -> BTreeMap<String, String> {
        let mut l = self.plan.identity.labels(&self.plan.agent, component);
        if let Some(agent) = self.plan.container(Component::Agent) {
            for (k, v) in &agent.labels {
                if !l.contains_key(k) && !k.starts_with("dev.claude-bottle.")
                    || k == "dev.claude-bottle.test-run"
                {
                    l.insert(k.clone(), v.clone());
                }
            }
        }
        l
    }

    fn meta(&self, name: &str, component: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(self.namespace.to_owned()),
            labels: Some(self.labels(component)),
            ..ObjectMeta::default()
        }
    }

    fn selector(&self, component: Option<Component>) -> LabelSelector {
        let mut m = BTreeMap::from([
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (
                LABEL_IDENTITY.to_owned(),
                self.plan.identity.as_str().to_owned(),
            ),
        ]);
        if let Some(c) = component {
            m.insert(LABEL_COMPONENT.to_owned(), c.as_str().to_owned());
        }
        LabelSelector {
            match_labels: Some(m),
            ..LabelSelector::default()
        }
    }

    fn policy(&self, name: &str, spec: NetworkPolicySpec) -> NetworkPolicy {
        NetworkPolicy {
            metadata: self.meta(name, "network-policy"),
            spec: Some(spec),
        }
    }

    fn network_policies(&self, present: &[Component], opts: &RenderOptions) -> Vec<NetworkPolicy> {
        let tcp = |port: u16| NetworkPolicyPort {
            port: Some(IntOrString::Int(i32::from(port))),
            protocol: Some("TCP".into()),
            ..NetworkPolicyPort::default()
        };
        let pods = |c: Component| NetworkPolicyPeer {
            pod_selector: Some(self.selector(Some(c))),
            ..NetworkPolicyPeer::default()
        };
        // Everything of the bottle: nothing in, nothing out, unless a
        // policy below allows it (policies add up).
        let mut out = vec![self.policy(
            "default-deny",
            NetworkPolicySpec {
                pod_selector: Some(self.selector(None)),
                policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
                ..NetworkPolicySpec::default()
            },
        )];
        // The agent reaches each sidecar's port, nothing else (no DNS:
        // its names are host aliases).
        let sidecars: Vec<(Component, u16)> = present
            .iter()
            .filter_map(|c| service_port(*c).map(|p| (*c, p)))
            .collect();
        out.push(
            self.policy(
                "agent-to-sidecars",
                NetworkPolicySpec {
                    pod_selector: Some(self.selector(Some(Component::Agent))),
                    policy_types: Some(vec!["Egress".into()]),
                    egress: Some(
                        sidecars
                            .iter()
                            .map(|(c, p)| NetworkPolicyEgressRule {
                                to: Some(vec![pods(*c)]),
                                ports: Some(vec![tcp(*p)]),
                            })
                            .collect(),
                    ),
                    ..NetworkPolicySpec::default()
                },
            ),
        );
        if present.contains(&Component::Supervise) {
            out.push(self.policy(
                "supervise-to-egress",
                NetworkPolicySpec {
                    pod_selector: Some(self.selector(Some(Component::Supervise))),
                    policy_types: Some(vec!["Egress".into()]),
                    egress: Some(vec![NetworkPolicyEgressRule {
                        to: Some(vec![pods(Component::Egress)]),
                        ports: Some(vec![tcp(EGRESS_PORT)]),
                    }]),
                    ..NetworkPolicySpec::default()
                },
            ));
        }
        // Each sidecar accepts its clients on its port only.
        for (c, p) in &sidecars {
            out.push(self.policy(
                &format!("{c}-ingress"),
                NetworkPolicySpec {
                    pod_selector: Some(self.selector(Some(*c))),
                    policy_types: Some(vec!["Ingress".into()]),
                    ingress: Some(vec![NetworkPolicyIngressRule {
                        from: Some(clients(*c, present).into_iter().map(pods).collect()),
                        ports: Some(vec![tcp(*p)]),
                    }]),
                    ..NetworkPolicySpec::default()
                },
            ));
        }
        // egress and git-gate reach the internet (not private, link-local
        // or cluster addresses) and the cluster DNS.
        let mut except_v4: Vec<String> = PRIVATE_V4.iter().map(|s| (*s).to_owned()).collect();
        let mut except_v6: Vec<String> = PRIVATE_V6.iter().map(|s| (*s).to_owned()).collect();
        for cidr in &opts.cluster_cidrs {
            if cidr.contains(':') {
                except_v6.push(cidr.clone());
            } else {
                except_v4.push(cidr.clone());
            }
        }
        let dns = NetworkPolicyEgressRule {
            to: Some(vec![NetworkPolicyPeer {
                namespace_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(
                        "kubernetes.io/metadata.name".to_owned(),
                        "kube-system".to_owned(),
                    )])),
                    ..LabelSelector::default()
                }),
                pod_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(
                        "k8s-app".to_owned(),
                        "kube-dns".to_owned(),
                    )])),
                    ..LabelSelector::default()
                }),
                ..NetworkPolicyPeer::default()
            }]),
            ports: Some(vec![
                NetworkPolicyPort {
                    port: Some(IntOrString::Int(53)),
                    protocol: Some("UDP".into()),
                    ..NetworkPolicyPort::default()
                },
                tcp(53),
            ]),
        };
        for c in present
            .iter()
            .filter(|c| matches!(c, Component::Egress | Component::GitGate))
        {
            out.push(self.policy(
                &format!("{c}-to-internet"),
                NetworkPolicySpec {
                    pod_selector: Some(self.selector(Some(*c))),
                    policy_types: Some(vec!["Egress".into()]),
                    egress: Some(vec![
                        NetworkPolicyEgressRule {
                            to: Some(vec![
                                NetworkPolicyPeer {
                                    ip_block: Some(IPBlock {
                                        cidr: "0.0.0.0/0".into(),
                                        except: Some(except_v4.clone()),
                                    }),
                                    ..NetworkPolicyPeer::default()
                                },
                                NetworkPolicyPeer {
                                    ip_block: Some(IPBlock {
                                        cidr: "::/0".into(),
                                        except: Some(except_v6.clone()),
                                    }),
                                    ..NetworkPolicyPeer::default()
                                },
                            ]),
                            ports: None,
                        },
                        dns.clone(),
                    ]),
                    ..NetworkPolicySpec::default()
                },
            ));
        }
        out
    }

    fn service(&self, c: Component, port: u16, ip: Option<&String>) -> Service {
        Service {
            metadata: self.meta(c.as_str(), &format!("service-{c}")),
            spec: Some(ServiceSpec {
                selector: self.selector(Some(c)).match_labels,
                cluster_ip: ip.cloned(),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: i32::from(port),
                    target_port: Some(IntOrString::Int(i32::from(port))),
                    protocol: Some("TCP".into()),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    fn pod(&self, c: &ContainerPlan) -> Result<Built, RenderError> {
        let (uid, gid) = parse_user(&c.user);
        let comp = c.component;
        let mut volumes: Vec<Volume> = Vec::new();
        let mut mounts: Vec<VolumeMount> = Vec::new();
        let mut config_maps = Vec::new();
        let mut secrets = Vec::new();
        let mut claims = Vec::new();
        let mut env: Vec<EnvVar> = c
            .env
            .iter()
            .map(|(k, v)| EnvVar {
                name: k.clone(),
                value: Some(v.clone()),
                ..EnvVar::default()
            })
            .collect();
        let mut init = Vec::new();

        // tmpfs → memory-backed emptyDir of the same size.
        for (i, (path, options)) in c.confinement.tmpfs.iter().enumerate() {
            let name = format!("tmp-{i}");
            volumes.push(Volume {
                name: name.clone(),
                empty_dir: Some(EmptyDirVolumeSource {
                    medium: Some("Memory".into()),
                    size_limit: tmpfs_size(options).map(Quantity),
                }),
                ..Volume::default()
            });
            mounts.push(mount(&name, path, false, None));
        }

        if comp == Component::Agent {
            self.agent_files(c, &mut volumes, &mut mounts, &mut config_maps, &mut init)?;
        } else {
            self.sidecar_files(c, &mut volumes, &mut mounts, &mut config_maps, &mut secrets)?;
        }

        // Named volumes the files did not cover: egress's tokens come from
        // their Secret; everything else is scratch (git-gate's data).
        for v in &c.volumes {
            if mounts.iter().any(|m| m.mount_path == v.target) {
                continue;
            }
            if v.target == EGRESS_TOKENS_DIR {
                // Projected into the routes directory instead (below).
                continue;
            }
            let name = format!("vol-{}", volumes.len());
            volumes.push(Volume {
                name: name.clone(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            });
            mounts.push(mount(&name, &v.target, false, None));
        }
        let mut args = c.cmd.clone();
        if comp == Component::Egress {
            // Token files live next to the routes in one projected volume,
            // so the kubelet swaps a granted token and the routes naming it
            // in together; the proxy reloads when the routes change.
            secrets.push(self.secret(
                EGRESS_TOKENS_SECRET,
                "egress-tokens",
                c.secret_env.iter().map(|s| s.name.clone()),
            ));
            if let Some(i) = args.iter().position(|a| a == "--tokens-dir") {
                args.truncate(i);
                args.extend(c.cmd.iter().skip(i + 2).cloned());
            }
            args.extend([
                "--tokens-dir".to_owned(),
                egress_dir().to_owned(),
                "--watch-routes".to_owned(),
                WATCH_ROUTES_SECONDS.to_string(),
            ]);
        }
        for m in &c.mounts {
            if m.target == SUPERVISE_QUEUE {
                claims.push(PersistentVolumeClaim {
                    metadata: self.meta(QUEUE_CLAIM, "volume-supervise"),
                    spec: Some(PersistentVolumeClaimSpec {
                        access_modes: Some(vec!["ReadWriteOnce".into()]),
                        resources: Some(VolumeResourceRequirements {
                            requests: Some(BTreeMap::from([(
                                "storage".to_owned(),
                                Quantity(QUEUE_SIZE.into()),
                            )])),
                            ..VolumeResourceRequirements::default()
                        }),
                        ..PersistentVolumeClaimSpec::default()
                    }),
                    ..PersistentVolumeClaim::default()
                });
                volumes.push(Volume {
                    name: "queue".into(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: QUEUE_CLAIM.into(),
                        read_only: None,
                    }),
                    ..Volume::default()
                });
                mounts.push(mount("queue", &m.target, false, None));
            } else {
                return Err(RenderError::Unsupported {
                    what: format!("the host directory mounted at {}", m.target),
                    remedy: "run this bottle on Docker".into(),
                });
            }
        }
        // Secret variables other than egress's (which reads token files):
        // git-gate's tokens, from its own Secret.
        if comp != Component::Egress && !c.secret_env.is_empty() {
            let name = match comp {
                Component::GitGate => GIT_GATE_TOKENS_SECRET.to_owned(),
                other => format!("{other}-tokens"),
            };
            secrets.push(self.secret(
                &name,
                &format!("{comp}-tokens"),
                c.secret_env.iter().map(|s| s.name.clone()),
            ));
            for s in &c.secret_env {
                env.push(EnvVar {
                    name: s.name.clone(),
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: name.clone(),
                            key: s.name.clone(),
                            optional: None,
                        }),
                        ..EnvVarSource::default()
                    }),
                    ..EnvVar::default()
                });
            }
        }

        let security = SecurityContext {
            allow_privilege_escalation: Some(!c.confinement.no_new_privileges),
            capabilities: Some(Capabilities {
                drop: Some(c.confinement.cap_drop.clone()),
                add: (!c.confinement.cap_add.is_empty()).then(|| c.confinement.cap_add.clone()),
            }),
            read_only_root_filesystem: Some(c.confinement.read_only_rootfs),
            run_as_non_root: Some(true),
            run_as_user: Some(uid),
            run_as_group: Some(gid),
            ..SecurityContext::default()
        };
        for i in &mut init {
            let i: &mut Container = i;
            i.security_context = Some(SecurityContext {
                read_only_root_filesystem: Some(true),
                ..security.clone()
            });
        }
        let memory = (c.confinement.memory_bytes > 0).then(|| {
            BTreeMap::from([(
                "memory".to_owned(),
                Quantity(quantity(c.confinement.memory_bytes)),
            )])
        });
        let dns = c.confinement.dns.as_ref();
        let container = Container {
            name: comp.as_str().to_owned(),
            image: Some(c.image.clone()),
            image_pull_policy: Some("IfNotPresent".into()),
            args: (!args.is_empty()).then_some(args),
            working_dir: c.workdir.clone(),
            env: (!env.is_empty()).then_some(env),
            volume_mounts: (!mounts.is_empty()).then_some(mounts),
            security_context: Some(security),
            resources: Some(ResourceRequirements {
                limits: memory,
                ..ResourceRequirements::default()
            }),
            readiness_probe: c.health.as_ref().map(|cmd| Probe {
                exec: Some(ExecAction {
                    command: Some(cmd.clone()),
                }),
                period_seconds: Some(2),
                timeout_seconds: Some(5),
                ..Probe::default()
            }),
            ..Container::default()
        };
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some(comp.as_str().to_owned()),
                namespace: Some(self.namespace.to_owned()),
                labels: Some(
                    c.labels
                        .iter()
                        .filter(|(k, _)| !DOCKER_ONLY_LABELS.contains(&k.as_str()))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                service_account_name: Some(SERVICE_ACCOUNT.into()),
                automount_service_account_token: Some(false),
                enable_service_links: Some(false),
                restart_policy: Some("Always".into()),
                security_context: Some(PodSecurityContext {
                    run_as_non_root: Some(true),
                    run_as_user: Some(uid),
                    run_as_group: Some(gid),
                    fs_group: Some(gid),
                    seccomp_profile: Some(SeccompProfile {
                        type_: "RuntimeDefault".into(),
                        localhost_profile: None,
                    }),
                    ..PodSecurityContext::default()
                }),
                dns_policy: dns.map(|_| "None".to_owned()),
                dns_config: dns.map(|d| PodDNSConfig {
                    nameservers: Some(d.servers.clone()),
                    options: Some(
                        d.options
                            .iter()
                            .map(|o| match o.split_once(':') {
                                Some((n, v)) => PodDNSConfigOption {
                                    name: Some(n.to_owned()),
                                    value: Some(v.to_owned()),
                                },
                                None => PodDNSConfigOption {
                                    name: Some(o.clone()),
                                    value: None,
                                },
                            })
                            .collect(),
                    ),
                    searches: None,
                }),
                init_containers: (!init.is_empty()).then_some(init),
                containers: vec![container],
                volumes: (!volumes.is_empty()).then_some(volumes),
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        debug_assert!(dns.is_none_or(|d| d.servers == [DNS_SINK]));
        Ok(Built {
            pod,
            config_maps,
            secrets,
            claims,
        })
    }

    fn secret(&self, name: &str, component: &str, keys: impl Iterator<Item = String>) -> Secret {
        Secret {
            metadata: ObjectMeta {
                annotations: Some(BTreeMap::from([(
                    ANNOTATION_VALUES.to_owned(),
                    "filled by launcher start; never rendered".to_owned(),
                )])),
                ..self.meta(name, component)
            },
            data: Some(keys.map(|k| (k, ByteString(Vec::new()))).collect()),
            type_: Some("Opaque".into()),
            ..Secret::default()
        }
    }

    /// A sidecar's files, one projected volume per directory: text from
    /// the sidecar's ConfigMap, the CA certificate and key from the CA
    /// Secret (which only egress mounts).
    fn sidecar_files(
        &self,
        c: &ContainerPlan,
        volumes: &mut Vec<Volume>,
        mounts: &mut Vec<VolumeMount>,
        config_maps: &mut Vec<ConfigMap>,
        secrets: &mut Vec<Secret>,
    ) -> Result<(), RenderError> {
        let comp = c.component;
        let cm_name = if comp == Component::Egress {
            EGRESS_CONFIGMAP.to_owned()
        } else {
            format!("{comp}-files")
        };
        let mut cm_data = BTreeMap::new();
        let mut dirs: BTreeMap<String, (Vec<KeyToPath>, Vec<KeyToPath>)> = BTreeMap::new();
        let mut ca_keys = Vec::new();
        for f in &c.files {
            let (dir, base) = f.path.rsplit_once('/').unwrap_or(("", f.path.as_str()));
            let entry = dirs.entry(dir.to_owned()).or_default();
            let item = |key: &str| KeyToPath {
                key: key.to_owned(),
                path: base.to_owned(),
                mode: Some(if f.mode & 0o077 == 0 { 0o440 } else { 0o444 }),
            };
            match &f.source {
                FileSource::CaCert => {
                    entry.1.push(item(CA_CERT_KEY));
                    ca_keys.push(CA_CERT_KEY);
                }
                FileSource::CaKey => {
                    entry.1.push(item(CA_KEY_KEY));
                    ca_keys.push(CA_KEY_KEY);
                }
                other => {
                    let text = text_of(other, &f.path)?;
                    cm_data.insert(base.to_owned(), text);
                    entry.0.push(item(base));
                }
            }
        }
        if !ca_keys.is_empty() {
            secrets.push(self.secret(CA_SECRET, "ca", ca_keys.into_iter().map(str::to_owned)));
        }
        if !cm_data.is_empty() {
            config_maps.push(ConfigMap {
                metadata: self.meta(&cm_name, &format!("files-{comp}")),
                data: Some(cm_data),
                ..ConfigMap::default()
            });
        }
        for (i, (dir, (cm_items, secret_items))) in dirs.into_iter().enumerate() {
            let name = format!("files-{i}");
            let mut sources = Vec::new();
            if !cm_items.is_empty() {
                sources.push(VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: cm_name.clone(),
                        items: Some(cm_items),
                        optional: None,
                    }),
                    ..VolumeProjection::default()
                });
            }
            if comp == Component::Egress && dir == egress_dir() {
                sources.push(VolumeProjection {
                    secret: Some(SecretProjection {
                        name: EGRESS_TOKENS_SECRET.into(),
                        items: None,
                        optional: None,
                    }),
                    ..VolumeProjection::default()
                });
            }
            if !secret_items.is_empty() {
                sources.push(VolumeProjection {
                    secret: Some(SecretProjection {
                        name: CA_SECRET.into(),
                        items: Some(secret_items),
                        optional: None,
                    }),
                    ..VolumeProjection::default()
                });
            }
            volumes.push(Volume {
                name: name.clone(),
                projected: Some(ProjectedVolumeSource {
                    default_mode: Some(0o440),
                    sources: Some(sources),
                }),
                ..Volume::default()
            });
            mounts.push(mount(&name, &dir, true, None));
        }
        Ok(())
    }

    /// The agent's files: those owned by root (CA, gitconfig, Dockerfile)
    /// mounted read-only one by one; those in its home copied into a
    /// writable home by an init container (Claude Code rewrites
    /// `~/.claude.json`), which also builds the trust bundle from the
    /// image's own plus the bottle CA.
    fn agent_files(
        &self,
        c: &ContainerPlan,
        volumes: &mut Vec<Volume>,
        mounts: &mut Vec<VolumeMount>,
        config_maps: &mut Vec<ConfigMap>,
        init: &mut Vec<Container>,
    ) -> Result<(), RenderError> {
        const FILES: &str = "/bottle/files";
        const CA: &str = "/bottle/ca";
        const HOME: &str = "/bottle/home";
        const TRUST: &str = "/bottle/trust";
        let mut data = BTreeMap::new();
        let mut script = vec![
            "set -eu".to_owned(),
            format!("cp -a {AGENT_HOME}/. {HOME}/ 2>/dev/null || true"),
        ];
        volumes.push(Volume {
            name: "agent-files".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: "agent-files".into(),
                default_mode: Some(0o444),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
        volumes.push(Volume {
            name: "ca".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: CA_CONFIGMAP.into(),
                default_mode: Some(0o444),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
        for v in ["home", "trust"] {
            volumes.push(Volume {
                name: v.into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            });
        }
        mounts.push(mount("home", AGENT_HOME, false, None));
        for (i, f) in c.files.iter().enumerate() {
            let base = f.path.rsplit('/').next().unwrap_or_default();
            let key = format!("f{i}-{}", key_safe(base));
            match &f.source {
                FileSource::CaCert => mounts.push(mount("ca", &f.path, true, Some(CA_CERT_KEY))),
                FileSource::TrustBundle => {
                    script.push(format!(
                        "{{ cat {} 2>/dev/null || true; cat {CA}/{CA_CERT_KEY}; }} > {TRUST}/bundle.crt",
                        sh_quote(&f.path)
                    ));
                    mounts.push(mount("trust", &f.path, true, Some("bundle.crt")));
                }
                other => {
                    data.insert(key.clone(), text_of(other, &f.path)?);
                    match f.path.strip_prefix(AGENT_HOME) {
                        Some(rel) if f.uid == AGENT_UID && rel.starts_with('/') => {
                            let target = format!("{HOME}{rel}");
                            let dir = target.rsplit_once('/').map_or(HOME, |(d, _)| d);
                            script.push(format!(
                                "mkdir -p {} && cp {FILES}/{key} {} && chmod {:o} {}",
                                sh_quote(dir),
                                sh_quote(&target),
                                f.mode,
                                sh_quote(&target)
                            ));
                        }
                        _ => mounts.push(mount("agent-files", &f.path, true, Some(&key))),
                    }
                }
            }
        }
        config_maps.push(ConfigMap {
            metadata: self.meta("agent-files", "files-agent"),
            data: Some(data),
            ..ConfigMap::default()
        });
        init.push(Container {
            name: "seed".into(),
            image: Some(c.image.clone()),
            image_pull_policy: Some("IfNotPresent".into()),
            command: Some(vec!["sh".into(), "-c".into(), script.join("\n")]),
            volume_mounts: Some(vec![
                mount("agent-files", FILES, true, None),
                mount("ca", CA, true, None),
                mount("home", HOME, false, None),
                mount("trust", TRUST, false, None),
            ]),
            ..Container::default()
        });
        Ok(())
    }
}

/// The directory of egress-proxy's routes file: its projected volume.
pub fn egress_dir() -> &'static str {
    EGRESS_ROUTES_PATH
        .rsplit_once('/')
        .map_or(EGRESS_ROUTES_PATH, |(d, _)| d)
}

fn mount(volume: &str, path: &str, read_only: bool, sub_path: Option<&str>) -> VolumeMount {
    VolumeMount {
        name: volume.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        sub_path: sub_path.map(str::to_owned),
        ..VolumeMount::default()
    }
}

/// The text of a non-secret file source.
fn text_of(source: &FileSource, path: &str) -> Result<String, RenderError> {
    match source {
        FileSource::Text(t) => Ok(t.clone()),
        FileSource::Bundle(parts) => parts.iter().map(|p| text_of(p, path)).collect(),
        FileSource::HostFile(_) => Err(RenderError::Unsupported {
            what: format!("skill file {path}"),
            remedy: "remove the agent's skills for a cluster run, or run it on Docker".into(),
        }),
        other => Err(RenderError::Unsupported {
            what: format!("{path} from {other:?}"),
            remedy: "run this bottle on Docker".into(),
        }),
    }
}

/// `uid:gid` → numbers (the plan writes them; 65534 if malformed).
fn parse_user(user: &str) -> (i64, i64) {
    let (u, g) = user.split_once(':').unwrap_or((user, user));
    let n = |s: &str| s.parse().unwrap_or(65534);
    let _ = SIDECAR_UID;
    (n(u), n(g))
}

/// Bytes as a Kubernetes quantity (`Mi` when exact).
fn quantity(bytes: u64) -> String {
    if bytes.is_multiple_of(1 << 20) {
        format!("{}Mi", bytes >> 20)
    } else {
        bytes.to_string()
    }
}

/// `size=64m` in tmpfs options → `64Mi`.
fn tmpfs_size(options: &str) -> Option<String> {
    let size = options.split(',').find_map(|o| o.strip_prefix("size="))?;
    let (n, unit) = size.split_at(
        size.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(size.len()),
    );
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "k" => format!("{n}Ki"),
        "m" => format!("{n}Mi"),
        "g" => format!("{n}Gi"),
        _ => n.to_string(),
    })
}

fn key_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests;
