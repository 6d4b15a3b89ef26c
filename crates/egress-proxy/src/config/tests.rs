use std::time::Duration;

use super::*;

#[test]
fn durations() {
    let ok: &[(&str, Duration)] = &[
        ("30", Duration::from_secs(30)),
        ("30s", Duration::from_secs(30)),
        ("500ms", Duration::from_millis(500)),
        ("5m", Duration::from_secs(300)),
        ("1h", Duration::from_secs(3600)),
    ];
    for (s, d) in ok {
        assert_eq!(parse_duration(s).as_ref(), Ok(d), "{s}");
    }
    for bad in ["", "s", "-1s", "1.5s", "10 days", "0", "0s"] {
        let e = parse_duration(bad).expect_err(bad);
        assert!(e.contains("duration"), "{bad}: {e}");
    }
}

#[test]
fn header_limit_below_hyper_minimum_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = Settings {
        routes: dir.path().join("r.yaml"),
        ca_cert: dir.path().join("c.pem"),
        ca_key: dir.path().join("k.pem"),
        upstream_ca: None,
        upstream_proxy: None,
        system_roots: false,
        limits: Limits {
            max_header_bytes: 100,
            ..Limits::default()
        },
        dlp: crate::dlp::DlpSettings::default(),
    };
    let e = Config::load(
        &settings,
        std::sync::Arc::new(crate::env::MapEnv::default()),
        std::sync::Arc::new(crate::resolve::StaticResolver::default()),
    )
    .expect_err("too small");
    assert!(e.to_string().contains("8192"), "{e}");
}
