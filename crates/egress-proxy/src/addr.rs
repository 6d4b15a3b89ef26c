//! Which upstream addresses are global, and the name of every class that
//! is not: the proxy connects only to addresses it checked here (SSRF).
//!
//! Is: a pure classification of one `IpAddr` against the IANA
//! special-purpose registries (RFC 6890 and successors), including IPv6
//! forms that carry an IPv4 address inside (IPv4-mapped, IPv4-compatible,
//! NAT64 `64:ff9b::/96`, 6to4 `2002::/16`, Teredo `2001::/32`): those are
//! judged by the IPv4 address they embed. IPv6 outside `2000::/3` (global
//! unicast) is not global unless it embeds a global IPv4 address.
//!
//! Is not: a resolver or a connector; [`crate::upstream`] resolves once,
//! asks here, and connects only to what passed ([`Vetted`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why an address is not global.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrClass {
    Unspecified,
    /// `0.0.0.0/8` ("this network").
    ThisNetwork,
    Loopback,
    /// RFC 1918.
    Private,
    /// `100.64.0.0/10`, carrier-grade NAT (RFC 6598).
    SharedNat,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// `fc00::/7`.
    UniqueLocal,
    /// `fec0::/10`, deprecated.
    SiteLocal,
    Multicast,
    Broadcast,
    /// TEST-NET-1/2/3, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `198.18.0.0/15`.
    Benchmarking,
    /// `192.0.0.0/24`, `2001::/23`, `100::/64`, `5f00::/16`,
    /// `64:ff9b:1::/48`: protocol assignments, not destinations.
    Protocol,
    /// `240.0.0.0/4`, `192.88.99.0/24`, and IPv6 outside the global
    /// unicast range.
    Reserved,
}

impl AddrClass {
    /// How the 403 names the class.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Unspecified => "the unspecified address",
            Self::ThisNetwork => "a \"this network\" address (0.0.0.0/8)",
            Self::Loopback => "a loopback address",
            Self::Private => "a private address (RFC 1918)",
            Self::SharedNat => "a carrier-grade NAT address (100.64.0.0/10)",
            Self::LinkLocal => "a link-local address",
            Self::UniqueLocal => "a unique-local IPv6 address (fc00::/7)",
            Self::SiteLocal => "a site-local IPv6 address (fec0::/10)",
            Self::Multicast => "a multicast address",
            Self::Broadcast => "the broadcast address",
            Self::Documentation => "a documentation-only address",
            Self::Benchmarking => "a benchmarking address (198.18.0.0/15)",
            Self::Protocol => "a protocol-assignment address, not a destination",
            Self::Reserved => "a reserved address",
        }
    }

    /// A short label for logs.
    pub fn code(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::ThisNetwork => "this-network",
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::SharedNat => "shared-nat",
            Self::LinkLocal => "link-local",
            Self::UniqueLocal => "unique-local",
            Self::SiteLocal => "site-local",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Documentation => "documentation",
            Self::Benchmarking => "benchmarking",
            Self::Protocol => "protocol",
            Self::Reserved => "reserved",
        }
    }
}

/// How an IPv6 address carries an IPv4 one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Embedding {
    Mapped,
    Compatible,
    Nat64,
    SixToFour,
    Teredo,
}

impl Embedding {
    fn describe(self) -> &'static str {
        match self {
            Self::Mapped => "IPv4-mapped",
            Self::Compatible => "IPv4-compatible",
            Self::Nat64 => "NAT64",
            Self::SixToFour => "6to4",
            Self::Teredo => "Teredo",
        }
    }
}

/// An address the proxy will not connect to, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NonGlobal {
    pub addr: IpAddr,
    pub class: AddrClass,
    /// Set when the class is that of an IPv4 address embedded in `addr`.
    pub embedded: Option<(Embedding, Ipv4Addr)>,
}

/// The cloud metadata endpoints (AWS, GCP, Azure, …, and AWS's IPv6 one).
const METADATA: &[IpAddr] = &[
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
];

impl fmt::Display for NonGlobal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.embedded {
            Some((how, v4)) => write!(
                f,
                "{} ({} form of {v4}, {})",
                self.addr,
                how.describe(),
                self.class.describe()
            )?,
            None => write!(f, "{}, {}", self.addr, self.class.describe())?,
        }
        let inner = self.embedded.map_or(self.addr, |(_, v4)| IpAddr::V4(v4));
        if METADATA.contains(&inner) {
            f.write_str(" (the cloud metadata service)")?;
        }
        Ok(())
    }
}

/// `Ok` when `ip` is globally routable; otherwise what it is.
pub fn check(ip: IpAddr) -> Result<(), NonGlobal> {
    let class = match ip {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some((how, v4)) => {
                return match v4_class(v4) {
                    None => Ok(()),
                    Some(class) => Err(NonGlobal {
                        addr: ip,
                        class,
                        embedded: Some((how, v4)),
                    }),
                };
            }
            None => v6_class(v6),
        },
    };
    match class {
        None => Ok(()),
        Some(class) => Err(NonGlobal {
            addr: ip,
            class,
            embedded: None,
        }),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], len: u32) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], len: u32) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

fn v4_class(ip: Ipv4Addr) -> Option<AddrClass> {
    use AddrClass::*;
    const TABLE: &[([u8; 4], u32, AddrClass)] = &[
        ([0, 0, 0, 0], 32, Unspecified),
        ([0, 0, 0, 0], 8, ThisNetwork),
        ([10, 0, 0, 0], 8, Private),
        ([100, 64, 0, 0], 10, SharedNat),
        ([127, 0, 0, 0], 8, Loopback),
        ([169, 254, 0, 0], 16, LinkLocal),
        ([172, 16, 0, 0], 12, Private),
        ([192, 0, 0, 0], 24, Protocol),
        ([192, 0, 2, 0], 24, Documentation),
        ([192, 88, 99, 0], 24, Reserved),
        ([192, 168, 0, 0], 16, Private),
        ([198, 18, 0, 0], 15, Benchmarking),
        ([198, 51, 100, 0], 24, Documentation),
        ([203, 0, 113, 0], 24, Documentation),
        ([224, 0, 0, 0], 4, Multicast),
        ([255, 255, 255, 255], 32, Broadcast),
        ([240, 0, 0, 0], 4, Reserved),
    ];
    TABLE
        .iter()
        .find(|(net, len, _)| in_v4(ip, *net, *len))
        .map(|(_, _, c)| *c)
}

/// The IPv4 address an IPv6 address stands for, if it is one of the
/// embedding forms.
fn embedded_v4(ip: Ipv6Addr) -> Option<(Embedding, Ipv4Addr)> {
    let bits = u128::from(ip);
    let low32 = Ipv4Addr::from(bits as u32);
    if in_v6(ip, [0, 0, 0, 0, 0, 0xffff, 0, 0], 96) {
        return Some((Embedding::Mapped, low32));
    }
    // `::/96` minus `::` and `::1`, which have classes of their own.
    if in_v6(ip, [0; 8], 96) && bits > 1 {
        return Some((Embedding::Compatible, low32));
    }
    if in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        return Some((Embedding::Nat64, low32));
    }
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        return Some((Embedding::SixToFour, Ipv4Addr::from((bits >> 80) as u32)));
    }
    if in_v6(ip, [0x2001, 0, 0, 0, 0, 0, 0, 0], 32) {
        // The client's address is stored inverted in the low 32 bits; the
        // server's is bits 32..64. A non-global one on either side refuses.
        let client = Ipv4Addr::from(!(bits as u32));
        let server = Ipv4Addr::from((bits >> 64) as u32);
        let pick = if v4_class(client).is_some() || v4_class(server).is_none() {
            client
        } else {
            server
        };
        return Some((Embedding::Teredo, pick));
    }
    None
}

fn v6_class(ip: Ipv6Addr) -> Option<AddrClass> {
    use AddrClass::*;
    const TABLE: &[([u16; 8], u32, AddrClass)] = &[
        ([0, 0, 0, 0, 0, 0, 0, 0], 128, Unspecified),
        ([0, 0, 0, 0, 0, 0, 0, 1], 128, Loopback),
        ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, Protocol),
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, Protocol),
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, Documentation),
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, Protocol),
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, Documentation),
        ([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, Protocol),
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, UniqueLocal),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, LinkLocal),
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, SiteLocal),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, Multicast),
    ];
    if let Some((_, _, c)) = TABLE.iter().find(|(net, len, _)| in_v6(ip, *net, *len)) {
        return Some(*c);
    }
    // Global unicast is 2000::/3; the rest of the space is unassigned.
    (!in_v6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3)).then_some(Reserved)
}

/// A socket address that passed the policy. Only [`vet`] makes one, so a
/// connector that takes `Vetted` cannot dial an address nobody checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vetted(SocketAddr);

impl Vetted {
    /// The address to connect to.
    pub fn addr(self) -> SocketAddr {
        self.0
    }
}

/// Whether a route's upstream may be a non-global address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressPolicy {
    /// Global addresses only (every route, unless the operator opts in).
    GlobalOnly,
    /// The route has `allow_private: true`.
    AllowPrivate,
}

/// Checks every address one resolution returned. A name with any
/// non-global address is refused whole under [`AddressPolicy::GlobalOnly`]:
/// a public name that also points inside is not one to trust, and trying
/// the global one first would still leave the inside one as a fallback.
pub fn vet(addrs: &[SocketAddr], policy: AddressPolicy) -> Result<Vec<Vetted>, NonGlobal> {
    if policy == AddressPolicy::GlobalOnly
        && let Some(bad) = addrs.iter().find_map(|a| check(a.ip()).err())
    {
        return Err(bad);
    }
    Ok(addrs.iter().copied().map(Vetted).collect())
}

#[cfg(test)]
mod tests;
