//! Claude Code in the default agent image, from an operator's `npm pack`
//! tarball (the air-gapped path), on a real engine.
//!
//! The tarball is a stand-in made here: a package named
//! `@anthropic-ai/claude-code` whose `claude` bin prints its version, the
//! way the real CLI answers `--version`. Nothing asks any registry: the
//! shared images are built with Claude Code skipped, and this test's agent
//! image is built from the tarball alone.

use std::io::Write as _;

use bollard::query_parameters::{LogsOptionsBuilder, WaitContainerOptionsBuilder};
use futures_util::{FutureExt as _, StreamExt as _};
use launcher::engine::docker::Engine;
use launcher::engine::images::{AgentImage, ClaudeCodeStatus, ImageOptions, claude_code};
use launcher::plan::identity::Component;
use sha2::{Digest as _, Sha256};
use tests::{LABEL_TEST_RUN, bin_dir, engine_or_skip, images_where, prepare_images, run_labels};

use crate::with_run;

/// An `npm pack`-shaped tarball of a stand-in Claude Code: `claude
/// --version` prints `<version> (Claude Code)`.
pub(crate) fn stand_in_tarball(version: &str) -> Vec<u8> {
    let package_json = format!(
        r#"{{"name":"{}","version":"{version}","bin":{{"claude":"cli.js"}},"engines":{{"node":">=18"}}}}"#,
        claude_code::PACKAGE
    );
    let cli = "#!/usr/bin/env node\nconst v = require('./package.json').version;\nif (process.argv.includes('--version')) { console.log(v + ' (Claude Code)'); } else { console.log('stand-in claude ' + v); }\n";
    let mut b = tar::Builder::new(Vec::new());
    for (name, mode, data) in [
        ("package/package.json", 0o644, package_json.as_bytes()),
        // npm pack keeps the mode it finds; the launcher makes the bin executable.
        ("package/cli.js", 0o644, cli.as_bytes()),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        b.append_data(&mut h, name, data).expect("tar entry");
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&b.into_inner().expect("tar")).expect("gzip");
    gz.finish().expect("gzip")
}

/// Runs `cmd` in a fresh container of `image` as `user`, without a
/// network; returns the exit code and the output.
pub(crate) async fn run_in(
    engine: &Engine,
    run: &str,
    image: &str,
    user: &str,
    cmd: &[&str],
) -> (i64, String) {
    let cmd = cmd.iter().map(|s| (*s).to_owned()).collect();
    let name = crate::images_sidecars::create(engine, run, image, Some(user), Some(cmd)).await;
    engine.start(&name).await.expect("start container");
    let mut wait = engine
        .client()
        .wait_container(&name, Some(WaitContainerOptionsBuilder::default().build()));
    let code = match tokio::time::timeout(std::time::Duration::from_secs(60), wait.next()).await {
        Ok(Some(Ok(r))) => r.status_code,
        // A non-zero exit arrives as an error carrying the code.
        Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. }))) => code,
        other => panic!("waiting for {name}: {other:?}"),
    };
    let mut logs = engine.client().logs(
        &name,
        Some(
            LogsOptionsBuilder::default()
                .stdout(true)
                .stderr(true)
                .build(),
        ),
    );
    let mut out = String::new();
    while let Some(chunk) = logs.next().await {
        out.push_str(&chunk.expect("logs").to_string());
    }
    engine
        .remove_container(&name)
        .await
        .expect("remove container");
    (code, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_from_a_tarball_runs_as_the_agent_user_and_is_root_owned() {
    let test = "claude_code_from_a_tarball_runs_as_the_agent_user_and_is_root_owned";
    let Some(engine) = engine_or_skip(test).await else {
        return;
    };
    let shared = prepare_images(&engine).await;
    with_run(engine.clone(), |run| async move {
        // The shared default agent image was built without Claude Code.
        assert_eq!(shared.claude_code, ClaudeCodeStatus::Missing);
        let plain = &shared.tags[&Component::Agent];
        let (code, out) = run_in(&engine, &run, plain, "1000:1000", &["sh", "-c", "command -v claude || echo absent; node --version"]).await;
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("absent") && out.contains("v18."), "{out}");

        // A per-run version makes a per-run tarball, hence a per-run tag.
        let version = format!("0.0.0-e2e.{run}");
        let dir = tempfile::tempdir().expect("tempdir");
        let tgz = dir.path().join("anthropic-ai-claude-code-0.0.0.tgz");
        let bytes = stand_in_tarball(&version);
        std::fs::write(&tgz, &bytes).expect("write tarball");
        let opts = ImageOptions {
            bin_dir: bin_dir(),
            offline: true,
            mirror: None,
            apt_root: "/".into(),
            debian_image: None,
            claude_code: claude_code::Source::Tarball(tgz),
            retry_claude_code: false,
            labels: run_labels(&run),
        };
        let mut progress = |l: &str| eprintln!("images: {l}");
        let set = launcher::engine::images::ensure(&engine, &opts, &AgentImage::Default, &mut progress)
            .await
            .expect("build with the tarball");
        let tag = set.tags[&Component::Agent].clone();
        assert_ne!(&tag, plain, "the tarball is part of the agent image's tag");
        assert_eq!(set.claude_code, ClaudeCodeStatus::Installed(version.clone()));
        let sha = format!("{:x}", Sha256::digest(&bytes));
        let label = |k: &str| {
            let engine = engine.clone();
            let tag = tag.clone();
            let k = k.to_owned();
            async move { launcher::engine::images::image_label(&engine, &tag, &k).await.expect("inspect") }
        };
        assert_eq!(label(claude_code::LABEL_SHA256).await, Some(sha));
        assert_eq!(label(LABEL_TEST_RUN).await, Some(run.clone()));

        let checks = std::panic::AssertUnwindSafe(async {
            let (code, out) = run_in(&engine, &run, &tag, "1000:1000", &["claude", "--version"]).await;
            assert_eq!((code, out.trim()), (0, format!("{version} (Claude Code)").as_str()));
            // The agent cannot change its own Claude Code.
            let check = format!(
                "stat -c '%u %a' {dir}/cli.js {dir}/package.json && readlink {bin} && ! test -w {dir}/cli.js && ! test -w {dir}",
                dir = claude_code::INSTALL_DIR,
                bin = claude_code::BIN_LINK
            );
            let (code, out) = run_in(&engine, &run, &tag, "1000:1000", &["sh", "-c", &check]).await;
            assert_eq!(code, 0, "{out}");
            assert_eq!(
                out.lines().collect::<Vec<_>>(),
                ["0 755", "0 644", &format!("{}/cli.js", claude_code::INSTALL_DIR)],
                "{out}"
            );

        })
        .catch_unwind()
        .await;
        // Nothing of this run stays: the image carries the run's label.
        let mine = images_where(&engine, "label", &format!("{LABEL_TEST_RUN}={run}"), false).await;
        launcher::engine::images::remove_image_tag(&engine, &tag)
            .await
            .expect("remove the run's image");
        if let Err(panic) = checks {
            std::panic::resume_unwind(panic);
        }
        assert_eq!(mine.len(), 1, "{mine:?}");
    })
    .await;
}
