//! The base image from a pulled, digest-pinned Debian image, against a
//! registry this test runs on 127.0.0.1 (Debian's `docker-registry`, its
//! own port and storage) into which it pushes an image it made itself.
//!
//! The pushed image is the shared debootstrapped base with every apt
//! source removed and one local `file:` source holding a package built
//! here (`claude-bottle-e2e-marker`). The build asks for the base packages
//! plus the marker: the ones present are skipped, the marker is installed
//! through the image's own apt sources. Nothing reaches a Debian mirror or
//! any other registry.
//!
//! Proves: the pull by digest from a registry, a wrong digest refused, the
//! install step (skip what is there, apt-get the rest from the image's
//! sources), the labels. Does not prove: that the default pin names a
//! pullable `debian:bookworm-slim`, installing over the real mirror, or the
//! fallback to debootstrap (the shared base cannot be removed under other
//! tests).

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{FutureExt as _, StreamExt as _};
use launcher::engine::docker::Engine;
use launcher::engine::images::{BASE_PACKAGES, BaseBuild, LABEL_BASE_SOURCE, base_tag};
use tests::{
    LABEL_TEST_RUN, REQUIRE_DOCKER_ENV, engine_or_skip, images_where, prepare_images, run_labels,
};

use crate::images_claude_code::run_in;
use crate::with_run;

const MARKER_PACKAGE: &str = "claude-bottle-e2e-marker";
const MARKER_TEXT: &str = "installed-from-the-image-apt-source";

/// The Debian image pushed to the test registry: the base, its apt sources
/// replaced by a local `file:` repository with one package of our own.
const TEST_DEBIAN_DOCKERFILE: &str = r#"ARG BASE
FROM ${BASE}
RUN set -eu; rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*; \
    mkdir -p /srv/e2e-repo /tmp/pkg/DEBIAN /tmp/pkg/usr/share/claude-bottle-e2e; \
    printf 'Package: claude-bottle-e2e-marker\nVersion: 1.0\nArchitecture: all\nMaintainer: e2e <e2e@localhost>\nDescription: claude-bottle e2e marker\n' >/tmp/pkg/DEBIAN/control; \
    echo installed-from-the-image-apt-source >/tmp/pkg/usr/share/claude-bottle-e2e/marker; \
    dpkg-deb --build /tmp/pkg /srv/e2e-repo/marker.deb; \
    cd /srv/e2e-repo; \
    { dpkg-deb -f marker.deb; echo "Filename: ./marker.deb"; echo "Size: $(stat -c %s marker.deb)"; \
      echo "SHA256: $(sha256sum marker.deb | cut -d' ' -f1)"; echo; } >Packages; \
    echo 'deb [trusted=yes] file:/srv/e2e-repo ./' >/etc/apt/sources.list; \
    rm -rf /tmp/pkg
"#;

/// A `docker-registry` process on 127.0.0.1, killed on drop.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_registry_binary() -> Option<&'static str> {
    ["/usr/bin/docker-registry", "/usr/sbin/docker-registry"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
}

/// Starts the registry on a free loopback port with its own storage and
/// waits (bounded) until `/v2/` answers.
fn start_registry(binary: &str) -> Registry {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        ),
    )
    .expect("registry config");
    let child = Command::new(binary)
        .arg("serve")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting docker-registry");
    let registry = Registry {
        child,
        port,
        _dir: dir,
    };
    let probe = http_probe::ProbeArgs {
        url: format!("http://127.0.0.1:{port}/v2/"),
        proxy: None,
        fail: true,
        max_time: 2,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match http_probe::probe(&probe) {
            Ok(_) => return registry,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "docker-registry did not answer: {e}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_base_builds_from_a_pinned_image_pulled_from_a_registry() {
    let test = "the_base_builds_from_a_pinned_image_pulled_from_a_registry";
    let Some(engine) = engine_or_skip(test).await else {
        return;
    };
    let Some(binary) = find_registry_binary() else {
        let hint = "docker-registry is not installed; run .ci/setup.d/docker-registry.sh (apt-get install docker-registry)";
        if std::env::var(REQUIRE_DOCKER_ENV).as_deref() == Ok("1") {
            panic!("{test}: {hint}");
        }
        eprintln!("SKIP {test}: {hint}; set {REQUIRE_DOCKER_ENV}=1 to make this a failure");
        return;
    };
    prepare_images(&engine).await;
    let registry = start_registry(binary);
    with_run(engine.clone(), |run| async move {
        let repo = format!("127.0.0.1:{}/e2e-debian", registry.port);
        let pushed = format!("{repo}:{run}");
        let built = format!("claude-bottle/base:e2e-pull-{run}");
        let outcome = std::panic::AssertUnwindSafe(check(&engine, &run, &repo, &pushed, &built))
            .catch_unwind()
            .await;
        // Whatever happened: remove what this run made.
        for image in [pushed.clone(), built.clone()] {
            let _ = launcher::engine::images::remove_image_tag(&engine, &image).await;
        }
        remove_pulled(&engine, &repo).await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    })
    .await;
    drop(registry);
}

/// Removes every image pulled from `repo` (the test registry's).
async fn remove_pulled(engine: &Engine, repo: &str) {
    for image in images_where(engine, "reference", repo, false).await {
        let _ = launcher::engine::images::remove_image_tag(engine, &image.id).await;
    }
}

/// The test proper.
async fn check(engine: &Engine, run: &str, repo: &str, pushed: &str, built: &str) {
    // Make the image and push it.
    let context =
        launcher::engine::images::build_context(TEST_DEBIAN_DOCKERFILE, None).expect("context");
    let mut labels: HashMap<String, String> = run_labels(run).into_iter().collect();
    labels.insert("dev.claude-bottle.managed".into(), "true".into());
    engine
        .build_image(
            context,
            pushed,
            HashMap::from([("BASE".to_owned(), base_tag())]),
            labels,
            &mut |l| eprintln!("test image: {l}"),
        )
        .await
        .expect("building the test Debian image");
    let (name, tag) = pushed.rsplit_once(':').expect("tag");
    let mut push = engine.client().push_image(
        name,
        Some(
            bollard::query_parameters::PushImageOptionsBuilder::default()
                .tag(tag)
                .build(),
        ),
        Some(bollard::auth::DockerCredentials::default()),
    );
    while let Some(step) = push.next().await {
        let step = step.expect("push to the test registry");
        assert!(step.error_detail.is_none(), "push: {step:?}");
    }
    let info = engine
        .client()
        .inspect_image(pushed)
        .await
        .expect("inspect");
    let pinned = info
        .repo_digests
        .unwrap_or_default()
        .into_iter()
        .find(|d| d.starts_with(&format!("{repo}@sha256:")))
        .expect("a digest from the push");
    // Only the registry has it now.
    launcher::engine::images::remove_image_tag(engine, pushed)
        .await
        .expect("untag the pushed image");
    assert!(!engine.image_exists(&pinned).await.expect("exists"));

    // A digest the registry does not have is refused.
    let wrong = format!("{repo}@sha256:{}", "0".repeat(64));
    let labels = run_labels(run);
    let mut packages: Vec<&str> = BASE_PACKAGES.to_vec();
    packages.push(MARKER_PACKAGE);
    let err = BaseBuild {
        image: &wrong,
        packages: &packages,
        tag: built,
        labels: &labels,
    }
    .run(engine, &mut |l| eprintln!("wrong digest: {l}"))
    .await
    .expect_err("an unknown digest");
    assert!(err.to_string().contains(&wrong), "{err}");
    assert!(!engine.image_exists(built).await.expect("exists"));

    // The pinned one is pulled and built on.
    let mut lines = Vec::new();
    BaseBuild {
        image: &pinned,
        packages: &packages,
        tag: built,
        labels: &labels,
    }
    .run(engine, &mut |l| {
        eprintln!("pull: {l}");
        lines.push(l.to_owned());
    })
    .await
    .expect("building the base from the pulled image");
    let text = lines.join("\n");
    assert!(text.contains(&format!("pulling {pinned}")), "{text}");
    // Only what is missing is installed, from the image's own source.
    assert!(
        text.contains(&format!("installing: {MARKER_PACKAGE}\n")),
        "{text}"
    );
    let label = launcher::engine::images::image_label(engine, built, LABEL_BASE_SOURCE)
        .await
        .expect("label");
    assert_eq!(label.as_deref(), Some(pinned.as_str()));
    let run_label = launcher::engine::images::image_label(engine, built, LABEL_TEST_RUN)
        .await
        .expect("label");
    assert_eq!(run_label.as_deref(), Some(run));
    let (code, out) = run_in(
        engine,
        run,
        built,
        "0:0",
        &[
            "sh",
            "-c",
            "cat /usr/share/claude-bottle-e2e/marker && node --version && git --version",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with(MARKER_TEXT), "{out}");
}
