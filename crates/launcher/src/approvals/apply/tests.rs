use std::cell::RefCell;
use std::time::Duration;

use manifest::routes::RouteTable;

use super::*;

/// A fake egress proxy: a file, a live table, and scripted failures.
#[derive(Default)]
pub(crate) struct FakeEgress {
    pub file: RefCell<String>,
    pub live: RefCell<String>,
    pub attempts: RefCell<u32>,
    pub error: RefCell<Option<String>>,
    pub fail_write: bool,
    pub fail_reload: bool,
    pub fail_token: bool,
    pub ignore_sighup: bool,
    pub writes: RefCell<Vec<String>>,
    /// Token files written: slot → value.
    pub tokens: RefCell<std::collections::BTreeMap<String, String>>,
}

impl FakeEgress {
    pub fn with(text: &str) -> Self {
        let f = Self::default();
        *f.file.borrow_mut() = text.to_owned();
        *f.live.borrow_mut() = text.to_owned();
        f
    }
    fn version(text: &str) -> String {
        RouteTable::parse(text, "t")
            .map(|t| t.version_hash())
            .unwrap_or_else(|_| "invalid".into())
    }
}

impl EgressControl for FakeEgress {
    async fn read_routes(&self) -> Result<String, String> {
        Ok(self.file.borrow().clone())
    }
    async fn write_routes(&self, text: &str) -> Result<(), String> {
        if self.fail_write {
            return Err("no space left".into());
        }
        self.writes.borrow_mut().push(text.to_owned());
        *self.file.borrow_mut() = text.to_owned();
        Ok(())
    }
    async fn write_token(&self, token_env: &str, value: &str) -> Result<(), String> {
        if self.fail_token {
            return Err("container is paused".into());
        }
        self.tokens
            .borrow_mut()
            .insert(token_env.to_owned(), value.to_owned());
        Ok(())
    }
    async fn reload(&self) -> Result<(), String> {
        if self.fail_reload {
            return Err("container is gone".into());
        }
        if self.ignore_sighup {
            return Ok(());
        }
        *self.attempts.borrow_mut() += 1;
        let text = self.file.borrow().clone();
        match RouteTable::parse(&text, "t") {
            Ok(_) => {
                *self.live.borrow_mut() = text;
                *self.error.borrow_mut() = None;
            }
            Err(e) => *self.error.borrow_mut() = Some(e.to_string()),
        }
        Ok(())
    }
    async fn status(&self) -> Result<EgressStatus, String> {
        Ok(EgressStatus {
            version: Self::version(&self.live.borrow()),
            last_reload_attempt: Some(self.attempts.borrow().to_string()),
            last_reload_error: self.error.borrow().clone(),
            missing_token_env: Vec::new(),
        })
    }
}

pub(crate) const BASE: &str = "version: 1\nroutes:\n  - host: api.github.com\n";

fn table(text: &str) -> RouteTable {
    RouteTable::parse(text, "t").unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

struct Pl(Result<(), String>, RefCell<Vec<String>>);
impl PipelockMirror for Pl {
    async fn mirror(&self, hosts: &[String]) -> Result<(), String> {
        self.1.borrow_mut().extend(hosts.iter().cloned());
        self.0.clone()
    }
}

const NEW: &str = "version: 1\nroutes:\n  - host: api.github.com\n  - host: '*.pypi.org'\n";

/// Reads the live table of `eg`, then applies `NEW` over it.
fn apply_new(
    eg: &FakeEgress,
    pl: Option<&Pl>,
    timeout: Duration,
) -> (RouteTable, Result<EgressStatus, ApplyError>) {
    let rt = rt();
    let (old, before) = rt.block_on(live_table("b", eg)).unwrap();
    let r = rt.block_on(apply_table(
        "b",
        eg,
        pl,
        &old.render(),
        &before,
        &table(NEW),
        timeout,
    ));
    (old, r)
}

#[test]
fn apply_writes_signals_and_confirms_the_new_version() {
    let eg = FakeEgress::with(BASE);
    let pl = Pl(Ok(()), RefCell::default());
    let new = table(NEW);
    let (_, r) = apply_new(&eg, Some(&pl), Duration::from_secs(5));
    let s = r.unwrap();
    assert_eq!(s.version, new.version_hash());
    assert_eq!(*eg.file.borrow(), new.render());
    assert_eq!(*pl.1.borrow(), ["api.github.com", "pypi.org"]);
}

#[test]
fn a_pipelock_failure_leaves_egress_untouched_and_says_so() {
    let eg = FakeEgress::with(BASE);
    let pl = Pl(Err("pipelock restart failed".into()), RefCell::default());
    let (_, r) = apply_new(&eg, Some(&pl), Duration::from_secs(5));
    let err = r.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("pipelock allowlist mirror failed"), "{msg}");
    assert!(msg.contains("egress-proxy was NOT changed"), "{msg}");
    assert!(eg.writes.borrow().is_empty());
}

#[test]
fn a_write_failure_says_the_live_table_is_unchanged() {
    let eg = FakeEgress {
        fail_write: true,
        ..FakeEgress::with(BASE)
    };
    let (old, r) = apply_new(&eg, None, Duration::from_secs(5));
    let err = r.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("live table is unchanged"), "{msg}");
    assert!(msg.contains(&old.version_hash()), "{msg}");
}

#[test]
fn an_unconfirmed_reload_restores_the_old_file() {
    let eg = FakeEgress {
        ignore_sighup: true,
        ..FakeEgress::with(BASE)
    };
    let (old, r) = apply_new(&eg, None, Duration::from_millis(300));
    let err = r.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("was not live after"), "{msg}");
    assert!(
        msg.contains("previous routes file was written back"),
        "{msg}"
    );
    assert_eq!(*eg.file.borrow(), old.render());
}

#[test]
fn a_failed_signal_restores_the_old_file() {
    let eg = FakeEgress {
        fail_reload: true,
        ..FakeEgress::with(BASE)
    };
    let (old, r) = apply_new(&eg, None, Duration::from_secs(5));
    let err = r.unwrap_err();
    assert!(err.to_string().contains("SIGHUP failed"), "{err}");
    assert_eq!(*eg.file.borrow(), old.render());
}

#[test]
fn drift_between_file_and_live_table_is_refused() {
    let eg = FakeEgress::with(BASE);
    *eg.file.borrow_mut() = NEW.to_owned();
    *eg.error.borrow_mut() = Some("permission denied".into());
    let err = rt().block_on(live_table("b", &eg)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("not the live table"), "{msg}");
    assert!(msg.contains("permission denied"), "{msg}");
    assert!(msg.contains("launcher routes edit b"), "{msg}");
}

#[test]
fn an_unparseable_file_is_drift() {
    let eg = FakeEgress::with(BASE);
    *eg.file.borrow_mut() = "routes: [".to_owned();
    let err = rt().block_on(live_table("b", &eg)).unwrap_err();
    assert!(matches!(err, ApplyError::Drift { .. }), "{err}");
}

#[test]
fn pipelock_hosts_strip_wildcards_and_drop_ips_and_duplicates() {
    let t = table(
        "version: 1\nroutes:\n  - host: '*.example.com'\n  - host: example.com\n  - host: 10.0.0.1\n  - host: a.b.c\n",
    );
    assert_eq!(pipelock_hosts(&t), ["example.com", "a.b.c"]);
}

pub(crate) const PIPELOCK_CONFIG_TEXT: &str = "version: 1\nmode: strict\nenforce: true\n\napi_allowlist:\n  - \"api.github.com\"\n  - \"example.com\"\n\nforward_proxy:\n  enabled: true\n";

#[test]
fn pipelock_hosts_are_added_to_the_allowlist_block_only_once() {
    let out = add_pipelock_hosts(
        PIPELOCK_CONFIG_TEXT,
        &["Pypi.org".into(), "example.com".into(), "pypi.org".into()],
    )
    .unwrap()
    .expect("changed");
    assert_eq!(
        out,
        "version: 1\nmode: strict\nenforce: true\n\napi_allowlist:\n  - \"api.github.com\"\n  - \"example.com\"\n  - \"pypi.org\"\n\nforward_proxy:\n  enabled: true\n"
    );
    // Everything present: no change, so no restart.
    assert_eq!(
        add_pipelock_hosts(&out, &["PYPI.org".into()]).unwrap(),
        None
    );
}

#[test]
fn an_empty_allowlist_block_gets_its_first_host() {
    let cfg = "version: 1\napi_allowlist:\n\nforward_proxy:\n  enabled: true\n";
    let out = add_pipelock_hosts(cfg, &["a.test".into()])
        .unwrap()
        .unwrap();
    assert!(
        out.contains("api_allowlist:\n  - \"a.test\"\n\nforward_proxy:"),
        "{out}"
    );
}

#[test]
fn a_config_without_the_block_or_a_bad_host_is_an_error() {
    let e = add_pipelock_hosts("version: 1\n", &["a.test".into()]).unwrap_err();
    assert!(e.contains("api_allowlist"), "{e}");
    let e = add_pipelock_hosts(PIPELOCK_CONFIG_TEXT, &["a b".into()]).unwrap_err();
    assert!(e.contains("not a host name"), "{e}");
}

#[test]
fn the_single_file_of_a_docker_archive_is_read() {
    let tar = crate::engine::archive::build(&[crate::engine::archive::FileEntry {
        path: "/etc/pipelock/pipelock.yaml".into(),
        mode: 0o644,
        uid: 10001,
        gid: 10001,
        contents: b"api_allowlist:\n".to_vec(),
    }])
    .unwrap();
    assert_eq!(single_file_of_tar(&tar).unwrap(), "api_allowlist:\n");
    assert!(single_file_of_tar(b"not a tar").is_err());
}

fn check_config(text: &str, want: Result<&[&str], &[&str]>) {
    match (check_pipelock_config(text), want) {
        (Ok(c), Ok(hosts)) => assert_eq!(c.hosts(), hosts, "{text}"),
        (Err(e), Err(needles)) => {
            for n in needles {
                assert!(e.contains(n), "{text:?}: {e}");
            }
        }
        (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
    }
}

#[test]
fn an_edited_pipelock_config_is_checked_before_pipelock_sees_it() {
    check_config(PIPELOCK_CONFIG_TEXT, Ok(&["api.github.com", "example.com"]));
    // The launcher's own empty list, and a wildcard.
    check_config(
        "api_allowlist:\n\nforward_proxy:\n  enabled: true\n",
        Ok(&[]),
    );
    check_config(
        "api_allowlist:\n  - \"*.pypi.org\"\n  - API.Example.com\nforward_proxy: {enabled: true}\n",
        Ok(&["*.pypi.org", "api.example.com"]),
    );
    // Not YAML; not a mapping.
    check_config("api_allowlist: [\n", Err(&["not valid YAML"]));
    check_config("- a\n", Err(&["expected a mapping"]));
    // The allowlist: missing, wrong type, bad hosts, an IP, every problem at once.
    check_config(
        "forward_proxy:\n  enabled: true\n",
        Err(&["api_allowlist: missing"]),
    );
    check_config(
        "api_allowlist: x.test\nforward_proxy:\n  enabled: true\n",
        Err(&["expected a list of host names, found a string"]),
    );
    check_config(
        "api_allowlist:\n  - \"bad host\"\n  - \"10.0.0.1\"\n  - 7\n  - \"bücher.example\"\nforward_proxy:\n  enabled: false\n",
        Err(&[
            "api_allowlist[0] (line 2): host \"bad host\"",
            "api_allowlist[1] (line 3): \"10.0.0.1\" is an IP address",
            "api_allowlist[2] (line 4): expected a host name, found an integer",
            "write \"bücher.example\" as \"xn--bcher-kva.example\"",
            "forward_proxy.enabled: must stay true",
        ]),
    );
    // A form the approvals' mirror cannot extend is refused with the fix.
    check_config(
        "api_allowlist: [\"a.test\"]\nforward_proxy:\n  enabled: true\n",
        Err(&["block list", "  - \"host\""]),
    );
    check_config(
        "api_allowlist: []\nforward_proxy:\n  enabled: true\n",
        Err(&["block list"]),
    );
    // Too large.
    let big = format!(
        "{PIPELOCK_CONFIG_TEXT}#{}\n",
        "x".repeat(MAX_PIPELOCK_CONFIG)
    );
    check_config(&big, Err(&["at most"]));
}

/// A fake pipelock: its config, scripted health, and every load.
#[derive(Default)]
pub(crate) struct FakePipelock {
    pub config: RefCell<String>,
    pub unhealthy_with: Option<&'static str>,
    pub fail_restore: bool,
    pub loads: RefCell<Vec<String>>,
}

impl PipelockConfig for FakePipelock {
    async fn read_config(&self) -> Result<String, String> {
        Ok(self.config.borrow().clone())
    }
    async fn load_config(&self, text: &str) -> Result<(), String> {
        let n = self.loads.borrow().len();
        self.loads.borrow_mut().push(text.to_owned());
        *self.config.borrow_mut() = text.to_owned();
        if self.fail_restore && n > 0 {
            return Err("container is gone".into());
        }
        match self.unhealthy_with {
            Some(marker) if text.contains(marker) => {
                Err("health check failed: exit 1: unknown key".into())
            }
            _ => Ok(()),
        }
    }
}

#[test]
fn an_edited_pipelock_config_goes_live_or_the_old_one_comes_back() {
    let new = check_pipelock_config(&PIPELOCK_CONFIG_TEXT.replace("mode: strict", "mode: audit"))
        .unwrap();
    let pl = FakePipelock {
        config: RefCell::new(PIPELOCK_CONFIG_TEXT.into()),
        ..FakePipelock::default()
    };
    rt().block_on(replace_pipelock_config(
        "b",
        &pl,
        PIPELOCK_CONFIG_TEXT,
        &new,
    ))
    .unwrap();
    assert_eq!(*pl.loads.borrow(), [new.text()]);

    // Unhealthy with the new config: the previous one is loaded again.
    let pl = FakePipelock {
        config: RefCell::new(PIPELOCK_CONFIG_TEXT.into()),
        unhealthy_with: Some("audit"),
        ..FakePipelock::default()
    };
    let err = rt()
        .block_on(replace_pipelock_config(
            "b",
            &pl,
            PIPELOCK_CONFIG_TEXT,
            &new,
        ))
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("unknown key"), "{msg}");
    assert!(msg.contains("previous config was loaded again"), "{msg}");
    assert!(msg.contains("egress-proxy was not touched"), "{msg}");
    assert_eq!(*pl.config.borrow(), PIPELOCK_CONFIG_TEXT);
    assert_eq!(pl.loads.borrow().len(), 2);

    // And when even that fails, the operator is told pipelock is down.
    let pl = FakePipelock {
        unhealthy_with: Some("audit"),
        fail_restore: true,
        ..FakePipelock::default()
    };
    let err = rt()
        .block_on(replace_pipelock_config(
            "b",
            &pl,
            PIPELOCK_CONFIG_TEXT,
            &new,
        ))
        .unwrap_err();
    assert!(err.to_string().contains("ALSO failed"), "{err}");
    assert!(err.to_string().contains("pipelock is down"), "{err}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

    /// Any text: a clear answer, never a panic.
    #[test]
    fn checking_any_pipelock_config_never_panics(text in proptest::prelude::any::<String>()) {
        let _ = check_pipelock_config(&text);
    }

    /// The launcher's own layout is always accepted, with its hosts.
    #[test]
    fn the_launchers_own_layout_is_accepted(
        hosts in proptest::collection::vec("[a-z][a-z0-9]{0,10}\\.(test|example|org)", 0..8),
    ) {
        let mut hosts = hosts;
        hosts.dedup();
        let mut text = String::from("version: 1\nmode: strict\n\napi_allowlist:\n");
        for h in &hosts {
            text.push_str(&format!("  - {}\n", serde_json::to_string(h).unwrap()));
        }
        text.push_str("\nforward_proxy:\n  enabled: true\n");
        let c = check_pipelock_config(&text).map_err(proptest::test_runner::TestCaseError::fail)?;
        proptest::prop_assert_eq!(c.hosts(), &hosts[..]);
        // And the approvals' mirror can extend it.
        proptest::prop_assert!(add_pipelock_hosts(&text, &["added.test".into()]).is_ok());
    }
}

/// A fake engine behind the [`BottleEngine`] seam: one egress sidecar
/// whose files, signals and probe answers are recorded.
#[derive(Default)]
struct FakeEngine {
    files: RefCell<std::collections::BTreeMap<String, (u32, u64, String)>>,
    signals: RefCell<Vec<(Component, String)>>,
    execs: RefCell<Vec<(Component, String, Vec<String>)>>,
    status_json: String,
}

#[derive(Debug, thiserror::Error)]
#[error("fake engine: {0}")]
struct FakeError(String);

impl BottleEngine for FakeEngine {
    type Error = FakeError;

    async fn state_of(&self, _: &Identity, _: Component) -> Result<Running, FakeError> {
        Ok(Running::Yes)
    }

    async fn copy_in(
        &self,
        bottle: &Identity,
        component: Component,
        files: &[FileEntry],
    ) -> Result<(), FakeError> {
        assert_eq!(bottle.as_str(), "dev-k3x9a");
        assert_eq!(component, Component::Egress);
        for f in files {
            self.files.borrow_mut().insert(
                f.path.clone(),
                (f.mode, f.uid, String::from_utf8_lossy(&f.contents).into()),
            );
        }
        Ok(())
    }

    async fn read_from(
        &self,
        _: &Identity,
        _: Component,
        path: &str,
        _: u64,
    ) -> Result<Option<Vec<u8>>, FakeError> {
        Ok(self
            .files
            .borrow()
            .get(path)
            .map(|(_, _, t)| t.clone().into_bytes()))
    }

    async fn exec_in(
        &self,
        _: &Identity,
        component: Component,
        user: &str,
        cmd: &[String],
    ) -> Result<crate::engine::ExecOutput, FakeError> {
        self.execs
            .borrow_mut()
            .push((component, user.to_owned(), cmd.to_vec()));
        let output = if cmd.first().map(String::as_str) == Some("cat") {
            let files = self.files.borrow();
            match files.get(&cmd[1]) {
                Some((_, _, t)) => t.clone(),
                None => return Err(FakeError(format!("no {}", cmd[1]))),
            }
        } else {
            self.status_json.clone()
        };
        Ok(crate::engine::ExecOutput {
            code: Some(0),
            output,
        })
    }

    async fn signal(
        &self,
        _: &Identity,
        component: Component,
        signal: &str,
    ) -> Result<(), FakeError> {
        self.signals
            .borrow_mut()
            .push((component, signal.to_owned()));
        Ok(())
    }

    async fn logs_of(&self, _: &Identity, _: Component, _: usize) -> Result<String, FakeError> {
        Ok(String::new())
    }

    async fn bottles(&self) -> Result<Vec<crate::engine::Found>, FakeError> {
        Ok(Vec::new())
    }

    async fn remove_bottle(&self, _: &str) -> Result<Vec<String>, FakeError> {
        Ok(Vec::new())
    }
}

#[test]
fn egress_over_the_engine_seam_writes_as_the_sidecar_signals_and_reads_status() {
    let engine = FakeEngine {
        status_json: r#"{"version":"abc","missing_token_env":["EGRESS_TOKEN_2"]}"#.into(),
        ..FakeEngine::default()
    };
    let egress = SidecarEgress::new(engine, Identity::parse("dev-k3x9a").unwrap());
    let rt = rt();
    rt.block_on(egress.write_routes("routes: []\n")).unwrap();
    rt.block_on(egress.write_token("EGRESS_TOKEN_2", "s3cret"))
        .unwrap();
    assert_eq!(rt.block_on(egress.read_routes()).unwrap(), "routes: []\n");
    rt.block_on(egress.reload()).unwrap();
    let status = rt.block_on(egress.status()).unwrap();
    assert_eq!(status.version, "abc");
    assert_eq!(status.missing_token_env, ["EGRESS_TOKEN_2"]);

    let e = &egress.engine;
    let files = e.files.borrow();
    // The routes file readable by the proxy, the token by the proxy only,
    // both owned by the sidecar user.
    assert_eq!(
        files.get(EGRESS_ROUTES_PATH),
        Some(&(0o644, SIDECAR_UID, "routes: []\n".to_owned()))
    );
    assert_eq!(
        files.get(&format!("{EGRESS_TOKENS_DIR}/EGRESS_TOKEN_2")),
        Some(&(0o400, SIDECAR_UID, "s3cret".to_owned()))
    );
    assert_eq!(
        *e.signals.borrow(),
        [(Component::Egress, "SIGHUP".to_owned())]
    );
    // Reads and the probe run as the proxy's user, in egress only.
    let user = format!("{SIDECAR_UID}:{SIDECAR_UID}");
    assert!(
        e.execs
            .borrow()
            .iter()
            .all(|(c, u, _)| *c == Component::Egress && *u == user)
    );
    assert_eq!(
        e.execs.borrow().last().map(|(_, _, cmd)| cmd.clone()),
        Some(crate::plan::egress_status_probe(5))
    );
}
