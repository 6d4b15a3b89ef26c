use super::*;
use proptest::prelude::*;

fn class(s: &str) -> Option<AddrClass> {
    check(s.parse().unwrap()).err().map(|n| n.class)
}

#[test]
fn every_special_range_has_its_class() {
    use AddrClass::*;
    let cases: &[(&str, Option<AddrClass>)] = &[
        ("0.0.0.0", Some(Unspecified)),
        ("0.1.2.3", Some(ThisNetwork)),
        ("10.0.0.1", Some(Private)),
        ("10.255.255.255", Some(Private)),
        ("100.64.0.1", Some(SharedNat)),
        ("100.127.255.254", Some(SharedNat)),
        ("100.128.0.1", None),
        ("127.0.0.1", Some(Loopback)),
        ("127.255.0.9", Some(Loopback)),
        ("169.254.169.254", Some(LinkLocal)),
        ("172.16.0.1", Some(Private)),
        ("172.31.255.255", Some(Private)),
        ("172.32.0.1", None),
        ("192.0.0.8", Some(Protocol)),
        ("192.0.2.55", Some(Documentation)),
        ("192.88.99.1", Some(Reserved)),
        ("192.168.1.1", Some(Private)),
        ("198.18.0.1", Some(Benchmarking)),
        ("198.19.255.255", Some(Benchmarking)),
        ("198.20.0.1", None),
        ("198.51.100.1", Some(Documentation)),
        ("203.0.113.9", Some(Documentation)),
        ("224.0.0.1", Some(Multicast)),
        ("239.255.255.255", Some(Multicast)),
        ("240.0.0.1", Some(Reserved)),
        ("255.255.255.255", Some(Broadcast)),
        ("1.1.1.1", None),
        ("8.8.8.8", None),
        ("93.184.216.34", None),
        ("::", Some(Unspecified)),
        ("::1", Some(Loopback)),
        ("fe80::1", Some(LinkLocal)),
        ("fd00:ec2::254", Some(UniqueLocal)),
        ("fc00::1", Some(UniqueLocal)),
        ("fec0::1", Some(SiteLocal)),
        ("ff02::1", Some(Multicast)),
        ("2001:db8::1", Some(Documentation)),
        ("3fff::1", Some(Documentation)),
        ("100::1", Some(Protocol)),
        ("64:ff9b:1::1", Some(Protocol)),
        ("2001:2::1", Some(Protocol)),
        ("5f00::1", Some(Protocol)),
        ("4000::1", Some(Reserved)),
        ("2606:4700::1111", None),
        ("2a00:1450:4001::1", None),
        // Embeddings are judged by the IPv4 address inside.
        ("::ffff:127.0.0.1", Some(Loopback)),
        ("::ffff:169.254.169.254", Some(LinkLocal)),
        ("::ffff:8.8.8.8", None),
        ("::10.0.0.1", Some(Private)),
        ("64:ff9b::10.1.2.3", Some(Private)),
        ("64:ff9b::169.254.169.254", Some(LinkLocal)),
        ("64:ff9b::1.1.1.1", None),
        ("2002:0a00:0001::1", Some(Private)),
        ("2002:c0a8:0101::", Some(Private)),
        ("2002:0808:0808::1", None),
        // Teredo: server 65.54.227.120, client 192.168.1.1 stored inverted.
        ("2001:0:4136:e378:8000:63bf:3f57:fefe", Some(Private)),
        // Teredo whose server is loopback.
        ("2001:0:7f00:1:0:0:f7f7:f7f7", Some(Loopback)),
    ];
    for (addr, want) in cases {
        assert_eq!(class(addr), *want, "{addr}");
    }
}

#[test]
fn refusals_name_the_address_and_the_class() {
    let text = |s: &str| check(s.parse().unwrap()).unwrap_err().to_string();
    assert_eq!(
        text("169.254.169.254"),
        "169.254.169.254, a link-local address (the cloud metadata service)"
    );
    assert_eq!(
        text("fd00:ec2::254"),
        "fd00:ec2::254, a unique-local IPv6 address (fc00::/7) (the cloud metadata service)"
    );
    assert_eq!(
        text("::ffff:10.0.0.1"),
        "::ffff:10.0.0.1 (IPv4-mapped form of 10.0.0.1, a private address (RFC 1918))"
    );
    assert!(text("100.64.1.2").contains("carrier-grade NAT"));
}

#[test]
fn one_inside_address_refuses_the_whole_answer() {
    let addrs: Vec<SocketAddr> = vec![
        "1.1.1.1:443".parse().unwrap(),
        "10.0.0.1:443".parse().unwrap(),
    ];
    let err = vet(&addrs, AddressPolicy::GlobalOnly).unwrap_err();
    assert_eq!(err.class, AddrClass::Private);
    let ok = vet(&addrs, AddressPolicy::AllowPrivate).unwrap();
    assert_eq!(ok.iter().map(|v| v.addr()).collect::<Vec<_>>(), addrs);
    let global = vet(&addrs[..1], AddressPolicy::GlobalOnly).unwrap();
    assert_eq!(global[0].addr(), addrs[0]);
}

fn v4_in(net: [u8; 4], len: u32) -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(move |r| {
        let mask = u32::MAX << (32 - len);
        Ipv4Addr::from((u32::from(Ipv4Addr::from(net)) & mask) | (r & !mask))
    })
}

/// A non-global IPv4 address from one of the ranges an attacker aims at.
fn inside_v4() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        v4_in([10, 0, 0, 0], 8),
        v4_in([127, 0, 0, 0], 8),
        v4_in([169, 254, 0, 0], 16),
        v4_in([172, 16, 0, 0], 12),
        v4_in([192, 168, 0, 0], 16),
        v4_in([100, 64, 0, 0], 10),
        v4_in([0, 0, 0, 0], 8),
        v4_in([224, 0, 0, 0], 3),
    ]
}

/// Every IPv6 spelling that carries `v4`.
fn embeddings(v4: Ipv4Addr) -> Vec<Ipv6Addr> {
    let n = u128::from(u32::from(v4));
    vec![
        v4.to_ipv6_mapped(),
        Ipv6Addr::from(n),
        Ipv6Addr::from(u128::from(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0)) | n),
        Ipv6Addr::from((0x2002u128 << 112) | (n << 80) | 1),
        Ipv6Addr::from((0x2001u128 << 112) | (0x4136_e378u128 << 64) | u128::from(!u32::from(v4))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn inside_addresses_are_refused_in_every_spelling(v4 in inside_v4()) {
        let direct = check(IpAddr::V4(v4)).unwrap_err().class;
        for v6 in embeddings(v4) {
            let got = check(IpAddr::V6(v6));
            prop_assert_eq!(got.map_err(|n| n.class), Err(direct), "{} for {}", v6, v4);
        }
    }

    #[test]
    fn embeddings_agree_with_their_ipv4_address(raw in any::<u32>()) {
        let v4 = Ipv4Addr::from(raw);
        let direct = check(IpAddr::V4(v4)).map_err(|n| n.class);
        // 0.0.0.0 and 0.0.0.1 are `::` and `::1` when IPv4-compatible.
        let skip_compat = raw <= 1;
        for (i, v6) in embeddings(v4).into_iter().enumerate() {
            if i == 1 && skip_compat {
                continue;
            }
            prop_assert_eq!(check(IpAddr::V6(v6)).map_err(|n| n.class), direct, "{}", v6);
        }
    }

    #[test]
    fn outside_global_unicast_nothing_is_global(raw in any::<u128>()) {
        let ip = Ipv6Addr::from(raw);
        if check(IpAddr::V6(ip)).is_ok() {
            let in_global_unicast = raw >> 125 == 1;
            let embeds = embedded_v4(ip).is_some();
            prop_assert!(in_global_unicast || embeds, "{}", ip);
        }
    }
}
