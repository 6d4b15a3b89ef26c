//! Image preparation: the Debian base (built from a digest-pinned Debian
//! image when the engine can pull it, else debootstrap from the host's
//! mirror and import), the sidecar images built from the workspace's own
//! binaries, and the agent image with Claude Code, each tagged by a content
//! hash of its inputs so it is rebuilt only when they change.
//!
//! Tags: `claude-bottle/base:bookworm-<hash>`, and
//! `claude-bottle/<component>:<hash>` where the hash covers the base tag,
//! the Dockerfile and what the context adds (the binary; for the agent, the
//! Claude Code tarball's sha256). No Rust toolchain runs inside Docker and
//! no sidecar or agent Dockerfile `RUN` needs the network: every package is
//! in the base. Sidecar images are FROM scratch: the binary, the libraries
//! it needs, users, CA roots and the contract directories.
//!
//! Is not: a registry client. The only pulls are the pinned Debian image
//! (for the base) and pipelock's pinned image.

pub mod claude_code;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::engine::docker::{DockerError, Engine};
use crate::plan::identity::{Component, LABEL_COMPONENT, LABEL_MANAGED};

/// The Debian suite of the base image (the host's glibc-linked release
/// binaries run on it).
pub const SUITE: &str = "bookworm";
/// Packages installed into the base: what the sidecar images copy out (git
/// for git-gate, ca-certificates) and what the agent needs (curl, git,
/// python3 for test clients, ca-certificates for the bottle CA, Node.js for
/// Claude Code).
pub const BASE_PACKAGES: &[&str] = &["ca-certificates", "curl", "git", "nodejs", "python3"];
/// Repository of the base image.
pub const BASE_REPO: &str = "claude-bottle/base";
/// The Debian image the base is built from when the engine can pull it:
/// `debian:bookworm-slim`, pinned by the digest of its multi-platform index.
pub const DEFAULT_DEBIAN_IMAGE: &str =
    "debian:bookworm-slim@sha256:1209d8fd77def86ceb6663deef7956481cc6c14a25e1e64daec12c0ceffcc19d";
/// The environment variable naming the Debian image (`none`: debootstrap only).
pub const DEBIAN_IMAGE_ENV: &str = "CLAUDE_BOTTLE_DEBIAN_IMAGE";
/// Image label: how the base was made (`debootstrap`, or the pulled image).
pub const LABEL_BASE_SOURCE: &str = "dev.claude-bottle.base-source";
/// Label on the first stage of a sidecar build: the tag it was built for,
/// so the stage image is removed once the build is done.
pub const LABEL_STAGE_OF: &str = "dev.claude-bottle.stage-of";
/// Bumped when the way images are made changes, to invalidate every cache.
const RECIPE_VERSION: &str = "claude-bottle-images-v3";
const PATH_ENV: &str = "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const DOCKERFILE_EGRESS: &str = include_str!("../../../../images/egress-proxy/Dockerfile");
const DOCKERFILE_GIT_GATE: &str = include_str!("../../../../images/git-gate/Dockerfile");
const DOCKERFILE_SUPERVISE: &str = include_str!("../../../../images/supervise/Dockerfile");
const DOCKERFILE_AGENT: &str = include_str!("../../../../images/agent/Dockerfile");
const DOCKERFILE_BASE: &str = include_str!("../../../../images/base/Dockerfile");
/// The first stage of every sidecar image (images/sidecar-rootfs.sh).
const SIDECAR_ROOTFS: &str = include_str!("../../../../images/sidecar-rootfs.sh");
const SIDECAR_ROOTFS_NAME: &str = "sidecar-rootfs.sh";

/// Why an image could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A Docker operation failed.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// The base is missing and `--offline` forbids making it.
    #[error(
        "base image {tag} is missing and --offline forbids creating it (it needs the Debian mirror, or a registry to pull {DEFAULT_DEBIAN_IMAGE} from); run `launcher images build` without --offline once"
    )]
    OfflineBaseMissing {
        /// The tag looked for.
        tag: String,
    },
    /// The host's apt configuration names no mirror.
    #[error(transparent)]
    Mirror(#[from] crate::engine::apt::AptError),
    /// debootstrap could not run or failed.
    #[error("creating base image {tag} with debootstrap: {message}")]
    Debootstrap {
        /// The tag being made.
        tag: String,
        /// What went wrong, with debootstrap's last output lines.
        message: String,
    },
    /// Neither way of making the base worked.
    #[error(
        "base image {tag} could not be made: building it from {image} failed ({pull}), and so did the fallback: {debootstrap}"
    )]
    BaseUnavailable {
        /// The tag being made.
        tag: String,
        /// The Debian image tried first.
        image: String,
        /// Why that failed.
        pull: String,
        /// Why debootstrap failed.
        debootstrap: Box<ImageError>,
    },
    /// The Debian image reference is not pinned by digest.
    #[error(
        "Debian image {0:?} is not pinned by digest; expected REPOSITORY[:TAG]@sha256:<64 lowercase hex digits>, e.g. {DEFAULT_DEBIAN_IMAGE}, or `none` for debootstrap only (set with --debian-image or {DEBIAN_IMAGE_ENV})"
    )]
    DebianNotPinned(String),
    /// The Claude Code tarball is not usable.
    #[error(transparent)]
    ClaudeCode(#[from] claude_code::TarballError),
    /// A host file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The build context could not be assembled.
    #[error("assembling the build context of {component}: {source}")]
    Context {
        /// Which image.
        component: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The manifest names an image that is not present (nothing is pulled).
    #[error(
        "agent image {0} is not present in the Docker engine and the launcher never pulls; load or build it first"
    )]
    AgentImageMissing(String),
    /// The pinned pipelock image is not present and could not be pulled.
    #[error(
        "pipelock image {image} is not present and pulling it failed ({message}); on an air-gapped engine `docker load` it on a connected machine's export, choose another pinned image with --pipelock-image / CLAUDE_BOTTLE_PIPELOCK_IMAGE, or set `pipelock: false` (egress-proxy's own DLP scanning stays on)"
    )]
    PipelockPull {
        /// The image reference.
        image: String,
        /// Docker's error.
        message: String,
    },
}

/// Where images come from.
#[derive(Clone, Debug)]
pub struct ImageOptions {
    /// Directory holding the daemon binaries (`egress-proxy`, `git-gate`,
    /// `supervise`), normally the launcher's own directory
    /// (`target/release`).
    pub bin_dir: PathBuf,
    /// Never use the network: no Debian mirror, no pull, no npm registry.
    pub offline: bool,
    /// Mirror override (else the host's apt configuration).
    pub mirror: Option<String>,
    /// Root of the apt configuration (`/`; a temp dir in tests).
    pub apt_root: PathBuf,
    /// The digest-pinned Debian image the base is built from when it can be
    /// pulled; `None`: debootstrap only.
    pub debian_image: Option<String>,
    /// Where Claude Code for the default agent image comes from.
    pub claude_code: claude_code::Source,
    /// Rebuild a default agent image that has no Claude Code when the
    /// registry may be asked again (`launcher images build`).
    pub retry_claude_code: bool,
    /// Extra labels on every image built (tests label their runs).
    pub labels: BTreeMap<String, String>,
}

impl ImageOptions {
    /// The options of a launcher command: `--claude-code` (else
    /// [`claude_code::ENV`]) and [`DEBIAN_IMAGE_ENV`] read through `env`;
    /// the host's apt configuration for the mirror.
    pub fn new(
        bin_dir: PathBuf,
        offline: bool,
        claude_code: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ImageError> {
        Ok(Self {
            bin_dir,
            offline,
            mirror: None,
            apt_root: PathBuf::from("/"),
            debian_image: debian_image(None, &env)?,
            claude_code: claude_code::Source::from_flag_or_env(claude_code, &env),
            retry_claude_code: false,
            labels: BTreeMap::new(),
        })
    }
}

/// The Debian image for the base: the flag, else [`DEBIAN_IMAGE_ENV`],
/// else [`DEFAULT_DEBIAN_IMAGE`]; `none` means debootstrap only. Refused
/// unless pinned by digest.
pub fn debian_image(
    flag: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, ImageError> {
    let image = match flag {
        Some(f) => f.to_owned(),
        None => env(DEBIAN_IMAGE_ENV)
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_DEBIAN_IMAGE.to_owned()),
    };
    if image == "none" {
        return Ok(None);
    }
    crate::plan::validate_pinned_image(&image)
        .map_err(|_| ImageError::DebianNotPinned(image.clone()))?;
    Ok(Some(image))
}

/// The agent image the manifest asks for, paths already resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentImage {
    /// `images/agent/Dockerfile`.
    Default,
    /// An existing image reference.
    Existing(String),
    /// A Dockerfile; its directory is the build context.
    Dockerfile(PathBuf),
}

/// Whether the agent image has Claude Code, from its
/// [`claude_code::LABEL_VERSION`] label (an image built FROM the default
/// agent image inherits it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ClaudeCodeStatus {
    /// No label (an image the launcher did not build), or not looked at.
    #[default]
    Unknown,
    /// This version is installed (`claude --version`).
    Installed(String),
    /// Built without it; [`claude_code::missing_hint`] says how to add it.
    Missing,
}

impl ClaudeCodeStatus {
    /// The status a label value means.
    pub fn from_label(value: Option<&str>) -> Self {
        match value {
            None | Some("") => Self::Unknown,
            Some(claude_code::NONE) => Self::Missing,
            Some(v) => Self::Installed(v.to_owned()),
        }
    }
}

/// The images of one launch: a tag per component that can run, a reason
/// per component that cannot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageSet {
    /// Component → image reference.
    pub tags: BTreeMap<Component, String>,
    /// Component → why it has no image.
    pub unavailable: BTreeMap<Component, String>,
    /// Whether the agent image has Claude Code.
    pub claude_code: ClaudeCodeStatus,
}

/// The daemon binary of a sidecar component.
pub fn binary_name(c: Component) -> Option<&'static str> {
    match c {
        Component::Egress => Some("egress-proxy"),
        Component::GitGate => Some("git-gate"),
        Component::Supervise => Some("supervise"),
        Component::Pipelock | Component::Agent => None,
    }
}

fn dockerfile(c: Component) -> Option<&'static str> {
    match c {
        Component::Egress => Some(DOCKERFILE_EGRESS),
        Component::GitGate => Some(DOCKERFILE_GIT_GATE),
        Component::Supervise => Some(DOCKERFILE_SUPERVISE),
        Component::Agent => Some(DOCKERFILE_AGENT),
        Component::Pipelock => None,
    }
}

fn hex12(h: Sha256) -> String {
    h.finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The base image tag: a hash of the suite, variant and package list
/// (however the base is made: from the pinned Debian image or debootstrap).
pub fn base_tag() -> String {
    let mut h = Sha256::new();
    h.update(RECIPE_VERSION);
    h.update(SUITE);
    h.update("minbase");
    for p in BASE_PACKAGES {
        h.update(p);
        h.update([0]);
    }
    format!("{BASE_REPO}:{SUITE}-{}", hex12(h))
}

/// `claude-bottle/<component>:<hash>` over the base tag, the Dockerfile and
/// the build context's other contents.
pub fn content_tag(component: Component, base: &str, dockerfile: &str, payload: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(RECIPE_VERSION);
    h.update(component.as_str());
    h.update([0]);
    h.update(base);
    h.update([0]);
    h.update(dockerfile);
    h.update([0]);
    h.update(payload);
    format!("claude-bottle/{}:{}", component.as_str(), hex12(h))
}

/// What a sidecar's tag hashes besides its binary: the Dockerfile and the
/// first-stage script.
fn sidecar_recipe(dockerfile: &str) -> String {
    format!("{dockerfile}\0{SIDECAR_ROOTFS}")
}

/// What the default agent image's tag hashes besides its Dockerfile: the
/// Claude Code tarball's sha256, or `none` (then the registry may be asked
/// at build time; the image's label says what it got).
fn agent_payload(package: Option<&claude_code::Package>) -> Vec<u8> {
    let id = package.map_or(claude_code::NONE, |p| p.sha256.as_str());
    format!("claude-code:{id}").into_bytes()
}

/// A build context: `Dockerfile` plus, for sidecars, the binary (0755).
pub fn build_context(dockerfile: &str, binary: Option<(&str, &[u8])>) -> std::io::Result<Vec<u8>> {
    let mut b = context_builder(dockerfile)?;
    if let Some((name, bytes)) = binary {
        append_file(&mut b, name, 0o755, bytes)?;
    }
    b.into_inner()
}

fn context_builder(dockerfile: &str) -> std::io::Result<tar::Builder<Vec<u8>>> {
    let mut b = tar::Builder::new(Vec::new());
    append_file(&mut b, "Dockerfile", 0o644, dockerfile.as_bytes())?;
    Ok(b)
}

fn append_file(
    b: &mut tar::Builder<Vec<u8>>,
    name: &str,
    mode: u32,
    data: &[u8],
) -> std::io::Result<()> {
    let mut hd = tar::Header::new_gnu();
    hd.set_entry_type(tar::EntryType::Regular);
    hd.set_size(data.len() as u64);
    hd.set_mode(mode);
    hd.set_mtime(0);
    b.append_data(&mut hd, name, data)
}

/// A sidecar's context: its Dockerfile, the first-stage script and the
/// binary.
fn sidecar_context(dockerfile: &str, binary: &str, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut b = context_builder(dockerfile)?;
    append_file(
        &mut b,
        SIDECAR_ROOTFS_NAME,
        0o755,
        SIDECAR_ROOTFS.as_bytes(),
    )?;
    append_file(&mut b, binary, 0o755, bytes)?;
    b.into_inner()
}

/// The context of the default agent image, or of a Dockerfile derived
/// from it (a capability approval's): the Dockerfile and the Claude Code
/// overlay (empty without a package), so its `COPY claude-code/ /` works.
pub fn agent_context(
    dockerfile: &str,
    package: Option<&claude_code::Package>,
) -> std::io::Result<Vec<u8>> {
    let mut b = context_builder(dockerfile)?;
    match package {
        Some(p) => p.append_to(&mut b)?,
        None => claude_code::append_empty(&mut b)?,
    }
    b.into_inner()
}

/// The Claude Code package of an operator's tarball (`--claude-code`), read
/// and validated; `None` for any other source.
pub fn tarball_package(opts: &ImageOptions) -> Result<Option<claude_code::Package>, ImageError> {
    match &opts.claude_code {
        claude_code::Source::Tarball(path) => Ok(Some(claude_code::read(path)?)),
        claude_code::Source::Registry | claude_code::Source::Skip => Ok(None),
    }
}

/// Finds a daemon binary and checks it runs (`--help` exits 0), so a stub
/// that refuses to start is reported as unavailable instead of failing a
/// readiness check later.
pub async fn locate_binary(bin_dir: &Path, name: &str) -> Result<PathBuf, String> {
    let path = bin_dir.join(name);
    if !path.is_file() {
        return Err(format!(
            "{name} binary not found at {}; build it with `cargo build --release -p {name}` (or pass --bin-dir)",
            path.display()
        ));
    }
    let out = tokio::process::Command::new(&path)
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("{} cannot be run: {e}", path.display()))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "{} is not usable yet: {}",
            path.display(),
            msg.trim()
        ));
    }
    Ok(path)
}

/// Tags for every component, computed without Docker (for `--dry-run`):
/// sidecars whose binary is missing or unusable are unavailable. A Claude
/// Code tarball is read and validated here, so a bad one fails early.
pub async fn planned(opts: &ImageOptions, agent: &AgentImage) -> Result<ImageSet, ImageError> {
    Ok(plan_images(opts, agent).await?.0)
}

/// [`planned`], plus the validated Claude Code package when one was given.
async fn plan_images(
    opts: &ImageOptions,
    agent: &AgentImage,
) -> Result<(ImageSet, Option<claude_code::Package>), ImageError> {
    let base = base_tag();
    let mut set = ImageSet::default();
    for c in [Component::Egress, Component::GitGate, Component::Supervise] {
        let (Some(bin), Some(df)) = (binary_name(c), dockerfile(c)) else {
            continue;
        };
        match locate_binary(&opts.bin_dir, bin).await {
            Ok(path) => {
                let bytes = read(&path)?;
                set.tags
                    .insert(c, content_tag(c, &base, &sidecar_recipe(df), &bytes));
            }
            Err(reason) => {
                set.unavailable.insert(c, reason);
            }
        }
    }
    set.unavailable.insert(
        Component::Pipelock,
        "pipelock's image is pulled by digest, not built; `launcher start`/`run` resolve it (--pipelock-image, CLAUDE_BOTTLE_PIPELOCK_IMAGE)".into(),
    );
    let mut package = None;
    let agent_tag = match agent {
        AgentImage::Default => {
            package = tarball_package(opts)?;
            if let Some(p) = &package {
                set.claude_code = ClaudeCodeStatus::Installed(p.version.clone());
            }
            content_tag(
                Component::Agent,
                &base,
                DOCKERFILE_AGENT,
                &agent_payload(package.as_ref()),
            )
        }
        AgentImage::Existing(r) => r.clone(),
        AgentImage::Dockerfile(path) => {
            let (df, ctx) = dockerfile_context(path)?;
            content_tag(Component::Agent, &base, &df, &ctx)
        }
    };
    set.tags.insert(Component::Agent, agent_tag);
    Ok((set, package))
}

/// The text of the Dockerfile the agent image is built from: the embedded
/// `images/agent/Dockerfile`, or the agent's own; `None` for an existing
/// image reference (no Dockerfile is known).
pub fn agent_dockerfile(agent: &AgentImage) -> Result<Option<String>, ImageError> {
    match agent {
        AgentImage::Default => Ok(Some(DOCKERFILE_AGENT.to_owned())),
        AgentImage::Existing(_) => Ok(None),
        AgentImage::Dockerfile(path) => {
            std::fs::read_to_string(path)
                .map(Some)
                .map_err(|source| ImageError::Io {
                    action: "reading agent Dockerfile",
                    path: path.clone(),
                    source,
                })
        }
    }
}

/// The environment variable naming the pipelock image.
pub const PIPELOCK_IMAGE_ENV: &str = "CLAUDE_BOTTLE_PIPELOCK_IMAGE";

/// The pipelock image to use: the flag, else [`PIPELOCK_IMAGE_ENV`], else
/// [`crate::plan::DEFAULT_PIPELOCK_IMAGE`]; refused unless pinned by digest.
pub fn pipelock_image(
    flag: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<String, crate::plan::PlanError> {
    let image = match flag {
        Some(f) => f.to_owned(),
        None => env(PIPELOCK_IMAGE_ENV)
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| crate::plan::DEFAULT_PIPELOCK_IMAGE.to_owned()),
    };
    crate::plan::validate_pinned_image(&image)?;
    Ok(image)
}

/// Adds the pipelock `image` to `set`. With an engine the image must exist
/// afterwards: present already, or pulled now (by digest). An engine that
/// cannot pull (air-gapped) gets a clear error with the way out.
pub async fn add_pipelock(
    engine: Option<&Engine>,
    image: &str,
    set: &mut ImageSet,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<(), ImageError> {
    if let Some(engine) = engine {
        if engine.image_exists(image).await? {
            progress(&format!("pipelock: {image} is present"));
        } else {
            progress(&format!("pipelock: pulling {image}"));
            engine
                .pull_image(image, progress)
                .await
                .map_err(|e| ImageError::PipelockPull {
                    image: image.to_owned(),
                    message: e.to_string(),
                })?;
        }
    }
    set.unavailable.remove(&Component::Pipelock);
    set.tags.insert(Component::Pipelock, image.to_owned());
    Ok(())
}

/// A progress callback several builds share.
type Say<'a> = &'a (dyn Fn(&str) + Sync);

/// Makes sure every image of [`planned`] exists, building what is missing:
/// the base first, then the sidecars and the agent side by side.
/// `progress` receives one line per step (and build output, prefixed with
/// the component).
pub async fn ensure(
    engine: &Engine,
    opts: &ImageOptions,
    agent: &AgentImage,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<ImageSet, ImageError> {
    let (mut set, package) = plan_images(opts, agent).await?;
    let base = ensure_base(engine, opts, progress).await?;
    let shared = Mutex::new(progress);
    let say = |line: &str| {
        if let Ok(mut p) = shared.lock() {
            (*p)(line);
        }
    };
    let say: Say<'_> = &say;
    let builds = set.tags.iter().map(|(c, tag)| {
        let job = Build {
            engine,
            opts,
            agent,
            package: package.as_ref(),
            base: &base,
            component: *c,
            tag,
        };
        async move { job.run(say).await }
    });
    for result in futures_util::future::join_all(builds).await {
        result?;
    }
    for (c, why) in &set.unavailable {
        say(&format!("{c}: skipped ({why})"));
    }
    if let Some(tag) = set.tags.get(&Component::Agent) {
        set.claude_code = ClaudeCodeStatus::from_label(
            image_label(engine, tag, claude_code::LABEL_VERSION)
                .await?
                .as_deref(),
        );
    }
    Ok(set)
}

/// The value of `label` on `image`, if it has it.
pub async fn image_label(
    engine: &Engine,
    image: &str,
    label: &str,
) -> Result<Option<String>, ImageError> {
    let info = engine
        .client()
        .inspect_image(image)
        .await
        .map_err(|source| {
            ImageError::Docker(DockerError::InspectImage {
                image: image.to_owned(),
                source,
            })
        })?;
    Ok(info
        .config
        .and_then(|c| c.labels)
        .and_then(|mut l| l.remove(label)))
}

/// One image of [`ensure`].
struct Build<'a> {
    engine: &'a Engine,
    opts: &'a ImageOptions,
    agent: &'a AgentImage,
    package: Option<&'a claude_code::Package>,
    base: &'a str,
    component: Component,
    tag: &'a str,
}

impl Build<'_> {
    async fn run(&self, say: Say<'_>) -> Result<(), ImageError> {
        let (c, tag) = (self.component, self.tag);
        if self.engine.image_exists(tag).await? && !self.retry_claude_code().await? {
            say(&format!("{c}: {tag} is up to date"));
            return Ok(());
        }
        let ctx_err = |source| ImageError::Context {
            component: c.to_string(),
            source,
        };
        let mut labels: HashMap<String, String> = self.opts.labels.clone().into_iter().collect();
        labels.insert(LABEL_MANAGED.to_owned(), "true".to_owned());
        labels.insert(LABEL_COMPONENT.to_owned(), c.to_string());
        let mut build_args = HashMap::from([("BASE".to_owned(), self.base.to_owned())]);
        let context = match (c, self.agent) {
            (Component::Agent, AgentImage::Existing(r)) => {
                return Err(ImageError::AgentImageMissing(r.clone()));
            }
            (Component::Agent, AgentImage::Dockerfile(path)) => dockerfile_context(path)?.1,
            (Component::Agent, AgentImage::Default) => {
                let fetched = self.claude_code(say).await;
                let package = self.package.or(fetched.as_ref());
                labels.insert(
                    claude_code::LABEL_VERSION.to_owned(),
                    package.map_or(claude_code::NONE.to_owned(), |p| p.version.clone()),
                );
                if let Some(p) = package {
                    labels.insert(claude_code::LABEL_SHA256.to_owned(), p.sha256.clone());
                }
                agent_context(DOCKERFILE_AGENT, package).map_err(ctx_err)?
            }
            _ => {
                let (Some(bin), Some(df)) = (binary_name(c), dockerfile(c)) else {
                    return Ok(());
                };
                let bytes = read(&self.opts.bin_dir.join(bin))?;
                build_args.insert("STAGE_OF".to_owned(), tag.to_owned());
                sidecar_context(df, bin, &bytes).map_err(ctx_err)?
            }
        };
        say(&format!("{c}: building {tag}"));
        let mut inner = |line: &str| say(&format!("{c}: {line}"));
        let built = self
            .engine
            .build_image(context, tag, build_args, labels, &mut inner)
            .await;
        if c != Component::Agent {
            remove_stage_images(self.engine, tag).await;
        }
        built?;
        say(&format!("{c}: {tag} ready"));
        Ok(())
    }

    /// Whether an existing default agent image without Claude Code is
    /// rebuilt because the registry may be asked again.
    async fn retry_claude_code(&self) -> Result<bool, ImageError> {
        if !(self.component == Component::Agent
            && *self.agent == AgentImage::Default
            && self.opts.retry_claude_code
            && !self.opts.offline
            && self.opts.claude_code == claude_code::Source::Registry)
        {
            return Ok(false);
        }
        let label = image_label(self.engine, self.tag, claude_code::LABEL_VERSION).await?;
        Ok(label.as_deref() == Some(claude_code::NONE))
    }

    /// Claude Code from the npm registry through the host's `npm pack`,
    /// when no tarball was given and the registry may be asked; `None`
    /// (with the reason and the way to add it) otherwise.
    async fn claude_code(&self, say: Say<'_>) -> Option<claude_code::Package> {
        let missing = |why: &str| {
            say(&format!(
                "agent: the image will not contain Claude Code: {why}; {}",
                claude_code::missing_hint()
            ));
        };
        match &self.opts.claude_code {
            claude_code::Source::Tarball(_) => return None, // in `self.package`
            claude_code::Source::Skip => {
                missing("--claude-code none");
                return None;
            }
            claude_code::Source::Registry if self.opts.offline => {
                missing("--offline forbids asking the npm registry");
                return None;
            }
            claude_code::Source::Registry => {}
        }
        say(&format!(
            "agent: fetching {} with the host's `npm pack` (npm's configured registry)",
            claude_code::PACKAGE
        ));
        let dir = match tempfile::Builder::new()
            .prefix("claude-bottle-npm-")
            .tempdir()
        {
            Ok(d) => d,
            Err(e) => {
                missing(&format!("no temporary directory for npm ({e})"));
                return None;
            }
        };
        let fetched = match claude_code::npm_pack(dir.path()).await {
            Ok(path) => claude_code::read(&path).map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match fetched {
            Ok(p) => {
                say(&format!(
                    "agent: installing Claude Code {} (sha256 {})",
                    p.version, p.sha256
                ));
                Some(p)
            }
            Err(e) => {
                missing(&format!("the npm registry could not be used ({e})"));
                None
            }
        }
    }
}

/// Removes the first-stage image of a sidecar build (labelled with the tag
/// it was built for), so a multi-stage build leaves nothing untagged.
async fn remove_stage_images(engine: &Engine, tag: &str) {
    let filters = HashMap::from([
        ("label".to_owned(), vec![format!("{LABEL_STAGE_OF}={tag}")]),
        ("dangling".to_owned(), vec!["true".to_owned()]),
    ]);
    let opts = bollard::query_parameters::ListImagesOptionsBuilder::default()
        .filters(&filters)
        .build();
    let Ok(stages) = engine.client().list_images(Some(opts)).await else {
        return;
    };
    for stage in stages {
        let _ = engine
            .client()
            .remove_image(
                &stage.id,
                None::<bollard::query_parameters::RemoveImageOptions>,
                None,
            )
            .await;
    }
}

/// Makes sure the base image exists. When missing: built from the pinned
/// Debian image when the engine can pull it, else (and offline never)
/// debootstrap from the host's Debian mirror and import. Returns its tag.
pub async fn ensure_base(
    engine: &Engine,
    opts: &ImageOptions,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<String, ImageError> {
    let tag = base_tag();
    if engine.image_exists(&tag).await? {
        progress(&format!("base: {tag} is up to date"));
        return Ok(tag);
    }
    if opts.offline {
        return Err(ImageError::OfflineBaseMissing { tag });
    }
    let Some(image) = &opts.debian_image else {
        debootstrap_base(engine, opts, &tag, progress).await?;
        return Ok(tag);
    };
    let base = BaseBuild {
        image,
        packages: BASE_PACKAGES,
        tag: &tag,
        labels: &opts.labels,
    };
    let pull = match base.run(engine, progress).await {
        Ok(()) => return Ok(tag),
        Err(e) => e.to_string(),
    };
    progress(&format!(
        "base: building from {image} failed ({pull}); falling back to debootstrap"
    ));
    match debootstrap_base(engine, opts, &tag, progress).await {
        Ok(()) => Ok(tag),
        Err(e) => Err(ImageError::BaseUnavailable {
            tag,
            image: image.clone(),
            pull,
            debootstrap: Box::new(e),
        }),
    }
}

/// A base image built from a digest-pinned Debian image (pulled when not
/// present), installing the packages that are not already installed
/// through the image's own apt sources (`images/base/Dockerfile`).
#[derive(Clone, Copy, Debug)]
pub struct BaseBuild<'a> {
    /// The Debian image, `REPOSITORY[:TAG]@sha256:DIGEST`.
    pub image: &'a str,
    /// The packages the base must have.
    pub packages: &'a [&'a str],
    /// The tag to build.
    pub tag: &'a str,
    /// Extra labels on the image.
    pub labels: &'a BTreeMap<String, String>,
}

impl BaseBuild<'_> {
    /// Pulls (when missing) and builds.
    pub async fn run(
        &self,
        engine: &Engine,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(), ImageError> {
        let (image, tag) = (self.image, self.tag);
        crate::plan::validate_pinned_image(image)
            .map_err(|_| ImageError::DebianNotPinned(image.to_owned()))?;
        if engine.image_exists(image).await? {
            progress(&format!("base: {image} is present"));
        } else {
            progress(&format!("base: {tag} is missing; pulling {image}"));
            let mut inner = |line: &str| progress(&format!("base: {line}"));
            engine.pull_image(image, &mut inner).await?;
        }
        progress(&format!(
            "base: building {tag} from {image} (+ {})",
            self.packages.join(",")
        ));
        let context =
            build_context(DOCKERFILE_BASE, None).map_err(|source| ImageError::Context {
                component: "base".into(),
                source,
            })?;
        let args = HashMap::from([
            ("DEBIAN".to_owned(), image.to_owned()),
            ("PACKAGES".to_owned(), self.packages.join(" ")),
        ]);
        let mut labels: HashMap<String, String> = self.labels.clone().into_iter().collect();
        labels.insert(LABEL_MANAGED.to_owned(), "true".to_owned());
        labels.insert(LABEL_BASE_SOURCE.to_owned(), image.to_owned());
        let mut inner = |line: &str| progress(&format!("base: {line}"));
        engine
            .build_image(context, tag, args, labels, &mut inner)
            .await?;
        progress(&format!("base: {tag} ready"));
        Ok(())
    }
}

/// debootstrap from the host's Debian mirror, then import as `tag`.
async fn debootstrap_base(
    engine: &Engine,
    opts: &ImageOptions,
    tag: &str,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<(), ImageError> {
    let mirror = match &opts.mirror {
        Some(m) => m.clone(),
        None => crate::engine::apt::host_mirror(&opts.apt_root, SUITE)?,
    };
    let deboot_err = |message: String| ImageError::Debootstrap {
        tag: tag.to_owned(),
        message,
    };
    let work = tempfile::Builder::new()
        .prefix("claude-bottle-base-")
        .tempdir()
        .map_err(|source| ImageError::Io {
            action: "creating a work directory in",
            path: std::env::temp_dir(),
            source,
        })?;
    let rootfs = work.path().join("rootfs");
    // dpkg in the new root skips its fsync calls while debootstrap installs
    // (a crash means starting over anyway); removed before the import.
    let dpkg_cfg = rootfs.join("etc/dpkg/dpkg.cfg.d");
    let unsafe_io = dpkg_cfg.join("claude-bottle-unsafe-io");
    std::fs::create_dir_all(&dpkg_cfg)
        .and_then(|()| std::fs::write(&unsafe_io, "force-unsafe-io\n"))
        .map_err(|source| ImageError::Io {
            action: "writing",
            path: unsafe_io.clone(),
            source,
        })?;
    progress(&format!(
        "base: {tag} is missing; creating it with debootstrap ({SUITE}, minbase + {}) — a few minutes",
        BASE_PACKAGES.join(",")
    ));
    let mut child = tokio::process::Command::new("debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--include={}", BASE_PACKAGES.join(",")))
        .arg(SUITE)
        .arg(&rootfs)
        .arg(&mirror)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            deboot_err(format!(
                "cannot run debootstrap: {e}; install it (apt-get install debootstrap) and run as root"
            ))
        })?;
    let mut tail: Vec<String> = Vec::new();
    if let Some(out) = child.stdout.take() {
        let mut lines = BufReader::new(out).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            // Per-package lines are noise; they stay in the error tail.
            let per_package = [
                "I: Retrieving ",
                "I: Validating ",
                "I: Unpacking ",
                "I: Configuring ",
                "I: Extracting ",
            ]
            .iter()
            .any(|p| line.starts_with(p));
            if !per_package {
                progress(&format!("base: {line}"));
            }
            tail.push(line);
            if tail.len() > 20 {
                tail.remove(0);
            }
        }
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| deboot_err(format!("waiting for debootstrap: {e}")))?;
    if !out.status.success() {
        tail.extend(
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .map(str::to_owned),
        );
        return Err(deboot_err(format!(
            "debootstrap exited with {} (it needs root and the mirror); last output:\n{}",
            out.status,
            tail.join("\n")
        )));
    }
    let _ = std::fs::remove_file(&unsafe_io);
    slim(&rootfs);
    progress(&format!("base: importing {tag}"));
    // tar streams straight into the import: no copy of the root on disk.
    let mut tar = tokio::process::Command::new("tar")
        .arg("--numeric-owner")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg("-")
        .arg(".")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| deboot_err(format!("running tar: {e}")))?;
    let stdout = tar
        .stdout
        .take()
        .ok_or_else(|| deboot_err("tar has no stdout".into()))?;
    let stream = tokio_util::io::ReaderStream::new(stdout);
    let (repo, t) = tag.split_once(':').unwrap_or((BASE_REPO, "latest"));
    let mut changes = vec![
        PATH_ENV.to_owned(),
        format!("LABEL {LABEL_MANAGED}=true"),
        format!("LABEL {LABEL_BASE_SOURCE}=debootstrap"),
    ];
    changes.extend(opts.labels.iter().map(|(k, v)| format!("LABEL {k}={v}")));
    let imported = engine.import_rootfs(stream, repo, t, changes).await;
    let tar_out = tar
        .wait_with_output()
        .await
        .map_err(|e| deboot_err(format!("waiting for tar: {e}")))?;
    if !tar_out.status.success() {
        // A truncated stream may still have been imported: never keep it.
        let _ = remove_image_tag(engine, tag).await;
        return Err(deboot_err(format!(
            "tar of the root file system exited with {}: {}",
            tar_out.status,
            String::from_utf8_lossy(&tar_out.stderr).trim()
        )));
    }
    imported?;
    progress(&format!("base: {tag} ready"));
    Ok(())
}

/// What a debootstrapped root does not need in an image (as Debian's own
/// slim images): the downloaded packages and indexes, documentation but
/// the copyright files, manual pages, translations. About 70 MB.
fn slim(rootfs: &Path) {
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        remove_children(&rootfs.join(dir), |p| p.is_file());
    }
    for dir in ["usr/share/man", "usr/share/locale", "usr/share/info"] {
        remove_children(&rootfs.join(dir), |_| true);
    }
    // usr/share/doc/<package>/copyright stays.
    if let Ok(packages) = std::fs::read_dir(rootfs.join("usr/share/doc")) {
        for package in packages.filter_map(Result::ok) {
            remove_children(&package.path(), |p| {
                p.file_name().is_none_or(|n| n != "copyright")
            });
        }
    }
}

/// Removes what `remove` selects directly in `dir` (files, links, trees;
/// best effort, never following a link).
fn remove_children(dir: &Path, remove: impl Fn(&Path) -> bool) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for path in entries.filter_map(Result::ok).map(|e| e.path()) {
        if !remove(&path) {
            continue;
        }
        let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        let _ = if is_dir {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
}

/// A Dockerfile's text and its directory as a build context tar.
fn dockerfile_context(path: &Path) -> Result<(String, Vec<u8>), ImageError> {
    let text = std::fs::read_to_string(path).map_err(|source| ImageError::Io {
        action: "reading agent Dockerfile",
        path: path.to_owned(),
        source,
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let ctx_err = |source| ImageError::Context {
        component: format!("agent ({})", path.display()),
        source,
    };
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", dir).map_err(ctx_err)?;
    // The named Dockerfile becomes the context's `Dockerfile`.
    let mut hd = tar::Header::new_gnu();
    hd.set_entry_type(tar::EntryType::Regular);
    hd.set_size(text.len() as u64);
    hd.set_mode(0o644);
    hd.set_mtime(0);
    b.append_data(&mut hd, "Dockerfile", text.as_bytes())
        .map_err(ctx_err)?;
    let ctx = b.into_inner().map_err(ctx_err)?;
    Ok((text, ctx))
}

fn read(path: &Path) -> Result<Vec<u8>, ImageError> {
    std::fs::read(path).map_err(|source| ImageError::Io {
        action: "reading",
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests;

/// Repositories of the images the launcher builds by content hash (the base
/// and the component images; `agent-resume` images are handled by
/// `capability`).
pub const BUILT_REPOS: &[&str] = &[
    BASE_REPO,
    "claude-bottle/egress",
    "claude-bottle/git-gate",
    "claude-bottle/supervise",
    "claude-bottle/agent",
];

/// One locally stored image, as `cleanup --images` sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredImage {
    /// Image id.
    pub id: String,
    /// Its `repo:tag` names.
    pub tags: Vec<String>,
    /// Creation time (seconds since the epoch).
    pub created: i64,
}

/// The tags of images that a newer build of the same repository replaced:
/// for each of [`BUILT_REPOS`], every image but the newest, except images a
/// container still uses (`in_use` holds image ids). Each content-hash
/// rebuild leaves its predecessor behind, so without this they accumulate.
pub fn superseded_images(images: &[StoredImage], in_use: &[String]) -> Vec<String> {
    let repo_of = |tag: &str| tag.rsplit_once(':').map(|(r, _)| r.to_owned());
    let mut out = Vec::new();
    for repo in BUILT_REPOS {
        let mut mine: Vec<&StoredImage> = images
            .iter()
            .filter(|i| i.tags.iter().any(|t| repo_of(t).as_deref() == Some(*repo)))
            .collect();
        mine.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
        for old in mine.into_iter().skip(1) {
            if in_use.contains(&old.id) {
                continue;
            }
            out.extend(
                old.tags
                    .iter()
                    .filter(|t| repo_of(t).as_deref() == Some(*repo))
                    .cloned(),
            );
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Lists our built images and the image ids any container (running or not)
/// uses, then returns [`superseded_images`].
pub async fn find_superseded_images(engine: &Engine) -> Result<Vec<String>, String> {
    let filters = HashMap::from([(
        "reference".to_owned(),
        BUILT_REPOS
            .iter()
            .map(|r| format!("{r}:*"))
            .collect::<Vec<_>>(),
    )]);
    let opts = bollard::query_parameters::ListImagesOptionsBuilder::default()
        .filters(&filters)
        .build();
    let images = engine
        .client()
        .list_images(Some(opts))
        .await
        .map_err(|e| format!("listing claude-bottle images: {e}"))?
        .into_iter()
        .map(|i| StoredImage {
            id: i.id,
            tags: i.repo_tags,
            created: i.created,
        })
        .collect::<Vec<_>>();
    let copts = bollard::query_parameters::ListContainersOptionsBuilder::default()
        .all(true)
        .build();
    let in_use = engine
        .client()
        .list_containers(Some(copts))
        .await
        .map_err(|e| format!("listing containers: {e}"))?
        .into_iter()
        .filter_map(|c| c.image_id)
        .collect::<Vec<_>>();
    Ok(superseded_images(&images, &in_use))
}

/// Removes one image by tag (never forced: an image a container uses stays).
pub async fn remove_image_tag(engine: &Engine, tag: &str) -> Result<(), String> {
    engine
        .client()
        .remove_image(
            tag,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await
        .map(|_| ())
        .map_err(|e| format!("removing image {tag}: {e}"))
}
