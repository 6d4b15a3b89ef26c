use super::*;

#[test]
fn roundtrip_and_rules() {
    let text = "version: 1\nremotes:\n  - name: app\n    upstream: https://github.com/acme/app.git\n    auth: { token_env: GIT_GATE_TOKEN_1 }\n    branches: { allow: [\"feature/*\", main], protected: main }\n";
    let f = RemotesFile::parse(text, "remotes.yaml").unwrap();
    let r = f.get("app").unwrap();
    assert_eq!(r.auth.as_ref().unwrap().username, DEFAULT_GIT_USERNAME);
    assert!(r.branches.allows("refs/heads/feature/x"));
    assert!(r.branches.allows("refs/heads/main"));
    assert!(!r.branches.allows("refs/heads/dev"));
    assert!(!r.branches.allows("refs/tags/v1"));
    assert!(r.branches.is_protected("refs/heads/main"));
    assert_eq!(RemotesFile::parse(&f.render(), "x").unwrap(), f);
}

#[test]
fn bad_remotes() {
    let text = "version: 1\nremotes:\n  - name: Bad/Name\n    upstream: https://u:p@github.com/x.git\n  - name: ok\n    upstream: ssh://git@host/x\n";
    let err = RemotesFile::parse(text, "r").unwrap_err().to_string();
    assert!(err.contains("invalid remote name"), "{err}");
    assert!(err.contains("carries credentials"), "{err}");
    assert!(err.contains("must be an https:// URL"), "{err}");
}

#[test]
fn default_rules_allow_branches_not_tags() {
    let r = BranchRules::default();
    assert!(r.allows("refs/heads/anything/at/all"));
    assert!(!r.allows("refs/tags/v1"));
}
