//! The launch plan: every Docker object a bottle will have, as a pure
//! function of an agent and [`PlanOptions`].
//!
//! Is: names, labels, networks, per-container image, command, user,
//! environment (non-secret values; secrets only as "`EGRESS_TOKEN_1` from
//! the operator's `GITHUB_TOKEN`"), files with mode and owner, mounts,
//! health checks, and which sidecars are left out and why. `--dry-run`
//! prints it; `start` executes it.
//!
//! Is not: I/O. No Docker, no environment, no file reads, no randomness:
//! the identity, the workspace path and the image tags come in through the
//! options, so the plan is unit-tested as a value.

use std::collections::BTreeMap;
use std::path::PathBuf;

use manifest::Agent;
use serde::Serialize;

use crate::identity::{Component, Identity};

/// egress-proxy's port on the internal network.
pub const EGRESS_PORT: u16 = 9099;
/// git-gate's port on the internal network.
pub const GIT_GATE_PORT: u16 = 9200;
/// supervise's port on the internal network.
pub const SUPERVISE_PORT: u16 = 9100;
/// The uid:gid every sidecar image runs as (`images/*/Dockerfile`).
pub const SIDECAR_UID: u64 = 10001;
/// The uid:gid of the agent user in the agent image.
pub const AGENT_UID: u64 = 1000;
/// The agent user's home.
pub const AGENT_HOME: &str = "/home/agent";
/// Where the workspace (`--cwd`) is mounted in the agent.
pub const WORKSPACE: &str = "/workspace";
/// The egress CA inside the agent (picked up by `update-ca-certificates`).
pub const AGENT_CA_PATH: &str = "/usr/local/share/ca-certificates/claude-bottle-egress-ca.crt";
/// The system trust bundle after `update-ca-certificates`.
pub const AGENT_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The supervise queue directory inside its container.
pub const SUPERVISE_QUEUE: &str = "/run/supervise/queue";
/// pipelock's port on the egress network.
pub const PIPELOCK_PORT: u16 = 8888;
/// pipelock's config inside its container.
pub const PIPELOCK_CONFIG: &str = "/etc/pipelock/pipelock.yaml";
/// pipelock's TLS interception CA certificate inside its container.
pub const PIPELOCK_CA_CERT: &str = "/etc/pipelock/ca.pem";
/// pipelock's TLS interception CA key inside its container.
pub const PIPELOCK_CA_KEY: &str = "/etc/pipelock/ca-key.pem";
/// pipelock's binary in its image (the image's entrypoint).
pub const PIPELOCK_BINARY: &str = "/pipelock";
/// The pipelock image the launcher pins by default: release v3.5.0 as
/// published in pipelock's own documentation ("Kubernetes image
/// upgrades"). `--pipelock-image` / `CLAUDE_BOTTLE_PIPELOCK_IMAGE`
/// override it; any override must be pinned by digest too. The opt-in
/// canary (`CLAUDE_BOTTLE_RUN_CANARIES=1`) pulls and starts it.
pub const DEFAULT_PIPELOCK_IMAGE: &str = "ghcr.io/luckypipewrench/pipelock@sha256:73e5d240f2ae02392c7de9c8858e9dee164396382c13e0ea95b4a497b2567965";
/// The bottle's current Dockerfile inside supervise (SPEC §6), read-only
/// for the sidecar user; `capability-block` compares proposals with it.
pub const CURRENT_DOCKERFILE: &str = "/etc/claude-bottle/current-config/Dockerfile";

/// Why no plan could be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    /// The manifest asks for something this launcher cannot run yet.
    #[error("agent {agent}: {what} is not supported by this launcher yet; {remedy}")]
    Unsupported {
        /// The agent.
        agent: String,
        /// What was asked for.
        what: String,
        /// What the operator can do.
        remedy: String,
    },
    /// The workspace path is not absolute.
    #[error("workspace {0:?} must be an absolute path")]
    RelativeCwd(PathBuf),
    /// The pipelock image is not pinned by digest.
    #[error(
        "pipelock image {0:?} is not pinned by digest; expected REPOSITORY@sha256:<64 lowercase hex digits>, e.g. {DEFAULT_PIPELOCK_IMAGE} (set it with --pipelock-image or CLAUDE_BOTTLE_PIPELOCK_IMAGE)"
    )]
    PipelockNotPinned(String),
    /// pipelock's config could not be rendered.
    #[error("pipelock config: {0}")]
    Pipelock(#[from] manifest::pipelock::PipelockError),
    /// An image the plan needs has no tag in the options.
    #[error("no image for component {0}; run `launcher images build`")]
    NoImage(Component),
}

/// Everything besides the agent that the plan depends on.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// The bottle identity (minted by the caller).
    pub identity: Identity,
    /// Absolute host directory mounted at [`WORKSPACE`], if any.
    pub cwd: Option<PathBuf>,
    /// The bottle's supervise queue directory on the host.
    pub queue_dir: PathBuf,
    /// Image reference per component.
    pub images: BTreeMap<Component, String>,
    /// Sidecars that cannot run, with the reason (e.g. the daemon is not
    /// built yet). They are left out of the plan and listed as omitted.
    pub unavailable: BTreeMap<Component, String>,
    /// Labels added to every object (tests put their run id here).
    pub extra_labels: BTreeMap<String, String>,
    /// Files of the agent's skill directories (found on the host by
    /// [`crate::skills::collect`]), copied into `~/.claude/skills/<skill>/`.
    pub skills: Vec<SkillFile>,
    /// An extra CA (PEM) egress and git-gate trust for upstreams, besides
    /// the system roots (`--upstream-ca`: a corporate proxy, or a test's
    /// fake upstreams).
    pub upstream_ca: Option<String>,
}

/// A secret environment variable: its value is read from the operator's
/// environment at launch, never stored in the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SecretEnv {
    /// The variable inside the container (`EGRESS_TOKEN_1`).
    pub name: String,
    /// The operator's variable holding the value (`GITHUB_TOKEN`).
    pub token_ref: String,
}

/// Where a planned file's contents come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "text")]
pub enum FileSource {
    /// Literal text (never secret).
    Text(String),
    /// The bottle CA certificate (minted at launch).
    CaCert,
    /// The bottle CA private key (minted at launch; egress only).
    CaKey,
    /// A file on the operator's host, read at launch (skills).
    HostFile(PathBuf),
    /// pipelock's config as `manifest::pipelock::render_config` renders it
    /// without an SSRF allowlist; at launch the internal network's CIDR
    /// (known only once Docker assigned it) is appended with
    /// [`pipelock_ssrf_section`].
    PipelockConfig(String),
    /// pipelock's TLS interception CA certificate (minted at launch).
    PipelockCaCert,
    /// pipelock's TLS interception CA key (minted at launch; pipelock only).
    PipelockCaKey,
    /// The concatenation of several sources (a PEM bundle).
    Bundle(Vec<FileSource>),
}

/// The SSRF section `manifest::pipelock::render_config` appends for
/// `cidrs` (empty for none), so a config rendered without CIDRs plus this
/// equals the config rendered with them (unit-tested).
pub fn pipelock_ssrf_section(cidrs: &[manifest::pipelock::Cidr]) -> String {
    if cidrs.is_empty() {
        return String::new();
    }
    let mut out = String::from("\nssrf:\n  ip_allowlist:\n");
    for c in cidrs {
        let text = c.to_string();
        let quoted = serde_json::to_string(&text).unwrap_or_else(|_| format!("{text:?}"));
        out.push_str(&format!("    - {quoted}\n"));
    }
    out
}

/// Checks that `image` is pinned by digest: `REPOSITORY@sha256:<64 hex>`.
pub fn validate_pinned_image(image: &str) -> Result<(), PlanError> {
    let bad = || PlanError::PipelockNotPinned(image.to_owned());
    let (repo, digest) = image.split_once("@sha256:").ok_or_else(bad)?;
    let repo_ok = !repo.is_empty()
        && repo
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/:".contains(&b));
    let digest_ok = digest.len() == 64
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if repo_ok && digest_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// One file of a skill directory, found by the caller on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkillFile {
    /// The skill's name (its directory's name).
    pub skill: String,
    /// Path inside the skill directory, `/`-separated, no `..`.
    pub relative: String,
    /// The file on the host.
    pub host_path: PathBuf,
    /// Whether it is executable (mode 0755 instead of 0644).
    pub executable: bool,
}

/// A file copied into a container before it starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlannedFile {
    /// Absolute path in the container.
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// Owner uid and gid.
    pub uid: u64,
    /// Contents.
    pub source: FileSource,
}

/// A bind mount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// Host path.
    pub source: PathBuf,
    /// Container path.
    pub target: String,
    /// Read-only.
    pub read_only: bool,
}

/// A network attachment with its DNS aliases.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Attachment {
    /// Network name.
    pub network: String,
    /// DNS aliases on that network.
    pub aliases: Vec<String>,
}

/// A network of the bottle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NetworkPlan {
    /// Name.
    pub name: String,
    /// `--internal`: no route out of the host.
    pub internal: bool,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// One container of the bottle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ContainerPlan {
    /// Which component.
    pub component: Component,
    /// Container name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// `uid:gid` the main process runs as.
    pub user: String,
    /// Command (entrypoint arguments).
    pub cmd: Vec<String>,
    /// Working directory, if not the image's.
    pub workdir: Option<String>,
    /// Networks; the first is the one the container is created on.
    pub networks: Vec<Attachment>,
    /// Non-secret environment.
    pub env: BTreeMap<String, String>,
    /// Secret environment (values read at launch).
    pub secret_env: Vec<SecretEnv>,
    /// Files copied in before start.
    pub files: Vec<PlannedFile>,
    /// Bind mounts.
    pub mounts: Vec<Mount>,
    /// Readiness check run inside the container (exit 0 = ready).
    pub health: Option<Vec<String>>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// A sidecar left out, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Omitted {
    /// The component.
    pub component: Component,
    /// Why.
    pub reason: String,
}

/// An effective route as the preflight shows it (no secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteSummary {
    /// Host pattern.
    pub host: String,
    /// Path prefixes (empty: all).
    pub path_allowlist: Vec<String>,
    /// How the token is presented, if any.
    pub auth: Option<String>,
    /// The operator's variable holding the token.
    pub token_ref: Option<String>,
    /// Roles.
    pub roles: Vec<String>,
}

/// A git remote as the preflight shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RemoteSummary {
    /// Name (served as `/<name>.git`).
    pub name: String,
    /// Real upstream.
    pub upstream: String,
    /// The operator's variable holding the token.
    pub token_ref: Option<String>,
}

/// The whole launch plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Bottle identity.
    pub identity: Identity,
    /// Agent name.
    pub agent: String,
    /// Workspace on the host.
    pub cwd: Option<PathBuf>,
    /// Effective routes.
    pub routes: Vec<RouteSummary>,
    /// Git remotes.
    pub git_remotes: Vec<RemoteSummary>,
    /// Networks, in creation order.
    pub networks: Vec<NetworkPlan>,
    /// Containers, in start order (sidecars, then the agent).
    pub containers: Vec<ContainerPlan>,
    /// Sidecars left out.
    pub omitted: Vec<Omitted>,
    /// Who scans outgoing requests for secrets, with what action, and
    /// which hosts are exempt (one line, for the preflight).
    pub dlp: String,
}

impl Plan {
    /// The container of `component`, if planned.
    pub fn container(&self, component: Component) -> Option<&ContainerPlan> {
        self.containers.iter().find(|c| c.component == component)
    }

    /// Gives supervise the agent's effective Dockerfile (the default
    /// `images/agent/Dockerfile`, the agent's own, or the one a resume
    /// rebuilt from): copied to [`CURRENT_DOCKERFILE`] as a root-owned 0644
    /// file (readable, not writable, by the sidecar user) and passed with
    /// `--dockerfile`. Without supervise in the plan this changes nothing;
    /// calling it again replaces the previous Dockerfile.
    #[must_use]
    pub fn with_current_dockerfile(mut self, text: &str) -> Self {
        if let Some(c) = self
            .containers
            .iter_mut()
            .find(|c| c.component == Component::Supervise)
        {
            c.files.retain(|f| f.path != CURRENT_DOCKERFILE);
            if let Some(i) = c.cmd.iter().position(|a| a == "--dockerfile") {
                c.cmd.drain(i..(i + 2).min(c.cmd.len()));
            }
            c.cmd
                .extend(["--dockerfile".to_owned(), CURRENT_DOCKERFILE.to_owned()]);
            c.files.push(PlannedFile {
                path: CURRENT_DOCKERFILE.into(),
                mode: 0o644,
                uid: 0,
                source: FileSource::Text(text.to_owned()),
            });
        }
        self
    }

    /// Every operator variable a launch reads, deduplicated, in order.
    pub fn token_refs(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for s in self.containers.iter().flat_map(|c| &c.secret_env) {
            if !out.contains(&s.token_ref.as_str()) {
                out.push(&s.token_ref);
            }
        }
        out
    }
}

/// Builds the plan for `agent`.
pub fn build(agent: &Agent, opts: &PlanOptions) -> Result<Plan, PlanError> {
    let id = &opts.identity;
    let agent_name = agent.name().as_str();
    let bottle = agent.bottle();
    if bottle.pipelock() {
        // The operator asked for pipelock: leaving it out would silently
        // drop a DLP layer, so a missing image stops the plan instead.
        if let Some(reason) = opts.unavailable.get(&Component::Pipelock) {
            return Err(PlanError::Unsupported {
                agent: agent_name.to_owned(),
                what: "bottle.pipelock".into(),
                remedy: format!(
                    "{reason}; or set `pipelock: false` (egress-proxy's own DLP scanning stays on)"
                ),
            });
        }
    }
    if let Some(cwd) = &opts.cwd
        && !cwd.is_absolute()
    {
        return Err(PlanError::RelativeCwd(cwd.clone()));
    }
    let labels = |component: &str| {
        let mut l = id.labels(agent_name, component);
        l.extend(opts.extra_labels.clone());
        l
    };
    let image = |c: Component| opts.images.get(&c).cloned().ok_or(PlanError::NoImage(c));
    let internal = id.internal_network();
    let egress_net = id.egress_network();
    let on_internal = |alias: &str| Attachment {
        network: internal.clone(),
        aliases: vec![alias.to_owned()],
    };
    let on_egress = || Attachment {
        network: egress_net.clone(),
        aliases: Vec::new(),
    };
    let user = |uid: u64| format!("{uid}:{uid}");

    let mut containers = Vec::new();
    let mut omitted = Vec::new();
    let mut wanted = Vec::new();
    if bottle.pipelock() {
        wanted.push(Component::Pipelock);
    }
    wanted.push(Component::Egress);
    if !bottle.git().is_empty() {
        wanted.push(Component::GitGate);
    }
    if bottle.supervise() {
        wanted.push(Component::Supervise);
    }
    let mut present = Vec::new();
    for c in wanted {
        match opts.unavailable.get(&c) {
            Some(reason) => omitted.push(Omitted {
                component: c,
                reason: reason.clone(),
            }),
            None => present.push(c),
        }
    }
    if bottle.pipelock() && !present.contains(&Component::Pipelock) {
        return Err(PlanError::NoImage(Component::Pipelock));
    }
    if !present.contains(&Component::Egress) {
        // Without egress the agent has no way out at all and no CA: refuse
        // rather than start a bottle that cannot work.
        return Err(PlanError::Unsupported {
            agent: agent_name.to_owned(),
            what: "a bottle without egress-proxy".into(),
            remedy: omitted
                .iter()
                .find(|o| o.component == Component::Egress)
                .map_or_else(String::new, |o| o.reason.clone()),
        });
    }

    let egress_url = format!("http://egress:{EGRESS_PORT}");
    for c in &present {
        let mut plan = match c {
            Component::Egress => ContainerPlan {
                component: Component::Egress,
                name: id.container_name(Component::Egress),
                image: image(Component::Egress)?,
                user: user(SIDECAR_UID),
                cmd: vec![
                    "egress-proxy".into(),
                    "--listen".into(),
                    format!("0.0.0.0:{EGRESS_PORT}"),
                    "--routes".into(),
                    "/etc/egress-proxy/routes.yaml".into(),
                    "--ca-cert".into(),
                    "/etc/egress-proxy/ca.crt".into(),
                    "--ca-key".into(),
                    "/etc/egress-proxy/ca.key".into(),
                    "--log-format".into(),
                    "json".into(),
                    "--tokens-dir".into(),
                    crate::apply::EGRESS_TOKENS_DIR.into(),
                ]
                .into_iter()
                .chain(egress_dlp_args(bottle))
                .collect(),
                workdir: None,
                networks: vec![on_internal("egress"), on_egress()],
                env: BTreeMap::new(),
                secret_env: bottle
                    .token_slots()
                    .iter()
                    .map(|s| SecretEnv {
                        name: s.token_env.clone(),
                        token_ref: s.token_ref.clone(),
                    })
                    .collect(),
                files: vec![
                    sidecar_file(
                        "/etc/egress-proxy/routes.yaml",
                        0o644,
                        FileSource::Text(bottle.routes_file()),
                    ),
                    sidecar_file("/etc/egress-proxy/ca.crt", 0o644, FileSource::CaCert),
                    // Only the sidecar user reads the key.
                    sidecar_file("/etc/egress-proxy/ca.key", 0o400, FileSource::CaKey),
                ],
                mounts: Vec::new(),
                health: Some(egress_status_probe(2)),
                labels: labels(Component::Egress.as_str()),
            },
            Component::GitGate => ContainerPlan {
                component: Component::GitGate,
                name: id.container_name(Component::GitGate),
                image: image(Component::GitGate)?,
                user: user(SIDECAR_UID),
                cmd: vec![
                    "git-gate".into(),
                    "--listen".into(),
                    format!("0.0.0.0:{GIT_GATE_PORT}"),
                    "--remotes".into(),
                    "/etc/git-gate/remotes.yaml".into(),
                    "--data".into(),
                    "/var/lib/git-gate".into(),
                ],
                workdir: None,
                networks: vec![on_internal("git-gate"), on_egress()],
                env: BTreeMap::new(),
                secret_env: bottle
                    .git_token_slots()
                    .iter()
                    .map(|s| SecretEnv {
                        name: s.token_env.clone(),
                        token_ref: s.token_ref.clone(),
                    })
                    .collect(),
                files: vec![sidecar_file(
                    "/etc/git-gate/remotes.yaml",
                    0o644,
                    FileSource::Text(bottle.remotes_file().render()),
                )],
                mounts: Vec::new(),
                health: Some(http_probe("git-gate", GIT_GATE_PORT, "/")),
                labels: labels(Component::GitGate.as_str()),
            },
            Component::Supervise => ContainerPlan {
                component: Component::Supervise,
                name: id.container_name(Component::Supervise),
                image: image(Component::Supervise)?,
                user: user(SIDECAR_UID),
                cmd: vec![
                    "supervise".into(),
                    "--listen".into(),
                    format!("0.0.0.0:{SUPERVISE_PORT}"),
                    "--queue".into(),
                    SUPERVISE_QUEUE.into(),
                    "--bottle".into(),
                    id.as_str().into(),
                    "--egress-proxy".into(),
                    egress_url.clone(),
                    "--allowed-host".into(),
                    "supervise".into(),
                ],
                workdir: None,
                // No egress network: supervise never talks to the outside.
                networks: vec![on_internal("supervise")],
                env: BTreeMap::new(),
                secret_env: Vec::new(),
                files: Vec::new(),
                mounts: vec![Mount {
                    source: opts.queue_dir.clone(),
                    target: SUPERVISE_QUEUE.into(),
                    read_only: false,
                }],
                health: Some(http_probe("supervise", SUPERVISE_PORT, "/mcp")),
                labels: labels(Component::Supervise.as_str()),
            },
            Component::Pipelock => pipelock_container(
                agent,
                id.container_name(Component::Pipelock),
                image(Component::Pipelock)?,
                egress_net.clone(),
                labels(Component::Pipelock.as_str()),
            )?,
            Component::Agent => continue,
        };
        if *c == Component::Egress && present.contains(&Component::Pipelock) {
            plan.cmd.extend([
                "--upstream-proxy".to_owned(),
                format!("http://pipelock:{PIPELOCK_PORT}"),
            ]);
        }
        // The extra upstream CA goes to the sidecars that dial upstreams;
        // egress behind pipelock also trusts pipelock's interception CA.
        let mut upstream: Vec<FileSource> = opts
            .upstream_ca
            .iter()
            .map(|pem| FileSource::Text(pem.clone()))
            .collect();
        if *c == Component::Egress && present.contains(&Component::Pipelock) {
            upstream.push(FileSource::PipelockCaCert);
        }
        let dir = match c {
            Component::Egress => Some("egress-proxy"),
            Component::GitGate => Some("git-gate"),
            _ => None,
        };
        if let Some(dir) = dir
            && !upstream.is_empty()
        {
            let path = format!("/etc/{dir}/upstream-ca.crt");
            plan.cmd.extend(["--upstream-ca".to_owned(), path.clone()]);
            let source = if upstream.len() == 1 {
                upstream.remove(0)
            } else {
                FileSource::Bundle(upstream)
            };
            plan.files.push(sidecar_file(&path, 0o644, source));
        }
        if *c == Component::Supervise && present.contains(&Component::Pipelock) {
            plan.cmd.push("--pipelock".to_owned());
        }
        containers.push(plan);
    }

    containers.push(agent_container(
        agent,
        opts,
        &present,
        labels(Component::Agent.as_str()),
        image(Component::Agent)?,
    ));

    Ok(Plan {
        dlp: dlp_summary(bottle),
        identity: id.clone(),
        agent: agent_name.to_owned(),
        cwd: opts.cwd.clone(),
        routes: route_summaries(agent),
        git_remotes: bottle
            .git()
            .iter()
            .map(|r| RemoteSummary {
                name: r.name().as_str().to_owned(),
                upstream: r.upstream().to_owned(),
                token_ref: r.auth().map(|a| a.token_ref().to_owned()),
            })
            .collect(),
        networks: vec![
            NetworkPlan {
                name: internal.clone(),
                internal: true,
                labels: labels("network-internal"),
            },
            NetworkPlan {
                name: egress_net.clone(),
                internal: false,
                labels: labels("network-egress"),
            },
        ],
        containers,
        omitted,
    })
}

/// pipelock: chained upstream of egress, only on the egress network (alias
/// `pipelock`), so the agent cannot use it as a second way out; it runs as
/// the sidecar user with its config and its own interception CA.
fn pipelock_container(
    agent: &Agent,
    name: String,
    image: String,
    egress_net: String,
    labels: BTreeMap<String, String>,
) -> Result<ContainerPlan, PlanError> {
    let bottle = agent.bottle();
    let tls = manifest::pipelock::PipelockTls {
        ca_cert: PIPELOCK_CA_CERT.into(),
        ca_key: PIPELOCK_CA_KEY.into(),
    };
    let config =
        manifest::pipelock::render_config(bottle, bottle.effective_routes(), Some(&tls), &[])?;
    let listen = format!("127.0.0.1:{PIPELOCK_PORT}");
    Ok(ContainerPlan {
        component: Component::Pipelock,
        name,
        image,
        user: format!("{SIDECAR_UID}:{SIDECAR_UID}"),
        // Arguments to the image's entrypoint (the pipelock binary).
        cmd: vec![
            "run".into(),
            "--config".into(),
            PIPELOCK_CONFIG.into(),
            "--listen".into(),
            format!("0.0.0.0:{PIPELOCK_PORT}"),
        ],
        workdir: None,
        networks: vec![Attachment {
            network: egress_net,
            aliases: vec!["pipelock".into()],
        }],
        env: BTreeMap::from([("HOME".to_owned(), "/tmp".to_owned())]),
        secret_env: Vec::new(),
        files: vec![
            sidecar_file(PIPELOCK_CONFIG, 0o644, FileSource::PipelockConfig(config)),
            sidecar_file(PIPELOCK_CA_CERT, 0o644, FileSource::PipelockCaCert),
            sidecar_file(PIPELOCK_CA_KEY, 0o400, FileSource::PipelockCaKey),
        ],
        mounts: Vec::new(),
        health: Some(vec![
            PIPELOCK_BINARY.into(),
            "healthcheck".into(),
            "--addr".into(),
            listen,
        ]),
        labels,
    })
}

/// egress-proxy's DLP flags: the manifest's `dlp_action`, with the LLM API
/// hosts exempt. With pipelock on, pipelock scans (with its own LLM
/// passthrough) and egress-proxy does not scan twice.
fn egress_dlp_args(bottle: &manifest::Bottle) -> Vec<String> {
    if bottle.pipelock() {
        return vec!["--dlp-action".into(), "off".into()];
    }
    let mut args = vec![
        "--dlp-action".into(),
        bottle.egress().dlp_action().as_str().to_owned(),
    ];
    for h in bottle.dlp_exempt_hosts() {
        args.push("--dlp-exempt-host".into());
        args.push(h.to_string());
    }
    args
}

/// The preflight's DLP line: egress-proxy's action and exempt hosts, or
/// pipelock's action when pipelock scans.
fn dlp_summary(bottle: &manifest::Bottle) -> String {
    let action = bottle.egress().dlp_action().as_str();
    if bottle.pipelock() {
        return format!("{action}, by pipelock");
    }
    let exempt: Vec<String> = bottle
        .dlp_exempt_hosts()
        .iter()
        .map(ToString::to_string)
        .collect();
    format!(
        "{action}, by egress-proxy; not scanned (conversation text): {}",
        exempt.join(", ")
    )
}

fn sidecar_file(path: &str, mode: u32, source: FileSource) -> PlannedFile {
    PlannedFile {
        path: path.into(),
        mode,
        uid: SIDECAR_UID,
        source,
    }
}

/// Ready when the port answers HTTP at all: the daemon's built-in probe
/// (sidecar images have no curl) exits 0 on any status.
fn http_probe(daemon: &str, port: u16, path: &str) -> Vec<String> {
    vec![
        daemon.into(),
        "probe".into(),
        format!("http://127.0.0.1:{port}{path}"),
    ]
}

/// egress-proxy's status, asked through the proxy itself: exits 0 and
/// prints the JSON only on a 2xx answer within `max_time` seconds.
pub fn egress_status_probe(max_time: u64) -> Vec<String> {
    vec![
        "egress-proxy".into(),
        "probe".into(),
        "--fail".into(),
        "--max-time".into(),
        max_time.to_string(),
        "--proxy".into(),
        format!("127.0.0.1:{EGRESS_PORT}"),
        "http://_egress.local/status".into(),
    ]
}

fn agent_container(
    agent: &Agent,
    opts: &PlanOptions,
    present: &[Component],
    labels: BTreeMap<String, String>,
    image: String,
) -> ContainerPlan {
    let id = &opts.identity;
    let bottle = agent.bottle();
    let proxy = format!("http://egress:{EGRESS_PORT}");
    let mut no_proxy: Vec<&str> = present
        .iter()
        // egress is the proxy; pipelock is not reachable from the agent.
        .filter(|c| !matches!(c, Component::Egress | Component::Pipelock))
        .map(|c| c.as_str())
        .collect();
    no_proxy.extend(["localhost", "127.0.0.1", "::1"]);
    let no_proxy = no_proxy.join(",");
    let mut env = BTreeMap::new();
    // Both cases: curl ignores uppercase HTTP_PROXY for http:// (httpoxy).
    for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
        env.insert(k.to_owned(), proxy.clone());
    }
    env.insert("NO_PROXY".into(), no_proxy.clone());
    env.insert("no_proxy".into(), no_proxy);
    env.insert("NODE_EXTRA_CA_CERTS".into(), AGENT_CA_PATH.into());
    env.insert("SSL_CERT_FILE".into(), AGENT_CA_BUNDLE.into());
    env.insert("REQUESTS_CA_BUNDLE".into(), AGENT_CA_BUNDLE.into());
    env.insert("HOME".into(), AGENT_HOME.into());
    for v in bottle.agent_env() {
        env.insert(v.name.to_owned(), v.value.to_owned());
    }

    let agent_file = |path: String, mode: u32, source: FileSource| PlannedFile {
        path,
        mode,
        uid: AGENT_UID,
        source,
    };
    // Root-owned and world-readable: update-ca-certificates (run as root
    // first thing after start) adds it to the bundle.
    let mut files = vec![PlannedFile {
        path: AGENT_CA_PATH.into(),
        mode: 0o644,
        uid: 0,
        source: FileSource::CaCert,
    }];
    if let Some(prompt) = agent.prompt() {
        files.push(agent_file(
            format!("{AGENT_HOME}/.claude/CLAUDE.md"),
            0o644,
            FileSource::Text(prompt.to_owned()),
        ));
    }
    for f in &opts.skills {
        files.push(agent_file(
            format!("{AGENT_HOME}/.claude/skills/{}/{}", f.skill, f.relative),
            if f.executable { 0o755 } else { 0o644 },
            FileSource::HostFile(f.host_path.clone()),
        ));
    }
    if present.contains(&Component::GitGate) && !bottle.git().is_empty() {
        let mut cfg = String::new();
        for r in bottle.git() {
            cfg.push_str(&format!(
                "[url \"http://git-gate:{GIT_GATE_PORT}/{}.git\"]\n\tinsteadOf = {}\n",
                r.name().as_str(),
                r.upstream()
            ));
        }
        files.push(PlannedFile {
            path: "/etc/gitconfig".into(),
            mode: 0o644,
            uid: 0,
            source: FileSource::Text(cfg),
        });
    }
    if present.contains(&Component::Supervise) {
        let mcp = serde_json::json!({
            "mcpServers": {
                "supervise": { "type": "http", "url": format!("http://supervise:{SUPERVISE_PORT}/mcp") }
            }
        });
        files.push(agent_file(
            format!("{AGENT_HOME}/.claude.json"),
            0o600,
            FileSource::Text(format!("{mcp:#}\n")),
        ));
    }

    ContainerPlan {
        component: Component::Agent,
        name: id.container_name(Component::Agent),
        image,
        user: format!("{AGENT_UID}:{AGENT_UID}"),
        // The agent idles; sessions and `run` commands are execs into it.
        cmd: vec!["sleep".into(), "infinity".into()],
        workdir: opts.cwd.as_ref().map(|_| WORKSPACE.to_owned()),
        // Only the internal network: no route out, no alias needed.
        networks: vec![Attachment {
            network: id.internal_network(),
            aliases: Vec::new(),
        }],
        env,
        secret_env: Vec::new(),
        files,
        mounts: opts
            .cwd
            .iter()
            .map(|cwd| Mount {
                source: cwd.clone(),
                target: WORKSPACE.into(),
                read_only: false,
            })
            .collect(),
        health: None,
        labels,
    }
}

fn route_summaries(agent: &Agent) -> Vec<RouteSummary> {
    let bottle = agent.bottle();
    let token_ref_of = |token_env: &str| {
        bottle
            .token_slots()
            .iter()
            .find(|s| s.token_env == token_env)
            .map(|s| s.token_ref.clone())
    };
    bottle
        .effective_routes()
        .routes()
        .iter()
        .map(|r| RouteSummary {
            host: r.host.to_string(),
            path_allowlist: r
                .path_allowlist
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
            auth: r.auth.as_ref().map(|a| match (a.scheme, &a.header) {
                (Some(s), _) => format!("Authorization: {}", s.as_str()),
                (None, Some(h)) => format!("header {h}"),
                (None, None) => "Authorization".to_owned(),
            }),
            token_ref: r.auth.as_ref().and_then(|a| token_ref_of(&a.token_env)),
            roles: r.roles.iter().map(|x| x.as_str().to_owned()).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests;
