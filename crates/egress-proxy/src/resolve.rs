//! Name resolution for the upstream leg, behind a trait so tests (and the
//! `--resolve` flag) can map names to loopback without touching real DNS.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};

use futures_util::future::BoxFuture;

/// Turns a host name into socket addresses.
pub trait Resolver: Send + Sync + fmt::Debug {
    /// Resolves `host` (no brackets, no port) for `port`.
    fn resolve(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>>;
}

/// The system resolver (`getaddrinfo` via tokio), with optional fixed
/// overrides consulted first (`--resolve name=ip`).
#[derive(Clone, Debug, Default)]
pub struct SystemResolver {
    overrides: HashMap<String, IpAddr>,
}

impl SystemResolver {
    /// A system resolver with fixed overrides (names are matched
    /// case-insensitively).
    pub fn with_overrides(overrides: HashMap<String, IpAddr>) -> Self {
        Self {
            overrides: overrides
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
        }
    }
}

impl Resolver for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        if let Some(ip) = literal_or_override(&self.overrides, host) {
            return Box::pin(async move { Ok(vec![SocketAddr::new(ip, port)]) });
        }
        let host = host.to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
                .await?
                .collect();
            if addrs.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{host} has no addresses"),
                ));
            }
            Ok(addrs)
        })
    }
}

/// A resolver that knows only a fixed map and never asks DNS: unknown names
/// fail. Tests map their fake hosts to 127.0.0.1 with it, and (with
/// [`StaticResolver::with_ports`]) the standard ports 443 and 80 to the
/// ports their local upstream listens on, so the proxy sees the ports an
/// agent would use.
#[derive(Clone, Debug, Default)]
pub struct StaticResolver {
    map: HashMap<String, IpAddr>,
    ports: HashMap<u16, u16>,
}

impl StaticResolver {
    /// A resolver answering exactly these names.
    pub fn new<K: Into<String>>(pairs: impl IntoIterator<Item = (K, IpAddr)>) -> Self {
        Self {
            map: pairs
                .into_iter()
                .map(|(k, v)| (k.into().to_ascii_lowercase(), v))
                .collect(),
            ports: HashMap::new(),
        }
    }

    /// Answers a lookup for port `from` with port `to` (like curl's
    /// `--connect-to`).
    pub fn with_ports(mut self, pairs: impl IntoIterator<Item = (u16, u16)>) -> Self {
        self.ports.extend(pairs);
        self
    }
}

impl Resolver for StaticResolver {
    fn resolve(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        let found = literal_or_override(&self.map, host);
        let port = self.ports.get(&port).copied().unwrap_or(port);
        let host = host.to_owned();
        Box::pin(async move {
            match found {
                Some(ip) => Ok(vec![SocketAddr::new(ip, port)]),
                None => Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{host} is not in the static resolver map"),
                )),
            }
        })
    }
}

fn literal_or_override(map: &HashMap<String, IpAddr>, host: &str) -> Option<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ip);
    }
    map.get(&host.to_ascii_lowercase()).copied()
}
