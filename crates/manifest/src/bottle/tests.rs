use crate::agent::Manifest;
use crate::routes::AuthScheme;

/// Parses a one-agent manifest whose bottle is `bottle_yaml` (indented
/// under `agents.dev.bottle`), returning the bottle or the error text.
fn bottle(bottle_yaml: &str) -> Result<crate::bottle::Bottle, String> {
    let mut text = String::from("agents:\n  dev:\n    bottle:\n");
    for line in bottle_yaml.lines() {
        text.push_str("      ");
        text.push_str(line);
        text.push('\n');
    }
    Manifest::parse(&text, "m.yaml")
        .map(|m| m.agents()[0].bottle().clone())
        .map_err(|e| e.to_string())
}

/// Asserts that `bottle_yaml` fails with exactly one diagnostic containing
/// every fragment of `expected`.
#[track_caller]
fn check_err(bottle_yaml: &str, expected: &[&str]) {
    let err = bottle(bottle_yaml).expect_err("expected an error");
    assert_eq!(
        err.lines().count(),
        1,
        "expected one diagnostic, got:\n{err}"
    );
    for e in expected {
        assert!(err.contains(e), "missing {e:?} in:\n{err}");
    }
}

#[test]
fn bad_bottles_have_precise_messages() {
    let cases: &[(&str, &[&str])] = &[
        // unknown keys with did-you-mean
        (
            "egres: {}",
            &[
                "agents.dev.bottle.egres: unknown key \"egres\"; did you mean \"egress\"?",
                "valid keys here: egress, git, supervise, pipelock, limits, workspace",
            ],
        ),
        (
            "egress: {alowlist: [a.com]}",
            &[
                "agents.dev.bottle.egress.alowlist",
                "did you mean \"allowlist\"",
            ],
        ),
        (
            "egress: {routes: [{host: a.com, roles: claude_code_oauth}]}",
            &["routes[0].roles", "use `role`"],
        ),
        // legacy keys
        (
            "cred_proxy: {}",
            &[
                "m.yaml:4:7: agents.dev.bottle.cred_proxy: `cred_proxy` was removed",
                "bottle.egress.routes",
            ],
        ),
        (
            "tokens: []",
            &[
                "agents.dev.bottle.tokens: `tokens` was removed",
                "token_ref: GITHUB_TOKEN",
            ],
        ),
        (
            "ssh: []",
            &["agents.dev.bottle.ssh: `ssh` was removed", "bottle.git"],
        ),
        (
            "egress_proxy: {routes: []}",
            &["agents.dev.bottle.egress_proxy: `egress_proxy` was renamed to `egress`"],
        ),
        (
            "runtime: docker",
            &["agents.dev.bottle.runtime: `runtime` is no longer supported"],
        ),
        ("runtime: null", &["`runtime` is no longer supported"]),
        // hosts
        (
            "egress: {allowlist: [\"https://a.com\"]}",
            &[
                "agents.dev.bottle.egress.allowlist[0]: host \"https://a.com\" has a scheme; write the bare host name, e.g. \"a.com\"",
            ],
        ),
        (
            "egress: {allowlist: [\"a.com:443\"]}",
            &["allowlist[0]: host \"a.com:443\" has a port"],
        ),
        ("egress: {allowlist: [\"a.com/x\"]}", &["has a path"]),
        ("egress: {allowlist: [\"u@a.com\"]}", &["has userinfo"]),
        ("egress: {allowlist: [\"*\"]}", &["is a bare wildcard"]),
        (
            "egress: {allowlist: [\"a.*.com\"]}",
            &["misplaced wildcard"],
        ),
        (
            "egress: {allowlist: [\"*.com\"]}",
            &["not a bare top-level domain"],
        ),
        (
            "egress: {allowlist: [\"10.0.0.1\"]}",
            &["is an IP literal; IP literals are refused unless egress.allow_ip_literals is true"],
        ),
        ("egress: {allowlist: [\"a..com\"]}", &["empty label"]),
        ("egress: {allowlist: [\"\"]}", &["host is empty"]),
        (
            "egress: {allowlist: [42]}",
            &["allowlist[0]: expected a host name (a string), found an integer"],
        ),
        (
            "egress: {allowlist: a.com}",
            &["egress.allowlist: expected a list of host names, found a string"],
        ),
        // routes
        (
            "egress: {routes: [{path_allowlist: [/a]}]}",
            &["routes[0]: missing required key \"host\""],
        ),
        (
            "egress: {routes: [{host: a.com, path_allowlist: [a]}]}",
            &["routes[0].path_allowlist[0]: path \"a\" is not absolute"],
        ),
        (
            "egress: {routes: [{host: a.com, path_allowlist: [/a/../b]}]}",
            &["path prefix \"/a/../b\" is not normalised; write \"/b\""],
        ),
        (
            "egress: {routes: [{host: a.com, path_allowlist: [\"/a?x=1\"]}]}",
            &["has a query or fragment"],
        ),
        (
            "egress: {routes: [{host: a.com, auth: {scheme: Digest, token_ref: T}}]}",
            &[
                "routes[0].auth.scheme: unknown auth scheme \"Digest\"; expected Bearer, token or Basic",
            ],
        ),
        (
            "egress: {routes: [{host: a.com, auth: {scheme: Bearer}}]}",
            &["routes[0].auth: missing required key \"token_ref\""],
        ),
        (
            "egress: {routes: [{host: a.com, auth: {scheme: Bearer, token_ref: \"1X\"}}]}",
            &["auth.token_ref: token_ref \"1X\" is not an environment variable name"],
        ),
        (
            "egress: {routes: [{host: a.com, auth: {scheme: Bearer, token_ref: \"ghp_abc-def\"}}]}",
            &[
                "is not an environment variable name",
                "never the secret itself",
            ],
        ),
        (
            "egress: {routes: [{host: a.com, auth: {scheme: Bearer, token_ref: T, token_env: EGRESS_TOKEN_1}}]}",
            &["auth.token_env: `token_env` is assigned by the launcher"],
        ),
        (
            "egress: {routes: [{host: a.com, auth: {token_ref: T}}]}",
            &["routes[0].auth: missing \"scheme\""],
        ),
        (
            "egress: {routes: [{host: a.com, auth: {scheme: Bearer, header: x-api-key, token_ref: T}}]}",
            &["both scheme and header are set"],
        ),
        (
            "egress: {routes: [{host: a.com, auth: {header: Host, token_ref: T}}]}",
            &["header \"Host\" cannot carry a token"],
        ),
        (
            "egress: {routes: [{host: a.com, auth: {header: \"x api\", token_ref: T}}]}",
            &["is not a valid HTTP header name"],
        ),
        (
            "egress: {routes: [{host: a.com, role: admin}]}",
            &["routes[0].role: unknown role \"admin\"; known roles: claude_code_oauth"],
        ),
        (
            "egress: {routes: [{host: a.com, role: claude_code_oath, auth: {scheme: Bearer, token_ref: T}}]}",
            &["did you mean \"claude_code_oauth\""],
        ),
        (
            "egress: {routes: [{host: a.com, role: [claude_code_oauth]}]}",
            &[
                "routes[0].role: role claude_code_oauth marks the route",
                "needs auth",
            ],
        ),
        (
            "egress: {routes: [{host: a.com}, {host: A.COM}]}",
            &[
                "routes[1].host: host \"a.com\" already has a route at agents.dev.bottle.egress.routes[0]",
            ],
        ),
        (
            "egress: {dlp_action: drop}",
            &["egress.dlp_action: unknown dlp_action \"drop\"; expected block or warn"],
        ),
        (
            "egress: {allow_ip_literals: \"yes\"}",
            &["allow_ip_literals: expected true or false, found a string"],
        ),
        // git
        (
            "git: [{upstream: \"https://h.com/a.git\"}]",
            &["git[0]: missing required key \"name\""],
        ),
        (
            "git: [{name: App, upstream: \"https://h.com/a.git\"}]",
            &["git[0].name: invalid remote name \"App\""],
        ),
        (
            "git: [{name: app, upstream: \"git@h.com:a.git\"}]",
            &["git[0].upstream: upstream \"git@h.com:a.git\" must be an https:// URL"],
        ),
        (
            "git: [{name: app, upstream: \"https://u:p@h.com/a.git\"}]",
            &["carries credentials"],
        ),
        (
            "git: [{name: app, upstream: \"https://h.com\"}]",
            &["has no repository path"],
        ),
        (
            "git: [{name: app, upstream: \"https://h.com/a.git\", auth: {}}]",
            &["git[0].auth: missing required key \"token_ref\""],
        ),
        (
            "git: [{name: app, upstream: \"https://h.com/a.git\", auth: {token_ref: T, username: \"\"}}]",
            &["auth.username: a username must not be empty"],
        ),
        (
            "git: [{name: app, upstream: \"https://h.com/a.git\", branches: {allow: [\"a..b\"]}}]",
            &["git[0].branches.allow[0]: invalid ref pattern \"a..b\""],
        ),
        (
            "git: [{name: app, upstream: \"https://h.com/a.git\", branches: {protect: [main]}}]",
            &["did you mean \"protected\""],
        ),
        (
            "git: [{name: app, upstream: \"https://h.com/a.git\"}, {name: app, upstream: \"https://h.com/b.git\"}]",
            &["git[1].name: remote name \"app\" is already used by agents.dev.bottle.git[0]"],
        ),
        // scalars
        (
            "supervise: \"yes\"",
            &["supervise: expected true or false, found a string"],
        ),
        (
            "pipelock: {enabled: true}",
            &[
                "pipelock: expected true or false (whether the pipelock DLP sidecar runs), found a mapping",
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (yaml, expected) in cases {
        let err = match bottle(yaml) {
            Ok(_) => {
                failures.push(format!("{yaml}: parsed, expected an error"));
                continue;
            }
            Err(e) => e,
        };
        if err.lines().count() != 1 || !err.starts_with("m.yaml:") {
            failures.push(format!("{yaml}: expected one diagnostic, got:\n{err}"));
        }
        for e in *expected {
            if !err.contains(e) {
                failures.push(format!("{yaml}: missing {e:?} in:\n{err}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_error_is_collected_with_positions() {
    let err = bottle(
        "egress:\n  allowlist: [\"http://x.com\", ok.com, \"1.2.3.4\"]\n  routes:\n    - host: a.com\n      auth: {scheme: nope, token_ref: \"bad ref\"}\n    - {host: b.com, rol: x}\ngit: [{name: \"Bad\", upstream: ftp://x}]\nsupervise: 3\n",
    )
    .unwrap_err();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 8, "{err}");
    assert!(
        lines[0].starts_with("m.yaml:5:21: agents.dev.bottle.egress.allowlist[0]"),
        "{err}"
    );
    assert!(err.contains("routes[0].auth.scheme"), "{err}");
    assert!(err.contains("routes[0].auth.token_ref"), "{err}");
    assert!(err.contains("routes[1].rol"), "{err}");
    assert!(err.contains("git[0].name"), "{err}");
    assert!(err.contains("git[0].upstream"), "{err}");
    assert!(err.contains("bottle.supervise"), "{err}");
}

#[test]
fn claude_code_oauth_at_most_once() {
    check_err(
        "egress:\n  routes:\n    - {host: a.com, role: claude_code_oauth, auth: {scheme: Bearer, token_ref: A}}\n    - {host: b.com, role: [claude_code_oauth], auth: {scheme: Bearer, token_ref: B}}\n",
        &[
            "routes[1].role: role claude_code_oauth is already on agents.dev.bottle.egress.routes[0]; at most one route per bottle may carry it",
        ],
    );
}

#[test]
fn ip_literals_only_when_allowed() {
    let b = bottle("egress:\n  allow_ip_literals: true\n  allowlist: [\"10.0.0.1\", \"[::1]\"]\n")
        .unwrap();
    assert_eq!(b.egress().allowlist().len(), 2);
    assert!(b.egress().allow_ip_literals());
    let err = bottle("egress:\n  routes: [{host: \"10.0.0.1\"}]\n").unwrap_err();
    assert!(
        err.contains("routes[0].host: host \"10.0.0.1\" is an IP literal"),
        "{err}"
    );
}

#[test]
fn defaults_when_keys_are_absent() {
    let b = bottle("{}").unwrap();
    assert!(b.supervise());
    assert!(!b.pipelock());
    assert_eq!(b.egress().dlp_action(), crate::bottle::DlpAction::Block);
    assert!(b.git().is_empty() && b.token_slots().is_empty());
    let hosts: Vec<&str> = b
        .effective_routes()
        .routes()
        .iter()
        .map(|r| r.host.as_str())
        .collect();
    assert_eq!(hosts, crate::effective::CLAUDE_CODE_DEFAULT_HOSTS);
    assert!(b.agent_env().is_empty());
}

#[test]
fn a_full_bottle_derives_everything() {
    let b = bottle(
        r#"egress:
  allowlist: [pypi.org, "*.PythonHosted.org", api.github.com]
  dlp_action: warn
  routes:
    - host: api.github.com
      path_allowlist: [/repos/acme/]
      auth: { scheme: token, token_ref: GITHUB_TOKEN }
    - host: api.anthropic.com
      auth: { scheme: Bearer, token_ref: CC_OAUTH }
      role: claude_code_oauth
    - host: uploads.github.com
      auth: { header: X-Upload-Key, token_ref: GITHUB_TOKEN }
git:
  - name: app
    upstream: https://github.com/acme/app.git
    auth: { token_ref: GITHUB_TOKEN }
    branches: { allow: ["feature/*", main], protected: main }
  - name: docs
    upstream: https://gitlab.example/acme/docs.git
    auth: { token_ref: GITLAB_TOKEN, username: oauth2 }
  - name: pub
    upstream: https://github.com/acme/pub.git
supervise: false
pipelock: true
"#,
    )
    .unwrap();
    assert!(!b.supervise() && b.pipelock());
    assert_eq!(b.egress().dlp_action().as_str(), "warn");
    // token slots: distinct refs, declaration order
    let slots: Vec<(&str, &str)> = b
        .token_slots()
        .iter()
        .map(|s| (s.token_ref.as_str(), s.token_env.as_str()))
        .collect();
    assert_eq!(
        slots,
        [
            ("GITHUB_TOKEN", "EGRESS_TOKEN_1"),
            ("CC_OAUTH", "EGRESS_TOKEN_2")
        ]
    );
    let git_slots: Vec<(&str, &str)> = b
        .git_token_slots()
        .iter()
        .map(|s| (s.token_ref.as_str(), s.token_env.as_str()))
        .collect();
    assert_eq!(
        git_slots,
        [
            ("GITHUB_TOKEN", "GIT_GATE_TOKEN_1"),
            ("GITLAB_TOKEN", "GIT_GATE_TOKEN_2")
        ]
    );
    // effective routes: defaults, allowlist, routes; manifest route wins in place
    let t = b.effective_routes();
    let hosts: Vec<&str> = t.routes().iter().map(|r| r.host.as_str()).collect();
    assert_eq!(
        hosts,
        [
            "api.anthropic.com",
            "claude.ai",
            "platform.claude.com",
            "console.anthropic.com",
            "pypi.org",
            "*.pythonhosted.org",
            "api.github.com",
            "uploads.github.com"
        ]
    );
    let gh = &t.routes()[6];
    assert_eq!(gh.path_allowlist.len(), 1);
    let auth = gh.auth.as_ref().unwrap();
    assert_eq!(
        (auth.scheme, auth.token_env.as_str()),
        (Some(AuthScheme::Token), "EGRESS_TOKEN_1")
    );
    let up = t.routes()[7].auth.as_ref().unwrap();
    assert_eq!(
        (up.header.as_deref(), up.token_env.as_str()),
        (Some("x-upload-key"), "EGRESS_TOKEN_1")
    );
    let anth = t.routes()[0].auth.as_ref().unwrap();
    assert_eq!(anth.token_env, "EGRESS_TOKEN_2");
    // the routes file round-trips through the one parser and names no token_ref
    let file = b.routes_file();
    assert_eq!(
        &crate::routes::RouteTable::parse(&file, "routes.yaml").unwrap(),
        t
    );
    assert!(
        !file.contains("GITHUB_TOKEN") && !file.contains("CC_OAUTH"),
        "{file}"
    );
    // remotes file
    let rf = b.remotes_file();
    assert_eq!(rf.remotes().len(), 3);
    let app = rf.get("app").unwrap();
    assert_eq!(app.auth.as_ref().unwrap().token_env, "GIT_GATE_TOKEN_1");
    assert_eq!(app.auth.as_ref().unwrap().username, "x-access-token");
    assert!(app.branches.allows("refs/heads/feature/x") && !app.branches.allows("refs/heads/dev"));
    assert!(app.branches.is_protected("refs/heads/main"));
    assert_eq!(
        rf.get("docs").unwrap().auth.as_ref().unwrap().username,
        "oauth2"
    );
    assert!(rf.get("pub").unwrap().auth.is_none());
    let rendered = rf.render();
    assert_eq!(
        &crate::remotes::RemotesFile::parse(&rendered, "remotes.yaml").unwrap(),
        rf
    );
    assert!(!rendered.contains("GITLAB_TOKEN"), "{rendered}");
    // roles → agent env
    let env: Vec<&str> = b.agent_env().iter().map(|v| v.name).collect();
    assert_eq!(
        env,
        [
            "CLAUDE_CODE_OAUTH_TOKEN",
            "DISABLE_TELEMETRY",
            "DISABLE_ERROR_REPORTING",
            "DISABLE_AUTOUPDATER",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"
        ]
    );
}

#[test]
fn allowlist_duplicates_collapse() {
    let b = bottle("egress:\n  allowlist: [a.com, A.com, api.anthropic.com]\n").unwrap();
    assert_eq!(b.egress().allowlist().len(), 2);
    let n = b.effective_routes().routes().len();
    assert_eq!(n, crate::effective::CLAUDE_CODE_DEFAULT_HOSTS.len() + 1);
}

#[test]
fn null_sections_mean_defaults() {
    let b = bottle("egress:\ngit:\n").unwrap();
    assert!(b.git().is_empty());
    assert!(b.egress().routes().is_empty());
}

#[test]
fn dlp_exempts_the_claude_hosts_and_role_routes_only() {
    let b = bottle(
        "egress:\n  allowlist: [pypi.org]\n  routes:\n    - host: \"*.llm.example\"\n      auth: { scheme: Bearer, token_ref: T }\n      role: claude_code_oauth\n    - host: api.github.com\n      auth: { scheme: Bearer, token_ref: G }\n    - host: api.anthropic.com\n",
    )
    .unwrap();
    let exempt: Vec<String> = b
        .dlp_exempt_hosts()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        exempt,
        [
            "api.anthropic.com",
            "claude.ai",
            "platform.claude.com",
            "console.anthropic.com",
            "*.llm.example"
        ]
    );
    assert_eq!(b.egress().dlp_action().as_str(), "block");
}

#[test]
fn ports_and_private_opt_in_reach_the_routes_file() {
    let b = bottle(
        "egress:\n  allow_ip_literals: true\n  routes:\n    - {host: registry.corp.example, ports: [8443, 443, 8443], allow_private: true}\n    - {host: \"10.1.2.3\", allow_private: true}\n    - {host: api.example.com}\n",
    )
    .unwrap();
    let r = &b.egress().routes()[0];
    assert_eq!(r.ports(), &[443, 8443]);
    assert!(r.allow_private());
    let table = crate::routes::RouteTable::parse(&b.routes_file(), "routes.yaml").unwrap();
    let find = |h: &str| {
        table
            .routes()
            .iter()
            .find(|r| r.host.as_str() == h)
            .unwrap()
            .clone()
    };
    assert_eq!(find("registry.corp.example").ports, vec![443, 8443]);
    assert!(find("registry.corp.example").allow_private);
    assert!(find("10.1.2.3").allow_private);
    let plain = find("api.example.com");
    assert_eq!(plain.ports, vec![443]);
    assert!(!plain.allow_private);
    // Defaults and the allowlist never opt in.
    assert!(!find("api.anthropic.com").allow_private);
}

#[test]
fn bad_ports_and_opt_in_values_say_what_is_valid() {
    check_err(
        "egress:\n  routes: [{host: a.example.com, ports: [0]}]\n",
        &["routes[0].ports[0]", "0 is not a port", "1 to 65535"],
    );
    check_err(
        "egress:\n  routes: [{host: a.example.com, ports: [70000]}]\n",
        &["70000 is not a port"],
    );
    check_err(
        "egress:\n  routes: [{host: a.example.com, ports: []}]\n",
        &["ports is empty"],
    );
    check_err(
        "egress:\n  routes: [{host: a.example.com, allow_private: yes please}]\n",
        &["routes[0].allow_private"],
    );
    check_err(
        "egress:\n  routes: [{host: a.example.com, path_allowlist: [\"/a;x/\"]}]\n",
        &["path parameter"],
    );
    check_err(
        "egress:\n  routes: [{host: \"*.github.io\"}]\n",
        &["public suffix"],
    );
    check_err("egress:\n  allowlist: [intranet]\n", &["single-label"]);
}

#[test]
fn inspection_keys_parse_with_defaults_and_precise_errors() {
    use crate::bottle::{DlpAction, InjectionAction};
    let b = bottle("{}").unwrap();
    assert_eq!(b.egress().injection_action(), InjectionAction::Warn);
    assert!(b.egress().dlp_detectors().entries().is_empty());

    let b = bottle(
        "egress:\n  injection_action: annotate\n  dlp_detectors: {payment_card: block, iban: warn, crypto_private_key: off}",
    )
    .unwrap();
    assert_eq!(b.egress().injection_action().as_str(), "annotate");
    assert_eq!(
        b.egress().dlp_detectors().entries(),
        &[
            ("payment_card", DlpAction::Block),
            ("iban", DlpAction::Warn)
        ]
    );
    assert_eq!(
        b.egress().dlp_detectors().flag_values(),
        ["payment-card=block", "iban=warn"]
    );

    check_err(
        "egress: {injection_action: strip}",
        &[
            "egress.injection_action",
            "unknown injection_action \"strip\"; expected off, warn, block or annotate",
        ],
    );
    check_err(
        "egress: {dlp_detectors: {cards: block}}",
        &[
            "egress.dlp_detectors.cards",
            "unknown key \"cards\"",
            "payment_card",
        ],
    );
    check_err(
        "egress: {dlp_detectors: {iban: deny}}",
        &[
            "egress.dlp_detectors.iban",
            "unknown action \"deny\" for detector iban; expected off, warn or block",
        ],
    );
}

#[test]
fn limits_and_workspace_have_defaults_and_take_values() {
    let b = bottle("supervise: true\n").unwrap();
    assert_eq!(b.limits().memory().to_string(), "8g");
    assert_eq!(b.limits().pids(), 4096);
    assert_eq!(b.workspace(), crate::WorkspaceMode::Protect);
    let b = bottle("limits: {memory: 2g, pids: 512}\nworkspace: copy\n").unwrap();
    assert_eq!(b.limits().memory().bytes(), 2 << 30);
    assert_eq!(b.limits().pids(), 512);
    assert_eq!(b.workspace(), crate::WorkspaceMode::Copy);
    let b = bottle("limits: {memory: 134217728}\n").unwrap();
    assert_eq!(b.limits().memory().to_string(), "128m");
    assert_eq!(b.limits().pids(), 4096, "an absent key keeps its default");
    assert_eq!(
        bottle("limits:\n").unwrap().limits(),
        crate::Limits::default()
    );
}

#[test]
fn a_bare_off_is_off() {
    let b = bottle("egress:\n  injection_action: off\n  dlp_detectors:\n    iban: off\n").unwrap();
    assert_eq!(
        b.egress().injection_action(),
        crate::bottle::InjectionAction::Off
    );
    assert!(b.egress().dlp_detectors().entries().is_empty());
}

#[test]
fn the_predecessors_flat_route_auth_fails_with_the_nested_form_of_its_values() {
    check_err(
        "egress: {routes: [{host: api.github.com, auth_scheme: token, path_allowlist: [/repos/]}]}",
        &[
            "routes[0].auth_scheme",
            "predecessor's flat form",
            "`auth: {scheme: token, token_ref: GITHUB_TOKEN}`",
            "Migrating",
        ],
    );
    let err = bottle(
        "egress:\n  routes:\n    - host: api.example.com\n      token_ref: EXAMPLE_TOKEN\n      auth_header: X-Api-Key",
    )
    .expect_err("flat form");
    // One diagnostic per flat key, each with the route's own values.
    assert_eq!(err.lines().count(), 2, "{err}");
    for key in ["token_ref", "auth_header"] {
        assert!(err.contains(&format!("routes[0].{key}:")), "{key}: {err}");
    }
    assert!(
        err.lines()
            .all(|l| l.contains("`auth: {header: X-Api-Key, token_ref: EXAMPLE_TOKEN}`")),
        "{err}"
    );
    // The nested form of the same route parses.
    bottle(
        "egress:\n  routes:\n    - host: api.example.com\n      auth: {header: X-Api-Key, token_ref: EXAMPLE_TOKEN}",
    )
    .expect("the recipe's form is valid");
}

#[test]
fn bad_limits_and_workspace_name_the_key_and_what_is_valid() {
    let cases: &[(&str, &[&str])] = &[
        (
            "limits: {memory: 8gb}",
            &["bottle.limits.memory", "\"8gb\"", "e.g. 8g or 512m"],
        ),
        (
            "limits: {memory: 1m}",
            &[
                "bottle.limits.memory",
                "out of range",
                "between 64m and 1024g",
            ],
        ),
        (
            "limits: {memory: 12}",
            &["bottle.limits.memory", "out of range"],
        ),
        (
            "limits: {memory: [1]}",
            &["bottle.limits.memory", "expected a memory size", "a list"],
        ),
        (
            "limits: {pids: 10}",
            &[
                "bottle.limits.pids",
                "pids limit 10 is out of range",
                "between 64 and 4194304",
            ],
        ),
        (
            "limits: {pids: \"4096\"}",
            &["bottle.limits.pids", "expected a whole number", "a string"],
        ),
        (
            "limits: {memroy: 8g}",
            &["bottle.limits.memroy", "did you mean \"memory\""],
        ),
        (
            "limits: 8g",
            &["bottle.limits", "expected a mapping with keys memory, pids"],
        ),
        (
            "workspace: rw",
            &[
                "bottle.workspace",
                "unknown workspace mode \"rw\"",
                "protect",
                "copy",
            ],
        ),
        (
            "workspace: true",
            &["bottle.workspace", "a workspace mode (protect or copy)"],
        ),
    ];
    for (yaml, expected) in cases {
        check_err(yaml, expected);
    }
}
