use super::*;

fn parse(text: &str) -> Result<Manifest, String> {
    Manifest::parse(text, "m.yaml").map_err(|e| e.to_string())
}

#[track_caller]
fn check_err(text: &str, expected: &[&str]) {
    let err = parse(text).expect_err("expected an error");
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
fn bad_documents_have_precise_messages() {
    let cases: &[(&str, &[&str])] = &[
        (
            "",
            &["m.yaml:1:1: the manifest is empty; expected a mapping with an `agents` key"],
        ),
        ("# only a comment\n", &["the manifest is empty"]),
        (
            "[]",
            &["expected a mapping with keys version, agents, found a list"],
        ),
        (
            "version: 1\n",
            &["m.yaml:1:1: missing required key \"agents\""],
        ),
        (
            "version: 2\nagents: {a: {}}\n",
            &["m.yaml:1:10: version: unsupported manifest version 2; this build reads version 1"],
        ),
        (
            "version: \"1\"\nagents: {a: {}}\n",
            &["version: expected the manifest version 1 (an integer), found a string"],
        ),
        (
            "agents: {}\n",
            &["agents: no agents defined; expected at least one agent"],
        ),
        (
            "agents: [a]\n",
            &["agents: expected a mapping of agent name to agent"],
        ),
        (
            "agent: {}\nagents: {a: }\n",
            &["m.yaml:1:1: agent: unknown key \"agent\"; did you mean \"agents\"?"],
        ),
        (
            "runtime: docker\nagents: {a: {}}\n",
            &["runtime: `runtime` is no longer supported"],
        ),
        (
            "agents:\n  Dev: {}\n",
            &["m.yaml:2:3: agents.Dev: invalid agent name \"Dev\"; expected lowercase letters"],
        ),
        ("agents:\n  dev-: {}\n", &["invalid agent name \"dev-\""]),
        (
            "agents:\n  dev: {promt: hi}\n",
            &["agents.dev.promt: unknown key \"promt\"; did you mean \"prompt\"?"],
        ),
        (
            "agents:\n  dev: {runtime: docker}\n",
            &["agents.dev.runtime: `runtime` is no longer supported"],
        ),
        (
            "agents:\n  dev: {tokens: []}\n",
            &["agents.dev.tokens: `tokens` was removed"],
        ),
        (
            "agents:\n  dev: {prompt: 3}\n",
            &["agents.dev.prompt: expected the system prompt (a string), found an integer"],
        ),
        (
            "agents:\n  dev: {image: debian, dockerfile: ./D}\n",
            &["agents.dev.dockerfile: both image and dockerfile are set"],
        ),
        (
            "agents:\n  dev: {image: \"a b\"}\n",
            &["agents.dev.image: image \"a b\" is not an image reference"],
        ),
        (
            "agents:\n  dev: {dockerfile: \"\"}\n",
            &["agents.dev.dockerfile: a Dockerfile path must not be empty"],
        ),
        (
            "agents:\n  dev: {skills: ./s}\n",
            &["agents.dev.skills: expected a list of skill directories, found a string"],
        ),
        (
            "agents:\n  dev: {skills: [a/x, b/x/]}\n",
            &["agents.dev.skills[1]: skill directory \"b/x/\" has the same name \"x\" as \"a/x\""],
        ),
        (
            "agents:\n  dev: {skills: [\"..\"]}\n",
            &["skills[0]: skill directory \"..\" has no directory name"],
        ),
        (
            "agents:\n  dev: {bottle: []}\n",
            &[
                "agents.dev.bottle: expected a mapping with keys egress, git, supervise, pipelock, limits, workspace, found a list",
            ],
        ),
        (
            "agents:\n  dev: {}\n  dev: {}\n",
            &["not valid YAML", "duplicate"],
        ),
        (
            "agents: {dev: {bottle: {egress: {allowlist: [a.com]}}}\n",
            &["m.yaml", "not valid YAML"],
        ),
    ];
    let mut failures = Vec::new();
    for (text, expected) in cases {
        let err = match parse(text) {
            Ok(_) => {
                failures.push(format!("{text:?}: parsed, expected an error"));
                continue;
            }
            Err(e) => e,
        };
        if err.lines().count() != 1 || !err.starts_with("m.yaml") {
            failures.push(format!("{text:?}: expected one diagnostic, got:\n{err}"));
        }
        for e in *expected {
            if !err.to_lowercase().contains(&e.to_lowercase()) {
                failures.push(format!("{text:?}: missing {e:?} in:\n{err}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_typo_in_a_nested_key_names_the_whole_path() {
    check_err(
        "agents:\n  dev:\n    bottle:\n      egress:\n        routes:\n          - host: a.com\n          - host: b.com\n            auth: {sceme: Bearer, token_ref: T}\n",
        &[
            "m.yaml:8:20: agents.dev.bottle.egress.routes[1].auth.sceme: unknown key \"sceme\"; did you mean \"scheme\"?",
        ],
    );
}

#[test]
fn errors_across_agents_are_all_collected() {
    let err = parse("agents:\n  a: {promt: x}\n  B: {}\n  c: {bottle: {ssh: []}}\n").unwrap_err();
    assert_eq!(err.lines().count(), 3, "{err}");
}

#[test]
fn good_manifest() {
    let m = parse(
        "version: 1\nagents:\n  dev:\n    description: '  works  '\n    prompt: |\n      Be careful.\n    skills: [./skills/review, /abs/lint/]\n    image: registry.example/team/agent:1.2\n  ops:\n    dockerfile: ./Dockerfile.ops\n  bare:\n",
    )
    .unwrap();
    assert_eq!(m.origin(), "m.yaml");
    let names: Vec<&str> = m.agents().iter().map(|a| a.name().as_str()).collect();
    assert_eq!(names, ["dev", "ops", "bare"]);
    let dev = m.agent("dev").unwrap();
    assert_eq!(dev.description(), Some("works"));
    assert_eq!(dev.prompt(), Some("Be careful.\n"));
    assert_eq!(dev.skills(), ["./skills/review", "/abs/lint/"]);
    assert_eq!(
        dev.image(),
        &ImageSource::Image("registry.example/team/agent:1.2".into())
    );
    assert_eq!(
        m.agent("ops").unwrap().image(),
        &ImageSource::Dockerfile("./Dockerfile.ops".into())
    );
    let bare = m.agent("bare").unwrap();
    assert_eq!(bare.image(), &ImageSource::Default);
    assert!(bare.bottle().supervise());
    assert!(m.agent("nope").is_none());
}

#[test]
fn json_manifests_are_accepted() {
    let m = Manifest::parse(
        r#"{"agents": {"dev": {"bottle": {"egress": {"allowlist": ["pypi.org"]}}}}}"#,
        "m.json",
    )
    .unwrap();
    assert_eq!(
        m.agents()[0].bottle().egress().allowlist()[0].as_str(),
        "pypi.org"
    );
    let err = Manifest::parse(r#"{"agents": {"dev": {"bottel": {}}}}"#, "m.json").unwrap_err();
    assert!(
        err.to_string().contains("m.json:1:21: agents.dev.bottel"),
        "{err}"
    );
}

#[test]
fn agent_names() {
    for ok in ["a", "dev", "code-review", "a1", "1a"] {
        assert!(AgentName::parse(ok).is_ok(), "{ok}");
    }
    let long = "a".repeat(MAX_AGENT_NAME + 1);
    for bad in ["", "-a", "a-", "A", "a_b", "a.b", "a b", long.as_str()] {
        assert!(AgentName::parse(bad).is_err(), "{bad}");
    }
}

const MD: &str = "---\nname: reviewer\ndescription: reviews code\nbottle:\n  egress:\n    allowlist: [pypi.org]\n---\n\nYou review code.\n\nBe kind.\n";

#[test]
fn markdown_agents() {
    let a = parse_markdown_agent(MD, "agents/r.md", "r").unwrap();
    assert_eq!(a.name().as_str(), "reviewer");
    assert_eq!(a.description(), Some("reviews code"));
    assert_eq!(a.prompt(), Some("You review code.\n\nBe kind."));
    assert_eq!(a.bottle().egress().allowlist().len(), 1);

    // name from the file stem; CRLF and BOM tolerated; empty frontmatter
    let b = parse_markdown_agent(
        "\u{feff}---\r\n---\r\nHello\r\n",
        "agents/helper.md",
        "helper",
    )
    .unwrap();
    assert_eq!(b.name().as_str(), "helper");
    assert_eq!(b.prompt(), Some("Hello"));
    // no body → no prompt
    let c = parse_markdown_agent("---\ndescription: x\n---\n", "c.md", "c").unwrap();
    assert_eq!(c.prompt(), None);
}

#[test]
fn bad_markdown_agents() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "no frontmatter\n",
            "a",
            &["a.md: a Markdown agent file must start with a YAML frontmatter block"],
        ),
        (
            "---\nname: a\n",
            "a",
            &["must start with a YAML frontmatter block"],
        ),
        (
            "---\nprompt: x\n---\nbody\n",
            "a",
            &[
                "a.md:2:1: prompt: in a Markdown agent file the body after the frontmatter is the prompt",
            ],
        ),
        (
            "---\ntools: [Read]\n---\n",
            "a",
            &["a.md:2:1: tools: unknown key \"tools\""],
        ),
        (
            "---\nname: Bad Name\n---\n",
            "a",
            &["a.md:2:7: name: invalid agent name \"Bad Name\""],
        ),
        (
            "---\n---\n",
            "My_Agent",
            &[
                "a.md: the agent is named after the file (invalid agent name \"My_Agent\"",
                "set `name:` in the frontmatter",
            ],
        ),
        (
            "---\nbottle: {cred_proxy: {}}\n---\n",
            "a",
            &["a.md:2:10: bottle.cred_proxy: `cred_proxy` was removed"],
        ),
        ("---\nname: [x\n---\n", "a", &["a.md", "not valid YAML"]),
    ];
    let mut failures = Vec::new();
    for (text, stem, expected) in cases {
        let err = match parse_markdown_agent(text, "a.md", stem) {
            Ok(_) => {
                failures.push(format!("{text:?}: parsed"));
                continue;
            }
            Err(e) => e.to_string(),
        };
        if err.lines().count() != 1 {
            failures.push(format!("{text:?}: expected one diagnostic, got:\n{err}"));
        }
        for e in *expected {
            if !err.contains(e) {
                failures.push(format!("{text:?}: missing {e:?} in:\n{err}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn from_agents_refuses_duplicates_and_emptiness() {
    let a = parse_markdown_agent(MD, "x/a.md", "a").unwrap();
    let m = Manifest::from_agents("x/", vec![("x/a.md".into(), a.clone())]).unwrap();
    assert_eq!(m.agents().len(), 1);
    let err = Manifest::from_agents(
        "x/",
        vec![("x/a.md".into(), a.clone()), ("x/b.md".into(), a)],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "x/b.md: name: agent name \"reviewer\" is already defined in x/a.md; agent names must be unique"
    );
    let err = Manifest::from_agents("x/", Vec::new()).unwrap_err();
    assert!(err.to_string().contains("x/: no agents found"), "{err}");
}

#[test]
fn the_embedded_default_parses() {
    let m = crate::defaults::default_manifest().unwrap();
    assert_eq!(m.origin(), crate::defaults::DEFAULT_MANIFEST_ORIGIN);
    let a = m.agent(crate::defaults::DEFAULT_AGENT_NAME).unwrap();
    let b = a.bottle();
    assert!(b.supervise() && !b.pipelock());
    assert_eq!(b.token_slots().len(), 1);
    assert_eq!(b.token_slots()[0].token_ref, "CLAUDE_CODE_OAUTH_TOKEN");
    assert_eq!(b.agent_env()[0].name, "CLAUDE_CODE_OAUTH_TOKEN");
    for h in crate::effective::CLAUDE_CODE_DEFAULT_HOSTS {
        let host = crate::host::RequestHost::parse(h).unwrap();
        assert!(b.effective_routes().lookup(&host).is_some(), "{h}");
    }
}
