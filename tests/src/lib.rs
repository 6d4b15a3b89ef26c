//! End-to-end tests of whole bottles against a real Docker engine, and the
//! harness they share.
//!
//! Is: the harness (engine probe that fails with the install hint unless
//! skips are allowed, run-id labels and
//! removal by label before and after each test, daemon binaries and images
//! prepared once, a fake upstream container with a test CA) used by the
//! tests in `tests/tests/e2e/`.
//!
//! Is not: a test of any single daemon (each crate has its own integration
//! tests on 127.0.0.1). Every object a test creates is labelled with its run
//! id; probes are sent only to the test's own containers.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use launcher::engine::docker::Engine;
use launcher::engine::images::{AgentImage, ImageOptions, ImageSet};
use launcher::plan::{Attachment, Confinement, ContainerPlan};

/// Set to `1` to make a missing Docker engine a failure even when skips
/// are allowed (CI sets it).
pub const REQUIRE_DOCKER_ENV: &str = "CLAUDE_BOTTLE_REQUIRE_DOCKER";
/// Set to `1` to let a test that cannot run (no engine, a missing tool)
/// print `SKIP` and pass; without it such a test fails with the install
/// hint, so a run never counts what did not run as passed.
pub const ALLOW_SKIPS_ENV: &str = "CLAUDE_BOTTLE_ALLOW_SKIPS";

/// A test that cannot run because `why`: fails with `hint`, or prints
/// `SKIP` when [`ALLOW_SKIPS_ENV`] is `1` (and returns so the test can
/// return).
pub fn cannot_run(test: &str, why: &str, hint: &str) {
    if std::env::var(ALLOW_SKIPS_ENV).as_deref() == Ok("1") {
        eprintln!("SKIP {test}: {why} ({ALLOW_SKIPS_ENV}=1); {hint}");
        return;
    }
    panic!("{test} cannot run: {why}; {hint} (or set {ALLOW_SKIPS_ENV}=1 to skip it)");
}
/// Label carrying a test's run id on every object it creates.
pub const LABEL_TEST_RUN: &str = "dev.claude-bottle.test-run";

/// Connects to Docker. Without an engine the test fails with the install
/// hint, or, with [`ALLOW_SKIPS_ENV`]`=1` (and not
/// [`REQUIRE_DOCKER_ENV`]`=1`), prints why it is skipped and returns `None`.
pub async fn engine_or_skip(test: &str) -> Option<Engine> {
    match Engine::connect().await {
        Ok(e) => Some(e),
        Err(err) => {
            if std::env::var(REQUIRE_DOCKER_ENV).as_deref() == Ok("1") {
                panic!("{test}: {REQUIRE_DOCKER_ENV}=1 but no Docker engine answers: {err}");
            }
            cannot_run(
                test,
                &format!("no Docker engine answers ({err})"),
                "install and start one (as root, .ci/setup.d/docker.sh does)",
            );
            None
        }
    }
}

/// A fresh run id (12 lowercase hex digits).
pub fn run_id() -> String {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).expect("randomness");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Labels for objects a test creates outside the launcher.
pub fn run_labels(run: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(LABEL_TEST_RUN.to_owned(), run.to_owned())])
}

/// Removes every container, then every volume and network, labelled
/// with `run`.
pub async fn purge(engine: &Engine, run: &str) {
    let label = [(LABEL_TEST_RUN, run)];
    if let Ok(cs) = engine.containers_with_labels(&label).await {
        for c in cs {
            if let Some(id) = c.id {
                let _ = engine.remove_container(&id).await;
            }
        }
    }
    if let Ok(vs) = engine.volumes_with_labels(&label).await {
        for v in vs {
            let _ = engine.remove_volume(&v.name).await;
        }
    }
    if let Ok(ns) = engine.networks_with_labels(&label).await {
        for n in ns {
            if let Some(name) = n.name {
                let _ = engine.remove_network(&name).await;
            }
        }
    }
}

/// Names of the containers, volumes and networks labelled with `run`.
pub async fn leftovers(engine: &Engine, run: &str) -> Vec<String> {
    labelled(engine, LABEL_TEST_RUN, run).await
}

/// Names of the containers, volumes and networks carrying label
/// `key=value`.
pub async fn labelled(engine: &Engine, key: &str, value: &str) -> Vec<String> {
    let label = [(key, value)];
    let mut out: Vec<String> = engine
        .containers_with_labels(&label)
        .await
        .expect("list containers")
        .into_iter()
        .flat_map(|c| c.names.unwrap_or_default())
        .collect();
    out.extend(
        engine
            .volumes_with_labels(&label)
            .await
            .expect("list volumes")
            .into_iter()
            .map(|v| v.name),
    );
    out.extend(
        engine
            .networks_with_labels(&label)
            .await
            .expect("list networks")
            .into_iter()
            .filter_map(|n| n.name),
    );
    out
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace().join("target"), PathBuf::from)
}

/// A cross-process lock (an atomic `mkdir`), so parallel test processes
/// prepare binaries and images once. Stale after 20 minutes.
struct DirLock(PathBuf);

impl DirLock {
    fn acquire(path: PathBuf) -> Self {
        let deadline = Instant::now() + Duration::from_secs(30 * 60);
        loop {
            match std::fs::create_dir(&path) {
                Ok(()) => return Self(path),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > Duration::from_secs(20 * 60));
                    if stale {
                        let _ = std::fs::remove_dir(&path);
                    }
                    assert!(
                        Instant::now() < deadline,
                        "waited 30 min for {}",
                        path.display()
                    );
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => panic!("creating lock {}: {e}", path.display()),
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Directory of the debug binaries ([`prepare_images`] builds them).
pub fn bin_dir() -> PathBuf {
    target_dir().join("debug")
}

/// Builds the daemon and launcher binaries (debug profile) and every image, once per
/// machine state (content-hash cached), under a cross-process lock.
pub async fn prepare_images(engine: &Engine) -> ImageSet {
    let target = target_dir();
    std::fs::create_dir_all(&target).expect("target dir");
    let _lock = DirLock::acquire(target.join("claude-bottle-e2e-images.lock"));
    let status =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "build",
                "-p",
                "egress-proxy",
                "-p",
                "supervise",
                "-p",
                "git-gate",
            ])
            .current_dir(workspace())
            .status()
            .expect("running cargo build for the daemon binaries");
    assert!(
        status.success(),
        "cargo build of the daemons failed: {status}"
    );
    // Never a registry: the base comes from debootstrap (the Debian mirror),
    // and the default agent image has no Claude Code (tests that need it
    // pass a stand-in tarball).
    let opts = ImageOptions {
        bin_dir: bin_dir(),
        offline: false,
        mirror: None,
        apt_root: PathBuf::from("/"),
        debian_image: None,
        claude_code: launcher::engine::images::claude_code::Source::Skip,
        retry_claude_code: false,
        labels: BTreeMap::new(),
    };
    let mut progress = |line: &str| eprintln!("images: {line}");
    launcher::engine::images::ensure(engine, &opts, &AgentImage::Default, &mut progress)
        .await
        .expect("preparing images")
}

/// A container of the test's own (a fake upstream, a DNS logger, a
/// stand-in): on `network` with `aliases`, the engine's default
/// confinement, no files, mounts or health check. Not part of any bottle
/// (the component is unused by the engine calls).
pub fn helper_container(
    name: &str,
    image: &str,
    user: &str,
    cmd: Vec<String>,
    network: Attachment,
    labels: BTreeMap<String, String>,
) -> ContainerPlan {
    ContainerPlan {
        component: launcher::plan::identity::Component::Agent,
        name: name.to_owned(),
        image: image.to_owned(),
        user: user.to_owned(),
        cmd,
        workdir: None,
        networks: vec![network],
        env: BTreeMap::new(),
        secret_env: Vec::new(),
        files: Vec::new(),
        mounts: Vec::new(),
        volumes: Vec::new(),
        confinement: Confinement::engine_default(),
        health: None,
        labels,
    }
}

/// A tar archive of `path` in `container` (Docker's archive API: works in
/// images without a shell, and on created containers that never ran).
pub async fn archive_of(
    engine: &Engine,
    container: &str,
    path: &str,
) -> Result<Vec<u8>, bollard::errors::Error> {
    use futures_util::StreamExt as _;
    let opts = bollard::query_parameters::DownloadFromContainerOptionsBuilder::default()
        .path(path)
        .build();
    let mut stream = engine
        .client()
        .download_from_container(container, Some(opts));
    let mut tar = Vec::new();
    while let Some(chunk) = stream.next().await {
        tar.extend_from_slice(&chunk?);
    }
    Ok(tar)
}

/// The mode bits and owner uid of `path` in `container`, read from an
/// archive of it (sidecar images have no shell or `stat`).
pub async fn mode_and_owner(engine: &Engine, container: &str, path: &str) -> (u32, u64) {
    let tar = archive_of(engine, container, path)
        .await
        .unwrap_or_else(|e| panic!("archive of {container}:{path}: {e}"));
    let mut archive = tar::Archive::new(tar.as_slice());
    let entry = archive
        .entries()
        .expect("tar entries")
        .next()
        .unwrap_or_else(|| panic!("empty archive of {container}:{path}"))
        .expect("tar entry");
    let h = entry.header();
    (h.mode().expect("mode") & 0o7777, h.uid().expect("uid"))
}

/// The images matching one filter, e.g. `("label", "k=v")` or
/// `("reference", "repo")`; `all` includes intermediate images.
pub async fn images_where(
    engine: &Engine,
    key: &str,
    value: &str,
    all: bool,
) -> Vec<bollard::models::ImageSummary> {
    let filters = std::collections::HashMap::from([(key.to_owned(), vec![value.to_owned()])]);
    engine
        .client()
        .list_images(Some(
            bollard::query_parameters::ListImagesOptionsBuilder::default()
                .all(all)
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap_or_else(|e| panic!("listing images where {key}={value}: {e}"))
}
