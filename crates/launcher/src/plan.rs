//! The launch plan: every Docker object a bottle will have, as a pure
//! function of an agent and [`PlanOptions`].
//!
//! Is: names, labels, networks (the internal one without a host address),
//! volumes, per-container image, command, user, confinement (capabilities,
//! no-new-privileges, read-only root, tmpfs, memory and pids limits, DNS,
//! sysctls), environment (non-secret values; secrets only as
//! "`EGRESS_TOKEN_1` from the operator's `GITHUB_TOKEN`"), files with mode
//! and owner, mounts, health checks, the workspace mode, and which sidecars
//! are left out and why. `--dry-run` prints it; `start` executes it.
//!
//! Is not: I/O. No Docker, no environment, no file reads, no randomness:
//! the identity, the workspace path and the image tags come in through the
//! options, so the plan is unit-tested as a value.
//!
//! The plan layer (this directory) is everything decided before an engine
//! is touched: finding and reading the manifest ([`load`]), the bottle's
//! identity and object names ([`identity`]), the protect-mode survey of the
//! workspace ([`workspace`]), the agent's skill files ([`skills`]) and the
//! y/N summary with the engine assessment ([`preflight`]). Those read host
//! files; none of them calls an engine, and nothing here imports
//! `crate::engine`, `crate::lifecycle` or `crate::approvals`.

pub mod identity;
pub mod load;
pub mod preflight;
pub mod skills;
pub mod workspace;

use std::collections::BTreeMap;
use std::path::PathBuf;

use manifest::{Agent, WorkspaceMode};
use serde::Serialize;

use identity::{Component, Identity};
use preflight::engine::EngineReport;
use workspace::Guard;

/// egress-proxy's port on the internal network.
pub const EGRESS_PORT: u16 = 9099;
/// egress-proxy's routes file inside its container.
pub const EGRESS_ROUTES: &str = "/etc/egress-proxy/routes.yaml";
/// The directory egress-proxy reads token files from (`--tokens-dir`;
/// created by `images/egress-proxy/Dockerfile`, owned by the sidecar user).
pub const EGRESS_TOKENS_DIR: &str = "/var/lib/egress-proxy/tokens";
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
/// The egress CA inside the agent (`NODE_EXTRA_CA_CERTS`).
pub const AGENT_CA_PATH: &str = "/usr/local/share/ca-certificates/claude-bottle-egress-ca.crt";
/// The agent's system trust bundle: the launcher writes the image's own
/// bundle plus the bottle CA here before the agent starts (no root exec).
pub const AGENT_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The DNS server of the agent and supervise: an address where nothing
/// the operator runs listens. Docker's embedded resolver (127.0.0.11)
/// still answers the bottle's own names from its table; any other name it
/// forwards here, to port 53 in the container's own network namespace,
/// so no query leaves the bottle on any engine version (CVE-2024-29018;
/// docs/decisions.md, 2026-11-30).
pub const DNS_SINK: &str = "127.0.0.1";
/// Resolver options of the containers using [`DNS_SINK`]: names the sink
/// never answers fail in three to four seconds instead of twenty.
pub const DNS_OPTIONS: &[&str] = &["timeout:1", "attempts:2"];
/// The bridge driver option that gives the host no address on the
/// internal network, so the agent's default route leads nowhere.
pub const INHIBIT_IPV4: &str = "com.docker.network.bridge.inhibit_ipv4";
/// Namespaced sysctls of internal-only containers: no IPv6 at all, so no
/// link-local path to the host bridge on engines that leave IPv6 on.
pub const NO_IPV6_SYSCTLS: &[(&str, &str)] = &[
    ("net.ipv6.conf.all.disable_ipv6", "1"),
    ("net.ipv6.conf.default.disable_ipv6", "1"),
];
/// The capability set every container drops.
pub const CAP_DROP_ALL: &str = "ALL";
/// Where sidecars get a tmpfs (their only writable path besides volumes).
pub const SIDECAR_TMPFS: &str = "/tmp";
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
/// The bottle's current Dockerfile inside supervise and the agent (SPEC
/// §6), read-only for both; `capability-block` compares proposals with it
/// and the agent starts its proposal from it.
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
    /// A restored routes file names a slot with no recorded operator variable.
    #[error(
        "the restored routes name token slot {token_env}, but the bottle's token-slots.json records no operator variable for it; approve the route again after the resume"
    )]
    RestoredSlot {
        /// The slot.
        token_env: String,
    },
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
    /// [`crate::plan::skills::collect`]), copied into `~/.claude/skills/<skill>/`.
    pub skills: Vec<SkillFile>,
    /// An extra CA (PEM) egress and git-gate trust for upstreams, besides
    /// the system roots (`--upstream-ca`: a corporate proxy, or a test's
    /// fake upstreams).
    pub upstream_ca: Option<String>,
    /// `--workspace`: overrides the manifest's `bottle.workspace`.
    pub workspace_mode: Option<WorkspaceMode>,
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
    /// The trust bundle the created container's image has at this path
    /// (empty when it has none), followed by the bottle CA.
    TrustBundle,
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

/// A per-bottle named volume mounted into a container: the only writable
/// place (besides a tmpfs) of a sidecar with a read-only root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VolumeMount {
    /// Volume name (see [`Plan::volumes`]).
    pub volume: String,
    /// Container path.
    pub target: String,
}

/// A named volume of the bottle, created before the containers and
/// removed after them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VolumePlan {
    /// Name.
    pub name: String,
    /// Labels (found by `cleanup` through them).
    pub labels: BTreeMap<String, String>,
}

/// The DNS configuration of a container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DnsPlan {
    /// Servers the embedded resolver forwards unknown names to.
    pub servers: Vec<String>,
    /// resolv.conf options.
    pub options: Vec<String>,
}

/// What a container may do and use, beyond its image and command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Confinement {
    /// Capabilities dropped (`ALL`).
    pub cap_drop: Vec<String>,
    /// Capabilities added back, each for a documented need (none today).
    pub cap_add: Vec<String>,
    /// `no-new-privileges`: setuid binaries and file capabilities grant
    /// nothing.
    pub no_new_privileges: bool,
    /// Read-only root file system.
    pub read_only_rootfs: bool,
    /// tmpfs mounts: path → mount options.
    pub tmpfs: BTreeMap<String, String>,
    /// Memory limit in bytes; swap adds nothing on top.
    pub memory_bytes: u64,
    /// Maximum number of processes and threads.
    pub pids_limit: u32,
    /// Namespaced sysctls.
    pub sysctls: BTreeMap<String, String>,
    /// DNS; `None` keeps the engine's (sidecars that resolve upstreams).
    pub dns: Option<DnsPlan>,
}

impl Confinement {
    /// What Docker gives a container without options: its default
    /// capabilities, a writable root, no limits, the engine's DNS. Never
    /// used for a bottle's containers; the e2e tests' own helper
    /// containers (fake upstreams) use it.
    pub fn engine_default() -> Self {
        Self {
            cap_drop: Vec::new(),
            cap_add: Vec::new(),
            no_new_privileges: false,
            read_only_rootfs: false,
            tmpfs: BTreeMap::new(),
            memory_bytes: 0,
            pids_limit: 0,
            sysctls: BTreeMap::new(),
            dns: None,
        }
    }
}

/// How the workspace reaches the agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkspacePlan {
    /// The directory on the host (`--cwd`).
    pub host: PathBuf,
    /// Protect (bind mount with read-only guards) or copy.
    pub mode: WorkspaceMode,
    /// In protect mode, what is mounted read-only over the bind mount, as
    /// the launcher found it on disk ([`crate::plan::workspace::survey`]; filled
    /// in by the preflight and again at launch).
    pub guards: Vec<Guard>,
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
    /// Driver options ([`INHIBIT_IPV4`] on the internal network).
    pub options: BTreeMap<String, String>,
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
    /// Named volumes.
    pub volumes: Vec<VolumeMount>,
    /// Capabilities, privileges, limits, DNS.
    pub confinement: Confinement,
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
    /// TLS ports the route allows (default 443).
    pub ports: Vec<u16>,
    /// The operator's opt-in to non-global upstream addresses.
    pub allow_private: bool,
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
    /// How the workspace reaches the agent (`None` without `--cwd`).
    pub workspace: Option<WorkspacePlan>,
    /// Effective routes.
    pub routes: Vec<RouteSummary>,
    /// Git remotes.
    pub git_remotes: Vec<RemoteSummary>,
    /// Networks, in creation order.
    pub networks: Vec<NetworkPlan>,
    /// Named volumes, created before the containers.
    pub volumes: Vec<VolumePlan>,
    /// Containers, in start order (sidecars, then the agent).
    pub containers: Vec<ContainerPlan>,
    /// Sidecars left out.
    pub omitted: Vec<Omitted>,
    /// Who scans outgoing requests for secrets, with what action, and
    /// which hosts are exempt (one line, for the preflight).
    pub dlp: String,
    /// Who checks responses for prompt injection, with what action (one
    /// line, for the preflight).
    pub inbound: String,
    /// The Docker engine and the protections in force on it, once the
    /// caller has probed it ([`Plan::with_engine`]).
    pub engine: Option<EngineReport>,
}

impl Plan {
    /// The container of `component`, if planned.
    pub fn container(&self, component: Component) -> Option<&ContainerPlan> {
        self.containers.iter().find(|c| c.component == component)
    }

    /// The token slots the egress proxy holds at launch (names only): what
    /// `token-slots.json` records so an approval reuses a slot instead of
    /// asking for the credential again.
    pub fn egress_token_slots(&self) -> Vec<manifest::TokenSlot> {
        self.container(Component::Egress)
            .map(|c| {
                c.secret_env
                    .iter()
                    .map(|s| manifest::TokenSlot {
                        token_ref: s.token_ref.clone(),
                        token_env: s.name.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Gives supervise and the agent the agent's effective Dockerfile (the
    /// default `images/agent/Dockerfile`, the agent's own, or the one a
    /// resume rebuilt from): copied to [`CURRENT_DOCKERFILE`] in both as a
    /// root-owned 0644 file (readable, not writable, by their non-root
    /// users), and passed to supervise with `--dockerfile`. The agent reads
    /// it to start a `capability-block` proposal from what it runs.
    /// Without supervise in the plan (no `capability-block`) this changes
    /// nothing; calling it again replaces the previous Dockerfile.
    #[must_use]
    pub fn with_current_dockerfile(mut self, text: &str) -> Self {
        let supervised = self.container(Component::Supervise).is_some();
        if let Some(c) = self
            .containers
            .iter_mut()
            .find(|c| supervised && c.component == Component::Agent)
        {
            c.files.retain(|f| f.path != CURRENT_DOCKERFILE);
            c.files.push(PlannedFile {
                path: CURRENT_DOCKERFILE.into(),
                mode: 0o644,
                uid: 0,
                source: FileSource::Text(text.to_owned()),
            });
        }
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

    /// Runs the bottle with `table` as egress's routes instead of the
    /// manifest's (`launcher resume`: the routes that were live when the
    /// state was preserved, approvals included). Each slot the table names
    /// is read at launch from the operator variable `slots` records for it
    /// (names only; a granted credential must be exported again); the
    /// preflight's routes and pipelock's allowlist follow the table.
    pub fn with_restored_routes(
        mut self,
        agent: &Agent,
        table: &manifest::RouteTable,
        slots: &[manifest::TokenSlot],
    ) -> Result<Self, PlanError> {
        let mut secret_env = Vec::new();
        for env in table.token_envs() {
            let slot = slots.iter().find(|s| s.token_env == env).ok_or_else(|| {
                PlanError::RestoredSlot {
                    token_env: env.to_owned(),
                }
            })?;
            secret_env.push(SecretEnv {
                name: slot.token_env.clone(),
                token_ref: slot.token_ref.clone(),
            });
        }
        for c in &mut self.containers {
            match c.component {
                Component::Egress => {
                    for f in &mut c.files {
                        if f.path == EGRESS_ROUTES {
                            f.source = FileSource::Text(table.render());
                        }
                    }
                    c.secret_env = secret_env.clone();
                }
                Component::Pipelock => {
                    let tls = manifest::pipelock::PipelockTls {
                        ca_cert: PIPELOCK_CA_CERT.into(),
                        ca_key: PIPELOCK_CA_KEY.into(),
                    };
                    let config =
                        manifest::pipelock::render_config(agent.bottle(), table, Some(&tls), &[])?;
                    for f in &mut c.files {
                        if f.path == PIPELOCK_CONFIG {
                            f.source = FileSource::PipelockConfig(config.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        self.routes = table
            .routes()
            .iter()
            .map(|r| route_summary(r, slots))
            .collect();
        Ok(self)
    }

    /// Records the engine this plan runs on and what protects the bottle
    /// there (shown by the preflight and `--dry-run`).
    #[must_use]
    pub fn with_engine(mut self, report: EngineReport) -> Self {
        self.engine = Some(report);
        self
    }

    /// Records the protect-mode guards found on disk.
    #[must_use]
    pub fn with_guards(mut self, guards: Vec<Guard>) -> Self {
        if let Some(w) = self.workspace.as_mut() {
            w.guards = guards;
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
                    EGRESS_ROUTES.into(),
                    "--ca-cert".into(),
                    "/etc/egress-proxy/ca.crt".into(),
                    "--ca-key".into(),
                    "/etc/egress-proxy/ca.key".into(),
                    "--log-format".into(),
                    "json".into(),
                    "--tokens-dir".into(),
                    EGRESS_TOKENS_DIR.into(),
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
                    sidecar_file(EGRESS_ROUTES, 0o644, FileSource::Text(bottle.routes_file())),
                    sidecar_file("/etc/egress-proxy/ca.crt", 0o644, FileSource::CaCert),
                    // Only the sidecar user reads the key.
                    sidecar_file("/etc/egress-proxy/ca.key", 0o400, FileSource::CaKey),
                ],
                mounts: Vec::new(),
                volumes: Vec::new(),
                confinement: sidecar_confinement(Component::Egress),
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
                volumes: Vec::new(),
                confinement: sidecar_confinement(Component::GitGate),
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
                volumes: Vec::new(),
                // Internal-only like the agent: its DNS and IPv6 are
                // closed the same way.
                confinement: Confinement {
                    dns: Some(sink_dns()),
                    sysctls: no_ipv6_sysctls(),
                    ..sidecar_confinement(Component::Supervise)
                },
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
        plan.volumes = sidecar_volumes(*c)
            .iter()
            .map(|(slug, target)| VolumeMount {
                volume: format!("{}-{slug}", plan.name),
                target: (*target).to_owned(),
            })
            .collect();
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

    let workspace = opts.cwd.as_ref().map(|host| WorkspacePlan {
        host: host.clone(),
        mode: opts.workspace_mode.unwrap_or(bottle.workspace()),
        guards: Vec::new(),
    });
    containers.push(agent_container(
        agent,
        opts,
        workspace.as_ref(),
        &present,
        labels(Component::Agent.as_str()),
        image(Component::Agent)?,
    ));
    let volumes = containers
        .iter()
        .flat_map(|c| {
            c.volumes.iter().map(|v| VolumePlan {
                name: v.volume.clone(),
                labels: labels(&format!("volume-{}", c.component)),
            })
        })
        .collect();

    Ok(Plan {
        engine: None,
        workspace,
        volumes,
        dlp: dlp_summary(bottle),
        inbound: inbound_summary(bottle),
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
                options: BTreeMap::from([(INHIBIT_IPV4.to_owned(), "true".to_owned())]),
                labels: labels("network-internal"),
            },
            NetworkPlan {
                name: egress_net.clone(),
                internal: false,
                options: BTreeMap::new(),
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
        volumes: Vec::new(),
        confinement: sidecar_confinement(Component::Pipelock),
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
    // Responses are inspected by egress-proxy either way: pipelock scans
    // only what leaves.
    let mut args = vec![
        "--injection-action".into(),
        bottle.egress().injection_action().as_str().to_owned(),
    ];
    if bottle.pipelock() {
        args.extend(["--dlp-action".into(), "off".into()]);
        return args;
    }
    args.extend([
        "--dlp-action".into(),
        bottle.egress().dlp_action().as_str().to_owned(),
    ]);
    for d in bottle.egress().dlp_detectors().flag_values() {
        args.push("--dlp-detector".into());
        args.push(d);
    }
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
    let detectors = bottle.egress().dlp_detectors().flag_values();
    let detectors = if detectors.is_empty() {
        String::new()
    } else {
        format!("; detectors {}", detectors.join(", "))
    };
    format!(
        "{action}, by egress-proxy{detectors}; not scanned (conversation text): {}",
        exempt.join(", ")
    )
}

/// The preflight's line on responses: egress-proxy's prompt-injection
/// action for text responses from hosts that are not exempt.
fn inbound_summary(bottle: &manifest::Bottle) -> String {
    format!(
        "{}, by egress-proxy, on text responses from hosts not exempt from DLP",
        bottle.egress().injection_action().as_str()
    )
}

/// The paths of `component` the launcher writes into after creation,
/// `(slug, path)`: each is a per-bottle named volume, because the sidecar's
/// root file system is read-only (Docker refuses archive uploads there,
/// and an upload into a tmpfs would be hidden by it).
pub fn sidecar_volumes(component: Component) -> &'static [(&'static str, &'static str)] {
    match component {
        Component::Egress => &[
            ("config", "/etc/egress-proxy"),
            ("tokens", EGRESS_TOKENS_DIR),
        ],
        Component::GitGate => &[("config", "/etc/git-gate"), ("data", "/var/lib/git-gate")],
        Component::Supervise => &[("current-config", "/etc/claude-bottle/current-config")],
        Component::Pipelock => &[("config", "/etc/pipelock")],
        Component::Agent => &[],
    }
}

/// Memory (MiB), pids and `/tmp` size (MiB) of each sidecar: fixed
/// budgets with room for a busy session (git-gate runs `git pack-objects`
/// and `index-pack` for a whole repository).
fn sidecar_budget(component: Component) -> (u64, u32, u32) {
    match component {
        Component::GitGate => (2048, 1024, 256),
        Component::Supervise => (256, 256, 16),
        Component::Egress | Component::Pipelock | Component::Agent => (1024, 512, 64),
    }
}

/// A sidecar: no capabilities, no-new-privileges, read-only root with a
/// tmpfs at `/tmp`, fixed limits; the engine's DNS (it resolves upstreams).
fn sidecar_confinement(component: Component) -> Confinement {
    let (memory_mib, pids, tmp_mib) = sidecar_budget(component);
    Confinement {
        cap_drop: vec![CAP_DROP_ALL.to_owned()],
        cap_add: Vec::new(),
        no_new_privileges: true,
        read_only_rootfs: true,
        tmpfs: BTreeMap::from([(
            SIDECAR_TMPFS.to_owned(),
            format!("rw,noexec,nosuid,nodev,size={tmp_mib}m"),
        )]),
        memory_bytes: memory_mib << 20,
        pids_limit: pids,
        sysctls: BTreeMap::new(),
        dns: None,
    }
}

fn sink_dns() -> DnsPlan {
    DnsPlan {
        servers: vec![DNS_SINK.to_owned()],
        options: DNS_OPTIONS.iter().map(|o| (*o).to_owned()).collect(),
    }
}

fn no_ipv6_sysctls() -> BTreeMap<String, String> {
    NO_IPV6_SYSCTLS
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
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
    workspace: Option<&WorkspacePlan>,
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
    // Root-owned and world-readable, written before the agent starts: the
    // agent never runs anything as root to trust the CA.
    let mut files = vec![
        PlannedFile {
            path: AGENT_CA_PATH.into(),
            mode: 0o644,
            uid: 0,
            source: FileSource::CaCert,
        },
        PlannedFile {
            path: AGENT_CA_BUNDLE.into(),
            mode: 0o644,
            uid: 0,
            source: FileSource::TrustBundle,
        },
    ];
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
        // Protect mode: the directory itself; its guards are mounted at
        // launch. Copy mode: nothing from the host (copied in instead).
        mounts: workspace
            .filter(|w| w.mode == WorkspaceMode::Protect)
            .map(|w| Mount {
                source: w.host.clone(),
                target: WORKSPACE.into(),
                read_only: false,
            })
            .into_iter()
            .collect(),
        volumes: Vec::new(),
        confinement: Confinement {
            cap_drop: vec![CAP_DROP_ALL.to_owned()],
            cap_add: Vec::new(),
            no_new_privileges: true,
            // The agent installs and builds things: its root stays writable
            // (nothing there reaches the host).
            read_only_rootfs: false,
            tmpfs: BTreeMap::new(),
            memory_bytes: bottle.limits().memory().bytes(),
            pids_limit: bottle.limits().pids(),
            sysctls: no_ipv6_sysctls(),
            dns: Some(sink_dns()),
        },
        health: None,
        labels,
    }
}

fn route_summaries(agent: &Agent) -> Vec<RouteSummary> {
    let bottle = agent.bottle();
    bottle
        .effective_routes()
        .routes()
        .iter()
        .map(|r| route_summary(r, bottle.token_slots()))
        .collect()
}

fn route_summary(r: &manifest::routes::Route, slots: &[manifest::TokenSlot]) -> RouteSummary {
    let token_ref_of = |token_env: &str| {
        slots
            .iter()
            .find(|s| s.token_env == token_env)
            .map(|s| s.token_ref.clone())
    };
    RouteSummary {
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
        ports: r.ports.clone(),
        allow_private: r.allow_private,
    }
}

#[cfg(test)]
mod tests;
