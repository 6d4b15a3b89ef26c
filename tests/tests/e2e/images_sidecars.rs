//! The sidecar images as built: FROM scratch with the binary, the
//! libraries it needs, users, CA roots and the contract directories (owned
//! as the launcher's volumes need them); no shell and no curl in egress and
//! supervise; the built-in readiness probe answers for a live daemon and
//! fails for a dead port; the multi-stage builds leave no stage image.
//!
//! Sizes are printed (the e2e images carry debug binaries); what an image
//! adds besides its binary is bounded.

use std::time::Duration;

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::CreateContainerOptionsBuilder;
use launcher::engine::docker::Engine;
use launcher::engine::images::LABEL_STAGE_OF;
use launcher::plan::identity::Component;
use tests::{
    archive_of, bin_dir, engine_or_skip, images_where, mode_and_owner, prepare_images, run_labels,
};

use crate::with_run;

/// An image, its binary, its directories with (mode, uid), and paths it
/// must not have.
type Contract = (
    Component,
    &'static str,
    Vec<(&'static str, u32, u64)>,
    Vec<&'static str>,
);

/// Creates (does not start) a container of `image` without a network,
/// labelled with `run`; `user` overrides the image's.
pub(crate) async fn create(
    engine: &Engine,
    run: &str,
    image: &str,
    user: Option<&str>,
    cmd: Option<Vec<String>>,
) -> String {
    let name = format!("e2e-img-{run}-{}", tests::run_id());
    engine
        .client()
        .create_container(
            Some(CreateContainerOptionsBuilder::default().name(&name).build()),
            ContainerCreateBody {
                image: Some(image.to_owned()),
                user: user.map(str::to_owned),
                cmd,
                labels: Some(run_labels(run).into_iter().collect()),
                network_disabled: Some(true),
                ..Default::default()
            },
        )
        .await
        .expect("create container");
    name
}

/// Whether `path` exists in `container` (an archive of it can be read).
async fn exists(engine: &Engine, container: &str, path: &str) -> bool {
    match archive_of(engine, container, path).await {
        Ok(_) => true,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => false,
        Err(e) => panic!("archive of {container}:{path}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_images_hold_only_what_they_run_and_keep_the_volume_contract() {
    let test = "sidecar_images_hold_only_what_they_run_and_keep_the_volume_contract";
    let Some(engine) = engine_or_skip(test).await else {
        return;
    };
    let images = prepare_images(&engine).await;
    with_run(engine.clone(), |run| async move {
        let contract: [Contract; 3] = [
            (
                Component::Egress,
                "egress-proxy",
                vec![
                    ("/etc/egress-proxy", 0o755, 10001),
                    ("/var/lib/egress-proxy/tokens", 0o700, 10001),
                ],
                vec!["/bin/sh", "/usr/bin/curl", "/usr/bin/bash"],
            ),
            (
                Component::GitGate,
                "git-gate",
                vec![
                    ("/etc/git-gate", 0o755, 10001),
                    ("/var/lib/git-gate", 0o755, 10001),
                ],
                vec!["/usr/bin/curl", "/usr/bin/bash", "/usr/bin/apt-get"],
            ),
            (
                Component::Supervise,
                "supervise",
                vec![
                    ("/run/supervise/queue", 0o755, 10001),
                    ("/etc/claude-bottle/current-config", 0o755, 0),
                ],
                vec!["/bin/sh", "/usr/bin/curl", "/usr/bin/bash"],
            ),
        ];
        for (c, binary, dirs, absent) in contract {
            let tag = &images.tags[&c];
            let info = engine.client().inspect_image(tag).await.expect("inspect");
            let config = info.config.clone().unwrap_or_default();
            assert_eq!(config.user.as_deref(), Some("10001:10001"), "{c}");
            let size = info.size.unwrap_or_default();
            let bin = std::fs::metadata(bin_dir().join(binary))
                .expect("binary")
                .len();
            let extra = size.saturating_sub(i64::try_from(bin).expect("size"));
            println!(
                "{c}: {tag} is {:.1} MB, of which {:.1} MB besides the {binary} binary",
                size as f64 / 1e6,
                extra as f64 / 1e6
            );
            let bound = if c == Component::GitGate {
                40_000_000
            } else {
                8_000_000
            };
            assert!(extra < bound, "{c} adds {extra} bytes besides its binary");

            let name = create(&engine, &run, tag, None, None).await;
            for (dir, mode, uid) in dirs {
                assert_eq!(
                    mode_and_owner(&engine, &name, dir).await,
                    (mode, uid),
                    "{c} {dir}"
                );
            }
            assert_eq!(
                mode_and_owner(&engine, &name, "/tmp").await,
                (0o1777, 0),
                "{c} /tmp"
            );
            for path in [
                "/etc/passwd",
                "/etc/group",
                "/etc/ssl/certs/ca-certificates.crt",
                &format!("/usr/local/bin/{binary}"),
            ] {
                assert!(exists(&engine, &name, path).await, "{c}: {path} missing");
            }
            for path in absent {
                assert!(!exists(&engine, &name, path).await, "{c}: {path} is there");
            }
            engine.remove_container(&name).await.expect("remove");

            // No first-stage image of the build is left behind.
            let stages =
                images_where(&engine, "label", &format!("{LABEL_STAGE_OF}={tag}"), true).await;
            assert!(stages.is_empty(), "{c}: stage images left: {stages:?}");
        }

        // The built-in probe: supervise answers on its port; nothing
        // listens on port 9, so the probe fails there.
        let tag = &images.tags[&Component::Supervise];
        let name = create(&engine, &run, tag, None, None).await;
        engine.start(&name).await.expect("start supervise");
        let probe = |url: &str| vec!["supervise".to_owned(), "probe".to_owned(), url.to_owned()];
        engine
            .wait_ready(
                &name,
                "10001:10001",
                &probe("http://127.0.0.1:9100/mcp"),
                Duration::from_secs(60),
            )
            .await
            .expect("supervise probe answers");
        let dead = engine
            .exec(&name, "10001:10001", &probe("http://127.0.0.1:9/"))
            .await
            .expect("exec probe");
        assert_eq!(dead.code, Some(1), "{}", dead.output);
        assert!(dead.output.contains("127.0.0.1:9"), "{}", dead.output);
        engine.remove_container(&name).await.expect("remove");

        // git-gate's git works as its user without a shell of its own:
        // init a bare repository the way the mirrors are made.
        let tag = &images.tags[&Component::GitGate];
        let cmd = vec![
            "git".to_owned(),
            "init".to_owned(),
            "--bare".to_owned(),
            "/tmp/m.git".to_owned(),
        ];
        let name = create(&engine, &run, tag, None, Some(cmd)).await;
        engine.start(&name).await.expect("start git");
        let mut wait = engine.client().wait_container(
            &name,
            None::<bollard::query_parameters::WaitContainerOptions>,
        );
        use futures_util::StreamExt as _;
        let status = tokio::time::timeout(Duration::from_secs(60), wait.next())
            .await
            .expect("git exits in time");
        let logs = engine.tail_logs(&name, 20).await.unwrap_or_default();
        assert!(
            matches!(status, Some(Ok(ref r)) if r.status_code == 0),
            "{status:?}: {logs}"
        );
        assert!(logs.contains("Initialized empty Git repository"), "{logs}");
        assert!(!logs.contains("templates not found"), "{logs}");
        engine.remove_container(&name).await.expect("remove");
    })
    .await;
}
