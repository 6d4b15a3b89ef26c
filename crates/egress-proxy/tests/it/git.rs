//! git over HTTPS through the proxy: clone allowed, push refused by the
//! universal block (before any route is consulted).

use std::process::Command;

use crate::support::*;

fn git(dir: &std::path::Path, home: &std::path::Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_SSL_CAINFO")
        .env_remove("GIT_SSL_CAPATH")
        .env_remove("GIT_SSL_NO_VERIFY")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("http_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid");
    c
}

fn ok(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn git_clone_is_allowed_and_push_is_blocked() {
    let w = World::new().await;
    let p = w
        .proxy(ProxyOpts::new(
            "version: 1\nroutes:\n  - host: git.test\n    allow_private: true\n    path_allowlist: [/repo.git/]\n",
        ))
        .await;
    let root = w.path("srv");
    let home = w.path("home");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    // A bare repository with one commit, served by git http-backend.
    let seed = w.path("seed");
    std::fs::create_dir_all(&seed).unwrap();
    ok(
        git(&seed, &home)
            .args(["init", "-q", "-b", "main"])
            .output()
            .unwrap(),
        "init",
    );
    std::fs::write(seed.join("README"), "hello through the proxy\n").unwrap();
    ok(
        git(&seed, &home).args(["add", "README"]).output().unwrap(),
        "add",
    );
    ok(
        git(&seed, &home)
            .args(["commit", "-q", "-m", "first"])
            .output()
            .unwrap(),
        "commit",
    );
    ok(
        git(&root, &home)
            .args(["clone", "-q", "--bare", seed.to_str().unwrap(), "repo.git"])
            .output()
            .unwrap(),
        "bare clone",
    );
    ok(
        git(&root.join("repo.git"), &home)
            .args(["config", "http.receivepack", "true"])
            .output()
            .unwrap(),
        "enable receive-pack",
    );
    *w.upstream.state.git_root.lock().unwrap() = Some(root.clone());

    let url = w.https("git.test", "/repo.git");
    let proxy = p.url();
    let ca = w.proxy_ca.cert_path.to_str().unwrap().to_owned();
    let work = w.path("work");
    std::fs::create_dir_all(&work).unwrap();
    let home2 = home.clone();
    let work2 = work.clone();
    let (proxy2, ca2, url2) = (proxy.clone(), ca.clone(), url.clone());
    let out = tokio::task::spawn_blocking(move || {
        git(&work2, &home2)
            .args([
                "-c",
                &format!("http.proxy={proxy2}"),
                "-c",
                &format!("http.sslCAInfo={ca2}"),
            ])
            .args(["clone", "-q", &url2, "clone"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    ok(out, "clone through the proxy");
    let readme = std::fs::read_to_string(work.join("clone/README")).unwrap();
    assert_eq!(readme, "hello through the proxy\n");

    // Push: refused by the proxy, whatever the route says.
    let clone = work.join("clone");
    std::fs::write(clone.join("new"), "x\n").unwrap();
    ok(
        git(&clone, &home).args(["add", "new"]).output().unwrap(),
        "add",
    );
    ok(
        git(&clone, &home)
            .args(["commit", "-q", "-m", "second"])
            .output()
            .unwrap(),
        "commit",
    );
    let (home3, clone3) = (home.clone(), clone.clone());
    let out = tokio::task::spawn_blocking(move || {
        git(&clone3, &home3)
            .args([
                "-c",
                &format!("http.proxy={proxy}"),
                "-c",
                &format!("http.sslCAInfo={ca}"),
            ])
            .args(["push", "origin", "HEAD:main"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success(), "push must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("403"), "{stderr}");
    // The upstream still has one commit.
    let log = ok(
        git(&root.join("repo.git"), &home)
            .args(["rev-list", "--count", "main"])
            .output()
            .unwrap(),
        "rev-list",
    );
    assert_eq!(log.trim(), "1");

    // The block's body says why and where to push instead.
    let r = curl(
        &p,
        &w.proxy_ca.cert_path,
        &[
            "-X",
            "POST",
            "--data-binary",
            "x",
            &w.https("git.test", "/repo.git/git-receive-pack"),
        ],
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("git-gate"), "{}", r.body);
    for path in [
        "/repo.git/info/refs?service=git-receive-pack",
        "/repo.git/info/refs?service=git%2Dreceive%2Dpack",
        "/any/other.git/git-receive-pack",
        "/repo.git/GIT-RECEIVE-PACK",
        "/repo.git/x/../git-receive-pack",
    ] {
        let r = curl(
            &p,
            &w.proxy_ca.cert_path,
            &["--path-as-is", &w.https("api.test", path)],
        )
        .await;
        assert_eq!(r.status, 403, "{path}: {r:?}");
        assert!(
            r.body.contains("git push over HTTPS is blocked"),
            "{path}: {}",
            r.body
        );
    }
}
