use manifest::path::PathPrefix;
use manifest::{
    AuthScheme, HostPattern, IpLiterals, RequestHost, Role, Route, RouteAuth, RouteTable,
};
use proptest::prelude::*;

fn host() -> impl Strategy<Value = HostPattern> {
    (
        any::<bool>(),
        prop::collection::vec("[a-z][a-z0-9-]{0,5}[a-z0-9]", 2..4),
    )
        .prop_filter_map("valid host", |(wild, labels)| {
            let text = labels.join(".");
            let text = if wild { format!("*.{text}") } else { text };
            HostPattern::parse(&text, IpLiterals::Reject).ok()
        })
}

fn prefix() -> impl Strategy<Value = PathPrefix> {
    prop::collection::vec("[a-z0-9._~-]{1,6}", 0..3).prop_filter_map("normalised", |segs| {
        PathPrefix::parse(&format!("/{}", segs.join("/"))).ok()
    })
}

fn auth() -> impl Strategy<Value = Option<RouteAuth>> {
    proptest::option::of((0..4u8, 1..20usize).prop_map(|(kind, n)| RouteAuth {
        scheme: match kind {
            0 => Some(AuthScheme::Bearer),
            1 => Some(AuthScheme::Token),
            2 => Some(AuthScheme::Basic),
            _ => None,
        },
        header: (kind == 3).then(|| "x-api-key".to_owned()),
        token_env: format!("EGRESS_TOKEN_{n}"),
    }))
}

fn table() -> impl Strategy<Value = RouteTable> {
    (
        prop::collection::vec(
            (
                host(),
                prop::collection::vec(prefix(), 0..3),
                auth(),
                prop::collection::vec(1..=65535u16, 0..3),
                any::<bool>(),
            ),
            0..8,
        ),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(raw, oauth)| {
            let mut routes: Vec<Route> = Vec::new();
            for (host, mut paths, auth, mut ports, allow_private) in raw {
                if routes.iter().any(|r| r.host == host) {
                    continue;
                }
                paths.dedup();
                let mut uniq = Vec::new();
                for p in paths {
                    if !uniq.contains(&p) {
                        uniq.push(p);
                    }
                }
                ports.sort_unstable();
                ports.dedup();
                if ports.is_empty() {
                    ports = manifest::routes::DEFAULT_PORTS.to_vec();
                }
                routes.push(Route {
                    host,
                    path_allowlist: uniq,
                    auth,
                    roles: vec![],
                    ports,
                    allow_private,
                });
            }
            if !routes.is_empty() {
                let i = oauth.index(routes.len());
                routes[i].roles.push(Role::ClaudeCodeOauth);
            }
            RouteTable::new(routes).expect("unique hosts, one oauth role")
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parse_render_roundtrip(t in table()) {
        let text = t.render();
        let again = RouteTable::parse(&text, "routes.yaml").map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(&again, &t);
        prop_assert_eq!(again.version_hash(), t.version_hash());
        prop_assert_eq!(again.render(), text);
    }

    #[test]
    fn lookup_prefers_exact_over_wildcard(t in table(), sub in "[a-z]{1,5}") {
        for r in t.routes() {
            let h = RequestHost::parse(r.host.apex()).unwrap();
            let found = t.lookup(&h).expect("a route's own apex is always covered");
            if !r.host.is_wildcard() {
                prop_assert_eq!(&found.host, &r.host);
            } else {
                prop_assert!(found.host.matches(&h));
            }
            let deeper = RequestHost::parse(&format!("{sub}.{}", r.host.apex())).unwrap();
            if let Some(f) = t.lookup(&deeper) {
                prop_assert!(f.host.matches(&deeper));
            }
        }
    }
}
