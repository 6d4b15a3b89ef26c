//! `launcher cleanup --images` on a real engine: an older build of one of
//! our repositories is found as superseded (by creation time), kept while a
//! container uses it, and removed by tag; the newest build is never listed.
//!
//! The test works through the library functions the command calls, scoped
//! to its own image tag, never through `launcher cleanup --yes`, which
//! would also act on other tests' bottles running at the same time.

use std::collections::HashMap;

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use launcher::engine::archive::{self, FileEntry};
use launcher::engine::images::{find_superseded_images, remove_image_tag};
use launcher::plan::identity::Component;
use sha2::{Digest, Sha256};
use tests::{engine_or_skip, prepare_images, run_labels};

use crate::with_run;

/// A one-file image in `docker save` form whose config says it was created
/// in 2001, tagged `tag`.
fn old_image_tar(tag: &str) -> Vec<u8> {
    let file = |path: &str, contents: Vec<u8>| FileEntry {
        path: path.to_owned(),
        mode: 0o644,
        uid: 0,
        gid: 0,
        contents,
    };
    let layer = archive::build(&[file("/marker", b"an old build\n".to_vec())]).expect("layer");
    let diff_id = format!("sha256:{:x}", Sha256::digest(&layer));
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2001-01-01T00:00:00Z",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    })
    .to_string();
    let manifest = serde_json::json!([{
        "Config": "config.json",
        "RepoTags": [tag],
        "Layers": ["layer.tar"],
    }])
    .to_string();
    archive::build(&[
        file("/layer.tar", layer),
        file("/config.json", config.into_bytes()),
        file("/manifest.json", manifest.into_bytes()),
    ])
    .expect("image tar")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_build_is_superseded_kept_while_used_and_removed_by_tag() {
    let Some(engine) =
        engine_or_skip("an_older_build_is_superseded_kept_while_used_and_removed_by_tag").await
    else {
        return;
    };
    let images = prepare_images(&engine).await;
    with_run(engine.clone(), |run| async move {
        let tag = format!("claude-bottle/agent:e2e-old-{run}");
        let mut load = engine.client().import_image(
            bollard::query_parameters::ImportImageOptionsBuilder::default()
                .quiet(true)
                .build(),
            bollard::body_full(old_image_tar(&tag).into()),
            None,
        );
        use futures_util::StreamExt as _;
        while let Some(step) = load.next().await {
            step.expect("docker load");
        }
        let current = images.tags[&Component::Agent].clone();

        let found = find_superseded_images(&engine).await.expect("list");
        assert!(found.contains(&tag), "{tag} not superseded: {found:?}");
        // The newest agent build is kept. (Not necessarily `current`: on a
        // machine with several checkouts another one may have built later.)
        let filters = HashMap::from([(
            "reference".to_owned(),
            vec!["claude-bottle/agent:*".to_owned()],
        )]);
        let all: Vec<String> = engine
            .client()
            .list_images(Some(
                bollard::query_parameters::ListImagesOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .expect("list images")
            .into_iter()
            .flat_map(|i| i.repo_tags)
            .collect();
        assert!(all.contains(&current) && all.contains(&tag), "{all:?}");
        assert!(
            all.iter().any(|t| !found.contains(t)),
            "every agent build is listed as superseded: {found:?}"
        );

        // While a container (even a stopped one) uses it, it is kept.
        let name = format!("e2e-old-image-user-{run}");
        let labels: HashMap<String, String> = run_labels(&run).into_iter().collect();
        engine
            .client()
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                ContainerCreateBody {
                    image: Some(tag.clone()),
                    cmd: Some(vec!["/marker".into()]),
                    labels: Some(labels),
                    network_disabled: Some(true),
                    ..Default::default()
                },
            )
            .await
            .expect("create a container from the old image");
        let found = find_superseded_images(&engine).await.expect("list");
        assert!(
            !found.contains(&tag),
            "an image in use is listed: {found:?}"
        );
        engine
            .client()
            .remove_container(
                &name,
                Some(RemoveContainerOptionsBuilder::default().force(true).build()),
            )
            .await
            .expect("remove the container");

        assert!(
            find_superseded_images(&engine)
                .await
                .expect("list")
                .contains(&tag)
        );
        remove_image_tag(&engine, &tag).await.expect("remove");
        assert!(
            engine.client().inspect_image(&tag).await.is_err(),
            "{tag} still exists"
        );
        assert!(
            engine.client().inspect_image(&current).await.is_ok(),
            "the current build was removed"
        );
    })
    .await;
}
