//! Image preparation: the Debian base (debootstrap from the host's mirror +
//! import when missing), the sidecar images built from the workspace's own
//! binaries, and the agent image, each tagged by a content hash of its
//! inputs so it is rebuilt only when they change.
//!
//! Tags: `claude-bottle/base:bookworm-<hash>`, and
//! `claude-bottle/<component>:<hash>` where the hash covers the base tag,
//! the Dockerfile and the binary. No Rust toolchain runs inside Docker and
//! no Dockerfile `RUN` needs the network: every package is installed when
//! the base root file system is made.
//!
//! Is not: a registry client. Nothing is ever pulled.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::docker::{DockerError, Engine};
use crate::identity::{Component, LABEL_COMPONENT, LABEL_MANAGED};

/// The Debian suite of the base image (the host's glibc-linked release
/// binaries run on it).
pub const SUITE: &str = "bookworm";
/// Packages installed into the base at debootstrap time: what the sidecars
/// (git for git-gate, curl for readiness checks) and the agent (curl, git,
/// python3 for test clients, ca-certificates for the bottle CA) need.
pub const BASE_PACKAGES: &[&str] = &["ca-certificates", "curl", "git", "python3"];
/// Repository of the base image.
pub const BASE_REPO: &str = "claude-bottle/base";
/// Bumped when the way images are made changes, to invalidate every cache.
const RECIPE_VERSION: &str = "claude-bottle-images-v1";
const PATH_ENV: &str = "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const DOCKERFILE_EGRESS: &str = include_str!("../../../images/egress-proxy/Dockerfile");
const DOCKERFILE_GIT_GATE: &str = include_str!("../../../images/git-gate/Dockerfile");
const DOCKERFILE_SUPERVISE: &str = include_str!("../../../images/supervise/Dockerfile");
const DOCKERFILE_AGENT: &str = include_str!("../../../images/agent/Dockerfile");

/// Why an image could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A Docker operation failed.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// The base is missing and `--offline` forbids making it.
    #[error(
        "base image {tag} is missing and --offline forbids creating it (debootstrap needs the host's Debian mirror); run `launcher images build` without --offline once"
    )]
    OfflineBaseMissing {
        /// The tag looked for.
        tag: String,
    },
    /// The host's apt configuration names no mirror.
    #[error(transparent)]
    Mirror(#[from] crate::apt::AptError),
    /// debootstrap could not run or failed.
    #[error("creating base image {tag} with debootstrap: {message}")]
    Debootstrap {
        /// The tag being made.
        tag: String,
        /// What went wrong, with debootstrap's last output lines.
        message: String,
    },
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
    /// Never contact the Debian mirror.
    pub offline: bool,
    /// Mirror override (else the host's apt configuration).
    pub mirror: Option<String>,
    /// Root of the apt configuration (`/`; a temp dir in tests).
    pub apt_root: PathBuf,
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

/// The images of one launch: a tag per component that can run, a reason
/// per component that cannot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageSet {
    /// Component → image reference.
    pub tags: BTreeMap<Component, String>,
    /// Component → why it has no image.
    pub unavailable: BTreeMap<Component, String>,
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

/// The base image tag: a hash of the suite, variant and package list.
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

/// A build context: `Dockerfile` plus, for sidecars, the binary (0755).
pub fn build_context(dockerfile: &str, binary: Option<(&str, &[u8])>) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, mode: u32, data: &[u8]| {
        let mut hd = tar::Header::new_gnu();
        hd.set_entry_type(tar::EntryType::Regular);
        hd.set_size(data.len() as u64);
        hd.set_mode(mode);
        hd.set_mtime(0);
        b.append_data(&mut hd, name, data)
    };
    add("Dockerfile", 0o644, dockerfile.as_bytes())?;
    if let Some((name, bytes)) = binary {
        add(name, 0o755, bytes)?;
    }
    b.into_inner()
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
/// sidecars whose binary is missing or unusable are unavailable.
pub async fn planned(opts: &ImageOptions, agent: &AgentImage) -> Result<ImageSet, ImageError> {
    let base = base_tag();
    let mut set = ImageSet::default();
    for c in [Component::Egress, Component::GitGate, Component::Supervise] {
        let (Some(bin), Some(df)) = (binary_name(c), dockerfile(c)) else {
            continue;
        };
        match locate_binary(&opts.bin_dir, bin).await {
            Ok(path) => {
                let bytes = read(&path)?;
                set.tags.insert(c, content_tag(c, &base, df, &bytes));
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
    let agent_tag = match agent {
        AgentImage::Default => content_tag(Component::Agent, &base, DOCKERFILE_AGENT, &[]),
        AgentImage::Existing(r) => r.clone(),
        AgentImage::Dockerfile(path) => {
            let (df, ctx) = dockerfile_context(path)?;
            content_tag(Component::Agent, &base, &df, &ctx)
        }
    };
    set.tags.insert(Component::Agent, agent_tag);
    Ok(set)
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

/// Makes sure every image of [`planned`] exists, building what is missing.
/// `progress` receives one line per step (and build output).
pub async fn ensure(
    engine: &Engine,
    opts: &ImageOptions,
    agent: &AgentImage,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<ImageSet, ImageError> {
    let set = planned(opts, agent).await?;
    let base = ensure_base(engine, opts, progress).await?;
    let build_args = HashMap::from([("BASE".to_owned(), base.clone())]);
    for (c, tag) in &set.tags {
        if engine.image_exists(tag).await? {
            progress(&format!("{c}: {tag} is up to date"));
            continue;
        }
        let context = match (c, agent) {
            (Component::Agent, AgentImage::Existing(r)) => {
                return Err(ImageError::AgentImageMissing(r.clone()));
            }
            (Component::Agent, AgentImage::Dockerfile(path)) => dockerfile_context(path)?.1,
            (Component::Agent, AgentImage::Default) => build_context(DOCKERFILE_AGENT, None)
                .map_err(|source| ImageError::Context {
                    component: c.to_string(),
                    source,
                })?,
            _ => {
                let (Some(bin), Some(df)) = (binary_name(*c), dockerfile(*c)) else {
                    continue;
                };
                let bytes = read(&opts.bin_dir.join(bin))?;
                build_context(df, Some((bin, &bytes))).map_err(|source| ImageError::Context {
                    component: c.to_string(),
                    source,
                })?
            }
        };
        progress(&format!("{c}: building {tag}"));
        let labels = HashMap::from([
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (LABEL_COMPONENT.to_owned(), c.to_string()),
        ]);
        let mut inner = |line: &str| progress(&format!("{c}: {line}"));
        engine
            .build_image(context, tag, build_args.clone(), labels, &mut inner)
            .await?;
    }
    for (c, why) in &set.unavailable {
        progress(&format!("{c}: skipped ({why})"));
    }
    Ok(set)
}

/// Makes sure the base image exists: debootstrap from the host's Debian
/// mirror and import when missing. Returns its tag.
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
    let mirror = match &opts.mirror {
        Some(m) => m.clone(),
        None => crate::apt::host_mirror(&opts.apt_root, SUITE)?,
    };
    let deboot_err = |message: String| ImageError::Debootstrap {
        tag: tag.clone(),
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
    progress(&format!(
        "base: {tag} is missing; creating it with debootstrap ({SUITE}, minbase + {}) — about a minute",
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
    progress(&format!("base: importing {tag}"));
    let tarball = work.path().join("rootfs.tar");
    let status = tokio::process::Command::new("tar")
        .arg("--numeric-owner")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .status()
        .await
        .map_err(|e| deboot_err(format!("running tar: {e}")))?;
    if !status.success() {
        return Err(deboot_err(format!(
            "tar of the root file system exited with {status}"
        )));
    }
    let file = tokio::fs::File::open(&tarball)
        .await
        .map_err(|source| ImageError::Io {
            action: "opening",
            path: tarball.clone(),
            source,
        })?;
    let stream = tokio_util::io::ReaderStream::new(file);
    let (repo, t) = tag.split_once(':').unwrap_or((BASE_REPO, "latest"));
    engine
        .import_rootfs(stream, repo, t, vec![PATH_ENV.to_owned()])
        .await?;
    progress(&format!("base: {tag} ready"));
    Ok(tag)
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
