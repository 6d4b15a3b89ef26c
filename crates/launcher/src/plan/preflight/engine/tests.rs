use proptest::prelude::*;

use super::*;

fn info(version: &str, api: &str) -> EngineInfo {
    EngineInfo {
        version: version.into(),
        api_version: api.into(),
        os: "linux".into(),
        platform: vec!["Docker Engine - Community".into()],
        rootless: false,
        network_drivers: vec!["bridge".into(), "host".into(), "null".into()],
    }
}

#[test]
fn releases_parse_from_distribution_spellings() {
    let cases = [
        ("20.10.24+dfsg1", Some((20, 10, 24))),
        ("25.0.5", Some((25, 0, 5))),
        ("v26.1.3", Some((26, 1, 3))),
        ("28.2.2-1ubuntu1", Some((28, 2, 2))),
        ("24.0", Some((24, 0, 0))),
        ("dev", None),
        ("", None),
        ("20", None),
        ("1.2.x", Some((1, 2, 0))),
        ("x1.2", None),
    ];
    for (v, want) in cases {
        assert_eq!(parse_release(v), want, "{v:?}");
    }
    assert_eq!(parse_api("1.41"), Some((1, 41)));
    assert_eq!(parse_api("1"), None);
}

#[test]
fn this_machines_engine_is_protected_by_the_sink_and_says_why() {
    let r = assess(&info("20.10.24+dfsg1", "1.41")).expect("20.10 runs");
    assert_eq!(r.engine_dns_forwards_out, Some(true));
    assert!(
        r.dns.contains("127.0.0.1") && r.dns.contains("CVE-2024-29018"),
        "{}",
        r.dns
    );
    assert!(r.host.contains("inhibit_ipv4"), "{}", r.host);
    let r = assess(&info("26.1.3", "1.45")).expect("26 runs");
    assert_eq!(r.engine_dns_forwards_out, Some(false));
    assert!(r.dns.contains(">= 25.0.5"), "{}", r.dns);
    let r = assess(&info("master-dockerproject", "1.47")).expect("a dev build with a new API runs");
    assert_eq!(r.engine_dns_forwards_out, None);
}

#[test]
fn engines_that_cannot_be_protected_are_refused_with_what_to_use() {
    let old = assess(&info("19.03.15", "1.40")).expect_err("19.03");
    assert!(matches!(old, EngineRefusal::TooOld { .. }));
    let msg = old.to_string();
    assert!(
        msg.contains("19.03.15") && msg.contains("upgrade the engine to 20.10"),
        "{msg}"
    );
    assert!(matches!(
        assess(&info("20.10.24", "1.40")),
        Err(EngineRefusal::TooOld { .. })
    ));
    assert!(matches!(
        assess(&info("18.09", "1.41")),
        Err(EngineRefusal::TooOld { .. })
    ));

    let mut win = info("24.0.7", "1.43");
    win.os = "windows".into();
    assert!(
        assess(&win)
            .expect_err("windows")
            .to_string()
            .contains("Linux engine")
    );

    let mut podman = info("4.9.3", "1.41");
    podman.platform = vec!["Podman Engine".into()];
    let msg = assess(&podman).expect_err("podman").to_string();
    assert!(
        msg.contains("Podman Engine 4.9.3") && msg.contains("use Docker Engine"),
        "{msg}"
    );

    let mut nobridge = info("24.0.7", "1.43");
    nobridge.network_drivers = vec!["host".into(), "null".into()];
    let msg = assess(&nobridge).expect_err("no bridge").to_string();
    assert!(
        msg.contains("no bridge network driver") && msg.contains("host, null"),
        "{msg}"
    );
}

const FIB_TRIE: &str = "Main:
  +-- 0.0.0.0/0 3 0 4
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
        +-- 172.17.0.0/16 2 0 2
              |-- 172.17.0.0
                 /16 link UNICAST
              |-- 172.17.0.1
                 /32 host LOCAL
           |-- 172.17.255.255
              /32 link BROADCAST
Local:
  +-- 0.0.0.0/0 3 0 4
           |-- 172.17.0.1
              /32 host LOCAL
";

#[test]
fn local_addresses_come_from_the_fib_trie() {
    let got = local_ipv4_addresses(FIB_TRIE);
    assert_eq!(
        got,
        vec![Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(172, 17, 0, 1)]
    );
    assert!(local_ipv4_addresses("").is_empty());
}

#[test]
fn cidr_membership() {
    let ip = |s: &str| s.parse::<Ipv4Addr>().expect("ip");
    assert!(in_cidr(ip("172.19.0.1"), "172.19.0.0/16"));
    assert!(!in_cidr(ip("172.20.0.1"), "172.19.0.0/16"));
    assert!(in_cidr(ip("10.1.2.3"), "0.0.0.0/0"));
    assert!(in_cidr(ip("10.1.2.3"), "10.1.2.3/32"));
    assert!(!in_cidr(ip("10.1.2.3"), "fd00::/64"));
    assert!(!in_cidr(ip("10.1.2.3"), "10.1.2.3/33"));
    assert!(!in_cidr(ip("10.1.2.3"), "10.1.2.3"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Any version text is assessed without a panic; a refusal always names
    /// the version it refused.
    #[test]
    fn any_version_is_assessed_without_panic(version in "\\PC{0,20}", api in "\\PC{0,8}") {
        match assess(&info(&version, &api)) {
            Ok(r) => prop_assert_eq!(r.version, version),
            Err(e) => prop_assert!(e.to_string().contains(&version)),
        }
    }

    /// A release is refused exactly when it is older than 20.10.
    #[test]
    fn releases_below_20_10_are_refused(a in 0u32..40, b in 0u32..20, c in 0u32..40) {
        let refused = assess(&info(&format!("{a}.{b}.{c}"), "1.41")).is_err();
        prop_assert_eq!(refused, (a, b) < MIN_ENGINE);
    }

    /// The fib_trie reader never panics and only returns addresses it saw.
    #[test]
    fn fib_trie_reader_is_total(text in "[ |+\\-0-9./a-zA-Z\\n]{0,300}") {
        for ip in local_ipv4_addresses(&text) {
            prop_assert!(text.contains(&ip.to_string()));
        }
    }

    /// An address is in its own /n network for every prefix length.
    #[test]
    fn an_address_is_in_its_own_network(ip in any::<u32>(), len in 0u32..=32) {
        let ip = Ipv4Addr::from(ip);
        let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
        let net = Ipv4Addr::from(u32::from(ip) & mask);
        let cidr = format!("{net}/{len}");
        prop_assert!(in_cidr(ip, &cidr));
    }
}
